/* main.c - `strongroom COMMAND ...`: global options and dispatch.
 *
 * Each command lives in its own cmd_*.c (cli.h). Commands built elsewhere
 * are weak references, so a build without them still links and says so
 * instead of failing to build. Invariants: exactly one cmd_* runs per
 * invocation; its return value is the process exit code (cli.h); a usage
 * error prints one line and exits EXIT_USAGE.
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "cli.h"

extern int cmd_mount(int argc, char **argv) __attribute__((weak));
extern int cmd_unmount(int argc, char **argv) __attribute__((weak));
extern int cmd_status(int argc, char **argv) __attribute__((weak));
extern int cmd_xray(int argc, char **argv) __attribute__((weak));
/* Commands of the full command line that other files provide when built. */
extern int cmd_level(int argc, char **argv) __attribute__((weak));
extern int cmd_policy(int argc, char **argv) __attribute__((weak));
extern int cmd_audit(int argc, char **argv) __attribute__((weak));
extern int cmd_fsck(int argc, char **argv) __attribute__((weak));
extern int cmd_rotate(int argc, char **argv) __attribute__((weak));
extern int cmd_freeze(int argc, char **argv) __attribute__((weak));
extern int cmd_unfreeze(int argc, char **argv) __attribute__((weak));
extern int cmd_lock(int argc, char **argv) __attribute__((weak));
extern int cmd_unlock(int argc, char **argv) __attribute__((weak));
extern int cmd_report(int argc, char **argv) __attribute__((weak));
extern int cmd_bench(int argc, char **argv) __attribute__((weak));
extern int cmd_import(int argc, char **argv) __attribute__((weak));
extern int cmd_export(int argc, char **argv) __attribute__((weak));

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
    {"init", cmd_init, "create a vault in an empty or missing STORE"},
    {"mount", cmd_mount, "mount a vault's STORE at MOUNTPOINT"},
    {"unmount", cmd_unmount, "unmount a mounted vault"},
    {"status", cmd_status, "show mounted vaults"},
    {"passwd", cmd_passwd, "change the passphrase of the slot a secret opens"},
    {"keyslot", cmd_keyslot, "list, add, remove or test keyslots"},
    {"level", cmd_level, "get or set the classification level of a path"},
    {"policy", cmd_policy, "apply or show the role policy of a mounted vault"},
    {"audit", cmd_audit, "show, verify or follow the audit trail"},
    {"fsck", cmd_fsck, "check a store for damage"},
    {"rotate", cmd_rotate, "replace the key of a level"},
    {"freeze", cmd_freeze, "deny a user every access on a mounted vault"},
    {"unfreeze", cmd_unfreeze, "lift a freeze"},
    {"lock", cmd_lock, "drop a level's key from a mounted vault"},
    {"unlock", cmd_unlock, "give a locked level back to a mounted vault"},
    {"report", cmd_report, "summarise a store"},
    {"bench", cmd_bench, "measure throughput against other filesystems"},
    {"import", cmd_import, "copy a folder tree into a mounted vault"},
    {"export", cmd_export, "copy a folder tree out of a mounted vault"},
    {"xray", cmd_xray, "decrypt one store file offline, for support"},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
	fputs("Usage: strongroom COMMAND [ARGS...]\n"
	      "       strongroom COMMAND --help\n"
	      "       strongroom --help | --version\n"
	      "\n"
	      "Strongroom keeps documents encrypted, compressed, classified and audited in a\n"
	      "store directory, and mounts them decrypted with FUSE.\n"
	      "\n"
	      "COMMANDS\n",
	      f);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-9s %s%s\n", commands[i].name, commands[i].summary,
			commands[i].run ? "" : " (not in this build)");
	fputs("\n"
	      "SECRETS\n"
	      "  Commands that unlock a vault take --passphrase-file F (its first line),\n"
	      "  --extpass CMD (the first line CMD prints) or --recovery-key-file F; with\n"
	      "  none of them they ask on the terminal without echo. Never on the command line.\n"
	      "  A passphrase may come with --key-file F, for a keyslot that needs both.\n"
	      "\n",
	      f);
	cli_print_exit_codes(f);
}

int main(int argc, char **argv)
{
	const char *name;

	if (sodium_init() < 0) {
		cli_err("libsodium", "cannot initialise");
		return EXIT_FAIL;
	}
	if (argc < 2) {
		cli_err("usage", "strongroom COMMAND [ARGS...] (strongroom --help lists commands)");
		return EXIT_USAGE;
	}
	name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
		if (strcmp(name, "help") == 0 && argc > 2) {
			/* "strongroom help CMD" is "strongroom CMD --help". */
			char *sub[] = {argv[2], (char *)"--help", NULL};
			for (size_t i = 0; i < NCOMMANDS; i++)
				if (strcmp(commands[i].name, argv[2]) == 0 && commands[i].run)
					return commands[i].run(2, sub);
			cli_err(argv[2], "unknown command (strongroom --help lists commands)");
			return EXIT_USAGE;
		}
		usage(stdout);
		return EXIT_OK;
	}
	if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
		printf("strongroom 0.1.0 (format version 1, libsodium %s)\n",
		       sodium_version_string());
		return EXIT_OK;
	}
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (strcmp(commands[i].name, name) != 0)
			continue;
		if (!commands[i].run) {
			fprintf(stderr, "strongroom: %s: not available in this build\n", name);
			return EXIT_FAIL;
		}
		return commands[i].run(argc - 1, argv + 1);
	}
	cli_err(name, "unknown command (strongroom --help lists commands)");
	return EXIT_USAGE;
}
