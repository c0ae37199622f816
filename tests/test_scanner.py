"""The mailbox scanner: its rules, its pure and native twins agreeing, and the
octets it counts being exactly what RETR sends.

A small reference model in this file (whole file in memory, line by line)
states the rules independently; both twins must match it on a generated
corpus of awkward mailboxes.
"""

import hashlib
import os
import random
import struct

import pytest

from popper import native
from popper.maildrop import render
from popper.maildrop import scan as pure
from popper.maildrop.wire import AFTER_CR, AT_LINE_START
from popper.maildrop import wire as pure_wire

pytestmark = pytest.mark.twin

needs_native = pytest.mark.skipif(not native.BUILT, reason="the C extension is not built")


# --- the From-line test ---------------------------------------------------------------

GOOD_FROM = [
    b"From user Wed Dec  2 05:53 1992",
    b"From user Wed Dec  2 05:53:22 1992",
    b"From user Wed Dec  2 05:53:22 -0700 1992",
    b"From user Wed Dec  2 05:53:22 PST 1992",
    b"From user Wed Dec  2 05:53:22 1992 PST",
    b"From user Wed Dec  2 05:53:22 1992 -0700",
    b"From user Wed Dec  2 05:53:22 1992 remote from host",
    b"From MAILER-DAEMON Thu Nov 26 14:34:16 2026\n",
    b"From a@b.c Thu Nov 26 14:34:16 2026\r\n",
]
BAD_FROM = [
    b"From user Wed Dec 2 05:53 1992",          # a one-digit day must be space-padded
    b"From user",
    b"from user Wed Dec  2 05:53 1992",
    b">From user Wed Dec  2 05:53 1992",
    b"From user Wed Dec  2 0553 1992",
    b"From the desk of the director, the budget for 1992 is",
    b"",
    b"From ",
]


@pytest.mark.parametrize("line", GOOD_FROM)
def test_from_line_accepted(line):
    assert pure.is_from_line(line)


@pytest.mark.parametrize("line", BAD_FROM)
def test_from_line_refused(line):
    assert not pure.is_from_line(line)


@needs_native
def test_from_line_twins_agree_on_random_lines():
    rng = random.Random(5)
    alphabet = b"From :0123456789 +-abcdefghijklmnopqrstuvwxyzADTPSremotfh\r\n"
    lines = GOOD_FROM + BAD_FROM
    for _ in range(20000):
        base = rng.choice(GOOD_FROM)
        mutated = bytearray(base)
        for _ in range(rng.randrange(1, 4)):
            op = rng.randrange(3)
            i = rng.randrange(len(mutated) + 1)
            if op == 0 and mutated:
                del mutated[min(i, len(mutated) - 1)]
            elif op == 1:
                mutated.insert(i, rng.choice(alphabet))
            elif mutated:
                mutated[min(i, len(mutated) - 1)] = rng.choice(alphabet)
        lines.append(bytes(mutated))
    for line in lines:
        assert bool(native.lib.pn_is_from_line(line, len(line))) == pure.is_from_line(line), line


# --- UIDs -------------------------------------------------------------------------------

def test_uid_encoding_is_qpoppers_base80():
    digest = hashlib.md5(b"x").digest()
    uid = pure.encode_uid(digest)
    assert len(uid) == 20
    assert all(0x21 <= c <= 0x70 or c == 0x7E for c in uid) and b"." not in uid
    # The first group by hand: v = fold of 4 bytes with a 4-bit shift.
    v = 0
    for b in digest[:4]:
        v = (v << 4) + b
    first = bytearray()
    for _ in range(5):
        first.append(0x21 + v % 80)
        v //= 80
    assert uid[:5] == bytes(first).replace(b".", b"~")


@needs_native
def test_uid_encoding_twins_agree():
    for i in range(2000):
        digest = hashlib.md5(b"%d" % i).digest()
        out = native.ffi.new("char[20]")
        native.lib.pn_encode_uid(digest, out)
        assert native.ffi.buffer(out, 20)[:] == pure.encode_uid(digest)


# --- a reference model of the rules --------------------------------------------------

