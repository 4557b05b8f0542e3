/* cmd_audit.c - `strongroom audit show|verify|follow STORE`.
 *
 * Reads STORE/audit with the admin secret: the audit secret key opens the
 * segment keys, the audit chain key checks every link (docs/audit.md).
 * The trail is the writer's chain (STORE/audit) and one chain per read-only
 * mount (STORE/audit/ro-ID, its key derived from the chain key). show
 * merges every chain by time, verify judges each chain and the writer's
 * list of them, follow streams new records of every chain by polling.
 *
 * Invariants: nothing here writes to the store; a record is printed only
 * after the reader verified its link, so a broken trail prints the records
 * before the break and then one error line (exit EXIT_DAMAGE); strings from
 * the trail reach a terminal only with control characters replaced.
 */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "strongroom/audit.h"
#include "cli.h"

static void audit_help(void)
{
	fputs("NAME\n"
	      "  strongroom audit - read and check a vault's audit trail\n"
	      "\n"
	      "SYNOPSIS\n"
	      "  strongroom audit show STORE [FILTERS] [--json] [SECRET]\n"
	      "  strongroom audit verify STORE [SECRET]\n"
	      "  strongroom audit follow STORE [FILTERS] [--json] [SECRET]\n"
	      "\n"
	      "  SECRET opens an admin keyslot: --passphrase-file F | --extpass CMD |\n"
	      "  --recovery-key-file F, else it is asked on the terminal.\n"
	      "\n"
	      "FILTERS\n"
	      "  --since T, --until T  records at or after / before T. T is UTC:\n"
	      "                        2024-05-01, 2024-05-01T13:30[:00[.123456]][Z],\n"
	      "                        @UNIXSECONDS, or an age such as 90s, 30m, 12h, 7d\n"
	      "  --user U              user name or numeric uid\n"
	      "  --path GLOB           either path matches GLOB (fnmatch; * crosses /)\n"
	      "  --level L             level name\n"
	      "  --event E[,E...]      open read read-summary create write truncate rename\n"
	      "                        unlink link mkdir rmdir setattr level acl denial\n"
	      "                        integrity recovery mount unmount key-use alert seal\n"
	      "                        chains (seal records are shown only when asked for)\n"
	      "\n"
	      "DESCRIPTION\n"
	      "  show    prints the records of the writer's trail and of every read-only\n"
	      "          mount's chain (STORE/audit/ro-ID), merged by time: a table, or\n"
	      "          JSON Lines with --json (a read-only chain's records carry\n"
	      "          \"chain\"). Times are ISO-8601 UTC with microseconds.\n"
	      "  verify  checks every segment header, link, record number, chain value\n"
	      "          and tag of every chain, one line each, and that every read-only\n"
	      "          chain the writer's trail listed is still there. Intact: exit 0\n"
	      "          (an unsealed newest segment means the driver is running or\n"
	      "          crashed; it is reported, still exit 0). Broken: one line per\n"
	      "          broken chain naming the file, the record and what is wrong,\n"
	      "          exit 9.\n"
	      "  follow  prints records as they are written (polls once a second) until\n"
	      "          interrupted; starts with new records unless --since is given.\n"
	      "\n",
	      stdout);
	cli_print_exit_codes(stdout);
}

struct audit_filter {
	bool have_since, have_until;
	uint64_t since_us, until_us;
	const char *user;
	const char *path;
	const char *level;
	uint64_t events; /* bit per type; 0 = all but seals */
	bool json;
};

/* ---- parsing ------------------------------------------------------------- */

