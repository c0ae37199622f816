"""The launcher: the small program installed as sbin/popper (and as
/etc/popper by the SVR4 package).

It names its interpreter and its library directory, so neither the PATH,
PYTHONPATH, the user's site directory nor the interpreter's install scheme
(Debian's adds a "local") decides which popper runs: -E ignores PYTHON*
variables, -s the user's site-packages, and the library directory comes
first on sys.path; a library without the package is a broken install,
never a reason to run another popper found further along sys.path.

Where the install can ask the interpreter (make install), the launcher
also names the directories site.py would add to sys.path (site_dirs(), for
cffi's backend and python-pam) and runs with -S instead: no site.py, so no
.pth file of another package runs code in a root daemon at every
connection, and inetd's start-up does not pay for it (on this project's
Debian host's pyenv python3 a .pth imports ~60 modules: 34 ms -> 10 ms).
The SVR4 package cannot run its target's interpreter when it is built: its
/etc/popper keeps -Es and site.py.
"""

TEMPLATE = """\
#!{python} {flags}
# popper's launcher, written by packaging/launcher.py.  It runs {module}
# from {libdir} with this interpreter, whatever PATH or PYTHONPATH say.
import gc
import sys
gc.disable()    # while the program is imported: no garbage cycles, only work
try:    # importlib.machinery's PathFinder, without importlib's imports
    from _frozen_importlib_external import PathFinder
except ImportError:
    from importlib.machinery import PathFinder
libdir = {libdir!r}{site}{beside}
sys.path.insert(0, libdir)
try:
    # Only the library's own popper: never one found further on sys.path.
    if PathFinder.find_spec({package!r}, [libdir]) is None:
        raise ModuleNotFoundError("No module named %r" % {package!r})
    from {module} import main
except Exception as exc:
    # A broken install.  Under inetd fd 1 and 2 are the client's socket:
    # the reason goes to syslog, the client gets one line and no traceback.
    import os, stat, syslog
    why = "cannot start: %s: %s (library %s)" % (type(exc).__name__, exc, libdir)
    syslog.openlog(os.path.basename(sys.argv[0]) or "popper", syslog.LOG_PID,
                   syslog.{facility})
    syslog.syslog(syslog.LOG_ERR, why)
    try:
        to_client = stat.S_ISSOCK(os.fstat(1).st_mode)
    except OSError:
        to_client = False
    if to_client:
        os.write(1, b"-ERR [SYS/TEMP] POP server unavailable, see the system log\\r\\n")
    else:
        sys.stderr.write("popper: %s\\n" % why)
    sys.exit(1)
gc.enable()
status = main()
# Leave as sys.exit(status) would, without the interpreter's teardown (it
# frees every module and object: milliseconds at each inetd connection,
# for nothing): the program's threads finished, the exit handlers run, its
# output flushed.
threading = sys.modules.get("threading")
for thread in threading.enumerate() if threading else ():
    if thread is not threading.main_thread() and not thread.daemon:
        thread.join()
import atexit
atexit._run_exitfuncs()
if status is not None and not isinstance(status, int):
    sys.stderr.write("%s\\n" % (status,))
    status = 1
for stream in (sys.stdout, sys.stderr):
    try:
        stream.flush()
    except (OSError, ValueError):   # as the teardown says a failed flush
        status = status or 120
import os
os._exit(status or 0)
"""


# A launcher that knows where it is installed also finds its library where
# it lies relative to itself when libdir has none: a tree staged by make
# install DESTDIR=... runs in place; the installed one finds
# libdir itself.  Only that one directory, never a search.
BESIDE = """
if PathFinder.find_spec({package!r}, [libdir]) is None:
    import os
    staged = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                           {relative!r}))
    if PathFinder.find_spec({package!r}, [staged]) is not None:
        libdir = staged"""


# What site.py would have added, named instead (the launcher runs -S).
SITE = """
sys.path.extend({site_dirs!r})"""


def site_dirs(python: str) -> list:
    """The directories site.py adds to python's sys.path (site-packages,
    Debian's dist-packages, the path lines of .pth files) without the
    user's: sys.path under -Es less sys.path under -ES, asked of python."""
    import ast
    import subprocess
    show = "import sys; print(repr(sys.path[1:]))"
    with_site, without = (
        ast.literal_eval(subprocess.run([python, flags, "-c", show], stdout=subprocess.PIPE, check=True,
                            stdin=subprocess.DEVNULL, universal_newlines=True, timeout=60).stdout)
        for flags in ("-Es", "-ES"))
    return [path for path in with_site if path not in without]


def launcher(python: str, libdir: str, facility: str = "LOG_LOCAL1",
             module: str = "popper.cli", installed_in: str = None, site: list = None) -> str:
    """The launcher's text for the interpreter python (an absolute path),
    the directory libdir that holds the popper package, the syslog
    facility a failure to start is logged at, the module whose main()
    is the program (popper.cli for popper), the directory the launcher
    is installed in (for BESIDE; None: libdir only), and the directories
    site.py would add (site_dirs(python): the launcher runs without site.py;
    None: with it)."""
    if not python.startswith("/") or not libdir.startswith("/"):
        raise ValueError("the launcher needs absolute paths, not %r and %r" % (python, libdir))
    if any(c.isspace() for c in python):
        raise ValueError("an interpreter path with white space cannot be a #! line: %r"
                         % python)
    if not facility.startswith("LOG_") or not facility[4:].isalnum():
        raise ValueError("not a syslog facility: %r" % facility)
    if not all(part.isidentifier() for part in module.split(".")):
        raise ValueError("not a module name: %r" % module)
    package = module.split(".")[0]
    beside = ""
    if installed_in is not None:
        if not installed_in.startswith("/"):
            raise ValueError("the launcher needs an absolute path, not %r" % installed_in)
        import os
        beside = BESIDE.format(package=package, relative=os.path.relpath(libdir, installed_in))
    if site is not None and not all(isinstance(d, str) and d.startswith("/") for d in site):
        raise ValueError("site directories must be absolute paths: %r" % (site,))
    return TEMPLATE.format(python=python, flags="-Es" if site is None else "-ES",
                           libdir=libdir, facility=facility, module=module, package=package,
                           site="" if site is None else SITE.format(site_dirs=list(site)),
                           beside=beside)


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 3:
        sys.exit("usage: python3 packaging/launcher.py PYTHON LIBDIR > popper")
    sys.stdout.write(launcher(sys.argv[1], sys.argv[2]))
