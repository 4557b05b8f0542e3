/* test_vf_pool.c - the flush's worker pool (include/strongroom/vf_pool.h):
 * every job runs once, a busy pool refuses a second batch, teardown while
 * idle, and a file flushed through a pool is byte for byte the file the
 * flushing thread writes alone (with the random bytes made repeatable).
 * Run once under valgrind --tool=helgrind when the pool changes. */
#include <pthread.h>
#include <stdatomic.h>

#include "strongroom/format.h"
#include "strongroom/vf_pool.h"
#include "tap.h"
#include "vfile_fixture.h"

/* ---- repeatable "random" bytes: file ids and nonces, so two writes of
 * the same data can be compared byte for byte ---- */

static uint64_t det_state;
static pthread_mutex_t det_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *det_name(void)
{
	return "test-deterministic";
}

static void det_buf(void *const buf, const size_t size)
{
	uint8_t *b = buf;

	pthread_mutex_lock(&det_lock);
	for (size_t i = 0; i < size; i++) {
		uint64_t z = (det_state += 0x9e3779b97f4a7c15ull);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		b[i] = (uint8_t)(z ^ (z >> 31));
	}
	pthread_mutex_unlock(&det_lock);
}

static uint32_t det_random(void)
{
	uint32_t r;

	det_buf(&r, sizeof r);
	return r;
}

static void det_seed(uint64_t s)
{
	pthread_mutex_lock(&det_lock);
	det_state = s;
	pthread_mutex_unlock(&det_lock);
}

static struct randombytes_implementation det_impl = {
	.implementation_name = det_name,
	.random = det_random,
	.buf = det_buf,
};

/* Test data that is not from the generator above. */
static void noise(uint8_t *b, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		b[i] = (uint8_t)(seed >> 24);
	}
}

/* ---- the pool alone ---- */

#define JOBS 1000

struct count_arg {
	atomic_uint runs[JOBS];
	atomic_uint bad_ctx;
	struct vf_pool *pool;
	atomic_int nested;
};

static void count_job(void *arg, size_t i, struct vf_pool_ctx *ctx)
{
	struct count_arg *a = arg;
	uint8_t *b = vf_pool_ctx_buf(ctx, 4096);

	if (!b || !ctx->z)
		atomic_fetch_add(&a->bad_ctx, 1);
	else
		b[i % 4096] = (uint8_t)i; /* its own scratch: no other thread writes it */
	ctx->used = 4096;
	atomic_fetch_add(&a->runs[i], 1);
}

TEST(every_job_of_a_batch_runs_exactly_once_many_times_over)
{
	struct vf_pool *p = vf_pool_new(4);
	struct count_arg *a = calloc(1, sizeof *a);
	CHECK(p && a);
	CHECK_EQ(vf_pool_threads(p), 4);
	for (int round = 0; round < 50; round++) {
		size_t n = (size_t)(round * 37) % JOBS + 1;
		memset(a, 0, sizeof *a);
		CHECK_EQ(vf_pool_run(p, n, count_job, a), 0);
		for (size_t i = 0; i < JOBS; i++)
			CHECK_EQ(atomic_load(&a->runs[i]), i < n ? 1 : 0);
		CHECK_EQ(atomic_load(&a->bad_ctx), 0);
	}
	vf_pool_free(p);
	free(a);
}

static void nested_job(void *arg, size_t i, struct vf_pool_ctx *ctx)
{
	struct count_arg *a = arg;

	(void)ctx;
	if (i == 0)
		atomic_store(&a->nested, vf_pool_run(a->pool, 1, count_job, a));
}

TEST(a_busy_pool_refuses_a_second_batch_instead_of_waiting)
{
	struct count_arg *a = calloc(1, sizeof *a);
	CHECK(a);
	a->pool = vf_pool_new(2);
	CHECK(a->pool);
	CHECK_EQ(vf_pool_run(a->pool, 3, nested_job, a), 0);
	CHECK_EQ(atomic_load(&a->nested), -EBUSY);
	CHECK_EQ(atomic_load(&a->runs[0]), 0);
	vf_pool_free(a->pool);
	free(a);
}

TEST(pools_are_torn_down_while_idle_with_and_without_work_done)
{
	struct count_arg *a = calloc(1, sizeof *a);
	CHECK(a);
	vf_pool_free(NULL);
	for (unsigned n = 0; n <= VF_POOL_THREADS_MAX + 1; n++) {
		struct vf_pool *p = vf_pool_new(n);
		CHECK(p);
		CHECK(vf_pool_threads(p) >= 1 && vf_pool_threads(p) <= VF_POOL_THREADS_MAX);
		if (n == 1)
			CHECK_EQ(vf_pool_threads(p), 1);
		vf_pool_free(p); /* never ran a batch */
		p = vf_pool_new(n);
		CHECK(p);
		memset(a, 0, sizeof *a);
		CHECK_EQ(vf_pool_run(p, 64, count_job, a), 0);
		CHECK_EQ(atomic_load(&a->runs[63]), 1);
		vf_pool_free(p); /* helpers idle again */
	}
	free(a);
}

/* ---- files flushed through a pool ---- */

#define FILE_BYTES (12u << 20)

/* Random data, CSV, random again, then small writes out of order and a
 * partial last chunk: every zstd guess of the pool is wrong somewhere. */
