"""Qpopper's extensions, each a module that adds command rows to the
session's state tables (design.md: rows, not `if name == ...`).

An extension module has rows(session) -> {state: {name: row}}, a row being
what Session.commands holds: (handler, fewest, most) called as
handler(*args) with the argument counts checked by the session; or
(Subcommands, fewest, most) for a command whose first argument names a
subcommand (XTND: pop_xtnd.c, pop_get_subcommand.c), each with its own row
and counts.  The session's dispatcher stays the only speaker: it checks
the counts, answers the -ERRs in Qpopper's words ('Unknown command: "xtnd
foo".'), logs, and catches what a handler raises.  A handler that reads
further lines after its reply returns session.converse(generator), the
seam SASL's AUTH uses.

A module may also have capabilities(session) -> [CAPA lines], listed
after AUTH-RESP-CODE in MODULES order, as pop_capa lists X-MANGLE and
X-MACRO there.

install() is called by every Session; an extension whose setting is off
adds no rows, so its command is unknown, as in a Qpopper built without it.
"""

# The extension modules, in the order their rows are added (a later one
# may not replace an earlier one's row: install() refuses that).
MODULES = ("xlst", "xmit", "euidl", "mdef")


class Subcommands(dict):
    """A command's subcommand table: {lower-cased name: row}."""


def _modules():
    # Imported by server.load_session() (names()), else when the first
    # session starts: they import the session's state names, and the
    # session imports this package.
    return [(name, __import__(module, fromlist=["rows"])) for name, module in zip(MODULES, names())]


def names() -> list:
    """The extension modules' full names."""
    return ["popper.extensions." + name for name in MODULES]


def install(session) -> None:
    """Add every extension's rows to session.commands."""
    for name, module in _modules():
        for state, rows in module.rows(session).items():
            table = session.commands.setdefault(state, {})
            for command, row in rows.items():
                if command in table and not _merge(table[command], row):
                    raise ValueError("extension %s: %s is already a command in %s"
                                     % (name, command, state))
                table.setdefault(command, row)


def capabilities(session) -> list:
    """The CAPA lines of the extensions."""
    lines = []
    for _, module in _modules():
        if hasattr(module, "capabilities"):
            lines += module.capabilities(session)
    return lines


def _merge(old, new) -> bool:
    """Two rows of one command with subcommands (XTND's XLST and XMIT from
    two modules) become one; True if they did."""
    if isinstance(old[0], Subcommands) and isinstance(new[0], Subcommands):
        if set(old[0]) & set(new[0]):
            return False
        old[0].update(new[0])
        return True
    return False
