/* test_policy.c - the pure policy library: parsing the policy file with
 * line-numbered errors, group resolution, the compiled form the vault
 * stores, clearance and admin decisions, and the ACL entries of folders.
 * Then the vault's side, driven without FUSE: clearance on lookup, open and
 * listing, reclassification of files and folders, and names of objects
 * classified above their folder on a mount without their level's key.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strongroom/keyring.h"
#include "strongroom/policy.h"
#include "strongroom/vault.h"
#include "tap.h"

static const char *const LEVELS[] = { "public", "internal", "confidential", "restricted" };
#define NLEVELS 4u
#define TOP 3u

static const char EXAMPLE[] =
	"# Example Ltd.\n"
	"[vault]\n"
	"admin-group = ex-admin\n"
	"\n"
	"[role sales]\n"
	"group = ex-sales\n"
	"clearance = internal\n"
	"\n"
	"[role finance]\n"
	"group = ex-finance, ex-controlling\n"
	"clearance = confidential\n"
	"\n"
	"; legal sees everything\n"
	"[role legal]\n"
	"group = ex-legal\n"
	"clearance = restricted\n"
	"\n"
	"[folder /Sales]\n"
	"level = internal\n"
	"sales = rw\n"
	"finance = r\n"
	"\n"
	"[folder /Finance/Payroll 2024]\n"
	"level = restricted\n"
	"finance = rwx\n"
	"legal = r\n"
	"sales = none\n";

/* A fixed group table instead of NSS. */
static int fake_lookup(const char *name, gid_t *gid, void *ctx)
{
	static const struct {
		const char *name;
		gid_t gid;
	} tab[] = { { "ex-admin", 900 },   { "ex-sales", 901 }, { "ex-finance", 902 },
		    { "ex-controlling", 903 }, { "ex-legal", 904 }, { "sales team@corp", 905 } };

	(void)ctx;
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		if (strcmp(tab[i].name, name) == 0) {
			*gid = tab[i].gid;
			return 0;
		}
	}
	return -ENOENT;
}

static int parse(const char *text, struct pol_policy **p, struct pol_error *err)
{
	return pol_parse(text, strlen(text), LEVELS, NLEVELS, p, err);
}

/* Parse text; return the error line (0 if it parsed), freeing whatever. */
static unsigned bad_line(const char *text)
{
	struct pol_policy *p = NULL;
	struct pol_error err;
	int r = parse(text, &p, &err);

	if (r == 0) {
		pol_free(p);
		return 0;
	}
	if (p)
		return 9999; /* a failed parse must leave nothing */
	printf("# line %u: %s\n", err.line, err.msg);
	return err.line;
}

static struct pol_policy *example(void)
{
	struct pol_policy *p = NULL;
	struct pol_error err;

	if (parse(EXAMPLE, &p, &err) != 0)
		return NULL;
	if (pol_resolve(p, fake_lookup, NULL, &err) != 0) {
		pol_free(p);
		return NULL;
	}
	return p;
}

TEST(parse_reads_roles_folders_levels_and_the_admin_group)
{
	struct pol_policy *p = example();

	CHECK(p);
	CHECK(p->has_admin);
	CHECK(strcmp(p->admin.name, "ex-admin") == 0);
	CHECK_EQ(p->admin.gid, 900);
	CHECK_EQ(p->nroles, 3);
	CHECK(strcmp(p->roles[1].name, "finance") == 0);
	CHECK_EQ(p->roles[1].ngroups, 2);
	CHECK(strcmp(p->roles[1].groups[1].name, "ex-controlling") == 0);
	CHECK_EQ(p->roles[1].clearance, 2);
	CHECK_EQ(p->nfolders, 2);
	CHECK(strcmp(p->folders[1].path, "/Finance/Payroll 2024") == 0);
	CHECK_EQ(p->folders[1].level, 3);
	CHECK_EQ(p->folders[1].ngrants, 3);
	CHECK_EQ(p->folders[1].grants[2].rights, 0);
	CHECK_EQ(p->folders[0].grants[0].rights, POL_RIGHT_R | POL_RIGHT_W);
	CHECK_EQ(p->default_clearance, 0);
	pol_free(p);
}

TEST(parse_reports_an_unknown_level_on_its_line)
{
	CHECK_EQ(bad_line("[role a]\ngroup = g\nclearance = secret\n"), 3);
	CHECK_EQ(bad_line("[folder /x]\nlevel = top\n"), 2);
	CHECK_EQ(bad_line("[vault]\ndefault-clearance = nope\n"), 2);
}

TEST(parse_reports_a_folder_grant_to_an_unknown_role_on_its_line)
{
	CHECK_EQ(bad_line("[folder /x]\nsales = r\n[role finance]\ngroup = g\nclearance = public\n"),
		 2);
}

TEST(parse_accepts_a_grant_to_a_role_defined_further_down)
{
	CHECK_EQ(bad_line("[folder /x]\nsales = r\n[role sales]\ngroup = g\nclearance = public\n"),
		 0);
}

TEST(parse_rejects_rights_other_than_r_rw_rwx_none)
{
	CHECK_EQ(bad_line("[role s]\ngroup = g\nclearance = public\n[folder /x]\ns = wx\n"), 5);
	CHECK_EQ(bad_line("[role s]\ngroup = g\nclearance = public\n[folder /x]\ns = R\n"), 5);
}

