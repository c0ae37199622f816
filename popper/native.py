"""The one importer of the compiled module popper._cpopper.

Every native function has a pure-Python twin; this module hands out the
native one when the extension is built and POPPER_PUREPYTHON is not set,
the twin otherwise.  The native functions (_native_*) stay reachable when
the extension is built, so the parity tests compare both in either case.  Callers use only the names defined here:

  scan(fd, ...)             the mailbox scanner      (maildrop/scan.py)
  wire_encode(data, state)  mail to wire bytes       (maildrop/wire.py)
  crypt(password, setting)  crypt_r                  (auth/cryptpw.py)
  crypt_gensalt()           the preferred hash's setting (auth/unixdb.py)
  getpwnam(name)            the passwd entry          (auth/unixdb.py)
  getspnam(name)            the shadow entry          (auth/unixdb.py)
  passwd_hashes(limit)      getpwent's password fields (auth/unixdb.py)
  shadow_hashes(limit)      getspent's password fields (auth/unixdb.py)
  pam_login(service, ...)   a PAM login               (auth/libpam.py; popper._cpam)

and the classic ndbm calls (_native_ndbm_*: raw result codes, which
popper/ndbm.py, their pure twin's module, turns into its exceptions and
hands out; this module never imports it).

A name or password with a NUL is refused by both twins of every account
call (None, or PAM_AUTH_ERR) before C, which would cut it at the NUL, sees
it; tests/test_backend_parity.py holds them to the same answers.
"""

import errno
import os

from popper.auth import cryptpw, libpam, unixdb
from popper.maildrop import scan as pure_scan
from popper.maildrop import wire as pure_wire

try:
    from popper._cpopper import ffi, lib
except ImportError:
    ffi = lib = None

try:
    from popper._cpam import ffi as pam_ffi, lib as pam_lib
except ImportError:
    pam_ffi = pam_lib = None

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


def _native_getpwnam(name: str):
    raw = unixdb.c_name(name)
    if raw is None:
        return None
    entry, result = ffi.new("struct passwd *"), ffi.new("struct passwd **")
    buf, rc = _with_buffer(lambda buf, size: lib.getpwnam_r(raw, entry, buf, size, result))
    if rc or result[0] == ffi.NULL:
        return None
    text = lambda p: ffi.string(p).decode("latin-1")   # noqa: E731
    return unixdb.Passwd(text(entry.pw_name), ffi.string(entry.pw_passwd), entry.pw_uid,
                         entry.pw_gid, text(entry.pw_gecos), text(entry.pw_dir),
                         text(entry.pw_shell))


def _native_getspnam(name: str):
    # getspnam, not getspnam_r: it is what nss_wrapper (and every NSS) serves;
    # popper looks up one user, before any thread exists.
    raw = unixdb.c_name(name)
    if raw is None:
        return None
    ffi.errno = 0
    entry = lib.getspnam(raw)
    if entry == ffi.NULL:
        if ffi.errno not in (0, errno.ENOENT):
            raise OSError(ffi.errno, os.strerror(ffi.errno))
        return None
    return unixdb.Shadow(ffi.string(entry.sp_namp).decode("latin-1"),
                         ffi.string(entry.sp_pwdp) if entry.sp_pwdp != ffi.NULL else b"",
                         entry.sp_lstchg, entry.sp_min, entry.sp_max, entry.sp_warn,
                         entry.sp_inact, entry.sp_expire)


def _native_hashes(start, step, stop, field: str, limit: int) -> list:
    """The password fields of the first `limit` entries of a database
    enumerated with start(), step() until NULL, stop()."""
    hashes = []
    start()
    try:
        while len(hashes) < limit:
            entry = step()
            if entry == ffi.NULL:
                break
            value = getattr(entry, field)
            hashes.append(ffi.string(value) if value != ffi.NULL else b"")
    finally:
        stop()
    return hashes


def _native_passwd_hashes(limit: int) -> list:
    return _native_hashes(lib.setpwent, lib.getpwent, lib.endpwent, "pw_passwd", limit)


def _native_shadow_hashes(limit: int) -> list:
    return _native_hashes(lib.setspent, lib.getspent, lib.endspent, "sp_pwdp", limit)


def _with_buffer(call):
    """Call a *_r function with a buffer big enough: (buffer, return code)."""
    size = 4096
    while True:
        buf = ffi.new("char[]", size)
        rc = call(buf, size)
        if rc != errno.ERANGE or size >= 1 << 20:
            return buf, rc
        size *= 2


def _native_crypt_gensalt() -> bytes:
    out = ffi.new("char[]", 256)
    if lib.crypt_gensalt_rn(ffi.NULL, 0, ffi.NULL, 0, out, 256) == ffi.NULL:
        return unixdb.crypt_gensalt()
    return ffi.string(out)


PAM_AUTH_ERR = 7


def _pam_refusal(user: str, password: bytes):
    """(PAM_AUTH_ERR, text) for a name or password that C would cut at a
    NUL, as python-pam refuses them (ValueError); else None."""
    if unixdb.c_name(user) is None or b"\0" in password:
        return PAM_AUTH_ERR, "a NUL (or a character beyond latin-1) in the user or password"
    return None


def _refusing_nul(login):
    """The pure twin's login, with the native one's refusal in front."""
    def pam_login(service: str, user: str, password: bytes, rhost: str, tty: str):
        return _pam_refusal(user, password) or login(service, user, password, rhost, tty)
    return pam_login


