/* Identifier generation: 16 bytes from getrandom(2), libuuid when the
 * kernel cannot give them at once (no getrandom, or its pool not yet
 * initialised). libuuid's generator seeds a second source on every call
 * (getpid, getuid, getppid, gettid and the time): five system calls and
 * about 10,000 instructions per identifier, one per dispatch. */
#include <errno.h>
#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "ad/ids.h"

/* Up to n bytes from getrandom(2) with flags, retried on EINTR; stops at
 * the first other failure. Returns how many it got. */
static size_t getrandom_fill(unsigned char *u, size_t n, unsigned flags)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(u + got, n - got, flags);
        if (r > 0) {
            got += (size_t)r;
        } else if (r == 0 || errno != EINTR) {
            break;
        }
    }
    return got;
}

/* A random version 4 UUID's 16 bytes (as uuid_generate_random gives). */
static void random16(unsigned char u[16])
{
    if (getrandom_fill(u, 16, GRND_NONBLOCK) < 16) {
        uuid_generate_random(u);
        return;
    }
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x40); /* version 4 */
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
}

static void put_hex(char *out, const unsigned char *u, int from, int to)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = from; i < to; i++) {
        *out++ = hex[u[i] >> 4];
        *out++ = hex[u[i] & 15];
    }
}

void ids_uuid4(char out[37])
{
    unsigned char u[16];
    random16(u);
    /* 8-4-4-4-12 */
    put_hex(out, u, 0, 4);
    out[8] = '-';
    put_hex(out + 9, u, 4, 6);
    out[13] = '-';
    put_hex(out + 14, u, 6, 8);
    out[18] = '-';
    put_hex(out + 19, u, 8, 10);
    out[23] = '-';
    put_hex(out + 24, u, 10, 16);
    out[36] = '\0';
}

void ids_hex32(char out[33])
{
    unsigned char u[16];
    random16(u);
    put_hex(out, u, 0, 16);
    out[32] = '\0';
}

/* n bytes from the kernel's generator: getrandom(2), which waits only
 * while the pool is not yet initialised, else /dev/urandom. No version
 * bits are set: every bit is random. */
static int random_bytes(unsigned char *u, size_t n)
{
    size_t got = getrandom_fill(u, n, 0);
    if (got == n) {
        return 0;
    }
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    while (got < n) {
        ssize_t r = read(fd, u + got, n - got);
        if (r > 0) {
            got += (size_t)r;
        } else if (r == 0 || errno != EINTR) {
            break;
        }
    }
    close(fd);
    return got == n ? 0 : -1;
}

int ids_token32(char out[33])
{
    unsigned char u[16];
    if (random_bytes(u, sizeof u) != 0) {
        return -1;
    }
    put_hex(out, u, 0, 16);
    out[32] = '\0';
    return 0;
}
