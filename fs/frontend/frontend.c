/* frontend.c - the FUSE frontend: kernel requests to vault calls.
 *
 * The only file in Strongroom that includes FUSE headers. It speaks libfuse's
 * low-level protocol and keeps its own table of kernel inodes, so that hard
 * links are one kernel inode (one page cache, one size) and a file replaced
 * by rename stays a valid inode for whoever holds it open. The vault is
 * path-based: each request turns its inode into a path with the table, makes
 * one vault call (setattr may need one per attribute it changes) and sends
 * exactly one reply.
 *
 * The table: a node per kernel inode (nodeid = the node's address; the root
 * is FUSE_ROOT_ID), found by the vault's stable st_ino so that every name of
 * a hard-linked file maps to the same node. A node has zero or more names
 * (dentries: parent node + name); a path is built from the first name up to
 * the root.
 *
 * Invariants:
 * 1. A node lives while the kernel holds lookups on it (nlookup), a handle
 *    is open on it (nopen), or a dentry names a child of it (nchild); so a
 *    path can always be built for a node the kernel still knows, unless it
 *    has no name left (unlinked), in which case handle-based calls are used.
 * 2. Lock order: fe->ns (rwlock) then fe->tbl (mutex) then vault locks.
 *    Calls that resolve paths hold ns shared from path building until the
 *    vault call returns; rename, unlink and rmdir hold it exclusive. So the
 *    path a request was built from names the inode the kernel meant.
 *    tbl guards the table's structure and counters, never a vault call.
 * 3. Every open reaches the driver (no FUSE_CAP_NO_OPEN_SUPPORT), so the
 *    vault audits it even when the kernel then reads from its page cache.
 * 4. With the writeback cache the kernel may read through a write-only
 *    handle and computes append offsets itself: opens are upgraded from
 *    O_WRONLY to O_RDWR and lose O_APPEND (fe_open_flags).
 * 5. The kernel keeps an inode's cached pages across an open only if its
 *    size, mtime and ctime are what they were when its last handle closed
 *    (the driver is the only writer, so nothing else can change them).
 * 6. Integrity failures (-EBADMSG, -EUCLEAN) leave as EIO and locked levels (-ENOKEY)
 *    as EACCES (fe_errno); the vault has recorded the cause before that.
 * 7. A file that loses its last name (unlink, rename over it) while the
 *    kernel holds a lookup on its node stays openable, as on a local
 *    filesystem: just before the vault call that removes the name, the node
 *    takes a hold (vault_file_hold) on the file, which keeps its store inode;
 *    opens, getattr and setattr of the nameless node go through the hold. The
 *    hold goes when the node does (forget and last release); it is released
 *    outside tbl (fe_holds_reap), as every vault call is.
 */
#define FUSE_USE_VERSION 314

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fe_kaudit.h"
#include "strongroom/frontend.h"
#include "strongroom/vault.h"
#include "strongroom/watch.h"

/* The driver is the only writer, so the kernel may trust attributes and
 * names for a while; short enough that policy changes show up quickly. */
#define FE_ENTRY_TIMEOUT    1.0
#define FE_ATTR_TIMEOUT	    1.0
#define FE_MAX_GROUPS	    1024
#define FE_HASH_BUCKETS	    (1u << 16)
#define FE_MAX_IDLE_THREADS 16
#define FE_MAX_THREADS	    32
/* readdir entries without an inode number in the listing (glibc skips
 * d_ino == 0). */
#define FE_UNKNOWN_INO 0xffffffffu

struct fe_node;

/* A name: parent directory node + component. */
struct fe_dentry {
	struct fe_node *parent;
	char *name;
	struct fe_node *node;
	struct fe_dentry *hnext;      /* hash chain by (parent, name) */
	struct fe_dentry *alias_next; /* the node's other names */
};

struct fe_file;

/* Invariant 7: a file kept for a node with no name. */
struct fe_hold {
	struct vault_handle *h;
	struct fe_hold *next; /* on fe->holds_dead */
};

struct fe_node {
	uint64_t ino; /* the vault's st_ino */
	uint64_t nlookup;
	unsigned nopen, nchild;
	bool is_root;
	struct fe_dentry *names; /* first one is used for paths */
	struct fe_file *files;	 /* open handles */
	struct fe_hold *hold;	 /* invariant 7; NULL while it has a name */
	struct fe_node *hnext;	 /* hash chain by ino */
	/* Invariant 5: attributes when the last handle closed. */
	bool cache_valid;
	off_t cache_size;
	struct timespec cache_mtime, cache_ctime;
};

/* An open file (fi->fh). */
struct fe_file {
	struct vault_handle *h;
	struct fe_node *node;
	struct fe_file *next, *prev;
};

/* An open directory (fi->fh): the listing, fetched at offset 0. */
struct fe_dir {
	pthread_mutex_t lock;
	bool have, plus;
	struct vault_dirlist l;
	struct fe_dir *next, *prev; /* fe->dirs, under fe->tbl */
};

struct fe {
	struct vault *v;
	const struct fe_options *o;
	struct fuse_session *se;
	bool writeback;
	bool ready_closed;
	pthread_rwlock_t ns;
	pthread_mutex_t tbl;
	struct fe_node root;
	struct fe_node *by_ino[FE_HASH_BUCKETS];
	struct fe_dentry *by_name[FE_HASH_BUCKETS];
	struct fe_hold *holds_dead; /* of freed nodes, to release (invariant 7) */
	struct fe_kaudit *kaudit;   /* the kernel's refusals (fe_kaudit.h), or NULL */
	/* Open directories: the kernel may not release them all before the
	 * session ends (an unmount racing a close); freed at the end. */
	struct fe_dir *dirs;
};

struct fe_caller {
	struct vault_caller c;
	gid_t groups[FE_MAX_GROUPS];
};

static struct fe *fe_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct fe_node *fe_node_of(struct fe *fe, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? &fe->root : (struct fe_node *)(uintptr_t)ino;
}

static fuse_ino_t fe_nodeid(struct fe *fe, struct fe_node *n)
{
	return n == &fe->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

static struct fe_file *fe_file_of(const struct fuse_file_info *fi)
{
	return (struct fe_file *)(uintptr_t)fi->fh;
}

static const struct vault_caller *fe_caller_get(fuse_req_t req, struct fe_caller *fc)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	int n;

	fc->c.uid = ctx->uid;
	fc->c.gid = ctx->gid;
	fc->c.pid = ctx->pid;
	fc->c.umask = ctx->umask;
	fc->c.open_flags = 0;
	/* Reading the groups costs an open and read of /proc/PID/status:
	 * only when the vault's decisions use them. */
	n = ctx->pid > 0 && vault_wants_groups(fe_of(req)->v)
		    ? fuse_req_getgroups(req, FE_MAX_GROUPS, fc->groups)
		    : 0;
	if (n < 0)
		n = 0;
	if (n > FE_MAX_GROUPS)
		n = FE_MAX_GROUPS;
	fc->c.ngroups = n;
	fc->c.groups = fc->groups;
	return &fc->c;
}

/* The caller of an open: the audit records the flags the application asked
 * for, not the upgraded ones (invariant 4). */
static const struct vault_caller *fe_caller_open(fuse_req_t req, struct fe_caller *fc, int flags)
{
	fe_caller_get(req, fc);
	fc->c.open_flags = flags;
	return &fc->c;
}

