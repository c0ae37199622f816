"""make package: the SVR4 package for legacy hosts (packaging/sco/).

The datastreams it writes pass the verifier (which reads them back as
pkgadd does, lists them with GNU cpio and bsdtar, and runs the install
scripts on a scratch root); the verifier fails on damaged ones; the
scripts handle the targets' layouts; the package holds what the target
needs, and its on-target build step makes the C core.
"""

import importlib.util
import os
import pathlib
import re
import runpy
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from conftest import ROOT

SCO = ROOT / "packaging" / "sco"
LIBDIR = "/usr/lib/popper"
TOOLS = {"cpio": "cpio", "bsdtar": "libarchive-tools", "checkbashisms": "devscripts",
         "make": "make"}

pytestmark = [pytest.mark.slow, pytest.mark.clients]


def _load(name):
    spec = importlib.util.spec_from_file_location("popper_sco_" + name, str(SCO / (name + ".py")))
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(SCO))            # verify.py imports svr4
    spec.loader.exec_module(module)
    return module


svr4 = _load("svr4")
verify = _load("verify")
launcher = runpy.run_path(str(ROOT / "packaging" / "launcher.py"))["launcher"]


def _need_tools():
    missing = ["%s (Debian: %s)" % (tool, package) for tool, package in sorted(TOOLS.items())
               if shutil.which(tool) is None]
    if missing:
        pytest.skip("missing %s; tests/deps.sh installs them as root" % ", ".join(missing))


def make_package(out, *settings):
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    result = subprocess.run(["make", "-s", "-C", str(ROOT), "package", "PYTHON=" + sys.executable,
                             "PKG_DIST=" + str(out)] + list(settings), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, timeout=300)
    assert result.returncode == 0, result.stdout
    return out


def run_verifier(*paths, deadline=10):
    result = subprocess.run([sys.executable, str(SCO / "verify.py"), "--deadline", str(deadline)]
                            + [str(p) for p in paths],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, timeout=300)
    return result.returncode, result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    _need_tools()
    return make_package(tmp_path_factory.mktemp("dist"))


def read_package(path):
    package = verify.Package(str(path))
    assert package.read(), package.problems
    package.check_contents()
    assert package.problems == []
    return package


# --- what make package writes --------------------------------------------------

def test_the_verifier_accepts_both_datastreams(dist):
    rc, out = run_verifier(dist / "popper.pkg", dist / "popper-odc.pkg")
    assert (rc, out.splitlines()) == (0, ["%s: a good datastream" % (dist / name)
                                          for name in ("popper.pkg", "popper-odc.pkg")])


def test_the_datastream_is_what_pkgtrans_writes(dist):
    data = (dist / "popper.pkg").read_bytes()
    head = b"# PaCkAgE DaTaStReAm\npopper 1 %d\n# end of header\n" % read_package(
        dist / "popper.pkg").toc[2]
    assert data[:512] == head + b"\0" * (512 - len(head))
    assert data[512:518] == b"070701"
    assert (dist / "popper-odc.pkg").read_bytes()[512:518] == b"070707"
    assert len(data) % 512 == 0


def test_the_build_is_the_same_every_time(dist, tmp_path):
    again = make_package(tmp_path)
    for name in ("popper.pkg", "popper-odc.pkg", "popper.tar"):
        assert (again / name).read_bytes() == (dist / name).read_bytes(), name


def test_gnu_cpio_extracts_the_directory_format(dist, tmp_path):
    """pkgtrans's reader is cpio -icdumD: GNU cpio's extraction of the part
    archive gives the directory format back, bytes and mtimes."""
    package = read_package(dist / "popper.pkg")
    offset, archive, members = package.archives[1]
    subprocess.run(["cpio", "-idm", "--quiet"], input=archive, cwd=str(tmp_path), check=True,
                   timeout=60)
    for member in members:
        ours = dist / "popper" / member.name
        theirs = tmp_path / member.name
        assert theirs.is_dir() == ours.is_dir(), member.name
        if not ours.is_dir():
            assert theirs.read_bytes() == ours.read_bytes(), member.name
            assert int(theirs.stat().st_mtime) == int(ours.stat().st_mtime) == 1700000000


