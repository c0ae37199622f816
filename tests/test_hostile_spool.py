"""The spool is the user's or it is refused: another local user's files
through a spool name (issue 8, findings 1-3), and account names that are
not file names (finding 9).

As root, with two real uids -- the victim (4242, TEST_UID) and the attacker
(4243) -- in the two kinds of spool directory popper meets: 1777 root:mail
(old systems: anybody may create a file there) and 2775 root:mail (Debian:
the mail group may).  For each attack: the login (or QUIT) gets
-ERR [SYS/PERM], a LOG_ALERT line names the file, and the file is as it
was -- content, mode, owner, links -- with no lock, journal or mail in a
temp drop left behind; the victim's mail is intact and served once the
administrator has removed the foreign name.
"""

import errno
import grp
import os
import stat
import syslog as syslog_module

import pytest

from conftest import IS_ROOT, TEST_GID, TEST_UID, can_unshare, hashed, start_inetd
from popper.maildrop import MaildropError, files
from popper.protocol import replies as R

pytestmark = [pytest.mark.root, pytest.mark.clients,
              pytest.mark.skipif(not IS_ROOT or not can_unshare(),
                                 reason="needs root (two uids, a private mount namespace)")]

VICTIM, ATTACKER = "victim", "mallory"
PASSWORDS = {VICTIM: "victim-pw", ATTACKER: "mallory-pw"}
ATTACKER_UID = ATTACKER_GID = TEST_UID + 1
REFUSED = b"-ERR " + R.SPOOL_NOT_YOURS.split("{")[0].encode()   # "-ERR [SYS/PERM] Mail spool "


def wrap(syslog, command: list) -> list:
    """syslog.wrap(command), with the private /dev open to all: the refusal
    is popper's first log line, sent once it is the user (conftest's /dev
    is mktemp's 0700 directory, which the user cannot reach /dev/log in)."""
    wrapped = syslog.wrap(command)
    script = wrapped.index("-c") + 1
    assert wrapped[script].startswith("d=$(mktemp -d) && ")
    wrapped[script] = wrapped[script].replace("d=$(mktemp -d) && ",
                                              'd=$(mktemp -d) && chmod 755 "$d" && ', 1)
    return wrapped


def mbox(*subjects: str) -> bytes:
    return b"".join(b"From sender@example.org Thu Nov 26 14:34:16 2026\nSubject: %s\n\n"
                    b"the body of %s\n\n" % (s.encode(), s.encode()) for s in subjects)


def state(path) -> tuple:
    """What the attack must not change: content, type and mode, owner,
    links, inode, modification time."""
    st = os.lstat(str(path))
    with open(str(path), "rb") as f:
        data = f.read()
    return data, st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_ino, st.st_mtime_ns


