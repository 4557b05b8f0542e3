/* fmt_name.c - encrypted file and directory names (docs/format.md section 6).
 *
 * Names are encrypted deterministically per directory (an SIV construction),
 * so a lookup encrypts the wanted name and opens exactly one store entry:
 *   padded = name || zero bytes, to a multiple of 32 (at least 32)
 *   IV     = BLAKE2b-128(key = NAME_MAC subkey, dir_id || padded)
 *   C      = XChaCha20(key = NAME_ENC subkey, nonce = IV || 0^8) XOR padded
 *   store name = base64url, no padding, of IV || C
 *
 * Invariants:
 *  1. Every plaintext name has exactly one store name: the base64 decoder
 *     rejects non-canonical encodings and the padding is minimal (the last
 *     32-byte block holds at least one name byte).
 *  2. A decrypted name is returned only after its IV was recomputed and
 *     compared in constant time; otherwise the output is wiped.
 *  3. Store names are base64url and so never start with '.', which keeps
 *     ".sr-dir", ".L..." and ".sr-tmp..." free for the format.
 */
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "strongroom/format.h"

#define NAME_BLOCK 32
#define NAME_IV_BYTES 16
#define NAME_PADDED_MAX 256
#define NAME_BIN_MAX (NAME_IV_BYTES + NAME_PADDED_MAX)
#define NAME_B64_VARIANT sodium_base64_VARIANT_URLSAFE_NO_PADDING

static void fmt_name_iv(const unsigned char mac_key[FMT_KEY_BYTES], const uint8_t dir_id[FMT_ID_BYTES],
			const uint8_t *padded, size_t plen, uint8_t iv[NAME_IV_BYTES])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, mac_key, FMT_KEY_BYTES, NAME_IV_BYTES);
	crypto_generichash_update(&st, dir_id, FMT_ID_BYTES);
	crypto_generichash_update(&st, padded, plen);
	crypto_generichash_final(&st, iv, NAME_IV_BYTES);
	sodium_memzero(&st, sizeof st);
}

static void fmt_name_xor(const unsigned char enc_key[FMT_KEY_BYTES], const uint8_t iv[NAME_IV_BYTES],
			 const uint8_t *in, uint8_t *out, size_t len)
{
	uint8_t nonce[crypto_stream_xchacha20_NONCEBYTES] = {0};

	memcpy(nonce, iv, NAME_IV_BYTES);
	crypto_stream_xchacha20_xor(out, in, len, nonce, enc_key);
}

ssize_t fmt_name_encrypt(const unsigned char mac_key[FMT_KEY_BYTES],
			 const unsigned char enc_key[FMT_KEY_BYTES], const uint8_t dir_id[FMT_ID_BYTES],
			 const char *name, size_t len, char *out, size_t cap)
{
	uint8_t bin[NAME_BIN_MAX], padded[NAME_PADDED_MAX];
	size_t plen, b64len;
	ssize_t rc;

	if (len == 0)
		return -EINVAL;
	if (len > FMT_NAME_MAX)
		return -ENAMETOOLONG;
	if (memchr(name, '/', len) || memchr(name, '\0', len))
		return -EINVAL;
	plen = (len + NAME_BLOCK - 1) / NAME_BLOCK * NAME_BLOCK;
	b64len = sodium_base64_ENCODED_LEN(NAME_IV_BYTES + plen, NAME_B64_VARIANT);
	if (cap < b64len)
		return -ENOSPC;

	memset(padded, 0, sizeof padded);
	memcpy(padded, name, len);
	fmt_name_iv(mac_key, dir_id, padded, plen, bin);
	fmt_name_xor(enc_key, bin, padded, bin + NAME_IV_BYTES, plen);
	sodium_bin2base64(out, cap, bin, NAME_IV_BYTES + plen, NAME_B64_VARIANT);
	rc = (ssize_t)strlen(out);
	sodium_memzero(padded, sizeof padded);
	return rc;
}

ssize_t fmt_name_decrypt(const unsigned char mac_key[FMT_KEY_BYTES],
			 const unsigned char enc_key[FMT_KEY_BYTES], const uint8_t dir_id[FMT_ID_BYTES],
			 const char *enc, size_t len, char *out, size_t cap)
{
	uint8_t bin[NAME_BIN_MAX], padded[NAME_PADDED_MAX], iv[NAME_IV_BYTES];
	char check[sodium_base64_ENCODED_LEN(NAME_BIN_MAX, NAME_B64_VARIANT)];
	size_t binlen = 0, plen, nlen;
	ssize_t rc;

	if (len == 0 || len > sodium_base64_ENCODED_LEN(NAME_BIN_MAX, NAME_B64_VARIANT) - 1)
		return -EUCLEAN;
	if (sodium_base642bin(bin, sizeof bin, enc, len, NULL, &binlen, NULL, NAME_B64_VARIANT) != 0)
		return -EUCLEAN;
	if (binlen < NAME_IV_BYTES + NAME_BLOCK || (binlen - NAME_IV_BYTES) % NAME_BLOCK != 0)
		return -EUCLEAN;
	/* The decoder may stop early at a byte outside the alphabet: accept
	 * only input that is exactly the encoding of what was decoded. */
	sodium_bin2base64(check, sizeof check, bin, binlen, NAME_B64_VARIANT);
	if (strlen(check) != len || memcmp(check, enc, len) != 0)
		return -EUCLEAN;
	plen = binlen - NAME_IV_BYTES;

	fmt_name_xor(enc_key, bin, bin + NAME_IV_BYTES, padded, plen);
	fmt_name_iv(mac_key, dir_id, padded, plen, iv);
	if (sodium_memcmp(iv, bin, NAME_IV_BYTES) != 0) {
		rc = -EBADMSG;
		goto out;
	}
	nlen = strnlen((const char *)padded, plen);
	/* Authentic but not what fmt_name_encrypt writes: a structure error. */
	if (nlen == 0 || nlen + NAME_BLOCK <= plen || memchr(padded, '/', nlen) ||
	    !sodium_is_zero(padded + nlen, plen - nlen)) {
		rc = -EUCLEAN;
		goto out;
	}
	if (cap < nlen + 1) {
		rc = -ENOSPC;
		goto out;
	}
	memcpy(out, padded, nlen);
	out[nlen] = '\0';
	rc = (ssize_t)nlen;
out:
	sodium_memzero(padded, sizeof padded);
	return rc;
}

void fmt_longname(const char *enc, size_t len, char out[FMT_LONGNAME_BYTES])
{
	uint8_t h[32];

	crypto_generichash(h, sizeof h, (const unsigned char *)enc, len, NULL, 0);
	memcpy(out, FMT_LONGNAME_PREFIX, 2);
	sodium_bin2base64(out + 2, FMT_LONGNAME_BYTES - 2, h, sizeof h, NAME_B64_VARIANT);
}

int fmt_longname_check(const char *store_name, const char *enc, size_t len)
{
	char want[FMT_LONGNAME_BYTES];

	if (strnlen(store_name, FMT_LONGNAME_BYTES) != FMT_LONGNAME_BYTES - 1)
		return -EBADMSG;
	fmt_longname(enc, len, want);
	return sodium_memcmp(want, store_name, FMT_LONGNAME_BYTES - 1) == 0 ? 0 : -EBADMSG;
}
