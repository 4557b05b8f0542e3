/* vault_internal.h - what the vault's own files share (not a public API).
 *
 * Invariants the vault keeps (each file says where it keeps them):
 *  1. Every path operation holds v->ns: shared for lookups and reads of the
 *     namespace, exclusive for mkdir/rmdir/create/unlink/rename/link/symlink/
 *     mknod and for changes to a directory's metadata. A struct vault_dir is
 *     only read or changed while v->ns is held, so a holder of the exclusive
 *     lock may change a directory's fields in place.
 *  2. A struct vault_dir reached from a path is the authenticated content of
 *     its .sr-dir: its level is held by the keyring, its dir_id and mode came
 *     out of fmt_dirmeta_decode, never from the store inode.
 *  3. One struct vault_ofile (one vf_file) per store inode: every open, and
 *     every attribute change of a file by path, goes through the table in
 *     v->files, so two handles see each other's writes. An entry is OPENING
 *     while vf_open runs and CLOSING while its last holder seals (and maybe
 *     compacts) it; nobody else touches the vf_file in those states, and
 *     whoever finds such an entry waits for it to settle. Those waits happen
 *     with v->ns held shared, and the thread they wait for already holds v->ns
 *     shared, so they cannot deadlock against a writer.
 *  4. Lock order: v->ns, then v->dcache_lock or v->files_lock (never both).
 */
#ifndef STRONGROOM_VAULT_INTERNAL_H
#define STRONGROOM_VAULT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "strongroom/format.h"
#include "strongroom/audit.h"
#include "strongroom/keyring.h"
#include "strongroom/vault.h"
#include "strongroom/vfile.h"

/* Room for an encrypted name before the long-name fallback (a 255-byte name
 * encrypts to a little over 340 base64url characters). */
#define VAULT_ENC_NAME_MAX 2048
/* Directories kept open in the path cache (each holds one fd). */
#define VAULT_DCACHE_MAX 256
#define VAULT_DCACHE_BUCKETS 512
/* Largest .sr-dir the vault reads (xattrs are at most 64 KiB each). */
#define VAULT_DIRMETA_MAX (4u << 20)
#define VAULT_XATTR_VALUE_MAX 65536
#define VAULT_SYMLINK_MAX 4095

#define VAULT_XATTR_LEVEL "user.strongroom.level"
#define VAULT_XATTR_ACL_ACCESS "system.posix_acl_access"
#define VAULT_XATTR_ACL_DEFAULT "system.posix_acl_default"

/* A plaintext directory: an open store directory and its decoded metadata. */
struct vault_dir {
	char *path; /* canonical plaintext path; owned */
	int fd;     /* store directory, O_RDONLY|O_DIRECTORY */
	uint8_t dir_id[FMT_ID_BYTES];
	unsigned level;
	unsigned top_level; /* highest level from the root down to here (vault_policy.c) */
	uint32_t mode, uid, gid;
	unsigned char *xattrs; /* attribute blob, malloc'd, may be NULL */
	size_t xattrs_len;
	/* Whether the folder holds names encrypted above its own level
	 * (vault_policy_sname_find probes the other levels only then): a
	 * VAULT_HIGHER_* value, read and set atomically under v->ns shared. */
	uint8_t higher;
	/* under v->dcache_lock */
	unsigned refs;
	bool cached;
	struct vault_dir *hnext, *lru_prev, *lru_next;
};

/* vault_dir.higher. UNKNOWN until this mount created the folder or listed
 * all of it; a read-only mount never trusts NONE (the writer changes the
 * store under it). */
enum { VAULT_HIGHER_UNKNOWN, VAULT_HIGHER_NONE, VAULT_HIGHER_SOME };

/* The store name of one plaintext name in one directory. */
struct vault_sname {
	char name[FMT_NAME_MAX + 1]; /* what the store directory holds */
	bool is_long;                /* then name is ".L<hash>" and ... */
	char sidecar[FMT_LONGNAME_BYTES + sizeof(FMT_LONGNAME_SIDECAR_SUFFIX)];
	size_t enc_len; /* ... sidecar holds enc[0..enc_len) */
	char enc[VAULT_ENC_NAME_MAX];
};

/* A resolved path: its parent directory and the last name's store name.
 * For "/" dir is NULL and last is "". */
