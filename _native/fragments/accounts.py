"""The account databases: passwd and shadow (twins: popper/auth/unixdb.py)."""

INCLUDES = """
#include <pwd.h>
#include <shadow.h>
"""

TYPES = """
typedef int... uid_t;
typedef int... gid_t;
struct passwd { char *pw_name; char *pw_passwd; uid_t pw_uid; gid_t pw_gid;
                char *pw_gecos; char *pw_dir; char *pw_shell; ...; };
struct spwd { char *sp_namp; char *sp_pwdp; long sp_lstchg; long sp_min; long sp_max;
              long sp_warn; long sp_inact; long sp_expire; ...; };
"""

FUNCTIONS = """
int getpwnam_r(const char *name, struct passwd *pwd, char *buf, size_t buflen,
               struct passwd **result);
struct spwd *getspnam(const char *name);
void setpwent(void);
struct passwd *getpwent(void);
void endpwent(void);
void setspent(void);
struct spwd *getspent(void);
void endspent(void);
"""

CUSTOMIZATIONS = ""
