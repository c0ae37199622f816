"""A PAM login through python-pam: the pure-Python twin of the cffi
binding in native.py (_native_pam_login), used when popper._cpam is not
built.  python-pam starts the transaction itself, so PAM_RHOST and
PAM_TTY can only be set after pam_authenticate, for the account check."""

from ctypes import c_char_p


def pam_login(service: str, user: str, password: bytes, rhost: str, tty: str):
    """(code, text): PAM_SUCCESS (0) when the password is right and the
    account may log in (pam_authenticate, pam_acct_mgmt, pam_setcred)."""
    try:
        import pam
    except ImportError as exc:          # python-pam 2.0.x also needs six, undeclared
        return 28, "PAM is not available (neither popper._cpam nor python-pam: %s)" % exc
    p = pam.pam()
    try:
        ok = p.authenticate(user, password, service=service, call_end=False, resetcreds=False)
    except ValueError as exc:           # a NUL in the user name or password
        return 7, str(exc)
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
