"""Bad input the other suites do not cover: empty secrets, recovery keys with
typos at every position, a store of another tool, unmounting what is not a
vault, names at the 255-byte limit with every byte a Linux name may hold, a
store on a full disk and a store on a read-only filesystem. Each gives one
clear line and its documented exit code or errno, and never changes a byte
of the store it refuses."""

import errno
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import PASSPHRASE, sr

EXIT_MOUNTPOINT, EXIT_STORE, EXIT_SECRET_SOURCE, EXIT_WRONG_SECRET = 5, 4, 6, 3


def tree_digest(root):
    """Hash of every path, mode and content below root."""
    h = hashlib.sha256()
    for dirpath, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files) + dirs:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(p.encode() + b"%o" % st.st_mode)
            if os.path.isfile(p):
                h.update(open(p, "rb").read())
    return h.hexdigest()


def one_line(p):
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got: {p.stderr!r}"
    return lines[0]


# ---- secrets

@pytest.mark.parametrize("content", ["", "\n", "\r\n"])
def test_an_empty_passphrase_is_refused_at_init_and_creates_nothing(tmp_path, content):
    pf = tmp_path / "pass"
    pf.write_text(content)
    p = sr("init", tmp_path / "store", "--passphrase-file", pf, check=False)
    assert p.returncode == EXIT_SECRET_SOURCE
    assert str(pf) in one_line(p)
    assert not (tmp_path / "store").exists()


def test_an_empty_passphrase_from_extpass_is_refused_at_mount(fresh_vault):
    v = fresh_vault
    before = tree_digest(v.store)
    p = sr("mount", v.store, v.mnt, "--extpass", "printf ''", check=False)
    assert p.returncode == EXIT_SECRET_SOURCE
    one_line(p)
    assert not os.path.ismount(v.mnt)
    assert tree_digest(v.store) == before


def recovery_key(tmp_path):
    store = tmp_path / "rstore"
    pf = tmp_path / "rpass"
    pf.write_text(PASSPHRASE + "\n")
    out = sr("init", store, "--passphrase-file", pf).stdout
    key = [w for w in out.split() if w.count("-") == 8][0]
    return store, key


def test_a_recovery_key_with_a_typo_in_any_group_is_caught_and_mounts_nothing(tmp_path):
    store, key = recovery_key(tmp_path)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    before = tree_digest(store)
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    kf = tmp_path / "key"
    for pos in range(0, len(key), 5):  # the first character of every group
        wrong = alphabet[(alphabet.index(key[pos]) + 1) % len(alphabet)]
        kf.write_text(key[:pos] + wrong + key[pos + 1:] + "\n")
        p = sr("mount", store, mnt, "--recovery-key-file", kf, check=False)
        assert p.returncode == EXIT_WRONG_SECRET, f"typo at {pos}: exit {p.returncode}"
        one_line(p)
        assert not os.path.ismount(mnt)
    # Dropped and doubled characters too.
    for bad in (key[:-1], key + key[-1], key.replace("-", "", 1)[:-1]):
        kf.write_text(bad + "\n")
        p = sr("mount", store, mnt, "--recovery-key-file", kf, check=False)
        assert p.returncode in (EXIT_WRONG_SECRET, EXIT_SECRET_SOURCE), bad
        assert not os.path.ismount(mnt)
    assert tree_digest(store) == before
    kf.write_text(key + "\n")
    sr("mount", store, mnt, "--recovery-key-file", kf)
    try:
        assert os.path.ismount(mnt)
    finally:
        sr("unmount", mnt)


# ---- another tool's store

@pytest.fixture
def gocryptfs_store(tmp_path):
    if not shutil.which("gocryptfs"):
        pytest.skip("gocryptfs is not installed (tools/deps.sh bench)")
    d = tmp_path / "gocryptfs"
    d.mkdir()
    subprocess.run(["gocryptfs", "-q", "-init", "-scryptn", "10", "-extpass", "echo secret", str(d)],
                   check=True, capture_output=True, timeout=60)
    return d


