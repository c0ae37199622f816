"""XTND XMIT (pop_xmit.c): the message read through Session.converse,
un-stuffed, in a file nobody else can see, handed to the mail command as
`send-mail -t -i -oem`; Qpopper's replies; nothing left behind and nothing
sent when the message is too big or the connection ends in the middle.

The mail command is a script recording what it was given, or (marked
clients) msmtp, a real MTA's sendmail, delivering over SMTP to a sink the
test runs on loopback (tests/smtpsink.py), whose delivered message the
test reads back."""

import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import sys

import pytest

from conftest import IS_ROOT, TEST_UID, start_inetd
from test_session import MAIL, login, run

from popper.extensions import xmit
from popper.settings import Settings

pytestmark = pytest.mark.twin

HERE = pathlib.Path(__file__).parent
START = b"+OK Start sending message.\r\n"
SENT = b"+OK Message sent successfully\r\n"
FAILED = b"-ERR Unable to send message\r\n"
MESSAGE = (b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: hello\r\n"
           b"Date: Wed, 2 Dec 2026 15:00:00 +0000\r\nMessage-ID: <x1@example.com>\r\n\r\n"
           b"..a line that started with a dot\r\n.kept as it is\r\nplain\r\n\r\n...\r\n")
UNSTUFFED = (b"From: alice@example.com\nTo: bob@example.com\nSubject: hello\n"
             b"Date: Wed, 2 Dec 2026 15:00:00 +0000\nMessage-ID: <x1@example.com>\n\n"
             b".a line that started with a dot\n.kept as it is\nplain\n\n..\n")


@pytest.fixture
def mailer(tmp_path):
    """A mail command recording its arguments, uid and stdin in tmp_path;
    $XMIT_EXIT (a number or "signal") decides how it ends."""
    script = tmp_path / "sendmail"
    script.write_text('#!/bin/sh\nprintf "%%s\\n" "$@" > %(d)s/argv\nid -u > %(d)s/uid\n'
                      'cat > %(d)s/stdin\n'
                      'case "$XMIT_EXIT" in signal) kill -9 $$;; sleep) exec sleep 60;; esac\n'
                      'exit "${XMIT_EXIT:-0}"\n' % {"d": tmp_path})
    script.chmod(0o755)
    return script


def session_with(make_session, mailer, **options):
    s = Settings()
    s.mail_command = str(mailer)
    for name, value in options.items():
        setattr(s, name, value)
    session, log = make_session(s, mail=MAIL)
    login(session)
    return session, log


def leftovers(session) -> list:
    return [p for p in os.listdir(session.settings.temp_drop_dir) if p.startswith(".xmit")]


def held_files(session) -> list:
    """This process's descriptors on a file without a name in the temporary
    drop's directory (O_TMPFILE's "#inode", or an unlinked .xmit file)."""
    held, directory = [], session.settings.temp_drop_dir.rstrip("/") + "/"
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink("/proc/self/fd/" + fd)
            if link.startswith(directory) and link.endswith(" (deleted)"):
                held.append("/proc/self/fd/" + fd)
        except FileNotFoundError:       # listdir's own
            pass
    return held


def test_the_message_is_unstuffed_and_sent_as_send_mail_t_i_oem(make_session, mailer):
    session, log = session_with(make_session, mailer)
    assert run(session, b"XTND XMIT\r\n") == [START]
    assert leftovers(session) == []             # unlinked as soon as it was made
    held = held_files(session)
    assert len(held) == 1 and os.readlink(held[0]).endswith(" (deleted)")
    info = os.stat(held[0])
    assert (info.st_mode & 0o777, info.st_uid, info.st_nlink) == (0o600, os.geteuid(), 0)
    assert run(session, MESSAGE + b".\r\n") == [SENT]
    out = mailer.parent
    assert (out / "stdin").read_bytes() == UNSTUFFED
    assert (out / "argv").read_text().split() == ["-t", "-i", "-oem"]
    assert int((out / "uid").read_text()) == os.geteuid()
    assert xmit.ARGV == ("send-mail", "-t", "-i", "-oem")      # pop_xmit.c's execl
    assert leftovers(session) == [] and session.continuation is None
    assert held_files(session) == []
    assert 'Pop transmit from "alice" on "client.example"' in log.texts("debug")
    assert run(session, b"NOOP\r\n") == [b"+OK no big woop\r\n"]


def test_pipelined_behind_the_command(make_session, mailer):
    session, _ = session_with(make_session, mailer)
    assert run(session, b"XTND XMIT\r\n" + MESSAGE + b".\r\nNOOP\r\n") == [
        START, SENT, b"+OK no big woop\r\n"]
    assert (mailer.parent / "stdin").read_bytes() == UNSTUFFED


