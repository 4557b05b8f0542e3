/* vault_node.c - files, links and names: the open-file table, attributes,
 * create/open/read/write/release, unlink, rename, link, symlink, mknod.
 *
 * Every non-directory is one regular store file written by the file engine
 * (vfile.h): regular files, symlinks (content = target, mode S_IFLNK),
 * fifos and sockets (mode only). Hard links are store hard links.
 *
 * Invariants kept here:
 *  - Attributes come from the engine's authenticated seal (mode, uid, gid,
 *    size, rdev, file_id) or a directory's metadata, times, link count and
 *    blocks from the store inode. The store inode's mode is never used.
 *  - st_ino is the first 8 bytes of file_id / dir_id: stable across
 *    remounts and the same for every hard link.
 *  - One vault_ofile per store inode (see vault_internal.h, invariant 3).
 *    A handle keeps its vault_ofile, hence its store inode: after a rename
 *    over its name, a reader goes on reading the bytes it opened.
 *  - Names reach the store only encrypted for their directory; a long name's
 *    sidecar exists before its entry and goes after it.
 *  - Compaction runs only at the last close, only when the file is still
 *    named where its last handle opened it and has one link (compacting
 *    one name of a hard-linked file would split it).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strongroom/store.h"
#include "vault_internal.h"

/* ---- the open-file table ---- */

static struct vault_ofile *ofile_find(struct vault *v, dev_t dev, ino_t ino)
{
	struct vault_ofile *of;

	for (of = v->files; of; of = of->next)
		if (of->dev == dev && of->ino == ino)
			return of;
	return NULL;
}

static void ofile_unlink(struct vault *v, struct vault_ofile *of)
{
	struct vault_ofile **pp = &v->files;

	while (*pp && *pp != of)
		pp = &(*pp)->next;
	if (*pp)
		*pp = of->next;
}

static struct vault_ofile *ofile_new(dev_t dev, ino_t ino, enum vault_ofile_state state)
{
	struct vault_ofile *of = calloc(1, sizeof(*of));

	if (!of)
		return NULL;
	of->dev = dev;
	of->ino = ino;
	of->state = state;
	of->refs = 1;
	pthread_mutex_init(&of->append_lock, NULL);
	return of;
}

static void ofile_free(struct vault_ofile *of)
{
	pthread_mutex_destroy(&of->append_lock);
	free(of);
}

int vault_ofile_get(struct vault *v, int dirfd, const char *sname, bool open_if_absent,
		    struct stat *st, struct vault_ofile **out)
{
	struct vault_ofile *of;
	struct vf_file *f = NULL;
	struct stat fst;
	int r;

	*out = NULL;
retry:
	r = store_fstatat(dirfd, sname, st);
	if (r < 0)
		return r;
	if (S_ISDIR(st->st_mode))
		return -EISDIR;
	if (!S_ISREG(st->st_mode))
		return -EUCLEAN; /* the format keeps only regular files */
	pthread_mutex_lock(&v->files_lock);
	of = ofile_find(v, st->st_dev, st->st_ino);
	if (of && of->state != VAULT_OF_OPEN) {
		/* Being opened or sealed by another thread: wait, then look
		 * again (a compaction may have replaced the inode). */
		pthread_cond_wait(&v->files_cond, &v->files_lock);
		pthread_mutex_unlock(&v->files_lock);
		goto retry;
	}
	if (of) {
		of->refs++;
		pthread_mutex_unlock(&v->files_lock);
		if (vault_watch_file_locked(v, of->f)) {
			/* Its level was locked while it was open (vault_watch.c). */
			(void)vault_ofile_put(v, of, -1, NULL);
			return -ENOKEY;
		}
		*out = of;
		return 0;
	}
	if (!open_if_absent) {
		pthread_mutex_unlock(&v->files_lock);
		return 0;
	}
	of = ofile_new(st->st_dev, st->st_ino, VAULT_OF_OPENING);
	if (of)
		of->mtime = st->st_mtim;
	if (!of) {
		pthread_mutex_unlock(&v->files_lock);
		return -ENOMEM;
	}
	of->next = v->files;
	v->files = of;
	pthread_mutex_unlock(&v->files_lock);

	r = vf_open(v->kr, dirfd, sname, !vault_ro(v), &f);
	if (r == 0) {
		r = store_fstat(vf_fd(f), &fst);
		if (r == 0 && (fst.st_dev != st->st_dev || fst.st_ino != st->st_ino))
			r = -EAGAIN;
	}
	pthread_mutex_lock(&v->files_lock);
	if (r < 0) {
		ofile_unlink(v, of);
		pthread_cond_broadcast(&v->files_cond);
		pthread_mutex_unlock(&v->files_lock);
		(void)vf_close(f);
		ofile_free(of);
		if (r == -EAGAIN)
			goto retry;
		return r;
	}
	of->f = f;
	vf_set_pool(f, v->pool);
	of->state = VAULT_OF_OPEN;
	vault_audit_file_opened(v, f);
	pthread_cond_broadcast(&v->files_cond);
	pthread_mutex_unlock(&v->files_lock);
	*out = of;
	return 0;
}

/* Enter a file the vault just created (v->ns exclusive). */
static int ofile_adopt(struct vault *v, struct vf_file *f, struct vault_ofile **out)
{
	struct vault_ofile *of;
	struct stat st;
	int r;

	r = store_fstat(vf_fd(f), &st);
	if (r < 0)
		return r;
	of = ofile_new(st.st_dev, st.st_ino, VAULT_OF_OPEN);
	if (!of)
		return -ENOMEM;
	of->f = f;
	vf_set_pool(f, v->pool);
	of->mtime = st.st_mtim;
	pthread_mutex_lock(&v->files_lock);
	of->next = v->files;
	v->files = of;
	pthread_mutex_unlock(&v->files_lock);
	*out = of;
	return 0;
}

void vault_times_by_caller(struct vault *v)
{
	v->flags |= VAULT_CALLER_MTIME;
}

/* vault_times_by_caller: seal what is pending, then give the store file back
 * the mtime the caller knows (data written since moved it). */
