"""Start-up: every option of Qpopper 4.0.5's getopt string
("b:BcCdD:e:f:FkK:l:L:p:RsSt:T:uUvy:", pop_init.c) and of the SCO manual
page (-a, -M), read as Qpopper reads them (cli.parse, in-process); and what
happens when popper cannot start: the reason on stderr and in syslog at
LOG_ERR, with basename(argv[0]) as the ident (pop_init.c's openlog), and an
inetd client told in one -ERR line, then the end of the connection."""

import os
import re
import runpy
import socket
import sys

import pytest

from conftest import ROOT, MailHost, corpus, run_inetd

import popper
from popper import cli
from popper.settings import Settings
from popper.transport import inetd

UNAVAILABLE = b"-ERR [SYS/TEMP] POP server unavailable, see the system log\r\n"
LOCAL1, LOCAL3, ERR, NOTICE = 17, 19, 3, 5
DEFAULTS = Settings()
STAMP_IDENT = re.compile(r"\w{3} [ \d]\d \d\d:\d\d:\d\d ([^ \[]+)\[\d+\]: ")


# --- every option, parsed in-process -----------------------------------------------------

# (arguments, {attribute: value}), each from pop_init.c's switch or the SCO page.
OPTIONS = [
    (["-a"], {"allow_low_uid": True}),                              # SCO: uid <= 10 may log in
    (["-b", "/var/spool/bulls"], {"bulldir": "/var/spool/bulls"}),
    (["-B"], {"bulldb_nonfatal": True}),
    (["-c"], {"downcase_user": True}),
    (["-C"], {"trim_domain": True}),
    (["-d"], {"debug": True}),
    (["-D", "drac.example"], {"drac_host": "drac.example"}),
    (["-e", "login_delay=60,expire=7"], {"announce_login_delay": 60, "announce_expire": 7}),
    (["-e", "expire=-1"], {"announce_expire": -1}),                 # atoi: -1, EXPIRE NEVER
    (["-e", "expire"], {"announce_expire": -1}),                    # no =nn: -1
    (["-e", "login_delay=abc"], {"announce_login_delay": 0}),       # atoi("abc")
    (["-e", "expire=30days"], {"announce_expire": 30}),             # atoi("30days")
    (["-eexpire=5"], {"announce_expire": 5}),                       # getopt: value attached
    (["-F"], {"fast_update": True}),
    (["-k"], {"kerberos": True}),
    (["-K", "pop"], {"kerberos_service": "pop"}),
    (["-l", "0"], {"tls_mode": 0}),
    (["-l", "abc"], {"tls_mode": 0}),                               # atoi: 0, no TLS
    (["-l", "1x"], {"tls_mode": 1}),
    (["-l", "2"], {"tls_mode": 2}),
    (["-L", "100"], {"lock_refresh": 100}),
    (["-L", "7x"], {"lock_refresh": 7}),
    (["-L", "-50"], {"lock_refresh": 50}),                          # msg % -50 == msg % 50
    (["-M"], {}),                                                   # SCO: ignored without error
    (["-p", "0"], {"clear_text_password": 0}),
    (["-p", "abc"], {"clear_text_password": 0}),                    # atoi: 0, the default
    (["-p", "2"], {"clear_text_password": 2}),
    (["-p", "3rd"], {"clear_text_password": 3}),
    (["-R"], {"reverse_lookup": False}),
    (["-s"], {"statistics": True}),
    (["-S"], {"server_mode": True}),
    (["-t", "/var/log/popper.trace"], {"tracefile": "/var/log/popper.trace"}),
    (["-T", "600"], {"timeout": 600}),
    (["-T600"], {"timeout": 600}),
    (["-T", "abc"], {"timeout": 0}),                                # atoi: 0, alarm(0): none
    (["-T", "30s"], {"timeout": 30}),
    (["-T", "-5"], {"timeout": 0}),                                 # alarm((unsigned) -5)
    (["-T", "99999999999999999999"], {"timeout": 2 ** 31 - 1}),     # strtol's clamp
    (["-u"], {"user_options": True}),
    (["-U"], {"spool_options": True}),
    (["-v"], {}),                                                   # reserved after argv[1]
    (["-y", "local3"], {"log_facility": "local3"}),
    (["-y", "mail"], {"log_facility": "mail"}),
    (["-s", "-T", "5", "-T", "9"], {"statistics": True, "timeout": 9}),     # left to right
    (["-sS", "-c"], {"statistics": True, "server_mode": True, "downcase_user": True}),
]