def split_lines(data: bytes):
    out, start = [], 0
    while start < len(data):
        lf = data.find(b"\n", start)
        end = len(data) if lf < 0 else lf + 1
        out.append((start, data[start:end]))
        start = end
    return out


def is_blank(line: bytes) -> bool:
    return line in (b"\n", b"\r\n")


def reference_scan(data: bytes, base_time=0, salted=True, old_style=False, uw=False):
    """(format, [(start, header, body, content_end, end, wire_bytes, flags, uid)])"""
    lines = split_lines(data)
    if not lines:
        return "empty", []
    first = lines[0][1]
    if first.startswith(b"\x01"):
        fmt, sep = "mmdf", first
        if not first.endswith(b"\n") or len(first) > 1023:
            raise pure.NotAMailbox()
    elif len(first) <= 1023 and pure.is_from_line(first):
        fmt, sep = "mbox", None
    else:
        raise pure.NotAMailbox()

    # Which lines start messages, and which are MMDF trailers.
    starts, trailers = [], set()
    if fmt == "mbox":
        prev_blank = True
        for k, (_, line) in enumerate(lines):
            if prev_blank and len(line) <= 1023 and pure.is_from_line(line):
                starts.append(k)
            prev_blank = is_blank(line)
    else:
        inside = False
        for k, (_, line) in enumerate(lines):
            if line == sep:
                (trailers.add(k) if inside else starts.append(k))
                inside = not inside
    messages = []
    for n, k in enumerate(starts):
        nxt = starts[n + 1] if n + 1 < len(starts) else len(lines)
        start = lines[k][0]
        end = lines[nxt][0] if nxt < len(lines) else len(data)
        header = lines[k + 1][0] if k + 1 < len(lines) else len(data)
        trailer = min([t for t in trailers if k < t < nxt], default=None)
        hdr, body = [], None
        for j in range(k + 1, nxt):
            line = lines[j][1]
            if is_blank(line) or j == trailer:
                body = lines[j][0]
                break
            hdr.append(line)
        if body is None:                        # the header runs to the end
            body = content_end = end
        elif fmt == "mmdf":
            content_end = lines[trailer][0] if trailer is not None else end
        elif nxt < len(lines):                  # the blank line before the next From
            content_end = lines[nxt - 1][0]
        else:                                   # a blank last line is not content
            last_at, last = lines[-1]
            content_end = last_at if is_blank(last) and last_at >= body else end
        flags = pure.MMDF_MESSAGE if fmt == "mmdf" else 0
        uid = None
        hints = 0
        for line in hdr:
            if uw and n == 0:
                if line[:9].lower() == b"subject: ":
                    hints += any(t in line for t in (b"DO NOT DELETE", b"FOLDER INTERNAL DATA",
                                                      b"DON'T DELETE THIS MESSAGE"))
                else:
                    hints += line.startswith((b"X-IMAP: ", b"From: Mail System Internal Data"))
            name = line[:16].lower()
            if name.startswith(b"status:"):
                flags |= pure.HAS_STATUS
                if b"R" in line:
                    flags |= pure.SEEN
            if name.startswith(b"x-uidl:") and uid is None:
                uid = pure.uid_from_header(line)
        if hints >= 2:
            flags |= pure.UW_DATA
        if uid is not None:
            flags |= pure.HAS_UIDL
        else:
            sepline = lines[k][1]
            md5 = hashlib.md5(sepline)
            if salted and not old_style:
                md5.update(struct.pack("l", base_time + n + 1))
            for line in hdr:
                if line[:16].lower().startswith(pure.UID_HEADERS):
                    md5.update(line)
            if old_style:
                uid = md5.hexdigest().encode()
            else:
                md5.update(sepline)
                uid = pure.encode_uid(md5.digest())
        messages.append((start, header, body, content_end, end,
                         reference_wire(hdr, data[body:content_end], uid), flags, uid))
    return fmt, messages


