"""Becoming the user: the one place popper changes its identity.

Started as root (from inetd), popper becomes the authenticated user --
supplementary groups, gid, uid, in that order, then checked -- before it
opens any file the user can influence.  Started as anybody else, it serves
only users it can serve as itself.
"""

from __future__ import annotations

import os
import pwd

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
    try:
        if pwd.getpwnam(account.name).pw_uid == account.uid:
            groups.update(os.getgrouplist(account.name, account.gid))
    except KeyError:
        pass
    try:
        # A group-writable spool directory's group (mail) lets the user make
        # the dot-lock there, as Qpopper's setgid to that group did.
        st = os.stat(spool_dir)
        if st.st_gid != 0 and st.st_mode & 0o020:
            groups.add(st.st_gid)
    except OSError:
        pass
    os.setgroups(sorted(groups))
    os.setresgid(account.gid, account.gid, account.gid)
    os.setresuid(account.uid, account.uid, account.uid)
    if os.getresuid() != (account.uid,) * 3 or os.getresgid() != (account.gid,) * 3:
        raise SystemExit("popper: could not become uid %d gid %d" % (account.uid, account.gid))
