/* control.c - the driver's control channel, and the client side of it.
 *
 * The server is a thread of the driver (cmd_mount.c starts it after
 * daemonizing, stops it before vault_close). It serves one connection at a
 * time; each is bounded by a five-second send/receive timeout, so a client
 * that stalls holds nobody up for long. Requests are handled by the watch
 * layer (include/strongroom/watch.h), which records them in the trail.
 *
 * Invariants:
 *  1. Who may steer the driver is decided from the kernel's word about the
 *     peer (SO_PEERCRED for uid, gid and pid; SO_PEERGROUPS for its
 *     supplementary groups), never from anything the client sends: root, or
 *     a member of the policy's admin group. The socket file itself is
 *     world-connectable so that a refusal is an answer, not a hang.
 *  2. A request that may hold a secret (unlock) is read into sodium_malloc'd
 *     memory, which sodium_free wipes, on every path; the secret is wiped
 *     before any error reply is written.
 *  3. The socket is named after the mount point (a hash of it), so client
 *     and driver agree without a lookup; a stale socket of a killed driver
 *     refuses connections and the next driver replaces it. A driver removes
 *     the socket file at exit only while it is still its own (same inode): a
 *     driver still shutting down after its unmount must not remove the
 *     socket of the next driver already mounted at the same point.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "control.h"
#include "strongroom/admin.h"
#include "strongroom/frontend.h"
#include "strongroom/watch.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

#define CTL_TIMEOUT_SEC	    5
#define CTL_PEER_GROUPS_MAX 1024

struct ctl_server {
	struct vault *v;
	struct kr_keyring *kr;
	char store[PATH_MAX];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int fd;
	int wake[2];
	pthread_t thread;
	struct stat sock_st; /* the socket file this driver bound */
};

/* dir/ctl-<16 hex digits of BLAKE2b(mountpoint)>.sock */
static int ctl_path(const char *dir, const char *mountpoint, char *out, size_t cap)
{
	unsigned char h[8];
	char hex[17];

	crypto_generichash(h, sizeof(h), (const unsigned char *)mountpoint, strlen(mountpoint),
			   NULL, 0);
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	return snprintf(out, cap, "%s/ctl-%s.sock", dir, hex) < (int)cap ? 0 : -ENAMETOOLONG;
}

/* ---- the server ---- */

