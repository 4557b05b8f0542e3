/* test_kaudit.c - the parser of the kernel's audit records (fs/frontend/fe_kaudit.h),
 * on records as a Linux 6 kernel writes them. */
#include <string.h>

#include "../../fs/frontend/fe_kaudit.h"
#include "tap.h"

static const char syscall_rec[] =
    "audit(1796687559.137:7): arch=c000003e syscall=257 success=no exit=-13 a0=ffffff9c "
    "a1=7ffc9252f7d9 a2=0 a3=0 items=1 ppid=15842 pid=15843 auid=4294967295 uid=65534 "
    "gid=65534 euid=65534 tty=(none) ses=4294967295 comm=\"cat\" exe=\"/usr/bin/cat\" "
    "key=\"strongroom:42:0:41\"";
static const char path_rec[] =
    "audit(1796687559.153:14): item=0 name=2F746D702F6D79206D6E742F612E747874 "
    "inode=8605426627547792027 dev=00:29 mode=0100600 ouid=0 ogid=0 rdev=00:00 "
    "nametype=NORMAL cap_fp=0";

TEST(serial_is_read_from_the_record_stamp)
{
	CHECK_EQ(fe_kaudit_serial(syscall_rec, strlen(syscall_rec)), 7);
	CHECK_EQ(fe_kaudit_serial(path_rec, strlen(path_rec)), 14);
	CHECK_EQ(fe_kaudit_serial("audit(1.2:)", 11), 0);
	CHECK_EQ(fe_kaudit_serial("audit(1.2:99", 12), 0);
	CHECK_EQ(fe_kaudit_serial("nothing", 7), 0);
	CHECK_EQ(fe_kaudit_serial("audit(1.2:99999999999999999999999)", 34), 0);
}

TEST(fields_are_decoded_quoted_hex_or_plain)
{
	char out[256];

	CHECK_EQ(fe_kaudit_field(syscall_rec, strlen(syscall_rec), "comm", out, sizeof out), 3);
	CHECK(strcmp(out, "cat") == 0);
	CHECK_EQ(fe_kaudit_field(syscall_rec, strlen(syscall_rec), "key", out, sizeof out), 18);
	CHECK(strcmp(out, "strongroom:42:0:41") == 0);
	CHECK_EQ(fe_kaudit_field(syscall_rec, strlen(syscall_rec), "exit", out, sizeof out), 3);
	CHECK(strcmp(out, "-13") == 0);
	/* "uid" is not the tail of "auid" or "euid" */
	CHECK_EQ(fe_kaudit_field(syscall_rec, strlen(syscall_rec), "uid", out, sizeof out), 5);
	CHECK(strcmp(out, "65534") == 0);
	CHECK_EQ(fe_kaudit_field(syscall_rec, strlen(syscall_rec), "tty", out, sizeof out), 6);
	CHECK_EQ(fe_kaudit_field("audit(1.2:3): name=(null)", 25, "name", out, sizeof out), 0);
	CHECK_EQ(fe_kaudit_field(syscall_rec, strlen(syscall_rec), "missing", out, sizeof out), -1);
	/* a name with a space comes hex-encoded */
	CHECK(fe_kaudit_field(path_rec, strlen(path_rec), "name", out, sizeof out) > 0);
	CHECK(strcmp(out, "/tmp/my mnt/a.txt") == 0);
	/* a number that looks like hex stays a number */
	CHECK(fe_kaudit_field(path_rec, strlen(path_rec), "inode", out, sizeof out) > 0);
	CHECK(strcmp(out, "8605426627547792027") == 0);
	CHECK(fe_kaudit_field(path_rec, strlen(path_rec), "nametype", out, sizeof out) > 0);
	CHECK(strcmp(out, "NORMAL") == 0);
}

TEST(fields_that_do_not_fit_or_hold_a_nul_are_refused)
{
	char out[4];
	static const char nul[] = "audit(1.2:3): name=410042";

	CHECK_EQ(fe_kaudit_field(syscall_rec, strlen(syscall_rec), "exe", out, sizeof out), -1);
	CHECK_EQ(fe_kaudit_field(nul, strlen(nul), "name", out, sizeof out), -1);
	CHECK_EQ(fe_kaudit_field(syscall_rec, strlen(syscall_rec), "comm", out, 0), -1);
}

int main(void)
{
	RUN(serial_is_read_from_the_record_stamp);
	RUN(fields_are_decoded_quoted_hex_or_plain);
	RUN(fields_that_do_not_fit_or_hold_a_nul_are_refused);
	return tap_done();
}