@pytest.mark.parametrize("args,expected", OPTIONS, ids=[" ".join(a) for a, _ in OPTIONS])
def test_every_option_is_read_as_qpopper_reads_it(args, expected):
    settings, address = cli.parse(args)
    assert address is None
    got = {name: getattr(settings, name) for name in vars(DEFAULTS)}
    want = dict(vars(DEFAULTS), **expected)
    assert got == want


def test_the_table_has_every_option_of_qpopper_and_the_sco_page():
    letters = {args[0][1] for args, _ in OPTIONS}
    qpopper = set("b:BcCdD:e:f:FkK:l:L:p:RsSt:T:uUvy:".replace(":", ""))
    sco = set("abcdekMRstT")
    assert qpopper | sco <= letters | {"f"}            # -f: test_f_reads_the_config_file
    assert set(cli.OPTSTRING.replace(":", "")) == qpopper | sco


def test_f_reads_the_config_file(tmp_path):
    config = tmp_path / "popper.conf"
    config.write_text("set statistics\nset timeout = 33\n")
    settings, _ = cli.parse(["-f", str(config), "-T", "44"])
    assert settings.statistics and settings.timeout == 44          # later options win
    settings, _ = cli.parse(["-T", "44", "-f", str(config)])
    assert settings.timeout == 33


@pytest.mark.parametrize("text,value", [
    ("0", 0), ("42", 42), ("abc", 0), ("12x", 12), ("", 0), ("-1", -1), ("+7", 7),
    (" \t 9", 9), ("- 9", 0), ("0x10", 0), ("010", 10), ("٣", 0),
    ("2147483648", 2 ** 31 - 1), ("-2147483649", -2 ** 31), ("9" * 5000, 2 ** 31 - 1)])
def test_atoi_is_cs(text, value):
    assert cli.atoi(text) == value


@pytest.mark.parametrize("args,message", [
    (["-p", "5"], cli.P_VALUES),                                    # pop_init.c's texts
    (["-p", "-1"], cli.P_VALUES),
    (["-l", "3"], cli.L_VALUES),
    (["-L", "0"], "-L 0 is 0 messages"),
    (["-L", "abc"], "-L abc is 0 messages"),
    (["-y", "local9"], "Error setting '-y' to local9"),
    (["-x"], "option -x not recognized"),
    (["-T"], "option -T requires argument"),
    (["-e", "colour=blue"], "-e: unknown extension 'colour'"),
    (["-s", "stray"], "unexpected argument 'stray'"),
    (["popper", "-s"], "unexpected argument 'popper'"),
    (["-s", ""], "unexpected argument ''"),
    (["1.2.3.4:1", "5.6.7.8:2"], "only one listen address"),
])
def test_bad_command_lines(args, message):
    with pytest.raises(cli.UsageError) as caught:
        cli.parse(args)
    assert caught.value.args[0].startswith(message)


@pytest.mark.parametrize("args,address", [
    (["8110"], "8110"), ([":8110"], ":8110"), (["199.46.50.7:8110", "-S"], "199.46.50.7:8110"),
    (["-S", "127.0.0.1:8110"], "127.0.0.1:8110"), (["[::1]:8110"], "[::1]:8110")])
def test_a_listen_address_first_as_in_qpopper_or_last(args, address):
    assert cli.parse(args)[1] == address


@pytest.mark.parametrize("first", ["-v", "--v", "-version", "--version", "-vd"])
def test_v_first_prints_the_version_and_exits_0(capsys, first):
    # Qpopper's main.c: strncmp(argv[1], "-v", 2) or strncmp(argv[1], "--v", 3).
    assert cli.main(["popper", first, "-x"]) == 0
    out = capsys.readouterr().out
    assert out == "popper version %s (Qpopper version 4.0.5 compatible, inetd and standalone)\n" \
        % popper.__version__
    assert "Qpopper version" in out


def test_help_exits_0(capsys):
    assert cli.main(["popper", "--help"]) == 0
    assert capsys.readouterr().out.startswith("Usage: popper [-a] ")


# --- popper cannot start: stderr, syslog, and the inetd client ---------------------------

# One of each kind: a usage error, a bad option value, a config file error,
# a feature not built, a stray word; (arguments, what the LOG_ERR line
# says, fd 2: the socket as BSD inetd and xinetd make it, or a pipe as
# systemd's journal).
REFUSALS = [
    (["-x"], "option -x not recognized", "socket"),
    (["-p", "7"], "Unrecognized -p value; 0 = default; 1 = never; 2 = always (fallback); "
                  "3 = local only; 4 = TLS/SSL only", "pipe"),
    (["-f", "{config}"], "{config}", "socket"),
    (["-k"], "-k / -K: Kerberos support is not built", "pipe"),
    (["-s", "stray"], "unexpected argument 'stray'", "socket"),
]
MAIL = corpus.mbox_bytes(list(corpus.messages(1, seed=5)))


