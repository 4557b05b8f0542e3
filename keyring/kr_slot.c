/* kr_slot.c - keyslot files, keyslots/slot-N (docs/format.md section 3):
 * wrapping keys, the sealed box of keys, parsing, add/remove/list.
 *
 * A slot holds the vault key, the level keys 0..ceiling and, for admin
 * slots, the audit secret key, sealed with XChaCha20-Poly1305 under a key
 * derived from its secret; the 88-byte header (which carries the vault ID)
 * is the associated data, so no header field can be changed unnoticed.
 * A passphrase slot may also need a key file: its wrapping key then mixes
 * the Argon2id output with a keyed BLAKE2b of the key file's bytes, so
 * neither the passphrase nor the file alone opens it.
 *
 * Invariants:
 *  - the plaintext of a box, every wrapping key and every key file digest
 *    live only in sodium_malloc'd memory and are wiped on every return
 *    path; the key file bytes themselves belong to the caller;
 *  - kr_slot_parse bounds every field (the Argon2id cost too, so an edited
 *    slot cannot make unlocking hang or exhaust memory) before anyone
 *    derives a key from it;
 *  - at least one slot opening every level remains: removal refuses to
 *    take the last one (-EPERM);
 *  - a failed add or remove leaves the keyslot directory as it was.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kr_internal.h"

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

size_t kr_slot_plain_len(unsigned ceiling, bool admin)
{
	return KR_KEY_BYTES * (1 + (size_t)ceiling + 1) + (admin ? crypto_box_SECRETKEYBYTES : 0);
}

static bool kdf_valid(const struct kr_kdf_params *k)
{
	return k->opslimit >= crypto_pwhash_OPSLIMIT_MIN && k->opslimit <= KR_SLOT_OPSLIMIT_MAX &&
	       k->memlimit >= crypto_pwhash_MEMLIMIT_MIN && k->memlimit <= KR_SLOT_MEMLIMIT_MAX;
}

static void header_encode(unsigned char *h, const struct kr_slot_info *info,
			  const uint8_t vault_id[KR_VAULT_ID_BYTES],
			  const uint8_t salt[KR_SLOT_SALT_BYTES],
			  const uint8_t nonce[KR_SLOT_NONCE_BYTES])
{
	memset(h, 0, KR_SLOT_HEADER_BYTES);
	memcpy(h, KR_SLOT_MAGIC, KR_SLOT_MAGIC_BYTES);
	h[8] = KR_SLOT_VERSION & 0xff;
	h[9] = KR_SLOT_VERSION >> 8;
	h[10] = (unsigned char)info->kind;
	h[11] = (unsigned char)info->ceiling;
	h[12] = (unsigned char)((info->admin ? KR_SLOT_FLAG_ADMIN : 0) |
				(info->keyfile ? KR_SLOT_FLAG_KEYFILE : 0));
	memcpy(h + 16, vault_id, KR_VAULT_ID_BYTES);
	if (info->kind == KR_SECRET_PASSPHRASE) {
		put64(h + 32, info->kdf.opslimit);
		put64(h + 40, info->kdf.memlimit);
	}
	memcpy(h + 48, salt, KR_SLOT_SALT_BYTES);
	memcpy(h + 64, nonce, KR_SLOT_NONCE_BYTES);
}

ssize_t kr_slot_encode(const struct kr_slot_info *info, const uint8_t vault_id[KR_VAULT_ID_BYTES],
		       const uint8_t salt[KR_SLOT_SALT_BYTES],
		       const uint8_t nonce[KR_SLOT_NONCE_BYTES],
		       const unsigned char wrap_key[KR_KEY_BYTES], const unsigned char *plain,
		       size_t plain_len, unsigned char *out, size_t cap)
{
	unsigned long long clen = 0;

	if (info->ceiling >= KR_MAX_LEVELS ||
	    plain_len != kr_slot_plain_len(info->ceiling, info->admin))
		return -EINVAL;
	if (info->kind != KR_SECRET_PASSPHRASE && info->kind != KR_SECRET_RECOVERY)
		return -EINVAL;
	if (info->kind == KR_SECRET_PASSPHRASE && !kdf_valid(&info->kdf))
		return -EINVAL;
	if (info->keyfile && info->kind != KR_SECRET_PASSPHRASE)
		return -EINVAL;
	if (cap < KR_SLOT_HEADER_BYTES + plain_len + KR_SLOT_TAG_BYTES)
		return -ENOSPC;
	header_encode(out, info, vault_id, salt, nonce);
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + KR_SLOT_HEADER_BYTES, &clen, plain,
						   plain_len, out, KR_SLOT_HEADER_BYTES, NULL,
						   nonce, wrap_key);
	return (ssize_t)(KR_SLOT_HEADER_BYTES + clen);
}

int kr_slot_parse(const unsigned char *buf, size_t len, struct kr_slot *slot)
{
	struct kr_slot s;
	unsigned version;

	memset(&s, 0, sizeof s);
	if (len < 10 || memcmp(buf, KR_SLOT_MAGIC, KR_SLOT_MAGIC_BYTES) != 0)
		return -EUCLEAN;
	version = buf[8] | (unsigned)buf[9] << 8;
	if (version != KR_SLOT_VERSION)
		return -EOPNOTSUPP;
	if (len < KR_SLOT_HEADER_BYTES || len > KR_SLOT_MAX_BYTES)
		return -EUCLEAN;
	s.info.kind = (enum kr_secret_kind)buf[10];
	s.info.ceiling = buf[11];
	s.info.admin = (buf[12] & KR_SLOT_FLAG_ADMIN) != 0;
	s.info.keyfile = (buf[12] & KR_SLOT_FLAG_KEYFILE) != 0;
	if ((buf[12] & ~(KR_SLOT_FLAG_ADMIN | KR_SLOT_FLAG_KEYFILE)) != 0 || buf[13] || buf[14] ||
	    buf[15])
		return -EUCLEAN;
	if (s.info.keyfile && s.info.kind != KR_SECRET_PASSPHRASE)
		return -EUCLEAN;
	if (s.info.ceiling >= KR_MAX_LEVELS)
		return -EUCLEAN;
	memcpy(s.vault_id, buf + 16, KR_VAULT_ID_BYTES);
	s.info.kdf.opslimit = get64(buf + 32);
	s.info.kdf.memlimit = get64(buf + 40);
	if (s.info.kind == KR_SECRET_PASSPHRASE) {
		if (!kdf_valid(&s.info.kdf))
			return -EUCLEAN;
	} else if (s.info.kind == KR_SECRET_RECOVERY) {
		if (s.info.kdf.opslimit != 0 || s.info.kdf.memlimit != 0)
			return -EUCLEAN;
	} else {
		return -EUCLEAN;
	}
	memcpy(s.salt, buf + 48, KR_SLOT_SALT_BYTES);
	memcpy(s.nonce, buf + 64, KR_SLOT_NONCE_BYTES);
	s.box_len = kr_slot_plain_len(s.info.ceiling, s.info.admin) + KR_SLOT_TAG_BYTES;
	if (len != KR_SLOT_HEADER_BYTES + s.box_len)
		return -EUCLEAN;
	*slot = s;
	return 0;
}

int kr_keyslot_parse(const unsigned char *buf, size_t len, struct kr_slot_info *info)
{
	struct kr_slot s;
	int rc = kr_slot_parse(buf, len, &s);
	if (rc == 0)
		*info = s.info;
	return rc;
}

int kr_slot_open(const unsigned char *buf, const struct kr_slot *slot,
		 const unsigned char wrap_key[KR_KEY_BYTES], unsigned char *plain)
{
	unsigned long long plen = 0;
	size_t want = slot->box_len - KR_SLOT_TAG_BYTES;

	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
		plain, &plen, NULL, buf + KR_SLOT_HEADER_BYTES, slot->box_len, buf,
		KR_SLOT_HEADER_BYTES, slot->nonce, wrap_key) != 0 ||
	    plen != want) {
		sodium_memzero(plain, want);
		return -EKEYREJECTED;
	}
	return 0;
}

/* A key-file slot's wrapping key (docs/format.md 3.1):
 *   digest   = BLAKE2b-256(key = salt, key file bytes)
 *   wrap_key = BLAKE2b-256(key = Argon2id output, "SRkeyfile\x01" || digest)
 * wrap_key holds the Argon2id output on entry and the result on return. */
