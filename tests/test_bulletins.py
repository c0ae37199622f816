"""Bulletins (-b, set bulldir, --enable-bulletins): the SCO manual page's
BULLETINS section and Qpopper 4.0.x's pop_bull.c (qpopper-behaviour.md 7).

In-process first (the maildrop opened on a temporary spool, as the
session opens it), then the real program with real clients (poplib,
fetchmail) in both modes, hostile bulletins and a hostile ~/.popbull, and
kill -9 at every write of a login that appends a bulletin (strace).
"""

import os
import pathlib
import pickle
import poplib
import re
import shutil
import struct
import subprocess
import time
import traceback

import pytest

from conftest import (IS_ROOT, TEST_GID, TEST_UID, USERS, RecordingLog, hashed,
                      start_inetd)
from helpers import FAULTS_FULL, fault_subset
from popper import bulletins
from popper.auth import Account
from popper.bulletins import Bulletins, Skipped
from popper.maildrop import journal, open_maildrop
from popper.settings import Settings

FROM = b"From admin@example.org Thu Nov 26 14:34:16 2026\n"
MODES = {"normal": [], "server": ["-S"]}


def bulletin(number: int, extra: bytes = b"") -> bytes:
    return (FROM + b"To: all-users\n" + extra + b"Subject: bulletin %d\n\nnews number %d\n"
            % (number, number))


def mail(*subjects: str) -> bytes:
    return b"".join(b"From sender@example.org Thu Nov 26 10:00:00 2026\nSubject: %s\n\n"
                    b"the body of %s\n\n" % (s.encode(), s.encode()) for s in subjects)


def subjects(data: bytes) -> list:
    return [s.decode() for s in re.findall(rb"^Subject: ([^\r\n]*)", data, re.MULTILINE)]


class Site:
    """A spool directory, a bulletin directory and a home for each user."""

    def __init__(self, base: pathlib.Path):
        self.base = base
        base.mkdir(exist_ok=True)
        self.spool_dir = base / "spool"
        self.bulldir = base / "bulls"
        for d in (self.spool_dir, self.bulldir):
            d.mkdir(exist_ok=True)
        os.chmod(str(base), 0o755)
        os.chmod(str(self.spool_dir), 0o1777)
        os.chmod(str(self.bulldir), 0o755)
        for user in USERS:
            self.home(user).mkdir(parents=True, exist_ok=True)
            os.chown(str(self.home(user)), TEST_UID, TEST_GID)

    def home(self, user: str) -> pathlib.Path:
        return self.base / "home" / user

    def popbull(self, user: str = "alice") -> pathlib.Path:
        return self.home(user) / ".popbull"

    def post(self, number: int, name: str = None, data: bytes = None, mode: int = 0o644):
        path = self.bulldir / (name or "%d.news" % number)
        path.write_bytes(bulletin(number) if data is None else data)
        os.chmod(str(path), mode)
        return path

    def deliver(self, data: bytes, user: str = "alice") -> None:
        path = self.spool_dir / user
        with open(str(path), "ab") as f:
            f.write(data)
        os.chown(str(path), TEST_UID, TEST_GID)
        os.chmod(str(path), 0o600)

    def spool(self, user: str = "alice") -> bytes:
        path = self.spool_dir / user
        return path.read_bytes() if path.exists() else b""


@pytest.fixture
def site(mailhost):
    return Site(mailhost.base / "site")


# --- in-process --------------------------------------------------------------------

def settings_for(site: Site, server_mode=False, **values) -> Settings:
    s = Settings()
    s.spool_dir, s.bulldir, s.server_mode = str(site.spool_dir), str(site.bulldir), server_mode
    for name, value in values.items():
        setattr(s, name, value)
    return s


