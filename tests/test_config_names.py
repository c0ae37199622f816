"""Every config name Qpopper 4.0.x knows, as popper reads it: its own
effect, a documented equivalence, or the "not built" refusal -- never
"Unrecognized option" (docs/qpopper-options.md).  The names, types,
restrictions and error texts come from Qpopper 4.0.5's pop_config.c
(its options table, handle_value, tilt, pop_config); log-login's
template from pop_log.c's do_log_login."""

import os
import pathlib
import re

import pytest

from conftest import USERS, RecordingLog, start_inetd
from popper import __version__
from popper.auth import Account
from popper.log import log_login_line
from popper.maildrop import cache
from popper.greeting import client_for
from popper.server import read_options_files
from popper.settings import (
    ConfigError, QPOPPER_OPTIONS, SPOOL, USER, Settings, apply_line, load_config_file,
    temp_drop_path)

DATA = pathlib.Path(__file__).parent / "data" / "qpopper-config"

# pop_config.c's options table: name -> type (CfgBool, CfgInt, CfgMnem, CfgStr).
QPOPPER_NAMES = {
    "announce-expire": "Integer", "announce-login-delay": "Integer", "auth-file": "String",
    "auto-delete": "Boolean", "bulldb-max-tries": "Integer", "bulldb-nonfatal": "Boolean",
    "bulldir": "String", "cache-dir": "String", "cache-name": "String",
    "check-hash-dir": "Boolean", "check-old-spool-loc": "Boolean",
    "check-password-expired": "Boolean", "chunky-writes": "mnemonic",
    "clear-text-password": "mnemonic", "config-file": "String", "debug": "Boolean",
    "downcase-user": "Boolean", "drac-host": "String", "fast-update": "Boolean",
    "group-bulletins": "Boolean", "group-no-server-mode": "String",
    "group-server-mode": "String", "hash-spool": "Integer", "home-dir-mail": "String",
    "keep-temp-drop": "Boolean", "kerberos": "Boolean", "kerberos-service": "String",
    "log-facility": "mnemonic", "log-login": "String", "mail-command": "String",
    "mail-lock-check": "Integer", "max-bulletins": "Integer", "no-atomic-open": "Boolean",
    "nonauth-file": "String", "old-style-uid": "Boolean", "reverse-lookup": "Boolean",
    "server-mode": "Boolean", "shy": "Boolean", "spool-dir": "String",
    "spool-options": "Boolean", "statistics": "Boolean", "temp-dir": "String",
    "temp-name": "String", "timeout": "Integer", "timing": "Boolean",
    "tls-cipher-list": "String", "tls-identity-file": "String", "tls-passphrase": "String",
    "tls-private-key-file": "String", "tls-server-cert-file": "String",
    "tls-support": "mnemonic", "tls-version": "mnemonic", "tls-workarounds": "Boolean",
    "tls-options": "Integer", "tracefile": "String", "trim-domain": "Boolean",
    "update-on-abort": "Boolean", "update-status-headers": "Boolean",
    "user-options": "Boolean", "UW-kluge": "Boolean", "UW-kludge": "Boolean",
}

# A value of each type that asks for nothing popper lacks.
HARMLESS = {"Boolean": "false", "Integer": "0", "mnemonic": "default", "String": "/x"}
HARMLESS_FOR = {"log-facility": "mail", "mail-lock-check": "10", "bulldb-max-tries": "75",
                "cache-name": ".%s.cache", "temp-name": ".%s.pop",
                "bulldir": "/var/spool/bulls", "drac-host": None, "kerberos-service": None,
                "group-server-mode": None, "group-no-server-mode": None,
                "home-dir-mail": None, "config-file": None}

