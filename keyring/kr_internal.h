/* kr_internal.h - pieces shared by the keyring's own files (and its tests).
 *
 * Nothing outside keyring/ and tests/unit includes this. It holds the byte
 * layouts of docs/format.md sections 2-4 as constants, the keyring struct and
 * its secure key area, and the deterministic encoders that the public API
 * wraps with random inputs (the unit tests call them with fixed inputs to
 * check the test vectors of docs/format.md).
 *
 * Invariants:
 *  - every key byte lives in struct kr_secure, which is sodium_malloc'd and
 *    locked; nothing in this header is a key except through that struct;
 *  - encoders write exactly the documented bytes and return the length;
 *  - parsers bound every length before reading it.
 */
#ifndef STRONGROOM_KR_INTERNAL_H
#define STRONGROOM_KR_INTERNAL_H

#include <sodium.h>
#include <sys/types.h>

#include "strongroom/keyring.h"

/* docs/format.md section 2: strongroom.conf */
#define KR_CONF_MAGIC	    "SRVAULT\0"
#define KR_CONF_MAGIC_BYTES 8
#define KR_CONF_VERSION	    1
#define KR_CONF_FIXED_BYTES 41 /* magic .. level count */
#define KR_CONF_MAC_BYTES   32
#define KR_CONF_MAX_BYTES                                                                          \
	(KR_CONF_FIXED_BYTES + KR_MAX_LEVELS * (1 + KR_LEVEL_NAME_MAX + 2) + 32 + KR_CONF_MAC_BYTES)
/* Feature flags: none defined in version 1. */
#define KR_CONF_REQUIRED_KNOWN 0u
#define KR_CONF_OPTIONAL_KNOWN 0u

/* docs/format.md section 3: keyslots/slot-N */
#define KR_SLOT_MAGIC	     "SRKSLOT\0"
#define KR_SLOT_MAGIC_BYTES  8
#define KR_SLOT_VERSION	     1
#define KR_SLOT_HEADER_BYTES 88
#define KR_SLOT_SALT_BYTES   16
#define KR_SLOT_NONCE_BYTES  24
#define KR_SLOT_TAG_BYTES    16
#define KR_SLOT_FLAG_ADMIN   0x01u
#define KR_SLOT_FLAG_KEYFILE 0x02u /* passphrase and key file (section 3.1) */
#define KR_KEYFILE_TAG	     "SRkeyfile\x01"
#define KR_KEYFILE_TAG_BYTES 10
#define KR_SLOT_PLAIN_MAX    (KR_KEY_BYTES * (1 + KR_MAX_LEVELS + 1))
#define KR_SLOT_MAX_BYTES    (KR_SLOT_HEADER_BYTES + KR_SLOT_PLAIN_MAX + KR_SLOT_TAG_BYTES)
/* Bounds a store writer cannot exceed to make unlocking hang or exhaust
 * memory (docs/format.md section 3). */
#define KR_SLOT_OPSLIMIT_MAX 64u
#define KR_SLOT_MEMLIMIT_MAX (4ull << 30)

/* docs/format.md section 4: recovery key */
#define KR_RECOVERY_RAW_BYTES 20
#define KR_RECOVERY_GROUPS    9 /* 8 data groups + 1 check group */

/* Contexts of crypto_kdf_derive_from_key (8 bytes each). */
#define KR_CTX_LEVEL  "SRlevel_"
#define KR_CTX_VAULT  "SRvault_"
#define KR_SUB_COUNT  4
#define KR_VSUB_COUNT 4

/* All key bytes of one unlocked keyring, in one guarded allocation. */
struct kr_secure {
	unsigned char vault_key[KR_KEY_BYTES];
	/* The key of each level in use: the root key until the first
	 * rotation, then the key bag's current key (section 4.4). */
	unsigned char level_key[KR_MAX_LEVELS][KR_KEY_BYTES];
	/* What keyslots hold: each level's root key, which opens the key bag. */
	unsigned char level_root[KR_MAX_LEVELS][KR_KEY_BYTES];
	/* The key a rotation in progress moves a level to. */
	unsigned char level_next[KR_MAX_LEVELS][KR_KEY_BYTES];
	unsigned char level_sub[KR_MAX_LEVELS][KR_SUB_COUNT][KR_KEY_BYTES];
	unsigned char vault_sub[KR_VSUB_COUNT][KR_KEY_BYTES];
	unsigned char audit_sk[crypto_box_SECRETKEYBYTES];
};

