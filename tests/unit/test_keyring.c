/* test_keyring.c - the keyring against docs/format.md sections 2-4: vaults
 * created and unlocked, keyslots added and removed, ceilings, tampered and
 * foreign files, and the test vectors of the spec.
 *
 * Every test works in its own temporary store and uses the minimum Argon2id
 * cost (SR_KDF=test).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../keyring/kr_internal.h"
#include "tap.h"

static const char PASS[] = "correct horse battery staple";

static struct kr_secret pass_secret(const char *p)
{
	struct kr_secret s = {.kind = KR_SECRET_PASSPHRASE, .bytes = p, .len = strlen(p)};
	return s;
}

static struct kr_secret recovery_secret(const char *t)
{
	struct kr_secret s = {.kind = KR_SECRET_RECOVERY, .bytes = t, .len = strlen(t)};
	return s;
}

/* A fresh temporary directory path with a not-yet-existing store in it. */
static void tmp_store(char *out, size_t cap)
{
	char dir[] = "/tmp/sr-kr-XXXXXX";
	if (!mkdtemp(dir))
		abort();
	snprintf(out, cap, "%s/store", dir);
}

static int new_vault(const char *store, char recovery[KR_RECOVERY_TEXT_BYTES],
		     struct kr_keyring **out)
{
	struct kr_config cfg;
	struct kr_kdf_params kdf;
	struct kr_secret s = pass_secret(PASS);
	char rec[KR_RECOVERY_TEXT_BYTES];
	struct kr_keyring *kr = NULL;
	int rc;

	kr_config_default(&cfg);
	kr_kdf_params_default(&kdf);
	rc = kr_vault_create(store, &cfg, &s, &kdf, recovery ? recovery : rec, &kr);
	if (out)
		*out = kr;
	else
		kr_keyring_free(kr);
	return rc;
}

static ssize_t slurp(const char *path, unsigned char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;
	if (fd < 0)
		return -1;
	n = read(fd, buf, cap);
	close(fd);
	return n;
}

static int spit(const char *path, const unsigned char *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ssize_t n;
	if (fd < 0)
		return -1;
	n = write(fd, buf, len);
	close(fd);
	return n == (ssize_t)len ? 0 : -1;
}

static void store_file(char *out, size_t cap, const char *store, const char *name)
{
	snprintf(out, cap, "%s/%s", store, name);
}

static int unlock_pass(const char *store, const char *p, struct kr_keyring **out)
{
	struct kr_secret s = pass_secret(p);
	struct kr_keyring *kr = NULL;
	int rc = kr_vault_unlock(store, &s, &kr);
	if (out)
		*out = kr;
	else
		kr_keyring_free(kr);
	return rc;
}

TEST(create_then_unlock_by_passphrase_holds_every_level_and_the_audit_key)
{
	char store[256];
	struct kr_keyring *made = NULL, *kr = NULL;
	tmp_store(store, sizeof store);
	CHECK_EQ(new_vault(store, NULL, &made), 0);
	CHECK_EQ(unlock_pass(store, PASS, &kr), 0);
	CHECK_EQ(kr_keyring_config(kr)->nlevels, 4);
	CHECK_EQ(kr_keyring_ceiling(kr), 3);
	CHECK_EQ(kr_keyring_slot(kr), 0);
	CHECK(kr_keyring_is_admin(kr));
	CHECK(kr_audit_sk(kr) != NULL);
	for (unsigned l = 0; l < 4; l++) {
		CHECK(kr_level_held(kr, l));
		CHECK(memcmp(kr_level_subkey(kr, l, KR_SUB_CONTENT),
			     kr_level_subkey(made, l, KR_SUB_CONTENT), KR_KEY_BYTES) == 0);
	}
	CHECK(memcmp(kr_vault_subkey(kr, KR_VSUB_AUDIT), kr_vault_subkey(made, KR_VSUB_AUDIT),
		     KR_KEY_BYTES) == 0);
	CHECK(memcmp(kr_audit_sk(kr), kr_audit_sk(made), 32) == 0);
	CHECK_EQ(kr_level_index(kr, "restricted"), 3);
	CHECK_EQ(kr_level_index(kr, "secret"), -EINVAL);
	kr_keyring_free(kr);
	kr_keyring_free(made);
}

TEST(unlock_with_wrong_passphrase_is_rejected)
{
	char store[256];
	struct kr_keyring *kr = NULL;
	tmp_store(store, sizeof store);
	CHECK_EQ(new_vault(store, NULL, NULL), 0);
	CHECK_EQ(unlock_pass(store, "correct horse battery stapler", &kr), -EKEYREJECTED);
	CHECK(kr == NULL);
}

TEST(unlock_with_recovery_key_holds_every_level)
{
	char store[256], rec[KR_RECOVERY_TEXT_BYTES];
	struct kr_keyring *kr = NULL;
	struct kr_secret s;
	tmp_store(store, sizeof store);
	CHECK_EQ(new_vault(store, rec, NULL), 0);
	CHECK_EQ(strlen(rec), KR_RECOVERY_TEXT_BYTES - 1);
	s = recovery_secret(rec);
	CHECK_EQ(kr_vault_unlock(store, &s, &kr), 0);
	CHECK_EQ(kr_keyring_slot(kr), 1);
	CHECK_EQ(kr_keyring_ceiling(kr), 3);
	CHECK(kr_keyring_is_admin(kr));
	kr_keyring_free(kr);
}

TEST(recovery_key_of_another_vault_is_rejected)
{
	char a[256], b[256], rec_b[KR_RECOVERY_TEXT_BYTES];
	struct kr_keyring *kr = NULL;
	struct kr_secret s;
	tmp_store(a, sizeof a);
	tmp_store(b, sizeof b);
	CHECK_EQ(new_vault(a, NULL, NULL), 0);
	CHECK_EQ(new_vault(b, rec_b, NULL), 0);
	s = recovery_secret(rec_b);
	CHECK_EQ(kr_vault_unlock(a, &s, &kr), -EKEYREJECTED);
}

TEST(passphrase_does_not_open_recovery_slot_and_recovery_text_does_not_open_passphrase_slot)
{
	char store[256], rec[KR_RECOVERY_TEXT_BYTES];
	struct kr_keyring *kr = NULL;
	tmp_store(store, sizeof store);
	CHECK_EQ(new_vault(store, rec, NULL), 0);
	/* The recovery text typed as a passphrase is just a wrong passphrase. */
	CHECK_EQ(unlock_pass(store, rec, &kr), -EKEYREJECTED);
}

TEST(create_makes_the_store_layout)
{
	char store[256], p[300];
	struct stat st;
	tmp_store(store, sizeof store);
	CHECK_EQ(new_vault(store, NULL, NULL), 0);
	const char *dirs[] = {"keyslots", "tree", "audit"};
	for (int i = 0; i < 3; i++) {
		store_file(p, sizeof p, store, dirs[i]);
		CHECK(stat(p, &st) == 0 && S_ISDIR(st.st_mode));
	}
	store_file(p, sizeof p, store, "strongroom.conf");
	CHECK(stat(p, &st) == 0 && S_ISREG(st.st_mode));
	store_file(p, sizeof p, store, "keyslots/slot-0");
	CHECK(stat(p, &st) == 0 && (st.st_mode & 077) == 0);
	store_file(p, sizeof p, store, "keyslots/slot-1");
	CHECK(stat(p, &st) == 0);
}

