"""APOP (RFC 1939, section 7) and Qpopper's pop.auth database.

The database is classic ndbm: <base>.dir and <base>.pag (configure.py
--enable-apop=BASE, or set apop-file).  A record's key is the user name
and its NUL; its value is the APOP secret with every byte XOR 0xFF, then a
NUL (Qpopper 4's popauth adds a SCRAM-MD5 field and its NUL: kept, never
read; popper's CRAM-MD5 and SCRAM-SHA-256 use the APOP secret, auth/sasl.py).
Both files must be regular files of one link, owned by the POP
administrator (configure.py --with-popuid, set popuid), of mode 0600
exactly (Qpopper's check); they are opened without following a link.

Readers take a shared flock on <base>.dir, as Qpopper does; a change (the
popauth program) takes an exclusive one and never writes the live files:
it writes <base>.new.pag and <base>.new.dir, syncs them, and commits by
renaming <base>.new.dir to <base>.commit.dir; then <base>.new.pag becomes
<base>.pag and <base>.commit.dir becomes <base>.dir.  So a kill at any
point leaves either the old database or a committed new one:

  <base>.commit.dir exists    the new database: it, with <base>.new.pag if
                              that is still there, else with <base>.pag
  otherwise                   <base>.dir with <base>.pag (a <base>.new.* is
                              an unfinished change: ignored, then removed)

Whoever takes a lock checks, once it has it, that the .dir it locked is
still the one at the path (a change may have renamed another over it
while it waited), else it starts again; the next change finishes a
committed one before it makes its own.
"""

import errno
import fcntl
import os
import time

from popper import digests, ndbm
from popper.maildrop.files import unfit

LOCK_WAIT = 10          # seconds a reader or a change waits for the lock
RETRIES = 20            # a .dir renamed under the lock this many times running: give up
# What an unknown user's digest is computed from, so that it costs what a known one's does.
DUMMY_SECRET = b"\xff" * 16
# Seconds a look-up of a secret takes at least (the gatekeeper waits out the
# rest): whatever the database or the name, the answer comes after the same time.
LOOKUP_TIME = 0.005


class DBError(Exception):
    """pop.auth cannot be used.  args[0] says why, for the log (and popauth's
    stderr); kind is "mode" (mode: the file's, which Qpopper's -ERR names),
    "lock", "system" (errno: the system's error) or "unfit"."""

    def __init__(self, why: str, kind: str = "unfit", mode: int = None, errno_: int = None):
        super().__init__(why)
        self.kind, self.mode, self.errno = kind, mode, errno_


def names(base: str) -> dict:
    return {"dir": base + ".dir", "pag": base + ".pag", "new_dir": base + ".new.dir",
            "new_pag": base + ".new.pag", "commit": base + ".commit.dir"}


def encode(secret: bytes, scram: bytes = b"") -> bytes:
    """A record's value, as Qpopper 4's popauth writes it: the APOP secret
    obscured (XOR 0xFF), a NUL, the SCRAM field (kept as it was), a NUL."""
    return bytes(b ^ 0xFF for b in secret) + b"\0" + scram + b"\0"


def scram_field(value) -> bytes:
    """The SCRAM field of a record's value (b"" if none)."""
    fields = (value or b"").split(b"\0")
    return fields[1] if len(fields) > 2 else b""


def decode(value: bytes) -> bytes:
    """The APOP secret in a record's value: its first field, XOR 0xFF."""
    return bytes(b ^ 0xFF for b in value.split(b"\0", 1)[0])


def key(user: str) -> bytes:
    return user.encode("latin-1") + b"\0"


def digest(timestamp: str, secret: bytes) -> str:
    """The digest a client sends: lower-case hex MD5 of timestamp + secret."""
    return digests.md5(timestamp.encode("latin-1") + secret).hexdigest()


def same_digest(given: str, expected: str) -> bool:
    """Compared in constant time, case-sensitively, as Qpopper's strcmp."""
    return digests.compare_digest(given.encode("latin-1"), expected.encode("latin-1"))


def timestamp(hostname: str) -> str:
    """The greeting's <pid.time@host> (pop_init.c)."""
    return "<%d.%d@%s>" % (os.getpid(), int(time.time()), hostname)


# --- opening --------------------------------------------------------------------------