/* UTC time or age (docs in the help). @return 0 or -EINVAL. */
static int audit_time_parse(const char *s, uint64_t *out)
{
	struct tm tm;
	unsigned long long v;
	char unit, *end;
	int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
	long frac = 0;
	uint64_t now = 0;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	if (strcmp(s, "now") == 0) {
		*out = now;
		return 0;
	}
	if (s[0] == '@') {
		errno = 0;
		v = strtoull(s + 1, &end, 10);
		if (errno || end == s + 1 || *end)
			return -EINVAL;
		*out = (uint64_t)v * 1000000u;
		return 0;
	}
	if (sscanf(s, "%llu%c%n", &v, &unit, &n) == 2 && s[n] == '\0' && strchr("smhd", unit) &&
	    s[0] >= '0' && s[0] <= '9') {
		uint64_t mul = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 86400;
		uint64_t age = (uint64_t)v * mul * 1000000u;
		*out = age > now ? 0 : now - age;
		return 0;
	}
	n = 0;
	if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
		return -EINVAL;
	s += n;
	if (*s == 'T' || *s == ' ') {
		n = 0;
		if (sscanf(s + 1, "%2d:%2d%n", &h, &mi, &n) != 2 || n != 5)
			return -EINVAL;
		s += 1 + n;
		if (*s == ':') {
			n = 0;
			if (sscanf(s + 1, "%2d%n", &sec, &n) != 1 || n != 2)
				return -EINVAL;
			s += 1 + n;
			if (*s == '.') {
				int digits = 0;
				for (s++; *s >= '0' && *s <= '9'; s++, digits++)
					if (digits < 6)
						frac = frac * 10 + (*s - '0');
				if (!digits)
					return -EINVAL;
				for (; digits < 6; digits++)
					frac *= 10;
			}
		}
	}
	if (*s == 'Z')
		s++;
	if (*s || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1970)
		return -EINVAL;
	memset(&tm, 0, sizeof tm);
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	time_t t = timegm(&tm);
	if (t < 0)
		return -EINVAL;
	*out = (uint64_t)t * 1000000u + (uint64_t)frac;
	return 0;
}

static int audit_events_parse(const char *list, uint64_t *mask)
{
	char buf[512], *save = NULL, *tok;
	snprintf(buf, sizeof buf, "%s", list);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int t = audit_event_parse(tok);
		if (t < 0) {
			cli_err(tok, "not an audit event (see strongroom audit --help)");
			return -EINVAL;
		}
		*mask |= 1ull << t;
	}
	return 0;
}

/* ---- matching and printing ----------------------------------------------- */

static bool audit_filter_match(const struct audit_filter *f, const struct audit_entry *e)
{
	if (f->events ? !(f->events & (1ull << e->type)) : e->type == AUDIT_EV_SEAL)
		return false;
	if (f->have_since && e->time_us < f->since_us)
		return false;
	if (f->have_until && e->time_us >= f->until_us)
		return false;
	if (f->user && strcmp(e->user, f->user) != 0) {
		char *end;
		unsigned long uid = strtoul(f->user, &end, 10);
		if (*end || end == f->user || uid != e->uid)
			return false;
	}
	if (f->level && strcmp(e->level, f->level) != 0)
		return false;
	if (f->path && fnmatch(f->path, e->path, 0) != 0 &&
	    (!e->path2[0] || fnmatch(f->path, e->path2, 0) != 0))
		return false;
	return true;
}

static void audit_time_format(uint64_t us, char out[32])
{
	time_t t = (time_t)(us / 1000000u);
	struct tm tm;
	char day[24];
	gmtime_r(&t, &tm);
	strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, 32, "%.19s.%06uZ", day, (unsigned)(us % 1000000u));
}

static const char *errno_name(int e)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
	const char *n = strerrorname_np(e);
	if (n)
		return n;
#endif
	static __thread char buf[16];
	snprintf(buf, sizeof buf, "E%d", e);
	return buf;
}

static bool has_access(const struct audit_entry *e)
{
	return e->type == AUDIT_EV_OPEN || e->type == AUDIT_EV_CREATE;
}

static const char *access_name(uint32_t flags)
{
	switch (flags & O_ACCMODE) {
	case O_RDONLY:
		return "r";
	case O_WRONLY:
		return "w";
	default:
		return "rw";
	}
}

/* JSON string: escapes quotes, backslashes and controls; bytes that are
 * not UTF-8 become U+FFFD, so every line is valid JSON. */