TEST(create_refuses_a_non_empty_store_and_leaves_it_alone)
{
	char store[256], p[300];
	struct stat st;
	struct kr_keyring *kr = NULL;
	tmp_store(store, sizeof store);
	CHECK(mkdir(store, 0700) == 0);
	store_file(p, sizeof p, store, "notes.txt");
	CHECK(spit(p, (const unsigned char *)"x", 1) == 0);
	CHECK_EQ(new_vault(store, NULL, &kr), -ENOTEMPTY);
	CHECK(kr == NULL);
	store_file(p, sizeof p, store, "strongroom.conf");
	CHECK(stat(p, &st) != 0);
	store_file(p, sizeof p, store, "keyslots");
	CHECK(stat(p, &st) != 0);
}

TEST(create_refuses_an_existing_vault)
{
	char store[256];
	tmp_store(store, sizeof store);
	CHECK_EQ(new_vault(store, NULL, NULL), 0);
	CHECK_EQ(new_vault(store, NULL, NULL), -ENOTEMPTY);
	CHECK_EQ(unlock_pass(store, PASS, NULL), 0);
}

TEST(unlock_of_a_missing_store_is_enoent)
{
	CHECK_EQ(unlock_pass("/nonexistent/sr-store", PASS, NULL), -ENOENT);
}

TEST(keyslot_with_ceiling_holds_only_its_levels)
{
	char store[256], p[300];
	struct kr_keyring *admin = NULL, *kr = NULL;
	struct kr_kdf_params kdf;
	struct kr_secret s = pass_secret("branch office");
	struct stat st;
	int idx;
	tmp_store(store, sizeof store);
	kr_kdf_params_default(&kdf);
	CHECK_EQ(new_vault(store, NULL, &admin), 0);
	idx = kr_keyslot_add(store, admin, &s, 1, &kdf);
	CHECK_EQ(idx, 2);
	/* The file itself has room for exactly levels 0 and 1. */
	snprintf(p, sizeof p, "%s/keyslots/slot-%d", store, idx);
	CHECK(stat(p, &st) == 0);
	CHECK_EQ(st.st_size, KR_SLOT_HEADER_BYTES + 3 * KR_KEY_BYTES + KR_SLOT_TAG_BYTES);
	CHECK_EQ(unlock_pass(store, "branch office", &kr), 0);
	CHECK_EQ(kr_keyring_slot(kr), 2);
	CHECK_EQ(kr_keyring_ceiling(kr), 1);
	CHECK(!kr_keyring_is_admin(kr));
	CHECK(kr_audit_sk(kr) == NULL);
	CHECK(kr_level_held(kr, 1));
	CHECK(!kr_level_held(kr, 2));
	CHECK(kr_level_subkey(kr, 2, KR_SUB_CONTENT) == NULL);
	CHECK(kr_level_subkey(kr, 3, KR_SUB_NAME_MAC) == NULL);
	CHECK(memcmp(kr_level_subkey(kr, 1, KR_SUB_META), kr_level_subkey(admin, 1, KR_SUB_META),
		     KR_KEY_BYTES) == 0);
	/* Vault-wide subkeys are the same for every slot. */
	CHECK(memcmp(kr_vault_subkey(kr, KR_VSUB_HINT), kr_vault_subkey(admin, KR_VSUB_HINT),
		     KR_KEY_BYTES) == 0);
	/* A low slot cannot grant more than it holds. */
	CHECK_EQ(kr_keyslot_add(store, kr, &s, 2, &kdf), -ENOKEY);
	CHECK_EQ(kr_keyslot_add(store, kr, &s, 4, &kdf), -EINVAL);
	kr_keyring_free(kr);
	kr_keyring_free(admin);
}

TEST(slot_added_by_admin_at_the_top_is_admin)
{
	char store[256];
	struct kr_keyring *admin = NULL, *kr = NULL;
	struct kr_kdf_params kdf;
	struct kr_secret s = pass_secret("second admin");
	tmp_store(store, sizeof store);
	kr_kdf_params_default(&kdf);
	CHECK_EQ(new_vault(store, NULL, &admin), 0);
	CHECK_EQ(kr_keyslot_add(store, admin, &s, 3, &kdf), 2);
	CHECK_EQ(unlock_pass(store, "second admin", &kr), 0);
	CHECK(kr_keyring_is_admin(kr));
	CHECK(memcmp(kr_audit_sk(kr), kr_audit_sk(admin), 32) == 0);
	kr_keyring_free(kr);
	kr_keyring_free(admin);
}

TEST(keyslot_list_shows_kind_ceiling_and_admin_without_a_secret)
{
	char store[256];
	struct kr_keyring *admin = NULL;
	struct kr_kdf_params kdf;
	struct kr_slot_info info[KR_MAX_SLOTS];
	struct kr_secret s = pass_secret("low");
	tmp_store(store, sizeof store);
	kr_kdf_params_default(&kdf);
	CHECK_EQ(new_vault(store, NULL, &admin), 0);
	CHECK_EQ(kr_keyslot_add(store, admin, &s, 0, &kdf), 2);
	CHECK_EQ(kr_keyslot_list(store, info, KR_MAX_SLOTS), 3);
	CHECK_EQ(info[0].kind, KR_SECRET_PASSPHRASE);
	CHECK(info[0].admin);
	CHECK_EQ(info[0].kdf.opslimit, kdf.opslimit);
	CHECK_EQ(info[1].kind, KR_SECRET_RECOVERY);
	CHECK_EQ(info[1].ceiling, 3);
	CHECK_EQ(info[2].index, 2);
	CHECK_EQ(info[2].ceiling, 0);
	CHECK(!info[2].admin);
	kr_keyring_free(admin);
}

TEST(removing_the_last_slot_that_opens_every_level_is_refused)
{
	char store[256];
	struct kr_keyring *admin = NULL;
	struct kr_kdf_params kdf;
	struct kr_slot_info info[KR_MAX_SLOTS];
	struct kr_secret s = pass_secret("low");
	tmp_store(store, sizeof store);
	kr_kdf_params_default(&kdf);
	CHECK_EQ(new_vault(store, NULL, &admin), 0);
	CHECK_EQ(kr_keyslot_add(store, admin, &s, 2, &kdf), 2);
	CHECK_EQ(kr_keyslot_remove(store, admin, 1), 0);
	CHECK_EQ(kr_keyslot_remove(store, admin, 0), -EPERM);
	CHECK_EQ(kr_keyslot_remove(store, admin, 1), -ENOENT);
	CHECK_EQ(kr_keyslot_list(store, info, KR_MAX_SLOTS), 2);
	CHECK_EQ(unlock_pass(store, PASS, NULL), 0);
	/* The lower slot may go; the full one still may not. */
	CHECK_EQ(kr_keyslot_remove(store, admin, 2), 0);
	CHECK_EQ(kr_keyslot_remove(store, admin, 0), -EPERM);
	kr_keyring_free(admin);
}

TEST(removed_slot_no_longer_unlocks)
{
	char store[256];
	struct kr_keyring *admin = NULL;
	struct kr_kdf_params kdf;
	struct kr_secret s = pass_secret("temporary");
	tmp_store(store, sizeof store);
	kr_kdf_params_default(&kdf);
	CHECK_EQ(new_vault(store, NULL, &admin), 0);
	CHECK_EQ(kr_keyslot_add(store, admin, &s, 3, &kdf), 2);
	CHECK_EQ(unlock_pass(store, "temporary", NULL), 0);
	CHECK_EQ(kr_keyslot_remove(store, admin, 2), 0);
	CHECK_EQ(unlock_pass(store, "temporary", NULL), -EKEYREJECTED);
	kr_keyring_free(admin);
}