static int keyfile_mix(const struct kr_slot *slot, const unsigned char *keyfile,
		       size_t keyfile_len, unsigned char wrap_key[KR_KEY_BYTES])
{
	unsigned char *m = sodium_malloc(KR_KEYFILE_TAG_BYTES + KR_KEY_BYTES);
	crypto_generichash_state *st = sodium_malloc(sizeof *st);
	int rc = 0;

	if (!m || !st) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(m, KR_KEYFILE_TAG, KR_KEYFILE_TAG_BYTES);
	crypto_generichash(m + KR_KEYFILE_TAG_BYTES, KR_KEY_BYTES, keyfile, keyfile_len,
			   slot->salt, KR_SLOT_SALT_BYTES);
	crypto_generichash_init(st, wrap_key, KR_KEY_BYTES, KR_KEY_BYTES);
	crypto_generichash_update(st, m, KR_KEYFILE_TAG_BYTES + KR_KEY_BYTES);
	crypto_generichash_final(st, wrap_key, KR_KEY_BYTES);
out:
	if (m) {
		sodium_memzero(m, KR_KEYFILE_TAG_BYTES + KR_KEY_BYTES);
		sodium_free(m);
	}
	if (st) {
		sodium_memzero(st, sizeof *st);
		sodium_free(st);
	}
	if (rc)
		sodium_memzero(wrap_key, KR_KEY_BYTES);
	return rc;
}

