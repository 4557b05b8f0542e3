/* secret.c - where the command line gets secrets from, and how it reports
 * failures.
 *
 * A secret comes from exactly one source: --passphrase-file (its first
 * line), --extpass (the first line a shell command prints), a recovery key
 * file (--recovery-key-file), or a no-echo prompt on the controlling
 * terminal. Never from argv. A passphrase may come with a key file
 * (--key-file): its whole bytes, which a keyslot made with it needs too.
 *
 * Invariants:
 *  - secret bytes and key file bytes live only in sodium_malloc'd buffers
 *    (cli_secret, cli_keyfile), are wiped before any error message is
 *    printed, and are never printed or logged;
 *  - every failure prints exactly one line, "strongroom: <what>: <why>", and
 *    returns an exit code from cli.h;
 *  - the terminal's echo setting is restored on every path that changed it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"

/* Longest secret accepted (a passphrase's first line). */
#define SECRET_MAX 1024
/* Bytes read from a source at most, to find that first line. */
#define SECRET_READ_CAP (SECRET_MAX + 2)

void cli_err(const char *what, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "strongroom: %s: ", what);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_exit_for(int err)
{
	switch (err) {
	case 0:
		return EXIT_OK;
	case -EKEYREJECTED:
		return EXIT_BADSECRET;
	case -ENOENT:
	case -ENOTDIR:
	case -EUCLEAN:
	case -EOPNOTSUPP:
	case -ENOTEMPTY:
	case -EEXIST:
	case -ELOOP:
	case -EWOULDBLOCK:
		return EXIT_STORE;
	case -EIO:
	case -ENOSPC:
	case -EDQUOT:
	case -EROFS:
	case -EFBIG:
		return EXIT_IO;
	case -EINVAL:
		return EXIT_USAGE;
	case -EBADMSG:
		return EXIT_DAMAGE;
	default:
		return EXIT_FAIL;
	}
}

void cli_print_exit_codes(FILE *f)
{
	fputs("EXIT CODES\n"
	      "  0  success\n"
	      "  1  any other failure\n"
	      "  2  bad arguments\n"
	      "  3  wrong passphrase or recovery key\n"
	      "  4  store missing, corrupt, edited, foreign, not empty, or locked by a writer\n"
	      "  5  mount point missing, not empty, busy, or not a vault\n"
	      "  6  passphrase file, --extpass command or recovery key file unreadable or empty\n"
	      "  7  I/O error or disk full\n"
	      "  8  policy file error\n"
	      "  9  damage found (fsck, audit verify)\n",
	      f);
}

int cli_opt_value(int argc, char **argv, int *i, const char *name, const char **out)
{
	const char *a = argv[*i];
	size_t n = strlen(name);

	if (strncmp(a, name, n) != 0 || (a[n] != '\0' && a[n] != '='))
		return 0;
	if (a[n] == '=')
		*out = a + n + 1;
	else if (*i + 1 < argc)
		*out = argv[++*i];
	else
		*out = "";
	if (**out == '\0') {
		cli_err(name, "needs a value");
		return -1;
	}
	return 1;
}

int cli_secret_opt(struct cli_secret_opts *o, int argc, char **argv, int *i)
{
	static const struct {
		const char *name;
		size_t off;
	} opts[] = {
	    {"--passphrase-file", offsetof(struct cli_secret_opts, passphrase_file)},
	    {"--extpass", offsetof(struct cli_secret_opts, extpass)},
	    {"--recovery-key-file", offsetof(struct cli_secret_opts, recovery_key_file)},
	    {"--key-file", offsetof(struct cli_secret_opts, key_file)},
	};

	for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
		const char **slot = (const char **)((char *)o + opts[k].off);
		int r = cli_opt_value(argc, argv, i, opts[k].name, slot);
		if (r != 0)
			return r;
	}
	return 0;
}

void cli_secret_free(struct cli_secret *s)
{
	if (s->bytes) {
		sodium_memzero(s->bytes, SECRET_READ_CAP + 1);
		sodium_free(s->bytes);
	}
	s->bytes = NULL;
	s->len = 0;
}

