/* cmd_policy.c - strongroom policy apply MOUNTPOINT FILE | show MOUNTPOINT
 *
 * apply (root) reads a policy file (docs/policy.md), checks all of it, and
 * only then changes the mounted vault: folder levels (user.strongroom.level),
 * POSIX ACLs through libacl on the mounted paths (an access and a default
 * ACL on each folder and the folders below it, an access ACL on the files
 * already there), and last the compiled policy in the root directory's
 * authenticated metadata (POL_XATTR), which the driver parses and enforces
 * (clearance, admin group).
 *
 * show prints the roles and, per folder of the applied policy, its level and
 * what each role can do there: the rights the folder's ACL really grants the
 * role's groups (mask applied), in brackets when the role's clearance is
 * below the folder's level (the driver refuses what the ACL allows).
 *
 * Invariants:
 *  - Any error found while checking (syntax, unknown level, role, group or
 *    folder, a policy too large to store) prints one line "FILE:LINE: cause"
 *    and exits EXIT_POLICY with nothing changed.
 *  - Applying is idempotent: the same file applied twice leaves the same
 *    ACLs and levels, so a run cut short is finished by running it again.
 *    The compiled policy is stored last.
 *  - Walking below a folder never follows symbolic links and stops at
 *    folders the policy lists itself (they get their own entries).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/acl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <acl/libacl.h>

#include "cli.h"
#include "strongroom/frontend.h"
#include "strongroom/policy.h"

#define LEVEL_XATTR "user.strongroom.level"
#define POLICY_STORE_MAX 65536 /* the vault's largest xattr value */
#define ACL_MAX_ENTRIES (POL_MAX_ROLES * POL_MAX_GROUPS)

static void pol_cmd_usage(FILE *f)
{
	fputs("Usage: strongroom policy apply MOUNTPOINT POLICY_FILE\n"
	      "       strongroom policy show MOUNTPOINT\n"
	      "\n"
	      "apply (as root) checks the whole policy file first: a syntax error, an unknown\n"
	      "level, role, group or folder prints \"FILE:LINE: cause\", exits 8 and changes\n"
	      "nothing. Then it sets folder levels, writes POSIX ACLs (access and default ACLs\n"
	      "on each listed folder and the folders below it, access ACLs on files already\n"
	      "there) and stores the roles, clearances and admin group in the vault, where the\n"
	      "driver enforces them. Applying the same file again changes nothing more.\n"
	      "\n"
	      "show prints the roles and, for each folder of the applied policy, its level and\n"
	      "what each role may do there; rights in brackets are granted by the ACL but\n"
	      "closed by the role's clearance. The file format is in docs/policy.md.\n"
	      "\n",
	      f);
	cli_print_exit_codes(f);
}

/* The vault's level names, from the store behind the mount. */
static int pol_levels(const char *mnt, struct kr_config *cfg, const char *names[KR_MAX_LEVELS],
		      char canon[PATH_MAX])
{
	struct fe_mount m;
	int r;

	if (!realpath(mnt, canon)) {
		cli_err(mnt, "%s", strerror(errno));
		return EXIT_MOUNTPOINT;
	}
	if (fe_mount_find(canon, &m) < 0 || strcmp(m.fstype, FE_FSTYPE) != 0) {
		cli_err(canon, "not a mounted Strongroom vault");
		return EXIT_MOUNTPOINT;
	}
	r = kr_config_load(m.source, cfg);
	if (r < 0) {
		cli_err(m.source, "cannot read the vault's levels: %s", strerror(-r));
		return cli_exit_for(r);
	}
	for (unsigned i = 0; i < cfg->nlevels; i++)
		names[i] = cfg->levels[i].name;
	return EXIT_OK;
}

static int pol_group_lookup(const char *name, gid_t *gid, void *ctx)
{
	struct group gr, *res = NULL;
	char buf[16384];

	(void)ctx;
	if (getgrnam_r(name, &gr, buf, sizeof(buf), &res) != 0 || !res)
		return -ENOENT;
	*gid = res->gr_gid;
	return 0;
}

