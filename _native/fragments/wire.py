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
"""

CUSTOMIZATIONS = ""