void cli_keyfile_free(struct cli_keyfile *k)
{
	if (k->bytes) {
		sodium_memzero(k->bytes, k->cap);
		sodium_free(k->bytes);
	}
	k->bytes = NULL;
	k->len = 0;
	k->cap = 0;
}

int cli_keyfile_read(const char *file, struct cli_keyfile *out)
{
	struct stat st;
	size_t got = 0;
	int fd, err = 0;

	memset(out, 0, sizeof *out);
	fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		cli_err(file, "cannot read key file: %s", strerror(errno));
		return EXIT_SECRETSRC;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		err = errno;
		close(fd);
		cli_err(file, "cannot read key file: %s",
			err ? strerror(err) : "not a regular file");
		return EXIT_SECRETSRC;
	}
	if (st.st_size > (off_t)KR_KEYFILE_MAX_BYTES) {
		close(fd);
		cli_err(file, "key file is larger than %u bytes", KR_KEYFILE_MAX_BYTES);
		return EXIT_SECRETSRC;
	}
	/* One byte more than the limit: a file that grows while read is caught. */
	out->cap = KR_KEYFILE_MAX_BYTES + 1;
	out->bytes = sodium_malloc(out->cap);
	if (!out->bytes) {
		close(fd);
		out->cap = 0;
		cli_err(file, "out of memory");
		return EXIT_FAIL;
	}
	while (got < out->cap) {
		ssize_t n = read(fd, out->bytes + got, out->cap - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = errno;
			break;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	out->len = got;
	if (err || got < KR_KEYFILE_MIN_BYTES || got > KR_KEYFILE_MAX_BYTES) {
		cli_keyfile_free(out);
		if (err)
			cli_err(file, "cannot read key file: %s", strerror(err));
		else if (got > KR_KEYFILE_MAX_BYTES)
			cli_err(file, "key file is larger than %u bytes", KR_KEYFILE_MAX_BYTES);
		else
			cli_err(file, "key file is too short (%zu bytes; at least %d)", got,
				KR_KEYFILE_MIN_BYTES);
		return EXIT_SECRETSRC;
	}
	return EXIT_OK;
}

static int secret_alloc(struct cli_secret *s, enum kr_secret_kind kind)
{
	s->kind = kind;
	s->len = 0;
	s->bytes = sodium_malloc(SECRET_READ_CAP + 1);
	if (!s->bytes)
		return -ENOMEM;
	sodium_memzero(s->bytes, SECRET_READ_CAP + 1);
	return 0;
}

/* Keep the first line of the len bytes in s: cut at the first newline,
 * drop a carriage return before it. @return 0, -EMSGSIZE if the line is
 * longer than SECRET_MAX, -ENODATA if it is empty. */
static int secret_first_line(struct cli_secret *s, size_t len)
{
	char *nl = memchr(s->bytes, '\n', len);
	size_t n = nl ? (size_t)(nl - s->bytes) : len;

	if (n > 0 && s->bytes[n - 1] == '\r')
		n--;
	sodium_memzero(s->bytes + n, SECRET_READ_CAP + 1 - n);
	if (n > SECRET_MAX) {
		sodium_memzero(s->bytes, SECRET_READ_CAP + 1);
		return -EMSGSIZE;
	}
	s->len = n;
	return n == 0 ? -ENODATA : 0;
}

/* Read up to SECRET_READ_CAP bytes from fd into s. @return bytes or -errno. */
static ssize_t secret_fill(int fd, struct cli_secret *s)
{
	size_t got = 0;

	while (got < SECRET_READ_CAP) {
		ssize_t n = read(fd, s->bytes + got, SECRET_READ_CAP - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (memchr(s->bytes, '\n', got))
			break;
	}
	return (ssize_t)got;
}

static int secret_from_file(const char *file, enum kr_secret_kind kind, struct cli_secret *s)
{
	const char *label = kind == KR_SECRET_RECOVERY ? "recovery key file" : "passphrase file";
	struct stat st;
	ssize_t n;
	int fd, rc;

	fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		cli_err(file, "cannot read %s: %s", label, strerror(errno));
		return EXIT_SECRETSRC;
	}
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		close(fd);
		cli_err(file, "cannot read %s: %s", label, strerror(EISDIR));
		return EXIT_SECRETSRC;
	}
	if (secret_alloc(s, kind) != 0) {
		close(fd);
		cli_err(file, "out of memory");
		return EXIT_FAIL;
	}
	n = secret_fill(fd, s);
	close(fd);
	if (n < 0) {
		cli_secret_free(s);
		cli_err(file, "cannot read %s: %s", label, strerror((int)-n));
		return EXIT_SECRETSRC;
	}
	rc = secret_first_line(s, (size_t)n);
	if (rc) {
		cli_secret_free(s);
		if (rc == -EMSGSIZE)
			cli_err(file, "first line of %s is longer than %d bytes", label,
				SECRET_MAX);
		else
			cli_err(file, "%s is empty", label);
		return EXIT_SECRETSRC;
	}
	return EXIT_OK;
}

