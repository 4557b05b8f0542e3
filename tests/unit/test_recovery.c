/* test_recovery.c - the recovery key's text form (docs/format.md section
 * 4.1): round trip, forgiving input, and typos caught by the check group.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../../keyring/kr_internal.h"
#include "tap.h"

static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* Vector 5 (section 4.1): bytes 00 01 .. 13. */
#define VEC_RECOVERY_TEXT "000G-40R4-0M30-E209-185G-R38E-1W81-24GK-BNCQ"

static void seq(unsigned char *b, size_t n, unsigned start)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(start + i);
}

TEST(recovery_text_vector_matches_the_spec)
{
	unsigned char raw[20];
	char text[KR_RECOVERY_TEXT_BYTES];
	seq(raw, 20, 0);
	kr_recovery_format(raw, text);
	printf("# text %s\n", text);
	CHECK(strcmp(text, VEC_RECOVERY_TEXT) == 0);
}

TEST(recovery_text_has_nine_groups_of_four)
{
	unsigned char raw[20];
	char text[KR_RECOVERY_TEXT_BYTES];
	randombytes_buf(raw, sizeof raw);
	kr_recovery_format(raw, text);
	CHECK_EQ(strlen(text), 44);
	for (int i = 0; i < 44; i++) {
		if (i % 5 == 4)
			CHECK(text[i] == '-');
		else
			CHECK(strchr(alphabet, text[i]) != NULL);
	}
}

TEST(recovery_text_round_trips_for_random_keys)
{
	for (int n = 0; n < 200; n++) {
		unsigned char raw[20], back[20];
		char text[KR_RECOVERY_TEXT_BYTES];
		randombytes_buf(raw, sizeof raw);
		kr_recovery_format(raw, text);
		CHECK_EQ(kr_recovery_parse(text, back), 0);
		CHECK(memcmp(raw, back, 20) == 0);
	}
}

TEST(recovery_parse_forgives_case_spacing_and_lookalikes)
{
	unsigned char raw[20], back[20];
	char text[KR_RECOVERY_TEXT_BYTES], typed[128];
	size_t o = 0;
	seq(raw, 20, 0x80);
	kr_recovery_format(raw, text);
	/* lower case, spaces for dashes, O for 0 and l for 1, a newline */
	for (const char *p = text; *p; p++) {
		char c = *p;
		if (c == '-')
			c = ' ';
		else if (c == '0')
			c = 'O';
		else if (c == '1')
			c = 'l';
		else
			c = (char)tolower((unsigned char)c);
		typed[o++] = c;
	}
	typed[o++] = '\n';
	typed[o] = '\0';
	CHECK_EQ(kr_recovery_parse(typed, back), 0);
	CHECK(memcmp(raw, back, 20) == 0);
}

TEST(recovery_parse_catches_every_single_character_typo)
{
	unsigned char raw[20], back[20];
	char text[KR_RECOVERY_TEXT_BYTES], typo[KR_RECOVERY_TEXT_BYTES];
	seq(raw, 20, 0);
	kr_recovery_format(raw, text);
	for (int i = 0; i < 44; i++) {
		if (text[i] == '-')
			continue;
		for (const char *a = alphabet; *a; a++) {
			if (*a == text[i])
				continue;
			memcpy(typo, text, sizeof typo);
			typo[i] = *a;
			if (kr_recovery_parse(typo, back) != -EBADMSG) {
				printf("# position %d as %c accepted\n", i, *a);
				CHECK(0);
			}
		}
	}
}

TEST(recovery_parse_catches_swapped_neighbours)
{
	unsigned char raw[20], back[20];
	char text[KR_RECOVERY_TEXT_BYTES], typo[KR_RECOVERY_TEXT_BYTES];
	seq(raw, 20, 0);
	kr_recovery_format(raw, text);
	for (int i = 0; i + 1 < 44; i++) {
		if (text[i] == '-' || text[i + 1] == '-' || text[i] == text[i + 1])
			continue;
		memcpy(typo, text, sizeof typo);
		typo[i] = text[i + 1];
		typo[i + 1] = text[i];
		CHECK_EQ(kr_recovery_parse(typo, back), -EBADMSG);
	}
}

TEST(recovery_parse_rejects_wrong_length_and_foreign_characters)
{
	unsigned char raw[20], back[20];
	char text[KR_RECOVERY_TEXT_BYTES], bad[64];
	seq(raw, 20, 0);
	kr_recovery_format(raw, text);
	CHECK_EQ(kr_recovery_parse("", back), -EINVAL);
	memcpy(bad, text, 39);
	bad[39] = '\0'; /* a group short */
	CHECK_EQ(kr_recovery_parse(bad, back), -EINVAL);
	snprintf(bad, sizeof bad, "%s-AAAA", text);
	CHECK_EQ(kr_recovery_parse(bad, back), -EINVAL);
	memcpy(bad, text, sizeof text);
	bad[0] = 'U'; /* not in the alphabet */
	CHECK_EQ(kr_recovery_parse(bad, back), -EINVAL);
	bad[0] = '*';
	CHECK_EQ(kr_recovery_parse(bad, back), -EINVAL);
	/* failure leaves no key bytes behind */
	for (int i = 0; i < 20; i++)
		CHECK_EQ(back[i], 0);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	RUN(recovery_text_vector_matches_the_spec);
	RUN(recovery_text_has_nine_groups_of_four);
	RUN(recovery_text_round_trips_for_random_keys);
	RUN(recovery_parse_forgives_case_spacing_and_lookalikes);
	RUN(recovery_parse_catches_every_single_character_typo);
	RUN(recovery_parse_catches_swapped_neighbours);
	RUN(recovery_parse_rejects_wrong_length_and_foreign_characters);
	return tap_done();
}