TEST(parse_rejects_syntax_errors_with_their_line)
{
	CHECK_EQ(bad_line("admin-group = x\n"), 1);
	CHECK_EQ(bad_line("[vault]\n\nadmin-group x\n"), 3);
	CHECK_EQ(bad_line("[vault\n"), 1);
	CHECK_EQ(bad_line("[vault]\ncolour = blue\n"), 2);
	CHECK_EQ(bad_line("[team x]\n"), 1);
	CHECK_EQ(bad_line("[role a]\ngroup = g\nclearance = public\n[role a]\n"), 4);
	CHECK_EQ(bad_line("[role a b]\n"), 1);
	CHECK_EQ(bad_line("[role a]\ngroup = g\ngroup = h\nclearance = public\n"), 3);
	CHECK_EQ(bad_line("[role a]\ngroup = g,\nclearance = public\n"), 2);
}

TEST(parse_rejects_a_role_without_group_or_clearance_on_its_header_line)
{
	CHECK_EQ(bad_line("\n[role a]\nclearance = public\n"), 2);
	CHECK_EQ(bad_line("[vault]\n[role a]\ngroup = g\n"), 2);
}

TEST(parse_rejects_folder_paths_that_are_not_canonical)
{
	CHECK_EQ(bad_line("[folder sales]\n"), 1);
	CHECK_EQ(bad_line("[folder /a/../b]\n"), 1);
	CHECK_EQ(bad_line("[folder /a/./b]\n"), 1);
	CHECK_EQ(bad_line("[folder /a//b]\n"), 1);
	CHECK_EQ(bad_line("[folder /a/]\n"), 1);
	CHECK_EQ(bad_line("[folder /a]\n[folder /a]\n"), 2);
	CHECK_EQ(bad_line("[folder /]\n"), 0);
}

TEST(parse_ignores_comments_blank_lines_and_crlf)
{
	CHECK_EQ(bad_line("# a\r\n; b\r\n\r\n[vault]\r\n  admin-group =  g  \r\n"), 0);
}

TEST(parse_rejects_a_nul_byte_with_its_line)
{
	static const char text[] = "[vault]\nadmin-group = a\0b\n";
	struct pol_policy *p = NULL;
	struct pol_error err;

	CHECK(pol_parse(text, sizeof(text) - 1, LEVELS, NLEVELS, &p, &err) == -EINVAL);
	CHECK(p == NULL);
	CHECK_EQ(err.line, 2);
}

TEST(resolve_reports_an_unknown_group_with_the_line_naming_it)
{
	struct pol_policy *p = NULL;
	struct pol_error err;

	CHECK(parse("[vault]\nadmin-group = ex-admin\n[role a]\nclearance = public\n"
		    "group = ex-sales, ghosts\n",
		    &p, &err) == 0);
	CHECK(pol_resolve(p, fake_lookup, NULL, &err) == -ENOENT);
	CHECK_EQ(err.line, 5);
	CHECK(strstr(err.msg, "ghosts") != NULL);
	pol_free(p);
}

TEST(compile_refuses_unresolved_groups)
{
	struct pol_policy *p = NULL;
	struct pol_error err;

	CHECK(parse(EXAMPLE, &p, &err) == 0);
	CHECK(pol_compile(p, NULL, 0) == -EINVAL);
	pol_free(p);
}

TEST(compiled_form_round_trips_roles_gids_folders_and_grants)
{
	struct pol_policy *p = example(), *q = NULL;
	struct pol_error err;
	char *buf, *buf2;
	ssize_t n, n2;

	CHECK(p);
	n = pol_compile(p, NULL, 0);
	CHECK(n > 0);
	buf = malloc((size_t)n);
	buf2 = malloc((size_t)n);
	CHECK(buf && buf2);
	CHECK(pol_compile(p, buf, (size_t)n - 1) == -ENOSPC);
	CHECK_EQ(pol_compile(p, buf, (size_t)n), n);
	CHECK(pol_compiled_parse(buf, (size_t)n, LEVELS, NLEVELS, &q, &err) == 0);
	CHECK_EQ(q->nroles, 3);
	CHECK_EQ(q->roles[1].groups[1].gid, 903);
	CHECK(strcmp(q->roles[1].groups[1].name, "ex-controlling") == 0);
	CHECK_EQ(q->admin.gid, 900);
	CHECK(strcmp(q->folders[1].path, "/Finance/Payroll 2024") == 0);
	CHECK_EQ(q->folders[1].level, 3);
	CHECK_EQ(q->folders[1].grants[0].rights, 7);
	/* Compiling the parsed copy gives the same bytes. */
	n2 = pol_compile(q, buf2, (size_t)n);
	CHECK_EQ(n2, n);
	CHECK(memcmp(buf, buf2, (size_t)n) == 0);
	/* Spaces never reach the compiled form unescaped. */
	CHECK(memmem(buf, (size_t)n, "Payroll%202024", 14) != NULL);
	free(buf);
	free(buf2);
	pol_free(p);
	pol_free(q);
}

