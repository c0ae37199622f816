"""Standalone mode: `popper [options] [ip][:port]` listens itself and forks
a process per connection; systemd socket activation (Accept=no, LISTEN_FDS)
hands it the listening sockets instead.  (A listening socket on fd 0 is
refused at start-up: see cli.LISTENING_STDIN.)

SIGHUP reopens the log and trace file, and with TLS loads the certificate
and key again (a renewed certificate is served from the next connection
on; one that cannot be used is logged and the one before kept); SIGTERM and SIGINT stop accepting,
let the running sessions finish, and exit.  Each session runs in a session
(setsid) of its own, so a Ctrl-C at the terminal the server was started
from reaches the server only.  It stays in the foreground (for systemd,
runit, or `make demo`); put it in the background with your service
manager.  `set pid-file` names a file it keeps its pid in (PidFile).
"""

import collections
import errno
import fcntl
import os
import select
import signal
import socket
import stat
import time
import traceback

from popper import greeting, privsep, server
from popper.protocol import replies as R
from popper.transport.connection import Connection
from popper.transport.probes import socket_of

DEFAULT_PORT = 110
SD_LISTEN_FDS_START = 3


class AddressError(Exception):
    """A listen address that cannot be used; args[0] says why."""


def parse_address(text: str):
    """(host, port) of "[ip][:port]"; host "" means every address."""
    host, port = text, ""
    if text.startswith("["):                          # [v6]:port
        close = text.find("]")
        if close < 0:
            raise AddressError("%s: missing ]" % text)
        host, rest = text[1:close], text[close + 1:]
        if rest and not rest.startswith(":"):
            raise AddressError("%s: expected :port after ]" % text)
        port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif text.isdigit():
        host, port = "", text
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise AddressError("%s: bad port %r" % (text, port))
    if host:
        try:
            socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
        except socket.gaierror:
            raise AddressError("%s: %r is not an IP address" % (text, host)) from None
    return host, int(port) if port else DEFAULT_PORT


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port; serve() makes it listen once its
    signal handlers are set (a SIGHUP or SIGTERM sent as soon as the port
    answers must find them)."""
    family = socket.AF_INET6 if ":" in host or (not host and socket.has_ipv6) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6 and not host:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind((host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressError("%s:%d in use" % (host, port)) from None
        raise AddressError("%s:%d: %s" % (host, port, exc.strerror)) from None
    return sock


def inherited_listeners():
    """The sockets systemd passed (LISTEN_FDS), or []."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    value = os.environ.get("LISTEN_FDS", "0") or "0"
    if not value.isdigit():
        raise OSError(errno.EINVAL, "not a number of sockets: %r" % value[:40])
    count = int(value)
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return [socket_of(fd) for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count)]


class PidFileError(Exception):
    """The pid file cannot be written; args[0] says why."""


class PidFile:
    """The standalone server's pid file (`set pid-file`): opened without
    following a symbolic link, used only if it is a regular file of
    popper's own uid with one link, and locked (lockf) for as long as the
    server runs.  A second server finds the lock and is refused; a file
    left by a server that died holds no lock and is taken over.  Removed
    by close(), at exit."""

    def __init__(self, path: str):
        self.path = path
        self.fd = None
        for _ in range(5):
            fd = self._open()
            if fd is not None:
                self.fd = fd
                os.fchmod(fd, 0o644)            # for anyone to read, whatever the umask
                # Written over, then cut: a reader never finds it empty, and its
                # first line is always a whole pid (the old one, or this).
                data = b"%d\n" % os.getpid()
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))
                return
        raise PidFileError("the pid file %s keeps being replaced: is another popper starting?"
                           % path)

    def _open(self):
        """The locked pid file's fd; None if another server removed the
        name (or put a new file there) while this one took the lock."""
        flags = (os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
                 | getattr(os, "O_CLOEXEC", 0))
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise PidFileError("cannot write the pid file %s: %s%s"
                               % (self.path, exc.strerror,
                                  " (a symbolic link?)" if exc.errno == errno.ELOOP else ""))
        try:
            st = os.fstat(fd)
            if not (stat.S_ISREG(st.st_mode) and st.st_nlink == 1
                    and st.st_uid == os.geteuid()):
                raise PidFileError(
                    "the pid file %s is not a regular file of uid %d with one link: "
                    "refused; remove it" % (self.path, os.geteuid()))
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    raise PidFileError("cannot lock the pid file %s: %s"
                                       % (self.path, exc.strerror)) from None
                pid = os.read(fd, 32).decode("ascii", "replace").strip()
                raise PidFileError("popper is already running as pid %s (the pid file %s): "
                                   "stop it first" % (pid or "?", self.path)) from None
        except BaseException:
            os.close(fd)
            raise
        if not self._names(fd):
            os.close(fd)
            return None
        return fd

    def _names(self, fd: int) -> bool:
        """Whether the path still names the file open on fd."""
        try:
            now = os.stat(self.path)
        except OSError:
            return False
        st = os.fstat(fd)
        return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)

    def close(self) -> None:
        """Remove the file (if it is still ours) and drop the lock."""
        if self.fd is None:
            return
        if self._names(self.fd):
            try:
                os.unlink(self.path)
            except OSError:
                pass
        os.close(self.fd)
        self.fd = None


