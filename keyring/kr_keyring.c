/* kr_keyring.c - create and unlock a vault; the keyring and its subkeys.
 *
 * A vault has one random vault key (every slot holds it; it authenticates
 * the config and keys vault-wide subkeys), one random key per level, and an
 * X25519 audit key pair (public half in the config, secret half in admin
 * slots). Unlocking tries each slot the secret's kind can open (a slot that
 * needs a key file only when key file bytes came with the passphrase, so a
 * passphrase alone costs no Argon2id run on such a slot); the first
 * that opens gives the keys, then the config's MAC is checked with a key
 * derived from the vault key, so an edited config is refused once unlocked.
 *
 * Invariants:
 *  - all key bytes live in one struct kr_secure from sodium_malloc, locked
 *    in memory, wiped by kr_keyring_free (sodium_memzero, sodium_free);
 *  - a keyring exists only for an authenticated config: kr_vault_unlock
 *    never returns a keyring whose config MAC failed;
 *  - keys of levels above the ceiling are never present (zero), and their
 *    subkeys are never derived;
 *  - kr_vault_create changes nothing unless the store was missing or empty,
 *    and removes what it created if it fails part-way.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kr_internal.h"

void kr_kdf_params_default(struct kr_kdf_params *p)
{
	const char *mode = getenv("SR_KDF");
	if (mode && strcmp(mode, "test") == 0) {
		p->opslimit = crypto_pwhash_OPSLIMIT_MIN;
		p->memlimit = crypto_pwhash_MEMLIMIT_MIN;
	} else {
		/* Argon2id with 256 MiB and 3 passes: about 0.5-1 s today. */
		p->opslimit = crypto_pwhash_OPSLIMIT_MODERATE;
		p->memlimit = crypto_pwhash_MEMLIMIT_MODERATE;
	}
}

void kr_subkeys_derive(struct kr_secure *sec, unsigned ceiling)
{
	for (unsigned w = 0; w < KR_VSUB_COUNT; w++)
		crypto_kdf_derive_from_key(sec->vault_sub[w], KR_KEY_BYTES, w + 1, KR_CTX_VAULT,
					   sec->vault_key);
	for (unsigned l = 0; l <= ceiling && l < KR_MAX_LEVELS; l++)
		for (unsigned w = 0; w < KR_SUB_COUNT; w++)
			crypto_kdf_derive_from_key(sec->level_sub[l][w], KR_KEY_BYTES, w + 1,
						   KR_CTX_LEVEL, sec->level_key[l]);
}

static struct kr_keyring *keyring_new(void)
{
	struct kr_keyring *kr;

	if (sodium_init() < 0)
		return NULL;
	kr = calloc(1, sizeof *kr);
	if (!kr)
		return NULL;
	kr->sec = sodium_malloc(sizeof *kr->sec);
	if (!kr->sec) {
		free(kr);
		return NULL;
	}
	/* sodium_malloc locks the pages already; say so again in case a
	 * future libsodium changes that, and keep them out of core dumps. */
	sodium_mlock(kr->sec, sizeof *kr->sec);
	sodium_memzero(kr->sec, sizeof *kr->sec);
	kr->slot = -1;
	return kr;
}

void kr_keyring_free(struct kr_keyring *kr)
{
	if (!kr)
		return;
	if (kr->sec) {
		sodium_memzero(kr->sec, sizeof *kr->sec);
		sodium_munlock(kr->sec, sizeof *kr->sec);
		sodium_free(kr->sec);
	}
	sodium_memzero(kr, sizeof *kr);
	free(kr);
}

/* 0 if store is missing (created) or an empty directory; *created says
 * which. */
static int store_prepare(const char *store, bool *created)
{
	struct stat st;
	DIR *d;
	struct dirent *e;
	int rc = 0;

	*created = false;
	if (lstat(store, &st) != 0) {
		if (errno != ENOENT)
			return -errno;
		if (mkdir(store, 0700) != 0)
			return -errno;
		*created = true;
		return 0;
	}
	if (!S_ISDIR(st.st_mode))
		return -EEXIST;
	d = opendir(store);
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
			rc = -ENOTEMPTY;
			break;
		}
	}
	closedir(d);
	return rc;
}

