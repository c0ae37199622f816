"""Locking a spool the way its neighbours do.

Delivery agents on Debian take an fcntl lock and a dot-lock (<spool>.lock);
Qpopper took a dot-lock and flock.  popper takes all three, in that order
(fcntl, dot-lock, flock), each with a bounded wait, and releases them in
the reverse order.  Failures raise LockError with Qpopper's [SYS/TEMP] text.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
import time

from popper.protocol import replies

STALE_AFTER = 300       # seconds: an older dot-lock is abandoned (Qpopper, liblockfile)
POLL = 0.1              # seconds between tries


class LockError(Exception):
    """A lock that could not be taken; args[0] is the -ERR text."""


def _retry(attempt, wait: float):
    """Call attempt() until it returns True or wait seconds pass."""
    deadline = time.monotonic() + wait
    while True:
        if attempt():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)


class DotLock:
    """<path>.lock: created O_EXCL, holding <pid>@<host>, never a symlink or
    a hard link, abandoned by others when older than STALE_AFTER seconds."""

    def __init__(self, path: str):
        self.path = path + ".lock"
        self.held = False

    def _fail(self, text: str, code: int, exc: OSError = None) -> LockError:
        number = exc.errno if exc else 0
        return LockError(replies.text(replies.MAILLOCK, text=text, code=code, file=self.path,
                                      error=os.strerror(number) if number else "Success",
                                      errno=number))

    def _try(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            self._break_if_stale()
            return False
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                raise self._fail("Other lock error", 6)
            os.write(fd, ("%d@%s" % (os.getpid(), socket.gethostname())).encode())
        except OSError as exc:
            os.close(fd)
            self._unlink()
            raise self._fail("Unable to write pid into lockfile", 3, exc) from None
        os.close(fd)
        self.held = True
        return True

    def _break_if_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode) or st.st_nlink != 1:
            raise self._fail("Other lock error", 6)
        if time.time() - st.st_mtime > STALE_AFTER:
            self._unlink()

    def _unlink(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def acquire(self, wait: float) -> None:
        try:
            if not _retry(self._try, wait):
                raise self._fail("Max tries exceeded", 4)
        except LockError:
            raise
        except OSError as exc:
            raise self._fail("Unable to create lockfile", 2, exc) from None

    def touch(self) -> None:
        """Keep a held lock fresh during a long copy."""
        if self.held:
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        if self.held:
            self._unlink()
            self.held = False


def _fd_lock(fd: int, path: str, kind: str, wait: float) -> None:
    lock = (lambda: fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)) if kind == "fcntl" \
        else (lambda: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB))
    failure = []

    def attempt():
        try:
            lock()
            return True
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                failure[:] = [exc]
                return False
            raise
    try:
        if _retry(attempt, wait):
            return
        exc = failure[0]
    except OSError as error:
        exc = error
    template = replies.FCNTL_FAILED if kind == "fcntl" else replies.FLOCK_FAILED
    raise LockError(replies.text(template, file=path, error=exc.strerror, errno=exc.errno))


class SpoolLock:
    """fcntl + dot-lock + flock on an open spool; a context manager."""

    def __init__(self, fd: int, path: str, wait: float):
        self.fd, self.path, self.wait = fd, path, wait
        self.dotlock = DotLock(path)

    def __enter__(self):
        _fd_lock(self.fd, self.path, "fcntl", self.wait)
        try:
            self.dotlock.acquire(self.wait)
            _fd_lock(self.fd, self.path, "flock", self.wait)
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(self, *exc_info):
        self.release()

    def touch(self) -> None:
        self.dotlock.touch()

    def release(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        except OSError:
            pass
        self.dotlock.release()
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
        except OSError:
            pass
