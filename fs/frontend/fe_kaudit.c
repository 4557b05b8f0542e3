/* fe_kaudit.c - refusals the kernel decides itself, into the vault's trail
 * (fe_kaudit.h; docs/audit.md "Denials").
 *
 * Netlink plumbing: one socket for requests (status, list, add and delete
 * rules; each answered before the next is sent), one bound to the audit
 * multicast group for the records, read by a thread that blocks every
 * signal. The records of one syscall share a serial and end with an EOE
 * record; those of our rules are gathered (a few at a time, others are
 * interleaved) and written out at their EOE.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/netlink.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fe_kaudit.h"
#include "strongroom/frontend.h"

#if defined(__x86_64__)
#define KA_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define KA_ARCH AUDIT_ARCH_AARCH64
#else
#define KA_ARCH 0
#endif

#define KA_KEY_PREFIX "strongroom:"
#define KA_PENDING    8 /* syscalls being gathered at once */
#define KA_ITEMS      4 /* PATH records kept per syscall */
#define KA_MSG_MAX    (8970 + NLMSG_HDRLEN) /* MAX_AUDIT_MESSAGE_LENGTH */

/* ---- the record parser ---- */

uint64_t fe_kaudit_serial(const char *text, size_t len)
{
	const char *end = text + len, *p = memchr(text, ':', len);
	uint64_t serial = 0;

	if (len < 7 || memcmp(text, "audit(", 6) != 0 || !p)
		return 0;
	for (p++; p < end && *p >= '0' && *p <= '9'; p++) {
		if (serial > (UINT64_MAX - 9) / 10)
			return 0;
		serial = serial * 10 + (uint64_t)(*p - '0');
	}
	return p < end && *p == ')' ? serial : 0;
}

static int ka_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int fe_kaudit_field(const char *text, size_t len, const char *name, char *out, size_t cap)
{
	size_t nlen = strlen(name), i = 0, vlen, n = 0;
	const char *v = NULL;

	if (cap == 0)
		return -1;
	/* Fields are "name=value" separated by spaces; values hold no space
	 * (the kernel hex-encodes a string that has one). */
	while (i < len) {
		size_t j = i;

		while (j < len && text[j] != ' ')
			j++;
		if (j - i > nlen && memcmp(text + i, name, nlen) == 0 && text[i + nlen] == '=') {
			v = text + i + nlen + 1;
			vlen = j - (i + nlen + 1);
			break;
		}
		i = j + 1;
	}
	if (!v)
		return -1;
	if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
		if (vlen - 2 >= cap)
			return -1;
		memcpy(out, v + 1, vlen - 2);
		n = vlen - 2;
	} else if (vlen == 6 && memcmp(v, "(null)", 6) == 0) {
		n = 0;
	} else {
		bool hex = vlen % 2 == 0 && vlen > 0;

		for (size_t k = 0; k < vlen && hex; k++)
			hex = ka_hex(v[k]) >= 0;
		/* Numbers are not decoded: only a value that cannot be one. */
		if (hex && (strcmp(name, "comm") == 0 || strcmp(name, "name") == 0 ||
			    strcmp(name, "cwd") == 0 || strcmp(name, "key") == 0)) {
			if (vlen / 2 >= cap)
				return -1;
			for (size_t k = 0; k < vlen; k += 2)
				out[n++] = (char)(ka_hex(v[k]) << 4 | ka_hex(v[k + 1]));
		} else {
			if (vlen >= cap)
				return -1;
			memcpy(out, v, vlen);
			n = vlen;
		}
	}
	out[n] = '\0';
	/* A name with a NUL inside is not one the kernel could have used. */
	return strlen(out) == n ? (int)n : -1;
}

/* ---- what a syscall was ---- */

