/* test_watch.c - watch and respond without a mount: passphrase quality,
 * alert rules and working hours in the policy, forgetting and restoring a
 * level's keys, and freezes and level locks on a vault driven directly.
 *
 * Vault tests create their own store with kr_vault_create in a temporary
 * directory (SR_KDF=test keeps Argon2id cheap).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "strongroom/keyring.h"
#include "strongroom/policy.h"
#include "strongroom/vault.h"
#include "strongroom/watch.h"
#include "tap.h"

static const char PASS[] = "watch test passphrase";
static const char *const LEVELS[] = {"public", "internal", "confidential", "restricted"};

/* ---- passphrase quality ---- */

TEST(pass_check_refuses_short_common_and_guessable_passphrases)
{
	struct kr_pass_quality q;
	static const char *const weak[] = {
	    "",
	    "secret",
	    "Tr0ub4dor&3",
	    "correct horse battery staple",
	    "aaaaaaaaaaaaaaaaaaaa",
	    "abcdefghijklmnopqrst",
	    "password1234567890",
	    "123456789012345",
	    "a new passphrase",
	    "qwertyqwertyqwerty",
	};

	for (size_t i = 0; i < sizeof(weak) / sizeof(weak[0]); i++) {
		if (kr_pass_check(weak[i], strlen(weak[i]), &q) != -EINVAL) {
			printf("# accepted: \"%s\" (%.0f bits)\n", weak[i], q.bits);
			CHECK(0);
		}
		CHECK(q.reason != NULL);
	}
	CHECK_EQ(kr_pass_check("low two", 7, &q), -EINVAL);
	CHECK(strstr(q.reason, "shorter than 12") != NULL);
	CHECK_EQ(kr_pass_check("correct horse battery staple", 28, &q), -EINVAL);
	CHECK(strstr(q.reason, "commonly used") != NULL);
}

TEST(pass_check_accepts_long_varied_passphrases)
{
	static const char *const good[] = {
	    "integration test passphrase",
	    "branch office passphrase 4711",
	    "Kj8#mQ2!vX9zLp4w",
	    "velvet tractor oboe quarry",
	    "after forgetting",
	    "strongroom-bench-passphrase",
	};
	struct kr_pass_quality q;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (kr_pass_check(good[i], strlen(good[i]), &q) != 0) {
			printf("# refused: \"%s\": %s (%.0f bits)\n", good[i], q.reason, q.bits);
			CHECK(0);
		}
		CHECK(q.bits >= KR_PASS_MIN_BITS);
	}
}

/* ---- alert rules and working hours ---- */

static const char POLICY[] = "[vault]\n"
			     "admin-group = it\n"
			     "on-alert = /usr/local/sbin/page-security\n"
			     "[role legal]\n"
			     "group = legal\n"
			     "clearance = restricted\n"
			     "hours = mon-fri 08:00-18:00\n"
			     "outside-hours = internal\n"
			     "[role night]\n"
			     "group = night\n"
			     "clearance = confidential\n"
			     "hours = daily 22:00-06:00\n"
			     "[alert bulk]\n"
			     "when = bulk-read\n"
			     "files = 50\n"
			     "bytes = 500M\n"
			     "window = 10m\n"
			     "action = freeze\n"
			     "[alert exfil]\n"
			     "when = process\n"
			     "processes = curl, wget,nc\n"
			     "level = restricted\n"
			     "[alert night]\n"
			     "when = off-hours\n"
			     "hours = weekdays 07:00-19:00\n"
			     "[alert denied]\n"
			     "when = denials\n"
			     "count = 10\n"
			     "[alert tamper]\n"
			     "when = integrity\n";

static int lookup(const char *name, gid_t *gid, void *ctx)
{
	(void)ctx;
	if (strcmp(name, "it") == 0)
		*gid = 100;
	else if (strcmp(name, "legal") == 0)
		*gid = 200;
	else if (strcmp(name, "night") == 0)
		*gid = 300;
	else
		return -ENOENT;
	return 0;
}

