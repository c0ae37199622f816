"""Every text popper sends to a client, in one place.

The code and the tests both use these, so a wording is changed here once.
They are Qpopper 4.0's texts (qpopper-behaviour.md section 3) unless
docs/deviations.md says otherwise.  Each is a template for str.format with
named fields; callers pass client or mail text only as field values, which
str.format never interprets, and reply() strips the control characters.
"""

from popper import __version__
from popper.log import clean

OK = "+OK"
ERR = "-ERR"

# The longest reply line (without CRLF), as Qpopper's 1021-byte buffer.
MAX_LINE = 1021

# --- greeting, sign-off ---------------------------------------------------
GREETING = "QPOP (version {version}) at {host} starting."
GREETING_SHY = "ready"
SIGN_OFF = "Pop server at {host} signing off."

# --- parsing ----------------------------------------------------------------
UNKNOWN_COMMAND = 'Unknown command: "{command}".'
TOO_FEW_ARGS = "Too few arguments for the {command} command."
TOO_MANY_ARGS = "Too many arguments for the {command} command."
TOO_MANY_WORDS = "Too many arguments supplied."
LINE_TOO_LONG = "Command line too long: discarded {count} bytes."

# --- authorization ------------------------------------------------------------
PASSWORD_REQUIRED = "Password required for {user}."
LOGGED_IN = "{user} has {count} visible message{s} ({hidden} hidden) in {octets} octets."
BAD_PASSWORD = '[AUTH] Password supplied for "{user}" is incorrect.'
ACCESS_DENIED = '[AUTH] "{user}": access denied.'
ACCOUNT_EXPIRED = '[AUTH] "{user}": account expired.'
PASSWORD_EXPIRED = '[AUTH] "{user}": password expired.'
LOW_UID = "[AUTH] Access is blocked for UIDs below 10"
CANNOT_SERVE = '[SYS/PERM] popper runs as uid {uid} and cannot serve "{user}"'
NEED_STRONGER_AUTH = ("[AUTH] You must use stronger authentication such as APOP "
                      "to connect to this server")
NEED_TLS = ("[AUTH] You must use TLS/SSL or stronger authentication such as APOP "
            "to connect to this server")
NEED_STRONGER_AUTH_APOP_USER = ("[AUTH] You must use stronger authentication such as AUTH "
                                "or APOP to connect to this server")
USER_FIRST = "[AUTH] USER first, then PASS."
APOP_UNAVAILABLE = "[AUTH] APOP is not available on this server"
# pop_apop.c's digest mismatch: popper's one answer to every failed APOP.
APOP_FAILED = "[AUTH] authentication failure"
APOP_PERMISSION = "[AUTH] Permission denied."
# pop_user.c, when pop.auth cannot be read to see whether the user has an APOP secret.
APOP_DB_MODE = "[SYS/PERM] POP authentication DB has wrong mode (0{mode})"
APOP_DB_LOCK = "[SYS/TEMP] unable to lock POP authentication DB ({error})"
APOP_DB_UNAVAILABLE = "[SYS/TEMP] POP authentication DB not available (user {user}): {error} ({errno})"
APOP_DB_UNFIT = "[SYS/PERM] POP authentication DB is not to be trusted; see the server's log"
AUTH_MECHANISMS = "Supported SASL mechanisms:"
# pop_auth.c lists this pseudo-mechanism when it has none (no SCRAM built); popper
# when no mechanism can complete in this configuration.
AUTH_NO_MECHANISM = "X-NONE-SO-USE-APOP-OR-STLS"
UNKNOWN_MECHANISM = "Unknown authentication mechanism: {mechanism:.100}"
# Every failed SASL login, whatever the cause (APOP's one answer).
AUTH_FAILED = APOP_FAILED
AUTH_CANCELLED = "[AUTH] AUTH cancelled by the client"
AUTH_BAD_BASE64 = "[AUTH] Not valid base64; the AUTH exchange is over"
AUTH_MALFORMED = "[AUTH] Malformed {mechanism} message; the AUTH exchange is over"
AUTHZID_REFUSED = '[AUTH] "{user}" may not log in as "{authzid}"'
STLS_NOT_ENABLED = "Command not enabled"
STLS_OK = "STLS"                                    # then the handshake (pop_extend.c)
TLS_IN_PROGRESS = "TLS in progress"                 # STLS once TLS is up

