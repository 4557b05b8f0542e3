/* vf_pool.c - helper threads for one flush's chunk encoding (vf_pool.h).
 *
 * Invariants:
 *  1. One batch at a time: run_lock is held by the one vf_pool_run in
 *     progress (taken with trylock, so a second flusher never waits), and
 *     ctx[0], the caller's context, is used only under it.
 *  2. Under lock: fn, arg, n, next and pending describe the batch; a job
 *     index is taken (next++) and finished (pending--) under lock, so the
 *     caller sees pending reach 0 only after every job's writes, and a
 *     helper never runs a job of a batch that has ended (next >= n, n = 0
 *     between batches).
 *  3. Helper w uses ctx[w] only, and only while it runs a job; the caller
 *     wipes every context's scratch after the batch (helpers are idle
 *     then, invariant 2), so no plaintext outlives the flush in the pool.
 *  4. Helpers are created with every signal blocked and hold no lock while
 *     running a job.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include <sodium.h>

#include "strongroom/format.h"
#include "strongroom/vf_pool.h"

struct vf_pool_helper {
	struct vf_pool *pool;
	unsigned w; /* its ctx index, 1.. */
	pthread_t thread;
};

struct vf_pool {
	unsigned nthreads; /* caller included */
	struct vf_pool_ctx ctx[VF_POOL_THREADS_MAX];
	struct vf_pool_helper helper[VF_POOL_THREADS_MAX - 1];
	unsigned nhelpers; /* started */

	pthread_mutex_t run_lock; /* invariant 1 */
	pthread_mutex_t lock;	  /* invariant 2 */
	pthread_cond_t work;	  /* a batch has jobs, or stop */
	pthread_cond_t done;	  /* pending reached 0 */
	vf_pool_job_fn fn;
	void *arg;
	size_t n, next, pending;
	bool stop;
};

static void *vf_pool_helper_main(void *p_)
{
	struct vf_pool_helper *h = p_;
	struct vf_pool *p = h->pool;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		vf_pool_job_fn fn;
		void *arg;
		size_t i;

		while (!p->stop && p->next >= p->n)
			pthread_cond_wait(&p->work, &p->lock);
		if (p->stop)
			break;
		i = p->next++;
		fn = p->fn;
		arg = p->arg;
		pthread_mutex_unlock(&p->lock);
		fn(arg, i, &p->ctx[h->w]);
		pthread_mutex_lock(&p->lock);
		if (--p->pending == 0)
			pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void vf_pool_ctx_wipe(struct vf_pool_ctx *c)
{
	if (c->buf && c->used)
		sodium_memzero(c->buf, c->used < c->cap ? c->used : c->cap);
	c->used = 0;
}

uint8_t *vf_pool_ctx_buf(struct vf_pool_ctx *c, size_t cap)
{
	uint8_t *b;

	if (c->cap >= cap)
		return c->buf;
	b = malloc(cap);
	if (!b)
		return NULL;
	vf_pool_ctx_wipe(c);
	free(c->buf);
	c->buf = b;
	c->cap = cap;
	return b;
}

static unsigned vf_pool_online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : (unsigned)n;
}

struct vf_pool *vf_pool_new(unsigned nthreads)
{
	struct vf_pool *p = calloc(1, sizeof *p);
	sigset_t all, old;

	if (!p)
		return NULL;
	if (nthreads == 0)
		nthreads = vf_pool_online_cpus();
	if (nthreads > VF_POOL_THREADS_MAX)
		nthreads = VF_POOL_THREADS_MAX;
	p->nthreads = nthreads;
	pthread_mutex_init(&p->run_lock, NULL);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	for (unsigned w = 0; w < nthreads; w++) {
		p->ctx[w].z = fmt_zctx_new();
		if (!p->ctx[w].z)
			goto fail;
	}
	/* Invariant 4: helpers inherit a full signal mask. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (unsigned w = 1; w < nthreads; w++) {
		struct vf_pool_helper *h = &p->helper[w - 1];

		h->pool = p;
		h->w = w;
		if (pthread_create(&h->thread, NULL, vf_pool_helper_main, h) != 0)
			break;
		p->nhelpers++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (p->nhelpers == nthreads - 1)
		return p;
fail:
	vf_pool_free(p);
	return NULL;
}

void vf_pool_free(struct vf_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nhelpers; i++)
		pthread_join(p->helper[i].thread, NULL);
	for (unsigned w = 0; w < p->nthreads; w++) {
		vf_pool_ctx_wipe(&p->ctx[w]);
		free(p->ctx[w].buf);
		fmt_zctx_free(p->ctx[w].z);
	}
	pthread_mutex_destroy(&p->run_lock);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	free(p);
}

unsigned vf_pool_threads(const struct vf_pool *p)
{
	return p ? p->nthreads : 1;
}

int vf_pool_run(struct vf_pool *p, size_t n, vf_pool_job_fn fn, void *arg)
{
	if (pthread_mutex_trylock(&p->run_lock) != 0)
		return -EBUSY;
	pthread_mutex_lock(&p->lock);
	p->fn = fn;
	p->arg = arg;
	p->n = n;
	p->next = 0;
	p->pending = n;
	if (p->nhelpers && n > 1)
		pthread_cond_broadcast(&p->work);
	while (p->next < p->n) {
		size_t i = p->next++;

		pthread_mutex_unlock(&p->lock);
		fn(arg, i, &p->ctx[0]);
		pthread_mutex_lock(&p->lock);
		p->pending--;
	}
	while (p->pending > 0)
		pthread_cond_wait(&p->done, &p->lock);
	p->n = p->next = 0;
	p->fn = NULL;
	p->arg = NULL;
	pthread_mutex_unlock(&p->lock);
	for (unsigned w = 0; w < p->nthreads; w++)
		vf_pool_ctx_wipe(&p->ctx[w]);
	pthread_mutex_unlock(&p->run_lock);
	return 0;
}
