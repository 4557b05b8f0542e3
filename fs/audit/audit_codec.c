/* audit_codec.c - pure encoders and decoders of audit trail bytes.
 *
 * Segment headers, record frames and event plaintexts, byte for byte as in
 * docs/audit.md. No I/O except the directory listing helper at the end.
 *
 * Invariants kept here:
 *  1. Every parser checks a length before it reads the bytes it covers; a
 *     parser never reads past len, whatever the input (fuzzed).
 *  2. Encoding never fails: strings longer than their limit are cut and the
 *     record says so (AUDIT_F_TRUNCATED); the encoded plaintext always fits
 *     AUDIT_FRAME_MAX_BYTES with its frame.
 *  3. Decoding accepts exactly what encoding produces: strings without NUL
 *     bytes within their limits, a padded length, zero padding.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "audit_int.h"

static const char *const audit_event_names[AUDIT_EV__COUNT] = {
    [AUDIT_EV_OPEN] = "open",
    [AUDIT_EV_READ] = "read",
    [AUDIT_EV_READ_SUMMARY] = "read-summary",
    [AUDIT_EV_CREATE] = "create",
    [AUDIT_EV_WRITE] = "write",
    [AUDIT_EV_TRUNCATE] = "truncate",
    [AUDIT_EV_RENAME] = "rename",
    [AUDIT_EV_UNLINK] = "unlink",
    [AUDIT_EV_LINK] = "link",
    [AUDIT_EV_MKDIR] = "mkdir",
    [AUDIT_EV_RMDIR] = "rmdir",
    [AUDIT_EV_SETATTR] = "setattr",
    [AUDIT_EV_LEVEL] = "level",
    [AUDIT_EV_ACL] = "acl",
    [AUDIT_EV_DENIAL] = "denial",
    [AUDIT_EV_INTEGRITY] = "integrity",
    [AUDIT_EV_RECOVERY] = "recovery",
    [AUDIT_EV_MOUNT] = "mount",
    [AUDIT_EV_UNMOUNT] = "unmount",
    [AUDIT_EV_KEY_USE] = "key-use",
    [AUDIT_EV_ALERT] = "alert",
    [AUDIT_EV_SEAL] = "seal",
    [AUDIT_EV_ROTATE] = "rotate",
    [AUDIT_EV_REPAIR] = "repair",
    [AUDIT_EV_CHAINS] = "chains",
};

const char *audit_event_name(enum audit_event_type t)
{
	if ((int)t <= 0 || t >= AUDIT_EV__COUNT)
		return "?";
	return audit_event_names[t];
}

int audit_event_parse(const char *name)
{
	for (int t = 1; t < AUDIT_EV__COUNT; t++)
		if (strcmp(name, audit_event_names[t]) == 0)
			return t;
	return -EINVAL;
}

uint64_t audit_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- segment header ------------------------------------------------------ */

#define HDR_MAC_OFF (AUDIT_HEADER_BYTES - AUDIT_CHAIN_BYTES)

void audit_header_mac(const uint8_t *hdr, const unsigned char chain_key[32], uint8_t mac[32])
{
	crypto_generichash(mac, AUDIT_CHAIN_BYTES, hdr, HDR_MAC_OFF, chain_key,
			   AUDIT_CHAIN_KEY_BYTES);
}

void audit_header_encode(struct audit_seg_header *h, const unsigned char chain_key[32],
			 uint8_t out[AUDIT_HEADER_BYTES])
{
	memset(out, 0, AUDIT_HEADER_BYTES);
	memcpy(out, AUDIT_MAGIC, 8);
	audit_put16(out + 8, h->version);
	audit_put16(out + 10, h->flags);
	audit_put32(out + 12, AUDIT_HEADER_BYTES);
	memcpy(out + 16, h->vault_id, AUDIT_VAULT_ID_BYTES);
	audit_put64(out + 32, h->segment);
	audit_put64(out + 40, h->created_us);
	audit_put64(out + 48, h->prev_count);
	memcpy(out + 56, h->prev_chain, AUDIT_CHAIN_BYTES);
	memcpy(out + 88, h->sealed_key, AUDIT_SEALED_KEY_BYTES);
	audit_header_mac(out, chain_key, h->mac);
	memcpy(out + HDR_MAC_OFF, h->mac, AUDIT_CHAIN_BYTES);
}