def _native_pam_login(service: str, user: str, password: bytes, rhost: str, tty: str):
    """(code, text) of a PAM login: pam_start, PAM_RHOST and PAM_TTY,
    pam_authenticate, pam_acct_mgmt, pam_setcred(ESTABLISH), pam_end.  The
    conversation answers echo-off prompts with the password, echo-on ones
    with the user name."""
    refusal = _pam_refusal(user, password)
    if refusal:
        return refusal
    ffi_, lib_ = pam_ffi, pam_lib
    answers = {"user": user.encode("latin-1"), "password": password, "said": []}
    handle = ffi_.new_handle(answers)
    conv = ffi_.new("struct pam_conv *", {"conv": lib_.popper_pam_conv, "appdata_ptr": handle})
    pamh = ffi_.new("pam_handle_t **")
    code = lib_.pam_start(service.encode("latin-1"), answers["user"], conv, pamh)
    if code != lib_.PAM_SUCCESS:
        return code, "pam_start failed"
    try:
        for item, value in ((lib_.PAM_RHOST, rhost), (lib_.PAM_TTY, tty)):
            lib_.pam_set_item(pamh[0], item, ffi_.new("char[]", value.encode("latin-1")))
        for step in (lambda: lib_.pam_authenticate(pamh[0], lib_.PAM_DISALLOW_NULL_AUTHTOK),
                     lambda: lib_.pam_acct_mgmt(pamh[0], lib_.PAM_DISALLOW_NULL_AUTHTOK),
                     lambda: lib_.pam_setcred(pamh[0], lib_.PAM_ESTABLISH_CRED)):
            code = step()
            if code != lib_.PAM_SUCCESS:
                return code, ffi_.string(lib_.pam_strerror(pamh[0], code)).decode("latin-1")
        return 0, "Success"
    finally:
        lib_.pam_end(pamh[0], code)


if pam_lib is not None:
    @pam_ffi.def_extern()
    def popper_pam_conv(count, messages, responses, appdata):
        answers = pam_ffi.from_handle(appdata)
        reply = pam_ffi.cast("struct pam_response *",
                             pam_lib.calloc(count, pam_ffi.sizeof("struct pam_response")))
        if reply == pam_ffi.NULL:
            return pam_lib.PAM_BUF_ERR
        for i in range(count):
            style = messages[i].msg_style
            if style == pam_lib.PAM_PROMPT_ECHO_OFF:
                reply[i].resp = pam_lib.strdup(answers["password"])
            elif style == pam_lib.PAM_PROMPT_ECHO_ON:
                reply[i].resp = pam_lib.strdup(answers["user"])
        responses[0] = reply
        return pam_lib.PAM_SUCCESS


def _native_crypt(password: bytes, setting: bytes):
    if b"\0" in password or b"\0" in setting:
        return None
    data = ffi.new("struct crypt_data *")
    result = lib.crypt_r(password, setting, data)
    if result == ffi.NULL:
        return None
    return cryptpw._checked(ffi.string(result))


def _ndbm_status():
    return ffi.new("pn_ndbm_status *")


def _ndbm_result(code: int, value, status):
    """(code, value, (errno, corrupt reason, page)) of an ndbm call."""
    return code, value, (status.error, status.reason, status.page)


def _native_ndbm_fetch(dir_fd: int, pag_fd: int, big: bool, key: bytes):
    out, size, status = ffi.new("char[]", lib.PN_NDBM_PBLKSIZ), ffi.new("size_t *"), _ndbm_status()
    code = lib.pn_ndbm_fetch(dir_fd, pag_fd, big, key, len(key), out, size, status)
    return _ndbm_result(code, ffi.unpack(out, size[0]) if code == lib.PN_NDBM_OK else None, status)


def _native_ndbm_store(dir_fd: int, pag_fd: int, big: bool, key: bytes, value: bytes,
                       replace: bool):
    status = _ndbm_status()
    code = lib.pn_ndbm_store(dir_fd, pag_fd, big, key, len(key), value, len(value), replace,
                             status)
    return _ndbm_result(code, None, status)


def _native_ndbm_delete(dir_fd: int, pag_fd: int, big: bool, key: bytes):
    status = _ndbm_status()
    return _ndbm_result(lib.pn_ndbm_delete(dir_fd, pag_fd, big, key, len(key), status),
                        None, status)


def _native_ndbm_page_keys(pag_fd: int, big: bool, number: int):
    out, lens = ffi.new("char[]", lib.PN_NDBM_PBLKSIZ), ffi.new("uint16_t[]", 512)
    count, status = ffi.new("int *"), _ndbm_status()
    code = lib.pn_ndbm_page_keys(pag_fd, big, number, out, lens, count, status)
    keys = None
    if code == lib.PN_NDBM_OK:
        raw, keys, at = ffi.unpack(out, lib.PN_NDBM_PBLKSIZ), [], 0
        for size in lens[0:count[0]]:
            keys.append(raw[at:at + size])
            at += size
    return _ndbm_result(code, keys, status)


def _native_ndbm_hash(key: bytes) -> int:
    return lib.pn_ndbm_hash(key, len(key))


# PAM has its own module: the native login when it is built (and in use).
pam_login = (_native_pam_login if pam_lib is not None and NATIVE
             else _refusing_nul(libpam.pam_login))

if NATIVE:
    scan = _native_scan
    wire_encode = _native_wire_encode
    crypt = _native_crypt
    crypt_gensalt = _native_crypt_gensalt
    getpwnam = _native_getpwnam
    getspnam = _native_getspnam
    passwd_hashes = _native_passwd_hashes
    shadow_hashes = _native_shadow_hashes
else:
    scan = pure_scan.scan
    wire_encode = pure_wire.wire_encode
    crypt = cryptpw.crypt
    crypt_gensalt = unixdb.crypt_gensalt
    getpwnam = unixdb.getpwnam
    getspnam = unixdb.getspnam
    passwd_hashes = unixdb.passwd_hashes
    shadow_hashes = unixdb.shadow_hashes

NotAMailbox = pure_scan.NotAMailbox
