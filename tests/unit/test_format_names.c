/* test_format_names.c - level hints, encrypted names and long-name sidecars
 * (docs/format.md sections 5 and 6). */
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "strongroom/format.h"
#include "tap.h"

/* Known answers, also printed in docs/format.md 5 and 6. */
#define VECTOR_HINT "31715e5cb76d5970"
#define VECTOR_NAME "tM0u_Z8S9GeT0ZTD9W-9tdghh4QIYC18bkCvjlkeu1eHFkV_PqaRIsMD50cnTzSM"
#define VECTOR_LONGNAME ".Lvd2BPGNCOXIxce8_7phXm5SWTjuxyz5CcmLIwGjVIxk"

static unsigned char mac_key[32], enc_key[32], hint_key[32];
static uint8_t dir_id[16], dir_id2[16];

static void keys_init(void)
{
	for (int i = 0; i < 32; i++) {
		hint_key[i] = (unsigned char)i;
		mac_key[i] = (unsigned char)i;
		enc_key[i] = (unsigned char)(0x20 + i);
	}
	for (int i = 0; i < 16; i++) {
		dir_id[i] = (uint8_t)(0x40 + i);
		dir_id2[i] = (uint8_t)(0x50 + i);
	}
}

static void hex(const uint8_t *b, size_t n, char *out)
{
	sodium_bin2hex(out, 2 * n + 1, b, n);
}

/* Vectors of docs/format.md 5 and 6: keys 00..1f (hint, NAME_MAC), 20..3f
 * (NAME_ENC), id/dir_id 40..4f. */
TEST(level_hint_matches_spec_vector)
{
	uint8_t h[8];
	char x[17];
	fmt_level_hint(hint_key, dir_id, 2, h);
	hex(h, 8, x);
	CHECK(strcmp(x, VECTOR_HINT) == 0);
}

TEST(level_hints_differ_per_level_and_id)
{
	uint8_t a[8], b[8], c[8];
	fmt_level_hint(hint_key, dir_id, 1, a);
	fmt_level_hint(hint_key, dir_id, 2, b);
	fmt_level_hint(hint_key, dir_id2, 1, c);
	CHECK(memcmp(a, b, 8) != 0);
	CHECK(memcmp(a, c, 8) != 0);
}

TEST(name_encrypt_matches_spec_vector)
{
	char out[400];
	ssize_t n = fmt_name_encrypt(mac_key, enc_key, dir_id, "report.pdf", 10, out, sizeof out);
	CHECK_EQ(n, (ssize_t)strlen(VECTOR_NAME));
	CHECK(strcmp(out, VECTOR_NAME) == 0);
}

TEST(name_roundtrips_and_is_deterministic_per_directory)
{
	char a[400], b[400], c[400], plain[300];
	CHECK(fmt_name_encrypt(mac_key, enc_key, dir_id, "Q3 plan.xlsx", 12, a, sizeof a) > 0);
	CHECK(fmt_name_encrypt(mac_key, enc_key, dir_id, "Q3 plan.xlsx", 12, b, sizeof b) > 0);
	CHECK(fmt_name_encrypt(mac_key, enc_key, dir_id2, "Q3 plan.xlsx", 12, c, sizeof c) > 0);
	CHECK(strcmp(a, b) == 0);
	CHECK(strcmp(a, c) != 0);
	CHECK(a[0] != '.');
	CHECK_EQ(fmt_name_decrypt(mac_key, enc_key, dir_id, a, strlen(a), plain, sizeof plain), 12);
	CHECK(strcmp(plain, "Q3 plan.xlsx") == 0);
}

TEST(name_lengths_leak_only_a_rounding_to_32_bytes)
{
	char a[400], b[400];
	ssize_t na = fmt_name_encrypt(mac_key, enc_key, dir_id, "a", 1, a, sizeof a);
	ssize_t nb = fmt_name_encrypt(mac_key, enc_key, dir_id, "abcdefghijklmnopqrstuvwxyz012345", 32,
				      b, sizeof b);
	CHECK(na > 0);
	CHECK_EQ(na, nb);
}

TEST(every_name_length_up_to_255_roundtrips_with_long_names_via_sidecar)
{
	char name[256], enc[400], plain[300], ln[FMT_LONGNAME_BYTES];
	for (size_t len = 1; len <= 255; len++) {
		for (size_t i = 0; i < len; i++)
			name[i] = (char)('a' + (i * 7 + len) % 26);
		ssize_t n = fmt_name_encrypt(mac_key, enc_key, dir_id, name, len, enc, sizeof enc);
		CHECK(n > 0);
		if (n > 255) {
			fmt_longname(enc, (size_t)n, ln);
			CHECK_EQ(strlen(ln), 45);
			CHECK(strncmp(ln, ".L", 2) == 0);
			CHECK_EQ(fmt_longname_check(ln, enc, (size_t)n), 0);
		}
		CHECK_EQ(fmt_name_decrypt(mac_key, enc_key, dir_id, enc, (size_t)n, plain, sizeof plain),
			 (ssize_t)len);
		CHECK(memcmp(plain, name, len) == 0);
	}
}

TEST(names_with_every_byte_value_except_slash_and_nul_roundtrip)
{
	char name[255], enc[400], plain[300];
	size_t len = 0;
	for (int c = 1; c <= 255; c++)
		if (c != '/')
			name[len++] = (char)c;
	CHECK_EQ(len, 254);
	ssize_t n = fmt_name_encrypt(mac_key, enc_key, dir_id, name, len, enc, sizeof enc);
	CHECK(n > 255);
	CHECK_EQ(fmt_name_decrypt(mac_key, enc_key, dir_id, enc, (size_t)n, plain, sizeof plain),
		 (ssize_t)len);
	CHECK(memcmp(plain, name, len) == 0);
	for (int c = 1; c <= 255; c++) {
		char one = (char)c;
		if (c == '/')
			continue;
		n = fmt_name_encrypt(mac_key, enc_key, dir_id, &one, 1, enc, sizeof enc);
		CHECK(n > 0);
		CHECK_EQ(fmt_name_decrypt(mac_key, enc_key, dir_id, enc, (size_t)n, plain, sizeof plain), 1);
		CHECK(plain[0] == one);
	}
}

