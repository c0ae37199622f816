"""The bindings of popper's compiled modules (_native/modules.py's table),
and nothing else: the one importer of popper._cpopper and popper._cpam,
at the bottom of popper.  It imports only them and the standard library;
tests/test_native_layer.py holds it to that.

It says what is there:

  BUILT, PAM_BUILT        the module is built
  NATIVE, PAM_NATIVE      ... and in use (POPPER_PUREPYTHON unset)
  HAS_CRYPT_GENSALT       the C library has crypt_gensalt_rn (an optional symbol)
  HAS_PRCTL               prctl(2) is there (Linux)

and binds the C functions with C's own types (bytes, ints, tuples of
them).  Each pure twin is chosen beside its own code, from these flags:

  scan(fd, ..., table)        pn_scan            popper/maildrop/scan.py
  wire_encode(data, state)    pn_wire_encode     popper/maildrop/wire.py
  retr_reply(prefix, data, cut, end, uid)
                              pn_retr_reply      popper/maildrop/render.py
  message_edits(data, at, ...)  pn_message_edits popper/maildrop/rewrite.py
  plan_spool(fd, kept, ...)     pn_compact_plan  popper/maildrop/compact.py
  write_batch(spool_fd, ...)    pn_compact_write popper/maildrop/compact.py
  crypt(password, setting)    crypt_r            popper/auth/cryptpw.py
  crypt_gensalt()             crypt_gensalt_rn   popper/auth/unixdb.py
  getpwnam(name)              getpwnam_r         popper/auth/unixdb.py
  getspnam(name)              getspnam           popper/auth/unixdb.py
  passwd_hashes(limit)        getpwent           popper/auth/unixdb.py
  shadow_hashes(limit)        getspent           popper/auth/unixdb.py
  pam_login(service, ...)     the PAM calls      popper/auth/libpam.py
  ndbm_fetch, ndbm_store,     pn_ndbm_*          popper/ndbm.py (its _NativeEngine)
  ndbm_delete, ndbm_page_keys, ndbm_hash
  prctl(option, a2, a3, a4, a5)  popper_prctl  popper/privsep.py

C would cut a string at a NUL, so every binding refuses one (ValueError);
the twin modules refuse it first, the same way for both twins.
"""

import errno
import os

try:
    from popper._cpopper import ffi, lib
except ImportError:
    ffi = lib = None

try:
    from popper._cpam import ffi as pam_ffi, lib as pam_lib
except ImportError:
    pam_ffi = pam_lib = None

PURE = bool(os.environ.get("POPPER_PUREPYTHON"))    # the pure twins, even where built
BUILT = lib is not None
NATIVE = BUILT and not PURE
PAM_BUILT = pam_lib is not None
PAM_NATIVE = PAM_BUILT and not PURE
HAS_CRYPT_GENSALT = BUILT and bool(lib.Popper_HAS_CRYPT_GENSALT)
HAS_PRCTL = BUILT and bool(lib.Popper_HAS_PRCTL)


def _c_string(value: bytes) -> bytes:
    if b"\0" in value:
        raise ValueError("a NUL in a C string")
    return value


# --- popper._cpopper ----------------------------------------------------------------------

def scan(fd: int, start: int, limit, base_time: int, salted: bool, old_style: bool,
         uw: bool, table):
    """pn_scan: fills table (a scan.MessageTable) and returns (format: 0
    empty, 1 mbox, 2 mmdf, separator line), or None when the first line
    is not a separator; OSError, MemoryError."""
    result = ffi.new("pn_scan_result *")
    rc = lib.pn_scan(fd, start, -1 if limit is None else limit, base_time,
                     int(salted), int(old_style), int(uw), result)
    try:
        if rc == lib.PN_NOT_A_MAILBOX:
            return None
        if rc == lib.PN_IO_ERROR:
            raise OSError(result.error, os.strerror(result.error))
        if rc == lib.PN_NO_MEMORY:
            raise MemoryError("scanning the mailbox")
        _fill(table, result.messages, result.count)
        return result.format, ffi.unpack(result.separator, result.separator_len)
    finally:
        lib.pn_scan_free(result)


