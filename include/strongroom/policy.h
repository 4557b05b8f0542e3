/* policy.h - classification levels, business roles and clearance decisions.
 *
 * A leaf layer and a pure one: it parses the policy text it is given (the
 * hand-edited policy file, docs/policy.md, or the compiled form the vault
 * keeps in its root directory's authenticated metadata), and answers
 * questions about callers and folders. It does no I/O: group names are
 * resolved by a function the caller passes (getgrnam in the CLI, a table in
 * tests), folders are checked by the caller, levels are given as the
 * vault's list of level names, lowest first.
 *
 * Invariants:
 *  - A parsed policy is complete and consistent: every role has at least one
 *    group and a clearance that names a level, every folder grant names a
 *    role of the policy, folder paths are canonical ("/" or "/a/b", no "."
 *    or ".." components), nothing is defined twice.
 *  - A failed parse leaves nothing allocated and fills one error with the
 *    1-based line number and a one-line cause.
 *  - Clearance is a level index or POL_NONE (below the lowest level).
 *    Callers in several roles get the highest clearance of them; uid 0 gets
 *    every level; a caller in no role gets the default clearance.
 *
 * Errors: 0/-errno. -EINVAL a syntax or consistency error (err filled),
 * -ENOENT an unknown group (err filled), -ENOMEM, -ENOSPC output too small.
 */
#ifndef STRONGROOM_POLICY_H
#define STRONGROOM_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define POL_NAME_MAX 63       /* role and level names */
#define POL_GROUP_MAX 255     /* group names (NSS/SSSD names may be long) */
#define POL_PATH_MAX 4095     /* folder paths */
#define POL_LINE_MAX 8192     /* longest line of a policy text */
#define POL_TEXT_MAX (1u << 20) /* largest policy text either parser reads */
#define POL_MAX_ROLES 64
#define POL_MAX_GROUPS 8      /* groups per role */
#define POL_MAX_FOLDERS 1024
#define POL_MAX_LEVELS 8
#define POL_ERR_BYTES 192

/* The clearance of someone cleared for nothing. */
#define POL_NONE (-1)

/* Rights a role has on a folder (a subset of these bits). */
#define POL_RIGHT_R 4u
#define POL_RIGHT_W 2u
#define POL_RIGHT_X 1u

/* The xattr of the vault's root directory that holds the compiled policy
 * (trusted.*: only root may read or set it through the mount). */
#define POL_XATTR "trusted.strongroom.policy"

struct pol_error {
	unsigned line; /* 1-based; 0 when the cause has no line */
	char msg[POL_ERR_BYTES];
};

struct pol_group {
	char name[POL_GROUP_MAX + 1];
	gid_t gid;
	bool resolved;
};

/* A weekly schedule: on the days in days, from from_min up to (not
 * including) to_min minutes after midnight, local time; from_min > to_min
 * runs past midnight into the next day. days 0 = no schedule. */
struct pol_hours {
	uint8_t days; /* bit d = weekday d, 0 = Sunday (struct tm's tm_wday) */
	uint16_t from_min, to_min;
};

/* When a decision is made: local weekday (0 = Sunday) and minute of day. */
struct pol_when {
	int wday;
	int minute;
};

struct pol_role {
	char name[POL_NAME_MAX + 1];
	struct pol_group groups[POL_MAX_GROUPS];
	unsigned ngroups;
	int clearance; /* level index */
	unsigned line; /* of its [role NAME] header */
	unsigned group_line;
	/* Context rule (pol_watch.c): within hours the clearance above,
	 * outside them off_hours_clearance (a level index or POL_NONE). */
	struct pol_hours hours;
	int off_hours_clearance;
	bool off_hours_set;
};

struct pol_grant {
	unsigned role;   /* index into roles */
	unsigned rights; /* POL_RIGHT_* bits; 0 = none */
	unsigned line;
};

struct pol_folder {
	char *path; /* canonical; owned */
	int level;  /* level index, or POL_NONE to leave the level alone */
	struct pol_grant *grants; /* owned */
	unsigned ngrants;
	unsigned line;
};

/* Alert rules (docs/policy.md "Alert rules"), evaluated by the driver on
 * its audit stream. */
#define POL_MAX_ALERTS 32
#define POL_MAX_PROCS 16
#define POL_PROC_MAX 15 /* a process name as the kernel keeps it (comm) */

enum pol_alert_kind {
	POL_ALERT_BULK_READ = 1, /* more than files distinct files or bytes bytes read */
	POL_ALERT_OFF_HOURS,	 /* a file opened outside hours */
	POL_ALERT_DENIALS,	 /* more than count denials */
	POL_ALERT_INTEGRITY,	 /* any integrity failure */
	POL_ALERT_PROCESS,	 /* a file at level or above opened by one of procs */
};

struct pol_alert {
	char name[POL_NAME_MAX + 1];
	enum pol_alert_kind kind;
	uint64_t files, bytes, count; /* 0 = not used */
	uint32_t window_sec;	      /* per user; 0 = the default (60 s) */
	struct pol_hours hours;
	int level; /* level index, or POL_NONE for any */
	unsigned nprocs;
	char procs[POL_MAX_PROCS][POL_PROC_MAX + 1];
	bool freeze; /* action = freeze: the user is frozen too */
	unsigned line;
};

