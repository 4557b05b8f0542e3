/* vfile.c - the file engine: one plaintext file <-> one ciphertext file
 * (docs/format.md sections 8 and 9).
 *
 * A vf_file holds the state of the last seal (size, attributes, live chunk
 * map), a bounded write-back set of dirty chunks and a small cache of
 * decrypted chunks. All store I/O goes through fs/store, all byte layouts
 * through fs/format.
 *
 * Invariants:
 *  1. The map is sorted by chunk index and every entry names a frame that
 *     lies before f->end; for every live chunk, index * chunk_size +
 *     raw_len <= size (truncate rewrites the cut chunk), so bytes past a
 *     chunk's raw length and holes read as zeros.
 *  2. Frames are only appended at f->end; seq strictly increases with every
 *     frame ever written to the file (after a crash it jumps by
 *     VF_SEQ_RECOVERY_GAP so no lost seq is ever reused). A (chunk index,
 *     seq) pair therefore names exactly one authentic frame.
 *  3. A chunk read returns bytes only after the frame at the mapped offset
 *     authenticated with the mapped chunk index and seq; anything else is
 *     -EBADMSG and the output is not filled.
 *  4. header.synced_end only ever names a seal that fdatasync made durable
 *     (the header is rewritten after the sync); a file shorter than it, or
 *     whose seal there does not open, was truncated or edited: -EBADMSG.
 *  5. The dirty set holds at most VF_DIRTY_MAX bytes of chunks; dirty
 *     chunks are written (appended as frames) before any seal.
 *
 * Locking: f->lock is a rwlock: reads take it shared, everything that
 * changes state takes it exclusive. The decrypted-chunk cache has its own
 * mutex because shared readers fill it. A flush may hand its chunks to
 * the vault's worker pool (vf_pool.h): the helpers read the dirty set and
 * write each its own frame slot and job entry while the flushing thread,
 * holding the exclusive lock, waits in vf_pool_run; nothing else of the
 * file is touched off the flushing thread.
 *
 * States of a vf_file (transitions name their functions):
 *   sealed --vf_write/vf_truncate/vf_chmod_chown--> dirty
 *   dirty --vf_flush_dirty (dirty set full)--> dirty (frames appended)
 *   dirty --vf_seal_write (fsync, close, truncate, attribute change)--> sealed
 *   sealed --vf_fsync--> synced (fdatasync + header.synced_end)
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/falloc.h>

#include <sodium.h>

#include "strongroom/format.h"
#include "strongroom/store.h"
#include "strongroom/vf_pool.h"
#include "strongroom/vfile.h"

#define VF_DIRTY_MAX (1u << 20)
#define VF_CACHE_SLOTS 2
#define VF_SEQ_RECOVERY_GAP (1ull << 32)
#define VF_TMP_NAME_BYTES 64
/* After a chunk that zstd did not shrink, the file's next chunks are stored
 * raw without trying, and every VF_ZSTD_RETRY-th one tries again. */
#define VF_ZSTD_RETRY 16

/* One chunk of a flush: what was planned and what came out. */
struct vf_job {
	bool ztry;    /* zstd tried (planned, then done) */
	bool comp;    /* stored compressed */
	ssize_t flen; /* frame length, or -errno */
};

struct vf_dirty {
	uint64_t index;
	uint32_t len; /* valid bytes; the rest of data is zero */
	uint32_t lo;  /* lowest byte written, or loaded (0); chunk_size: none */
	uint8_t *data; /* chunk_size bytes */
};

struct vf_cache_slot {
	bool valid;
	uint64_t index, seq;
	uint32_t len;
	uint8_t *data;
};

struct vf_file {
	pthread_rwlock_t lock;
	pthread_mutex_t cache_lock;
	const struct kr_keyring *kr;
	int fd;
	bool writable;
	bool recovered;
	bool dirty_meta; /* attributes or size changed since the last seal */

	unsigned level;
	uint8_t file_id[FMT_ID_BYTES];
	unsigned chunk_log2;
	uint32_t chunk_size;
	int compress;
	unsigned pad_log2;
	const unsigned char *content_key, *meta_key; /* borrowed from kr */

	uint64_t size;
	uint32_t mode, uid, gid, rdev;
	unsigned char *xattrs;
	size_t xattrs_len;

	struct fmt_chunk_ref *map;
	size_t nmap, map_cap;
	uint64_t map_raw;  /* sum of raw_len over the map */
	uint64_t map_live; /* sum of frame_len over the map */

	uint64_t end;	   /* append offset = ciphertext file size */
	uint64_t seal_end; /* end of the last seal written or found */
	uint64_t seal_len; /* its length incl. locator */
	uint64_t synced_end;
	uint64_t next_seq;
	/* Chunks still to store raw before zstd is tried again: random data
	 * (media, archives, ciphertext) costs a zstd pass per chunk for
	 * nothing otherwise. Under the exclusive lock; starts at 0 (try) at
	 * every open. */
	unsigned zskip;
	bool zfailed; /* the last whole chunk that tried zstd did not shrink */
	struct vf_pool *pool; /* borrowed (vf_set_pool); NULL: encode alone */

	struct vf_dirty *dirty;
	size_t ndirty, dirty_max;

	struct vf_cache_slot cache[VF_CACHE_SLOTS];
	unsigned cache_next;

	/* Write buffers, under the exclusive lock. They live from the first
	 * write to the next seal, so a long write allocates (and faults in)
	 * its chunk, plaintext and frame buffers once, not at every flush. */
	uint8_t *wbuf; /* frames of one flush */
	size_t wbuf_cap;
	uint8_t *ptbuf;		    /* one chunk plaintext; wiped after each flush */
	struct fmt_chunk_ref *refs; /* dirty_max entries: one flush's new map entries */
	struct vf_job *jobs;	    /* dirty_max: one flush's chunks, in flush order */
	uint8_t *nonces;	    /* dirty_max frame nonces, drawn per flush */
	uint8_t **spare;	    /* dirty_max freed dirty chunk buffers, reused */
	size_t nspare;
};

static uint64_t vf_chunk_start(const struct vf_file *f, uint64_t index)
{
	return index << f->chunk_log2;
}

/* ---- zstd contexts ----
 *
 * Reads decode under the shared lock, so each decode needs a context of its
 * own; a flush compresses on whichever thread holds the exclusive lock. A
 * decode or a flush borrows a context from a process-wide pool and gives
 * it back; the pool keeps at most as many as ever ran at once (VF_ZPOOL_MAX
 * idle at most, more are freed on return). vf_zctx_trim frees the idle
 * ones; vault_close calls it, so a driver exits holding none.
 * Thread-specific contexts were reachable from their own thread only: lost
 * in the copy of the driver that the alert hook forks (only the forking
 * thread survives a fork), and never freed for a thread still alive when
 * the process exits. (The encode workers of vf_pool.h own theirs.)
 */

#define VF_ZPOOL_MAX 64

static pthread_mutex_t vf_zpool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fmt_zctx *vf_zpool[VF_ZPOOL_MAX];
static size_t vf_zpool_n;

/* @return a context owned until vf_zctx_put, or NULL (out of memory:
 * fmt_chunk_decode then decodes without one). */
static struct fmt_zctx *vf_zctx_get(void)
{
	struct fmt_zctx *z = NULL;

	pthread_mutex_lock(&vf_zpool_lock);
	if (vf_zpool_n)
		z = vf_zpool[--vf_zpool_n];
	pthread_mutex_unlock(&vf_zpool_lock);
	return z ? z : fmt_zctx_new();
}

/* Give z (NULL accepted) back to the pool, or free it if the pool is full. */
static void vf_zctx_put(struct fmt_zctx *z)
{
	if (!z)
		return;
	pthread_mutex_lock(&vf_zpool_lock);
	if (vf_zpool_n < VF_ZPOOL_MAX) {
		vf_zpool[vf_zpool_n++] = z;
		z = NULL;
	}
	pthread_mutex_unlock(&vf_zpool_lock);
	fmt_zctx_free(z);
}

/* Decode a chunk payload with a borrowed context. */
static ssize_t vf_chunk_decode(const uint8_t *pt, size_t len, bool compressed, uint8_t *out,
			       size_t chunk_size)
{
	struct fmt_zctx *z = vf_zctx_get();
	ssize_t n = fmt_chunk_decode(z, pt, len, compressed, out, chunk_size);

	vf_zctx_put(z);
	return n;
}

