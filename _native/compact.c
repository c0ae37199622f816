/* compact.c -- server mode's compaction plan (twin: popper/maildrop/compact.py,
 * plan() over rewrite.output_pieces()).
 *
 * For the kept messages of the spool (message table columns, indexed by
 * kept[]), each message's pieces -- its separator line, header, body and
 * ending, each either the spool's bytes as they are or the bytes that
 * replace them (pn_message_edits) -- folded into segments as compact.plan
 * folds them: the unchanged prefix left out, runs merged, bytes under the
 * marker (the first `head` bytes) taken from `first`, spool segments cut
 * into `piece` bytes at most.  Only the bytes the edits look at are read
 * (the separator line and header, the content's last byte, the ending),
 * not the bodies.
 *
 * Returns PN_OK, PN_PLAN_ELSEWHERE when a message is not one this plans
 * (one of the other format, offsets out of order: the caller's general
 * case), PN_IO_ERROR (plan->error the errno; EIO for a short read) or
 * PN_NO_MEMORY.  pn_plan_free frees what a plan holds, whatever it
 * returned.
 *
 * pn_compact_write writes one batch of a compaction (twin:
 * compact.pure_write_batch): its segments' bytes, whose destinations follow
 * one another (in-place segments excepted: they are skipped), gathered
 * through a buffer and written a few MB at a time with pwrite; spool bytes
 * [sa, sb) are read from the stage (stage_fd at stage_at); nothing is
 * written below `head` (the marker's place).  Returns 0, or an errno (EIO
 * for a short read). */
#define _XOPEN_SOURCE 700      /* pread */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "popper.h"

#define SPOOL 0
#define PLAN  1
#define WHOLE_READ 4096     /* a message up to this size is read in one pread */

typedef struct {
    pn_plan *out;
    int64_t size;           /* literal bytes so far */
    int64_t dest;           /* where the next byte goes */
    const char *first;
    size_t first_len, head;
} fold;

static int grow(void **p, size_t *cap, size_t need, size_t unit)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 1024;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * unit);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

static int add_literal(fold *f, const char *data, size_t n)
{
    pn_plan *o = f->out;
    if (grow((void **)&o->literal, &o->literal_cap, o->literal_len + n, 1))
        return -1;
    memcpy(o->literal + o->literal_len, data, n);
    o->literal_len += n;
    return 0;
}

/* Continue the last segment, or start one: [src, a, b, dest]. */
static int add_segment(fold *f, int64_t src, int64_t a, int64_t b)
{
    pn_plan *o = f->out;
    if (o->count) {
        int64_t *last = o->segments + 4 * (o->count - 1);
        if (last[0] == src && last[2] == a && last[3] + last[2] - last[1] == f->dest) {
            last[2] = b;
            return 0;
        }
    }
    if (grow((void **)&o->segments, &o->cap, 4 * (o->count + 1), sizeof(int64_t)))
        return -1;
    int64_t *s = o->segments + 4 * o->count++;
    s[0] = src;
    s[1] = a;
    s[2] = b;
    s[3] = f->dest;
    return 0;
}

/* One piece: spool bytes [a, b) as they are (data NULL), or data[0, n). */
static int add_piece(fold *f, int64_t a, int64_t b, const char *data, size_t n)
{
    int copy = data == NULL;
    if (copy) {
        if (b <= a)
            return 0;
        if (!f->out->count && a == f->dest) {
            f->dest = b;                /* the unchanged prefix stays where it is */
            return 0;
        }
        if (a < (int64_t)f->head) {     /* under the marker: taken from `first` */
            int64_t to = b < (int64_t)f->head ? b : (int64_t)f->head;
            int64_t have = (int64_t)f->first_len;
            data = f->first + (a < have ? a : have);
            n = (size_t)((to < have ? to : have) - (a < have ? a : have));
            a = to;
        }
    }
    if (data && n) {
        if (add_segment(f, PLAN, f->size, f->size + (int64_t)n) || add_literal(f, data, n))
            return -1;
        f->size += (int64_t)n;
        f->dest += (int64_t)n;
    }
    if (copy && a < b) {
        if (add_segment(f, SPOOL, a, b))
            return -1;
        f->dest += b - a;
    }
    return 0;
}

