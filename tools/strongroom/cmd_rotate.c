/* cmd_rotate.c - `strongroom rotate STORE LEVEL [SECRET]`.
 *
 * Gives LEVEL a new random key and re-encrypts every folder metadata, name
 * and file of that level under it, offline: no mount of the store may run
 * (both store locks are taken exclusively). The steps, each durable before
 * the next (docs/format.md 4.4, admin.h "rotate"):
 *
 *   1. STORE/rotate.state written (mounts refuse from now on);
 *   2. the next key added to STORE/keybag (kr_rotate_begin);
 *   3. the walk re-encrypts object by object (vault_rotate_step);
 *   4. the key bag keeps only the new key: the old one is destroyed
 *      (kr_rotate_finish);
 *   5. STORE/rotate.state removed.
 *
 * Run again after an interruption at any point, it resumes where the store
 * says it is: the state file names the level, the key bag holds the next
 * key, and each object tells by authentication which key it is under.
 *
 * Each run records `rotate` events in the audit trail (docs/audit.md 13):
 * start or resume before anything changes (no trail, no rotation), stop on
 * an error, end between steps 4 and 5.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "strongroom/admin.h"
#include "strongroom/frontend.h"

/* An online rotation waits this long for each answer of the driver (its
 * unlock, then each step, the largest file's copy included). */
#define ROTATE_ONLINE_TIMEOUT_SEC 3600

#define ROTATE_PROGRESS_NS 200000000LL

static void rotate_help(void)
{
	fputs("NAME\n"
	      "  strongroom rotate - give a level a new key and re-encrypt everything of it\n"
	      "\n"
	      "SYNOPSIS\n"
	      "  strongroom rotate STORE LEVEL [--passphrase-file F | --extpass CMD |\n"
	      "                    --recovery-key-file F]\n"
	      "\n"
	      "DESCRIPTION\n"
	      "  Generates a new random key for LEVEL, re-encrypts every folder metadata,\n"
	      "  name and file of that level under it, then destroys the old key. Every\n"
	      "  keyslot that holds the level opens the new key (no passphrase changes).\n"
	      "  On a store mounted for writing, the rotation runs in the mount's driver\n"
	      "  (the secret goes to it over its control channel, as for unlock): open\n"
	      "  files stay open, and every operation on the vault waits until it is\n"
	      "  done. Read-only mounts of the store must be unmounted first.\n"
	      "  Interrupted (a crash, Ctrl-C of an offline run, a full disk), run it\n"
	      "  again on the unmounted store: it resumes and no file is lost; until it\n"
	      "  finishes, mounts of the store are refused. Progress is shown on a\n"
	      "  terminal.\n"
	      "  Hard links stay hard links; each run is recorded in the audit trail.\n"
	      "\n"
	      "  Objects of other levels are not touched. A copy of the store made before\n"
	      "  the rotation still opens with the old key (docs/threat-model.md).\n"
	      "\n",
	      stdout);
	cli_print_exit_codes(stdout);
}

static long long rotate_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void rotate_progress(const struct vault_rotate_stats *st, long long start)
{
	double secs = (double)(rotate_now_ns() - start) / 1e9;
	double frac = st->bytes_total ? (double)st->bytes_done / (double)st->bytes_total : 0;

	fprintf(stderr,
		"\r\033[Krotate: %llu files, %llu folders, %llu names; %.1f of %.1f MiB (%.0f%%)",
		(unsigned long long)st->files, (unsigned long long)st->dirs,
		(unsigned long long)st->names, (double)st->bytes_done / 1048576.0,
		(double)st->bytes_total / 1048576.0, frac * 100);
	if (frac > 0.01 && secs > 1)
		fprintf(stderr, ", ETA %.0f s", secs / frac - secs);
}

/* The mount point of the writable mount of store (canonical), if any. */
struct rotate_find {
	const char *store;
	char mp[PATH_MAX];
};

static int rotate_find_writer(const struct fe_mount *m, void *arg)
{
	struct rotate_find *f = arg;

	if (m->read_only || strcmp(m->source, f->store) != 0)
		return 0;
	snprintf(f->mp, sizeof(f->mp), "%s", m->mountpoint);
	return 1;
}

struct rotate_online_progress {
	bool tty, drew;
	long long start;
};

/* "FILES DIRS NAMES BYTES_DONE BYTES_TOTAL" from the driver. */
static void rotate_online_progress(const char *text, void *arg)
{
	struct rotate_online_progress *p = arg;
	struct vault_rotate_stats st = {0};
	unsigned long long v[5];

	if (!p->tty || sscanf(text, "%llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
			      &v[4]) != 5)
		return;
	st.files = v[0];
	st.dirs = v[1];
	st.names = v[2];
	st.bytes_done = v[3];
	st.bytes_total = v[4];
	rotate_progress(&st, p->start);
	p->drew = true;
}

