"""popper: a faithful re-implementation of Qualcomm's Qpopper POP3 server.

The layout follows docs/architecture.md: ``protocol`` is the sans-I/O POP3
core, ``maildrop`` owns the spool files, ``auth`` the password checks,
``transport`` the sockets.  ``native`` binds the compiled modules and
imports nothing else of popper; each pure twin is chosen beside its own
code (``maildrop.scan``, ``auth.cryptpw``...).
"""

__version__ = "0.1.0"
