"""popper/deferred.py: modules read ahead run from memory at their first
import, their files gone; a stale .pyc is not used; and server.READ_AHEAD
holds everything X-MANGLE's mangler imports on this Python."""

import os
import subprocess
import sys
import textwrap
import time

import popper

# The library the tests import popper from: the checkout, or what tox installed
# (a checkout that tox built from has no popper/_settings.py).
LIBRARY = os.path.dirname(os.path.dirname(popper.__file__))


def _run(code: str, cwd) -> str:
    result = subprocess.run([sys.executable, "-S", "-c", textwrap.dedent(code)], cwd=str(cwd),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONPATH=LIBRARY))
    assert result.returncode == 0, result.stdout.decode()
    return result.stdout.decode()


def test_a_module_read_ahead_runs_from_memory_once_its_files_are_gone(tmp_path):
    package = tmp_path / "lib" / "aheadpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 'package'\n")
    (package / "leaf.py").write_text("from aheadpkg import VALUE\nLEAF = VALUE + '/leaf'\n")
    out = _run("""
        import compileall, os, shutil, sys
        sys.path.insert(0, "lib")
        compileall.compile_dir("lib", quiet=1)
        from popper import deferred
        deferred.read(["aheadpkg", "aheadpkg.leaf", "aheadpkg.missing", "nosuchmodule"])
        print(deferred.held())
        shutil.rmtree("lib")                    # as a user who cannot read them
        sys.path_importer_cache.clear()
        import aheadpkg.leaf
        print(aheadpkg.leaf.LEAF, aheadpkg.leaf.__file__.endswith("leaf.py"),
              aheadpkg.__path__[0].endswith("aheadpkg"), deferred.held())
        """, tmp_path)
    assert out.splitlines() == ["['aheadpkg', 'aheadpkg.leaf']", "package/leaf True True []"]


def test_a_pyc_older_than_its_source_is_not_used(tmp_path):
    (tmp_path / "lib").mkdir()
    source = tmp_path / "lib" / "aheadmod.py"
    source.write_text("VALUE = 'old'\n")
    _run("import sys; sys.path.insert(0, 'lib'); import aheadmod", tmp_path)     # its .pyc
    source.write_text("VALUE = 'newer'\n")
    os.utime(str(source), (time.time() + 5, time.time() + 5))
    out = _run("""
        import sys
        sys.path.insert(0, "lib")
        sys.dont_write_bytecode = True
        from popper import deferred
        deferred.read(["aheadmod"])
        import aheadmod
        print(aheadmod.VALUE)
        """, tmp_path)
    assert out.split() == ["newer"]


MIME = (b"From: a@example.com\nSubject: =?utf-8?b?aGk=?= =?iso-8859-2?q?x?=\nTo: b\n"
        b"Date: Mon, 1 Jan 2001 00:00:00 +0000\n"
        b"Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\n"
        b"Content-Type: text/plain; charset=iso-8859-2\nContent-Transfer-Encoding: "
        b"quoted-printable\n\nAhoj =E9\n--b\n"
        b"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
        b"PGI+aGk8L2I+Jm5ic3A7\n--b\n"
        b"Content-Type: text/enriched\n\n<bold>x</bold>\n--b\n"
        b"Content-Type: message/rfc822\n\nSubject: inner\n\nbody\n--b\n"
        b"Content-Type: message/partial; id=1\n\nx\n--b\n"
        b"Content-Type: image/jpeg; name=\"x.jpg\"\nContent-Transfer-Encoding: base64\n\n"
        b"AAAA\n--b--\n\n")


