/* vault.h - one request end to end: path -> store -> format -> result.
 *
 * The vault is a mounted-or-not view of a store through a keyring. Paths are
 * plaintext, absolute within the vault ("/", "/customers/acme.pdf"). Every
 * call takes the caller's identity (struct vault_caller) so that policy and
 * audit can see who asked; the FUSE frontend fills it from the request.
 * Nothing here includes FUSE headers: tests drive the vault directly.
 *
 * Errors: 0/-errno. -EBADMSG means an integrity failure (the frontend
 * replies EIO), -ENOKEY a level this mount does not hold (the frontend
 * replies EACCES), other values are passed through.
 *
 * Threading: all calls may run concurrently from many threads. Handles may be
 * shared between threads.
 */
#ifndef STRONGROOM_VAULT_H
#define STRONGROOM_VAULT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include "strongroom/keyring.h"

struct vault;
struct vault_handle; /* an open file */

struct vault_caller {
	uid_t uid;
	gid_t gid;
	pid_t pid;
	mode_t umask;
	int ngroups; /* supplementary groups, may be 0 */
	const gid_t *groups;
	int open_flags; /* open/create: the flags the application asked for,
			 * for the audit record (0: those passed) */
};

enum vault_flags {
	VAULT_READ_ONLY = 1 << 0,
};

/* The caller keeps files' modification times from now on (a kernel
 * writeback cache: it sets a file's mtime at each write(2) and sends it with
 * utimens when it changes). Data written to the store then does not move a
 * file's mtime: the store keeps the one last set through utimens, or the one
 * the file had when it was opened, so a remount shows the mtime staff saw.
 * Call before the first file operation. */
void vault_times_by_caller(struct vault *v);

/* Open a vault on store with an unlocked keyring (borrowed; must outlive the
 * vault). Creates the root directory metadata on first use of a writable
 * vault. @return 0 and *out owned (vault_close). */
int vault_open(const char *store, const struct kr_keyring *kr, unsigned flags, struct vault **out);
/* Seal and close every open file, free. Accepts NULL. */
int vault_close(struct vault *v);
/* Seal every dirty open file and fsync the store (unmount / SIGTERM). */
int vault_sync(struct vault *v);
/* Make a directory's entries durable: fsync its store directory. */
int vault_fsyncdir(struct vault *v, const struct vault_caller *c, const char *path);
/* True if a decision may depend on the caller's supplementary groups (a
 * role policy is loaded); otherwise callers may leave vault_caller.groups
 * empty and save reading them. A policy applied meanwhile sees no groups
 * for requests already under way: they get less access, never more. */
bool vault_wants_groups(const struct vault *v);

/* Attributes. st_ino is stable (derived from the file or directory ID). */
int vault_getattr(struct vault *v, const struct vault_caller *c, const char *path, struct stat *st);
int vault_fgetattr(struct vault *v, struct vault_handle *h, struct stat *st);
int vault_chmod(struct vault *v, const struct vault_caller *c, const char *path, mode_t mode);
int vault_chown(struct vault *v, const struct vault_caller *c, const char *path, uid_t uid, gid_t gid);
int vault_utimens(struct vault *v, const struct vault_caller *c, const char *path,
		  const struct timespec ts[2]);
int vault_truncate(struct vault *v, const struct vault_caller *c, const char *path, uint64_t size);
int vault_statfs(struct vault *v, struct statvfs *st);

/* Directories. */
struct vault_dirent {
	char *name; /* owned by the list */
	struct stat st; /* filled when the list was made with attributes */
};
struct vault_dirlist {
	struct vault_dirent *ents;
	size_t n;
};
/* List a directory (without "." and ".."). with_attrs fills st for each
 * entry (readdirplus). @return 0 and *out owned (vault_dirlist_free). */
int vault_readdir(struct vault *v, const struct vault_caller *c, const char *path, bool with_attrs,
		  struct vault_dirlist *out);
void vault_dirlist_free(struct vault_dirlist *l);
int vault_mkdir(struct vault *v, const struct vault_caller *c, const char *path, mode_t mode);
int vault_rmdir(struct vault *v, const struct vault_caller *c, const char *path);

/* Names. flags: RENAME_NOREPLACE, RENAME_EXCHANGE. */
int vault_unlink(struct vault *v, const struct vault_caller *c, const char *path);
int vault_rename(struct vault *v, const struct vault_caller *c, const char *from, const char *to,
		 unsigned flags);
int vault_link(struct vault *v, const struct vault_caller *c, const char *from, const char *to);
int vault_symlink(struct vault *v, const struct vault_caller *c, const char *target, const char *path);
/* Copies the target NUL-terminated (truncated to cap - 1 bytes); @return the
 * number of bytes before the NUL. */
ssize_t vault_readlink(struct vault *v, const struct vault_caller *c, const char *path, char *buf,
		       size_t cap);
int vault_mknod(struct vault *v, const struct vault_caller *c, const char *path, mode_t mode, dev_t rdev);

