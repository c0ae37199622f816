/* ndbm.c -- classic 4.3BSD/SVR4 ndbm files on two fds (twin: popper/ndbm.py,
 * which it follows function by function; docs/ndbm.md has the format).
 *
 * Nothing is kept between calls; every page is checked as it is read, so
 * a damaged file gives PN_NDBM_CORRUPT, never a read or write outside a
 * buffer; every loop is bounded.  The shorts of a page are read and
 * written in the byte order asked for, whatever the host's. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include "popper.h"

#define PBLKSIZ PN_NDBM_PBLKSIZ
#define DBLKSIZ PN_NDBM_DBLKSIZ
#define MAX_PAIR (PBLKSIZ - 7)          /* key + value bytes an empty page holds */
#define HASH_MASK 0xFFFFFFFFu
#define LEVELS 33                       /* hmask 0 .. 2**32 - 1 */

/* --- the hash --- */

static const uint32_t hitab[16] = {
    61, 57, 53, 49, 45, 41, 37, 33, 29, 25, 21, 17, 13, 9, 5, 1,
};

static const uint32_t hltab[64] = {
    06100151277, 06106161736, 06452611562, 05001724107,
    02614772546, 04120731531, 04665262210, 07347467531,
    06735253126, 06042345173, 03072226605, 01464164730,
    03247435524, 07652510057, 01546775256, 05714532133,
    06173260402, 07517101630, 02431460343, 01743245566,
    00261675137, 02433103631, 03421772437, 04447707466,
    04435620103, 03757017115, 03641531772, 06767633246,
    02673230344, 00260612216, 04133454451, 00615531516,
    06137717526, 02574116560, 02304023373, 07061702261,
    05153031405, 05322056705, 07401116734, 06552375715,
    06165233473, 05311063631, 01212221723, 01052267235,
    06000615237, 01075222665, 06330216006, 04402355630,
    01451177262, 02000133436, 06025467062, 07121076461,
    03123433522, 01010635225, 01716177066, 05161746527,
    01736635071, 06243505026, 03637211610, 01756474365,
    04723077174, 03642763134, 05750130273, 03655541561,
};

/* Two nibble steps per byte, low then high; only nibbles are used, so a
 * signed char hashes as an unsigned one; modulo 2**32. */
uint32_t pn_ndbm_hash(const char *key, size_t n)
{
    const unsigned char *p = (const unsigned char *)key;
    uint32_t hashl = 0, hashi = 0;
    for (size_t i = 0; i < n; i++) {
        hashi = (hashi + hitab[p[i] & 15]) & 63;
        hashl += hltab[hashi];
        hashi = (hashi + hitab[p[i] >> 4]) & 63;
        hashl += hltab[hashi];
    }
    return hashl;
}

/* --- I/O --- */

static int io_error(pn_ndbm_status *status)
{
    status->error = errno ? errno : EIO;
    return PN_NDBM_IO;
}

/* One whole block at offset, or zeros for a hole or a block cut short. */
static int read_block(int fd, unsigned char *buf, size_t size, uint64_t offset,
                      pn_ndbm_status *status)
{
    ssize_t got;
    do
        got = pread(fd, buf, size, (off_t)offset);
    while (got < 0 && errno == EINTR);
    if (got < 0)
        return io_error(status);
    if ((size_t)got != size)
        memset(buf, 0, size);
    return PN_NDBM_OK;
}

static int write_all(int fd, const unsigned char *buf, size_t size, uint64_t offset,
                     pn_ndbm_status *status)
{
    while (size) {
        ssize_t done = pwrite(fd, buf, size, (off_t)offset);
        if (done < 0 && errno == EINTR)
            continue;
        if (done <= 0) {
            if (done == 0)
                errno = EIO;
            return io_error(status);
        }
        buf += done, size -= (size_t)done, offset += (uint64_t)done;
    }
    return PN_NDBM_OK;
}

/* --- pages --- */

