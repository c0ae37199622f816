"""Real POP3 clients against the real server, over TCP, both as inetd runs
popper (a fresh process per connection) and standalone.

Every message a client downloads is compared byte for byte with the spool
message it came from (matched by Message-ID), allowing only for what popper
adds (the X-UIDL: line, CRLF line ends, dot-stuffing) and for what the
client itself does, modelled exactly (see clients.py).  After a session the
spool is compared byte for byte with what Qpopper's update writes.
"""

import functools
import os
import poplib
import re
import socket
import threading
import time

import pytest

import clients as C
import mda
from conftest import Conversation, corpus

pytestmark = pytest.mark.clients

COUNT = 100
SEED = 1939


@functools.lru_cache(maxsize=None)
def _messages(count: int, seed: int) -> tuple:
    return tuple(corpus.messages(count, seed=seed))


def deliver(mailhost, count=COUNT, seed=SEED) -> tuple:
    msgs = _messages(count, seed)
    mailhost.deliver(corpus.mbox_bytes(msgs))
    return msgs


def by_id(msgs) -> dict:
    return {m.message_id: m.data for m in msgs}


@pytest.fixture(params=["tcp_inetd", "standalone"])
def server(request):
    """popper on 127.0.0.1:server.port, one way or the other."""
    return request.getfixturevalue(request.param)()


@pytest.fixture
def work(mailhost):
    """A scratch directory for a client (its HOME), with out/ for the mail."""
    path = mailhost.base / "client"
    (path / "out").mkdir(parents=True)
    return path


@pytest.fixture
def long_lines(monkeypatch):
    """The corpus has lines of up to 3000 octets; poplib refuses lines over
    2048 (poplib._MAXLINE), which is a client limit, not a server fault."""
    monkeypatch.setattr(poplib, "_MAXLINE", 1 << 20)


@pytest.fixture
def pop(server):
    """pop() -> a poplib session logged in to the server; whatever a failing
    test leaves open is closed before the server is stopped."""
    opened = []

    def login(user="alice", password="secret") -> poplib.POP3:
        client = poplib.POP3("127.0.0.1", server.port, timeout=30)
        opened.append(client)
        client.user(user)
        assert client.pass_(password).startswith(b"+OK ")
        return client
    yield login
    for client in opened:
        client.close()


def retr(client: poplib.POP3, n: int, size: int = None) -> bytes:
    resp, lines, octets = client.retr(n)
    data = b"".join(line + b"\n" for line in lines)
    assert octets == len(data) + len(lines), "poplib counted %d octets" % octets
    # RFC 1939: "+OK <n> octets" is the exact size of the message as sent.
    assert resp == b"+OK %d octets" % octets, resp
    if size is not None:
        assert size == octets, "LIST %d says %d octets, RETR sent %d" % (n, size, octets)
    return data


def uidl_map(client: poplib.POP3) -> dict:
    resp, lines, _ = client.uidl()
    assert resp.startswith(b"+OK")
    result = {}
    for line in lines:
        n, uid = line.split(b" ", 1)
        # RFC 1939: 1 to 70 characters in the range 0x21 to 0x7E.
        assert re.fullmatch(rb"[\x21-\x7e]{1,70}", uid), uid
        result[int(n)] = uid
    return result


def spool_after_update(kept, uids: dict, seen: set) -> bytes:
    """The spool as QUIT leaves it: kept is the Message list in order, uids
    Message-ID -> UID, seen the Message-IDs retrieved in the session."""
    return b"".join(C.rewritten(m, uids[m.message_id], m.message_id in seen) for m in kept)


def assert_spool(mailhost, want: bytes) -> None:
    got = mailhost.spool().read_bytes()
    assert C.spool_message_ids(got) == C.spool_message_ids(want), "wrong messages in the spool"
    assert got == want, "spool differs:\n" + C.first_difference(got, want)


