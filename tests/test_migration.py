"""The claims of docs/migration.md: what popper's first login does to a
spool and a temporary drop Qpopper left, and that Qpopper, going back,
reads back the UIDs popper served (qpopper-behaviour.md §5.6: in normal
mode Qpopper 4.0 takes the first X-UIDL: header whose value, with its LF,
is 13 to 32 bytes long, and computes a UID for a message that has none).

In-process sessions on a real maildrop (conftest.make_session)."""

import os

import pytest

from popper.settings import Settings
from test_session import login, run

pytestmark = pytest.mark.twin

# Two messages as Qpopper 4.0 writes them back (X-UIDL: first, Status:),
# one it never rewrote (no X-UIDL:, no Status:).
SPOOL = (b"From a@example.com Mon Dec  1 10:00:00 2026\n"
         b"X-UIDL: 8\"!!Kd)\"!~(S!!Ga-\"!\nSubject: one\nStatus: RO\n\nbody one\n\n"
         b"From b@example.com Mon Dec  1 10:01:00 2026\n"
         b"X-UIDL: $l6!!,#5\"!Z,=\"!+b)!!\nSubject: two\nStatus: U\n\nbody two\n\n"
         b"From c@example.com Mon Dec  1 10:02:00 2026\n"
         b"Subject: three\n\nbody three\n\n")
# What a Qpopper session killed after its login left in .alice.pop.
LEFTOVER = (b"From d@example.com Mon Dec  1 09:00:00 2026\n"
            b"X-UIDL: Ab3!!q)*\"!P4K!!sZ;\"!\nSubject: left one\nStatus: RO\n\nleft body\n\n")


def qpopper_uids(spool: bytes) -> list:
    """The UID Qpopper 4.0 would serve for each message of an mbox spool
    popper wrote, None where it would compute a new one."""
    uids = []
    for message in spool.split(b"\n\nFrom ")[0:]:
        header = message.split(b"\n\n", 1)[0].split(b"\n")[1:]
        found = None
        for line in header:
            if line.lower().startswith(b"x-uidl:"):
                value = line[7:].lstrip(b" \t")
                if 13 <= len(value) + 1 <= 32:
                    found = value
                    break
        uids.append(found)
    return uids


def uidl(session) -> list:
    return [line.split(b" ")[1] for line in
            b"".join(run(session, b"UIDL\r\n")).split(b"\r\n")[1:-2]]


def served_then_quit(make_session, settings=None, commands=b""):
    session, log = make_session(settings or Settings(), mail=None)
    greeting = login(session)[-1]
    uids = uidl(session)
    out = run(session, commands + b"QUIT\r\n")
    assert out[-1].startswith(b"+OK"), out
    return greeting, uids, log


def test_first_login_keeps_qpoppers_uids_and_takes_the_leftover_first(make_session, spool):
    (spool / "alice").write_bytes(SPOOL)
    (spool / ".alice.pop").write_bytes(LEFTOVER)
    os.chmod(spool / ".alice.pop", 0o660)              # Qpopper's mode (umask 007)
    greeting, uids, log = served_then_quit(make_session)
    assert greeting.startswith(b"+OK alice has 4 visible messages")
    assert uids[:3] == [b'Ab3!!q)*"!P4K!!sZ;"!', b'8"!!Kd)"!~(S!!Ga-"!', b'$l6!!,#5"!Z,="!+b)!!']
    assert any("taking" in m and "left in" in m for m in log.texts("notice"))
    assert not (spool / ".alice.pop").exists()
    written = (spool / "alice").read_bytes()
    assert written.startswith(b"From d@example.com")     # the leftover, first
    assert qpopper_uids(written) == uids                 # Qpopper reads back what was served


def test_going_back_qpopper_reads_every_uid_popper_served(make_session, spool):
    """Also the ones popper made (the third message had none), and with
    update-status-headers reset (finding 8: X-UIDL: is written anyway)."""
    for reset in (False, True):
        (spool / "alice").write_bytes(SPOOL)
        settings = Settings()
        settings.update_status_headers = not reset
        _, uids, _ = served_then_quit(make_session, settings, b"RETR 3\r\n")
        written = (spool / "alice").read_bytes()
        assert qpopper_uids(written) == uids, reset
        assert len(uids[2]) == 20                          # Qpopper's own UID shape


def test_status_r_written_by_qpopper_counts_as_read(make_session, spool):
    """LAST (and Status: RO at QUIT) see Qpopper's read marks."""
    (spool / "alice").write_bytes(SPOOL)
    session, _ = make_session(Settings(), mail=None)
    login(session)
    assert run(session, b"LAST\r\n") == [b"+OK 1 is the last read message.\r\n"]


def test_a_qpopper_cache_file_is_not_taken_for_poppers(make_session, spool):
    """Server mode: Qpopper's binary .alice.cache ("+Qpop+") means no cache:
    the spool is scanned."""
    (spool / "alice").write_bytes(SPOOL)
    (spool / ".alice.cache").write_bytes(b"+Qpop+" + bytes(200))
    os.chmod(spool / ".alice.cache", 0o600)
    settings = Settings()
    settings.server_mode = True
    greeting, uids, _ = served_then_quit(make_session, settings)
    assert greeting.startswith(b"+OK alice has 3 visible messages")
    assert uids[:2] == [b'8"!!Kd)"!~(S!!Ga-"!', b'$l6!!,#5"!Z,="!+b)!!']
