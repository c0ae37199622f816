"""The file work the maildrop's parts share: opening the spool, copying
ranges between files, telling a file's content again, setting aside what
cannot be read, and running work beside the session."""

import errno
import hashlib
import os
import stat
import time

from popper.maildrop import MaildropError, render
from popper.protocol import replies

try:
    import threading
except ImportError:         # a Python built without threads (SCO): work runs in line
    threading = None

COPY_CHUNK = 1 << 20
MARKER = b"\0popper-rewrite\0"    # the spool's first bytes while popper rewrites it
PRINT = 4096                # bytes at each end of a range that identify it
DAMAGED = "%s.damaged.%s.%d%s"    # beside the temp drop: what popper set aside


def error(template: str, exc: OSError = None, **fields) -> MaildropError:
    if exc is not None:
        fields.update(error=exc.strerror or str(exc), errno=exc.errno or 0)
    return MaildropError(replies.text(template, **fields))


def size(fd: int) -> int:
    return os.fstat(fd).st_size


def open_spool(path: str, create: bool):
    """The spool open for reading and writing (never through a symbolic
    link), or None if there is none and create is false."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o660)    # the umask decides (privsep)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(replies.OPEN_FAILED, exc, file=path) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise error(replies.OPEN_FAILED, OSError(errno.EINVAL, "not a regular file"), file=path)
    return fd


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
    md5 = hashlib.md5(b"%d:" % length)
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
    threads (else at once): wait() for it; it returns the OSError that
    ended the work, or None."""

    def __init__(self, work, *args):
        self.work, self.args, self.failure = work, args, None
        if threading is None:
            self.thread = None
            self._run()
        else:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()

    def _run(self) -> None:
        try:
            self.work(*self.args)
        except OSError as exc:
            self.failure = exc

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def wait(self):
        if self.thread is not None:
            self.thread.join()
        return self.failure
