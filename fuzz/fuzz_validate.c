/* The validators against their specifications, written independently
 * here: names ^[A-Za-z0-9][A-Za-z0-9_-]*$, job ids 32 lowercase hex
 * digits, flag guard "does not start with '-'". */
#include <stdint.h>
#include <stdlib.h>

#include "ad/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool alnum(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9');
}

static bool spec_name(const uint8_t *s, size_t n)
{
    if (n == 0 || !alnum(s[0])) {
        return false;
    }
    for (size_t i = 1; i < n; i++) {
        if (!alnum(s[i]) && s[i] != '_' && s[i] != '-') {
            return false;
        }
    }
    return true;
}

static bool spec_job_id(const uint8_t *s, size_t n)
{
    if (n != 32) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    if (validate_name(s, size) != spec_name(data, size) ||
        validate_job_id(s, size) != spec_job_id(data, size) ||
        validate_not_flag(s, size) != (size == 0 || data[0] != '-')) {
        abort();
    }
    return 0;
}
