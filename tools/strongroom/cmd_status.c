/* cmd_status.c - strongroom status [MOUNTPOINT] [--json]
 *
 * Lists mounted vaults from the kernel's mount table (type fuse.strongroom),
 * with the driver's pid and log from its runtime file. It never talks to a
 * driver, so a hung or killed driver cannot hang it; a mount whose driver is
 * gone shows pid "-" (null in JSON) and state "dead".
 *
 * --json prints one array of objects:
 *   [{"mountpoint": "...", "store": "...", "pid": 123, "read_only": false,
 *     "state": "running", "log": "..."}]
 *
 * With a MOUNTPOINT, and only then, it also asks that driver over its
 * control channel (control.h, two seconds at most; root or the admin group)
 * for its unlocked and locked levels, open files, frozen users and audit
 * state: indented lines after the row, or a "watch" object in JSON.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "control.h"
#include "strongroom/frontend.h"

#define ST_CONTROL_TIMEOUT_SEC 2

/* The driver's own report (control.c "status"): key=value lines. */
static void st_watch(const char *mountpoint, bool json)
{
	char reply[CTL_REPLY_MAX], *line, *save = NULL;
	bool first = true;

	if (ctl_request(mountpoint, "status", NULL, 0, reply, sizeof(reply),
			ST_CONTROL_TIMEOUT_SEC) != 0)
		return;
	if (json)
		printf(", \"watch\": {");
	for (line = strtok_r(reply, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');

		if (!eq)
			continue;
		*eq = '\0';
		if (json) {
			printf("%s\"%s\": \"", first ? "" : ", ", line);
			for (const char *p = eq + 1; *p; p++)
				if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
					putchar(*p);
			printf("\"");
		} else {
			for (char *p = line; *p; p++)
				if (*p == '_')
					*p = ' ';
			printf("  %s: %s\n", line, eq[1] ? eq + 1 : "-");
		}
		first = false;
	}
	if (json)
		printf("}");
}

struct st_ctx {
	const char *only; /* canonical mount point, or NULL for all */
	bool json;
	int count;
};

static void st_json_string(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

static int st_print(const struct fe_mount *m, void *arg)
{
	struct st_ctx *ctx = arg;
	struct fe_runtime rt;
	bool have = fe_runtime_find(m->mountpoint, &rt) == 0;
	bool ro = m->read_only || (have && rt.read_only);

	if (ctx->only && strcmp(ctx->only, m->mountpoint) != 0)
		return 0;
	if (ctx->json) {
		printf("%s\n  {\"mountpoint\": ", ctx->count ? "," : "");
		st_json_string(m->mountpoint);
		printf(", \"store\": ");
		st_json_string(m->source);
		if (have)
			printf(", \"pid\": %ld", (long)rt.pid);
		else
			printf(", \"pid\": null");
		printf(", \"read_only\": %s, \"state\": \"%s\", \"log\": ", ro ? "true" : "false",
		       have ? "running" : "dead");
		if (have && rt.log[0])
			st_json_string(rt.log);
		else
			printf("null");
		if (have && ctx->only)
			st_watch(m->mountpoint, true);
		printf("}");
	} else {
		if (ctx->count == 0)
			printf("%-30s %-30s %8s  %-4s %s\n", "MOUNTPOINT", "STORE", "PID", "MODE",
			       "STATE");
		if (have)
			printf("%-30s %-30s %8ld  %-4s %s\n", m->mountpoint, m->source,
			       (long)rt.pid, ro ? "ro" : "rw", "running");
		if (have && ctx->only)
			st_watch(m->mountpoint, false);
		else
			printf("%-30s %-30s %8s  %-4s %s\n", m->mountpoint, m->source, "-",
			       ro ? "ro" : "rw", "dead");
	}
	ctx->count++;
	return 0;
}

int cmd_status(int argc, char **argv)
{
	struct st_ctx ctx = {0};
	char canon[PATH_MAX];
	const char *arg = NULL;
	int err;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			ctx.json = true;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			cli_err(argv[i], "unknown option to status");
			return EXIT_USAGE;
		} else if (!arg) {
			arg = argv[i];
		} else {
			cli_err(argv[i], "unexpected argument to status");
			return EXIT_USAGE;
		}
	}
	if (arg) {
		/* A dead mount cannot be resolved; compare the path as given. */
		if (!realpath(arg, canon))
			snprintf(canon, sizeof(canon), "%s", arg);
		ctx.only = canon;
	}
	if (ctx.json)
		printf("[");
	err = fe_mount_each(st_print, &ctx);
	if (ctx.json)
		printf("%s]\n", ctx.count ? "\n" : "");
	if (err < 0) {
		cli_err("/proc/self/mountinfo", "%s", strerror(-err));
		return EXIT_FAIL;
	}
	if (arg && ctx.count == 0) {
		cli_err(arg, "not a mounted vault");
		return EXIT_MOUNTPOINT;
	}
	if (!arg && ctx.count == 0 && !ctx.json)
		printf("no vaults mounted\n");
	return EXIT_OK;
}
