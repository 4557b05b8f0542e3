/* vault_rotate.c - re-encrypt one level's objects under its next key
 * (admin.h "rotate"; docs/format.md section 4.4).
 *
 * The walk visits every store directory, also those whose metadata this
 * keyring cannot open (a file of the rotated level may sit in a folder of a
 * higher one: its content needs no name to be rotated). Per store entry,
 * one step: its name first (renamed when it is encrypted under the level),
 * then the object (a directory is pushed, its metadata re-encrypted; a file
 * of the level rewritten).
 *
 * Invariants: those of admin.h (rotate 1-4). Besides, the two bare vaults
 * (old, new) hold only a keyring: the vault helpers used here read nothing
 * else (as in vault_fsck.c).
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
#include "strongroom/store.h"
#include "vault_internal.h"

#define ROT_TREE	 "tree"
#define ROT_LONGNAME_LEN (FMT_LONGNAME_BYTES - 1)
#define ROT_SIDECAR_LEN	 (ROT_LONGNAME_LEN + sizeof(FMT_LONGNAME_SIDECAR_SUFFIX) - 1)

struct rot_frame {
	DIR *dp;
	int fd;
	bool meta_ok;	    /* d is authentic (under either key) */
	struct vault_dir d; /* dir_id and level for names */
	char *spath;
};

struct vault_rotate {
	struct vault vold, vnew; /* bare: keyrings only */
	const struct kr_keyring *kold, *knew;
	unsigned level;
	int store_fd;
	struct rot_frame *stack;
	size_t depth, cap;
	struct vault_rotate_stats stats;
	uint8_t *buf;
	size_t bufcap;
	char where[PATH_MAX];
};

/* ---- the state file ---- */

int vault_rotate_state_write(const char *store, unsigned level, uint32_t gen)
{
	char line[64];
	int fd, r, n = snprintf(line, sizeof(line), "level=%u gen=%u\n", level, gen);

	fd = store_openat(AT_FDCWD, store, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return fd;
	r = store_write_atomic(fd, ADMIN_ROTATE_STATE, line, (size_t)n);
	store_close(fd);
	return r;
}

int vault_rotate_state_read(const char *store, unsigned *level, uint32_t *gen)
{
	char line[64];
	ssize_t n;
	int fd = store_openat(AT_FDCWD, store, O_RDONLY | O_DIRECTORY, 0);

	if (fd < 0)
		return fd;
	n = store_read_small(fd, ADMIN_ROTATE_STATE, line, sizeof(line) - 1);
	store_close(fd);
	if (n < 0)
		return n == -EFBIG ? -EUCLEAN : (int)n;
	line[n] = '\0';
	if (sscanf(line, "level=%u gen=%u", level, gen) != 2 || *level >= KR_MAX_LEVELS)
		return -EUCLEAN;
	return 0;
}

int vault_rotate_state_remove(const char *store)
{
	int r, fd = store_openat(AT_FDCWD, store, O_RDONLY | O_DIRECTORY, 0);

	if (fd < 0)
		return fd;
	r = store_unlinkat(fd, ADMIN_ROTATE_STATE, 0);
	if (r == 0 || r == -ENOENT)
		r = store_fsync(fd, false);
	store_close(fd);
	return r;
}

/* ---- the walk ---- */

static char *rot_join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = malloc(la + lb + 2);

	if (!s)
		return NULL;
	memcpy(s, a, la);
	s[la] = '/';
	memcpy(s + la + 1, b, lb + 1);
	return s;
}

static void rot_frame_free(struct rot_frame *fr)
{
	if (fr->dp)
		closedir(fr->dp);
	else if (fr->fd >= 0)
		store_close(fr->fd);
	free(fr->d.xattrs);
	free(fr->spath);
	memset(fr, 0, sizeof(*fr));
	fr->fd = -1;
}

static void rot_where(struct vault_rotate *rt, const char *spath)
{
	snprintf(rt->where, sizeof(rt->where), "%s", spath);
}