/* Invariant 6. Returns a positive errno for fuse_reply_err. */
static int fe_errno(long err)
{
	if (err == -EBADMSG || err == -EUCLEAN) /* edited or malformed store bytes */
		return EIO;
	if (err == -ENOKEY)
		return EACCES;
	return err < 0 ? (int)-err : EIO;
}

/* ---- the table (all under fe->tbl) ---- */

static size_t fe_hash_ino(uint64_t ino)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> 48) & (FE_HASH_BUCKETS - 1);
}

static size_t fe_hash_name(const struct fe_node *parent, const char *name)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)parent;

	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return (size_t)(h >> 40) & (FE_HASH_BUCKETS - 1);
}

static struct fe_dentry *fe_dentry_find(struct fe *fe, struct fe_node *parent, const char *name)
{
	for (struct fe_dentry *d = fe->by_name[fe_hash_name(parent, name)]; d; d = d->hnext)
		if (d->parent == parent && strcmp(d->name, name) == 0)
			return d;
	return NULL;
}

static void fe_node_maybe_free(struct fe *fe, struct fe_node *n);

/* Unhook d from the name hash, its node's aliases and its parent; free it.
 * The node and the parent may be freed as a result (invariant 1). */
static void fe_dentry_drop(struct fe *fe, struct fe_dentry *d)
{
	struct fe_dentry **pp = &fe->by_name[fe_hash_name(d->parent, d->name)];
	struct fe_node *parent = d->parent, *node = d->node;

	while (*pp && *pp != d)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = d->hnext;
	for (pp = &node->names; *pp; pp = &(*pp)->alias_next) {
		if (*pp == d) {
			*pp = d->alias_next;
			break;
		}
	}
	parent->nchild--;
	free(d->name);
	free(d);
	fe_node_maybe_free(fe, node);
	fe_node_maybe_free(fe, parent);
}

static void fe_node_maybe_free(struct fe *fe, struct fe_node *n)
{
	struct fe_node **pp;

	if (n->is_root || n->nlookup || n->nopen || n->nchild)
		return;
	/* Names of a node nobody refers to are only cache: drop them. */
	while (n->names) {
		struct fe_dentry *d = n->names;

		n->names = d->alias_next; /* taken off n here, then dropped */
		n->nchild++;		  /* keep n alive while its names go */
		fe_dentry_drop(fe, d);
		n->nchild--;
	}
	for (pp = &fe->by_ino[fe_hash_ino(n->ino)]; *pp; pp = &(*pp)->hnext) {
		if (*pp == n) {
			*pp = n->hnext;
			break;
		}
	}
	if (n->hold) {
		n->hold->next = fe->holds_dead;
		fe->holds_dead = n->hold;
	}
	free(n);
}

/* Release the holds of freed nodes (invariant 7). Not under tbl. */
static void fe_holds_reap(struct fe *fe)
{
	struct fe_hold *hd;

	pthread_mutex_lock(&fe->tbl);
	hd = fe->holds_dead;
	fe->holds_dead = NULL;
	pthread_mutex_unlock(&fe->tbl);
	while (hd) {
		struct fe_hold *next = hd->next;

		(void)vault_release(fe->v, hd->h);
		free(hd);
		hd = next;
	}
}

/* Record that parent/name is the file with attributes st, and take one
 * kernel lookup on its node. @return the node, or NULL (ENOMEM). */
static struct fe_node *fe_node_learn(struct fe *fe, struct fe_node *parent, const char *name,
				     const struct stat *st)
{
	size_t hi = fe_hash_ino((uint64_t)st->st_ino), hn;
	struct fe_dentry *d, **pp;
	struct fe_node *n;

	for (n = fe->by_ino[hi]; n; n = n->hnext)
		if (n->ino == (uint64_t)st->st_ino)
			break;
	if (!n) {
		n = calloc(1, sizeof(*n));
		if (!n)
			return NULL;
		n->ino = (uint64_t)st->st_ino;
		n->hnext = fe->by_ino[hi];
		fe->by_ino[hi] = n;
	}
	n->nlookup++; /* from here on n cannot be freed under us */
	d = fe_dentry_find(fe, parent, name);
	if (d && d->node == n)
		return n;
	if (d)
		fe_dentry_drop(fe, d); /* the name now means another file */
	d = calloc(1, sizeof(*d));
	if (!d || !(d->name = strdup(name))) {
		free(d);
		return n; /* still valid for this reply; it just has no path */
	}
	d->parent = parent;
	d->node = n;
	parent->nchild++;
	hn = fe_hash_name(parent, name);
	d->hnext = fe->by_name[hn];
	fe->by_name[hn] = d;
	/* A new name goes last: the first name keeps the path stable. */
	for (pp = &n->names; *pp; pp = &(*pp)->alias_next)
		;
	*pp = d;
	return n;
}

/* Length of n's path; 0 if it has no name (unlinked). */
static size_t fe_path_len(const struct fe *fe, const struct fe_node *n)
{
	size_t len = 0;

	if (n == &fe->root)
		return 1;
	while (n != &fe->root) {
		if (!n->names)
			return 0;
		len += 1 + strlen(n->names->name);
		n = n->names->parent;
	}
	return len;
}

/* fe_path with fe->tbl held. */
static char *fe_path_locked(struct fe *fe, struct fe_node *n, const char *name, int *err)
{
	size_t base, extra = name ? strlen(name) + 1 : 0, pos;
	char *p = NULL;

	base = fe_path_len(fe, n);
	if (base == 0) {
		*err = ENOENT;
		goto out;
	}
	p = malloc(base + extra + 1);
	if (!p) {
		*err = ENOMEM;
		goto out;
	}
	if (n == &fe->root) {
		pos = 0;
		p[0] = '\0';
	} else {
		pos = base;
		p[pos] = '\0';
		for (const struct fe_node *c = n; c != &fe->root; c = c->names->parent) {
			size_t l = strlen(c->names->name);

			pos -= l;
			memcpy(p + pos, c->names->name, l);
			p[--pos] = '/';
		}
		pos = base;
	}
	if (name) {
		p[pos++] = '/';
		memcpy(p + pos, name, extra - 1);
		pos += extra - 1;
	} else if (n == &fe->root) {
		p[pos++] = '/';
	}
	p[pos] = '\0';
out:
	return p;
}

/* The path of n, plus "/name" if name is given. Owned by the caller.
 * NULL with *err = ENOENT for an unlinked node, ENOMEM on allocation. */
static char *fe_path(struct fe *fe, struct fe_node *n, const char *name, int *err)
{
	char *p;

	pthread_mutex_lock(&fe->tbl);
	p = fe_path_locked(fe, n, name, err);
	pthread_mutex_unlock(&fe->tbl);
	return p;
}

/* fe_kaudit_path_fn: the path of the node the kernel knows as st_ino ino. */
static char *fe_kaudit_path(void *ctx, uint64_t ino, const char *name)
{
	struct fe *fe = ctx;
	struct fe_node *n = NULL;
	char *p = NULL;
	int err;

	pthread_mutex_lock(&fe->tbl);
	if (fe->root.ino == ino)
		n = &fe->root;
	for (struct fe_node *c = fe->by_ino[fe_hash_ino(ino)]; c && !n; c = c->hnext)
		if (c->ino == ino)
			n = c;
	if (n)
		p = fe_path_locked(fe, n, name, &err);
	pthread_mutex_unlock(&fe->tbl);
	return p;
}

