/* vault.c - the vault object, plaintext paths and the directory cache.
 *
 * A plaintext path is resolved one component at a time from STORE/tree with
 * *at() calls on directory fds the vault holds; each component's store name
 * is its encryption under the parent directory's level and dir_id
 * (vault_dir.c). Resolved directories are cached by canonical path, so a
 * lookup deep in the tree costs one hash probe per component.
 *
 * Invariants kept here:
 *  - The cache maps a canonical path to the directory that path names now:
 *    rename and rmdir call vault_dcache_drop for every path they change
 *    (under v->ns exclusive), and metadata changes update the cached object
 *    in place (also under v->ns exclusive).
 *  - The cache holds at most VAULT_DCACHE_MAX directories; the least recently
 *    used is dropped first. A dropped directory stays valid for whoever holds
 *    a reference and is freed (fd closed) at the last vault_dir_put.
 *  - The root directory is loaded at vault_open and lives until vault_close.
 *  - A directory whose level is not held, or whose .sr-dir fails
 *    authentication, is never cached: every lookup through it fails again.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <sodium.h>

#include "strongroom/store.h"
#include "strongroom/vf_pool.h"
#include "vault_internal.h"

#define TREE_DIR "tree"

uint64_t vault_id_ino(const uint8_t id[FMT_ID_BYTES])
{
	uint64_t x = 0;
	int i;

	for (i = 7; i >= 0; i--)
		x = (x << 8) | id[i];
	return x ? x : 1;
}

/* ---- paths ---- */

#define VAULT_PATH_MAX (16 * PATH_MAX)

int vault_path_canon(const char *path, char **out)
{
	size_t len, i = 0, o = 0;
	char *c;

	*out = NULL;
	if (!path || path[0] != '/')
		return -EINVAL;
	len = strlen(path);
	/* The kernel hands names over one component at a time, so a vault
	 * path may be longer than PATH_MAX (a process working deep inside the
	 * tree); only each component is limited, by NAME_MAX. */
	if (len >= VAULT_PATH_MAX)
		return -ENAMETOOLONG;
	c = malloc(len + 2);
	if (!c)
		return -ENOMEM;
	while (i < len) {
		size_t start, clen;

		while (i < len && path[i] == '/')
			i++;
		if (i == len)
			break;
		start = i;
		while (i < len && path[i] != '/')
			i++;
		clen = i - start;
		if (clen > FMT_NAME_MAX) {
			free(c);
			return -ENAMETOOLONG;
		}
		if ((clen == 1 && path[start] == '.') ||
		    (clen == 2 && path[start] == '.' && path[start + 1] == '.')) {
			free(c);
			return -EINVAL;
		}
		c[o++] = '/';
		memcpy(c + o, path + start, clen);
		o += clen;
	}
	if (o == 0)
		c[o++] = '/';
	c[o] = '\0';
	*out = c;
	return 0;
}

/* ---- the directory cache ---- */

static size_t dcache_hash(const char *path, size_t len)
{
	uint64_t h = 1469598103934665603ull;
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ (unsigned char)path[i]) * 1099511628211ull;
	return (size_t)(h % VAULT_DCACHE_BUCKETS);
}

static void dir_free(struct vault_dir *d)
{
	if (!d)
		return;
	if (d->fd >= 0)
		store_close(d->fd);
	free(d->xattrs);
	free(d->path);
	free(d);
}

static void lru_unlink(struct vault *v, struct vault_dir *d)
{
	if (d->lru_prev)
		d->lru_prev->lru_next = d->lru_next;
	else
		v->lru_head = d->lru_next;
	if (d->lru_next)
		d->lru_next->lru_prev = d->lru_prev;
	else
		v->lru_tail = d->lru_prev;
	d->lru_prev = d->lru_next = NULL;
}

static void lru_push(struct vault *v, struct vault_dir *d)
{
	d->lru_prev = NULL;
	d->lru_next = v->lru_head;
	if (v->lru_head)
		v->lru_head->lru_prev = d;
	v->lru_head = d;
	if (!v->lru_tail)
		v->lru_tail = d;
}