def session(site: Site, settings: Settings, user: str = "alice", delete=()) -> list:
    """Open the maildrop as a login does (as the test user when root), read
    every message, delete some, QUIT; the messages' bytes and the log."""
    log = RecordingLog()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                      # pragma: no cover (child)
        code = 1
        try:
            os.close(read)
            if IS_ROOT:
                os.setgroups([])
                os.setresgid(TEST_GID, TEST_GID, TEST_GID)
                os.setresuid(TEST_UID, TEST_UID, TEST_UID)
            account = Account(user, TEST_UID, TEST_GID, str(site.home(user)))
            drop = open_maildrop(settings, user, log,
                                 Bulletins(settings, account, "pop.example.org", log))
            got = [b"".join(drop.message_chunks(m)) for m in drop.messages]
            n = len(got)
            drop.update(bytearray(i in delete for i in range(n)), bytearray(n))
            drop.close()
            os.write(write, pickle.dumps((got, log.texts())))
            code = 0
        except BaseException:  # noqa: B902 (reported, then the child exits)
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write)
    data = b""
    while True:
        piece = os.read(read, 65536)
        if not piece:
            break
        data += piece
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert status == 0, "the session failed"
    return pickle.loads(data)


@pytest.mark.parametrize("server_mode", [False, True], ids=["normal", "server"])
def test_a_new_user_gets_the_newest_bulletin_then_each_new_one_once(site, server_mode):
    for n in (1, 2, 3):
        site.post(n)
    site.deliver(mail("old mail"))
    s = settings_for(site, server_mode)
    got, _ = session(site, s)
    assert [subjects(m) for m in got] == [["old mail"], ["bulletin 3"]]
    assert site.popbull().read_bytes() == b"3\n"
    st = os.stat(str(site.popbull()))
    assert (st.st_uid, st.st_mode & 0o777) == (TEST_UID, 0o600)
    got, _ = session(site, s)
    assert len(got) == 2                               # nothing new
    site.post(4)
    got, _ = session(site, s)
    assert [subjects(m) for m in got] == [["old mail"], ["bulletin 3"], ["bulletin 4"]]
    assert subjects(site.spool()) == ["old mail", "bulletin 3", "bulletin 4"]
    assert site.popbull().read_bytes() == b"4\n"
    assert not list(site.spool_dir.glob(".alice.pop*"))


def test_the_bulletin_as_it_is_delivered(site):
    """The From line kept, X-UIDL: <time>.<nnn> after it, every To: line
    replaced (its continuation kept, Qpopper's quirk), X-UIDL: and
    Status: lines dropped, a blank line after the body."""
    site.post(7, data=FROM + b"To: somebody\n  continued\nX-UIDL: theirs\nStatus: RO\n"
              b"status: O\nCc: x@example.org\nSubject: hi\n\nbody line\nno newline")
    s = settings_for(site)
    before = int(time.time())
    session(site, s)
    spool = site.spool()
    uid = re.search(rb"^X-UIDL: ([0-9]+)\.000\n", spool, re.MULTILINE)
    assert uid and before <= int(uid.group(1)) <= time.time()
    assert spool == (FROM + b"X-UIDL: %s.000\nTo: alice@pop.example.org\n  continued\n"
                     b"Cc: x@example.org\nSubject: hi\nStatus: U\n\nbody line\nno newline\n\n"
                     % uid.group(1))


def test_max_bulletins_seeds_a_new_user_by_number(site):
    for n in (1, 2, 3, 4, 6):
        site.post(n)
    got, _ = session(site, settings_for(site, max_bulletins=3))
    assert [subjects(m) for m in got] == [["bulletin 4"], ["bulletin 6"]]   # above 6 - 3


def test_names_and_numbers(site):
    site.post(0, "00012.new_printer", bulletin(12))
    site.post(0, "3", bulletin(3))
    site.post(0, "README", bulletin(99))
    site.post(0, ".5.hidden", bulletin(5))
    assert [b[:] for b in bulletins.listing(str(site.bulldir))] == [
        (3, "3"), (12, "00012.new_printer")]
    site.popbull().write_bytes(b"0\n")
    os.chown(str(site.popbull()), TEST_UID, TEST_GID)
    got, _ = session(site, settings_for(site))
    assert [subjects(m) for m in got] == [["bulletin 3"], ["bulletin 12"]]
    assert site.popbull().read_bytes() == b"12\n"


