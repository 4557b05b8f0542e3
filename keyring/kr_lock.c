/* kr_lock.c - forget one level's keys in a running driver, and take them
 * back (strongroom lock / unlock, docs/admin-guide.md "Incident response").
 *
 * Invariants:
 *  - a forgotten level's bytes in struct kr_secure are zero (key in use,
 *    root key, next key, subkeys) and kr_level_held() is false for it; the
 *    bit in kr->forgotten is set before the wipe starts, so nobody new is
 *    handed the level's subkeys while it runs;
 *  - a level comes back only from a keyring of the same vault (constant-time
 *    compare of the vault ID) whose key in use has the same generation, so
 *    files written before the lock open with the key given back;
 *  - the caller stops every holder of the level's subkey pointers before
 *    forgetting (the vault's watch layer does: fs/vault/vault_watch.c).
 */
#include <errno.h>
#include <string.h>

#include "kr_internal.h"

int kr_level_forget(struct kr_keyring *kr, unsigned level)
{
	if (!kr_level_held(kr, level))
		return -ENOKEY;
	__atomic_fetch_or(&kr->forgotten, 1u << level, __ATOMIC_ACQ_REL);
	sodium_memzero(kr->sec->level_key[level], KR_KEY_BYTES);
	sodium_memzero(kr->sec->level_root[level], KR_KEY_BYTES);
	sodium_memzero(kr->sec->level_next[level], KR_KEY_BYTES);
	sodium_memzero(kr->sec->level_sub[level], sizeof kr->sec->level_sub[level]);
	return 0;
}

bool kr_level_forgotten(const struct kr_keyring *kr, unsigned level)
{
	return level < KR_MAX_LEVELS &&
	       (__atomic_load_n(&kr->forgotten, __ATOMIC_ACQUIRE) & (1u << level)) != 0;
}

int kr_level_restore(struct kr_keyring *kr, const struct kr_keyring *from, unsigned level)
{
	if (!kr_level_forgotten(kr, level) || level > kr->ceiling)
		return -EINVAL;
	if (sodium_memcmp(kr->cfg.vault_id, from->cfg.vault_id, KR_VAULT_ID_BYTES) != 0)
		return -EXDEV;
	if (!kr_level_held(from, level))
		return -ENOKEY;
	if (from->gen[level] != kr->gen[level])
		return -ESTALE;
	memcpy(kr->sec->level_key[level], from->sec->level_key[level], KR_KEY_BYTES);
	memcpy(kr->sec->level_sub[level], from->sec->level_sub[level],
	       sizeof kr->sec->level_sub[level]);
	if (!kr->roots_gone) {
		memcpy(kr->sec->level_root[level], from->sec->level_root[level], KR_KEY_BYTES);
		if (kr->next_gen[level])
			memcpy(kr->sec->level_next[level], from->sec->level_next[level],
			       KR_KEY_BYTES);
	}
	__atomic_fetch_and(&kr->forgotten, ~(1u << level), __ATOMIC_ACQ_REL);
	return 0;
}

int kr_level_adopt(struct kr_keyring *kr, const struct kr_keyring *from, unsigned level)
{
	if (level >= KR_MAX_LEVELS || !kr_level_held(kr, level))
		return -ENOKEY;
	if (sodium_memcmp(kr->cfg.vault_id, from->cfg.vault_id, KR_VAULT_ID_BYTES) != 0)
		return -EXDEV;
	if (!kr_level_held(from, level))
		return -ENOKEY;
	if (from->gen[level] <= kr->gen[level])
		return -ESTALE;
	/* In place: the subkey pointers handed out stay valid and now give
	 * the new keys (the caller stopped every user first). */
	memcpy(kr->sec->level_key[level], from->sec->level_key[level], KR_KEY_BYTES);
	memcpy(kr->sec->level_sub[level], from->sec->level_sub[level],
	       sizeof kr->sec->level_sub[level]);
	sodium_memzero(kr->sec->level_next[level], KR_KEY_BYTES);
	if (!kr->roots_gone)
		memcpy(kr->sec->level_root[level], from->sec->level_root[level], KR_KEY_BYTES);
	kr->gen[level] = from->gen[level];
	kr->next_gen[level] = 0;
	return 0;
}