static void fe_entry_fill(struct fe *fe, struct fe_node *n, const struct stat *st,
			  struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = fe_nodeid(fe, n);
	e->attr = *st;
	e->attr_timeout = FE_ATTR_TIMEOUT;
	e->entry_timeout = FE_ENTRY_TIMEOUT;
}

/* After a vault call created or found parent/name: learn it and reply with
 * an entry (lookup, mkdir, mknod, symlink, link). */
static void fe_reply_learned(fuse_req_t req, struct fe *fe, struct fe_node *parent,
			     const char *name, const struct stat *st)
{
	struct fuse_entry_param e;
	struct fe_node *n;

	pthread_mutex_lock(&fe->tbl);
	n = fe_node_learn(fe, parent, name, st);
	pthread_mutex_unlock(&fe->tbl);
	if (!n) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fe_entry_fill(fe, n, st, &e);
	if (fuse_reply_entry(req, &e) != 0) {
		pthread_mutex_lock(&fe->tbl);
		n->nlookup--;
		fe_node_maybe_free(fe, n);
		pthread_mutex_unlock(&fe->tbl);
	}
}

/* ---- lookups and attributes ---- */

static void fe_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fe *fe = fe_of(req);
	struct fe_node *pn = fe_node_of(fe, parent);
	struct fe_caller fc;
	struct stat st;
	char *path;
	int err = 0;

	pthread_rwlock_rdlock(&fe->ns);
	path = fe_path(fe, pn, name, &err);
	if (path)
		err = -vault_getattr(fe->v, fe_caller_get(req, &fc), path, &st);
	if (err == 0)
		fe_reply_learned(req, fe, pn, name, &st);
	pthread_rwlock_unlock(&fe->ns);
	if (err == ENOENT) {
		/* The driver is the only writer: the kernel may remember that
		 * the name is absent (saves a request per probe, as git and
		 * SQLite make many) and forgets it when it creates the name. */
		struct fuse_entry_param e = {.ino = 0, .entry_timeout = FE_ENTRY_TIMEOUT};

		fuse_reply_entry(req, &e);
	} else if (err) {
		fuse_reply_err(req, fe_errno(-err));
	}
	free(path);
}

static void fe_forget_one(struct fe *fe, fuse_ino_t ino, uint64_t nlookup)
{
	struct fe_node *n = fe_node_of(fe, ino);

	if (n->is_root)
		return;
	n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
	fe_node_maybe_free(fe, n);
}

static void fe_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct fe *fe = fe_of(req);

	pthread_mutex_lock(&fe->tbl);
	fe_forget_one(fe, ino, nlookup);
	pthread_mutex_unlock(&fe->tbl);
	fe_holds_reap(fe);
	fuse_reply_none(req);
}

static void fe_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct fe *fe = fe_of(req);

	pthread_mutex_lock(&fe->tbl);
	for (size_t i = 0; i < count; i++)
		fe_forget_one(fe, forgets[i].ino, forgets[i].nlookup);
	pthread_mutex_unlock(&fe->tbl);
	fe_holds_reap(fe);
	fuse_reply_none(req);
}

/* A handle on n's file for calls on a node with no name: its hold
 * (invariant 7), else any open handle. Under tbl; the kernel sends no
 * request for a node after forgetting it, so the hold outlives the call. */
static struct vault_handle *fe_node_any_handle(struct fe_node *n)
{
	if (n->hold)
		return n->hold->h;
	return n->files ? n->files->h : NULL;
}

/* Invariant 7, before the vault call that removes parent/name (under ns
 * exclusive): if it is the last name of a node the kernel holds, hold the
 * file and pin the node. @return the node (pinned, fe_hold_after) or NULL. */
static struct fe_node *fe_hold_before(struct fe *fe, struct fe_node *parent, const char *name,
				      const char *path, struct fe_hold **hold)
{
	struct fe_dentry *d;
	struct fe_node *n = NULL;
	struct fe_hold *hd;
	struct stat st;

	*hold = NULL;
	pthread_mutex_lock(&fe->tbl);
	d = fe_dentry_find(fe, parent, name);
	if (d && d->node->nlookup > 0 && !d->node->hold && d->node->names == d && !d->alias_next) {
		n = d->node;
		n->nchild++; /* a pin: a forget meanwhile does not free it */
	}
	pthread_mutex_unlock(&fe->tbl);
	if (!n)
		return NULL;
	hd = calloc(1, sizeof(*hd));
	if (hd && vault_file_hold(fe->v, path, &hd->h) == 0) {
		/* The file the node stands for, not another one. */
		if (vault_fgetattr(fe->v, hd->h, &st) == 0 && (uint64_t)st.st_ino == n->ino) {
			*hold = hd;
			return n;
		}
		(void)vault_release(fe->v, hd->h);
	}
	free(hd); /* a directory, or no memory: the node just has no name */
	return n;
}

/* After the vault call: a node left with no name keeps the hold; unpin it.
 * Then release what is no longer needed (not under tbl). */
static void fe_hold_after(struct fe *fe, struct fe_node *n, struct fe_hold *hold)
{
	if (!n)
		return;
	pthread_mutex_lock(&fe->tbl);
	if (!n->names && !n->hold) {
		n->hold = hold;
		hold = NULL;
	}
	n->nchild--;
	fe_node_maybe_free(fe, n);
	pthread_mutex_unlock(&fe->tbl);
	if (hold) {
		(void)vault_release(fe->v, hold->h);
		free(hold);
	}
	fe_holds_reap(fe);
}

/* Attributes of n: through fi or an open handle if there is one (cheap,
 * and the only way for an unlinked file), else by path. Under ns shared. */
static int fe_node_stat(fuse_req_t req, struct fe *fe, struct fe_node *n, struct fuse_file_info *fi,
			struct stat *st)
{
	struct vault_handle *h = fi ? fe_file_of(fi)->h : NULL;
	struct fe_caller fc;
	char *path;
	int err = 0;

	if (!h) {
		path = fe_path(fe, n, NULL, &err);
		if (path) {
			err = vault_getattr(fe->v, fe_caller_get(req, &fc), path, st);
			free(path);
			return err;
		}
		pthread_mutex_lock(&fe->tbl);
		h = fe_node_any_handle(n);
		pthread_mutex_unlock(&fe->tbl);
		if (!h)
			return -err;
	}
	return vault_fgetattr(fe->v, h, st);
}

static void fe_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fe *fe = fe_of(req);
	struct stat st;
	int err;

	pthread_rwlock_rdlock(&fe->ns);
	err = fe_node_stat(req, fe, fe_node_of(fe, ino), fi, &st);
	pthread_rwlock_unlock(&fe->ns);
	if (err)
		fuse_reply_err(req, fe_errno(err));
	else
		fuse_reply_attr(req, &st, FE_ATTR_TIMEOUT);
}

/* setattr: one vault call per attribute asked for, in the order chmod(2),
 * chown(2), truncate(2), utimensat(2) callers expect. A file with no name
 * left changes through fi's handle or the node's (invariant 7), as fchmod(2)
 * on an unlinked file of a local filesystem does. */
