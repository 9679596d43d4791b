/* Lua face of files, paths and the cross-process lock: core.fs.
 *
 *   core.fs.read_file(path [, max [, nofollow]]) -> data | nil, msg, code
 *   core.fs.read_trusted(path [, max]) -> data | nil, why, "untrusted"|code
 *   core.fs.dirs_trusted(realpath) -> true | nil, why (no one else can
 *       rename what realpath names: see fs_dirs_trusted)
 *   core.fs.write_atomic(path, data [, mode [, nofollow]]) -> true | nil,
 *       msg, code (nofollow: a symlink at path is replaced, not followed)
 *   core.fs.append(path, data [, mode]) -> true | nil, msg, code (one
 *       write on an O_APPEND descriptor; a symlink is refused)
 *   core.fs.appender(path [, mode]) -> appender | nil, msg, code (the same
 *       descriptor kept open for many records)
 *   appender:write(data [, tail [, limit]]) -> true | nil, msg, code
 *       (data then tail in one append; "ENOENT": the file was removed
 *       since it was opened; "EFBIG": it holds limit bytes already)
 *   appender:close()
 *   core.fs.mkdirs(dir) / core.fs.mkparent(path) -> true | nil, msg, code
 *   core.fs.lock(path [, timeout_s]) -> lock | nil, "timeout" (yields while
 *       another holder has it; woken by the kernel when it is released)
 *   lock:read([max]) -> data | nil, msg, code (the lock file's contents)
 *   lock:write(data) -> true | nil, msg, code (replaced in place, no fsync)
 *   core.fs.stat(path) -> "file"|"dir"|"other", mtime, mode, uid
 *       | nil, msg, code
 *   core.fs.realpath(path) -> path | nil, msg, code
 *   core.fs.file_id(path) -> "dev:ino:size:mtime.ns" | nil
 *   core.fs.listdir(dir) -> {names} | nil, msg, code
 *   core.fs.unlink(path) -> true | nil, msg, code
 *   core.fs.rmdir(path) -> true | nil, msg, code (an empty directory)
 *   core.fs.free_space(path) -> bytes available to this user on the file
 *       system holding path | nil, msg, code
 *
 * Project probes live in project.c, text and ids in text.c, facts about
 * this process in sys.c.
 *
 * Over 500 lines on purpose: one binding per fsutil.h primitive, with the
 * lock wait (a thread woken by the kernel) the only part of any length.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ad/fsutil.h"
#include "ad/sched.h"
#include "bind/bind.h"

#define LOCK_MT "ad.lock"
#define APPENDER_MT "ad.appender"

static int fail_errno(lua_State *L, int neg, const char *path)
{
    return bind_fail(L, neg, path);
}

static int l_read_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Integer max = luaL_optinteger(L, 2, 64 * 1024 * 1024);
    int nofollow = lua_toboolean(L, 3);
    char *data;
    size_t len;
    int rc = fs_read_file(path, (size_t)max, nofollow, &data, &len);
    if (rc != 0) {
        return fail_errno(L, rc, path);
    }
    lua_pushlstring(L, data, len);
    free(data);
    return 1;
}

/* core.fs.read_trusted(path [, max]) -> data | nil, msg, code: code
 * "untrusted" (msg says why) when the file or a directory on its path could
 * have been written by someone else (see fs_read_trusted). */
static int l_read_trusted(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Integer max = luaL_optinteger(L, 2, 64 * 1024 * 1024);
    char why[PATH_MAX + 200];
    char *data;
    size_t len;
    int rc = fs_read_trusted(path, (size_t)max, getuid(), &data, &len, why,
                             sizeof why);
    if (rc == -EPERM && why[0]) {
        lua_pushnil(L);
        lua_pushstring(L, why);
        lua_pushliteral(L, "untrusted");
        return 3;
    }
    if (rc != 0) {
        return fail_errno(L, rc, path);
    }
    lua_pushlstring(L, data, len);
    free(data);
    return 1;
}

/* core.fs.dirs_trusted(realpath) -> true | nil, why (fs_dirs_trusted) */
static int l_dirs_trusted(lua_State *L)
{
    char why[PATH_MAX + 200];
    if (fs_dirs_trusted(luaL_checkstring(L, 1), getuid(), why, sizeof why)) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
}

