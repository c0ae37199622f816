"""XTND XLST <header> [n] (Qpopper's xtnd_xlst.c; the manual page spells it
XLIST, and both are taken): for each message not marked deleted (or
message n alone), the first header line whose start is <header>, compared
case-insensitively ("subject" also finds "Subject-Foo:"), and the
continuation lines after it, the first line prefixed with the message's
number.  Messages without such a line give no line.

Deviations (docs/deviations.md): the numbers are the visible ones (Qpopper
printed its internal index, one too high after a hidden UW-IMAP message),
the bytes come out in their logical order (Qpopper's could be reordered by
its 512-byte write buffer), and a line is sent whole where Qpopper's
fgets() cut it at 1023 bytes.
"""

from popper.extensions import Subcommands
from popper.maildrop.wire import AT_LINE_START, wire_encode
from popper.protocol import replies as R
from popper.protocol.session import TRANSACTION


def rows(session):
    row = (lambda header, number=None: xlst(session, header, number), 1, 2)
    return {TRANSACTION: {"xtnd": (Subcommands(xlst=row, xlist=row), 1, 99)}}


def xlst(session, header: str, number: str = None):
    if number is None:
        indexes = session.live()
    else:
        # xtnd_xlst.c: "Message n does not exist." past the visible ones; a
        # deleted message n is no error, it has no line.
        i, error = session.message(number, deleted_template=None)
        if error:
            return error
        indexes = () if session.deleted[i] else (i,)
    return _listing(session, header.encode("latin-1").lower(), indexes)


def _listing(session, name: bytes, indexes):
    yield R.ok(R.XLST)
    messages = session.maildrop.messages
    for i in indexes:
        found = header_field(session.maildrop.header_lines(messages[i]), name)
        if found:
            out, _ = wire_encode(b"".join(found), AT_LINE_START)    # dot-stuffed, CRLF
            yield b"%d " % (i + 1 - session.first) + out + (
                b"" if out.endswith(b"\r\n") else b"\r\n")
    yield b".\r\n"


def header_field(lines, name: bytes) -> list:
    """The first line starting with name (lower-case bytes; ASCII case is
    ignored, as strncasecmp does) and its continuation lines; [] if none."""
    found = []
    for line in lines:
        if found:
            if line[:1] not in (b" ", b"\t"):
                break
            found.append(line)
        elif line[:len(name)].lower() == name:
            found.append(line)
    return found
