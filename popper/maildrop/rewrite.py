"""The QUIT's rewrite of the spool, in place, from the temporary drop.

When it starts, the temp drop holds all the mail, on the disk (the login
moved the spool there, and the QUIT has just moved what was delivered
during the session), and the spool is locked.  Then:

  rewrite  the spool is emptied and set to a bound it cannot outgrow, in
           zeros (a delivery that comes after a crash lands beyond it,
           where recovery finds it),
           its first bytes become files.MARKER, which no mailbox starts
           with, and the kept messages (with X-UIDL: and Status: written
           in) and the new mail are written behind it and fsync'ed;
  done     the real first bytes are recorded, the spool cut to its size,
           those bytes put in place and fsync'ed: the update is done;
           the temp drop and the journal are removed.

A failure before `done` (a full disk) gives up: the spool is emptied, as
Qpopper left "Mail left in temporary maildrop", and the journal removed; if
even that fails the `rewrite` record stays true and the next login
recovers from it.  A failure after `done` is not the session's: the update
is made, and the next login finishes the tidying the record describes.
"""

import errno
import os
import time

from popper import native
from popper.maildrop import files, render
from popper.maildrop.journal import Done, Rewrite
from popper.maildrop.scan import MMDF_MESSAGE, UW_DATA, NotAMailbox, scan

SMALL_BODY = 64 * 1024      # bodies up to this size are written through the buffer
GROWTH = 128                # most a kept message grows at QUIT (X-UIDL:, Status:, line ends,
                            # a From line for MMDF mail in an mbox spool)
MMDF_SEPARATOR = b"\x01\x01\x01\x01\n"


class Unfinished(Exception):
    """The update failed before it was made; args[0] is the OSError."""


def write_back(drop, spool_fd: int, kept, seen, headers: bool, extras, lock, log) -> None:
    """The spool := drop's kept messages (headers rewritten if `headers`) +
    the mail at the temp drop's `extras` ranges, as the module says.
    Raises Unfinished if the spool is not updated (the mail is then in the
    temp drop); logs, and returns, a failure after the update is made."""
    temp_fd, messages = drop.temp_fd, drop.messages
    tlen, n = files.size(temp_fd), files.size(spool_fd)
    separator = drop.separator or MMDF_SEPARATOR
    mmdf = _format(drop, temp_fd, kept, extras)
    grown = len(kept) + sum(len(_messages(temp_fd, a, b) or ()) for a, b in extras
                            if (os.pread(temp_fd, 1, a) == b"\x01") != bool(mmdf))
    bound = (sum(messages.end[i] - messages.start[i] for i in kept)
             + (GROWTH + len(separator)) * grown
             + sum(b - a for a, b in extras) + 2 * len(extras) + len(files.MARKER))
    try:
        drop.journal.write(Rewrite(tlen, n, files.fingerprint(spool_fd, n), bound))
    except OSError as exc:
        raise Unfinished(exc) from None
    try:
        # Zeros up to the bound: what a crash leaves after the written part is
        # never old mail, and deliveries after a crash land beyond it.
        os.ftruncate(spool_fd, 0)
        os.ftruncate(spool_fd, bound)
        os.pwrite(spool_fd, files.MARKER, 0)
        out = _SpoolWriter(spool_fd, withhold=len(files.MARKER))
        window = _Window(temp_fd)
        for count, (a, b, data) in enumerate(
                output_pieces(drop, temp_fd, kept, seen, headers, extras, window), 1):
            if data is not None:
                out.write(data)
            elif b - a <= SMALL_BODY:
                out.write(window.view(a, b))
            else:
                out.copy(temp_fd, a, b)
            if count % (4 * drop.settings.lock_refresh) == 0:
                lock.refresh()
        out.sync()
        drop.journal.write(Done(out.pos, out.head))
    except OSError as exc:                  # the journal still says "rewrite"
        _give_up(spool_fd, drop.journal, log, drop.user)
        raise Unfinished(exc) from None
    try:
        # Only these two can leave the spool unreadable to others (ending in
        # zeros, or behind the marker) until the next login: a failure is
        # tried once more.
        try:
            _twice(os.ftruncate, spool_fd, out.pos)
        finally:
            _twice(os.pwrite, spool_fd, out.head, 0)    # whatever happens, the spool is whole
        os.fsync(spool_fd)
        drop.finish()
    except OSError as exc:
        log.error("%s: the update of %s is made, but tidying after it failed: %s; the next "
                  "login finishes it" % (drop.user, drop.spool_path, exc))


