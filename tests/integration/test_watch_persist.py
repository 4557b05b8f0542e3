"""Freezes and level locks that outlive the mount (docs/format.md section
4.5, STORE/watch.state): a frozen user stays frozen and a locked level
stays locked across unmount, remount and a killed driver, until an admin
runs unfreeze or unlock (on the mount, or on the store while unmounted);
an edited state file refuses the mount, a deleted one is an integrity
event in the audit trail. Acted out by real Unix users; run as root."""

import errno
import os
import signal
import subprocess

import pytest

from conftest import mounted, pid_running, sr, wait_until
from test_clients_support import staff, staff_vault  # noqa: F401 (fixtures)
from test_watch_respond import audit, denied, office, readable, status  # noqa: F401

EXIT_STORE = 4

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (users, groups, mounts)")


def board_refused(o):
    """Root cannot read a file of the locked level: refused, or not named."""
    try:
        (o.mnt / "Board" / "minutes.txt").read_bytes()
    except OSError as e:
        return e.errno in (errno.EACCES, errno.ENOENT)
    return False


def test_frozen_user_stays_frozen_after_a_remount_until_unfreeze(office):
    o = office
    cat = ["cat", o.mnt / "Shared" / "plan.txt"]
    sr("freeze", o.mnt, o.alice.name)
    o.vault.remount("--allow-other")
    assert denied(o.alice.run(cat, check=False))
    assert o.bob.run(cat).stdout == "plan\n"
    assert o.alice.name in status(o.mnt)
    sr("unfreeze", o.mnt, o.alice.name)
    assert o.alice.run(cat).stdout == "plan\n"
    o.vault.remount("--allow-other")
    assert o.alice.run(cat).stdout == "plan\n"


def test_locked_level_stays_locked_after_a_remount_until_unlock(office):
    o = office
    sr("lock", o.mnt, "--level", "restricted")
    o.vault.remount("--allow-other")
    assert board_refused(o)
    assert "locked: restricted" in status(o.mnt)
    assert (o.mnt / "Shared" / "plan.txt").read_text() == "plan\n"
    p = sr("unlock", o.mnt, "--passphrase-file", o.vault.passfile)
    assert "1 level unlocked" in p.stdout
    assert readable(o.mnt / "Board" / "minutes.txt", "minutes\n")
    o.vault.remount("--allow-other")
    assert (o.mnt / "Board" / "minutes.txt").read_text() == "minutes\n"
    details = [e.get("detail", "") for e in audit(o.vault, "--event", "key-use")]
    assert any("stays so (watch.state)" in d for d in details), details


def test_freeze_and_lock_survive_a_killed_driver(office):
    o = office
    sr("freeze", o.mnt, o.alice.name)
    sr("lock", o.mnt, "--level", "restricted")
    pid = o.vault.driver_pid()
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not pid_running(pid), timeout=20)
    subprocess.run(["fusermount3", "-uz", str(o.mnt)], capture_output=True)
    assert wait_until(lambda: not mounted(o.mnt), timeout=20)
    o.vault.mount("--allow-other")
    assert board_refused(o)
    assert denied(o.alice.run(["cat", o.mnt / "Shared" / "plan.txt"], check=False))
    sr("unfreeze", o.mnt, o.alice.name)
    sr("unlock", o.mnt, "--passphrase-file", o.vault.passfile)
    assert o.alice.run(["cat", o.mnt / "Shared" / "plan.txt"]).stdout == "plan\n"


def test_unlock_of_an_unmounted_store_clears_the_saved_lock(office):
    o = office
    sr("lock", o.mnt, "--level", "restricted")
    o.vault.unmount()
    p = sr("unlock", o.vault.store, "--passphrase-file", o.vault.passfile)
    assert "restricted unlocked" in p.stdout, p.stdout
    p = sr("unlock", o.vault.store, "--passphrase-file", o.vault.passfile, check=False)
    assert p.returncode == 1 and "no level is locked" in p.stderr
    o.vault.mount("--allow-other")
    assert (o.mnt / "Board" / "minutes.txt").read_text() == "minutes\n"
    details = [e.get("detail", "") for e in audit(o.vault, "--event", "key-use")]
    assert any(d.startswith("offline unlock by keyslot 0: restricted") for d in details), details


def test_edited_state_file_refuses_the_mount_until_an_admin_resets_it(office):
    o = office
    sr("freeze", o.mnt, o.alice.name)
    o.vault.unmount()
    state = o.vault.store / "watch.state"
    b = bytearray(state.read_bytes())
    b[44] ^= 1  # the frozen uid: a store writer trying to lift the freeze
    state.write_bytes(bytes(b))
    p = sr("mount", o.vault.store, o.mnt, "--passphrase-file", o.vault.passfile,
           "--allow-other", check=False)
    assert p.returncode == EXIT_STORE, p.stderr
    assert "watch.state failed authentication" in p.stderr, p.stderr
    assert not mounted(o.mnt)
    p = sr("unlock", o.vault.store, "--passphrase-file", o.vault.passfile, check=False)
    assert p.returncode == EXIT_STORE and "--reset" in p.stderr
    sr("unlock", o.vault.store, "--reset", "--passphrase-file", o.vault.passfile)
    o.vault.mount("--allow-other")
    assert o.alice.run(["cat", o.mnt / "Shared" / "plan.txt"]).stdout == "plan\n"
    details = [e.get("detail", "") for e in audit(o.vault, "--event", "integrity")]
    assert any("watch.state failed authentication" in d for d in details), details


def test_deleted_state_file_is_an_integrity_event(office):
    o = office
    sr("freeze", o.mnt, o.alice.name)
    o.vault.unmount()
    (o.vault.store / "watch.state").unlink()
    o.vault.expect_log(r"watch.state: warning: missing")
    o.vault.mount("--allow-other")
    details = [e.get("detail", "") for e in audit(o.vault, "--event", "integrity")]
    assert any("watch.state is missing" in d for d in details), details
    assert (o.vault.store / "watch.state").exists()
