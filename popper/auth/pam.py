"""PAM: the service configure.py --with-pam named, or `set pam-service`.

The login is pam_authenticate, pam_acct_mgmt and pam_setcred (libpam.py:
popper._cpam, or python-pam), with PAM_RHOST the client's host and
PAM_TTY its address.
PAM's own message and code go to the log; the client gets the one reply
every failed login gets, so it cannot tell an unknown user from a wrong
password.  The account must also be a Unix one (its uid and gid).

A service PAM has no configuration for is not an error to PAM: it uses
its "other" service, which may let nobody in (Debian: pam_deny) or
everyone.  settings.service_problem() says so at start-up.
"""

from popper.auth import AuthError, libpam, passwd_account
from popper.protocol import replies


class PamAuth:
    def __init__(self, service: str, log):
        self.service, self.log = service, log

    def account(self, user: str):
        """user's Unix account, or None (APOP: the secret is in pop.auth)."""
        return passwd_account(user)

    def authenticate(self, user: str, password: bytes, client):
        code, text = libpam.pam_login(self.service, user, password, client.host, client.ip)
        self.log.reopen_syslog()        # PAM modules may have called openlog() themselves
        if code != 0:
            raise AuthError(replies.BAD_PASSWORD, user=user,
                            log='PAM authentication failed for user "%s": %s (%d)'
                            % (user, text, code))
        account = passwd_account(user)
        if account is None:
            raise AuthError(replies.BAD_PASSWORD, user=user,
                            log="PAM accepted %s, who has no Unix account" % user)
        return account