# The names of what popper has not built, each with a value that asks for it
# and the refusal (the command line's text where there is an option).
NOT_BUILT = [
    ("set bulldb-nonfatal", "-B: the bulletin database is not built"),
    ("set drac-host = localhost", "-D: DRAC is not built"),
    ("set kerberos", "-k / -K: Kerberos support is not built"),
    ('set kerberos-service = "rcmd"', "-k / -K: Kerberos support is not built"),
    ("set group-server-mode = popserv",
     "group-server-mode / group-no-server-mode: server mode by group is not built"),
    ("set group-no-server-mode = popnorm",
     "group-server-mode / group-no-server-mode: server mode by group is not built"),
    ("set hash-spool = 1", "hash-spool: hashed spool directories is not built"),
    ("set hash-spool = 2", "hash-spool: hashed spool directories is not built"),
    ('set home-dir-mail = ".mail"', "home-dir-mail: spools in home directories is not built"),
]


def settings_of(*lines):
    s = Settings()
    for line in lines:
        apply_line(s, line)
    return s


def error_of(*lines, **kw) -> str:
    with pytest.raises(ConfigError) as exc:
        for line in lines:
            apply_line(Settings(), line, **kw)
    return str(exc.value)


def test_every_qpopper_name_and_its_type():
    assert {n.lower(): t for n, t in QPOPPER_NAMES.items()} == {
        n: o.kind for n, o in QPOPPER_OPTIONS.items()}
    assert len(QPOPPER_NAMES) == 61


@pytest.mark.parametrize("name", sorted(QPOPPER_NAMES))
def test_every_qpopper_name_is_read(name):
    """Each name, in Qpopper's spelling and in capitals, with a harmless
    value: read, and nothing refused."""
    value = HARMLESS_FOR.get(name, HARMLESS[QPOPPER_NAMES[name]])
    if value is None:
        return                                       # no harmless value: NOT_BUILT has it
    for spelling in (name, name.upper()):
        s = settings_of("set %s = %s" % (spelling, value))
        assert s.not_built() == []


@pytest.mark.parametrize("line,refusal", NOT_BUILT)
def test_a_feature_not_built_is_refused_with_the_not_built_text(line, refusal):
    assert settings_of(line).not_built() == [refusal]


@pytest.mark.parametrize("line", ["set fast-update", "reset fast-update", "set kerberos = 0", "set hash-spool = 0",
                                  "set tls-support = none", "set tls-support = default",
                                  "reset user-options", "set spool-options = false",
                                  "set tls-server-cert-file = /etc/ssl/popper.pem",
                                  "set tls-version = TLSv1", "set tls-cipher-list = HIGH"])
def test_the_value_that_turns_a_missing_feature_off_is_no_refusal(line):
    assert settings_of(line).not_built() == []


@pytest.mark.parametrize("name", sorted(n for n, t in QPOPPER_NAMES.items() if t == "Boolean"))
def test_set_alone_is_true_and_reset_is_false(name):
    option = QPOPPER_OPTIONS[name.lower()]
    on, off = settings_of("set " + name), settings_of("reset " + name)
    assert getattr(on, option.attr) == option.convert(True)
    assert getattr(off, option.attr) == option.convert(False)
    assert getattr(settings_of("set %s = 1" % name), option.attr) == option.convert(True)
    assert getattr(settings_of("set %s = FALSE # c" % name), option.attr) == option.convert(False)


@pytest.mark.parametrize("name", sorted(n for n, t in QPOPPER_NAMES.items() if t != "Boolean"))
def test_reset_is_only_for_booleans(name):
    assert error_of("reset " + name) == (
        '%s is not a boolean option; scanning "%s" at line 1 of config file -' % (name.lower(),
                                                                                 name))


# --- equivalences: what popper does its own way -----------------------------------

def test_reverse_lookup_has_qpoppers_reversed_sense():
    """pop_config.c stores it into no_rev_lookup ("SENSE REVERSED!"): set
    reverse-lookup is -R."""
    assert Settings().reverse_lookup is True                      # looked up by default
    for line in ("set reverse-lookup", "set reverse-lookup = true", "set reverse-lookup = 1"):
        s = settings_of(line)
        assert s.reverse_lookup is False
        assert client_for("127.0.0.1", s, None).host == "127.0.0.1"
    assert settings_of("reset reverse-lookup").reverse_lookup is True
    assert settings_of("set reverse-lookup = false").reverse_lookup is True


