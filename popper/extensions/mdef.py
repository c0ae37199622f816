"""MDEF name(value) (Qpopper's pop_extend.c, pop_mdef; CAPA's X-MACRO): a
macro for the rest of the session: an argument of a later command that is
a macro's name, in any case, is taken as its value (pop_parse.c), e.g.
"MDEF plain(x-mangle(text=plain))" then "RETR 1 plain".  The argument is
lower-cased first, name and value alike.

Qpopper 4.0.4's CVE-2003-0143 (a long name overflowing its formatter; an
11th MDEF writing past its table) cannot happen here: an argument over
MAX_NAME characters is refused with Qpopper's text before anything is
kept, at most MAX_MDEFS macros are kept, and names and values go into
replies as values, never as formats.
"""

from popper.auth.gatekeeper import ascii_lower
from popper.protocol import replies as R
from popper.protocol.session import TRANSACTION

MAX_MDEFS = 10      # popper.h: MAX_MDEF_INDEX
MAX_NAME = 100      # popper.h: MAX_MDEF_NAME, checked against the whole argument


def rows(session):
    return {TRANSACTION: {"mdef": (lambda argument: mdef(session, argument), 1, 1)}}


def capabilities(session) -> list:
    return ["X-MACRO"]


def mdef(session, argument: str):
    argument = ascii_lower(argument)
    if len(argument) > MAX_NAME:
        return session.err(R.MDEF_NAME_TOO_LONG)
    name, paren, rest = argument.partition("(")
    value, close, _ = rest.rpartition(")")
    if not paren or not close:
        return session.err(R.MDEF_SYNTAX)
    macros = session.macros
    if name in macros:
        if macros[name] == value:
            # Qpopper names the value, not the macro, when nothing changes.
            return R.ok(R.MDEF_ACCEPTED, name=value)
    elif len(macros) >= MAX_MDEFS:
        return session.err(R.MDEF_TOO_MANY, count=MAX_MDEFS)
    macros[name] = value
    return R.ok(R.MDEF_ACCEPTED, name=name)
