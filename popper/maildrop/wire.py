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


native_wire_encode = native.wire_encode         # _native/wire.c

wire_encode = native_wire_encode if native.NATIVE else pure_wire_encode
