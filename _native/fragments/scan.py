"""The mailbox scanner, _native/scanner.c (twin: popper/maildrop/scan.py).
The constants and array sizes are popper.h's, filled in by the compiler."""

INCLUDES = """
#include "popper.h"
"""

TYPES = """
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
"""

FUNCTIONS = """
int pn_scan(int fd, int64_t start, int64_t limit, int64_t base_time,
            int salted, int old_style, int uw, pn_scan_result *result);
void pn_scan_free(pn_scan_result *result);
int pn_is_from_line(const char *line, size_t n);
void pn_encode_uid(const unsigned char digest[16], char out[20]);
"""

CUSTOMIZATIONS = ""
