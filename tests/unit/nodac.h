/* Running as root bypasses file permission checks (CAP_DAC_OVERRIDE and
 * CAP_DAC_READ_SEARCH), so an EACCES path cannot be reached by root. Tests
 * of such paths call dac_caps(false) around the check: the process then
 * has no permission-bypassing capability in its effective set and the mode
 * bits apply to it as to any unprivileged owner; dac_caps(true) raises them
 * again (they stay in the permitted set). For a non-root process both are
 * no-ops. Returns 0, or -1 when the capability calls fail. */
#ifndef AD_TEST_NODAC_H
#define AD_TEST_NODAC_H
#include <linux/capability.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <unistd.h>

static int dac_caps(bool on)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0) {
        return -1;
    }
    const unsigned bits =
        (1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH);
    if (on) {
        d[0].effective |= bits & d[0].permitted;
    } else {
        d[0].effective &= ~bits;
    }
    return syscall(SYS_capset, &h, d) == 0 ? 0 : -1;
}
#endif