TEST(non_admin_slot_cannot_remove_another_slot)
{
	char store[256];
	struct kr_keyring *admin = NULL, *low = NULL;
	struct kr_kdf_params kdf;
	struct kr_secret s = pass_secret("low");
	tmp_store(store, sizeof store);
	kr_kdf_params_default(&kdf);
	CHECK_EQ(new_vault(store, NULL, &admin), 0);
	CHECK_EQ(kr_keyslot_add(store, admin, &s, 1, &kdf), 2);
	CHECK_EQ(unlock_pass(store, "low", &low), 0);
	CHECK_EQ(kr_keyslot_remove(store, low, 1), -EPERM);
	CHECK_EQ(kr_keyslot_remove(store, low, 2), 0);
	kr_keyring_free(low);
	kr_keyring_free(admin);
}

TEST(keyslot_add_never_overwrites_a_slot_file_and_leaves_no_temp_files)
{
	char store[256], p[300];
	unsigned char buf[16];
	struct kr_keyring *admin = NULL;
	struct kr_kdf_params kdf;
	struct kr_secret s = pass_secret("another");
	struct dirent *e;
	DIR *d;
	int files = 0;
	tmp_store(store, sizeof store);
	kr_kdf_params_default(&kdf);
	CHECK_EQ(new_vault(store, NULL, &admin), 0);
	store_file(p, sizeof p, store, "keyslots/slot-2");
	CHECK(spit(p, (const unsigned char *)"someone else's", 14) == 0);
	CHECK_EQ(kr_keyslot_add(store, admin, &s, 3, &kdf), 3);
	CHECK_EQ(slurp(p, buf, sizeof buf), 14);
	CHECK(memcmp(buf, "someone else's", 14) == 0);
	/* The unparseable slot-2 does not stop the others from unlocking. */
	CHECK_EQ(unlock_pass(store, "another", NULL), 0);
	store_file(p, sizeof p, store, "keyslots");
	d = opendir(p);
	CHECK(d != NULL);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.') {
			files++;
			CHECK(strncmp(e->d_name, "slot-", 5) == 0 && strlen(e->d_name) == 6);
		}
	closedir(d);
	CHECK_EQ(files, 4);
	kr_keyring_free(admin);
}

TEST(keyring_of_another_vault_cannot_add_or_remove_slots)
{
	char a[256], b[256];
	struct kr_keyring *ka = NULL;
	struct kr_kdf_params kdf;
	struct kr_slot_info info[KR_MAX_SLOTS];
	struct kr_secret s = pass_secret("x");
	tmp_store(a, sizeof a);
	tmp_store(b, sizeof b);
	kr_kdf_params_default(&kdf);
	CHECK_EQ(new_vault(a, NULL, &ka), 0);
	CHECK_EQ(new_vault(b, NULL, NULL), 0);
	CHECK_EQ(kr_keyslot_add(b, ka, &s, 3, &kdf), -EINVAL);
	CHECK_EQ(kr_keyslot_remove(b, ka, 1), -EINVAL);
	CHECK_EQ(kr_keyslot_list(b, info, KR_MAX_SLOTS), 2);
	kr_keyring_free(ka);
}

TEST(every_changed_byte_of_the_config_is_refused)
{
	char store[256], p[300];
	unsigned char orig[KR_CONF_MAX_BYTES], buf[KR_CONF_MAX_BYTES];
	ssize_t n;
	tmp_store(store, sizeof store);
	CHECK_EQ(new_vault(store, NULL, NULL), 0);
	store_file(p, sizeof p, store, "strongroom.conf");
	n = slurp(p, orig, sizeof orig);
	CHECK(n > KR_CONF_FIXED_BYTES);
	for (ssize_t i = 0; i < n; i++) {
		for (int bit = 0; bit < 8; bit += 7) {
			int rc;
			memcpy(buf, orig, (size_t)n);
			buf[i] ^= (unsigned char)(1u << bit);
			CHECK(spit(p, buf, (size_t)n) == 0);
			rc = unlock_pass(store, PASS, NULL);
			if (rc != -EUCLEAN && rc != -EOPNOTSUPP) {
				printf("# byte %zd bit %d: rc %d\n", i, bit, rc);
				CHECK(0);
			}
		}
	}
	CHECK(spit(p, orig, (size_t)n) == 0);
	CHECK_EQ(unlock_pass(store, PASS, NULL), 0);
}

TEST(truncated_or_extended_config_is_refused)
{
	char store[256], p[300];
	unsigned char orig[KR_CONF_MAX_BYTES + 1];
	ssize_t n;
	tmp_store(store, sizeof store);
	CHECK_EQ(new_vault(store, NULL, NULL), 0);
	store_file(p, sizeof p, store, "strongroom.conf");
	n = slurp(p, orig, sizeof orig);
	for (ssize_t len = 0; len < n; len++) {
		CHECK(spit(p, orig, (size_t)len) == 0);
		CHECK_EQ(unlock_pass(store, PASS, NULL), -EUCLEAN);
	}
	orig[n] = 0;
	CHECK(spit(p, orig, (size_t)n + 1) == 0);
	CHECK_EQ(unlock_pass(store, PASS, NULL), -EUCLEAN);
}

TEST(config_of_another_vault_is_refused)
{
	char a[256], b[256], pa[300], pb[300];
	unsigned char buf[KR_CONF_MAX_BYTES];
	ssize_t n;
	tmp_store(a, sizeof a);
	tmp_store(b, sizeof b);
	CHECK_EQ(new_vault(a, NULL, NULL), 0);
	CHECK_EQ(new_vault(b, NULL, NULL), 0);
	store_file(pa, sizeof pa, a, "strongroom.conf");
	store_file(pb, sizeof pb, b, "strongroom.conf");
	n = slurp(pb, buf, sizeof buf);
	CHECK(spit(pa, buf, (size_t)n) == 0);
	CHECK_EQ(unlock_pass(a, PASS, NULL), -EUCLEAN);
}

TEST(foreign_file_as_config_is_refused)
{
	char store[256], p[300];
	unsigned char junk[200];
	tmp_store(store, sizeof store);
	CHECK_EQ(new_vault(store, NULL, NULL), 0);
	store_file(p, sizeof p, store, "strongroom.conf");
	CHECK(spit(p, (const unsigned char *)"[vault]\nname = x\n", 17) == 0);
	CHECK_EQ(unlock_pass(store, PASS, NULL), -EUCLEAN);
	randombytes_buf(junk, sizeof junk);
	CHECK(spit(p, junk, sizeof junk) == 0);
	CHECK_EQ(unlock_pass(store, PASS, NULL), -EUCLEAN);
}

TEST(symlinked_config_is_refused)
{
	char store[256], p[300], q[300];
	tmp_store(store, sizeof store);
	CHECK_EQ(new_vault(store, NULL, NULL), 0);
	store_file(p, sizeof p, store, "strongroom.conf");
	store_file(q, sizeof q, store, "real.conf");
	CHECK(rename(p, q) == 0);
	CHECK(symlink("real.conf", p) == 0);
	CHECK_EQ(unlock_pass(store, PASS, NULL), -EUCLEAN);
}

