"""A kept message's edits at QUIT, _native/rewrite.c (twin:
popper/maildrop/rewrite.py, pure_message_edits)."""

INCLUDES = """
#include "popper.h"
"""

TYPES = """
#define PN_EDITS_OTHER_FORMAT ...
#define PN_EDITS_NO_ROOM ...
"""

FUNCTIONS = """
size_t pn_message_edits_room(size_t len, size_t uid_len, size_t mmdf_len);
int pn_message_edits(const char *msg, size_t len, size_t header, size_t body,
                     size_t content_end, int flags, const char *uid, size_t uid_len,
                     int seen, int headers, int add_status, const char *mmdf,
                     size_t mmdf_len, char *out, size_t room, long *lens);
"""

CUSTOMIZATIONS = ""
