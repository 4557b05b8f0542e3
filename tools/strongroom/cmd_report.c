/* cmd_report.c - strongroom report STORE [--json] [--since T] [secret options]
 *
 * One summary of a vault for an admin or an auditor: its levels with the
 * files, folders and bytes at each; the roles of the stored policy with the
 * effective rights of each role on each classified folder; the keyslots and
 * their ceilings; key generations and the last rotation; the audit trail's
 * verification result; and, per user, the files opened since T (default
 * 30 days). It needs an admin secret (the trail is sealed to it) and only
 * reads: the tree through a read-only vault, the trail through the reader,
 * so it also runs beside a mounted writer (a file being written meanwhile
 * may be counted as it was at its last seal).
 *
 * Exit codes (cli.h): 0 the report was printed, also for a broken trail
 * (the report says so); the unlock codes otherwise.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>

#include "cli.h"
#include "strongroom/audit.h"
#include "strongroom/policy.h"
#include "strongroom/vault.h"

#define RP_POLICY_MAX	     (1u << 20)
#define RP_DEFAULT_SINCE_SEC ((time_t)30 * 86400)
#define RP_USER_PATHS_MAX    1000
#define RP_USER_PATHS_SHOWN  20
#define RP_DEPTH_MAX	     256

struct rp_level {
	uint64_t files, folders, bytes;
};

struct rp_user {
	uint32_t uid;
	char name[AUDIT_NAME_MAX + 1];
	uint64_t opens, denials, bytes_read, nfiles;
	char **paths; /* distinct paths opened, up to RP_USER_PATHS_MAX */
	size_t npaths;
};

struct rp {
	const char *store;
	bool json;
	uint64_t since_us;
	struct kr_keyring *kr;
	const struct kr_config *cfg;
	struct vault *v;
	struct rp_level levels[KR_MAX_LEVELS];
	uint64_t unreadable;
	struct pol_policy *pol;
	struct audit_verify_result ver;
	int ver_err;
	struct rp_user *users;
	size_t nusers;
	bool first; /* JSON: no comma before the next item */
};

static const struct vault_caller rp_root = {.uid = 0, .gid = 0, .pid = 0, .umask = 022};

/* ---- helpers ---- */

