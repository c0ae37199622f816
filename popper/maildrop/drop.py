"""A user's maildrop for one session: the spool, the temporary drop, and
the journal that keeps the two consistent whatever happens to popper.

Normal mode (Qpopper's): at login the spool <spool-dir>/<user> is locked,
its mail moved into the temporary drop <temp-dir>/.<user>.pop, and the
spool emptied; the session is served from the temporary drop, which stays
flock'ed (a second session gets [IN-USE]).  At QUIT the spool is locked
again and rewritten: the kept messages (with X-UIDL: and Status: headers),
then whatever was delivered meanwhile.

Server mode (-S): the spool is scanned in place (or its message table is
taken from the cache when the spool has not changed), the temporary drop
stays empty as the session lock, and a session that changed nothing leaves
the spool untouched.  A QUIT that must change it first moves the spool into
the temporary drop, then goes on as in normal mode.

Nothing is lost: every step that changes the spool is written in the
journal (journal.py) first, and the temporary drop is fsync'ed before the
spool is emptied or rewritten.  A session killed at any instant leaves a
journal from which the next login finds every message exactly once and the
dead session's deletions applied entirely or not at all (docs/maildrop.md).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
import threading
import time

from popper import native
from popper.maildrop import MaildropError, cache, render
from popper.maildrop.journal import Journal, parse_ranges, ranges_text
from popper.maildrop.locking import SpoolLock
from popper.maildrop.scan import MMDF_MESSAGE, UW_DATA, MessageTable, NotAMailbox
from popper.protocol import replies
from popper.settings import Settings, spool_path, temp_drop_path

UPDATE_WAIT_FACTOR = 3      # QUIT waits longer for the locks than a login (spool-lock-wait)
COPY_CHUNK = 1 << 20
SMALL_BODY = 64 * 1024      # bodies up to this size are written through the buffer
MARKER = b"\0popper-rewrite\0"    # the spool's first bytes while popper rewrites it
PRINT = 4096                # bytes at each end of a range that identify it
GROWTH = 128                # most a kept message grows at QUIT (X-UIDL:, Status:, line ends)


def _error(template: str, exc: OSError = None, **fields) -> MaildropError:
    if exc is not None:
        fields.update(error=exc.strerror or str(exc), errno=exc.errno or 0)
    return MaildropError(replies.text(template, **fields))


def _size(fd: int) -> int:
    return os.fstat(fd).st_size


def copy_range(src: int, dst: int, start: int, end: int, dst_pos: int, refresh=None) -> int:
    """Copy [start, end) of src to dst at dst_pos, in the kernel where it
    can (copy_file_range); return the new dst position.  refresh() is
    called now and then, to keep a dot-lock fresh during a long copy."""
    use_kernel = hasattr(os, "copy_file_range")
    while start < end:
        if refresh:
            refresh()
        n = 0
        if use_kernel:
            try:
                n = os.copy_file_range(src, dst, min(end - start, 1 << 28), start, dst_pos)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL,
                                     errno.EOPNOTSUPP):
                    raise
                use_kernel = False
                continue
        else:
            data = os.pread(src, min(end - start, COPY_CHUNK), start)
            n = os.pwrite(dst, data, dst_pos) if data else 0
        if n <= 0:
            raise OSError(errno.EIO, "the source file shrank while it was copied")
        start += n
        dst_pos += n
    return dst_pos


def _separator_line(line: bytes):
    """A message's separator line as written back, and the line end its
    spool uses: a separator cut off by the end of the file gets one."""
    if line.endswith(b"\r\n"):
        return line, b"\r\n"
    return (line if line.endswith(b"\n") else line + b"\n"), b"\n"


def separation(last2: bytes, next_byte: bytes) -> bytes:
    """What must come between mail ending in last2 and a message starting
    with next_byte: a blank line before a From line, a line end before an
    MMDF separator line."""
    if next_byte == b"\x01":
        return b"" if last2.endswith(b"\n") else b"\n"
    return b"" if last2 == b"\n\n" else b"\n" if last2.endswith(b"\n") else b"\n\n"


def fingerprint(fd: int, size: int) -> str:
    """Identifies a file's first `size` bytes cheaply: its size and the
    PRINT bytes at each end.  New deliveries after a truncation cannot
    match it (they would have to repeat those bytes at those offsets)."""
    md5 = hashlib.md5(b"%d:" % size)
    md5.update(os.pread(fd, min(PRINT, size), 0))
    md5.update(os.pread(fd, min(PRINT, size), max(size - PRINT, 0)))
    return md5.hexdigest()


def first_mail_byte(fd: int, start: int, end: int) -> int:
    """The first offset at or after start that is not a NUL byte (or end).
    Mail never starts with a NUL; the zeros are a rewrite's preallocation."""
    pos = start
    for data in render.read_range(fd, start, end, COPY_CHUNK):
        stripped = data.lstrip(b"\0")
        if stripped:
            return pos + len(data) - len(stripped)
        pos += len(data)
    return end