def test_mail_lock_check_is_minus_l():
    assert Settings().lock_refresh == 5000
    assert settings_of("set mail-lock-check = 7").lock_refresh == 7
    assert error_of("set mail-lock-check = 0") == (
        'Bad value for the mail-lock-check option; scanning "0" at line 1 of config file -: '
        "must be 1 or more")


def test_temp_name_names_the_temp_drop():
    s = settings_of("set spool-dir = /var/mail", 'set temp-name = ".%s.popdrop"')
    assert temp_drop_path(s, "joe") == "/var/mail/.joe.popdrop"
    assert temp_drop_path(Settings(), "joe").endswith("/.joe.pop")
    for bad in ("x%s", ".%s/x", ".%d", ".%s%s", ".pop"):
        assert "needs a file name that starts with a dot" in error_of(
            'set temp-name = "%s"' % bad)


def test_cache_dir_and_cache_name_name_the_server_mode_cache():
    assert cache.path_of(settings_of("set spool-dir = /var/mail"), "joe") == "/var/mail/.joe.cache"
    s = settings_of("set spool-dir = /var/mail", "set temp-dir = /var/tmp/pop",
                    "set cache-dir = /var/cache/pop", "set cache-name = .%s.index")
    assert cache.path_of(s, "joe") == "/var/cache/pop/.joe.index"
    assert cache.path_of(settings_of("set temp-dir = /var/tmp/pop"), "joe") == \
        "/var/tmp/pop/.joe.cache"


@pytest.mark.parametrize("value,kept", [("default", "always"), ("always", "always"),
                                        ("TLS", "tls"), ("ssl", "tls"), ("Never", "never")])
def test_chunky_writes_takes_qpoppers_mnemonics(value, kept):
    assert settings_of("set chunky-writes = " + value).chunky_writes == kept


def test_an_unknown_mnemonic_lists_the_valid_ones():
    assert error_of("set chunky-writes = sometimes") == (
        'Unrecognized "chunky-writes" mnemonic; scanning "sometimes" at line 1 of config file '
        '-; valid mnemonics are: "default", "always", "TLS", "SSL", "never"')
    assert error_of("set tls-support = yes").endswith(
        'valid mnemonics are: "default", "none", "STLS", "alternate-port"')


def test_tls_options_add_up_as_in_qpopper():
    assert settings_of("set tls-options = 4", "set tls-options = 0x10").tls_options == 20


def test_names_with_no_effect_are_kept():
    s = settings_of("set timing", "set no-atomic-open", "reset check-hash-dir",
                    "reset check-old-spool-loc", "set max-bulletins = 3",
                    "set bulldb-max-tries = 10", "set mail-command = /usr/lib/sendmail")
    assert (s.timing, s.no_atomic_open, s.check_hash_dir, s.check_old_spool_loc,
            s.max_bulletins, s.bulldb_max_tries, s.mail_command) == (
        True, True, False, False, 3, 10, "/usr/lib/sendmail")
    assert s.not_built() == []


# --- Qpopper's error texts (pop_config.c, tilt) ------------------------------------

@pytest.mark.parametrize("line,text", [
    ("set timeout = ten", 'Integer value expected for the timeout option; scanning "ten"'),
    ("set timeout = -1", 'Integer value expected for the timeout option; scanning "-"'),
    ("set timeout =", 'Bad value for the timeout option; scanning ""'),
    ("set debug = 2", 'Boolean value expected for the debug option; scanning "2"'),
    ("set debug = yes", 'Boolean value expected for the debug option; scanning "yes"'),
    ("set debug true", '"=" expected; found "true"'),
    ("set spool-dir /var/mail", '"=" expected; found "/"'),
    ("set debug = true false", 'Expected comment or end of line; found "false"'),
    ("let debug = true", 'Expected "set" or "reset", found "let"'),
    ("set bulletins = /x", 'Unrecognized option; scanning "bulletins"'),
])
def test_qpoppers_error_texts(line, text):
    assert error_of(line).startswith(text + " at line 1 of config file -")


