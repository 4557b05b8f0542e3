/* audit_reader.c - reads the audit trail in chain order and judges it.
 *
 * The reader is the verifier: it yields a record only after checking the
 * segment's header MAC, the link from the segment before, the record's
 * number, its chain value and its AEAD tag. The algorithm is written out in
 * docs/audit.md, "Verifying".
 *
 * Invariants:
 *  1. Records come out strictly in chain order; the first check that fails
 *     makes the reader broken for good and names that place (file, record,
 *     what) in `prob`.
 *  2. A segment's tail that is part of a frame or zeros (what a crash during
 *     write(2) leaves) is accepted only if the segment is not sealed and
 *     either it is the newest (status UNSEALED) or the next segment's header
 *     says RECOVERY and links to its last whole record.
 *  3. Segment keys are unsealed into guarded memory and wiped when the
 *     reader moves on to the next segment.
 *  4. With AUDIT_READ_FOLLOW, an unsealed newest segment is never judged:
 *     the reader re-reads it and the directory on the next call.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "audit_int.h"

#define R_SK(r)	       ((r)->keys)
#define R_CHAIN_KEY(r) ((r)->keys + 32)
#define R_SEG_KEY(r)   ((r)->keys + 64)

struct audit_reader {
	int dirfd;
	unsigned flags;
	uint8_t vault_id[AUDIT_VAULT_ID_BYTES];
	uint8_t pk[AUDIT_PK_BYTES];
	unsigned char *keys; /* sodium_malloc: sk, chain key, current segment key */

	struct audit_seg_ent *segs;
	size_t nsegs, idx; /* idx: the next entry to open */

	/* Current segment. */
	bool have_cur;
	struct audit_seg_ent cur;
	uint8_t *buf;
	size_t len, cap;
	struct audit_walk w;

	/* How the previous segment ended. */
	bool have_prev;
	struct audit_seg_ent prev;
	uint64_t prev_count;
	uint8_t prev_chain[AUDIT_CHAIN_BYTES];
	bool prev_closed;
	uint64_t prev_last_seal;

	struct audit_problem prob;
	int broken; /* 0 or the -errno every later call returns */
	uint64_t nsegs_read, nrecords, nrecoveries;

	uint8_t pt[AUDIT_FRAME_MAX_BYTES];
};

