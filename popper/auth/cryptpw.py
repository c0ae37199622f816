"""crypt(3): crypt() is crypt_r through popper/native.py when
popper._cpopper is built and POPPER_PUREPYTHON is unset, else
pure_crypt(), its twin through ctypes, which needs no compiler.

Both call the system's crypt library (libxcrypt on Linux: yescrypt,
SHA-512/256, MD5, bcrypt, DES and bigDES).  A password or setting with a
NUL, which C would cut short, hashes to None in both.
"""

from popper import native

# Big enough for every known struct crypt_data (glibc's is about 128 KiB,
# libxcrypt's 32 KiB); crypt_r only needs it zeroed before first use.
_CRYPT_DATA_SIZE = 256 * 1024

_lib = None

# The crypt library's names as the dynamic linker finds it: libxcrypt's
# (Linux), its compatibility build's, an unversioned one.
SONAMES = ("libcrypt.so.1", "libcrypt.so.2", "libcrypt.so")


def _library():
    """The crypt library, through ctypes: loaded here, for the pure twin only."""
    global _lib
    if _lib is None:
        import ctypes
        for name in _candidates():
            try:
                lib = ctypes.CDLL(name, use_errno=True)
            except OSError:
                continue
            if hasattr(lib, "crypt_r") or hasattr(lib, "crypt"):
                _lib = lib
                break
        else:
            raise OSError("no crypt library found")
    return _lib


def _candidates():
    """SONAMES, then what ctypes.util finds for crypt and for c: only where
    those are not there, for find_library imports re and subprocess and
    runs ldconfig (or cc) each time."""
    yield from SONAMES
    import ctypes.util
    for name in ("crypt", "c"):
        path = ctypes.util.find_library(name)
        if path:
            yield path


def preload() -> None:
    """The pure twin's library now, when it is the one in use (a standalone
    listener, before it forks: its sessions then load nothing)."""
    if crypt is pure_crypt:
        try:
            _library()
        except OSError:
            pass                # said at the first login, as without it


def pure_crypt(password: bytes, setting: bytes):
    """The hash of password under setting, or None if crypt refuses it."""
    return _hashed(_ctypes_crypt, password, setting)


def native_crypt(password: bytes, setting: bytes):
    """pure_crypt's twin: crypt_r through popper._cpopper."""
    return _hashed(native.crypt, password, setting)


def _hashed(crypt_r, password: bytes, setting: bytes):
    """crypt_r's answer, or None: for a NUL (C would hash what is before
    it) and for libxcrypt's "*0" or "*1", its answer to a bad setting."""
    if b"\0" in password or b"\0" in setting:
        return None
    result = crypt_r(password, setting)
    if not result or result.startswith(b"*"):
        return None
    return result


def _ctypes_crypt(password: bytes, setting: bytes):
    import ctypes
    lib = _library()
    if hasattr(lib, "crypt_r"):
        lib.crypt_r.restype = ctypes.c_char_p
        lib.crypt_r.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)
        data = ctypes.create_string_buffer(_CRYPT_DATA_SIZE)
        return lib.crypt_r(password, setting, data)
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    return lib.crypt(password, setting)


crypt = native_crypt if native.NATIVE else pure_crypt


# --- what a failed login is checked against ---------------------------------------------
#
# A failure must cost what a success would: an unknown user or a locked
# account is checked against a hash of the method and cost of the entries it
# stands for.  crypt(password, hash) costs what the hash's setting (method,
# cost parameters, salt length) makes it cost, so the dummy is the hash of
# an entry of the most common cost class, used as a setting; what it
# computes is never accepted (verifier() says it is not usable).

_DES_ALPHABET = frozenset(b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def is_hash(hashed: bytes) -> bool:
    """Whether crypt(3) can check a password against hashed: a "$id$...$"
    hash, BSDI's "_" extended DES, DES (13 characters) or bigcrypt (13 +
    11n); not a lock mark ("!", "*", "!!", "*LK*"), "x", "" or a bare
    setting."""
    return cost_class(hashed) is not None


def cost_class(hashed: bytes):
    """What decides the cost of checking hashed: its method and cost
    parameters (everything before the salt) and its length (which holds the
    salt's), e.g. (b"$6$rounds=5000$", 106), (b"$y$j9T$", 73), (b"$2b$12$", 60);
    None if hashed is not a hash (is_hash)."""
    if hashed[:1] == b"$":
        if hashed.count(b"$") < 3 or hashed[-1:] == b"$":
            return None
        if hashed[1:2] == b"2" and hashed[3:4] == b"$":
            prefix = hashed[:7]                   # $2b$12$, then salt and hash in one field
        elif hashed[:3] == b"$7$":
            prefix = hashed[:14]                  # scrypt: N, r, p lead the salt field
        else:                                     # up to the salt: $6$rounds=5000$, $y$j9T$
            prefix = hashed[:hashed.rfind(b"$", 0, hashed.rfind(b"$")) + 1]
    elif hashed[:1] == b"_":
        if len(hashed) != 20 or not _DES_ALPHABET.issuperset(hashed[1:]):
            return None
        prefix = hashed[:5]                       # the rounds
    elif len(hashed) >= 13 and (len(hashed) - 13) % 11 == 0 and _DES_ALPHABET.issuperset(hashed):
        prefix = b""                              # DES; bigcrypt by its length
    else:
        return None
    return prefix, len(hashed)


def most_common(hashes):
    """The first hash of the most common cost class among hashes (those of
    locked "!<hash>" entries count as theirs), or None if none is a hash."""
    counts, first = {}, {}
    for hashed in hashes:
        if hashed[:1] == b"!":
            hashed = hashed.lstrip(b"!")
        key = cost_class(hashed)
        if key is None:
            continue
        if key in counts:
            counts[key] += 1
        else:
            counts[key], first[key] = 1, hashed
    if not counts:
        return None
    return first[max(counts, key=counts.__getitem__)]      # the first class of a tie


def verifier(hashed: bytes, dummy: bytes):
    """(what to hash the password with, whether a match logs in): the hash
    itself; for a locked "!<hash>" (usermod -L) its hash, which costs what
    it would; else the dummy."""
    if is_hash(hashed):
        return hashed, True
    inner = hashed.lstrip(b"!")
    if len(inner) < len(hashed) and is_hash(inner):
        return inner, False
    return dummy, False
