"""The maildrop's files as Qpopper keeps them: server mode and its cache, the
temporary drop, MMDF spools, UW-IMAP's folder data, unique UIDs, dot-locks."""

import hashlib
import os
import re
import socket
import time

import pytest

import mda
from conftest import TEST_GID, TEST_UID, corpus, start_inetd
from helpers import message_id, split_mbox

from popper.maildrop.scan import encode_uid

pytestmark = pytest.mark.twin

MAIL = corpus.mbox_bytes(list(corpus.messages(8, seed=61)))


def session(mailhost, *args, commands=()):
    """Log in, run commands, QUIT: the replies, a multi-line one as
    (status line, lines)."""
    conv = start_inetd(mailhost.command(*args))
    replies = [conv.login()]
    for command in commands:
        reply = conv.cmd(command)
        words = command.upper().split()
        if reply.startswith(b"+OK") and (words[0] in ("CAPA", "RETR", "TOP") or
                                         words in (["LIST"], ["UIDL"])):
            reply = (reply, conv.multiline())
        replies.append(reply)
    replies.append(conv.cmd("QUIT"))
    conv.close()
    return replies


def uidl(mailhost, *args) -> list:
    return session(mailhost, *args, commands=["UIDL"])[1][1]


# --- server mode ------------------------------------------------------------------

@pytest.mark.clients
def test_server_mode_serves_in_place_and_leaves_an_unchanged_spool_alone(mailhost):
    mailhost.deliver(MAIL)
    session(mailhost)                       # X-UIDL: and Status: written once
    before = mailhost.spool().read_bytes()
    st = os.stat(mailhost.spool())
    conv = start_inetd(mailhost.command("-S"))
    assert conv.login().startswith(b"+OK alice has 8 visible messages")
    assert mailhost.temp_drop().stat().st_size == 0      # only the session's lock
    assert mailhost.spool().read_bytes() == before        # not copied, not emptied
    conv.send(b"TOP 3 5\r\n")
    conv.line()
    conv.multiline()
    assert conv.cmd("QUIT").startswith(b"+OK Pop server at")
    conv.close()
    assert mailhost.spool().read_bytes() == before
    assert os.stat(mailhost.spool()).st_mtime_ns == st.st_mtime_ns
    assert not mailhost.temp_drop().exists()


def test_server_mode_quit_without_a_spool_file(mailhost):
    """A user with no spool file at all (no mail ever): QUIT signs off."""
    assert not mailhost.spool().exists()
    assert session(mailhost, "-S", commands=["STAT"]) == [
        b"+OK alice has 0 visible messages (0 hidden) in 0 octets.", b"+OK 0 0",
        b"+OK Pop server at %s signing off." % socket.gethostname().encode()]


@pytest.mark.clients
def test_server_mode_second_login_takes_the_cache(mailhost):
    mailhost.deliver(MAIL)
    trace = mailhost.base / "trace"
    session(mailhost, "-S")                 # writes X-UIDL:, caches the rewritten spool
    uids = uidl(mailhost, "-S", "-t", str(trace))
    assert "cached message table" in trace.read_text()
    assert uids == uidl(mailhost)           # the same UIDs as a scan finds
    # A delivery changes the spool: no cache then, the new mail is seen.
    mda.deliver(mailhost.spool(), mda.message("late", 1))
    trace.write_text("")
    assert len(uidl(mailhost, "-S", "-t", str(trace))) == 9
    assert "cached message table" not in trace.read_text()


@pytest.mark.clients
def test_the_cache_is_written_after_a_scan_and_left_alone_after_a_cached_login(mailhost):
    mailhost.deliver(MAIL)
    session(mailhost)                       # X-UIDL: and Status: written once
    cache_file = mailhost.spool_dir / ".alice.cache"
    assert not cache_file.exists()
    session(mailhost, "-S")                 # a scan, and nothing to change: cached
    before = os.stat(cache_file)
    trace = mailhost.base / "trace"
    session(mailhost, "-S", "-t", str(trace))
    assert "cached message table" in trace.read_text()
    after = os.stat(cache_file)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.clients
