/* test_fsck.c - the offline check and the key rotation of admin.h driven
 * without FUSE.
 *
 * Each test creates a store with kr_vault_create, fills it through the
 * vault API, damages the ciphertext tree the way a disk or a crash would,
 * and runs vault_fsck to the end, checking what it reports and repairs.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "strongroom/admin.h"
#include "strongroom/vault.h"
#include "tap.h"

static const char PASS[] = "fsck test passphrase";
static struct vault_caller caller = {.uid = 0, .gid = 0, .pid = 1, .umask = 022};

struct fx {
	char store[256];
	struct kr_keyring *kr;
};

static int fx_new(struct fx *f)
{
	char dir[] = "/tmp/sr-fsck-XXXXXX";
	char rec[KR_RECOVERY_TEXT_BYTES];
	struct kr_kdf_params kdf;
	struct kr_config cfg;
	struct kr_secret s = {.kind = KR_SECRET_PASSPHRASE, .bytes = PASS, .len = sizeof(PASS) - 1};

	memset(f, 0, sizeof(*f));
	if (!mkdtemp(dir))
		return -errno;
	snprintf(f->store, sizeof(f->store), "%s/store", dir);
	kr_config_default(&cfg);
	kr_kdf_params_default(&kdf);
	return kr_vault_create(f->store, &cfg, &s, &kdf, rec, &f->kr);
}

static int put(struct fx *f, const char *path, const void *data, size_t len)
{
	struct vault *v = NULL;
	struct vault_handle *h = NULL;
	int r = vault_open(f->store, f->kr, 0, &v);

	if (r == 0)
		r = vault_create(v, &caller, path, 0644, O_RDWR | O_CREAT | O_TRUNC, &h);
	if (r == 0 && vault_write(h, data, len, 0) != (ssize_t)len)
		r = -EIO;
	if (h)
		vault_release(v, h);
	vault_close(v);
	return r;
}

static ssize_t get(struct fx *f, const char *path, void *buf, size_t cap)
{
	struct vault *v = NULL;
	struct vault_handle *h = NULL;
	ssize_t n = vault_open(f->store, f->kr, VAULT_READ_ONLY, &v);

	if (n == 0)
		n = vault_open_file(v, &caller, path, O_RDONLY, &h);
	if (n == 0)
		n = vault_read(h, buf, cap, 0);
	if (h)
		vault_release(v, h);
	vault_close(v);
	return n;
}

/* The one plaintext file's ciphertext in STORE/tree (a flat store). */
static int only_file(struct fx *f, char *out, size_t cap)
{
	char tree[300];
	struct dirent *de;
	DIR *d;
	int found = -ENOENT;

	snprintf(tree, sizeof(tree), "%s/tree", f->store);
	d = opendir(tree);
	if (!d)
		return -errno;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.') {
			snprintf(out, cap, "%s/%s", tree, de->d_name);
			found = 0;
		}
	closedir(d);
	return found;
}

/* Run a check to the end; @return the number of problems, *first the first. */
static int run(struct fx *f, bool repair, struct vault_fsck_problem *first, uint64_t *fixed)
{
	const struct vault_fsck_problem *p;
	struct vault_fsck *ck = NULL;
	size_t n;
	int r = vault_fsck_open(f->store, f->kr, repair, &ck);

	if (r < 0)
		return r;
	while ((r = vault_fsck_step(ck)) > 0)
		;
	n = vault_fsck_problems(ck, &p);
	if (n && first)
		*first = p[0];
	if (fixed)
		*fixed = vault_fsck_stats(ck)->fixed;
	vault_fsck_close(ck);
	return r < 0 ? r : (int)n;
}

static void flip(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	unsigned char b;

	if (pread(fd, &b, 1, off) == 1) {
		b ^= 0x20;
		if (pwrite(fd, &b, 1, off) != 1)
			b = 0;
	}
	close(fd);
}

TEST(fsck_of_a_fresh_store_finds_nothing)
{
	struct fx f;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put(&f, "/a", "hello", 5), 0);
	CHECK_EQ(run(&f, false, NULL, NULL), 0);
	kr_keyring_free(f.kr);
}

