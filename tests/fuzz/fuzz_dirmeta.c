/* fuzz_dirmeta.c - the directory metadata decoder (docs/format.md 7).
 * Input byte 0 picks the mode:
 *   even: the rest is a .sr-dir file as stored
 *   odd:  the rest is a plaintext, encrypted under the fixed key with a
 *         valid header first, so the parser behind the AEAD is reached.
 * Whatever decodes must encode and decode again to the same values. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "strongroom/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const unsigned char hint_key[32] = {4}, meta_key[32] = {5};

static void check_roundtrip(const struct fmt_dirmeta *m)
{
	size_t cap = fmt_dirmeta_bound(m->xattrs_len);
	unsigned char *buf = malloc(cap);
	struct fmt_dirmeta d;
	ssize_t n;

	if (!buf)
		abort();
	n = fmt_dirmeta_encode(m, hint_key, meta_key, buf, cap);
	if (n != (ssize_t)cap || fmt_dirmeta_decode(buf, (size_t)n, m->level, meta_key, &d) != 0)
		abort();
	if (d.mode != m->mode || d.uid != m->uid || d.gid != m->gid ||
	    d.xattrs_len != m->xattrs_len ||
	    (d.xattrs_len && memcmp(d.xattrs, m->xattrs, d.xattrs_len) != 0))
		abort();
	free(d.xattrs);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fmt_dirmeta m;
	uint8_t id[16], hint[8];
	unsigned char *buf;
	unsigned long long clen;
	size_t len;

	if (sodium_init() < 0 || size < 1)
		return 0;
	if ((data[0] & 1) == 0) {
		(void)fmt_dirmeta_peek(data + 1, size - 1, id, hint);
		if (fmt_dirmeta_decode(data + 1, size - 1, 0, meta_key, &m) == 0) {
			check_roundtrip(&m);
			free(m.xattrs);
		}
		return 0;
	}
	data++;
	size--;
	len = 56 + size + 16;
	buf = calloc(1, len);
	if (!buf)
		abort();
	memcpy(buf, "SRD1\x01", 5);
	crypto_aead_xchacha20poly1305_ietf_encrypt(buf + 56, &clen, data, size, buf, 56, NULL,
						   buf + 32, meta_key);
	if (fmt_dirmeta_decode(buf, len, 1, meta_key, &m) == 0) {
		check_roundtrip(&m);
		free(m.xattrs);
	}
	free(buf);
	return 0;
}
