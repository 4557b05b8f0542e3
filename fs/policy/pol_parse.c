/* pol_parse.c - the policy file and the compiled policy: parse, resolve,
 * compile.
 *
 * The policy file (docs/policy.md) is INI-like and hand-edited:
 *
 *   [vault]          admin-group = GROUP, default-clearance = LEVEL|none
 *   [role NAME]      group = GROUP[, GROUP...], clearance = LEVEL
 *   [folder /PATH]   level = LEVEL, ROLE = r|rw|rwx|none
 *
 * Lines starting with '#' or ';' are comments. The compiled form is what
 * the vault keeps (policy.h, POL_XATTR): one record per line, fields
 * separated by one space, names and paths %XX-escaped so that they hold no
 * space, groups carrying their gids:
 *
 *   strongroom-policy 1
 *   admin GID NAME
 *   default LEVEL|none
 *   role NAME LEVEL GID:GROUP[,GID:GROUP...]
 *   folder LEVEL|- PATH [ROLE=RIGHTS ...]
 *
 * Invariants kept here:
 *  - Both parsers bound every length before copying (lines, names, paths,
 *    counts) and never read past len; the text need not be NUL-terminated.
 *  - A policy is returned only once it passed every check (policy.h); a
 *    failure frees everything and says which line and why.
 *  - Folder grants may name roles defined further down: the file is read in
 *    two passes, definitions first, grants second.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pol_internal.h"
#include "strongroom/policy.h"

#define COMPILED_MAGIC "strongroom-policy 1"

/* ---- errors ---- */

