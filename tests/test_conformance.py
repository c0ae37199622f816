"""Golden transcripts: every command of RFC 1939 and RFC 2449 (and LAST,
STLS, AUTH) in every state, with every shape of argument, answered with
the exact bytes Qpopper 4.0.x sends -- or, where popper deliberately
differs, the bytes docs/deviations.md gives.

Each case's id names the command, the state, the argument shape and where
the reply comes from: a Qpopper 4.0.x source file and function
(pop_uidl.c:pop_uidl, ...), a section of qpopper-behaviour.md (spec 3.4),
or deviations.md.  "[infer]" marks a Qpopper behaviour read off its state
table rather than a line of its source.

The session runs in-process (sans-I/O) on a real maildrop in a temporary
spool, one fresh session per case; the transport's part (what a SIGHUP
sends) runs over a socketpair in this process.
"""

import os
import signal
import socket
import threading
import time

import pytest

from conftest import RecordingLog

from popper import __version__
from popper.maildrop import MaildropError
from popper.protocol.session import FLUSH, HANG_UP, AfterSend, Pause
from popper.settings import Settings
from popper.transport import connection

pytestmark = pytest.mark.twin

# Three messages with their own X-UIDL: sizes and UIDs are fixed.  Sizes are
# the octets RETR sends (CRLF line ends, before dot-stuffing; deviations.md).
MAIL = (b"From a@example.com Mon Jan  1 00:00:00 2001\n"
        b"From: a@example.com\nSubject: one\nX-UIDL: first-message-uid-01\n\n"
        b"body one\n.dot line\n\n"
        b"From b@example.com Mon Jan  1 00:00:01 2001\n"
        b"From: b@example.com\nSubject: two\nX-UIDL: second-message-uid-2\n\n"
        b"body two\nline 2\nline 3\n\n"
        b"From c@example.com Mon Jan  1 00:00:02 2001\n"
        b"From: c@example.com\nSubject: three\nX-UIDL: third-message-uid-03\n\n"
        b"body three\n")

SIGN_OFF = b"+OK Pop server at mail.example signing off.\r\n"
MSG1 = (b"+OK 88 octets\r\n"
        b"From: a@example.com\r\nSubject: one\r\nX-UIDL: first-message-uid-01\r\n\r\n"
        b"body one\r\n..dot line\r\n.\r\n")
MSG2_HEADER = (b"+OK Message follows\r\n"
               b"From: b@example.com\r\nSubject: two\r\nX-UIDL: second-message-uid-2\r\n\r\n")
MSG2_WHOLE = MSG2_HEADER + b"body two\r\nline 2\r\nline 3\r\n.\r\n"
LIST_ALL = b"+OK 3 visible messages (262 octets)\r\n1 88\r\n2 93\r\n3 81\r\n.\r\n"
LIST_2_DELETED = b"+OK 2 visible messages (169 octets)\r\n1 88\r\n3 81\r\n.\r\n"
UIDL_ALL = (b"+OK uidl command accepted.\r\n1 first-message-uid-01\r\n2 second-message-uid-2\r\n"
            b"3 third-message-uid-03\r\n.\r\n")
UIDL_2_DELETED = (b"+OK uidl command accepted.\r\n1 first-message-uid-01\r\n"
                  b"3 third-message-uid-03\r\n.\r\n")
IMPLEMENTATION = b"IMPLEMENTATION popper-version-" + __version__.encode() + b"\r\n"
# After the login there is no SASL line: AUTH is over.
CAPA_TRANS = (b"+OK Capability list follows\r\nTOP\r\nUSER\r\nUIDL\r\nRESP-CODES\r\n"
              b"AUTH-RESP-CODE\r\nX-MANGLE\r\nX-MACRO\r\nPIPELINING\r\n" + IMPLEMENTATION
              + b".\r\n")
CAPA = CAPA_TRANS.replace(b"TOP\r\n", b"TOP\r\nSASL PLAIN LOGIN\r\n")
# X-MANGLE (spec x-mangle.md): message 1 mangled with the defaults.
MANGLE_HEADERS = (b"+OK Message follows\r\n"
                  b"From: a@example.com\r\nSubject: one\r\nX-UIDL: first-message-uid-01\r\n")
MANGLE_TYPE = b'Mime-version: 1.0\r\nContent-Type: text/plain;charset="us-ascii"\r\n\r\n'
MANGLED1 = MANGLE_HEADERS + MANGLE_TYPE + b"body one\r\n..dot line\r\n.\r\n"
MANGLED1_OCTETS = len(MANGLED1) - len(b"+OK Message follows\r\n.\r\n") - 1     # one "." stuffed
XLST = b"+OK xlst command accepted; headers coming.\r\n"