TEST(compiled_parse_rejects_every_truncation)
{
	struct pol_policy *p = example(), *q = NULL;
	struct pol_error err;
	char buf[4096];
	ssize_t n;

	CHECK(p);
	n = pol_compile(p, buf, sizeof(buf));
	CHECK(n > 0);
	for (ssize_t cut = 0; cut < n; cut++) {
		/* A cut at a record boundary is a shorter valid policy; any
		 * other cut leaves a record without its newline. */
		int r = pol_compiled_parse(buf, (size_t)cut, LEVELS, NLEVELS, &q, &err);

		if (cut > 0 && buf[cut - 1] == '\n' && r == 0) {
			pol_free(q);
			q = NULL;
			continue;
		}
		CHECK(r == -EUCLEAN);
		CHECK(q == NULL);
	}
	pol_free(p);
}

TEST(compiled_parse_rejects_malformed_records)
{
	static const char *const bad[] = {
		"strongroom-policy 2\n",
		"strongroom-policy 1\nadmin x g\n",
		"strongroom-policy 1\nadmin 01 g\n",
		"strongroom-policy 1\nadmin 5 a b\n",
		"strongroom-policy 1\nrole a secret 1:g\n",
		"strongroom-policy 1\nrole a public 1:g,\n",
		"strongroom-policy 1\nrole a public 1:g%2\n",
		"strongroom-policy 1\nrole a public 1:%61\n",
		"strongroom-policy 1\nrole a public 1:g\nrole a public 2:h\n",
		"strongroom-policy 1\nfolder - /x b=r\n",
		"strongroom-policy 1\nfolder - x\n",
		"strongroom-policy 1\nfolder - /x  \n",
		"strongroom-policy 1\nfolder - /x\nrole a public 1:g\n",
		"strongroom-policy 1\nfolder - /x\nfolder - /x\n",
		"strongroom-policy 1\nsomething\n",
		"strongroom-policy 1\n\n",
	};
	struct pol_policy *q = NULL;
	struct pol_error err;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = pol_compiled_parse(bad[i], strlen(bad[i]), LEVELS, NLEVELS, &q, &err);

		if (r != -EUCLEAN)
			printf("# accepted: %s", bad[i]);
		CHECK(r == -EUCLEAN);
		CHECK(q == NULL);
	}
}

TEST(group_names_with_spaces_survive_the_compiled_form)
{
	struct pol_policy *p = NULL, *q = NULL;
	struct pol_error err;
	char buf[1024];
	ssize_t n;

	CHECK(parse("[role s]\ngroup = sales team@corp\nclearance = internal\n", &p, &err) == 0);
	CHECK(pol_resolve(p, fake_lookup, NULL, &err) == 0);
	n = pol_compile(p, buf, sizeof(buf));
	CHECK(n > 0);
	CHECK(memchr(buf, ' ', (size_t)n) != NULL);
	CHECK(pol_compiled_parse(buf, (size_t)n, LEVELS, NLEVELS, &q, &err) == 0);
	CHECK(strcmp(q->roles[0].groups[0].name, "sales team@corp") == 0);
	CHECK_EQ(q->roles[0].groups[0].gid, 905);
	pol_free(p);
	pol_free(q);
}

TEST(clearance_is_the_highest_of_the_callers_roles)
{
	struct pol_policy *p = example();
	gid_t both[] = { 901, 902 };
	struct pol_caller c = { .uid = 1000, .gid = 100, .groups = both, .ngroups = 2 };

	CHECK(p);
	CHECK_EQ(pol_clearance(p, &c, TOP), 2);
	c.ngroups = 1;
	CHECK_EQ(pol_clearance(p, &c, TOP), 1);
	pol_free(p);
}

TEST(clearance_counts_the_primary_group_and_any_group_of_a_role)
{
	struct pol_policy *p = example();
	struct pol_caller c = { .uid = 1000, .gid = 903 };

	CHECK(p);
	CHECK_EQ(pol_clearance(p, &c, TOP), 2);
	pol_free(p);
}

TEST(root_and_callers_without_a_policy_are_cleared_for_every_level)
{
	struct pol_policy *p = example();
	struct pol_caller root = { .uid = 0, .gid = 0 };
	struct pol_caller nobody = { .uid = 65534, .gid = 65534 };

	CHECK(p);
	CHECK_EQ(pol_clearance(p, &root, TOP), 3);
	CHECK_EQ(pol_clearance(NULL, &nobody, TOP), 3);
	CHECK(pol_may_open(NULL, &nobody, TOP, 3));
	CHECK(pol_may_open(p, &root, TOP, 3));
	pol_free(p);
}

TEST(a_caller_in_no_role_gets_the_default_clearance)
{
	struct pol_policy *p = example(), *q = NULL;
	struct pol_caller c = { .uid = 1000, .gid = 100 };
	struct pol_error err;

	CHECK(p);
	CHECK_EQ(pol_clearance(p, &c, TOP), 0);
	CHECK(pol_may_open(p, &c, TOP, 0));
	CHECK(!pol_may_open(p, &c, TOP, 1));
	CHECK(parse("[vault]\ndefault-clearance = none\n", &q, &err) == 0);
	CHECK_EQ(pol_clearance(q, &c, TOP), POL_NONE);
	CHECK(!pol_may_open(q, &c, TOP, 0));
	pol_free(p);
	pol_free(q);
}

