/* YAML <-> Lua tables with libyaml (agents.yaml load and save).
 *
 * Over 500 lines on purpose: one job, and load and dump share the scalar
 * rules (what reads back as a bool, a number or null), so they stay in one
 * file.
 *
 *   core.yaml.load(text) -> value | nil, message
 *   core.yaml.outline(text) -> node | nil, message
 *   core.yaml.dump(value) -> text | nil, message
 *
 * Loading is safe: only the core YAML tags resolve (str, int, float, bool,
 * null, map, seq); any other tag, such as !!python/object/apply, is an
 * error and is never acted on. Scalars resolve as YAML 1.1 plain scalars do
 * (yes/no/on/off are booleans). Mapping keys are strings. Each mapping gets
 * a metatable whose __order lists its keys in file order, so "config
 * order" survives; aliases share the anchored value (no expansion bomb).
 *
 * Dumping walks a Lua value: a table with __order (or any non-array table)
 * is a block mapping in that order, then remaining keys sorted; an ad.array
 * table or a non-empty sequence is a block sequence (empty ad.array -> []);
 * strings that would read back as another type are quoted. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "ad/claude.h"
#include "bind/bind.h"

#define MAX_DEPTH 64

struct loader {
    yaml_parser_t parser;
    int anchors;      /* stack index of the anchors table */
    char err[256];
    /* outline only: libyaml counts marks in characters; these turn them
     * into byte offsets with a cursor that walks from the last answer
     * (marks arrive nearly in order). */
    const unsigned char *text;
    size_t len, ci, bi;
};

static bool is_null(const char *s)
{
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") ||
           !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static int as_bool(const char *s)
{
    static const char *t[] = {"true", "True", "TRUE", "yes", "Yes", "YES",
                              "on", "On", "ON", NULL};
    static const char *f[] = {"false", "False", "FALSE", "no", "No", "NO",
                              "off", "Off", "OFF", NULL};
    for (int i = 0; t[i]; i++) {
        if (!strcmp(s, t[i])) {
            return 1;
        }
        if (!strcmp(s, f[i])) {
            return 0;
        }
    }
    return -1;
}

static bool as_int(const char *s, lua_Integer *out)
{
    const char *p = s;
    if (*p == '-' || *p == '+') {
        p++;
    }
    if (!*p) {
        return false;
    }
    for (const char *q = p; *q; q++) {
        if (*q < '0' || *q > '9') {
            return false;
        }
    }
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) {
        return false;
    }
    *out = (lua_Integer)v;
    return true;
}

static bool as_float(const char *s, double *out)
{
    const char *p = s;
    if (*p == '-' || *p == '+') {
        p++;
    }
    if (!strcmp(p, ".inf") || !strcmp(p, ".Inf") || !strcmp(p, ".INF")) {
        *out = (*s == '-') ? -HUGE_VAL : HUGE_VAL;
        return true;
    }
    if (!strcmp(s, ".nan") || !strcmp(s, ".NaN") || !strcmp(s, ".NAN")) {
        *out = NAN;
        return true;
    }
    bool digit = false, dot = false, exp = false;
    for (const char *q = p; *q; q++) {
        if (*q >= '0' && *q <= '9') {
            digit = true;
        } else if (*q == '.' && !dot && !exp) {
            dot = true;
        } else if ((*q == 'e' || *q == 'E') && digit && !exp) {
            exp = true;
            if (q[1] == '-' || q[1] == '+') {
                q++;
            }
        } else if (*q != '_') {
            return false;
        }
    }
    if (!digit || (!dot && !exp)) {
        return false;
    }
    char *end;
    *out = strtod(s, &end);
    return *end == '\0';
}