static void json_str(FILE *out, const char *key, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	fprintf(out, ",\"%s\":\"", key);
	while (*p) {
		unsigned c = *p;
		int len = c < 0x80	       ? 1
			  : (c & 0xe0) == 0xc0 ? 2
			  : (c & 0xf0) == 0xe0 ? 3
			  : (c & 0xf8) == 0xf0 ? 4
					       : 0;
		bool ok = len > 0 && !(len == 2 && c < 0xc2) && !(c > 0xf4);
		for (int i = 1; ok && i < len; i++)
			if ((p[i] & 0xc0) != 0x80)
				ok = false;
		if (!ok) {
			fputs("\\ufffd", out);
			p++;
			continue;
		}
		if (len > 1) {
			fwrite(p, 1, (size_t)len, out);
			p += len;
			continue;
		}
		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(out, "\\u%04x", c);
		else
			fputc((int)c, out);
		p++;
	}
	fputc('"', out);
}

static void audit_print_json(FILE *out, const struct audit_entry *e, const char *chain)
{
	char when[32];
	audit_time_format(e->time_us, when);
	fprintf(out, "{\"time\":\"%s\"", when);
	json_str(out, "event", audit_event_name(e->type));
	fprintf(out, ",\"uid\":%u", e->uid);
	json_str(out, "user", e->user);
	fprintf(out, ",\"gid\":%u,\"pid\":%u", e->gid, e->pid);
	json_str(out, "process", e->process);
	json_str(out, "path", e->path);
	if (e->path2[0])
		json_str(out, "path2", e->path2);
	json_str(out, "level", e->level);
	fprintf(out, ",\"outcome\":%d", e->outcome);
	if (e->outcome)
		json_str(out, "error", errno_name(e->outcome));
	if (has_access(e))
		fprintf(out, ",\"access\":\"%s\",\"flags\":%u", access_name(e->mode), e->mode);
	else if (e->mode)
		fprintf(out, ",\"mode\":%u", e->mode);
	fprintf(out, ",\"bytes\":%llu", (unsigned long long)e->bytes);
	if (e->nranges) {
		fputs(",\"ranges\":[", out);
		for (unsigned i = 0; i < e->nranges; i++)
			fprintf(out, "%s[%llu,%llu]", i ? "," : "",
				(unsigned long long)e->ranges[i].off,
				(unsigned long long)e->ranges[i].len);
		fputc(']', out);
	}
	if (e->detail[0])
		json_str(out, "detail", e->detail);
	if (e->flags & AUDIT_F_TRUNCATED)
		fputs(",\"truncated\":true", out);
	if (e->flags & AUDIT_F_RANGES_MERGED)
		fputs(",\"ranges_merged\":true", out);
	if (chain[0])
		json_str(out, "chain", chain);
	fprintf(out, ",\"segment\":%llu,\"record\":%llu}\n", (unsigned long long)e->segment,
		(unsigned long long)e->record);
}

/* Copy for a terminal: control characters become '?'. */
static const char *tty_safe(const char *s, char *buf, size_t cap)
{
	size_t i;
	for (i = 0; s[i] && i + 1 < cap; i++)
		buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
	buf[i] = '\0';
	return buf;
}

static void audit_print_header(FILE *out)
{
	fprintf(out, "%-27s %-12s %-12s %7s %-15s %-12s %-7s %10s  %s\n", "TIME", "EVENT", "USER",
		"PID", "PROCESS", "LEVEL", "RESULT", "BYTES", "PATH");
}

