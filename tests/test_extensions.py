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