static int ofile_mtime_keep(struct vault *v, struct vault_ofile *of)
{
	const struct timespec ts[2] = {{0, UTIME_OMIT}, of->mtime};
	int r;

	if (!(v->flags & VAULT_CALLER_MTIME) || vault_ro(v) ||
	    !__atomic_load_n(&of->written, __ATOMIC_RELAXED))
		return 0;
	r = vf_seal(of->f);
	if (r == 0)
		r = store_futimens(vf_fd(of->f), ts);
	return r;
}

/* After utimens on an open file: the mtime the store now keeps. */
static void ofile_mtime_set(struct vault_ofile *of, const struct timespec ts[2])
{
	struct stat st;

	if (ts[1].tv_nsec == UTIME_OMIT)
		return;
	if (ts[1].tv_nsec != UTIME_NOW)
		of->mtime = ts[1];
	else if (store_fstat(vf_fd(of->f), &st) == 0)
		of->mtime = st.st_mtim;
}

int vault_ofile_put(struct vault *v, struct vault_ofile *of, int dirfd, const char *sname)
{
	struct timespec dts[2], fts[2];
	struct stat st, dst, fst;
	bool compacted = false, dtimes = false;
	int r = 0, e;

	if (!of)
		return 0;
	pthread_mutex_lock(&v->files_lock);
	if (--of->refs > 0) {
		pthread_mutex_unlock(&v->files_lock);
		return 0;
	}
	of->state = VAULT_OF_CLOSING;
	pthread_mutex_unlock(&v->files_lock);
	if (vault_watch_file_locked(v, of->f))
		dirfd = -1; /* no compaction under a wiped key (vault_watch.c) */
	else
		r = ofile_mtime_keep(v, of);

	if (r == 0 && dirfd >= 0 && !vault_ro(v) && vf_needs_compaction(of->f) &&
	    store_fstatat(dirfd, sname, &st) == 0 && st.st_dev == of->dev &&
	    st.st_ino == of->ino && st.st_nlink == 1) {
		dtimes = store_fstat(dirfd, &dst) == 0;
		r = vf_compact(of->f, dirfd, sname);
		compacted = r == 0 && store_fstat(vf_fd(of->f), &fst) == 0;
	}
	e = vf_close(of->f);
	if (e < 0 && r == 0)
		r = e;
	if (compacted) {
		/* Same plaintext, same times: the rewrite is not a change. */
		fts[0] = st.st_atim;
		fts[1] = st.st_mtim;
		(void)store_utimensat(dirfd, sname, fts);
	}
	if (dtimes) {
		dts[0] = dst.st_atim;
		dts[1] = dst.st_mtim;
		(void)store_futimens(dirfd, dts);
	}
	pthread_mutex_lock(&v->files_lock);
	ofile_unlink(v, of);
	pthread_cond_broadcast(&v->files_cond);
	pthread_mutex_unlock(&v->files_lock);
	ofile_free(of);
	return r;
}

bool vault_ofile_sole(struct vault *v, struct vault_ofile *of)
{
	bool sole;

	pthread_mutex_lock(&v->files_lock);
	sole = of->refs == 1;
	pthread_mutex_unlock(&v->files_lock);
	return sole;
}

void vault_times_restore(int dirfd, const char *sname, const struct stat *before)
{
	struct timespec ts[2] = { before->st_atim, before->st_mtim };

	(void)store_utimensat(dirfd, sname, ts);
}

/* ---- attributes ---- */

static void stat_from_attr(struct stat *st, const struct vf_attr *a)
{
	st->st_ino = vault_id_ino(a->file_id);
	st->st_mode = a->mode;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_size = (off_t)a->size;
	st->st_rdev = a->rdev;
}

/* Stat of the non-directory sname in dirfd. */
static int file_stat_at(struct vault *v, int dirfd, const char *sname, struct stat *st)
{
	struct vault_ofile *of = NULL;
	struct vf_attr a;
	int r;

	r = vault_ofile_get(v, dirfd, sname, false, st, &of);
	if (r < 0)
		return r;
	if (of) {
		/* Open: the engine's in-memory size is the truth. */
		r = vf_getattr(of->f, &a);
		if (r == 0)
			r = store_fstat(vf_fd(of->f), st);
		(void)vault_ofile_put(v, of, -1, NULL);
	} else {
		r = vf_stat_at(v->kr, dirfd, sname, &a);
	}
	if (r < 0)
		return r;
	stat_from_attr(st, &a);
	return 0;
}

int vault_entry_stat(struct vault *v, struct vault_dir *d, const char *path, const char *sname,
		     struct stat *st)
{
	struct vault_dir *cd = NULL;
	int r;

	r = store_fstatat(d->fd, sname, st);
	if (r < 0)
		return r;
	if (!S_ISDIR(st->st_mode))
		return file_stat_at(v, d->fd, sname, st);
	r = vault_dir_get(v, path, &cd);
	if (r < 0)
		return r;
	r = vault_dir_stat(cd, st);
	vault_dir_put(v, cd);
	return r;
}

int vault_loc_stat(struct vault *v, struct vault_loc *loc, struct stat *st)
{
	if (!loc->dir)
		return vault_dir_stat(v->root, st);
	return vault_entry_stat(v, loc->dir, loc->path, loc->sn.name, st);
}

int vault_getattr(struct vault *v, const struct vault_caller *c, const char *path, struct stat *st)
{
	struct vault_loc loc;
	int r;

	pthread_rwlock_rdlock(&v->ns);
	r = vault_loc_get_as(v, c, path, &loc);
	if (r == 0) {
		r = vault_loc_stat(v, &loc, st);
		vault_loc_put(v, &loc);
	}
	pthread_rwlock_unlock(&v->ns);
	return vault_audit_path(v, c, 0, path, NULL, "lookup", r);
}

int vault_fgetattr(struct vault *v, struct vault_handle *h, struct stat *st)
{
	struct vf_attr a;
	int r;

	r = vf_getattr(h->of->f, &a);
	if (r == 0)
		r = store_fstat(vf_fd(h->of->f), st);
	if (r < 0)
		return r;
	stat_from_attr(st, &a);
	return 0;
}

