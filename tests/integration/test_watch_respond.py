"""Incident response on a mounted vault, acted out by real Unix users:
freeze and unfreeze a user, lock a level (its keys wiped from the driver:
open handles and root are refused too) and unlock it with a secret, and the
control channel that only root or the vault's admin group may use.

Accounts and groups get a unique prefix and are removed by the finalizers
(test_clients_support). Run as root."""

import errno
import json
import os
import subprocess

import pytest

from conftest import sr, wait_until
from test_clients_support import group_name, staff, staff_vault  # noqa: F401 (fixtures)

EXIT_USAGE = 2
EXIT_BADSECRET = 3
EXIT_MOUNTPOINT = 5

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (users, groups, mounts)")


def policy_text():
    return f"""[vault]
admin-group = {group_name("it")}

[role staff]
group = {group_name("staff")}
clearance = restricted

[role it]
group = {group_name("it")}
clearance = restricted

[folder /Shared]
level = internal
staff = rw
it = rw

[folder /Board]
level = restricted
staff = rw
it = rw
"""


class Office:
    def __init__(self, vault, staff):
        self.vault = vault
        self.mnt = vault.mnt
        self.alice = staff("ali", ["staff"])
        self.bob = staff("bob", ["staff"])
        self.it = staff("itx", ["it"])
        (self.mnt / "Shared").mkdir()
        (self.mnt / "Board").mkdir()
        pol = vault.root / "office.policy"
        pol.write_text(policy_text())
        sr("policy", "apply", self.mnt, pol)
        (self.mnt / "Shared" / "plan.txt").write_text("plan\n")
        (self.mnt / "Board" / "minutes.txt").write_text("minutes\n")
        for p in ("Shared/plan.txt", "Board/minutes.txt"):
            os.chmod(self.mnt / p, 0o666)


@pytest.fixture
def office(staff_vault, staff):  # noqa: F811 (fixtures)
    return Office(staff_vault, staff)


def denied(p):
    return p.returncode != 0 and "Permission denied" in p.stderr


def audit(vault, *args):
    p = sr("audit", "show", vault.store, "--json", "--passphrase-file", vault.passfile, *args)
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def readable(path, text):
    """True once path reads as text: names looked up while their level was
    locked were not found, and the kernel remembers that for a second."""
    def ok():
        try:
            return path.read_text() == text
        except OSError:
            return False
    return wait_until(ok, timeout=10)


def open_errno(path):
    """The errno of opening path for reading, 0 if it opened."""
    try:
        os.close(os.open(path, os.O_RDONLY))
        return 0
    except OSError as e:
        return e.errno


def status(mnt):
    p = sr("status", mnt)
    return p.stdout


def test_frozen_user_is_denied_while_another_is_not(office):
    o = office
    cat = ["cat", o.mnt / "Shared" / "plan.txt"]
    assert o.alice.run(cat).stdout == "plan\n"
    sr("freeze", o.mnt, o.alice.name)
    assert denied(o.alice.run(cat, check=False))
    assert denied(o.alice.run(["sh", "-c", f"echo x > '{o.mnt}/Shared/new.txt'"], check=False))
    assert o.bob.run(cat).stdout == "plan\n"
    assert o.alice.name in status(o.mnt)
    sr("unfreeze", o.mnt, o.alice.name)
    assert o.alice.run(cat).stdout == "plan\n"
    details = [e.get("detail", "") for e in audit(o.vault, "--event", "alert")]
    assert any(d.startswith(f"freeze uid {o.alice.uid}") for d in details), details
    assert any(d == f"unfreeze uid {o.alice.uid}" for d in details), details


def test_freeze_twice_and_unfreeze_of_a_user_not_frozen_fail(office):
    o = office
    sr("freeze", o.mnt, o.bob.name)
    p = sr("freeze", o.mnt, o.bob.name, check=False)
    assert p.returncode == 1 and "already frozen" in p.stderr
    p = sr("unfreeze", o.mnt, o.alice.name, check=False)
    assert p.returncode == 1 and "not frozen" in p.stderr
    p = sr("freeze", o.mnt, "root", check=False)
    assert p.returncode == 1 and "root" in p.stderr