static char *pol_file_read(const char *file, size_t *len)
{
	FILE *f = fopen(file, "re");
	char *buf;
	size_t n;

	if (!f)
		return NULL;
	buf = malloc(POL_TEXT_MAX + 1);
	if (!buf) {
		fclose(f);
		errno = ENOMEM;
		return NULL;
	}
	n = fread(buf, 1, POL_TEXT_MAX + 1, f);
	if (ferror(f) || n > POL_TEXT_MAX) {
		int e = ferror(f) ? EIO : EFBIG;

		fclose(f);
		free(buf);
		errno = e;
		return NULL;
	}
	fclose(f);
	*len = n;
	return buf;
}

static char *pol_join(const char *mnt, const char *path)
{
	char *p;

	if (asprintf(&p, "%s%s", mnt, strcmp(path, "/") == 0 ? "" : path) < 0)
		return NULL;
	return p;
}

/* ---- ACLs ---- */

static int acl_entry_add(acl_t *acl, acl_tag_t tag, const gid_t *qual, unsigned perm)
{
	acl_entry_t e;
	acl_permset_t ps;

	if (acl_create_entry(acl, &e) != 0 || acl_set_tag_type(e, tag) != 0)
		return -1;
	if (qual && acl_set_qualifier(e, qual) != 0)
		return -1;
	if (acl_get_permset(e, &ps) != 0 || acl_clear_perms(ps) != 0)
		return -1;
	if ((perm & POL_RIGHT_R) && acl_add_perm(ps, ACL_READ) != 0)
		return -1;
	if ((perm & POL_RIGHT_W) && acl_add_perm(ps, ACL_WRITE) != 0)
		return -1;
	if ((perm & POL_RIGHT_X) && acl_add_perm(ps, ACL_EXECUTE) != 0)
		return -1;
	return acl_set_permset(e, ps);
}

/* owner bits as given, the owning group and others nothing, one entry per
 * granted group, the mask their union. */
static acl_t acl_build(unsigned owner, const struct pol_acl_entry *ents, int n)
{
	acl_t acl = acl_init(n + 4);

	if (!acl)
		return NULL;
	if (acl_entry_add(&acl, ACL_USER_OBJ, NULL, owner) != 0 ||
	    acl_entry_add(&acl, ACL_GROUP_OBJ, NULL, 0) != 0 ||
	    acl_entry_add(&acl, ACL_OTHER, NULL, 0) != 0)
		goto fail;
	for (int i = 0; i < n; i++)
		if (acl_entry_add(&acl, ACL_GROUP, &ents[i].gid, ents[i].perm) != 0)
			goto fail;
	if (acl_calc_mask(&acl) != 0 || acl_valid(acl) != 0)
		goto fail;
	return acl;
fail:
	acl_free(acl);
	return NULL;
}

struct apply {
	const struct pol_policy *p;
	const char *mnt;
	unsigned long folders, files;
};

static int acl_apply(const char *path, bool dir, const struct pol_acl_entry *dents, int nd,
		     const struct pol_acl_entry *fents, int nf, const struct stat *st)
{
	acl_t acc = NULL, dflt = NULL;
	int r = -1;

	if (dir) {
		acc = acl_build(7, dents, nd);
		dflt = acl_build(7, dents, nd);
	} else {
		acc = acl_build((st->st_mode >> 6) & 7, fents, nf);
	}
	if (!acc || (dir && !dflt))
		goto out;
	if (acl_set_file(path, ACL_TYPE_ACCESS, acc) != 0)
		goto out;
	if (dir && acl_set_file(path, ACL_TYPE_DEFAULT, dflt) != 0)
		goto out;
	r = 0;
out:
	if (r != 0)
		cli_err(path, "cannot set its ACL: %s", strerror(errno));
	acl_free(acc);
	acl_free(dflt);
	return r;
}

/* Folder fi of the policy: its ACLs, then everything below that the policy
 * does not list itself. rel is the vault path of path. */