# --- transaction --------------------------------------------------------------
STAT = "{count} {octets}"
LIST_ALL = "{count} visible messages ({octets} octets)"
LIST_ONE = "{number} {octets}"
RETR = "{octets} octets"
TOP = "Message follows"
DELE = "Message {number} has been deleted."
NOOP = "no big woop"
RSET = "Maildrop has {count} messages ({octets} octets)"
LAST = "{number} is the last read message."
UIDL_ALL = "uidl command accepted."
UIDL_ONE = "{number} {uid}"
CAPA = "Capability list follows"
NO_SUCH_MESSAGE = "Message {number} does not exist."
MESSAGE_DELETED = "Message {number} has been deleted."
UIDL_OUT_OF_RANGE = "Message {number} out of range."
UIDL_DELETED = "Message {number} has been marked for deletion."
NOT_A_NUMBER = "Parameter must be a number between 1 and {count}"
UNKNOWN_LIST_ARG = "Unknown LIST argument: {arg:.128}"
MANGLE_SYNTAX = "Syntax error in Mangle"
MANGLE_SYNTAX_LIST = "Syntax error in x-mangle"
BAD_LINE_COUNT = "Number of lines must be a number, 0 or more: {arg}"

# --- the maildrop ---------------------------------------------------------------
IN_USE = "[IN-USE] {tempdrop} lock busy!  Is another session active? ({errno})"
IN_USE_RACE = "[IN-USE] Maildrop being unlocked; try again."
LOGIN_DELAYED = ("[LOGIN-DELAY] You logged in less than {delay} seconds ago; wait {wait} "
                 "more seconds before you log in again.")
TEMP_NOT_OWNED = "[SYS/PERM] Temporary drop {tempdrop} not owned by {user}."
TEMP_OPEN_TO_OTHERS = ("[SYS/PERM] Your temporary file {tempdrop} is accessible by others.  "
                       "This must be fixed")
TEMP_LINKED = "[SYS/PERM] Your temporary file appears to have more than one link."
TEMP_CREATE_FAILED = ("[SYS/TEMP] Failed to create {tempdrop} with uid {uid}, gid {gid}.  "
                      "Change permissions.")
MAILLOCK = "[SYS/TEMP] maillock error '{text}' ({code}) on '{file}': {error} ({errno})"
MAILLOCK_NO_ERRNO = "[SYS/TEMP] maillock error '{text}' ({code}) on '{file}'"
FLOCK_FAILED = "[SYS/TEMP] flock: '{file}': {error} ({errno})"
FCNTL_FAILED = "[SYS/TEMP] fcntl lock: '{file}': {error} ({errno})"
COPY_FAILED = ("[SYS/TEMP] Unable to copy mail spool file to temp pop dropbox {tempdrop}: "
               "{error} ({errno})")
QUOTA = "[SYS/TEMP] Unable to copy mail spool file, quota exceeded ({errno})"
OPEN_FAILED = "[SYS/TEMP] Unable to open {file}: {error} ({errno})"
SPOOL_NOT_YOURS = "[SYS/PERM] Mail spool {file} is not yours alone ({why}).  This must be fixed"
UPDATE_FAILED = ("Error updating primary drop.  Mail left in temporary maildrop "
                 "[{error} ({errno})]")
JOURNAL_BAD = "[SYS/PERM] Cannot use the maildrop journal {file}: {why}"
BULLETIN_RECORD = ("[SYS/TEMP] Unable to record the bulletins already in your mail; "
                   "try again later")
