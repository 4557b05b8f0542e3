/* vault_fsck.c - offline check and repair of a store (admin.h).
 *
 * A depth-first walk of STORE/tree with an explicit stack of open store
 * directories; each vault_fsck_step handles one store entry, so the caller
 * can show progress between steps. What the keyring can open is checked to
 * the last byte: every .sr-dir is authenticated, every name decrypted,
 * every file's header and seal verified and every live chunk read.
 *
 * Invariants:
 *  1. Without repair nothing is written: files are opened read-only (crash
 *     replay then happens in memory only) and nothing is renamed.
 *  2. Repair moves or links, never unlinks: an entry that leaves the tree
 *     goes to STORE/quarantine/ under a fresh name, with one index line
 *     "<quarantine name>\t<store path>\t<reason>" (store paths only).
 *  3. A file with chunks that do not authenticate is rebuilt beside itself
 *     (FMT_TMP_PREFIX sibling, good chunks copied, bad ones left as holes,
 *     same size, mode, owner, xattrs and times), the damaged original is
 *     linked into the quarantine first, and only then is the rebuilt file
 *     renamed over it: at every instant the name holds a whole file. The
 *     rebuilt file keeps the file_id (so its st_ino through a mount), and
 *     the other names of a file with hard links are given the rebuilt file
 *     (a link renamed over each) when the walk meets them: they stay one
 *     file.
 *  4. A level the keyring does not hold is counted as locked, never as
 *     damage: fsck with a low-ceiling secret checks only its own levels.
 *  5. The vault helpers used here (vault_dirmeta_load, name decryption)
 *     read only v->kr, so the walk runs on a bare struct vault that holds
 *     the keyring and no mount state.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "strongroom/admin.h"
#include "strongroom/store.h"
#include "vault_internal.h"

#define FSCK_TREE	  "tree"
#define FSCK_LONGNAME_LEN (FMT_LONGNAME_BYTES - 1)
#define FSCK_SIDECAR_LEN  (FSCK_LONGNAME_LEN + sizeof(FMT_LONGNAME_SIDECAR_SUFFIX) - 1)
#define FSCK_ROTATE_STATE "rotate.state"

/* A file repair rebuilt, for its other names (invariant 3). */
struct fsck_rebuilt {
	dev_t odev, ndev;
	ino_t oino, nino;
	char *spath; /* the rebuilt file's store path */
};

/* One open store directory on the walk stack. */
struct fsck_frame {
	int fd;
	DIR *dp;
	bool meta_ok;	    /* d holds authenticated metadata */
	struct vault_dir d; /* dir_id and level, for names */
	char *path;	    /* plaintext, "" when unknown */
	char *spath;	    /* relative to STORE */
};

struct vault_fsck {
	struct vault v; /* bare: only kr (invariant 5) */
	const struct kr_keyring *kr;
	bool repair;
	int store_fd;
	int quar_fd; /* -1 until the first quarantine */
	unsigned quar_n;
	struct fsck_frame *stack;
	size_t depth, cap;
	struct vault_fsck_problem *probs;
	size_t nprobs, probcap;
	struct vault_fsck_stats stats;
	uint8_t *buf; /* one chunk */
	size_t bufcap;
	struct fsck_rebuilt *rebuilt;
	size_t nrebuilt, rebuiltcap;
};

/* ---- problems and the quarantine ---- */

const char *vault_fsck_kind_name(enum vault_fsck_kind kind)
{
	switch (kind) {
	case VAULT_FSCK_KEYSLOT:
		return "keyslot";
	case VAULT_FSCK_DIRMETA:
		return "directory metadata";
	case VAULT_FSCK_NAME:
		return "name";
	case VAULT_FSCK_SIDECAR_MISSING:
		return "missing long-name sidecar";
	case VAULT_FSCK_SIDECAR_ORPHAN:
		return "orphan long-name sidecar";
	case VAULT_FSCK_TMP_ORPHAN:
		return "orphan temporary file";
	case VAULT_FSCK_FOREIGN:
		return "foreign file";
	case VAULT_FSCK_FILE:
		return "file";
	case VAULT_FSCK_UNSEALED:
		return "unsealed file";
	case VAULT_FSCK_CHUNK:
		return "chunk";
	case VAULT_FSCK_ROTATION:
		return "unfinished rotation";
	}
	return "problem";
}

