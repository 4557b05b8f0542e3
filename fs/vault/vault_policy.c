/* vault_policy.c - where the vault meets the policy: clearance checks,
 * names of objects classified above their folder, reclassification, and the
 * compiled policy kept in the root directory's metadata.
 *
 * The policy itself is pure (fs/policy); this file feeds it the caller and
 * the authenticated levels the vault knows, and does the store work a level
 * change needs.
 *
 * Invariants kept here:
 *  1. The compiled policy lives in the root's attribute blob under
 *     POL_XATTR (authenticated like every .sr-dir); v->policy is its parsed
 *     form, replaced only with v->ns held exclusive and read with v->ns held
 *     (shared or exclusive). No policy: nobody is limited by clearance.
 *  2. A directory's top_level is the highest level on its path from the
 *     root, itself included. Opening, looking up or listing anything below
 *     a directory needs clearance for its top_level; opening a file also
 *     for the file's own level. Denials go through vault_policy_denied, the
 *     one place where the audit trail records them.
 *  3. The store name of an entry is encrypted under the name keys of
 *     max(folder level, entry level) (docs/format.md "Names"), so a mount
 *     without the key of a file classified above its folder cannot read its
 *     name. Lookups try the folder's level first, then every other held
 *     level; listings decrypt with whichever held level authenticates.
 *  4. Reclassifying a file writes a FMT_TMP_PREFIX sibling at the new level
 *     (vf_copy_to_level, fsynced) and renames it over the old name: a crash
 *     leaves the old file or the new one. When the name level changes too,
 *     the copy is renamed to its new name first and the old name removed
 *     after, so a crash leaves both at worst (never neither), and running
 *     the same change again finishes it. A file with an open handle is
 *     refused with EBUSY; a hard-linked one with EMLINK.
 *  5. Reclassifying a folder rewrites its .sr-dir, then renames each entry
 *     whose name level changes, then the folder's own name. Every step is
 *     one atomic rename and setting the same level again redoes whatever a
 *     crash left undone (lookups find names under any held level meanwhile).
 *  6. A rename gives the entry the name of its name level in the target
 *     folder before it moves (a crash cannot leave a restricted name under
 *     a lower key), and a file renamed over a file of a higher level is
 *     first re-encrypted at that level, so saving a document through a
 *     temporary file and a rename does not lower its classification.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "strongroom/policy.h"
#include "strongroom/store.h"
#include "vault_internal.h"

#define LONGNAME_LEN (FMT_LONGNAME_BYTES - 1)

/* ---- the policy ---- */

static int level_names(const struct vault *v, const char *names[KR_MAX_LEVELS])
{
	const struct kr_config *cfg = kr_keyring_config(v->kr);

	for (unsigned i = 0; i < cfg->nlevels; i++)
		names[i] = cfg->levels[i].name;
	return (int)cfg->nlevels;
}

static unsigned top_level(const struct vault *v)
{
	return kr_keyring_config(v->kr)->nlevels - 1;
}

/* Parse a compiled policy. @return 0 and *out owned, or -EINVAL. */
static int policy_parse(const struct vault *v, const void *val, size_t len, struct pol_policy **out)
{
	const char *names[KR_MAX_LEVELS];
	struct pol_error err;
	int n = level_names(v, names);

	if (pol_compiled_parse(val, len, names, (unsigned)n, out, &err) < 0)
		return -EINVAL;
	return 0;
}

int vault_policy_load(struct vault *v)
{
	const struct vault_dir *root = v->root;
	struct pol_policy *p = NULL;
	char *buf = NULL;
	ssize_t n;
	int r = 0;

	if (!root->xattrs)
		return 0;
	n = fmt_xattr_get(root->xattrs, root->xattrs_len, POL_XATTR, NULL, 0);
	if (n == -ENODATA)
		return 0;
	if (n < 0)
		return (int)n;
	buf = malloc((size_t)n + 1);
	if (!buf)
		return -ENOMEM;
	n = fmt_xattr_get(root->xattrs, root->xattrs_len, POL_XATTR, buf, (size_t)n);
	if (n < 0) {
		r = (int)n;
		goto out;
	}
	/* Authenticated yet unreadable: a newer or broken policy. Refuse
	 * rather than open everything to everyone. */
	if (policy_parse(v, buf, (size_t)n, &p) < 0) {
		r = -EUCLEAN;
		goto out;
	}
	pol_free(v->policy);
	v->policy = p;
	vault_watch_rules_load(v);
out:
	free(buf);
	return r;
}