/* The directory the path names, if it names one: 1 and *d, 0 if it names
 * something else. */
static int loc_dir(struct vault *v, struct vault_loc *loc, struct vault_dir **d)
{
	struct stat st;
	int r;

	*d = NULL;
	if (!loc->dir) {
		r = vault_dir_get(v, "/", d);
		return r < 0 ? r : 1;
	}
	r = store_fstatat(loc->dir->fd, loc->sn.name, &st);
	if (r < 0)
		return r;
	if (!S_ISDIR(st.st_mode))
		return 0;
	r = vault_dir_get(v, loc->path, d);
	return r < 0 ? r : 1;
}

/* A copy of an xattr from a blob, malloc'd. @return its length or -errno. */
static ssize_t blob_get_alloc(const unsigned char *blob, size_t len, const char *name, void **out)
{
	ssize_t n;

	*out = NULL;
	if (!blob)
		return -ENODATA;
	n = fmt_xattr_get(blob, len, name, NULL, 0);
	if (n < 0)
		return n;
	*out = malloc((size_t)n + 1);
	if (!*out)
		return -ENOMEM;
	n = fmt_xattr_get(blob, len, name, *out, (size_t)n);
	if (n < 0) {
		free(*out);
		*out = NULL;
	}
	return n;
}

/* Change a directory's mode and owner; an access ACL follows the mode. */
static int dir_chmod_chown(struct vault *v, struct vault_dir *d, uint32_t mode, uint32_t uid,
			   uint32_t gid)
{
	struct vault_dir nd = *d;
	unsigned char *blob = NULL;
	void *acl = NULL;
	ssize_t n;
	int r = 0;

	/* Nothing changes (tar as root chowns every folder it makes to its
	 * maker): no metadata rewrite, no fsyncs. A chmod to the same mode
	 * still goes on when an access ACL may need its mask set from it. */
	if ((uid == (uint32_t)-1 || d->uid == uid) && (gid == (uint32_t)-1 || d->gid == gid) &&
	    (mode == (uint32_t)-1 ||
	     ((d->mode & 07777) == (mode & 07777) &&
	      (!d->xattrs ||
	       fmt_xattr_get(d->xattrs, d->xattrs_len, VAULT_XATTR_ACL_ACCESS, NULL, 0) < 0))))
		return 0;
	if (mode != (uint32_t)-1) {
		nd.mode = (d->mode & S_IFMT) | (mode & 07777);
		n = blob_get_alloc(d->xattrs, d->xattrs_len, VAULT_XATTR_ACL_ACCESS, &acl);
		if (n > 0 && vault_acl_chmod(acl, (size_t)n, mode) == 0) {
			blob = malloc(d->xattrs_len);
			if (!blob) {
				r = -ENOMEM;
				goto out;
			}
			memcpy(blob, d->xattrs, d->xattrs_len);
			nd.xattrs = blob;
			r = fmt_xattr_set(&nd.xattrs, &nd.xattrs_len, VAULT_XATTR_ACL_ACCESS, acl,
					  (size_t)n, 0);
			blob = nd.xattrs;
			if (r < 0)
				goto out;
		}
	}
	if (uid != (uint32_t)-1)
		nd.uid = uid;
	if (gid != (uint32_t)-1)
		nd.gid = gid;
	r = vault_dir_commit(v, d, &nd);
	if (r == 0)
		blob = NULL; /* d owns it now */
out:
	free(blob);
	free(acl);
	return r;
}

static int file_chmod_chown(struct vf_file *f, uint32_t mode, uint32_t uid, uint32_t gid)
{
	unsigned char acl[VAULT_XATTR_VALUE_MAX];
	ssize_t n;
	int r;

	r = vf_chmod_chown(f, mode == (uint32_t)-1 ? mode : (mode & 07777), uid, gid);
	if (r < 0 || mode == (uint32_t)-1)
		return r;
	n = vf_getxattr(f, VAULT_XATTR_ACL_ACCESS, acl, sizeof(acl));
	if (n <= 0)
		return 0;
	if (vault_acl_chmod(acl, (size_t)n, mode) < 0)
		return 0;
	return vf_setxattr(f, VAULT_XATTR_ACL_ACCESS, acl, (size_t)n, 0);
}

static int node_chmod_chown(struct vault *v, const char *path, uint32_t mode, uint32_t uid,
			    uint32_t gid)
{
	struct vault_ofile *of = NULL;
	struct vault_dir *d = NULL;
	struct vault_loc loc;
	struct stat st;
	bool sole;
	int r, e;

	if (vault_ro(v))
		return -EROFS;
	pthread_rwlock_wrlock(&v->ns);
	r = vault_loc_get(v, path, &loc);
	if (r < 0)
		goto unlock;
	r = loc_dir(v, &loc, &d);
	if (r < 0)
		goto out;
	if (r == 1) {
		r = dir_chmod_chown(v, d, mode, uid, gid);
		goto out;
	}
	r = vault_ofile_get(v, loc.dir->fd, loc.sn.name, true, &st, &of);
	if (r < 0)
		goto out;
	sole = vault_ofile_sole(v, of);
	r = file_chmod_chown(of->f, mode, uid, gid);
	e = vault_ofile_put(v, of, loc.dir->fd, loc.sn.name);
	if (r == 0)
		r = e;
	if (r == 0 && sole)
		vault_times_restore(loc.dir->fd, loc.sn.name, &st);
out:
	vault_dir_put(v, d);
	vault_loc_put(v, &loc);
unlock:
	pthread_rwlock_unlock(&v->ns);
	return r;
}

int vault_chmod(struct vault *v, const struct vault_caller *c, const char *path, mode_t mode)
{
	return vault_audit_chmod(v, c, path, mode,
				 node_chmod_chown(v, path, mode & 07777, (uint32_t)-1, (uint32_t)-1));
}

int vault_chown(struct vault *v, const struct vault_caller *c, const char *path, uid_t uid, gid_t gid)
{
	return vault_audit_chown(v, c, path, uid, gid,
				 node_chmod_chown(v, path, (uint32_t)-1, (uint32_t)uid, (uint32_t)gid));
}

