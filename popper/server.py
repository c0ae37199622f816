"""Putting a session together once greeting.greet() has greeted the client:
the session's modules, the authenticator, the maildrop opener.  The
transports call greet(), then serve(), for each connection."""

import os
import sys

from popper.greeting import implicit_tls
from popper.transport import connection

# What a session needs beyond the greeting: imported by load_session()
# once the greeting is out (docs/architecture.md, "Start-up").
SESSION_MODULES = (
    "popper.protocol.session", "popper.extensions.mangle_request", "popper.auth.sasl",
    "popper.auth.gatekeeper", "popper.auth.apop", "popper.logindelay", "popper.bulletins",
    "popper.bulldb", "popper.maildrop", "popper.maildrop.files", "popper.privsep")


# What only some sessions run, read ahead by load_session() and run at its
# first import (popper/deferred.py): X-MANGLE's mangler, XTND XMIT's
# subprocess and tempfile, and what they import on Python 3.6 to 3.13
# (tests/test_deferred.py holds the list).
READ_AHEAD = (
    "popper.extensions.mangle", "_string", "string", "copy", "_datetime", "datetime", "locale",
    "calendar", "ipaddress", "urllib", "urllib.parse", "quopri", "uu", "html", "html.entities",
    "math", "collections.abc", "types", "warnings", "functools", "enum", "copyreg",
    "sre_constants", "sre_parse", "sre_compile", "re", "re._constants", "re._parser",
    "re._casefix", "re._compiler", "base64", "signal", "selectors", "socket", "email",
    "email.errors", "email._parseaddr", "email.base64mime", "email.quoprimime", "email.encoders",
    "email.charset", "email.utils", "email._encoded_words", "email.header", "email._policybase",
    "email.feedparser", "email.parser", "email.iterators", "email.message", "email.generator",
    "_multibytecodec", "_codecs_jp", "_codecs_iso2022", "encodings.ascii", "encodings.latin_1",
    "encodings.raw_unicode_escape", "encodings.cp1252",
    "encodings.iso2022_jp") + tuple("encodings.iso8859_%d" % n for n in (2, 3, 4, 5, 6, 7, 8, 9,
                                                                       10, 11, 13, 15)) + (
    "_posixsubprocess", "contextlib", "weakref", "_locale", "locale", "subprocess", "fnmatch",
    "zlib", "_compression", "_bz2", "bz2", "_lzma", "lzma", "shutil", "_bisect", "bisect",
    "_random", "_sha512", "random", "tempfile") + (
    # random's sha512 before 3.8: hashlib's (with OpenSSL's, then imported at once)
    ("_sha1", "_sha3", "_blake2", "_hashlib", "hashlib") if sys.version_info < (3, 8) else ())


def load_session(settings, listener: bool = False) -> None:
    """Import what the rest of the session needs, and the back-end
    settings names, and read READ_AHEAD: as root, before the login process
    is forked (it then has them all) and before the session becomes the
    user, who may not be able to read the interpreter's files (its modules
    and codecs); not where every user can (deferred.readable_by_all: an
    install open to all, as most are), which spares each inetd session
    reading some 80 modules it will most likely never run.  A standalone
    listener (listener) imports READ_AHEAD as well: its sessions then
    import nothing.

    The garbage collector is off meanwhile (imports make objects, not
    garbage cycles: a collection then is wasted work); what is loaded is
    then frozen out of its sight (gc.freeze, Python 3.7 on), so that the
    session's collections never walk it (nor, in a process forked from a
    standalone listener, touch its pages)."""
    import gc
    collecting = gc.isenabled()
    gc.disable()
    try:
        from popper import extensions
        for name in SESSION_MODULES + tuple(extensions.names()):
            __import__(name)            # (not importlib.import_module: importlib loads warnings)
        _backend(settings)
        from popper import deferred
        if listener or not deferred.readable_by_all(READ_AHEAD):
            deferred.read(READ_AHEAD)
        if listener:
            for name in deferred.held():
                __import__(name)            # from memory
    finally:
        if hasattr(gc, "freeze"):
            gc.freeze()
        if collecting:
            gc.enable()


def _backend(settings):
    """The module of the back-end authenticator() picks."""
    if settings.userdb:
        from popper.auth import userdb as module
    elif settings.pam_service:
        from popper.auth import pam as module
    else:
        from popper.auth import unix as module
    return module


def authenticator(settings, log):
    """The user database if one is named, else PAM if a service is, else
    the Unix passwd and shadow databases (Qpopper's default)."""
    module = _backend(settings)
    if settings.userdb:
        return module.UserDB(settings.userdb, log)
    if settings.pam_service:
        return module.PamAuth(settings.pam_service, log)
    return module.UnixAuth(settings, log)


