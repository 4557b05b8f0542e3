"""mount / unmount / status / mount.strongroom: the admin's contract."""

import json
import os
import signal
import subprocess

import pytest

from conftest import MOUNT_HELPER, SR_BIN, mounted, pid_running, sr, wait_until

EXIT_STORE = 4
EXIT_MOUNTPOINT = 5


def one_line(p):
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got: {p.stderr!r}"
    return lines[0]


def test_mount_returns_when_ready_and_proc_mounts_says_fuse_strongroom(vault):
    store, mnt = vault
    with open("/proc/mounts") as f:
        rows = [line.split() for line in f]
    row = [r for r in rows if r[1] == str(mnt)]
    assert row, "mount point missing from /proc/mounts"
    assert row[-1][0] == str(store)
    assert row[-1][2] == "fuse.strongroom"
    assert os.listdir(mnt) == []


def test_write_then_read_back_through_the_mount(vault):
    _, mnt = vault
    (mnt / "hello.txt").write_bytes(b"hello, vault\n")
    assert (mnt / "hello.txt").read_bytes() == b"hello, vault\n"
    assert os.listdir(mnt) == ["hello.txt"]


def test_data_survives_unmount_and_remount(vault):
    _, mnt = vault
    (mnt / "keep.txt").write_bytes(b"kept across mounts")
    os.mkdir(mnt / "dir")
    vault.remount()
    assert (mnt / "keep.txt").read_bytes() == b"kept across mounts"
    assert sorted(os.listdir(mnt)) == ["dir", "keep.txt"]


def test_mount_refused_on_missing_mount_point(fresh_vault):
    p = sr("mount", fresh_vault.store, fresh_vault.root / "nope", "--passphrase-file",
           fresh_vault.passfile, check=False)
    assert p.returncode == EXIT_MOUNTPOINT
    assert "does not exist" in one_line(p)


def test_mount_refused_on_non_empty_mount_point(fresh_vault):
    (fresh_vault.mnt / "file").write_text("x")
    p = sr("mount", fresh_vault.store, fresh_vault.mnt, "--passphrase-file", fresh_vault.passfile,
           check=False)
    assert p.returncode == EXIT_MOUNTPOINT
    assert "not empty" in one_line(p)
    assert not mounted(fresh_vault.mnt)


def test_mount_refused_on_a_file_as_mount_point(fresh_vault):
    f = fresh_vault.root / "plainfile"
    f.write_text("x")
    p = sr("mount", fresh_vault.store, f, "--passphrase-file", fresh_vault.passfile, check=False)
    assert p.returncode == EXIT_MOUNTPOINT
    assert "not a directory" in one_line(p)


def test_mount_refused_on_a_mount_point_already_mounted(vault):
    p = sr("mount", vault.store, vault.mnt, "--passphrase-file", vault.passfile, check=False)
    assert p.returncode == EXIT_MOUNTPOINT
    assert str(vault.mnt) in one_line(p)


def test_second_writer_is_refused_naming_the_first(vault):
    other = vault.root / "mnt2"
    other.mkdir()
    vault.extra_mnts.append(other)
    p = sr("mount", vault.store, other, "--passphrase-file", vault.passfile, check=False)
    assert p.returncode == EXIT_STORE
    pid = vault.driver_pid()
    assert f"store is in use by another writer (pid {pid})" in one_line(p)
    assert not mounted(other)


def test_read_only_mount_refuses_writes_and_lets_one_writer_mount_beside_it(fresh_vault):
    v = fresh_vault
    v.mount()
    (v.mnt / "f").write_text("before")
    v.unmount()
    v.mount("--read-only")
    assert (v.mnt / "f").read_text() == "before"
    try:
        (v.mnt / "g").write_text("x")
        raise AssertionError("write to a read-only vault succeeded")
    except OSError as e:
        assert e.errno == 30  # EROFS
    other = v.root / "mnt2"
    other.mkdir()
    v.extra_mnts.append(other)
    v.mount(mnt=other)
    st = json.loads(sr("status", v.mnt, "--json").stdout)
    assert st[0]["read_only"] is True


def test_status_lists_store_mount_point_pid_and_mode(vault):
    st = json.loads(sr("status", "--json").stdout)
    mine = [m for m in st if m["mountpoint"] == str(vault.mnt)]
    assert len(mine) == 1
    assert mine[0]["store"] == str(vault.store)
    assert pid_running(mine[0]["pid"])
    assert mine[0]["read_only"] is False
    table = sr("status", vault.mnt).stdout
    assert str(vault.mnt) in table and str(mine[0]["pid"]) in table


def test_status_of_something_not_mounted_fails_with_mountpoint_code(fresh_vault):
    p = sr("status", fresh_vault.mnt, check=False)
    assert p.returncode == EXIT_MOUNTPOINT


