/* wire.c -- mail bytes to POP3 wire bytes (twin: popper/maildrop/wire.py).
 *
 * A bare LF becomes CRLF (an existing CRLF stays as it is), a '.' at the
 * start of a line is doubled, a NUL byte is sent as a space.  *state carries
 * the line position across calls, so a message can be sent in chunks.
 * out must have room for 2 * n bytes. */
#include <string.h>
#include "popper.h"

size_t pn_wire_encode(const char *in, size_t n, char *out, int *state)
{
    int at_line_start = *state & PN_AT_LINE_START, after_cr = *state & PN_AFTER_CR;
    char *o = out;
    const char *p = in, *end = in + n;
    int nuls = n && memchr(in, 0, n) != NULL;      /* looked for once, not at each line */
    while (p < end) {
        if (at_line_start && *p == '.')
            *o++ = '.';
        /* Copy up to and including the next LF, fixing NULs on the way. */
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        const char *stop = lf ? lf : end;
        size_t span = (size_t)(stop - p);
        memcpy(o, p, span);
        if (nuls && memchr(p, 0, span))
            for (size_t i = 0; i < span; i++)
                if (!o[i])
                    o[i] = ' ';
        o += span;
        if (span)
            after_cr = stop[-1] == '\r';
        if (!lf) {
            at_line_start = 0;
            break;
        }
        if (!after_cr)
            *o++ = '\r';
        *o++ = '\n';
        at_line_start = 1;
        after_cr = 0;
        p = lf + 1;
    }
    *state = (at_line_start ? PN_AT_LINE_START : 0) | (after_cr ? PN_AFTER_CR : 0);
    return (size_t)(o - out);
}

/* Whether the line at p (n bytes) starts with name (lower case), ASCII
 * letters compared without case, as bytes.lower() does. */
static int starts_with(const char *p, size_t n, const char *name, size_t len)
{
    if (n < len)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != (unsigned char)name[i])
            return 0;
    }
    return 1;
}

/* RETR's and TOP's whole reply in one piece (twin: render.py's
 * pure_retr_reply): prefix (the +OK line), the header data[0, cut) as
 * retr_header makes it -- its Content-Length: and X-UIDL: lines dropped,
 * "X-UIDL: <uid>" before the first Status: line or at the end, a last line
 * cut short given its LF -- then data[cut, end), all wire-encoded, then the
 * terminating "." line.  out must have room for prefix_len
 * + 2 * (end + uid_len + 10) + 5 bytes. */
size_t pn_retr_reply(const char *prefix, size_t prefix_len, const char *data, size_t cut,
                     size_t end, const char *uid, size_t uid_len, char *out)
{
    char *o = out;
    int state = PN_AT_LINE_START, placed = 0;
    char last = '\n';               /* the last header byte given to the encoder */
    memcpy(o, prefix, prefix_len);
    o += prefix_len;
    for (size_t pos = 0; pos < cut;) {
        const char *lf = memchr(data + pos, '\n', cut - pos);
        size_t next = lf ? (size_t)(lf - data) + 1 : cut, n = next - pos;
        const char *line = data + pos;
        pos = next;
        if (starts_with(line, n, "x-uidl:", 7) || starts_with(line, n, "content-length:", 15))
            continue;
        if (!placed && starts_with(line, n, "status:", 7)) {
            o += pn_wire_encode("X-UIDL: ", 8, o, &state);
            o += pn_wire_encode(uid, uid_len, o, &state);
            o += pn_wire_encode("\n", 1, o, &state);
            placed = 1;
        }
        o += pn_wire_encode(line, n, o, &state);
        last = line[n - 1];
    }
    if (last != '\n')
        o += pn_wire_encode("\n", 1, o, &state);
    if (!placed) {
        o += pn_wire_encode("X-UIDL: ", 8, o, &state);
        o += pn_wire_encode(uid, uid_len, o, &state);
        o += pn_wire_encode("\n", 1, o, &state);
    }
    o += pn_wire_encode(data + cut, end - cut, o, &state);
    if (!(state & PN_AT_LINE_START)) {
        if (!(state & PN_AFTER_CR))
            *o++ = '\r';
        *o++ = '\n';
    }
    memcpy(o, ".\r\n", 3);
    return (size_t)(o + 3 - out);
}
