"""The one importer of the compiled module popper._cpopper.

Every native function has a pure-Python twin; this module hands out the
native one when the extension is built and POPPER_PUREPYTHON is not set,
the twin otherwise.  The native functions (_native_*) stay reachable when
the extension is built, so the parity tests compare both in either case.  Callers use only the names defined here:

  scan(fd, ...)             the mailbox scanner      (maildrop/scan.py)
  wire_encode(data, state)  mail to wire bytes       (maildrop/wire.py)
  crypt(password, setting)  crypt_r                  (auth/cryptpw.py)
"""

from __future__ import annotations

import os

from popper.auth import cryptpw
from popper.maildrop import scan as pure_scan
from popper.maildrop import wire as pure_wire

try:
    from popper._cpopper import ffi, lib
except ImportError:
    ffi = lib = None

BUILT = lib is not None                                       # the extension is there
NATIVE = BUILT and not os.environ.get("POPPER_PUREPYTHON")   # ... and in use

_FORMATS = {0: pure_scan.EMPTY, 1: pure_scan.MBOX, 2: pure_scan.MMDF}


def _native_scan(fd: int, start: int = 0, limit: int = None, base_time: int = 0,
                 salted: bool = True, old_style: bool = False,
                 uw: bool = False) -> pure_scan.ScanResult:
    result = ffi.new("pn_scan_result *")
    rc = lib.pn_scan(fd, start, -1 if limit is None else limit, base_time,
                     int(salted), int(old_style), int(uw), result)
    try:
        if rc == lib.PN_NOT_A_MAILBOX:
            raise pure_scan.NotAMailbox("the first line is not a separator line")
        if rc == lib.PN_IO_ERROR:
            raise OSError(result.error, os.strerror(result.error))
        if rc == lib.PN_NO_MEMORY:
            raise MemoryError("scanning the mailbox")
        messages = _table(result.messages, result.count)
        separator = ffi.unpack(result.separator, result.separator_len)
        return pure_scan.ScanResult(_FORMATS[result.format], separator, messages)
    finally:
        lib.pn_scan_free(result)


def _table(array_of_structs, count: int) -> pure_scan.MessageTable:
    """Columns from the C array of pn_message, through a memoryview (no copy)."""
    table = pure_scan.MessageTable()
    size = ffi.sizeof("pn_message")
    raw = memoryview(ffi.buffer(array_of_structs, size * count))
    as_int64, as_int32 = raw.cast("q"), raw.cast("i")
    per64, per32 = size // 8, size // 4
    for k, name in enumerate(table.COLUMNS):
        getattr(table, name).extend(as_int64[k::per64])
    flags_at = ffi.offsetof("pn_message", "flags") // 4
    table.flags.extend(as_int32[flags_at::per32])
    uid_at, lengths = ffi.offsetof("pn_message", "uid"), as_int32[flags_at + 1::per32]
    table.uid = [raw[i * size + uid_at:i * size + uid_at + n].tobytes()
                 for i, n in enumerate(lengths)]
    return table


class _WireBuffer:
    """A reusable output buffer for pn_wire_encode."""
    size = 0
    buf = None


_wire_buffer = _WireBuffer()


def _native_wire_encode(data: bytes, state: int):
    need = 2 * len(data) + 2
    if _wire_buffer.size < need:
        _wire_buffer.size = max(need, 1 << 20)
        _wire_buffer.buf = ffi.new("char[]", _wire_buffer.size)
    st = ffi.new("int *", state)
    n = lib.pn_wire_encode(data, len(data), _wire_buffer.buf, st)
    return ffi.buffer(_wire_buffer.buf, n)[:], st[0]


def _native_crypt(password: bytes, setting: bytes):
    if b"\0" in password or b"\0" in setting:
        return None
    data = ffi.new("struct crypt_data *")
    result = lib.crypt_r(password, setting, data)
    if result == ffi.NULL:
        return None
    return cryptpw._checked(ffi.string(result))


if NATIVE:
    scan = _native_scan
    wire_encode = _native_wire_encode
    crypt = _native_crypt
else:
    scan = pure_scan.scan
    wire_encode = pure_wire.wire_encode
    crypt = cryptpw.crypt

NotAMailbox = pure_scan.NotAMailbox
