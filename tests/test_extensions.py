"""popper/extensions: an extension's command rows in the session's state
tables, XTND's subcommands dispatched (and refused) by the session in
Qpopper's words (pop_get_subcommand.c)."""

import sys
import types

import pytest

from test_session import login, run, MAIL

from popper import extensions
from popper.protocol.session import TRANSACTION

pytestmark = pytest.mark.twin


@pytest.fixture
def echo_extension(monkeypatch):
    """An extension "echo" adding XTND ECHO (1 or 2 words) and ECHO."""
    module = types.ModuleType("popper.extensions.echo")

    def xtnd_echo(session, *words):
        return b"+OK " + " ".join(words).encode() + b"\r\n"

    def rows(session):
        echo = lambda *words: xtnd_echo(session, *words)    # noqa: E731
        return {TRANSACTION: {
            "xtnd": (extensions.Subcommands(echo=(echo, 1, 2)), 1, 99),
            "echo": (echo, 0, 3)}}

    module.rows = rows
    monkeypatch.setitem(sys.modules, "popper.extensions.echo", module)
    monkeypatch.setattr(extensions, "MODULES", extensions.MODULES + ("echo",))


def test_rows_reach_the_state_table(make_session, echo_extension):
    session, _ = make_session(mail=MAIL)
    assert run(session, b"ECHO a b\r\n") == [b'-ERR Unknown command: "echo".\r\n']
    login(session)
    assert run(session, b"ECHO a b\r\n") == [b"+OK a b\r\n"]
    assert run(session, b"XTND ECHO x\r\n") == [b"+OK x\r\n"]
    assert run(session, b"xtnd eChO x y\r\n") == [b"+OK x y\r\n"]


def test_subcommand_refusals_in_qpoppers_words(make_session, echo_extension):
    session, _ = make_session(mail=MAIL)
    login(session)
    assert run(session, b"XTND\r\n") == [b"-ERR Too few arguments for the xtnd command.\r\n"]
    assert run(session, b"XTND FOO\r\n") == [b'-ERR Unknown command: "xtnd foo".\r\n']
    assert run(session, b"XTND ECHO\r\n") == [
        b"-ERR Too few arguments for the xtnd echo command.\r\n"]
    assert run(session, b"XTND ECHO a b c\r\n") == [
        b"-ERR Too many arguments for the xtnd echo command.\r\n"]
    assert run(session, b"XTND ECHO a b c d e\r\n") == [b"-ERR Too many arguments supplied.\r\n"]
    assert run(session, b"NOOP\r\n")[0].startswith(b"+OK")     # the session goes on


def test_two_modules_share_xtnd_but_not_a_name(make_session, echo_extension, monkeypatch):
    other = types.ModuleType("popper.extensions.other")
    other.rows = lambda session: {TRANSACTION: {
        "xtnd": (extensions.Subcommands(ping=(lambda: b"+OK pong\r\n", 0, 0)), 1, 99)}}
    monkeypatch.setitem(sys.modules, "popper.extensions.other", other)
    monkeypatch.setattr(extensions, "MODULES", extensions.MODULES + ("other",))
    session, _ = make_session(mail=MAIL)
    login(session)
    assert run(session, b"XTND PING\r\nXTND ECHO z\r\n") == [b"+OK pong\r\n", b"+OK z\r\n"]
    clash = types.ModuleType("popper.extensions.clash")
    clash.rows = lambda session: {TRANSACTION: {"noop": (lambda: b"+OK\r\n", 0, 0)}}
    monkeypatch.setitem(sys.modules, "popper.extensions.clash", clash)
    monkeypatch.setattr(extensions, "MODULES", extensions.MODULES + ("clash",))
    with pytest.raises(ValueError):
        make_session(mail=MAIL)


# --- XTND XLST (xtnd_xlst.c) -----------------------------------------------------------

UW = (b"From MAILER-DAEMON Thu Nov 26 14:34:16 2026\n"
      b"From: Mail System Internal Data <MAILER-DAEMON@host>\n"
      b"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n"
      b"X-IMAP: 1164551656 0000000002\n\n"
      b"This text is part of the internal format of your mail folder.\n\n")
FOLDED = (b"From a@example.com Mon Jan  1 00:00:00 2001\n"
          b"Received: from x\n  by y\nSubject: first\n  folded once\n\tand twice\n"
          b"X-After: 1\n\nbody\n  indented body line\n\n"
          b"From b@example.com Mon Jan  1 00:00:01 2001\n"
          b".Dotted: leading dot\nSubject: second\r\nFrom: %s\n\nbody\n\n"
          b"From c@example.com Mon Jan  1 00:00:02 2001\n"
          b"Subject-Extra: not the subject\nSubject: third\n\nSubject: in the body\n")
XLST = b"+OK xlst command accepted; headers coming.\r\n"