static int apply_tree(struct apply *a, unsigned fi, const char *path, const char *rel,
		      const struct pol_acl_entry *dents, int nd, const struct pol_acl_entry *fents,
		      int nf)
{
	struct dirent *de;
	struct stat st;
	DIR *dp;
	int r = 0;

	if (lstat(path, &st) != 0) {
		cli_err(path, "%s", strerror(errno));
		return -1;
	}
	if (S_ISLNK(st.st_mode) || (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)))
		return 0;
	if (acl_apply(path, S_ISDIR(st.st_mode), dents, nd, fents, nf, &st) != 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		a->files++;
		return 0;
	}
	a->folders++;
	dp = opendir(path);
	if (!dp) {
		cli_err(path, "%s", strerror(errno));
		return -1;
	}
	while (r == 0 && (de = readdir(dp))) {
		char *cpath, *crel;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (asprintf(&cpath, "%s/%s", path, de->d_name) < 0)
			break;
		if (asprintf(&crel, "%s/%s", strcmp(rel, "/") == 0 ? "" : rel, de->d_name) < 0) {
			free(cpath);
			break;
		}
		if (pol_folder_find(a->p, crel) < 0)
			r = apply_tree(a, fi, cpath, crel, dents, nd, fents, nf);
		free(cpath);
		free(crel);
	}
	closedir(dp);
	return r;
}

static int apply_folder(struct apply *a, unsigned fi)
{
	const struct pol_folder *f = &a->p->folders[fi];
	struct pol_acl_entry dents[ACL_MAX_ENTRIES], fents[ACL_MAX_ENTRIES];
	int nd, nf, r = -1;
	char *path = pol_join(a->mnt, f->path);

	if (!path)
		return -1;
	if (f->level != POL_NONE &&
	    setxattr(path, LEVEL_XATTR, a->p->levels[f->level], strlen(a->p->levels[f->level]), 0) !=
		    0) {
		cli_err(path, "cannot set level %s: %s", a->p->levels[f->level],
			errno == EACCES ? "level not held by this mount" : strerror(errno));
		goto out;
	}
	nd = pol_folder_acl(a->p, fi, true, dents, ACL_MAX_ENTRIES);
	nf = pol_folder_acl(a->p, fi, false, fents, ACL_MAX_ENTRIES);
	if (nd < 0 || nf < 0)
		goto out;
	r = apply_tree(a, fi, path, f->path, dents, nd, fents, nf);
out:
	free(path);
	return r;
}

/* Folders in depth order, so a parent's level is set before its children. */
static int folder_depth_cmp(const void *x, const void *y, void *ctx)
{
	const struct pol_policy *p = ctx;
	const char *a = p->folders[*(const unsigned *)x].path;
	const char *b = p->folders[*(const unsigned *)y].path;
	size_t da = 0, db = 0;

	for (; *a; a++)
		da += *a == '/';
	for (; *b; b++)
		db += *b == '/';
	return da < db ? -1 : da > db;
}

