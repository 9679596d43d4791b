/* The first link of the program, which generates the default tools/list
 * arrays (src/tools/tools_json.lua), has none: it builds every list from
 * the registry. */
#include <stddef.h>

#include "bind/embed.h"

const struct embedded_tools embedded_tools[] = {{NULL, NULL, 0}};
const size_t embedded_tools_count = 0;
const char *const embedded_tools_deps[] = {NULL};
