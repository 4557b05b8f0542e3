/* test_format_frames.c - file header, frames, chunk payloads and seals
 * (docs/format.md section 8). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "strongroom/format.h"
#include "tap.h"

/* docs/format.md 8.5: hint key 00..1f, META and CONTENT key 20..3f, file_id
 * 40..4f, level 1, chunk_log2 16, synced_end 0x1000; the frame is CHUNK
 * seq 7, chunk 3, nonce 60..77, holding "hello" uncompressed. */
#define VECTOR_HEADER                                                                      \
	"5352463101100000404142434445464748494a4b4c4d4e4f48eae1d018c3b901001000000000000000" \
	"000000000000003cd82f3ac135d0185f78dbc77eb66fb9"
#define VECTOR_FRAME                                                                       \
	"010000001900000007000000000000000300000000000000606162636465666768696a6b6c6d6e6f70" \
	"71727374757677ed274026ed14f7adc538faaf1cc58ef67119872946d8e05bb5"

static unsigned char hint_key[32], key[32], other_key[32];
static uint8_t file_id[16], other_id[16];

static void keys_init(void)
{
	for (int i = 0; i < 32; i++) {
		hint_key[i] = (unsigned char)i;
		key[i] = (unsigned char)(0x20 + i);
		other_key[i] = (unsigned char)(0x80 + i);
	}
	for (int i = 0; i < 16; i++) {
		file_id[i] = (uint8_t)(0x40 + i);
		other_id[i] = (uint8_t)(0x50 + i);
	}
}

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;
	if (sodium_hex2bin(out, cap, hex, strlen(hex), NULL, &n, NULL) != 0)
		return 0;
	return n;
}

TEST(file_header_encode_matches_spec_vector)
{
	struct fmt_file_header h = {.version = 1, .chunk_log2 = 16, .synced_end = 0x1000};
	uint8_t out[64], want[64];
	memcpy(h.file_id, file_id, 16);
	fmt_level_hint(hint_key, file_id, 1, h.hint);
	fmt_file_header_encode(&h, key, out);
	CHECK_EQ(unhex(VECTOR_HEADER, want, sizeof want), 64);
	CHECK(memcmp(out, want, 64) == 0);
}

TEST(file_header_verify_rejects_every_flipped_byte)
{
	struct fmt_file_header h;
	uint8_t buf[64];
	CHECK_EQ(unhex(VECTOR_HEADER, buf, sizeof buf), 64);
	CHECK_EQ(fmt_file_header_verify(buf, key, &h), 0);
	CHECK_EQ(h.synced_end, 0x1000);
	CHECK_EQ(h.chunk_log2, 16);
	for (int i = 0; i < 64; i++) {
		buf[i] ^= 0x80;
		int rc = fmt_file_header_verify(buf, key, &h);
		buf[i] ^= 0x80;
		CHECK_EQ(rc, i < 4 ? -EUCLEAN : -EBADMSG);
	}
	CHECK_EQ(fmt_file_header_verify(buf, other_key, &h), -EBADMSG);
}

TEST(file_header_with_unknown_required_flag_is_unsupported)
{
	struct fmt_file_header h = {.version = 1, .chunk_log2 = 16, .required_flags = 0x4};
	uint8_t out[64];
	fmt_file_header_encode(&h, key, out);
	CHECK_EQ(fmt_file_header_verify(out, key, &h), -EOPNOTSUPP);
	h.required_flags = 0;
	h.version = 2;
	fmt_file_header_encode(&h, key, out);
	CHECK_EQ(fmt_file_header_verify(out, key, &h), -EOPNOTSUPP);
}

TEST(frame_vector_opens_to_hello)
{
	uint8_t fr[128], pt[64], raw[64];
	struct fmt_frame_header h;
	size_t n = unhex(VECTOR_FRAME, fr, sizeof fr);
	CHECK_EQ(n, 48 + 9 + 16);
	ssize_t p = fmt_frame_open(key, file_id, fr, n, &h, pt, sizeof pt);
	CHECK_EQ(p, 9);
	CHECK_EQ(h.type, FMT_FRAME_CHUNK);
	CHECK_EQ(h.seq, 7);
	CHECK_EQ(h.arg, 3);
	CHECK_EQ(fmt_chunk_decode(NULL, pt, (size_t)p, false, raw, 65536), 5);
	CHECK(memcmp(raw, "hello", 5) == 0);
}

