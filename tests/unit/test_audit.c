/* test_audit.c - the audit trail: write, read back, and catch every tamper.
 *
 * Each test builds a trail in its own temporary directory with fresh keys,
 * then edits the segment files the way an attacker with write access to the
 * store could, and checks that audit_verify names the first broken link.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "strongroom/audit.h"
#include "tap.h"

struct fixture {
	char dir[64];
	uint8_t vault_id[AUDIT_VAULT_ID_BYTES];
	uint8_t pk[AUDIT_PK_BYTES];
	unsigned char sk[AUDIT_SK_BYTES];
	unsigned char chain_key[AUDIT_CHAIN_KEY_BYTES];
};

static void fx_init(struct fixture *fx)
{
	snprintf(fx->dir, sizeof fx->dir, "/tmp/sr-audit-XXXXXX");
	if (!mkdtemp(fx->dir))
		abort();
	randombytes_buf(fx->vault_id, sizeof fx->vault_id);
	crypto_box_keypair(fx->pk, fx->sk);
	randombytes_buf(fx->chain_key, sizeof fx->chain_key);
}

static void fx_done(struct fixture *fx)
{
	DIR *d = opendir(fx->dir);
	struct dirent *e;
	char p[512];
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof p, "%s/%s", fx->dir, e->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(fx->dir);
}

static int fx_open(struct fixture *fx, const struct audit_opts *o, struct audit_log **l)
{
	return audit_log_open(fx->dir, fx->vault_id, fx->pk, fx->chain_key, o, l);
}

static int fx_verify(struct fixture *fx, struct audit_verify_result *res)
{
	return audit_verify(fx->dir, fx->vault_id, fx->pk, fx->sk, fx->chain_key, res);
}

static struct audit_event sample(unsigned i)
{
	static char path[64];
	static const struct audit_range rg[2] = {{0, 4096}, {8192, 100}};
	snprintf(path, sizeof path, "/customers/file-%u.pdf", i);
	struct audit_event ev = {
	    .type = i % 3 == 0	 ? AUDIT_EV_OPEN
		    : i % 3 == 1 ? AUDIT_EV_READ_SUMMARY
				 : AUDIT_EV_RENAME,
	    .time_us = 1700000000000000ull + i,
	    .uid = 1000 + i,
	    .gid = 100,
	    .pid = 4000 + i,
	    .user = "alice",
	    .process = "soffice.bin",
	    .path = path,
	    .path2 = i % 3 == 2 ? "/customers/renamed.pdf" : NULL,
	    .level = "confidential",
	    .outcome = i % 5 == 0 ? 13 : 0,
	    .mode = 2,
	    .bytes = 4196,
	    .ranges = i % 3 == 1 ? rg : NULL,
	    .nranges = i % 3 == 1 ? 2 : 0,
	};
	return ev;
}

/* Write n sample records (numbered from first) and close. */
static int write_n(struct fixture *fx, const struct audit_opts *o, unsigned first, unsigned n)
{
	struct audit_log *l;
	int rc = fx_open(fx, o, &l);
	if (rc)
		return rc;
	for (unsigned i = first; i < first + n; i++) {
		struct audit_event ev = sample(i);
		if ((rc = audit_log_write(l, &ev))) {
			audit_log_close(l);
			return rc;
		}
	}
	return audit_log_close(l);
}

/* Sorted segment file names; returns the count. */
static int seg_names(struct fixture *fx, char names[][64], int cap)
{
	DIR *d = opendir(fx->dir);
	struct dirent *e;
	int n = 0;
	while (d && (e = readdir(d)))
		if (strncmp(e->d_name, "seg-", 4) == 0 && strlen(e->d_name) < 64 && n < cap)
			memcpy(names[n++], e->d_name, strlen(e->d_name) + 1);
	if (d)
		closedir(d);
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (strcmp(names[j], names[i]) < 0) {
				char t[64];
				memcpy(t, names[i], 64);
				memcpy(names[i], names[j], 64);
				memcpy(names[j], t, 64);
			}
	return n;
}

struct seg_file {
	char path[512];
	uint8_t *buf;
	size_t len;
	size_t off[4096]; /* frame offsets */
	size_t flen[4096];
	int nframes;
};

static int seg_load(struct fixture *fx, const char *name, struct seg_file *s)
{
	struct stat st;
	FILE *f;
	snprintf(s->path, sizeof s->path, "%s/%s", fx->dir, name);
	if (stat(s->path, &st) < 0 || !(f = fopen(s->path, "rb")))
		return -1;
	s->len = (size_t)st.st_size;
	s->buf = malloc(s->len + 1);
	if (fread(s->buf, 1, s->len, f) != s->len) {
		fclose(f);
		return -1;
	}
	fclose(f);
	s->nframes = 0;
	for (size_t o = AUDIT_HEADER_BYTES; o < s->len && s->nframes < 4096;) {
		struct audit_frame fr;
		long n = audit_frame_parse(s->buf + o, s->len - o, &fr);
		if (n <= 0)
			break;
		s->off[s->nframes] = o;
		s->flen[s->nframes++] = (size_t)n;
		o += (size_t)n;
	}
	return 0;
}

static int seg_store(struct seg_file *s, const uint8_t *buf, size_t len)
{
	FILE *f = fopen(s->path, "wb");
	if (!f)
		return -1;
	int rc = fwrite(buf, 1, len, f) == len ? 0 : -1;
	fclose(f);
	return rc;
}

