/* cmd_level.c - strongroom level get|set PATH [LEVEL] [--recursive]
 *
 * Reads and sets the classification level of a file or folder inside a
 * mounted vault, through the virtual xattr user.strongroom.level that the
 * driver serves (docs/policy.md "Levels"): no secret is needed, the mount's
 * driver re-encrypts, and the caller must be root or in the vault's admin
 * group (the driver decides; anyone else gets EPERM).
 *
 * Invariants:
 *  - set is idempotent: setting the level an object already has changes
 *    nothing, so re-running an interrupted --recursive run finishes it.
 *  - --recursive visits a folder before what is in it (a folder's new
 *    level is in place before its entries are looked at) and never follows
 *    symbolic links; symlinks, fifos and sockets are skipped.
 *  - A file an application holds open is refused by the driver (EBUSY);
 *    the kernel closes files a little after the application does, so a
 *    refusal is retried for a moment before it is reported.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define LEVEL_XATTR "user.strongroom.level"
#define LEVEL_BUSY_TRIES 40 /* x 50 ms */

struct lvl_run {
	const char *level;
	bool progress;
	bool line_open;
	unsigned long done, changed;
	int first_exit;
};

static void lvl_usage(FILE *f)
{
	fputs("Usage: strongroom level get PATH\n"
	      "       strongroom level set PATH LEVEL [--recursive] [--progress | --no-progress]\n"
	      "\n"
	      "Show or change the classification level of a file or folder in a mounted\n"
	      "vault. Changing it re-encrypts a file under the new level's key, or re-encrypts\n"
	      "a folder's entry names (the files in it keep their own levels unless\n"
	      "--recursive is given). Only root and the vault's admin group may change levels.\n"
	      "\n"
	      "--recursive sets LEVEL on PATH and on everything below it, folders first.\n"
	      "Setting a level an object already has changes nothing, so an interrupted\n"
	      "--recursive run is resumed by running the same command again. A progress line\n"
	      "is drawn on stderr when it is a terminal. A file open in an application is\n"
	      "refused (close it and run again).\n"
	      "\n",
	      f);
	cli_print_exit_codes(f);
}

/* r may be NULL (a single get or set draws no progress line). */
static void lvl_line_clear(struct lvl_run *r)
{
	if (r && r->line_open) {
		fputs("\r\033[K", stderr);
		r->line_open = false;
	}
}

static int lvl_fail(struct lvl_run *run, const char *path, int err)
{
	int code;

	lvl_line_clear(run);
	switch (err) {
	case EPERM:
		cli_err(path, "only root or the vault's admin group may change levels");
		code = EXIT_FAIL;
		break;
	case EINVAL:
		cli_err(path, "%s is not a level of this vault", run ? run->level : "?");
		code = EXIT_USAGE;
		break;
	case EACCES:
		cli_err(path, "permission denied (the level is not held by this mount, or the "
			      "path is above your clearance)");
		code = EXIT_FAIL;
		break;
	case EBUSY:
		cli_err(path, "open in an application; close it and run again");
		code = EXIT_FAIL;
		break;
	case EMLINK:
		cli_err(path, "has hard links; a level is set on a file with one name only");
		code = EXIT_FAIL;
		break;
	case ENOTSUP:
	case ENODATA:
		cli_err(path, "not inside a mounted Strongroom vault");
		code = EXIT_MOUNTPOINT;
		break;
	case EIO:
	case ENOSPC:
	case EROFS:
		cli_err(path, "%s", strerror(err));
		code = EXIT_IO;
		break;
	default:
		cli_err(path, "%s", strerror(err));
		code = EXIT_FAIL;
		break;
	}
	return code;
}

static int lvl_get(const char *path)
{
	char buf[256];
	ssize_t n = getxattr(path, LEVEL_XATTR, buf, sizeof(buf) - 1);

	if (n < 0)
		return lvl_fail(NULL, path, errno);
	buf[n] = '\0';
	printf("%s\n", buf);
	return EXIT_OK;
}

