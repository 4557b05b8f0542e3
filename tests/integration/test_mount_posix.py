"""POSIX behaviour through the mount: links, special files, attributes,
xattrs, statfs, rename flags, inode numbers and locks."""

import ctypes
import errno
import fcntl
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time

import pytest

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


def renameat2(src, dst, flags):
    libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    r = libc.renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), flags)
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def test_hard_links_share_inode_content_and_link_count(vault):
    _, mnt = vault
    a, b = mnt / "a.txt", mnt / "b.txt"
    a.write_bytes(b"linked content")
    os.link(a, b)
    assert os.stat(a).st_nlink == 2
    assert os.stat(a).st_ino == os.stat(b).st_ino
    assert b.read_bytes() == b"linked content"
    with open(b, "ab") as f:
        f.write(b" + more")
    assert a.read_bytes() == b"linked content + more"
    os.unlink(a)
    assert os.stat(b).st_nlink == 1
    vault.remount()
    assert b.read_bytes() == b"linked content + more"
    assert os.stat(b).st_nlink == 1


def test_directory_link_count_counts_subdirectories(vault):
    _, mnt = vault
    os.mkdir(mnt / "d")
    assert os.stat(mnt / "d").st_nlink == 2
    os.mkdir(mnt / "d" / "e")
    os.mkdir(mnt / "d" / "f")
    assert os.stat(mnt / "d").st_nlink == 4
    os.rmdir(mnt / "d" / "f")
    assert os.stat(mnt / "d").st_nlink == 3


def test_symlinks_resolve_and_readlink_returns_the_target(vault):
    _, mnt = vault
    (mnt / "target.txt").write_text("through the link")
    os.symlink("target.txt", mnt / "rel-link")
    long_target = "x/" * 1000 + "end"
    os.symlink(long_target, mnt / "long-link")
    assert os.readlink(mnt / "rel-link") == "target.txt"
    assert (mnt / "rel-link").read_text() == "through the link"
    assert stat.S_ISLNK(os.lstat(mnt / "rel-link").st_mode)
    vault.remount()
    assert os.readlink(mnt / "long-link") == long_target
    assert (mnt / "rel-link").read_text() == "through the link"


def test_fifo_created_by_mknod_carries_data_between_processes(vault):
    _, mnt = vault
    fifo = mnt / "pipe"
    os.mkfifo(fifo, 0o600)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    child = subprocess.Popen([sys.executable, "-c", f"open({str(fifo)!r}, 'w').write('via fifo')"])
    with open(fifo) as f:
        assert f.read() == "via fifo"
    assert child.wait(timeout=30) == 0
    vault.remount()
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_chmod_chown_utimens_persist(vault):
    _, mnt = vault
    p = mnt / "attrs.txt"
    p.write_text("x")
    os.chmod(p, 0o640)
    os.chown(p, 1234, 5678)
    os.utime(p, ns=(1_000_000_123_456_789, 1_500_000_987_654_321))
    os.mkdir(mnt / "dir", 0o755)
    os.chmod(mnt / "dir", 0o1770)
    vault.remount()
    st = os.stat(p)
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert st.st_mtime_ns == 1_500_000_987_654_321
    assert st.st_atime_ns == 1_000_000_123_456_789
    assert stat.S_IMODE(os.stat(mnt / "dir").st_mode) == 0o1770


def test_write_updates_mtime_and_size(vault):
    _, mnt = vault
    p = mnt / "m.txt"
    p.write_text("one")
    os.utime(p, ns=(10**18, 10**18))
    with open(p, "a") as f:
        f.write("two")
    st = os.stat(p)
    assert st.st_size == 6
    assert st.st_mtime_ns != 10**18
    assert abs(st.st_mtime - time.time()) < 300


def test_xattrs_set_get_list_remove_and_persist(vault):
    _, mnt = vault
    p = mnt / "x.txt"
    p.write_text("x")
    os.setxattr(p, "user.customer", b"acme")
    os.setxattr(p, "user.empty", b"")
    os.setxattr(mnt, "user.on-root", b"yes")
    with pytest.raises(OSError) as e:
        os.setxattr(p, "user.customer", b"other", os.XATTR_CREATE)
    assert e.value.errno == errno.EEXIST
    assert os.getxattr(p, "user.customer") == b"acme"
    vault.remount()
    assert os.getxattr(p, "user.customer") == b"acme"
    assert os.getxattr(p, "user.empty") == b""
    assert os.getxattr(mnt, "user.on-root") == b"yes"
    names = set(os.listxattr(p))
    assert {"user.customer", "user.empty"} <= names
    assert "user.strongroom.level" not in names
    os.removexattr(p, "user.customer")
    with pytest.raises(OSError) as e:
        os.getxattr(p, "user.customer")
    assert e.value.errno == errno.ENODATA