void vf_zctx_trim(void)
{
	struct fmt_zctx *idle[VF_ZPOOL_MAX];
	size_t n, i;

	pthread_mutex_lock(&vf_zpool_lock);
	n = vf_zpool_n;
	memcpy(idle, vf_zpool, n * sizeof idle[0]);
	vf_zpool_n = 0;
	pthread_mutex_unlock(&vf_zpool_lock);
	for (i = 0; i < n; i++)
		fmt_zctx_free(idle[i]);
}

/* ---- the chunk map ---- */

/* First position whose index is >= index. */
static size_t vf_map_lower(const struct vf_file *f, uint64_t index)
{
	size_t lo = 0, hi = f->nmap;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (f->map[mid].index < index)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct fmt_chunk_ref *vf_map_find(const struct vf_file *f, uint64_t index)
{
	size_t i = vf_map_lower(f, index);

	return i < f->nmap && f->map[i].index == index ? &f->map[i] : NULL;
}

static int vf_map_put(struct vf_file *f, const struct fmt_chunk_ref *r)
{
	size_t i = vf_map_lower(f, r->index);

	if (i < f->nmap && f->map[i].index == r->index) {
		f->map_raw -= f->map[i].raw_len;
		f->map_live -= f->map[i].frame_len;
	} else {
		if (f->nmap == f->map_cap) {
			size_t cap = f->map_cap ? f->map_cap * 2 : 16;
			struct fmt_chunk_ref *m = realloc(f->map, cap * sizeof *m);
			if (!m)
				return -ENOMEM;
			f->map = m;
			f->map_cap = cap;
		}
		memmove(&f->map[i + 1], &f->map[i], (f->nmap - i) * sizeof *f->map);
		f->nmap++;
	}
	f->map[i] = *r;
	f->map_raw += r->raw_len;
	f->map_live += r->frame_len;
	return 0;
}

/* Drop every chunk whose index is >= from. */
static void vf_map_cut(struct vf_file *f, uint64_t from)
{
	size_t i = vf_map_lower(f, from);

	for (size_t j = i; j < f->nmap; j++) {
		f->map_raw -= f->map[j].raw_len;
		f->map_live -= f->map[j].frame_len;
	}
	f->nmap = i;
}

/* Replace the map and attributes with a decoded seal (which is consumed). */
static void vf_state_take_seal(struct vf_file *f, struct fmt_seal *s)
{
	free(f->map);
	free(f->xattrs);
	f->map = s->map;
	f->nmap = f->map_cap = s->nmap;
	f->xattrs = s->xattrs;
	f->xattrs_len = s->xattrs_len;
	f->size = s->size;
	f->mode = s->mode;
	f->uid = s->uid;
	f->gid = s->gid;
	f->rdev = s->rdev;
	f->map_raw = f->map_live = 0;
	for (size_t i = 0; i < f->nmap; i++) {
		f->map_raw += f->map[i].raw_len;
		f->map_live += f->map[i].frame_len;
	}
	s->map = NULL;
	s->xattrs = NULL;
	s->nmap = s->xattrs_len = 0;
}

/* An authenticated seal must also be consistent with where it was found. */
static int vf_seal_check(const struct vf_file *f, const struct fmt_seal *s, uint64_t seal_off,
			 uint64_t seal_seq)
{
	for (size_t i = 0; i < s->nmap; i++) {
		const struct fmt_chunk_ref *r = &s->map[i];
		if (r->offset + r->frame_len > seal_off || r->seq >= seal_seq)
			return -EUCLEAN;
		if (r->raw_len > f->chunk_size ||
		    r->index > ((uint64_t)INT64_MAX >> f->chunk_log2) - 1 ||
		    vf_chunk_start(f, r->index) + r->raw_len > s->size)
			return -EUCLEAN;
	}
	return 0;
}

/* ---- the decrypted-chunk cache ---- */

static void vf_cache_drop(struct vf_file *f, uint64_t index, bool all)
{
	pthread_mutex_lock(&f->cache_lock);
	for (int i = 0; i < VF_CACHE_SLOTS; i++)
		if (all || f->cache[i].index == index)
			f->cache[i].valid = false;
	pthread_mutex_unlock(&f->cache_lock);
}

/* Copy [from, from+n) of a cached chunk to out. @return true on a hit. */
static bool vf_cache_get(struct vf_file *f, const struct fmt_chunk_ref *r, uint8_t *out,
			 uint32_t from, uint32_t n)
{
	bool hit = false;

	pthread_mutex_lock(&f->cache_lock);
	for (int i = 0; i < VF_CACHE_SLOTS; i++) {
		struct vf_cache_slot *c = &f->cache[i];
		if (c->valid && c->index == r->index && c->seq == r->seq) {
			memcpy(out, c->data + from, n);
			hit = true;
			break;
		}
	}
	pthread_mutex_unlock(&f->cache_lock);
	return hit;
}

/* Hand a decrypted chunk buffer (chunk_size bytes) to the cache; it takes
 * ownership and returns a buffer the caller must free. */
static uint8_t *vf_cache_put(struct vf_file *f, const struct fmt_chunk_ref *r, uint8_t *data)
{
	struct vf_cache_slot *c;
	uint8_t *old;

	pthread_mutex_lock(&f->cache_lock);
	c = &f->cache[f->cache_next++ % VF_CACHE_SLOTS];
	old = c->data;
	c->data = data;
	c->index = r->index;
	c->seq = r->seq;
	c->len = r->raw_len;
	c->valid = true;
	pthread_mutex_unlock(&f->cache_lock);
	return old;
}

/* ---- reading chunks ---- */

/* Read, authenticate and decode the frame r names into out (chunk_size
 * bytes, zero-filled past the raw length). @return 0 or -EBADMSG / -EIO. */
static int vf_chunk_decrypt(struct vf_file *f, const struct fmt_chunk_ref *r, uint8_t *out)
{
	size_t ptcap = r->frame_len;
	uint8_t *frame = malloc(r->frame_len), *pt = malloc(ptcap);
	struct fmt_frame_header h;
	ssize_t n;
	int rc;

	if (!frame || !pt) {
		rc = -ENOMEM;
		goto out;
	}
	n = store_pread(f->fd, frame, r->frame_len, r->offset);
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	/* A short frame (file cut) or any frame that fails to open where the
	 * authenticated seal says a good one lies is an integrity failure. */
	n = (size_t)n == r->frame_len ? fmt_frame_open(f->content_key, f->file_id, frame,
							   r->frame_len, &h, pt, ptcap)
				      : -EBADMSG;
	if (n < 0 || h.type != FMT_FRAME_CHUNK || h.arg != r->index || h.seq != r->seq) {
		rc = -EBADMSG;
		goto out;
	}
	n = vf_chunk_decode(pt, (size_t)n, h.flags & FMT_FRAME_F_COMPRESSED, out, f->chunk_size);
	if (n < 0 || (size_t)n != r->raw_len) {
		rc = -EBADMSG;
		goto out;
	}
	memset(out + n, 0, f->chunk_size - (size_t)n);
	rc = 0;
out:
	if (pt)
		sodium_memzero(pt, ptcap);
	free(pt);
	free(frame);
	return rc;
}

/* Copy [from, from+n) of chunk r into out, through the cache. */
static int vf_chunk_read(struct vf_file *f, const struct fmt_chunk_ref *r, uint8_t *out,
			 uint32_t from, uint32_t n)
{
	uint8_t *buf;
	int rc;

	if (vf_cache_get(f, r, out, from, n))
		return 0;
	buf = malloc(f->chunk_size);
	if (!buf)
		return -ENOMEM;
	rc = vf_chunk_decrypt(f, r, buf);
	if (rc == 0) {
		memcpy(out, buf + from, n);
		buf = vf_cache_put(f, r, buf);
	}
	free(buf);
	return rc;
}

/* ---- dirty chunks and appending frames ---- */

static struct vf_dirty *vf_dirty_find(const struct vf_file *f, uint64_t index)
{
	for (size_t i = 0; i < f->ndirty; i++)
		if (f->dirty[i].index == index)
			return &f->dirty[i];
	return NULL;
}

static int vf_dirty_cmp(const void *a, const void *b)
{
	const struct vf_dirty *x = a, *y = b;

	return x->index < y->index ? -1 : x->index > y->index;
}

/* A zeroed chunk buffer, from the spares when there is one. */
static uint8_t *vf_chunk_buf_get(struct vf_file *f)
{
	if (f->nspare) {
		uint8_t *b = f->spare[--f->nspare];
		memset(b, 0, f->chunk_size);
		return b;
	}
	return calloc(1, f->chunk_size);
}

/* Wipe a chunk buffer and keep it as a spare (or free it). */
static void vf_chunk_buf_put(struct vf_file *f, uint8_t *b)
{
	if (!b)
		return;
	if (f->spare && f->nspare < f->dirty_max) {
		f->spare[f->nspare++] = b;
		return; /* wiped (zeroed) when handed out again or at vf_free */
	}
	sodium_memzero(b, f->chunk_size);
	free(b);
}

static void vf_dirty_clear(struct vf_file *f)
{
	for (size_t i = 0; i < f->ndirty; i++)
		vf_chunk_buf_put(f, f->dirty[i].data);
	f->ndirty = 0;
}

/* Append bytes at f->end. On failure cut back whatever part landed, so a
 * later append and seal leave no stray bytes after the seal. */
static int vf_append(struct vf_file *f, const uint8_t *buf, size_t len)
{
	ssize_t n = store_pwrite(f->fd, buf, len, f->end);

	if (n < 0) {
		(void)store_ftruncate(f->fd, f->end);
		return (int)n;
	}
	f->end += len;
	return 0;
}

/* Whole: every byte of the chunk written (or loaded). A chunk written
 * from its middle is not, although its len may reach the end: the kernel
 * hands the driver the pieces of a sequential write on several threads, and
 * the piece that starts a chunk can arrive after the one that ends it. */
static bool vf_dirty_whole(const struct vf_file *f, const struct vf_dirty *d)
{
	return d->lo == 0 && d->len == f->chunk_size;
}

static size_t vf_frame_max(const struct vf_file *f)
{
	return FMT_FRAME_HEADER_BYTES + fmt_chunk_bound(f->chunk_size) + FMT_FRAME_TAG_BYTES;
}

/* Whether dirty chunk d tries zstd: always when it is not whole (a short
 * or sparse chunk, a few bytes or zeros around a small write, says
 * nothing of the data), else when no failed try is being waited out. */
static bool vf_ztry(const struct vf_file *f, const struct vf_dirty *d)
{
	return f->compress > 0 && (f->zskip == 0 || !vf_dirty_whole(f, d));
}

/* The skip state after chunk d, which tried zstd or not and ended
 * compressed or not. Chunks are taken in flush order (index order). */
static void vf_ztry_done(struct vf_file *f, const struct vf_dirty *d, bool tried, bool comp)
{
	if (!vf_dirty_whole(f, d))
		return;
	if (f->zskip) {
		f->zskip--;
	} else if (tried) {
		f->zskip = comp ? 0 : VF_ZSTD_RETRY - 1;
		f->zfailed = !comp;
	}
}

/* Before a parallel flush: guess each chunk's vf_ztry, taking every try
 * to end as the file's last one did. vf_flush_dirty walks the chunks in
 * order afterwards and encodes again any whose guess was wrong, so the
 * guess changes the work done, never the bytes written. */
static void vf_ztry_plan(struct vf_file *f)
{
	unsigned zskip = f->zskip;

	for (size_t i = 0; i < f->ndirty; i++) {
		bool *t = &f->jobs[i].ztry;

		if (f->compress == 0) {
			*t = false;
		} else if (!vf_dirty_whole(f, &f->dirty[i])) {
			*t = true;
		} else if (zskip) {
			*t = false;
			zskip--;
		} else {
			*t = true;
			zskip = f->zfailed ? VF_ZSTD_RETRY - 1 : 0;
		}
	}
}

/* Encode dirty chunk i and seal it as the frame with seq next_seq + i and
 * the flush's nonce i, into out (vf_frame_max bytes); the result goes to
 * jobs[i]. *ptlen is raised to the plaintext bytes pt held, for the
 * caller to wipe. Reads f only (any thread, under the flusher's lock). */
static void vf_chunk_seal(const struct vf_file *f, size_t i, bool ztry, struct fmt_zctx *z,
			  uint8_t *pt, size_t *ptlen, uint8_t *out)
{
	const struct vf_dirty *d = &f->dirty[i];
	struct vf_job *j = &f->jobs[i];
	struct fmt_frame_header h = {.type = FMT_FRAME_CHUNK, .seq = f->next_seq + i,
				     .arg = d->index};
	ssize_t plen;

	memcpy(h.nonce, f->nonces + i * FMT_FRAME_NONCE_BYTES, FMT_FRAME_NONCE_BYTES);
	j->ztry = ztry;
	plen = fmt_chunk_encode(z, d->data, d->len, ztry ? f->compress : 0, f->pad_log2,
				f->chunk_size, pt, fmt_chunk_bound(f->chunk_size), &j->comp);
	if (plen < 0) {
		j->flen = plen;
		*ptlen = fmt_chunk_bound(f->chunk_size);
		return;
	}
	if ((size_t)plen > *ptlen)
		*ptlen = (size_t)plen;
	h.flags = j->comp ? FMT_FRAME_F_COMPRESSED : 0;
	j->flen = fmt_frame_seal_nonce(f->content_key, f->file_id, &h, pt, (size_t)plen, out,
				       vf_frame_max(f));
}

/* A job of the pool: chunk i into its own slot of the frame buffer. */
static void vf_flush_job(void *arg, size_t i, struct vf_pool_ctx *ctx)
{
	struct vf_file *f = arg;
	uint8_t *pt = vf_pool_ctx_buf(ctx, fmt_chunk_bound(f->chunk_size));

	if (!pt) {
		f->jobs[i].flen = -ENOMEM;
		return;
	}
	vf_chunk_seal(f, i, f->jobs[i].ztry, ctx->z, pt, &ctx->used, f->wbuf + i * vf_frame_max(f));
}

/* Write every dirty chunk as a CHUNK frame, in one pwrite.
 *
 * With a pool, the chunks are encoded at once, each into its own
 * vf_frame_max slot of wbuf, with the zstd decisions guessed
 * (vf_ztry_plan); then this thread walks them in order as the serial path
 * does, re-encodes a chunk whose guess was wrong, and packs each frame
 * behind the one before. Nonces are drawn for the whole flush first, so
 * both paths write the same bytes (tests/unit/test_vf_pool.c). */
static int vf_flush_encode(struct vf_file *f, struct fmt_zctx *z)
{
	size_t fmax = vf_frame_max(f), ptcap = fmt_chunk_bound(f->chunk_size), ptmax = 0, used = 0;
	struct fmt_chunk_ref *refs = f->refs;
	uint64_t base = f->end;
	uint8_t *buf, *pt;
	bool par;
	int rc = 0;

	if (f->wbuf_cap < fmax * f->ndirty) {
		/* Sized for the whole dirty set at once, so it grows once. */
		uint8_t *nb = realloc(f->wbuf, fmax * f->dirty_max);
		if (!nb)
			return -ENOMEM;
		f->wbuf = nb;
		f->wbuf_cap = fmax * f->dirty_max;
	}
	if (!f->ptbuf && !(f->ptbuf = malloc(ptcap)))
		return -ENOMEM;
	buf = f->wbuf;
	pt = f->ptbuf;
	qsort(f->dirty, f->ndirty, sizeof *f->dirty, vf_dirty_cmp);
	/* One draw for every nonce of the flush (also two getrandom calls
	 * for 16 frames, libsodium reading 256 bytes at a time, instead of
	 * one per frame). */
	randombytes_buf(f->nonces, f->ndirty * FMT_FRAME_NONCE_BYTES);
	par = f->pool && f->ndirty > 1 && vf_pool_threads(f->pool) > 1;
	if (par) {
		vf_ztry_plan(f);
		par = vf_pool_run(f->pool, f->ndirty, vf_flush_job, f) == 0;
	}
	for (size_t i = 0; i < f->ndirty; i++) {
		struct vf_dirty *d = &f->dirty[i];
		struct vf_job *j = &f->jobs[i];
		bool ztry = vf_ztry(f, d);
		uint8_t *slot = par ? buf + i * fmax : buf + used;

		/* A wrong guess: zstd not tried where it should have been,
		 * or tried and kept where this chunk must go raw (tried and
		 * not kept is the raw frame already). */
		if (!par || (ztry && !j->ztry) || (!ztry && j->comp))
			vf_chunk_seal(f, i, ztry, z, pt, &ptmax, slot);
		if (j->flen < 0) {
			rc = (int)j->flen;
			goto out;
		}
		vf_ztry_done(f, d, ztry, j->comp);
		if (slot != buf + used)
			memmove(buf + used, slot, (size_t)j->flen);
		refs[i] = (struct fmt_chunk_ref){.index = d->index, .offset = base + used,
						 .seq = f->next_seq + i, .frame_len = (uint32_t)j->flen,
						 .raw_len = d->len};
		used += (size_t)j->flen;
	}
	rc = vf_append(f, buf, used);
	if (rc)
		goto out;
	f->next_seq += f->ndirty;
	for (size_t i = 0; i < f->ndirty; i++) {
		rc = vf_map_put(f, &refs[i]);
		if (rc)
			goto out;
	}
	vf_dirty_clear(f);
out:
	sodium_memzero(pt, ptmax);
	return rc;
}

/* vf_flush_encode with a borrowed zstd context (this thread's share of
 * the work; the pool's helpers use their own). */
static int vf_flush_dirty(struct vf_file *f)
{
	struct fmt_zctx *z;
	int rc;

	if (f->ndirty == 0)
		return 0;
	z = vf_zctx_get();
	if (!z)
		return -ENOMEM;
	rc = vf_flush_encode(f, z);
	vf_zctx_put(z);
	return rc;
}

/* The dirty set is full: append the whole chunks and keep the partly
 * written ones, whose missing bytes are usually on their way; a frame
 * written for them now would be dead once they arrive (the store of a
 * 1 GiB CSV file written with dd through the mount was 4.7% larger than
 * the engine's own). Flushes everything when fewer than half the chunks
 * are whole, so the set always drains. */
static int vf_flush_whole(struct vf_file *f)
{
	size_t nwhole = 0, npart, i, j;
	int rc;

	for (i = 0; i < f->ndirty; i++)
		if (vf_dirty_whole(f, &f->dirty[i]))
			nwhole++;
	if (nwhole == f->ndirty || nwhole < (f->dirty_max + 1) / 2)
		return vf_flush_dirty(f);
	/* Whole chunks to the front, partial ones behind them. */
	for (i = 0, j = f->ndirty; i < j;) {
		if (vf_dirty_whole(f, &f->dirty[i])) {
			i++;
		} else {
			struct vf_dirty t = f->dirty[i];

			f->dirty[i] = f->dirty[--j];
			f->dirty[j] = t;
		}
	}
	npart = f->ndirty - nwhole;
	f->ndirty = nwhole;
	rc = vf_flush_dirty(f); /* on success it empties [0, nwhole) only */
	if (rc) {
		f->ndirty = nwhole + npart;
		return rc;
	}
	memmove(f->dirty, f->dirty + nwhole, npart * sizeof *f->dirty);
	f->ndirty = npart;
	return 0;
}

/* Make chunk index dirty, loading its current content. */
static int vf_dirty_get(struct vf_file *f, uint64_t index, struct vf_dirty **out)
{
	struct vf_dirty *d = vf_dirty_find(f, index);
	const struct fmt_chunk_ref *r;
	int rc;

	if (d) {
		*out = d;
		return 0;
	}
	if (f->ndirty >= f->dirty_max) {
		rc = vf_flush_whole(f);
		if (rc)
			return rc;
	}
	d = &f->dirty[f->ndirty];
	d->data = vf_chunk_buf_get(f);
	if (!d->data)
		return -ENOMEM;
	d->index = index;
	d->len = 0;
	d->lo = f->chunk_size;
	r = vf_map_find(f, index);
	if (r) {
		rc = vf_chunk_read(f, r, d->data, 0, r->raw_len);
		if (rc) {
			vf_chunk_buf_put(f, d->data);
			return rc;
		}
		d->len = r->raw_len;
		d->lo = 0;
	}
	f->ndirty++;
	*out = d;
	return 0;
}

/* A seal marks a pause in writing (fsync, close, truncate, attributes):
 * give back the write buffers, so many open files cost little memory. */
static void vf_buffers_release(struct vf_file *f)
{
	for (size_t i = 0; i < f->nspare; i++) {
		sodium_memzero(f->spare[i], f->chunk_size);
		free(f->spare[i]);
	}
	f->nspare = 0;
	free(f->wbuf); /* ciphertext only */
	f->wbuf = NULL;
	f->wbuf_cap = 0;
	if (f->ptbuf) {
		sodium_memzero(f->ptbuf, fmt_chunk_bound(f->chunk_size));
		free(f->ptbuf);
		f->ptbuf = NULL;
	}
}

/* Flush dirty chunks and append a SEAL frame with its locator. */
static int vf_seal_write(struct vf_file *f)
{
	struct fmt_seal s = {.size = f->size, .mode = f->mode, .uid = f->uid, .gid = f->gid,
			     .rdev = f->rdev, .xattrs = f->xattrs, .xattrs_len = f->xattrs_len,
			     .map = f->map, .nmap = f->nmap};
	struct fmt_frame_header h = {.type = FMT_FRAME_SEAL};
	size_t ptlen, cap;
	uint8_t *pt = NULL, *buf = NULL;
	ssize_t n;
	int rc;

	rc = vf_flush_dirty(f);
	if (rc)
		return rc;
	vf_buffers_release(f);
	ptlen = fmt_seal_bound(f->xattrs_len, f->nmap);
	cap = FMT_FRAME_HEADER_BYTES + ptlen + FMT_FRAME_TAG_BYTES + FMT_SEAL_LOCATOR_BYTES;
	s.map = f->map;
	s.nmap = f->nmap;
	pt = malloc(ptlen);
	buf = malloc(cap);
	if (!pt || !buf) {
		rc = -ENOMEM;
		goto out;
	}
	n = fmt_seal_encode(&s, pt, ptlen);
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	h.seq = f->next_seq;
	h.arg = f->end;
	n = fmt_frame_seal(f->content_key, f->file_id, &h, pt, ptlen, buf, cap);
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	fmt_seal_locator_encode((uint64_t)n + FMT_SEAL_LOCATOR_BYTES, buf + n);
	rc = vf_append(f, buf, (size_t)n + FMT_SEAL_LOCATOR_BYTES);
	if (rc)
		goto out;
	f->next_seq++;
	f->seal_end = f->end;
	f->seal_len = (uint64_t)n + FMT_SEAL_LOCATOR_BYTES;
	f->dirty_meta = false;
out:
	if (pt)
		sodium_memzero(pt, ptlen);
	free(pt);
	free(buf);
	return rc;
}

static bool vf_changed(const struct vf_file *f)
{
	return f->dirty_meta || f->ndirty > 0 || f->seal_end != f->end;
}

/* ---- header and level ---- */

static int vf_level_find(const struct kr_keyring *kr, const struct fmt_file_header *h,
			 unsigned *level)
{
	const struct kr_config *cfg = kr_keyring_config(kr);
	const unsigned char *hint_key = kr_vault_subkey(kr, KR_VSUB_HINT);
	uint8_t want[FMT_HINT_BYTES];
	int found = -1;

	if (!hint_key)
		return -ENOKEY;
	/* Compare against every level, without stopping early. */
	for (unsigned l = 0; l < cfg->nlevels; l++) {
		fmt_level_hint(hint_key, h->file_id, l, want);
		if (sodium_memcmp(want, h->hint, FMT_HINT_BYTES) == 0)
			found = (int)l;
	}
	if (found < 0)
		return -EBADMSG;
	*level = (unsigned)found;
	return kr_level_held(kr, *level) ? 0 : -ENOKEY;
}

static int vf_header_write(struct vf_file *f, uint64_t synced_end)
{
	struct fmt_file_header h = {.version = FMT_FILE_VERSION, .chunk_log2 = (uint8_t)f->chunk_log2,
				    .synced_end = synced_end};
	uint8_t buf[FMT_FILE_HEADER_BYTES];
	ssize_t n;

	memcpy(h.file_id, f->file_id, FMT_ID_BYTES);
	fmt_level_hint(kr_vault_subkey(f->kr, KR_VSUB_HINT), f->file_id, f->level, h.hint);
	fmt_file_header_encode(&h, f->meta_key, buf);
	n = store_pwrite(f->fd, buf, sizeof buf, 0);
	return n < 0 ? (int)n : 0;
}

static struct vf_file *vf_alloc(const struct kr_keyring *kr, int fd, bool writable)
{
	struct vf_file *f = calloc(1, sizeof *f);

	if (!f)
		return NULL;
	f->kr = kr;
	f->fd = fd;
	f->writable = writable;
	pthread_rwlock_init(&f->lock, NULL);
	pthread_mutex_init(&f->cache_lock, NULL);
	return f;
}

static int vf_level_setup(struct vf_file *f, unsigned level, unsigned chunk_log2)
{
	const struct kr_config *cfg = kr_keyring_config(f->kr);

	if (level >= cfg->nlevels)
		return -EINVAL;
	f->level = level;
	f->content_key = kr_level_subkey(f->kr, level, KR_SUB_CONTENT);
	f->meta_key = kr_level_subkey(f->kr, level, KR_SUB_META);
	if (!f->content_key || !f->meta_key)
		return -ENOKEY;
	f->chunk_log2 = chunk_log2;
	f->chunk_size = 1u << chunk_log2;
	f->compress = cfg->levels[level].compress;
	f->pad_log2 = cfg->levels[level].pad_log2;
	f->dirty_max = VF_DIRTY_MAX >> chunk_log2;
	if (f->dirty_max == 0)
		f->dirty_max = 1;
	f->dirty = calloc(f->dirty_max, sizeof *f->dirty);
	f->refs = calloc(f->dirty_max, sizeof *f->refs);
	f->spare = calloc(f->dirty_max, sizeof *f->spare);
	f->jobs = calloc(f->dirty_max, sizeof *f->jobs);
	f->nonces = calloc(f->dirty_max, FMT_FRAME_NONCE_BYTES);
	return f->dirty && f->refs && f->spare && f->jobs && f->nonces ? 0 : -ENOMEM;
}

static void vf_free(struct vf_file *f)
{
	if (!f)
		return;
	vf_dirty_clear(f);
	free(f->dirty);
	vf_buffers_release(f);
	free(f->spare);
	free(f->refs);
	free(f->jobs);
	free(f->nonces);
	for (int i = 0; i < VF_CACHE_SLOTS; i++) {
		if (f->cache[i].data) {
			sodium_memzero(f->cache[i].data, f->chunk_size);
			free(f->cache[i].data);
		}
	}
	free(f->map);
	free(f->xattrs);
	pthread_rwlock_destroy(&f->lock);
	pthread_mutex_destroy(&f->cache_lock);
	free(f);
}

/* ---- create ---- */

static unsigned vf_log2(uint32_t v)
{
	unsigned l = 0;

	while ((1u << l) < v)
		l++;
	return l;
}

/* Write header + initial seal of a fresh file at fd. */
static int vf_init_new(struct vf_file *f, unsigned level, uint32_t mode, uint32_t uid, uint32_t gid)
{
	const struct kr_config *cfg = kr_keyring_config(f->kr);
	int rc = vf_level_setup(f, level, vf_log2(cfg->chunk_size));

	if (rc)
		return rc;
	if (f->chunk_log2 < FMT_CHUNK_LOG2_MIN || f->chunk_log2 > FMT_CHUNK_LOG2_MAX)
		return -EINVAL;
	f->mode = mode;
	f->uid = uid;
	f->gid = gid;
	f->next_seq = 1;
	rc = vf_header_write(f, 0);
	if (rc)
		return rc;
	f->end = FMT_FILE_HEADER_BYTES;
	return vf_seal_write(f);
}

/* The file is written unnamed and then linked under name, so a crash
 * (even SIGKILL between two syscalls) leaves no file or a whole one. Where
 * the store's filesystem has no unnamed files, name is created directly. */
int vf_create(const struct kr_keyring *kr, int dirfd, const char *name, unsigned level,
	      uint32_t mode, uint32_t uid, uint32_t gid, struct vf_file **out)
{
	struct vf_file *f = NULL;
	bool named = false; /* name is ours to remove on failure */
	int fd, rc;

	*out = NULL;
	if (!kr_level_held(kr, level))
		return -ENOKEY;
	fd = store_tmpfile(dirfd, 0600);
	if (fd == -EOPNOTSUPP) {
		fd = store_openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL, 0600);
		named = fd >= 0;
	}
	if (fd < 0)
		return fd;
	f = vf_alloc(kr, fd, true);
	if (!f) {
		rc = -ENOMEM;
		goto fail;
	}
	randombytes_buf(f->file_id, sizeof f->file_id);
	rc = vf_init_new(f, level, mode, uid, gid);
	if (rc == 0 && !named)
		rc = store_tmpfile_link(fd, dirfd, name); /* -EEXIST if taken */
	if (rc)
		goto fail;
	*out = f;
	return 0;
fail:
	vf_free(f);
	store_close(fd);
	if (named)
		(void)store_unlinkat(dirfd, name, 0);
	return rc;
}