static void seg_free(struct seg_file *s)
{
	free(s->buf);
}

/* A trail of one segment with 10 records (plus its closing seal). */
static int one_segment(struct fixture *fx, struct seg_file *s)
{
	char names[4][64];
	fx_init(fx);
	if (write_n(fx, NULL, 0, 10) || seg_names(fx, names, 4) != 1)
		return -1;
	return seg_load(fx, names[0], s);
}

static struct audit_opts small_segments(void)
{
	struct audit_opts o = {.segment_max_bytes = 4096, .seal_every_records = 1000};
	return o;
}

TEST(log_writes_records_across_rotation_and_reader_returns_them_with_fields)
{
	struct fixture fx;
	struct audit_opts o = small_segments();
	struct audit_reader *r;
	struct audit_entry *e = malloc(sizeof *e);
	char names[64][64];
	unsigned events = 0, seals = 0;
	uint64_t last_seg = 0;
	int rc;

	fx_init(&fx);
	CHECK_EQ(write_n(&fx, &o, 0, 100), 0);
	CHECK(seg_names(&fx, names, 64) >= 3);
	CHECK_EQ(audit_reader_open(fx.dir, fx.vault_id, fx.pk, fx.sk, fx.chain_key, 0, &r), 0);
	while ((rc = audit_reader_next(r, e)) == 1) {
		CHECK(e->segment >= last_seg);
		last_seg = e->segment;
		if (e->type == AUDIT_EV_SEAL) {
			seals++;
			continue;
		}
		struct audit_event want = sample(events);
		CHECK_EQ(e->type, want.type);
		CHECK_EQ(e->time_us, want.time_us);
		CHECK_EQ(e->uid, want.uid);
		CHECK_EQ(e->gid, 100);
		CHECK_EQ(e->pid, want.pid);
		CHECK_EQ(e->outcome, want.outcome);
		CHECK_EQ(e->bytes, 4196);
		CHECK(strcmp(e->user, "alice") == 0);
		CHECK(strcmp(e->process, "soffice.bin") == 0);
		CHECK(strcmp(e->path, want.path) == 0);
		CHECK(strcmp(e->path2, want.path2 ? want.path2 : "") == 0);
		CHECK(strcmp(e->level, "confidential") == 0);
		CHECK_EQ(e->nranges, want.nranges);
		if (want.nranges) {
			CHECK_EQ(e->ranges[1].off, 8192);
			CHECK_EQ(e->ranges[1].len, 100);
		}
		events++;
	}
	CHECK_EQ(rc, 0);
	CHECK_EQ(events, 100);
	CHECK(seals >= 3); /* one closing seal per segment */
	CHECK_EQ(audit_reader_problem(r)->status, AUDIT_INTACT);
	audit_reader_close(r);
	free(e);

	struct audit_verify_result res;
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_INTACT);
	CHECK(res.segments >= 3);
	CHECK_EQ(res.records, 100 + seals);
	fx_done(&fx);
}

TEST(verify_reports_a_flipped_byte_in_a_record)
{
	struct fixture fx;
	struct seg_file s;
	struct audit_verify_result res;
	CHECK_EQ(one_segment(&fx, &s), 0);
	s.buf[s.off[4] + 60] ^= 0x01; /* inside record 5's ciphertext */
	CHECK_EQ(seg_store(&s, s.buf, s.len), 0);
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_BROKEN);
	CHECK_EQ(res.problem.record, 5);
	CHECK(strstr(res.problem.what, "altered") != NULL);
	CHECK(strncmp(res.problem.file, "seg-0000000001-", 15) == 0);
	seg_free(&s);
	fx_done(&fx);
}

TEST(verify_reports_a_deleted_record)
{
	struct fixture fx;
	struct seg_file s;
	struct audit_verify_result res;
	CHECK_EQ(one_segment(&fx, &s), 0);
	uint8_t *nb = malloc(s.len);
	size_t cut = s.off[3], n = s.flen[3];
	memcpy(nb, s.buf, cut);
	memcpy(nb + cut, s.buf + cut + n, s.len - cut - n);
	CHECK_EQ(seg_store(&s, nb, s.len - n), 0);
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_BROKEN);
	CHECK_EQ(res.problem.record, 4);
	CHECK(strstr(res.problem.what, "found record 5") != NULL);
	free(nb);
	seg_free(&s);
	fx_done(&fx);
}

TEST(verify_reports_two_swapped_records)
{
	struct fixture fx;
	struct seg_file s;
	struct audit_verify_result res;
	CHECK_EQ(one_segment(&fx, &s), 0);
	uint8_t *nb = malloc(s.len);
	size_t a = s.off[5], la = s.flen[5], lb = s.flen[6];
	memcpy(nb, s.buf, a);
	memcpy(nb + a, s.buf + a + la, lb);
	memcpy(nb + a + lb, s.buf + a, la);
	memcpy(nb + a + la + lb, s.buf + a + la + lb, s.len - a - la - lb);
	CHECK_EQ(seg_store(&s, nb, s.len), 0);
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_BROKEN);
	CHECK_EQ(res.problem.record, 6);
	CHECK(strstr(res.problem.what, "found record 7") != NULL);
	free(nb);
	seg_free(&s);
	fx_done(&fx);
}