/* [-0, +1, m] Pushes the value of a scalar event. */
static int push_scalar(lua_State *L, struct loader *ld, yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    lua_Integer i = 0; /* gcc -O2 cannot see as_int() always sets it */
    double d;
    if (tag && strcmp(tag, "!") != 0) {
        if (!strcmp(tag, YAML_STR_TAG)) {
            lua_pushlstring(L, v, n);
        } else if (!strcmp(tag, YAML_INT_TAG) && as_int(v, &i)) {
            lua_pushinteger(L, i);
        } else if (!strcmp(tag, YAML_FLOAT_TAG) &&
                   (as_float(v, &d) || as_int(v, &i))) {
            lua_pushnumber(L, as_float(v, &d) ? d : (double)i);
        } else if (!strcmp(tag, YAML_BOOL_TAG) && as_bool(v) >= 0) {
            lua_pushboolean(L, as_bool(v));
        } else if (!strcmp(tag, YAML_NULL_TAG)) {
            lua_pushnil(L);
        } else {
            snprintf(ld->err, sizeof ld->err,
                     "line %zu, column %zu: unsupported tag '%s' (only plain "
                     "YAML data is accepted)",
                     ev->start_mark.line + 1, ev->start_mark.column + 1, tag);
            return -1;
        }
    } else if (!plain || tag) {
        lua_pushlstring(L, v, n);
    } else if (is_null(v)) {
        lua_pushnil(L);
    } else if (as_bool(v) >= 0) {
        lua_pushboolean(L, as_bool(v));
    } else if (as_int(v, &i)) {
        lua_pushinteger(L, i);
    } else if (as_float(v, &d)) {
        lua_pushnumber(L, d);
    } else {
        lua_pushlstring(L, v, n);
    }
    return 0;
}

static int parse_node(lua_State *L, struct loader *ld, yaml_event_t *ev,
                      int depth);

static int next_event(struct loader *ld, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&ld->parser, ev)) {
        yaml_parser_t *p = &ld->parser;
        snprintf(ld->err, sizeof ld->err, "line %zu, column %zu: %s%s%s",
                 p->problem_mark.line + 1, p->problem_mark.column + 1,
                 p->problem ? p->problem : "syntax error",
                 p->context ? " " : "", p->context ? p->context : "");
        return -1;
    }
    return 0;
}

static void remember_anchor(lua_State *L, struct loader *ld,
                            const yaml_char_t *anchor)
{
    if (anchor) {
        lua_pushvalue(L, -1);
        lua_setfield(L, ld->anchors, (const char *)anchor);
    }
}

/* The depth bound and the Lua stack room of one more level of nesting
 * (load and outline alike). */
static int enter_node(lua_State *L, struct loader *ld, int depth, int slots)
{
    if (depth > MAX_DEPTH) {
        snprintf(ld->err, sizeof ld->err, "nesting deeper than %d levels",
                 MAX_DEPTH);
        return -1;
    }
    luaL_checkstack(L, slots, "yaml nesting");
    return 0;
}

/* The next key of a mapping into kev: 0 for a key, 1 at the mapping's end
 * (kev holds the end event), -1 on an error (nothing to free). Keys are
 * plain scalars only. */
static int next_key(struct loader *ld, yaml_event_t *kev)
{
    if (next_event(ld, kev) != 0) {
        return -1;
    }
    if (kev->type == YAML_MAPPING_END_EVENT) {
        return 1;
    }
    if (kev->type != YAML_SCALAR_EVENT) {
        snprintf(ld->err, sizeof ld->err,
                 "line %zu, column %zu: mapping keys must be plain scalars",
                 kev->start_mark.line + 1, kev->start_mark.column + 1);
        yaml_event_delete(kev);
        return -1;
    }
    return 0;
}

typedef int (*node_fn)(lua_State *L, struct loader *ld, yaml_event_t *ev,
                       int depth);

/* Reads the text's one document with node for its root and pushes the
 * root, nil for a text without content, or nil and a message. */
