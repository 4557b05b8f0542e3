/* kr_watch.c - STORE/watch.state, the freezes and level locks that outlive
 * a mount (docs/format.md section 4.5; strongroom freeze, lock, unlock).
 *
 * The keyring only encodes, authenticates and stores the state; what a
 * freeze or a lock does is the vault's business (fs/vault/vault_watch.c).
 * The MAC key is the vault subkey KR_VSUB_WATCH, which every keyslot's
 * vault key gives: a store writer without a secret can neither forge nor
 * edit the file, only delete it or put back an older copy, which the
 * caller reports (docs/threat-model.md).
 *
 * Invariants:
 *  - a state is accepted only whole: magic, version, vault ID, bounds, the
 *    exact length and the MAC (constant-time) all check, else -EUCLEAN
 *    (-EOPNOTSUPP for another version), and *st is left zeroed;
 *  - frozen uids are kept sorted and distinct, so one state has one
 *    encoding;
 *  - a save replaces the file atomically (kr_file_write_atomic) and bumps
 *    the generation.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kr_internal.h"

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

ssize_t kr_watch_encode(const struct kr_watch_state *st, const uint8_t vault_id[KR_VAULT_ID_BYTES],
			const unsigned char mac_key[KR_KEY_BYTES], unsigned char *out, size_t cap)
{
	uint32_t uids[KR_WATCH_FROZEN_MAX];
	size_t len;

	if (st->nfrozen > KR_WATCH_FROZEN_MAX)
		return -EINVAL;
	len = KR_WATCH_HEADER_BYTES + 4 * (size_t)st->nfrozen + KR_KEY_BYTES;
	if (cap < len)
		return -ENOSPC;
	memcpy(uids, st->frozen, 4 * (size_t)st->nfrozen);
	qsort(uids, st->nfrozen, sizeof uids[0], uid_cmp);
	for (unsigned i = 1; i < st->nfrozen; i++)
		if (uids[i] == uids[i - 1])
			return -EINVAL;
	memset(out, 0, KR_WATCH_HEADER_BYTES);
	memcpy(out, KR_WATCH_MAGIC, KR_WATCH_MAGIC_BYTES);
	out[8] = KR_WATCH_VERSION;
	put32(out + 12, st->locked);
	memcpy(out + 16, vault_id, KR_VAULT_ID_BYTES);
	put32(out + 32, (uint32_t)st->generation);
	put32(out + 36, (uint32_t)(st->generation >> 32));
	put32(out + 40, st->nfrozen);
	for (unsigned i = 0; i < st->nfrozen; i++)
		put32(out + KR_WATCH_HEADER_BYTES + 4 * (size_t)i, uids[i]);
	crypto_generichash(out + len - KR_KEY_BYTES, KR_KEY_BYTES, out, len - KR_KEY_BYTES,
			   mac_key, KR_KEY_BYTES);
	return (ssize_t)len;
}

int kr_watch_decode(const unsigned char *buf, size_t len, const uint8_t vault_id[KR_VAULT_ID_BYTES],
		    unsigned nlevels, const unsigned char *mac_key, struct kr_watch_state *st)
{
	unsigned char mac[KR_KEY_BYTES];
	uint32_t n;
	int rc;

	memset(st, 0, sizeof *st);
	if (len < 9 || memcmp(buf, KR_WATCH_MAGIC, KR_WATCH_MAGIC_BYTES) != 0)
		return -EUCLEAN;
	if (buf[8] != KR_WATCH_VERSION)
		return -EOPNOTSUPP;
	if (len < KR_WATCH_HEADER_BYTES + KR_KEY_BYTES || buf[9] || buf[10] || buf[11])
		return -EUCLEAN;
	n = get32(buf + 40);
	if (n > KR_WATCH_FROZEN_MAX || len != KR_WATCH_HEADER_BYTES + 4 * (size_t)n + KR_KEY_BYTES)
		return -EUCLEAN;
	if (nlevels < 32 && (get32(buf + 12) >> nlevels) != 0)
		return -EUCLEAN;
	if (vault_id && sodium_memcmp(buf + 16, vault_id, KR_VAULT_ID_BYTES) != 0)
		return -EUCLEAN;
	for (uint32_t i = 1; i < n; i++)
		if (get32(buf + KR_WATCH_HEADER_BYTES + 4 * (size_t)i) <=
		    get32(buf + KR_WATCH_HEADER_BYTES + 4 * (size_t)(i - 1)))
			return -EUCLEAN;
	if (mac_key) {
		crypto_generichash(mac, sizeof mac, buf, len - KR_KEY_BYTES, mac_key, KR_KEY_BYTES);
		rc = sodium_memcmp(mac, buf + len - KR_KEY_BYTES, KR_KEY_BYTES) == 0 ? 0 : -EUCLEAN;
		sodium_memzero(mac, sizeof mac);
		if (rc)
			return rc;
	}
	st->locked = get32(buf + 12);
	st->generation = (uint64_t)get32(buf + 32) | (uint64_t)get32(buf + 36) << 32;
	st->nfrozen = n;
	for (uint32_t i = 0; i < n; i++)
		st->frozen[i] = get32(buf + KR_WATCH_HEADER_BYTES + 4 * (size_t)i);
	return 0;
}

int kr_watch_parse(const unsigned char *buf, size_t len, struct kr_watch_state *st)
{
	return kr_watch_decode(buf, len, NULL, 32, NULL, st);
}

int kr_watch_load(const char *store, const struct kr_keyring *kr, struct kr_watch_state *st)
{
	unsigned char buf[KR_WATCH_MAX_BYTES];
	char path[4096];
	ssize_t n;
	int rc;

	memset(st, 0, sizeof *st);
	rc = kr_path_join(path, sizeof path, store, KR_WATCH_NAME);
	if (rc)
		return rc;
	n = kr_file_read(path, buf, sizeof buf);
	if (n < 0)
		return (int)n; /* -ENOENT: never written, or deleted */
	return kr_watch_decode(buf, (size_t)n, kr->cfg.vault_id, kr->cfg.nlevels,
			       kr->sec->vault_sub[KR_VSUB_WATCH - 1], st);
}

int kr_watch_save(const char *store, const struct kr_keyring *kr, struct kr_watch_state *st)
{
	unsigned char buf[KR_WATCH_MAX_BYTES];
	char path[4096];
	ssize_t n;
	int rc;

	if (kr->cfg.nlevels < 32 && (st->locked >> kr->cfg.nlevels) != 0)
		return -EINVAL;
	rc = kr_path_join(path, sizeof path, store, KR_WATCH_NAME);
	if (rc)
		return rc;
	st->generation++;
	n = kr_watch_encode(st, kr->cfg.vault_id, kr->sec->vault_sub[KR_VSUB_WATCH - 1], buf,
			    sizeof buf);
	if (n < 0)
		return (int)n;
	return kr_file_write_atomic(path, buf, (size_t)n);
}
