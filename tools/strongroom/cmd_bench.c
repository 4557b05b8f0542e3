/* cmd_bench.c - strongroom bench: the file engine alone, without FUSE.
 *
 *   strongroom bench [--size MIB] [--runs N] [--chunk-size N[,N...]]
 *                    [--level NAME] [--zstd-level N] [--dir DIR] [--csv] [--quick]
 *                    [--all-cpus]
 *   strongroom bench --emit-csv BYTES
 *
 * On one core (the process pins itself to the CPU it starts on; with
 * --all-cpus it does not, and the engine's flushes encode on a worker pool
 * of the online CPUs, at most 4, as in a mount) it measures
 * MB/s (10^6 bytes per second) of vf_write and vf_read of random and of
 * CSV-like customer records through a throwaway vault in a temporary store,
 * next to the raw primitives the engine is built from: libsodium's
 * XChaCha20-Poly1305 on whole chunks and zstd level 3 on whole chunks. It
 * also prints the store bytes the CSV data took against zstd -3 of the same
 * data at the same chunk size, and the process's CPU seconds per GiB written
 * (all threads: the figure that stays put when the machine is busy and
 * elapsed times are not). tools/bench runs the same engine under FUSE
 * next to other filesystems.
 *
 * Each figure is the median of --runs runs. Writes end with vf_close (the
 * final seal) but no fsync, and reads start from a freshly opened file (the
 * engine's chunk cache is cold, the kernel's page cache of the store file is
 * not): this is the engine's CPU cost, not the disk's.
 *
 * --emit-csv BYTES writes exactly BYTES of the deterministic CSV-like records
 * to stdout (tools/bench uses it to make its 1 GiB CSV input).
 *
 * Invariants: the temporary store is removed on every return path; the
 * vault's keyring is created with the cheapest Argon2id parameters, which
 * only affects unlocking, never a measured path.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <zstd.h>

#include "cli.h"
#include "strongroom/keyring.h"
#include "strongroom/vf_pool.h"
#include "strongroom/vfile.h"

#define BENCH_IO_BYTES (1u << 20) /* one FUSE write/read at max_write */
#define BENCH_RUNS_MAX 15
#define BENCH_CHUNK_SIZES_MAX 8
#define BENCH_ZSTD_LEVEL 3

struct bench_opts {
	uint64_t size; /* bytes per run and data kind */
	unsigned runs;
	uint32_t chunk_sizes[BENCH_CHUNK_SIZES_MAX];
	unsigned nchunk_sizes;
	const char *level;
	const char *dir;
	bool csv;
	bool all_cpus;
	int zlevel; /* 0: the vault default */
};

/* ---- deterministic data ---- */

/* splitmix64: a small, fixed generator so every run and every machine
 * produces the same CSV bytes. */
static uint64_t bench_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static const char *const bench_first[] = {
	"Anna", "Ben", "Carla", "David", "Elif", "Farid", "Greta", "Hugo", "Ines", "Jonas",
	"Katja", "Lukas", "Maria", "Nils", "Olga", "Paul", "Rosa", "Sven", "Tanja", "Umut",
	"Vera", "Wim", "Yara", "Zoe", "Aylin", "Bruno", "Chiara", "Dario", "Emma", "Felix"};
static const char *const bench_last[] = {
	"Mueller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
	"Schulz", "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Neumann", "Schwarz",
	"Braun", "Zimmermann", "Hartmann", "Krueger", "Yilmaz", "Kaya", "Novak", "Rossi"};
static const char *const bench_city[] = {
	"Berlin", "Hamburg", "Muenchen", "Koeln", "Frankfurt", "Stuttgart", "Duesseldorf",
	"Leipzig", "Dortmund", "Essen", "Bremen", "Dresden", "Hannover", "Nuernberg", "Wien",
	"Zuerich", "Basel", "Graz", "Linz", "Bern"};
static const char *const bench_street[] = {
	"Hauptstrasse", "Schulstrasse", "Gartenweg", "Bahnhofstrasse", "Dorfstrasse",
	"Bergweg", "Lindenallee", "Kirchplatz", "Am Markt", "Waldstrasse", "Ringstrasse"};
