"""Python 3.6: what runs on the target (SCO OpenServer 5.0.7 builds nothing
newer) must be 3.6 code -- everything under popper/, configure.py, setup.py
and _native/*.py -- and so must the tests (and bench/corpus.py, which
they load), since make check runs them on 3.6 too.

Every interpreter checks the sources (parsed as 3.6, and the 3.7+ things
that a 3.6 parse does not catch); where a Python 3.6 is installed, it
byte-compiles them and serves a real POP3 session from a copy of the
checkout, in the pure mode (no compiled module needed), with threads and
as a Python built without them.
"""

import ast
import glob
import json
import os
import pathlib
import runpy
import shutil
import socket
import subprocess
import sys

import pytest

import popper
from conftest import ROOT, Conversation
from popper.transport import probes

TARGET = sorted(
    [p for p in (ROOT / "popper").rglob("*.py") if "__pycache__" not in p.parts]
    + [ROOT / "configure.py", ROOT / "setup.py"] + sorted((ROOT / "_native").rglob("*.py"))
    # make install and the SVR4 package run these with the target's interpreter
    + sorted((ROOT / "packaging").rglob("*.py")) + [ROOT / "packaging" / "sco" / "build-native"])
TESTS = sorted((ROOT / "tests").glob("*.py")) + [ROOT / "bench" / "corpus.py"]

# Standard library names newer than 3.6 (attributes, or names imported
# from a module), with the version that brought them.  One may be used
# only behind hasattr()/getattr() on its name in the same file.
NEWER = {
    "isascii": "3.7", "nullcontext": "3.7", "monotonic_ns": "3.7", "time_ns": "3.7",
    "perf_counter_ns": "3.7", "process_time_ns": "3.7", "fromisoformat": "3.7",
    "cached_property": "3.8", "isqrt": "3.8", "memfd_create": "3.8", "copy_file_range": "3.8",
    "posix_spawn": "3.8", "removeprefix": "3.9", "removesuffix": "3.9", "randbytes": "3.9",
    "is_relative_to": "3.9", "pidfd_open": "3.9", "waitstatus_to_exitcode": "3.9",
    "splice": "3.10", "eventfd": "3.10",
}
# Common names that are new only on one module.
NEWER_ON = {("shlex", "join"): "3.8", ("math", "prod"): "3.8", ("math", "comb"): "3.8",
            ("math", "perm"): "3.8", ("math", "dist"): "3.8", ("functools", "cache"): "3.9",
            ("resources", "files"): "3.9", ("asyncio", "run"): "3.7"}
SUBPROCESS_KEYWORDS = {"capture_output": "3.7", "text": "3.7"}
# Keyword arguments newer than 3.6 whatever the call (Path.unlink, shutil.copytree).
KEYWORDS = {"missing_ok": "3.8", "dirs_exist_ok": "3.8"}
BUILTIN_GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}


def rel(path: pathlib.Path) -> str:
    return str(path.relative_to(ROOT))


def _annotations(tree):
    """The annotations 3.6 evaluates when the def or class runs."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            for arg in (list(getattr(args, "posonlyargs", [])) + args.args + args.kwonlyargs
                        + [a for a in (args.vararg, args.kwarg) if a]):
                if arg.annotation is not None:
                    yield arg.annotation
            if node.returns is not None:
                yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation


def _string(node):
    """The str a constant node holds, or None (3.6 and 3.7 parse it as Str)."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    return getattr(node, "s", None) if type(node).__name__ == "Str" else None


def _guarded(tree) -> set:
    """The names this file tests with hasattr(x, "name") or getattr(x, "name", ...)."""
    names = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("hasattr", "getattr") and len(node.args) >= 2
                and _string(node.args[1])):
            names.add(_string(node.args[1]))
    return names