TEST(unknown_version_or_required_feature_is_unsupported)
{
	struct kr_config cfg, parsed;
	unsigned char key[KR_KEY_BYTES] = {0};
	unsigned char buf[KR_CONF_MAX_BYTES];
	ssize_t n;
	kr_config_default(&cfg);
	n = kr_config_encode(&cfg, key, buf, sizeof buf);
	CHECK(n > 0);
	CHECK_EQ(kr_config_parse(buf, (size_t)n, &parsed), 0);
	buf[8] = 2; /* version 2 */
	CHECK_EQ(kr_config_parse(buf, (size_t)n, &parsed), -EOPNOTSUPP);
	buf[8] = 1;
	buf[12] = 0x01; /* required feature bit 0 */
	CHECK_EQ(kr_config_parse(buf, (size_t)n, &parsed), -EOPNOTSUPP);
	buf[12] = 0;
	buf[19] = 0x80; /* an optional feature: ignored by the parser */
	CHECK_EQ(kr_config_parse(buf, (size_t)n, &parsed), 0);
}

TEST(every_changed_byte_of_a_keyslot_is_refused)
{
	char store[256], p[300];
	unsigned char orig[KR_SLOT_MAX_BYTES], buf[KR_SLOT_MAX_BYTES];
	ssize_t n;
	tmp_store(store, sizeof store);
	CHECK_EQ(new_vault(store, NULL, NULL), 0);
	store_file(p, sizeof p, store, "keyslots/slot-0");
	n = slurp(p, orig, sizeof orig);
	CHECK_EQ(n, KR_SLOT_HEADER_BYTES + 6 * KR_KEY_BYTES + KR_SLOT_TAG_BYTES);
	for (ssize_t i = 0; i < n; i++) {
		int rc;
		memcpy(buf, orig, (size_t)n);
		buf[i] ^= 0x01;
		CHECK(spit(p, buf, (size_t)n) == 0);
		rc = unlock_pass(store, PASS, NULL);
		if (rc != -EUCLEAN && rc != -EKEYREJECTED && rc != -EOPNOTSUPP) {
			printf("# byte %zd: rc %d\n", i, rc);
			CHECK(0);
		}
	}
	CHECK(spit(p, orig, (size_t)n) == 0);
	CHECK_EQ(unlock_pass(store, PASS, NULL), 0);
}

TEST(truncated_keyslot_is_refused_as_corrupt)
{
	char store[256], p[300];
	unsigned char orig[KR_SLOT_MAX_BYTES];
	ssize_t n;
	tmp_store(store, sizeof store);
	CHECK_EQ(new_vault(store, NULL, NULL), 0);
	store_file(p, sizeof p, store, "keyslots/slot-0");
	n = slurp(p, orig, sizeof orig);
	for (ssize_t len = 0; len < n; len += 7) {
		CHECK(spit(p, orig, (size_t)len) == 0);
		CHECK_EQ(unlock_pass(store, PASS, NULL), -EUCLEAN);
	}
}

TEST(keyslot_of_another_vault_is_refused)
{
	char a[256], b[256], pa[300], pb[300];
	unsigned char buf[KR_SLOT_MAX_BYTES];
	ssize_t n;
	tmp_store(a, sizeof a);
	tmp_store(b, sizeof b);
	CHECK_EQ(new_vault(a, NULL, NULL), 0);
	CHECK_EQ(new_vault(b, NULL, NULL), 0);
	store_file(pa, sizeof pa, a, "keyslots/slot-0");
	store_file(pb, sizeof pb, b, "keyslots/slot-0");
	n = slurp(pb, buf, sizeof buf);
	CHECK(spit(pa, buf, (size_t)n) == 0);
	CHECK_EQ(unlock_pass(a, PASS, NULL), -EUCLEAN);
}

TEST(keyslot_argon2_cost_is_bounded)
{
	char store[256], p[300];
	unsigned char buf[KR_SLOT_MAX_BYTES];
	struct kr_slot_info info;
	ssize_t n;
	tmp_store(store, sizeof store);
	CHECK_EQ(new_vault(store, NULL, NULL), 0);
	store_file(p, sizeof p, store, "keyslots/slot-0");
	n = slurp(p, buf, sizeof buf);
	CHECK_EQ(kr_keyslot_parse(buf, (size_t)n, &info), 0);
	buf[32 + 7] = 0x10; /* opslimit 2^60 */
	CHECK_EQ(kr_keyslot_parse(buf, (size_t)n, &info), -EUCLEAN);
	buf[32 + 7] = 0;
	buf[40 + 5] = 0x01; /* memlimit 1 TiB */
	CHECK_EQ(kr_keyslot_parse(buf, (size_t)n, &info), -EUCLEAN);
}

TEST(levels_and_chunk_size_are_validated)
{
	struct kr_config cfg;
	kr_config_default(&cfg);
	CHECK_EQ(cfg.levels[3].compress, 0);
	CHECK_EQ(cfg.levels[3].pad_log2, 16);
	CHECK_EQ(cfg.levels[0].compress, 1);
	CHECK_EQ(cfg.levels[2].pad_log2, 4);
	CHECK_EQ(kr_config_set_levels(&cfg, "low,mid,high"), 0);
	CHECK_EQ(cfg.nlevels, 3);
	CHECK(strcmp(cfg.levels[2].name, "high") == 0);
	CHECK_EQ(cfg.levels[2].pad_log2, 16);
	CHECK_EQ(kr_config_set_levels(&cfg, "a,,b"), -EINVAL);
	CHECK_EQ(kr_config_set_levels(&cfg, "a,b,a"), -EINVAL);
	CHECK_EQ(kr_config_set_levels(&cfg, "Upper"), -EINVAL);
	CHECK_EQ(kr_config_set_levels(&cfg, "a,b,c,d,e,f,g,h,i"), -EINVAL);
	CHECK_EQ(kr_config_set_levels(&cfg, "0abc"), -EINVAL);
	CHECK_EQ(cfg.nlevels, 3); /* unchanged by the failures */
	CHECK_EQ(kr_config_set_chunk_size(&cfg, 1u << 20), 0);
	CHECK_EQ(cfg.levels[2].pad_log2, 20);
	CHECK_EQ(cfg.levels[0].pad_log2, 4);
	CHECK_EQ(kr_config_set_chunk_size(&cfg, 3000), -EINVAL);
	CHECK_EQ(kr_config_set_chunk_size(&cfg, 2048), -EINVAL);
	CHECK_EQ(kr_config_set_chunk_size(&cfg, 1u << 21), -EINVAL);
	CHECK_EQ(kr_config_set_chunk_size(&cfg, 4096), 0);
	CHECK_EQ(cfg.levels[2].pad_log2, 12);
}

TEST(vault_with_custom_levels_unlocks_with_them)
{
	char store[256];
	struct kr_config cfg;
	struct kr_kdf_params kdf;
	struct kr_secret s = pass_secret(PASS);
	char rec[KR_RECOVERY_TEXT_BYTES];
	struct kr_keyring *kr = NULL;
	tmp_store(store, sizeof store);
	kr_config_default(&cfg);
	kr_kdf_params_default(&kdf);
	CHECK_EQ(kr_config_set_levels(&cfg, "open,staff"), 0);
	CHECK_EQ(kr_config_set_chunk_size(&cfg, 16384), 0);
	CHECK_EQ(kr_vault_create(store, &cfg, &s, &kdf, rec, &kr), 0);
	kr_keyring_free(kr);
	kr = NULL;
	CHECK_EQ(unlock_pass(store, PASS, &kr), 0);
	CHECK_EQ(kr_keyring_config(kr)->nlevels, 2);
	CHECK_EQ(kr_keyring_config(kr)->chunk_size, 16384);
	CHECK_EQ(kr_keyring_ceiling(kr), 1);
	CHECK_EQ(kr_level_index(kr, "staff"), 1);
	kr_keyring_free(kr);
}