static int l_write_atomic(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t n;
    const char *data = luaL_checklstring(L, 2, &n);
    lua_Integer mode = luaL_optinteger(L, 3, 0600);
    int rc = lua_toboolean(L, 4)
                 ? fs_write_atomic_nofollow(path, data, n, (mode_t)mode)
                 : fs_write_atomic(path, data, n, (mode_t)mode);
    if (rc != 0) {
        return fail_errno(L, rc, path);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_append(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t n;
    const char *data = luaL_checklstring(L, 2, &n);
    lua_Integer mode = luaL_optinteger(L, 3, 0600);
    int rc = fs_append(path, data, n, (mode_t)mode);
    if (rc != 0) {
        return fail_errno(L, rc, path);
    }
    lua_pushboolean(L, 1);
    return 1;
}

struct appender {
    int fd;
};

static int l_appender(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Integer mode = luaL_optinteger(L, 2, 0600);
    struct appender *ap = lua_newuserdatauv(L, sizeof *ap, 0);
    ap->fd = -1;
    luaL_setmetatable(L, APPENDER_MT);
    int fd = fs_append_open(path, (mode_t)mode);
    if (fd < 0) {
        return fail_errno(L, fd, path);
    }
    ap->fd = fd;
    return 1;
}

static int l_appender_write(lua_State *L)
{
    struct appender *ap = luaL_checkudata(L, 1, APPENDER_MT);
    struct iovec iov[2];
    iov[0].iov_base = (void *)luaL_checklstring(L, 2, &iov[0].iov_len);
    /* The tail (a record's newline) is joined here, in one writev: no
     * second copy of the record as a Lua string. */
    iov[1].iov_base = (void *)luaL_optlstring(L, 3, "", &iov[1].iov_len);
    lua_Integer limit = luaL_optinteger(L, 4, 0);
    if (ap->fd < 0) {
        return luaL_error(L, "write on a closed appender");
    }
    int rc = fs_append_iov(ap->fd, iov, iov[1].iov_len > 0 ? 2 : 1,
                           (off_t)limit);
    if (rc != 0) {
        return fail_errno(L, rc, "appender");
    }
    lua_pushboolean(L, 1);
    return 1;
}

int bind_fs_appender_fd(lua_State *L, int idx)
{
    struct appender *ap = luaL_checkudata(L, idx, APPENDER_MT);
    if (ap->fd < 0) {
        luaL_error(L, "write on a closed appender");
    }
    return ap->fd;
}

static int l_appender_close(lua_State *L)
{
    struct appender *ap = luaL_checkudata(L, 1, APPENDER_MT);
    if (ap->fd >= 0) {
        close(ap->fd);
        ap->fd = -1;
    }
    return 0;
}

static int l_mkdirs(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    int rc = fs_mkdirs(dir, (mode_t)luaL_optinteger(L, 2, 0700));
    if (rc != 0) {
        return fail_errno(L, rc, dir);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_mkparent(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int rc = fs_mkparent(path, (mode_t)luaL_optinteger(L, 2, 0700));
    if (rc != 0) {
        return fail_errno(L, rc, path);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- cross-process lock ------------------------------------------------ */

struct lock {
    int fd;
};

/* A contended lock is waited for by a thread of its own blocked in
 * flock(LOCK_EX): the kernel wakes it when the holder lets go, so nothing
 * polls. The loop side keeps a timer for the bound; when it expires (or the
 * task is cancelled) it sets `stop` and signals the thread, which makes
 * flock() fail with EINTR. A signal that lands just before the thread
 * enters flock() would be lost, so the timer repeats the signal every
 * LOCK_KICK_MS until the thread has reported back. A thread of our own
 * rather than the libuv threadpool: pthread_kill must reach the one thread
 * blocked for this wait, never a pool worker already running other work. */
#define LOCK_KICK_MS 10

struct lock_wait {
    uv_timer_t timer;
    uv_async_t done;
    pthread_t thread;
    struct task *task; /* NULL once cancelled: nobody to resume */
    char *path;
    atomic_bool stop;
    int rc;
    int fd;
    int open_handles;
};

static int lock_signal(void)
{
    return SIGRTMIN;
}

static void on_lock_signal(int sig)
{
    (void)sig; /* only here to interrupt flock() (no SA_RESTART) */
}

static int lock_signal_install(void)
{
    static bool installed;
    if (installed) {
        return 0;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_lock_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(lock_signal(), &sa, NULL) != 0) {
        return -errno;
    }
    installed = true;
    return 0;
}

static void lock_wait_closed(uv_handle_t *h)
{
    struct lock_wait *w = h->data;
    if (--w->open_handles == 0) {
        free(w->path);
        free(w);
    }
}

static void push_lock(lua_State *L, int fd)
{
    struct lock *lk = lua_newuserdatauv(L, sizeof *lk, 0);
    lk->fd = fd;
    luaL_setmetatable(L, LOCK_MT);
}

static void *lock_thread(void *arg)
{
    struct lock_wait *w = arg;
    sigset_t set;
    sigfillset(&set);
    sigdelset(&set, lock_signal());
    pthread_sigmask(SIG_SETMASK, &set, NULL);
    w->rc = fs_lock_wait(w->path, &w->fd, &w->stop);
    uv_async_send(&w->done);
    return NULL;
}

/* Loop side: the thread has returned (lock granted, stopped or failed). */
static void on_lock_done(uv_async_t *h)
{
    struct lock_wait *w = h->data;
    pthread_join(w->thread, NULL);
    uv_close((uv_handle_t *)&w->timer, lock_wait_closed);
    uv_close((uv_handle_t *)&w->done, lock_wait_closed);
    struct task *t = w->task;
    if (!t) {
        if (w->rc == 0) {
            fs_unlock(w->fd);
        }
        return;
    }
    lua_State *co = sched_thread(t);
    int n = 1;
    if (w->rc == 0) {
        push_lock(co, w->fd);
    } else if (w->rc == -EINTR) {
        lua_pushnil(co);
        lua_pushliteral(co, "timeout");
        n = 2;
    } else {
        n = fail_errno(co, w->rc, NULL);
    }
    sched_resume(t, n);
}

/* The bound has passed (or the wait was cancelled): stop the thread. */
static void on_lock_kick(uv_timer_t *h)
{
    struct lock_wait *w = h->data;
    atomic_store(&w->stop, true);
    pthread_kill(w->thread, lock_signal());
}

static void cancel_lock_wait(struct task *t, void *data)
{
    struct lock_wait *w = data;
    (void)t;
    w->task = NULL;
    uv_timer_start(&w->timer, on_lock_kick, 0, LOCK_KICK_MS);
}

static int start_lock_wait(lua_State *L, const char *path, double timeout)
{
    struct task *me = sched_check_wait(L);
    int rc = lock_signal_install();
    if (rc != 0) {
        return fail_errno(L, rc, "lock");
    }
    struct lock_wait *w = calloc(1, sizeof *w);
    char *p = strdup(path);
    if (!w || !p) {
        free(w);
        free(p);
        return luaL_error(L, "out of memory");
    }
    w->path = p;
    w->fd = -1;
    atomic_init(&w->stop, false);
    uv_loop_t *loop = sched_loop();
    uv_async_init(loop, &w->done, on_lock_done);
    uv_timer_init(loop, &w->timer);
    w->done.data = w;
    w->timer.data = w;
    w->open_handles = 2;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    rc = pthread_create(&w->thread, &attr, lock_thread, w);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        uv_close((uv_handle_t *)&w->timer, lock_wait_closed);
        uv_close((uv_handle_t *)&w->done, lock_wait_closed);
        return fail_errno(L, -rc, "lock");
    }
    w->task = me;
    sched_timer_start(&w->timer, on_lock_kick, sched_ms(timeout),
                      LOCK_KICK_MS);
    return sched_wait(L, cancel_lock_wait, w);
}

static int l_lock(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    double timeout = luaL_optnumber(L, 2, 10.0);
    int fd = -1;
    int rc = fs_lock_try(path, &fd);
    if (rc == 0) {
        push_lock(L, fd);
        return 1;
    }
    if (rc != -EWOULDBLOCK) {
        return fail_errno(L, rc, path);
    }
    if (timeout <= 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "timeout");
        return 2;
    }
    return start_lock_wait(L, path, timeout);
}

static int l_unlock(lua_State *L)
{
    struct lock *lk = luaL_checkudata(L, 1, LOCK_MT);
    if (lk->fd >= 0) {
        fs_unlock(lk->fd);
        lk->fd = -1;
    }
    return 0;
}

static int l_lock_read(lua_State *L)
{
    struct lock *lk = luaL_checkudata(L, 1, LOCK_MT);
    lua_Integer max = luaL_optinteger(L, 2, 1024 * 1024);
    if (lk->fd < 0) {
        return luaL_error(L, "lock:read on a released lock");
    }
    char *data;
    size_t len;
    int rc = fs_lock_read(lk->fd, (size_t)max, &data, &len);
    if (rc != 0) {
        return fail_errno(L, rc, "lock file");
    }
    lua_pushlstring(L, data, len);
    free(data);
    return 1;
}

static int l_lock_write(lua_State *L)
{
    struct lock *lk = luaL_checkudata(L, 1, LOCK_MT);
    size_t n;
    const char *data = luaL_checklstring(L, 2, &n);
    if (lk->fd < 0) {
        return luaL_error(L, "lock:write on a released lock");
    }
    int rc = fs_lock_rewrite(lk->fd, data, n);
    if (rc != 0) {
        return fail_errno(L, rc, "lock file");
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- paths ------------------------------------------------------------- */

static int l_stat(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(path, &st) != 0) {
        return fail_errno(L, -errno, path);
    }
    lua_pushstring(L, S_ISDIR(st.st_mode) ? "dir"
                      : S_ISREG(st.st_mode) ? "file" : "other");
    lua_pushinteger(L, (lua_Integer)st.st_mtime);
    lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
    lua_pushinteger(L, (lua_Integer)st.st_uid);
    return 4;
}

/* Writes v in decimal so that it ends just before end; returns its start.
 * (file_id runs on every dispatch and every config re-read: five
 * lua_pushfstring conversions cost ten times this.) */
static char *put_decimal(char *end, long long v)
{
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        *--end = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) {
        *--end = '-';
    }
    return end;
}

void bind_push_file_id(lua_State *L, const struct stat *st)
{
    const long long part[5] = {(long long)st->st_dev, (long long)st->st_ino,
                               (long long)st->st_size, (long long)st->st_mtim.tv_sec,
                               (long long)st->st_mtim.tv_nsec};
    static const char sep[5] = {':', ':', ':', '.', 0};
    char buf[5 * 21];
    char *end = buf + sizeof buf, *p = end;
    for (int i = 4; i >= 0; i--) {
        if (sep[i]) {
            *--p = sep[i];
        }
        p = put_decimal(p, part[i]);
    }
    lua_pushlstring(L, p, (size_t)(end - p));
}

/* core.fs.file_id(path) -> "dev:ino:size:mtime.ns" | nil: changes whenever
 * the file is replaced (atomic writes give a new inode) or modified. */
static int l_file_id(lua_State *L)
{
    struct stat st;
    if (stat(luaL_checkstring(L, 1), &st) != 0) {
        lua_pushnil(L);
        return 1;
    }
    bind_push_file_id(L, &st);
    return 1;
}

static int l_realpath(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    char buf[PATH_MAX];
    if (!realpath(path, buf)) {
        return fail_errno(L, -errno, path);
    }
    lua_pushstring(L, buf);
    return 1;
}

static int l_listdir(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    DIR *d = opendir(dir);
    if (!d) {
        return fail_errno(L, -errno, dir);
    }
    lua_newtable(L);
    lua_Integer i = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            lua_pushstring(L, de->d_name);
            lua_rawseti(L, -2, ++i);
        }
    }
    closedir(d);
    return 1;
}

static int l_unlink(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    if (unlink(path) != 0) {
        return fail_errno(L, -errno, path);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_rmdir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    if (rmdir(path) != 0) {
        return fail_errno(L, -errno, path);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_free_space(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct statvfs sv;
    if (statvfs(path, &sv) != 0) {
        return fail_errno(L, -errno, path);
    }
    lua_pushinteger(L, (lua_Integer)sv.f_bavail * (lua_Integer)sv.f_frsize);
    return 1;
}

void bind_fs_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"read_file", l_read_file},
        {"read_trusted", l_read_trusted},
        {"dirs_trusted", l_dirs_trusted},
        {"write_atomic", l_write_atomic},
        {"append", l_append},
        {"appender", l_appender},
        {"mkdirs", l_mkdirs},
        {"mkparent", l_mkparent},
        {"lock", l_lock},
        {"stat", l_stat},
        {"realpath", l_realpath},
        {"file_id", l_file_id},
        {"listdir", l_listdir},
        {"unlink", l_unlink},
        {"rmdir", l_rmdir},
        {"free_space", l_free_space},
        {NULL, NULL},
    };
    if (luaL_newmetatable(L, LOCK_MT)) {
        lua_newtable(L);
        lua_pushcfunction(L, l_unlock);
        lua_setfield(L, -2, "unlock");
        lua_pushcfunction(L, l_lock_read);
        lua_setfield(L, -2, "read");
        lua_pushcfunction(L, l_lock_write);
        lua_setfield(L, -2, "write");
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_unlock);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_unlock);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, APPENDER_MT)) {
        lua_newtable(L);
        lua_pushcfunction(L, l_appender_write);
        lua_setfield(L, -2, "write");
        lua_pushcfunction(L, l_appender_close);
        lua_setfield(L, -2, "close");
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_appender_close);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    bind_subtable(L, "fs", fns);
}