static void audit_print_row(FILE *out, const struct audit_entry *e)
{
	static char p1[AUDIT_PATH_MAX + 1], p2[AUDIT_PATH_MAX + 1], det[AUDIT_DETAIL_MAX + 1];
	char when[32], user[AUDIT_NAME_MAX + 1], proc[AUDIT_NAME_MAX + 1], lvl[AUDIT_LEVEL_MAX + 1];
	char ev[24], uid[16];

	audit_time_format(e->time_us, when);
	if (has_access(e))
		snprintf(ev, sizeof ev, "%s(%s)", audit_event_name(e->type), access_name(e->mode));
	else
		snprintf(ev, sizeof ev, "%s", audit_event_name(e->type));
	snprintf(uid, sizeof uid, "%u", e->uid);
	fprintf(out, "%-27s %-12s %-12s %7u %-15s %-12s %-7s %10llu  %s", when, ev,
		e->user[0] ? tty_safe(e->user, user, sizeof user) : uid, e->pid,
		e->process[0] ? tty_safe(e->process, proc, sizeof proc) : "-",
		e->level[0] ? tty_safe(e->level, lvl, sizeof lvl) : "-",
		e->outcome ? errno_name(e->outcome) : "ok", (unsigned long long)e->bytes,
		e->path[0] ? tty_safe(e->path, p1, sizeof p1) : "-");
	if (e->path2[0])
		fprintf(out, " -> %s", tty_safe(e->path2, p2, sizeof p2));
	if (e->detail[0])
		fprintf(out, "  (%s)", tty_safe(e->detail, det, sizeof det));
	fputc('\n', out);
}

/* ---- the commands -------------------------------------------------------- */

struct audit_keys {
	char dir[4096];
	const struct kr_config *cfg;
	const unsigned char *sk;
	const unsigned char *chain_key;
};

/* One chain of the trail: the writer's (STORE/audit, name "") or a
 * read-only mount's (STORE/audit/ro-ID, with its derived chain key). */
struct audit_src {
	char name[AUDIT_CHAIN_NAME_BYTES];
	char dir[4200];
	unsigned char *key; /* sodium_malloc; the writer's chain key copied */
	uint64_t segments;  /* highest segment number listed (ro chains) */
	struct audit_reader *r;
	struct audit_entry *e; /* the next record, when have */
	bool have, done, printing;
};

struct audit_srcs {
	struct audit_src *v;
	size_t n;
};

static void audit_srcs_free(struct audit_srcs *s)
{
	for (size_t i = 0; i < s->n; i++) {
		audit_reader_close(s->v[i].r);
		if (s->v[i].key) {
			sodium_memzero(s->v[i].key, AUDIT_CHAIN_KEY_BYTES);
			sodium_free(s->v[i].key);
		}
		if (s->v[i].e) {
			sodium_memzero(s->v[i].e, sizeof *s->v[i].e);
			free(s->v[i].e);
		}
	}
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

/* Add one chain (name "" = the writer's). @return 0 or -errno. */
static int audit_src_add(const struct audit_keys *k, struct audit_srcs *s, const char *name,
			 const uint8_t *id, uint64_t segments)
{
	struct audit_src *nv = realloc(s->v, (s->n + 1) * sizeof *nv), *x;

	if (!nv)
		return -ENOMEM;
	s->v = nv;
	x = &s->v[s->n];
	memset(x, 0, sizeof *x);
	snprintf(x->name, sizeof x->name, "%s", name);
	snprintf(x->dir, sizeof x->dir, "%s%s%s", k->dir, name[0] ? "/" : "", name);
	x->segments = segments;
	x->key = sodium_malloc(AUDIT_CHAIN_KEY_BYTES);
	x->e = malloc(sizeof *x->e);
	s->n++;
	if (!x->key || !x->e)
		return -ENOMEM;
	if (id)
		audit_chain_key_derive(k->chain_key, id, x->key);
	else
		memcpy(x->key, k->chain_key, AUDIT_CHAIN_KEY_BYTES);
	return 0;
}

static bool audit_src_known(const struct audit_srcs *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i].name, name) == 0)
			return true;
	return false;
}

/* The read-only chains in STORE/audit not yet in s. @return 0 or -errno. */
static int audit_srcs_scan(const struct audit_keys *k, struct audit_srcs *s)
{
	struct audit_chain_ent *ch = NULL;
	ssize_t n = audit_chain_list(k->dir, &ch);
	int rc = 0;

	if (n < 0)
		return (int)n;
	for (ssize_t i = 0; i < n && rc == 0; i++)
		if (!audit_src_known(s, ch[i].name))
			rc = audit_src_add(k, s, ch[i].name, ch[i].id, ch[i].segments);
	free(ch);
	return rc;
}