def test_a_users_file_may_not_set_what_qpopper_restricts(tmp_path):
    """Qpopper's CfgResUser names are refused in ~/.qpopper-options, its
    CfgResInit names in the spool's file (-u and -U are not built yet)."""
    f = tmp_path / ".qpopper-options"
    f.write_text("set statistics\nset spool-dir = /tmp\n")
    with pytest.raises(ConfigError, match='^Attempt to use restricted option "spool-dir" at '
                                          'line 2 of user config file '):
        load_config_file(Settings(), str(f), USER)
    f.write_text("set statistics\nset shy\n")
    load_config_file(Settings(), str(f), USER)
    with pytest.raises(ConfigError, match='^The "shy" option cannot be set after a client has '
                                          'connected \\(line 2 of config file '):
        load_config_file(Settings(), str(f), SPOOL)


# --- config-file: nesting ----------------------------------------------------------

def test_config_file_reads_another_file_at_that_point(tmp_path):
    inner = tmp_path / "inner.conf"
    inner.write_text("set timeout = 30\nset statistics\n")
    outer = tmp_path / "outer.conf"
    outer.write_text("set timeout = 10\nset config-file = %s\nset debug\n" % inner)
    s = Settings()
    load_config_file(s, str(outer))
    assert (s.timeout, s.statistics, s.debug) == (30, True, True)
    outer.write_text("set config-file = '%s'\nset timeout = 10\n" % inner)
    load_config_file(s, str(outer))
    assert s.timeout == 10


def test_nesting_is_limited_to_100_deep(tmp_path):
    files = [tmp_path / ("%03d.conf" % i) for i in range(102)]
    for here, there in zip(files, files[1:]):
        here.write_text("set config-file = %s\n" % there)
    files[-1].write_text("set timeout = 33\n")
    s = Settings()
    load_config_file(s, str(files[1]))                   # 100 nested below the first
    assert s.timeout == 33
    with pytest.raises(ConfigError) as exc:
        load_config_file(Settings(), str(files[0]))      # 101 nested
    assert str(exc.value) == (
        "Unable to process config file %s: Config file nesting exceeds 100; will not process "
        "config file %s" % (files[0], files[-1]))


def test_a_loop_ends_at_the_nesting_limit(tmp_path):
    a, b = tmp_path / "a.conf", tmp_path / "b.conf"
    a.write_text("set config-file = %s\n" % b)
    b.write_text("set config-file = %s\n" % a)
    with pytest.raises(ConfigError, match="Config file nesting exceeds 100; will not process "
                                          "config file .*/b.conf$"):
        load_config_file(Settings(), str(a))


def test_an_error_in_a_nested_file_names_that_file(tmp_path):
    inner, outer = tmp_path / "inner.conf", tmp_path / "outer.conf"
    inner.write_text("\n# fine\nset colour = blue\n")
    outer.write_text("set config-file = %s\n" % inner)
    with pytest.raises(ConfigError) as exc:
        load_config_file(Settings(), str(outer))
    assert str(exc.value).startswith(
        'Unable to process config file %s: Unrecognized option; scanning "colour" at line 3 '
        "of config file %s; valid options are: " % (outer, inner))
    outer.write_text("set config-file = %s/none.conf\n" % tmp_path)
    with pytest.raises(ConfigError) as exc:
        load_config_file(Settings(), str(outer))
    assert str(exc.value) == (
        "Unable to process config file %s: Unable to open configuration file %s/none.conf: "
        "No such file or directory (2)" % (outer, tmp_path))


# --- log-login: Qpopper's template ---------------------------------------------------

def test_log_login_is_a_template():
    s = settings_of('set log-login = "(v%0) login %1 from %2 [%3]"')
    assert log_login_line(s.log_login, "joe", "host.example", "192.0.2.1") == (
        "(v%s) login joe from host.example [192.0.2.1]" % __version__)
    assert Settings().log_login is None                  # configure.py's default: off
    assert settings_of("set log-login = x", 'set log-login = ""').log_login is None
    default = '(v%0) POP login by user "%1" at (%2) %3'
    assert settings_of("set log-login = '%s'" % default).log_login == default
    assert settings_of("set log-login = true").log_login == default   # popper's old switch
    assert settings_of("set log-login = false").log_login is None


