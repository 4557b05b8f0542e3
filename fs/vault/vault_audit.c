/* vault_audit.c - what callers did, written to the audit trail.
 *
 * The vault's side of the trail (docs/audit.md, the library is fs/audit):
 * who (uid, user name, gid, pid, process name) did what (the event), to
 * which plaintext path, at which level, with which outcome. The vault's
 * operations call one function here on their way out, after they have
 * released every vault lock; the function writes the record and hands back
 * the operation's result, or -EIO if the record could not be written.
 *
 * Invariants kept here:
 *  1. Fail closed: an operation whose record could not be written returns
 *     -EIO (an open also gives its handle back, and a first read returns no
 *     bytes), unless the trail was started fail-open. Either way the first
 *     failure of a run of them is logged once to stderr (the driver's log),
 *     and the return to normal once.
 *  2. Every open is recorded, allowed or not; a handle's first read is
 *     recorded before its bytes are returned; at release, what the handle
 *     read and wrote (bytes and ranges) is recorded. Name, attribute, xattr,
 *     ACL and level changes are recorded when they succeeded. Denials
 *     (-EACCES, -EPERM, -ENOKEY) and integrity failures (-EBADMSG,
 *     -EUCLEAN) are recorded from every operation that reports them; other
 *     failures of non-open operations change nothing and are not.
 *  3. The identity of a handle's events is the opener's, taken at open:
 *     the kernel sends reads and releases with another (or no) pid, and the
 *     opener may be gone by the release.
 *  4. User names are cached (uid -> name, VAULT_AUDIT_USER_TTL_SEC), since
 *     the name service may be slow; process names are read from /proc at
 *     each event (a pid's name changes at exec) and kept per handle.
 *  5. No vault lock is held here except v->ns shared, taken to find the
 *     level of a path's folder; callers hold none.
 *  6. One writer per trail: the trail's directory is flock()ed exclusively
 *     for as long as it is open, so a second driver (another host, a
 *     stale one) cannot interleave segments with ours; it gets -EBUSY.
 *     A read-only mount writes its own chain, STORE/audit/ro-<random ID>,
 *     under a key derived from the chain key and the ID: it never touches
 *     the writer's files or another reader's, so it takes no lock.
 *  7. What an operation's lower layers noticed (a denial the policy already
 *     recorded, a crashed file the table recovered) is kept in thread-local
 *     notes: one request runs on one thread from the frontend to its reply,
 *     and the operation's own hook consumes the notes before it returns.
 *  8. The writer lists the read-only chains it finds (a `chains` record)
 *     after its mount record, with the first record of each hour after
 *     that, and before its unmount record, so a chain removed after a
 *     writer saw it is detected by verify.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "strongroom/audit.h"
#include "strongroom/store.h"
#include "vault_internal.h"

#define VAULT_AUDIT_USERS 64
#define VAULT_AUDIT_USER_TTL_SEC 300
#define VAULT_AUDIT_DETAIL_BYTES 512
#define VAULT_AUDIT_CHAINS_EVERY_SEC 3600 /* invariant 8 */
#define VAULT_AUDIT_LEVEL_BYTES (KR_LEVEL_NAME_MAX + 1)
/* One more than the record holds: the library merges the tail and flags it. */
#define VAULT_AUDIT_RANGES (AUDIT_RANGES_MAX + 1)

struct vault_audit_user {
	uint32_t uid;
	bool used;
	time_t at;
	char name[AUDIT_NAME_MAX + 1];
};

struct vault_audit {
	struct audit_log *log;
	bool reader;	     /* a read-only mount's own chain (invariant 6) */
	int64_t chains_at; /* atomic: when the writer last listed the chains */
	char chain[AUDIT_CHAIN_NAME_BYTES]; /* its name, "" for the writer */
	int lock_fd; /* STORE/audit, flock()ed exclusively: one writer (invariant 6) */
	bool fail_open;
	int failing; /* atomic: 1 from a failed write until one succeeds */
	char dir[PATH_MAX];
	pthread_mutex_t users_lock;
	struct vault_audit_user users[VAULT_AUDIT_USERS];
};

/* What one handle did, summarised at release (invariant 2, 3). */
struct vault_audit_handle {
	uint32_t uid, gid, pid;
	char user[AUDIT_NAME_MAX + 1];
	char process[AUDIT_NAME_MAX + 1];
	char level[VAULT_AUDIT_LEVEL_BYTES];
	pthread_mutex_t lock;
	bool read_seen, wrote;
	uint64_t rbytes, wbytes;
	unsigned nr, nw;
	struct audit_range r[VAULT_AUDIT_RANGES];
	struct audit_range w[VAULT_AUDIT_RANGES];
};

