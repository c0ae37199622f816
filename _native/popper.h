/* popper.h -- the C side of popper's native module.
 *
 * Every function here has a pure-Python twin (named beside it); the
 * parity tests run both on the same input and compare the results.
 * _native/fragments/scan.py and wire.py declare the same things to cffi. */
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
size_t pn_retr_reply(const char *prefix, size_t prefix_len, const char *data, size_t cut,
                     size_t end, const char *uid, size_t uid_len, char *out);

/* --- a kept message's edits at QUIT (twin: popper/maildrop/rewrite.py; rewrite.c) --- */

#define PN_EDITS_OTHER_FORMAT 1     /* into a spool of the other format: the caller's case */
#define PN_EDITS_NO_ROOM      2     /* out is too small, or the offsets are out of order */

size_t pn_message_edits_room(size_t len, size_t uid_len, size_t mmdf_len);
int pn_message_edits(const char *msg, size_t len, size_t header, size_t body,
                     size_t content_end, int flags, const char *uid, size_t uid_len,
                     int seen, int headers, int add_status, const char *mmdf,
                     size_t mmdf_len, char *out, size_t room, long *lens);

/* --- server mode's compaction plan (twin: popper/maildrop/compact.py; compact.c) --- */

#define PN_PLAN_ELSEWHERE 4         /* a message this does not plan: the caller plans them all */

typedef struct {
    int64_t *segments;      /* count segments of 4: source (0 spool, 1 plan), a, b, dest */
    size_t count, cap;
    char *literal;          /* the plan's bytes the segments of source 1 read */
    size_t literal_len, literal_cap;
    int64_t start, total;   /* where the first segment goes; the new spool's size */
    int error;              /* errno, with PN_IO_ERROR */
} pn_plan;

int pn_compact_plan(int fd, const int64_t *kept, size_t nkept, const int64_t *start,
                    const int64_t *header, const int64_t *body, const int64_t *content_end,
                    const int64_t *end, const int *flags, const char *uids,
                    const int64_t *uid_ends, const unsigned char *seen, int headers,
                    int add_status, const char *mmdf, size_t mmdf_len, const char *first,
                    size_t first_len, size_t head, int64_t piece, pn_plan *plan);
void pn_plan_free(pn_plan *plan);
int pn_compact_write(int spool_fd, int stage_fd, const int64_t *segments, size_t count,
                     const char *literal, int64_t sa, int64_t sb, int64_t stage_at,
                     int64_t head);

/* --- classic ndbm files (twin: popper/ndbm.py; ndbm.c) --- */

#define PN_NDBM_PBLKSIZ  1024       /* a .pag page */
#define PN_NDBM_DBLKSIZ  4096       /* a .dir block */

/* What each call returns. */
#define PN_NDBM_OK        0         /* found, stored, deleted, a page's keys */
#define PN_NDBM_NONE      1         /* not there; there already (insert); past the last page */
#define PN_NDBM_CORRUPT  (-1)       /* status.reason, status.page (-1: the .dir map) */
#define PN_NDBM_TOO_BIG  (-2)       /* key + value over what a page holds */
#define PN_NDBM_NO_ROOM  (-3)       /* a full page whose keys all hash like the new one */
#define PN_NDBM_IO       (-4)       /* status.error is the errno */

/* Why a file is corrupted (popper/ndbm.py's CORRUPT_REASONS). */
#define PN_NDBM_ODD_COUNT     1
#define PN_NDBM_COUNT_PAST    2
#define PN_NDBM_OUT_OF_ORDER  3
#define PN_NDBM_OVERLAP       4
#define PN_NDBM_TOO_DEEP      5

typedef struct {
    int error;
    int reason;
    int64_t page;
} pn_ndbm_status;

/* big: the files' shorts are big-endian (else little-endian). */
uint32_t pn_ndbm_hash(const char *key, size_t n);
int pn_ndbm_fetch(int dir_fd, int pag_fd, int big, const char *key, size_t klen,
                  char out[PN_NDBM_PBLKSIZ], size_t *outlen, pn_ndbm_status *status);
int pn_ndbm_store(int dir_fd, int pag_fd, int big, const char *key, size_t klen,
                  const char *value, size_t vlen, int replace, pn_ndbm_status *status);
int pn_ndbm_delete(int dir_fd, int pag_fd, int big, const char *key, size_t klen,
                   pn_ndbm_status *status);
int pn_ndbm_page_keys(int pag_fd, int big, int64_t number, char out[PN_NDBM_PBLKSIZ],
                      uint16_t lens[PN_NDBM_PBLKSIZ / 2], int *count, pn_ndbm_status *status);

#endif
