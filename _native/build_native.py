"""cffi builder of popper's native module, popper._cpopper (API mode).

setup.py names it in cffi_modules; `python _native/build_native.py` builds
the module in place for a checkout.  The declarations come in one fragment
per subsystem; each C function has a pure-Python twin (see _native/popper.h).
"""

import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

# The constants and array sizes are popper.h's, filled in by the compiler.
SCANNER_CDEF = """
#define PN_SEEN ...
#define PN_HAS_STATUS ...
#define PN_HAS_UIDL ...
#define PN_MMDF_MESSAGE ...
#define PN_UW_DATA ...
#define PN_EMPTY ...
#define PN_MBOX ...
#define PN_MMDF ...
#define PN_OK ...
#define PN_NOT_A_MAILBOX ...
#define PN_IO_ERROR ...
#define PN_NO_MEMORY ...

typedef struct {
    int64_t start;
    int64_t header;
    int64_t body;
    int64_t content_end;
    int64_t end;
    int64_t octets;
    int32_t flags;
    int32_t uid_len;
    char uid[...];
} pn_message;

typedef struct {
    pn_message *messages;
    size_t count;
    int format;
    int error;
    size_t separator_len;
    char separator[...];
} pn_scan_result;

int pn_scan(int fd, int64_t start, int64_t limit, int64_t base_time,
            int salted, int old_style, int uw, pn_scan_result *result);
void pn_scan_free(pn_scan_result *result);
int pn_is_from_line(const char *line, size_t n);
void pn_encode_uid(const unsigned char digest[16], char out[20]);
"""

WIRE_CDEF = """
#define PN_AT_LINE_START ...
#define PN_AFTER_CR ...
size_t pn_wire_encode(const char *in, size_t n, char *out, int *state);
"""

CRYPT_CDEF = """
struct crypt_data { ...; };
char *crypt_r(const char *phrase, const char *setting, struct crypt_data *data);
char *crypt_gensalt_rn(const char *prefix, unsigned long count, const char *rbytes,
                       int nrbytes, char *output, int output_size);
"""

# The account databases (twins: popper/auth/unixdb.py).
ACCOUNTS_CDEF = """
typedef int... uid_t;
typedef int... gid_t;
struct passwd { char *pw_name; char *pw_passwd; uid_t pw_uid; gid_t pw_gid;
                char *pw_gecos; char *pw_dir; char *pw_shell; ...; };
struct spwd { char *sp_namp; char *sp_pwdp; long sp_lstchg; long sp_min; long sp_max;
              long sp_warn; long sp_inact; long sp_expire; ...; };
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

# Classic ndbm files (twin: popper/ndbm.py).
NDBM_CDEF = """
#define PN_NDBM_PBLKSIZ ...
#define PN_NDBM_OK ...
#define PN_NDBM_NONE ...
#define PN_NDBM_CORRUPT ...
#define PN_NDBM_TOO_BIG ...
#define PN_NDBM_NO_ROOM ...
#define PN_NDBM_IO ...
typedef struct { int error; int reason; int64_t page; } pn_ndbm_status;
uint32_t pn_ndbm_hash(const char *key, size_t n);
int pn_ndbm_fetch(int dir_fd, int pag_fd, int big, const char *key, size_t klen,
                  char out[], size_t *outlen, pn_ndbm_status *status);
int pn_ndbm_store(int dir_fd, int pag_fd, int big, const char *key, size_t klen,
                  const char *value, size_t vlen, int replace, pn_ndbm_status *status);
int pn_ndbm_delete(int dir_fd, int pag_fd, int big, const char *key, size_t klen,
                   pn_ndbm_status *status);
int pn_ndbm_page_keys(int pag_fd, int big, int64_t number, char out[], uint16_t lens[],
                      int *count, pn_ndbm_status *status);
"""

ffibuilder = FFI()
for fragment in (SCANNER_CDEF, WIRE_CDEF, CRYPT_CDEF, ACCOUNTS_CDEF, NDBM_CDEF):
    ffibuilder.cdef(fragment)

ffibuilder.set_source(
    "popper._cpopper",
    '#include "popper.h"\n#include <crypt.h>\n#include <pwd.h>\n#include <shadow.h>\n',
    sources=[os.path.relpath(os.path.join(HERE, name))
             for name in ("scanner.c", "wire.c", "md5.c", "ndbm.c")],
    include_dirs=[os.path.relpath(HERE)],
    libraries=["crypt"],
    extra_compile_args=["-O3", "-std=c99", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    os.chdir(os.path.dirname(HERE))
    ffibuilder.compile(verbose=True)