/* Take d out of the cache; free it if nobody holds it. dcache_lock held. */
static void dcache_remove(struct vault *v, struct vault_dir *d)
{
	struct vault_dir **pp = &v->buckets[dcache_hash(d->path, strlen(d->path))];

	while (*pp && *pp != d)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = d->hnext;
	d->hnext = NULL;
	lru_unlink(v, d);
	d->cached = false;
	v->dcache_n--;
	if (d->refs == 0)
		dir_free(d);
}

/* Find path[0..len) in the cache and take a reference. dcache_lock held. */
static struct vault_dir *dcache_find(struct vault *v, const char *path, size_t len)
{
	struct vault_dir *d;

	for (d = v->buckets[dcache_hash(path, len)]; d; d = d->hnext) {
		if (strlen(d->path) == len && memcmp(d->path, path, len) == 0) {
			d->refs++;
			lru_unlink(v, d);
			lru_push(v, d);
			return d;
		}
	}
	return NULL;
}

void vault_dcache_drop(struct vault *v, const char *path)
{
	size_t len = strlen(path);
	struct vault_dir *d, *next;

	pthread_mutex_lock(&v->dcache_lock);
	for (d = v->lru_head; d; d = next) {
		next = d->lru_next;
		if (strncmp(d->path, path, len) == 0 && (d->path[len] == '\0' || d->path[len] == '/'))
			dcache_remove(v, d);
	}
	pthread_mutex_unlock(&v->dcache_lock);
}

void vault_dir_put(struct vault *v, struct vault_dir *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&v->dcache_lock);
	if (--d->refs == 0 && !d->cached && d != v->root)
		dir_free(d);
	pthread_mutex_unlock(&v->dcache_lock);
}

/* Open the child directory name of parent and load its metadata. */
static int dir_open_child(struct vault *v, struct vault_dir *parent, const char *path, size_t plen,
			  const char *name, size_t nlen, struct vault_dir **out)
{
	struct vault_sname *sn = NULL;
	struct vault_dir *d = NULL;
	int r, fd;

	*out = NULL;
	sn = malloc(sizeof(*sn));
	d = calloc(1, sizeof(*d));
	if (!sn || !d) {
		r = -ENOMEM;
		goto out;
	}
	d->fd = -1;
	r = vault_policy_sname_find(v, parent, name, nlen, sn);
	if (r < 0)
		goto out;
	fd = store_openat(parent->fd, sn->name, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0) {
		r = fd == -ELOOP ? -ENOTDIR : fd;
		goto out;
	}
	d->fd = fd;
	r = vault_dirmeta_load(v, fd, d);
	if (r == -ENOENT)
		r = -EUCLEAN; /* a store directory without its metadata */
	if (r < 0)
		goto out;
	d->top_level = d->level > parent->top_level ? d->level : parent->top_level;
	d->path = strndup(path, plen);
	if (!d->path) {
		r = -ENOMEM;
		goto out;
	}
	*out = d;
	d = NULL;
out:
	dir_free(d);
	free(sn);
	return r;
}

/* Put a freshly loaded d (refs 1) in the cache, or return the copy another
 * thread put there first. */
static struct vault_dir *dcache_insert(struct vault *v, struct vault_dir *d)
{
	struct vault_dir *old;
	size_t len = strlen(d->path);

	pthread_mutex_lock(&v->dcache_lock);
	old = dcache_find(v, d->path, len);
	if (old) {
		pthread_mutex_unlock(&v->dcache_lock);
		dir_free(d);
		return old;
	}
	d->refs = 1;
	d->cached = true;
	d->hnext = v->buckets[dcache_hash(d->path, len)];
	v->buckets[dcache_hash(d->path, len)] = d;
	lru_push(v, d);
	v->dcache_n++;
	while (v->dcache_n > VAULT_DCACHE_MAX && v->lru_tail && v->lru_tail != d) {
		assert(!v->lru_tail->lru_next); /* the tail is the last entry */
		dcache_remove(v, v->lru_tail);
	}
	pthread_mutex_unlock(&v->dcache_lock);
	return d;
}