def test_xlst_continuation_lines_and_dot_stuffing(make_session):
    session, _ = make_session(mail=FOLDED % b"b@example.com")
    login(session)
    # The whole folded header, each line its own CRLF line; the first
    # matching line only (Subject-Extra: comes before Subject: in message 3).
    assert b"".join(run(session, b"XTND XLST subject\r\n")) == (
        XLST + b"1 Subject: first\r\n  folded once\r\n\tand twice\r\n"
        b"2 Subject: second\r\n3 Subject-Extra: not the subject\r\n.\r\n")
    assert b"".join(run(session, b"XTND XLST .dot\r\n")) == (
        XLST + b"2 ..Dotted: leading dot\r\n.\r\n")
    assert b"".join(run(session, b"XTND XLST received 1\r\n")) == (
        XLST + b"1 Received: from x\r\n  by y\r\n.\r\n")
    # The body is never searched.
    assert b"".join(run(session, b"XTND XLST subject: 3\r\n")) == XLST + b"3 Subject: third\r\n.\r\n"
    assert b"".join(run(session, b"XTND XLST body\r\n")) == XLST + b".\r\n"


def test_xlst_numbers_are_visible_after_a_hidden_message(make_session):
    session, _ = make_session(mail=UW + FOLDED % b"b@example.com")
    login(session)
    assert session.first == 1
    assert b"".join(run(session, b"XTND XLST subject\r\n")) == (
        XLST + b"1 Subject: first\r\n  folded once\r\n\tand twice\r\n"
        b"2 Subject: second\r\n3 Subject-Extra: not the subject\r\n.\r\n")
    assert b"".join(run(session, b"XTND XLST subject 2\r\n")) == XLST + b"2 Subject: second\r\n.\r\n"
    assert run(session, b"XTND XLST subject 4\r\n") == [b"-ERR Message 4 does not exist.\r\n"]
    run(session, b"DELE 1\r\n")
    assert b"".join(run(session, b"XTND XLST x-after\r\n")) == XLST + b".\r\n"


# --- EUIDL (pop_uidl.c) ----------------------------------------------------------------

def test_euidl_from_value_is_bounded_and_never_a_format(make_session):
    sender = b"%s%n%x%d {0} {uid} " + b"x" * 200
    session, _ = make_session(mail=FOLDED % sender)
    login(session)
    uids = session.maildrop.messages.uid
    octets = session.maildrop.messages.octets
    one = run(session, b"EUIDL 2\r\n")
    assert one == [b"+OK 2 %s %d %s\r\n" % (uids[1], octets[1], sender[:128])]
    listing = b"".join(run(session, b"EUIDL\r\n")).split(b"\r\n")
    assert listing[0] == b"+OK uidl command accepted."
    # No From: line: an empty value after the size (pop_uidl.c's "").
    assert listing[1] == b"1 %s %d " % (uids[0], octets[0])
    assert listing[2] == b"2 %s %d %s" % (uids[1], octets[1], sender[:128])
    assert listing[3:] == [b"3 %s %d " % (uids[2], octets[2]), b".", b""]


# --- MDEF (pop_extend.c) ---------------------------------------------------------------

def test_mdef_keeps_ten_macros_and_replaces_them(make_session):
    session, _ = make_session(mail=MAIL)
    login(session)
    for k in range(10):
        assert run(session, b"MDEF m%d(v%d)\r\n" % (k, k)) == [b'+OK Macro "m%d" accepted\r\n' % k]
    assert run(session, b"MDEF m10(v)\r\n") == [
        b"-ERR Server only takes a maximum of 10 MDEFs\r\n"]
    assert run(session, b"MDEF m10(v)\r\n") == [
        b"-ERR Server only takes a maximum of 10 MDEFs\r\n"]
    assert run(session, b"MDEF M3(new)\r\n") == [b'+OK Macro "m3" accepted\r\n']
    assert session.macros["m3"] == "new" and len(session.macros) == 10
    # A name with format characters, and a value with parentheses.
    session.macros.clear()
    assert run(session, b"MDEF %s%n((x))\r\n") == [b'+OK Macro "%s%n" accepted\r\n']
    assert session.macros == {"%s%n": "(x)"}
    assert run(session, b"MDEF " + b"a" * 99 + b"()\r\n") == [b"-ERR MDEF name too long\r\n"]
    assert run(session, b"MDEF " + b"a" * 98 + b"()\r\n")[0].startswith(b'+OK Macro "aaa')


def test_a_macro_is_any_argument_but_not_the_command_or_a_password(make_session):
    session, _ = make_session(mail=MAIL)
    login(session)
    run(session, b"MDEF one(1)\r\nMDEF noop(stat)\r\n")
    assert run(session, b"LIST ONE\r\n") == run(session, b"LIST 1\r\n")
    assert run(session, b"NOOP\r\n") == [b"+OK no big woop\r\n"]