def in_thread(function) -> tuple:
    """Start function() in a thread; (thread, results) where results gets
    its return value or the exception it raised."""
    results = []

    def target():
        try:
            results.append(function())
        except Exception as exc:        # reported by the test's assertions
            results.append(exc)
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, results


def raw_connect(port: int) -> Conversation:
    return Conversation(socket.create_connection(("127.0.0.1", port), timeout=30))


# --- 1. each client downloads a 100-message mixed mbox, byte for byte -----------------

def test_poplib_downloads_every_message(mailhost, server, long_lines, pop):
    msgs = deliver(mailhost)
    client = pop()
    count, total = client.stat()
    _, listing, _ = client.list()
    sizes = {int(n): int(size) for n, size in (line.split() for line in listing)}
    assert count == COUNT and sorted(sizes) == list(range(1, COUNT + 1))
    assert total == sum(sizes.values())
    numbered = uidl_map(client)
    outputs = [retr(client, n, sizes[n]) for n in range(1, COUNT + 1)]
    assert client.quit().startswith(b"+OK ")

    uids = C.check_downloads(outputs, by_id(msgs))
    # The UIDs in the messages are the ones UIDL gave, in message order.
    assert [uids[m.message_id] for m in msgs] == [numbered[n] for n in range(1, COUNT + 1)]
    # Everything was kept, retrieved, and written back with its UID.
    assert_spool(mailhost, spool_after_update(msgs, uids, seen=set(uids)))


def test_curl_downloads_every_message(mailhost, server, work):
    msgs = deliver(mailhost)
    out = work / "out"
    C.curl_retr_all(server.port, COUNT, out, work)
    # curl writes the body as sent, CRLF and all, less the dot-stuffing.
    outputs = [C.from_wire(data) for data in C.read_outputs(out)]
    assert len(outputs) == COUNT
    C.check_downloads(outputs, by_id(msgs))


def test_fetchmail_downloads_every_message(mailhost, server, work):
    msgs = deliver(mailhost)
    # --invisible: no Received: line; "no rewrite": headers untouched; the
    # MDA gets LF line ends.  keep + uidl: fetchmail reads with TOP n 99999999.
    result = C.fetchmail(server.port, work / "out", work, keep=True, uidl=True)
    assert b"TOP 1 99999999" in result.stderr + result.stdout
    uids = C.check_downloads(C.read_outputs(work / "out"), by_id(msgs))
    ids = (work / "fetchmail.ids").read_bytes().splitlines()
    assert sorted(ids) == sorted(b"alice@127.0.0.1 " + uid for uid in uids.values())


def test_getmail_downloads_every_message(mailhost, server, work):
    msgs = deliver(mailhost)
    C.getmail(server.port, work / "out", work, read_all=True)
    # getmail re-generates each message (Return-Path first, long header
    # lines refolded); the expected bytes come from getmail's own code.
    uids = C.check_downloads(C.read_outputs(work / "out"), by_id(msgs),
                             transform=C.getmail_flatten)
    assert C.getmail_oldmail_uids(work) == {uid.replace(b"/", b"-") for uid in uids.values()}


def test_mpop_downloads_every_message(mailhost, server, work):
    msgs = deliver(mailhost)
    C.mpop(server.port, work / "out", work, only_new=False)
    uids = C.check_downloads(C.read_outputs(work / "out"), by_id(msgs))
    assert C.mpop_uids(work) == set(uids.values())


# --- 2. keep + UIDL: a second run finds nothing new ---------------------------------

def _nothing_new(mailhost, work, msgs, first, second, retrieved: bool, transform=None) -> None:
    first()
    uids = C.check_downloads(C.read_outputs(work / "out"), by_id(msgs), transform)
    # The first run left every message in place, with its UID and its
    # Status: RO if it was RETRieved, U if it was only read with TOP.
    after_first = spool_after_update(msgs, uids, set(uids) if retrieved else set())
    assert_spool(mailhost, after_first)
    for path in (work / "out").iterdir():
        path.unlink()
    second()
    assert C.read_outputs(work / "out") == [], "the second run downloaded mail again"
    assert_spool(mailhost, after_first)


