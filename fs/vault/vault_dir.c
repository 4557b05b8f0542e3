/* vault_dir.c - directories: names, metadata, listing, mkdir and rmdir.
 *
 * A plaintext directory is a store directory holding ".sr-dir" (its
 * authenticated metadata: dir_id, level, mode, owner, xattrs) and one store
 * entry per plaintext entry, named by encrypting the plaintext name under
 * the directory's level (NAME_MAC / NAME_ENC subkeys) tweaked by its dir_id
 * (docs/format.md "Names", "Directory metadata").
 *
 * Invariants kept here:
 *  - A directory's level is found by comparing the .sr-dir's level hint with
 *    the hint of every level of the vault; the metadata is then decoded with
 *    that level's key, so a level not held gives -ENOKEY before any
 *    decryption and a changed byte gives -EBADMSG.
 *  - A name whose encryption exceeds 255 bytes is stored as ".L<hash>" with a
 *    sidecar "<that>.name" holding the full encrypted name: the sidecar is
 *    written before the entry and removed after it, so every long entry has
 *    its sidecar (an orphan sidecar is harmless and removed by rmdir).
 *  - A store directory never exists under its entry name without its
 *    .sr-dir: mkdir builds it under a reserved ".sr-tmp." name and renames
 *    it into place, rmdir renames it out of sight before taking it apart.
 *    Reserved leftovers of a crash are removed when their parent is.
 *  - Rewriting .sr-dir keeps the store directory's mtime: backup tools see a
 *    directory change only when its entries change.
 *  - Listing never fails because of one bad name: a name that does not
 *    decrypt is skipped and counted (v->names_skipped).
 *  - A skipped name whose object is of a level this mount holds (so its
 *    name level is held too) can only be a store edit: an entry moved in
 *    from another folder, a long name whose sidecar is damaged, missing or
 *    another's, or folder metadata that is not the folder's own. Such a
 *    listing writes one `integrity` record per folder per mount, naming the
 *    store entry; if no name of the folder decrypts while such entries
 *    exist, the metadata is another folder's (swapped or replayed) and the
 *    listing fails with -EBADMSG rather than show an empty folder. Only the
 *    first VAULT_FOREIGN_PROBES skipped names are probed, and none once the
 *    folder has been recorded unless that decides the -EBADMSG.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "strongroom/store.h"
#include "vault_internal.h"

#define LONGNAME_LEN (FMT_LONGNAME_BYTES - 1)
#define SIDECAR_LEN (LONGNAME_LEN + sizeof(FMT_LONGNAME_SIDECAR_SUFFIX) - 1)

/* ---- names ---- */

int vault_sname_make(const struct vault *v, const struct vault_dir *d, const char *name, size_t len,
		     struct vault_sname *out)
{
	const unsigned char *mac = kr_level_subkey(v->kr, d->level, KR_SUB_NAME_MAC);
	const unsigned char *enc = kr_level_subkey(v->kr, d->level, KR_SUB_NAME_ENC);
	char ln[FMT_LONGNAME_BYTES];
	ssize_t n;

	out->is_long = false;
	out->sidecar[0] = '\0';
	if (!mac || !enc)
		return -ENOKEY;
	if (len == 0 || memchr(name, '/', len) || memchr(name, '\0', len))
		return -EINVAL;
	if (len > FMT_NAME_MAX)
		return -ENAMETOOLONG;
	n = fmt_name_encrypt(mac, enc, d->dir_id, name, len, out->enc, sizeof(out->enc));
	if (n == -ENOSPC)
		return -ENAMETOOLONG;
	if (n < 0)
		return (int)n;
	out->enc_len = (size_t)n;
	if (n <= FMT_NAME_MAX) {
		memcpy(out->name, out->enc, (size_t)n + 1);
		return 0;
	}
	fmt_longname(out->enc, (size_t)n, ln);
	memcpy(out->name, ln, sizeof(ln));
	snprintf(out->sidecar, sizeof(out->sidecar), "%s%s", ln, FMT_LONGNAME_SIDECAR_SUFFIX);
	out->is_long = true;
	return 0;
}

