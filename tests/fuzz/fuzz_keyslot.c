/* fuzz_keyslot.c - kr_keyslot_parse and the box opener on arbitrary bytes
 * (docs/format.md section 3). A parsed slot's sizes must agree with its
 * length, and opening it under a key nobody chose must fail cleanly with
 * the output wiped.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../keyring/kr_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned char key[KR_KEY_BYTES] = {1};
	unsigned char plain[KR_SLOT_PLAIN_MAX];
	struct kr_slot_info info;
	struct kr_slot s;
	int rc;

	rc = kr_keyslot_parse(data, size, &info);
	if (rc != kr_slot_parse(data, size, &s))
		abort();
	if (rc != 0)
		return 0;
	if (s.info.ceiling >= KR_MAX_LEVELS || size != KR_SLOT_HEADER_BYTES + s.box_len ||
	    s.box_len - KR_SLOT_TAG_BYTES > sizeof plain)
		abort();
	/* Only a passphrase slot may need a key file (section 3.1). */
	if (s.info.keyfile && s.info.kind != KR_SECRET_PASSPHRASE)
		abort();
	memset(plain, 0xa5, sizeof plain);
	if (kr_slot_open(data, &s, key, plain) == 0)
		return 0; /* only a slot sealed under this very key opens */
	for (size_t i = 0; i < s.box_len - KR_SLOT_TAG_BYTES; i++)
		if (plain[i] != 0)
			abort();
	return 0;
}
