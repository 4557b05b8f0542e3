"""Refusals the kernel decides itself (mode bits and ACLs, under
default_permissions) reach the trail through the kernel's audit subsystem:
a real user refused an open by the mode bits, a write by an ACL and a
delete in a folder they may not write each leave a `denial` record with
their uid, pid, process name and the file's path. The kernel's audit is
turned on for the test and put back as it was."""

import os
import socket
import struct
import subprocess

import pytest

from conftest import SR_BIN, sr
from test_audit_trail import audit, run_as, shared_mnt, users, verify  # noqa: F401

NETLINK_AUDIT = 9
AUDIT_GET, AUDIT_SET, AUDIT_LIST_RULES = 1000, 1001, 1013
AUDIT_STATUS_ENABLED = 1


def _audit_request(mtype, payload=b""):
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
    try:
        s.bind((0, 0))
        s.settimeout(2)
        s.send(struct.pack("=IHHII", 16 + len(payload), mtype, 1 | 4, 1, 0) + payload)
        out = []
        while True:
            data = s.recv(65536)
            off = 0
            while off + 16 <= len(data):
                ln, t, _, _, _ = struct.unpack("=IHHII", data[off:off + 16])
                out.append((t, data[off + 16:off + ln]))
                off += (ln + 3) & ~3
            if mtype != AUDIT_LIST_RULES and any(t == mtype for t, _ in out):
                return out
            if mtype == AUDIT_LIST_RULES and any(t == 3 for t, _ in out):  # NLMSG_DONE
                return out
            if any(t == 2 and struct.unpack("=i", p[:4])[0] != 0 for t, p in out):
                return out
            if mtype == AUDIT_SET and any(t == 2 for t, _ in out):
                return out
    finally:
        s.close()


def _audit_enabled():
    for t, p in _audit_request(AUDIT_GET):
        if t == AUDIT_GET:
            return struct.unpack("=II", p[:8])[1]
    raise OSError("no audit status")


def _audit_set_enabled(value):
    _audit_request(AUDIT_SET, struct.pack("=8I", AUDIT_STATUS_ENABLED, value, 0, 0, 0, 0, 0, 0))


def _our_rules():
    return [p for t, p in _audit_request(AUDIT_LIST_RULES)
            if t == AUDIT_LIST_RULES and b"strongroom:" in p]


@pytest.fixture
def kernel_audit():
    """The kernel's audit on for the test; as it was afterwards."""
    try:
        before = _audit_enabled()
    except OSError as e:
        pytest.skip(f"the kernel has no audit subsystem here: {e}")
    if before == 2:
        pytest.skip("the kernel's audit configuration is locked")
    _audit_set_enabled(1)
    try:
        yield
    finally:
        _audit_set_enabled(before)


def _denials(v, user):
    return [r for r in audit(v, "--event", "denial", "--user", user)
            if "refused by the kernel" in r.get("detail", "")]


def test_kernel_refusals_by_mode_bits_and_acl_are_recorded(fresh_vault, shared_mnt, users,
                                                           kernel_audit):
    v = fresh_vault
    alice, bob = users
    v.mount("--allow-other", "--audit-kernel-denials", mnt=shared_mnt)
    assert _our_rules(), "the driver did not add its audit rules"
    (shared_mnt / "customers").mkdir(mode=0o755)
    secret = shared_mnt / "customers" / "contract.pdf"
    secret.write_bytes(b"%PDF terms")
    secret.chmod(0o600)                       # the mode bits refuse others
    shared = shared_mnt / "customers" / "notes.txt"
    shared.write_bytes(b"notes")
    shared.chmod(0o666)
    subprocess.run(["setfacl", "-m", f"u:{bob}:r--", str(shared)], check=True)  # ACL: bob read only

    pid1, rc1, _, err1 = run_as(alice, "cat", str(secret))
    assert rc1 != 0 and b"Permission denied" in err1
    pid2, rc2, _, err2 = run_as(bob, "sh", "-c", f"echo x >> {shared}")
    assert rc2 != 0
    pid3, rc3, _, _ = run_as(alice, "rm", "-f", str(shared))   # folder is 0755, root's
    assert rc3 != 0
    v.unmount(shared_mnt)
    assert not _our_rules(), "the driver left its audit rules behind"

    a = _denials(v, alice)
    assert any(r["path"] == "/customers/contract.pdf" and r["process"] == "cat"
               and r["detail"].startswith("open:") and r["outcome"] == 13 for r in a), a
    assert any(r["path"] == "/customers/notes.txt" and r["detail"].startswith("unlink:")
               for r in a), a
    b = _denials(v, bob)
    assert any(r["path"] == "/customers/notes.txt" and r["detail"].startswith("open:")
               for r in b), b
    assert all(r["uid"] != 0 for r in a + b)
    assert {r["pid"] for r in a} >= {pid1}
    verify(v)


def test_kernel_refusals_are_not_recorded_with_the_option_off(fresh_vault, shared_mnt, users,
                                                              kernel_audit):
    v = fresh_vault
    alice, _ = users
    v.mount("--allow-other", "--no-audit-kernel-denials", mnt=shared_mnt)
    assert not _our_rules()
    f = shared_mnt / "private.txt"
    f.write_bytes(b"x")
    f.chmod(0o600)
    _, rc, _, _ = run_as(alice, "cat", str(f))
    assert rc != 0
    v.unmount(shared_mnt)
    assert _denials(v, alice) == []


def test_a_mount_that_requires_kernel_refusals_fails_clearly_when_the_kernel_audit_is_off(
        fresh_vault):
    v = fresh_vault
    try:
        before = _audit_enabled()
    except OSError as e:
        pytest.skip(f"the kernel has no audit subsystem here: {e}")
    if before != 0:
        pytest.skip("the kernel's audit is on here (run by auditd)")
    p = sr("mount", v.store, v.mnt, "--passphrase-file", v.passfile, "--audit-kernel-denials",
           check=False)
    assert p.returncode != 0
    assert "cannot record the kernel's refusals: the kernel's audit is off" in p.stderr, p.stderr
    assert not os.path.ismount(v.mnt)
    # Without the option the mount goes on (the refusals are then not recorded).
    v.mount()
    v.unmount()


def test_the_rules_of_a_killed_driver_are_removed_by_the_next_mount(fresh_vault, kernel_audit):
    import signal
    from conftest import pid_running, wait_until
    v = fresh_vault
    pid = v.mount("--audit-kernel-denials")
    mine = f"strongroom:{pid}:".encode()
    assert len([r for r in _our_rules() if mine in r]) == 2
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not pid_running(pid), timeout=30)
    subprocess.run(["umount", "-l", str(v.mnt)], capture_output=True)
    assert len([r for r in _our_rules() if mine in r]) == 2  # left behind by the kill
    v.mount("--audit-kernel-denials")
    assert not [r for r in _our_rules() if mine in r]
    v.unmount()
    assert not _our_rules()
