/* format_file.h - codecs of the ciphertext file: header, frames, chunks, seals.
 *
 * A ciphertext file (docs/format.md section 8) is a 64-byte header followed
 * by self-describing frames. Every function here is pure: it turns bytes
 * into structures and back, with keys borrowed from the caller. The file
 * engine (fs/vault/vfile.c) does the I/O and keeps the chunk map.
 *
 * Invariants kept by these codecs:
 *  1. A frame's associated data is file_id || its 48-byte frame header, so
 *     seq, chunk index (arg), type, flags and length are all authenticated
 *     and a frame copied from another file never opens.
 *  2. fmt_frame_open() zeroes the output when authentication fails: a caller
 *     can never use unauthenticated plaintext by mistake.
 *  3. Decoders bound every length before using it; they never read past
 *     the buffer they were given.
 */
#ifndef STRONGROOM_FORMAT_FILE_H
#define STRONGROOM_FORMAT_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- file header (docs/format.md 8.1) ----
 *   0  magic "SRF1"         4
 *   4  version (1)          1
 *   5  chunk_log2           1   12..20
 *   6  required flags u16   2   none defined: any set bit -> -EOPNOTSUPP
 *   8  file_id             16
 *  24  level hint           8
 *  32  synced_end u64       8   end of the last fdatasync'ed seal, 0 = none
 *  40  reserved             8   zero
 *  48  tag                 16   BLAKE2b-128(key = META subkey, bytes 0..47)
 */
#define FMT_FILE_MAGIC "SRF1"
#define FMT_FILE_VERSION 1
#define FMT_FILE_HEADER_BYTES 64
#define FMT_FILE_TAG_BYTES 16
#define FMT_CHUNK_LOG2_MIN 12
#define FMT_CHUNK_LOG2_MAX 20

struct fmt_file_header {
	uint8_t version;
	uint8_t chunk_log2;
	uint16_t required_flags;
	uint8_t file_id[16];
	uint8_t hint[8];
	uint64_t synced_end;
};

/* Encode and tag a header. */
void fmt_file_header_encode(const struct fmt_file_header *h, const unsigned char meta_key[32],
			    uint8_t out[FMT_FILE_HEADER_BYTES]);
/* Read the fields without authenticating (to find the level from the hint).
 * @return 0, or -EUCLEAN if the magic is wrong. */
int fmt_file_header_peek(const uint8_t in[FMT_FILE_HEADER_BYTES], struct fmt_file_header *h);
/* Authenticate with the level's META subkey, then check version, flags and
 * chunk size. @return 0, -EBADMSG, -EOPNOTSUPP, -EUCLEAN. */
int fmt_file_header_verify(const uint8_t in[FMT_FILE_HEADER_BYTES], const unsigned char meta_key[32],
			   struct fmt_file_header *h) __attribute__((warn_unused_result));

/* ---- frames (docs/format.md 8.2) ----
 *   0  type u8              1   1 = CHUNK, 2 = SEAL
 *   1  flags u8             1   bit 0: chunk data is zstd-compressed
 *   2  reserved u16         2   zero
 *   4  payload_len u32      4   ciphertext bytes incl. the 16-byte tag
 *   8  seq u64              8   strictly increasing within a file
 *  16  arg u64              8   CHUNK: chunk index; SEAL: this frame's offset
 *  24  nonce               24
 *  48  payload             payload_len bytes, XChaCha20-Poly1305 with
 *                          AD = file_id || bytes 0..47
 * A SEAL frame is followed by a 16-byte locator (fmt_seal_locator_*).
 */
#define FMT_FRAME_HEADER_BYTES 48
#define FMT_FRAME_TAG_BYTES 16
#define FMT_FRAME_NONCE_BYTES 24
#define FMT_FRAME_CHUNK 1
#define FMT_FRAME_SEAL 2
#define FMT_FRAME_F_COMPRESSED 0x01u
/* Largest payload a reader accepts (a seal of a huge dense file). */
#define FMT_FRAME_PAYLOAD_MAX (1u << 30)

struct fmt_frame_header {
	uint8_t type;
	uint8_t flags;
	uint32_t payload_len;
	uint64_t seq;
	uint64_t arg;
	uint8_t nonce[FMT_FRAME_NONCE_BYTES];
};

void fmt_frame_header_encode(const struct fmt_frame_header *h, uint8_t out[FMT_FRAME_HEADER_BYTES]);
/* @return 0, or -EUCLEAN for an unknown type or flag, nonzero reserved
 * bytes, or a payload length out of range. */
int fmt_frame_header_decode(const uint8_t in[FMT_FRAME_HEADER_BYTES], struct fmt_frame_header *h);