void vault_policy_free(struct vault *v)
{
	pol_free(v->policy);
	v->policy = NULL;
}

static struct pol_caller caller_of(const struct vault_caller *c)
{
	struct pol_caller pc = { c->uid, c->gid, c->groups, c->ngroups };

	return pc;
}

/* ---- clearance ---- */

void vault_policy_denied(struct vault *v, const struct vault_caller *c, const char *path,
			 unsigned level)
{
	vault_audit_denied(v, c, path, level, "clearance: not cleared for this level");
}

bool vault_wants_groups(const struct vault *v)
{
	/* Read without v->ns: a stale answer only leaves groups out. */
	return __atomic_load_n(&v->policy, __ATOMIC_RELAXED) != NULL;
}

int vault_policy_check(struct vault *v, const struct vault_caller *c, const char *path,
		       unsigned level)
{
	struct pol_caller pc;
	struct pol_when when;

	if (!v->policy || !c)
		return 0;
	pc = caller_of(c);
	if (pol_may_open_at(v->policy, &pc, top_level(v), level, vault_watch_when(v->policy, &when)))
		return 0;
	vault_policy_denied(v, c, path, level);
	return -EACCES;
}

int vault_loc_get_as(struct vault *v, const struct vault_caller *c, const char *path,
		     struct vault_loc *loc)
{
	int r = vault_loc_get(v, path, loc);

	if (r < 0 || !loc->dir)
		return r;
	r = vault_policy_check(v, c, loc->path, loc->dir->top_level);
	if (r < 0)
		vault_loc_put(v, loc);
	return r;
}

int vault_policy_dir_check(struct vault *v, const struct vault_caller *c, const struct vault_dir *d)
{
	return vault_policy_check(v, c, d->path, d->top_level);
}

int vault_policy_open_check(struct vault *v, const struct vault_caller *c, struct vault_loc *loc,
			    struct vault_handle **h)
{
	struct vf_attr a;
	int r;

	if (!*h || !v->policy)
		return 0;
	r = vf_getattr((*h)->of->f, &a);
	if (r == 0)
		r = vault_policy_check(v, c, loc->path, a.level);
	if (r == 0)
		return 0;
	(void)vault_ofile_put(v, (*h)->of, -1, NULL);
	free((*h)->path);
	free(*h);
	*h = NULL;
	return r;
}

/* ---- names under other levels (invariant 3) ---- */

/* d with another level, for naming one entry: same dir_id. */
static void dir_at_level(const struct vault_dir *d, unsigned level, struct vault_dir *out)
{
	memset(out, 0, sizeof(*out));
	memcpy(out->dir_id, d->dir_id, FMT_ID_BYTES);
	out->level = level;
	out->fd = d->fd;
}

int vault_policy_sname_make(const struct vault *v, struct vault_dir *d, const char *name,
			    size_t len, unsigned obj_level, struct vault_sname *sn)
{
	struct vault_dir at;

	if (obj_level > d->level) /* a name above the folder's level: probe for it */
		__atomic_store_n(&d->higher, VAULT_HIGHER_SOME, __ATOMIC_RELAXED);
	dir_at_level(d, obj_level > d->level ? obj_level : d->level, &at);
	return vault_sname_make(v, &at, name, len, sn);
}

