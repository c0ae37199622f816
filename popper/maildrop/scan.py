"""The mailbox scanner: scan() is _native/scanner.c's (popper/native.py)
when it is built and POPPER_PUREPYTHON is unset, else pure_scan(), its
pure-Python twin.

It walks an mbox or MMDF file once, by offsets, and returns the message
table: where each message's separator, header, body and end are, the exact
number of octets RETR will send for it, its Status: flag and its UID.  The
file is never read whole: it is read through a window of WINDOW bytes.

The rules (Qpopper's, docs/deviations.md says where we differ):

* The first line decides the format.  A first line starting with ^A makes
  the file MMDF: that exact line is the separator, each message sits between
  two copies of it.  Otherwise the first line must be a "From " line.
* In mbox, a line is a separator when the line before it is blank ("\\n",
  or "\\r\\n"), it is at most MAX_SEPARATOR octets long, and it has the
  c-client date shape (is_from_line).  The blank line before a separator
  belongs to the separator: it is not part of the message before it.
* The header ends at the first blank line; that line starts the body.
* RETR sends the header without its Content-Length: and X-UIDL: lines, with
  one "X-UIDL: <uid>" line added, then the body; bare LFs become CRLF and a
  message that does not end in LF gets one.  `octets` counts exactly that
  (before dot-stuffing, which is transfer encoding).
* The UID is the first valid X-UIDL: header's value, else Qpopper's MD5 of
  the separator, a salt, and the Received:/Date:/Message-Id:/Subject: lines.
"""

import os
import struct
from array import array

from popper import digests, native

WINDOW = 1 << 20            # bytes read per pread
LINE_WINDOW = 1 << 16       # a header line is looked at whole up to this length
MAX_SEPARATOR = 1023        # Qpopper's line buffer: longer lines never separate
MAX_UID = 70                # RFC 1939: 1 to 70 characters 0x21..0x7E

# Message.flags
SEEN = 1            # a Status: header holds an upper-case R
HAS_STATUS = 2      # the header has a Status: line
HAS_UIDL = 4        # the UID came from a valid X-UIDL: header
MMDF_MESSAGE = 8    # the message is in MMDF format (ends with a separator line)
UW_DATA = 16        # UW-IMAP's "folder internal data" message (qpopper-behaviour 5.4)

# scan result formats
EMPTY, MBOX, MMDF = "empty", "mbox", "mmdf"

UID_HEADERS = (b"received:", b"date:", b"message-id:", b"subject:")
UW_SUBJECTS = (b"DO NOT DELETE", b"DON'T DELETE THIS MESSAGE", b"FOLDER INTERNAL DATA")
DROPPED_HEADERS = (b"x-uidl:", b"content-length:")


class NotAMailbox(Exception):
    """The file does not start with a separator line."""


class Message:
    """One message of a scanned file; offsets are file offsets."""

    __slots__ = ("start", "header", "body", "content_end", "end", "octets",
                 "flags", "uid")

    def __init__(self, start, header, body, content_end, end, octets, flags, uid):
        self.start = start              # the separator line
        self.header = header            # the first header line
        self.body = body                # the blank line ending the header
        self.content_end = content_end  # end of the message's own bytes
        self.end = end                  # start of the next message / end of file
        self.octets = octets            # what RETR sends, before dot-stuffing
        self.flags = flags
        self.uid = uid                  # bytes

    def as_tuple(self):
        return tuple(getattr(self, name) for name in self.__slots__)

    def __repr__(self):
        return "Message(%s)" % ", ".join("%s=%r" % (n, getattr(self, n)) for n in self.__slots__)


class MessageTable:
    """The messages of a scanned file, kept column by column: a few dozen
    bytes a message instead of a few hundred for one object each, so that
    a mailbox of 100,000 messages costs megabytes, not tens of them.
    table[i] gives message i as a Message."""

    COLUMNS = ("start", "header", "body", "content_end", "end", "octets")

    def __init__(self):
        for name in self.COLUMNS:
            setattr(self, name, array("q"))
        self.flags = array("i")
        self.uid = []

    def append(self, msg: Message) -> None:
        for name in self.COLUMNS:
            getattr(self, name).append(getattr(msg, name))
        self.flags.append(msg.flags)
        self.uid.append(msg.uid)

    def extend(self, other: "MessageTable") -> None:
        for name in self.COLUMNS:
            getattr(self, name).extend(getattr(other, name))
        self.flags.extend(other.flags)
        self.uid.extend(other.uid)

    def shift(self, delta: int) -> None:
        """Move every offset by delta (the messages were copied elsewhere)."""
        for name in self.COLUMNS[:5]:
            column = getattr(self, name)
            setattr(self, name, array("q", [x + delta for x in column]))

    def make_uids_unique(self) -> None:
        """RFC 1939 wants every UID once in a maildrop; a copied message or a
        sender's own X-UIDL: can repeat one.  The later ones get a UID made
        from theirs (the same one each time), which QUIT then writes back."""
        seen, taken = set(), set(self.uid)
        next_k = {}             # per repeated UID: where its search goes on (taken only grows)
        for i, uid in enumerate(self.uid):
            if uid in seen:
                k = next_k.get(uid, 1)
                while True:
                    new = encode_uid(digests.md5(uid + b"/%d" % k).digest())
                    k += 1
                    if new not in taken:
                        break
                next_k[uid] = k
                taken.add(new)
                self.octets[i] += len(new) - len(uid)
                self.flags[i] &= ~HAS_UIDL
                self.uid[i] = uid = new
            seen.add(uid)

    def __len__(self) -> int:
        return len(self.uid)

    def __getitem__(self, i: int) -> Message:
        return Message(self.start[i], self.header[i], self.body[i], self.content_end[i],
                       self.end[i], self.octets[i], self.flags[i], self.uid[i])

    def __iter__(self):
        return (self[i] for i in range(len(self)))


