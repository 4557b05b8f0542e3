/* audit_int.h - pieces shared by the audit writer, reader and codec.
 *
 * Not a public header: only fs/audit/ includes it. Byte layouts are in
 * docs/audit.md; the codec is pure (no I/O), the writer and reader own the
 * file handling.
 */
#ifndef STRONGROOM_AUDIT_INT_H
#define STRONGROOM_AUDIT_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "strongroom/audit.h"

#define AUDIT_MAGIC	       "SRAUDSEG"
#define AUDIT_VERSION	       1
#define AUDIT_SEGKEY_BYTES     32
#define AUDIT_SEALED_KEY_BYTES 80 /* crypto_box_SEALBYTES + 32 */
#define AUDIT_NONCE_BYTES      24
#define AUDIT_TAG_BYTES	       16
#define AUDIT_PT_ALIGN	       32 /* plaintexts are zero-padded to a multiple */
#define AUDIT_PT_VERSION       1

/* Frame kinds (in clear, bound in the AD and the chain). */
enum audit_kind {
	AUDIT_KIND_EVENT = 1,
	AUDIT_KIND_SEAL = 2,  /* periodic seal: the segment goes on */
	AUDIT_KIND_CLOSE = 3, /* closing seal: nothing may follow in this segment */
};

/* "seg-NNNNNNNNNN-YYYYMMDD" */
#define AUDIT_SEG_PREFIX     "seg-"
#define AUDIT_SEG_NAME_BYTES 24 /* 23 characters + NUL */

static inline void audit_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static inline void audit_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void audit_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t audit_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t audit_get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}
static inline uint64_t audit_get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* Header bytes (without the MAC) from h; h->mac is computed and stored. */
void audit_header_encode(struct audit_seg_header *h, const unsigned char chain_key[32],
			 uint8_t out[AUDIT_HEADER_BYTES]);
/* MAC of a header's first AUDIT_HEADER_BYTES - 32 bytes. */
void audit_header_mac(const uint8_t *hdr, const unsigned char chain_key[32], uint8_t mac[32]);

/* Chain step: next = BLAKE2b-256(key = chain_key, prev || frame bytes before the chain). */
void audit_chain_next(const unsigned char chain_key[32], const uint8_t prev[32],
		      const uint8_t *frame, size_t body_len, uint8_t next[32]);

/* AD of a frame: vault ID || segment number || frame bytes 0..15. */
#define AUDIT_AD_BYTES (AUDIT_VAULT_ID_BYTES + 8 + 16)
void audit_frame_ad(const uint8_t vault_id[16], uint64_t segment, const uint8_t *frame,
		    uint8_t ad[AUDIT_AD_BYTES]);

/* Encode ev (with flags) into pt (capacity AUDIT_FRAME_MAX_BYTES).
 * @return the padded plaintext length. Never fails: long fields are cut. */
size_t audit_event_encode(const struct audit_event *ev, uint8_t *pt);

/* Build a whole frame in out (capacity AUDIT_FRAME_MAX_BYTES): encrypt pt
 * under seg_key with nonce (the caller's: never twice under one seg_key),
 * chain from prev into chain_out. @return the frame length. */
size_t audit_frame_build(uint8_t kind, uint64_t record, const uint8_t *pt, size_t pt_len,
			 const uint8_t vault_id[16], uint64_t segment,
			 const unsigned char seg_key[32], const uint8_t nonce[AUDIT_NONCE_BYTES],
			 const unsigned char chain_key[32], const uint8_t prev[32], uint8_t *out,
			 uint8_t chain_out[32]);

/* Walking a segment's frames after its header, checking numbers and the
 * chain (not the AEAD tags: that needs the segment key). */
enum audit_walk_step {
	AUDIT_WALK_RECORD = 1,	/* *f is the next record; count and chain advanced */
	AUDIT_WALK_END,		/* clean end of the bytes */
	AUDIT_WALK_PARTIAL,	/* the rest is part of a frame or zeros (torn tail) */
	AUDIT_WALK_BAD_FRAME,	/* malformed frame at off */
	AUDIT_WALK_BAD_NUMBER,	/* f->record is not count + 1 */
	AUDIT_WALK_BAD_CHAIN,	/* chain value of record count + 1 does not verify */
	AUDIT_WALK_AFTER_CLOSE, /* bytes follow the closing seal */
};
struct audit_walk {
	const uint8_t *buf; /* whole segment file, borrowed */
	size_t len;
	size_t off;	/* next frame */
	uint64_t count; /* records verified so far */
	uint8_t chain[AUDIT_CHAIN_BYTES];
	bool closed;
	uint64_t last_seal; /* record number of the last seal, 0 = none */
};
/* Start after the header; the chain starts at the header MAC. */
void audit_walk_init(struct audit_walk *w, const uint8_t *buf, size_t len,
		     const uint8_t header_mac[AUDIT_CHAIN_BYTES]);
enum audit_walk_step audit_walk_next(struct audit_walk *w, const unsigned char chain_key[32],
				     struct audit_frame *f);

/* Segment file names. */
void audit_seg_name(uint64_t segment, uint64_t time_us, char out[AUDIT_SEG_NAME_BYTES]);
/* @return the segment number, or 0 if name is not a segment file name. */
uint64_t audit_seg_name_parse(const char *name);

/* Sorted list of segment files in a directory. */
struct audit_seg_ent {
	uint64_t segment;
	char name[AUDIT_SEG_NAME_BYTES];
};
/* @return the count and *out owned (free()), or -errno. */
ssize_t audit_seg_list(int dirfd, struct audit_seg_ent **out);

/* UTC microseconds now. */
uint64_t audit_now_us(void);

/* Fault hook shared by the writer: @return 0 or the injected -errno. */
int audit_fault_check(enum audit_fault_op op);

#endif