static const struct {
	long nr;
	const char *what;
} ka_syscalls[] = {
#ifdef SYS_open
	{SYS_open, "open"},
#endif
#ifdef SYS_creat
	{SYS_creat, "open"},
#endif
	{SYS_openat, "open"},
#ifdef SYS_openat2
	{SYS_openat2, "open"},
#endif
	{SYS_truncate, "truncate"},
#ifdef SYS_unlink
	{SYS_unlink, "unlink"},
#endif
	{SYS_unlinkat, "unlink"},
#ifdef SYS_rmdir
	{SYS_rmdir, "rmdir"},
#endif
#ifdef SYS_rename
	{SYS_rename, "rename"},
#endif
	{SYS_renameat, "rename"},
#ifdef SYS_renameat2
	{SYS_renameat2, "rename"},
#endif
#ifdef SYS_mkdir
	{SYS_mkdir, "mkdir"},
#endif
	{SYS_mkdirat, "mkdir"},
#ifdef SYS_mknod
	{SYS_mknod, "mknod"},
#endif
	{SYS_mknodat, "mknod"},
#ifdef SYS_link
	{SYS_link, "link"},
#endif
	{SYS_linkat, "link"},
#ifdef SYS_symlink
	{SYS_symlink, "symlink"},
#endif
	{SYS_symlinkat, "symlink"},
#ifdef SYS_chmod
	{SYS_chmod, "chmod"},
#endif
	{SYS_fchmodat, "chmod"},
#ifdef SYS_chown
	{SYS_chown, "chown"},
#endif
#ifdef SYS_lchown
	{SYS_lchown, "chown"},
#endif
	{SYS_fchownat, "chown"},
	{SYS_utimensat, "utime"},
	{SYS_setxattr, "setxattr"},
	{SYS_lsetxattr, "setxattr"},
	{SYS_removexattr, "removexattr"},
	{SYS_lremovexattr, "removexattr"},
	{SYS_execve, "exec"},
};

static const char *ka_what(long nr)
{
	for (size_t i = 0; i < sizeof(ka_syscalls) / sizeof(ka_syscalls[0]); i++)
		if (ka_syscalls[i].nr == nr)
			return ka_syscalls[i].what;
	return NULL;
}

/* ---- gathering one syscall's records ---- */

enum ka_nametype { KA_OTHER, KA_NORMAL, KA_PARENT, KA_CREATE, KA_DELETE };

struct ka_item {
	uint64_t ino;
	bool ours; /* on this mount's device */
	enum ka_nametype type;
	char name[PATH_MAX];
};

struct ka_event {
	uint64_t serial; /* 0: a free slot */
	long syscall;
	int err;
	struct vault_caller c;
	char comm[64];
	char cwd[PATH_MAX];
	unsigned nitems;
	struct ka_item items[KA_ITEMS];
};

struct fe_kaudit {
	struct vault *v;
	fe_kaudit_path_fn path_of;
	void *ctx;
	char mountpoint[PATH_MAX];
	unsigned major, minor;
	char key[64];
	int req_fd, mc_fd, wake[2];
	uint32_t seq;
	bool rules[2]; /* EACCES, EPERM added */
	pthread_t thread;
	bool running;
	struct ka_event pending[KA_PENDING];
};

/* The vault path of one refusal, malloc'd, or NULL. */
static char *ka_path(struct fe_kaudit *k, const struct ka_event *e)
{
	const struct ka_item *create = NULL;
	char full[2 * PATH_MAX + 2];
	size_t mlen = strlen(k->mountpoint);
	char *p;

	/* Invariant 3: by inode first. */
	for (unsigned i = 0; i < e->nitems; i++)
		if (e->items[i].ours &&
		    (e->items[i].type == KA_NORMAL || e->items[i].type == KA_DELETE) &&
		    (p = k->path_of(k->ctx, e->items[i].ino, NULL)))
			return p;
	for (unsigned i = 0; i < e->nitems; i++)
		if (e->items[i].type == KA_CREATE)
			create = &e->items[i];
	for (unsigned i = 0; create && i < e->nitems; i++) {
		const char *base = strrchr(create->name, '/');

		base = base ? base + 1 : create->name;
		if (e->items[i].ours && e->items[i].type == KA_PARENT && base[0] &&
		    (p = k->path_of(k->ctx, e->items[i].ino, base)))
			return p;
	}
	/* Then by the name the process used, if it lies under the mount. */
	for (unsigned i = 0; i < e->nitems; i++) {
		const char *name = e->items[i].name;

		if (!e->items[i].ours || !name[0])
			continue;
		if (name[0] == '/')
			snprintf(full, sizeof(full), "%s", name);
		else
			snprintf(full, sizeof(full), "%s/%s", e->cwd, name);
		if (strncmp(full, k->mountpoint, mlen) == 0 &&
		    (full[mlen] == '/' || full[mlen] == '\0'))
			return strdup(full[mlen] ? full + mlen : "/");
	}
	return NULL;
}

