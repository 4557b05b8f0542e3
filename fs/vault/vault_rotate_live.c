/* vault_rotate_live.c - the key rotation of one level while the store is
 * mounted (watch.h "vault_live_rotate"; docs/format.md section 4.4).
 *
 * The same five steps as the offline rotation (admin.h "rotate"; the
 * command line's cmd_rotate.c), run by the driver that has the store
 * mounted for writing, with a keyring the admin's secret unlocked (it has
 * the root keys the key bag needs; the driver's own keyring has none):
 *
 *   1. STORE/rotate.state written;
 *   2. the next key added to the key bag;
 *   3. every operation of the vault stopped (vault_watch_quiesce), the open
 *      files of the level sealed, the walk run (vault_rotate_step), each
 *      open file the walk replaced noted, every other open file of the
 *      level (one the kernel holds with no name left) copied under the new
 *      key; then the driver's keyring takes the new key in place, every
 *      such open file is re-opened from its new store file, the folder
 *      cache is emptied and operations go on;
 *   4. the key bag keeps only the new key;
 *   5. STORE/rotate.state removed.
 *
 * Invariants:
 *  1. No operation of the vault runs from the seal of step 3 to the end of
 *     its re-opens: handles of the level never see a store file or a key
 *     of the other generation. They wait, they are not refused.
 *  2. STORE/readers is held exclusively from begin to end: no read-only
 *     mount (which holds the old key and could not read what the walk
 *     rewrote) runs beside the rotation, and none starts during it.
 *  3. A walk that fails or a driver killed midway leaves the store as an
 *     interrupted offline rotation does: rotate.state stays, every object
 *     is under one of the two keys, and `strongroom rotate` resumes it once
 *     the store is unmounted (the next mount refuses until then). A walk
 *     that fails also locks the level in this mount (in memory only): an
 *     open file the walk already replaced must not take writes that no
 *     store file would keep.
 *  4. Each run is recorded in the trail (start or resume before anything
 *     changes: no record, no rotation; stop; end), as the offline one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "strongroom/admin.h"
#include "strongroom/store.h"
#include "strongroom/watch.h"
#include "vault_internal.h"

/* One open file of the level to re-open after the key changes. */
struct live_reopen {
	struct vault_ofile *of;
	char *path; /* its new store file, relative to STORE */
	bool tmp;   /* a copy made for a file with no name: unlinked once open */
};

struct vault_live_rotate {
	struct vault *v;
	struct kr_keyring *kr, *full, *knew;
	const struct vault_caller *by;
	char store[PATH_MAX];
	unsigned level;
	uint32_t gen;
	int readers_fd;
	bool quiet; /* nothing to walk: the rotation only had steps 4-5 left */
	bool started; /* its start or resume is in the trail */
	bool quiesced;
	struct vault_rotate *rt;
	struct live_reopen *re;
	size_t nre, recap;
};

static const char *live_level_name(const struct vault_live_rotate *lr)
{
	return kr_keyring_config(lr->kr)->levels[lr->level].name;
}

