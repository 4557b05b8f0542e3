/* format.h - pure encoding and decoding of store bytes (no I/O, no FUSE).
 *
 * Every function here is a pure transformation between plaintext structures
 * and the byte layouts of docs/format.md; keys are passed in by the caller
 * (borrowed). Decoders of store bytes never trust a length they have not
 * bounded, and each has a libFuzzer target in tests/fuzz/.
 *
 * Errors: -EBADMSG authentication failed, -EUCLEAN malformed structure,
 * -EOPNOTSUPP unknown version or required flag, -ENAMETOOLONG, -EINVAL,
 * -ENOSPC output buffer too small.
 */
#ifndef STRONGROOM_FORMAT_H
#define STRONGROOM_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FMT_KEY_BYTES 32
#define FMT_ID_BYTES 16
#define FMT_HINT_BYTES 8
#define FMT_NAME_MAX 255

/* Store-side reserved names: encrypted names are base64url and never start
 * with '.', so everything the format itself keeps starts with one. */
#define FMT_DIRMETA_NAME ".sr-dir"
#define FMT_LONGNAME_PREFIX ".L"
#define FMT_LONGNAME_SIDECAR_SUFFIX ".name"
#define FMT_TMP_PREFIX ".sr-tmp."

/* ---- level hints (docs/format.md "Level hints") ---- */

/* hint = first 8 bytes of BLAKE2b-128(key = hint_key, "SRhint01" || id || level). */
void fmt_level_hint(const unsigned char hint_key[FMT_KEY_BYTES], const uint8_t id[FMT_ID_BYTES],
		    unsigned level, uint8_t out[FMT_HINT_BYTES]);

/* ---- names (docs/format.md "Names") ---- */

/* Encrypt one name component (1..255 bytes, no '/' or NUL) for directory
 * dir_id. Writes the base64url store name (NUL-terminated) to out.
 * @return its length, which may exceed 255: then use fmt_longname(). */
ssize_t fmt_name_encrypt(const unsigned char mac_key[FMT_KEY_BYTES],
			 const unsigned char enc_key[FMT_KEY_BYTES], const uint8_t dir_id[FMT_ID_BYTES],
			 const char *name, size_t len, char *out, size_t cap);

/* Decrypt a base64url store name. @return plaintext length (out is
 * NUL-terminated), -EBADMSG if it does not authenticate, -EUCLEAN if not a
 * well-formed encrypted name. */
ssize_t fmt_name_decrypt(const unsigned char mac_key[FMT_KEY_BYTES],
			 const unsigned char enc_key[FMT_KEY_BYTES], const uint8_t dir_id[FMT_ID_BYTES],
			 const char *enc, size_t len, char *out, size_t cap);

/* Store name for an encrypted name longer than 255 bytes:
 * ".L" + base64url(BLAKE2b-256(enc)), NUL-terminated, 45 bytes. The full
 * encrypted name goes in the sidecar "<that>.name". */
#define FMT_LONGNAME_BYTES 46
void fmt_longname(const char *enc, size_t len, char out[FMT_LONGNAME_BYTES]);
/* Check a sidecar's content against its store name. @return 0 or -EBADMSG. */
int fmt_longname_check(const char *store_name, const char *enc, size_t len);

/* ---- directory metadata (docs/format.md "Directory metadata") ---- */

struct fmt_dirmeta {
	uint8_t dir_id[FMT_ID_BYTES];
	unsigned level;
	uint32_t mode; /* full st_mode incl. S_IFDIR */
	uint32_t uid, gid;
	/* xattrs incl. system.posix_acl_access/default, as an attribute blob
	 * (docs/format.md "Attribute blob"); owned by the caller */
	unsigned char *xattrs;
	size_t xattrs_len;
};

/* Largest encoding of a dirmeta with an xattr blob of n bytes. */
size_t fmt_dirmeta_bound(size_t xattrs_len);
ssize_t fmt_dirmeta_encode(const struct fmt_dirmeta *m, const unsigned char hint_key[FMT_KEY_BYTES],
			   const unsigned char meta_key[FMT_KEY_BYTES], unsigned char *out, size_t cap);
/* Read the unauthenticated part: dir_id and level hint. */
int fmt_dirmeta_peek(const unsigned char *buf, size_t len, uint8_t dir_id[FMT_ID_BYTES],
		     uint8_t hint[FMT_HINT_BYTES]);
/* Authenticate and decode. On success m->xattrs is malloc'd (owned by the
 * caller, free()). @return 0, -EBADMSG, -EUCLEAN, -EOPNOTSUPP. */
int fmt_dirmeta_decode(const unsigned char *buf, size_t len, unsigned level,
		       const unsigned char meta_key[FMT_KEY_BYTES], struct fmt_dirmeta *m)
	__attribute__((warn_unused_result));

/* ---- attribute blob: xattrs of files and directories ---- */

/* Blob = count u32, then per entry: name_len u8, value_len u32, name, value.
 * Helpers operate on a malloc'd blob; *blob is replaced (old pointer
 * invalid). */
ssize_t fmt_xattr_get(const unsigned char *blob, size_t len, const char *name, void *val, size_t cap);
ssize_t fmt_xattr_list(const unsigned char *blob, size_t len, char *out, size_t cap);
int fmt_xattr_set(unsigned char **blob, size_t *len, const char *name, const void *val, size_t vlen,
		  int flags /* XATTR_CREATE / XATTR_REPLACE */);
int fmt_xattr_remove(unsigned char **blob, size_t *len, const char *name);
/* Validate a blob read from the store. @return 0 or -EUCLEAN. */
int fmt_xattr_check(const unsigned char *blob, size_t len);

/* The frame, file header and seal codecs of the file engine are declared in
 * format_file.h. */
#include "strongroom/format_file.h"

#endif
