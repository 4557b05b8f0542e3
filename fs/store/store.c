/* store.c - the only syscalls on the ciphertext tree (see store.h).
 *
 * Invariants:
 *  1. Every open passes O_NOFOLLOW|O_CLOEXEC, every *at() call that could
 *     follow a symlink passes AT_SYMLINK_NOFOLLOW: a planted symlink in the
 *     store never redirects the driver.
 *  2. Every call first goes through store_fault_hit(), so tests can make
 *     the Nth call of a kind fail or kill the process at that point, exactly
 *     where a real disk would fail.
 *  3. Results are 0/-errno or a size; errno is never left for the caller.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strongroom/store.h"

/* ---- fault injection ---- */

#define STORE_FAULT_RULES 8
#define STORE_OP_ANY 4 /* rule kind matching every call */

struct store_fault_rule {
	unsigned long n; /* fire on the nth matching call */
	int kind;	 /* enum store_op or STORE_OP_ANY */
	int err;	 /* -errno, or 0 = SIGKILL */
};

static pthread_mutex_t store_fault_lock = PTHREAD_MUTEX_INITIALIZER;
static bool store_fault_loaded;
static struct store_fault_rule store_fault_rules[STORE_FAULT_RULES];
static int store_fault_nrules;
static unsigned long store_fault_count[STORE_OP_ANY + 1];

static void store_fault_load_env(void)
{
	const char *env = getenv("SR_FAULT");
	char buf[256], *save = NULL, *tok;

	if (!env || strlen(env) >= sizeof buf)
		return;
	memcpy(buf, env, strlen(env) + 1);
	for (tok = strtok_r(buf, ",", &save); tok && store_fault_nrules < STORE_FAULT_RULES;
	     tok = strtok_r(NULL, ",", &save)) {
		char kind[16], action[16];
		unsigned long n;
		struct store_fault_rule r;
		if (sscanf(tok, "%15[a-z]:%lu:%15[a-z]", kind, &n, action) != 3 || n == 0)
			continue;
		if (!strcmp(kind, "write"))
			r.kind = STORE_OP_WRITE;
		else if (!strcmp(kind, "fsync"))
			r.kind = STORE_OP_FSYNC;
		else if (!strcmp(kind, "rename"))
			r.kind = STORE_OP_RENAME;
		else if (!strcmp(kind, "any"))
			r.kind = STORE_OP_ANY;
		else
			continue;
		if (!strcmp(action, "eio"))
			r.err = -EIO;
		else if (!strcmp(action, "enospc"))
			r.err = -ENOSPC;
		else if (!strcmp(action, "abort"))
			r.err = 0;
		else
			continue;
		r.n = n;
		store_fault_rules[store_fault_nrules++] = r;
	}
}

void store_fault_set(enum store_op op, unsigned long n, int err)
{
	pthread_mutex_lock(&store_fault_lock);
	store_fault_loaded = true;
	store_fault_nrules = 0;
	memset(store_fault_count, 0, sizeof store_fault_count);
	if (n) {
		store_fault_rules[0] = (struct store_fault_rule){.kind = (int)op, .n = n, .err = err};
		store_fault_nrules = 1;
	}
	pthread_mutex_unlock(&store_fault_lock);
}

/* Count one call of kind op. @return 0, or the -errno the call must fail with. */
static int store_fault_hit(enum store_op op)
{
	int rc = 0;
	bool kill_self = false;

	pthread_mutex_lock(&store_fault_lock);
	if (!store_fault_loaded) {
		store_fault_loaded = true;
		store_fault_load_env();
	}
	if (store_fault_nrules == 0)
		goto out;
	store_fault_count[op]++;
	store_fault_count[STORE_OP_ANY]++;
	for (int i = 0; i < store_fault_nrules; i++) {
		const struct store_fault_rule *r = &store_fault_rules[i];
		if (r->kind != (int)op && r->kind != STORE_OP_ANY)
			continue;
		if (store_fault_count[r->kind] != r->n)
			continue;
		if (r->err == 0)
			kill_self = true;
		else
			rc = r->err;
		break;
	}
out:
	pthread_mutex_unlock(&store_fault_lock);
	if (kill_self)
		kill(getpid(), SIGKILL);
	return rc;
}

#define FAULT(op)                                  \
	do {                                       \
		int _frc = store_fault_hit(op);    \
		if (_frc)                          \
			return _frc;               \
	} while (0)

/* ---- wrappers ---- */

int store_openat(int dirfd, const char *name, int flags, mode_t mode)
{
	int fd;

	FAULT(STORE_OP_OTHER);
	do
		fd = openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC, mode);
	while (fd < 0 && errno == EINTR);
	return fd < 0 ? -errno : fd;
}

int store_close(int fd)
{
	if (fd < 0)
		return 0;
	/* Never retry close on EINTR: the fd is gone either way on Linux. */
	return close(fd) ? -errno : 0;
}

