/* cmd_fsck.c - `strongroom fsck STORE [--repair] [SECRET]`.
 *
 * Unlocks the store, takes its lock (shared to check, beside read-only
 * mounts; exclusive to repair, so no driver writes meanwhile), and runs the
 * vault layer's offline check (admin.h) step by step: one line per problem
 * on stdout, a progress line on stderr when it is a terminal, a summary.
 *
 * Exit codes (docs/cli.md): 0 clean; 1 (EXIT_FAIL) damage was found and
 * --repair fixed all of it; 9 (EXIT_DAMAGE) damage is left; 4 the store is
 * missing or in use by a writer; 3 wrong secret.
 *
 * Also home of cli_store_lock, the admin commands' use of the store locks
 * the mount driver takes (cmd_mount.c invariant 2): STORE/lock shared to
 * keep writers out, and with STORE/readers exclusive to keep every mount
 * out. A dead holder's flock is gone with it, so a stale lock never
 * blocks.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "strongroom/admin.h"

#define FSCK_PROGRESS_NS 200000000LL /* a progress line at most 5 times a second */

/* One flock on STORE/name. @return EXIT_OK and *fd_out (-1 on a read-only
 * medium for a shared lock), or EXIT_STORE after one line. */
static int admin_lock_one(const char *store, const char *name, bool exclusive, int *fd_out)
{
	char path[PATH_MAX], buf[32];
	int fd;
	ssize_t n;

	*fd_out = -1;
	if (snprintf(path, sizeof(path), "%s/%s", store, name) >= (int)sizeof(path)) {
		cli_err(store, "path too long");
		return EXIT_STORE;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0 && !exclusive && (errno == EROFS || errno == EACCES))
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (!exclusive && (errno == EROFS || errno == ENOENT))
			return EXIT_OK; /* read-only medium: no writer can exist */
		cli_err(path, "cannot open the store lock: %s", strerror(errno));
		return EXIT_STORE;
	}
	if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
		int e = errno;

		if (e == EWOULDBLOCK) {
			n = pread(fd, buf, sizeof(buf) - 1, 0);
			buf[n > 0 ? n : 0] = '\0';
			if (strtol(buf, NULL, 10) > 0)
				cli_err(store,
					"store is in use by a writer (pid %ld); unmount it first",
					strtol(buf, NULL, 10));
			else
				cli_err(
				    store,
				    "store is mounted (read-only or by an admin command); unmount "
				    "every mount of it first");
		} else {
			cli_err(path, "cannot lock the store: %s", strerror(e));
		}
		close(fd);
		return EXIT_STORE;
	}
	*fd_out = fd;
	return EXIT_OK;
}

int cli_store_lock(const char *store, bool exclusive, int fds[2])
{
	char buf[32];
	int rc, len;

	fds[0] = fds[1] = -1;
	rc = admin_lock_one(store, "lock", exclusive, &fds[0]);
	if (rc == EXIT_OK && exclusive)
		rc = admin_lock_one(store, "readers", true, &fds[1]);
	if (rc != EXIT_OK) {
		cli_store_unlock(fds, false);
		return rc;
	}
	if (exclusive) {
		len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
		if (ftruncate(fds[0], 0) != 0 || pwrite(fds[0], buf, (size_t)len, 0) != len) {
			/* only a later refusal message is less precise */
		}
	}
	return EXIT_OK;
}

void cli_store_unlock(int fds[2], bool exclusive)
{
	if (fds[0] >= 0 && exclusive && ftruncate(fds[0], 0) != 0) {
		/* a stale pid only makes a later refusal less precise */
	}
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	fds[0] = fds[1] = -1;
}