int kr_slot_wrap_key(const struct kr_slot *slot, const unsigned char *secret, size_t secret_len,
		     const unsigned char *keyfile, size_t keyfile_len,
		     unsigned char wrap_key[KR_KEY_BYTES])
{
	if (slot->info.keyfile && (!keyfile || keyfile_len == 0))
		return -ENOKEY;
	if (slot->info.kind == KR_SECRET_RECOVERY) {
		if (secret_len != KR_RECOVERY_RAW_BYTES)
			return -EINVAL;
		crypto_generichash(wrap_key, KR_KEY_BYTES, slot->salt, KR_SLOT_SALT_BYTES, secret,
				   secret_len);
		return 0;
	}
	if (crypto_pwhash(wrap_key, KR_KEY_BYTES, (const char *)secret, secret_len, slot->salt,
			  slot->info.kdf.opslimit, (size_t)slot->info.kdf.memlimit,
			  crypto_pwhash_ALG_ARGON2ID13) != 0) {
		sodium_memzero(wrap_key, KR_KEY_BYTES);
		return -ENOMEM;
	}
	if (slot->info.keyfile)
		return keyfile_mix(slot, keyfile, keyfile_len, wrap_key);
	return 0;
}

static int slot_path(char *out, size_t cap, const char *store, int index)
{
	int n = snprintf(out, cap, "%s/" KR_SLOT_DIR "/slot-%d", store, index);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int kr_slot_store(const char *store, int index, const struct kr_slot_info *info,
		  const uint8_t vault_id[KR_VAULT_ID_BYTES], const struct kr_secure *sec,
		  const unsigned char *secret, size_t secret_len, const unsigned char *keyfile,
		  size_t keyfile_len)
{
	struct kr_slot s;
	unsigned char file[KR_SLOT_MAX_BYTES];
	unsigned char *wrap = NULL, *plain = NULL;
	size_t plain_len = kr_slot_plain_len(info->ceiling, info->admin);
	char path[4096];
	ssize_t n;
	int rc;

	rc = slot_path(path, sizeof path, store, index);
	if (rc)
		return rc;
	memset(&s, 0, sizeof s);
	s.info = *info;
	randombytes_buf(s.salt, sizeof s.salt);
	randombytes_buf(s.nonce, sizeof s.nonce);
	wrap = sodium_malloc(KR_KEY_BYTES);
	plain = sodium_malloc(KR_SLOT_PLAIN_MAX);
	if (!wrap || !plain) {
		rc = -ENOMEM;
		goto out;
	}
	rc = kr_slot_wrap_key(&s, secret, secret_len, keyfile, keyfile_len, wrap);
	if (rc)
		goto out;
	memcpy(plain, sec->vault_key, KR_KEY_BYTES);
	/* Slots hold root keys: a rotation (section 4.4) never rewrites them. */
	memcpy(plain + KR_KEY_BYTES, sec->level_root, KR_KEY_BYTES * ((size_t)info->ceiling + 1));
	if (info->admin)
		memcpy(plain + KR_KEY_BYTES * ((size_t)info->ceiling + 2), sec->audit_sk,
		       crypto_box_SECRETKEYBYTES);
	n = kr_slot_encode(info, vault_id, s.salt, s.nonce, wrap, plain, plain_len, file,
			   sizeof file);
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	rc = kr_file_write_new(path, file, (size_t)n);
out:
	sodium_free(wrap);
	sodium_free(plain);
	return rc;
}

bool kr_keyfile_len_valid(const struct kr_secret *s)
{
	return !s->keyfile ||
	       (s->keyfile_len >= KR_KEYFILE_MIN_BYTES && s->keyfile_len <= KR_KEYFILE_MAX_BYTES);
}

bool kr_vault_needs_keyfile(const char *store)
{
	struct kr_slot_info list[KR_MAX_SLOTS];
	int n = kr_keyslot_list(store, list, KR_MAX_SLOTS);

	for (int i = 0; i < n; i++)
		if (list[i].kind == KR_SECRET_PASSPHRASE && list[i].keyfile)
			return true;
	return false;
}

int kr_keyslot_list(const char *store, struct kr_slot_info *out, int cap)
{
	unsigned char buf[KR_SLOT_MAX_BYTES];
	char path[4096];
	int count = 0, rc;

	rc = kr_path_join(path, sizeof path, store, KR_SLOT_DIR);
	if (rc)
		return rc;
	if (access(path, F_OK) != 0)
		return -errno;
	for (int i = 0; i < KR_MAX_SLOTS && count < cap; i++) {
		struct kr_slot s;
		ssize_t n;

		rc = slot_path(path, sizeof path, store, i);
		if (rc)
			return rc;
		n = kr_file_read(path, buf, sizeof buf);
		if (n == -ENOENT)
			continue;
		memset(&out[count], 0, sizeof out[count]);
		out[count].index = i;
		if (n >= 0 && kr_slot_parse(buf, (size_t)n, &s) == 0) {
			out[count] = s.info;
			out[count].index = i;
		} else if (n < 0 && n != -EUCLEAN) {
			return (int)n;
		}
		count++;
	}
	return count;
}

/* The keyring must belong to the vault in store: a slot written with
 * another vault's keys would never open. */
static int keyring_matches_store(const char *store, const struct kr_keyring *kr)
{
	struct kr_config cfg;
	int rc = kr_config_load(store, &cfg);
	if (rc)
		return rc;
	return sodium_memcmp(cfg.vault_id, kr->cfg.vault_id, KR_VAULT_ID_BYTES) == 0 ? 0 : -EINVAL;
}

int kr_keyslot_add(const char *store, const struct kr_keyring *kr, const struct kr_secret *pass,
		   unsigned ceiling, const struct kr_kdf_params *kdf)
{
	struct kr_slot_info info;
	int rc;

	if (ceiling >= kr->cfg.nlevels)
		return -EINVAL;
	if (ceiling > kr->ceiling || kr->roots_gone)
		return -ENOKEY; /* roots_gone: a driver's keyring (kr_keyring_forget_roots) */
	if (!pass || pass->kind != KR_SECRET_PASSPHRASE || pass->len == 0 || !kdf ||
	    !kdf_valid(kdf) || !kr_keyfile_len_valid(pass))
		return -EINVAL;
	rc = keyring_matches_store(store, kr);
	if (rc)
		return rc;
	memset(&info, 0, sizeof info);
	info.kind = KR_SECRET_PASSPHRASE;
	info.ceiling = ceiling;
	info.admin = kr->admin && ceiling == kr->cfg.nlevels - 1;
	info.keyfile = pass->keyfile != NULL;
	info.kdf = *kdf;
	/* The first free number; a concurrent add that takes it first makes
	 * this one move on, never overwrite. */
	for (int i = 0; i < KR_MAX_SLOTS; i++) {
		char path[4096];
		if (slot_path(path, sizeof path, store, i) != 0)
			return -ENAMETOOLONG;
		if (access(path, F_OK) == 0 || errno != ENOENT)
			continue;
		info.index = i;
		rc = kr_slot_store(store, i, &info, kr->cfg.vault_id, kr->sec,
				   (const unsigned char *)pass->bytes, pass->len, pass->keyfile,
				   pass->keyfile_len);
		if (rc != -EEXIST)
			return rc ? rc : i;
	}
	return -ENOSPC;
}

int kr_keyslot_remove(const char *store, const struct kr_keyring *kr, int index)
{
	struct kr_slot_info list[KR_MAX_SLOTS] = {0};
	const struct kr_slot_info *target = NULL;
	char path[4096], dir[4096];
	int n, full_left = 0, rc;

	rc = keyring_matches_store(store, kr);
	if (rc)
		return rc;
	n = kr_keyslot_list(store, list, KR_MAX_SLOTS);
	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		if (list[i].index == index) {
			target = &list[i];
			continue;
		}
		if (list[i].kind != 0 && list[i].ceiling == kr->cfg.nlevels - 1)
			full_left++;
	}
	if (!target)
		return -ENOENT;
	/* Only an admin removes another secret's slot. */
	if (!kr->admin && index != kr->slot)
		return -EPERM;
	if (full_left == 0 && (target->kind == 0 || target->ceiling == kr->cfg.nlevels - 1))
		return -EPERM;
	rc = slot_path(path, sizeof path, store, index);
	if (rc)
		return rc;
	if (unlink(path) != 0)
		return -errno;
	rc = kr_path_join(dir, sizeof dir, store, KR_SLOT_DIR);
	if (rc)
		return rc;
	{
		int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		rc = fsync(fd) != 0 ? -errno : 0;
		close(fd);
	}
	return rc;
}
