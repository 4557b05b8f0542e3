/* audit.h - the tamper-evident audit trail: writer, reader and verifier.
 *
 * A leaf layer: it knows nothing of keyrings, stores or vaults. The vault
 * passes in its ID, the audit public key (X25519, from the vault config) and
 * the audit chain key (a vault subkey) as bytes. The byte format, the events
 * and the verify algorithm are specified in docs/audit.md.
 *
 * The trail is a directory of segment files (STORE/audit/seg-*). Each
 * segment has its own random key, sealed to the audit public key in the
 * segment header, so a writer can append but cannot read back what it wrote
 * once a segment is closed. Records are encrypted with XChaCha20-Poly1305 and
 * chained with a keyed BLAKE2b value; each segment header carries the last
 * chain value of the segment before it.
 *
 * Writer: audit_log_write() returns only after the record was handed to the
 * kernel with write(2); a background thread fdatasync()s at most one second
 * later. If a record cannot be written the call returns -errno and the
 * caller fails the audited operation (fail closed). All audit_log_* calls
 * are thread-safe.
 *
 * Errors: 0 or -errno. -EBADMSG a chain value, MAC or tag does not verify,
 * -EUCLEAN malformed bytes or a broken link between segments, -EOPNOTSUPP
 * unknown version or required flag, -ENOKEY no audit secret key given,
 * -EKEYREJECTED the secret key does not match the vault's audit public key.
 */
#ifndef STRONGROOM_AUDIT_H
#define STRONGROOM_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define AUDIT_VAULT_ID_BYTES  16
#define AUDIT_PK_BYTES	      32
#define AUDIT_SK_BYTES	      32
#define AUDIT_CHAIN_KEY_BYTES 32
#define AUDIT_CHAIN_BYTES     32

/* Chains of read-only mounts (docs/audit.md, "Chains of read-only mounts").
 * Each read-only mount writes its own trail in STORE/audit/ro-<ID in hex>/,
 * chained with its own key, so no two drivers ever write the same file and
 * a segment moved between chains does not verify. */
#define AUDIT_CHAIN_ID_BYTES   16
#define AUDIT_CHAIN_PREFIX     "ro-"
#define AUDIT_CHAIN_NAME_BYTES 36 /* "ro-" + 32 hex digits + NUL */

/* The chain key of the read-only chain id:
 * BLAKE2b-256(key = chain_key, "strongroom audit ro chain" || id). */
void audit_chain_key_derive(const unsigned char chain_key[AUDIT_CHAIN_KEY_BYTES],
			    const uint8_t id[AUDIT_CHAIN_ID_BYTES],
			    unsigned char out[AUDIT_CHAIN_KEY_BYTES]);
/* "ro-<hex>" for id; and back. @return 0, or -EINVAL if name is not one. */
void audit_chain_name(const uint8_t id[AUDIT_CHAIN_ID_BYTES], char out[AUDIT_CHAIN_NAME_BYTES]);
int audit_chain_name_parse(const char *name, uint8_t id[AUDIT_CHAIN_ID_BYTES]);

/* Field limits. Longer strings are cut and the record is flagged
 * AUDIT_F_TRUNCATED; more ranges are merged (AUDIT_F_RANGES_MERGED). */
#define AUDIT_NAME_MAX	 255  /* user and process names */
#define AUDIT_PATH_MAX	 4095 /* each of the two paths */
#define AUDIT_LEVEL_MAX	 63   /* level name */
#define AUDIT_DETAIL_MAX 1023
#define AUDIT_RANGES_MAX 64

#define AUDIT_SEGMENT_MAX_DEFAULT  (16u << 20)
#define AUDIT_SEAL_RECORDS_DEFAULT 1000u
#define AUDIT_SEAL_SECONDS_DEFAULT 60u
#define AUDIT_SYNC_MS_DEFAULT	   1000u

/* On-disk sizes (docs/audit.md, "Segment header" and "Records"). */
#define AUDIT_HEADER_BYTES     200
#define AUDIT_FRAME_HEAD_BYTES 40 /* length, kind, record number, nonce */
#define AUDIT_FRAME_MIN_BYTES  (AUDIT_FRAME_HEAD_BYTES + 16 + AUDIT_CHAIN_BYTES)
#define AUDIT_FRAME_MAX_BYTES  16384