static void ka_emit(struct fe_kaudit *k, struct ka_event *e)
{
	const char *what = ka_what(e->syscall);
	char *path;

	if (what && (e->err == EACCES || e->err == EPERM)) {
		path = ka_path(k, e);
		(void)vault_audit_kernel_denial(k->v, &e->c, e->comm, path ? path : "/", what,
						e->err);
		free(path);
	}
	memset(e, 0, sizeof(*e));
}

static struct ka_event *ka_find(struct fe_kaudit *k, uint64_t serial)
{
	for (unsigned i = 0; i < KA_PENDING; i++)
		if (k->pending[i].serial == serial)
			return &k->pending[i];
	return NULL;
}

static long ka_num(const char *text, size_t len, const char *name, int base)
{
	char buf[32], *end;
	long v;

	if (fe_kaudit_field(text, len, name, buf, sizeof(buf)) <= 0)
		return -1;
	errno = 0;
	v = strtol(buf, &end, base);
	return errno || *end ? -1 : v;
}

/* One record of the multicast group. */
static void ka_record(struct fe_kaudit *k, int type, const char *text, size_t len)
{
	uint64_t serial = fe_kaudit_serial(text, len);
	struct ka_event *e;
	char buf[64];

	if (!serial)
		return;
	if (type == AUDIT_SYSCALL) {
		if (fe_kaudit_field(text, len, "key", buf, sizeof(buf)) < 0 ||
		    strcmp(buf, k->key) != 0)
			return;
		e = ka_find(k, 0);
		if (!e) { /* the oldest one's EOE got lost: let it go */
			e = &k->pending[0];
			memset(e, 0, sizeof(*e));
		}
		e->serial = serial;
		e->syscall = ka_num(text, len, "syscall", 10);
		e->err = (int)-ka_num(text, len, "exit", 10);
		e->c.uid = (uid_t)ka_num(text, len, "uid", 10);
		e->c.gid = (gid_t)ka_num(text, len, "gid", 10);
		e->c.pid = (pid_t)ka_num(text, len, "pid", 10);
		if (fe_kaudit_field(text, len, "comm", e->comm, sizeof(e->comm)) < 0)
			e->comm[0] = '\0';
		return;
	}
	e = ka_find(k, serial);
	if (!e)
		return;
	if (type == AUDIT_CWD) {
		if (fe_kaudit_field(text, len, "cwd", e->cwd, sizeof(e->cwd)) < 0)
			e->cwd[0] = '\0';
	} else if (type == AUDIT_PATH && e->nitems < KA_ITEMS) {
		struct ka_item *it = &e->items[e->nitems];
		char dev[32], ino[32], nt[16], *end;
		unsigned ma, mi;

		memset(it, 0, sizeof(*it));
		if (fe_kaudit_field(text, len, "name", it->name, sizeof(it->name)) < 0)
			it->name[0] = '\0';
		if (fe_kaudit_field(text, len, "dev", dev, sizeof(dev)) > 0 &&
		    sscanf(dev, "%x:%x", &ma, &mi) == 2)
			it->ours = ma == k->major && mi == k->minor;
		if (fe_kaudit_field(text, len, "inode", ino, sizeof(ino)) > 0) {
			errno = 0;
			it->ino = strtoull(ino, &end, 10);
			if (errno || *end)
				it->ours = false;
		}
		if (fe_kaudit_field(text, len, "nametype", nt, sizeof(nt)) > 0)
			it->type = strcmp(nt, "NORMAL") == 0	   ? KA_NORMAL
				   : strcmp(nt, "PARENT") == 0 ? KA_PARENT
				   : strcmp(nt, "CREATE") == 0 ? KA_CREATE
				   : strcmp(nt, "DELETE") == 0 ? KA_DELETE
							       : KA_OTHER;
		e->nitems++;
	} else if (type == AUDIT_EOE) {
		ka_emit(k, e);
	}
}

