"""The POP3 session: RFC 1939 and 2449 with Qpopper's wording, sans-I/O.

A Session takes the client's bytes and gives back what to send: bytes (one
reply), an iterator of bytes (a long reply such as RETR, produced as it is
sent, which may end with an AfterSend to call once it has been sent),
FLUSH (send everything now), Pause(seconds) (wait before going on),
START_TLS (STLS: send everything, do the TLS handshake, then call
tls_started(); the client's bytes read before it are dropped here), or
HANG_UP (after QUIT's reply: send everything and end the connection,
then go on with what follows, the maildrop's close).  It never touches a socket
or a clock; the maildrop and the authenticator it is given do the file work.

feed() is lazy: it is a generator, and each command runs only when the
transport asks for the output after the previous one has been sent.  So
pipelined commands run strictly in order, and a QUIT that follows a RETR
in the same packet updates the maildrop only after the RETR was sent.

A command that reads further lines after its reply (AUTH's exchange, XTND
XMIT's message) is a continuation: a generator started by converse(),
which yields the outputs for each line it is sent, and returns the last
ones.  While it runs, every line (and TooLong) goes to it, not to the
command tables.
"""

from popper import __version__, extensions
from popper.auth import AuthError
from popper.log import err_line, log_login_line
from popper.protocol import Client  # noqa: F401 (its old home)
from popper.protocol import (AUTHORIZATION, AUTHORIZATION_PASS, DONE, FLUSH,  # noqa: F401
                             HANDED_OFF, HANG_UP, START_TLS, TRANSACTION, AfterSend, Pause)
from popper.protocol import replies as R
from popper.protocol.lines import LineReader, TooLong, is_number
from popper.settings import TLS_STLS

# SASL, the gatekeeper's rules, X-MANGLE and the maildrop are
# imported where they are used: an inetd session loads them after its
# greeting (server.load_session), before the fork and before becoming
# the user (docs/architecture.md, "Start-up").

MAX_WORDS = 5           # pop_parse: a command and 4 arguments (MAXPARMCOUNT, popper.h)

# Commands that need FLUSH before them in the TRANSACTION state.
SEES_RETRIEVED = ("quit", "last", "rset")


def _outputs(result):
    """A handler's result as outputs: a list is several."""
    if isinstance(result, list):
        yield from result
    else:
        yield result


def _multiline(first: bytes, lines) -> bytes:
    """A multi-line reply: the status line, the lines (dot-stuffed), '.'."""
    body = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
    return first + body + b".\r\n"


def _listing(status: bytes, indexes, values, line: bytes, first: int):
    """A long LIST/UIDL reply (lines "<n> <value>", which never start with a
    dot), produced in pieces so that it never sits whole in memory; message
    i is number i + 1 - first."""
    yield status
    piece = []
    for i in indexes:
        piece.append(line % (i + 1 - first, values[i]))
        if len(piece) == 4096:
            yield b"".join(piece)
            piece = []
    piece.append(b".\r\n")
    yield b"".join(piece)


def _stage(request, top_lines):
    """X-MANGLE's filter stage for the maildrop's message_chunks."""
    from popper.extensions import mangle
    return lambda pieces: mangle.mangled(pieces, request, top_lines)


def _lower(text: str) -> str:
    from popper.auth.gatekeeper import ascii_lower
    return ascii_lower(text)


def _trace() -> str:
    from popper.log import trace
    return trace()


def _maildrop_error():
    """MaildropError, for an except clause: the maildrop is loaded by then."""
    from popper.maildrop import MaildropError
    return MaildropError


class _MangledOctets:
    """LIST X-MANGLE's sizes: what the mangled RETR of message i sends
    (computed when LIST's line for it is made)."""

    def __init__(self, session, request):
        self.session, self.stage = session, _stage(request, None)

    def __getitem__(self, i: int) -> int:
        """A message the mangler cannot take (its RETR gets a -ERR) is
        listed with its own size, logged."""
        maildrop = self.session.maildrop
        try:
            return maildrop.message_octets(maildrop.messages[i], self.stage)
        except Exception:
            self.session.log.error("internal error in %s: %s"
                                   % ("X-MANGLE", _trace()))
            return maildrop.messages.octets[i]