enum audit_event_type {
	AUDIT_EV_OPEN = 1,     /* mode = open flags; outcome = result */
	AUDIT_EV_READ,	       /* a handle's first read */
	AUDIT_EV_READ_SUMMARY, /* at close: bytes and ranges read */
	AUDIT_EV_CREATE,
	AUDIT_EV_WRITE,	   /* at close: bytes and ranges written */
	AUDIT_EV_TRUNCATE, /* bytes = new size */
	AUDIT_EV_RENAME,   /* path -> path2 */
	AUDIT_EV_UNLINK,
	AUDIT_EV_LINK, /* path = existing, path2 = new name */
	AUDIT_EV_MKDIR,
	AUDIT_EV_RMDIR,
	AUDIT_EV_SETATTR, /* detail says what changed */
	AUDIT_EV_LEVEL,	  /* level = new level, detail = old level */
	AUDIT_EV_ACL,
	AUDIT_EV_DENIAL,    /* outcome = the errno returned */
	AUDIT_EV_INTEGRITY, /* detail says what failed */
	AUDIT_EV_RECOVERY,  /* crash recovery (of the trail or of files) */
	AUDIT_EV_MOUNT,
	AUDIT_EV_UNMOUNT,
	AUDIT_EV_KEY_USE, /* detail names the key */
	AUDIT_EV_ALERT,
	AUDIT_EV_SEAL, /* written by the library; bytes = records before it */
	AUDIT_EV_ROTATE, /* a level key rotation: start, resume, end, stop */
	AUDIT_EV_REPAIR, /* fsck --repair: start, one per problem, end */
	AUDIT_EV_CHAINS, /* the writer lists the read-only mounts' chains it
			  * found: detail "ro-ID:SEGMENTS ...", bytes = count */
	AUDIT_EV__COUNT
};

/* Record flags (stored). */
enum audit_record_flag {
	AUDIT_F_TRUNCATED = 1 << 0,	/* a string was cut to its limit */
	AUDIT_F_RANGES_MERGED = 1 << 1, /* the tail of the range list was merged */
};

struct audit_range {
	uint64_t off;
	uint64_t len;
};

/* One event as the caller describes it. Strings may be NULL (empty);
 * everything is borrowed for the duration of audit_log_write(). */
struct audit_event {
	enum audit_event_type type;
	uint64_t time_us; /* UTC microseconds since the epoch; 0 = now */
	uint32_t uid, gid, pid;
	const char *user;    /* NULL: resolved from uid if opts.resolve_names */
	const char *process; /* NULL: resolved from pid if opts.resolve_names */
	const char *path;    /* plaintext, within the vault */
	const char *path2;   /* rename / link target */
	const char *level;   /* level name */
	const char *detail;  /* free text */
	int32_t outcome;     /* 0 or a positive errno */
	uint32_t mode;	     /* open flags (open/create), new mode (setattr) */
	uint64_t bytes;
	const struct audit_range *ranges;
	unsigned nranges;
};

struct audit_opts {
	uint64_t segment_max_bytes;  /* rotate past this size; 0 = default */
	unsigned seal_every_records; /* 0 = default */
	unsigned seal_every_sec;     /* 0 = default */
	unsigned sync_ms;	     /* group-sync interval; 0 = default */
	bool resolve_names;	     /* fill user and process when NULL */
	bool forward_syslog;	     /* also send each record, as one line from
				      * audit_event_format(), to syslog(3)
				      * (LOG_AUTHPRIV | LOG_INFO): plaintext
				      * paths leave the vault, so off by default */
};

struct audit_log;

/* Open the trail in audit_dir (created 0700 if missing) for appending: start
 * a new segment linked to the newest existing one. If that one has no
 * closing seal (the last writer crashed) the new segment says so and its
 * first record is a `recovery` event; if it cannot be parsed, an `alert`.
 * Keys are copied into guarded memory. o may be NULL. Starts a sync
 * thread: open the log after any fork (daemonising), not before.
 * @return 0 and *out owned by the caller (audit_log_close). */
int audit_log_open(const char *audit_dir, const uint8_t vault_id[AUDIT_VAULT_ID_BYTES],
		   const uint8_t audit_pk[AUDIT_PK_BYTES],
		   const unsigned char chain_key[AUDIT_CHAIN_KEY_BYTES], const struct audit_opts *o,
		   struct audit_log **out) __attribute__((warn_unused_result));

/* Open a new chain for a read-only mount: a random ID, the directory
 * audit_dir/ro-<ID> (audit_dir must exist), its chain key derived from
 * chain_key and the ID (audit_chain_key_derive), then as audit_log_open.
 * @return 0, *out owned and name filled with "ro-<ID>"; -errno (-EROFS on
 * a read-only store), and then no directory is left behind. */
