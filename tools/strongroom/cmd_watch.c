/* cmd_watch.c - strongroom freeze|unfreeze MOUNTPOINT USER,
 *               strongroom lock MOUNTPOINT --level L,
 *               strongroom unlock MOUNTPOINT [--passphrase-file F | --extpass CMD |
 *                                             --recovery-key-file F]
 *
 * Incident response on a mounted vault, through its driver's control
 * channel (control.h): only root or the vault's admin group is served, and
 * the driver records each action in the audit trail. USER is a name or a
 * numeric uid. unlock reads the secret like every other command (never from
 * argv) and hands it to the driver, which unlocks the store with it and
 * takes back every locked level that secret's keyslot holds.
 *
 * Freezes and locks are saved in STORE/watch.state and hold again at the
 * next mount. `unlock STORE` (a store, not a mount point) clears the saved
 * locks of the levels the secret's keyslot holds while no writer is
 * mounted; `unlock STORE --reset` with an admin secret writes a new state
 * with no freezes and no locks, the way back from a state file that failed
 * authentication.
 *
 * Exit codes (cli.h): 0 done; 2 usage; 3 the secret opens no keyslot;
 * 5 not a mounted vault, or its driver does not answer; 1 refused or failed
 * (the driver's reason is printed).
 */
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cli.h"
#include "control.h"
#include "strongroom/admin.h"
#include "strongroom/audit.h"
#include "strongroom/frontend.h"

/* unlock runs Argon2id in the driver: time enough for a slow machine. */
#define WT_TIMEOUT_SEC 120

/* The canonical mount point of a mounted vault, or an exit code. */
static int wt_mountpoint(const char *arg, char canon[PATH_MAX])
{
	struct fe_mount m;

	if (!realpath(arg, canon)) {
		cli_err(arg, "%s", strerror(errno));
		return EXIT_MOUNTPOINT;
	}
	if (fe_mount_find(canon, &m) != 0 || strcmp(m.fstype, FE_FSTYPE) != 0) {
		cli_err(arg, "not a mounted vault");
		return EXIT_MOUNTPOINT;
	}
	return EXIT_OK;
}

/* Send req (and a secret) to the driver of mp; print its answer. */
static int wt_send_progress(const char *arg, const char *mp, const char *req, const char *secret,
			    size_t len, ctl_progress_fn on_progress, void *parg, int timeout_sec)
{
	char reply[CTL_REPLY_MAX];
	int r = ctl_request_progress(mp, req, secret, len, on_progress, parg, reply, sizeof(reply),
				     timeout_sec);

	if (r == 0) {
		printf("%s\n", reply[2] == ' ' ? reply + 3 : reply);
		return EXIT_OK;
	}
	if (r == -ENOENT || r == -ECONNREFUSED || r == -ECONNRESET || r == -EAGAIN) {
		cli_err(arg, "the vault's driver does not answer on its control channel");
		return EXIT_MOUNTPOINT;
	}
	if (r == -EACCES) {
		cli_err(arg, "cannot reach the control channel: %s", strerror(-r));
		return EXIT_FAIL;
	}
	cli_err(arg, "%s", reply[0] ? reply : strerror(-r));
	return r == -EKEYREJECTED ? EXIT_BADSECRET : EXIT_FAIL;
}

static int wt_send(const char *arg, const char *mp, const char *req)
{
	return wt_send_progress(arg, mp, req, NULL, 0, NULL, NULL, WT_TIMEOUT_SEC);
}

static int wt_user(const char *name, uid_t *uid)
{
	struct passwd *pw = getpwnam(name);
	char *end;
	unsigned long u;

	if (pw) {
		*uid = pw->pw_uid;
		return 0;
	}
	errno = 0;
	u = strtoul(name, &end, 10);
	if (errno || end == name || *end || u > 0xfffffffeul)
		return -ENOENT;
	*uid = (uid_t)u;
	return 0;
}

static int wt_freeze(int argc, char **argv, bool on)
{
	char mp[PATH_MAX], req[64];
	uid_t uid;
	int rc;

	if (argc == 2 && strcmp(argv[1], "--help") == 0) {
		printf("Usage: strongroom %s MOUNTPOINT USER\n", argv[0]);
		return EXIT_OK;
	}
	if (argc != 3) {
		cli_err(argv[0], "usage: strongroom %s MOUNTPOINT USER", argv[0]);
		return EXIT_USAGE;
	}
	if (wt_user(argv[2], &uid) != 0) {
		cli_err(argv[2], "no such user");
		return EXIT_USAGE;
	}
	rc = wt_mountpoint(argv[1], mp);
	if (rc != EXIT_OK)
		return rc;
	snprintf(req, sizeof(req), "%s %u", on ? "freeze" : "unfreeze", (unsigned)uid);
	return wt_send(argv[1], mp, req);
}

int cmd_freeze(int argc, char **argv)
{
	return wt_freeze(argc, argv, true);
}

int cmd_unfreeze(int argc, char **argv)
{
	return wt_freeze(argc, argv, false);
}

