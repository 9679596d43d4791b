/* Unit tests of the stream-json line classifier (src/event_kind.c). */
#include <string.h>

#include "ad/event_kind.h"
#include "check.h"

/* The kind of s, and its type name when typed ("" otherwise). */
static enum event_kind kind_of(const char *s, char *name)
{
    const char *t = NULL;
    size_t tn = 0;
    enum event_kind k = event_kind(s, strlen(s), &t, &tn);
    name[0] = '\0';
    if (k == EVENT_TYPED) {
        memcpy(name, t, tn);
        name[tn] = '\0';
    }
    return k;
}

static void check_typed(const char *line, const char *want)
{
    char name[64];
    CHECKF(kind_of(line, name) == EVENT_TYPED, "%s", line);
    CHECK_STR(name, want);
}

static void check_kind(const char *line, enum event_kind want)
{
    char name[64];
    CHECKF(kind_of(line, name) == want, "%s", line);
}

int main(void)
{
    /* What the CLI writes. */
    check_typed("{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"x\"}", "system");
    check_typed("{\"type\":\"assistant\",\"message\":{\"content\":[]}}", "assistant");
    check_typed("{\"type\":\"result\",\"subtype\":\"success\",\"result\":\"ok\"}", "result");
    check_typed("{\"type\":\"control_request\",\"request_id\":\"1\"}", "control_request");
    check_typed("{\"type\":\"stream_event\"}", "stream_event");
    check_typed(" \t\r{\"type\":\"user\",\"x\":1}", "user");

    /* No JSON object: plain text, blank, a JSON array or string. */
    check_kind("stub ok: hi", EVENT_TEXT);
    check_kind("", EVENT_TEXT);
    check_kind("   ", EVENT_TEXT);
    check_kind("[{\"type\":\"result\"}]", EVENT_TEXT);
    check_kind("\"{\\\"type\\\":\\\"result\\\"}\"", EVENT_TEXT);

    /* Objects whose type the start does not name: the caller decodes. */
    check_kind("{}", EVENT_OBJECT);
    check_kind("{\"subtype\":\"success\",\"type\":\"result\"}", EVENT_OBJECT);
    check_kind("{ \"type\": \"result\" }", EVENT_OBJECT);
    check_kind("{\"type\":\"res\\u0075lt\",\"x\":1}", EVENT_OBJECT);
    check_kind("{\"type\":\"Result\",\"x\":1}", EVENT_OBJECT);
    check_kind("{\"type\":\"\",\"x\":1}", EVENT_OBJECT);
    check_kind("{\"type\":1}", EVENT_OBJECT);
    check_kind("{\"type\":\"result\"", EVENT_OBJECT);       /* cut short */
    check_kind("{\"type\":\"result\" ,\"x\":1}", EVENT_OBJECT);
    check_kind("{\"type\":\"result", EVENT_OBJECT);
    check_kind("{\"type\":\"abcdefghijklmnopqrstuvwxyzabcdefg\",\"x\":1}", EVENT_OBJECT);
    check_typed("{\"type\":\"abcdefghijklmnopqrstuvwxyzabcdef\"}", "abcdefghijklmnopqrstuvwxyzabcdef");

    /* Bounds: no byte past n is read. */
    {
        const char *t;
        size_t tn;
        const char *s = "{\"type\":\"result\",\"x\":1}";
        CHECK(event_kind(s, 16, &t, &tn) == EVENT_OBJECT); /* ends before the comma */
        CHECK(event_kind(s, 17, &t, &tn) == EVENT_TYPED && tn == 6);
    }
    return check_exit("event_kind");
}
