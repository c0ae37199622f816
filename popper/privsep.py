"""Privilege separation: which process runs what, as whom.

Started as root, popper serves a connection as two processes until the
client has logged in (popa3d's model; its pop_root.c keeps the same list):

  the root part      the process inetd (or the standalone listener) started
                     for the connection.  It never reads a byte the client
                     sent before the client has logged in.
  the login process  forked from it, running as login-user (`set
                     login-user`, configure.py --with-login-user, default
                     nobody).  It speaks POP3 with the client until the
                     client has logged in.

What runs as root, and nothing else:
  - start-up: the config file and the command line, opening syslog and the
    trace file, the listening socket (standalone);
  - the reverse lookup of the client's address (Qpopper's), before the fork;
  - for each name and password the login process hands over: the check
    (auth/gatekeeper.py: the back-end -- shadow, PAM, the user database --
    and the auth-file lists), then the failure delay (auth-fail-delay) when
    it fails, so that a subverted login process guesses no faster than a
    client;
  - after a yes: waiting for the login process to be gone, then become()
    -- the user's groups, gid and uid, checked -- before any other file is
    opened.  The session goes on as the user: it reads the client, with the
    bytes the login process had read past the PASS line, reads -u and -U's
    qpopper-options files (server.read_options_files), and opens the
    maildrop;
  - with the bulletin database (--enable-bulldb): reading the user's
    record and listing the bulletin directory before become(); if there
    are new bulletins, their keeper (bulldb.py), forked then: it keeps root
    for the login, closes every descriptor but its channel to the session,
    and writes the one user's record when the session asks.

What the login process has: the connection, its end of the channel to the
root part, the syslog socket and the trace file (to log), and the memory
the root part had before it read any password, hash or mail.  It has no
capabilities, no supplementary groups, cannot fork (RLIMIT_NPROC 0) or gain
privileges through exec (no_new_privs, on Linux), and reads no file.  What
it can make the root part do: check a name and password (one at a time,
each failure followed by the delay), and, after a yes for a name, serve
that user -- with the bytes it hands over as the client's next commands,
which the client could have sent itself.

APOP keeps to it: the greeting's timestamp is made by the root part before
the fork, and the root part checks a digest against its own copy, so the
login process cannot choose the timestamp a digest is checked against; the
root part (which can read pop.auth) answers USER's question, whether the
name has an APOP secret (Qpopper's pop_user.c), too.  SASL (auth/sasl.py)
keeps to it: the exchanges happen in the login process, which decodes them
and hands over what is to be checked -- PLAIN's and LOGIN's name and
password, as PASS's; CRAM-MD5's name and digest, of a challenge the root
part made and kept, as APOP's timestamp; SCRAM-SHA-256's messages, whose
server side (salt, iteration count, the proof's check, the server's
signature) the root part runs -- and the root part checks it.
STLS and the -l 2 handshake happen in the login process too.  After a
login over TLS it stays as the relay: it keeps the TLS connection and
copies the clear bytes between it and a socketpair made before the fork,
over which the session process, now the user, is served (Dovecot's login
processes do the same); the session process keeps no handle on the
client's connection.  The relay therefore holds the TLS key (in the
context made by root at start-up) and sees the session's clear text --
the session of the client it serves, who gave the password; it still
reads no file and cannot fork.  Without TLS nothing changes: the login
process exits and the session reads the connection itself.

Started as any other user (or with --without-login-user), popper runs the
whole session in one process and serves only users it can serve as itself.

The channel is a socketpair.  A message is a frame: 4-byte length, then
fields, each a 4-byte length and its bytes.  Login process to root:
[PASS, user, password], [APOP, user, digest], [PLAIN, authzid, user,
password] (SASL PLAIN and LOGIN), [CRAM, user, digest] (after a
[CHALLENGE]) or [SCRAM3] (after [SCRAM1, client-first-message] and
[SCRAM2, client-final-message]), then after a YES [REST, bytes] (it
exits) or, after a login over TLS, [RELAY, bytes] (it relays), either
with a last field no-mime when the name had that suffix (the session
mangles RETR and TOP by default: presentation only); [USER, user] (may it use
clear text?); last, [END, the count of its log lines syslog could not
take].  Root to login process: [YES, the account's name] (a login), [YES]
(USER), [MORE, data] (an exchange goes on: CRAM-MD5's challenge, SCRAM's
server-first and server-final messages), or [NO,
template, name, value, ...] (the -ERR's template and fields).  Anything else, or a frame over MAX_FRAME, ends the
session.
"""

