/* test_vfile_crash.c - crash recovery (docs/format.md section 9): after a
 * cut anywhere past the last sync, or a SIGKILL in the middle of writing,
 * a file opens, every synced byte is there and every chunk is old or new. */
#include <signal.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#include "strongroom/format.h"
#include "strongroom/store.h"
#include "tap.h"
#include "vfile_fixture.h"

#define CS 65536u
#define NCH 24 /* chunks the test touches */
#define MAXV 16 /* versions per chunk */

/* Acceptable contents of each chunk: the synced one and every later one. */
static uint8_t *versions[NCH][MAXV];
static int nversions[NCH];
static uint64_t synced_size, final_size;

static void version_add(int c, const uint8_t *data)
{
	uint8_t *v = malloc(CS);
	memcpy(v, data, CS);
	versions[c][nversions[c]++] = v;
}

static uint8_t model[NCH * CS];

static int model_write(struct vf_file *f, uint64_t off, size_t len, bool record)
{
	uint8_t *b = malloc(len);
	fx_fill(b, len);
	if (fx_rand() % 2)
		memset(b, 'x', len / 2); /* some chunks compress */
	ssize_t n = vf_write(f, b, len, off);
	memcpy(model + off, b, len);
	free(b);
	if (off + len > final_size)
		final_size = off + len;
	if (record)
		for (uint64_t c = off / CS; c <= (off + len - 1) / CS; c++)
			version_add((int)c, model + c * CS);
	return n == (ssize_t)len ? 0 : -1;
}

struct frame_pos {
	uint64_t off, len;
};

static int frames_after(const unsigned char *b, size_t len, uint64_t from, struct frame_pos *out,
			int cap)
{
	uint64_t pos = FMT_FILE_HEADER_BYTES;
	int n = 0;
	while (pos + FMT_FRAME_HEADER_BYTES <= len && n < cap) {
		struct fmt_frame_header h;
		if (fmt_frame_header_decode(b + pos, &h))
			break;
		uint64_t total = FMT_FRAME_HEADER_BYTES + h.payload_len +
				 (h.type == FMT_FRAME_SEAL ? FMT_SEAL_LOCATOR_BYTES : 0);
		if (pos >= from)
			out[n++] = (struct frame_pos){pos, total};
		pos += total;
	}
	return n;
}

/* Writes, a sync, then more writes and seals that are not synced. */
TEST(prepare_file_with_synced_and_unsynced_writes)
{
	struct vf_file *f;
	CHECK_EQ(vf_create(fx_kr, fx_dir, "crash", 1, S_IFREG | 0600, 0, 0, &f), 0);
	CHECK_EQ(model_write(f, 0, 10 * CS + 500, false), 0);
	CHECK_EQ(vf_fsync(f, false), 0);
	CHECK_EQ(model_write(f, 3 * CS + 10, 2 * CS, false), 0);
	CHECK_EQ(vf_fsync(f, true), 0);
	synced_size = final_size;
	for (int c = 0; c < NCH; c++)
		version_add(c, model + (uint64_t)c * CS);
	/* after the last sync: overwrites, extensions, a seal (setxattr) */
	CHECK_EQ(model_write(f, 1 * CS + 100, 3000, true), 0);
	CHECK_EQ(model_write(f, 9 * CS, 4 * CS, true), 0);
	CHECK_EQ(vf_setxattr(f, "user.note", "x", 1, 0), 0);
	CHECK_EQ(model_write(f, 0, 20 * CS, true), 0);
	CHECK_EQ(model_write(f, 5 * CS + 7, 100, true), 0);
	CHECK_EQ(vf_close(f), 0);
}

static int check_recovered(const char *name, const char **why)
{
	struct vf_file *f;
	struct vf_attr a;
	static uint8_t buf[NCH * CS];
	int rc = vf_open(fx_kr, fx_dir, name, true, &f);
	*why = "open";
	if (rc)
		return rc;
	vf_getattr(f, &a);
	*why = "size";
	if (a.size < synced_size || a.size > final_size)
		return -1;
	memset(buf, 0, sizeof buf);
	*why = "read";
	if (vf_read(f, buf, sizeof buf, 0) != (ssize_t)a.size)
		return -2;
	vf_close(f);
	for (int c = 0; c < NCH; c++) {
		bool ok = false;
		for (int v = 0; v < nversions[c] && !ok; v++) {
			/* bytes past the recovered size read as zeros */
			uint64_t start = (uint64_t)c * CS;
			size_t valid = a.size <= start ? 0 : a.size - start >= CS ? CS : a.size - start;
			ok = memcmp(buf + start, versions[c][v], valid) == 0;
		}
		*why = "chunk neither old nor new";
		if (!ok)
			return -3;
	}
	/* The recovery sealed the file: the next open is clean. */
	*why = "reopen";
	rc = vf_open(fx_kr, fx_dir, name, false, &f);
	if (rc)
		return rc;
	*why = "still recovering";
	rc = vf_recovered(f) ? -4 : 0;
	vf_close(f);
	return rc;
}

