/* Identifier validation; see validate.h for the contracts. */
#include "ad/validate.h"

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9');
}

bool validate_name(const char *s, size_t n)
{
    if (n == 0 || !is_alnum(s[0])) {
        return false;
    }
    for (size_t i = 1; i < n; i++) {
        if (!is_alnum(s[i]) && s[i] != '_' && s[i] != '-') {
            return false;
        }
    }
    return true;
}

bool validate_job_id(const char *s, size_t n)
{
    if (n != 32) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return true;
}

bool validate_not_flag(const char *s, size_t n)
{
    return n == 0 || s[0] != '-';
}
