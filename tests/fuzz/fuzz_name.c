/* fuzz_name.c - encrypted names and long-name sidecars (docs/format.md 6).
 * The input is tried as a stored name (decrypt must not crash and must
 * return a valid name or an error), as a plaintext name (encrypt, decrypt
 * must give it back) and as a sidecar for a long-name store name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "strongroom/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned char mac_key[32] = {1}, enc_key[32] = {2};
	static const uint8_t dir_id[16] = {3};
	char enc[512], plain[512], ln[FMT_LONGNAME_BYTES];
	ssize_t n, m;

	if (sodium_init() < 0)
		return 0;
	n = fmt_name_decrypt(mac_key, enc_key, dir_id, (const char *)data, size, plain, sizeof plain);
	if (n >= 0) {
		/* only the one canonical stored form of a name decrypts */
		m = fmt_name_encrypt(mac_key, enc_key, dir_id, plain, (size_t)n, enc, sizeof enc);
		if (m != (ssize_t)size || memcmp(enc, data, size) != 0)
			abort();
	}
	n = fmt_name_encrypt(mac_key, enc_key, dir_id, (const char *)data, size, enc, sizeof enc);
	if (n >= 0) {
		if (size == 0 || size > FMT_NAME_MAX || memchr(data, '/', size) || memchr(data, 0, size))
			abort();
		m = fmt_name_decrypt(mac_key, enc_key, dir_id, enc, (size_t)n, plain, sizeof plain);
		if (m != (ssize_t)size || memcmp(plain, data, size) != 0 || enc[0] == '.')
			abort();
		fmt_longname(enc, (size_t)n, ln);
		if (fmt_longname_check(ln, enc, (size_t)n) != 0)
			abort();
	}
	fmt_longname("sidecar", 7, ln);
	if (fmt_longname_check(ln, (const char *)data, size) == 0 &&
	    !(size == 7 && memcmp(data, "sidecar", 7) == 0))
		abort();
	return 0;
}
