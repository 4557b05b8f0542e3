/* fe_mounts.c - where vaults are mounted, and which driver serves each.
 *
 * Two sources, both read without talking to a driver (so a hung or killed
 * driver cannot hang `strongroom status` or `unmount`):
 * - the kernel's mount table, /proc/self/mountinfo (octal escapes decoded);
 * - runtime files, one per driver, "<dir>/<pid>.run" with key=value lines
 *   (pid, store, mountpoint, read_only, log), values escaped so that a
 *   newline in a path cannot forge a line.
 *
 * Invariants: a runtime file is written whole or not at all (temp + rename);
 * a runtime file whose pid is gone is stale: never reported, and removed
 * by whoever comes across it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strongroom/frontend.h"

/* Decode mountinfo's \ooo escapes in place. */
static void fe_unescape_octal(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)(((r[1] - '0') << 6) | ((r[2] - '0') << 3) | (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

static void fe_copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src);
}

/* One mountinfo line: "id parent maj:min root mountpoint opts [optional...]
 * - fstype source superopts". @return 0, or -EINVAL if malformed. */
static int fe_mountinfo_parse(char *line, struct fe_mount *m)
{
	char *save = NULL, *tok, *mp = NULL, *opts = NULL, *fstype = NULL, *source = NULL;
	int field = 0;
	bool after_sep = false;

	for (tok = strtok_r(line, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save), field++) {
		if (!after_sep) {
			if (field == 4)
				mp = tok;
			else if (field == 5)
				opts = tok;
			else if (field >= 6 && strcmp(tok, "-") == 0)
				after_sep = true;
		} else if (!fstype) {
			fstype = tok;
		} else if (!source) {
			source = tok;
			break;
		}
	}
	if (!mp || !opts || !fstype || !source)
		return -EINVAL;
	fe_unescape_octal(mp);
	fe_unescape_octal(source);
	fe_copy(m->mountpoint, sizeof(m->mountpoint), mp);
	fe_copy(m->source, sizeof(m->source), source);
	fe_copy(m->fstype, sizeof(m->fstype), fstype);
	m->read_only = strncmp(opts, "ro", 2) == 0 && (opts[2] == ',' || opts[2] == '\0');
	return 0;
}

/* Visit every mount (any type). */
static int fe_mountinfo_each(int (*fn)(const struct fe_mount *m, void *arg), void *arg)
{
	FILE *fp = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	struct fe_mount *m;
	int rc = 0;

	if (!fp)
		return -errno;
	m = malloc(sizeof(*m));
	if (!m) {
		rc = -ENOMEM;
		goto out;
	}
	while (getline(&line, &cap, fp) > 0) {
		if (fe_mountinfo_parse(line, m) != 0)
			continue;
		rc = fn(m, arg);
		if (rc)
			break;
	}
out:
	free(m);
	free(line);
	fclose(fp);
	return rc;
}

struct fe_find_ctx {
	const char *path;
	struct fe_mount *out;
	bool found;
};

static int fe_find_cb(const struct fe_mount *m, void *arg)
{
	struct fe_find_ctx *ctx = arg;

	/* Keep going: the last mount on a path is the visible one. */
	if (strcmp(m->mountpoint, ctx->path) == 0) {
		*ctx->out = *m;
		ctx->found = true;
	}
	return 0;
}

int fe_mount_find(const char *path, struct fe_mount *out)
{
	struct fe_find_ctx ctx = {.path = path, .out = out, .found = false};
	int rc = fe_mountinfo_each(fe_find_cb, &ctx);

	if (rc)
		return rc;
	return ctx.found ? 0 : -ENOENT;
}

struct fe_each_ctx {
	int (*fn)(const struct fe_mount *m, void *arg);
	void *arg;
};

static int fe_each_cb(const struct fe_mount *m, void *arg)
{
	struct fe_each_ctx *ctx = arg;

	if (strcmp(m->fstype, FE_FSTYPE) != 0)
		return 0;
	return ctx->fn(m, ctx->arg);
}

int fe_mount_each(int (*fn)(const struct fe_mount *m, void *arg), void *arg)
{
	struct fe_each_ctx ctx = {.fn = fn, .arg = arg};

	return fe_mountinfo_each(fe_each_cb, &ctx);
}

/* ---- runtime files ---- */

const char *fe_runtime_dir(void)
{
	static char dir[PATH_MAX];
	const char *xdg;

	if (geteuid() == 0)
		return FE_RUNTIME_DIR;
	xdg = getenv("XDG_RUNTIME_DIR");
	if (xdg && *xdg == '/')
		snprintf(dir, sizeof(dir), "%s/strongroom", xdg);
	else
		snprintf(dir, sizeof(dir), "/tmp/strongroom-%u", (unsigned)geteuid());
	return dir;
}