struct vault_loc {
	char *path;       /* canonical, owned */
	const char *last; /* points into path */
	struct vault_dir *dir;
	struct vault_sname sn;
};

enum vault_ofile_state { VAULT_OF_OPENING, VAULT_OF_OPEN, VAULT_OF_CLOSING };

struct vault_ofile {
	dev_t dev;
	ino_t ino;
	struct vf_file *f;
	enum vault_ofile_state state; /* under v->files_lock */
	unsigned refs;                /* under v->files_lock */
	pthread_mutex_t append_lock;  /* O_APPEND: size and write as one step */
	/* vault_times_by_caller: the mtime the store keeps (set at open and by
	 * utimens) and whether data was written since open (atomic). */
	struct timespec mtime;
	bool written;
	struct vault_ofile *next;
};

struct vault_handle {
	struct vault *v;
	struct vault_ofile *of;
	int flags;  /* open(2) flags */
	char *path; /* canonical path at open, to find the file for compaction */
	struct vault_audit_handle *audit; /* what it did, for the trail; may be NULL */
};

struct vault {
	const struct kr_keyring *kr;
	unsigned flags;
	int store_fd;
	int tree_fd;
	pthread_rwlock_t ns;

	pthread_mutex_t dcache_lock;
	struct vault_dir *root; /* never evicted */
	struct vault_dir *buckets[VAULT_DCACHE_BUCKETS];
	struct vault_dir *lru_head, *lru_tail; /* head = most recent */
	size_t dcache_n;

	pthread_mutex_t files_lock;
	pthread_cond_t files_cond;
	struct vault_ofile *files;

	uint64_t names_skipped; /* undecryptable store names seen (atomic) */
	/* Folders whose foreign entries were recorded this mount (vault_dir.c);
	 * under dcache_lock. */
	char **tamper_seen;
	size_t tamper_n;

	struct pol_policy *policy; /* compiled policy, NULL if none; under v->ns */
	struct vault_audit *audit; /* the open trail, NULL when not audited */
	struct vault_watch *watch; /* freezes, level locks, alert rules (vault_watch.c) */
	/* Encodes the chunks of a file's flush on several cores (vf_pool.h),
	 * lent to every open file; NULL read-only or when it could not start
	 * (files then encode on the flushing thread alone). Freed after the
	 * last file is closed. */
	struct vf_pool *pool;
};

/* vault_times_by_caller: kept in v->flags beside the public flags. */
#define VAULT_CALLER_MTIME (1u << 30)

static inline bool vault_ro(const struct vault *v)
{
	return (v->flags & VAULT_READ_ONLY) != 0;
}

/* ---- vault.c: paths and the directory cache ---- */

/* Canonical form "/" or "/a/b". @return 0 and *out malloc'd, -EINVAL for a
 * relative path or a "." or ".." component, -ENAMETOOLONG. */
int vault_path_canon(const char *path, char **out);
/* Directory at a canonical path, with a reference. -ENOKEY if it or an
 * ancestor has a level the keyring does not hold, -EBADMSG if a .sr-dir
 * fails authentication, -ENOTDIR, -ENOENT. */
int vault_dir_get(struct vault *v, const char *path, struct vault_dir **out);
void vault_dir_put(struct vault *v, struct vault_dir *d);
/* Forget cached directories at path and below (rename, rmdir). */
void vault_dcache_drop(struct vault *v, const char *path);
/* Resolve path into loc (parent directory + store name). */
int vault_loc_get(struct vault *v, const char *path, struct vault_loc *loc);
void vault_loc_put(struct vault *v, struct vault_loc *loc);
uint64_t vault_id_ino(const uint8_t id[FMT_ID_BYTES]);

/* ---- vault_dir.c: names, directory metadata, listing ---- */

int vault_sname_make(const struct vault *v, const struct vault_dir *d, const char *name, size_t len,
		     struct vault_sname *out);
/* Read, authenticate and decode dirfd's .sr-dir into d (dir_id, level,
 * mode, uid, gid, xattrs). */
int vault_dirmeta_load(const struct vault *v, int dirfd, struct vault_dir *d);
/* Encode d's metadata and replace dirfd's .sr-dir atomically, keeping the
 * store directory's mtime (a metadata change is not a content change). */