int audit_log_open_ro(const char *audit_dir, const uint8_t vault_id[AUDIT_VAULT_ID_BYTES],
		      const uint8_t audit_pk[AUDIT_PK_BYTES],
		      const unsigned char chain_key[AUDIT_CHAIN_KEY_BYTES],
		      const struct audit_opts *o, char name[AUDIT_CHAIN_NAME_BYTES],
		      struct audit_log **out) __attribute__((warn_unused_result));

/* Append one record. Returns after write(2) of the whole record.
 * @return 0, or -errno if the record is not in the file (then nothing of it
 * is: a partial write is cut back), or -EIO once a sync has failed. */
int audit_log_write(struct audit_log *log, const struct audit_event *ev)
    __attribute__((warn_unused_result));

/* The name of process pid ("" if it cannot be read), cut to cap - 1 bytes:
 * its /proc/PID/comm as it is now. The files of recent pids are kept open
 * and read again (one pread), so a name is never that of an earlier process
 * with the same pid. Thread-safe. */
void audit_process_name_get(uint32_t pid, char *out, size_t cap);

/* Write the closing seal, fdatasync, stop the sync thread, wipe keys, free.
 * Accepts NULL. @return 0 or the first error seen (the log is freed anyway). */
int audit_log_close(struct audit_log *log);

/* Stop and free without the closing seal: the segment ends as a crash
 * leaves one, so the next audit_log_open records a `recovery`. For a writer
 * whose unmount record could not be written: only that record may precede
 * a closing seal (docs/audit.md section 12). Accepts NULL. */
void audit_log_abandon(struct audit_log *log);

/* True if this log found an unsealed (crashed) or unreadable predecessor. */
bool audit_log_recovered(const struct audit_log *log);

/* A decoded record, as the reader yields it. */
struct audit_entry {
	uint64_t segment; /* segment number */
	uint64_t record;  /* record number within the segment, from 1 */
	uint8_t kind;	  /* 1 event, 2 seal, 3 closing seal */
	enum audit_event_type type;
	uint16_t flags;
	uint64_t time_us;
	uint32_t uid, gid, pid;
	int32_t outcome;
	uint32_t mode;
	uint64_t bytes;
	unsigned nranges;
	struct audit_range ranges[AUDIT_RANGES_MAX];
	char user[AUDIT_NAME_MAX + 1];
	char process[AUDIT_NAME_MAX + 1];
	char path[AUDIT_PATH_MAX + 1];
	char path2[AUDIT_PATH_MAX + 1];
	char level[AUDIT_LEVEL_MAX + 1];
	char detail[AUDIT_DETAIL_MAX + 1];
};

enum audit_status {
	AUDIT_INTACT = 0,   /* every link verifies, the newest segment is sealed */
	AUDIT_UNSEALED = 1, /* intact, but no seal after the last record: the
			     * writer is still running or crashed */
	AUDIT_BROKEN = 2,   /* a link does not verify: see the problem */
};

/* Where and how the chain broke (or where an unsealed tail ends). */
struct audit_problem {
	enum audit_status status;
	char file[64];	  /* segment file name, "" if none */
	uint64_t segment; /* segment number */
	uint64_t record;  /* record number, 0 = the segment header or file */
	char what[256];	  /* one line, no file name */
};

enum audit_reader_flag {
	AUDIT_READ_FOLLOW = 1 << 0, /* at the end, wait for more instead of judging the tail */
};

struct audit_reader;

/* Open the trail for reading. audit_sk is required (-ENOKEY if NULL) and
 * must match audit_pk (-EKEYREJECTED). @return 0 and *out owned
 * (audit_reader_close); -ENOENT if audit_dir is missing. */
int audit_reader_open(const char *audit_dir, const uint8_t vault_id[AUDIT_VAULT_ID_BYTES],
		      const uint8_t audit_pk[AUDIT_PK_BYTES],
		      const unsigned char audit_sk[AUDIT_SK_BYTES],
		      const unsigned char chain_key[AUDIT_CHAIN_KEY_BYTES], unsigned flags,
		      struct audit_reader **out) __attribute__((warn_unused_result));

/* The next record, in chain order, after verifying its link.
 * @return 1 and *e filled; 0 at the end (with AUDIT_READ_FOLLOW: nothing
 * new yet, call again later); -EBADMSG / -EUCLEAN / -EOPNOTSUPP at the first
 * broken link (audit_reader_problem() says where). Once broken, it stays
 * broken. */