TEST(frame_open_rejects_every_flipped_byte_and_zeroes_output)
{
	uint8_t fr[128], pt[64];
	struct fmt_frame_header h;
	size_t n = unhex(VECTOR_FRAME, fr, sizeof fr);
	for (size_t i = 0; i < n; i++) {
		fr[i] ^= 0x04;
		memset(pt, 0xaa, sizeof pt);
		ssize_t rc = fmt_frame_open(key, file_id, fr, n, &h, pt, sizeof pt);
		fr[i] ^= 0x04;
		CHECK(rc == -EBADMSG || rc == -EUCLEAN);
		if (rc == -EBADMSG)
			CHECK(sodium_is_zero(pt, 9));
	}
}

TEST(frame_open_rejects_chunk_from_other_file)
{
	uint8_t fr[128], pt[64];
	struct fmt_frame_header h;
	size_t n = unhex(VECTOR_FRAME, fr, sizeof fr);
	CHECK_EQ(fmt_frame_open(key, other_id, fr, n, &h, pt, sizeof pt), -EBADMSG);
	CHECK_EQ(fmt_frame_open(other_key, file_id, fr, n, &h, pt, sizeof pt), -EBADMSG);
	CHECK_EQ(fmt_frame_open(key, file_id, fr, n - 1, &h, pt, sizeof pt), -EUCLEAN);
}

TEST(frame_seal_then_open_roundtrips_with_fresh_nonces)
{
	uint8_t a[256], b[256], pt[128];
	struct fmt_frame_header h = {.type = FMT_FRAME_SEAL, .seq = 99, .arg = 4096}, o;
	ssize_t na = fmt_frame_seal(key, file_id, &h, (const uint8_t *)"seal body", 9, a, sizeof a);
	ssize_t nb = fmt_frame_seal(key, file_id, &h, (const uint8_t *)"seal body", 9, b, sizeof b);
	CHECK_EQ(na, 48 + 9 + 16);
	CHECK_EQ(nb, na);
	CHECK(memcmp(a, b, (size_t)na) != 0);
	CHECK_EQ(fmt_frame_open(key, file_id, a, (size_t)na, &o, pt, sizeof pt), 9);
	CHECK_EQ(o.type, FMT_FRAME_SEAL);
	CHECK_EQ(o.arg, 4096);
	CHECK(memcmp(pt, "seal body", 9) == 0);
	CHECK_EQ(fmt_frame_seal(key, file_id, &h, pt, 9, a, 60), -ENOSPC);
}

TEST(chunk_is_compressed_only_when_smaller)
{
	size_t cs = 65536, cap = fmt_chunk_bound(cs);
	uint8_t *raw = malloc(cs), *pt = malloc(cap), *back = malloc(cs);
	bool comp;
	struct fmt_zctx *z = fmt_zctx_new();
	CHECK(raw && pt && back && z);
	for (size_t i = 0; i < cs; i++)
		raw[i] = (uint8_t)("id,name,amount\n1,Alice,10.00\n"[i % 29]);
	ssize_t n = fmt_chunk_encode(z, raw, cs, 3, 0, cs, pt, cap, &comp);
	CHECK(comp);
	CHECK(n > 0 && (size_t)n < cs / 10);
	CHECK_EQ(fmt_chunk_decode(z, pt, (size_t)n, comp, back, cs), (ssize_t)cs);
	CHECK(memcmp(raw, back, cs) == 0);
	randombytes_buf(raw, cs);
	n = fmt_chunk_encode(z, raw, cs, 3, 0, cs, pt, cap, &comp);
	CHECK(!comp);
	CHECK_EQ(n, (ssize_t)cs + 4);
	CHECK_EQ(fmt_chunk_decode(z, pt, (size_t)n, comp, back, cs), (ssize_t)cs);
	CHECK(memcmp(raw, back, cs) == 0);
	n = fmt_chunk_encode(z, raw, 100, 0, 0, cs, pt, cap, &comp);
	CHECK(!comp);
	CHECK_EQ(n, 104);
	fmt_zctx_free(z);
	free(raw);
	free(pt);
	free(back);
}

