/* fuzz_xattr.c - attribute blobs (docs/format.md 7.2). A blob that passes
 * fmt_xattr_check must list, get, replace and remove every entry without
 * ever leaving an invalid blob behind. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "strongroom/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *blob;
	size_t len = size;
	char *names;
	ssize_t nl;

	if (fmt_xattr_check(data, size) != 0)
		return 0;
	nl = fmt_xattr_list(data, size, NULL, 0);
	if (nl < 0)
		abort();
	names = malloc((size_t)nl + 1);
	blob = malloc(size ? size : 1);
	if (!names || !blob)
		abort();
	if (fmt_xattr_list(data, size, names, (size_t)nl) != nl)
		abort();
	memcpy(blob, data, size);
	for (char *p = names; p < names + nl; p += strlen(p) + 1) {
		ssize_t vl = fmt_xattr_get(blob, len, p, NULL, 0);
		if (vl < 0 && vl != -ENODATA)
			abort();
		if (fmt_xattr_set(&blob, &len, p, "v", 1, 0) != 0 || fmt_xattr_check(blob, len) != 0)
			abort();
		if (fmt_xattr_get(blob, len, p, NULL, 0) != 1)
			abort();
		if (fmt_xattr_remove(&blob, &len, p) != 0 || fmt_xattr_check(blob, len) != 0)
			abort();
	}
	free(blob);
	free(names);
	return 0;
}