TEST(verify_reports_a_duplicated_record)
{
	struct fixture fx;
	struct seg_file s;
	struct audit_verify_result res;
	CHECK_EQ(one_segment(&fx, &s), 0);
	size_t a = s.off[2], la = s.flen[2];
	uint8_t *nb = malloc(s.len + la);
	memcpy(nb, s.buf, a + la);
	memcpy(nb + a + la, s.buf + a, la);
	memcpy(nb + a + 2 * la, s.buf + a + la, s.len - a - la);
	CHECK_EQ(seg_store(&s, nb, s.len + la), 0);
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_BROKEN);
	CHECK_EQ(res.problem.record, 4);
	CHECK(strstr(res.problem.what, "second copy of record 3") != NULL);
	free(nb);
	seg_free(&s);
	fx_done(&fx);
}

/* Three or more segments: rotation every few records. */
static int three_segments(struct fixture *fx, char names[][64], int *n)
{
	struct audit_opts o = small_segments();
	fx_init(fx);
	if (write_n(fx, &o, 0, 60))
		return -1;
	*n = seg_names(fx, names, 64);
	return *n >= 3 ? 0 : -1;
}

TEST(verify_reports_a_segment_whose_tail_was_cut)
{
	struct fixture fx;
	char names[64][64];
	int n;
	struct seg_file s;
	struct audit_verify_result res;
	CHECK_EQ(three_segments(&fx, names, &n), 0);
	CHECK_EQ(seg_load(&fx, names[0], &s), 0);
	int keep = s.nframes - 3; /* drop the last two records and the seal */
	CHECK(keep > 1);
	/* Cut in the middle of a frame, as a truncation at any byte would. */
	CHECK_EQ(seg_store(&s, s.buf, s.off[keep] + 10), 0);
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_BROKEN);
	CHECK(strcmp(res.problem.file, names[0]) == 0);
	CHECK_EQ(res.problem.record, (uint64_t)keep + 1);
	CHECK(strstr(res.problem.what, "cut") != NULL);
	seg_free(&s);

	/* Cut exactly at a record boundary: the same verdict. */
	fx_done(&fx);
	CHECK_EQ(three_segments(&fx, names, &n), 0);
	CHECK_EQ(seg_load(&fx, names[1], &s), 0);
	CHECK_EQ(seg_store(&s, s.buf, s.off[s.nframes - 1]), 0);
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_BROKEN);
	CHECK(strcmp(res.problem.file, names[1]) == 0);
	CHECK(strstr(res.problem.what, "cut") != NULL);
	seg_free(&s);
	fx_done(&fx);
}

TEST(verify_reports_a_removed_middle_segment)
{
	struct fixture fx;
	char names[64][64], p[512];
	int n;
	struct audit_verify_result res;
	CHECK_EQ(three_segments(&fx, names, &n), 0);
	snprintf(p, sizeof p, "%s/%s", fx.dir, names[1]);
	CHECK_EQ(unlink(p), 0);
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_BROKEN);
	CHECK(strcmp(res.problem.file, names[2]) == 0);
	CHECK(strstr(res.problem.what, "segment 2 is missing") != NULL);
	fx_done(&fx);
}

TEST(verify_reports_a_removed_first_segment)
{
	struct fixture fx;
	char names[64][64], p[512];
	int n;
	struct audit_verify_result res;
	CHECK_EQ(three_segments(&fx, names, &n), 0);
	snprintf(p, sizeof p, "%s/%s", fx.dir, names[0]);
	CHECK_EQ(unlink(p), 0);
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_BROKEN);
	CHECK(strstr(res.problem.what, "start of the trail") != NULL);
	fx_done(&fx);
}

TEST(verify_reports_an_edited_segment_header)
{
	struct fixture fx;
	char names[64][64];
	int n;
	struct seg_file s;
	struct audit_verify_result res;
	CHECK_EQ(three_segments(&fx, names, &n), 0);
	CHECK_EQ(seg_load(&fx, names[1], &s), 0);
	s.buf[48] ^= 0x01; /* prev_count */
	CHECK_EQ(seg_store(&s, s.buf, s.len), 0);
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_BROKEN);
	CHECK(strcmp(res.problem.file, names[1]) == 0);
	CHECK_EQ(res.problem.record, 0);
	CHECK(strstr(res.problem.what, "header fails authentication") != NULL);
	seg_free(&s);
	fx_done(&fx);
}

TEST(verify_reports_a_segment_file_renamed_over_a_gap)
{
	struct fixture fx;
	char names[64][64], from[512], to[512];
	int n;
	struct audit_verify_result res;
	CHECK_EQ(three_segments(&fx, names, &n), 0);
	snprintf(from, sizeof from, "%s/%s", fx.dir, names[2]);
	snprintf(to, sizeof to, "%s/%s", fx.dir, names[1]);
	CHECK_EQ(rename(from, to), 0); /* segment 3's bytes under segment 2's name */
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_BROKEN);
	CHECK(strstr(res.problem.what, "renamed") != NULL);
	fx_done(&fx);
}

TEST(verify_rejects_a_segment_from_another_vault)
{
	struct fixture fx, other;
	char names[4][64], from[512], to[512];
	struct audit_verify_result res;
	fx_init(&fx);
	fx_init(&other);
	CHECK_EQ(write_n(&other, NULL, 0, 3), 0);
	CHECK_EQ(seg_names(&other, names, 4), 1);
	snprintf(from, sizeof from, "%s/%s", other.dir, names[0]);
	snprintf(to, sizeof to, "%s/%s", fx.dir, names[0]);
	CHECK_EQ(rename(from, to), 0);
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_BROKEN);
	CHECK(strstr(res.problem.what, "another vault") != NULL);
	fx_done(&fx);
	fx_done(&other);
}

