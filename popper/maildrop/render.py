"""What RETR and TOP send for a message, and how a message is written back.

Both read the message by offsets from the open drop; the header is read in
one piece (up to HEADER_PIECE bytes, larger headers line by line), the body
in CHUNK-sized pieces, so memory does not grow with the message.  The
octets the scanner counted (scan.py) are exactly what retr_chunks sends
before dot-stuffing; tests hold the two together.
"""

from __future__ import annotations

import os

from popper import native
from popper.maildrop.scan import Message
from popper.maildrop.wire import AFTER_CR, AT_LINE_START

CHUNK = 256 * 1024          # bytes of body read and sent at a time
HEADER_PIECE = 256 * 1024   # a header up to this size is handled in one piece

TERMINATOR = b".\r\n"


def read_range(fd: int, start: int, end: int, chunk: int = CHUNK):
    """The bytes of [start, end) of fd, in pieces of at most chunk bytes."""
    while start < end:
        data = os.pread(fd, min(chunk, end - start), start)
        if not data:
            raise OSError("the maildrop is shorter than its message table says")
        yield data
        start += len(data)


def _header_blocks(fd: int, start: int, end: int):
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
    """A last header line cut off by the end of the file gets its line end."""
    last = next((piece for piece in reversed(out) if piece), b"\n")
    if not last.endswith(b"\n"):
        out.append(eol)


def retr_header(fd: int, msg: Message) -> bytes:
    """The header RETR and TOP send: Content-Length: and X-UIDL: lines
    dropped, "X-UIDL: <uid>" put before the first Status: line, or at the
    end.  Mail bytes; the wire encoder turns them into CRLF lines."""
    uid_line = b"X-UIDL: " + msg.uid + b"\n"
    out = []
    placed = False
    for block in _header_blocks(fd, msg.header, msg.body):
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


def message_chunks(fd: int, msg: Message, top_lines: int = None):
    """The wire bytes of a message for RETR (top_lines None) or TOP, ending
    with the terminating "." line."""
    state = AT_LINE_START
    out, state = native.wire_encode(retr_header(fd, msg), state)
    end = msg.content_end if top_lines is None else _top_end(fd, msg, top_lines)
    for data in read_range(fd, msg.body, end):
        chunk, state = native.wire_encode(data, state)
        if out:
            chunk, out = out + chunk, b""
        yield chunk
    if not state & AT_LINE_START:       # the message does not end with a line end
        out += b"\n" if state & AFTER_CR else b"\r\n"
    yield out + TERMINATOR


# --- writing a message back at QUIT ------------------------------------------------

def rewritten_header(fd: int, msg: Message, seen: bool, eol: bytes) -> bytes:
    """The header as it goes back into the spool (qpopper-behaviour.md 4.4):
    "X-UIDL: <uid>" first, no other X-UIDL: lines, and a Status: line
    saying RO (retrieved) or U (not), before the header's blank line."""
    out = [b"X-UIDL: " + msg.uid + eol]
    has_status = False
    for block in _header_blocks(fd, msg.header, msg.body):
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
    _ended(out, eol)
    if not has_status:
        out.append((b"Status: RO" if seen else b"Status: U") + eol)
    return b"".join(out)