/* Set by vault_audit_denied (a denial the policy recorded with its level)
 * and cleared by the next record of the same thread's operation, so the
 * operation's own -EACCES is not recorded twice. */
static __thread bool audit_denial_recorded;
/* Set by vault_audit_file_opened when the file engine replayed a crashed
 * file for a writable open (which seals it: the recovery happens once) or
 * for a read-only mount's open; the operation that opened it records the
 * recovery with its path. A stat's replay in memory (vf_stat_at) changes
 * nothing and is not a recovery. */
static __thread bool audit_file_recovered;

/* ---- names (invariant 4) ---- */

static void audit_user_name(struct vault_audit *a, uint32_t uid, char out[AUDIT_NAME_MAX + 1])
{
	struct vault_audit_user *u = &a->users[uid % VAULT_AUDIT_USERS];
	time_t now = time(NULL);
	struct passwd pw, *res = NULL;
	char buf[2048];

	pthread_mutex_lock(&a->users_lock);
	if (u->used && u->uid == uid && now - u->at < VAULT_AUDIT_USER_TTL_SEC) {
		memcpy(out, u->name, sizeof(u->name));
		pthread_mutex_unlock(&a->users_lock);
		return;
	}
	pthread_mutex_unlock(&a->users_lock);
	if (getpwuid_r((uid_t)uid, &pw, buf, sizeof(buf), &res) == 0 && res)
		snprintf(out, AUDIT_NAME_MAX + 1, "%s", res->pw_name);
	else
		snprintf(out, AUDIT_NAME_MAX + 1, "%u", uid);
	pthread_mutex_lock(&a->users_lock);
	u->uid = uid;
	u->used = true;
	u->at = now;
	memcpy(u->name, out, sizeof(u->name));
	pthread_mutex_unlock(&a->users_lock);
}

static void audit_process_name(uint32_t pid, char out[AUDIT_NAME_MAX + 1])
{
	audit_process_name_get(pid, out, AUDIT_NAME_MAX + 1);
}

static const char *audit_level_name(const struct vault *v, unsigned level)
{
	const struct kr_config *cfg = kr_keyring_config(v->kr);

	return level < cfg->nlevels ? cfg->levels[level].name : "";
}

/* The level of the folder holding path ("" if it cannot be found). */
static void audit_folder_level(struct vault *v, const char *path, char out[VAULT_AUDIT_LEVEL_BYTES])
{
	struct vault_dir *d = NULL;
	char *canon = NULL, *slash;

	out[0] = '\0';
	if (vault_path_canon(path, &canon) < 0)
		return;
	slash = strrchr(canon, '/');
	if (slash == canon)
		slash[1] = '\0';
	else
		*slash = '\0';
	pthread_rwlock_rdlock(&v->ns);
	if (vault_dir_get(v, canon, &d) == 0) {
		snprintf(out, VAULT_AUDIT_LEVEL_BYTES, "%s", audit_level_name(v, d->level));
		vault_dir_put(v, d);
	}
	pthread_rwlock_unlock(&v->ns);
	free(canon);
}

/* ---- writing (invariant 1) ---- */

static int audit_emit_chains(struct vault *v);