static struct vault_fsck_problem *fsck_problem_add(struct vault_fsck *ck, enum vault_fsck_kind kind,
						   const char *spath, const char *path, int err)
{
	struct vault_fsck_problem *p;

	if (ck->nprobs == ck->probcap) {
		size_t ncap = ck->probcap ? ck->probcap * 2 : 16;
		p = realloc(ck->probs, ncap * sizeof(*p));
		if (!p)
			return NULL;
		ck->probs = p;
		ck->probcap = ncap;
	}
	p = &ck->probs[ck->nprobs++];
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	p->err = err;
	snprintf(p->store_path, sizeof(p->store_path), "%s", spath);
	snprintf(p->path, sizeof(p->path), "%s", path ? path : "");
	ck->stats.problems++;
	return p;
}

static void fsck_fixed(struct vault_fsck *ck, struct vault_fsck_problem *p, const char *note)
{
	if (!p)
		return;
	p->fixed = true;
	snprintf(p->note, sizeof(p->note), "%.200s", note);
	ck->stats.fixed++;
}

static void fsck_note(struct vault_fsck_problem *p, const char *note)
{
	if (p)
		snprintf(p->note, sizeof(p->note), "%.200s", note);
}

static int fsck_quarantine_open(struct vault_fsck *ck)
{
	int r;

	if (ck->quar_fd >= 0)
		return 0;
	r = store_mkdirat(ck->store_fd, ADMIN_QUARANTINE_DIR, 0700);
	if (r < 0 && r != -EEXIST)
		return r;
	r = store_openat(ck->store_fd, ADMIN_QUARANTINE_DIR, O_RDONLY | O_DIRECTORY, 0);
	if (r < 0)
		return r;
	ck->quar_fd = r;
	return 0;
}

static int fsck_quarantine_index(struct vault_fsck *ck, const char *qname, const char *spath,
				 const char *why)
{
	char line[PATH_MAX + 512];
	struct stat st;
	int fd, n, r;

	fd = store_openat(ck->quar_fd, ADMIN_QUARANTINE_INDEX, O_WRONLY | O_CREAT, 0600);
	if (fd < 0)
		return fd;
	r = store_fstat(fd, &st);
	n = snprintf(line, sizeof(line), "%s\t%s\t%s\n", qname, spath, why);
	if (r == 0 && n > 0 && (size_t)n < sizeof(line))
		r = (int)store_pwrite(fd, line, (size_t)n, (uint64_t)st.st_size);
	if (r >= 0)
		r = store_fsync(fd, false);
	store_close(fd);
	return r < 0 ? r : 0;
}

/* Move (or with keep, hard-link) dirfd/name into the quarantine
 * (invariant 2). qname receives the name it got there. */
static int fsck_quarantine(struct vault_fsck *ck, int dirfd, const char *name, const char *spath,
			   const char *why, bool keep, char qname[96])
{
	const char *base = strrchr(spath, '/');
	int r;

	r = fsck_quarantine_open(ck);
	if (r < 0)
		return r;
	base = base ? base + 1 : spath;
	snprintf(qname, 96, "%lld-%d-%u-%.50s", (long long)time(NULL), (int)getpid(), ++ck->quar_n,
		 base);
	if (keep)
		r = store_linkat(dirfd, name, ck->quar_fd, qname);
	else
		r = store_renameat(dirfd, name, ck->quar_fd, qname, RENAME_NOREPLACE);
	if (r < 0)
		return r;
	(void)store_fsync(ck->quar_fd, false);
	if (!keep)
		(void)store_fsync(dirfd, false);
	return fsck_quarantine_index(ck, qname, spath, why);
}