@pytest.mark.parametrize("content,delivered,record", [
    (b"", [], b"3\n"),                  # empty: "assuming all bulletins sent"
    (b"junk\n", ["bulletin 3"], b"3\n"),   # not a number: as if missing, rewritten
    (b"1 and more\n", ["bulletin 2", "bulletin 3"], b"3\n"),
])
def test_what_popbull_says(site, content, delivered, record):
    for n in (1, 2, 3):
        site.post(n)
    site.popbull().write_bytes(content)
    os.chown(str(site.popbull()), TEST_UID, TEST_GID)
    got, _ = session(site, settings_for(site))
    assert [s for m in got for s in subjects(m)] == delivered
    assert site.popbull().read_bytes() == record


def test_a_bad_bulletin_is_skipped_and_logged_and_the_others_come(site):
    """A deviation from Qpopper, where one bulletin without a From line
    stops every bulletin after it, for everybody, at every login."""
    site.post(1, data=b"Subject: no From line\n\nbody\n")
    site.post(2, mode=0o600)                           # not readable by everybody
    (site.bulldir / "3.a-directory").mkdir()
    os.mkfifo(str(site.bulldir / "4.a-fifo"))
    os.chmod(str(site.bulldir / "4.a-fifo"), 0o644)
    site.post(5)
    site.popbull().write_bytes(b"0\n")
    os.chown(str(site.popbull()), TEST_UID, TEST_GID)
    got, log = session(site, settings_for(site))
    assert [subjects(m) for m in got] == [["bulletin 5"]]
    assert site.popbull().read_bytes() == b"5\n"
    text = "\n".join(log)
    assert 'Bulletin 1.news skipped for alice: it does not start with a valid "From "' in text
    assert ("2.news skipped for alice: Unable to open bulletin file: Permission denied (13)"
            if IS_ROOT else "2.news skipped for alice: not readable by everybody") in text
    assert "3.a-directory skipped for alice: not a regular file" in text
    assert "4.a-fifo skipped for alice: not a regular file" in text
    got, log = session(site, settings_for(site))          # not tried again
    assert len(got) == 1 and "skipped" not in "\n".join(log)


def test_a_missing_bulletin_directory_is_logged_and_the_login_goes_on(site):
    shutil.rmtree(str(site.bulldir))
    site.deliver(mail("old mail"))
    got, log = session(site, settings_for(site))
    assert len(got) == 1
    assert any("Unable to open bulletin directory '%s': No such file or directory (2)"
               % site.bulldir in line for line in log)


@pytest.mark.skipif(not IS_ROOT, reason="needs root: a group to be in")
def test_group_bulletins(site):
    import grp
    mail_group = grp.getgrnam("mail")
    site.post(1, "1.ALL.for-everybody")
    site.post(2, "2.mail.for-the-mail-group")
    site.post(3, "3.no-such-group-here.nobody")
    site.post(4, "4")
    site.popbull().write_bytes(b"0\n")
    os.chown(str(site.popbull()), TEST_UID, TEST_GID)
    s = settings_for(site, group_bulletins=True)
    got, log = session(site, s)
    assert [subjects(m) for m in got] == [["bulletin 1"], ["bulletin 4"]]
    assert any('Non-existent group "no-such-group-here" in bulletin; bulletin omitted: '
               '3.no-such-group-here.nobody' in line for line in log)
    assert any("Can't find '.' in bulletin name; delivering to all users: 4" in line
               for line in log)
    assert mail_group.gr_gid != TEST_GID


def test_a_failed_record_takes_the_bulletins_out_again(site):
    """.popbull cannot be written (its directory is gone): nothing is
    delivered, so that the bulletin comes once, when it can be recorded."""
    site.post(1)
    site.deliver(mail("old mail"))
    shutil.rmtree(str(site.home("alice")))
    for server_mode in (False, True):
        got, log = session(site, settings_for(site, server_mode))
        assert [subjects(m) for m in got] == [["old mail"]]
        assert any("Unable to write to" in line for line in log)
        assert subjects(site.spool()) == ["old mail"]