def test_the_checksums_are_gnu_sum_s(dist):
    for path in sorted((dist / "popper").rglob("*"))[:12]:
        if path.is_file():
            out = subprocess.run(["sum", "-s", str(path)], stdout=subprocess.PIPE,
                                 universal_newlines=True, check=True).stdout
            assert int(out.split()[0]) == svr4.checksum(path.read_bytes()), path


def test_the_tar_holds_the_directory_format(dist):
    with tarfile.open(str(dist / "popper.tar")) as tar:
        members = {m.name: m for m in tar.getmembers()}
        for path in [dist / "popper"] + sorted((dist / "popper").rglob("*")):
            name = str(path.relative_to(dist))
            assert name in members and len(name) < 100, name
            assert (members[name].uid, members[name].gid) == (0, 0)
            if path.is_file():
                assert tar.extractfile(members[name]).read() == path.read_bytes(), name
        assert len(members) == 1 + len(list((dist / "popper").rglob("*")))


def test_the_package_holds_what_the_target_needs(dist):
    files = read_package(dist / "popper.pkg").files
    root = "root" + LIBDIR + "/"
    for path in sorted((ROOT / "popper").rglob("*.py")) + sorted((ROOT / "_native").glob("*.[ch]")):
        rel = str(path.relative_to(ROOT))
        if rel != "popper/_settings.py":
            assert files[root + rel].data == path.read_bytes(), rel
    assert files["root/etc/popper"].data.decode() == launcher("/usr/local/bin/python3", LIBDIR,
                                                              "LOG_LOCAL1")
    assert files["root/etc/popper"].mode & 0o777 == 0o755
    assert files["root/usr/share/man/man8/popper.8"].data == (ROOT / "docs" / "popper.8").read_bytes()
    assert files["root/etc/popauth"].data.decode() == launcher("/usr/local/bin/python3", LIBDIR,
                                                               "LOG_LOCAL1", "popper.popauth")
    assert files["root/etc/popauth"].mode & 0o777 == 0o755
    assert files["root/usr/share/man/man8/popauth.8"].data == (
        ROOT / "docs" / "popauth.8").read_bytes()
    settings = {}
    exec(files[root + "popper/_settings.py"].data.decode(), settings)
    assert (settings["SPOOL_DIR"], settings["LOG_FACILITY"], settings["MAIL_COMMAND"],
            settings["NATIVE"]) == ("/usr/spool/mail", "LOG_LOCAL1", "/usr/lib/sendmail", False)
    assert files[root + "build-native"].data.startswith(b"#!/usr/local/bin/python3\n")
    assert not [name for name in files if "__pycache__" in name or "_cpopper" in name]


def test_the_interpreter_and_spool_are_build_time_choices(tmp_path):
    _need_tools()
    make_package(tmp_path, "PKG_PYTHON=/opt/python3.6/bin/python3", "PKG_SPOOL_DIR=/var/mail")
    package = read_package(tmp_path / "popper.pkg")
    assert package.files["root/etc/popper"].data.startswith(b"#!/opt/python3.6/bin/python3 -Es\n")
    assert b"SPOOL_DIR = '/var/mail'" in package.files["root" + LIBDIR + "/popper/_settings.py"].data
    assert b"\nSPOOL_DIR=/var/mail\n" in package.scripts()["postinstall"]


# --- the verifier fails on a damaged package ----------------------------------

def _rebuild(dist, tmp_path, change):
    """A datastream of a changed copy of the directory format; change(pkgdir)
    edits it and may call resum(pkgdir, name) for a file it rewrote."""
    pkgdir = tmp_path / "popper"
    shutil.copytree(str(dist / "popper"), str(pkgdir))
    change(pkgdir)
    out = tmp_path / "popper.pkg"
    out.write_bytes(svr4.datastream(str(pkgdir)))
    return out


def resum(pkgdir, name):
    """The pkgmap entry of the install file or path name, made true again."""
    pkgmap = pkgdir / "pkgmap"
    lines = pkgmap.read_text().split("\n")
    for n, line in enumerate(lines[1:-1], 1):
        entry = svr4.Entry.parse(line)
        if entry.path == name:
            data = (pkgdir / svr4.archive_name(entry)).read_bytes()
            entry.size, entry.cksum = len(data), svr4.checksum(data)
            lines[n] = entry.line()
    pkgmap.write_text("\n".join(lines))
    os.utime(str(pkgmap), (1700000000, 1700000000))


