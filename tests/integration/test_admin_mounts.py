"""Read-only mounts beside one writer, refusal of a second writer, stale
locks of a dead driver, mounting from a (private) fstab, the systemd unit's
commands, and a clean stop on SIGTERM."""

import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import MOUNT_HELPER, REPO, SR_BIN, mounted, pid_running, sr, wait_until

EXIT_STORE = 4


def extra_mnt(v, name):
    m = v.root / name
    m.mkdir()
    v.extra_mnts.append(m)
    return m


def test_two_read_only_mounts_run_beside_one_writer(fresh_vault):
    v = fresh_vault
    v.mount()
    (v.mnt / "doc.txt").write_text("shared")
    os.sync()
    ro1, ro2 = extra_mnt(v, "ro1"), extra_mnt(v, "ro2")
    v.mount("--read-only", mnt=ro1)
    v.mount("--read-only", mnt=ro2)
    assert (ro1 / "doc.txt").read_text() == "shared"
    assert (ro2 / "doc.txt").read_text() == "shared"
    with pytest.raises(OSError) as e:
        (ro1 / "new").write_text("x")
    assert e.value.errno == 30  # EROFS
    (v.mnt / "after.txt").write_text("writer still writes")
    assert (v.mnt / "after.txt").read_text() == "writer still writes"


def test_a_second_writer_is_refused_while_read_only_mounts_run(fresh_vault):
    v = fresh_vault
    v.mount()  # a read-only mount needs a tree a writer made
    v.unmount()
    ro = extra_mnt(v, "ro")
    v.mount("--read-only", mnt=ro)
    v.mount()
    other = extra_mnt(v, "w2")
    p = sr("mount", v.store, other, "--passphrase-file", v.passfile, check=False)
    assert p.returncode == EXIT_STORE
    assert re.search(r"store is in use by another writer \(pid \d+\)", p.stderr)
    assert not mounted(other)


def test_fsck_checks_beside_a_read_only_mount_but_repair_needs_no_mount_at_all(fresh_vault):
    v = fresh_vault
    v.mount()
    v.unmount()
    v.mount("--read-only")
    p = sr("fsck", v.store, "--passphrase-file", v.passfile, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    p = sr("fsck", v.store, "--repair", "--passphrase-file", v.passfile, check=False)
    assert p.returncode == EXIT_STORE
    assert "unmount every mount" in p.stderr


def test_the_lock_of_a_killed_driver_is_taken_over_by_the_next_mount(fresh_vault):
    v = fresh_vault
    pid = v.mount()
    fd = os.open(v.mnt / "kept", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"synced bytes")
    os.fsync(fd)
    os.close(fd)
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not pid_running(pid))
    assert (v.store / "lock").read_text().strip() == str(pid)  # the stale pid is still there
    subprocess.run(["umount", "-l", str(v.mnt)], capture_output=True)
    assert wait_until(lambda: not mounted(v.mnt))
    v.mount()
    assert (v.mnt / "kept").read_bytes() == b"synced bytes"


def test_sigterm_stops_the_driver_cleanly_and_loses_nothing(fresh_vault):
    v = fresh_vault
    pid = v.mount()
    data = os.urandom(300000)
    (v.mnt / "big").write_bytes(data)  # closed, never fsync'ed
    (v.mnt / "dir").mkdir()
    (v.mnt / "dir" / "small").write_text("small")
    os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: not pid_running(pid), timeout=60)
    assert wait_until(lambda: not mounted(v.mnt), timeout=30)
    p = sr("fsck", v.store, "--passphrase-file", v.passfile, check=False)
    assert p.returncode == 0, p.stdout + p.stderr  # everything sealed, nothing to replay
    v.mount()
    assert (v.mnt / "big").read_bytes() == data
    assert (v.mnt / "dir" / "small").read_text() == "small"


@pytest.fixture
def mount_helper_installed():
    """mount(8) finds helpers only in /sbin: link ours there for the test if
    no installed one exists, and remove the link afterwards."""
    target = Path("/sbin/mount.fuse.strongroom")
    made = False
    if not target.exists():
        target.symlink_to(MOUNT_HELPER)
        made = True
    yield
    if made:
        target.unlink()


def test_mount_a_from_a_private_fstab_mounts_the_vault(fresh_vault, mount_helper_installed):
    v = fresh_vault
    fstab = v.root / "fstab"
    fstab.write_text(f"# private fstab of this test\n"
                     f"{v.store} {v.mnt} fuse.strongroom "
                     f"passphrase_file={v.passfile},log_file={v.log},_netdev 0 0\n")
    env = dict(os.environ, SR_BIN=SR_BIN)
    p = subprocess.run(["mount", "--fstab", str(fstab), "-a"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert mounted(v.mnt)
    pid = v.driver_pid()
    assert pid
    v.pids.add(pid)
    (v.mnt / "from-fstab").write_text("ok")
    v.unmount()
    v.mount()
    assert (v.mnt / "from-fstab").read_text() == "ok"


def test_mount_through_fstab_with_extpass(fresh_vault, mount_helper_installed):
    v = fresh_vault
    fstab = v.root / "fstab"
    fstab.write_text(f"{v.store} {v.mnt} fuse.strongroom "
                     f"extpass=cat {v.passfile},log_file={v.log} 0 0\n".replace("cat ", "cat\\040"))
    env = dict(os.environ, SR_BIN=SR_BIN)
    p = subprocess.run(["mount", "--fstab", str(fstab), str(v.mnt)], capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert mounted(v.mnt)
    v.pids.add(v.driver_pid())


def unit_commands(conf):
    """ExecStart and ExecStop of tools/strongroom@.service, with the
    instance's EnvironmentFile applied as systemd does ($VAR splits on
    spaces)."""
    unit = (REPO / "tools" / "strongroom@.service").read_text()
    env = dict(line.split("=", 1) for line in conf.splitlines() if "=" in line)
    out = {}
    for key in ("ExecStart", "ExecStop"):
        (line,) = [li for li in unit.splitlines() if li.startswith(key + "=")]
        words = []
        for w in line.split("=", 1)[1].split():
            if w.startswith("$"):
                words += env[w[1:]].split()
            else:
                words.append(w)
        assert words[:2] == ["/usr/bin/env", "strongroom"]
        out[key] = [SR_BIN] + words[2:]
    return out


def test_the_systemd_unit_mounts_in_the_foreground_and_its_stop_seals(fresh_vault):
    v = fresh_vault
    conf = (f"STORE={v.store}\nMOUNTPOINT={v.mnt}\n"
            f"OPTIONS=--passphrase-file {v.passfile} --log-file {v.log}\n")
    cmds = unit_commands(conf)
    assert "--foreground" in cmds["ExecStart"]
    main = subprocess.Popen(cmds["ExecStart"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    v.pids.add(main.pid)
    try:
        assert wait_until(lambda: mounted(v.mnt) or main.poll() is not None, timeout=60)
        assert main.poll() is None, main.stderr.read()
        (v.mnt / "svc").write_bytes(b"written under systemd")
        p = subprocess.run(cmds["ExecStop"], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert main.wait(timeout=60) == 0
    finally:
        if main.poll() is None:
            main.kill()
            main.wait()
    v.mount()
    assert (v.mnt / "svc").read_bytes() == b"written under systemd"