static void ctl_reply(int fd, const char *text)
{
	size_t n = strlen(text), off = 0;

	while (off < n) {
		ssize_t w = send(fd, text + off, n - off, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		off += (size_t)w;
	}
}

static void ctl_reply_err(int fd, int err, const char *text)
{
	char buf[PATH_MAX + 1024];

	snprintf(buf, sizeof(buf), "err %d %s\n", -err, text ? text : strerror(-err));
	ctl_reply(fd, buf);
}

static void ctl_status(struct ctl_server *s, int fd)
{
	const struct kr_config *cfg = kr_keyring_config(s->kr);
	struct vault_watch_status st;
	uid_t frozen[VAULT_WATCH_FROZEN_MAX];
	char buf[CTL_REPLY_MAX];
	size_t n, len = 0;

	vault_watch_status(s->v, &st);
	n = vault_watch_frozen_list(s->v, frozen, VAULT_WATCH_FROZEN_MAX);
#define OUT(...)                                                                                   \
	do {                                                                                       \
		int m = snprintf(buf + len, sizeof(buf) - len, __VA_ARGS__);                       \
		if (m > 0 && (size_t)m < sizeof(buf) - len)                                        \
			len += (size_t)m;                                                          \
	} while (0)
	OUT("ok status\n");
	OUT("unlocked=");
	for (unsigned l = 0, first = 1; l < cfg->nlevels; l++)
		if (kr_level_held(s->kr, l)) {
			OUT("%s%s", first ? "" : ",", cfg->levels[l].name);
			first = 0;
		}
	OUT("\nlocked=");
	for (unsigned l = 0, first = 1; l < cfg->nlevels; l++)
		if (st.locked & (1u << l)) {
			OUT("%s%s", first ? "" : ",", cfg->levels[l].name);
			first = 0;
		}
	OUT("\nopen_files=%u\nfrozen=", st.open_files);
	for (size_t i = 0; i < n && i < VAULT_WATCH_FROZEN_MAX; i++) {
		struct passwd *pw = getpwuid(frozen[i]);
		if (pw)
			OUT("%s%s", i ? "," : "", pw->pw_name);
		else
			OUT("%s%u", i ? "," : "", (unsigned)frozen[i]);
	}
	OUT("\naudit=%s\nalerts=%llu\nalert_rules=%u\n", st.audited ? "on" : "off",
	    (unsigned long long)st.alerts, st.nrules);
#undef OUT
	ctl_reply(fd, buf);
}

/* The secret of an unlock or rotate request: kind is "passphrase",
 * "passphrase+keyfile:N" (the first N bytes the passphrase, the rest the
 * key file) or "recovery". @return 0 and *ks pointing into secret, or
 * -EINVAL after wiping it and replying why. */
static int ctl_secret(int fd, const char *kind, char *secret, size_t len, struct kr_secret *ks)
{
	memset(ks, 0, sizeof(*ks));
	if (strcmp(kind, "passphrase") == 0) {
		ks->kind = KR_SECRET_PASSPHRASE;
	} else if (strncmp(kind, "passphrase+keyfile:", 19) == 0) {
		char *end;
		unsigned long n = strtoul(kind + 19, &end, 10);

		if (*end || n == 0 || n >= len) {
			sodium_memzero(secret, len);
			ctl_reply_err(fd, -EINVAL, "malformed key file request");
			return -EINVAL;
		}
		ks->kind = KR_SECRET_PASSPHRASE;
		ks->keyfile = (const unsigned char *)secret + n;
		ks->keyfile_len = len - n;
		len = n;
	} else if (strcmp(kind, "recovery") == 0) {
		ks->kind = KR_SECRET_RECOVERY;
	} else {
		sodium_memzero(secret, len);
		ctl_reply_err(fd, -EINVAL, "unknown kind of secret");
		return -EINVAL;
	}
	ks->bytes = secret;
	ks->len = len;
	return 0;
}

/* Unlock the store with the request's secret (wiped here, invariant 2).
 * @return 0 and *out owned, or -errno after replying why. */
static int ctl_store_unlock(struct ctl_server *s, int fd, const char *kind, char *secret,
			    size_t len, struct kr_keyring **out)
{
	struct kr_secret ks;
	int r = ctl_secret(fd, kind, secret, len, &ks);

	*out = NULL;
	if (r < 0)
		return r;
	r = kr_vault_unlock(s->store, &ks, out);
	sodium_memzero(secret, len);
	if (r == -EKEYREJECTED)
		ctl_reply_err(fd, r, "no keyslot accepts this secret");
	else if (r < 0)
		ctl_reply_err(fd, r, NULL);
	return r;
}

static void ctl_unlock(struct ctl_server *s, int fd, const struct vault_caller *c, char *kind,
		       char *secret, size_t len)
{
	struct kr_keyring *from = NULL;
	struct vault_watch_status st;
	char msg[256];
	int r;

	vault_watch_status(s->v, &st);
	if (!st.locked) {
		sodium_memzero(secret, len);
		ctl_reply_err(fd, -EALREADY, "no level is locked");
		return;
	}
	if (ctl_store_unlock(s, fd, kind, secret, len, &from) < 0)
		return;
	r = vault_level_unlock(s->v, s->kr, from, c);
	kr_keyring_free(from);
	if (r == 0)
		ctl_reply_err(fd, -ENOKEY, "this secret's keyslot holds none of the locked levels");
	else if (r < 0)
		ctl_reply_err(fd, r, NULL);
	else {
		snprintf(msg, sizeof(msg), "ok %d level%s unlocked\n", r, r == 1 ? "" : "s");
		ctl_reply(fd, msg);
	}
}

/* rotate LEVEL KIND + secret: the rotation of a level while mounted
 * (watch.h). Progress lines go out between steps, at most five a second;
 * a client that went away does not stop the rotation. */
static void ctl_rotate(struct ctl_server *s, int fd, const struct vault_caller *c, char *arg,
		       char *secret, size_t len)
{
	struct kr_keyring *full = NULL;
	struct vault_live_rotate *lr = NULL;
	const struct vault_rotate_stats *st;
	char *kind = arg ? strchr(arg, ' ') : NULL, msg[PATH_MAX + 512];
	struct timespec last = {0}, now;
	int level, r;

	if (kind)
		*kind++ = '\0';
	level = arg ? kr_level_index(s->kr, arg) : -EINVAL;
	if (level < 0 || !kind) {
		sodium_memzero(secret, len);
		ctl_reply_err(fd, -EINVAL, level < 0 ? "unknown level" : "malformed request");
		return;
	}
	if (ctl_store_unlock(s, fd, kind, secret, len, &full) < 0)
		return;
	r = vault_live_rotate_begin(s->v, s->kr, full, s->store, (unsigned)level, c, &lr);
	if (r < 0) {
		kr_keyring_free(full);
		ctl_reply_err(fd, r,
			      r == -EBUSY	? "a read-only mount of this store is running: "
						  "unmount it first"
			      : r == -EALREADY	? "the rotation of another level is unfinished: "
						  "unmount the store and run strongroom rotate"
			      : r == -ENOKEY	? "neither this mount nor this secret may hold the "
						  "level, or it is locked (strongroom unlock first)"
			      : r == -EROFS	? "this is a read-only mount; rotate on the writer"
						: NULL);
		return;
	}
	/* The unlock may have taken longer than a send timeout: from now on
	 * a client that stops reading only loses its progress lines. */
	while ((r = vault_live_rotate_step(lr)) > 0) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - last.tv_sec) * 1000000000LL + (now.tv_nsec - last.tv_nsec) <
		    200000000LL)
			continue;
		last = now;
		st = vault_live_rotate_stats(lr);
		snprintf(msg, sizeof(msg), "progress %llu %llu %llu %llu %llu\n",
			 (unsigned long long)st->files, (unsigned long long)st->dirs,
			 (unsigned long long)st->names, (unsigned long long)st->bytes_done,
			 (unsigned long long)st->bytes_total);
		ctl_reply(fd, msg);
	}
	st = vault_live_rotate_stats(lr);
	snprintf(msg, sizeof(msg),
		 "ok level %s rotated to key generation %u while mounted: %llu files, %llu "
		 "folders, %llu names re-encrypted (%llu already done before); the old key is "
		 "destroyed\n",
		 arg, vault_live_rotate_generation(lr), (unsigned long long)st->files,
		 (unsigned long long)st->dirs, (unsigned long long)st->names,
		 (unsigned long long)st->done);
	if (r < 0) {
		char where[PATH_MAX];

		snprintf(where, sizeof(where), "%s", vault_live_rotate_where(lr));
		(void)vault_live_rotate_end(lr, r);
		snprintf(msg, sizeof(msg),
			 "%s%s%s; the rotation stopped: unmount the store and run strongroom "
			 "rotate to finish it%s",
			 where, where[0] ? ": " : "", strerror(-r),
			 r == -EBADMSG ? " (after strongroom fsck --repair)" : "");
		ctl_reply_err(fd, r, msg);
	} else if ((r = vault_live_rotate_end(lr, 0)) < 0) {
		snprintf(msg, sizeof(msg),
			 "finishing the rotation: %s; unmount the store and run strongroom "
			 "rotate to finish it",
			 strerror(-r));
		ctl_reply_err(fd, r, msg);
	} else {
		ctl_reply(fd, msg);
	}
	kr_keyring_free(full);
}