TEST(subkeys_differ_by_level_and_purpose)
{
	char store[256];
	struct kr_keyring *kr = NULL;
	tmp_store(store, sizeof store);
	CHECK_EQ(new_vault(store, NULL, &kr), 0);
	for (unsigned a = 0; a < 4 * 4; a++)
		for (unsigned b = a + 1; b < 4 * 4; b++)
			CHECK(memcmp(kr_level_subkey(kr, a / 4, (enum kr_subkey)(a % 4 + 1)),
				     kr_level_subkey(kr, b / 4, (enum kr_subkey)(b % 4 + 1)),
				     KR_KEY_BYTES) != 0);
	CHECK(memcmp(kr_vault_subkey(kr, KR_VSUB_HINT), kr_vault_subkey(kr, KR_VSUB_AUDIT),
		     KR_KEY_BYTES) != 0);
	CHECK(kr_level_subkey(kr, 0, (enum kr_subkey)0) == NULL);
	CHECK(kr_level_subkey(kr, 0, (enum kr_subkey)5) == NULL);
	kr_keyring_free(kr);
}

/* ---- docs/format.md test vectors ---- */

#define VEC_LEVEL_CONTENT  "80022076884c5b030e3031310bf82dfa5107eef1132bafef552f3744215442fc"
#define VEC_LEVEL_NAME_MAC "358ea26769554d48b71647b3fa56e09b4ff22d9d904311401a0db6b57d4f258a"
#define VEC_VAULT_CONFIG   "39afaaf72478f1fd11fd9a3922b01e59fc242cfd58a3a3065d5ac926727a06d5"
#define VEC_CONFIG                                                                                 \
	"53525641554c5400010000000000000000000000000102030405060708090a0b"                         \
	"0c0d0e0f0000010004067075626c6963010408696e7465726e616c01040c636f"                         \
	"6e666964656e7469616c01040a72657374726963746564001040414243444546"                         \
	"4748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f3c7936c4f1551d"                         \
	"cb3093357b16f34ca38ac4c33f4abf4ff53d204be2aa20f54b"
#define VEC_SLOT_WRAP "28b2ec33b737a8a7a9cb4669a5290da839ab55c998c27b33aa849b964f3101c5"
#define VEC_SLOT                                                                                   \
	"53524b534c4f54000100010000000000000102030405060708090a0b0c0d0e0f"                         \
	"01000000000000000020000000000000606162636465666768696a6b6c6d6e6f"                         \
	"707172737475767778797a7b7c7d7e7f8081828384858687a17bffb20654f65c"                         \
	"b53797b9dbed06704563913b8c0b91405a30c84f9b6b022ea0ee15dd0ad0cef5"                         \
	"a6eae921ef4a8522fd427bafd7dff504dccc1354c8c617e4a49e5164368c2ece"                         \
	"ed7ac67733977170"
#define VEC_RECOVERY_WRAP "130c653108a62634b9a2414f3ccda4247a5ab7b5e169f09e183993552415c518"

static void hex(const unsigned char *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void seq(unsigned char *b, size_t n, unsigned start)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(start + i);
}

/* Vector 1 (section 4.3): subkeys of the level key 00 01 .. 1f. */
TEST(subkey_vectors_match_the_spec)
{
	struct kr_secure *sec = sodium_malloc(sizeof *sec);
	char h[65];
	CHECK(sec != NULL);
	memset(sec, 0, sizeof *sec);
	seq(sec->vault_key, 32, 0x20);
	seq(sec->level_key[0], 32, 0x00);
	kr_subkeys_derive(sec, 0);
	hex(sec->level_sub[0][KR_SUB_CONTENT - 1], 32, h);
	printf("# level content %s\n", h);
	CHECK(strcmp(h, VEC_LEVEL_CONTENT) == 0);
	hex(sec->level_sub[0][KR_SUB_NAME_MAC - 1], 32, h);
	printf("# level name-mac %s\n", h);
	CHECK(strcmp(h, VEC_LEVEL_NAME_MAC) == 0);
	hex(sec->vault_sub[KR_VSUB_CONFIG - 1], 32, h);
	printf("# vault config %s\n", h);
	CHECK(strcmp(h, VEC_VAULT_CONFIG) == 0);
	sodium_free(sec);
}

/* Vector 2 (section 2.3): the default config, vault ID 00..0f, audit
 * public key 40..5f, MAC key = the config subkey of vault key 20..3f. */
TEST(config_vector_matches_the_spec)
{
	struct kr_secure *sec = sodium_malloc(sizeof *sec);
	struct kr_config cfg;
	unsigned char buf[KR_CONF_MAX_BYTES];
	char h[2 * KR_CONF_MAX_BYTES + 1];
	ssize_t n;
	CHECK(sec != NULL);
	memset(sec, 0, sizeof *sec);
	seq(sec->vault_key, 32, 0x20);
	kr_subkeys_derive(sec, 0);
	kr_config_default(&cfg);
	seq(cfg.vault_id, 16, 0x00);
	seq(cfg.audit_pk, 32, 0x40);
	n = kr_config_encode(&cfg, sec->vault_sub[KR_VSUB_CONFIG - 1], buf, sizeof buf);
	CHECK(n > 0);
	hex(buf, (size_t)n, h);
	printf("# config %s\n", h);
	CHECK(strcmp(h, VEC_CONFIG) == 0);
	CHECK_EQ(kr_config_mac_verify(buf, (size_t)n, sec->vault_sub[KR_VSUB_CONFIG - 1]), 0);
	sodium_free(sec);
}

/* Vector 3 (section 3.3): a passphrase slot, ceiling 0, not admin. */
TEST(keyslot_vector_matches_the_spec)
{
	struct kr_slot_info info = {0};
	struct kr_slot s;
	unsigned char vid[16], salt[16], nonce[24], plain[64], back[64];
	unsigned char *wrap = sodium_malloc(KR_KEY_BYTES);
	unsigned char buf[KR_SLOT_MAX_BYTES];
	char h[2 * KR_SLOT_MAX_BYTES + 1];
	ssize_t n;
	CHECK(wrap != NULL);
	seq(vid, 16, 0x00);
	seq(salt, 16, 0x60);
	seq(nonce, 24, 0x70);
	seq(plain, 32, 0x20);	   /* vault key */
	seq(plain + 32, 32, 0x00); /* level 0 key */
	info.kind = KR_SECRET_PASSPHRASE;
	info.ceiling = 0;
	info.kdf.opslimit = crypto_pwhash_OPSLIMIT_MIN;
	info.kdf.memlimit = crypto_pwhash_MEMLIMIT_MIN;
	memset(&s, 0, sizeof s);
	s.info = info;
	memcpy(s.salt, salt, 16);
	CHECK_EQ(kr_slot_wrap_key(&s, (const unsigned char *)"password", 8, NULL, 0, wrap), 0);
	hex(wrap, 32, h);
	printf("# wrap %s\n", h);
	CHECK(strcmp(h, VEC_SLOT_WRAP) == 0);
	n = kr_slot_encode(&info, vid, salt, nonce, wrap, plain, 64, buf, sizeof buf);
	CHECK_EQ(n, KR_SLOT_HEADER_BYTES + 64 + KR_SLOT_TAG_BYTES);
	hex(buf, (size_t)n, h);
	printf("# slot %s\n", h);
	CHECK(strcmp(h, VEC_SLOT) == 0);
	CHECK_EQ(kr_slot_parse(buf, (size_t)n, &s), 0);
	CHECK_EQ(kr_slot_open(buf, &s, wrap, back), 0);
	CHECK(memcmp(back, plain, 64) == 0);
	sodium_free(wrap);
}