static struct pol_policy *policy_parsed(const char *text)
{
	struct pol_policy *p = NULL;
	struct pol_error err;

	if (pol_parse(text, strlen(text), LEVELS, 4, &p, &err) < 0) {
		printf("# parse: line %u: %s\n", err.line, err.msg);
		return NULL;
	}
	if (pol_resolve(p, lookup, NULL, &err) < 0) {
		pol_free(p);
		return NULL;
	}
	return p;
}

static void alerts_check(const struct pol_policy *p, int *ok)
{
	*ok = 0;
	if (p->nalerts != 5 || strcmp(p->on_alert, "/usr/local/sbin/page-security") != 0)
		return;
	if (p->alerts[0].kind != POL_ALERT_BULK_READ || p->alerts[0].files != 50 ||
	    p->alerts[0].bytes != 500ull << 20 || p->alerts[0].window_sec != 600 ||
	    !p->alerts[0].freeze)
		return;
	if (p->alerts[1].kind != POL_ALERT_PROCESS || p->alerts[1].nprocs != 3 ||
	    strcmp(p->alerts[1].procs[1], "wget") != 0 ||
	    strcmp(p->alerts[1].procs[2], "nc") != 0 || p->alerts[1].level != 3 ||
	    p->alerts[1].freeze)
		return;
	if (p->alerts[2].kind != POL_ALERT_OFF_HOURS || p->alerts[2].hours.days != 0x3e ||
	    p->alerts[2].hours.from_min != 420 || p->alerts[2].hours.to_min != 1140)
		return;
	if (p->alerts[3].kind != POL_ALERT_DENIALS || p->alerts[3].count != 10 ||
	    p->alerts[4].kind != POL_ALERT_INTEGRITY)
		return;
	if (p->roles[0].hours.days != 0x3e || p->roles[0].off_hours_clearance != 1 ||
	    p->roles[1].hours.from_min != 1320 || p->roles[1].off_hours_clearance != POL_NONE)
		return;
	*ok = 1;
}

TEST(policy_alert_rules_and_hours_survive_compiling)
{
	struct pol_policy *p = policy_parsed(POLICY), *q = NULL;
	struct pol_error err;
	char buf[8192];
	ssize_t n;
	int ok;

	CHECK(p != NULL);
	alerts_check(p, &ok);
	CHECK(ok);
	n = pol_compile(p, buf, sizeof(buf));
	CHECK(n > 0);
	CHECK_EQ(pol_compile(p, NULL, 0), n);
	CHECK_EQ(pol_compile(p, buf, (size_t)n - 1), -ENOSPC);
	CHECK_EQ(pol_compile(p, buf, sizeof(buf)), n);
	CHECK_EQ(pol_compiled_parse(buf, (size_t)n, LEVELS, 4, &q, &err), 0);
	alerts_check(q, &ok);
	CHECK(ok);
	pol_free(p);
	pol_free(q);
}