/* Repair helper: quarantine and record the outcome on p. */
static void fsck_move_out(struct vault_fsck *ck, struct vault_fsck_problem *p, int dirfd,
			  const char *name, const char *spath, const char *why)
{
	char qname[96], note[256];
	int r;

	if (!ck->repair || !p)
		return;
	r = fsck_quarantine(ck, dirfd, name, spath, why, false, qname);
	if (r < 0) {
		snprintf(note, sizeof(note), "could not move to quarantine: %s", strerror(-r));
		fsck_note(p, note);
		return;
	}
	snprintf(note, sizeof(note), "moved to " ADMIN_QUARANTINE_DIR "/%s", qname);
	fsck_fixed(ck, p, note);
}

/* ---- the walk stack ---- */

static char *fsck_join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = malloc(la + lb + 2);

	if (!s)
		return NULL;
	memcpy(s, a, la);
	if (la == 0 || a[la - 1] != '/')
		s[la++] = '/';
	memcpy(s + la, b, lb + 1);
	return s;
}

static void fsck_frame_free(struct fsck_frame *fr)
{
	if (fr->dp)
		closedir(fr->dp); /* closes fr->fd */
	else if (fr->fd >= 0)
		store_close(fr->fd);
	free(fr->d.xattrs);
	free(fr->path);
	free(fr->spath);
	memset(fr, 0, sizeof(*fr));
	fr->fd = -1;
}

/* A damaged .sr-dir whose dir_id is still readable gets a fresh one (same
 * dir_id, the level its hint names or the parent's, mode 0700, owner root,
 * no xattrs) after the old bytes went to the quarantine; names below then
 * decrypt again. */
static int fsck_dirmeta_rebuild(struct vault_fsck *ck, int fd, const char *spath,
				unsigned parent_level, struct vault_dir *d, bool is_root,
				char note[256])
{
	const struct kr_config *cfg = kr_keyring_config(ck->kr);
	const unsigned char *hint_key = kr_vault_subkey(ck->kr, KR_VSUB_HINT);
	unsigned char buf[256];
	uint8_t id[FMT_ID_BYTES], hint[FMT_HINT_BYTES], h[FMT_HINT_BYTES];
	unsigned level = parent_level;
	char qname[96], mspath[PATH_MAX];
	ssize_t n;
	int r;

	n = store_read_small(fd, FMT_DIRMETA_NAME, buf, sizeof(buf));
	if (n == -EFBIG)
		n = sizeof(buf); /* only the head is needed */
	if (n < 0 || fmt_dirmeta_peek(buf, (size_t)n, id, hint) < 0) {
		snprintf(note, 256, "directory ID unreadable: names below cannot be recovered");
		return -EUCLEAN;
	}
	for (unsigned l = 0; l < cfg->nlevels; l++) {
		fmt_level_hint(hint_key, id, l, h);
		if (sodium_memcmp(h, hint, sizeof(h)) == 0)
			level = l;
	}
	if (!kr_level_held(ck->kr, level)) {
		snprintf(note, 256, "its level is not held by this secret");
		return -ENOKEY;
	}
	snprintf(mspath, sizeof(mspath), "%s/" FMT_DIRMETA_NAME, spath);
	r = fsck_quarantine(ck, fd, FMT_DIRMETA_NAME, mspath, "directory metadata", true, qname);
	if (r < 0) {
		snprintf(note, 256, "could not copy to quarantine: %s", strerror(-r));
		return r;
	}
	memset(d, 0, sizeof(*d));
	memcpy(d->dir_id, id, FMT_ID_BYTES);
	d->level = level;
	d->mode = S_IFDIR | (is_root ? 0755 : 0700);
	r = vault_dirmeta_store(&ck->v, fd, d);
	if (r < 0) {
		snprintf(note, 256, "could not write new metadata: %s", strerror(-r));
		return r;
	}
	snprintf(note, 256,
		 "rebuilt (mode %o, owner root, ACLs lost); old copy in " ADMIN_QUARANTINE_DIR
		 "/%.96s",
		 is_root ? 0755 : 0700, qname);
	return 0;
}