int vault_dirmeta_store(const struct vault *v, int dirfd, const struct vault_dir *d);
/* Stat of a directory from its metadata and store inode. */
int vault_dir_stat(const struct vault_dir *d, struct stat *st);
/* Store nd's metadata (same dir_id) in d's .sr-dir; on success d takes
 * nd's level, mode, uid, gid and xattrs (d frees its old blob if nd brought
 * another one; on failure nd->xattrs stays the caller's). v->ns exclusive. */
int vault_dir_commit(const struct vault *v, struct vault_dir *d, const struct vault_dir *nd);
/* 1 if store directory dirfd holds no plaintext entry, 0 if it does; with
 * remove_junk, leftover temp files and orphan sidecars are removed. */
int vault_dir_empty(int dirfd, bool remove_junk);
/* The raw bytes of dirfd's .sr-dir (to put back if a later step fails).
 * @return the length and *buf malloc'd, or -errno. */
ssize_t vault_dirmeta_raw(int dirfd, unsigned char **buf);
/* A fresh reserved name for a directory on its way in or out. */
void vault_tmp_dir_name(char out[FMT_NAME_MAX + 1]);
/* Remove such a directory (it holds at most .sr-dir and temporary files). */
void vault_tmp_dir_remove(int dirfd, const char *name);
/* Write the long-name sidecar of sn in dirfd (before the entry). */
int vault_sidecar_write(int dirfd, const struct vault_sname *sn);
void vault_sidecar_remove(int dirfd, const struct vault_sname *sn);

/* ---- vault_node.c: files and the open-file table ---- */

/* Stat of the non-directory or directory at loc (caller holds v->ns). */
int vault_loc_stat(struct vault *v, struct vault_loc *loc, struct stat *st);
/* Stat of one entry of directory d by store name (readdirplus). */
int vault_entry_stat(struct vault *v, struct vault_dir *d, const char *path, const char *sname,
		     struct stat *st);
/* Open-file table; caller holds v->ns. open_if_absent false only looks. */
int vault_ofile_get(struct vault *v, int dirfd, const char *sname, bool open_if_absent,
		    struct stat *st, struct vault_ofile **out);
/* Drop a reference; the last one seals and closes. With dirfd >= 0 the
 * caller says where the file is named, which allows compaction. */
int vault_ofile_put(struct vault *v, struct vault_ofile *of, int dirfd, const char *sname);

/* True if the caller's reference is the only one (v->ns exclusive): then
 * dropping it seals and closes the file at once. */
bool vault_ofile_sole(struct vault *v, struct vault_ofile *of);
/* Put back atime and mtime of sname after an attribute-only change sealed
 * the file: chmod, chown or an xattr is not a content change. */
void vault_times_restore(int dirfd, const char *sname, const struct stat *before);

/* ---- vault_xattr.c ---- */

/* Mode bits (07777) and ACLs for a new object in parent d. *acc / *dflt
 * are malloc'd ACL xattr values or NULL. */
int vault_new_mode(const struct vault *v, const struct vault_caller *c, const struct vault_dir *d,
		   mode_t mode, bool is_dir, mode_t *mode_out, uint32_t *gid_out, void **acc,
		   size_t *acc_len, void **dflt, size_t *dflt_len);

/* ---- vault_audit.c: records for the audit trail ---- */

/* Each takes the result r of the operation it records, writes the record
 * and returns r, or -EIO if the record could not be written (fail closed).
 * Successes are recorded as their event (type 0: none), denials (-EACCES,
 * -EPERM, -ENOKEY) as `denial`, -EBADMSG / -EUCLEAN as `integrity`; other
 * failures are not recorded. Callers hold no vault lock. Without a trail
 * they return r. */
int vault_audit_path(struct vault *v, const struct vault_caller *c, int type, const char *path,
		     const char *path2, const char *what, int r);
int vault_audit_chmod(struct vault *v, const struct vault_caller *c, const char *path, mode_t mode,
		      int r);
int vault_audit_chown(struct vault *v, const struct vault_caller *c, const char *path, uid_t uid,
		      gid_t gid, int r);
int vault_audit_truncate(struct vault *v, const struct vault_caller *c, const char *path,
			 uint64_t size, int r);
/* The level before a change of user.strongroom.level ("" for other names). */
void vault_audit_level_before(struct vault *v, const struct vault_caller *c, const char *path,
			      const char *name, char old[KR_LEVEL_NAME_MAX + 1]);