def reference_wire(header_lines, body: bytes, uid: bytes) -> bytes:
    """What RETR sends, before dot-stuffing, built line by line."""
    out = []
    placed = False
    for line in header_lines:
        name = line[:16].lower()
        if name.startswith((b"x-uidl:", b"content-length:")):
            continue
        if not placed and name.startswith(b"status:"):
            out.append(b"X-UIDL: " + uid + b"\n")
            placed = True
        out.append(line)
    if out and not out[-1].endswith(b"\n"):
        out.append(b"\n")
    if not placed:
        out.append(b"X-UIDL: " + uid + b"\n")
    text = b"".join(out) + body
    if text and not text.endswith(b"\n"):
        text += b"\n"
    result = bytearray()
    for i, c in enumerate(text):
        if c == 0x0A and (i == 0 or text[i - 1] != 0x0D):
            result += b"\r\n"
        elif c == 0:
            result += b" "
        else:
            result.append(c)
    return bytes(result)


def unstuff(wire: bytes) -> bytes:
    assert wire.endswith(b".\r\n")
    wire = wire[:-3]
    lines = wire.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


# --- awkward mailboxes -----------------------------------------------------------------

HEADER_LINES = [
    b"Subject: hello\n", b"Received: from x by y; Wed, 2 Dec 1992 05:53:22 +0000\n",
    b"Date: Wed, 2 Dec 1992 05:53:22 +0000\n", b"Message-ID: <a@b>\n", b"From: a@b\n",
    b"Status: RO\n", b"Status: O\n", b"status: U\n", b"X-UIDL: 12345678abcdef\n",
    b"X-UIDL: bad value with spaces\n", b"x-uidl:   short1\n", b"X-UIDL: \n",
    b"Content-Length: 12\n", b"content-length: 99999\n", b"X-Long: " + b"y" * 1500 + b"\n",
    b"Subject: crlf\r\n", b"X-Nul: a\x00b\n", b"\tcontinued\n", b"X-CR: a\rb\n",
    b".Dotted-Header: x\n",
    b"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n", b"X-IMAP: 1158 0000000004\n",
    b"From: Mail System Internal Data <MAILER-DAEMON@host>\n", b"subject: do not delete\n",
]
BODY_LINES = [
    b"plain text\n", b".leading dot\n", b".\n", b"..\n", b">From someone\n", b"\n",
    b"From not a separator line at all\n", b"crlf line\r\n", b"\r\n", b"nul\x00byte\n",
    b"bare\rcr\n", b"x" * 1100 + b"\n", b"8bit caf\xe9\n",
    b"From user Wed Dec  2 05:53 1992\n",          # a separator only after a blank line
]


def random_mbox(rng: random.Random, crlf: bool = False) -> bytes:
    parts = []
    for n in range(rng.randrange(0, 7)):
        sep = rng.choice(GOOD_FROM[:7]) + b"\n"
        if crlf and rng.random() < 0.5:
            sep = sep[:-1] + b"\r\n"
        parts.append(sep)
        for _ in range(rng.randrange(0, 6)):
            parts.append(rng.choice(HEADER_LINES))
        if rng.random() < 0.9:
            parts.append(b"\r\n" if crlf and rng.random() < 0.3 else b"\n")
            for _ in range(rng.randrange(0, 12)):
                parts.append(rng.choice(BODY_LINES))
        if rng.random() < 0.85:
            parts.append(b"\n")
    data = b"".join(parts)
    if data and rng.random() < 0.15:
        data = data.rstrip(b"\n")           # no final newline
    return data


def random_mmdf(rng: random.Random) -> bytes:
    sep = b"\x01\x01\x01\x01\n"
    parts = []
    for _ in range(rng.randrange(1, 5)):
        parts.append(sep)
        for _ in range(rng.randrange(0, 4)):
            parts.append(rng.choice(HEADER_LINES))
        if rng.random() < 0.8:
            parts.append(b"\n")
            for _ in range(rng.randrange(0, 6)):
                parts.append(rng.choice(BODY_LINES))
        if rng.random() < 0.9:
            parts.append(sep)
    return b"".join(parts)