import _signal     # not socket.py nor signal.py (docs/architecture.md, "Start-up")
import _socket
import errno
import gc
import os
import resource
import select
import struct
import sys
import time

from popper import native
from popper.auth import Account, AuthError, unixdb
from popper.protocol import replies

MAX_FRAME = 256 * 1024      # a PASS request, or what the login process read past it
MAX_FIELD = 4096            # a user name or a password (Qpopper's line is 1023)
LENGTH = struct.Struct(">I")
EXIT_WAIT = 5               # seconds the root part waits for the login process to exit
SLACK = 60                  # seconds the root part gives the login process past login-timeout


class CannotServe(Exception):
    """popper cannot take this account's identity; args[0] is the -ERR text."""


# --- becoming the user ----------------------------------------------------------

def become(account, spool_dir: str) -> None:
    """Take the account's identity: supplementary groups, gid, uid, in that
    order, then checked.  Started as another user than root, popper serves
    only users it can serve as itself."""
    if os.geteuid() != 0:
        if account.uid is not None and account.uid != os.geteuid():
            raise CannotServe(replies.text(replies.CANNOT_SERVE, uid=os.geteuid(),
                                           user=account.name))
        return
    if account.uid is None or account.gid is None:
        raise CannotServe(replies.text(replies.CANNOT_SERVE, uid=0, user=account.name))
    groups = {account.gid}
    entry = unixdb.getpwnam(account.name)
    if entry is not None and entry.uid == account.uid:
        groups.update(os.getgrouplist(account.name, account.gid))      # initgroups()
    mail_group = _mail_group(spool_dir)
    if mail_group is not None:
        groups.add(mail_group)
    _set_identity(account.uid, account.gid, groups)
    if mail_group is not None:
        os.umask(0o007)     # a spool popper creates is the mail group's to write, as the MTA's


def _set_identity(uid: int, gid: int, groups) -> None:
    os.setgroups(sorted(groups))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if (os.getresuid() != (uid,) * 3 or os.getresgid() != (gid,) * 3
            or set(os.getgroups()) != set(groups)):
        raise SystemExit("popper: could not become uid %d gid %d" % (uid, gid))


def preload() -> None:
    """What every login process needs, loaded once in a process that forks
    many (the standalone listener), not in each login process's way:
    with -l 2 the client waits for the handshake behind it.  And the
    pure crypt's library, which every session's root part needs (its
    ctypes.util.find_library runs ldconfig)."""
    if os.geteuid() == 0 and prctl is pure_prctl:
        _libc_prctl()
    from popper.auth import cryptpw
    cryptpw.preload()


def _mail_group(spool_dir: str):
    """The group of a group-writable spool directory (mail, on Debian:
    2775 root:mail), which the user needs to make the dot-lock there, as
    Qpopper's setgid to it gave; None for a root-group or private one."""
    try:
        st = os.stat(spool_dir)
    except OSError:
        return None
    return st.st_gid if st.st_gid != 0 and st.st_mode & 0o020 else None


# --- the login process's identity -----------------------------------------------

# Linux's prctl(2) options.
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38


def _drop_to_login_user(uid: int, gid: int) -> None:
    """Become the login user, with nothing left of root: no capabilities
    (not even in the bounding set), no groups, no new privileges through
    exec, no child processes."""
    for cap in range(64):
        if prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break               # past the last capability this kernel has (or no prctl)
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    os.chdir("/")
    _set_identity(uid, gid, [gid])
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    except (ValueError, OSError, AttributeError):
        pass


def pure_prctl(option: int, arg2: int, arg3: int, arg4: int, arg5: int) -> int:
    """prctl(2) through ctypes; -1 where there is none.  Loading ctypes
    takes milliseconds, so the standalone listener does it once, before
    its first fork (preload)."""
    call = _libc_prctl()
    return -1 if call is None else call(option, arg2, arg3, arg4, arg5)