BULLDB_UNAVAILABLE = "[SYS/TEMP] Unable to open Bulletin database; contact your administrator"
SPOOL_CHANGED = ("[SYS/TEMP] The mailbox was changed by another program during the session; "
                 "nothing was updated")
INTERNAL_ERROR = "[SYS/TEMP] internal error; the session goes on"
LOGIN_FAILED = "[SYS/TEMP] internal error while opening your maildrop; try again later"

# --- standalone mode's limits (the connection is closed after the reply) ---------------
TOO_MANY_SESSIONS = "[SYS/TEMP] Too many POP sessions; try again later."
TOO_MANY_FROM_ADDRESS = "[SYS/TEMP] Too many POP sessions from {address}; try again later."
TOO_FAST_FROM_ADDRESS = ("[SYS/TEMP] Too many connections from {address} in a second; "
                         "try again later.")
SERVER_BUSY = "[SYS/TEMP] Server busy; try again later."

# --- Qpopper's extensions (popper/extensions/) ---------------------------------------
XLST = "xlst command accepted; headers coming."                         # xtnd_xlst.c
EUIDL_NOT_A_NUMBER = "Parameter must be a number (range 1 to {count})"   # pop_uidl.c
EUIDL_OUT_OF_RANGE = "Message out of range.  {count} visible messages in mail drop."
EUIDL_ONE = "{number} {uid} {octets} {sender}"
MDEF_NAME_TOO_LONG = "MDEF name too long"                               # pop_extend.c
MDEF_SYNTAX = "Syntax error"
MDEF_ACCEPTED = 'Macro "{name}" accepted'
MDEF_TOO_MANY = "Server only takes a maximum of {count} MDEFs"
XMIT_START = "Start sending message."                                   # pop_xmit.c
XMIT_SENT = "Message sent successfully"
XMIT_FAILED = "Unable to send message"
XMIT_CANNOT_RUN = 'Unable to execute "{command}": {error} ({errno})'
XMIT_NO_TEMP_FILE = 'Unable to create temporary message file "{path}": {error} ({errno})'
XMIT_TOO_BIG = "Message larger than {limit} octets (xmit-max-size); not sent"
XMIT_LINE_TOO_LONG = "Message has a line longer than {limit} octets; not sent"

# --- abnormal ends (popper.c, pop_exit: {host} is the server's own name) -------------
HANGUP = "POP hangup from {host}"
TIMEOUT = "POP timeout from {host}"
EOF_OR_IO = "POP EOF or I/O Error"
ABORT_UPDATE_FAILED = "POP mailbox update for {user} failed!"
ABORT_RESTORE_FAILED = "POP mailbox restoration for {user} failed!"


def _clean(value) -> str:
    """Client or mail text made safe for one reply or log line."""
    return clean(value if isinstance(value, str) else str(value))


def text(template: str, **fields) -> str:
    """Fill a template; field values are data, never a template."""
    return template.format(**{k: v if type(v) is int else _clean(v)     # a number is clean
                              for k, v in fields.items()})


def reply(status: str, template: str = "", **fields) -> bytes:
    """One reply line: +OK/-ERR, a space, the text, CRLF; at most MAX_LINE."""
    line = (status + " " + text(template, **fields)).encode("latin-1", "replace")
    return line[:MAX_LINE] + b"\r\n"


def greeting(settings, hostname: str, apop_timestamp=None) -> bytes:
    """The greeting line (with APOP's <pid.time@host> when there is one)."""
    line = GREETING_SHY if settings.shy else text(GREETING, version=__version__, host=hostname)
    if apop_timestamp:
        line += "  " + apop_timestamp
    return ok("{text}", text=line)


def ok(template: str = "", **fields) -> bytes:
    return reply(OK, template, **fields)


def retr_ok(octets: int) -> bytes:
    """ok(RETR, octets=octets), made as directly as RETR's every message asks."""
    return b"+OK %d octets\r\n" % octets


def err(template: str, **fields) -> bytes:
    return reply(ERR, template, **fields)