@pytest.mark.parametrize("server_mode", [False, True], ids=["normal", "server"])
def test_a_journal_naming_bulletins_has_them_recorded_first(site, server_mode):
    """A crash after the bulletins were in the mail but before .popbull
    said so: the journal's bulletin number is recorded, nothing is
    delivered twice."""
    site.post(1)
    site.post(2)
    site.popbull().write_bytes(b"1\n")
    os.chown(str(site.popbull()), TEST_UID, TEST_GID)
    held = bulletin(2).replace(b"Subject", b"X-UIDL: 1700000000.000\nSubject") + b"\n"
    temp = site.spool_dir / ".alice.pop"
    if server_mode:                     # appended to the spool, staged in the temp drop
        site.deliver(mail("old mail"))
        start = len(site.spool())
        site.deliver(held)
        temp.write_bytes(held)
        from popper.maildrop import files
        fd = os.open(str(site.spool_dir / "alice"), os.O_RDONLY)
        record = journal.Append(start, files.fingerprint(fd, start), len(held), 2)
        os.close(fd)
    else:                               # appended after the mail in the temp drop
        temp.write_bytes(mail("old mail") + held)
        record = journal.Settled(len(temp.read_bytes()), 0, None, bull=2)
    os.chown(str(temp), TEST_UID, TEST_GID)
    os.chmod(str(temp), 0o600)
    path = str(temp) + ".journal"
    with open(path, "w") as f:
        f.write("%s %s\n" % (journal.MAGIC, record.line()))
    os.chown(path, TEST_UID, TEST_GID)
    os.chmod(path, 0o600)
    got, _ = session(site, settings_for(site, server_mode))
    assert [subjects(m) for m in got] == [["old mail"], ["bulletin 2"]]
    assert site.popbull().read_bytes() == b"2\n"
    assert subjects(site.spool()) == ["old mail", "bulletin 2"]


def test_render_refuses_what_is_not_a_message():
    with pytest.raises(Skipped):
        bulletins.render(b"", b"1.000", b"a@b")
    with pytest.raises(Skipped):
        bulletins.render(b"From nobody\n\nbody\n", b"1.000", b"a@b")


# --- the real program, real clients --------------------------------------------------

class Host:
    """popper on a TCP inetd over the Site, the users with their homes;
    start(*args) is the inetd (conftest's tcp_inetd, or tree_inetd)."""

    def __init__(self, mailhost, site: Site, start, *args):
        mailhost.userdb.write_text("".join(
            "%s:%s:%d:%d::%s:/bin/sh\n" % (name, hashed(pw), TEST_UID, TEST_GID,
                                           site.home(name))
            for name, pw in USERS.items()))
        mailhost.write_config("set spool-dir = %s" % site.spool_dir)
        self.trace = site.base / "trace"
        self.server = start("-b", str(site.bulldir), "-t", str(self.trace), *args)

    def pop(self, user: str) -> poplib.POP3:
        client = poplib.POP3("127.0.0.1", self.server.port, timeout=30)
        client.user(user)
        assert client.pass_(USERS[user]).startswith(b"+OK ")
        return client

    def fetch_all(self, user: str, delete=False) -> list:
        client = self.pop(user)
        count = client.stat()[0]
        got = [b"\n".join(client.retr(n)[1]) for n in range(1, count + 1)]
        if delete:
            for n in range(1, count + 1):
                client.dele(n)
        client.quit()
        return got