int vault_policy_sname_find(const struct vault *v, const struct vault_dir *d, const char *name,
			    size_t len, struct vault_sname *sn)
{
	const struct kr_config *cfg = kr_keyring_config(v->kr);
	struct vault_sname *alt = NULL;
	struct vault_dir at;
	struct stat st;
	int r;

	r = vault_sname_make(v, d, name, len, sn);
	if (r < 0 || store_fstatat(d->fd, sn->name, &st) != -ENOENT)
		return r;
	/* Only names of higher levels can be elsewhere; none are when this
	 * writer knows the folder holds none. */
	if (!vault_ro(v) && __atomic_load_n(&d->higher, __ATOMIC_RELAXED) == VAULT_HIGHER_NONE)
		return 0;
	alt = malloc(sizeof(*alt));
	if (!alt)
		return -ENOMEM;
	for (unsigned l = 0; l < cfg->nlevels; l++) {
		if (l == d->level || !kr_level_held(v->kr, l))
			continue;
		dir_at_level(d, l, &at);
		if (vault_sname_make(v, &at, name, len, alt) < 0)
			continue;
		if (store_fstatat(d->fd, alt->name, &st) == 0) {
			*sn = *alt;
			break;
		}
	}
	free(alt);
	return 0;
}

ssize_t vault_policy_name_decrypt(const struct vault *v, const struct vault_dir *d, const char *enc,
				  size_t len, char out[FMT_NAME_MAX + 1], unsigned *level)
{
	const struct kr_config *cfg = kr_keyring_config(v->kr);
	ssize_t n = -ENOKEY;

	for (unsigned i = 0; i <= cfg->nlevels; i++) {
		/* The folder's own level first, then the others. */
		unsigned l = i == 0 ? d->level : i - 1;
		const unsigned char *mac, *key;

		if (i > 0 && l == d->level)
			continue;
		mac = kr_level_subkey(v->kr, l, KR_SUB_NAME_MAC);
		key = kr_level_subkey(v->kr, l, KR_SUB_NAME_ENC);
		if (!mac || !key)
			continue;
		n = fmt_name_decrypt(mac, key, d->dir_id, enc, len, out, FMT_NAME_MAX + 1);
		if (n >= 0 || n == -EUCLEAN) {
			if (level)
				*level = l;
			return n;
		}
	}
	return n;
}

/* Plaintext name and name level of store entry sname of d (a plain or
 * long name). */
static ssize_t entry_decrypt(const struct vault *v, const struct vault_dir *d, const char *sname,
			     char out[FMT_NAME_MAX + 1], unsigned *level)
{
	char side[LONGNAME_LEN + sizeof(FMT_LONGNAME_SIDECAR_SUFFIX)];
	char *buf;
	ssize_t n;

	if (sname[0] != '.')
		return vault_policy_name_decrypt(v, d, sname, strlen(sname), out, level);
	if (strncmp(sname, FMT_LONGNAME_PREFIX, 2) != 0 || strlen(sname) != LONGNAME_LEN)
		return -EINVAL;
	buf = malloc(VAULT_ENC_NAME_MAX);
	if (!buf)
		return -ENOMEM;
	snprintf(side, sizeof(side), "%s%s", sname, FMT_LONGNAME_SIDECAR_SUFFIX);
	n = store_read_small(d->fd, side, buf, VAULT_ENC_NAME_MAX);
	if (n >= 0 && fmt_longname_check(sname, buf, (size_t)n) < 0)
		n = -EBADMSG;
	if (n >= 0)
		n = vault_policy_name_decrypt(v, d, buf, (size_t)n, out, level);
	free(buf);
	return n;
}

/* Give entry "from" of dirfd the store name "to" (both of one plaintext
 * name): sidecar first, entry, then the old sidecar. */
static int entry_rename(int dirfd, const struct vault_sname *from, const struct vault_sname *to)
{
	int r;

	if (strcmp(from->name, to->name) == 0)
		return 0;
	r = vault_sidecar_write(dirfd, to);
	if (r < 0)
		return r;
	r = store_renameat(dirfd, from->name, dirfd, to->name, 0);
	if (r < 0) {
		vault_sidecar_remove(dirfd, to);
		return r;
	}
	vault_sidecar_remove(dirfd, from);
	return 0;
}

/* ---- reclassification ---- */

static int level_parse(const struct vault *v, const void *val, size_t len)
{
	char name[KR_LEVEL_NAME_MAX + 1];

	while (len > 0 && (((const char *)val)[len - 1] == '\n' || ((const char *)val)[len - 1] == '\0'))
		len--;
	if (len == 0 || len > KR_LEVEL_NAME_MAX)
		return -EINVAL;
	memcpy(name, val, len);
	name[len] = '\0';
	return kr_level_index(v->kr, name);
}

