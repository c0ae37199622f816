"""Server mode's compaction plan, _native/compact.c (twin:
popper/maildrop/compact.py, plan over rewrite.output_pieces)."""

INCLUDES = """
#include "popper.h"
"""

TYPES = """
#define PN_PLAN_ELSEWHERE ...

typedef struct {
    int64_t *segments;
    size_t count, cap;
    char *literal;
    size_t literal_len, literal_cap;
    int64_t start, total;
    int error;
} pn_plan;
"""

FUNCTIONS = """
int pn_compact_plan(int fd, const int64_t *kept, size_t nkept, const int64_t *start,
                    const int64_t *header, const int64_t *body, const int64_t *content_end,
                    const int64_t *end, const int *flags, const char *uids,
                    const int64_t *uid_ends, const unsigned char *seen, int headers,
                    int add_status, const char *mmdf, size_t mmdf_len, const char *first,
                    size_t first_len, size_t head, int64_t piece, pn_plan *plan);
void pn_plan_free(pn_plan *plan);
int pn_compact_write(int spool_fd, int stage_fd, const int64_t *segments, size_t count,
                     const char *literal, int64_t sa, int64_t sb, int64_t stage_at,
                     int64_t head);
"""

CUSTOMIZATIONS = ""
