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
#include "../../fs/audit/audit_int.h" /* the segment walker the reader uses */

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

	/* The reader's walk over the same bytes: it must stop inside them. */
	static const unsigned char chain_key[32]; /* seeds are written with a zero chain key */
	static const uint8_t zero[32];
	struct audit_walk w;
	enum audit_walk_step st;
	audit_walk_init(&w, data, size, off ? h.mac : zero);
	while ((st = audit_walk_next(&w, chain_key, &f)) == AUDIT_WALK_RECORD)
		if (w.off > size)
			abort();
	return 0;
}