typedef struct {
    unsigned char buf[PBLKSIZ];
    int off[PBLKSIZ / 2];       /* sp[1..n]: item i at [off[i], i ? off[i-1] : 1024) */
    int n;
    int big;
    uint64_t number;
} page;

static int get16(const unsigned char *p, int big)
{
    unsigned v = big ? (unsigned)p[0] << 8 | p[1] : (unsigned)p[1] << 8 | p[0];
    return v & 0x8000 ? (int)v - 0x10000 : (int)v;
}

static void put16(unsigned char *p, int v, int big)
{
    unsigned u = (unsigned)v & 0xFFFF;
    p[big ? 0 : 1] = (unsigned char)(u >> 8);
    p[big ? 1 : 0] = (unsigned char)u;
}

static int corrupt(pn_ndbm_status *status, int reason, int64_t number)
{
    status->reason = reason;
    status->page = number;
    return PN_NDBM_CORRUPT;
}

/* The page's count and offsets, checked (as _Page.__init__). */
static int parse_page(page *p, pn_ndbm_status *status)
{
    int count = get16(p->buf, p->big), bound = PBLKSIZ;
    if (count < 0 || count & 1)
        return corrupt(status, PN_NDBM_ODD_COUNT, (int64_t)p->number);
    if ((count + 1) * 2 > PBLKSIZ)
        return corrupt(status, PN_NDBM_COUNT_PAST, (int64_t)p->number);
    for (int i = 0; i < count; i++) {
        int o = get16(p->buf + 2 + 2 * i, p->big);
        if (o > bound)
            return corrupt(status, PN_NDBM_OUT_OF_ORDER, (int64_t)p->number);
        p->off[i] = bound = o;
    }
    if (bound < (count + 1) * 2)
        return corrupt(status, PN_NDBM_OVERLAP, (int64_t)p->number);
    p->n = count;
    return PN_NDBM_OK;
}

static int read_page(int pag_fd, uint64_t number, int big, page *p, pn_ndbm_status *status)
{
    int rc = read_block(pag_fd, p->buf, PBLKSIZ, number * PBLKSIZ, status);
    if (rc)
        return rc;
    p->big = big;
    p->number = number;
    return parse_page(p, status);
}

static int write_page(int pag_fd, const page *p, pn_ndbm_status *status)
{
    return write_all(pag_fd, p->buf, PBLKSIZ, p->number * PBLKSIZ, status);
}

static int item_end(const page *p, int i)
{
    return i ? p->off[i - 1] : PBLKSIZ;
}

static int find(const page *p, const char *key, size_t klen)
{
    for (int i = 0; i < p->n; i += 2) {
        int start = p->off[i];
        if ((size_t)(item_end(p, i) - start) == klen && memcmp(p->buf + start, key, klen) == 0)
            return i;
    }
    return -1;
}

static void pack(page *p)
{
    put16(p->buf, p->n, p->big);
    for (int i = 0; i < p->n; i++)
        put16(p->buf + 2 + 2 * i, p->off[i], p->big);
}

/* Remove the pair at item i; the data below it move up. */
static void delete_pair(page *p, int i)
{
    if (i + 2 < p->n) {
        int size = item_end(p, i) - p->off[i + 1], low = p->off[p->n - 1];
        memmove(p->buf + low + size, p->buf + low, (size_t)(p->off[i + 1] - low));
        for (int j = i; j + 2 < p->n; j++)
            p->off[j] = p->off[j + 2] + size;
    }
    p->n -= 2;
    pack(p);
}

/* Put the pair below the others; 0 if it does not fit. */
static int add_pair(page *p, const char *key, size_t klen, const char *value, size_t vlen)
{
    long start = (long)(p->n ? p->off[p->n - 1] : PBLKSIZ) - (long)klen - (long)vlen;
    if (start <= (long)(p->n + 3) * 2)
        return 0;
    long split = start + (long)vlen;
    memcpy(p->buf + split, key, klen);
    memcpy(p->buf + start, value, vlen);
    p->off[p->n] = (int)split;
    p->off[p->n + 1] = (int)start;
    p->n += 2;
    pack(p);
    return 1;
}