def problems(source: str, filename: str) -> list:
    """Why this source is not Python 3.6 code, one line each (none: it is)."""
    # feature_version is 3.8's; an older interpreter parses as itself.
    options = {"feature_version": (3, 6)} if sys.version_info >= (3, 8) else {}
    try:
        tree = ast.parse(source, filename, **options)
    except SyntaxError as exc:
        return ["%s:%s: not Python 3.6 syntax: %s" % (filename, exc.lineno, exc.msg)]
    found = []

    def say(node, text):
        found.append("%s:%d: %s" % (filename, node.lineno, text))

    guarded = _guarded(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
            if node.module == "__future__" and "annotations" in names:
                say(node, "from __future__ import annotations (3.7)")
            if node.module == "dataclasses":
                say(node, "dataclasses (3.7)")
            if node.module == "typing" and "Protocol" in names:
                say(node, "typing.Protocol (3.8)")
            for name in names:
                last = (node.module or "").rsplit(".", 1)[-1]
                version = NEWER.get(name) or NEWER_ON.get((last, name))
                if version and name not in guarded:
                    say(node, "%s (%s) imported without a hasattr() guard" % (name, version))
        elif isinstance(node, ast.Import):
            if any(alias.name == "dataclasses" for alias in node.names):
                say(node, "dataclasses (3.7)")
        elif isinstance(node, ast.Attribute):
            owner = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(
                node.value, "id", None)
            if owner == "typing" and node.attr == "Protocol":
                say(node, "typing.Protocol (3.8)")
            version = NEWER.get(node.attr) or NEWER_ON.get((owner, node.attr))
            if version and node.attr not in guarded:
                say(node, ".%s (%s) without a hasattr() guard" % (node.attr, version))
        elif isinstance(node, ast.Call):
            func = node.func
            for keyword in node.keywords:
                if keyword.arg in KEYWORDS:
                    say(node, "%s= (%s)" % (keyword.arg, KEYWORDS[keyword.arg]))
            if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                    and func.value.id == "subprocess"):
                for keyword in node.keywords:
                    if keyword.arg in SUBPROCESS_KEYWORDS:
                        say(node, "subprocess.%s(%s=) (%s)" % (
                            func.attr, keyword.arg, SUBPROCESS_KEYWORDS[keyword.arg]))
        elif type(node).__name__ == "NamedExpr":       # feature_version misses it before 3.10
            say(node, ":= (3.8)")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            if getattr(node.args, "posonlyargs", None):
                say(node, "positional-only parameters (3.8)")
    for annotation in _annotations(tree):
        for node in ast.walk(annotation):
            if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
                    and node.value.id in BUILTIN_GENERICS):
                say(node, "annotation %s[...] (3.9; 3.6 evaluates annotations)" % node.value.id)
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
                say(node, "annotation X | Y (3.10; 3.6 evaluates annotations)")
    return found


@pytest.mark.parametrize("path", TARGET + TESTS, ids=rel)
def test_source_is_python_3_6(path):
    assert problems(path.read_text(encoding="utf-8"), rel(path)) == []


def test_the_checker_finds_what_3_6_cannot_run():
    bad = ("from __future__ import annotations\nimport dataclasses\nimport typing\n"
           "class P(typing.Protocol): pass\n"
           "def f(a: list[int], b: int | None) -> dict[str, int]:\n"
           "    subprocess.run(['x'], capture_output=True)\n"
           "    shutil.copytree(a, b, dirs_exist_ok=True)\n"
           "    return a.isascii() or shlex.join(a) or os.copy_file_range\n")
    found = "\n".join(problems(bad, "bad.py"))
    for text in ("__future__", "dataclasses", "typing.Protocol", "list[...]", "dict[...]",
                 "X | Y", "capture_output", "dirs_exist_ok", ".isascii", ".join",
                 ".copy_file_range"):
        assert text in found, text
    assert problems("if hasattr(os, 'copy_file_range'):\n    os.copy_file_range(1, 2, 3)\n",
                    "ok.py") == []
    assert problems("def f(a, /): pass\n", "posonly.py")
    assert problems("if (n := 1): pass\n", "walrus.py")