static void *ka_thread(void *arg)
{
	struct fe_kaudit *k = arg;
	struct pollfd p[2] = {{k->mc_fd, POLLIN, 0}, {k->wake[0], POLLIN, 0}};
	char *buf = malloc(KA_MSG_MAX + 1);

	while (buf) {
		ssize_t n;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		n = recv(k->mc_fd, buf, KA_MSG_MAX, 0);
		if (n < 0 && (errno == EINTR || errno == ENOBUFS))
			continue; /* ENOBUFS: records lost to a full buffer */
		if (n <= 0)
			break;
		/* One record per datagram. The kernel puts the length of the
		 * text alone in nlmsg_len (not counting the header), so the
		 * datagram's size is what bounds it. */
		if ((size_t)n > NLMSG_HDRLEN) {
			const struct nlmsghdr *h = (const struct nlmsghdr *)buf;
			const char *text = buf + NLMSG_HDRLEN;
			size_t plen = (size_t)n - NLMSG_HDRLEN;

			/* The text may end in NUL bytes or a newline. */
			while (plen && (text[plen - 1] == '\0' || text[plen - 1] == '\n'))
				plen--;
			ka_record(k, h->nlmsg_type, text, plen);
		}
	}
	free(buf);
	return NULL;
}

/* ---- requests ---- */

/* Send one request and read its answer: @return 0, -errno of the kernel,
 * or -EPROTO. reply (cap bytes) receives the first non-ack message. */
static int ka_request(struct fe_kaudit *k, int type, const void *data, size_t len, void *reply,
		      size_t cap)
{
	struct {
		struct nlmsghdr h;
		char data[];
	} *m = calloc(1, NLMSG_SPACE(len));
	char buf[8192];
	ssize_t n;
	int r = -EPROTO;

	if (!m)
		return -ENOMEM;
	m->h.nlmsg_len = (uint32_t)NLMSG_LENGTH(len);
	m->h.nlmsg_type = (uint16_t)type;
	m->h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	m->h.nlmsg_seq = ++k->seq;
	if (len)
		memcpy(m->data, data, len);
	n = send(k->req_fd, m, m->h.nlmsg_len, 0);
	free(m);
	if (n < 0)
		return -errno;
	for (int tries = 0; tries < 4; tries++) {
		n = recv(k->req_fd, buf, sizeof(buf), 0);
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != k->seq)
				continue;
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);

				if (e->error != 0)
					return e->error;
				if (!reply)
					return 0;
				r = 0; /* the ack; the answer may come next */
			} else if (reply) {
				memcpy(reply, NLMSG_DATA(h),
				       h->nlmsg_len - NLMSG_HDRLEN < cap ? h->nlmsg_len - NLMSG_HDRLEN
									 : cap);
				return 0;
			}
		}
	}
	return r;
}

/* A rule for our key: failed syscalls of ka_syscalls with exit -err on an
 * inode of our device. */
static struct audit_rule_data *ka_rule(const struct fe_kaudit *k, int err, size_t *len)
{
	size_t klen = strlen(k->key);
	struct audit_rule_data *r;
	unsigned f = 0;

