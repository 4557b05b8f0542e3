/* test_vault.c - the vault path layer driven without FUSE.
 *
 * Every test creates its own store with kr_vault_create in a temporary
 * directory (SR_KDF=test keeps Argon2id cheap) and calls the vault API as
 * the frontend would: names, files, links, xattrs, ACL inheritance, levels,
 * damage and read-only mounts. The ACL arithmetic is also tested directly.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../../fs/vault/vault_internal.h"
#include "strongroom/vault.h"
#include "tap.h"

#include <sodium.h>

static const char PASS[] = "vault test passphrase";
static const char PASS_LOW[] = "branch office passphrase";

struct fx {
	char store[256];
	struct kr_keyring *kr;
	struct vault *v;
};

static struct vault_caller caller = { .uid = 0, .gid = 0, .pid = 1, .umask = 022 };

static struct kr_secret secret_of(const char *p)
{
	struct kr_secret s = {.kind = KR_SECRET_PASSPHRASE, .bytes = p, .len = strlen(p)};
	return s;
}

/* A new vault in a fresh temporary store, opened writable. */
static int fx_new(struct fx *f)
{
	char dir[] = "/tmp/sr-vault-XXXXXX";
	char rec[KR_RECOVERY_TEXT_BYTES];
	struct kr_kdf_params kdf;
	struct kr_config cfg;
	struct kr_secret s = secret_of(PASS);
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

/* Close the vault (keeping the keyring) and open it again with flags. */
static int fx_reopen(struct fx *f, unsigned flags)
{
	vault_close(f->v);
	f->v = NULL;
	return vault_open(f->store, f->kr, flags, &f->v);
}

static void fx_free(struct fx *f)
{
	vault_close(f->v);
	kr_keyring_free(f->kr);
	f->v = NULL;
	f->kr = NULL;
}

static int put_file(struct vault *v, const char *path, const void *data, size_t len)
{
	struct vault_handle *h = NULL;
	ssize_t n;
	int r;

	r = vault_create(v, &caller, path, 0644, O_RDWR | O_CREAT | O_TRUNC, &h);
	if (r < 0)
		return r;
	n = len ? vault_write(h, data, len, 0) : 0;
	r = vault_release(v, h);
	if (n < 0)
		return (int)n;
	if ((size_t)n != len)
		return -EIO;
	return r;
}

static ssize_t get_file(struct vault *v, const char *path, void *buf, size_t cap)
{
	struct vault_handle *h = NULL;
	ssize_t n;
	int r;

	r = vault_open_file(v, &caller, path, O_RDONLY, &h);
	if (r < 0)
		return r;
	n = vault_read(h, buf, cap, 0);
	r = vault_release(v, h);
	return n < 0 ? n : r < 0 ? r : n;
}

static bool has_name(const struct vault_dirlist *l, const char *name)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (strcmp(l->ents[i].name, name) == 0)
			return true;
	return false;
}

/* Does any store entry under dir have a name equal to or containing s? */
static bool tree_mentions(const char *dir, const char *s)
{
	struct dirent *de;
	bool found = false;
	DIR *dp = opendir(dir);

	if (!dp)
		return false;
	while (!found && (de = readdir(dp))) {
		char sub[4096];

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (strstr(de->d_name, s))
			found = true;
		snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name);
		if (!found && de->d_type == DT_DIR)
			found = tree_mentions(sub, s);
	}
	closedir(dp);
	return found;
}

/* The first store subdirectory of STORE/tree (the only one in a test). */
static int tree_first_dir(const struct fx *f, char *out, size_t cap)
{
	char tree[300];
	struct dirent *de;
	DIR *dp;
	int r = -ENOENT;

	snprintf(tree, sizeof(tree), "%s/tree", f->store);
	dp = opendir(tree);
	if (!dp)
		return -errno;
	while ((de = readdir(dp))) {
		if (de->d_type == DT_DIR && de->d_name[0] != '.') {
			snprintf(out, cap, "%s/%s", tree, de->d_name);
			r = 0;
			break;
		}
	}
	closedir(dp);
	return r;
}