TEST(chunk_padding_rounds_up_but_never_past_chunk_size)
{
	size_t cs = 65536, cap = fmt_chunk_bound(cs);
	uint8_t *raw = calloc(1, cs), *pt = malloc(cap), *back = malloc(cs);
	bool comp;
	CHECK(raw && pt && back);
	randombytes_buf(raw, 100);
	CHECK_EQ(fmt_chunk_encode(NULL, raw, 100, 0, 12, cs, pt, cap, &comp), 4 + 4096);
	CHECK_EQ(fmt_chunk_encode(NULL, raw, 100, 0, 16, cs, pt, cap, &comp), 4 + 65536);
	CHECK_EQ(fmt_chunk_encode(NULL, raw, 100, 0, 20, cs, pt, cap, &comp), 4 + 65536);
	CHECK_EQ(fmt_chunk_encode(NULL, raw, 5000, 0, 12, cs, pt, cap, &comp), 4 + 8192);
	CHECK_EQ(fmt_chunk_decode(NULL, pt, 4 + 8192, comp, back, cs), 5000);
	CHECK(memcmp(raw, back, 5000) == 0);
	pt[4 + 6000] = 1; /* nonzero padding is malformed */
	CHECK_EQ(fmt_chunk_decode(NULL, pt, 4 + 8192, comp, back, cs), -EUCLEAN);
	free(raw);
	free(pt);
	free(back);
}

TEST(chunk_decode_rejects_data_larger_than_a_chunk)
{
	size_t cs = 65536, cap = fmt_chunk_bound(1u << 20);
	uint8_t *raw = calloc(1, 1u << 20), *pt = malloc(cap), *back = malloc(cs);
	bool comp;
	CHECK(raw && pt && back);
	ssize_t n = fmt_chunk_encode(NULL, raw, 1u << 17, 3, 0, 1u << 20, pt, cap, &comp);
	CHECK(comp);
	CHECK_EQ(fmt_chunk_decode(NULL, pt, (size_t)n, true, back, cs), -EUCLEAN);
	n = fmt_chunk_encode(NULL, raw, 1u << 17, 0, 0, 1u << 20, pt, cap, &comp);
	CHECK_EQ(fmt_chunk_decode(NULL, pt, (size_t)n, false, back, cs), -EUCLEAN);
	free(raw);
	free(pt);
	free(back);
}

TEST(seal_roundtrips_attributes_and_chunk_map)
{
	struct fmt_chunk_ref map[3] = {
		{.index = 0, .offset = 64, .seq = 1, .frame_len = 200, .raw_len = 65536},
		{.index = 5, .offset = 264, .seq = 2, .frame_len = 100, .raw_len = 10},
		{.index = 70000, .offset = 364, .seq = 5, .frame_len = 90, .raw_len = 1},
	};
	unsigned char *blob = NULL;
	size_t blen = 0;
	CHECK_EQ(fmt_xattr_set(&blob, &blen, "user.x", "y", 1, 0), 0);
	struct fmt_seal s = {.size = 70000ull * 65536 + 1, .mode = 0100640, .uid = 1, .gid = 2,
			     .rdev = 3, .xattrs = blob, .xattrs_len = blen, .map = map, .nmap = 3},
			d;
	uint8_t buf[512];
	ssize_t n = fmt_seal_encode(&s, buf, sizeof buf);
	CHECK_EQ(n, (ssize_t)fmt_seal_bound(blen, 3));
	CHECK_EQ(fmt_seal_decode(buf, (size_t)n, &d), 0);
	CHECK_EQ(d.size, s.size);
	CHECK_EQ(d.mode, 0100640);
	CHECK_EQ(d.rdev, 3);
	CHECK_EQ(d.nmap, 3);
	CHECK(memcmp(d.map, map, sizeof map) == 0);
	CHECK_EQ(d.xattrs_len, blen);
	fmt_seal_release(&d);
	CHECK_EQ(fmt_seal_decode(buf, (size_t)n - 1, &d), -EUCLEAN);
	map[2].index = 5; /* not strictly increasing */
	n = fmt_seal_encode(&s, buf, sizeof buf);
	CHECK_EQ(fmt_seal_decode(buf, (size_t)n, &d), -EUCLEAN);
	free(blob);
}

TEST(seal_locator_roundtrips_and_rejects_bad_magic)
{
	uint8_t loc[16];
	uint64_t n = 0;
	fmt_seal_locator_encode(1234, loc);
	CHECK_EQ(fmt_seal_locator_decode(loc, &n), 0);
	CHECK_EQ(n, 1234);
	loc[12] ^= 1;
	CHECK_EQ(fmt_seal_locator_decode(loc, &n), -EUCLEAN);
	fmt_seal_locator_encode(10, loc);
	CHECK_EQ(fmt_seal_locator_decode(loc, &n), -EUCLEAN);
}