int vault_audit_xattr(struct vault *v, const struct vault_caller *c, const char *path,
		      const char *name, const void *val, size_t len, const char *old, int r);
/* Every open, allowed or not (create when may_create and the handle's flags
 * hold O_CREAT: vault_create made the file). If the record fails, *h is
 * released and NULL. */
int vault_audit_opened(struct vault *v, const struct vault_caller *c, const char *path, int flags,
		       bool may_create, int r, struct vault_handle **h);
/* A handle's read or write result n at off: the first read is recorded at
 * once, all of them at release. */
ssize_t vault_audit_read(struct vault_handle *h, uint64_t off, ssize_t n);
ssize_t vault_audit_write(struct vault_handle *h, uint64_t off, ssize_t n);
int vault_audit_ftruncate(struct vault_handle *h, uint64_t size, int r);
/* The open-file table opened f: if the engine recovered it from a crash,
 * the operation's record (on this thread) is preceded by a `recovery`. */
void vault_audit_file_opened(struct vault *v, struct vf_file *f);
/* A denial the policy decided (outcome EACCES, with the refused level and
 * why); the operation's own record then does not repeat it. */
void vault_audit_denied(struct vault *v, const struct vault_caller *c, const char *path,
			unsigned level, const char *why);
/* What the handle read and wrote; frees its audit state. */
int vault_audit_release(struct vault *v, struct vault_handle *h);
/* Record the unmount and close the trail (vault_close); @return r, or the
 * trail's error if r is 0. */
int vault_audit_shutdown(struct vault *v, int r);

/* Write one record as c (the trail's user and process names resolved);
 * without a trail, 0. @return 0 or -EIO (fail closed). */
int vault_audit_emit(struct vault *v, const struct vault_caller *c, struct audit_event *ev);

/* ---- vault_watch.c: freezes, level locks, alert rules (watch.h) ---- */

struct vault_watch;
int vault_watch_init(struct vault *v);
void vault_watch_free(struct vault *v);
/* -EACCES if c is frozen. */
int vault_watch_open_check(struct vault *v, const struct vault_caller *c);
/* Around every handle operation that reaches the file engine: -ENOKEY if
 * the handle's level is locked (then no leave). */
int vault_watch_enter(struct vault_handle *h);
void vault_watch_leave(struct vault_handle *h);
/* True if f's level is locked (the open-file table neither hands it out
 * nor compacts it). */
bool vault_watch_file_locked(struct vault *v, struct vf_file *f);
/* The local time now into *w if some role of p has working hours, else
 * NULL (clearance then does not depend on the time). */
struct pol_when;
struct pol_policy;
const struct pol_when *vault_watch_when(const struct pol_policy *p, struct pol_when *w);
/* Copy the alert rules of v->policy (v->ns held). */
void vault_watch_rules_load(struct vault *v);
/* Every record written to the trail passes here (no vault lock held but
 * maybe v->ns shared). */
void vault_watch_event(struct vault *v, const struct audit_event *ev);
/* An admin action's record (path "/"), by the caller or by the driver. */
int vault_watch_record(struct vault *v, const struct vault_caller *by, enum audit_event_type type,
		       const char *level, const char *detail);
/* Stop every operation of the vault (invariant 1 of vault_watch.c): the
 * admin mutex, w->keys and v->ns, all exclusive. -ENOKEY (nothing held) if
 * level is locked. vault_watch_resume releases them. */
int vault_watch_quiesce(struct vault *v, unsigned level);
void vault_watch_resume(struct vault *v);
/* Seal every open file of level (v->ns exclusive). */
int vault_watch_seal_level(struct vault *v, unsigned level);
/* Lock level in this mount only (not saved in watch.state); why ends the
 * record's detail. */
int vault_watch_lock_now(struct vault *v, struct kr_keyring *kr, unsigned level,
			 const struct vault_caller *by, const char *why);

/* ---- vault_rotate.c ---- */

/* A fresh ADMIN_ROTATE_TMP_PREFIX name. */
void vault_rotate_tmpname(char tmp[FMT_NAME_MAX + 1]);

/* ---- vault_acl.c: POSIX.1e ACLs in the kernel's xattr format (pure) ---- */

