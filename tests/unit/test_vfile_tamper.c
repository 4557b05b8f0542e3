/* test_vfile_tamper.c - every change to a ciphertext file reads as
 * -EBADMSG, never as wrong bytes (docs/format.md 8 and 9). */
#include "strongroom/format.h"
#include "tap.h"
#include "vfile_fixture.h"

#define CS 65536u
#define NCHUNK 4
#define FSIZE (NCHUNK * CS - 1000)

struct frame_pos {
	uint64_t off, len;
	int type;
};

/* Walk the frames of a ciphertext file image. @return the count. */
static int frames_walk(const unsigned char *b, size_t len, struct frame_pos *out, int cap)
{
	uint64_t pos = FMT_FILE_HEADER_BYTES;
	int n = 0;
	while (pos + FMT_FRAME_HEADER_BYTES <= len && n < cap) {
		struct fmt_frame_header h;
		if (fmt_frame_header_decode(b + pos, &h))
			break;
		uint64_t total = FMT_FRAME_HEADER_BYTES + h.payload_len +
				 (h.type == FMT_FRAME_SEAL ? FMT_SEAL_LOCATOR_BYTES : 0);
		out[n++] = (struct frame_pos){pos, total, h.type};
		pos += total;
	}
	return n;
}

static uint8_t content[FSIZE];

/* A synced, compacted file: every byte of it is live. */
static int make_file(const char *name, const uint8_t *data)
{
	struct vf_file *f;
	int rc = vf_create(fx_kr, fx_dir, name, 1, S_IFREG | 0600, 0, 0, &f);
	if (rc)
		return rc;
	if (vf_write(f, data, FSIZE, 0) != FSIZE)
		rc = -EIO;
	if (!rc)
		rc = vf_compact(f, fx_dir, name);
	if (!rc)
		rc = vf_fsync(f, true);
	int rc2 = vf_close(f);
	return rc ? rc : rc2;
}

/* Open and read everything. @return 0 if the content is intact, the error
 * of open or read otherwise; wrong bytes return 1 (which no test accepts). */
static int open_and_read(const char *name, const uint8_t *want)
{
	static uint8_t buf[FSIZE + 10];
	struct vf_file *f;
	int rc = vf_open(fx_kr, fx_dir, name, false, &f);
	if (rc)
		return rc;
	ssize_t n = vf_read(f, buf, sizeof buf, 0);
	vf_close(f);
	if (n < 0)
		return (int)n;
	return n == FSIZE && memcmp(buf, want, FSIZE) == 0 ? 0 : 1;
}

TEST(untouched_file_reads_back)
{
	CHECK_EQ(make_file("base", content), 0);
	CHECK_EQ(open_and_read("base", content), 0);
}

TEST(flipping_any_byte_of_a_synced_file_fails_with_ebadmsg)
{
	size_t len;
	unsigned char *b = fx_slurp("base", &len);
	struct frame_pos fr[16];
	CHECK(b);
	int nf = frames_walk(b, len, fr, 16);
	CHECK_EQ(nf, NCHUNK + 1);
	CHECK_EQ(fr[nf - 1].off + fr[nf - 1].len, len);
	for (size_t i = 0; i < len; i++) {
		/* every header and frame-header byte, every locator byte, and a
		 * sample of payload bytes */
		bool in_hdr = i < FMT_FILE_HEADER_BYTES || i >= len - 16;
		for (int k = 0; k < nf; k++)
			in_hdr |= i >= fr[k].off && i < fr[k].off + FMT_FRAME_HEADER_BYTES;
		if (!in_hdr && i % 997 != 0)
			continue;
		b[i] ^= 0x20;
		CHECK_EQ(fx_spit("flip", b, len), 0);
		b[i] ^= 0x20;
		int rc = open_and_read("flip", content);
		if (rc != (i < 4 ? -EUCLEAN : -EBADMSG))
			printf("# byte %zu: %d\n", i, rc);
		CHECK_EQ(rc, i < 4 ? -EUCLEAN : -EBADMSG);
	}
	free(b);
}

TEST(chunks_swapped_within_a_file_fail)
{
	size_t len;
	unsigned char *b = fx_slurp("base", &len);
	struct frame_pos fr[16];
	CHECK(b);
	CHECK_EQ(frames_walk(b, len, fr, 16), NCHUNK + 1);
	CHECK_EQ(fr[0].len, fr[1].len);
	unsigned char *tmp = malloc(fr[0].len);
	memcpy(tmp, b + fr[0].off, fr[0].len);
	memcpy(b + fr[0].off, b + fr[1].off, fr[0].len);
	memcpy(b + fr[1].off, tmp, fr[0].len);
	CHECK_EQ(fx_spit("swap", b, len), 0);
	CHECK_EQ(open_and_read("swap", content), -EBADMSG);
	free(tmp);
	free(b);
}