static int secret_from_command(const char *cmd, struct cli_secret *s)
{
	int pfd[2], status = 0;
	ssize_t n;
	pid_t pid;
	int rc;

	if (secret_alloc(s, KR_SECRET_PASSPHRASE) != 0) {
		cli_err("--extpass", "out of memory");
		return EXIT_FAIL;
	}
	if (pipe2(pfd, O_CLOEXEC) != 0) {
		cli_secret_free(s);
		cli_err("--extpass", "cannot make a pipe: %s", strerror(errno));
		return EXIT_FAIL;
	}
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		cli_secret_free(s);
		cli_err("--extpass", "cannot start the command: %s", strerror(errno));
		return EXIT_SECRETSRC;
	}
	if (pid == 0) {
		if (dup2(pfd[1], STDOUT_FILENO) < 0)
			_exit(127);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	n = secret_fill(pfd[0], s);
	close(pfd[0]); /* a command that keeps writing gets SIGPIPE */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (n < 0) {
		cli_secret_free(s);
		cli_err("--extpass", "cannot read the command's output: %s", strerror((int)-n));
		return EXIT_SECRETSRC;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		cli_secret_free(s);
		if (WIFEXITED(status))
			cli_err("--extpass", "command '%s' exited with status %d", cmd,
				WEXITSTATUS(status));
		else
			cli_err("--extpass", "command '%s' was killed by signal %d", cmd,
				WTERMSIG(status));
		return EXIT_SECRETSRC;
	}
	rc = secret_first_line(s, (size_t)n);
	if (rc) {
		cli_secret_free(s);
		if (rc == -EMSGSIZE)
			cli_err("--extpass", "command '%s' printed a line longer than %d bytes",
				cmd, SECRET_MAX);
		else
			cli_err("--extpass", "command '%s' printed no passphrase", cmd);
		return EXIT_SECRETSRC;
	}
	return EXIT_OK;
}

/* The terminal state to put back if a signal ends the prompt. */
static struct termios tty_saved;
static volatile sig_atomic_t tty_saved_fd = -1;

static void tty_restore_and_die(int sig)
{
	if (tty_saved_fd >= 0) {
		tcsetattr(tty_saved_fd, TCSAFLUSH, &tty_saved);
		(void)!write(tty_saved_fd, "\n", 1);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

/* One no-echo line from the terminal into s. @return 0 or -errno. */
static int tty_ask(int tty, const char *prompt, struct cli_secret *s)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP};
	struct sigaction sa, old_sa[sizeof sigs / sizeof sigs[0]];
	struct termios old, quiet;
	size_t got = 0;
	int rc = 0;

	if (tcgetattr(tty, &old) != 0)
		return -errno;
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	quiet.c_lflag |= ICANON;
	/* Ctrl-C or Ctrl-Z at the prompt must not leave echo off. */
	tty_saved = old;
	tty_saved_fd = tty;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = tty_restore_and_die;
	sigemptyset(&sa.sa_mask);
	for (size_t k = 0; k < sizeof sigs / sizeof sigs[0]; k++)
		sigaction(sigs[k], &sa, &old_sa[k]);
	if (tcsetattr(tty, TCSAFLUSH, &quiet) != 0) {
		rc = -errno;
		goto restore;
	}
	if (write(tty, prompt, strlen(prompt)) < 0)
		rc = -errno;
	while (rc == 0) {
		char c;
		ssize_t n = read(tty, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || c == '\n')
			break;
		if (got < SECRET_READ_CAP)
			s->bytes[got++] = c;
		else
			rc = -EMSGSIZE;
	}
	tcsetattr(tty, TCSAFLUSH, &old);
	if (write(tty, "\n", 1) < 0 && rc == 0)
		rc = -errno;
restore:
	tty_saved_fd = -1;
	for (size_t k = 0; k < sizeof sigs / sizeof sigs[0]; k++)
		sigaction(sigs[k], &old_sa[k], NULL);
	if (rc) {
		sodium_memzero(s->bytes, SECRET_READ_CAP + 1);
		return rc;
	}
	return secret_first_line(s, got);
}

