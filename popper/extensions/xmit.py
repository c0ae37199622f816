"""XTND XMIT (Qpopper's pop_xmit.c): the client sends a message, which is
handed to the mail command as `send-mail -t -i -oem` (pop_xmit.c's execl:
recipients from the header, a lone dot is no end, errors by mail).

After `+OK Start sending message.` the client's lines up to a lone "." are
the message (Session.converse, the seam AUTH's exchange uses): ".." at the
start of a line loses one dot, a line ends in LF, as pop_xmit_recv()
writes it.  They go to a file made by mkstemp() (0600, as the user the
session runs as) in the temporary drop's directory and unlinked at once:
the mail command reads it through the descriptor, so whatever ends the
session -- QUIT after it, EOF, a timeout or a hangup in the middle of the
message, an error -- leaves no file behind, and a message that did not
reach its "." is never sent.

A message over xmit-max-size octets, or with a line the session cannot
take whole, is read to its "." and not sent (a clear -ERR).  The mail
command runs as the user (the session is the user by now), with the
message on its stdin, for at most xmit-timeout seconds.
"""

import os
import signal
import subprocess
import tempfile

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
        fd, path = tempfile.mkstemp(prefix=".xmit", dir=directory)
    except OSError as exc:
        return session.err(R.XMIT_NO_TEMP_FILE, path=os.path.join(directory, ".xmitXXXXXX"),
                           error=os.strerror(exc.errno), errno=exc.errno)
    try:
        os.unlink(path)         # from now on the descriptor is the only way to the file
    except OSError:
        os.close(fd)
        raise
    return session.converse(receive(session, fd))


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
        os.killpg(child.pid, signal.SIGKILL)
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