/* Write n records in a child process that exits without closing the log. */
static int crash_after(struct fixture *fx, unsigned n)
{
	pid_t pid = fork();
	int st;
	if (pid < 0)
		return -1;
	if (pid == 0) {
		struct audit_log *l;
		if (fx_open(fx, NULL, &l))
			_exit(1);
		for (unsigned i = 0; i < n; i++) {
			struct audit_event ev = sample(i);
			if (audit_log_write(l, &ev))
				_exit(1);
		}
		_exit(0); /* no audit_log_close: no closing seal */
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return -1;
	return 0;
}

TEST(verify_reports_an_unsealed_tail_as_a_crash_after_record_n)
{
	struct fixture fx;
	struct audit_verify_result res;
	fx_init(&fx);
	CHECK_EQ(write_n(&fx, NULL, 0, 5), 0);
	CHECK_EQ(crash_after(&fx, 7), 0);
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_UNSEALED);
	CHECK_EQ(res.problem.segment, 2);
	CHECK_EQ(res.problem.record, 7);
	CHECK(strstr(res.problem.what, "no seal after record 7") != NULL);
	CHECK(strstr(res.problem.what, "crashed") != NULL);
	fx_done(&fx);
}

TEST(verify_accepts_a_torn_record_at_the_end_of_a_crashed_segment)
{
	struct fixture fx;
	char names[8][64];
	struct seg_file s;
	struct audit_verify_result res;
	fx_init(&fx);
	CHECK_EQ(crash_after(&fx, 4), 0);
	CHECK_EQ(seg_names(&fx, names, 8), 1);
	CHECK_EQ(seg_load(&fx, names[0], &s), 0);
	CHECK_EQ(seg_store(&s, s.buf, s.len - 20), 0); /* half of record 4 */
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_UNSEALED);
	CHECK_EQ(res.problem.record, 3);
	seg_free(&s);
	/* The next writer links to record 3 and the whole trail verifies. */
	CHECK_EQ(write_n(&fx, NULL, 0, 2), 0);
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_INTACT);
	CHECK_EQ(res.recoveries, 1);
	fx_done(&fx);
}

TEST(log_opened_after_a_crash_chains_on_and_records_the_recovery)
{
	struct fixture fx;
	struct audit_log *l;
	struct audit_verify_result res;
	struct audit_reader *r;
	struct audit_entry *e = malloc(sizeof *e);
	int recovery = 0, rc;
	fx_init(&fx);
	CHECK_EQ(crash_after(&fx, 6), 0);
	CHECK_EQ(fx_open(&fx, NULL, &l), 0);
	CHECK(audit_log_recovered(l));
	struct audit_event ev = sample(1);
	CHECK_EQ(audit_log_write(l, &ev), 0);
	CHECK_EQ(audit_log_close(l), 0);

	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_INTACT);
	CHECK_EQ(res.segments, 2);
	CHECK_EQ(res.recoveries, 1);

	CHECK_EQ(audit_reader_open(fx.dir, fx.vault_id, fx.pk, fx.sk, fx.chain_key, 0, &r), 0);
	while ((rc = audit_reader_next(r, e)) == 1)
		if (e->type == AUDIT_EV_RECOVERY) {
			recovery++;
			CHECK_EQ(e->segment, 2);
			CHECK_EQ(e->record, 1);
			CHECK_EQ(e->bytes, 6);
			CHECK(strstr(e->detail, "no seal after record 6") != NULL);
		}
	CHECK_EQ(rc, 0);
	CHECK_EQ(recovery, 1);
	audit_reader_close(r);
	free(e);

	/* A sealed segment after the crash: cutting the crashed one now shows. */
	char names[8][64];
	struct seg_file s;
	CHECK_EQ(seg_names(&fx, names, 8), 2);
	CHECK_EQ(seg_load(&fx, names[0], &s), 0);
	CHECK_EQ(seg_store(&s, s.buf, s.off[4]), 0);
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_BROKEN);
	CHECK(strcmp(res.problem.file, names[0]) == 0);
	CHECK_EQ(res.problem.record, 5);
	seg_free(&s);
	fx_done(&fx);
}

TEST(an_abandoned_log_is_unsealed_and_the_next_one_records_the_recovery)
{
	struct fixture fx;
	struct audit_log *l;
	struct audit_verify_result res;
	fx_init(&fx);
	CHECK_EQ(fx_open(&fx, NULL, &l), 0);
	for (unsigned i = 0; i < 3; i++) {
		struct audit_event ev = sample(i);
		CHECK_EQ(audit_log_write(l, &ev), 0);
	}
	audit_log_abandon(l);
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_UNSEALED);
	CHECK_EQ(res.problem.record, 3);

	CHECK_EQ(fx_open(&fx, NULL, &l), 0);
	CHECK(audit_log_recovered(l));
	CHECK_EQ(audit_log_close(l), 0);
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_INTACT);
	CHECK_EQ(res.recoveries, 1);
	audit_log_abandon(NULL);
	fx_done(&fx);
}

