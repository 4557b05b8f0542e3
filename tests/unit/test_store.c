/* test_store.c - the store's syscall wrappers and their fault injection. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strongroom/store.h"
#include "tap.h"

#include <sys/wait.h>

static int waitpid_ok(pid_t pid, int *status)
{
	return waitpid(pid, status, 0) == pid;
}

static int dirfd_;
static char dir[64];

TEST(openat_refuses_to_follow_a_planted_symlink)
{
	CHECK(symlinkat("/etc/passwd", dirfd_, "link") == 0);
	int fd = store_openat(dirfd_, "link", O_RDONLY, 0);
	CHECK_EQ(fd, -ELOOP);
	CHECK_EQ(store_unlinkat(dirfd_, "link", 0), 0);
}

TEST(opened_fds_are_close_on_exec)
{
	int fd = store_openat(dirfd_, "f", O_RDWR | O_CREAT, 0600);
	CHECK(fd >= 0);
	CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	store_close(fd);
	CHECK_EQ(store_unlinkat(dirfd_, "f", 0), 0);
}

TEST(pwrite_then_pread_roundtrip_and_pread_is_short_only_at_eof)
{
	char buf[100];
	int fd = store_openat(dirfd_, "g", O_RDWR | O_CREAT | O_EXCL, 0600);
	CHECK(fd >= 0);
	CHECK_EQ(store_pwrite(fd, "0123456789", 10, 5), 10);
	CHECK_EQ(store_pread(fd, buf, sizeof buf, 0), 15);
	CHECK(memcmp(buf + 5, "0123456789", 10) == 0);
	CHECK_EQ(store_pread(fd, buf, 4, 11), 4);
	CHECK_EQ(store_ftruncate(fd, 3), 0);
	struct stat st;
	CHECK_EQ(store_fstat(fd, &st), 0);
	CHECK_EQ(st.st_size, 3);
	store_close(fd);
	CHECK_EQ(store_openat(dirfd_, "g", O_RDWR | O_CREAT | O_EXCL, 0600), -EEXIST);
	CHECK_EQ(store_unlinkat(dirfd_, "g", 0), 0);
}

TEST(fault_rule_fails_exactly_the_nth_write)
{
	int fd = store_openat(dirfd_, "h", O_RDWR | O_CREAT, 0600);
	CHECK(fd >= 0);
	store_fault_set(STORE_OP_WRITE, 3, -ENOSPC);
	CHECK_EQ(store_pwrite(fd, "a", 1, 0), 1);
	CHECK_EQ(store_pwrite(fd, "b", 1, 1), 1);
	CHECK_EQ(store_fsync(fd, true), 0);
	CHECK_EQ(store_pwrite(fd, "c", 1, 2), -ENOSPC);
	CHECK_EQ(store_pwrite(fd, "d", 1, 3), 1);
	store_fault_set(STORE_OP_FSYNC, 1, -EIO);
	CHECK_EQ(store_fsync(fd, false), -EIO);
	CHECK_EQ(store_fsync(fd, false), 0);
	store_fault_set(STORE_OP_WRITE, 0, 0);
	store_close(fd);
	CHECK_EQ(store_unlinkat(dirfd_, "h", 0), 0);
}

/* Run in a fresh process (re-exec), which reads SR_FAULT at its first call. */
static int env_rename_child(void)
{
	int fd = store_openat(dirfd_, "r1", O_RDWR | O_CREAT, 0600);
	store_close(fd);
	if (store_renameat(dirfd_, "r1", dirfd_, "r2", 0) != 0)
		return 1;
	if (store_renameat(dirfd_, "r2", dirfd_, "r3", 0) != -EIO)
		return 2;
	store_unlinkat(dirfd_, "r2", 0);
	return 0;
}

TEST(fault_rule_from_environment_fails_the_nth_rename)
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		setenv("SR_FAULT", "rename:2:eio", 1);
		execl("/proc/self/exe", "test_store", dir, (char *)NULL);
		_exit(3);
	}
	int status;
	CHECK(waitpid_ok(pid, &status));
	CHECK(WIFEXITED(status));
	CHECK_EQ(WEXITSTATUS(status), 0);
}