_LIBC = []


def _libc_prctl():
    """The C library's prctl through ctypes (None where there is none), once."""
    if not _LIBC:
        call = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes
                call = ctypes.CDLL(None, use_errno=True).prctl
            except (ImportError, OSError, AttributeError):
                pass
        _LIBC.append(call)
    return _LIBC[0]


def native_prctl(option: int, arg2: int, arg3: int, arg4: int, arg5: int) -> int:
    """pure_prctl's twin: popper._cpopper's (-1 where there is none)."""
    return native.prctl(option, arg2, arg3, arg4, arg5)


prctl = native_prctl if native.NATIVE else pure_prctl


# --- the channel ----------------------------------------------------------------

class ChannelError(Exception):
    """The other process went away, broke the protocol, or took too long."""


class Channel:
    def __init__(self, sock):
        self.sock = sock
        self.sock.setblocking(False)

    def send(self, fields, deadline: float) -> None:
        body = b"".join(LENGTH.pack(len(field)) + field for field in fields)
        data = memoryview(LENGTH.pack(len(body)) + body)
        while data:
            self._wait(deadline, write=True)
            try:
                n = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                raise ChannelError("send: %s" % exc.strerror) from None
            data = data[n:]

    def receive(self, deadline: float) -> list:
        """The fields of the next message; ChannelError at its end, on a
        malformed frame or past the deadline."""
        (length,) = LENGTH.unpack(self._read(LENGTH.size, deadline))
        if length > MAX_FRAME:
            raise ChannelError("a frame of %d bytes" % length)
        body, fields, at = self._read(length, deadline), [], 0
        while at < length:
            if at + LENGTH.size > length:
                raise ChannelError("a broken frame")
            (size,) = LENGTH.unpack_from(body, at)
            at += LENGTH.size
            if at + size > length:
                raise ChannelError("a broken frame")
            fields.append(body[at:at + size])
            at += size
        return fields

    def _read(self, count: int, deadline: float) -> bytes:
        data = b""
        while len(data) < count:
            self._wait(deadline, write=False)
            try:
                piece = self.sock.recv(count - len(data))
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                raise ChannelError("recv: %s" % exc.strerror) from None
            if not piece:
                raise ChannelError("the other process is gone")
            data += piece
        return data

    def _wait(self, deadline: float, write: bool) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ChannelError("timed out")
        try:
            if write:
                ready = select.select([], [self.sock], [], left)[1]
            else:
                ready = select.select([self.sock], [], [], left)[0]
        except InterruptedError:
            return
        if not ready and deadline <= time.monotonic():
            raise ChannelError("timed out")

    def close(self) -> None:
        self.sock.close()


# --- the login process ----------------------------------------------------------