static int one_document(lua_State *L, struct loader *ld, const char *text,
                        size_t n, node_fn node)
{
    yaml_parser_initialize(&ld->parser);
    yaml_parser_set_input_string(&ld->parser, (const unsigned char *)text, n);
    int rc = 0;
    bool have_doc = false;
    for (;;) {
        yaml_event_t ev;
        if (next_event(ld, &ev) != 0) {
            rc = -1;
            break;
        }
        yaml_event_type_t type = ev.type;
        if (type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (type == YAML_DOCUMENT_START_EVENT && have_doc) {
            snprintf(ld->err, sizeof ld->err,
                     "line %zu: the file holds more than one YAML document",
                     ev.start_mark.line + 1);
            yaml_event_delete(&ev);
            rc = -1;
            break;
        }
        if (type == YAML_SCALAR_EVENT || type == YAML_ALIAS_EVENT ||
            type == YAML_MAPPING_START_EVENT ||
            type == YAML_SEQUENCE_START_EVENT) {
            rc = node(L, ld, &ev, 0);
            have_doc = true;
        }
        yaml_event_delete(&ev);
        if (rc != 0) {
            break;
        }
    }
    yaml_parser_delete(&ld->parser);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, ld->err);
        return 2;
    }
    if (!have_doc) {
        lua_pushnil(L);
    }
    return 1;
}

static int parse_mapping(lua_State *L, struct loader *ld, int depth,
                         const yaml_char_t *anchor)
{
    lua_newtable(L);                                  /* map */
    lua_newtable(L);                                  /* map mt */
    lua_newtable(L);                                  /* map mt order */
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__order");
    lua_pushvalue(L, -2);
    lua_setmetatable(L, -4);
    lua_remove(L, -2);                                /* map order */
    lua_insert(L, -2);                                /* order map */
    for (;;) {
        yaml_event_t kev;
        int k = next_key(ld, &kev);
        if (k < 0) {
            return -1;
        }
        if (k > 0) {
            yaml_event_delete(&kev);
            break;
        }
        lua_pushlstring(L, (const char *)kev.data.scalar.value,
                        kev.data.scalar.length);      /* order map key */
        yaml_mark_t at = kev.start_mark;
        bool merge = kev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                     kev.data.scalar.length == 2 &&
                     memcmp(kev.data.scalar.value, "<<", 2) == 0;
        yaml_event_delete(&kev);
        if (merge) {
            /* A YAML 1.1 merge key: libyaml leaves it an ordinary key, so
             * the fields it names would silently be missing. */
            snprintf(ld->err, sizeof ld->err,
                     "line %zu, column %zu: merge keys (<<) are not supported: "
                     "write the fields out (an alias of a whole value works)",
                     at.line + 1, at.column + 1);
            return -1;
        }
        /* YAML keys are unique: with a repeated one, the last would win
         * unseen, and an edit would write the file without the first. */
        lua_pushvalue(L, -1);
        if (lua_rawget(L, -3) != LUA_TNIL) {
            snprintf(ld->err, sizeof ld->err,
                     "line %zu, column %zu: duplicate key '%.60s' (a key "
                     "appears once in a mapping: remove or rename one)",
                     at.line + 1, at.column + 1, lua_tostring(L, -2));
            return -1;
        }
        lua_pop(L, 1);
        yaml_event_t vev;
        if (next_event(ld, &vev) != 0) {
            return -1;
        }
        int rc = parse_node(L, ld, &vev, depth + 1);  /* order map key val */
        yaml_event_delete(&vev);
        if (rc != 0) {
            return -1;
        }
        lua_pushvalue(L, -2);                         /* order map key val key */
        lua_rawseti(L, -5, (lua_Integer)lua_rawlen(L, -5) + 1);
        lua_rawset(L, -3);                            /* order map */
    }
    lua_remove(L, -2);                                /* map */
    /* Registered once complete: an alias inside the node itself would
     * otherwise make a table that contains itself. */
    remember_anchor(L, ld, anchor);
    return 0;
}

