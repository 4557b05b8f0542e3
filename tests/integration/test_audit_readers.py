"""The audit chains of read-only mounts (docs/audit.md, "Chains of read-only
mounts"): a read-only mount beside the writer records its opens and reads in
its own chain, STORE/audit/ro-ID; `audit show` merges every chain by time,
`audit verify` judges each one and finds a chain that was tampered with or
removed after the writer listed it.
"""

import json
import os
import pwd
import re
import shutil
import select
import subprocess
import time

import pytest

from conftest import SR_BIN, sr
from test_audit_trail import EXIT_DAMAGE, audit, only, shared_mnt, users, verify  # noqa: F401

EXIT_STORE = 4


def su_cat(user, path):
    """cat path as user through su; @return (pid of cat, bytes read)."""
    p = subprocess.run(["su", "-s", "/bin/sh", user, "-c", 'echo $$; exec cat "$0"', str(path)],
                       capture_output=True, check=True, timeout=60)
    pid, _, data = p.stdout.partition(b"\n")
    return int(pid), data


def reader_chains(v):
    return sorted(p for p in (v.store / "audit").iterdir() if p.name.startswith("ro-"))


@pytest.fixture
def read_beside_writer(fresh_vault, users, shared_mnt):
    """Writer at v.mnt, a read-only mount at shared_mnt where a staff user
    reads doc.txt; both unmounted again (reader first)."""
    v = fresh_vault
    alice = users[0]
    doc = os.urandom(200_000)
    v.mount()
    (v.mnt / "doc.txt").write_bytes(doc)
    os.sync()
    v.mount("--read-only", "--allow-other", mnt=shared_mnt)
    pid, got = su_cat(alice, shared_mnt / "doc.txt")
    assert got == doc
    (v.mnt / "after.txt").write_text("the writer goes on")
    v.unmount(shared_mnt)
    v.unmount()
    return v, alice, pid, len(doc)


def test_a_staff_read_through_a_read_only_mount_is_in_its_own_chain(read_beside_writer):
    v, alice, pid, size = read_beside_writer
    chains = reader_chains(v)
    assert len(chains) == 1 and re.fullmatch(r"ro-[0-9a-f]{32}", chains[0].name)
    assert list(chains[0].glob("seg-*")), "the reader's chain has no segment"
    pw = pwd.getpwnam(alice)
    recs = audit(v, "--user", alice)
    assert [r["event"] for r in recs] == ["open", "read", "read-summary"], recs
    for r in recs:
        assert r["uid"] == pw.pw_uid and r["user"] == alice
        assert r["pid"] == pid and r["process"] == "cat"
        assert r["path"] == "/doc.txt" and r["outcome"] == 0
        assert r["chain"] == chains[0].name
    assert recs[0]["access"] == "r"
    assert recs[2]["bytes"] == size and recs[2]["ranges"] == [[0, size]]
    everything = audit(v)
    mounts = only(everything, event="mount")
    assert [("read-only" in m["detail"]) for m in mounts] == [False, True]
    assert chains[0].name in mounts[1]["detail"] and mounts[1]["chain"] == chains[0].name
    # show merges the chains by time; the writer's records carry no chain.
    assert [r["time"] for r in everything] == sorted(r["time"] for r in everything)
    assert only(everything, event="create", path="/after.txt")[0].get("chain") is None
    listed = only(everything, event="chains")
    assert listed and chains[0].name in listed[-1]["detail"]
    p = verify(v)
    assert p.stdout.startswith("audit trail intact")
    assert f"read-only chain {chains[0].name} intact" in p.stdout


def test_a_tampered_read_only_chain_fails_verify_naming_it(read_beside_writer):
    v = read_beside_writer[0]
    seg = sorted(reader_chains(v)[0].glob("seg-*"))[-1]
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0x01
    seg.write_bytes(bytes(data))
    p = verify(v, check=False)
    assert p.returncode == EXIT_DAMAGE, p.stdout + p.stderr
    assert f"{seg.parent.name}/{seg.name}" in p.stderr
    assert p.stdout.startswith("audit trail intact")  # the writer's own chain is fine


def test_a_segment_moved_from_the_writer_into_a_reader_chain_fails_verify(read_beside_writer):
    v = read_beside_writer[0]
    chain = reader_chains(v)[0]
    for s in chain.glob("seg-*"):
        s.unlink()
    first = sorted((v.store / "audit").glob("seg-*"))[0]
    shutil.copy(first, chain / first.name)
    p = verify(v, check=False)
    assert p.returncode == EXIT_DAMAGE, p.stdout + p.stderr
    assert chain.name in p.stderr


