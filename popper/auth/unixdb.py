"""The Unix account databases: getpwnam, getspnam, passwd_hashes,
shadow_hashes and crypt_gensalt are the native ones (popper/native.py)
when popper._cpopper is built and POPPER_PUREPYTHON is unset, else their
pure twins: pure_getpwnam and pure_passwd_hashes (the stdlib's pwd),
pure_getspnam, pure_shadow_hashes and pure_crypt_gensalt (through ctypes,
since the stdlib's spwd is gone from Python 3.13).  Both twins go through
the C library, so nss_wrapper and every NSS module see the same calls.

Names are text decoded as latin-1 (as the session decodes the wire) and
reach the C library as those bytes; a name with a NUL, which C would cut
short ("alice\0junk" looked up as "alice"), or one that is not latin-1 is
nobody's: None, in both twins.  The entries' text is latin-1 too.
"""

import errno
import os
import pwd

from popper import native


class Passwd:
    __slots__ = ("name", "passwd", "uid", "gid", "gecos", "dir", "shell")

    def __init__(self, name, passwd, uid, gid, gecos, dir, shell):
        self.name, self.passwd, self.uid, self.gid = name, passwd, uid, gid
        self.gecos, self.dir, self.shell = gecos, dir, shell

    def __eq__(self, other):
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self):
        return "Passwd(%r, uid=%r, gid=%r)" % (self.name, self.uid, self.gid)


class Shadow:
    """A shadow entry; days since 1970, -1 where the field is empty."""

    __slots__ = ("name", "passwd", "lastchg", "min", "max", "warn", "inactive", "expire")

    def __init__(self, name, passwd, lastchg, min, max, warn, inactive, expire):
        self.name, self.passwd, self.lastchg = name, passwd, lastchg
        self.min, self.max, self.warn, self.inactive, self.expire = min, max, warn, inactive, expire

    def __eq__(self, other):
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self):
        return "Shadow(%r, expire=%r)" % (self.name, self.expire)


def c_name(name: str):
    """The bytes C is asked for name, or None when no entry can be name's."""
    try:
        raw = name.encode("latin-1")
    except UnicodeEncodeError:
        return None
    return None if b"\0" in raw else raw


def _passwd(name: bytes, passwd: bytes, uid: int, gid: int, gecos: bytes, dir: bytes,
            shell: bytes) -> Passwd:
    """A Passwd from the C library's bytes: the text fields decoded as latin-1."""
    return Passwd(name.decode("latin-1"), passwd, uid, gid, gecos.decode("latin-1"),
                  dir.decode("latin-1"), shell.decode("latin-1"))


def pure_getpwnam(name: str):
    """The passwd entry of name (bytes fields decoded as latin-1), or None."""
    raw = c_name(name)
    if raw is None:
        return None
    try:
        entry = pwd.getpwnam(os.fsdecode(raw))      # pwd encodes it back to raw
    except (KeyError, ValueError):
        return None
    # pwd decodes with the file system encoding (surrogateescape): back to the C bytes.
    return _passwd(os.fsencode(entry.pw_name), os.fsencode(entry.pw_passwd), entry.pw_uid,
                   entry.pw_gid, os.fsencode(entry.pw_gecos), os.fsencode(entry.pw_dir),
                   os.fsencode(entry.pw_shell))


def pure_passwd_hashes(limit: int) -> list:
    """The password fields of the first limit passwd entries (getpwent);
    none for a limit below 1, as the native twin."""
    return [os.fsencode(entry.pw_passwd) for entry in pwd.getpwall()[:max(limit, 0)]]


_libc = _Spwd = None


