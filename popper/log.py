"""Logging as Qpopper does it: syslog (LOCAL1 unless configured otherwise),
ident = the program's name, with the pid; -d adds debug lines, -t sends the
debug lines to a trace file; --enable-debugging appends [file:line].

syslog goes through popper's own client (SyslogSocket), not glibc's
syslog(3): glibc's send() on /dev/log blocks while the daemon is not
reading, and every session, before login too, would wait with it.  Ours
sends the very bytes glibc sends, but never waits: a line that cannot be
sent at once is dropped and counted, and the count is logged once syslog
takes lines again.

The trace file is a name another user may be able to influence (a
world-writable directory): it is opened without following links and
checked -- a regular file of popper's own with one link, not writable by
group or others -- before anything is written to it (open_trace).

Client and mail text reaches these functions only as data: syslog gets it
as the message (never as a format), and the trace file gets it through
write().  Control characters are replaced with "?".
"""

import errno
import os
import _socket as socket     # not socket.py: enum, selectors, collections
import stat
import sys
import time

from popper import __version__

PATH_LOG = "/dev/log"

LOG_EMERG, LOG_ALERT, LOG_CRIT, LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG = range(8)
LOG_FACMASK = 0x03f8

PRIORITIES = {"alert": LOG_ALERT, "critical": LOG_CRIT, "error": LOG_ERR,
              "warning": LOG_WARNING, "notice": LOG_NOTICE, "info": LOG_INFO, "debug": LOG_DEBUG}

# <sys/syslog.h>'s facility codes (already shifted left by 3).
FACILITIES = {"kern": 0 << 3, "user": 1 << 3, "mail": 2 << 3, "daemon": 3 << 3,
              "auth": 4 << 3, "syslog": 5 << 3, "lpr": 6 << 3, "news": 7 << 3,
              "uucp": 8 << 3, "cron": 9 << 3, "authpriv": 10 << 3, "ftp": 11 << 3}
FACILITIES.update(("local%d" % n, (16 + n) << 3) for n in range(8))

LOG_LOGIN_TEMPLATE = '(v%0) POP login by user "%1" at (%2) %3'

# strftime's %h in the C locale, which glibc's syslog() uses whatever the locale.
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# A datagram longer than the socket takes (EMSGSIZE, some 200 KB on Linux)
# is sent cut to this many bytes, rsyslog's default maximum line.
CUT = 8192

# The errors after which the daemon is gone (restarted, or stopped) and a
# new connection by path is worth one try.
GONE = (errno.ECONNREFUSED, errno.ENOTCONN, errno.EPIPE, errno.ECONNRESET, errno.EDESTADDRREQ,
        errno.EBADF)


def trace() -> str:
    """The exception being handled, as traceback.format_exc() writes it
    but for the source lines: the traceback module (with linecache,
    tokenize, textwrap) would be ~4 ms more of every inetd connection's
    imports, and a session that is the user may not read the sources."""
    exc = sys.exc_info()[1]
    if exc is None:
        return "NoneType: None\n"
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    parts = []
    for exc in reversed(chain):
        if parts:
            parts.append("\nThe above exception was the direct cause of the following "
                         "exception:\n\n" if exc.__cause__ is not None else
                         "\nDuring handling of the above exception, another exception "
                         "occurred:\n\n")
        tb = exc.__traceback__
        if tb is not None:
            parts.append("Traceback (most recent call last):\n")
        while tb is not None:
            code = tb.tb_frame.f_code
            parts.append('  File "%s", line %s, in %s\n' % (code.co_filename, tb.tb_lineno,
                                                          code.co_name))
            tb = tb.tb_next
        name = type(exc).__qualname__
        module = type(exc).__module__
        if module not in ("builtins", "__main__"):
            name = "%s.%s" % (module, name)
        try:
            text = str(exc)
        except Exception:
            text = "<exception str() failed>"
        parts.append("%s: %s\n" % (name, text) if text else "%s\n" % name)
    return "".join(parts)