static int err_set(struct pol_error *err, unsigned line, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int err_set(struct pol_error *err, unsigned line, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		err->line = line;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* ---- lines ---- */

struct line_iter {
	const char *p, *end;
	unsigned no;
};

/* Next line, without its newline, CR and surrounding blanks. @return 1 and
 * *s, *n; 0 at the end; -EINVAL for a line too long or holding a NUL. */
static int line_next(struct line_iter *it, const char **s, size_t *n)
{
	const char *b, *e, *nl;

	if (it->p >= it->end)
		return 0;
	nl = memchr(it->p, '\n', (size_t)(it->end - it->p));
	b = it->p;
	e = nl ? nl : it->end;
	it->p = nl ? nl + 1 : it->end;
	it->no++;
	if ((size_t)(e - b) > POL_LINE_MAX || memchr(b, '\0', (size_t)(e - b)))
		return -EINVAL;
	while (b < e && (*b == ' ' || *b == '\t'))
		b++;
	while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		e--;
	*s = b;
	*n = (size_t)(e - b);
	return 1;
}

static void trim(const char **s, size_t *n)
{
	while (*n && ((*s)[0] == ' ' || (*s)[0] == '\t')) {
		(*s)++;
		(*n)--;
	}
	while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
		(*n)--;
}

static bool span_is(const char *s, size_t n, const char *word)
{
	return strlen(word) == n && memcmp(s, word, n) == 0;
}

/* Role and level names: 1..POL_NAME_MAX of [A-Za-z0-9_.-]. */
static bool name_ok(const char *s, size_t n)
{
	if (n == 0 || n > POL_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
			return false;
	return true;
}

/* Group names: what NSS may hand out (SSSD gives "sales team@corp"), so
 * any printable byte but ',' (the list separator). */
static bool group_ok(const char *s, size_t n)
{
	if (n == 0 || n > POL_GROUP_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || s[i] == ',')
			return false;
	return true;
}

/* Canonical absolute path: "/" or "/a/b", no empty, "." or ".." parts. */
static bool path_ok(const char *s, size_t n)
{
	size_t i = 1;

	if (n == 0 || n > POL_PATH_MAX || s[0] != '/')
		return false;
	if (n == 1)
		return true;
	if (s[n - 1] == '/')
		return false;
	while (i < n) {
		size_t start = i;

		while (i < n && s[i] != '/') {
			if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
				return false;
			i++;
		}
		if (i == start || (i - start == 1 && s[start] == '.') ||
		    (i - start == 2 && s[start] == '.' && s[start + 1] == '.') || i - start > 255)
			return false;
		i++;
	}
	return true;
}

static int level_of(const struct pol_policy *p, const char *s, size_t n)
{
	for (unsigned i = 0; i < p->nlevels; i++)
		if (span_is(s, n, p->levels[i]))
			return (int)i;
	return -EINVAL;
}

int pol_level_index(const struct pol_policy *p, const char *name)
{
	return level_of(p, name, strlen(name));
}

static int role_of(const struct pol_policy *p, const char *s, size_t n)
{
	for (unsigned i = 0; i < p->nroles; i++)
		if (span_is(s, n, p->roles[i].name))
			return (int)i;
	return -ENOENT;
}

static int rights_of(const char *s, size_t n)
{
	if (span_is(s, n, "none"))
		return 0;
	if (span_is(s, n, "r"))
		return POL_RIGHT_R;
	if (span_is(s, n, "rw"))
		return POL_RIGHT_R | POL_RIGHT_W;
	if (span_is(s, n, "rwx"))
		return POL_RIGHT_R | POL_RIGHT_W | POL_RIGHT_X;
	return -EINVAL;
}

const char *pol_rights_name(unsigned rights)
{
	switch (rights & 7u) {
	case POL_RIGHT_R:
		return "r";
	case POL_RIGHT_R | POL_RIGHT_W:
		return "rw";
	case POL_RIGHT_R | POL_RIGHT_W | POL_RIGHT_X:
		return "rwx";
	case 0:
		return "none";
	default:
		return "?";
	}
}

/* ---- the policy object ---- */

static struct pol_policy *policy_new(const char *const *levels, unsigned nlevels)
{
	struct pol_policy *p;

	if (nlevels == 0 || nlevels > POL_MAX_LEVELS)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	for (unsigned i = 0; i < nlevels; i++) {
		if (!levels[i] || strlen(levels[i]) > POL_NAME_MAX) {
			free(p);
			return NULL;
		}
		snprintf(p->levels[i], sizeof(p->levels[i]), "%s", levels[i]);
	}
	p->nlevels = nlevels;
	p->default_clearance = 0;
	return p;
}

void pol_free(struct pol_policy *p)
{
	if (!p)
		return;
	for (unsigned i = 0; i < p->nfolders; i++) {
		free(p->folders[i].path);
		free(p->folders[i].grants);
	}
	free(p->folders);
	free(p);
}

static int folder_add(struct pol_policy *p, const char *path, size_t n, unsigned line)
{
	struct pol_folder *f, *nf;

	if (p->nfolders == POL_MAX_FOLDERS)
		return -E2BIG;
	nf = realloc(p->folders, (p->nfolders + 1) * sizeof(*nf));
	if (!nf)
		return -ENOMEM;
	p->folders = nf;
	f = &p->folders[p->nfolders];
	memset(f, 0, sizeof(*f));
	f->path = strndup(path, n);
	if (!f->path)
		return -ENOMEM;
	f->level = POL_NONE;
	f->line = line;
	p->nfolders++;
	return 0;
}

static int grant_add(struct pol_folder *f, unsigned role, unsigned rights, unsigned line)
{
	struct pol_grant *ng;

	for (unsigned i = 0; i < f->ngrants; i++)
		if (f->grants[i].role == role)
			return -EEXIST;
	if (f->ngrants == POL_MAX_ROLES)
		return -E2BIG;
	ng = realloc(f->grants, (f->ngrants + 1) * sizeof(*ng));
	if (!ng)
		return -ENOMEM;
	f->grants = ng;
	f->grants[f->ngrants].role = role;
	f->grants[f->ngrants].rights = rights;
	f->grants[f->ngrants].line = line;
	f->ngrants++;
	return 0;
}

/* "a, b, c" into role->groups. */
static int groups_parse(struct pol_role *role, const char *s, size_t n, unsigned line,
			struct pol_error *err)
{
	size_t i = 0;

	if (role->ngroups)
		return err_set(err, line, -EINVAL, "role %s: group given twice", role->name);
	while (i <= n) {
		const char *g = s + i;
		size_t gl = 0;

		while (i + gl < n && s[i + gl] != ',')
			gl++;
		i += gl + 1;
		trim(&g, &gl);
		if (!group_ok(g, gl))
			return err_set(err, line, -EINVAL, "role %s: bad group name", role->name);
		if (role->ngroups == POL_MAX_GROUPS)
			return err_set(err, line, -EINVAL, "role %s: more than %d groups",
				       role->name, POL_MAX_GROUPS);
		memcpy(role->groups[role->ngroups].name, g, gl);
		role->groups[role->ngroups].name[gl] = '\0';
		role->ngroups++;
	}
	role->group_line = line;
	return 0;
}

enum section { SEC_NONE, SEC_VAULT, SEC_ROLE, SEC_FOLDER, SEC_ALERT };

/* One "key = value" line of pass 1 (definitions). */
static int def_line(struct pol_policy *p, enum section sec, int cur, const char *k, size_t kn,
		    const char *val, size_t vn, unsigned line, struct pol_error *err)
{
	int lv;

	switch (sec) {
	case SEC_NONE:
		return err_set(err, line, -EINVAL, "setting outside a section");
	case SEC_VAULT:
		if (span_is(k, kn, "admin-group")) {
			if (p->has_admin)
				return err_set(err, line, -EINVAL, "admin-group given twice");
			if (!group_ok(val, vn))
				return err_set(err, line, -EINVAL, "bad group name");
			memcpy(p->admin.name, val, vn);
			p->admin.name[vn] = '\0';
			p->has_admin = true;
			p->admin_line = line;
			return 0;
		}
		if (span_is(k, kn, "default-clearance")) {
			if (span_is(val, vn, "none")) {
				p->default_clearance = POL_NONE;
				return 0;
			}
			lv = level_of(p, val, vn);
			if (lv < 0)
				return err_set(err, line, -EINVAL, "unknown level \"%.*s\"",
					       (int)(vn > 64 ? 64 : vn), val);
			p->default_clearance = lv;
			return 0;
		}
		{
			char why[POL_ERR_BYTES];

			lv = pol_vault_setting(p, k, kn, val, vn, why, sizeof(why));
			if (lv != -ENOENT)
				return lv < 0 ? err_set(err, line, lv, "%s", why) : 0;
		}
		return err_set(err, line, -EINVAL, "unknown setting \"%.*s\" in [vault]",
			       (int)(kn > 64 ? 64 : kn), k);
	case SEC_ROLE: {
		struct pol_role *role = &p->roles[cur];

		if (span_is(k, kn, "group"))
			return groups_parse(role, val, vn, line, err);
		if (span_is(k, kn, "clearance")) {
			if (role->clearance != POL_NONE)
				return err_set(err, line, -EINVAL, "role %s: clearance given twice",
					       role->name);
			lv = level_of(p, val, vn);
			if (lv < 0)
				return err_set(err, line, -EINVAL, "unknown level \"%.*s\"",
					       (int)(vn > 64 ? 64 : vn), val);
			role->clearance = lv;
			return 0;
		}
		{
			char why[POL_ERR_BYTES];

			lv = pol_role_setting(p, role, k, kn, val, vn, why, sizeof(why));
			if (lv != -ENOENT)
				return lv < 0 ? err_set(err, line, lv, "%s", why) : 0;
		}
		return err_set(err, line, -EINVAL, "unknown setting \"%.*s\" in [role %s]",
			       (int)(kn > 64 ? 64 : kn), k, role->name);
	}
	case SEC_ALERT: {
		char why[POL_ERR_BYTES];

		lv = pol_alert_setting(p, &p->alerts[cur], k, kn, val, vn, why, sizeof(why));
		return lv < 0 ? err_set(err, line, lv, "%s", why) : 0;
	}
	case SEC_FOLDER: {
		struct pol_folder *f = &p->folders[cur];

		if (span_is(k, kn, "level")) {
			if (f->level != POL_NONE)
				return err_set(err, line, -EINVAL, "level given twice");
			lv = level_of(p, val, vn);
			if (lv < 0)
				return err_set(err, line, -EINVAL, "unknown level \"%.*s\"",
					       (int)(vn > 64 ? 64 : vn), val);
			f->level = lv;
			return 0;
		}
		/* A grant: checked in pass 2, once every role is known. */
		if (!name_ok(k, kn))
			return err_set(err, line, -EINVAL, "bad role name");
		if (rights_of(val, vn) < 0)
			return err_set(err, line, -EINVAL,
				       "rights must be r, rw, rwx or none, not \"%.*s\"",
				       (int)(vn > 16 ? 16 : vn), val);
		return 0;
	}
	}
	return -EINVAL;
}

/* A "[...]" header. */
static int section_line(struct pol_policy *p, const char *s, size_t n, unsigned line,
			enum section *sec, int *cur, struct pol_error *err)
{
	const char *in = s + 1, *arg;
	size_t inl = n - 2, an;
	int r;

	if (n < 2 || s[n - 1] != ']')
		return err_set(err, line, -EINVAL, "section header without ']'");
	trim(&in, &inl);
	if (span_is(in, inl, "vault")) {
		*sec = SEC_VAULT;
		return 0;
	}
	if (inl > 5 && memcmp(in, "role", 4) == 0 && (in[4] == ' ' || in[4] == '\t')) {
		arg = in + 5;
		an = inl - 5;
		trim(&arg, &an);
		if (!name_ok(arg, an) || span_is(arg, an, "level"))
			return err_set(err, line, -EINVAL, "bad role name");
		if (role_of(p, arg, an) >= 0)
			return err_set(err, line, -EINVAL, "role %.*s defined twice", (int)an, arg);
		if (p->nroles == POL_MAX_ROLES)
			return err_set(err, line, -EINVAL, "more than %d roles", POL_MAX_ROLES);
		memset(&p->roles[p->nroles], 0, sizeof(p->roles[0]));
		memcpy(p->roles[p->nroles].name, arg, an);
		p->roles[p->nroles].clearance = POL_NONE;
		p->roles[p->nroles].line = line;
		*cur = (int)p->nroles++;
		*sec = SEC_ROLE;
		return 0;
	}
	if (inl > 7 && memcmp(in, "folder", 6) == 0 && (in[6] == ' ' || in[6] == '\t')) {
		arg = in + 7;
		an = inl - 7;
		trim(&arg, &an);
		if (!path_ok(arg, an))
			return err_set(err, line, -EINVAL,
				       "folder path must be absolute within the vault, without "
				       "\".\", \"..\", \"//\" or a trailing \"/\"");
		for (unsigned i = 0; i < p->nfolders; i++)
			if (span_is(arg, an, p->folders[i].path))
				return err_set(err, line, -EINVAL, "folder %.*s listed twice",
					       (int)(an > 128 ? 128 : an), arg);
		r = folder_add(p, arg, an, line);
		if (r == -E2BIG)
			return err_set(err, line, -EINVAL, "more than %d folders", POL_MAX_FOLDERS);
		if (r < 0)
			return err_set(err, line, r, "out of memory");
		*cur = (int)p->nfolders - 1;
		*sec = SEC_FOLDER;
		return 0;
	}
	if (inl > 6 && memcmp(in, "alert", 5) == 0 && (in[5] == ' ' || in[5] == '\t')) {
		char why[POL_ERR_BYTES];

		arg = in + 6;
		an = inl - 6;
		trim(&arg, &an);
		r = pol_alert_add(p, arg, an, line, why, sizeof(why));
		if (r < 0)
			return err_set(err, line, r, "%s", why);
		*cur = r;
		*sec = SEC_ALERT;
		return 0;
	}
	return err_set(err, line, -EINVAL, "unknown section \"[%.*s]\"", (int)(inl > 64 ? 64 : inl),
		       in);
}

/* Split "key = value". */
static int kv_split(const char *s, size_t n, const char **k, size_t *kn, const char **v, size_t *vn)
{
	const char *eq = memchr(s, '=', n);

	if (!eq)
		return -EINVAL;
	*k = s;
	*kn = (size_t)(eq - s);
	*v = eq + 1;
	*vn = n - *kn - 1;
	trim(k, kn);
	trim(v, vn);
	return *kn && *vn ? 0 : -EINVAL;
}

static int parse_pass(struct pol_policy *p, const char *text, size_t len, int pass,
		      struct pol_error *err)
{
	struct line_iter it = { text, text + len, 0 };
	enum section sec = SEC_NONE;
	int cur = -1, folder_no = -1, r;
	const char *s, *k, *v;
	size_t n, kn, vn;

	while ((r = line_next(&it, &s, &n)) != 0) {
		if (r < 0)
			return err_set(err, it.no, -EINVAL, "line too long or holds a NUL byte");
		if (n == 0 || s[0] == '#' || s[0] == ';')
			continue;
		if (s[0] == '[') {
			if (pass == 1) {
				r = section_line(p, s, n, it.no, &sec, &cur, err);
				if (r < 0)
					return r;
			} else {
				/* Pass 2 only follows folders, in the order pass 1 made them. */
				sec = SEC_NONE;
				if (n > 8 && memcmp(s, "[folder", 7) == 0) {
					sec = SEC_FOLDER;
					cur = ++folder_no;
				}
			}
			continue;
		}
		if (kv_split(s, n, &k, &kn, &v, &vn) < 0)
			return err_set(err, it.no, -EINVAL, "expected \"key = value\"");
		if (pass == 1) {
			r = def_line(p, sec, cur, k, kn, v, vn, it.no, err);
			if (r < 0)
				return r;
			continue;
		}
		if (sec != SEC_FOLDER || span_is(k, kn, "level"))
			continue;
		{
			int role = role_of(p, k, kn);
			struct pol_folder *f = &p->folders[cur];

			if (role < 0)
				return err_set(err, it.no, -EINVAL, "unknown role \"%.*s\"", (int)kn, k);
			r = grant_add(f, (unsigned)role, (unsigned)rights_of(v, vn), it.no);
			if (r == -EEXIST)
				return err_set(err, it.no, -EINVAL, "role %s given twice for %s",
					       p->roles[role].name, f->path);
			if (r < 0)
				return err_set(err, it.no, r, "out of memory");
		}
	}
	return 0;
}

int pol_parse(const char *text, size_t len, const char *const *levels, unsigned nlevels,
	      struct pol_policy **out, struct pol_error *err)
{
	struct pol_policy *p;
	int r;

	*out = NULL;
	if (err) {
		err->line = 0;
		err->msg[0] = '\0';
	}
	if (len > POL_TEXT_MAX)
		return err_set(err, 0, -EINVAL, "larger than %u bytes", POL_TEXT_MAX);
	p = policy_new(levels, nlevels);
	if (!p)
		return err_set(err, 0, -EINVAL, "bad level list");
	r = parse_pass(p, text, len, 1, err);
	if (r < 0)
		goto fail;
	for (unsigned i = 0; i < p->nroles; i++) {
		if (p->roles[i].ngroups == 0) {
			r = err_set(err, p->roles[i].line, -EINVAL, "role %s has no group",
				    p->roles[i].name);
			goto fail;
		}
		if (p->roles[i].clearance == POL_NONE) {
			r = err_set(err, p->roles[i].line, -EINVAL, "role %s has no clearance",
				    p->roles[i].name);
			goto fail;
		}
	}
	{
		unsigned wl = 0;
		char why[POL_ERR_BYTES];

		r = pol_watch_check(p, &wl, why, sizeof(why));
		if (r < 0) {
			r = err_set(err, wl, r, "%s", why);
			goto fail;
		}
	}
	r = parse_pass(p, text, len, 2, err);
	if (r < 0)
		goto fail;
	*out = p;
	return 0;
fail:
	pol_free(p);
	return r;
}

int pol_resolve(struct pol_policy *p, pol_group_lookup_fn lookup, void *ctx, struct pol_error *err)
{
	struct pol_group *g;
	int r;

	if (p->has_admin) {
		g = &p->admin;
		r = lookup(g->name, &g->gid, ctx);
		if (r < 0)
			return err_set(err, p->admin_line, r == -ENOENT ? -ENOENT : r,
				       "unknown group \"%s\"", g->name);
		g->resolved = true;
	}
	for (unsigned i = 0; i < p->nroles; i++) {
		for (unsigned j = 0; j < p->roles[i].ngroups; j++) {
			g = &p->roles[i].groups[j];
			r = lookup(g->name, &g->gid, ctx);
			if (r < 0)
				return err_set(err, p->roles[i].group_line,
					       r == -ENOENT ? -ENOENT : r,
					       "role %s: unknown group \"%s\"", p->roles[i].name,
					       g->name);
			g->resolved = true;
		}
	}
	return 0;
}

/* ---- the compiled form ---- */

struct out_buf {
	char *p;
	size_t cap, len;
};

static void out_raw(struct out_buf *o, const char *s, size_t n)
{
	if (o->p && o->len + n <= o->cap)
		memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void out_str(struct out_buf *o, const char *s)
{
	out_raw(o, s, strlen(s));
}

static void out_fmt(struct out_buf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out_fmt(struct out_buf *o, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		out_raw(o, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static bool plain_char(unsigned char c)
{
	return isalnum(c) || c == '_' || c == '.' || c == '-' || c == '/' || c == '@';
}

/* %XX-escape everything but [A-Za-z0-9_.-/@]. */
static void out_escaped(struct out_buf *o, const char *s)
{
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (plain_char(*c))
			out_raw(o, (const char *)c, 1);
		else
			out_fmt(o, "%%%02X", *c);
	}
}

ssize_t pol_compile(const struct pol_policy *p, char *out, size_t cap)
{
	struct out_buf o = { out, cap, 0 };

	out_str(&o, COMPILED_MAGIC "\n");
	if (p->has_admin) {
		if (!p->admin.resolved)
			return -EINVAL;
		out_fmt(&o, "admin %lu ", (unsigned long)p->admin.gid);
		out_escaped(&o, p->admin.name);
		out_str(&o, "\n");
	}
	out_str(&o, "default ");
	out_str(&o, p->default_clearance == POL_NONE ? "none" : p->levels[p->default_clearance]);
	out_str(&o, "\n");
	for (unsigned i = 0; i < p->nroles; i++) {
		const struct pol_role *r = &p->roles[i];

		out_str(&o, "role ");
		out_str(&o, r->name);
		out_str(&o, " ");
		out_str(&o, p->levels[r->clearance]);
		for (unsigned j = 0; j < r->ngroups; j++) {
			if (!r->groups[j].resolved)
				return -EINVAL;
			out_fmt(&o, "%s%lu:", j ? "," : " ", (unsigned long)r->groups[j].gid);
			out_escaped(&o, r->groups[j].name);
		}
		out_str(&o, "\n");
	}
	for (unsigned i = 0; i < p->nfolders; i++) {
		const struct pol_folder *f = &p->folders[i];

		out_str(&o, "folder ");
		out_str(&o, f->level == POL_NONE ? "-" : p->levels[f->level]);
		out_str(&o, " ");
		out_escaped(&o, f->path);
		for (unsigned j = 0; j < f->ngrants; j++) {
			out_str(&o, " ");
			out_str(&o, p->roles[f->grants[j].role].name);
			out_str(&o, "=");
			out_str(&o, pol_rights_name(f->grants[j].rights));
		}
		out_str(&o, "\n");
	}
	/* Working hours and alert rules (pol_watch.c). */
	o.len += pol_watch_compile(p, out && o.len < cap ? out + o.len : NULL,
				   out && o.len < cap ? cap - o.len : 0);
	if (out && o.len > cap)
		return -ENOSPC;
	return (ssize_t)o.len;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Undo out_escaped into out (cap bytes with the NUL). Only the canonical
 * escaping is accepted: a plain character escaped is malformed. */
static int unescape(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '%') {
			int hi, lo;

			if (n - i < 3)
				return -EUCLEAN;
			hi = hexval(s[i + 1]);
			lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0)
				return -EUCLEAN;
			c = (unsigned char)(hi * 16 + lo);
			if (c == 0 || plain_char(c))
				return -EUCLEAN;
			i += 2;
		} else if (!plain_char(c)) {
			return -EUCLEAN;
		}
		if (o + 1 >= cap)
			return -EUCLEAN;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return (int)o;
}

/* Next space-separated field of a line. */
static bool field_next(const char **s, const char *end, const char **f, size_t *n)
{
	const char *e;

	if (*s >= end)
		return false;
	e = memchr(*s, ' ', (size_t)(end - *s));
	if (!e)
		e = end;
	*f = *s;
	*n = (size_t)(e - *s);
	*s = e < end ? e + 1 : end;
	return *n > 0;
}

static int gid_parse(const char *s, size_t n, gid_t *gid)
{
	unsigned long v = 0;

	if (n == 0 || n > 10)
		return -EUCLEAN;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EUCLEAN;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 0xfffffffeul || (n > 1 && s[0] == '0'))
		return -EUCLEAN;
	*gid = (gid_t)v;
	return 0;
}

/* "GID:NAME[,GID:NAME...]" */
static int compiled_groups(struct pol_role *r, const char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		const char *g = s + i, *colon;
		size_t gl = 0;
		struct pol_group *pg;

		while (i + gl < n && s[i + gl] != ',')
			gl++;
		i += gl + 1;
		if (i == n + 1 && gl == 0)
			return -EUCLEAN;
		colon = memchr(g, ':', gl);
		if (!colon || r->ngroups == POL_MAX_GROUPS)
			return -EUCLEAN;
		pg = &r->groups[r->ngroups];
		if (gid_parse(g, (size_t)(colon - g), &pg->gid) < 0)
			return -EUCLEAN;
		if (unescape(colon + 1, gl - (size_t)(colon - g) - 1, pg->name, sizeof(pg->name)) <= 0)
			return -EUCLEAN;
		pg->resolved = true;
		r->ngroups++;
	}
	if (n == 0 || s[n - 1] == ',')
		return -EUCLEAN;
	return 0;
}

static int compiled_line(struct pol_policy *p, const char *s, size_t n, unsigned line,
			 struct pol_error *err)
{
	const char *end = s + n, *f, *a;
	size_t fn, an;
	char path[POL_PATH_MAX + 1];
	int lv, r;

	if (n == 0 || s[0] == ' ' || s[n - 1] == ' ' || !field_next(&s, end, &f, &fn))
		return err_set(err, line, -EUCLEAN, "empty record or stray space");
	if (span_is(f, fn, "admin")) {
		if (p->has_admin || p->nroles || p->nfolders)
			return err_set(err, line, -EUCLEAN, "admin out of place");
		if (!field_next(&s, end, &a, &an) || gid_parse(a, an, &p->admin.gid) < 0 ||
		    !field_next(&s, end, &a, &an) ||
		    unescape(a, an, p->admin.name, sizeof(p->admin.name)) <= 0 || s < end)
			return err_set(err, line, -EUCLEAN, "bad admin record");
		p->admin.resolved = true;
		p->has_admin = true;
		p->admin_line = line;
		return 0;
	}
	if (span_is(f, fn, "default")) {
		if (!field_next(&s, end, &a, &an) || s < end)
			return err_set(err, line, -EUCLEAN, "bad default record");
		if (span_is(a, an, "none")) {
			p->default_clearance = POL_NONE;
			return 0;
		}
		lv = level_of(p, a, an);
		if (lv < 0)
			return err_set(err, line, -EUCLEAN, "unknown level");
		p->default_clearance = lv;
		return 0;
	}
	if (span_is(f, fn, "role")) {
		struct pol_role *role;

		if (p->nroles == POL_MAX_ROLES || p->nfolders)
			return err_set(err, line, -EUCLEAN, "role out of place");
		role = &p->roles[p->nroles];
		memset(role, 0, sizeof(*role));
		if (!field_next(&s, end, &a, &an) || !name_ok(a, an) || span_is(a, an, "level") ||
		    role_of(p, a, an) >= 0)
			return err_set(err, line, -EUCLEAN, "bad role name");
		memcpy(role->name, a, an);
		if (!field_next(&s, end, &a, &an) || (lv = level_of(p, a, an)) < 0)
			return err_set(err, line, -EUCLEAN, "bad role clearance");
		role->clearance = lv;
		if (!field_next(&s, end, &a, &an) || s < end || compiled_groups(role, a, an) < 0)
			return err_set(err, line, -EUCLEAN, "bad role groups");
		role->line = role->group_line = line;
		p->nroles++;
		return 0;
	}
	if (span_is(f, fn, "folder")) {
		struct pol_folder *fo;

		if (!field_next(&s, end, &a, &an))
			return err_set(err, line, -EUCLEAN, "bad folder record");
		lv = span_is(a, an, "-") ? POL_NONE : level_of(p, a, an);
		if (lv == -EINVAL)
			return err_set(err, line, -EUCLEAN, "bad folder level");
		if (!field_next(&s, end, &f, &fn))
			return err_set(err, line, -EUCLEAN, "bad folder path");
		r = unescape(f, fn, path, sizeof(path));
		if (r <= 0 || !path_ok(path, (size_t)r) || pol_folder_find(p, path) >= 0)
			return err_set(err, line, -EUCLEAN, "bad folder path");
		r = folder_add(p, path, (size_t)r, line);
		if (r < 0)
			return err_set(err, line, r == -E2BIG ? -EUCLEAN : r, "too many folders");
		fo = &p->folders[p->nfolders - 1];
		fo->level = lv;
		while (field_next(&s, end, &a, &an)) {
			const char *eq = memchr(a, '=', an);
			int role, rights;

			if (!eq)
				return err_set(err, line, -EUCLEAN, "bad grant");
			role = role_of(p, a, (size_t)(eq - a));
			rights = rights_of(eq + 1, an - (size_t)(eq - a) - 1);
			if (role < 0 || rights < 0 ||
			    grant_add(fo, (unsigned)role, (unsigned)rights, line) < 0)
				return err_set(err, line, -EUCLEAN, "bad grant");
		}
		if (s < end)
			return err_set(err, line, -EUCLEAN, "bad folder record");
		return 0;
	}
	{
		char why[POL_ERR_BYTES];

		r = pol_watch_compiled_line(p, f, fn, s, (size_t)(end - s), why, sizeof(why));
		if (r != -ENOENT)
			return r < 0 ? err_set(err, line, r, "%s", why) : 0;
	}
	return err_set(err, line, -EUCLEAN, "unknown record");
}

int pol_compiled_parse(const char *text, size_t len, const char *const *levels, unsigned nlevels,
		       struct pol_policy **out, struct pol_error *err)
{
	struct pol_policy *p;
	const char *s, *nl;
	unsigned line = 1;
	size_t n;
	int r = 0;

	*out = NULL;
	if (err) {
		err->line = 0;
		err->msg[0] = '\0';
	}
	if (len > POL_TEXT_MAX || len < sizeof(COMPILED_MAGIC) ||
	    memcmp(text, COMPILED_MAGIC "\n", sizeof(COMPILED_MAGIC)) != 0)
		return err_set(err, 1, -EUCLEAN, "not a compiled policy");
	if (text[len - 1] != '\n' || memchr(text, '\0', len))
		return err_set(err, 0, -EUCLEAN, "not a compiled policy");
	p = policy_new(levels, nlevels);
	if (!p)
		return err_set(err, 0, -EINVAL, "bad level list");
	s = text + sizeof(COMPILED_MAGIC);
	while (s < text + len) {
		line++;
		nl = memchr(s, '\n', (size_t)(text + len - s));
		n = (size_t)(nl - s);
		if (n > POL_LINE_MAX) {
			r = err_set(err, line, -EUCLEAN, "record too long");
			goto out;
		}
		r = compiled_line(p, s, n, line, err);
		if (r < 0)
			goto out;
		s = nl + 1;
	}
	*out = p;
	p = NULL;
out:
	pol_free(p);
	return r;
}