/* A file at loc to level (v->ns exclusive). Invariant 4. */
static int file_level_set(struct vault *v, struct vault_loc *loc, const struct stat *st,
			  unsigned level)
{
	struct vault_ofile *of = NULL;
	struct vault_sname *want = NULL;
	struct vf_file *f = NULL;
	char tmp[sizeof(FMT_TMP_PREFIX) + 32];
	unsigned char rnd[12];
	struct timespec ts[2];
	struct stat nst;
	struct vf_attr a;
	bool copied = false;
	int r, dirfd = loc->dir->fd;

	if (st->st_nlink > 1)
		return -EMLINK;
	r = vault_ofile_get(v, dirfd, loc->sn.name, false, &nst, &of);
	if (r < 0)
		return r;
	if (of) {
		(void)vault_ofile_put(v, of, -1, NULL);
		return -EBUSY;
	}
	want = malloc(sizeof(*want));
	if (!want)
		return -ENOMEM;
	r = vault_policy_sname_make(v, loc->dir, loc->last, strlen(loc->last), level, want);
	if (r < 0)
		goto out;
	r = vf_open(v->kr, dirfd, loc->sn.name, true, &f);
	if (r < 0)
		goto out;
	vault_audit_file_opened(v, f); /* a crashed file is recovered here */
	r = vf_getattr(f, &a);
	if (r < 0)
		goto out;
	if (a.level != level) {
		randombytes_buf(rnd, sizeof(rnd));
		memcpy(tmp, FMT_TMP_PREFIX, sizeof(FMT_TMP_PREFIX) - 1);
		sodium_bin2hex(tmp + sizeof(FMT_TMP_PREFIX) - 1, sizeof(tmp) - sizeof(FMT_TMP_PREFIX) + 1,
			       rnd, sizeof(rnd));
		r = vf_copy_to_level(f, dirfd, tmp, level);
		if (r < 0)
			goto out;
		copied = true;
	}
	r = vf_close(f);
	f = NULL;
	if (r < 0)
		goto out;
	if (!copied) {
		/* Same level: only the name may need to move (a resumed run). */
		r = entry_rename(dirfd, &loc->sn, want);
		goto out;
	}
	/* Same times: a reclassification is not a content change. */
	ts[0] = st->st_atim;
	ts[1] = st->st_mtim;
	(void)store_utimensat(dirfd, tmp, ts);
	r = vault_sidecar_write(dirfd, want);
	if (r < 0)
		goto out;
	r = store_renameat(dirfd, tmp, dirfd, want->name, 0);
	if (r < 0) {
		if (strcmp(want->name, loc->sn.name) != 0)
			vault_sidecar_remove(dirfd, want);
		goto out;
	}
	copied = false;
	if (strcmp(want->name, loc->sn.name) != 0) {
		(void)store_unlinkat(dirfd, loc->sn.name, 0);
		vault_sidecar_remove(dirfd, &loc->sn);
	}
	(void)store_fsync(dirfd, false);
out:
	if (f)
		(void)vf_close(f);
	if (copied)
		(void)store_unlinkat(dirfd, tmp, 0);
	free(want);
	return r;
}

/* The level of entry sname of d (a file's header or a folder's .sr-dir). */
static int entry_level(struct vault *v, struct vault_dir *d, const char *sname, unsigned *level)
{
	struct vault_dir sub;
	struct vf_attr a;
	struct stat st;
	int r, fd;

	r = store_fstatat(d->fd, sname, &st);
	if (r < 0)
		return r;
	if (!S_ISDIR(st.st_mode)) {
		r = vf_stat_at(v->kr, d->fd, sname, &a);
		if (r < 0)
			return r;
		*level = a.level;
		return 0;
	}
	fd = store_openat(d->fd, sname, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return fd;
	memset(&sub, 0, sizeof(sub));
	r = vault_dirmeta_load(v, fd, &sub);
	store_close(fd);
	free(sub.xattrs);
	if (r < 0)
		return r;
	*level = sub.level;
	return 0;
}

struct name_list {
	char **names;
	size_t n, cap;
};

static void name_list_free(struct name_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->names[i]);
	free(l->names);
}