int vault_utimens(struct vault *v, const struct vault_caller *c, const char *path,
		  const struct timespec ts[2])
{
	struct vault_ofile *of = NULL;
	struct vault_dir *d = NULL;
	struct vault_loc loc;
	struct stat st;
	int r;

	if (vault_ro(v))
		return -EROFS;
	pthread_rwlock_rdlock(&v->ns);
	r = vault_loc_get(v, path, &loc);
	if (r < 0)
		goto unlock;
	r = loc_dir(v, &loc, &d);
	if (r < 0)
		goto out;
	if (r == 1) {
		r = store_futimens(d->fd, ts);
		goto out;
	}
	r = vault_ofile_get(v, loc.dir->fd, loc.sn.name, false, &st, &of);
	if (r < 0)
		goto out;
	if (of) {
		/* Seal what is pending first (no sync: times are not durable
		 * until an fsync either), so that closing the file later
		 * does not move the times set here. */
		r = vf_seal(of->f);
		if (r == 0)
			r = store_futimens(vf_fd(of->f), ts);
		if (r == 0)
			ofile_mtime_set(of, ts);
		(void)vault_ofile_put(v, of, -1, NULL);
	} else {
		r = store_utimensat(loc.dir->fd, loc.sn.name, ts);
	}
out:
	vault_dir_put(v, d);
	vault_loc_put(v, &loc);
unlock:
	pthread_rwlock_unlock(&v->ns);
	return vault_audit_path(v, c, 0, path, NULL, "utimens", r); /* see docs/audit.md */
}

int vault_truncate(struct vault *v, const struct vault_caller *c, const char *path, uint64_t size)
{
	struct vault_ofile *of = NULL;
	struct vault_loc loc;
	struct vf_attr a;
	struct stat st;
	int r, e;

	if (vault_ro(v))
		return -EROFS;
	pthread_rwlock_rdlock(&v->ns);
	r = vault_loc_get_as(v, c, path, &loc);
	if (r < 0)
		goto unlock;
	if (!loc.dir) {
		r = -EISDIR;
		goto out;
	}
	r = vault_ofile_get(v, loc.dir->fd, loc.sn.name, true, &st, &of);
	if (r < 0)
		goto out;
	r = vf_getattr(of->f, &a);
	if (r == 0 && !S_ISREG(a.mode))
		r = -EINVAL;
	if (r == 0)
		r = vf_truncate(of->f, size);
	e = vault_ofile_put(v, of, loc.dir->fd, loc.sn.name);
	if (r == 0)
		r = e;
out:
	vault_loc_put(v, &loc);
unlock:
	pthread_rwlock_unlock(&v->ns);
	return vault_audit_truncate(v, c, path, size, r);
}

/* ---- names ---- */

int vault_unlink(struct vault *v, const struct vault_caller *c, const char *path)
{
	struct vault_loc loc;
	struct stat st;
	int r;

	if (vault_ro(v))
		return -EROFS;
	pthread_rwlock_wrlock(&v->ns);
	r = vault_loc_get_as(v, c, path, &loc);
	if (r < 0)
		goto unlock;
	if (!loc.dir) {
		r = -EISDIR;
		goto out;
	}
	r = store_fstatat(loc.dir->fd, loc.sn.name, &st);
	if (r < 0)
		goto out;
	if (S_ISDIR(st.st_mode)) {
		r = -EISDIR;
		goto out;
	}
	r = store_unlinkat(loc.dir->fd, loc.sn.name, 0);
	if (r < 0)
		goto out;
	vault_sidecar_remove(loc.dir->fd, &loc.sn);
out:
	vault_loc_put(v, &loc);
unlock:
	pthread_rwlock_unlock(&v->ns);
	return vault_audit_path(v, c, AUDIT_EV_UNLINK, path, NULL, "unlink", r);
}

static bool path_below(const char *p, const char *top)
{
	size_t n = strlen(top);

	if (strcmp(top, "/") == 0)
		return p[1] != '\0';
	return strncmp(p, top, n) == 0 && p[n] == '/';
}