class _Stop(Exception):
    pass


REFUSAL_LOG_EVERY = 1.0     # seconds between two refusal lines about one address


def _address_key(ip: str) -> str:
    """The address limits count by: an IPv4-mapped IPv6 address as IPv4."""
    return ip[7:] if ip.startswith("::ffff:") and "." in ip else ip


class Limits:
    """Who may start a session now (max-sessions, max-sessions-per-address,
    max-connections-per-second; 0 = unlimited), and the log of refusals:
    the first refusal of a kind (an address's, or the total's) is logged at
    once, those that follow within REFUSAL_LOG_EVERY are counted and logged
    as one line when it is over.  Not thread-safe; only the listener's
    main loop calls it (children are reaped there, not in a handler)."""

    def __init__(self, settings, log, clock=time.monotonic):
        self.total = settings.max_sessions or 0
        self.per_address = settings.max_sessions_per_address or 0
        self.per_second = settings.max_connections_per_second or 0
        self.log, self.clock = log, clock
        self.children = {}          # pid -> address
        self.running = {}           # address -> its sessions
        self.starts = {}            # address -> the times of its starts in the last second
        self.refused = {}           # (address or None, why) -> [count not logged, logged at]

    def refusal(self, ip: str):
        """None if a session from ip may start; else (reply, log text)."""
        address = _address_key(ip)
        if self.total and len(self.children) >= self.total:
            return (R.err(R.TOO_MANY_SESSIONS),
                    (None, "%d sessions running (max-sessions)" % self.total))
        if self.per_address and self.running.get(address, 0) >= self.per_address:
            return (R.err(R.TOO_MANY_FROM_ADDRESS, address=address),
                    (address, "%d sessions from that address (max-sessions-per-address)"
                     % self.per_address))
        if self.per_second:
            starts = self.starts.get(address)
            if starts:
                now = self.clock()
                while starts and starts[0] <= now - 1:
                    starts.popleft()
                if len(starts) >= self.per_second:
                    return (R.err(R.TOO_FAST_FROM_ADDRESS, address=address),
                            (address, "%d connections from that address in the last second "
                                      "(max-connections-per-second)" % self.per_second))
        return None

    def started(self, pid: int, ip: str) -> None:
        address = _address_key(ip)
        self.children[pid] = address
        self.running[address] = self.running.get(address, 0) + 1
        if self.per_second:
            self.starts.setdefault(address, collections.deque()).append(self.clock())

    def ended(self, pid: int) -> None:
        address = self.children.pop(pid, None)
        if address is None:
            return
        left = self.running.get(address, 1) - 1
        if left:
            self.running[address] = left
        else:
            del self.running[address]

    def forget_old_starts(self) -> None:
        now = self.clock()
        for address in [a for a, s in self.starts.items() if not s or s[-1] <= now - 1]:
            del self.starts[address]

    def log_refusal(self, key) -> None:
        now = self.clock()
        entry = self.refused.get(key)
        if entry is None:
            self._log(key, 1)
            self.refused[key] = [0, now]
        else:
            entry[0] += 1

    def flush(self, force: bool = False) -> None:
        """Log the refusals counted and not yet logged, for each kind whose
        REFUSAL_LOG_EVERY is over (all with force); forget the quiet ones."""
        now = self.clock()
        for key, entry in list(self.refused.items()):
            if force or now - entry[1] >= REFUSAL_LOG_EVERY:
                if entry[0]:
                    self._log(key, entry[0])
                    self.refused[key] = [0, now]
                else:
                    del self.refused[key]

    def next_flush(self):
        """Seconds until flush() has something to do; None: nothing to do."""
        if not self.refused:
            return None
        return max(0.0, min(e[1] for e in self.refused.values()) + REFUSAL_LOG_EVERY
                   - self.clock())

    def _log(self, key, count: int) -> None:
        address, why = key
        self.log.warning("Refused %d connection%s%s: %s"
                         % (count, "" if count == 1 else "s",
                            "" if address is None else " from " + address, why))


def _refuse(conn, reply: bytes) -> None:
    """The -ERR, if the socket takes it at once, and the close: never a wait."""
    try:
        conn.setblocking(False)
        conn.send(reply)
    except OSError:
        pass
    finally:
        conn.close()


