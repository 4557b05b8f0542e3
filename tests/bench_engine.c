/* bench_engine.c - speed of the file engine on one core, without FUSE.
 *
 *   bench_engine [MiB]   (default 256; the store lives in /tmp)
 *
 * Prints MB/s of sequential write (128 KiB calls, as the kernel sends
 * them, ending with fsync) and read of random and of CSV-like data through
 * vf_write/vf_read, next to the two primitives underneath: libsodium
 * XChaCha20-Poly1305 over 64 KiB chunks and zstd -3 compression of the CSV
 * data, so the engine's overhead over its crypto and compression is visible.
 * Reads come from the page cache: this measures the engine, not the disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <zstd.h>

#include "strongroom/keyring.h"
#include "strongroom/vfile.h"

#define IO_BYTES (128u << 10)
#define CHUNK (64u << 10)

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void csv_fill(char *b, size_t n)
{
	static const char *names[] = {"Alice Martin", "Bob Dupont", "Chloe Bernard", "David Petit",
				      "Emma Durand", "Farid Leroy", "Gina Moreau", "Hugo Simon"};
	static const char *cities[] = {"Paris", "Lyon", "Marseille", "Toulouse", "Nantes", "Lille"};
	size_t o = 0;
	unsigned long id = 100000;
	while (o + 200 < n) {
		uint32_t r = randombytes_random();
		o += (size_t)snprintf(b + o, n - o,
				      "%lu,%s,%s,customer.%lu@example.com,+33 6 %02u %02u %02u %02u,%u.%02u,2024-%02u-%02u\n",
				      id, names[r % 8], cities[(r >> 3) % 6], id, (r >> 6) % 100,
				      (r >> 9) % 100, (r >> 13) % 100, (r >> 17) % 100, (r >> 5) % 5000,
				      (r >> 20) % 100, 1 + (r >> 24) % 12, 1 + (r >> 12) % 28);
		id++;
	}
	memset(b + o, '\n', n - o);
}

static int run(struct kr_keyring *kr, int dir, const char *label, const uint8_t *data, size_t total)
{
	struct vf_file *f;
	uint8_t *buf = malloc(IO_BYTES);
	struct stat st;
	double t0, tw, tr;
	int rc;

	if (!buf)
		return -ENOMEM;
	unlinkat(dir, label, 0);
	rc = vf_create(kr, dir, label, 1, S_IFREG | 0600, 0, 0, &f);
	if (rc)
		goto out;
	t0 = now();
	for (size_t off = 0; off < total && rc == 0; off += IO_BYTES)
		if (vf_write(f, data + off, IO_BYTES, off) != IO_BYTES)
			rc = -EIO;
	if (rc == 0)
		rc = vf_fsync(f, true);
	tw = now() - t0;
	if (vf_close(f) && rc == 0)
		rc = -EIO;
	if (rc)
		goto out;
	rc = vf_open(kr, dir, label, false, &f);
	if (rc)
		goto out;
	t0 = now();
	for (size_t off = 0; off < total && rc == 0; off += IO_BYTES)
		if (vf_read(f, buf, IO_BYTES, off) != IO_BYTES || memcmp(buf, data + off, IO_BYTES))
			rc = -EIO;
	tr = now() - t0;
	vf_close(f);
	fstatat(dir, label, &st, 0);
	printf("engine %-7s write %8.1f MB/s   read %8.1f MB/s   store %5.1f%% of plaintext\n",
	       label, (double)total / tw / 1e6, (double)total / tr / 1e6,
	       100.0 * (double)st.st_size / (double)total);
out:
	free(buf);
	return rc;
}

static void primitives(const uint8_t *rnd, const uint8_t *csv, size_t total)
{
	unsigned char key[32], nonce[24];
	uint8_t *ct = malloc(CHUNK + 16), *z = malloc(ZSTD_compressBound(CHUNK));
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	unsigned long long clen;
	size_t zt = 0;
	double t0, t;

	randombytes_buf(key, sizeof key);
	t0 = now();
	for (size_t off = 0; off < total; off += CHUNK) {
		randombytes_buf(nonce, sizeof nonce);
		crypto_aead_xchacha20poly1305_ietf_encrypt(ct, &clen, rnd + off, CHUNK, NULL, 0, NULL,
							   nonce, key);
	}
	t = now() - t0;
	printf("libsodium XChaCha20-Poly1305 seal, 64 KiB   %8.1f MB/s\n", (double)total / t / 1e6);
	t0 = now();
	for (size_t off = 0; off < total; off += CHUNK)
		zt += ZSTD_compressCCtx(cc, z, ZSTD_compressBound(CHUNK), csv + off, CHUNK, 3);
	t = now() - t0;
	printf("zstd -3 compress CSV, 64 KiB                %8.1f MB/s   (%.1f%%)\n",
	       (double)total / t / 1e6, 100.0 * (double)zt / (double)total);
	size_t zn = ZSTD_compressCCtx(cc, z, ZSTD_compressBound(CHUNK), csv, CHUNK, 3);
	t0 = now();
	for (size_t off = 0; off < total; off += CHUNK)
		ZSTD_decompressDCtx(dc, ct, CHUNK, z, zn);
	t = now() - t0;
	printf("zstd decompress CSV, 64 KiB                 %8.1f MB/s\n", (double)total / t / 1e6);
	ZSTD_freeCCtx(cc);
	ZSTD_freeDCtx(dc);
	free(ct);
	free(z);
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256, total = mib << 20;
	char store[] = "/tmp/sr-bench-XXXXXX", files[64], rec[KR_RECOVERY_TEXT_BYTES], cmd[96];
	struct kr_secret pass = {KR_SECRET_PASSPHRASE, "bench", 5};
	struct kr_kdf_params kdf;
	struct kr_config cfg;
	struct kr_keyring *kr;
	uint8_t *rnd, *csv;
	int dir, rc;

	setenv("SR_KDF", "test", 0);
	if (sodium_init() < 0 || mib == 0 || !mkdtemp(store))
		return 1;
	rnd = malloc(total);
	csv = malloc(total);
	if (!rnd || !csv)
		return 1;
	randombytes_buf(rnd, total);
	csv_fill((char *)csv, total);
	kr_config_default(&cfg);
	kr_kdf_params_default(&kdf);
	rc = kr_vault_create(store, &cfg, &pass, &kdf, rec, &kr);
	if (rc) {
		fprintf(stderr, "bench_engine: cannot create a vault in %s: %s\n", store, strerror(-rc));
		return 1;
	}
	snprintf(files, sizeof files, "%s/files", store);
	mkdir(files, 0700);
	dir = open(files, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	printf("%zu MiB per run, level 1 (%s: zstd %u), one core\n", mib, cfg.levels[1].name,
	       cfg.levels[1].compress);
	rc = run(kr, dir, "random", rnd, total);
	if (rc == 0)
		rc = run(kr, dir, "csv", csv, total);
	primitives(rnd, csv, total);
	kr_keyring_free(kr);
	close(dir);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", store);
	if (system(cmd) != 0)
		fprintf(stderr, "bench_engine: could not remove %s\n", store);
	free(rnd);
	free(csv);
	if (rc)
		fprintf(stderr, "bench_engine: %s\n", strerror(-rc));
	return rc ? 1 : 0;
}
