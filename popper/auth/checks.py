"""What start-up can tell will keep the back-end from logging users in,
without loading it: cli's warnings run before every inetd connection's
greeting, and the back-ends bring cffi and the C extension (or ctypes)."""

import os

SHADOW_FILE = "/etc/shadow"  # what NSS's files module reads (Linux, Solaris, illumos)

# Where PAM looks for a service's configuration: Linux-PAM's, OpenPAM's and
# Solaris 11.4's directories (Linux-PAM's vendor directory too), then the
# one file of older PAMs (Solaris 10, UnixWare, HP-UX, AIX).
PAM_DIRS = ("/etc/pam.d", "/usr/lib/pam.d", "/usr/local/etc/pam.d")
PAM_CONF = "/etc/pam.conf"


def backend_problems(settings) -> list:
    """The problems of the back-end server.authenticator() picks (a user
    database that cannot be read is refused by cli.check)."""
    problem = (None if settings.userdb else
               service_problem(settings.pam_service) if settings.pam_service
               else shadow_problem())
    return [problem] if problem else []


def shadow_problem(path: str = SHADOW_FILE):
    """Why this process cannot read the shadow passwords, or None: it can,
    or there is no shadow file (the hashes are in passwd, NIS or LDAP)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return ("uid %d cannot read the shadow passwords (%s: %s), so no user whose passwd "
                "entry says \"x\" can log in: run popper as root, or name another back-end "
                "with set userdb or set pam-service"
                % (os.geteuid(), path, exc.strerror))
    os.close(fd)
    return None


def service_problem(service: str):
    """Why PAM will not find service's own configuration, or None."""
    if any(os.path.isfile(os.path.join(d, service)) for d in PAM_DIRS):
        return None
    try:
        with open(PAM_CONF, "rb") as f:        # bytes: no codec to load
            name = service.encode("latin-1")
            if any(line.split()[:1] == [name] for line in f):
                return None
    except (OSError, UnicodeError):
        pass
    return ('PAM service "%s": there is no %s/%s, nor a line for it in %s, so PAM uses its '
            '"other" service: install %s/%s, or name an existing service with set '
            "pam-service" % (service, PAM_DIRS[0], service, PAM_CONF, PAM_DIRS[0], service))
