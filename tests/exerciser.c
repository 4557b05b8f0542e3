/* exerciser.c - random file operations checked against an in-memory model.
 *
 * In the spirit of fsx: one file inside a mounted vault gets a seeded,
 * reproducible stream of writes, reads, truncates, writes past the end
 * (holes), mmap writes and reads, fsyncs and close/reopen cycles. Every read
 * (and a full read after the last operation) is compared with a model of
 * what the file must hold; the first difference stops the run and prints
 * the seed, the failing operation, the first bad offset and the operations
 * that led there, so `exerciser -s SEED ...` replays it exactly.
 *
 *   exerciser [-n OPS] [-s SEED] [-L MAXLEN] [-N] [-q] FILE
 *     -n OPS     operations to run (default 10000)
 *     -s SEED    random seed (default: from the clock; always printed)
 *     -L MAXLEN  largest file size (default 4 MiB)
 *     -N         no mmap operations
 *     -q         print only the seed and the result
 *
 * Invariants:
 *  1. The model holds exactly model_size bytes that the file must hold;
 *     bytes past a truncate or in a hole are zero in the model.
 *  2. The generator is a private xorshift64* seeded from -s, so the same
 *     seed gives the same operations on every machine and libc.
 *  3. Exit status: 0 all checks passed, 1 a check failed, 2 usage or an
 *     unexpected syscall error (printed with the operation).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EX_LOG_OPS   32 /* operations remembered for the failure report */
#define EX_MAX_WRITE (256 * 1024)

enum ex_op { EX_READ, EX_WRITE, EX_HOLE, EX_TRUNCATE, EX_MAPREAD, EX_MAPWRITE, EX_FSYNC, EX_REOPEN };
static const char *const ex_op_names[] = {"read",    "write",    "hole",  "truncate",
					  "mapread", "mapwrite", "fsync", "reopen"};

struct ex_logent {
	unsigned long n;
	enum ex_op op;
	uint64_t off, len, size_before;
};

struct ex_state {
	const char *path;
	int fd;
	uint64_t rng;
	uint64_t seed;
	unsigned char *model; /* maxlen bytes, owned */
	unsigned char *buf;   /* scratch, maxlen bytes, owned */
	uint64_t model_size, maxlen;
	bool use_mmap, quiet;
	unsigned long opno;
	struct ex_logent log[EX_LOG_OPS];
	unsigned long counts[EX_REOPEN + 1];
};

static uint64_t ex_rand(struct ex_state *s)
{
	s->rng ^= s->rng >> 12;
	s->rng ^= s->rng << 25;
	s->rng ^= s->rng >> 27;
	return s->rng * 0x2545F4914F6CDD1DULL;
}

static uint64_t ex_below(struct ex_state *s, uint64_t n)
{
	return n ? ex_rand(s) % n : 0;
}

static void ex_log_dump(const struct ex_state *s)
{
	unsigned long first = s->opno + 1 > EX_LOG_OPS ? s->opno + 1 - EX_LOG_OPS : 0;

	fprintf(stderr, "last operations:\n");
	for (unsigned long i = first; i <= s->opno; i++) {
		const struct ex_logent *e = &s->log[i % EX_LOG_OPS];
		if (e->n != i)
			continue;
		fprintf(stderr, "  #%lu %-8s off %" PRIu64 " len %" PRIu64 " (size was %" PRIu64 ")\n",
			e->n, ex_op_names[e->op], e->off, e->len, e->size_before);
	}
}

static void ex_fail(const struct ex_state *s, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "exerciser: FAILED at operation #%lu (seed %" PRIu64 ", file %s): ", s->opno,
		s->seed, s->path);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	ex_log_dump(s);
	fprintf(stderr, "replay: exerciser -s %" PRIu64 " -L %" PRIu64 "%s -n %lu FILE\n", s->seed,
		s->maxlen, s->use_mmap ? "" : " -N", s->opno + 1);
}

/* Compare got[0..len) with the model at off. @return 0, or 1 after
 * reporting the first difference. */
static int ex_compare(const struct ex_state *s, const char *what, uint64_t off, const unsigned char *got,
		      uint64_t len)
{
	for (uint64_t i = 0; i < len; i++) {
		if (got[i] == s->model[off + i])
			continue;
		ex_fail(s, "%s at %" PRIu64 " len %" PRIu64 ": byte %" PRIu64 " is 0x%02x, expected 0x%02x",
			what, off, len, off + i, got[i], s->model[off + i]);
		return 1;
	}
	return 0;
}

static int ex_syserr(const struct ex_state *s, const char *what)
{
	ex_fail(s, "%s: %s", what, strerror(errno));
	return 2;
}

static int ex_check_size(struct ex_state *s)
{
	struct stat st;

	if (fstat(s->fd, &st) != 0)
		return ex_syserr(s, "fstat");
	if ((uint64_t)st.st_size != s->model_size) {
		ex_fail(s, "size is %lld, expected %" PRIu64, (long long)st.st_size, s->model_size);
		return 1;
	}
	return 0;
}