def test_fetchmail_second_run_finds_nothing_new(mailhost, server, work):
    msgs = deliver(mailhost)
    out = work / "out"
    _nothing_new(mailhost, work, msgs,
                 lambda: C.fetchmail(server.port, out, work),
                 lambda: C.fetchmail(server.port, out, work, ok=(1,)),    # 1: no new mail
                 retrieved=False)                                         # TOP n 99999999


def test_fetchmail_without_uidl_relies_on_last(mailhost, server, work):
    msgs = deliver(mailhost)
    out = work / "out"

    def second():
        result = C.fetchmail(server.port, out, work, uidl=False, ok=(1,))
        assert b"POP3< +OK %d is the last read message." % COUNT in result.stderr + result.stdout
    _nothing_new(mailhost, work, msgs,
                 lambda: C.fetchmail(server.port, out, work, uidl=False),
                 second, retrieved=True)


def test_getmail_second_run_finds_nothing_new(mailhost, server, work):
    msgs = deliver(mailhost)
    out = work / "out"
    _nothing_new(mailhost, work, msgs,
                 lambda: C.getmail(server.port, out, work, read_all=True),
                 lambda: C.getmail(server.port, out, work, read_all=False),
                 retrieved=True, transform=C.getmail_flatten)


def test_mpop_second_run_finds_nothing_new(mailhost, server, work):
    msgs = deliver(mailhost)
    out = work / "out"
    _nothing_new(mailhost, work, msgs,
                 lambda: C.mpop(server.port, out, work, only_new=False),
                 lambda: C.mpop(server.port, out, work, only_new=True),
                 retrieved=True)


# --- 3. DELE + QUIT with mail arriving during the session -------------------------------

NEW_SEED = 2449


def test_dele_quit_keeps_the_rest_and_the_new_mail(mailhost, server, long_lines, pop):
    msgs = deliver(mailhost, 30)
    new = _messages(5, NEW_SEED)
    client = pop()
    assert client.stat()[0] == 30
    numbered = uidl_map(client)
    # An MDA delivers while the session is open.
    mda.deliver(mailhost.spool(), corpus.mbox_bytes(new))
    retrieved = {2, 3, 17, 30}
    deleted = {1, 3, 4, 10, 11, 12, 29}
    for n in sorted(retrieved):
        retr(client, n)
    for n in sorted(deleted):
        assert client.dele(n) == b"+OK Message %d has been deleted." % n
    # The session does not see the new mail.
    assert client.stat()[0] == 30 - len(deleted)
    assert client.quit().startswith(b"+OK ")

    kept = [m for n, m in enumerate(msgs, 1) if n not in deleted]
    uids = {m.message_id: numbered[n] for n, m in enumerate(msgs, 1)}
    seen = {msgs[n - 1].message_id for n in retrieved}
    assert_spool(mailhost, spool_after_update(kept, uids, seen) + corpus.mbox_bytes(new))

    # The next session sees the kept mail, then the new mail, intact.
    client = pop()
    assert client.stat()[0] == len(kept) + len(new)
    again = uidl_map(client)
    assert [again[n] for n in range(1, len(kept) + 1)] == [uids[m.message_id] for m in kept]
    for n, m in enumerate(new, len(kept) + 1):
        uid, data = C.strip_uidl(retr(client, n))
        assert data == m.data and uid == again[n]
    assert client.quit().startswith(b"+OK ")


def test_dele_of_everything_leaves_only_the_new_mail(mailhost, server, pop):
    deliver(mailhost, 10)
    new = _messages(3, NEW_SEED)
    client = pop()
    mda.deliver(mailhost.spool(), corpus.mbox_bytes(new))
    for n in range(1, 11):
        client.dele(n)
    assert client.quit().startswith(b"+OK ")
    assert_spool(mailhost, corpus.mbox_bytes(new))