class Host:
    """The mail host with the two users, its spool directory of one kind,
    and popper's syslog captured."""

    def __init__(self, mailhost, syslog, kind: str):
        try:
            self.mail_gid = grp.getgrnam("mail").gr_gid
        except KeyError:
            pytest.skip("no group mail")
        self.mailhost, self.syslog, self.kind = mailhost, syslog, kind
        self.dir = mailhost.spool_dir
        os.chown(str(self.dir), 0, self.mail_gid)
        os.chmod(str(self.dir), 0o1777 if kind == "1777" else 0o2775)
        mailhost.userdb.write_text(
            "%s:%s:%d:%d::%s:/bin/sh\n" % (VICTIM, hashed(PASSWORDS[VICTIM]), TEST_UID,
                                           TEST_GID, mailhost.base)
            + "%s:%s:%d:%d::%s:/bin/sh\n" % (ATTACKER, hashed(PASSWORDS[ATTACKER]),
                                             ATTACKER_UID, ATTACKER_GID, mailhost.base))

    def spool(self, user: str = VICTIM):
        return self.dir / user

    def deliver(self, data: bytes, user: str = VICTIM) -> None:
        """The user's spool as a delivery agent with group mail leaves it:
        0660 user:mail (which popper, with group mail too, can open)."""
        path = self.spool(user)
        path.write_bytes(data)
        os.chown(str(path), TEST_UID if user == VICTIM else ATTACKER_UID, self.mail_gid)
        os.chmod(str(path), 0o660)

    def start(self, *args):
        return start_inetd(wrap(self.syslog, self.mailhost.command(*args)))

    def login(self, user: str, *args):
        """A new session: (conversation, the PASS reply)."""
        conv = self.start(*args)
        assert conv.cmd("USER " + user).startswith(b"+OK")
        return conv, conv.cmd("PASS " + PASSWORDS[user])

    def refused(self, user: str, *args) -> bytes:
        conv, reply = self.login(user, *args)
        conv.close()
        assert reply.startswith(REFUSED), reply
        return reply

    def alerts(self) -> list:
        return [text for _, priority, text in self.syslog.collect(0.05)
                if priority == syslog_module.LOG_ALERT]

    def assert_alert(self, path, *words: str) -> None:
        lines = [line for line in self.alerts() if str(path) in line]
        assert lines, "no LOG_ALERT line names %s: %r" % (path, self.syslog.records)
        for word in words:
            assert word in lines[-1], (word, lines[-1])

    def assert_untouched(self, *users: str) -> None:
        """No lock, no journal, no mail in a temp drop of these users."""
        names = set(os.listdir(str(self.dir)))
        assert not [n for n in names if n.endswith(".lock") or ".lock." in n], names
        for user in users:
            assert ".%s.pop.journal" % user not in names, names
            temp = self.dir / (".%s.pop" % user)
            assert not temp.exists() or temp.stat().st_size == 0

    def check_served(self, user: str, count: int, subjects=(), *args) -> None:
        """user logs in and is served count messages (the first ones' subjects)."""
        conv, reply = self.login(user, *args)
        assert reply.startswith(b"+OK %s has %d visible message" % (user.encode(), count)), reply
        for n, subject in enumerate(subjects, 1):
            assert conv.cmd("RETR %d" % n).startswith(b"+OK")
            assert b"Subject: " + subject.encode() in conv.multiline()
        assert conv.cmd("QUIT").startswith(b"+OK")
        conv.close()


@pytest.fixture(params=["1777", "2775"])
def host(request, mailhost, syslog):
    return Host(mailhost, syslog, request.param)


# --- finding 1: another user's spool through a hard link --------------------------

@pytest.mark.parametrize("mode", [[], ["-S"]], ids=["normal", "server"])
def test_a_hard_link_to_another_users_spool_is_refused(host, mode):
    host.deliver(mbox("one", "two"))
    os.link(str(host.spool(VICTIM)), str(host.spool(ATTACKER)))
    before = state(host.spool(VICTIM))
    reply = host.refused(ATTACKER, *mode)
    assert b"owned by uid %d" % TEST_UID in reply and b"2 links" in reply
    assert state(host.spool(VICTIM)) == before
    host.assert_untouched(VICTIM, ATTACKER)
    host.assert_alert(host.spool(ATTACKER), "owner uid %d" % TEST_UID, "2 links",
                      "mode %04o" % stat.S_IMODE(before[1]))
    # Its owner is refused too while the other name is there (the alert
    # says so); once the administrator has removed it, the mail is served.
    host.refused(VICTIM, *mode)
    assert state(host.spool(VICTIM)) == before
    os.unlink(str(host.spool(ATTACKER)))
    host.check_served(VICTIM, 2, ["one", "two"], *mode)


# --- finding 2: a spool planted by another user --------------------------------------

def plant(host, user: str = VICTIM):
    """The attacker's file, open to all, under the user's spool name."""
    path = host.spool(user)
    path.write_bytes(mbox("forged"))
    os.chown(str(path), ATTACKER_UID, ATTACKER_GID)
    os.chmod(str(path), 0o666)
    return path


def test_a_spool_planted_by_another_user_is_refused_at_login(host):
    planted = plant(host)
    before = state(planted)
    reply = host.refused(VICTIM)
    assert b"owned by uid %d" % ATTACKER_UID in reply and b"writable by others" in reply
    assert state(planted) == before
    host.assert_untouched(VICTIM)
    host.assert_alert(planted, "owner uid %d" % ATTACKER_UID, "mode 0666", "1 links")
    os.unlink(str(planted))
    host.check_served(VICTIM, 0)
    assert not planted.exists()         # nothing was kept: popper made no spool


