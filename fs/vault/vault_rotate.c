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
 * A file of several store names (hard links) is not rewritten by the walk:
 * rewriting it under one name would split it. Once the walk is done and
 * every name is final, a second pass collects the names of such files by
 * the file_id in their headers (plain, so no key is needed to group them)
 * and rotates one file per step: one copy, then each name given the copy
 * by a hard link renamed over it (admin.h invariant 5).
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

/* One store name of a file that has several (or of the pending group). */
struct rot_link {
	uint8_t file_id[FMT_ID_BYTES];
	dev_t dev;
	ino_t ino;
	char *dpath; /* its directory, relative to STORE */
	char *name;  /* its store name there */
};

struct vault_rotate {
	struct vault vold, vnew; /* bare: keyrings only */
	const struct kr_keyring *kold, *knew;
	unsigned level;
	int store_fd;
	struct rot_frame *stack;
	size_t depth, cap;
	struct vault_rotate_stats stats;
	char where[PATH_MAX];
	/* Files of several names (invariant 5): deferred by the walk, then
	 * collected (rot_links_collect) and rotated a group at a time. */
	bool has_state, pending;
	unsigned state_level;
	uint32_t state_gen;
	uint8_t pending_id[FMT_ID_BYTES];
	uint64_t deferred;
	bool collected;
	struct rot_link *links;
	size_t nlinks, linkcap, linkpos;
	/* The store file the last step replaced (vault_rotate_moved). */
	bool moved;
	dev_t moved_dev;
	ino_t moved_ino;
	char moved_path[PATH_MAX];
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

/* The state file with the pending group's file_id (invariant 5), or
 * without when id is NULL. */
static int rot_state_pending(struct vault_rotate *rt, const uint8_t *id)
{
	char line[128], hex[2 * FMT_ID_BYTES + 1];
	int n;

	if (!rt->has_state)
		return 0;
	if (id) {
		sodium_bin2hex(hex, sizeof(hex), id, FMT_ID_BYTES);
		n = snprintf(line, sizeof(line), "level=%u gen=%u link=%s\n", rt->state_level,
			     rt->state_gen, hex);
	} else {
		n = snprintf(line, sizeof(line), "level=%u gen=%u\n", rt->state_level,
			     rt->state_gen);
	}
	return store_write_atomic(rt->store_fd, ADMIN_ROTATE_STATE, line, (size_t)n);
}

/* Read the state file into rt, with its pending group if any. */
static int rot_state_load(struct vault_rotate *rt)
{
	char line[128], *l;
	ssize_t n = store_read_small(rt->store_fd, ADMIN_ROTATE_STATE, line, sizeof(line) - 1);

	if (n == -ENOENT)
		return 0;
	if (n < 0)
		return n == -EFBIG ? -EUCLEAN : (int)n;
	line[n] = '\0';
	if (sscanf(line, "level=%u gen=%u", &rt->state_level, &rt->state_gen) != 2)
		return -EUCLEAN;
	rt->has_state = true;
	l = strstr(line, " link=");
	if (l) {
		if (sodium_hex2bin(rt->pending_id, FMT_ID_BYTES, l + 6, 2 * FMT_ID_BYTES, NULL,
				   NULL, NULL) != 0)
			return -EUCLEAN;
		rt->pending = true;
	}
	return 0;
}

int vault_rotate_state_read(const char *store, unsigned *level, uint32_t *gen)
{
	char line[128]; /* "level=N gen=G" and a pending " link=<32 hex>" */
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

void vault_rotate_tmpname(char tmp[FMT_NAME_MAX + 1])
{
	unsigned char rnd[12];
	char hex[25];

	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
	snprintf(tmp, FMT_NAME_MAX + 1, "%s%s", ADMIN_ROTATE_TMP_PREFIX, hex);
}

/* Copy the file f (of the level, open under the old key) into dirfd/tmp
 * under the new key: same file_id (so the same st_ino through a mount),
 * content, mode, owner, xattrs; the store times of st. */
static int rot_file_copy(struct vault_rotate *rt, int dirfd, struct vf_file *f,
			 const struct stat *st, char tmp[FMT_NAME_MAX + 1])
{
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	int r;

	vault_rotate_tmpname(tmp);
	r = vf_copy_to_keyring(f, rt->knew, dirfd, tmp, false);
	if (r == 0)
		(void)store_utimensat(dirfd, tmp, ts);
	return r;
}

/* Rewrite the file dirfd/sname (one name; of the level, open under the old
 * key in f) under the new key; invariant 2. */
static int rot_file_rewrite(struct vault_rotate *rt, int dirfd, const char *sname,
			    struct vf_file *f)
{
	char tmp[FMT_NAME_MAX + 1];
	struct stat st;
	int r;

	r = store_fstat(vf_fd(f), &st);
	if (r == 0)
		r = rot_file_copy(rt, dirfd, f, &st, tmp);
	if (r < 0)
		return r;
	r = store_renameat(dirfd, tmp, dirfd, sname, 0);
	if (r == 0)
		r = store_fsync(dirfd, false);
	else
		(void)store_unlinkat(dirfd, tmp, 0);
	return r;
}

/* Remember that the store file (dev, ino) is now the new-key file at
 * STORE/spath. */
static void rot_moved(struct vault_rotate *rt, dev_t dev, ino_t ino, const char *dpath,
		      const char *name)
{
	rt->moved = snprintf(rt->moved_path, sizeof(rt->moved_path), "%s/%s", dpath, name) <
		    (int)sizeof(rt->moved_path);
	rt->moved_dev = dev;
	rt->moved_ino = ino;
}

static int rot_file(struct vault_rotate *rt, struct rot_frame *fr, const char *sname,
		    const char *spath, nlink_t nlink)
{
	struct vf_file *f = NULL;
	struct vf_attr a;
	struct stat ost;
	int dirfd = fr->fd, r;

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
	} else if (r == 0 && (nlink > 1 || (rt->pending && sodium_memcmp(a.file_id, rt->pending_id,
									 FMT_ID_BYTES) == 0))) {
		rt->deferred++; /* one file of several names: rot_links, after the walk */
	} else if (r == 0) {
		r = store_fstat(vf_fd(f), &ost);
		if (r == 0)
			r = rot_file_rewrite(rt, dirfd, sname, f);
		if (r == 0) {
			rt->stats.files++;
			rot_moved(rt, ost.st_dev, ost.st_ino, fr->spath, sname);
		}
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
		r = rot_file(rt, fr, cur, spath, st.st_nlink);
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

/* ---- files of several names (invariant 5) ---- */

static bool rot_is_entry(const char *sname)
{
	if (sname[0] != '.')
		return true;
	return strlen(sname) == ROT_LONGNAME_LEN && strncmp(sname, FMT_LONGNAME_PREFIX, 2) == 0;
}

static int rot_link_add(struct vault_rotate *rt, const uint8_t id[FMT_ID_BYTES],
			const struct stat *st, const char *dpath, const char *name)
{
	struct rot_link *lk;

	if (rt->nlinks == rt->linkcap) {
		size_t ncap = rt->linkcap ? rt->linkcap * 2 : 16;
		lk = realloc(rt->links, ncap * sizeof(*lk));
		if (!lk)
			return -ENOMEM;
		rt->links = lk;
		rt->linkcap = ncap;
	}
	lk = &rt->links[rt->nlinks];
	memcpy(lk->file_id, id, FMT_ID_BYTES);
	lk->dev = st->st_dev;
	lk->ino = st->st_ino;
	lk->dpath = strdup(dpath);
	lk->name = strdup(name);
	if (!lk->dpath || !lk->name) {
		free(lk->dpath);
		free(lk->name);
		return -ENOMEM;
	}
	rt->nlinks++;
	return 0;
}

/* Every store name, below dirfd (STORE/dpath), of a file with several
 * names, and of the pending group's file whatever its link count. */
static int rot_links_collect(struct vault_rotate *rt, int dirfd, const char *dpath)
{
	uint8_t head[FMT_FILE_HEADER_BYTES];
	struct fmt_file_header h;
	struct dirent *de;
	struct stat st;
	DIR *dp;
	int r = 0, fd = store_openat(dirfd, ".", O_RDONLY | O_DIRECTORY, 0);

	if (fd < 0)
		return fd;
	dp = fdopendir(fd);
	if (!dp) {
		store_close(fd);
		return -errno;
	}
	while (r == 0 && (de = readdir(dp))) {
		if (!rot_is_entry(de->d_name) || store_fstatat(fd, de->d_name, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			char *sub = rot_join(dpath, de->d_name);
			int sfd = store_openat(fd, de->d_name, O_RDONLY | O_DIRECTORY, 0);

			if (!sub)
				r = -ENOMEM;
			else if (sfd >= 0)
				r = rot_links_collect(rt, sfd, sub);
			if (sfd >= 0)
				store_close(sfd);
			free(sub);
		} else if (S_ISREG(st.st_mode) && (st.st_nlink > 1 || rt->pending)) {
			int ffd = store_openat(fd, de->d_name, O_RDONLY, 0);
			bool ok =
			    ffd >= 0 &&
			    store_pread(ffd, head, sizeof(head), 0) == (ssize_t)sizeof(head) &&
			    fmt_file_header_peek(head, &h) == 0;

			if (ffd >= 0)
				store_close(ffd);
			if (ok && (st.st_nlink > 1 ||
				   sodium_memcmp(h.file_id, rt->pending_id, FMT_ID_BYTES) == 0))
				r = rot_link_add(rt, h.file_id, &st, dpath, de->d_name);
		}
	}
	closedir(dp);
	return r;
}

static int rot_link_cmp(const void *pa, const void *pb)
{
	const struct rot_link *a = pa, *b = pb;
	int c = memcmp(a->file_id, b->file_id, FMT_ID_BYTES);

	if (c)
		return c;
	if (a->dev != b->dev)
		return a->dev < b->dev ? -1 : 1;
	if (a->ino != b->ino)
		return a->ino < b->ino ? -1 : 1;
	return strcmp(a->dpath, b->dpath);
}

enum rot_kind { ROT_OLD, ROT_NEW, ROT_OTHER };

/* Which key the file named by lk is under; *f (when non-NULL) receives it
 * open under the old key if it is ROT_OLD. */
static int rot_link_kind(struct vault_rotate *rt, const struct rot_link *lk, struct vf_file **fout)
{
	struct vf_file *f = NULL;
	struct vf_attr a;
	int r, dfd = store_openat(rt->store_fd, lk->dpath, O_RDONLY | O_DIRECTORY, 0);

	if (fout)
		*fout = NULL;
	if (dfd < 0)
		return dfd;
	r = vf_open(rt->kold, dfd, lk->name, false, &f);
	if (r == 0) {
		r = vf_getattr(f, &a);
		if (r == 0)
			r = a.level == rt->level ? ROT_OLD : ROT_OTHER;
		if (r == ROT_OLD && fout) {
			*fout = f;
			f = NULL;
		}
	} else if (r == -EBADMSG) {
		r = vf_open(rt->knew, dfd, lk->name, false, &f);
		r = r == 0 ? ROT_NEW : -EBADMSG;
	} else if (r == -ENOKEY) {
		r = ROT_OTHER;
	}
	vf_close(f);
	store_close(dfd);
	return r;
}

/* Give the name lk the file tdfd/tname (a hard link renamed over it). */
static int rot_link_switch(struct vault_rotate *rt, const struct rot_link *lk, int tdfd,
			   const char *tname)
{
	char tmp[FMT_NAME_MAX + 1];
	struct stat st;
	int r, dfd = store_openat(rt->store_fd, lk->dpath, O_RDONLY | O_DIRECTORY, 0);

	if (dfd < 0)
		return dfd;
	r = store_fstatat(dfd, lk->name, &st);
	if (r == 0 && (st.st_dev != lk->dev || st.st_ino != lk->ino))
		r = -ESTALE;
	vault_rotate_tmpname(tmp);
	if (r == 0)
		r = store_linkat(tdfd, tname, dfd, tmp);
	if (r == 0) {
		r = store_renameat(dfd, tmp, dfd, lk->name, 0);
		if (r < 0)
			(void)store_unlinkat(dfd, tmp, 0);
	}
	if (r == 0)
		r = store_fsync(dfd, false);
	store_close(dfd);
	return r;
}

/* The names links[a..b) of one old-key file: rewrite it once (or, for the
 * group a killed run was switching, take the new-key file it made: tgt)
 * and give every name the new file. */
static int rot_links_switch_file(struct vault_rotate *rt, size_t a, size_t b,
				 const struct rot_link *tgt)
{
	const struct rot_link *lk = &rt->links[a];
	char tmp[FMT_NAME_MAX + 1] = "";
	const char *tname;
	struct vf_file *f = NULL;
	struct stat st;
	int r, tdfd;

	rot_where(rt, lk->dpath);
	r = rot_state_pending(rt, lk->file_id);
	if (r < 0)
		return r;
	if (tgt) {
		tdfd = store_openat(rt->store_fd, tgt->dpath, O_RDONLY | O_DIRECTORY, 0);
		tname = tgt->name;
		if (tdfd < 0)
			return tdfd;
	} else {
		tdfd = store_openat(rt->store_fd, lk->dpath, O_RDONLY | O_DIRECTORY, 0);
		if (tdfd < 0)
			return tdfd;
		r = rot_link_kind(rt, lk, &f);
		if (r >= 0 && !f)
			r = -ESTALE; /* changed under an offline rotation */
		if (r >= 0)
			r = store_fstat(vf_fd(f), &st);
		if (r >= 0)
			r = rot_file_copy(rt, tdfd, f, &st, tmp);
		vf_close(f);
		if (r < 0) {
			tmp[0] = '\0';
			goto out;
		}
		tname = tmp;
	}
	for (size_t k = a; k < b; k++) {
		rot_where(rt, rt->links[k].dpath);
		r = rot_link_switch(rt, &rt->links[k], tdfd, tname);
		if (r < 0)
			goto out;
	}
	rt->stats.files++;
	rt->stats.linked += b - a;
	rot_moved(rt, lk->dev, lk->ino, lk->dpath, lk->name);
out:
	if (tmp[0]) {
		(void)store_unlinkat(tdfd, tmp, 0);
		(void)store_fsync(tdfd, false);
	}
	store_close(tdfd);
	if (r == 0) {
		r = rot_state_pending(rt, NULL);
		rt->pending = false;
	}
	return r;
}

/* One group: every name in the tree of one file_id, links[i..j). */
static int rot_links_group(struct vault_rotate *rt, size_t i, size_t j)
{
	bool is_pending =
	    rt->pending && sodium_memcmp(rt->links[i].file_id, rt->pending_id, FMT_ID_BYTES) == 0;
	size_t a, b, nold = 0, nnew = 0;
	const struct rot_link *tgt = NULL;
	int r = 0;

	/* A run of equal (dev, ino) is one store file. */
	for (a = i; a < j; a = b) {
		for (b = a + 1; b < j && rt->links[b].dev == rt->links[a].dev &&
				rt->links[b].ino == rt->links[a].ino;
		     b++)
			;
		r = rot_link_kind(rt, &rt->links[a], NULL);
		if (r < 0) {
			rot_where(rt, rt->links[a].dpath);
			return r;
		}
		if (r == ROT_NEW) {
			nnew++;
			tgt = &rt->links[a];
			rt->stats.done += b - a;
		} else if (r == ROT_OLD) {
			nold++;
		} else {
			rt->stats.skipped += b - a;
		}
	}
	if (!(is_pending && nold == 1 && nnew == 1))
		tgt = NULL; /* two files that share an id (a copy) stay two */
	for (a = i; a < j; a = b) {
		for (b = a + 1; b < j && rt->links[b].dev == rt->links[a].dev &&
				rt->links[b].ino == rt->links[a].ino;
		     b++)
			;
		if (rot_link_kind(rt, &rt->links[a], NULL) != ROT_OLD)
			continue;
		r = rot_links_switch_file(rt, a, b, tgt);
		if (r < 0)
			return r;
	}
	if (is_pending && rt->pending) {
		r = rot_state_pending(rt, NULL);
		rt->pending = false;
	}
	return r;
}

/* After the walk: collect once, then one group per call. @return 1 more,
 * 0 done, -errno. */
static int rot_links_step(struct vault_rotate *rt)
{
	size_t i, j;
	int r, tree;

	if (!rt->collected) {
		rt->collected = true;
		if (!rt->deferred && !rt->pending)
			return 0;
		tree = store_openat(rt->store_fd, ROT_TREE, O_RDONLY | O_DIRECTORY, 0);
		if (tree < 0)
			return tree;
		r = rot_links_collect(rt, tree, ROT_TREE);
		store_close(tree);
		if (r < 0)
			return r;
		qsort(rt->links, rt->nlinks, sizeof(*rt->links), rot_link_cmp);
		return 1;
	}
	if (rt->linkpos >= rt->nlinks) {
		if (rt->pending) { /* the pending group's names are all gone */
			r = rot_state_pending(rt, NULL);
			rt->pending = false;
			return r;
		}
		return 0;
	}
	i = rt->linkpos;
	for (j = i + 1; j < rt->nlinks &&
			memcmp(rt->links[j].file_id, rt->links[i].file_id, FMT_ID_BYTES) == 0;
	     j++)
		;
	r = rot_links_group(rt, i, j);
	if (r < 0)
		return r;
	rt->linkpos = j;
	return 1;
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
	r = rot_state_load(rt);
	if (r < 0)
		goto out;
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

	rt->moved = false;
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
			return 1;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(sname, sizeof(sname), "%s", de->d_name);
		copy = *fr; /* rot_entry may push: the stack can move */
		r = rot_entry(rt, &copy, sname);
		return r < 0 ? r : 1;
	}
	return rot_links_step(rt);
}

const struct vault_rotate_stats *vault_rotate_stats(const struct vault_rotate *rt)
{
	return &rt->stats;
}

const char *vault_rotate_where(const struct vault_rotate *rt)
{
	return rt->where;
}

const char *vault_rotate_moved(const struct vault_rotate *rt, dev_t *dev, ino_t *ino)
{
	if (!rt->moved)
		return NULL;
	*dev = rt->moved_dev;
	*ino = rt->moved_ino;
	return rt->moved_path;
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
	for (size_t i = 0; i < rt->nlinks; i++) {
		free(rt->links[i].dpath);
		free(rt->links[i].name);
	}
	free(rt->links);
	free(rt);
	vf_zctx_trim();
}
