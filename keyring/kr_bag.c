/* kr_bag.c - the key bag: level keys that replaced a level's root key
 * (docs/format.md section 4.4), and the key rotation steps built on it.
 *
 * A keyslot holds each level's *root* key and is never rewritten by a
 * rotation (its passphrase is not known then). STORE/keybag holds, per
 * rotated level, the key in use, boxed under a key derived from the root:
 * every slot holding the level opens it. During a rotation it also holds
 * the next key. Finishing a rotation rewrites the bag without the old key.
 *
 * Invariants:
 *  1. The bag is only ever replaced whole and atomically (temp file, fsync,
 *     rename, fsync of the directory).
 *  2. Per level at most one CURRENT and one NEXT entry; generations only
 *     grow, and the box's associated data binds vault ID, level, state and
 *     generation, so no entry can be moved, replayed as another state or
 *     taken to another vault without failing to open.
 *  3. Key bytes live only in the keyring's sodium_malloc'd area; the boxes
 *     are opened straight into it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kr_internal.h"

struct bag_entry {
	uint8_t level, state;
	uint32_t gen;
	uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
	uint8_t box[KR_KEY_BYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES];
};

struct bag {
	uint8_t vault_id[KR_VAULT_ID_BYTES];
	unsigned n;
	struct bag_entry e[KR_BAG_MAX_ENTRIES];
};

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* AD = vault_id || the entry's first 32 bytes (level, state, reserved,
 * generation, nonce). */
static void bag_ad(const uint8_t vault_id[KR_VAULT_ID_BYTES], const struct bag_entry *e,
		   uint8_t ad[48])
{
	memcpy(ad, vault_id, KR_VAULT_ID_BYTES);
	ad[16] = e->level;
	ad[17] = e->state;
	ad[18] = ad[19] = 0;
	put32(ad + 20, e->gen);
	memcpy(ad + 24, e->nonce, sizeof e->nonce);
}

static void bag_key(const unsigned char root[KR_KEY_BYTES], uint32_t gen,
		    unsigned char out[KR_KEY_BYTES])
{
	crypto_kdf_derive_from_key(out, KR_KEY_BYTES, gen, KR_CTX_BAG, root);
}

static int bag_parse(const uint8_t *buf, size_t len, const struct kr_config *cfg, struct bag *b)
{
	uint8_t seen[KR_MAX_LEVELS][3] = {{0}};

	if (len < KR_BAG_HEADER_BYTES || memcmp(buf, KR_BAG_MAGIC, KR_BAG_MAGIC_BYTES) != 0)
		return -EUCLEAN;
	if (buf[8] != KR_BAG_VERSION || buf[9] != 0)
		return -EOPNOTSUPP;
	b->n = buf[10];
	for (int i = 11; i < 16; i++)
		if (buf[i])
			return -EUCLEAN;
	if (b->n > KR_BAG_MAX_ENTRIES ||
	    len != KR_BAG_HEADER_BYTES + (size_t)b->n * KR_BAG_ENTRY_BYTES)
		return -EUCLEAN;
	memcpy(b->vault_id, buf + 16, KR_VAULT_ID_BYTES);
	if (sodium_memcmp(b->vault_id, cfg->vault_id, KR_VAULT_ID_BYTES) != 0)
		return -EUCLEAN;
	for (unsigned i = 0; i < b->n; i++) {
		const uint8_t *p = buf + KR_BAG_HEADER_BYTES + (size_t)i * KR_BAG_ENTRY_BYTES;
		struct bag_entry *e = &b->e[i];

		e->level = p[0];
		e->state = p[1];
		e->gen = get32(p + 4);
		if (e->level >= cfg->nlevels ||
		    (e->state != KR_BAG_CURRENT && e->state != KR_BAG_NEXT) || p[2] || p[3] ||
		    e->gen == 0 || seen[e->level][e->state]++)
			return -EUCLEAN;
		memcpy(e->nonce, p + 8, sizeof e->nonce);
		memcpy(e->box, p + 32, sizeof e->box);
	}
	return 0;
}