static int parse_sequence(lua_State *L, struct loader *ld, int depth,
                          const yaml_char_t *anchor)
{
    bind_new_array(L, 0);
    lua_Integer i = 0;
    for (;;) {
        yaml_event_t ev;
        if (next_event(ld, &ev) != 0) {
            return -1;
        }
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        int rc = parse_node(L, ld, &ev, depth + 1);
        yaml_event_delete(&ev);
        if (rc != 0) {
            return -1;
        }
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushlightuserdata(L, NULL); /* keep the position: null */
        }
        lua_rawseti(L, -2, ++i);
    }
    remember_anchor(L, ld, anchor); /* once complete, as for mappings */
    return 0;
}

static int parse_node(lua_State *L, struct loader *ld, yaml_event_t *ev,
                      int depth)
{
    if (enter_node(L, ld, depth, 8) != 0) {
        return -1;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        if (push_scalar(L, ld, ev) != 0) {
            return -1;
        }
        remember_anchor(L, ld, ev->data.scalar.anchor);
        return 0;
    case YAML_ALIAS_EVENT:
        lua_getfield(L, ld->anchors, (const char *)ev->data.alias.anchor);
        return 0;
    case YAML_MAPPING_START_EVENT:
        if (ev->data.mapping_start.tag &&
            strcmp((const char *)ev->data.mapping_start.tag, YAML_MAP_TAG)) {
            snprintf(ld->err, sizeof ld->err,
                     "line %zu: unsupported tag '%s' (only plain YAML data "
                     "is accepted)", ev->start_mark.line + 1,
                     ev->data.mapping_start.tag);
            return -1;
        }
        return parse_mapping(L, ld, depth, ev->data.mapping_start.anchor);
    case YAML_SEQUENCE_START_EVENT:
        if (ev->data.sequence_start.tag &&
            strcmp((const char *)ev->data.sequence_start.tag, YAML_SEQ_TAG)) {
            snprintf(ld->err, sizeof ld->err,
                     "line %zu: unsupported tag '%s' (only plain YAML data "
                     "is accepted)", ev->start_mark.line + 1,
                     ev->data.sequence_start.tag);
            return -1;
        }
        return parse_sequence(L, ld, depth, ev->data.sequence_start.anchor);
    default:
        snprintf(ld->err, sizeof ld->err, "unexpected YAML event");
        return -1;
    }
}

/* core.yaml.load(text) -> value | nil, message   [-1, +(1|2), m] */
static int l_yaml_load(lua_State *L)
{
    size_t n;
    const char *text = luaL_checklstring(L, 1, &n);
    struct loader *ld = lua_newuserdatauv(L, sizeof *ld, 0); /* keeps it */
    memset(ld, 0, sizeof *ld);
    lua_newtable(L);
    ld->anchors = lua_gettop(L);
    return one_document(L, ld, text, n, parse_node);
}

/* ---- outline ---------------------------------------------------------
 *
 * Where each node of the document sits in the text, so that a change can
 * rewrite one entry and keep every other byte (comments, blank lines,
 * quoting, order) as it was. A node is a table:
 *
 *   kind  "map" | "seq" | "scalar" | "alias"
 *   flow  true for {..} / [..] collections
 *   start, stop  byte offsets (0-based) of the node's first byte and just past its last content; stop
 *         is -1 for an empty scalar (a key with no value)
 *   keys  (map) name -> { kstart =, kstop =, n = times seen, value = node }
 *   order (map) key names in file order
 *   items (seq) the item nodes
 *
 * The end of a block collection is the end of its last content, not
 * libyaml's end mark (which sits on the next token, past any trailing
 * comments and blank lines). */

static int outline_node(lua_State *L, struct loader *ld, yaml_event_t *ev,
                        int depth);