TEST(policy_refuses_incomplete_or_malformed_alert_rules_with_their_line)
{
	static const struct {
		const char *text;
		unsigned line;
		const char *why;
	} bad[] = {
	    {"[alert a]\nwindow = 1m\n", 1, "no when"},
	    {"[alert a]\nwhen = bulk-read\n", 1, "files or bytes"},
	    {"[alert a]\nwhen = denials\n", 1, "needs count"},
	    {"[alert a]\nwhen = off-hours\n", 1, "needs hours"},
	    {"[alert a]\nwhen = process\nlevel = secret\n", 3, "unknown level"},
	    {"[alert a]\nwhen = sometimes\n", 2, "when must be"},
	    {"[alert a]\nwhen = denials\ncount = 0\n", 3, "above 0"},
	    {"[alert a]\nwhen = off-hours\nhours = mon-fri 8-18\n", 3, "hours must"},
	    {"[alert a]\nwhen = integrity\n[alert a]\nwhen = integrity\n", 3, "twice"},
	    {"[alert a]\nwhen = integrity\naction = delete\n", 3, "log or freeze"},
	    {"[vault]\non-alert = relative/hook\n", 2, "absolute"},
	    {"[vault]\non-alert = /bin/hook;rm\n", 2, "letters, digits"},
	    {"[role r]\ngroup = g\nclearance = public\noutside-hours = public\n", 1,
	     "without hours"},
	};
	struct pol_policy *p;
	struct pol_error err;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p = NULL;
		if (pol_parse(bad[i].text, strlen(bad[i].text), LEVELS, 4, &p, &err) != -EINVAL) {
			printf("# accepted: %s\n", bad[i].text);
			pol_free(p);
			CHECK(0);
		}
		if (err.line != bad[i].line || !strstr(err.msg, bad[i].why)) {
			printf("# case %zu: line %u: %s\n", i, err.line, err.msg);
			CHECK(0);
		}
	}
}

TEST(compiled_alert_record_that_is_malformed_is_refused)
{
	static const char *const bad[] = {
	    "strongroom-policy 1\ndefault public\nalert a when=bulk-read\n",
	    "strongroom-policy 1\ndefault public\nalert a when=integrity files=x\n",
	    "strongroom-policy 1\ndefault public\nonalert relative\n",
	    "strongroom-policy 1\ndefault public\nhours nobody 62:480-1080 none\n",
	};
	struct pol_policy *p;
	struct pol_error err;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p = NULL;
		CHECK_EQ(pol_compiled_parse(bad[i], strlen(bad[i]), LEVELS, 4, &p, &err), -EUCLEAN);
		CHECK(p == NULL);
	}
}

TEST(hours_contain_weekdays_and_run_past_midnight)
{
	struct pol_hours day = {0x3e, 480, 1080};  /* mon-fri 08:00-18:00 */
	struct pol_hours late = {0x20, 1320, 360}; /* fri 22:00-06:00 */
	struct pol_when mon9 = {1, 540}, sat9 = {6, 540}, mon18 = {1, 1080};
	struct pol_when fri23 = {5, 1380}, sat3 = {6, 180}, sat7 = {6, 420}, thu23 = {4, 1380};
	char text[64];

	CHECK(pol_hours_contain(&day, &mon9));
	CHECK(!pol_hours_contain(&day, &sat9));
	CHECK(!pol_hours_contain(&day, &mon18));
	CHECK(pol_hours_contain(&late, &fri23));
	CHECK(pol_hours_contain(&late, &sat3));
	CHECK(!pol_hours_contain(&late, &sat7));
	CHECK(!pol_hours_contain(&late, &thu23));
	pol_hours_format(&day, text, sizeof(text));
	CHECK(strcmp(text, "mon-fri 08:00-18:00") == 0);
	pol_hours_format(&late, text, sizeof(text));
	CHECK(strcmp(text, "fri 22:00-06:00") == 0);
}

TEST(role_clearance_depends_on_working_hours_when_a_time_is_given)
{
	struct pol_policy *p = policy_parsed(POLICY);
	gid_t legal = 200, night = 300;
	struct pol_caller lawyer = {1000, 1000, &legal, 1}, guard = {1001, 1001, &night, 1};
	struct pol_caller root = {0, 0, NULL, 0};
	struct pol_when tue10 = {2, 600}, tue20 = {2, 1200}, sun23 = {0, 1380};

	CHECK(p != NULL);
	CHECK_EQ(pol_clearance_at(p, &lawyer, 3, &tue10), 3);
	CHECK_EQ(pol_clearance_at(p, &lawyer, 3, &tue20), 1);
	CHECK_EQ(pol_clearance_at(p, &lawyer, 3, NULL), 3);
	CHECK(!pol_may_open_at(p, &lawyer, 3, 3, &tue20));
	CHECK(pol_may_open_at(p, &lawyer, 3, 1, &tue20));
	CHECK_EQ(pol_clearance_at(p, &guard, 3, &sun23), 2);
	CHECK_EQ(pol_clearance_at(p, &guard, 3, &tue10), POL_NONE);
	CHECK_EQ(pol_clearance_at(p, &root, 3, &tue20), 3);
	/* the old decision ignores hours */
	CHECK_EQ(pol_clearance(p, &lawyer, 3), 3);
	pol_free(p);
}

