/* cmd_mount.c - strongroom mount / unmount.
 *
 * mount: the command forks at once; the child unlocks the store (it may
 * prompt on the terminal), checks the mount point, takes the store's writer
 * lock, opens the vault and mounts it. The parent waits on a pipe: one zero
 * byte means the mount is ready (the kernel's INIT was answered) and it
 * exits 0; end-of-file means the child failed, and the parent exits with the
 * child's exit code after the child printed its one error line. After
 * ready, the driver's stderr is its log file, never the terminal.
 *
 * Invariants:
 * 1. The key material is only ever in the driver process (unlocked after
 *    the fork, so its sodium_mlock'ed pages stay locked).
 * 2. A writer flock()s STORE/lock exclusively for the driver's whole life;
 *    a read-only mount flock()s STORE/readers shared instead, so any number
 *    of read-only mounts run beside one writer. Offline admin commands
 *    (fsck --repair, rotate) take both exclusively. STORE/lock holds the
 *    writer's pid so the refusal can name it; the lock, not the pid, is
 *    what decides, and a dead driver's lock is released with it.
 * 3. The driver's last act before exiting is vault_close() (every file
 *    sealed), then the runtime file goes and the lock is released.
 *
 * unmount: only a mount of type fuse.strongroom; EBUSY is reported as such
 * unless --lazy; then it waits (bounded) until the driver has exited, so a
 * store is sealed and unlocked when the command returns.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "control.h"
#include "strongroom/frontend.h"
#include "strongroom/keyring.h"
#include "strongroom/vault.h"
#include "strongroom/watch.h"

#define MNT_LOCK_NAME	      "lock"
#define MNT_READERS_NAME      "readers"
#define MNT_UNMOUNT_WAIT_SECS 60

struct mnt_args {
	const char *store_arg, *mountpoint_arg;
	char store[PATH_MAX];	   /* canonical */
	char mountpoint[PATH_MAX]; /* canonical */
	struct cli_secret_opts secrets;
	bool foreground, allow_other, read_only, debug;
	bool audit_fail_open, audit_syslog, no_audit; /* docs/cli.md "mount" */
	enum fe_kernel_denials kernel_denials;
	const char *log_file;
	char *fuse_opts; /* owned; joined -o values minus what we handle */
};

static void mnt_usage(void)
{
	cli_err("mount",
		"usage: strongroom mount STORE MOUNTPOINT [--passphrase-file F | --extpass CMD | "
		"--recovery-key-file F] [--key-file F] [--foreground] [--allow-other] [--read-only] "
		"[--log-file F] [--audit-fail-open] [--audit-syslog] [--no-audit] "
		"[--audit-kernel-denials | --no-audit-kernel-denials] [-o FUSE_OPTS]");
}

/* Append one -o list, taking out what has a flag of its own. */
static int mnt_opts_add(struct mnt_args *a, const char *list)
{
	char *copy = strdup(list), *save = NULL, *tok;
	int err = 0;

	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		size_t have, add;
		char *grown;

		if (strcmp(tok, "ro") == 0) {
			a->read_only = true;
			continue;
		}
		if (strcmp(tok, "rw") == 0 || strcmp(tok, "defaults") == 0)
			continue;
		if (strcmp(tok, "allow_other") == 0) {
			a->allow_other = true;
			continue;
		}
		have = a->fuse_opts ? strlen(a->fuse_opts) : 0;
		add = strlen(tok);
		grown = realloc(a->fuse_opts, have + add + 2);
		if (!grown) {
			err = -ENOMEM;
			break;
		}
		if (have)
			grown[have++] = ',';
		memcpy(grown + have, tok, add + 1);
		a->fuse_opts = grown;
	}
	free(copy);
	return err;
}