def corpus_files():
    rng = random.Random(1939)
    files = [b"", GOOD_FROM[7] + b"Subject: x\n\nbody\n",
             GOOD_FROM[7] + b"Subject: no body, no newline",
             GOOD_FROM[7] + b"\nFrom a Wed Dec  2 05:53 1992\n\nx\n",
             GOOD_FROM[7] + b"Subject: x\n\n\n\n", GOOD_FROM[7] + b"S: x\n\nend\r",
             GOOD_FROM[8] + b"Subject: crlf\r\n\r\nbody\r\n\r\n" + GOOD_FROM[8] + b"S: y\r\n",
             b"\x01\x01\x01\x01\nSubject: m\n\nbody\n\x01\x01\x01\x01\n"]
    files += [random_mbox(rng) for _ in range(300)]
    files += [random_mbox(rng, crlf=True) for _ in range(100)]
    files += [random_mmdf(rng) for _ in range(100)]
    return files


CORPUS = corpus_files()


def _fd_of(tmp_path, data: bytes, name="mbox"):
    path = tmp_path / name
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


_native_scan = pure.native_scan


@pytest.mark.parametrize("salted,old_style,uw,chunk", [(True, False, True, None),
                                                       (False, False, False, 64),
                                                       (True, True, True, 7)])
def test_scanner_matches_the_reference_model(tmp_path, monkeypatch, salted, old_style, uw, chunk):
    if chunk:       # RETR's path for messages larger than CHUNK, on small ones
        monkeypatch.setattr(render, "CHUNK", chunk)
    checked = 0
    for data in CORPUS:
        fd = _fd_of(tmp_path, data)
        try:
            try:
                expected = reference_scan(data, 1000, salted, old_style, uw)
            except pure.NotAMailbox:
                with pytest.raises(pure.NotAMailbox):
                    pure.pure_scan(fd, base_time=1000, salted=salted, old_style=old_style, uw=uw)
                continue
            result = pure.pure_scan(fd, base_time=1000, salted=salted, old_style=old_style, uw=uw)
            got = [(m.start, m.header, m.body, m.content_end, m.end, m.octets, m.flags, m.uid)
                   for m in result.messages]
            want = [(s, h, b, c, e, len(w), f, u) for s, h, b, c, e, w, f, u in expected[1]]
            assert got == want, data
            assert result.format == expected[0]
            # RETR sends exactly those bytes, and octets counts them.
            for m, exp in zip(result.messages, expected[1]):
                wire = b"".join(render.message_chunks(fd, m))
                assert unstuff(wire) == exp[5], data
            checked += 1
        finally:
            os.close(fd)
    assert checked > 400


@needs_native
@pytest.mark.parametrize("salted,old_style,uw", [(True, False, True), (False, False, False),
                                                 (True, True, False)])
def test_native_and_pure_scanners_agree(tmp_path, salted, old_style, uw):
    for data in CORPUS:
        fd = _fd_of(tmp_path, data)
        try:
            try:
                a = pure.pure_scan(fd, base_time=77, salted=salted, old_style=old_style, uw=uw)
            except pure.NotAMailbox:
                with pytest.raises(pure.NotAMailbox):
                    _native_scan(fd, base_time=77, salted=salted, old_style=old_style, uw=uw)
                continue
            b = _native_scan(fd, base_time=77, salted=salted, old_style=old_style, uw=uw)
            assert [m.as_tuple() for m in a.messages] == [m.as_tuple() for m in b.messages], data
            assert (a.format, a.separator) == (b.format, b.separator)
        finally:
            os.close(fd)


