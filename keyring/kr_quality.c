/* kr_quality.c - is a new passphrase good enough to guard a keyslot?
 *
 * A keyslot is only as strong as its passphrase: Argon2id makes each guess
 * cost, it does not make a guessable passphrase safe. init, passwd and
 * keyslot add ask kr_pass_check() and refuse (unless forced) a passphrase
 * that is shorter than KR_PASS_MIN_CHARS characters, is a commonly used
 * one, or scores under KR_PASS_MIN_BITS in this estimate:
 *
 *  - the text is cut into runs of letters, runs of digits and single other
 *    characters; a separator (space, '-', '_', '.') between runs costs an
 *    attacker about one bit;
 *  - a run that repeats a shorter unit ("qwertyqwerty") counts the unit and
 *    two bits;
 *  - a common word within a letter run (the table below: words people put
 *    in passwords) counts as one pick from a 2048-word list, 11 bits;
 *  - every other letter counts log2(26) bits, each digit log2(10), each
 *    other character log2(33), and an uppercase letter not first in its run
 *    one bit more; a character that repeats the one before it or continues
 *    a sequence ("abc", "321") counts one bit only.
 *
 * The estimate is deliberately simple and conservative for the guessable
 * cases (keyboard runs, repeats, common words); it is not a promise that a
 * passphrase scoring above the floor is strong.
 *
 * Invariants: the passphrase is only read, never copied (nothing to wipe);
 * the reason strings are static.
 */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "kr_internal.h"

/* Words and passwords found at the top of every leaked-password list,
 * compared in lowercase. */
static const char *const common_words[] = {
    "password", "passwort", "passphrase",    "pass",	 "word",     "secret",	 "letmein",
    "welcome",	"admin",    "administrator", "root",	 "login",    "user",	 "qwerty",
    "qwertz",	"azerty",   "asdf",	     "zxcv",	 "iloveyou", "love",	 "monkey",
    "dragon",	"master",   "shadow",	     "sunshine", "princess", "football", "baseball",
    "soccer",	"superman", "batman",	     "trustno",	 "hello",    "freedom",	 "whatever",
    "starwars", "summer",   "winter",	     "spring",	 "autumn",   "michael",	 "jordan",
    "charlie",	"test",	    "testing",	     "guest",	 "default",  "changeme", "change",
    "vault",	"one",	    "two",	     "three",	 "four",     "five",	 "the",
    "and",	"abc",	    "correct",	     "horse",	 "battery",  "staple",	 "open",
    "sesame",
};

/* Whole passphrases that appear in published examples and lists. */
static const char *const common_phrases[] = {
    "correct horse battery staple",
    "the quick brown fox jumps over the lazy dog",
    "passwordpassword",
    "password1234",
    "123456789012",
    "qwertyuiopas",
    "iloveyouiloveyou",
    "letmeinletmein",
    "open sesame open sesame",
};

static bool is_sep(unsigned char c)
{
	return c == ' ' || c == '-' || c == '_' || c == '.' || c == ',';
}

static bool lower_eq(const char *a, size_t n, const char *word)
{
	if (strlen(word) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (tolower((unsigned char)a[i]) != (unsigned char)word[i])
			return false;
	return true;
}

/* Length of the longest common word (3 letters or more) at the start of
 * s[0..n), or 0. */
static size_t common_prefix(const char *s, size_t n)
{
	size_t best = 0;

	for (size_t i = 0; i < sizeof(common_words) / sizeof(common_words[0]); i++) {
		size_t m = strlen(common_words[i]);

		if (m >= 3 && m <= n && m > best && lower_eq(s, m, common_words[i]))
			best = m;
	}
	return best;
}

#define BITS_LETTER 4.70 /* log2(26) */
#define BITS_DIGIT  3.32 /* log2(10) */
#define BITS_OTHER  5.04 /* log2(33) */
#define BITS_UTF8   6.0	 /* log2(64) */
#define BITS_WORD   11.0 /* one pick from a 2048-word list */

/* Bits of one run of letters (words true) or digits. */
static double run_bits(const char *s, size_t n, double per_char, bool words)
{
	double bits = 0;

	/* A repeated unit ("abcabcabc", "qwertyqwerty"): the unit, and two
	 * bits for how often. */
	for (size_t p = 1; p <= n / 2; p++) {
		size_t i;

		if (n % p)
			continue;
		for (i = p;
		     i < n && tolower((unsigned char)s[i]) == tolower((unsigned char)s[i % p]); i++)
			;
		if (i == n)
			return run_bits(s, p, per_char, words) + 2;
	}
	for (size_t i = 0; i < n;) {
		size_t w = words ? common_prefix(s + i, n - i) : 0;
		int c, p;

		if (w) {
			bits += BITS_WORD;
			i += w;
			continue;
		}
		c = tolower((unsigned char)s[i]);
		p = i ? tolower((unsigned char)s[i - 1]) : -100;
		bits += (c == p || c == p + 1 || c == p - 1) ? 1 : per_char;
		if (i > 0 && isupper((unsigned char)s[i]))
			bits += 1;
		i++;
	}
	return bits;
}

int kr_pass_check(const char *pass, size_t len, struct kr_pass_quality *q)
{
	struct kr_pass_quality tmp;
	size_t i = 0;

	if (!q)
		q = &tmp;
	q->bits = 0;
	q->chars = 0;
	q->reason = NULL;
	for (size_t j = 0; j < len; j++)
		if (((unsigned char)pass[j] & 0xc0) != 0x80)
			q->chars++;
	while (i < len) {
		unsigned char c = (unsigned char)pass[i];
		size_t n = 1;

		if (isalpha(c)) {
			while (i + n < len && isalpha((unsigned char)pass[i + n]))
				n++;
			q->bits += run_bits(pass + i, n, BITS_LETTER, true);
		} else if (isdigit(c)) {
			while (i + n < len && isdigit((unsigned char)pass[i + n]))
				n++;
			q->bits += run_bits(pass + i, n, BITS_DIGIT, false);
		} else if (is_sep(c)) {
			q->bits += 1;
		} else if (c >= 0x80) {
			/* A UTF-8 letter: as a letter from a larger alphabet. */
			while (i + n < len && ((unsigned char)pass[i + n] & 0xc0) == 0x80)
				n++;
			q->bits += BITS_UTF8;
		} else {
			q->bits += i && pass[i - 1] == pass[i] ? 1 : BITS_OTHER;
		}
		i += n;
	}
	for (size_t j = 0; j < sizeof(common_phrases) / sizeof(common_phrases[0]); j++)
		if (lower_eq(pass, len, common_phrases[j]))
			q->reason = "it is a commonly used passphrase";
	if (!q->reason && q->chars < KR_PASS_MIN_CHARS)
		q->reason = "it is shorter than 12 characters";
	if (!q->reason && q->bits < KR_PASS_MIN_BITS)
		q->reason = "it is too easy to guess (common words, repeats or sequences); "
			    "add more words or characters";
	return q->reason ? -EINVAL : 0;
}
