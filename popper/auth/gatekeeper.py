"""The rules every login passes, whatever the back-end: the one place a
user name and password become an Account.

In order: the name given must be one popper can build a path from (no
NUL, "/", leading dot; at most 64 characters), which is checked before any
back-end sees it, so that no C call reads a name cut short at a NUL; the
back-end checks the password; the account it names must pass the same
check; then the auth-file/nonauth-file lists and the UID floor (-a).  A
failure is raised as AuthError with the text the client gets, which never
tells the reasons apart; whoever sends that text logs it (log_refusal):
the reason of a failed password check in a line of its own, the -ERR, and
Qpopper's `[AUTH] Failed attempted login ...`.

APOP (apop()) passes the same rules after its digest; every failed digest
gets the one answer, whatever the cause.  USER asks check_user() whether
clear text may be used for the name (Qpopper's pop_user.c: not for a user
with an APOP secret, unless -p 2).

SASL (auth/sasl.py): plain() is PLAIN's and LOGIN's -- USER/PASS's check,
then check_user()'s rule, then the authorization identity (authorize():
another user's only for a name in sasl-proxy-file).  CRAM-MD5's challenge
is made and kept here (challenge()), used once by cram(), which checks as
apop() does; so does SCRAM-SHA-256's proof (scram_first, scram_final,
scram_done: the server side, sasl.Scram).  A Gatekeeper serves one
connection.

This runs in the root part of a separated session (privsep.py): the login
process only hands over the name and password, or the name and digest.
"""

import os
import _socket     # not socket.py nor signal.py (docs/architecture.md, "Start-up")
import time

from popper.auth import AuthError, apop, same_hash, sasl, unixdb
from popper.log import err_line
from popper.protocol import replies
from popper.settings import bad_name

LOWEST_UID = 10         # Qpopper's floor: accounts at or below it are system accounts
MAX_USER = 64           # Qpopper truncates longer user names


