"""popper: a faithful re-implementation of Qualcomm's Qpopper POP3 server.

The layout follows docs/architecture.md: ``protocol`` is the sans-I/O POP3
core, ``maildrop`` owns the spool files, ``auth`` the password checks,
``transport`` the sockets.  ``native`` is the only importer of the compiled
helper module and picks the pure-Python twins when it is not there.
"""

__version__ = "0.1.0"