def test_server_mode_update_keeps_new_mail_and_writes_headers(mailhost):
    mailhost.deliver(MAIL)
    conv = start_inetd(mailhost.command("-S"))
    conv.login()
    conv.send(b"RETR 2\r\n")
    conv.line()
    conv.multiline()
    assert conv.cmd("DELE 5").startswith(b"+OK")
    late = mda.message("late", 1)
    with mda.MdaLock(mailhost.spool(), wait=5) as lock:    # the session holds no lock now
        lock.append(late)
    assert conv.cmd("QUIT").startswith(b"+OK Pop server at")
    conv.close()
    messages = split_mbox(mailhost.spool().read_bytes())
    ids = [message_id(m) for m in messages]
    original = [m.message_id for m in corpus.messages(8, seed=61)]
    assert ids == original[:4] + original[5:] + [b"late-1@mda.test"]
    assert [re.search(rb"\nStatus: (\w+)\n", m).group(1) for m in messages[:7]] == [
        b"U", b"RO", b"U", b"U", b"U", b"U", b"U"]
    assert all(m.split(b"\n")[1].startswith(b"X-UIDL: ") for m in messages[:7])


@pytest.mark.clients
def test_server_mode_with_mail_left_in_the_temp_drop_serves_it_normally(mailhost):
    mailhost.deliver(MAIL)
    leftover = corpus.mbox_bytes(list(corpus.messages(2, seed=62)))
    mailhost.temp_drop().write_bytes(leftover)
    os.chown(mailhost.temp_drop(), TEST_UID, TEST_GID)
    os.chmod(mailhost.temp_drop(), 0o600)
    replies = session(mailhost, "-S")
    assert replies[0].startswith(b"+OK alice has 10 visible messages")
    ids = [message_id(m) for m in split_mbox(mailhost.spool().read_bytes())]
    assert ids[:2] == [m.message_id for m in corpus.messages(2, seed=62)]


# --- the temporary drop ------------------------------------------------------------

@pytest.mark.clients
def test_temp_drop_open_to_others_is_refused(mailhost):
    mailhost.deliver(MAIL)
    mailhost.temp_drop().write_bytes(b"")
    os.chown(mailhost.temp_drop(), TEST_UID, TEST_GID)
    os.chmod(mailhost.temp_drop(), 0o604)
    conv = start_inetd(mailhost.command())
    assert conv.login() == (b"-ERR [SYS/PERM] Your temporary file %s is accessible by others.  "
                            b"This must be fixed" % str(mailhost.temp_drop()).encode())
    conv.close()
    assert mailhost.spool().read_bytes() == MAIL


@pytest.mark.clients
def test_temp_drop_with_two_links_is_refused(mailhost):
    mailhost.deliver(MAIL)
    mailhost.temp_drop().write_bytes(b"")
    os.chown(mailhost.temp_drop(), TEST_UID, TEST_GID)
    os.chmod(mailhost.temp_drop(), 0o600)
    os.link(mailhost.temp_drop(), mailhost.base / "elsewhere")
    conv = start_inetd(mailhost.command())
    assert conv.login() == b"-ERR [SYS/PERM] Your temporary file appears to have more than one link."
    conv.close()


# --- MMDF ------------------------------------------------------------------------------

SEP = b"\x01\x01\x01\x01\n"


def mmdf(msgs) -> bytes:
    return b"".join(SEP + m.data + SEP for m in msgs)


@pytest.mark.clients
def test_mmdf_spool_round_trip_with_new_mmdf_mail(mailhost):
    msgs = list(corpus.messages(5, seed=63))
    mailhost.deliver(mmdf(msgs))
    conv = start_inetd(mailhost.command())
    assert conv.login().startswith(b"+OK alice has 5 visible messages")
    conv.send(b"RETR 1\r\n")
    conv.line()
    body = b"\n".join(conv.multiline()) + b"\n"
    assert body.replace(b"X-UIDL: ", b"").count(b"\n") == msgs[0].data.count(b"\n") + 1
    assert SEP not in body
    conv.cmd("DELE 2")
    new = list(corpus.messages(1, seed=64))
    mda.deliver(mailhost.spool(), mmdf(new))
    conv.cmd("QUIT")
    conv.close()
    data = mailhost.spool().read_bytes()
    parts = data.split(SEP)
    assert parts[0] == b"" and parts[-1] == b"" and data.count(SEP) == 10
    kept = [p for p in parts if p]
    assert [re.search(rb"Message-ID: <([^>]+)>", p).group(1) for p in kept] == [
        m.message_id for m in msgs[:1] + msgs[2:] + new]
    # And once more: what popper wrote reads back as the same messages.
    assert len(uidl(mailhost)) == 5


