"""PAM: the service configure.py --with-pam named, or `set pam-service`.

The login is pam_authenticate, pam_acct_mgmt and pam_setcred (native.py,
or python-pam), with PAM_RHOST the client's host and PAM_TTY its address.
PAM's own message and code go to the log; the client gets the one reply
every failed login gets, so it cannot tell an unknown user from a wrong
password.  The account must also be a Unix one (its uid and gid).
"""

from popper import native
from popper.auth import Account, AuthError
from popper.protocol import replies


class PamAuth:
    def __init__(self, service: str, log):
        self.service, self.log = service, log

    def authenticate(self, user: str, password: bytes, client) -> Account:
        code, text = native.pam_login(self.service, user, password, client.host, client.ip)
        self.log.reopen_syslog()        # PAM modules may have called openlog() themselves
        if code != 0:
            raise AuthError(replies.BAD_PASSWORD, user=user,
                            log='PAM authentication failed for user "%s": %s (%d)'
                            % (user, text, code))
        entry = native.getpwnam(user)
        if entry is None:
            raise AuthError(replies.BAD_PASSWORD, user=user,
                            log="PAM accepted %s, who has no Unix account" % user)
        return Account(entry.name, entry.uid, entry.gid, entry.dir, entry.shell)


