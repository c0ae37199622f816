"""The POP3 session, sans-I/O: bytes in, replies out, with a real maildrop
on a temporary spool and a stub authenticator."""

import os
import pathlib

import pytest

from conftest import USERS, corpus

from popper import __version__
from popper.auth import Account
from popper.log import LOG_LOGIN_TEMPLATE
from popper.maildrop import MaildropError
from popper.protocol import replies as R
from popper.protocol.session import FLUSH, HANG_UP, AfterSend, Client, Pause
from popper.settings import Settings

pytestmark = pytest.mark.twin


def sent(stream) -> bytes:
    """A reply stream as the transport sends it, AfterSend called in turn."""
    out = []
    for chunk in stream:
        if isinstance(chunk, AfterSend):
            chunk.callback()
        else:
            out.append(chunk)
    return b"".join(out)


def run(session, data: bytes):
    """Everything the session answers to data, as the transport would send it."""
    out = []
    for item in session.feed(data):
        if isinstance(item, AfterSend):
            item.callback()
        elif item not in (FLUSH, HANG_UP):
            out.append(item if isinstance(item, (bytes, Pause)) else sent(item))
    return out


def text(out) -> bytes:
    return b"".join(x for x in out if isinstance(x, bytes))


MAIL = corpus.mbox_bytes(list(corpus.messages(5, seed=3)))


def login(session, user="alice"):
    out = run(session, b"USER %s\r\nPASS %s\r\n" % (user.encode(), USERS[user].encode()))
    assert out[-1].startswith(b"+OK"), out
    return out


def test_greeting_has_no_timestamp_without_apop(make_session):
    session, _ = make_session()
    assert session.greeting() == b"+OK QPOP (version %s) at mail.example starting.\r\n" % (
        __version__.encode())


def test_shy_greeting(make_session):
    s = Settings()
    s.shy = True
    session, _ = make_session(s)
    assert session.greeting() == b"+OK ready\r\n"


def test_login_and_stat(make_session):
    session, _ = make_session(mail=MAIL)
    out = login(session)
    assert out[0] == b"+OK Password required for alice.\r\n"
    total = sum(m.octets for m in session.maildrop.messages)
    assert out[1] == b"+OK alice has 5 visible messages (0 hidden) in %d octets.\r\n" % total
    assert run(session, b"STAT\r\n") == [b"+OK 5 %d\r\n" % total]


def test_one_message_is_singular(make_session):
    session, _ = make_session(mail=corpus.mbox_bytes(list(corpus.messages(1))))
    assert b" has 1 visible message (0 hidden) " in login(session)[1]


def test_unknown_user_and_wrong_password_look_the_same(make_session):
    s = Settings()
    s.auth_fail_delay = 7
    session, log = make_session(s, mail=MAIL)
    wrong = run(session, b"USER alice\r\nPASS nope\r\n")
    unknown = run(session, b"USER mallory\r\nPASS nope\r\n")
    assert isinstance(wrong[1], Pause) and wrong[1].seconds == 7
    assert isinstance(unknown[1], Pause) and unknown[1].seconds == 7
    assert wrong[2] == b'-ERR [AUTH] Password supplied for "alice" is incorrect.\r\n'
    assert unknown[2] == b'-ERR [AUTH] Password supplied for "mallory" is incorrect.\r\n'
    assert any("[AUTH] Failed attempted login to mallory from host (client.example) 192.0.2.9"
               in line for line in log.texts("notice"))
    # After a failure the client starts again with USER.
    assert run(session, b"PASS secret\r\n") == [b"-ERR [AUTH] USER first, then PASS.\r\n"]
    assert login(session)[-1].startswith(b"+OK alice has 5")


def test_password_keeps_its_spaces(make_session):
    session, _ = make_session(mail=MAIL, user="carol")
    assert run(session, b"USER carol\r\nPASS pass word\r\n")[-1].startswith(b"+OK carol has")


def test_every_err_is_logged(make_session):
    session, log = make_session()
    run(session, b"STAT\r\n")
    assert ('notice', '(null) at client.example (192.0.2.9): -ERR Unknown command: "stat".') \
        in log.lines


