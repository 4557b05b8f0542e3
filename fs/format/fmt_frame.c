/* fmt_frame.c - file header, frames and chunk payloads (docs/format.md 8.1-8.3).
 *
 * Byte layouts are in include/strongroom/format_file.h next to the
 * structures. Invariants:
 *  1. The header tag and the frame AEAD are checked before any field that
 *     steers parsing (version, flags) is trusted: an edited version byte
 *     reads as -EBADMSG, not as "unsupported".
 *  2. fmt_frame_open() wipes its output when the tag does not verify.
 *  3. A chunk is stored compressed only when that makes it strictly
 *     smaller, so incompressible data costs only the frame overhead
 *     (48-byte header + 4-byte length + 16-byte tag per chunk).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <zstd.h>

#include "strongroom/format.h"
#include "fmt_internal.h"

#define AEAD_ABYTES crypto_aead_xchacha20poly1305_ietf_ABYTES

/* ---- file header ---- */

static void fmt_file_header_tag(const uint8_t in[FMT_FILE_HEADER_BYTES],
				 const unsigned char meta_key[32], uint8_t tag[FMT_FILE_TAG_BYTES])
{
	crypto_generichash(tag, FMT_FILE_TAG_BYTES, in, FMT_FILE_HEADER_BYTES - FMT_FILE_TAG_BYTES,
			   meta_key, 32);
}

void fmt_file_header_encode(const struct fmt_file_header *h, const unsigned char meta_key[32],
			    uint8_t out[FMT_FILE_HEADER_BYTES])
{
	memset(out, 0, FMT_FILE_HEADER_BYTES);
	memcpy(out, FMT_FILE_MAGIC, 4);
	out[4] = h->version;
	out[5] = h->chunk_log2;
	fmt_le16_put(out + 6, h->required_flags);
	memcpy(out + 8, h->file_id, 16);
	memcpy(out + 24, h->hint, 8);
	fmt_le64_put(out + 32, h->synced_end);
	fmt_file_header_tag(out, meta_key, out + 48);
}

int fmt_file_header_peek(const uint8_t in[FMT_FILE_HEADER_BYTES], struct fmt_file_header *h)
{
	if (memcmp(in, FMT_FILE_MAGIC, 4) != 0)
		return -EUCLEAN;
	h->version = in[4];
	h->chunk_log2 = in[5];
	h->required_flags = fmt_le16_get(in + 6);
	memcpy(h->file_id, in + 8, 16);
	memcpy(h->hint, in + 24, 8);
	h->synced_end = fmt_le64_get(in + 32);
	return 0;
}

int fmt_file_header_verify(const uint8_t in[FMT_FILE_HEADER_BYTES], const unsigned char meta_key[32],
			   struct fmt_file_header *h)
{
	uint8_t tag[FMT_FILE_TAG_BYTES];

	if (fmt_file_header_peek(in, h))
		return -EUCLEAN;
	fmt_file_header_tag(in, meta_key, tag);
	if (sodium_memcmp(tag, in + 48, FMT_FILE_TAG_BYTES) != 0)
		return -EBADMSG;
	if (h->version != FMT_FILE_VERSION || h->required_flags != 0)
		return -EOPNOTSUPP;
	if (h->chunk_log2 < FMT_CHUNK_LOG2_MIN || h->chunk_log2 > FMT_CHUNK_LOG2_MAX ||
	    !sodium_is_zero(in + 40, 8))
		return -EUCLEAN;
	if (h->synced_end != 0 && h->synced_end < FMT_FILE_HEADER_BYTES)
		return -EUCLEAN;
	return 0;
}

/* ---- frames ---- */

void fmt_frame_header_encode(const struct fmt_frame_header *h, uint8_t out[FMT_FRAME_HEADER_BYTES])
{
	out[0] = h->type;
	out[1] = h->flags;
	out[2] = out[3] = 0;
	fmt_le32_put(out + 4, h->payload_len);
	fmt_le64_put(out + 8, h->seq);
	fmt_le64_put(out + 16, h->arg);
	memcpy(out + 24, h->nonce, FMT_FRAME_NONCE_BYTES);
}

int fmt_frame_header_decode(const uint8_t in[FMT_FRAME_HEADER_BYTES], struct fmt_frame_header *h)
{
	h->type = in[0];
	h->flags = in[1];
	h->payload_len = fmt_le32_get(in + 4);
	h->seq = fmt_le64_get(in + 8);
	h->arg = fmt_le64_get(in + 16);
	memcpy(h->nonce, in + 24, FMT_FRAME_NONCE_BYTES);
	if (h->type != FMT_FRAME_CHUNK && h->type != FMT_FRAME_SEAL)
		return -EUCLEAN;
	if (h->flags & ~(h->type == FMT_FRAME_CHUNK ? FMT_FRAME_F_COMPRESSED : 0u))
		return -EUCLEAN;
	if (in[2] || in[3] || h->payload_len < AEAD_ABYTES || h->payload_len > FMT_FRAME_PAYLOAD_MAX)
		return -EUCLEAN;
	return 0;
}

static void fmt_frame_ad(const uint8_t file_id[16], const uint8_t hdr[FMT_FRAME_HEADER_BYTES],
			 uint8_t ad[16 + FMT_FRAME_HEADER_BYTES])
{
	memcpy(ad, file_id, 16);
	memcpy(ad + 16, hdr, FMT_FRAME_HEADER_BYTES);
}

