/* scanner.c -- the mailbox scanner.
 *
 * Twin of popper/maildrop/scan.py, which states the rules; this file follows
 * it function by function so that the two can be read side by side.  The
 * file is read through a window with pread, never whole. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "md5.h"
#include "popper.h"

#define WINDOW (1 << 20)
#define LINE_WINDOW (1 << 16)
#define BACK 4                  /* bytes kept before pos when the window moves */

typedef struct {
    int fd;
    int64_t limit;
    char *buf;
    int64_t base;               /* file offset of buf[0] */
    size_t len;                 /* bytes valid in buf */
    int error;                  /* errno of a failed read */
} reader;

/* Make [pos, pos+need) visible (or up to the limit); return a pointer to pos
 * and the bytes available from it, or NULL after a read error. */
static const char *at(reader *r, int64_t pos, size_t need, size_t *avail)
{
    int64_t end = r->base + (int64_t)r->len;
    if (need > WINDOW + LINE_WINDOW)        /* never more than buf holds: avail says */
        need = WINDOW + LINE_WINDOW;
    if (!(r->base <= pos && (pos + (int64_t)need <= end || end >= r->limit))) {
        int64_t start = pos - BACK > 0 ? pos - BACK : 0;
        size_t size = need + (size_t)(pos - start);
        if (size < WINDOW)
            size = WINDOW;
        if ((int64_t)size > r->limit - start)
            size = (size_t)(r->limit - start);
        size_t got = 0;
        while (got < size) {
            ssize_t n = pread(r->fd, r->buf + got, size - got, start + (off_t)got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                r->error = n < 0 ? errno : EIO;     /* EIO: the file shrank */
                r->len = 0;
                return NULL;
            }
            got += (size_t)n;
        }
        r->base = start;
        r->len = size;
    }
    *avail = r->len - (size_t)(pos - r->base);
    return r->buf + (pos - r->base);
}

/* Offset just past the LF ending the line at pos (or the limit); -1 on error. */
static int64_t line_end(reader *r, int64_t pos)
{
    while (pos < r->limit) {
        size_t avail;
        const char *p = at(r, pos, LINE_WINDOW, &avail);
        if (!p)
            return -1;
        const char *lf = memchr(p, '\n', avail);
        if (lf)
            return pos + (lf - p) + 1;
        pos += (int64_t)avail;
    }
    return r->limit;
}

static int byte_at(reader *r, int64_t pos)
{
    size_t avail;
    const char *p = at(r, pos, 1, &avail);
    return p ? (unsigned char)*p : -1;
}