class AskRoot:
    """The login process's authenticator: the root part checks."""

    def __init__(self, channel: Channel, deadline: float):
        self.channel, self.deadline = channel, deadline

    def authenticate(self, user: str, password: bytes, client) -> Account:
        return self._ask([b"PASS", user.encode("latin-1"), password], user)

    def apop(self, user: str, digest: str, timestamp: str, client) -> Account:
        """The root part checks the digest against its own timestamp."""
        return self._ask([b"APOP", user.encode("latin-1"), digest.encode("latin-1")], user)

    def check_user(self, user: str) -> None:
        self._ask([b"USER", user.encode("latin-1")], user)

    def plain(self, authzid: str, user: str, password: bytes, client) -> Account:
        """SASL PLAIN and LOGIN: the root part checks, as PASS."""
        return self._ask([b"PLAIN", authzid.encode("latin-1"), user.encode("latin-1"),
                          password], authzid)

    def challenge(self) -> str:
        """CRAM-MD5's challenge: the root part's, which it keeps."""
        return self._more([b"CHALLENGE"]).decode("latin-1")

    def cram(self, user: str, digest: str, client) -> Account:
        return self._ask([b"CRAM", user.encode("latin-1"), digest.encode("latin-1")], user)

    def scram_first(self, message: bytes) -> bytes:
        """SCRAM-SHA-256: the root part runs the server side."""
        return self._more([b"SCRAM1", message])

    def scram_final(self, message: bytes, client) -> bytes:
        return self._more([b"SCRAM2", message])

    def scram_done(self, client) -> Account:
        return self._ask([b"SCRAM3"], None)

    def _ask(self, request: list, user: str) -> Account:
        answer = self._answer(request)
        if answer[:1] == [b"YES"] and len(answer) <= 2:
            return Account(answer[1].decode("latin-1") if len(answer) == 2 else user)
        raise AuthError(replies.LOGIN_FAILED, log="a bad answer from the root part", delay=False)

    def _more(self, request: list) -> bytes:
        """The data of the root part's [MORE, data]: an exchange goes on."""
        answer = self._answer(request)
        if len(answer) == 2 and answer[0] == b"MORE":
            return answer[1]
        raise AuthError(replies.LOGIN_FAILED, log="a bad answer from the root part", delay=False)

    def _answer(self, request: list) -> list:
        """The root part's answer, but a NO, which is raised as its AuthError."""
        try:
            self.channel.send(request, self.deadline)
            answer = self.channel.receive(self.deadline)
        except ChannelError as exc:
            raise AuthError(replies.LOGIN_FAILED, log="the root part: %s" % exc,
                            delay=False) from None
        if answer[:1] != [b"NO"]:
            return answer
        if len(answer) < 2 or len(answer) % 2:
            raise AuthError(replies.LOGIN_FAILED, log="a bad answer from the root part",
                            delay=False)
        words = [field.decode("latin-1") for field in answer[1:]]
        fields = dict(zip(words[1::2], words[2::2]))
        # The root part has already waited auth-fail-delay, and logged.
        raise AuthError(words[0], delay=False, logged=True, **fields)


def _login_process(conn, channel: Channel, identity, settings, log, session, login_by, run,
                   tls=None, relay_end=None):
    from popper.protocol.session import HANDED_OFF
    status, relaying = 1, None
    log.speak_for(os.getppid())
    try:
        try:
            _drop_to_login_user(*identity)
            deadline = login_by + SLACK
            session.authenticator = AskRoot(channel, deadline)
            # With -l 2 the handshake comes first, then the greeting (run's).
            from popper.greeting import implicit_tls
            greet = None if implicit_tls(settings, tls) else []
            ended_on = run(conn, session, settings, log, first=greet, login_by=login_by, tls=tls)
            if session.state == HANDED_OFF:
                if getattr(ended_on, "tls", False):
                    channel.send([b"RELAY", session.unread] + _mime_word(session), deadline)
                    relaying = ended_on
                else:
                    channel.send([b"REST", session.unread] + _mime_word(session), deadline)
            status = 0
        except BaseException as exc:
            if not isinstance(exc, (ChannelError, SystemExit)):
                log.error("login process failed: %r" % (exc,))
        try:        # the log lines syslog could not take: the root part reports them
            channel.send([b"END", b"%d" % log.dropped()], time.monotonic() + 1)
        except BaseException:
            pass
        if relaying is not None:
            channel.close()
            from popper.transport import tls as tls_layer
            tls_layer.relay(relaying, relay_end, settings.write_timeout or settings.timeout)
    except BaseException as exc:
        if relaying is not None and not isinstance(exc, SystemExit):
            log.error("the TLS relay failed: %r" % (exc,))
        status = 1
    finally:
        os._exit(status)


def _mime_word(session) -> list:
    """The hand-over's last word: the name ended in -no-mime (the session
    mangles by default); only presentation, so the root part takes it."""
    return [NO_MIME] if session.no_mime else []


NO_MIME = b"no-mime"


# --- the root part --------------------------------------------------------------