/* Encrypt pt into a whole frame at out (header + payload). The caller sets
 * h->type, flags, seq and arg; a fresh random nonce and payload_len are
 * filled in. @return the frame length, -ENOSPC if cap is too small. */
ssize_t fmt_frame_seal(const unsigned char key[32], const uint8_t file_id[16],
		       struct fmt_frame_header *h, const uint8_t *pt, size_t len, uint8_t *out,
		       size_t cap);
/* As fmt_frame_seal, with the nonce the caller put in h->nonce: fresh
 * random bytes it drew itself (one draw for the frames of a whole flush,
 * so their order does not depend on which thread seals which frame). */
ssize_t fmt_frame_seal_nonce(const unsigned char key[32], const uint8_t file_id[16],
			     struct fmt_frame_header *h, const uint8_t *pt, size_t len, uint8_t *out,
			     size_t cap);
/* Decrypt a whole frame (header + payload, len bytes). @return the
 * plaintext length, -EUCLEAN malformed, -EBADMSG (out zeroed), -ENOSPC. */
ssize_t fmt_frame_open(const unsigned char key[32], const uint8_t file_id[16], const uint8_t *frame,
		       size_t len, struct fmt_frame_header *h, uint8_t *out, size_t cap)
	__attribute__((warn_unused_result));

/* ---- chunk payloads (docs/format.md 8.3) ----
 * plaintext = data_len u32 || data || zero padding, where data is the
 * chunk's bytes, zstd-compressed if that makes it smaller. */
struct fmt_zctx; /* reusable zstd contexts; one user at a time */
struct fmt_zctx *fmt_zctx_new(void);
void fmt_zctx_free(struct fmt_zctx *z);

/* Room a chunk plaintext of up to chunk_size raw bytes may need. */
size_t fmt_chunk_bound(size_t chunk_size);
/* Encode raw bytes (len <= chunk_size) into a chunk plaintext. compress is a
 * zstd level (0 = never); padding rounds the data area up to 2^pad_log2,
 * never beyond chunk_size when the data fits in it. *compressed tells which
 * form was chosen. @return the plaintext length or -ENOSPC / -EINVAL. */
ssize_t fmt_chunk_encode(struct fmt_zctx *z, const uint8_t *raw, size_t len, int compress,
			 unsigned pad_log2, size_t chunk_size, uint8_t *out, size_t cap,
			 bool *compressed);
/* Decode a chunk plaintext into at most chunk_size raw bytes.
 * @return the raw length, or -EUCLEAN. */
ssize_t fmt_chunk_decode(struct fmt_zctx *z, const uint8_t *pt, size_t len, bool compressed,
			 uint8_t *out, size_t chunk_size);

/* ---- seals (docs/format.md 8.4) ---- */
struct fmt_chunk_ref {
	uint64_t index;     /* chunk number: plaintext offset / chunk size */
	uint64_t offset;    /* frame offset in the file */
	uint64_t seq;       /* the frame's seq */
	uint32_t frame_len; /* header + payload */
	uint32_t raw_len;   /* plaintext bytes in the chunk */
};
#define FMT_CHUNK_REF_BYTES 32
#define FMT_SEAL_FIXED_BYTES 40

struct fmt_seal {
	uint64_t size;
	uint32_t mode, uid, gid, rdev;
	unsigned char *xattrs; /* attribute blob; decode: malloc'd */
	size_t xattrs_len;
	struct fmt_chunk_ref *map; /* sorted by index; decode: malloc'd */
	size_t nmap;
};

size_t fmt_seal_bound(size_t xattrs_len, size_t nmap);
/* @return the plaintext length or -ENOSPC. */
ssize_t fmt_seal_encode(const struct fmt_seal *s, uint8_t *out, size_t cap);
/* Parse a seal plaintext. On success s->xattrs and s->map are malloc'd
 * (fmt_seal_release). @return 0, -EUCLEAN (unsorted map, bad lengths,
 * bad attribute blob), -ENOMEM. */
int fmt_seal_decode(const uint8_t *pt, size_t len, struct fmt_seal *s);
/* Frees what decode allocated. Accepts a zeroed seal. */
void fmt_seal_release(struct fmt_seal *s);

/* Locator: frame_len u64 (header + payload + locator) || "SRSEAL01". */
#define FMT_SEAL_LOCATOR_BYTES 16
#define FMT_SEAL_LOCATOR_MAGIC "SRSEAL01"
void fmt_seal_locator_encode(uint64_t total_len, uint8_t out[FMT_SEAL_LOCATOR_BYTES]);
/* @return 0, or -EUCLEAN if the magic or the length is wrong. */
int fmt_seal_locator_decode(const uint8_t in[FMT_SEAL_LOCATOR_BYTES], uint64_t *total_len);

#endif
