/* fmt_xattr.c - the attribute blob: xattrs of files and directories
 * (docs/format.md 7.2).
 *
 * Blob = count u32, then count entries of
 *   name_len u8 (1..255) || value_len u32 (<= FMT_XATTR_VALUE_MAX) || name || value
 * An empty blob (0 bytes) means no attributes. POSIX ACLs are entries named
 * system.posix_acl_access / system.posix_acl_default holding the raw values
 * the kernel hands over. The blob lives only inside authenticated
 * encryption (dirmeta, seals), but it is still validated before use.
 *
 * Invariants: fmt_xattr_check() accepts only blobs whose entries exactly
 * fill the buffer, whose names hold no NUL and are unique, and whose count
 * is not zero (no attributes is the empty blob, so each set of attributes
 * has one encoding); the setters keep all of this.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "strongroom/format.h"
#include "fmt_internal.h"

#define FMT_XATTR_VALUE_MAX 65536u
#define XENT_FIXED 5

/* Walk to entry i: *off is the offset of the next entry. @return 0 or -EUCLEAN. */
static int fmt_xattr_next(const unsigned char *blob, size_t len, size_t *off, const char **name,
			  size_t *nlen, const unsigned char **val, size_t *vlen)
{
	size_t o = *off;

	if (len - o < XENT_FIXED)
		return -EUCLEAN;
	*nlen = blob[o];
	*vlen = fmt_le32_get(blob + o + 1);
	if (*nlen == 0 || *vlen > FMT_XATTR_VALUE_MAX)
		return -EUCLEAN;
	o += XENT_FIXED;
	if (len - o < *nlen || len - o - *nlen < *vlen)
		return -EUCLEAN;
	*name = (const char *)blob + o;
	*val = blob + o + *nlen;
	if (memchr(*name, '\0', *nlen))
		return -EUCLEAN;
	*off = o + *nlen + *vlen;
	return 0;
}

struct fmt_xattr_name {
	const char *p;
	size_t len;
};

static int fmt_xattr_name_cmp(const void *a, const void *b)
{
	const struct fmt_xattr_name *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->p, y->p, n);

	return c ? c : (x->len > y->len) - (x->len < y->len);
}

int fmt_xattr_check(const unsigned char *blob, size_t len)
{
	size_t off = 4, nlen, vlen;
	const char *name;
	const unsigned char *val;
	struct fmt_xattr_name *names;
	uint32_t count;
	int rc = 0;

	if (len == 0)
		return 0;
	if (len < 4)
		return -EUCLEAN;
	count = fmt_le32_get(blob);
	if (count == 0 || count > (len - 4) / XENT_FIXED)
		return -EUCLEAN;
	names = malloc(count * sizeof *names);
	if (!names)
		return -ENOMEM;
	for (uint32_t i = 0; i < count; i++) {
		if (fmt_xattr_next(blob, len, &off, &name, &nlen, &val, &vlen)) {
			rc = -EUCLEAN;
			goto out;
		}
		names[i] = (struct fmt_xattr_name){name, nlen};
	}
	if (off != len) {
		rc = -EUCLEAN;
		goto out;
	}
	/* Names are unique: sort and compare neighbours. */
	qsort(names, count, sizeof *names, fmt_xattr_name_cmp);
	for (uint32_t i = 1; i < count; i++)
		if (fmt_xattr_name_cmp(&names[i - 1], &names[i]) == 0)
			rc = -EUCLEAN;
out:
	free(names);
	return rc;
}

/* Find name. @return entry offset (>= 4) and fills val/vlen, -ENODATA, -EUCLEAN. */
static ssize_t fmt_xattr_find(const unsigned char *blob, size_t len, const char *want,
			      const unsigned char **val, size_t *vlen)
{
	size_t off = 4, wlen = strlen(want), nlen;
	const char *name;
	uint32_t count;

	if (fmt_xattr_check(blob, len))
		return -EUCLEAN;
	if (len == 0)
		return -ENODATA;
	count = fmt_le32_get(blob);
	for (uint32_t i = 0; i < count; i++) {
		size_t at = off;
		if (fmt_xattr_next(blob, len, &off, &name, &nlen, val, vlen))
			return -EUCLEAN;
		if (nlen == wlen && memcmp(name, want, wlen) == 0)
			return (ssize_t)at;
	}
	return -ENODATA;
}