TEST(may_open_compares_the_level_with_the_clearance)
{
	struct pol_policy *p = example();
	gid_t g[] = { 901 };
	struct pol_caller sales = { .uid = 1000, .gid = 100, .groups = g, .ngroups = 1 };

	CHECK(p);
	CHECK(pol_may_open(p, &sales, TOP, 0));
	CHECK(pol_may_open(p, &sales, TOP, 1));
	CHECK(!pol_may_open(p, &sales, TOP, 2));
	CHECK(!pol_may_open(p, &sales, TOP, 3));
	pol_free(p);
}

TEST(admins_are_root_and_members_of_the_admin_group)
{
	struct pol_policy *p = example();
	gid_t g[] = { 5, 900 };
	struct pol_caller c = { .uid = 1000, .gid = 100, .groups = g, .ngroups = 1 };
	struct pol_caller root = { .uid = 0, .gid = 0 };

	CHECK(p);
	CHECK(!pol_is_admin(p, &c));
	c.ngroups = 2;
	CHECK(pol_is_admin(p, &c));
	CHECK(pol_is_admin(p, &root));
	CHECK(pol_is_admin(NULL, &root));
	CHECK(!pol_is_admin(NULL, &c));
	pol_free(p);
}

TEST(folder_acl_gives_folders_x_with_r_and_rwx_with_w)
{
	struct pol_policy *p = example();
	struct pol_acl_entry e[8];
	int n;

	CHECK(p);
	n = pol_folder_acl(p, 0, true, e, 8); /* /Sales: sales rw, finance r */
	CHECK_EQ(n, 3);
	CHECK_EQ(e[0].gid, 901);
	CHECK_EQ(e[0].perm, 7);
	CHECK_EQ(e[1].gid, 902);
	CHECK_EQ(e[1].perm, 5);
	CHECK_EQ(e[2].gid, 903);
	CHECK_EQ(e[2].perm, 5);
	n = pol_folder_acl(p, 0, false, e, 8);
	CHECK_EQ(n, 3);
	CHECK_EQ(e[0].perm, 6);
	CHECK_EQ(e[1].perm, 4);
	/* "none" gives no entry at all. */
	n = pol_folder_acl(p, 1, false, e, 8);
	CHECK_EQ(n, 3);
	CHECK_EQ(e[0].perm, 7);
	CHECK_EQ(e[2].gid, 904);
	CHECK(pol_folder_acl(p, 1, false, e, 2) == -ENOSPC);
	CHECK(pol_folder_find(p, "/Finance/Payroll 2024") == 1);
	CHECK(pol_folder_find(p, "/Finance") == -ENOENT);
	pol_free(p);
}

TEST(two_roles_on_one_group_give_one_entry_with_their_union)
{
	struct pol_policy *p = NULL;
	struct pol_acl_entry e[4];
	struct pol_error err;

	CHECK(parse("[role a]\ngroup = ex-sales\nclearance = public\n"
		    "[role b]\ngroup = ex-sales\nclearance = public\n"
		    "[folder /x]\na = r\nb = rw\n",
		    &p, &err) == 0);
	CHECK(pol_resolve(p, fake_lookup, NULL, &err) == 0);
	CHECK_EQ(pol_folder_acl(p, 0, false, e, 4), 1);
	CHECK_EQ(e[0].perm, 6);
	pol_free(p);
}


/* ---- the vault's side ---- */

static const char PASS[] = "policy test passphrase";
static const char PASS_LOW[] = "branch office passphrase";

static const struct vault_caller root = { .uid = 0, .gid = 0, .pid = 1, .umask = 022 };
static const gid_t sales_groups[] = { 901 };
static const struct vault_caller sales = { .uid = 1001, .gid = 1001, .pid = 1, .umask = 022,
					   .ngroups = 1, .groups = sales_groups };
static const gid_t finance_groups[] = { 902 };
static const struct vault_caller finance = { .uid = 1002, .gid = 1002, .pid = 1, .umask = 022,
					     .ngroups = 1, .groups = finance_groups };
static const gid_t admin_groups[] = { 901, 900 };
static const struct vault_caller admin = { .uid = 1003, .gid = 1003, .pid = 1, .umask = 022,
					   .ngroups = 2, .groups = admin_groups };

struct fx {
	char store[256];
	struct kr_keyring *kr;
	struct vault *v;
};

static struct kr_secret secret_of(const char *p)
{
	struct kr_secret s = {.kind = KR_SECRET_PASSPHRASE, .bytes = p, .len = strlen(p)};
	return s;
}

static int fx_new(struct fx *f)
{
	char dir[] = "/tmp/sr-policy-XXXXXX";
	char rec[KR_RECOVERY_TEXT_BYTES];
	struct kr_secret s = secret_of(PASS);
	struct kr_kdf_params kdf;
	struct kr_config cfg;
	int r;

	memset(f, 0, sizeof(*f));
	if (!mkdtemp(dir))
		return -errno;
	snprintf(f->store, sizeof(f->store), "%s/store", dir);
	kr_config_default(&cfg);
	kr_kdf_params_default(&kdf);
	r = kr_vault_create(f->store, &cfg, &s, &kdf, rec, &f->kr);
	if (r < 0)
		return r;
	return vault_open(f->store, f->kr, 0, &f->v);
}