static int ex_pread_all(struct ex_state *s, uint64_t off, uint64_t len)
{
	uint64_t done = 0;

	while (done < len) {
		ssize_t n = pread(s->fd, s->buf + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return ex_syserr(s, "pread");
		}
		if (n == 0) {
			ex_fail(s, "read at %" PRIu64 ": end of file after %" PRIu64 " of %" PRIu64 " bytes",
				off, done, len);
			return 1;
		}
		done += (uint64_t)n;
	}
	return 0;
}

static int ex_pwrite_all(struct ex_state *s, const unsigned char *data, uint64_t off, uint64_t len)
{
	uint64_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(s->fd, data + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return ex_syserr(s, "pwrite");
		}
		done += (uint64_t)n;
	}
	return 0;
}

static void ex_fill(struct ex_state *s, unsigned char *p, uint64_t len)
{
	/* Bytes that name the operation, so a misplaced write is recognisable. */
	unsigned char tag = (unsigned char)(s->opno % 253 + 1);

	for (uint64_t i = 0; i < len; i++)
		p[i] = (unsigned char)(tag + (i % 7 == 0 ? ex_rand(s) : i));
}

static void ex_model_write(struct ex_state *s, const unsigned char *data, uint64_t off, uint64_t len)
{
	if (off > s->model_size)
		memset(s->model + s->model_size, 0, off - s->model_size);
	memcpy(s->model + off, data, len);
	if (off + len > s->model_size)
		s->model_size = off + len;
}

static int ex_do_read(struct ex_state *s, uint64_t off, uint64_t len)
{
	int r = ex_pread_all(s, off, len);

	return r ? r : ex_compare(s, "read", off, s->buf, len);
}

static int ex_do_write(struct ex_state *s, uint64_t off, uint64_t len)
{
	unsigned char *data = s->buf;
	int r;

	ex_fill(s, data, len);
	r = ex_pwrite_all(s, data, off, len);
	if (r)
		return r;
	ex_model_write(s, data, off, len);
	return 0;
}

static int ex_do_truncate(struct ex_state *s, uint64_t size)
{
	if (ftruncate(s->fd, (off_t)size) != 0)
		return ex_syserr(s, "ftruncate");
	if (size > s->model_size)
		memset(s->model + s->model_size, 0, size - s->model_size);
	s->model_size = size;
	return 0;
}

/* mmap the pages covering [off, off+len) of the current file. */
static int ex_do_map(struct ex_state *s, uint64_t off, uint64_t len, bool write)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint64_t moff = off & ~(uint64_t)(pg - 1);
	uint64_t mlen = off + len - moff;
	unsigned char *p;
	int r = 0;

	p = mmap(NULL, mlen, PROT_READ | (write ? PROT_WRITE : 0), MAP_SHARED, s->fd, (off_t)moff);
	if (p == MAP_FAILED)
		return ex_syserr(s, "mmap");
	if (write) {
		ex_fill(s, s->buf, len);
		memcpy(p + (off - moff), s->buf, len);
		if (msync(p, mlen, MS_SYNC) != 0) {
			r = ex_syserr(s, "msync");
			goto out;
		}
		ex_model_write(s, s->buf, off, len);
	} else {
		r = ex_compare(s, "mapread", off, p + (off - moff), len);
	}
out:
	munmap(p, mlen);
	return r;
}

static int ex_reopen(struct ex_state *s)
{
	if (close(s->fd) != 0)
		return ex_syserr(s, "close");
	s->fd = open(s->path, O_RDWR | O_CLOEXEC);
	if (s->fd < 0)
		return ex_syserr(s, "reopen");
	return 0;
}

