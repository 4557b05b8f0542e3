/* fe_kaudit.h - refusals the kernel decides itself, into the vault's trail.
 *
 * The frontend mounts with default_permissions (the kernel checks mode bits
 * and POSIX ACLs from the attributes it caches), so an open or a change the
 * kernel refuses never reaches the driver. The kernel's own audit subsystem
 * does see them: while a mount runs, the driver (root) keeps two audit rules
 * that report the syscalls failing with EACCES or EPERM on an inode of this
 * mount's device, reads the records from the audit multicast group, and
 * writes one `denial` record per refusal into the vault's trail with the
 * caller's uid, gid, pid and process name as the kernel recorded them.
 *
 * Invariants:
 *  1. The driver changes nothing of the host's audit state but its own
 *     rules: it never turns auditing on. With the kernel's audit off,
 *     locked, or missing, or without root, nothing is recorded (and a mount
 *     that asked for it fails).
 *  2. The rules carry the key "strongroom:<pid>:<major>:<minor>"; they are
 *     removed at unmount, and a driver that starts removes the rules of
 *     drivers that are gone (a SIGKILL leaves its rules behind).
 *  3. A record names the file the kernel checked by its inode, through the
 *     frontend's table of known inodes (a refused open has just looked the
 *     file up); failing that, by the name the process used.
 *
 * The record parser is pure (no I/O) and fuzzed: tests/fuzz/fuzz_kaudit.c.
 */
#ifndef STRONGROOM_FE_KAUDIT_H
#define STRONGROOM_FE_KAUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "strongroom/vault.h"

/* ---- the record parser ---- */

/* The serial of one audit record ("audit(SECONDS.MILLIS:SERIAL): ..."),
 * or 0. */
uint64_t fe_kaudit_serial(const char *text, size_t len);
/* The value of field name in one record, decoded (quoted or hex), into out
 * (NUL-terminated). "(null)" decodes to "". @return its length, -1 if the
 * field is absent or does not fit. */
int fe_kaudit_field(const char *text, size_t len, const char *name, char *out, size_t cap);

/* ---- the bridge ---- */

/* The frontend's name for an inode of the mount (st_ino), plus "/name" if
 * name; NULL if it does not know it. Malloc'd. */
typedef char *(*fe_kaudit_path_fn)(void *ctx, uint64_t ino, const char *name);

struct fe_kaudit;

/* Start for the mount at mountpoint (already mounted). @return 0 and *out
 * (NULL when not recording: *why then says why), or -errno with *why. */
int fe_kaudit_start(struct vault *v, const char *mountpoint, fe_kaudit_path_fn path_of, void *ctx,
		    struct fe_kaudit **out, const char **why);
/* Remove the rules, stop the thread, free. Accepts NULL. */
void fe_kaudit_stop(struct fe_kaudit *k);

#endif