/* ---- level keys ---- */

struct fx {
	char dir[64];
	char store[128];
	struct kr_keyring *kr;
	struct vault *v;
};

static int fx_new(struct fx *f)
{
	char rec[KR_RECOVERY_TEXT_BYTES];
	struct kr_kdf_params kdf;
	struct kr_config cfg;
	struct kr_secret s = {.kind = KR_SECRET_PASSPHRASE, .bytes = PASS, .len = sizeof(PASS) - 1};
	int r;

	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/sr-watch-XXXXXX");
	if (!mkdtemp(f->dir))
		return -errno;
	snprintf(f->store, sizeof(f->store), "%s/store", f->dir);
	kr_config_default(&cfg);
	kr_kdf_params_default(&kdf);
	r = kr_vault_create(f->store, &cfg, &s, &kdf, rec, &f->kr);
	if (r < 0)
		return r;
	return vault_open(f->store, f->kr, 0, &f->v);
}

static void fx_free(struct fx *f)
{
	char cmd[128];

	vault_close(f->v);
	kr_keyring_free(f->kr);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", f->dir);
}

static int unlock(const char *store, struct kr_keyring **out)
{
	struct kr_secret s = {.kind = KR_SECRET_PASSPHRASE, .bytes = PASS, .len = sizeof(PASS) - 1};

	return kr_vault_unlock(store, &s, out);
}

TEST(level_forget_wipes_its_keys_and_restore_gives_them_back)
{
	struct fx f;
	struct kr_keyring *again = NULL, *other = NULL;
	unsigned char before[KR_KEY_BYTES];
	const unsigned char *k;

	CHECK_EQ(fx_new(&f), 0);
	k = kr_level_subkey(f.kr, 3, KR_SUB_CONTENT);
	CHECK(k != NULL);
	memcpy(before, k, sizeof(before));
	CHECK_EQ(kr_level_forget(f.kr, 3), 0);
	CHECK(!kr_level_held(f.kr, 3));
	CHECK(kr_level_forgotten(f.kr, 3));
	CHECK(kr_level_subkey(f.kr, 3, KR_SUB_CONTENT) == NULL);
	CHECK(sodium_is_zero(k, KR_KEY_BYTES));
	CHECK(kr_level_held(f.kr, 2));
	CHECK_EQ(kr_level_forget(f.kr, 3), -ENOKEY);
	CHECK_EQ(unlock(f.store, &again), 0);
	CHECK_EQ(kr_level_restore(f.kr, again, 3), 0);
	CHECK(kr_level_held(f.kr, 3));
	CHECK(sodium_memcmp(kr_level_subkey(f.kr, 3, KR_SUB_CONTENT), before, KR_KEY_BYTES) == 0);
	CHECK_EQ(kr_level_restore(f.kr, again, 3), -EINVAL); /* not forgotten */
	kr_keyring_free(again);
	/* a keyring of another vault gives nothing back */
	{
		struct fx g;

		CHECK_EQ(fx_new(&g), 0);
		CHECK_EQ(unlock(g.store, &other), 0);
		fx_free(&g);
	}
	CHECK_EQ(kr_level_forget(f.kr, 2), 0);
	CHECK_EQ(kr_level_restore(f.kr, other, 2), -EXDEV);
	CHECK(!kr_level_held(f.kr, 2));
	kr_keyring_free(other);
	fx_free(&f);
}

/* ---- the vault: freezes and level locks ---- */