static void fx_free(struct fx *f)
{
	vault_close(f->v);
	kr_keyring_free(f->kr);
	f->v = NULL;
	f->kr = NULL;
}

/* A second vault on the same store, unlocked by a slot that holds levels
 * up to ceiling only. */
static int fx_low(struct fx *f, unsigned ceiling, struct kr_keyring **kr, struct vault **v)
{
	struct kr_secret low = secret_of(PASS_LOW);
	struct kr_kdf_params kdf;
	int r;

	kr_kdf_params_default(&kdf);
	r = kr_keyslot_add(f->store, f->kr, &low, ceiling, &kdf);
	if (r < 0)
		return r;
	r = kr_vault_unlock(f->store, &low, kr);
	if (r < 0)
		return r;
	return vault_open(f->store, *kr, 0, v);
}

static int put(struct vault *v, const struct vault_caller *c, const char *path, const char *text)
{
	struct vault_handle *h = NULL;
	ssize_t n;
	int r;

	r = vault_create(v, c, path, 0644, O_RDWR | O_CREAT | O_TRUNC, &h);
	if (r < 0)
		return r;
	n = vault_write(h, text, strlen(text), 0);
	r = vault_release(v, h);
	return n < 0 ? (int)n : r;
}

static ssize_t get(struct vault *v, const struct vault_caller *c, const char *path, char *buf,
		   size_t cap)
{
	struct vault_handle *h = NULL;
	ssize_t n;
	int r;

	r = vault_open_file(v, c, path, O_RDONLY, &h);
	if (r < 0)
		return r;
	n = vault_read(h, buf, cap - 1, 0);
	r = vault_release(v, h);
	if (n >= 0)
		buf[n] = '\0';
	return n < 0 ? n : r < 0 ? r : n;
}

static int level_set(struct vault *v, const struct vault_caller *c, const char *path,
		     const char *level)
{
	return vault_setxattr(v, c, path, "user.strongroom.level", level, strlen(level), 0);
}

static bool lists(struct vault *v, const char *dir, const char *name)
{
	struct vault_dirlist l;
	bool found = false;

	if (vault_readdir(v, &root, dir, false, &l) < 0)
		return false;
	for (size_t i = 0; i < l.n; i++)
		if (strcmp(l.ents[i].name, name) == 0)
			found = true;
	vault_dirlist_free(&l);
	return found;
}

/* Apply EXAMPLE's compiled form to the vault as root. */
static int policy_apply(struct vault *v)
{
	struct pol_policy *p = example();
	char buf[4096];
	ssize_t n;
	int r;

	if (!p)
		return -EINVAL;
	n = pol_compile(p, buf, sizeof(buf));
	pol_free(p);
	if (n < 0)
		return (int)n;
	r = vault_setxattr(v, &root, "/", POL_XATTR, buf, (size_t)n, 0);
	return r;
}

/* The EXAMPLE policy's folders: /Sales internal, /Finance confidential. */
static int tree_make(struct vault *v)
{
	int r = 0;

	r = r ?: vault_mkdir(v, &root, "/Sales", 0777);
	r = r ?: level_set(v, &root, "/Sales", "internal");
	r = r ?: vault_mkdir(v, &root, "/Finance", 0777);
	r = r ?: level_set(v, &root, "/Finance", "confidential");
	r = r ?: put(v, &root, "/Sales/leads.csv", "acme,42");
	r = r ?: put(v, &root, "/Sales/board.pdf", "board minutes");
	r = r ?: level_set(v, &root, "/Sales/board.pdf", "restricted");
	r = r ?: put(v, &root, "/Finance/q3.xlsx", "q3 numbers");
	return r;
}

TEST(vault_without_a_policy_limits_nobody_by_clearance)
{
	struct fx f;
	char buf[64];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(tree_make(f.v), 0);
	CHECK_EQ(get(f.v, &sales, "/Finance/q3.xlsx", buf, sizeof(buf)), 10);
	CHECK_EQ(get(f.v, &sales, "/Sales/board.pdf", buf, sizeof(buf)), 13);
	fx_free(&f);
}