static void fe_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct fe *fe = fe_of(req);
	struct fe_node *n = fe_node_of(fe, ino);
	struct vault_handle *h = fi ? fe_file_of(fi)->h : NULL;
	const struct vault_caller *c;
	struct fe_caller fc;
	struct stat st;
	char *path;
	int err = 0, perr = 0;

	c = fe_caller_get(req, &fc);
	pthread_rwlock_rdlock(&fe->ns);
	path = fe_path(fe, n, NULL, &perr);
	if (!path && !h) {
		/* With the writeback cache the kernel writes an inode's times
		 * back when its last name goes: that must succeed too, or the
		 * kernel marks the inode's pages failed and a later open of
		 * the held inode gets EIO. */
		pthread_mutex_lock(&fe->tbl);
		h = fe_node_any_handle(n);
		pthread_mutex_unlock(&fe->tbl);
	}
	if (!path && !h)
		err = -perr;
	if (!err && (to_set & FUSE_SET_ATTR_MODE))
		err = path ? vault_chmod(fe->v, c, path, attr->st_mode & 07777)
			   : vault_fchmod(fe->v, c, h, attr->st_mode & 07777);
	if (!err && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
		uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;

		err = path ? vault_chown(fe->v, c, path, uid, gid) : vault_fchown(fe->v, c, h, uid, gid);
	}
	if (!err && (to_set & FUSE_SET_ATTR_SIZE)) {
		if (attr->st_size < 0)
			err = -EINVAL;
		else if (fi)
			err = vault_ftruncate(h, (uint64_t)attr->st_size);
		else if (path)
			err = vault_truncate(fe->v, c, path, (uint64_t)attr->st_size);
		else
			err = vault_file_truncate(fe->v, c, h, (uint64_t)attr->st_size);
	}
	if (!err && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
		struct timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};

		if (to_set & FUSE_SET_ATTR_ATIME)
			ts[0] = (to_set & FUSE_SET_ATTR_ATIME_NOW) ? (struct timespec){0, UTIME_NOW}
								   : attr->st_atim;
		if (to_set & FUSE_SET_ATTR_MTIME)
			ts[1] = (to_set & FUSE_SET_ATTR_MTIME_NOW) ? (struct timespec){0, UTIME_NOW}
								   : attr->st_mtim;
		err = path ? vault_utimens(fe->v, c, path, ts) : vault_futimens(fe->v, c, h, ts);
	}
	if (!err)
		err = fe_node_stat(req, fe, n, fi, &st);
	pthread_rwlock_unlock(&fe->ns);
	free(path);
	if (err)
		fuse_reply_err(req, fe_errno(err));
	else
		fuse_reply_attr(req, &st, FE_ATTR_TIMEOUT);
}

static void fe_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;
	int err = vault_statfs(fe_of(req)->v, &st);

	if (err)
		fuse_reply_err(req, fe_errno(err));
	else
		fuse_reply_statfs(req, &st);
}

/* ---- creating names ---- */

/* mkdir, mknod, symlink: one vault call on parent/name, then the entry. */
enum fe_make { FE_MKDIR, FE_MKNOD, FE_SYMLINK };

static void fe_make(fuse_req_t req, fuse_ino_t parent, const char *name, enum fe_make what,
		    mode_t mode, dev_t rdev, const char *target)
{
	struct fe *fe = fe_of(req);
	struct fe_node *pn = fe_node_of(fe, parent);
	const struct vault_caller *c;
	struct fe_caller fc;
	struct stat st;
	char *path;
	int err = 0;

	c = fe_caller_get(req, &fc);
	pthread_rwlock_rdlock(&fe->ns);
	path = fe_path(fe, pn, name, &err);
	if (path) {
		err = what == FE_MKDIR	 ? vault_mkdir(fe->v, c, path, mode)
		      : what == FE_MKNOD ? vault_mknod(fe->v, c, path, mode, rdev)
					 : vault_symlink(fe->v, c, target, path);
		if (!err)
			err = vault_getattr(fe->v, c, path, &st);
		err = -err;
	}
	if (!err)
		fe_reply_learned(req, fe, pn, name, &st);
	pthread_rwlock_unlock(&fe->ns);
	free(path);
	if (err)
		fuse_reply_err(req, fe_errno(-err));
}

static void fe_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	fe_make(req, parent, name, FE_MKDIR, mode, 0, NULL);
}

static void fe_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	fe_make(req, parent, name, FE_MKNOD, mode, rdev, NULL);
}

static void fe_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
	fe_make(req, parent, name, FE_SYMLINK, 0, 0, target);
}

static void fe_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct fe *fe = fe_of(req);
	struct fe_node *pn = fe_node_of(fe, newparent);
	const struct vault_caller *c;
	struct fe_caller fc;
	struct stat st;
	char *from, *to = NULL;
	int err = 0;

	c = fe_caller_get(req, &fc);
	pthread_rwlock_rdlock(&fe->ns);
	from = fe_path(fe, fe_node_of(fe, ino), NULL, &err);
	if (from)
		to = fe_path(fe, pn, newname, &err);
	if (to) {
		err = vault_link(fe->v, c, from, to);
		if (!err)
			err = vault_getattr(fe->v, c, to, &st);
		err = -err;
	}
	if (!err)
		fe_reply_learned(req, fe, pn, newname, &st);
	pthread_rwlock_unlock(&fe->ns);
	free(from);
	free(to);
	if (err)
		fuse_reply_err(req, fe_errno(-err));
}

static void fe_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fe *fe = fe_of(req);
	struct fe_caller fc;
	char *path, *buf = NULL;
	ssize_t n = 0;
	int err = 0;

	pthread_rwlock_rdlock(&fe->ns);
	path = fe_path(fe, fe_node_of(fe, ino), NULL, &err);
	assert(path || err); /* fe_path sets err when it fails */
	if (path) {
		buf = malloc(PATH_MAX + 1);
		n = buf ? vault_readlink(fe->v, fe_caller_get(req, &fc), path, buf, PATH_MAX)
			: -ENOMEM;
		err = n < 0 ? (int)-n : 0;
	}
	pthread_rwlock_unlock(&fe->ns);
	if (err) {
		fuse_reply_err(req, fe_errno(-err));
	} else {
		buf[n] = '\0';
		fuse_reply_readlink(req, buf);
	}
	free(buf);
	free(path);
}

/* ---- removing and moving names (ns exclusive, invariant 2) ---- */

static void fe_remove(fuse_req_t req, fuse_ino_t parent, const char *name, bool dir)
{
	struct fe *fe = fe_of(req);
	struct fe_node *pn = fe_node_of(fe, parent), *kept = NULL;
	struct fe_hold *hold = NULL;
	const struct vault_caller *c;
	struct fe_caller fc;
	char *path;
	int err = 0;

	c = fe_caller_get(req, &fc);
	pthread_rwlock_wrlock(&fe->ns);
	path = fe_path(fe, pn, name, &err);
	if (path) {
		if (!dir)
			kept = fe_hold_before(fe, pn, name, path, &hold);
		err = -(dir ? vault_rmdir(fe->v, c, path) : vault_unlink(fe->v, c, path));
		if (!err) {
			struct fe_dentry *d;

			pthread_mutex_lock(&fe->tbl);
			d = fe_dentry_find(fe, pn, name);
			if (d)
				fe_dentry_drop(fe, d);
			pthread_mutex_unlock(&fe->tbl);
		}
		fe_hold_after(fe, kept, hold);
	}
	pthread_rwlock_unlock(&fe->ns);
	free(path);
	fuse_reply_err(req, err ? fe_errno(-err) : 0);
}

static void fe_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fe_remove(req, parent, name, false);
}

static void fe_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fe_remove(req, parent, name, true);
}

