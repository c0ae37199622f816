"""Becoming the user: the one place popper changes its identity.

Started as root (from inetd), popper becomes the authenticated user --
supplementary groups, gid, uid, in that order, then checked -- before it
opens any file the user can influence.  Started as anybody else, it serves
only users it can serve as itself.
"""

import os

from popper import native
from popper.protocol import replies


class CannotServe(Exception):
    """popper cannot take this account's identity; args[0] is the -ERR text."""


def become(account, spool_dir: str) -> None:
    if os.geteuid() != 0:
        if account.uid is not None and account.uid != os.geteuid():
            raise CannotServe(replies.text(replies.CANNOT_SERVE, uid=os.geteuid(),
                                           user=account.name))
        return
    if account.uid is None or account.gid is None:
        raise CannotServe(replies.text(replies.CANNOT_SERVE, uid=0, user=account.name))
    groups = {account.gid}
    entry = native.getpwnam(account.name)
    if entry is not None and entry.uid == account.uid:
        groups.update(os.getgrouplist(account.name, account.gid))      # initgroups()
    mail_group = _mail_group(spool_dir)
    if mail_group is not None:
        groups.add(mail_group)
    os.setgroups(sorted(groups))
    os.setresgid(account.gid, account.gid, account.gid)
    os.setresuid(account.uid, account.uid, account.uid)
    if (os.getresuid() != (account.uid,) * 3 or os.getresgid() != (account.gid,) * 3
            or set(os.getgroups()) != groups):
        raise SystemExit("popper: could not become uid %d gid %d" % (account.uid, account.gid))
    if mail_group is not None:
        os.umask(0o007)     # a spool popper creates is the mail group's to write, as the MTA's


def _mail_group(spool_dir: str):
    """The group of a group-writable spool directory (mail, on Debian:
    2775 root:mail), which the user needs to make the dot-lock there, as
    Qpopper's setgid to it gave; None for a root-group or private one."""
    try:
        st = os.stat(spool_dir)
    except OSError:
        return None
    return st.st_gid if st.st_gid != 0 and st.st_mode & 0o020 else None