/* The plaintext-entry store names of directory fd (plain and long). */
static int entries_list(int dirfd, struct name_list *l)
{
	struct dirent *de;
	DIR *dp;
	int fd, r = 0;

	memset(l, 0, sizeof(*l));
	fd = store_openat(dirfd, ".", O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return fd;
	dp = fdopendir(fd);
	if (!dp) {
		r = -errno;
		store_close(fd);
		return r;
	}
	while ((errno = 0, de = readdir(dp))) {
		const char *n = de->d_name;

		if (n[0] == '.' && (strncmp(n, FMT_LONGNAME_PREFIX, 2) != 0 || strlen(n) != LONGNAME_LEN))
			continue;
		if (l->n == l->cap) {
			size_t nc = l->cap ? l->cap * 2 : 64;
			char **nn = realloc(l->names, nc * sizeof(*nn));

			if (!nn) {
				r = -ENOMEM;
				break;
			}
			l->names = nn;
			l->cap = nc;
		}
		l->names[l->n] = strdup(n);
		if (!l->names[l->n]) {
			r = -ENOMEM;
			break;
		}
		l->n++;
	}
	if (r == 0 && errno)
		r = -errno;
	closedir(dp);
	return r;
}

/* Re-encrypt every entry name of d that is not under max(d->level, its
 * own level), and forget cached folders below d (their top_level). */
static int dir_names_fix(struct vault *v, struct vault_dir *d)
{
	struct vault_sname *from = NULL, *to = NULL;
	char name[FMT_NAME_MAX + 1];
	struct name_list l;
	int r, first = 0;

	r = entries_list(d->fd, &l);
	if (r < 0)
		goto out;
	from = malloc(sizeof(*from));
	to = malloc(sizeof(*to));
	if (!from || !to) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < l.n; i++) {
		unsigned nlevel, olevel = 0;
		ssize_t n = entry_decrypt(v, d, l.names[i], name, &nlevel);
		char *child = NULL;

		if (n <= 0)
			continue; /* not ours to read: its name is under a key we lack */
		if (asprintf(&child, "%s/%s", strcmp(d->path, "/") == 0 ? "" : d->path, name) < 0) {
			r = -ENOMEM;
			break;
		}
		vault_dcache_drop(v, child);
		free(child);
		r = entry_level(v, d, l.names[i], &olevel);
		if (r == -ENOKEY)
			continue;
		if (r < 0)
			break;
		r = vault_policy_sname_make(v, d, name, (size_t)n, olevel, to);
		if (r < 0)
			break;
		if (strcmp(to->name, l.names[i]) == 0)
			continue;
		memset(from, 0, sizeof(*from));
		snprintf(from->name, sizeof(from->name), "%s", l.names[i]);
		from->is_long = l.names[i][0] == '.';
		if (from->is_long)
			snprintf(from->sidecar, sizeof(from->sidecar), "%s%s", l.names[i],
				 FMT_LONGNAME_SIDECAR_SUFFIX);
		r = entry_rename(d->fd, from, to);
		if (r < 0 && first == 0)
			first = r; /* go on with the others; report the first */
		r = 0;
	}
	if (r == 0)
		r = first;
out:
	free(from);
	free(to);
	name_list_free(&l);
	return r;
}

/* ---- renames (invariants 3 and 6) ---- */

/* Re-encrypt the closed file sname of dirfd at level under the same name:
 * a synced copy renamed over it. -EBUSY if it is open, -EMLINK if linked. */