TEST(fsck_reports_a_flipped_chunk_with_its_plaintext_path_and_index)
{
	static unsigned char data[3 * 65536];
	struct vault_fsck_problem p;
	char file[600];
	struct fx f;

	randombytes_buf(data, sizeof(data));
	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put(&f, "/big", data, sizeof(data)), 0);
	CHECK_EQ(only_file(&f, file, sizeof(file)), 0);
	/* The first frame after the header is the creation seal; chunk 0
	 * follows it somewhere: flip a byte in the middle of the file, which
	 * lies inside one of the three chunk frames. */
	flip(file, 64 + 65536 + 300);
	CHECK_EQ(run(&f, false, &p, NULL), 1);
	CHECK_EQ(p.kind, VAULT_FSCK_CHUNK);
	CHECK(strcmp(p.path, "/big") == 0);
	CHECK(p.chunk <= 2);
	CHECK(!p.fixed);
	/* without repair nothing changed: the same damage is still there */
	CHECK_EQ(run(&f, false, NULL, NULL), 1);
	kr_keyring_free(f.kr);
}

TEST(fsck_repair_makes_a_bad_chunk_read_as_zeros_and_keeps_the_rest)
{
	static unsigned char data[3 * 65536], back[3 * 65536];
	struct vault_fsck_problem p;
	uint64_t fixed = 0;
	char file[600];
	struct fx f;

	randombytes_buf(data, sizeof(data));
	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put(&f, "/big", data, sizeof(data)), 0);
	CHECK_EQ(only_file(&f, file, sizeof(file)), 0);
	flip(file, 64 + 65536 + 300);
	CHECK_EQ(run(&f, true, &p, &fixed), 1);
	CHECK_EQ(fixed, 1);
	CHECK_EQ(run(&f, false, NULL, NULL), 0);
	CHECK_EQ(get(&f, "/big", back, sizeof(back)), (ssize_t)sizeof(back));
	for (uint64_t c = 0; c < 3; c++) {
		const unsigned char *b = back + c * 65536;
		bool zero = true;

		for (size_t i = 0; i < 65536; i++)
			zero = zero && b[i] == 0;
		if (c == p.chunk)
			CHECK(zero);
		else
			CHECK(memcmp(b, data + c * 65536, 65536) == 0);
	}
	kr_keyring_free(f.kr);
}

TEST(fsck_repair_moves_an_orphan_temp_file_into_the_quarantine)
{
	struct vault_fsck_problem p;
	char path[600];
	struct stat st;
	struct fx f;
	int fd;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put(&f, "/a", "x", 1), 0);
	snprintf(path, sizeof(path), "%s/tree/.sr-tmp.leftover", f.store);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	CHECK(fd >= 0);
	close(fd);
	CHECK_EQ(run(&f, true, &p, NULL), 1);
	CHECK_EQ(p.kind, VAULT_FSCK_TMP_ORPHAN);
	CHECK(p.fixed);
	CHECK(strcmp(p.store_path, "tree/.sr-tmp.leftover") == 0);
	CHECK(stat(path, &st) != 0);
	snprintf(path, sizeof(path), "%s/quarantine/index", f.store);
	CHECK_EQ(stat(path, &st), 0);
	CHECK(st.st_size > 0);
	kr_keyring_free(f.kr);
}

/* Both store names of the one hard-linked file in a flat store. */
static int both_names(struct fx *f, struct stat st[2])
{
	char tree[300], path[600];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(tree, sizeof(tree), "%s/tree", f->store);
	d = opendir(tree);
	if (!d)
		return -errno;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' && n < 2) {
			snprintf(path, sizeof(path), "%s/%s", tree, de->d_name);
			if (stat(path, &st[n]) == 0)
				n++;
		}
	closedir(d);
	return n;
}

/* st_ino (the file_id) of path through the vault, and its link count. */
static int vstat(struct fx *f, const char *path, struct stat *st)
{
	struct vault *v = NULL;
	int r = vault_open(f->store, f->kr, VAULT_READ_ONLY, &v);

	if (r == 0)
		r = vault_getattr(v, &caller, path, st);
	vault_close(v);
	return r;
}

