"""The native layer's shape (issue 9): popper/native.py binds the compiled
modules of _native/modules.py's table and imports nothing of popper above
it; each pure twin is chosen beside its own code; every binding has a twin
that the parity tests compare with it, hostile input included (the account
calls and crypt: test_backend_parity.py; the scanner's corpus:
test_scanner.py; here the scanner's and the wire encoder's hostile files
and chunks, and PAM); and an optional symbol (crypt_gensalt_rn) missing
from an older C library leaves its twin's answer in its place.
"""

import ast
import concurrent.futures
import importlib.util
import os
import random
import runpy
import shutil
import subprocess
import sys
import sysconfig

import pytest

import popper
from conftest import ROOT
from popper import native, privsep
from popper.auth import cryptpw, libpam, unixdb
from popper.maildrop import compact, render, rewrite, scan, wire

MODULES = runpy.run_path(str(ROOT / "_native" / "modules.py"))["MODULES"]
NATIVE_PY = ROOT / "popper" / "native.py"
needs_native = pytest.mark.skipif(not native.BUILT, reason="the C extension is not built")

# Every binding in native.py: the module its twin is chosen in, and the flag it is chosen by.
TWINS = {
    "scan": (scan, "NATIVE"),
    "wire_encode": (wire, "NATIVE"),
    "retr_reply": (render, "NATIVE"),
    "message_edits": (rewrite, "NATIVE"),
    "plan_spool": (compact, "NATIVE"),
    "write_batch": (compact, "NATIVE"),
    "crypt": (cryptpw, "NATIVE"),
    "crypt_gensalt": (unixdb, "NATIVE"),
    "getpwnam": (unixdb, "NATIVE"),
    "getspnam": (unixdb, "NATIVE"),
    "passwd_hashes": (unixdb, "NATIVE"),
    "shadow_hashes": (unixdb, "NATIVE"),
    "pam_login": (libpam, "PAM_NATIVE"),
    "prctl": (privsep, "NATIVE"),
}
# ... and the ndbm calls, the C engine of popper/ndbm.py (its _NativeEngine).
NDBM = {"ndbm_fetch", "ndbm_store", "ndbm_delete", "ndbm_page_keys", "ndbm_hash"}


