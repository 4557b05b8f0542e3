/* cmd_transfer.c - `strongroom import` and `strongroom export`: copy a folder
 * tree into or out of a mounted vault, for migrating an existing share.
 *
 *   strongroom import SRC_DIR MOUNTPOINT/DEST [--level L] [--progress|--no-progress]
 *   strongroom export MOUNTPOINT/SRC DEST_DIR [--progress|--no-progress]
 *
 * Both go through the mounted vault like any application, so every file
 * that lands in the vault is encrypted under its folder's level and every
 * read is in the audit trail; neither touches the store or a key.
 *
 * Invariants:
 *  - One side is inside a mounted Strongroom vault (fstype fuse.strongroom),
 *    checked before anything is written; the other side is a plain folder.
 *  - Nothing that exists at the destination is overwritten: folders merge,
 *    an existing file, link or symlink stops the copy with one error line.
 *  - Each copied entry gets its owner (when root), mode, POSIX ACLs (access
 *    and default), extended attributes and times from the source, in that
 *    order (chown clears set-id bits; chmod before the ACL so the ACL's mask
 *    wins; times last, and a folder's after its contents). The vault's own
 *    attributes (user.strongroom.*) are never copied: the level of an
 *    imported file comes from its folder or from --level, and an exported
 *    copy carries no claim about a level.
 *  - Hard links within the source stay hard links; symlinks are copied as
 *    symlinks, never followed; other special files are skipped and counted.
 *  - With --level, the destination folder and every folder created under it
 *    get that level before anything is created inside them, so each file is
 *    encrypted under it from its first byte. A vault that cannot set the
 *    level stops the import before any file is written.
 *  - Every failure prints one line naming the file and the cause and exits
 *    non-zero (1; 2 usage; 5 not in a mounted vault; 7 I/O or disk full).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define XFER_LEVEL_XATTR "user.strongroom.level"
#define XFER_OWN_PREFIX "user.strongroom."
#define XFER_BUF_BYTES (1024 * 1024)
#define XFER_XLIST_BYTES (64 * 1024)
#define XFER_XVALUE_BYTES (64 * 1024)

struct xfer_link {
	dev_t dev;
	ino_t ino;
	char *dst; /* owned: destination path of the first copy */
};

struct xfer {
	const char *verb; /* "import" or "export" */
	const char *level; /* or NULL */
	int progress;	  /* draw a progress line on stderr */
	int is_root;
	char *buf; /* owned, XFER_BUF_BYTES */
	struct xfer_link *links;
	size_t nlinks, caplinks;
	/* totals, and the pre-scan's for the progress line */
	uint64_t files, dirs, symlinks, hardlinks, skipped, bytes;
	uint64_t total_files, total_bytes;
	struct timespec last_draw;
};

static int xfer_exit_for(int err)
{
	switch (err) {
	case 0:
		return EXIT_OK;
	case -EIO:
	case -ENOSPC:
	case -EDQUOT:
	case -EROFS:
	case -EFBIG:
		return EXIT_IO;
	default:
		return EXIT_FAIL;
	}
}

/* Set while a progress line without its newline is on stderr. */
static int xfer_line_open;

/* Clear a progress line so an error line stands on its own. */
static void xfer_line_clear(void)
{
	if (xfer_line_open)
		fputs("\r\033[K", stderr);
	xfer_line_open = 0;
}

/* One error line for path; returns the -errno it was given. */
static int xfer_fail(const char *path, int err)
{
	xfer_line_clear();
	cli_err(path, "%s", strerror(-err));
	return err;
}

/* True if path (or, when it does not exist yet, its nearest existing
 * ancestor) lies inside a mounted Strongroom vault: the mount whose device
 * is the path's device has filesystem type fuse.strongroom. */
static int xfer_in_vault(const char *path)
{
	char *p = strdup(path);
	struct stat st;
	char line[8192];
	FILE *f = NULL;
	int found = 0;

	if (!p || !*p)
		goto out;
	while (lstat(p, &st) != 0) {
		char *slash = strrchr(p, '/');
		if (!slash) {
			p[0] = '.';
			p[1] = '\0';
			if (lstat(p, &st) != 0)
				goto out;
			break;
		}
		if (slash == p)
			slash[1] = '\0';
		else
			*slash = '\0';
	}
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		goto out;
	while (fgets(line, sizeof line, f)) {
		unsigned maj, min;
		char *sep, *fstype;

		if (sscanf(line, "%*s %*s %u:%u", &maj, &min) != 2)
			continue;
		if (makedev(maj, min) != st.st_dev)
			continue;
		sep = strstr(line, " - ");
		if (!sep)
			continue;
		fstype = sep + 3;
		if (strncmp(fstype, "fuse.strongroom ", 16) == 0) {
			found = 1;
			break;
		}
	}
out:
	if (f)
		fclose(f);
	free(p);
	return found;
}

