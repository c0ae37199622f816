"""popauth: the APOP database, with Qpopper 4.0's interface and texts
(popauth.c; docs/popauth.8).

    popauth -init [-safe]            make an empty database (root)
    popauth -list [user | ALL]       a user's entry (one's own by default), or all
    popauth -user user [password]    set a user's secret (root, the POP administrator)
    popauth -delete user             remove a user's entry (root, the POP administrator)
    popauth                          change one's own secret
    popauth -help | -version

Qpopper's popauth is setuid root; this one is not (a #! script cannot be):
it does what the invoking user may do.  Root, or the POP administrator
where the database's directory is theirs, changes the database; run
through sudo with no argument, it changes the secret of the user sudo ran
it for (SUDO_UID), who is asked for the old one.  A change is written to
new files and committed by renames (auth/apop.py), so a kill leaves the
old database or the new one.  popper's -f file may name the database and
the POP administrator (apop-file, popuid) for popauth too: -f FILE first.
"""

import errno
import hmac
import os
import pwd
import sys

from popper import __version__, ndbm, server
from popper.auth import apop
from popper.log import Log
from popper.settings import ConfigError, Settings, load_config_file

SWITCHES = {"-init": 0, "-safe": 0, "-list": 0, "-user": 1, "-delete": 1,
            "-help": 0, "--help": 0, "-version": 0}

HELP = ("usage: {prog} [ <action> ]\n"
        "<action>: -init [ -safe ] \n"
        "          -list [ <user> | ALL ]\n"
        "          -user <user> [ <password> ]\n"
        "          -delete <user>\n"
        "          -help\n"
        "          -version\n")


class NotFound(Exception):
    """The user to delete has no entry."""


class Exit(Exception):
    """Leave with status args[0]."""