@pytest.mark.parametrize("line,reply", [
    (b"STAT", b'-ERR Unknown command: "stat".'),
    (b"RETR 1", b'-ERR Unknown command: "retr".'),
    (b"BOGUS x", b'-ERR Unknown command: "bogus".'),
    (b"", b'-ERR Unknown command: "".'),
    (b"USER", b"-ERR Too few arguments for the user command."),
    (b"USER a b", b"-ERR Too many arguments for the user command."),
    (b"USER %s%n%x", b"+OK Password required for %s%n%x."),
    (b"USER {user}{0}", b"+OK Password required for {user}{0}."),
    (b"USER a\x00b", b"+OK Password required for a?b."),
    (b"USER \tal\xa0ice", b"+OK Password required for al?ice."),   # one word: split at [ \t]
    (b"AUTH", b"+OK Supported SASL mechanisms:\r\nPLAIN\r\nLOGIN\r\n."),
    (b"AUTH CRAM-MD5", b"-ERR Unknown authentication mechanism: CRAM-MD5"),
    (b"APOP alice 0123456789abcdef0123456789abcdef",
     b"-ERR [AUTH] APOP is not available on this server"),
])
def test_authorization_state_replies(make_session, line, reply):
    session, _ = make_session()
    assert text(run(session, line + b"\r\n")) == reply + b"\r\n"
    assert not session.done
    assert run(session, b"NOOP\r\n") == [b'-ERR Unknown command: "noop".\r\n']


@pytest.mark.parametrize("line,reply", [
    (b"RETR 99999999999999999999", b"-ERR Message 99999999999999999999 does not exist."),
    (b"RETR 0", b"-ERR Message 0 does not exist."),
    (b"RETR 6", b"-ERR Message 6 does not exist."),
    (b"RETR -1", b"-ERR Parameter must be a number between 1 and 5"),
    (b"RETR 1x", b"-ERR Parameter must be a number between 1 and 5"),
    (b"RETR %s%n", b"-ERR Parameter must be a number between 1 and 5"),
    (b"RETR \xd9\xa3", b"-ERR Parameter must be a number between 1 and 5"),
    (b"TOP 1 -1", b"-ERR Number of lines must be a number, 0 or more: -1"),
    (b"TOP 1 %n", b"-ERR Number of lines must be a number, 0 or more: %n"),
    (b"TOP 1", b"-ERR Too few arguments for the top command."),
    (b"LIST 1 2", b"-ERR Unknown LIST argument: 2"),
    (b"LIST 1 2 3", b"-ERR Too many arguments for the list command."),
    (b"UIDL x", b"-ERR Parameter must be a number between 1 and 5"),
    (b"UIDL 9", b"-ERR Message 9 out of range."),
    (b"DELE 0", b"-ERR Message 0 does not exist."),
    (b"USER bob", b'-ERR Unknown command: "user".'),
    (b"NOOP", b"+OK no big woop"),
])
def test_transaction_state_replies(make_session, line, reply):
    session, _ = make_session(mail=MAIL)
    login(session)
    assert run(session, line + b"\r\n") == [reply + b"\r\n"]
    assert run(session, b"NOOP\r\n") == [b"+OK no big woop\r\n"]


def test_over_long_line_is_discarded_and_the_session_goes_on(make_session):
    session, log = make_session(mail=MAIL)
    login(session)
    out = run(session, b"LIST " + b"9" * (1 << 20) + b"\r\nSTAT\r\n")
    assert out[0] == b"-ERR Command line too long: discarded %d bytes.\r\n" % ((1 << 20) + 7)
    assert out[1].startswith(b"+OK 5 ")
    assert any(m.startswith("Excessive input from alice client.example (192.0.2.9); discarded")
               for m in log.texts("notice"))


def test_over_long_line_in_pieces(make_session):
    session, _ = make_session()
    out = []
    for _ in range(100):
        out += run(session, b"x" * 10000)
    out += run(session, b"\r\nCAPA\r\n")
    assert out[0].startswith(b"-ERR Command line too long")
    assert out[1].startswith(b"+OK Capability list follows")