@pytest.mark.clients
@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_bulletin_reaches_every_user_exactly_once(mailhost, tcp_inetd, tmp_path, mode):
    site = Site(mailhost.base / "site")
    host = Host(mailhost, site, tcp_inetd, *MODES[mode])
    site.post(1)
    site.post(2)
    site.deliver(mail("for alice"), "alice")
    first = {user: host.fetch_all(user) for user in USERS}
    assert [subjects(m) for m in first["alice"]] == [["for alice"], ["bulletin 2"]]
    assert [subjects(m) for m in first["bob"]] == [["bulletin 2"]]
    site.post(3)
    for user in USERS:
        got = host.fetch_all(user, delete=True)
        assert [s for m in got for s in subjects(m)][-2:] == ["bulletin 2", "bulletin 3"]
        assert b"To: %s@" % user.encode() in got[-1]
        assert site.popbull(user).read_bytes() == b"3\n"
        assert host.fetch_all(user) == []                  # once, and not again
        assert site.spool(user) == b""


@pytest.mark.clients
def test_fetchmail_gets_the_bulletin(mailhost, tcp_inetd, tmp_path):
    from clients import fetchmail, read_outputs
    site = Site(mailhost.base / "site")
    host = Host(mailhost, site, tcp_inetd, "-S")
    site.post(5)
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    work.mkdir()
    fetchmail(host.server.port, out, work)
    got = read_outputs(out)
    assert len(got) == 1 and subjects(got[0]) == ["bulletin 5"]
    assert re.search(rb"^To: alice@", got[0], re.MULTILINE)
    fetchmail(host.server.port, out, work, ok=(1,))        # no new mail
    assert len(read_outputs(out)) == 1


HOSTILE_UID = TEST_UID + 1


@pytest.mark.clients
@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="needs root: two uids")
def test_a_popbull_symlink_to_another_users_file_is_not_followed(mailhost, tcp_inetd,
                                                                  tmp_path):
    site = Site(mailhost.base / "site")
    host = Host(mailhost, site, tcp_inetd)
    theirs = site.base / "theirs"
    theirs.mkdir()
    os.chown(str(theirs), HOSTILE_UID, HOSTILE_UID)
    target = theirs / "file"
    target.write_bytes(b"0\n")
    os.chown(str(target), HOSTILE_UID, HOSTILE_UID)
    os.chmod(str(target), 0o666)
    before = target.read_bytes(), os.stat(str(target)).st_mtime_ns
    os.symlink(str(target), str(site.popbull()))
    os.lchown(str(site.popbull()), TEST_UID, TEST_GID)
    site.post(1)
    site.post(2)
    assert host.fetch_all("alice") == []                   # no record to trust: none
    assert (target.read_bytes(), os.stat(str(target)).st_mtime_ns) == before
    assert os.path.islink(str(site.popbull()))
    assert "refused %s: a symbolic link" % site.popbull() in host.trace.read_text()
    # a bulletin that is a link to another owner's file is skipped
    os.unlink(str(site.popbull()))
    site.popbull().write_bytes(b"2\n")
    os.chown(str(site.popbull()), TEST_UID, TEST_GID)
    secret = theirs / "secret"
    secret.write_bytes(bulletin(3))
    os.chown(str(secret), HOSTILE_UID, HOSTILE_UID)
    os.chmod(str(secret), 0o644)
    link = site.bulldir / "3.link"
    os.symlink(str(secret), str(link))
    os.lchown(str(link), TEST_UID, TEST_GID)
    site.post(4)
    got = host.fetch_all("alice", delete=True)
    assert [subjects(m) for m in got] == [["bulletin 4"]]
    assert ("3.link skipped for alice: a symbolic link (owned by uid %d) to a file of uid %d"
            % (TEST_UID, HOSTILE_UID)) in host.trace.read_text()
    # root's link to anybody's world-readable file is the administrator's choice
    os.unlink(str(link))
    link = site.bulldir / "5.link"
    os.symlink(str(secret), str(link))
    got = host.fetch_all("alice")
    assert [subjects(m) for m in got] == [["bulletin 3"]]


# --- the bulletin database -----------------------------------------------------------