static int mnt_args_parse(int argc, char **argv, struct mnt_args *a)
{
	int npos = 0;

	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];
		int r = cli_secret_opt(&a->secrets, argc, argv, &i);

		if (r < 0)
			return EXIT_USAGE;
		if (r > 0)
			continue;
		if (strcmp(s, "--foreground") == 0 || strcmp(s, "-f") == 0) {
			a->foreground = true;
		} else if (strcmp(s, "--allow-other") == 0) {
			a->allow_other = true;
		} else if (strcmp(s, "--read-only") == 0) {
			a->read_only = true;
		} else if (strcmp(s, "--debug") == 0) {
			a->debug = true;
		} else if (strcmp(s, "--audit-fail-open") == 0) {
			a->audit_fail_open = true;
		} else if (strcmp(s, "--audit-syslog") == 0) {
			a->audit_syslog = true;
		} else if (strcmp(s, "--no-audit") == 0) {
			a->no_audit = true;
		} else if (strcmp(s, "--audit-kernel-denials") == 0) {
			a->kernel_denials = FE_KDENIALS_ON;
		} else if (strcmp(s, "--no-audit-kernel-denials") == 0) {
			a->kernel_denials = FE_KDENIALS_OFF;
		} else if (strcmp(s, "--log-file") == 0 || strncmp(s, "--log-file=", 11) == 0) {
			if (s[10] == '=') {
				a->log_file = s + 11;
			} else if (i + 1 < argc) {
				a->log_file = argv[++i];
			} else {
				cli_err("mount", "--log-file needs a file name");
				return EXIT_USAGE;
			}
		} else if (strcmp(s, "-o") == 0 || (strncmp(s, "-o", 2) == 0 && s[2])) {
			const char *list = s[2] ? s + 2 : (i + 1 < argc ? argv[++i] : NULL);

			if (!list) {
				cli_err("mount", "-o needs a list of options");
				return EXIT_USAGE;
			}
			if (mnt_opts_add(a, list) != 0) {
				cli_err("mount", "out of memory");
				return EXIT_FAIL;
			}
		} else if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
			mnt_usage();
			return EXIT_USAGE;
		} else if (s[0] == '-' && s[1]) {
			cli_err(s, "unknown option to mount");
			return EXIT_USAGE;
		} else if (npos == 0) {
			a->store_arg = s;
			npos++;
		} else if (npos == 1) {
			a->mountpoint_arg = s;
			npos++;
		} else {
			cli_err(s, "unexpected argument to mount");
			return EXIT_USAGE;
		}
	}
	if (npos != 2) {
		mnt_usage();
		return EXIT_USAGE;
	}
	if (a->debug && !a->foreground) {
		cli_err("mount", "--debug needs --foreground");
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

/* The mount point must exist, be a directory outside the store, be empty,
 * and not be a mount already. Fills a->mountpoint. */
static int mnt_mountpoint_check(struct mnt_args *a)
{
	const char *arg = a->mountpoint_arg;
	struct fe_mount m;
	struct stat st;
	struct dirent *e;
	DIR *d;

	if (!realpath(arg, a->mountpoint)) {
		if (errno == ENOENT)
			cli_err(arg, "mount point does not exist");
		else if (errno == ENOTCONN)
			cli_err(arg, "a dead mount is still attached here (strongroom unmount "
				     "--lazy it first)");
		else
			cli_err(arg, "mount point: %s", strerror(errno));
		return EXIT_MOUNTPOINT;
	}
	if (stat(a->mountpoint, &st) != 0) {
		cli_err(arg, "mount point: %s", strerror(errno));
		return EXIT_MOUNTPOINT;
	}
	if (!S_ISDIR(st.st_mode)) {
		cli_err(arg, "mount point is not a directory");
		return EXIT_MOUNTPOINT;
	}
	/* Plaintext inside the store would reach every backup of it. */
	size_t sl = strlen(a->store);
	if (strncmp(a->mountpoint, a->store, sl) == 0 &&
	    (a->mountpoint[sl] == '/' || a->mountpoint[sl] == '\0')) {
		cli_err(arg, "mount point is inside the store %s", a->store);
		return EXIT_MOUNTPOINT;
	}
	if (fe_mount_find(a->mountpoint, &m) == 0) {
		cli_err(arg, "mount point is already a mount (%s from %s)", m.fstype, m.source);
		return EXIT_MOUNTPOINT;
	}
	d = opendir(a->mountpoint);
	if (!d) {
		cli_err(arg, "mount point: %s", strerror(errno));
		return EXIT_MOUNTPOINT;
	}
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			break;
	}
	closedir(d);
	if (e) {
		cli_err(arg, "mount point is not empty");
		return EXIT_MOUNTPOINT;
	}
	return EXIT_OK;
}

