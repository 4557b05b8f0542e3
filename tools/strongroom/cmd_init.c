/* cmd_init.c - `strongroom init` (create a vault) and `strongroom passwd`
 * (change the passphrase of the slot a secret opens).
 *
 * Invariants:
 *  - every argument is checked, and the store checked for emptiness, before
 *    a passphrase is asked for and before anything is written;
 *  - the recovery key is printed once, to stdout, and wiped;
 *  - passwd adds the new slot before it removes the old one, so a crash in
 *    between leaves both passphrases working, never neither.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "cli.h"

static void init_help(void)
{
	fputs("NAME\n"
	      "  strongroom init - create a vault\n"
	      "\n"
	      "SYNOPSIS\n"
	      "  strongroom init STORE [--passphrase-file F | --extpass CMD] [--key-file F]\n"
	      "                  [--levels L1,L2,...] [--chunk-size N]\n"
	      "\n"
	      "DESCRIPTION\n"
	      "  Creates a vault in STORE, which must be missing (its parent must exist) or an\n"
	      "  empty directory. Writes STORE/strongroom.conf, a passphrase keyslot and a\n"
	      "  recovery keyslot, both opening every level, and prints the recovery key once.\n"
	      "  Without --passphrase-file or --extpass the passphrase is asked twice on the\n"
	      "  terminal.\n"
	      "\n"
	      "OPTIONS\n"
	      "  --passphrase-file F  the passphrase is the first line of F\n"
	      "  --extpass CMD        the passphrase is the first line CMD prints (/bin/sh -c)\n"
	      "  --key-file F         the passphrase slot needs the bytes of F too (16 bytes\n"
	      "                       to 1 MiB): keep F apart from the passphrase\n"
	      "  --levels L1,L2,...   classification levels, lowest first (default\n"
	      "                       public,internal,confidential,restricted); names are\n"
	      "                       [a-z][a-z0-9_-]*, at most 31 characters, at most 8 levels\n"
	      "  --chunk-size N       plaintext bytes per chunk, a power of two from 4096 to\n"
	      "                       1048576; K and M suffixes allowed (default 64K)\n"
	      "\n"
	      "  SR_KDF=test in the environment selects the cheapest Argon2id cost (tests only).\n"
	      "\n",
	      stdout);
	cli_print_exit_codes(stdout);
}

static void passwd_help(void)
{
	fputs("NAME\n"
	      "  strongroom passwd - change a passphrase\n"
	      "\n"
	      "SYNOPSIS\n"
	      "  strongroom passwd STORE [--passphrase-file F | --extpass CMD | "
	      "--recovery-key-file F]\n"
	      "                    [--key-file F] [--new-passphrase-file F] [--new-key-file F]\n"
	      "\n"
	      "DESCRIPTION\n"
	      "  Unlocks STORE with the current secret and gives the keyslot it opens a new\n"
	      "  passphrase: a new slot with the same levels is written, then the old slot is\n"
	      "  removed. Unlocked with the recovery key, passwd adds a passphrase slot opening\n"
	      "  every level and keeps the recovery slot. Without --new-passphrase-file the new\n"
	      "  passphrase is asked twice on the terminal.\n"
	      "\n"
	      "  Copies of the store made before (backups) still open with the old passphrase.\n"
	      "\n"
	      "OPTIONS\n"
	      "  --passphrase-file F, --extpass CMD, --recovery-key-file F\n"
	      "                          the current secret (else asked on the terminal)\n"
	      "  --key-file F            the current slot's key file; the new slot needs it too\n"
	      "  --new-passphrase-file F the new passphrase is the first line of F\n"
	      "  --new-key-file F        the new slot needs the bytes of F instead\n"
	      "\n",
	      stdout);
	cli_print_exit_codes(stdout);
}

static bool is_help(const char *a)
{
	return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* Parse "65536", "64K", "1M". @return 0 or -EINVAL. */
static int parse_size(const char *s, uint32_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -EINVAL;
	if (*end == 'K' || *end == 'k') {
		v <<= 10;
		end++;
	} else if (*end == 'M' || *end == 'm') {
		v <<= 20;
		end++;
	}
	if (*end || v > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/* The store must be missing (with an existing parent) or an empty directory. */
static int init_store_check(const char *store)
{
	struct stat st;
	DIR *d;
	struct dirent *e;
	int found = 0;

	if (lstat(store, &st) != 0) {
		char parent[4096], *slash;
		if (errno != ENOENT) {
			cli_err(store, "%s", strerror(errno));
			return EXIT_STORE;
		}
		snprintf(parent, sizeof parent, "%s", store);
		slash = strrchr(parent, '/');
		if (slash) {
			if (slash == parent)
				slash[1] = '\0';
			else
				*slash = '\0';
			if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode)) {
				cli_err(store, "parent directory %s does not exist", parent);
				return EXIT_STORE;
			}
		}
		return EXIT_OK;
	}
	if (!S_ISDIR(st.st_mode)) {
		cli_err(store, "exists and is not a directory");
		return EXIT_STORE;
	}
	d = opendir(store);
	if (!d) {
		cli_err(store, "%s", strerror(errno));
		return EXIT_STORE;
	}
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			found = 1;
	closedir(d);
	if (found) {
		cli_err(store, "not empty (a new vault needs an empty or missing directory)");
		return EXIT_STORE;
	}
	return EXIT_OK;
}

