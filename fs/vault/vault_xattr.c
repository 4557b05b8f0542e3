/* vault_xattr.c - extended attributes, POSIX ACLs and levels of objects.
 *
 * A file's xattrs live in its engine seal (vf_*xattr), a directory's in the
 * attribute blob of its .sr-dir (fmt_xattr_*): both authenticated, so
 * nobody with write access to the store can grant themselves an ACL entry.
 *
 * Invariants kept here:
 *  - An access ACL and the mode bits agree: setting the ACL sets the mode
 *    (and an ACL the mode can say alone is not stored), chmod rewrites the
 *    ACL's USER_OBJ, MASK-or-GROUP_OBJ and OTHER (vault_node.c).
 *  - A new object under a directory with a default ACL gets the inherited
 *    access ACL and no umask; a new directory also inherits the default
 *    ACL; without a default ACL the umask applies (vault_new_mode).
 *  - user.strongroom.level is virtual: read from the authenticated level,
 *    never stored, never listed.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "strongroom/store.h"
#include "vault_internal.h"

int vault_new_mode(const struct vault *v, const struct vault_caller *c, const struct vault_dir *d,
		   mode_t mode, bool is_dir, mode_t *mode_out, uint32_t *gid_out, void **acc,
		   size_t *acc_len, void **dflt, size_t *dflt_len)
{
	mode_t perm = mode & 07777;
	unsigned char *dv = NULL;
	ssize_t n = -ENODATA;
	int r = 0;

	*acc = *dflt = NULL;
	*acc_len = *dflt_len = 0;
	*gid_out = c->gid;
	if (d->mode & S_ISGID) {
		/* BSD group semantics on setgid directories, as Linux does. */
		*gid_out = d->gid;
		if (is_dir)
			perm |= S_ISGID;
	}
	if (d->xattrs)
		n = fmt_xattr_get(d->xattrs, d->xattrs_len, VAULT_XATTR_ACL_DEFAULT, NULL, 0);
	if (n > (ssize_t)VAULT_ACL_HEADER_BYTES) {
		dv = malloc((size_t)n);
		if (!dv)
			return -ENOMEM;
		n = fmt_xattr_get(d->xattrs, d->xattrs_len, VAULT_XATTR_ACL_DEFAULT, dv,
				  (size_t)n);
	}
	if (!dv || n <= (ssize_t)VAULT_ACL_HEADER_BYTES || vault_acl_check(dv, (size_t)n) <= 0) {
		*mode_out = perm & ~(c->umask & 0777);
		goto out;
	}
	r = vault_acl_inherit(dv, (size_t)n, &perm, acc, acc_len);
	if (r < 0)
		goto out;
	*mode_out = perm;
	if (is_dir) {
		*dflt = dv;
		*dflt_len = (size_t)n;
		dv = NULL;
	}
out:
	free(dv);
	return r;
}

/* Which names the vault keeps. */
static int xattr_name_check(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > 255)
		return -ERANGE;
	if (strncmp(name, "user.", 5) == 0 || strncmp(name, "trusted.", 8) == 0 ||
	    strncmp(name, "security.", 9) == 0 || strcmp(name, VAULT_XATTR_ACL_ACCESS) == 0 ||
	    strcmp(name, VAULT_XATTR_ACL_DEFAULT) == 0)
		return 0;
	return -EOPNOTSUPP;
}

static ssize_t copy_out(const char *s, size_t len, void *val, size_t cap)
{
	if (cap == 0)
		return (ssize_t)len;
	if (cap < len)
		return -ERANGE;
	memcpy(val, s, len);
	return (ssize_t)len;
}

static ssize_t level_get(const struct vault *v, unsigned level, void *val, size_t cap)
{
	const struct kr_config *cfg = kr_keyring_config(v->kr);

	if (level >= cfg->nlevels)
		return -EUCLEAN;
	return copy_out(cfg->levels[level].name, strlen(cfg->levels[level].name), val, cap);
}

/* The directory or the open file a path names (v->ns held). Exactly one of
 * *d and *of is set on success. */
static int node_get(struct vault *v, struct vault_loc *loc, struct vault_dir **d,
		    struct vault_ofile **of, struct stat *stp)
{
	struct stat tmp, *st = stp ? stp : &tmp;
	int r;

	*d = NULL;
	*of = NULL;
	if (!loc->dir) {
		r = vault_dir_get(v, "/", d);
	} else {
		r = store_fstatat(loc->dir->fd, loc->sn.name, st);
		if (r < 0)
			return r;
		if (S_ISDIR(st->st_mode))
			r = vault_dir_get(v, loc->path, d);
		else
			r = vault_ofile_get(v, loc->dir->fd, loc->sn.name, true, st, of);
	}
	assert(r < 0 || *d || *of); /* on success one of the two is set */
	return r;
}

