/* fuzz_frame.c - the file header, frame and chunk decoders on arbitrary
 * bytes (docs/format.md 8.1-8.3). Input byte 0 picks the mode:
 *   even: the rest is a file header + frame as stored (seeds verify under
 *         the fixed key; mutations mostly do not)
 *   odd:  the rest is a chunk plaintext, sealed into a valid frame with the
 *         fixed key first, so the chunk decoder sees authenticated garbage.
 * Whatever decodes must respect the chunk size; nothing may crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "strongroom/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHUNK 65536u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned char key[32] = {1, 2, 3};
	static const uint8_t file_id[16] = {9, 8, 7};
	static uint8_t pt[FZ_CHUNK * 2 + 64], raw[FZ_CHUNK], frame[FZ_CHUNK * 2 + 256];
	struct fmt_frame_header h;
	struct fmt_file_header fh;
	ssize_t n;

	if (size < 1)
		return 0;
	if ((data[0] & 1) == 0) {
		data++;
		size--;
		if (size >= FMT_FILE_HEADER_BYTES) {
			(void)fmt_file_header_peek(data, &fh);
			(void)!fmt_file_header_verify(data, key, &fh);
			data += FMT_FILE_HEADER_BYTES;
			size -= FMT_FILE_HEADER_BYTES;
		}
		if (size >= FMT_FRAME_HEADER_BYTES)
			(void)fmt_frame_header_decode(data, &h);
		n = fmt_frame_open(key, file_id, data, size, &h, pt, sizeof pt);
		if (n >= 0 && h.type == FMT_FRAME_CHUNK &&
		    fmt_chunk_decode(NULL, pt, (size_t)n, h.flags & 1, raw, FZ_CHUNK) > (ssize_t)FZ_CHUNK)
			abort();
		return 0;
	}
	data++;
	size--;
	if (size > sizeof pt - 64)
		return 0;
	h = (struct fmt_frame_header){.type = FMT_FRAME_CHUNK, .flags = size & 1, .seq = 1, .arg = 2};
	n = fmt_frame_seal(key, file_id, &h, data, size, frame, sizeof frame);
	if (n < 0)
		abort();
	n = fmt_frame_open(key, file_id, frame, (size_t)n, &h, pt, sizeof pt);
	if (n != (ssize_t)size || memcmp(pt, data, size) != 0)
		abort();
	n = fmt_chunk_decode(NULL, pt, (size_t)n, h.flags & 1, raw, FZ_CHUNK);
	if (n > (ssize_t)FZ_CHUNK)
		abort();
	return 0;
}