def ascii_lower(text: str) -> str:
    """text with ASCII letters downcased, as C's tolower() in the C locale."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


NO_MIME = "-no-mime"


def without_no_mime(name: str):
    """(name, True) less its -no-mime suffix, or (name, False): pop_user.c
    cuts it from a name longer than 8 characters that ends in exactly that
    (after -c and -C); the session then mangles RETR and TOP by default."""
    if len(name) > 8 and name.endswith(NO_MIME):
        return name[:-len(NO_MIME)], True
    return name, False


def login_name(settings, log, name: str) -> str:
    """A name from the client as popper uses it: -c downcases, -C cuts at
    @, 64 characters at most (USER, APOP, SASL's identities)."""
    if settings.downcase_user:
        name = ascii_lower(name)
    if settings.trim_domain:
        name = name.split("@", 1)[0]
    if len(name) > MAX_USER:
        log.warning("Excessive user name length (%d); truncated to %d: %s"
                    % (len(name), MAX_USER, name[:MAX_USER]))
        name = name[:MAX_USER]
    return name


def log_refusal(log, user: str, client, exc: AuthError, reply: bytes) -> None:
    """A refused login's lines, in the order of Qpopper's pop_pass.c (AIX
    branch): popper's reason for a failed password check, in a line of its
    own; pop_msg.c's -ERR line; then, for a failed password check,
    pop_pass.c's line exactly as Qpopper writes it, which log parsers match."""
    if (exc.attempt or exc.checked) and exc.log:
        log.notice("Authentication failed for user %s: %s" % (user, exc.log))
    log.notice(err_line(user, client, reply))
    if exc.attempt:
        log.notice("[AUTH] Failed attempted login to %s from host (%s) %s"
                   % (user, client.host, client.ip))


class Gatekeeper:
    def __init__(self, settings, backend, log, hostname: str = None):
        self.settings, self.backend, self.log = settings, backend, log
        self.hostname = hostname or _socket.gethostname()
        self.cram_challenge = None      # the one CRAM-MD5 may answer, once
        self.scram = None               # SCRAM-SHA-256's exchange, between its messages
        self.scram_user = None          # ... the name it is for (the log's)
        self.scram_account = None       # ... and its account, once the proof was right

    def authenticate(self, user: str, password: bytes, client):
        """The Account user may log in as, or AuthError."""
        try:
            account = self._password(user, password, client)
        except AuthError as exc:
            exc.attempt = True
            raise
        if not self.allowed(account.name):
            raise AuthError(replies.ACCESS_DENIED, user=user)
        if (account.uid is not None and account.uid <= LOWEST_UID
                and not self.settings.allow_low_uid):
            raise AuthError(replies.LOW_UID, log="uid %d" % account.uid, delay=False)
        return account

    def plain(self, authzid: str, user: str, password: bytes, client):
        """SASL PLAIN and LOGIN: the Account for authzid (user's own, or
        another's for a user in sasl-proxy-file) if password is user's; a
        failed check gets SASL's one answer."""
        try:
            account = self.authenticate(user, password, client)
        except AuthError as exc:
            if exc.attempt:
                exc.template, exc.fields = replies.AUTH_FAILED, {}
            raise
        self.check_user(user)           # as USER: clear text only without an APOP secret
        return self.authorize(account, user, authzid)

    def authorize(self, account, user: str, authzid: str):
        """The account to serve when user (authenticated as account) names
        authzid as SASL's authorization identity: user's own, or, for a
        user listed in sasl-proxy-file, authzid's, which passes the same
        rules as a login of its own."""
        if authzid == user:
            return account
        refused = AuthError(replies.AUTHZID_REFUSED, delay=False, user=user, authzid=authzid)
        names = read_names(self.settings.sasl_proxy_file, self.log)
        if not names or user not in names:
            self.log.notice('[AUTH] "%s" may not log in as "%s": not listed in %s'
                            % (user, authzid, self.settings.sasl_proxy_file or "sasl-proxy-file"))
            raise refused
        target = None if bad_name(authzid) else self.backend.account(authzid)
        if target is None or bad_name(target.name):
            self.log.notice('[AUTH] "%s" may not log in as "%s": no such account'
                            % (user, authzid))
            raise refused
        if not self.allowed(target.name):
            raise AuthError(replies.ACCESS_DENIED, user=authzid)
        if (target.uid is not None and target.uid <= LOWEST_UID
                and not self.settings.allow_low_uid):
            raise AuthError(replies.LOW_UID, log="uid %d" % target.uid, delay=False)
        self.log.notice('"%s" logs in as "%s" (sasl-proxy-file)' % (user, authzid))
        return target

    def _password(self, user: str, password: bytes, client):
        reason = bad_name(user)
        if reason:
            raise AuthError(replies.BAD_PASSWORD, log="user name %s" % reason, user=user)
        try:
            account = self.backend.authenticate(user, password, client)
        except AuthError:
            # -p 2: the APOP secret is a password too (a host whose users
            # have no password popper can read).  Looked up after every
            # failure, so that a failure costs the same for every name.
            account = self._apop_password(user, password)
            if account is None:
                raise
        reason = bad_name(account.name)
        if reason:
            raise AuthError(replies.BAD_PASSWORD, user=user,
                            log="the account's name %r %s" % (account.name, reason))
        return account

    def _apop_password(self, user: str, password: bytes):
        """The account, under -p 2, if password is user's APOP secret."""
        if not (self.settings.apop_db and self.settings.clear_text_password == 2):
            return None
        account, secret, _ = self._apop_lookup(user)
        right = same_hash(password, secret or apop.DUMMY_SECRET)
        return account if right and secret and account is not None else None

    def _apop_lookup(self, user: str):
        """(the back-end's account or None, the APOP secret or None, why
        the database could not be read or None), with the same calls for
        every name."""
        done_by = time.monotonic() + apop.LOOKUP_TIME
        account = self.backend.account(user)
        try:
            secret, why = apop.secret_of(self.settings.apop_db, admin(self.settings)[0],
                                         user), None
        except apop.DBError as exc:
            self.log.error("the APOP database: %s" % exc)
            secret, why = None, "the APOP database: %s" % exc
        # The rest of LOOKUP_TIME: a database that cannot be read answers
        # sooner than one that can, a name found in it later than one not.
        time.sleep(max(0.0, done_by - time.monotonic()))
        return account, secret, why

    def apop(self, user: str, given: str, timestamp: str, client):
        """The Account whose secret makes digest `given` of `timestamp`
        (APOP), or AuthError."""
        return self._by_secret(user, lambda secret: apop.same_digest(
            given, apop.digest(timestamp, secret)))

    def challenge(self) -> str:
        """A new CRAM-MD5 challenge, kept for the next cram()."""
        self.cram_challenge = sasl.cram_challenge(self.hostname)
        return self.cram_challenge

    def cram(self, user: str, given: str, client):
        """The Account whose secret makes digest `given` of the last
        challenge (CRAM-MD5, which it uses up), or AuthError: APOP's rules."""
        challenge, self.cram_challenge = self.cram_challenge, None
        if challenge is None:
            raise AuthError(replies.AUTH_FAILED, log="CRAM-MD5 without a challenge")
        return self._by_secret(user, lambda secret: apop.same_digest(
            given, sasl.cram_digest(challenge, secret)))

    def scram_first(self, message: bytes) -> bytes:
        """SCRAM-SHA-256's server-first-message for a client-first-message
        (the exchange kept for scram_final)."""
        self.scram = self.scram_user = None
        try:
            self.scram = sasl.Scram(message)
        except ValueError:
            raise AuthError(replies.AUTH_MALFORMED, delay=False,
                            mechanism="SCRAM-SHA-256") from None
        # The root part reads SCRAM's names itself: the suffix is cut here too.
        self.scram_user = without_no_mime(login_name(self.settings, self.log,
                                                     self.scram.user))[0]
        return self.scram.server_first.encode("latin-1")

    def scram_final(self, message: bytes, client) -> bytes:
        """The server-final-message if client-final's proof is right for the
        user's pop.auth secret, checked as apop() checks (the account kept
        for scram_done); else AuthError."""
        scram, self.scram = self.scram, None
        if scram is None:
            raise AuthError(replies.AUTH_FAILED, log="SCRAM without its first message")
        try:
            right = scram.final(message)
        except ValueError as exc:
            raise AuthError(replies.AUTH_MALFORMED, delay=False, log=str(exc),
                            mechanism="SCRAM-SHA-256") from None
        user = self.scram_user
        account = self._by_secret(user, right)
        authzid = without_no_mime(login_name(self.settings, self.log, scram.authzid))[0] \
            if scram.authzid else user
        self.scram_account = self.authorize(account, user, authzid)
        return scram.server_final()

    def scram_done(self, client):
        """The account of the exchange whose proof scram_final took: the
        client took the server's signature."""
        account, self.scram_account = self.scram_account, None
        if account is None:
            raise AuthError(replies.AUTH_FAILED, log="SCRAM without a right proof")
        return account

    def _by_secret(self, user: str, matches):
        """The Account of user if matches(its pop.auth secret): APOP's and
        CRAM-MD5's check.  Every name costs the same: a look-up padded to
        apop.LOOKUP_TIME, then matches() of the secret or a dummy."""
        reason = bad_name(user)
        if reason:
            account, secret, reason = None, None, "user name %s" % reason
        else:
            account, secret, reason = self._apop_lookup(user)
        right = matches(secret or apop.DUMMY_SECRET)
        if not (right and secret and account is not None and not bad_name(account.name)):
            exc = AuthError(replies.APOP_FAILED, log=reason or (
                "no such user" if account is None else
                "no APOP secret" if secret is None else
                "an empty APOP secret" if not secret else
                "the account's name %r %s" % (account.name, bad_name(account.name)) if right
                else "wrong digest"))
            exc.checked = True
            raise exc
        if not self.allowed(account.name):             # pop_apop.c's texts
            raise AuthError(replies.APOP_PERMISSION)
        if account.uid == 0:                # pop_apop.c: root only (not the uid floor)
            raise AuthError(replies.ACCESS_DENIED, user=user)
        return account

    def check_user(self, user: str) -> None:
        """AuthError if user may not use USER/PASS because of its APOP
        secret (pop_user.c: unless -p 2); the -p rules that do not depend on
        the user are the session's."""
        if not self.settings.apop_db or self.settings.clear_text_password == 2 or bad_name(user):
            return
        try:
            secret = apop.secret_of(self.settings.apop_db, admin(self.settings)[0], user)
        except apop.DBError as exc:
            self.log.error("the APOP database: %s" % exc)
            if exc.kind == "mode":
                raise AuthError(replies.APOP_DB_MODE, mode="%o" % exc.mode, delay=False)
            if exc.kind == "lock":
                raise AuthError(replies.APOP_DB_LOCK, error=os.strerror(exc.errno), delay=False)
            if exc.kind == "system":
                raise AuthError(replies.APOP_DB_UNAVAILABLE, user=user, errno=exc.errno,
                                error=os.strerror(exc.errno), delay=False)
            raise AuthError(replies.APOP_DB_UNFIT, delay=False)
        if secret:
            raise AuthError(replies.NEED_STRONGER_AUTH_APOP_USER, delay=False)

    def allowed(self, user: str) -> bool:
        """The nonauth-file (deny) and auth-file (allow) lists: one name a
        line.  A list that cannot be read denies everybody."""
        for path, listed_means in ((self.settings.nonauth_file, False),
                                   (self.settings.auth_file, True)):
            if not path:
                continue
            names = read_names(path, self.log)
            if names is None:
                return False
            if (user in names) != listed_means:
                self.log.notice('[AUTH] "%s" is %s %s' % (
                    user, "listed in" if not listed_means else "not listed in", path))
                return False
        return True


def read_names(path, log):
    """The names in a list file (one a line), or None when there is no
    file or it cannot be read (logged: nobody is then let in by it)."""
    if not path:
        return None
    try:
        with open(path, encoding="latin-1") as f:
            return {line.strip() for line in f}
    except OSError as exc:
        log.error("Unable to read %s: %s; nobody may log in" % (path, exc.strerror))
        return None


def admin(settings):
    """(uid, gid) of the POP administrator (set popuid), who owns pop.auth;
    DBError if there is no such user."""
    entry = unixdb.getpwnam(settings.popuid)
    if entry is None:
        raise apop.DBError("the POP administrator %s (set popuid) is not a user"
                           % settings.popuid)
    return entry.uid, entry.gid