def program(directory, name: str) -> str:
    """The installed program (packaging/launcher.py's) named name, running
    the popper these tests import."""
    launcher = runpy.run_path(str(ROOT / "packaging" / "launcher.py"))["launcher"]
    path = os.path.join(str(directory), name)
    libdir = os.path.dirname(os.path.dirname(os.path.abspath(popper.__file__)))
    with open(path, "w") as f:
        f.write(launcher(sys.executable, libdir))
    os.chmod(path, 0o755)
    return path


def command(mailhost: MailHost, args: list, name="qpopper") -> list:
    mailhost.write_config("bogus line")                      # -f: line 5 is an error
    config = str(mailhost.config)
    return [program(mailhost.base, name)] + [a.format(config=config) for a in args]


@pytest.mark.clients
@pytest.mark.parametrize("args,message,stderr", REFUSALS[:2], ids=["usage", "value"])
def test_an_inetd_client_gets_one_err_line_then_the_end(mailhost, args, message, stderr):
    received, text, status = run_inetd(command(mailhost, args), stderr)
    assert (received, status) == (UNAVAILABLE, 1)
    if stderr == "pipe":
        assert text.startswith("qpopper: %s\nUsage: qpopper [-a] " % message)
    else:
        assert text == ""                       # the client's connection: nothing for a log


@pytest.mark.root
@pytest.mark.clients
@pytest.mark.parametrize("args,message,stderr", REFUSALS, ids=[
    "usage", "value", "config", "not-built", "stray-word"])
def test_each_start_up_error_is_logged_at_err_with_the_ident_of_argv0(mailhost, syslog, args,
                                                                     message, stderr):
    received, text, status = run_inetd(syslog.wrap(command(mailhost, args)), stderr)
    assert (received, status) == (UNAVAILABLE, 1)
    records = syslog.collect()
    message = message.format(config=mailhost.config)
    assert [(f, p) for f, p, t in records if message in t] == [(LOCAL1, ERR)], records
    assert all(STAMP_IDENT.match(t).group(1) == "qpopper" for _, _, t in records), records
    assert (message in text) == (stderr == "pipe")


@pytest.mark.root
@pytest.mark.clients
def test_the_facility_is_the_one_set_before_the_error(mailhost, syslog):
    run_inetd(syslog.wrap(command(mailhost, ["-y", "local3", "-p", "4"])), "pipe")
    assert [(f, p) for f, p, t in syslog.collect() if "-p to 4" in t] == [(LOCAL3, ERR)]


@pytest.mark.root
@pytest.mark.clients
def test_a_session_logs_with_the_ident_of_argv0_too(mailhost, syslog):
    mailhost.deliver(MAIL)
    mailhost.write_config()
    from conftest import start_inetd
    conv = start_inetd(syslog.wrap([program(mailhost.base, "in.qpopper"), "-f",
                                    str(mailhost.config)]))
    assert conv.cmd("BOGUS") == b'-ERR Unknown command: "bogus".'
    assert conv.cmd("QUIT").startswith(b"+OK")
    conv.close()
    records = syslog.collect()
    assert [t for f, p, t in records if "-ERR" in t][0].endswith('-ERR Unknown command: "bogus".')
    assert {STAMP_IDENT.match(t).group(1) for _, _, t in records} == {"in.qpopper"}


@pytest.mark.clients
def test_an_address_while_fd_0_is_a_client_is_refused(mailhost):
    mailhost.write_config()
    received, text, status = run_inetd([program(mailhost.base, "popper"), "-f",
                                        str(mailhost.config), "8110"], "pipe")
    assert (received, status) == (UNAVAILABLE, 1)
    assert text.startswith("popper: the argument 8110 asks popper to listen on it, but fd 0 is "
                           "a client's connection (inetd)")


def test_has_client_tells_a_connection_from_a_pipe_or_a_listener(monkeypatch):
    def stdin_is(fd):
        saved = os.dup(0)
        os.dup2(fd, 0)
        try:
            return inetd.has_client()
        finally:
            os.dup2(saved, 0)
            os.close(saved)
    a, b = socket.socketpair()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    r, w = os.pipe()
    try:
        assert stdin_is(a.fileno()) is True
        assert stdin_is(listener.fileno()) is False
        assert stdin_is(r) is False
    finally:
        for s in (a, b, listener):
            s.close()
        os.close(r)
        os.close(w)
