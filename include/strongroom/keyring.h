/* keyring.h - vault config, keyslots, level keys and subkeys.
 *
 * The keyring is the only owner of key bytes. Every key it hands out lives in
 * sodium_malloc'd, mlock'ed memory and is wiped by kr_keyring_free(); callers
 * get borrowed pointers valid until then. It persists its own files at the
 * top of a store (strongroom.conf, keyslots/slot-N, keybag, watch.state);
 * the byte layouts are in docs/format.md, sections 2-4.
 *
 * Errors: 0 or -errno. -EKEYREJECTED wrong secret, -EUCLEAN corrupt or edited
 * file, -EOPNOTSUPP unknown version or required feature, -ENOENT no vault,
 * -EEXIST / -ENOTEMPTY store in the way at create, -ENOKEY level not held.
 */
#ifndef STRONGROOM_KEYRING_H
#define STRONGROOM_KEYRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KR_KEY_BYTES 32
#define KR_VAULT_ID_BYTES 16
#define KR_MAX_LEVELS 8
#define KR_LEVEL_NAME_MAX 31
#define KR_MAX_SLOTS 32
/* "XXXX-XXXX-...": 8 groups of 4 base32 data characters + 1 check group. */
#define KR_RECOVERY_TEXT_BYTES 45 /* 44 characters + NUL */

#define KR_CONFIG_NAME "strongroom.conf"
#define KR_SLOT_DIR "keyslots"

#define KR_CHUNK_SIZE_DEFAULT 65536u
#define KR_CHUNK_SIZE_MIN 4096u
#define KR_CHUNK_SIZE_MAX 1048576u

struct kr_level_cfg {
	char name[KR_LEVEL_NAME_MAX + 1];
	uint8_t compress; /* zstd level 1..19, 0 = never compress */
	uint8_t pad_log2; /* sealed chunk payloads padded to 2^pad_log2 bytes */
};

struct kr_config {
	uint16_t version;
	uint8_t vault_id[KR_VAULT_ID_BYTES];
	uint32_t chunk_size; /* power of two, KR_CHUNK_SIZE_MIN..MAX */
	unsigned nlevels;    /* 1..KR_MAX_LEVELS, index 0 is the lowest */
	struct kr_level_cfg levels[KR_MAX_LEVELS];
	uint8_t audit_pk[32]; /* X25519 public key the audit trail seals to */
};

/* Argon2id cost of one passphrase keyslot. */
struct kr_kdf_params {
	uint64_t opslimit;
	uint64_t memlimit; /* bytes */
};

enum kr_secret_kind {
	KR_SECRET_PASSPHRASE = 1,
	KR_SECRET_RECOVERY = 2, /* bytes = the typed recovery text */
};

/* A passphrase may come with the bytes of a key file (docs/format.md 3.1):
 * a slot made with one opens only with the passphrase and those same bytes.
 * The keyring never reads files; the caller hands the bytes in. */
#define KR_KEYFILE_MIN_BYTES 16
#define KR_KEYFILE_MAX_BYTES (1u << 20)

struct kr_secret {
	enum kr_secret_kind kind;
	const char *bytes; /* borrowed; caller wipes */
	size_t len;
	/* Key file bytes (passphrase only), borrowed, caller wipes; NULL if
	 * none. Unlocking tries key-file slots with them and plain slots with
	 * the passphrase alone; kr_vault_create and kr_keyslot_add make a slot
	 * that needs them. */
	const unsigned char *keyfile;
	size_t keyfile_len;
};

/* Subkeys derived with crypto_kdf from a level key (docs/format.md
 * "Subkeys"). Each is KR_KEY_BYTES long. */
enum kr_subkey {
	KR_SUB_CONTENT = 1,  /* chunk and seal frames */
	KR_SUB_NAME_MAC = 2, /* SIV of names */
	KR_SUB_NAME_ENC = 3,
	KR_SUB_META = 4, /* file headers, directory metadata */
};