def test_the_database_keeps_a_c_long_in_the_chosen_size_and_order(tmp_path):
    from popper import bulldb, ndbm
    s = Settings()
    s.bulldir, s.bulldb = str(tmp_path), ""
    for kind, raw in (("native", struct.pack("@l", 23)), ("4-little", b"\x17\0\0\0"),
                      ("8-little", b"\x17" + b"\0" * 7), ("4-big", b"\0\0\0\x17"),
                      ("8-big", b"\0" * 7 + b"\x17")):
        s.bulldb_long = kind
        for name in ("bulldb.dir", "bulldb.pag"):
            (tmp_path / name).unlink() if (tmp_path / name).exists() else None
        db = bulldb.Database(s)
        assert db.fetch("alice") is None
        db.store("alice", 23)
        order = bulldb.LONGS[kind][1]
        with ndbm.open(str(tmp_path / "bulldb"), "r", byteorder=order) as raw_db:
            assert raw_db.fetch(b"alice\0") == raw and list(raw_db.keys()) == [b"alice\0"]
        assert db.fetch("alice") == 23
    s.bulldb_long = "8-little"                  # a file SCO's i386 popper wrote: 4 bytes
    with ndbm.open(str(tmp_path / "bulldb"), "n", byteorder="little") as raw_db:
        raw_db.store(b"bob\0", b"\x05\0\0\0")
    assert bulldb.Database(s).fetch("bob") == 5


def test_a_login_with_nothing_new_starts_no_keeper(site):
    """The record is read and the directory listed before the keeper would
    be forked: with nothing new there is none (and no bulletins object)."""
    from popper import bulldb
    s = settings_for(site, bulldb="")
    site.post(1)
    site.post(2)
    log = RecordingLog()
    bulldb.Database(s).store("alice", 2)
    assert bulldb.start(s, "alice", log) is None
    bulldb.Database(s).store("alice", 1)
    keeper = bulldb.start(s, "alice", log)
    try:
        assert keeper.fetch() == 1
        keeper.store(2)
        assert keeper.fetch() == 2 and bulldb.Database(s).fetch("alice") == 2
    finally:
        keeper.close()
    assert log.texts() == []


def configured_tree(tmp_path, *switches):
    from test_configure import Tree
    tree = Tree(tmp_path / "tree")
    (tmp_path / "tree").chmod(0o755)
    tree.configure(*switches)
    return tree


def tree_inetd(tree, mailhost):
    """start(*args) of a TCP inetd running popper from the tree."""
    from conftest import TcpInetd
    return lambda *args: TcpInetd(tree.command(mailhost, *args), env=tree.env(),
                                  cwd=str(tree.path))


@pytest.fixture
def bulldb_site(mailhost, tmp_path):
    site = Site(mailhost.base / "site")
    dbdir = mailhost.base / "bulldb"
    dbdir.mkdir()
    os.chmod(str(dbdir), 0o755)
    tree = configured_tree(mailhost.base, "--enable-bulldb=%s" % dbdir)
    hosts = []

    def start(*args):
        host = Host(mailhost, site, tree_inetd(tree, mailhost), *args)
        hosts.append(host)
        return host
    yield site, dbdir, tree, start
    for host in hosts:
        host.server.close()


def records(dbdir) -> dict:
    from popper import ndbm
    with ndbm.open(str(dbdir / "bulldb"), "r") as db:
        return {k: struct.unpack("@l", db.fetch(k))[0] for k in db.keys()}


@pytest.mark.clients
@pytest.mark.parametrize("mode", sorted(MODES))
def test_with_the_database_a_bulletin_reaches_every_user_once(bulldb_site, mode):
    site, dbdir, _, start = bulldb_site
    host = start(*MODES[mode])
    site.post(1)
    site.post(2)
    site.popbull("carol").write_bytes(b"0\n")          # from before the database
    os.chown(str(site.popbull("carol")), TEST_UID, TEST_GID)
    got = {user: [s for m in host.fetch_all(user, delete=True) for s in subjects(m)]
           for user in USERS}
    assert got == {"alice": ["bulletin 2"], "bob": ["bulletin 2"],
                   "carol": ["bulletin 1", "bulletin 2"]}          # continuity
    assert records(dbdir) == {b"alice\0": 2, b"bob\0": 2, b"carol\0": 2}
    assert not site.popbull("alice").exists()
    assert site.popbull("carol").read_bytes() == b"0\n"           # read, never written
    site.post(3)
    for user in USERS:
        assert [subjects(m) for m in host.fetch_all(user, delete=True)] == [["bulletin 3"]]
        assert host.fetch_all(user) == []
    assert records(dbdir) == {b"alice\0": 3, b"bob\0": 3, b"carol\0": 3}
    for name in ("bulldb.dir", "bulldb.pag"):        # root's: no user can write a record
        st = os.stat(str(dbdir / name))
        assert (st.st_uid, st.st_mode & 0o777) == (os.geteuid(), 0o600)


