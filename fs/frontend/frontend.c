/* frontend.c - the FUSE frontend: kernel requests to vault calls.
 *
 * The only file in Strongroom that includes FUSE headers. It uses libfuse's
 * high-level path API, which matches vault.h: each operation below builds
 * the caller's identity, makes exactly one vault call and returns one reply.
 *
 * Invariants:
 * 1. Every open reaches the driver (no FUSE_CAP_NO_OPEN_SUPPORT), so the
 *    vault can audit it even when the kernel then serves reads from its
 *    page cache.
 * 2. Integrity failures (-EBADMSG) leave as EIO and locked levels (-ENOKEY)
 *    as EACCES (fe_errno); the vault has recorded the cause before that.
 * 3. With the writeback cache the kernel may read through a write-only
 *    handle and computes append offsets itself, so opens are upgraded from
 *    O_WRONLY to O_RDWR and lose O_APPEND (fe_open_flags).
 * 4. The kernel keeps a file's cached pages across an open only if its size,
 *    mtime and ctime are those recorded when the same path's last handle was
 *    released (fe_cache_*): the driver is the only writer, so anything else
 *    means another path (a hard link) or a rename changed it.
 * 5. Unlinked open files stay usable (hard_remove): handle operations never
 *    need a path. libfuse gives a NULL path for an unlinked file; chmod
 *    and chown of one return ENOENT, and its times (which the kernel sets
 *    when it writes back an unlinked temp file) are accepted and dropped,
 *    since nothing can look the file up again.
 */
#define FUSE_USE_VERSION 314

#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strongroom/frontend.h"
#include "strongroom/vault.h"

/* The driver is the only writer, so the kernel may trust attributes and
 * names for a while; short enough that policy changes show up quickly. */
#define FE_ENTRY_TIMEOUT 1.0
#define FE_ATTR_TIMEOUT 1.0
#define FE_MAX_GROUPS 1024
#define FE_CACHE_SLOTS 4096
#define FE_MAX_IDLE_THREADS 16
#define FE_MAX_THREADS 32

struct fe_cache_slot {
	uint64_t key; /* 0 = empty */
	off_t size;
	struct timespec mtime, ctime;
};

struct fe_state {
	struct vault *v;
	const struct fe_options *o;
	bool writeback; /* the kernel's writeback cache is on */
	bool ready_closed; /* o->ready_fd has been signalled and closed */
	pthread_mutex_t cache_lock;
	struct fe_cache_slot cache[FE_CACHE_SLOTS];
};

/* The caller of the current request, with its supplementary groups. */
struct fe_caller {
	struct vault_caller c;
	gid_t groups[FE_MAX_GROUPS];
};

static struct fe_state *fe_state_get(void)
{
	return fuse_get_context()->private_data;
}

static struct vault *fe_vault(void)
{
	return fe_state_get()->v;
}

/* An open file: the vault's handle and the hash of the path it was opened
 * by (with nullpath_ok, release gets no path). Owned by fi->fh. */
struct fe_file {
	struct vault_handle *h;
	uint64_t path_hash;
};

static struct fe_file *fe_file_of(const struct fuse_file_info *fi)
{
	return (struct fe_file *)(uintptr_t)fi->fh;
}

static struct vault_handle *fe_handle(const struct fuse_file_info *fi)
{
	return fe_file_of(fi)->h;
}

static const struct vault_caller *fe_caller_get(struct fe_caller *fc)
{
	const struct fuse_context *ctx = fuse_get_context();
	int n;

	fc->c.uid = ctx->uid;
	fc->c.gid = ctx->gid;
	fc->c.pid = ctx->pid;
	fc->c.umask = ctx->umask;
	n = ctx->pid > 0 ? fuse_getgroups(FE_MAX_GROUPS, fc->groups) : 0;
	if (n < 0)
		n = 0;
	if (n > FE_MAX_GROUPS)
		n = FE_MAX_GROUPS;
	fc->c.ngroups = n;
	fc->c.groups = fc->groups;
	return &fc->c;
}

static int fe_errno(int err)
{
	if (err == -EBADMSG)
		return -EIO;
	if (err == -ENOKEY)
		return -EACCES;
	return err;
}

static ssize_t fe_errno_ssize(ssize_t n)
{
	return n < 0 ? fe_errno((int)n) : n;
}

/* Invariant 3. */
static int fe_open_flags(int flags)
{
	if (!fe_state_get()->writeback)
		return flags;
	if ((flags & O_ACCMODE) == O_WRONLY)
		flags = (flags & ~O_ACCMODE) | O_RDWR;
	return flags & ~O_APPEND;
}