static int has_prefix_ci(const char *p, size_t n, const char *lower)
{
    size_t k = strlen(lower);
    if (n < k)
        return 0;
    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        if (c != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

/* --- the From-line test: c-client's VALID() --- */

int pn_is_from_line(const char *line, size_t n)
{
    if (n < 5 || memcmp(line, "From ", 5) != 0)
        return 0;
    if (line[n - 1] == '\n') {
        n--;
        if (n && line[n - 1] == '\r')
            n--;
    }
    const unsigned char *s = (const unsigned char *)line;
    long len = (long)n, x = len;
#define AT(i) ((x + (i)) >= 0 && (x + (i)) < len ? s[x + (i)] : -1)
    if (x >= 41) {
        long zn = -1;
        while (AT(zn) != ' ')
            zn--;
        if (x + zn - 12 >= 0 && memcmp(s + x + zn - 12, " remote from", 12) == 0)
            x += zn - 12;
    }
    if (x < 27)
        return 0;
    long ti = 0;
    if (AT(-5) == ' ') {
        if (AT(-8) == ':')
            ti = -5;
        else if (AT(-9) == ' ')
            ti = -9;
        else if (AT(-11) == ' ' && (AT(-10) == '+' || AT(-10) == '-'))
            ti = -11;
    } else if (AT(-4) == ' ') {
        if (AT(-9) == ' ')
            ti = -9;
    } else if (AT(-6) == ' ') {
        if (AT(-11) == ' ' && (AT(-5) == '+' || AT(-5) == '-'))
            ti = -11;
    }
    if (!ti || AT(ti - 3) != ':')
        return 0;
    ti -= AT(ti - 6) == ':' ? 9 : 6;
    return AT(ti) == ' ' && AT(ti - 3) == ' ' && AT(ti - 7) == ' ' && AT(ti - 11) == ' ';
#undef AT
}

/* --- UIDs --- */

void pn_encode_uid(const unsigned char digest[16], char out[20])
{
    int k = 0;
    for (int group = 0; group < 16; group += 4) {
        unsigned long v = 0;
        for (int i = 0; i < 4; i++)
            v = (v << 4) + digest[group + i];      /* Qpopper's overlapping fold */
        for (int i = 0; i < 5; i++) {
            char c = (char)(0x21 + v % 80);
            out[k++] = c == '.' ? '~' : c;
            v /= 80;
        }
    }
}

/* The UID an X-UIDL: header line carries; 0 if it is not valid. */
static int uid_from_header(const char *line, size_t n, char *uid, int32_t *uid_len)
{
    size_t a = 7, b = n;
    while (a < b && (line[a] == ' ' || line[a] == '\t' || line[a] == '\r' || line[a] == '\n'))
        a++;
    while (b > a && (line[b - 1] == ' ' || line[b - 1] == '\t' || line[b - 1] == '\r' ||
                     line[b - 1] == '\n'))
        b--;
    if (b - a < 1 || b - a > PN_MAX_UID)
        return 0;
    for (size_t i = a; i < b; i++)
        if ((unsigned char)line[i] < 0x21 || (unsigned char)line[i] > 0x7E)
            return 0;
    memcpy(uid, line + a, b - a);
    uid[b - a] = 0;
    *uid_len = (int32_t)(b - a);
    return 1;
}

/* Wire octets of one header line (see _line_octets in scan.py). */
static int64_t line_octets(int64_t len, int last, int before_last)
{
    if (last == '\n')
        return len + (before_last == '\r' ? 0 : 1);
    return len + (last == '\r' ? 1 : 2);
}

/* How many i < n have a[i] == x and b[i] == y.  Counted in byte lanes that
 * the compiler vectorizes; a lane cannot overflow within one BLOCK. */
enum { LANES = 32, BLOCK = 255 * LANES };

static size_t count_pairs(const unsigned char *a, const unsigned char *b, size_t n,
                          unsigned char x, unsigned char y)
{
    size_t total = 0;
    while (n) {
        size_t m = n < BLOCK ? n : BLOCK, i = 0;
        unsigned char acc[LANES] = {0};
        for (; i + LANES <= m; i += LANES)
            for (int j = 0; j < LANES; j++)
                acc[j] += (a[i + j] == x) & (b[i + j] == y);
        for (int j = 0; j < LANES; j++)
            total += acc[j];
        for (; i < m; i++)
            total += (a[i] == x) & (b[i] == y);
        a += m;
        b += m;
        n -= m;
    }
    return total;
}

static size_t count_byte(const unsigned char *a, size_t n, unsigned char x)
{
    size_t total = 0;
    while (n) {
        size_t m = n < BLOCK ? n : BLOCK, i = 0;
        unsigned char acc[LANES] = {0};
        for (; i + LANES <= m; i += LANES)
            for (int j = 0; j < LANES; j++)
                acc[j] += a[i + j] == x;
        for (int j = 0; j < LANES; j++)
            total += acc[j];
        for (; i < m; i++)
            total += a[i] == x;
        a += m;
        n -= m;
    }
    return total;
}

/* LFs, and LFs with a CR before them, in a piece whose byte before p is
 * readable (every body starts after its separator line). */
typedef struct {
    int64_t lf, crlf;
} line_ends;

static void count_crlf(const unsigned char *p, size_t n, line_ends *c)
{
    if (memchr(p - 1, '\r', n))            /* most spools hold no CR at all */
        c->crlf += (int64_t)count_pairs(p - 1, p, n, '\r', '\n');
}

static void count_ends(const unsigned char *p, size_t n, line_ends *c)
{
    c->lf += (int64_t)count_byte(p, n, '\n');
    count_crlf(p, n, c);
}

/* The first i >= pos with byte i == '\n' and byte i+1 == second, or the
 * limit; the line ends in [pos, i) are added to *c.  This one pass over the
 * body both finds separator candidates and counts what octets needs. */
static int64_t next_candidate(reader *r, int64_t pos, unsigned char second, line_ends *c)
{
    while (pos < r->limit) {
        size_t avail;
        const unsigned char *p = (const unsigned char *)at(r, pos, 2, &avail);
        if (!p)
            return -1;
        if (avail < 2) {                    /* the last byte of the file */
            count_ends(p, 1, c);
            return r->limit;
        }
        size_t n = avail - 1;               /* pairs (i, i+1) fully visible */
        for (size_t off = 0; off < n; off += BLOCK) {
            size_t m = n - off < BLOCK ? n - off : BLOCK, i = 0, lf = 0, hits = 0;
            const unsigned char *q = p + off;
            unsigned char acc_lf[LANES] = {0}, acc_hit[LANES] = {0};
            for (; i + LANES <= m; i += LANES)
                for (int j = 0; j < LANES; j++) {
                    unsigned char is_lf = q[i + j] == '\n';
                    acc_lf[j] += is_lf;
                    acc_hit[j] += is_lf & (q[i + j + 1] == second);
                }
            for (int j = 0; j < LANES; j++) {
                lf += acc_lf[j];
                hits += acc_hit[j];
            }
            for (; i < m; i++) {
                lf += q[i] == '\n';
                hits += (q[i] == '\n') & (q[i + 1] == second);
            }
            if (hits) {
                size_t k = 0;
                while (!(q[k] == '\n' && q[k + 1] == second))
                    k++;
                count_ends(q, k, c);
                return pos + (int64_t)(off + k);
            }
            c->lf += (int64_t)lf;
            count_crlf(q, m, c);
        }
        pos += (int64_t)n;
    }
    return r->limit;
}

/* MMDF: the offset of the next separator after the trailer at `trailer`. */
static int64_t after_trailer(reader *r, const char *sep, size_t seplen, int64_t trailer)
{
    int64_t pos = trailer + (int64_t)seplen;
    while (pos < r->limit) {
        int64_t le = line_end(r, pos);
        if (le < 0)
            return -1;
        size_t avail;
        const char *p = at(r, pos, seplen + 1, &avail);
        if (!p)
            return -1;
        if ((size_t)(le - pos) == seplen && memcmp(p, sep, seplen) == 0)
            return pos;
        pos = le;
    }
    return r->limit;
}

/* Sets *content_end and *end of the message whose body starts at body, and
 * adds the octets RETR sends for the body to *octets. */
static int find_end(reader *r, int format, const char *sep, size_t seplen, int64_t body,
                    int64_t *content_end, int64_t *end, int64_t *octets)
{
    int64_t limit = r->limit, pos = body;
    unsigned char second = format == PN_MMDF ? (unsigned char)sep[0] : 'F';
    line_ends c = {0, 0};
    *content_end = *end = -1;
    while (pos < limit) {
        int64_t lf = next_candidate(r, pos, second, &c);
        if (lf < 0)
            return -1;
        if (lf >= limit)
            break;
        int64_t candidate = lf + 1, le = line_end(r, candidate);
        if (le < 0)
            return -1;
        size_t avail, len = (size_t)(le - candidate);
        if (format == PN_MMDF) {
            const char *line = at(r, candidate, seplen + 1, &avail);
            if (!line)
                return -1;
            if (len == seplen && memcmp(line, sep, seplen) == 0) {
                c.lf++;                     /* the content keeps the LF before the trailer */
                c.crlf += byte_at(r, lf - 1) == '\r';
                *content_end = candidate;
                *end = after_trailer(r, sep, seplen, candidate);
                if (*end < 0)
                    return -1;
                break;
            }
        } else {
            int b1 = byte_at(r, lf - 1);
            int64_t blank_at = -1;
            if (b1 == '\n')
                blank_at = lf;
            else if (b1 == '\r' && byte_at(r, lf - 2) == '\n')
                blank_at = lf - 1;
            if (r->error)
                return -1;
            if (blank_at >= body && len <= PN_MAX_SEPARATOR) {
                const char *line = at(r, candidate, len, &avail);
                if (!line)
                    return -1;
                if (pn_is_from_line(line, len)) {
                    *content_end = blank_at;     /* the ends counted stop at lf */
                    *end = candidate;
                    break;
                }
            }
        }
        c.lf++;                             /* not a separator: count its LF, go on */
        c.crlf += byte_at(r, lf - 1) == '\r';
        pos = candidate;
    }
    if (*end < 0) {
        /* The last message: a blank line at the very end belongs to no message. */
        *content_end = *end = limit;
        if (format == PN_MBOX && limit - 1 >= body && byte_at(r, limit - 1) == '\n') {
            if (byte_at(r, limit - 2) == '\n') {
                *content_end = limit - 1;
                c.lf--;
            } else if (limit - 2 >= body && byte_at(r, limit - 2) == '\r' &&
                       byte_at(r, limit - 3) == '\n') {
                *content_end = limit - 2;
                c.lf--;
                c.crlf--;
            }
        }
    }
    if (r->error)
        return -1;
    if (*content_end > body) {
        int last = byte_at(r, *content_end - 1);
        if (last < 0)
            return -1;
        *octets += (*content_end - body) + c.lf - c.crlf;
        if (last != '\n')
            *octets += last == '\r' ? 1 : 2;
    }
    return 0;
}

/* How many of UW-IMAP's folder-data hints a header line gives (_uw_hints). */
static int uw_hints(const char *p, size_t n)
{
    static const char *subjects[] = {"DO NOT DELETE", "DON'T DELETE THIS MESSAGE",
                                     "FOLDER INTERNAL DATA"};
    if (has_prefix_ci(p, n, "subject: ")) {
        for (int i = 0; i < 3; i++)
            if (memmem(p, n, subjects[i], strlen(subjects[i])))
                return 1;
        return 0;
    }
    return (n >= 8 && memcmp(p, "X-IMAP: ", 8) == 0) ||
           (n >= 31 && memcmp(p, "From: Mail System Internal Data", 31) == 0);
}

/* The next piece of [q, end), WINDOW bytes at most: its bytes, and its
 * length in *n. */
static const char *piece(reader *r, int64_t q, int64_t end, size_t *n)
{
    size_t avail, want = end - q < WINDOW ? (size_t)(end - q) : WINDOW;
    const char *c = at(r, q, want, &avail);
    *n = avail < want ? avail : want;
    return c;
}

/* Scan the message whose separator line spans [start, header). */
static int scan_message(reader *r, int format, const char *sep, size_t seplen,
                        int64_t start, int64_t header, int uw, pn_message *m)
{
    int64_t limit = r->limit, pos = header, body = -1, content_end = -1, end = -1;
    memset(m, 0, sizeof *m);
    int have_uid = 0, hints = 0;
    if (format == PN_MMDF)
        m->flags |= PN_MMDF_MESSAGE;
    while (pos < limit) {
        int64_t le = line_end(r, pos);
        if (le < 0)
            return -1;
        int64_t len = le - pos;
        size_t avail, seen = len < LINE_WINDOW ? (size_t)len : LINE_WINDOW;
        const char *p = at(r, pos, seen, &avail);
        if (!p)
            return -1;
        if ((len == 1 && p[0] == '\n') || (len == 2 && p[0] == '\r' && p[1] == '\n')) {
            body = pos;
            break;
        }
        if (format == PN_MMDF && (size_t)len == seplen && memcmp(p, sep, seplen) == 0) {
            body = content_end = pos;
            break;
        }
        if (uw)
            hints += uw_hints(p, seen);
        if (has_prefix_ci(p, seen, "status:")) {
            m->flags |= PN_HAS_STATUS;
            size_t n;
            for (int64_t q = pos; q < le; q += (int64_t)n) {
                const char *c = piece(r, q, le, &n);
                if (!c)
                    return -1;
                if (memchr(c, 'R', n)) {
                    m->flags |= PN_SEEN;
                    break;
                }
            }
            p = at(r, pos, seen, &avail);
            if (!p)
                return -1;
        }
        int is_uidl = has_prefix_ci(p, seen, "x-uidl:");
        if (is_uidl || has_prefix_ci(p, seen, "content-length:")) {
            if (!have_uid && is_uidl && len <= LINE_WINDOW)
                have_uid = uid_from_header(p, (size_t)len, m->uid, &m->uid_len);
        } else {
            int last, before_last;
            if (len <= LINE_WINDOW) {
                last = (unsigned char)p[len - 1];
                before_last = len >= 2 ? (unsigned char)p[len - 2] : -1;
            } else {
                last = byte_at(r, le - 1);
                before_last = byte_at(r, le - 2);
                if (r->error)
                    return -1;
            }
            m->octets += line_octets(len, last, before_last);
        }
        pos = le;
    }
    if (body < 0)
        body = content_end = end = limit;       /* the header runs to the end */
    if (end < 0) {
        if (content_end < 0) {
            if (find_end(r, format, sep, seplen, body, &content_end, &end, &m->octets) < 0)
                return -1;
        } else if (format == PN_MMDF && content_end < limit) {
            end = after_trailer(r, sep, seplen, content_end);   /* an empty body */
            if (end < 0)
                return -1;
        } else {
            end = limit;
        }
    }
    m->start = start;
    m->header = header;
    m->body = body;
    m->content_end = content_end;
    m->end = end;
    if (have_uid)
        m->flags |= PN_HAS_UIDL;
    if (hints >= 2)
        m->flags |= PN_UW_DATA;
    return 0;
}

/* Hash the separator line, the salt and the UID headers (make_uid in scan.py). */
static int make_uid(reader *r, pn_message *m, const char *sepline, size_t seplen,
                    long counter, int salted, int old_style)
{
    pn_md5 md5;
    unsigned char digest[16];
    pn_md5_init(&md5);
    pn_md5_update(&md5, sepline, seplen);
    if (salted && !old_style)
        pn_md5_update(&md5, &counter, sizeof counter);
    for (int64_t pos = m->header; pos < m->body;) {
        int64_t le = line_end(r, pos);
        if (le < 0)
            return -1;
        size_t avail;
        const char *p = at(r, pos, 16, &avail);
        if (!p)
            return -1;
        size_t seen = avail < 16 ? avail : 16;
        if (has_prefix_ci(p, seen, "received:") || has_prefix_ci(p, seen, "date:") ||
            has_prefix_ci(p, seen, "message-id:") || has_prefix_ci(p, seen, "subject:")) {
            size_t n;
            for (int64_t q = pos; q < le; q += (int64_t)n) {
                const char *c = piece(r, q, le, &n);
                if (!c)
                    return -1;
                pn_md5_update(&md5, c, n);
            }
        }
        pos = le;
    }
    if (old_style) {
        static const char hex[] = "0123456789abcdef";
        pn_md5_final(&md5, digest);
        for (int i = 0; i < 16; i++) {
            m->uid[2 * i] = hex[digest[i] >> 4];
            m->uid[2 * i + 1] = hex[digest[i] & 15];
        }
        m->uid_len = 32;
    } else {
        pn_md5_update(&md5, sepline, seplen);
        pn_md5_final(&md5, digest);
        pn_encode_uid(digest, m->uid);
        m->uid_len = 20;
    }
    m->uid[m->uid_len] = 0;
    return 0;
}

void pn_scan_free(pn_scan_result *result)
{
    free(result->messages);
    result->messages = NULL;
    result->count = 0;
}

int pn_scan(int fd, int64_t start, int64_t limit, int64_t base_time, int salted,
            int old_style, int uw, pn_scan_result *result)
{
    memset(result, 0, sizeof *result);
    if (limit < 0) {
        struct stat st;
        if (fstat(fd, &st) < 0) {
            result->error = errno;
            return PN_IO_ERROR;
        }
        limit = st.st_size;
    }
    if (start >= limit)
        return PN_OK;
    reader r = {fd, limit, NULL, 0, 0, 0};
    r.buf = malloc(WINDOW + LINE_WINDOW + BACK);
    if (!r.buf)
        return PN_NO_MEMORY;
    int rc = PN_OK;
    size_t cap = 0, avail;
    char sepline[PN_MAX_SEPARATOR + 1];

    int64_t first_end = line_end(&r, start);
    if (first_end < 0)
        goto io_error;
    size_t first_len = (size_t)(first_end - start);
    if (first_len > PN_MAX_SEPARATOR) {     /* a separator in neither format */
        rc = PN_NOT_A_MAILBOX;
        goto done;
    }
    const char *first = at(&r, start, first_len, &avail);
    if (!first)
        goto io_error;
    if (first[0] == '\x01') {
        if (first[first_len - 1] != '\n' || first_len > PN_MAX_SEPARATOR) {
            rc = PN_NOT_A_MAILBOX;
            goto done;
        }
        result->format = PN_MMDF;
        memcpy(result->separator, first, first_len);
        result->separator_len = first_len;
    } else if (first_len <= PN_MAX_SEPARATOR && pn_is_from_line(first, first_len)) {
        result->format = PN_MBOX;
    } else {
        rc = PN_NOT_A_MAILBOX;
        goto done;
    }

    for (int64_t pos = start; pos < limit;) {
        int64_t sep_end = line_end(&r, pos);
        if (sep_end < 0)
            goto io_error;
        /* A separator line is at most PN_MAX_SEPARATOR octets: both formats
         * check that before they accept one. */
        size_t seplen = (size_t)(sep_end - pos);
        if (seplen > PN_MAX_SEPARATOR) {
            r.error = EINVAL;
            goto io_error;
        }
        const char *p = at(&r, pos, seplen, &avail);
        if (!p)
            goto io_error;
        memcpy(sepline, p, seplen);
        if (result->count == cap) {
            size_t grown = cap ? 2 * cap : 256;
            pn_message *more = realloc(result->messages, grown * sizeof *more);
            if (!more) {
                rc = PN_NO_MEMORY;
                goto done;
            }
            result->messages = more;
            cap = grown;
        }
        pn_message *m = &result->messages[result->count];
        if (scan_message(&r, result->format, result->separator, result->separator_len,
                         pos, sep_end, uw && result->count == 0, m) < 0)
            goto io_error;
        result->count++;
        if (!(m->flags & PN_HAS_UIDL) &&
            make_uid(&r, m, sepline, seplen, (long)(base_time + (int64_t)result->count),
                     salted, old_style) < 0)
            goto io_error;
        m->octets += 10 + m->uid_len;           /* "X-UIDL: " uid CRLF */
        pos = m->end;
    }
    goto done;
io_error:
    rc = PN_IO_ERROR;
    result->error = r.error ? r.error : EIO;
done:
    free(r.buf);
    if (rc != PN_OK)
        pn_scan_free(result);
    return rc;
}