def test_a_spool_planted_during_the_session_is_refused_at_quit(host):
    # The victim has no spool, and mail an earlier session left in the temp drop.
    temp = host.dir / (".%s.pop" % VICTIM)
    temp.write_bytes(mbox("one", "two"))
    os.chown(str(temp), TEST_UID, TEST_GID)
    os.chmod(str(temp), 0o600)
    conv, reply = host.login(VICTIM)
    assert reply.startswith(b"+OK victim has 2 visible messages"), reply
    planted = plant(host)
    before, temp_before = state(planted), state(temp)
    assert conv.cmd("DELE 1").startswith(b"+OK")
    assert conv.cmd("QUIT").startswith(REFUSED)
    conv.close()
    assert state(planted) == before
    assert state(temp)[0] == temp_before[0]       # the mail is still there, all of it
    host.assert_alert(planted, "owner uid %d" % ATTACKER_UID)
    os.unlink(str(planted))
    host.check_served(VICTIM, 2, ["one", "two"])
    # The spool popper made at that QUIT is the victim's, and closed to others.
    st = os.lstat(str(host.spool(VICTIM)))
    assert (st.st_uid, st.st_nlink) == (TEST_UID, 1)
    if host.kind == "2775":
        assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (host.mail_gid, 0o660)
    else:
        assert stat.S_IMODE(st.st_mode) == 0o600
    assert host.spool(VICTIM).read_bytes().count(b"\nSubject: ") == 2


def test_a_spool_planted_beside_a_journal_is_refused_before_recovery(host):
    # An earlier login's journal: the temp drop holds all the mail and the
    # spool is gone; the login that finishes it creates the spool.
    temp = host.dir / (".%s.pop" % VICTIM)
    journal = host.dir / (".%s.pop.journal" % VICTIM)
    temp.write_bytes(mbox("one", "two"))
    journal.write_text("popper-journal 1 settled t=%d s=0 fp=-\n" % temp.stat().st_size)
    for path in (temp, journal):
        os.chown(str(path), TEST_UID, TEST_GID)
        os.chmod(str(path), 0o600)
    planted = plant(host)
    before = [state(p) for p in (planted, temp, journal)]
    host.refused(VICTIM)
    assert [state(p) for p in (planted, temp, journal)] == before
    assert not [n for n in os.listdir(str(host.dir)) if ".lock" in n]
    host.assert_alert(planted, "owner uid %d" % ATTACKER_UID)
    os.unlink(str(planted))
    host.check_served(VICTIM, 2, ["one", "two"])
    assert os.lstat(str(host.spool(VICTIM))).st_uid == TEST_UID


def test_a_login_without_a_spool_creates_nothing_foreign(host):
    host.check_served(VICTIM, 0)
    assert {os.lstat(str(host.dir / n)).st_uid for n in os.listdir(str(host.dir))} <= {TEST_UID}
    assert not host.spool(VICTIM).exists()


def test_a_spool_made_meanwhile_is_checked_not_adopted(tmp_path, monkeypatch):
    """Between popper's open (no spool) and its O_EXCL create, another user
    makes the spool: popper opens that one again and refuses it."""
    path = str(tmp_path / VICTIM)
    real_open = os.open

    def racing_open(name, flags, *mode):
        if name == path and flags & os.O_EXCL:
            fd = real_open(path, os.O_WRONLY | os.O_CREAT, 0o666)
            os.write(fd, mbox("forged"))
            os.close(fd)
            os.chown(path, ATTACKER_UID, ATTACKER_GID)
        return real_open(name, flags, *mode)
    alerts = []
    log = type("Log", (), {"alert": lambda self, text: alerts.append(text)})()
    monkeypatch.setattr(os, "open", racing_open)
    with pytest.raises(MaildropError) as caught:
        files.open_spool(path, log, create=True)
    monkeypatch.undo()
    assert caught.value.args[0].startswith(REFUSED[5:].decode())
    assert os.stat(path).st_uid == ATTACKER_UID and open(path, "rb").read() == mbox("forged")
    assert alerts and path in alerts[0]


