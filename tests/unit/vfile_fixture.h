/* vfile_fixture.h - a throwaway vault for the file engine's unit tests:
 * a keyring created in a temp store (SR_KDF=test keeps Argon2id cheap) and
 * a directory fd the engine writes its ciphertext files into. */
#ifndef STRONGROOM_VFILE_FIXTURE_H
#define STRONGROOM_VFILE_FIXTURE_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "strongroom/keyring.h"
#include "strongroom/vfile.h"

static char fx_store[128];
static struct kr_keyring *fx_kr;
static int fx_dir = -1;

static int fx_setup(void)
{
	struct kr_config cfg;
	struct kr_kdf_params kdf;
	struct kr_secret pass = {.kind = KR_SECRET_PASSPHRASE, .bytes = "correct horse", .len = 13};
	char rec[KR_RECOVERY_TEXT_BYTES], files[192];

	setenv("SR_KDF", "test", 0);
	if (sodium_init() < 0)
		return -1;
	strcpy(fx_store, "/tmp/sr-test-vfile-XXXXXX");
	if (!mkdtemp(fx_store))
		return -1;
	kr_config_default(&cfg);
	kr_kdf_params_default(&kdf);
	if (kr_vault_create(fx_store, &cfg, &pass, &kdf, rec, &fx_kr) != 0)
		return -1;
	snprintf(files, sizeof files, "%s/files", fx_store);
	mkdir(files, 0700);
	fx_dir = open(files, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fx_dir >= 0 ? 0 : -1;
}

static void fx_teardown(void)
{
	char cmd[256];

	kr_keyring_free(fx_kr);
	close(fx_dir);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx_store);
	if (system(cmd) != 0)
		fprintf(stderr, "# could not remove %s\n", fx_store);
}

/* Size of a store file, or -1. */
static __attribute__((unused)) long long fx_store_size(const char *name)
{
	struct stat st;
	return fstatat(fx_dir, name, &st, 0) ? -1 : (long long)st.st_size;
}

/* Read a whole store file into a malloc'd buffer. */
static __attribute__((unused)) unsigned char *fx_slurp(const char *name, size_t *len)
{
	long long n = fx_store_size(name);
	int fd = openat(fx_dir, name, O_RDONLY);
	unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
	if (fd < 0 || n < 0 || !b || pread(fd, b, (size_t)n, 0) != n) {
		free(b);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	close(fd);
	*len = (size_t)n;
	return b;
}

static __attribute__((unused)) int fx_spit(const char *name, const unsigned char *b, size_t len)
{
	int fd = openat(fx_dir, name, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int ok = fd >= 0 && pwrite(fd, b, len, 0) == (ssize_t)len;
	if (fd >= 0)
		close(fd);
	return ok ? 0 : -1;
}

/* Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
static uint64_t fx_rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t fx_rand(void)
{
	uint64_t x = fx_rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return fx_rng_state = x;
}

static __attribute__((unused)) void fx_fill(uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(fx_rand() >> 24);
}

/* CSV-like customer records. */
static __attribute__((unused)) size_t fx_csv(char *out, size_t cap)
{
	static const char *names[] = {"Alice Martin", "Bob Dupont", "Chloe Bernard", "David Petit",
				      "Emma Durand", "Farid Leroy", "Gina Moreau", "Hugo Simon"};
	static const char *cities[] = {"Paris", "Lyon", "Marseille", "Toulouse", "Nantes", "Lille"};
	size_t n = 0;
	unsigned long id = 100000;
	while (n + 200 < cap) {
		int w = snprintf(out + n, cap - n, "%lu,%s,%s,%s.%lu@example.com,+33 6 %02u %02u %02u %02u,%u.%02u,2024-%02u-%02u\n",
				 id, names[fx_rand() % 8], cities[fx_rand() % 6], "customer", id,
				 (unsigned)(fx_rand() % 100), (unsigned)(fx_rand() % 100),
				 (unsigned)(fx_rand() % 100), (unsigned)(fx_rand() % 100),
				 (unsigned)(fx_rand() % 5000), (unsigned)(fx_rand() % 100),
				 (unsigned)(1 + fx_rand() % 12), (unsigned)(1 + fx_rand() % 28));
		n += (size_t)w;
		id++;
	}
	while (n < cap)
		out[n++] = '\n';
	return n;
}

#endif
