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
 *  6. Freezes and locks outlive the mount (docs/format.md section 4.5):
 *     vault_watch_state_load applies STORE/watch.state before the first
 *     request, and every change is applied in memory first, then saved
 *     (w->save serializes saves), so a failed save can only leave the
 *     store stricter than memory was, never laxer. A level this mount does
 *     not hold stays in the saved state (w->locked_other) until a secret
 *     holding it unlocks it.
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
#define WATCH_TRACK_MAX	  128
#define WATCH_FILES_MAX	  256 /* distinct files remembered per tracker */
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
	/* Invariant 6: the saved state. */
	pthread_mutex_t save;
	bool persist;		 /* a writable mount that loaded watch.state */
	uint32_t locked_other;	 /* locked levels this mount never held (under lock) */
	uint64_t generation;	 /* of the last state read or written (under save) */
	const struct kr_keyring *kr;
	char store[4096];
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
	pthread_mutex_init(&w->save, NULL);
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
	pthread_mutex_destroy(&w->save);
	pthread_rwlock_destroy(&w->keys);
	pthread_mutex_destroy(&w->lock);
	free(w->rules);
	free(w);
	v->watch = NULL;
}

/* ---- who may steer the driver ---- */

bool vault_caller_is_admin(struct vault *v, const struct vault_caller *c)
{
	struct pol_caller pc = {c->uid, c->gid, c->groups, c->ngroups};
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
int vault_watch_record(struct vault *v, const struct vault_caller *by, enum audit_event_type type,
		       const char *level, const char *detail)
{
	struct vault_caller self = {.uid = getuid(), .gid = getgid(), .pid = getpid()};
	struct audit_event ev = {0};

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

/* Save the freezes and locks now in force (invariant 6). @return 0 or
 * -errno; without a loaded state (read-only mount, unit tests) 0. */
static int watch_save(struct vault *v)
{
	struct vault_watch *w = v->watch;
	struct kr_watch_state *st;
	int r;

	if (!w->persist)
		return 0;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	pthread_mutex_lock(&w->save);
	pthread_mutex_lock(&w->lock);
	st->locked = __atomic_load_n(&w->locked, __ATOMIC_ACQUIRE) | w->locked_other;
	st->nfrozen = w->nfrozen;
	for (unsigned i = 0; i < w->nfrozen; i++)
		st->frozen[i] = (uint32_t)w->frozen[i];
	pthread_mutex_unlock(&w->lock);
	st->generation = w->generation;
	r = kr_watch_save(w->store, w->kr, st);
	if (r == 0)
		w->generation = st->generation;
	else
		fprintf(stderr, "strongroom: %s/%s: cannot save freezes and locks: %s\n", w->store,
			KR_WATCH_NAME, strerror(-r));
	pthread_mutex_unlock(&w->save);
	free(st);
	return r;
}

int vault_watch_freeze(struct vault *v, uid_t uid, const struct vault_caller *by, const char *why)
{
	char detail[256];
	int r, e;

	if (uid == 0)
		return -EINVAL;
	r = freeze_set(v, uid, true);
	if (r < 0)
		return r;
	snprintf(detail, sizeof(detail), "freeze uid %u: further opens are refused%s%s",
		 (unsigned)uid, why ? ": " : "", why ? why : "");
	r = vault_watch_record(v, by, AUDIT_EV_ALERT, "", detail);
	e = watch_save(v);
	return e < 0 ? e : r;
}

int vault_watch_unfreeze(struct vault *v, uid_t uid, const struct vault_caller *by)
{
	char detail[128];
	int r, e;

	r = freeze_set(v, uid, false);
	if (r < 0)
		return r;
	snprintf(detail, sizeof(detail), "unfreeze uid %u", (unsigned)uid);
	r = vault_watch_record(v, by, AUDIT_EV_ALERT, "", detail);
	e = watch_save(v);
	return e < 0 ? e : r;
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
int vault_watch_seal_level(struct vault *v, unsigned level)
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

/* Lock level; why ends the record's detail. */
static int level_lock(struct vault *v, struct kr_keyring *kr, unsigned level,
		      const struct vault_caller *by, const char *why)
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
	r = vault_watch_seal_level(v, level);
	if (r < 0)
		fprintf(stderr,
			"strongroom: lock %s: sealing its open files failed: %s; "
			"writes since their last seal are lost\n",
			level_name(v, level), strerror(-r));
	r = kr_level_forget(kr, level);
	vault_dcache_drop(v, "/");
	pthread_rwlock_unlock(&v->ns);
	pthread_rwlock_unlock(&w->keys);
	if (r < 0)
		goto out;
	snprintf(detail, sizeof(detail),
		 "level %s locked: its keys were wiped from the driver's memory%s",
		 level_name(v, level), why);
	r = vault_watch_record(v, by, AUDIT_EV_KEY_USE, level_name(v, level), detail);
	syslog(LOG_AUTHPRIV | LOG_WARNING, "strongroom: %s", detail);
out:
	pthread_mutex_unlock(&w->admin);
	return r;
}

int vault_watch_quiesce(struct vault *v, unsigned level)
{
	struct vault_watch *w = v->watch;

	if (!w)
		return -EINVAL;
	pthread_mutex_lock(&w->admin);
	if (level_locked(w, level)) {
		pthread_mutex_unlock(&w->admin);
		return -ENOKEY;
	}
	pthread_rwlock_wrlock(&w->keys);
	pthread_rwlock_wrlock(&v->ns);
	return 0;
}

void vault_watch_resume(struct vault *v)
{
	struct vault_watch *w = v->watch;

	pthread_rwlock_unlock(&v->ns);
	pthread_rwlock_unlock(&w->keys);
	pthread_mutex_unlock(&w->admin);
}

int vault_watch_lock_now(struct vault *v, struct kr_keyring *kr, unsigned level,
			 const struct vault_caller *by, const char *why)
{
	return level_lock(v, kr, level, by, why);
}

int vault_level_lock(struct vault *v, struct kr_keyring *kr, unsigned level,
		     const struct vault_caller *by)
{
	int r = level_lock(v, kr, level, by, ""), e;

	if (r < 0)
		return r;
	e = watch_save(v);
	return e < 0 ? e : r;
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
		bool other;

		pthread_mutex_lock(&w->lock);
		other = (w->locked_other & (1u << l)) && kr_level_held(from, l);
		if (other)
			w->locked_other &= ~(1u << l); /* nothing to give back here */
		pthread_mutex_unlock(&w->lock);
		if (other) {
			n++;
			snprintf(detail, sizeof(detail),
				 "level %s unlocked by keyslot %d (this mount does not hold it)",
				 level_name(v, l), kr_keyring_slot(from));
			r = vault_watch_record(v, by, AUDIT_EV_KEY_USE, level_name(v, l), detail);
			continue;
		}
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
		r = vault_watch_record(v, by, AUDIT_EV_KEY_USE, level_name(v, l), detail);
		syslog(LOG_AUTHPRIV | LOG_NOTICE, "strongroom: %s", detail);
	}
	pthread_mutex_unlock(&w->admin);
	if (n > 0) {
		int e = watch_save(v);
		if (e < 0 && r == 0)
			r = e;
	}
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
	st->locked |= w->locked_other;
	st->nfrozen = w->nfrozen;
	st->alerts = w->alerts;
	st->nrules = w->nrules;
	pthread_mutex_unlock(&w->lock);
}

/* ---- the saved state (invariant 6) ---- */

int vault_watch_state_load(struct vault *v, struct kr_keyring *kr, const char *store)
{
	struct vault_watch *w = v->watch;
	struct kr_watch_state *st;
	struct audit_event ev = {0};
	struct vault_caller self = {.uid = getuid(), .gid = getgid(), .pid = getpid()};
	char detail[256];
	int r, n;

	if (!w || kr != v->kr)
		return -EINVAL;
	n = snprintf(w->store, sizeof(w->store), "%s", store);
	if (n < 0 || (size_t)n >= sizeof(w->store))
		return -ENAMETOOLONG;
	w->kr = kr;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	r = kr_watch_load(store, kr, st);
	if (r == -ENOENT || r == -EUCLEAN || r == -EOPNOTSUPP) {
		/* Deleted or edited by someone without a secret, or damaged:
		 * an integrity event either way. */
		ev.type = AUDIT_EV_INTEGRITY;
		ev.path = "/";
		ev.outcome = r;
		ev.detail = r == -ENOENT ? KR_WATCH_NAME " is missing: freezes and level locks "
						 "of earlier mounts, if any, are lifted"
					 : KR_WATCH_NAME " failed authentication (edited, damaged "
						 "or from another vault): refusing to mount";
		vault_audit_emit(v, &self, &ev);
		syslog(LOG_AUTHPRIV | LOG_WARNING, "strongroom: %s: %s", store, ev.detail);
	}
	if (r == -ENOENT) {
		w->persist = !vault_ro(v);
		memset(st, 0, sizeof(*st));
		r = watch_save(v);
		free(st);
		return r < 0 ? r : 1;
	}
	if (r < 0) {
		free(st);
		return r;
	}
	w->generation = st->generation;
	for (unsigned i = 0; i < st->nfrozen; i++)
		if (st->frozen[i] != 0)
			freeze_set(v, (uid_t)st->frozen[i], true);
	for (unsigned l = 0; l < KR_MAX_LEVELS && r == 0; l++) {
		if (!(st->locked & (1u << l)))
			continue;
		if (!kr_level_held(kr, l)) {
			pthread_mutex_lock(&w->lock);
			w->locked_other |= 1u << l;
			pthread_mutex_unlock(&w->lock);
			continue;
		}
		r = level_lock(v, kr, l, &self, ", and stays so (" KR_WATCH_NAME ")");
	}
	if (r == 0 && st->nfrozen) {
		snprintf(detail, sizeof(detail),
			 "%u user%s stay%s frozen (" KR_WATCH_NAME " generation %llu)", st->nfrozen,
			 st->nfrozen == 1 ? "" : "s", st->nfrozen == 1 ? "s" : "",
			 (unsigned long long)st->generation);
		r = vault_watch_record(v, &self, AUDIT_EV_ALERT, "", detail);
	}
	free(st);
	w->persist = !vault_ro(v);
	return r;
}

/* ---- alert rules ---- */

const struct pol_when *vault_watch_when(const struct pol_policy *p, struct pol_when *w)
{
	struct tm tm;
	time_t t;
	bool any = false;

	for (unsigned i = 0; p && i < p->nroles && !any; i++)
		any = p->roles[i].hours.days != 0;
	if (!any)
		return NULL;
	t = time(NULL);
	if (!localtime_r(&t, &tm))
		return NULL;
	w->wday = tm.tm_wday;
	w->minute = tm.tm_hour * 60 + tm.tm_min;
	return w;
}

void vault_watch_rules_load(struct vault *v)
{
	struct vault_watch *w = v->watch;
	const struct pol_policy *p = v->policy;
	struct pol_alert *rules = NULL;
	unsigned n = p ? p->nalerts : 0;

	if (!w)
		return;
	if (n) {
		rules = calloc(n, sizeof(*rules));
		if (!rules) {
			fprintf(stderr, "strongroom: alert rules not loaded: out of memory\n");
			n = 0;
		} else {
			memcpy(rules, p->alerts, n * sizeof(*rules));
		}
	}
	pthread_mutex_lock(&w->lock);
	free(w->rules);
	w->rules = rules;
	snprintf(w->hook, sizeof(w->hook), "%s", p ? p->on_alert : "");
	memset(w->track, 0, sizeof(w->track));
	__atomic_store_n(&w->nrules, n, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&w->lock);
}

/* One alert on its way out (built under w->lock, raised without it). */
struct watch_alert {
	unsigned rule;
	char name[POL_NAME_MAX + 1];
	const char *kind;
	bool freeze;
	uint64_t time_us;
	struct vault_caller who;
	char user[AUDIT_NAME_MAX + 1];
	char process[AUDIT_NAME_MAX + 1];
	char path[AUDIT_PATH_MAX + 1];
	char level[AUDIT_LEVEL_MAX + 1];
	char detail[512];
	char hook[POL_PATH_MAX + 1];
};

#define WATCH_ALERTS_PER_EVENT 4

static uint64_t path_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (; s && *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* The tracker of (rule, uid), its window restarted if it has passed. */
static struct watch_track *track_get(struct vault_watch *w, unsigned rule, uint32_t uid,
				     uint64_t now, uint32_t window_sec)
{
	struct watch_track *t = NULL, *oldest = &w->track[0];
	uint64_t win = (uint64_t)(window_sec ? window_sec : 60) * 1000000u;

	for (unsigned i = 0; i < WATCH_TRACK_MAX; i++) {
		struct watch_track *x = &w->track[i];

		if (x->used && x->rule == rule && x->uid == uid) {
			t = x;
			break;
		}
		if (!x->used || (oldest->used && x->start_us < oldest->start_us))
			oldest = x;
	}
	if (!t) {
		t = oldest;
		memset(t, 0, sizeof(*t));
		t->used = true;
		t->rule = rule;
		t->uid = uid;
		t->start_us = now;
	}
	if (now - t->start_us > win || now < t->start_us) {
		t->start_us = now;
		t->count = t->bytes = 0;
		t->nfiles = 0;
		t->fired = false;
	}
	return t;
}

static int level_index(const struct vault *v, const char *name)
{
	const struct kr_config *cfg = kr_keyring_config(v->kr);

	for (unsigned i = 0; name && i < cfg->nlevels; i++)
		if (strcmp(cfg->levels[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* Does rule r fire on ev? detail gets why. (w->lock held) */
static bool rule_fires(struct vault *v, struct vault_watch *w, unsigned ri,
		       const struct audit_event *ev, uint64_t now, char *detail, size_t cap)
{
	const struct pol_alert *r = &w->rules[ri];
	bool opened =
	    (ev->type == AUDIT_EV_OPEN || ev->type == AUDIT_EV_CREATE) && ev->outcome == 0;
	struct watch_track *t;
	unsigned win = r->window_sec ? r->window_sec : 60;

	if (r->kind == POL_ALERT_INTEGRITY) {
		if (ev->type != AUDIT_EV_INTEGRITY)
			return false;
		snprintf(detail, cap, "integrity failure on %s: %s", ev->path ? ev->path : "?",
			 ev->detail ? ev->detail : "");
		return true;
	}
	if (ev->uid == 0)
		return false; /* root's own work (and the driver's) does not count */
	switch (r->kind) {
	case POL_ALERT_BULK_READ:
		if (!(opened && (ev->mode & O_ACCMODE) != O_WRONLY) &&
		    !(ev->type == AUDIT_EV_READ_SUMMARY && ev->bytes))
			return false;
		t = track_get(w, ri, ev->uid, now, r->window_sec);
		if (ev->type == AUDIT_EV_READ_SUMMARY) {
			t->bytes += ev->bytes;
		} else {
			uint64_t h = path_hash(ev->path);
			unsigned i;

			for (i = 0; i < t->nfiles && t->files[i] != h; i++)
				;
			if (i == t->nfiles) {
				if (t->nfiles < WATCH_FILES_MAX)
					t->files[t->nfiles++] = h;
				t->count++;
			}
		}
		if (t->fired ||
		    !((r->files && t->count > r->files) || (r->bytes && t->bytes > r->bytes)))
			return false;
		t->fired = true;
		snprintf(detail, cap,
			 "bulk reading: %llu distinct files and %llu bytes read within %u s "
			 "(limit: %llu files, %llu bytes)",
			 (unsigned long long)t->count, (unsigned long long)t->bytes, win,
			 (unsigned long long)r->files, (unsigned long long)r->bytes);
		return true;
	case POL_ALERT_OFF_HOURS: {
		struct pol_when when;
		struct tm tm;
		time_t secs = (time_t)(now / 1000000u);
		char hours[64];

		if (!opened || !localtime_r(&secs, &tm))
			return false;
		when.wday = tm.tm_wday;
		when.minute = tm.tm_hour * 60 + tm.tm_min;
		if (pol_hours_contain(&r->hours, &when))
			return false;
		t = track_get(w, ri, ev->uid, now, r->window_sec);
		if (t->fired)
			return false;
		t->fired = true;
		pol_hours_format(&r->hours, hours, sizeof(hours));
		snprintf(detail, cap, "access outside allowed hours (%s): %s at %02d:%02d", hours,
			 ev->path ? ev->path : "?", tm.tm_hour, tm.tm_min);
		return true;
	}
	case POL_ALERT_DENIALS:
		if (ev->type != AUDIT_EV_DENIAL)
			return false;
		t = track_get(w, ri, ev->uid, now, r->window_sec);
		t->count++;
		if (t->fired || t->count <= r->count)
			return false;
		t->fired = true;
		snprintf(detail, cap,
			 "burst of denials: %llu within %u s (limit %llu), the last on %s",
			 (unsigned long long)t->count, win, (unsigned long long)r->count,
			 ev->path ? ev->path : "?");
		return true;
	case POL_ALERT_PROCESS: {
		int lv = level_index(v, ev->level);
		unsigned i;

		if (!opened || !ev->process || (r->level != POL_NONE && lv < r->level))
			return false;
		for (i = 0; i < r->nprocs && strcmp(r->procs[i], ev->process) != 0; i++)
			;
		if (i == r->nprocs)
			return false;
		snprintf(detail, cap, "%s opened by a denied process (%s, pid %u)",
			 ev->path ? ev->path : "?", ev->process, ev->pid);
		return true;
	}
	default:
		return false;
	}
}

static void json_str(char *out, size_t cap, size_t *len, const char *s)
{
	size_t n = *len;

#define PUT(c)                                                                                     \
	do {                                                                                       \
		if (n + 1 < cap)                                                                   \
			out[n] = (c);                                                              \
		n++;                                                                               \
	} while (0)
	PUT('"');
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		if (*p == '"' || *p == '\\') {
			PUT('\\');
			PUT((char)*p);
		} else if (*p < 0x20 || *p == 0x7f) {
			char u[8];

			snprintf(u, sizeof(u), "\\u%04x", *p);
			for (int i = 0; u[i]; i++)
				PUT(u[i]);
		} else {
			PUT((char)*p);
		}
	}
	PUT('"');
#undef PUT
	if (n < cap)
		out[n] = '\0';
	else if (cap)
		out[cap - 1] = '\0';
	*len = n;
}

/* The alert as one JSON object (docs/admin-guide.md "Incident response"). */
static size_t alert_json(const struct watch_alert *a, char *out, size_t cap)
{
	struct tm tm;
	time_t secs = (time_t)(a->time_us / 1000000u);
	char when[40];
	size_t n = 0;

#define RAW(...)                                                                                   \
	do {                                                                                       \
		int m = snprintf(out + (n < cap ? n : cap), n < cap ? cap - n : 0, __VA_ARGS__);   \
		if (m > 0)                                                                         \
			n += (size_t)m;                                                            \
	} while (0)
	gmtime_r(&secs, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	RAW("{\"event\": \"alert\", \"rule\": ");
	json_str(out, cap, &n, a->name);
	RAW(", \"when\": \"%s\", \"time\": \"%s.%06uZ\", \"uid\": %u, \"user\": ", a->kind, when,
	    (unsigned)(a->time_us % 1000000u), (unsigned)a->who.uid);
	json_str(out, cap, &n, a->user);
	RAW(", \"pid\": %u, \"process\": ", (unsigned)a->who.pid);
	json_str(out, cap, &n, a->process);
	RAW(", \"path\": ");
	json_str(out, cap, &n, a->path);
	RAW(", \"level\": ");
	json_str(out, cap, &n, a->level);
	RAW(", \"action\": \"%s\", \"detail\": ", a->freeze && a->who.uid ? "freeze" : "log");
	json_str(out, cap, &n, a->detail);
	RAW("}\n");
#undef RAW
	return n < cap ? n : cap - 1;
}

/* Invariant 5: write the input, then fork twice and exec the hook. */
static void hook_run(const char *hook, const char *json, size_t len)
{
	char *const argv[] = {(char *)hook, NULL};
	char *const envp[] = {(char *)VAULT_WATCH_HOOK_PATH, (char *)"LANG=C.UTF-8", NULL};
	int p[2], devnull;
	pid_t child;

	if (pipe2(p, O_CLOEXEC) != 0)
		return;
	if (write(p[1], json, len) != (ssize_t)len) {
		close(p[0]);
		close(p[1]);
		return;
	}
	close(p[1]);
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC); /* lint: not the store */
	child = fork();
	if (child == 0) {
		/* Only async-signal-safe calls from here: we are a copy of a
		 * threaded process. */
		if (fork() != 0)
			_exit(0);
		setsid();
		if (dup2(p[0], 0) < 0)
			_exit(126);
		if (devnull >= 0) {
			dup2(devnull, 1);
			dup2(devnull, 2);
		}
		execve(hook, argv, envp);
		_exit(127);
	}
	close(p[0]);
	if (devnull >= 0)
		close(devnull);
	if (child > 0)
		while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
			;
}

static void alert_raise(struct vault *v, struct watch_alert *a)
{
	struct audit_event ev = {0};
	char json[WATCH_ALERT_BYTES];
	char detail[AUDIT_DETAIL_MAX + 1];
	size_t n;

	snprintf(detail, sizeof(detail), "rule %s (%s): %s%s", a->name, a->kind, a->detail,
		 a->freeze && a->who.uid ? "; the user is frozen" : "");
	ev.type = AUDIT_EV_ALERT;
	ev.path = a->path;
	ev.level = a->level;
	ev.detail = detail;
	if (vault_audit_emit(v, &a->who, &ev) < 0)
		fprintf(stderr, "strongroom: alert %s could not be recorded in the trail\n",
			a->name);
	syslog(LOG_AUTHPRIV | LOG_WARNING, "strongroom alert: uid %u (%s): %s",
	       (unsigned)a->who.uid, a->user, detail);
	if (a->freeze && a->who.uid && !vault_watch_frozen(v, a->who.uid)) {
		char why[POL_NAME_MAX + 32];

		snprintf(why, sizeof(why), "alert rule %s", a->name);
		(void)vault_watch_freeze(v, a->who.uid, NULL, why);
	}
	if (a->hook[0]) {
		n = alert_json(a, json, sizeof(json));
		hook_run(a->hook, json, n);
	}
}

void vault_watch_event(struct vault *v, const struct audit_event *ev)
{
	struct vault_watch *w = v->watch;
	struct watch_alert *out = NULL;
	unsigned nout = 0;
	uint64_t now;
	char detail[512];

	if (!w || __atomic_load_n(&w->nrules, __ATOMIC_ACQUIRE) == 0)
		return;
	switch (ev->type) {
	case AUDIT_EV_OPEN:
	case AUDIT_EV_CREATE:
	case AUDIT_EV_READ_SUMMARY:
	case AUDIT_EV_DENIAL:
	case AUDIT_EV_INTEGRITY:
		break;
	default:
		return; /* alerts, seals, mounts, key use: not watched */
	}
	now = ev->time_us ? ev->time_us : now_us();
	pthread_mutex_lock(&w->lock);
	for (unsigned i = 0; i < w->nrules && nout < WATCH_ALERTS_PER_EVENT; i++) {
		struct watch_alert *a;

		if (!rule_fires(v, w, i, ev, now, detail, sizeof(detail)))
			continue;
		if (!out)
			out = calloc(WATCH_ALERTS_PER_EVENT, sizeof(*out));
		if (!out)
			break;
		a = &out[nout++];
		a->rule = i;
		snprintf(a->name, sizeof(a->name), "%s", w->rules[i].name);
		a->kind = pol_alert_kind_name(w->rules[i].kind);
		a->freeze = w->rules[i].freeze;
		a->time_us = now;
		a->who.uid = ev->uid;
		a->who.gid = ev->gid;
		a->who.pid = (pid_t)ev->pid;
		snprintf(a->user, sizeof(a->user), "%s", ev->user ? ev->user : "");
		snprintf(a->process, sizeof(a->process), "%s", ev->process ? ev->process : "");
		snprintf(a->path, sizeof(a->path), "%s", ev->path ? ev->path : "");
		snprintf(a->level, sizeof(a->level), "%s", ev->level ? ev->level : "");
		snprintf(a->detail, sizeof(a->detail), "%s", detail);
		snprintf(a->hook, sizeof(a->hook), "%s", w->hook);
		w->alerts++;
	}
	pthread_mutex_unlock(&w->lock);
	for (unsigned i = 0; i < nout; i++)
		alert_raise(v, &out[i]);
	free(out);
}
