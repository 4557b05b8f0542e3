/* fuzz_seal.c - the seal plaintext parser and the locator on arbitrary
 * bytes (docs/format.md 8.4). A seal that parses must encode back to the
 * same bytes: the parser accepts nothing the encoder cannot write. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "strongroom/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fmt_seal s;
	uint64_t total;
	uint8_t *again;
	ssize_t n;

	if (size >= FMT_SEAL_LOCATOR_BYTES &&
	    fmt_seal_locator_decode(data + size - FMT_SEAL_LOCATOR_BYTES, &total) == 0 &&
	    total < FMT_FRAME_HEADER_BYTES + 16 + FMT_SEAL_LOCATOR_BYTES)
		abort();
	if (fmt_seal_decode(data, size, &s) != 0)
		return 0;
	for (size_t i = 1; i < s.nmap; i++)
		if (s.map[i].index <= s.map[i - 1].index)
			abort();
	if (fmt_xattr_check(s.xattrs, s.xattrs_len) != 0)
		abort();
	again = malloc(size ? size : 1);
	if (!again)
		abort();
	n = fmt_seal_encode(&s, again, size);
	if (n != (ssize_t)size || memcmp(again, data, size) != 0)
		abort();
	free(again);
	fmt_seal_release(&s);
	return 0;
}