def output_pieces(drop, fd: int, kept, seen, headers: bool, extras, window=None):
    """The new spool, piece by piece, from fd (the temp drop in normal mode,
    the spool itself in server mode), where drop's messages and the
    `extras` ranges (mail that came during the session) are: (a, b, data),
    data None for fd's bytes [a, b) as they are, else the bytes that
    replace them (a separator line, a rewritten header, a message's end;
    a == b for bytes put between two pieces).  The write-back writes them
    in order (rewrite.write_back, compact.py)."""
    messages = drop.messages
    window = window or _Window(fd)
    mmdf = _format(drop, fd, kept, extras)
    last = []                           # the last message's pieces
    for i in kept:
        last = list(_message_pieces(fd, drop, messages[i], seen[i], headers, window, mmdf))
        for piece in last:
            yield piece
    for a, b in extras:
        # New mail in the other format goes message by message, else whole.
        mail = (None if (os.pread(fd, 1, a) == b"\x01") == bool(mmdf)
                else _messages(fd, a, b))
        if mail is None:
            last = [(a, a, files.separation(_last2(fd, last), os.pread(fd, 1, a))), (a, b, None)]
            for piece in last:
                yield piece
        else:
            for msg in mail:
                last = list(_message_pieces(fd, drop, msg, False, False, window, mmdf))
                for piece in last:
                    yield piece


def _format(drop, fd: int, kept, extras):
    """One format for the whole spool, the first message's (a temp drop and
    a spool in different formats would otherwise run together): the MMDF
    separator line for MMDF, None for mbox."""
    first_mmdf = (drop.messages.flags[kept[0]] & MMDF_MESSAGE if kept else
                  extras and os.pread(fd, 1, extras[0][0]) == b"\x01")
    return (drop.separator or MMDF_SEPARATOR) if first_mmdf else None


def _last2(fd: int, pieces) -> bytes:
    """The last two bytes the pieces put out ("\n\n" for none)."""
    out = b""
    for a, b, data in reversed(pieces):
        out = (data if data is not None else os.pread(fd, min(b - a, 2), b - min(b - a, 2))) + out
        if len(out) >= 2:
            break
    return (b"\n\n" + out)[-2:]


def _messages(fd: int, start: int, end: int):
    """The messages of [start, end), or None if it is not mail (then it is
    copied as it is)."""
    try:
        return scan(fd, start=start, limit=end).messages
    except NotAMailbox:
        return None


def _twice(call, *args):
    try:
        return call(*args)
    except OSError:
        return call(*args)


def _give_up(spool_fd: int, journal, log, user: str) -> None:
    """A rewrite that failed: all the mail is in the temp drop.  Empty the
    spool and, once that is on the disk, the journal has nothing to say."""
    try:
        os.ftruncate(spool_fd, 0)
        os.fsync(spool_fd)
        journal.remove()
    except OSError as exc:
        log.error("%s: could not empty the spool after a failed update: %s; the next login "
                  "recovers" % (user, exc))