static void fsck_help(void)
{
	fputs("NAME\n"
	      "  strongroom fsck - check a store for damage, and repair what can be repaired\n"
	      "\n"
	      "SYNOPSIS\n"
	      "  strongroom fsck STORE [--repair] [--passphrase-file F | --extpass CMD |\n"
	      "                  --recovery-key-file F]\n"
	      "\n"
	      "DESCRIPTION\n"
	      "  Checks the keyslot files, every folder's metadata, every name and every\n"
	      "  chunk of every file the secret opens (levels it does not open are counted\n"
	      "  as locked, not as damage). Each problem is one line on stdout:\n"
	      "    KIND<TAB>PLAINTEXT PATH or -<TAB>STORE PATH<TAB>fixed|left<TAB>NOTE\n"
	      "  then a summary. Without --repair nothing is written; read-only mounts may\n"
	      "  stay, a writable mount is refused.\n"
	      "\n"
	      "  --repair (no mount of the store at all) seals files a crash left unsealed,\n"
	      "  moves leftover temporary files, orphan sidecars and names that do not\n"
	      "  decrypt to STORE/quarantine/, rebuilds a damaged folder metadata file whose\n"
	      "  folder ID is readable, and rewrites a file with damaged chunks so that they\n"
	      "  read as zeros while the rest stays readable, keeping the damaged original in\n"
	      "  STORE/quarantine/. Nothing is ever deleted; STORE/quarantine/index lists\n"
	      "  each moved entry by store path. A repair records its start, each problem\n"
	      "  and its end in the audit trail (strongroom audit show --event repair).\n"
	      "\n"
	      "EXIT STATUS\n"
	      "  0 clean; 1 damage found and all of it repaired; 9 damage left (run with\n"
	      "  --repair, or see the lines marked left); 4 store missing or in use.\n"
	      "\n",
	      stdout);
	cli_print_exit_codes(stdout);
}

static long long fsck_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void fsck_print_problem(const struct vault_fsck_problem *p)
{
	printf("%s", vault_fsck_kind_name(p->kind));
	if (p->kind == VAULT_FSCK_CHUNK)
		printf(" %llu", (unsigned long long)p->chunk);
	printf("\t%s\t%s\t%s", p->path[0] ? p->path : "-", p->store_path,
	       p->fixed ? "fixed" : "left");
	if (p->note[0])
		printf("\t%s", p->note);
	else if (p->err)
		printf("\t%s", strerror(-p->err));
	putchar('\n');
}

/* The audit record of one problem a repair met (fixed or left). */
static int fsck_record(struct vault_admin_log *alog, const struct vault_fsck_problem *p)
{
	char detail[512];

	if (p->kind == VAULT_FSCK_CHUNK)
		snprintf(detail, sizeof(detail), "%s %llu %s: %s", vault_fsck_kind_name(p->kind),
			 (unsigned long long)p->chunk, p->fixed ? "fixed" : "left",
			 p->note[0] ? p->note : strerror(-p->err));
	else
		snprintf(detail, sizeof(detail), "%s %s: %s", vault_fsck_kind_name(p->kind),
			 p->fixed ? "fixed" : "left",
			 p->note[0] ? p->note
			 : p->err   ? strerror(-p->err)
				    : "-");
	return vault_admin_log_write(alog, AUDIT_EV_REPAIR, p->path, p->store_path, NULL, 0,
				     p->fixed ? 0 : p->err, detail);
}