def err(text: str) -> bytes:
    return b"-ERR " + text.encode() + b"\r\n"


def unknown(command: str) -> bytes:
    return err('Unknown command: "%s".' % command)


def too_few(command: str) -> bytes:
    return err("Too few arguments for the %s command." % command)


def too_many(command: str) -> bytes:
    return err("Too many arguments for the %s command." % command)


# How each state is reached from the greeting.
LOGIN = b"USER alice\r\nPASS secret\r\n"
STATES = {
    "auth1": b"",                                  # AUTHORIZATION, before USER
    "auth2": b"USER alice\r\n",                    # AUTHORIZATION, after USER
    "trans": LOGIN,                                # TRANSACTION
    "deleted": LOGIN + b"DELE 2\r\n",              # TRANSACTION, message 2 marked deleted
    "read": LOGIN + b"RETR 1\r\n",                 # TRANSACTION, message 1 retrieved
    "read-reset": LOGIN + b"RETR 1\r\nRSET\r\n",   # ... and RSET after it
    "topped": LOGIN + b"TOP 1 1\r\n",              # TRANSACTION, message 1's top sent
    "update": LOGIN + b"QUIT\r\n",                 # UPDATE done: the session is over
    "macro": LOGIN + b"MDEF S(subject)\r\n",      # TRANSACTION, the macro s is subject
}


def case(state, line, reply, then, source):
    """One golden transcript: in `state`, the client sends `line`, popper
    answers exactly `reply` and is then in state `then`."""
    shape = line.split(b" ", 1)[0].decode("latin-1").lower() or "empty"
    return pytest.param(state, line, reply, then,
                        id="%s-%s-%s[%s]" % (shape, state, _shape(line), source))


def _shape(line: bytes) -> str:
    """The arguments, for a case id: a long word as its first byte * length."""
    words = [w.decode("latin-1") for w in line.split()[1:]]
    return "-".join(w if len(w) <= 20 else "%s*%d" % (w[0], len(w)) for w in words) or "bare"