TEST(caller_cannot_open_look_up_or_list_above_their_clearance)
{
	struct vault_dirlist l;
	struct stat st;
	struct fx f;
	char buf[64];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(tree_make(f.v), 0);
	CHECK_EQ(policy_apply(f.v), 0);
	/* sales: internal. */
	CHECK_EQ(get(f.v, &sales, "/Sales/leads.csv", buf, sizeof(buf)), 7);
	CHECK_EQ(put(f.v, &sales, "/Sales/new.txt", "mine"), 0);
	CHECK_EQ(vault_getattr(f.v, &sales, "/Finance", &st), 0); /* the folder itself shows */
	CHECK_EQ(vault_getattr(f.v, &sales, "/Finance/q3.xlsx", &st), -EACCES);
	CHECK_EQ(get(f.v, &sales, "/Finance/q3.xlsx", buf, sizeof(buf)), -EACCES);
	CHECK_EQ(vault_readdir(f.v, &sales, "/Finance", false, &l), -EACCES);
	CHECK_EQ(put(f.v, &sales, "/Finance/x.txt", "no"), -EACCES);
	CHECK_EQ(vault_mkdir(f.v, &sales, "/Finance/sub", 0777), -EACCES);
	CHECK_EQ(vault_unlink(f.v, &sales, "/Finance/q3.xlsx"), -EACCES);
	CHECK_EQ(vault_rename(f.v, &sales, "/Finance/q3.xlsx", "/Sales/q3.xlsx", 0), -EACCES);
	CHECK_EQ(vault_link(f.v, &sales, "/Finance/q3.xlsx", "/Sales/q3.xlsx"), -EACCES);
	CHECK_EQ(vault_rmdir(f.v, &sales, "/Finance/none"), -EACCES);
	/* A restricted file in a folder sales may list: listed, not opened. */
	CHECK_EQ(vault_readdir(f.v, &sales, "/Sales", false, &l), 0);
	vault_dirlist_free(&l);
	CHECK_EQ(get(f.v, &sales, "/Sales/board.pdf", buf, sizeof(buf)), -EACCES);
	/* finance: confidential, still not restricted. */
	CHECK_EQ(get(f.v, &finance, "/Finance/q3.xlsx", buf, sizeof(buf)), 10);
	CHECK(strcmp(buf, "q3 numbers") == 0);
	CHECK_EQ(get(f.v, &finance, "/Sales/board.pdf", buf, sizeof(buf)), -EACCES);
	/* root: everything. */
	CHECK_EQ(get(f.v, &root, "/Sales/board.pdf", buf, sizeof(buf)), 13);
	fx_free(&f);
}

TEST(policy_survives_a_remount_and_only_root_sets_it)
{
	struct fx f;
	char buf[64];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(tree_make(f.v), 0);
	CHECK_EQ(policy_apply(f.v), 0);
	vault_close(f.v);
	CHECK_EQ(vault_open(f.store, f.kr, 0, &f.v), 0);
	CHECK_EQ(get(f.v, &sales, "/Finance/q3.xlsx", buf, sizeof(buf)), -EACCES);
	CHECK_EQ(vault_setxattr(f.v, &admin, "/", POL_XATTR, "x", 1, 0), -EPERM);
	CHECK_EQ(vault_setxattr(f.v, &root, "/", POL_XATTR, "garbage\n", 8, 0), -EINVAL);
	CHECK_EQ(vault_setxattr(f.v, &root, "/Sales", POL_XATTR, "x", 1, 0), -EINVAL);
	CHECK_EQ(vault_removexattr(f.v, &root, "/", POL_XATTR), 0);
	CHECK_EQ(get(f.v, &sales, "/Finance/q3.xlsx", buf, sizeof(buf)), 10);
	fx_free(&f);
}

TEST(only_root_and_the_admin_group_change_levels)
{
	struct fx f;
	char buf[64];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(tree_make(f.v), 0);
	/* Without a policy only root is an admin. */
	CHECK_EQ(level_set(f.v, &admin, "/Sales/leads.csv", "confidential"), -EPERM);
	CHECK_EQ(policy_apply(f.v), 0);
	CHECK_EQ(level_set(f.v, &sales, "/Sales/leads.csv", "public"), -EPERM);
	CHECK_EQ(level_set(f.v, &admin, "/Sales/leads.csv", "public"), 0);
	CHECK_EQ(vault_getxattr(f.v, &sales, "/Sales/leads.csv", "user.strongroom.level", buf,
				sizeof(buf)),
		 6);
	CHECK_EQ(level_set(f.v, &root, "/Sales/leads.csv", "top-secret"), -EINVAL);
	CHECK_EQ(vault_removexattr(f.v, &root, "/Sales/leads.csv", "user.strongroom.level"),
		 -EOPNOTSUPP);
	fx_free(&f);
}

TEST(reclassifying_a_file_reencrypts_it_and_keeps_content_inode_and_times)
{
	struct stat before, after;
	struct fx f;
	char buf[64];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(tree_make(f.v), 0);
	CHECK_EQ(vault_getattr(f.v, &root, "/Sales/leads.csv", &before), 0);
	CHECK_EQ(level_set(f.v, &root, "/Sales/leads.csv", "confidential"), 0);
	CHECK_EQ(vault_getattr(f.v, &root, "/Sales/leads.csv", &after), 0);
	CHECK_EQ(after.st_ino, before.st_ino);
	CHECK_EQ(after.st_mtime, before.st_mtime);
	CHECK_EQ(after.st_size, 7);
	CHECK_EQ(get(f.v, &root, "/Sales/leads.csv", buf, sizeof(buf)), 7);
	CHECK(strcmp(buf, "acme,42") == 0);
	CHECK_EQ(vault_getxattr(f.v, &root, "/Sales/leads.csv", "user.strongroom.level", buf,
				sizeof(buf)),
		 12);
	/* Setting it again changes nothing. */
	CHECK_EQ(level_set(f.v, &root, "/Sales/leads.csv", "confidential"), 0);
	CHECK_EQ(get(f.v, &root, "/Sales/leads.csv", buf, sizeof(buf)), 7);
	fx_free(&f);
}