class _SpoolWriter:
    """Buffered pwrite into the spool, with kernel copies for large pieces.
    Its first `withhold` bytes are kept back in `head` (the marker stays in
    their place until the rest is safely written).  Every SYNC_EVERY bytes a
    background fdatasync starts writing what is there to the disk, so that
    the fsync at the end (sync()) has little left to wait for."""

    SYNC_EVERY = 8 << 20

    def __init__(self, fd: int, withhold: int = 0):
        self.fd, self.pos, self.buf, self.size = fd, 0, [], 0
        self.withhold = withhold
        self.head = b""
        self.synced_to = 0
        self.syncer = None

    def _sync_behind(self) -> None:
        if self.pos - self.synced_to >= self.SYNC_EVERY and not (
                self.syncer and self.syncer.running()):
            self.synced_to = self.pos
            self.syncer = files.Background(os.fdatasync, self.fd)

    def sync(self) -> None:
        """Everything written, on the disk."""
        self.flush()
        if self.syncer and self.syncer.wait():
            raise self.syncer.failure
        os.fsync(self.fd)

    def write(self, data) -> None:
        """Add data (bytes, or a view that stays valid until the next flush)."""
        if data:
            self.buf.append(data)
            self.size += len(data)
            if self.size >= files.COPY_CHUNK:
                self.flush()

    def copy(self, src: int, start: int, end: int) -> None:
        if end <= start:
            return
        if end - start <= SMALL_BODY or self.pos + self.size < self.withhold:
            data = os.pread(src, end - start, start)
            if len(data) != end - start:
                raise OSError(errno.EIO, "the temporary drop shrank")
            self.write(data)
        else:
            self.flush()
            self.pos = files.copy_range(src, self.fd, start, end, self.pos)
            self._sync_behind()

    def flush(self) -> None:
        pieces, self.buf, self.size = self.buf, [], 0
        if self.pos < self.withhold and pieces:
            data = b"".join(pieces)
            keep = min(self.withhold - self.pos, len(data))
            self.head += data[:keep]
            pieces, self.pos = [data[keep:]], self.pos + keep
        self.pos = files.write_pieces(self.fd, pieces, self.pos)
        self._sync_behind()


class _Window:
    """Reads a file forwards a megabyte at a time, for slicing small pieces."""

    def __init__(self, fd: int):
        self.fd, self.base, self.data, self.mem = fd, 0, b"", memoryview(b"")

    def hold(self, start: int, end: int) -> None:
        """[start, end) in the window."""
        if not (self.base <= start and end <= self.base + len(self.data)):
            self.base = start
            self.data = os.pread(self.fd, max(end - start, files.COPY_CHUNK), start)
            if len(self.data) < end - start:
                raise OSError(errno.EIO, "the temporary drop shrank")
            self.mem = memoryview(self.data)

    def read(self, start: int, end: int) -> bytes:
        self.hold(start, end)
        return self.data[start - self.base:end - self.base]

    def view(self, start: int, end: int) -> memoryview:
        """[start, end) not copied (for writing it elsewhere)."""
        self.hold(start, end)
        return self.mem[start - self.base:end - self.base]