/* Move dentry d to (parent, name) in the table. Under tbl. */
static int fe_dentry_move(struct fe *fe, struct fe_dentry *d, struct fe_node *parent,
			  const char *name)
{
	char *copy = strdup(name);
	struct fe_dentry **pp;
	size_t h;

	if (!copy)
		return -ENOMEM;
	for (pp = &fe->by_name[fe_hash_name(d->parent, d->name)]; *pp; pp = &(*pp)->hnext) {
		if (*pp == d) {
			*pp = d->hnext;
			break;
		}
	}
	parent->nchild++;
	d->parent->nchild--;
	{
		struct fe_node *old = d->parent;

		d->parent = parent;
		free(d->name);
		d->name = copy;
		h = fe_hash_name(parent, name);
		d->hnext = fe->by_name[h];
		fe->by_name[h] = d;
		fe_node_maybe_free(fe, old);
	}
	return 0;
}

/* True if both names are known and name one node (a rename between two
 * hard links of a file does nothing). */
static bool fe_same_node(struct fe *fe, struct fe_node *p1, const char *n1, struct fe_node *p2,
			 const char *n2)
{
	struct fe_dentry *a, *b;
	bool same;

	pthread_mutex_lock(&fe->tbl);
	a = fe_dentry_find(fe, p1, n1);
	b = fe_dentry_find(fe, p2, n2);
	same = a && b && a->node == b->node;
	pthread_mutex_unlock(&fe->tbl);
	return same;
}

static void fe_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct fe *fe = fe_of(req);
	struct fe_node *pn = fe_node_of(fe, parent), *npn = fe_node_of(fe, newparent);
	struct fe_node *kept = NULL;
	struct fe_hold *hold = NULL;
	const struct vault_caller *c;
	struct fe_caller fc;
	char *from, *to = NULL;
	int err = 0;

	c = fe_caller_get(req, &fc);
	pthread_rwlock_wrlock(&fe->ns);
	from = fe_path(fe, pn, name, &err);
	if (from)
		to = fe_path(fe, npn, newname, &err);
	if (to) {
		/* A rename over a name may take a file's last name (invariant 7). */
		if (!(flags & RENAME_EXCHANGE) && !fe_same_node(fe, pn, name, npn, newname))
			kept = fe_hold_before(fe, npn, newname, to, &hold);
		err = -vault_rename(fe->v, c, from, to, flags);
		if (!err) {
			struct fe_dentry *src, *dst;

			pthread_mutex_lock(&fe->tbl);
			src = fe_dentry_find(fe, pn, name);
			dst = fe_dentry_find(fe, npn, newname);
			if (flags & RENAME_EXCHANGE) {
				/* Swap which node each name means. */
				if (src && dst) {
					struct fe_node *a = src->node, *b = dst->node;
					struct fe_dentry **pp;

					for (pp = &a->names; *pp && *pp != src;
					     pp = &(*pp)->alias_next)
						;
					if (*pp)
						*pp = src->alias_next;
					for (pp = &b->names; *pp && *pp != dst;
					     pp = &(*pp)->alias_next)
						;
					if (*pp)
						*pp = dst->alias_next;
					src->node = b;
					dst->node = a;
					src->alias_next = b->names;
					b->names = src;
					dst->alias_next = a->names;
					a->names = dst;
				} else if (src) {
					fe_dentry_drop(fe, src);
				} else if (dst) {
					fe_dentry_drop(fe, dst);
				}
			} else {
				if (dst && dst != src) {
					/* Keep src's node alive while dst goes. */
					if (src)
						src->node->nchild++;
					fe_dentry_drop(fe, dst);
					if (src)
						src->node->nchild--;
				}
				if (src && fe_dentry_move(fe, src, npn, newname) != 0)
					fe_dentry_drop(fe, src);
			}
			pthread_mutex_unlock(&fe->tbl);
		}
		fe_hold_after(fe, kept, hold);
	}
	pthread_rwlock_unlock(&fe->ns);
	free(from);
	free(to);
	fuse_reply_err(req, err ? fe_errno(-err) : 0);
}

/* ---- files ---- */

/* Invariant 4. */
static int fe_open_flags(struct fe *fe, int flags)
{
	if (!fe->writeback)
		return flags;
	if ((flags & O_ACCMODE) == O_WRONLY)
		flags = (flags & ~O_ACCMODE) | O_RDWR;
	return flags & ~O_APPEND;
}

static bool fe_ts_equal(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* Wrap a fresh handle for node n; decide keep_cache (invariant 5). Under
 * ns shared. On failure the handle is released. */
static int fe_file_attach(struct fe *fe, struct fe_node *n, struct vault_handle *h,
			  const struct stat *st, struct fuse_file_info *fi)
{
	struct fe_file *ff = calloc(1, sizeof(*ff));

	if (!ff) {
		vault_release(fe->v, h);
		return -ENOMEM;
	}
	ff->h = h;
	ff->node = n;
	pthread_mutex_lock(&fe->tbl);
	fi->keep_cache = n->cache_valid && n->cache_size == st->st_size &&
			 fe_ts_equal(&n->cache_mtime, &st->st_mtim) &&
			 fe_ts_equal(&n->cache_ctime, &st->st_ctim);
	n->nopen++;
	ff->next = n->files;
	if (n->files)
		n->files->prev = ff;
	n->files = ff;
	pthread_mutex_unlock(&fe->tbl);
	fi->fh = (uint64_t)(uintptr_t)ff;
	return 0;
}

static void fe_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fe *fe = fe_of(req);
	struct fe_node *n = fe_node_of(fe, ino);
	struct vault_handle *h = NULL, *held = NULL;
	struct fe_caller fc;
	struct stat st;
	char *path;
	int err = 0;

	pthread_rwlock_rdlock(&fe->ns);
	path = fe_path(fe, n, NULL, &err);
	if (!path && err == ENOENT) {
		/* No name left: open the file the kernel still holds (invariant 7). */
		pthread_mutex_lock(&fe->tbl);
		held = fe_node_any_handle(n);
		pthread_mutex_unlock(&fe->tbl);
	}
	if (path || held) {
		err = held ? -vault_file_reopen(fe->v, fe_caller_open(req, &fc, fi->flags), held,
						fe_open_flags(fe, fi->flags), &h)
			   : -vault_open_file(fe->v, fe_caller_open(req, &fc, fi->flags), path,
					      fe_open_flags(fe, fi->flags), &h);
		if (!err)
			err = -vault_fgetattr(fe->v, h, &st);
		/* The name was ours under ns; a different file means the store
		 * changed under us: let the kernel look the name up again. */
		if (!err && (uint64_t)st.st_ino != n->ino)
			err = ESTALE;
		if (err && h)
			vault_release(fe->v, h);
		if (!err)
			err = -fe_file_attach(fe, n, h, &st, fi);
	}
	pthread_rwlock_unlock(&fe->ns);
	free(path);
	if (err) {
		fuse_reply_err(req, fe_errno(-err));
		return;
	}
	if (fuse_reply_open(req, fi) != 0) {
		/* Interrupted: the kernel will not release what it never saw. */
		struct fe_file *ff = fe_file_of(fi);

		pthread_mutex_lock(&fe->tbl);
		n->nopen--;
		if (ff->prev)
			ff->prev->next = ff->next;
		else
			n->files = ff->next;
		if (ff->next)
			ff->next->prev = ff->prev;
		fe_node_maybe_free(fe, n);
		pthread_mutex_unlock(&fe->tbl);
		vault_release(fe->v, ff->h);
		free(ff);
		fe_holds_reap(fe);
	}
}