class ScanResult:
    def __init__(self, format: str, separator: bytes, messages: MessageTable):
        self.format = format
        self.separator = separator
        self.messages = messages


# --- the From-line test -------------------------------------------------------

def is_from_line(line: bytes) -> bool:
    """c-client's VALID(): does this line look like an mbox "From " line?

    The date is recognised by the position of spaces and colons counted
    from the end of the line, exactly as Mark Crispin's macro does
    (qpopper-behaviour.md section 5.3); a CRLF line end is accepted.
    """
    if not line.startswith(b"From "):
        return False
    if line.endswith(b"\n"):
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
    x = len(line)   # the end E; positions below are relative to it

    def at(i: int) -> int:
        i += x
        return line[i] if 0 <= i < len(line) else -1

    if x >= 41:
        zn = -1
        while at(zn) != 0x20:
            zn -= 1
        if line[x + zn - 12:x + zn] == b" remote from":
            x += zn - 12
    if x < 27:
        return False
    sp, colon = 0x20, 0x3A
    ti = 0
    if at(-5) == sp:
        if at(-8) == colon:
            ti = -5
        elif at(-9) == sp:
            ti = -9
        elif at(-11) == sp and at(-10) in (0x2B, 0x2D):
            ti = -11
    elif at(-4) == sp:
        if at(-9) == sp:
            ti = -9
    elif at(-6) == sp:
        if at(-11) == sp and at(-5) in (0x2B, 0x2D):
            ti = -11
    if not ti or at(ti - 3) != colon:
        return False
    ti -= 9 if at(ti - 6) == colon else 6
    return at(ti) == sp and at(ti - 3) == sp and at(ti - 7) == sp and at(ti - 11) == sp


# --- UIDs -----------------------------------------------------------------

def encode_uid(digest: bytes) -> bytes:
    """Qpopper's 20-character base-80 form of an MD5 digest."""
    out = bytearray()
    for group in range(0, 16, 4):
        v = 0
        for byte in digest[group:group + 4]:
            v = (v << 4) + byte         # shift by 4, overlapping: Qpopper's fold
        for _ in range(5):
            c = 0x21 + v % 80
            out.append(0x7E if c == 0x2E else c)
            v //= 80
    return bytes(out)


def uid_from_header(line: bytes):
    """The UID an X-UIDL: header line carries, or None if it is not valid."""
    value = line[7:].strip(b" \t\r\n")
    if 1 <= len(value) <= MAX_UID and all(0x21 <= c <= 0x7E for c in value):
        return value
    return None


# --- reading through a window -------------------------------------------------

class _Reader:
    """pread through a moving window; at(pos, need) shows [pos, pos+need)."""

    def __init__(self, fd: int, limit: int):
        self.fd, self.limit = fd, limit
        self.base, self.buf = 0, b""

    def at(self, pos: int, need: int):
        """(buffer, index of pos, bytes available from pos) -- at least
        min(need, limit - pos) bytes are available; 4 bytes before pos are
        kept when the window moves, for the blank-line test."""
        end = self.base + len(self.buf)
        if not (self.base <= pos and (pos + need <= end or end >= self.limit)):
            start = max(pos - 4, 0)
            size = max(WINDOW, need + (pos - start))
            self.buf = os.pread(self.fd, min(size, self.limit - start), start)
            self.base = start
            if len(self.buf) < min(size, self.limit - start):
                raise OSError("file shrank while being scanned")
        i = pos - self.base
        return self.buf, i, len(self.buf) - i

    def read(self, pos: int, n: int) -> bytes:
        """The bytes [pos, pos+n), fewer only at the limit."""
        buf, i, _ = self.at(pos, n)
        return buf[i:i + n]

    def line_end(self, pos: int) -> int:
        """Offset just past the LF ending the line at pos (or the limit)."""
        while pos < self.limit:
            buf, i, avail = self.at(pos, LINE_WINDOW)
            j = buf.find(b"\n", i, i + avail)
            if j >= 0:
                return self.base + j + 1
            pos += avail
        return self.limit

    def chunks(self, start: int, end: int):
        while start < end:
            buf, i, avail = self.at(start, min(end - start, WINDOW))
            n = min(avail, end - start)
            yield buf[i:i + n]
            start += n

    def byte(self, pos: int) -> int:
        buf, i, _ = self.at(pos, 1)
        return buf[i]