struct kr_keyring {
	struct kr_config cfg;
	unsigned ceiling;
	int slot;
	bool admin;
	uint32_t gen[KR_MAX_LEVELS];	  /* key bag generation in use, 0 = root */
	uint32_t next_gen[KR_MAX_LEVELS]; /* rotation in progress to this, or 0 */
	bool roots_gone;		  /* kr_keyring_forget_roots was called */
	uint32_t forgotten;		  /* levels wiped by kr_level_forget (atomic) */
	struct kr_secure *sec; /* owned; sodium_malloc */
};

/* A parsed keyslot: header fields, plus where the box starts. */
struct kr_slot {
	struct kr_slot_info info;
	uint8_t vault_id[KR_VAULT_ID_BYTES];
	uint8_t salt[KR_SLOT_SALT_BYTES];
	uint8_t nonce[KR_SLOT_NONCE_BYTES];
	size_t box_len; /* ciphertext + tag */
};

/* ---- kr_config.c ---- */

/* Encode cfg and its MAC under mac_key. @return the length or -errno. */
ssize_t kr_config_encode(const struct kr_config *cfg, const unsigned char mac_key[KR_KEY_BYTES],
			 unsigned char *out, size_t cap);
/* Check the trailing MAC of a config file (constant time).
 * @return 0 or -EUCLEAN. */
int kr_config_mac_verify(const unsigned char *buf, size_t len,
			 const unsigned char mac_key[KR_KEY_BYTES])
    __attribute__((warn_unused_result));
/* True if name is a valid level name. */
bool kr_level_name_valid(const char *name);

/* ---- kr_slot.c ---- */

/* Size of the plaintext a slot of this shape boxes. */
size_t kr_slot_plain_len(unsigned ceiling, bool admin);
/* Encode a slot: header from info/vault_id/salt/nonce, box of plain under
 * wrap_key. @return the length or -errno. */
ssize_t kr_slot_encode(const struct kr_slot_info *info, const uint8_t vault_id[KR_VAULT_ID_BYTES],
		       const uint8_t salt[KR_SLOT_SALT_BYTES],
		       const uint8_t nonce[KR_SLOT_NONCE_BYTES],
		       const unsigned char wrap_key[KR_KEY_BYTES], const unsigned char *plain,
		       size_t plain_len, unsigned char *out, size_t cap);
/* Parse the header of a slot file. @return 0, -EUCLEAN or -EOPNOTSUPP. */
int kr_slot_parse(const unsigned char *buf, size_t len, struct kr_slot *slot);
/* Open the box of a parsed slot; plain must hold kr_slot_plain_len bytes
 * and is zeroed on failure. @return 0 or -EKEYREJECTED. */
int kr_slot_open(const unsigned char *buf, const struct kr_slot *slot,
		 const unsigned char wrap_key[KR_KEY_BYTES], unsigned char *plain)
    __attribute__((warn_unused_result));
/* The wrapping key of a slot from its secret. Recovery secrets are the raw
 * 20 bytes. A key-file slot needs keyfile (its bytes); other slots ignore
 * it. @return 0, -ENOKEY if a key-file slot got no key file, -ENOMEM if
 * Argon2id could not get its memory. */
int kr_slot_wrap_key(const struct kr_slot *slot, const unsigned char *secret, size_t secret_len,
		     const unsigned char *keyfile, size_t keyfile_len,
		     unsigned char wrap_key[KR_KEY_BYTES]) __attribute__((warn_unused_result));
/* Write slot-<index> holding the keys of sec that info asks for, wrapped
 * under secret (a passphrase, or the raw 20 recovery bytes) and, when
 * info->keyfile, the key file bytes, with a fresh random salt and nonce.
 * Never replaces an existing slot file.
 * @return 0, -EEXIST if slot-<index> exists, or -errno. */
int kr_slot_store(const char *store, int index, const struct kr_slot_info *info,
		  const uint8_t vault_id[KR_VAULT_ID_BYTES], const struct kr_secure *sec,
		  const unsigned char *secret, size_t secret_len, const unsigned char *keyfile,
		  size_t keyfile_len)
    __attribute__((warn_unused_result));