class _SpoolWriter:
    """Buffered pwrite into the spool, with kernel copies for large pieces.
    Its first `withhold` bytes are kept back (the marker stays in their
    place until the rest is safely written): see Maildrop._rewrite.  Every
    SYNC_EVERY bytes a thread starts writing what is there to the disk, so
    that the fsync at the end (sync()) has little left to wait for."""

    SYNC_EVERY = 8 << 20

    def __init__(self, fd: int, withhold: int = 0):
        self.fd, self.pos, self.buf = fd, 0, bytearray()
        self.withhold = withhold
        self.head = b""
        self.last2 = b"\n\n"            # the last two bytes written
        self.synced_to = 0
        self.syncer = None

    def _sync_behind(self) -> None:
        if self.pos - self.synced_to >= self.SYNC_EVERY and not (
                self.syncer and self.syncer.is_alive()):
            self.synced_to = self.pos
            self.syncer = _Finisher(os.fdatasync, self.fd)

    def sync(self) -> None:
        """Everything written, on the disk."""
        self.flush()
        if self.syncer and self.syncer.wait():
            raise self.syncer.failure
        os.fsync(self.fd)

    def write(self, data) -> None:
        if data:
            self.buf += data
            self.last2 = (self.last2 + bytes(data[-2:]))[-2:]
            if len(self.buf) >= COPY_CHUNK:
                self.flush()

    def copy(self, src: int, start: int, end: int) -> None:
        if end <= start:
            return
        if end - start <= SMALL_BODY or self.pos + len(self.buf) < self.withhold:
            data = os.pread(src, end - start, start)
            if len(data) != end - start:
                raise OSError(errno.EIO, "the temporary drop shrank")
            self.write(data)
        else:
            self.flush()
            self.pos = copy_range(src, self.fd, start, end, self.pos)
            self.last2 = (self.last2 + os.pread(src, 2, max(end - 2, start)))[-2:]
            self._sync_behind()

    def flush(self) -> None:
        data = memoryview(self.buf)
        if self.pos < self.withhold:
            keep = min(self.withhold - self.pos, len(data))
            self.head += data[:keep].tobytes()
            data, self.pos = data[keep:], self.pos + keep
        while data:
            n = os.pwrite(self.fd, data, self.pos)
            self.pos += n
            data = data[n:]
        self.buf = bytearray()
        self._sync_behind()



class _Window:
    """Reads a file forwards a megabyte at a time, for slicing small pieces."""

    def __init__(self, fd: int):
        self.fd, self.base, self.data = fd, 0, b""

    def read(self, start: int, end: int) -> bytes:
        if not (self.base <= start and end <= self.base + len(self.data)):
            self.base = start
            self.data = os.pread(self.fd, max(end - start, COPY_CHUNK), start)
            if len(self.data) < end - start:
                raise OSError(errno.EIO, "the temporary drop shrank")
        return self.data[start - self.base:end - self.base]


class _Finisher(threading.Thread):
    """Work that runs beside the session: wait() for it (and its failure)."""

    def __init__(self, work, *args):
        super().__init__(daemon=True)
        self.work, self.args, self.failure = work, args, None
        self.start()

    def run(self) -> None:
        try:
            self.work(*self.args)
        except OSError as exc:
            self.failure = exc

    def wait(self):
        self.join()
        return self.failure