/* ---- open: the last seal, or crash recovery ---- */

/* Read and open the SEAL frame that ends (with its locator) at seal_end.
 * @return 0 and the decoded seal, -ENODATA if no locator is there (a torn
 * or unsealed tail), -EBADMSG if a locator is there but the seal it points
 * to does not open, -EUCLEAN if the seal opens but is inconsistent. */
static int vf_seal_read_at(struct vf_file *f, uint64_t seal_end, struct fmt_seal *s, uint64_t *seq,
			   uint64_t *total)
{
	uint8_t loc[FMT_SEAL_LOCATOR_BYTES], *frame = NULL, *pt = NULL;
	struct fmt_frame_header h;
	uint64_t len, off;
	ssize_t n;
	int rc;

	if (seal_end < FMT_FILE_HEADER_BYTES + FMT_SEAL_LOCATOR_BYTES)
		return -ENODATA;
	n = store_pread(f->fd, loc, sizeof loc, seal_end - sizeof loc);
	if (n < 0)
		return (int)n;
	if ((size_t)n != sizeof loc || fmt_seal_locator_decode(loc, &len))
		return -ENODATA;
	if (len > seal_end - FMT_FILE_HEADER_BYTES)
		return -EBADMSG;
	off = seal_end - len;
	frame = malloc(len);
	pt = malloc(len);
	if (!frame || !pt) {
		rc = -ENOMEM;
		goto out;
	}
	n = store_pread(f->fd, frame, len - FMT_SEAL_LOCATOR_BYTES, off);
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	n = (uint64_t)n == len - FMT_SEAL_LOCATOR_BYTES
		    ? fmt_frame_open(f->content_key, f->file_id, frame, (size_t)n, &h, pt, len)
		    : -EBADMSG;
	if (n < 0 || h.type != FMT_FRAME_SEAL || h.arg != off) {
		rc = -EBADMSG;
		goto out;
	}
	rc = fmt_seal_decode(pt, (size_t)n, s);
	if (rc == 0) {
		rc = vf_seal_check(f, s, off, h.seq);
		if (rc)
			fmt_seal_release(s);
	}
	*seq = h.seq;
	*total = len;
out:
	if (pt)
		sodium_memzero(pt, len);
	free(pt);
	free(frame);
	return rc;
}

