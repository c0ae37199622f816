/* md5.h -- MD5 (RFC 1321) for the UIDs the scanner computes.
 * Its own copy, so the extension needs no crypto library on old hosts. */
#ifndef POPPER_MD5_H
#define POPPER_MD5_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t state[4];
    uint64_t length;            /* bytes hashed so far */
    unsigned char block[64];
} pn_md5;

void pn_md5_init(pn_md5 *ctx);
void pn_md5_update(pn_md5 *ctx, const void *data, size_t n);
void pn_md5_final(pn_md5 *ctx, unsigned char digest[16]);

#endif