TEST(abort_rule_kills_the_process_at_the_nth_write)
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		store_fault_set(STORE_OP_WRITE, 2, 0);
		int fd = store_openat(dirfd_, "k", O_RDWR | O_CREAT, 0600);
		store_pwrite(fd, "1", 1, 0);
		store_pwrite(fd, "2", 1, 1);
		_exit(0);
	}
	int status;
	CHECK(waitpid_ok(pid, &status));
	CHECK(WIFSIGNALED(status));
	char buf[4];
	CHECK_EQ(store_read_small(dirfd_, "k", buf, sizeof buf), 1);
	CHECK_EQ(store_unlinkat(dirfd_, "k", 0), 0);
}

TEST(write_atomic_replaces_whole_and_read_small_bounds_size)
{
	char buf[16];
	CHECK_EQ(store_write_atomic(dirfd_, "conf", "version 1", 9), 0);
	CHECK_EQ(store_write_atomic(dirfd_, "conf", "v2", 2), 0);
	CHECK_EQ(store_read_small(dirfd_, "conf", buf, sizeof buf), 2);
	CHECK(memcmp(buf, "v2", 2) == 0);
	CHECK_EQ(store_read_small(dirfd_, "conf", buf, 1), -EFBIG);
	CHECK_EQ(store_read_small(dirfd_, "missing", buf, sizeof buf), -ENOENT);
	CHECK_EQ(store_unlinkat(dirfd_, "conf", 0), 0);
}

TEST(mkdir_link_rename_and_fstatat_do_not_follow_symlinks)
{
	struct stat st;
	CHECK_EQ(store_mkdirat(dirfd_, "d", 0700), 0);
	CHECK_EQ(store_mkdirat(dirfd_, "d", 0700), -EEXIST);
	CHECK(symlinkat("d", dirfd_, "s") == 0);
	CHECK_EQ(store_fstatat(dirfd_, "s", &st), 0);
	CHECK(S_ISLNK(st.st_mode));
	CHECK_EQ(store_renameat(dirfd_, "s", dirfd_, "d", 2 /* RENAME_EXCHANGE */), 0);
	CHECK_EQ(store_fstatat(dirfd_, "d", &st), 0);
	CHECK(S_ISLNK(st.st_mode));
	CHECK_EQ(store_unlinkat(dirfd_, "d", 0), 0);
	CHECK_EQ(store_unlinkat(dirfd_, "s", AT_REMOVEDIR), 0);
}

TEST(tmpfile_is_invisible_until_linked_and_link_refuses_a_taken_name)
{
	struct stat st;
	char buf[4];
	int fd = store_tmpfile(dirfd_, 0600);
	CHECK(fd >= 0);
	CHECK_EQ(store_pwrite(fd, "abc", 3, 0), 3);
	CHECK_EQ(store_fstatat(dirfd_, "t", &st), -ENOENT);
	CHECK_EQ(store_tmpfile_link(fd, dirfd_, "t"), 0);
	CHECK_EQ(store_read_small(dirfd_, "t", buf, sizeof buf), 3);
	store_close(fd);
	fd = store_tmpfile(dirfd_, 0600);
	CHECK(fd >= 0);
	CHECK_EQ(store_tmpfile_link(fd, dirfd_, "t"), -EEXIST);
	store_close(fd);
	CHECK_EQ(store_unlinkat(dirfd_, "t", 0), 0);
}

int main(int argc, char **argv)
{
	if (argc == 2) {
		strcpy(dir, argv[1]);
		dirfd_ = open(dir, O_RDONLY | O_DIRECTORY);
		return env_rename_child();
	}
	strcpy(dir, "/tmp/sr-test-store-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	dirfd_ = open(dir, O_RDONLY | O_DIRECTORY);
	RUN(openat_refuses_to_follow_a_planted_symlink);
	RUN(opened_fds_are_close_on_exec);
	RUN(pwrite_then_pread_roundtrip_and_pread_is_short_only_at_eof);
	RUN(fault_rule_fails_exactly_the_nth_write);
	RUN(fault_rule_from_environment_fails_the_nth_rename);
	RUN(abort_rule_kills_the_process_at_the_nth_write);
	RUN(write_atomic_replaces_whole_and_read_small_bounds_size);
	RUN(mkdir_link_rename_and_fstatat_do_not_follow_symlinks);
	RUN(tmpfile_is_invisible_until_linked_and_link_refuses_a_taken_name);
	close(dirfd_);
	rmdir(dir);
	return tap_done();
}
