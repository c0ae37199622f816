"""Classic ndbm: the 4.3BSD / SVR4 `<name>.dir` + `<name>.pag` files that
Qpopper keeps its APOP secrets (pop.auth) and bulletin counts (bulldb) in.

    db = ndbm.open(base, flag="r", mode=0o600, byteorder=None, lock=None, timeout=10.0)
    db.fetch(key) / db.store(key, value, replace=True) / db.delete(key) / db.keys()

The format (docs/ndbm.md has it whole): `.pag` is an array of 1024-byte
pages, each a bucket of key/value pairs; `.dir` a bit map saying which
buckets have split.  A key's bucket is found from its hash (dcalchash):
for hmask = 0, 1, 3, 7, ... the bucket is hash & hmask, as long as bit
(hash & hmask) + hmask of the map is set.  A full page splits: the pairs
whose key hash has the bit hmask + 1 move to page bucket + hmask + 1.

Every operation reads what it needs from the files (nothing is cached
between calls, so a lock holder sees the last writer's work) and every page
is checked as it is read: a corrupted page raises Corrupt, never an
IndexError, a crash or a loop.  The C twin (_native/ndbm.c, through
popper.native) does the same work on the same fds and writes the same
bytes; the choice between them is made at the bottom of this file.
"""

import errno
import fcntl
import os
import struct
import sys
import time

PBLKSIZ = 1024              # a .pag page
DBLKSIZ = 4096              # a .dir block: read and written whole
MAX_PAIR = PBLKSIZ - 7      # key + value bytes that fit an empty page (additem's rule)
HASH_MASK = 0xFFFFFFFF      # dcalchash is a C long: 32 bits on the hosts that made the files
LEVELS = 33                 # hmask = 0, 1, 3, ... 2**32 - 1: a deeper map is corrupt
LOCK_POLL = 0.05

MODES = {"r": os.O_RDONLY, "w": os.O_RDWR, "c": os.O_RDWR | os.O_CREAT,
         "n": os.O_RDWR | os.O_CREAT}


class Error(Exception):
    """Any ndbm failure other than an I/O error (OSError)."""


class Corrupt(Error):
    """A page or the bit map is not what ndbm writes."""

    def __init__(self, reason: str, page: int = None):
        self.reason, self.page = reason, page
        where = "the .dir bit map" if page is None else ".pag page %d" % page
        super().__init__("corrupted ndbm file: %s: %s" % (where, reason))


class TooBig(Error):
    """The pair cannot be given a page: key + value over MAX_PAIR bytes, or
    a full page whose keys all hash like the new one (no split can help)."""


class Locked(Error):
    """The flock on the .dir file was not had before the timeout."""


# Why a page is refused; the C twin returns the same numbers (PN_NDBM_* in
# _native/ndbm.c), so both raise the same text.
CORRUPT_REASONS = {
    1: "the item count is odd or negative",
    2: "the item count runs past the page",
    3: "the item offsets are out of order",
    4: "the items overlap the offset table",
    5: "the bit map is deeper than the 32-bit hash",
}
NO_ROOM = "no room for the pair: every key on its page hashes like it"


# -- the hash ----------------------------------------------------------------

HITAB = (61, 57, 53, 49, 45, 41, 37, 33, 29, 25, 21, 17, 13, 9, 5, 1)
HLTAB = (
    0o6100151277, 0o6106161736, 0o6452611562, 0o5001724107,
    0o2614772546, 0o4120731531, 0o4665262210, 0o7347467531,
    0o6735253126, 0o6042345173, 0o3072226605, 0o1464164730,
    0o3247435524, 0o7652510057, 0o1546775256, 0o5714532133,
    0o6173260402, 0o7517101630, 0o2431460343, 0o1743245566,
    0o0261675137, 0o2433103631, 0o3421772437, 0o4447707466,
    0o4435620103, 0o3757017115, 0o3641531772, 0o6767633246,
    0o2673230344, 0o0260612216, 0o4133454451, 0o0615531516,
    0o6137717526, 0o2574116560, 0o2304023373, 0o7061702261,
    0o5153031405, 0o5322056705, 0o7401116734, 0o6552375715,
    0o6165233473, 0o5311063631, 0o1212221723, 0o1052267235,
    0o6000615237, 0o1075222665, 0o6330216006, 0o4402355630,
    0o1451177262, 0o2000133436, 0o6025467062, 0o7121076461,
    0o3123433522, 0o1010635225, 0o1716177066, 0o5161746527,
    0o1736635071, 0o6243505026, 0o3637211610, 0o1756474365,
    0o4723077174, 0o3642763134, 0o5750130273, 0o3655541561,
)