def test_quit_waits_for_a_delivering_mda(mailhost, server, long_lines, pop):
    """popper's update takes the MDA's fcntl lock and dot-lock, so mail the
    MDA is still writing is neither lost nor cut in half."""
    msgs = deliver(mailhost, 10)
    new = _messages(3, NEW_SEED)
    client = pop()
    numbered = uidl_map(client)
    client.dele(5)
    with mda.MdaLock(mailhost.spool()) as lock:
        lock.append(corpus.mbox_bytes(new)[:1000])      # half-way through a delivery
        quitter, replies = in_thread(client.quit)
        time.sleep(0.6)
        assert replies == [], "QUIT went ahead while the MDA held its locks"
        lock.append(corpus.mbox_bytes(new)[1000:])
    quitter.join(30)
    assert replies and isinstance(replies[0], bytes) and replies[0].startswith(b"+OK "), replies
    kept = [m for n, m in enumerate(msgs, 1) if n != 5]
    uids = {m.message_id: numbered[n] for n, m in enumerate(msgs, 1)}
    assert_spool(mailhost, spool_after_update(kept, uids, set()) + corpus.mbox_bytes(new))


def test_login_waits_for_a_delivering_mda(mailhost, server, long_lines, pop):
    msgs = deliver(mailhost, 10)
    new = _messages(3, NEW_SEED)
    with mda.MdaLock(mailhost.spool()) as lock:
        lock.append(corpus.mbox_bytes(new)[:1000])
        login, sessions = in_thread(lambda: pop())
        time.sleep(0.6)
        assert sessions == [], "PASS went ahead while the MDA held its locks"
        lock.append(corpus.mbox_bytes(new)[1000:])
    login.join(30)
    assert sessions and isinstance(sessions[0], poplib.POP3), sessions
    client = sessions[0]
    assert client.stat()[0] == 13
    got = [retr(client, n) for n in range(1, 14)]
    assert client.quit().startswith(b"+OK ")
    C.check_downloads(got, by_id(msgs + new))


def test_fetchmail_without_keep_deletes_what_it_fetched(mailhost, server, work, long_lines,
                                                       pop):
    msgs = deliver(mailhost, 30)
    # A first session gives the messages their UIDs (written back at QUIT).
    client = pop()
    numbered = uidl_map(client)
    assert client.quit().startswith(b"+OK ")
    uids = {m.message_id: numbered[n] for n, m in enumerate(msgs, 1)}
    # fetchmail has seen every third message already: it leaves those alone.
    old = [m for n, m in enumerate(msgs, 1) if n % 3 == 0]
    ids = work / "fetchmail.ids"
    ids.write_bytes(b"".join(b"alice@127.0.0.1 " + uids[m.message_id] + b"\n" for m in old))
    os.chmod(ids, 0o600)
    result = C.fetchmail(server.port, work / "out", work, keep=False, uidl=True)
    log = result.stdout + result.stderr
    fresh = [m for n, m in enumerate(msgs, 1) if n % 3]
    assert log.count(b"POP3> DELE ") == len(fresh), log.decode("latin-1")

    # What it fetched carries the Status: U the first QUIT wrote.
    got = C.check_downloads(C.read_outputs(work / "out"),
                            {m.message_id: C.with_status(m.data, b"U") for m in fresh})
    assert got == {m.message_id: uids[m.message_id] for m in fresh}
    # The spool holds exactly what fetchmail had already seen, unchanged.
    assert_spool(mailhost, spool_after_update(old, uids, set()))


# --- 4. pipelining: many commands in one write, the replies in order ---------------------

