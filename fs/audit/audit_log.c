/* audit_log.c - the audit trail writer.
 *
 * One writer per vault (the store lock guarantees it). Each open starts a
 * new segment: the writer never holds the key of an older one. The format
 * is in docs/audit.md.
 *
 * Invariants:
 *  1. A record is either wholly in the segment file or not at all: a failed
 *     write is cut back with ftruncate(2). If even that fails, the segment is
 *     abandoned as a crash would leave it and the next record opens a new
 *     segment flagged RECOVERY, so the chain still verifies.
 *  2. `rec` and `chain` describe exactly the bytes before `off`; they change
 *     only after a record's write(2) succeeded.
 *  3. Everything below `mu` is touched only with `mu` held, except keys and
 *     options, which are fixed after open. The sync thread calls fdatasync on
 *     a dup of the segment fd without holding `mu`, so records are not
 *     delayed by a slow disk.
 *  4. A segment's key lives only in guarded memory and is wiped when the
 *     segment is closed; once closed, nothing in this process can read it.
 *  5. After a failed sync the log is failed: every later write returns -EIO
 *     (the kernel may have dropped records already acknowledged).
 *  6. No nonce is used twice under one segment key: a frame's nonce is the
 *     segment's random 16-byte prefix and a 64-bit count of frames built
 *     under that key, counted also for frames whose write failed and was
 *     cut back (their record number is used again, their nonce is not).
 *     The prefix and the count are set together with the key in seg_create.
 *
 * States of the current segment:  none --seg_create--> open --seg_close--> none
 *   open: fd >= 0; seg_close writes the closing seal (rotation, close).
 *   none: fd < 0; the next log_append creates segment next_seg linked with
 *         link_count / link_chain / link_flags.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "audit_int.h"

#define SEG_KEY(l)   ((l)->keys)
#define CHAIN_KEY(l) ((l)->keys + 32)
#define US_PER_DAY   86400000000ull

struct audit_log {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thr;
	bool thr_started;
	bool stop;

	int dirfd;
	int fd; /* current segment, -1 = none */
	char seg_file[AUDIT_SEG_NAME_BYTES];
	uint64_t seg_no;
	uint64_t seg_day; /* UTC days since the epoch at creation */
	uint64_t off;	  /* end of the last whole record */
	uint64_t rec;	  /* records in the current segment */
	uint8_t chain[AUDIT_CHAIN_BYTES];

	/* How the next segment links back (kept while fd < 0). */
	uint64_t next_seg;
	uint64_t link_count;
	uint8_t link_chain[AUDIT_CHAIN_BYTES];
	uint16_t link_flags;

	unsigned char *keys;		  /* sodium_malloc: segment key, chain key */
	uint8_t nonce[AUDIT_NONCE_BYTES]; /* random prefix, then frames built (invariant 6) */
	uint64_t nonce_ctr;
	uint8_t vault_id[AUDIT_VAULT_ID_BYTES];
	uint8_t pk[AUDIT_PK_BYTES];
	struct audit_opts o;

	bool dirty;
	int err; /* sticky: a sync failed */
	bool recovered;
	uint64_t last_seal_us;
	unsigned since_seal;

	uint8_t *pt;	/* AUDIT_FRAME_MAX_BYTES */
	uint8_t *frame; /* AUDIT_FRAME_MAX_BYTES */
};

/* ---- fault injection ----------------------------------------------------- */

static pthread_mutex_t fault_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	unsigned long n, calls;
	int err;
} faults[2];

void audit_fault_set(enum audit_fault_op op, unsigned long n, int err)
{
	pthread_mutex_lock(&fault_mu);
	faults[op].n = n;
	faults[op].calls = 0;
	faults[op].err = err;
	pthread_mutex_unlock(&fault_mu);
}

int audit_fault_check(enum audit_fault_op op)
{
	int rc = 0;
	pthread_mutex_lock(&fault_mu);
	if (faults[op].n && ++faults[op].calls == faults[op].n)
		rc = faults[op].err ? faults[op].err : -EIO;
	pthread_mutex_unlock(&fault_mu);
	return rc;
}

/* ---- the syscall edge ---------------------------------------------------- */