TEST(name_encrypt_rejects_slash_nul_empty_and_over_255)
{
	char enc[400], big[300];
	memset(big, 'x', sizeof big);
	CHECK_EQ(fmt_name_encrypt(mac_key, enc_key, dir_id, "a/b", 3, enc, sizeof enc), -EINVAL);
	CHECK_EQ(fmt_name_encrypt(mac_key, enc_key, dir_id, "a\0b", 3, enc, sizeof enc), -EINVAL);
	CHECK_EQ(fmt_name_encrypt(mac_key, enc_key, dir_id, "", 0, enc, sizeof enc), -EINVAL);
	CHECK_EQ(fmt_name_encrypt(mac_key, enc_key, dir_id, big, 256, enc, sizeof enc), -ENAMETOOLONG);
}

TEST(name_decrypt_rejects_every_flipped_character)
{
	char enc[400], plain[300];
	ssize_t n = fmt_name_encrypt(mac_key, enc_key, dir_id, "invoice-2024.pdf", 16, enc, sizeof enc);
	CHECK(n > 0);
	for (ssize_t i = 0; i < n; i++) {
		char saved = enc[i];
		enc[i] = saved == 'A' ? 'B' : 'A';
		ssize_t r = fmt_name_decrypt(mac_key, enc_key, dir_id, enc, (size_t)n, plain, sizeof plain);
		enc[i] = saved;
		CHECK(r == -EBADMSG || r == -EUCLEAN);
	}
}

TEST(name_decrypt_rejects_name_from_another_directory)
{
	char enc[400], plain[300];
	ssize_t n = fmt_name_encrypt(mac_key, enc_key, dir_id, "secret.docx", 11, enc, sizeof enc);
	CHECK(n > 0);
	CHECK_EQ(fmt_name_decrypt(mac_key, enc_key, dir_id2, enc, (size_t)n, plain, sizeof plain),
		 -EBADMSG);
}

TEST(name_decrypt_rejects_malformed_base64_and_lengths)
{
	char plain[300];
	CHECK_EQ(fmt_name_decrypt(mac_key, enc_key, dir_id, "a.b", 3, plain, sizeof plain), -EUCLEAN);
	CHECK_EQ(fmt_name_decrypt(mac_key, enc_key, dir_id, "AAAA", 4, plain, sizeof plain), -EUCLEAN);
	CHECK_EQ(fmt_name_decrypt(mac_key, enc_key, dir_id, "", 0, plain, sizeof plain), -EUCLEAN);
}

TEST(name_decrypt_rejects_a_stored_name_with_a_byte_outside_the_alphabet)
{
	char enc[400], plain[300];
	ssize_t n = fmt_name_encrypt(mac_key, enc_key, dir_id, "contract.pdf", 12, enc, sizeof enc);
	CHECK(n > 0);
	/* valid name, then junk the decoder would stop at */
	memcpy(enc + n, "\xff" "AB", 4);
	CHECK_EQ(fmt_name_decrypt(mac_key, enc_key, dir_id, enc, (size_t)n + 3, plain, sizeof plain),
		 -EUCLEAN);
	enc[n - 2] = (char)0xff;
	CHECK(fmt_name_decrypt(mac_key, enc_key, dir_id, enc, (size_t)n, plain, sizeof plain) < 0);
}

TEST(longname_check_rejects_edited_sidecar)
{
	char name[255], enc[400], ln[FMT_LONGNAME_BYTES];
	memset(name, 'z', sizeof name);
	ssize_t n = fmt_name_encrypt(mac_key, enc_key, dir_id, name, 255, enc, sizeof enc);
	CHECK(n > 255);
	fmt_longname(enc, (size_t)n, ln);
	enc[10] = enc[10] == 'A' ? 'B' : 'A';
	CHECK_EQ(fmt_longname_check(ln, enc, (size_t)n), -EBADMSG);
	CHECK_EQ(fmt_longname_check(".Lshort", enc, (size_t)n), -EBADMSG);
}

TEST(longname_matches_spec_vector)
{
	char ln[FMT_LONGNAME_BYTES];
	fmt_longname("abc", 3, ln);
	CHECK(strcmp(ln, VECTOR_LONGNAME) == 0);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	keys_init();
	RUN(level_hint_matches_spec_vector);
	RUN(level_hints_differ_per_level_and_id);
	RUN(name_encrypt_matches_spec_vector);
	RUN(name_roundtrips_and_is_deterministic_per_directory);
	RUN(name_lengths_leak_only_a_rounding_to_32_bytes);
	RUN(every_name_length_up_to_255_roundtrips_with_long_names_via_sidecar);
	RUN(names_with_every_byte_value_except_slash_and_nul_roundtrip);
	RUN(name_encrypt_rejects_slash_nul_empty_and_over_255);
	RUN(name_decrypt_rejects_every_flipped_character);
	RUN(name_decrypt_rejects_name_from_another_directory);
	RUN(name_decrypt_rejects_malformed_base64_and_lengths);
	RUN(name_decrypt_rejects_a_stored_name_with_a_byte_outside_the_alphabet);
	RUN(longname_check_rejects_edited_sidecar);
	RUN(longname_matches_spec_vector);
	return tap_done();
}
