/* pol_internal.h - what pol_parse.c asks of pol_watch.c (not a public API).
 *
 * The alert rules, the on-alert hook and the roles' working hours are
 * parsed, checked and compiled in pol_watch.c; pol_parse.c hands it the
 * settings and records it does not know itself. Each function fills why
 * (one line) on -EINVAL / -EUCLEAN and returns -ENOENT for a setting or
 * record that is not one of its own.
 */
#ifndef STRONGROOM_POL_INTERNAL_H
#define STRONGROOM_POL_INTERNAL_H

#include <stddef.h>

#include "strongroom/policy.h"

/* [vault] on-alert = /path */
int pol_vault_setting(struct pol_policy *p, const char *k, size_t kn, const char *v, size_t vn,
		      char *why, size_t cap);
/* [role NAME] hours = DAYS HH:MM-HH:MM, outside-hours = LEVEL|none */
int pol_role_setting(const struct pol_policy *p, struct pol_role *r, const char *k, size_t kn,
		     const char *v, size_t vn, char *why, size_t cap);
/* A "[alert NAME]" header: a new rule. @return its index or -EINVAL. */
int pol_alert_add(struct pol_policy *p, const char *name, size_t n, unsigned line, char *why,
		  size_t cap);
int pol_alert_setting(const struct pol_policy *p, struct pol_alert *a, const char *k, size_t kn,
		      const char *v, size_t vn, char *why, size_t cap);
/* After the definitions: every rule and schedule complete. @return 0, or
 * -EINVAL with *line and why. */
int pol_watch_check(const struct pol_policy *p, unsigned *line, char *why, size_t cap);
/* The compiled records (hours, onalert, alert): writes them only if they
 * all fit in cap bytes (no NUL; out may be NULL with cap 0). @return the
 * length they need. */
size_t pol_watch_compile(const struct pol_policy *p, char *out, size_t cap);
/* One compiled record whose first field is f; rest is what follows it.
 * @return 0, -ENOENT if not ours, -EUCLEAN with why. */
int pol_watch_compiled_line(struct pol_policy *p, const char *f, size_t fn, const char *rest,
			    size_t rn, char *why, size_t cap);

#endif