def _line_octets(line_len: int, last2: bytes) -> int:
    """Wire octets of one header line: its bytes, plus the CR a bare LF
    gets, plus the line end a last line without LF gets."""
    if last2.endswith(b"\n"):
        return line_len + (0 if last2 == b"\r\n" else 1)
    return line_len + (1 if last2.endswith(b"\r") else 2)


def _body_octets(reader: _Reader, start: int, end: int) -> int:
    if start >= end:
        return 0
    lf = crlf = 0
    prev_cr = False
    for chunk in reader.chunks(start, end):
        lf += chunk.count(b"\n")
        crlf += chunk.count(b"\r\n")
        if prev_cr and chunk.startswith(b"\n"):
            crlf += 1
        prev_cr = chunk.endswith(b"\r")
    octets = (end - start) + lf - crlf
    last = reader.byte(end - 1)
    if last != 0x0A:
        octets += 1 if last == 0x0D else 2
    return octets


# --- the scanner (pure twin) ------------------------------------------------------------------

def pure_scan(fd: int, start: int = 0, limit: int = None, base_time: int = 0,
         salted: bool = True, old_style: bool = False, uw: bool = False) -> ScanResult:
    """Scan the file open on fd from offset start up to limit (its size).

    base_time salts generated UIDs as Qpopper does (base_time + ordinal of
    the message, as a C long); salted=False leaves the salt out, which makes
    UIDs a function of the mail alone; old_style gives Qpopper 2.53's hex UIDs.
    uw: look for UW-IMAP's folder data in the first message (flag UW_DATA).
    """
    if limit is None:
        limit = os.fstat(fd).st_size
    reader = _Reader(fd, limit)
    if start >= limit:
        return ScanResult(EMPTY, b"", MessageTable())
    first_end = reader.line_end(start)
    first = reader.read(start, first_end - start)
    if first.startswith(b"\x01"):
        if not first.endswith(b"\n") or len(first) > MAX_SEPARATOR:
            raise NotAMailbox("the MMDF separator line is not a complete line")
        fmt, separator = MMDF, first
    elif len(first) <= MAX_SEPARATOR and is_from_line(first):
        fmt, separator = MBOX, b""
    else:
        raise NotAMailbox("the first line is not a From line")

    messages = MessageTable()
    pos = start
    while pos < limit:
        sep_end = reader.line_end(pos)
        sepline = reader.read(pos, sep_end - pos)
        msg = _scan_message(reader, fmt, separator, pos, sep_end, uw and not messages)
        if msg.uid is None:
            msg.uid = _make_uid(reader, msg, sepline, base_time + len(messages) + 1,
                                salted, old_style)
        msg.octets += len(b"X-UIDL: \r\n") + len(msg.uid)
        messages.append(msg)
        pos = msg.end
    return ScanResult(fmt, separator, messages)


def _scan_message(reader: _Reader, fmt: str, separator: bytes, start: int,
                  header: int, uw: bool = False) -> Message:
    """The message whose separator line spans [start, header).  Its octets
    do not count the X-UIDL: line yet; uid is None unless a header gave it.
    uw: count UW-IMAP's hints in its header (two make it folder data)."""
    limit = reader.limit
    flags = MMDF_MESSAGE if fmt == MMDF else 0
    hints = 0
    uid = None
    octets = 0
    pos = header
    body = content_end = None
    while pos < limit:                          # the header, line by line
        line_end = reader.line_end(pos)
        head = reader.read(pos, min(line_end - pos, LINE_WINDOW))
        if head in (b"\n", b"\r\n"):
            body = pos
            break
        if fmt == MMDF and head == separator:
            body = content_end = pos            # a trailer inside the header
            break
        name = head[:16].lower()
        if uw:
            hints += _uw_hints(head, name)
        if name.startswith(b"status:"):
            flags |= HAS_STATUS
            if any(b"R" in chunk for chunk in reader.chunks(pos, line_end)):
                flags |= SEEN
        if not name.startswith(DROPPED_HEADERS):
            octets += _line_octets(line_end - pos, head[-2:] if line_end - pos <= LINE_WINDOW
                                   else _last2(reader, line_end))
        elif uid is None and name.startswith(b"x-uidl:") and line_end - pos <= LINE_WINDOW:
            uid = uid_from_header(head)
        pos = line_end
    else:
        body = content_end = end = limit        # the header runs to the end

    if content_end is None:
        content_end, end = _find_end(reader, fmt, separator, body)
    elif fmt == MMDF and content_end < limit:
        end = _after_trailer(reader, separator, content_end)
    else:
        end = limit
    octets += _body_octets(reader, body, content_end)
    if uid is not None:
        flags |= HAS_UIDL
    if hints >= 2:
        flags |= UW_DATA
    return Message(start, header, body, content_end, end, octets, flags, uid)