int vault_rename(struct vault *v, const struct vault_caller *c, const char *from, const char *to,
		 unsigned flags)
{
	struct vault_loc *fl = NULL, *tl = NULL;
	bool have_fl = false, have_tl = false, sidecar = false, have_hidden = false;
	struct vault_dir *td = NULL;
	char hidden[FMT_NAME_MAX + 1];
	struct stat fst, tst;
	int r, tr;

	if (vault_ro(v))
		return -EROFS;
	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE))
		return -EINVAL;
	fl = malloc(sizeof(*fl));
	tl = malloc(sizeof(*tl));
	if (!fl || !tl) {
		free(fl);
		free(tl);
		return -ENOMEM;
	}
	pthread_rwlock_wrlock(&v->ns);
	r = vault_loc_get_as(v, c, from, fl);
	if (r < 0)
		goto out;
	have_fl = true;
	r = vault_loc_get_as(v, c, to, tl);
	if (r < 0)
		goto out;
	have_tl = true;
	if (!fl->dir || !tl->dir) {
		r = -EBUSY;
		goto out;
	}
	r = store_fstatat(fl->dir->fd, fl->sn.name, &fst);
	if (r < 0)
		goto out;
	tr = store_fstatat(tl->dir->fd, tl->sn.name, &tst);
	if (tr < 0 && tr != -ENOENT) {
		r = tr;
		goto out;
	}
	/* A directory cannot move below itself. */
	if (S_ISDIR(fst.st_mode) && path_below(tl->path, fl->path)) {
		r = -EINVAL;
		goto out;
	}
	if (tr == 0 && S_ISDIR(tst.st_mode) && path_below(fl->path, tl->path)) {
		r = (flags & RENAME_EXCHANGE) ? -EINVAL : -ENOTEMPTY;
		goto out;
	}

	if (flags & RENAME_EXCHANGE) {
		/* Both names stay; each keeps its store name and sidecar. */
		if (tr < 0) {
			r = -ENOENT;
			goto out;
		}
		r = store_renameat(fl->dir->fd, fl->sn.name, tl->dir->fd, tl->sn.name,
				   RENAME_EXCHANGE);
		if (r == 0) {
			vault_dcache_drop(v, fl->path);
			vault_dcache_drop(v, tl->path);
		}
		goto out;
	}
	if (tr == 0 && (flags & RENAME_NOREPLACE)) {
		r = -EEXIST;
		goto out;
	}
	if (tr == 0 && fst.st_dev == tst.st_dev && fst.st_ino == tst.st_ino) {
		r = 0; /* the same file (or a hard link of it): nothing to do */
		goto out;
	}
	if (tr == 0 && S_ISDIR(fst.st_mode) != S_ISDIR(tst.st_mode)) {
		r = S_ISDIR(fst.st_mode) ? -ENOTDIR : -EISDIR;
		goto out;
	}
	if (tr == 0 && S_ISDIR(tst.st_mode)) {
		/* The store cannot replace a directory holding .sr-dir: check
		 * it is empty as plaintext and move it out of sight; it goes
		 * once the rename is done, or comes back if it fails. */
		r = vault_dir_get(v, tl->path, &td);
		if (r < 0)
			goto out;
		r = vault_dir_empty(td->fd, true);
		if (r <= 0) {
			r = r < 0 ? r : -ENOTEMPTY;
			goto out;
		}
		vault_tmp_dir_name(hidden);
		r = store_renameat(tl->dir->fd, tl->sn.name, tl->dir->fd, hidden, RENAME_NOREPLACE);
		if (r < 0)
			goto out;
		have_hidden = true;
	}
	r = vault_policy_rename_prepare(v, fl, tl, tr == 0);
	if (r < 0)
		goto out;
	if (tr < 0) {
		r = vault_sidecar_write(tl->dir->fd, &tl->sn);
		if (r < 0)
			goto out;
		sidecar = true;
	}
	r = store_renameat(fl->dir->fd, fl->sn.name, tl->dir->fd, tl->sn.name,
			   flags & RENAME_NOREPLACE);
	if (r < 0)
		goto out;
	if (have_hidden)
		vault_tmp_dir_remove(tl->dir->fd, hidden);
	have_hidden = false;
	sidecar = false;
	vault_sidecar_remove(fl->dir->fd, &fl->sn);
	vault_dcache_drop(v, fl->path);
	vault_dcache_drop(v, tl->path);
	(void)vault_policy_rename_done(v, tl);
out:
	if (have_hidden)
		(void)store_renameat(tl->dir->fd, hidden, tl->dir->fd, tl->sn.name,
				     RENAME_NOREPLACE);
	if (sidecar)
		vault_sidecar_remove(tl->dir->fd, &tl->sn);
	vault_dir_put(v, td);
	if (have_tl)
		vault_loc_put(v, tl);
	if (have_fl)
		vault_loc_put(v, fl);
	pthread_rwlock_unlock(&v->ns);
	free(fl);
	free(tl);
	return vault_audit_path(v, c, AUDIT_EV_RENAME, from, to, "rename", r);
}

int vault_link(struct vault *v, const struct vault_caller *c, const char *from, const char *to)
{
	struct vault_loc *fl = NULL, *tl = NULL;
	bool have_fl = false, have_tl = false;
	struct stat st;
	int r;

	if (vault_ro(v))
		return -EROFS;
	fl = malloc(sizeof(*fl));
	tl = malloc(sizeof(*tl));
	if (!fl || !tl) {
		free(fl);
		free(tl);
		return -ENOMEM;
	}
	pthread_rwlock_wrlock(&v->ns);
	r = vault_loc_get_as(v, c, from, fl);
	if (r < 0)
		goto out;
	have_fl = true;
	r = vault_loc_get_as(v, c, to, tl);
	if (r < 0)
		goto out;
	have_tl = true;
	if (!fl->dir) {
		r = -EPERM;
		goto out;
	}
	if (!tl->dir) {
		r = -EEXIST;
		goto out;
	}
	r = store_fstatat(fl->dir->fd, fl->sn.name, &st);
	if (r < 0)
		goto out;
	if (S_ISDIR(st.st_mode)) {
		r = -EPERM;
		goto out;
	}
	r = store_fstatat(tl->dir->fd, tl->sn.name, &st);
	if (r == 0) {
		r = -EEXIST;
		goto out;
	}
	if (r != -ENOENT)
		goto out;
	r = vault_policy_rename_prepare(v, fl, tl, false);
	if (r < 0)
		goto out;
	r = vault_sidecar_write(tl->dir->fd, &tl->sn);
	if (r < 0)
		goto out;
	r = store_linkat(fl->dir->fd, fl->sn.name, tl->dir->fd, tl->sn.name);
	if (r < 0)
		vault_sidecar_remove(tl->dir->fd, &tl->sn);
out:
	if (have_tl)
		vault_loc_put(v, tl);
	if (have_fl)
		vault_loc_put(v, fl);
	pthread_rwlock_unlock(&v->ns);
	free(fl);
	free(tl);
	return vault_audit_path(v, c, AUDIT_EV_LINK, from, to, "link", r);
}

/* Make a new non-directory at loc (v->ns exclusive): sidecar, engine file,
 * inherited ACL. @return 0 and *out (owned), or -errno with nothing left. */
static int node_make(struct vault *v, const struct vault_caller *c, struct vault_loc *loc,
		     mode_t type, mode_t mode, struct vf_file **out)
{
	void *acc = NULL, *dflt = NULL;
	size_t acc_len = 0, dflt_len = 0;
	struct vf_file *f = NULL;
	struct stat st;
	uint32_t gid;
	mode_t perm;
	int r;

	*out = NULL;
	if (!loc->dir)
		return -EEXIST;
	r = store_fstatat(loc->dir->fd, loc->sn.name, &st);
	if (r == 0)
		return -EEXIST;
	if (r != -ENOENT)
		return r;
	if (type == S_IFLNK) {
		perm = 0777;
		gid = (loc->dir->mode & S_ISGID) ? loc->dir->gid : c->gid;
	} else {
		r = vault_new_mode(v, c, loc->dir, mode, false, &perm, &gid, &acc, &acc_len, &dflt,
				   &dflt_len);
		if (r < 0)
			goto out;
	}
	r = vault_sidecar_write(loc->dir->fd, &loc->sn);
	if (r < 0)
		goto out;
	r = vf_create(v->kr, loc->dir->fd, loc->sn.name, loc->dir->level, type | perm, c->uid,
		      gid, &f);
	if (r < 0) {
		vault_sidecar_remove(loc->dir->fd, &loc->sn);
		goto out;
	}
	if (acc)
		r = vf_setxattr(f, VAULT_XATTR_ACL_ACCESS, acc, acc_len, 0);
	if (r < 0) {
		(void)vf_close(f);
		(void)store_unlinkat(loc->dir->fd, loc->sn.name, 0);
		vault_sidecar_remove(loc->dir->fd, &loc->sn);
		goto out;
	}
	*out = f;
out:
	free(acc);
	free(dflt);
	return r;
}