/* Vault-wide subkeys, derived from the vault key that every slot holds. */
enum kr_vault_subkey {
	KR_VSUB_HINT = 1,  /* level hints in file headers and directory metadata */
	KR_VSUB_AUDIT = 2, /* audit chain */
	KR_VSUB_CONFIG = 3, /* MAC of strongroom.conf */
	KR_VSUB_WATCH = 4,  /* MAC of watch.state */
};

struct kr_keyring;

/* Argon2id parameters: SR_KDF=test in the environment selects the minimum
 * (fast tests); otherwise about 0.5-1 s and 256 MiB. */
void kr_kdf_params_default(struct kr_kdf_params *p);

/* Fill a config with the defaults: levels public,internal,confidential,
 * restricted; 64 KiB chunks; restricted uncompressed and padded. */
void kr_config_default(struct kr_config *cfg);

/* Set cfg's levels from "a,b,c" (lowest first). Names are 1..31 of
 * [a-z0-9_-], starting with a letter, all different. With two or more
 * levels the highest is uncompressed and padded to whole chunks, the others
 * compress 1 and pad_log2 4. @return 0 or -EINVAL. */
int kr_config_set_levels(struct kr_config *cfg, const char *csv);

/* Set the chunk size (a power of two, KR_CHUNK_SIZE_MIN..MAX); levels padded
 * to whole chunks stay so. @return 0 or -EINVAL. */
int kr_config_set_chunk_size(struct kr_config *cfg, uint32_t chunk_size);

/* Read and parse STORE/strongroom.conf without a secret. The result is NOT
 * authenticated (the MAC needs the vault key): use it only to show names,
 * never to decide anything about keys. @return 0, -ENOENT, -EUCLEAN,
 * -EOPNOTSUPP or another -errno. */
int kr_config_load(const char *store, struct kr_config *cfg);

/* Create a vault in store (which must be missing or an empty directory):
 * writes strongroom.conf, keyslots/slot-0 (pass, all levels, admin) and
 * keyslots/slot-1 (recovery, all levels, admin). cfg->vault_id and
 * cfg->audit_pk are generated. recovery_out receives the recovery text.
 * @return 0, and *out owned by the caller (kr_keyring_free). */
int kr_vault_create(const char *store, struct kr_config *cfg, const struct kr_secret *pass,
		    const struct kr_kdf_params *kdf, char recovery_out[KR_RECOVERY_TEXT_BYTES],
		    struct kr_keyring **out) __attribute__((warn_unused_result));

/* Unlock with any slot the secret opens (a key-file slot only when
 * secret->keyfile is given). @return 0 and *out owned by the caller,
 * -EKEYREJECTED if no slot accepts the secret (kr_vault_needs_keyfile says
 * whether a key file may be what is missing), -EUCLEAN if the
 * config fails authentication once unlocked (or the only slots of the
 * secret's kind are malformed or of another vault), -EOPNOTSUPP for a newer
 * format, -ENOENT if there is no vault, and for a recovery text that does
 * not parse, kr_recovery_parse's -EINVAL or -EBADMSG. */
int kr_vault_unlock(const char *store, const struct kr_secret *secret, struct kr_keyring **out)
	__attribute__((warn_unused_result));

/* True if store has a well-formed passphrase slot that needs a key file:
 * the hint a refused passphrase without one deserves. Needs no secret. */
bool kr_vault_needs_keyfile(const char *store);

/* Wipes and frees every key. Accepts NULL. */
void kr_keyring_free(struct kr_keyring *kr);

/* Borrowed until kr_keyring_free. */
const struct kr_config *kr_keyring_config(const struct kr_keyring *kr);
/* Highest level index this keyring holds (levels 0..ceiling are held). */
unsigned kr_keyring_ceiling(const struct kr_keyring *kr);
bool kr_level_held(const struct kr_keyring *kr, unsigned level);
/* Index of the slot that unlocked this keyring. */
int kr_keyring_slot(const struct kr_keyring *kr);
/* True if the slot that unlocked holds the audit secret key. */
bool kr_keyring_is_admin(const struct kr_keyring *kr);
/* Level by name, or -EINVAL. */
int kr_level_index(const struct kr_keyring *kr, const char *name);

