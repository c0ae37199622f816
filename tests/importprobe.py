"""Runs popper ARGS (as the launcher does) and writes, to the file that
$IMPORT_PROBE names, which modules each of its processes has loaded at
three moments: when the greeting is written (a first write to fd 1 starting "+OK"), when it takes
a user's identity (setresuid to a uid other than 0), and when it ends;
and a forked process at its start (fork); at become, also the modules
popper/deferred.py holds read ahead (held).
One line per moment: "start|greeting|fork|become|held|end pid uid module,...";
start is before popper is imported (what the interpreter's site loads
is not popper's).

tests/test_startup_imports.py reads it: nothing heavy before the greeting,
nothing imported after becoming a user (who may not read the
interpreter's files).  Only os and sys are loaded here."""

import os
import sys

_out = os.open(os.environ["IMPORT_PROBE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
_write, _setresuid, _exit, _fork = os.write, os.setresuid, os._exit, os.fork
_greeted = []


def _record(moment: str, uid: int = None) -> None:
    uid = os.geteuid() if uid is None else uid
    line = "%s %d %d %s\n" % (moment, os.getpid(), uid, ",".join(sorted(sys.modules)))
    _write(_out, line.encode())


def write(fd, data):
    if fd == 1 and not _greeted and bytes(data[:3]) == b"+OK":
        _greeted.append(True)
        _record("greeting")
    return _write(fd, data)


def setresuid(ruid, euid, suid):
    if euid != 0:
        _record("become", euid)
        deferred = sys.modules.get("popper.deferred")       # what it read ahead, held in memory
        line = "held %d %d %s\n" % (os.getpid(), euid,
                                     ",".join(deferred.held() if deferred else []))
        _write(_out, line.encode())
    return _setresuid(ruid, euid, suid)


def exit_(status):
    _record("end")
    _exit(status)


def fork():
    pid = _fork()
    if pid == 0:
        _record("fork")
    return pid


os.write, os.setresuid, os._exit, os.fork = write, setresuid, exit_, fork

if __name__ == "__main__":
    # As the installed launcher starts it (packaging/launcher.py), on the
    # popper python -m popper would find.
    sys.argv = ["popper"] + sys.argv[1:]
    sys.path[0] = os.getcwd()
    _record("start")
    try:
        from popper.cli import main
        sys.exit(main())
    finally:
        _record("end")