/* Invariant 4: a slot per (path, inode), direct-mapped; a collision only
 * costs a cache invalidation. */
static uint64_t fe_path_hash(const char *path)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (const unsigned char *p = (const unsigned char *)path; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return h;
}

static uint64_t fe_cache_key(uint64_t path_hash, ino_t ino)
{
	uint64_t h = path_hash ^ ((uint64_t)ino * 0x9e3779b97f4a7c15ull);

	return h ? h : 1;
}

static bool fe_ts_equal(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static bool fe_cache_unchanged(uint64_t path_hash, const struct stat *st)
{
	struct fe_state *s = fe_state_get();
	uint64_t key = fe_cache_key(path_hash, st->st_ino);
	struct fe_cache_slot *slot = &s->cache[key % FE_CACHE_SLOTS];
	bool same;

	pthread_mutex_lock(&s->cache_lock);
	same = slot->key == key && slot->size == st->st_size && fe_ts_equal(&slot->mtime, &st->st_mtim) &&
	       fe_ts_equal(&slot->ctime, &st->st_ctim);
	pthread_mutex_unlock(&s->cache_lock);
	return same;
}

static void fe_cache_record(uint64_t path_hash, const struct stat *st)
{
	struct fe_state *s = fe_state_get();
	uint64_t key = fe_cache_key(path_hash, st->st_ino);
	struct fe_cache_slot *slot = &s->cache[key % FE_CACHE_SLOTS];

	pthread_mutex_lock(&s->cache_lock);
	slot->key = key;
	slot->size = st->st_size;
	slot->mtime = st->st_mtim;
	slot->ctime = st->st_ctim;
	pthread_mutex_unlock(&s->cache_lock);
}

/* After a successful open or create: wrap the handle, decide keep_cache
 * (invariant 4). On failure the handle is released. */
static int fe_open_done(const char *path, struct fuse_file_info *fi, struct vault_handle *h)
{
	struct fe_file *ff = malloc(sizeof(*ff));
	struct stat st;

	if (!ff) {
		vault_release(fe_vault(), h);
		return -ENOMEM;
	}
	ff->h = h;
	ff->path_hash = fe_path_hash(path);
	fi->fh = (uint64_t)(uintptr_t)ff;
	fi->keep_cache = 0;
	if (vault_fgetattr(fe_vault(), h, &st) == 0 && fe_cache_unchanged(ff->path_hash, &st))
		fi->keep_cache = 1;
	return 0;
}

/* ---- attributes ---- */

static int fe_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct fe_caller fc;

	if (fi)
		return fe_errno(vault_fgetattr(fe_vault(), fe_handle(fi), st));
	if (!path)
		return -ENOENT;
	return fe_errno(vault_getattr(fe_vault(), fe_caller_get(&fc), path, st));
}

static int fe_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct fe_caller fc;

	if (!path)
		return -ENOENT;
	return fe_errno(vault_chmod(fe_vault(), fe_caller_get(&fc), path, mode));
}

static int fe_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	struct fe_caller fc;

	if (!path)
		return -ENOENT;
	return fe_errno(vault_chown(fe_vault(), fe_caller_get(&fc), path, uid, gid));
}

static int fe_utimens(const char *path, const struct timespec ts[2], struct fuse_file_info *fi)
{
	struct fe_caller fc;

	if (!path)
		return fi ? 0 : -ENOENT; /* invariant 5 */
	return fe_errno(vault_utimens(fe_vault(), fe_caller_get(&fc), path, ts));
}

static int fe_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct fe_caller fc;

	if (size < 0)
		return -EINVAL;
	if (fi)
		return fe_errno(vault_ftruncate(fe_handle(fi), (uint64_t)size));
	if (!path)
		return -ENOENT;
	return fe_errno(vault_truncate(fe_vault(), fe_caller_get(&fc), path, (uint64_t)size));
}

static int fe_statfs(const char *path, struct statvfs *st)
{
	return fe_errno(vault_statfs(fe_vault(), st));
}

/* ---- directories ---- */

/* An open directory carries the path it was opened by (owned by fi->fh
 * until releasedir), for the rare readdir that libfuse gives no path (a
 * directory removed while open). */
static int fe_opendir(const char *path, struct fuse_file_info *fi)
{
	char *copy = strdup(path ? path : "/");

	if (!copy)
		return -ENOMEM;
	fi->fh = (uint64_t)(uintptr_t)copy;
	return 0;
}