static int audit_emit(struct vault *v, const struct audit_event *ev)
{
	struct vault_audit *a = v->audit;
	int64_t now = (int64_t)time(NULL), at;
	int r;

	r = audit_log_write(a->log, ev);
	if (r == 0) {
		if (__atomic_exchange_n(&a->failing, 0, __ATOMIC_ACQ_REL))
			fprintf(stderr, "strongroom: %s: audit records are written again\n", a->dir);
		vault_watch_event(v, ev); /* alert rules (vault_watch.c) */
		/* Invariant 8: one thread wins the hour's listing. A failed
		 * listing is retried by the next hour's. */
		at = __atomic_load_n(&a->chains_at, __ATOMIC_ACQUIRE);
		if (!a->reader && at && now - at >= VAULT_AUDIT_CHAINS_EVERY_SEC &&
		    __atomic_compare_exchange_n(&a->chains_at, &at, now, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			(void)audit_emit_chains(v);
		return 0;
	}
	if (!__atomic_exchange_n(&a->failing, 1, __ATOMIC_ACQ_REL))
		fprintf(stderr, "strongroom: %s: cannot write an audit record: %s; %s\n", a->dir,
			strerror(-r),
			a->fail_open ? "operations go on unrecorded (audit fail-open)"
				     : "audited operations fail with EIO until records can be written");
	return a->fail_open ? 0 : -EIO;
}

/* The errno the application sees (as the frontend maps it). */
static int audit_outcome(int r)
{
	if (r == -EBADMSG)
		return EIO;
	if (r == -ENOKEY)
		return EACCES;
	return r < 0 ? -r : 0;
}

static bool audit_is_denial(int r)
{
	return r == -EACCES || r == -EPERM || r == -ENOKEY;
}

static bool audit_is_integrity(int r)
{
	return r == -EBADMSG || r == -EUCLEAN;
}

/* An event by a path caller; user and process (unless the caller knows
 * it) resolved here. */
static int audit_emit_caller(struct vault *v, const struct vault_caller *c, struct audit_event *ev)
{
	char user[AUDIT_NAME_MAX + 1], proc[AUDIT_NAME_MAX + 1];
	int r;

	ev->uid = c ? (uint32_t)c->uid : 0;
	ev->gid = c ? (uint32_t)c->gid : 0;
	ev->pid = c ? (uint32_t)c->pid : 0;
	audit_user_name(v->audit, ev->uid, user);
	ev->user = user;
	if (!ev->process) {
		audit_process_name(ev->pid, proc);
		ev->process = proc;
	}
	r = audit_emit(v, ev);
	ev->user = ev->process = NULL; /* they point into this frame */
	return r;
}

int vault_audit_emit(struct vault *v, const struct vault_caller *c, struct audit_event *ev)
{
	return v->audit ? audit_emit_caller(v, c, ev) : 0;
}

/* A denial or an integrity failure of operation what on path. */
static int audit_failure(struct vault *v, const struct vault_caller *c, const char *path,
			 const char *path2, const char *level, const char *what, int r)
{
	char detail[VAULT_AUDIT_DETAIL_BYTES];
	struct audit_event ev = { 0 };
	bool recorded = audit_denial_recorded;

	audit_denial_recorded = false;
	if (recorded && audit_is_denial(r))
		return 0;
	ev.path = path;
	ev.path2 = path2;
	ev.level = level;
	ev.outcome = audit_outcome(r);
	ev.detail = detail;
	if (audit_is_denial(r)) {
		ev.type = AUDIT_EV_DENIAL;
		snprintf(detail, sizeof(detail), "%s: %s", what,
			 r == -ENOKEY ? "level not held by this mount" : "refused by the vault");
	} else {
		ev.type = AUDIT_EV_INTEGRITY;
		snprintf(detail, sizeof(detail), "%s: %s", what,
			 r == -EBADMSG ? "authentication failed" : "corrupt structure");
	}
	return audit_emit_caller(v, c, &ev);
}

void vault_audit_file_opened(struct vault *v, struct vf_file *f)
{
	if (v->audit && vf_recovered(f))
		audit_file_recovered = true;
}

/* The recovery of a crashed file this thread's operation on path opened. */
static int audit_recovery_take(struct vault *v, const struct vault_caller *c, const char *path)
{
	char level[VAULT_AUDIT_LEVEL_BYTES];
	struct audit_event ev = { 0 };

	if (!audit_file_recovered)
		return 0;
	audit_file_recovered = false;
	audit_folder_level(v, path, level);
	ev.type = AUDIT_EV_RECOVERY;
	ev.path = path;
	ev.level = level;
	ev.detail = vault_ro(v) ? "the file was not sealed (driver crash): writes after its last "
				  "seal were replayed for this read-only mount; the store file "
				  "is left as it is"
				: "the file was not sealed (driver crash): writes after its last "
				  "seal were replayed and the file sealed";
	return audit_emit_caller(v, c, &ev);
}

/* Records of a path operation's result r (invariant 2); @return r or -EIO. */
static int audit_path_event(struct vault *v, const struct vault_caller *c, struct audit_event *ev,
			    const char *what, int r)
{
	char level[VAULT_AUDIT_LEVEL_BYTES];
	int e;

	e = audit_recovery_take(v, c, ev->path);
	if (e < 0)
		return e;
	if (r < 0 && !audit_is_denial(r) && !audit_is_integrity(r)) {
		audit_denial_recorded = false;
		return r;
	}
	if (r < 0 || ev->type != 0)
		audit_folder_level(v, ev->path, level);
	if (r < 0) {
		e = audit_failure(v, c, ev->path, ev->path2, level, what, r);
		return e < 0 ? e : r;
	}
	audit_denial_recorded = false;
	if (ev->type == 0)
		return r;
	ev->level = level;
	e = audit_emit_caller(v, c, ev);
	ev->level = NULL; /* it points into this frame */
	return e < 0 ? e : r;
}

int vault_audit_path(struct vault *v, const struct vault_caller *c, int type, const char *path,
		     const char *path2, const char *what, int r)
{
	struct audit_event ev = { 0 };

	if (!v->audit)
		return r;
	ev.type = (enum audit_event_type)type;
	ev.path = path;
	ev.path2 = path2;
	ev.detail = type == AUDIT_EV_SETATTR || type == AUDIT_EV_CREATE ? what : NULL;
	if (type == AUDIT_EV_CREATE) /* symlink, mknod: a new object, written once */
		ev.mode = O_WRONLY | O_CREAT | O_EXCL;
	return audit_path_event(v, c, &ev, what, r);
}

int vault_audit_chmod(struct vault *v, const struct vault_caller *c, const char *path, mode_t mode,
		      int r)
{
	char detail[64];
	struct audit_event ev = { 0 };

	if (!v->audit)
		return r;
	snprintf(detail, sizeof(detail), "chmod %04o", (unsigned)(mode & 07777));
	ev.type = AUDIT_EV_SETATTR;
	ev.path = path;
	ev.mode = (uint32_t)(mode & 07777);
	ev.detail = detail;
	return audit_path_event(v, c, &ev, "chmod", r);
}

int vault_audit_chown(struct vault *v, const struct vault_caller *c, const char *path, uid_t uid,
		      gid_t gid, int r)
{
	char detail[64];
	struct audit_event ev = { 0 };

	if (!v->audit)
		return r;
	snprintf(detail, sizeof(detail), "chown %d:%d", uid == (uid_t)-1 ? -1 : (int)uid,
		 gid == (gid_t)-1 ? -1 : (int)gid);
	ev.type = AUDIT_EV_SETATTR;
	ev.path = path;
	ev.detail = detail;
	return audit_path_event(v, c, &ev, "chown", r);
}

int vault_audit_truncate(struct vault *v, const struct vault_caller *c, const char *path,
			 uint64_t size, int r)
{
	struct audit_event ev = { 0 };

	if (!v->audit)
		return r;
	ev.type = AUDIT_EV_TRUNCATE;
	ev.path = path;
	ev.bytes = size;
	return audit_path_event(v, c, &ev, "truncate", r);
}

/* ---- xattrs, ACLs and levels ---- */

void vault_audit_level_before(struct vault *v, const struct vault_caller *c, const char *path,
			      const char *name, char old[VAULT_AUDIT_LEVEL_BYTES])
{
	ssize_t n;

	old[0] = '\0';
	if (!v->audit || strcmp(name, VAULT_XATTR_LEVEL) != 0)
		return;
	n = vault_getxattr(v, c, path, VAULT_XATTR_LEVEL, old, VAULT_AUDIT_LEVEL_BYTES - 1);
	old[n > 0 ? n : 0] = '\0';
}

int vault_audit_xattr(struct vault *v, const struct vault_caller *c, const char *path,
		      const char *name, const void *val, size_t len, const char *old, int r)
{
	char detail[VAULT_AUDIT_DETAIL_BYTES], level[VAULT_AUDIT_LEVEL_BYTES];
	struct audit_event ev = { 0 };
	const char *what = val ? "setxattr" : "removexattr";
	int e;

	if (!v->audit)
		return r;
	ev.path = path;
	ev.detail = detail;
	if (strcmp(name, VAULT_XATTR_LEVEL) == 0 && val) {
		/* Reclassification: level = the new one, detail = the old. */
		while (len > 0 && (((const char *)val)[len - 1] == '\n' || ((const char *)val)[len - 1] == '\0'))
			len--;
		snprintf(level, sizeof(level), "%.*s", (int)(len < sizeof(level) ? len : sizeof(level) - 1),
			 (const char *)val);
		snprintf(detail, sizeof(detail), "%s", old);
		if (r < 0)
			return audit_path_event(v, c, &ev, "level", r);
		e = audit_recovery_take(v, c, path);
		if (e < 0)
			return e;
		ev.type = AUDIT_EV_LEVEL;
		ev.level = level;
		e = audit_emit_caller(v, c, &ev);
		return e < 0 ? e : r;
	}
	if (strcmp(name, VAULT_XATTR_ACL_ACCESS) == 0 || strcmp(name, VAULT_XATTR_ACL_DEFAULT) == 0) {
		ev.type = AUDIT_EV_ACL;
		snprintf(detail, sizeof(detail), "%s %s ACL", val ? "set" : "removed",
			 strcmp(name, VAULT_XATTR_ACL_ACCESS) == 0 ? "access" : "default");
	} else {
		ev.type = AUDIT_EV_SETATTR;
		snprintf(detail, sizeof(detail), "%s %s", what, name);
	}
	return audit_path_event(v, c, &ev, what, r);
}

/* ---- denials decided by the policy ---- */

void vault_audit_denied(struct vault *v, const struct vault_caller *c, const char *path,
			unsigned level, const char *why)
{
	char detail[VAULT_AUDIT_DETAIL_BYTES];
	struct audit_event ev = { 0 };

	if (!v->audit)
		return;
	snprintf(detail, sizeof(detail), "%s", why);
	ev.type = AUDIT_EV_DENIAL;
	ev.path = path;
	ev.level = audit_level_name(v, level);
	ev.outcome = EACCES;
	ev.detail = detail;
	/* The operation fails anyway: a failed record only goes to the log. */
	(void)audit_emit_caller(v, c, &ev);
	audit_denial_recorded = true;
}

/* ---- denials the kernel decided ---- */

int vault_audit_kernel_denial(struct vault *v, const struct vault_caller *c, const char *process,
			      const char *path, const char *what, int err)
{
	char detail[VAULT_AUDIT_DETAIL_BYTES];
	struct audit_event ev = { 0 };

	if (!v->audit)
		return 0;
	snprintf(detail, sizeof(detail), "%s: refused by the kernel (mode bits or ACL)", what);
	ev.type = AUDIT_EV_DENIAL;
	ev.path = path;
	ev.outcome = err;
	ev.detail = detail;
	/* The process is usually gone by now: its name comes with the
	 * kernel's record. */
	ev.process = process;
	return audit_emit_caller(v, c, &ev);
}

/* ---- handles ---- */

/* The file's own level, from its authenticated header. */
static void audit_handle_level(struct vault_handle *h, char out[VAULT_AUDIT_LEVEL_BYTES])
{
	struct vf_attr a;

	out[0] = '\0';
	if (vf_getattr(h->of->f, &a) == 0)
		snprintf(out, VAULT_AUDIT_LEVEL_BYTES, "%s", audit_level_name(h->v, a.level));
}

/* An event of handle h with the opener's identity (invariant 3). */
static int audit_emit_handle(struct vault_handle *h, struct audit_event *ev)
{
	struct vault_audit_handle *ah = h->audit;

	ev->uid = ah->uid;
	ev->gid = ah->gid;
	ev->pid = ah->pid;
	ev->user = ah->user;
	ev->process = ah->process;
	ev->path = h->path;
	ev->level = ah->level;
	return audit_emit(h->v, ev);
}

int vault_audit_opened(struct vault *v, const struct vault_caller *c, const char *path, int flags,
		       bool may_create, int r, struct vault_handle **hp)
{
	struct vault_audit_handle *ah;
	struct vault_handle *h = r == 0 ? *hp : NULL;
	struct audit_event ev = { 0 };
	char level[VAULT_AUDIT_LEVEL_BYTES];
	int e;

	assert(r <= 0); /* open returns 0 or -errno */
	if (!v->audit)
		return r;
	if (c && c->open_flags)
		flags = c->open_flags; /* what the application asked for */
	e = audit_recovery_take(v, c, path);
	if (e < 0 && r == 0) {
		h->audit = NULL;
		goto fail;
	}
	if (e < 0)
		return e;
	if (r < 0) {
		/* Every open is recorded, also a refused or failed one. */
		audit_folder_level(v, path, level);
		ev.type = AUDIT_EV_OPEN;
		ev.path = path;
		ev.level = level;
		ev.mode = (uint32_t)flags;
		ev.outcome = audit_outcome(r);
		e = audit_emit_caller(v, c, &ev);
		if (e == 0 && (audit_is_denial(r) || audit_is_integrity(r)))
			e = audit_failure(v, c, path, NULL, level, "open", r);
		audit_denial_recorded = false;
		return e < 0 ? e : r;
	}
	audit_denial_recorded = false;
	ah = calloc(1, sizeof(*ah));
	if (!ah) {
		e = -ENOMEM;
		goto fail;
	}
	pthread_mutex_init(&ah->lock, NULL);
	ah->uid = c ? (uint32_t)c->uid : 0;
	ah->gid = c ? (uint32_t)c->gid : 0;
	ah->pid = c ? (uint32_t)c->pid : 0;
	audit_user_name(v->audit, ah->uid, ah->user);
	audit_process_name(ah->pid, ah->process);
	h->audit = ah;
	audit_handle_level(h, ah->level);
	ev.type = may_create && (h->flags & O_CREAT) ? AUDIT_EV_CREATE : AUDIT_EV_OPEN;
	ev.mode = (uint32_t)flags;
	e = audit_emit_handle(h, &ev);
	if (e == 0)
		return 0;
fail:
	/* Fail closed: the caller gets no handle. */
	(void)vault_release(v, h);
	*hp = NULL;
	return e;
}

/* Add [off, off + len) to a handle's list, merging with a range it
 * touches; past the last slot, the last range grows to cover it. */
static void audit_range_add(struct audit_range *rs, unsigned *n, uint64_t off, uint64_t len)
{
	uint64_t end = off + len;
	struct audit_range *x;

	if (len == 0)
		return;
	for (unsigned i = *n; i-- > 0;) {
		x = &rs[i];
		if (off <= x->off + x->len && end >= x->off) {
			uint64_t xend = x->off + x->len;

			x->off = off < x->off ? off : x->off;
			x->len = (end > xend ? end : xend) - x->off;
			return;
		}
	}
	if (*n < VAULT_AUDIT_RANGES) {
		rs[*n].off = off;
		rs[*n].len = len;
		(*n)++;
		return;
	}
	x = &rs[VAULT_AUDIT_RANGES - 1];
	end = end > x->off + x->len ? end : x->off + x->len;
	x->off = off < x->off ? off : x->off;
	x->len = end - x->off;
}

/* An integrity failure of a handle's read or write. */
static int audit_handle_integrity(struct vault_handle *h, const char *what, uint64_t off, ssize_t n)
{
	char detail[VAULT_AUDIT_DETAIL_BYTES];
	struct audit_event ev = { 0 };

	snprintf(detail, sizeof(detail), "%s at offset %llu: %s", what, (unsigned long long)off,
		 n == -EBADMSG ? "a chunk failed authentication" : "corrupt structure");
	ev.type = AUDIT_EV_INTEGRITY;
	ev.outcome = audit_outcome((int)n);
	ev.detail = detail;
	return audit_emit_handle(h, &ev);
}

ssize_t vault_audit_read(struct vault_handle *h, uint64_t off, ssize_t n)
{
	struct vault_audit_handle *ah = h->audit;
	struct audit_range one;
	struct audit_event ev = { 0 };
	bool first;
	int e;

	if (!ah)
		return n;
	if (n < 0) {
		if (!audit_is_integrity((int)n))
			return n;
		e = audit_handle_integrity(h, "read", off, n);
		return e < 0 ? e : n;
	}
	pthread_mutex_lock(&ah->lock);
	first = !ah->read_seen;
	ah->read_seen = true;
	ah->rbytes += (uint64_t)n;
	audit_range_add(ah->r, &ah->nr, off, (uint64_t)n);
	pthread_mutex_unlock(&ah->lock);
	if (!first)
		return n;
	/* Invariant 2: the first read's record is written before its bytes
	 * are returned. */
	one.off = off;
	one.len = (uint64_t)n;
	ev.type = AUDIT_EV_READ;
	ev.bytes = (uint64_t)n;
	ev.ranges = n > 0 ? &one : NULL;
	ev.nranges = n > 0 ? 1 : 0;
	e = audit_emit_handle(h, &ev);
	if (e < 0) {
		pthread_mutex_lock(&ah->lock);
		ah->read_seen = false; /* the next read tries again */
		pthread_mutex_unlock(&ah->lock);
		return e;
	}
	return n;
}

ssize_t vault_audit_write(struct vault_handle *h, uint64_t off, ssize_t n)
{
	struct vault_audit_handle *ah = h->audit;
	int e;

	if (!ah)
		return n;
	if (n < 0) {
		if (!audit_is_integrity((int)n))
			return n;
		e = audit_handle_integrity(h, "write", off, n);
		return e < 0 ? e : n;
	}
	pthread_mutex_lock(&ah->lock);
	ah->wrote = true;
	ah->wbytes += (uint64_t)n;
	audit_range_add(ah->w, &ah->nw, off, (uint64_t)n);
	pthread_mutex_unlock(&ah->lock);
	return n;
}

int vault_audit_ftruncate(struct vault_handle *h, uint64_t size, int r)
{
	struct audit_event ev = { 0 };
	int e;

	if (!h->audit || (r < 0 && !audit_is_integrity(r)))
		return r;
	if (r < 0) {
		e = audit_handle_integrity(h, "truncate", size, r);
		return e < 0 ? e : r;
	}
	ev.type = AUDIT_EV_TRUNCATE;
	ev.bytes = size;
	e = audit_emit_handle(h, &ev);
	return e < 0 ? e : r;
}

int vault_audit_release(struct vault *v, struct vault_handle *h)
{
	struct vault_audit_handle *ah = h->audit;
	struct audit_event ev = { 0 };
	int r = 0, e;

	if (!ah)
		return 0;
	if (v->audit && ah->read_seen) {
		ev.type = AUDIT_EV_READ_SUMMARY;
		ev.bytes = ah->rbytes;
		ev.ranges = ah->r;
		ev.nranges = ah->nr;
		r = audit_emit_handle(h, &ev);
	}
	if (v->audit && ah->wrote) {
		memset(&ev, 0, sizeof(ev));
		ev.type = AUDIT_EV_WRITE;
		ev.bytes = ah->wbytes;
		ev.ranges = ah->w;
		ev.nranges = ah->nw;
		e = audit_emit_handle(h, &ev);
		if (r == 0)
			r = e;
	}
	pthread_mutex_destroy(&ah->lock);
	free(ah);
	h->audit = NULL;
	return r;
}

/* ---- the trail's life: mount and unmount ---- */

/* A record of the driver itself (mount, key use, unmount). */
static int audit_emit_self(struct vault *v, enum audit_event_type type, const char *level,
			   const char *detail)
{
	struct vault_caller self = { .uid = getuid(), .gid = getgid(), .pid = getpid() };
	struct audit_event ev = { 0 };

	ev.type = type;
	ev.path = "/";
	ev.level = level;
	ev.detail = detail;
	return audit_emit_caller(v, &self, &ev);
}

/* The read-only chains present now (invariant 8): one `chains` record per
 * batch that fits a detail, "ro-ID:SEGMENTS ...". */
static int audit_emit_chains(struct vault *v)
{
	struct vault_audit *a = v->audit;
	struct audit_chain_ent *ch = NULL;
	struct vault_caller self = { .uid = getuid(), .gid = getgid(), .pid = getpid() };
	struct audit_event ev = { 0 };
	char detail[AUDIT_DETAIL_MAX + 1];
	ssize_t n = audit_chain_list(a->dir, &ch);
	size_t len = 0, batch = 0;
	int r = 0;

	if (n < 0)
		return (int)n;
	ev.type = AUDIT_EV_CHAINS;
	ev.path = "/";
	ev.detail = detail;
	for (ssize_t i = 0; i <= n && r == 0; i++) {
		char one[AUDIT_CHAIN_NAME_BYTES + 24];
		int k = i < n ? snprintf(one, sizeof(one), "%s%s:%llu", batch ? " " : "",
					 ch[i].name, (unsigned long long)ch[i].segments)
			      : 0;

		if (batch && (i == n || len + (size_t)k >= sizeof(detail))) {
			ev.bytes = batch;
			r = audit_emit_caller(v, &self, &ev);
			len = batch = 0;
			if (i < n)
				k = snprintf(one, sizeof(one), "%s:%llu", ch[i].name,
					     (unsigned long long)ch[i].segments);
		}
		if (i < n) {
			memcpy(detail + len, one, (size_t)k + 1);
			len += (size_t)k;
			batch++;
		}
	}
	free(ch);
	return r;
}

/* Where this mount writes: STORE/audit for the writer (flocked, invariant
 * 6); a new STORE/audit/ro-ID with its own chain key for a read-only mount. */
static int audit_open_chain(struct vault *v, struct vault_audit *a, const struct audit_opts *ao)
{
	const struct kr_config *cfg = kr_keyring_config(v->kr);
	const unsigned char *chain = kr_vault_subkey(v->kr, KR_VSUB_AUDIT);
	int r;

	r = store_mkdirat(AT_FDCWD, a->dir, 0700);
	if (r < 0 && r != -EEXIST)
		return r;
	if (!a->reader) {
		a->lock_fd = store_openat(AT_FDCWD, a->dir, O_RDONLY | O_DIRECTORY, 0);
		if (a->lock_fd < 0)
			return a->lock_fd;
		if (flock(a->lock_fd, LOCK_EX | LOCK_NB) < 0)
			return errno == EWOULDBLOCK ? -EBUSY : -errno;
		return audit_log_open(a->dir, cfg->vault_id, cfg->audit_pk, chain, ao, &a->log);
	}
	return audit_log_open_ro(a->dir, cfg->vault_id, cfg->audit_pk, chain, ao, a->chain,
				 &a->log);
}

int vault_audit_start(struct vault *v, const struct vault_audit_opts *o)
{
	struct audit_opts ao = { 0 };
	struct vault_audit *a;
	char detail[VAULT_AUDIT_DETAIL_BYTES];
	const char *top;
	int r;

	if (!o || !o->store || v->audit)
		return -EINVAL;
	if (!kr_vault_subkey(v->kr, KR_VSUB_AUDIT))
		return -ENOKEY;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->lock_fd = -1;
	pthread_mutex_init(&a->users_lock, NULL);
	a->fail_open = o->fail_open;
	a->reader = vault_ro(v);
	if (snprintf(a->dir, sizeof(a->dir), "%s/audit", o->store) >= (int)sizeof(a->dir)) {
		r = -ENAMETOOLONG;
		goto fail;
	}
	ao.forward_syslog = o->syslog;
	r = audit_open_chain(v, a, &ao);
	if (r < 0)
		goto fail;
	v->audit = a;
	top = audit_level_name(v, kr_keyring_ceiling(v->kr));
	snprintf(detail, sizeof(detail), "mount%s%s, keyslot %d, levels up to %s, %s%s%s, audit %s",
		 o->mountpoint ? " at " : "", o->mountpoint ? o->mountpoint : "",
		 kr_keyring_slot(v->kr), top, a->reader ? "read-only" : "read-write",
		 a->reader ? ", chain " : "", a->chain, o->fail_open ? "fail-open" : "fail-closed");
	r = audit_emit_self(v, AUDIT_EV_MOUNT, top, detail);
	if (r == 0) {
		snprintf(detail, sizeof(detail), "keyslot %d: level keys up to %s%s",
			 kr_keyring_slot(v->kr), top,
			 kr_keyring_is_admin(v->kr) ? ", audit secret key" : "");
		r = audit_emit_self(v, AUDIT_EV_KEY_USE, top, detail);
	}
	if (r == 0 && !a->reader) {
		r = audit_emit_chains(v);
		__atomic_store_n(&a->chains_at, (int64_t)time(NULL), __ATOMIC_RELEASE);
	}
	if (r < 0) {
		/* Fail closed: no mount without its record. */
		v->audit = NULL;
		(void)audit_log_close(a->log);
		a->log = NULL;
		goto fail;
	}
	return 0;
fail:
	if (a->lock_fd >= 0)
		close(a->lock_fd);
	if (a->log)
		(void)audit_log_close(a->log);
	pthread_mutex_destroy(&a->users_lock);
	free(a);
	return r;
}

int vault_audit_shutdown(struct vault *v, int r)
{
	struct vault_audit *a = v->audit;
	int e;

	if (!a)
		return r;
	if (!a->reader) {
		e = audit_emit_chains(v);
		if (e < 0 && r == 0)
			r = e;
	}
	e = audit_emit_self(v, AUDIT_EV_UNMOUNT, "", r < 0 ? "unmount after an error" : "unmount");
	if (e < 0 && r == 0)
		r = e;
	v->audit = NULL;
	/* Only the unmount record may precede the closing seal (docs/audit.md
	 * section 12). Without it (a full disk; in fail-open mode too) the
	 * segment ends as a crash leaves one and the next mount records the
	 * recovery, rather than a seal over a trail that lost its end. */
	if (__atomic_load_n(&a->failing, __ATOMIC_ACQUIRE)) {
		audit_log_abandon(a->log);
		fprintf(stderr,
			"strongroom: %s: no unmount record: the trail is left unsealed and the "
			"next mount records a recovery\n",
			a->dir);
		e = 0;
	} else {
		e = audit_log_close(a->log);
	}
	if (e < 0) {
		fprintf(stderr, "strongroom: %s: closing the audit trail failed: %s\n", a->dir,
			strerror(-e));
		if (r == 0)
			r = e;
	}
	if (a->lock_fd >= 0)
		close(a->lock_fd);
	pthread_mutex_destroy(&a->users_lock);
	free(a);
	return r;
}