static int link_file(struct fx *f, const char *from, const char *to)
{
	struct vault *v = NULL;
	int r = vault_open(f->store, f->kr, 0, &v);

	if (r == 0)
		r = vault_link(v, &caller, from, to);
	vault_close(v);
	return r;
}

TEST(fsck_repair_of_a_hard_linked_file_keeps_its_names_one_file_and_its_inode)
{
	static unsigned char data[3 * 65536];
	struct stat before = {0}, a = {0}, b = {0}, sst[2] = {{0}};
	uint64_t fixed = 0;
	char file[600];
	struct fx f;

	randombytes_buf(data, sizeof(data));
	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put(&f, "/big", data, sizeof(data)), 0);
	CHECK_EQ(only_file(&f, file, sizeof(file)), 0);
	CHECK_EQ(link_file(&f, "/big", "/alias"), 0);
	CHECK_EQ(vstat(&f, "/big", &before), 0);
	flip(file, 64 + 65536 + 300);
	CHECK_EQ(run(&f, true, NULL, &fixed), 2); /* the bad chunk, seen through each name */
	CHECK_EQ(fixed, 2);
	CHECK_EQ(run(&f, false, NULL, NULL), 0);
	CHECK_EQ(both_names(&f, sst), 2);
	CHECK(sst[0].st_ino == sst[1].st_ino && sst[0].st_nlink >= 2);
	CHECK_EQ(vstat(&f, "/big", &a), 0);
	CHECK_EQ(vstat(&f, "/alias", &b), 0);
	CHECK(a.st_ino == before.st_ino && b.st_ino == before.st_ino);
	kr_keyring_free(f.kr);
}

TEST(rotate_keeps_the_file_id_and_the_hard_links_of_a_file)
{
	static unsigned char data[100000], back[100000];
	struct vault_rotate *rt = NULL;
	struct kr_keyring *knew = NULL;
	struct stat before = {0}, a = {0}, b = {0}, sst[2] = {{0}};
	struct fx f;
	int r;

	randombytes_buf(data, sizeof(data));
	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(put(&f, "/doc", data, sizeof(data)), 0);
	CHECK_EQ(link_file(&f, "/doc", "/alias"), 0);
	CHECK_EQ(vstat(&f, "/doc", &before), 0);
	CHECK_EQ(kr_rotate_begin(f.store, f.kr, 0), 0);
	CHECK_EQ(kr_keyring_next(f.kr, 0, &knew), 0);
	CHECK_EQ(vault_rotate_open(f.store, f.kr, knew, 0, &rt), 0);
	while ((r = vault_rotate_step(rt)) > 0)
		;
	CHECK_EQ(r, 0);
	CHECK_EQ(vault_rotate_stats(rt)->files, 1);
	CHECK_EQ(vault_rotate_stats(rt)->linked, 2);
	vault_rotate_close(rt);
	CHECK_EQ(kr_rotate_finish(f.store, f.kr, 0), 0);
	CHECK_EQ(both_names(&f, sst), 2);
	CHECK(sst[0].st_ino == sst[1].st_ino && sst[0].st_nlink == 2);
	CHECK_EQ(vstat(&f, "/doc", &a), 0);
	CHECK_EQ(vstat(&f, "/alias", &b), 0);
	CHECK(a.st_ino == before.st_ino && b.st_ino == before.st_ino);
	CHECK_EQ(a.st_nlink, 2);
	CHECK_EQ(get(&f, "/alias", back, sizeof(back)), (ssize_t)sizeof(back));
	CHECK(memcmp(back, data, sizeof(data)) == 0);
	kr_keyring_free(knew);
	kr_keyring_free(f.kr);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	RUN(fsck_of_a_fresh_store_finds_nothing);
	RUN(fsck_reports_a_flipped_chunk_with_its_plaintext_path_and_index);
	RUN(fsck_repair_makes_a_bad_chunk_read_as_zeros_and_keeps_the_rest);
	RUN(fsck_repair_moves_an_orphan_temp_file_into_the_quarantine);
	RUN(fsck_repair_of_a_hard_linked_file_keeps_its_names_one_file_and_its_inode);
	RUN(rotate_keeps_the_file_id_and_the_hard_links_of_a_file);
	return tap_done();
}
