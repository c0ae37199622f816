"""The wire encoder, _native/wire.c (twin: popper/maildrop/wire.py)."""

INCLUDES = """
#include "popper.h"
"""

TYPES = """
#define PN_AT_LINE_START ...
#define PN_AFTER_CR ...
"""

FUNCTIONS = """
size_t pn_wire_encode(const char *in, size_t n, char *out, int *state);
size_t pn_retr_reply(const char *prefix, size_t prefix_len, const char *data, size_t cut,
                     size_t end, const char *uid, size_t uid_len, char *out);
"""

CUSTOMIZATIONS = ""