/* The plaintext of tests/data/engine-v1.srf. */
static void golden_plain(uint8_t *p, size_t n)
{
	uint64_t st = 0x243f6a8885a308d3ull;
	memset(p, 0, n);
	for (size_t i = 0; i < 65536; i++)
		p[i] = (uint8_t)"id,name,city\n7,Ada Lovelace,London\n"[i % 36];
	for (size_t i = 2 * 65536; i < 3 * 65536; i++) {
		st ^= st << 13;
		st ^= st >> 7;
		st ^= st << 17;
		p[i] = (uint8_t)(st >> 24);
	}
	memset(p + 3 * 65536, 'z', 1000);
}

/* A file written by format version 1 must decode forever: header, hint,
 * locator, seal, a compressed chunk, a hole, a raw chunk, a short chunk. */
TEST(golden_version_1_file_still_decodes)
{
	static uint8_t file[1 << 17], want[3 * 65536 + 1000], got[sizeof want], pt[1 << 17];
	char path[4096];
	const char *dir = getenv("SR_TEST_DATA");
	struct fmt_file_header fh;
	struct fmt_frame_header h;
	struct fmt_seal s;
	uint8_t hint[8];
	uint64_t total;
	snprintf(path, sizeof path, "%s/engine-v1.srf", dir ? dir : "tests/data");
	FILE *f = fopen(path, "rb");
	CHECK(f != NULL);
	size_t len = fread(file, 1, sizeof file, f);
	fclose(f);
	CHECK(len > 64 && len < sizeof file);
	CHECK_EQ(fmt_file_header_verify(file, key, &fh), 0);
	fmt_level_hint(hint_key, fh.file_id, 1, hint);
	CHECK(memcmp(hint, fh.hint, 8) == 0);
	CHECK_EQ(fh.synced_end, len);
	CHECK_EQ(fmt_seal_locator_decode(file + len - 16, &total), 0);
	ssize_t n = fmt_frame_open(key, fh.file_id, file + len - total, total - 16, &h, pt, sizeof pt);
	CHECK(n > 0);
	CHECK_EQ(h.type, FMT_FRAME_SEAL);
	CHECK_EQ(h.arg, len - total);
	CHECK_EQ(fmt_seal_decode(pt, (size_t)n, &s), 0);
	CHECK_EQ(s.size, sizeof want);
	CHECK_EQ(s.mode, 0100640);
	CHECK_EQ(s.nmap, 3);
	CHECK_EQ(fmt_xattr_get(s.xattrs, s.xattrs_len, "user.golden", pt, sizeof pt), 2);
	golden_plain(want, sizeof want);
	memset(got, 0, sizeof got);
	bool compressed_seen = false;
	for (size_t i = 0; i < s.nmap; i++) {
		const struct fmt_chunk_ref *r = &s.map[i];
		n = fmt_frame_open(key, fh.file_id, file + r->offset, r->frame_len, &h, pt, sizeof pt);
		CHECK(n > 0);
		CHECK_EQ(h.arg, r->index);
		CHECK_EQ(h.seq, r->seq);
		compressed_seen |= (h.flags & FMT_FRAME_F_COMPRESSED) != 0;
		/* The room left in got, not a whole chunk: zstd may use all
		 * of the capacity it is given (the short last chunk). */
		size_t room = sizeof got - (size_t)r->index * 65536;
		CHECK(r->index * 65536 < sizeof got);
		CHECK_EQ(fmt_chunk_decode(NULL, pt, (size_t)n, h.flags & FMT_FRAME_F_COMPRESSED,
					  got + r->index * 65536, room < 65536 ? room : 65536),
			 r->raw_len);
	}
	CHECK(compressed_seen);
	CHECK(memcmp(got, want, sizeof want) == 0);
	fmt_seal_release(&s);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	keys_init();
	RUN(file_header_encode_matches_spec_vector);
	RUN(file_header_verify_rejects_every_flipped_byte);
	RUN(file_header_with_unknown_required_flag_is_unsupported);
	RUN(frame_vector_opens_to_hello);
	RUN(frame_open_rejects_every_flipped_byte_and_zeroes_output);
	RUN(frame_open_rejects_chunk_from_other_file);
	RUN(frame_seal_then_open_roundtrips_with_fresh_nonces);
	RUN(chunk_is_compressed_only_when_smaller);
	RUN(chunk_padding_rounds_up_but_never_past_chunk_size);
	RUN(chunk_decode_rejects_data_larger_than_a_chunk);
	RUN(seal_roundtrips_attributes_and_chunk_map);
	RUN(seal_locator_roundtrips_and_rejects_bad_magic);
	RUN(golden_version_1_file_still_decodes);
	return tap_done();
}
