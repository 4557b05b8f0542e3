/* fmt_dirmeta.c - the ".sr-dir" file of each store directory
 * (docs/format.md section 7).
 *
 *   0  magic "SRD1"        4
 *   4  version (1)         1
 *   5  required flags      1   none defined: any set bit -> -EOPNOTSUPP
 *   6  reserved            2   zero
 *   8  dir_id             16   random; tweaks the names of the entries
 *  24  level hint          8   (section 5)
 *  32  nonce              24
 *  56  XChaCha20-Poly1305(key = META subkey of the level, AD = bytes 0..55) of
 *        mode u32 || uid u32 || gid u32 || xattrs_len u32 || attribute blob
 *
 * Invariants: nothing after the magic is interpreted before the AEAD tag
 * has been checked (so an edited version or flag byte reads as -EBADMSG);
 * the plaintext is wiped after use.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "strongroom/format.h"
#include "fmt_internal.h"

#define DM_MAGIC "SRD1"
#define DM_VERSION 1
#define DM_HEADER 56
#define DM_FIXED 16
#define DM_TAG crypto_aead_xchacha20poly1305_ietf_ABYTES

size_t fmt_dirmeta_bound(size_t xattrs_len)
{
	return DM_HEADER + DM_FIXED + xattrs_len + DM_TAG;
}

ssize_t fmt_dirmeta_encode(const struct fmt_dirmeta *m, const unsigned char hint_key[FMT_KEY_BYTES],
			   const unsigned char meta_key[FMT_KEY_BYTES], unsigned char *out, size_t cap)
{
	size_t plen = DM_FIXED + m->xattrs_len;
	unsigned char *pt;
	unsigned long long clen;

	if (m->xattrs_len > UINT32_MAX || fmt_xattr_check(m->xattrs, m->xattrs_len))
		return -EINVAL;
	if (cap < fmt_dirmeta_bound(m->xattrs_len))
		return -ENOSPC;
	pt = malloc(plen);
	if (!pt)
		return -ENOMEM;
	memset(out, 0, DM_HEADER);
	memcpy(out, DM_MAGIC, 4);
	out[4] = DM_VERSION;
	memcpy(out + 8, m->dir_id, FMT_ID_BYTES);
	fmt_level_hint(hint_key, m->dir_id, m->level, out + 24);
	randombytes_buf(out + 32, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);

	fmt_le32_put(pt, m->mode);
	fmt_le32_put(pt + 4, m->uid);
	fmt_le32_put(pt + 8, m->gid);
	fmt_le32_put(pt + 12, (uint32_t)m->xattrs_len);
	if (m->xattrs_len)
		memcpy(pt + DM_FIXED, m->xattrs, m->xattrs_len);
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + DM_HEADER, &clen, pt, plen, out, DM_HEADER,
						   NULL, out + 32, meta_key);
	sodium_memzero(pt, plen);
	free(pt);
	return (ssize_t)(DM_HEADER + clen);
}

int fmt_dirmeta_peek(const unsigned char *buf, size_t len, uint8_t dir_id[FMT_ID_BYTES],
		     uint8_t hint[FMT_HINT_BYTES])
{
	if (len < DM_HEADER + DM_FIXED + DM_TAG || memcmp(buf, DM_MAGIC, 4) != 0)
		return -EUCLEAN;
	memcpy(dir_id, buf + 8, FMT_ID_BYTES);
	memcpy(hint, buf + 24, FMT_HINT_BYTES);
	return 0;
}

int fmt_dirmeta_decode(const unsigned char *buf, size_t len, unsigned level,
		       const unsigned char meta_key[FMT_KEY_BYTES], struct fmt_dirmeta *m)
{
	unsigned char *pt = NULL;
	unsigned long long plen;
	size_t xlen;
	int rc;

	memset(m, 0, sizeof *m);
	if (len < DM_HEADER + DM_FIXED + DM_TAG || memcmp(buf, DM_MAGIC, 4) != 0)
		return -EUCLEAN;
	pt = malloc(len - DM_HEADER);
	if (!pt)
		return -ENOMEM;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, &plen, NULL, buf + DM_HEADER, len - DM_HEADER,
						       buf, DM_HEADER, buf + 32, meta_key) != 0) {
		rc = -EBADMSG;
		plen = 0;
		goto out;
	}
	if (buf[4] != DM_VERSION || buf[5] != 0) {
		rc = -EOPNOTSUPP;
		goto out;
	}
	xlen = fmt_le32_get(pt + 12);
	if (buf[6] || buf[7] || xlen != plen - DM_FIXED || fmt_xattr_check(pt + DM_FIXED, xlen)) {
		rc = -EUCLEAN;
		goto out;
	}
	if (xlen) {
		m->xattrs = malloc(xlen);
		if (!m->xattrs) {
			rc = -ENOMEM;
			goto out;
		}
		memcpy(m->xattrs, pt + DM_FIXED, xlen);
	}
	memcpy(m->dir_id, buf + 8, FMT_ID_BYTES);
	m->level = level;
	m->mode = fmt_le32_get(pt);
	m->uid = fmt_le32_get(pt + 4);
	m->gid = fmt_le32_get(pt + 8);
	m->xattrs_len = xlen;
	rc = 0;
out:
	if (pt) {
		sodium_memzero(pt, len - DM_HEADER);
		free(pt);
	}
	return rc;
}