/* Files. flags are open(2) flags; create honours O_EXCL and the caller's
 * umask / the parent's default ACL (POSIX.1e). */
int vault_create(struct vault *v, const struct vault_caller *c, const char *path, mode_t mode, int flags,
		 struct vault_handle **out);
int vault_open_file(struct vault *v, const struct vault_caller *c, const char *path, int flags,
		    struct vault_handle **out);
ssize_t vault_read(struct vault_handle *h, void *buf, size_t n, uint64_t off);
ssize_t vault_write(struct vault_handle *h, const void *buf, size_t n, uint64_t off);
int vault_ftruncate(struct vault_handle *h, uint64_t size);
int vault_flush(struct vault_handle *h);
int vault_fsync(struct vault_handle *h, bool datasync);
int vault_fallocate(struct vault_handle *h, int mode, uint64_t off, uint64_t len);
off_t vault_lseek(struct vault_handle *h, off_t off, int whence);
/* Close the handle (the last handle of a file seals it, may compact). */
int vault_release(struct vault *v, struct vault_handle *h);

/* Files that lose their last name. A local filesystem lets whoever still
 * holds an inode (a path walk under way, an O_PATH descriptor) open it until
 * the kernel forgets it, after an unlink or a rename over its name; these
 * calls let a frontend do the same.
 * vault_file_hold opens the file at path for nobody: no policy decision and
 * no audit record (it gives no access by itself), only its store inode kept
 * while the handle lives. Its handle is for the calls below and
 * vault_fgetattr, never for reads or writes. @return 0 and *out owned (vault_release; the last
 * one seals and closes the file), -EISDIR for a directory. */
int vault_file_hold(struct vault *v, const char *path, struct vault_handle **out);
/* Open the file an existing handle h holds, as c (whether or not it still
 * has a name): c's freeze and clearance are checked as by vault_open_file
 * and the open is recorded with the path h was opened at. */
int vault_file_reopen(struct vault *v, const struct vault_caller *c, struct vault_handle *h,
		      int flags, struct vault_handle **out);
/* chmod, chown, truncate and utimens of the file h holds, as c (for a
 * file with no name left, as fchmod(2) on a local one); audited with the
 * path h was opened at. A hold's handle allows all four; a handle from an
 * open does not check its access mode here (the kernel checked the
 * caller's permission on the inode). */
int vault_fchmod(struct vault *v, const struct vault_caller *c, struct vault_handle *h, mode_t mode);
int vault_fchown(struct vault *v, const struct vault_caller *c, struct vault_handle *h, uid_t uid,
		 gid_t gid);
int vault_file_truncate(struct vault *v, const struct vault_caller *c, struct vault_handle *h,
		       uint64_t size);
int vault_futimens(struct vault *v, const struct vault_caller *c, struct vault_handle *h,
		   const struct timespec ts[2]);

/* Extended attributes (user.*, security.*, trusted.*, and the POSIX ACLs
 * system.posix_acl_access / system.posix_acl_default in the kernel's binary
 * xattr format). user.strongroom.level is virtual: the level name. */
ssize_t vault_getxattr(struct vault *v, const struct vault_caller *c, const char *path, const char *name,
		       void *val, size_t cap);
ssize_t vault_listxattr(struct vault *v, const struct vault_caller *c, const char *path, char *out,
			size_t cap);
int vault_setxattr(struct vault *v, const struct vault_caller *c, const char *path, const char *name,
		   const void *val, size_t len, int flags);
int vault_removexattr(struct vault *v, const struct vault_caller *c, const char *path, const char *name);

/* The audit trail (docs/audit.md): STORE/audit, written by this vault. */
struct vault_audit_opts {
	const char *store;	/* the store path: the trail is STORE/audit */
	const char *mountpoint; /* named in the mount record; may be NULL */
	bool fail_open;		/* an operation whose record cannot be written
				 * goes on (default: it fails with EIO) */
	bool syslog;		/* also forward each record to syslog (authpriv) */
};
/* Open the trail for appending and record the mount and the keyslot used.
 * It starts the trail's sync thread: call after any fork. Nothing is
 * recorded before; vault_close records the unmount and closes the trail.
 * @return 0, or -errno if the trail could not be opened or written to. */
int vault_audit_start(struct vault *v, const struct vault_audit_opts *o)
	__attribute__((warn_unused_result));

/* A refusal the kernel decided without asking the vault (mode bits and
 * ACLs: the frontend mounts with default_permissions) and reported through
 * its own audit subsystem: a `denial` record of c (process: its name as the
 * kernel gave it) on path for what ("open", "unlink", ...), err the errno.
 * Without a trail, 0. @return 0 or -EIO. */
int vault_audit_kernel_denial(struct vault *v, const struct vault_caller *c, const char *process,
			      const char *path, const char *what, int err);

/* Store names seen by readdir that did not decrypt (skipped, not fatal):
 * damage or foreign files in the store, for status and fsck reports. */
uint64_t vault_names_skipped(struct vault *v);

#endif
