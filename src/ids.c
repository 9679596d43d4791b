/* Identifier generation backed by libuuid. */
#include <uuid/uuid.h>

#include "ad/ids.h"

void ids_uuid4(char out[37])
{
    uuid_t u;
    uuid_generate_random(u);
    uuid_unparse_lower(u, out);
}

void ids_hex32(char out[33])
{
    static const char hex[] = "0123456789abcdef";
    uuid_t u;
    uuid_generate_random(u);
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[u[i] >> 4];
        out[2 * i + 1] = hex[u[i] & 15];
    }
    out[32] = '\0';
}
