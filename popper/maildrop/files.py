"""The file work the maildrop's parts share: opening the spool, copying
ranges between files, telling a file's content again, setting aside what
cannot be read, and running work beside the session."""

import errno
import os
import stat
import time

from popper import digests
from popper.maildrop import MaildropError, render
from popper.protocol import replies

try:
    import threading
except ImportError:         # a Python built without threads (SCO): work runs in line
    threading = None

COPY_CHUNK = 1 << 20
MARKER = b"\0popper-rewrite\0"    # the spool's first bytes while popper rewrites it
IOV_MAX = 1024              # pieces a pwritev takes (Linux's UIO_MAXIOV)
PRINT = 4096                # bytes at each end of a range that identify it
DAMAGED = "%s.damaged.%s.%d%s"    # beside the temp drop: what popper set aside


def error(template: str, exc: OSError = None, **fields) -> MaildropError:
    if exc is not None:
        fields.update(error=exc.strerror or str(exc), errno=exc.errno or 0)
    return MaildropError(replies.text(template, **fields))


def size(fd: int) -> int:
    return os.fstat(fd).st_size


def open_spool(path: str, log, create: bool):
    """The spool open for reading and writing, checked to be the user's
    (spool_checked()), or None if there is none and create is false.  It is
    never opened through a symbolic link, and never adopted: a missing
    spool is created by popper itself (O_EXCL), and one another program
    made meanwhile is opened again and checked like any other."""
    # O_NONBLOCK and O_NOCTTY: a FIFO or a terminal at the spool's name is
    # refused after the open, which must then neither wait nor take it over.
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    for _ in range(3):
        try:
            return spool_checked(os.open(path, flags), path, log)
        except FileNotFoundError:
            if not create:
                return None
        except OSError as exc:
            raise _open_error(exc, path, log) from None
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, _new_spool_mode(path))
        except FileExistsError:
            continue                        # made meanwhile: open it and check it
        except OSError as exc:
            raise _open_error(exc, path, log) from None
        return spool_checked(fd, path, log)
    raise error(replies.OPEN_FAILED, OSError(errno.EAGAIN, "it keeps appearing and "
                                             "disappearing"), file=path)


def _new_spool_mode(path: str) -> int:
    """0660 in a setgid directory (Debian's 2775 root:mail: the spool is
    the mail group's, as the delivery agent makes it), else 0600 (the new
    file's group is the user's own); the umask (privsep) applies too."""
    try:
        return 0o660 if os.stat(os.path.dirname(path) or ".").st_mode & stat.S_ISGID else 0o600
    except OSError:
        return 0o600


def spool_checked(fd: int, path: str, log) -> int:
    """fd, if the file it is open on is the user's spool and nobody
    else's: a regular file of one link, owned by the user (popper's euid:
    it is the user by now), not writable by others (group-writable is the
    mail group's, Debian's 0660 user:mail).  Else the fd is closed, the
    refusal logged at LOG_ALERT, and MaildropError raised: nothing of the
    file was read or changed."""
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise error(replies.OPEN_FAILED, exc, file=path) from None
    why = unfit(st, os.geteuid(), 0o002)
    if not why:
        return fd
    os.close(fd)
    raise _refused(path, st, why, log)


def unfit(st, owner: int, writers: int) -> str:
    """Why a file (its fstat st) someone else could have put in place is
    not to be believed, or "": it must be a regular file of one link, owned
    by uid owner, with none of the mode bits writers (0o002: others may
    not write it; 0o022: nor its group)."""
    why = []
    if not stat.S_ISREG(st.st_mode):
        why.append("not a regular file")
    if st.st_uid != owner:
        why.append("owned by uid %d" % st.st_uid)
    if st.st_nlink != 1:
        why.append("%d links" % st.st_nlink)
    if st.st_mode & writers:
        why.append("writable by %s" % ("its group or others" if writers & 0o020 else "others"))
    return ", ".join(why)


MAX_SMALL_FILE = 1 << 16


