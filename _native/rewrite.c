/* rewrite.c -- a kept message's edits at QUIT (twin:
 * popper/maildrop/rewrite.py, pure_message_edits).
 *
 * msg[0, len) is one message: its separator line [0, header), its header
 * [header, body), its body to content_end, then what ends it.  The new
 * separator line, header and ending go into out, one after the other;
 * lens[0..2] get their lengths, -1 where a piece stays as it is.  The
 * header is rewritten as pop_updt.c writes it (render.rewritten_header):
 * "X-UIDL: <uid>" first, no other X-UIDL: line, each Status: line made
 * "Status: RO" if seen, and with add_status a Status: line added where
 * none was.  Returns 0, PN_EDITS_OTHER_FORMAT when the message goes into
 * a spool of the other format (the caller's general case), or
 * PN_EDITS_NO_ROOM when out is smaller than pn_message_edits_room says. */
#include <string.h>
#include "popper.h"

size_t pn_message_edits_room(size_t len, size_t uid_len, size_t mmdf_len)
{
    /* each header line can grow by 4 ("status:\n" -> "Status: RO\r\n") */
    return 2 * len + uid_len + mmdf_len + 64;
}

static int starts_with_name(const char *p, const char *end, const char *name)
{
    for (; *name; p++, name++) {
        if (p >= end)
            return 0;
        char c = *p;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != *name)
            return 0;
    }
    return 1;
}

static char *put(char *o, const char *p, size_t n)
{
    memcpy(o, p, n);
    return o + n;
}

int pn_message_edits(const char *msg, size_t len, size_t header, size_t body,
                     size_t content_end, int flags, const char *uid, size_t uid_len,
                     int seen, int headers, int add_status, const char *mmdf,
                     size_t mmdf_len, char *out, size_t room, long *lens)
{
    if (!(flags & PN_MMDF_MESSAGE) != !mmdf_len)
        return PN_EDITS_OTHER_FORMAT;
    if (room < pn_message_edits_room(len, uid_len, mmdf_len) || header > body
            || body > content_end || content_end > len)
        return PN_EDITS_NO_ROOM;
    headers = headers && !(flags & PN_UW_DATA);
    char *o = out;

    /* the separator line, and the line end the message uses */
    const char *eol = "\n";
    size_t eol_len = 1;
    char last;
    if (header >= 2 && msg[header - 2] == '\r' && msg[header - 1] == '\n') {
        eol = "\r\n";
        eol_len = 2;
        lens[0] = -1;
    } else if (header >= 1 && msg[header - 1] == '\n') {
        lens[0] = -1;
    } else {
        o = put(o, msg, header);
        *o++ = '\n';
        lens[0] = (long)(header + 1);
    }
    last = '\n';

    /* the header */
    if (headers) {
        char *h = o;
        const char *p = msg + header, *end = msg + body, *pos = p;
        int has_status = 0;
        o = put(o, "X-UIDL: ", 8);
        o = put(o, uid, uid_len);
        o = put(o, eol, eol_len);
        while (p < end) {
            const char *lf = memchr(p, '\n', (size_t)(end - p));
            const char *next = lf ? lf + 1 : end;
            if (starts_with_name(p, end, "status:")) {
                has_status = 1;
                if (seen) {
                    o = put(o, pos, (size_t)(p - pos));
                    o = put(o, "Status: RO", 10);
                    o = put(o, eol, eol_len);
                    pos = next;
                }
            } else if (starts_with_name(p, end, "x-uidl:")) {
                o = put(o, pos, (size_t)(p - pos));
                pos = next;
            }
            p = next;
        }
        o = put(o, pos, (size_t)(end - pos));
        if (o[-1] != '\n')
            *o++ = '\n';
        if (add_status && !has_status) {
            o = seen ? put(o, "Status: RO", 10) : put(o, "Status: U", 9);
            o = put(o, eol, eol_len);
        }
        last = o[-1];
        if ((size_t)(o - h) == body - header && !memcmp(h, msg + header, body - header)) {
            o = h;
            lens[1] = -1;
        } else {
            lens[1] = (long)(o - h);
        }
    } else {
        lens[1] = -1;
        if (body > header)
            last = msg[body - 1];
    }
    if (content_end > body)
        last = msg[content_end - 1];

    /* what ends it: a line end if it lacks one, then the blank line (mbox)
       or its trailer (MMDF) */
    char *e = o;
    const char *tail = msg + content_end;
    size_t tail_len = len - content_end;
    if (last != '\n')
        *o++ = '\n';
    if (mmdf_len) {
        if ((flags & PN_MMDF_MESSAGE) && tail_len >= mmdf_len && !memcmp(tail, mmdf, mmdf_len))
            o = put(o, tail, tail_len);
        else
            o = put(o, mmdf, mmdf_len);
    } else {
        o = put(o, eol, eol_len);
    }
    if ((size_t)(o - e) == tail_len && !memcmp(e, tail, tail_len))
        lens[2] = -1;
    else
        lens[2] = (long)(o - e);
    return 0;
}