static char *xfer_join(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	char *s = malloc(a + b + 2);

	if (!s)
		return NULL;
	memcpy(s, dir, a);
	s[a] = '/';
	memcpy(s + a + 1, name, b + 1);
	return s;
}

static void xfer_progress_draw(struct xfer *x, int final)
{
	struct timespec now;

	if (!x->progress)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!final && now.tv_sec == x->last_draw.tv_sec &&
	    now.tv_nsec - x->last_draw.tv_nsec < 200000000L)
		return;
	x->last_draw = now;
	fprintf(stderr, "\r%s: %llu/%llu files, %.1f/%.1f MiB", x->verb,
		(unsigned long long)x->files + x->hardlinks,
		(unsigned long long)x->total_files, x->bytes / 1048576.0,
		x->total_bytes / 1048576.0);
	if (x->total_bytes)
		fprintf(stderr, " (%3.0f%%)", 100.0 * x->bytes / x->total_bytes);
	fputs(final ? "\n" : "\033[K", stderr);
	fflush(stderr);
	xfer_line_open = !final;
}

/* Count files and bytes under path, for the progress line only; errors are
 * found and reported by the copy itself. */
static void xfer_prescan(struct xfer *x, int dirfd)
{
	DIR *d = fdopendir(dirfd);
	struct dirent *e;

	if (!d) {
		close(dirfd);
		return;
	}
	while ((e = readdir(d))) {
		struct stat st;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (S_ISREG(st.st_mode)) {
			x->total_files++;
			x->total_bytes += (uint64_t)st.st_size;
		} else if (S_ISDIR(st.st_mode)) {
			int fd = openat(dirfd, e->d_name,
					O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd >= 0)
				xfer_prescan(x, fd);
		}
	}
	closedir(d);
}

/* Copy the extended attributes and ACLs of src to dst (paths; symlinks are
 * never passed here). The vault's own attributes and security.* labels are
 * left out; an ACL the source does not have is removed from the
 * destination, where the folder's default ACL may have put one. */
static int xfer_xattrs_copy(const char *src, const char *dst, int is_dir)
{
	static const char *acl_names[] = {"system.posix_acl_access", "system.posix_acl_default"};
	char *list = NULL, *val = NULL;
	ssize_t n;
	int err = 0;

	list = malloc(XFER_XLIST_BYTES);
	val = malloc(XFER_XVALUE_BYTES);
	if (!list || !val) {
		err = -ENOMEM;
		goto out;
	}
	n = llistxattr(src, list, XFER_XLIST_BYTES);
	if (n < 0) {
		if (errno == ENOTSUP) {
			n = 0;
		} else {
			err = xfer_fail(src, -errno);
			goto out;
		}
	}
	for (size_t i = 0; i < (size_t)(is_dir ? 2 : 1); i++) {
		int present = 0;
		for (char *k = list; k < list + n; k += strlen(k) + 1)
			if (strcmp(k, acl_names[i]) == 0)
				present = 1;
		if (!present && lremovexattr(dst, acl_names[i]) != 0 && errno != ENODATA &&
		    errno != ENOTSUP) {
			err = xfer_fail(dst, -errno);
			goto out;
		}
	}
	for (char *k = list; k < list + n; k += strlen(k) + 1) {
		ssize_t vn;

		if (strncmp(k, XFER_OWN_PREFIX, strlen(XFER_OWN_PREFIX)) == 0 ||
		    strncmp(k, "security.", 9) == 0)
			continue;
		if (!is_dir && strcmp(k, "system.posix_acl_default") == 0)
			continue;
		vn = lgetxattr(src, k, val, XFER_XVALUE_BYTES);
		if (vn < 0) {
			if (errno == ENODATA)
				continue;
			err = -errno;
			xfer_line_clear();
			cli_err(src, "attribute %s: %s", k, strerror(-err));
			goto out;
		}
		if (lsetxattr(dst, k, val, (size_t)vn, 0) != 0) {
			err = -errno;
			xfer_line_clear();
			cli_err(dst, "attribute %s: %s", k, strerror(-err));
			goto out;
		}
	}
out:
	free(list);
	free(val);
	return err;
}