ssize_t fmt_frame_seal_nonce(const unsigned char key[32], const uint8_t file_id[16],
			     struct fmt_frame_header *h, const uint8_t *pt, size_t len, uint8_t *out,
			     size_t cap)
{
	uint8_t ad[16 + FMT_FRAME_HEADER_BYTES];
	unsigned long long clen;

	if (len > FMT_FRAME_PAYLOAD_MAX - AEAD_ABYTES)
		return -EINVAL;
	if (cap < FMT_FRAME_HEADER_BYTES + len + AEAD_ABYTES)
		return -ENOSPC;
	h->payload_len = (uint32_t)(len + AEAD_ABYTES);
	fmt_frame_header_encode(h, out);
	fmt_frame_ad(file_id, out, ad);
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + FMT_FRAME_HEADER_BYTES, &clen, pt, len, ad,
						   sizeof ad, NULL, h->nonce, key);
	return (ssize_t)(FMT_FRAME_HEADER_BYTES + clen);
}

ssize_t fmt_frame_seal(const unsigned char key[32], const uint8_t file_id[16],
		       struct fmt_frame_header *h, const uint8_t *pt, size_t len, uint8_t *out,
		       size_t cap)
{
	randombytes_buf(h->nonce, sizeof h->nonce);
	return fmt_frame_seal_nonce(key, file_id, h, pt, len, out, cap);
}

ssize_t fmt_frame_open(const unsigned char key[32], const uint8_t file_id[16], const uint8_t *frame,
		       size_t len, struct fmt_frame_header *h, uint8_t *out, size_t cap)
{
	uint8_t ad[16 + FMT_FRAME_HEADER_BYTES];
	unsigned long long plen;
	size_t want;

	if (len < FMT_FRAME_HEADER_BYTES || fmt_frame_header_decode(frame, h))
		return -EUCLEAN;
	if (len - FMT_FRAME_HEADER_BYTES != h->payload_len)
		return -EUCLEAN;
	want = h->payload_len - AEAD_ABYTES;
	if (cap < want)
		return -ENOSPC;
	fmt_frame_ad(file_id, frame, ad);
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &plen, NULL, frame + FMT_FRAME_HEADER_BYTES,
						       h->payload_len, ad, sizeof ad, h->nonce,
						       key) != 0) {
		sodium_memzero(out, want);
		return -EBADMSG;
	}
	return (ssize_t)plen;
}

/* ---- chunk payloads ---- */

struct fmt_zctx {
	ZSTD_CCtx *c;
	ZSTD_DCtx *d;
};

struct fmt_zctx *fmt_zctx_new(void)
{
	struct fmt_zctx *z = calloc(1, sizeof *z);

	if (!z)
		return NULL;
	z->c = ZSTD_createCCtx();
	z->d = ZSTD_createDCtx();
	if (!z->c || !z->d) {
		fmt_zctx_free(z);
		return NULL;
	}
	return z;
}

void fmt_zctx_free(struct fmt_zctx *z)
{
	if (!z)
		return;
	ZSTD_freeCCtx(z->c);
	ZSTD_freeDCtx(z->d);
	free(z);
}

size_t fmt_chunk_bound(size_t chunk_size)
{
	size_t zb = ZSTD_compressBound(chunk_size);
	return 4 + (zb > chunk_size ? zb : chunk_size);
}

ssize_t fmt_chunk_encode(struct fmt_zctx *z, const uint8_t *raw, size_t len, int compress,
			 unsigned pad_log2, size_t chunk_size, uint8_t *out, size_t cap,
			 bool *compressed)
{
	size_t dlen = len, padded, unit;

	*compressed = false;
	if (len > chunk_size || pad_log2 > 30)
		return -EINVAL;
	if (cap < fmt_chunk_bound(chunk_size))
		return -ENOSPC;
	if (compress > 0 && len > 0) {
		size_t r = z ? ZSTD_compressCCtx(z->c, out + 4, cap - 4, raw, len, compress)
			     : ZSTD_compress(out + 4, cap - 4, raw, len, compress);
		if (!ZSTD_isError(r) && r < len) {
			dlen = r;
			*compressed = true;
		}
	}
	if (!*compressed && len)
		memcpy(out + 4, raw, len);
	unit = (size_t)1 << pad_log2;
	padded = (dlen + unit - 1) / unit * unit;
	if (padded > chunk_size)
		padded = dlen > chunk_size ? dlen : chunk_size;
	memset(out + 4 + dlen, 0, padded - dlen);
	fmt_le32_put(out, (uint32_t)dlen);
	return (ssize_t)(4 + padded);
}

ssize_t fmt_chunk_decode(struct fmt_zctx *z, const uint8_t *pt, size_t len, bool compressed,
			 uint8_t *out, size_t chunk_size)
{
	size_t dlen;

	if (len < 4)
		return -EUCLEAN;
	dlen = fmt_le32_get(pt);
	if (dlen > len - 4 || !sodium_is_zero(pt + 4 + dlen, len - 4 - dlen))
		return -EUCLEAN;
	if (compressed) {
		size_t r = z ? ZSTD_decompressDCtx(z->d, out, chunk_size, pt + 4, dlen)
			     : ZSTD_decompress(out, chunk_size, pt + 4, dlen);
		if (ZSTD_isError(r))
			return -EUCLEAN;
		return (ssize_t)r;
	}
	if (dlen > chunk_size)
		return -EUCLEAN;
	memcpy(out, pt + 4, dlen);
	return (ssize_t)dlen;
}