def _edit(path, old, new):
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, 1))
    os.utime(str(path), (1700000000, 1700000000))


def _in_script(name, text):
    """A change that puts text into script name, before its exit."""
    def change(pkgdir):
        _edit(pkgdir / "install" / name, b"\nexit $status\n", b"\n" + text + b"exit $status\n")
        resum(pkgdir, name)
    return change


def _no_signal(pkgdir):
    _edit(pkgdir / "install" / "postinstall", b'reread inetd "$INETD_PIDS"', b":")
    resum(pkgdir, "postinstall")


def _changed_byte(pkgdir):
    _edit(pkgdir / "root" / "etc" / "popper", b"launcher", b"Launcher")


def _stray(pkgdir):
    (pkgdir / "root" / "etc" / "popper.orig").write_text("x\n")


def _bad_pkg(pkgdir):
    _edit(pkgdir / "pkginfo", b'PKG="popper"', b'PKG="9popper"')
    resum(pkgdir, "pkginfo")


def _unsorted(pkgdir):
    lines = (pkgdir / "pkgmap").read_text().split("\n")
    lines[1], lines[2] = lines[2], lines[1]
    (pkgdir / "pkgmap").write_text("\n".join(lines))


def _small_bmax(pkgdir):
    text = (pkgdir / "pkgmap").read_text()
    (pkgdir / "pkgmap").write_text(re.sub(r"^: 1 \d+", ": 1 10", text))


def _wrong_checksum(pkgdir):
    text = (pkgdir / "pkgmap").read_text()
    entry = svr4.Entry.parse([line for line in text.split("\n") if " /etc/popper " in line][0])
    old = entry.line()
    entry.cksum += 1
    (pkgdir / "pkgmap").write_text(text.replace(old, entry.line()))


def _mode(pkgdir):
    os.chmod(str(pkgdir / "root" / "etc" / "popper"), 0o644)


def _missing_class(pkgdir):
    _edit(pkgdir / "pkginfo", b'CLASSES="none"', b'CLASSES="preserve"')
    resum(pkgdir, "pkginfo")