def test_a_removed_read_only_chain_is_detected_from_the_writers_trail(read_beside_writer):
    v = read_beside_writer[0]
    chain = reader_chains(v)[0]
    shutil.rmtree(chain)
    p = verify(v, check=False)
    assert p.returncode == EXIT_DAMAGE, p.stdout + p.stderr
    assert re.search(rf"{chain.name}: missing: the writer's trail listed", p.stderr)


def test_every_read_only_mount_gets_a_new_chain_and_the_writers_segments_stay_its_own(
        fresh_vault):
    v = fresh_vault
    v.mount()
    (v.mnt / "f").write_text("x")
    v.unmount()
    before = sorted(p.name for p in (v.store / "audit").glob("seg-*"))
    for _ in range(2):
        v.mount("--read-only")
        assert (v.mnt / "f").read_text() == "x"
        v.unmount()
    assert sorted(p.name for p in (v.store / "audit").glob("seg-*")) == before
    assert len(reader_chains(v)) == 2
    recs = audit(v, "--event", "open", "--path", "/f")
    assert len([r for r in recs if r.get("chain")]) == 2
    p = verify(v)
    assert p.stdout.count("read-only chain ro-") == 2


def test_a_read_only_store_refuses_a_read_only_mount_unless_no_audit(fresh_vault, tmp_path):
    v = fresh_vault
    v.mount()
    (v.mnt / "doc.txt").write_text("on a read-only store")
    v.unmount()
    ro = tmp_path / "ro-store"
    ro.mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", str(v.store), str(ro)], check=True)
    try:
        p = sr("mount", ro, v.mnt, "--read-only", "--passphrase-file", v.passfile,
               "--log-file", v.log, check=False)
        assert p.returncode == EXIT_STORE, p.stderr
        assert "--no-audit mounts it unaudited" in p.stderr
        assert "Read-only file system" in p.stderr
        assert not os.path.ismount(v.mnt)
        v.expect_log(r"--no-audit: nothing is recorded")
        sr("mount", ro, v.mnt, "--read-only", "--no-audit", "--passphrase-file", v.passfile,
           "--log-file", v.log)
        assert (v.mnt / "doc.txt").read_text() == "on a read-only store"
        v.unmount()
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)
    assert reader_chains(v) == []


def test_follow_streams_the_reads_of_a_read_only_mount_started_after_it(fresh_vault):
    v = fresh_vault
    v.mount()
    (v.mnt / "f").write_text("followed")
    v.unmount()
    since = f"@{int(time.time())}"
    p = subprocess.Popen([SR_BIN, "audit", "follow", str(v.store), "--json", "--since", since,
                          "--event", "open", "--passphrase-file", str(v.passfile)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        v.mount("--read-only")
        assert (v.mnt / "f").read_text() == "followed"
        chain = reader_chains(v)[0].name
        got = None
        deadline = time.monotonic() + 30
        while got is None and time.monotonic() < deadline:
            ready, _, _ = select.select([p.stdout], [], [], 1.0)
            if ready:
                line = p.stdout.readline()
                assert line, "follow exited: " + p.stderr.read()
                r = json.loads(line)
                if r.get("chain") == chain and r["path"] == "/f":
                    got = r
        assert got, "follow did not show the read-only mount's open"
        assert got["event"] == "open" and got["outcome"] == 0
        v.unmount()
    finally:
        p.terminate()
        p.wait(timeout=30)
    assert p.returncode == 0


def test_a_read_only_host_needs_only_the_audit_directory_writable(fresh_vault, tmp_path):
    v = fresh_vault
    v.mount()
    (v.mnt / "doc.txt").write_text("read on a branch office host")
    v.unmount()
    ro = tmp_path / "ro-store"
    ro.mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", str(v.store), str(ro)], check=True)
    try:
        subprocess.run(["mount", "--bind", str(v.store / "audit"), str(ro / "audit")],
                       check=True)
        try:
            sr("mount", ro, v.mnt, "--read-only", "--passphrase-file", v.passfile,
               "--log-file", v.log)
            assert (v.mnt / "doc.txt").read_text() == "read on a branch office host"
            v.unmount()
        finally:
            subprocess.run(["umount", str(ro / "audit")], capture_output=True)
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)
    assert len(reader_chains(v)) == 1
    assert only(audit(v), event="open", path="/doc.txt")[-1]["chain"] == reader_chains(v)[0].name
    assert "read-only chain ro-" in verify(v).stdout
