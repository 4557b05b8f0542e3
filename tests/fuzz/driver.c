/* driver.c - replays a fuzz target's corpus without libFuzzer, so a gcc
 * build runs every seed (and every past crash) as a regression test. Prints
 * one TAP line per input. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, n;
	uint8_t tmp[4096];
	while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
		if (len + n > cap) {
			cap = (len + n) * 2;
			uint8_t *nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				fclose(f);
				return -1;
			}
			buf = nb;
		}
		memcpy(buf + len, tmp, n);
		len += n;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf ? buf : (const uint8_t *)"", len);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	int n = 0, failed = 0;
	for (int i = 1; i < argc; i++) {
		DIR *d = opendir(argv[i]);
		if (!d) {
			printf("not ok %d corpus directory %s is missing\n", ++n, argv[i]);
			failed++;
			continue;
		}
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			char p[4096];
			snprintf(p, sizeof p, "%s/%s", argv[i], e->d_name);
			int rc = replay(p);
			printf("%sok %d replay %s\n", rc ? "not " : "", ++n, e->d_name);
			failed += rc != 0;
		}
		closedir(d);
	}
	printf("1..%d\n", n);
	return failed ? 1 : 0;
}
