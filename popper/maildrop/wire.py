"""Mail bytes to POP3 wire bytes, pure-Python twin of _native/wire.c.

A bare LF becomes CRLF (an existing CRLF stays as it is), a "." at the start
of a line is doubled, a NUL byte is sent as a space (Qpopper sent spaces for
NULs too; the spool itself keeps them).  The state carries the line position
from one chunk to the next, so a message can be sent in pieces of any size.
"""

AT_LINE_START = 1
AFTER_CR = 2


def wire_encode(data: bytes, state: int):
    """Return (wire bytes, new state) for the next chunk of a message."""
    if not data:
        return b"", state
    if b"\0" in data:
        data = data.replace(b"\0", b" ")
    head = b""
    if state & AFTER_CR and data[:1] == b"\n":    # a CRLF split between chunks
        head, data, state = b"\n", data[1:], AT_LINE_START
    out = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n").replace(b"\n.", b"\n..")
    if state & AT_LINE_START and out[:1] == b".":
        out = b"." + out
    if data:
        state = ((AT_LINE_START if data.endswith(b"\n") else 0)
                 | (AFTER_CR if data.endswith(b"\r") else 0))
    return head + out, state