def _listening(sock) -> bool:
    """Does sock listen already?  (Where SO_ACCEPTCONN is unknown: no, and
    listen() on a listening socket only sets its queue's length.)"""
    option = getattr(socket, "SO_ACCEPTCONN", None)
    if option is None:
        return False
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, option))
    except OSError:
        return False


def serve(listeners, settings, log, pid_file=None, tls=None) -> int:
    """Accept connections until SIGTERM or SIGINT; one child process per
    session, within the limits.  tls: the tls.Credentials (None: no TLS)."""
    limits = Limits(settings, log)
    listener_pid = os.getpid()
    privsep.preload()
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    accept_errors = {}

    def on_term(signum, frame):
        if os.getpid() == listener_pid:
            raise _Stop()
        # A child not yet in a session of its own: the signal was sent to
        # the listener's process group (a Ctrl-C), not to the session.

    def on_hup(signum, frame):
        log.reopen()        # now: the next session must already use the new files
        if tls is not None:
            tls.reload(log)

    def on_chld(signum, frame):
        pass                # the wakeup fd wakes the loop, which reaps

    def reap():
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            limits.ended(pid)

    def accept_one(sock) -> bool:
        """One connection: served, refused, or none waiting (False)."""
        try:
            conn, address = sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return False
        except OSError as exc:      # EMFILE, ENOBUFS...: logged once a second, then a pause
            if time.monotonic() - accept_errors.get(exc.errno, -REFUSAL_LOG_EVERY) \
                    >= REFUSAL_LOG_EVERY:
                accept_errors[exc.errno] = time.monotonic()
                log.error("accept: %s" % exc)
            time.sleep(0.01)
            return False
        reap()
        ip = address[0] if isinstance(address, tuple) else "0.0.0.0"
        refusal = limits.refusal(ip)
        if refusal is not None:
            reply, key = refusal
            _refuse(conn, reply)
            limits.log_refusal(key)
            return True
        try:
            pid = os.fork()
        except OSError as exc:
            _refuse(conn, R.err(R.SERVER_BUSY))
            limits.log_refusal((None, "fork: %s" % exc.strerror))
            return True
        if pid == 0:
            signal.set_wakeup_fd(-1)
            os.close(wake_r)
            os.close(wake_w)
            _child(conn, address, listeners, pid_file, settings, log, tls)
        limits.started(pid, ip)
        conn.close()
        return True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGCHLD, on_chld)
    signal.set_wakeup_fd(wake_w)
    for sock in listeners:
        if not _listening(sock):        # (LISTEN_FDS hands them over listening)
            # A burst of connections waits in the queue rather than being
            # dropped (its clients would try again only a second later): the
            # loop drains it fast.
            sock.listen(max(128, socket.SOMAXCONN))
        sock.setblocking(False)
        name = sock.getsockname()
        log.notice("listening on %s port %d" % name[:2] if isinstance(name, tuple)
                   else "listening on %s" % (name or "an unnamed socket"))
    last_sweep = time.monotonic()
    try:
        while True:
            ready, _, _ = select.select(listeners + [wake_r], [], [], limits.next_flush())
            if wake_r in ready:
                try:
                    while os.read(wake_r, 512):
                        pass
                except (BlockingIOError, InterruptedError):
                    pass
                reap()
            for sock in ready:
                if sock is wake_r:
                    continue
                for _ in range(256):            # then the other listeners get their turn
                    if not accept_one(sock):
                        break
            limits.flush()
            if time.monotonic() - last_sweep >= 10:
                limits.forget_old_starts()
                last_sweep = time.monotonic()
    except _Stop:
        pass
    for sock in listeners:
        sock.close()
    signal.set_wakeup_fd(-1)
    reap()
    limits.flush(force=True)
    log.notice("stopped accepting; waiting for %d session(s)" % len(limits.children))
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
        except _Stop:
            continue
    return 0


def _child(conn, address, listeners, pid_file, settings, log, tls) -> None:
    status = 0
    try:
        # Out of the terminal's process group and session: a Ctrl-C (or the
        # terminal's hangup) is for the listener, which lets the session end.
        os.setsid()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for sock in listeners:
            sock.close()
        if pid_file is not None:
            os.close(pid_file.fd)   # a session, soon the user's, keeps no handle on it
        conn.setblocking(True)      # as accept() gives it on Linux; not so everywhere
        fd = conn.fileno()
        greeted = greeting.greet(fd, address[0], settings, log, tls)
        if greeted is not None:
            server.serve(Connection(fd, fd), greeted, settings, log, tls)
    except BaseException:
        status = 1
        log.error("session process failed: %s" % traceback.format_exc())
    finally:
        os._exit(status)