static int secret_from_tty(const char *what, const char *label, bool confirm, struct cli_secret *s)
{
	struct cli_secret again = {0};
	char prompt[512];
	int tty, rc;

	tty = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (tty < 0) {
		cli_err(what, "no secret given and no terminal to ask on "
			      "(use --passphrase-file, --extpass or --recovery-key-file)");
		return EXIT_SECRETSRC;
	}
	if (secret_alloc(s, KR_SECRET_PASSPHRASE) != 0 ||
	    (confirm && secret_alloc(&again, KR_SECRET_PASSPHRASE) != 0)) {
		close(tty);
		cli_secret_free(s);
		cli_err(what, "out of memory");
		return EXIT_FAIL;
	}
	snprintf(prompt, sizeof prompt, "%s for %s: ", label, what);
	rc = tty_ask(tty, prompt, s);
	if (rc == 0 && confirm) {
		snprintf(prompt, sizeof prompt, "%s again: ", label);
		rc = tty_ask(tty, prompt, &again);
		if (rc == 0 &&
		    (again.len != s->len || sodium_memcmp(again.bytes, s->bytes, s->len) != 0))
			rc = -EILSEQ;
	}
	close(tty);
	cli_secret_free(&again);
	if (rc) {
		cli_secret_free(s);
		if (rc == -EILSEQ)
			cli_err(what, "the two passphrases differ");
		else if (rc == -ENODATA)
			cli_err(what, "empty passphrase");
		else if (rc == -EMSGSIZE)
			cli_err(what, "passphrase longer than %d bytes", SECRET_MAX);
		else
			cli_err(what, "cannot read from the terminal: %s", strerror(-rc));
		return EXIT_SECRETSRC;
	}
	return EXIT_OK;
}

int cli_secret_read(const char *what, const struct cli_secret_opts *o, bool confirm,
		    struct cli_secret *out)
{
	int given = !!o->passphrase_file + !!o->extpass + !!o->recovery_key_file;

	memset(out, 0, sizeof *out);
	if (given > 1) {
		cli_err(what, "give only one of --passphrase-file, --extpass, --recovery-key-file");
		return EXIT_USAGE;
	}
	if (o->key_file && o->recovery_key_file) {
		cli_err("--key-file", "goes with a passphrase, not with --recovery-key-file");
		return EXIT_USAGE;
	}
	if (o->passphrase_file)
		return secret_from_file(o->passphrase_file, KR_SECRET_PASSPHRASE, out);
	if (o->extpass)
		return secret_from_command(o->extpass, out);
	if (o->recovery_key_file)
		return secret_from_file(o->recovery_key_file, KR_SECRET_RECOVERY, out);
	return secret_from_tty(what, "Passphrase", confirm, out);
}

int cli_new_passphrase(const char *what, const char *file, struct cli_secret *out)
{
	memset(out, 0, sizeof *out);
	if (file)
		return secret_from_file(file, KR_SECRET_PASSPHRASE, out);
	return secret_from_tty(what, "New passphrase", true, out);
}