static int file_reencrypt(struct vault *v, int dirfd, const char *sname, const struct stat *st,
			  unsigned level)
{
	struct vault_ofile *of = NULL;
	struct vf_file *f = NULL;
	char tmp[sizeof(FMT_TMP_PREFIX) + 32];
	unsigned char rnd[12];
	struct timespec ts[2];
	struct stat nst;
	int r, e;

	if (st->st_nlink > 1)
		return -EMLINK;
	r = vault_ofile_get(v, dirfd, sname, false, &nst, &of);
	if (r < 0)
		return r;
	if (of) {
		(void)vault_ofile_put(v, of, -1, NULL);
		return -EBUSY;
	}
	r = vf_open(v->kr, dirfd, sname, true, &f);
	if (r < 0)
		return r;
	vault_audit_file_opened(v, f); /* a crashed file is recovered here */
	randombytes_buf(rnd, sizeof(rnd));
	memcpy(tmp, FMT_TMP_PREFIX, sizeof(FMT_TMP_PREFIX) - 1);
	sodium_bin2hex(tmp + sizeof(FMT_TMP_PREFIX) - 1, sizeof(tmp) - sizeof(FMT_TMP_PREFIX) + 1, rnd,
		       sizeof(rnd));
	r = vf_copy_to_level(f, dirfd, tmp, level);
	e = vf_close(f);
	if (r == 0 && e < 0) {
		(void)store_unlinkat(dirfd, tmp, 0);
		r = e;
	}
	if (r < 0)
		return r;
	ts[0] = st->st_atim;
	ts[1] = st->st_mtim;
	(void)store_utimensat(dirfd, tmp, ts);
	r = store_renameat(dirfd, tmp, dirfd, sname, 0);
	if (r < 0)
		(void)store_unlinkat(dirfd, tmp, 0);
	return r;
}

int vault_policy_rename_prepare(struct vault *v, struct vault_loc *from, struct vault_loc *to,
				bool replacing)
{
	unsigned slevel, tlevel;
	struct stat st, tst;
	int r;

	r = store_fstatat(from->dir->fd, from->sn.name, &st);
	if (r < 0)
		return r;
	r = entry_level(v, from->dir, from->sn.name, &slevel);
	if (r < 0)
		return r;
	if (replacing) {
		/* A save through a temporary file keeps the document's level:
		 * the new copy is raised to the level of the file it replaces
		 * (not when it is still open: then it keeps its own). */
		if (!S_ISREG(st.st_mode) || store_fstatat(to->dir->fd, to->sn.name, &tst) < 0 ||
		    !S_ISREG(tst.st_mode) || entry_level(v, to->dir, to->sn.name, &tlevel) < 0 ||
		    tlevel <= slevel || !kr_level_held(v->kr, tlevel))
			return 0;
		r = file_reencrypt(v, from->dir->fd, from->sn.name, &st, tlevel);
		return r == -EBUSY || r == -EMLINK ? 0 : r;
	}
	if (slevel <= to->dir->level)
		return 0;
	return vault_policy_sname_make(v, to->dir, to->last, strlen(to->last), slevel, &to->sn);
}

int vault_policy_rename_done(struct vault *v, struct vault_loc *to)
{
	struct vault_sname *want;
	unsigned level;
	int r;

	r = entry_level(v, to->dir, to->sn.name, &level);
	if (r < 0)
		return 0; /* the rename happened; a name left as it was is still found */
	want = malloc(sizeof(*want));
	if (!want)
		return 0;
	if (vault_policy_sname_make(v, to->dir, to->last, strlen(to->last), level, want) == 0 &&
	    entry_rename(to->dir->fd, &to->sn, want) == 0)
		to->sn = *want;
	free(want);
	return 0;
}

/* A folder to level (v->ns exclusive). Invariant 5. */
static int dir_level_set(struct vault *v, struct vault_loc *loc, struct vault_dir *d, unsigned level)
{
	struct vault_sname *want = NULL;
	struct vault_dir nd;
	unsigned above = loc->dir ? loc->dir->top_level : 0;
	int r;

	if (d->level != level) {
		nd = *d;
		nd.level = level;
		r = vault_dir_commit(v, d, &nd);
		if (r < 0)
			return r;
	}
	d->top_level = level > above ? level : above;
	r = dir_names_fix(v, d);
	if (r < 0 || !loc->dir)
		return r;
	want = malloc(sizeof(*want));
	if (!want)
		return -ENOMEM;
	r = vault_policy_sname_make(v, loc->dir, loc->last, strlen(loc->last), level, want);
	if (r == 0)
		r = entry_rename(loc->dir->fd, &loc->sn, want);
	free(want);
	return r;
}