def _byte_steps():
    """dcalchash's two nibble steps for one byte, as a table indexed by
    (hashi mod 64) * 256 + byte: (the new hashi mod 64, what hashl gains).
    Only hashi's low six bits are ever used, and only a byte's nibbles
    (so a signed char hashes like an unsigned one)."""
    table = []
    for hashi in range(64):
        for byte in range(256):
            low = (hashi + HITAB[byte & 15]) & 63
            high = (low + HITAB[byte >> 4]) & 63
            table.append((high << 8, HLTAB[low] + HLTAB[high]))
    return tuple(table)


_STEPS = []        # _byte_steps(), made at the pure hash's first use (5 ms)


def dcalchash(key: bytes) -> int:
    """ndbm's hash of a key, modulo 2**32."""
    hashl = state = 0
    if not _STEPS:
        _STEPS[:] = _byte_steps()
    steps = _STEPS
    for byte in key:
        state, gain = steps[state | byte]
        hashl += gain
    return hashl & HASH_MASK


# -- pages -------------------------------------------------------------------

class _Page:
    """One .pag page: its 1024 bytes and the item offsets of its short
    array (sp[1..n]; item i lies at [off[i], off[i-1]) with off[-1] = 1024).
    Only the count and the live offsets are rewritten: stale offsets and
    freed bytes stay as they were, as in C, so the files are the same."""

    __slots__ = ("buf", "off", "order", "number")

    def __init__(self, buf: bytearray, order: str, number: int):
        self.buf, self.order, self.number = buf, order, number
        count = struct.unpack_from(order + "h", buf)[0]
        if count < 0 or count & 1:
            raise Corrupt(CORRUPT_REASONS[1], number)
        if (count + 1) * 2 > PBLKSIZ:
            raise Corrupt(CORRUPT_REASONS[2], number)
        off = list(struct.unpack_from("%s%dh" % (order, count), buf, 2))
        bound = PBLKSIZ
        for o in off:
            if o > bound:
                raise Corrupt(CORRUPT_REASONS[3], number)
            bound = o
        if bound < (count + 1) * 2:
            raise Corrupt(CORRUPT_REASONS[4], number)
        self.off = off

    def item(self, i: int) -> bytes:
        off = self.off
        return bytes(self.buf[off[i]:off[i - 1] if i else PBLKSIZ])

    def keys(self) -> list:
        return [self.item(i) for i in range(0, len(self.off), 2)]

    def find(self, key: bytes) -> int:
        """The index of the key's item, or -1 (finddatum)."""
        off, buf, size = self.off, self.buf, len(key)
        end = PBLKSIZ
        for i in range(0, len(off), 2):
            start = off[i]
            if end - start == size and buf[start:end] == key:
                return i
            end = off[i + 1]
        return -1

    def delete(self, i: int) -> None:
        """Remove the pair at item i (delitem): the data below it move up."""
        off, buf = self.off, self.buf
        if i + 2 < len(off):
            size = (off[i - 1] if i else PBLKSIZ) - off[i + 1]
            low = off[-1]
            buf[low + size:off[i + 1] + size] = buf[low:off[i + 1]]
            off[i:] = [o + size for o in off[i + 2:]]
        else:
            del off[i:]
        self._pack()

    def add(self, key: bytes, value: bytes) -> bool:
        """Put the pair below the others (additem); False if it does not fit."""
        off, buf = self.off, self.buf
        start = (off[-1] if off else PBLKSIZ) - len(key) - len(value)
        if start <= (len(off) + 3) * 2:
            return False
        split = start + len(value)
        buf[split:split + len(key)] = key
        buf[start:split] = value
        off += (split, start)
        self._pack()
        return True

    def _pack(self) -> None:
        off = self.off
        struct.pack_into("%s%dh" % (self.order, len(off) + 1), self.buf, 0, len(off), *off)


def _read_page(pag_fd: int, number: int, order: str) -> _Page:
    data = os.pread(pag_fd, PBLKSIZ, number * PBLKSIZ)
    # A hole, or a page cut short, reads as an empty page (as dbm_access).
    return _Page(bytearray(data) if len(data) == PBLKSIZ else bytearray(PBLKSIZ), order, number)


