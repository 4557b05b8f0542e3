/* fuzz_config.c - kr_config_parse on arbitrary bytes (docs/format.md
 * section 2). Whatever parses must encode again to a config that parses to
 * the same values: the parser accepts nothing the encoder cannot write.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../keyring/kr_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned char key[KR_KEY_BYTES];
	unsigned char buf[KR_CONF_MAX_BYTES];
	struct kr_config cfg, again;
	ssize_t n;

	memset(&cfg, 0, sizeof cfg);
	if (kr_config_parse(data, size, &cfg) != 0)
		return 0;
	n = kr_config_encode(&cfg, key, buf, sizeof buf);
	if (n < 0 || (size_t)n != size)
		abort();
	/* Same bytes up to the MAC, apart from optional feature flags. */
	if (memcmp(buf, data, 16) != 0 || memcmp(buf + 20, data + 20, (size_t)n - 20 - 32) != 0)
		abort();
	memset(&again, 0, sizeof again);
	if (kr_config_parse(buf, (size_t)n, &again) != 0 || memcmp(&cfg, &again, sizeof cfg) != 0)
		abort();
	if (kr_config_mac_verify(buf, (size_t)n, key) != 0)
		abort();
	return 0;
}
