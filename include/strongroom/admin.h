/* admin.h - offline administration of a store: check and repair (fsck),
 * and the key rotation of one level (rotate).
 *
 * Both work on a store that no driver has mounted for writing (the caller
 * holds STORE/lock exclusively) through an unlocked keyring, without FUSE.
 * Both are steppers rather than callbacks: the caller calls *_step until it
 * returns 0 and reads the counters between steps (progress on a terminal),
 * so nothing here calls back into the command line.
 *
 * fsck invariants:
 *  1. Without repair, fsck never writes to the store.
 *  2. Repair never deletes store bytes: whatever it takes out of the tree
 *     (orphan temporary files, orphan sidecars, names that do not
 *     authenticate, the damaged original of a file whose bad chunks became
 *     holes, a damaged .sr-dir) is moved or linked into STORE/quarantine/,
 *     and an index line there names the store path it came from (never a
 *     plaintext name: the quarantine is as public as the store).
 *  3. Each problem names the store path (relative to STORE), and the
 *     plaintext path when the keyring could decrypt it.
 *
 * Errors: 0/-errno as in vault.h; the problems fsck finds are not errors.
 */
#ifndef STRONGROOM_ADMIN_H
#define STRONGROOM_ADMIN_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "strongroom/audit.h"
#include "strongroom/keyring.h"

#define ADMIN_QUARANTINE_DIR   "quarantine"
#define ADMIN_QUARANTINE_INDEX "index"

/* ---- fsck ---- */

enum vault_fsck_kind {
	VAULT_FSCK_KEYSLOT = 1,	    /* a keyslot file that does not parse */
	VAULT_FSCK_DIRMETA,	    /* a .sr-dir missing, malformed or not authentic */
	VAULT_FSCK_NAME,	    /* a store name that does not decrypt */
	VAULT_FSCK_SIDECAR_MISSING, /* a long name without its sidecar */
	VAULT_FSCK_SIDECAR_ORPHAN,  /* a sidecar without its entry */
	VAULT_FSCK_TMP_ORPHAN,	    /* an FMT_TMP_PREFIX leftover */
	VAULT_FSCK_FOREIGN,	    /* something the format never writes */
	VAULT_FSCK_FILE,	    /* a file header or seal that fails */
	VAULT_FSCK_UNSEALED,	    /* a file whose tail a crash left unsealed */
	VAULT_FSCK_CHUNK,	    /* a chunk that does not authenticate */
	VAULT_FSCK_ROTATION,	    /* an unfinished key rotation */
};

struct vault_fsck_problem {
	enum vault_fsck_kind kind;
	char store_path[PATH_MAX]; /* relative to STORE, e.g. "tree/AbC.../xyz" */
	char path[PATH_MAX];	   /* plaintext path, "" when unknown */
	uint64_t chunk;		   /* VAULT_FSCK_CHUNK: the chunk index */
	int err;		   /* the -errno the check met */
	bool fixed;		   /* repair dealt with it */
	char note[256];		   /* what repair did, or why it could not */
};

struct vault_fsck_stats {
	uint64_t dirs, files;
	uint64_t bytes;	   /* plaintext bytes read and checked */
	uint64_t locked;   /* objects of levels the keyring does not hold */
	uint64_t problems; /* found */
	uint64_t fixed;	   /* of those, repaired */
};

struct vault_fsck;

/* Start a check of store with kr (borrowed; both must outlive the check).
 * repair allows the changes of invariant 2. Checks the keyslot files at
 * once. @return 0 and *out owned (vault_fsck_close), or -errno if the tree
 * cannot be opened at all. */
int vault_fsck_open(const char *store, const struct kr_keyring *kr, bool repair,
		    struct vault_fsck **out) __attribute__((warn_unused_result));
/* Check (and repair) one more object: a directory or a file.
 * @return 1 if there is more to do, 0 when finished, -errno on an error
 * that stops the check (ENOMEM, the store vanished). */
int vault_fsck_step(struct vault_fsck *ck);
/* Counters so far; borrowed until vault_fsck_close. */
const struct vault_fsck_stats *vault_fsck_stats(const struct vault_fsck *ck);
/* Problems found so far, in order; *out borrowed until the next step. */
size_t vault_fsck_problems(const struct vault_fsck *ck, const struct vault_fsck_problem **out);
/* Frees. Accepts NULL. */
void vault_fsck_close(struct vault_fsck *ck);

/* Human name of a problem kind ("chunk", "orphan temporary file", ...). */
const char *vault_fsck_kind_name(enum vault_fsck_kind kind);