def _open(path: str, owner: int, flags: int = os.O_RDONLY):
    """(fd, fstat) of one of the files, checked; None if it is not there."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DBError("%s is a symbolic link" % path) from None
        raise DBError("%s: %s" % (path, exc.strerror), "system", errno_=exc.errno) from None
    st = os.fstat(fd)
    why = unfit(st, owner, 0)
    mode = st.st_mode & 0o777
    if why or mode != 0o600:
        os.close(fd)
        if not why:
            raise DBError("%s has mode %04o, not 0600" % (path, mode), "mode", mode=mode)
        raise DBError("%s is not to be trusted: %s (must be the POP administrator's, uid %d)"
                      % (path, why, owner))
    return fd, st


def _lock(fd: int, path: str, exclusive: bool, deadline: float) -> None:
    kind = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise DBError("unable to lock %s: %s" % (path, os.strerror(errno.EWOULDBLOCK)),
                              "lock", errno_=errno.EWOULDBLOCK) from None
            time.sleep(0.01)
        except OSError as exc:
            raise DBError("unable to lock %s: %s" % (path, exc.strerror),
                          "lock", errno_=exc.errno) from None


def _locked_dir(files: dict, owner: int, exclusive: bool, flags: int, deadline: float):
    """The live .dir, open and flocked, still the one at its path; None if
    there is no database."""
    for _ in range(RETRIES):
        opened = _open(files["dir"], owner, flags)
        if opened is None:
            return None
        fd, st = opened
        try:
            _lock(fd, files["dir"], exclusive, deadline)
            now = os.stat(files["dir"], follow_symlinks=False)
        except FileNotFoundError:
            now = None
        except BaseException:
            os.close(fd)
            raise
        if now is not None and (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
            return fd
        os.close(fd)                # renamed over while we waited: the new one
    raise DBError("%s keeps changing" % files["dir"])


class Reader:
    """pop.auth open for reading under a shared lock: `with Reader(base,
    owner) as db:` gives the ndbm database, or None when there is none.
    DBError when it cannot be used."""

    def __init__(self, base: str, owner: int, timeout: float = LOCK_WAIT):
        self.files, self.owner, self.timeout = names(base), owner, timeout
        self.fds, self.db = [], None

    def __enter__(self):
        try:
            return self._open()
        except BaseException:
            self.close()
            raise

    def _open(self):
        files = self.files
        lock = _locked_dir(files, self.owner, False, os.O_RDONLY,
                           time.monotonic() + self.timeout)
        if lock is None:
            return None
        self.fds.append(lock)
        dir_fd = lock
        commit = _open(files["commit"], self.owner)
        pag_path = files["pag"]
        if commit is not None:          # a change committed, not yet in place
            dir_fd = commit[0]
            self.fds.append(dir_fd)
            if os.path.lexists(files["new_pag"]):
                pag_path = files["new_pag"]
        pag = _open(pag_path, self.owner)
        if pag is None:
            raise DBError("%s is missing" % pag_path)
        self.fds.append(pag[0])
        try:
            self.db = ndbm.from_fds(dir_fd, pag[0], False)
        except (ndbm.Error, OSError) as exc:
            raise DBError("%s: %s" % (pag_path, exc)) from None
        return self.db

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def __exit__(self, *exc_info):
        self.close()


def secret_of(base: str, owner: int, user: str):
    """user's APOP secret (b"" for an empty one), or None: no record, or no
    database.  DBError when the database cannot be used."""
    with Reader(base, owner) as db:
        value = db.fetch(key(user)) if db is not None else None
    return None if value is None else decode(value)


def usable(base: str, owner: int):
    """Why the database cannot be used now, or None: it is there and fit."""
    try:
        with Reader(base, owner) as db:
            return None if db is not None else "%s does not exist" % names(base)["dir"]
    except DBError as exc:
        return str(exc)


# --- changing (popauth) ---------------------------------------------------------------

def _sync_directory(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _finish(files: dict) -> bool:
    """Put a committed change in place, or remove an unfinished one (the
    caller holds the exclusive lock).  True if the live .dir was replaced."""
    if os.path.lexists(files["commit"]):
        if os.path.lexists(files["new_pag"]):
            os.rename(files["new_pag"], files["pag"])
        os.rename(files["commit"], files["dir"])
        _sync_directory(files["dir"])
        return True
    for leftover in (files["new_dir"], files["new_pag"]):
        if os.path.lexists(leftover):
            os.unlink(leftover)
    return False


def change(base: str, owner: int, group: int, edit, create: bool = False,
           timeout: float = LOCK_WAIT):
    """Apply edit(old, new) under the exclusive lock: old is the database
    as it is (None if there is none), new an empty one to fill; then commit
    new in place of old, as the module docstring says (an exception from
    edit leaves old as it was).  The new files are
    owner's, of mode 0600.  Returns what edit returned.  Without create,
    DBError if there is no database."""
    files = names(base)
    deadline = time.monotonic() + timeout
    while True:
        lock = _locked_dir(files, owner, True, os.O_RDONLY, deadline)
        if lock is None and not create:
            raise DBError("%s does not exist (popauth -init makes it)" % files["dir"])
        try:
            if lock is not None and _finish(files):
                continue                # a change of before is in place now: lock the new .dir
            return _commit(files, owner, group, edit, lock is not None)
        finally:
            if lock is not None:
                os.close(lock)


def _new_file(path: str, owner: int, group: int) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        if os.geteuid() == 0:
            os.fchown(fd, owner, group)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _commit(files: dict, owner: int, group: int, edit, exists: bool):
    if not exists:
        _finish(files)      # no lock to take, nobody to race but another -init: O_EXCL
    pag = _new_file(files["new_pag"], owner, group)
    try:
        dir_ = _new_file(files["new_dir"], owner, group)
    except BaseException:
        os.close(pag)
        raise
    try:
        new = ndbm.from_fds(dir_, pag, True)
        try:
            result = _edit(files, owner, edit, new, exists)
        finally:
            new.close()
        os.fsync(pag)
        os.fsync(dir_)
    except BaseException:
        for path in (files["new_dir"], files["new_pag"]):      # edit gave up: no change
            os.unlink(path)
        raise
    finally:
        os.close(pag)
        os.close(dir_)
    os.rename(files["new_dir"], files["commit"])      # the commit
    _sync_directory(files["commit"])
    _finish(files)
    return result


def _edit(files: dict, owner: int, edit, new, exists: bool):
    if not exists:
        return edit(None, new)
    pag = _open(files["pag"], owner)
    dir_ = _open(files["dir"], owner)
    if pag is None or dir_ is None:
        raise DBError("%s is missing" % (files["pag"] if pag is None else files["dir"]))
    try:
        old = ndbm.from_fds(dir_[0], pag[0], False)
        try:
            return edit(old, new)
        finally:
            old.close()
    finally:
        os.close(pag[0])
        os.close(dir_[0])


def copy_records(old, new, skip: bytes = None) -> None:
    """Every record of old into new, but the one of key skip."""
    if old is None:
        return
    for k in list(old.keys()):
        if k != skip:
            value = old.fetch(k)
            if value is not None:
                new.store(k, value)