CASES = [
    # --- AUTHORIZATION, before USER (auth1) ----------------------------------------------
    case("auth1", b"USER alice", b"+OK Password required for alice.\r\n", "auth2",
         "pop_user.c:pop_user, spec 3.4"),
    case("auth1", b"user alice", b"+OK Password required for alice.\r\n", "auth2",
         "pop_parse: the command word is lower-cased, spec 3.2"),
    case("auth1", b"USER", too_few("user"), "auth1", "pop_get_command.c: user 1-1, spec 3.2"),
    case("auth1", b"USER a b", too_many("user"), "auth1", "pop_get_command.c: user 1-1"),
    case("auth1", b"PASS secret", err("[AUTH] USER first, then PASS."), "auth1",
         "deviations.md: PASS before USER"),
    case("auth1", b"APOP alice 0123456789abcdef0123456789abcdef",
         err("[AUTH] APOP is not available on this server"), "auth1",
         "deviations.md: APOP not built"),
    case("auth1", b"APOP alice", too_few("apop"), "auth1", "pop_get_command.c: apop 2-2"),
    case("auth1", b"AUTH", b"+OK Supported SASL mechanisms:\r\nPLAIN\r\nLOGIN\r\n.\r\n", "auth1",
         "pop_auth.c:pop_auth's list; deviations.md: SASL"),
    case("auth1", b"AUTH CRAM-MD5", err("Unknown authentication mechanism: CRAM-MD5"), "auth1",
         "pop_auth.c:pop_auth"),
    case("auth1", b"AUTH " + b"M" * 150, err("Unknown authentication mechanism: " + "M" * 100),
         "auth1", "pop_auth.c:pop_auth, %.100s"),
    case("auth1", b"STLS", err("Command not enabled"), "auth1",
         "pop_extend.c:pop_stls, TLS not built"),
    case("auth1", b"STLS x", too_many("stls"), "auth1", "pop_get_command.c: stls 0-0 [infer]"),
    case("auth1", b"CAPA", CAPA, "auth1", "pop_extend.c:pop_capa, spec 3.5, deviations.md"),
    case("auth1", b"CAPA x", too_many("capa"), "auth1", "pop_get_command.c: capa 0-0"),
    case("auth1", b"QUIT", SIGN_OFF, "done", "popper.c:qpopper sign-off, spec 3.4"),
    case("auth1", b"QUIT x", too_many("quit"), "auth1", "pop_get_command.c: quit 0-0"),
    case("auth1", b"", unknown(""), "auth1", "deviations.md: an empty line"),
    case("auth1", b"XYZZY 1", unknown("xyzzy"), "auth1", "pop_get_command.c"),
    case("auth1", b"XTND XLST", unknown("xtnd"), "auth1", "pop_get_command.c: no such state"),
    case("auth1", b"EUIDL", unknown("euidl"), "auth1", "pop_get_command.c: no such state"),
    case("auth1", b"MDEF a(b)", unknown("mdef"), "auth1", "pop_get_command.c: no such state"),
    case("auth1", b"XYZZY 1 2 3 4", unknown("xyzzy"), "auth1", "pop_parse: 5 words are parsed"),
    case("auth1", b"XYZZY 1 2 3 4 5", err("Too many arguments supplied."), "auth1",
         "pop_parse: MAXPARMCOUNT 5 (popper.h), spec 3.2 [infer]"),
    ] + [
    case("auth1", line, unknown(name), "auth1", "pop_get_command.c: not in this state, spec 3.2")
    for name, line in (("stat", b"STAT"), ("list", b"LIST"), ("retr", b"RETR 1"),
                       ("dele", b"DELE 1"), ("noop", b"NOOP"), ("rset", b"RSET"),
                       ("top", b"TOP 1 1"), ("uidl", b"UIDL"), ("last", b"LAST"))
    ] + [
    # --- AUTHORIZATION, after USER (auth2) -----------------------------------------------
    case("auth2", b"PASS secret",
         b"+OK alice has 3 visible messages (0 hidden) in 262 octets.\r\n", "trans",
         "pop_pass.c:pop_pass, spec 3.4"),
    case("auth2", b"PASS wrong", err('[AUTH] Password supplied for "alice" is incorrect.'),
         "auth1", "pop_pass.c:pop_pass, spec 9.1"),
    case("auth2", b"PASS", too_few("pass"), "auth2", "pop_get_command.c: pass 1-99 [infer]"),
    case("auth2", b"PASS a b c d e f",
         err('[AUTH] Password supplied for "alice" is incorrect.'), "auth1",
         "spec 3.2: the password is the rest of the line, spaces and all"),
    case("auth2", b"QUIT", SIGN_OFF, "done", "popper.c:qpopper sign-off"),
    case("auth2", b"STAT", unknown("stat"), "auth2", "pop_get_command.c: not in this state"),
    # --- TRANSACTION ----------------------------------------------------------------------
    case("trans", b"STAT", b"+OK 3 262\r\n", "trans", "pop_stat.c:pop_stat, spec 3.4"),
    case("trans", b"StAt", b"+OK 3 262\r\n", "trans", "pop_parse: lower-cased, spec 3.2"),
    case("trans", b"STAT x", too_many("stat"), "trans", "pop_get_command.c: stat 0-0"),
    case("trans", b"LIST", LIST_ALL, "trans", "pop_list.c:pop_list"),
    case("trans", b"LIST 2", b"+OK 2 93\r\n", "trans", "pop_list.c:pop_list"),
    case("trans", b"LIST\t2", b"+OK 2 93\r\n", "trans", "pop_parse: words split at blanks"),
    case("trans", b"LIST 002", b"+OK 2 93\r\n", "trans", "pop_list.c:pop_list, atoi"),
    case("trans", b"LIST 4", err("Message 4 does not exist."), "trans", "pop_list.c:pop_list"),
    case("trans", b"LIST 0", err("Message 0 does not exist."), "trans", "pop_list.c:pop_list"),
    case("trans", b"LIST 04", err("Message 4 does not exist."), "trans",
         "pop_list.c:pop_list, %d of atoi"),
    case("trans", b"LIST abc", err("Parameter must be a number between 1 and 3"), "trans",
         "deviations.md: not a number"),
    case("trans", b"LIST 1 x", err("Unknown LIST argument: x"), "trans", "pop_list.c:pop_list"),
    case("trans", b"LIST 1 XYZ", err("Unknown LIST argument: xyz"), "trans",
         "pop_list.c:pop_list, pop_lower"),
    case("trans", b"LIST 1 " + b"y" * 200, err("Unknown LIST argument: " + "y" * 128), "trans",
         "pop_list.c:pop_list, %.128s"),
    case("trans", b"LIST 4 x", err("Message 4 does not exist."), "trans",
         "pop_list.c:pop_list, the number first"),
    case("trans", b"LIST 1 x-mangle", b"+OK 1 %d\r\n" % MANGLED1_OCTETS, "trans",
         "deviations.md: X-MANGLE sizes"),
    case("trans", b"LIST 1 x-mangle(text=xml)", err("Syntax error in x-mangle"), "trans",
         "pop_list.c:pop_list"),
    case("trans", b"LIST mangle(text=x)", err("Syntax error in Mangle"), "trans",
         "pop_list.c:pop_list"),
    case("trans", b"LIST mangle", b"+OK 3 visible messages (262 octets)\r\n1 %d\r\n2 157\r\n"
         b"3 145\r\n.\r\n" % MANGLED1_OCTETS, "trans", "deviations.md: X-MANGLE sizes"),
    case("trans", b"LIST 1 x y", too_many("list"), "trans", "pop_get_command.c: list 0-2"),
    case("trans", b"LIST 1 x y z w", err("Too many arguments supplied."), "trans",
         "pop_parse: MAXPARMCOUNT 5 [infer]"),
    case("trans", b"RETR 1", MSG1, "trans", "pop_send.c:pop_send, spec 5.7"),
    case("trans", b"RETR 1 x", MSG1, "trans", "pop_send.c:pop_send, a non-mangle word ignored"),
    case("trans", b"RETR 4", err("Message 4 does not exist."), "trans", "pop_send.c:pop_send"),
    case("trans", b"RETR 0", err("Message 0 does not exist."), "trans", "pop_send.c:pop_send"),
    case("trans", b"RETR x", err("Parameter must be a number between 1 and 3"), "trans",
         "deviations.md: not a number"),
    case("trans", b"RETR", too_few("retr"), "trans", "pop_get_command.c: retr 1-2"),
    case("trans", b"RETR 1 x y", too_many("retr"), "trans", "pop_get_command.c: retr 1-2"),
    case("trans", b"RETR 1 MANGLE(TEXT=PLAIN)", MANGLED1, "trans", "mangle.c, x-mangle.md 3"),
    case("trans", b"RETR 1 x-mangle(text=plainx)", err("Syntax error in Mangle"), "trans",
         "mangle.c:FillMangleInfo"),
    case("trans", b"RETR 4 mangle", err("Message 4 does not exist."), "trans",
         "pop_send.c:pop_send, the number first"),
    case("trans", b"TOP 2 1", MSG2_HEADER + b"body two\r\n.\r\n", "trans",
         "pop_send.c:pop_send, spec 5.7"),
    case("trans", b"TOP 2 0", MSG2_HEADER + b".\r\n", "trans", "pop_send.c:pop_send"),
    case("trans", b"TOP 2 99", MSG2_WHOLE, "trans", "pop_send.c:pop_send, more than the body"),
    case("trans", b"TOP 2 0 x", MSG2_HEADER + b".\r\n", "trans",
         "pop_send.c:pop_send, a non-mangle word ignored"),
    case("trans", b"TOP 2 0 x-mangle", MSG2_HEADER[:-2] + b".\r\n", "trans",
         "mangle.c:headerHandler, no Mime lines for TOP n 0"),
    case("trans", b"TOP 1 1 x-mangle(text=h)", MANGLE_HEADERS + MANGLE_TYPE.replace(
         b"plain", b"html") + b"<html><pre>body one\r\n.\r\n", "trans",
         "mangle.c: TOP counts mangled lines"),
    case("trans", b"TOP 4 0", err("Message 4 does not exist."), "trans", "pop_send.c:pop_send"),
    case("trans", b"TOP 2 -1", err("Number of lines must be a number, 0 or more: -1"), "trans",
         "deviations.md: TOP n k"),
    case("trans", b"TOP 2", too_few("top"), "trans", "pop_get_command.c: top 2-3"),
    case("trans", b"TOP 2 0 x y", too_many("top"), "trans", "pop_get_command.c: top 2-3"),
    case("trans", b"DELE 2", b"+OK Message 2 has been deleted.\r\n", "trans",
         "pop_dele.c:pop_dele"),
    case("trans", b"DELE 4", err("Message 4 does not exist."), "trans", "pop_dele.c:pop_dele"),
    case("trans", b"DELE 0", err("Message 0 does not exist."), "trans", "pop_dele.c:pop_dele"),
    case("trans", b"DELE", too_few("dele"), "trans", "pop_get_command.c: dele 1-1"),
    case("trans", b"DELE 2 x", too_many("dele"), "trans", "pop_get_command.c: dele 1-1"),
    case("trans", b"NOOP", b"+OK no big woop\r\n", "trans", "popper.c:pop_noop"),
    case("trans", b"NOOP x", too_many("noop"), "trans", "pop_get_command.c: noop 0-0"),
    case("trans", b"RSET", b"+OK Maildrop has 3 messages (262 octets)\r\n", "trans",
         "pop_rset.c:pop_rset, spec 3.4 [infer]"),
    case("trans", b"RSET x", too_many("rset"), "trans", "pop_get_command.c: rset 0-0"),
    case("trans", b"LAST", b"+OK 0 is the last read message.\r\n", "trans",
         "pop_last.c:pop_last"),
    case("trans", b"LAST x", too_many("last"), "trans", "pop_get_command.c: last 0-0"),
    case("trans", b"UIDL", UIDL_ALL, "trans", "pop_uidl.c:pop_uidl"),
    case("trans", b"UIDL 2", b"+OK 2 second-message-uid-2\r\n", "trans", "pop_uidl.c:pop_uidl"),
    case("trans", b"UIDL 4", err("Message 4 out of range."), "trans", "pop_uidl.c:pop_uidl"),
    case("trans", b"UIDL 0", err("Parameter must be a number between 1 and 3"), "trans",
         "pop_uidl.c:pop_uidl, atoi 0"),
    case("trans", b"UIDL x", err("Parameter must be a number between 1 and 3"), "trans",
         "pop_uidl.c:pop_uidl, atoi 0"),
    case("trans", b"UIDL 1 2", too_many("uidl"), "trans", "pop_get_command.c: uidl 0-1"),
    case("trans", b"CAPA", CAPA_TRANS, "trans", "pop_extend.c:pop_capa, spec 3.5, deviations.md"),
    case("trans", b"USER bob", unknown("user"), "trans", "pop_get_command.c: not in this state"),
    case("trans", b"PASS secret", unknown("pass"), "trans", "pop_get_command.c"),
    case("trans", b"APOP a b", unknown("apop"), "trans", "pop_get_command.c"),
    case("trans", b"AUTH", unknown("auth"), "trans", "pop_get_command.c"),
    case("trans", b"STLS", unknown("stls"), "trans",
         "pop_get_command.c: stls before login only (RFC 2595 4) [infer]"),
    case("trans", b"", unknown(""), "trans", "deviations.md: an empty line"),
    # --- Qpopper's extensions (popper/extensions/) ---------------------------------------
    case("trans", b"XTND XLST subject", XLST + b"1 Subject: one\r\n2 Subject: two\r\n"
         b"3 Subject: three\r\n.\r\n", "trans", "xtnd_xlst.c:pop_xlst"),
    case("trans", b"XTND XLIST subject", XLST + b"1 Subject: one\r\n2 Subject: two\r\n"
         b"3 Subject: three\r\n.\r\n", "trans", "popper-sco-manpage: XTND XLIST"),
    case("trans", b"xtnd Xlst SUBJ 2", XLST + b"2 Subject: two\r\n.\r\n", "trans",
         "xtnd_xlst.c:pop_xlst, strncasecmp prefix"),
    case("trans", b"XTND XLST x-uidl 3", XLST + b"3 X-UIDL: third-message-uid-03\r\n.\r\n",
         "trans", "xtnd_xlst.c:pop_xlst, the header as in the file"),
    case("trans", b"XTND XLST x-none", XLST + b".\r\n", "trans",
         "xtnd_xlst.c:pop_xlst, no such line"),
    case("trans", b"XTND XLST subject 4", err("Message 4 does not exist."), "trans",
         "xtnd_xlst.c:pop_xlst"),
    case("trans", b"XTND XLST subject 0", err("Message 0 does not exist."), "trans",
         "xtnd_xlst.c:pop_xlst"),
    case("trans", b"XTND XLST subject x", err("Parameter must be a number between 1 and 3"),
         "trans", "deviations.md: not a number"),
    case("trans", b"XTND XLST", too_few("xtnd xlst"), "trans",
         "pop_get_subcommand.c: xlst 1-2"),
    case("trans", b"XTND XLST a 1 2", too_many("xtnd xlst"), "trans",
         "pop_get_subcommand.c: xlst 1-2"),
    case("trans", b"XTND FOO", unknown("xtnd foo"), "trans", "pop_get_subcommand.c"),
    case("trans", b"XTND " + b"F" * 150, unknown("xtnd " + "f" * 100), "trans",
         "pop_get_subcommand.c, %.100s"),
    case("trans", b"XTND", too_few("xtnd"), "trans", "pop_get_command.c: xtnd 1-99"),
    case("trans", b"EUIDL", b"+OK uidl command accepted.\r\n"
         b"1 first-message-uid-01 88 a@example.com\r\n2 second-message-uid-2 93 b@example.com"
         b"\r\n3 third-message-uid-03 81 c@example.com\r\n.\r\n", "trans",
         "pop_uidl.c:pop_euidl"),
    case("trans", b"EUIDL 2", b"+OK 2 second-message-uid-2 93 b@example.com\r\n", "trans",
         "pop_uidl.c:pop_euidl"),
    case("trans", b"EUIDL 4", err("Message out of range.  3 visible messages in mail drop."),
         "trans", "pop_uidl.c:pop_euidl"),
    case("trans", b"EUIDL 0", err("Parameter must be a number (range 1 to 3)"), "trans",
         "pop_uidl.c:pop_euidl, atoi 0"),
    case("trans", b"EUIDL x", err("Parameter must be a number (range 1 to 3)"), "trans",
         "pop_uidl.c:pop_euidl, atoi 0"),
    case("trans", b"EUIDL 1 2", too_many("euidl"), "trans", "pop_get_command.c: euidl 0-1"),
    case("trans", b"MDEF a(b)", b'+OK Macro "a" accepted\r\n', "trans",
         "pop_extend.c:pop_mdef"),
    case("trans", b"MDEF Plain(X-MANGLE(TEXT=PLAIN))", b'+OK Macro "plain" accepted\r\n',
         "trans", "pop_extend.c:pop_mdef, pop_lower, strrchr"),
    case("trans", b"MDEF ab", err("Syntax error"), "trans", "pop_extend.c:pop_mdef"),
    case("trans", b"MDEF a(b", err("Syntax error"), "trans", "pop_extend.c:pop_mdef"),
    case("trans", b"MDEF a(" + b"b" * 98 + b")", err("MDEF name too long"), "trans",
         "pop_extend.c:pop_mdef, MAX_MDEF_NAME 100"),
    case("trans", b"MDEF", too_few("mdef"), "trans", "pop_get_command.c: mdef 1-1"),
    case("trans", b"MDEF a(b) c", too_many("mdef"), "trans", "pop_get_command.c: mdef 1-1"),
    case("macro", b"XTND XLST s 1", XLST + b"1 Subject: one\r\n.\r\n", "trans",
         "pop_parse.c: a macro's name is its value"),
    case("macro", b"MDEF s(subject)", b'+OK Macro "subject" accepted\r\n', "trans",
         "pop_extend.c:pop_mdef: the value, when nothing changes"),
    case("macro", b"MDEF s(from)", b'+OK Macro "s" accepted\r\n', "trans",
         "pop_extend.c:pop_mdef: a new value"),
    case("trans", b"QUIT", SIGN_OFF, "done", "pop_quit.c, popper.c:qpopper sign-off"),
    case("trans", b"QUIT x", too_many("quit"), "trans", "pop_get_command.c: quit 0-0"),
    # --- TRANSACTION, message 2 deleted -----------------------------------------------------
    case("deleted", b"STAT", b"+OK 2 169\r\n", "trans", "pop_stat.c:pop_stat"),
    case("deleted", b"LIST", LIST_2_DELETED, "trans", "pop_list.c:pop_list"),
    case("deleted", b"LIST 2", err("Message 2 has been deleted."), "trans",
         "pop_list.c:pop_list"),
    case("deleted", b"LIST 2 x", err("Message 2 has been deleted."), "trans",
         "pop_list.c:pop_list, the number first"),
    case("deleted", b"RETR 2", err("Message 2 has been deleted."), "trans",
         "pop_send.c:pop_send"),
    case("deleted", b"TOP 2 0", err("Message 2 has been deleted."), "trans",
         "pop_send.c:pop_send"),
    case("deleted", b"DELE 2", b"+OK Message 2 has been deleted.\r\n", "trans",
         "pop_dele.c:pop_dele, delete_msg: no error"),
    case("deleted", b"UIDL", UIDL_2_DELETED, "trans", "pop_uidl.c:pop_uidl"),
    case("deleted", b"XTND XLST subject", XLST + b"1 Subject: one\r\n3 Subject: three\r\n"
         b".\r\n", "trans", "xtnd_xlst.c:pop_xlst, del_flag"),
    case("deleted", b"XTND XLST subject 2", XLST + b".\r\n", "trans",
         "xtnd_xlst.c:pop_xlst, del_flag"),
    case("deleted", b"EUIDL", b"+OK uidl command accepted.\r\n"
         b"1 first-message-uid-01 88 a@example.com\r\n"
         b"3 third-message-uid-03 81 c@example.com\r\n.\r\n", "trans", "pop_uidl.c:pop_euidl"),
    case("deleted", b"EUIDL 2", err("Message 2 has been marked for deletion."), "trans",
         "pop_uidl.c:pop_euidl"),
    case("deleted", b"UIDL 2", err("Message 2 has been marked for deletion."), "trans",
         "pop_uidl.c:pop_uidl"),
    case("deleted", b"RSET", b"+OK Maildrop has 3 messages (262 octets)\r\n", "trans",
         "pop_rset.c:pop_rset [infer]"),
    case("deleted", b"LAST", b"+OK 0 is the last read message.\r\n", "trans",
         "pop_last.c:pop_last"),
    # --- TRANSACTION, message 1 retrieved ---------------------------------------------------
    case("read", b"LAST", b"+OK 1 is the last read message.\r\n", "trans",
         "pop_last.c:pop_last"),
    case("read-reset", b"LAST", b"+OK 0 is the last read message.\r\n", "trans",
         "pop_rset.c: the read marks of login time, spec 3.4 [infer]"),
    case("topped", b"LAST", b"+OK 0 is the last read message.\r\n", "trans",
         "pop_send.c:pop_send: only RETR sets retr_flag"),
    # --- UPDATE: after QUIT nothing more is read ------------------------------------------
    case("update", b"NOOP", b"", "done", "popper.c:qpopper leaves its loop at halt"),
]