/* The rotation in the driver of the writable mount at mp. */
static int rotate_online(const char *store, const char *mp, const char *lname,
			 const struct cli_secret_opts *so)
{
	struct rotate_online_progress p = {isatty(STDERR_FILENO), false, rotate_now_ns()};
	char verb[KR_LEVEL_NAME_MAX + 16];
	int rc;

	if (strchr(lname, ' ') || strlen(lname) > KR_LEVEL_NAME_MAX) {
		cli_err(lname, "no such level in %s", store);
		return EXIT_USAGE;
	}
	fprintf(stderr, "strongroom: %s is mounted at %s: rotating there\n", store, mp);
	snprintf(verb, sizeof(verb), "rotate %s", lname);
	rc = cli_ctl_secret_request(store, mp, verb, so, rotate_online_progress, &p,
				    ROTATE_ONLINE_TIMEOUT_SEC);
	if (p.drew)
		fputs("\r\033[K", stderr);
	return rc;
}

int cmd_rotate(int argc, char **argv)
{
	struct rotate_find find = {0};
	char canon[PATH_MAX];
	struct cli_secret_opts so = {0};
	struct kr_keyring *kr = NULL, *knew = NULL;
	struct vault_rotate *rt = NULL;
	struct vault_admin_log *alog = NULL;
	char detail[512];
	const struct vault_rotate_stats *st;
	const char *store = NULL, *lname = NULL;
	bool tty = isatty(STDERR_FILENO), drew = false;
	long long last = 0, start = rotate_now_ns();
	int rc, lock_fd[2] = {-1, -1}, err, level, i;
	unsigned slevel;
	uint32_t sgen;

	for (i = 1; i < argc; i++) {
		int c = cli_secret_opt(&so, argc, argv, &i);

		if (c < 0)
			return EXIT_USAGE;
		if (c > 0)
			continue;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			rotate_help();
			return EXIT_OK;
		} else if (argv[i][0] == '-') {
			cli_err(argv[i], "unknown option to rotate (strongroom rotate --help)");
			return EXIT_USAGE;
		} else if (!store) {
			store = argv[i];
		} else if (!lname) {
			lname = argv[i];
		} else {
			cli_err(argv[i], "unexpected argument to rotate");
			return EXIT_USAGE;
		}
	}
	if (!store || !lname) {
		cli_err("rotate", "usage: strongroom rotate STORE LEVEL [SECRET]");
		return EXIT_USAGE;
	}
	if (realpath(store, canon)) {
		find.store = canon;
		if (fe_mount_each(rotate_find_writer, &find) == 1)
			return rotate_online(store, find.mp, lname, &so);
	}
	rc = cli_unlock(store, &so, &kr);
	if (rc != EXIT_OK)
		goto out;
	level = kr_level_index(kr, lname);
	if (level < 0) {
		cli_err(lname, "no such level in %s", store);
		rc = EXIT_USAGE;
		goto out;
	}
	if (!kr_level_held(kr, (unsigned)level)) {
		cli_err(lname, "this secret does not hold the level's key");
		rc = EXIT_FAIL;
		goto out;
	}
	rc = cli_store_lock(store, true, lock_fd);
	if (rc != EXIT_OK)
		goto out;

	/* Step 1, or where an interrupted run stopped. */
	err = vault_rotate_state_read(store, &slevel, &sgen);
	if (err == 0 && slevel != (unsigned)level) {
		const struct kr_config *cfg = kr_keyring_config(kr);
		cli_err(store,
			"the rotation of level %s is unfinished: run strongroom rotate %s %s first",
			slevel < cfg->nlevels ? cfg->levels[slevel].name : "?", store,
			slevel < cfg->nlevels ? cfg->levels[slevel].name : "?");
		rc = EXIT_STORE;
		goto out;
	}
	if (err == 0 || err == -ENOENT) {
		/* Fail closed: no rotation without its records in the trail. */
		int e = vault_admin_log_open(store, kr, &alog);

		if (e < 0) {
			cli_err(store, "cannot open the audit trail %s/audit: %s", store,
				e == -EBUSY ? "in use by another writer" : strerror(-e));
			rc = cli_exit_for(e) == EXIT_OK ? EXIT_FAIL : cli_exit_for(e);
			goto out;
		}
	}
	if (err == 0 && kr_level_generation(kr, (unsigned)level) == sgen &&
	    !kr_rotate_next_generation(kr, (unsigned)level)) {
		/* Interrupted between steps 4 and 5. */
		snprintf(detail, sizeof(detail),
			 "end: key generation %u, finished after an interruption; the old key is "
			 "destroyed",
			 sgen);
		err = vault_admin_log_write(alog, AUDIT_EV_ROTATE, "/", NULL, lname, 0, 0, detail);
		if (err == 0)
			err = vault_rotate_state_remove(store);
		if (err == 0)
			printf("rotation of level %s finished (key generation %u)\n", lname, sgen);
		rc = err ? cli_exit_for(err) : EXIT_OK;
		goto out;
	}
	if (err == -ENOENT) {
		if (kr_rotate_next_generation(kr, (unsigned)level))
			sgen = kr_rotate_next_generation(kr, (unsigned)level);
		else
			sgen = kr_level_generation(kr, (unsigned)level) + 1;
		snprintf(detail, sizeof(detail), "start: key generation %u -> %u",
			 kr_level_generation(kr, (unsigned)level), sgen);
		err = vault_admin_log_write(alog, AUDIT_EV_ROTATE, "/", NULL, lname, 0, 0, detail);
		if (err == 0)
			err = vault_rotate_state_write(store, (unsigned)level, sgen);
	} else if (err == 0) {
		fprintf(stderr, "strongroom: %s: resuming the rotation of level %s\n", store,
			lname);
		snprintf(detail, sizeof(detail), "resume: key generation %u -> %u",
			 kr_level_generation(kr, (unsigned)level), sgen);
		err = vault_admin_log_write(alog, AUDIT_EV_ROTATE, "/", NULL, lname, 0, 0, detail);
	}
	if (err < 0) {
		cli_err(store, "rotation state: %s", strerror(-err));
		rc = cli_exit_for(err);
		goto out;
	}
	/* Step 2. */
	err = kr_rotate_begin(store, kr, (unsigned)level);
	if (err == 0)
		err = kr_keyring_next(kr, (unsigned)level, &knew);
	if (err < 0) {
		cli_err(store, "key bag: %s", strerror(-err));
		rc = cli_exit_for(err);
		goto out;
	}
	/* Step 3. */
	err = vault_rotate_open(store, kr, knew, (unsigned)level, &rt);
	while (err == 0 && (err = vault_rotate_step(rt)) > 0) {
		if (tty && rotate_now_ns() - last > ROTATE_PROGRESS_NS) {
			rotate_progress(vault_rotate_stats(rt), start);
			drew = true;
			last = rotate_now_ns();
		}
		err = 0;
	}
	if (drew)
		fputs("\r\033[K", stderr);
	if (err < 0) {
		st = rt ? vault_rotate_stats(rt) : NULL;
		snprintf(detail, sizeof(detail), "stopped at %s: %s; resumes when run again",
			 rt && vault_rotate_where(rt)[0] ? vault_rotate_where(rt) : "the start",
			 strerror(-err));
		(void)!vault_admin_log_write(alog, AUDIT_EV_ROTATE, "/", NULL, lname,
					     st ? st->bytes_done : 0, err, detail);
		cli_err(rt && vault_rotate_where(rt)[0] ? vault_rotate_where(rt) : store,
			"%s; the rotation stopped and resumes when run again%s", strerror(-err),
			err == -EBADMSG ? " (run strongroom fsck --repair first)" : "");
		rc = err == -EBADMSG ? EXIT_DAMAGE : cli_exit_for(err);
		if (rc == EXIT_OK)
			rc = EXIT_FAIL;
		goto out;
	}
	st = vault_rotate_stats(rt);
	/* Steps 4 and 5; the end is recorded before the state file goes (a
	 * rerun after a failed record takes the 4-5 branch above). */
	err = kr_rotate_finish(store, kr, (unsigned)level);
	if (err == 0) {
		snprintf(detail, sizeof(detail),
			 "end: key generation %u; %llu files, %llu folders, %llu names "
			 "re-encrypted, %llu already done; the old key is destroyed",
			 kr_level_generation(kr, (unsigned)level), (unsigned long long)st->files,
			 (unsigned long long)st->dirs, (unsigned long long)st->names,
			 (unsigned long long)st->done);
		err = vault_admin_log_write(alog, AUDIT_EV_ROTATE, "/", NULL, lname,
					    st->bytes_total, 0, detail);
	}
	if (err == 0)
		err = vault_rotate_state_remove(store);
	if (err < 0) {
		cli_err(store, "finishing the rotation: %s (run it again)", strerror(-err));
		rc = cli_exit_for(err);
		goto out;
	}
	printf("level %s rotated to key generation %u: %llu files, %llu folders, %llu names "
	       "re-encrypted"
	       " (%llu already done before); the old key is destroyed\n",
	       lname, kr_level_generation(kr, (unsigned)level), (unsigned long long)st->files,
	       (unsigned long long)st->dirs, (unsigned long long)st->names,
	       (unsigned long long)st->done);
	rc = EXIT_OK;
out:
	vault_rotate_close(rt);
	if (vault_admin_log_close(alog) < 0 && rc == EXIT_OK) {
		cli_err(store, "closing the audit trail failed");
		rc = EXIT_FAIL;
	}
	cli_store_unlock(lock_fd, true);
	kr_keyring_free(knew);
	kr_keyring_free(kr);
	return rc;
}