/* Replay the frames after the seal that ends at pos (or after the header).
 * Stops at the first frame that is incomplete or does not authenticate (a
 * torn write); an authentic frame out of order is an attack: -EBADMSG.
 * @return 0 with f's state at the last good frame and *stop where it ends. */
static int vf_replay(struct vf_file *f, uint64_t pos, uint64_t fsize, bool have_seal,
		     uint64_t last_seq, uint64_t *stop, bool *ends_sealed)
{
	uint8_t hb[FMT_FRAME_HEADER_BYTES], *frame = NULL, *pt = NULL, *raw = NULL;
	struct fmt_frame_header h;
	int rc = 0;

	*ends_sealed = have_seal;
	raw = malloc(f->chunk_size);
	if (!raw)
		return -ENOMEM;
	while (fsize - pos >= FMT_FRAME_HEADER_BYTES) {
		uint64_t total;
		ssize_t n = store_pread(f->fd, hb, sizeof hb, pos);
		if (n < 0) {
			rc = (int)n;
			break;
		}
		if ((size_t)n != sizeof hb || fmt_frame_header_decode(hb, &h))
			break;
		total = FMT_FRAME_HEADER_BYTES + (uint64_t)h.payload_len;
		if (h.type == FMT_FRAME_SEAL)
			total += FMT_SEAL_LOCATOR_BYTES;
		if (total > fsize - pos)
			break;
		free(frame);
		free(pt);
		frame = malloc(total);
		pt = malloc(h.payload_len);
		if (!frame || !pt) {
			rc = -ENOMEM;
			break;
		}
		n = store_pread(f->fd, frame, total, pos);
		if (n < 0) {
			rc = (int)n;
			break;
		}
		if ((uint64_t)n != total)
			break;
		n = fmt_frame_open(f->content_key, f->file_id, frame,
				   FMT_FRAME_HEADER_BYTES + h.payload_len, &h, pt, h.payload_len);
		if (n < 0)
			break;
		if (have_seal && h.seq <= last_seq) {
			rc = -EBADMSG;
			break;
		}
		if (h.type == FMT_FRAME_CHUNK) {
			ssize_t rl = vf_chunk_decode(pt, (size_t)n, h.flags & FMT_FRAME_F_COMPRESSED,
						     raw, f->chunk_size);
			struct fmt_chunk_ref r = {.index = h.arg, .offset = pos, .seq = h.seq,
						  .frame_len = (uint32_t)(total),
						  .raw_len = (uint32_t)rl};
			if (!have_seal || rl <= 0 || h.arg > ((uint64_t)INT64_MAX >> f->chunk_log2) - 1) {
				rc = -EUCLEAN;
				break;
			}
			rc = vf_map_put(f, &r);
			if (rc)
				break;
			if (vf_chunk_start(f, h.arg) + (uint64_t)rl > f->size)
				f->size = vf_chunk_start(f, h.arg) + (uint64_t)rl;
			*ends_sealed = false;
		} else {
			struct fmt_seal s;
			uint64_t len;
			if (fmt_seal_locator_decode(frame + total - FMT_SEAL_LOCATOR_BYTES, &len) ||
			    len != total)
				break;
			if (h.arg != pos) {
				rc = -EBADMSG;
				break;
			}
			rc = fmt_seal_decode(pt, (size_t)n, &s);
			if (rc == 0) {
				rc = vf_seal_check(f, &s, pos, h.seq);
				if (rc)
					fmt_seal_release(&s);
			}
			if (rc)
				break;
			vf_state_take_seal(f, &s);
			have_seal = true;
			*ends_sealed = true;
			f->seal_len = total;
		}
		last_seq = h.seq;
		pos += total;
		sodium_memzero(pt, h.payload_len);
	}
	if (rc == 0 && !have_seal)
		rc = -EUCLEAN; /* not even the seal vf_create writes */
	if (rc == 0) {
		*stop = pos;
		f->next_seq = last_seq + 1;
	}
	free(frame);
	free(pt);
	free(raw);
	return rc;
}