static int fe_releasedir(const char *path, struct fuse_file_info *fi)
{
	free((char *)(uintptr_t)fi->fh);
	return 0;
}

static int fe_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off, struct fuse_file_info *fi,
		      enum fuse_readdir_flags flags)
{
	struct fe_caller fc;
	struct vault_dirlist l = { 0 };
	bool plus = flags & FUSE_READDIR_PLUS;
	int err;

	if (!path)
		path = (const char *)(uintptr_t)fi->fh;
	err = vault_readdir(fe_vault(), fe_caller_get(&fc), path, plus, &l);
	if (err)
		return fe_errno(err);
	/* Offsets of 0: libfuse keeps the whole listing and pages it out. */
	if (fill(buf, ".", NULL, 0, 0) || fill(buf, "..", NULL, 0, 0))
		goto out;
	for (size_t i = 0; i < l.n; i++) {
		const struct vault_dirent *e = &l.ents[i];
		int r;

		if (plus)
			r = fill(buf, e->name, &e->st, 0, FUSE_FILL_DIR_PLUS);
		else
			r = fill(buf, e->name, e->st.st_ino ? &e->st : NULL, 0, 0);
		if (r)
			break;
	}
out:
	vault_dirlist_free(&l);
	return 0;
}

static int fe_mkdir(const char *path, mode_t mode)
{
	struct fe_caller fc;

	return fe_errno(vault_mkdir(fe_vault(), fe_caller_get(&fc), path, mode));
}

static int fe_rmdir(const char *path)
{
	struct fe_caller fc;

	return fe_errno(vault_rmdir(fe_vault(), fe_caller_get(&fc), path));
}

/* Directories are made durable by the vault as they change; an fsync of a
 * directory also seals what is dirty, which is what a caller syncing a
 * directory after creating a file inside it expects. */
static int fe_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
	return fe_errno(vault_sync(fe_vault()));
}

/* ---- names ---- */

static int fe_unlink(const char *path)
{
	struct fe_caller fc;

	return fe_errno(vault_unlink(fe_vault(), fe_caller_get(&fc), path));
}

static int fe_rename(const char *from, const char *to, unsigned int flags)
{
	struct fe_caller fc;

	return fe_errno(vault_rename(fe_vault(), fe_caller_get(&fc), from, to, flags));
}

static int fe_link(const char *from, const char *to)
{
	struct fe_caller fc;

	return fe_errno(vault_link(fe_vault(), fe_caller_get(&fc), from, to));
}

static int fe_symlink(const char *target, const char *path)
{
	struct fe_caller fc;

	return fe_errno(vault_symlink(fe_vault(), fe_caller_get(&fc), target, path));
}

static int fe_readlink(const char *path, char *buf, size_t size)
{
	struct fe_caller fc;
	ssize_t n;

	if (size == 0)
		return -EINVAL;
	n = vault_readlink(fe_vault(), fe_caller_get(&fc), path, buf, size - 1);
	if (n < 0)
		return fe_errno((int)n);
	buf[(size_t)n < size - 1 ? (size_t)n : size - 1] = '\0';
	return 0;
}

static int fe_mknod(const char *path, mode_t mode, dev_t rdev)
{
	struct fe_caller fc;

	return fe_errno(vault_mknod(fe_vault(), fe_caller_get(&fc), path, mode, rdev));
}

/* ---- files ---- */

static int fe_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct fe_caller fc;
	struct vault_handle *h = NULL;
	int err;

	err = vault_create(fe_vault(), fe_caller_get(&fc), path, mode, fe_open_flags(fi->flags), &h);
	if (err)
		return fe_errno(err);
	return fe_open_done(path, fi, h);
}

static int fe_open(const char *path, struct fuse_file_info *fi)
{
	struct fe_caller fc;
	struct vault_handle *h = NULL;
	int err;

	err = vault_open_file(fe_vault(), fe_caller_get(&fc), path, fe_open_flags(fi->flags), &h);
	if (err)
		return fe_errno(err);
	return fe_open_done(path, fi, h);
}

static int fe_read(const char *path, char *buf, size_t n, off_t off, struct fuse_file_info *fi)
{
	ssize_t r;

	if (off < 0)
		return -EINVAL;
	r = fe_errno_ssize(vault_read(fe_handle(fi), buf, n, (uint64_t)off));
	return (int)r; /* n <= max_read, far below INT_MAX */
}

static int fe_write(const char *path, const char *buf, size_t n, off_t off, struct fuse_file_info *fi)
{
	ssize_t r;

	if (off < 0)
		return -EINVAL;
	r = fe_errno_ssize(vault_write(fe_handle(fi), buf, n, (uint64_t)off));
	return (int)r;
}

