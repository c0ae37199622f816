"""popper's command line and -f config file, run as the real program."""

import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import IS_ROOT, TEST_GID, TEST_UID, corpus, free_port, hashed, process_ids

from popper import __version__

pytestmark = pytest.mark.clients

MAIL = corpus.mbox_bytes(list(corpus.messages(3, seed=11)))


def popper(*args, timeout=30, **kw):
    return subprocess.run([sys.executable, "-m", "popper", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout,
                          **kw)


USAGE_START = "Usage: popper [-a] [-b bulldir] [-B] [-c] [-C] [-d] [-D drac-host] "


def test_version():
    result = popper("-v")
    assert result.returncode == 0
    assert result.stdout.strip() == (
        "popper version %s (Qpopper version 4.0.5 compatible, inetd and standalone)" % __version__)


@pytest.mark.parametrize("args,message", [
    (["-x"], "popper: option -x not recognized"),
    (["-T"], "popper: option -T requires argument"),
    (["-L", "0"], "popper: -L 0 is 0 messages (Qpopper would divide by it)"),
    (["-e", "colour=blue"], "popper: -e: unknown extension 'colour' (login_delay, expire)"),
    (["-y", "local9"], "popper: Error setting '-y' to local9"),
    (["-p", "7"], "popper: Unrecognized -p value; 0 = default; 1 = never; 2 = always "
                  "(fallback); 3 = local only; 4 = TLS/SSL only"),
    (["-l", "3"], "popper: Unrecognized -l value; 0 = default; 1 = stls; 2 = alternate-port"),
    (["1.2.3.4:1", "5.6.7.8:2"], "popper: only one listen address"),
    (["-s", "stray"], "popper: unexpected argument 'stray'"),
])
def test_bad_command_lines_print_usage_and_exit_1(args, message):
    result = popper(*args)
    assert result.returncode == 1
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.splitlines()[-1].startswith(USAGE_START)


@pytest.mark.parametrize("args,message", [
    (["-k"], "popper: -k / -K: Kerberos support is not built"),
    (["-K", "pop"], "popper: -k / -K: Kerberos support is not built"),
    (["-B"], "popper: -B: the bulletin database is not built"),
    (["-l", "1"], "popper: cannot use the TLS certificate /etc/mail/certs/identity.crt: "
                  "no such file or directory"),                 # nothing names one
    (["-D", "localhost"], "popper: -D: DRAC is not built"),
])
def test_options_of_later_features_are_refused_clearly(mailhost, args, message):
    result = popper("-f", str(mailhost.config), *args)
    assert result.returncode == 1
    assert message in result.stderr.splitlines()


def test_without_a_user_database_unix_passwords_are_used(mailhost, inetd):
    mailhost.write_config(userdb=False)
    conv = inetd()
    assert conv.login("no-such-user-here", "x") == (
        b'-ERR [AUTH] Password supplied for "no-such-user-here" is incorrect.')


def test_a_user_database_others_may_change_is_refused(mailhost):
    os.chmod(mailhost.userdb, 0o666)
    result = popper("-f", str(mailhost.config))
    assert result.returncode == 1
    assert "popper: the user database %s may be changed by others (mode 0666): chmod go-w it" % (
        mailhost.userdb) in result.stderr
    os.unlink(mailhost.userdb)
    result = popper("-f", str(mailhost.config))
    assert "popper: the user database %s: No such file or directory" % mailhost.userdb \
        in result.stderr


def test_auto_delete_needs_expire_0(mailhost):
    mailhost.write_config("set auto-delete")
    result = popper("-f", str(mailhost.config), "-e", "expire=30")
    assert result.returncode == 1
    assert "popper: EXPIRE must be 0 when AUTO_DELETE defined." in result.stderr


@pytest.mark.parametrize("line,message", [              # pop_config.c's texts (tilt)
    ("set spool-dir = relative",
     'Bad value for the spool-dir option; scanning "relative" at line 5 of config file {f}: '
     'needs an absolute path'),
    ("set colour = blue",
     'Unrecognized option; scanning "colour" at line 5 of config file {f}; valid options '
     'are: "announce-expire", '),
    ("set timeout", '"=" expected; found "" at line 5 of config file {f}'),
    ("reset timeout", 'timeout is not a boolean option; scanning "timeout" at line 5 of config '
                      'file {f}'),
    ("set statistics = maybe", 'Boolean value expected for the statistics option; scanning '
                               '"maybe" at line 5 of config file {f}'),
    ("set timeout = 1 2", 'Expected comment or end of line; found "2" at line 5 of config file {f}'),
    ("bogus", 'Expected "set" or "reset", found "bogus" at line 5 of config file {f}'),
    ("set = 3", 'Unrecognized option; scanning "=" at line 5 of config file {f}; '),
])
def test_bad_config_file_lines_name_file_and_line(mailhost, line, message):
    mailhost.write_config(line)
    result = popper("-f", str(mailhost.config))
    assert result.returncode == 1
    assert result.stderr.strip().startswith("popper: Unable to process config file %s: %s" % (
        mailhost.config, message.format(f=mailhost.config)))


def test_missing_config_file():
    result = popper("-f", "/nonexistent/popper.conf")
    assert result.returncode == 1
    assert "Unable to process config file /nonexistent/popper.conf" in result.stderr


def test_config_file_syntax_variants(mailhost, inetd):
    mailhost.deliver(MAIL)
    mailhost.write_config("# a comment", "  set shy   # trailing comment",
                          "set timeout=45", "set timeout =45", "set timeout= 045",
                          "reset shy", "set shy = true", "set announce-expire = `never`",
                          'set tracefile = "%s/a b#c"' % mailhost.base)
    conv = inetd()
    assert conv.greeting == b"+OK ready"
    conv.send(b"CAPA\r\n")
    assert conv.line() == b"+OK Capability list follows"
    assert b"EXPIRE NEVER" in conv.multiline()
    assert (mailhost.base / "a b#c").exists()            # the quoted trace file


def test_later_options_override_the_config_file(mailhost, inetd):
    mailhost.write_config("set timeout = 1")
    conv = inetd("-T", "60")            # -f comes first in mailhost.command: -T 60 wins
    time.sleep(1.5)
    assert conv.cmd("CAPA") == b"+OK Capability list follows"


def test_idle_timeout(mailhost, inetd):
    mailhost.deliver(MAIL)
    conv = inetd("-T", "1")
    conv.login()
    start = time.monotonic()
    host = conv.greeting.split(b" at ")[1].split(b" ")[0]
    assert conv.line() == b"-ERR POP timeout from " + host          # the server: popper.c, pop_exit
    assert time.monotonic() - start >= 0.9
    assert conv.line().startswith(b"+OK Pop server at ")
    assert conv.closed()


def test_m_is_ignored_and_e_is_announced(mailhost, inetd):
    conv = inetd("-M", "-e", "login_delay=60,expire=7")
    conv.send(b"CAPA\r\n")
    conv.line()
    lines = conv.multiline()
    assert b"LOGIN-DELAY 60" in lines and b"EXPIRE 7" in lines


def test_c_and_upper_case_user(mailhost, inetd):
    mailhost.deliver(MAIL)
    conv = inetd("-c")
    assert conv.cmd("USER ALICE") == b"+OK Password required for alice."
    assert conv.cmd("PASS secret").startswith(b"+OK alice has 3 visible messages")


def test_trace_file(mailhost, inetd, tmp_path):
    trace = tmp_path / "trace"
    mailhost.deliver(MAIL)
    conv = inetd("-t", str(trace))
    conv.login()
    conv.cmd("STAT")
    conv.cmd("QUIT")
    conv.close()
    text = trace.read_text()
    assert 'Received: "STAT"' in text
    assert 'Received: "PASS xxxxxxxxx"' in text and "secret" not in text
    assert "[%d] " % conv.process.pid in text


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="a low uid can only be served by root")
def test_low_uid_needs_a(mailhost, inetd):
    # uid 8 (mail on Debian) is at most 10: refused unless -a.
    mailhost.userdb.write_text("lowuser:%s:8:8::/tmp:/bin/sh\n" % hashed("pw"))
    mailhost.deliver(MAIL, user="lowuser")
    os.chown(mailhost.spool("lowuser"), 8, 8)
    conv = inetd()
    assert conv.login("lowuser", "pw") == b"-ERR [AUTH] Access is blocked for UIDs below 10"
    conv2 = inetd("-a")
    assert conv2.login("lowuser", "pw").startswith(b"+OK lowuser has 3 visible messages")