/* The byte offset of character index ci in the (valid UTF-8) text. */
static lua_Integer byte_offset(struct loader *ld, size_t ci)
{
    while (ld->ci < ci && ld->bi < ld->len) {
        ld->bi++;
        while (ld->bi < ld->len && (ld->text[ld->bi] & 0xC0) == 0x80) {
            ld->bi++;
        }
        ld->ci++;
    }
    while (ld->ci > ci && ld->bi > 0) {
        ld->bi--;
        while (ld->bi > 0 && (ld->text[ld->bi] & 0xC0) == 0x80) {
            ld->bi--;
        }
        ld->ci--;
    }
    return (lua_Integer)ld->bi;
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

/* The node on top of the stack: its stop offset. */
static lua_Integer node_stop(lua_State *L)
{
    lua_getfield(L, -1, "stop");
    lua_Integer v = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
}

static void new_node(lua_State *L, struct loader *ld, const char *kind,
                     bool flow, const yaml_event_t *ev)
{
    lua_createtable(L, 0, 6);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    lua_pushboolean(L, flow);
    lua_setfield(L, -2, "flow");
    set_int(L, "start", byte_offset(ld, ev->start_mark.index));
}

static int outline_mapping(lua_State *L, struct loader *ld, yaml_event_t *ev,
                           int depth)
{
    bool flow = ev->data.mapping_start.style == YAML_FLOW_MAPPING_STYLE;
    new_node(L, ld, "map", flow, ev);                     /* node */
    lua_newtable(L);                                  /* node keys */
    lua_newtable(L);                                  /* node keys order */
    lua_Integer stop = byte_offset(ld, ev->end_mark.index);
    for (;;) {
        yaml_event_t kev;
        int k = next_key(ld, &kev);
        if (k < 0) {
            return -1;
        }
        if (k > 0) {
            if (flow) {
                stop = byte_offset(ld, kev.end_mark.index);
            }
            yaml_event_delete(&kev);
            break;
        }
        lua_pushlstring(L, (const char *)kev.data.scalar.value,
                        kev.data.scalar.length);      /* .. order name */
        lua_Integer kstart = byte_offset(ld, kev.start_mark.index);
        lua_Integer kstop = byte_offset(ld, kev.end_mark.index);
        yaml_event_delete(&kev);
        lua_pushvalue(L, -1);
        lua_Integer seen = 0;
        if (lua_rawget(L, -4) == LUA_TTABLE) {        /* .. order name old */
            lua_getfield(L, -1, "n");
            seen = lua_tointeger(L, -1);
            lua_pop(L, 1);
        } else {
            lua_pushvalue(L, -2);
            lua_rawseti(L, -4, (lua_Integer)lua_rawlen(L, -4) + 1);
        }
        lua_pop(L, 1);                                /* .. order name */
        lua_createtable(L, 0, 4);                     /* .. order name entry */
        set_int(L, "kstart", kstart);
        set_int(L, "kstop", kstop);
        set_int(L, "n", seen + 1);
        yaml_event_t vev;
        if (next_event(ld, &vev) != 0) {
            return -1;
        }
        int rc = outline_node(L, ld, &vev, depth + 1); /* .. entry value */
        yaml_event_delete(&vev);
        if (rc != 0) {
            return -1;
        }
        lua_Integer vstop = node_stop(L);
        lua_setfield(L, -2, "value");                 /* .. order name entry */
        if (!flow) {
            stop = kstop > stop ? kstop : stop;
            stop = vstop > stop ? vstop : stop;
        }
        lua_rawset(L, -4);                            /* node keys order */
    }
    lua_setfield(L, -3, "order");
    lua_setfield(L, -2, "keys");
    set_int(L, "stop", stop);
    return 0;
}

static int outline_sequence(lua_State *L, struct loader *ld, yaml_event_t *ev,
                            int depth)
{
    bool flow = ev->data.sequence_start.style == YAML_FLOW_SEQUENCE_STYLE;
    new_node(L, ld, "seq", flow, ev);                     /* node */
    lua_newtable(L);                                  /* node items */
    lua_Integer stop = byte_offset(ld, ev->end_mark.index);
    for (lua_Integer i = 1;; i++) {
        yaml_event_t iev;
        if (next_event(ld, &iev) != 0) {
            return -1;
        }
        if (iev.type == YAML_SEQUENCE_END_EVENT) {
            if (flow) {
                stop = byte_offset(ld, iev.end_mark.index);
            }
            yaml_event_delete(&iev);
            break;
        }
        int rc = outline_node(L, ld, &iev, depth + 1);
        yaml_event_delete(&iev);
        if (rc != 0) {
            return -1;
        }
        lua_Integer istop = node_stop(L);
        if (istop < 0) {
            /* An empty item ("-" alone): libyaml marks its null just past
             * the "-", which is content of the list all the same. */
            lua_getfield(L, -1, "start");
            istop = lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
        if (!flow && istop > stop) {
            stop = istop;
        }
        lua_rawseti(L, -2, i);
    }
    lua_setfield(L, -2, "items");
    set_int(L, "stop", stop);
    return 0;
}

static int outline_node(lua_State *L, struct loader *ld, yaml_event_t *ev,
                        int depth)
{
    if (enter_node(L, ld, depth, 10) != 0) {
        return -1;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        new_node(L, ld, "scalar", false, ev);
        bool empty = ev->data.scalar.length == 0 &&
                     ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                     !ev->data.scalar.tag && !ev->data.scalar.anchor;
        set_int(L, "stop", empty ? -1 : byte_offset(ld, ev->end_mark.index));
        return 0;
    }
    case YAML_ALIAS_EVENT:
        new_node(L, ld, "alias", false, ev);
        set_int(L, "stop", byte_offset(ld, ev->end_mark.index));
        return 0;
    case YAML_MAPPING_START_EVENT:
        return outline_mapping(L, ld, ev, depth);
    case YAML_SEQUENCE_START_EVENT:
        return outline_sequence(L, ld, ev, depth);
    default:
        snprintf(ld->err, sizeof ld->err, "unexpected YAML event");
        return -1;
    }
}

/* core.yaml.outline(text) -> node | nil, message   [-1, +(1|2), m]
 * nil and no message for a document with no content. */
static int l_yaml_outline(lua_State *L)
{
    size_t n;
    const char *text = luaL_checklstring(L, 1, &n);
    struct loader *ld = lua_newuserdatauv(L, sizeof *ld, 0); /* keeps it */
    memset(ld, 0, sizeof *ld);
    ld->text = (const unsigned char *)text;
    ld->len = n;
    return one_document(L, ld, text, n, outline_node);
}

/* ---- dump ----------------------------------------------------------- */

/* What one dump may write: a config is a few kB, but a value loaded from
 * YAML aliases is shared, not copied, and a dump writes a shared value out
 * in full wherever it appears, so a small text of nested aliases would
 * dump to gigabytes. */
#define MAX_DUMP_BYTES ((size_t)64 << 20)

struct outbuf {
    char *data;
    size_t len, cap;
    bool over; /* MAX_DUMP_BYTES reached */
};

static int write_handler(void *ud, unsigned char *buf, size_t size)
{
    struct outbuf *o = ud;
    if (o->len + size > MAX_DUMP_BYTES) {
        o->over = true;
        return 0;
    }
    if (o->len + size > o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 4096;
        while (cap < o->len + size) {
            cap *= 2;
        }
        char *nd = realloc(o->data, cap);
        if (!nd) {
            return 0;
        }
        o->data = nd;
        o->cap = cap;
    }
    memcpy(o->data + o->len, buf, size);
    o->len += size;
    return 1;
}

struct dumper {
    yaml_emitter_t em;
    char err[256];
};

static int emit(struct dumper *d, yaml_event_t *ev)
{
    if (!yaml_emitter_emit(&d->em, ev)) {
        snprintf(d->err, sizeof d->err, "%s",
                 d->em.problem ? d->em.problem : "YAML emitter error");
        return -1;
    }
    return 0;
}

static int emit_scalar(struct dumper *d, const char *s, size_t n, bool quote)
{
    yaml_event_t ev;
    yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)n,
                                 !quote, 1,
                                 quote ? YAML_DOUBLE_QUOTED_SCALAR_STYLE
                                       : YAML_ANY_SCALAR_STYLE);
    return emit(d, &ev);
}