class Maildrop:
    """One user's maildrop for one session."""

    def __init__(self, settings: Settings, user: str, log):
        self.settings, self.user, self.log = settings, user, log
        self.spool_path = spool_path(settings, user)
        self.temp_path = temp_drop_path(settings, user)
        self.journal = Journal(self.temp_path)
        self.order = settings.locking
        self.lock_wait = settings.spool_lock_wait
        self.update_wait = UPDATE_WAIT_FACTOR * settings.spool_lock_wait
        self.temp_fd = None
        self.spool_fd = None            # server mode: the spool, served in place
        self.server = False
        self.messages = MessageTable()
        self.separator = b""            # the MMDF separator, when there are MMDF messages
        self.scanned_end = 0            # where the scanned mail ends in the served file
        self.finisher = None            # emptying the spool after login, beside the session
        self.journaled = False          # the login's move wrote the journal
        self.spool_print = None         # server mode: (dev, ino, size, fingerprint) at login
        self.spool_key = None           # server mode: the cache key of a spool scanned at login
        self.cache_after_close = False  # server mode: the spool was rewritten; cache it

    @property
    def source_fd(self) -> int:
        """The file the messages are read from."""
        return self.spool_fd if self.server else self.temp_fd

    # --- login -------------------------------------------------------------------

    def open(self) -> None:
        """Take the session lock, recover what a dead session left, then
        either move the spool into the temporary drop or (server mode)
        serve it in place.  Raises MaildropError with the client's text."""
        self.temp_fd = self._open_temp_drop()
        try:
            self._login()
        except BaseException:
            self.close()
            raise

    def _open_temp_drop(self) -> int:
        path = self.temp_path
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self.log.notice("Unable to open temporary drop %s: %s (%d)"
                            % (path, exc.strerror, exc.errno))
            raise _error(replies.TEMP_CREATE_FAILED, tempdrop=path, uid=os.geteuid(),
                         gid=os.getegid()) from None
        try:
            st = os.fstat(fd)
            if st.st_uid != os.geteuid():
                raise _error(replies.TEMP_NOT_OWNED, tempdrop=path, user=self.user)
            if st.st_mode & 0o007:
                raise _error(replies.TEMP_OPEN_TO_OTHERS, tempdrop=path)
            if st.st_nlink != 1 or not stat.S_ISREG(st.st_mode):
                raise _error(replies.TEMP_LINKED)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise _error(replies.IN_USE, tempdrop=path, errno=exc.errno) from None
            try:
                same = os.stat(path, follow_symlinks=False).st_ino == st.st_ino
            except FileNotFoundError:
                same = False
            if not same:            # a finishing session unlinked it under us
                raise MaildropError(replies.IN_USE_RACE)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_spool(self, create: bool):
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        try:
            fd = os.open(self.spool_path, flags, 0o660)    # the umask decides (privsep)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _error(replies.OPEN_FAILED, exc, file=self.spool_path) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _error(replies.OPEN_FAILED, OSError(errno.EINVAL, "not a regular file"),
                         file=self.spool_path)
        return fd

    def _login(self) -> None:
        record = self.journal.read()
        spool_fd = self._open_spool(create=record is not None)
        if spool_fd is None:                # no spool and nothing to recover
            self._scan([(0, _size(self.temp_fd))])
            return
        lock = SpoolLock(spool_fd, self.spool_path, self.lock_wait, self.order)
        try:
            lock.__enter__()
            if record is None and self.settings.server_mode and not _size(self.temp_fd):
                self._serve_in_place(spool_fd)
                lock.release()
                spool_fd = None             # kept open for the session
                return
            if record is not None:
                self.log.notice("%s: finishing what an earlier session left in %s (%s)"
                                % (self.user, self.journal.path, record["op"]))
            elif _size(self.temp_fd):
                self.log.notice("%s: taking %d bytes left in %s by an earlier session first"
                                % (self.user, _size(self.temp_fd), self.temp_path))
            temp_len, ranges = self._recover(record, spool_fd)
            self._take(spool_fd, temp_len, ranges, record is not None, lock)
            # The spool is emptied behind the client's back (its mail is safe in
            # the temp drop and the journal says so); the finisher lets go of
            # the spool and its locks.
            if self.journaled or _size(spool_fd):
                self.finisher = _Finisher(self._empty_spool, spool_fd, lock)
                spool_fd = None
        except OSError as exc:
            raise _error(replies.OPEN_FAILED, exc, file=self.spool_path) from None
        finally:
            if spool_fd is not None:
                lock.release()
                os.close(spool_fd)

    def _empty_spool(self, spool_fd: int, lock: SpoolLock) -> None:
        """The end of a login's move, run by the finisher."""
        try:
            self._empty(spool_fd, _size(spool_fd))
        finally:
            lock.release()
            os.close(spool_fd)

    def _empty(self, spool_fd: int, size: int) -> None:
        """Empty the spool (the journal says its mail is in the temp drop),
        then forget the journal."""
        if size:
            os.ftruncate(spool_fd, 0)
            os.fsync(spool_fd)
        if self.journaled:
            self.journal.remove()

    def _recover(self, record, spool_fd: int):
        """From the journal's last record: how many of the temp drop's bytes
        hold mail, and which ranges of the spool hold mail not in them."""
        size = _size(spool_fd)
        if record is None:
            return _size(self.temp_fd), [(0, size)]
        op = record["op"]
        try:
            if op == "move":            # copying ranges R: undo the copy, copy again
                ranges = parse_ranges(record["ranges"])
                return int(record["t"]), ranges + [(int(record["s"]), size)]
            if op == "settled":         # the spool's first s bytes are in the temp drop
                s = int(record["s"])
                kept = size >= s and fingerprint(spool_fd, s) == record["fp"]
                return int(record["t"]), [(s if kept else 0, size)]
            if op == "stash":           # QUIT had not touched the spool yet
                return int(record["m"]), [(0, size)]
            if op == "rewrite":         # the spool was being rewritten: the temp drop is right
                n, bound = int(record["n"]), int(record["bound"])
                if os.pread(spool_fd, len(MARKER), 0) == MARKER:
                    start = bound
                else:                   # not started, or only preallocated (zeros)
                    start = first_mail_byte(spool_fd, n, size)
                return int(record["tlen"]), [(start, size)]
            if op == "done":            # the spool is right; the temp drop is stale
                total = int(record["total"])
                head = bytes.fromhex(record["head"])
                if os.pread(spool_fd, len(MARKER), 0) == MARKER:
                    os.pwrite(spool_fd, head, 0)
                    os.fsync(spool_fd)
                return 0, [(0, total), (first_mail_byte(spool_fd, total, size), size)]
        except (KeyError, ValueError):
            pass
        raise MaildropError(replies.text(replies.JOURNAL_BAD, file=self.journal.path,
                                         why="unknown record %r" % op))

    def _take(self, spool_fd: int, temp_len: int, ranges: list, journaled: bool,
              lock: SpoolLock, at_quit: bool = False) -> None:
        """Move the spool's `ranges` to the end of the temp drop's first
        temp_len bytes and scan them (unless at_quit: the table is already
        known), journaled so that a crash at any point leaves each message
        in exactly one place.  The copy (and its fsync) runs in a thread
        while the ranges are scanned in the spool itself.  Then the journal
        says "settled"; emptying the spool is left to the caller (at_quit:
        done here)."""
        ranges = [(a, b) for a, b in ranges if b > a]
        spool_size = _size(spool_fd)
        temp_fd = self.temp_fd
        if _size(temp_fd) > temp_len:
            os.ftruncate(temp_fd, temp_len)
        self.journaled = bool(ranges or journaled)
        placements = []                     # (spool start, spool end, temp drop offset)
        if ranges:
            self.journal.write("move", t=temp_len, s=spool_size, ranges=ranges_text(ranges))
            pos = temp_len
            for a, b in ranges:
                pos = self._separate(pos, os.pread(spool_fd, 1, a))
                placements.append((a, b, pos))
                pos += b - a
        copier = _Finisher(self._copy, spool_fd, placements, lock.refresh) if ranges else None
        try:
            if not at_quit:
                self._scan([(0, temp_len)] if temp_len else [], moved=placements,
                           spool_fd=spool_fd)
        except MaildropError:
            if copier:
                copier.wait()
                os.ftruncate(temp_fd, temp_len)      # the journal still says "move" them
            raise
        finally:
            failure = copier.wait() if copier else None
        if failure:
            os.ftruncate(temp_fd, temp_len)          # the journal still says "move" them
            if at_quit:                 # update() reports it
                raise failure
            template = (replies.QUOTA if failure.errno in (errno.ENOSPC, errno.EDQUOT)
                        else replies.COPY_FAILED)
            raise _error(template, failure, tempdrop=self.temp_path) from None
        if self.journaled:
            self.journal.write("settled", t=_size(temp_fd), s=spool_size,
                               fp=fingerprint(spool_fd, spool_size))
        if at_quit:
            self._empty(spool_fd, spool_size)

    def _copy(self, spool_fd: int, placements: list, refresh) -> None:
        """The copier's work: each range into its place, then fsync."""
        for a, b, pos in placements:
            copy_range(spool_fd, self.temp_fd, a, b, pos, refresh)
        os.fsync(self.temp_fd)

    def _separate(self, pos: int, next_byte: bytes) -> int:
        """Make the temp drop end at pos so that what is written next starts
        a new message; return where it goes."""
        if pos == 0:
            return 0
        fix = separation(os.pread(self.temp_fd, 2, max(pos - 2, 0)), next_byte)
        if fix:
            os.pwrite(self.temp_fd, fix, pos)
        return pos + len(fix)

    def _scan(self, segments: list, fd: int = None, moved=(), spool_fd: int = None) -> None:
        """Scan each segment of the served file (they were separate files),
        then each moved range in the spool, its offsets shifted to where the
        copy puts it in the temp drop."""
        fd = self.temp_fd if fd is None else fd
        settings = self.settings
        table = MessageTable()
        base_time = int(time.time())
        pieces = [(fd, start, end, 0) for start, end in segments]
        pieces += [(spool_fd, a, b, pos - a) for a, b, pos in moved]
        for source, start, end, shift in pieces:
            try:
                result = native.scan(source, start=start, limit=end,
                                     base_time=base_time + len(table),
                                     salted=settings.update_status_headers,
                                     old_style=settings.old_style_uid,
                                     uw=settings.uw_kludge and not table)
            except NotAMailbox:
                name = self.temp_path if source == self.temp_fd else self.spool_path
                raise _error(replies.NOT_A_MAILBOX, file=name) from None
            if shift:
                result.messages.shift(shift)
            table.extend(result.messages)
            self.separator = self.separator or result.separator
        table.make_uids_unique()
        self.messages = table
        self.scanned_end = pieces[-1][2] + pieces[-1][3] if pieces else 0

    # --- server mode --------------------------------------------------------------

    def _serve_in_place(self, spool_fd: int) -> None:
        st = os.fstat(spool_fd)
        table = cache.load(self.settings, self.user, st)
        if table is not None:
            self.log.debug("%s: the spool is as cached: using the cached message table"
                           % self.user)
            self.messages, self.separator = table
            self.scanned_end = st.st_size
        else:
            self._scan([(0, st.st_size)], spool_fd)
            self.spool_key = cache.key(st)          # cache it if the session changes nothing
        self.spool_fd, self.server = spool_fd, True
        self.spool_print = (st.st_dev, st.st_ino, st.st_size,
                            fingerprint(spool_fd, st.st_size))

    def _spool_unchanged(self) -> bool:
        """Is the spool still what was scanned (delivery may have added to it)?"""
        st = os.fstat(self.spool_fd)
        dev, ino, size, print_ = self.spool_print
        return ((st.st_dev, st.st_ino) == (dev, ino) and st.st_size >= size
                and fingerprint(self.spool_fd, size) == print_)

    def _cache_rewritten_spool(self) -> None:
        """After a QUIT that rewrote the spool (and the client has its reply):
        scan it again, locked, and cache the table for the next login."""
        try:
            with SpoolLock(self.spool_fd, self.spool_path, self.lock_wait, self.order):
                self._scan([(0, _size(self.spool_fd))], self.spool_fd)
                cache.save(self.settings, self.user, self.spool_fd, self.messages,
                           self.separator)
        except (OSError, MaildropError) as exc:
            self.log.debug("%s: no cache for the next login: %s" % (self.user, exc))

    # --- serving -------------------------------------------------------------------

    def message_chunks(self, msg, top_lines: int = None):
        return render.message_chunks(self.source_fd, msg, top_lines)

    # --- QUIT ------------------------------------------------------------------------

    def update(self, deleted, seen, rewrite: bool = True) -> None:
        """Write the session back: the messages not deleted (UW-IMAP's folder
        data always kept, as it was), then the mail that came meanwhile.
        rewrite=False keeps every message byte for byte (no X-UIDL:/Status:)."""
        rewrite = rewrite and self.settings.update_status_headers
        messages = self.messages
        kept = [i for i in range(len(messages))
                if not deleted[i] or messages.flags[i] & UW_DATA]
        try:
            self._wait_for_finisher()
            if self.server:
                self._update_in_place(kept, deleted, seen, rewrite)
            else:
                self._update(kept, seen, rewrite)
        except OSError as exc:
            self.log.error("%s: update of %s failed: %s; the mail is in %s"
                           % (self.user, self.spool_path, exc, self.temp_path))
            raise _error(replies.UPDATE_FAILED, exc) from None

    def _update_in_place(self, kept, deleted, seen, rewrite: bool) -> None:
        messages = self.messages
        dirty = len(kept) != len(messages) or (rewrite and any(
            (seen[i] and not messages.flags[i] & 1) or not messages.flags[i] & 4
            for i in range(len(messages)) if not messages.flags[i] & UW_DATA))
        if not dirty:
            if self.spool_key and cache.key(os.fstat(self.spool_fd)) == self.spool_key:
                # scanned at login, and no mail came since: the next login needs no scan
                cache.save(self.settings, self.user, self.spool_fd, messages, self.separator)
            self._finish()
            return
        with SpoolLock(self.spool_fd, self.spool_path, self.update_wait, self.order) as lock:
            if not self._spool_unchanged():
                raise MaildropError(replies.SPOOL_CHANGED)
            # Into the temp drop (empty in server mode), then as in normal mode.
            self._take(self.spool_fd, 0, [(0, _size(self.spool_fd))], False, lock, at_quit=True)
            self._rewrite(kept, seen, rewrite, lock)
        self.cache_after_close = True

    def _update(self, kept, seen, rewrite: bool) -> None:
        if not kept:            # the spool holds only mail that came during the session
            self._finish()
            return
        spool_fd = self._open_spool(create=True)
        try:
            with SpoolLock(spool_fd, self.spool_path, self.update_wait, self.order) as lock:
                self.spool_fd = spool_fd
                self._rewrite(kept, seen, rewrite, lock)
        finally:
            self.spool_fd = None
            os.close(spool_fd)

    def _rewrite(self, kept, seen, rewrite: bool, lock: SpoolLock) -> None:
        """The spool := the kept messages + all new mail, from the temp drop,
        with the spool locked: stash the new mail, then rewrite behind a
        marker, then put the head in place (journal.py has the records)."""
        temp_fd, spool_fd, messages = self.temp_fd, self.spool_fd, self.messages
        # Mail in the temp drop after what was scanned (server mode's new mail).
        extras = [(self.scanned_end, _size(temp_fd))]
        n = _size(spool_fd)
        if n:                                        # new mail: into the journal first
            m = _size(temp_fd)
            self.journal.write("stash", m=m)
            try:
                at = self._separate(m, os.pread(spool_fd, 1, 0))
                copy_range(spool_fd, temp_fd, 0, n, at, lock.refresh)
                os.fsync(temp_fd)
            except OSError:
                os.ftruncate(temp_fd, m)
                self.journal.remove()
                raise
            extras.append((at, at + n))
        extras = [(a, b) for a, b in extras if b > a]
        tlen = _size(temp_fd)
        bound = (sum(messages.end[i] - messages.start[i] for i in kept)
                 + (GROWTH + len(self.separator)) * len(kept)
                 + sum(b - a for a, b in extras) + 2 * len(extras) + len(MARKER))
        self.journal.write("rewrite", tlen=tlen, n=n, bound=bound)
        try:
            os.ftruncate(spool_fd, bound)                     # later deliveries go after it
            os.pwrite(spool_fd, MARKER, 0)
            out = _SpoolWriter(spool_fd, withhold=len(MARKER))
            window = _Window(temp_fd)
            for count, i in enumerate(kept, 1):
                self._write_message(out, messages[i], seen[i], rewrite, window)
                if count % self.settings.lock_refresh == 0:
                    lock.refresh()
            for a, b in extras:
                out.write(separation(out.last2, os.pread(temp_fd, 1, a)))
                out.copy(temp_fd, a, b)
            out.sync()
        except OSError:
            self._abandon_rewrite(tlen)
            raise
        total, head = out.pos, out.head
        self.journal.write("done", total=total, head=head.hex())
        os.ftruncate(spool_fd, total)
        os.pwrite(spool_fd, head, 0)
        os.fsync(spool_fd)
        self._finish()

    def _abandon_rewrite(self, tlen: int) -> None:
        """A rewrite that failed (a full disk): all the mail is in the temp
        drop's first tlen bytes; empty the spool and say so, as Qpopper left
        "Mail left in temporary maildrop".  If even that fails, the
        "rewrite" record stays, and the next login recovers from it."""
        try:
            self.journal.write("settled", t=tlen, s=0, fp=fingerprint(self.spool_fd, 0))
            os.ftruncate(self.spool_fd, 0)
            os.fsync(self.spool_fd)
            self.journal.remove()
        except OSError as exc:
            self.log.error("%s: could not undo the update of %s: %s; the next login will"
                           % (self.user, self.spool_path, exc))

    def _write_message(self, out: _SpoolWriter, msg, seen: bool, rewrite: bool,
                       window: "_Window") -> None:
        """One kept message into the spool: its separator line, its header
        (rewritten unless rewrite is off or it is UW-IMAP's folder data),
        its body, what ends it.  A small one is sliced out of a window read
        a megabyte at a time and written as one piece."""
        rewrite = rewrite and not msg.flags & UW_DATA
        if msg.end - msg.start > SMALL_BODY:
            self._write_large_message(out, msg, seen, rewrite)
            return
        a, data = msg.start, window.read(msg.start, msg.end)
        head, eol = _separator_line(data[:msg.header - a])
        header = data[msg.header - a:msg.body - a]
        if rewrite:
            header = render.rewritten_header([header], msg.uid, seen, eol)
        body = data[msg.body - a:msg.content_end - a]
        last = (body or header or head)[-1:]
        out.write(b"".join((head, header, body,
                            self._ending(last, eol, msg, data[msg.content_end - a:]))))

    def _write_large_message(self, out: _SpoolWriter, msg, seen: bool, rewrite: bool) -> None:
        fd = self.temp_fd
        head, eol = _separator_line(os.pread(fd, msg.header - msg.start, msg.start))
        out.write(head)
        if rewrite:
            out.write(render.rewritten_header(render.header_blocks(fd, msg.header, msg.body),
                                              msg.uid, seen, eol))
        else:
            out.copy(fd, msg.header, msg.body)
        out.copy(fd, msg.body, msg.content_end)
        tail = (os.pread(fd, msg.end - msg.content_end, msg.content_end)
                if msg.flags & MMDF_MESSAGE else b"")
        out.write(self._ending(out.last2[-1:], eol, msg, tail))

    def _ending(self, last: bytes, eol: bytes, msg, tail: bytes) -> bytes:
        """What ends a message in the spool: an LF if it lacks one (the
        fewest bytes added; the client gets a CRLF either way), then the
        blank line (mbox) or its trailer (MMDF: the one it had, and what
        followed it, or the separator where it was missing)."""
        fix = b"" if last == b"\n" else b"\n"
        if msg.flags & MMDF_MESSAGE:
            return fix + (tail if tail.startswith(self.separator) else self.separator)
        return fix + eol

    def _wait_for_finisher(self) -> None:
        """The login's move must be over before the spool is touched again;
        if it failed, the journal says what to do at the next login."""
        finisher, self.finisher = self.finisher, None
        if finisher and finisher.wait():
            raise finisher.failure

    def restore(self) -> None:
        """Abnormal end without update-on-abort: every message back as it was."""
        count = len(self.messages)
        if self.server:                  # the spool was never changed
            self._finish()
        else:
            self.update(bytearray(count), bytearray(count), rewrite=False)

    def _finish(self) -> None:
        """The spool is complete: remove the temp drop (or empty it, with
        keep-temp-drop) and the journal.  Unlinking while the file is open
        is quick: its blocks are freed when close() runs, after the reply."""
        if self.settings.keep_temp_drop:
            os.ftruncate(self.temp_fd, 0)
        else:
            try:
                os.unlink(self.temp_path)
            except FileNotFoundError:
                pass
        self.journal.remove()

    def close(self) -> None:
        try:
            self._wait_for_finisher()
        except OSError as exc:
            self.log.error("%s: could not empty %s after login: %s; the next login will"
                           % (self.user, self.spool_path, exc))
        if self.cache_after_close:
            self.cache_after_close = False
            self._cache_rewritten_spool()
        for name in ("temp_fd", "spool_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)