/* Invariant 2. @return EXIT_OK and *fd_out, or an exit code. */
static int mnt_lock_take(const struct mnt_args *a, int *fd_out)
{
	char path[PATH_MAX], buf[32];
	int fd, op = a->read_only ? LOCK_SH : LOCK_EX;
	ssize_t n;

	*fd_out = -1;
	if (snprintf(path, sizeof(path), "%s/%s", a->store,
		     a->read_only ? MNT_READERS_NAME : MNT_LOCK_NAME) >= (int)sizeof(path)) {
		cli_err(a->store_arg, "path too long");
		return EXIT_STORE;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0 && a->read_only && (errno == EROFS || errno == EACCES))
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (a->read_only && (errno == EROFS || errno == ENOENT))
			return EXIT_OK; /* a read-only medium: no writer can exist */
		cli_err(path, "cannot open the store lock: %s", strerror(errno));
		return EXIT_STORE;
	}
	if (flock(fd, op | LOCK_NB) != 0) {
		int e = errno;

		if (e == EWOULDBLOCK) {
			n = pread(fd, buf, sizeof(buf) - 1, 0);
			buf[n > 0 ? n : 0] = '\0';
			if (a->read_only)
				cli_err(a->store_arg,
					"store is locked by an offline fsck --repair or rotate");
			else
				cli_err(a->store_arg, "store is in use by another writer (pid %ld)",
					strtol(buf, NULL, 10));
		} else {
			cli_err(path, "cannot lock the store: %s", strerror(e));
		}
		close(fd);
		return EXIT_STORE;
	}
	*fd_out = fd;
	return EXIT_OK;
}

static void mnt_lock_write_pid(const char *store, int fd, bool exclusive)
{
	char buf[32];
	int len;

	if (fd < 0 || !exclusive)
		return;
	len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len)
		fprintf(stderr,
			"strongroom: %s/" MNT_LOCK_NAME ": cannot record the driver pid: %s\n",
			store, strerror(errno));
}

static void mnt_lock_release(int fd, bool exclusive)
{
	if (fd < 0)
		return;
	if (exclusive && ftruncate(fd, 0) != 0) {
		/* A stale pid only makes a later refusal message less precise. */
	}
	close(fd);
}

/* Detach from the terminal once the secret is in: own session, cwd "/",
 * stdin and stdout to /dev/null; stderr stays until the mount is ready. */
static void mnt_detach(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	setsid();
	if (chdir("/") != 0) {
		/* "/" always exists; nothing to do */
	}
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		close(fd);
	}
}

/* A warning about the audit trail, on the terminal and in the driver log. */
static void mnt_audit_warn(const struct mnt_args *a, int log_fd, const char *what)
{
	fprintf(stderr, "strongroom: %s: warning: %s\n", a->store, what);
	if (log_fd >= 0)
		dprintf(log_fd, "strongroom: %s: warning: %s\n", a->store, what);
}

/* Open the audit trail (after daemonizing: it starts a thread) and record
 * the mount; fail-closed refuses the mount without it. @return exit code. */
static int mnt_audit_start(const struct mnt_args *a, struct vault *v, int log_fd)
{
	struct vault_audit_opts ao = {.store = a->store,
				      .mountpoint = a->mountpoint,
				      .fail_open = a->audit_fail_open,
				      .syslog = a->audit_syslog};
	int err;

	if (a->no_audit) {
		mnt_audit_warn(
		    a, log_fd,
		    "--no-audit: nothing is recorded in the audit trail (for benchmarks only)");
		return EXIT_OK;
	}
	/* A read-only mount writes its own chain, STORE/audit/ro-ID (docs/audit.md). */
	err = vault_audit_start(v, &ao);
	if (a->read_only && (err == -EROFS || err == -EACCES || err == -EPERM) &&
	    !a->audit_fail_open) {
		cli_err(a->store_arg,
			"cannot write the read-only mount's audit trail in %s/audit: %s; "
			"--no-audit mounts it unaudited",
			a->store, strerror(-err));
		return EXIT_STORE;
	}
	if (err == -EBUSY && !a->audit_fail_open) {
		cli_err(a->store_arg, "the audit trail %s/audit is in use by another driver", a->store);
		return EXIT_STORE;
	}
	if (err && !a->audit_fail_open) {
		cli_err(a->store_arg, "cannot open the audit trail %s/audit: %s", a->store,
			strerror(-err));
		return cli_exit_for(err);
	}
	if (err) {
		char msg[512];

		snprintf(msg, sizeof(msg),
			 "cannot open the audit trail: %s; --audit-fail-open: mounting unaudited",
			 strerror(-err));
		mnt_audit_warn(a, log_fd, msg);
		return EXIT_OK;
	}
	if (a->audit_fail_open)
		mnt_audit_warn(a, log_fd,
			       "--audit-fail-open: an operation whose audit record cannot be "
			       "written goes on unrecorded");
	return EXIT_OK;
}