TEST(a_failed_write_returns_the_errno_and_leaves_no_trace)
{
	struct fixture fx;
	struct audit_log *l;
	struct audit_verify_result res;
	fx_init(&fx);
	CHECK_EQ(fx_open(&fx, NULL, &l), 0);
	struct audit_event ev = sample(0);
	CHECK_EQ(audit_log_write(l, &ev), 0);
	audit_fault_set(AUDIT_FAULT_WRITE, 2, -ENOSPC);
	CHECK_EQ(audit_log_write(l, &ev), 0);
	CHECK_EQ(audit_log_write(l, &ev), -ENOSPC); /* half a record reached the file */
	CHECK_EQ(audit_log_write(l, &ev), 0);
	audit_fault_set(AUDIT_FAULT_WRITE, 0, 0);
	CHECK_EQ(audit_log_close(l), 0);
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_INTACT);
	CHECK_EQ(res.records, 4); /* three events and the closing seal */
	fx_done(&fx);
}

TEST(a_rotation_that_cannot_write_its_new_segment_fails_the_write)
{
	struct fixture fx;
	struct audit_log *l;
	struct audit_verify_result res;
	char names[8][64];
	fx_init(&fx);
	struct audit_opts o = {.segment_max_bytes = 1}; /* rotate before every record */
	CHECK_EQ(fx_open(&fx, &o, &l), 0);
	struct audit_event ev = sample(0);
	CHECK_EQ(audit_log_write(l, &ev), 0);
	/* Write 1 is the old segment's closing seal, write 2 the new header. */
	audit_fault_set(AUDIT_FAULT_WRITE, 2, -ENOSPC);
	int rc = audit_log_write(l, &ev);
	audit_fault_set(AUDIT_FAULT_WRITE, 0, 0);
	CHECK_EQ(rc, -ENOSPC);
	CHECK_EQ(seg_names(&fx, names, 8), 1); /* no half-made segment */
	CHECK_EQ(audit_log_write(l, &ev), 0);  /* the next write starts it */
	CHECK_EQ(audit_log_close(l), 0);
	CHECK_EQ(seg_names(&fx, names, 8), 2);
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_INTACT);
	CHECK_EQ(res.records, 4); /* event, seal | event, seal */
	fx_done(&fx);
}

TEST(after_a_failed_sync_every_write_fails_with_eio)
{
	struct fixture fx;
	struct audit_log *l;
	struct audit_opts o = {.sync_ms = 10};
	fx_init(&fx);
	CHECK_EQ(fx_open(&fx, &o, &l), 0);
	audit_fault_set(AUDIT_FAULT_FSYNC, 1, -EIO);
	struct audit_event ev = sample(0);
	CHECK_EQ(audit_log_write(l, &ev), 0);
	int rc = 0;
	for (int i = 0; i < 500 && rc == 0; i++) {
		usleep(10000);
		rc = audit_log_write(l, &ev);
	}
	audit_fault_set(AUDIT_FAULT_FSYNC, 0, 0);
	CHECK_EQ(rc, -EIO);
	CHECK_EQ(audit_log_write(l, &ev), -EIO);
	CHECK_EQ(audit_log_close(l), -EIO);
	fx_done(&fx);
}