static void fe_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct fe *fe = fe_of(req);
	struct fe_node *pn = fe_node_of(fe, parent), *n = NULL;
	struct vault_handle *h = NULL;
	struct fuse_entry_param e;
	struct fe_caller fc;
	struct stat st;
	char *path;
	int err = 0;

	pthread_rwlock_rdlock(&fe->ns);
	path = fe_path(fe, pn, name, &err);
	assert(path || err); /* fe_path sets err when it fails */
	if (path) {
		err = -vault_create(fe->v, fe_caller_open(req, &fc, fi->flags), path, mode,
				    fe_open_flags(fe, fi->flags), &h);
		if (!err) {
			err = -vault_fgetattr(fe->v, h, &st);
			if (err)
				vault_release(fe->v, h);
		}
	}
	if (!err) {
		pthread_mutex_lock(&fe->tbl);
		n = fe_node_learn(fe, pn, name, &st);
		pthread_mutex_unlock(&fe->tbl);
		if (!n) {
			vault_release(fe->v, h);
			err = ENOMEM;
		}
	}
	if (!err)
		err = -fe_file_attach(fe, n, h, &st, fi);
	pthread_rwlock_unlock(&fe->ns);
	free(path);
	if (err) {
		if (n) {
			pthread_mutex_lock(&fe->tbl);
			n->nlookup--;
			fe_node_maybe_free(fe, n);
			pthread_mutex_unlock(&fe->tbl);
		}
		fuse_reply_err(req, fe_errno(-err));
		return;
	}
	fe_entry_fill(fe, n, &st, &e);
	fuse_reply_create(req, &e, fi);
}

static void fe_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	char *buf = malloc(size ? size : 1);
	ssize_t n;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = off < 0 ? -EINVAL : vault_read(fe_file_of(fi)->h, buf, size, (uint64_t)off);
	if (n < 0)
		fuse_reply_err(req, fe_errno(n));
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void fe_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	ssize_t n = off < 0 ? -EINVAL : vault_write(fe_file_of(fi)->h, buf, size, (uint64_t)off);

	if (n < 0)
		fuse_reply_err(req, fe_errno(n));
	else
		fuse_reply_write(req, (size_t)n);
}

static void fe_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int err = vault_flush(fe_file_of(fi)->h);

	fuse_reply_err(req, err ? fe_errno(err) : 0);
}

static void fe_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	int err = vault_fsync(fe_file_of(fi)->h, datasync != 0);

	fuse_reply_err(req, err ? fe_errno(err) : 0);
}

static void fe_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fe *fe = fe_of(req);
	struct fe_file *ff = fe_file_of(fi);
	struct fe_node *n = ff->node;
	struct stat st;
	bool have = vault_fgetattr(fe->v, ff->h, &st) == 0;
	int err;

	pthread_mutex_lock(&fe->tbl);
	/* Invariant 5: what this inode's pages now hold. */
	n->cache_valid = have;
	if (have) {
		n->cache_size = st.st_size;
		n->cache_mtime = st.st_mtim;
		n->cache_ctime = st.st_ctim;
	}
	if (ff->prev)
		ff->prev->next = ff->next;
	else
		n->files = ff->next;
	if (ff->next)
		ff->next->prev = ff->prev;
	pthread_mutex_unlock(&fe->tbl);
	err = vault_release(fe->v, ff->h);
	pthread_mutex_lock(&fe->tbl);
	n->nopen--;
	fe_node_maybe_free(fe, n);
	pthread_mutex_unlock(&fe->tbl);
	fe_holds_reap(fe);
	free(ff);
	fuse_reply_err(req, err ? fe_errno(err) : 0);
}

static void fe_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	int err = off < 0 || len <= 0
		      ? -EINVAL
		      : vault_fallocate(fe_file_of(fi)->h, mode, (uint64_t)off, (uint64_t)len);

	fuse_reply_err(req, err ? fe_errno(err) : 0);
}

static void fe_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	off_t r = vault_lseek(fe_file_of(fi)->h, off, whence);

	if (r < 0)
		fuse_reply_err(req, fe_errno(r));
	else
		fuse_reply_lseek(req, r);
}

/* ---- directories ---- */

static void fe_dir_link(struct fe *fe, struct fe_dir *d)
{
	pthread_mutex_lock(&fe->tbl);
	d->next = fe->dirs;
	if (fe->dirs)
		fe->dirs->prev = d;
	fe->dirs = d;
	pthread_mutex_unlock(&fe->tbl);
}

static void fe_dir_free(struct fe *fe, struct fe_dir *d)
{
	pthread_mutex_lock(&fe->tbl);
	if (d->prev)
		d->prev->next = d->next;
	else
		fe->dirs = d->next;
	if (d->next)
		d->next->prev = d->prev;
	pthread_mutex_unlock(&fe->tbl);
	vault_dirlist_free(&d->l);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

static void fe_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fe_dir *d = calloc(1, sizeof(*d));

	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_init(&d->lock, NULL);
	fi->fh = (uint64_t)(uintptr_t)d;
	fe_dir_link(fe_of(req), d);
	if (fuse_reply_open(req, fi) != 0)
		fe_dir_free(fe_of(req), d);
}

static void fe_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fe_dir_free(fe_of(req), (struct fe_dir *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* Entries are ".", "..", then the listing; an entry's offset is its index
 * + 1. The listing is fetched at offset 0 (a rewinddir refetches). */
static void fe_readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			      struct fuse_file_info *fi, bool plus)
{
	struct fe *fe = fe_of(req);
	struct fe_node *dn = fe_node_of(fe, ino);
	struct fe_dir *d = (struct fe_dir *)(uintptr_t)fi->fh;
	struct fe_caller fc;
	char *buf = NULL, *path = NULL;
	size_t used = 0;
	int err = 0;

	pthread_mutex_lock(&d->lock);
	pthread_rwlock_rdlock(&fe->ns);
	if (off == 0 || !d->have || (plus && !d->plus)) {
		vault_dirlist_free(&d->l);
		d->have = false;
		path = fe_path(fe, dn, NULL, &err);
		if (!path)
			goto out;
		err = -vault_readdir(fe->v, fe_caller_get(req, &fc), path, plus, &d->l);
		if (err)
			goto out;
		d->have = true;
		d->plus = plus;
	}
	buf = malloc(size);
	if (!buf) {
		err = ENOMEM;
		goto out;
	}
	for (size_t i = (size_t)off; i < d->l.n + 2; i++) {
		const char *name = i == 0 ? "." : i == 1 ? ".." : d->l.ents[i - 2].name;
		struct stat st = {0};
		size_t need;

		if (i >= 2)
			st = d->l.ents[i - 2].st;
		else
			st.st_mode = S_IFDIR;
		if (!plus) {
			if (st.st_ino == 0)
				st.st_ino = FE_UNKNOWN_INO;
			need = fuse_add_direntry(req, buf + used, size - used, name, &st,
						 (off_t)(i + 1));
		} else if (i < 2 || st.st_ino == 0) {
			/* No node: the kernel lists it and looks it up later. */
			struct fuse_entry_param e = {0};

			e.attr.st_mode = i < 2 ? S_IFDIR : st.st_mode;
			e.attr.st_ino = FE_UNKNOWN_INO;
			need = fuse_add_direntry_plus(req, buf + used, size - used, name, &e,
						      (off_t)(i + 1));
		} else {
			struct fuse_entry_param e;
			struct fe_node *n;

			/* Take the lookup first; give it back if it does not fit. */
			pthread_mutex_lock(&fe->tbl);
			n = fe_node_learn(fe, dn, name, &st);
			pthread_mutex_unlock(&fe->tbl);
			if (!n) {
				if (used == 0)
					err = ENOMEM;
				break;
			}
			fe_entry_fill(fe, n, &st, &e);
			need = fuse_add_direntry_plus(req, buf + used, size - used, name, &e,
						      (off_t)(i + 1));
			if (need > size - used) {
				pthread_mutex_lock(&fe->tbl);
				n->nlookup--;
				fe_node_maybe_free(fe, n);
				pthread_mutex_unlock(&fe->tbl);
			}
		}
		if (need > size - used)
			break;
		used += need;
	}
out:
	pthread_rwlock_unlock(&fe->ns);
	pthread_mutex_unlock(&d->lock);
	if (err)
		fuse_reply_err(req, fe_errno(-err));
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
	free(path);
}

static void fe_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	fe_readdir_common(req, ino, size, off, fi, false);
}