/* --- the bit map: one block kept for one call --- */

typedef struct {
    int fd;
    int64_t number;             /* the block in buf, or -1 */
    unsigned char buf[DBLKSIZ];
} bitmap;

static int map_block(bitmap *map, int64_t number, pn_ndbm_status *status)
{
    if (map->number == number)
        return PN_NDBM_OK;
    map->number = -1;
    int rc = read_block(map->fd, map->buf, DBLKSIZ, (uint64_t)number * DBLKSIZ, status);
    if (rc == PN_NDBM_OK)
        map->number = number;
    return rc;
}

static int get_bit(bitmap *map, uint64_t bit, int *value, pn_ndbm_status *status)
{
    int rc = map_block(map, (int64_t)(bit >> 15), status);
    if (rc == PN_NDBM_OK)
        *value = map->buf[(bit >> 3) & (DBLKSIZ - 1)] >> (bit & 7) & 1;
    return rc;
}

static int set_bit(bitmap *map, uint64_t bit, pn_ndbm_status *status)
{
    int rc = map_block(map, (int64_t)(bit >> 15), status);
    if (rc)
        return rc;
    map->buf[(bit >> 3) & (DBLKSIZ - 1)] |= (unsigned char)(1u << (bit & 7));
    return write_all(map->fd, map->buf, DBLKSIZ, (bit >> 15) * DBLKSIZ, status);
}

/* The page and hmask of a hash: the walk down the split tree. */
static int bucket(bitmap *map, uint32_t hash, uint64_t *number, uint64_t *hmask,
                  pn_ndbm_status *status)
{
    uint64_t mask = 0;
    for (int level = 0; level < LEVELS; level++) {
        int set, rc = get_bit(map, (hash & mask) + mask, &set, status);
        if (rc)
            return rc;
        if (!set) {
            *number = hash & mask;
            *hmask = mask;
            return PN_NDBM_OK;
        }
        mask = (mask << 1) + 1;
    }
    return corrupt(status, PN_NDBM_TOO_DEEP, -1);
}

/* --- the operations --- */

static void start(bitmap *map, int dir_fd, pn_ndbm_status *status)
{
    map->fd = dir_fd;
    map->number = -1;
    status->error = status->reason = 0;
    status->page = -1;
}

/* The page a key belongs on (as _key_page) and the key's item there;
 * PN_NDBM_NONE if it is not there. */
static int key_item(int dir_fd, int pag_fd, int big, const char *key, size_t klen, page *p,
                    int *i, pn_ndbm_status *status)
{
    bitmap map;
    uint64_t number, hmask;
    start(&map, dir_fd, status);
    int rc = bucket(&map, pn_ndbm_hash(key, klen), &number, &hmask, status);
    if (rc == PN_NDBM_OK)
        rc = read_page(pag_fd, number, big, p, status);
    if (rc == PN_NDBM_OK && (*i = find(p, key, klen)) < 0)
        rc = PN_NDBM_NONE;
    return rc;
}

int pn_ndbm_fetch(int dir_fd, int pag_fd, int big, const char *key, size_t klen,
                  char out[PBLKSIZ], size_t *outlen, pn_ndbm_status *status)
{
    page p;
    int i, rc = key_item(dir_fd, pag_fd, big, key, klen, &p, &i, status);
    if (rc == PN_NDBM_OK) {
        *outlen = (size_t)(item_end(&p, i + 1) - p.off[i + 1]);
        memcpy(out, p.buf + p.off[i + 1], *outlen);
    }
    return rc;
}

int pn_ndbm_delete(int dir_fd, int pag_fd, int big, const char *key, size_t klen,
                   pn_ndbm_status *status)
{
    page p;
    int i, rc = key_item(dir_fd, pag_fd, big, key, klen, &p, &i, status);
    if (rc == PN_NDBM_OK) {
        delete_pair(&p, i);
        rc = write_page(pag_fd, &p, status);
    }
    return rc;
}

