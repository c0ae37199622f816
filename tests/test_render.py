"""The header RETR sends and the header written back at QUIT, on the
awkward cases: several X-UIDL: and Status: lines, CRLF, no final LF."""

import os

import pytest

from popper.maildrop import render
from popper.maildrop.scan import Message

pytestmark = pytest.mark.twin

UID = b"abcdefghijklmnopqrst"


def header_of(tmp_path, header: bytes) -> tuple:
    path = tmp_path / "drop"
    path.write_bytes(header)
    fd = os.open(path, os.O_RDONLY)
    return fd, Message(0, 0, len(header), len(header), len(header), 0, 0, UID)


@pytest.mark.parametrize("header,retr", [
    (b"A: 1\nB: 2\n", b"A: 1\nB: 2\nX-UIDL: " + UID + b"\n"),
    (b"x-uidl: old\nA: 1\nStatus: O\nstatus: R\n",
     b"A: 1\nX-UIDL: " + UID + b"\nStatus: O\nstatus: R\n"),
    (b"Content-Length: 5\r\nA: 1\r\nX-UIDL: x\r\n", b"A: 1\r\nX-UIDL: " + UID + b"\n"),
    (b"A: no final line end", b"A: no final line end\nX-UIDL: " + UID + b"\n"),
    (b"", b"X-UIDL: " + UID + b"\n"),
    (b"X-UIDLS: kept\nStatusbar: kept\n", b"X-UIDLS: kept\nStatusbar: kept\nX-UIDL: " + UID
     + b"\n"),
])
def test_retr_header(tmp_path, header, retr):
    fd, msg = header_of(tmp_path, header)
    try:
        assert render.retr_header(render.header_blocks(fd, msg.header, msg.body), msg.uid) == retr
        assert render.retr_header([header], UID) == retr
    finally:
        os.close(fd)


@pytest.mark.parametrize("header,seen,eol,written", [
    (b"A: 1\n", False, b"\n", b"X-UIDL: " + UID + b"\nA: 1\nStatus: U\n"),
    (b"A: 1\n", True, b"\n", b"X-UIDL: " + UID + b"\nA: 1\nStatus: RO\n"),
    (b"X-UIDL: old\nA: 1\nStatus: O\nX-UIDL: older\n", False, b"\n",
     b"X-UIDL: " + UID + b"\nA: 1\nStatus: O\n"),
    (b"A: 1\nStatus: O\nB: 2\n", True, b"\n", b"X-UIDL: " + UID + b"\nA: 1\nStatus: RO\nB: 2\n"),
    (b"A: 1\r\nStatus: O\r\n", True, b"\r\n", b"X-UIDL: " + UID + b"\r\nA: 1\r\nStatus: RO\r\n"),
    (b"A: cut", False, b"\n", b"X-UIDL: " + UID + b"\nA: cut\nStatus: U\n"),
])
def test_rewritten_header(tmp_path, header, seen, eol, written):
    fd, msg = header_of(tmp_path, header)
    try:
        blocks = render.header_blocks(fd, msg.header, msg.body)
        assert render.rewritten_header(blocks, msg.uid, seen, eol) == written
    finally:
        os.close(fd)


def test_headers_larger_than_one_block(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "HEADER_PIECE", 64)
    lines = [b"H%03d: %s\n" % (i, b"v" * (i % 90)) for i in range(200)]
    lines[57] = b"X-UIDL: old\n"
    lines[120] = b"Status: O\n"
    lines[150] = b"Content-Length: 9\n"
    header = b"".join(lines)
    fd, msg = header_of(tmp_path, header)
    try:
        expected = b"".join(lines[:57] + lines[58:120] + [b"X-UIDL: " + UID + b"\n"]
                            + lines[120:150] + lines[151:])
        assert render.retr_header(render.header_blocks(fd, msg.header, msg.body), UID) == expected
    finally:
        os.close(fd)


# --- reset update-status-headers (issue 12, finding 8) ---------------------------------
# pop_updt.c (4.0.5) writes "X-UIDL: <uid>" after every separator and turns the
# Status: line of a retrieved message into "Status: RO" whatever
# bUpdate_status_hdrs says; only the Status: line it inserts where there was
# none ("Status: RO" / "Status: U") depends on it.