static int log_pwrite(int fd, const uint8_t *buf, size_t n, uint64_t off)
{
	int injected = audit_fault_check(AUDIT_FAULT_WRITE);
	if (injected) {
		/* As a full disk can: part of the bytes land, then the error. */
		if (pwrite(fd, buf, n / 2, (off_t)off) < 0)
			return -errno;
		return injected;
	}
	while (n) {
		ssize_t w = pwrite(fd, buf, n, (off_t)off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (w == 0)
			return -EIO;
		buf += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

static int log_datasync(int fd)
{
	int injected = audit_fault_check(AUDIT_FAULT_FSYNC);
	if (injected)
		return injected;
	return fdatasync(fd) < 0 ? -errno : 0;
}

/* ---- segments ------------------------------------------------------------ */

/* Create segment next_seg, linked as link_* say. Called with mu held. */
static int seg_create(struct audit_log *l)
{
	struct audit_seg_header h;
	uint8_t hdr[AUDIT_HEADER_BYTES];
	char name[AUDIT_SEG_NAME_BYTES], tmp[AUDIT_SEG_NAME_BYTES + 4];
	uint64_t now = audit_now_us();
	int fd = -1, rc;

	audit_seg_name(l->next_seg, now, name);
	snprintf(tmp, sizeof tmp, "tmp-%s", name);

	memset(&h, 0, sizeof h);
	h.version = AUDIT_VERSION;
	h.flags = l->link_flags;
	memcpy(h.vault_id, l->vault_id, AUDIT_VAULT_ID_BYTES);
	h.segment = l->next_seg;
	h.created_us = now;
	h.prev_count = l->link_count;
	memcpy(h.prev_chain, l->link_chain, AUDIT_CHAIN_BYTES);
	randombytes_buf(SEG_KEY(l), AUDIT_SEGKEY_BYTES);
	randombytes_buf(l->nonce, AUDIT_NONCE_BYTES - 8);
	l->nonce_ctr = 0;
	if (crypto_box_seal(h.sealed_key, SEG_KEY(l), AUDIT_SEGKEY_BYTES, l->pk) != 0) {
		rc = -EINVAL;
		goto out;
	}
	audit_header_encode(&h, CHAIN_KEY(l), hdr);

	/* Written under a temporary name and renamed, so a segment file always
	 * has a whole, durable header. */
	fd = openat(l->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	if ((rc = log_pwrite(fd, hdr, sizeof hdr, 0)) || (rc = log_datasync(fd)))
		goto out;
	if (renameat(l->dirfd, tmp, l->dirfd, name) < 0) {
		rc = -errno;
		goto out;
	}
	/* The segment exists under its name from here on: use it even if
	 * the directory sync fails (which fails the log, as any sync does). */
	rc = log_datasync(l->dirfd);
	if (rc)
		l->err = -EIO;

	l->fd = fd;
	fd = -1;
	memcpy(l->seg_file, name, sizeof name);
	l->seg_no = l->next_seg;
	l->seg_day = now / US_PER_DAY;
	l->off = AUDIT_HEADER_BYTES;
	l->rec = 0;
	memcpy(l->chain, h.mac, AUDIT_CHAIN_BYTES);
	l->link_flags = 0;
	l->last_seal_us = now;
	l->since_seal = 0;
out:
	if (fd >= 0) {
		close(fd);
		unlinkat(l->dirfd, tmp, 0);
	}
	if (rc && l->fd < 0)
		sodium_memzero(SEG_KEY(l), AUDIT_SEGKEY_BYTES);
	return rc;
}

/* Forget the current segment; the next one links to what is on disk. */
static void seg_abandon(struct audit_log *l, uint16_t flags)
{
	close(l->fd);
	l->fd = -1;
	sodium_memzero(SEG_KEY(l), AUDIT_SEGKEY_BYTES);
	l->next_seg = l->seg_no + 1;
	l->link_count = l->rec;
	memcpy(l->link_chain, l->chain, AUDIT_CHAIN_BYTES);
	l->link_flags = flags;
}

/* Append one frame of kind with plaintext pt. Called with mu held, fd >= 0. */
static int frame_append(struct audit_log *l, uint8_t kind, const uint8_t *pt, size_t pt_len)
{
	uint8_t next[AUDIT_CHAIN_BYTES];
	size_t flen;
	int rc;

	audit_put64(l->nonce + AUDIT_NONCE_BYTES - 8, ++l->nonce_ctr);
	flen = audit_frame_build(kind, l->rec + 1, pt, pt_len, l->vault_id, l->seg_no, SEG_KEY(l),
				 l->nonce, CHAIN_KEY(l), l->chain, l->frame, next);
	rc = log_pwrite(l->fd, l->frame, flen, l->off);
	if (rc) {
		if (ftruncate(l->fd, (off_t)l->off) < 0)
			seg_abandon(l, AUDIT_HF_RECOVERY);
		return rc;
	}
	l->off += flen;
	l->rec++;
	memcpy(l->chain, next, AUDIT_CHAIN_BYTES);
	l->dirty = true;
	l->since_seal = kind == AUDIT_KIND_EVENT ? l->since_seal + 1 : 0;
	if (kind != AUDIT_KIND_EVENT)
		l->last_seal_us = audit_now_us();
	return 0;
}

static int seal_append(struct audit_log *l, uint8_t kind, const char *reason)
{
	uint8_t pt[256];
	struct audit_event ev = {
	    .type = AUDIT_EV_SEAL,
	    .time_us = audit_now_us(),
	    .pid = (uint32_t)getpid(),
	    .bytes = l->rec,
	    .detail = reason,
	};
	return frame_append(l, kind, pt, audit_event_encode(&ev, pt));
}

/* Closing seal, sync, wipe the key. Called with mu held, fd >= 0. */
static int seg_close(struct audit_log *l, const char *reason)
{
	int rc = seal_append(l, AUDIT_KIND_CLOSE, reason);
	if (l->fd < 0)
		return rc; /* abandoned by a failed write */
	if (rc) {
		/* No closing seal: the segment ends as a crash leaves one. */
		seg_abandon(l, AUDIT_HF_RECOVERY);
		return rc;
	}
	rc = log_datasync(l->fd);
	if (rc && !l->err)
		l->err = -EIO;
	l->dirty = false;
	seg_abandon(l, 0);
	return rc;
}

/* ---- names --------------------------------------------------------------- */

static void user_name(uint32_t uid, char *out, size_t cap)
{
	static __thread uint32_t c_uid = UINT32_MAX;
	static __thread char c_name[AUDIT_NAME_MAX + 1];
	struct passwd pw, *res = NULL;
	char buf[1024];

	if (uid == c_uid) {
		snprintf(out, cap, "%s", c_name);
		return;
	}
	if (getpwuid_r((uid_t)uid, &pw, buf, sizeof buf, &res) == 0 && res)
		snprintf(out, cap, "%s", res->pw_name);
	else
		snprintf(out, cap, "%u", uid);
	c_uid = uid;
	snprintf(c_name, sizeof c_name, "%s", out);
}

/* Process names: /proc/PID/comm files are kept open, the newest
 * AUDIT_PROC_CACHE of them, and read again for every record. A held file
 * reads the live name (a changed name or an exec shows at once) and fails
 * with ESRCH once its process is gone, so a pid used again by a new process
 * is opened afresh: the name is never another process's. One pread instead
 * of an open, a read and a close per record. */
#define AUDIT_PROC_CACHE 32

static pthread_mutex_t proc_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	uint32_t pid;
	int fd; /* valid when used */
	bool used;
} proc_cache[AUDIT_PROC_CACHE];
static unsigned proc_next;

static ssize_t proc_comm_pread(int fd, char *out, size_t cap)
{
	ssize_t n;

	do
		n = pread(fd, out, cap - 1, 0);
	while (n < 0 && errno == EINTR);
	return n;
}

void audit_process_name_get(uint32_t pid, char *out, size_t cap)
{
	char p[64];
	ssize_t n = -1;
	unsigned i;
	int fd;

	out[0] = '\0';
	if (pid == 0 || cap < 2)
		return;
	pthread_mutex_lock(&proc_mu);
	for (i = 0; i < AUDIT_PROC_CACHE; i++) {
		if (!proc_cache[i].used || proc_cache[i].pid != pid)
			continue;
		n = proc_comm_pread(proc_cache[i].fd, out, cap);
		if (n > 0)
			goto out;
		/* That process is gone: drop it, look the pid up again. */
		close(proc_cache[i].fd);
		proc_cache[i].used = false;
		break;
	}
	snprintf(p, sizeof p, "/proc/%u/comm", pid);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		goto out;
	n = proc_comm_pread(fd, out, cap);
	if (n <= 0) {
		close(fd);
		goto out;
	}
	i = proc_next++ % AUDIT_PROC_CACHE;
	if (proc_cache[i].used)
		close(proc_cache[i].fd);
	proc_cache[i].pid = pid;
	proc_cache[i].fd = fd;
	proc_cache[i].used = true;
out:
	pthread_mutex_unlock(&proc_mu);
	if (n <= 0) {
		out[0] = '\0';
		return;
	}
	out[n] = '\0';
	if (out[n - 1] == '\n')
		out[n - 1] = '\0';
}

/* ---- the API ------------------------------------------------------------- */

static int log_append(struct audit_log *l, const struct audit_event *ev)
{
	size_t pt_len, flen;
	uint64_t now = audit_now_us();
	int rc;

	if (l->err)
		return l->err;
	pt_len = audit_event_encode(ev, l->pt);
	flen = AUDIT_FRAME_HEAD_BYTES + pt_len + AUDIT_TAG_BYTES + AUDIT_CHAIN_BYTES;
	if (l->fd >= 0 && l->rec > 0 &&
	    (now / US_PER_DAY != l->seg_day || l->off + flen > l->o.segment_max_bytes)) {
		if ((rc = seg_close(l, "rotate")))
			return rc;
	}
	if (l->fd < 0 && (rc = seg_create(l)))
		return rc;
	if ((rc = frame_append(l, AUDIT_KIND_EVENT, l->pt, pt_len)))
		return rc;
	if (l->since_seal >= l->o.seal_every_records) {
		/* The record itself is written; a failed seal shows as a later
		 * "no seal" and is retried by the next record or the timer. */
		(void)seal_append(l, AUDIT_KIND_SEAL, "periodic");
	}
	return 0;
}

int audit_log_write(struct audit_log *l, const struct audit_event *in)
{
	struct audit_event ev = *in;
	char user[AUDIT_NAME_MAX + 1], proc[AUDIT_NAME_MAX + 1];
	int rc;

	if (!ev.time_us)
		ev.time_us = audit_now_us();
	if (l->o.resolve_names) {
		if (!ev.user) {
			user_name(ev.uid, user, sizeof user);
			ev.user = user;
		}
		if (!ev.process) {
			audit_process_name_get(ev.pid, proc, sizeof proc);
			ev.process = proc;
		}
	}
	pthread_mutex_lock(&l->mu);
	rc = log_append(l, &ev);
	pthread_mutex_unlock(&l->mu);
	if (!rc && l->o.forward_syslog) {
		char line[1024];
		audit_event_format(&ev, line, sizeof line);
		syslog(LOG_AUTHPRIV | LOG_INFO, "strongroom audit: %s", line);
	}
	return rc;
}

static void *sync_main(void *arg)
{
	struct audit_log *l = arg;
	struct timespec ts;
	sigset_t all;

	/* Signals meant for the process (SIGINT, SIGTERM) must reach the
	 * request loop's threads, which stop the mount; never this one. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_mutex_lock(&l->mu);
	while (!l->stop) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += l->o.sync_ms / 1000;
		ts.tv_nsec += (long)(l->o.sync_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&l->cv, &l->mu, &ts);
		if (l->stop)
			break;
		if (l->fd >= 0 && l->since_seal > 0 && !l->err &&
		    audit_now_us() - l->last_seal_us >= (uint64_t)l->o.seal_every_sec * 1000000u)
			(void)seal_append(l, AUDIT_KIND_SEAL, "periodic");
		if (l->dirty && l->fd >= 0) {
			int fd = dup(l->fd), rc;
			l->dirty = false;
			pthread_mutex_unlock(&l->mu);
			rc = fd < 0 ? -errno : log_datasync(fd);
			if (fd >= 0)
				close(fd);
			pthread_mutex_lock(&l->mu);
			if (rc && !l->err)
				l->err = -EIO;
		}
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

/* Where the newest segment ends, judged without its key. Sets the link_*
 * fields; fills note with a recovery or alert text when it was not sealed. */
static int log_link_newest(struct audit_log *l, const struct audit_seg_ent *last,
			   enum audit_event_type *note_type, char *note, size_t cap)
{
	struct audit_seg_header h;
	struct audit_walk w;
	struct audit_frame f;
	struct stat st;
	uint8_t mac[AUDIT_CHAIN_BYTES];
	uint8_t *buf = NULL;
	size_t len = 0;
	enum audit_walk_step s;
	int fd, rc = 0;

	l->next_seg = last->segment + 1;
	l->link_count = 0;
	memset(l->link_chain, 0, sizeof l->link_chain);
	l->link_flags = AUDIT_HF_RELINK;
	*note_type = AUDIT_EV_ALERT;

	fd = openat(l->dirfd, last->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(note, cap,
			 "audit segment %s cannot be opened (%s); the chain restarts here",
			 last->name, strerror(errno));
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	while (len < (size_t)st.st_size) {
		ssize_t n = pread(fd, buf + len, (size_t)st.st_size - len, (off_t)len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (audit_header_parse(buf, len, &h) != 0 ||
	    sodium_memcmp(h.vault_id, l->vault_id, AUDIT_VAULT_ID_BYTES) != 0) {
		snprintf(note, cap, "audit segment %s has no valid header; the chain restarts here",
			 last->name);
		goto out;
	}
	audit_header_mac(buf, CHAIN_KEY(l), mac);
	if (sodium_memcmp(mac, h.mac, AUDIT_CHAIN_BYTES) != 0) {
		snprintf(note, cap,
			 "audit segment %s header fails authentication; the chain restarts here",
			 last->name);
		goto out;
	}
	audit_walk_init(&w, buf, len, h.mac);
	while ((s = audit_walk_next(&w, CHAIN_KEY(l), &f)) == AUDIT_WALK_RECORD)
		;
	l->next_seg = h.segment + 1 > l->next_seg ? h.segment + 1 : l->next_seg;
	l->link_count = w.count;
	memcpy(l->link_chain, w.chain, AUDIT_CHAIN_BYTES);
	if (s == AUDIT_WALK_END && w.closed) {
		l->link_flags = 0;
		note[0] = '\0';
		goto out;
	}
	l->link_flags = AUDIT_HF_RECOVERY;
	if (s == AUDIT_WALK_END || s == AUDIT_WALK_PARTIAL) {
		*note_type = AUDIT_EV_RECOVERY;
		snprintf(note, cap, "audit segment %s has no seal after record %llu (crash)",
			 last->name, (unsigned long long)w.count);
	} else {
		snprintf(note, cap, "audit segment %s is damaged after record %llu", last->name,
			 (unsigned long long)w.count);
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

/* Segments whose creation a crash interrupted never got their name. */
static void log_remove_tmp(int dirfd)
{
	int fd = dup(dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d)))
		if (strncmp(de->d_name, "tmp-" AUDIT_SEG_PREFIX, 8) == 0)
			unlinkat(dirfd, de->d_name, 0);
	closedir(d);
}

int audit_log_open(const char *audit_dir, const uint8_t vault_id[AUDIT_VAULT_ID_BYTES],
		   const uint8_t audit_pk[AUDIT_PK_BYTES],
		   const unsigned char chain_key[AUDIT_CHAIN_KEY_BYTES], const struct audit_opts *o,
		   struct audit_log **out)
{
	struct audit_log *l;
	struct audit_seg_ent *segs = NULL;
	enum audit_event_type note_type = AUDIT_EV_RECOVERY;
	char note[AUDIT_DETAIL_MAX + 1] = "";
	pthread_condattr_t ca;
	ssize_t nsegs;
	int rc;

	*out = NULL;
	if (sodium_init() < 0)
		return -ENOSYS;
	l = calloc(1, sizeof *l);
	if (!l)
		return -ENOMEM;
	l->fd = -1;
	l->dirfd = -1;
	pthread_mutex_init(&l->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (o)
		l->o = *o;
	if (!l->o.segment_max_bytes)
		l->o.segment_max_bytes = AUDIT_SEGMENT_MAX_DEFAULT;
	if (!l->o.seal_every_records)
		l->o.seal_every_records = AUDIT_SEAL_RECORDS_DEFAULT;
	if (!l->o.seal_every_sec)
		l->o.seal_every_sec = AUDIT_SEAL_SECONDS_DEFAULT;
	if (!l->o.sync_ms)
		l->o.sync_ms = AUDIT_SYNC_MS_DEFAULT;
	memcpy(l->vault_id, vault_id, AUDIT_VAULT_ID_BYTES);
	memcpy(l->pk, audit_pk, AUDIT_PK_BYTES);
	l->keys = sodium_malloc(64);
	l->pt = malloc(AUDIT_FRAME_MAX_BYTES);
	l->frame = malloc(AUDIT_FRAME_MAX_BYTES);
	if (!l->keys || !l->pt || !l->frame) {
		rc = -ENOMEM;
		goto fail;
	}
	sodium_mlock(l->keys, 64);
	sodium_memzero(l->keys, 64);
	memcpy(CHAIN_KEY(l), chain_key, AUDIT_CHAIN_KEY_BYTES);

	if (mkdir(audit_dir, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		goto fail;
	}
	l->dirfd = open(audit_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (l->dirfd < 0) {
		rc = -errno;
		goto fail;
	}
	log_remove_tmp(l->dirfd);
	nsegs = audit_seg_list(l->dirfd, &segs);
	if (nsegs < 0) {
		rc = (int)nsegs;
		goto fail;
	}
	if (nsegs == 0) {
		l->next_seg = 1;
	} else {
		if ((rc = log_link_newest(l, &segs[nsegs - 1], &note_type, note, sizeof note)))
			goto fail;
		l->recovered = l->link_flags != 0;
	}
	free(segs);
	segs = NULL;

	pthread_mutex_lock(&l->mu);
	rc = seg_create(l);
	if (!rc && note[0]) {
		struct audit_event ev = {
		    .type = note_type,
		    .time_us = audit_now_us(),
		    .pid = (uint32_t)getpid(),
		    .detail = note,
		    .bytes = l->link_count,
		};
		rc = log_append(l, &ev);
	}
	pthread_mutex_unlock(&l->mu);
	if (rc)
		goto fail;
	if ((rc = -pthread_create(&l->thr, NULL, sync_main, l)))
		goto fail;
	l->thr_started = true;
	*out = l;
	return 0;
fail:
	free(segs);
	if (l->fd >= 0)
		close(l->fd);
	if (l->dirfd >= 0)
		close(l->dirfd);
	if (l->keys) {
		sodium_memzero(l->keys, 64);
		sodium_free(l->keys);
	}
	free(l->pt);
	free(l->frame);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	free(l);
	return rc;
}

int audit_log_open_ro(const char *audit_dir, const uint8_t vault_id[AUDIT_VAULT_ID_BYTES],
		      const uint8_t audit_pk[AUDIT_PK_BYTES],
		      const unsigned char chain_key[AUDIT_CHAIN_KEY_BYTES],
		      const struct audit_opts *o, char name[AUDIT_CHAIN_NAME_BYTES],
		      struct audit_log **out)
{
	uint8_t id[AUDIT_CHAIN_ID_BYTES];
	unsigned char *key;
	char dir[4096];
	int rc;

	*out = NULL;
	name[0] = '\0';
	if (sodium_init() < 0)
		return -ENOSYS;
	randombytes_buf(id, sizeof id);
	audit_chain_name(id, name);
	if (snprintf(dir, sizeof dir, "%s/%s", audit_dir, name) >= (int)sizeof dir)
		return -ENAMETOOLONG;
	/* A new directory, never an existing one: no two drivers share a chain. */
	if (mkdir(dir, 0700) < 0)
		return -errno;
	key = sodium_malloc(AUDIT_CHAIN_KEY_BYTES);
	if (!key) {
		rc = -ENOMEM;
		goto out;
	}
	audit_chain_key_derive(chain_key, id, key);
	rc = audit_log_open(dir, vault_id, audit_pk, key, o, out);
	sodium_memzero(key, AUDIT_CHAIN_KEY_BYTES);
	sodium_free(key);
out:
	if (rc)
		rmdir(dir); /* fails, harmlessly, if a segment was left in it */
	return rc;
}

bool audit_log_recovered(const struct audit_log *l)
{
	return l->recovered;
}

/* Stop the sync thread, wipe the keys, free. Called with mu held, which it
 * releases; the segment is closed or abandoned. */
static void log_free(struct audit_log *l)
{
	l->stop = true;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
	if (l->thr_started)
		pthread_join(l->thr, NULL);
	if (l->fd >= 0)
		close(l->fd);
	close(l->dirfd);
	sodium_memzero(l->keys, 64);
	sodium_free(l->keys);
	free(l->pt);
	free(l->frame);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	free(l);
}

int audit_log_close(struct audit_log *l)
{
	int rc = 0;

	if (!l)
		return 0;
	pthread_mutex_lock(&l->mu);
	if (l->fd >= 0)
		rc = seg_close(l, "close");
	if (!rc)
		rc = l->err;
	log_free(l);
	return rc;
}

void audit_log_abandon(struct audit_log *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->mu);
	if (l->fd >= 0) {
		/* The records written stay, synced if the disk lets us; no
		 * closing seal, so the next audit_log_open records a recovery. */
		(void)log_datasync(l->fd);
		seg_abandon(l, AUDIT_HF_RECOVERY);
	}
	log_free(l);
}
