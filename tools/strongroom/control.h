/* control.h - the control channel between the command line and a running
 * driver (freeze, unfreeze, lock, unlock, rotate, status).
 *
 * The driver listens on a Unix socket in its runtime directory
 * (FE_RUNTIME_DIR for root), named after its mount point. Anyone may
 * connect; the driver asks the kernel who did (SO_PEERCRED, SO_PEERGROUPS)
 * and serves only root or a member of the vault's admin group. One request
 * per connection: a command line, optionally followed by a secret (unlock),
 * then the client shuts its writing side; the reply is "ok TEXT" or
 * "err ERRNO TEXT", and for status key=value lines after "ok".
 */
#ifndef STRONGROOM_CONTROL_H
#define STRONGROOM_CONTROL_H

#include <stddef.h>

#include "strongroom/keyring.h"
#include "strongroom/vault.h"

#define CTL_REQUEST_MAX 8192
#define CTL_REPLY_MAX	8192

struct ctl_server;

/* Start serving v (borrowed; kr is the keyring v was opened with, store the
 * store path for unlock). Call after daemonizing. @return 0 and *out owned
 * (ctl_server_stop), or -errno (the mount goes on without a channel). */
int ctl_server_start(struct vault *v, struct kr_keyring *kr, const char *store,
		     const char *mountpoint, struct ctl_server **out);
/* Stop the thread, remove the socket, free. Accepts NULL. */
void ctl_server_stop(struct ctl_server *s);

/* Send one request (req, then len secret bytes if secret) to the driver of
 * mountpoint (canonical) and read its reply into reply (NUL-terminated).
 * @return 0 if the driver said ok, the driver's -errno if it said err (reply
 * holds its text), or -errno of the channel itself (-ENOENT / -ECONNREFUSED:
 * no driver listening, -EAGAIN: no answer in timeout_sec). */
int ctl_request(const char *mountpoint, const char *req, const char *secret, size_t len,
		char *reply, size_t cap, int timeout_sec);
/* The same for a request that reports progress (rotate): each line
 * "progress TEXT" before the reply goes to on_progress (TEXT, arg) instead
 * of into reply; timeout_sec bounds the wait for each piece, not the whole. */
typedef void (*ctl_progress_fn)(const char *text, void *arg);
int ctl_request_progress(const char *mountpoint, const char *req, const char *secret, size_t len,
			 ctl_progress_fn on_progress, void *arg, char *reply, size_t cap,
			 int timeout_sec);

#endif