static bool ctl_uid_parse(const char *s, uid_t *uid)
{
	char *end;
	unsigned long u;

	errno = 0;
	u = strtoul(s, &end, 10);
	if (errno || end == s || *end || u > 0xfffffffeul)
		return false;
	*uid = (uid_t)u;
	return true;
}

static void ctl_handle(struct ctl_server *s, int fd)
{
	struct ucred cred;
	gid_t groups[CTL_PEER_GROUPS_MAX];
	socklen_t sl = sizeof(cred), gl = sizeof(groups);
	struct vault_caller c = {0};
	struct timeval tv = {CTL_TIMEOUT_SEC, 0};
	char *buf = NULL, *nl, *arg, msg[256];
	size_t len = 0;
	uid_t uid;
	int r;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &sl) != 0)
		return;
	c.uid = cred.uid;
	c.gid = cred.gid;
	c.pid = cred.pid;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &gl) == 0) {
		c.groups = groups;
		c.ngroups = (int)(gl / sizeof(gid_t));
	}
	/* Invariant 1. */
	if (!vault_caller_is_admin(s->v, &c)) {
		fprintf(stderr,
			"strongroom: control channel: uid %u (pid %ld) refused: not root or "
			"the vault's admin group\n",
			(unsigned)c.uid, (long)c.pid);
		ctl_reply_err(fd, -EPERM,
			      "only root or the vault's admin group may use the control channel");
		return;
	}
	buf = sodium_malloc(CTL_REQUEST_MAX + 1);
	if (!buf) {
		ctl_reply_err(fd, -ENOMEM, NULL);
		return;
	}
	for (;;) {
		ssize_t n = recv(fd, buf + len, CTL_REQUEST_MAX - len, 0);
		if (n <= 0 || (len += (size_t)n) == CTL_REQUEST_MAX)
			break;
	}
	buf[len] = '\0';
	nl = memchr(buf, '\n', len);
	if (!nl) {
		ctl_reply_err(fd, -EINVAL, "malformed request");
		goto out;
	}
	*nl = '\0';
	arg = strchr(buf, ' ');
	if (arg)
		*arg++ = '\0';
	if (strcmp(buf, "status") == 0) {
		ctl_status(s, fd);
	} else if (strcmp(buf, "freeze") == 0 || strcmp(buf, "unfreeze") == 0) {
		bool on = buf[0] == 'f';

		if (!arg || !ctl_uid_parse(arg, &uid)) {
			ctl_reply_err(fd, -EINVAL, "expected a uid");
			goto out;
		}
		r = on ? vault_watch_freeze(s->v, uid, &c, "strongroom freeze")
		       : vault_watch_unfreeze(s->v, uid, &c);
		if (r == -EALREADY)
			ctl_reply_err(fd, r, "already frozen");
		else if (r == -ENODATA)
			ctl_reply_err(fd, r, "not frozen");
		else if (r == -EINVAL)
			ctl_reply_err(fd, r, "root cannot be frozen");
		else if (r < 0)
			ctl_reply_err(fd, r, NULL);
		else {
			snprintf(msg, sizeof(msg), "ok uid %u %s\n", (unsigned)uid,
				 on ? "frozen" : "unfrozen");
			ctl_reply(fd, msg);
		}
	} else if (strcmp(buf, "lock") == 0) {
		int level = arg ? kr_level_index(s->kr, arg) : -EINVAL;

		if (level < 0) {
			ctl_reply_err(fd, -EINVAL, "unknown level");
			goto out;
		}
		r = vault_level_lock(s->v, s->kr, (unsigned)level, &c);
		if (r == -ENOKEY)
			ctl_reply_err(fd, r,
				      "this mount does not hold that level (or it is locked)");
		else if (r < 0)
			ctl_reply_err(fd, r, NULL);
		else {
			snprintf(msg, sizeof(msg), "ok level %s locked\n", arg);
			ctl_reply(fd, msg);
		}
	} else if (strcmp(buf, "unlock") == 0) {
		ctl_unlock(s, fd, &c, arg ? arg : (char *)"", nl + 1, len - (size_t)(nl + 1 - buf));
	} else if (strcmp(buf, "rotate") == 0) {
		ctl_rotate(s, fd, &c, arg, nl + 1, len - (size_t)(nl + 1 - buf));
	} else {
		ctl_reply_err(fd, -EINVAL, "unknown request");
	}