/* Owner, mode, attributes and ACLs, then times, from st (the source's stat)
 * onto dst. */
static int xfer_meta_apply(struct xfer *x, const char *src, const char *dst,
			   const struct stat *st)
{
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	int err;

	if (S_ISLNK(st->st_mode)) {
		if (x->is_root && lchown(dst, st->st_uid, st->st_gid) != 0)
			return xfer_fail(dst, -errno);
		if (utimensat(AT_FDCWD, dst, ts, AT_SYMLINK_NOFOLLOW) != 0 && errno != ENOTSUP)
			return xfer_fail(dst, -errno);
		return 0;
	}
	if (x->is_root && chown(dst, st->st_uid, st->st_gid) != 0)
		return xfer_fail(dst, -errno);
	if (chmod(dst, st->st_mode & 07777) != 0)
		return xfer_fail(dst, -errno);
	err = xfer_xattrs_copy(src, dst, S_ISDIR(st->st_mode));
	if (err)
		return err;
	if (utimensat(AT_FDCWD, dst, ts, AT_SYMLINK_NOFOLLOW) != 0)
		return xfer_fail(dst, -errno);
	return 0;
}

static int xfer_level_set(struct xfer *x, const char *dst)
{
	if (!x->level)
		return 0;
	if (setxattr(dst, XFER_LEVEL_XATTR, x->level, strlen(x->level), 0) != 0) {
		int e = errno;
		xfer_line_clear();
		if (e == ENOTSUP)
			cli_err(dst, "cannot set level %s: this vault does not set levels by %s",
				x->level, XFER_LEVEL_XATTR);
		else
			cli_err(dst, "cannot set level %s: %s", x->level, strerror(e));
		return -e;
	}
	return 0;
}

static int xfer_file_copy(struct xfer *x, const char *src, const char *dst,
			  const struct stat *st)
{
	int in = -1, out = -1, err = 0;

	in = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0) {
		err = xfer_fail(src, -errno);
		goto out;
	}
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0) {
		err = xfer_fail(dst, -errno);
		goto out;
	}
	for (;;) {
		ssize_t n = read(in, x->buf, XFER_BUF_BYTES);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = xfer_fail(src, -errno);
			goto out;
		}
		if (n == 0)
			break;
		for (ssize_t done = 0; done < n;) {
			ssize_t w = write(out, x->buf + done, (size_t)(n - done));
			if (w < 0) {
				if (errno == EINTR)
					continue;
				err = xfer_fail(dst, -errno);
				goto out;
			}
			done += w;
		}
		x->bytes += (uint64_t)n;
		xfer_progress_draw(x, 0);
	}
	/* A close that fails (the vault seals the file there) is a failed copy. */
	if (close(out) != 0) {
		out = -1;
		err = xfer_fail(dst, -errno);
		goto out;
	}
	out = -1;
	err = xfer_meta_apply(x, src, dst, st);
	if (err == 0)
		x->files++;
out:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return err;
}

/* A hard link to a source inode already copied: link to its copy. Returns 1
 * if linked, 0 if this is the first time (recorded), -errno on failure. */
static int xfer_hardlink(struct xfer *x, const char *dst, const struct stat *st)
{
	for (size_t i = 0; i < x->nlinks; i++) {
		if (x->links[i].dev != st->st_dev || x->links[i].ino != st->st_ino)
			continue;
		if (link(x->links[i].dst, dst) != 0)
			return xfer_fail(dst, -errno);
		x->hardlinks++;
		return 1;
	}
	if (x->nlinks == x->caplinks) {
		size_t cap = x->caplinks ? x->caplinks * 2 : 64;
		struct xfer_link *l = realloc(x->links, cap * sizeof *l);
		if (!l)
			return xfer_fail(dst, -ENOMEM);
		x->links = l;
		x->caplinks = cap;
	}
	x->links[x->nlinks].dev = st->st_dev;
	x->links[x->nlinks].ino = st->st_ino;
	x->links[x->nlinks].dst = strdup(dst);
	if (!x->links[x->nlinks].dst)
		return xfer_fail(dst, -ENOMEM);
	x->nlinks++;
	return 0;
}