@pytest.mark.parametrize("header,seen,written", [
    (b"A: 1\n", False, b"X-UIDL: " + UID + b"\nA: 1\n"),
    (b"A: 1\n", True, b"X-UIDL: " + UID + b"\nA: 1\n"),
    (b"X-UIDL: old\nA: 1\nStatus: O\n", False, b"X-UIDL: " + UID + b"\nA: 1\nStatus: O\n"),
    (b"A: 1\nStatus: O\nB: 2\n", True, b"X-UIDL: " + UID + b"\nA: 1\nStatus: RO\nB: 2\n"),
])
def test_rewritten_header_without_status_headers(header, seen, written):
    assert render.rewritten_header([header], UID, seen, b"\n", add_status=False) == written


SPOOL = (b"From a@example.com Mon Dec  1 10:00:00 2026\n"
         b"Subject: one\nStatus: O\n\nbody one\n\n"
         b"From b@example.com Mon Dec  1 10:01:00 2026\n"
         b"Subject: two\n\nbody two\n\n"
         b"From c@example.com Mon Dec  1 10:02:00 2026\n"
         b"X-UIDL: kept-uid-three\nSubject: three\nStatus: O\n\nbody three\n\n"
         b"From d@example.com Mon Dec  1 10:03:00 2026\n"
         b"Subject: four\n\nbody four\n\n")


def _reset_session(make_session, spool, server_mode: bool, commands: bytes):
    from popper.settings import Settings
    from test_session import login, run
    s = Settings()
    s.update_status_headers = False
    s.server_mode = server_mode
    session, _ = make_session(s, mail=SPOOL)
    login(session)
    uids = [line.split(b" ")[1] for line in
            b"".join(run(session, b"UIDL\r\n")).split(b"\r\n")[1:-2]]
    assert run(session, commands + b"QUIT\r\n")[-1].startswith(b"+OK")
    return uids, (spool / "alice").read_bytes()


def test_reset_update_status_headers_still_writes_x_uidl_and_status_ro(make_session, spool):
    """Normal mode: RETR 1 and 2, message 3 read before (its X-UIDL kept),
    4 untouched: X-UIDL first in each, 1's Status: O -> RO, none added."""
    uids, written = _reset_session(make_session, spool, False, b"RETR 1\r\nRETR 2\r\n")
    assert uids[2] == b"kept-uid-three"
    assert written == (
        b"From a@example.com Mon Dec  1 10:00:00 2026\n"
        b"X-UIDL: %s\nSubject: one\nStatus: RO\n\nbody one\n\n"
        b"From b@example.com Mon Dec  1 10:01:00 2026\n"
        b"X-UIDL: %s\nSubject: two\n\nbody two\n\n"
        b"From c@example.com Mon Dec  1 10:02:00 2026\n"
        b"X-UIDL: kept-uid-three\nSubject: three\nStatus: O\n\nbody three\n\n"
        b"From d@example.com Mon Dec  1 10:03:00 2026\n"
        b"X-UIDL: %s\nSubject: four\n\nbody four\n\n") % (uids[0], uids[1], uids[3])


def test_reset_update_status_headers_uids_are_those_of_the_next_session(make_session, spool):
    """Unsalted UIDs (the mail alone): what is written is what is computed."""
    first, _ = _reset_session(make_session, spool, False, b"")
    again, _ = _reset_session(make_session, spool, False, b"")
    assert first == again


def test_reset_update_status_headers_server_mode_rewrites_only_for_a_delete(make_session,
                                                                            spool):
    """Server mode: a RETR alone leaves the spool as it was (pop_updt.c: not
    dirty); a DELE rewrites it as normal mode does."""
    _, written = _reset_session(make_session, spool, True, b"RETR 1\r\nRETR 2\r\n")
    assert written == SPOOL
    uids, written = _reset_session(make_session, spool, True, b"RETR 1\r\nDELE 4\r\n")
    assert written == (
        b"From a@example.com Mon Dec  1 10:00:00 2026\n"
        b"X-UIDL: %s\nSubject: one\nStatus: RO\n\nbody one\n\n"
        b"From b@example.com Mon Dec  1 10:01:00 2026\n"
        b"X-UIDL: %s\nSubject: two\n\nbody two\n\n"
        b"From c@example.com Mon Dec  1 10:02:00 2026\n"
        b"X-UIDL: kept-uid-three\nSubject: three\nStatus: O\n\nbody three\n\n") % (
            uids[0], uids[1])