def clean(message: str) -> str:
    """Client or mail text made safe for one line: unprintables become "?"."""
    return "".join(c if c.isprintable() or c == " " else "?" for c in message)


def timestamp(now: float) -> str:
    """glibc's "%h %e %T": local time, the day padded with a space."""
    t = time.localtime(now)
    return "%s %2d %02d:%02d:%02d" % (MONTHS[t.tm_mon - 1], t.tm_mday, t.tm_hour, t.tm_min,
                                      t.tm_sec)


class SyslogSocket:
    """syslog(3) with LOG_PID, as glibc sends it -- `<PRI>Mmm dd hh:mm:ss
    ident[pid]: message` on an AF_UNIX socket connected to /dev/log,
    SOCK_DGRAM or, if /dev/log is a stream socket, SOCK_STREAM with a NUL
    after each line -- but never waiting.

    The socket is made (close-on-exec, non-blocking) and connected when the
    object is, at start-up as root; a forked child and the process once it
    is the user go on using it.  Only when the daemon went away (it was
    restarted) is /dev/log connected again by its path, once per line, as
    glibc does; /dev/log is writable by all, so that works as the user too.

    A line the socket cannot take at once (the daemon's queue is full) is
    dropped and counted; before the next line that goes through, a warning
    says how many were dropped.  send() never raises."""

    def __init__(self, ident: str, facility: int, path: str = PATH_LOG):
        self.ident, self.facility, self.path = ident, facility, path
        self.sock = None
        self.type = socket.SOCK_DGRAM
        self.pending = b""          # the rest of a record a stream socket took only in part
        self.dropped = 0
        self.pid = os.getpid()      # whose count `dropped` is
        self.shown_pid = None       # the pid the lines carry, if not the sender's
        self.connect()

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock else -1

    def connect(self) -> bool:
        """Connect to the daemon (DGRAM first, then STREAM, as glibc): True
        if connected.  Never waits: a stream daemon whose backlog is full is
        not connected to."""
        self.close()
        for kind in (self.type, socket.SOCK_STREAM if self.type == socket.SOCK_DGRAM
                     else socket.SOCK_DGRAM):
            try:
                sock = socket.socket(socket.AF_UNIX, kind)     # close-on-exec, as Python makes all
            except OSError:
                return False
            sock.setblocking(False)
            try:
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EPROTOTYPE:
                    continue
                return False
            self.sock, self.type = sock, kind
            return True
        return False

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        self.pending = b""

    def send(self, priority: int, message: str) -> bool:
        """Send one line (priority without a facility gets ours); False if it
        was dropped."""
        if os.getpid() != self.pid:
            # A forked child: the lines its parent dropped are the parent's
            # to report.  A half-sent stream record it inherited may have
            # been finished by the parent: start a connection of its own.
            self.pid, self.dropped = os.getpid(), 0
            if self.pending:
                self.connect()
        if (priority & LOG_FACMASK) == 0:
            priority |= self.facility
        if self.dropped:
            count = self.dropped
            note = ("%d log message was dropped while syslog was not reading" if count == 1
                    else "%d log messages were dropped while syslog was not reading") % count
            if not self._send(self.facility | LOG_WARNING, note):
                self.dropped += 1
                return False
            self.dropped -= count
        if self._send(priority, message):
            return True
        self.dropped += 1
        return False

    def _record(self, priority: int, message: str) -> bytes:
        line = "<%d>%s %s[%d]: %s" % (priority, timestamp(time.time()), self.ident,
                                      self.shown_pid or os.getpid(), message)
        data = line.encode("utf-8", "replace")
        return data + b"\0" if self.type == socket.SOCK_STREAM else data

    def _send(self, priority: int, message: str) -> bool:
        if self.sock is None and not self.connect():
            return False
        data = self._record(priority, message)
        for attempt in (1, 2):
            try:
                if self.pending:
                    self.pending = self.pending[self._write(self.pending):]
                    if self.pending:
                        return False
                sent = self._write(data)
                if sent < len(data):
                    self.pending = data[sent:]      # the record is sent; its end comes next time
                return True
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.EINTR):
                    return False
                if exc.errno == errno.EMSGSIZE and len(data) > CUT:
                    data = data[:CUT]
                    continue
                if exc.errno in GONE and attempt == 1 and self.connect():
                    data = self._record(priority, message)      # the new socket's framing
                    continue
                self.close()
                return False
        return False

    def _write(self, data: bytes) -> int:
        sock = self.sock        # None if a SIGHUP's reopen() could not connect meanwhile
        if sock is None:
            raise OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN))
        return sock.send(data, socket.MSG_DONTWAIT | getattr(socket, "MSG_NOSIGNAL", 0))


