"""popper/digests.py (MD5, SHA-256, HMAC without hashlib) and log.trace()
(format_exc without the traceback module) give what the stdlib gives."""

import hashlib
import hmac
import traceback

import pytest

from popper import digests
from popper.log import trace


@pytest.mark.parametrize("key", [b"", b"k", b"x" * 63, b"x" * 64, b"x" * 65, bytes(range(256))])
@pytest.mark.parametrize("message", [b"", b"<1896.697170952@dbc.mtview.ca.us>", b"\0\xff" * 999])
def test_hmac_is_rfc_2104s(key, message):
    assert digests.hmac(key, message, digests.md5) == hmac.new(key, message, hashlib.md5).digest()
    assert (digests.hmac(key, message, digests.sha256)
            == hmac.new(key, message, hashlib.sha256).digest())


def test_the_hashes_and_the_compare_are_hashlibs():
    for data in (b"", b"abc", b"\n" * 100000):
        assert digests.md5(data).hexdigest() == hashlib.md5(data).hexdigest()
        assert digests.sha256(data).digest() == hashlib.sha256(data).digest()
    assert digests.compare_digest(b"abc", b"abc") and not digests.compare_digest(b"abc", b"abd")
    assert not digests.compare_digest(b"abc", b"ab")


def _lines_without_source(text: str) -> str:
    """format_exc's text less its source lines (and 3.11's ^^^ marks)."""
    return "".join(line for line in text.splitlines(True)
                   if not line.startswith("    "))


def _fail(kind):
    if kind == "plain":
        raise ValueError("bad value")
    if kind == "cause":
        try:
            _fail("plain")
        except ValueError as exc:
            raise KeyError("k") from exc
    if kind == "context":
        try:
            _fail("plain")
        except ValueError:
            {}["missing"]
    if kind == "suppressed":
        try:
            _fail("plain")
        except ValueError:
            raise OSError(2, "No such file") from None
    if kind == "empty":
        raise RuntimeError()


@pytest.mark.parametrize("kind", ["plain", "cause", "context", "suppressed", "empty"])
def test_trace_is_format_exc_without_the_source_lines(kind):
    try:
        _fail(kind)
    except Exception:
        ours, theirs = trace(), traceback.format_exc()
    assert ours == _lines_without_source(theirs)