def _write_all(fd: int, data, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        if not done:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        view, offset = view[done:], offset + done


def _write_page(pag_fd: int, page: _Page) -> None:
    _write_all(pag_fd, page.buf, page.number * PBLKSIZ)


# -- the bit map ------------------------------------------------------------

class _BitMap:
    """The .dir file's bits, read a 4096-byte block at a time (a block cut
    short reads as zeros, as in getbit); blocks are kept for one operation."""

    __slots__ = ("fd", "blocks")

    def __init__(self, dir_fd: int):
        self.fd, self.blocks = dir_fd, {}

    def _block(self, number: int) -> bytearray:
        block = self.blocks.get(number)
        if block is None:
            data = os.pread(self.fd, DBLKSIZ, number * DBLKSIZ)
            block = bytearray(data) if len(data) == DBLKSIZ else bytearray(DBLKSIZ)
            self.blocks[number] = block
        return block

    def get(self, bit: int) -> bool:
        return bool(self._block(bit >> 15)[(bit >> 3) & (DBLKSIZ - 1)] & (1 << (bit & 7)))

    def set(self, bit: int) -> None:
        """Set the bit and write its whole block (setbit)."""
        number = bit >> 15
        block = self._block(number)
        block[(bit >> 3) & (DBLKSIZ - 1)] |= 1 << (bit & 7)
        _write_all(self.fd, block, number * DBLKSIZ)


def _bucket(bits: _BitMap, hash_: int):
    """(page, hmask) of a hash: dbm_access's walk down the split tree."""
    hmask = 0
    for _ in range(LEVELS):
        page = hash_ & hmask
        if not bits.get(page + hmask):
            return page, hmask
        hmask = (hmask << 1) + 1
    raise Corrupt(CORRUPT_REASONS[5])


# -- the pure engine: one function per operation, on the two fds -----------------
# (native.ndbm_engine has the same functions, written in C.)

def _key_page(dir_fd: int, pag_fd: int, order: str, key: bytes, hash_) -> _Page:
    """The page the key belongs on."""
    number, _ = _bucket(_BitMap(dir_fd), hash_(key))
    return _read_page(pag_fd, number, order)


def fetch(dir_fd: int, pag_fd: int, order: str, key: bytes, hash_=dcalchash):
    page = _key_page(dir_fd, pag_fd, order, key, hash_)
    i = page.find(key)
    return None if i < 0 else page.item(i + 1)


def delete(dir_fd: int, pag_fd: int, order: str, key: bytes, hash_=dcalchash) -> bool:
    page = _key_page(dir_fd, pag_fd, order, key, hash_)
    i = page.find(key)
    if i < 0:
        return False
    page.delete(i)
    _write_page(pag_fd, page)
    return True


def store(dir_fd: int, pag_fd: int, order: str, key: bytes, value: bytes,
          replace: bool, hash_=dcalchash) -> bool:
    """dbm_store: False if the key is there and replace is false.  A pair
    that cannot fit an empty page is refused before anything is changed;
    a split that could not separate the keys is refused (TooBig) instead
    of looping (each split deepens the key's bucket, so LEVELS bound it)."""
    too_big = len(key) + len(value) > MAX_PAIR
    key_hash = hash_(key)
    bits = _BitMap(dir_fd)
    for _ in range(LEVELS + 1):
        number, hmask = _bucket(bits, key_hash)
        page = _read_page(pag_fd, number, order)
        i = page.find(key)
        if i >= 0 and not replace:
            return False
        if too_big:
            raise _too_big(key, value)
        if i >= 0:
            page.delete(i)
        if page.add(key, value):
            _write_page(pag_fd, page)
            return True
        _split(bits, pag_fd, order, page, hmask, key_hash, hash_)
    raise TooBig(NO_ROOM)       # not reached: _bucket refuses a deeper map first


def _too_big(key: bytes, value: bytes) -> TooBig:
    return TooBig("key and value are %d bytes; a page holds at most %d"
                  % (len(key) + len(value), MAX_PAIR))


def _split(bits: _BitMap, pag_fd: int, order: str, page: _Page, hmask: int,
           key_hash: int, hash_) -> None:
    """Move the pairs whose key hash has the bit hmask + 1 to page
    number + hmask + 1 and mark the split in the map."""
    hashes = [hash_(k) for k in page.keys()]
    if hmask == HASH_MASK or all(h == key_hash for h in hashes):
        raise TooBig(NO_ROOM)
    moved = _Page(bytearray(PBLKSIZ), order, page.number + hmask + 1)
    i = 0
    for h in hashes:
        if h & (hmask + 1):
            if not moved.add(page.item(i), page.item(i + 1)):
                raise TooBig(NO_ROOM)       # a page filled to the last byte, all moving
            page.delete(i)
        else:
            i += 2
    _write_page(pag_fd, page)
    _write_page(pag_fd, moved)
    bits.set(page.number + hmask)


def page_keys(pag_fd: int, order: str, number: int):
    """The keys of page `number` in page order, or None past the last
    whole page (dbm_nextkey's walk: pages in file order)."""
    if number >= os.fstat(pag_fd).st_size // PBLKSIZ:
        return None
    return _read_page(pag_fd, number, order).keys()


class _PureEngine:
    fetch = staticmethod(fetch)
    store = staticmethod(store)
    delete = staticmethod(delete)
    page_keys = staticmethod(page_keys)
    dcalchash = staticmethod(dcalchash)


# -- the database ----------------------------------------------------------------

def _order(byteorder) -> str:
    byteorder = byteorder or sys.byteorder
    if byteorder not in ("little", "big"):
        raise ValueError("byteorder must be None, 'little' or 'big', not %r" % (byteorder,))
    return "<" if byteorder == "little" else ">"


def _datum(value, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("an ndbm %s is bytes, not %s" % (what, type(value).__name__))
    return bytes(value)


def _flock(fd: int, lock, timeout: float) -> bool:
    """Take the flock Qpopper takes on the .dir file; True if one was asked."""
    if lock is None:
        return False
    kinds = {"shared": fcntl.LOCK_SH, "exclusive": fcntl.LOCK_EX}
    if lock not in kinds:
        raise ValueError("lock must be None, 'shared' or 'exclusive', not %r" % (lock,))
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, kinds[lock] | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
        left = deadline - time.monotonic()
        if left <= 0:
            raise Locked("the .dir file is locked by another process (waited %gs)" % timeout)
        time.sleep(min(LOCK_POLL, left))


def _chosen(twin, hash):
    """The engine: the one in use, or the twin named (pure for a test's hash)."""
    if hash is not None and twin not in (None, "pure"):
        raise ValueError("a hash of one's own is the pure twin's")
    twin = "pure" if hash is not None else twin
    if twin is None:
        return _engine
    if twin not in ENGINES:
        raise ValueError("no %r ndbm twin here (built: %s)" % (twin, ", ".join(ENGINES)))
    return ENGINES[twin]


class Database:
    """An open ndbm database (ndbm.open or ndbm.from_fds)."""

    def __init__(self, dir_fd: int, pag_fd: int, writable: bool, byteorder=None,
                 owns_fds: bool = False, locked: bool = False, hash=None, twin=None):
        self.dir_fd, self.pag_fd, self.writable = dir_fd, pag_fd, writable
        self.order = _order(byteorder)
        self.owns_fds, self.locked = owns_fds, locked
        # twin: "pure" or "native" (ENGINES), for the parity tests and the
        # bench; hash: tests only (the sdbm page-layout check), pure twin.
        self._engine = _chosen(twin, hash)
        self._hash = () if hash is None else (hash,)
        self.closed = False

    def _fds(self):
        if self.closed:
            raise Error("the ndbm database is closed")
        return self.dir_fd, self.pag_fd, self.order

    def _writable_fds(self):
        fds = self._fds()
        if not self.writable:
            raise Error("the ndbm database is open read-only")
        return fds

    def fetch(self, key) -> bytes:
        """The key's value, or None."""
        return self._engine.fetch(*self._fds(), _datum(key, "key"), *self._hash)

    def store(self, key, value, replace: bool = True) -> bool:
        """Store the pair; False (and nothing changed) if the key is there
        and replace is false (DBM_INSERT)."""
        return self._engine.store(*self._writable_fds(), _datum(key, "key"),
                                  _datum(value, "value"), bool(replace), *self._hash)

    def delete(self, key) -> bool:
        """Remove the key; False if it was not there."""
        return self._engine.delete(*self._writable_fds(), _datum(key, "key"), *self._hash)

    def keys(self):
        """The keys in dbm_firstkey/dbm_nextkey order: pages in file order,
        pairs in page order.  Each page is read when the walk reaches it."""
        number = 0
        while True:
            _, pag_fd, order = self._fds()
            keys = self._engine.page_keys(pag_fd, order, number)
            if keys is None:
                return
            yield from keys
            number += 1

    def close(self) -> None:
        """Let go of the lock taken and close the fds opened (from_fds' fds
        stay the caller's)."""
        if self.closed:
            return
        self.closed = True
        if self.locked:
            try:
                fcntl.flock(self.dir_fd, fcntl.LOCK_UN)
            except OSError:
                pass
        if self.owns_fds:
            os.close(self.pag_fd)
            os.close(self.dir_fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __del__(self):
        if not getattr(self, "closed", True) and self.owns_fds:
            self.close()


def open(base, flag: str = "r", mode: int = 0o600, byteorder=None, lock=None,
         timeout: float = 10.0, hash=None, twin=None) -> Database:
    """base.dir and base.pag.  flag "r" read-only, "w" read-write (the
    files must exist), "c" read-write, made if missing, "n" new (emptied,
    under the lock).  byteorder None is the host's, or "little" / "big"
    (files for another host).  lock None, "shared" or "exclusive": a flock
    on the .dir file as Qpopper takes, waited for at most `timeout`
    seconds (then Locked).  Never through a symbolic link.  twin: "pure"
    or "native" instead of the one in use (tests, bench); hash: a test's
    own hash function (pure twin only)."""
    if flag not in MODES:
        raise ValueError("flag must be 'r', 'w', 'c' or 'n', not %r" % (flag,))
    _order(byteorder)
    base = os.fspath(base)
    suffix = (lambda s: s.encode()) if isinstance(base, bytes) else (lambda s: s)
    flags = MODES[flag] | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
    pag_fd = os.open(base + suffix(".pag"), flags, mode)
    try:
        dir_fd = os.open(base + suffix(".dir"), flags, mode)
    except BaseException:
        os.close(pag_fd)
        raise
    try:
        locked = _flock(dir_fd, lock, timeout)
        if flag == "n":
            os.ftruncate(pag_fd, 0)
            os.ftruncate(dir_fd, 0)
    except BaseException:
        os.close(dir_fd)
        os.close(pag_fd)
        raise
    return Database(dir_fd, pag_fd, flag != "r", byteorder, owns_fds=True, locked=locked,
                    hash=hash, twin=twin)


def from_fds(dir_fd: int, pag_fd: int, writable: bool, byteorder=None, lock=None,
             timeout: float = 10.0, twin=None) -> Database:
    """A database on files the caller opened and checked itself (owner,
    links, mode).  close() lets go of a lock it took (lock= as in open())
    but never closes these fds: they stay the caller's."""
    _order(byteorder)
    locked = _flock(dir_fd, lock, timeout)
    return Database(dir_fd, pag_fd, bool(writable), byteorder, owns_fds=False, locked=locked,
                    twin=twin)


# -- the twin in use -------------------------------------------------------------
# The C engine (_native/ndbm.c through popper.native, which never imports
# this module) when it is built and POPPER_PUREPYTHON is unset, else the
# pure one above.  Both stay reachable for the parity tests: ENGINES.

from popper import native  # noqa: E402


def _raised(code: int, status):
    """The exception for a C engine result code (PN_NDBM_* in popper.h)."""
    error, reason, page = status
    lib = native.lib
    if code == lib.PN_NDBM_CORRUPT:
        return Corrupt(CORRUPT_REASONS.get(reason, "reason %d" % reason),
                       None if page < 0 else page)
    if code == lib.PN_NDBM_IO:
        return OSError(error, os.strerror(error))
    if code == lib.PN_NDBM_NO_ROOM:
        return TooBig(NO_ROOM)
    return Error("unknown ndbm result %d" % code)


class _NativeEngine:
    """The pure engine's functions, done by _native/ndbm.c."""

    @staticmethod
    def fetch(dir_fd, pag_fd, order, key):
        code, value, status = native.ndbm_fetch(dir_fd, pag_fd, order == ">", key)
        if code < 0:
            raise _raised(code, status)
        return value

    @staticmethod
    def store(dir_fd, pag_fd, order, key, value, replace):
        code, _, status = native.ndbm_store(dir_fd, pag_fd, order == ">", key, value,
                                                    replace)
        if code == native.lib.PN_NDBM_TOO_BIG:
            raise _too_big(key, value)
        if code < 0:
            raise _raised(code, status)
        return code == native.lib.PN_NDBM_OK

    @staticmethod
    def delete(dir_fd, pag_fd, order, key):
        code, _, status = native.ndbm_delete(dir_fd, pag_fd, order == ">", key)
        if code < 0:
            raise _raised(code, status)
        return code == native.lib.PN_NDBM_OK

    @staticmethod
    def page_keys(pag_fd, order, number):
        code, keys, status = native.ndbm_page_keys(pag_fd, order == ">", number)
        if code < 0:
            raise _raised(code, status)
        return keys

    dcalchash = staticmethod(native.ndbm_hash)


ENGINES = {"pure": _PureEngine}
if native.BUILT:
    ENGINES["native"] = _NativeEngine
_engine = _NativeEngine if native.NATIVE else _PureEngine
