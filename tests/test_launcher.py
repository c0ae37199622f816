"""packaging/launcher.py: the installed program names its interpreter and
library, whatever PATH and PYTHONPATH say, and a broken install tells
syslog why while an inetd client gets one -ERR line, never a traceback."""

import ast
import os
import runpy
import subprocess
import sys

import pytest

import popper
from conftest import ROOT, run_inetd

# By path: packaging/ is no Python package (it would hide PyPA's "packaging").
_made = runpy.run_path(str(ROOT / "packaging" / "launcher.py"))
launcher, site_dirs = _made["launcher"], _made["site_dirs"]

# The library the tests import popper from: the checkout, or what tox installed
# (a checkout that tox built from has no popper/_settings.py).
LIBRARY = os.path.dirname(os.path.dirname(popper.__file__))

pytestmark = pytest.mark.slow


def _write(tmp_path, libdir):
    path = tmp_path / "popper"
    path.write_text(launcher(sys.executable, str(libdir)))
    path.chmod(0o755)
    return str(path)


def test_it_runs_its_own_library_whatever_the_environment(tmp_path):
    decoy = tmp_path / "decoy" / "popper"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise SystemExit('the decoy popper ran')\n")
    env = dict(os.environ, PYTHONPATH=str(decoy.parent), PATH=str(decoy.parent))
    result = subprocess.run([_write(tmp_path, LIBRARY), "-v"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    assert "popper" in result.stdout


def test_a_broken_install_sends_an_inetd_client_one_line(tmp_path):
    received, _, status = run_inetd([_write(tmp_path, tmp_path / "missing")])
    assert (received, status) == (
        b"-ERR [SYS/TEMP] POP server unavailable, see the system log\r\n", 1)


def test_a_broken_install_says_why_at_a_terminal(tmp_path):
    result = subprocess.run([_write(tmp_path, tmp_path / "missing")], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == ("popper: cannot start: ModuleNotFoundError: No module named "
                             "'popper' (library %s)\n" % (tmp_path / "missing"))


def test_a_staged_launcher_finds_the_library_beside_itself(tmp_path):
    """make install DESTDIR=...: sbin/popper and lib/popper moved together
    under another root; the configured library is not there."""
    staged = tmp_path / "stage" / "opt" / "pop"
    (staged / "sbin").mkdir(parents=True)
    os.symlink(LIBRARY, str(staged / "lib"))
    program = staged / "sbin" / "popper"
    program.write_text(launcher(sys.executable, "/opt/pop/lib", installed_in="/opt/pop/sbin"))
    program.chmod(0o755)
    result = subprocess.run([str(program), "-v"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    assert "popper" in result.stdout
    # Nowhere else: without the library beside it, the configured one is named.
    os.unlink(str(staged / "lib"))
    result = subprocess.run([str(program), "-v"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=60)
    assert result.returncode == 1
    assert "(library /opt/pop/lib)" in result.stderr


def test_the_installed_launcher_names_the_site_directories_and_runs_no_site_py(tmp_path):
    """make install's launcher: -ES and the site directories by name, so a
    .pth file there runs nothing, while what lies there still imports."""
    site = tmp_path / "site"
    site.mkdir()
    ran = tmp_path / "the .pth ran"
    (site / "zz-other-package.pth").write_text("import os; open(%r, 'w').close()\n" % str(ran))
    (site / "probe_dependency.py").write_text("WHERE = 'site'\n")
    lib = tmp_path / "lib" / "probe"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    (lib / "cli.py").write_text("import sys\nimport probe_dependency\n"
                                "def main():\n"
                                "    print(probe_dependency.WHERE, sys.flags.no_site)\n"
                                "    return 0\n")
    dirs = site_dirs(sys.executable)
    assert dirs and all(os.path.isabs(d) for d in dirs)
    without_site = subprocess.run([sys.executable, "-ES", "-c", "import sys; print(sys.path)"],
                                  stdout=subprocess.PIPE, universal_newlines=True,
                                  check=True).stdout
    assert not set(dirs) & set(ast.literal_eval(without_site))
    program = tmp_path / "probe-launcher"
    text = launcher(sys.executable, str(lib.parent), module="probe.cli", site=dirs + [str(site)])
    assert text.startswith("#!%s -ES\n" % sys.executable)
    program.write_text(text)
    program.chmod(0o755)
    result = subprocess.run([str(program)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "site 1\n", "")
    assert not ran.exists()
    # Without the directories named (the SVR4 package): -Es, site.py runs.
    assert launcher(sys.executable, "/lib").startswith("#!%s -Es\n" % sys.executable)
    with pytest.raises(ValueError):
        launcher(sys.executable, "/lib", site=["relative/dir"])


@pytest.mark.parametrize("python, libdir", [("python3", "/lib"), ("/usr/bin/py thon", "/lib"),
                                            ("/usr/bin/python3", "lib")])
def test_it_refuses_what_cannot_be_a_launcher(python, libdir):
    with pytest.raises(ValueError):
        launcher(python, libdir)


def test_it_ends_as_sys_exit_would_without_the_teardown(tmp_path):
    """The launcher leaves by os._exit (no freeing of every module at each
    inetd connection), yet as sys.exit(main()) would: main's status, its
    threads finished, its exit handlers run, its buffered output written;
    a status that is no number said on stderr, and 1."""
    lib = tmp_path / "lib" / "probe"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    done = tmp_path / "thread done"
    (lib / "cli.py").write_text(
        "import atexit, os, sys, threading, time\n"
        "def late():\n"
        "    time.sleep(0.3)\n"
        "    open(%r, 'w').close()\n"
        "def main():\n"
        "    threading.Thread(target=late).start()\n"
        "    atexit.register(sys.stdout.write, ' handler')\n"
        "    sys.stdout.write('buffered')\n"
        "    sys.stderr.write('said')\n"
        "    return int(os.environ.get('STATUS', '0')) if 'STATUS' in os.environ else 'why'\n"
        % str(done))
    program = tmp_path / "probe-launcher"
    program.write_text(launcher(sys.executable, str(lib.parent), module="probe.cli"))
    program.chmod(0o755)
    for status, want in (("3", 3), ("0", 0), (None, 1)):
        env = dict(os.environ)
        env.pop("STATUS", None)
        if status is not None:
            env["STATUS"] = status
        result = subprocess.run([str(program)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True, timeout=60, env=env)
        assert (result.returncode, result.stdout, result.stderr) == (
            want, "buffered handler", "said" if status else "saidwhy\n"), status
        assert done.exists()
        done.unlink()
