/* frontend.h - serve a vault at a mount point, and find mounted vaults.
 *
 * fe_run is the FUSE frontend: it mounts an open vault, maps each kernel
 * request to one vault call and one reply, and returns after the vault is
 * unmounted or the process gets SIGTERM/SIGINT/SIGHUP. FUSE types stay
 * behind this header: the command line links it without including fuse.h.
 *
 * The rest of this header is the mount bookkeeping the command line shares
 * (mount, unmount, status): the kernel's mount table, and one runtime file
 * per running driver under FE_RUNTIME_DIR ("key=value" lines, written by the
 * driver once the mount is up, removed when it exits).
 *
 * Errors: 0/-errno.
 */
#ifndef STRONGROOM_FRONTEND_H
#define STRONGROOM_FRONTEND_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include "strongroom/vault.h"

#define FE_FSTYPE      "fuse.strongroom"
#define FE_SUBTYPE     "strongroom"
#define FE_RUNTIME_DIR "/run/strongroom"
/* The largest write the frontend asks the kernel for (the kernel may cap
 * it at its max_pages limit). */
#define FE_MAX_WRITE_BYTES (1u << 20)

struct fe_options {
	const char *mountpoint; /* absolute */
	const char *fsname;	/* shown as the mount source: the store path */
	const char *fuse_opts;	/* extra comma-separated -o options, or NULL */
	bool allow_other;
	bool read_only;
	bool debug; /* libfuse request tracing to stderr (foreground only) */
	/* -1, or a descriptor that receives one zero byte once the kernel's
	 * INIT has been answered (the mount is ready). fe_run closes it in
	 * every case, so a reader sees either the byte or end-of-file. */
	int ready_fd;
	/* -1, or a descriptor dup'ed over stderr right after ready_fd is
	 * signalled (a daemonized driver logs there, never to a terminal). */
	int log_fd;
	/* Refusals the kernel decides itself (mode bits, ACLs) into the trail
	 * through the kernel's audit subsystem (docs/audit.md "Denials"). */
	enum fe_kernel_denials {
		FE_KDENIALS_AUTO, /* when the kernel's audit is on */
		FE_KDENIALS_ON,	  /* required: the mount fails without */
		FE_KDENIALS_OFF,
	} kernel_denials;
};

/* Mount v (borrowed, stays open) and serve it until unmounted or signalled;
 * vault_sync() before returning. @return 0 after a clean stop, or -errno if
 * the mount could not be made (a message has been printed to stderr). */
int fe_run(struct vault *v, const struct fe_options *o);

/* One entry of the kernel's mount table. */
struct fe_mount {
	char source[PATH_MAX];
	char mountpoint[PATH_MAX];
	char fstype[64];
	bool read_only;
};

/* Find the mount whose mount point is path (canonical, absolute).
 * @return 0 and *out, -ENOENT if nothing is mounted there. */
int fe_mount_find(const char *path, struct fe_mount *out);
/* Visit every mount of type FE_FSTYPE; stops early if fn returns non-zero.
 * @return 0, fn's non-zero value, or -errno. */
int fe_mount_each(int (*fn)(const struct fe_mount *m, void *arg), void *arg);

/* What a running driver says about itself. */
struct fe_runtime {
	pid_t pid;
	bool read_only;
	char store[PATH_MAX];
	char mountpoint[PATH_MAX];
	char log[PATH_MAX]; /* "" when logging to syslog */
};

/* Write (atomically) FE_RUNTIME_DIR/<pid>.run for rt; out_path receives its
 * path (cap PATH_MAX) so the driver can remove it with fe_runtime_remove. */
int fe_runtime_write(const struct fe_runtime *rt, char *out_path);
void fe_runtime_remove(const char *path);
/* The runtime file of a live driver serving mountpoint. Stale files (the
 * driver is gone) are ignored. @return 0, or -ENOENT. */
int fe_runtime_find(const char *mountpoint, struct fe_runtime *out);
/* True while some thread of pid is alive and not a zombie: a killed driver
 * holds its files (and the store lock) until its last thread is gone. */
bool fe_pid_running(pid_t pid);
/* The directory runtime files live in: FE_RUNTIME_DIR for root, else
 * $XDG_RUNTIME_DIR/strongroom or /tmp/strongroom-<uid>. Borrowed, static. */
const char *fe_runtime_dir(void);

#endif