static int xfer_tree_copy(struct xfer *x, const char *src, const char *dst);

static int xfer_entry_copy(struct xfer *x, const char *src, const char *dst)
{
	struct stat st;
	char *target = NULL;
	int err = 0;

	if (lstat(src, &st) != 0)
		return xfer_fail(src, -errno);
	if (S_ISDIR(st.st_mode)) {
		if (mkdir(dst, 0700) != 0) {
			struct stat dt;
			if (errno != EEXIST || lstat(dst, &dt) != 0 || !S_ISDIR(dt.st_mode))
				return xfer_fail(dst, -EEXIST);
		}
		err = xfer_level_set(x, dst);
		if (err == 0)
			err = xfer_tree_copy(x, src, dst);
		if (err == 0)
			err = xfer_meta_apply(x, src, dst, &st);
		if (err == 0)
			x->dirs++;
		return err;
	}
	if (S_ISLNK(st.st_mode)) {
		ssize_t n;
		target = malloc((size_t)st.st_size + 1);
		if (!target)
			return xfer_fail(src, -ENOMEM);
		n = readlink(src, target, (size_t)st.st_size + 1);
		if (n < 0 || n > st.st_size) {
			err = xfer_fail(src, n < 0 ? -errno : -EAGAIN);
			goto out;
		}
		target[n] = '\0';
		if (symlink(target, dst) != 0) {
			err = xfer_fail(dst, -errno);
			goto out;
		}
		err = xfer_meta_apply(x, src, dst, &st);
		if (err == 0)
			x->symlinks++;
		goto out;
	}
	if (S_ISREG(st.st_mode)) {
		if (st.st_nlink > 1) {
			err = xfer_hardlink(x, dst, &st);
			if (err != 0)
				return err < 0 ? err : 0;
		}
		return xfer_file_copy(x, src, dst, &st);
	}
	x->skipped++;
out:
	free(target);
	return err;
}

static int xfer_tree_copy(struct xfer *x, const char *src, const char *dst)
{
	DIR *d = opendir(src);
	struct dirent *e;
	int err = 0;

	if (!d)
		return xfer_fail(src, -errno);
	for (;;) {
		char *s, *t;

		errno = 0;
		e = readdir(d);
		if (!e) {
			if (errno)
				err = xfer_fail(src, -errno);
			break;
		}
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		s = xfer_join(src, e->d_name);
		t = xfer_join(dst, e->d_name);
		if (!s || !t)
			err = xfer_fail(src, -ENOMEM);
		else
			err = xfer_entry_copy(x, s, t);
		free(s);
		free(t);
		if (err)
			break;
	}
	closedir(d);
	return err;
}

static void xfer_usage(FILE *f, const char *verb)
{
	if (strcmp(verb, "import") == 0)
		fputs("Usage: strongroom import SRC_DIR MOUNTPOINT/DEST [--level L]\n"
		      "                         [--progress | --no-progress]\n"
		      "\n"
		      "Copy the contents of SRC_DIR into DEST inside a mounted vault (DEST is\n"
		      "created if missing; existing folders merge, an existing file stops the\n"
		      "copy). Keeps times, modes, owners (as root), POSIX ACLs, extended\n"
		      "attributes, symlinks and hard links. --level L sets level L on DEST and\n"
		      "on every folder created, before anything is written into it.\n",
		      f);
	else
		fputs("Usage: strongroom export MOUNTPOINT/SRC DEST_DIR [--progress | --no-progress]\n"
		      "\n"
		      "Copy the contents of SRC, a folder inside a mounted vault, into DEST_DIR\n"
		      "(created if missing; existing folders merge, an existing file stops the\n"
		      "copy). Keeps times, modes, owners (as root), POSIX ACLs, extended\n"
		      "attributes (not the vault's level), symlinks and hard links. The copy is\n"
		      "plaintext: every file read is in the audit trail.\n",
		      f);
	fputs("\n"
	      "A progress line is drawn on stderr when it is a terminal (--progress forces\n"
	      "it, --no-progress turns it off). At the end one line to stdout counts what\n"
	      "was copied.\n"
	      "\n"
	      "Exit codes: 0; 1 a file could not be read, created or given its attributes\n"
	      "(e.g. EACCES, EEXIST), or the level could not be set; 2 bad arguments;\n"
	      "5 the vault side is not inside a mounted vault; 7 I/O error or disk full.\n",
	      f);
}