int audit_reader_next(struct audit_reader *r, struct audit_entry *e)
    __attribute__((warn_unused_result));

/* The reader's verdict so far; borrowed until audit_reader_close. */
const struct audit_problem *audit_reader_problem(const struct audit_reader *r);

/* Accepts NULL; wipes segment keys. */
void audit_reader_close(struct audit_reader *r);

struct audit_verify_result {
	struct audit_problem problem; /* status, and where for non-intact */
	uint64_t segments;
	uint64_t records;
	uint64_t recoveries; /* segments that recorded a crash of the one before */
};

/* Read the whole trail and judge it. @return 0 with *res filled (also when
 * the trail is broken: see res->problem.status), or -errno if it could not
 * be read at all (missing dir, wrong key). */
int audit_verify(const char *audit_dir, const uint8_t vault_id[AUDIT_VAULT_ID_BYTES],
		 const uint8_t audit_pk[AUDIT_PK_BYTES],
		 const unsigned char audit_sk[AUDIT_SK_BYTES],
		 const unsigned char chain_key[AUDIT_CHAIN_KEY_BYTES],
		 struct audit_verify_result *res) __attribute__((warn_unused_result));

/* One line "event=open uid=1000 user=alice ... path=/a/b" for log
 * forwarding: key=value pairs, values with spaces, quotes, backslashes or
 * control bytes quoted and escaped (\", \\, \xNN). Always NUL-terminated.
 * @return the length the whole line needs (as snprintf). */
size_t audit_event_format(const struct audit_event *ev, char *buf, size_t cap);

/* Event names ("open", "read-summary", ...) and back. */
const char *audit_event_name(enum audit_event_type t); /* "?" if unknown */
int audit_event_parse(const char *name);	       /* type or -EINVAL */

struct audit_chain_ent {
	uint8_t id[AUDIT_CHAIN_ID_BYTES];
	char name[AUDIT_CHAIN_NAME_BYTES];
	uint64_t segments; /* highest segment number among its files, 0 if none */
};
/* The read-only chains (ro-* directories) in audit_dir, sorted by name.
 * @return the count and *out owned (free()), or -errno. */
ssize_t audit_chain_list(const char *audit_dir, struct audit_chain_ent **out)
    __attribute__((warn_unused_result));

/* Fault injection for tests: the nth call (from 1) of the kind fails with
 * err (-errno). A failing write first writes half its bytes, as a full disk
 * can. n = 0 clears. Process-wide. */
enum audit_fault_op { AUDIT_FAULT_WRITE, AUDIT_FAULT_FSYNC };
void audit_fault_set(enum audit_fault_op op, unsigned long n, int err);

/* Parsers of trail bytes, exposed for the fuzz target and tests. */
struct audit_seg_header {
	uint16_t version;
	uint16_t flags;
	uint8_t vault_id[AUDIT_VAULT_ID_BYTES];
	uint64_t segment;
	uint64_t created_us;
	uint64_t prev_count;
	uint8_t prev_chain[AUDIT_CHAIN_BYTES];
	uint8_t sealed_key[80];
	uint8_t mac[AUDIT_CHAIN_BYTES];
};
/* Header flags. */
#define AUDIT_HF_RECOVERY 0x0001u /* the previous segment had no closing seal */
#define AUDIT_HF_RELINK	  0x0002u /* the previous segment could not be read */
#define AUDIT_HF_KNOWN	  (AUDIT_HF_RECOVERY | AUDIT_HF_RELINK)

/* Structure only (no MAC check). @return 0, -EUCLEAN, -EOPNOTSUPP. */
int audit_header_parse(const uint8_t *buf, size_t len, struct audit_seg_header *h);

struct audit_frame {
	uint32_t len; /* whole frame */
	uint8_t kind;
	uint64_t record;
	const uint8_t *nonce;	   /* 24 bytes, borrowed from the buffer */
	const uint8_t *ciphertext; /* len - 40 - 32 bytes */
	size_t ciphertext_len;
	const uint8_t *chain; /* 32 bytes */
};
/* One frame at the start of buf. @return the frame length, 0 if buf holds
 * only part of a frame (or nothing), -EUCLEAN if malformed. */
long audit_frame_parse(const uint8_t *buf, size_t len, struct audit_frame *f);

/* Decode a record's plaintext. @return 0 or -EUCLEAN. */
int audit_entry_decode(const uint8_t *pt, size_t len, struct audit_entry *e);

#endif