static bool reads_as_other(const char *s)
{
    lua_Integer i;
    double f;
    return is_null(s) || as_bool(s) >= 0 || as_int(s, &i) || as_float(s, &f);
}

static int dump_value(lua_State *L, struct dumper *d, int idx, int depth);

static bool is_array(lua_State *L, int idx)
{
    if (lua_getmetatable(L, idx)) {
        luaL_getmetatable(L, AD_ARRAY_MT);
        bool arr = lua_rawequal(L, -1, -2);
        lua_getfield(L, -2, "__order");
        bool ordered = !lua_isnil(L, -1);
        lua_pop(L, 3);
        if (arr || ordered) {
            return arr;
        }
    }
    return lua_rawlen(L, idx) > 0;
}

static int dump_mapping(lua_State *L, struct dumper *d, int idx, int depth)
{
    yaml_event_t ev;
    yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                        YAML_BLOCK_MAPPING_STYLE);
    if (emit(d, &ev) != 0) {
        return -1;
    }
    /* Keys: __order first, then the rest sorted, each once. */
    lua_newtable(L);                                  /* keys */
    int keys = lua_gettop(L);
    lua_newtable(L);                                  /* keys seen */
    int seen = lua_gettop(L);
    lua_Integer nk = 0;
    if (lua_getmetatable(L, idx)) {
        lua_getfield(L, -1, "__order");
        if (lua_istable(L, -1)) {
            lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
            for (lua_Integer i = 1; i <= n; i++) {
                lua_rawgeti(L, -1, i);
                lua_pushvalue(L, -1);
                if (lua_rawget(L, seen) == LUA_TNIL) {
                    lua_pop(L, 1);
                    lua_pushvalue(L, -1);
                    lua_pushboolean(L, 1);
                    lua_rawset(L, seen);
                    lua_rawseti(L, keys, ++nk);
                } else {
                    lua_pop(L, 2);
                }
            }
        }
        lua_pop(L, 2);
    }
    lua_Integer first_unordered = nk + 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            snprintf(d->err, sizeof d->err, "mapping keys must be strings");
            return -1;
        }
        lua_pushvalue(L, -1);
        if (lua_rawget(L, seen) == LUA_TNIL) {
            lua_pushvalue(L, -2);
            lua_rawseti(L, keys, ++nk);
        }
        lua_pop(L, 1);
    }
    if (nk >= first_unordered) {
        /* table.sort on the unordered tail */
        lua_getglobal(L, "table");
        lua_getfield(L, -1, "sort");
        lua_remove(L, -2);
        lua_createtable(L, (int)(nk - first_unordered + 1), 0);
        for (lua_Integer i = first_unordered; i <= nk; i++) {
            lua_rawgeti(L, keys, i);
            lua_rawseti(L, -2, i - first_unordered + 1);
        }
        lua_pushvalue(L, -1);
        lua_insert(L, -3);
        lua_call(L, 1, 0);
        for (lua_Integer i = first_unordered; i <= nk; i++) {
            lua_rawgeti(L, -1, i - first_unordered + 1);
            lua_rawseti(L, keys, i);
        }
        lua_pop(L, 1);
    }
    for (lua_Integer i = 1; i <= nk; i++) {
        lua_rawgeti(L, keys, i);                      /* key */
        lua_pushvalue(L, -1);
        lua_rawget(L, idx);                           /* key val */
        if (lua_isnil(L, -1)) {
            lua_pop(L, 2); /* null values are omitted */
            continue;
        }
        size_t kl;
        const char *k = lua_tolstring(L, -2, &kl);
        if (emit_scalar(d, k, kl, reads_as_other(k)) != 0 ||
            dump_value(L, d, lua_gettop(L), depth + 1) != 0) {
            return -1;
        }
        lua_pop(L, 2);
    }
    lua_pop(L, 2);
    yaml_mapping_end_event_initialize(&ev);
    return emit(d, &ev);
}