static int level_set(struct vault *v, const struct vault_caller *c, const char *path,
		     const void *val, size_t len)
{
	struct pol_caller pc = caller_of(c);
	struct vault_dir *d = NULL;
	struct vault_loc loc;
	struct stat st;
	int level, r;

	if (vault_ro(v))
		return -EROFS;
	level = level_parse(v, val, len);
	if (level < 0)
		return -EINVAL;
	pthread_rwlock_wrlock(&v->ns);
	if (!pol_is_admin(v->policy, &pc)) {
		r = -EPERM;
		goto unlock;
	}
	if (!kr_level_held(v->kr, (unsigned)level)) {
		r = -ENOKEY;
		goto unlock;
	}
	r = vault_loc_get_as(v, c, path, &loc);
	if (r < 0)
		goto unlock;
	if (!loc.dir) {
		r = vault_dir_get(v, "/", &d);
	} else {
		r = store_fstatat(loc.dir->fd, loc.sn.name, &st);
		if (r == 0 && S_ISDIR(st.st_mode))
			r = vault_dir_get(v, loc.path, &d);
		else if (r == 0 && !S_ISREG(st.st_mode))
			r = -EUCLEAN;
	}
	if (r < 0)
		goto out;
	/* The audit trail records the change here (event "level"). */
	if (d)
		r = dir_level_set(v, &loc, d, (unsigned)level);
	else
		r = file_level_set(v, &loc, &st, (unsigned)level);
out:
	vault_dir_put(v, d);
	vault_loc_put(v, &loc);
unlock:
	pthread_rwlock_unlock(&v->ns);
	return r;
}

/* ---- the compiled policy (invariant 1) ---- */

static int policy_set(struct vault *v, const struct vault_caller *c, const char *path,
		      const void *val, size_t len, int flags)
{
	struct pol_policy *p = NULL;
	struct vault_dir *root = v->root, nd;
	unsigned char *blob = NULL;
	int r;

	if (vault_ro(v))
		return -EROFS;
	if (c && c->uid != 0)
		return -EPERM;
	if (strspn(path, "/") != strlen(path))
		return -EINVAL; /* the root only */
	if (val) {
		if (len > VAULT_XATTR_VALUE_MAX)
			return -E2BIG;
		r = policy_parse(v, val, len, &p);
		if (r < 0)
			return r;
	}
	pthread_rwlock_wrlock(&v->ns);
	nd = *root;
	if (root->xattrs_len) {
		blob = malloc(root->xattrs_len);
		if (!blob) {
			r = -ENOMEM;
			goto out;
		}
		memcpy(blob, root->xattrs, root->xattrs_len);
	}
	nd.xattrs = blob;
	r = val ? fmt_xattr_set(&nd.xattrs, &nd.xattrs_len, POL_XATTR, val, len, flags)
		: fmt_xattr_remove(&nd.xattrs, &nd.xattrs_len, POL_XATTR);
	blob = nd.xattrs;
	if (r < 0)
		goto out;
	r = vault_dir_commit(v, root, &nd);
	if (r < 0)
		goto out;
	blob = NULL; /* the root owns it now */
	pol_free(v->policy);
	v->policy = p;
	p = NULL;
	vault_watch_rules_load(v); /* its alert rules (vault_watch.c) */
out:
	pthread_rwlock_unlock(&v->ns);
	free(blob);
	pol_free(p);
	return r;
}

bool vault_policy_xattr_ours(const char *name)
{
	return strcmp(name, VAULT_XATTR_LEVEL) == 0 || strcmp(name, POL_XATTR) == 0;
}

int vault_policy_setxattr(struct vault *v, const struct vault_caller *c, const char *path,
			  const char *name, const void *val, size_t len, int flags)
{
	if (strcmp(name, POL_XATTR) == 0)
		return policy_set(v, c, path, val, len, flags);
	if (!val)
		return -EOPNOTSUPP; /* a level cannot be removed */
	return level_set(v, c, path, val, len);
}