int audit_header_parse(const uint8_t *buf, size_t len, struct audit_seg_header *h)
{
	if (len < AUDIT_HEADER_BYTES || memcmp(buf, AUDIT_MAGIC, 8) != 0)
		return -EUCLEAN;
	h->version = audit_get16(buf + 8);
	h->flags = audit_get16(buf + 10);
	if (h->version != AUDIT_VERSION || (h->flags & ~AUDIT_HF_KNOWN))
		return -EOPNOTSUPP;
	if (audit_get32(buf + 12) != AUDIT_HEADER_BYTES)
		return -EUCLEAN;
	memcpy(h->vault_id, buf + 16, AUDIT_VAULT_ID_BYTES);
	h->segment = audit_get64(buf + 32);
	h->created_us = audit_get64(buf + 40);
	h->prev_count = audit_get64(buf + 48);
	memcpy(h->prev_chain, buf + 56, AUDIT_CHAIN_BYTES);
	memcpy(h->sealed_key, buf + 88, AUDIT_SEALED_KEY_BYTES);
	memcpy(h->mac, buf + HDR_MAC_OFF, AUDIT_CHAIN_BYTES);
	if (h->segment == 0)
		return -EUCLEAN;
	return 0;
}

/* ---- frames -------------------------------------------------------------- */

void audit_chain_next(const unsigned char chain_key[32], const uint8_t prev[32],
		      const uint8_t *frame, size_t body_len, uint8_t next[32])
{
	crypto_generichash_state st;
	crypto_generichash_init(&st, chain_key, AUDIT_CHAIN_KEY_BYTES, AUDIT_CHAIN_BYTES);
	crypto_generichash_update(&st, prev, AUDIT_CHAIN_BYTES);
	crypto_generichash_update(&st, frame, body_len);
	crypto_generichash_final(&st, next, AUDIT_CHAIN_BYTES);
}

void audit_frame_ad(const uint8_t vault_id[16], uint64_t segment, const uint8_t *frame,
		    uint8_t ad[AUDIT_AD_BYTES])
{
	memcpy(ad, vault_id, AUDIT_VAULT_ID_BYTES);
	audit_put64(ad + AUDIT_VAULT_ID_BYTES, segment);
	memcpy(ad + AUDIT_VAULT_ID_BYTES + 8, frame, 16);
}

long audit_frame_parse(const uint8_t *buf, size_t len, struct audit_frame *f)
{
	if (len < 4)
		return 0;
	uint32_t flen = audit_get32(buf);
	if (flen < AUDIT_FRAME_MIN_BYTES || flen > AUDIT_FRAME_MAX_BYTES)
		return -EUCLEAN;
	if (flen > len)
		return 0;
	f->len = flen;
	f->kind = buf[4];
	if (f->kind < AUDIT_KIND_EVENT || f->kind > AUDIT_KIND_CLOSE)
		return -EUCLEAN;
	if (buf[5] | buf[6] | buf[7])
		return -EUCLEAN;
	f->record = audit_get64(buf + 8);
	f->nonce = buf + 16;
	f->ciphertext = buf + AUDIT_FRAME_HEAD_BYTES;
	f->ciphertext_len = flen - AUDIT_FRAME_HEAD_BYTES - AUDIT_CHAIN_BYTES;
	/* Plaintexts are padded, so a well-formed ciphertext is tag + k*32. */
	if ((f->ciphertext_len - AUDIT_TAG_BYTES) % AUDIT_PT_ALIGN != 0 ||
	    f->ciphertext_len == AUDIT_TAG_BYTES)
		return -EUCLEAN;
	f->chain = buf + flen - AUDIT_CHAIN_BYTES;
	return (long)flen;
}

size_t audit_frame_build(uint8_t kind, uint64_t record, const uint8_t *pt, size_t pt_len,
			 const uint8_t vault_id[16], uint64_t segment,
			 const unsigned char seg_key[32], const uint8_t nonce[AUDIT_NONCE_BYTES],
			 const unsigned char chain_key[32], const uint8_t prev[32], uint8_t *out,
			 uint8_t chain_out[32])
{
	size_t flen = AUDIT_FRAME_HEAD_BYTES + pt_len + AUDIT_TAG_BYTES + AUDIT_CHAIN_BYTES;
	uint8_t ad[AUDIT_AD_BYTES];
	unsigned long long clen = 0;

	audit_put32(out, (uint32_t)flen);
	out[4] = kind;
	out[5] = out[6] = out[7] = 0;
	audit_put64(out + 8, record);
	memcpy(out + 16, nonce, AUDIT_NONCE_BYTES);
	audit_frame_ad(vault_id, segment, out, ad);
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + AUDIT_FRAME_HEAD_BYTES, &clen, pt, pt_len,
						   ad, sizeof ad, NULL, out + 16, seg_key);
	audit_chain_next(chain_key, prev, out, flen - AUDIT_CHAIN_BYTES, chain_out);
	memcpy(out + flen - AUDIT_CHAIN_BYTES, chain_out, AUDIT_CHAIN_BYTES);
	return flen;
}

