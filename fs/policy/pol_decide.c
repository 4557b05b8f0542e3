/* pol_decide.c - decisions on a parsed policy: clearance, admin, ACL sets.
 *
 * Pure functions of a policy and a caller; nothing here allocates or fails
 * except for a too small output array.
 *
 * Invariants kept here:
 *  - A caller's groups are its primary gid and every supplementary gid;
 *    belonging to any group of a role is belonging to the role.
 *  - uid 0 is cleared for every level and is always an admin; with no
 *    policy (p NULL) everyone is cleared for every level (the kernel's ACL
 *    checks still apply), and only uid 0 is an admin.
 *  - Folders get x wherever they get r: a role that may read a folder's
 *    files must be able to enter it.
 */
#include <errno.h>
#include <string.h>

#include "strongroom/policy.h"

static bool in_group(const struct pol_caller *c, gid_t gid)
{
	if (c->gid == gid)
		return true;
	for (int i = 0; i < c->ngroups; i++)
		if (c->groups[i] == gid)
			return true;
	return false;
}

static bool in_role(const struct pol_role *r, const struct pol_caller *c)
{
	for (unsigned j = 0; j < r->ngroups; j++)
		if (r->groups[j].resolved && in_group(c, r->groups[j].gid))
			return true;
	return false;
}

int pol_clearance(const struct pol_policy *p, const struct pol_caller *c, unsigned top)
{
	int best = POL_NONE;
	bool any = false;

	if (!p || c->uid == 0)
		return (int)top;
	for (unsigned i = 0; i < p->nroles; i++) {
		if (!in_role(&p->roles[i], c))
			continue;
		any = true;
		if (p->roles[i].clearance > best)
			best = p->roles[i].clearance;
	}
	if (!any)
		best = p->default_clearance;
	return best > (int)top ? (int)top : best;
}

bool pol_may_open(const struct pol_policy *p, const struct pol_caller *c, unsigned top,
		  unsigned level)
{
	int cl = pol_clearance(p, c, top);

	return cl != POL_NONE && level <= (unsigned)cl;
}

bool pol_is_admin(const struct pol_policy *p, const struct pol_caller *c)
{
	if (c->uid == 0)
		return true;
	return p && p->has_admin && p->admin.resolved && in_group(c, p->admin.gid);
}

int pol_folder_find(const struct pol_policy *p, const char *path)
{
	for (unsigned i = 0; i < p->nfolders; i++)
		if (strcmp(p->folders[i].path, path) == 0)
			return (int)i;
	return -ENOENT;
}

int pol_folder_acl(const struct pol_policy *p, unsigned folder, bool for_dir,
		   struct pol_acl_entry *out, size_t cap)
{
	const struct pol_folder *f;
	size_t n = 0;

	if (folder >= p->nfolders)
		return -EINVAL;
	f = &p->folders[folder];
	for (unsigned i = 0; i < f->ngrants; i++) {
		const struct pol_role *r = &p->roles[f->grants[i].role];
		unsigned perm = f->grants[i].rights;

		if (perm == 0)
			continue;
		if (for_dir)
			perm = (perm & POL_RIGHT_W) ? 7u : (POL_RIGHT_R | POL_RIGHT_X);
		for (unsigned j = 0; j < r->ngroups; j++) {
			size_t k;

			/* Two roles on one group: the entry is their union. */
			for (k = 0; k < n; k++)
				if (out[k].gid == r->groups[j].gid)
					break;
			if (k < n) {
				out[k].perm |= perm;
				continue;
			}
			if (n == cap)
				return -ENOSPC;
			out[n].gid = r->groups[j].gid;
			out[n].perm = perm;
			n++;
		}
	}
	return (int)n;
}
