"""What RETR and TOP send for a message, and how a message is written back.

Both read the message by offsets from the open drop: a message of up to
CHUNK bytes in one piece, a larger one as its header in blocks of whole
lines (HEADER_PIECE bytes each) and its body in CHUNK-sized pieces, so
memory does not grow with the message.  The header editors take the
header as an iterable of such blocks.  The
octets the scanner counted (scan.py) are exactly what retr_chunks sends
before dot-stuffing; tests hold the two together.
"""

import os

from popper import native
from popper.maildrop.scan import Message
from popper.maildrop.wire import AT_LINE_START, ending, pure_wire_reply, wire_encode

CHUNK = 256 * 1024          # bytes of body read and sent at a time
HEADER_PIECE = 256 * 1024   # a header up to this size is handled in one piece


def read_range(fd: int, start: int, end: int, chunk: int = CHUNK):
    """The bytes of [start, end) of fd, in pieces of at most chunk bytes."""
    while start < end:
        data = os.pread(fd, min(chunk, end - start), start)
        if not data:
            raise OSError("the maildrop is shorter than its message table says")
        yield data
        start += len(data)


def header_blocks(fd: int, start: int, end: int):
    """The header [start, end) in blocks of whole lines (about HEADER_PIECE
    bytes each; one line longer than that is a block of its own)."""
    pending = b""
    for piece in read_range(fd, start, end, HEADER_PIECE):
        data = pending + piece
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
        pending = data[cut:]
    if pending:
        yield pending


def _named_lines(block: bytes, names: tuple) -> list:
    """(start, end, name) of each line of a block of header lines whose name
    (case-insensitive) is one of names, in order."""
    lower = block.lower()
    found = []
    for name in names:
        pos = 0 if lower.startswith(name) else lower.find(b"\n" + name) + 1 or -1
        while pos >= 0:
            end = block.find(b"\n", pos) + 1 or len(block)
            found.append((pos, end, name))
            pos = lower.find(b"\n" + name, end - 1) + 1 or -1
    found.sort()
    return found


def _ended(out: list, eol: bytes) -> None:
    """A last header line cut off by the end of the file gets a line end."""
    last = next((piece for piece in reversed(out) if piece), b"\n")
    if not last.endswith(b"\n"):
        out.append(eol)


def retr_header(blocks, uid: bytes) -> bytes:
    """The header RETR and TOP send, from the header's blocks of whole lines:
    Content-Length: and X-UIDL: lines dropped, "X-UIDL: <uid>" put before
    the first Status: line, or at the end.  Mail bytes; the wire encoder
    turns them into CRLF lines."""
    uid_line = b"X-UIDL: " + uid + b"\n"
    out = []
    placed = False
    for block in blocks:
        pos = 0
        for start, end, name in _named_lines(block, (b"x-uidl:", b"content-length:",
                                                     b"status:")):
            if name != b"status:":
                out.append(block[pos:start])
                pos = end
            elif not placed:
                out += (block[pos:start], uid_line)
                pos, placed = start, True
        out.append(block[pos:])
    _ended(out, b"\n")
    if not placed:
        out.append(uid_line)
    return b"".join(out)


def pure_retr_reply(prefix: bytes, data: bytes, cut: int, end: int, uid: bytes) -> bytes:
    """RETR's or TOP's whole reply in one piece: prefix (the +OK line), the
    header data[:cut] as retr_header makes it, data[cut:end], all as wire
    bytes, then the terminating "." line."""
    return pure_wire_reply(prefix, retr_header([data[:cut]], uid), data, cut, end)


native_retr_reply = native.retr_reply          # _native/wire.c: the same in one C call
retr_reply = native_retr_reply if native.NATIVE else pure_retr_reply


def _lines_end(data: bytes, lines: int, start: int = 0) -> int:
    """The offset just after the first `lines` lines of data[start:] (or its end)."""
    i = start - 1
    for _ in range(lines):
        i = data.find(b"\n", i + 1)
        if i < 0:
            return len(data)
    return i + 1