/* Push dirfd/name; re-encrypt its metadata if it is of the level. */
static int rot_push(struct vault_rotate *rt, int dirfd, const char *name, const char *spath)
{
	struct rot_frame *fr;
	int fd, r;

	if (rt->depth == rt->cap) {
		size_t ncap = rt->cap ? rt->cap * 2 : 16;
		fr = realloc(rt->stack, ncap * sizeof(*fr));
		if (!fr)
			return -ENOMEM;
		rt->stack = fr;
		rt->cap = ncap;
	}
	fd = store_openat(dirfd, name, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return fd;
	fr = &rt->stack[rt->depth];
	memset(fr, 0, sizeof(*fr));
	fr->fd = fd;
	fr->spath = strdup(spath);
	if (!fr->spath) {
		store_close(fd);
		return -ENOMEM;
	}
	fr->dp = fdopendir(fd);
	if (!fr->dp) {
		r = -errno;
		rot_frame_free(fr);
		return r;
	}
	rt->depth++;
	r = vault_dirmeta_load(&rt->vold, fd, &fr->d);
	if (r == 0 && fr->d.level == rt->level) {
		rot_where(rt, spath);
		r = vault_dirmeta_store(&rt->vnew, fd, &fr->d);
		if (r < 0)
			return r;
		rt->stats.dirs++;
		fr->meta_ok = true;
		return 0;
	}
	if (r == 0) {
		fr->meta_ok = true;
		rt->stats.skipped++;
		return 0;
	}
	if (r == -EBADMSG) {
		free(fr->d.xattrs);
		memset(&fr->d, 0, sizeof(fr->d));
		r = vault_dirmeta_load(&rt->vnew, fd, &fr->d);
		if (r == 0) {
			fr->meta_ok = true;
			rt->stats.done++;
			return 0;
		}
	}
	if (r == -ENOKEY || r == -ENOENT) {
		rt->stats.skipped++; /* a folder above this secret; walk on for files */
		return 0;
	}
	rot_where(rt, spath);
	return r;
}

/* Rewrite the file dirfd/sname (of the level, open under the old key in f)
 * under the new key; invariant 2. */
static int rot_file_rewrite(struct vault_rotate *rt, int dirfd, const char *sname,
			    struct vf_file *f)
{
	struct vf_file *n = NULL;
	struct vf_attr a;
	struct fmt_file_header h;
	struct stat st;
	struct timespec ts[2];
	uint8_t head[FMT_FILE_HEADER_BYTES];
	char tmp[FMT_NAME_MAX + 1], hex[25];
	unsigned char rnd[12], *val = NULL;
	char *names = NULL;
	uint64_t chunk, pos = 0;
	ssize_t len;
	int r;

	r = vf_getattr(f, &a);
	if (r == 0)
		r = store_fstat(vf_fd(f), &st);
	if (r == 0 && store_pread(vf_fd(f), head, sizeof(head), 0) != (ssize_t)sizeof(head))
		r = -EUCLEAN;
	if (r == 0)
		r = fmt_file_header_peek(head, &h);
	if (r < 0)
		return r;
	chunk = (uint64_t)1 << h.chunk_log2;
	if (rt->bufcap < chunk) {
		uint8_t *b = realloc(rt->buf, chunk);
		if (!b)
			return -ENOMEM;
		rt->buf = b;
		rt->bufcap = chunk;
	}
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
	snprintf(tmp, sizeof(tmp), "%s%s", ADMIN_ROTATE_TMP_PREFIX, hex);
	r = vf_create(rt->knew, dirfd, tmp, a.level, a.mode, a.uid, a.gid, &n);
	if (r < 0)
		return r;
	len = vf_listxattr(f, NULL, 0);
	if (len > 0) {
		names = malloc((size_t)len);
		val = malloc(VAULT_XATTR_VALUE_MAX);
		if (!names || !val) {
			r = -ENOMEM;
			goto out;
		}
		len = vf_listxattr(f, names, (size_t)len);
		for (ssize_t i = 0; len > 0 && i < len; i += (ssize_t)strlen(names + i) + 1) {
			ssize_t vl = vf_getxattr(f, names + i, val, VAULT_XATTR_VALUE_MAX);

			r = vl < 0 ? (int)vl : vf_setxattr(n, names + i, val, (size_t)vl, 0);
			if (r < 0)
				goto out;
		}
	}
	while (pos < a.size) {
		off_t d = vf_lseek(f, (off_t)pos, SEEK_DATA);
		uint64_t start, want;
		ssize_t got;

		if (d < 0)
			break;
		start = ((uint64_t)d >> h.chunk_log2) << h.chunk_log2;
		want = a.size - start < chunk ? a.size - start : chunk;
		got = vf_read(f, rt->buf, (size_t)want, start);
		if (got > 0)
			got = vf_write(n, rt->buf, (size_t)got, start);
		if (got < 0) {
			r = (int)got;
			goto out;
		}
		pos = start + chunk;
	}
	r = vf_truncate(n, a.size);
	if (r == 0)
		r = vf_fsync(n, false);
	if (r == 0) {
		r = vf_close(n);
		n = NULL;
	}
	if (r < 0)
		goto out;
	ts[0] = st.st_atim;
	ts[1] = st.st_mtim;
	(void)store_utimensat(dirfd, tmp, ts);
	r = store_renameat(dirfd, tmp, dirfd, sname, 0);
	if (r == 0)
		r = store_fsync(dirfd, false);
	if (r == 0)
		tmp[0] = '\0';
out:
	if (n)
		vf_close(n);
	if (tmp[0])
		(void)store_unlinkat(dirfd, tmp, 0);
	if (rt->buf)
		sodium_memzero(rt->buf, rt->bufcap);
	free(names);
	if (val)
		sodium_memzero(val, VAULT_XATTR_VALUE_MAX);
	free(val);
	return r;
}

static int rot_file(struct vault_rotate *rt, int dirfd, const char *sname, const char *spath)
{
	struct vf_file *f = NULL;
	struct vf_attr a;
	int r;

	rot_where(rt, spath);
	r = vf_open(rt->kold, dirfd, sname, false, &f);
	if (r == -EBADMSG) {
		/* Already under the new key? (invariant 1) */
		r = vf_open(rt->knew, dirfd, sname, false, &f);
		if (r == 0) {
			vf_close(f);
			rt->stats.done++;
			return 0;
		}
		return -EBADMSG;
	}
	if (r == -ENOKEY) {
		rt->stats.skipped++;
		return 0;
	}
	if (r < 0)
		return r;
	r = vf_getattr(f, &a);
	if (r == 0 && a.level != rt->level) {
		rt->stats.skipped++;
	} else if (r == 0) {
		r = rot_file_rewrite(rt, dirfd, sname, f);
		if (r == 0)
			rt->stats.files++;
	}
	vf_close(f);
	return r;
}

/* The entry's name: renamed under the new key if it is under the level.
 * sname_out receives the (possibly new) store name. */
static int rot_name(struct vault_rotate *rt, struct rot_frame *fr, const char *sname, bool is_long,
		    char sname_out[FMT_NAME_MAX + 1])
{
	char name[FMT_NAME_MAX + 1], side[ROT_SIDECAR_LEN + 1];
	const unsigned char *mac, *key;
	struct vault_sname *sn = NULL;
	char *enc = NULL;
	const char *encp = sname;
	size_t enc_len = strlen(sname);
	unsigned used;
	ssize_t n;
	int r = 0;

	snprintf(sname_out, FMT_NAME_MAX + 1, "%s", sname);
	if (!fr->meta_ok)
		return 0;
	if (is_long) {
		enc = malloc(VAULT_ENC_NAME_MAX);
		if (!enc)
			return -ENOMEM;
		snprintf(side, sizeof(side), "%s%s", sname, FMT_LONGNAME_SIDECAR_SUFFIX);
		n = store_read_small(fr->fd, side, enc, VAULT_ENC_NAME_MAX);
		if (n < 0 || fmt_longname_check(sname, enc, (size_t)n) < 0) {
			r = n < 0 ? (int)n : -EBADMSG;
			goto out;
		}
		encp = enc;
		enc_len = (size_t)n;
	}
	n = vault_policy_name_decrypt(&rt->vold, &fr->d, encp, enc_len, name, &used);
	if (n >= 0 && used != rt->level)
		goto out; /* not under the level: nothing to do */
	if (n < 0) {
		n = vault_policy_name_decrypt(&rt->vnew, &fr->d, encp, enc_len, name, &used);
		if (n >= 0) {
			rt->stats.done++;
			goto out;
		}
		r = n == -ENOKEY ? 0 : (int)n; /* a name above this secret */
		goto out;
	}
	/* Under the level and the old key: encrypt anew and rename. */
	sn = calloc(1, sizeof(*sn));
	if (!sn) {
		r = -ENOMEM;
		goto out;
	}
	mac = kr_level_subkey(rt->knew, rt->level, KR_SUB_NAME_MAC);
	key = kr_level_subkey(rt->knew, rt->level, KR_SUB_NAME_ENC);
	n = fmt_name_encrypt(mac, key, fr->d.dir_id, name, (size_t)n, sn->enc, sizeof(sn->enc));
	if (n < 0) {
		r = (int)n;
		goto out;
	}
	sn->enc_len = (size_t)n;
	if (n > FMT_NAME_MAX) {
		sn->is_long = true;
		fmt_longname(sn->enc, sn->enc_len, sn->name);
		snprintf(sn->sidecar, sizeof(sn->sidecar), "%.45s%s", sn->name,
			 FMT_LONGNAME_SIDECAR_SUFFIX);
	} else {
		memcpy(sn->name, sn->enc, (size_t)n + 1);
	}
	r = vault_sidecar_write(fr->fd, sn);
	if (r == 0)
		r = store_renameat(fr->fd, sname, fr->fd, sn->name, RENAME_NOREPLACE);
	if (r == 0 && is_long)
		(void)store_unlinkat(fr->fd, side, 0);
	if (r == 0)
		r = store_fsync(fr->fd, false);
	if (r == 0) {
		snprintf(sname_out, FMT_NAME_MAX + 1, "%s", sn->name);
		rt->stats.names++;
	}
out:
	sodium_memzero(name, sizeof(name));
	free(enc);
	free(sn);
	return r;
}

/* A sidecar whose entry is gone and whose name is under the level (either
 * key) is what an interrupted rename of this rotation left (invariant 3):
 * the new sidecar written before the rename, or the old one after it. */
static int rot_sidecar_orphan(struct vault_rotate *rt, struct rot_frame *fr, const char *side)
{
	char entry[ROT_LONGNAME_LEN + 1], name[FMT_NAME_MAX + 1];
	struct stat st;
	unsigned used = 0;
	char *enc;
	ssize_t n;

	memcpy(entry, side, ROT_LONGNAME_LEN);
	entry[ROT_LONGNAME_LEN] = '\0';
	if (!fr->meta_ok || store_fstatat(fr->fd, entry, &st) != -ENOENT)
		return 0;
	enc = malloc(VAULT_ENC_NAME_MAX);
	if (!enc)
		return -ENOMEM;
	n = store_read_small(fr->fd, side, enc, VAULT_ENC_NAME_MAX);
	if (n >= 0 && fmt_longname_check(entry, enc, (size_t)n) == 0) {
		ssize_t m =
		    vault_policy_name_decrypt(&rt->vold, &fr->d, enc, (size_t)n, name, &used);

		if (m < 0 || used != rt->level)
			m = vault_policy_name_decrypt(&rt->vnew, &fr->d, enc, (size_t)n, name,
						      &used);
		if (m >= 0 && used == rt->level)
			(void)store_unlinkat(fr->fd, side, 0);
	}
	sodium_memzero(name, sizeof(name));
	free(enc);
	return 0;
}

static int rot_entry(struct vault_rotate *rt, struct rot_frame *fr, const char *sname)
{
	char cur[FMT_NAME_MAX + 1], *spath;
	size_t len = strlen(sname);
	bool is_long = false;
	struct stat st;
	int r;

	if (strcmp(sname, FMT_DIRMETA_NAME) == 0)
		return 0;
	if (strncmp(sname, FMT_TMP_PREFIX, strlen(FMT_TMP_PREFIX)) == 0) {
		/* A copy an interrupted run did not finish (invariant 2), or the
		 * temp file of an atomic replacement (metadata, sidecar) it
		 * interrupted: the original is whole, and no mount runs. */
		if (store_fstatat(fr->fd, sname, &st) == 0 && S_ISREG(st.st_mode))
			(void)store_unlinkat(fr->fd, sname, 0);
		return 0;
	}
	if (sname[0] == '.' && len == ROT_SIDECAR_LEN &&
	    strncmp(sname, FMT_LONGNAME_PREFIX, 2) == 0 &&
	    strcmp(sname + ROT_LONGNAME_LEN, FMT_LONGNAME_SIDECAR_SUFFIX) == 0)
		return rot_sidecar_orphan(rt, fr, sname);
	if (sname[0] == '.') {
		if (strncmp(sname, FMT_LONGNAME_PREFIX, 2) != 0 || len != ROT_LONGNAME_LEN)
			return 0; /* leftovers of other kinds are fsck's */
		is_long = true;
	}
	if (store_fstatat(fr->fd, sname, &st) < 0)
		return 0; /* renamed by this very walk */
	spath = rot_join(fr->spath, sname);
	if (!spath)
		return -ENOMEM;
	rot_where(rt, spath);
	r = rot_name(rt, fr, sname, is_long, cur);
	free(spath);
	if (r < 0)
		return r;
	spath = rot_join(fr->spath, cur);
	if (!spath)
		return -ENOMEM;
	if (S_ISDIR(st.st_mode)) {
		r = rot_push(rt, fr->fd, cur, spath);
	} else if (S_ISREG(st.st_mode)) {
		r = rot_file(rt, fr->fd, cur, spath);
		rt->stats.bytes_done += (uint64_t)st.st_size;
	}
	free(spath);
	return r;
}

static int rot_count(int dirfd, uint64_t *bytes)
{
	struct dirent *de;
	struct stat st;
	DIR *dp;
	int fd = store_openat(dirfd, ".", O_RDONLY | O_DIRECTORY, 0);

	if (fd < 0)
		return fd;
	dp = fdopendir(fd);
	if (!dp) {
		store_close(fd);
		return -errno;
	}
	while ((de = readdir(dp))) {
		if (de->d_name[0] == '.' &&
		    (de->d_name[1] == '\0' || strcmp(de->d_name, "..") == 0))
			continue;
		if (store_fstatat(fd, de->d_name, &st) < 0)
			continue;
		if (S_ISREG(st.st_mode) && de->d_name[0] != '.') {
			*bytes += (uint64_t)st.st_size;
		} else if (S_ISDIR(st.st_mode)) {
			int sub = store_openat(fd, de->d_name, O_RDONLY | O_DIRECTORY, 0);
			if (sub >= 0) {
				rot_count(sub, bytes);
				store_close(sub);
			}
		}
	}
	closedir(dp);
	return 0;
}

int vault_rotate_open(const char *store, const struct kr_keyring *old_kr,
		      const struct kr_keyring *new_kr, unsigned level, struct vault_rotate **out)
{
	struct vault_rotate *rt;
	int r, tree;

	*out = NULL;
	if (!kr_level_held(old_kr, level) || !kr_level_held(new_kr, level))
		return -ENOKEY;
	rt = calloc(1, sizeof(*rt));
	if (!rt)
		return -ENOMEM;
	rt->kold = old_kr;
	rt->knew = new_kr;
	rt->vold.kr = old_kr;
	rt->vnew.kr = new_kr;
	rt->vold.flags = rt->vnew.flags = VAULT_READ_ONLY;
	rt->vold.store_fd = rt->vold.tree_fd = rt->vnew.store_fd = rt->vnew.tree_fd = -1;
	rt->level = level;
	rt->store_fd = store_openat(AT_FDCWD, store, O_RDONLY | O_DIRECTORY, 0);
	if (rt->store_fd < 0) {
		r = rt->store_fd;
		goto out;
	}
	tree = store_openat(rt->store_fd, ROT_TREE, O_RDONLY | O_DIRECTORY, 0);
	if (tree >= 0) {
		rot_count(tree, &rt->stats.bytes_total);
		store_close(tree);
	}
	r = rot_push(rt, rt->store_fd, ROT_TREE, ROT_TREE);
out:
	if (r < 0) {
		vault_rotate_close(rt);
		return r;
	}
	*out = rt;
	return 0;
}

int vault_rotate_step(struct vault_rotate *rt)
{
	struct rot_frame *fr, copy;
	struct dirent *de;
	char sname[FMT_NAME_MAX + 1];
	int r;

	while (rt->depth) {
		fr = &rt->stack[rt->depth - 1];
		errno = 0;
		de = readdir(fr->dp);
		if (!de) {
			int e = errno;

			rot_frame_free(fr);
			rt->depth--;
			if (e)
				return -e;
			return rt->depth ? 1 : 0;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(sname, sizeof(sname), "%s", de->d_name);
		copy = *fr; /* rot_entry may push: the stack can move */
		r = rot_entry(rt, &copy, sname);
		return r < 0 ? r : 1;
	}
	return 0;
}

const struct vault_rotate_stats *vault_rotate_stats(const struct vault_rotate *rt)
{
	return &rt->stats;
}

const char *vault_rotate_where(const struct vault_rotate *rt)
{
	return rt->where;
}

void vault_rotate_close(struct vault_rotate *rt)
{
	if (!rt)
		return;
	while (rt->depth)
		rot_frame_free(&rt->stack[--rt->depth]);
	free(rt->stack);
	if (rt->store_fd >= 0)
		store_close(rt->store_fd);
	if (rt->buf)
		sodium_memzero(rt->buf, rt->bufcap);
	free(rt->buf);
	free(rt);
}