def answer(session, data: bytes) -> bytes:
    """What the session sends for data, as the transport sends it."""
    out = []
    for item in session.feed(data):
        if isinstance(item, AfterSend):
            item.callback()
        elif item in (FLUSH, HANG_UP) or isinstance(item, Pause):
            continue
        elif isinstance(item, bytes):
            out.append(item)
        else:
            for chunk in item:
                if isinstance(chunk, AfterSend):
                    chunk.callback()
                else:
                    out.append(chunk)
    return b"".join(out)


@pytest.mark.parametrize("state,line,reply,then", CASES)
def test_golden_transcript(make_session, state, line, reply, then):
    session, log = make_session(mail=MAIL)
    setup = answer(session, STATES[state])
    assert b"-ERR" not in setup, setup
    assert answer(session, line + b"\r\n") == reply
    assert session.state == then
    # Every -ERR sent is logged at NOTICE (spec 3.3); a failed password
    # check's is followed by pop_pass.c's "Failed attempted login" line.
    if reply.startswith(b"-ERR"):
        notices = log.texts("notice")
        last = notices[-2] if notices[-1].startswith("[AUTH] Failed attempted") else notices[-1]
        assert last.endswith(reply.rstrip(b"\r\n").decode("latin-1"))


def test_every_command_is_covered(make_session):
    """RFC 1939's and RFC 2449's commands, AUTH, STLS, LAST, and whatever
    else the session's tables have: each has cases before and after login."""
    session, _ = make_session()
    commands = {"user", "pass", "apop", "quit", "stat", "list", "retr", "dele", "noop", "rset",
                "top", "uidl", "capa", "auth", "stls", "last"}
    commands.update(*(table.keys() for table in session.commands.values()))
    seen = {}
    for param in CASES:
        state, line = param.values[0], param.values[1]
        name = line.split(b" ", 1)[0].decode("latin-1").lower()
        seen.setdefault(name, set()).add(state)
    for name in commands:
        assert {"auth1", "trans"} <= seen.get(name, set()), name