static size_t count_entries(const char *dir)
{
	struct dirent *de;
	size_t n = 0;
	DIR *dp = opendir(dir);

	if (!dp)
		return 0;
	while ((de = readdir(dp)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(dp);
	return n;
}

/* ACL xattr value builder: entries as (tag, perm, id) triples. */
static size_t acl_build(unsigned char *out, const unsigned (*e)[3], size_t n)
{
	size_t i, o = 4;

	out[0] = 2;
	out[1] = out[2] = out[3] = 0;
	for (i = 0; i < n; i++) {
		out[o++] = (unsigned char)e[i][0];
		out[o++] = (unsigned char)(e[i][0] >> 8);
		out[o++] = (unsigned char)e[i][1];
		out[o++] = 0;
		out[o++] = (unsigned char)e[i][2];
		out[o++] = (unsigned char)(e[i][2] >> 8);
		out[o++] = (unsigned char)(e[i][2] >> 16);
		out[o++] = (unsigned char)(e[i][2] >> 24);
	}
	return o;
}

/* perm of the entry with tag (and id for named entries), or -1. */
static int acl_perm(const unsigned char *a, size_t len, unsigned tag, unsigned id)
{
	size_t o;

	for (o = 4; o + 8 <= len; o += 8) {
		unsigned t = a[o] | (a[o + 1] << 8);
		unsigned eid = a[o + 4] | (a[o + 5] << 8) | (a[o + 6] << 16) | ((unsigned)a[o + 7] << 24);

		if (t == tag && (tag != VAULT_ACL_USER && tag != VAULT_ACL_GROUP ? 1 : eid == id))
			return a[o + 2] | (a[o + 3] << 8);
	}
	return -1;
}

#define U_OBJ VAULT_ACL_USER_OBJ
#define G_OBJ VAULT_ACL_GROUP_OBJ
#define NAMED_U VAULT_ACL_USER
#define NAMED_G VAULT_ACL_GROUP
#define MASK VAULT_ACL_MASK
#define OTHER VAULT_ACL_OTHER
#define NOID 0xffffffffu

/* ---- ACL arithmetic (pure) ---- */

TEST(acl_inherit_intersects_base_entries_and_mask_with_create_mode)
{
	static const unsigned d[][3] = { { U_OBJ, 7, NOID }, { NAMED_U, 7, 1000 },
					  { G_OBJ, 5, NOID }, { NAMED_G, 6, 2000 },
					  { MASK, 7, NOID }, { OTHER, 5, NOID } };
	unsigned char dflt[64];
	size_t dlen = acl_build(dflt, d, 6), alen = 0;
	mode_t mode = 0640;
	void *acc = NULL;

	CHECK_EQ(vault_acl_inherit(dflt, dlen, &mode, &acc, &alen), 0);
	CHECK(acc != NULL);
	CHECK_EQ(alen, dlen);
	CHECK_EQ(mode, 0640);
	CHECK_EQ(acl_perm(acc, alen, U_OBJ, 0), 6);
	CHECK_EQ(acl_perm(acc, alen, NAMED_U, 1000), 7); /* named entries stay */
	CHECK_EQ(acl_perm(acc, alen, G_OBJ, 0), 5);       /* the mask limits, not GROUP_OBJ */
	CHECK_EQ(acl_perm(acc, alen, MASK, 0), 4);
	CHECK_EQ(acl_perm(acc, alen, OTHER, 0), 0);
	free(acc);
}

TEST(acl_inherit_of_minimal_default_acl_gives_mode_and_no_access_acl)
{
	static const unsigned d[][3] = { { U_OBJ, 7, NOID }, { G_OBJ, 5, NOID }, { OTHER, 0, NOID } };
	unsigned char dflt[64];
	size_t dlen = acl_build(dflt, d, 3), alen = 1;
	mode_t mode = 0666;
	void *acc = (void *)1;

	CHECK_EQ(vault_acl_inherit(dflt, dlen, &mode, &acc, &alen), 0);
	CHECK(acc == NULL);
	CHECK_EQ(alen, 0);
	CHECK_EQ(mode, 0640);
}

TEST(acl_chmod_updates_mask_and_leaves_group_obj)
{
	static const unsigned d[][3] = { { U_OBJ, 7, NOID }, { NAMED_G, 7, 2000 },
					  { G_OBJ, 5, NOID }, { MASK, 7, NOID }, { OTHER, 5, NOID } };
	unsigned char a[64];
	size_t len = acl_build(a, d, 5);

	CHECK_EQ(vault_acl_chmod(a, len, 0610), 0);
	CHECK_EQ(acl_perm(a, len, U_OBJ, 0), 6);
	CHECK_EQ(acl_perm(a, len, MASK, 0), 1);
	CHECK_EQ(acl_perm(a, len, G_OBJ, 0), 5);
	CHECK_EQ(acl_perm(a, len, OTHER, 0), 0);
}

TEST(acl_chmod_without_mask_updates_group_obj)
{
	static const unsigned d[][3] = { { U_OBJ, 7, NOID }, { G_OBJ, 5, NOID }, { OTHER, 5, NOID } };
	unsigned char a[64];
	size_t len = acl_build(a, d, 3);

	CHECK_EQ(vault_acl_chmod(a, len, 0751), 0);
	CHECK_EQ(acl_perm(a, len, G_OBJ, 0), 5);
	CHECK_EQ(acl_perm(a, len, OTHER, 0), 1);
}

TEST(acl_mode_takes_group_bits_from_mask_and_reports_equivalence)
{
	static const unsigned d1[][3] = { { U_OBJ, 6, NOID }, { NAMED_U, 7, 5 }, { G_OBJ, 4, NOID },
					   { MASK, 6, NOID }, { OTHER, 0, NOID } };
	static const unsigned d2[][3] = { { U_OBJ, 7, NOID }, { G_OBJ, 5, NOID }, { OTHER, 1, NOID } };
	unsigned char a[64];
	size_t len = acl_build(a, d1, 5);
	mode_t perm = 0;
	bool equiv = true;

	CHECK_EQ(vault_acl_mode(a, len, &perm, &equiv), 0);
	CHECK_EQ(perm, 0660);
	CHECK(!equiv);
	len = acl_build(a, d2, 3);
	CHECK_EQ(vault_acl_mode(a, len, &perm, &equiv), 0);
	CHECK_EQ(perm, 0751);
	CHECK(equiv);
}

TEST(acl_check_rejects_malformed_acls)
{
	static const unsigned no_mask[][3] = { { U_OBJ, 7, NOID }, { NAMED_U, 7, 5 },
						{ G_OBJ, 4, NOID }, { OTHER, 0, NOID } };
	static const unsigned two_users[][3] = { { U_OBJ, 7, NOID }, { U_OBJ, 7, NOID },
						  { G_OBJ, 4, NOID }, { OTHER, 0, NOID } };
	static const unsigned bad_perm[][3] = { { U_OBJ, 8, NOID }, { G_OBJ, 4, NOID },
						 { OTHER, 0, NOID } };
	unsigned char a[64];
	size_t len;

	len = acl_build(a, no_mask, 4);
	CHECK_EQ(vault_acl_check(a, len), -EINVAL);
	len = acl_build(a, two_users, 4);
	CHECK_EQ(vault_acl_check(a, len), -EINVAL);
	len = acl_build(a, bad_perm, 3);
	CHECK_EQ(vault_acl_check(a, len), -EINVAL);
	CHECK_EQ(vault_acl_check(a, len - 3), -EINVAL);
	a[0] = 1;
	CHECK_EQ(vault_acl_check(a, 4), -EINVAL);
	a[0] = 2;
	CHECK_EQ(vault_acl_check(a, 4), 0);
}

TEST(path_canon_collapses_slashes_and_refuses_dot_components)
{
	char *c = NULL;

	CHECK_EQ(vault_path_canon("//a///b/", &c), 0);
	CHECK(strcmp(c, "/a/b") == 0);
	free(c);
	CHECK_EQ(vault_path_canon("/", &c), 0);
	CHECK(strcmp(c, "/") == 0);
	free(c);
	CHECK_EQ(vault_path_canon("/a/../b", &c), -EINVAL);
	CHECK_EQ(vault_path_canon("a/b", &c), -EINVAL);
}

/* ---- the vault ---- */

TEST(open_creates_root_metadata_with_lowest_level_and_mode_0755)
{
	struct fx f;
	struct stat st;
	char p[512], lvl[64];

	CHECK_EQ(fx_new(&f), 0);
	snprintf(p, sizeof(p), "%s/tree/.sr-dir", f.store);
	CHECK_EQ(stat(p, &st), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/", &st), 0);
	CHECK(S_ISDIR(st.st_mode));
	CHECK_EQ(st.st_mode & 07777, 0755);
	CHECK_EQ(st.st_uid, 0);
	CHECK_EQ(vault_getxattr(f.v, &caller, "/", "user.strongroom.level", lvl, sizeof(lvl)), 6);
	CHECK(memcmp(lvl, "public", 6) == 0);
	fx_free(&f);
}

TEST(created_file_reads_back_after_reopen)
{
	struct fx f;
	char buf[64];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/hello.txt", "hello, vault", 12), 0);
	CHECK_EQ(fx_reopen(&f, 0), 0);
	CHECK_EQ(get_file(f.v, "/hello.txt", buf, sizeof(buf)), 12);
	CHECK(memcmp(buf, "hello, vault", 12) == 0);
	fx_free(&f);
}

TEST(two_handles_share_writes_and_getattr_sees_unsealed_size)
{
	struct fx f;
	struct vault_handle *a = NULL, *b = NULL;
	struct stat st, st2;
	char buf[16];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_create(f.v, &caller, "/shared", 0644, O_RDWR | O_CREAT, &a), 0);
	CHECK_EQ(vault_open_file(f.v, &caller, "/shared", O_RDONLY, &b), 0);
	CHECK_EQ(vault_write(a, "0123456789", 10, 0), 10);
	CHECK_EQ(vault_read(b, buf, sizeof(buf), 0), 10);
	CHECK(memcmp(buf, "0123456789", 10) == 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/shared", &st), 0);
	CHECK_EQ(st.st_size, 10);
	CHECK(S_ISREG(st.st_mode));
	CHECK_EQ(vault_fgetattr(f.v, b, &st2), 0);
	CHECK_EQ(st2.st_ino, st.st_ino);
	CHECK_EQ(vault_release(f.v, a), 0);
	CHECK_EQ(vault_release(f.v, b), 0);
	fx_free(&f);
}

TEST(create_with_o_excl_refuses_an_existing_name)
{
	struct fx f;
	struct vault_handle *h = NULL;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/a", "x", 1), 0);
	CHECK_EQ(vault_create(f.v, &caller, "/a", 0644, O_RDWR | O_CREAT | O_EXCL, &h), -EEXIST);
	fx_free(&f);
}

TEST(open_with_o_trunc_empties_the_file)
{
	struct fx f;
	struct vault_handle *h = NULL;
	struct stat st;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/a", "some bytes", 10), 0);
	CHECK_EQ(vault_open_file(f.v, &caller, "/a", O_WRONLY | O_TRUNC, &h), 0);
	CHECK_EQ(vault_release(f.v, h), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/a", &st), 0);
	CHECK_EQ(st.st_size, 0);
	fx_free(&f);
}

TEST(o_append_writes_at_the_current_end)
{
	struct fx f;
	struct vault_handle *h = NULL;
	char buf[32];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/log", "first;", 6), 0);
	CHECK_EQ(vault_open_file(f.v, &caller, "/log", O_WRONLY | O_APPEND, &h), 0);
	CHECK_EQ(vault_write(h, "second;", 7, 0), 7);
	CHECK_EQ(vault_release(f.v, h), 0);
	CHECK_EQ(get_file(f.v, "/log", buf, sizeof(buf)), 13);
	CHECK(memcmp(buf, "first;second;", 13) == 0);
	fx_free(&f);
}

TEST(readdir_lists_entries_with_attributes_and_no_reserved_names)
{
	struct fx f;
	struct vault_dirlist l;
	size_t i;
	bool saw_dir = false, saw_file = false;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/folder", 0755), 0);
	CHECK_EQ(put_file(f.v, "/report.pdf", "%PDF-1.7", 8), 0);
	CHECK_EQ(vault_readdir(f.v, &caller, "/", true, &l), 0);
	CHECK_EQ(l.n, 2);
	for (i = 0; i < l.n; i++) {
		CHECK(l.ents[i].name[0] != '.');
		if (strcmp(l.ents[i].name, "folder") == 0) {
			saw_dir = S_ISDIR(l.ents[i].st.st_mode);
		} else if (strcmp(l.ents[i].name, "report.pdf") == 0) {
			saw_file = S_ISREG(l.ents[i].st.st_mode) && l.ents[i].st.st_size == 8;
		}
	}
	vault_dirlist_free(&l);
	CHECK(saw_dir);
	CHECK(saw_file);
	fx_free(&f);
}

TEST(readdir_skips_and_counts_a_name_that_does_not_decrypt)
{
	struct fx f;
	struct vault_dirlist l;
	char p[512];
	int fd;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/real", "x", 1), 0);
	snprintf(p, sizeof(p), "%s/tree/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", f.store);
	fd = open(p, O_CREAT | O_WRONLY, 0600);
	CHECK(fd >= 0);
	close(fd);
	CHECK_EQ(vault_readdir(f.v, &caller, "/", false, &l), 0);
	CHECK_EQ(l.n, 1);
	CHECK(has_name(&l, "real"));
	vault_dirlist_free(&l);
	CHECK(vault_names_skipped(f.v) >= 1);
	fx_free(&f);
}

TEST(mkdir_and_rmdir_and_rmdir_refuses_a_nonempty_directory)
{
	struct fx f;
	struct stat st;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/d", 0750), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/d", 0750), -EEXIST);
	CHECK_EQ(vault_getattr(f.v, &caller, "/d", &st), 0);
	CHECK(S_ISDIR(st.st_mode));
	CHECK_EQ(st.st_mode & 07777, 0750 & ~022);
	CHECK_EQ(put_file(f.v, "/d/x", "1", 1), 0);
	CHECK_EQ(vault_rmdir(f.v, &caller, "/d"), -ENOTEMPTY);
	CHECK_EQ(vault_unlink(f.v, &caller, "/d/x"), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/d/x", &st), -ENOENT);
	CHECK_EQ(vault_rmdir(f.v, &caller, "/d"), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/d", &st), -ENOENT);
	CHECK_EQ(vault_rmdir(f.v, &caller, "/"), -EBUSY);
	fx_free(&f);
}

TEST(directory_recreated_after_rmdir_is_a_new_directory)
{
	struct fx f;
	struct stat a, b;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/d", 0755), 0);
	CHECK_EQ(put_file(f.v, "/d/old", "1", 1), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/d", &a), 0);
	CHECK_EQ(vault_unlink(f.v, &caller, "/d/old"), 0);
	CHECK_EQ(vault_rmdir(f.v, &caller, "/d"), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/d", 0755), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/d", &b), 0);
	CHECK(a.st_ino != b.st_ino);
	CHECK_EQ(put_file(f.v, "/d/new", "2", 1), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/d/new", &b), 0);
	fx_free(&f);
}

TEST(rename_moves_a_file_between_directories)
{
	struct fx f;
	struct stat st;
	char buf[8];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/in", 0755), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/out", 0755), 0);
	CHECK_EQ(put_file(f.v, "/in/doc", "abc", 3), 0);
	CHECK_EQ(vault_rename(f.v, &caller, "/in/doc", "/out/doc2", 0), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/in/doc", &st), -ENOENT);
	CHECK_EQ(get_file(f.v, "/out/doc2", buf, sizeof(buf)), 3);
	CHECK(memcmp(buf, "abc", 3) == 0);
	fx_free(&f);
}

TEST(rename_of_a_directory_moves_its_contents_and_forgets_the_old_path)
{
	struct fx f;
	struct stat st;
	char buf[8];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/a", 0755), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/a/b", 0755), 0);
	CHECK_EQ(put_file(f.v, "/a/b/c", "xyz", 3), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/a/b/c", &st), 0); /* fills the cache */
	CHECK_EQ(vault_rename(f.v, &caller, "/a", "/z", 0), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/a/b", &st), -ENOENT);
	CHECK_EQ(vault_getattr(f.v, &caller, "/a/b/c", &st), -ENOENT);
	CHECK_EQ(get_file(f.v, "/z/b/c", buf, sizeof(buf)), 3);
	CHECK_EQ(vault_rename(f.v, &caller, "/z", "/z/b/inside", 0), -EINVAL);
	fx_free(&f);
}

TEST(rename_over_an_empty_directory_replaces_it_and_refuses_a_full_one)
{
	char tree[300];
	struct fx f;
	struct stat st;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/src", 0755), 0);
	CHECK_EQ(put_file(f.v, "/src/f", "1", 1), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/full", 0755), 0);
	CHECK_EQ(put_file(f.v, "/full/g", "1", 1), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/empty", 0755), 0);
	CHECK_EQ(vault_rename(f.v, &caller, "/src", "/full", 0), -ENOTEMPTY);
	CHECK_EQ(vault_getattr(f.v, &caller, "/full/g", &st), 0);
	CHECK_EQ(vault_rename(f.v, &caller, "/src", "/empty", 0), 0);
	snprintf(tree, sizeof(tree), "%s/tree", f.store);
	CHECK_EQ(count_entries(tree), 3); /* .sr-dir, full, empty: nothing hidden left */
	CHECK_EQ(vault_getattr(f.v, &caller, "/empty/f", &st), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/src", &st), -ENOENT);
	CHECK_EQ(vault_rename(f.v, &caller, "/empty/f", "/full", 0), -EISDIR);
	fx_free(&f);
}

TEST(rename_noreplace_refuses_an_existing_target)
{
	struct fx f;
	char buf[8];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/a", "A", 1), 0);
	CHECK_EQ(put_file(f.v, "/b", "B", 1), 0);
	CHECK_EQ(vault_rename(f.v, &caller, "/a", "/b", RENAME_NOREPLACE), -EEXIST);
	CHECK_EQ(get_file(f.v, "/b", buf, sizeof(buf)), 1);
	CHECK_EQ(buf[0], 'B');
	CHECK_EQ(vault_rename(f.v, &caller, "/a", "/c", RENAME_NOREPLACE), 0);
	CHECK_EQ(get_file(f.v, "/c", buf, sizeof(buf)), 1);
	CHECK_EQ(buf[0], 'A');
	fx_free(&f);
}

TEST(rename_exchange_swaps_two_entries)
{
	struct fx f;
	struct stat st;
	char buf[8];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/d", 0755), 0);
	CHECK_EQ(put_file(f.v, "/d/a", "A", 1), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/b", 0700), 0);
	CHECK_EQ(vault_rename(f.v, &caller, "/d/a", "/b", RENAME_EXCHANGE), 0);
	CHECK_EQ(get_file(f.v, "/b", buf, sizeof(buf)), 1);
	CHECK_EQ(buf[0], 'A');
	CHECK_EQ(vault_getattr(f.v, &caller, "/d/a", &st), 0);
	CHECK(S_ISDIR(st.st_mode));
	CHECK_EQ(st.st_mode & 0777, 0700);
	CHECK_EQ(vault_rename(f.v, &caller, "/d/a", "/missing", RENAME_EXCHANGE), -ENOENT);
	fx_free(&f);
}

TEST(reader_keeps_the_old_bytes_when_a_file_is_renamed_over)
{
	struct fx f;
	struct vault_handle *r = NULL;
	char buf[32];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/doc.xlsx", "old version", 11), 0);
	CHECK_EQ(vault_open_file(f.v, &caller, "/doc.xlsx", O_RDONLY, &r), 0);
	CHECK_EQ(put_file(f.v, "/.~tmp123", "new version!", 12), 0);
	CHECK_EQ(vault_rename(f.v, &caller, "/.~tmp123", "/doc.xlsx", 0), 0);
	CHECK_EQ(vault_read(r, buf, sizeof(buf), 0), 11);
	CHECK(memcmp(buf, "old version", 11) == 0);
	CHECK_EQ(vault_release(f.v, r), 0);
	CHECK_EQ(get_file(f.v, "/doc.xlsx", buf, sizeof(buf)), 12);
	CHECK(memcmp(buf, "new version!", 12) == 0);
	fx_free(&f);
}

TEST(symlink_stores_its_target_and_readlink_returns_it)
{
	struct fx f;
	struct stat st;
	char buf[64];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_symlink(f.v, &caller, "../some/target.pdf", "/link"), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/link", &st), 0);
	CHECK(S_ISLNK(st.st_mode));
	CHECK_EQ(st.st_size, 18);
	CHECK_EQ(vault_readlink(f.v, &caller, "/link", buf, sizeof(buf)), 18);
	CHECK(strcmp(buf, "../some/target.pdf") == 0);
	CHECK_EQ(vault_symlink(f.v, &caller, "x", "/link"), -EEXIST);
	CHECK_EQ(fx_reopen(&f, 0), 0);
	CHECK_EQ(vault_readlink(f.v, &caller, "/link", buf, sizeof(buf)), 18);
	CHECK(!tree_mentions(f.store, "target"));
	fx_free(&f);
}

TEST(hard_link_shares_inode_content_and_link_count)
{
	struct fx f;
	struct stat a, b;
	char buf[8];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/d", 0755), 0);
	CHECK_EQ(put_file(f.v, "/orig", "data", 4), 0);
	CHECK_EQ(vault_link(f.v, &caller, "/orig", "/d/alias"), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/orig", &a), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/d/alias", &b), 0);
	CHECK_EQ(a.st_ino, b.st_ino);
	CHECK_EQ(a.st_nlink, 2);
	CHECK_EQ(get_file(f.v, "/d/alias", buf, sizeof(buf)), 4);
	CHECK_EQ(vault_link(f.v, &caller, "/d", "/d2"), -EPERM);
	CHECK_EQ(vault_link(f.v, &caller, "/orig", "/d/alias"), -EEXIST);
	CHECK_EQ(vault_unlink(f.v, &caller, "/orig"), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/d/alias", &b), 0);
	CHECK_EQ(b.st_nlink, 1);
	fx_free(&f);
}

TEST(mknod_makes_fifos_sockets_and_device_nodes_with_their_numbers)
{
	struct fx f;
	struct stat st;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_mknod(f.v, &caller, "/pipe", S_IFIFO | 0640, 0), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/pipe", &st), 0);
	CHECK(S_ISFIFO(st.st_mode));
	CHECK_EQ(st.st_mode & 0777, 0640);
	CHECK_EQ(vault_mknod(f.v, &caller, "/sock", S_IFSOCK | 0600, 0), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/sock", &st), 0);
	CHECK(S_ISSOCK(st.st_mode));
	CHECK_EQ(vault_mknod(f.v, &caller, "/dev", S_IFCHR | 0600, makedev(1, 3)), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/dev", &st), 0);
	CHECK(S_ISCHR(st.st_mode));
	CHECK_EQ(major(st.st_rdev), 1);
	CHECK_EQ(minor(st.st_rdev), 3);
	CHECK_EQ(vault_mknod(f.v, &caller, "/blk", S_IFBLK | 0600, makedev(8, 1)), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/blk", &st), 0);
	CHECK(S_ISBLK(st.st_mode));
	CHECK_EQ(minor(st.st_rdev), 1);
	fx_free(&f);
}

TEST(xattrs_on_files_and_directories_set_get_list_remove)
{
	static const char *paths[] = { "/file", "/dir" };
	struct fx f;
	char buf[256];
	int i;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/file", "x", 1), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/dir", 0755), 0);
	for (i = 0; i < 2; i++) {
		const char *p = paths[i];
		ssize_t n;

		CHECK_EQ(vault_setxattr(f.v, &caller, p, "user.customer", "acme", 4, 0), 0);
		CHECK_EQ(vault_setxattr(f.v, &caller, p, "user.customer", "x", 1, XATTR_CREATE),
			 -EEXIST);
		CHECK_EQ(vault_setxattr(f.v, &caller, p, "user.none", "x", 1, XATTR_REPLACE),
			 -ENODATA);
		CHECK_EQ(vault_getxattr(f.v, &caller, p, "user.customer", NULL, 0), 4);
		CHECK_EQ(vault_getxattr(f.v, &caller, p, "user.customer", buf, 2), -ERANGE);
		CHECK_EQ(vault_getxattr(f.v, &caller, p, "user.customer", buf, sizeof(buf)), 4);
		CHECK(memcmp(buf, "acme", 4) == 0);
		n = vault_listxattr(f.v, &caller, p, buf, sizeof(buf));
		CHECK_EQ(n, (ssize_t)sizeof("user.customer"));
		CHECK(strcmp(buf, "user.customer") == 0);
		CHECK_EQ(vault_setxattr(f.v, &caller, p, "bogus.ns", "x", 1, 0), -EOPNOTSUPP);
		CHECK_EQ(vault_removexattr(f.v, &caller, p, "user.customer"), 0);
		CHECK_EQ(vault_getxattr(f.v, &caller, p, "user.customer", buf, sizeof(buf)),
			 -ENODATA);
		CHECK_EQ(vault_removexattr(f.v, &caller, p, "user.customer"), -ENODATA);
	}
	/* They survive a remount (they live in the seal / .sr-dir). */
	CHECK_EQ(vault_setxattr(f.v, &caller, "/dir", "user.k", "v", 1, 0), 0);
	CHECK_EQ(vault_setxattr(f.v, &caller, "/file", "user.k", "w", 1, 0), 0);
	CHECK_EQ(fx_reopen(&f, 0), 0);
	CHECK_EQ(vault_getxattr(f.v, &caller, "/dir", "user.k", buf, sizeof(buf)), 1);
	CHECK_EQ(buf[0], 'v');
	CHECK_EQ(vault_getxattr(f.v, &caller, "/file", "user.k", buf, sizeof(buf)), 1);
	CHECK_EQ(buf[0], 'w');
	fx_free(&f);
}

TEST(level_xattr_reads_the_level_name_and_is_not_listed)
{
	struct fx f;
	char buf[64];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/file", "x", 1), 0);
	CHECK_EQ(vault_getxattr(f.v, &caller, "/file", "user.strongroom.level", buf, sizeof(buf)),
		 6);
	CHECK(memcmp(buf, "public", 6) == 0);
	CHECK_EQ(vault_listxattr(f.v, &caller, "/file", buf, sizeof(buf)), 0);
	CHECK_EQ(vault_listxattr(f.v, &caller, "/", buf, sizeof(buf)), 0);
	CHECK_EQ(vault_setxattr(f.v, &caller, "/file", "user.strongroom.level", "internal", 8, 0),
		 0); /* reclassified: re-encrypted under internal */
	CHECK_EQ(vault_getxattr(f.v, &caller, "/file", "user.strongroom.level", buf, sizeof(buf)),
		 8);
	CHECK(memcmp(buf, "internal", 8) == 0);
	fx_free(&f);
}

TEST(empty_directory_can_be_classified_and_new_entries_inherit_its_level)
{
	struct fx f;
	char buf[64];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/legal", 0755), 0);
	CHECK_EQ(vault_setxattr(f.v, &caller, "/legal", "user.strongroom.level", "confidential",
				12, 0),
		 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/legal/cases", 0755), 0);
	CHECK_EQ(put_file(f.v, "/legal/cases/a.pdf", "x", 1), 0);
	CHECK_EQ(fx_reopen(&f, 0), 0);
	CHECK_EQ(vault_getxattr(f.v, &caller, "/legal/cases/a.pdf", "user.strongroom.level", buf,
				sizeof(buf)),
		 12);
	CHECK(memcmp(buf, "confidential", 12) == 0);
	CHECK_EQ(vault_getxattr(f.v, &caller, "/legal/cases", "user.strongroom.level", buf,
				sizeof(buf)),
		 12);
	CHECK_EQ(vault_setxattr(f.v, &caller, "/legal", "user.strongroom.level", "public", 6, 0),
		 0); /* not empty: its names are re-encrypted, its entries keep their levels */
	CHECK_EQ(vault_getxattr(f.v, &caller, "/legal/cases", "user.strongroom.level", buf,
				sizeof(buf)),
		 12);
	CHECK_EQ(vault_setxattr(f.v, &caller, "/", "user.strongroom.level", "secret", 6, 0),
		 -EINVAL);
	fx_free(&f);
}

TEST(chmod_and_chown_change_files_and_directories_and_persist)
{
	struct fx f;
	struct stat st;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/file", "x", 1), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/dir", 0755), 0);
	CHECK_EQ(vault_chmod(f.v, &caller, "/file", 0600), 0);
	CHECK_EQ(vault_chmod(f.v, &caller, "/dir", 01770), 0);
	CHECK_EQ(vault_chown(f.v, &caller, "/file", 1000, 100), 0);
	CHECK_EQ(vault_chown(f.v, &caller, "/dir", (uid_t)-1, 200), 0);
	CHECK_EQ(fx_reopen(&f, 0), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/file", &st), 0);
	CHECK_EQ(st.st_mode, S_IFREG | 0600);
	CHECK_EQ(st.st_uid, 1000);
	CHECK_EQ(st.st_gid, 100);
	CHECK_EQ(vault_getattr(f.v, &caller, "/dir", &st), 0);
	CHECK_EQ(st.st_mode, S_IFDIR | 01770);
	CHECK_EQ(st.st_uid, 0);
	CHECK_EQ(st.st_gid, 200);
	fx_free(&f);
}

TEST(chmod_and_chown_of_a_folder_to_what_it_has_rewrite_nothing)
{
	struct fx f;
	struct stat st, meta1, meta2;
	char p[512];

	CHECK_EQ(fx_new(&f), 0);
	snprintf(p, sizeof(p), "%s/tree/.sr-dir", f.store);
	CHECK_EQ(vault_getattr(f.v, &caller, "/", &st), 0);
	CHECK_EQ(stat(p, &meta1), 0);
	/* As tar does as root: chown to the owner it has, chmod to its mode.
	 * .sr-dir is replaced by a new file when written (checked after each
	 * call: two rewrites could bring back the first inode number). */
	CHECK_EQ(vault_chown(f.v, &caller, "/", st.st_uid, st.st_gid), 0);
	CHECK_EQ(stat(p, &meta2), 0);
	CHECK_EQ(meta2.st_ino, meta1.st_ino);
	CHECK_EQ(vault_chmod(f.v, &caller, "/", st.st_mode & 07777), 0);
	CHECK_EQ(stat(p, &meta2), 0);
	CHECK_EQ(meta2.st_ino, meta1.st_ino);
	CHECK_EQ(vault_chown(f.v, &caller, "/", (uid_t)-1, 300), 0);
	CHECK_EQ(stat(p, &meta2), 0);
	CHECK(meta2.st_ino != meta1.st_ino);
	CHECK_EQ(fx_reopen(&f, 0), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/", &st), 0);
	CHECK_EQ(st.st_gid, 300);
	fx_free(&f);
}

TEST(mode_comes_from_the_seal_not_the_store_inode)
{
	struct fx f;
	struct stat st;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/file", "x", 1), 0);
	CHECK_EQ(vault_chmod(f.v, &caller, "/file", 0640), 0);
	/* Someone with store access widens the ciphertext file's mode. */
	{
		char tree[512];
		struct dirent *de;
		DIR *dp;

		snprintf(tree, sizeof(tree), "%s/tree", f.store);
		dp = opendir(tree);
		CHECK(dp != NULL);
		while ((de = readdir(dp)))
			if (de->d_name[0] != '.')
				fchmodat(dirfd(dp), de->d_name, 0777, 0);
		closedir(dp);
	}
	CHECK_EQ(vault_getattr(f.v, &caller, "/file", &st), 0);
	CHECK_EQ(st.st_mode & 07777, 0640);
	fx_free(&f);
}

TEST(utimens_sets_times_kept_by_the_store_inode)
{
	struct fx f;
	struct timespec ts[2] = { { 1000000000, 0 }, { 1234567890, 0 } };
	struct stat st;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/file", "x", 1), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/dir", 0755), 0);
	CHECK_EQ(vault_utimens(f.v, &caller, "/file", ts), 0);
	CHECK_EQ(vault_utimens(f.v, &caller, "/dir", ts), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/file", &st), 0);
	CHECK_EQ(st.st_mtim.tv_sec, 1234567890);
	CHECK_EQ(st.st_atim.tv_sec, 1000000000);
	CHECK_EQ(vault_getattr(f.v, &caller, "/dir", &st), 0);
	CHECK_EQ(st.st_mtim.tv_sec, 1234567890);
	/* chmod of a directory rewrites .sr-dir but is not a content change */
	CHECK_EQ(vault_chmod(f.v, &caller, "/dir", 0700), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/dir", &st), 0);
	CHECK_EQ(st.st_mtim.tv_sec, 1234567890);
	fx_free(&f);
}

TEST(utimens_on_an_open_written_file_survives_its_close)
{
	struct fx f;
	struct timespec ts[2] = { { 1000000000, 0 }, { 1234567890, 0 } };
	struct vault_handle *h = NULL;
	struct stat st;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_create(f.v, &caller, "/file", 0644, O_RDWR | O_CREAT, &h), 0);
	CHECK_EQ(vault_write(h, "abc", 3, 0), 3);
	CHECK_EQ(vault_utimens(f.v, &caller, "/file", ts), 0);
	CHECK_EQ(vault_release(f.v, h), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/file", &st), 0);
	CHECK_EQ(st.st_mtim.tv_sec, 1234567890);
	CHECK_EQ(st.st_size, 3);
	fx_free(&f);
}

TEST(truncate_by_path_changes_the_size)
{
	struct fx f;
	struct stat st;
	char buf[16];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/file", "0123456789", 10), 0);
	CHECK_EQ(vault_truncate(f.v, &caller, "/file", 4), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/file", &st), 0);
	CHECK_EQ(st.st_size, 4);
	CHECK_EQ(get_file(f.v, "/file", buf, sizeof(buf)), 4);
	CHECK(memcmp(buf, "0123", 4) == 0);
	fx_free(&f);
}

TEST(names_of_255_bytes_use_long_names_with_sidecars)
{
	struct fx f;
	struct vault_dirlist l;
	char a[300], b[300], pa[320], pb[320], tree[512];
	struct stat st;
	char buf[8];

	CHECK_EQ(fx_new(&f), 0);
	memset(a, 'a', 255);
	a[255] = '\0';
	memset(b, 'b', 255);
	b[255] = '\0';
	snprintf(pa, sizeof(pa), "/%s", a);
	snprintf(pb, sizeof(pb), "/%s", b);
	snprintf(tree, sizeof(tree), "%s/tree", f.store);
	CHECK_EQ(put_file(f.v, pa, "L", 1), 0);
	CHECK_EQ(count_entries(tree), 3); /* .sr-dir, .L<hash>, .L<hash>.name */
	CHECK_EQ(vault_readdir(f.v, &caller, "/", true, &l), 0);
	CHECK_EQ(l.n, 1);
	CHECK(strcmp(l.ents[0].name, a) == 0);
	CHECK_EQ(l.ents[0].st.st_size, 1);
	vault_dirlist_free(&l);
	CHECK_EQ(vault_rename(f.v, &caller, pa, pb, 0), 0);
	CHECK_EQ(count_entries(tree), 3);
	CHECK_EQ(vault_getattr(f.v, &caller, pa, &st), -ENOENT);
	CHECK_EQ(get_file(f.v, pb, buf, sizeof(buf)), 1);
	CHECK_EQ(vault_mkdir(f.v, &caller, pa, 0755), 0);
	CHECK_EQ(put_file(f.v, "/short", "s", 1), 0);
	CHECK_EQ(vault_rename(f.v, &caller, "/short", pa, RENAME_NOREPLACE), -EEXIST);
	CHECK_EQ(vault_rmdir(f.v, &caller, pa), 0);
	CHECK_EQ(vault_unlink(f.v, &caller, pb), 0);
	CHECK_EQ(count_entries(tree), 2); /* .sr-dir and the short name */
	memset(a, 'c', 256);
	a[256] = '\0';
	snprintf(pa, sizeof(pa), "/%s", a);
	CHECK_EQ(vault_mkdir(f.v, &caller, pa, 0755), -ENAMETOOLONG);
	fx_free(&f);
}

TEST(names_with_unusual_bytes_round_trip)
{
	static const char *names[] = { " leading space", "trailing.", ".hidden", "~$lock.docx",
				       ".~lock.report.odt#", "tab\there", "new\nline",
				       "\xc3\xa9t\xc3\xa9 \xe2\x82\xac", "\x01\x7f\xff\xfe" };
	struct fx f;
	struct vault_dirlist l;
	char p[300];
	size_t i;

	CHECK_EQ(fx_new(&f), 0);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(p, sizeof(p), "/%s", names[i]);
		CHECK_EQ(put_file(f.v, p, "x", 1), 0);
	}
	CHECK_EQ(vault_readdir(f.v, &caller, "/", false, &l), 0);
	CHECK_EQ(l.n, sizeof(names) / sizeof(names[0]));
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		CHECK(has_name(&l, names[i]));
	vault_dirlist_free(&l);
	fx_free(&f);
}

TEST(store_holds_no_plaintext_name)
{
	static const char *names[] = { "customers", "acme-contract", "salaries2024", "invoice",
				       "secretlink" };
	struct fx f;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/customers", 0755), 0);
	CHECK_EQ(put_file(f.v, "/customers/acme-contract", "x", 1), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/customers/salaries2024", 0755), 0);
	CHECK_EQ(put_file(f.v, "/customers/salaries2024/invoice", "x", 1), 0);
	CHECK_EQ(vault_symlink(f.v, &caller, "invoice", "/customers/salaries2024/secretlink"), 0);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		CHECK(!tree_mentions(f.store, names[i]));
	fx_free(&f);
}

TEST(create_under_a_default_acl_inherits_it_and_ignores_the_umask)
{
	static const unsigned d[][3] = { { U_OBJ, 7, NOID }, { NAMED_G, 7, 2000 },
					  { G_OBJ, 5, NOID }, { MASK, 7, NOID }, { OTHER, 0, NOID } };
	struct vault_caller c = caller;
	unsigned char dflt[64], acc[128];
	size_t dlen = acl_build(dflt, d, 5);
	struct vault_handle *h = NULL;
	struct stat st;
	ssize_t n;

	struct fx f;
	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/finance", 0755), 0);
	CHECK_EQ(vault_setxattr(f.v, &caller, "/finance", "system.posix_acl_default", dflt, dlen, 0),
		 0);
	c.umask = 077; /* would remove every group bit if it applied */
	CHECK_EQ(vault_create(f.v, &c, "/finance/q1.xlsx", 0666, O_RDWR | O_CREAT, &h), 0);
	CHECK_EQ(vault_release(f.v, h), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/finance/q1.xlsx", &st), 0);
	CHECK_EQ(st.st_mode & 0777, 0660);
	n = vault_getxattr(f.v, &caller, "/finance/q1.xlsx", "system.posix_acl_access", acc,
			   sizeof(acc));
	CHECK_EQ(n, (ssize_t)dlen);
	CHECK_EQ(acl_perm(acc, (size_t)n, NAMED_G, 2000), 7);
	CHECK_EQ(acl_perm(acc, (size_t)n, MASK, 0), 6);
	CHECK_EQ(acl_perm(acc, (size_t)n, OTHER, 0), 0);
	/* A new directory also gets the default ACL itself. */
	CHECK_EQ(vault_mkdir(f.v, &c, "/finance/2024", 0777), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/finance/2024", &st), 0);
	CHECK_EQ(st.st_mode & 0777, 0770);
	CHECK_EQ(vault_getxattr(f.v, &caller, "/finance/2024", "system.posix_acl_default", NULL, 0),
		 (ssize_t)dlen);
	CHECK_EQ(vault_getxattr(f.v, &caller, "/finance/2024", "system.posix_acl_access", NULL, 0),
		 (ssize_t)dlen);
	/* ... and passes it on. */
	CHECK_EQ(vault_mknod(f.v, &c, "/finance/2024/x", S_IFREG | 0644, 0), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/finance/2024/x", &st), 0);
	CHECK_EQ(st.st_mode & 0777, 0640);
	fx_free(&f);
}

TEST(create_without_a_default_acl_applies_the_umask)
{
	struct vault_caller c = caller;
	struct vault_handle *h = NULL;
	struct stat st;
	struct fx f;

	CHECK_EQ(fx_new(&f), 0);
	c.umask = 027;
	CHECK_EQ(vault_create(f.v, &c, "/f", 0666, O_RDWR | O_CREAT, &h), 0);
	CHECK_EQ(vault_release(f.v, h), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/f", &st), 0);
	CHECK_EQ(st.st_mode & 0777, 0640);
	CHECK_EQ(vault_getxattr(f.v, &caller, "/f", "system.posix_acl_access", NULL, 0), -ENODATA);
	CHECK_EQ(vault_mkdir(f.v, &c, "/d", 0777), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/d", &st), 0);
	CHECK_EQ(st.st_mode & 0777, 0750);
	fx_free(&f);
}

TEST(setting_an_access_acl_sets_the_mode_and_chmod_sets_its_mask)
{
	static const unsigned e[][3] = { { U_OBJ, 6, NOID }, { NAMED_U, 6, 1000 },
					  { G_OBJ, 4, NOID }, { MASK, 6, NOID }, { OTHER, 0, NOID } };
	static const unsigned minimal[][3] = { { U_OBJ, 7, NOID }, { G_OBJ, 0, NOID },
						{ OTHER, 0, NOID } };
	unsigned char a[64], got[64];
	size_t len = acl_build(a, e, 5);
	struct stat st;
	ssize_t n;
	struct fx f;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/f", "x", 1), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/d", 0755), 0);
	CHECK_EQ(vault_setxattr(f.v, &caller, "/f", "system.posix_acl_access", a, len, 0), 0);
	CHECK_EQ(vault_setxattr(f.v, &caller, "/d", "system.posix_acl_access", a, len, 0), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/f", &st), 0);
	CHECK_EQ(st.st_mode & 0777, 0660);
	CHECK_EQ(vault_getattr(f.v, &caller, "/d", &st), 0);
	CHECK_EQ(st.st_mode & 0777, 0660);
	CHECK_EQ(vault_chmod(f.v, &caller, "/f", 0640), 0);
	CHECK_EQ(vault_chmod(f.v, &caller, "/d", 0750), 0);
	n = vault_getxattr(f.v, &caller, "/f", "system.posix_acl_access", got, sizeof(got));
	CHECK_EQ(n, (ssize_t)len);
	CHECK_EQ(acl_perm(got, len, MASK, 0), 4);
	CHECK_EQ(acl_perm(got, len, NAMED_U, 1000), 6);
	n = vault_getxattr(f.v, &caller, "/d", "system.posix_acl_access", got, sizeof(got));
	CHECK_EQ(n, (ssize_t)len);
	CHECK_EQ(acl_perm(got, len, MASK, 0), 5);
	CHECK_EQ(acl_perm(got, len, U_OBJ, 0), 7);
	/* An ACL the mode says alone is not stored, only applied. */
	len = acl_build(a, minimal, 3);
	CHECK_EQ(vault_setxattr(f.v, &caller, "/f", "system.posix_acl_access", a, len, 0), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/f", &st), 0);
	CHECK_EQ(st.st_mode & 0777, 0700);
	CHECK_EQ(vault_getxattr(f.v, &caller, "/f", "system.posix_acl_access", NULL, 0), -ENODATA);
	CHECK_EQ(vault_setxattr(f.v, &caller, "/f", "system.posix_acl_default", a, len, 0),
		 -EACCES);
	/* A header without entries means "no ACL", also where there is none. */
	CHECK_EQ(vault_setxattr(f.v, &caller, "/d", "system.posix_acl_default", a, 4, 0), 0);
	CHECK_EQ(vault_getxattr(f.v, &caller, "/d", "system.posix_acl_default", NULL, 0), -ENODATA);
	a[0] = 9;
	CHECK_EQ(vault_setxattr(f.v, &caller, "/d", "system.posix_acl_access", a, len, 0), -EINVAL);
	fx_free(&f);
}

TEST(directory_of_a_level_not_held_is_closed_and_its_name_hidden)
{
	struct kr_secret low = secret_of(PASS_LOW);
	struct kr_keyring *kr2 = NULL;
	struct kr_kdf_params kdf;
	struct vault_dirlist l;
	struct vault *v2 = NULL;
	struct stat st;
	char buf[8];
	struct fx f;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/board", 0755), 0);
	CHECK_EQ(vault_setxattr(f.v, &caller, "/board", "user.strongroom.level", "restricted", 10,
				0),
		 0);
	CHECK_EQ(put_file(f.v, "/board/minutes.docx", "secret", 6), 0);
	CHECK_EQ(put_file(f.v, "/open.txt", "hello", 5), 0);
	kr_kdf_params_default(&kdf);
	CHECK(kr_keyslot_add(f.store, f.kr, &low, 1, &kdf) >= 0);
	CHECK_EQ(kr_vault_unlock(f.store, &low, &kr2), 0);
	CHECK_EQ(vault_open(f.store, kr2, 0, &v2), 0);
	/* Classified above its folder: its name is under the restricted key
	 * too (docs/format.md "Names"), so this mount cannot even find it. */
	CHECK_EQ(vault_getattr(v2, &caller, "/board/minutes.docx", &st), -ENOENT);
	CHECK_EQ(vault_getattr(v2, &caller, "/board", &st), -ENOENT);
	CHECK_EQ(vault_readdir(v2, &caller, "/board", false, &l), -ENOENT);
	CHECK_EQ(vault_mkdir(v2, &caller, "/board/x", 0755), -ENOENT);
	CHECK_EQ(get_file(v2, "/open.txt", buf, sizeof(buf)), 5);
	CHECK_EQ(vault_readdir(v2, &caller, "/", true, &l), 0);
	CHECK(!has_name(&l, "board"));
	CHECK(has_name(&l, "open.txt"));
	vault_dirlist_free(&l);
	vault_close(v2);
	kr_keyring_free(kr2);
	fx_free(&f);
}

TEST(tampered_directory_metadata_gives_ebadmsg)
{
	struct fx f;
	struct stat st;
	char dir[600], meta[620];
	unsigned char b;
	int fd;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/d", 0755), 0);
	CHECK_EQ(put_file(f.v, "/d/f", "x", 1), 0);
	CHECK_EQ(fx_reopen(&f, 0), 0); /* forget the cache */
	CHECK_EQ(tree_first_dir(&f, dir, sizeof(dir)), 0);
	snprintf(meta, sizeof(meta), "%s/.sr-dir", dir);
	fd = open(meta, O_RDWR);
	CHECK(fd >= 0);
	CHECK_EQ(fstat(fd, &st), 0);
	CHECK_EQ(pread(fd, &b, 1, st.st_size - 1), 1);
	b ^= 0x01;
	CHECK_EQ(pwrite(fd, &b, 1, st.st_size - 1), 1);
	close(fd);
	CHECK_EQ(vault_getattr(f.v, &caller, "/d", &st), -EBADMSG);
	CHECK_EQ(vault_getattr(f.v, &caller, "/d/f", &st), -EBADMSG);
	fx_free(&f);
}

TEST(read_only_vault_refuses_every_change_with_erofs)
{
	struct timespec ts[2] = { { 1, 0 }, { 2, 0 } };
	struct vault_handle *h = NULL;
	struct stat st;
	char buf[8];
	struct fx f;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/f", "data", 4), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/d", 0755), 0);
	CHECK_EQ(fx_reopen(&f, VAULT_READ_ONLY), 0);
	CHECK_EQ(get_file(f.v, "/f", buf, sizeof(buf)), 4);
	CHECK_EQ(vault_getattr(f.v, &caller, "/d", &st), 0);
	CHECK_EQ(vault_create(f.v, &caller, "/g", 0644, O_RDWR | O_CREAT, &h), -EROFS);
	CHECK_EQ(vault_open_file(f.v, &caller, "/f", O_RDWR, &h), -EROFS);
	CHECK_EQ(vault_open_file(f.v, &caller, "/f", O_RDONLY | O_TRUNC, &h), -EROFS);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/e", 0755), -EROFS);
	CHECK_EQ(vault_rmdir(f.v, &caller, "/d"), -EROFS);
	CHECK_EQ(vault_unlink(f.v, &caller, "/f"), -EROFS);
	CHECK_EQ(vault_rename(f.v, &caller, "/f", "/h", 0), -EROFS);
	CHECK_EQ(vault_link(f.v, &caller, "/f", "/h"), -EROFS);
	CHECK_EQ(vault_symlink(f.v, &caller, "f", "/h"), -EROFS);
	CHECK_EQ(vault_mknod(f.v, &caller, "/h", S_IFIFO | 0644, 0), -EROFS);
	CHECK_EQ(vault_chmod(f.v, &caller, "/f", 0600), -EROFS);
	CHECK_EQ(vault_chown(f.v, &caller, "/f", 1, 1), -EROFS);
	CHECK_EQ(vault_utimens(f.v, &caller, "/f", ts), -EROFS);
	CHECK_EQ(vault_truncate(f.v, &caller, "/f", 0), -EROFS);
	CHECK_EQ(vault_setxattr(f.v, &caller, "/f", "user.a", "b", 1, 0), -EROFS);
	CHECK_EQ(vault_removexattr(f.v, &caller, "/f", "user.a"), -EROFS);
	CHECK_EQ(vault_open_file(f.v, &caller, "/f", O_RDONLY, &h), 0);
	CHECK_EQ(vault_write(h, "x", 1, 0), -EBADF);
	CHECK_EQ(vault_ftruncate(h, 0), -EROFS);
	CHECK_EQ(vault_release(f.v, h), 0);
	fx_free(&f);
}

TEST(statfs_reports_a_name_limit_of_255)
{
	struct statvfs sv;
	struct fx f;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_statfs(f.v, &sv), 0);
	CHECK_EQ(sv.f_namemax, 255);
	CHECK(sv.f_bsize > 0);
	fx_free(&f);
}

TEST(many_directories_beyond_the_cache_bound_stay_reachable)
{
	struct fx f;
	struct stat st;
	char p[64];
	int i;

	CHECK_EQ(fx_new(&f), 0);
	for (i = 0; i < VAULT_DCACHE_MAX + 40; i++) {
		snprintf(p, sizeof(p), "/d%d", i);
		CHECK_EQ(vault_mkdir(f.v, &caller, p, 0755), 0);
		snprintf(p, sizeof(p), "/d%d/f", i);
		CHECK_EQ(put_file(f.v, p, "x", 1), 0);
	}
	for (i = 0; i < VAULT_DCACHE_MAX + 40; i++) {
		snprintf(p, sizeof(p), "/d%d/f", i);
		CHECK_EQ(vault_getattr(f.v, &caller, p, &st), 0);
	}
	CHECK(f.v->dcache_n <= VAULT_DCACHE_MAX);
	fx_free(&f);
}

/* The only non-reserved store file in STORE/tree. */
static int tree_first_file(const struct fx *f, struct stat *st)
{
	char tree[300], p[600];
	struct dirent *de;
	DIR *dp;
	int r = -ENOENT;

	snprintf(tree, sizeof(tree), "%s/tree", f->store);
	dp = opendir(tree);
	if (!dp)
		return -errno;
	while ((de = readdir(dp))) {
		if (de->d_type == DT_REG && de->d_name[0] != '.') {
			snprintf(p, sizeof(p), "%s/%s", tree, de->d_name);
			r = stat(p, st) < 0 ? -errno : 0;
			break;
		}
	}
	closedir(dp);
	return r;
}

TEST(last_close_compacts_a_file_whose_dead_frames_outweigh_live_ones)
{
	static unsigned char chunk[65536], back[65536];
	struct vault_handle *h = NULL;
	struct stat before, after, st;
	struct fx f;
	int i;

	CHECK_EQ(fx_new(&f), 0);
	randombytes_buf(chunk, sizeof(chunk));
	CHECK_EQ(vault_create(f.v, &caller, "/busy", 0644, O_RDWR | O_CREAT, &h), 0);
	for (i = 0; i < 4; i++) {
		chunk[0] = (unsigned char)i;
		CHECK_EQ(vault_write(h, chunk, sizeof(chunk), 0), (ssize_t)sizeof(chunk));
		CHECK_EQ(vault_fsync(h, false), 0);
	}
	CHECK_EQ(tree_first_file(&f, &before), 0);
	CHECK_EQ(vault_release(f.v, h), 0);
	CHECK_EQ(tree_first_file(&f, &after), 0);
	CHECK(after.st_size < before.st_size);
	CHECK(after.st_size < 2 * (off_t)sizeof(chunk));
	CHECK_EQ(get_file(f.v, "/busy", back, sizeof(back)), (ssize_t)sizeof(back));
	CHECK(memcmp(back, chunk, sizeof(chunk)) == 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/busy", &st), 0);
	CHECK_EQ(st.st_size, (off_t)sizeof(chunk));
	fx_free(&f);
}

struct worker {
	struct vault *v;
	int id;
	int failures;
};

#define WORKERS 4
#define ROUNDS 40

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	char own[32], tmp[32], buf[64];
	int i;

	snprintf(own, sizeof(own), "/w%d", w->id);
	snprintf(tmp, sizeof(tmp), "/w%d.tmp", w->id);
	for (i = 0; i < ROUNDS; i++) {
		struct vault_handle *h = NULL;
		struct vault_dirlist l;
		struct stat st;
		char rec[8];

		/* A region of the shared file that only this worker writes. */
		memset(rec, 'a' + w->id, sizeof(rec));
		rec[0] = (char)('0' + i % 10);
		if (vault_open_file(w->v, &caller, "/shared", O_RDWR, &h) < 0 ||
		    vault_write(h, rec, sizeof(rec), (uint64_t)w->id * sizeof(rec)) != sizeof(rec) ||
		    vault_read(h, buf, sizeof(rec), (uint64_t)w->id * sizeof(rec)) != sizeof(rec) ||
		    memcmp(buf, rec, sizeof(rec)) != 0)
			w->failures++;
		if (h && vault_release(w->v, h) < 0)
			w->failures++;
		/* Save-as-temp-then-rename of a private file. */
		if (put_file(w->v, tmp, rec, sizeof(rec)) < 0 ||
		    vault_rename(w->v, &caller, tmp, own, 0) < 0)
			w->failures++;
		if (vault_getattr(w->v, &caller, "/shared", &st) < 0 || st.st_size < 8)
			w->failures++;
		if (vault_readdir(w->v, &caller, "/", true, &l) < 0)
			w->failures++;
		else
			vault_dirlist_free(&l);
	}
	return NULL;
}

TEST(concurrent_handles_renames_and_listings_keep_every_write)
{
	struct worker w[WORKERS];
	pthread_t t[WORKERS];
	char buf[64], want[8], p[16];
	struct fx f;
	int i;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/shared", "", 0), 0);
	for (i = 0; i < WORKERS; i++) {
		w[i].v = f.v;
		w[i].id = i;
		w[i].failures = 0;
		CHECK_EQ(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
	}
	for (i = 0; i < WORKERS; i++)
		pthread_join(t[i], NULL);
	for (i = 0; i < WORKERS; i++)
		CHECK_EQ(w[i].failures, 0);
	CHECK_EQ(fx_reopen(&f, 0), 0);
	CHECK_EQ(get_file(f.v, "/shared", buf, sizeof(buf)), WORKERS * 8);
	for (i = 0; i < WORKERS; i++) {
		memset(want, 'a' + i, sizeof(want));
		want[0] = (char)('0' + (ROUNDS - 1) % 10);
		CHECK(memcmp(buf + i * 8, want, sizeof(want)) == 0);
		snprintf(p, sizeof(p), "/w%d", i);
		CHECK_EQ(get_file(f.v, p, buf, sizeof(buf)), 8);
		CHECK(memcmp(buf, want, sizeof(want)) == 0);
		CHECK_EQ(get_file(f.v, "/shared", buf, sizeof(buf)), WORKERS * 8);
	}
	fx_free(&f);
}

TEST(stat_after_remount_keeps_the_atime_set_by_utimens)
{
	struct timespec ts[2] = { { 1000000000, 0 }, { 1500000000, 0 } };
	struct stat st;
	struct fx f;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/file", "x", 1), 0);
	CHECK_EQ(vault_utimens(f.v, &caller, "/file", ts), 0);
	CHECK_EQ(fx_reopen(&f, 0), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/file", &st), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/file", &st), 0);
	CHECK_EQ(st.st_atim.tv_sec, 1000000000);
	CHECK_EQ(st.st_mtim.tv_sec, 1500000000);
	fx_free(&f);
}

TEST(unlinked_open_file_stays_readable_and_writable_until_release)
{
	struct vault_handle *h = NULL;
	char buf[16];
	struct fx f;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/gone", "still here", 10), 0);
	CHECK_EQ(vault_open_file(f.v, &caller, "/gone", O_RDWR, &h), 0);
	CHECK_EQ(vault_unlink(f.v, &caller, "/gone"), 0);
	CHECK_EQ(vault_write(h, "STILL", 5, 0), 5);
	CHECK_EQ(vault_read(h, buf, sizeof(buf), 0), 10);
	CHECK(memcmp(buf, "STILL here", 10) == 0);
	CHECK_EQ(vault_release(f.v, h), 0);
	CHECK_EQ(vault_open_file(f.v, &caller, "/gone", O_RDONLY, &h), -ENOENT);
	fx_free(&f);
}

TEST(rename_exchange_of_long_names_keeps_both_sidecars)
{
	struct vault_dirlist l;
	char a[256], b[256], pa[300], pb[300], tree[300], buf[8];
	struct fx f;

	CHECK_EQ(fx_new(&f), 0);
	memset(a, 'x', 250);
	a[250] = '\0';
	memset(b, 'y', 250);
	b[250] = '\0';
	snprintf(pa, sizeof(pa), "/%s", a);
	snprintf(pb, sizeof(pb), "/%s", b);
	snprintf(tree, sizeof(tree), "%s/tree", f.store);
	CHECK_EQ(put_file(f.v, pa, "A", 1), 0);
	CHECK_EQ(put_file(f.v, pb, "B", 1), 0);
	CHECK_EQ(vault_rename(f.v, &caller, pa, pb, RENAME_EXCHANGE), 0);
	CHECK_EQ(count_entries(tree), 5);
	CHECK_EQ(get_file(f.v, pa, buf, sizeof(buf)), 1);
	CHECK_EQ(buf[0], 'B');
	CHECK_EQ(get_file(f.v, pb, buf, sizeof(buf)), 1);
	CHECK_EQ(buf[0], 'A');
	CHECK_EQ(vault_readdir(f.v, &caller, "/", false, &l), 0);
	CHECK_EQ(l.n, 2);
	CHECK(has_name(&l, a));
	CHECK(has_name(&l, b));
	vault_dirlist_free(&l);
	fx_free(&f);
}

TEST(chmod_chown_and_xattrs_of_a_file_keep_its_mtime)
{
	struct timespec ts[2] = { { 1000000000, 0 }, { 1500000000, 0 } };
	struct stat st;
	struct fx f;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/file", "x", 1), 0);
	CHECK_EQ(vault_utimens(f.v, &caller, "/file", ts), 0);
	CHECK_EQ(vault_chmod(f.v, &caller, "/file", 0600), 0);
	CHECK_EQ(vault_chown(f.v, &caller, "/file", 7, 7), 0);
	CHECK_EQ(vault_setxattr(f.v, &caller, "/file", "user.tag", "t", 1, 0), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/file", &st), 0);
	CHECK_EQ(st.st_mtim.tv_sec, 1500000000);
	CHECK_EQ(st.st_atim.tv_sec, 1000000000);
	CHECK_EQ(st.st_mode & 0777, 0600);
	CHECK(st.st_ctim.tv_sec > 1500000000);
	fx_free(&f);
}

TEST(crash_leftovers_of_mkdir_are_invisible_and_removed_with_their_parent)
{
	struct vault_dirlist l;
	char dir[600], junk[700], meta[720];
	struct stat st;
	struct fx f;
	int fd;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/p", 0755), 0);
	CHECK_EQ(tree_first_dir(&f, dir, sizeof(dir)), 0);
	CHECK_EQ(count_entries(dir), 1); /* .sr-dir only: no temporary left */
	/* What a crash in the middle of mkdir or rmdir leaves behind. */
	snprintf(junk, sizeof(junk), "%s/.sr-tmp.d.0123456789ab", dir);
	CHECK_EQ(mkdir(junk, 0700), 0);
	snprintf(meta, sizeof(meta), "%s/.sr-dir", junk);
	fd = open(meta, O_CREAT | O_WRONLY, 0600);
	CHECK(fd >= 0);
	close(fd);
	CHECK_EQ(vault_readdir(f.v, &caller, "/p", false, &l), 0);
	CHECK_EQ(l.n, 0);
	vault_dirlist_free(&l);
	CHECK_EQ(vault_rmdir(f.v, &caller, "/p"), 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/p", &st), -ENOENT);
	CHECK(stat(dir, &st) < 0);
	fx_free(&f);
}

TEST(a_held_file_reopens_and_changes_after_its_name_is_renamed_over)
{
	struct vault_handle *hold = NULL, *h = NULL;
	struct stat st;
	char buf[16];
	struct fx f;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/doc", "old version", 11), 0);
	CHECK_EQ(vault_file_hold(f.v, "/doc", &hold), 0);
	CHECK_EQ(put_file(f.v, "/doc.tmp", "new", 3), 0);
	CHECK_EQ(vault_rename(f.v, &caller, "/doc.tmp", "/doc", 0), 0);
	CHECK_EQ(vault_file_reopen(f.v, &caller, hold, O_RDONLY, &h), 0);
	CHECK_EQ(vault_read(h, buf, sizeof(buf), 0), 11);
	CHECK(memcmp(buf, "old version", 11) == 0);
	CHECK_EQ(vault_release(f.v, h), 0);
	CHECK_EQ(vault_fchmod(f.v, &caller, hold, 0600), 0);
	CHECK_EQ(vault_file_truncate(f.v, &caller, hold, 3), 0);
	CHECK_EQ(vault_fgetattr(f.v, hold, &st), 0);
	CHECK_EQ(st.st_mode & 07777, 0600);
	CHECK_EQ(st.st_size, 3);
	CHECK_EQ(vault_release(f.v, hold), 0);
	CHECK_EQ(get_file(f.v, "/doc", buf, sizeof(buf)), 3);
	CHECK(memcmp(buf, "new", 3) == 0);
	CHECK_EQ(vault_getattr(f.v, &caller, "/doc", &st), 0);
	CHECK_EQ(st.st_mode & 07777, 0644 & ~022);
	fx_free(&f);
}

TEST(a_held_file_reopens_after_unlink_and_a_hold_of_a_directory_is_refused)
{
	struct vault_handle *hold = NULL, *h = NULL;
	char buf[16];
	struct fx f;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put_file(f.v, "/gone", "kept", 4), 0);
	CHECK_EQ(vault_file_hold(f.v, "/gone", &hold), 0);
	CHECK_EQ(vault_unlink(f.v, &caller, "/gone"), 0);
	CHECK_EQ(vault_file_reopen(f.v, &caller, hold, O_RDWR, &h), 0);
	CHECK_EQ(vault_read(h, buf, sizeof(buf), 0), 4);
	CHECK(memcmp(buf, "kept", 4) == 0);
	CHECK_EQ(vault_release(f.v, h), 0);
	CHECK_EQ(vault_release(f.v, hold), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/d", 0755), 0);
	CHECK_EQ(vault_file_hold(f.v, "/d", &hold), -EISDIR);
	CHECK(hold == NULL);
	fx_free(&f);
}

/* The store directories of the root's two folders, by how many entries
 * (besides .sr-dir) each holds: small[] has fewer. */
static void two_store_dirs(const struct fx *f, char small[1024], char big[1024])
{
	char tree[512];
	size_t counts[2] = { 0, 0 };
	char names[2][1024];
	struct dirent *de, *e;
	int k = 0;
	DIR *dp, *sp;

	snprintf(tree, sizeof(tree), "%s/tree", f->store);
	dp = opendir(tree);
	while (dp && k < 2 && (de = readdir(dp))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(names[k], sizeof(names[k]), "%s/%s", tree, de->d_name);
		sp = opendir(names[k]);
		while (sp && (e = readdir(sp)))
			counts[k] += e->d_name[0] != '.';
		if (sp)
			closedir(sp);
		k++;
	}
	if (dp)
		closedir(dp);
	memcpy(small, names[counts[0] < counts[1] ? 0 : 1], 1024);
	memcpy(big, names[counts[0] < counts[1] ? 1 : 0], 1024);
}

TEST(readdir_of_a_folder_under_another_folders_metadata_gives_ebadmsg)
{
	char a[1024], b[1024], ma[1100], mb[1100], tmp[1100];
	struct vault_dirlist l;
	struct fx f;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/a", 0755), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/b", 0755), 0);
	CHECK_EQ(put_file(f.v, "/a/x", "x", 1), 0);
	CHECK_EQ(put_file(f.v, "/b/y", "y", 1), 0);
	CHECK_EQ(put_file(f.v, "/b/z", "z", 1), 0);
	CHECK_EQ(fx_reopen(&f, 0), 0);
	two_store_dirs(&f, a, b);
	snprintf(ma, sizeof(ma), "%s/.sr-dir", a);
	snprintf(mb, sizeof(mb), "%s/.sr-dir", b);
	snprintf(tmp, sizeof(tmp), "%s/.sr-dir.swap", a);
	CHECK_EQ(rename(ma, tmp), 0);
	CHECK_EQ(rename(mb, ma), 0);
	CHECK_EQ(rename(tmp, mb), 0);
	CHECK_EQ(vault_readdir(f.v, &caller, "/a", false, &l), -EBADMSG);
	CHECK_EQ(vault_readdir(f.v, &caller, "/b", false, &l), -EBADMSG);
	CHECK_EQ(l.n, 0);
	fx_free(&f);
}

TEST(readdir_lists_a_folders_own_names_when_an_entry_was_moved_in_from_another)
{
	char a[1024], b[1024], from[1400], to[1400];
	struct vault_dirlist l;
	struct dirent *de;
	struct fx f;
	DIR *dp;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/a", 0755), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/b", 0755), 0);
	CHECK_EQ(put_file(f.v, "/a/x", "x", 1), 0);
	CHECK_EQ(put_file(f.v, "/b/y", "y", 1), 0);
	CHECK_EQ(put_file(f.v, "/b/z", "z", 1), 0);
	CHECK_EQ(fx_reopen(&f, 0), 0);
	two_store_dirs(&f, a, b);
	dp = opendir(b);
	CHECK(dp != NULL);
	while ((de = readdir(dp)) && de->d_name[0] == '.')
		;
	CHECK(de != NULL);
	snprintf(from, sizeof(from), "%s/%s", b, de->d_name);
	snprintf(to, sizeof(to), "%s/%s", a, de->d_name);
	closedir(dp);
	CHECK_EQ(rename(from, to), 0);
	/* /a: its own name only (the stranger recorded, not shown); /b: the
	 * one left. Neither fails: each has a name of its own. */
	CHECK_EQ(vault_readdir(f.v, &caller, "/a", false, &l), 0);
	CHECK_EQ(l.n, 1);
	CHECK(has_name(&l, "x"));
	vault_dirlist_free(&l);
	CHECK_EQ(vault_readdir(f.v, &caller, "/b", false, &l), 0);
	CHECK_EQ(l.n, 1);
	vault_dirlist_free(&l);
	fx_free(&f);
}

TEST(a_folder_whose_only_names_are_above_the_mounts_ceiling_lists_empty_not_ebadmsg)
{
	struct kr_secret low = secret_of(PASS_LOW);
	struct kr_keyring *kr2 = NULL;
	struct kr_kdf_params kdf;
	struct vault_dirlist l;
	struct vault *v2 = NULL;
	struct fx f;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_mkdir(f.v, &caller, "/pub", 0755), 0);
	CHECK_EQ(put_file(f.v, "/pub/memo.docx", "secret", 6), 0);
	CHECK_EQ(vault_setxattr(f.v, &caller, "/pub/memo.docx", "user.strongroom.level", "restricted",
				10, 0),
		 0);
	kr_kdf_params_default(&kdf);
	CHECK(kr_keyslot_add(f.store, f.kr, &low, 1, &kdf) >= 0);
	CHECK_EQ(kr_vault_unlock(f.store, &low, &kr2), 0);
	CHECK_EQ(vault_open(f.store, kr2, 0, &v2), 0);
	/* The name does not decrypt here, but its file's level is not held:
	 * above the ceiling, not a store edit. */
	CHECK_EQ(vault_readdir(v2, &caller, "/pub", false, &l), 0);
	CHECK_EQ(l.n, 0);
	vault_dirlist_free(&l);
	vault_close(v2);
	kr_keyring_free(kr2);
	fx_free(&f);
}

int main(void)
{
	RUN(acl_inherit_intersects_base_entries_and_mask_with_create_mode);
	RUN(acl_inherit_of_minimal_default_acl_gives_mode_and_no_access_acl);
	RUN(acl_chmod_updates_mask_and_leaves_group_obj);
	RUN(acl_chmod_without_mask_updates_group_obj);
	RUN(acl_mode_takes_group_bits_from_mask_and_reports_equivalence);
	RUN(acl_check_rejects_malformed_acls);
	RUN(path_canon_collapses_slashes_and_refuses_dot_components);
	RUN(open_creates_root_metadata_with_lowest_level_and_mode_0755);
	RUN(created_file_reads_back_after_reopen);
	RUN(two_handles_share_writes_and_getattr_sees_unsealed_size);
	RUN(create_with_o_excl_refuses_an_existing_name);
	RUN(open_with_o_trunc_empties_the_file);
	RUN(o_append_writes_at_the_current_end);
	RUN(readdir_lists_entries_with_attributes_and_no_reserved_names);
	RUN(readdir_skips_and_counts_a_name_that_does_not_decrypt);
	RUN(mkdir_and_rmdir_and_rmdir_refuses_a_nonempty_directory);
	RUN(directory_recreated_after_rmdir_is_a_new_directory);
	RUN(rename_moves_a_file_between_directories);
	RUN(rename_of_a_directory_moves_its_contents_and_forgets_the_old_path);
	RUN(rename_over_an_empty_directory_replaces_it_and_refuses_a_full_one);
	RUN(rename_noreplace_refuses_an_existing_target);
	RUN(rename_exchange_swaps_two_entries);
	RUN(reader_keeps_the_old_bytes_when_a_file_is_renamed_over);
	RUN(symlink_stores_its_target_and_readlink_returns_it);
	RUN(hard_link_shares_inode_content_and_link_count);
	RUN(mknod_makes_fifos_sockets_and_device_nodes_with_their_numbers);
	RUN(xattrs_on_files_and_directories_set_get_list_remove);
	RUN(level_xattr_reads_the_level_name_and_is_not_listed);
	RUN(empty_directory_can_be_classified_and_new_entries_inherit_its_level);
	RUN(chmod_and_chown_change_files_and_directories_and_persist);
	RUN(chmod_and_chown_of_a_folder_to_what_it_has_rewrite_nothing);
	RUN(mode_comes_from_the_seal_not_the_store_inode);
	RUN(utimens_sets_times_kept_by_the_store_inode);
	RUN(utimens_on_an_open_written_file_survives_its_close);
	RUN(truncate_by_path_changes_the_size);
	RUN(names_of_255_bytes_use_long_names_with_sidecars);
	RUN(names_with_unusual_bytes_round_trip);
	RUN(store_holds_no_plaintext_name);
	RUN(create_under_a_default_acl_inherits_it_and_ignores_the_umask);
	RUN(create_without_a_default_acl_applies_the_umask);
	RUN(setting_an_access_acl_sets_the_mode_and_chmod_sets_its_mask);
	RUN(directory_of_a_level_not_held_is_closed_and_its_name_hidden);
	RUN(tampered_directory_metadata_gives_ebadmsg);
	RUN(read_only_vault_refuses_every_change_with_erofs);
	RUN(statfs_reports_a_name_limit_of_255);
	RUN(many_directories_beyond_the_cache_bound_stay_reachable);
	RUN(last_close_compacts_a_file_whose_dead_frames_outweigh_live_ones);
	RUN(concurrent_handles_renames_and_listings_keep_every_write);
	RUN(stat_after_remount_keeps_the_atime_set_by_utimens);
	RUN(unlinked_open_file_stays_readable_and_writable_until_release);
	RUN(rename_exchange_of_long_names_keeps_both_sidecars);
	RUN(chmod_chown_and_xattrs_of_a_file_keep_its_mtime);
	RUN(crash_leftovers_of_mkdir_are_invisible_and_removed_with_their_parent);
	RUN(a_held_file_reopens_and_changes_after_its_name_is_renamed_over);
	RUN(a_held_file_reopens_after_unlink_and_a_hold_of_a_directory_is_refused);
	RUN(readdir_of_a_folder_under_another_folders_metadata_gives_ebadmsg);
	RUN(readdir_lists_a_folders_own_names_when_an_entry_was_moved_in_from_another);
	RUN(a_folder_whose_only_names_are_above_the_mounts_ceiling_lists_empty_not_ebadmsg);
	return tap_done();
}