def test_unmount_refused_while_a_file_is_open_then_lazy_detaches(vault):
    _, mnt = vault
    pid = vault.driver_pid()
    f = open(mnt / "open.txt", "w")
    try:
        f.write("still open")
        f.flush()
        p = sr("unmount", mnt, check=False)
        assert p.returncode == EXIT_MOUNTPOINT
        assert one_line(p) == f"strongroom: {mnt}: busy: files are open (use --lazy to detach)"
        assert mounted(mnt)
        sr("unmount", mnt, "--lazy")
        assert not mounted(mnt)
        assert pid_running(pid), "driver exited while a file was still open"
        f.write(" and written after detach")
    finally:
        f.close()
    assert wait_until(lambda: not pid_running(pid)), "driver did not exit after the last close"
    vault.mount()
    assert (mnt / "open.txt").read_text() == "still open and written after detach"


def test_unmount_refuses_a_mount_that_is_not_strongroom(fresh_vault):
    p = sr("unmount", "/proc", check=False)
    assert p.returncode == EXIT_MOUNTPOINT
    assert "not a Strongroom mount" in one_line(p)
    p = sr("unmount", fresh_vault.mnt, check=False)
    assert p.returncode == EXIT_MOUNTPOINT


def test_unmount_waits_until_the_driver_has_exited(vault):
    pid = vault.driver_pid()
    (vault.mnt / "x").write_bytes(os.urandom(300000))
    vault.unmount()
    assert not pid_running(pid)


def test_sigterm_seals_unmounts_and_exits(vault):
    _, mnt = vault
    pid = vault.driver_pid()
    with open(mnt / "t.bin", "wb") as f:
        f.write(b"sealed on SIGTERM" * 1000)
    os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: not pid_running(pid)), "driver ignored SIGTERM"
    assert wait_until(lambda: not mounted(mnt))
    vault.mount()
    assert (mnt / "t.bin").read_bytes() == b"sealed on SIGTERM" * 1000


def test_mount_helper_for_fstab_mounts_with_option_list(fresh_vault):
    v = fresh_vault
    env = dict(os.environ, SR_BIN=SR_BIN)
    p = subprocess.run([MOUNT_HELPER, str(v.store), str(v.mnt), "-o",
                        f"rw,passphrase_file={v.passfile},log_file={v.log},noauto,_netdev,x-systemd.test"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert os.path.ismount(v.mnt)
    v.pids.add(v.driver_pid())
    (v.mnt / "via-helper").write_text("ok")
    v.unmount()
    p = subprocess.run([MOUNT_HELPER, str(v.store), str(v.mnt), "-o",
                        f"ro,passphrase_file={v.passfile},log_file={v.log}"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    v.pids.add(v.driver_pid())
    assert (v.mnt / "via-helper").read_text() == "ok"
    st = json.loads(sr("status", v.mnt, "--json").stdout)
    assert st[0]["read_only"] is True


def test_mount_with_wrong_passphrase_fails_without_mounting(fresh_vault):
    bad = fresh_vault.root / "bad"
    bad.write_text("not the passphrase\n")
    p = sr("mount", fresh_vault.store, fresh_vault.mnt, "--passphrase-file", bad, check=False)
    assert p.returncode == 3
    assert not mounted(fresh_vault.mnt)


def _sigint_ignored():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# A script's background job inherits SIGINT ignored; the driver must stop anyway.
@pytest.mark.parametrize("started_with_sigint_ignored", [False, True])
def test_foreground_mount_serves_until_sigint_then_exits_zero(fresh_vault, started_with_sigint_ignored):
    v = fresh_vault
    p = subprocess.Popen([SR_BIN, "mount", str(v.store), str(v.mnt), "--passphrase-file", str(v.passfile),
                          "--foreground"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_sigint_ignored if started_with_sigint_ignored else None)
    try:
        v.pids.add(p.pid)
        # A foreground mount has no readiness pipe to its caller: watch the table.
        assert wait_until(lambda: mounted(v.mnt) or p.poll() is not None), "never mounted"
        assert p.poll() is None, p.stderr.read()
        (v.mnt / "fg.txt").write_text("foreground")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0
    assert err == "" and out == ""
    assert not mounted(v.mnt)
    v.mount()
    assert (v.mnt / "fg.txt").read_text() == "foreground"


def test_status_reports_a_mount_whose_driver_was_killed_as_dead(vault):
    pid = vault.driver_pid()
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not pid_running(pid))
    st = [m for m in json.loads(sr("status", "--json").stdout) if m["mountpoint"] == str(vault.mnt)]
    assert st and st[0]["state"] == "dead" and st[0]["pid"] is None
    sr("unmount", vault.mnt)
    assert not mounted(vault.mnt)
    p = sr("mount", vault.store, vault.mnt, "--passphrase-file", vault.passfile, "--log-file", vault.log,
           check=False)
    assert p.returncode == 0, p.stderr
    vault.pids.add(vault.driver_pid())