static void lvl_progress(struct lvl_run *run, const char *path)
{
	if (!run->progress)
		return;
	fprintf(stderr, "\r\033[K%lu done, %lu changed: %.60s", run->done, run->changed, path);
	run->line_open = true;
}

/* Set the level of one object; @return 0 or an errno. */
static int lvl_set_one(struct lvl_run *run, const char *path)
{
	struct timespec pause = { 0, 50 * 1000 * 1000 };
	char old[256];
	ssize_t n;

	n = getxattr(path, LEVEL_XATTR, old, sizeof(old) - 1);
	if (n < 0)
		return errno;
	old[n] = '\0';
	for (int i = 0;; i++) {
		if (setxattr(path, LEVEL_XATTR, run->level, strlen(run->level), 0) == 0)
			break;
		if (errno != EBUSY || i == LEVEL_BUSY_TRIES)
			return errno;
		nanosleep(&pause, NULL);
	}
	run->done++;
	if (strcmp(old, run->level) != 0)
		run->changed++;
	lvl_progress(run, path);
	return 0;
}

/* Folders first, then what is in them; never through a symlink. */
static void lvl_walk(struct lvl_run *run, const char *path)
{
	struct dirent *de;
	struct stat st;
	int err;
	DIR *dp;

	if (lstat(path, &st) != 0) {
		if (!run->first_exit)
			run->first_exit = lvl_fail(run, path, errno);
		return;
	}
	if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
		return;
	err = lvl_set_one(run, path);
	if (err) {
		int code = lvl_fail(run, path, err);

		if (!run->first_exit)
			run->first_exit = code;
		if (err == EPERM || err == EINVAL)
			run->first_exit = code; /* nothing else will work either */
		return;
	}
	if (!S_ISDIR(st.st_mode))
		return;
	dp = opendir(path);
	if (!dp) {
		if (!run->first_exit)
			run->first_exit = lvl_fail(run, path, errno);
		return;
	}
	while ((de = readdir(dp))) {
		char *child;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (asprintf(&child, "%s/%s", path, de->d_name) < 0)
			break;
		lvl_walk(run, child);
		free(child);
		if (run->first_exit == EXIT_USAGE)
			break;
	}
	closedir(dp);
}

int cmd_level(int argc, char **argv)
{
	struct lvl_run run = { 0 };
	const char *pos[3];
	bool recursive = false;
	int npos = 0, err;

	run.progress = isatty(STDERR_FILENO);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			lvl_usage(stdout);
			return EXIT_OK;
		} else if (strcmp(a, "--recursive") == 0 || strcmp(a, "-R") == 0) {
			recursive = true;
		} else if (strcmp(a, "--progress") == 0) {
			run.progress = true;
		} else if (strcmp(a, "--no-progress") == 0) {
			run.progress = false;
		} else if (a[0] == '-' && a[1] != '\0') {
			cli_err(a, "unknown option (strongroom level --help)");
			return EXIT_USAGE;
		} else if (npos < 3) {
			pos[npos++] = a;
		} else {
			cli_err(a, "too many arguments (strongroom level --help)");
			return EXIT_USAGE;
		}
	}
	if (npos >= 1 && strcmp(pos[0], "get") == 0 && npos == 2 && !recursive)
		return lvl_get(pos[1]);
	if (npos != 3 || strcmp(pos[0], "set") != 0) {
		cli_err("usage", "strongroom level get PATH | set PATH LEVEL [--recursive]");
		return EXIT_USAGE;
	}
	run.level = pos[2];
	if (!recursive) {
		run.progress = false;
		err = lvl_set_one(&run, pos[1]);
		return err ? lvl_fail(&run, pos[1], err) : EXIT_OK;
	}
	lvl_walk(&run, pos[1]);
	lvl_line_clear(&run);
	printf("%lu set to %s, %lu changed\n", run.done, run.level, run.changed);
	return run.first_exit;
}
