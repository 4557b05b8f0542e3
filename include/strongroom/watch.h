/* watch.h - watch and respond: freezes, level locks and alerts of a mounted
 * vault (fs/vault/vault_watch.c; docs/admin-guide.md "Incident response").
 *
 * Part of the vault layer (it sees the vault's open files and its audit
 * stream), kept in its own header so that only the driver's control channel
 * and the tests use it. No FUSE types.
 *
 *  - A frozen user's opens fail with -EACCES (recorded as denials) until
 *    unfrozen; handles opened before the freeze keep working. Freezes and
 *    locks are saved in the store and outlive unmount and crashes.
 *  - A locked level's keys are wiped from the driver's keyring at once: its
 *    files and folders become unreadable to everyone, root included, and
 *    handles already open fail with -ENOKEY (EACCES) on their next read or
 *    write. vault_level_unlock gives the keys back from a keyring unlocked
 *    with a secret whose keyslot holds the level.
 *  - Alert rules of the policy (docs/policy.md "Alert rules") are evaluated
 *    on every record written to the audit trail; an alert is an `alert`
 *    record, a syslog line at LOG_WARNING, and the policy's on-alert hook
 *    run in a detached process with the alert as JSON on stdin.
 *
 * Errors: 0/-errno. -EPERM the caller is not an admin, -ENOKEY the level is
 * not held (or already locked), -EINVAL bad arguments.
 */
#ifndef STRONGROOM_WATCH_H
#define STRONGROOM_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "strongroom/keyring.h"
#include "strongroom/vault.h"

#define VAULT_WATCH_FROZEN_MAX 256

/* True if c may use the control channel: uid 0, or a member of the
 * policy's admin group (primary or supplementary). */
bool vault_caller_is_admin(struct vault *v, const struct vault_caller *c);

/* Freeze / unfreeze uid (recorded with by as the actor). Freezing root is
 * refused (-EINVAL): root would lose the means to undo it. -EALREADY:
 * frozen already; -ENODATA: unfreeze of a user not frozen. */
int vault_watch_freeze(struct vault *v, uid_t uid, const struct vault_caller *by, const char *why);
int vault_watch_unfreeze(struct vault *v, uid_t uid, const struct vault_caller *by);
bool vault_watch_frozen(struct vault *v, uid_t uid);
/* Up to cap frozen uids. @return their count (may exceed cap). */
size_t vault_watch_frozen_list(struct vault *v, uid_t *out, size_t cap);

/* Lock level: seal its open files, wipe its keys from kr (which must be the
 * keyring the vault was opened with, -EINVAL otherwise). @return 0,
 * -ENOKEY if kr does not hold it. */
int vault_level_lock(struct vault *v, struct kr_keyring *kr, unsigned level,
		     const struct vault_caller *by) __attribute__((warn_unused_result));
/* Give back every locked level that from holds. @return the number of
 * levels given back (0: from holds none of them), or -errno. */
int vault_level_unlock(struct vault *v, struct kr_keyring *kr, const struct kr_keyring *from,
		       const struct vault_caller *by) __attribute__((warn_unused_result));

/* Bring back the freezes and level locks saved in STORE/watch.state
 * (docs/format.md section 4.5) and save every later change there (not on a
 * read-only mount, whose changes last until unmount). Call once, after the
 * audit trail is open and before the first request; kr as for
 * vault_level_lock. A missing or unauthentic file is an integrity record
 * in the trail and a syslog warning. @return 0; 1 if the file was missing
 * (a writable mount writes an empty one); -EUCLEAN if it does not
 * authenticate or parse, -EOPNOTSUPP for another version: the caller must
 * not serve the vault; or -errno. */
int vault_watch_state_load(struct vault *v, struct kr_keyring *kr, const char *store)
	__attribute__((warn_unused_result));

struct vault_watch_status {
	unsigned open_files;
	unsigned nfrozen;
	uint32_t locked; /* bit per locked level */
	bool audited;	 /* the trail is open */
	uint64_t alerts; /* alerts raised since the mount */
	unsigned nrules; /* alert rules in force */
};
void vault_watch_status(struct vault *v, struct vault_watch_status *st);

/* The alert hook's commands run with this environment only. */
#define VAULT_WATCH_HOOK_PATH "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

/* ---- the key rotation of a level while mounted (strongroom rotate) ----
 *
 * The driver of a writable mount rotates one level of its own store: full
 * is a keyring the admin's secret unlocked from the store (borrowed until
 * end: it holds the root keys the key bag needs), kr the driver's own,
 * which takes the new key at the end. Between begin and end every
 * operation of the vault waits (none is refused): the caller, one thread,
 * calls step until it returns 0 and may report the counters between steps.
 * Errors: -EBUSY a read-only mount of the store runs; -EALREADY the
 * unfinished rotation of another level; -ENOKEY the level is not held or
 * is locked; -EROFS a read-only mount; else as vault_rotate_step. After a
 * failure the store resumes offline (docs/admin-guide.md). */
struct vault_live_rotate;
struct vault_rotate_stats;

int vault_live_rotate_begin(struct vault *v, struct kr_keyring *kr, struct kr_keyring *full,
			    const char *store, unsigned level, const struct vault_caller *by,
			    struct vault_live_rotate **out) __attribute__((warn_unused_result));
/* @return 1 more to do, 0 the walk is done, -errno. */
int vault_live_rotate_step(struct vault_live_rotate *lr);
const struct vault_rotate_stats *vault_live_rotate_stats(const struct vault_live_rotate *lr);
/* Store path of the object the last failing step met ("" if none). */
const char *vault_live_rotate_where(const struct vault_live_rotate *lr);
/* The key generation the level moves to. */
uint32_t vault_live_rotate_generation(const struct vault_live_rotate *lr);
/* err 0 (every step done): finish (the new key in use, the old one
 * destroyed); else record the stop. Frees lr. @return 0 or -errno. */
int vault_live_rotate_end(struct vault_live_rotate *lr, int err);

#endif