def _message_pieces(fd: int, drop, msg, seen: bool, headers: bool, window: _Window, mmdf):
    """One kept message's pieces (output_pieces), as MMDF (mmdf: the
    separator) or mbox (mmdf None): its separator line, its header
    (rewritten unless headers is off or it is UW-IMAP's folder data), its
    body, what ends it.  A piece that comes out as it was is (a, b, None)."""
    add_status = drop.settings.update_status_headers
    if msg.end - msg.start <= SMALL_BODY:
        window.hold(msg.start, msg.end)     # the whole message in the window
        start = msg.start
        edits = message_edits(window.data, start - window.base, msg.end - start,
                              msg.header - start, msg.body - start, msg.content_end - start,
                              msg.flags, msg.uid, seen, headers, add_status, mmdf)
        if edits is not None:
            line, header, ending = edits
            yield start, msg.header, line
            yield msg.header, msg.body, header
            yield msg.body, msg.content_end, None
            yield msg.content_end, msg.end, ending
            return
        original = window.read
    else:
        original = lambda a, b: os.pread(fd, b - a, a)  # noqa: E731
    headers = headers and not msg.flags & UW_DATA
    line = original(msg.start, msg.header)
    head, eol = _separator_line(line, msg.flags, mmdf)
    yield msg.start, msg.header, None if head == line else head
    last = head[-1:]
    if headers:
        old = original(msg.header, msg.body) if msg.body - msg.header <= SMALL_BODY else None
        header = render.rewritten_header([old] if old is not None else
                                         render.header_blocks(fd, msg.header, msg.body),
                                         msg.uid, seen, eol, add_status)
        yield msg.header, msg.body, None if header == old else header
        last = header[-1:] or last
    else:
        yield msg.header, msg.body, None
        last = original(msg.body - 1, msg.body) if msg.body > msg.header else last
    yield msg.body, msg.content_end, None
    if msg.content_end > msg.body:
        last = original(msg.content_end - 1, msg.content_end)
    tail = original(msg.content_end, msg.end)
    ending = _ending(last, eol, msg.flags, tail, mmdf)
    yield msg.content_end, msg.end, None if ending == tail else ending


def pure_message_edits(data: bytes, at: int, length: int, header: int, body: int,
                       content_end: int, flags: int, uid: bytes, seen: bool, headers: bool,
                       add_status: bool, mmdf):
    """A kept message's edits, for one that lies whole in data from `at`
    (header, body, content_end relative to its start): (separator line,
    header, ending), None for each that stays as it is (_message_pieces'
    rules); None for a message going into a spool of the other format.
    The twin of _native/rewrite.c (native.message_edits)."""
    if not (0 <= at and 0 <= length and at + length <= len(data)):
        raise ValueError("the message is not in the data")
    if bool(flags & MMDF_MESSAGE) != bool(mmdf):
        return None
    if not 0 <= header <= body <= content_end <= length:
        raise ValueError("the message's offsets are out of order")
    headers = headers and not flags & UW_DATA
    line = data[at:at + header]
    head, eol = _separator_line(line, flags, mmdf)
    last = b"\n"
    new = None
    if headers:
        old = data[at + header:at + body]
        new = render.rewritten_header([old], uid, seen, eol, add_status)
        last = new[-1:]
        new = None if new == old else new
    elif body > header:
        last = data[at + body - 1:at + body]
    if content_end > body:
        last = data[at + content_end - 1:at + content_end]
    tail = data[at + content_end:at + length]
    ending = _ending(last, eol, flags, tail, mmdf)
    return None if head == line else head, new, None if ending == tail else ending


def _separator_line(line: bytes, flags: int, mmdf):
    """A message's separator line as written back, and the line end its
    spool uses: a separator cut off by the end of the file gets one.  A
    message going into a spool of the other format gets that format's
    (an mbox From line of MAILER-DAEMON and the time now, for MMDF mail)."""
    if bool(flags & MMDF_MESSAGE) != bool(mmdf):
        line = mmdf or b"From MAILER-DAEMON %s\n" % time.asctime().encode()
    if line.endswith(b"\r\n"):
        return line, b"\r\n"
    return (line if line.endswith(b"\n") else line + b"\n"), b"\n"


def _ending(last: bytes, eol: bytes, flags: int, tail: bytes, mmdf) -> bytes:
    """What ends a message in the spool: an LF if it lacks one (the fewest
    bytes added; the client gets a CRLF either way), then the blank line
    (mbox) or its trailer (MMDF: the one it had, and what followed it, or
    the separator where it was missing)."""
    fix = b"" if last == b"\n" else b"\n"
    if mmdf:
        return fix + (tail if flags & MMDF_MESSAGE and tail.startswith(mmdf) else mmdf)
    return fix + eol


native_message_edits = native.message_edits         # _native/rewrite.c
message_edits = native_message_edits if native.NATIVE else pure_message_edits
