"""XTND XMIT (Qpopper's pop_xmit.c): the client sends a message, which is
handed to the mail command as `send-mail -t -i -oem` (pop_xmit.c's execl:
recipients from the header, a lone dot is no end, errors by mail).

After `+OK Start sending message.` the client's lines up to a lone "." are
the message (Session.converse, the seam AUTH's exchange uses): ".." at the
start of a line loses one dot, a line ends in LF, as pop_xmit_recv()
writes it.  They go to a file without a name (O_TMPFILE, 0600, as the user
the session runs as) in the temporary drop's directory: the mail command
reads it through the descriptor, so whatever ends the session -- QUIT
after it, EOF, a timeout or a hangup in the middle of the message, an
error, kill -9 -- leaves no file behind, and a message that did not reach
its "." is never sent.  Where the kernel or the file system has no
O_TMPFILE the file is mkstemp()'s, unlinked at once; a kill -9 between the
two leaves it, and the user's next XMIT removes it (_remove_stale).

A message over xmit-max-size octets, or with a line the session cannot
take whole, is read to its "." and not sent (a clear -ERR).  The mail
command runs as the user (the session is the user by now), with the
message on its stdin, for at most xmit-timeout seconds.
"""

import errno
import os
import stat

import _signal     # not signal.py, nor re (docs/architecture.md, "Start-up")

from popper.extensions import Subcommands
from popper.protocol import replies as R
from popper.protocol.lines import TooLong
from popper.protocol.session import TRANSACTION

ARGV = ("send-mail", "-t", "-i", "-oem")    # pop_xmit.c: argv[0] is "send-mail"
PIECE = 64 * 1024                           # octets of the message written at a time


def rows(session):
    return {TRANSACTION: {"xtnd": (Subcommands(xmit=(lambda: start(session), 0, 0)), 1, 99)}}


def start(session):
    directory = session.settings.temp_drop_dir
    try:
        fd = temp_file(directory)
    except OSError as exc:
        return session.err(R.XMIT_NO_TEMP_FILE, path=os.path.join(directory, ".xmitXXXXXX"),
                           error=os.strerror(exc.errno), errno=exc.errno)
    return session.converse(receive(session, fd))


TMPFILE = getattr(os, "O_TMPFILE", 0)
# O_TMPFILE refused for what the kernel or the file system lacks (EISDIR: a
# kernel older than it opening the directory), not for a missing directory.
NO_TMPFILE = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL)
STALE_PREFIX = ".xmit"
STALE_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789_"     # mkstemp's 8 after the prefix


def is_stale_name(name: str) -> bool:
    """Whether name is one mkstemp(prefix=".xmit") makes."""
    return (len(name) == len(STALE_PREFIX) + 8 and name.startswith(STALE_PREFIX)
            and not name[len(STALE_PREFIX):].strip(STALE_LETTERS))


def temp_file(directory: str) -> int:
    """A descriptor on a new file in directory that has no name."""
    if TMPFILE:
        try:
            return os.open(directory, TMPFILE | os.O_RDWR, 0o600)
        except OSError as exc:
            if exc.errno not in NO_TMPFILE:
                raise
    _remove_stale(directory)
    import tempfile     # read ahead with subprocess (server.READ_AHEAD): only XMIT runs them
    fd, path = tempfile.mkstemp(prefix=".xmit", dir=directory)
    try:
        os.unlink(path)         # from now on the descriptor is the only way to the file
    except FileNotFoundError:
        pass                    # another session's _remove_stale took the name
    except OSError:
        os.close(fd)
        raise
    return fd


def _remove_stale(directory: str) -> None:
    """Remove the .xmit files a kill -9 between mkstemp and unlink left:
    this user's own regular files with one link, looked at without
    following a symbolic link.  (One another session of the user is about
    to unlink loses its name a moment early: its descriptor is unharmed.)"""
    try:
        names = [name for name in os.listdir(directory) if is_stale_name(name)]
    except OSError:
        return
    for name in names:
        path = os.path.join(directory, name)
        try:
            seen = os.lstat(path)
            if not stat.S_ISREG(seen.st_mode):
                continue        # (a device or a fifo is not even opened)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError:
            continue            # a symbolic link, gone, or not the user's to read
        try:
            info = os.fstat(fd)
            if (info.st_dev, info.st_ino) == (seen.st_dev, seen.st_ino) \
                    and stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() \
                    and info.st_nlink == 1:
                os.unlink(path)
        except OSError:
            pass
        finally:
            os.close(fd)


def receive(session, fd: int):
    """The continuation: the message's lines to fd, then the mail command."""
    limit = session.settings.xmit_max_size
    refusal = None              # (template, fields) once the message cannot be sent
    size = 0
    pending = bytearray()       # written in pieces of PIECE octets
    try:
        line = yield R.ok(R.XMIT_START)
        while line != b".":
            if isinstance(line, TooLong):
                refusal = refusal or (R.XMIT_LINE_TOO_LONG, {"limit": session.reader.max_line})
            else:
                if line.startswith(b".."):
                    line = line[1:]
                size += len(line) + 1
                if size > limit:
                    refusal = refusal or (R.XMIT_TOO_BIG, {"limit": limit})
                elif refusal is None:
                    pending += line + b"\n"
                    if len(pending) >= PIECE:
                        refusal = _write(session, fd, pending)
            line = yield []
        refusal = refusal or _write(session, fd, pending)
        if refusal:
            return session.err(refusal[0], **refusal[1])
        return send(session, fd)
    finally:
        os.close(fd)


def _write(session, fd: int, pending: bytearray):
    """Write pending to fd and empty it; a refusal if that failed."""
    data = bytes(pending)
    pending.clear()
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError as exc:
        session.log.notice("XTND XMIT by %s: %s" % (session.user, "the message's file: %s"
                                                     % os.strerror(exc.errno)))
        return (R.XMIT_FAILED, {})
    return None


def send(session, fd: int):
    """Run the mail command on the message in fd; Qpopper's reply."""
    settings, user = session.settings, session.user
    command = settings.mail_command
    session.log.debug('Pop transmit from "%s" on "%s"' % (user, session.client.host))
    os.lseek(fd, 0, os.SEEK_SET)
    import subprocess
    try:
        child = subprocess.Popen(ARGV, executable=command, stdin=fd,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 close_fds=True, start_new_session=True)
    except OSError as exc:
        session.log.notice("XTND XMIT by %s: %s" % (user, "%s cannot run: %s"
                                                     % (command, os.strerror(exc.errno))))
        return session.err(R.XMIT_CANNOT_RUN, command=command, error=os.strerror(exc.errno),
                           errno=exc.errno)
    try:
        status = child.wait(timeout=settings.xmit_timeout)
    except BaseException as exc:    # the deadline, or a signal ending the session
        os.killpg(child.pid, _signal.SIGKILL)
        child.wait()
        if not isinstance(exc, subprocess.TimeoutExpired):
            raise
        status = None
    if status == 0:
        return R.ok(R.XMIT_SENT)
    how = ("did not finish in %d seconds" % settings.xmit_timeout if status is None
           else "was killed by signal %d" % -status if status < 0
           else "exited with status %d" % status)
    session.log.notice("XTND XMIT by %s: %s" % (user, "%s %s" % (command, how)))
    return session.err(R.XMIT_FAILED)