out:
	sodium_free(buf); /* invariant 2: wiped */
}

static void *ctl_thread(void *arg)
{
	struct ctl_server *s = arg;
	struct pollfd p[2] = {{s->fd, POLLIN, 0}, {s->wake[0], POLLIN, 0}};
	sigset_t all;

	/* SIGINT and SIGTERM stop the mount in the request loop's threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);

	for (;;) {
		int fd;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		ctl_handle(s, fd);
		close(fd);
	}
	return NULL;
}

int ctl_server_start(struct vault *v, struct kr_keyring *kr, const char *store,
		     const char *mountpoint, struct ctl_server **out)
{
	struct ctl_server *s = calloc(1, sizeof(*s));
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	const char *dir = fe_runtime_dir();
	int r;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->fd = -1;
	s->wake[0] = s->wake[1] = -1;
	s->v = v;
	s->kr = kr;
	snprintf(s->store, sizeof(s->store), "%s", store);
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		r = -errno;
		goto fail;
	}
	r = ctl_path(dir, mountpoint, s->path, sizeof(s->path));
	if (r < 0)
		goto fail;
	memcpy(sa.sun_path, s->path, strlen(s->path) + 1);
	s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0 || pipe2(s->wake, O_CLOEXEC) != 0) {
		r = -errno;
		goto fail;
	}
	(void)unlink(s->path); /* invariant 3: a killed driver's */
	if (bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || chmod(s->path, 0666) != 0 ||
	    listen(s->fd, 8) != 0 || stat(s->path, &s->sock_st) != 0) {
		r = -errno;
		goto fail;
	}
	r = -pthread_create(&s->thread, NULL, ctl_thread, s);
	if (r < 0)
		goto fail;
	*out = s;
	return 0;
fail:
	if (s->fd >= 0) {
		close(s->fd);
		(void)unlink(s->path);
	}
	if (s->wake[0] >= 0) {
		close(s->wake[0]);
		close(s->wake[1]);
	}
	free(s);
	return r;
}

