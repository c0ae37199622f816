/* popper.h -- the C side of popper's native module.
 *
 * Every function here has a pure-Python twin (named beside it); the
 * parity tests run both on the same input and compare the results.
 * build_native.py declares the same things to cffi. */
#ifndef POPPER_NATIVE_H
#define POPPER_NATIVE_H

#include <stddef.h>
#include <stdint.h>

/* --- the mailbox scanner (twin: popper/maildrop/scan.py) --- */

#define PN_SEEN         1   /* a Status: header holds an upper-case R */
#define PN_HAS_STATUS   2   /* the header has a Status: line */
#define PN_HAS_UIDL     4   /* the UID came from a valid X-UIDL: header */
#define PN_MMDF_MESSAGE 8   /* the message is in MMDF format */
#define PN_UW_DATA      16  /* UW-IMAP's folder internal data message */

#define PN_EMPTY 0
#define PN_MBOX  1
#define PN_MMDF  2

#define PN_OK               0
#define PN_NOT_A_MAILBOX    1
#define PN_IO_ERROR         2
#define PN_NO_MEMORY        3

#define PN_MAX_UID 70
#define PN_MAX_SEPARATOR 1023

typedef struct {
    int64_t start;          /* the separator line */
    int64_t header;         /* the first header line */
    int64_t body;           /* the blank line that ends the header */
    int64_t content_end;    /* end of the message's own bytes */
    int64_t end;            /* start of the next message, or end of file */
    int64_t octets;         /* what RETR sends, before dot-stuffing */
    int32_t flags;
    int32_t uid_len;
    char uid[PN_MAX_UID + 2];
} pn_message;

typedef struct {
    pn_message *messages;
    size_t count;
    int format;             /* PN_EMPTY, PN_MBOX or PN_MMDF */
    int error;              /* errno, with PN_IO_ERROR */
    size_t separator_len;   /* MMDF: the separator line */
    char separator[PN_MAX_SEPARATOR + 1];
} pn_scan_result;

int pn_scan(int fd, int64_t start, int64_t limit, int64_t base_time,
            int salted, int old_style, int uw, pn_scan_result *result);
void pn_scan_free(pn_scan_result *result);
int pn_is_from_line(const char *line, size_t n);
void pn_encode_uid(const unsigned char digest[16], char out[20]);

/* --- the wire encoder (twin: popper/maildrop/wire.py) --- */

#define PN_AT_LINE_START 1
#define PN_AFTER_CR      2

size_t pn_wire_encode(const char *in, size_t n, char *out, int *state);

#endif