static uint8_t *mixed_data(void)
{
	uint8_t *b = malloc(FILE_BYTES);
	if (!b)
		return NULL;
	noise(b, 3u << 20, 1);
	fx_csv((char *)b + (3u << 20), 5u << 20);
	noise(b + (8u << 20), 3u << 20, 2);
	fx_csv((char *)b + (11u << 20), 1u << 20);
	return b;
}

static int write_mixed(const char *name, const uint8_t *b, struct vf_pool *pool)
{
	struct vf_file *f;
	int rc = vf_create(fx_kr, fx_dir, name, 1, S_IFREG | 0600, 0, 0, &f);

	if (rc)
		return rc;
	vf_set_pool(f, pool);
	for (size_t off = 0; off < (10u << 20); off += 1u << 20)
		if (vf_write(f, b + off, 1u << 20, off) != 1u << 20)
			rc = -EIO;
	/* The last 2 MiB back to front in 100,000-byte pieces. */
	for (size_t end = FILE_BYTES; end > (10u << 20);) {
		size_t n = end - (10u << 20) < 100000 ? end - (10u << 20) : 100000;
		if (vf_write(f, b + end - n, n, end - n) != (ssize_t)n)
			rc = -EIO;
		end -= n;
	}
	if (vf_fsync(f, true))
		rc = -EIO;
	/* A second round over the first 4 MiB: frames replacing frames. */
	for (size_t off = 0; off < (4u << 20); off += 1u << 20)
		if (vf_write(f, b + off, 1u << 20, off) != 1u << 20)
			rc = -EIO;
	vf_set_pool(f, NULL);
	if (vf_close(f))
		rc = -EIO;
	return rc;
}

TEST(a_file_flushed_through_the_pool_is_byte_identical_to_the_serial_one)
{
	uint8_t *b = mixed_data(), *back = malloc(FILE_BYTES);
	unsigned char *serial, *pooled;
	size_t slen = 0, plen = 0;
	struct vf_pool *p = vf_pool_new(4);
	struct vf_file *f;
	CHECK(b && back && p);
	det_seed(42);
	CHECK_EQ(write_mixed("serial", b, NULL), 0);
	det_seed(42);
	CHECK_EQ(write_mixed("pooled", b, p), 0);
	serial = fx_slurp("serial", &slen);
	pooled = fx_slurp("pooled", &plen);
	CHECK(serial && pooled);
	printf("# %u plaintext bytes, %zu store bytes either way\n", FILE_BYTES, slen);
	CHECK_EQ(plen, slen);
	CHECK(memcmp(serial, pooled, slen) == 0);
	/* 6 MiB of random data and the 3 MiB of it written again are raw,
	 * the 6 MiB of CSV take under half (all raw: over 16 MiB). */
	CHECK(slen < (9u << 20) + (6u << 20) / 2 + (1u << 20));
	CHECK_EQ(vf_open(fx_kr, fx_dir, "pooled", false, &f), 0);
	CHECK_EQ(vf_read(f, back, FILE_BYTES, 0), FILE_BYTES);
	CHECK(memcmp(back, b, FILE_BYTES) == 0);
	CHECK_EQ(vf_close(f), 0);
	vf_pool_free(p);
	free(serial);
	free(pooled);
	free(back);
	free(b);
}

struct writer {
	struct vf_pool *pool;
	const uint8_t *data;
	char name[32];
	int rc;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct vf_file *f;
	uint8_t *back = malloc(FILE_BYTES);

	w->rc = back ? write_mixed(w->name, w->data, w->pool) : -ENOMEM;
	if (w->rc == 0)
		w->rc = vf_open(fx_kr, fx_dir, w->name, false, &f);
	if (w->rc == 0) {
		if (vf_read(f, back, FILE_BYTES, 0) != FILE_BYTES ||
		    memcmp(back, w->data, FILE_BYTES) != 0)
			w->rc = -EBADMSG;
		vf_close(f);
	}
	free(back);
	return NULL;
}

TEST(files_written_at_once_share_one_pool_and_all_read_back)
{
	enum { NW = 3 };
	uint8_t *b = mixed_data();
	struct vf_pool *p = vf_pool_new(0);
	struct writer w[NW];
	pthread_t t[NW];
	CHECK(b && p);
	for (int i = 0; i < NW; i++) {
		w[i] = (struct writer){.pool = p, .data = b};
		snprintf(w[i].name, sizeof w[i].name, "shared-%d", i);
		CHECK_EQ(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
	}
	for (int i = 0; i < NW; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < NW; i++)
		CHECK_EQ(w[i].rc, 0);
	vf_pool_free(p);
	free(b);
}

int main(void)
{
	/* Before sodium_init (in fx_setup), as libsodium asks. */
	randombytes_set_implementation(&det_impl);
	det_seed(1);
	if (fx_setup() != 0) {
		printf("Bail out! fixture\n");
		return 1;
	}
	RUN(every_job_of_a_batch_runs_exactly_once_many_times_over);
	RUN(a_busy_pool_refuses_a_second_batch_instead_of_waiting);
	RUN(pools_are_torn_down_while_idle_with_and_without_work_done);
	RUN(a_file_flushed_through_the_pool_is_byte_identical_to_the_serial_one);
	RUN(files_written_at_once_share_one_pool_and_all_read_back);
	fx_teardown();
	return tap_done();
}