int cmd_lock(int argc, char **argv)
{
	const char *arg = NULL, *level = NULL;
	char mp[PATH_MAX], req[128];
	int rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0) {
			printf("Usage: strongroom lock MOUNTPOINT --level LEVEL\n");
			return EXIT_OK;
		} else if (strcmp(argv[i], "--level") == 0 && i + 1 < argc) {
			level = argv[++i];
		} else if (strncmp(argv[i], "--level=", 8) == 0) {
			level = argv[i] + 8;
		} else if (argv[i][0] != '-' && !arg) {
			arg = argv[i];
		} else {
			cli_err(argv[i], "unexpected argument to lock");
			return EXIT_USAGE;
		}
	}
	if (!arg || !level || !*level || strchr(level, ' ') || strlen(level) > KR_LEVEL_NAME_MAX) {
		cli_err("lock", "usage: strongroom lock MOUNTPOINT --level LEVEL");
		return EXIT_USAGE;
	}
	rc = wt_mountpoint(arg, mp);
	if (rc != EXIT_OK)
		return rc;
	snprintf(req, sizeof(req), "lock %s", level);
	return wt_send(arg, mp, req);
}

/* verb ("unlock", "rotate LEVEL") with the secret of so, to the driver of
 * mp: "VERB passphrase", "VERB recovery", or for a passphrase with a key
 * file one payload, the passphrase first ("VERB passphrase+keyfile:N", N
 * its length), in sodium_malloc'd memory wiped after sending. */
int cli_ctl_secret_request(const char *arg, const char *mp, const char *verb,
			   const struct cli_secret_opts *so, ctl_progress_fn on_progress, void *parg,
			   int timeout_sec)
{
	struct cli_keyfile kf = {0};
	struct cli_secret s = {0};
	unsigned char *payload = NULL;
	size_t n = 0;
	char req[128];
	int rc;

	if (so->key_file && !so->recovery_key_file) {
		rc = cli_keyfile_read(so->key_file, &kf);
		if (rc != EXIT_OK)
			return rc;
	}
	rc = cli_secret_read(arg, so, false, &s);
	if (rc != EXIT_OK)
		goto out;
	if (!kf.bytes) {
		snprintf(req, sizeof(req), "%s %s", verb,
			 s.kind == KR_SECRET_RECOVERY ? "recovery" : "passphrase");
		rc = wt_send_progress(arg, mp, req, s.bytes, s.len, on_progress, parg, timeout_sec);
		goto out;
	}
	n = s.len + kf.len;
	if (n + sizeof req >= CTL_REQUEST_MAX) {
		cli_err(so->key_file,
			"key file too large to send to a running driver (it takes key files up "
			"to %zu bytes)",
			(size_t)CTL_REQUEST_MAX - sizeof req - s.len - 1);
		rc = EXIT_SECRETSRC;
		goto out;
	}
	payload = sodium_malloc(n);
	if (!payload) {
		cli_err(arg, "out of memory");
		rc = EXIT_FAIL;
		goto out;
	}
	memcpy(payload, s.bytes, s.len);
	memcpy(payload + s.len, kf.bytes, kf.len);
	snprintf(req, sizeof(req), "%s passphrase+keyfile:%zu", verb, s.len);
	rc = wt_send_progress(arg, mp, req, (const char *)payload, n, on_progress, parg,
			      timeout_sec);
out:
	if (payload) {
		sodium_memzero(payload, n);
		sodium_free(payload);
	}
	cli_secret_free(&s);
	cli_keyfile_free(&kf);
	return rc;
}

/* True if path is a store (holds a vault config), not a mount point. */
static bool wt_is_store(const char *path)
{
	char conf[PATH_MAX];
	struct stat st;

	if (snprintf(conf, sizeof(conf), "%s/%s", path, KR_CONFIG_NAME) >= (int)sizeof(conf))
		return false;
	return lstat(conf, &st) == 0 && S_ISREG(st.st_mode);
}