static int xfer_run(const char *verb, int argc, char **argv)
{
	const char *pos[2] = {NULL, NULL};
	int npos = 0, progress = isatty(STDERR_FILENO);
	struct xfer x = {0};
	struct stat st;
	int import = strcmp(verb, "import") == 0;
	int err = 0, rc = EXIT_OK;

	x.verb = verb;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			xfer_usage(stdout, verb);
			return EXIT_OK;
		} else if (import && strcmp(a, "--level") == 0) {
			if (++i >= argc) {
				cli_err("--level", "needs a level name");
				return EXIT_USAGE;
			}
			x.level = argv[i];
		} else if (import && strncmp(a, "--level=", 8) == 0) {
			x.level = a + 8;
		} else if (strcmp(a, "--progress") == 0) {
			progress = 1;
		} else if (strcmp(a, "--no-progress") == 0) {
			progress = 0;
		} else if (a[0] == '-' && a[1] != '\0') {
			cli_err(a, "unknown option (strongroom %s --help)", verb);
			return EXIT_USAGE;
		} else if (npos < 2) {
			pos[npos++] = a;
		} else {
			cli_err(a, "unexpected argument (strongroom %s --help)", verb);
			return EXIT_USAGE;
		}
	}
	if (npos != 2) {
		cli_err("usage", import ? "strongroom import SRC_DIR MOUNTPOINT/DEST [--level L]"
					: "strongroom export MOUNTPOINT/SRC DEST_DIR");
		return EXIT_USAGE;
	}
	if (x.level && x.level[0] == '\0') {
		cli_err("--level", "empty level name");
		return EXIT_USAGE;
	}
	if (stat(pos[0], &st) != 0) {
		cli_err(pos[0], "%s", strerror(errno));
		return EXIT_FAIL;
	}
	if (!S_ISDIR(st.st_mode)) {
		cli_err(pos[0], "not a folder");
		return EXIT_FAIL;
	}
	if (!xfer_in_vault(import ? pos[1] : pos[0])) {
		cli_err(import ? pos[1] : pos[0], "not inside a mounted Strongroom vault");
		return EXIT_MOUNTPOINT;
	}
	if (xfer_in_vault(import ? pos[0] : pos[1]) && !import) {
		/* vault to vault is an import with --level, or a cp -a */
		cli_err(pos[1], "destination is inside a vault; use strongroom import");
		return EXIT_USAGE;
	}
	x.is_root = geteuid() == 0;
	x.progress = progress;
	x.buf = malloc(XFER_BUF_BYTES);
	if (!x.buf) {
		cli_err(verb, "out of memory");
		return EXIT_FAIL;
	}
	if (x.progress) {
		int fd = open(pos[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0)
			xfer_prescan(&x, fd);
	}
	if (mkdir(pos[1], 0700) != 0) {
		struct stat dt;
		if (errno != EEXIST || stat(pos[1], &dt) != 0 || !S_ISDIR(dt.st_mode)) {
			err = xfer_fail(pos[1], errno == EEXIST ? -ENOTDIR : -errno);
			goto out;
		}
	}
	err = xfer_level_set(&x, pos[1]);
	if (err)
		goto out;
	err = xfer_tree_copy(&x, pos[0], pos[1]);
	if (err)
		goto out;
	err = xfer_meta_apply(&x, pos[0], pos[1], &st);
	if (err)
		goto out;
	xfer_progress_draw(&x, 1);
	printf("%s: %llu files, %llu hard links, %llu folders, %llu symlinks, %llu bytes"
	       " copied to %s",
	       import ? "Imported" : "Exported", (unsigned long long)x.files,
	       (unsigned long long)x.hardlinks, (unsigned long long)x.dirs,
	       (unsigned long long)x.symlinks, (unsigned long long)x.bytes, pos[1]);
	if (x.skipped)
		printf(" (%llu special files skipped)", (unsigned long long)x.skipped);
	if (x.level)
		printf(" at level %s", x.level);
	printf(".\n");
out:
	xfer_line_clear();
	rc = xfer_exit_for(err);
	for (size_t i = 0; i < x.nlinks; i++)
		free(x.links[i].dst);
	free(x.links);
	free(x.buf);
	return rc;
}

int cmd_import(int argc, char **argv)
{
	return xfer_run("import", argc, argv);
}

int cmd_export(int argc, char **argv)
{
	return xfer_run("export", argc, argv);
}