int cmd_fsck(int argc, char **argv)
{
	struct cli_secret_opts so = {0};
	struct kr_keyring *kr = NULL;
	struct vault_fsck *ck = NULL;
	struct vault_admin_log *alog = NULL;
	int alog_err = 0;
	const struct vault_fsck_problem *probs;
	const struct vault_fsck_stats *st;
	const char *store = NULL;
	bool repair = false, tty = isatty(STDERR_FILENO), drew = false;
	size_t shown = 0, n;
	long long last = 0;
	int rc, lock_fd[2] = {-1, -1}, err, i;

	for (i = 1; i < argc; i++) {
		int c = cli_secret_opt(&so, argc, argv, &i);

		if (c < 0)
			return EXIT_USAGE;
		if (c > 0)
			continue;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fsck_help();
			return EXIT_OK;
		} else if (strcmp(argv[i], "--repair") == 0) {
			repair = true;
		} else if (argv[i][0] == '-') {
			cli_err(argv[i], "unknown option to fsck (strongroom fsck --help)");
			return EXIT_USAGE;
		} else if (!store) {
			store = argv[i];
		} else {
			cli_err(argv[i], "unexpected argument to fsck");
			return EXIT_USAGE;
		}
	}
	if (!store) {
		cli_err("fsck", "usage: strongroom fsck STORE [--repair] [SECRET]");
		return EXIT_USAGE;
	}
	rc = cli_unlock(store, &so, &kr);
	if (rc != EXIT_OK)
		goto out;
	rc = cli_store_lock(store, repair, lock_fd);
	if (rc != EXIT_OK)
		goto out;
	if (repair) {
		/* Fail closed: no repair without its records in the trail. */
		err = vault_admin_log_open(store, kr, &alog);
		if (err == 0)
			err = vault_admin_log_write(alog, AUDIT_EV_REPAIR, "/", NULL, NULL, 0, 0,
						    "start: fsck --repair");
		if (err < 0) {
			cli_err(store, "cannot write the audit trail %s/audit: %s", store,
				err == -EBUSY ? "in use by another writer" : strerror(-err));
			rc = cli_exit_for(err) == EXIT_OK ? EXIT_FAIL : cli_exit_for(err);
			goto out;
		}
	}
	err = vault_fsck_open(store, kr, repair, &ck);
	if (err < 0) {
		cli_err(store, "cannot check the store: %s", strerror(-err));
		rc = cli_exit_for(err);
		goto out;
	}
	do {
		err = vault_fsck_step(ck);
		n = vault_fsck_problems(ck, &probs);
		if (shown < n && drew) {
			fputs("\r\033[K", stderr);
			drew = false;
		}
		for (; shown < n; shown++) {
			fsck_print_problem(&probs[shown]);
			if (alog && alog_err == 0)
				alog_err = fsck_record(alog, &probs[shown]);
		}
		fflush(stdout);
		if (tty && fsck_now_ns() - last > FSCK_PROGRESS_NS) {
			st = vault_fsck_stats(ck);
			fprintf(stderr,
				"\r\033[Kfsck: %llu folders, %llu files, %.1f MiB checked, %llu "
				"problems",
				(unsigned long long)st->dirs, (unsigned long long)st->files,
				(double)st->bytes / 1048576.0, (unsigned long long)st->problems);
			drew = true;
			last = fsck_now_ns();
		}
	} while (err > 0);
	if (drew)
		fputs("\r\033[K", stderr);
	if (err < 0) {
		cli_err(store, "check stopped: %s", strerror(-err));
		rc = cli_exit_for(err) == EXIT_OK ? EXIT_FAIL : cli_exit_for(err);
		goto out;
	}
	st = vault_fsck_stats(ck);
	if (alog && alog_err == 0) {
		char detail[256];

		snprintf(detail, sizeof(detail),
			 "end: %llu folders, %llu files checked; %llu problems, %llu fixed, %llu "
			 "left",
			 (unsigned long long)st->dirs, (unsigned long long)st->files,
			 (unsigned long long)st->problems, (unsigned long long)st->fixed,
			 (unsigned long long)(st->problems - st->fixed));
		alog_err = vault_admin_log_write(alog, AUDIT_EV_REPAIR, "/", NULL, NULL, st->bytes,
						 0, detail);
	}
	if (alog_err < 0) {
		cli_err(store, "writing the audit trail %s/audit failed: %s", store,
			strerror(-alog_err));
		rc = cli_exit_for(alog_err) == EXIT_OK ? EXIT_FAIL : cli_exit_for(alog_err);
		goto out;
	}
	printf("%llu folders, %llu files, %llu bytes checked; %llu locked (levels this secret does "
	       "not "
	       "open); %llu problems, %llu fixed, %llu left\n",
	       (unsigned long long)st->dirs, (unsigned long long)st->files,
	       (unsigned long long)st->bytes, (unsigned long long)st->locked,
	       (unsigned long long)st->problems, (unsigned long long)st->fixed,
	       (unsigned long long)(st->problems - st->fixed));
	if (st->problems == 0)
		rc = EXIT_OK;
	else if (st->fixed == st->problems)
		rc = EXIT_FAIL;
	else
		rc = EXIT_DAMAGE;
out:
	vault_fsck_close(ck);
	if (vault_admin_log_close(alog) < 0 && rc == EXIT_OK) {
		cli_err(store, "closing the audit trail failed");
		rc = EXIT_FAIL;
	}
	cli_store_unlock(lock_fd, repair);
	kr_keyring_free(kr);
	return rc;
}