def test_list_uidl_and_single_forms(make_session):
    session, _ = make_session(mail=MAIL)
    login(session)
    msgs = session.maildrop.messages
    out = text(run(session, b"LIST\r\n"))
    assert out == (b"+OK 5 visible messages (%d octets)\r\n" % sum(m.octets for m in msgs)
                   + b"".join(b"%d %d\r\n" % (i + 1, m.octets) for i, m in enumerate(msgs))
                   + b".\r\n")
    assert run(session, b"LIST 2\r\n") == [b"+OK 2 %d\r\n" % msgs[1].octets]
    out = text(run(session, b"UIDL\r\n"))
    assert out == (b"+OK uidl command accepted.\r\n"
                   + b"".join(b"%d %s\r\n" % (i + 1, m.uid) for i, m in enumerate(msgs))
                   + b".\r\n")
    assert run(session, b"UIDL 3\r\n") == [b"+OK 3 %s\r\n" % msgs[2].uid]
    assert len({m.uid for m in msgs}) == 5


def test_retr_top_and_octets(make_session):
    session, _ = make_session(mail=MAIL)
    login(session)
    msgs = list(corpus.messages(5, seed=3))
    for n, m in enumerate(session.maildrop.messages, 1):
        out = text(run(session, b"RETR %d\r\n" % n))
        head, _, rest = out.partition(b"\r\n")
        assert head == b"+OK %d octets" % m.octets
        lines = rest[:-len(b".\r\n")].split(b"\r\n")
        unstuffed = b"\r\n".join(x[1:] if x.startswith(b".") else x for x in lines)
        assert len(unstuffed) == m.octets
        original = msgs[n - 1].data
        assert unstuffed.replace(b"X-UIDL: " + m.uid + b"\r\n", b"", 1) == \
            original.replace(b"\n", b"\r\n")
        top = text(run(session, b"TOP %d 2\r\n" % n))
        assert top.startswith(b"+OK Message follows\r\n")
        header = original.split(b"\n\n", 1)[0].replace(b"\n", b"\r\n")
        body = original.split(b"\n\n", 1)[1].split(b"\n")
        expected = header + b"\r\nX-UIDL: " + m.uid + b"\r\n\r\n" + b"".join(
            (b"." + x if x.startswith(b".") else x) + b"\r\n" for x in body[:2])
        assert top == b"+OK Message follows\r\n" + expected + b".\r\n"


def test_top_huge_count_sends_everything_and_does_not_mark_read(make_session):
    session, _ = make_session(mail=MAIL)
    login(session)
    retr = text(run(session, b"RETR 1\r\n")).split(b"\r\n", 1)[1]
    top = text(run(session, b"TOP 2 99999999\r\n")).split(b"\r\n", 1)[1]
    retr2 = text(run(session, b"RETR 2\r\n")).split(b"\r\n", 1)[1]
    assert top == retr2 and top != retr
    run(session, b"RSET\r\n")
    run(session, b"TOP 3 99999999\r\n")
    assert run(session, b"LAST\r\n") == [b"+OK 0 is the last read message.\r\n"]


def test_dele_rset_last(make_session):
    session, _ = make_session(mail=MAIL)
    login(session)
    msgs = session.maildrop.messages
    assert run(session, b"RETR 2\r\n")
    assert run(session, b"LAST\r\n") == [b"+OK 2 is the last read message.\r\n"]
    assert run(session, b"DELE 2\r\n") == [b"+OK Message 2 has been deleted.\r\n"]
    assert run(session, b"DELE 2\r\n") == [b"+OK Message 2 has been deleted.\r\n"]
    assert run(session, b"LAST\r\n") == [b"+OK 0 is the last read message.\r\n"]
    assert run(session, b"RETR 2\r\n") == [b"-ERR Message 2 has been deleted.\r\n"]
    assert run(session, b"UIDL 2\r\n") == [b"-ERR Message 2 has been marked for deletion.\r\n"]
    total = sum(m.octets for m in msgs)
    assert run(session, b"STAT\r\n") == [b"+OK 4 %d\r\n" % (total - msgs[1].octets)]
    assert b"\r\n2 " not in text(run(session, b"LIST\r\n"))
    assert run(session, b"RSET\r\n") == [b"+OK Maildrop has 5 messages (%d octets)\r\n" % total]
    assert run(session, b"LAST\r\n") == [b"+OK 0 is the last read message.\r\n"]
    assert run(session, b"STAT\r\n") == [b"+OK 5 %d\r\n" % total]


