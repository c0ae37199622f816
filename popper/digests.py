"""MD5, SHA-256, HMAC and a constant-time compare for a session, without
hashlib: hashlib and hmac load OpenSSL's libcrypto (_hashlib), about 3 ms
of every inetd connection, for what the interpreter's own C modules (_md5,
_sha256, or _sha2 from 3.12) compute alike.  hashlib only where those are
not built; SCRAM's PBKDF2 (auth/sasl.py) imports it when it runs."""

try:
    from _md5 import md5
except ImportError:                 # (an interpreter built without its own hashes)
    from hashlib import md5
try:
    from _sha2 import sha256
except ImportError:
    try:
        from _sha256 import sha256
    except ImportError:
        from hashlib import sha256
from _operator import _compare_digest as compare_digest     # hmac.compare_digest's own

__all__ = ["md5", "sha256", "compare_digest", "hmac"]

_BLOCK = 64                         # MD5's and SHA-256's block, in bytes
_INNER = bytes(x ^ 0x36 for x in range(256))
_OUTER = bytes(x ^ 0x5C for x in range(256))


def hmac(key: bytes, message: bytes, new) -> bytes:
    """RFC 2104's HMAC of message under key, with new (md5 or sha256)."""
    if len(key) > _BLOCK:
        key = new(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = new(key.translate(_INNER))
    inner.update(message)
    outer = new(key.translate(_OUTER))
    outer.update(inner.digest())
    return outer.digest()