def _top_end(fd: int, msg: Message, lines: int) -> int:
    """Where TOP's body stops: after the blank line and `lines` more lines."""
    pos, end = msg.body, msg.content_end
    want = lines + 1                    # the blank line is not counted by TOP
    for piece in read_range(fd, pos, end):
        count = piece.count(b"\n")
        if count < want:
            want -= count
            pos += len(piece)
            continue
        i = -1
        for _ in range(want):
            i = piece.find(b"\n", i + 1)
        return pos + i + 1
    return end


def message_chunks(fd: int, msg: Message, top_lines: int = None, stage=None,
                   prefix: bytes = b""):
    """The wire bytes of a message for RETR (top_lines None) or TOP, after
    prefix (the +OK line) and ending with the terminating "." line.  A
    message up to CHUNK bytes is read with one pread and sent as one piece,
    status line and all (the transport writes it as it is, uncopied).  stage: a filter between the
    rendered message and the wire encoder (X-MANGLE's): it takes
    message_bytes() and gives the mail bytes to send (TOP's cut is its)."""
    if stage is not None:
        if prefix:
            yield prefix
        yield from wire_chunks(stage(message_bytes(fd, msg)))
        return
    size = msg.content_end - msg.header
    if size <= CHUNK:
        data = os.pread(fd, size, msg.header)
        if len(data) != size:
            raise OSError("the maildrop is shorter than its message table says")
        cut = msg.body - msg.header
        # The blank line is not counted by TOP.
        end = size if top_lines is None else _lines_end(data, top_lines + 1, cut)
        yield retr_reply(prefix, data, cut, end, msg.uid)
        return
    if prefix:
        yield prefix
    end = msg.content_end if top_lines is None else _top_end(fd, msg, top_lines)
    yield from wire_chunks(message_bytes(fd, msg, end))


def message_bytes(fd: int, msg: Message, end: int = None):
    """The mail bytes RETR sends for msg (up to end), before the wire
    encoding: the rendered header, then the body in CHUNK pieces."""
    yield retr_header(header_blocks(fd, msg.header, msg.body), msg.uid)
    yield from read_range(fd, msg.body, msg.content_end if end is None else end)


def wire_chunks(pieces):
    """Mail pieces as wire bytes of about CHUNK bytes or more (small
    pieces, a header, go with the next), then the terminating "." line."""
    out, state = b"", AT_LINE_START
    for piece in pieces:
        chunk, state = wire_encode(piece, state)
        out = out + chunk if out else chunk
        if len(out) >= CHUNK:
            yield out
            out = b""
    yield out + ending(state)


def mail_octets(pieces) -> int:
    """What the scanner would count for these mail bytes: a bare LF is two
    octets on the wire (the dot-stuffing is not counted)."""
    return sum(len(piece) + piece.count(b"\n") - piece.count(b"\r\n") for piece in pieces)


# --- writing a message back at QUIT ------------------------------------------------

def rewritten_header(blocks, uid: bytes, seen: bool, eol: bytes,
                     add_status: bool = True) -> bytes:
    """The header as it goes back into the spool (qpopper-behaviour.md 4.4;
    pop_updt.c), from its blocks of whole lines: "X-UIDL: <uid>" first, no
    other X-UIDL: lines, a Status: line it has made "Status: RO" if the
    message was retrieved (else left as it is), and, if it has none and
    add_status (update-status-headers), "Status: RO" or "Status: U" before
    the header's blank line."""
    out = [b"X-UIDL: " + uid + eol]
    has_status = False
    for block in blocks:
        pos = 0
        for start, end, name in _named_lines(block, (b"x-uidl:", b"status:")):
            if name == b"status:":
                has_status = True
                if not seen:
                    continue
                out += (block[pos:start], b"Status: RO" + eol)
            else:
                out.append(block[pos:start])
            pos = end
        out.append(block[pos:])
    _ended(out, b"\n")
    if add_status and not has_status:
        out.append((b"Status: RO" if seen else b"Status: U") + eol)
    return b"".join(out)
