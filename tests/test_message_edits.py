"""A kept message's edits at QUIT (its separator line, header, ending):
_native/rewrite.c and its pure twin, rewrite.pure_message_edits, agree on
every input, hostile ones too; and the edits are what the general path
(a message too large for the window) writes."""

import random

import pytest

from popper import native
from popper.maildrop import rewrite
from popper.maildrop.scan import MMDF_MESSAGE, UW_DATA

pytestmark = pytest.mark.twin

needs_native = pytest.mark.skipif(not native.BUILT, reason="the C extension is not built")

SEP = b"\x01\x01\x01\x01\n"
LINES = [b"Status: R\n", b"status:\n", b"STATUS: O\r\n", b"X-UIDL: abc\n", b"x-uidl:\n",
         b"X-UIDLx: no\n", b"Subject: status: x-uidl:\n", b" Status: folded\n",
         b"Received: x\r\n", b"Status:", b"X-UIDL: cut", b"\r\n", b"\n", b"", b"\0\xff\n",
         b"statu\n", b"Status: RO\n", b"Status: U\n"]


def random_message(rnd):
    """(data, at, length, header, body, content_end, flags, mmdf) of a
    message with hostile lines, at a random place in some bytes."""
    mmdf = rnd.random() < 0.3
    flags = rnd.choice([0, UW_DATA, 2, 1]) | (MMDF_MESSAGE if rnd.random() < (0.9 if mmdf
                                                                            else 0.1) else 0)
    sep = rnd.choice([SEP, b"From a@b Mon Jan  1 00:00:00 2024\n",
                      b"From a@b Mon Jan  1 00:00:00 2024\r\n", b"From x", b""])
    head = b"".join(rnd.choice(LINES) for _ in range(rnd.randint(0, 8)))
    body = b"".join(rnd.choice([b"\n", b"text\n", b"\r\n", b".\n", b"x"])
                    for _ in range(rnd.randint(0, 6)))
    tail = rnd.choice([b"", b"\n", b"\r\n", SEP, SEP + b"junk", b"\x01\x01", b"\n\n"])
    before, after = bytes(rnd.randint(0, 3)), bytes(rnd.randint(0, 3))
    data = before + sep + head + body + tail + after
    at = len(before)
    header, bodyat = len(sep), len(sep) + len(head)
    content_end = bodyat + len(body)
    return (data, at, len(sep + head + body + tail), header, bodyat, content_end, flags,
            SEP if mmdf else None)


@needs_native
def test_the_twins_agree_on_random_hostile_messages():
    rnd = random.Random(7)
    for _ in range(5000):
        data, at, length, header, body, content_end, flags, mmdf = random_message(rnd)
        uid = rnd.choice([b"abc", b"x" * 70, b""])
        for seen in (False, True):
            for headers in (False, True):
                for add in (False, True):
                    args = (data, at, length, header, body, content_end, flags, uid, seen,
                            headers, add, mmdf)
                    assert native.message_edits(*args) == rewrite.pure_message_edits(*args), \
                        args


@needs_native
@pytest.mark.parametrize("bad", [(-1, 5, 0, 0, 0), (0, 99, 0, 0, 0), (0, 10, 5, 3, 4),
                                 (0, 10, 0, 0, 11), (0, 10, 4, 5, 3)])
def test_the_twins_refuse_the_same_offsets(bad):
    data = b"From a\nS: x\n\nbody\n"
    at, length, header, body, content_end = bad
    for twin in (native.message_edits, rewrite.pure_message_edits):
        with pytest.raises(ValueError):
            twin(data, at, length, header, body, content_end, 0, b"u", True, True, True, None)


def test_the_edits_are_what_the_general_path_writes(tmp_path, monkeypatch):
    """The same messages through _message_pieces with the edits (the
    message within the window) and without (as for a large message)."""
    import os

    class Settings:
        update_status_headers = True

    class Drop:
        settings = Settings()

    class Msg:
        pass

    rnd = random.Random(11)
    path = str(tmp_path / "f")
    for _ in range(300):
        data, at, length, header, body, content_end, flags, mmdf = random_message(rnd)
        if bool(flags & MMDF_MESSAGE) != bool(mmdf):
            continue
        with open(path, "wb") as f:
            f.write(data)
        msg = Msg()
        msg.start, msg.end = at, at + length
        msg.header, msg.body, msg.content_end = at + header, at + body, at + content_end
        msg.flags, msg.uid = flags, b"uid"
        fd = os.open(path, os.O_RDONLY)
        try:
            for seen in (False, True):
                args = (fd, Drop(), msg, seen, True, rewrite._Window(fd), mmdf)
                small = list(rewrite._message_pieces(*args))
                with monkeypatch.context() as m:
                    m.setattr(rewrite, "SMALL_BODY", -1)
                    general = list(rewrite._message_pieces(*args))
                assert small == general
        finally:
            os.close(fd)