static int live_record(struct vault_live_rotate *lr, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int live_record(struct vault_live_rotate *lr, const char *fmt, ...)
{
	char detail[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	return vault_watch_record(lr->v, lr->by, AUDIT_EV_ROTATE, live_level_name(lr), detail);
}

/* The open file of the level whose store file is (dev, ino), or NULL
 * (v->ns exclusive). */
static struct vault_ofile *live_ofile(struct vault *v, unsigned level, dev_t dev, ino_t ino)
{
	struct vault_ofile *of, *found = NULL;
	struct vf_attr a;

	pthread_mutex_lock(&v->files_lock);
	for (of = v->files; of && !found; of = of->next)
		if (of->state == VAULT_OF_OPEN && of->dev == dev && of->ino == ino &&
		    vf_getattr(of->f, &a) == 0 && a.level == level)
			found = of;
	pthread_mutex_unlock(&v->files_lock);
	return found;
}

static int live_note(struct vault_live_rotate *lr, struct vault_ofile *of, const char *path,
		     bool tmp)
{
	if (lr->nre == lr->recap) {
		size_t ncap = lr->recap ? lr->recap * 2 : 8;
		struct live_reopen *n = realloc(lr->re, ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		lr->re = n;
		lr->recap = ncap;
	}
	lr->re[lr->nre].path = strdup(path);
	if (!lr->re[lr->nre].path)
		return -ENOMEM;
	lr->re[lr->nre].of = of;
	lr->re[lr->nre].tmp = tmp;
	lr->nre++;
	return 0;
}

static bool live_noted(const struct vault_live_rotate *lr, const struct vault_ofile *of)
{
	for (size_t i = 0; i < lr->nre; i++)
		if (lr->re[i].of == of)
			return true;
	return false;
}

/* Open files of the level the walk did not reach (no name in the tree):
 * each copied under the new key into the tree's top folder. */
static int live_copy_nameless(struct vault_live_rotate *lr)
{
	struct vault *v = lr->v;
	struct vault_ofile *of;
	struct vf_attr a;
	char tmp[FMT_NAME_MAX + 1], path[FMT_NAME_MAX + 8];
	int r = 0;

	pthread_mutex_lock(&v->files_lock);
	for (of = v->files; of && r == 0; of = of->next) {
		if (of->state != VAULT_OF_OPEN || vf_getattr(of->f, &a) != 0 ||
		    a.level != lr->level || live_noted(lr, of))
			continue;
		vault_rotate_tmpname(tmp);
		r = vf_copy_to_keyring(of->f, lr->knew, v->tree_fd, tmp, false);
		snprintf(path, sizeof(path), "tree/%s", tmp);
		if (r == 0)
			r = live_note(lr, of, path, true);
	}
	pthread_mutex_unlock(&v->files_lock);
	return r;
}

/* Give one noted open file its new store file (after the key changed). */
static int live_reopen_one(struct vault_live_rotate *lr, struct live_reopen *re)
{
	struct vault *v = lr->v;
	char *slash = strrchr(re->path, '/');
	struct vf_file *nf = NULL, *old;
	struct stat st;
	int dfd, r;

	*slash = '\0';
	dfd = store_openat(v->store_fd, re->path, O_RDONLY | O_DIRECTORY, 0);
	*slash = '/';
	if (dfd < 0)
		return dfd;
	r = vf_open(v->kr, dfd, slash + 1, !vault_ro(v), &nf);
	if (r == 0)
		r = store_fstat(vf_fd(nf), &st);
	if (re->tmp)
		(void)store_unlinkat(dfd, slash + 1, 0);
	store_close(dfd);
	if (r != 0) {
		vf_close(nf);
		return r < 0 ? r : -EIO;
	}
	vf_set_pool(nf, v->pool); /* as the file it replaces had */
	pthread_mutex_lock(&v->files_lock);
	old = re->of->f;
	re->of->f = nf;
	re->of->dev = st.st_dev;
	re->of->ino = st.st_ino;
	pthread_mutex_unlock(&v->files_lock);
	/* Sealed before the walk: its close writes nothing, and its store
	 * file has no name left. */
	vf_close(old);
	return 0;
}

int vault_live_rotate_begin(struct vault *v, struct kr_keyring *kr, struct kr_keyring *full,
			    const char *store, unsigned level, const struct vault_caller *by,
			    struct vault_live_rotate **out)
{
	struct vault_live_rotate *lr;
	unsigned slevel;
	uint32_t sgen;
	int r;

	*out = NULL;
	if (kr != v->kr || !v->watch)
		return -EINVAL;
	if (vault_ro(v))
		return -EROFS;
	if (!kr_level_held(full, level) || kr_level_forgotten(kr, level))
		return -ENOKEY;
	lr = calloc(1, sizeof(*lr));
	if (!lr)
		return -ENOMEM;
	lr->v = v;
	lr->kr = kr;
	lr->full = full;
	lr->by = by;
	lr->level = level;
	snprintf(lr->store, sizeof(lr->store), "%s", store);
	/* Invariant 2. */
	lr->readers_fd = store_openat(v->store_fd, ADMIN_READERS_LOCK,
				      O_RDWR | O_CREAT | O_NOFOLLOW, 0644);
	if (lr->readers_fd < 0) {
		r = lr->readers_fd;
		goto fail;
	}
	if (flock(lr->readers_fd, LOCK_EX | LOCK_NB) != 0) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		goto fail;
	}
	/* Step 1, or where an interrupted run stopped. */
	r = vault_rotate_state_read(store, &slevel, &sgen);
	if (r == 0 && slevel != level) {
		r = -EALREADY;
		goto fail;
	}
	if (r == 0 && kr_level_generation(full, level) == sgen &&
	    !kr_rotate_next_generation(full, level)) {
		lr->quiet = true; /* interrupted between steps 4 and 5 */
		lr->gen = sgen;
		*out = lr;
		return 0;
	}
	if (r == -ENOENT) {
		sgen = kr_rotate_next_generation(full, level) ?: kr_level_generation(full, level) + 1;
		r = live_record(lr, "start: key generation %u -> %u, online",
				kr_level_generation(full, level), sgen);
		if (r == 0)
			r = vault_rotate_state_write(store, level, sgen);
	} else if (r == 0) {
		r = live_record(lr, "resume: key generation %u -> %u, online",
				kr_level_generation(full, level), sgen);
	}
	if (r < 0)
		goto fail;
	lr->started = true;
	lr->gen = sgen;
	/* Step 2. */
	r = kr_rotate_begin(store, full, level);
	if (r == 0)
		r = kr_keyring_next(full, level, &lr->knew);
	if (r < 0)
		goto fail;
	/* Step 3 starts: invariant 1. */
	r = vault_watch_quiesce(v, level);
	if (r < 0)
		goto fail;
	lr->quiesced = true;
	r = vault_watch_seal_level(v, level);
	if (r == 0)
		r = vault_rotate_open(store, full, lr->knew, level, &lr->rt);
	if (r < 0)
		goto fail;
	*out = lr;
	return 0;
fail:
	vault_live_rotate_end(lr, r);
	return r;
}

int vault_live_rotate_step(struct vault_live_rotate *lr)
{
	struct vault_ofile *of;
	const char *path;
	dev_t dev;
	ino_t ino;
	int r;

	if (lr->quiet)
		return 0;
	r = vault_rotate_step(lr->rt);
	if (r < 0)
		return r;
	path = vault_rotate_moved(lr->rt, &dev, &ino);
	if (path && (of = live_ofile(lr->v, lr->level, dev, ino))) {
		int e = live_note(lr, of, path, false);
		if (e < 0)
			return e;
	}
	return r;
}

const struct vault_rotate_stats *vault_live_rotate_stats(const struct vault_live_rotate *lr)
{
	static const struct vault_rotate_stats none;

	return lr->rt ? vault_rotate_stats(lr->rt) : &none;
}

const char *vault_live_rotate_where(const struct vault_live_rotate *lr)
{
	return lr->rt ? vault_rotate_where(lr->rt) : "";
}

uint32_t vault_live_rotate_generation(const struct vault_live_rotate *lr)
{
	return lr->gen;
}

/* Steps 3 (its end), 4 and 5 after a walk that finished. */
static int live_finish(struct vault_live_rotate *lr)
{
	const struct vault_rotate_stats *st = vault_live_rotate_stats(lr);
	int r = 0, e;

	if (!lr->quiet) {
		r = live_copy_nameless(lr);
		/* A mount that never held the level has nothing of it open. */
		if (r == 0 && kr_level_held(lr->kr, lr->level))
			r = kr_level_adopt(lr->kr, lr->knew, lr->level);
		if (r < 0)
			return r;
		/* From here the driver holds only the new key: every noted
		 * file is re-opened, whatever one of them does. */
		for (size_t i = 0; i < lr->nre; i++) {
			e = live_reopen_one(lr, &lr->re[i]);
			if (e < 0) {
				fprintf(stderr,
					"strongroom: rotate: an open file could not be re-opened "
					"under the new key (%s): %s; its handles read as damaged "
					"until closed\n",
					lr->re[i].path, strerror(-e));
				if (r == 0)
					r = e;
			}
		}
		vault_dcache_drop(lr->v, "/");
		vault_watch_resume(lr->v);
		lr->quiesced = false;
		r = r ?: kr_rotate_finish(lr->store, lr->full, lr->level);
		if (r == 0)
			r = live_record(lr,
					"end: key generation %u, online; %llu files, %llu folders, "
					"%llu names re-encrypted, %llu already done, %zu open files "
					"re-opened; the old key is destroyed",
					lr->gen, (unsigned long long)st->files,
					(unsigned long long)st->dirs, (unsigned long long)st->names,
					(unsigned long long)st->done, lr->nre);
	} else {
		r = live_record(lr,
				"end: key generation %u, finished after an interruption; the "
				"old key is destroyed",
				lr->gen);
	}
	if (r == 0)
		r = vault_rotate_state_remove(lr->store);
	return r;
}

int vault_live_rotate_end(struct vault_live_rotate *lr, int err)
{
	int r = err;

	if (!lr)
		return err;
	if (err == 0 && (lr->quiet || lr->rt))
		r = live_finish(lr);
	/* Records only with every operation going again: writing one may
	 * raise an alert, whose action may need the watch layer's locks. */
	if (lr->quiesced) {
		vault_watch_resume(lr->v);
		lr->quiesced = false;
	}
	if (err == 0 && r < 0)
		(void)live_record(lr, "stopped at the end: %s; resumes when run again (offline)",
				  strerror(-r));
	else if (err < 0 && lr->started)
		(void)live_record(lr, "stopped at %s: %s; resumes when run again (offline)",
				  lr->rt && vault_rotate_where(lr->rt)[0] ? vault_rotate_where(lr->rt)
									  : "the start",
				  strerror(-err));
	if (r < 0 && lr->rt)
		(void)vault_watch_lock_now(lr->v, lr->kr, lr->level, lr->by,
					   " (the online rotation stopped: unmount the store "
					   "and run strongroom rotate to finish it)");
	vault_rotate_close(lr->rt);
	for (size_t i = 0; i < lr->nre; i++)
		free(lr->re[i].path);
	free(lr->re);
	kr_keyring_free(lr->knew);
	if (lr->readers_fd >= 0)
		store_close(lr->readers_fd); /* the flock goes with it */
	free(lr);
	return r;
}