def test_big_lines_across_the_read_window(tmp_path, monkeypatch):
    """Lines longer than the scanner's windows, and separators on window
    edges, are handled the same as small ones."""
    monkeypatch.setattr(pure, "WINDOW", 4096)
    monkeypatch.setattr(pure, "LINE_WINDOW", 512)
    rng = random.Random(3)
    for _ in range(40):
        parts = []
        for n in range(rng.randrange(1, 5)):
            parts.append(GOOD_FROM[7])
            parts.append(b"Subject: " + b"s" * rng.randrange(0, 3000) + b"\n")
            parts.append(b"X-UIDL: uid%d\n" % n if rng.random() < 0.5 else b"Date: x\n")
            parts.append(b"Status: " + b"R" * rng.randrange(0, 2) + b"x" * rng.randrange(0, 2000)
                         + b"\n")
            parts.append(b"\n")
            for _ in range(rng.randrange(0, 30)):
                parts.append(b"b" * rng.randrange(0, 900) + rng.choice([b"\n", b"\r\n"]))
            parts.append(b"\n")
        data = b"".join(parts)
        fd = _fd_of(tmp_path, data)
        try:
            expected = reference_scan(data, 5)
            got = pure.pure_scan(fd, base_time=5).messages
            assert [(m.start, m.body, m.content_end, m.end, m.octets, m.flags, m.uid)
                    for m in got] == [(s, b, c, e, len(w), f, u)
                                      for s, h, b, c, e, w, f, u in expected[1]]
        finally:
            os.close(fd)


def test_not_a_mailbox(tmp_path):
    fd = _fd_of(tmp_path, b"Subject: no From line\n\nbody\n")
    try:
        with pytest.raises(pure.NotAMailbox):
            pure.pure_scan(fd)
    finally:
        os.close(fd)


def test_scan_from_an_offset_and_up_to_a_limit(tmp_path):
    one = GOOD_FROM[7] + b"Subject: 1\n\nbody one\n\n"
    two = GOOD_FROM[7] + b"Subject: 2\n\nbody two\n\n"
    fd = _fd_of(tmp_path, one + two + b"From partial")
    try:
        result = pure.pure_scan(fd, start=len(one), limit=len(one) + len(two))
        assert [(m.start, m.end) for m in result.messages] == [(len(one), len(one) + len(two))]
    finally:
        os.close(fd)


# --- the wire encoder --------------------------------------------------------------------

def reference_encode(data: bytes) -> bytes:
    out = bytearray()
    for i, c in enumerate(data):
        if (i == 0 or data[i - 1] == 0x0A) and c == 0x2E:
            out.append(0x2E)
        if c == 0x0A and (i == 0 or data[i - 1] != 0x0D):
            out += b"\r\n"
        else:
            out.append(0x20 if c == 0 else c)
    return bytes(out)


def _encode_in_pieces(encode, data: bytes, cuts):
    state = AT_LINE_START
    out = b""
    last = 0
    for cut in sorted(cuts) + [len(data)]:
        piece, state = encode(data[last:cut], state)
        out += piece
        last = cut
    return out, state


def test_wire_encoding_in_any_pieces():
    rng = random.Random(9)
    encoders = [pure_wire.pure_wire_encode]
    if native.BUILT:
        encoders.append(native.wire_encode)
    for _ in range(3000):
        data = bytes(rng.choice(b"ab.\r\n\x00") for _ in range(rng.randrange(0, 40)))
        cuts = [rng.randrange(len(data) + 1) for _ in range(rng.randrange(0, 4))]
        expected = reference_encode(data)
        for encode in encoders:
            out, state = _encode_in_pieces(encode, data, cuts)
            assert out == expected, (encode, data, cuts)
            if data:
                assert bool(state & AT_LINE_START) == data.endswith(b"\n")
                assert bool(state & AFTER_CR) == data.endswith(b"\r")


def test_a_first_line_longer_than_the_window_is_no_mailbox_in_both(tmp_path):
    """A scan that starts on a line longer than the read window (a piece
    that begins inside a huge line): the C twin read it whole into its
    fixed buffer (heap corruption); both answer NotAMailbox."""
    line = b"b" * (3 << 20)
    for data in (line, b"\x01\x01\x01\x01" + line + b"\n", b"From " + line):
        fd = _fd_of(tmp_path, b"From a Wed Dec  2 05:53:22 1992\n\n" + data + b"\n")
        try:
            for twin in [pure.pure_scan] + ([pure.native_scan] if native.BUILT else []):
                with pytest.raises(pure.NotAMailbox):
                    twin(fd, start=33)
        finally:
            os.close(fd)