@pytest.mark.clients
def test_a_database_that_cannot_be_opened(bulldb_site):
    site, dbdir, _, start = bulldb_site
    site.post(1)
    site.deliver(mail("old mail"))
    os.rmdir(str(dbdir))
    host = start()
    client = poplib.POP3("127.0.0.1", host.server.port, timeout=30)
    client.user("alice")
    with pytest.raises(poplib.error_proto) as refused:
        client.pass_(USERS["alice"])
    assert refused.value.args[0] == (b"-ERR [SYS/TEMP] Unable to open Bulletin database; "
                                     b"contact your administrator")
    host = start("-B")                               # bulldb-nonfatal: no bulletins
    assert [subjects(m) for m in host.fetch_all("alice")] == [["old mail"]]


# --- kill -9 during the append -------------------------------------------------------

STRACE = shutil.which("strace")
KILL_CALLS = ("write", "pwrite64", "ftruncate", "fsync", "rename", "unlink")


class KillRig:
    """One user, two bulletins, a spool of three messages and a record
    saying bulletin 1 was seen (~/.popbull, or the bulletin database of a
    tree configured with --enable-bulldb)."""

    def __init__(self, mailhost, record: str):
        self.mailhost, self.record = mailhost, record
        self.site = site = Site(mailhost.base / "site")
        mailhost.userdb.write_text("alice:%s:%d:%d::%s:/bin/sh\n" % (
            hashed(USERS["alice"]), TEST_UID, TEST_GID, site.home("alice")))
        mailhost.write_config("set spool-dir = %s" % site.spool_dir)
        site.post(1)
        site.post(2)
        self.tree = self.dbdir = None
        if record == "bulldb":
            self.dbdir = mailhost.base / "bulldb"
            self.dbdir.mkdir()
            self.tree = configured_tree(mailhost.base, "--enable-bulldb=%s" % self.dbdir)

    def command(self, mode: str) -> list:
        args = ["-b", str(self.site.bulldir)] + MODES[mode]
        if self.tree:
            return self.tree.command(self.mailhost, *args)
        return self.mailhost.command(*args)

    def popen(self) -> dict:
        return dict(env=self.tree.env(), cwd=str(self.tree.path)) if self.tree else {}

    def traced(self) -> list:
        """The files a login with bulletins writes."""
        site, spool = self.site, self.site.spool_dir
        names = [spool / "alice", spool / ".alice.pop", spool / ".alice.pop.journal",
                 spool / ".alice.pop.journal.new", spool / ".alice.cache",
                 spool / ".alice.cache.new", spool, site.popbull(),
                 pathlib.Path(str(site.popbull()) + ".new"), site.home("alice")]
        if self.dbdir:
            names += [self.dbdir / "bulldb.dir", self.dbdir / "bulldb.pag"]
        return [arg for name in names for arg in ("-P", str(name))]

    def reset(self) -> None:
        site = self.site
        for path in list(site.spool_dir.iterdir()) + list(site.home("alice").iterdir()):
            path.unlink()
        site.deliver(mail("one", "two", "three"))
        if self.dbdir:
            from popper import ndbm
            with ndbm.open(str(self.dbdir / "bulldb"), "n") as db:
                db.store(b"alice\0", struct.pack("@l", 1))
        else:
            site.popbull().write_bytes(b"1\n")
            os.chown(str(site.popbull()), TEST_UID, TEST_GID)

    def seen(self):
        if self.dbdir:
            return records(self.dbdir).get(b"alice\0")
        return int(self.site.popbull().read_bytes())

    def login(self, mode: str, inject=None, fault: str = "SIGKILL") -> str:
        """A login and a QUIT under strace (killed at `inject`, or the call
        failing with the errno `fault`, if given); the strace log."""
        log = self.site.base / "strace.log"
        command = [STRACE, "-f", "-qq", "-o", str(log), "-e", "trace=" + ",".join(KILL_CALLS)]
        if inject:
            how = "signal=SIGKILL" if fault == "SIGKILL" else "error=" + fault
            command += ["-e", "inject=%s:%s:when=%d" % (inject[0], how, inject[1])]
        conv = start_inetd(command + self.traced() + self.command(mode),
                           stderr=subprocess.DEVNULL, **self.popen())
        try:
            conv.send(b"USER alice\r\nPASS secret\r\nSTAT\r\nQUIT\r\n")
            while True:
                conv.line()
        except (EOFError, OSError):
            pass
        finally:
            conv.close()
        return log.read_text()

    def clean_session(self, mode: str) -> list:
        """A clean login and QUIT; then what the spool holds."""
        conv = start_inetd(self.command(mode), **self.popen())
        try:
            assert conv.login().startswith(b"+OK")
            assert conv.cmd("QUIT").startswith(b"+OK")
        finally:
            conv.close()
        return subjects(self.site.spool())


