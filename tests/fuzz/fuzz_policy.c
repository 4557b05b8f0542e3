/* fuzz_policy.c - the policy file and compiled-policy parsers (policy.h).
 * The first byte picks the parser. Whatever parses must compile (with
 * made-up gids) into a compiled form that parses back and compiles to the
 * same bytes, and every decision on it must stay in range. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "strongroom/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const LEVELS[] = { "public", "internal", "confidential", "restricted" };

static int any_gid(const char *name, gid_t *gid, void *ctx)
{
	(void)ctx;
	*gid = (gid_t)(strlen(name) * 7 + (unsigned char)name[0]);
	return 0;
}

static void exercise(const struct pol_policy *p)
{
	gid_t groups[3] = { 1, 2, 3 };
	struct pol_caller c = { .uid = 1000, .gid = 0, .groups = groups, .ngroups = 3 };
	struct pol_acl_entry e[POL_MAX_ROLES * POL_MAX_GROUPS];
	int cl = pol_clearance(p, &c, 3);

	if (cl < POL_NONE || cl > 3)
		abort();
	(void)pol_is_admin(p, &c);
	for (unsigned i = 0; i < p->nfolders; i++) {
		if (pol_folder_acl(p, i, true, e, sizeof(e) / sizeof(e[0])) < 0)
			abort();
		if (pol_folder_find(p, p->folders[i].path) != (int)i)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pol_policy *p = NULL, *q = NULL;
	struct pol_error err;
	char *a = NULL, *b = NULL;
	ssize_t n, m;
	int r;

	if (size < 1)
		return 0;
	if (data[0] & 1) {
		r = pol_compiled_parse((const char *)data + 1, size - 1, LEVELS, 4, &p, &err);
	} else {
		r = pol_parse((const char *)data + 1, size - 1, LEVELS, 4, &p, &err);
		if (r == 0 && pol_resolve(p, any_gid, NULL, &err) != 0)
			abort();
	}
	if (r != 0) {
		if (p)
			abort();
		return 0;
	}
	exercise(p);
	n = pol_compile(p, NULL, 0);
	if (n <= 0)
		abort();
	a = malloc((size_t)n);
	b = malloc((size_t)n);
	if (!a || !b || pol_compile(p, a, (size_t)n) != n)
		abort();
	if (pol_compiled_parse(a, (size_t)n, LEVELS, 4, &q, &err) != 0)
		abort();
	m = pol_compile(q, b, (size_t)n);
	if (m != n || memcmp(a, b, (size_t)n) != 0)
		abort();
	free(a);
	free(b);
	pol_free(p);
	pol_free(q);
	return 0;
}