static size_t bag_encode(const struct bag *b, uint8_t *out)
{
	memset(out, 0, KR_BAG_HEADER_BYTES);
	memcpy(out, KR_BAG_MAGIC, KR_BAG_MAGIC_BYTES);
	out[8] = KR_BAG_VERSION;
	out[10] = (uint8_t)b->n;
	memcpy(out + 16, b->vault_id, KR_VAULT_ID_BYTES);
	for (unsigned i = 0; i < b->n; i++) {
		uint8_t *p = out + KR_BAG_HEADER_BYTES + (size_t)i * KR_BAG_ENTRY_BYTES;
		const struct bag_entry *e = &b->e[i];

		memset(p, 0, KR_BAG_ENTRY_BYTES);
		p[0] = e->level;
		p[1] = e->state;
		put32(p + 4, e->gen);
		memcpy(p + 8, e->nonce, sizeof e->nonce);
		memcpy(p + 32, e->box, sizeof e->box);
	}
	return KR_BAG_HEADER_BYTES + (size_t)b->n * KR_BAG_ENTRY_BYTES;
}

static int bag_read(const char *store, const struct kr_config *cfg, struct bag *b)
{
	uint8_t buf[KR_BAG_MAX_BYTES];
	char path[4096];
	ssize_t n;
	int rc;

	memset(b, 0, sizeof *b);
	memcpy(b->vault_id, cfg->vault_id, KR_VAULT_ID_BYTES);
	rc = kr_path_join(path, sizeof path, store, KR_BAG_NAME);
	if (rc)
		return rc;
	n = kr_file_read(path, buf, sizeof buf);
	if (n == -ENOENT)
		return 0;
	if (n < 0)
		return (int)n;
	return bag_parse(buf, (size_t)n, cfg, b);
}

static int bag_write(const char *store, const struct bag *b)
{
	uint8_t buf[KR_BAG_MAX_BYTES];
	char path[4096];
	int rc = kr_path_join(path, sizeof path, store, KR_BAG_NAME);

	if (rc)
		return rc;
	return kr_file_write_atomic(path, buf, bag_encode(b, buf));
}

/* Open e with the root key of its level into out (in secure memory). */
static int bag_open(const struct bag *b, const struct bag_entry *e,
		    const unsigned char root[KR_KEY_BYTES], unsigned char out[KR_KEY_BYTES])
{
	unsigned char *k = sodium_malloc(KR_KEY_BYTES);
	uint8_t ad[48];
	int rc;

	if (!k)
		return -ENOMEM;
	bag_key(root, e->gen, k);
	bag_ad(b->vault_id, e, ad);
	rc = crypto_aead_xchacha20poly1305_ietf_decrypt(out, NULL, NULL, e->box, sizeof e->box, ad,
							sizeof ad, e->nonce, k) == 0
		 ? 0
		 : -EUCLEAN;
	if (rc)
		sodium_memzero(out, KR_KEY_BYTES);
	sodium_free(k);
	return rc;
}

static int bag_seal(const struct bag *b, struct bag_entry *e,
		    const unsigned char root[KR_KEY_BYTES], const unsigned char key[KR_KEY_BYTES])
{
	unsigned char *k = sodium_malloc(KR_KEY_BYTES);
	uint8_t ad[48];

	if (!k)
		return -ENOMEM;
	randombytes_buf(e->nonce, sizeof e->nonce);
	bag_key(root, e->gen, k);
	bag_ad(b->vault_id, e, ad);
	crypto_aead_xchacha20poly1305_ietf_encrypt(e->box, NULL, key, KR_KEY_BYTES, ad, sizeof ad,
						   NULL, e->nonce, k);
	sodium_free(k);
	return 0;
}

