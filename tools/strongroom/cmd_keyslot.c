/* cmd_keyslot.c - `strongroom keyslot list|add|remove|test STORE`.
 *
 * list needs no secret (it reads slot headers and the unauthenticated level
 * names); add, remove and test unlock the vault with the current secret
 * first. Invariants: a refused request writes nothing; every failure is
 * one line and a cli.h exit code.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void keyslot_help(void)
{
	fputs("NAME\n"
	      "  strongroom keyslot - manage the secrets that open a vault\n"
	      "\n"
	      "SYNOPSIS\n"
	      "  strongroom keyslot list STORE\n"
	      "  strongroom keyslot add STORE [--max-level L] [--new-passphrase-file F]\n"
	      "                             [--new-key-file F] [SECRET]\n"
	      "  strongroom keyslot remove STORE N [SECRET]\n"
	      "  strongroom keyslot test STORE [SECRET]\n"
	      "\n"
	      "  SECRET is the current secret: --passphrase-file F | --extpass CMD |\n"
	      "  --recovery-key-file F, else it is asked on the terminal; --key-file F gives\n"
	      "  the key file a passphrase slot may need besides its passphrase.\n"
	      "\n"
	      "DESCRIPTION\n"
	      "  list    shows every keyslot: number, kind (passphrase+keyfile for a slot\n"
	      "          that needs a key file too), the levels it opens, whether it holds\n"
	      "          the audit key (admin), and its key-derivation cost. Needs no\n"
	      "          secret; level names shown are not yet authenticated.\n"
	      "  add     adds a passphrase slot opening the levels up to L (default: the\n"
	      "          highest level the current secret opens). A slot opening every level,\n"
	      "          added with an admin secret, is an admin slot. The new passphrase is\n"
	      "          the first line of F, else asked twice on the terminal. With\n"
	      "          --key-file F (or --new-key-file F, if it differs from the current\n"
	      "          secret's) the new slot needs the passphrase and the bytes of F: neither\n"
	      "          alone opens it.\n"
	      "  remove  removes slot N. Refused for the last slot that opens every level, and\n"
	      "          for another secret's slot unless the current secret is an admin's.\n"
	      "  test    unlocks and says which slot the secret opens and its levels.\n"
	      "\n"
	      "  A removed slot still opens copies of the store made before its removal.\n"
	      "\n",
	      stdout);
	cli_print_exit_codes(stdout);
}

static const char *kind_name(enum kr_secret_kind k)
{
	switch (k) {
	case KR_SECRET_PASSPHRASE:
		return "passphrase";
	case KR_SECRET_RECOVERY:
		return "recovery";
	default:
		return "corrupt";
	}
}

static void levels_range(const struct kr_config *cfg, unsigned ceiling, char *out, size_t cap)
{
	if (!cfg || ceiling >= cfg->nlevels)
		snprintf(out, cap, "0..%u", ceiling);
	else if (ceiling == 0)
		snprintf(out, cap, "%s", cfg->levels[0].name);
	else
		snprintf(out, cap, "%s..%s", cfg->levels[0].name, cfg->levels[ceiling].name);
}

static int keyslot_list(const char *store)
{
	struct kr_slot_info slots[KR_MAX_SLOTS] = {0};
	struct kr_config cfg;
	char range[80];
	int n, rc;

	rc = kr_config_load(store, &cfg);
	if (rc == 0)
		n = kr_keyslot_list(store, slots, KR_MAX_SLOTS);
	else
		n = rc;
	if (n < 0) {
		if (n == -ENOENT)
			cli_err(store, "not a vault (no %s or %s/)", KR_CONFIG_NAME, KR_SLOT_DIR);
		else if (n == -EUCLEAN)
			cli_err(store, "corrupt vault config");
		else if (n == -EOPNOTSUPP)
			cli_err(store, "written by a newer strongroom");
		else
			cli_err(store, "%s", strerror(-n));
		return cli_exit_for(n);
	}
	printf("%-5s %-18s %-32s %-6s %s\n", "SLOT", "KIND", "LEVELS", "ADMIN", "KDF");
	for (int i = 0; i < n; i++) {
		const struct kr_slot_info *s = &slots[i];
		char kdf[64];
		if (s->kind == 0) {
			printf("%-5d %-18s %-32s %-6s %s\n", s->index, "corrupt", "-", "-", "-");
			continue;
		}
		levels_range(&cfg, s->ceiling, range, sizeof range);
		if (s->kind == KR_SECRET_PASSPHRASE)
			snprintf(kdf, sizeof kdf, "argon2id t=%llu m=%lluKiB",
				 (unsigned long long)s->kdf.opslimit,
				 (unsigned long long)(s->kdf.memlimit >> 10));
		else
			snprintf(kdf, sizeof kdf, "blake2b");
		printf("%-5d %-18s %-32s %-6s %s\n", s->index,
		       s->keyfile ? "passphrase+keyfile" : kind_name(s->kind), range,
		       s->admin ? "yes" : "no", kdf);
	}
	return EXIT_OK;
}

static int keyslot_test(const char *store, const struct cli_secret_opts *so)
{
	struct kr_keyring *kr = NULL;
	char range[80];
	int rc = cli_unlock(store, so, &kr);

	if (rc != EXIT_OK)
		return rc;
	levels_range(kr_keyring_config(kr), kr_keyring_ceiling(kr), range, sizeof range);
	printf("slot %d opens %s%s\n", kr_keyring_slot(kr), range,
	       kr_keyring_is_admin(kr) ? " (admin)" : "");
	kr_keyring_free(kr);
	return EXIT_OK;
}

static int keyslot_add(const char *store, const struct cli_secret_opts *so, const char *level,
		       const char *newfile, const char *newkey)
{
	struct kr_keyring *kr = NULL;
	struct cli_secret pass = {0};
	struct cli_keyfile kf = {0};
	struct kr_kdf_params kdf;
	struct kr_secret ks;
	const struct kr_config *cfg;
	char range[80];
	unsigned ceiling;
	int rc, idx;

	rc = cli_unlock(store, so, &kr);
	if (rc != EXIT_OK)
		return rc;
	cfg = kr_keyring_config(kr);
	ceiling = kr_keyring_ceiling(kr);
	if (level) {
		int l = kr_level_index(kr, level);
		if (l < 0) {
			char names[KR_MAX_LEVELS * (KR_LEVEL_NAME_MAX + 1) + 1] = "";
			size_t used = 0;
			for (unsigned i = 0; i < cfg->nlevels && used < sizeof names; i++)
				used += (size_t)snprintf(names + used, sizeof names - used, "%s%s",
							 i ? "," : "", cfg->levels[i].name);
			cli_err(level, "no such level in %s (levels: %s)", store, names);
			rc = EXIT_USAGE;
			goto out;
		}
		if (!kr_level_held(kr, (unsigned)l)) {
			cli_err(store, "this secret opens levels up to %s only, not %s",
				cfg->levels[ceiling].name, level);
			rc = EXIT_FAIL;
			goto out;
		}
		ceiling = (unsigned)l;
	}
	if (!newkey && !so->recovery_key_file)
		newkey = so->key_file;
	if (newkey) {
		rc = cli_keyfile_read(newkey, &kf);
		if (rc != EXIT_OK)
			goto out;
	}
	rc = cli_new_passphrase(store, newfile, &pass);
	if (rc == EXIT_OK)
		rc = cli_pass_quality(store, &pass);
	if (rc != EXIT_OK) {
		cli_secret_free(&pass);
		goto out;
	}
	kr_kdf_params_default(&kdf);
	memset(&ks, 0, sizeof ks);
	ks.kind = KR_SECRET_PASSPHRASE;
	ks.bytes = pass.bytes;
	ks.len = pass.len;
	ks.keyfile = kf.bytes;
	ks.keyfile_len = kf.len;
	idx = kr_keyslot_add(store, kr, &ks, ceiling, &kdf);
	cli_secret_free(&pass);
	cli_keyfile_free(&kf);
	if (idx < 0) {
		cli_err(store, "cannot add a keyslot: %s",
			idx == -ENOSPC ? "all keyslots are in use" : strerror(-idx));
		rc = idx == -ENOSPC ? EXIT_FAIL : cli_exit_for(idx);
		goto out;
	}
	levels_range(cfg, ceiling, range, sizeof range);
	printf("Added slot %d opening %s%s.\n", idx, range,
	       newkey ? " (needs its passphrase and the key file)" : "");
	rc = EXIT_OK;
out:
	cli_keyfile_free(&kf);
	kr_keyring_free(kr);
	return rc;
}

static int keyslot_remove(const char *store, const struct cli_secret_opts *so, const char *num)
{
	struct kr_keyring *kr = NULL;
	char *end;
	long n;
	int rc;

	errno = 0;
	n = strtol(num, &end, 10);
	if (errno || end == num || *end || n < 0 || n >= KR_MAX_SLOTS) {
		cli_err(num, "not a keyslot number (0 to %d)", KR_MAX_SLOTS - 1);
		return EXIT_USAGE;
	}
	rc = cli_unlock(store, so, &kr);
	if (rc != EXIT_OK)
		return rc;
	rc = kr_keyslot_remove(store, kr, (int)n);
	if (rc == -ENOENT) {
		cli_err(store, "there is no keyslot %ld", n);
		rc = EXIT_USAGE;
	} else if (rc == -EPERM && !kr_keyring_is_admin(kr) && n != kr_keyring_slot(kr)) {
		cli_err(store, "only an admin secret may remove another secret's keyslot");
		rc = EXIT_FAIL;
	} else if (rc == -EPERM) {
		cli_err(store,
			"keyslot %ld is the last one that opens every level; add another first", n);
		rc = EXIT_FAIL;
	} else if (rc) {
		cli_err(store, "cannot remove keyslot %ld: %s", n, strerror(-rc));
		rc = cli_exit_for(rc);
	} else {
		printf("Removed slot %ld.\n", n);
		rc = EXIT_OK;
	}
	kr_keyring_free(kr);
	return rc;
}

int cmd_keyslot(int argc, char **argv)
{
	struct cli_secret_opts so = {0};
	const char *pos[3] = {NULL, NULL, NULL};
	const char *level = NULL, *newfile = NULL, *newkey = NULL, *sub;
	bool is_remove;
	int npos = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int r;

		assert(a); /* argv[i] is a string for every i < argc */
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			keyslot_help();
			return EXIT_OK;
		}
		r = cli_secret_opt(&so, argc, argv, &i);
		if (r < 0)
			return EXIT_USAGE;
		if (r > 0)
			continue;
		if ((r = cli_opt_value(argc, argv, &i, "--max-level", &level)) != 0 ||
		    (r = cli_opt_value(argc, argv, &i, "--new-passphrase-file", &newfile)) != 0 ||
		    (r = cli_opt_value(argc, argv, &i, "--new-key-file", &newkey)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
		} else if (strcmp(a, "--force") == 0) {
			cli_pass_force = true; /* a weak passphrase (cli_quality.c) */
		} else if (a[0] == '-' && a[1] != '\0') {
			cli_err(a, "unknown option to keyslot (see strongroom keyslot --help)");
			return EXIT_USAGE;
		} else if (npos < 3) {
			pos[npos++] = a;
		} else {
			cli_err(a,
				"unexpected argument to keyslot (see strongroom keyslot --help)");
			return EXIT_USAGE;
		}
	}
	sub = pos[0];
	if (!sub || !pos[1]) {
		cli_err("keyslot", "usage: strongroom keyslot list|add|remove|test STORE ... "
				   "(see strongroom keyslot --help)");
		return EXIT_USAGE;
	}
	is_remove = strcmp(sub, "remove") == 0; /* the one taking a third argument */
	if (is_remove) {
		if (npos != 3) {
			cli_err("keyslot", "usage: strongroom keyslot remove STORE N");
			return EXIT_USAGE;
		}
	} else if (npos != 2) {
		cli_err(pos[2], "unexpected argument to keyslot %s", sub);
		return EXIT_USAGE;
	}
	if ((level || newfile || newkey) && strcmp(sub, "add") != 0) {
		cli_err(level ? "--max-level" : newfile ? "--new-passphrase-file" : "--new-key-file",
			"only keyslot add takes it");
		return EXIT_USAGE;
	}
	if (strcmp(sub, "list") == 0) {
		if (so.passphrase_file || so.extpass || so.recovery_key_file || so.key_file) {
			cli_err("keyslot list",
				"needs no secret (keyslot test says which slot one opens)");
			return EXIT_USAGE;
		}
		return keyslot_list(pos[1]);
	}
	if (strcmp(sub, "add") == 0)
		return keyslot_add(pos[1], &so, level, newfile, newkey);
	if (is_remove)
		return keyslot_remove(pos[1], &so, pos[2]);
	if (strcmp(sub, "test") == 0)
		return keyslot_test(pos[1], &so);
	cli_err(sub, "unknown keyslot command (list, add, remove or test)");
	return EXIT_USAGE;
}