def test_status_read_counts_for_last(make_session):
    mail = (b"From a Wed Dec  2 05:53 1992\nStatus: RO\n\none\n\n"
            b"From a Wed Dec  2 05:53 1992\nStatus: O\n\ntwo\n\n")
    session, _ = make_session(mail=mail)
    login(session)
    assert run(session, b"LAST\r\n") == [b"+OK 1 is the last read message.\r\n"]


def test_capa(make_session):
    session, _ = make_session(mail=MAIL)
    capa = text(run(session, b"CAPA\r\n"))
    assert capa == (b"+OK Capability list follows\r\nTOP\r\nSASL PLAIN LOGIN\r\nUSER\r\n"
                    b"UIDL\r\nRESP-CODES\r\n"
                    b"AUTH-RESP-CODE\r\nX-MANGLE\r\nX-MACRO\r\nPIPELINING\r\nIMPLEMENTATION popper-version-%s\r\n.\r\n"
                    % __version__.encode())
    login(session)                          # AUTH is over: no SASL line
    assert text(run(session, b"CAPA\r\n")) == capa.replace(b"SASL PLAIN LOGIN\r\n", b"")


def test_capa_announcements(make_session):
    s = Settings()
    s.announce_login_delay, s.announce_expire, s.shy = 900, -1, True
    session, _ = make_session(s)
    capa = text(run(session, b"CAPA\r\n"))
    assert b"LOGIN-DELAY 900\r\nEXPIRE NEVER\r\n" in capa
    assert b"IMPLEMENTATION" not in capa
    s2 = Settings()
    s2.auto_delete = True
    session2, _ = make_session(s2)
    assert b"\r\nEXPIRE 0\r\n" in text(run(session2, b"CAPA\r\n"))


@pytest.mark.parametrize("policy,local,allowed", [(0, False, True), (2, False, True),
                                                   (1, True, False), (3, True, True),
                                                   (3, False, False), (4, True, False)])
def test_clear_text_password_policy(make_session, policy, local, allowed):
    s = Settings()
    s.clear_text_password = policy
    client = Client("localhost", "127.0.0.1") if local else Client("far", "192.0.2.1")
    session, _ = make_session(s, client=client)
    reply = run(session, b"USER alice\r\n")[0]
    capa = text(run(session, b"CAPA\r\n"))
    assert reply.startswith(b"+OK") == allowed
    assert (b"\r\nUSER\r\n" in capa) == allowed
    if not allowed:
        assert reply.startswith(b"-ERR [AUTH] You must use ")


def test_user_name_rules(make_session):
    s = Settings()
    s.downcase_user = s.trim_domain = True
    session, log = make_session(s, mail=MAIL)
    assert run(session, b"USER ALICE@Example.COM\r\n") == [b"+OK Password required for alice.\r\n"]
    assert run(session, b"PASS secret\r\n")[0].startswith(b"+OK alice has 5")
    session2, log2 = make_session()
    assert run(session2, b"USER " + b"x" * 100 + b"\r\n") == [
        b"+OK Password required for " + b"x" * 64 + b".\r\n"]
    assert any("Excessive user name length (100); truncated to 64" in m
               for m in log2.texts("warning"))


def test_low_uid_refused_unless_allowed(make_session):
    class LowAuth:
        def authenticate(self, user, password, client):
            return Account(user, 10, 10)
    session, _ = make_session(auth=LowAuth())
    assert run(session, b"USER alice\r\nPASS x\r\n")[1] == \
        b"-ERR [AUTH] Access is blocked for UIDs below 10\r\n"
    assert session.maildrop is None


def test_quit_writes_back_and_signs_off(make_session, spool):
    session, _ = make_session(mail=MAIL)
    login(session)
    run(session, b"RETR 1\r\nDELE 2\r\n")
    assert run(session, b"QUIT\r\n") == [b"+OK Pop server at mail.example signing off.\r\n"]
    assert session.done
    data = (spool / "alice").read_bytes()
    assert data.count(b"\nX-UIDL: ") == 4 and data.count(b"\nStatus: RO\n") == 1
    assert data.count(b"\nStatus: U\n") == 3
    assert not (spool / ".alice.pop").exists()