TEST(reclassifying_an_open_file_is_refused_with_ebusy)
{
	struct vault_handle *h = NULL;
	struct fx f;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(tree_make(f.v), 0);
	CHECK_EQ(vault_open_file(f.v, &root, "/Sales/leads.csv", O_RDONLY, &h), 0);
	CHECK_EQ(level_set(f.v, &root, "/Sales/leads.csv", "restricted"), -EBUSY);
	CHECK_EQ(vault_release(f.v, h), 0);
	CHECK_EQ(level_set(f.v, &root, "/Sales/leads.csv", "restricted"), 0);
	fx_free(&f);
}

TEST(a_file_above_its_folder_is_nameless_and_closed_without_its_key)
{
	struct kr_keyring *kr2 = NULL;
	struct vault *v2 = NULL;
	struct stat st;
	struct fx f;
	char buf[64];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(tree_make(f.v), 0);
	CHECK_EQ(fx_low(&f, 2, &kr2, &v2), 0); /* up to confidential */
	CHECK(lists(v2, "/Sales", "leads.csv"));
	CHECK(!lists(v2, "/Sales", "board.pdf"));
	CHECK_EQ(vault_getattr(v2, &root, "/Sales/board.pdf", &st), -ENOENT);
	CHECK_EQ(get(v2, &root, "/Finance/q3.xlsx", buf, sizeof(buf)), 10);
	/* The full mount still finds it; back at its folder's level its
	 * name is readable everywhere again. */
	CHECK(lists(f.v, "/Sales", "board.pdf"));
	CHECK_EQ(level_set(f.v, &root, "/Sales/board.pdf", "internal"), 0);
	CHECK(lists(v2, "/Sales", "board.pdf"));
	CHECK_EQ(get(v2, &root, "/Sales/board.pdf", buf, sizeof(buf)), 13);
	vault_close(v2);
	kr_keyring_free(kr2);
	fx_free(&f);
}

TEST(reclassifying_a_folder_reencrypts_its_names_and_its_own)
{
	struct kr_keyring *kr2 = NULL;
	struct vault *v2 = NULL;
	struct stat st;
	struct fx f;
	char buf[64];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(tree_make(f.v), 0);
	CHECK_EQ(vault_mkdir(f.v, &root, "/Sales/2024", 0777), 0);
	CHECK_EQ(put(f.v, &root, "/Sales/2024/deal.docx", "deal"), 0);
	CHECK_EQ(level_set(f.v, &root, "/Sales", "restricted"), 0);
	CHECK_EQ(fx_low(&f, 2, &kr2, &v2), 0);
	CHECK(!lists(v2, "/", "Sales"));
	CHECK_EQ(vault_getattr(v2, &root, "/Sales", &st), -ENOENT);
	vault_close(v2);
	v2 = NULL;
	/* Entries keep their own levels and stay reachable on the full mount. */
	CHECK_EQ(get(f.v, &root, "/Sales/leads.csv", buf, sizeof(buf)), 7);
	CHECK_EQ(get(f.v, &root, "/Sales/2024/deal.docx", buf, sizeof(buf)), 4);
	CHECK_EQ(vault_getxattr(f.v, &root, "/Sales/leads.csv", "user.strongroom.level", buf,
				sizeof(buf)),
		 8);
	/* And back down: every name readable on the lower mount again. */
	CHECK_EQ(level_set(f.v, &root, "/Sales", "internal"), 0);
	CHECK_EQ(vault_open(f.store, kr2, 0, &v2), 0);
	CHECK(lists(v2, "/", "Sales"));
	CHECK(lists(v2, "/Sales", "leads.csv"));
	CHECK(lists(v2, "/Sales", "2024"));
	CHECK(!lists(v2, "/Sales", "board.pdf"));
	CHECK_EQ(get(v2, &root, "/Sales/2024/deal.docx", buf, sizeof(buf)), 4);
	vault_close(v2);
	kr_keyring_free(kr2);
	fx_free(&f);
}

TEST(clearance_applies_to_everything_below_a_folder_above_it)
{
	struct fx f;
	char buf[64];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(tree_make(f.v), 0);
	CHECK_EQ(vault_mkdir(f.v, &root, "/Finance/public", 0777), 0);
	CHECK_EQ(level_set(f.v, &root, "/Finance/public", "public"), 0);
	CHECK_EQ(put(f.v, &root, "/Finance/public/prices.txt", "prices"), 0);
	CHECK_EQ(policy_apply(f.v), 0);
	CHECK_EQ(get(f.v, &sales, "/Finance/public/prices.txt", buf, sizeof(buf)), -EACCES);
	CHECK_EQ(get(f.v, &finance, "/Finance/public/prices.txt", buf, sizeof(buf)), 6);
	fx_free(&f);
}

TEST(a_restricted_file_moved_to_another_folder_keeps_its_name_hidden)
{
	struct kr_keyring *kr2 = NULL;
	struct vault *v2 = NULL;
	struct fx f;
	char buf[64];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(tree_make(f.v), 0);
	CHECK_EQ(vault_rename(f.v, &root, "/Sales/board.pdf", "/Finance/board-copy.pdf", 0), 0);
	CHECK_EQ(vault_link(f.v, &root, "/Finance/board-copy.pdf", "/Sales/board-link.pdf"), 0);
	CHECK_EQ(get(f.v, &root, "/Finance/board-copy.pdf", buf, sizeof(buf)), 13);
	CHECK_EQ(fx_low(&f, 2, &kr2, &v2), 0);
	CHECK(lists(v2, "/Finance", "q3.xlsx"));
	CHECK(!lists(v2, "/Finance", "board-copy.pdf"));
	CHECK(!lists(v2, "/Sales", "board-link.pdf"));
	CHECK(lists(f.v, "/Finance", "board-copy.pdf"));
	CHECK(lists(f.v, "/Sales", "board-link.pdf"));
	vault_close(v2);
	kr_keyring_free(kr2);
	fx_free(&f);
}