@pytest.mark.parametrize("how,logged", [
    ("1", "exited with status 1"), ("75", "exited with status 75"),
    ("signal", "was killed by signal 9")])
def test_a_failing_mail_command(make_session, mailer, monkeypatch, how, logged):
    monkeypatch.setenv("XMIT_EXIT", how)
    session, log = session_with(make_session, mailer)
    assert run(session, b"XTND XMIT\r\n" + MESSAGE + b".\r\n") == [START, FAILED]
    assert "XTND XMIT by alice: %s %s" % (mailer, logged) in log.texts("notice")
    assert log.texts("notice")[-1].endswith("-ERR Unable to send message")
    assert leftovers(session) == []


def test_a_mail_command_past_its_deadline_is_killed(make_session, mailer, monkeypatch):
    monkeypatch.setenv("XMIT_EXIT", "sleep")
    session, log = session_with(make_session, mailer, xmit_timeout=1)
    assert run(session, b"XTND XMIT\r\n" + MESSAGE + b".\r\n") == [START, FAILED]
    assert "XTND XMIT by alice: %s did not finish in 1 seconds" % mailer in log.texts("notice")
    # The whole process group went: no sleep of ours is left.
    assert subprocess.run(["pgrep", "-f", "^sleep 60$", "-P", str(os.getpid())],
                          stdout=subprocess.DEVNULL).returncode == 1


def test_a_mail_command_that_cannot_run(make_session, tmp_path):
    session, _ = session_with(make_session, tmp_path / "no-sendmail")
    assert run(session, b"XTND XMIT\r\n" + MESSAGE + b".\r\n") == [
        START, b'-ERR Unable to execute "%s": No such file or directory (2)\r\n'
        % str(tmp_path / "no-sendmail").encode()]
    assert leftovers(session) == []


def test_no_temporary_file_no_message(make_session, mailer, tmp_path):
    session, _ = session_with(make_session, mailer)
    session.settings.temp_dir = str(tmp_path / "gone")
    assert run(session, b"XTND XMIT\r\n") == [
        b'-ERR Unable to create temporary message file "%s/.xmitXXXXXX": '
        b'No such file or directory (2)\r\n' % str(tmp_path / "gone").encode()]
    assert run(session, b"NOOP\r\n") == [b"+OK no big woop\r\n"]     # not reading a message


def test_over_the_limit_is_read_to_its_end_and_not_sent(make_session, mailer):
    session, log = session_with(make_session, mailer, xmit_max_size=100)
    big = b"To: bob@example.com\r\n\r\n" + b"x" * 70 + b"\r\n" + b"y" * 70 + b"\r\n.\r\n"
    assert run(session, b"XTND XMIT\r\n" + big + b"NOOP\r\n") == [
        START, b"-ERR Message larger than 100 octets (xmit-max-size); not sent\r\n",
        b"+OK no big woop\r\n"]
    assert not (mailer.parent / "stdin").exists()
    assert leftovers(session) == []


def test_a_line_too_long_is_not_sent(make_session, mailer):
    session, _ = session_with(make_session, mailer)
    assert run(session, b"XTND XMIT\r\n" + b"To: bob\r\n\r\n" + b"z" * 5000 + b"\r\n.\r\n") == [
        START, b"-ERR Message has a line longer than 1023 octets; not sent\r\n"]
    assert not (mailer.parent / "stdin").exists()


@pytest.mark.parametrize("reason", ["eof", "hangup", "timeout"])
def test_a_connection_cut_in_the_middle_sends_nothing(make_session, mailer, reason):
    session, _ = session_with(make_session, mailer)
    assert run(session, b"XTND XMIT\r\nTo: bob@example.com\r\n\r\nhalf a mess") == [START]
    session.end(reason)
    assert session.continuation is None
    assert not (mailer.parent / "stdin").exists()
    assert leftovers(session) == []
    assert held_files(session) == []


def test_arguments_and_states(make_session, mailer):
    session, _ = session_with(make_session, mailer)
    assert run(session, b"XTND XMIT now\r\n") == [
        b"-ERR Too many arguments for the xtnd xmit command.\r\n"]
    fresh, _ = make_session(mail=MAIL)
    assert run(fresh, b"XTND XMIT\r\n") == [b'-ERR Unknown command: "xtnd".\r\n']


# --- through a real MTA's sendmail ---------------------------------------------------------