static int vf_load(struct vf_file *f, bool writable)
{
	uint8_t hb[FMT_FILE_HEADER_BYTES];
	struct fmt_file_header h;
	struct fmt_seal s;
	struct stat st;
	uint64_t fsize, seq, total, pos, stop;
	unsigned level;
	bool ends_sealed;
	ssize_t n;
	int rc;

	rc = store_fstat(f->fd, &st);
	if (rc)
		return rc;
	if (!S_ISREG(st.st_mode))
		return -EUCLEAN;
	fsize = (uint64_t)st.st_size;
	n = store_pread(f->fd, hb, sizeof hb, 0);
	if (n < 0)
		return (int)n;
	if ((size_t)n != sizeof hb || fmt_file_header_peek(hb, &h))
		return -EUCLEAN;
	rc = vf_level_find(f->kr, &h, &level);
	if (rc)
		return rc;
	rc = fmt_file_header_verify(hb, kr_level_subkey(f->kr, level, KR_SUB_META), &h);
	if (rc)
		return rc;
	memcpy(f->file_id, h.file_id, FMT_ID_BYTES);
	rc = vf_level_setup(f, level, h.chunk_log2);
	if (rc)
		return rc;
	if (h.synced_end > fsize)
		return -EBADMSG; /* cut below what fsync made durable */
	f->synced_end = h.synced_end;

	/* Fast path: the file ends in a seal. */
	rc = vf_seal_read_at(f, fsize, &s, &seq, &total);
	if (rc == 0) {
		vf_state_take_seal(f, &s);
		f->end = f->seal_end = fsize;
		f->seal_len = total;
		f->next_seq = seq + 1;
		return 0;
	}
	if (rc != -ENODATA)
		return rc;

	/* Recovery: start at the last synced seal, replay what follows. */
	if (h.synced_end) {
		rc = vf_seal_read_at(f, h.synced_end, &s, &seq, &total);
		if (rc)
			return -EBADMSG;
		vf_state_take_seal(f, &s);
		f->seal_len = total;
		pos = h.synced_end;
	} else {
		seq = 0;
		pos = FMT_FILE_HEADER_BYTES;
	}
	rc = vf_replay(f, pos, fsize, h.synced_end != 0, seq, &stop, &ends_sealed);
	if (rc)
		return rc;
	f->recovered = true;
	f->next_seq += VF_SEQ_RECOVERY_GAP;
	f->end = stop;
	f->seal_end = ends_sealed ? stop : 0;
	if (writable) {
		rc = store_ftruncate(f->fd, stop);
		if (rc)
			return rc;
		f->seal_end = 0;
		rc = vf_seal_write(f);
	}
	return rc;
}