def test_locked_level_denies_open_handles_new_opens_and_root(office):
    o = office
    board = o.mnt / "Board" / "minutes.txt"
    shared = o.mnt / "Shared" / "plan.txt"
    with open(board, "rb", buffering=0) as held:
        assert held.read() == b"minutes\n"
        sr("lock", o.mnt, "--level", "restricted")
        # the kernel may serve the bytes it cached; past them, the driver refuses
        os.posix_fadvise(held.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        with pytest.raises(OSError) as e:
            os.pread(held.fileno(), 8, 0)
        assert e.value.errno == errno.EACCES
        # a new open of the file itself (through the handle: no name lookup)
        with pytest.raises(OSError) as e:
            os.open(f"/proc/self/fd/{held.fileno()}", os.O_RDONLY)
        assert e.value.errno == errno.EACCES
    # by name, root too: refused while the kernel still holds the name (it
    # keeps entries for a second, and a slow lock may take longer), then not
    # even named once the kernel asks the driver again
    assert open_errno(board) in (errno.EACCES, errno.ENOENT)
    assert wait_until(lambda: open_errno(board) == errno.ENOENT, timeout=10)
    # as on a mount without the level's key: refused, or not even named
    p = o.alice.run(["cat", board], check=False)
    assert p.returncode != 0 and p.stdout == ""
    assert "Permission denied" in p.stderr or "No such file" in p.stderr
    # the other levels go on
    assert shared.read_text() == "plan\n"
    assert o.alice.run(["cat", shared]).stdout == "plan\n"
    out = status(o.mnt)
    assert "locked: restricted" in out, out
    p = sr("unlock", o.mnt, "--passphrase-file", o.vault.passfile)
    assert "1 level unlocked" in p.stdout
    assert readable(board, "minutes\n")
    assert o.alice.run(["cat", board]).stdout == "minutes\n"
    details = [e.get("detail", "") for e in audit(o.vault, "--event", "key-use")]
    assert any("level restricted locked" in d for d in details), details
    assert any("level restricted unlocked" in d for d in details), details


def test_writes_before_a_lock_survive_it(office):
    o = office
    board = o.mnt / "Board" / "draft.txt"
    with open(board, "w") as f:
        f.write("draft one\n")
        f.flush()
        sr("lock", o.mnt, "--level", "restricted")
    sr("unlock", o.mnt, "--passphrase-file", o.vault.passfile)
    assert readable(board, "draft one\n")
    o.vault.remount("--allow-other")
    assert board.read_text() == "draft one\n"


def test_unlock_with_a_wrong_secret_or_a_lower_slot_keeps_the_level_locked(office):
    o = office
    board = o.mnt / "Board" / "minutes.txt"
    low = o.vault.root / "low"
    low.write_text("branch office passphrase 4711\n")
    sr("keyslot", "add", o.vault.store, "--max-level", "internal", "--new-passphrase-file", low,
       "--passphrase-file", o.vault.passfile)
    sr("lock", o.mnt, "--level", "restricted")
    bad = o.vault.root / "bad"
    bad.write_text("not the passphrase at all\n")
    p = sr("unlock", o.mnt, "--passphrase-file", bad, check=False)
    assert p.returncode == EXIT_BADSECRET, p.stderr
    p = sr("unlock", o.mnt, "--passphrase-file", low, check=False)
    assert p.returncode == 1 and "none of the locked levels" in p.stderr
    with pytest.raises(OSError):
        board.read_bytes()
    sr("unlock", o.mnt, "--passphrase-file", o.vault.passfile)
    assert readable(board, "minutes\n")


def test_control_channel_refuses_a_staff_user_and_serves_the_admin_group(office):
    o = office
    o.vault.expect_log(rf"control channel: uid {o.alice.uid} .* refused")
    p = o.alice.run([sr_bin(), "freeze", o.mnt, o.bob.name], check=False)
    assert p.returncode == 1 and "admin group" in p.stderr, p.stderr
    p = o.alice.run([sr_bin(), "lock", o.mnt, "--level", "restricted"], check=False)
    assert p.returncode == 1 and "admin group" in p.stderr, p.stderr
    assert o.bob.run(["cat", o.mnt / "Board" / "minutes.txt"]).stdout == "minutes\n"
    # a member of the admin group may
    o.it.run([sr_bin(), "freeze", o.mnt, o.bob.name])
    assert denied(o.bob.run(["cat", o.mnt / "Shared" / "plan.txt"], check=False))
    o.it.run([sr_bin(), "unfreeze", o.mnt, o.bob.name])


def test_lock_of_an_unknown_level_and_bad_arguments_are_refused(office):
    o = office
    p = sr("lock", o.mnt, "--level", "secret", check=False)
    assert p.returncode == 1 and "unknown level" in p.stderr
    assert sr("lock", o.mnt, check=False).returncode == EXIT_USAGE
    assert sr("freeze", o.mnt, check=False).returncode == EXIT_USAGE
    p = sr("freeze", o.vault.root, o.bob.name, check=False)
    assert p.returncode == EXIT_MOUNTPOINT
    p = sr("unlock", o.mnt, "--passphrase-file", o.vault.passfile, check=False)
    assert p.returncode == 1 and "no level is locked" in p.stderr


def sr_bin():
    from conftest import SR_BIN
    return SR_BIN