def test_client_text_in_the_log_login_line_is_only_data():
    assert log_login_line("%1 at %2", "%s%n%1", "%3%%", "ip") == "%s%n%1 at %3%%"


@pytest.mark.parametrize("template,line", [
    ("%0%1%2%3", __version__ + "u" + "h" + "i"),
    ("%1%1%1%1", "uuuu"),
    ("100%%1 %2", "100%s u"),        # %% is printf's %: "s" is left, and %2 gets %1's value
    ("end %", "end %"),
    ("\\\"%1\\\"", '\\"u\\"'),            # a backslash stays, as in Qpopper
])
def test_log_login_follows_do_log_login(template, line):
    assert log_login_line(template, "u", "h", "i") == line


@pytest.mark.parametrize("template,problem", [
    ("login %4", '"%4" is invalid in a log-login string: "login %4"'),
    ("%s", '"%s" is invalid in a log-login string: "%s"'),
    ("%1%1%1%1%1", 'Log-login string contains too many substitutions: "%1%1%1%1%1"'),
])
def test_a_bad_log_login_template_is_refused_at_start_up(template, problem):
    assert error_of("set log-login = '%s'" % template) == (
        "Bad value for the log-login option; scanning \"%s\" at line 1 of config file -: %s"
        % (template, problem))


def test_a_backslash_keeps_a_quote_in_the_string_and_stays():
    assert settings_of(r'set log-login = "user \"%1\""').log_login == r'user \"%1\"'


# --- the example config files --------------------------------------------------------

def sample_lines():
    return [line[2:] for line in (DATA / "qpopper-4.0-sample.config").read_text().splitlines()
            if line.startswith("# set ")]


# What each line of Qpopper's sample does uncommented: None is fine; else
# the refusal (not built) or the error, which Qpopper gives too (an empty
# value; the sample's log-login line, whose /" is no escape).
SAMPLE_UNCOMMENTED = {
    "announce-login-delay": 'Bad value for the announce-login-delay option; scanning ""',
    "announce-expire": 'Bad value for the announce-expire option; scanning ""',
    "config-file": "Unable to open configuration file /etc/mail/pop/qpopper.config",
    "drac-host": "-D: DRAC is not built",
    "kerberos-service": "-k / -K: Kerberos support is not built",
    "mail-lock-check": 'Bad value for the mail-lock-check option; scanning ""',
    "tracefile": 'Bad value for the tracefile option; scanning ""',
    "tls-cipher-list": 'Bad value for the tls-cipher-list option; scanning ""',
    "tls-identity-file": 'Bad value for the tls-identity-file option; scanning ""',
    "tls-passphrase": 'Bad value for the tls-passphrase option; scanning ""',
    "tls-private-key-file": 'Bad value for the tls-private-key-file option; scanning ""',
    "home-dir-mail": "home-dir-mail: spools in home directories is not built",
    "group-server-mode": 'Bad value for the group-server-mode option; scanning ""',
    "group-no-server-mode": 'Bad value for the group-no-server-mode option; scanning ""',
    "auth-file": 'Bad value for the auth-file option; scanning ""',
    "nonauth-file": 'Bad value for the nonauth-file option; scanning ""',
    "temp-dir": 'Bad value for the temp-dir option; scanning ""',
    "cache-dir": 'Bad value for the cache-dir option; scanning ""',
    "log-login": 'Expected comment or end of line; found "%"',
}


def test_the_sample_lists_every_qpopper_name_but_the_workaround_ones():
    names = {line.split()[1] for line in sample_lines()}
    assert names == set(QPOPPER_NAMES) - {"UW-kludge", "tls-workarounds", "tls-options"}


