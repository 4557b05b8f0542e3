/* fuzz_kaudit.c - the parser of the kernel's audit records
 * (fs/frontend/fe_kaudit.h): any bytes as one record's text. A field must
 * come back NUL-free and shorter than its buffer, or be refused. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../fs/frontend/fe_kaudit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = {"key", "comm", "name", "cwd", "dev", "inode",
					    "nametype", "exit", "uid", "pid", "syscall"};
	const char *text = (const char *)data;
	char out[64];

	(void)fe_kaudit_serial(text, size);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int n = fe_kaudit_field(text, size, names[i], out, sizeof out);

		if (n >= 0 && ((size_t)n >= sizeof out || strlen(out) != (size_t)n))
			abort();
	}
	return 0;
}