/* Vector 3b (section 3.3): the same slot needing key file a0 a1 .. df. */
#define VEC_KEYFILE_WRAP "c52d6b5cfc8db0e0736894382fc3f7778f6191606874b20a2f60a0502fe7a6ab"
#define VEC_KEYFILE_SLOT                                                                           \
	"53524b534c4f54000100010002000000000102030405060708090a0b0c0d0e0f" \
	"01000000000000000020000000000000606162636465666768696a6b6c6d6e6f" \
	"707172737475767778797a7b7c7d7e7f808182838485868736ce3c2bee454945" \
	"ad45b3099d5d20183ed6aa5de50f6fa88a68af38edabc2704bcd503d2d60a0c7" \
	"6851ae8c7090bdd57ae73d311e8142666e24c2940cc9c3529a535c4684bcd066" \
	"b4d70ff1bcbb0de5"
TEST(keyfile_slot_vector_matches_the_spec)
{
	struct kr_slot_info info = {0};
	struct kr_slot s;
	unsigned char vid[16], salt[16], nonce[24], plain[64], back[64], kf[64];
	unsigned char *wrap = sodium_malloc(KR_KEY_BYTES);
	unsigned char buf[KR_SLOT_MAX_BYTES];
	char h[2 * KR_SLOT_MAX_BYTES + 1];
	ssize_t n;
	CHECK(wrap != NULL);
	seq(vid, 16, 0x00);
	seq(salt, 16, 0x60);
	seq(nonce, 24, 0x70);
	seq(kf, 64, 0xa0);
	seq(plain, 32, 0x20);	   /* vault key */
	seq(plain + 32, 32, 0x00); /* level 0 key */
	info.kind = KR_SECRET_PASSPHRASE;
	info.keyfile = true;
	info.kdf.opslimit = crypto_pwhash_OPSLIMIT_MIN;
	info.kdf.memlimit = crypto_pwhash_MEMLIMIT_MIN;
	memset(&s, 0, sizeof s);
	s.info = info;
	memcpy(s.salt, salt, 16);
	CHECK_EQ(kr_slot_wrap_key(&s, (const unsigned char *)"password", 8, NULL, 0, wrap),
		 -ENOKEY);
	CHECK_EQ(kr_slot_wrap_key(&s, (const unsigned char *)"password", 8, kf, 64, wrap), 0);
	hex(wrap, 32, h);
	printf("# keyfile wrap %s\n", h);
	CHECK(strcmp(h, VEC_KEYFILE_WRAP) == 0);
	n = kr_slot_encode(&info, vid, salt, nonce, wrap, plain, 64, buf, sizeof buf);
	CHECK_EQ(n, KR_SLOT_HEADER_BYTES + 64 + KR_SLOT_TAG_BYTES);
	hex(buf, (size_t)n, h);
	printf("# keyfile slot %s\n", h);
	CHECK(strcmp(h, VEC_KEYFILE_SLOT) == 0);
	CHECK_EQ(kr_slot_parse(buf, (size_t)n, &s), 0);
	CHECK(s.info.keyfile);
	CHECK_EQ(kr_slot_open(buf, &s, wrap, back), 0);
	CHECK(memcmp(back, plain, 64) == 0);
	sodium_free(wrap);
}

/* Vector 4 (section 4.2): the recovery slot's wrapping key for recovery
 * bytes 00..13 and salt 60..6f. */
TEST(recovery_wrap_vector_matches_the_spec)
{
	struct kr_slot s;
	unsigned char raw[20], wrap[32];
	char h[65];
	memset(&s, 0, sizeof s);
	s.info.kind = KR_SECRET_RECOVERY;
	seq(s.salt, 16, 0x60);
	seq(raw, 20, 0x00);
	CHECK_EQ(kr_slot_wrap_key(&s, raw, 20, NULL, 0, wrap), 0);
	hex(wrap, 32, h);
	printf("# recovery wrap %s\n", h);
	CHECK(strcmp(h, VEC_RECOVERY_WRAP) == 0);
}

/* ---- passphrase + key file slots (docs/format.md section 3.1) ---- */

static const unsigned char KEYFILE_A[32] = "held key file A: 32 bytes long.";
static const unsigned char KEYFILE_B[32] = "held key file B: 32 bytes long.";

static struct kr_secret keyfile_secret(const char *p, const unsigned char *kf, size_t len)
{
	struct kr_secret s = pass_secret(p);
	s.keyfile = kf;
	s.keyfile_len = len;
	return s;
}

static int new_keyfile_vault(const char *store, struct kr_keyring **out)
{
	struct kr_config cfg;
	struct kr_kdf_params kdf;
	struct kr_secret s = keyfile_secret(PASS, KEYFILE_A, sizeof KEYFILE_A);
	char rec[KR_RECOVERY_TEXT_BYTES];
	struct kr_keyring *kr = NULL;
	int rc;

	kr_config_default(&cfg);
	kr_kdf_params_default(&kdf);
	rc = kr_vault_create(store, &cfg, &s, &kdf, rec, &kr);
	if (out)
		*out = kr;
	else
		kr_keyring_free(kr);
	return rc;
}

TEST(keyfile_slot_opens_only_with_both_the_passphrase_and_the_key_file)
{
	char store[256];
	struct kr_keyring *kr = NULL;
	struct kr_secret s;
	struct kr_slot_info info[KR_MAX_SLOTS];
	tmp_store(store, sizeof store);
	CHECK_EQ(new_keyfile_vault(store, NULL), 0);
	/* The passphrase alone, a wrong key file, a wrong passphrase. */
	CHECK_EQ(unlock_pass(store, PASS, &kr), -EKEYREJECTED);
	s = keyfile_secret(PASS, KEYFILE_B, sizeof KEYFILE_B);
	CHECK_EQ(kr_vault_unlock(store, &s, &kr), -EKEYREJECTED);
	s = keyfile_secret(PASS, KEYFILE_A, sizeof KEYFILE_A - 1);
	CHECK_EQ(kr_vault_unlock(store, &s, &kr), -EKEYREJECTED);
	s = keyfile_secret("correct horse battery stapler", KEYFILE_A, sizeof KEYFILE_A);
	CHECK_EQ(kr_vault_unlock(store, &s, &kr), -EKEYREJECTED);
	CHECK(kr == NULL);
	s = keyfile_secret(PASS, KEYFILE_A, sizeof KEYFILE_A);
	CHECK_EQ(kr_vault_unlock(store, &s, &kr), 0);
	CHECK_EQ(kr_keyring_slot(kr), 0);
	CHECK(kr_keyring_is_admin(kr));
	kr_keyring_free(kr);
	/* The slot says so without a secret; the recovery slot needs no file. */
	CHECK(kr_vault_needs_keyfile(store));
	CHECK_EQ(kr_keyslot_list(store, info, KR_MAX_SLOTS), 2);
	CHECK(info[0].keyfile);
	CHECK(!info[1].keyfile);
}