#define VAULT_ACL_VERSION 2
#define VAULT_ACL_HEADER_BYTES 4
#define VAULT_ACL_ENTRY_BYTES 8
#define VAULT_ACL_USER_OBJ 0x01
#define VAULT_ACL_USER 0x02
#define VAULT_ACL_GROUP_OBJ 0x04
#define VAULT_ACL_GROUP 0x08
#define VAULT_ACL_MASK 0x10
#define VAULT_ACL_OTHER 0x20

/* Validate an ACL xattr value. @return its entry count (0 for a header
 * alone, which means "no ACL"), or -EINVAL. */
int vault_acl_check(const void *acl, size_t len);
/* The permission bits (0777) an access ACL stands for; *equiv is true when
 * the ACL holds nothing the mode does not (three base entries only). */
int vault_acl_mode(const void *acl, size_t len, mode_t *perm, bool *equiv);
/* chmod on an object with an access ACL: USER_OBJ, MASK (GROUP_OBJ when
 * there is no mask) and OTHER take the new bits. In place. */
int vault_acl_chmod(void *acl, size_t len, mode_t perm);
/* Creation under a default ACL (POSIX.1e, as Linux does it): *acc becomes a
 * malloc'd copy of dflt with the base entries (and MASK, else GROUP_OBJ)
 * intersected with the create mode, *mode the result; the umask is not
 * used. *acc is NULL when the result equals its mode bits. */
int vault_acl_inherit(const void *dflt, size_t dlen, mode_t *mode, void **acc, size_t *acc_len);

/* ---- vault_policy.c: clearance, names above their folder, levels ---- */

/* Load / free v->policy from the root's metadata (vault_open, vault_close). */
int vault_policy_load(struct vault *v);
void vault_policy_free(struct vault *v);
/* -EACCES (and the denial recorded) unless c is cleared for level. */
int vault_policy_check(struct vault *v, const struct vault_caller *c, const char *path,
		       unsigned level);
/* Where the audit trail records a clearance denial. */
void vault_policy_denied(struct vault *v, const struct vault_caller *c, const char *path,
			 unsigned level);
/* vault_loc_get, then -EACCES unless c is cleared for the parent's path. */
int vault_loc_get_as(struct vault *v, const struct vault_caller *c, const char *path,
		     struct vault_loc *loc);
/* -EACCES unless c is cleared for d's path (listing it). */
int vault_policy_dir_check(struct vault *v, const struct vault_caller *c, const struct vault_dir *d);
/* After an open: -EACCES, and *h released and NULL, unless c is cleared
 * for the file's level. */
int vault_policy_open_check(struct vault *v, const struct vault_caller *c, struct vault_loc *loc,
			    struct vault_handle **h);
/* Store name of an entry at obj_level in d: under max(d->level, obj_level). */
int vault_policy_sname_make(const struct vault *v, struct vault_dir *d, const char *name,
			    size_t len, unsigned obj_level, struct vault_sname *sn);
/* Store name of an existing entry (tried under d's level, then every other
 * held level), else the name a new entry gets (d's level). */
int vault_policy_sname_find(const struct vault *v, const struct vault_dir *d, const char *name,
			    size_t len, struct vault_sname *sn);
/* Decrypt an encrypted name of d under whichever held level authenticates
 * it (d's first). *level, if not NULL, gets that level. */
ssize_t vault_policy_name_decrypt(const struct vault *v, const struct vault_dir *d, const char *enc,
				  size_t len, char out[FMT_NAME_MAX + 1], unsigned *level);
/* Before a rename (or link) of from to to (v->ns exclusive): with
 * replacing, a file replacing a file of a higher level is re-encrypted at
 * that level first; else to->sn becomes the name of from's name level in
 * to's folder. */
int vault_policy_rename_prepare(struct vault *v, struct vault_loc *from, struct vault_loc *to,
				bool replacing);
/* After a rename: give the entry at to the name of its name level. */
int vault_policy_rename_done(struct vault *v, struct vault_loc *to);
/* user.strongroom.level (set: reclassify) and the compiled policy. */
bool vault_policy_xattr_ours(const char *name);
int vault_policy_setxattr(struct vault *v, const struct vault_caller *c, const char *path,
			  const char *name, const void *val, size_t len, int flags);

#endif