int vault_symlink(struct vault *v, const struct vault_caller *c, const char *target, const char *path)
{
	struct vf_file *f = NULL;
	struct vault_loc loc;
	size_t len = strlen(target);
	ssize_t n;
	int r, e;

	if (vault_ro(v))
		return -EROFS;
	if (len == 0)
		return -ENOENT;
	if (len > VAULT_SYMLINK_MAX)
		return -ENAMETOOLONG;
	pthread_rwlock_wrlock(&v->ns);
	r = vault_loc_get_as(v, c, path, &loc);
	if (r < 0)
		goto unlock;
	r = node_make(v, c, &loc, S_IFLNK, 0777, &f);
	if (r < 0)
		goto out;
	n = vf_write(f, target, len, 0);
	r = n < 0 ? (int)n : (size_t)n == len ? 0 : -EIO;
	e = vf_close(f);
	if (r == 0)
		r = e;
	if (r < 0) {
		(void)store_unlinkat(loc.dir->fd, loc.sn.name, 0);
		vault_sidecar_remove(loc.dir->fd, &loc.sn);
	}
out:
	vault_loc_put(v, &loc);
unlock:
	pthread_rwlock_unlock(&v->ns);
	return vault_audit_path(v, c, AUDIT_EV_CREATE, path, target, "symlink", r);
}

/* The target is copied NUL-terminated, truncated to cap - 1 bytes; the
 * return value is the number of bytes copied before the NUL. */
ssize_t vault_readlink(struct vault *v, const struct vault_caller *c, const char *path, char *buf,
		       size_t cap)
{
	struct vf_file *f = NULL;
	struct vault_loc loc;
	struct vf_attr a;
	ssize_t n = 0;
	int r;

	if (cap == 0)
		return -EINVAL;
	pthread_rwlock_rdlock(&v->ns);
	r = vault_loc_get_as(v, c, path, &loc);
	if (r < 0)
		goto unlock;
	if (!loc.dir) {
		r = -EINVAL;
		goto out;
	}
	/* Symlinks never change after symlink(), so a private read-only
	 * vf_file is safe even if the table has one. */
	r = vf_open(v->kr, loc.dir->fd, loc.sn.name, false, &f);
	if (r == -EISDIR)
		r = -EINVAL;
	if (r < 0)
		goto out;
	r = vf_getattr(f, &a);
	if (r == 0 && !S_ISLNK(a.mode))
		r = -EINVAL;
	if (r < 0)
		goto out;
	n = vf_read(f, buf, cap - 1, 0);
	if (n < 0) {
		r = (int)n;
		goto out;
	}
	buf[n] = '\0';
out:
	(void)vf_close(f);
	vault_loc_put(v, &loc);
unlock:
	pthread_rwlock_unlock(&v->ns);
	return r < 0 ? vault_audit_path(v, c, 0, path, NULL, "readlink", r) : n;
}

int vault_mknod(struct vault *v, const struct vault_caller *c, const char *path, mode_t mode, dev_t rdev)
{
	struct vf_file *f = NULL;
	struct vault_loc loc;
	mode_t type = mode & S_IFMT;
	int r;

	if (vault_ro(v))
		return -EROFS;
	if (type == 0)
		type = S_IFREG;
	/* Device nodes are kept like fifos (a sealed mode and rdev, no content);
	 * the kernel mounts FUSE nodev, so they never open a device, and only a
	 * caller with CAP_MKNOD gets this far. */
	if (type != S_IFREG && type != S_IFIFO && type != S_IFSOCK && type != S_IFBLK &&
	    type != S_IFCHR)
		return vault_audit_path(v, c, 0, path, NULL, "mknod", -EINVAL);
	pthread_rwlock_wrlock(&v->ns);
	r = vault_loc_get_as(v, c, path, &loc);
	if (r < 0)
		goto unlock;
	r = node_make(v, c, &loc, type, mode & 07777, &f);
	if (r < 0)
		goto out;
	if (type == S_IFBLK || type == S_IFCHR)
		(void)vf_set_rdev(f, (uint32_t)rdev);
	r = vf_close(f);
	if (r < 0) {
		(void)store_unlinkat(loc.dir->fd, loc.sn.name, 0);
		vault_sidecar_remove(loc.dir->fd, &loc.sn);
	}
out:
	vault_loc_put(v, &loc);
unlock:
	pthread_rwlock_unlock(&v->ns);
	return vault_audit_path(v, c, AUDIT_EV_CREATE, path, NULL, "mknod", r);
}

/* ---- open files ---- */

static bool flags_write(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY;
}

static int handle_new(struct vault_ofile *of, struct vault *v, const char *path, int flags,
		      struct vault_handle **out)
{
	struct vault_handle *h = calloc(1, sizeof(*h));

	if (!h)
		return -ENOMEM;
	h->path = strdup(path);
	if (!h->path) {
		free(h);
		return -ENOMEM;
	}
	h->v = v;
	h->of = of;
	h->flags = flags;
	*out = h;
	return 0;
}