@pytest.mark.parametrize("line", sample_lines(), ids=lambda line: line.split()[1])
def test_each_line_of_qpoppers_sample_uncommented(line):
    expected = SAMPLE_UNCOMMENTED.get(line.split()[1])
    try:
        s = settings_of(line)
    except ConfigError as exc:
        assert expected and str(exc).startswith(expected), exc
        return
    assert s.not_built() == ([expected] if expected else [])


@pytest.mark.clients
@pytest.mark.parametrize("example", ["qpopper-4.0-sample.config", "pld.config"])
def test_qpopper_example_configs_start_popper_unchanged(mailhost, example):
    """popper -f <the file, unchanged> in inetd mode, and a session: the
    test's own -f (its spool and users) comes first, the example after it."""
    mailhost.deliver(b"From a@b Mon Jan  1 00:00:00 2001\nSubject: x\n\nhi\n")
    conv = start_inetd(mailhost.command("-f", str(DATA / example)))
    try:
        assert conv.greeting.startswith(b"+OK QPOP")
        assert conv.login("alice", USERS["alice"]).startswith(b"+OK alice has 1 visible message")
        assert conv.cmd("QUIT").startswith(b"+OK")
    finally:
        conv.close()


@pytest.mark.clients
@pytest.mark.parametrize("example", ["gentoo-ssl.config", "alternate-port-tls.config"])
def test_qpopper_tls_configs_need_only_their_certificate(mailhost, example):
    import subprocess
    result = subprocess.run(mailhost.command("-f", str(DATA / example)), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=30)
    assert result.returncode == 1
    refusals = re.findall(r"^popper: (.*)$", result.stderr, re.M)
    assert refusals and all(r.startswith("cannot use the TLS certificate /") and
                            r.endswith(": no such file or directory") for r in refusals), refusals


# --- -u and -U: the qpopper-options files, read as the user after the login ----------

IS_ROOT = os.geteuid() == 0


@pytest.fixture
def options(tmp_path):
    """(settings with -u and -U, an account whose home is tmp_path/home, a log)."""
    (tmp_path / "home").mkdir()
    (tmp_path / "spool").mkdir()
    s = settings_of("set user-options", "set spool-options",
                    "set spool-dir = %s" % (tmp_path / "spool"))
    return s, Account("alice", home=str(tmp_path / "home")), RecordingLog()


def user_file(account, text, mode=0o600):
    path = pathlib.Path(account.home) / ".qpopper-options"
    path.write_text(text)
    path.chmod(mode)
    return path


def spool_file(settings, text, mode=0o644):
    path = pathlib.Path(settings.spool_dir) / ".alice.qpopper-options"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_u_and_U_are_read_user_file_first(options):
    s, account, log = options
    user_file(account, "set statistics\nset announce-expire = 30\n")
    spool_file(s, "set announce-expire = 60   # the administrator's word is last\n")
    read_options_files(s, account, log)
    assert (s.statistics, s.announce_expire, log.lines) == (True, 60, [])
    assert s.not_built() == []


@pytest.mark.parametrize("own, expected", [("0", 300), ("60", 300), ("900", 900)])
def test_a_users_own_file_may_lengthen_an_enforced_login_delay_never_shorten_it(
        options, own, expected):
    """announce-login-delay is anyone's to set; the enforced delay is the
    administrator's (the spool's file may still change it: -U).  A bad line
    after it does not keep the check from being made."""
    s, account, log = options
    s.announce_login_delay, s.enforce_login_delay = 300, True
    path = user_file(account, "set announce-login-delay = %s\nset bad-name\n" % own)
    read_options_files(s, account, log)
    assert s.announce_login_delay == expected
    refused = [] if expected == 900 else [
        "%s: announce-login-delay %s ignored: the enforced login delay is 300 seconds"
        % (path, own)]
    assert [t for t in log.texts() if "ignored" in t] == refused
    assert log.texts()[-1] == "Unable to process user options file for user alice"
    del log.lines[:]
    s.enforce_login_delay = False              # only announced: the user's word stands
    read_options_files(s, account, log)
    assert s.announce_login_delay == int(own)
    spool_file(s, "set announce-login-delay = 0\n")
    s.enforce_login_delay = True
    read_options_files(s, account, log)
    assert s.announce_login_delay == 0