/* A key rotation left unfinished (strongroom rotate, admin.h): objects of
 * its level are under two keys until it is run again. */
static bool mnt_rotation_unfinished(const struct mnt_args *a)
{
	char path[PATH_MAX];

	if (snprintf(path, sizeof(path), "%s/rotate.state", a->store) >= (int)sizeof(path) ||
	    access(path, F_OK) != 0)
		return false;
	cli_err(a->store_arg,
		"a key rotation is unfinished: run strongroom rotate again to finish it");
	return true;
}

/* The driver: everything from unlocking to the final seal. @return the exit
 * code (errors printed). ready_fd is closed in every case. */
static int mnt_drive(struct mnt_args *a, int ready_fd)
{
	struct kr_keyring *kr = NULL;
	struct vault *v = NULL;
	struct fe_runtime *rt = NULL;
	struct fe_options fo = {0};
	struct ctl_server *ctl = NULL;
	char runtime_path[PATH_MAX] = "";
	char log_path[PATH_MAX] = "";
	int lock_fd = -1, log_fd = -1, rc, err;

	/* One malloc arena for the whole driver, set before any thread starts:
	 * with one per thread (request threads come and go, encode workers
	 * hand buffers back and forth) freed memory is spread over arenas
	 * that never give it back, and the driver's RSS kept growing with the
	 * bytes written (docs/performance.md, change 13). */
	mallopt(M_ARENA_MAX, 1);
	rc = cli_unlock(a->store, &a->secrets, &kr);
	if (rc != EXIT_OK)
		goto out;
	/* The driver keeps only the keys in use, never the root keys that
	 * open the key bag: a key rotation then locks out a copy of this
	 * process's memory (docs/threat-model.md). */
	kr_keyring_forget_roots(kr);
	rc = mnt_mountpoint_check(a);
	if (rc != EXIT_OK)
		goto out;
	rc = mnt_lock_take(a, &lock_fd);
	if (rc != EXIT_OK)
		goto out;
	if (mnt_rotation_unfinished(a)) {
		rc = EXIT_STORE;
		goto out;
	}
	if (ready_fd >= 0) {
		mnt_detach();
		if (a->log_file)
			snprintf(log_path, sizeof(log_path), "%s", a->log_file);
		else if (mkdir(fe_runtime_dir(), 0755) == 0 || errno == EEXIST)
			snprintf(log_path, sizeof(log_path), "%s/%ld.log", fe_runtime_dir(),
				 (long)getpid());
		log_fd =
		    open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (log_fd < 0) {
			cli_err(log_path, "cannot open the driver log: %s", strerror(errno));
			rc = EXIT_FAIL;
			goto out;
		}
	}
	err = vault_open(a->store, kr, a->read_only ? VAULT_READ_ONLY : 0, &v);
	if (err) {
		cli_err(a->store_arg, "cannot open the vault: %s", strerror(-err));
		rc = cli_exit_for(err);
		goto out;
	}
	rc = mnt_audit_start(a, v, log_fd);
	if (rc != EXIT_OK)
		goto out;
	/* Freezes and level locks of earlier mounts hold again (watch.h). */
	err = vault_watch_state_load(v, kr, a->store);
	if (err == 1) {
		fprintf(stderr,
			"strongroom: %s/%s: warning: missing; freezes and level locks of earlier "
			"mounts, if any, are lifted (recorded in the audit trail)\n",
			a->store, KR_WATCH_NAME);
	} else if (err == -EUCLEAN || err == -EOPNOTSUPP) {
		cli_err(a->store_arg,
			"%s/%s failed authentication (edited, damaged or from another vault): "
			"freezes and level locks cannot be known; an admin resets it with "
			"strongroom unlock STORE --reset",
			a->store, KR_WATCH_NAME);
		rc = EXIT_STORE;
		goto out;
	} else if (err < 0) {
		cli_err(a->store_arg, "cannot restore freezes and level locks: %s",
			strerror(-err));
		rc = cli_exit_for(err);
		goto out;
	}
	mnt_lock_write_pid(a->store, lock_fd, !a->read_only);

	rt = calloc(1, sizeof(*rt));
	if (rt) {
		rt->pid = getpid();
		rt->read_only = a->read_only;
		snprintf(rt->store, sizeof(rt->store), "%s", a->store);
		snprintf(rt->mountpoint, sizeof(rt->mountpoint), "%s", a->mountpoint);
		snprintf(rt->log, sizeof(rt->log), "%s", log_path);
		if (fe_runtime_write(rt, runtime_path) != 0)
			runtime_path[0] = '\0'; /* status then shows no pid */
	}
	/* freeze, lock, unlock and status talk to us here (control.h). */
	err = ctl_server_start(v, kr, a->store, a->mountpoint, &ctl);
	if (err)
		fprintf(stderr, "strongroom: %s: warning: no control channel: %s\n", a->store,
			strerror(-err));

	fo.mountpoint = a->mountpoint;
	fo.fsname = a->store;
	fo.fuse_opts = a->fuse_opts;
	fo.allow_other = a->allow_other;
	fo.read_only = a->read_only;
	fo.debug = a->debug;
	fo.kernel_denials = a->kernel_denials;
	fo.ready_fd = ready_fd;
	fo.log_fd = log_fd;
	ready_fd = -1; /* fe_run closes it */
	err = fe_run(v, &fo);
	/* libfuse has printed why: -EINVAL is an option it did not accept. */
	rc = err == -EINVAL ? EXIT_USAGE : err ? EXIT_MOUNTPOINT : EXIT_OK;
out:
	if (ready_fd >= 0)
		close(ready_fd);
	ctl_server_stop(ctl);
	if (v) {
		err = vault_close(v);
		if (err) {
			fprintf(stderr, "strongroom: %s: closing the vault failed: %s\n", a->store,
				strerror(-err));
			if (rc == EXIT_OK)
				rc = cli_exit_for(err);
		}
	}
	kr_keyring_free(kr);
	fe_runtime_remove(runtime_path);
	free(rt);
	mnt_lock_release(lock_fd, !a->read_only);
	if (log_fd >= 0)
		close(log_fd);
	return rc;
}