def test_pipelined_commands_are_answered_in_order(mailhost, server):
    msgs = deliver(mailhost, 12)
    conv = raw_connect(server.port)
    try:
        assert conv.greeting.startswith(b"+OK ")
        conv.send(b"CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nLIST 2\r\nUIDL\r\n"
                  + b"".join(b"RETR %d\r\n" % n for n in range(1, 13))
                  + b"RETR 13\r\nTOP 4 0\r\nDELE 3\r\nRETR 3\r\nLIST 99\r\nNOOP\r\n"
                  b"RSET\r\nDELE 1\r\nQUIT\r\n")
        assert conv.line() == b"+OK Capability list follows"
        assert b"PIPELINING" in conv.multiline()
        assert conv.line().startswith(b"+OK ")                      # USER
        logged_in, stat, list_2 = conv.line(), conv.line(), conv.line()
        assert conv.line() == b"+OK uidl command accepted."
        uids = [line.split(b" ", 1)[1] for line in conv.multiline()]
        assert len(uids) == 12
        # Sizes: CRLF line ends, plus the X-UIDL: line.
        sizes = [len(C.with_uidl(m.data, uid)) + m.data.count(b"\n") + 1
                 for m, uid in zip(msgs, uids)]
        assert logged_in == b"+OK alice has 12 visible messages (0 hidden) in %d octets." % (
            sum(sizes))
        assert stat == b"+OK 12 %d" % sum(sizes)
        assert list_2 == b"+OK 2 %d" % sizes[1]
        outputs = []
        for n in range(1, 13):
            assert conv.line() == b"+OK %d octets" % sizes[n - 1]
            lines = conv.multiline()
            assert sum(len(line) + 2 for line in lines) == sizes[n - 1]
            outputs.append(b"".join(line + b"\n" for line in lines))
        got = C.check_downloads(outputs, by_id(msgs))
        assert [got[m.message_id] for m in msgs] == uids
        assert conv.line().startswith(b"-ERR ")                     # RETR 13
        assert conv.line() == b"+OK Message follows"                # TOP 4 0
        top = b"".join(line + b"\n" for line in conv.multiline())
        assert top == C.with_uidl(C.split_header(msgs[3].data)[0] + b"\n", uids[3])
        assert conv.line() == b"+OK Message 3 has been deleted."
        assert conv.line() == b"-ERR Message 3 has been deleted."
        assert conv.line().startswith(b"-ERR ")                     # LIST 99
        assert conv.line() == b"+OK no big woop"
        assert conv.line().startswith(b"+OK Maildrop has 12 messages")
        assert conv.line() == b"+OK Message 1 has been deleted."
        assert conv.line().startswith(b"+OK Pop server at ")        # QUIT
        assert conv.closed()
    finally:
        conv.close()
    assert C.spool_message_ids(mailhost.spool().read_bytes()) == [
        m.message_id for m in msgs[1:]]


def test_commands_split_across_writes(mailhost, server):
    deliver(mailhost, 3)
    conv = raw_connect(server.port)
    try:
        for chunk in (b"US", b"ER ali", b"ce\r", b"\nPASS secret\r\nST", b"AT\r\nNO", b"OP\r\n",
                      b"QUIT\r\n"):
            conv.send(chunk)
            time.sleep(0.02)
        assert conv.line().startswith(b"+OK ")
        assert conv.line().startswith(b"+OK alice has 3 visible messages")
        assert conv.line().startswith(b"+OK 3 ")
        assert conv.line() == b"+OK no big woop"
        assert conv.line().startswith(b"+OK Pop server at ")
    finally:
        conv.close()


def test_many_retrs_in_one_write_without_reading(mailhost, server):
    """Like mpop: every RETR of the mailbox in one write, then read."""
    msgs = deliver(mailhost)
    conv = raw_connect(server.port)
    try:
        conv.login()
        conv.send(b"".join(b"RETR %d\r\n" % n for n in range(1, COUNT + 1)) + b"QUIT\r\n")
        outputs = []
        for _ in range(COUNT):
            assert conv.line().endswith(b" octets")
            outputs.append(b"".join(line + b"\n" for line in conv.multiline()))
        assert conv.line().startswith(b"+OK Pop server at ")
    finally:
        conv.close()
    C.check_downloads(outputs, by_id(msgs))