def _uw_hints(line: bytes, name: bytes) -> int:
    """How many of UW-IMAP's folder-data hints a header line gives (0 or 1)."""
    if name.startswith(b"subject: "):
        return 1 if any(text in line for text in UW_SUBJECTS) else 0
    return 1 if line.startswith((b"X-IMAP: ", b"From: Mail System Internal Data")) else 0


def _last2(reader: _Reader, line_end: int) -> bytes:
    return reader.read(line_end - 2, 2)


def _find_end(reader: _Reader, fmt: str, separator: bytes, body: int):
    """(content_end, end) of the message whose body starts at body."""
    limit = reader.limit
    pattern = b"\n" + separator if fmt == MMDF else b"\nFrom "
    pos = body
    while pos < limit:
        buf, i, avail = reader.at(pos, len(pattern))   # search what the window holds
        j = buf.find(pattern, i, i + avail)
        if j < 0:
            if pos + avail >= limit:
                break
            pos += max(avail - len(pattern) + 1, 1)
            continue
        lf = reader.base + j                # the LF before the candidate
        candidate = lf + 1
        if fmt == MMDF:
            return candidate, _after_trailer(reader, separator, candidate)
        if reader.byte(lf - 1) == 0x0A:
            blank = lf
        elif reader.byte(lf - 1) == 0x0D and reader.byte(lf - 2) == 0x0A:
            blank = lf - 1
        else:
            blank = None
        if blank is not None and blank >= body:
            line_end = reader.line_end(candidate)
            if line_end - candidate <= MAX_SEPARATOR:
                if is_from_line(reader.read(candidate, line_end - candidate)):
                    return blank, candidate
        pos = candidate
    # The last message: a blank line at the very end belongs to no message.
    if fmt == MBOX and limit - 1 >= body and reader.byte(limit - 1) == 0x0A:
        if reader.byte(limit - 2) == 0x0A:
            return limit - 1, limit
        if limit - 2 >= body and reader.byte(limit - 2) == 0x0D and reader.byte(limit - 3) == 0x0A:
            return limit - 2, limit
    return limit, limit


def _after_trailer(reader: _Reader, separator: bytes, trailer: int) -> int:
    """MMDF: the offset of the next message's separator after a trailer at
    `trailer` (lines between a trailer and the next separator belong to the
    message before them), or the end of the file."""
    pos = trailer + len(separator)
    limit = reader.limit
    while pos < limit:
        line_end = reader.line_end(pos)
        if reader.read(pos, min(line_end - pos, len(separator) + 1)) == separator:
            return pos
        pos = line_end
    return limit


def _make_uid(reader: _Reader, msg: Message, sepline: bytes, counter: int,
              salted: bool, old_style: bool) -> bytes:
    md5 = digests.md5(sepline)
    if salted and not old_style:
        md5.update(struct.pack("l", counter))
    pos = msg.header
    while pos < msg.body:
        line_end = reader.line_end(pos)
        if reader.read(pos, 16).lower().startswith(UID_HEADERS):
            for chunk in reader.chunks(pos, line_end):
                md5.update(chunk)
        pos = line_end
    if old_style:
        return md5.hexdigest().encode()
    md5.update(sepline)
    return encode_uid(md5.digest())


# --- the native twin, and the choice ------------------------------------------------

_FORMATS = (EMPTY, MBOX, MMDF)      # popper.h's PN_EMPTY, PN_MBOX, PN_MMDF


def native_scan(fd: int, start: int = 0, limit: int = None, base_time: int = 0,
                salted: bool = True, old_style: bool = False, uw: bool = False) -> ScanResult:
    """pure_scan's twin in C (_native/scanner.c)."""
    messages = MessageTable()
    found = native.scan(fd, start, limit, base_time, salted, old_style, uw, messages)
    if found is None:
        raise NotAMailbox("the first line is not a separator line")
    fmt, separator = found
    return ScanResult(_FORMATS[fmt], separator, messages)


scan = native_scan if native.NATIVE else pure_scan