/* ---- rotate ----
 *
 * Re-encrypts every directory metadata, name and file of one level from the
 * keyring old_kr to new_kr (kr_keyring_next: the same keys but that
 * level's). Objects of other levels are not touched (their ciphertext stays
 * byte for byte, so backups stay incremental).
 *
 * rotate invariants:
 *  1. Every object is readable at every instant under exactly one of the
 *     two keys, and the rotation finds out which by authentication (the
 *     header tag, the directory metadata tag, the name SIV): a rerun after
 *     a crash skips what is done and finishes the rest.
 *  2. A file is rewritten into an FMT_TMP_PREFIX sibling (".sr-tmp.rot.")
 *     that is fsync'ed and renamed over it; a crash leaves at worst that
 *     sibling, which the next run removes (the original is still whole).
 *  3. A name is renamed in place (long names: new sidecar first, old one
 *     last), so the entry always has exactly one readable name.
 *  4. STORE/rotate.state ("level=N gen=G") exists from before the new key
 *     is added to the key bag until after the old one is removed from it;
 *     while it exists, mounts are refused and fsck reports it.
 *  5. A rewritten file keeps its file_id (its st_ino through a mount). A
 *     file of several names (store hard links) is left for after the walk
 *     and then rewritten once, each of its names given the new file by a
 *     hard link renamed over it; meanwhile rotate.state carries
 *     "link=<file_id hex>", so a rerun gives its remaining names the same
 *     new file instead of a copy each.
 */

#define ADMIN_ROTATE_STATE	"rotate.state"
#define ADMIN_ROTATE_TMP_PREFIX ".sr-tmp.rot."
/* STORE/readers: read-only mounts hold it shared (docs/format.md 4.4). */
#define ADMIN_READERS_LOCK "readers"

struct vault_rotate_stats {
	uint64_t dirs, files, names;	  /* re-encrypted */
	uint64_t done;			  /* objects found already under the new key */
	uint64_t skipped;		  /* objects of other levels, or locked */
	uint64_t linked;		  /* names given a rewritten file of several names */
	uint64_t bytes_done, bytes_total; /* store bytes visited / to visit */
};

struct vault_rotate;

/* @return 0 and *out owned (vault_rotate_close). Counts the store's bytes
 * first (for progress). */
int vault_rotate_open(const char *store, const struct kr_keyring *old_kr,
		      const struct kr_keyring *new_kr, unsigned level, struct vault_rotate **out)
    __attribute__((warn_unused_result));
/* Re-encrypt one more object. @return 1 more to do, 0 finished, -errno: a
 * damaged object of the level (-EBADMSG: run fsck first) or an I/O error;
 * the rotation can be run again after fixing it. */
int vault_rotate_step(struct vault_rotate *rt);
const struct vault_rotate_stats *vault_rotate_stats(const struct vault_rotate *rt);
/* Store path (relative to STORE) of the object the last failing step met. */
const char *vault_rotate_where(const struct vault_rotate *rt);
/* If the last step replaced a store file (a file of the level rewritten,
 * with all its names): the store path (relative to STORE) of one name of
 * the new file, and *dev, *ino of the file it replaced; else NULL. A
 * mounted driver rotating online re-opens its open files by it. */
const char *vault_rotate_moved(const struct vault_rotate *rt, dev_t *dev, ino_t *ino);
void vault_rotate_close(struct vault_rotate *rt);

/* STORE/rotate.state. read: @return 0, -ENOENT if none, -EUCLEAN. */
int vault_rotate_state_write(const char *store, unsigned level, uint32_t gen);
int vault_rotate_state_read(const char *store, unsigned *level, uint32_t *gen);
int vault_rotate_state_remove(const char *store);

/* ---- the trail of offline work ----
 *
 * rotate and fsck --repair record what they do in the vault's audit trail
 * (docs/audit.md: events `rotate` and `repair`), with no driver running:
 * the caller holds the store lock exclusively. */

struct vault_admin_log;

/* Open STORE/audit for appending (a new segment of the chain) with kr's
 * audit chain key. @return 0 and *out owned (vault_admin_log_close);
 * -EBUSY if a driver or another command writes the trail, -ENOKEY, or
 * -errno. */
int vault_admin_log_open(const char *store, const struct kr_keyring *kr,
			 struct vault_admin_log **out) __attribute__((warn_unused_result));
/* One record of type by this process: path ("" = "/") and path2 (may be
 * NULL) plaintext or store paths, level name (may be NULL), bytes, err (0
 * or -errno: the outcome), detail. @return 0 once the record is written,
 * or -errno. */
int vault_admin_log_write(struct vault_admin_log *l, enum audit_event_type type, const char *path,
			  const char *path2, const char *level, uint64_t bytes, int err,
			  const char *detail) __attribute__((warn_unused_result));
/* Close the segment (closing seal). Accepts NULL. @return 0 or -errno. */
int vault_admin_log_close(struct vault_admin_log *l);

#endif