class UnsafeTraceFile(Exception):
    """The trace file is not one popper may write to; args[0] says why."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "an unknown kind of file"


def _owner(uid: int) -> str:
    try:
        import pwd
        return "uid %d (%s)" % (uid, pwd.getpwuid(uid).pw_name)
    except (ImportError, KeyError):
        return "uid %d" % uid


def _check_trace(path: str, st) -> None:
    """Raise UnsafeTraceFile unless st is a regular file of ours (the
    effective uid: root at start-up) with one link, not writable by group
    or others."""
    euid = os.geteuid()
    if (stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_uid == euid
            and not st.st_mode & 0o022):
        return
    raise UnsafeTraceFile(
        'the trace file "%s" is %s, owner %s, mode %04o, %d link%s: refused; popper appends '
        "only to a regular file of uid %d with one link, not writable by group or others"
        % (path, _kind(st.st_mode), _owner(st.st_uid), stat.S_IMODE(st.st_mode), st.st_nlink,
           "" if st.st_nlink == 1 else "s", euid))


def open_trace(path: str):
    """The trace file, opened for appending (created 0600): never through a
    symbolic link, never waiting on a FIFO, and only once it is checked
    (_check_trace).  UnsafeTraceFile if it is not fit; OSError if it cannot
    be opened."""
    try:
        st = os.lstat(path)
    except OSError:
        pass                                    # missing (it is made), or os.open says why
    else:
        _check_trace(path, st)                  # before opening: a device is never opened
    flags = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
             | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        # A symbolic link (ELOOP; EACCES with fs.protected_symlinks), a FIFO
        # without a reader (ENXIO), a directory (EISDIR), another user's
        # file in a sticky directory (EACCES with fs.protected_regular) that
        # appeared after the lstat: say what it is.
        try:
            st = os.lstat(path)
        except OSError:
            raise exc from None
        _check_trace(path, st)
        raise
    try:
        _check_trace(path, os.fstat(fd))        # what was opened, whatever the name is now
        os.set_blocking(fd, True)
        return os.fdopen(fd, "a", encoding="utf-8", errors="replace")
    except BaseException:
        os.close(fd)
        raise


class Log:
    def __init__(self, ident: str, facility: str = "local1", debug: bool = False,
                 tracefile: str = None, debug_build: bool = False):
        self.ident = ident
        self.facility = FACILITIES[facility.lower()]
        self.debugging = debug or tracefile is not None
        self.tracefile = tracefile
        self.debug_build = debug_build
        self.syslog = None
        self.trace = None
        self.shown_pid = None
        self.open()

    def open(self) -> None:
        """Connect to syslog and open the trace file; raise UnsafeTraceFile
        or OSError if the trace file cannot be used (popper then exits, as
        Qpopper does)."""
        if self.syslog is None:
            self.syslog = SyslogSocket(self.ident, self.facility)
        else:
            self.syslog.connect()
        if self.tracefile:
            self.trace = open_trace(self.tracefile)

    def speak_for(self, pid: int) -> None:
        """Give the lines of this process pid's pid: the login process
        logs as the session it is part of, so that every line of a session
        has one pid, as Qpopper's one process gave."""
        self.syslog.shown_pid = pid
        self.shown_pid = pid

    def dropped(self) -> int:
        """How many lines syslog could not take and no line has reported yet."""
        return self.syslog.dropped

    def add_dropped(self, count: int) -> None:
        """Lines another process of the session (the login process) dropped:
        reported with ours."""
        self.syslog.dropped += count

    def reopen_syslog(self) -> None:
        """Nothing to do: PAM modules that call openlog() (with their own
        ident or facility) change glibc's syslog state, which popper no
        longer uses; our socket, ident and facility are our own."""

    def reopen(self) -> None:
        """SIGHUP: start over with syslog and the trace file (log rotation).
        A trace file that is no longer fit (swapped by another user) is
        logged and left out: the server runs on, the debug lines go to
        syslog until the next SIGHUP finds a good one."""
        self.close()
        try:
            self.open()
        except (UnsafeTraceFile, OSError) as exc:
            self.trace = None
            text = (str(exc) if isinstance(exc, UnsafeTraceFile) else
                    'Unable to open trace file "%s": %s (%d)' % (self.tracefile, exc.strerror,
                                                                 exc.errno))
            self.syslog.send(self.facility | LOG_ERR, clean(text))

    def close(self) -> None:
        if self.syslog is not None:
            self.syslog.close()
        if self.trace:
            self.trace.close()
            self.trace = None

    def _write(self, level: str, message: str) -> None:
        message = clean(message)
        if self.debug_build:
            frame = sys._getframe(2)
            message += " [%s:%d]" % (os.path.basename(frame.f_code.co_filename), frame.f_lineno)
        if self.trace:
            # pop_log.c: ctime() without the weekday, the day padded with a
            # space ("Dec  2"), then milliseconds and the year.
            now = time.time()
            self.trace.write("%s.%03d %d [%d] %s\n" % (timestamp(now), int(now * 1000) % 1000,
                                                       time.localtime(now).tm_year,
                                                       self.shown_pid or os.getpid(), message))
            self.trace.flush()
            if level == "debug":
                return
        self.syslog.send(self.facility | PRIORITIES[level], message)

    def alert(self, message: str) -> None:
        """An attack or a misconfiguration that puts mail at risk (a spool
        that is not the user's): to be acted on at once."""
        self._write("alert", message)

    def critical(self, message: str) -> None:
        """Something an administrator must look at (mail set aside)."""
        self._write("critical", message)

    def error(self, message: str) -> None:
        self._write("error", message)

    def warning(self, message: str) -> None:
        self._write("warning", message)

    def notice(self, message: str) -> None:
        self._write("notice", message)

    def info(self, message: str) -> None:
        self._write("info", message)

    def debug(self, message: str) -> None:
        if self.debugging:
            self._write("debug", message)