static int pol_apply(int argc, char **argv)
{
	struct pol_policy *p = NULL;
	const char *names[KR_MAX_LEVELS];
	char mnt[PATH_MAX], *text = NULL, *compiled = NULL;
	struct apply a = { 0 };
	struct pol_error err;
	struct kr_config cfg;
	unsigned *order = NULL;
	size_t len = 0;
	ssize_t n;
	int code, r;

	if (argc != 4) {
		cli_err("usage", "strongroom policy apply MOUNTPOINT POLICY_FILE");
		return EXIT_USAGE;
	}
	const char *file = argv[3];

	if (geteuid() != 0) {
		cli_err(argv[2], "applying a policy needs root");
		return EXIT_FAIL;
	}
	code = pol_levels(argv[2], &cfg, names, mnt);
	if (code != EXIT_OK)
		return code;
	text = pol_file_read(file, &len);
	if (!text) {
		cli_err(file, "%s", strerror(errno));
		return errno == EFBIG ? EXIT_POLICY : EXIT_FAIL;
	}
	code = EXIT_POLICY;
	r = pol_parse(text, len, names, cfg.nlevels, &p, &err);
	if (r == 0)
		r = pol_resolve(p, pol_group_lookup, NULL, &err);
	if (r < 0) {
		fprintf(stderr, "strongroom: %s:%u: %s\n", file, err.line, err.msg);
		goto out;
	}
	for (unsigned i = 0; i < p->nfolders; i++) {
		char *path = pol_join(mnt, p->folders[i].path);
		struct stat st;
		int e = 0;

		if (!path || lstat(path, &st) != 0)
			e = path ? errno : ENOMEM;
		else if (!S_ISDIR(st.st_mode))
			e = ENOTDIR;
		free(path);
		if (e) {
			fprintf(stderr, "strongroom: %s:%u: folder %s: %s\n", file,
				p->folders[i].line, p->folders[i].path,
				e == ENOENT ? "no such folder in the vault" : strerror(e));
			goto out;
		}
	}
	n = pol_compile(p, NULL, 0);
	if (n < 0 || n > POLICY_STORE_MAX) {
		fprintf(stderr, "strongroom: %s:0: too large to store in the vault (%zd bytes)\n",
			file, n);
		goto out;
	}
	compiled = malloc((size_t)n);
	order = calloc(p->nfolders + 1, sizeof(*order));
	if (!compiled || !order || pol_compile(p, compiled, (size_t)n) != n) {
		cli_err(file, "out of memory");
		code = EXIT_FAIL;
		goto out;
	}
	/* Checked: now change the vault. */
	code = EXIT_FAIL;
	for (unsigned i = 0; i < p->nfolders; i++)
		order[i] = i;
	qsort_r(order, p->nfolders, sizeof(*order), folder_depth_cmp, p);
	a.p = p;
	a.mnt = mnt;
	for (unsigned i = 0; i < p->nfolders; i++)
		if (apply_folder(&a, order[i]) != 0)
			goto out;
	if (setxattr(mnt, POL_XATTR, compiled, (size_t)n, 0) != 0) {
		cli_err(mnt, "cannot store the policy in the vault: %s", strerror(errno));
		goto out;
	}
	printf("policy applied: %u roles, %u folders (%lu folders and %lu files given ACLs)\n",
	       p->nroles, p->nfolders, a.folders, a.files);
	code = EXIT_OK;
out:
	free(order);
	free(compiled);
	free(text);
	pol_free(p);
	return code;
}

/* ---- show ---- */

/* What the access ACL of path grants a member of role r (mask applied):
 * POL_RIGHT_* bits, or -1 if the ACL cannot be read. */
static int role_rights(const char *path, const struct pol_role *r)
{
	acl_t acl = acl_get_file(path, ACL_TYPE_ACCESS);
	unsigned grant = 0, mask = 7;
	bool have_mask = false;
	acl_entry_t e;
	int id;

	if (!acl)
		return -1;
	for (id = ACL_FIRST_ENTRY; acl_get_entry(acl, id, &e) == 1; id = ACL_NEXT_ENTRY) {
		acl_permset_t ps;
		acl_tag_t tag;
		unsigned bits = 0;

		if (acl_get_tag_type(e, &tag) != 0 || acl_get_permset(e, &ps) != 0)
			continue;
		bits = (acl_get_perm(ps, ACL_READ) == 1 ? POL_RIGHT_R : 0) |
		       (acl_get_perm(ps, ACL_WRITE) == 1 ? POL_RIGHT_W : 0) |
		       (acl_get_perm(ps, ACL_EXECUTE) == 1 ? POL_RIGHT_X : 0);
		if (tag == ACL_MASK) {
			mask = bits;
			have_mask = true;
		} else if (tag == ACL_GROUP) {
			gid_t *g = acl_get_qualifier(e);

			for (unsigned j = 0; g && j < r->ngroups; j++)
				if (r->groups[j].gid == *g)
					grant |= bits;
			acl_free(g);
		}
	}
	acl_free(acl);
	return (int)(have_mask ? grant & mask : grant);
}

static void rights_text(int bits, char out[4])
{
	out[0] = (bits & POL_RIGHT_R) ? 'r' : '-';
	out[1] = (bits & POL_RIGHT_W) ? 'w' : '-';
	out[2] = (bits & POL_RIGHT_X) ? 'x' : '-';
	out[3] = '\0';
}