static struct vault_caller root_c = {.uid = 0, .gid = 0, .pid = 1, .umask = 022};
static struct vault_caller alice = {.uid = 1000, .gid = 1000, .pid = 1, .umask = 022};
static struct vault_caller bob = {.uid = 1001, .gid = 1001, .pid = 1, .umask = 022};

static int file_put(struct vault *v, const char *path, const char *text)
{
	struct vault_handle *h = NULL;
	int r = vault_create(v, &root_c, path, 0666, O_RDWR | O_CREAT, &h);

	if (r < 0)
		return r;
	if (vault_write(h, text, strlen(text), 0) != (ssize_t)strlen(text))
		r = -EIO;
	vault_release(v, h);
	return r;
}

TEST(frozen_user_cannot_open_while_another_can_until_unfrozen)
{
	struct fx f;
	struct vault_handle *h = NULL;
	uid_t list[4];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(file_put(f.v, "/doc", "hello"), 0);
	CHECK_EQ(vault_watch_freeze(f.v, alice.uid, &root_c, "test"), 0);
	CHECK_EQ(vault_watch_freeze(f.v, alice.uid, &root_c, "test"), -EALREADY);
	CHECK_EQ(vault_watch_freeze(f.v, 0, &root_c, "test"), -EINVAL);
	CHECK(vault_watch_frozen(f.v, alice.uid));
	CHECK_EQ(vault_watch_frozen_list(f.v, list, 4), 1);
	CHECK_EQ(list[0], alice.uid);
	CHECK_EQ(vault_open_file(f.v, &alice, "/doc", O_RDONLY, &h), -EACCES);
	CHECK(h == NULL);
	CHECK_EQ(vault_create(f.v, &alice, "/new", 0644, O_RDWR | O_CREAT, &h), -EACCES);
	CHECK_EQ(vault_open_file(f.v, &bob, "/doc", O_RDONLY, &h), 0);
	vault_release(f.v, h);
	CHECK_EQ(vault_watch_unfreeze(f.v, alice.uid, &root_c), 0);
	CHECK_EQ(vault_watch_unfreeze(f.v, alice.uid, &root_c), -ENODATA);
	CHECK_EQ(vault_open_file(f.v, &alice, "/doc", O_RDONLY, &h), 0);
	vault_release(f.v, h);
	fx_free(&f);
}

TEST(locked_level_refuses_open_handles_and_new_opens_until_unlocked)
{
	struct fx f;
	struct vault_handle *held = NULL, *h = NULL;
	struct kr_keyring *again = NULL;
	struct vault_watch_status st;
	char buf[32];

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_mkdir(f.v, &root_c, "/board", 0755), 0);
	CHECK_EQ(
	    vault_setxattr(f.v, &root_c, "/board", "user.strongroom.level", "restricted", 10, 0),
	    0);
	CHECK_EQ(file_put(f.v, "/board/minutes", "minutes"), 0);
	CHECK_EQ(file_put(f.v, "/plan", "plan"), 0);
	CHECK_EQ(vault_open_file(f.v, &root_c, "/board/minutes", O_RDWR, &held), 0);
	CHECK_EQ(vault_write(held, "MINUTES", 7, 0), 7); /* unsealed: the lock seals it */
	CHECK_EQ(vault_level_lock(f.v, f.kr, 3, &root_c), 0);
	CHECK_EQ(vault_level_lock(f.v, f.kr, 3, &root_c), -ENOKEY);
	vault_watch_status(f.v, &st);
	CHECK_EQ(st.locked, 1u << 3);
	CHECK_EQ(vault_read(held, buf, sizeof(buf), 0), -ENOKEY);
	CHECK_EQ(vault_write(held, "x", 1, 0), -ENOKEY);
	CHECK(vault_open_file(f.v, &root_c, "/board/minutes", O_RDONLY, &h) < 0);
	CHECK(h == NULL);
	CHECK_EQ(vault_open_file(f.v, &root_c, "/plan", O_RDONLY, &h), 0);
	CHECK_EQ(vault_read(h, buf, sizeof(buf), 0), 4);
	vault_release(f.v, h);
	CHECK_EQ(unlock(f.store, &again), 0);
	CHECK_EQ(vault_level_unlock(f.v, f.kr, again, &root_c), 1);
	CHECK_EQ(vault_level_unlock(f.v, f.kr, again, &root_c), 0);
	kr_keyring_free(again);
	CHECK_EQ(vault_read(held, buf, sizeof(buf), 0), 7);
	CHECK(memcmp(buf, "MINUTES", 7) == 0);
	vault_release(f.v, held);
	h = NULL;
	CHECK_EQ(vault_open_file(f.v, &alice, "/board/minutes", O_RDONLY, &h), 0);
	CHECK_EQ(vault_read(h, buf, sizeof(buf), 0), 7);
	vault_release(f.v, h);
	fx_free(&f);
}

