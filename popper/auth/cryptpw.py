"""crypt(3) through ctypes: the pure-Python twin of crypt_r in _native/.

Both call the system's crypt library (libxcrypt on Linux: yescrypt,
SHA-512/256, MD5, bcrypt, DES and bigDES); this twin needs no compiler.
"""

import ctypes
import ctypes.util

# Big enough for every known struct crypt_data (glibc's is about 128 KiB,
# libxcrypt's 32 KiB); crypt_r only needs it zeroed before first use.
_CRYPT_DATA_SIZE = 256 * 1024

_lib = None


def _library():
    global _lib
    if _lib is None:
        for name in ("crypt", "c"):
            path = ctypes.util.find_library(name)
            if not path:
                continue
            lib = ctypes.CDLL(path, use_errno=True)
            if hasattr(lib, "crypt_r") or hasattr(lib, "crypt"):
                _lib = lib
                break
        else:
            raise OSError("no crypt library found")
    return _lib


def crypt(password: bytes, setting: bytes):
    """The hash of password under setting, or None if crypt refuses it."""
    if b"\0" in password or b"\0" in setting:
        return None
    lib = _library()
    if hasattr(lib, "crypt_r"):
        lib.crypt_r.restype = ctypes.c_char_p
        lib.crypt_r.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)
        data = ctypes.create_string_buffer(_CRYPT_DATA_SIZE)
        result = lib.crypt_r(password, setting, data)
    else:
        lib.crypt.restype = ctypes.c_char_p
        lib.crypt.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
        result = lib.crypt(password, setting)
    return _checked(result)


def _checked(result):
    # libxcrypt answers a bad setting with "*0" or "*1" instead of NULL.
    if not result or result.startswith(b"*"):
        return None
    return result
