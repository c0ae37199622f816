"""A PAM login (twin: popper/auth/libpam.py, python-pam).  The
conversation is a Python callback, popper_pam_conv in popper/native.py."""

INCLUDES = """
#include <security/pam_appl.h>
#include <stdlib.h>
#include <string.h>
"""

TYPES = """
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
"""

FUNCTIONS = """
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

CUSTOMIZATIONS = ""
