/* test_format_dirmeta.c - directory metadata and attribute blobs
 * (docs/format.md section 7). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <sodium.h>

#include "strongroom/format.h"
#include "tap.h"

/* docs/format.md 7.3: hint key 00..1f, META key 20..3f, dir_id 40..4f, level 1,
 * nonce 60..77, mode 040750, uid 1000, gid 1001, no attributes. */
#define VECTOR_DIRMETA                                                                     \
	"5352443101000000404142434445464748494a4b4c4d4e4f48eae1d018c3b901606162636465666768" \
	"696a6b6c6d6e6f7071727374757677006640266d729bc14302950f12a12f99ed122617ee1f7d09718d" \
	"e4c49cf3bfce"

static unsigned char hint_key[32], meta_key[32], other_key[32];

static void keys_init(void)
{
	for (int i = 0; i < 32; i++) {
		hint_key[i] = (unsigned char)i;
		meta_key[i] = (unsigned char)(0x20 + i);
		other_key[i] = (unsigned char)(0x80 + i);
	}
}

static unsigned char *acl_blob(size_t *len)
{
	unsigned char *blob = NULL;
	const unsigned char acl[] = {2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff};
	*len = 0;
	if (fmt_xattr_set(&blob, len, "system.posix_acl_access", acl, sizeof acl, 0) ||
	    fmt_xattr_set(&blob, len, "system.posix_acl_default", acl, sizeof acl, 0) ||
	    fmt_xattr_set(&blob, len, "user.comment", "hello", 5, 0)) {
		free(blob);
		return NULL;
	}
	return blob;
}

TEST(dirmeta_vector_decodes_to_spec_values)
{
	unsigned char buf[88];
	size_t n;
	struct fmt_dirmeta m;
	uint8_t id[16], hint[8], want[8];
	CHECK(sodium_hex2bin(buf, sizeof buf, VECTOR_DIRMETA, strlen(VECTOR_DIRMETA), NULL, &n, NULL) == 0);
	CHECK_EQ(n, 88);
	CHECK_EQ(fmt_dirmeta_peek(buf, n, id, hint), 0);
	CHECK_EQ(id[0], 0x40);
	fmt_level_hint(hint_key, id, 1, want);
	CHECK(memcmp(hint, want, 8) == 0);
	CHECK_EQ(fmt_dirmeta_decode(buf, n, 1, meta_key, &m), 0);
	CHECK_EQ(m.mode, 040750);
	CHECK_EQ(m.uid, 1000);
	CHECK_EQ(m.gid, 1001);
	CHECK_EQ(m.xattrs_len, 0);
	CHECK(m.xattrs == NULL);
}

TEST(dirmeta_roundtrips_mode_owner_and_acls)
{
	struct fmt_dirmeta m = {.level = 2, .mode = S_IFDIR | 0770, .uid = 10, .gid = 20}, d;
	unsigned char buf[1024];
	char val[64];
	uint8_t id[16], hint[8], want[8];
	ssize_t n;
	randombytes_buf(m.dir_id, sizeof m.dir_id);
	m.xattrs = acl_blob(&m.xattrs_len);
	CHECK(m.xattrs != NULL);
	n = fmt_dirmeta_encode(&m, hint_key, meta_key, buf, sizeof buf);
	CHECK_EQ(n, (ssize_t)fmt_dirmeta_bound(m.xattrs_len));
	CHECK_EQ(fmt_dirmeta_peek(buf, (size_t)n, id, hint), 0);
	fmt_level_hint(hint_key, m.dir_id, 2, want);
	CHECK(memcmp(hint, want, 8) == 0);
	CHECK(memcmp(id, m.dir_id, 16) == 0);
	CHECK_EQ(fmt_dirmeta_decode(buf, (size_t)n, 2, meta_key, &d), 0);
	CHECK_EQ(d.mode, S_IFDIR | 0770);
	CHECK_EQ(d.uid, 10);
	CHECK_EQ(d.gid, 20);
	CHECK_EQ(d.level, 2);
	CHECK_EQ(d.xattrs_len, m.xattrs_len);
	CHECK(memcmp(d.xattrs, m.xattrs, m.xattrs_len) == 0);
	CHECK_EQ(fmt_xattr_get(d.xattrs, d.xattrs_len, "user.comment", val, sizeof val), 5);
	free(d.xattrs);
	free(m.xattrs);
}

