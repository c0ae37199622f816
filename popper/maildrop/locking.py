"""Locking a spool the way its neighbours do.

Three kinds of lock guard a spool, and a delivery agent takes some of them:

  fcntl    a POSIX record lock on the open spool (Postfix, Exim, procmail,
           Debian policy)
  dotlock  the file <spool>.lock, made with O_EXCL (every mail program,
           SCO's MMDF and mail(1) included)
  flock    a BSD lock on the open spool (Qpopper)

popper takes the kinds and in the order configure.py --with-locking chose
(default fcntl, dotlock, flock: Debian's order, plus Qpopper's flock), each
with a bounded wait, and releases them in the reverse order.  A failure
raises LockError with Qpopper's [SYS/TEMP] text.
"""

import _socket     # not socket.py nor signal.py (docs/architecture.md, "Start-up")
import errno
import fcntl
import os
import stat
import time

from popper.maildrop import MaildropError
from popper.protocol import replies

STALE_AFTER = 300       # seconds: an older dot-lock is abandoned (Qpopper, liblockfile)
POLL = 0.05             # seconds between tries
REFRESH_EVERY = 60      # seconds between touches of a dot-lock held for a long copy


class LockError(MaildropError):
    """A lock that could not be taken; args[0] is the -ERR text."""


class DotLock:
    """<path>.lock: made by link(), holding <pid>@<host>; it is popper's
    only when that link() made it.  Another program's lock (whatever kind of
    file it is) is abandoned when it is older than STALE_AFTER seconds, or
    at once when it names a process of this host that no longer runs (as
    liblockfile does)."""

    def __init__(self, path: str):
        self.spool = path
        self.path = path + ".lock"
        self.held = False
        self.touched = 0.0

    def _fail(self, text: str, code: int, exc: OSError = None) -> LockError:
        """Qpopper's maillock -ERR: it names the spool (pop_dropcopy.c); the
        errno part only when there is an error to tell (never "Success (0)")."""
        if exc is None or not exc.errno:
            return LockError(replies.text(replies.MAILLOCK_NO_ERRNO, text=text, code=code,
                                          file=self.spool))
        return LockError(replies.text(replies.MAILLOCK, text=text, code=code, file=self.spool,
                                      error=exc.strerror or os.strerror(exc.errno),
                                      errno=exc.errno))

    def _try(self) -> bool:
        """Make the lock whole or not at all: write <pid>@<host> into a file
        of our own, then link() it to the lock's name (as liblockfile does;
        a lock made with O_EXCL could be left empty by a kill, and nobody
        could tell its owner was gone)."""
        mine = "%s.%d.%s" % (self.path, os.getpid(), os.urandom(4).hex())
        fd = os.open(mine, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            try:
                os.write(fd, ("%d@%s" % (os.getpid(), _socket.gethostname())).encode())
            except OSError as exc:
                raise self._fail("Unable to write pid into lockfile", 3, exc) from None
            finally:
                os.close(fd)
            try:
                os.link(mine, self.path)
            except FileExistsError:
                self._break_if_stale()
                return False
            self.held = True            # from here on, release() removes it
            self.touched = time.monotonic()
            if os.lstat(self.path).st_nlink != 2:        # not the file we linked
                self.held = False
                raise self._fail("Other lock error", 6)
        finally:
            try:
                os.unlink(mine)
            except OSError:
                pass        # a leftover named for our pid: broken with our lock once we are gone
        return True

    def _break_if_stale(self) -> None:
        """Remove another program's lock if it is stale: older than
        STALE_AFTER seconds, or naming a process of this host that is gone
        (a lock popper made is then broken together with the file it was
        linked from, if a kill left that behind).  Removing a name never
        touches what it points to, so a symbolic or hard link is no danger
        here; it is only never taken for popper's own lock."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        gone = stat.S_ISREG(st.st_mode) and self._owner_is_gone()
        if gone or time.time() - st.st_mtime > STALE_AFTER:
            self._unlink()
            if gone:
                self._remove_leftovers(gone)

    def _remove_leftovers(self, pid: int) -> None:
        """The files a killed popper (pid) made its lock from."""
        directory, name = os.path.split(self.path)
        prefix = "%s.%d." % (name, pid)
        try:
            for entry in os.listdir(directory or "."):
                if entry.startswith(prefix):
                    os.unlink(os.path.join(directory, entry))
        except OSError:
            pass

    def _owner_is_gone(self):
        """The pid the lock names, if it is a process of this host that no
        longer runs, or this process (which holds no lock now: one it
        could not remove before); else 0."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return 0
        try:
            text = os.read(fd, 200).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
        pid, _, host = text.partition("@")
        if not pid.isdigit() or int(pid) <= 1 or (host and host != _socket.gethostname()):
            return 0
        if int(pid) == os.getpid():
            return int(pid)
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return int(pid)
        except OSError:
            pass
        return 0

    def _unlink(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass        # gone already; or it stays, naming us, and is stale once we are gone

    def try_once(self) -> bool:
        """One try: True if taken, False if another holds it."""
        try:
            return self._try()
        except OSError as exc:
            raise self._fail("Unable to create lockfile", 2, exc) from None

    def refresh(self) -> None:
        """Keep a held lock fresh during a long copy (at most once a minute)."""
        if self.held and time.monotonic() - self.touched >= REFRESH_EVERY:
            try:
                os.utime(self.path)
                self.touched = time.monotonic()
            except OSError:
                pass

    def release(self) -> None:
        if self.held:
            self._unlink()
            self.held = False


def _fd_try(fd: int, path: str, kind: str) -> bool:
    """One try at an fcntl or flock lock: True if taken, False if busy."""
    try:
        (fcntl.lockf if kind == "fcntl" else fcntl.flock)(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise _fd_error(path, kind, exc) from None


def _fd_error(path: str, kind: str, exc: OSError) -> LockError:
    template = replies.FCNTL_FAILED if kind == "fcntl" else replies.FLOCK_FAILED
    return LockError(replies.text(template, file=path, error=exc.strerror, errno=exc.errno))


def _fd_unlock(fd: int, kind: str) -> None:
    try:
        (fcntl.lockf if kind == "fcntl" else fcntl.flock)(fd, fcntl.LOCK_UN)
    except OSError:
        pass


class SpoolLock:
    """The locks of an open spool, taken in `order`; a context manager.

    All or nothing: when one lock is busy, the ones already taken are let go
    before the next try, so that a delivery agent taking the same locks in
    another order (procmail: dot-lock first) never waits on popper while
    popper waits on it."""

    def __init__(self, fd: int, path: str, wait: float, order: tuple):
        self.fd, self.path, self.wait, self.order = fd, path, wait, order
        self.dotlock = DotLock(path)
        self.taken = []

    def __enter__(self):
        deadline = time.monotonic() + self.wait
        while True:
            busy = self._try_all()
            if busy is None:
                return self
            if time.monotonic() >= deadline:
                if busy == "dotlock":
                    raise self.dotlock._fail("Max tries exceeded", 4)
                raise _fd_error(self.path, busy, OSError(errno.EAGAIN, os.strerror(errno.EAGAIN)))
            time.sleep(POLL)

    def _try_all(self):
        """Take every lock, or none; the kind that was busy, or None."""
        try:
            for kind in self.order:
                if kind == "dotlock":
                    taken = self.dotlock.try_once()
                else:
                    taken = _fd_try(self.fd, self.path, kind)
                if not taken:
                    self.release()
                    return kind
                self.taken.append(kind)
        except BaseException:
            self.release()
            raise
        return None

    def __exit__(self, *exc_info):
        self.release()

    def refresh(self) -> None:
        self.dotlock.refresh()

    def release(self) -> None:
        while self.taken:
            kind = self.taken.pop()
            if kind == "dotlock":
                self.dotlock.release()
            else:
                _fd_unlock(self.fd, kind)