@pytest.mark.parametrize("cmd", ["mount", "fsck", "audit", "keyslot", "init"])
def test_a_gocryptfs_store_is_refused_as_not_a_vault_and_left_alone(tmp_path, gocryptfs_store,
                                                                     cmd):
    pf = tmp_path / "pass"
    pf.write_text("secret\n")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    before = tree_digest(gocryptfs_store)
    args = {
        "mount": ["mount", gocryptfs_store, mnt, "--passphrase-file", pf],
        "fsck": ["fsck", gocryptfs_store, "--passphrase-file", pf, "--repair"],
        "audit": ["audit", "verify", gocryptfs_store, "--passphrase-file", pf],
        "keyslot": ["keyslot", "list", gocryptfs_store],
        "init": ["init", gocryptfs_store, "--passphrase-file", pf],
    }[cmd]
    p = sr(*args, check=False)
    assert p.returncode == EXIT_STORE, f"exit {p.returncode}: {p.stderr}"
    assert str(gocryptfs_store) in one_line(p)
    assert not os.path.ismount(mnt)
    assert tree_digest(gocryptfs_store) == before


# ---- unmount and mount points

@pytest.mark.parametrize("what", ["plain directory", "missing path", "regular file", "tmpfs"])
def test_unmount_of_something_that_is_not_a_vault_is_refused(tmp_path, what):
    target = tmp_path / "t"
    if what == "plain directory":
        target.mkdir()
    elif what == "regular file":
        target.write_text("x")
    elif what == "tmpfs":
        target.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)], check=True)
    try:
        p = sr("unmount", target, check=False)
        assert p.returncode == EXIT_MOUNTPOINT, f"exit {p.returncode}: {p.stderr}"
        one_line(p)
        if what == "tmpfs":
            assert os.path.ismount(target), "a foreign mount was unmounted"
    finally:
        if what == "tmpfs":
            subprocess.run(["umount", str(target)], check=False)


def test_a_store_inside_its_own_mount_point_is_refused(fresh_vault):
    v = fresh_vault
    p = sr("mount", v.store, v.store / "tree", "--passphrase-file", v.passfile, check=False)
    assert p.returncode in (EXIT_MOUNTPOINT, EXIT_STORE)
    one_line(p)
    assert not os.path.ismount(v.store / "tree")


# ---- names

def every_name_byte_names():
    """Names of exactly 255 bytes that together hold every byte value a
    Linux name may hold (1..255 but '/'), each in several positions."""
    values = [b for b in range(1, 256) if b != ord("/")]
    names = [bytes([b]) * 255 for b in values if b != ord(".")]
    names.append(b"." * 255)
    seq = bytes(values)
    for shift in range(0, len(values), 37):
        rot = seq[shift:] + seq[:shift]
        names.append((rot * 2)[:255])
    return names


def test_names_of_255_bytes_with_every_byte_value_survive_remount(vault):
    mnt = bytes(vault.mnt)
    names = every_name_byte_names()
    for i, n in enumerate(names):
        assert len(n) == 255
        with open(os.path.join(mnt, n), "wb") as f:
            f.write(b"%d" % i)
    for attempt in range(2):
        listed = set(os.listdir(mnt))
        assert listed == set(names), f"listing differs (pass {attempt})"
        for i, n in enumerate(names):
            with open(os.path.join(mnt, n), "rb") as f:
                assert f.read() == b"%d" % i
        vault.remount()
    with pytest.raises(OSError) as e:
        open(os.path.join(mnt, b"n" * 256), "wb")
    assert e.value.errno == errno.ENAMETOOLONG
    # Renames between two long names keep content.
    os.rename(os.path.join(mnt, names[0]), os.path.join(mnt, b"\xff" * 254 + b"\x01"))
    with open(os.path.join(mnt, b"\xff" * 254 + b"\x01"), "rb") as f:
        assert f.read() == b"0"


# ---- full and read-only stores

