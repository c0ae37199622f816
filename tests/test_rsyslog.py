"""LOCAL1 through a real rsyslogd, as the SCO manual page's syslog.conf
line routes it: Debian's rsyslogd, started by the test with a config of its
own (imuxsock on a socket in the mail host's directory, not /dev/log; no
klog; local1.* to a file; its own pid file; in the foreground) and stopped
by its pid.  popper runs in a mount namespace whose /dev/log is that
socket, and a real session's login line (log-login) and Stats line (-s)
are read back from rsyslogd's file, as rsyslogd understood them: facility,
severity, program name, pid, and the text Qpopper writes."""

import shutil
import signal
import subprocess
import time

import pytest

from conftest import IS_ROOT, TcpInetd, can_unshare, corpus, with_dev_log

from popper import __version__

pytestmark = [
    pytest.mark.root,
    pytest.mark.clients,
    pytest.mark.skipif(not IS_ROOT or not can_unshare(),
                       reason="pointing popper at rsyslogd's socket needs root (a private "
                              "mount namespace)"),
    pytest.mark.skipif(not shutil.which("rsyslogd"),
                       reason="rsyslogd is not installed (tests/deps.sh installs rsyslog)"),
]

MAIL = corpus.mbox_bytes(list(corpus.messages(3, seed=97)))

# One line per message: what rsyslogd parsed out of it, then the message as
# it came after the timestamp (the tag "popper[pid]:" and the text).
PARSED = ("%syslogfacility-text%.%syslogseverity-text% %programname% %procid% "
          "%syslogtag%%msg%\\n")
CONFIG = """\
global(workDirectory="{dir}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}" RateLimit.Interval="0")
template(name="parsed" type="string" string="{parsed}")
local1.* action(type="omfile" file="{out}" template="parsed")
"""


class Rsyslogd:
    def __init__(self, base):
        self.dir = base / "rsyslog"
        self.dir.mkdir()
        self.socket = self.dir / "log.sock"
        self.out = self.dir / "local1.log"
        self.pid_file = self.dir / "rsyslogd.pid"
        config = self.dir / "rsyslog.conf"
        config.write_text(CONFIG.format(dir=self.dir, socket=self.socket, out=self.out,
                                        parsed=PARSED))
        self.process = subprocess.Popen(["rsyslogd", "-n", "-f", str(config), "-i",
                                         str(self.pid_file)], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not (self.socket.exists() and self.pid_file.exists()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("rsyslogd did not start: %s"
                                   % self.process.stdout.read().decode(errors="replace"))
            time.sleep(0.05)

    def lines(self, wanted, seconds: float = 20) -> list:
        """The file's lines once `wanted` of them are there (or the deadline passed)."""
        deadline = time.monotonic() + seconds
        while True:
            lines = self.out.read_text().splitlines() if self.out.exists() else []
            if len(lines) >= wanted or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def rsyslogd(mailhost):
    daemon = Rsyslogd(mailhost.base)
    yield daemon
    daemon.stop()


def test_the_login_and_stats_lines_reach_rsyslogd_as_local1_notice(mailhost, rsyslogd):
    mailhost.deliver(MAIL)
    mailhost.write_config("set log-login = true")
    server = TcpInetd(with_dev_log(str(rsyslogd.socket), mailhost.command("-s")))
    try:
        conv = server.connect()
        assert conv.login().startswith(b"+OK alice has 3 visible messages")
        assert conv.cmd("LIST").startswith(b"+OK")
        sizes = [int(line.split()[1]) for line in conv.multiline()]
        assert conv.cmd("DELE 1").startswith(b"+OK")
        assert conv.cmd("QUIT").startswith(b"+OK Pop server at")
        conv.close()
    finally:
        server.close()
    pid = server.processes[0].pid
    parsed = "local1.notice popper %d popper[%d]: " % (pid, pid)
    assert rsyslogd.lines(2) == [
        parsed + '(v%s) POP login by user "alice" at (127.0.0.1) 127.0.0.1' % __version__,
        parsed + "Stats: alice 1 %d 2 %d 127.0.0.1 127.0.0.1" % (sizes[0], sizes[1] + sizes[2]),
    ]