static const char *const store_dirs[] = {KR_SLOT_DIR, "tree", "audit"};

/* Best-effort removal of what kr_vault_create made, in reverse. */
static void store_undo(const char *store, bool created)
{
	char p[4096];

	for (int i = 0; i < KR_MAX_SLOTS; i++) {
		int n = snprintf(p, sizeof p, "%s/" KR_SLOT_DIR "/slot-%d", store, i);
		if (n > 0 && (size_t)n < sizeof p)
			unlink(p);
	}
	if (kr_path_join(p, sizeof p, store, KR_CONFIG_NAME) == 0)
		unlink(p);
	if (kr_path_join(p, sizeof p, store, KR_WATCH_NAME) == 0)
		unlink(p);
	for (size_t i = 0; i < sizeof store_dirs / sizeof store_dirs[0]; i++)
		if (kr_path_join(p, sizeof p, store, store_dirs[i]) == 0)
			rmdir(p);
	if (created)
		rmdir(store);
}

int kr_vault_create(const char *store, struct kr_config *cfg, const struct kr_secret *pass,
		    const struct kr_kdf_params *kdf, char recovery_out[KR_RECOVERY_TEXT_BYTES],
		    struct kr_keyring **out)
{
	struct kr_keyring *kr = NULL;
	unsigned char *recovery = NULL;
	unsigned char conf[KR_CONF_MAX_BYTES];
	struct kr_slot_info info;
	char path[4096];
	bool created = false, touched = false;
	ssize_t n;
	int rc;

	*out = NULL;
	if (!pass || pass->kind != KR_SECRET_PASSPHRASE || pass->len == 0 || !kdf ||
	    !kr_keyfile_len_valid(pass))
		return -EINVAL;
	kr = keyring_new();
	recovery = sodium_malloc(KR_RECOVERY_RAW_BYTES);
	if (!kr || !recovery) {
		rc = -ENOMEM;
		goto out;
	}
	randombytes_buf(cfg->vault_id, sizeof cfg->vault_id);
	cfg->version = KR_CONF_VERSION;
	crypto_box_keypair(cfg->audit_pk, kr->sec->audit_sk);
	crypto_kdf_keygen(kr->sec->vault_key);
	for (unsigned l = 0; l < cfg->nlevels && l < KR_MAX_LEVELS; l++) {
		crypto_kdf_keygen(kr->sec->level_root[l]);
		memcpy(kr->sec->level_key[l], kr->sec->level_root[l], KR_KEY_BYTES);
	}
	randombytes_buf(recovery, KR_RECOVERY_RAW_BYTES);
	kr->cfg = *cfg;
	kr->ceiling = cfg->nlevels - 1;
	kr->admin = true;
	kr->slot = 0;
	kr_subkeys_derive(kr->sec, kr->ceiling);

	/* Encode first: a bad config is refused before the store is touched. */
	n = kr_config_encode(cfg, kr->sec->vault_sub[KR_VSUB_CONFIG - 1], conf, sizeof conf);
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	rc = store_prepare(store, &created);
	if (rc)
		goto out;
	touched = true;
	for (size_t i = 0; i < sizeof store_dirs / sizeof store_dirs[0]; i++) {
		rc = kr_path_join(path, sizeof path, store, store_dirs[i]);
		if (rc)
			goto out;
		if (mkdir(path, 0700) != 0) {
			rc = -errno;
			goto out;
		}
	}
	memset(&info, 0, sizeof info);
	info.kind = KR_SECRET_PASSPHRASE;
	info.ceiling = kr->ceiling;
	info.admin = true;
	info.keyfile = pass->keyfile != NULL;
	info.kdf = *kdf;
	rc = kr_slot_store(store, 0, &info, cfg->vault_id, kr->sec,
			   (const unsigned char *)pass->bytes, pass->len, pass->keyfile,
			   pass->keyfile_len);
	if (rc)
		goto out;
	memset(&info.kdf, 0, sizeof info.kdf);
	info.index = 1;
	info.kind = KR_SECRET_RECOVERY;
	info.keyfile = false;
	rc = kr_slot_store(store, 1, &info, cfg->vault_id, kr->sec, recovery,
			   KR_RECOVERY_RAW_BYTES, NULL, 0);
	if (rc)
		goto out;
	/* An empty freeze and lock state: from now on its absence means it
	 * was deleted (docs/format.md section 4.5). */
	{
		struct kr_watch_state ws;
		memset(&ws, 0, sizeof ws);
		rc = kr_watch_save(store, kr, &ws);
		if (rc)
			goto out;
	}
	/* The config goes last: its presence means the vault is complete. */
	rc = kr_path_join(path, sizeof path, store, KR_CONFIG_NAME);
	if (rc)
		goto out;
	rc = kr_file_write_atomic(path, conf, (size_t)n);
	if (rc)
		goto out;
	kr_recovery_format(recovery, recovery_out);
	*out = kr;
	kr = NULL;
out:
	if (rc && touched)
		store_undo(store, created);
	sodium_free(recovery);
	kr_keyring_free(kr);
	return rc;
}