def test_pipelined_quit_runs_after_the_retr_was_sent(make_session, spool):
    session, _ = make_session(mail=MAIL)
    login(session)
    events = []
    drop = session.maildrop
    real_update = drop.update
    drop.update = lambda *a, **k: (events.append("update"), real_update(*a, **k))[1]
    outputs = session.feed(b"RETR 1\r\nDELE 1\r\nQUIT\r\n")
    stream = next(outputs)                      # RETR's reply, not yet sent
    assert not isinstance(stream, bytes)
    chunks = list(stream)
    events.append("retr sent")
    chunks[-1].callback()                       # the transport says: all of it went out
    rest = [out for out in outputs if isinstance(out, bytes)]
    assert events == ["retr sent", "update"]
    assert chunks[0].startswith(b"+OK ") and rest[-1].startswith(b"+OK Pop server")
    assert isinstance(chunks[-1], AfterSend) and session.retrieved[0]


def test_a_retr_not_sent_whole_is_not_retrieved(make_session):
    session, _ = make_session(mail=MAIL)
    login(session)
    stream = next(session.feed(b"RETR 2\r\n"))
    for chunk in stream:
        if isinstance(chunk, AfterSend):
            break                               # the connection died before the end
    assert run(session, b"LAST\r\n") == [b"+OK 0 is the last read message.\r\n"]


def test_statistics_and_log_login(make_session):
    s = Settings()
    s.statistics, s.log_login = True, LOG_LOGIN_TEMPLATE
    session, log = make_session(s, mail=MAIL)
    login(session)
    msgs = session.maildrop.messages
    assert ('notice', '(v%s) POP login by user "alice" at (client.example) 192.0.2.9'
            % __version__) in log.lines
    run(session, b"DELE 1\r\nDELE 3\r\nQUIT\r\n")
    gone = msgs[0].octets + msgs[2].octets
    total = sum(m.octets for m in msgs)
    assert ("notice", "Stats: alice 2 %d 3 %d client.example 192.0.2.9" % (gone, total - gone)) \
        in log.lines


def test_the_login_line_is_the_log_login_template(make_session):
    """set log-login = '...': Qpopper's template (pop_log.c, do_log_login);
    the client's host name is a value in it, never part of the format."""
    s = Settings()
    s.log_login = "login %1 from %2 (%3)"
    session, log = make_session(s, mail=MAIL, client=Client("h%1%s.example", "192.0.2.9"))
    login(session)
    assert ("notice", "login alice from h%1%s.example (192.0.2.9)") in log.lines


def test_hangup_applies_deletions_by_default(make_session, spool):
    session, log = make_session(mail=MAIL)
    login(session)
    run(session, b"DELE 1\r\n")
    assert session.end("hangup") == [b"-ERR POP hangup from mail.example\r\n",
                                     b"+OK Pop server at mail.example signing off.\r\n"]
    assert (spool / "alice").read_bytes().count(b"\nX-UIDL: ") == 4
    assert any("-ERR POP hangup from mail.example" in m for m in log.texts("notice"))


def test_eof_without_update_on_abort_restores_everything(make_session, spool):
    s = Settings()
    s.update_on_abort = False
    session, log = make_session(s, mail=MAIL)
    login(session)
    run(session, b"RETR 1\r\nDELE 1\r\nDELE 2\r\n")
    session.end("eof")
    assert (spool / "alice").read_bytes() == MAIL
    assert any("-ERR POP EOF or I/O Error" in m for m in log.texts("notice"))


def test_timeout_says_so_and_logs_qpoppers_line(make_session):
    s = Settings()
    s.timeout = 33
    session, log = make_session(s, mail=MAIL)
    login(session)
    assert session.end("timeout") == [b"-ERR POP timeout from mail.example\r\n",
                                      b"+OK Pop server at mail.example signing off.\r\n"]
    assert ("notice", "(v%s) Timeout (33 secs) during nw read from alice at client.example "
            "(192.0.2.9)" % __version__) in log.lines