static const char *const bench_status[] = {"active", "active", "active", "dormant",
					   "closed", "review"};
static const char *const bench_domain[] = {"example.com", "mail.example.org",
					   "kunde.example.net", "firma.example.de"};

#define BENCH_PICK(s, a) ((a)[bench_rand(s) % (sizeof(a) / sizeof((a)[0]))])

/* One record line into out (cap >= 256). @return its length. */
static size_t bench_csv_record(uint64_t *s, uint64_t id, char *out, size_t cap)
{
	const char *fn = BENCH_PICK(s, bench_first), *ln = BENCH_PICK(s, bench_last);
	uint64_t r = bench_rand(s), r2 = bench_rand(s);
	int n;

	n = snprintf(out, cap,
		     "%llu,%s,%s,%c%c.%c%s%u@%s,+49 %03u %07u,\"%s %u\",%05u,%s,DE%02u%08u%010llu,"
		     "%lld.%02u,20%02u-%02u-%02u,%s\n",
		     (unsigned long long)id, fn, ln, fn[0] | 0x20, ln[0] | 0x20, ln[1], ln + 2,
		     (unsigned)(r % 100), BENCH_PICK(s, bench_domain), (unsigned)(r >> 8) % 1000,
		     (unsigned)(r >> 20) % 10000000, BENCH_PICK(s, bench_street),
		     (unsigned)(r2 % 180) + 1, (unsigned)(r2 >> 8) % 100000,
		     BENCH_PICK(s, bench_city), (unsigned)(r2 >> 28) % 100,
		     (unsigned)(r2 >> 35) % 100000000, (unsigned long long)(bench_rand(s) % 10000000000ull),
		     (long long)(r2 >> 40) % 2000000 - 200000, (unsigned)(r >> 50) % 100,
		     (unsigned)(r >> 40) % 25, (unsigned)(r >> 44) % 12 + 1,
		     (unsigned)(r >> 36) % 28 + 1, BENCH_PICK(s, bench_status));
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static const char bench_csv_head[] =
	"customer_id,first_name,last_name,email,phone,street,postcode,city,iban,balance_eur,"
	"since,status\n";

/* The record stream: a header line, then records; the same from every
 * start, so --emit-csv and the in-memory data agree byte for byte. */
struct bench_csv {
	uint64_t s, id;
	bool head_done;
};

#define BENCH_CSV_INIT {20240601, 100000, false}

/* The next line into line (cap >= 256). @return its length. */
static size_t bench_csv_line(struct bench_csv *g, char *line, size_t cap)
{
	if (!g->head_done) {
		g->head_done = true;
		memcpy(line, bench_csv_head, sizeof bench_csv_head);
		return sizeof bench_csv_head - 1;
	}
	return bench_csv_record(&g->s, g->id++, line, cap);
}

/* Fill buf with the first len bytes of the stream. */
static void bench_csv_fill(uint8_t *buf, size_t len)
{
	struct bench_csv g = BENCH_CSV_INIT;
	char line[256];

	for (size_t pos = 0, n; pos < len; pos += n) {
		n = bench_csv_line(&g, line, sizeof line);
		if (n > len - pos)
			n = len - pos;
		memcpy(buf + pos, line, n);
	}
}

static int bench_emit_csv(const char *arg)
{
	struct bench_csv g = BENCH_CSV_INIT;
	char *end, line[256];
	unsigned long long total = strtoull(arg, &end, 10), done = 0;
	size_t piece = 1u << 24, fill = 0;
	uint8_t *buf;
	int rc = EXIT_OK;

	if (*arg == '\0' || *end != '\0') {
		cli_err(arg, "--emit-csv needs a byte count");
		return EXIT_USAGE;
	}
	buf = malloc(piece);
	if (!buf) {
		cli_err("bench", "out of memory");
		return EXIT_FAIL;
	}
	while (done < total) {
		size_t n = bench_csv_line(&g, line, sizeof line);

		if (n > total - done)
			n = (size_t)(total - done);
		if (fill + n > piece) {
			if (fwrite(buf, 1, fill, stdout) != fill)
				goto werr;
			fill = 0;
		}
		memcpy(buf + fill, line, n);
		fill += n;
		done += n;
	}
	if (fwrite(buf, 1, fill, stdout) != fill || fflush(stdout) != 0)
		goto werr;
	goto out;
werr:
	cli_err("stdout", "%s", strerror(errno));
	rc = EXIT_IO;
out:
	free(buf);
	return rc;
}

/* ---- timing ---- */

static double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) of the whole process, every thread. */
static double bench_cpu(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int bench_dcmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double bench_median(double *v, unsigned n)
{
	qsort(v, n, sizeof *v, bench_dcmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double bench_mbps(uint64_t bytes, double secs)
{
	return secs > 0 ? (double)bytes / secs / 1e6 : 0;
}

/* ---- the temporary store ---- */

static int bench_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

struct bench_store {
	char path[256];
	struct kr_keyring *kr;
	int dir;
	int level;
	struct vf_pool *pool; /* --all-cpus: the flush's worker pool, as a mount has */
};

static void bench_store_close(struct bench_store *bs)
{
	if (bs->dir >= 0)
		close(bs->dir);
	bs->dir = -1;
	vf_pool_free(bs->pool);
	bs->pool = NULL;
	kr_keyring_free(bs->kr);
	bs->kr = NULL;
	if (bs->path[0])
		nftw(bs->path, bench_rm_one, 16, FTW_DEPTH | FTW_PHYS);
	bs->path[0] = '\0';
}

static int bench_store_open(struct bench_store *bs, const struct bench_opts *o, uint32_t chunk)
{
	struct kr_config cfg;
	struct kr_kdf_params kdf = {crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN};
	struct kr_secret pass = {.kind = KR_SECRET_PASSPHRASE, .bytes = "bench", .len = 5};
	char rec[KR_RECOVERY_TEXT_BYTES], files[300];
	int err;

	bs->kr = NULL;
	bs->dir = -1;
	snprintf(bs->path, sizeof bs->path, "%s/strongroom-bench-XXXXXX", o->dir);
	if (!mkdtemp(bs->path)) {
		err = -errno;
		cli_err(bs->path, "cannot create: %s", strerror(errno));
		bs->path[0] = '\0';
		return err;
	}
	kr_config_default(&cfg);
	for (unsigned l = 0; o->zlevel && l < cfg.nlevels; l++)
		if (cfg.levels[l].compress)
			cfg.levels[l].compress = (uint8_t)o->zlevel;
	err = kr_config_set_chunk_size(&cfg, chunk);
	if (err == 0)
		err = kr_vault_create(bs->path, &cfg, &pass, &kdf, rec, &bs->kr);
	sodium_memzero(rec, sizeof rec);
	if (err) {
		cli_err(bs->path, "cannot create a vault: %s", strerror(-err));
		return err;
	}
	bs->level = o->level ? kr_level_index(bs->kr, o->level) : 0;
	if (bs->level < 0) {
		cli_err(o->level, "no such level");
		return -EINVAL;
	}
	snprintf(files, sizeof files, "%s/files", bs->path);
	if (mkdir(files, 0700) != 0 || (bs->dir = open(files, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		err = -errno;
		cli_err(files, "%s", strerror(errno));
		return err;
	}
	if (o->all_cpus && !(bs->pool = vf_pool_new(0))) {
		cli_err("bench", "cannot start the worker pool");
		return -ENOMEM;
	}
	return 0;
}

/* ---- the measurements ---- */

/* Write data through a new engine file, close it; then read it back from a
 * fresh open and compare. wsecs and rsecs get the times, wcpu the CPU
 * seconds of the write (the process, so helper threads count),
 * store_bytes the ciphertext file's size. */
static int bench_engine_once(struct bench_store *bs, const uint8_t *data, uint64_t size,
			     uint8_t *rbuf, double *wsecs, double *wcpu, double *rsecs,
			     uint64_t *store_bytes)
{
	struct vf_file *f = NULL;
	struct stat st;
	double t0, c0;
	int err;

	unlinkat(bs->dir, "bench", 0);
	c0 = bench_cpu();
	t0 = bench_now();
	err = vf_create(bs->kr, bs->dir, "bench", (unsigned)bs->level, S_IFREG | 0600, 0, 0, &f);
	if (err == 0)
		vf_set_pool(f, bs->pool);
	for (uint64_t off = 0; err == 0 && off < size; off += BENCH_IO_BYTES) {
		size_t n = size - off < BENCH_IO_BYTES ? (size_t)(size - off) : BENCH_IO_BYTES;
		ssize_t w = vf_write(f, data + off, n, off);

		if (w != (ssize_t)n)
			err = w < 0 ? (int)w : -EIO;
	}
	if (f) {
		int cerr = vf_close(f);

		err = err ? err : cerr;
	}
	*wsecs = bench_now() - t0;
	*wcpu = bench_cpu() - c0;
	if (err)
		return err;
	if (fstatat(bs->dir, "bench", &st, 0) != 0)
		return -errno;
	*store_bytes = (uint64_t)st.st_size;

	f = NULL;
	t0 = bench_now();
	err = vf_open(bs->kr, bs->dir, "bench", false, &f);
	for (uint64_t off = 0; err == 0 && off < size; off += BENCH_IO_BYTES) {
		size_t n = size - off < BENCH_IO_BYTES ? (size_t)(size - off) : BENCH_IO_BYTES;
		ssize_t r = vf_read(f, rbuf, n, off);

		if (r != (ssize_t)n)
			err = r < 0 ? (int)r : -EIO;
		else if (memcmp(rbuf, data + off, n) != 0)
			err = -EBADMSG; /* the bench is also a round-trip check */
	}
	if (f)
		vf_close(f);
	*rsecs = bench_now() - t0;
	return err;
}

/* XChaCha20-Poly1305 over whole chunks, as the engine seals them. */
static void bench_aead(const uint8_t *data, uint64_t size, uint32_t chunk, uint8_t *ct,
		       double *esecs, double *dsecs, bool *ok)
{
	unsigned char key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
	unsigned char nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
	unsigned char ad[40];
	uint8_t *pt = malloc(chunk);
	double t0;

	*ok = pt != NULL;
	crypto_aead_xchacha20poly1305_ietf_keygen(key);
	randombytes_buf(ad, sizeof ad);
	t0 = bench_now();
	for (uint64_t off = 0; off < size; off += chunk) {
		size_t n = size - off < chunk ? (size_t)(size - off) : chunk;

		randombytes_buf(nonce, sizeof nonce);
		crypto_aead_xchacha20poly1305_ietf_encrypt(ct, NULL, data + off, n, ad, sizeof ad, NULL,
							   nonce, key);
	}
	*esecs = bench_now() - t0;
	/* Opens the last sealed chunk over and over: the same work per byte as
	 * opening each one (size is a multiple of chunk). */
	t0 = bench_now();
	for (uint64_t off = 0; off < size && pt; off += chunk)
		if (crypto_aead_xchacha20poly1305_ietf_decrypt(
			    pt, NULL, NULL, ct, chunk + crypto_aead_xchacha20poly1305_ietf_ABYTES, ad,
			    sizeof ad, nonce, key) != 0)
			*ok = false;
	*dsecs = bench_now() - t0;
	if (pt && memcmp(pt, data + size - chunk, chunk) != 0)
		*ok = false;
	sodium_memzero(key, sizeof key);
	free(pt);
}

/* zstd -3 on each chunk on its own (what the engine does). */
static int bench_zstd(const uint8_t *data, uint64_t size, uint32_t chunk, uint8_t *cbuf,
		      size_t cap, uint8_t *dbuf, double *csecs, double *dsecs, uint64_t *zbytes)
{
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	size_t *lens = NULL;
	uint64_t nchunks = (size + chunk - 1) / chunk, total = 0;
	double t0;
	int err = 0;

	lens = calloc(nchunks ? nchunks : 1, sizeof *lens);
	if (!cc || !dc || !lens) {
		err = -ENOMEM;
		goto out;
	}
	t0 = bench_now();
	for (uint64_t i = 0; i < nchunks; i++) {
		uint64_t off = i * chunk;
		size_t n = size - off < chunk ? (size_t)(size - off) : chunk;
		size_t z = ZSTD_compressCCtx(cc, cbuf + total, cap - total, data + off, n,
					     BENCH_ZSTD_LEVEL);

		if (ZSTD_isError(z)) {
			err = -EIO;
			goto out;
		}
		lens[i] = z;
		total += z;
	}
	*csecs = bench_now() - t0;
	*zbytes = total;
	t0 = bench_now();
	total = 0;
	for (uint64_t i = 0; i < nchunks; i++) {
		size_t d = ZSTD_decompressDCtx(dc, dbuf, chunk, cbuf + total, lens[i]);

		if (ZSTD_isError(d)) {
			err = -EIO;
			goto out;
		}
		total += lens[i];
	}
	*dsecs = bench_now() - t0;
out:
	ZSTD_freeCCtx(cc);
	ZSTD_freeDCtx(dc);
	free(lens);
	return err;
}

/* what never holds a comma: --csv prints it unquoted. */
static void bench_row(const struct bench_opts *o, uint32_t chunk, const char *what, const char *data,
		      double value, const char *unit)
{
	int prec = strcmp(unit, "s") == 0 ? 2 : 1; /* CPU seconds per GiB are small */

	if (o->csv)
		printf("%u,%s,%s,%.*f,%s\n", chunk, what, data, prec, value, unit);
	else
		printf("  %-34s %-7s %10.*f %s\n", what, data, prec, value, unit);
}

static int bench_chunk_size(const struct bench_opts *o, uint32_t chunk, uint8_t *const data[2])
{
	static const char *const kinds[2] = {"random", "csv"};
	struct bench_store bs = {.dir = -1};
	size_t zcap = ZSTD_compressBound(chunk) * (size_t)((o->size + chunk - 1) / chunk);
	uint8_t *rbuf = malloc(BENCH_IO_BYTES), *ct = malloc(chunk + 64), *zbuf = malloc(zcap),
		*dbuf = malloc(chunk);
	double w[BENCH_RUNS_MAX], wc[BENCH_RUNS_MAX], r[BENCH_RUNS_MAX], e[BENCH_RUNS_MAX];
	double d[BENCH_RUNS_MAX];
	double zc[BENCH_RUNS_MAX], zd[BENCH_RUNS_MAX];
	uint64_t store_bytes[2] = {0, 0}, zbytes[2] = {0, 0};
	int err;

	if (!rbuf || !ct || !zbuf || !dbuf) {
		cli_err("bench", "out of memory");
		err = -ENOMEM;
		goto out;
	}
	err = bench_store_open(&bs, o, chunk);
	if (err)
		goto out;
	if (!o->csv) {
		const struct kr_config *cfg = kr_keyring_config(bs.kr);
		const struct kr_level_cfg *lc = &cfg->levels[bs.level];

		printf("\n%u-byte chunks, level %s (%s%u, pad 2^%u), %.0f MiB per run, median of %u\n",
		       chunk, lc->name, lc->compress ? "zstd " : "no compression", (unsigned)lc->compress,
		       (unsigned)lc->pad_log2, (double)o->size / (1 << 20), o->runs);
	}
	for (int k = 0; k < 2; k++) {
		bool ok = true;

		for (unsigned i = 0; i < o->runs; i++) {
			err = bench_engine_once(&bs, data[k], o->size, rbuf, &w[i], &wc[i], &r[i],
						&store_bytes[k]);
			if (err) {
				cli_err("bench", "engine %s run: %s", kinds[k], strerror(-err));
				goto out;
			}
			bench_aead(data[k], o->size, chunk, ct, &e[i], &d[i], &ok);
			err = bench_zstd(data[k], o->size, chunk, zbuf, zcap, dbuf, &zc[i], &zd[i],
					 &zbytes[k]);
			if (err || !ok) {
				cli_err("bench", "primitive check failed");
				err = err ? err : -EIO;
				goto out;
			}
		}
		bench_row(o, chunk, "engine write (vf_write + seal)", kinds[k],
			  bench_mbps(o->size, bench_median(w, o->runs)), "MB/s");
		bench_row(o, chunk, "engine write CPU per GiB", kinds[k],
			  bench_median(wc, o->runs) * (double)(1u << 30) / (double)o->size, "s");
		bench_row(o, chunk, "engine read (vf_read of a fresh open)", kinds[k],
			  bench_mbps(o->size, bench_median(r, o->runs)), "MB/s");
		bench_row(o, chunk, "xchacha20poly1305 seal", kinds[k],
			  bench_mbps(o->size, bench_median(e, o->runs)), "MB/s");
		bench_row(o, chunk, "xchacha20poly1305 open", kinds[k],
			  bench_mbps(o->size, bench_median(d, o->runs)), "MB/s");
		bench_row(o, chunk, "zstd -3 compress", kinds[k],
			  bench_mbps(o->size, bench_median(zc, o->runs)), "MB/s");
		bench_row(o, chunk, "zstd -3 decompress", kinds[k],
			  bench_mbps(o->size, bench_median(zd, o->runs)), "MB/s");
	}
	if (o->csv) {
		printf("%u,store bytes,csv,%llu,bytes\n", chunk, (unsigned long long)store_bytes[1]);
		printf("%u,zstd -3 bytes,csv,%llu,bytes\n", chunk, (unsigned long long)zbytes[1]);
		printf("%u,store bytes,random,%llu,bytes\n", chunk, (unsigned long long)store_bytes[0]);
	} else {
		printf("  store bytes, csv: %llu (%.3f of plaintext); zstd -3 per chunk: %llu; "
		       "ratio %.3f\n",
		       (unsigned long long)store_bytes[1], (double)store_bytes[1] / (double)o->size,
		       (unsigned long long)zbytes[1],
		       zbytes[1] ? (double)store_bytes[1] / (double)zbytes[1] : 0);
		printf("  store bytes, random: %llu (overhead %.2f%%)\n",
		       (unsigned long long)store_bytes[0],
		       100.0 * ((double)store_bytes[0] - (double)o->size) / (double)o->size);
	}
out:
	bench_store_close(&bs);
	free(rbuf);
	free(ct);
	free(zbuf);
	free(dbuf);
	return err;
}

/* ---- options ---- */

static void bench_usage(FILE *f)
{
	fputs("Usage: strongroom bench [--size MIB] [--runs N] [--chunk-size N[,N...]]\n"
	      "                        [--level NAME] [--zstd-level N] [--dir DIR] [--csv]\n"
	      "                        [--quick] [--all-cpus]\n"
	      "       strongroom bench --emit-csv BYTES\n"
	      "\n"
	      "Measure the file engine alone, without FUSE, on one core: vf_write and vf_read\n"
	      "of random and CSV-like data through a temporary vault, next to raw\n"
	      "XChaCha20-Poly1305 and zstd -3 on whole chunks. MB/s are 10^6 bytes/s.\n"
	      "tools/bench compares the mounted filesystem with others.\n"
	      "\n"
	      "  --size MIB        data per run and kind (default 256)\n"
	      "  --runs N          runs per figure; the median is shown (default 3)\n"
	      "  --chunk-size LIST chunk sizes to try (default: the vault default, 65536)\n"
	      "  --level NAME      level to write at (default: the lowest, compressed)\n"
	      "  --zstd-level N    compress the vault's compressed levels at N instead\n"
	      "  --dir DIR         where the temporary store goes (default $TMPDIR or /tmp)\n"
	      "  --csv             print chunk,workload,data,value,unit lines\n"
	      "  --quick           --size 32 --runs 1\n"
	      "  --all-cpus        do not pin to one core, and encode each flush's chunks on\n"
	      "                    a pool of the online CPUs (at most 4), as a mount does\n"
	      "  --emit-csv BYTES  write BYTES of the deterministic CSV records to stdout\n",
	      f);
}

static int bench_parse_chunks(struct bench_opts *o, const char *list)
{
	char *copy = strdup(list), *save = NULL, *tok;
	int err = 0;

	if (!copy)
		return -ENOMEM;
	o->nchunk_sizes = 0;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *end;
		unsigned long v = strtoul(tok, &end, 0);

		if (*end == 'k' || *end == 'K') {
			v <<= 10;
			end++;
		}
		if (*end || v < KR_CHUNK_SIZE_MIN || v > KR_CHUNK_SIZE_MAX || (v & (v - 1)) ||
		    o->nchunk_sizes == BENCH_CHUNK_SIZES_MAX) {
			err = -EINVAL;
			break;
		}
		o->chunk_sizes[o->nchunk_sizes++] = (uint32_t)v;
	}
	free(copy);
	return err ? err : o->nchunk_sizes ? 0 : -EINVAL;
}

static int bench_pin_one_core(void)
{
	cpu_set_t set;
	int cpu = sched_getcpu();

	if (cpu < 0)
		return -errno;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof set, &set) == 0 ? cpu : -errno;
}

int cmd_bench(int argc, char **argv)
{
	struct bench_opts o = {.size = 256ull << 20, .runs = 3, .chunk_sizes = {KR_CHUNK_SIZE_DEFAULT},
			       .nchunk_sizes = 1};
	uint8_t *data[2] = {NULL, NULL};
	const char *tmp = getenv("TMPDIR");
	int cpu, rc = EXIT_OK;

	o.dir = tmp && *tmp ? tmp : "/tmp";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end;

		assert(a); /* argv[i] is a string for every i < argc */
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			bench_usage(stdout);
			return EXIT_OK;
		} else if (strcmp(a, "--emit-csv") == 0 && v) {
			return bench_emit_csv(v);
		} else if (strcmp(a, "--quick") == 0) {
			o.size = 32ull << 20;
			o.runs = 1;
		} else if (strcmp(a, "--csv") == 0) {
			o.csv = true;
		} else if (strcmp(a, "--all-cpus") == 0) {
			o.all_cpus = true;
		} else if (strcmp(a, "--size") == 0 && v) {
			unsigned long long mib = strtoull(v, &end, 10);

			if (*end || mib == 0 || mib > 4096) {
				cli_err(v, "--size takes MiB from 1 to 4096");
				return EXIT_USAGE;
			}
			o.size = mib << 20;
			i++;
		} else if (strcmp(a, "--runs") == 0 && v) {
			unsigned long n = strtoul(v, &end, 10);

			if (*end || n == 0 || n > BENCH_RUNS_MAX) {
				cli_err(v, "--runs takes 1 to %d", BENCH_RUNS_MAX);
				return EXIT_USAGE;
			}
			o.runs = (unsigned)n;
			i++;
		} else if (strcmp(a, "--chunk-size") == 0 && v) {
			if (bench_parse_chunks(&o, v) != 0) {
				cli_err(v, "bad chunk size list (powers of two from 4096 to 1048576)");
				return EXIT_USAGE;
			}
			i++;
		} else if (strcmp(a, "--zstd-level") == 0 && v) {
			unsigned long z = strtoul(v, &end, 10);

			if (*end || z < 1 || z > 19) {
				cli_err(v, "--zstd-level takes 1 to 19");
				return EXIT_USAGE;
			}
			o.zlevel = (int)z;
			i++;
		} else if (strcmp(a, "--level") == 0 && v) {
			o.level = v;
			i++;
		} else if (strcmp(a, "--dir") == 0 && v) {
			o.dir = v;
			i++;
		} else {
			cli_err(a, "unknown option or missing value (strongroom bench --help)");
			return EXIT_USAGE;
		}
	}

	cpu = o.all_cpus ? -1 : bench_pin_one_core();
	data[0] = malloc(o.size);
	data[1] = malloc(o.size);
	if (!data[0] || !data[1]) {
		cli_err("bench", "cannot allocate 2 x %llu bytes", (unsigned long long)o.size);
		rc = EXIT_FAIL;
		goto out;
	}
	randombytes_buf(data[0], o.size);
	bench_csv_fill(data[1], o.size);
	if (o.csv)
		printf("chunk_size,workload,data,value,unit\n");
	else if (cpu >= 0)
		printf("strongroom bench: the file engine without FUSE, on cpu %d; libsodium %s, zstd %s\n",
		       cpu, sodium_version_string(), ZSTD_versionString());
	else
		printf("strongroom bench: the file engine without FUSE, on every cpu; libsodium %s, "
		       "zstd %s\n",
		       sodium_version_string(), ZSTD_versionString());
	for (unsigned i = 0; i < o.nchunk_sizes; i++) {
		int err = bench_chunk_size(&o, o.chunk_sizes[i], data);

		if (err) {
			rc = cli_exit_for(err);
			break;
		}
	}
out:
	free(data[0]);
	free(data[1]);
	return rc;
}
