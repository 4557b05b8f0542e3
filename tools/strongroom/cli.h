/* cli.h - shared pieces of the strongroom command line.
 *
 * Each command lives in its own cmd_*.c with a "int cmd_NAME(int argc, char
 * **argv)" entry that main.c dispatches to (argv[0] is the command name).
 * Every failure prints exactly one line to stderr, "strongroom: <file>:
 * <cause>", and returns one of the documented exit codes below (docs/cli.md).
 */
#ifndef STRONGROOM_CLI_H
#define STRONGROOM_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "control.h"
#include "strongroom/keyring.h"

enum cli_exit {
	EXIT_OK = 0,
	EXIT_FAIL = 1,       /* anything not listed below */
	EXIT_USAGE = 2,      /* bad arguments */
	EXIT_BADSECRET = 3,  /* wrong passphrase or recovery key */
	EXIT_STORE = 4,      /* store missing, corrupt, foreign, not empty, locked by a writer */
	EXIT_MOUNTPOINT = 5, /* mount point missing, not empty, busy, not a vault */
	EXIT_SECRETSRC = 6,  /* passphrase file / extpass / recovery file unreadable or empty */
	EXIT_IO = 7,         /* I/O error, disk full */
	EXIT_POLICY = 8,     /* policy file error */
	EXIT_DAMAGE = 9,     /* fsck / audit verify found damage */
};

/* Where a secret comes from: the options every secret-needing command takes. */
struct cli_secret_opts {
	const char *passphrase_file;
	const char *extpass;
	const char *recovery_key_file;
	const char *key_file; /* goes with a passphrase: a slot may need both */
};

/* Recognise option `name` with a value at argv[*i], as "name VALUE" or
 * "name=VALUE"; advances *i past a separate value. An empty value is refused.
 * @return 1 and *out set if consumed, 0 if argv[*i] is another argument, -1
 * on a missing or empty value (one line printed). */
int cli_opt_value(int argc, char **argv, int *i, const char *name, const char **out);

/* Recognise --passphrase-file F, --extpass CMD, --recovery-key-file F,
 * --key-file F (also
 * in the "--opt=value" form) at argv[*i]; advances *i past a value.
 * @return 1 if consumed, 0 if not a secret option, -1 on a missing value
 * (message printed). */
int cli_secret_opt(struct cli_secret_opts *o, int argc, char **argv, int *i);

/* Unlock store with the secret the options name (or a no-echo TTY prompt).
 * @return EXIT_OK and *out owned by the caller, or an exit code after
 * printing one line naming the file and cause. */
int cli_unlock(const char *store, const struct cli_secret_opts *o, struct kr_keyring **out);

/* One error line: "strongroom: <what>: <why>". */
void cli_err(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Map a -errno from the library to an exit code. */
int cli_exit_for(int err);

/* A secret read into sodium_malloc'd memory; cli_secret_free wipes it. */
struct cli_secret {
	enum kr_secret_kind kind;
	char *bytes; /* owned, NUL-terminated */
	size_t len;
};

/* Read the secret the options name, or prompt on the terminal (twice when
 * confirm, for a new passphrase). what names the store in messages.
 * @return EXIT_OK, or an exit code after printing one line. */
int cli_secret_read(const char *what, const struct cli_secret_opts *o, bool confirm,
		    struct cli_secret *out);
/* A new passphrase: the first line of file, or asked twice on the terminal.
 * @return EXIT_OK, or an exit code after printing one line. */
int cli_new_passphrase(const char *what, const char *file, struct cli_secret *out);
/* Wipes and frees; accepts an empty one. */
void cli_secret_free(struct cli_secret *s);

/* The whole of a key file (KR_KEYFILE_MIN_BYTES..MAX_BYTES), in
 * sodium_malloc'd memory; cli_keyfile_free wipes it. Never logged. */
struct cli_keyfile {
	unsigned char *bytes; /* owned */
	size_t len;
	size_t cap;
};
/* Read file. @return EXIT_OK, or EXIT_SECRETSRC after one line naming the
 * file (missing, unreadable, a directory, too short or too long). */
int cli_keyfile_read(const char *file, struct cli_keyfile *out);
/* Wipes and frees; accepts an empty one. */
void cli_keyfile_free(struct cli_keyfile *k);

/* The exit-code table, for --help texts. */
void cli_print_exit_codes(FILE *f);

/* Send "VERB KIND" and so's secret (read as every command reads it) to the
 * driver of the mounted vault at mp (canonical), print its answer (cmd_watch.c).
 * on_progress gets its progress lines. @return an exit code. */
int cli_ctl_secret_request(const char *arg, const char *mp, const char *verb,
			   const struct cli_secret_opts *so, ctl_progress_fn on_progress, void *parg,
			   int timeout_sec);

int cmd_init(int argc, char **argv);
int cmd_passwd(int argc, char **argv);
int cmd_keyslot(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_unmount(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_xray(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_fsck(int argc, char **argv);
int cmd_rotate(int argc, char **argv);

/* The store locks for the offline admin commands (cmd_fsck.c): without
 * exclusive, no writer may be mounted (read-only mounts may); with it, no
 * mount at all. @return EXIT_OK and fds (-1 where none was needed), or
 * EXIT_STORE after one line naming the writer's pid. */
int cli_store_lock(const char *store, bool exclusive, int fds[2]);
void cli_store_unlock(int fds[2], bool exclusive);
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_level(int argc, char **argv);
int cmd_policy(int argc, char **argv);
/* Incident response (cmd_watch.c, cmd_report.c). */
int cmd_freeze(int argc, char **argv);
int cmd_unfreeze(int argc, char **argv);
int cmd_lock(int argc, char **argv);
int cmd_unlock(int argc, char **argv);
int cmd_report(int argc, char **argv);
/* New passphrases (cli_quality.c): init, passwd and keyslot add refuse a
 * weak one with its reason (kr_pass_check) unless --force set
 * cli_pass_force. @return EXIT_OK, or EXIT_SECRETSRC after one line. */
extern bool cli_pass_force;
int cli_pass_quality(const char *what, const struct cli_secret *s);

#endif