ssize_t fmt_xattr_get(const unsigned char *blob, size_t len, const char *name, void *val, size_t cap)
{
	const unsigned char *v;
	size_t vlen;
	ssize_t at = fmt_xattr_find(blob, len, name, &v, &vlen);

	if (at < 0)
		return at;
	if (cap == 0)
		return (ssize_t)vlen;
	if (cap < vlen)
		return -ERANGE;
	memcpy(val, v, vlen);
	return (ssize_t)vlen;
}

ssize_t fmt_xattr_list(const unsigned char *blob, size_t len, char *out, size_t cap)
{
	size_t off = 4, nlen, vlen, total = 0;
	const char *name;
	const unsigned char *val;
	uint32_t count;

	if (fmt_xattr_check(blob, len))
		return -EUCLEAN;
	if (len == 0)
		return 0;
	count = fmt_le32_get(blob);
	for (uint32_t i = 0; i < count; i++) {
		if (fmt_xattr_next(blob, len, &off, &name, &nlen, &val, &vlen))
			return -EUCLEAN;
		if (cap) {
			if (cap - total < nlen + 1)
				return -ERANGE;
			memcpy(out + total, name, nlen);
			out[total + nlen] = '\0';
		}
		total += nlen + 1;
	}
	return (ssize_t)total;
}

int fmt_xattr_remove(unsigned char **blob, size_t *len, const char *name)
{
	const unsigned char *v;
	size_t vlen, elen;
	ssize_t at = fmt_xattr_find(*blob, *len, name, &v, &vlen);

	if (at < 0)
		return (int)at;
	elen = XENT_FIXED + strlen(name) + vlen;
	memmove(*blob + at, *blob + at + elen, *len - (size_t)at - elen);
	*len -= elen;
	fmt_le32_put(*blob, fmt_le32_get(*blob) - 1);
	if (fmt_le32_get(*blob) == 0)
		*len = 0;
	return 0;
}

int fmt_xattr_set(unsigned char **blob, size_t *len, const char *name, const void *val, size_t vlen,
		  int flags)
{
	const unsigned char *old;
	size_t oldlen, nlen = strlen(name), base;
	ssize_t at;
	unsigned char *nb;

	if (nlen == 0 || nlen > 255)
		return nlen ? -ERANGE : -EINVAL;
	if (vlen > FMT_XATTR_VALUE_MAX)
		return -E2BIG;
	at = fmt_xattr_find(*blob, *len, name, &old, &oldlen);
	if (at == -EUCLEAN)
		return -EUCLEAN;
	if (at >= 0 && (flags & XATTR_CREATE))
		return -EEXIST;
	if (at < 0 && (flags & XATTR_REPLACE))
		return -ENODATA;
	if (at >= 0) {
		int rc = fmt_xattr_remove(blob, len, name);
		if (rc)
			return rc;
	}
	base = *len ? *len : 4;
	nb = realloc(*blob, base + XENT_FIXED + nlen + vlen);
	if (!nb)
		return -ENOMEM;
	if (*len == 0)
		fmt_le32_put(nb, 0);
	nb[base] = (uint8_t)nlen;
	fmt_le32_put(nb + base + 1, (uint32_t)vlen);
	memcpy(nb + base + XENT_FIXED, name, nlen);
	if (vlen)
		memcpy(nb + base + XENT_FIXED + nlen, val, vlen);
	fmt_le32_put(nb, fmt_le32_get(nb) + 1);
	*blob = nb;
	*len = base + XENT_FIXED + nlen + vlen;
	return 0;
}