int cmd_init(int argc, char **argv)
{
	struct cli_secret_opts so = {0};
	struct cli_secret pass = {0};
	struct cli_keyfile kf = {0};
	struct kr_config cfg;
	struct kr_kdf_params kdf;
	struct kr_keyring *kr = NULL;
	struct kr_secret ks;
	char recovery[KR_RECOVERY_TEXT_BYTES];
	const char *store = NULL, *levels = NULL, *chunk = NULL;
	uint32_t chunk_size = KR_CHUNK_SIZE_DEFAULT;
	int rc;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int r;
		if (is_help(a)) {
			init_help();
			return EXIT_OK;
		}
		r = cli_secret_opt(&so, argc, argv, &i);
		if (r < 0)
			return EXIT_USAGE;
		if (r > 0)
			continue;
		if ((r = cli_opt_value(argc, argv, &i, "--levels", &levels)) != 0 ||
		    (r = cli_opt_value(argc, argv, &i, "--chunk-size", &chunk)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
		} else if (strcmp(a, "--force") == 0) {
			cli_pass_force = true; /* a weak passphrase (cli_quality.c) */
		} else if (a[0] == '-' && a[1] != '\0') {
			cli_err(a, "unknown option to init (see strongroom init --help)");
			return EXIT_USAGE;
		} else if (!store) {
			store = a;
		} else {
			cli_err(a, "unexpected argument to init (see strongroom init --help)");
			return EXIT_USAGE;
		}
	}
	if (!store) {
		cli_err("init",
			"usage: strongroom init STORE [--passphrase-file F | --extpass CMD] "
			"[--levels L1,L2,...] [--chunk-size N]");
		return EXIT_USAGE;
	}
	if (so.recovery_key_file) {
		cli_err("--recovery-key-file", "init makes a new recovery key; it takes none");
		return EXIT_USAGE;
	}
	kr_config_default(&cfg);
	if (levels && kr_config_set_levels(&cfg, levels) != 0) {
		cli_err(levels,
			"bad level list (names [a-z][a-z0-9_-]*, up to 31 characters, "
			"1 to %d levels, all different)",
			KR_MAX_LEVELS);
		return EXIT_USAGE;
	}
	if (chunk && (parse_size(chunk, &chunk_size) != 0 ||
		      kr_config_set_chunk_size(&cfg, chunk_size) != 0)) {
		cli_err(chunk, "bad chunk size (a power of two from 4096 to 1048576)");
		return EXIT_USAGE;
	}
	rc = init_store_check(store);
	if (rc != EXIT_OK)
		return rc;
	/* --key-file: slot 0 needs the passphrase and this file. */
	if (so.key_file) {
		rc = cli_keyfile_read(so.key_file, &kf);
		if (rc != EXIT_OK)
			return rc;
	}
	rc = cli_secret_read(store, &so, true, &pass);
	if (rc == EXIT_OK)
		rc = cli_pass_quality(store, &pass);
	if (rc != EXIT_OK) {
		cli_secret_free(&pass);
		cli_keyfile_free(&kf);
		return rc;
	}
	kr_kdf_params_default(&kdf);
	memset(&ks, 0, sizeof ks);
	ks.kind = KR_SECRET_PASSPHRASE;
	ks.bytes = pass.bytes;
	ks.len = pass.len;
	ks.keyfile = kf.bytes;
	ks.keyfile_len = kf.len;
	rc = kr_vault_create(store, &cfg, &ks, &kdf, recovery, &kr);
	cli_secret_free(&pass);
	cli_keyfile_free(&kf);
	if (rc) {
		sodium_memzero(recovery, sizeof recovery);
		if (rc == -ENOTEMPTY || rc == -EEXIST)
			cli_err(store,
				"not empty (a new vault needs an empty or missing directory)");
		else
			cli_err(store, "cannot create the vault: %s", strerror(-rc));
		return cli_exit_for(rc);
	}
	printf("Created vault in %s: levels ", store);
	for (unsigned l = 0; l < cfg.nlevels; l++)
		printf("%s%s", l ? " < " : "", cfg.levels[l].name);
	printf(", %u-byte chunks.\n\n", cfg.chunk_size);
	printf("RECOVERY KEY (shown only this once):\n\n    %s\n\n", recovery);
	printf("Write it down or print it, and keep it offline and apart from the passphrase.\n"
	       "It opens every level of this vault (strongroom mount --recovery-key-file F).\n");
	fflush(stdout);
	sodium_memzero(recovery, sizeof recovery);
	kr_keyring_free(kr);
	return EXIT_OK;
}

