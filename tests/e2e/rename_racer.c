/* Swaps two paths with renameat2(RENAME_EXCHANGE) as fast as it can until
 * killed or for at most SECONDS: the attacker's half of a check-then-open
 * race, used by trust_defects.test.js.
 *
 *   rename_racer A B SECONDS */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: rename_racer A B SECONDS\n");
        return 2;
    }
    time_t end = time(NULL) + atoi(argv[3]);
    unsigned long n = 0;
    while (time(NULL) < end) {
        if (syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2],
                    RENAME_EXCHANGE) != 0) {
            perror("renameat2");
            return 1;
        }
        n++;
    }
    printf("%lu swaps\n", n);
    return 0;
}