static int reader_break(struct audit_reader *r, int err, const struct audit_seg_ent *seg,
			uint64_t record, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int reader_break(struct audit_reader *r, int err, const struct audit_seg_ent *seg,
			uint64_t record, const char *fmt, ...)
{
	va_list ap;

	r->prob.status = AUDIT_BROKEN;
	snprintf(r->prob.file, sizeof r->prob.file, "%s", seg ? seg->name : "");
	r->prob.segment = seg ? seg->segment : 0;
	r->prob.record = record;
	va_start(ap, fmt);
	vsnprintf(r->prob.what, sizeof r->prob.what, fmt, ap);
	va_end(ap);
	r->broken = err;
	return err;
}

/* Read the current segment file from r->len to its end. */
static int reader_load(struct audit_reader *r)
{
	struct stat st;
	int fd = openat(r->dirfd, r->cur.name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), rc = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if ((size_t)st.st_size > r->cap) {
		uint8_t *nb = realloc(r->buf, (size_t)st.st_size);
		if (!nb) {
			rc = -ENOMEM;
			goto out;
		}
		r->buf = nb;
		r->cap = (size_t)st.st_size;
	}
	while (r->len < (size_t)st.st_size) {
		ssize_t n = pread(fd, r->buf + r->len, (size_t)st.st_size - r->len, (off_t)r->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto out;
		}
		if (n == 0)
			break;
		r->len += (size_t)n;
	}
	r->w.buf = r->buf;
	r->w.len = r->len;
out:
	close(fd);
	return rc;
}

static bool is_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;
	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

/* Check how the segment header h links to the previous segment. */
static int reader_check_link(struct audit_reader *r, const struct audit_seg_header *h)
{
	const struct audit_seg_ent *s = &r->cur;
	uint64_t expect = r->have_prev ? r->prev.segment + 1 : 1;

	if (h->segment != s->segment)
		return reader_break(r, -EUCLEAN, s, 0,
				    "header names segment %llu: the file was renamed or copied",
				    (unsigned long long)h->segment);
	if (s->segment > expect) {
		if (!r->have_prev)
			return reader_break(r, -EUCLEAN, s, 0,
					    "segments 1 to %llu are missing: the start of the "
					    "trail was removed",
					    (unsigned long long)(s->segment - 1));
		if (s->segment - 1 > expect)
			return reader_break(r, -EUCLEAN, s, 0,
					    "segments %llu to %llu are missing: they were removed "
					    "after %s",
					    (unsigned long long)expect,
					    (unsigned long long)(s->segment - 1), r->prev.name);
		return reader_break(r, -EUCLEAN, s, 0,
				    "segment %llu is missing: it was removed after %s",
				    (unsigned long long)expect, r->prev.name);
	}
	if (h->flags & AUDIT_HF_RELINK)
		return reader_break(r, -EBADMSG, s, 0,
				    "the writer could not read the segment before this one when it "
				    "started it: the chain restarts here");
	if (!r->have_prev) {
		if (h->prev_count != 0 || !is_zero(h->prev_chain, AUDIT_CHAIN_BYTES) || h->flags)
			return reader_break(r, -EBADMSG, s, 0,
					    "links to a segment before the first one: the start "
					    "of the trail was removed");
		return 0;
	}
	if ((h->flags & AUDIT_HF_RECOVERY) && r->prev_closed)
		return reader_break(r, -EBADMSG, s, 0,
				    "says %s ended in a crash, but that segment is sealed",
				    r->prev.name);
	if (h->prev_count > r->prev_count)
		return reader_break(
		    r, -EBADMSG, &r->prev, r->prev_count + 1,
		    "records %llu to %llu are missing: the segment was cut after "
		    "record %llu (%s links to record %llu)",
		    (unsigned long long)r->prev_count + 1, (unsigned long long)h->prev_count,
		    (unsigned long long)r->prev_count, s->name, (unsigned long long)h->prev_count);
	if (h->prev_count < r->prev_count)
		return reader_break(r, -EBADMSG, &r->prev, h->prev_count + 1,
				    "records after record %llu are not linked from %s: they were "
				    "added later",
				    (unsigned long long)h->prev_count, s->name);
	if (sodium_memcmp(h->prev_chain, r->prev_chain, AUDIT_CHAIN_BYTES) != 0)
		return reader_break(r, -EBADMSG, &r->prev, r->prev_count,
				    "its last chain value does not match the link in %s: the "
				    "segment was replaced",
				    s->name);
	if (!(h->flags & AUDIT_HF_RECOVERY) && !r->prev_closed)
		return reader_break(r, -EBADMSG, &r->prev, r->prev_count,
				    "no closing seal after record %llu, and %s does not record a "
				    "crash: the segment was cut",
				    (unsigned long long)r->prev_count, s->name);
	if (h->flags & AUDIT_HF_RECOVERY)
		r->nrecoveries++;
	return 0;
}

/* Open segs[idx] as the current segment: header, MAC, link, key. */
static int reader_open_segment(struct audit_reader *r)
{
	struct audit_seg_header h;
	uint8_t mac[AUDIT_CHAIN_BYTES];
	int rc;

	r->cur = r->segs[r->idx++];
	r->len = 0;
	if (r->have_prev && r->cur.segment == r->prev.segment)
		return reader_break(r, -EUCLEAN, &r->cur, 0,
				    "a second file with segment number %llu (%s)",
				    (unsigned long long)r->cur.segment, r->prev.name);
	if ((rc = reader_load(r)))
		return reader_break(r, rc, &r->cur, 0, "cannot read the file: %s", strerror(-rc));
	rc = audit_header_parse(r->buf, r->len, &h);
	if (rc == -EOPNOTSUPP)
		return reader_break(r, rc, &r->cur, 0, "unknown format version or flags");
	if (rc)
		return reader_break(r, rc, &r->cur, 0,
				    r->len < AUDIT_HEADER_BYTES ? "shorter than a segment header"
								: "not a segment header");
	if (sodium_memcmp(h.vault_id, r->vault_id, AUDIT_VAULT_ID_BYTES) != 0)
		return reader_break(r, -EUCLEAN, &r->cur, 0, "belongs to another vault");
	audit_header_mac(r->buf, R_CHAIN_KEY(r), mac);
	if (sodium_memcmp(mac, h.mac, AUDIT_CHAIN_BYTES) != 0)
		return reader_break(r, -EBADMSG, &r->cur, 0,
				    "the segment header fails authentication: it was edited");
	if ((rc = reader_check_link(r, &h)))
		return rc;
	if (crypto_box_seal_open(R_SEG_KEY(r), h.sealed_key, AUDIT_SEALED_KEY_BYTES, r->pk,
				 R_SK(r)) != 0)
		return reader_break(r, -EBADMSG, &r->cur, 0,
				    "the segment key does not open with the audit key");
	audit_walk_init(&r->w, r->buf, r->len, h.mac);
	r->have_cur = true;
	r->nsegs_read++;
	return 0;
}

/* The current segment ended (its bytes are used up or the rest is torn). */
static void reader_finish_segment(struct audit_reader *r)
{
	r->have_prev = true;
	r->prev = r->cur;
	r->prev_count = r->w.count;
	memcpy(r->prev_chain, r->w.chain, AUDIT_CHAIN_BYTES);
	r->prev_closed = r->w.closed;
	r->prev_last_seal = r->w.last_seal;
	r->have_cur = false;
	sodium_memzero(R_SEG_KEY(r), AUDIT_SEGKEY_BYTES);
}

/* Follow mode: look for segments newer than the last one listed. */
static int reader_rescan(struct audit_reader *r, bool *found)
{
	struct audit_seg_ent *v;
	uint64_t last = r->nsegs ? r->segs[r->nsegs - 1].segment : 0;
	ssize_t n = audit_seg_list(r->dirfd, &v);
	size_t i;

	*found = false;
	if (n < 0)
		return (int)n;
	for (i = 0; i < (size_t)n && v[i].segment <= last; i++)
		;
	if (i < (size_t)n) {
		free(r->segs);
		r->segs = v;
		r->nsegs = (size_t)n;
		r->idx = i;
		*found = true;
		return 0;
	}
	free(v);
	return 0;
}

/* Judge the end of the trail (not following). */
static void reader_judge_end(struct audit_reader *r)
{
	if (!r->have_prev || r->prev_closed) {
		r->prob.status = AUDIT_INTACT;
		return;
	}
	r->prob.status = AUDIT_UNSEALED;
	snprintf(r->prob.file, sizeof r->prob.file, "%s", r->prev.name);
	r->prob.segment = r->prev.segment;
	r->prob.record = r->prev_count;
	if (r->prev_last_seal)
		snprintf(r->prob.what, sizeof r->prob.what,
			 "no seal after record %llu (last seal at record %llu): the writer "
			 "crashed or is still running",
			 (unsigned long long)r->prev_count, (unsigned long long)r->prev_last_seal);
	else
		snprintf(r->prob.what, sizeof r->prob.what,
			 "no seal after record %llu: the writer crashed or is still running",
			 (unsigned long long)r->prev_count);
}

/* Decrypt and decode the frame the walk just accepted. */
static int reader_emit(struct audit_reader *r, const struct audit_frame *f, size_t frame_off,
		       struct audit_entry *e)
{
	uint8_t ad[AUDIT_AD_BYTES];
	unsigned long long pt_len = 0;

	audit_frame_ad(r->vault_id, r->cur.segment, r->buf + frame_off, ad);
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(r->pt, &pt_len, NULL, f->ciphertext,
						       f->ciphertext_len, ad, sizeof ad, f->nonce,
						       R_SEG_KEY(r)) != 0)
		return reader_break(r, -EBADMSG, &r->cur, f->record,
				    "does not decrypt: the record was altered");
	memset(e, 0, sizeof *e);
	if (audit_entry_decode(r->pt, (size_t)pt_len, e) != 0)
		return reader_break(r, -EUCLEAN, &r->cur, f->record, "malformed contents");
	e->segment = r->cur.segment;
	e->record = f->record;
	e->kind = f->kind;
	r->nrecords++;
	return 1;
}

