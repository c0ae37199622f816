"""Mail bytes to POP3 wire bytes: wire_encode() is _native/wire.c's
(popper/native.py) when it is built and POPPER_PUREPYTHON is unset, else
pure_wire_encode(), its pure-Python twin.

A bare LF becomes CRLF (an existing CRLF stays as it is), a "." at the start
of a line is doubled, a NUL byte is sent as a space (Qpopper sent spaces for
NULs too; the spool itself keeps them).  The state carries the line position
from one chunk to the next, so a message can be sent in pieces of any size.
"""

from popper import native

AT_LINE_START = 1
AFTER_CR = 2
TERMINATOR = b".\r\n"


def pure_wire_encode(data: bytes, state: int):
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


def ending(state: int) -> bytes:
    """A line end if the message lacks one (its CR, if any, was sent), then '.'."""
    if state & AT_LINE_START:
        return TERMINATOR
    return (b"\n" if state & AFTER_CR else b"\r\n") + TERMINATOR


def pure_wire_reply(prefix: bytes, header: bytes, data: bytes, start: int, end: int) -> bytes:
    """A whole reply in one piece: prefix (the +OK line), header and then
    data[start:end] (a message from the start of a line) as wire bytes, then
    the terminating "." line (render.py's pure_retr_reply; the native twin
    does both in one call, _native/wire.c's pn_retr_reply)."""
    head, state = pure_wire_encode(header, AT_LINE_START)
    body, state = pure_wire_encode(data[start:end], state)
    return b"".join((prefix, head, body, ending(state)))


native_wire_encode = native.wire_encode         # _native/wire.c
wire_encode = native_wire_encode if native.NATIVE else pure_wire_encode