class Session:
    def __init__(self, settings, authenticator, open_maildrop, log, client: Client,
                 hostname: str, apop_timestamp: str = None):
        self.settings = settings
        self.authenticator = authenticator
        self.open_maildrop = open_maildrop
        self.log = log
        self.client = client
        self.hostname = hostname
        self.apop_timestamp = apop_timestamp
        self.reader = LineReader()
        self.state = AUTHORIZATION
        self.user = None            # the name given to USER, then the logged-in user
        self.no_mime = False        # the name ended in -no-mime: X-MANGLE on by default
        self.maildrop = None
        # Per message, one byte each: marked deleted, seen (RETR'd whole, or
        # Status: R at login), seen at login, RETR'd whole in this session.
        self.deleted = self.seen = self.seen_at_login = self.retrieved = bytearray()
        self.sent = []              # messages RETR'd whole since the client's last command
        self.unread = b""           # HANDED_OFF: the client's bytes after the login
        self.continuation = None    # a command reading more lines (converse())
        # MDEF's macros: an argument equal to a name (any case) is its value (pop_parse.c).
        self.macros = {}
        self.tls_active = False     # the client speaks TLS (STLS, -l 2, or the relay's)
        self.starting_tls = False   # STLS answered: feed() drops what follows it
        self.deleted_count = self.deleted_octets = self.total_octets = 0
        # 1 when the first message is UW-IMAP's folder data: it is kept, but
        # has no number, and visible message n is messages[n - 1 + first].
        self.first = 0
        self.commands = {
            AUTHORIZATION: {"user": (self.do_user, 1, 1), "pass": (self.do_pass_first, 0, 1),
                            "apop": (self.do_apop, 2, 2), "auth": (self.do_auth, 0, 2),
                            "stls": (self.do_stls, 0, 0),
                            "capa": (self.do_capa, 0, 0), "quit": (self.do_quit, 0, 0)},
            # LIST, RETR and TOP take one more word, X-MANGLE's (pop_list.c, pop_send.c).
            TRANSACTION: {"stat": (self.do_stat, 0, 0), "list": (self.do_list, 0, 2),
                          "retr": (self.do_retr, 1, 2), "top": (self.do_top, 2, 3),
                          "dele": (self.do_dele, 1, 1), "noop": (self.do_noop, 0, 0),
                          "rset": (self.do_rset, 0, 0), "last": (self.do_last, 0, 0),
                          "uidl": (self.do_uidl, 0, 1), "capa": (self.do_capa, 0, 0),
                          "quit": (self.do_quit, 0, 0)},
        }
        self.commands[AUTHORIZATION_PASS] = dict(self.commands[AUTHORIZATION],
                                                 **{"pass": (self.do_pass, 1, 1)})
        extensions.install(self)

    # --- the dispatcher -----------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.state in (DONE, HANDED_OFF)

    def greeting(self) -> bytes:
        return R.greeting(self.settings, self.hostname, self.apop_timestamp)

    def feed(self, data: bytes):
        """The outputs for the client's bytes, computed as they are taken."""
        items = self.reader.feed(data)
        ends = self.reader.ends         # where each item ends in data
        for k, item in enumerate(items):
            if self.done:
                if self.state == HANDED_OFF:
                    self.unread = data[ends[k - 1]:]
                return
            if isinstance(item, TooLong):
                self.log.notice("Excessive input from %s %s (%s); discarded %d bytes"
                                % (self.user or "", self.client.host, self.client.ip,
                                   item.discarded))
            if self.continuation is not None:
                yield from self.go_on(item)
            elif isinstance(item, TooLong):
                self.confirm_sent()
                yield self.err(R.LINE_TOO_LONG, count=item.discarded)
            else:
                yield from self.command(item)
            if self.starting_tls:
                # Plaintext pipelined behind STLS is never a command, in or
                # out of TLS (CVE-2011-0411's class): the rest is dropped.
                self.starting_tls = False
                dropped = len(data) - ends[k]
                self.reader = LineReader()
                if dropped:
                    self.log.notice("Dropped %d bytes sent before the TLS handshake by %s (%s)"
                                    % (dropped, self.client.host, self.client.ip))
                return
        if self.state == HANDED_OFF:
            self.unread = data[ends[-1]:] if items else b""

    def command(self, line: bytes):
        text = line.decode("latin-1")
        # Words are separated by spaces and tabs only (not, say, the latin-1
        # no-break space that str.split() would also split at).
        words = [word for word in text.replace("\t", " ").split(" ") if word]
        name = words[0].lower() if words else ""
        if name == "pass":
            # The password is everything after one separator, spaces and all.
            args = [text.lstrip()[5:]] if len(text.lstrip()) > 5 else []
            self.log.debug('Received: "PASS xxxxxxxxx"')
        elif name == "auth" and len(words) > 2:        # an initial response: credentials
            args = words[1:]
            self.log.debug('Received: "AUTH %s xxxxxxxxx"' % words[1])
        else:
            args = words[1:]
            if self.macros:
                args = [self.macros.get(_lower(word), word) for word in args]
            if getattr(self.log, "debugging", True):      # no formatting when not tracing
                self.log.debug('Received: "%s"' % text)
        entry = self.commands.get(self.state, {}).get(name)
        if entry and self.state == TRANSACTION and name in SEES_RETRIEVED:
            yield FLUSH
        self.confirm_sent()
        if name != "pass" and len(words) > MAX_WORDS:     # before the command is looked up
            yield self.err(R.TOO_MANY_WORDS)
            return
        if entry is None:
            yield self.err(R.UNKNOWN_COMMAND, command=name)
            return
        while True:
            handler, fewest, most = entry
            if len(args) < fewest:
                yield self.err(R.TOO_FEW_ARGS, command=name)
                return
            if len(args) > most:
                yield self.err(R.TOO_MANY_ARGS, command=name)
                return
            if not isinstance(handler, extensions.Subcommands):
                break
            # XTND <sub>: the subcommand's own row (pop_get_subcommand.c: "%.100s %.100s").
            sub = _lower(args[0])
            name, args = name + " " + sub[:100], args[1:]
            entry = handler.get(sub)
            if entry is None:
                yield self.err(R.UNKNOWN_COMMAND, command=name)
                return
        yield from _outputs(self.call(handler, name, args))

    def call(self, handler, name: str, args):
        """A command's handler's result; a failure is logged and answered."""
        try:
            return handler(*args)
        except Exception:
            self.log.error("internal error in %s: %s" % (name, _trace()))
            return self.err(R.INTERNAL_ERROR)

    def quick(self, data: bytes):
        """feed(data)'s outputs when data is one whole plain "RETR <n>" line
        in the TRANSACTION state (most commands of a download), made without
        feed()'s generic steps but with the same replies, log lines and
        marks; None for anything else (feed() takes it)."""
        reader = self.reader
        if (self.state != TRANSACTION or self.continuation is not None or self.macros
                or reader.pending or reader.discarding or data.find(b"\n") != len(data) - 1):
            return None
        line = data[:-2] if data.endswith(b"\r\n") else data[:-1]
        text = line.decode("latin-1")
        name, _, arg = text.partition(" ")
        # One space and a number: the words command() would find.
        if name.lower() != "retr" or not is_number(arg) or len(line) > reader.max_line:
            return None
        if getattr(self.log, "debugging", True):
            self.log.debug('Received: "%s"' % text)
        self.confirm_sent()
        return [self.call(self.do_retr, name.lower(), (arg,))]

    def converse(self, continuation) -> list:
        """Start a continuation (a generator: see the module's docstring);
        the outputs of its first step."""
        self.continuation = continuation
        return self.go_on(None, first=True)

    def go_on(self, line, first: bool = False) -> list:
        """The continuation's outputs for the client's next line (bytes, or
        TooLong); it ends when it returns, or fails as a command does."""
        if not first:
            self.confirm_sent()
        try:
            result = next(self.continuation) if first else self.continuation.send(line)
        except StopIteration as stop:
            self.continuation = None
            result = stop.value
        except Exception:
            self.continuation = None
            self.log.error("internal error in %s: %s"
                           % ("a continuation", _trace()))
            result = self.err(R.INTERNAL_ERROR)
        return list(_outputs(result))

    def err(self, template: str, **fields) -> bytes:
        """An -ERR reply, logged at NOTICE as Qpopper logs every one."""
        line = R.err(template, **fields)
        self.log_err(line)
        return line

    def log_err(self, line: bytes) -> None:
        """pop_msg.c's line; the user is the last name given to USER (Qpopper
        keeps p->user after a failed login too)."""
        self.log.notice(err_line(self.user, self.client, line))

    # --- authorization --------------------------------------------------------------

    def clear_text_refusal(self):
        """The -ERR text if clear-text passwords may not be used now, else
        None (-p; 4: only once TLS is up)."""
        policy = self.settings.clear_text_password
        if policy == 1 or (policy == 3 and not self.client.is_local):
            return R.NEED_STRONGER_AUTH
        if policy == 4 and not self.tls_active:
            return R.NEED_TLS
        return None

    def user_name(self, name: str) -> str:
        """The name as popper uses it (gatekeeper.login_name: -c, -C), less
        a -no-mime suffix (pop_user.c: a name longer than 8 characters
        ending in exactly that), which turns X-MANGLE on for the session:
        USER, APOP and AUTH's authorization identity alike."""
        from popper.auth.gatekeeper import login_name, without_no_mime
        name, self.no_mime = without_no_mime(login_name(self.settings, self.log, name))
        return name

    def do_user(self, name: str):
        user = None
        if self.settings.apop_db and self.settings.clear_text_password != 2:
            # pop_user.c, first: a user with an APOP secret must use it.
            user = self.user_name(name)
            try:
                self.authenticator.check_user(user)
            except AuthError as exc:
                return self.err(exc.template, **exc.fields)
        refusal = self.clear_text_refusal()
        if refusal:
            return self.err(refusal)
        self.user = user if user is not None else self.user_name(name)
        self.state = AUTHORIZATION_PASS
        return R.ok(R.PASSWORD_REQUIRED, user=self.user)

    def do_pass_first(self, *password):
        return self.err(R.USER_FIRST)

    def do_pass(self, password: str):
        user = self.user
        self.state = AUTHORIZATION
        try:
            account = self.authenticator.authenticate(user, password.encode("latin-1"),
                                                      self.client)
        except AuthError as exc:
            return self.refuse(exc)
        return self.login(account)

    def refuse(self, exc: AuthError):
        """A failed login: back to USER, the -ERR, after auth-fail-delay;
        logged as Qpopper logs it, unless the root part has (privsep.py)."""
        reply = R.err(exc.template, **exc.fields)
        if not exc.logged:
            from popper.auth.gatekeeper import log_refusal
            log_refusal(self.log, self.user, self.client, exc, reply)
        if exc.delay and self.settings.auth_fail_delay > 0:
            return [Pause(self.settings.auth_fail_delay), reply]
        return reply

    def do_apop(self, name: str, digest: str):
        """APOP (pop_apop.c), against the greeting's timestamp; without
        one (no usable pop.auth at the start) there is nothing to check."""
        if not self.apop_timestamp:
            return self.err(R.APOP_UNAVAILABLE)
        self.state = AUTHORIZATION
        self.user = self.user_name(name)
        self.log.info('apop "%s"' % self.user)
        try:
            account = self.authenticator.apop(self.user, digest, self.apop_timestamp,
                                              self.client)
        except AuthError as exc:
            return self.refuse(exc)
        return self.login(account)

    def do_auth(self, mechanism: str = None, initial: str = None):
        """AUTH (RFC 5034): bare, the mechanisms (pop_auth.c's list); else
        the mechanism's exchange (auth/sasl.py), back to USER after it."""
        from popper.auth import sasl
        mechanisms = sasl.available(self)
        if mechanism is None:
            return _multiline(R.ok(R.AUTH_MECHANISMS),
                              [name.encode() for name in mechanisms]
                              or [R.AUTH_NO_MECHANISM.encode()])
        if mechanism.upper() not in mechanisms:
            return self.err(R.UNKNOWN_MECHANISM, mechanism=mechanism)
        self.state = AUTHORIZATION
        return self.converse(sasl.exchange(self, mechanism.upper(), initial))

    def do_stls(self):
        """RFC 2595: +OK, then the handshake (START_TLS); the session
        starts over in the AUTHORIZATION state (a USER before it is
        forgotten)."""
        if self.settings.tls_mode != TLS_STLS:
            return self.err(R.STLS_NOT_ENABLED)
        if self.tls_active:
            return self.err(R.TLS_IN_PROGRESS)
        self.state, self.user = AUTHORIZATION, None
        self.starting_tls = True
        return [R.ok(R.STLS_OK), START_TLS]

    def tls_started(self) -> None:
        """The transport's word: the handshake is done."""
        self.tls_active = True
        self.reader = LineReader()

    def login(self, account):
        self.user = account.name
        try:
            self.maildrop = self.open_maildrop(account)
        except Exception as exc:
            # The process may already be the user, half way: it serves no one else.
            self.state = DONE
            if isinstance(exc, _maildrop_error()):
                return self.err("{text}", text=exc.args[0])
            self.log.error("login of %s failed: %s" % (self.user, _trace()))
            return self.err(R.LOGIN_FAILED)
        from popper.maildrop.scan import SEEN, UW_DATA
        messages = self.maildrop.messages
        self.seen_at_login = bytearray(1 if flags & SEEN else 0 for flags in messages.flags)
        self.first = 1 if len(messages) and messages.flags[0] & UW_DATA else 0
        self.total_octets = sum(messages.octets) - sum(messages.octets[:self.first])
        self.reset_marks()
        self.state = TRANSACTION
        if self.settings.log_login:
            self.log.notice(log_login_line(self.settings.log_login, self.user, self.client.host,
                                           self.client.ip))
        count = len(messages) - self.first
        return R.ok(R.LOGGED_IN, user=self.user, count=count, s="" if count == 1 else "s",
                    hidden=self.first, octets=self.total_octets)

    # --- transaction ------------------------------------------------------------------

    def reset_marks(self) -> None:
        count = len(self.maildrop.messages)
        self.deleted = bytearray(count)
        self.retrieved = bytearray(count)
        self.sent = []
        self.seen = bytearray(self.seen_at_login)
        self.deleted_count = self.deleted_octets = 0

    def live(self):
        """The indexes of the visible messages not marked deleted."""
        deleted = self.deleted
        return (i for i in range(self.first, len(deleted)) if not deleted[i])

    def live_totals(self):
        return (len(self.deleted) - self.first - self.deleted_count,
                self.total_octets - self.deleted_octets)

    def message(self, arg: str, deleted_template: str = R.MESSAGE_DELETED,
                missing_template: str = R.NO_SUCH_MESSAGE):
        """(index, None) for a message number argument, or (None, -ERR reply).
        The number in a reply is the one Qpopper's atoi() read (007 is 7)."""
        count = len(self.maildrop.messages) - self.first
        if not is_number(arg):
            return None, self.err(R.NOT_A_NUMBER, count=count)
        n = int(arg)
        if not 1 <= n <= count:
            return None, self.err(missing_template, number=n)
        if deleted_template and self.deleted[n - 1 + self.first]:
            return None, self.err(deleted_template, number=n)
        return n - 1 + self.first, None

    def do_stat(self):
        count, octets = self.live_totals()
        return R.ok(R.STAT, count=count, octets=octets)

    def do_list(self, arg: str = None, extra: str = None):
        from popper.extensions import mangle_request as mangle     # the word; not the mangler
        octets = self.maildrop.messages.octets
        if arg is None:
            count, total = self.live_totals()
            return _listing(R.ok(R.LIST_ALL, count=count, octets=total), self.live(), octets,
                            b"%d %d\r\n", self.first)
        if mangle.asks_for_mangle(arg):         # LIST x-mangle: all, mangled
            request = mangle.parse(arg)
            if request is None:
                return self.err(R.MANGLE_SYNTAX)
            count, total = self.live_totals()
            return _listing(R.ok(R.LIST_ALL, count=count, octets=total), self.live(),
                            _MangledOctets(self, request), b"%d %d\r\n", self.first)
        i, error = self.message(arg)
        if error:
            return error
        if extra is not None:
            # pop_list.c: a second word must be X-MANGLE's; it is printed lower-cased.
            if not mangle.asks_for_mangle(extra):
                return self.err(R.UNKNOWN_LIST_ARG, arg=_lower(extra))
            request = mangle.parse(extra)
            if request is None:
                return self.err(R.MANGLE_SYNTAX_LIST)
            return R.ok(R.LIST_ONE, number=i + 1 - self.first,
                        octets=_MangledOctets(self, request)[i])
        return R.ok(R.LIST_ONE, number=i + 1 - self.first, octets=octets[i])

    def do_retr(self, arg: str, extra: str = None):
        i, error = self.message(arg)
        if error:
            return error
        request = self.mangle_request(extra)
        return request if isinstance(request, bytes) else self.send_message(i, None, request)

    def do_top(self, arg: str, lines: str, extra: str = None):
        i, error = self.message(arg)
        if error:
            return error
        if not is_number(lines):
            return self.err(R.BAD_LINE_COUNT, arg=lines)
        request = self.mangle_request(extra)
        return request if isinstance(request, bytes) else self.send_message(
            i, int(lines), request)

    def mangle_request(self, word):
        """RETR's and TOP's X-MANGLE: the mangle.Request its word asks for
        (pop_send.c takes a word whose lower-cased start is "mangle" or
        "x-mangle"; any other is ignored), -no-mime's without one, None
        for none; the -ERR bytes for a bad TEXT=."""
        if word is None and not self.no_mime:
            return None             # a plain RETR, the common case: no import, no call
        from popper.extensions import mangle_request as mangle     # the word; not the mangler
        if not mangle.asks_for_mangle(word):
            return mangle.PLAIN if self.no_mime else None
        return mangle.parse(word) or self.err(R.MANGLE_SYNTAX)

    def confirm_sent(self) -> None:
        """The client sent another command: it has the messages sent whole
        before it (auto-delete and Status: R count only those)."""
        for i in self.sent:
            self.seen[i] = self.retrieved[i] = 1
        self.sent = []

    def send_message(self, i: int, top_lines, request=None):
        """RETR (top_lines None) or TOP of message i, mangled if request
        (a mangle.Request: "+OK Message follows", no octet count)."""
        msg = self.maildrop.messages[i]
        if request is not None:
            # Mangled whole before the +OK (mangle.mangled holds its output
            # anyway): a message the mangler cannot take gets a -ERR, and the
            # session goes on, instead of a reply cut short.
            try:
                chunks = list(self.maildrop.message_chunks(msg, top_lines,
                                                           _stage(request, top_lines)))
            except Exception:
                self.log.error("internal error in %s: %s" % ("X-MANGLE", _trace()))
                yield self.err(R.INTERNAL_ERROR)
                return
            yield R.ok(R.TOP)
            yield from chunks
        else:
            status = R.retr_ok(msg.octets) if top_lines is None else R.ok(R.TOP)
            yield from self.maildrop.message_chunks(msg, top_lines, prefix=status)
        if top_lines is None:
            yield AfterSend(lambda: self.sent.append(i))

    def do_dele(self, arg: str):
        i, error = self.message(arg, deleted_template=None)
        if error:
            return error
        if not self.deleted[i]:
            self.deleted[i] = 1
            self.deleted_count += 1
            self.deleted_octets += self.maildrop.messages.octets[i]
        return R.ok(R.DELE, number=i + 1 - self.first)

    def do_noop(self):
        return R.ok(R.NOOP)

    def do_rset(self):
        self.reset_marks()
        return R.ok(R.RSET, count=len(self.deleted) - self.first, octets=self.total_octets)

    def do_last(self):
        last = 0
        for i in range(len(self.seen) - 1, self.first - 1, -1):
            if self.seen[i] and not self.deleted[i]:
                last = i + 1 - self.first
                break
        return R.ok(R.LAST, number=last)

    def do_uidl(self, arg: str = None):
        uids = self.maildrop.messages.uid
        if arg is None:
            return _listing(R.ok(R.UIDL_ALL), self.live(), uids, b"%d %s\r\n", self.first)
        if is_number(arg) and int(arg) == 0:        # pop_uidl.c: atoi() gave no number
            return self.err(R.NOT_A_NUMBER, count=len(self.deleted) - self.first)
        i, error = self.message(arg, deleted_template=R.UIDL_DELETED,
                                missing_template=R.UIDL_OUT_OF_RANGE)
        return error or R.ok(R.UIDL_ONE, number=i + 1 - self.first, uid=uids[i].decode("ascii"))

    def capabilities(self) -> list:
        s = self.settings
        lines = ["TOP"]
        from popper.auth import sasl
        mechanisms = sasl.available(self) if self.state != TRANSACTION else []
        if mechanisms:                  # only those that can complete: clients pick blindly
            lines.append("SASL " + " ".join(mechanisms))
        if not self.clear_text_refusal():
            lines.append("USER")
        if s.announce_login_delay is not None and s.announce_login_delay >= 0:
            lines.append("LOGIN-DELAY %d" % s.announce_login_delay)
        expire = 0 if s.auto_delete else s.announce_expire
        if expire is not None:
            lines.append("EXPIRE NEVER" if expire < 0 else "EXPIRE %d" % expire)
        lines += ["UIDL", "RESP-CODES", "AUTH-RESP-CODE", "X-MANGLE"]
        lines += extensions.capabilities(self)
        lines.append("PIPELINING")
        if (s.tls_mode == TLS_STLS and not self.tls_active
                and self.state in (AUTHORIZATION, AUTHORIZATION_PASS)):
            lines.append("STLS")
        if not s.shy or self.state == TRANSACTION:
            lines.append("IMPLEMENTATION popper-version-%s" % __version__)
        return lines

    def do_capa(self):
        return _multiline(R.ok(R.CAPA), [line.encode() for line in self.capabilities()])

    def do_quit(self):
        reply = R.ok(R.SIGN_OFF, host=self.hostname)
        if self.state == TRANSACTION:
            try:
                self.update()
            except _maildrop_error() as exc:
                reply = self.err("{text}", text=exc.args[0])
        self.state = DONE
        # The update is made (or refused) before the reply; what close() does
        # (free the temp drop's blocks, save the cache) follows the hang-up.
        return [reply, HANG_UP, AfterSend(self.close)]

    # --- the end -------------------------------------------------------------------

    def update(self, abnormal: bool = False) -> None:
        """Apply the session to the maildrop (QUIT, or an abnormal end)."""
        octets = self.maildrop.messages.octets
        deleted = bytearray(self.deleted)
        if self.settings.auto_delete:
            deleted = bytearray(d | r for d, r in zip(deleted, self.retrieved))
        if self.settings.statistics:
            count = sum(deleted)
            gone = sum(octets[i] for i in range(len(deleted)) if deleted[i])
            self.log.notice("Stats: %s %d %d %d %d %s %s"
                            % (self.user, count, gone, len(deleted) - self.first - count,
                               self.total_octets - gone, self.client.host, self.client.ip))
        if abnormal and not self.settings.update_on_abort:
            self.maildrop.restore()
        else:
            self.maildrop.update(deleted, self.seen)

    def end(self, reason: str, seconds: int = None, during: str = "nw read") -> list:
        """The connection ended without QUIT: 'eof', 'hangup' or 'timeout'
        (after `seconds`, -T unless given, waiting `during` "nw read", "nw
        write" or "login").  Returns what Qpopper's pop_exit() and sign-off
        send (the transport sends it if the client may still read it): the
        -ERR naming the server, the update's -ERRs, the sign-off.  Every
        -ERR is logged, sent or not."""
        if self.state == DONE:
            return []
        if reason == "timeout":
            self.log.notice("(v%s) Timeout (%d secs) during %s from %s at %s (%s)"
                            % (__version__, self.settings.timeout if seconds is None else seconds,
                               during, self.user or "", self.client.host, self.client.ip))
            out = [self.err(R.TIMEOUT, host=self.hostname)]
        elif reason == "hangup":
            out = [self.err(R.HANGUP, host=self.hostname)]
        else:
            out = [self.err(R.EOF_OR_IO)]
        if self.state == TRANSACTION:
            try:
                self.update(abnormal=True)
            except Exception as exc:
                if isinstance(exc, _maildrop_error()):
                    out.append(self.err("{text}", text=exc.args[0]))
                else:
                    self.log.error("update of %s failed: %s" % (self.user, _trace()))
                failed = (R.ABORT_UPDATE_FAILED if self.settings.update_on_abort
                          else R.ABORT_RESTORE_FAILED)
                out.append(self.err(failed, user=self.user))
        out.append(R.ok(R.SIGN_OFF, host=self.hostname))
        self.close()
        return out

    def close(self) -> None:
        self.state = DONE
        if self.continuation is not None:     # its clean-up (XTND XMIT's file) runs now
            self.continuation.close()
            self.continuation = None
        if self.maildrop is not None:
            self.maildrop.close()
            self.maildrop = None


class LoginSession(Session):
    """The login process's session (privsep.py): a yes from the root part ends it."""

    def login(self, account):
        self.user = account.name
        self.state = HANDED_OFF
        return []

    def close(self):
        if self.state != HANDED_OFF:        # else the session goes on, in the root part
            super().close()