/* A subkey of a held level, borrowed until kr_keyring_free; NULL if the level
 * is not held. */
const unsigned char *kr_level_subkey(const struct kr_keyring *kr, unsigned level, enum kr_subkey which);
const unsigned char *kr_vault_subkey(const struct kr_keyring *kr, enum kr_vault_subkey which);
/* The audit secret key (X25519), or NULL unless an admin slot unlocked. */
const unsigned char *kr_audit_sk(const struct kr_keyring *kr);

/* Keyslots. */
struct kr_slot_info {
	int index;
	enum kr_secret_kind kind;
	unsigned ceiling;
	bool admin;
	bool keyfile; /* a passphrase slot that also needs a key file */
	struct kr_kdf_params kdf;
};

/* Add a passphrase slot holding levels 0..ceiling (ceiling must be held by
 * kr; admin only if kr is admin and ceiling is the top); with pass->keyfile
 * the slot needs those bytes too. @return the new slot index or -errno
 * (-EINVAL for a key file outside KR_KEYFILE_MIN_BYTES..MAX_BYTES). */
int kr_keyslot_add(const char *store, const struct kr_keyring *kr, const struct kr_secret *pass,
		   unsigned ceiling, const struct kr_kdf_params *kdf);
/* Remove a slot. Refuses (-EPERM) to remove the last slot that opens every
 * level. */
int kr_keyslot_remove(const char *store, const struct kr_keyring *kr, int index);
/* List up to cap slots in index order; @return the count or -errno. Needs
 * no secret. A slot file that does not parse is listed with kind 0. */
int kr_keyslot_list(const char *store, struct kr_slot_info *out, int cap);

/* Key rotation of one level (docs/format.md section 4.4). Keyslots hold a
 * root key per level; STORE/keybag holds the key in use of every rotated
 * level (and, during a rotation, the next one), boxed under a key derived
 * from the root, so every slot holding the level gets the new key and no
 * slot is rewritten.
 *
 * Generation of the key in use (0 = the root key itself). */
uint32_t kr_level_generation(const struct kr_keyring *kr, unsigned level);
/* Generation a rotation in progress moves the level to, or 0. */
uint32_t kr_rotate_next_generation(const struct kr_keyring *kr, unsigned level);
/* Start (or, if the bag already holds one, resume) a rotation: a fresh
 * random next key is added to the bag. kr keeps using the old key.
 * @return 0, -ENOKEY if the level is not held, or -errno. */
int kr_rotate_begin(const char *store, struct kr_keyring *kr, unsigned level)
	__attribute__((warn_unused_result));
/* A copy of kr whose key for level is the next one. @return 0 and *out
 * owned (kr_keyring_free), -ENOENT if no rotation is in progress. */
int kr_keyring_next(const struct kr_keyring *kr, unsigned level, struct kr_keyring **out)
	__attribute__((warn_unused_result));
/* End the rotation: the bag keeps only the next key (the old key is gone
 * from the store; kr wipes it and uses the new one). @return 0 or -errno. */
int kr_rotate_finish(const char *store, struct kr_keyring *kr, unsigned level)
	__attribute__((warn_unused_result));

/* Wipe the root keys (and any next key) of kr, keeping only the keys in
 * use: a mounted driver needs nothing else, so its memory never holds what
 * would open a later key bag. kr can then no longer add keyslots or
 * rotate. */
void kr_keyring_forget_roots(struct kr_keyring *kr);

/* Locking one level of a running driver (kr_lock.c, strongroom lock).
 * Forget: wipe the level's keys in use, root and next keys and subkeys from
 * kr; kr_level_held() is false for it from then on and kr_level_subkey()
 * gives NULL. Pointers handed out before now point at zeroes: the caller
 * must first stop every user of them. @return 0, -ENOKEY if not held. */