int vault_sidecar_write(int dirfd, const struct vault_sname *sn)
{
	if (!sn->is_long)
		return 0;
	return store_write_atomic(dirfd, sn->sidecar, sn->enc, sn->enc_len);
}

void vault_sidecar_remove(int dirfd, const struct vault_sname *sn)
{
	if (sn->is_long)
		(void)store_unlinkat(dirfd, sn->sidecar, 0);
}

enum entry_kind { ENT_SKIP, ENT_NAME, ENT_LONG, ENT_SIDECAR, ENT_TMP, ENT_META, ENT_OTHER };

static enum entry_kind entry_kind(const char *n)
{
	size_t len = strlen(n);

	if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
		return ENT_SKIP;
	if (n[0] != '.')
		return ENT_NAME;
	if (strcmp(n, FMT_DIRMETA_NAME) == 0)
		return ENT_META;
	if (strncmp(n, FMT_TMP_PREFIX, strlen(FMT_TMP_PREFIX)) == 0)
		return ENT_TMP;
	if (strncmp(n, FMT_LONGNAME_PREFIX, strlen(FMT_LONGNAME_PREFIX)) == 0) {
		if (len == LONGNAME_LEN)
			return ENT_LONG;
		if (len == SIDECAR_LEN &&
		    strcmp(n + LONGNAME_LEN, FMT_LONGNAME_SIDECAR_SUFFIX) == 0)
			return ENT_SIDECAR;
	}
	return ENT_OTHER;
}

/* Plaintext name of store entry sname (kind ENT_NAME or ENT_LONG) of d.
 * @return its length, or -errno (the entry is then skipped). */
static ssize_t entry_name_decrypt(const struct vault *v, const struct vault_dir *d, const char *sname,
				  enum entry_kind kind, char out[FMT_NAME_MAX + 1], unsigned *level)
{
	char side[SIDECAR_LEN + 1];
	char *buf = NULL;
	ssize_t n;

	/* Under the folder's level, or an entry's own higher one. */
	if (kind == ENT_NAME)
		return vault_policy_name_decrypt(v, d, sname, strlen(sname), out, level);
	buf = malloc(VAULT_ENC_NAME_MAX);
	if (!buf)
		return -ENOMEM;
	snprintf(side, sizeof(side), "%s%s", sname, FMT_LONGNAME_SIDECAR_SUFFIX);
	n = store_read_small(d->fd, side, buf, VAULT_ENC_NAME_MAX);
	if (n < 0)
		goto out;
	if (fmt_longname_check(sname, buf, (size_t)n) < 0) {
		n = -EBADMSG;
		goto out;
	}
	n = vault_policy_name_decrypt(v, d, buf, (size_t)n, out, level);
out:
	free(buf);
	return n;
}

/* ---- directory metadata ---- */