/* ---- event plaintext ----------------------------------------------------- */

#define PT_FIXED_BYTES 42

static size_t put_str(uint8_t *p, const char *s, size_t max, uint16_t *flags)
{
	size_t n = s ? strlen(s) : 0;
	if (n > max) {
		n = max;
		*flags |= AUDIT_F_TRUNCATED;
	}
	audit_put16(p, (uint16_t)n);
	if (n)
		memcpy(p + 2, s, n);
	return 2 + n;
}

size_t audit_event_encode(const struct audit_event *ev, uint8_t *pt)
{
	uint16_t flags = 0;
	unsigned nr = ev->ranges ? ev->nranges : 0;
	size_t p;

	pt[0] = AUDIT_PT_VERSION;
	pt[1] = (uint8_t)ev->type;
	audit_put64(pt + 4, ev->time_us);
	audit_put32(pt + 12, ev->uid);
	audit_put32(pt + 16, ev->gid);
	audit_put32(pt + 20, ev->pid);
	audit_put32(pt + 24, (uint32_t)ev->outcome);
	audit_put32(pt + 28, ev->mode);
	audit_put64(pt + 32, ev->bytes);
	p = PT_FIXED_BYTES;
	if (nr > AUDIT_RANGES_MAX) {
		/* Keep the first ranges; the last slot spans all the rest. */
		uint64_t lo = ev->ranges[AUDIT_RANGES_MAX - 1].off, hi = 0;
		for (unsigned i = 0; i < AUDIT_RANGES_MAX - 1; i++) {
			audit_put64(pt + p, ev->ranges[i].off);
			audit_put64(pt + p + 8, ev->ranges[i].len);
			p += 16;
		}
		for (unsigned i = AUDIT_RANGES_MAX - 1; i < nr; i++) {
			uint64_t end = ev->ranges[i].off + ev->ranges[i].len;
			if (ev->ranges[i].off < lo)
				lo = ev->ranges[i].off;
			if (end > hi)
				hi = end;
		}
		audit_put64(pt + p, lo);
		audit_put64(pt + p + 8, hi > lo ? hi - lo : 0);
		p += 16;
		nr = AUDIT_RANGES_MAX;
		flags |= AUDIT_F_RANGES_MERGED;
	} else {
		for (unsigned i = 0; i < nr; i++) {
			audit_put64(pt + p, ev->ranges[i].off);
			audit_put64(pt + p + 8, ev->ranges[i].len);
			p += 16;
		}
	}
	audit_put16(pt + 40, (uint16_t)nr);
	p += put_str(pt + p, ev->user, AUDIT_NAME_MAX, &flags);
	p += put_str(pt + p, ev->process, AUDIT_NAME_MAX, &flags);
	p += put_str(pt + p, ev->path, AUDIT_PATH_MAX, &flags);
	p += put_str(pt + p, ev->path2, AUDIT_PATH_MAX, &flags);
	p += put_str(pt + p, ev->level, AUDIT_LEVEL_MAX, &flags);
	p += put_str(pt + p, ev->detail, AUDIT_DETAIL_MAX, &flags);
	audit_put16(pt + 2, flags);
	while (p % AUDIT_PT_ALIGN)
		pt[p++] = 0;
	return p;
}

static int get_str(const uint8_t *pt, size_t len, size_t *p, char *out, size_t max)
{
	if (len - *p < 2)
		return -EUCLEAN;
	size_t n = audit_get16(pt + *p);
	*p += 2;
	if (n > max || len - *p < n || memchr(pt + *p, 0, n))
		return -EUCLEAN;
	memcpy(out, pt + *p, n);
	out[n] = '\0';
	*p += n;
	return 0;
}