static int ex_step(struct ex_state *s)
{
	uint64_t pick = ex_below(s, 100), off = 0, len = 0;
	enum ex_op op;
	struct ex_logent *e;
	int r;

	if (pick < 25)
		op = EX_READ;
	else if (pick < 50)
		op = EX_WRITE;
	else if (pick < 56)
		op = EX_HOLE;
	else if (pick < 64)
		op = EX_TRUNCATE;
	else if (pick < 76)
		op = s->use_mmap ? EX_MAPREAD : EX_READ;
	else if (pick < 88)
		op = s->use_mmap ? EX_MAPWRITE : EX_WRITE;
	else if (pick < 94)
		op = EX_FSYNC;
	else
		op = EX_REOPEN;

	/* Shape the operation to the current size (nothing to read in an
	 * empty file: write instead). */
	switch (op) {
	case EX_READ:
	case EX_MAPREAD:
		if (s->model_size == 0) {
			op = EX_WRITE;
			goto shape_write;
		}
		off = ex_below(s, s->model_size);
		len = 1 + ex_below(s, s->model_size - off < EX_MAX_WRITE ? s->model_size - off : EX_MAX_WRITE);
		break;
	case EX_WRITE:
	case EX_MAPWRITE:
shape_write:
		off = ex_below(s, s->maxlen - 1);
		len = 1 + ex_below(s, EX_MAX_WRITE);
		if (off + len > s->maxlen)
			len = s->maxlen - off;
		if (op == EX_MAPWRITE) {
			/* A shared mapping cannot grow the file: stay inside it. */
			if (s->model_size == 0) {
				op = EX_WRITE;
				break;
			}
			off = ex_below(s, s->model_size);
			if (off + len > s->model_size)
				len = s->model_size - off;
		}
		break;
	case EX_HOLE:
		off = s->model_size + 1 + ex_below(s, 3 * 65536);
		len = 1 + ex_below(s, 4096);
		if (off + len > s->maxlen) {
			op = EX_TRUNCATE;
			off = ex_below(s, s->maxlen);
		}
		break;
	case EX_TRUNCATE:
		off = ex_below(s, 4) == 0 ? 0 : ex_below(s, s->maxlen);
		break;
	case EX_FSYNC:
	case EX_REOPEN:
		break;
	}

	e = &s->log[s->opno % EX_LOG_OPS];
	*e = (struct ex_logent){.n = s->opno, .op = op, .off = off, .len = len, .size_before = s->model_size};
	s->counts[op]++;
	switch (op) {
	case EX_READ:
		r = ex_do_read(s, off, len);
		break;
	case EX_WRITE:
	case EX_HOLE:
		r = ex_do_write(s, off, len);
		break;
	case EX_TRUNCATE:
		r = ex_do_truncate(s, off);
		break;
	case EX_MAPREAD:
		r = ex_do_map(s, off, len, false);
		break;
	case EX_MAPWRITE:
		r = ex_do_map(s, off, len, true);
		break;
	case EX_FSYNC:
		r = fsync(s->fd) == 0 ? 0 : ex_syserr(s, "fsync");
		break;
	case EX_REOPEN:
		r = ex_reopen(s);
		break;
	default:
		r = 2;
	}
	if (r == 0 && (op == EX_TRUNCATE || op == EX_REOPEN || s->opno % 64 == 0))
		r = ex_check_size(s);
	return r;
}

static int ex_final_check(struct ex_state *s)
{
	int r = ex_reopen(s);

	if (r)
		return r;
	r = ex_check_size(s);
	if (r)
		return r;
	for (uint64_t off = 0; off < s->model_size; off += EX_MAX_WRITE) {
		uint64_t len = s->model_size - off < EX_MAX_WRITE ? s->model_size - off : EX_MAX_WRITE;
		r = ex_do_read(s, off, len);
		if (r)
			return r;
	}
	return 0;
}

static void ex_usage(void)
{
	fprintf(stderr, "usage: exerciser [-n OPS] [-s SEED] [-L MAXLEN] [-N] [-q] FILE\n");
}

int main(int argc, char **argv)
{
	struct ex_state s = {.use_mmap = true, .fd = -1};
	unsigned long nops = 10000;
	bool seeded = false;
	int c, rc = 2;

	s.maxlen = 4u << 20;
	while ((c = getopt(argc, argv, "n:s:L:Nq")) != -1) {
		switch (c) {
		case 'n':
			nops = strtoul(optarg, NULL, 0);
			break;
		case 's':
			s.seed = strtoull(optarg, NULL, 0);
			seeded = true;
			break;
		case 'L':
			s.maxlen = strtoull(optarg, NULL, 0);
			break;
		case 'N':
			s.use_mmap = false;
			break;
		case 'q':
			s.quiet = true;
			break;
		default:
			ex_usage();
			return 2;
		}
	}
	if (optind + 1 != argc || s.maxlen < 4096) {
		ex_usage();
		return 2;
	}
	s.path = argv[optind];
	if (!seeded) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		s.seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid();
	}
	s.rng = s.seed ? s.seed : 0x9E3779B97F4A7C15ULL;
	printf("exerciser: seed %" PRIu64 ", %lu operations, max size %" PRIu64 ", mmap %s, file %s\n",
	       s.seed, nops, s.maxlen, s.use_mmap ? "on" : "off", s.path);
	fflush(stdout);

	s.model = calloc(1, s.maxlen);
	s.buf = malloc(s.maxlen > EX_MAX_WRITE ? s.maxlen : EX_MAX_WRITE);
	if (!s.model || !s.buf) {
		fprintf(stderr, "exerciser: out of memory\n");
		goto out;
	}
	s.fd = open(s.path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (s.fd < 0) {
		fprintf(stderr, "exerciser: %s: %s\n", s.path, strerror(errno));
		goto out;
	}
	for (s.opno = 0; s.opno < nops; s.opno++) {
		rc = ex_step(&s);
		if (rc)
			goto out;
		if (!s.quiet && s.opno && s.opno % 10000 == 0)
			printf("exerciser: %lu operations, size %" PRIu64 "\n", s.opno, s.model_size);
	}
	rc = ex_final_check(&s);
	if (rc)
		goto out;
	printf("exerciser: passed %lu operations (seed %" PRIu64 "):", nops, s.seed);
	for (int i = 0; i <= EX_REOPEN; i++)
		printf(" %s %lu", ex_op_names[i], s.counts[i]);
	printf("\n");
out:
	if (s.fd >= 0)
		close(s.fd);
	free(s.model);
	free(s.buf);
	return rc;
}