/* Open the existing file at loc (v->ns held). */
static int open_at_loc(struct vault *v, struct vault_loc *loc, int flags, struct vault_handle **out)
{
	struct vault_ofile *of = NULL;
	struct vf_attr a;
	struct stat st;
	int r;

	if (!loc->dir)
		return -EISDIR;
	r = vault_ofile_get(v, loc->dir->fd, loc->sn.name, true, &st, &of);
	if (r < 0)
		return r;
	r = vf_getattr(of->f, &a);
	if (r == 0 && S_ISLNK(a.mode))
		r = -ELOOP;
	else if (r == 0 && !S_ISREG(a.mode))
		r = -ENXIO;
	if (r == 0 && (flags & O_TRUNC) && flags_write(flags))
		r = vf_truncate(of->f, 0);
	if (r == 0)
		r = handle_new(of, v, loc->path, flags, out);
	if (r < 0)
		(void)vault_ofile_put(v, of, -1, NULL);
	return r;
}

int vault_open_file(struct vault *v, const struct vault_caller *c, const char *path, int flags,
		    struct vault_handle **out)
{
	struct vault_loc loc;
	int r;

	*out = NULL;
	if (vault_ro(v) && (flags_write(flags) || (flags & O_TRUNC)))
		return -EROFS;
	r = vault_watch_open_check(v, c); /* a frozen user */
	if (r < 0)
		return vault_audit_opened(v, c, path, flags, false, r, out);
	pthread_rwlock_rdlock(&v->ns);
	r = vault_loc_get_as(v, c, path, &loc);
	if (r == 0) {
		r = open_at_loc(v, &loc, flags, out);
		if (r == 0)
			r = vault_policy_open_check(v, c, &loc, out);
		vault_loc_put(v, &loc);
	}
	pthread_rwlock_unlock(&v->ns);
	return vault_audit_opened(v, c, path, flags, false, r, out);
}

int vault_create(struct vault *v, const struct vault_caller *c, const char *path, mode_t mode, int flags,
		 struct vault_handle **out)
{
	struct vault_ofile *of = NULL;
	struct vf_file *f = NULL;
	struct vault_loc loc;
	struct stat st;
	int r;

	*out = NULL;
	if (vault_ro(v))
		return -EROFS;
	r = vault_watch_open_check(v, c); /* a frozen user */
	if (r < 0)
		return vault_audit_opened(v, c, path, flags, true, r, out);
	pthread_rwlock_wrlock(&v->ns);
	r = vault_loc_get_as(v, c, path, &loc);
	if (r < 0)
		goto unlock;
	if (!loc.dir) {
		r = (flags & O_EXCL) ? -EEXIST : -EISDIR;
		goto out;
	}
	r = store_fstatat(loc.dir->fd, loc.sn.name, &st);
	if (r == 0) {
		if (flags & O_EXCL)
			r = -EEXIST;
		else if (S_ISDIR(st.st_mode))
			r = -EISDIR;
		else
			r = open_at_loc(v, &loc, flags & ~O_CREAT, out); /* audit: not created */
		goto out;
	}
	if (r != -ENOENT)
		goto out;
	r = node_make(v, c, &loc, S_IFREG, mode & 07777, &f);
	if (r < 0)
		goto out;
	r = ofile_adopt(v, f, &of);
	if (r < 0) {
		(void)vf_close(f);
		goto out;
	}
	r = handle_new(of, v, loc.path, flags | O_CREAT, out);
	if (r < 0)
		(void)vault_ofile_put(v, of, -1, NULL);
out:
	if (r == 0)
		r = vault_policy_open_check(v, c, &loc, out);
	vault_loc_put(v, &loc);
unlock:
	pthread_rwlock_unlock(&v->ns);
	return vault_audit_opened(v, c, path, flags, true, r, out);
}

ssize_t vault_read(struct vault_handle *h, void *buf, size_t n, uint64_t off)
{
	ssize_t r;

	if ((h->flags & O_ACCMODE) == O_WRONLY)
		return -EBADF;
	r = vault_watch_enter(h); /* a locked level */
	if (r < 0)
		return vault_audit_read(h, off, r);
	r = vault_audit_read(h, off, vf_read(h->of->f, buf, n, off));
	vault_watch_leave(h);
	return r;
}

ssize_t vault_write(struct vault_handle *h, const void *buf, size_t n, uint64_t off)
{
	struct vf_attr a;
	ssize_t r;

	if (!flags_write(h->flags))
		return -EBADF;
	if (vault_ro(h->v))
		return -EROFS;
	r = vault_watch_enter(h); /* a locked level */
	if (r < 0)
		return vault_audit_write(h, off, r);
	__atomic_store_n(&h->of->written, true, __ATOMIC_RELAXED);
	if (!(h->flags & O_APPEND)) {
		r = vault_audit_write(h, off, vf_write(h->of->f, buf, n, off));
		vault_watch_leave(h);
		return r;
	}
	/* O_APPEND: the end of file and the write are one step. */
	pthread_mutex_lock(&h->of->append_lock);
	r = vf_getattr(h->of->f, &a);
	if (r == 0)
		r = vault_audit_write(h, a.size, vf_write(h->of->f, buf, n, a.size));
	pthread_mutex_unlock(&h->of->append_lock);
	vault_watch_leave(h);
	return r;
}

int vault_ftruncate(struct vault_handle *h, uint64_t size)
{
	if (vault_ro(h->v))
		return -EROFS;
	int r;

	if (!flags_write(h->flags))
		return -EBADF;
	r = vault_watch_enter(h);
	if (r < 0)
		return vault_audit_ftruncate(h, size, r);
	__atomic_store_n(&h->of->written, true, __ATOMIC_RELAXED);
	r = vault_audit_ftruncate(h, size, vf_truncate(h->of->f, size));
	vault_watch_leave(h);
	return r;
}

int vault_flush(struct vault_handle *h)
{
	/* Handles of one file share its vf_file: nothing to hand over. */
	return 0;
}

int vault_fsync(struct vault_handle *h, bool datasync)
{
	int r;

	if (vault_ro(h->v))
		return 0;
	r = vault_watch_enter(h);
	if (r < 0)
		return r;
	r = vf_fsync(h->of->f, datasync);
	if (r == 0)
		r = ofile_mtime_keep(h->v, h->of);
	vault_watch_leave(h);
	return r;
}