struct pol_policy {
	unsigned nlevels;
	char levels[POL_MAX_LEVELS][POL_NAME_MAX + 1];
	bool has_admin;
	struct pol_group admin;
	unsigned admin_line;
	int default_clearance; /* level index or POL_NONE */
	struct pol_role roles[POL_MAX_ROLES];
	unsigned nroles;
	struct pol_folder *folders; /* owned */
	unsigned nfolders;
	struct pol_alert alerts[POL_MAX_ALERTS];
	unsigned nalerts;
	char on_alert[POL_PATH_MAX + 1]; /* hook command, "" if none */
};

/* Parse a policy file (docs/policy.md). levels are the vault's level names,
 * lowest first (borrowed). Groups are left unresolved.
 * @return 0 and *out owned (pol_free), or -EINVAL / -ENOMEM with err
 * filled. */
int pol_parse(const char *text, size_t len, const char *const *levels, unsigned nlevels,
	      struct pol_policy **out, struct pol_error *err) __attribute__((warn_unused_result));

/* Free a policy. Accepts NULL. */
void pol_free(struct pol_policy *p);

/* Look a group name up: @return 0 and *gid, or -ENOENT. */
typedef int (*pol_group_lookup_fn)(const char *name, gid_t *gid, void *ctx);

/* Resolve every group name (the admin group and each role's groups) with
 * lookup. @return 0, or the first failure (-ENOENT for an unknown group,
 * err naming it and the line it is on). */
int pol_resolve(struct pol_policy *p, pol_group_lookup_fn lookup, void *ctx, struct pol_error *err)
	__attribute__((warn_unused_result));

/* The compiled form: what the vault stores and the driver parses. Groups
 * carry their resolved gids, so the driver decides without NSS.
 * @return the length written (NUL not counted), -ENOSPC if cap is too small
 * (out is then unspecified), -EINVAL if a group is unresolved. With out NULL
 * and cap 0, the length it needs. */
ssize_t pol_compile(const struct pol_policy *p, char *out, size_t cap);

/* Parse a compiled form (store bytes, authenticated but still checked).
 * @return 0 and *out owned, -EUCLEAN if malformed (err filled), -ENOMEM. */
int pol_compiled_parse(const char *text, size_t len, const char *const *levels, unsigned nlevels,
		       struct pol_policy **out, struct pol_error *err)
	__attribute__((warn_unused_result));

/* Level index by name, or -EINVAL. */
int pol_level_index(const struct pol_policy *p, const char *name);

/* Who asks: uid, primary gid and supplementary groups. */
struct pol_caller {
	uid_t uid;
	gid_t gid;
	const gid_t *groups;
	int ngroups;
};

/* The highest level the caller may open. p NULL (no policy applied) and
 * uid 0 give top (the highest level index of the vault). @return a level
 * index or POL_NONE. */
int pol_clearance(const struct pol_policy *p, const struct pol_caller *c, unsigned top);

/* True if the caller may open an object whose path reaches level (the
 * highest level of it and of the folders above it). */
bool pol_may_open(const struct pol_policy *p, const struct pol_caller *c, unsigned top,
		  unsigned level);

/* Context rules (pol_watch.c): as pol_clearance / pol_may_open, at a given
 * time; a role with hours gives its clearance within them and its
 * off-hours clearance outside. when NULL ignores hours. */
int pol_clearance_at(const struct pol_policy *p, const struct pol_caller *c, unsigned top,
		     const struct pol_when *when);
bool pol_may_open_at(const struct pol_policy *p, const struct pol_caller *c, unsigned top,
		     unsigned level, const struct pol_when *when);
/* True if when falls within h (a schedule with days 0 contains nothing). */
bool pol_hours_contain(const struct pol_hours *h, const struct pol_when *when);
/* "mon-fri 08:00-18:00" for h into out (cap >= 32). */
void pol_hours_format(const struct pol_hours *h, char *out, size_t cap);
/* The rule kind's name in the policy ("bulk-read", ...). */
const char *pol_alert_kind_name(enum pol_alert_kind k);

/* True if the caller may change levels: uid 0, or a member of the admin
 * group. */
bool pol_is_admin(const struct pol_policy *p, const struct pol_caller *c);

/* Index of the folder with exactly this canonical path, or -ENOENT. */
int pol_folder_find(const struct pol_policy *p, const char *path);

/* The named-group entries a folder's ACLs hold, one per group of every
 * role granted something (rights 0 grants nothing and gives no entry).
 * for_dir: a folder and its default ACL (r gives r-x, rw and rwx give rwx:
 * a folder needs x to be entered and w+x to save into), else an existing
 * file (the rights as written). @return the entry count (at most cap),
 * -ENOSPC if cap is too small. */
struct pol_acl_entry {
	gid_t gid;
	unsigned perm; /* POL_RIGHT_* bits */
};
int pol_folder_acl(const struct pol_policy *p, unsigned folder, bool for_dir,
		   struct pol_acl_entry *out, size_t cap);

/* "r", "rw", "rwx", "none" for rights bits (static strings). */
const char *pol_rights_name(unsigned rights);

#endif