TEST(chunk_copied_from_another_file_fails)
{
	size_t la, lb;
	static uint8_t other[FSIZE];
	fx_fill(other, FSIZE);
	CHECK_EQ(make_file("other", other), 0);
	unsigned char *a = fx_slurp("base", &la), *b = fx_slurp("other", &lb);
	struct frame_pos fa[16], fb[16];
	CHECK(a && b);
	CHECK_EQ(la, lb);
	CHECK_EQ(frames_walk(a, la, fa, 16), NCHUNK + 1);
	CHECK_EQ(frames_walk(b, lb, fb, 16), NCHUNK + 1);
	memcpy(a + fa[1].off, b + fb[1].off, fa[1].len);
	CHECK_EQ(fx_spit("foreign", a, la), 0);
	CHECK_EQ(open_and_read("foreign", content), -EBADMSG);
	free(a);
	free(b);
}

TEST(header_swapped_between_files_fails)
{
	size_t la, lb;
	unsigned char *a = fx_slurp("base", &la), *b = fx_slurp("other", &lb);
	CHECK(a && b);
	memcpy(a, b, FMT_FILE_HEADER_BYTES);
	CHECK_EQ(fx_spit("hdrswap", a, la), 0);
	CHECK_EQ(open_and_read("hdrswap", content), -EBADMSG);
	free(a);
	free(b);
}

TEST(duplicated_frame_fails_inside_and_at_the_end)
{
	size_t len;
	unsigned char *b = fx_slurp("base", &len);
	struct frame_pos fr[16];
	CHECK(b);
	CHECK_EQ(frames_walk(b, len, fr, 16), NCHUNK + 1);
	unsigned char *d = malloc(len + fr[1].len);
	/* inside: frame 1 twice in a row */
	memcpy(d, b, fr[2].off);
	memcpy(d + fr[2].off, b + fr[1].off, fr[1].len);
	memcpy(d + fr[2].off + fr[1].len, b + fr[2].off, len - fr[2].off);
	CHECK_EQ(fx_spit("dup", d, len + fr[1].len), 0);
	CHECK_EQ(open_and_read("dup", content), -EBADMSG);
	/* at the end, after the seal */
	memcpy(d, b, len);
	memcpy(d + len, b + fr[1].off, fr[1].len);
	CHECK_EQ(fx_spit("dup", d, len + fr[1].len), 0);
	CHECK_EQ(open_and_read("dup", content), -EBADMSG);
	free(d);
	free(b);
}

TEST(level_hint_edited_to_another_level_fails)
{
	size_t len;
	unsigned char *b = fx_slurp("base", &len);
	struct fmt_file_header h;
	CHECK(b);
	CHECK_EQ(fmt_file_header_peek(b, &h), 0);
	fmt_level_hint(kr_vault_subkey(fx_kr, KR_VSUB_HINT), h.file_id, 2, b + 24);
	CHECK_EQ(fx_spit("relevel", b, len), 0);
	CHECK_EQ(open_and_read("relevel", content), -EBADMSG);
	free(b);
}

TEST(file_with_an_unknown_required_flag_is_refused_as_unsupported)
{
	size_t len;
	unsigned char *b = fx_slurp("base", &len);
	struct fmt_file_header h;
	struct vf_file *f;
	CHECK(b);
	CHECK_EQ(fmt_file_header_peek(b, &h), 0);
	h.required_flags = 0x8000; /* a feature from the future, properly tagged */
	fmt_file_header_encode(&h, kr_level_subkey(fx_kr, 1, KR_SUB_META), b);
	CHECK_EQ(fx_spit("future", b, len), 0);
	CHECK_EQ(vf_open(fx_kr, fx_dir, "future", false, &f), -EOPNOTSUPP);
	free(b);
}

TEST(sealed_file_truncated_fails)
{
	size_t len;
	unsigned char *b = fx_slurp("base", &len);
	CHECK(b);
	const size_t cuts[] = {1, 15, 16, 17, 100, CS, len - 64, len - 65};
	for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
		CHECK_EQ(fx_spit("short", b, len - cuts[i]), 0);
		CHECK_EQ(open_and_read("short", content), -EBADMSG);
	}
	CHECK_EQ(fx_spit("short", b, 64), 0);
	CHECK_EQ(open_and_read("short", content), -EBADMSG);
	free(b);
}

TEST(file_grown_with_garbage_still_reads_its_sealed_content)
{
	/* Appended junk is a torn write, not an attack on sealed data. */
	size_t len;
	unsigned char *b = fx_slurp("base", &len);
	CHECK(b);
	unsigned char *g = malloc(len + 100);
	memcpy(g, b, len);
	memset(g + len, 0, 100);
	CHECK_EQ(fx_spit("grown", g, len + 100), 0);
	CHECK_EQ(open_and_read("grown", content), 0);
	free(g);
	free(b);
}

int main(void)
{
	if (fx_setup())
		return 1;
	fx_fill(content, FSIZE);
	RUN(untouched_file_reads_back);
	RUN(flipping_any_byte_of_a_synced_file_fails_with_ebadmsg);
	RUN(chunks_swapped_within_a_file_fail);
	RUN(chunk_copied_from_another_file_fails);
	RUN(header_swapped_between_files_fails);
	RUN(duplicated_frame_fails_inside_and_at_the_end);
	RUN(level_hint_edited_to_another_level_fails);
	RUN(file_with_an_unknown_required_flag_is_refused_as_unsupported);
	RUN(sealed_file_truncated_fails);
	RUN(file_grown_with_garbage_still_reads_its_sealed_content);
	fx_teardown();
	return tap_done();
}
