/* fmt_seal.c - seal payloads and locators (docs/format.md 8.4).
 *
 * Seal plaintext:
 *   0  size u64            plaintext file size
 *   8  mode u32, uid u32, gid u32, rdev u32
 *  24  xattrs_len u32
 *  28  reserved u32        zero
 *  32  nmap u64            live chunks
 *  40  attribute blob      xattrs_len bytes (docs/format.md 7.2)
 *      map                 nmap entries of 32 bytes:
 *        index u64, offset u64, seq u64, frame_len u32, raw_len u32
 *
 * Invariants enforced by fmt_seal_decode(): map indices strictly increase;
 * every frame lies after the file header; raw_len is nonzero and no chunk
 * extends past 2^63; the attribute blob passes fmt_xattr_check(). A seal
 * that breaks them is -EUCLEAN even though it authenticated.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "strongroom/format.h"
#include "fmt_internal.h"

size_t fmt_seal_bound(size_t xattrs_len, size_t nmap)
{
	return FMT_SEAL_FIXED_BYTES + xattrs_len + nmap * FMT_CHUNK_REF_BYTES;
}

ssize_t fmt_seal_encode(const struct fmt_seal *s, uint8_t *out, size_t cap)
{
	size_t need = fmt_seal_bound(s->xattrs_len, s->nmap);
	uint8_t *p;

	if (cap < need)
		return -ENOSPC;
	if (s->xattrs_len > UINT32_MAX)
		return -EINVAL;
	fmt_le64_put(out, s->size);
	fmt_le32_put(out + 8, s->mode);
	fmt_le32_put(out + 12, s->uid);
	fmt_le32_put(out + 16, s->gid);
	fmt_le32_put(out + 20, s->rdev);
	fmt_le32_put(out + 24, (uint32_t)s->xattrs_len);
	fmt_le32_put(out + 28, 0);
	fmt_le64_put(out + 32, s->nmap);
	if (s->xattrs_len)
		memcpy(out + FMT_SEAL_FIXED_BYTES, s->xattrs, s->xattrs_len);
	p = out + FMT_SEAL_FIXED_BYTES + s->xattrs_len;
	for (size_t i = 0; i < s->nmap; i++, p += FMT_CHUNK_REF_BYTES) {
		fmt_le64_put(p, s->map[i].index);
		fmt_le64_put(p + 8, s->map[i].offset);
		fmt_le64_put(p + 16, s->map[i].seq);
		fmt_le32_put(p + 24, s->map[i].frame_len);
		fmt_le32_put(p + 28, s->map[i].raw_len);
	}
	return (ssize_t)need;
}

int fmt_seal_decode(const uint8_t *pt, size_t len, struct fmt_seal *s)
{
	size_t xlen;
	uint64_t nmap;
	const uint8_t *p;
	int rc = -EUCLEAN;

	memset(s, 0, sizeof *s);
	if (len < FMT_SEAL_FIXED_BYTES)
		return -EUCLEAN;
	xlen = fmt_le32_get(pt + 24);
	nmap = fmt_le64_get(pt + 32);
	if (fmt_le32_get(pt + 28) != 0 || xlen > len - FMT_SEAL_FIXED_BYTES)
		return -EUCLEAN;
	if (nmap > (len - FMT_SEAL_FIXED_BYTES - xlen) / FMT_CHUNK_REF_BYTES ||
	    nmap * FMT_CHUNK_REF_BYTES != len - FMT_SEAL_FIXED_BYTES - xlen)
		return -EUCLEAN;
	if (fmt_xattr_check(pt + FMT_SEAL_FIXED_BYTES, xlen))
		return -EUCLEAN;
	s->size = fmt_le64_get(pt);
	s->mode = fmt_le32_get(pt + 8);
	s->uid = fmt_le32_get(pt + 12);
	s->gid = fmt_le32_get(pt + 16);
	s->rdev = fmt_le32_get(pt + 20);
	if (s->size > INT64_MAX)
		return -EUCLEAN;
	if (xlen) {
		s->xattrs = malloc(xlen);
		if (!s->xattrs)
			return -ENOMEM;
		memcpy(s->xattrs, pt + FMT_SEAL_FIXED_BYTES, xlen);
		s->xattrs_len = xlen;
	}
	if (nmap) {
		s->map = calloc((size_t)nmap, sizeof *s->map);
		if (!s->map) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	p = pt + FMT_SEAL_FIXED_BYTES + xlen;
	for (size_t i = 0; i < nmap; i++, p += FMT_CHUNK_REF_BYTES) {
		struct fmt_chunk_ref *r = &s->map[i];
		r->index = fmt_le64_get(p);
		r->offset = fmt_le64_get(p + 8);
		r->seq = fmt_le64_get(p + 16);
		r->frame_len = fmt_le32_get(p + 24);
		r->raw_len = fmt_le32_get(p + 28);
		if (i > 0 && r->index <= s->map[i - 1].index)
			goto fail;
		if (r->offset < FMT_FILE_HEADER_BYTES || r->offset > INT64_MAX ||
		    r->frame_len < FMT_FRAME_HEADER_BYTES + 16 || r->raw_len == 0 ||
		    r->raw_len > (1u << FMT_CHUNK_LOG2_MAX) || r->index > (INT64_MAX >> FMT_CHUNK_LOG2_MIN))
			goto fail;
	}
	s->nmap = (size_t)nmap;
	return 0;
fail:
	fmt_seal_release(s);
	return rc;
}

void fmt_seal_release(struct fmt_seal *s)
{
	free(s->xattrs);
	free(s->map);
	s->xattrs = NULL;
	s->map = NULL;
	s->xattrs_len = 0;
	s->nmap = 0;
}

void fmt_seal_locator_encode(uint64_t total_len, uint8_t out[FMT_SEAL_LOCATOR_BYTES])
{
	fmt_le64_put(out, total_len);
	memcpy(out + 8, FMT_SEAL_LOCATOR_MAGIC, 8);
}

int fmt_seal_locator_decode(const uint8_t in[FMT_SEAL_LOCATOR_BYTES], uint64_t *total_len)
{
	uint64_t n = fmt_le64_get(in);

	if (memcmp(in + 8, FMT_SEAL_LOCATOR_MAGIC, 8) != 0)
		return -EUCLEAN;
	if (n < FMT_FRAME_HEADER_BYTES + 16 + FMT_SEAL_LOCATOR_BYTES ||
	    n > (uint64_t)FMT_FRAME_PAYLOAD_MAX + FMT_FRAME_HEADER_BYTES + FMT_SEAL_LOCATOR_BYTES)
		return -EUCLEAN;
	*total_len = n;
	return 0;
}