static int dump_sequence(lua_State *L, struct dumper *d, int idx, int depth)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    yaml_event_t ev;
    yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                         n ? YAML_BLOCK_SEQUENCE_STYLE
                                           : YAML_FLOW_SEQUENCE_STYLE);
    if (emit(d, &ev) != 0) {
        return -1;
    }
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        if (dump_value(L, d, lua_gettop(L), depth + 1) != 0) {
            return -1;
        }
        lua_pop(L, 1);
    }
    yaml_sequence_end_event_initialize(&ev);
    return emit(d, &ev);
}

static int dump_value(lua_State *L, struct dumper *d, int idx, int depth)
{
    if (depth > MAX_DEPTH) {
        snprintf(d->err, sizeof d->err, "value nested too deeply (a cycle?)");
        return -1;
    }
    luaL_checkstack(L, 10, "yaml dump");
    char num[48];
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return emit_scalar(d, s, n, reads_as_other(s));
    }
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            snprintf(num, sizeof num, LUA_INTEGER_FMT,
                     (LUAI_UACINT)lua_tointeger(L, idx));
        } else {
            double x = lua_tonumber(L, idx);
            if (isnan(x)) {
                strcpy(num, ".nan");
            } else if (isinf(x)) {
                strcpy(num, x > 0 ? ".inf" : "-.inf");
            } else {
                claude_format_double(x, num, sizeof num);
            }
        }
        return emit_scalar(d, num, strlen(num), false);
    case LUA_TBOOLEAN:
        return emit_scalar(d, lua_toboolean(L, idx) ? "true" : "false",
                           lua_toboolean(L, idx) ? 4 : 5, false);
    case LUA_TNIL:
    case LUA_TLIGHTUSERDATA:
        return emit_scalar(d, "null", 4, false);
    case LUA_TTABLE:
        return is_array(L, idx) ? dump_sequence(L, d, idx, depth)
                                : dump_mapping(L, d, idx, depth);
    default:
        snprintf(d->err, sizeof d->err, "cannot represent a %s in YAML",
                 luaL_typename(L, idx));
        return -1;
    }
}