/* Unlock with an admin secret and find the trail. */
static int audit_unlock(const char *store, const struct cli_secret_opts *so, struct kr_keyring **kr,
			struct audit_keys *k)
{
	int rc = cli_unlock(store, so, kr);
	if (rc != EXIT_OK)
		return rc;
	k->sk = kr_audit_sk(*kr);
	if (!kr_keyring_is_admin(*kr) || !k->sk) {
		cli_err(store,
			"keyslot %d is not an admin keyslot: only an admin secret can read "
			"the audit trail",
			kr_keyring_slot(*kr));
		return EXIT_FAIL;
	}
	k->cfg = kr_keyring_config(*kr);
	k->chain_key = kr_vault_subkey(*kr, KR_VSUB_AUDIT);
	if (!k->chain_key) {
		cli_err(store, "the keyring holds no audit chain key");
		return EXIT_FAIL;
	}
	if ((size_t)snprintf(k->dir, sizeof k->dir, "%s/audit", store) >= sizeof k->dir) {
		cli_err(store, "path too long");
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

static int audit_open_err(const char *dir, int rc)
{
	if (rc == -ENOENT) {
		cli_err(dir, "missing: the audit trail was removed");
		return EXIT_DAMAGE;
	}
	if (rc == -EKEYREJECTED) {
		cli_err(dir, "the audit secret key does not match the vault's audit public key");
		return EXIT_STORE;
	}
	cli_err(dir, "%s", strerror(-rc));
	return cli_exit_for(rc);
}

static int audit_broken(const char *dir, const struct audit_problem *p)
{
	char where[4400];
	snprintf(where, sizeof where, "%s/%s", dir, p->file);
	if (p->record)
		cli_err(where, "record %llu: %s", (unsigned long long)p->record, p->what);
	else
		cli_err(where, "%s", p->what);
	return EXIT_DAMAGE;
}

/* A read-only chain the writer's trail listed: its name and the highest
 * segment number the writer saw. */
struct audit_ref {
	char name[AUDIT_CHAIN_NAME_BYTES];
	uint64_t segments;
	uint64_t seen_us; /* the latest record that listed it */
};

/* Add the chains a `chains` record lists ("ro-ID:SEGMENTS ..."). */
static int audit_refs_add(struct audit_ref **refs, size_t *n, const struct audit_entry *e)
{
	char buf[AUDIT_DETAIL_MAX + 1], *save = NULL, *tok;

	snprintf(buf, sizeof buf, "%s", e->detail);
	for (tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		char *colon = strchr(tok, ':');
		uint8_t id[AUDIT_CHAIN_ID_BYTES];
		unsigned long long segs;
		size_t i;

		if (!colon)
			continue;
		*colon = '\0';
		if (audit_chain_name_parse(tok, id) != 0)
			continue;
		segs = strtoull(colon + 1, NULL, 10);
		for (i = 0; i < *n && strcmp((*refs)[i].name, tok) != 0; i++)
			;
		if (i == *n) {
			struct audit_ref *nv = realloc(*refs, (*n + 1) * sizeof **refs);
			if (!nv)
				return -ENOMEM;
			*refs = nv;
			memset(&nv[i], 0, sizeof nv[i]);
			snprintf(nv[i].name, sizeof nv[i].name, "%s", tok);
			(*n)++;
		}
		if (segs > (*refs)[i].segments)
			(*refs)[i].segments = segs;
		(*refs)[i].seen_us = e->time_us;
	}
	return 0;
}

/* The chains the writer's trail lists, from its verified records. */
static int audit_refs_collect(const struct audit_keys *k, struct audit_ref **refs, size_t *n)
{
	struct audit_reader *r = NULL;
	struct audit_entry *e = malloc(sizeof *e);
	int rc;

	*refs = NULL;
	*n = 0;
	if (!e)
		return -ENOMEM;
	rc = audit_reader_open(k->dir, k->cfg->vault_id, k->cfg->audit_pk, k->sk, k->chain_key, 0,
			       &r);
	while (rc == 0 && (rc = audit_reader_next(r, e)) > 0) {
		rc = e->type == AUDIT_EV_CHAINS ? audit_refs_add(refs, n, e) : 0;
	}
	audit_reader_close(r);
	sodium_memzero(e, sizeof *e);
	free(e);
	return rc < 0 ? rc : 0;
}

static void audit_verify_line(const char *what, const struct audit_verify_result *res)
{
	if (res->problem.status == AUDIT_UNSEALED)
		printf("%s intact: %llu segments, %llu records, %llu crash recoveries; %s: %s\n",
		       what, (unsigned long long)res->segments, (unsigned long long)res->records,
		       (unsigned long long)res->recoveries, res->problem.file, res->problem.what);
	else if (res->segments == 0)
		printf("%s empty: %s\n", what,
		       what[0] == 'a' ? "the vault has not been mounted"
				      : "no segment was written");
	else
		printf("%s intact: %llu segments, %llu records, %llu crash recoveries\n", what,
		       (unsigned long long)res->segments, (unsigned long long)res->records,
		       (unsigned long long)res->recoveries);
}

/* Every chain, each judged on its own; then every read-only chain the
 * writer's trail listed must still be there with at least the segments it
 * had (docs/audit.md, "Chains of read-only mounts"). */
static int audit_verify_cmd(const struct audit_keys *k)
{
	struct audit_srcs s = {0};
	struct audit_verify_result res;
	struct audit_ref *refs = NULL;
	size_t nrefs = 0;
	int rc, exit_rc = EXIT_OK;

	rc = audit_verify(k->dir, k->cfg->vault_id, k->cfg->audit_pk, k->sk, k->chain_key, &res);
	if (rc)
		return audit_open_err(k->dir, rc);
	if (res.problem.status == AUDIT_BROKEN)
		exit_rc = audit_broken(k->dir, &res.problem);
	else
		audit_verify_line("audit trail", &res);
	if (exit_rc == EXIT_OK && (rc = audit_refs_collect(k, &refs, &nrefs)) < 0) {
		free(refs);
		return audit_open_err(k->dir, rc);
	}
	if ((rc = audit_srcs_scan(k, &s)) < 0) {
		audit_srcs_free(&s);
		free(refs);
		return audit_open_err(k->dir, rc);
	}
	for (size_t i = 0; i < s.n; i++) {
		char what[64];

		rc = audit_verify(s.v[i].dir, k->cfg->vault_id, k->cfg->audit_pk, k->sk, s.v[i].key,
				  &res);
		if (rc) {
			exit_rc = audit_open_err(s.v[i].dir, rc);
			continue;
		}
		if (res.problem.status == AUDIT_BROKEN) {
			exit_rc = audit_broken(s.v[i].dir, &res.problem);
			continue;
		}
		snprintf(what, sizeof what, "read-only chain %s", s.v[i].name);
		audit_verify_line(what, &res);
	}
	for (size_t j = 0; j < nrefs; j++) {
		char dir[4200], when[32];
		size_t i;

		for (i = 0; i < s.n && strcmp(s.v[i].name, refs[j].name) != 0; i++)
			;
		snprintf(dir, sizeof dir, "%s/%s", k->dir, refs[j].name);
		audit_time_format(refs[j].seen_us, when);
		if (i == s.n) {
			cli_err(dir,
				"missing: the writer's trail listed this read-only mount's chain "
				"at %s (%llu segments): it was removed",
				when, (unsigned long long)refs[j].segments);
			exit_rc = EXIT_DAMAGE;
		} else if (s.v[i].segments < refs[j].segments) {
			cli_err(dir,
				"has %llu segments, the writer's trail listed %llu at %s: "
				"segments were removed",
				(unsigned long long)s.v[i].segments,
				(unsigned long long)refs[j].segments, when);
			exit_rc = EXIT_DAMAGE;
		}
	}
	audit_srcs_free(&s);
	free(refs);
	return exit_rc;
}

static volatile sig_atomic_t audit_stop;

static void audit_on_signal(int sig)
{
	(void)sig;
	audit_stop = 1;
}

static void audit_print(const struct audit_filter *f, const struct audit_src *x, bool *header)
{
	if (!audit_filter_match(f, x->e))
		return;
	if (f->json) {
		audit_print_json(stdout, x->e, x->name);
		return;
	}
	if (!*header)
		audit_print_header(stdout);
	*header = true;
	audit_print_row(stdout, x->e);
}

/* Open readers for chains added since the last call. */
static int audit_srcs_open(const struct audit_keys *k, struct audit_srcs *s, unsigned flags,
			   bool printing)
{
	for (size_t i = 0; i < s->n; i++) {
		struct audit_src *x = &s->v[i];
		int rc;

		if (x->r || x->done)
			continue;
		rc = audit_reader_open(x->dir, k->cfg->vault_id, k->cfg->audit_pk, k->sk, x->key,
				       flags, &x->r);
		if (rc) {
			audit_open_err(x->dir, rc);
			return rc == -ENOENT ? -EUCLEAN : rc;
		}
		x->printing = printing;
	}
	return 0;
}

/* show: every chain, merged by time (a chain's own records stay in chain
 * order). A broken chain prints the records before its break, and its error
 * at the end; the others go on. */
static int audit_show(const struct audit_keys *k, const struct audit_filter *f,
		      struct audit_srcs *s)
{
	bool header = false;
	int rc, exit_rc = EXIT_OK;

	for (;;) {
		struct audit_src *best = NULL;

		for (size_t i = 0; i < s->n; i++) {
			struct audit_src *x = &s->v[i];

			if (x->done || x->have)
				continue;
			rc = audit_reader_next(x->r, x->e);
			if (rc > 0) {
				x->have = true;
				continue;
			}
			x->done = true;
			if (rc < 0 && audit_reader_problem(x->r)->status == AUDIT_BROKEN)
				exit_rc = audit_broken(x->dir, audit_reader_problem(x->r));
			else if (rc < 0)
				exit_rc = audit_open_err(x->dir, rc);
		}
		for (size_t i = 0; i < s->n; i++)
			if (s->v[i].have && (!best || s->v[i].e->time_us < best->e->time_us))
				best = &s->v[i];
		if (!best)
			break;
		audit_print(f, best, &header);
		best->have = false;
	}
	fflush(stdout);
	(void)k;
	return exit_rc;
}

/* follow: every chain in turn, and chains that appear later (a new
 * read-only mount) from their start. Stops at the first broken chain. */
static int audit_follow(const struct audit_keys *k, const struct audit_filter *f,
			struct audit_srcs *s)
{
	struct sigaction sa;
	bool header = false;
	int rc = 0;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = audit_on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	while (!audit_stop) {
		bool any = false;

		for (size_t i = 0; i < s->n && !audit_stop; i++) {
			struct audit_src *x = &s->v[i];

			while (!audit_stop && (rc = audit_reader_next(x->r, x->e)) > 0) {
				any = true;
				if (x->printing)
					audit_print(f, x, &header);
			}
			if (rc < 0) {
				fflush(stdout);
				if (audit_reader_problem(x->r)->status == AUDIT_BROKEN)
					return audit_broken(x->dir, audit_reader_problem(x->r));
				return audit_open_err(x->dir, rc);
			}
			x->printing = true;
		}
		fflush(stdout);
		if (any)
			continue;
		struct timespec ts = {1, 0};
		nanosleep(&ts, NULL);
		if ((rc = audit_srcs_scan(k, s)) < 0 ||
		    (rc = audit_srcs_open(k, s, AUDIT_READ_FOLLOW, true)) < 0)
			return audit_open_err(k->dir, rc);
	}
	fflush(stdout);
	return EXIT_OK;
}

static int audit_read_cmd(const struct audit_keys *k, const struct audit_filter *f, bool follow)
{
	struct audit_srcs s = {0};
	int rc;

	rc = audit_src_add(k, &s, "", NULL, 0);
	if (rc == 0)
		rc = audit_srcs_scan(k, &s);
	if (rc == -ENOENT) {
		audit_srcs_free(&s);
		return audit_open_err(k->dir, rc);
	}
	if (rc < 0) {
		audit_srcs_free(&s);
		cli_err(k->dir, "%s", strerror(-rc));
		return cli_exit_for(rc);
	}
	/* The writer's trail first: a missing STORE/audit is its error. */
	rc = audit_reader_open(s.v[0].dir, k->cfg->vault_id, k->cfg->audit_pk, k->sk, s.v[0].key,
			       follow ? AUDIT_READ_FOLLOW : 0, &s.v[0].r);
	if (rc) {
		audit_srcs_free(&s);
		return audit_open_err(k->dir, rc);
	}
	s.v[0].printing = !follow || f->have_since;
	if ((rc = audit_srcs_open(k, &s, follow ? AUDIT_READ_FOLLOW : 0,
				  !follow || f->have_since)) < 0) {
		audit_srcs_free(&s);
		return rc == -EUCLEAN ? EXIT_DAMAGE : cli_exit_for(rc);
	}
	rc = follow ? audit_follow(k, f, &s) : audit_show(k, f, &s);
	audit_srcs_free(&s);
	return rc;
}

int cmd_audit(int argc, char **argv)
{
	struct cli_secret_opts so = {0};
	struct audit_filter f = {0};
	struct audit_keys k;
	struct kr_keyring *kr = NULL;
	const char *pos[2] = {NULL, NULL};
	const char *since = NULL, *until = NULL, *events = NULL;
	int npos = 0, rc;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int r;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			audit_help();
			return EXIT_OK;
		}
		r = cli_secret_opt(&so, argc, argv, &i);
		if (r == 0)
			r = cli_opt_value(argc, argv, &i, "--since", &since);
		if (r == 0)
			r = cli_opt_value(argc, argv, &i, "--until", &until);
		if (r == 0)
			r = cli_opt_value(argc, argv, &i, "--user", &f.user);
		if (r == 0)
			r = cli_opt_value(argc, argv, &i, "--path", &f.path);
		if (r == 0)
			r = cli_opt_value(argc, argv, &i, "--level", &f.level);
		if (r == 0)
			r = cli_opt_value(argc, argv, &i, "--event", &events);
		if (r < 0)
			return EXIT_USAGE;
		if (r > 0)
			continue;
		if (strcmp(a, "--json") == 0) {
			f.json = true;
		} else if (a[0] == '-' && a[1] != '\0') {
			cli_err(a, "unknown option to audit (see strongroom audit --help)");
			return EXIT_USAGE;
		} else if (npos < 2) {
			pos[npos++] = a;
		} else {
			cli_err(a, "unexpected argument to audit (see strongroom audit --help)");
			return EXIT_USAGE;
		}
	}
	if (npos != 2) {
		cli_err("audit", "usage: strongroom audit show|verify|follow STORE "
				 "(see strongroom audit --help)");
		return EXIT_USAGE;
	}
	if (strcmp(pos[0], "show") != 0 && strcmp(pos[0], "verify") != 0 &&
	    strcmp(pos[0], "follow") != 0) {
		cli_err(pos[0], "unknown audit command (show, verify or follow)");
		return EXIT_USAGE;
	}
	if (strcmp(pos[0], "verify") == 0 &&
	    (since || until || f.user || f.path || f.level || events || f.json)) {
		cli_err("audit verify", "takes no filters: it checks the whole trail");
		return EXIT_USAGE;
	}
	if (since) {
		if (audit_time_parse(since, &f.since_us)) {
			cli_err(since,
				"not a time (2024-05-01T13:30:00Z, @SECONDS or an age like 2h)");
			return EXIT_USAGE;
		}
		f.have_since = true;
	}
	if (until) {
		if (audit_time_parse(until, &f.until_us)) {
			cli_err(until,
				"not a time (2024-05-01T13:30:00Z, @SECONDS or an age like 2h)");
			return EXIT_USAGE;
		}
		f.have_until = true;
	}
	if (events && audit_events_parse(events, &f.events))
		return EXIT_USAGE;

	rc = audit_unlock(pos[1], &so, &kr, &k);
	if (rc == EXIT_OK) {
		if (strcmp(pos[0], "verify") == 0)
			rc = audit_verify_cmd(&k);
		else
			rc = audit_read_cmd(&k, &f, strcmp(pos[0], "follow") == 0);
	}
	kr_keyring_free(kr);
	return rc;
}