def serve(conn: connection.Connection, greeted, settings, log, tls=None) -> None:
    """The rest of a connection greeting.greet() has greeted (greeted: its
    Greeted), to its end: in two processes when popper is root
    (privsep.py), else in this one.  tls: the tls.Credentials, when TLS
    is configured."""
    # The session's modules load after the greeting (docs/architecture.md,
    # "Start-up"), so that loading them and the fork overlap the client's
    # round trip.
    load_session(settings)
    client, hostname, timestamp = greeted.client, greeted.hostname, greeted.timestamp
    if greeted.identity is None:        # one process
        from popper.auth.gatekeeper import Gatekeeper
        from popper.protocol.session import Session
        gatekeeper = Gatekeeper(settings, authenticator(settings, log), log, hostname)
        session = Session(settings, gatekeeper, maildrop_opener(settings, log, hostname), log,
                          client, hostname, timestamp)
        first = None if implicit_tls(settings, tls) else []
        run(conn, session, settings, log, first=first, login_by=greeted.login_by, tls=tls)
        return

    def serve_user(account, unread: bytes, user_conn, over_tls: bool, no_mime: bool):
        from popper.protocol.session import Session
        session = Session(settings, None, maildrop_opener(settings, log, hostname), log,
                          client, hostname)
        session.tls_active = over_tls
        session.no_mime = no_mime       # the name ended in -no-mime (privsep.py)
        run(user_conn, session, settings, log, first=[session.login(account)], pending=unread)

    def gatekeeper():
        # Made after the fork: the login process holds no hash.
        from popper.auth.gatekeeper import Gatekeeper
        return Gatekeeper(settings, authenticator(settings, log), log, hostname)

    from popper import privsep
    privsep.serve(conn, greeted.identity, settings, log, client, hostname, gatekeeper, run,
                  serve_user, greeted.login_by, timestamp, tls)


def maildrop_opener(settings, log, hostname: str):
    """open_maildrop(account) for a Session: become the user, refuse a
    login inside an enforced login delay (logindelay.py), then open (with
    the bulletins, under -b) and record the login.  The bulletin database's keeper is
    started before, as root, and let go once the maildrop is open; without
    it (nothing new, or -B and the database could not be opened) there are
    no bulletins."""
    from popper import bulldb, maildrop
    from popper.bulletins import Bulletins
    from popper.logindelay import LoginDelay

    def open_maildrop(account):
        keeper = None
        if settings.bulldir and settings.bulldb is not None:
            keeper = bulldb.start(settings, account.name, log)
        try:
            from popper import privsep
            try:
                privsep.become(account, settings.spool_dir)
            except privsep.CannotServe as exc:
                raise maildrop.MaildropError(exc.args[0]) from None
            if account.login_delay is not None:        # the user database's, for this user
                settings.announce_login_delay = account.login_delay
            read_options_files(settings, account, log)
            delay = LoginDelay(settings, account.name, log)
            delay.check()                   # before the maildrop: a refusal touches no mail
            news = None
            if settings.bulldir and (settings.bulldb is None or keeper is not None):
                news = Bulletins(settings, account, hostname, log, keeper)
            drop = maildrop.open_maildrop(settings, account.name, log, news)
            delay.record()                  # under the session lock the open drop holds
            return drop
        finally:
            if keeper is not None:
                keeper.close()
    return open_maildrop


def read_options_files(settings, account, log) -> None:
    """-u and -U (Qpopper's check_config_files, after the password and
    before the maildrop): ~/.qpopper-options, then the spool's
    .<user>.qpopper-options, read as the user.  Each is read only if it is
    fit (files.unfit): a regular file of one link, not writable by group
    or others, the user's own file owned by the user, the spool's by root;
    never through a symbolic link.  A bad file or line is logged (Qpopper's
    texts) and the session goes on, with the lines before it applied."""
    from popper.maildrop import files
    from popper.settings import SPOOL, USER, ConfigError, apply_text, spool_options_path
    wanted = []
    if settings.user_options and account.home:
        wanted.append(("user", os.path.join(account.home, ".qpopper-options"), os.geteuid(),
                       USER))
    if settings.spool_options:
        wanted.append(("spool", spool_options_path(settings, account.name), 0, SPOOL))
    for what, path, owner, source in wanted:
        delay = settings.announce_login_delay
        try:
            text = files.read_checked(path, owner, 0o022)
            if text is not None:
                try:
                    apply_text(settings, text, path, source)
                finally:        # the lines before a bad one are applied too
                    if source == USER:
                        _keep_enforced_delay(settings, delay, path, log)
        except ConfigError as exc:
            log.notice(str(exc))
        except ValueError as exc:
            log.notice("Refused %s options file %s: %s" % (what, path, exc))
        except OSError as exc:
            log.notice("Unable to open configuration file %s: %s (%d)"
                       % (path, exc.strerror, exc.errno))
        else:
            continue
        log.notice("Unable to process %s options file for user %s" % (what, account.name))


def _keep_enforced_delay(settings, before, path: str, log) -> None:
    """announce-login-delay is anyone's to set (pop_config.c), but an
    enforced delay is the administrator's: the user's own file may make it
    longer, never shorter."""
    from popper.logindelay import delay_of
    enforced = delay_of(settings, before)
    if enforced and delay_of(settings) < enforced:
        log.notice("%s: announce-login-delay %s ignored: the enforced login delay is %d seconds"
                   % (path, settings.announce_login_delay, enforced))
        settings.announce_login_delay = before


def run(conn, session, settings, log, first=None, pending=b"", login_by=None, tls=None):
    """The session on conn; returns the connection it ended on (connection.run)."""
    return connection.run(conn, session, settings.timeout, log, first=first, pending=pending,
                          login_by=login_by, tls=tls)