def counts(log: str) -> dict:
    """For each call, the most any one thread made: strace counts `when=N`
    per thread, so every N up to it kills some thread at its N-th call."""
    per_thread = {}
    for line in log.splitlines():
        match = re.match(r"(\d+) +(\w+)\(", line)
        if match and match.group(2) in KILL_CALLS:
            key = match.group(2), match.group(1)
            per_thread[key] = per_thread.get(key, 0) + 1
    found = {}
    for (call, _), n in per_thread.items():
        found[call] = max(found.get(call, 0), n)
    return found


# make check tries four of the eight (mode, record, fault): each pair of
# values once; make soak (POPPER_FAULTS_FULL) all of them.
PAIRWISE = {("normal", "popbull", "SIGKILL"), ("normal", "bulldb", "EIO"),
            ("server", "popbull", "EIO"), ("server", "bulldb", "SIGKILL")}


@pytest.mark.clients
@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT or not STRACE, reason="needs root and strace")
@pytest.mark.parametrize("fault", ["SIGKILL", pytest.param("EIO", marks=pytest.mark.slow)])
@pytest.mark.parametrize("record", ["popbull", pytest.param("bulldb", marks=pytest.mark.slow)])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_kill_at_every_write_of_a_bulletin_login_delivers_it_once(mailhost, mode, record, fault):
    """kill -9 (or EIO) at the N-th call of each kind that changes a file
    (the spool, the temp drop, the journal, the record), for every N a
    calibration login counts (make check: helpers.fault_subset's); then a clean login must find the three
    messages and the new bulletin once, and the record must say 2."""
    if not FAULTS_FULL and (mode, record, fault) not in PAIRWISE:
        pytest.skip("make soak tries it (the pairs are in make check)")
    rig = KillRig(mailhost, record)
    rig.reset()
    calibration = counts(rig.login(mode))
    assert calibration.get("pwrite64") and calibration.get("fsync"), calibration
    failures = []
    for call in KILL_CALLS:
        for n in fault_subset(calibration.get(call, 0)):
            rig.reset()
            log = rig.login(mode, inject=(call, n), fault=fault)
            assert ("+++ killed by SIGKILL +++" if fault == "SIGKILL" else
                    "(INJECTED)") in log, "%s #%d: nothing injected" % (call, n)
            got = rig.clean_session(mode)
            if sorted(got) != sorted(["one", "two", "three", "bulletin 2"]) or rig.seen() != 2:
                failures.append("%s #%d: %r, record %r" % (call, n, got, rig.seen()))
    assert not failures, "\n".join(failures)