/* unlock STORE [--reset]: the saved state, with no writer mounted. */
static int wt_unlock_store(const char *store, const struct cli_secret_opts *so, bool reset)
{
	struct kr_keyring *kr = NULL;
	struct vault_admin_log *alog = NULL;
	struct kr_watch_state st;
	const struct kr_config *cfg;
	char detail[256];
	size_t used;
	int fds[2] = {-1, -1};
	uint32_t held = 0, freed;
	int rc, err;

	rc = cli_store_lock(store, false, fds);
	if (rc != EXIT_OK)
		return rc;
	rc = cli_unlock(store, so, &kr);
	if (rc != EXIT_OK)
		goto out;
	/* Fail closed: no offline unlock without its record in the trail. */
	err = vault_admin_log_open(store, kr, &alog);
	if (err < 0) {
		cli_err(store, "cannot open the audit trail %s/audit: %s", store,
			err == -EBUSY ? "in use by another writer" : strerror(-err));
		rc = cli_exit_for(err) == EXIT_OK ? EXIT_FAIL : cli_exit_for(err);
		goto out;
	}
	cfg = kr_keyring_config(kr);
	err = kr_watch_load(store, kr, &st);
	if (reset) {
		if (!kr_keyring_is_admin(kr)) {
			cli_err(store, "unlock --reset needs an admin secret (a keyslot opening "
				       "every level)");
			rc = EXIT_FAIL;
			goto out;
		}
		memset(&st, 0, sizeof(st));
		err = vault_admin_log_write(alog, AUDIT_EV_KEY_USE, "/", NULL, NULL, 0, 0,
					    KR_WATCH_NAME " reset offline: no user frozen, no "
							  "level locked");
		if (err == 0)
			err = kr_watch_save(store, kr, &st);
		if (err) {
			cli_err(store, "cannot write %s: %s", KR_WATCH_NAME, strerror(-err));
			rc = cli_exit_for(err);
			goto out;
		}
		printf("%s/%s reset: no user is frozen and no level is locked.\n", store,
		       KR_WATCH_NAME);
		rc = EXIT_OK;
		goto out;
	}
	if (err == -EUCLEAN || err == -EOPNOTSUPP) {
		cli_err(store,
			"%s failed authentication (edited, damaged or from another vault); "
			"strongroom unlock STORE --reset with an admin secret writes a new one",
			KR_WATCH_NAME);
		rc = EXIT_STORE;
		goto out;
	}
	if (err && err != -ENOENT) {
		cli_err(store, "cannot read %s: %s", KR_WATCH_NAME, strerror(-err));
		rc = cli_exit_for(err);
		goto out;
	}
	if (err == -ENOENT || st.locked == 0) {
		cli_err(store, "no level is locked");
		rc = EXIT_FAIL;
		goto out;
	}
	for (unsigned l = 0; l < cfg->nlevels; l++)
		if (kr_level_held(kr, l))
			held |= 1u << l;
	freed = st.locked & held;
	if (!freed) {
		cli_err(store, "this secret's keyslot holds none of the locked levels");
		rc = EXIT_FAIL;
		goto out;
	}
	st.locked &= ~freed;
	used = (size_t)snprintf(detail, sizeof(detail), "offline unlock by keyslot %d:",
				kr_keyring_slot(kr));
	for (unsigned l = 0; l < cfg->nlevels && used < sizeof(detail); l++)
		if (freed & (1u << l))
			used += (size_t)snprintf(detail + used, sizeof(detail) - used, " %s",
						 cfg->levels[l].name);
	err = vault_admin_log_write(alog, AUDIT_EV_KEY_USE, "/", NULL, NULL, 0, 0, detail);
	if (err == 0)
		err = kr_watch_save(store, kr, &st);
	if (err) {
		cli_err(store, "cannot write %s: %s", KR_WATCH_NAME, strerror(-err));
		rc = cli_exit_for(err);
		goto out;
	}
	printf("ok");
	for (unsigned l = 0; l < cfg->nlevels; l++)
		if (freed & (1u << l))
			printf(" %s", cfg->levels[l].name);
	printf(" unlocked (opens at the next mount)\n");
	rc = EXIT_OK;
out:
	if (vault_admin_log_close(alog) < 0 && rc == EXIT_OK) {
		cli_err(store, "closing the audit trail failed");
		rc = EXIT_IO;
	}
	kr_keyring_free(kr);
	cli_store_unlock(fds, false);
	return rc;
}

int cmd_unlock(int argc, char **argv)
{
	struct cli_secret_opts so = {0};
	const char *arg = NULL;
	char mp[PATH_MAX];
	bool reset = false;
	int rc;

	for (int i = 1; i < argc; i++) {
		int r = cli_secret_opt(&so, argc, argv, &i);

		if (r < 0)
			return EXIT_USAGE;
		if (r > 0)
			continue;
		if (strcmp(argv[i], "--help") == 0) {
			printf("Usage: strongroom unlock MOUNTPOINT|STORE [--passphrase-file F | "
			       "--extpass CMD "
			       "| --recovery-key-file F] [--key-file F]\n"
			       "       strongroom unlock STORE --reset [secret options]\n");
			return EXIT_OK;
		}
		if (strcmp(argv[i], "--reset") == 0) {
			reset = true;
			continue;
		}
		if (argv[i][0] != '-' && !arg) {
			arg = argv[i];
			continue;
		}
		cli_err(argv[i], "unexpected argument to unlock");
		return EXIT_USAGE;
	}
	if (!arg) {
		cli_err("unlock", "usage: strongroom unlock MOUNTPOINT [secret options]");
		return EXIT_USAGE;
	}
	if (wt_is_store(arg))
		return wt_unlock_store(arg, &so, reset);
	if (reset) {
		cli_err("--reset", "goes with a store, not a mount point (unmount first)");
		return EXIT_USAGE;
	}
	rc = wt_mountpoint(arg, mp);
	if (rc != EXIT_OK)
		return rc;
	return cli_ctl_secret_request(arg, mp, "unlock", &so, NULL, NULL, WT_TIMEOUT_SEC);
}