def test_auto_delete_deletes_what_was_retrieved(make_session, spool):
    s = Settings()
    s.auto_delete = True
    session, _ = make_session(s, mail=MAIL)
    login(session)
    run(session, b"RETR 2\r\nTOP 3 0\r\nQUIT\r\n")
    data = (spool / "alice").read_bytes()
    ids = [m.message_id for m in corpus.messages(5, seed=3)]
    assert ids[1] not in data and all(i in data for i in ids[:1] + ids[2:])


def test_maildrop_failure_ends_the_session(make_session, spool):
    (spool / ".alice.pop").write_bytes(b"")
    os.chmod(spool / ".alice.pop", 0o644)
    session, _ = make_session(mail=MAIL)
    out = login_attempt = run(session, b"USER alice\r\nPASS secret\r\nSTAT\r\n")
    assert out[1] == (b"-ERR [SYS/PERM] Your temporary file %s is accessible by others.  This "
                      b"must be fixed\r\n" % str(spool / ".alice.pop").encode())
    assert session.done and login_attempt and len(out) == 2
    assert (spool / "alice").read_bytes() == MAIL


def test_a_spool_that_is_not_mail_is_set_aside_and_the_login_goes_on(make_session, spool):
    session, log = make_session(mail=b"this is not a mailbox\n")
    out = run(session, b"USER alice\r\nPASS secret\r\n")
    assert out[1] == b"+OK alice has 0 visible messages (0 hidden) in 0 octets.\r\n"
    assert run(session, b"QUIT\r\n")[0].startswith(b"+OK")
    [aside] = spool.glob(".alice.pop.damaged.*")
    assert aside.read_bytes() == b"this is not a mailbox\n"
    assert (aside.stat().st_mode & 0o777) == 0o600
    assert (spool / "alice").read_bytes() == b""
    [crit] = log.texts("critical")
    assert str(aside) in crit and "not mail" in crit


def test_an_unexpected_failure_while_opening_the_maildrop_ends_the_session(make_session):
    session, log = make_session()

    def broken(account):
        raise PermissionError(1, "Operation not permitted")
    session.open_maildrop = broken
    out = run(session, b"USER alice\r\nPASS secret\r\nCAPA\r\n")
    assert out[1] == (b"-ERR [SYS/TEMP] internal error while opening your maildrop; "
                      b"try again later\r\n")
    assert session.done and len(out) == 2
    assert any("PermissionError" in m for m in log.texts("error"))


def test_internal_error_is_an_err_not_a_traceback(make_session):
    class Broken:
        def authenticate(self, user, password, client):
            raise RuntimeError("boom")
    session, log = make_session(auth=Broken())
    out = run(session, b"USER alice\r\nPASS x\r\nCAPA\r\n")
    assert out[1] == b"-ERR [SYS/TEMP] internal error; the session goes on\r\n"
    assert out[2].startswith(b"+OK Capability")
    assert any("RuntimeError: boom" in m for m in log.texts("error"))


def test_second_session_is_in_use(make_session, spool):
    first, _ = make_session(mail=MAIL)
    login(first)
    second, _ = make_session()
    out = run(second, b"USER alice\r\nPASS secret\r\n")
    assert out[1] == b"-ERR [IN-USE] %s lock busy!  Is another session active? (11)\r\n" % (
        str(spool / ".alice.pop").encode())
    assert second.done


def test_maildrop_error_texts_are_single_lines():
    err = MaildropError("x")
    assert R.err("{text}", text="a\r\nb") == b"-ERR a??b\r\n" and err.args == ("x",)


def test_reply_is_bounded():
    line = R.err(R.NO_SUCH_MESSAGE, number="9" * 5000)
    assert len(line) == R.MAX_LINE + 2 and line.endswith(b"\r\n")


def test_spool_file_mode_is_private(make_session, spool):
    session, _ = make_session(mail=MAIL)
    login(session)
    assert os.stat(spool / ".alice.pop").st_mode & 0o077 == 0
    run(session, b"QUIT\r\n")
    assert pathlib.Path(spool / "alice").exists()