	*len = sizeof(*r) + klen;
	r = calloc(1, *len);
	if (!r)
		return NULL;
	r->flags = AUDIT_FILTER_EXIT;
	r->action = AUDIT_ALWAYS;
	for (size_t i = 0; i < sizeof(ka_syscalls) / sizeof(ka_syscalls[0]); i++)
		r->mask[ka_syscalls[i].nr / 32] |= 1u << (ka_syscalls[i].nr % 32);
#define KA_FIELD(fld, val)                                                                         \
	do {                                                                                       \
		r->fields[f] = (fld);                                                              \
		r->values[f] = (uint32_t)(val);                                                    \
		r->fieldflags[f++] = AUDIT_EQUAL;                                                  \
	} while (0)
	KA_FIELD(AUDIT_ARCH, KA_ARCH);
	KA_FIELD(AUDIT_EXIT, -err);
	KA_FIELD(AUDIT_DEVMAJOR, k->major);
	KA_FIELD(AUDIT_DEVMINOR, k->minor);
	KA_FIELD(AUDIT_FILTERKEY, klen);
#undef KA_FIELD
	r->field_count = f;
	r->buflen = (uint32_t)klen;
	memcpy(r->buf, k->key, klen);
	return r;
}

static int ka_rule_set(struct fe_kaudit *k, int err, bool add)
{
	size_t len;
	struct audit_rule_data *r = ka_rule(k, err, &len);
	int e;

	if (!r)
		return -ENOMEM;
	e = ka_request(k, add ? AUDIT_ADD_RULE : AUDIT_DEL_RULE, r, len, NULL, 0);
	free(r);
	return e;
}

/* Invariant 2: delete the rules of drivers that are gone. */
static void ka_reap(struct fe_kaudit *k)
{
	struct {
		struct nlmsghdr h;
	} m = {{NLMSG_LENGTH(0), AUDIT_LIST_RULES, NLM_F_REQUEST | NLM_F_ACK, ++k->seq, 0}};
	char *buf = malloc(KA_MSG_MAX), *dead[16];
	size_t ndead = 0, dlen[16];
	bool done = false;

	if (!buf || send(k->req_fd, &m, m.h.nlmsg_len, 0) < 0) {
		free(buf);
		return;
	}
	while (!done) {
		ssize_t n = recv(k->req_fd, buf, KA_MSG_MAX, 0);

		if (n <= 0)
			break;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
		     h = NLMSG_NEXT(h, n)) {
			const struct audit_rule_data *r = NLMSG_DATA(h);
			size_t plen = h->nlmsg_len - NLMSG_HDRLEN;
			char key[64];
			long pid;

			if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
				done = h->nlmsg_type == NLMSG_DONE ||
				       ((const struct nlmsgerr *)NLMSG_DATA(h))->error != 0;
				continue;
			}
			if (h->nlmsg_type != AUDIT_LIST_RULES || plen < sizeof(*r) ||
			    r->buflen > plen - sizeof(*r) || r->buflen >= sizeof(key) ||
			    r->buflen < strlen(KA_KEY_PREFIX) || ndead == 16)
				continue;
			/* Our rules have one string field: the key. */
			memcpy(key, r->buf, r->buflen);
			key[r->buflen] = '\0';
			if (strncmp(key, KA_KEY_PREFIX, strlen(KA_KEY_PREFIX)) != 0)
				continue;
			pid = strtol(key + strlen(KA_KEY_PREFIX), NULL, 10);
			if (pid <= 0 || !fe_pid_running((pid_t)pid)) {
				dead[ndead] = malloc(plen);
				if (dead[ndead]) {
					memcpy(dead[ndead], r, plen);
					dlen[ndead++] = plen;
				}
			}
		}
	}
	for (size_t i = 0; i < ndead; i++) {
		(void)ka_request(k, AUDIT_DEL_RULE, dead[i], dlen[i], NULL, 0);
		free(dead[i]);
	}
	free(buf);
}

/* major:minor of the mount at mountpoint, from /proc/self/mountinfo (a
 * stat would ask this very driver, whose loop is not running yet). */
static int ka_mount_dev(const char *mountpoint, unsigned *major, unsigned *minor)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[3 * PATH_MAX], mp[PATH_MAX];
	int r = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned ma, mi;

		/* "ID PARENT MAJ:MIN ROOT MOUNTPOINT ..."; the last such line
		 * is the top mount there. Octal escapes (\040) are not undone:
		 * a mount point with a space is matched by the name path. */
		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &ma, &mi, mp) == 3 &&
		    strcmp(mp, mountpoint) == 0) {
			*major = ma;
			*minor = mi;
			r = 0;
		}
	}
	fclose(f);
	return r;
}

