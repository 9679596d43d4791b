/* See event_kind.h. */
#include <string.h>

#include "ad/event_kind.h"

static const char TYPE_KEY[] = "{\"type\":\"";

enum event_kind event_kind(const char *s, size_t n, const char **type, size_t *type_len)
{
    size_t i = 0;
    /* The blanks the decoder (and claude.event) accept before the object. */
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r')) {
        i++;
    }
    if (i >= n || s[i] != '{') {
        return EVENT_TEXT;
    }
    size_t k = sizeof TYPE_KEY - 1;
    if (n - i < k || memcmp(s + i, TYPE_KEY, k) != 0) {
        return EVENT_OBJECT;
    }
    size_t start = i + k, j = start;
    while (j < n && j - start < EVENT_TYPE_MAX && ((s[j] >= 'a' && s[j] <= 'z') || s[j] == '_')) {
        j++;
    }
    /* The name must end at its closing quote, and the member there: an
     * escape, another character or a longer name leaves it untold. */
    if (j == start || j + 1 >= n || s[j] != '"' || (s[j + 1] != ',' && s[j + 1] != '}')) {
        return EVENT_OBJECT;
    }
    *type = s + start;
    *type_len = j - start;
    return EVENT_TYPED;
}
