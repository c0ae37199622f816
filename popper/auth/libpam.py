"""A PAM login: pam_login() is the cffi binding (popper/native.py) when
popper._cpam is built and POPPER_PUREPYTHON is unset, else
pure_pam_login(), its twin through python-pam.  python-pam starts the
transaction itself, so PAM_RHOST and PAM_TTY can only be set after
pam_authenticate, for the account check.

What C would cut at a NUL (in any of the strings PAM is given), or text
beyond latin-1, is refused by both twins alike, before PAM sees it
(PAM_AUTH_ERR).
"""

from popper import native
from popper.auth.unixdb import c_name

PAM_AUTH_ERR = 7
REFUSED = (PAM_AUTH_ERR, "a NUL (or a character beyond latin-1) in what PAM would be given")


def _refusing_nul(login):
    """login, with the refusal of what C would cut at a NUL in front."""
    def pam_login(service: str, user: str, password: bytes, rhost: str, tty: str):
        if b"\0" in password or None in map(c_name, (service, user, rhost, tty)):
            return REFUSED
        return login(service, user, password, rhost, tty)
    return pam_login


def _python_pam(service: str, user: str, password: bytes, rhost: str, tty: str):
    """(code, text): PAM_SUCCESS (0) when the password is right and the
    account may log in (pam_authenticate, pam_acct_mgmt, pam_setcred)."""
    from ctypes import c_char_p         # the pure twin's, not the C binding's
    try:
        import pam
    except ImportError as exc:          # python-pam 2.0.x also needs six, undeclared
        return 28, "PAM is not available (neither popper._cpam nor python-pam: %s)" % exc
    p = pam.pam()
    try:
        ok = p.authenticate(user, password, service=service, call_end=False, resetcreds=False)
    except ValueError as exc:           # a NUL in the service, say
        return PAM_AUTH_ERR, str(exc)
    handle = getattr(p, "handle", None)
    try:
        if not ok:
            return p.code, p.reason
        p.pam_set_item(handle, 4, c_char_p(rhost.encode("latin-1")))     # PAM_RHOST
        p.pam_set_item(handle, 3, c_char_p(tty.encode("latin-1")))       # PAM_TTY
        for step in (lambda: p.pam_acct_mgmt(handle, 0),
                     lambda: p.pam_setcred(handle, 2)):                    # PAM_ESTABLISH_CRED
            code = step()
            if code:
                return code, p.pam_strerror(handle, code).decode("latin-1", "replace")
        return 0, "Success"
    finally:
        if handle is not None and getattr(handle, "handle", 0):
            p.pam_end(handle, 0)


def _cffi_pam(service: str, user: str, password: bytes, rhost: str, tty: str):
    return native.pam_login(service.encode("latin-1"), user.encode("latin-1"), password,
                            rhost.encode("latin-1"), tty.encode("latin-1"))


pure_pam_login = _refusing_nul(_python_pam)
native_pam_login = _refusing_nul(_cffi_pam)

pam_login = native_pam_login if native.PAM_NATIVE else pure_pam_login
