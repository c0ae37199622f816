"""Classic ndbm files, _native/ndbm.c (twin: popper/ndbm.py's pure engine)."""

INCLUDES = """
#include "popper.h"
"""

TYPES = """
#define PN_NDBM_PBLKSIZ ...
#define PN_NDBM_OK ...
#define PN_NDBM_NONE ...
#define PN_NDBM_CORRUPT ...
#define PN_NDBM_TOO_BIG ...
#define PN_NDBM_NO_ROOM ...
#define PN_NDBM_IO ...
typedef struct { int error; int reason; int64_t page; } pn_ndbm_status;
"""

FUNCTIONS = """
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

CUSTOMIZATIONS = ""
