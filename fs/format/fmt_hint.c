/* fmt_hint.c - level hints (docs/format.md section 5).
 *
 * A level is never stored in clear: headers carry
 * hint = the first 8 bytes of BLAKE2b-128(key = vault hint subkey,
 * "SRhint01" || id || level) (libsodium's BLAKE2b outputs at least 16 bytes).
 * A reader recomputes the hint for each level and compares in constant time;
 * the id (file_id or dir_id) makes hints differ between objects of the same
 * level, so the store does not reveal which files share a level.
 */
#include <string.h>

#include <sodium.h>

#include "strongroom/format.h"

void fmt_level_hint(const unsigned char hint_key[FMT_KEY_BYTES], const uint8_t id[FMT_ID_BYTES],
		    unsigned level, uint8_t out[FMT_HINT_BYTES])
{
	crypto_generichash_state st;
	uint8_t lv = (uint8_t)level;
	uint8_t full[16];

	crypto_generichash_init(&st, hint_key, FMT_KEY_BYTES, sizeof full);
	crypto_generichash_update(&st, (const unsigned char *)"SRhint01", 8);
	crypto_generichash_update(&st, id, FMT_ID_BYTES);
	crypto_generichash_update(&st, &lv, 1);
	crypto_generichash_final(&st, full, sizeof full);
	memcpy(out, full, FMT_HINT_BYTES);
	sodium_memzero(&st, sizeof st);
}