class Popauth:
    def __init__(self, prog: str, settings: Settings, log, stdin=None, stdout=None,
                 stderr=None):
        self.prog, self.settings, self.log = prog, settings, log
        self.stdin = stdin or sys.stdin
        self.stdout, self.stderr = stdout or sys.stdout, stderr or sys.stderr

    def adios(self, text: str):
        """popauth.c's adios(): the program, the text, on stderr; exit 1."""
        self.stderr.write("%s: %s\n" % (self.prog, text))
        self.stderr.flush()
        raise Exit(1)

    def helpful(self):
        self.stderr.write(HELP.format(prog=self.prog))
        raise Exit(1)

    # --- the command line ---------------------------------------------------------------

    def parse(self, args: list) -> dict:
        opts = {"init": False, "safe": False, "list": False, "delete": False, "user": False,
                "userid": None, "password": None}
        while args:
            word = args.pop(0)
            if not word.startswith("-"):
                self.stderr.write('%s: unrecognized switch "%s"' % (self.prog, word))
                self.helpful()
            if word not in SWITCHES:
                self.stderr.write('%s: "%s" unknown option\n' % (self.prog, word))
                self.helpful()
            if SWITCHES[word] and (not args or args[0].startswith("-")):
                self.adios("missing argument for %s" % word)
            if word == "-version":
                self.stdout.write("%s v%s\n" % (self.prog, __version__))
                raise Exit(0)
            if word in ("-help", "--help"):
                self.helpful()
            if word == "-safe":
                opts["safe"] = True
            elif word in ("-init", "-list", "-delete"):
                opts.update(init=False, list=False, delete=False)
                opts[word[1:]] = True
                if word == "-delete":
                    opts["userid"] = args.pop(0)
                elif word == "-list" and args and not args[0].startswith("-"):
                    opts["userid"] = args.pop(0)
            else:                                   # -user
                opts["user"], opts["userid"] = True, args.pop(0)
                if args and not args[0].startswith("-"):
                    opts["password"] = args.pop(0)
        return opts

    # --- who is asking --------------------------------------------------------------------

    def run(self, args: list) -> int:
        opts = self.parse(args)
        if not self.settings.apop_db:
            self.adios("not compiled with either SCRAM or APOP options")
        myuid = os.getuid()
        action = opts["init"] or opts["list"] or opts["delete"] or opts["user"]
        # sudo popauth (no argument): the secret of the user sudo ran it for.
        sudo_uid = os.environ.get("SUDO_UID", "")
        if myuid == 0 and not action and sudo_uid.isdigit():
            myuid = int(sudo_uid)
        me, pop = passwd(uid=myuid), passwd(name=self.settings.popuid)
        if me is None:
            self.adios("Sorry, don't know who you (uid %d) are." % myuid)
        if pop is None:
            self.adios('"%s": userid unknown' % self.settings.popuid)
        self.me, self.pop = me, pop
        self.privileged = myuid == 0 or pop.pw_uid == myuid
        userid = opts["userid"]
        if not self.privileged and (opts["delete"] or (userid is not None and userid != me.pw_name)
                                    or (opts["user"] and userid is not None)):
            self.adios('Only superuser or user "%s" can perform the requested function'
                       % self.settings.popuid)
        if myuid != 0 and opts["init"]:
            self.adios("Only superuser can perform the requested function")
        base = self.settings.apop_db
        self.files = apop.names(base)
        self.db_name = "%s (and .dir )" % self.files["pag"]
        try:
            if opts["delete"]:
                return self.delete(userid)
            if opts["init"]:
                return self.init(opts["safe"])
            if opts["list"]:
                return self.list(userid or me.pw_name)
            return self.set_secret(userid, opts["password"])
        except apop.DBError as exc:
            self.adios("%s: unable to open POP authentication DB:\n\t%s" % (base, exc))
        except OSError as exc:
            self.adios("%s: unable to open POP authentication DB:\n\t%s (%d)"
                       % (base, exc.strerror, exc.errno))

    def change(self, edit, create=False):
        return apop.change(self.settings.apop_db, self.pop.pw_uid, self.pop.pw_gid, edit,
                           create=create)

    # --- the actions --------------------------------------------------------------------

    def delete(self, userid: str) -> int:
        self.stderr.write('Warning: deleting user "%s"\n' % userid)

        def edit(old, new):
            k = apop.key(userid)
            if old.fetch(k) is None:
                raise NotFound()
            apop.copy_records(old, new, skip=k)
        try:
            self.change(edit)
        except NotFound:
            self.adios("User '%s' not found in authentication database" % userid)
        self.log.notice('popauth: user "%s" deleted by "%s" from db "%s"'
                        % (userid, self.me.pw_name, self.settings.apop_db))
        return 0

    def init(self, safe: bool) -> int:
        if os.path.lexists(self.files["dir"]):
            if safe:
                self.stderr.write("POP authentication DB not initialized (exists): %s\n"
                                  % self.db_name)
                return 0
            self.stdout.write("Really initialize POP authentication DB? ")
            self.stdout.flush()
            if not self.stdin.readline(30).startswith("y"):
                return 1
            self.log.notice('popauth: user "%s" removed existing db "%s"'
                            % (self.me.pw_name, self.settings.apop_db))
        try:
            self.change(lambda old, new: None, create=True)
        except (OSError, apop.DBError) as exc:
            self.adios("unable to create POP authentication DB: %s"
                       % (exc.strerror if isinstance(exc, OSError) else exc))
        self.log.notice('popauth: user "%s" initialized db "%s"'
                        % (self.me.pw_name, self.settings.apop_db))
        return 0

    def reader(self):
        return apop.Reader(self.settings.apop_db, self.pop.pw_uid)

    def list(self, userid: str) -> int:
        with self.reader() as db:
            if db is None:
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
            keys = list(db.keys()) if userid == "ALL" else [apop.key(userid)]
            for k in keys:
                value = db.fetch(k)
                name = k.split(b"\0", 1)[0].decode("latin-1")
                if value is None:
                    if userid != "ALL":
                        self.adios('no entry for "%s" in POP authentication DB' % userid)
                    self.stdout.write("%.16s:%*s *** no information?!?\n"
                                      % (name, 16 - len(name), " "))
                    continue
                scram = apop.scram_field(value)
                self.stdout.write("%-16s: %s %s\n" % (name, "APOP" if value[:1] != b"\0"
                                                      else "    ", "SCRAM" if scram else ""))
        return 0

    def set_secret(self, userid, given) -> int:
        if userid is None:
            userid = self.me.pw_name
        else:
            # Whom popper knows: the passwd database, or popper's set userdb.
            account = server.authenticator(self.settings, self.log).account(userid)
            if account is None:
                self.adios("Sorry, don't know who user %s is." % userid)
            userid = account.name
        with self.reader() as db:
            if db is None:
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
            value = db.fetch(apop.key(userid))
        old = apop.decode(value) if value is not None else b""
        self.stderr.write("%s only APOP password for %s.\n"
                          % ("Changing" if value is not None else "Adding", userid))
        typed_old = b""
        if not self.privileged and old:
            typed_old = self.getpass("Old password:")
            if not typed_old or not hmac.compare_digest(typed_old, old):
                self.adios("Sorry, password entered incorrectly\n")
        secret = self.new_secret(given, typed_old)
        if secret == b"*":
            secret = b""                # popauth.c: "*" clears the secret

        def edit(old_db, new):
            k = apop.key(userid)
            apop.copy_records(old_db, new, skip=k)
            new.store(k, apop.encode(secret, apop.scram_field(old_db.fetch(k))))
        try:
            self.change(edit)
        except ndbm.Error as exc:           # TooBig, Corrupt
            self.adios("POP authentication DB %s may be corrupt?!? (%s)" % (self.db_name, exc))
        self.log.notice("popauth: %s %s only APOP password for %s"
                        % (self.me.pw_name, "changed" if value is not None else "added", userid))
        return 0

    def new_secret(self, given, typed_old: bytes) -> bytes:
        """The new secret, asked for (twice) unless given; Qpopper's rules
        for a weak one: asked once more, then taken."""
        flags = 0
        for insist in range(2):
            if insist:
                self.stdout.write("Please use %s.\n" % ("at least one non-numeric character"
                                                         if flags == 1 else "a longer password"))
                self.stdout.flush()
            if given is not None:
                secret = given.encode("latin-1")[:99]
            else:
                secret = self.getpass("New password:")[:99]
                if not secret or typed_old.startswith(secret):
                    self.stderr.write("Password unchanged.\n")
                    raise Exit(1)
            if secret == b"*":
                break
            flags = strength(secret)
            if given is not None or strong(secret, flags):
                break
        if given is None and secret != self.getpass("Retype new password:")[:99]:
            self.stderr.write("Mismatch -- password unchanged.\n")
            raise Exit(1)
        return secret

    def getpass(self, prompt: str) -> bytes:
        """GNU getpass, as popauth.c has it: the terminal, echo off; without
        one, stdin, the prompt on stderr."""
        try:
            tty = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
        except OSError:
            tty = None
        if tty is None:
            self.stderr.write(prompt)
            self.stderr.flush()
            line = self.stdin.buffer.readline() if hasattr(self.stdin, "buffer") \
                else self.stdin.readline().encode("latin-1")
            return line.rstrip(b"\n")
        import termios
        with open(tty, "r+b", buffering=0) as f:
            try:
                saved = termios.tcgetattr(tty)
            except termios.error:
                saved = None
            if saved is not None and saved[3] & termios.ECHO:
                quiet = list(saved)
                quiet[3] &= ~termios.ECHO
                termios.tcsetattr(tty, termios.TCSAFLUSH, quiet)
            else:
                saved = None
            try:
                f.write(prompt.encode())
                line = f.readline()
            finally:
                if saved is not None:
                    termios.tcsetattr(tty, termios.TCSAFLUSH, saved)
                    f.write(b"\n")
        return line.rstrip(b"\n")