def err_line(user: str, client, reply: bytes) -> str:
    """pop_msg.c's line for every -ERR sent: the user (Qpopper's p->user,
    "(null)" when empty), the client's name and address, the reply."""
    return "%s at %s (%s): %s" % (user or "(null)", client.host, client.ip,
                                  reply.rstrip(b"\r\n").decode("latin-1"))


def log_login_line(template: str, user: str, host: str, ip: str) -> str:
    """The log-login line, as Qpopper's do_log_login makes it: each % takes
    the next character, which must be 0 (the version), 1 (the user), 2 (the
    client's host) or 3 (its IP), at most four of them; the result is a
    printf format of %s (so %% is a %).  ValueError (Qpopper's text) for a
    template it refuses.  User and host are values, never format."""
    values = {"0": __version__, "1": user, "2": host, "3": ip}
    fmt, args, escape = [], [], False
    for c in template:
        if c == "%":
            escape = True
        elif escape:
            if c not in values:
                raise ValueError('"%%%s" is invalid in a log-login string: "%.128s"'
                                 % (c, template))
            if len(args) == 4:
                raise ValueError('Log-login string contains too many substitutions: "%.128s"'
                                 % template)
            args.append(values[c])
            escape, c = False, "s"
        fmt.append(c)
    out, args, i = [], iter(args), 0
    while i < len(fmt):
        if fmt[i] == "%" and i + 1 < len(fmt):
            out.append("%" if fmt[i + 1] == "%" else next(args))
            i += 2
        else:
            out.append(fmt[i])
            i += 1
    return "".join(out)
