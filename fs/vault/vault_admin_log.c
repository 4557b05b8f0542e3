/* vault_admin_log.c - the audit records of offline administration: key
 * rotation and fsck repair (admin.h "the trail of offline work").
 *
 * rotate and fsck --repair run with no driver on the store (they hold the
 * store lock exclusively), so nobody else writes the trail: the command
 * opens it itself, as a driver does at mount (docs/audit.md section 8), and
 * its records join the same chain, so `audit verify` covers them.
 *
 * Invariants:
 *  1. One writer per trail, as for drivers (vault_audit.c invariant 6): the
 *     trail's directory is flock()ed exclusively while the log is open; a
 *     second writer gets -EBUSY.
 *  2. The records name the admin process (uid, gid, pid; user and process
 *     names resolved by the library), never a caller inside a mount.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

#include "strongroom/admin.h"
#include "strongroom/audit.h"
#include "strongroom/store.h"

struct vault_admin_log {
	struct audit_log *log;
	int lock_fd;
};

int vault_admin_log_open(const char *store, const struct kr_keyring *kr,
			 struct vault_admin_log **out)
{
	const struct kr_config *cfg = kr_keyring_config(kr);
	const unsigned char *chain = kr_vault_subkey(kr, KR_VSUB_AUDIT);
	struct audit_opts ao = {.resolve_names = true};
	struct vault_admin_log *l;
	char dir[PATH_MAX];
	int r;

	*out = NULL;
	if (!chain)
		return -ENOKEY;
	if (snprintf(dir, sizeof(dir), "%s/audit", store) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->lock_fd = -1;
	r = store_mkdirat(AT_FDCWD, dir, 0700);
	if (r < 0 && r != -EEXIST)
		goto fail;
	l->lock_fd = store_openat(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY, 0);
	if (l->lock_fd < 0) {
		r = l->lock_fd;
		goto fail;
	}
	if (flock(l->lock_fd, LOCK_EX | LOCK_NB) < 0) { /* invariant 1 */
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		goto fail;
	}
	r = audit_log_open(dir, cfg->vault_id, cfg->audit_pk, chain, &ao, &l->log);
	if (r < 0)
		goto fail;
	*out = l;
	return 0;
fail:
	if (l->lock_fd >= 0)
		store_close(l->lock_fd);
	free(l);
	return r;
}

int vault_admin_log_write(struct vault_admin_log *l, enum audit_event_type type, const char *path,
			  const char *path2, const char *level, uint64_t bytes, int err,
			  const char *detail)
{
	struct audit_event ev = {0};

	ev.type = type;
	ev.uid = (uint32_t)getuid();
	ev.gid = (uint32_t)getgid();
	ev.pid = (uint32_t)getpid();
	ev.path = path && path[0] ? path : "/";
	ev.path2 = path2;
	ev.level = level;
	ev.detail = detail;
	ev.outcome = err < 0 ? -err : err;
	ev.bytes = bytes;
	return audit_log_write(l->log, &ev);
}

int vault_admin_log_close(struct vault_admin_log *l)
{
	int r;

	if (!l)
		return 0;
	r = audit_log_close(l->log);
	store_close(l->lock_fd);
	free(l);
	return r;
}