static int fe_flush(const char *path, struct fuse_file_info *fi)
{
	return fe_errno(vault_flush(fe_handle(fi)));
}

static int fe_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	return fe_errno(vault_fsync(fe_handle(fi), datasync != 0));
}

static int fe_release(const char *path, struct fuse_file_info *fi)
{
	struct fe_file *ff = fe_file_of(fi);
	struct stat st;
	int err;

	/* Record what this path's pages now hold (invariant 4). */
	if (vault_fgetattr(fe_vault(), ff->h, &st) == 0)
		fe_cache_record(ff->path_hash, &st);
	err = vault_release(fe_vault(), ff->h);
	free(ff);
	return fe_errno(err);
}

static int fe_fallocate(const char *path, int mode, off_t off, off_t len, struct fuse_file_info *fi)
{
	if (off < 0 || len <= 0)
		return -EINVAL;
	return fe_errno(vault_fallocate(fe_handle(fi), mode, (uint64_t)off, (uint64_t)len));
}

static off_t fe_lseek(const char *path, off_t off, int whence, struct fuse_file_info *fi)
{
	off_t r = vault_lseek(fe_handle(fi), off, whence);

	return r < 0 ? fe_errno((int)r) : r;
}

/* ---- extended attributes ---- */

static int fe_setxattr(const char *path, const char *name, const char *val, size_t len, int flags)
{
	struct fe_caller fc;

	if (!path)
		return -ENOENT;
	return fe_errno(vault_setxattr(fe_vault(), fe_caller_get(&fc), path, name, val, len, flags));
}

static int fe_getxattr(const char *path, const char *name, char *val, size_t cap)
{
	struct fe_caller fc;

	if (!path)
		return -ENOENT;
	return (int)fe_errno_ssize(vault_getxattr(fe_vault(), fe_caller_get(&fc), path, name, val, cap));
}

static int fe_listxattr(const char *path, char *out, size_t cap)
{
	struct fe_caller fc;

	if (!path)
		return -ENOENT;
	return (int)fe_errno_ssize(vault_listxattr(fe_vault(), fe_caller_get(&fc), path, out, cap));
}

static int fe_removexattr(const char *path, const char *name)
{
	struct fe_caller fc;

	if (!path)
		return -ENOENT;
	return fe_errno(vault_removexattr(fe_vault(), fe_caller_get(&fc), path, name));
}

/* ---- session ---- */

static void *fe_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	struct fe_state *s = fe_state_get();

	cfg->use_ino = 1;
	cfg->hard_remove = 1; /* no .fuse_hidden files: the vault keeps unlinked open files */
	cfg->nullpath_ok = 0; /* else libfuse drops the path of every op that has a handle */
	cfg->entry_timeout = FE_ENTRY_TIMEOUT;
	cfg->attr_timeout = FE_ATTR_TIMEOUT;
	cfg->negative_timeout = 0;
	cfg->kernel_cache = 0;
	cfg->auto_cache = 0;

	if ((conn->capable & FUSE_CAP_WRITEBACK_CACHE) && !s->o->read_only) {
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
		s->writeback = true;
	}
	if (conn->capable & FUSE_CAP_POSIX_ACL)
		conn->want |= FUSE_CAP_POSIX_ACL;
	/* The vault applies the umask itself, or a default ACL instead. */
	if (conn->capable & FUSE_CAP_DONT_MASK)
		conn->want |= FUSE_CAP_DONT_MASK;
	/* Invariant 1. */
	conn->want &= ~FUSE_CAP_NO_OPEN_SUPPORT;
	/* Locks stay in the kernel (one host per writable vault). */
	conn->want &= ~(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
	/* libfuse caps this at its buffer size and sets max_pages to match. */
	conn->max_write = FE_MAX_WRITE_BYTES;
	conn->time_gran = 1;

	if (s->o->ready_fd >= 0) {
		const char ok = 0;

		if (write(s->o->ready_fd, &ok, 1) != 1)
			perror("strongroom: ready pipe");
		close(s->o->ready_fd);
		s->ready_closed = true;
	}
	if (s->o->log_fd >= 0)
		dup2(s->o->log_fd, STDERR_FILENO);
	return s;
}

