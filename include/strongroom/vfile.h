/* vfile.h - the file engine: one plaintext file <-> one ciphertext file.
 *
 * A vf_file is an open ciphertext file in the store (header, chunk frames,
 * seals; docs/format.md "Files"). It knows nothing of paths or FUSE: the
 * vault layer hands it a directory fd and a store name.
 *
 * Thread safety: any number of vf_file objects may be used from any threads.
 * One vf_file may be shared: reads run in parallel, writes, truncate, fsync
 * and attribute changes are serialised per file (an internal rwlock).
 *
 * Errors: 0/-errno; -EBADMSG integrity failure (the caller audits and
 * returns EIO), -ENOKEY level not held, -EUCLEAN corrupt structure.
 */
#ifndef STRONGROOM_VFILE_H
#define STRONGROOM_VFILE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "strongroom/keyring.h"

struct vf_file;

/* Attributes kept in the authenticated seal (times live in the store inode). */
struct vf_attr {
	uint64_t size;
	uint32_t mode; /* full st_mode: S_IFREG, S_IFLNK, S_IFIFO, S_IFSOCK, ... */
	uint32_t uid, gid;
	uint32_t rdev;
	unsigned level;
	uint8_t file_id[16];
	uint64_t alloc_bytes; /* plaintext bytes in live chunks (for st_blocks) */
};

/* Create a new ciphertext file name in dirfd (O_EXCL) at level with the
 * given mode/uid/gid. @return 0 and *out owned by the caller (vf_close). */
int vf_create(const struct kr_keyring *kr, int dirfd, const char *name, unsigned level,
	      uint32_t mode, uint32_t uid, uint32_t gid, struct vf_file **out);

/* Open an existing ciphertext file; writable opens O_RDWR. Runs crash
 * recovery if the file was not sealed (and reports it through
 * vf_recovered()). */
int vf_open(const struct kr_keyring *kr, int dirfd, const char *name, bool writable, struct vf_file **out);

/* Seal if anything changed, close, free. Accepts NULL. @return the first
 * error of the final seal (the file is freed regardless). */
int vf_close(struct vf_file *f);

ssize_t vf_read(struct vf_file *f, void *buf, size_t n, uint64_t off);
ssize_t vf_write(struct vf_file *f, const void *buf, size_t n, uint64_t off);
int vf_truncate(struct vf_file *f, uint64_t size);
/* Make every write so far durable: seal, fdatasync. */
int vf_fsync(struct vf_file *f, bool datasync);
/* Write pending chunks and a seal, without syncing: afterwards a close
 * appends nothing (so times set on the store file stay). */
int vf_seal(struct vf_file *f);
/* Allocate (mode 0 extends size, FALLOC_FL_KEEP_SIZE does not). */
int vf_fallocate(struct vf_file *f, int mode, uint64_t off, uint64_t len);
/* SEEK_DATA / SEEK_HOLE over the live chunk map. */
off_t vf_lseek(struct vf_file *f, off_t off, int whence);

int vf_getattr(struct vf_file *f, struct vf_attr *a);
/* Change mode (permission bits only), uid, gid; (uint32_t)-1 leaves one.
 * A change to the values the file already has writes nothing. */
int vf_chmod_chown(struct vf_file *f, uint32_t mode, uint32_t uid, uint32_t gid);
/* Device number of a device node (sealed at the next seal or close). */
int vf_set_rdev(struct vf_file *f, uint32_t rdev);
/* Encode the chunks of each flush on pool's threads (vf_pool.h) instead of
 * the flushing thread alone; the store bytes are the same either way. pool
 * is borrowed and must outlive f (or be unset with NULL first). */
struct vf_pool;
void vf_set_pool(struct vf_file *f, struct vf_pool *pool);
/* The store fd (for fstat, futimens, flock by the caller). Borrowed. */
int vf_fd(struct vf_file *f);

ssize_t vf_getxattr(struct vf_file *f, const char *name, void *val, size_t cap);
ssize_t vf_listxattr(struct vf_file *f, char *out, size_t cap);
int vf_setxattr(struct vf_file *f, const char *name, const void *val, size_t len, int flags);
int vf_removexattr(struct vf_file *f, const char *name);

/* Fast attribute read of a closed file: the header and last seal only, no
 * content decryption; falls back to vf_open's recovery if unsealed. */
int vf_stat_at(const struct kr_keyring *kr, int dirfd, const char *name, struct vf_attr *a);

/* True once if opening replayed unsealed frames (crash recovery). */
bool vf_recovered(const struct vf_file *f);

/* Compaction: true if dead frames take more room than live ones. The vault
 * calls vf_compact under its namespace lock with no other handle open; it
 * writes a sibling FMT_TMP_PREFIX file, fsyncs it and renames it over name. */
bool vf_needs_compaction(const struct vf_file *f);
int vf_compact(struct vf_file *f, int dirfd, const char *name);

/* Re-encrypt into a new file at another level (reclassification): writes
 * dirfd/tmpname; the caller renames it over. */
int vf_copy_to_level(struct vf_file *f, int dirfd, const char *tmpname, unsigned level);
/* The same copy at the file's own level under another keyring kr (a level
 * key rotation, or fsck's rebuild with kr = the file's own): same file_id,
 * size, mode, owner, rdev and xattrs. holes_for_bad leaves a chunk that
 * cannot be read or does not authenticate as a hole instead of failing. */
int vf_copy_to_keyring(struct vf_file *f, const struct kr_keyring *kr, int dirfd,
		       const char *tmpname, bool holes_for_bad);

/* Free the idle zstd contexts that reads and flushes keep for reuse (one
 * process-wide pool). Safe at any time: a context in use goes back to the
 * pool when its read or flush ends. vault_close, vault_fsck_close and
 * vault_rotate_close call it, so a process that closed them holds none. */
void vf_zctx_trim(void);

#endif
