/* fuzz_audit.c - the audit trail's parsers on arbitrary bytes.
 *
 * The input is treated as a segment file: header, then frames walked the way
 * the reader walks them, then each frame's ciphertext bytes and the whole
 * input as an event plaintext. Nothing may read out of bounds, and whatever
 * decodes must obey the field limits.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "strongroom/audit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_entry(const uint8_t *p, size_t n)
{
	static struct audit_entry e;
	if (audit_entry_decode(p, n, &e) != 0)
		return;
	if (e.nranges > AUDIT_RANGES_MAX || strlen(e.path) > AUDIT_PATH_MAX ||
	    strlen(e.user) > AUDIT_NAME_MAX || strlen(e.level) > AUDIT_LEVEL_MAX ||
	    strlen(e.detail) > AUDIT_DETAIL_MAX)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct audit_seg_header h;
	struct audit_frame f;
	size_t off = 0;

	if (audit_header_parse(data, size, &h) == 0) {
		if (h.flags & ~AUDIT_HF_KNOWN)
			abort();
		off = AUDIT_HEADER_BYTES;
	}
	while (off < size) {
		long n = audit_frame_parse(data + off, size - off, &f);
		if (n <= 0)
			break;
		if ((size_t)n > size - off || f.len != (uint32_t)n ||
		    f.ciphertext + f.ciphertext_len + AUDIT_CHAIN_BYTES != data + off + (size_t)n)
			abort();
		/* Ciphertext bytes minus the tag stand in for a plaintext. */
		check_entry(f.ciphertext, f.ciphertext_len - 16);
		off += (size_t)n;
	}
	check_entry(data, size);
	return 0;
}