# --- UW-IMAP's folder data ------------------------------------------------------------------

UW = (b"From MAILER-DAEMON Thu Nov 26 14:34:16 2026\n"
      b"Date: Thu, 26 Nov 2026 14:34:16 +0000\n"
      b"From: Mail System Internal Data <MAILER-DAEMON@host>\n"
      b"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n"
      b"Message-ID: <1164551656@host>\nX-IMAP: 1164551656 0000000002\nStatus: RO\n\n"
      b"This text is part of the internal format of your mail folder.\n\n")


@pytest.mark.clients
def test_uw_imap_folder_data_is_hidden_and_kept(mailhost):
    mailhost.deliver(UW + MAIL)
    conv = start_inetd(mailhost.command())
    assert re.match(rb"\+OK alice has 8 visible messages \(1 hidden\) in \d+ octets\.",
                    conv.login())
    conv.send(b"LIST\r\n")
    assert conv.line().startswith(b"+OK 8 visible messages")
    assert [line.split()[0] for line in conv.multiline()] == [b"%d" % n for n in range(1, 9)]
    conv.send(b"TOP 1 0\r\n")
    conv.line()
    first = [m.message_id for m in corpus.messages(8, seed=61)][0]
    assert b"Message-ID: <" + first + b">" in conv.multiline()
    assert conv.cmd("DELE 1").startswith(b"+OK Message 1 has been deleted.")
    assert conv.cmd("RETR 9") == b"-ERR Message 9 does not exist."
    conv.cmd("QUIT")
    conv.close()
    data = mailhost.spool().read_bytes()
    assert data.startswith(UW[:-1])               # first, byte for byte
    assert first not in data


@pytest.mark.clients
def test_uw_kludge_can_be_turned_off(mailhost):
    mailhost.deliver(UW + MAIL)
    mailhost.write_config("reset uw-kludge")
    assert session(mailhost)[0].startswith(b"+OK alice has 9 visible messages (0 hidden)")


# --- UIDs --------------------------------------------------------------------------------

@pytest.mark.clients
def test_repeated_uids_are_made_unique_and_written_back(mailhost):
    msgs = list(corpus.messages(3, seed=65))
    data = b"".join(m.envelope + m.data.replace(b"\n\n", b"\nX-UIDL: sameuid\n\n", 1) + b"\n"
                    for m in msgs)
    mailhost.deliver(data)
    first = uidl(mailhost)
    uids = [line.split()[1] for line in first]
    assert uids[0] == b"sameuid" and len(set(uids)) == 3
    assert uidl(mailhost) == first          # the same after they were written back


@pytest.mark.clients
def test_a_made_uid_never_takes_one_a_later_message_has(mailhost):
    # The UID the second "sameuid" would get is already the fourth message's.
    made = encode_uid(hashlib.md5(b"sameuid/1").digest())
    msgs = list(corpus.messages(5, seed=67))
    given = [b"sameuid", b"sameuid", b"sameuid", made, b"other"]
    mailhost.deliver(b"".join(m.envelope + m.data.replace(b"\n\n", b"\nX-UIDL: %s\n\n" % uid, 1)
                              + b"\n" for m, uid in zip(msgs, given)))
    uids = [line.split()[1] for line in uidl(mailhost)]
    assert uids[0] == b"sameuid" and uids[3] == made and uids[4] == b"other"
    assert len(set(uids)) == 5
    assert uids[1:3] == [encode_uid(hashlib.md5(b"sameuid/%d" % k).digest()) for k in (2, 3)]


@pytest.mark.clients
def test_qpopper_uids_are_honoured(mailhost):
    msgs = list(corpus.messages(2, seed=66))
    data = b"".join(m.envelope + m.data.replace(b"\n\n", b"\nX-UIDL: %s\n\n" % uid, 1) + b"\n"
                    for m, uid in zip(msgs, (b"3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f", b"b'\"!!3Kk\"!W(@\"!D~5!!")))
    mailhost.deliver(data)
    assert [line.split()[1] for line in uidl(mailhost)] == [
        b"3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f", b"b'\"!!3Kk\"!W(@\"!D~5!!"]