static int node_put(struct vault *v, struct vault_loc *loc, struct vault_dir *d,
		    struct vault_ofile *of)
{
	vault_dir_put(v, d);
	return vault_ofile_put(v, of, loc->dir ? loc->dir->fd : -1, loc->sn.name);
}

ssize_t vault_getxattr(struct vault *v, const struct vault_caller *c, const char *path, const char *name,
		       void *val, size_t cap)
{
	struct vault_ofile *of = NULL;
	struct vault_dir *d = NULL;
	struct vault_loc loc;
	struct vf_attr a;
	ssize_t r;

	pthread_rwlock_rdlock(&v->ns);
	r = vault_loc_get_as(v, c, path, &loc);
	if (r < 0)
		goto unlock;
	r = node_get(v, &loc, &d, &of, NULL);
	if (r < 0)
		goto out;
	if (strcmp(name, VAULT_XATTR_LEVEL) == 0) {
		if (d) {
			r = level_get(v, d->level, val, cap);
		} else {
			r = vf_getattr(of->f, &a);
			if (r == 0)
				r = level_get(v, a.level, val, cap);
		}
		goto out;
	}
	r = xattr_name_check(name);
	if (r < 0)
		goto out;
	if (d)
		r = d->xattrs ? fmt_xattr_get(d->xattrs, d->xattrs_len, name, val, cap) : -ENODATA;
	else
		r = vf_getxattr(of->f, name, val, cap);
out:
	node_put(v, &loc, d, of);
	vault_loc_put(v, &loc);
unlock:
	pthread_rwlock_unlock(&v->ns);
	return vault_audit_path(v, c, 0, path, NULL, "getxattr", (int)r);
}

ssize_t vault_listxattr(struct vault *v, const struct vault_caller *c, const char *path, char *out,
			size_t cap)
{
	struct vault_ofile *of = NULL;
	struct vault_dir *d = NULL;
	struct vault_loc loc;
	ssize_t r;

	pthread_rwlock_rdlock(&v->ns);
	r = vault_loc_get_as(v, c, path, &loc);
	if (r < 0)
		goto unlock;
	r = node_get(v, &loc, &d, &of, NULL);
	if (r < 0)
		goto out;
	if (d)
		r = d->xattrs ? fmt_xattr_list(d->xattrs, d->xattrs_len, out, cap) : 0;
	else
		r = vf_listxattr(of->f, out, cap);
out:
	node_put(v, &loc, d, of);
	vault_loc_put(v, &loc);
unlock:
	pthread_rwlock_unlock(&v->ns);
	return vault_audit_path(v, c, 0, path, NULL, "listxattr", (int)r);
}

/* Reclassify: only an empty directory for now (nothing inside to
 * re-encrypt); files and full directories need the re-encrypting path. */
static int level_set(struct vault *v, struct vault_dir *d, const void *val, size_t len)
{
	char name[KR_LEVEL_NAME_MAX + 1];
	struct vault_dir nd;
	int level, r;

	while (len > 0 && (((const char *)val)[len - 1] == '\n' || ((const char *)val)[len - 1] == '\0'))
		len--;
	if (len == 0 || len > KR_LEVEL_NAME_MAX)
		return -EINVAL;
	memcpy(name, val, len);
	name[len] = '\0';
	level = kr_level_index(v->kr, name);
	if (level < 0)
		return -EINVAL;
	if (!d)
		return -EOPNOTSUPP;
	if ((unsigned)level == d->level)
		return 0;
	if (!kr_level_held(v->kr, (unsigned)level))
		return -ENOKEY;
	r = vault_dir_empty(d->fd, false);
	if (r < 0)
		return r;
	if (r == 0)
		return -EOPNOTSUPP;
	nd = *d;
	nd.level = (unsigned)level;
	return vault_dir_commit(v, d, &nd);
}

/* The blob of d with name set (val != NULL) or removed, committed. */
static int dir_xattr_change(struct vault *v, struct vault_dir *d, const char *name, const void *val,
			    size_t len, int flags, mode_t *mode)
{
	struct vault_dir nd = *d;
	unsigned char *blob = NULL;
	int r;

	if (d->xattrs_len) {
		blob = malloc(d->xattrs_len);
		if (!blob)
			return -ENOMEM;
		memcpy(blob, d->xattrs, d->xattrs_len);
	}
	nd.xattrs = blob;
	if (val)
		r = fmt_xattr_set(&nd.xattrs, &nd.xattrs_len, name, val, len, flags);
	else
		r = fmt_xattr_remove(&nd.xattrs, &nd.xattrs_len, name);
	blob = nd.xattrs;
	if (r == -ENODATA && !val && mode)
		r = 0; /* an ACL the mode says alone, replacing none */
	if (r < 0)
		goto out;
	if (mode)
		nd.mode = (d->mode & ~(mode_t)0777) | (*mode & 0777);
	r = vault_dir_commit(v, d, &nd);
	if (r == 0)
		blob = NULL;
out:
	free(blob);
	return r;
}