int vault_dir_get(struct vault *v, const char *path, struct vault_dir **out)
{
	struct vault_dir *cur, *next;
	size_t len = strlen(path), i = 1;
	int r = 0;

	*out = NULL;
	pthread_mutex_lock(&v->dcache_lock);
	cur = v->root;
	cur->refs++;
	/* Fast path: the whole path is cached. */
	if (len > 1 && (next = dcache_find(v, path, len))) {
		cur->refs--;
		pthread_mutex_unlock(&v->dcache_lock);
		*out = next;
		return 0;
	}
	pthread_mutex_unlock(&v->dcache_lock);

	while (i < len) {
		size_t start = i, end = i;

		while (end < len && path[end] != '/')
			end++;
		pthread_mutex_lock(&v->dcache_lock);
		next = dcache_find(v, path, end);
		pthread_mutex_unlock(&v->dcache_lock);
		if (!next) {
			r = dir_open_child(v, cur, path, end, path + start, end - start, &next);
			if (r < 0)
				goto out;
			next = dcache_insert(v, next);
		}
		vault_dir_put(v, cur);
		cur = next;
		i = end + 1;
	}
	*out = cur;
	cur = NULL;
out:
	vault_dir_put(v, cur);
	return r;
}

int vault_loc_get(struct vault *v, const char *path, struct vault_loc *loc)
{
	char *slash;
	int r;

	memset(loc, 0, offsetof(struct vault_loc, sn));
	loc->sn.is_long = false;
	loc->sn.name[0] = '\0';
	r = vault_path_canon(path, &loc->path);
	if (r < 0)
		return r;
	if (strcmp(loc->path, "/") == 0) {
		loc->last = loc->path + 1;
		return 0;
	}
	slash = strrchr(loc->path, '/');
	loc->last = slash + 1;
	if (slash == loc->path) {
		r = vault_dir_get(v, "/", &loc->dir);
	} else {
		*slash = '\0';
		r = vault_dir_get(v, loc->path, &loc->dir);
		*slash = '/';
	}
	if (r < 0)
		goto fail;
	r = vault_policy_sname_find(v, loc->dir, loc->last, strlen(loc->last), &loc->sn);
	if (r < 0)
		goto fail;
	return 0;
fail:
	vault_loc_put(v, loc);
	return r;
}

void vault_loc_put(struct vault *v, struct vault_loc *loc)
{
	vault_dir_put(v, loc->dir);
	loc->dir = NULL;
	free(loc->path);
	loc->path = NULL;
}

/* ---- open, close, sync ---- */

/* The root's metadata: load it, or create it on a writable first open. */
static int root_load(struct vault *v)
{
	struct vault_dir *d;
	int r;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->path = strdup("/");
	d->fd = store_openat(v->tree_fd, ".", O_RDONLY | O_DIRECTORY, 0);
	if (!d->path || d->fd < 0) {
		r = d->path ? d->fd : -ENOMEM;
		goto out;
	}
	r = vault_dirmeta_load(v, d->fd, d);
	if (r == -ENOENT && !vault_ro(v)) {
		randombytes_buf(d->dir_id, sizeof(d->dir_id));
		d->level = 0;
		d->mode = S_IFDIR | 0755;
		d->uid = 0;
		d->gid = 0;
		r = vault_dirmeta_store(v, d->fd, d);
	} else if (r == -ENOENT) {
		r = -EUCLEAN; /* a read-only vault cannot make its missing root */
	}
out:
	if (r < 0) {
		dir_free(d);
		return r;
	}
	d->refs = 1;
	d->top_level = d->level;
	v->root = d;
	return 0;
}