int audit_reader_next(struct audit_reader *r, struct audit_entry *e)
{
	struct audit_frame f;
	bool found;
	int rc;

	if (r->broken)
		return r->broken;
	for (;;) {
		if (!r->have_cur) {
			if (r->idx >= r->nsegs) {
				if (!(r->flags & AUDIT_READ_FOLLOW)) {
					reader_judge_end(r);
					return 0;
				}
				if ((rc = reader_rescan(r, &found)))
					return rc;
				if (!found)
					return 0;
			}
			if ((rc = reader_open_segment(r)))
				return rc;
		}
		size_t at = r->w.off;
		enum audit_walk_step s = audit_walk_next(&r->w, R_CHAIN_KEY(r), &f);
		uint64_t n = r->w.count + 1;
		switch (s) {
		case AUDIT_WALK_RECORD:
			return reader_emit(r, &f, at, e);
		case AUDIT_WALK_END:
		case AUDIT_WALK_PARTIAL:
			if ((r->flags & AUDIT_READ_FOLLOW) && !r->w.closed && r->idx >= r->nsegs) {
				/* The writer may still be appending to it. Bytes
				 * past the last whole record are read again: a
				 * failed write may have been cut back since. */
				size_t before = r->len;
				r->len = r->w.off;
				if ((rc = reader_load(r)))
					return rc;
				if (r->len > before)
					continue;
				if ((rc = reader_rescan(r, &found)))
					return rc;
				if (!found)
					return 0;
				/* A newer segment exists: this one is done, but
				 * catch bytes written before the writer moved on. */
				r->len = r->w.off;
				if ((rc = reader_load(r)))
					return rc;
				if (r->len > before)
					continue;
			}
			reader_finish_segment(r);
			continue;
		case AUDIT_WALK_BAD_FRAME:
			return reader_break(r, -EUCLEAN, &r->cur, n, "malformed frame at byte %zu",
					    at);
		case AUDIT_WALK_BAD_NUMBER:
			if (f.record <= r->w.count)
				return reader_break(r, -EBADMSG, &r->cur, n,
						    "found a second copy of record %llu in its "
						    "place: a record was duplicated (or its "
						    "number altered)",
						    (unsigned long long)f.record);
			return reader_break(r, -EBADMSG, &r->cur, n,
					    "found record %llu in its place: a record was "
					    "deleted or moved (or its number altered)",
					    (unsigned long long)f.record);
		case AUDIT_WALK_BAD_CHAIN:
			return reader_break(r, -EBADMSG, &r->cur, n,
					    "chain value does not match: the record was altered");
		case AUDIT_WALK_AFTER_CLOSE:
			return reader_break(r, -EBADMSG, &r->cur, r->w.count + 1,
					    "bytes after the closing seal (record %llu)",
					    (unsigned long long)r->w.count);
		}
	}
}