static int file_xattr_change(struct vf_file *f, const char *name, const void *val, size_t len,
			     int flags, mode_t *mode)
{
	int r;

	if (val)
		r = vf_setxattr(f, name, val, len, flags);
	else
		r = vf_removexattr(f, name);
	if (r == -ENODATA && !val && mode)
		r = 0; /* an ACL the mode says alone, replacing none */
	if (r == 0 && mode) {
		struct vf_attr a;

		r = vf_getattr(f, &a);
		if (r == 0)
			r = vf_chmod_chown(f, (a.mode & 07000) | (*mode & 0777), (uint32_t)-1,
					   (uint32_t)-1);
	}
	return r;
}

/* One xattr change on a path; val NULL removes. */
static int xattr_change(struct vault *v, const char *path, const char *name, const void *val,
			size_t len, int flags)
{
	struct vault_ofile *of = NULL;
	struct vault_dir *d = NULL;
	struct vault_loc loc;
	mode_t perm, *mode = NULL;
	bool equiv = false, sole = false, empty_set = false;
	struct stat st;
	int r, e;

	if (vault_ro(v))
		return -EROFS;
	if (strcmp(name, VAULT_XATTR_LEVEL) != 0) {
		r = xattr_name_check(name);
		if (r < 0)
			return r;
	}
	if (val && len > VAULT_XATTR_VALUE_MAX)
		return -E2BIG;
	pthread_rwlock_wrlock(&v->ns);
	r = vault_loc_get(v, path, &loc);
	if (r < 0)
		goto unlock;
	r = node_get(v, &loc, &d, &of, &st);
	if (r < 0)
		goto out;
	sole = of && vault_ofile_sole(v, of);
	if (strcmp(name, VAULT_XATTR_LEVEL) == 0) {
		r = val ? level_set(v, d, val, len) : -EOPNOTSUPP;
		goto out;
	}
	if (strcmp(name, VAULT_XATTR_ACL_DEFAULT) == 0 && !d) {
		r = val ? -EACCES : -ENODATA;
		goto out;
	}
	if (val && (strcmp(name, VAULT_XATTR_ACL_ACCESS) == 0 ||
		    strcmp(name, VAULT_XATTR_ACL_DEFAULT) == 0)) {
		r = vault_acl_check(val, len);
		if (r < 0)
			goto out;
		if (r == 0) { /* an empty ACL: none at all */
			val = NULL;
			flags = 0;
			empty_set = true;
		}
	}
	if (val && strcmp(name, VAULT_XATTR_ACL_ACCESS) == 0) {
		/* The ACL decides the mode; one the mode says alone goes. */
		r = vault_acl_mode(val, len, &perm, &equiv);
		if (r < 0)
			goto out;
		mode = &perm;
		if (equiv)
			val = NULL;
	}
	if (d)
		r = dir_xattr_change(v, d, name, val, len, flags, mode);
	else
		r = file_xattr_change(of->f, name, val, len, flags, mode);
	if (r == -ENODATA && empty_set)
		r = 0; /* setting "no ACL" where there is none */
out:
	e = node_put(v, &loc, d, of);
	if (r == 0)
		r = e;
	if (r == 0 && sole)
		vault_times_restore(loc.dir->fd, loc.sn.name, &st);
	vault_loc_put(v, &loc);
unlock:
	pthread_rwlock_unlock(&v->ns);
	return r;
}

int vault_setxattr(struct vault *v, const struct vault_caller *c, const char *path, const char *name,
		   const void *val, size_t len, int flags)
{
	static const char empty;
	char old[KR_LEVEL_NAME_MAX + 1]; /* for the audit record of a level change */

	vault_audit_level_before(v, c, path, name, old);
	if (vault_policy_xattr_ours(name))
		return vault_audit_xattr(v, c, path, name, val ? val : &empty, len, old,
					 vault_policy_setxattr(v, c, path, name, val ? val : &empty, len, flags));
	return vault_audit_xattr(v, c, path, name, val ? val : &empty, len, old,
				 xattr_change(v, path, name, val ? val : &empty, len, flags));
}

int vault_removexattr(struct vault *v, const struct vault_caller *c, const char *path, const char *name)
{
	if (vault_policy_xattr_ours(name))
		return vault_audit_xattr(v, c, path, name, NULL, 0, "",
					 vault_policy_setxattr(v, c, path, name, NULL, 0, 0));
	return vault_audit_xattr(v, c, path, name, NULL, 0, "", xattr_change(v, path, name, NULL, 0, 0));
}
