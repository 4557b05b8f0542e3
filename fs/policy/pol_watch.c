/* pol_watch.c - alert rules, the on-alert hook and working hours of roles:
 * parse, check, compile, decide.
 *
 * Policy file (docs/policy.md "Alert rules" and "Working hours"):
 *
 *   [vault]          on-alert = /usr/local/sbin/page-security
 *   [role NAME]      hours = mon-fri 08:00-18:00, outside-hours = LEVEL|none
 *   [alert NAME]     when = bulk-read|off-hours|denials|integrity|process
 *                    files = N, bytes = N[K|M|G], count = N, window = N[s|m|h|d]
 *                    hours = DAYS HH:MM-HH:MM, level = LEVEL,
 *                    processes = NAME[, NAME...], action = log|freeze
 *
 * Compiled records (after the folders; fields as in pol_parse.c):
 *
 *   hours ROLE DAYS:FROM-TO LEVEL|none      (DAYS a bit mask, FROM/TO minutes)
 *   onalert PATH
 *   alert NAME when=KIND [files=N] [bytes=N] [count=N] [window=N]
 *              [hours=DAYS:FROM-TO] [level=LEVEL] [processes=A,B] [action=freeze]
 *
 * Invariants kept here:
 *  - Every value is bounded and checked before it is stored; names, process
 *    names and the hook path use a small alphabet, so the compiled form
 *    needs no escaping and a compiled record always parses back to the
 *    same rule.
 *  - A rule is complete once checked: its kind has what it needs (a
 *    threshold, hours, process names); a role's off-hours clearance is
 *    POL_NONE unless given, so a role with hours grants nothing outside
 *    them by default.
 *  - Decisions are pure: the caller passes the time.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pol_internal.h"

#define WINDOW_DEFAULT_SEC 60
#define WINDOW_MAX_SEC	   ((uint64_t)7 * 86400)

static const char *const day_names[7] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static bool span_eq(const char *s, size_t n, const char *w)
{
	return strlen(w) == n && memcmp(s, w, n) == 0;
}

static int fail(char *why, size_t cap, int rc, const char *msg)
{
	snprintf(why, cap, "%s", msg);
	return rc;
}

static void trim(const char **s, size_t *n)
{
	while (*n && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*n)--;
	}
	while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
		(*n)--;
}

static int level_of(const struct pol_policy *p, const char *s, size_t n)
{
	for (unsigned i = 0; i < p->nlevels; i++)
		if (span_eq(s, n, p->levels[i]))
			return (int)i;
	return -EINVAL;
}

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '.' || c == '+';
}

static bool word_ok(const char *s, size_t n, size_t max)
{
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!name_char(s[i]))
			return false;
	return true;
}

/* A decimal number with an optional unit suffix (mult[] for each letter of
 * units). @return 0 or -EINVAL. */