/* Push the store directory dirfd/name; checks its metadata. */
static int fsck_push(struct vault_fsck *ck, int dirfd, const char *name, const char *path,
		     const char *spath, unsigned parent_level, bool is_root)
{
	struct fsck_frame *fr;
	int fd, r;

	if (ck->depth == ck->cap) {
		size_t ncap = ck->cap ? ck->cap * 2 : 16;
		fr = realloc(ck->stack, ncap * sizeof(*fr));
		if (!fr)
			return -ENOMEM;
		ck->stack = fr;
		ck->cap = ncap;
	}
	fd = store_openat(dirfd, name, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return fd;
	fr = &ck->stack[ck->depth];
	memset(fr, 0, sizeof(*fr));
	fr->fd = fd;
	fr->path = strdup(path);
	fr->spath = strdup(spath);
	if (!fr->path || !fr->spath) {
		fsck_frame_free(fr);
		return -ENOMEM;
	}
	ck->depth++;
	ck->stats.dirs++;
	r = vault_dirmeta_load(&ck->v, fd, &fr->d);
	if (r == 0) {
		fr->meta_ok = true;
	} else if (r == -ENOKEY) {
		ck->stats.locked++;
	} else if (r == -ENOMEM) {
		return r;
	} else {
		struct vault_fsck_problem *p;
		char note[256];

		p = fsck_problem_add(ck, VAULT_FSCK_DIRMETA, spath, path, r);
		if (!p)
			return -ENOMEM;
		if (ck->repair) {
			if (fsck_dirmeta_rebuild(ck, fd, spath, parent_level, &fr->d, is_root,
						 note) == 0) {
				fr->meta_ok = true;
				fsck_fixed(ck, p, note);
			} else {
				fsck_note(p, note);
			}
		}
	}
	/* Walk what the metadata opens; a locked or unreadable directory is
	 * still listed for leftovers, whose names need no key. */
	fr->dp = fdopendir(fd);
	if (!fr->dp)
		return -errno;
	return 0;
}

/* ---- files ---- */

/* Invariant 3: rebuild dirfd/sname (open in f) beside itself, same
 * file_id, bad chunks as holes; record the pair for its other names. */
static int fsck_file_rebuild(struct vault_fsck *ck, int dirfd, const char *sname, const char *spath,
			     struct vf_file *f, char note[256])
{
	struct fsck_rebuilt *rb;
	struct stat st, nst;
	struct timespec ts[2];
	char tmp[FMT_NAME_MAX + 1], qname[96], hex[25];
	unsigned char rnd[12];
	int r;

	r = store_fstat(vf_fd(f), &st);
	if (r < 0)
		return r;
	if (ck->nrebuilt == ck->rebuiltcap) {
		size_t ncap = ck->rebuiltcap ? ck->rebuiltcap * 2 : 8;
		rb = realloc(ck->rebuilt, ncap * sizeof(*rb));
		if (!rb)
			return -ENOMEM;
		ck->rebuilt = rb;
		ck->rebuiltcap = ncap;
	}
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
	snprintf(tmp, sizeof(tmp), "%sfsck.%s", FMT_TMP_PREFIX, hex);
	/* Same file_id, size, mode, owner and xattrs (ACLs included). */
	r = vf_copy_to_keyring(f, ck->kr, dirfd, tmp, true);
	if (r < 0)
		return r;
	ts[0] = st.st_atim;
	ts[1] = st.st_mtim;
	(void)store_utimensat(dirfd, tmp, ts);
	r = fsck_quarantine(ck, dirfd, sname, spath, "file with chunks that do not authenticate",
			    true, qname);
	if (r < 0)
		goto out;
	r = store_renameat(dirfd, tmp, dirfd, sname, 0);
	if (r == 0)
		r = store_fsync(dirfd, false);
	if (r == 0 && st.st_nlink > 1 && store_fstatat(dirfd, sname, &nst) == 0) {
		/* Other names of the file are given the rebuilt one when the
		 * walk meets them. */
		rb = &ck->rebuilt[ck->nrebuilt];
		rb->odev = st.st_dev;
		rb->oino = st.st_ino;
		rb->ndev = nst.st_dev;
		rb->nino = nst.st_ino;
		rb->spath = strdup(spath);
		if (rb->spath)
			ck->nrebuilt++;
	}
	if (r == 0)
		snprintf(note, 256,
			 "bad chunks now read as zeros; original in " ADMIN_QUARANTINE_DIR "/%s",
			 qname);
out:
	if (r < 0)
		(void)store_unlinkat(dirfd, tmp, 0);
	return r;
}

/* Another name of a file rebuilt earlier in this run: give it the rebuilt
 * file (a hard link renamed over it), so the names stay one file.
 * @return 1 done, 0 not such a name, -errno. */
static int fsck_file_relink(struct vault_fsck *ck, int dirfd, const char *sname, struct vf_file *f,
			    char note[256])
{
	struct fsck_rebuilt *rb = NULL;
	struct stat st, nst;
	char tmp[FMT_NAME_MAX + 1], hex[25];
	unsigned char rnd[12];
	int r = store_fstat(vf_fd(f), &st);

	for (size_t i = 0; r == 0 && i < ck->nrebuilt; i++)
		if (ck->rebuilt[i].odev == st.st_dev && ck->rebuilt[i].oino == st.st_ino)
			rb = &ck->rebuilt[i];
	if (r < 0 || !rb)
		return r;
	r = store_fstatat(ck->store_fd, rb->spath, &nst);
	if (r < 0 || nst.st_dev != rb->ndev || nst.st_ino != rb->nino)
		return 0; /* the rebuilt name moved: rebuild this one on its own */
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
	snprintf(tmp, sizeof(tmp), "%sfsck.%s", FMT_TMP_PREFIX, hex);
	r = store_linkat(ck->store_fd, rb->spath, dirfd, tmp);
	if (r < 0)
		return r;
	r = store_renameat(dirfd, tmp, dirfd, sname, 0);
	if (r == 0)
		r = store_fsync(dirfd, false);
	if (r < 0) {
		(void)store_unlinkat(dirfd, tmp, 0);
		return r;
	}
	snprintf(note, 256, "another name of the file rebuilt at %s: given the rebuilt file",
		 rb->spath);
	return 1;
}

/* Check one ciphertext file: header, seal, every live chunk. */
static int fsck_file(struct vault_fsck *ck, int dirfd, const char *sname, const char *path,
		     const char *spath)
{
	struct vault_fsck_problem *p;
	struct fmt_file_header h;
	struct vf_file *f = NULL;
	struct vf_attr a = {0};
	uint8_t head[FMT_FILE_HEADER_BYTES];
	uint64_t pos = 0, chunk, first_bad = ck->nprobs, nbad = 0;
	char note[256];
	int fd, r;

	ck->stats.files++;
	r = vf_open(ck->kr, dirfd, sname, false, &f);
	if (r == -ENOKEY) {
		ck->stats.locked++;
		return 0;
	}
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		p = fsck_problem_add(ck, VAULT_FSCK_FILE, spath, path, r);
		if (!p)
			return -ENOMEM;
		fsck_note(p, "header or seal does not verify; left in place (strongroom xray "
			     "--frames shows it)");
		return 0;
	}
	if (vf_recovered(f)) {
		p = fsck_problem_add(ck, VAULT_FSCK_UNSEALED, spath, path, 0);
		if (!p) {
			r = -ENOMEM;
			goto out;
		}
		if (ck->repair) {
			struct vf_file *w = NULL;

			vf_close(f);
			f = NULL;
			/* A writable open cuts the torn tail and seals. */
			r = vf_open(ck->kr, dirfd, sname, true, &w);
			if (r == 0)
				r = vf_close(w);
			if (r == 0)
				fsck_fixed(ck, p, "replayed and sealed");
			else
				fsck_note(p, strerror(-r));
			r = vf_open(ck->kr, dirfd, sname, false, &f);
			if (r < 0)
				return r == -ENOMEM ? r : 0;
		}
	}
	fd = vf_fd(f);
	r = (int)store_pread(fd, head, sizeof(head), 0);
	if (r == (int)sizeof(head))
		r = fmt_file_header_peek(head, &h);
	else
		r = -EUCLEAN;
	if (r == 0)
		r = vf_getattr(f, &a);
	if (r < 0)
		goto out;
	chunk = (uint64_t)1 << h.chunk_log2;
	if (ck->bufcap < chunk) {
		uint8_t *b = realloc(ck->buf, chunk);
		if (!b) {
			r = -ENOMEM;
			goto out;
		}
		ck->buf = b;
		ck->bufcap = chunk;
	}
	while (pos < a.size) {
		off_t d = vf_lseek(f, (off_t)pos, SEEK_DATA);
		uint64_t idx, start, want;
		ssize_t got;

		if (d < 0)
			break;
		idx = (uint64_t)d >> h.chunk_log2;
		start = idx << h.chunk_log2;
		want = a.size - start < chunk ? a.size - start : chunk;
		got = vf_read(f, ck->buf, (size_t)want, start);
		if (got == -ENOMEM) {
			r = -ENOMEM;
			goto out;
		}
		if (got < 0) {
			p = fsck_problem_add(ck, VAULT_FSCK_CHUNK, spath, path, (int)got);
			if (!p) {
				r = -ENOMEM;
				goto out;
			}
			p->chunk = idx;
			nbad++;
		} else {
			ck->stats.bytes += (uint64_t)got;
		}
		pos = start + chunk;
	}
	r = 0;
	if (nbad && ck->repair) {
		int e = fsck_file_relink(ck, dirfd, sname, f, note);

		if (e == 0)
			e = fsck_file_rebuild(ck, dirfd, sname, spath, f, note);
		else if (e > 0)
			e = 0;

		if (e < 0)
			snprintf(note, sizeof(note), "could not rebuild: %s", strerror(-e));
		for (size_t i = first_bad; i < ck->nprobs; i++) {
			if (ck->probs[i].kind != VAULT_FSCK_CHUNK)
				continue;
			if (e == 0)
				fsck_fixed(ck, &ck->probs[i], note);
			else
				fsck_note(&ck->probs[i], note);
		}
	}
out:
	vf_close(f);
	return r;
}