def test_a_spool_writable_by_others_is_refused_even_to_its_owner(host):
    host.deliver(mbox("one"))
    os.chmod(str(host.spool(VICTIM)), 0o662)
    before = state(host.spool(VICTIM))
    assert b"writable by others" in host.refused(VICTIM)
    assert state(host.spool(VICTIM)) == before
    os.chmod(str(host.spool(VICTIM)), 0o660)           # group-writable is the mail group's
    host.check_served(VICTIM, 1, ["one"])


def test_a_symbolic_link_is_refused(host):
    host.deliver(mbox("one", "two"))
    os.symlink(str(host.spool(VICTIM)), str(host.spool(ATTACKER)))
    before = state(host.spool(VICTIM))
    assert b"symbolic link" in host.refused(ATTACKER)
    assert state(host.spool(VICTIM)) == before
    host.assert_alert(host.spool(ATTACKER), "owner uid 0")      # the link's own owner
    host.check_served(VICTIM, 2, ["one", "two"])


# --- finding 3: a root-owned file through a spool name -------------------------------

@pytest.mark.parametrize("mode", [[], ["-S"]], ids=["normal", "server"])
def test_a_root_file_linked_as_a_spool_is_refused(host, mode):
    target = host.mailhost.base / "root-file"       # root's, open to the mail group
    target.write_bytes(mbox("root's own"))
    os.chown(str(target), 0, host.mail_gid)
    os.chmod(str(target), 0o660)
    os.link(str(target), str(host.spool(ATTACKER)))
    before = state(target)
    assert b"owned by uid 0" in host.refused(ATTACKER, *mode)
    assert state(target) == before
    host.assert_untouched(ATTACKER)
    host.assert_alert(host.spool(ATTACKER), "owner uid 0", "mode 0660", "2 links")
    os.unlink(str(host.spool(ATTACKER)))
    host.check_served(ATTACKER, 0, (), *mode)
    assert state(target)[:1] == before[:1]


# --- finding 9: account names that are not file names --------------------------------

def tree(base) -> dict:
    out = {}
    for root, dirs, names in os.walk(str(base)):
        for name in dirs + names:
            path = os.path.join(root, name)
            st = os.lstat(path)
            out[path] = (st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("name", ["..", "x/../../tmp/y"])
def test_an_account_name_that_is_a_path_gets_err_and_touches_nothing(mailhost, syslog, name):
    base = mailhost.base
    for d in (base / "tmp", mailhost.spool_dir / "x", mailhost.spool_dir / ".x"):
        d.mkdir()                       # so that the name's path would lead somewhere
        os.chmod(str(d), 0o1777)
    (base / "tmp" / "y").write_bytes(mbox("not a spool"))
    os.chown(str(base / "tmp" / "y"), TEST_UID, TEST_GID)
    mailhost.userdb.write_text("%s:%s:%d:%d::%s:/bin/sh\n"
                               % (name, hashed("pw"), TEST_UID, TEST_GID, base))
    syslog.collect(0.05)
    before = tree(base)
    conv = start_inetd(wrap(syslog, mailhost.command()))
    replies = [conv.cmd("USER " + name)]
    if replies[0].startswith(b"+OK"):
        replies.append(conv.cmd("PASS pw"))
    assert replies[-1].startswith(b"-ERR"), replies
    try:
        replies.append(conv.cmd("QUIT"))             # the session goes on, or has ended
    except (EOFError, ConnectionResetError):
        pass
    conv.close()
    assert not any(b"Traceback" in r or b'File "' in r for r in replies), replies
    syslog.collect(0.05)
    after = tree(base)
    after.pop(syslog.path, None)
    before.pop(syslog.path, None)
    assert after == before


# --- the one check, in itself ---------------------------------------------------------

def test_the_check_is_made_on_the_open_file():
    """spool_checked() looks at what the fd is open on, not at the name."""
    r, w = os.pipe()
    alerts = []
    log = type("Log", (), {"alert": lambda self, text: alerts.append(text)})()
    with pytest.raises(MaildropError) as caught:
        files.spool_checked(r, "/nonexistent/spool", log)
    os.close(w)
    assert "not a regular file" in caught.value.args[0]
    with pytest.raises(OSError) as closed:
        os.fstat(r)                     # closed by the refusal
    assert closed.value.errno == errno.EBADF