# --- a session that ends without QUIT (popper.c:pop_exit) ----------------------------------

@pytest.mark.parametrize("reason,state,reply", [
    ("timeout", "trans", [b"-ERR POP timeout from mail.example\r\n", SIGN_OFF]),
    ("timeout", "auth1", [b"-ERR POP timeout from mail.example\r\n", SIGN_OFF]),
    ("hangup", "trans", [b"-ERR POP hangup from mail.example\r\n", SIGN_OFF]),
    ("hangup", "auth2", [b"-ERR POP hangup from mail.example\r\n", SIGN_OFF]),
    ("eof", "trans", [b"-ERR POP EOF or I/O Error\r\n", SIGN_OFF]),
], ids=lambda v: v if isinstance(v, str) else "")
def test_abnormal_end_names_the_server(make_session, reason, state, reply):
    """pop_exit formats the hangup and timeout texts with p->myhost, the
    server's own name (not the client's), then signs off."""
    session, log = make_session(mail=MAIL)
    answer(session, STATES[state])
    assert session.end(reason) == reply
    assert log.texts("notice")[-1].endswith(reply[0].rstrip(b"\r\n").decode())


@pytest.mark.parametrize("update_on_abort,text", [
    (True, "POP mailbox update for alice failed!"),
    (False, "POP mailbox restoration for alice failed!"),
])
def test_a_failed_update_at_an_abnormal_end_is_told(make_session, update_on_abort, text):
    """pop_exit: the update's own -ERR, then `POP mailbox update for <user>
    failed!` (restoration with update-on-abort off), then the sign-off."""
    s = Settings()
    s.update_on_abort = update_on_abort
    session, _ = make_session(s, mail=MAIL)
    answer(session, LOGIN)

    def fails(*args):
        raise MaildropError("Error updating primary drop.  Mail left in temporary maildrop "
                            "[No space left on device (28)]")
    session.maildrop.update = session.maildrop.restore = fails
    assert session.end("timeout") == [
        b"-ERR POP timeout from mail.example\r\n",
        b"-ERR Error updating primary drop.  Mail left in temporary maildrop "
        b"[No space left on device (28)]\r\n",
        err(text), SIGN_OFF]