def passwd(name: str = None, uid: int = None):
    """The passwd entry of a name or a uid, or None."""
    try:
        return pwd.getpwnam(name) if name is not None else pwd.getpwuid(uid)
    except KeyError:
        return None


def strength(secret: bytes) -> int:
    """popauth.c's classes: 1 digits, 2 lower case, 4 upper case, 8 other."""
    flags = 0
    for c in secret:
        flags |= (2 if 97 <= c <= 122 else 4 if 65 <= c <= 90 else 1 if 48 <= c <= 57 else 8)
    return flags


def strong(secret: bytes, flags: int) -> bool:
    """At least 4 characters of (Qpopper's test) flags >= 7, 5 of two
    classes of letters and digits, 6 of letters of one case."""
    n = len(secret)
    return ((flags >= 7 and n >= 4) or (flags in (2, 4) and n >= 6)
            or (flags in (3, 5, 6) and n >= 5))


def main(argv: list = None) -> int:
    argv = sys.argv if argv is None else argv
    prog = argv[0] or "popauth"
    args = argv[1:]
    settings = Settings()
    if args[:1] == ["-f"] and len(args) > 1:            # popper's, not Qpopper's
        try:
            load_config_file(settings, args[1])
        except ConfigError as exc:
            sys.stderr.write("%s: %s\n" % (prog, exc))
            return 1
        args = args[2:]
    log = Log(os.path.basename(prog), settings.log_facility, False, None, False)
    try:
        return Popauth(prog, settings, log).run(args)
    except Exit as exc:
        return exc.args[0]
    except KeyboardInterrupt:
        return 1


if __name__ == "__main__":
    sys.exit(main())