TEST(keyslot_add_with_key_file_makes_a_slot_that_needs_it_and_plain_slots_ignore_one)
{
	char store[256];
	struct kr_keyring *admin = NULL, *kr = NULL;
	struct kr_kdf_params kdf;
	struct kr_slot_info info[KR_MAX_SLOTS];
	struct kr_secret s = keyfile_secret("branch office", KEYFILE_B, sizeof KEYFILE_B);
	tmp_store(store, sizeof store);
	kr_kdf_params_default(&kdf);
	CHECK_EQ(new_vault(store, NULL, &admin), 0);
	CHECK(!kr_vault_needs_keyfile(store));
	CHECK_EQ(kr_keyslot_add(store, admin, &s, 1, &kdf), 2);
	CHECK(kr_vault_needs_keyfile(store));
	CHECK_EQ(kr_keyslot_list(store, info, KR_MAX_SLOTS), 3);
	CHECK(info[2].keyfile);
	CHECK(!info[0].keyfile);
	CHECK_EQ(unlock_pass(store, "branch office", NULL), -EKEYREJECTED);
	CHECK_EQ(kr_vault_unlock(store, &s, &kr), 0);
	CHECK_EQ(kr_keyring_slot(kr), 2);
	CHECK_EQ(kr_keyring_ceiling(kr), 1);
	kr_keyring_free(kr);
	kr = NULL;
	/* A key file given with a plain slot's passphrase does not get in the way. */
	s = keyfile_secret(PASS, KEYFILE_B, sizeof KEYFILE_B);
	CHECK_EQ(kr_vault_unlock(store, &s, &kr), 0);
	CHECK_EQ(kr_keyring_slot(kr), 0);
	kr_keyring_free(kr);
	kr_keyring_free(admin);
}

TEST(key_file_outside_its_length_bounds_or_with_a_recovery_key_is_refused)
{
	char store[256], rec[KR_RECOVERY_TEXT_BYTES];
	struct kr_keyring *admin = NULL, *kr = NULL;
	struct kr_kdf_params kdf;
	struct kr_secret s = keyfile_secret("short", KEYFILE_A, KR_KEYFILE_MIN_BYTES - 1);
	tmp_store(store, sizeof store);
	kr_kdf_params_default(&kdf);
	CHECK_EQ(new_vault(store, rec, &admin), 0);
	CHECK_EQ(kr_keyslot_add(store, admin, &s, 1, &kdf), -EINVAL);
	s.keyfile_len = (size_t)KR_KEYFILE_MAX_BYTES + 1;
	CHECK_EQ(kr_keyslot_add(store, admin, &s, 1, &kdf), -EINVAL);
	s = recovery_secret(rec);
	s.keyfile = KEYFILE_A;
	s.keyfile_len = sizeof KEYFILE_A;
	CHECK_EQ(kr_vault_unlock(store, &s, &kr), -EINVAL);
	CHECK(kr == NULL);
	kr_keyring_free(admin);
}

TEST(keyfile_flag_on_a_recovery_slot_or_an_unknown_flag_is_refused_as_corrupt)
{
	char store[256], path[300];
	unsigned char buf[KR_SLOT_MAX_BYTES];
	struct kr_slot s;
	ssize_t n;
	tmp_store(store, sizeof store);
	CHECK_EQ(new_vault(store, NULL, NULL), 0);
	snprintf(path, sizeof path, "%s/keyslots/slot-1", store);
	n = slurp(path, buf, sizeof buf);
	CHECK(n > 0);
	CHECK_EQ(kr_slot_parse(buf, (size_t)n, &s), 0);
	buf[12] |= KR_SLOT_FLAG_KEYFILE;
	CHECK_EQ(kr_slot_parse(buf, (size_t)n, &s), -EUCLEAN);
	buf[12] = (unsigned char)(KR_SLOT_FLAG_ADMIN | 0x04);
	CHECK_EQ(kr_slot_parse(buf, (size_t)n, &s), -EUCLEAN);
}

TEST(flipping_the_keyfile_flag_of_a_slot_makes_it_open_with_nothing)
{
	char store[256], path[300];
	unsigned char buf[KR_SLOT_MAX_BYTES];
	struct kr_keyring *kr = NULL;
	struct kr_secret s = keyfile_secret(PASS, KEYFILE_A, sizeof KEYFILE_A);
	ssize_t n;
	tmp_store(store, sizeof store);
	CHECK_EQ(new_keyfile_vault(store, NULL), 0);
	snprintf(path, sizeof path, "%s/keyslots/slot-0", store);
	n = slurp(path, buf, sizeof buf);
	CHECK(n > 0);
	/* A store writer clearing the flag does not make the passphrase alone
	 * enough: the flag is in the box's associated data. */
	buf[12] &= (unsigned char)~KR_SLOT_FLAG_KEYFILE;
	CHECK_EQ(spit(path, buf, (size_t)n), 0);
	CHECK_EQ(unlock_pass(store, PASS, &kr), -EKEYREJECTED);
	CHECK_EQ(kr_vault_unlock(store, &s, &kr), -EKEYREJECTED);
	CHECK(kr == NULL);
}

/* ---- freeze and lock state, docs/format.md section 4.5 ---- */

#define VEC_WATCH_KEY "0d89a9ca935a1b57df84edf0e99f1c6d72225a990faa9d8bd27b30eefdd55efd"
#define VEC_WATCH                                                                                  \
	"53525741544348000100000008000000000102030405060708090a0b0c0d0e0f"                         \
	"070000000000000002000000e8030000e9030000648acea16a2131994885b135"                         \
	"58422468f9c87b2128435a86e3205f98c18471b1"

TEST(watch_state_vector_matches_the_spec)
{
	struct kr_watch_state st, back;
	unsigned char vk[32], key[32], vid[16], buf[KR_WATCH_MAX_BYTES];
	char h[2 * KR_WATCH_MAX_BYTES + 1];
	ssize_t n;
	seq(vk, 32, 0x20);
	seq(vid, 16, 0x00);
	crypto_kdf_derive_from_key(key, 32, KR_VSUB_WATCH, KR_CTX_VAULT, vk);
	hex(key, 32, h);
	CHECK(strcmp(h, VEC_WATCH_KEY) == 0);
	memset(&st, 0, sizeof st);
	st.locked = 1u << 3;
	st.generation = 7;
	st.nfrozen = 2;
	st.frozen[0] = 1001; /* encoded sorted */
	st.frozen[1] = 1000;
	n = kr_watch_encode(&st, vid, key, buf, sizeof buf);
	CHECK_EQ(n, 84);
	hex(buf, (size_t)n, h);
	printf("# watch %s\n", h);
	CHECK(strcmp(h, VEC_WATCH) == 0);
	CHECK_EQ(kr_watch_decode(buf, (size_t)n, vid, 4, key, &back), 0);
	CHECK_EQ(back.locked, 8);
	CHECK_EQ(back.generation, 7);
	CHECK_EQ(back.nfrozen, 2);
	CHECK_EQ(back.frozen[0], 1000);
	CHECK_EQ(back.frozen[1], 1001);
	/* A level the vault does not have, duplicate uids. */
	CHECK_EQ(kr_watch_decode(buf, (size_t)n, vid, 3, key, &back), -EUCLEAN);
	st.frozen[0] = 1000;
	CHECK_EQ(kr_watch_encode(&st, vid, key, buf, sizeof buf), -EINVAL);
}