int kr_vault_unlock(const char *store, const struct kr_secret *secret, struct kr_keyring **out)
{
	struct kr_keyring *kr = NULL;
	unsigned char conf[KR_CONF_MAX_BYTES];
	unsigned char slotbuf[KR_SLOT_MAX_BYTES];
	unsigned char *key = NULL, *wrap = NULL, *plain = NULL;
	const unsigned char *secret_bytes;
	size_t secret_len, conf_len;
	struct kr_config cfg;
	struct kr_slot s;
	char path[4096];
	bool tried = false;
	int found = -1, struct_err = 0, rc;
	ssize_t n;

	*out = NULL;
	if (!secret || secret->len == 0 ||
	    (secret->kind != KR_SECRET_PASSPHRASE && secret->kind != KR_SECRET_RECOVERY) ||
	    (secret->keyfile && secret->kind != KR_SECRET_PASSPHRASE))
		return -EINVAL;
	rc = kr_path_join(path, sizeof path, store, KR_CONFIG_NAME);
	if (rc)
		return rc;
	n = kr_file_read(path, conf, sizeof conf);
	if (n < 0)
		return (int)n;
	conf_len = (size_t)n;
	rc = kr_config_parse(conf, conf_len, &cfg);
	if (rc)
		return rc;

	kr = keyring_new();
	key = sodium_malloc(KR_RECOVERY_RAW_BYTES);
	wrap = sodium_malloc(KR_KEY_BYTES);
	plain = sodium_malloc(KR_SLOT_PLAIN_MAX);
	if (!kr || !key || !wrap || !plain) {
		rc = -ENOMEM;
		goto out;
	}
	if (secret->kind == KR_SECRET_RECOVERY) {
		rc = kr_recovery_parse(secret->bytes, key);
		if (rc)
			goto out;
		secret_bytes = key;
		secret_len = KR_RECOVERY_RAW_BYTES;
	} else {
		secret_bytes = (const unsigned char *)secret->bytes;
		secret_len = secret->len;
	}

	for (int i = 0; i < KR_MAX_SLOTS && found < 0; i++) {
		int m = snprintf(path, sizeof path, "%s/" KR_SLOT_DIR "/slot-%d", store, i);
		if (m < 0 || (size_t)m >= sizeof path) {
			rc = -ENAMETOOLONG;
			goto out;
		}
		n = kr_file_read(path, slotbuf, sizeof slotbuf);
		if (n == -ENOENT)
			continue;
		if (n < 0) {
			struct_err = struct_err ? struct_err : (int)n;
			continue;
		}
		rc = kr_slot_parse(slotbuf, (size_t)n, &s);
		if (rc) {
			struct_err = struct_err ? struct_err : rc;
			continue;
		}
		if (s.info.kind != secret->kind)
			continue;
		if (s.info.keyfile && !secret->keyfile)
			continue; /* kr_vault_needs_keyfile gives the hint */
		if (sodium_memcmp(s.vault_id, cfg.vault_id, KR_VAULT_ID_BYTES) != 0) {
			/* A slot of another vault, or a config of another vault. */
			struct_err = struct_err ? struct_err : -EUCLEAN;
			continue;
		}
		rc = kr_slot_wrap_key(&s, secret_bytes, secret_len, secret->keyfile,
				      secret->keyfile_len, wrap);
		if (rc)
			goto out;
		tried = true;
		if (kr_slot_open(slotbuf, &s, wrap, plain) == 0)
			found = i;
	}
	if (found < 0) {
		rc = tried || !struct_err ? -EKEYREJECTED : struct_err;
		goto out;
	}
	if (s.info.ceiling >= cfg.nlevels) {
		rc = -EUCLEAN;
		goto out;
	}
	memcpy(kr->sec->vault_key, plain, KR_KEY_BYTES);
	memcpy(kr->sec->level_root, plain + KR_KEY_BYTES,
	       KR_KEY_BYTES * ((size_t)s.info.ceiling + 1));
	memcpy(kr->sec->level_key, kr->sec->level_root, sizeof kr->sec->level_key);
	rc = kr_bag_apply(store, kr, &cfg, s.info.ceiling);
	if (rc)
		goto out;
	kr_subkeys_derive(kr->sec, s.info.ceiling);
	rc = kr_config_mac_verify(conf, conf_len, kr->sec->vault_sub[KR_VSUB_CONFIG - 1]);
	if (rc)
		goto out;
	if (s.info.admin) {
		unsigned char pk[crypto_box_PUBLICKEYBYTES];
		memcpy(kr->sec->audit_sk, plain + KR_KEY_BYTES * ((size_t)s.info.ceiling + 2),
		       crypto_box_SECRETKEYBYTES);
		/* The audit key pair must match the authenticated config. */
		crypto_scalarmult_base(pk, kr->sec->audit_sk);
		rc = sodium_memcmp(pk, cfg.audit_pk, sizeof pk) == 0 ? 0 : -EUCLEAN;
		sodium_memzero(pk, sizeof pk);
		if (rc)
			goto out;
	}
	kr->cfg = cfg;
	kr->ceiling = s.info.ceiling;
	kr->admin = s.info.admin;
	kr->slot = found;
	*out = kr;
	kr = NULL;
out:
	sodium_free(key);
	sodium_free(wrap);
	sodium_free(plain);
	sodium_memzero(slotbuf, sizeof slotbuf);
	kr_keyring_free(kr);
	return rc;
}