int vf_open(const struct kr_keyring *kr, int dirfd, const char *name, bool writable, struct vf_file **out)
{
	struct vf_file *f;
	int fd, rc;

	*out = NULL;
	/* O_NOATIME: reading a header or seal for stat is not an access, and
	 * times are the store inode's; EPERM when the driver does not own the
	 * store file, then open without it. */
	fd = store_openat(dirfd, name, (writable ? O_RDWR : O_RDONLY) | O_NOATIME, 0);
	if (fd == -EPERM)
		fd = store_openat(dirfd, name, writable ? O_RDWR : O_RDONLY, 0);
	if (fd < 0)
		return fd;
	f = vf_alloc(kr, fd, writable);
	if (!f) {
		store_close(fd);
		return -ENOMEM;
	}
	rc = vf_load(f, writable);
	if (rc) {
		vf_free(f);
		store_close(fd);
		return rc;
	}
	*out = f;
	return 0;
}

int vf_close(struct vf_file *f)
{
	int rc = 0;

	if (!f)
		return 0;
	if (f->writable && vf_changed(f))
		rc = vf_seal_write(f);
	store_close(f->fd);
	vf_free(f);
	return rc;
}

/* ---- data ---- */

ssize_t vf_read(struct vf_file *f, void *buf, size_t n, uint64_t off)
{
	uint8_t *out = buf;
	size_t done = 0;
	int rc = 0;

	pthread_rwlock_rdlock(&f->lock);
	if (off >= f->size) {
		pthread_rwlock_unlock(&f->lock);
		return 0;
	}
	if (n > f->size - off)
		n = (size_t)(f->size - off);
	while (done < n) {
		uint64_t pos = off + done, index = pos >> f->chunk_log2;
		uint32_t from = (uint32_t)(pos - vf_chunk_start(f, index));
		uint32_t len = f->chunk_size - from;
		const struct vf_dirty *d;
		const struct fmt_chunk_ref *r;

		if (len > n - done)
			len = (uint32_t)(n - done);
		if ((d = vf_dirty_find(f, index))) {
			memcpy(out + done, d->data + from, len);
		} else if ((r = vf_map_find(f, index))) {
			rc = vf_chunk_read(f, r, out + done, from, len);
			if (rc)
				break;
		} else {
			memset(out + done, 0, len);
		}
		done += len;
	}
	pthread_rwlock_unlock(&f->lock);
	if (rc) {
		sodium_memzero(buf, n);
		return rc;
	}
	return (ssize_t)done;
}

ssize_t vf_write(struct vf_file *f, const void *buf, size_t n, uint64_t off)
{
	const uint8_t *in = buf;
	size_t done = 0;
	int rc = 0;

	if (!f->writable)
		return -EBADF;
	if (off > (uint64_t)INT64_MAX || n > (uint64_t)INT64_MAX - off)
		return -EFBIG;
	pthread_rwlock_wrlock(&f->lock);
	while (done < n) {
		uint64_t pos = off + done, index = pos >> f->chunk_log2;
		uint32_t from = (uint32_t)(pos - vf_chunk_start(f, index));
		uint32_t len = f->chunk_size - from;
		struct vf_dirty *d;

		if (len > n - done)
			len = (uint32_t)(n - done);
		rc = vf_dirty_get(f, index, &d);
		if (rc)
			break;
		vf_cache_drop(f, index, false);
		memcpy(d->data + from, in + done, len);
		if (from + len > d->len)
			d->len = from + len;
		if (from < d->lo)
			d->lo = from;
		done += len;
		if (pos + len > f->size)
			f->size = pos + len;
		f->dirty_meta = true;
	}
	pthread_rwlock_unlock(&f->lock);
	return done ? (ssize_t)done : rc;
}

