/* vf_pool.h - a small pool of threads that encodes one flush's chunks at once.
 *
 * A vault owns one pool (vault_open creates it, vault_close frees it) and
 * lends it to the files it opens for writing (vf_set_pool). A flush of many
 * dirty chunks hands the pool one job per chunk; the pool's helper threads
 * and the flushing thread itself take jobs until none is left, and the
 * flushing thread then appends the frames in chunk order, so the store
 * bytes are those the flush would write alone.
 *
 * Each thread of the pool (the caller of vf_pool_run counting as one) has
 * its own zstd context and scratch buffer, handed to every job it runs.
 * One batch runs at a time; a second flusher finds the pool busy and
 * encodes its chunks itself, on its own core.
 *
 * Helper threads block every signal (the driver's stop signals must land
 * in its request loop) and hold no key: jobs borrow keys from the caller
 * for the length of vf_pool_run.
 */
#ifndef STRONGROOM_VF_POOL_H
#define STRONGROOM_VF_POOL_H

#include <stddef.h>
#include <stdint.h>

struct fmt_zctx;
struct vf_pool;

/* Most threads a pool uses, caller included: past 4 the single appending
 * thread and the disk, not the encoding, set the pace. */
#define VF_POOL_THREADS_MAX 4

/* What one thread of the pool lends a job. */
struct vf_pool_ctx {
	struct fmt_zctx *z; /* this thread's own */
	uint8_t *buf;	    /* scratch of cap bytes (vf_pool_ctx_buf) */
	size_t cap;
	size_t used; /* bytes of buf a job may have filled: wiped after the batch */
};

/* One job: index i of the batch, on the thread whose ctx is given. */
typedef void (*vf_pool_job_fn)(void *arg, size_t i, struct vf_pool_ctx *ctx);

/* A pool of nthreads threads in all (nthreads - 1 helpers), 0 meaning the
 * online CPUs; at most VF_POOL_THREADS_MAX. A pool of one has no helper
 * and runs every job on the caller. @return owned by the caller
 * (vf_pool_free), or NULL when out of memory or threads. */
struct vf_pool *vf_pool_new(unsigned nthreads);
/* Stop and join the helpers, wipe and free the scratch buffers. The pool
 * must be idle (no vf_pool_run in progress). Accepts NULL. */
void vf_pool_free(struct vf_pool *p);
/* Threads in all, the caller of vf_pool_run included. */
unsigned vf_pool_threads(const struct vf_pool *p);

/* Run fn(arg, i, ctx) for every i in [0, n) across the pool, the calling
 * thread taking jobs too; returns when every job has returned, with their
 * writes visible to the caller. Jobs must be independent. @return 0, or
 * -EBUSY when another batch holds the pool (nothing ran: the caller runs
 * its jobs itself). */
int vf_pool_run(struct vf_pool *p, size_t n, vf_pool_job_fn fn, void *arg);

/* ctx's scratch with room for cap bytes, grown (the old one wiped) if
 * needed. Borrowed until the batch ends. @return NULL when out of memory. */
uint8_t *vf_pool_ctx_buf(struct vf_pool_ctx *ctx, size_t cap);

#endif