@pytest.fixture
def small_fs():
    d = Path(tempfile.mkdtemp(prefix="sr-battery-", dir="/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(d)], check=True)
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)
    d.rmdir()


def test_a_full_store_fails_writes_with_enospc_and_loses_nothing_earlier(fresh_vault, small_fs):
    v = fresh_vault
    v.store = small_fs / "store"
    sr("init", v.store, "--passphrase-file", v.passfile)
    v.mount()
    keep = os.urandom(300000)
    (v.mnt / "keep.bin").write_bytes(keep)
    filler = small_fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, bytes(65536))
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    os.truncate(filler, os.path.getsize(filler) - (2 << 20))  # 2 MiB left
    v.expect_log(r"(?i)no space|audit|seal|closing")
    fd = os.open(v.mnt / "big.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    synced, err = b"", None
    written = b""
    try:
        for i in range(200):
            block = os.urandom(65536)
            os.write(fd, block)
            written += block
            if i % 4 == 3:
                os.fsync(fd)
                synced = written
    except OSError as e:
        err = e.errno
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    assert err == errno.ENOSPC, f"a write on a full store failed with {err}"
    assert len(synced) > 0
    assert (v.mnt / "keep.bin").read_bytes() == keep
    v.unmount()
    filler.unlink()
    v.mount()
    assert (v.mnt / "keep.bin").read_bytes() == keep
    got = (v.mnt / "big.bin").read_bytes()
    assert got[:len(synced)] == synced, "a synced byte was lost on the full disk"
    v.unmount()
    p = sr("audit", "verify", v.store, "--passphrase-file", v.passfile, check=False)
    assert p.returncode == 0, p.stdout + p.stderr


def test_a_store_on_a_read_only_filesystem_mounts_read_only_and_refuses_a_writer(
        fresh_vault, small_fs):
    v = fresh_vault
    v.store = small_fs / "store"
    sr("init", v.store, "--passphrase-file", v.passfile)
    v.mount()
    (v.mnt / "doc.txt").write_text("on a read-only disk")
    v.unmount()
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    p = sr("mount", v.store, v.mnt, "--passphrase-file", v.passfile, "--log-file", v.log,
           check=False)
    assert p.returncode == EXIT_STORE, f"exit {p.returncode}: {p.stderr}"
    assert "Read-only" in one_line(p)
    assert not os.path.ismount(v.mnt)
    # A read-only mount writes its own audit chain: on a read-only store it
    # is refused unless the admin accepts an unaudited mount.
    p = sr("mount", v.store, v.mnt, "--read-only", "--passphrase-file", v.passfile, "--log-file",
           v.log, check=False)
    assert p.returncode == EXIT_STORE, f"exit {p.returncode}: {p.stderr}"
    assert "--no-audit mounts it unaudited" in one_line(p)
    assert not os.path.ismount(v.mnt)
    v.expect_log(r"--no-audit: nothing is recorded")
    v.mount("--read-only", "--no-audit")
    assert (v.mnt / "doc.txt").read_text() == "on a read-only disk"
    for attempt in (lambda: (v.mnt / "new.txt").write_text("x"),
                    lambda: (v.mnt / "doc.txt").write_text("x"),
                    lambda: os.mkdir(v.mnt / "dir"),
                    lambda: os.setxattr(v.mnt / "doc.txt", "user.strongroom.level", b"public")):
        with pytest.raises(OSError) as e:
            attempt()
        assert e.value.errno == errno.EROFS
    assert (v.mnt / "doc.txt").read_text() == "on a read-only disk"
    v.unmount()
    subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)


@pytest.mark.parametrize("path", ["/nonexistent/doc.txt", "/tmp"])
def test_level_get_of_a_path_outside_a_vault_prints_one_line_and_does_not_crash(path):
    p = sr("level", "get", path, check=False)
    assert 0 < p.returncode < 128, f"exit {p.returncode} (killed by a signal?)"
    assert path in one_line(p)