TEST(saving_over_a_restricted_file_through_a_temporary_file_keeps_it_restricted)
{
	struct kr_keyring *kr2 = NULL;
	struct vault *v2 = NULL;
	struct fx f;
	char buf[64];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(tree_make(f.v), 0);
	CHECK_EQ(put(f.v, &root, "/Sales/.~board.tmp", "new minutes"), 0);
	CHECK_EQ(vault_getxattr(f.v, &root, "/Sales/.~board.tmp", "user.strongroom.level", buf,
				sizeof(buf)),
		 8);
	CHECK_EQ(vault_rename(f.v, &root, "/Sales/.~board.tmp", "/Sales/board.pdf", 0), 0);
	CHECK_EQ(vault_getxattr(f.v, &root, "/Sales/board.pdf", "user.strongroom.level", buf,
				sizeof(buf)),
		 10);
	CHECK(memcmp(buf, "restricted", 10) == 0);
	CHECK_EQ(get(f.v, &root, "/Sales/board.pdf", buf, sizeof(buf)), 11);
	CHECK(strcmp(buf, "new minutes") == 0);
	/* The other way round: a restricted file over an internal one takes
	 * a restricted name. */
	CHECK_EQ(put(f.v, &root, "/Sales/memo.txt", "secret memo"), 0);
	CHECK_EQ(level_set(f.v, &root, "/Sales/memo.txt", "restricted"), 0);
	CHECK_EQ(vault_rename(f.v, &root, "/Sales/memo.txt", "/Sales/leads.csv", 0), 0);
	CHECK_EQ(fx_low(&f, 2, &kr2, &v2), 0);
	CHECK(!lists(v2, "/Sales", "board.pdf"));
	CHECK(!lists(v2, "/Sales", "leads.csv"));
	CHECK(lists(f.v, "/Sales", "leads.csv"));
	CHECK_EQ(get(f.v, &root, "/Sales/leads.csv", buf, sizeof(buf)), 11);
	vault_close(v2);
	kr_keyring_free(kr2);
	fx_free(&f);
}

int main(void)
{
	RUN(parse_reads_roles_folders_levels_and_the_admin_group);
	RUN(parse_reports_an_unknown_level_on_its_line);
	RUN(parse_reports_a_folder_grant_to_an_unknown_role_on_its_line);
	RUN(parse_accepts_a_grant_to_a_role_defined_further_down);
	RUN(parse_rejects_rights_other_than_r_rw_rwx_none);
	RUN(parse_rejects_syntax_errors_with_their_line);
	RUN(parse_rejects_a_role_without_group_or_clearance_on_its_header_line);
	RUN(parse_rejects_folder_paths_that_are_not_canonical);
	RUN(parse_ignores_comments_blank_lines_and_crlf);
	RUN(parse_rejects_a_nul_byte_with_its_line);
	RUN(resolve_reports_an_unknown_group_with_the_line_naming_it);
	RUN(compile_refuses_unresolved_groups);
	RUN(compiled_form_round_trips_roles_gids_folders_and_grants);
	RUN(compiled_parse_rejects_every_truncation);
	RUN(compiled_parse_rejects_malformed_records);
	RUN(group_names_with_spaces_survive_the_compiled_form);
	RUN(clearance_is_the_highest_of_the_callers_roles);
	RUN(clearance_counts_the_primary_group_and_any_group_of_a_role);
	RUN(root_and_callers_without_a_policy_are_cleared_for_every_level);
	RUN(a_caller_in_no_role_gets_the_default_clearance);
	RUN(may_open_compares_the_level_with_the_clearance);
	RUN(admins_are_root_and_members_of_the_admin_group);
	RUN(folder_acl_gives_folders_x_with_r_and_rwx_with_w);
	RUN(two_roles_on_one_group_give_one_entry_with_their_union);
	RUN(vault_without_a_policy_limits_nobody_by_clearance);
	RUN(caller_cannot_open_look_up_or_list_above_their_clearance);
	RUN(policy_survives_a_remount_and_only_root_sets_it);
	RUN(only_root_and_the_admin_group_change_levels);
	RUN(reclassifying_a_file_reencrypts_it_and_keeps_content_inode_and_times);
	RUN(reclassifying_an_open_file_is_refused_with_ebusy);
	RUN(a_file_above_its_folder_is_nameless_and_closed_without_its_key);
	RUN(reclassifying_a_folder_reencrypts_its_names_and_its_own);
	RUN(clearance_applies_to_everything_below_a_folder_above_it);
	RUN(a_restricted_file_moved_to_another_folder_keeps_its_name_hidden);
	RUN(saving_over_a_restricted_file_through_a_temporary_file_keeps_it_restricted);
	return tap_done();
}