static const struct fuse_operations fe_ops = {
	.init = fe_init,
	.getattr = fe_getattr,
	.readlink = fe_readlink,
	.mknod = fe_mknod,
	.mkdir = fe_mkdir,
	.unlink = fe_unlink,
	.rmdir = fe_rmdir,
	.symlink = fe_symlink,
	.rename = fe_rename,
	.link = fe_link,
	.chmod = fe_chmod,
	.chown = fe_chown,
	.truncate = fe_truncate,
	.open = fe_open,
	.read = fe_read,
	.write = fe_write,
	.statfs = fe_statfs,
	.flush = fe_flush,
	.release = fe_release,
	.fsync = fe_fsync,
	.setxattr = fe_setxattr,
	.getxattr = fe_getxattr,
	.listxattr = fe_listxattr,
	.removexattr = fe_removexattr,
	.opendir = fe_opendir,
	.readdir = fe_readdir,
	.releasedir = fe_releasedir,
	.fsyncdir = fe_fsyncdir,
	.create = fe_create,
	.utimens = fe_utimens,
	.fallocate = fe_fallocate,
	.lseek = fe_lseek,
};

/* "-o" options for fuse_new: ours first, the caller's extra ones last. */
static int fe_args_build(const struct fe_options *o, struct fuse_args *args)
{
	char *opts = NULL;
	char *fsname = NULL;
	int err = -ENOMEM;

	if (fuse_opt_add_arg(args, "strongroom") || fuse_opt_add_opt(&opts, "default_permissions") ||
	    fuse_opt_add_opt(&opts, "subtype=" FE_SUBTYPE))
		goto out;
	if (asprintf(&fsname, "fsname=%s", o->fsname) < 0) {
		fsname = NULL;
		goto out;
	}
	if (fuse_opt_add_opt_escaped(&opts, fsname))
		goto out;
	if (o->allow_other && fuse_opt_add_opt(&opts, "allow_other"))
		goto out;
	if (o->read_only && fuse_opt_add_opt(&opts, "ro"))
		goto out;
	if (o->fuse_opts && *o->fuse_opts && fuse_opt_add_opt(&opts, o->fuse_opts))
		goto out;
	if (fuse_opt_add_arg(args, "-o") || fuse_opt_add_arg(args, opts))
		goto out;
	if (o->debug && fuse_opt_add_arg(args, "-d"))
		goto out;
	err = 0;
out:
	free(opts);
	free(fsname);
	return err;
}

int fe_run(struct vault *v, const struct fe_options *o)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config *loop = NULL;
	struct fe_state *s;
	struct fuse *f = NULL;
	bool mounted = false, handlers = false;
	int err, rc;

	s = calloc(1, sizeof(*s));
	if (!s) {
		if (o->ready_fd >= 0)
			close(o->ready_fd);
		return -ENOMEM;
	}
	s->v = v;
	s->o = o;
	pthread_mutex_init(&s->cache_lock, NULL);

	err = fe_args_build(o, &args);
	if (err)
		goto out;
	f = fuse_new(&args, &fe_ops, sizeof(fe_ops), s);
	if (!f) {
		err = -EINVAL; /* libfuse has said which option */
		goto out;
	}
	if (fuse_mount(f, o->mountpoint) != 0) {
		err = -EIO; /* libfuse has said why */
		goto out;
	}
	mounted = true;
	if (fuse_set_signal_handlers(fuse_get_session(f)) != 0) {
		err = -EIO;
		goto out;
	}
	handlers = true;
	loop = fuse_loop_cfg_create();
	if (!loop) {
		err = -ENOMEM;
		goto out;
	}
	fuse_loop_cfg_set_idle_threads(loop, FE_MAX_IDLE_THREADS);
	fuse_loop_cfg_set_max_threads(loop, FE_MAX_THREADS);
	rc = fuse_loop_mt(f, loop);
	/* rc > 0 is the signal that stopped the loop: a clean stop. */
	if (rc < 0) {
		fprintf(stderr, "strongroom: %s: request loop failed: %s\n", o->mountpoint, strerror(-rc));
		err = rc;
	} else {
		err = 0;
	}
out:
	if (handlers)
		fuse_remove_signal_handlers(fuse_get_session(f));
	if (mounted)
		fuse_unmount(f);
	if (mounted) {
		rc = vault_sync(v);
		if (rc) {
			fprintf(stderr, "strongroom: %s: sealing at unmount failed: %s\n", o->fsname,
				strerror(-rc));
			if (!err)
				err = rc;
		}
	}
	if (f)
		fuse_destroy(f);
	if (o->ready_fd >= 0 && !s->ready_closed)
		close(o->ready_fd);
	if (loop)
		fuse_loop_cfg_destroy(loop);
	fuse_opt_free_args(&args);
	pthread_mutex_destroy(&s->cache_lock);
	free(s);
	return err;
}