def serve(conn, identity, settings, log, client, hostname, make_gatekeeper, run, serve_user,
          login_by, apop_timestamp=None, tls=None):
    """The connection until the client has logged in, in a login process
    running as identity (uid, gid); then serve_user(account, unread,
    connection, over_tls, no_mime) as the user.  apop_timestamp: the greeting's
    (None: no APOP).  tls: the tls.Credentials when TLS is configured.
    Returns once the session is over.

    After a login over TLS the login process stays, as the relay between
    the client's TLS and a socketpair the session is served over (made
    before the fork: it cannot fork then); without TLS the session is
    served on the client's connection, the login process gone.
    Called once greeting.greet has sent the greeting (with -l 2 the login
    process greets, after the handshake) and server.serve has loaded the
    session's modules;
    login_by: the monotonic deadline of the login."""
    from popper.protocol.session import LoginSession
    session = LoginSession(settings, None, None, log, client, hostname, apop_timestamp)
    ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    session_end = relay_end = None
    if tls is not None:
        from popper.transport import tls as tls_layer
        session_end, relay_end = tls_layer.relay_pair()
    if hasattr(gc, "freeze"):
        gc.freeze()     # a collection would write to every object: copies of every page
    pid = os.fork()
    if pid == 0:
        ours.close()
        if session_end is not None:
            session_end.close()
        _login_process(conn, Channel(theirs), identity, settings, log, session, login_by, run,
                       tls, relay_end)
    theirs.close()
    if relay_end is not None:
        relay_end.close()
    channel = Channel(ours)
    deadline = login_by + SLACK
    # A SIGHUP or SIGTERM sent to popper before the login is the login
    # process's to answer (-ERR POP hangup, the sign-off): it speaks to the client.
    saved = {sig: _signal.signal(sig, lambda signum, frame: _pass_on(pid, signum))
             for sig in (_signal.SIGHUP, _signal.SIGTERM)}
    account, over_tls = None, False
    try:
        account, unread, over_tls, no_mime = _check_logins(channel, deadline, settings,
                                                  make_gatekeeper(), client, log,
                                                  apop_timestamp)
        if over_tls and session_end is None:
            account, over_tls = None, False     # a relay without TLS configured: no
    except ChannelError:
        pass
    finally:
        if over_tls:
            _take_last_word(channel, log)       # and the relay goes on
        else:
            _reap(pid, log, channel)
        for sig, handler in saved.items():
            _signal.signal(sig, handler)
    if not over_tls:
        if session_end is not None:
            session_end.close()
        if account is not None:
            serve_user(account, unread, conn, False, no_mime)
        return
    # The session keeps no handle on the client's connection: TLS is the relay's.
    _detach(conn)
    fd = session_end.fileno()
    from popper.transport.connection import Connection
    try:
        serve_user(account, unread, Connection(fd, fd), True, no_mime)
    finally:
        session_end.close()
        _wait_for_relay(pid, log, settings)


def _detach(conn) -> None:
    """Point the connection's fds at /dev/null (they stay valid fds)."""
    conn.release()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in {conn.read_fd, conn.write_fd}:
        os.dup2(null, fd)
    os.close(null)


def _take_last_word(channel: Channel, log) -> None:
    """The login process's END before its relay starts."""
    try:
        _take_end(channel.receive(time.monotonic() + EXIT_WAIT), log)
    except ChannelError:
        pass
    channel.close()


def _wait_for_relay(pid: int, log, settings) -> None:
    """The relay ends once it has sent what the session wrote (within
    write-timeout); the session, now the user, cannot kill it."""
    wait = (settings.write_timeout or settings.timeout or 60) + EXIT_WAIT
    if not _exited(pid, time.monotonic() + wait):
        log.error("the TLS relay %d did not exit" % pid)


def _exited(pid: int, deadline: float) -> bool:
    """Whether the child pid is gone (reaped) by the deadline."""
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        except InterruptedError:
            continue
        if done:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.0005)