void ctl_server_stop(struct ctl_server *s)
{
	struct stat st;
	char b = 0;

	if (!s)
		return;
	if (write(s->wake[1], &b, 1) == 1)
		pthread_join(s->thread, NULL);
	close(s->fd);
	if (stat(s->path, &st) == 0 && st.st_ino == s->sock_st.st_ino &&
	    st.st_dev == s->sock_st.st_dev)
		(void)unlink(s->path); /* invariant 3: only our own */
	close(s->wake[0]);
	close(s->wake[1]);
	free(s);
}

/* ---- the client ---- */

static int ctl_connect(const char *mountpoint)
{
	const char *dirs[2] = {fe_runtime_dir(), FE_RUNTIME_DIR};
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int r = -ENOENT;

	for (int i = 0; i < 2; i++) {
		int fd;

		if (i == 1 && strcmp(dirs[0], dirs[1]) == 0)
			break;
		if (ctl_path(dirs[i], mountpoint, sa.sun_path, sizeof(sa.sun_path)) < 0)
			continue;
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		if (r == -ENOENT)
			r = -errno;
		close(fd);
	}
	return r;
}

/* Hand every complete "progress " line at the start of buf[0..*got) to
 * on_progress and drop it from buf. */
static void ctl_progress_lines(char *buf, size_t *got, ctl_progress_fn on_progress, void *arg)
{
	char *nl;

	while (*got > 9 && strncmp(buf, "progress ", 9) == 0 && (nl = memchr(buf, '\n', *got))) {
		*nl = '\0';
		if (on_progress)
			on_progress(buf + 9, arg);
		*got -= (size_t)(nl + 1 - buf);
		memmove(buf, nl + 1, *got);
	}
}

int ctl_request_progress(const char *mountpoint, const char *req, const char *secret, size_t len,
			 ctl_progress_fn on_progress, void *arg, char *reply, size_t cap,
			 int timeout_sec)
{
	struct timeval tv = {timeout_sec, 0};
	size_t got = 0;
	int fd, r;

	reply[0] = '\0';
	fd = ctl_connect(mountpoint);
	if (fd < 0)
		return fd;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if ((send(fd, req, strlen(req), MSG_NOSIGNAL) < 0 || send(fd, "\n", 1, MSG_NOSIGNAL) < 0 ||
	     (secret && len && send(fd, secret, len, MSG_NOSIGNAL) < 0)) &&
	    errno != EPIPE && errno != ECONNRESET) {
		/* EPIPE: the driver refused before reading it all; its reply says why. */
		r = -errno;
		goto out;
	}
	shutdown(fd, SHUT_WR);
	while (got + 1 < cap) {
		ssize_t n = recv(fd, reply + got, cap - 1 - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && !got && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			r = -EAGAIN;
			goto out;
		}
		if (n <= 0)
			break;
		got += (size_t)n;
		ctl_progress_lines(reply, &got, on_progress, arg);
	}
	reply[got] = '\0';
	if (strncmp(reply, "ok", 2) == 0) {
		r = 0;
	} else if (strncmp(reply, "err ", 4) == 0) {
		char *end;
		long e = strtol(reply + 4, &end, 10);

		const char *text = *end == ' ' ? end + 1 : end;

		r = e > 0 ? (int)-e : -EPROTO;
		memmove(reply, text, strlen(text) + 1);
	} else {
		r = got ? -EPROTO : -ECONNRESET;
	}
	got = strlen(reply);
	while (got && reply[got - 1] == '\n')
		reply[--got] = '\0';
out:
	close(fd);
	return r;
}

int ctl_request(const char *mountpoint, const char *req, const char *secret, size_t len,
		char *reply, size_t cap, int timeout_sec)
{
	return ctl_request_progress(mountpoint, req, secret, len, NULL, NULL, reply, cap,
				    timeout_sec);
}