/* Move the pairs whose key hash has the bit hmask + 1 to page
 * number + hmask + 1 and mark the split (as _split). */
static int split(bitmap *map, int pag_fd, page *p, uint64_t hmask, uint32_t key_hash,
                 pn_ndbm_status *status)
{
    uint32_t hashes[PBLKSIZ / 4];
    int keys = p->n / 2, alike = 1;
    for (int k = 0; k < keys; k++) {
        int i = 2 * k;
        hashes[k] = pn_ndbm_hash((const char *)p->buf + p->off[i],
                                 (size_t)(item_end(p, i) - p->off[i]));
        alike &= hashes[k] == key_hash;
    }
    if (hmask == HASH_MASK || alike)
        return PN_NDBM_NO_ROOM;
    page moved;
    memset(moved.buf, 0, PBLKSIZ);
    moved.n = 0;
    moved.big = p->big;
    moved.number = p->number + hmask + 1;
    int i = 0;
    for (int k = 0; k < keys; k++) {
        if (hashes[k] & (hmask + 1)) {
            int key_at = p->off[i], value_at = p->off[i + 1];
            if (!add_pair(&moved, (const char *)p->buf + key_at,
                          (size_t)(item_end(p, i) - key_at),
                          (const char *)p->buf + value_at, (size_t)(key_at - value_at)))
                return PN_NDBM_NO_ROOM;     /* a page filled to the last byte, all moving */
            delete_pair(p, i);
        } else {
            i += 2;
        }
    }
    int rc = write_page(pag_fd, p, status);
    if (rc == PN_NDBM_OK)
        rc = write_page(pag_fd, &moved, status);
    if (rc == PN_NDBM_OK)
        rc = set_bit(map, p->number + hmask, status);
    return rc;
}

int pn_ndbm_store(int dir_fd, int pag_fd, int big, const char *key, size_t klen,
                  const char *value, size_t vlen, int replace, pn_ndbm_status *status)
{
    bitmap map;
    page p;
    uint64_t number, hmask;
    int too_big = klen + vlen > MAX_PAIR;
    uint32_t key_hash = pn_ndbm_hash(key, klen);
    start(&map, dir_fd, status);
    for (int round = 0; round < LEVELS + 1; round++) {
        int rc = bucket(&map, key_hash, &number, &hmask, status);
        if (rc == PN_NDBM_OK)
            rc = read_page(pag_fd, number, big, &p, status);
        if (rc)
            return rc;
        int i = find(&p, key, klen);
        if (i >= 0 && !replace)
            return PN_NDBM_NONE;
        if (too_big)
            return PN_NDBM_TOO_BIG;
        if (i >= 0)
            delete_pair(&p, i);
        if (add_pair(&p, key, klen, value, vlen))
            return write_page(pag_fd, &p, status);
        rc = split(&map, pag_fd, &p, hmask, key_hash, status);
        if (rc)
            return rc;
    }
    return PN_NDBM_NO_ROOM;
}

int pn_ndbm_page_keys(int pag_fd, int big, int64_t number, char out[PBLKSIZ],
                      uint16_t lens[PBLKSIZ / 2], int *count, pn_ndbm_status *status)
{
    struct stat st;
    page p;
    status->error = status->reason = 0;
    status->page = -1;
    if (fstat(pag_fd, &st) < 0)
        return io_error(status);
    if (number < 0 || number >= (int64_t)(st.st_size / PBLKSIZ))
        return PN_NDBM_NONE;
    int rc = read_page(pag_fd, (uint64_t)number, big, &p, status);
    if (rc)
        return rc;
    size_t used = 0;
    *count = 0;
    for (int i = 0; i < p.n; i += 2) {
        size_t size = (size_t)(item_end(&p, i) - p.off[i]);
        memcpy(out + used, p.buf + p.off[i], size);
        lens[(*count)++] = (uint16_t)size;
        used += size;
    }
    return PN_NDBM_OK;
}