def _fill(table, array_of_structs, count: int) -> None:
    """table's columns from the C array of pn_message, through a memoryview (no copy)."""
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


class _WireBuffer:
    """A reusable output buffer for pn_wire_encode."""
    size = 0
    buf = None


_wire_buffer = _WireBuffer()


def _wire_room(need: int):
    if _wire_buffer.size < need:
        _wire_buffer.size = max(need, 1 << 20)
        _wire_buffer.buf = ffi.new("char[]", _wire_buffer.size)
    return _wire_buffer.buf


def wire_encode(data: bytes, state: int):
    """pn_wire_encode: (wire bytes, new state)."""
    buf = _wire_room(2 * len(data) + 2)
    st = ffi.new("int *", state)
    n = lib.pn_wire_encode(data, len(data), buf, st)
    return ffi.buffer(buf, n)[:], st[0]


def retr_reply(prefix: bytes, data: bytes, cut: int, end: int, uid: bytes) -> bytes:
    """pn_retr_reply: RETR's or TOP's whole reply, built in the reusable
    buffer (data read in place, not sliced) and copied out once
    (render.py's retr_reply)."""
    buf = _wire_room(len(prefix) + 2 * (end + len(uid) + 10) + 5)
    n = lib.pn_retr_reply(prefix, len(prefix), ffi.from_buffer(data), cut, end, uid, len(uid),
                          buf)
    return ffi.buffer(buf, n)[:]


class _EditsBuffer:
    """A reusable output buffer for pn_message_edits."""
    size = 0
    buf = None
    lens = None


_edits_buffer = _EditsBuffer()


def message_edits(data: bytes, at: int, length: int, header: int, body: int,
                  content_end: int, flags: int, uid: bytes, seen: bool, headers: bool,
                  add_status: bool, mmdf):
    """pn_message_edits on data[at:at + length], read in place: (separator
    line, header, ending), None for each that stays as it is; None for a
    message going into a spool of the other format (rewrite.py's twin)."""
    mmdf = mmdf or b""
    b = _edits_buffer
    if b.size < 2 * length + len(uid) + len(mmdf) + 64:     # pn_message_edits_room's
        b.size = max(lib.pn_message_edits_room(length, len(uid), len(mmdf)), 1 << 18)
        b.buf = ffi.new("char[]", b.size)
        b.lens = ffi.new("long[3]")
    if at < 0 or length < 0 or at + length > len(data):
        raise ValueError("the message is not in the data")
    buf, lens = b.buf, b.lens
    rc = lib.pn_message_edits(ffi.from_buffer(data) + at, length, header, body, content_end,
                              flags, uid, len(uid), 1 if seen else 0, 1 if headers else 0,
                              1 if add_status else 0, mmdf, len(mmdf), buf, b.size, lens)
    if rc:
        if rc == lib.PN_EDITS_OTHER_FORMAT:
            return None
        raise ValueError("the message's offsets are out of order")
    n0, n1, n2 = lens[0], lens[1], lens[2]
    p0, p1 = max(n0, 0), max(n0, 0) + max(n1, 0)
    return (None if n0 < 0 else ffi.unpack(buf, n0),
            None if n1 < 0 else ffi.unpack(buf + p0, n1),
            None if n2 < 0 else ffi.unpack(buf + p1, n2))


def plan_spool(fd: int, kept, columns, uids: bytes, uid_ends, seen, headers: bool,
               add_status: bool, mmdf, first: bytes, head: int, piece: int):
    """pn_compact_plan: (flat segments, 4 ints each; literal; start; total),
    or None where the caller plans (compact.py's twin).  kept and uid_ends
    are array("q"), columns the table's start, header, body, content_end,
    end (array("q")) and flags (array("i")), seen a bytearray; each is read
    in place.  OSError for a failed or short read."""
    if not len(kept):
        return None
    mmdf = mmdf or b""
    plan = ffi.new("pn_plan *")
    q = [ffi.cast("int64_t *", ffi.from_buffer(a)) for a in (kept,) + tuple(columns[:5])
         + (uid_ends,)]
    try:
        rc = lib.pn_compact_plan(fd, q[0], len(kept), q[1], q[2], q[3], q[4], q[5],
                                 ffi.cast("int *", ffi.from_buffer(columns[5])), uids, q[6],
                                 ffi.cast("unsigned char *", ffi.from_buffer(seen)),
                                 1 if headers else 0, 1 if add_status else 0, mmdf, len(mmdf),
                                 first, len(first), head, piece, plan)
        if rc == lib.PN_IO_ERROR:
            raise OSError(plan.error, os.strerror(plan.error))
        if rc == lib.PN_NO_MEMORY:
            raise MemoryError()
        if rc:
            return None
        return (ffi.unpack(plan.segments, 4 * plan.count) if plan.count else [],
                ffi.unpack(plan.literal, plan.literal_len) if plan.literal_len else b"",
                plan.start, plan.total)
    finally:
        lib.pn_plan_free(plan)