int vf_truncate(struct vf_file *f, uint64_t size)
{
	int rc = 0;

	if (!f->writable)
		return -EBADF;
	if (size > (uint64_t)INT64_MAX)
		return -EFBIG;
	pthread_rwlock_wrlock(&f->lock);
	if (size < f->size) {
		uint64_t cut = size >> f->chunk_log2;
		uint32_t keep = (uint32_t)(size - vf_chunk_start(f, cut));
		const struct fmt_chunk_ref *r;
		struct vf_dirty *d;

		/* Rewrite the chunk that the new size cuts, so its old tail can
		 * never reappear when the file grows again. */
		r = vf_map_find(f, cut);
		d = vf_dirty_find(f, cut);
		if (keep && (d || (r && r->raw_len > keep))) {
			rc = vf_dirty_get(f, cut, &d);
			if (rc)
				goto out;
			if (d->len > keep) {
				memset(d->data + keep, 0, d->len - keep);
				d->len = keep;
			}
		}
		for (size_t i = 0; i < f->ndirty;) {
			if (f->dirty[i].index > cut || (f->dirty[i].index == cut && !keep)) {
				vf_chunk_buf_put(f, f->dirty[i].data);
				f->dirty[i] = f->dirty[--f->ndirty];
				f->dirty[f->ndirty].data = NULL; /* the vacated slot */
			} else {
				i++;
			}
		}
		vf_map_cut(f, keep ? cut + 1 : cut);
		vf_cache_drop(f, 0, true);
	}
	f->size = size;
	f->dirty_meta = true;
	rc = vf_seal_write(f);
out:
	pthread_rwlock_unlock(&f->lock);
	return rc;
}

int vf_seal(struct vf_file *f)
{
	int rc = 0;

	if (!f->writable)
		return 0;
	pthread_rwlock_wrlock(&f->lock);
	if (vf_changed(f))
		rc = vf_seal_write(f);
	pthread_rwlock_unlock(&f->lock);
	return rc;
}

int vf_fsync(struct vf_file *f, bool datasync)
{
	int rc = 0;

	if (!f->writable)
		return 0;
	pthread_rwlock_wrlock(&f->lock);
	if (vf_changed(f)) {
		rc = vf_seal_write(f);
		if (rc)
			goto out;
	}
	if (f->seal_end > f->synced_end) {
		/* full fsync unless asked for less: the store inode's times are
		 * the plaintext file's times */
		rc = store_fsync(f->fd, datasync);
		if (rc)
			goto out;
		/* Not synced itself: a lost header update only makes the
		 * recovery start point older, never wrong. */
		rc = vf_header_write(f, f->seal_end);
		if (rc)
			goto out;
		f->synced_end = f->seal_end;
	}
out:
	pthread_rwlock_unlock(&f->lock);
	return rc;
}

int vf_fallocate(struct vf_file *f, int mode, uint64_t off, uint64_t len)
{
	int rc = 0;

	if (!f->writable)
		return -EBADF;
	if (mode & ~FALLOC_FL_KEEP_SIZE)
		return -EOPNOTSUPP;
	if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
		return -EFBIG;
	if (mode & FALLOC_FL_KEEP_SIZE)
		return 0;
	pthread_rwlock_wrlock(&f->lock);
	if (off + len > f->size) {
		f->size = off + len;
		f->dirty_meta = true;
	}
	pthread_rwlock_unlock(&f->lock);
	return rc;
}

static bool vf_chunk_exists(const struct vf_file *f, uint64_t index)
{
	return vf_dirty_find(f, index) || vf_map_find(f, index);
}

off_t vf_lseek(struct vf_file *f, off_t off, int whence)
{
	off_t rc;
	uint64_t pos = (uint64_t)off;

	if (off < 0)
		return -ENXIO;
	pthread_rwlock_rdlock(&f->lock);
	if (pos >= f->size) {
		rc = -ENXIO;
		goto out;
	}
	if (whence == SEEK_DATA) {
		uint64_t start = pos >> f->chunk_log2, best = UINT64_MAX;
		size_t i = vf_map_lower(f, start);
		if (i < f->nmap)
			best = f->map[i].index;
		for (size_t j = 0; j < f->ndirty; j++)
			if (f->dirty[j].index >= start && f->dirty[j].index < best)
				best = f->dirty[j].index;
		if (best == UINT64_MAX || vf_chunk_start(f, best) >= f->size)
			rc = -ENXIO;
		else
			rc = (off_t)(best == start ? pos : vf_chunk_start(f, best));
	} else if (whence == SEEK_HOLE) {
		uint64_t index = pos >> f->chunk_log2;
		while (vf_chunk_exists(f, index) && vf_chunk_start(f, index + 1) < f->size)
			index++;
		if (!vf_chunk_exists(f, index))
			rc = (off_t)(vf_chunk_start(f, index) > pos ? vf_chunk_start(f, index) : pos);
		else
			rc = (off_t)f->size;
	} else {
		rc = -EINVAL;
	}
out:
	pthread_rwlock_unlock(&f->lock);
	return rc;
}

/* ---- attributes ---- */

static uint64_t vf_alloc_bytes(const struct vf_file *f)
{
	uint64_t a = f->map_raw;

	for (size_t i = 0; i < f->ndirty; i++) {
		const struct fmt_chunk_ref *r = vf_map_find(f, f->dirty[i].index);
		a += f->dirty[i].len;
		if (r)
			a -= r->raw_len;
	}
	return a;
}

int vf_getattr(struct vf_file *f, struct vf_attr *a)
{
	pthread_rwlock_rdlock(&f->lock);
	a->size = f->size;
	a->mode = f->mode;
	a->uid = f->uid;
	a->gid = f->gid;
	a->rdev = f->rdev;
	a->level = f->level;
	memcpy(a->file_id, f->file_id, sizeof a->file_id);
	a->alloc_bytes = vf_alloc_bytes(f);
	pthread_rwlock_unlock(&f->lock);
	return 0;
}

/* Attribute changes are sealed at once, so vf_stat_at() of the store file
 * sees them while the handle stays open. */
int vf_chmod_chown(struct vf_file *f, uint32_t mode, uint32_t uid, uint32_t gid)
{
	int rc;

	if (!f->writable)
		return -EBADF;
	pthread_rwlock_wrlock(&f->lock);
	if ((mode == (uint32_t)-1 || (f->mode & 07777) == (mode & 07777)) &&
	    (uid == (uint32_t)-1 || f->uid == uid) && (gid == (uint32_t)-1 || f->gid == gid)) {
		/* Nothing changes (tar and cp -p set what create already set):
		 * no seal, so no frame appended and no pending chunk flushed. */
		rc = 0;
		goto out;
	}
	if (mode != (uint32_t)-1)
		f->mode = (f->mode & S_IFMT) | (mode & 07777);
	if (uid != (uint32_t)-1)
		f->uid = uid;
	if (gid != (uint32_t)-1)
		f->gid = gid;
	f->dirty_meta = true;
	rc = vf_seal_write(f);
out:
	pthread_rwlock_unlock(&f->lock);
	return rc;
}

int vf_set_rdev(struct vf_file *f, uint32_t rdev)
{
	if (!f->writable)
		return -EBADF;
	pthread_rwlock_wrlock(&f->lock);
	f->rdev = rdev;
	f->dirty_meta = true;
	pthread_rwlock_unlock(&f->lock);
	return 0;
}

void vf_set_pool(struct vf_file *f, struct vf_pool *pool)
{
	pthread_rwlock_wrlock(&f->lock);
	f->pool = pool;
	pthread_rwlock_unlock(&f->lock);
}

int vf_fd(struct vf_file *f)
{
	return f->fd;
}

ssize_t vf_getxattr(struct vf_file *f, const char *name, void *val, size_t cap)
{
	ssize_t rc;

	pthread_rwlock_rdlock(&f->lock);
	rc = fmt_xattr_get(f->xattrs, f->xattrs_len, name, val, cap);
	pthread_rwlock_unlock(&f->lock);
	return rc;
}

ssize_t vf_listxattr(struct vf_file *f, char *out, size_t cap)
{
	ssize_t rc;

	pthread_rwlock_rdlock(&f->lock);
	rc = fmt_xattr_list(f->xattrs, f->xattrs_len, out, cap);
	pthread_rwlock_unlock(&f->lock);
	return rc;
}

int vf_setxattr(struct vf_file *f, const char *name, const void *val, size_t len, int flags)
{
	int rc;

	if (!f->writable)
		return -EBADF;
	pthread_rwlock_wrlock(&f->lock);
	rc = fmt_xattr_set(&f->xattrs, &f->xattrs_len, name, val, len, flags);
	if (rc == 0) {
		f->dirty_meta = true;
		rc = vf_seal_write(f);
	}
	pthread_rwlock_unlock(&f->lock);
	return rc;
}

int vf_removexattr(struct vf_file *f, const char *name)
{
	int rc;

	if (!f->writable)
		return -EBADF;
	pthread_rwlock_wrlock(&f->lock);
	rc = fmt_xattr_remove(&f->xattrs, &f->xattrs_len, name);
	if (rc == 0) {
		f->dirty_meta = true;
		rc = vf_seal_write(f);
	}
	pthread_rwlock_unlock(&f->lock);
	return rc;
}