/* core.yaml.dump(value) -> text | nil, message   [-1, +(1|2), m] */
static int l_yaml_dump(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    struct dumper *d = lua_newuserdatauv(L, sizeof *d, 0);
    memset(d, 0, sizeof *d);
    struct outbuf out = {0};
    yaml_emitter_initialize(&d->em);
    yaml_emitter_set_output(&d->em, write_handler, &out);
    yaml_emitter_set_unicode(&d->em, 1);
    yaml_emitter_set_width(&d->em, 1 << 20);
    yaml_emitter_set_indent(&d->em, 2);
    yaml_event_t ev;
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    int rc = emit(d, &ev);
    if (rc == 0) {
        yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
        rc = emit(d, &ev);
    }
    if (rc == 0) {
        rc = dump_value(L, d, 1, 0);
    }
    if (rc == 0) {
        yaml_document_end_event_initialize(&ev, 1);
        rc = emit(d, &ev);
    }
    if (rc == 0) {
        yaml_stream_end_event_initialize(&ev);
        rc = emit(d, &ev);
    }
    yaml_emitter_delete(&d->em);
    if (rc != 0 && out.over) {
        snprintf(d->err, sizeof d->err,
                 "the YAML text would exceed %zu MiB (values shared through "
                 "YAML aliases are written out in full); not written",
                 MAX_DUMP_BYTES >> 20);
    }
    if (rc != 0) {
        free(out.data);
        lua_pushnil(L);
        lua_pushstring(L, d->err);
        return 2;
    }
    lua_pushlstring(L, out.data ? out.data : "", out.len);
    free(out.data);
    return 1;
}

void bind_yaml_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"load", l_yaml_load},
        {"outline", l_yaml_outline},
        {"dump", l_yaml_dump},
        {NULL, NULL},
    };
    bind_subtable(L, "yaml", fns);
}