TEST(lock_refuses_a_keyring_that_is_not_the_vaults)
{
	struct fx f;
	struct kr_keyring *again = NULL;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(unlock(f.store, &again), 0);
	CHECK_EQ(vault_level_lock(f.v, again, 3, &root_c), -EINVAL);
	CHECK(kr_level_held(f.kr, 3));
	kr_keyring_free(again);
	fx_free(&f);
}

/* ---- freezes and locks saved in the store (docs/format.md 4.5) ---- */

/* Close the vault and open it again as a new mount would: a fresh keyring,
 * a fresh vault, then the saved state. @return vault_watch_state_load's. */
static int fx_remount(struct fx *f)
{
	vault_close(f->v);
	kr_keyring_free(f->kr);
	f->v = NULL;
	f->kr = NULL;
	if (unlock(f->store, &f->kr) != 0 || vault_open(f->store, f->kr, 0, &f->v) != 0)
		return -EIO;
	return vault_watch_state_load(f->v, f->kr, f->store);
}

TEST(freeze_and_lock_hold_again_after_a_remount_until_undone)
{
	struct fx f;
	struct kr_keyring *from = NULL;
	struct vault_handle *h = NULL;
	struct vault_watch_status st;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_watch_state_load(f.v, f.kr, f.store), 0);
	CHECK_EQ(file_put(f.v, "/doc", "hello"), 0);
	CHECK_EQ(vault_watch_freeze(f.v, alice.uid, &root_c, "test"), 0);
	CHECK_EQ(vault_level_lock(f.v, f.kr, 3, &root_c), 0);
	CHECK_EQ(fx_remount(&f), 0);
	CHECK(vault_watch_frozen(f.v, alice.uid));
	CHECK(!vault_watch_frozen(f.v, bob.uid));
	CHECK(!kr_level_held(f.kr, 3)); /* the passphrase's slot holds it: still wiped */
	vault_watch_status(f.v, &st);
	CHECK_EQ(st.locked, 1u << 3);
	CHECK_EQ(vault_open_file(f.v, &alice, "/doc", O_RDONLY, &h), -EACCES);
	CHECK_EQ(vault_watch_unfreeze(f.v, alice.uid, &root_c), 0);
	CHECK_EQ(unlock(f.store, &from), 0);
	CHECK_EQ(vault_level_unlock(f.v, f.kr, from, &root_c), 1);
	kr_keyring_free(from);
	CHECK_EQ(fx_remount(&f), 0);
	CHECK(!vault_watch_frozen(f.v, alice.uid));
	CHECK(kr_level_held(f.kr, 3));
	CHECK_EQ(vault_open_file(f.v, &alice, "/doc", O_RDONLY, &h), 0);
	vault_release(f.v, h);
	fx_free(&f);
}