/* Explain an unlock failure of store in one line; the secret is gone. */
static int unlock_report(const char *store, const struct cli_secret_opts *o, int err)
{
	struct kr_config cfg;
	struct stat st;
	char conf[4096];

	snprintf(conf, sizeof conf, "%s/%s", store, KR_CONFIG_NAME);
	switch (err) {
	case -EKEYREJECTED:
		if (o->recovery_key_file)
			cli_err(store, "wrong recovery key");
		else if (o->key_file && kr_vault_needs_keyfile(store))
			cli_err(store, "wrong passphrase or key file");
		else if (!o->key_file && kr_vault_needs_keyfile(store))
			cli_err(store, "wrong passphrase, or a key file is needed "
				       "(a keyslot of this vault needs --key-file)");
		else
			cli_err(store, "wrong passphrase");
		return EXIT_BADSECRET;
	case -ENOENT:
		if (stat(store, &st) != 0)
			cli_err(store, "no such store");
		else if (stat(conf, &st) != 0)
			cli_err(store, "not a vault (no %s)", KR_CONFIG_NAME);
		else
			cli_err(store, "not a vault (no keyslots)");
		return EXIT_STORE;
	case -ENOTDIR:
		cli_err(store, "not a directory");
		return EXIT_STORE;
	case -EOPNOTSUPP:
		cli_err(conf, "written by a newer strongroom (unknown format version or required "
			      "feature)");
		return EXIT_STORE;
	case -EUCLEAN:
		if (kr_config_load(store, &cfg) != 0)
			cli_err(conf,
				"corrupt vault config (damaged, truncated or not a vault config)");
		else
			cli_err(store,
				"vault config or keyslot failed authentication (edited, damaged "
				"or from another vault)");
		return EXIT_STORE;
	case -ENOMEM:
		cli_err(store, "not enough memory to derive the key");
		return EXIT_FAIL;
	default:
		cli_err(store, "cannot unlock: %s", strerror(-err));
		return cli_exit_for(err);
	}
}

int cli_unlock(const char *store, const struct cli_secret_opts *o, struct kr_keyring **out)
{
	struct cli_secret s = {0};
	struct cli_keyfile kf = {0};
	struct kr_secret ks = {0};
	struct kr_config cfg;
	unsigned char *raw = NULL;
	int rc, err;

	*out = NULL;
	/* A store that cannot be a vault is reported before anyone is asked
	 * for a secret. */
	err = kr_config_load(store, &cfg);
	if (err != 0 && err != -EUCLEAN)
		return unlock_report(store, o, err);
	if (o->key_file && !o->recovery_key_file) {
		/* A missing key file is reported before anyone types a passphrase. */
		rc = cli_keyfile_read(o->key_file, &kf);
		if (rc != EXIT_OK)
			return rc;
		ks.keyfile = kf.bytes;
		ks.keyfile_len = kf.len;
	}
	rc = cli_secret_read(store, o, false, &s);
	if (rc != EXIT_OK) {
		cli_keyfile_free(&kf);
		return rc;
	}
	if (s.kind == KR_SECRET_RECOVERY) {
		/* Tell a typo from a wrong key before deriving anything. */
		raw = sodium_malloc(20);
		err = raw ? kr_recovery_parse(s.bytes, raw) : -ENOMEM;
		sodium_free(raw);
		if (err) {
			cli_secret_free(&s);
			if (err == -EBADMSG)
				cli_err(o->recovery_key_file,
					"recovery key has a typo (its check group does not match)");
			else if (err == -EINVAL)
				cli_err(o->recovery_key_file,
					"not a recovery key (expected 9 groups of 4 characters)");
			else
				cli_err(o->recovery_key_file, "out of memory");
			return err == -ENOMEM ? EXIT_FAIL : EXIT_BADSECRET;
		}
	}
	ks.kind = s.kind;
	ks.bytes = s.bytes;
	ks.len = s.len;
	err = kr_vault_unlock(store, &ks, out);
	cli_secret_free(&s);
	cli_keyfile_free(&kf);
	if (err)
		return unlock_report(store, o, err);
	return EXIT_OK;
}