int kr_bag_apply(const char *store, struct kr_keyring *kr, const struct kr_config *cfg,
		 unsigned ceiling)
{
	struct bag b;
	int rc = bag_read(store, cfg, &b);

	if (rc)
		return rc;
	for (unsigned i = 0; i < b.n; i++) {
		const struct bag_entry *e = &b.e[i];

		if (e->level > ceiling)
			continue; /* a level this slot does not hold */
		if (e->state == KR_BAG_CURRENT) {
			rc = bag_open(&b, e, kr->sec->level_root[e->level],
				      kr->sec->level_key[e->level]);
			kr->gen[e->level] = e->gen;
		} else {
			rc = bag_open(&b, e, kr->sec->level_root[e->level],
				      kr->sec->level_next[e->level]);
			kr->next_gen[e->level] = e->gen;
		}
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- rotation (keyring.h) ---- */

void kr_keyring_forget_roots(struct kr_keyring *kr)
{
	sodium_memzero(kr->sec->level_root, sizeof kr->sec->level_root);
	sodium_memzero(kr->sec->level_next, sizeof kr->sec->level_next);
	memset(kr->next_gen, 0, sizeof kr->next_gen);
	kr->roots_gone = true;
}

uint32_t kr_level_generation(const struct kr_keyring *kr, unsigned level)
{
	return level < KR_MAX_LEVELS ? kr->gen[level] : 0;
}

uint32_t kr_rotate_next_generation(const struct kr_keyring *kr, unsigned level)
{
	return level < KR_MAX_LEVELS ? kr->next_gen[level] : 0;
}

int kr_rotate_begin(const char *store, struct kr_keyring *kr, unsigned level)
{
	struct bag b;
	struct bag_entry *e;
	int rc;

	if (!kr_level_held(kr, level) || kr->roots_gone)
		return -ENOKEY;
	if (kr->next_gen[level])
		return 0; /* resuming: the next key is already in the bag */
	rc = bag_read(store, &kr->cfg, &b);
	if (rc)
		return rc;
	for (unsigned i = 0; i < b.n; i++)
		if (b.e[i].level == level && b.e[i].state == KR_BAG_NEXT)
			return -EUCLEAN; /* the bag changed since unlocking */
	if (b.n >= KR_BAG_MAX_ENTRIES)
		return -EUCLEAN;
	e = &b.e[b.n++];
	memset(e, 0, sizeof *e);
	e->level = (uint8_t)level;
	e->state = KR_BAG_NEXT;
	e->gen = kr->gen[level] + 1;
	crypto_kdf_keygen(kr->sec->level_next[level]);
	rc = bag_seal(&b, e, kr->sec->level_root[level], kr->sec->level_next[level]);
	if (rc == 0)
		rc = bag_write(store, &b);
	if (rc) {
		sodium_memzero(kr->sec->level_next[level], KR_KEY_BYTES);
		return rc;
	}
	kr->next_gen[level] = e->gen;
	return 0;
}

int kr_keyring_next(const struct kr_keyring *kr, unsigned level, struct kr_keyring **out)
{
	struct kr_keyring *n;

	*out = NULL;
	if (level >= KR_MAX_LEVELS || !kr->next_gen[level])
		return -ENOENT;
	n = calloc(1, sizeof *n);
	if (!n)
		return -ENOMEM;
	*n = *kr;
	n->sec = sodium_malloc(sizeof *n->sec);
	if (!n->sec) {
		free(n);
		return -ENOMEM;
	}
	sodium_mlock(n->sec, sizeof *n->sec);
	memcpy(n->sec, kr->sec, sizeof *n->sec);
	memcpy(n->sec->level_key[level], kr->sec->level_next[level], KR_KEY_BYTES);
	n->gen[level] = kr->next_gen[level];
	n->next_gen[level] = 0;
	sodium_memzero(n->sec->level_next[level], KR_KEY_BYTES);
	kr_subkeys_derive(n->sec, n->ceiling);
	*out = n;
	return 0;
}

int kr_rotate_finish(const char *store, struct kr_keyring *kr, unsigned level)
{
	struct bag b;
	unsigned keep = 0;
	int rc;

	if (!kr_level_held(kr, level))
		return -ENOKEY;
	if (!kr->next_gen[level])
		return -ENOENT;
	rc = bag_read(store, &kr->cfg, &b);
	if (rc)
		return rc;
	/* The old CURRENT entry goes; NEXT becomes CURRENT. */
	for (unsigned i = 0; i < b.n; i++) {
		struct bag_entry *e = &b.e[i];

		if (e->level == level && e->state == KR_BAG_CURRENT)
			continue;
		if (e->level == level && e->state == KR_BAG_NEXT) {
			e->state = KR_BAG_CURRENT;
			rc =
			    bag_seal(&b, e, kr->sec->level_root[level], kr->sec->level_next[level]);
			if (rc)
				return rc;
		}
		b.e[keep++] = *e;
	}
	b.n = keep;
	rc = bag_write(store, &b);
	if (rc)
		return rc;
	memcpy(kr->sec->level_key[level], kr->sec->level_next[level], KR_KEY_BYTES);
	sodium_memzero(kr->sec->level_next[level], KR_KEY_BYTES);
	kr->gen[level] = kr->next_gen[level];
	kr->next_gen[level] = 0;
	kr_subkeys_derive(kr->sec, kr->ceiling);
	return 0;
}