def _lib():
    """The process's own symbols (dlopen(NULL)), so that a preloaded
    library (nss_wrapper) is seen as the C library's callers see it.
    ctypes is loaded here, for the pure twins only."""
    global _libc, _Spwd
    if _libc is None:
        import ctypes

        class Spwd(ctypes.Structure):
            _fields_ = [("sp_namp", ctypes.c_char_p), ("sp_pwdp", ctypes.c_char_p),
                        ("sp_lstchg", ctypes.c_long), ("sp_min", ctypes.c_long),
                        ("sp_max", ctypes.c_long), ("sp_warn", ctypes.c_long),
                        ("sp_inact", ctypes.c_long), ("sp_expire", ctypes.c_long),
                        ("sp_flag", ctypes.c_ulong)]
        _Spwd, _libc = Spwd, ctypes.CDLL(None, use_errno=True)
    return _libc


def pure_getspnam(name: str):
    """The shadow entry of name, or None; OSError when it cannot be read
    (not root).  getspnam, not getspnam_r: nss_wrapper serves only it."""
    import ctypes
    raw = c_name(name)
    lib = _lib()
    if raw is None or not hasattr(lib, "getspnam"):
        return None
    lib.getspnam.restype = ctypes.POINTER(_Spwd)
    lib.getspnam.argtypes = (ctypes.c_char_p,)
    ctypes.set_errno(0)
    result = lib.getspnam(raw)
    if not result:
        number = ctypes.get_errno()
        if number not in (0, errno.ENOENT):
            raise OSError(number, os.strerror(number))
        return None
    entry = result.contents
    return _shadow(entry.sp_namp, entry.sp_pwdp or b"", entry.sp_lstchg, entry.sp_min,
                   entry.sp_max, entry.sp_warn, entry.sp_inact, entry.sp_expire)


def _shadow(name: bytes, *fields) -> Shadow:
    return Shadow(name.decode("latin-1"), *fields)


def pure_shadow_hashes(limit: int) -> list:
    """The password fields of the first limit shadow entries (setspent,
    getspent, endspent); [] where they cannot be read (not root)."""
    import ctypes
    lib = _lib()
    if not all(hasattr(lib, name) for name in ("setspent", "getspent", "endspent")):
        return []
    lib.getspent.restype = ctypes.POINTER(_Spwd)
    hashes = []
    lib.setspent()
    try:
        while len(hashes) < limit:
            result = lib.getspent()
            if not result:
                break
            hashes.append(result.contents.sp_pwdp or b"")
    finally:
        lib.endspent()
    return hashes


def pure_crypt_gensalt() -> bytes:
    """A setting for the system's preferred hashing method (libxcrypt's
    crypt_gensalt: yescrypt on Debian 12), or SHA-512 where there is none."""
    import ctypes
    from popper.auth.cryptpw import _library
    lib = _library()
    result = None
    if hasattr(lib, "crypt_gensalt_rn"):
        lib.crypt_gensalt_rn.restype = ctypes.c_char_p
        out = ctypes.create_string_buffer(256)
        result = lib.crypt_gensalt_rn(None, 0, None, 0, out, 256)
    return result or _sha512_setting()


def _sha512_setting() -> bytes:
    return b"$6$" + os.urandom(12).hex().encode()[:16] + b"$"


# --- the native twins, and the choice ---------------------------------------------------

def native_getpwnam(name: str):
    raw = c_name(name)
    entry = None if raw is None else native.getpwnam(raw)
    return None if entry is None else _passwd(*entry)


def native_getspnam(name: str):
    raw = c_name(name)
    entry = None if raw is None else native.getspnam(raw)
    return None if entry is None else _shadow(*entry)


def native_crypt_gensalt() -> bytes:
    return native.crypt_gensalt() or _sha512_setting()


native_passwd_hashes, native_shadow_hashes = native.passwd_hashes, native.shadow_hashes

if native.NATIVE:
    getpwnam, getspnam = native_getpwnam, native_getspnam
    passwd_hashes, shadow_hashes = native_passwd_hashes, native_shadow_hashes
    crypt_gensalt = native_crypt_gensalt
else:
    getpwnam, getspnam = pure_getpwnam, pure_getspnam
    passwd_hashes, shadow_hashes = pure_passwd_hashes, pure_shadow_hashes
    crypt_gensalt = pure_crypt_gensalt