static int number_parse(const char *s, size_t n, const char *units, const uint64_t *mult,
			uint64_t max, uint64_t *out)
{
	uint64_t v = 0, m = 1;
	size_t i = 0;

	while (i < n && s[i] >= '0' && s[i] <= '9') {
		if (v > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
		i++;
	}
	if (i == 0)
		return -EINVAL;
	if (i < n) {
		const char *u = units ? strchr(units, s[i]) : NULL;

		if (!u || i + 1 != n || s[i] == '\0')
			return -EINVAL;
		m = mult[u - units];
	}
	if (v > max / m)
		return -EINVAL;
	*out = v * m;
	return 0;
}

/* "HH:MM" */
static int clock_parse(const char *s, size_t n, uint16_t *min)
{
	unsigned h, m;

	if (n != 5 || s[2] != ':' || s[0] < '0' || s[0] > '2' || s[1] < '0' || s[1] > '9' ||
	    s[3] < '0' || s[3] > '5' || s[4] < '0' || s[4] > '9')
		return -EINVAL;
	h = (unsigned)(s[0] - '0') * 10 + (unsigned)(s[1] - '0');
	m = (unsigned)(s[3] - '0') * 10 + (unsigned)(s[4] - '0');
	if (h > 24 || (h == 24 && m))
		return -EINVAL;
	*min = (uint16_t)(h * 60 + m);
	return 0;
}

static int day_of(const char *s, size_t n)
{
	for (int d = 0; d < 7; d++)
		if (span_eq(s, n, day_names[d]))
			return d;
	return -1;
}

/* "mon-fri", "sat,sun", "daily", "weekdays", "weekends" */
static int days_parse(const char *s, size_t n, uint8_t *days)
{
	size_t i = 0;

	*days = 0;
	if (span_eq(s, n, "daily"))
		return *days = 0x7f, 0;
	if (span_eq(s, n, "weekdays"))
		return *days = 0x3e, 0;
	if (span_eq(s, n, "weekends"))
		return *days = 0x41, 0;
	while (i < n) {
		size_t j = i;
		const char *dash;
		int a, b;

		while (j < n && s[j] != ',')
			j++;
		dash = memchr(s + i, '-', j - i);
		a = day_of(s + i, (size_t)((dash ? dash : s + j) - (s + i)));
		b = dash ? day_of(dash + 1, (size_t)(s + j - dash - 1)) : a;
		if (a < 0 || b < 0)
			return -EINVAL;
		for (int d = a;; d = (d + 1) % 7) {
			*days |= (uint8_t)(1u << d);
			if (d == b)
				break;
		}
		i = j + 1;
		if (j < n && j + 1 == n)
			return -EINVAL; /* a trailing comma */
	}
	return *days ? 0 : -EINVAL;
}

/* "mon-fri 08:00-18:00" or the compiled "62:480-1080". */
static int hours_parse(const char *s, size_t n, struct pol_hours *h)
{
	const char *sp = memchr(s, ' ', n), *dash;
	uint64_t d, f, t;
	const char *colon;

	if (!sp) {
		/* compiled */
		colon = memchr(s, ':', n);
		dash = colon ? memchr(colon, '-', (size_t)(s + n - colon)) : NULL;
		if (!dash || number_parse(s, (size_t)(colon - s), NULL, NULL, 0x7f, &d) ||
		    number_parse(colon + 1, (size_t)(dash - colon - 1), NULL, NULL, 1440, &f) ||
		    number_parse(dash + 1, (size_t)(s + n - dash - 1), NULL, NULL, 1440, &t) ||
		    !d || f == t)
			return -EINVAL;
		h->days = (uint8_t)d;
		h->from_min = (uint16_t)f;
		h->to_min = (uint16_t)t;
		return 0;
	}
	if (days_parse(s, (size_t)(sp - s), &h->days) < 0)
		return -EINVAL;
	{
		const char *r = sp + 1;
		size_t m = (size_t)(s + n - r);

		trim(&r, &m);
		if (m != 11 || r[5] != '-' || clock_parse(r, 5, &h->from_min) < 0 ||
		    clock_parse(r + 6, 5, &h->to_min) < 0 || h->from_min == h->to_min)
			return -EINVAL;
	}
	return 0;
}

bool pol_hours_contain(const struct pol_hours *h, const struct pol_when *w)
{
	int prev = (w->wday + 6) % 7;

	if (!h->days || w->wday < 0 || w->wday > 6)
		return false;
	if (h->from_min < h->to_min)
		return (h->days & (1u << w->wday)) && w->minute >= h->from_min &&
		       w->minute < h->to_min;
	/* Past midnight: the evening of a listed day, or the small hours after it. */
	return ((h->days & (1u << w->wday)) && w->minute >= h->from_min) ||
	       ((h->days & (1u << prev)) && w->minute < h->to_min);
}

void pol_hours_format(const struct pol_hours *h, char *out, size_t cap)
{
	size_t len = 0;

	out[0] = '\0';
	if (h->days == 0x7f)
		len = (size_t)snprintf(out, cap, "daily");
	for (int d = 0; d < 7 && h->days != 0x7f; d++) {
		int e = d;

		if (!(h->days & (1u << d)))
			continue;
		while (e + 1 < 7 && (h->days & (1u << (e + 1))))
			e++;
		len += (size_t)snprintf(out + len, len < cap ? cap - len : 0, "%s%s%s%s",
					len ? "," : "", day_names[d], e > d ? "-" : "",
					e > d ? day_names[e] : "");
		d = e;
	}
	if (len < cap)
		snprintf(out + len, cap - len, " %02u:%02u-%02u:%02u", h->from_min / 60u,
			 h->from_min % 60u, h->to_min / 60u, h->to_min % 60u);
}

const char *pol_alert_kind_name(enum pol_alert_kind k)
{
	switch (k) {
	case POL_ALERT_BULK_READ:
		return "bulk-read";
	case POL_ALERT_OFF_HOURS:
		return "off-hours";
	case POL_ALERT_DENIALS:
		return "denials";
	case POL_ALERT_INTEGRITY:
		return "integrity";
	case POL_ALERT_PROCESS:
		return "process";
	}
	return "?";
}

/* ---- settings ---- */

int pol_vault_setting(struct pol_policy *p, const char *k, size_t kn, const char *v, size_t vn,
		      char *why, size_t cap)
{
	if (!span_eq(k, kn, "on-alert"))
		return -ENOENT;
	if (p->on_alert[0])
		return fail(why, cap, -EINVAL, "on-alert given twice");
	if (vn < 2 || v[0] != '/' || vn > POL_PATH_MAX)
		return fail(why, cap, -EINVAL, "on-alert must be an absolute path");
	for (size_t i = 0; i < vn; i++)
		if (!name_char(v[i]) && v[i] != '/')
			return fail(why, cap, -EINVAL,
				    "on-alert must be a path of letters, digits and / . _ + -");
	memcpy(p->on_alert, v, vn);
	p->on_alert[vn] = '\0';
	return 0;
}

int pol_role_setting(const struct pol_policy *p, struct pol_role *r, const char *k, size_t kn,
		     const char *v, size_t vn, char *why, size_t cap)
{
	int lv;

	if (span_eq(k, kn, "hours")) {
		if (r->hours.days)
			return fail(why, cap, -EINVAL, "hours given twice");
		if (hours_parse(v, vn, &r->hours) < 0)
			return fail(why, cap, -EINVAL,
				    "hours must look like \"mon-fri 08:00-18:00\"");
		if (!r->off_hours_set)
			r->off_hours_clearance = POL_NONE;
		return 0;
	}
	if (span_eq(k, kn, "outside-hours")) {
		if (r->off_hours_set)
			return fail(why, cap, -EINVAL, "outside-hours given twice");
		lv = span_eq(v, vn, "none") ? POL_NONE : level_of(p, v, vn);
		if (lv == -EINVAL)
			return fail(why, cap, -EINVAL, "outside-hours: unknown level");
		r->off_hours_clearance = lv;
		r->off_hours_set = true;
		return 0;
	}
	return -ENOENT;
}

int pol_alert_add(struct pol_policy *p, const char *name, size_t n, unsigned line, char *why,
		  size_t cap)
{
	struct pol_alert *a;

	if (!word_ok(name, n, POL_NAME_MAX))
		return fail(why, cap, -EINVAL, "bad alert name");
	for (unsigned i = 0; i < p->nalerts; i++)
		if (span_eq(name, n, p->alerts[i].name))
			return fail(why, cap, -EINVAL, "alert defined twice");
	if (p->nalerts == POL_MAX_ALERTS)
		return fail(why, cap, -EINVAL, "more than 32 alerts");
	a = &p->alerts[p->nalerts];
	memset(a, 0, sizeof(*a));
	memcpy(a->name, name, n);
	a->level = POL_NONE;
	a->line = line;
	return (int)p->nalerts++;
}

static const uint64_t byte_mult[] = {1024ull, 1024ull * 1024, 1024ull * 1024 * 1024,
				     1024ull * 1024 * 1024 * 1024};
static const uint64_t time_mult[] = {1, 60, 3600, 86400};

int pol_alert_setting(const struct pol_policy *p, struct pol_alert *a, const char *k, size_t kn,
		      const char *v, size_t vn, char *why, size_t cap)
{
	uint64_t n;
	int lv;

	if (span_eq(k, kn, "when")) {
		for (int kind = POL_ALERT_BULK_READ; kind <= POL_ALERT_PROCESS; kind++)
			if (span_eq(v, vn, pol_alert_kind_name((enum pol_alert_kind)kind))) {
				if (a->kind)
					return fail(why, cap, -EINVAL, "when given twice");
				a->kind = (enum pol_alert_kind)kind;
				return 0;
			}
		return fail(why, cap, -EINVAL,
			    "when must be bulk-read, off-hours, denials, integrity or process");
	}
	if (span_eq(k, kn, "files") || span_eq(k, kn, "count")) {
		if (number_parse(v, vn, NULL, NULL, 1000000000ull, &n) < 0 || n == 0)
			return fail(why, cap, -EINVAL, "expected a number above 0");
		*(k[0] == 'f' ? &a->files : &a->count) = n;
		return 0;
	}
	if (span_eq(k, kn, "bytes")) {
		if (number_parse(v, vn, "KMGT", byte_mult, UINT64_MAX / 2, &n) < 0 || n == 0)
			return fail(why, cap, -EINVAL, "bytes must be a number, with K, M, G or T");
		a->bytes = n;
		return 0;
	}
	if (span_eq(k, kn, "window")) {
		if (number_parse(v, vn, "smhd", time_mult, WINDOW_MAX_SEC, &n) < 0 || n == 0)
			return fail(why, cap, -EINVAL,
				    "window must be a duration (30s, 10m, 1h, 1d) of at most 7d");
		a->window_sec = (uint32_t)n;
		return 0;
	}
	if (span_eq(k, kn, "hours")) {
		if (hours_parse(v, vn, &a->hours) < 0)
			return fail(why, cap, -EINVAL,
				    "hours must look like \"mon-fri 08:00-18:00\"");
		return 0;
	}
	if (span_eq(k, kn, "level")) {
		lv = level_of(p, v, vn);
		if (lv < 0)
			return fail(why, cap, -EINVAL, "unknown level");
		a->level = lv;
		return 0;
	}
	if (span_eq(k, kn, "processes")) {
		size_t i = 0;

		if (a->nprocs)
			return fail(why, cap, -EINVAL, "processes given twice");
		while (i < vn) {
			const char *s = v + i;
			size_t m = 0;

			while (i + m < vn && v[i + m] != ',')
				m++;
			i += m + 1;
			trim(&s, &m);
			if (!word_ok(s, m, POL_PROC_MAX) || a->nprocs == POL_MAX_PROCS)
				return fail(why, cap, -EINVAL,
					    "processes: up to 16 names of at most 15 characters");
			memcpy(a->procs[a->nprocs], s, m);
			a->procs[a->nprocs++][m] = '\0';
		}
		return 0;
	}
	if (span_eq(k, kn, "action")) {
		if (span_eq(v, vn, "freeze"))
			a->freeze = true;
		else if (!span_eq(v, vn, "log"))
			return fail(why, cap, -EINVAL, "action must be log or freeze");
		return 0;
	}
	return fail(why, cap, -EINVAL, "unknown setting in [alert]");
}

int pol_watch_check(const struct pol_policy *p, unsigned *line, char *why, size_t cap)
{
	for (unsigned i = 0; i < p->nroles; i++) {
		if (p->roles[i].off_hours_set && !p->roles[i].hours.days) {
			*line = p->roles[i].line;
			snprintf(why, cap, "role %s: outside-hours without hours",
				 p->roles[i].name);
			return -EINVAL;
		}
	}
	for (unsigned i = 0; i < p->nalerts; i++) {
		const struct pol_alert *a = &p->alerts[i];
		const char *miss = NULL;

		if (!a->kind)
			miss = "no when";
		else if (a->kind == POL_ALERT_BULK_READ && !a->files && !a->bytes)
			miss = "bulk-read needs files or bytes";
		else if (a->kind == POL_ALERT_DENIALS && !a->count)
			miss = "denials needs count";
		else if (a->kind == POL_ALERT_OFF_HOURS && !a->hours.days)
			miss = "off-hours needs hours";
		else if (a->kind == POL_ALERT_PROCESS && !a->nprocs)
			miss = "process needs processes";
		if (miss) {
			*line = a->line;
			snprintf(why, cap, "alert %s: %s", a->name, miss);
			return -EINVAL;
		}
	}
	return 0;
}

/* ---- the compiled form ---- */

struct wbuf {
	char *out;
	size_t cap, len;
};

static void wfmt(struct wbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void wfmt(struct wbuf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n <= 0)
		return;
	/* As pol_parse.c's out_raw: bytes only where they fit, no NUL. */
	if (b->out && b->len + (size_t)n <= b->cap)
		memcpy(b->out + b->len, tmp, (size_t)n);
	b->len += (size_t)n;
}

size_t pol_watch_compile(const struct pol_policy *p, char *out, size_t cap)
{
	struct wbuf b = {out, cap, 0};

	for (unsigned i = 0; i < p->nroles; i++) {
		const struct pol_role *r = &p->roles[i];

		if (!r->hours.days)
			continue;
		wfmt(&b, "hours %s %u:%u-%u %s\n", r->name, r->hours.days, r->hours.from_min,
		     r->hours.to_min,
		     r->off_hours_clearance == POL_NONE ? "none"
							: p->levels[r->off_hours_clearance]);
	}
	if (p->on_alert[0])
		wfmt(&b, "onalert %s\n", p->on_alert);
	for (unsigned i = 0; i < p->nalerts; i++) {
		const struct pol_alert *a = &p->alerts[i];

		wfmt(&b, "alert %s when=%s", a->name, pol_alert_kind_name(a->kind));
		if (a->files)
			wfmt(&b, " files=%llu", (unsigned long long)a->files);
		if (a->bytes)
			wfmt(&b, " bytes=%llu", (unsigned long long)a->bytes);
		if (a->count)
			wfmt(&b, " count=%llu", (unsigned long long)a->count);
		if (a->window_sec)
			wfmt(&b, " window=%u", a->window_sec);
		if (a->hours.days)
			wfmt(&b, " hours=%u:%u-%u", a->hours.days, a->hours.from_min,
			     a->hours.to_min);
		if (a->level != POL_NONE)
			wfmt(&b, " level=%s", p->levels[a->level]);
		for (unsigned j = 0; j < a->nprocs; j++)
			wfmt(&b, "%s%s", j ? "," : " processes=", a->procs[j]);
		if (a->freeze)
			wfmt(&b, " action=freeze");
		wfmt(&b, "\n");
	}
	return b.len;
}

/* Next space-separated field of [*s, end). */
static bool field(const char **s, const char *end, const char **f, size_t *n)
{
	const char *sp;

	if (*s >= end)
		return false;
	sp = memchr(*s, ' ', (size_t)(end - *s));
	*f = *s;
	*n = (size_t)((sp ? sp : end) - *s);
	*s = sp ? sp + 1 : end;
	return *n > 0;
}

int pol_watch_compiled_line(struct pol_policy *p, const char *f, size_t fn, const char *rest,
			    size_t rn, char *why, size_t cap)
{
	const char *s = rest, *end = rest + rn, *a;
	size_t an;
	int r;

	if (span_eq(f, fn, "hours")) {
		struct pol_role *role = NULL;
		int lv;

		if (!field(&s, end, &a, &an))
			return fail(why, cap, -EUCLEAN, "bad hours record");
		for (unsigned i = 0; i < p->nroles; i++)
			if (span_eq(a, an, p->roles[i].name))
				role = &p->roles[i];
		if (!role || role->hours.days || !field(&s, end, &a, &an) ||
		    hours_parse(a, an, &role->hours) < 0 || !field(&s, end, &a, &an) || s < end)
			return fail(why, cap, -EUCLEAN, "bad hours record");
		lv = span_eq(a, an, "none") ? POL_NONE : level_of(p, a, an);
		if (lv == -EINVAL)
			return fail(why, cap, -EUCLEAN, "bad hours record");
		role->off_hours_clearance = lv;
		role->off_hours_set = true;
		return 0;
	}
	if (span_eq(f, fn, "onalert")) {
		if (!field(&s, end, &a, &an) || s < end ||
		    pol_vault_setting(p, "on-alert", 8, a, an, why, cap) < 0)
			return fail(why, cap, -EUCLEAN, "bad onalert record");
		return 0;
	}
	if (span_eq(f, fn, "alert")) {
		struct pol_alert *al;
		unsigned line = 0;

		if (!field(&s, end, &a, &an))
			return fail(why, cap, -EUCLEAN, "bad alert record");
		r = pol_alert_add(p, a, an, 0, why, cap);
		if (r < 0)
			return fail(why, cap, -EUCLEAN, "bad alert record");
		al = &p->alerts[r];
		while (field(&s, end, &a, &an)) {
			const char *eq = memchr(a, '=', an);

			if (!eq || pol_alert_setting(p, al, a, (size_t)(eq - a), eq + 1,
						     an - (size_t)(eq - a) - 1, why, cap) < 0)
				return fail(why, cap, -EUCLEAN, "bad alert record");
		}
		if (s < end || pol_watch_check(p, &line, why, cap) < 0)
			return fail(why, cap, -EUCLEAN, "bad alert record");
		return 0;
	}
	return -ENOENT;
}

/* ---- decisions ---- */

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

int pol_clearance_at(const struct pol_policy *p, const struct pol_caller *c, unsigned top,
		     const struct pol_when *when)
{
	int best = POL_NONE;
	bool any = false;

	if (!p || c->uid == 0)
		return (int)top;
	for (unsigned i = 0; i < p->nroles; i++) {
		const struct pol_role *r = &p->roles[i];
		int cl = r->clearance;

		if (!in_role(r, c))
			continue;
		any = true;
		if (when && r->hours.days && !pol_hours_contain(&r->hours, when))
			cl = r->off_hours_clearance;
		if (cl > best)
			best = cl;
	}
	if (!any)
		best = p->default_clearance;
	return best > (int)top ? (int)top : best;
}

bool pol_may_open_at(const struct pol_policy *p, const struct pol_caller *c, unsigned top,
		     unsigned level, const struct pol_when *when)
{
	int cl = pol_clearance_at(p, c, top, when);

	return cl != POL_NONE && level <= (unsigned)cl;
}