def test_standalone_address_errors(mailhost):
    result = popper("-f", str(mailhost.config), "not-an-ip:110")
    assert result.returncode == 1
    assert "popper: not-an-ip:110: 'not-an-ip' is not an IP address" in result.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = popper("-f", str(mailhost.config), "127.0.0.1:%d" % port)
    assert result.returncode == 1
    assert result.stderr.strip() == "popper: 127.0.0.1:%d in use" % port


def test_standalone_serves_and_stops_on_sigterm_letting_sessions_finish(mailhost, standalone):
    mailhost.deliver(MAIL)
    server = standalone()
    conv = server.connect()
    assert conv.greeting.startswith(b"+OK QPOP")
    conv.login()
    server.process.terminate()
    time.sleep(0.3)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    assert conv.cmd("DELE 1") == b"+OK Message 1 has been deleted."
    assert conv.cmd("QUIT").startswith(b"+OK Pop server at")
    assert server.process.wait(10) == 0
    assert mailhost.spool().read_bytes().count(b"\nX-UIDL: ") == 2


def test_socket_activation(mailhost):
    mailhost.deliver(MAIL)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    # As systemd does it: the socket on fd 3, LISTEN_PID naming the very process.
    activate = ("import os, sys; os.dup2(int(sys.argv[1]), 3); "
                "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
                "os.execvp(sys.argv[2], sys.argv[2:])")
    command = [sys.executable, "-c", activate, str(listener.fileno())] + mailhost.command()
    process = subprocess.Popen(command, pass_fds=[listener.fileno()])
    try:
        listener.close()
        from conftest import Conversation
        conv = Conversation(socket.create_connection(("127.0.0.1", port), timeout=10))
        assert conv.login().startswith(b"+OK alice has 3 visible messages")
        assert conv.cmd("QUIT").startswith(b"+OK")
    finally:
        process.terminate()
        assert process.wait(10) == 0