/* True if s carries no key file or one of an allowed length. */
bool kr_keyfile_len_valid(const struct kr_secret *s);

/* ---- kr_recovery.c ---- */

/* Format 20 raw bytes as recovery text (KR_RECOVERY_TEXT_BYTES with NUL). */
void kr_recovery_format(const unsigned char raw[KR_RECOVERY_RAW_BYTES],
			char text[KR_RECOVERY_TEXT_BYTES]);

/* ---- kr_keyring.c ---- */

/* Derive every subkey of the keys in sec for levels 0..ceiling. */
void kr_subkeys_derive(struct kr_secure *sec, unsigned ceiling);

/* ---- kr_bag.c: the key bag, docs/format.md section 4.4 ---- */

#define KR_BAG_NAME	   "keybag"
#define KR_BAG_MAGIC	   "SRKBAG\0\0"
#define KR_BAG_MAGIC_BYTES 8
#define KR_BAG_VERSION	   1
#define KR_BAG_HEADER_BYTES 32
#define KR_BAG_ENTRY_BYTES  80
#define KR_BAG_MAX_ENTRIES  (2 * KR_MAX_LEVELS)
#define KR_BAG_MAX_BYTES    (KR_BAG_HEADER_BYTES + KR_BAG_MAX_ENTRIES * KR_BAG_ENTRY_BYTES)
#define KR_BAG_CURRENT	    1
#define KR_BAG_NEXT	    2
#define KR_CTX_BAG	    "SRkbag__"

/* Read STORE/keybag (absent: nothing to do) and replace level_key (and
 * fill level_next) of the held levels 0..ceiling from it. Call after
 * level_root is set, before kr_subkeys_derive. @return 0, -EUCLEAN for a
 * bag that does not parse, is of another vault or does not open. */
int kr_bag_apply(const char *store, struct kr_keyring *kr, const struct kr_config *cfg,
		 unsigned ceiling) __attribute__((warn_unused_result));

/* ---- kr_watch.c: freezes and level locks, docs/format.md section 4.5 ---- */

#define KR_WATCH_MAGIC	      "SRWATCH\0"
#define KR_WATCH_MAGIC_BYTES  8
#define KR_WATCH_VERSION      1
#define KR_WATCH_HEADER_BYTES 44
#define KR_WATCH_MAX_BYTES    (KR_WATCH_HEADER_BYTES + 4 * KR_WATCH_FROZEN_MAX + KR_KEY_BYTES)

/* Encode st (uids sorted on the way) with its MAC under mac_key.
 * @return the length, -EINVAL for duplicate uids or too many, -ENOSPC. */
ssize_t kr_watch_encode(const struct kr_watch_state *st, const uint8_t vault_id[KR_VAULT_ID_BYTES],
			const unsigned char mac_key[KR_KEY_BYTES], unsigned char *out, size_t cap);
/* Decode and check a state file: vault_id and mac_key may be NULL (the
 * fuzz target checks structure only). @return 0, -EUCLEAN, -EOPNOTSUPP. */
int kr_watch_decode(const unsigned char *buf, size_t len, const uint8_t vault_id[KR_VAULT_ID_BYTES],
		    unsigned nlevels, const unsigned char *mac_key, struct kr_watch_state *st);

/* ---- kr_file.c ---- */

/* Read a whole small file (regular, not a symlink, at most cap bytes).
 * @return its length, -ENOENT, -EUCLEAN if larger than cap or not regular,
 * or another -errno. */
ssize_t kr_file_read(const char *path, unsigned char *buf, size_t cap);
/* Replace path atomically with buf: temp file in the same directory, fsync,
 * rename, fsync the directory. @return 0 or -errno. */
int kr_file_write_atomic(const char *path, const unsigned char *buf, size_t len);
/* Create path with buf, durably, failing with -EEXIST if it exists (temp
 * file, fsync, link, fsync the directory). @return 0 or -errno. */
int kr_file_write_new(const char *path, const unsigned char *buf, size_t len);
/* Join "dir/name" into out. @return 0 or -ENAMETOOLONG. */
int kr_path_join(char *out, size_t cap, const char *dir, const char *name);

#endif