static int read_at(int fd, char *buf, size_t n, int64_t at, pn_plan *out)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)(at + (int64_t)got));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            out->error = errno;
            return -1;
        }
        if (r == 0) {
            out->error = EIO;           /* the spool shrank */
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

/* Spool segments longer than `piece` cut, so that a batch can end within a
   long run of unchanged mail (compact._split). */
static int split(pn_plan *o, int64_t piece)
{
    size_t extra = 0;
    for (size_t k = 0; k < o->count; k++) {
        int64_t *s = o->segments + 4 * k;
        if (s[0] == SPOOL && s[2] - s[1] > piece)
            extra += (size_t)((s[2] - s[1] - 1) / piece);
    }
    if (!extra)
        return 0;
    int64_t *out = malloc(4 * (o->count + extra) * sizeof(int64_t)), *p = out;
    if (!out)
        return -1;
    for (size_t k = 0; k < o->count; k++) {
        int64_t *s = o->segments + 4 * k;
        if (s[0] == SPOOL && s[2] - s[1] > piece) {
            for (int64_t at = s[1]; at < s[2]; at += piece) {
                p[0] = SPOOL;
                p[1] = at;
                p[2] = at + piece < s[2] ? at + piece : s[2];
                p[3] = s[3] + at - s[1];
                p += 4;
            }
        } else {
            memcpy(p, s, 4 * sizeof(int64_t));
            p += 4;
        }
    }
    free(o->segments);
    o->segments = out;
    o->count += extra;
    o->cap = o->count;
    return 0;
}

int pn_compact_plan(int fd, const int64_t *kept, size_t nkept, const int64_t *start,
                    const int64_t *header, const int64_t *body, const int64_t *content_end,
                    const int64_t *end, const int *flags, const char *uids,
                    const int64_t *uid_ends, const unsigned char *seen, int headers,
                    int add_status, const char *mmdf, size_t mmdf_len, const char *first,
                    size_t first_len, size_t head, int64_t piece, pn_plan *plan)
{
    memset(plan, 0, sizeof *plan);
    fold f = {plan, 0, 0, first, first_len, head};
    char *buf = NULL, *edits = NULL;
    size_t buf_cap = 0, edits_cap = 0;
    int rc = PN_OK;

    for (size_t k = 0; k < nkept; k++) {
        int64_t i = kept[k];
        int64_t s = start[i], h = header[i], bo = body[i], ce = content_end[i], e = end[i];
        if (!(0 <= s && s <= h && h <= bo && bo <= ce && ce <= e)) {
            rc = PN_PLAN_ELSEWHERE;
            break;
        }
        /* The bytes the edits look at, one after the other: [s, bo), the
           content's last byte, [ce, e); offsets as pn_message_edits wants. */
        int64_t last = ce > bo ? 1 : 0;
        size_t len = (size_t)(bo - s + last + e - ce);
        int whole = e - s <= WHOLE_READ;
        if (whole)
            len = (size_t)(e - s);
        if (grow((void **)&buf, &buf_cap, len ? len : 1, 1)) {
            rc = PN_NO_MEMORY;
            break;
        }
        if (whole ? read_at(fd, buf, len, s, plan)
                  : read_at(fd, buf, (size_t)(bo - s), s, plan)
                    || read_at(fd, buf + (bo - s), (size_t)(last + e - ce), ce - last, plan)) {
            rc = PN_IO_ERROR;
            break;
        }
        size_t m_ce = whole ? (size_t)(ce - s) : (size_t)(bo - s + last);
        int64_t uid_at = i ? uid_ends[i - 1] : 0;
        size_t uid_len = (size_t)(uid_ends[i] - uid_at);
        size_t room = pn_message_edits_room(len, uid_len, mmdf_len);
        if (grow((void **)&edits, &edits_cap, room, 1)) {
            rc = PN_NO_MEMORY;
            break;
        }
        long lens[3];
        int r = pn_message_edits(buf, len, (size_t)(h - s), (size_t)(bo - s), m_ce, flags[i],
                                 uids + uid_at, uid_len, seen[i] != 0, headers, add_status,
                                 mmdf, mmdf_len, edits, edits_cap, lens);
        if (r) {
            rc = PN_PLAN_ELSEWHERE;
            break;
        }
        const char *p = edits;
        const char *line = lens[0] < 0 ? NULL : p;
        p += lens[0] < 0 ? 0 : lens[0];
        const char *hdr = lens[1] < 0 ? NULL : p;
        p += lens[1] < 0 ? 0 : lens[1];
        const char *ending = lens[2] < 0 ? NULL : p;
        if (add_piece(&f, s, h, line, line ? (size_t)lens[0] : 0)
                || add_piece(&f, h, bo, hdr, hdr ? (size_t)lens[1] : 0)
                || add_piece(&f, bo, ce, NULL, 0)
                || add_piece(&f, ce, e, ending, ending ? (size_t)lens[2] : 0)) {
            rc = PN_NO_MEMORY;
            break;
        }
    }
    free(buf);
    free(edits);
    if (rc == PN_OK && split(plan, piece))
        rc = PN_NO_MEMORY;
    plan->start = plan->count ? plan->segments[3] : f.dest;
    plan->total = f.dest;
    return rc;
}

#define OUT_LIMIT (4 << 20)     /* compact._Out.LIMIT */

typedef struct {
    int fd;
    int64_t pos;            /* where buf[0] goes; -1: not set */
    char *buf;
    size_t len;
    int64_t head;
} out_buffer;

static int flush_out(out_buffer *o)
{
    const char *p = o->buf;
    size_t n = o->len;
    int64_t pos = o->pos;
    if (n && pos < o->head) {           /* the marker's place: the head goes there at the end */
        size_t skip = (size_t)(o->head - pos) < n ? (size_t)(o->head - pos) : n;
        p += skip;
        n -= skip;
        pos += (int64_t)skip;
    }
    while (n) {
        ssize_t w = pwrite(o->fd, p, n, (off_t)pos);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        p += w;
        n -= (size_t)w;
        pos += w;
    }
    o->pos = o->len ? o->pos + (int64_t)o->len : o->pos;
    o->len = 0;
    return 0;
}

int pn_compact_write(int spool_fd, int stage_fd, const int64_t *segments, size_t count,
                     const char *literal, int64_t sa, int64_t sb, int64_t stage_at,
                     int64_t head)
{
    out_buffer o = {spool_fd, -1, malloc(OUT_LIMIT), 0, head};
    int rc = 0;
    if (!o.buf)
        return ENOMEM;
    for (size_t k = 0; k < count && !rc; k++) {
        const int64_t *s = segments + 4 * k;
        int64_t a = s[1], b = s[2], dest = s[3];
        if (s[0] == SPOOL && a == dest) {       /* in place */
            rc = flush_out(&o);
            o.pos = -1;
            continue;
        }
        if (o.pos < 0)
            o.pos = dest;
        int fd = spool_fd;
        if (s[0] == SPOOL && sa <= a && b <= sb) {
            fd = stage_fd;
            a += stage_at - sa;
            b += stage_at - sa;
        }
        while (a < b && !rc) {
            if (o.len == OUT_LIMIT && (rc = flush_out(&o)))
                break;
            size_t n = (size_t)(b - a) < OUT_LIMIT - o.len ? (size_t)(b - a) : OUT_LIMIT - o.len;
            if (s[0] == PLAN) {
                memcpy(o.buf + o.len, literal + a, n);
            } else {
                ssize_t r = pread(fd, o.buf + o.len, n, (off_t)a);
                if (r < 0) {
                    if (errno == EINTR)
                        continue;
                    rc = errno;
                    break;
                }
                if (r == 0) {
                    rc = EIO;               /* the spool or the stage shrank */
                    break;
                }
                n = (size_t)r;
            }
            o.len += n;
            a += (int64_t)n;
        }
    }
    if (!rc)
        rc = flush_out(&o);
    free(o.buf);
    return rc;
}

void pn_plan_free(pn_plan *plan)
{
    free(plan->segments);
    free(plan->literal);
    plan->segments = NULL;
    plan->literal = NULL;
    plan->count = plan->cap = plan->literal_len = plan->literal_cap = 0;
}
