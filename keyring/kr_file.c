/* kr_file.c - the keyring's few syscalls on its own store files.
 *
 * The keyring persists only its own small files at the top of a store
 * (strongroom.conf, keyslots/slot-N, keybag, watch.state), read whole and
 * replaced whole. Invariants:
 *  - reads never follow a symlink and never read more than the caller's
 *    bound (a bigger file is corrupt, not truncated);
 *  - a write is atomic: a crash leaves the old file or the new one, never a
 *    mix (temp file in the same directory, fsync, rename, fsync directory);
 *  - a failed write leaves no temp file behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kr_internal.h"

int kr_path_join(char *out, size_t cap, const char *dir, const char *name)
{
	int n = snprintf(out, cap, "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	return 0;
}

ssize_t kr_file_read(const char *path, unsigned char *buf, size_t cap)
{
	struct stat st;
	size_t got = 0;
	ssize_t rc;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ELOOP ? -EUCLEAN : -errno;
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t)st.st_size > cap) {
		rc = -EUCLEAN;
		goto out;
	}
	while (got < cap) {
		ssize_t n = read(fd, buf + got, cap - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	rc = (ssize_t)got;
out:
	close(fd);
	return rc;
}

static int dir_fsync(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;
	if (fd < 0)
		return -errno;
	if (fsync(fd) != 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* Write buf to a fresh temp file next to path and fsync it. @return an fd
 * (closed by the caller) or -errno; tmp receives its name. */
static int temp_write(const char *path, const unsigned char *buf, size_t len, char *tmp, size_t cap)
{
	size_t done = 0;
	int fd, rc;

	if (snprintf(tmp, cap, "%s.sr-tmp.XXXXXX", path) >= (int)cap)
		return -ENAMETOOLONG;
	/* The temp name starts with the target's name plus a suffix so it sits
	 * in the same directory; mkostemp creates it 0600. */
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (done < len) {
		ssize_t n = write(fd, buf + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto fail;
		}
		done += (size_t)n;
	}
	if (fsync(fd) != 0) {
		rc = -errno;
		goto fail;
	}
	return fd;
fail:
	close(fd);
	unlink(tmp);
	return rc;
}

int kr_file_write_new(const char *path, const unsigned char *buf, size_t len)
{
	char tmp[4096], dirbuf[4096];
	int fd, rc = 0;

	if (snprintf(dirbuf, sizeof dirbuf, "%s", path) >= (int)sizeof dirbuf)
		return -ENAMETOOLONG;
	fd = temp_write(path, buf, len, tmp, sizeof tmp);
	if (fd < 0)
		return fd;
	if (close(fd) != 0)
		rc = -errno;
	/* link() never replaces, on every POSIX filesystem (NFS included). */
	else if (link(tmp, path) != 0)
		rc = -errno;
	unlink(tmp);
	if (rc)
		return rc;
	return dir_fsync(dirname(dirbuf));
}

int kr_file_write_atomic(const char *path, const unsigned char *buf, size_t len)
{
	char tmp[4096], dirbuf[4096];
	int fd, rc = 0;

	if (snprintf(dirbuf, sizeof dirbuf, "%s", path) >= (int)sizeof dirbuf)
		return -ENAMETOOLONG;
	fd = temp_write(path, buf, len, tmp, sizeof tmp);
	if (fd < 0)
		return fd;
	if (close(fd) != 0)
		rc = -errno;
	else if (rename(tmp, path) != 0)
		rc = -errno;
	if (rc) {
		unlink(tmp);
		return rc;
	}
	return dir_fsync(dirname(dirbuf));
}