int vault_fallocate(struct vault_handle *h, int mode, uint64_t off, uint64_t len)
{
	if (vault_ro(h->v))
		return -EROFS;
	int r;

	if (!flags_write(h->flags))
		return -EBADF;
	r = vault_watch_enter(h);
	if (r < 0)
		return r;
	__atomic_store_n(&h->of->written, true, __ATOMIC_RELAXED);
	r = vf_fallocate(h->of->f, mode, off, len);
	vault_watch_leave(h);
	return r;
}

off_t vault_lseek(struct vault_handle *h, off_t off, int whence)
{
	return vf_lseek(h->of->f, off, whence);
}

int vault_release(struct vault *v, struct vault_handle *h)
{
	struct vault_loc loc;
	int r;

	if (!h)
		return 0;
	(void)vault_audit_release(v, h); /* a failure is logged; the close goes on */
	pthread_rwlock_rdlock(&v->ns);
	/* Where the file is named now, if still where it was opened: the
	 * last close may compact it there. */
	if (vault_loc_get(v, h->path, &loc) == 0) {
		r = vault_ofile_put(v, h->of, loc.dir ? loc.dir->fd : -1, loc.sn.name);
		vault_loc_put(v, &loc);
	} else {
		r = vault_ofile_put(v, h->of, -1, NULL);
	}
	pthread_rwlock_unlock(&v->ns);
	free(h->path);
	free(h);
	return r;
}

/* ---- files without a name (vault.h: vault_file_hold) ---- */

int vault_file_hold(struct vault *v, const char *path, struct vault_handle **out)
{
	struct vault_ofile *of = NULL;
	struct vault_loc loc;
	struct stat st;
	int r;

	*out = NULL;
	pthread_rwlock_rdlock(&v->ns);
	r = vault_loc_get(v, path, &loc);
	if (r < 0)
		goto unlock;
	if (!loc.dir) {
		r = -EISDIR;
		goto out;
	}
	r = vault_ofile_get(v, loc.dir->fd, loc.sn.name, true, &st, &of);
	if (r < 0)
		goto out;
	r = handle_new(of, v, loc.path, vault_ro(v) ? O_RDONLY : O_RDWR, out);
	if (r < 0)
		(void)vault_ofile_put(v, of, -1, NULL);
out:
	vault_loc_put(v, &loc);
unlock:
	pthread_rwlock_unlock(&v->ns);
	return r;
}

int vault_file_reopen(struct vault *v, const struct vault_caller *c, struct vault_handle *h,
		      int flags, struct vault_handle **out)
{
	struct vault_ofile *of = h->of;
	struct vf_attr a;
	int r;

	*out = NULL;
	if (vault_ro(v) && (flags_write(flags) || (flags & O_TRUNC)))
		return -EROFS;
	r = vault_watch_open_check(v, c); /* a frozen user */
	if (r < 0)
		return vault_audit_opened(v, c, h->path, flags, false, r, out);
	pthread_rwlock_rdlock(&v->ns);
	/* h's reference keeps of open (never OPENING or CLOSING under it). */
	pthread_mutex_lock(&v->files_lock);
	of->refs++;
	pthread_mutex_unlock(&v->files_lock);
	r = vault_watch_file_locked(v, of->f) ? -ENOKEY : vf_getattr(of->f, &a);
	if (r == 0 && S_ISLNK(a.mode))
		r = -ELOOP;
	else if (r == 0 && !S_ISREG(a.mode))
		r = -ENXIO;
	if (r == 0)
		r = vault_policy_check(v, c, h->path, a.level);
	if (r == 0 && (flags & O_TRUNC) && flags_write(flags))
		r = vf_truncate(of->f, 0);
	if (r == 0)
		r = handle_new(of, v, h->path, flags, out);
	if (r < 0)
		(void)vault_ofile_put(v, of, -1, NULL);
	pthread_rwlock_unlock(&v->ns);
	return vault_audit_opened(v, c, h->path, flags, false, r, out);
}

static int handle_chmod_chown(struct vault *v, struct vault_handle *h, uint32_t mode, uint32_t uid,
			      uint32_t gid)
{
	int r;

	if (vault_ro(v))
		return -EROFS;
	r = vault_watch_enter(h); /* a locked level */
	if (r < 0)
		return r;
	r = file_chmod_chown(h->of->f, mode, uid, gid);
	vault_watch_leave(h);
	return r;
}

int vault_fchmod(struct vault *v, const struct vault_caller *c, struct vault_handle *h, mode_t mode)
{
	return vault_audit_chmod(v, c, h->path, mode,
				 handle_chmod_chown(v, h, mode & 07777, (uint32_t)-1, (uint32_t)-1));
}

int vault_fchown(struct vault *v, const struct vault_caller *c, struct vault_handle *h, uid_t uid,
		 gid_t gid)
{
	return vault_audit_chown(v, c, h->path, uid, gid,
				 handle_chmod_chown(v, h, (uint32_t)-1, (uint32_t)uid, (uint32_t)gid));
}

int vault_file_truncate(struct vault *v, const struct vault_caller *c, struct vault_handle *h,
		       uint64_t size)
{
	struct vf_attr a;
	int r;

	if (vault_ro(v))
		return -EROFS;
	r = vault_watch_enter(h);
	if (r == 0) {
		r = vf_getattr(h->of->f, &a);
		if (r == 0 && !S_ISREG(a.mode))
			r = -EINVAL;
		if (r == 0)
			r = vf_truncate(h->of->f, size);
		vault_watch_leave(h);
	}
	return vault_audit_truncate(v, c, h->path, size, r);
}

int vault_futimens(struct vault *v, const struct vault_caller *c, struct vault_handle *h,
		   const struct timespec ts[2])
{
	int r;

	if (vault_ro(v))
		return -EROFS;
	r = vault_watch_enter(h);
	if (r == 0) {
		/* As vault_utimens: what is pending is sealed first. */
		r = vf_seal(h->of->f);
		if (r == 0)
			r = store_futimens(vf_fd(h->of->f), ts);
		if (r == 0)
			ofile_mtime_set(h->of, ts);
		vault_watch_leave(h);
	}
	return vault_audit_path(v, c, 0, h->path, NULL, "utimens", r); /* see docs/audit.md */
}