TEST(cut_at_every_frame_boundary_and_inside_frames_after_the_sync_recovers)
{
	size_t len;
	unsigned char *b = fx_slurp("crash", &len);
	struct frame_pos fr[256];
	uint64_t synced_end;
	CHECK(b);
	synced_end = 0;
	for (int i = 7; i >= 0; i--)
		synced_end = (synced_end << 8) | b[32 + i];
	CHECK(synced_end > FMT_FILE_HEADER_BYTES);
	CHECK(synced_end < len);
	int n = frames_after(b, len, synced_end, fr, 256);
	CHECK(n > 5);
	int tried = 0, recovered = 0;
	for (int i = 0; i < n; i++) {
		const uint64_t inside[] = {0, 1, 47, 48, 49, fr[i].len / 2, fr[i].len - 17,
					   fr[i].len - 16, fr[i].len - 1};
		for (size_t k = 0; k < sizeof inside / sizeof inside[0]; k++) {
			uint64_t cut = fr[i].off + inside[k];
			const char *why;
			struct vf_file *f;
			CHECK_EQ(fx_spit("cut", b, cut), 0);
			int rc = check_recovered("cut", &why);
			if (rc)
				printf("# cut at %llu (frame %d +%llu): %s %d\n", (unsigned long long)cut, i,
				       (unsigned long long)inside[k], why, rc);
			CHECK_EQ(rc, 0);
			tried++;
			CHECK_EQ(vf_open(fx_kr, fx_dir, "cut", false, &f), 0);
			vf_close(f);
			recovered++;
		}
	}
	CHECK_EQ(fx_spit("cut", b, len), 0);
	const char *why;
	CHECK_EQ(check_recovered("cut", &why), 0);
	printf("# %d cut points recovered\n", tried);
	CHECK(recovered == tried);
	free(b);
}

TEST(recovery_is_reported_once_and_cuts_the_torn_tail)
{
	size_t len;
	unsigned char *b = fx_slurp("crash", &len);
	struct vf_file *f;
	CHECK(b);
	CHECK_EQ(fx_spit("torn", b, len - 5), 0);
	CHECK_EQ(vf_open(fx_kr, fx_dir, "torn", true, &f), 0);
	CHECK(vf_recovered(f));
	CHECK_EQ(vf_close(f), 0);
	CHECK_EQ(vf_open(fx_kr, fx_dir, "torn", true, &f), 0);
	CHECK(!vf_recovered(f));
	CHECK_EQ(vf_close(f), 0);
	free(b);
}

TEST(sigkill_at_any_write_after_a_sync_keeps_synced_data)
{
	static uint8_t base[5 * CS], back[5 * CS];
	fx_fill(base, sizeof base);
	for (unsigned long nth = 1; nth <= 12; nth++) {
		struct vf_file *f;
		unlinkat(fx_dir, "killed", 0);
		CHECK_EQ(vf_create(fx_kr, fx_dir, "killed", 0, S_IFREG | 0600, 0, 0, &f), 0);
		CHECK_EQ(vf_write(f, base, sizeof base, 0), sizeof base);
		CHECK_EQ(vf_fsync(f, false), 0);
		pid_t pid = fork();
		CHECK(pid >= 0);
		if (pid == 0) {
			uint8_t junk[CS * 3];
			store_fault_set(STORE_OP_WRITE, nth, 0);
			for (int i = 0; i < 30; i++) {
				fx_fill(junk, sizeof junk);
				/* never over the synced bytes: those must survive as they are */
				vf_write(f, junk, sizeof junk, sizeof base + (uint64_t)(i % 7) * 40000);
				if (i % 5 == 4)
					vf_fsync(f, false);
			}
			_exit(0);
		}
		int st;
		CHECK(waitpid(pid, &st, 0) == pid);
		CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
		vf_close(f); /* the parent's copy: read-only use from here */
		CHECK_EQ(vf_open(fx_kr, fx_dir, "killed", true, &f), 0);
		ssize_t n = vf_read(f, back, sizeof back, 0);
		CHECK(n >= (ssize_t)sizeof base);
		CHECK(memcmp(back, base, sizeof base) == 0);
		CHECK_EQ(vf_close(f), 0);
	}
}

TEST(a_create_killed_halfway_leaves_no_file)
{
	for (unsigned long nth = 1; nth <= 2; nth++) {
		pid_t pid = fork();
		CHECK(pid >= 0);
		if (pid == 0) {
			struct vf_file *f;
			store_fault_set(STORE_OP_WRITE, nth, 0);
			vf_create(fx_kr, fx_dir, "half", 1, S_IFREG | 0600, 0, 0, &f);
			_exit(0);
		}
		int st;
		CHECK(waitpid(pid, &st, 0) == pid);
		CHECK(WIFSIGNALED(st));
		CHECK_EQ(fx_store_size("half"), -1);
	}
}

TEST(a_create_that_fails_to_write_leaves_no_file)
{
	struct vf_file *f;
	store_fault_set(STORE_OP_WRITE, 1, -ENOSPC);
	CHECK_EQ(vf_create(fx_kr, fx_dir, "nospace", 1, S_IFREG | 0600, 0, 0, &f), -ENOSPC);
	store_fault_set(STORE_OP_WRITE, 0, 0);
	CHECK_EQ(fx_store_size("nospace"), -1);
	CHECK_EQ(vf_create(fx_kr, fx_dir, "nospace", 1, S_IFREG | 0600, 0, 0, &f), 0);
	CHECK_EQ(vf_close(f), 0);
}

int main(void)
{
	if (fx_setup())
		return 1;
	RUN(prepare_file_with_synced_and_unsynced_writes);
	RUN(cut_at_every_frame_boundary_and_inside_frames_after_the_sync_recovers);
	RUN(recovery_is_reported_once_and_cuts_the_torn_tail);
	RUN(sigkill_at_any_write_after_a_sync_keeps_synced_data);
	RUN(a_create_killed_halfway_leaves_no_file);
	RUN(a_create_that_fails_to_write_leaves_no_file);
	fx_teardown();
	return tap_done();
}