static int pol_show(int argc, char **argv)
{
	struct pol_policy *p = NULL;
	const char *names[KR_MAX_LEVELS];
	char mnt[PATH_MAX], *buf = NULL;
	struct pol_error err;
	struct kr_config cfg;
	bool closed = false;
	ssize_t n;
	int code;

	if (argc != 3) {
		cli_err("usage", "strongroom policy show MOUNTPOINT");
		return EXIT_USAGE;
	}
	code = pol_levels(argv[2], &cfg, names, mnt);
	if (code != EXIT_OK)
		return code;
	buf = malloc(POLICY_STORE_MAX);
	if (!buf)
		return EXIT_FAIL;
	n = getxattr(mnt, POL_XATTR, buf, POLICY_STORE_MAX);
	if (n < 0) {
		if (errno == ENODATA)
			printf("no policy applied: access is decided by each object's permissions "
			       "and ACLs only\n");
		else
			cli_err(mnt, "cannot read the policy: %s%s", strerror(errno),
				errno == EPERM ? " (needs root)" : "");
		free(buf);
		return errno == ENODATA ? EXIT_OK : EXIT_FAIL;
	}
	if (pol_compiled_parse(buf, (size_t)n, names, cfg.nlevels, &p, &err) < 0) {
		cli_err(mnt, "the stored policy does not parse (line %u: %s)", err.line, err.msg);
		free(buf);
		return EXIT_POLICY;
	}
	printf("admin group: %s\n", p->has_admin ? p->admin.name : "(none: root only)");
	printf("default clearance: %s\n\n",
	       p->default_clearance == POL_NONE ? "none" : p->levels[p->default_clearance]);
	printf("%-16s %-14s %s\n", "ROLE", "CLEARANCE", "GROUPS");
	for (unsigned i = 0; i < p->nroles; i++) {
		const struct pol_role *r = &p->roles[i];

		printf("%-16s %-14s", r->name, p->levels[r->clearance]);
		for (unsigned j = 0; j < r->ngroups; j++)
			printf("%s%s(%lu)", j ? ", " : " ", r->groups[j].name,
			       (unsigned long)r->groups[j].gid);
		printf("\n");
	}
	printf("\n%-32s %-14s", "FOLDER", "LEVEL");
	for (unsigned i = 0; i < p->nroles; i++)
		printf(" %-10s", p->roles[i].name);
	printf("\n");
	for (unsigned i = 0; i < p->nfolders; i++) {
		char *path = pol_join(mnt, p->folders[i].path);
		char level[64] = "?";
		int lv;
		ssize_t ln;

		if (!path)
			break;
		ln = getxattr(path, LEVEL_XATTR, level, sizeof(level) - 1);
		level[ln > 0 ? ln : 1] = '\0';
		if (ln <= 0)
			snprintf(level, sizeof(level), "?");
		lv = pol_level_index(p, level);
		printf("%-32s %-14s", p->folders[i].path, level);
		for (unsigned j = 0; j < p->nroles; j++) {
			int bits = role_rights(path, &p->roles[j]);
			char t[4], cell[16];

			if (bits < 0) {
				snprintf(cell, sizeof(cell), "?");
			} else {
				rights_text(bits, t);
				if (bits && lv >= 0 && p->roles[j].clearance < lv) {
					snprintf(cell, sizeof(cell), "(%s)", t);
					closed = true;
				} else {
					snprintf(cell, sizeof(cell), "%s", t);
				}
			}
			printf(" %-10s", cell);
		}
		printf("\n");
		free(path);
	}
	if (closed)
		printf("\n(...) the ACL grants it, but the role's clearance is below the folder's "
		       "level\n");
	pol_free(p);
	free(buf);
	return EXIT_OK;
}

int cmd_policy(int argc, char **argv)
{
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		pol_cmd_usage(stdout);
		return EXIT_OK;
	}
	if (argc >= 2 && strcmp(argv[1], "apply") == 0)
		return pol_apply(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "show") == 0)
		return pol_show(argc, argv);
	cli_err("usage", "strongroom policy apply MOUNTPOINT POLICY_FILE | show MOUNTPOINT");
	return EXIT_USAGE;
}