int vault_dirmeta_load(const struct vault *v, int dirfd, struct vault_dir *d)
{
	const struct kr_config *cfg = kr_keyring_config(v->kr);
	const unsigned char *hint_key = kr_vault_subkey(v->kr, KR_VSUB_HINT);
	const unsigned char *meta_key;
	uint8_t id[FMT_ID_BYTES], hint[FMT_HINT_BYTES], h[FMT_HINT_BYTES];
	struct fmt_dirmeta m = { 0 };
	unsigned char *buf = NULL;
	struct stat st;
	unsigned level, found = KR_MAX_LEVELS;
	ssize_t n;
	int r;

	r = store_fstatat(dirfd, FMT_DIRMETA_NAME, &st);
	if (r < 0)
		goto out;
	if (!S_ISREG(st.st_mode) || st.st_size > VAULT_DIRMETA_MAX) {
		r = -EUCLEAN;
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	n = store_read_small(dirfd, FMT_DIRMETA_NAME, buf, (size_t)st.st_size + 1);
	if (n < 0) {
		r = n == -EFBIG ? -EUCLEAN : (int)n;
		goto out;
	}
	r = fmt_dirmeta_peek(buf, (size_t)n, id, hint);
	if (r < 0)
		goto out;
	/* Which level? Compare with every level's hint, all of them. */
	for (level = 0; level < cfg->nlevels; level++) {
		fmt_level_hint(hint_key, id, level, h);
		if (sodium_memcmp(h, hint, sizeof(h)) == 0)
			found = level;
	}
	if (found == KR_MAX_LEVELS) {
		r = -EBADMSG;
		goto out;
	}
	meta_key = kr_level_subkey(v->kr, found, KR_SUB_META);
	if (!meta_key || !kr_level_held(v->kr, found)) {
		r = -ENOKEY;
		goto out;
	}
	r = fmt_dirmeta_decode(buf, (size_t)n, found, meta_key, &m);
	if (r < 0)
		goto out;
	if (!S_ISDIR(m.mode) || m.level != found || memcmp(m.dir_id, id, FMT_ID_BYTES) != 0) {
		free(m.xattrs);
		r = -EUCLEAN;
		goto out;
	}
	memcpy(d->dir_id, m.dir_id, FMT_ID_BYTES);
	d->level = found;
	d->mode = m.mode;
	d->uid = m.uid;
	d->gid = m.gid;
	free(d->xattrs);
	d->xattrs = m.xattrs;
	d->xattrs_len = m.xattrs_len;
out:
	free(buf);
	return r;
}

int vault_dirmeta_store(const struct vault *v, int dirfd, const struct vault_dir *d)
{
	const unsigned char *hint_key = kr_vault_subkey(v->kr, KR_VSUB_HINT);
	const unsigned char *meta_key = kr_level_subkey(v->kr, d->level, KR_SUB_META);
	struct fmt_dirmeta m = { 0 };
	unsigned char *buf = NULL;
	struct timespec ts[2];
	struct stat st;
	bool have_times;
	size_t cap;
	ssize_t n;
	int r;

	if (!meta_key)
		return -ENOKEY;
	memcpy(m.dir_id, d->dir_id, FMT_ID_BYTES);
	m.level = d->level;
	m.mode = d->mode;
	m.uid = d->uid;
	m.gid = d->gid;
	m.xattrs = d->xattrs;
	m.xattrs_len = d->xattrs_len;
	cap = fmt_dirmeta_bound(d->xattrs_len);
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	n = fmt_dirmeta_encode(&m, hint_key, meta_key, buf, cap);
	if (n < 0) {
		r = (int)n;
		goto out;
	}
	have_times = store_fstat(dirfd, &st) == 0;
	r = store_write_atomic(dirfd, FMT_DIRMETA_NAME, buf, (size_t)n);
	if (r == 0 && have_times) {
		ts[0] = st.st_atim;
		ts[1] = st.st_mtim;
		(void)store_futimens(dirfd, ts);
	}
out:
	free(buf);
	return r;
}

int vault_dir_stat(const struct vault_dir *d, struct stat *st)
{
	int r = store_fstat(d->fd, st);

	if (r < 0)
		return r;
	st->st_ino = vault_id_ino(d->dir_id);
	st->st_mode = d->mode;
	st->st_uid = d->uid;
	st->st_gid = d->gid;
	st->st_rdev = 0;
	return 0;
}

ssize_t vault_dirmeta_raw(int dirfd, unsigned char **buf)
{
	struct stat st;
	ssize_t n;
	int r;

	*buf = NULL;
	r = store_fstatat(dirfd, FMT_DIRMETA_NAME, &st);
	if (r < 0)
		return r;
	if (st.st_size > VAULT_DIRMETA_MAX)
		return -EUCLEAN;
	*buf = malloc((size_t)st.st_size + 1);
	if (!*buf)
		return -ENOMEM;
	n = store_read_small(dirfd, FMT_DIRMETA_NAME, *buf, (size_t)st.st_size + 1);
	if (n < 0) {
		free(*buf);
		*buf = NULL;
	}
	return n;
}

int vault_dir_commit(const struct vault *v, struct vault_dir *d, const struct vault_dir *nd)
{
	int r = vault_dirmeta_store(v, d->fd, nd);

	if (r < 0)
		return r;
	if (d->level != nd->level) /* its names moved level: learn them again */
		__atomic_store_n(&d->higher, VAULT_HIGHER_UNKNOWN, __ATOMIC_RELAXED);
	d->level = nd->level;
	d->mode = nd->mode;
	d->uid = nd->uid;
	d->gid = nd->gid;
	if (nd->xattrs != d->xattrs) {
		free(d->xattrs);
		d->xattrs = nd->xattrs;
	}
	d->xattrs_len = nd->xattrs_len;
	return 0;
}

/* ---- listing ---- */

/* Call fn for every name in the store directory dirfd. */
static int dir_scan(int dirfd, int (*fn)(void *ctx, const char *name, unsigned char type),
		    void *ctx)
{
	struct dirent *de;
	DIR *dp;
	int fd, r = 0;

	fd = store_openat(dirfd, ".", O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return fd;
	dp = fdopendir(fd);
	if (!dp) {
		r = -errno;
		store_close(fd);
		return r;
	}
	for (;;) {
		errno = 0;
		de = readdir(dp);
		if (!de) {
			r = errno ? -errno : 0;
			break;
		}
		r = fn(ctx, de->d_name, de->d_type);
		if (r < 0)
			break;
	}
	closedir(dp);
	return r;
}

/* At most this many skipped names of one listing are probed for their
 * level: a folder of a mount's ceiling may hold thousands of names above
 * it, and each probe opens the entry. A store edit hidden behind more names
 * above the ceiling than this is found by fsck (and by a full mount). */
#define VAULT_FOREIGN_PROBES 16

struct list_ctx {
	struct vault *v;
	struct vault_dir *d;
	const char *path;
	bool with_attrs;
	struct vault_dirlist *l;
	size_t cap;
	size_t ngood, nskipped; /* names that decrypted; that did not */
	size_t nhigher;		/* names above the folder's level */
	/* The first skipped store names, probed after the scan for one of a
	 * held level (list_foreign_find); the first such one. */
	char probe[VAULT_FOREIGN_PROBES][FMT_NAME_MAX + 1];
	size_t nprobe;
	const char *foreign;
};

/* True if store entry sname of d is of a level this mount holds (then its
 * name should have decrypted: see the file-top invariants). */
static bool entry_level_held(struct vault *v, struct vault_dir *d, const char *sname)
{
	struct vault_dir cd = { 0 };
	struct vf_attr a;
	struct stat st;
	int fd, r;

	if (store_fstatat(d->fd, sname, &st) < 0)
		return false; /* gone meanwhile */
	if (!S_ISDIR(st.st_mode))
		return vf_stat_at(v->kr, d->fd, sname, &a) != -ENOKEY;
	fd = store_openat(d->fd, sname, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return false;
	r = vault_dirmeta_load(v, fd, &cd);
	free(cd.xattrs);
	store_close(fd);
	return r != -ENOKEY;
}

/* The store path (from the store's top) of entry sname of d, for the audit
 * record; the bare name if the descriptors do not tell. */
static void entry_store_path(const struct vault *v, const struct vault_dir *d, const char *sname,
			     char *out, size_t cap)
{
	char top[PATH_MAX], dir[PATH_MAX], link[64];
	ssize_t nt, nd;
	size_t lt;

	snprintf(out, cap, "%s", sname);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", v->store_fd);
	nt = readlink(link, top, sizeof(top) - 1);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", d->fd);
	nd = readlink(link, dir, sizeof(dir) - 1);
	if (nt <= 0 || nd <= 0)
		return;
	top[nt] = '\0';
	dir[nd] = '\0';
	lt = (size_t)nt;
	if (strncmp(dir, top, lt) == 0 && dir[lt] == '/')
		snprintf(out, cap, "%s/%s", dir + lt + 1, sname);
}

/* True if path's foreign entries were recorded this mount; with add,
 * remember it now. */
static bool list_foreign_seen(struct vault *v, const char *path, bool add)
{
	char **seen;
	bool first = true;

	pthread_mutex_lock(&v->dcache_lock);
	for (size_t i = 0; i < v->tamper_n && first; i++)
		first = strcmp(v->tamper_seen[i], path) != 0;
	if (first && add) {
		seen = realloc(v->tamper_seen, (v->tamper_n + 1) * sizeof(*seen));
		if (seen) {
			v->tamper_seen = seen;
			seen[v->tamper_n] = strdup(path);
			if (seen[v->tamper_n])
				v->tamper_n++;
		}
	}
	pthread_mutex_unlock(&v->dcache_lock);
	return !first;
}

/* After the scan: the first probed name of a held level (ctx->foreign), if
 * it matters: always when no name decrypted (then it decides -EBADMSG),
 * else only until the folder has been recorded this mount. */
static void list_foreign_find(struct list_ctx *ctx, const char *path)
{
	if (!ctx->nskipped || (ctx->ngood > 0 && list_foreign_seen(ctx->v, path, false)))
		return;
	for (size_t i = 0; i < ctx->nprobe && !ctx->foreign; i++)
		if (entry_level_held(ctx->v, ctx->d, ctx->probe[i]))
			ctx->foreign = ctx->probe[i];
}

/* Record the foreign entries of a listing of path: once per folder per
 * mount (a damaged folder may be listed thousands of times). */
static void list_foreign_record(struct vault *v, const struct vault_caller *c, struct list_ctx *ctx,
				const char *path, bool not_own)
{
	char detail[FMT_NAME_MAX + PATH_MAX + 256], where[FMT_NAME_MAX + PATH_MAX + 2];
	struct audit_event ev = { 0 };

	if (list_foreign_seen(v, path, true))
		return;
	entry_store_path(v, ctx->d, ctx->foreign, where, sizeof(where));
	if (not_own)
		snprintf(detail, sizeof(detail),
			 "list: folder metadata is not this folder's own (swapped or replayed "
			 "from another folder): no name of its %zu entries decrypts, first %s",
			 ctx->nskipped, where);
	else
		snprintf(detail, sizeof(detail),
			 "list: %zu store entries whose names do not decrypt in this folder "
			 "(moved from another folder, or a damaged, missing or foreign long-name "
			 "sidecar; names above this mount's levels included), first %s",
			 ctx->nskipped, where);
	ev.type = AUDIT_EV_INTEGRITY;
	ev.path = path;
	ev.outcome = EIO;
	ev.detail = detail;
	(void)vault_audit_emit(v, c, &ev); /* the listing's own result stands */
}

static int list_one(void *vctx, const char *sname, unsigned char type)
{
	struct list_ctx *ctx = vctx;
	enum entry_kind kind = entry_kind(sname);
	char name[FMT_NAME_MAX + 1];
	struct vault_dirent *e;
	char *child = NULL;
	unsigned level = ctx->d->level;
	ssize_t n;
	int r;

	if (kind != ENT_NAME && kind != ENT_LONG)
		return 0;
	n = entry_name_decrypt(ctx->v, ctx->d, sname, kind, name, &level);
	if (n <= 0 || memchr(name, '/', (size_t)n) || strcmp(name, ".") == 0 ||
	    strcmp(name, "..") == 0) {
		if (n == -ENOMEM)
			return -ENOMEM;
		__atomic_add_fetch(&ctx->v->names_skipped, 1, __ATOMIC_RELAXED);
		if (ctx->nprobe < VAULT_FOREIGN_PROBES)
			snprintf(ctx->probe[ctx->nprobe++], FMT_NAME_MAX + 1, "%s", sname);
		ctx->nskipped++;
		return 0;
	}
	ctx->ngood++;
	if (level != ctx->d->level)
		ctx->nhigher++;
	if (ctx->l->n == ctx->cap) {
		size_t ncap = ctx->cap ? ctx->cap * 2 : 32;
		struct vault_dirent *ne = realloc(ctx->l->ents, ncap * sizeof(*ne));

		if (!ne)
			return -ENOMEM;
		ctx->l->ents = ne;
		ctx->cap = ncap;
	}
	e = &ctx->l->ents[ctx->l->n];
	memset(e, 0, sizeof(*e));
	e->name = strndup(name, (size_t)n);
	if (!e->name)
		return -ENOMEM;
	ctx->l->n++;
	if (!ctx->with_attrs)
		return 0;
	if (asprintf(&child, "%s/%s", strcmp(ctx->path, "/") == 0 ? "" : ctx->path, e->name) < 0)
		return -ENOMEM;
	r = vault_entry_stat(ctx->v, ctx->d, child, sname, &e->st);
	if (r < 0) {
		/* Locked or damaged: list the name with its type only; a lookup
		 * of it reports the cause. */
		memset(&e->st, 0, sizeof(e->st));
		e->st.st_mode = type == DT_DIR ? S_IFDIR : S_IFREG;
	}
	free(child);
	return 0;
}

int vault_readdir(struct vault *v, const struct vault_caller *c, const char *path, bool with_attrs,
		  struct vault_dirlist *out)
{
	struct list_ctx ctx = { 0 };
	struct vault_dir *d = NULL;
	char *canon = NULL;
	bool foreign = false;
	int r;

	out->ents = NULL;
	out->n = 0;
	r = vault_path_canon(path, &canon);
	if (r < 0)
		return r;
	pthread_rwlock_rdlock(&v->ns);
	r = vault_dir_get(v, canon, &d);
	if (r == 0)
		r = vault_policy_dir_check(v, c, d);
	if (r < 0)
		goto out;
	ctx.v = v;
	ctx.d = d;
	ctx.path = canon;
	ctx.with_attrs = with_attrs;
	ctx.l = out;
	r = dir_scan(d->fd, list_one, &ctx);
	if (r == 0)
		list_foreign_find(&ctx, canon);
	/* The whole folder seen: lookups may skip the other levels if every
	 * name is at its level (one that did not decrypt might be above). */
	if (r == 0)
		__atomic_store_n(&d->higher,
				 ctx.nhigher || ctx.nskipped ? VAULT_HIGHER_SOME : VAULT_HIGHER_NONE,
				 __ATOMIC_RELAXED);
	foreign = r == 0 && ctx.foreign;
	/* Entries none of which decrypts: the metadata is not this folder's. */
	if (foreign && ctx.ngood == 0)
		r = -EBADMSG;
out:
	if (foreign)
		list_foreign_record(v, c, &ctx, canon, r < 0);
	vault_dir_put(v, d);
	pthread_rwlock_unlock(&v->ns);
	free(canon);
	if (r < 0)
		vault_dirlist_free(out);
	return vault_audit_path(v, c, 0, path, NULL, "list", r);
}

void vault_dirlist_free(struct vault_dirlist *l)
{
	size_t i;

	if (!l)
		return;
	for (i = 0; i < l->n; i++)
		free(l->ents[i].name);
	free(l->ents);
	l->ents = NULL;
	l->n = 0;
}

/* ---- mkdir, rmdir ---- */

void vault_tmp_dir_name(char out[FMT_NAME_MAX + 1])
{
	unsigned char r[12];
	char hex[sizeof(r) * 2 + 1];

	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
	snprintf(out, FMT_NAME_MAX + 1, "%sd.%s", FMT_TMP_PREFIX, hex);
}

void vault_tmp_dir_remove(int dirfd, const char *name)
{
	struct dirent *de;
	DIR *dp;
	int fd = store_openat(dirfd, name, O_RDONLY | O_DIRECTORY, 0);

	if (fd < 0)
		return;
	dp = fdopendir(fd);
	if (!dp) {
		store_close(fd);
		return;
	}
	while ((de = readdir(dp)))
		if (entry_kind(de->d_name) == ENT_META || entry_kind(de->d_name) == ENT_TMP)
			(void)store_unlinkat(fd, de->d_name, 0);
	closedir(dp);
	(void)store_unlinkat(dirfd, name, AT_REMOVEDIR);
}

int vault_mkdir(struct vault *v, const struct vault_caller *c, const char *path, mode_t mode)
{
	struct vault_dir nd = { 0 };
	struct vault_loc loc;
	void *acc = NULL, *dflt = NULL;
	size_t acc_len = 0, dflt_len = 0;
	bool made = false, sidecar = false;
	char tmp[FMT_NAME_MAX + 1];
	mode_t perm;
	uint32_t gid;
	struct stat st;
	int r, fd = -1;

	if (vault_ro(v))
		return -EROFS;
	pthread_rwlock_wrlock(&v->ns);
	r = vault_loc_get_as(v, c, path, &loc);
	if (r < 0)
		goto unlock;
	if (!loc.dir) {
		r = -EEXIST;
		goto out;
	}
	r = store_fstatat(loc.dir->fd, loc.sn.name, &st);
	if (r == 0) {
		r = -EEXIST;
		goto out;
	}
	if (r != -ENOENT)
		goto out;
	r = vault_new_mode(v, c, loc.dir, mode, true, &perm, &gid, &acc, &acc_len, &dflt,
			   &dflt_len);
	if (r < 0)
		goto out;
	randombytes_buf(nd.dir_id, sizeof(nd.dir_id));
	nd.level = loc.dir->level;
	nd.mode = S_IFDIR | perm;
	nd.uid = c->uid;
	nd.gid = gid;
	if (acc) {
		r = fmt_xattr_set(&nd.xattrs, &nd.xattrs_len, VAULT_XATTR_ACL_ACCESS, acc, acc_len, 0);
		if (r < 0)
			goto out;
	}
	if (dflt) {
		r = fmt_xattr_set(&nd.xattrs, &nd.xattrs_len, VAULT_XATTR_ACL_DEFAULT, dflt,
				  dflt_len, 0);
		if (r < 0)
			goto out;
	}
	/* Built under a reserved name, metadata included, then renamed into
	 * place: a crash never leaves a directory without its .sr-dir. */
	vault_tmp_dir_name(tmp);
	r = store_mkdirat(loc.dir->fd, tmp, 0700);
	if (r < 0)
		goto out;
	made = true;
	fd = store_openat(loc.dir->fd, tmp, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0) {
		r = fd;
		goto out;
	}
	r = vault_dirmeta_store(v, fd, &nd);
	if (r < 0)
		goto out;
	r = vault_sidecar_write(loc.dir->fd, &loc.sn);
	if (r < 0)
		goto out;
	sidecar = true;
	r = store_renameat(loc.dir->fd, tmp, loc.dir->fd, loc.sn.name, RENAME_NOREPLACE);
	if (r == 0) {
		struct vault_dir *nd2;

		made = sidecar = false;
		/* A new folder holds no name at all: its lookups need no probe
		 * of other levels (it is looked into next, so load it now). */
		if (vault_dir_get(v, loc.path, &nd2) == 0) {
			__atomic_store_n(&nd2->higher, VAULT_HIGHER_NONE, __ATOMIC_RELAXED);
			vault_dir_put(v, nd2);
		}
	}
out:
	if (fd >= 0)
		store_close(fd);
	if (made)
		vault_tmp_dir_remove(loc.dir->fd, tmp);
	if (sidecar)
		vault_sidecar_remove(loc.dir->fd, &loc.sn);
	free(nd.xattrs);
	free(acc);
	free(dflt);
	vault_loc_put(v, &loc);
unlock:
	pthread_rwlock_unlock(&v->ns);
	return vault_audit_path(v, c, AUDIT_EV_MKDIR, path, NULL, "mkdir", r);
}

struct empty_ctx {
	bool empty;
	int dirfd;
	bool remove_junk;
};

static int empty_one(void *vctx, const char *name, unsigned char type)
{
	struct empty_ctx *ctx = vctx;

	switch (entry_kind(name)) {
	case ENT_SKIP:
	case ENT_META:
		return 0;
	case ENT_TMP:
	case ENT_SIDECAR:
		if (ctx->remove_junk && type == DT_DIR)
			vault_tmp_dir_remove(ctx->dirfd, name);
		else if (ctx->remove_junk)
			(void)store_unlinkat(ctx->dirfd, name, 0);
		return 0;
	default:
		ctx->empty = false;
		return 0;
	}
}

int vault_dir_empty(int dirfd, bool remove_junk)
{
	struct empty_ctx ctx = { .empty = true, .dirfd = dirfd };
	int r = dir_scan(dirfd, empty_one, &ctx);

	if (r < 0)
		return r;
	if (ctx.empty && remove_junk) {
		ctx.remove_junk = true;
		(void)dir_scan(dirfd, empty_one, &ctx);
	}
	return ctx.empty ? 1 : 0;
}

int vault_rmdir(struct vault *v, const struct vault_caller *c, const char *path)
{
	struct vault_dir *d = NULL;
	struct vault_loc loc;
	unsigned char *meta = NULL;
	char tmp[FMT_NAME_MAX + 1];
	ssize_t mlen = 0;
	struct stat st;
	int r;

	if (vault_ro(v))
		return -EROFS;
	pthread_rwlock_wrlock(&v->ns);
	r = vault_loc_get_as(v, c, path, &loc);
	if (r < 0)
		goto unlock;
	if (!loc.dir) {
		r = -EBUSY;
		goto out;
	}
	r = store_fstatat(loc.dir->fd, loc.sn.name, &st);
	if (r < 0)
		goto out;
	if (!S_ISDIR(st.st_mode)) {
		r = -ENOTDIR;
		goto out;
	}
	r = vault_dir_get(v, loc.path, &d);
	if (r < 0)
		goto out;
	r = vault_dir_empty(d->fd, true);
	if (r <= 0) {
		r = r < 0 ? r : -ENOTEMPTY;
		goto out;
	}
	/* Out of sight first (a crash leaves only reserved junk), then its
	 * metadata, then the store directory; the metadata is kept to put
	 * back if the store refuses. */
	mlen = vault_dirmeta_raw(d->fd, &meta);
	if (mlen < 0) {
		r = (int)mlen;
		goto out;
	}
	vault_tmp_dir_name(tmp);
	r = store_renameat(loc.dir->fd, loc.sn.name, loc.dir->fd, tmp, RENAME_NOREPLACE);
	if (r < 0)
		goto out;
	r = store_unlinkat(d->fd, FMT_DIRMETA_NAME, 0);
	if (r == 0)
		r = store_unlinkat(loc.dir->fd, tmp, AT_REMOVEDIR);
	if (r < 0) {
		(void)store_write_atomic(d->fd, FMT_DIRMETA_NAME, meta, (size_t)mlen);
		(void)store_renameat(loc.dir->fd, tmp, loc.dir->fd, loc.sn.name, RENAME_NOREPLACE);
		goto out;
	}
	vault_sidecar_remove(loc.dir->fd, &loc.sn);
	vault_dcache_drop(v, loc.path);
out:
	free(meta);
	vault_dir_put(v, d);
	vault_loc_put(v, &loc);
unlock:
	pthread_rwlock_unlock(&v->ns);
	return vault_audit_path(v, c, AUDIT_EV_RMDIR, path, NULL, "rmdir", r);
}