int vault_open(const char *store, const struct kr_keyring *kr, unsigned flags, struct vault **out)
{
	struct vault *v;
	int r;

	*out = NULL;
	if (!store || !kr)
		return -EINVAL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->kr = kr;
	v->flags = flags;
	v->store_fd = -1;
	v->tree_fd = -1;
	pthread_rwlock_init(&v->ns, NULL);
	pthread_mutex_init(&v->dcache_lock, NULL);
	pthread_mutex_init(&v->files_lock, NULL);
	pthread_cond_init(&v->files_cond, NULL);

	v->store_fd = store_openat(AT_FDCWD, store, O_RDONLY | O_DIRECTORY, 0);
	if (v->store_fd < 0) {
		r = v->store_fd;
		goto out;
	}
	v->tree_fd = store_openat(v->store_fd, TREE_DIR, O_RDONLY | O_DIRECTORY, 0);
	if (v->tree_fd == -ENOENT && !vault_ro(v)) {
		r = store_mkdirat(v->store_fd, TREE_DIR, 0700);
		if (r < 0 && r != -EEXIST)
			goto out;
		v->tree_fd = store_openat(v->store_fd, TREE_DIR, O_RDONLY | O_DIRECTORY, 0);
	}
	if (v->tree_fd < 0) {
		r = v->tree_fd;
		goto out;
	}
	if (!vault_ro(v))
		v->pool = vf_pool_new(0); /* optional: NULL encodes serially */
	r = vault_watch_init(v);
	if (r == 0)
		r = root_load(v);
	if (r == 0)
		r = vault_policy_load(v);
out:
	if (r < 0) {
		vault_close(v);
		return r;
	}
	*out = v;
	return 0;
}

int vault_sync(struct vault *v)
{
	struct vault_ofile *of;
	int r = 0, e;

	pthread_rwlock_rdlock(&v->ns);
	pthread_mutex_lock(&v->files_lock);
	for (of = v->files; of; of = of->next) {
		if (of->state != VAULT_OF_OPEN || vault_ro(v))
			continue;
		e = vf_fsync(of->f, false);
		if (e < 0 && r == 0)
			r = e;
	}
	pthread_mutex_unlock(&v->files_lock);
	e = store_syncfs(v->tree_fd);
	if (e < 0 && r == 0)
		r = e;
	pthread_rwlock_unlock(&v->ns);
	return r;
}

int vault_fsyncdir(struct vault *v, const struct vault_caller *c, const char *path)
{
	struct vault_dir *d;
	int r;

	(void)c;
	if (vault_ro(v))
		return 0;
	pthread_rwlock_rdlock(&v->ns);
	r = vault_dir_get(v, path, &d);
	if (r == 0) {
		r = store_fsync(d->fd, false);
		vault_dir_put(v, d);
	}
	pthread_rwlock_unlock(&v->ns);
	return r;
}

int vault_close(struct vault *v)
{
	struct vault_ofile *of;
	struct vault_dir *d;
	int r = 0, e;

	if (!v)
		return 0;
	pthread_rwlock_wrlock(&v->ns);
	while ((of = v->files)) {
		v->files = of->next;
		if (of->f) {
			e = vf_close(of->f);
			if (e < 0 && r == 0)
				r = e;
		}
		pthread_mutex_destroy(&of->append_lock);
		free(of);
	}
	vf_pool_free(v->pool); /* idle: every file is closed */
	v->pool = NULL;
	r = vault_audit_shutdown(v, r); /* every file sealed: record the unmount */
	pthread_mutex_lock(&v->dcache_lock);
	while ((d = v->lru_head))
		dcache_remove(v, d);
	pthread_mutex_unlock(&v->dcache_lock);
	vault_policy_free(v);
	vault_watch_free(v);
	dir_free(v->root);
	if (v->tree_fd >= 0)
		store_close(v->tree_fd);
	if (v->store_fd >= 0)
		store_close(v->store_fd);
	pthread_rwlock_unlock(&v->ns);
	for (size_t i = 0; i < v->tamper_n; i++)
		free(v->tamper_seen[i]);
	free(v->tamper_seen);
	pthread_rwlock_destroy(&v->ns);
	pthread_mutex_destroy(&v->dcache_lock);
	pthread_mutex_destroy(&v->files_lock);
	pthread_cond_destroy(&v->files_cond);
	free(v);
	vf_zctx_trim(); /* no read of this vault is in flight any more */
	return r;
}

int vault_statfs(struct vault *v, struct statvfs *st)
{
	/* The store's filesystem answers; names are limited by the vault. */
	if (fstatvfs(v->tree_fd, st) < 0)
		return -errno;
	st->f_namemax = FMT_NAME_MAX;
	return 0;
}

uint64_t vault_names_skipped(struct vault *v)
{
	return __atomic_load_n(&v->names_skipped, __ATOMIC_RELAXED);
}