/* ---- one entry ---- */

/* Decrypt the name of a plain or long entry of fr. */
static ssize_t fsck_name(struct vault_fsck *ck, struct fsck_frame *fr, const char *sname,
			 bool is_long, char out[FMT_NAME_MAX + 1])
{
	char side[FSCK_SIDECAR_LEN + 1];
	char *buf;
	ssize_t n;

	if (!is_long)
		return vault_policy_name_decrypt(&ck->v, &fr->d, sname, strlen(sname), out, NULL);
	buf = malloc(VAULT_ENC_NAME_MAX);
	if (!buf)
		return -ENOMEM;
	snprintf(side, sizeof(side), "%s%s", sname, FMT_LONGNAME_SIDECAR_SUFFIX);
	n = store_read_small(fr->fd, side, buf, VAULT_ENC_NAME_MAX);
	if (n >= 0 && fmt_longname_check(sname, buf, (size_t)n) < 0)
		n = -EBADMSG;
	if (n >= 0)
		n = vault_policy_name_decrypt(&ck->v, &fr->d, buf, (size_t)n, out, NULL);
	free(buf);
	return n;
}

static int fsck_entry(struct vault_fsck *ck, struct fsck_frame *fr, const char *sname)
{
	char name[FMT_NAME_MAX + 1], *spath = NULL, *path = NULL;
	struct vault_fsck_problem *p;
	size_t len = strlen(sname);
	bool is_long = false;
	struct stat st;
	ssize_t n;
	int r = 0;

	spath = fsck_join(fr->spath, sname);
	if (!spath)
		return -ENOMEM;
	if (strcmp(sname, FMT_DIRMETA_NAME) == 0)
		goto out;
	if (strncmp(sname, FMT_TMP_PREFIX, strlen(FMT_TMP_PREFIX)) == 0) {
		if (store_fstatat(fr->fd, sname, &st) == -ENOENT)
			goto out; /* a rebuild's own sibling, renamed meanwhile */
		p = fsck_problem_add(ck, VAULT_FSCK_TMP_ORPHAN, spath, NULL, 0);
		fsck_move_out(ck, p, fr->fd, sname, spath, "orphan temporary file");
		r = p ? 0 : -ENOMEM;
		goto out;
	}
	if (sname[0] == '.' && strncmp(sname, FMT_LONGNAME_PREFIX, 2) == 0 &&
	    len == FSCK_SIDECAR_LEN &&
	    strcmp(sname + FSCK_LONGNAME_LEN, FMT_LONGNAME_SIDECAR_SUFFIX) == 0) {
		char entry[FSCK_LONGNAME_LEN + 1];

		memcpy(entry, sname, FSCK_LONGNAME_LEN);
		entry[FSCK_LONGNAME_LEN] = '\0';
		if (store_fstatat(fr->fd, entry, &st) == -ENOENT) {
			p = fsck_problem_add(ck, VAULT_FSCK_SIDECAR_ORPHAN, spath, NULL, -ENOENT);
			fsck_move_out(ck, p, fr->fd, sname, spath, "orphan long-name sidecar");
			r = p ? 0 : -ENOMEM;
		}
		goto out;
	}
	if (sname[0] == '.') {
		if (strncmp(sname, FMT_LONGNAME_PREFIX, 2) != 0 || len != FSCK_LONGNAME_LEN) {
			p = fsck_problem_add(ck, VAULT_FSCK_FOREIGN, spath, NULL, 0);
			fsck_note(p, "not a name the format writes; left in place");
			r = p ? 0 : -ENOMEM;
			goto out;
		}
		is_long = true;
	}
	r = store_fstatat(fr->fd, sname, &st);
	if (r < 0) {
		r = r == -ENOENT ? 0 : r; /* gone meanwhile (moved to quarantine) */
		goto out;
	}
	if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
		p = fsck_problem_add(ck, VAULT_FSCK_FOREIGN, spath, NULL, 0);
		fsck_note(p, "the store holds only files and directories; left in place");
		r = p ? 0 : -ENOMEM;
		goto out;
	}
	if (!fr->meta_ok) {
		/* The folder's key is not held or its metadata is lost: walk
		 * on for leftovers without names. */
		path = strdup("");
	} else {
		n = fsck_name(ck, fr, sname, is_long, name);
		if (n == -ENOMEM) {
			r = -ENOMEM;
			goto out;
		}
		if (n == -ENOKEY) {
			ck->stats.locked++;
			goto out;
		}
		if (n < 0 && is_long && n == -ENOENT) {
			p = fsck_problem_add(ck, VAULT_FSCK_SIDECAR_MISSING, spath, NULL, (int)n);
			fsck_move_out(ck, p, fr->fd, sname, spath, "long name without sidecar");
			r = p ? 0 : -ENOMEM;
			goto out;
		}
		if (n < 0) {
			p = fsck_problem_add(ck, VAULT_FSCK_NAME, spath, NULL, (int)n);
			fsck_move_out(ck, p, fr->fd, sname, spath, "name does not authenticate");
			r = p ? 0 : -ENOMEM;
			goto out;
		}
		path = fsck_join(fr->path[0] ? fr->path : "/", name);
	}
	if (!path) {
		r = -ENOMEM;
		goto out;
	}
	if (S_ISDIR(st.st_mode))
		r = fsck_push(ck, fr->fd, sname, path, spath, fr->d.level, false);
	else if (fr->meta_ok)
		r = fsck_file(ck, fr->fd, sname, path, spath);
	else
		r = fsck_file(ck, fr->fd, sname, "", spath);
