"""cffi builder of popper._cpam: PAM, in a module of its own so that the
main one does not need libpam.  setup.py builds it when configure.py found
<security/pam_appl.h>; without it popper falls back to python-pam.
Twin: popper/auth/libpam.py."""

import os

from cffi import FFI

PAM_CDEF = """
#define PAM_SUCCESS ...
#define PAM_PROMPT_ECHO_OFF ...
#define PAM_PROMPT_ECHO_ON ...
#define PAM_ERROR_MSG ...
#define PAM_TEXT_INFO ...
#define PAM_TTY ...
#define PAM_RHOST ...
#define PAM_ESTABLISH_CRED ...
#define PAM_SILENT ...
#define PAM_DISALLOW_NULL_AUTHTOK ...
#define PAM_BUF_ERR ...
typedef ... pam_handle_t;
struct pam_message { int msg_style; const char *msg; };
struct pam_response { char *resp; int resp_retcode; };
struct pam_conv {
    int (*conv)(int, const struct pam_message **, struct pam_response **, void *);
    void *appdata_ptr;
};
int pam_start(const char *service_name, const char *user, const struct pam_conv *conv,
              pam_handle_t **pamh);
int pam_end(pam_handle_t *pamh, int pam_status);
int pam_set_item(pam_handle_t *pamh, int item_type, const void *item);
int pam_authenticate(pam_handle_t *pamh, int flags);
int pam_acct_mgmt(pam_handle_t *pamh, int flags);
int pam_setcred(pam_handle_t *pamh, int flags);
const char *pam_strerror(pam_handle_t *pamh, int errnum);
void *calloc(size_t nmemb, size_t size);
char *strdup(const char *s);
extern "Python" int popper_pam_conv(int, const struct pam_message **, struct pam_response **,
                                    void *);
"""

ffibuilder = FFI()
ffibuilder.cdef(PAM_CDEF)
ffibuilder.set_source(
    "popper._cpam",
    "#include <security/pam_appl.h>\n#include <stdlib.h>\n#include <string.h>\n",
    libraries=["pam"],
    extra_compile_args=["-O2", "-std=c99", "-Wall"],
)

if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ffibuilder.compile(verbose=True)