int audit_entry_decode(const uint8_t *pt, size_t len, struct audit_entry *e)
{
	size_t p;
	int rc;

	if (len < PT_FIXED_BYTES || len % AUDIT_PT_ALIGN || pt[0] != AUDIT_PT_VERSION)
		return -EUCLEAN;
	if (pt[1] == 0 || pt[1] >= AUDIT_EV__COUNT)
		return -EUCLEAN;
	e->type = (enum audit_event_type)pt[1];
	e->flags = audit_get16(pt + 2);
	e->time_us = audit_get64(pt + 4);
	e->uid = audit_get32(pt + 12);
	e->gid = audit_get32(pt + 16);
	e->pid = audit_get32(pt + 20);
	e->outcome = (int32_t)audit_get32(pt + 24);
	e->mode = audit_get32(pt + 28);
	e->bytes = audit_get64(pt + 32);
	e->nranges = audit_get16(pt + 40);
	p = PT_FIXED_BYTES;
	if (e->nranges > AUDIT_RANGES_MAX || (len - p) / 16 < e->nranges)
		return -EUCLEAN;
	for (unsigned i = 0; i < e->nranges; i++) {
		e->ranges[i].off = audit_get64(pt + p);
		e->ranges[i].len = audit_get64(pt + p + 8);
		p += 16;
	}
	if ((rc = get_str(pt, len, &p, e->user, AUDIT_NAME_MAX)) ||
	    (rc = get_str(pt, len, &p, e->process, AUDIT_NAME_MAX)) ||
	    (rc = get_str(pt, len, &p, e->path, AUDIT_PATH_MAX)) ||
	    (rc = get_str(pt, len, &p, e->path2, AUDIT_PATH_MAX)) ||
	    (rc = get_str(pt, len, &p, e->level, AUDIT_LEVEL_MAX)) ||
	    (rc = get_str(pt, len, &p, e->detail, AUDIT_DETAIL_MAX)))
		return rc;
	/* Exactly the padding encode writes: fewer than one block of zeros. */
	if (len - p >= AUDIT_PT_ALIGN)
		return -EUCLEAN;
	for (; p < len; p++)
		if (pt[p])
			return -EUCLEAN;
	return 0;
}

/* ---- segment names and listing ------------------------------------------- */

void audit_seg_name(uint64_t segment, uint64_t time_us, char out[AUDIT_SEG_NAME_BYTES])
{
	time_t t = (time_t)(time_us / 1000000u);
	struct tm tm;
	gmtime_r(&t, &tm);
	unsigned ymd = ((unsigned)(tm.tm_year + 1900) % 10000u) * 10000u +
		       ((unsigned)(tm.tm_mon + 1) % 100u) * 100u + (unsigned)tm.tm_mday % 100u;
	snprintf(out, AUDIT_SEG_NAME_BYTES, AUDIT_SEG_PREFIX "%010llu-%08u",
		 (unsigned long long)(segment % 10000000000ull), ymd % 100000000u);
}

uint64_t audit_seg_name_parse(const char *name)
{
	uint64_t n = 0;
	if (strlen(name) != AUDIT_SEG_NAME_BYTES - 1 || strncmp(name, AUDIT_SEG_PREFIX, 4) != 0 ||
	    name[14] != '-')
		return 0;
	for (int i = 4; i < 14; i++) {
		if (name[i] < '0' || name[i] > '9')
			return 0;
		n = n * 10 + (uint64_t)(name[i] - '0');
	}
	for (int i = 15; i < 23; i++)
		if (name[i] < '0' || name[i] > '9')
			return 0;
	return n;
}

static int seg_ent_cmp(const void *a, const void *b)
{
	const struct audit_seg_ent *x = a, *y = b;
	if (x->segment != y->segment)
		return x->segment < y->segment ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Read the directory open as fd (taken over: closed on return) into a sorted
 * array of esize-byte entries: take() fills the entry for a name it wants and
 * returns 1, 0 to skip the name. Returns the count (*out malloc'd, may be
 * NULL when 0) or -errno. */
static ssize_t audit_dir_scan(int fd, size_t esize,
			      int (*take)(int dfd, const char *name, void *ent),
			      int (*cmp)(const void *, const void *), void **out)
{
	char *v = NULL;
	size_t n = 0, cap = 0;
	ssize_t rc;
	DIR *d = fdopendir(fd);
	struct dirent *de;

	*out = NULL;
	if (!d) {
		rc = -errno;
		close(fd);
		return rc;
	}
	rewinddir(d);
	while ((errno = 0, de = readdir(d))) {
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			char *nv = realloc(v, nc * esize);
			if (!nv) {
				rc = -ENOMEM;
				goto fail;
			}
			v = nv;
			cap = nc;
		}
		if (take(dirfd(d), de->d_name, v + n * esize))
			n++;
	}
	if (errno) {
		rc = -errno;
		goto fail;
	}
	closedir(d);
	if (n)
		qsort(v, n, esize, cmp);
	*out = v;
	return (ssize_t)n;
fail:
	closedir(d);
	free(v);
	return rc;
}