/* The parent of a background mount: wait for "ready" or the child's end. */
static int mnt_wait_ready(pid_t child, int fd)
{
	char byte;
	ssize_t n;
	int status;

	do
		n = read(fd, &byte, 1);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n == 1 && byte == 0)
		return EXIT_OK;
	while (waitpid(child, &status, 0) < 0) {
		if (errno != EINTR) {
			cli_err("mount", "lost the driver process: %s", strerror(errno));
			return EXIT_FAIL;
		}
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status) ? WEXITSTATUS(status) : EXIT_FAIL;
	cli_err("mount", "the driver died before the mount was ready (signal %d)",
		WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	return EXIT_FAIL;
}

int cmd_mount(int argc, char **argv)
{
	struct mnt_args a = {0};
	int p[2], rc;
	pid_t pid;

	rc = mnt_args_parse(argc, argv, &a);
	if (rc != EXIT_OK)
		goto out;
	if (!realpath(a.store_arg, a.store)) {
		cli_err(a.store_arg, "store: %s", strerror(errno));
		rc = EXIT_STORE;
		goto out;
	}
	if (a.foreground) {
		rc = mnt_drive(&a, -1);
		goto out;
	}
	if (pipe2(p, O_CLOEXEC) != 0) {
		cli_err("mount", "pipe: %s", strerror(errno));
		rc = EXIT_FAIL;
		goto out;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		cli_err("mount", "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		rc = EXIT_FAIL;
		goto out;
	}
	if (pid == 0) {
		close(p[0]);
		rc = mnt_drive(&a, p[1]);
		free(a.fuse_opts);
		exit(rc);
	}
	close(p[1]);
	rc = mnt_wait_ready(pid, p[0]);
out:
	free(a.fuse_opts);
	return rc;
}

/* ---- unmount ---- */

/* Canonical path of a mount point that may be a dead FUSE mount (stat on it
 * fails with ENOTCONN): canonicalise the parent, then append the name. */
static int mnt_path_canon(const char *arg, char *out)
{
	char parent[PATH_MAX], *copy, *slash;
	const char *base;
	int err = 0;

	if (realpath(arg, out))
		return 0;
	if (errno != ENOTCONN && errno != EIO)
		return -errno;
	copy = strdup(arg);
	if (!copy)
		return -ENOMEM;
	while (strlen(copy) > 1 && copy[strlen(copy) - 1] == '/')
		copy[strlen(copy) - 1] = '\0';
	slash = strrchr(copy, '/');
	if (slash) {
		*slash = '\0';
		base = slash + 1;
		if (!realpath(*copy ? copy : "/", parent))
			err = -errno;
	} else {
		base = copy;
		if (!realpath(".", parent))
			err = -errno;
	}
	if (!err && snprintf(out, PATH_MAX, "%s/%s", strcmp(parent, "/") == 0 ? "" : parent,
			     base) >= PATH_MAX)
		err = -ENAMETOOLONG;
	free(copy);
	return err;
}

static int mnt_fusermount(const char *mp, bool lazy)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", lazy ? "-uz" : "-u", "--", mp, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EBUSY;
}