TEST(dirmeta_rejects_every_flipped_byte_after_the_magic)
{
	struct fmt_dirmeta m = {.level = 0, .mode = S_IFDIR | 0700}, d;
	unsigned char buf[512];
	ssize_t n;
	randombytes_buf(m.dir_id, sizeof m.dir_id);
	m.xattrs = acl_blob(&m.xattrs_len);
	n = fmt_dirmeta_encode(&m, hint_key, meta_key, buf, sizeof buf);
	free(m.xattrs);
	CHECK(n > 0);
	for (ssize_t i = 0; i < n; i++) {
		buf[i] ^= 0x01;
		int rc = fmt_dirmeta_decode(buf, (size_t)n, 0, meta_key, &d);
		buf[i] ^= 0x01;
		if (i < 4)
			CHECK_EQ(rc, -EUCLEAN);
		else
			CHECK_EQ(rc, -EBADMSG);
	}
	CHECK_EQ(fmt_dirmeta_decode(buf, (size_t)n - 1, 0, meta_key, &d), -EBADMSG);
	CHECK_EQ(fmt_dirmeta_decode(buf, 20, 0, meta_key, &d), -EUCLEAN);
}

TEST(dirmeta_does_not_open_with_another_levels_key)
{
	struct fmt_dirmeta m = {.level = 3, .mode = S_IFDIR | 0700}, d;
	unsigned char buf[256];
	ssize_t n;
	randombytes_buf(m.dir_id, sizeof m.dir_id);
	n = fmt_dirmeta_encode(&m, hint_key, meta_key, buf, sizeof buf);
	CHECK(n > 0);
	CHECK_EQ(fmt_dirmeta_decode(buf, (size_t)n, 3, other_key, &d), -EBADMSG);
}

TEST(xattr_set_get_list_remove_follow_xattr_semantics)
{
	unsigned char *blob = NULL;
	size_t len = 0;
	char out[128];
	CHECK_EQ(fmt_xattr_get(blob, len, "user.a", out, sizeof out), -ENODATA);
	CHECK_EQ(fmt_xattr_set(&blob, &len, "user.a", "1", 1, XATTR_REPLACE), -ENODATA);
	CHECK_EQ(fmt_xattr_set(&blob, &len, "user.a", "1", 1, XATTR_CREATE), 0);
	CHECK_EQ(fmt_xattr_set(&blob, &len, "user.a", "2", 1, XATTR_CREATE), -EEXIST);
	CHECK_EQ(fmt_xattr_set(&blob, &len, "user.b", "", 0, 0), 0);
	CHECK_EQ(fmt_xattr_set(&blob, &len, "user.a", "three", 5, XATTR_REPLACE), 0);
	CHECK_EQ(fmt_xattr_check(blob, len), 0);
	CHECK_EQ(fmt_xattr_get(blob, len, "user.a", NULL, 0), 5);
	CHECK_EQ(fmt_xattr_get(blob, len, "user.a", out, 2), -ERANGE);
	CHECK_EQ(fmt_xattr_get(blob, len, "user.a", out, sizeof out), 5);
	CHECK(memcmp(out, "three", 5) == 0);
	CHECK_EQ(fmt_xattr_get(blob, len, "user.b", out, sizeof out), 0);
	CHECK_EQ(fmt_xattr_list(blob, len, NULL, 0), 14);
	CHECK_EQ(fmt_xattr_list(blob, len, out, sizeof out), 14);
	CHECK(memcmp(out, "user.b\0user.a\0", 14) == 0);
	CHECK_EQ(fmt_xattr_list(blob, len, out, 3), -ERANGE);
	CHECK_EQ(fmt_xattr_remove(&blob, &len, "user.a"), 0);
	CHECK_EQ(fmt_xattr_remove(&blob, &len, "user.a"), -ENODATA);
	CHECK_EQ(fmt_xattr_remove(&blob, &len, "user.b"), 0);
	CHECK_EQ(len, 0);
	free(blob);
}

TEST(xattr_check_rejects_truncated_and_overlong_blobs)
{
	unsigned char *blob = NULL;
	size_t len = 0;
	CHECK_EQ(fmt_xattr_set(&blob, &len, "user.x", "value", 5, 0), 0);
	CHECK_EQ(fmt_xattr_check(blob, len - 1), -EUCLEAN);
	CHECK_EQ(fmt_xattr_check(blob, 3), -EUCLEAN);
	blob[0] = 2;
	CHECK_EQ(fmt_xattr_check(blob, len), -EUCLEAN);
	blob[0] = 1;
	blob[5] = 0xff; /* value_len */
	CHECK_EQ(fmt_xattr_check(blob, len), -EUCLEAN);
	free(blob);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	keys_init();
	RUN(dirmeta_vector_decodes_to_spec_values);
	RUN(dirmeta_roundtrips_mode_owner_and_acls);
	RUN(dirmeta_rejects_every_flipped_byte_after_the_magic);
	RUN(dirmeta_does_not_open_with_another_levels_key);
	RUN(xattr_set_get_list_remove_follow_xattr_semantics);
	RUN(xattr_check_rejects_truncated_and_overlong_blobs);
	return tap_done();
}