TEST(create_writes_an_empty_watch_state_and_saves_load_back)
{
	char store[256];
	struct kr_keyring *kr = NULL;
	struct kr_watch_state st;
	tmp_store(store, sizeof store);
	CHECK_EQ(new_vault(store, NULL, &kr), 0);
	CHECK_EQ(kr_watch_load(store, kr, &st), 0);
	CHECK_EQ(st.locked, 0);
	CHECK_EQ(st.nfrozen, 0);
	CHECK_EQ(st.generation, 1);
	st.locked = 1u << 2;
	st.nfrozen = 1;
	st.frozen[0] = 4242;
	CHECK_EQ(kr_watch_save(store, kr, &st), 0);
	CHECK_EQ(st.generation, 2);
	kr_keyring_free(kr);
	/* Any slot's keyring reads it: the key is a vault subkey. */
	CHECK_EQ(unlock_pass(store, PASS, &kr), 0);
	CHECK_EQ(kr_watch_load(store, kr, &st), 0);
	CHECK_EQ(st.locked, 4);
	CHECK_EQ(st.nfrozen, 1);
	CHECK_EQ(st.frozen[0], 4242);
	st.locked = 1u << 4; /* the vault has 4 levels */
	CHECK_EQ(kr_watch_save(store, kr, &st), -EINVAL);
	kr_keyring_free(kr);
}

TEST(every_changed_byte_of_the_watch_state_and_its_deletion_are_detected)
{
	char store[256], path[300];
	unsigned char buf[KR_WATCH_MAX_BYTES];
	struct kr_keyring *kr = NULL;
	struct kr_watch_state st;
	ssize_t n;
	tmp_store(store, sizeof store);
	CHECK_EQ(new_vault(store, NULL, &kr), 0);
	memset(&st, 0, sizeof st);
	st.nfrozen = 1;
	st.frozen[0] = 1000;
	st.locked = 1;
	CHECK_EQ(kr_watch_save(store, kr, &st), 0);
	store_file(path, sizeof path, store, KR_WATCH_NAME);
	n = slurp(path, buf, sizeof buf);
	CHECK(n > 0);
	for (ssize_t i = 0; i < n; i++) {
		buf[i] ^= 0x01;
		CHECK_EQ(spit(path, buf, (size_t)n), 0);
		int rc = kr_watch_load(store, kr, &st);
		CHECK(rc == -EUCLEAN || rc == -EOPNOTSUPP);
		CHECK_EQ(st.nfrozen, 0);
		buf[i] ^= 0x01;
	}
	CHECK_EQ(spit(path, buf, (size_t)n - 4), 0);
	CHECK_EQ(kr_watch_load(store, kr, &st), -EUCLEAN);
	CHECK_EQ(spit(path, buf, (size_t)n), 0);
	CHECK_EQ(kr_watch_load(store, kr, &st), 0);
	CHECK(unlink(path) == 0);
	CHECK_EQ(kr_watch_load(store, kr, &st), -ENOENT);
	kr_keyring_free(kr);
}

TEST(watch_state_of_another_vault_is_refused)
{
	char a[256], b[256], pa[300], pb[300];
	unsigned char buf[KR_WATCH_MAX_BYTES];
	struct kr_keyring *ka = NULL;
	struct kr_watch_state st;
	ssize_t n;
	tmp_store(a, sizeof a);
	tmp_store(b, sizeof b);
	CHECK_EQ(new_vault(a, NULL, &ka), 0);
	CHECK_EQ(new_vault(b, NULL, NULL), 0);
	store_file(pa, sizeof pa, a, KR_WATCH_NAME);
	store_file(pb, sizeof pb, b, KR_WATCH_NAME);
	n = slurp(pb, buf, sizeof buf);
	CHECK(n > 0);
	CHECK_EQ(spit(pa, buf, (size_t)n), 0);
	CHECK_EQ(kr_watch_load(a, ka, &st), -EUCLEAN);
	kr_keyring_free(ka);
}

int main(void)
{
	setenv("SR_KDF", "test", 1);
	if (sodium_init() < 0)
		return 1;
	RUN(create_then_unlock_by_passphrase_holds_every_level_and_the_audit_key);
	RUN(unlock_with_wrong_passphrase_is_rejected);
	RUN(unlock_with_recovery_key_holds_every_level);
	RUN(recovery_key_of_another_vault_is_rejected);
	RUN(passphrase_does_not_open_recovery_slot_and_recovery_text_does_not_open_passphrase_slot);
	RUN(create_makes_the_store_layout);
	RUN(create_refuses_a_non_empty_store_and_leaves_it_alone);
	RUN(create_refuses_an_existing_vault);
	RUN(unlock_of_a_missing_store_is_enoent);
	RUN(keyslot_with_ceiling_holds_only_its_levels);
	RUN(slot_added_by_admin_at_the_top_is_admin);
	RUN(keyslot_list_shows_kind_ceiling_and_admin_without_a_secret);
	RUN(removing_the_last_slot_that_opens_every_level_is_refused);
	RUN(removed_slot_no_longer_unlocks);
	RUN(non_admin_slot_cannot_remove_another_slot);
	RUN(keyslot_add_never_overwrites_a_slot_file_and_leaves_no_temp_files);
	RUN(keyring_of_another_vault_cannot_add_or_remove_slots);
	RUN(every_changed_byte_of_the_config_is_refused);
	RUN(truncated_or_extended_config_is_refused);
	RUN(config_of_another_vault_is_refused);
	RUN(foreign_file_as_config_is_refused);
	RUN(symlinked_config_is_refused);
	RUN(unknown_version_or_required_feature_is_unsupported);
	RUN(every_changed_byte_of_a_keyslot_is_refused);
	RUN(truncated_keyslot_is_refused_as_corrupt);
	RUN(keyslot_of_another_vault_is_refused);
	RUN(keyslot_argon2_cost_is_bounded);
	RUN(levels_and_chunk_size_are_validated);
	RUN(vault_with_custom_levels_unlocks_with_them);
	RUN(subkeys_differ_by_level_and_purpose);
	RUN(subkey_vectors_match_the_spec);
	RUN(config_vector_matches_the_spec);
	RUN(keyslot_vector_matches_the_spec);
	RUN(recovery_wrap_vector_matches_the_spec);
	RUN(keyfile_slot_vector_matches_the_spec);
	RUN(keyfile_slot_opens_only_with_both_the_passphrase_and_the_key_file);
	RUN(keyslot_add_with_key_file_makes_a_slot_that_needs_it_and_plain_slots_ignore_one);
	RUN(key_file_outside_its_length_bounds_or_with_a_recovery_key_is_refused);
	RUN(keyfile_flag_on_a_recovery_slot_or_an_unknown_flag_is_refused_as_corrupt);
	RUN(flipping_the_keyfile_flag_of_a_slot_makes_it_open_with_nothing);
	RUN(watch_state_vector_matches_the_spec);
	RUN(create_writes_an_empty_watch_state_and_saves_load_back);
	RUN(every_changed_byte_of_the_watch_state_and_its_deletion_are_detected);
	RUN(watch_state_of_another_vault_is_refused);
	return tap_done();
}