TEST(edited_saved_state_is_refused_and_a_deleted_one_is_reported_and_rewritten)
{
	struct fx f;
	char path[256];
	unsigned char buf[512];
	ssize_t n;
	int fd;

	CHECK_EQ(fx_new(&f), 0);
	CHECK_EQ(vault_watch_state_load(f.v, f.kr, f.store), 0);
	CHECK_EQ(vault_watch_freeze(f.v, alice.uid, &root_c, "test"), 0);
	snprintf(path, sizeof(path), "%s/%s", f.store, KR_WATCH_NAME);
	fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	n = pread(fd, buf, sizeof(buf), 0);
	CHECK(n > 48);
	buf[44] ^= 0x01; /* alice's uid: someone lifting her freeze */
	CHECK_EQ(pwrite(fd, buf, (size_t)n, 0), n);
	close(fd);
	CHECK_EQ(fx_remount(&f), -EUCLEAN);
	CHECK(unlink(path) == 0);
	CHECK_EQ(fx_remount(&f), 1);
	CHECK(!vault_watch_frozen(f.v, alice.uid));
	CHECK(access(path, F_OK) == 0); /* an empty state written again */
	CHECK_EQ(fx_remount(&f), 0);
	fx_free(&f);
}

TEST(a_mount_without_the_locked_level_keeps_its_lock_in_the_saved_state)
{
	struct fx f;
	struct kr_keyring *low = NULL;
	struct vault *lv = NULL;
	struct kr_kdf_params kdf;
	struct kr_secret ls = {.kind = KR_SECRET_PASSPHRASE, .bytes = "branch office", .len = 13};
	struct vault_watch_status st;

	CHECK_EQ(fx_new(&f), 0);
	kr_kdf_params_default(&kdf);
	CHECK_EQ(kr_keyslot_add(f.store, f.kr, &ls, 1, &kdf), 2);
	CHECK_EQ(vault_watch_state_load(f.v, f.kr, f.store), 0);
	CHECK_EQ(vault_level_lock(f.v, f.kr, 3, &root_c), 0);
	vault_close(f.v);
	f.v = NULL;
	/* A branch mount: it never held restricted, saves a freeze, and must
	 * not drop the lock on the way. */
	CHECK_EQ(kr_vault_unlock(f.store, &ls, &low), 0);
	CHECK_EQ(vault_open(f.store, low, 0, &lv), 0);
	CHECK_EQ(vault_watch_state_load(lv, low, f.store), 0);
	vault_watch_status(lv, &st);
	CHECK_EQ(st.locked, 1u << 3);
	CHECK_EQ(vault_watch_freeze(lv, alice.uid, &root_c, "test"), 0);
	vault_close(lv);
	kr_keyring_free(low);
	CHECK_EQ(vault_open(f.store, f.kr, 0, &f.v), 0);
	CHECK_EQ(fx_remount(&f), 0);
	CHECK(!kr_level_held(f.kr, 3));
	CHECK(vault_watch_frozen(f.v, alice.uid));
	fx_free(&f);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	RUN(pass_check_refuses_short_common_and_guessable_passphrases);
	RUN(pass_check_accepts_long_varied_passphrases);
	RUN(policy_alert_rules_and_hours_survive_compiling);
	RUN(policy_refuses_incomplete_or_malformed_alert_rules_with_their_line);
	RUN(compiled_alert_record_that_is_malformed_is_refused);
	RUN(hours_contain_weekdays_and_run_past_midnight);
	RUN(role_clearance_depends_on_working_hours_when_a_time_is_given);
	RUN(level_forget_wipes_its_keys_and_restore_gives_them_back);
	RUN(frozen_user_cannot_open_while_another_can_until_unfrozen);
	RUN(locked_level_refuses_open_handles_and_new_opens_until_unlocked);
	RUN(lock_refuses_a_keyring_that_is_not_the_vaults);
	RUN(freeze_and_lock_hold_again_after_a_remount_until_undone);
	RUN(edited_saved_state_is_refused_and_a_deleted_one_is_reported_and_rewritten);
	RUN(a_mount_without_the_locked_level_keeps_its_lock_in_the_saved_state);
	return tap_done();
}