const struct kr_config *kr_keyring_config(const struct kr_keyring *kr)
{
	return &kr->cfg;
}

unsigned kr_keyring_ceiling(const struct kr_keyring *kr)
{
	return kr->ceiling;
}

bool kr_level_held(const struct kr_keyring *kr, unsigned level)
{
	return level <= kr->ceiling && level < kr->cfg.nlevels &&
	       !(__atomic_load_n(&kr->forgotten, __ATOMIC_ACQUIRE) & (1u << level));
}

int kr_keyring_slot(const struct kr_keyring *kr)
{
	return kr->slot;
}

bool kr_keyring_is_admin(const struct kr_keyring *kr)
{
	return kr->admin;
}

int kr_level_index(const struct kr_keyring *kr, const char *name)
{
	for (unsigned i = 0; i < kr->cfg.nlevels; i++)
		if (strcmp(kr->cfg.levels[i].name, name) == 0)
			return (int)i;
	return -EINVAL;
}

const unsigned char *kr_level_subkey(const struct kr_keyring *kr, unsigned level,
				     enum kr_subkey which)
{
	if (!kr_level_held(kr, level) || which < 1 || which > KR_SUB_COUNT)
		return NULL;
	return kr->sec->level_sub[level][which - 1];
}

const unsigned char *kr_vault_subkey(const struct kr_keyring *kr, enum kr_vault_subkey which)
{
	if (which < 1 || which > KR_VSUB_COUNT)
		return NULL;
	return kr->sec->vault_sub[which - 1];
}

const unsigned char *kr_audit_sk(const struct kr_keyring *kr)
{
	return kr->admin ? kr->sec->audit_sk : NULL;
}
