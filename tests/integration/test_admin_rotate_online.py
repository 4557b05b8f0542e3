"""strongroom rotate on a mounted store: the driver re-encrypts the level
while staff keep their files open; a reader and a writer holding handles
across the rotation go on and lose nothing, the old key opens nothing of
the result, a driver killed midway leaves a rotation that resumes offline,
and staff cannot start one."""

import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import SR_BIN, pid_running, sr, wait_until
from test_admin_rotate import check_content, fill, fsck_rc, rotate, tree_files

EXIT_STORE = 4


def audit_rotate_details(v):
    p = sr("audit", "show", v.store, "--passphrase-file", v.passfile, "--event", "rotate", "--json")
    import json
    return [json.loads(line).get("detail", "") for line in p.stdout.splitlines() if line.strip()]


def test_a_mounted_store_is_rotated_by_its_driver_and_open_handles_carry_on(fresh_vault, tmp_path):
    v = fresh_vault
    content = fill(v)
    before = tree_files(v.store)
    old_copy = tmp_path / "old-copy"
    shutil.copytree(v.store, old_copy)
    v.mount()
    # A writer and a reader hold handles across the rotation.
    w = open(v.mnt / "a" / "log.txt", "ab", buffering=0)
    w.write(b"before rotation\n")
    os.fsync(w.fileno())
    r = open(v.mnt / "a" / "one.bin", "rb", buffering=0)
    assert r.read(1000) == content["/a/one.bin"][:1000]

    p = rotate(v)
    assert "while mounted" in p.stdout and "the old key is destroyed" in p.stdout, p.stdout
    assert "is mounted at" in p.stderr

    # The handles work on: the writer's bytes land in the new store file,
    # the reader reads the rest, new files are made under the new key.
    w.write(b"after rotation\n")
    os.fsync(w.fileno())
    os.posix_fadvise(r.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    assert r.read() == content["/a/one.bin"][1000:]
    w.close()
    r.close()
    (v.mnt / "new.txt").write_bytes(b"made after")
    assert (v.mnt / "a" / "b" / "two.txt").read_bytes() == content["/a/b/two.txt"]
    v.unmount()

    after = tree_files(v.store)
    assert not (set(before.values()) & set(after.values()))  # no old ciphertext left
    assert not (v.store / "rotate.state").exists()
    rc, out = fsck_rc(v.store, v.passfile)
    assert rc == 0, out
    check_content(v, content)
    v.mount()
    assert (v.mnt / "a" / "log.txt").read_bytes() == b"before rotation\nafter rotation\n"
    assert (v.mnt / "new.txt").read_bytes() == b"made after"
    v.unmount()
    details = audit_rotate_details(v)
    assert any(d.startswith("start:") and "online" in d for d in details), details
    assert any(d.startswith("end:") and "online" in d for d in details), details
    assert sr("audit", "verify", v.store, "--passphrase-file", v.passfile, check=False).returncode == 0

    # The old keys (a copy of the store from before) open nothing of it.
    shutil.rmtree(old_copy / "tree")
    shutil.copytree(v.store / "tree", old_copy / "tree")
    rc, out = fsck_rc(old_copy, v.passfile)
    assert rc == 9
    assert " 0 bytes checked" in out


def test_an_open_file_with_no_name_left_stays_readable_after_an_online_rotation(fresh_vault):
    v = fresh_vault
    v.mount()
    data = os.urandom(300000)
    (v.mnt / "gone.bin").write_bytes(data)
    f = open(v.mnt / "gone.bin", "rb", buffering=0)
    os.unlink(v.mnt / "gone.bin")
    rotate(v)
    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    assert f.read() == data
    f.close()
    v.unmount()
    assert fsck_rc(v.store, v.passfile)[0] == 0


def test_operations_during_an_online_rotation_wait_and_then_succeed(fresh_vault):
    v = fresh_vault
    v.mount()
    for i in range(300):
        (v.mnt / f"f{i:03}.txt").write_bytes(b"x" * 5000 + str(i).encode())
    done = {}

    def writer():
        # Keeps creating files while the rotation runs; none may fail.
        n = 0
        deadline = time.time() + 60
        while not done.get("rotated") and time.time() < deadline:
            (v.mnt / f"during{n}.txt").write_bytes(b"during %d" % n)
            n += 1
        done["n"] = n

    t = threading.Thread(target=writer)
    t.start()
    try:
        rotate(v)
    finally:
        done["rotated"] = True
        t.join()
    for i in range(done["n"]):
        assert (v.mnt / f"during{i}.txt").read_bytes() == b"during %d" % i
    v.unmount()
    assert fsck_rc(v.store, v.passfile)[0] == 0
    v.mount()
    assert (v.mnt / "f299.txt").read_bytes() == b"x" * 5000 + b"299"
    v.unmount()


@pytest.mark.parametrize("fault", ["rename:3:abort", "rename:9:abort", "write:4:abort"])
def test_a_driver_killed_during_an_online_rotation_leaves_one_that_resumes_offline(fresh_vault, fault):
    v = fresh_vault
    content = fill(v)
    # The fault counts the driver's own store calls from its start: a
    # fresh mount that only reads has made none when the rotation begins.
    env = dict(os.environ, SR_FAULT=fault)
    p = subprocess.run([SR_BIN, "mount", str(v.store), str(v.mnt), "--passphrase-file",
                        str(v.passfile), "--log-file", str(v.log)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    pid = v.driver_pid()
    v.pids.add(pid)
    v.expect_log(r".")
    p = rotate(v, check=False)
    assert p.returncode != 0, "the fault did not fire: " + p.stdout
    assert wait_until(lambda: not pid_running(pid), timeout=30)
    subprocess.run(["umount", "-l", str(v.mnt)], capture_output=True)
    assert (v.store / "rotate.state").exists()
    p = sr("mount", v.store, v.mnt, "--passphrase-file", v.passfile, check=False)
    assert p.returncode == EXIT_STORE and "rotation is unfinished" in p.stderr
    rotate(v)
    assert not (v.store / "rotate.state").exists()
    rc, out = fsck_rc(v.store, v.passfile)
    assert rc == 0, out
    check_content(v, content)


def test_an_online_rotation_is_refused_beside_a_read_only_mount(fresh_vault, tmp_path):
    v = fresh_vault
    fill(v)
    v.mount()
    ro = tmp_path / "ro"
    ro.mkdir()
    v.extra_mnts.append(ro)
    v.mount("--read-only", mnt=ro)
    before = tree_files(v.store)
    p = rotate(v, check=False)
    assert p.returncode != 0
    assert "read-only mount" in p.stderr
    assert tree_files(v.store) == before
    assert not (v.store / "rotate.state").exists()
    v.unmount(ro)
    v.unmount()


@pytest.fixture
def staff_vault():
    """A vault in a folder staff can reach, and a staff user; both removed
    afterwards (the driver unmounted first)."""
    import secrets
    import tempfile
    from conftest import Vault
    d = tempfile.mkdtemp(prefix="sr-rot-", dir="/tmp")
    os.chmod(d, 0o755)
    v = Vault(d)
    user = "srr" + secrets.token_hex(3)
    subprocess.run(["useradd", "-M", "-s", "/bin/sh", user], check=True, capture_output=True)
    try:
        yield v, user
    finally:
        problems = v.teardown([v.mnt])
        subprocess.run(["userdel", user], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)
        assert not problems, "\n".join(problems)


def test_staff_cannot_rotate_a_mounted_store(staff_vault):
    v, user = staff_vault
    fill(v)
    v.mount("--allow-other")
    v.expect_log(r"control channel: uid \d+ .* refused")
    before = tree_files(v.store)
    staff_pass = v.root / "staff-pass"
    shutil.copy(v.passfile, staff_pass)
    import pwd
    pw = pwd.getpwnam(user)
    os.chown(staff_pass, pw.pw_uid, pw.pw_gid)
    p = subprocess.run(["su", user, "-c",
                        f"{SR_BIN} rotate {v.store} public --passphrase-file {staff_pass}"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "only root or the vault's admin group" in p.stderr, p.stderr
    assert tree_files(v.store) == before
    assert not (v.store / "rotate.state").exists()
    v.unmount()


def test_an_open_file_of_two_names_stays_one_file_through_an_online_rotation(fresh_vault):
    v = fresh_vault
    v.mount()
    (v.mnt / "a.txt").write_bytes(b"first\n")
    os.link(v.mnt / "a.txt", v.mnt / "b.txt")
    w = open(v.mnt / "a.txt", "ab", buffering=0)
    p = rotate(v)
    assert "while mounted" in p.stdout
    w.write(b"second\n")
    os.fsync(w.fileno())
    w.close()
    assert (v.mnt / "b.txt").read_bytes() == b"first\nsecond\n"
    v.unmount()
    v.mount()
    assert (v.mnt / "a.txt").read_bytes() == b"first\nsecond\n"
    assert (v.mnt / "b.txt").read_bytes() == b"first\nsecond\n"
    assert os.stat(v.mnt / "a.txt").st_ino == os.stat(v.mnt / "b.txt").st_ino
    v.unmount()
    assert fsck_rc(v.store, v.passfile)[0] == 0