def imports_of(path) -> list:
    """Every module path's source imports, and whether each is at the top level."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import in %s" % path
            found += [node.module] if node.module != "popper" else [
                "popper." + alias.name for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            found.append("__import__()")
        elif isinstance(node, ast.Attribute) and node.attr == "import_module":
            found.append("importlib.import_module()")
    return found


def is_standard_library(name: str) -> bool:
    spec = importlib.util.find_spec(name.partition(".")[0])
    if spec is None:
        return False
    if spec.origin in (None, "built-in", "frozen"):
        return True
    stdlib = sysconfig.get_paths()["stdlib"]
    return spec.origin.startswith(stdlib + os.sep) and "-packages" not in spec.origin


def test_native_py_imports_only_the_compiled_modules_and_the_standard_library():
    compiled = {module.name for module in MODULES}
    above = [name for name in imports_of(NATIVE_PY)
             if name not in compiled and not is_standard_library(name)]
    assert not above, "popper/native.py imports %s" % above
    # ... and every compiled module of the table, so none is bound elsewhere.
    assert compiled <= set(imports_of(NATIVE_PY))


def test_the_import_check_can_fail(tmp_path):
    bad = tmp_path / "native.py"
    bad.write_text("import os\nfrom popper.maildrop import scan\nfrom popper import _cpopper\n"
                   "def f():\n    from popper.auth import unixdb\n    __import__('popper.log')\n")
    assert imports_of(bad) == ["os", "popper.maildrop", "popper._cpopper", "popper.auth",
                               "__import__()"]
    assert not is_standard_library("popper") and not is_standard_library("pytest")
    assert is_standard_library("os") and is_standard_library("errno")


def run_popper(code: str, **env) -> str:
    """What code prints, run by a fresh interpreter on the popper these tests import."""
    top = os.path.dirname(os.path.dirname(os.path.abspath(popper.__file__)))
    env = dict(os.environ, PYTHONPATH=top, **env)
    return subprocess.run([sys.executable, "-c", code], env=env, cwd="/", stdout=subprocess.PIPE,
                          universal_newlines=True, check=True).stdout


def test_importing_native_loads_nothing_else_of_popper():
    out = run_popper("import sys, popper.native; "
                     "print(' '.join(sorted(m for m in sys.modules if m.startswith('popper'))))")
    compiled = tuple(module.name for module in MODULES)
    # cffi's modules name their lib too: popper._cpopper.lib
    assert {name for name in out.split() if not name.startswith(compiled)} == {
        "popper", "popper.native"}


def test_only_native_py_imports_a_compiled_module():
    compiled = {module.name for module in MODULES}
    for path in sorted((ROOT / "popper").rglob("*.py")):
        if path != NATIVE_PY and "__pycache__" not in path.parts:
            assert not compiled & set(imports_of(path)), path


def test_every_binding_has_its_twin_chosen_beside_it():
    bindings = {node.name for node in ast.parse(NATIVE_PY.read_text()).body
                if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")}
    assert bindings == set(TWINS) | NDBM
    for name, (module, flag) in TWINS.items():
        native_twin, pure_twin = getattr(module, "native_" + name), getattr(module, "pure_" + name)
        assert native_twin is not pure_twin
        assert getattr(module, name) is (native_twin if getattr(native, flag) else pure_twin), name
    from popper import ndbm
    assert ndbm._engine is (ndbm.ENGINES["native"] if native.NATIVE else ndbm.ENGINES["pure"])


@needs_native
@pytest.mark.parametrize("pure", ["", "1"])
def test_popper_purepython_chooses_every_twin(pure):
    """In a fresh interpreter either way: every choice follows the flags."""
    code = ("import popper.native as n; from popper import privsep; "
            "from popper.auth import cryptpw, libpam, unixdb; "
            "from popper.maildrop import compact, render, rewrite, scan, wire; "
            "print(n.NATIVE, n.PAM_NATIVE, " + ", ".join(
                "%s.%s is %s.native_%s" % (module.__name__.rpartition(".")[2], name,
                                            module.__name__.rpartition(".")[2], name)
                for name, (module, _) in sorted(TWINS.items())) + ")")
    out = run_popper(code, POPPER_PUREPYTHON=pure).split()
    flags = {"NATIVE": out[0] == "True", "PAM_NATIVE": out[1] == "True"}
    assert flags["NATIVE"] == (not pure)
    assert out[2:] == [str(flags[flag]) for name, (_, flag) in sorted(TWINS.items())]


# --- the table -------------------------------------------------------------------------

def test_the_table_names_fragments_that_exist_and_settings_configure_writes():
    configure = runpy.run_path(str(ROOT / "configure.py"))
    for module in MODULES:
        assert module.name.startswith("popper._c") and module.setting.startswith("NATIVE")
        assert module.setting in configure["DEFAULTS"]
        for name in module.fragments:
            fragment = runpy.run_path(str(ROOT / "_native" / "fragments" / (name + ".py")))
            assert all(isinstance(fragment[part], str) for part in
                       ("INCLUDES", "TYPES", "FUNCTIONS", "CUSTOMIZATIONS")), name
        for source in module.sources:
            assert (ROOT / "_native" / source).is_file()
    assert [m.name for m in MODULES if not m.optional] == ["popper._cpopper"]
    assert [m.name for m in MODULES if m.optional] == ["popper._cpam"]


def test_the_builder_has_a_builder_for_every_module():
    pytest.importorskip("cffi")
    builder = runpy.run_path(str(ROOT / "_native" / "build.py"))
    for module in MODULES:
        assert callable(builder[module.variable])
        assert module.cffi_module == "_native/build.py:" + module.variable


# --- an optional symbol ----------------------------------------------------------------

OLD_CRYPT_H = """/* crypt.h as the C libraries before libxcrypt had it: no crypt_gensalt. */
#ifndef _CRYPT_H
#define _CRYPT_H 1
struct crypt_data { char opaque[256 * 1024]; };
extern char *crypt(const char *, const char *);
extern char *crypt_r(const char *, const char *, struct crypt_data *);
#endif
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="no C compiler")
def test_a_c_library_without_crypt_gensalt_builds_and_the_twin_stands_in(tmp_path, monkeypatch):
    pytest.importorskip("cffi")
    shutil.copytree(str(ROOT / "_native"), str(tmp_path / "_native"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(str(ROOT / "popper"), str(tmp_path / "popper"),
                    ignore=shutil.ignore_patterns("_c*", "__pycache__"))
    (tmp_path / "old-libc").mkdir()
    (tmp_path / "old-libc" / "crypt.h").write_text(OLD_CRYPT_H)
    monkeypatch.chdir(tmp_path)
    builder = runpy.run_path(str(tmp_path / "_native" / "build.py"))
    core = [m for m in builder["MODULES"] if m.name == "popper._cpopper"][0]
    builder["ffi_for"](core, include_dirs=["old-libc"]).compile()
    code = ("from popper import native; from popper.auth import cryptpw, unixdb; "
            "print(native.BUILT, native.HAS_CRYPT_GENSALT, native.crypt_gensalt(), "
            "unixdb.crypt_gensalt()[:3].decode(), "
            "cryptpw.native_crypt(b'pw', b'$6$salt$') == cryptpw.pure_crypt(b'pw', b'$6$salt$'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), stdout=subprocess.PIPE,
                         env=dict(os.environ, PYTHONPATH=str(tmp_path), POPPER_PUREPYTHON=""),
                         universal_newlines=True, check=True).stdout
    assert out.split() == ["True", "False", "None", "$6$", "True"]


@needs_native
def test_this_c_library_has_crypt_gensalt():
    header = pathlib_text("/usr/include/crypt.h")
    has = "CRYPT_GENSALT_IMPLEMENTS_AUTO_ENTROPY" in header and \
        "CRYPT_GENSALT_IMPLEMENTS_DEFAULT_PREFIX" in header
    assert native.HAS_CRYPT_GENSALT == has
    if has:
        setting = native.crypt_gensalt()
        assert setting[:1] == b"$" and cryptpw.native_crypt(b"pw", setting)


def pathlib_text(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        pytest.skip("no %s" % path)


# --- hostile input: the scanner and the wire encoder -----------------------------------

FROM = b"From alice@example.org Wed Dec  2 05:53:22 1992\n"
HOSTILE_MAILBOXES = [
    b"",
    b"\0",
    b"\0" * 70000,
    b"\n",
    b"hello\n",
    b"\x01\x01\x01\x01",                                   # an MMDF separator with no end
    b"\x01\x01\x01\x01\n\x01\x01\x01\x01\n",
    FROM,
    FROM + b"\0" * 100000,
    FROM + b"Subject: \0\0\0\n\n\0body\0\n",
    FROM + b"X-UIDL: \0abc\n\nbody\n",
    FROM + b"X-UIDL: " + b"u" * 200 + b"\n\nbody\n",
    FROM + b"Subject: " + b"s" * (3 << 20) + b"\n\nbody\n",  # a header line beyond the windows
    FROM + b"\n" + b"b" * (3 << 20),                        # a body of one line, no final LF
    b"From " + b"x" * 5000 + b" Wed Dec  2 05:53:22 1992\n\nbody\n",
    FROM + b"\r\r\r\n\r\n" + FROM.replace(b"\n", b"\r\n") + b"\r\n",
    (FROM + b"Status: RO\n\nx\n\n") * 3000,
    FROM[:-1],
]


def _both_scans(fd, **kw):
    answers = []
    for twin in (scan.pure_scan, scan.native_scan):
        try:
            result = twin(fd, **kw)
            answers.append((result.format, result.separator,
                            [m.as_tuple() for m in result.messages]))
        except scan.NotAMailbox:
            answers.append("not a mailbox")
    return answers


@needs_native
@pytest.mark.twin
@pytest.mark.parametrize("n", range(len(HOSTILE_MAILBOXES)))
def test_both_scanners_agree_on_hostile_mailboxes(tmp_path, n):
    data = HOSTILE_MAILBOXES[n]
    (tmp_path / "mbox").write_bytes(data)
    fd = os.open(str(tmp_path / "mbox"), os.O_RDONLY)
    try:
        for kw in ({}, {"uw": True, "old_style": True}, {"salted": False, "base_time": -1},
                   {"start": len(data)}, {"start": len(data) + 10},
                   {"start": 0, "limit": len(data) // 2}, {"start": len(data) // 3}):
            pure_answer, native_answer = _both_scans(fd, **kw)
            assert pure_answer == native_answer, kw
    finally:
        os.close(fd)


@needs_native
@pytest.mark.twin
def test_both_scanners_refuse_an_unreadable_fd_alike(tmp_path):
    fd = os.open(str(tmp_path), os.O_RDONLY)       # a directory: pread fails with EISDIR
    try:
        errors = []
        for twin in (scan.pure_scan, scan.native_scan):
            with pytest.raises(OSError) as caught:
                twin(fd, limit=100)
            errors.append(caught.value.errno)
        assert errors[0] == errors[1]
    finally:
        os.close(fd)


HOSTILE_CHUNKS = [b"", b"\0", b"\0" * 100000, b".", b"\r", b"\n", b"\r\n.", b".\r\n.\n..\n",
                  b"\r" * 1000, b"\n." * 50000, bytes(range(256)) * 4000, b"x" * (5 << 20),
                  b"\n" * (3 << 20)]


@needs_native
@pytest.mark.twin
@pytest.mark.parametrize("state", [0, wire.AT_LINE_START, wire.AFTER_CR,
                                   wire.AT_LINE_START | wire.AFTER_CR])
def test_both_wire_encoders_agree_on_hostile_chunks(state):
    for data in HOSTILE_CHUNKS:
        assert wire.pure_wire_encode(data, state) == wire.native_wire_encode(data, state)
    rng = random.Random(state)
    for _ in range(200):            # and one after the other, in any pieces
        pieces = [rng.choice(HOSTILE_CHUNKS)[:rng.randrange(300)] for _ in range(5)]
        states = [state, state]
        outs = [b"", b""]
        for piece in pieces:
            for k, twin in enumerate((wire.pure_wire_encode, wire.native_wire_encode)):
                out, states[k] = twin(piece, states[k])
                outs[k] += out
        assert outs[0] == outs[1] and states[0] == states[1]


HEADER_LINES = [b"X-UIDL: old\n", b"x-uidl:\n", b"X-UIDL:", b"Content-Length: 5\r\n",
                b"CONTENT-LENGTH: 9\n", b"Content-Length:", b"Status: O\n", b"status: R\r\n",
                b"STATUS:", b"X-UIDLS: kept\n", b"Statusbar: kept\n", b"Content-Lengths: x\n",
                b"A: 1\n", b".dot: line\n", b"\0: nul\n", b"\r\n", b"\n", b"\r", b"",
                b" X-UIDL: folded\n", b"Subject: \xff\xc4\n", b"\xc4Status: x\n"]


@needs_native
@pytest.mark.twin
def test_both_retr_replies_agree_and_are_retr_header_s_bytes_encoded():
    """retr_reply (RETR's and TOP's one piece: the +OK line, the header as
    retr_header makes it, the body read in place up to end, the "." line)
    is the same for both twins, and the encoder's bytes of retr_header's
    header and the body, on headers of every awkward line and hostile cuts."""
    rng = random.Random(7)
    cases = [(b"", b"", 0, 0, b""), (b"+OK\r\n", b"X: y\n.\r\n.", 5, 9, b"u"),
             (b"+OK 1\r\n", b"Status: O", 9, 9, b"abc"), (b"+OK\r\n", b"X-UIDL: x", 9, 9, b"u"),
             (b"+OK\r\n", b"A: b\nStatus: O\n\n.\n", 15, 18, b"\0.\n")]
    for _ in range(400):
        header = b"".join(rng.choice(HEADER_LINES) for _ in range(rng.randrange(8)))
        if rng.randrange(3):
            header = header[:rng.randrange(len(header) + 1)]         # a cut anywhere
        body = b"".join(rng.choice(HOSTILE_CHUNKS)[:rng.randrange(200)] for _ in range(3))
        data = header + body
        end = rng.randrange(len(header), len(data) + 1)
        uid = rng.choice([b"abcdefghijklmnopqrst", b"", b".x", b"x\ny", b"\0", b"u\r"])
        cases.append((b"+OK %d octets\r\n" % len(data), data, len(header), end, uid))
    for prefix, data, cut, end, uid in cases:
        mail, state = wire.pure_wire_encode(render.retr_header([data[:cut]], uid) + data[cut:end],
                                            wire.AT_LINE_START)
        expected = prefix + mail + wire.ending(state)
        assert render.pure_retr_reply(prefix, data, cut, end, uid) == expected
        assert render.native_retr_reply(prefix, data, cut, end, uid) == expected, (data, cut, uid)


# --- PAM -------------------------------------------------------------------------------

# Each failure PAM answers costs pam_unix's delay (2 s): few of them, each
# call in a process of its own, all at once (the delays are sleeps).
PAM_LOGINS = [("alice", b"pw"), ("", b"pw"), ("x" * 5000, b"pw"), ("m\xfcller", b"\xff\xfe"),
              ("%s%n", b"pw"), ("alice", b""), ("alice", b"x" * 100000),
              ("alice\0", b"pw"), ("\u20acuro", b"pw"), ("alice", b"pw\0")]


def _both_pam_logins(call) -> list:
    return [login(*call) for login in (libpam.pure_pam_login, libpam.native_pam_login)]


@pytest.mark.slow
@pytest.mark.twin
@pytest.mark.skipif(not native.PAM_BUILT, reason="popper._cpam is not built")
def test_both_pam_logins_agree_for_a_service_with_no_file():
    """A service PAM has no file for: its "other" service decides, the same
    for both; and what C would cut short is refused before PAM by both."""
    pytest.importorskip("pam")
    calls = [("popper-nosuchservice", user, password, "localhost", "127.0.0.1")
             for user, password in PAM_LOGINS]
    calls += [("popper-nosuchservice", "alice", b"pw", "host\0", "127.0.0.1"),
              ("popper-nosuchservice", "alice", b"pw", "localhost", "\0"),
              ("popper\0", "alice", b"pw", "localhost", "127.0.0.1"),
              ("", "alice", b"pw", "localhost", "127.0.0.1"),
              ("popper-nosuchservice", "alice", b"pw", "h\u20ac", "127.0.0.1")]
    with concurrent.futures.ProcessPoolExecutor(len(calls)) as pool:
        results = list(pool.map(_both_pam_logins, calls))
    reached = 0
    for call, answers in zip(calls, results):
        codes = [code for code, text in answers]
        assert codes[0] == codes[1], (call, answers)
        assert codes[0] != 0
        reached += answers[0] != libpam.REFUSED
    assert reached == 8             # PAM answered (7 logins, the empty service), not the refusal


@needs_native
def test_the_prctl_twins_agree():
    # PR_GET_NO_NEW_PRIVS (39) and an option no kernel has.
    for option in (39, 12345):
        assert privsep.native_prctl(option, 0, 0, 0, 0) == privsep.pure_prctl(option, 0, 0, 0, 0)
    assert privsep.native_prctl(12345, 0, 0, 0, 0) == -1