def read_checked(path: str, owner: int, writers: int):
    """The text of a small file a user may have a hand in (a qpopper-options
    file), or None if there is none: opened without following a link or
    waiting on a FIFO, and read only once unfit() finds nothing.  ValueError
    says why it was refused; OSError, why it could not be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
                     | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError("a symbolic link") from None
        raise
    with os.fdopen(fd, "rb") as f:
        why = unfit(os.fstat(fd), owner, writers)
        if why:
            raise ValueError(why)
        return f.read(MAX_SMALL_FILE).decode("latin-1")


def _open_error(exc: OSError, path: str, log) -> MaildropError:
    if exc.errno == errno.ELOOP:            # O_NOFOLLOW: a symbolic link
        try:
            st = os.lstat(path)
        except OSError:
            st = None
        return _refused(path, st, "a symbolic link", log)
    return error(replies.OPEN_FAILED, exc, file=path)


def _refused(path: str, st, why: str, log) -> MaildropError:
    log.alert("refused the spool %s (%s): owner uid %s, mode %s, %s links; popper runs as "
              "uid %d. Nothing in it was read or changed; find out who made it so"
              % (path, why, st.st_uid if st else "?",
                 "%04o" % stat.S_IMODE(st.st_mode) if st else "?",
                 st.st_nlink if st else "?", os.geteuid()))
    return error(replies.SPOOL_NOT_YOURS, file=path, why=why)


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


def write_at(fd: int, data: bytes, pos: int) -> None:
    """All of data at pos (pwrite may write less)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, pos)
        view, pos = view[n:], pos + n


def write_pieces(fd: int, pieces, pos: int) -> int:
    """All of the pieces (bytes or views), one after the other, at pos, in
    as few system calls as the kernel takes; returns the end."""
    if not hasattr(os, "pwritev"):                  # Python 3.6
        data = b"".join(pieces)
        write_at(fd, data, pos)
        return pos + len(data)
    pieces, i = [p for p in pieces if len(p)], 0
    while i < len(pieces):
        n = os.pwritev(fd, pieces[i:i + IOV_MAX], pos)
        pos += n
        while i < len(pieces) and n >= len(pieces[i]):
            n -= len(pieces[i])
            i += 1
        if n:                                   # the kernel took part of piece i
            pieces[i] = memoryview(pieces[i])[n:]
    return pos


def separation(last2: bytes, next_byte: bytes) -> bytes:
    """What must come between mail ending in last2 and a message starting
    with next_byte: a blank line before a From line, a line end before an
    MMDF separator line."""
    if next_byte == b"\x01":
        return b"" if last2.endswith(b"\n") else b"\n"
    return b"" if last2 == b"\n\n" else b"\n" if last2.endswith(b"\n") else b"\n\n"


def fingerprint(fd: int, length: int) -> str:
    """Identifies a file's first `length` bytes cheaply: their number and
    the PRINT bytes at each end.  Mail delivered after the file was emptied
    cannot match it (it would have to repeat those bytes at those offsets)."""
    md5 = digests.md5(b"%d:" % length)
    md5.update(os.pread(fd, min(PRINT, length), 0))
    md5.update(os.pread(fd, min(PRINT, length), max(length - PRINT, 0)))
    return md5.hexdigest()


def starts_with(fd: int, length: int, fp: str) -> bool:
    """Does the file still begin with the `length` bytes fingerprinted as fp?"""
    return size(fd) >= length and fingerprint(fd, length) == fp


def first_mail_byte(fd: int, start: int, end: int) -> int:
    """The first offset at or after start that is not a NUL byte (or end).
    Mail never starts with a NUL; the zeros are a rewrite's preallocation."""
    pos = start
    for data in render.read_range(fd, start, end, PRINT):
        stripped = data.lstrip(b"\0")
        if stripped:
            return pos + len(data) - len(stripped)
        pos += len(data)
    return max(start, end)


def set_aside(src: int, ranges, temp_path: str) -> str:
    """Copy the ranges of src into a new file beside the temp drop,
    .<user>.pop.damaged.<time>.<pid>, on the disk; return its name.  The
    administrator looks at it: nothing popper cannot read is thrown away."""
    stamp, count = time.strftime("%Y%m%dT%H%M%S"), 0
    while True:
        path = DAMAGED % (temp_path, stamp, os.getpid(), ".%d" % count if count else "")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
            break
        except FileExistsError:
            count += 1
    try:
        pos = 0
        for a, b in ranges:
            pos = copy_range(src, fd, a, b, pos)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    return path


class Background:
    """Work that runs beside the session, in a thread where there are
    threads (else at once): wait() for it; it returns the exception (an
    OSError) that ended the work, or None."""

    def __init__(self, work, *args):
        self.work, self.args, self.failure = work, args, None
        self.thread = None
        if threading is not None:
            thread = threading.Thread(target=self._run, daemon=True)
            try:
                thread.start()
                self.thread = thread
            except RuntimeError:        # no thread to be had now: the work runs at once
                pass
        if self.thread is None:
            self._run()

    def _run(self) -> None:
        try:
            self.work(*self.args)
        except BaseException as exc:    # an OSError; anything else is the waiter's to raise
            self.failure = exc

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def wait(self):
        if self.thread is not None:
            self.thread.join()
        return self.failure
