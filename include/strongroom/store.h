/* store.h - the only syscalls on the ciphertext tree.
 *
 * Thin wrappers that (1) always pass O_NOFOLLOW|O_CLOEXEC, (2) retry short
 * reads/writes and EINTR, (3) return 0/-errno or a size, never -1 + errno,
 * and (4) go through a fault-injection point so tests can make the Nth call
 * of a kind fail (EIO, ENOSPC) or abort the process (crash tests).
 *
 * Fault injection is configured from the environment at first use:
 *   SR_FAULT="KIND:N:ACTION" with KIND one of write, fsync, rename, any and
 *   ACTION one of eio, enospc, abort (SIGKILL to self). Several rules may be
 *   separated by ','. Counting starts at 1.
 */
#ifndef STRONGROOM_STORE_H
#define STRONGROOM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

enum store_op { STORE_OP_WRITE, STORE_OP_FSYNC, STORE_OP_RENAME, STORE_OP_OTHER };

/* Programmatic fault rule (tests); replaces the env rules. n = 0 clears. */
void store_fault_set(enum store_op op, unsigned long n, int err /* -errno, or 0 = abort */);

int store_openat(int dirfd, const char *name, int flags, mode_t mode); /* fd or -errno */
int store_close(int fd);
ssize_t store_pread(int fd, void *buf, size_t n, uint64_t off);        /* full, or short at EOF */
ssize_t store_pwrite(int fd, const void *buf, size_t n, uint64_t off); /* full or -errno */
int store_fsync(int fd, bool datasync);
int store_ftruncate(int fd, uint64_t size);
int store_fstat(int fd, struct stat *st);
int store_fstatat(int dirfd, const char *name, struct stat *st); /* AT_SYMLINK_NOFOLLOW */
int store_mkdirat(int dirfd, const char *name, mode_t mode);
int store_unlinkat(int dirfd, const char *name, int flags);
int store_renameat(int olddirfd, const char *oldname, int newdirfd, const char *newname, unsigned flags);
int store_linkat(int olddirfd, const char *oldname, int newdirfd, const char *newname);
/* An unnamed file in dirfd (O_TMPFILE): written first and then given its
 * name by store_tmpfile_link, so a crash never leaves a half-created file.
 * @return an fd, or -EOPNOTSUPP where the filesystem has no unnamed files
 * (the caller then creates the name directly). */
int store_tmpfile(int dirfd, mode_t mode);
/* Name an unnamed file. @return 0, -EEXIST if name is taken. */
int store_tmpfile_link(int fd, int dirfd, const char *name);
int store_futimens(int fd, const struct timespec ts[2]);
int store_utimensat(int dirfd, const char *name, const struct timespec ts[2]);
int store_syncfs(int fd);

/* Read a whole small file (at most cap bytes) into buf. @return its size,
 * -EFBIG if larger than cap. */
ssize_t store_read_small(int dirfd, const char *name, void *buf, size_t cap);
/* Atomically replace name with data: write a FMT-style temp sibling, fsync,
 * rename over, fsync the directory. */
int store_write_atomic(int dirfd, const char *name, const void *data, size_t len);

#endif