ssize_t store_pread(int fd, void *buf, size_t n, uint64_t off)
{
	size_t done = 0;

	FAULT(STORE_OP_OTHER);
	while (done < n) {
		ssize_t r = pread(fd, (char *)buf + done, n - done, (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

ssize_t store_pwrite(int fd, const void *buf, size_t n, uint64_t off)
{
	size_t done = 0;

	FAULT(STORE_OP_WRITE);
	while (done < n) {
		ssize_t r = pwrite(fd, (const char *)buf + done, n - done, (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

int store_fsync(int fd, bool datasync)
{
	FAULT(STORE_OP_FSYNC);
	return (datasync ? fdatasync(fd) : fsync(fd)) ? -errno : 0;
}

int store_ftruncate(int fd, uint64_t size)
{
	int r;

	FAULT(STORE_OP_WRITE);
	do
		r = ftruncate(fd, (off_t)size);
	while (r < 0 && errno == EINTR);
	return r ? -errno : 0;
}

int store_fstat(int fd, struct stat *st)
{
	FAULT(STORE_OP_OTHER);
	return fstat(fd, st) ? -errno : 0;
}

int store_fstatat(int dirfd, const char *name, struct stat *st)
{
	FAULT(STORE_OP_OTHER);
	return fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW) ? -errno : 0;
}

int store_mkdirat(int dirfd, const char *name, mode_t mode)
{
	FAULT(STORE_OP_OTHER);
	return mkdirat(dirfd, name, mode) ? -errno : 0;
}

int store_unlinkat(int dirfd, const char *name, int flags)
{
	FAULT(STORE_OP_OTHER);
	return unlinkat(dirfd, name, flags) ? -errno : 0;
}

int store_renameat(int olddirfd, const char *oldname, int newdirfd, const char *newname, unsigned flags)
{
	FAULT(STORE_OP_RENAME);
	if (flags == 0)
		return renameat(olddirfd, oldname, newdirfd, newname) ? -errno : 0;
	return renameat2(olddirfd, oldname, newdirfd, newname, flags) ? -errno : 0;
}

int store_linkat(int olddirfd, const char *oldname, int newdirfd, const char *newname)
{
	FAULT(STORE_OP_OTHER);
	return linkat(olddirfd, oldname, newdirfd, newname, 0) ? -errno : 0;
}

int store_tmpfile(int dirfd, mode_t mode)
{
	int fd;

	FAULT(STORE_OP_OTHER);
	do
		fd = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_NOFOLLOW | O_CLOEXEC, mode);
	while (fd < 0 && errno == EINTR);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL))
		return -EOPNOTSUPP;
	return fd < 0 ? -errno : fd;
}

int store_tmpfile_link(int fd, int dirfd, const char *name)
{
	char proc[64];

	FAULT(STORE_OP_OTHER);
	if (linkat(fd, "", dirfd, name, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno != ENOENT && errno != EPERM)
		return -errno;
	/* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc works for anyone. */
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
	return linkat(AT_FDCWD, proc, dirfd, name, AT_SYMLINK_FOLLOW) ? -errno : 0;
}

int store_futimens(int fd, const struct timespec ts[2])
{
	FAULT(STORE_OP_OTHER);
	return futimens(fd, ts) ? -errno : 0;
}

int store_utimensat(int dirfd, const char *name, const struct timespec ts[2])
{
	FAULT(STORE_OP_OTHER);
	return utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW) ? -errno : 0;
}

int store_syncfs(int fd)
{
	FAULT(STORE_OP_FSYNC);
	return syncfs(fd) ? -errno : 0;
}

ssize_t store_read_small(int dirfd, const char *name, void *buf, size_t cap)
{
	int fd = store_openat(dirfd, name, O_RDONLY, 0);
	ssize_t r;
	struct stat st;

	if (fd < 0)
		return fd;
	r = store_fstat(fd, &st);
	if (r == 0 && !S_ISREG(st.st_mode))
		r = -EINVAL;
	else if (r == 0 && (uint64_t)st.st_size > cap)
		r = -EFBIG;
	else if (r == 0)
		r = store_pread(fd, buf, cap, 0);
	store_close(fd);
	return r;
}

int store_write_atomic(int dirfd, const char *name, const void *data, size_t len)
{
	static unsigned long counter;
	char tmp[64];
	int fd, rc;

	/* The format reserves names starting with ".sr-tmp." for temp files. */
	snprintf(tmp, sizeof tmp, ".sr-tmp.%ld.%lu", (long)getpid(),
		 __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
	fd = store_openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0)
		return fd;
	rc = (int)store_pwrite(fd, data, len, 0);
	if (rc >= 0)
		rc = store_fsync(fd, false);
	store_close(fd);
	if (rc >= 0)
		rc = store_renameat(dirfd, tmp, dirfd, name, 0);
	if (rc < 0) {
		unlinkat(dirfd, tmp, 0);
		return rc;
	}
	return store_fsync(dirfd, false);
}