int audit_reader_open(const char *audit_dir, const uint8_t vault_id[AUDIT_VAULT_ID_BYTES],
		      const uint8_t audit_pk[AUDIT_PK_BYTES],
		      const unsigned char audit_sk[AUDIT_SK_BYTES],
		      const unsigned char chain_key[AUDIT_CHAIN_KEY_BYTES], unsigned flags,
		      struct audit_reader **out)
{
	struct audit_reader *r = NULL;
	uint8_t derived[AUDIT_PK_BYTES];
	ssize_t n;
	int rc;

	*out = NULL;
	if (sodium_init() < 0)
		return -ENOSYS;
	if (!audit_sk)
		return -ENOKEY;
	if (crypto_scalarmult_base(derived, audit_sk) != 0 ||
	    sodium_memcmp(derived, audit_pk, AUDIT_PK_BYTES) != 0)
		return -EKEYREJECTED;
	r = calloc(1, sizeof *r);
	if (!r)
		return -ENOMEM;
	r->dirfd = -1;
	r->flags = flags;
	memcpy(r->vault_id, vault_id, AUDIT_VAULT_ID_BYTES);
	memcpy(r->pk, audit_pk, AUDIT_PK_BYTES);
	r->keys = sodium_malloc(96);
	if (!r->keys) {
		rc = -ENOMEM;
		goto fail;
	}
	sodium_mlock(r->keys, 96);
	memcpy(R_SK(r), audit_sk, AUDIT_SK_BYTES);
	memcpy(R_CHAIN_KEY(r), chain_key, AUDIT_CHAIN_KEY_BYTES);
	sodium_memzero(R_SEG_KEY(r), AUDIT_SEGKEY_BYTES);
	r->dirfd = open(audit_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (r->dirfd < 0) {
		rc = -errno;
		goto fail;
	}
	n = audit_seg_list(r->dirfd, &r->segs);
	if (n < 0) {
		rc = (int)n;
		goto fail;
	}
	r->nsegs = (size_t)n;
	r->prob.status = AUDIT_INTACT;
	*out = r;
	return 0;
fail:
	assert(rc < 0); /* -errno: the caller gets no reader */
	audit_reader_close(r);
	return rc;
}

const struct audit_problem *audit_reader_problem(const struct audit_reader *r)
{
	return &r->prob;
}

void audit_reader_close(struct audit_reader *r)
{
	if (!r)
		return;
	if (r->dirfd >= 0)
		close(r->dirfd);
	if (r->keys) {
		sodium_memzero(r->keys, 96);
		sodium_free(r->keys);
	}
	free(r->segs);
	free(r->buf);
	sodium_memzero(r->pt, sizeof r->pt);
	free(r);
}

int audit_verify(const char *audit_dir, const uint8_t vault_id[AUDIT_VAULT_ID_BYTES],
		 const uint8_t audit_pk[AUDIT_PK_BYTES],
		 const unsigned char audit_sk[AUDIT_SK_BYTES],
		 const unsigned char chain_key[AUDIT_CHAIN_KEY_BYTES],
		 struct audit_verify_result *res)
{
	struct audit_reader *r;
	struct audit_entry *e;
	int rc;

	memset(res, 0, sizeof *res);
	e = malloc(sizeof *e);
	if (!e)
		return -ENOMEM;
	rc = audit_reader_open(audit_dir, vault_id, audit_pk, audit_sk, chain_key, 0, &r);
	if (rc) {
		free(e);
		return rc;
	}
	while ((rc = audit_reader_next(r, e)) > 0)
		;
	res->problem = r->prob;
	res->segments = r->nsegs_read;
	res->records = r->nrecords;
	res->recoveries = r->nrecoveries;
	if (rc < 0 && r->prob.status != AUDIT_BROKEN) {
		/* An I/O error outside the judged bytes (rescan, load). */
		audit_reader_close(r);
		free(e);
		return rc;
	}
	audit_reader_close(r);
	sodium_memzero(e, sizeof *e);
	free(e);
	return 0;
}
