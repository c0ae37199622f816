"""Logging as Qpopper does it: syslog (LOCAL1 unless configured otherwise),
ident = the program's name, with the pid; -d adds debug lines, -t sends the
debug lines to a trace file; --enable-debugging appends [file:line].

Client and mail text reaches these functions only as data: syslog gets it
through the stdlib, which passes it as one "%s" argument, and the trace file
gets it through write().  Control characters are replaced with "?".
"""

import os
import sys
import syslog
import time

from popper import __version__

PRIORITIES = {"alert": syslog.LOG_ALERT, "critical": syslog.LOG_CRIT, "error": syslog.LOG_ERR,
              "warning": syslog.LOG_WARNING, "notice": syslog.LOG_NOTICE,
              "info": syslog.LOG_INFO, "debug": syslog.LOG_DEBUG}

LOG_LOGIN_TEMPLATE = '(v%0) POP login by user "%1" at (%2) %3'


def clean(message: str) -> str:
    """Client or mail text made safe for one line: unprintables become "?"."""
    return "".join(c if c.isprintable() or c == " " else "?" for c in message)


class Log:
    def __init__(self, ident: str, facility: str = "local1", debug: bool = False,
                 tracefile: str = None, debug_build: bool = False):
        self.ident = ident
        self.facility = getattr(syslog, "LOG_" + facility.upper())
        self.debugging = debug or tracefile is not None
        self.tracefile = tracefile
        self.debug_build = debug_build
        self.trace = None
        self.open()

    def open(self) -> None:
        """Open syslog and the trace file; raise OSError if the trace file
        cannot be opened (popper then exits, as Qpopper does)."""
        syslog.openlog(self.ident, syslog.LOG_PID, self.facility)
        if self.tracefile:
            fd = os.open(self.tracefile, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW,
                         0o600)
            self.trace = os.fdopen(fd, "a", encoding="utf-8", errors="replace")

    def reopen_syslog(self) -> None:
        """PAM modules may call openlog() with their own ident: take ours back."""
        syslog.openlog(self.ident, syslog.LOG_PID, self.facility)

    def reopen(self) -> None:
        """SIGHUP: start over with syslog and the trace file (log rotation)."""
        self.close()
        self.open()

    def close(self) -> None:
        syslog.closelog()
        if self.trace:
            self.trace.close()
            self.trace = None

    def _write(self, level: str, message: str) -> None:
        message = clean(message)
        if self.debug_build:
            frame = sys._getframe(2)
            message += " [%s:%d]" % (os.path.basename(frame.f_code.co_filename), frame.f_lineno)
        if self.trace:
            now = time.time()
            stamp = time.strftime("%b %d %H:%M:%S", time.localtime(now))
            self.trace.write("%s.%03d %s [%d] %s\n" % (stamp, int(now * 1000) % 1000,
                                                       time.strftime("%Y"), os.getpid(), message))
            self.trace.flush()
            if level == "debug":
                return
        syslog.syslog(self.facility | PRIORITIES[level], message)

    def alert(self, message: str) -> None:
        """An attack or a misconfiguration that puts mail at risk (a spool
        that is not the user's): to be acted on at once."""
        self._write("alert", message)

    def critical(self, message: str) -> None:
        """Something an administrator must look at (mail set aside)."""
        self._write("critical", message)

    def error(self, message: str) -> None:
        self._write("error", message)

    def warning(self, message: str) -> None:
        self._write("warning", message)

    def notice(self, message: str) -> None:
        self._write("notice", message)

    def info(self, message: str) -> None:
        self._write("info", message)

    def debug(self, message: str) -> None:
        if self.debugging:
            self._write("debug", message)


def log_login_line(template: str, user: str, host: str, ip: str) -> str:
    """Expand %0 (version) %1 (user) %2 (client host) %3 (ip) in a template."""
    values = {"0": __version__, "1": user, "2": host, "3": ip}
    out, i = [], 0
    while i < len(template):
        c = template[i]
        if c == "%" and i + 1 < len(template) and template[i + 1] in values:
            out.append(values[template[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)