def write_batch(spool_fd: int, stage_fd: int, segments, literal: bytes, sa: int, sb: int,
                stage_at: int, head: int) -> None:
    """pn_compact_write: one batch's segments (array("q"), 4 ints each),
    read in place, written into the spool (compact.py's twin); OSError
    for a failed call or a short read."""
    rc = lib.pn_compact_write(spool_fd, stage_fd, ffi.cast("int64_t *", ffi.from_buffer(segments)),
                              len(segments) // 4, literal, sa, sb, stage_at, head)
    if rc:
        raise OSError(rc, os.strerror(rc))


def crypt(password: bytes, setting: bytes):
    """crypt_r: the bytes it returns, or None for NULL."""
    data = ffi.new("struct crypt_data *")
    result = lib.crypt_r(_c_string(password), _c_string(setting), data)
    return None if result == ffi.NULL else ffi.string(result)


def crypt_gensalt():
    """crypt_gensalt_rn(NULL, 0, NULL, 0): a setting of the library's
    preferred method, or None (it failed, or the library has none)."""
    if not HAS_CRYPT_GENSALT:
        return None
    out = ffi.new("char[]", 256)
    if lib.crypt_gensalt_rn(ffi.NULL, 0, ffi.NULL, 0, out, 256) == ffi.NULL:
        return None
    return ffi.string(out)


def _or_empty(pointer) -> bytes:
    return ffi.string(pointer) if pointer != ffi.NULL else b""


def getpwnam(name: bytes):
    """getpwnam_r: (name, passwd, uid, gid, gecos, dir, shell), or None."""
    entry, result = ffi.new("struct passwd *"), ffi.new("struct passwd **")
    raw = _c_string(name)
    size = 4096
    while True:             # a buffer big enough
        buf = ffi.new("char[]", size)
        rc = lib.getpwnam_r(raw, entry, buf, size, result)
        if rc != errno.ERANGE or size >= 1 << 20:
            break
        size *= 2
    if rc or result[0] == ffi.NULL:
        return None
    return (ffi.string(entry.pw_name), _or_empty(entry.pw_passwd), entry.pw_uid, entry.pw_gid,
            _or_empty(entry.pw_gecos), _or_empty(entry.pw_dir), _or_empty(entry.pw_shell))


def getspnam(name: bytes):
    """getspnam: (name, password, lastchg, min, max, warn, inactive,
    expire), or None; OSError when it cannot be read.  getspnam, not
    getspnam_r: it is what nss_wrapper (and every NSS) serves; popper
    looks up one user, before any thread exists."""
    raw = _c_string(name)
    ffi.errno = 0
    entry = lib.getspnam(raw)
    if entry == ffi.NULL:
        if ffi.errno not in (0, errno.ENOENT):
            raise OSError(ffi.errno, os.strerror(ffi.errno))
        return None
    return (ffi.string(entry.sp_namp), _or_empty(entry.sp_pwdp), entry.sp_lstchg, entry.sp_min,
            entry.sp_max, entry.sp_warn, entry.sp_inact, entry.sp_expire)


def _hashes(start, step, stop, field: str, limit: int) -> list:
    """The password fields of the first `limit` entries of a database
    enumerated with start(), step() until NULL, stop()."""
    hashes = []
    start()
    try:
        while len(hashes) < limit:
            entry = step()
            if entry == ffi.NULL:
                break
            hashes.append(_or_empty(getattr(entry, field)))
    finally:
        stop()
    return hashes


def passwd_hashes(limit: int) -> list:
    return _hashes(lib.setpwent, lib.getpwent, lib.endpwent, "pw_passwd", limit)


def shadow_hashes(limit: int) -> list:
    return _hashes(lib.setspent, lib.getspent, lib.endspent, "sp_pwdp", limit)


def _ndbm_status():
    return ffi.new("pn_ndbm_status *")


def _ndbm_result(code: int, value, status):
    """(code, value, (errno, corrupt reason, page)) of an ndbm call."""
    return code, value, (status.error, status.reason, status.page)


def ndbm_fetch(dir_fd: int, pag_fd: int, big: bool, key: bytes):
    out, size, status = ffi.new("char[]", lib.PN_NDBM_PBLKSIZ), ffi.new("size_t *"), _ndbm_status()
    code = lib.pn_ndbm_fetch(dir_fd, pag_fd, big, key, len(key), out, size, status)
    return _ndbm_result(code, ffi.unpack(out, size[0]) if code == lib.PN_NDBM_OK else None, status)


def ndbm_store(dir_fd: int, pag_fd: int, big: bool, key: bytes, value: bytes, replace: bool):
    status = _ndbm_status()
    code = lib.pn_ndbm_store(dir_fd, pag_fd, big, key, len(key), value, len(value), replace,
                             status)
    return _ndbm_result(code, None, status)


def ndbm_delete(dir_fd: int, pag_fd: int, big: bool, key: bytes):
    status = _ndbm_status()
    return _ndbm_result(lib.pn_ndbm_delete(dir_fd, pag_fd, big, key, len(key), status),
                        None, status)


def ndbm_page_keys(pag_fd: int, big: bool, number: int):
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


def ndbm_hash(key: bytes) -> int:
    return lib.pn_ndbm_hash(key, len(key))


def prctl(option: int, arg2: int, arg3: int, arg4: int, arg5: int) -> int:
    """prctl(2) (through popper_prctl): its return value, -1 on an error."""
    return lib.popper_prctl(option, arg2, arg3, arg4, arg5)


# --- popper._cpam -------------------------------------------------------------------------

def pam_login(service: bytes, user: bytes, password: bytes, rhost: bytes, tty: bytes):
    """(code, text) of a PAM login: pam_start, PAM_RHOST and PAM_TTY,
    pam_authenticate, pam_acct_mgmt, pam_setcred(ESTABLISH), pam_end.  The
    conversation answers echo-off prompts with the password, echo-on ones
    with the user name."""
    for value in (service, user, password, rhost, tty):
        _c_string(value)
    answers = {"user": user, "password": password}
    handle = pam_ffi.new_handle(answers)
    conv = pam_ffi.new("struct pam_conv *", {"conv": pam_lib.popper_pam_conv,
                                             "appdata_ptr": handle})
    pamh = pam_ffi.new("pam_handle_t **")
    code = pam_lib.pam_start(service, user, conv, pamh)
    if code != pam_lib.PAM_SUCCESS:
        return code, "pam_start failed"
    try:
        for item, value in ((pam_lib.PAM_RHOST, rhost), (pam_lib.PAM_TTY, tty)):
            pam_lib.pam_set_item(pamh[0], item, pam_ffi.new("char[]", value))
        for step in (lambda: pam_lib.pam_authenticate(pamh[0], pam_lib.PAM_DISALLOW_NULL_AUTHTOK),
                     lambda: pam_lib.pam_acct_mgmt(pamh[0], pam_lib.PAM_DISALLOW_NULL_AUTHTOK),
                     lambda: pam_lib.pam_setcred(pamh[0], pam_lib.PAM_ESTABLISH_CRED)):
            code = step()
            if code != pam_lib.PAM_SUCCESS:
                return code, pam_ffi.string(pam_lib.pam_strerror(pamh[0], code)).decode("latin-1")
        return 0, "Success"
    finally:
        pam_lib.pam_end(pamh[0], code)


if PAM_BUILT:
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