static void fe_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	fe_readdir_common(req, ino, size, off, fi, true);
}

/* Syncing a directory makes its entries durable (SQLite does it after
 * every rollback-journal commit): one fsync of that store directory. */
static void fe_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fe *fe = fe_of(req);
	struct fe_caller fc;
	char *path;
	int err = 0;

	pthread_rwlock_rdlock(&fe->ns);
	path = fe_path(fe, fe_node_of(fe, ino), NULL, &err);
	if (path)
		err = -vault_fsyncdir(fe->v, fe_caller_get(req, &fc), path);
	pthread_rwlock_unlock(&fe->ns);
	free(path);
	fuse_reply_err(req, err);
}

/* ---- extended attributes ---- */

static void fe_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	struct fe *fe = fe_of(req);
	struct fe_caller fc;
	char *path;
	int err = 0;

	pthread_rwlock_rdlock(&fe->ns);
	path = fe_path(fe, fe_node_of(fe, ino), NULL, &err);
	if (path)
		err =
		    -vault_setxattr(fe->v, fe_caller_get(req, &fc), path, name, value, size, flags);
	pthread_rwlock_unlock(&fe->ns);
	free(path);
	fuse_reply_err(req, err ? fe_errno(-err) : 0);
}

/* getxattr and listxattr: size 0 asks for the length only. */
static void fe_xattr_read(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fe *fe = fe_of(req);
	struct fe_caller fc;
	const struct vault_caller *c;
	char *path, *buf = NULL;
	ssize_t n = 0;
	int err = 0;

	c = fe_caller_get(req, &fc);
	if (size) {
		buf = malloc(size);
		if (!buf) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
	}
	pthread_rwlock_rdlock(&fe->ns);
	path = fe_path(fe, fe_node_of(fe, ino), NULL, &err);
	if (path) {
		n = name ? vault_getxattr(fe->v, c, path, name, buf, size)
			 : vault_listxattr(fe->v, c, path, buf, size);
		if (n < 0)
			err = (int)-n;
	}
	pthread_rwlock_unlock(&fe->ns);
	if (err)
		fuse_reply_err(req, fe_errno(-err));
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
	free(path);
}

static void fe_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	fe_xattr_read(req, ino, name, size);
}

static void fe_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	fe_xattr_read(req, ino, NULL, size);
}

static void fe_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct fe *fe = fe_of(req);
	struct fe_caller fc;
	char *path;
	int err = 0;

	pthread_rwlock_rdlock(&fe->ns);
	path = fe_path(fe, fe_node_of(fe, ino), NULL, &err);
	if (path)
		err = -vault_removexattr(fe->v, fe_caller_get(req, &fc), path, name);
	pthread_rwlock_unlock(&fe->ns);
	free(path);
	fuse_reply_err(req, err ? fe_errno(-err) : 0);
}

/* ---- session ---- */

/* Read-ahead of the mount, in KiB: one request of max_write bytes. */
#define FE_READAHEAD_KB (FE_MAX_WRITE_BYTES >> 10)

/* The kernel gives a FUSE mount 128 KiB of read-ahead and lets INIT only
 * lower it; a sequential reader then costs one request and one wake-up per
 * 128 KiB. Raise it through the mount's backing device in sysfs (root
 * only; otherwise the default stays). Runs in INIT, before the reply: the
 * kernel keeps the smaller of this and the reply's max_readahead. The
 * device number comes from /proc/self/mountinfo, since a stat of the
 * mount point would wait for this very INIT. */
static void fe_readahead_raise(const char *mountpoint)
{
	char *line = NULL, path[96];
	size_t cap = 0;
	unsigned maj = 0, min = 0, m1, m2;
	bool found = false;
	FILE *fp;
	int fd;

	if (strpbrk(mountpoint, " \t\n\\"))
		return; /* escaped in mountinfo; keep the default */
	fp = fopen("/proc/self/mountinfo", "re");
	if (!fp)
		return;
	while (getline(&line, &cap, fp) > 0) {
		char mp[4096];

		/* "id parent maj:min root mountpoint ..."; the last match is the
		 * one mounted on top. */
		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &m1, &m2, mp) == 3 &&
		    strcmp(mp, mountpoint) == 0) {
			maj = m1;
			min = m2;
			found = true;
		}
	}
	free(line);
	fclose(fp);
	if (!found)
		return;
	snprintf(path, sizeof path, "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		char kb[16];
		int n = snprintf(kb, sizeof kb, "%u\n", FE_READAHEAD_KB);

		if (write(fd, kb, (size_t)n) != n) {
			/* not permitted: the kernel's default stays */
		}
		close(fd);
	}
}

static void fe_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fe *fe = userdata;

	if ((conn->capable & FUSE_CAP_WRITEBACK_CACHE) && !fe->o->read_only) {
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
		fe->writeback = true;
		vault_times_by_caller(fe->v); /* the kernel keeps mtimes */
	}
	if (conn->capable & FUSE_CAP_POSIX_ACL)
		conn->want |= FUSE_CAP_POSIX_ACL;
	/* The vault applies the umask itself, or a default ACL instead. */
	if (conn->capable & FUSE_CAP_DONT_MASK)
		conn->want |= FUSE_CAP_DONT_MASK;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS | (conn->capable & FUSE_CAP_READDIRPLUS_AUTO);
	/* Invariant 3. */
	conn->want &= ~FUSE_CAP_NO_OPEN_SUPPORT;
	/* Locks stay in the kernel (one host per writable vault). */
	conn->want &= ~(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
	/* libfuse caps this at its buffer size and sets max_pages to match. */
	conn->max_write = FE_MAX_WRITE_BYTES;
	conn->max_readahead = FE_READAHEAD_KB << 10;
	fe_readahead_raise(fe->o->mountpoint);
	conn->time_gran = 1;

	if (fe->o->ready_fd >= 0) {
		const char ok = 0;

		if (write(fe->o->ready_fd, &ok, 1) != 1)
			perror("strongroom: ready pipe");
		close(fe->o->ready_fd);
		fe->ready_closed = true;
	}
	if (fe->o->log_fd >= 0)
		dup2(fe->o->log_fd, STDERR_FILENO);
}

