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