def test_missing_options_files_are_no_error(options):
    s, account, log = options
    read_options_files(s, account, log)
    assert log.lines == []


def test_a_users_file_may_set_only_what_qpopper_lets_it(options):
    s, account, log = options
    path = user_file(account, "set statistics\nset spool-dir = /tmp\nset server-mode\n")
    read_options_files(s, account, log)
    assert s.statistics and not s.server_mode and s.spool_dir != "/tmp"   # stops at line 2
    assert log.texts() == [
        'Attempt to use restricted option "spool-dir" at line 2 of user config file %s' % path,
        "Unable to process user options file for user alice"]


@pytest.mark.parametrize("name", ["tracefile = /tmp/t", "debug", "config-file = /etc/passwd",
                                  "log-facility = mail", "log-login = x"])
def test_what_reached_root_in_qpoppers_cves_is_refused_in_both_files(options, name):
    s, account, log = options
    user_file(account, "set " + name + "\n")
    spool_file(s, "set " + name + "\n")
    read_options_files(s, account, log)
    assert (s.tracefile, s.debug, s.log_login) == (None, False, None)
    assert len([t for t in log.texts() if t.startswith("Attempt to use restricted option")]) == 2


def test_the_spool_file_may_not_set_start_up_names(options):
    s, account, log = options
    path = spool_file(s, "set shy\n")
    read_options_files(s, account, log)
    assert not s.shy
    assert log.texts() == [
        'The "shy" option cannot be set after a client has connected (line 1 of config file '
        '%s)' % path, "Unable to process spool options file for user alice"]


def hostile(kind, path: pathlib.Path):
    """Make the options file at path hostile in one way."""
    if kind == "symlink":
        target = path.with_name("target")
        path.rename(target)
        path.symlink_to(target)
    elif kind == "hard link":
        os.link(str(path), str(path.with_name("second")))
    elif kind == "group-writable":
        path.chmod(0o620)
    elif kind == "world-writable":
        path.chmod(0o602)
    elif kind == "another owner":
        os.chown(str(path), 65534, 65534)
    elif kind == "a FIFO":
        path.unlink()
        os.mkfifo(str(path), 0o600)


HOSTILE = ["symlink", "hard link", "group-writable", "world-writable",
           pytest.param("another owner", marks=pytest.mark.skipif(not IS_ROOT, reason="chown")),
           "a FIFO"]
WHY = {"symlink": "a symbolic link", "hard link": "2 links",
       "group-writable": "writable by its group or others",
       "world-writable": "writable by its group or others", "another owner": "owned by uid 65534",
       "a FIFO": "not a regular file"}


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_hostile_users_file_is_not_read(options, kind):
    s, account, log = options
    path = user_file(account, "set statistics\n")
    hostile(kind, path)
    read_options_files(s, account, log)
    assert not s.statistics
    assert log.texts() == ["Refused user options file %s: %s" % (path, WHY[kind]),
                           "Unable to process user options file for user alice"]


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_hostile_spool_file_is_not_read(options, kind):
    s, account, log = options
    path = spool_file(s, "set statistics\n", mode=0o600)
    if kind == "another owner":
        os.chown(str(path), 65534, 65534)
    else:
        hostile(kind, path)
    read_options_files(s, account, log)
    assert not s.statistics
    assert log.texts()[0] == "Refused spool options file %s: %s" % (path, WHY[kind])


@pytest.mark.skipif(not IS_ROOT, reason="a spool file of another owner than root needs root")
def test_a_spool_file_the_user_made_is_not_read(options):
    """The spool directory is often 1777: another user may put a
    .alice.qpopper-options there; only root's is believed."""
    s, account, log = options
    path = spool_file(s, "set statistics\n")
    os.chown(str(path), 1000, 1000)
    read_options_files(s, account, log)
    assert not s.statistics
    assert log.texts()[0] == "Refused spool options file %s: owned by uid 1000" % path
