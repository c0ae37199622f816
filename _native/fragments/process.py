"""prctl(2), Linux's (twin: popper/privsep.py's through ctypes): the login
process drops its capabilities and sets no_new_privs with it.  Elsewhere
Popper_HAS_PRCTL is 0 and popper_prctl fails with ENOSYS.  A wrapper with
fixed arguments, as the C library's prctl is variadic."""

INCLUDES = """
#include <errno.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
"""

TYPES = """
static const long Popper_HAS_PRCTL;
"""

FUNCTIONS = """
int popper_prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4,
                 unsigned long arg5);
"""

CUSTOMIZATIONS = """
#ifdef __linux__
static const long Popper_HAS_PRCTL = 1;
static int popper_prctl(int option, unsigned long arg2, unsigned long arg3,
                        unsigned long arg4, unsigned long arg5)
{
    return prctl(option, arg2, arg3, arg4, arg5);
}
#else
static const long Popper_HAS_PRCTL = 0;
static int popper_prctl(int option, unsigned long arg2, unsigned long arg3,
                        unsigned long arg4, unsigned long arg5)
{
    (void)option; (void)arg2; (void)arg3; (void)arg4; (void)arg5;
    errno = ENOSYS;
    return -1;
}
#endif
"""