out:
	free(spath);
	free(path);
	return r;
}

/* ---- the API ---- */

int vault_fsck_open(const char *store, const struct kr_keyring *kr, bool repair,
		    struct vault_fsck **out)
{
	struct kr_slot_info slots[KR_MAX_SLOTS];
	struct vault_fsck *ck;
	struct stat st;
	int r, n;

	*out = NULL;
	ck = calloc(1, sizeof(*ck));
	if (!ck)
		return -ENOMEM;
	ck->kr = kr;
	ck->v.kr = kr;
	ck->v.flags = VAULT_READ_ONLY;
	ck->v.store_fd = -1;
	ck->v.tree_fd = -1;
	ck->repair = repair;
	ck->quar_fd = -1;
	ck->store_fd = store_openat(AT_FDCWD, store, O_RDONLY | O_DIRECTORY, 0);
	if (ck->store_fd < 0) {
		r = ck->store_fd;
		goto out;
	}
	/* Keyslots: a slot that does not parse can open nothing. */
	n = kr_keyslot_list(store, slots, KR_MAX_SLOTS);
	for (int i = 0; i < n; i++) {
		char spath[64];

		if (slots[i].kind != 0)
			continue;
		snprintf(spath, sizeof(spath), KR_SLOT_DIR "/slot-%d", slots[i].index);
		if (!fsck_problem_add(ck, VAULT_FSCK_KEYSLOT, spath, NULL, -EUCLEAN)) {
			r = -ENOMEM;
			goto out;
		}
	}
	if (store_fstatat(ck->store_fd, FSCK_ROTATE_STATE, &st) == 0) {
		struct vault_fsck_problem *p =
		    fsck_problem_add(ck, VAULT_FSCK_ROTATION, FSCK_ROTATE_STATE, NULL, 0);
		fsck_note(p, "run strongroom rotate again to finish it");
	}
	r = fsck_push(ck, ck->store_fd, FSCK_TREE, "/", FSCK_TREE, 0, true);
out:
	if (r < 0) {
		vault_fsck_close(ck);
		return r;
	}
	*out = ck;
	return 0;
}

