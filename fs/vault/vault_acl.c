/* vault_acl.c - POSIX.1e ACL arithmetic on the kernel's xattr format.
 *
 * The value of system.posix_acl_access / system.posix_acl_default is
 *   u32 version (2), then entries of { u16 tag, u16 perm, u32 id },
 * little-endian. These functions are pure: they validate, derive mode bits,
 * apply chmod and compute inheritance at creation, so the vault is correct
 * whether or not the kernel does part of this work itself.
 *
 * Invariants: an ACL that passes vault_acl_check has exactly one USER_OBJ,
 * GROUP_OBJ and OTHER entry, at most one MASK, a MASK whenever it has USER
 * or GROUP entries, and permissions within rwx. Every other function
 * refuses (-EINVAL) what vault_acl_check refuses.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vault_internal.h"

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static void put16(unsigned char *p, uint16_t x)
{
	p[0] = (unsigned char)x;
	p[1] = (unsigned char)(x >> 8);
}

int vault_acl_check(const void *acl, size_t len)
{
	const unsigned char *p = acl;
	int n_uobj = 0, n_gobj = 0, n_other = 0, n_mask = 0, n_named = 0;
	size_t i, n;

	if (!acl || len < VAULT_ACL_HEADER_BYTES ||
	    (len - VAULT_ACL_HEADER_BYTES) % VAULT_ACL_ENTRY_BYTES != 0)
		return -EINVAL;
	if (get32(p) != VAULT_ACL_VERSION)
		return -EINVAL;
	n = (len - VAULT_ACL_HEADER_BYTES) / VAULT_ACL_ENTRY_BYTES;
	if (n == 0)
		return 0;
	if (n > 1024)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		const unsigned char *e = p + VAULT_ACL_HEADER_BYTES + i * VAULT_ACL_ENTRY_BYTES;

		if (get16(e + 2) & ~7u)
			return -EINVAL;
		switch (get16(e)) {
		case VAULT_ACL_USER_OBJ:
			n_uobj++;
			break;
		case VAULT_ACL_GROUP_OBJ:
			n_gobj++;
			break;
		case VAULT_ACL_OTHER:
			n_other++;
			break;
		case VAULT_ACL_MASK:
			n_mask++;
			break;
		case VAULT_ACL_USER:
		case VAULT_ACL_GROUP:
			n_named++;
			break;
		default:
			return -EINVAL;
		}
	}
	if (n_uobj != 1 || n_gobj != 1 || n_other != 1 || n_mask > 1 || (n_named && !n_mask))
		return -EINVAL;
	return (int)n;
}

/* Pointer to the perm field of the first entry with tag, or NULL. */
static unsigned char *acl_perm_of(unsigned char *p, size_t n, uint16_t tag)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char *e = p + VAULT_ACL_HEADER_BYTES + i * VAULT_ACL_ENTRY_BYTES;

		if (get16(e) == tag)
			return e + 2;
	}
	return NULL;
}

int vault_acl_mode(const void *acl, size_t len, mode_t *perm, bool *equiv)
{
	unsigned char *p = (unsigned char *)acl; /* only read below */
	unsigned char *u, *g, *m, *o;
	int n = vault_acl_check(acl, len);

	if (n <= 0)
		return n < 0 ? n : -EINVAL;
	u = acl_perm_of(p, (size_t)n, VAULT_ACL_USER_OBJ);
	g = acl_perm_of(p, (size_t)n, VAULT_ACL_GROUP_OBJ);
	m = acl_perm_of(p, (size_t)n, VAULT_ACL_MASK);
	o = acl_perm_of(p, (size_t)n, VAULT_ACL_OTHER);
	*perm = (mode_t)((get16(u) << 6) | (get16(m ? m : g) << 3) | get16(o));
	*equiv = (n == 3);
	return 0;
}

int vault_acl_chmod(void *acl, size_t len, mode_t perm)
{
	unsigned char *p = acl, *m;
	int n = vault_acl_check(acl, len);

	if (n <= 0)
		return n < 0 ? n : -EINVAL;
	put16(acl_perm_of(p, (size_t)n, VAULT_ACL_USER_OBJ), (uint16_t)((perm >> 6) & 7));
	m = acl_perm_of(p, (size_t)n, VAULT_ACL_MASK);
	if (!m)
		m = acl_perm_of(p, (size_t)n, VAULT_ACL_GROUP_OBJ);
	put16(m, (uint16_t)((perm >> 3) & 7));
	put16(acl_perm_of(p, (size_t)n, VAULT_ACL_OTHER), (uint16_t)(perm & 7));
	return 0;
}

int vault_acl_inherit(const void *dflt, size_t dlen, mode_t *mode, void **acc, size_t *acc_len)
{
	unsigned char *a = NULL, *u, *g, *o;
	unsigned bits;
	int n, r;

	*acc = NULL;
	*acc_len = 0;
	n = vault_acl_check(dflt, dlen);
	if (n <= 0)
		return n < 0 ? n : -EINVAL;
	a = malloc(dlen);
	if (!a)
		return -ENOMEM;
	memcpy(a, dflt, dlen);

	/* Each base class keeps only what both the default ACL and the create
	 * mode grant; the mask stands in for the group class when present. */
	u = acl_perm_of(a, (size_t)n, VAULT_ACL_USER_OBJ);
	g = acl_perm_of(a, (size_t)n, VAULT_ACL_MASK);
	if (!g)
		g = acl_perm_of(a, (size_t)n, VAULT_ACL_GROUP_OBJ);
	o = acl_perm_of(a, (size_t)n, VAULT_ACL_OTHER);
	put16(u, (uint16_t)(get16(u) & ((*mode >> 6) & 7)));
	put16(g, (uint16_t)(get16(g) & ((*mode >> 3) & 7)));
	put16(o, (uint16_t)(get16(o) & (*mode & 7)));
	bits = (unsigned)((get16(u) << 6) | (get16(g) << 3) | get16(o));
	*mode = (*mode & ~(mode_t)0777) | bits;

	if (n == 3) { /* the mode says it all */
		free(a);
		r = 0;
		goto out;
	}
	*acc = a;
	*acc_len = dlen;
	r = 0;
out:
	return r;
}
