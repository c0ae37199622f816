"""make install and make uninstall (packaging/install.py), the files of
packaging/linux/, and configure.py's installation switches, PYTHON= and
--version.

The fast tests run configure.py's and install.py's functions in-process
on a small source tree of their own; the slow ones copy the checkout,
configure, build and install it, and run what was installed: staged under
DESTDIR (in a mount namespace where DESTDIR's /usr/local is /usr/local),
and installed for real under a temporary prefix, through the shipped
units' command lines under systemd-socket-activate and the shipped xinetd
file under xinetd, fetched by curl.
"""

import importlib.util
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import pytest

import clients as C
from conftest import (IS_ROOT, ROOT, Standalone, corpus, free_port, start_inetd,
                      wait_for_port)


def _load(name: str, path: pathlib.Path):
    """A module by path (packaging/ is no package; configure.py is a script)."""
    spec = importlib.util.spec_from_file_location(name, str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


configure = _load("popper_configure", ROOT / "configure.py")
install = _load("popper_install", ROOT / "packaging" / "install.py")
_launcher = _load("popper_launcher", ROOT / "packaging" / "launcher.py")
launcher, site_dirs = _launcher.launcher, _launcher.site_dirs

EXT_SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
MAIL = list(corpus.messages(5, seed=110))
UNPROBED = ["--disable-native", "--enable-spool-dir=/var/mail",
            "--with-sendmail=/usr/sbin/sendmail"]


def settings_for(*switches) -> dict:
    """configure.py's settings for these switches, nothing probed."""
    return configure.settings_for(list(switches) + UNPROBED, configure.Log())


def run(command, cwd, env=None, timeout=300, ok=True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=str(cwd), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)
    if ok:
        assert result.returncode == 0, "%s exited %d\n%s\n%s" % (
            command, result.returncode, result.stdout[-3000:], result.stderr[-3000:])
    return result


class Tree:
    """A copy of the checkout to configure, build and install."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        ignore = shutil.ignore_patterns("_settings.py", "_cpopper*", "_cpam*", "__pycache__",
                                        "*.o")
        for name in ("popper", "_native", "packaging", "docs"):
            shutil.copytree(str(ROOT / name), str(path / name), ignore=ignore)
        for name in ("configure.py", "setup.py", "Makefile", "README.md"):
            shutil.copy(str(ROOT / name), str(path / name))

    def configure(self, *args, env=None, ok=True) -> subprocess.CompletedProcess:
        return run([sys.executable, "configure.py"] + list(args), self.path, env=env, ok=ok)

    def settings(self) -> dict:
        return install.read_settings(str(self.path))

    def make(self, *targets, env=None) -> str:
        return run(["make"] + list(targets), self.path, env=env).stdout


@pytest.fixture
def tree(tmp_path):
    return Tree(tmp_path / "src")


# --- configure.py ---------------------------------------------------------------

def test_help_lists_the_installation_switches_and_python(tree):
    text = tree.configure("--help").stdout
    for switch in configure.DIRECTORIES:
        assert re.search(r"^  %s " % re.escape(switch.spelling), text, re.M), switch.spelling
    for word in ("PYTHON=PATH", "--version", "--quiet"):
        assert re.search(r"^  %s" % re.escape(word), text, re.M), word
    for word in configure.IGNORED:
        assert "--" + word in text


def test_version_prints_poppers_version(tree):
    version = _load("popper_version", ROOT / "popper" / "__init__.py").__version__
    for switch in ("--version", "-V"):
        result = tree.configure(switch)
        assert result.stdout == "popper configure.py %s\n" % version
    assert not (tree.path / "popper" / "_settings.py").exists()


USR_LOCAL = {"PREFIX": "/usr/local", "EXEC_PREFIX": "/usr/local", "SBINDIR": "/usr/local/sbin",
             "LIBDIR": "/usr/local/lib", "LIBEXECDIR": "/usr/local/libexec",
             "SYSCONFDIR": "/usr/local/etc", "LOCALSTATEDIR": "/usr/local/var",
             "DATAROOTDIR": "/usr/local/share", "DATADIR": "/usr/local/share",
             "MANDIR": "/usr/local/share/man",
             "SYSTEMD_UNIT_DIR": "/usr/local/lib/systemd/system"}
USR = {key: value.replace("/usr/local", "/usr") for key, value in USR_LOCAL.items()}


@pytest.mark.parametrize("switches, changed", [
    ([], {}),
    (["--prefix=/usr"], USR),
    (["--prefix=/opt/p/", "--exec-prefix=/opt/x"],
     {"PREFIX": "/opt/p", "EXEC_PREFIX": "/opt/x", "SBINDIR": "/opt/x/sbin",
      "LIBDIR": "/opt/x/lib", "LIBEXECDIR": "/opt/x/libexec", "SYSCONFDIR": "/opt/p/etc",
      "LOCALSTATEDIR": "/opt/p/var", "DATAROOTDIR": "/opt/p/share", "DATADIR": "/opt/p/share",
      "MANDIR": "/opt/p/share/man", "SYSTEMD_UNIT_DIR": "/opt/p/lib/systemd/system"}),
    (["--datarootdir=/d"], {"DATAROOTDIR": "/d", "DATADIR": "/d", "MANDIR": "/d/man"}),
    (["--sbindir=/sbin", "--sysconfdir=/etc", "--localstatedir=/var", "--libexecdir=/le",
      "--datadir=/dd", "--mandir=/m", "--libdir=/l"],
     {"SBINDIR": "/sbin", "SYSCONFDIR": "/etc", "LOCALSTATEDIR": "/var", "LIBEXECDIR": "/le",
      "DATADIR": "/dd", "MANDIR": "/m", "LIBDIR": "/l"}),
    # As dh_auto_configure passes them: unexpanded, for make to expand.
    (["--prefix=/usr", "--mandir=${prefix}/share/man", "--libdir=$exec_prefix/lib/x86_64"],
     dict(USR, LIBDIR="/usr/lib/x86_64")),
    (["--with-systemdsystemunitdir=/etc/systemd/system"],
     {"SYSTEMD_UNIT_DIR": "/etc/systemd/system"}),
    (["--without-systemdsystemunitdir"], {"SYSTEMD_UNIT_DIR": None}),
    (["--with-systemdsystemunitdir=no"], {"SYSTEMD_UNIT_DIR": None}),
])
def test_directories_have_autoconfs_defaults(switches, changed):
    settings = settings_for(*switches)
    assert {key: settings[key] for key in USR_LOCAL} == dict(USR_LOCAL, **changed)


@pytest.mark.parametrize("switch, message", [
    ("--sbindir=sbin", "--sbindir=sbin: needs an absolute path, not 'sbin'"),
    ("--prefix=/usr/my local", "needs an absolute path without white space"),
    ("--mandir=${nowhere}/man", "${nowhere} is not a directory named before it"),
    ("--datarootdir=${mandir}", "${mandir} is not a directory named before it"),
    ("--sbindir", "--sbindir needs =ARG"),
    ("CC=gcc", "CC=gcc: configure.py takes no variable CC, only PYTHON="),
    ("PYTHON=/nonexistent/python3", "PYTHON=/nonexistent/python3: no such program"),
    ("PYTHON=no-such-python", "PYTHON=no-such-python: no such program"),
    ("PYTHON=/bin/false", "PYTHON=/bin/false: popper needs Python 3.6 or newer"),
])
def test_bad_directories_and_variables_exit_1(tree, switch, message):
    result = tree.configure(switch, ok=False)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert not (tree.path / "popper" / "_settings.py").exists()


DH_AUTO_CONFIGURE = [      # debhelper 13 (Debian 12) for an autoconf package
    "--build=x86_64-linux-gnu", "--prefix=/usr", "--includedir=${prefix}/include",
    "--mandir=${prefix}/share/man", "--infodir=${prefix}/share/info", "--sysconfdir=/etc",
    "--localstatedir=/var", "--disable-option-checking", "--disable-silent-rules",
    "--libdir=${prefix}/lib/x86_64-linux-gnu", "--runstatedir=/run",
    "--disable-maintainer-mode", "--disable-dependency-tracking"]
RPM_CONFIGURE = [          # rpm's %configure
    "--build=x86_64-redhat-linux-gnu", "--host=x86_64-redhat-linux-gnu", "--program-prefix=",
    "--disable-dependency-tracking", "--prefix=/usr", "--exec-prefix=/usr", "--bindir=/usr/bin",
    "--sbindir=/usr/sbin", "--sysconfdir=/etc", "--datadir=/usr/share",
    "--includedir=/usr/include", "--libdir=/usr/lib64", "--libexecdir=/usr/libexec",
    "--localstatedir=/var", "--sharedstatedir=/var/lib", "--mandir=/usr/share/man",
    "--infodir=/usr/share/info"]


@pytest.mark.parametrize("switches, libdir", [(DH_AUTO_CONFIGURE, "/usr/lib/x86_64-linux-gnu"),
                                              (RPM_CONFIGURE, "/usr/lib64")])
def test_packaging_tools_can_drive_it(tree, switches, libdir):
    tree.configure(*switches)
    settings = tree.settings()
    assert (settings["PREFIX"], settings["SBINDIR"], settings["SYSCONFDIR"],
            settings["LOCALSTATEDIR"], settings["MANDIR"], settings["LIBDIR"]) == (
        "/usr", "/usr/sbin", "/etc", "/var", "/usr/share/man", libdir)
    log = (tree.path / "config.log").read_text()
    ignored = [arg for arg in switches if (arg[2:].partition("=")[0] + "=") in configure.IGNORED
               or arg[2:] in configure.IGNORED]
    assert ignored
    for arg in ignored:
        assert re.search(r"^ignored %s: \w" % re.escape(arg), log, re.M), arg


def test_python_chooses_the_interpreter(tree):
    other = "/usr/bin/python3"
    if not os.access(other, os.X_OK) or os.path.realpath(other) == os.path.realpath(
            sys.executable):
        pytest.skip("needs a /usr/bin/python3 that is not the one running the tests")
    has_cffi = subprocess.run([other, "-c", "import cffi"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    for how in ("argument", "environment"):
        if how == "argument":
            tree.configure("PYTHON=" + other, env=env)
        else:
            tree.configure(env=dict(env, PYTHON=other))
        assert tree.settings()["PYTHON"] == other, how
        log = (tree.path / "config.log").read_text()
        assert "python: %s (" % other in log
        # What is probed is that interpreter's: its cffi, not this one's.
        assert ("checking for the cffi Python package... %s"
                % ("yes" if has_cffi else "no")) in log
        status = (tree.path / "config.status").read_text()
        assert "PYTHON=%s " % other in status
    # config.status keeps it, whatever $PYTHON says then; an argument beats $PYTHON.
    run(["./config.status"], tree.path, env=dict(env, PYTHON=sys.executable))
    assert tree.settings()["PYTHON"] == other
    tree.configure("PYTHON=" + sys.executable, env=dict(env, PYTHON=other))
    assert tree.settings()["PYTHON"] == sys.executable


CONFIGURED = ("popper/_settings.py", "config.status", "config.log")


@pytest.mark.clients
@pytest.mark.slow
def test_setup_py_leaves_an_unconfigured_checkout_unconfigured(tree, tmp_path):
    """pip and tox run setup.py with a throw-away interpreter: settings it
    configured for itself, left behind, would send make install to it."""
    pytest.importorskip("setuptools")
    run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist")], tree.path)
    assert [name for name in CONFIGURED if (tree.path / name).exists()] == []
    sdist, = (tmp_path / "dist").iterdir()
    listing = run(["tar", "-tzf", str(sdist)], tmp_path).stdout.split()
    assert "%s/popper/_settings.py" % sdist.name[:-len(".tar.gz")] in listing
    # What the administrator configured stays as it was.
    tree.configure()
    before = {name: (tree.path / name).read_bytes() for name in CONFIGURED}
    run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist2")], tree.path)
    assert {name: (tree.path / name).read_bytes() for name in CONFIGURED} == before


def test_the_python_headers_are_probed(monkeypatch):
    log = configure.Log()
    if not configure.probe_python_headers(log):
        pytest.skip("needs a C compiler and this Python's headers: %s" % log.lines)
    monkeypatch.setattr(configure.sysconfig, "get_paths",
                        lambda: {"include": "/nonexistent", "platinclude": "/nonexistent"})
    log = configure.Log()
    assert not configure.probe_python_headers(log)
    assert "checking for <Python.h>... no" in log.lines
    assert any("apt-get install python3-dev" in line for line in log.lines)
    settings = configure.settings_for(["--enable-spool-dir=/var/mail",
                                       "--with-sendmail=/usr/sbin/sendmail"], log)
    assert settings["NATIVE"] is False and settings["NATIVE_PAM"] is False
    assert ("the C extension cannot be built here: popper will use its pure-Python twins"
            in log.lines)


# --- packaging/install.py, in-process -------------------------------------------------

@pytest.fixture
def source(tmp_path):
    """A small checkout: a popper package whose cli.main says who it is, a
    compiled module for this interpreter (and the build's leftovers), a
    manual page."""
    root = tmp_path / "checkout"
    package = root / "popper"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cli.py").write_text("def main():\n    print('the installed popper')\n"
                                    "    return 0\n")
    (package / "sub" / "__init__.py").write_text("X = 1\n")
    (package / ("_cpopper" + EXT_SUFFIX)).write_bytes(b"\x7fELF not really")
    (package / ("_cpopper.cpython-36m-x86_64-linux-gnu.so")).write_bytes(b"another Python's")
    (package / "_cpopper.c").write_text("/* generated */\n")
    (package / "_cpopper.o").write_bytes(b"object")
    (root / "docs").mkdir()
    (root / "docs" / "popper.8").write_text(".TH POPPER 8\n")
    (root / "docs" / "architecture.md").write_text("not a manual page\n")
    return root


def fake_settings(prefix="/usr/local", *switches) -> dict:
    settings = settings_for("--prefix=" + prefix, *switches)
    settings.update(PYTHON=sys.executable, NATIVE=True, NATIVE_PAM=False)
    return settings


def tree_files(top: pathlib.Path) -> set:
    return {"/" + str(p.relative_to(top)) for p in top.rglob("*") if not p.is_dir()}


def tree_dirs(top: pathlib.Path) -> set:
    return {"/" + str(p.relative_to(top)) for p in top.rglob("*") if p.is_dir()}


def test_every_linux_file_is_installed_with_the_paths_filled_in(source):
    settings = fake_settings("/opt/pop", "--sysconfdir=/etc/pop")
    items = install.plan(settings, str(source))
    assert {name for name, _, _ in install.LINUX} == set(os.listdir(
        str(ROOT / "packaging" / "linux")))
    by_path = {item.path: item.data.decode() for item in items}
    for path, text in by_path.items():
        if not path.endswith((".pyc", EXT_SUFFIX)):
            assert not re.search(r"@[A-Z_]+@", text), path
    units = "/opt/pop/lib/systemd/system/"
    command = "/opt/pop/sbin/popper -s -f /etc/pop/popper.conf"
    assert "\nExecStart=-%s\n" % command in by_path[units + "popper@.service"]
    assert "\nExecStart=%s\n" % command in by_path[units + "popper-standalone.service"]
    assert "\nAccept=yes\n" in by_path[units + "popper.socket"]
    assert "\nAccept=no\n" in by_path[units + "popper-standalone.socket"]
    assert "server      = /opt/pop/sbin/popper\n" in by_path["/etc/pop/xinetd.d/popper"]
    assert re.search(r"^pop3\s+stream\s+tcp\s+nowait\s+root\s+%s\s+popper -s -f "
                     r"/etc/pop/popper.conf$" % re.escape("/opt/pop/sbin/popper"),
                     by_path["/opt/pop/share/popper/inetd.conf"], re.M)
    assert "@include common-auth\n" in by_path["/etc/pop/pam.d/popper"]
    assert by_path["/etc/pop/popper.conf"] == by_path["/etc/pop/popper.conf.sample"]
    assert by_path["/opt/pop/sbin/popper"] == launcher(sys.executable, "/opt/pop/lib/popper",
                                                       "LOG_LOCAL1", "popper.cli",
                                                       installed_in="/opt/pop/sbin",
                                                       site=site_dirs(sys.executable))
    assert by_path["/opt/pop/sbin/popauth"] == launcher(sys.executable, "/opt/pop/lib/popper",
                                                        "LOG_LOCAL1", "popper.popauth",
                                                        installed_in="/opt/pop/sbin",
                                                        site=site_dirs(sys.executable))
    pam = install.plan(dict(settings, PAM_SERVICE="pop3"), str(source))
    assert "/etc/pop/pam.d/pop3" in {item.path for item in pam}
    none = install.plan(fake_settings("/opt/pop", "--without-systemdsystemunitdir"),
                        str(source))
    assert not [item for item in none if "systemd" in item.path]


def test_substitute_refuses_what_is_no_setting():
    with pytest.raises(install.InstallError, match="@NO_SUCH@ is no setting"):
        install.substitute("x @NO_SUCH@ y", fake_settings())
    assert install.substitute("@SBINDIR@ @SHY@ @PAM_SERVICE@ @LOCKING@",
                              fake_settings()) == "/usr/local/sbin false none fcntl,dotlock,flock"


def test_install_then_uninstall_leaves_nothing(source, tmp_path):
    settings = fake_settings()
    destdir = tmp_path / "stage"
    said = []
    install.install(settings, str(destdir), str(source), say=said.append)
    lib = "/usr/local/lib/popper/popper/"
    files = tree_files(destdir)
    tag = sys.implementation.cache_tag
    assert files == {
        lib + "__init__.py", lib + "cli.py", lib + "sub/__init__.py",
        lib + "_cpopper" + EXT_SUFFIX,
        lib + "__pycache__/__init__.%s.pyc" % tag, lib + "__pycache__/cli.%s.pyc" % tag,
        lib + "sub/__pycache__/__init__.%s.pyc" % tag,
        "/usr/local/lib/popper/INSTALLED", "/usr/local/sbin/popper", "/usr/local/sbin/popauth",
        "/usr/local/share/man/man8/popper.8", "/usr/local/share/popper/inetd.conf",
        "/usr/local/etc/popper.conf", "/usr/local/etc/popper.conf.sample",
        "/usr/local/etc/pam.d/popper", "/usr/local/etc/xinetd.d/popper"} | {
        "/usr/local/lib/systemd/system/" + unit for unit in (
            "popper.socket", "popper@.service", "popper-standalone.socket",
            "popper-standalone.service")}
    mode = lambda path: stat_mode(destdir, path)          # noqa: E731
    assert (mode("/usr/local/sbin/popper"), mode(lib + "cli.py"), mode("/usr/local/lib/popper"),
            mode("/usr/local/etc/popper.conf")) == (0o755, 0o644, 0o755, 0o644)
    manifest = install.read_manifest(settings, str(destdir))
    assert set(manifest.files) == files - {"/usr/local/lib/popper/INSTALLED"}
    assert set(manifest.dirs) == tree_dirs(destdir)
    assert "make uninstall DESTDIR=%s removes them" % destdir in said[-1]
    # The byte code names the installed file, not the staged one.
    code = (destdir / lib[1:] / "__pycache__" / ("cli.%s.pyc" % tag)).read_bytes()
    assert (lib + "cli.py").encode() in code and str(destdir).encode() not in code

    said.clear()
    install.uninstall(settings, str(destdir), say=said.append)
    assert list(destdir.iterdir()) == []
    assert said == ["uninstalled %d files under %s" % (len(files) - 1, destdir)]


def stat_mode(destdir, path):
    return (destdir / path[1:]).stat().st_mode & 0o7777


def test_uninstall_removes_only_what_install_wrote(source, tmp_path):
    settings = fake_settings()
    destdir = tmp_path / "stage"
    (destdir / "usr" / "local" / "sbin").mkdir(parents=True)         # there before
    (destdir / "usr" / "local" / "sbin" / "other").write_text("someone else's\n")
    (destdir / "usr" / "local" / "etc" / "xinetd.d").mkdir(parents=True)
    (destdir / "usr" / "local" / "etc" / "xinetd.d" / "popper").write_text("the admin's\n")
    said = []
    install.install(settings, str(destdir), str(source), say=said.append)
    assert ("kept %s/usr/local/etc/xinetd.d/popper: it is not what make install wrote there"
            % destdir) in said
    (destdir / "usr/local/lib/popper/popper/notes.txt").write_text("mine\n")
    (destdir / "usr/local/share/man/man8/popper.8").write_text("edited\n")
    said.clear()
    install.uninstall(settings, str(destdir), say=said.append)
    assert tree_files(destdir) == {"/usr/local/sbin/other", "/usr/local/etc/xinetd.d/popper",
                                   "/usr/local/lib/popper/popper/notes.txt",
                                   "/usr/local/share/man/man8/popper.8"}
    assert (destdir / "usr/local/etc/xinetd.d/popper").read_text() == "the admin's\n"
    assert ("kept %s/usr/local/share/man/man8/popper.8: changed since make install wrote it"
            % destdir) in said
    assert "kept %s/usr/local/lib/popper: not empty" % destdir in said
    assert not (destdir / "usr/local/share/popper").exists()        # made by install, empty
    assert not (destdir / "usr/local/lib/systemd").exists()


def test_reinstall_keeps_the_administrators_config_and_drops_what_is_gone(source, tmp_path):
    destdir = tmp_path / "stage"
    said = []
    install.install(fake_settings(), str(destdir), str(source), say=said.append)
    conf = destdir / "usr/local/etc/popper.conf"
    conf.write_text(conf.read_text() + "set statistics\n")
    pam = destdir / "usr/local/etc/pam.d/popper"
    pam.unlink()
    pam.symlink_to("/etc/pam.d/other")                               # the admin's choice
    (source / "popper" / "sub" / "__init__.py").unlink()                 # a newer version
    (source / "popper" / "sub").rmdir()
    moved = fake_settings("/usr/local", "--sbindir=/usr/local/bin")
    said.clear()
    install.install(moved, str(destdir), str(source), say=said.append)
    assert conf.read_text().endswith("set statistics\n")
    assert os.readlink(str(pam)) == "/etc/pam.d/other"
    for path in (conf, pam):
        assert "kept %s: it is not what make install wrote there" % path in said
    # The unchanged config files follow the new paths; the old program is gone.
    assert "server      = /usr/local/bin/popper\n" in (
        destdir / "usr/local/etc/xinetd.d/popper").read_text()
    assert not (destdir / "usr/local/sbin/popper").exists()
    assert not (destdir / "usr/local/lib/popper/popper/sub/__init__.py").exists()
    assert (destdir / "usr/local/bin/popper").exists()
    install.uninstall(moved, str(destdir), say=said.append)
    assert tree_files(destdir) == {"/usr/local/etc/popper.conf", "/usr/local/etc/pam.d/popper"}


def test_install_refuses_a_missing_extension(source):
    (source / "popper" / ("_cpopper" + EXT_SUFFIX)).unlink()
    with pytest.raises(install.InstallError, match="is not built for .*: run make first"):
        install.plan(fake_settings(), str(source))
    assert install.plan(dict(fake_settings(), NATIVE=False), str(source))


def test_install_takes_a_stable_abi_extension(source):
    """setuptools (setup.py build_ext --inplace, pip) names cffi's modules
    for the stable ABI: installed like make build's."""
    built = source / "popper" / ("_cpopper" + EXT_SUFFIX)
    built.rename(built.with_name("_cpopper.abi3.so"))
    paths = [item.path for item in install.plan(fake_settings(), str(source))]
    assert any(path.endswith("/popper/_cpopper.abi3.so") for path in paths), paths
    assert not any("cpython-36m" in path for path in paths)


def test_the_launcher_runs_a_named_module():
    text = launcher("/usr/bin/python3", "/usr/lib/popper", "LOG_MAIL", "popper.popauth")
    assert "\n    from popper.popauth import main\n" in text
    assert "syslog.LOG_MAIL)" in text
    with pytest.raises(ValueError):
        launcher("/usr/bin/python3", "/usr/lib/popper", module="popper.cli; import os")


def test_the_sample_config_has_every_option_with_its_default():
    """Each "# set name = value" line of the sample, taken in, is valid and
    (unless marked e.g.) leaves the compiled-in default as it was; every
    option popper takes is there."""
    from popper import _settings as compiled
    from popper.settings import OPTIONS, Settings, apply_line
    sample = install.substitute((ROOT / "packaging" / "linux" / "popper.conf").read_text(),
                                {k: v for k, v in vars(compiled).items() if k.isupper()})
    defaults, seen = Settings(), set()
    for line in sample.splitlines():
        match = re.match(r"# ((?:re)?set ([\w-]+).*)$", line)
        if not match:
            continue
        name = match.group(2)
        assert name in OPTIONS, line
        attr = OPTIONS[name].attr
        if attr is None:                             # config-file: reads another file
            continue
        settings = Settings()
        apply_line(settings, match.group(1))
        seen.add(attr)
        if "# e.g." not in line:
            got, want = (getattr(settings, attr), getattr(defaults, attr)) if name != "temp-dir" \
                else (settings.temp_drop_dir, defaults.temp_drop_dir)
            assert got == want, line
    assert seen == {option.attr for option in OPTIONS.values() if option.attr}


# --- make install, for real --------------------------------------------------------

def popper_command(unit: pathlib.Path) -> list:
    """The command line of a unit's ExecStart= (without systemd's "-")."""
    line = re.search(r"^ExecStart=(.*)$", unit.read_text(), re.M).group(1)
    return shlex.split(line.lstrip("-"))


def deliver(mailhost) -> dict:
    mailhost.deliver(corpus.mbox_bytes(MAIL))
    return {m.message_id: m.data for m in MAIL}


def check_pop3_session(conv, expected: dict) -> None:
    assert conv.greeting.startswith(b"+OK ")
    assert conv.login().startswith(b"+OK alice has %d visible messages" % len(MAIL))
    assert conv.cmd("RETR 1").startswith(b"+OK")
    got = b"\n".join(conv.multiline()) + b"\n"
    C.check_downloads([got], {MAIL[0].message_id: expected[MAIL[0].message_id]})
    assert conv.cmd("QUIT").startswith(b"+OK")
    conv.close()


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.parametrize("python", [None, "/usr/bin/python3"])
def test_make_install_destdir_gives_a_runnable_popper(tree, tmp_path, mailhost, python):
    """./configure.py --prefix=/usr/local && make && make install DESTDIR=...:
    the staged sbin/popper runs (with DESTDIR's /usr/local as /usr/local),
    whatever python3 comes first on PATH; make uninstall leaves nothing."""
    if not IS_ROOT or not shutil.which("unshare"):
        pytest.skip("running the staged program needs root (a private mount namespace)")
    if python and not os.access(python, os.X_OK):
        pytest.skip("%s is not installed" % python)
    tree.configure("--prefix=/usr/local", *(["PYTHON=" + python] if python else []))
    settings = tree.settings()
    tree.make()
    destdir = tmp_path / "root"
    out = tree.make("install", "DESTDIR=%s" % destdir)
    assert "installed under %s:" % destdir in out
    program = destdir / "usr/local/sbin/popper"
    assert program.read_text().startswith("#!%s -ES\n" % settings["PYTHON"])
    # Where it is staged, as well: it finds the library beside itself.
    shown = run([str(program), "-v"], tmp_path).stdout
    assert shown.startswith("popper"), shown

    # Another python3 first on PATH, a decoy popper on PYTHONPATH.
    decoys = tmp_path / "decoys"
    (decoys / "popper").mkdir(parents=True)
    (decoys / "popper" / "__init__.py").write_text("raise SystemExit('the decoy ran')\n")
    (decoys / "python3").write_text("#!/bin/sh\necho 'the wrong python3' >&2\nexit 1\n")
    (decoys / "python3").chmod(0o755)
    env = dict(os.environ, PATH="%s:/usr/sbin:/usr/bin:/sbin:/bin" % decoys,
               PYTHONPATH=str(decoys))
    staged = [shutil.which("unshare"), "--mount", "--propagation", "private", "sh", "-c",
              'mount --bind "$0" /usr/local && exec "$@"', str(destdir / "usr/local")]
    expected = deliver(mailhost)
    conv = start_inetd(staged + ["/usr/local/sbin/popper", "-f", str(mailhost.config)], env=env)
    check_pop3_session(conv, expected)
    probe = ("import sys; sys.path.insert(0, '/usr/local/lib/popper'); "
             "from popper import native; print(native.BUILT, native.__file__)")
    shown = run(staged + [settings["PYTHON"], "-Es", "-c", probe], tmp_path, env=env).stdout
    assert shown.split() == [str(settings["NATIVE"]), "/usr/local/lib/popper/popper/native.py"]
    # popauth(8) beside it, launched alike.
    shown = run(staged + ["/usr/local/sbin/popauth", "-version"], tmp_path, env=env).stdout
    assert re.match(r"^/usr/local/sbin/popauth v\d+\.\d+", shown), shown

    manifest = install.read_manifest(settings, str(destdir))
    assert set(manifest.files) | {"/usr/local/lib/popper/INSTALLED"} == tree_files(destdir)
    tree.make("uninstall", "DESTDIR=%s" % destdir)
    assert list(destdir.iterdir()) == []


class Server(Standalone):
    """A super-server (or popper itself) the test started on 127.0.0.1:port;
    stopped by its pid, as Standalone is."""

    def __init__(self, command: list, port: int):
        self.port = port
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE)
        wait_for_port(port, self.process)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """make install for real, under a temporary prefix; then make uninstall,
    which must leave only the popper.conf the tests changed."""
    prefix = pathlib.Path(tempfile.mkdtemp(prefix="popper-install-", dir="/tmp"))
    try:
        os.chmod(str(prefix), 0o755)        # the login process (nobody) reads the library
        tree = Tree(tmp_path_factory.mktemp("installed") / "src")
        tree.configure("--prefix=%s" % prefix)
        tree.make()
        tree.make("install")
        conf = prefix / "etc" / "popper.conf"
        assert conf.read_text() == (prefix / "etc" / "popper.conf.sample").read_text()
        yield prefix
        out = tree.make("uninstall")
        assert "kept %s: changed since make install wrote it" % conf in out
        assert tree_files(prefix) == {"/etc/popper.conf"}
    finally:
        shutil.rmtree(str(prefix), ignore_errors=True)


def fetch_with_curl(mailhost, port: int, expected: dict, name: str) -> None:
    work = mailhost.base / name
    (work / "out").mkdir(parents=True)
    C.curl_retr_all(port, len(MAIL), work / "out", work)
    C.check_downloads([C.from_wire(data) for data in C.read_outputs(work / "out")], expected)


@pytest.mark.slow
@pytest.mark.clients
@pytest.mark.parametrize("unit, accept", [("popper@.service", True),
                                          ("popper-standalone.service", False)])
def test_the_installed_units_serve_mail_under_systemd_socket_activate(installed, mailhost,
                                                                       unit, accept):
    """Each unit's ExecStart= as systemd runs it: the inetd one with -a
    --inetd (a popper per connection on fd 0/1), the standalone one with
    the listening socket in LISTEN_FDS; curl fetches the mail."""
    conf = installed / "etc" / "popper.conf"
    conf.write_text(mailhost.config.read_text())
    command = popper_command(installed / "lib" / "systemd" / "system" / unit)
    assert command == [str(installed / "sbin" / "popper"), "-s", "-f", str(conf)]
    port = free_port()
    server = Server([C.need("systemd-socket-activate"), "-l", "127.0.0.1:%d" % port]
                    + (["-a", "--inetd"] if accept else []) + command, port)
    try:
        fetch_with_curl(mailhost, port, deliver(mailhost), "curl")
    finally:
        status = server.stop()
    assert accept or status == 0, "the standalone popper exited %d" % status


@pytest.mark.slow
@pytest.mark.clients
@pytest.mark.root
def test_the_installed_xinetd_file_serves_mail(installed, mailhost, tmp_path):
    """xinetd with the installed xinetd.d/popper, enabled and moved to a
    port of the test's own (an unlisted service on 127.0.0.1)."""
    xinetd = C.need("xinetd")
    if not IS_ROOT:
        pytest.skip("xinetd runs the service as root (user = root)")
    conf = installed / "etc" / "popper.conf"
    conf.write_text(mailhost.config.read_text())
    port = free_port()
    text = (installed / "etc" / "xinetd.d" / "popper").read_text()
    assert "server      = %s/sbin/popper\n" % installed in text
    assert "server_args = -s -f %s\n" % conf in text
    text = text.replace("service pop3\n", "service popper-test\n").replace(
        "disable     = yes\n", "disable     = no\n    type = UNLISTED\n    port = %d\n"
        "    bind = 127.0.0.1\n" % port)
    (tmp_path / "xinetd.conf").write_text(text)
    (tmp_path / "xinetd.log").write_text("")
    server = Server([xinetd, "-dontfork", "-f", str(tmp_path / "xinetd.conf"), "-pidfile",
                     str(tmp_path / "xinetd.pid"), "-filelog", str(tmp_path / "xinetd.log")],
                    port)
    try:
        fetch_with_curl(mailhost, port, deliver(mailhost), "curl")
    finally:
        server.stop()
    log = (tmp_path / "xinetd.log").read_text()
    assert "Started working: 1 available service" in log and "ERROR" not in log, log