static void rp_json_str(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

static void rp_time(uint64_t us, char *out, size_t cap)
{
	time_t t = (time_t)(us / 1000000u);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* "30d", "12h", "@EPOCH", "YYYY-MM-DD" (UTC), "now". @return 0 or -EINVAL. */
static int rp_since_parse(const char *s, uint64_t *out)
{
	struct timespec ts;
	uint64_t now;
	unsigned long long v;
	char unit, *end;
	int y, mo, d;
	struct tm tm = {0};

	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	if (strcmp(s, "now") == 0)
		return *out = now, 0;
	if (s[0] == '@') {
		errno = 0;
		v = strtoull(s + 1, &end, 10);
		if (errno || end == s + 1 || *end)
			return -EINVAL;
		return *out = (uint64_t)v * 1000000u, 0;
	}
	if (s[0] >= '0' && s[0] <= '9') {
		errno = 0;
		v = strtoull(s, &end, 10);
		unit = *end;
		if (!errno && unit && strchr("smhd", unit) && end[1] == '\0') {
			uint64_t mul = unit == 's'   ? 1
				       : unit == 'm' ? 60
				       : unit == 'h' ? 3600
						     : 86400;
			uint64_t age = (uint64_t)v * mul * 1000000u;

			return *out = age > now ? 0 : now - age, 0;
		}
	}
	/* YYYY-MM-DD */
	for (int i = 0; i < 10; i++)
		if (i == 4 || i == 7 ? s[i] != '-' : (s[i] < '0' || s[i] > '9'))
			return -EINVAL;
	if (s[10])
		return -EINVAL;
	y = (int)strtol(s, NULL, 10);
	mo = (int)strtol(s + 5, NULL, 10);
	d = (int)strtol(s + 8, NULL, 10);
	if (mo < 1 || mo > 12 || d < 1 || d > 31)
		return -EINVAL;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	*out = (uint64_t)timegm(&tm) * 1000000u;
	return 0;
}

/* ---- the tree: files and bytes per level ---- */

static int rp_level_of(struct rp *r, const char *path)
{
	char name[KR_LEVEL_NAME_MAX + 1];
	ssize_t n =
	    vault_getxattr(r->v, &rp_root, path, "user.strongroom.level", name, sizeof(name) - 1);

	if (n < 0)
		return (int)n;
	name[n] = '\0';
	return kr_level_index(r->kr, name);
}

static void rp_walk(struct rp *r, const char *path, unsigned depth)
{
	struct vault_dirlist l = {0};
	char *child;
	int lv;

	if (depth > RP_DEPTH_MAX || vault_readdir(r->v, &rp_root, path, true, &l) < 0) {
		r->unreadable++;
		return;
	}
	for (size_t i = 0; i < l.n; i++) {
		size_t len = strlen(path) + strlen(l.ents[i].name) + 2;

		child = malloc(len);
		if (!child)
			break;
		snprintf(child, len, "%s%s%s", strcmp(path, "/") ? path : "", "/", l.ents[i].name);
		lv = rp_level_of(r, child);
		if (lv < 0 || (unsigned)lv >= r->cfg->nlevels) {
			r->unreadable++;
		} else if (S_ISDIR(l.ents[i].st.st_mode)) {
			r->levels[lv].folders++;
			rp_walk(r, child, depth + 1);
		} else {
			r->levels[lv].files++;
			r->levels[lv].bytes += (uint64_t)l.ents[i].st.st_size;
		}
		free(child);
	}
	vault_dirlist_free(&l);
}

/* ---- the stored policy ---- */

static void rp_policy_load(struct rp *r)
{
	const char *names[KR_MAX_LEVELS];
	struct pol_error err;
	char *buf = malloc(RP_POLICY_MAX);
	ssize_t n;

	if (!buf)
		return;
	for (unsigned i = 0; i < r->cfg->nlevels; i++)
		names[i] = r->cfg->levels[i].name;
	n = vault_getxattr(r->v, &rp_root, "/", POL_XATTR, buf, RP_POLICY_MAX);
	if (n > 0 && pol_compiled_parse(buf, (size_t)n, names, r->cfg->nlevels, &r->pol, &err) < 0)
		fprintf(stderr, "strongroom: %s: warning: the stored policy does not parse: %s\n",
			r->store, err.msg);
	free(buf);
}

/* The level a folder's path reaches: its own and every classified folder
 * above it. */
static int rp_folder_reach(const struct pol_policy *p, const struct pol_folder *f)
{
	int reach = f->level;

	for (unsigned i = 0; i < p->nfolders; i++) {
		const char *a = p->folders[i].path;
		size_t n = strlen(a);

		if (p->folders[i].level > reach &&
		    (strcmp(a, "/") == 0 || (strncmp(f->path, a, n) == 0 && f->path[n] == '/')))
			reach = p->folders[i].level;
	}
	return reach;
}

/* What role ri may do in folder f: its grant, unless its clearance stops it. */
static const char *rp_effective(const struct pol_policy *p, unsigned ri, const struct pol_folder *f)
{
	int reach = rp_folder_reach(p, f);

	for (unsigned g = 0; g < f->ngrants; g++) {
		if (f->grants[g].role != ri)
			continue;
		if (reach != POL_NONE && p->roles[ri].clearance < reach)
			return "none (clearance)";
		return pol_rights_name(f->grants[g].rights);
	}
	return "-";
}

/* ---- the trail: verification and who opened what ---- */

static struct rp_user *rp_user_get(struct rp *r, uint32_t uid, const char *name)
{
	struct rp_user *u;

	for (size_t i = 0; i < r->nusers; i++)
		if (r->users[i].uid == uid && strcmp(r->users[i].name, name) == 0)
			return &r->users[i];
	u = realloc(r->users, (r->nusers + 1) * sizeof(*u));
	if (!u)
		return NULL;
	r->users = u;
	u = &r->users[r->nusers++];
	memset(u, 0, sizeof(*u));
	u->uid = uid;
	snprintf(u->name, sizeof(u->name), "%s", name);
	return u;
}

static void rp_user_path(struct rp_user *u, const char *path)
{
	char **np;

	for (size_t i = 0; i < u->npaths; i++)
		if (strcmp(u->paths[i], path) == 0)
			return;
	u->nfiles++;
	if (u->npaths == RP_USER_PATHS_MAX)
		return;
	np = realloc(u->paths, (u->npaths + 1) * sizeof(*np));
	if (!np)
		return;
	u->paths = np;
	u->paths[u->npaths] = strdup(path);
	if (u->paths[u->npaths])
		u->npaths++;
}

static int rp_trail(struct rp *r)
{
	const unsigned char *sk = kr_audit_sk(r->kr);
	const unsigned char *chain = kr_vault_subkey(r->kr, KR_VSUB_AUDIT);
	struct audit_reader *rd = NULL;
	struct audit_entry *e = NULL;
	char dir[4096];

	snprintf(dir, sizeof(dir), "%s/audit", r->store);
	r->ver_err = audit_verify(dir, r->cfg->vault_id, r->cfg->audit_pk, sk, chain, &r->ver);
	if (r->ver_err < 0)
		return 0;
	e = malloc(sizeof(*e));
	if (!e ||
	    audit_reader_open(dir, r->cfg->vault_id, r->cfg->audit_pk, sk, chain, 0, &rd) < 0) {
		free(e);
		return 0;
	}
	while (audit_reader_next(rd, e) == 1) {
		struct rp_user *u;

		if (e->kind != 1 || e->time_us < r->since_us)
			continue;
		if (e->type != AUDIT_EV_OPEN && e->type != AUDIT_EV_CREATE &&
		    e->type != AUDIT_EV_READ_SUMMARY && e->type != AUDIT_EV_DENIAL)
			continue;
		if (e->uid == 0 && strcmp(e->process, "strongroom") == 0)
			continue; /* the driver's own records */
		u = rp_user_get(r, e->uid, e->user);
		if (!u)
			break;
		if (e->type == AUDIT_EV_DENIAL) {
			u->denials++;
		} else if (e->type == AUDIT_EV_READ_SUMMARY) {
			u->bytes_read += e->bytes;
		} else if (e->outcome == 0) {
			u->opens++;
			rp_user_path(u, e->path);
		}
	}
	audit_reader_close(rd);
	free(e);
	return 0;
}

/* ---- printing ---- */

static const char *rp_status_name(enum audit_status s)
{
	return s == AUDIT_INTACT ? "intact" : s == AUDIT_UNSEALED ? "unsealed" : "broken";
}

static void rp_print_text(struct rp *r, const struct kr_slot_info *slots, int nslots,
			  const struct stat *bag)
{
	const struct pol_policy *p = r->pol;
	char when[32];

	printf("Vault %s\n\nLEVELS\n  %-16s %8s %8s %14s %s\n", r->store, "LEVEL", "FILES",
	       "FOLDERS", "BYTES", "KEY");
	for (unsigned l = 0; l < r->cfg->nlevels; l++) {
		if (!kr_level_held(r->kr, l)) {
			printf("  %-16s %8s %8s %14s not held by this secret\n",
			       r->cfg->levels[l].name, "-", "-", "-");
			continue;
		}
		printf("  %-16s %8" PRIu64 " %8" PRIu64 " %14" PRIu64 " generation %" PRIu32 "\n",
		       r->cfg->levels[l].name, r->levels[l].files, r->levels[l].folders,
		       r->levels[l].bytes, kr_level_generation(r->kr, l));
	}
	if (r->unreadable)
		printf("  (%" PRIu64 " entries could not be read with this secret)\n",
		       r->unreadable);
	if (bag) {
		rp_time((uint64_t)bag->st_mtime * 1000000u, when, sizeof(when));
		printf("  last key rotation: %s\n", when);
	} else {
		printf("  last key rotation: never (every level uses its first key)\n");
	}

	printf("\nKEYSLOTS\n");
	for (int i = 0; i < nslots; i++)
		printf("  slot %-3d %-10s up to %-14s%s\n", slots[i].index,
		       slots[i].kind == KR_SECRET_RECOVERY     ? "recovery"
		       : slots[i].kind == KR_SECRET_PASSPHRASE ? "passphrase"
							       : "unreadable",
		       slots[i].ceiling < r->cfg->nlevels ? r->cfg->levels[slots[i].ceiling].name
							  : "?",
		       slots[i].admin ? " admin" : "");

	printf("\nPOLICY\n");
	if (!p) {
		printf("  none applied: every user the kernel's permissions allow may open every "
		       "level\n");
	} else {
		printf("  admin group: %s\n", p->has_admin ? p->admin.name : "(none: root only)");
		for (unsigned i = 0; i < p->nroles; i++) {
			char hours[64] = "";

			if (p->roles[i].hours.days)
				pol_hours_format(&p->roles[i].hours, hours, sizeof(hours));
			printf("  role %-14s clearance %-14s groups", p->roles[i].name,
			       p->levels[p->roles[i].clearance]);
			for (unsigned g = 0; g < p->roles[i].ngroups; g++)
				printf("%s%s", g ? "," : " ", p->roles[i].groups[g].name);
			if (hours[0])
				printf("  within %s, else %s", hours,
				       p->roles[i].off_hours_clearance == POL_NONE
					   ? "none"
					   : p->levels[p->roles[i].off_hours_clearance]);
			printf("\n");
		}
		for (unsigned f = 0; f < p->nfolders; f++) {
			const struct pol_folder *fo = &p->folders[f];
			int reach = rp_folder_reach(p, fo);

			printf("  folder %s (%s)\n", fo->path,
			       reach == POL_NONE ? "level unchanged" : p->levels[reach]);
			for (unsigned i = 0; i < p->nroles; i++)
				printf("      %-14s %s\n", p->roles[i].name,
				       rp_effective(p, i, fo));
		}
		for (unsigned a = 0; a < p->nalerts; a++)
			printf("  alert %-13s %s%s\n", p->alerts[a].name,
			       pol_alert_kind_name(p->alerts[a].kind),
			       p->alerts[a].freeze ? ", freezes the user" : "");
	}

	printf("\nAUDIT TRAIL\n");
	if (r->ver_err < 0)
		printf("  cannot be read: %s\n", strerror(-r->ver_err));
	else
		printf("  %s: %" PRIu64 " segments, %" PRIu64 " records%s%s\n",
		       rp_status_name(r->ver.problem.status), r->ver.segments, r->ver.records,
		       r->ver.problem.status == AUDIT_BROKEN ? "; " : "",
		       r->ver.problem.status == AUDIT_BROKEN ? r->ver.problem.what : "");

	rp_time(r->since_us, when, sizeof(when));
	printf("\nFILES OPENED SINCE %s\n", when);
	if (!r->nusers)
		printf("  nobody\n");
	for (size_t i = 0; i < r->nusers; i++) {
		const struct rp_user *u = &r->users[i];

		printf("  %s (uid %u): %" PRIu64 " files, %" PRIu64 " opens, %" PRIu64
		       " bytes read, %" PRIu64 " denials\n",
		       u->name, u->uid, u->nfiles, u->opens, u->bytes_read, u->denials);
		for (size_t k = 0; k < u->npaths && k < RP_USER_PATHS_SHOWN; k++)
			printf("      %s\n", u->paths[k]);
		if (u->nfiles > RP_USER_PATHS_SHOWN)
			printf("      ... and %" PRIu64 " more\n", u->nfiles - RP_USER_PATHS_SHOWN);
	}
}

static void rp_print_json(struct rp *r, const struct kr_slot_info *slots, int nslots,
			  const struct stat *bag)
{
	const struct pol_policy *p = r->pol;
	char when[32];

	printf("{\"store\": ");
	rp_json_str(r->store);
	printf(", \"levels\": [");
	for (unsigned l = 0; l < r->cfg->nlevels; l++) {
		bool held = kr_level_held(r->kr, l);

		printf("%s{\"name\": ", l ? ", " : "");
		rp_json_str(r->cfg->levels[l].name);
		printf(", \"held\": %s", held ? "true" : "false");
		if (held)
			printf(", \"files\": %" PRIu64 ", \"folders\": %" PRIu64
			       ", \"bytes\": %" PRIu64 ", \"generation\": %" PRIu32,
			       r->levels[l].files, r->levels[l].folders, r->levels[l].bytes,
			       kr_level_generation(r->kr, l));
		printf("}");
	}
	printf("], \"unreadable\": %" PRIu64 ", \"last_rotation\": ", r->unreadable);
	if (bag) {
		rp_time((uint64_t)bag->st_mtime * 1000000u, when, sizeof(when));
		rp_json_str(when);
	} else {
		printf("null");
	}
	printf(", \"keyslots\": [");
	for (int i = 0; i < nslots; i++)
		printf("%s{\"slot\": %d, \"kind\": \"%s\", \"ceiling\": \"%s\", \"admin\": %s}",
		       i ? ", " : "", slots[i].index,
		       slots[i].kind == KR_SECRET_RECOVERY     ? "recovery"
		       : slots[i].kind == KR_SECRET_PASSPHRASE ? "passphrase"
							       : "unreadable",
		       slots[i].ceiling < r->cfg->nlevels ? r->cfg->levels[slots[i].ceiling].name
							  : "",
		       slots[i].admin ? "true" : "false");
	printf("], \"policy\": ");
	if (!p) {
		printf("null");
	} else {
		printf("{\"admin_group\": ");
		if (p->has_admin)
			rp_json_str(p->admin.name);
		else
			printf("null");
		printf(", \"roles\": [");
		for (unsigned i = 0; i < p->nroles; i++) {
			printf("%s{\"name\": ", i ? ", " : "");
			rp_json_str(p->roles[i].name);
			printf(", \"clearance\": \"%s\", \"groups\": [",
			       p->levels[p->roles[i].clearance]);
			for (unsigned g = 0; g < p->roles[i].ngroups; g++) {
				printf("%s", g ? ", " : "");
				rp_json_str(p->roles[i].groups[g].name);
			}
			printf("]");
			if (p->roles[i].hours.days) {
				char hours[64];

				pol_hours_format(&p->roles[i].hours, hours, sizeof(hours));
				printf(", \"hours\": \"%s\", \"outside_hours\": \"%s\"", hours,
				       p->roles[i].off_hours_clearance == POL_NONE
					   ? "none"
					   : p->levels[p->roles[i].off_hours_clearance]);
			}
			printf("}");
		}
		printf("], \"folders\": [");
		for (unsigned f = 0; f < p->nfolders; f++) {
			int reach = rp_folder_reach(p, &p->folders[f]);

			printf("%s{\"path\": ", f ? ", " : "");
			rp_json_str(p->folders[f].path);
			printf(", \"level\": ");
			if (reach == POL_NONE)
				printf("null");
			else
				printf("\"%s\"", p->levels[reach]);
			printf(", \"rights\": {");
			for (unsigned i = 0; i < p->nroles; i++)
				printf("%s\"%s\": \"%s\"", i ? ", " : "", p->roles[i].name,
				       rp_effective(p, i, &p->folders[f]));
			printf("}}");
		}
		printf("], \"alerts\": [");
		for (unsigned a = 0; a < p->nalerts; a++) {
			printf("%s{\"name\": ", a ? ", " : "");
			rp_json_str(p->alerts[a].name);
			printf(", \"when\": \"%s\", \"action\": \"%s\"}",
			       pol_alert_kind_name(p->alerts[a].kind),
			       p->alerts[a].freeze ? "freeze" : "log");
		}
		printf("]}");
	}
	printf(", \"audit\": ");
	if (r->ver_err < 0) {
		printf("{\"status\": \"unreadable\", \"error\": ");
		rp_json_str(strerror(-r->ver_err));
		printf("}");
	} else {
		printf("{\"status\": \"%s\", \"segments\": %" PRIu64 ", \"records\": %" PRIu64
		       ", \"problem\": ",
		       rp_status_name(r->ver.problem.status), r->ver.segments, r->ver.records);
		if (r->ver.problem.status == AUDIT_BROKEN)
			rp_json_str(r->ver.problem.what);
		else
			printf("null");
		printf("}");
	}
	rp_time(r->since_us, when, sizeof(when));
	printf(", \"since\": \"%s\", \"users\": [", when);
	for (size_t i = 0; i < r->nusers; i++) {
		const struct rp_user *u = &r->users[i];

		printf("%s{\"user\": ", i ? ", " : "");
		rp_json_str(u->name);
		printf(", \"uid\": %u, \"files_opened\": %" PRIu64 ", \"opens\": %" PRIu64
		       ", \"bytes_read\": %" PRIu64 ", \"denials\": %" PRIu64 ", \"files\": [",
		       u->uid, u->nfiles, u->opens, u->bytes_read, u->denials);
		for (size_t k = 0; k < u->npaths; k++) {
			printf("%s", k ? ", " : "");
			rp_json_str(u->paths[k]);
		}
		printf("]}");
	}
	printf("]}\n");
}

static void rp_help(void)
{
	printf("Usage: strongroom report STORE [--json] [--since T] [--passphrase-file F | "
	       "--extpass CMD | --recovery-key-file F]\n"
	       "\n"
	       "Summarise a vault: files and bytes per level, roles and their effective rights\n"
	       "per folder, keyslots, key generations and the last rotation, the audit trail's\n"
	       "verification, and per user the files opened since T (default 30d; T is an age\n"
	       "such as 7d or 12h, a UTC date YYYY-MM-DD, or @EPOCH). Needs an admin secret.\n");
}

int cmd_report(int argc, char **argv)
{
	struct cli_secret_opts so = {0};
	struct kr_slot_info slots[KR_MAX_SLOTS];
	struct rp r = {0};
	struct stat bag;
	char path[4096];
	const char *since = NULL;
	bool have_bag;
	int rc, nslots, err;

	for (int i = 1; i < argc; i++) {
		int s = cli_secret_opt(&so, argc, argv, &i);

		if (s < 0)
			return EXIT_USAGE;
		if (s > 0)
			continue;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			rp_help();
			return EXIT_OK;
		} else if (strcmp(argv[i], "--json") == 0) {
			r.json = true;
		} else if ((s = cli_opt_value(argc, argv, &i, "--since", &since)) != 0) {
			if (s < 0)
				return EXIT_USAGE;
		} else if (argv[i][0] != '-' && !r.store) {
			r.store = argv[i];
		} else {
			cli_err(argv[i],
				"unexpected argument to report (see strongroom report --help)");
			return EXIT_USAGE;
		}
	}
	if (!r.store) {
		cli_err("report", "usage: strongroom report STORE [--json] [--since T]");
		return EXIT_USAGE;
	}
	if (since) {
		if (rp_since_parse(since, &r.since_us) < 0) {
			cli_err(since, "not a time (7d, 12h, YYYY-MM-DD or @EPOCH)");
			return EXIT_USAGE;
		}
	} else {
		r.since_us = (uint64_t)(time(NULL) - RP_DEFAULT_SINCE_SEC) * 1000000u;
	}
	rc = cli_unlock(r.store, &so, &r.kr);
	if (rc != EXIT_OK)
		return rc;
	if (!kr_audit_sk(r.kr)) {
		cli_err(r.store,
			"keyslot %d is not an admin keyslot: a report needs an admin secret",
			kr_keyring_slot(r.kr));
		rc = EXIT_FAIL;
		goto out;
	}
	r.cfg = kr_keyring_config(r.kr);
	err = vault_open(r.store, r.kr, VAULT_READ_ONLY, &r.v);
	if (err < 0) {
		cli_err(r.store, "cannot open the vault: %s", strerror(-err));
		rc = cli_exit_for(err);
		goto out;
	}
	rp_walk(&r, "/", 0);
	rp_policy_load(&r);
	rp_trail(&r);
	nslots = kr_keyslot_list(r.store, slots, KR_MAX_SLOTS);
	if (nslots < 0)
		nslots = 0;
	snprintf(path, sizeof(path), "%s/keybag", r.store);
	have_bag = stat(path, &bag) == 0;
	if (r.json)
		rp_print_json(&r, slots, nslots, have_bag ? &bag : NULL);
	else
		rp_print_text(&r, slots, nslots, have_bag ? &bag : NULL);
	rc = EXIT_OK;
out:
	vault_close(r.v);
	pol_free(r.pol);
	for (size_t i = 0; i < r.nusers; i++) {
		for (size_t k = 0; k < r.users[i].npaths; k++)
			free(r.users[i].paths[k]);
		free(r.users[i].paths);
	}
	free(r.users);
	kr_keyring_free(r.kr);
	return rc;
}