def test_sighup_while_waiting_for_a_command_is_told(make_session):
    """popper.c: catchSIGHUP sets `hangup`; before its next read the loop
    calls pop_exit(HANGUP): `-ERR POP hangup from <server>`, then the
    sign-off.  Over a socketpair, in this process."""
    session, log = make_session(mail=MAIL)
    ours, theirs = socket.socketpair()
    got = []

    def client():
        ours.settimeout(10)
        data = b""
        while b"\r\n" not in data:
            data += ours.recv(65536)
        time.sleep(0.2)         # popper waits for a command (not still in the greeting's write)
        os.kill(os.getpid(), signal.SIGHUP)
        while True:
            chunk = ours.recv(65536)
            if not chunk:
                break
            data += chunk
        got.append(data)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGHUP, signal.SIGTERM)}
    thread = threading.Thread(target=client)
    thread.start()
    try:
        connection.run(connection.Connection(theirs.fileno(), theirs.fileno()), session, 30,
                       RecordingLog())
        theirs.shutdown(socket.SHUT_WR)
        thread.join(10)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        ours.close()
        theirs.close()
    assert got[0].split(b"\r\n", 1)[1] == b"-ERR POP hangup from mail.example\r\n" + SIGN_OFF


def test_a_busy_lock_names_the_spool_and_no_errno(make_session, spool):
    """pop_dropcopy.c: `maillock error '<text>' (<code>) on '<spool>'`;
    Max tries exceeded has no errno to tell (never `Success (0)`)."""
    s = Settings()
    s.spool_lock_wait = 0
    session, _ = make_session(s, mail=MAIL)
    (spool / "alice.lock").write_text("1@%s" % socket.gethostname())   # init holds it
    reply = answer(session, LOGIN).split(b"\r\n")[1]
    assert reply == b"-ERR [SYS/TEMP] maillock error 'Max tries exceeded' (4) on '%s'" % (
        str(spool / "alice").encode())


@pytest.mark.clients
@pytest.mark.parametrize("state", ["auth1", "auth2", "trans"])
def test_sighup_to_a_real_popper_is_told_in_every_state(mailhost, inetd, state):
    """The same over inetd, with the login process before the login: the
    root part passes the signal on to it (it speaks to the client)."""
    mailhost.deliver(MAIL)
    conv = inetd()
    host = conv.greeting.split(b" at ")[1].split(b" ")[0]
    if state == "auth2":
        assert conv.cmd("USER alice").startswith(b"+OK")
    elif state == "trans":
        assert conv.login().startswith(b"+OK")
    time.sleep(0.3)             # popper waits for the next command
    conv.process.send_signal(signal.SIGHUP)
    conv.sock.settimeout(10)
    got = b""
    while True:
        chunk = conv.sock.recv(65536)
        if not chunk:
            break
        got += chunk
    assert got == b"-ERR POP hangup from %s\r\n+OK Pop server at %s signing off.\r\n" % (
        host, host)
    assert conv.process.wait(10) == 0