def test_read_ahead_holds_all_the_mangler_and_xmit_import(tmp_path):
    """After load_session, mangling every kind of part in every TEXT= and
    charset, and what XTND XMIT runs (a child process, mkstemp's file),
    import nothing from a file: each new module was read ahead, or is
    built into the interpreter."""
    out = _run("""
        import sys
        from popper import server
        from popper.settings import Settings
        settings = Settings()
        settings.userdb = "/nonexistent"
        server.load_session(settings)
        from popper import deferred
        deferred.read(server.READ_AHEAD)    # read even where anyone could import them
        before = set(sys.modules)
        from popper.extensions import mangle
        for word in ("x-mangle(text=plain)", "x-mangle(text=html;charset=utf-8)",
                     "x-mangle(text=enriched;charset=iso-8859-2)",
                     "x-mangle(text=plain;charset=iso_2022-jp)"):
            for top in (None, 1):
                b"".join(mangle.mangled([%r], mangle.parse(word), top))
        import subprocess, tempfile
        subprocess.Popen(["true"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         close_fds=True, start_new_session=True).wait(timeout=30)
        fd, path = tempfile.mkstemp(prefix=".xmit", dir=".")
        print(" ".join(sorted(
            name for name in set(sys.modules) - before
            if type(sys.modules[name].__spec__.loader).__name__ != "_Held"
            and name not in sys.builtin_module_names)))
        print(type(mangle.__spec__.loader).__name__)
        """ % MIME, tmp_path)
    assert out.splitlines() == ["", "_Held"]


def test_load_session_collects_no_garbage_while_it_loads_and_freezes_what_it_loaded(tmp_path):
    """The collector is off while load_session imports and reads ahead (no
    collection walks half-loaded modules), then on again as it was, with
    what was loaded frozen out of its sight (Python 3.7 on): the session's
    collections never walk it.  One the caller had off stays off."""
    out = _run("""
        import gc, sys
        from popper import server
        from popper.settings import Settings
        settings = Settings()
        settings.userdb = "/nonexistent"
        def loading():
            frame = sys._getframe(1)
            while frame is not None and frame.f_code is not server.load_session.__code__:
                frame = frame.f_back
            return frame is not None
        runs = []                       # collections that ran inside load_session
        gc.callbacks.append(lambda phase, info: runs.append(1)
                            if phase == "start" and loading() else None)
        gc.set_threshold(1)             # a collection at every allocation it counts
        server.load_session(settings)
        gc.set_threshold(700)
        frozen = gc.get_freeze_count() if hasattr(gc, "get_freeze_count") else -1
        print(len(runs), gc.isenabled(), frozen != 0)
        gc.disable()
        server.load_session(settings)
        print(gc.isenabled())
        """, tmp_path)
    assert out.split() == ["0", "True", "True", "False"]


def test_nothing_is_read_ahead_where_every_user_can_import_it(tmp_path):
    """readable_by_all: True only when each directory on the path, the
    named packages' and their byte-code caches are open to others and the
    directories above them searchable; one closed anywhere: False."""
    import stat
    import tempfile
    from popper import deferred
    base = tempfile.mkdtemp(dir="/tmp")     # / and /tmp are searchable by all
    try:
        os.chmod(base, 0o755)
        lib = os.path.join(base, "lib")
        pkg = os.path.join(lib, "aheadpkg")
        cache = os.path.join(pkg, "__pycache__")
        os.makedirs(cache)
        for d in (lib, pkg, cache):
            os.chmod(d, 0o755)
        names = ["aheadpkg", "aheadpkg.leaf"]
        assert deferred.readable_by_all(names, [lib, os.path.join(base, "missing")])
        for closed, mode in ((cache, 0o700), (pkg, 0o751), (lib, 0o700), (base, 0o754)):
            os.chmod(closed, mode)
            assert not deferred.readable_by_all(names, [lib]), closed
            os.chmod(closed, 0o755)
        assert not deferred.readable_by_all(["nopkg.leaf"], [lib])   # not there: read()
        assert deferred.readable_by_all(names, [lib])
        assert stat.S_IMODE(os.stat(base).st_mode) == 0o755
    finally:
        import shutil
        shutil.rmtree(base)