static int seg_ent_take(int dfd, const char *name, void *ent)
{
	struct audit_seg_ent *e = ent;

	(void)dfd;
	e->segment = audit_seg_name_parse(name);
	if (!e->segment)
		return 0;
	memcpy(e->name, name, AUDIT_SEG_NAME_BYTES);
	return 1;
}

ssize_t audit_seg_list(int dirfd, struct audit_seg_ent **out)
{
	int fd = dup(dirfd);
	void *v;
	ssize_t n;

	*out = NULL;
	if (fd < 0)
		return -errno;
	n = audit_dir_scan(fd, sizeof **out, seg_ent_take, seg_ent_cmp, &v);
	*out = v;
	return n;
}

/* ---- walking a segment --------------------------------------------------- */

void audit_walk_init(struct audit_walk *w, const uint8_t *buf, size_t len,
		     const uint8_t header_mac[AUDIT_CHAIN_BYTES])
{
	w->buf = buf;
	w->len = len;
	w->off = AUDIT_HEADER_BYTES;
	w->count = 0;
	memcpy(w->chain, header_mac, AUDIT_CHAIN_BYTES);
	w->closed = false;
	w->last_seal = 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

enum audit_walk_step audit_walk_next(struct audit_walk *w, const unsigned char chain_key[32],
				     struct audit_frame *f)
{
	uint8_t next[AUDIT_CHAIN_BYTES];
	long n;

	if (w->off >= w->len)
		return AUDIT_WALK_END;
	if (w->closed)
		return AUDIT_WALK_AFTER_CLOSE;
	n = audit_frame_parse(w->buf + w->off, w->len - w->off, f);
	if (n == 0)
		return AUDIT_WALK_PARTIAL;
	if (n < 0)
		return all_zero(w->buf + w->off, w->len - w->off) ? AUDIT_WALK_PARTIAL
								  : AUDIT_WALK_BAD_FRAME;
	if (f->record != w->count + 1)
		return AUDIT_WALK_BAD_NUMBER;
	audit_chain_next(chain_key, w->chain, w->buf + w->off, f->len - AUDIT_CHAIN_BYTES, next);
	if (sodium_memcmp(next, f->chain, AUDIT_CHAIN_BYTES) != 0)
		return AUDIT_WALK_BAD_CHAIN;
	memcpy(w->chain, next, AUDIT_CHAIN_BYTES);
	w->count++;
	w->off += f->len;
	if (f->kind != AUDIT_KIND_EVENT)
		w->last_seal = w->count;
	if (f->kind == AUDIT_KIND_CLOSE)
		w->closed = true;
	return AUDIT_WALK_RECORD;
}

/* ---- one-line form for log forwarding ------------------------------------ */

struct line {
	char *buf;
	size_t cap, len;
};

static void line_put(struct line *l, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++, l->len++)
		if (l->len + 1 < l->cap)
			l->buf[l->len] = s[i];
}

static void line_kv(struct line *l, const char *key, const char *v)
{
	char esc[5];
	bool quote = !v[0];

	for (const char *p = v; *p && !quote; p++)
		quote = (unsigned char)*p <= ' ' || *p == '"' || *p == '\\' || *p == 0x7f;
	if (l->len)
		line_put(l, " ", 1);
	line_put(l, key, strlen(key));
	line_put(l, "=", 1);
	if (!quote) {
		line_put(l, v, strlen(v));
		return;
	}
	line_put(l, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			line_put(l, esc, 2);
		} else if (*p < ' ' || *p == 0x7f) {
			snprintf(esc, sizeof esc, "\\x%02x", *p);
			line_put(l, esc, 4);
		} else {
			line_put(l, (const char *)p, 1);
		}
	}
	line_put(l, "\"", 1);
}

