/* The kind of one stdout line of a claude child in stream-json mode, told
 * by one look at its first bytes, so that the server decodes only the
 * lines it needs (the result, the child's control requests) and hands the
 * others on undecoded. The CLI writes each event as compact JSON whose
 * first member is "type": {"type":"assistant",...}. This is no parser: a
 * line it names a type for is still decoded by lua-cjson wherever its
 * contents matter, and a line whose start does not have that exact shape
 * is EVENT_OBJECT (the caller decodes it to know). */
#ifndef AD_EVENT_KIND_H
#define AD_EVENT_KIND_H
#include <stddef.h>

enum event_kind {
    EVENT_TEXT,   /* its first byte after blanks is not '{': no event */
    EVENT_OBJECT, /* may be an event whose type its start does not name */
    EVENT_TYPED,  /* starts {"type":"NAME", or {"type":"NAME"} */
};

/* The longest type name told (the CLI's are below 24 bytes). */
#define EVENT_TYPE_MAX 32

/* Classifies s[0..n) (no NUL needed). For EVENT_TYPED, *type and *type_len
 * give NAME inside s: 1 to EVENT_TYPE_MAX bytes of a-z and '_'. */
enum event_kind event_kind(const char *s, size_t n, const char **type, size_t *type_len);

#endif
