"""crypt(3) (twins: popper/auth/cryptpw.py, and crypt_gensalt in
popper/auth/unixdb.py).

crypt_gensalt_rn is an optional symbol: libxcrypt has it, the C libraries
before it (glibc's own libcrypt, SCO's) do not.  Popper_HAS_CRYPT_GENSALT
says which; popper asks for the default method with a NULL prefix and
NULL random bytes, which is what libxcrypt's two CRYPT_GENSALT_IMPLEMENTS_*
macros promise.  Without them crypt_gensalt_rn is a NULL pointer, never
called (popper/native.py looks at the flag), and the twin's SHA-512
setting stands in.
"""

INCLUDES = """
#include <crypt.h>
"""

TYPES = """
static const long Popper_HAS_CRYPT_GENSALT;
struct crypt_data { ...; };
"""

FUNCTIONS = """
char *crypt_r(const char *phrase, const char *setting, struct crypt_data *data);
char *crypt_gensalt_rn(const char *prefix, unsigned long count, const char *rbytes,
                       int nrbytes, char *output, int output_size);
"""

CUSTOMIZATIONS = """
#if defined(CRYPT_GENSALT_IMPLEMENTS_DEFAULT_PREFIX) && defined(CRYPT_GENSALT_IMPLEMENTS_AUTO_ENTROPY)
static const long Popper_HAS_CRYPT_GENSALT = 1;
#else
static const long Popper_HAS_CRYPT_GENSALT = 0;
static char *(*crypt_gensalt_rn)(const char *, unsigned long, const char *, int, char *,
                                 int) = NULL;
#endif
"""