@pytest.mark.clients
@pytest.mark.skipif(not shutil.which("msmtp"), reason="msmtp is not installed (tests/deps.sh)")
def test_msmtp_delivers_the_message_to_an_smtp_server(make_session, tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    sink = subprocess.Popen([sys.executable, str(HERE / "smtpsink.py"), str(inbox)],
                            stdout=subprocess.PIPE)
    try:
        port = int(sink.stdout.readline())
        home = tmp_path / "home"
        home.mkdir()
        rc = home / ".msmtprc"
        rc.write_text("account default\nhost 127.0.0.1\nport %d\nfrom alice@example.com\n"
                      "auth off\ntls off\n" % port)
        rc.chmod(0o600)
        monkeypatch.setenv("HOME", str(home))
        session, _ = session_with(make_session, shutil.which("msmtp"))
        assert run(session, b"XTND XMIT\r\n" + MESSAGE + b".\r\n") == [START, SENT]
        delivered = inbox / "1.eml"
        assert delivered.read_bytes() == UNSTUFFED.replace(b"\n", b"\r\n")
        assert b"RCPT TO:<bob@example.com>" in (inbox / "1.env").read_bytes()
        # A message over the limit and one cut off send nothing more.
        session.settings.xmit_max_size = 50
        assert run(session, b"XTND XMIT\r\n" + MESSAGE + b".\r\n")[1].startswith(b"-ERR")
        session.settings.xmit_max_size = 10 ** 6
        run(session, b"XTND XMIT\r\n" + MESSAGE)
        session.end("eof")
        assert sorted(p.name for p in inbox.iterdir()) == ["1.eml", "1.env"]
        assert leftovers(session) == []
    finally:
        sink.kill()
        sink.wait()


# --- the real program, started as root: the mail command runs as the user --------------

@pytest.mark.root
@pytest.mark.clients
@pytest.mark.skipif(not IS_ROOT, reason="the session becomes the user only when started as root")
def test_the_mail_command_runs_as_the_user(mailhost):
    out = mailhost.base / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    script = mailhost.base / "sendmail"
    script.write_text('#!/bin/sh\nid -u > %(d)s/uid\nid -G > %(d)s/groups\n'
                      'printf "%%s\\n" "$@" > %(d)s/argv\ncat > %(d)s/stdin\n' % {"d": out})
    script.chmod(0o755)
    mailhost.write_config("set mail-command = %s" % script)
    mailhost.deliver(MAIL)
    conv = start_inetd(mailhost.command())
    try:
        assert conv.login().startswith(b"+OK")
        assert conv.cmd("XTND XMIT") == START.rstrip(b"\r\n")
        conv.send(MESSAGE)
        assert sorted(p for p in os.listdir(str(mailhost.spool_dir))
                      if p.startswith(".xmit")) == []
        assert conv.cmd(".") == SENT.rstrip(b"\r\n")
        assert int((out / "uid").read_text()) == TEST_UID
        assert "0" not in (out / "groups").read_text().split()
        assert (out / "stdin").read_bytes() == UNSTUFFED
        assert (out / "argv").read_text().split() == ["-t", "-i", "-oem"]
        assert conv.cmd("QUIT").startswith(b"+OK")
    finally:
        conv.close()
    assert [p for p in os.listdir(str(mailhost.spool_dir)) if p.startswith(".xmit")] == []


@pytest.mark.root
@pytest.mark.clients
@pytest.mark.skipif(not IS_ROOT, reason="the session becomes the user only when started as root")
@pytest.mark.parametrize("cut", ["eof", "timeout"])
def test_the_real_program_cut_in_the_middle_sends_nothing(mailhost, cut):
    out = mailhost.base / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    script = mailhost.base / "sendmail"
    script.write_text("#!/bin/sh\ncat > %s/stdin\n" % out)
    script.chmod(0o755)
    mailhost.write_config("set mail-command = %s" % script)
    mailhost.deliver(MAIL)
    command = mailhost.command()
    command[command.index("-T") + 1] = "2"
    conv = start_inetd(command)
    try:
        assert conv.login().startswith(b"+OK")
        assert conv.cmd("XTND XMIT") == START.rstrip(b"\r\n")
        conv.send(MESSAGE[:60])
        if cut == "eof":
            conv.sock.shutdown(socket.SHUT_WR)
        else:
            assert conv.line().startswith(b"-ERR POP timeout from ")   # -T 2 passed
        assert conv.process.wait(30) is not None
    finally:
        conv.close()
    assert not (out / "stdin").exists()
    assert [p for p in os.listdir(str(mailhost.spool_dir)) if p.startswith(".xmit")] == []


# --- the temporary file: no name, or none left ------------------------------------------

def test_the_file_never_has_a_name_where_o_tmpfile_works(make_session, mailer, monkeypatch):
    session, _ = session_with(make_session, mailer)
    try:
        os.close(os.open(session.settings.temp_drop_dir, xmit.TMPFILE | os.O_RDWR, 0o600))
    except (OSError, ValueError):
        pytest.skip("no O_TMPFILE here")
    monkeypatch.setattr(tempfile, "mkstemp", lambda **kw: pytest.fail("a name was made"))
    assert run(session, b"XTND XMIT\r\n") == [START]
    held = held_files(session)
    assert len(held) == 1 and "/#" in os.readlink(held[0])     # O_TMPFILE's
    assert run(session, MESSAGE + b".\r\n") == [SENT]
    assert (mailer.parent / "stdin").read_bytes() == UNSTUFFED


def stale_files(directory: pathlib.Path, elsewhere: pathlib.Path) -> dict:
    """What a kill -9 between mkstemp and unlink leaves, and names like it
    that are not that; name: True if _remove_stale may remove it."""
    (directory / ".xmitab_12xyz").write_bytes(b"a half-sent message")
    (elsewhere / "target").write_bytes(b"not ours to remove")
    os.symlink(str(elsewhere / "target"), str(directory / ".xmitsymlink1"))
    (directory / ".xmithardlnk1").write_bytes(b"linked")
    os.link(str(directory / ".xmithardlnk1"), str(elsewhere / "hard"))
    (directory / ".xmit-notes").write_bytes(b"not mkstemp's name")
    os.mkdir(str(directory / ".xmitadirname"))
    names = {".xmitab_12xyz": True, ".xmitsymlink1": False, ".xmithardlnk1": False,
             ".xmit-notes": False, ".xmitadirname": False}
    if IS_ROOT:
        (directory / ".xmitotheruid").write_bytes(b"another user's")
        os.chown(str(directory / ".xmitotheruid"), TEST_UID, -1)
        names[".xmitotheruid"] = False
    return names


@pytest.mark.parametrize("refusal", ["none", "EOPNOTSUPP"])
def test_without_o_tmpfile_the_next_xmit_removes_what_a_kill_left(
        make_session, mailer, monkeypatch, tmp_path, refusal):
    import errno
    if refusal == "none":
        monkeypatch.setattr(xmit, "TMPFILE", 0)
    else:
        real_open = os.open

        def refusing_open(path, flags, *args):
            if xmit.TMPFILE and flags & xmit.TMPFILE == xmit.TMPFILE:
                raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
            return real_open(path, flags, *args)
        monkeypatch.setattr(xmit.os, "open", refusing_open)
    session, _ = session_with(make_session, mailer)
    directory, elsewhere = pathlib.Path(session.settings.temp_drop_dir), tmp_path / "elsewhere"
    elsewhere.mkdir()
    names = stale_files(directory, elsewhere)
    assert run(session, b"XTND XMIT\r\n") == [START]
    assert sorted(leftovers(session)) == sorted(n for n, removable in names.items()
                                                if not removable)
    assert (elsewhere / "target").read_bytes() == b"not ours to remove"
    held = held_files(session)
    assert len(held) == 1 and "/.xmit" in os.readlink(held[0])  # mkstemp's, unlinked
    assert run(session, MESSAGE + b".\r\n") == [SENT]
    assert (mailer.parent / "stdin").read_bytes() == UNSTUFFED


def test_a_name_another_session_removed_first_is_no_error(make_session, mailer, monkeypatch):
    # Two sessions of one user: the other one's _remove_stale may take the
    # name between this one's mkstemp and its unlink.
    monkeypatch.setattr(xmit, "TMPFILE", 0)
    real_mkstemp = tempfile.mkstemp

    def raced(**kw):
        fd, path = real_mkstemp(**kw)
        os.unlink(path)
        return fd, path
    monkeypatch.setattr(tempfile, "mkstemp", raced)
    session, _ = session_with(make_session, mailer)
    assert run(session, b"XTND XMIT\r\n" + MESSAGE + b".\r\n") == [START, SENT]


@pytest.mark.parametrize("present,chosen", [
    ((), "/usr/lib/sendmail"),
    (("/usr/lib/sendmail", "/usr/sbin/sendmail"), "/usr/lib/sendmail"),
    (("/usr/sbin/sendmail",), "/usr/sbin/sendmail"),     # Debian: only the FHS path
])
def test_the_default_mail_command_is_the_manual_pages(monkeypatch, present, chosen):
    # popper-sco-manpage.txt: "XTND XMIT: Sends a mail message using
    # /usr/lib/sendmail"; /usr/sbin/sendmail only where the build host lacks it.
    sys.path.insert(0, str(HERE.parent))
    try:
        import configure
    finally:
        sys.path.remove(str(HERE.parent))
    monkeypatch.setattr(configure.os, "access", lambda path, mode: path in present)
    assert configure.probe_sendmail(lambda line: None) == chosen
