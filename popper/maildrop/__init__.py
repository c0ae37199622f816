"""The maildrop: spool scanning, locking, the journal and the session's drop."""


class MaildropError(Exception):
    """A maildrop failure; args[0] is the -ERR text for the client.  The
    lock and journal failures are kinds of it."""