void fe_kaudit_stop(struct fe_kaudit *k)
{
	char b = 0;

	if (!k)
		return;
	if (k->running && write(k->wake[1], &b, 1) == 1)
		pthread_join(k->thread, NULL);
	for (int i = 0; i < 2; i++)
		if (k->rules[i])
			(void)ka_rule_set(k, i == 0 ? EACCES : EPERM, false);
	if (k->req_fd >= 0)
		close(k->req_fd);
	if (k->mc_fd >= 0)
		close(k->mc_fd);
	if (k->wake[0] >= 0) {
		close(k->wake[0]);
		close(k->wake[1]);
	}
	free(k);
}

int fe_kaudit_start(struct vault *v, const char *mountpoint, fe_kaudit_path_fn path_of, void *ctx,
		    struct fe_kaudit **out, const char **why)
{
	struct sockaddr_nl mc = {.nl_family = AF_NETLINK, .nl_groups = AUDIT_NLGRP_READLOG};
	struct timeval tv = {2, 0};
	struct audit_status st = {0};
	struct fe_kaudit *k;
	sigset_t all, old;
	int r;

	*out = NULL;
	*why = NULL;
	if (KA_ARCH == 0) {
		*why = "not supported on this architecture";
		return -EOPNOTSUPP;
	}
	if (geteuid() != 0) {
		*why = "the kernel's audit needs a driver run by root";
		return -EPERM;
	}
	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->v = v;
	k->path_of = path_of;
	k->ctx = ctx;
	k->req_fd = k->mc_fd = k->wake[0] = k->wake[1] = -1;
	snprintf(k->mountpoint, sizeof(k->mountpoint), "%s", mountpoint);
	r = ka_mount_dev(mountpoint, &k->major, &k->minor);
	if (r < 0) {
		*why = "the mount is not in /proc/self/mountinfo";
		goto fail;
	}
	snprintf(k->key, sizeof(k->key), KA_KEY_PREFIX "%ld:%u:%u", (long)getpid(), k->major,
		 k->minor);
	k->req_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_AUDIT);
	if (k->req_fd < 0) {
		r = -errno;
		*why = "the kernel has no audit subsystem";
		goto fail;
	}
	setsockopt(k->req_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	r = ka_request(k, AUDIT_GET, NULL, 0, &st, sizeof(st));
	if (r < 0) {
		*why = "the kernel's audit does not answer";
		goto fail;
	}
	if (st.enabled == 0) { /* invariant 1 */
		r = -ENOTCONN;
		*why = "the kernel's audit is off (auditd, or auditctl -e 1, turns it on)";
		goto fail;
	}
	/* Listen before the rules exist: no refusal falls between. */
	k->mc_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_AUDIT);
	if (k->mc_fd < 0 || bind(k->mc_fd, (struct sockaddr *)&mc, sizeof(mc)) != 0 ||
	    pipe2(k->wake, O_CLOEXEC) != 0) {
		r = -errno;
		*why = "cannot listen to the kernel's audit records";
		goto fail;
	}
	ka_reap(k);
	for (int i = 0; i < 2; i++) {
		r = ka_rule_set(k, i == 0 ? EACCES : EPERM, true);
		if (r < 0) {
			*why = st.enabled == 2 ? "the kernel's audit rules are locked"
					       : "the kernel refused the audit rule";
			goto fail;
		}
		k->rules[i] = true;
	}
	/* Created with every signal blocked (it never unblocks one): a SIGINT
	 * must reach the request loop, even in the instant the thread starts. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = -pthread_create(&k->thread, NULL, ka_thread, k);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0) {
		*why = "cannot start the audit reader";
		goto fail;
	}
	k->running = true;
	*out = k;
	return 0;
fail:
	fe_kaudit_stop(k);
	return r;
}