def _pair(family):
    """A connected (client, server-side) pair of stream sockets of family."""
    if family == socket.AF_UNIX:
        return socket.socketpair()
    listener = socket.socket(family)
    try:
        listener.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    except OSError:
        listener.close()
        pytest.skip("no loopback address for %s" % family)
    listener.listen(1)
    client = socket.create_connection(listener.getsockname()[:2])
    server, _ = listener.accept()
    listener.close()
    return client, server


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6, socket.AF_UNIX],
                         ids=["inet", "inet6", "unix"])
def test_socket_of_finds_the_family_the_way_python_3_6_needs(monkeypatch, family):
    """probes.socket_of's 3.6 branch, run on this interpreter: the
    family, and so the peer's address, come out as 3.7's fileno= gives them."""
    client, server = _pair(family)

    class Python36:
        version_info = (3, 6, 15)
    monkeypatch.setattr(probes, "sys", Python36)
    try:
        sock = probes.socket_of(os.dup(server.fileno()))
        try:
            assert sock.family == family
            assert sock.getpeername() == server.getpeername()
            assert sock.getsockname() == server.getsockname()
        finally:
            sock.close()
        r, w = os.pipe()
        try:
            with pytest.raises(OSError):
                probes.socket_of(r)            # not a socket: an error, r still open
            os.fstat(r)
        finally:
            os.close(r)
            os.close(w)
    finally:
        client.close()
        server.close()


# --- with a real Python 3.6 ---------------------------------------------------------

def python36():
    """A Python 3.6 interpreter: POPPER_PYTHON36, pyenv's, or python3.6 on PATH."""
    candidates = [os.environ.get("POPPER_PYTHON36")]
    candidates += sorted(glob.glob("/root/.pyenv/versions/3.6*/bin/python3"), reverse=True)
    candidates += [shutil.which("python3.6")]
    for candidate in candidates:
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        try:
            version = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                     stdout=subprocess.PIPE, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        if version.strip() == b"(3, 6)":
            return candidate
    return None


PYTHON36 = python36()
needs_36 = pytest.mark.skipif(PYTHON36 is None, reason="no Python 3.6 interpreter here")

COMPILE_ALL = """
import json, py_compile, sys
failed = []
for path in sys.argv[2:]:
    try:
        py_compile.compile(path, cfile=sys.argv[1], doraise=True)
    except py_compile.PyCompileError as exc:
        failed.append("%s: %s" % (path, exc.msg.strip().splitlines()[-1]))
print(json.dumps(failed))
"""


@pytest.mark.clients
@needs_36
def test_python_3_6_compiles_every_target_and_test_file(tmp_path):
    result = subprocess.run([PYTHON36, "-c", COMPILE_ALL, str(tmp_path / "out.pyc")]
                            + [str(p) for p in TARGET + TESTS],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout.decode()) == []