# --- dot-locks ---------------------------------------------------------------------------

@pytest.mark.clients
def test_a_dot_lock_of_a_dead_process_is_broken_at_once(mailhost):
    mailhost.deliver(MAIL)
    lock = mailhost.base / "spool" / "alice.lock"
    lock.write_text("%d@%s" % (2 ** 22 + 12345, socket.gethostname()))
    os.chown(lock, TEST_UID, TEST_GID)      # left by a killed session of the user
    start = time.monotonic()
    assert session(mailhost)[0].startswith(b"+OK alice has 8")
    assert time.monotonic() - start < 5
    assert not lock.exists()


# --- nothing changed but the headers popper owns --------------------------------------

@pytest.mark.slow
def test_awkward_mailboxes_survive_a_session_byte_for_byte(make_session, spool):
    """Every generated awkward mailbox of the scanner tests (CRLF, NULs, long
    lines, Content-Length:, no final newline, MMDF): after a session that
    reads one message and deletes nothing, each message is as it was but
    for the X-UIDL:/Status: lines, and a second session sees the same."""
    from popper.maildrop import scan
    from test_scanner import CORPUS, reference_scan
    checked = 0
    for n, data in enumerate(CORPUS):
        try:
            _, before = reference_scan(data)
        except scan.NotAMailbox:
            continue
        if not before:
            continue
        user = "u%d" % n
        session, _ = make_session(mail=data, user=user)
        assert [o for o in session.feed(b"USER %s\r\nPASS x\r\n" % user.encode())
                if isinstance(o, bytes)][-1].startswith(b"-ERR")     # unknown to StubAuth
        session.close()
        from popper.auth import Account
        session, _ = make_session(user=user)
        assert session.login(Account(user)).startswith(b"+OK")
        first = session.maildrop.messages[0]
        list(session.maildrop.message_chunks(first))
        session.update()
        session.close()
        after = (spool / user).read_bytes()
        _, kept = reference_scan(after)
        assert len(kept) == len(before), data
        for old, new in zip(before, kept):
            old_msg = data[old[1]:old[3]]
            new_msg = after[new[1]:new[3]]
            strip = (b"x-uidl:", b"status:")
            old_lines = [line for line in old_msg.split(b"\n") if not line.lower().startswith(strip)]
            new_lines = [line for line in new_msg.split(b"\n") if not line.lower().startswith(strip)]
            assert new_lines == old_lines or new_lines == old_lines + [b""], (data, old_msg, new_msg)
        checked += 1
    assert checked > 350


@pytest.mark.root
@pytest.mark.clients
def test_temp_drop_of_someone_else_is_refused(mailhost):
    import pytest
    from conftest import IS_ROOT
    if not IS_ROOT:
        pytest.skip("only root can give the temp drop to someone else")
    mailhost.deliver(MAIL)
    mailhost.temp_drop().write_bytes(b"")
    os.chmod(mailhost.temp_drop(), 0o660)     # root's, open to the user's group only
    os.chown(mailhost.temp_drop(), 0, TEST_GID)
    conv = start_inetd(mailhost.command())
    assert conv.login() == b"-ERR [SYS/PERM] Temporary drop %s not owned by alice." % (
        str(mailhost.temp_drop()).encode())
    conv.close()
    assert mailhost.spool().read_bytes() == MAIL


@pytest.mark.clients
def test_a_lock_left_half_made_by_a_killed_popper_is_broken(mailhost):
    """Killed between link() and unlink(): the lock has two links, and the
    file it was made from is left; both go, and the login goes on."""
    mailhost.deliver(MAIL)
    dead = 2 ** 22 + 54321
    lock = mailhost.base / "spool" / "alice.lock"
    made_from = mailhost.base / "spool" / ("alice.lock.%d.0badf00d" % dead)
    made_from.write_text("%d@%s" % (dead, socket.gethostname()))
    os.link(made_from, lock)
    for path in (lock, made_from):
        os.chown(path, TEST_UID, TEST_GID)
    start = time.monotonic()
    assert session(mailhost)[0].startswith(b"+OK alice has 8")
    assert time.monotonic() - start < 5
    assert not lock.exists() and not made_from.exists()
