"""Running popper as an administrator does: -v and --help; the start-up
refusals (a spool directory that is not there) and warnings (a PAM service
PAM has no file for, a shadow file popper cannot read); the pid file;
Ctrl-C at the terminal the server runs at; a listening socket on fd 0,
refused."""

import fcntl
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import termios
import time

import pytest

from conftest import (IS_ROOT, Conversation, Standalone, corpus, free_port, start_inetd,
                      wait_for_port)

from popper import __version__, cli

MAIL = corpus.mbox_bytes(list(corpus.messages(3, seed=23)))
NOBODY = 65534
WARNING, ERR = 4, 3

needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root")


def popper(*args, **kw):
    return subprocess.run([sys.executable, "-m", "popper"] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=30, **kw)


def wait_until(condition, seconds: float = 10, what: str = "the condition"):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("%s did not come true in %s s" % (what, seconds))
        time.sleep(0.02)


# --- -v, --help ------------------------------------------------------------------------------

def test_v_and_help_print_to_stdout_and_exit_0():
    result = popper("-v")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == ("popper version %s (Qpopper version 4.0.5 compatible, inetd and "
                             "standalone)\n" % __version__)
    result = popper("--help")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("Usage: popper [-a] ")
    assert "popper(8)" in result.stdout
    assert popper("--no-such-option").returncode == 1


# --- the spool directory ---------------------------------------------------------------------