static void fe_value_write(FILE *fp, const char *key, const char *val)
{
	fprintf(fp, "%s=", key);
	for (const char *p = val; *p; p++) {
		if (*p == '\\')
			fputs("\\\\", fp);
		else if (*p == '\n')
			fputs("\\n", fp);
		else
			fputc(*p, fp);
	}
	fputc('\n', fp);
}

static void fe_value_read(char *dst, size_t cap, const char *src)
{
	size_t n = 0;

	for (const char *p = src; *p && *p != '\n' && n + 1 < cap; p++) {
		if (p[0] == '\\' && p[1] == 'n') {
			dst[n++] = '\n';
			p++;
		} else if (p[0] == '\\' && p[1] == '\\') {
			dst[n++] = '\\';
			p++;
		} else {
			dst[n++] = *p;
		}
	}
	dst[n] = '\0';
}

int fe_runtime_write(const struct fe_runtime *rt, char *out_path)
{
	const char *dir = fe_runtime_dir();
	char tmp[PATH_MAX];
	FILE *fp = NULL;
	int fd = -1, err = 0;

	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return -errno;
	if (snprintf(out_path, PATH_MAX, "%s/%ld.run", dir, (long)rt->pid) >= PATH_MAX ||
	    snprintf(tmp, sizeof(tmp), "%s/.%ld.run.tmp", dir, (long)rt->pid) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return -errno;
	fp = fdopen(fd, "w");
	if (!fp) {
		err = -errno;
		close(fd);
		goto out;
	}
	fprintf(fp, "pid=%ld\n", (long)rt->pid);
	fe_value_write(fp, "store", rt->store);
	fe_value_write(fp, "mountpoint", rt->mountpoint);
	fprintf(fp, "read_only=%d\n", rt->read_only ? 1 : 0);
	fe_value_write(fp, "log", rt->log);
	if (fflush(fp) != 0)
		err = -errno;
	if (fclose(fp) != 0 && !err)
		err = -errno;
	if (!err && rename(tmp, out_path) != 0)
		err = -errno;
out:
	if (err)
		unlink(tmp);
	return err;
}

void fe_runtime_remove(const char *path)
{
	if (path && *path)
		unlink(path);
}

/* One task's state letter from /proc/<pid>/task/<tid>/stat, or 0. */
static char fe_task_state(int taskdir, const char *tid)
{
	char path[NAME_MAX + 8], buf[512];
	const char *paren;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/stat", tid);
	fd = openat(taskdir, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	paren = strrchr(buf, ')');
	return paren && paren[1] == ' ' ? paren[2] : 0;
}

bool fe_pid_running(pid_t pid)
{
	char path[64];
	struct dirent *e;
	bool running = false;
	DIR *d;

	if (pid <= 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%ld/task", (long)pid);
	d = opendir(path);
	if (!d)
		return false;
	while (!running && (e = readdir(d))) {
		char st;

		if (e->d_name[0] == '.')
			continue;
		st = fe_task_state(dirfd(d), e->d_name);
		running = st && st != 'Z' && st != 'X';
	}
	closedir(d);
	return running;
}

static int fe_runtime_read(int dirfd, const char *name, struct fe_runtime *rt)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	FILE *fp;
	char *line = NULL;
	size_t cap = 0;

	if (fd < 0)
		return -errno;
	fp = fdopen(fd, "r");
	if (!fp) {
		close(fd);
		return -ENOMEM;
	}
	memset(rt, 0, sizeof(*rt));
	while (getline(&line, &cap, fp) > 0) {
		if (strncmp(line, "pid=", 4) == 0)
			rt->pid = (pid_t)strtol(line + 4, NULL, 10);
		else if (strncmp(line, "store=", 6) == 0)
			fe_value_read(rt->store, sizeof(rt->store), line + 6);
		else if (strncmp(line, "mountpoint=", 11) == 0)
			fe_value_read(rt->mountpoint, sizeof(rt->mountpoint), line + 11);
		else if (strncmp(line, "read_only=", 10) == 0)
			rt->read_only = line[10] == '1';
		else if (strncmp(line, "log=", 4) == 0)
			fe_value_read(rt->log, sizeof(rt->log), line + 4);
	}
	free(line);
	fclose(fp);
	return rt->pid > 0 ? 0 : -EINVAL;
}

int fe_runtime_find(const char *mountpoint, struct fe_runtime *out)
{
	DIR *d = opendir(fe_runtime_dir());
	struct dirent *e;
	int rc = -ENOENT;

	if (!d)
		return -ENOENT;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);

		if (e->d_name[0] == '.' || len < 5 || strcmp(e->d_name + len - 4, ".run") != 0)
			continue;
		if (fe_runtime_read(dirfd(d), e->d_name, out) != 0)
			continue;
		if (!fe_pid_running(out->pid)) {
			/* Left by a killed driver: tidy up if we may. */
			unlinkat(dirfd(d), e->d_name, 0);
			continue;
		}
		if (strcmp(out->mountpoint, mountpoint) == 0) {
			rc = 0;
			break;
		}
	}
	closedir(d);
	return rc;
}
