"""The temporary drop, <temp-dir>/.<user>.pop: where a session's mail is
kept, and the session lock (flock'ed for the whole session).

It is opened as Qpopper did, with Qpopper's checks and texts: never
through a symbolic link, owned by the user, closed to others, one link.
"""

import fcntl
import os
import stat

from popper.maildrop import MaildropError
from popper.maildrop.files import error, separation
from popper.protocol import replies


def open_temp_drop(path: str, user: str, log) -> int:
    """The temp drop, created if need be, checked and locked; raises
    MaildropError with the client's text."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        log.notice("Unable to open temporary drop %s: %s (%d)" % (path, exc.strerror, exc.errno))
        raise error(replies.TEMP_CREATE_FAILED, tempdrop=path, uid=os.geteuid(),
                    gid=os.getegid()) from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise error(replies.TEMP_NOT_OWNED, tempdrop=path, user=user)
        if st.st_mode & 0o007:
            raise error(replies.TEMP_OPEN_TO_OTHERS, tempdrop=path)
        if st.st_nlink != 1 or not stat.S_ISREG(st.st_mode):
            raise error(replies.TEMP_LINKED)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise error(replies.IN_USE, tempdrop=path, errno=exc.errno) from None
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


def end_message(fd: int, pos: int, next_byte: bytes) -> int:
    """Make the temp drop's mail end at pos so that a message starting with
    next_byte can follow; return where it goes."""
    if pos == 0:
        return 0
    fix = separation(os.pread(fd, 2, max(pos - 2, 0)), next_byte)
    if fix:
        os.pwrite(fd, fix, pos)
    return pos + len(fix)