int vf_stat_at(const struct kr_keyring *kr, int dirfd, const char *name, struct vf_attr *a)
{
	struct vf_file *f;
	int rc = vf_open(kr, dirfd, name, false, &f);

	if (rc)
		return rc;
	rc = vf_getattr(f, a);
	vf_close(f);
	return rc;
}

bool vf_recovered(const struct vf_file *f)
{
	return f->recovered;
}

/* ---- compaction and reclassification ---- */

bool vf_needs_compaction(const struct vf_file *f)
{
	uint64_t live = FMT_FILE_HEADER_BYTES + f->map_live + f->seal_len;
	uint64_t dead = f->end > live ? f->end - live : 0;

	return dead > live && dead >= f->chunk_size;
}

static void vf_tmp_name(char out[VF_TMP_NAME_BYTES])
{
	uint8_t r[12];
	char hex[2 * sizeof r + 1];

	randombytes_buf(r, sizeof r);
	sodium_bin2hex(hex, sizeof hex, r, sizeof r);
	memcpy(out, FMT_TMP_PREFIX, sizeof FMT_TMP_PREFIX - 1);
	memcpy(out + sizeof FMT_TMP_PREFIX - 1, hex, sizeof hex);
}

/* Copy the live frames verbatim (they do not depend on their offset) into
 * a sibling, seal, sync and rename it over name. On any failure the file
 * stays as it was and the sibling is removed. */
int vf_compact(struct vf_file *f, int dirfd, const char *name)
{
	char tmp[VF_TMP_NAME_BYTES];
	struct fmt_chunk_ref *newmap = NULL, *oldmap;
	uint8_t *buf = NULL;
	size_t bcap = VF_DIRTY_MAX + 2 * (size_t)f->chunk_size, used = 0;
	struct stat st;
	int nfd = -1, oldfd = f->fd, rc;
	uint64_t oldend, oldseal_end, oldseal_len, oldsynced;
	size_t oldcap;

	if (!f->writable)
		return -EBADF;
	pthread_rwlock_wrlock(&f->lock);
	rc = store_fstat(f->fd, &st);
	if (rc || st.st_nlink > 1)
		goto out;
	rc = vf_flush_dirty(f);
	if (rc)
		goto out;
	oldend = f->end;
	oldseal_end = f->seal_end;
	oldseal_len = f->seal_len;
	oldsynced = f->synced_end;
	oldmap = f->map;
	oldcap = f->map_cap;
	newmap = malloc((f->nmap ? f->nmap : 1) * sizeof *newmap);
	buf = malloc(bcap);
	if (!newmap || !buf) {
		rc = -ENOMEM;
		goto out;
	}
	vf_tmp_name(tmp);
	nfd = store_openat(dirfd, tmp, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (nfd < 0) {
		rc = nfd;
		goto out;
	}
	f->fd = nfd;
	f->end = FMT_FILE_HEADER_BYTES;
	rc = vf_header_write(f, 0);
	for (size_t i = 0; rc == 0 && i < f->nmap; i++) {
		const struct fmt_chunk_ref *r = &oldmap[i];
		ssize_t n;
		if (used + r->frame_len > bcap) {
			rc = vf_append(f, buf, used);
			used = 0;
			if (rc)
				break;
		}
		n = store_pread(oldfd, buf + used, r->frame_len, r->offset);
		if (n < 0 || (size_t)n != r->frame_len) {
			rc = n < 0 ? (int)n : -EBADMSG;
			break;
		}
		newmap[i] = *r;
		newmap[i].offset = f->end + used;
		used += r->frame_len;
	}
	if (rc == 0)
		rc = vf_append(f, buf, used);
	if (rc == 0) {
		f->map = newmap;
		f->map_cap = f->nmap ? f->nmap : 1;
		rc = vf_seal_write(f);
	}
	if (rc == 0)
		rc = store_fsync(nfd, true);
	if (rc == 0)
		rc = vf_header_write(f, f->seal_end);
	if (rc == 0) {
		/* The store inode's times are the file's times: carry them over. */
		const struct timespec ts[2] = {st.st_atim, st.st_mtim};
		rc = store_futimens(nfd, ts);
	}
	if (rc == 0)
		rc = store_fsync(nfd, true);
	if (rc == 0)
		rc = store_renameat(dirfd, tmp, dirfd, name, 0);
	if (rc) {
		f->map = oldmap;
		f->map_cap = oldcap;
		f->fd = oldfd;
		f->end = oldend;
		f->seal_end = oldseal_end;
		f->seal_len = oldseal_len;
		f->synced_end = oldsynced;
		store_close(nfd);
		(void)store_unlinkat(dirfd, tmp, 0);
		goto out;
	}
	(void)store_fsync(dirfd, false);
	newmap = oldmap; /* freed below */
	f->synced_end = f->seal_end;
	store_close(oldfd);
	vf_cache_drop(f, 0, true);
out:
	pthread_rwlock_unlock(&f->lock);
	free(newmap);
	free(buf);
	return rc;
}

static int vf_copy(struct vf_file *f, const struct kr_keyring *kr, int dirfd, const char *tmpname,
		   unsigned level, bool holes_for_bad)
{
	struct vf_file *n = NULL;
	uint8_t *buf = NULL;
	int rc;

	rc = vf_create(kr, dirfd, tmpname, level, f->mode, f->uid, f->gid, &n);
	if (rc)
		return rc;
	buf = malloc(f->chunk_size);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	pthread_rwlock_rdlock(&f->lock);
	/* Same identity, new level: the copy keeps the file_id. */
	memcpy(n->file_id, f->file_id, FMT_ID_BYTES);
	n->end = FMT_FILE_HEADER_BYTES;
	n->seal_end = 0;
	rc = vf_header_write(n, 0);
	if (rc == 0)
		rc = store_ftruncate(n->fd, FMT_FILE_HEADER_BYTES);
	n->rdev = f->rdev;
	if (rc == 0 && f->xattrs_len) {
		n->xattrs = malloc(f->xattrs_len);
		if (!n->xattrs)
			rc = -ENOMEM;
		else
			memcpy(n->xattrs, f->xattrs, f->xattrs_len);
		n->xattrs_len = f->xattrs_len;
	}
	pthread_rwlock_unlock(&f->lock);
	/* Chunks in order, each through the public read/write paths. */
	for (uint64_t idx = 0; rc == 0;) {
		const struct fmt_chunk_ref *r;
		const struct vf_dirty *d;
		uint64_t next = UINT64_MAX;
		ssize_t got;
		pthread_rwlock_rdlock(&f->lock);
		size_t i = vf_map_lower(f, idx);
		if (i < f->nmap)
			next = f->map[i].index;
		for (size_t j = 0; j < f->ndirty; j++)
			if (f->dirty[j].index >= idx && f->dirty[j].index < next)
				next = f->dirty[j].index;
		r = next != UINT64_MAX ? vf_map_find(f, next) : NULL;
		d = next != UINT64_MAX ? vf_dirty_find(f, next) : NULL;
		uint32_t len = d ? d->len : r ? r->raw_len : 0;
		pthread_rwlock_unlock(&f->lock);
		if (next == UINT64_MAX)
			break;
		got = vf_read(f, buf, len, vf_chunk_start(f, next));
		if (got < 0 && got != -ENOMEM && holes_for_bad) {
			idx = next + 1; /* a hole where the chunk failed */
			continue;
		}
		if (got < 0) {
			rc = (int)got;
			break;
		}
		got = vf_write(n, buf, (size_t)got, vf_chunk_start(f, next));
		if (got < 0)
			rc = (int)got;
		idx = next + 1;
	}
	if (rc == 0) {
		n->size = f->size;
		n->dirty_meta = true;
		rc = vf_fsync(n, true);
	}
out:
	if (buf)
		sodium_memzero(buf, f->chunk_size);
	free(buf);
	if (vf_close(n) && rc == 0)
		rc = -EIO;
	if (rc)
		(void)store_unlinkat(dirfd, tmpname, 0);
	return rc;
}

int vf_copy_to_level(struct vf_file *f, int dirfd, const char *tmpname, unsigned level)
{
	return vf_copy(f, f->kr, dirfd, tmpname, level, false);
}

int vf_copy_to_keyring(struct vf_file *f, const struct kr_keyring *kr, int dirfd,
		       const char *tmpname, bool holes_for_bad)
{
	return vf_copy(f, kr, dirfd, tmpname, f->level, holes_for_bad);
}