int cmd_passwd(int argc, char **argv)
{
	struct cli_secret_opts so = {0};
	struct cli_secret pass = {0};
	struct cli_keyfile kf = {0};
	struct kr_slot_info slots[KR_MAX_SLOTS];
	struct kr_kdf_params kdf;
	struct kr_keyring *kr = NULL;
	struct kr_secret ks;
	const char *store = NULL, *newfile = NULL, *newkey = NULL;
	bool old_is_recovery = false;
	int rc, n, old, added;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int r;
		if (is_help(a)) {
			passwd_help();
			return EXIT_OK;
		}
		r = cli_secret_opt(&so, argc, argv, &i);
		if (r < 0)
			return EXIT_USAGE;
		if (r > 0)
			continue;
		if ((r = cli_opt_value(argc, argv, &i, "--new-passphrase-file", &newfile)) != 0 ||
		    (r = cli_opt_value(argc, argv, &i, "--new-key-file", &newkey)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
		} else if (strcmp(a, "--force") == 0) {
			cli_pass_force = true; /* a weak passphrase (cli_quality.c) */
		} else if (a[0] == '-' && a[1] != '\0') {
			cli_err(a, "unknown option to passwd (see strongroom passwd --help)");
			return EXIT_USAGE;
		} else if (!store) {
			store = a;
		} else {
			cli_err(a, "unexpected argument to passwd (see strongroom passwd --help)");
			return EXIT_USAGE;
		}
	}
	if (!store) {
		cli_err("passwd",
			"usage: strongroom passwd STORE [--passphrase-file F | --extpass CMD "
			"| --recovery-key-file F] [--new-passphrase-file F]");
		return EXIT_USAGE;
	}
	rc = cli_unlock(store, &so, &kr);
	if (rc != EXIT_OK)
		return rc;
	old = kr_keyring_slot(kr);
	n = kr_keyslot_list(store, slots, KR_MAX_SLOTS);
	for (int i = 0; i < n; i++)
		if (slots[i].index == old)
			old_is_recovery = slots[i].kind == KR_SECRET_RECOVERY;
	/* The new slot needs the same key file as the old one (--key-file),
	 * or the one --new-key-file names. */
	if (!newkey && !so.recovery_key_file)
		newkey = so.key_file;
	if (newkey) {
		rc = cli_keyfile_read(newkey, &kf);
		if (rc != EXIT_OK)
			goto out;
	}
	rc = cli_new_passphrase(store, newfile, &pass);
	if (rc == EXIT_OK)
		rc = cli_pass_quality(store, &pass);
	if (rc != EXIT_OK)
		goto out;
	kr_kdf_params_default(&kdf);
	memset(&ks, 0, sizeof ks);
	ks.kind = KR_SECRET_PASSPHRASE;
	ks.bytes = pass.bytes;
	ks.len = pass.len;
	ks.keyfile = kf.bytes;
	ks.keyfile_len = kf.len;
	added = kr_keyslot_add(store, kr, &ks, kr_keyring_ceiling(kr), &kdf);
	cli_secret_free(&pass);
	cli_keyfile_free(&kf);
	if (added < 0) {
		cli_err(store, "cannot write the new keyslot: %s",
			added == -ENOSPC ? "all keyslots are in use" : strerror(-added));
		rc = added == -ENOSPC ? EXIT_FAIL : cli_exit_for(added);
		goto out;
	}
	if (old_is_recovery) {
		printf("Added passphrase slot %d opening every level up to %s; the recovery key "
		       "still works.\n",
		       added, kr_keyring_config(kr)->levels[kr_keyring_ceiling(kr)].name);
		rc = EXIT_OK;
		goto out;
	}
	rc = kr_keyslot_remove(store, kr, old);
	if (rc) {
		cli_err(store,
			"new passphrase is in slot %d, but old slot %d could not be removed: %s",
			added, old, strerror(-rc));
		rc = cli_exit_for(rc);
		goto out;
	}
	printf("Passphrase changed: slot %d replaces slot %d.\n", added, old);
	rc = EXIT_OK;
out:
	cli_secret_free(&pass);
	cli_keyfile_free(&kf);
	kr_keyring_free(kr);
	return rc;
}
