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
    while (p < end) {
        if (at_line_start && *p == '.')
            *o++ = '.';
        /* Copy up to and including the next LF, fixing NULs on the way. */
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        const char *stop = lf ? lf : end;
        size_t span = (size_t)(stop - p);
        memcpy(o, p, span);
        if (memchr(p, 0, span))
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
