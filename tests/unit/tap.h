/* tap.h - a few lines of TAP for unit tests whose names are sentences.
 *
 *   TEST(frame_open_rejects_chunk_from_other_file) { CHECK(x == 0); }
 *   int main(void) { RUN(frame_open_rejects_chunk_from_other_file); return tap_done(); }
 *
 * Each RUN prints "ok N name" or "not ok N name"; tools/check counts them.
 * CHECK records a failure with its location and returns from the test.
 */
#ifndef STRONGROOM_TAP_H
#define STRONGROOM_TAP_H

#include <stdio.h>
#include <stdlib.h>

static int tap_n, tap_failed, tap_cur_failed;

#define TEST(name) static void test_##name(void)

#define CHECK(cond)                                                                       \
	do {                                                                              \
		if (!(cond)) {                                                            \
			printf("# %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			tap_cur_failed = 1;                                               \
			return;                                                           \
		}                                                                         \
	} while (0)

/* CHECK_EQ for integers, printing both sides. */
#define CHECK_EQ(a, b)                                                                    \
	do {                                                                              \
		long long _a = (long long)(a), _b = (long long)(b);                       \
		if (_a != _b) {                                                           \
			printf("# %s:%d: %s == %lld, expected %s == %lld\n", __FILE__,     \
			       __LINE__, #a, _a, #b, _b);                                 \
			tap_cur_failed = 1;                                               \
			return;                                                           \
		}                                                                         \
	} while (0)

#define RUN(name)                                                                         \
	do {                                                                              \
		tap_cur_failed = 0;                                                       \
		test_##name();                                                            \
		tap_n++;                                                                  \
		if (tap_cur_failed)                                                       \
			tap_failed++;                                                     \
		printf("%sok %d %s\n", tap_cur_failed ? "not " : "", tap_n, #name);      \
		fflush(stdout);                                                           \
	} while (0)

static inline int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