def test_a_bad_listen_fds_is_refused_without_a_traceback(mailhost):
    activate = ("import os, sys; os.environ.update(LISTEN_PID=str(os.getpid()), "
                "LISTEN_FDS='3x'); os.execvp(sys.argv[1], sys.argv[1:])")
    result = subprocess.run([sys.executable, "-c", activate] + mailhost.command(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr == "popper: LISTEN_FDS: not a number of sockets: '3x'\n"


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="the privilege drop needs root")
def test_serving_process_runs_as_the_user(mailhost, inetd):
    mailhost.deliver(MAIL)
    conv = inetd()
    conv.login()
    ids = process_ids(conv.process.pid)
    assert ids["Uid"] == [str(TEST_UID)] * 4 and ids["Gid"] == [str(TEST_GID)] * 4
    assert "0" not in ids["Groups"]


def test_not_root_cannot_serve_another_uid(mailhost, inetd):
    if IS_ROOT:
        # As root, an entry without uid/gid cannot be served.
        mailhost.userdb.write_text("alice:%s\n" % hashed("secret"))
        expected = b'-ERR [SYS/PERM] popper runs as uid 0 and cannot serve "alice"'
    else:
        mailhost.userdb.write_text("alice:%s:%d:%d\n" % (hashed("secret"), os.getuid() + 1,
                                                         os.getgid()))
        expected = b'-ERR [SYS/PERM] popper runs as uid %d and cannot serve "alice"' % os.getuid()
    mailhost.deliver(MAIL)
    conv = inetd()
    assert conv.login() == expected


def test_free_port_helper_is_free():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
