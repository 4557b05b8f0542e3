/* kr_recovery.c - the recovery key's text form (docs/format.md section 4).
 *
 * 20 random bytes are written as 32 Crockford base32 characters in 8 groups
 * of 4, then a check group: the first 20 bits of BLAKE2b-256 of the bytes.
 * A person types it back; the parser forgives case, dashes, spaces and the
 * look-alikes O/0 and I/L/1, and the check group catches a typo before any
 * key is derived from it.
 *
 * Invariants: every stack copy of the raw bytes or the hash is wiped before
 * returning; the check is compared in constant time.
 */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "kr_internal.h"

static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

#define DATA_CHARS  32
#define CHECK_CHARS 4

static uint32_t check_value(const unsigned char raw[KR_RECOVERY_RAW_BYTES])
{
	unsigned char h[32];
	uint32_t v;

	crypto_generichash(h, sizeof h, raw, KR_RECOVERY_RAW_BYTES, NULL, 0);
	v = (uint32_t)h[0] << 12 | (uint32_t)h[1] << 4 | (uint32_t)h[2] >> 4;
	sodium_memzero(h, sizeof h);
	return v;
}

void kr_recovery_format(const unsigned char raw[KR_RECOVERY_RAW_BYTES],
			char text[KR_RECOVERY_TEXT_BYTES])
{
	unsigned char sym[DATA_CHARS + CHECK_CHARS];
	uint32_t check = check_value(raw);
	size_t o = 0;

	/* 160 bits, most significant first, 5 bits per character. */
	for (unsigned i = 0; i < DATA_CHARS; i++) {
		unsigned bit = i * 5, v = 0;
		for (unsigned b = 0; b < 5; b++, bit++)
			v = v << 1 | ((raw[bit / 8] >> (7 - bit % 8)) & 1u);
		sym[i] = (unsigned char)v;
	}
	for (unsigned i = 0; i < CHECK_CHARS; i++)
		sym[DATA_CHARS + i] = (unsigned char)((check >> (5 * (CHECK_CHARS - 1 - i))) & 31u);
	for (unsigned i = 0; i < DATA_CHARS + CHECK_CHARS; i++) {
		if (i && i % 4 == 0)
			text[o++] = '-';
		text[o++] = alphabet[sym[i]];
	}
	text[o] = '\0';
	sodium_memzero(sym, sizeof sym);
}

static int symbol_value(int c)
{
	c = toupper(c);
	if (c == 'O')
		c = '0';
	else if (c == 'I' || c == 'L')
		c = '1';
	const char *p = c ? strchr(alphabet, c) : NULL;
	return p ? (int)(p - alphabet) : -1;
}

int kr_recovery_parse(const char *text, unsigned char raw[20])
{
	unsigned char sym[DATA_CHARS + CHECK_CHARS];
	unsigned char want[3], got[3];
	uint32_t check = 0, expect;
	size_t n = 0;
	int rc = -EINVAL;

	sodium_memzero(raw, KR_RECOVERY_RAW_BYTES);
	for (const char *p = text; *p; p++) {
		int v;
		if (*p == '-' || *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
			continue;
		v = symbol_value((unsigned char)*p);
		if (v < 0 || n == sizeof sym)
			goto out;
		sym[n++] = (unsigned char)v;
	}
	if (n != sizeof sym)
		goto out;
	for (unsigned i = 0; i < DATA_CHARS; i++) {
		unsigned bit = i * 5;
		for (unsigned b = 0; b < 5; b++, bit++)
			if (sym[i] >> (4 - b) & 1u)
				raw[bit / 8] |= (unsigned char)(0x80u >> (bit % 8));
	}
	for (unsigned i = 0; i < CHECK_CHARS; i++)
		check = check << 5 | sym[DATA_CHARS + i];
	expect = check_value(raw);
	for (int i = 0; i < 3; i++) {
		want[i] = (unsigned char)(expect >> (8 * i));
		got[i] = (unsigned char)(check >> (8 * i));
	}
	if (sodium_memcmp(want, got, sizeof want) != 0) {
		sodium_memzero(raw, KR_RECOVERY_RAW_BYTES);
		rc = -EBADMSG;
		goto out;
	}
	rc = 0;
out:
	if (rc == -EINVAL)
		sodium_memzero(raw, KR_RECOVERY_RAW_BYTES);
	sodium_memzero(sym, sizeof sym);
	sodium_memzero(want, sizeof want);
	sodium_memzero(got, sizeof got);
	return rc;
}