size_t audit_event_format(const struct audit_event *ev, char *buf, size_t cap)
{
	struct line l = {buf, cap, 0};
	char num[32];

	line_kv(&l, "event", audit_event_name(ev->type));
	snprintf(num, sizeof num, "%u", ev->uid);
	line_kv(&l, "uid", num);
	if (ev->user)
		line_kv(&l, "user", ev->user);
	snprintf(num, sizeof num, "%u", ev->pid);
	line_kv(&l, "pid", num);
	if (ev->process)
		line_kv(&l, "process", ev->process);
	if (ev->level)
		line_kv(&l, "level", ev->level);
	snprintf(num, sizeof num, "%d", ev->outcome);
	line_kv(&l, "outcome", num);
	if (ev->bytes) {
		snprintf(num, sizeof num, "%llu", (unsigned long long)ev->bytes);
		line_kv(&l, "bytes", num);
	}
	if (ev->path)
		line_kv(&l, "path", ev->path);
	if (ev->path2)
		line_kv(&l, "path2", ev->path2);
	if (ev->detail)
		line_kv(&l, "detail", ev->detail);
	if (cap)
		buf[l.len < cap ? l.len : cap - 1] = '\0';
	return l.len;
}

/* ---- chains of read-only mounts ------------------------------------------ */

void audit_chain_key_derive(const unsigned char chain_key[AUDIT_CHAIN_KEY_BYTES],
			    const uint8_t id[AUDIT_CHAIN_ID_BYTES],
			    unsigned char out[AUDIT_CHAIN_KEY_BYTES])
{
	static const char ctx[] = "strongroom audit ro chain";
	crypto_generichash_state st;

	crypto_generichash_init(&st, chain_key, AUDIT_CHAIN_KEY_BYTES, AUDIT_CHAIN_KEY_BYTES);
	crypto_generichash_update(&st, (const unsigned char *)ctx, sizeof ctx - 1);
	crypto_generichash_update(&st, id, AUDIT_CHAIN_ID_BYTES);
	crypto_generichash_final(&st, out, AUDIT_CHAIN_KEY_BYTES);
	sodium_memzero(&st, sizeof st);
}

void audit_chain_name(const uint8_t id[AUDIT_CHAIN_ID_BYTES], char out[AUDIT_CHAIN_NAME_BYTES])
{
	memcpy(out, AUDIT_CHAIN_PREFIX, 3);
	sodium_bin2hex(out + 3, AUDIT_CHAIN_NAME_BYTES - 3, id, AUDIT_CHAIN_ID_BYTES);
}

int audit_chain_name_parse(const char *name, uint8_t id[AUDIT_CHAIN_ID_BYTES])
{
	size_t n = 0;

	if (strlen(name) != AUDIT_CHAIN_NAME_BYTES - 1 || strncmp(name, AUDIT_CHAIN_PREFIX, 3) != 0)
		return -EINVAL;
	for (const char *p = name + 3; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return -EINVAL;
	if (sodium_hex2bin(id, AUDIT_CHAIN_ID_BYTES, name + 3, AUDIT_CHAIN_NAME_BYTES - 4, NULL, &n,
			   NULL) != 0 ||
	    n != AUDIT_CHAIN_ID_BYTES)
		return -EINVAL;
	return 0;
}

static int chain_ent_cmp(const void *a, const void *b)
{
	return strcmp(((const struct audit_chain_ent *)a)->name,
		      ((const struct audit_chain_ent *)b)->name);
}

static int chain_ent_take(int dfd, const char *name, void *ent)
{
	struct audit_chain_ent *e = ent;
	struct audit_seg_ent *segs = NULL;
	ssize_t ns;
	int cfd;

	if (audit_chain_name_parse(name, e->id) != 0)
		return 0;
	memcpy(e->name, name, AUDIT_CHAIN_NAME_BYTES);
	e->segments = 0;
	cfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (cfd >= 0) {
		ns = audit_seg_list(cfd, &segs);
		if (ns > 0 && segs)
			e->segments = segs[ns - 1].segment;
		free(segs);
		close(cfd);
	}
	return 1;
}

ssize_t audit_chain_list(const char *audit_dir, struct audit_chain_ent **out)
{
	int dfd = open(audit_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	void *v;
	ssize_t n;

	*out = NULL;
	if (dfd < 0)
		return -errno;
	n = audit_dir_scan(dfd, sizeof **out, chain_ent_take, chain_ent_cmp, &v);
	*out = v;
	return n;
}
