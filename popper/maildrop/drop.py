"""A user's maildrop for one session, the way Qpopper keeps it.

At login the spool <spool-dir>/<user> is locked, appended to the temporary
drop <temp-dir>/.<user>.pop (which stays flock'ed for the whole session:
a second session gets [IN-USE]), scanned, and truncated.  The session is
served from the temporary drop.  At QUIT the spool is locked again, mail
that arrived meanwhile is appended to the temporary drop, and the spool is
rewritten: the kept messages (with X-UIDL: and Status: headers), then the
new mail.  The temporary drop is written and fsync'ed before the spool is
truncated, at login and at QUIT, so it holds every message whenever the
spool does not; a session killed at any point leaves its mail there, and
the next login takes it first.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time

from popper import native
from popper.maildrop import render
from popper.maildrop.locking import LockError, SpoolLock
from popper.maildrop.scan import MMDF, MessageTable, NotAMailbox
from popper.protocol import replies
from popper.settings import Settings, spool_path, temp_drop_path

LOGIN_LOCK_WAIT = 10        # seconds to wait for the spool's locks at login
UPDATE_LOCK_WAIT = 30       # ... and at QUIT, when giving up leaves mail in the temp drop
COPY_CHUNK = 1 << 20
SMALL_BODY = 64 * 1024      # bodies up to this size are written through the buffer


class MaildropError(Exception):
    """A maildrop failure; args[0] is the -ERR text for the client."""


def _error(template: str, exc: OSError = None, **fields) -> MaildropError:
    if exc is not None:
        fields.update(error=exc.strerror or str(exc), errno=exc.errno or 0)
    return MaildropError(replies.text(template, **fields))


def copy_range(src: int, dst: int, start: int, end: int, dst_pos: int) -> int:
    """Copy [start, end) of src to dst at dst_pos, in the kernel where it
    can (copy_file_range); return the new dst position."""
    use_kernel = hasattr(os, "copy_file_range")
    while start < end:
        n = 0
        if use_kernel:
            try:
                n = os.copy_file_range(src, dst, min(end - start, 1 << 30), start, dst_pos)
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


class _SpoolWriter:
    """Buffered pwrite into a file, with kernel copies for large pieces;
    remembers whether what it wrote last ends a line."""

    def __init__(self, fd: int, pos: int = 0):
        self.fd, self.pos, self.buf = fd, pos, bytearray()
        self.at_line_start = True

    def write(self, data: bytes) -> None:
        if data:
            self.buf += data
            self.at_line_start = data.endswith(b"\n")
            if len(self.buf) >= COPY_CHUNK:
                self.flush()

    def copy(self, src: int, start: int, end: int) -> None:
        if end - start <= SMALL_BODY:
            data = os.pread(src, end - start, start)
            if len(data) != end - start:
                raise OSError(errno.EIO, "the temporary drop shrank")
            self.write(data)
        else:
            self.flush()
            self.pos = copy_range(src, self.fd, start, end, self.pos)
            self.at_line_start = os.pread(src, 1, end - 1) == b"\n"

    def flush(self) -> None:
        view = memoryview(self.buf)
        while view:
            n = os.pwrite(self.fd, view, self.pos)
            self.pos += n
            view = view[n:]
        self.buf = bytearray()


class Maildrop:
    """One user's maildrop for one session (temp-drop mode)."""

    def __init__(self, settings: Settings, user: str, log):
        self.settings, self.user, self.log = settings, user, log
        self.spool_path = spool_path(settings, user)
        self.temp_path = temp_drop_path(settings, user)
        self.temp_fd = None
        self.messages = MessageTable()
        self.format = None
        self.separator = b""

    # --- login ---------------------------------------------------------------

    def open(self) -> None:
        """Take the session lock, move the spool into the temporary drop,
        scan it.  Raises MaildropError with the text for the client."""
        self.temp_fd = self._open_temp_drop()
        try:
            self._take_spool()
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
                raise MaildropError("[IN-USE] Maildrop being unlocked; try again.")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_spool(self, create: bool):
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        try:
            fd = os.open(self.spool_path, flags, 0o600)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _error(replies.OPEN_FAILED, exc, file=self.spool_path) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _error(replies.OPEN_FAILED, OSError(errno.EINVAL, "not a regular file"),
                         file=self.spool_path)
        return fd

    def _take_spool(self) -> None:
        temp_len = os.fstat(self.temp_fd).st_size
        if temp_len:
            self.log.notice("%s: taking %d bytes left in %s by an earlier session first"
                            % (self.user, temp_len, self.temp_path))
        spool_fd = self._open_spool(create=False)
        if spool_fd is None:
            self._scan(self.temp_path)
            return
        try:
            with SpoolLock(spool_fd, self.spool_path, LOGIN_LOCK_WAIT):
                size = os.fstat(spool_fd).st_size
                if size:
                    try:
                        pos = self._separate(temp_len, spool_fd)
                        copy_range(spool_fd, self.temp_fd, 0, size, pos)
                        os.fsync(self.temp_fd)
                    except OSError as exc:
                        os.ftruncate(self.temp_fd, temp_len)
                        template = (replies.QUOTA if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                                    else replies.COPY_FAILED)
                        raise _error(template, exc, tempdrop=self.temp_path) from None
                try:
                    self._scan(self.spool_path if size else self.temp_path)
                except MaildropError:
                    os.ftruncate(self.temp_fd, temp_len)
                    raise
                if size:
                    # Only now, with every byte safe in the temp drop.
                    try:
                        os.ftruncate(spool_fd, 0)
                    except OSError as exc:      # the mail stays in the spool alone
                        os.ftruncate(self.temp_fd, temp_len)
                        raise _error(replies.OPEN_FAILED, exc, file=self.spool_path) from None
                    os.fsync(spool_fd)
        except LockError as exc:
            raise MaildropError(exc.args[0]) from None
        finally:
            os.close(spool_fd)

    def _separate(self, temp_len: int, spool_fd: int) -> int:
        """Make the temp drop end so that what is appended at the returned
        position starts a new message (a blank line before a From line)."""
        if temp_len == 0:
            return 0
        tail = os.pread(self.temp_fd, 2, temp_len - 2 if temp_len >= 2 else 0)
        head = os.pread(spool_fd, 1, 0)
        if head == b"\x01":                       # MMDF messages end with a trailer line
            fix = b"" if tail.endswith(b"\n") else b"\n"
        else:
            fix = b"" if tail == b"\n\n" else b"\n" if tail.endswith(b"\n") else b"\n\n"
        if fix:
            os.pwrite(self.temp_fd, fix, temp_len)
        return temp_len + len(fix)

    def _scan(self, name_for_errors: str) -> None:
        settings = self.settings
        try:
            result = native.scan(self.temp_fd, base_time=int(time.time()),
                                 salted=settings.update_status_headers,
                                 old_style=settings.old_style_uid)
        except NotAMailbox:
            raise _error(replies.NOT_A_MAILBOX, file=name_for_errors) from None
        except OSError as exc:
            raise _error(replies.OPEN_FAILED, exc, file=self.temp_path) from None
        self.messages = result.messages
        self.format = result.format
        self.separator = result.separator

    # --- serving -------------------------------------------------------------

    def message_chunks(self, msg, top_lines: int = None):
        return render.message_chunks(self.temp_fd, msg, top_lines)

    # --- QUIT ------------------------------------------------------------------

    def update(self, deleted: list, seen: list, rewrite: bool = True) -> None:
        """Write the session back to the spool: the messages not deleted,
        then whatever arrived during the session.  rewrite=False copies the
        kept messages byte for byte (no X-UIDL:/Status: changes)."""
        rewrite = rewrite and self.settings.update_status_headers
        kept = [i for i, gone in enumerate(deleted) if not gone]
        if not kept:            # the spool holds only mail that came during the session
            self._finish()
            return
        spool_fd = self._open_spool(create=True)
        try:
            with SpoolLock(spool_fd, self.spool_path, UPDATE_LOCK_WAIT) as lock:
                new_len = os.fstat(spool_fd).st_size
                temp_len = os.fstat(self.temp_fd).st_size
                new_at = temp_len
                if new_len:                 # journal the new mail first
                    new_at = self._separate(temp_len, spool_fd)
                    copy_range(spool_fd, self.temp_fd, 0, new_len, new_at)
                    os.fsync(self.temp_fd)
                os.ftruncate(spool_fd, 0)
                out = _SpoolWriter(spool_fd)
                for count, i in enumerate(kept, 1):
                    self._write_message(out, self.messages[i], seen[i], rewrite)
                    if count % self.settings.lock_refresh == 0:
                        lock.touch()
                out.flush()
                if new_len:
                    out.pos = copy_range(self.temp_fd, spool_fd, new_at, new_at + new_len,
                                         out.pos)
                os.fsync(spool_fd)
                self._finish()
        except LockError as exc:
            raise MaildropError(exc.args[0]) from None
        except OSError as exc:
            self.log.error("%s: update of %s failed: %s; the mail is in %s"
                           % (self.user, self.spool_path, exc, self.temp_path))
            raise _error(replies.UPDATE_FAILED, exc) from None
        finally:
            os.close(spool_fd)

    def _write_message(self, out: _SpoolWriter, msg, seen: bool, rewrite: bool) -> None:
        fd = self.temp_fd
        out.copy(fd, msg.start, msg.header)                         # the separator line
        sep = os.pread(fd, 2, msg.header - 2) if msg.header - msg.start >= 2 else b"\n"
        eol = b"\r\n" if sep == b"\r\n" else b"\n"
        if rewrite:
            out.write(render.rewritten_header(fd, msg, seen, eol))
        else:
            out.copy(fd, msg.header, msg.body)
        out.copy(fd, msg.body, msg.content_end)
        if not out.at_line_start:
            out.write(eol)
        if self.format == MMDF:
            trailer_end = msg.content_end + len(self.separator)
            if msg.end >= trailer_end:
                out.copy(fd, msg.content_end, msg.end)               # the trailer
            else:
                out.write(self.separator)
        else:
            out.write(eol)                                            # the blank line

    def restore(self) -> None:
        """Abnormal end without update-on-abort: put every message back as it was."""
        count = len(self.messages)
        self.update(bytearray(count), bytearray(count), rewrite=False)

    def _finish(self) -> None:
        """The spool is complete: remove the temp drop (or empty it, with
        keep-temp-drop).  Unlinking while the file is open is quick: its
        blocks are freed when close() runs, after the client has its reply."""
        if self.settings.keep_temp_drop:
            os.ftruncate(self.temp_fd, 0)
            return
        try:
            os.unlink(self.temp_path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        if self.temp_fd is not None:
            os.close(self.temp_fd)
            self.temp_fd = None