TEST(reader_cannot_open_segments_without_the_secret_key)
{
	struct fixture fx;
	struct audit_reader *r = NULL;
	struct audit_verify_result res;
	uint8_t pk2[32];
	unsigned char sk2[32];
	fx_init(&fx);
	CHECK_EQ(write_n(&fx, NULL, 0, 3), 0);
	CHECK_EQ(audit_reader_open(fx.dir, fx.vault_id, fx.pk, NULL, fx.chain_key, 0, &r), -ENOKEY);
	CHECK(r == NULL);
	crypto_box_keypair(pk2, sk2);
	CHECK_EQ(audit_reader_open(fx.dir, fx.vault_id, fx.pk, sk2, fx.chain_key, 0, &r),
		 -EKEYREJECTED);
	/* A matching but different key pair: the segment key does not open. */
	CHECK_EQ(audit_verify(fx.dir, fx.vault_id, pk2, sk2, fx.chain_key, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_BROKEN);
	CHECK(strstr(res.problem.what, "does not open") != NULL);
	/* Nor does the chain key alone stand in for it. */
	CHECK_EQ(audit_verify(fx.dir, fx.vault_id, fx.pk, NULL, fx.chain_key, &res), -ENOKEY);
	fx_done(&fx);
}

TEST(verify_with_the_wrong_chain_key_fails_at_the_first_header)
{
	struct fixture fx;
	struct audit_verify_result res;
	unsigned char ck[32];
	fx_init(&fx);
	CHECK_EQ(write_n(&fx, NULL, 0, 3), 0);
	randombytes_buf(ck, sizeof ck);
	CHECK_EQ(audit_verify(fx.dir, fx.vault_id, fx.pk, fx.sk, ck, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_BROKEN);
	CHECK_EQ(res.problem.record, 0);
	fx_done(&fx);
}

TEST(long_fields_are_cut_and_flagged_and_extra_ranges_merged)
{
	struct fixture fx;
	struct audit_log *l;
	struct audit_reader *r;
	struct audit_entry *e = malloc(sizeof *e);
	static char longpath[6000];
	static struct audit_range rg[100];
	memset(longpath, 'a', sizeof longpath - 1);
	for (unsigned i = 0; i < 100; i++)
		rg[i] = (struct audit_range){i * 1000ull, 10};
	fx_init(&fx);
	CHECK_EQ(fx_open(&fx, NULL, &l), 0);
	struct audit_event ev = {
	    .type = AUDIT_EV_WRITE, .path = longpath, .ranges = rg, .nranges = 100};
	CHECK_EQ(audit_log_write(l, &ev), 0);
	CHECK_EQ(audit_log_close(l), 0);
	CHECK_EQ(audit_reader_open(fx.dir, fx.vault_id, fx.pk, fx.sk, fx.chain_key, 0, &r), 0);
	CHECK_EQ(audit_reader_next(r, e), 1);
	CHECK_EQ(e->type, AUDIT_EV_WRITE);
	CHECK_EQ(strlen(e->path), AUDIT_PATH_MAX);
	CHECK(e->flags & AUDIT_F_TRUNCATED);
	CHECK(e->flags & AUDIT_F_RANGES_MERGED);
	CHECK_EQ(e->nranges, AUDIT_RANGES_MAX);
	CHECK_EQ(e->ranges[AUDIT_RANGES_MAX - 1].off, (AUDIT_RANGES_MAX - 1) * 1000ull);
	CHECK_EQ(e->ranges[AUDIT_RANGES_MAX - 1].len,
		 99 * 1000ull + 10 - (AUDIT_RANGES_MAX - 1) * 1000ull);
	CHECK(e->time_us > 1700000000000000ull); /* 0 means now */
	audit_reader_close(r);
	free(e);
	fx_done(&fx);
}

TEST(periodic_seals_appear_every_n_records)
{
	struct fixture fx;
	struct audit_opts o = {.seal_every_records = 4};
	struct audit_reader *r;
	struct audit_entry *e = malloc(sizeof *e);
	unsigned seals = 0, since = 0;
	int rc;
	fx_init(&fx);
	CHECK_EQ(write_n(&fx, &o, 0, 10), 0);
	CHECK_EQ(audit_reader_open(fx.dir, fx.vault_id, fx.pk, fx.sk, fx.chain_key, 0, &r), 0);
	while ((rc = audit_reader_next(r, e)) == 1) {
		if (e->type == AUDIT_EV_SEAL) {
			CHECK(since <= 4);
			CHECK_EQ(e->bytes, e->record - 1);
			seals++;
			since = 0;
		} else {
			since++;
		}
	}
	CHECK_EQ(rc, 0);
	CHECK_EQ(seals, 3); /* after 4, after 8, and the closing seal */
	audit_reader_close(r);
	free(e);
	fx_done(&fx);
}

struct thr_arg {
	struct audit_log *l;
	unsigned base;
	int rc;
};

static void *thr_main(void *p)
{
	struct thr_arg *a = p;
	for (unsigned i = 0; i < 200 && !a->rc; i++) {
		struct audit_event ev = {
		    .type = AUDIT_EV_OPEN, .uid = a->base, .bytes = i, .path = "/shared.xlsx"};
		a->rc = audit_log_write(a->l, &ev);
	}
	return NULL;
}

TEST(many_threads_logging_at_once_leave_an_intact_chain)
{
	struct fixture fx;
	struct audit_opts o = {.segment_max_bytes = 32768, .seal_every_records = 50};
	struct audit_log *l;
	struct audit_reader *r;
	struct audit_entry *e = malloc(sizeof *e);
	pthread_t t[8];
	struct thr_arg a[8];
	unsigned seen[8] = {0};
	int rc;
	fx_init(&fx);
	CHECK_EQ(fx_open(&fx, &o, &l), 0);
	for (int i = 0; i < 8; i++) {
		a[i] = (struct thr_arg){l, (unsigned)i, 0};
		pthread_create(&t[i], NULL, thr_main, &a[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ(a[i].rc, 0);
	}
	CHECK_EQ(audit_log_close(l), 0);
	CHECK_EQ(audit_reader_open(fx.dir, fx.vault_id, fx.pk, fx.sk, fx.chain_key, 0, &r), 0);
	while ((rc = audit_reader_next(r, e)) == 1)
		if (e->type == AUDIT_EV_OPEN) {
			CHECK(e->uid < 8);
			CHECK_EQ(e->bytes, seen[e->uid]); /* each thread's records in order */
			seen[e->uid]++;
		}
	CHECK_EQ(rc, 0);
	CHECK_EQ(audit_reader_problem(r)->status, AUDIT_INTACT);
	for (int i = 0; i < 8; i++)
		CHECK_EQ(seen[i], 200);
	audit_reader_close(r);
	free(e);
	fx_done(&fx);
}

TEST(follow_reader_sees_records_appended_after_it_reached_the_end)
{
	struct fixture fx;
	struct audit_log *l;
	struct audit_reader *r;
	struct audit_entry *e = malloc(sizeof *e);
	struct audit_opts o = {.segment_max_bytes = 2048};
	unsigned got = 0;
	int rc;
	fx_init(&fx);
	CHECK_EQ(fx_open(&fx, &o, &l), 0);
	struct audit_event ev = sample(0);
	CHECK_EQ(audit_log_write(l, &ev), 0);
	CHECK_EQ(audit_reader_open(fx.dir, fx.vault_id, fx.pk, fx.sk, fx.chain_key,
				   AUDIT_READ_FOLLOW, &r),
		 0);
	CHECK_EQ(audit_reader_next(r, e), 1);
	CHECK_EQ(audit_reader_next(r, e), 0); /* nothing new yet */
	for (unsigned i = 1; i < 30; i++) {   /* across several rotations */
		ev = sample(i);
		CHECK_EQ(audit_log_write(l, &ev), 0);
	}
	while ((rc = audit_reader_next(r, e)) == 1)
		if (e->type != AUDIT_EV_SEAL)
			got++;
	CHECK_EQ(rc, 0);
	CHECK_EQ(got, 29);
	CHECK_EQ(audit_log_close(l), 0);
	audit_reader_close(r);
	free(e);
	fx_done(&fx);
}

TEST(log_opened_after_its_predecessor_was_damaged_restarts_the_chain_with_an_alert)
{
	struct fixture fx;
	struct audit_log *l;
	struct audit_verify_result res;
	struct seg_file s;
	char names[8][64], p[512];
	fx_init(&fx);
	CHECK_EQ(write_n(&fx, NULL, 0, 3), 0);
	CHECK_EQ(seg_names(&fx, names, 8), 1);
	CHECK_EQ(seg_load(&fx, names[0], &s), 0);
	s.buf[20] ^= 0x40; /* inside the vault ID: the header MAC fails */
	CHECK_EQ(seg_store(&s, s.buf, s.len), 0);
	seg_free(&s);
	/* A half-created segment from an earlier crash is cleaned away. */
	snprintf(p, sizeof p, "%s/tmp-seg-0000000002-20240101", fx.dir);
	FILE *f = fopen(p, "w");
	CHECK(f != NULL);
	fclose(f);
	CHECK_EQ(fx_open(&fx, NULL, &l), 0);
	CHECK(audit_log_recovered(l));
	CHECK(access(p, F_OK) != 0);
	CHECK_EQ(audit_log_close(l), 0);
	CHECK_EQ(seg_names(&fx, names, 8), 2);
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_BROKEN);
	CHECK(strcmp(res.problem.file, names[0]) == 0); /* the damage, not the relink */
	fx_done(&fx);
}

TEST(forwarded_line_quotes_and_escapes_what_a_log_reader_could_misparse)
{
	char buf[256];
	struct audit_event ev = {.type = AUDIT_EV_RENAME,
				 .uid = 1000,
				 .user = "alice",
				 .pid = 7,
				 .outcome = 13,
				 .path = "/a b/\"x\"\n",
				 .path2 = "/c\\d"};
	size_t n = audit_event_format(&ev, buf, sizeof buf);
	CHECK_EQ(n, strlen(buf));
	CHECK(strcmp(buf, "event=rename uid=1000 user=alice pid=7 outcome=13 "
			  "path=\"/a b/\\\"x\\\"\\x0a\" path2=\"/c\\\\d\"") == 0);
	/* A short buffer is cut but terminated, and the full length is told. */
	char small[10];
	CHECK_EQ(audit_event_format(&ev, small, sizeof small), n);
	CHECK_EQ(strlen(small), sizeof small - 1);
}

TEST(no_two_records_share_a_nonce_within_or_across_segments)
{
	struct fixture fx;
	struct audit_opts o = small_segments();
	char names[64][64];
	static uint8_t seen[4096][24]; /* a frame nonce: bytes 16..39 */
	int nseen = 0, nseg, dup = 0;
	fx_init(&fx);
	CHECK_EQ(write_n(&fx, &o, 0, 60), 0);
	nseg = seg_names(&fx, names, 64);
	CHECK(nseg > 2);
	for (int i = 0; i < nseg; i++) {
		struct seg_file s;
		CHECK_EQ(seg_load(&fx, names[i], &s), 0);
		for (int k = 0; k < s.nframes && nseen < 4096; k++)
			memcpy(seen[nseen++], s.buf + s.off[k] + 16, 24);
		seg_free(&s);
	}
	CHECK(nseen > 60); /* the events and every segment's closing seal */
	for (int i = 0; i < nseen; i++)
		for (int j = i + 1; j < nseen; j++)
			dup += memcmp(seen[i], seen[j], 24) == 0;
	CHECK_EQ(dup, 0);
	fx_done(&fx);
}

TEST(process_name_follows_a_renamed_process_and_is_empty_once_it_is_gone)
{
	int go[2], ack[2];
	char name[AUDIT_NAME_MAX + 1], c = 0;
	pid_t pid;
	CHECK_EQ(pipe(go), 0);
	CHECK_EQ(pipe(ack), 0);
	pid = fork();
	if (pid == 0) {
		/* Named "sr-first", then on request "sr-second", then exits. */
		prctl(PR_SET_NAME, "sr-first");
		if (write(ack[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(1);
		prctl(PR_SET_NAME, "sr-second");
		if (write(ack[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(1);
		_exit(0);
	}
	CHECK(pid > 0);
	CHECK_EQ(read(ack[0], &c, 1), 1);
	audit_process_name_get((uint32_t)pid, name, sizeof name);
	CHECK(strcmp(name, "sr-first") == 0);
	CHECK_EQ(write(go[1], &c, 1), 1);
	CHECK_EQ(read(ack[0], &c, 1), 1);
	audit_process_name_get((uint32_t)pid, name, sizeof name); /* the kept file */
	CHECK(strcmp(name, "sr-second") == 0);
	CHECK_EQ(write(go[1], &c, 1), 1);
	CHECK_EQ(waitpid(pid, NULL, 0), pid);
	audit_process_name_get((uint32_t)pid, name, sizeof name);
	CHECK(strcmp(name, "") == 0);
	audit_process_name_get((uint32_t)getpid(), name, 4); /* cut to the buffer */
	CHECK_EQ(strlen(name), 3);
	close(go[0]);
	close(go[1]);
	close(ack[0]);
	close(ack[1]);
}

TEST(event_names_round_trip)
{
	for (int t = 1; t < AUDIT_EV__COUNT; t++)
		CHECK_EQ(audit_event_parse(audit_event_name((enum audit_event_type)t)), t);
	CHECK_EQ(audit_event_parse("nonsense"), -EINVAL);
	CHECK(strcmp(audit_event_name(AUDIT_EV_READ_SUMMARY), "read-summary") == 0);
}

/* A read-only mount's chain: its own directory, its own derived chain key. */
TEST(read_only_chain_verifies_under_its_own_key_and_not_under_the_writers)
{
	struct fixture fx;
	struct audit_log *l = NULL;
	struct audit_verify_result res;
	struct audit_chain_ent *ch = NULL;
	struct audit_event ev = sample(1);
	char name[AUDIT_CHAIN_NAME_BYTES], dir[160], back[AUDIT_CHAIN_NAME_BYTES];
	unsigned char key[AUDIT_CHAIN_KEY_BYTES], other[AUDIT_CHAIN_KEY_BYTES];
	uint8_t id[AUDIT_CHAIN_ID_BYTES];

	fx_init(&fx);
	CHECK_EQ(audit_log_open_ro(fx.dir, fx.vault_id, fx.pk, fx.chain_key, NULL, name, &l), 0);
	CHECK_EQ(audit_log_write(l, &ev), 0);
	CHECK_EQ(audit_log_close(l), 0);
	CHECK_EQ(audit_chain_name_parse(name, id), 0);
	audit_chain_name(id, back);
	CHECK(strcmp(back, name) == 0);
	CHECK_EQ(audit_chain_list(fx.dir, &ch), 1);
	CHECK(strcmp(ch[0].name, name) == 0);
	CHECK_EQ(ch[0].segments, 1);
	free(ch);
	snprintf(dir, sizeof dir, "%s/%s", fx.dir, name);
	audit_chain_key_derive(fx.chain_key, id, key);
	CHECK_EQ(audit_verify(dir, fx.vault_id, fx.pk, fx.sk, key, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_INTACT);
	CHECK_EQ(res.records, 2); /* the event and the closing seal */
	/* The writer's key, or another chain's, does not verify it. */
	CHECK_EQ(audit_verify(dir, fx.vault_id, fx.pk, fx.sk, fx.chain_key, &res), 0);
	CHECK_EQ(res.problem.status, AUDIT_BROKEN);
	id[0] ^= 1;
	audit_chain_key_derive(fx.chain_key, id, other);
	CHECK(memcmp(key, other, sizeof key) != 0);
	CHECK_EQ(audit_chain_name_parse("ro-0123", id), -EINVAL);
	CHECK_EQ(audit_chain_name_parse("ro-0123456789ABCDEF0123456789abcdef", id), -EINVAL);
	/* The writer's trail in the same directory ignores the chain. */
	CHECK_EQ(fx_verify(&fx, &res), 0);
	CHECK_EQ(res.segments, 0);
	{
		DIR *d = opendir(dir);
		struct dirent *e;
		char p[512];
		while (d && (e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
			unlink(p);
		}
		if (d)
			closedir(d);
		rmdir(dir);
	}
	fx_done(&fx);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	RUN(log_writes_records_across_rotation_and_reader_returns_them_with_fields);
	RUN(verify_reports_a_flipped_byte_in_a_record);
	RUN(verify_reports_a_deleted_record);
	RUN(verify_reports_two_swapped_records);
	RUN(verify_reports_a_duplicated_record);
	RUN(verify_reports_a_segment_whose_tail_was_cut);
	RUN(verify_reports_a_removed_middle_segment);
	RUN(verify_reports_a_removed_first_segment);
	RUN(verify_reports_an_edited_segment_header);
	RUN(verify_reports_a_segment_file_renamed_over_a_gap);
	RUN(verify_rejects_a_segment_from_another_vault);
	RUN(verify_reports_an_unsealed_tail_as_a_crash_after_record_n);
	RUN(verify_accepts_a_torn_record_at_the_end_of_a_crashed_segment);
	RUN(log_opened_after_a_crash_chains_on_and_records_the_recovery);
	RUN(an_abandoned_log_is_unsealed_and_the_next_one_records_the_recovery);
	RUN(a_failed_write_returns_the_errno_and_leaves_no_trace);
	RUN(a_rotation_that_cannot_write_its_new_segment_fails_the_write);
	RUN(after_a_failed_sync_every_write_fails_with_eio);
	RUN(reader_cannot_open_segments_without_the_secret_key);
	RUN(verify_with_the_wrong_chain_key_fails_at_the_first_header);
	RUN(long_fields_are_cut_and_flagged_and_extra_ranges_merged);
	RUN(periodic_seals_appear_every_n_records);
	RUN(many_threads_logging_at_once_leave_an_intact_chain);
	RUN(follow_reader_sees_records_appended_after_it_reached_the_end);
	RUN(log_opened_after_its_predecessor_was_damaged_restarts_the_chain_with_an_alert);
	RUN(forwarded_line_quotes_and_escapes_what_a_log_reader_could_misparse);
	RUN(no_two_records_share_a_nonce_within_or_across_segments);
	RUN(process_name_follows_a_renamed_process_and_is_empty_once_it_is_gone);
	RUN(event_names_round_trip);
	RUN(read_only_chain_verifies_under_its_own_key_and_not_under_the_writers);
	return tap_done();
}
