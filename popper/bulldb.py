"""The bulletin database (configure.py --enable-bulldb[=DIR]): every user's
last bulletin in DIR/bulldb.dir + .pag (DIR: the bulletin directory by
default), a classic ndbm file (popper.ndbm) shared by all users.  The key
is the user name and a NUL, the value the number as a C long, in the size
and byte order configure.py --with-bulldb-long chose (native by default;
4-little is SCO OpenServer's i386 long, 8-little Linux amd64's).

Qpopper opens the database read-write as root before it drops privileges
and keeps it open for the session: a user who subverted his session would
hold every user's record.  popper keeps it out of the user's reach.  Before
it becomes the user, the root part starts a keeper (start()): a child that
keeps root, knows the database, the user's name and its end of a
socketpair, and nothing else (its other descriptors are closed).  The
record is read by the root part first (with the bulletin directory's
listing: when nothing is new there is no keeper at all); the session, as
the user, asks the keeper [STORE n] (Keeper), which it does for that one
user's key, opening the database under Qpopper's lock (flock on the .dir
file, shared to read, exclusive to write, waited for up to
bulldb-max-tries tenths of a second), and it exits when the session closes
its end, or after login-timeout.  Started as another user than root,
popper uses the database in the session itself.
"""

import os
import _signal     # not socket.py nor signal.py (docs/architecture.md, "Start-up")
import _socket
import struct
import sys
import time

from popper import ndbm
from popper.bulletins import Bulletin, RecordUnavailable, listing
from popper.maildrop import MaildropError
from popper.privsep import Channel, ChannelError
from popper.protocol import replies

NAME = "bulldb"
LOCK_STEP = 0.1             # seconds of lock waiting per bulldb-max-tries
LONGS = {"native": ("@l", None), "4-little": ("<i", "little"), "8-little": ("<q", "little"),
         "4-big": (">i", "big"), "8-big": (">q", "big")}
REPLY_WAIT = 60             # seconds the session waits for one answer


def path_of(settings) -> str:
    return os.path.join(settings.bulldb or settings.bulldir, NAME)


class Database:
    """The records, opened for each operation (as whoever runs this)."""

    def __init__(self, settings):
        self.path = path_of(settings)
        code, self.byteorder = LONGS[settings.bulldb_long]
        self.long = struct.Struct(code)
        self.timeout = settings.bulldb_max_tries * LOCK_STEP

    def _open(self, lock: str):
        return ndbm.open(self.path, "c", 0o600, byteorder=self.byteorder, lock=lock,
                         timeout=self.timeout)

    def fetch(self, user: str):
        with self._open("shared") as db:
            value = db.fetch(user.encode("latin-1") + b"\0")
        if value is None:
            return None
        if len(value) == self.long.size:
            return self.long.unpack(value)[0]
        if len(value) in (4, 8):        # another host's long: its size, our byte order
            order = "<" if (self.byteorder or sys.byteorder) == "little" else ">"
            return struct.unpack(order + ("i" if len(value) == 4 else "q"), value)[0]
        raise ndbm.Error("a value of %d bytes for %s" % (len(value), user))

    def store(self, user: str, number: int) -> None:
        with self._open("exclusive") as db:
            db.store(user.encode("latin-1") + b"\0", self.long.pack(number))


class Keeper:
    """The session's side: the record of one user, kept by the root keeper
    (or, without root, in this process)."""

    def __init__(self, user: str, database, last, channel=None, pid=None):
        self.user, self.database, self.channel, self.pid = user, database, channel, pid
        self.last = last                # the record, read as the login began

    def fetch(self):
        return self.last

    def store(self, number: int) -> None:
        if self.channel is None:
            self._local(self.database.store, self.user, number)
        else:
            self._ask([b"STORE", b"%d" % number])
        self.last = number

    def _local(self, work, *args):
        try:
            return work(*args)
        except (ndbm.Error, OSError) as exc:
            raise RecordUnavailable("the bulletin database %s: %s"
                                    % (self.database.path, exc)) from None

    def _ask(self, request: list) -> list:
        try:
            self.channel.send(request, time.monotonic() + REPLY_WAIT)
            answer = self.channel.receive(time.monotonic() + REPLY_WAIT)
        except ChannelError as exc:
            raise RecordUnavailable("the bulletin database keeper: %s" % exc) from None
        if answer[:1] == [b"NO"] and len(answer) == 2:
            raise RecordUnavailable(answer[1].decode("latin-1"))
        if answer == [b"OK"]:
            return answer
        raise RecordUnavailable("the bulletin database keeper: a bad answer")

    def close(self) -> None:
        """The keeper's end: its channel closed, its process reaped."""
        channel, self.channel = self.channel, None
        if channel is None:
            return
        channel.close()
        deadline = time.monotonic() + REPLY_WAIT
        while self.pid is not None:
            try:
                done, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            if done or time.monotonic() >= deadline:
                break
            time.sleep(0.001)


def start(settings, user: str, log):
    """The user's record keeper, or None when the session has no bulletins
    to take: the user's record is the newest bulletin's number or more (a
    login with nothing new costs a listing and the record's read, and no
    keeper), or the database cannot be opened and -B says that is fine.
    As root: the keeper process, forked now.  MaildropError with Qpopper's
    text when the database cannot be opened and -B is not given."""
    database = Database(settings)
    try:
        last = database.fetch(user)
    except (ndbm.Error, OSError) as exc:
        log.error("Unable to open the bulletin database %s: %s" % (database.path, exc))
        if settings.bulldb_nonfatal:
            return None
        raise MaildropError(replies.text(replies.BULLDB_UNAVAILABLE)) from None
    if last is not None:
        try:
            found = listing(settings.bulldir)
        except OSError:
            found = [Bulletin(last + 1, "")]    # the session tries, and logs why not
        if not found or found[-1].number <= last:
            return None
    if os.geteuid() != 0:
        return Keeper(user, database, last)
    ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:                                            # pragma: no cover (child)
        code = 1
        try:
            ours.close()
            _keep(Channel(theirs), database, user, time.monotonic() + settings.login_timeout)
            code = 0
        finally:
            os._exit(code)
    theirs.close()
    return Keeper(user, database, last, Channel(ours), pid)


def _keep(channel: Channel, database: Database, user: str, deadline: float) -> None:
    """The keeper: nothing but the channel open, the user's record only."""
    for signum in (_signal.SIGHUP, _signal.SIGTERM, _signal.SIGINT, _signal.SIGALRM):
        _signal.signal(signum, _signal.SIG_DFL)
    keep = channel.sock.fileno()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 16)
    while True:
        try:
            request = channel.receive(deadline)
        except ChannelError:
            return                          # the session is done with it
        try:
            if (len(request) == 2 and request[0] == b"STORE" and request[1].isdigit()
                  and len(request[1]) < 19):
                database.store(user, int(request[1]))
                answer = [b"OK"]
            else:
                return                      # not the session's protocol: stop
        except (ndbm.Error, OSError) as exc:
            answer = [b"NO", ("the bulletin database %s: %s" % (database.path, exc))
                      .encode("latin-1", "replace")]
        try:
            channel.send(answer, deadline)
        except ChannelError:
            return