def _pass_on(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError:
        pass            # gone already: its end is on the way


# A request: its name, and how many fields follow.
REQUESTS = {b"PASS": 2, b"APOP": 2, b"USER": 1, b"PLAIN": 3, b"CHALLENGE": 0, b"CRAM": 2,
            b"SCRAM1": 1, b"SCRAM2": 1, b"SCRAM3": 0}


def _request(gatekeeper, request: list, client, apop_timestamp):
    """(the user a well-formed request is about, the call that answers
    it): the call returns an Account (a login), bytes (an exchange goes
    on: [MORE, bytes]) or None (USER's yes), or raises AuthError."""
    kind, fields = request[0], request[1:]
    words = [field.decode("latin-1") for field in fields]
    if kind == b"CHALLENGE":
        return None, lambda: gatekeeper.challenge().encode("latin-1")
    if kind == b"SCRAM1":
        return None, lambda: gatekeeper.scram_first(fields[0])
    if kind == b"SCRAM2":
        return None, lambda: gatekeeper.scram_final(fields[0], client)
    if kind == b"SCRAM3":
        return None, lambda: gatekeeper.scram_done(client)
    if kind == b"CRAM":
        return words[0], lambda: gatekeeper.cram(words[0], words[1], client)
    if kind == b"USER":
        return words[0], lambda: gatekeeper.check_user(words[0])
    if kind == b"PASS":
        return words[0], lambda: gatekeeper.authenticate(words[0], fields[1], client)
    if kind == b"PLAIN":
        return words[1], lambda: gatekeeper.plain(words[0], words[1], fields[2], client)
    if not apop_timestamp:
        raise ChannelError("APOP without a timestamp")
    return words[0], lambda: gatekeeper.apop(words[0], words[1], apop_timestamp, client)


def _check_logins(channel: Channel, deadline: float, settings, gatekeeper, client, log,
                  apop_timestamp=None):
    """Answer the login process's requests until a login succeeds:
    (account, the bytes it read past the PASS or APOP line, whether it
    relays TLS).  ChannelError
    when it ends.  An APOP digest is checked against the root part's
    timestamp (apop_timestamp), never one the login process names."""
    from popper.auth.gatekeeper import log_refusal
    while True:
        request = channel.receive(deadline)
        if request[:1] == [b"END"]:
            _take_end(request, log)
            raise ChannelError("the login process ended")
        if (not request or REQUESTS.get(request[0]) != len(request) - 1
                or any(len(field) > MAX_FIELD for field in request[1:])):
            raise ChannelError("a bad request from the login process")
        user, call = _request(gatekeeper, request, client, apop_timestamp)
        try:
            account = call()
        except AuthError as exc:
            if request[0] != b"USER":
                if exc.delay and settings.auth_fail_delay > 0:
                    time.sleep(settings.auth_fail_delay)
                # Logged here, where the check was made: a subverted login
                # process cannot leave a failure out of the log.
                log_refusal(log, user or gatekeeper.scram_user, client, exc,
                            replies.err(exc.template, **exc.fields))
            fields = [exc.template.encode("latin-1")]
            for name, value in exc.fields.items():
                fields += [name.encode("latin-1"), str(value).encode("latin-1")]
            channel.send([b"NO"] + fields, deadline)
            continue
        if account is None:                         # USER: clear text is fine for the name
            channel.send([b"YES"], deadline)
            continue
        if isinstance(account, bytes):
            channel.send([b"MORE", account], deadline)
            continue
        channel.send([b"YES", account.name.encode("latin-1")], deadline)
        rest = channel.receive(deadline)
        if (len(rest) < 2 or rest[0] not in (b"REST", b"RELAY")
                or rest[2:] not in ([], [NO_MIME])):
            raise ChannelError("a bad hand-over from the login process")
        return account, rest[1], rest[0] == b"RELAY", rest[2:] == [NO_MIME]


def _take_end(frame: list, log) -> None:
    """[END, count]: the login process's last word, how many of its log
    lines syslog could not take; counted as the root part's own."""
    if len(frame) == 2 and frame[0] == b"END" and frame[1].isdigit() and len(frame[1]) < 10:
        log.add_dropped(int(frame[1]))


def _reap(pid: int, log, channel: Channel) -> None:
    """Wait for the login process: it must be gone before the root part
    (soon the user) reads the connection it read.  Killed if it lingers.
    Its end of the channel closes as it exits: waitpid() is then quick."""
    deadline = time.monotonic() + EXIT_WAIT
    try:
        _take_end(channel.receive(deadline), log)
        channel.receive(deadline)
    except ChannelError:
        pass
    channel.close()
    if not _exited(pid, deadline):
        log.error("the login process %d did not exit; killed" % pid)
        try:
            os.kill(pid, _signal.SIGKILL)
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                raise
        os.waitpid(pid, 0)
