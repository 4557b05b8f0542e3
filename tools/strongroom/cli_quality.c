/* cli_quality.c - refuse weak new passphrases at init, passwd and keyslot add.
 *
 * The judgement is the keyring's (kr_pass_check, keyring/kr_quality.c); this
 * is the command line's side: one line naming the store and the reason, the
 * exit code EXIT_SECRETSRC, and --force (cli_pass_force) to take the
 * passphrase anyway, for instance for a test vault. The reason never quotes
 * the passphrase.
 */
#include "cli.h"

bool cli_pass_force;

int cli_pass_quality(const char *what, const struct cli_secret *s)
{
	struct kr_pass_quality q;

	if (s->kind != KR_SECRET_PASSPHRASE || kr_pass_check(s->bytes, s->len, &q) == 0)
		return EXIT_OK;
	if (cli_pass_force) {
		fprintf(stderr, "strongroom: %s: warning: weak passphrase accepted (--force): %s\n",
			what, q.reason);
		return EXIT_OK;
	}
	cli_err(what, "passphrase refused: %s (about %.0f bits; --force uses it anyway)", q.reason,
		q.bits);
	return EXIT_SECRETSRC;
}