def test_a_retr_sent_whole_counts_only_once_the_client_speaks_again(make_session, spool):
    """auto-delete and Status: R take a message as received only when a
    later command (or QUIT) shows the client got it: a session cut right
    after the RETR keeps it, unread."""
    ids = [m.message_id for m in corpus.messages(5, seed=3)]
    for then, kept in ((b"", True), (b"NOOP\r\n", False)):
        s = Settings()
        s.auto_delete = True
        session, _ = make_session(s, mail=MAIL)
        login(session)
        run(session, b"RETR 2\r\n")                 # sent whole: its AfterSend has run
        run(session, then)
        session.end("hangup")
        data = (spool / "alice").read_bytes()
        assert (ids[1] in data) == kept
        if kept:
            assert data.count(b"\nStatus: U\n") == 5


@pytest.mark.parametrize("octets", [0, 7, 12345, 10 ** 12])
def test_retr_s_fast_status_line_is_the_template_s(octets):
    """RETR builds its +OK line directly (replies.retr_ok): the same bytes
    as the template RETR's way."""
    assert R.retr_ok(octets) == R.ok(R.RETR, octets=octets)


def flat(outputs) -> list:
    """Outputs as the transport sends them (AfterSend called in turn)."""
    out = []
    for item in outputs:
        if isinstance(item, AfterSend):
            item.callback()
        elif item not in (FLUSH, HANG_UP):
            out.append(item if isinstance(item, (bytes, Pause)) else sent(item))
    return out


QUICK_LINES = [b"RETR 1\r\n", b"retr 2\n", b"ReTr 004\r\n", b"RETR 3\r\n", b"RETR 9\r\n",
               b"RETR 0\r\n", b"RETR 00\r\n", b"RETR 5\r\n"]


def test_quick_retr_agrees_with_feed(make_session):
    """Session.quick, the transport's short way for one "RETR n" line, gives
    what feed() gives: replies (errors too), log lines, marks."""
    results = []
    for user, use_quick in (("alice", False), ("bob", True)):
        session, log = make_session(mail=MAIL, user=user)
        login(session, user)
        run(session, b"DELE 3\r\n")
        replies = []
        for line in QUICK_LINES:
            outputs = session.quick(line) if use_quick else session.feed(line)
            assert outputs is not None, line
            replies.append(flat(outputs))
        replies.append(run(session, b"LAST\r\n"))
        results.append((replies, bytes(session.seen), bytes(session.retrieved),
                        [(level, m.replace(user, "U")) for level, m in log.lines]))
    assert results[0] == results[1]
    assert results[0][0][-1] == [b"+OK 5 is the last read message.\r\n"]
    assert results[0][2] == b"\1\1\0\1\1"


@pytest.mark.parametrize("data", [
    b"RETR 1\r\nRETR 2\r\n", b"RETR 1\r\n\r\n", b"RETR 1", b"RETR 1 x-mangle\r\n", b"RETR  1\r\n",
    b"RETR\t1\r\n", b" RETR 1\r\n", b"RETR 1 \r\n", b"RETR -1\r\n", b"RETR\r\n", b"LIST 1\r\n",
    b"RETR \xb9\r\n", b"RETR 1\r\r\n", b"RETR " + b"1" * 1100 + b"\r\n", b"TOP 1 1\r\n"])
def test_quick_retr_leaves_everything_else_to_feed(make_session, data):
    session, _ = make_session(mail=MAIL)
    login(session)
    assert session.quick(data) is None
    assert session.quick(b"RETR 1\r\n") is not None


def test_quick_retr_only_in_the_plain_case(make_session):
    session, _ = make_session(mail=MAIL)
    assert session.quick(b"RETR 1\r\n") is None                 # not logged in
    login(session)
    run(session, b"RE")                                          # a line begun
    assert session.quick(b"TR 1\r\n") is None
    run(session, b"TR 1\r\n")
    session.macros["1"] = "2"                                    # MDEF's macros
    assert session.quick(b"RETR 1\r\n") is None
    session.macros.clear()
    session.no_mime = True                                       # X-MANGLE by default
    assert session.quick(b"RETR 1\r\n") is not None              # (do_retr mangles it)