int vault_fsck_step(struct vault_fsck *ck)
{
	struct fsck_frame *fr;
	struct dirent *de;

	while (ck->depth) {
		fr = &ck->stack[ck->depth - 1];
		errno = 0;
		de = readdir(fr->dp);
		if (!de) {
			int e = errno;

			fsck_frame_free(fr);
			ck->depth--;
			if (e)
				return -e;
			return ck->depth ? 1 : 0;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		/* fsck_entry may push: fr can move, so it copies what it needs. */
		{
			char sname[FMT_NAME_MAX + 1];
			struct fsck_frame copy;
			int r;

			snprintf(sname, sizeof(sname), "%s", de->d_name);
			copy = *fr;
			r = fsck_entry(ck, &copy, sname);
			return r < 0 ? r : 1;
		}
	}
	return 0;
}

const struct vault_fsck_stats *vault_fsck_stats(const struct vault_fsck *ck)
{
	return &ck->stats;
}

size_t vault_fsck_problems(const struct vault_fsck *ck, const struct vault_fsck_problem **out)
{
	*out = ck->probs;
	return ck->nprobs;
}

void vault_fsck_close(struct vault_fsck *ck)
{
	if (!ck)
		return;
	while (ck->depth)
		fsck_frame_free(&ck->stack[--ck->depth]);
	free(ck->stack);
	if (ck->quar_fd >= 0)
		store_close(ck->quar_fd);
	if (ck->store_fd >= 0)
		store_close(ck->store_fd);
	free(ck->probs);
	for (size_t i = 0; i < ck->nrebuilt; i++)
		free(ck->rebuilt[i].spath);
	free(ck->rebuilt);
	if (ck->buf)
		sodium_memzero(ck->buf, ck->bufcap);
	free(ck->buf);
	free(ck);
	vf_zctx_trim();
}