static const struct fuse_lowlevel_ops fe_ops = {
    .init = fe_init,
    .lookup = fe_lookup,
    .forget = fe_forget,
    .forget_multi = fe_forget_multi,
    .getattr = fe_getattr,
    .setattr = fe_setattr,
    .readlink = fe_readlink,
    .mknod = fe_mknod,
    .mkdir = fe_mkdir,
    .unlink = fe_unlink,
    .rmdir = fe_rmdir,
    .symlink = fe_symlink,
    .rename = fe_rename,
    .link = fe_link,
    .open = fe_open,
    .read = fe_read,
    .write = fe_write,
    .flush = fe_flush,
    .release = fe_release,
    .fsync = fe_fsync,
    .opendir = fe_opendir,
    .readdir = fe_readdir,
    .readdirplus = fe_readdirplus,
    .releasedir = fe_releasedir,
    .fsyncdir = fe_fsyncdir,
    .statfs = fe_statfs,
    .setxattr = fe_setxattr,
    .getxattr = fe_getxattr,
    .listxattr = fe_listxattr,
    .removexattr = fe_removexattr,
    .create = fe_create,
    .fallocate = fe_fallocate,
    .lseek = fe_lseek,
};

/* "-o" options for the session: ours first, the caller's extra ones last. */
static int fe_args_build(const struct fe_options *o, struct fuse_args *args)
{
	char *opts = NULL;
	char *fsname = NULL;
	int err = -ENOMEM;

	if (fuse_opt_add_arg(args, "strongroom") ||
	    fuse_opt_add_opt(&opts, "default_permissions") ||
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

/* Release the handles the kernel never released (a forced or lazy end of
 * the session): each seals its file. @return the first error. */
static int fe_files_release(struct fe *fe)
{
	int err = 0;

	for (size_t i = 0; i < FE_HASH_BUCKETS; i++) {
		for (struct fe_node *n = fe->by_ino[i]; n; n = n->hnext) {
			while (n->files) {
				struct fe_file *ff = n->files;
				int e;

				n->files = ff->next;
				n->nopen--;
				e = vault_release(fe->v, ff->h);
				if (e && !err)
					err = e;
				free(ff);
			}
			if (n->hold) {
				(void)vault_release(fe->v, n->hold->h);
				free(n->hold);
				n->hold = NULL;
			}
		}
	}
	fe_holds_reap(fe);
	return err;
}

/* Free what is left of the table after the session ended. */
static void fe_table_free(struct fe *fe)
{
	while (fe->dirs)
		fe_dir_free(fe, fe->dirs);
	for (size_t i = 0; i < FE_HASH_BUCKETS; i++) {
		while (fe->by_name[i]) {
			struct fe_dentry *d = fe->by_name[i];

			fe->by_name[i] = d->hnext;
			free(d->name);
			free(d);
		}
	}
	for (size_t i = 0; i < FE_HASH_BUCKETS; i++) {
		while (fe->by_ino[i]) {
			struct fe_node *n = fe->by_ino[i];

			fe->by_ino[i] = n->hnext;
			while (n->files) {
				struct fe_file *ff = n->files;

				n->files = ff->next;
				free(ff);
			}
			free(n);
		}
	}
}

/* Record the kernel's own refusals when asked or when the kernel's audit
 * is on (fe_kaudit.h). @return 0, or -errno if they were required. */
static int fe_kernel_denials_start(struct fe *fe)
{
	struct vault_watch_status st;
	const char *why = NULL;
	int r;

	vault_watch_status(fe->v, &st);
	if (fe->o->kernel_denials == FE_KDENIALS_OFF || !st.audited) {
		if (fe->o->kernel_denials == FE_KDENIALS_ON) {
			fprintf(stderr,
				"strongroom: %s: --audit-kernel-denials needs the audit trail\n",
				fe->o->mountpoint);
			return -EINVAL;
		}
		return 0;
	}
	r = fe_kaudit_start(fe->v, fe->o->mountpoint, fe_kaudit_path, fe, &fe->kaudit, &why);
	if (r < 0 && fe->o->kernel_denials == FE_KDENIALS_ON) {
		fprintf(stderr, "strongroom: %s: cannot record the kernel's refusals: %s\n",
			fe->o->mountpoint, why ? why : strerror(-r));
		return r;
	}
	return 0;
}

int fe_run(struct vault *v, const struct fe_options *o)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config *loop = NULL;
	struct fuse_session *se = NULL;
	pthread_rwlockattr_t rwa;
	struct fe *fe;
	bool mounted = false, handlers = false;
	int err, rc;

	fe = calloc(1, sizeof(*fe));
	if (!fe) {
		if (o->ready_fd >= 0)
			close(o->ready_fd);
		return -ENOMEM;
	}
	fe->v = v;
	fe->o = o;
	fe->root.is_root = true;
	/* Renames must not starve behind a stream of lookups; nothing takes
	 * ns twice in one thread, so writer preference cannot deadlock. */
	pthread_rwlockattr_init(&rwa);
	pthread_rwlockattr_setkind_np(&rwa, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&fe->ns, &rwa);
	pthread_rwlockattr_destroy(&rwa);
	pthread_mutex_init(&fe->tbl, NULL);

	err = fe_args_build(o, &args);
	if (err)
		goto out;
	se = fuse_session_new(&args, &fe_ops, sizeof(fe_ops), fe);
	if (!se) {
		err = -EINVAL; /* libfuse has said which option */
		goto out;
	}
	fe->se = se;
	/* Handlers first: a SIGINT or SIGTERM that comes as soon as the mount
	 * is visible must stop it cleanly, not kill the driver. libfuse only
	 * takes over a signal left at its default, and a driver started in
	 * the background of a script inherits SIGINT ignored: the signals
	 * that stop the mount are put back to their default first. */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	if (fuse_set_signal_handlers(se) != 0) {
		err = -EIO;
		goto out;
	}
	handlers = true;
	if (fuse_session_mount(se, o->mountpoint) != 0) {
		err = -EIO; /* libfuse has said why */
		goto out;
	}
	mounted = true;
	err = fe_kernel_denials_start(fe);
	if (err)
		goto out;
	loop = fuse_loop_cfg_create();
	if (!loop) {
		err = -ENOMEM;
		goto out;
	}
	fuse_loop_cfg_set_idle_threads(loop, FE_MAX_IDLE_THREADS);
	fuse_loop_cfg_set_max_threads(loop, FE_MAX_THREADS);
	rc = fuse_session_loop_mt(se, loop);
	/* rc > 0 is the signal that stopped the loop: a clean stop. */
	if (rc < 0) {
		fprintf(stderr, "strongroom: %s: request loop failed: %s\n", o->mountpoint,
			strerror(-rc));
		err = rc;
	} else {
		err = 0;
	}
out:
	fe_kaudit_stop(fe->kaudit); /* it writes to the trail: before the vault closes */
	fe->kaudit = NULL;
	if (handlers)
		fuse_remove_signal_handlers(se);
	if (mounted)
		fuse_session_unmount(se);
	if (mounted) {
		rc = fe_files_release(fe);
		if (rc)
			fprintf(stderr,
				"strongroom: %s: sealing open files at unmount failed: %s\n",
				o->fsname, strerror(-rc));
		rc = vault_sync(v);
		if (rc) {
			fprintf(stderr, "strongroom: %s: sealing at unmount failed: %s\n",
				o->fsname, strerror(-rc));
			if (!err)
				err = rc;
		}
	}
	if (se)
		fuse_session_destroy(se);
	if (loop)
		fuse_loop_cfg_destroy(loop);
	if (o->ready_fd >= 0 && !fe->ready_closed)
		close(o->ready_fd);
	fuse_opt_free_args(&args);
	fe_table_free(fe);
	pthread_rwlock_destroy(&fe->ns);
	pthread_mutex_destroy(&fe->tbl);
	free(fe);
	return err;
}