DAMAGE = {
    "a changed byte in a file": (_changed_byte, "/etc/popper: pkgmap says"),
    "a wrong checksum in the pkgmap": (_wrong_checksum, "/etc/popper: pkgmap says"),
    "a file the pkgmap does not name": (_stray, "root/etc/popper.orig is in the archive but not"),
    "a PKG that starts with a digit": (_bad_pkg, "PKG '9popper': at most 9 letters and digits"),
    "an unsorted pkgmap": (_unsorted, "comes before"),
    "a bmax below the part's size": (_small_bmax, "bmax 10 is less than the part's"),
    "a mode the pkgmap does not say": (_mode, "/etc/popper: mode 0644 in the archive, 0755"),
    "a class CLASSES does not list": (_missing_class, "class none, which CLASSES does not list"),
    "a $(...) in a script": (_in_script("preremove", b"x=$(pwd)\n"),
                             "preremove uses $(...)"),
    "a bashism in a script": (_in_script("preremove", b"[[ -n x ]] && echo\n"),
                              "checkbashisms preremove"),
    "a syntax error in a script": (_in_script("postinstall", b"if then\n"),
                                   "sh -n postinstall"),
    "a postinstall that adds twice": (
        _in_script("postinstall", b'echo "# again" >> "$ROOT$INETD_CONF"\n'),
        "postinstall run twice changes more than once"),
    "a postinstall that does not signal inetd": (
        _no_signal, "postinstall (step 1): inetd got 0 SIGHUP(s), not 1"),
    "a preremove that leaves its line": (
        _in_script("preremove", b'echo "# left" >> "$ROOT$SYSLOG_CONF"\n'),
        "leaves syslog.conf not as it was before postinstall"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_the_verifier_reports_damage(dist, tmp_path, damage):
    change, expected = DAMAGE[damage]
    # A SIGHUP that is never sent is waited for in full: 2 s, not 10, here.
    rc, out = run_verifier(_rebuild(dist, tmp_path, change), deadline=2)
    assert rc == 1 and expected in out, out
    assert all(line.startswith(str(tmp_path / "popper.pkg") + ": ") for line in out.splitlines())


STREAM_DAMAGE = {
    "a misaligned part archive": (lambda d, at: d[:at] + b"\0\0\0\0" + d[at:],
                                  "the part's archive starts at %d, not on a 512-byte boundary"),
    "a cut-off last block": (lambda d, at: d[:-512], "the part's archive: offset"),
    "bytes after the last archive": (lambda d, at: d + b"\0" * 512, "512 bytes after the last"),
    "no header": (lambda d, at: d[512:], "no datastream header"),
}


@pytest.mark.parametrize("damage", sorted(STREAM_DAMAGE))
def test_the_verifier_reports_a_damaged_stream(dist, tmp_path, damage):
    change, expected = STREAM_DAMAGE[damage]
    data = (dist / "popper.pkg").read_bytes()
    at = read_package(dist / "popper.pkg").archives[1][0]
    (tmp_path / "bad.pkg").write_bytes(change(data, at))
    rc, out = run_verifier(tmp_path / "bad.pkg")
    assert rc == 1 and expected.replace("%d", str(at + 4)) in out, out


def test_the_verifier_reports_missing_tools(dist, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "sum", "ps", "grep", "sed", "cat", "rm", "dd", "wc", "find", "chmod"):
        os.symlink(shutil.which(tool), str(bin_dir / tool))
    env = dict(os.environ, PATH=str(bin_dir))
    result = subprocess.run([sys.executable, str(SCO / "verify.py"), str(dist / "popper.pkg")],
                            env=env, stdout=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert result.returncode == 1
    for tool, package in (("cpio", "cpio"), ("bsdtar", "libarchive-tools"),
                          ("checkbashisms", "devscripts")):
        assert "with %s: not installed (Debian: %s)" % (tool, package) in result.stdout


# --- the install scripts on other layouts --------------------------------------

@pytest.fixture
def scratch(dist, tmp_path):
    roots = []

    def make(**conf):
        root = verify.ScratchRoot(str(tmp_path / ("scratch%d" % len(roots))),
                                  read_package(dist / "popper.pkg"), **conf)
        roots.append(root)
        return root
    yield make
    for root in roots:
        root.stop()


def test_a_pop3_service_of_another_server_is_left_alone(scratch):
    theirs = b"pop3\tstream\ttcp\tnowait\troot\t/usr/sbin/ipop3d\tipop3d\n"
    root = scratch(inetd_conf=verify.SAMPLE_INETD + theirs)
    rc, out = root.run("postinstall")
    assert rc == 0 and "has a pop3 line of its own, left as it is" in out
    assert root.read("inetd") == verify.SAMPLE_INETD + theirs
    assert root.await_hups({"inetd": 0, "syslogd": 1}) == []
    rc, out = root.run("preremove")
    assert rc == 0
    assert (root.read("inetd"), root.read("syslog")) == (verify.SAMPLE_INETD + theirs,
                                                         verify.SAMPLE_SYSLOG)


def test_the_solaris_layout(scratch):
    """/etc/inet/inetd.conf behind the symbolic link /etc/inetd.conf, and
    /var/adm where OpenServer has /usr/adm."""
    root = scratch(inetd_conf_path="etc/inet/inetd.conf")
    link = pathlib.Path(root.root) / "etc" / "inetd.conf"
    os.symlink("./inet/inetd.conf", str(link))
    os.rmdir(os.path.join(root.root, "usr", "adm"))
    os.makedirs(os.path.join(root.root, "var", "adm"))
    rc, out = root.run("postinstall")
    assert rc == 0, out
    assert link.is_symlink() and os.readlink(str(link)) == "./inet/inetd.conf"
    assert root.read("inetd").startswith(b"# popper package: ")
    assert b"\nlocal1.debug\t/var/adm/syslog\n" in root.read("syslog")
    log = pathlib.Path(root.root) / "var" / "adm" / "syslog"
    assert log.is_file() and log.stat().st_mode & 0o777 == 0o640
    rc, out = root.run("preremove")
    assert rc == 0, out
    assert (root.read("inetd"), root.read("syslog")) == (verify.SAMPLE_INETD, verify.SAMPLE_SYSLOG)
    assert link.is_symlink()


def test_without_pid_files_the_scripts_say_so(scratch):
    root = scratch()
    for name in ("inetd.pid", "syslog.pid"):
        os.unlink(os.path.join(root.root, "etc", name))
    rc, out = root.run("postinstall")
    assert rc == 0
    assert "found no running inetd by its pid file" in out
    assert "found no running syslogd by its pid file" in out
    assert root.await_hups({"inetd": 0, "syslogd": 0}) == []


def test_a_stale_pid_file_signals_no_other_process(scratch):
    """The pid file names a process that is no inetd (this one's sleep,
    which a SIGHUP would end): it gets nothing."""
    root = scratch()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        with open(os.path.join(root.root, "etc", "inetd.pid"), "w") as f:
            f.write("%d\n" % sleeper.pid)
        rc, out = root.run("postinstall")
        assert rc == 0
        assert "names process %d, which is no inetd" % sleeper.pid in out
        time.sleep(0.3)
        assert sleeper.poll() is None
    finally:
        sleeper.send_signal(signal.SIGTERM)
        sleeper.wait(timeout=10)


def test_a_file_edited_since_is_not_cut(scratch):
    root = scratch()
    assert root.run("postinstall")[0] == 0
    with open(root.conf["inetd"], "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(b"# the administrator's line\n" + data)
    rc, out = root.run("preremove")
    assert rc == 2 and "was edited since" in out
    assert root.read("inetd") == b"# the administrator's line\n" + data


# --- the Python on the target ----------------------------------------------------

def _extract(dist, tmp_path):
    lib = tmp_path / "lib"
    for name, member in read_package(dist / "popper.pkg").files.items():
        if name.startswith("root" + LIBDIR + "/") and not member.is_dir:
            path = lib / name[len("root" + LIBDIR + "/"):]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(member.data)
            path.chmod(member.mode & 0o777)
    return lib


def _python36():
    found = sorted(pathlib.Path("/root/.pyenv/versions").glob("3.6*/bin/python3")) \
        if os.access("/root/.pyenv/versions", os.R_OK) else []
    if not found:
        pytest.skip("no Python 3.6 (pyenv's /root/.pyenv/versions/3.6*)")
    return str(found[0])


def test_the_package_runs_on_python_36(dist, tmp_path):
    """The package's popper imports with its target settings under 3.6, and
    build-native, without cffi there, says so and leaves the pure twins."""
    python = _python36()
    lib = _extract(dist, tmp_path)
    check = ("import sys; sys.path.insert(0, %r); import popper.cli; "
             "from popper import native, settings; "
             "print(native.BUILT, settings.Settings().spool_dir)" % str(lib))
    out = subprocess.run([python, "-Es", "-c", check], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=60).stdout
    assert out == "False /usr/spool/mail\n"
    result = subprocess.run([python, "-Es", str(lib / "build-native")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
    if "has no cffi" not in result.stdout:
        pytest.skip("this Python 3.6 has cffi")
    assert result.returncode == 1 and "goes on with its pure-Python twins" in result.stdout
    assert not list(lib.glob("popper/_cpopper*"))


def test_build_native_makes_the_c_core_on_the_host(dist, tmp_path):
    pytest.importorskip("cffi")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler")
    lib = _extract(dist, tmp_path)
    result = subprocess.run([sys.executable, str(lib / "build-native")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
    assert result.returncode == 0, result.stdout
    assert "popper uses its C core" in result.stdout.splitlines()[-1]
    built = list(lib.glob("popper/_cpopper*"))
    assert len(built) == 1 and not list(lib.glob("*.o")) and not list(lib.glob("*.c"))
    check = "import sys; sys.path.insert(0, %r); from popper import native; print(native.BUILT)"
    out = subprocess.run([sys.executable, "-Es", "-c", check % str(lib)], stdout=subprocess.PIPE,
                         universal_newlines=True, timeout=60).stdout
    assert out == "True\n"