def test_level_xattr_names_the_level(vault):
    _, mnt = vault
    (mnt / "f").write_text("x")
    assert os.getxattr(mnt / "f", "user.strongroom.level") == b"public"


def test_statfs_reports_space_and_name_length(vault):
    _, mnt = vault
    st = os.statvfs(mnt)
    assert st.f_bsize > 0 and st.f_blocks > 0
    assert st.f_namemax >= 255


def test_long_file_names_up_to_255_bytes_work(vault):
    _, mnt = vault
    name = "n" * 255
    (mnt / name).write_text("long")
    assert name in os.listdir(mnt)
    vault.remount()
    assert (mnt / name).read_text() == "long"


def test_rename_noreplace_refuses_an_existing_target(vault):
    _, mnt = vault
    (mnt / "a").write_text("A")
    (mnt / "b").write_text("B")
    with pytest.raises(OSError) as e:
        renameat2(mnt / "a", mnt / "b", RENAME_NOREPLACE)
    assert e.value.errno == errno.EEXIST
    renameat2(mnt / "a", mnt / "c", RENAME_NOREPLACE)
    assert sorted(os.listdir(mnt)) == ["b", "c"]
    assert (mnt / "c").read_text() == "A"


def test_rename_exchange_swaps_two_names(vault):
    _, mnt = vault
    (mnt / "a").write_text("A")
    os.mkdir(mnt / "d")
    (mnt / "d" / "inner").write_text("I")
    renameat2(mnt / "a", mnt / "d", RENAME_EXCHANGE)
    assert (mnt / "d").read_text() == "A"
    assert (mnt / "a" / "inner").read_text() == "I"
    vault.remount()
    assert (mnt / "d").read_text() == "A"
    assert (mnt / "a" / "inner").read_text() == "I"


def test_rename_across_directories_and_over_a_file(vault):
    _, mnt = vault
    os.makedirs(mnt / "x" / "y")
    (mnt / "x" / "y" / "f").write_text("moved")
    (mnt / "g").write_text("replaced")
    os.rename(mnt / "x" / "y" / "f", mnt / "g")
    assert (mnt / "g").read_text() == "moved"
    os.rename(mnt / "x", mnt / "z")
    assert os.listdir(mnt / "z" / "y") == []
    vault.remount()
    assert sorted(os.listdir(mnt)) == ["g", "z"]


def test_inode_numbers_are_stable_across_remount_and_rename(vault):
    _, mnt = vault
    (mnt / "f").write_text("x")
    os.mkdir(mnt / "d")
    ino_f, ino_d = os.stat(mnt / "f").st_ino, os.stat(mnt / "d").st_ino
    assert ino_f != ino_d
    os.rename(mnt / "f", mnt / "d" / "f2")
    assert os.stat(mnt / "d" / "f2").st_ino == ino_f
    vault.remount()
    assert os.stat(mnt / "d" / "f2").st_ino == ino_f
    assert os.stat(mnt / "d").st_ino == ino_d
    entries = {e.name: e.inode() for e in os.scandir(mnt / "d")}
    assert entries == {"f2": ino_f}


def test_unlinked_open_file_stays_readable_and_writable(vault):
    _, mnt = vault
    p = mnt / "tmp"
    with open(p, "w+b") as f:
        f.write(b"before unlink")
        f.flush()
        os.unlink(p)
        assert not p.exists()
        f.write(b", after")
        f.flush()
        f.seek(0)
        assert f.read() == b"before unlink, after"
    assert os.listdir(mnt) == []


def test_readdir_lists_many_entries_with_types(vault):
    _, mnt = vault
    for i in range(300):
        (mnt / f"file-{i:04d}").write_text(str(i))
    os.mkdir(mnt / "sub")
    seen = {e.name: e.is_dir() for e in os.scandir(mnt)}
    assert len(seen) == 301
    assert seen["sub"] is True and seen["file-0299"] is False
    assert (mnt / "file-0123").read_text() == "123"


LOCKER = textwrap.dedent("""
    import fcntl, os, sys
    path, kind = sys.argv[1], sys.argv[2]
    fd = os.open(path, os.O_RDWR)
    try:
        if kind == "flock":
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
    except OSError:
        print("busy")
        sys.exit(0)
    print("got")
""")


