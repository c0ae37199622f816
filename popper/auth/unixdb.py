"""The Unix account databases, pure-Python twins of the native lookups:
getpwnam (the stdlib's pwd), getspnam and crypt_gensalt (through ctypes,
since the stdlib's spwd is gone from Python 3.13).  Both twins go through
the C library, so nss_wrapper and every NSS module see the same calls."""

import ctypes
import errno
import os
import pwd


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


def getpwnam(name: str):
    """The passwd entry of name (bytes fields decoded as latin-1), or None."""
    try:
        entry = pwd.getpwnam(name)
    except (KeyError, ValueError):
        return None
    return Passwd(entry.pw_name, entry.pw_passwd.encode("latin-1"), entry.pw_uid, entry.pw_gid,
                  entry.pw_gecos, entry.pw_dir, entry.pw_shell)


class _Spwd(ctypes.Structure):
    _fields_ = [("sp_namp", ctypes.c_char_p), ("sp_pwdp", ctypes.c_char_p),
                ("sp_lstchg", ctypes.c_long), ("sp_min", ctypes.c_long),
                ("sp_max", ctypes.c_long), ("sp_warn", ctypes.c_long),
                ("sp_inact", ctypes.c_long), ("sp_expire", ctypes.c_long),
                ("sp_flag", ctypes.c_ulong)]


_libc = None


def _lib():
    """The process's own symbols (dlopen(NULL)), so that a preloaded
    library (nss_wrapper) is seen as the C library's callers see it."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def getspnam(name: str):
    """The shadow entry of name, or None; OSError when it cannot be read
    (not root).  getspnam, not getspnam_r: nss_wrapper serves only it."""
    lib = _lib()
    if not hasattr(lib, "getspnam"):
        return None
    lib.getspnam.restype = ctypes.POINTER(_Spwd)
    ctypes.set_errno(0)
    result = lib.getspnam(name.encode("latin-1"))
    if not result:
        number = ctypes.get_errno()
        if number not in (0, errno.ENOENT):
            raise OSError(number, os.strerror(number))
        return None
    entry = result.contents
    return Shadow(entry.sp_namp.decode("latin-1"), entry.sp_pwdp or b"", entry.sp_lstchg,
                  entry.sp_min, entry.sp_max, entry.sp_warn, entry.sp_inact, entry.sp_expire)


def crypt_gensalt() -> bytes:
    """A setting for the system's preferred hashing method (libxcrypt's
    crypt_gensalt: yescrypt on Debian 12), or SHA-512 where there is none."""
    from popper.auth.cryptpw import _library
    lib = _library()
    if hasattr(lib, "crypt_gensalt_rn"):
        lib.crypt_gensalt_rn.restype = ctypes.c_char_p
        out = ctypes.create_string_buffer(256)
        result = lib.crypt_gensalt_rn(None, 0, None, 0, out, 256)
        if result:
            return result
    return b"$6$" + os.urandom(12).hex().encode()[:16] + b"$"