@pytest.mark.clients
@needs_36
def test_the_launcher_runs_popper_on_python_3_6(tmp_path):
    """The launcher's own text (a template, not a file the checks above read)."""
    launcher = runpy.run_path(str(ROOT / "packaging" / "launcher.py"))["launcher"]
    program = tmp_path / "popper"
    program.write_text(launcher(PYTHON36, os.path.dirname(os.path.dirname(popper.__file__))))
    program.chmod(0o755)
    result = subprocess.run([str(program), "-v"], env=dict(os.environ, POPPER_PUREPYTHON="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("popper version ") and "(Qpopper version 4.0." in result.stdout


@pytest.fixture
def tree36(mailhost):
    """The checkout's popper and configure.py, configured by Python 3.6 (the
    C extension is not built; the checkout is not written to), where the
    test user can read it (popper imports as the user after login)."""
    tree = mailhost.base / "tree"
    tree.mkdir()
    shutil.copytree(str(ROOT / "popper"), str(tree / "popper"), ignore=shutil.ignore_patterns(
        "_settings.py", "_cpopper*", "_cpam*", "__pycache__", "*.o", "*.c"))
    shutil.copytree(str(ROOT / "_native"), str(tree / "_native"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(str(ROOT / "configure.py"), str(tree / "configure.py"))
    result = subprocess.run([PYTHON36, "configure.py"], cwd=str(tree),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    assert result.returncode == 0, result.stdout.decode()
    assert (tree / "popper" / "_settings.py").exists()
    return tree


# python -m popper as a Python 3.6 built --without-threads (SCO's) runs it:
# no threading, no _thread (the standard library falls back to dummy_threading).
WITHOUT_THREADS = ("import runpy, sys; sys.modules['threading'] = sys.modules['_thread'] = None; "
                   "sys.argv[0] = 'popper'; runpy.run_module('popper', run_name='__main__')")


def start36(tree, ours, theirs, *args, threads=True) -> Conversation:
    """popper from tree under Python 3.6 (pure), in inetd mode on theirs:
    the Conversation on ours, or the test fails with what popper said on
    stderr before it could greet."""
    env = dict(os.environ, PYTHONPATH=str(tree), POPPER_PUREPYTHON="1")
    command = [PYTHON36] + (["-m", "popper"] if threads else ["-c", WITHOUT_THREADS])
    process = subprocess.Popen(command + list(args), stdin=theirs, stdout=theirs,
                               stderr=subprocess.PIPE, env=env, cwd=str(tree))
    theirs.close()
    try:
        return Conversation(ours, process)
    except EOFError:
        pass
    ours.close()
    process.wait(30)
    pytest.fail("popper under Python 3.6 ended before its greeting:\n%s"
                % process.stderr.read().decode(errors="replace"))


@pytest.mark.clients
@needs_36
@pytest.mark.parametrize("threads", [True, False], ids=["threads", "without-threads"])
def test_a_pop3_session_with_python_3_6(mailhost, tree36, threads):
    first = (b"From alice@example.org Mon Jan  1 00:00:00 2024\nSubject: one\n\n"
             b"hello\n.a dot-stuffed line\n\n")
    second = b"From bob@example.org Mon Jan  1 00:00:01 2024\nSubject: two\n\nbye\n"
    mailhost.deliver(first + second)
    conv = start36(tree36, *socket.socketpair(), "-f", str(mailhost.config), "-T", "60",
                   threads=threads)
    try:
        assert conv.greeting.startswith(b"+OK "), conv.greeting
        assert conv.login().startswith(b"+OK ")
        assert conv.cmd("STAT").startswith(b"+OK 2 ")
        assert conv.cmd("RETR 1").startswith(b"+OK ")
        lines = conv.multiline()
        assert lines[0] == b"Subject: one" and lines[1].startswith(b"X-UIDL: ")
        assert lines[2:] == [b"", b"hello", b".a dot-stuffed line"]
        assert conv.cmd("DELE 2").startswith(b"+OK ")
        assert conv.cmd("QUIT").startswith(b"+OK ")
        assert conv.closed()
    finally:
        conv.close()
    assert conv.process.returncode == 0, conv.process.stderr.read().decode(errors="replace")
    spool = mailhost.spool().read_bytes()
    assert spool.startswith(b"From alice@example.org ") and b"Subject: two" not in spool
    assert b"hello\n..a dot-stuffed line\n" not in spool and b"\n.a dot-stuffed line\n" in spool


@pytest.mark.clients
@needs_36
def test_python_3_6_sees_an_ipv6_peer_whole(mailhost, tree36):
    """Under inetd, 3.6 read half of an IPv6 peer's address (::1 came out
    as ::%<junk>); -p 3 lets only a local client send USER, so the login
    shows whether popper saw ::1."""
    conv = start36(tree36, *_pair(socket.AF_INET6), "-f", str(mailhost.config), "-p", "3")
    try:
        assert conv.cmd("USER alice").startswith(b"+OK ")
        assert conv.cmd("QUIT").startswith(b"+OK ")
    finally:
        conv.close()