@pytest.mark.parametrize("kind", ["flock", "fcntl"])
def test_locks_exclude_another_process(vault, kind):
    _, mnt = vault
    p = mnt / "locked"
    p.write_text("x" * 100)

    def other():
        r = subprocess.run([sys.executable, "-c", LOCKER, str(p), kind], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    fd = os.open(p, os.O_RDWR)
    try:
        if kind == "flock":
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
        assert other() == "busy"
        if kind == "flock":
            fcntl.flock(fd, fcntl.LOCK_UN)
        else:
            fcntl.lockf(fd, fcntl.LOCK_UN, 10, 0)
        assert other() == "got"
    finally:
        os.close(fd)


def getfacl(path):
    r = subprocess.run(["getfacl", "-cp", str(path)], check=True, capture_output=True, text=True)
    return {line.strip() for line in r.stdout.splitlines() if line.strip()}


def create_with_umask(path, mode, umask, mkdir=False):
    old = os.umask(umask)
    try:
        if mkdir:
            os.mkdir(path, mode)
        else:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
    finally:
        os.umask(old)


@pytest.mark.skipif(not shutil.which("setfacl"), reason="acl tools not installed")
def test_default_acl_decides_new_file_permissions_and_umask_is_not_applied(vault):
    _, mnt = vault
    shared = mnt / "shared"
    os.mkdir(shared, 0o770)
    subprocess.run(["setfacl", "-d", "-m", "u::rwx,u:nobody:rwx,g::rwx,o::---", str(shared)], check=True)
    create_with_umask(shared / "f", 0o666, 0o077)
    create_with_umask(shared / "sub", 0o777, 0o077, mkdir=True)
    acl = getfacl(shared / "f")
    assert "user:nobody:rwx\t#effective:rw-" in acl or "user:nobody:rwx" in acl
    assert "mask::rw-" in acl, f"umask was applied over the default ACL: {acl}"
    assert stat.S_IMODE(os.stat(shared / "f").st_mode) == 0o660
    sub = getfacl(shared / "sub")
    assert "default:user:nobody:rwx" in sub, "a new directory inherits the default ACL"
    assert "mask::rwx" in sub
    vault.remount()
    assert "mask::rw-" in getfacl(shared / "f")


def test_without_default_acl_the_umask_applies(vault):
    _, mnt = vault
    create_with_umask(mnt / "f", 0o666, 0o027)
    create_with_umask(mnt / "d", 0o777, 0o027, mkdir=True)
    assert stat.S_IMODE(os.stat(mnt / "f").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(mnt / "d").st_mode) == 0o750


def test_a_name_created_after_a_failed_lookup_is_found(vault):
    _, mnt = vault
    assert not (mnt / "later").exists()
    (mnt / "later").write_text("now here")
    assert (mnt / "later").read_text() == "now here"
    os.rename(mnt / "later", mnt / "moved")
    assert not (mnt / "later").exists()
    assert (mnt / "moved").exists()


def test_large_directory_lists_completely_across_many_readdir_calls_and_rmtree_empties_it(vault):
    _, mnt = vault
    big = mnt / "big"
    os.mkdir(big)
    names = {f"{i:05d}-" + "n" * 200 for i in range(1000)}
    for n in names:
        (big / n).write_bytes(b"")
    assert set(os.listdir(big)) == names
    vault.remount()
    assert set(os.listdir(big)) == names
    shutil.rmtree(big)
    assert not big.exists()
    assert os.listdir(mnt) == []


def test_a_file_raised_above_its_new_folders_level_is_still_found_after_the_caches_drop(vault):
    """A folder this mount made (or listed whole) is known to hold no name
    above its level, so lookups of missing names skip the other levels;
    raising a file's level there must undo that, or the file would vanish."""
    from conftest import sr
    _, mnt = vault
    for listed in (False, True):
        d = mnt / f"fresh{int(listed)}"
        d.mkdir()
        (d / "a.txt").write_bytes(b"kept")
        (d / "b.txt").write_bytes(b"other")
        if listed:
            assert sorted(os.listdir(d)) == ["a.txt", "b.txt"]
        sr("level", "set", d / "a.txt", "confidential")
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")  # dentries and inodes: the next stat is a lookup
        assert (d / "a.txt").read_bytes() == b"kept"
        assert sorted(os.listdir(d)) == ["a.txt", "b.txt"]
        assert not (d / "c.txt").exists()