int cmd_unmount(int argc, char **argv)
{
	const char *arg = NULL;
	char mp[PATH_MAX];
	struct fe_mount m;
	struct fe_runtime rt;
	bool lazy = false, have_pid;
	int err;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--lazy") == 0 || strcmp(argv[i], "-l") == 0 ||
		    strcmp(argv[i], "-z") == 0) {
			lazy = true;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			cli_err(argv[i], "unknown option to unmount");
			return EXIT_USAGE;
		} else if (!arg) {
			arg = argv[i];
		} else {
			cli_err(argv[i], "unexpected argument to unmount");
			return EXIT_USAGE;
		}
	}
	if (!arg) {
		cli_err("unmount", "usage: strongroom unmount MOUNTPOINT [--lazy]");
		return EXIT_USAGE;
	}
	err = mnt_path_canon(arg, mp);
	if (err) {
		cli_err(arg, "%s", strerror(-err));
		return EXIT_MOUNTPOINT;
	}
	if (fe_mount_find(mp, &m) != 0) {
		cli_err(arg, "not mounted");
		return EXIT_MOUNTPOINT;
	}
	if (strcmp(m.fstype, FE_FSTYPE) != 0) {
		cli_err(arg, "not a Strongroom mount (it is %s)", m.fstype);
		return EXIT_MOUNTPOINT;
	}
	have_pid = fe_runtime_find(mp, &rt) == 0;

	if (umount2(mp, lazy ? MNT_DETACH : 0) != 0) {
		err = -errno;
		if (err == -EPERM)
			err = mnt_fusermount(mp, lazy);
		if (err == -EBUSY) {
			cli_err(arg, "busy: files are open (use --lazy to detach)");
			return EXIT_MOUNTPOINT;
		}
		if (err) {
			cli_err(arg, "cannot unmount: %s", strerror(-err));
			return EXIT_MOUNTPOINT;
		}
	}
	/* A lazily detached vault stays served until its last file closes. */
	if (lazy || !have_pid)
		return EXIT_OK;
	for (int i = 0; i < MNT_UNMOUNT_WAIT_SECS * 50; i++) {
		struct timespec ts = {0, 20 * 1000 * 1000};

		if (!fe_pid_running(rt.pid))
			return EXIT_OK;
		nanosleep(&ts, NULL);
	}
	cli_err(arg, "unmounted, but the driver (pid %ld) is still sealing files after %d s",
		(long)rt.pid, MNT_UNMOUNT_WAIT_SECS);
	return EXIT_FAIL;
}