int kr_level_forget(struct kr_keyring *kr, unsigned level);
/* True if kr_level_forget wiped this level (and no restore since). */
bool kr_level_forgotten(const struct kr_keyring *kr, unsigned level);
/* Give a forgotten level back: copy its key in use and subkeys from a
 * keyring freshly unlocked from the same store (from, borrowed). @return 0,
 * -ENOKEY if from does not hold the level, -EXDEV if from is of another
 * vault, -ESTALE if from uses another key generation (a rotation since the
 * mount), -EINVAL if the level was not forgotten. */
int kr_level_restore(struct kr_keyring *kr, const struct kr_keyring *from, unsigned level)
	__attribute__((warn_unused_result));

/* Rotating a level of a running driver (strongroom rotate on a mounted
 * store): kr takes from's key of level in place, with its newer generation,
 * and wipes whatever next key it held. Subkey pointers handed out before
 * give the new keys from now on: the caller must first stop every user of
 * them. @return 0, -ENOKEY if either does not hold the level (or kr has it
 * locked), -EXDEV if from is of another vault, -ESTALE if from's key is not
 * newer. */
int kr_level_adopt(struct kr_keyring *kr, const struct kr_keyring *from, unsigned level)
	__attribute__((warn_unused_result));

/* Freezes and level locks that outlive a mount (kr_watch.c,
 * docs/format.md section 4.5): STORE/watch.state, authenticated with a
 * vault subkey so that nobody without a secret can edit it. */
#define KR_WATCH_NAME "watch.state"
#define KR_WATCH_FROZEN_MAX 256
struct kr_watch_state {
	uint32_t locked;     /* bit per locked level */
	uint64_t generation; /* bumped by every save */
	unsigned nfrozen;
	uint32_t frozen[KR_WATCH_FROZEN_MAX]; /* uids */
};
/* Read and authenticate STORE/watch.state. @return 0, -ENOENT if there is
 * none (never written, or deleted: the caller decides), -EUCLEAN if it
 * does not parse, is of another vault or fails its MAC, -EOPNOTSUPP for
 * another version; *st is zeroed unless 0. */
int kr_watch_load(const char *store, const struct kr_keyring *kr, struct kr_watch_state *st)
	__attribute__((warn_unused_result));
/* Replace STORE/watch.state with st (generation bumped first), atomically.
 * @return 0, -EINVAL (a level kr's vault does not have, duplicate uids),
 * or -errno. */
int kr_watch_save(const char *store, const struct kr_keyring *kr, struct kr_watch_state *st)
	__attribute__((warn_unused_result));
/* Structure only, no MAC: for the fuzz target. */
int kr_watch_parse(const unsigned char *buf, size_t len, struct kr_watch_state *st);

/* Passphrase quality (kr_quality.c): init, passwd and keyslot add refuse a
 * new passphrase below a length floor or an entropy estimate. */
#define KR_PASS_MIN_CHARS 12
#define KR_PASS_MIN_BITS 50
struct kr_pass_quality {
	double bits;	    /* entropy estimate */
	size_t chars;	    /* characters (UTF-8 sequences count as one) */
	const char *reason; /* why it is weak, static; NULL if acceptable */
};
/* Judge a new passphrase. @return 0 if acceptable, -EINVAL if weak
 * (q->reason says why). q may be NULL. */
int kr_pass_check(const char *pass, size_t len, struct kr_pass_quality *q);

/* Parse a typed recovery text (case-insensitive, dashes and spaces ignored,
 * O->0, I/L->1). @return 0, or -EINVAL if malformed, -EBADMSG if the check
 * group does not match (a typo). raw receives the 20 key bytes. */
int kr_recovery_parse(const char *text, unsigned char raw[20]);

/* Parsers of store bytes, exposed for the fuzz targets and tests. */
int kr_config_parse(const unsigned char *buf, size_t len, struct kr_config *cfg);
int kr_keyslot_parse(const unsigned char *buf, size_t len, struct kr_slot_info *info);

#endif