@pytest.mark.parametrize("line,message", [
    ("set spool-dir = {base}/nowhere",
     "popper: the spool directory {base}/nowhere does not exist: create it, or name another "
     "with set spool-dir"),
    ("set spool-dir = {base}/users",
     "popper: the spool directory {base}/users is not a directory: name one with set spool-dir"),
    ("set temp-dir = {base}/nowhere",
     "popper: the temporary drop directory {base}/nowhere does not exist: create it, or name "
     "another with set temp-dir"),
])
def test_a_spool_directory_that_is_not_there_is_refused_at_start_up(mailhost, line, message):
    mailhost.deliver(MAIL)
    mailhost.write_config(line.format(base=mailhost.base))
    ours, theirs = socket.socketpair()
    with ours, theirs:
        result = subprocess.run(mailhost.command(), stdin=theirs, stdout=theirs,
                                stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
        theirs.close()
        ours.settimeout(10)
        # no greeting, not a session: one line saying so, then the end
        assert ours.recv(100) == b"-ERR [SYS/TEMP] POP server unavailable, see the system log\r\n"
        assert ours.recv(100) == b""
    assert result.returncode == 1
    assert result.stderr.splitlines() == [message.format(base=mailhost.base)]


@needs_root
@pytest.mark.root
def test_the_spool_directory_refusal_is_logged(mailhost, syslog):
    mailhost.write_config("set spool-dir = %s/nowhere" % mailhost.base)
    result = subprocess.run(syslog.wrap(mailhost.command()), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert result.returncode == 1
    assert [(p, t.split(": ", 1)[1]) for _, p, t in syslog.collect()] == [
        (ERR, "the spool directory %s/nowhere does not exist: create it, or name another "
              "with set spool-dir" % mailhost.base)]


# --- start-up warnings: the PAM service, the shadow file -------------------------------------

def session_with_stderr(mailhost, env=None, cwd=None, **popen):
    """An inetd session whose stderr is a pipe: (Conversation, stderr text after QUIT)."""
    conv = start_inetd(mailhost.command(), stderr=subprocess.PIPE, universal_newlines=True,
                       env=env, cwd=cwd, **popen)
    assert conv.greeting.startswith(b"+OK QPOP")
    assert conv.cmd("QUIT").startswith(b"+OK")
    err = conv.process.communicate(timeout=30)[1]
    conv.close()
    return err


PAM_MISSING = ('popper: PAM service "{0}": there is no /etc/pam.d/{0}, nor a line for it in '
               '/etc/pam.conf, so PAM uses its "other" service: install /etc/pam.d/{0}, or '
               'name an existing service with set pam-service')


def test_a_pam_service_pam_has_no_file_for_is_warned_about(mailhost):
    service = "popper-test-none-%s" % secrets.token_hex(3)
    mailhost.write_config("set pam-service = %s" % service, userdb=False)
    assert session_with_stderr(mailhost).splitlines() == [PAM_MISSING.format(service)]


@pytest.mark.skipif(not os.path.isfile("/etc/pam.d/other"), reason="no /etc/pam.d/other")
def test_a_pam_service_with_a_file_is_not_warned_about(mailhost):
    mailhost.write_config("set pam-service = other", userdb=False)
    assert session_with_stderr(mailhost) == ""


@needs_root
@pytest.mark.root
def test_the_pam_warning_is_logged(mailhost, syslog):
    service = "popper-test-none-%s" % secrets.token_hex(3)
    mailhost.write_config("set pam-service = %s" % service, userdb=False)
    conv = start_inetd(syslog.wrap(mailhost.command()), stderr=subprocess.DEVNULL)
    assert conv.cmd("QUIT").startswith(b"+OK")
    conv.close()
    assert (WARNING, PAM_MISSING.format(service)[len("popper: "):]) in [
        (p, t.split(": ", 1)[1]) for _, p, t in syslog.collect()]


def test_warnings_never_reach_an_inetd_client_that_is_stderr_too(mailhost):
    """BSD inetd and xinetd hand the connection over as fd 0, 1 and 2."""
    mailhost.write_config("set pam-service = popper-test-none", userdb=False)
    ours, theirs = socket.socketpair()
    process = subprocess.Popen(mailhost.command(), stdin=theirs, stdout=theirs, stderr=theirs)
    theirs.close()
    conv = Conversation(ours, process)
    assert conv.greeting.startswith(b"+OK QPOP")
    assert conv.cmd("QUIT").startswith(b"+OK Pop server at")
    assert conv.buf == b"" and conv.closed()                # and nothing else came
    conv.close()


SHADOW_TEXT = ('uid {uid} cannot read the shadow passwords (/etc/shadow: Permission denied), '
               'so no user whose passwd entry says "x" can log in: run popper as root, or name '
               'another back-end with set userdb or set pam-service')


@pytest.fixture
def world_readable_popper(mailhost):
    """(command prefix, env) that run this popper as any user, from the
    mail host's directory: Debian's python3 on a copy of the package others
    can read (pyenv's interpreters and tox's environments are root's only)."""
    import popper
    python = "/usr/bin/python3"
    if not os.access(python, os.X_OK):
        pytest.skip("needs /usr/bin/python3 to run popper as another user")
    lib = mailhost.base / "lib"
    shutil.copytree(os.path.dirname(popper.__file__), str(lib / "popper"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for path in [lib] + list(lib.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return [python, "-m", "popper"], dict(os.environ, PYTHONPATH=str(lib), POPPER_PUREPYTHON="1")


def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def test_a_popper_that_cannot_read_shadow_says_so_at_start_up(mailhost, world_readable_popper):
    command, env = world_readable_popper
    if IS_ROOT:
        uid, preexec = NOBODY, as_nobody
    else:
        uid, preexec = os.getuid(), None
        if os.access("/etc/shadow", os.R_OK):
            pytest.skip("this user can read /etc/shadow")
    if not os.path.exists("/etc/shadow"):
        pytest.skip("no /etc/shadow")
    mailhost.write_config(userdb=False)
    config = mailhost.command()[mailhost.command().index("-f"):]
    ours, theirs = socket.socketpair()
    process = subprocess.Popen(command + config, stdin=theirs, stdout=theirs,
                               stderr=subprocess.PIPE, universal_newlines=True, env=env,
                               cwd=str(mailhost.base), preexec_fn=preexec)
    theirs.close()
    conv = Conversation(ours, process)
    assert conv.cmd("QUIT").startswith(b"+OK")
    err = process.communicate(timeout=30)[1]
    conv.close()
    assert err.splitlines() == ["popper: " + SHADOW_TEXT.format(uid=uid)]


@pytest.fixture
def real_user(mailhost):
    """A user made with useradd and chpasswd, whose hash is in /etc/shadow."""
    if not IS_ROOT or not shutil.which("useradd") or not shutil.which("setpriv"):
        pytest.skip("needs root, useradd and setpriv")
    name = "poptest%s" % secrets.token_hex(3)
    password = "pw-" + secrets.token_hex(6)
    subprocess.run(["useradd", "-M", "-d", str(mailhost.base), "-s", "/usr/sbin/nologin",
                    "-U", name], check=True)
    try:
        subprocess.run(["chpasswd"], input="%s:%s\n" % (name, password),
                       universal_newlines=True, check=True)
        entry = pwd.getpwnam(name)
        mailhost.deliver(MAIL, user=name)
        os.chown(str(mailhost.spool(name)), entry.pw_uid, entry.pw_gid)
        yield entry, password
    finally:
        subprocess.run(["userdel", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.root
def test_run_as_a_user_popper_logs_why_the_right_password_fails(mailhost, real_user, syslog,
                                                                world_readable_popper):
    entry, password = real_user
    command, env = world_readable_popper
    mailhost.write_config(userdb=False)
    config = mailhost.command()[mailhost.command().index("-f"):]

    def login(name, secret, as_user: bool) -> bytes:
        argv = (["setpriv", "--reuid=%d" % entry.pw_uid, "--regid=%d" % entry.pw_gid,
                 "--clear-groups", "--"] if as_user else []) + command + config
        conv = start_inetd(syslog.wrap(argv), env=env, cwd=str(mailhost.base),
                           stderr=subprocess.DEVNULL)
        try:
            return conv.login(name, secret)
        finally:
            conv.cmd("QUIT")
            conv.close()

    # Root reads the hash: the password is right.
    assert login(entry.pw_name, password, as_user=False).startswith(b"+OK %s has 3 "
                                                                    % entry.pw_name.encode())
    syslog.records.clear()
    # The user cannot: refused as any wrong password or unknown user is...
    reply = login(entry.pw_name, password, as_user=True)
    unknown = login("nosuch%s" % secrets.token_hex(3), password, as_user=True)
    name = entry.pw_name.encode()
    assert reply == b'-ERR [AUTH] Password supplied for "%s" is incorrect.' % name
    assert unknown.replace(unknown.split(b'"')[1], name) == reply
    # ...and the log says why, at start-up and for the login.
    texts = [(p, t.split(": ", 1)[1]) for _, p, t in syslog.collect()]
    why = SHADOW_TEXT.format(uid=entry.pw_uid)
    assert (WARNING, why) in texts
    # The reason in a line of its own, then Qpopper's line as it is.
    failed = [t for _, t in texts if entry.pw_name in t and "failed" in t.lower()]
    assert failed[:2] == [
        "Authentication failed for user %s: no usable password: %s" % (entry.pw_name, why),
        "[AUTH] Failed attempted login to %s from host (127.0.0.1) 127.0.0.1" % entry.pw_name]


# --- the pid file ----------------------------------------------------------------------------

def start_standalone(mailhost, pid_file):
    mailhost.deliver(MAIL)
    mailhost.write_config("set pid-file = %s" % pid_file)
    return Standalone(mailhost.command())


def test_the_pid_file_names_the_listener_and_goes_when_it_exits(mailhost):
    pid_file = mailhost.base / "popper.pid"
    server = start_standalone(mailhost, pid_file)
    try:
        assert pid_file.read_text() == "%d\n" % server.process.pid
        assert pid_file.stat().st_mode & 0o777 == 0o644
        conv = server.connect()
        conv.login()
        assert conv.cmd("QUIT").startswith(b"+OK")
        conv.close()
        assert pid_file.read_text() == "%d\n" % server.process.pid
    finally:
        assert server.stop() == 0
    assert not pid_file.exists()


def test_a_second_server_with_the_same_pid_file_is_refused(mailhost):
    pid_file = mailhost.base / "popper.pid"
    server = start_standalone(mailhost, pid_file)
    try:
        result = popper("-f", str(mailhost.config), "127.0.0.1:%d" % free_port())
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            "popper: popper is already running as pid %d (the pid file %s): stop it first"
            % (server.process.pid, pid_file)]
        assert pid_file.read_text() == "%d\n" % server.process.pid
    finally:
        server.stop()


def test_a_pid_file_left_by_a_killed_server_is_taken_over(mailhost):
    """Killed with a session open: the session does not hold the file."""
    pid_file = mailhost.base / "popper.pid"
    first = start_standalone(mailhost, pid_file)
    conv = first.connect()
    conv.login()
    first.process.kill()
    first.process.wait(10)
    assert pid_file.read_text() == "%d\n" % first.process.pid      # left behind
    second = Standalone(mailhost.command())
    try:
        assert pid_file.read_text() == "%d\n" % second.process.pid
        assert conv.cmd("QUIT").startswith(b"+OK")                  # the session lived on
        conv.close()
    finally:
        assert second.stop() == 0
    assert not pid_file.exists()


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_a_pid_file_that_is_a_link_is_refused_and_its_target_untouched(mailhost, kind):
    target = mailhost.base / "precious"
    target.write_text("keep me\n")
    pid_file = mailhost.base / "popper.pid"
    if kind == "symlink":
        pid_file.symlink_to(target)
        expected = "popper: cannot write the pid file %s: Too many levels of symbolic links " \
                   "(a symbolic link?)" % pid_file
    else:
        os.link(str(target), str(pid_file))
        expected = ("popper: the pid file %s is not a regular file of uid %d with one link: "
                    "refused; remove it" % (pid_file, os.geteuid()))
    mailhost.write_config("set pid-file = %s" % pid_file)
    result = popper("-f", str(mailhost.config), "127.0.0.1:%d" % free_port())
    assert result.returncode == 1
    assert result.stderr.splitlines() == [expected]
    assert target.read_text() == "keep me\n"


def test_inetd_mode_writes_no_pid_file(mailhost, inetd):
    pid_file = mailhost.base / "popper.pid"
    mailhost.write_config("set pid-file = %s" % pid_file)
    conv = inetd()
    assert conv.cmd("QUIT").startswith(b"+OK")
    assert not pid_file.exists()


# --- Ctrl-C at the terminal ------------------------------------------------------------------

def take_the_terminal():
    """In the child, after setsid: fd 0, a pty's slave, becomes the
    controlling terminal, and this process group its foreground."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_ctrl_c_stops_the_listener_and_the_sessions_run_to_their_end(mailhost):
    """As at a shell: popper in the foreground of a terminal, ^C typed.
    The terminal sends SIGINT to its foreground process group; sessions
    are in sessions of their own, so only the listener gets it, and it
    acts as on SIGTERM."""
    mailhost.deliver(MAIL)
    port = free_port()
    master, slave = os.openpty()
    process = subprocess.Popen(mailhost.command("127.0.0.1:%d" % port), stdin=slave,
                               stdout=slave, stderr=slave, start_new_session=True,
                               preexec_fn=take_the_terminal)
    os.close(slave)
    try:
        wait_for_port(port, process)
        assert os.tcgetpgrp(master) == os.getpgid(process.pid) == process.pid
        conv = Conversation(socket.create_connection(("127.0.0.1", port)))
        assert conv.login().startswith(b"+OK alice has 3 visible messages")
        assert termios.tcgetattr(master)[6][termios.VINTR] == b"\x03"
        os.write(master, b"\x03")
        wait_until(lambda: _refused(port), what="the listener's closing its socket")
        assert process.poll() is None                       # it waits for the session
        assert conv.cmd("DELE 1").startswith(b"+OK")
        assert conv.cmd("QUIT").startswith(b"+OK Pop server at")
        conv.close()
        assert process.wait(10) == 0
        assert mailhost.spool().read_bytes().count(b"\nX-UIDL: ") == 2
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:    # queued as the listener closed: look again
        pass
    return False


# --- a listening socket on fd 0 --------------------------------------------------------------

@needs_root
@pytest.mark.root
def test_a_listening_socket_on_fd_0_is_refused_and_logged(mailhost, syslog):
    """inetd's `wait`, systemd's StandardInput=socket with Accept=no: a
    mistaken set-up.  popper says so in syslog (its stderr is that socket
    too) and exits; a client waiting on the socket gets no greeting."""
    mailhost.deliver(MAIL)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    client = socket.create_connection(listener.getsockname(), timeout=10)
    with listener, client:
        result = subprocess.run(syslog.wrap(mailhost.command()), stdin=listener,
                                stdout=listener, stderr=listener, timeout=30)
        assert result.returncode == 1
        client.setblocking(False)
        with pytest.raises(BlockingIOError):
            client.recv(100)                            # nothing was written to anyone
    assert [(p, t.split(": ", 1)[1]) for _, p, t in syslog.collect()] == [
        (ERR, cli.LISTENING_STDIN)]


@pytest.mark.clients
@pytest.mark.skipif(not shutil.which("systemd-socket-activate"),
                    reason="needs systemd-socket-activate")
def test_systemd_socket_activate_inetd_without_a_is_refused(mailhost):
    """--inetd without -a hands over the listening socket as fd 0 and 1,
    at the first connection: popper refuses, saying why on stderr."""
    mailhost.deliver(MAIL)
    port = free_port()
    passed = ["-E%s" % name for name in ("PYTHONPATH", "POPPER_PUREPYTHON") if name in os.environ]
    process = subprocess.Popen(["systemd-socket-activate", "-l", "127.0.0.1:%d" % port,
                                "--inetd"] + passed + mailhost.command(), stderr=subprocess.PIPE,
                               universal_newlines=True)
    try:
        wait_for_port(port, process)
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        with client:
            assert process.wait(30) == 1
            try:
                assert client.recv(100) == b""          # closed with the listener, unanswered
            except ConnectionResetError:
                pass
        assert ("popper: %s\n" % cli.LISTENING_STDIN) in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
