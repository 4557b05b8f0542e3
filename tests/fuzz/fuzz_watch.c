/* fuzz_watch.c - kr_watch_parse on arbitrary bytes (docs/format.md section
 * 4.5). A state that parses has its bounds: at most KR_WATCH_FROZEN_MAX
 * uids, strictly ascending, and the exact length they imply; one that does
 * not parse leaves the output zeroed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../keyring/kr_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kr_watch_state st;
	static const struct kr_watch_state zero;

	if (kr_watch_parse(data, size, &st) != 0) {
		if (memcmp(&st, &zero, sizeof st) != 0)
			abort();
		return 0;
	}
	if (st.nfrozen > KR_WATCH_FROZEN_MAX ||
	    size != KR_WATCH_HEADER_BYTES + 4 * (size_t)st.nfrozen + KR_KEY_BYTES)
		abort();
	for (unsigned i = 1; i < st.nfrozen; i++)
		if (st.frozen[i] <= st.frozen[i - 1])
			abort();
	return 0;
}
