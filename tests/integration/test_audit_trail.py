"""The audit trail of a mounted vault (docs/audit.md): who opened and read
what, every kind of change, denials, integrity failures, crashes, and fail
closed on a full disk.

Real Unix users (made here with a unique prefix, removed by the finalizer)
act through a vault mounted with --allow-other; `strongroom audit show
--json` must list exactly what they did, with their pids and byte counts.
"""

import grp
import json
import os
import pwd
import secrets
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import is_strongroom_process, mounted, pid_running, sr, wait_until

EXIT_DAMAGE = 9


def audit(v, *args):
    """Records of `audit show` as dicts (JSON Lines)."""
    p = sr("audit", "show", v.store, "--json", "--passphrase-file", v.passfile, *args)
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def verify(v, check=True):
    return sr("audit", "verify", v.store, "--passphrase-file", v.passfile, check=check)


def as_user(user, *cmd, **kw):
    """Start cmd as user (setpriv execs it: the pid is the command's)."""
    pw = pwd.getpwnam(user)
    return subprocess.Popen(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                             "--init-groups", *map(str, cmd)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def run_as(user, *cmd):
    p = as_user(user, *cmd)
    out, err = p.communicate(timeout=60)
    return p.pid, p.returncode, out, err


@pytest.fixture
def users():
    """Two real users with a unique prefix; removed afterwards."""
    prefix = "sra" + secrets.token_hex(3)
    names = [prefix + "a", prefix + "b"]
    made = []
    try:
        for n in names:
            subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", n], check=True,
                           capture_output=True)
            made.append(n)
        yield names
    finally:
        for n in made:
            subprocess.run(["userdel", n], capture_output=True)


@pytest.fixture
def shared_mnt(fresh_vault):
    """A mount point other users can reach (the test's tmp dir is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="sr-audit-", dir="/tmp"))
    d.chmod(0o755)
    mnt = d / "mnt"
    mnt.mkdir()
    fresh_vault.extra_mnts.append(mnt)
    yield mnt
    if not mounted(mnt):
        mnt.rmdir()
        d.rmdir()


def only(records, **match):
    return [r for r in records if all(r.get(k) == want for k, want in match.items())]


def test_two_users_reads_are_listed_with_their_paths_pids_and_bytes(fresh_vault, users, shared_mnt):
    v, mnt = fresh_vault, shared_mnt
    alice, bob = users
    v.mount("--allow-other", mnt=mnt)
    contract = os.urandom(300_000)
    report = b"id,amount\n" + b"".join(b"%d,%d\n" % (i, i * 7) for i in range(20_000))
    (mnt / "customers" / "acme").mkdir(parents=True)
    (mnt / "customers" / "beta").mkdir(parents=True)
    (mnt / "customers" / "acme" / "contract.pdf").write_bytes(contract)
    (mnt / "customers" / "beta" / "report.csv").write_bytes(report)
    # A fresh mount: the kernel's cache is empty, so the reads reach the driver.
    v.unmount(mnt)
    v.mount("--allow-other", mnt=mnt)

    pid_a, rc, out, err = run_as(alice, "cat", mnt / "customers" / "acme" / "contract.pdf")
    assert rc == 0, err
    assert out == contract
    pid_b, rc, out, err = run_as(bob, "cat", mnt / "customers" / "beta" / "report.csv")
    assert rc == 0, err
    assert out == report
    v.unmount(mnt)

    for user, pid, path, size in ((alice, pid_a, "/customers/acme/contract.pdf", len(contract)),
                                  (bob, pid_b, "/customers/beta/report.csv", len(report))):
        pw = pwd.getpwnam(user)
        recs = audit(v, "--user", user)
        assert [r["event"] for r in recs] == ["open", "read", "read-summary"], recs
        for r in recs:
            assert r["user"] == user and r["uid"] == pw.pw_uid and r["gid"] == pw.pw_gid
            assert r["pid"] == pid and r["process"] == "cat"
            assert r["path"] == path
            assert r["level"] == "public"
            assert r["outcome"] == 0
        assert recs[0]["access"] == "r"
        assert recs[2]["bytes"] == size
        assert recs[2]["ranges"] == [[0, size]]
        assert recs[1]["bytes"] > 0 and recs[1]["ranges"][0][0] == 0
    # The filter by uid gives the same records.
    assert audit(v, "--user", str(pwd.getpwnam(alice).pw_uid)) == audit(v, "--user", alice)


def test_verify_passes_after_unmount_and_detects_a_flipped_byte(vault):
    store, mnt = vault
    (mnt / "f.txt").write_text("some text")
    assert (mnt / "f.txt").read_text() == "some text"
    vault.unmount()
    p = verify(vault)
    assert "intact" in p.stdout
    segs = sorted((store / "audit").glob("seg-*"))
    assert segs
    data = bytearray(segs[-1].read_bytes())
    data[len(data) // 2] ^= 0x01
    segs[-1].write_bytes(bytes(data))
    p = verify(vault, check=False)
    assert p.returncode == EXIT_DAMAGE
    assert segs[-1].name in p.stderr


def test_open_read_and_release_are_recorded_before_and_after(vault):
    """The first read is in the trail while the handle is still open."""
    store, mnt = vault
    (mnt / "doc.txt").write_bytes(b"x" * 200_000)
    vault.remount()
    with open(mnt / "doc.txt", "rb") as f:
        f.read(10)
        # Still open: the open and the first read are already written.
        recs = only(audit(vault, "--path", "/doc.txt", "--event", "open,read,read-summary"),
                    pid=os.getpid())
        assert [r["event"] for r in recs] == ["open", "read"]
        f.seek(150_000)
        f.read(1000)
    vault.unmount()
    recs = only(audit(vault, "--path", "/doc.txt", "--event", "open,read,read-summary"),
                pid=os.getpid())
    assert [r["event"] for r in recs] == ["open", "read", "read-summary"]
    summary = recs[-1]
    assert len(summary["ranges"]) == 2
    assert summary["ranges"][0][0] == 0 and summary["ranges"][1][0] <= 150_000
    assert summary["bytes"] == sum(n for _, n in summary["ranges"])


def test_mount_records_the_keyslot_and_unmount_is_last(vault):
    store, mnt = vault
    vault.unmount()
    recs = audit(vault)
    assert recs[0]["event"] == "mount" and "keyslot 0" in recs[0]["detail"]
    assert recs[1]["event"] == "key-use" and "keyslot 0" in recs[1]["detail"]
    assert recs[-1]["event"] == "unmount"
    assert "intact" in verify(vault).stdout


def store_file_of(store, size_at_least):
    """The one ciphertext file in the store at least this large."""
    big = [p for p in (store / "tree").rglob("*")
           if p.is_file() and p.stat().st_size >= size_at_least]
    assert len(big) == 1, big
    return big[0]


def test_every_kind_of_event_appears_for_its_operation(vault, users, shared_mnt):
    store, mnt = vault
    alice = users[0]
    uid = pwd.getpwnam(alice).pw_uid
    (mnt / "d").mkdir()                                          # mkdir
    (mnt / "d" / "a.txt").write_text("hello")                    # create, write
    assert (mnt / "d" / "a.txt").read_text() == "hello"          # open, read, read-summary
    os.truncate(mnt / "d" / "a.txt", 2)                          # truncate
    os.rename(mnt / "d" / "a.txt", mnt / "d" / "b.txt")          # rename
    os.link(mnt / "d" / "b.txt", mnt / "c.txt")                  # link
    os.symlink("d/b.txt", mnt / "s")                             # create (symlink)
    os.chmod(mnt / "c.txt", 0o640)                               # setattr chmod
    os.chown(mnt / "c.txt", uid, -1)                             # setattr chown
    os.setxattr(mnt / "c.txt", "user.note", b"x")                # setattr xattr
    subprocess.run(["setfacl", "-m", f"u:{uid}:r", str(mnt / "c.txt")], check=True)  # acl
    (mnt / "secret").mkdir()
    os.setxattr(mnt / "secret", "user.strongroom.level", b"confidential")  # level
    (mnt / "mine.txt").write_text("alice's")
    os.chown(mnt / "mine.txt", uid, -1)
    vault.unmount()
    vault.mount("--allow-other", mnt=shared_mnt)
    _, rc, _, err = run_as(alice, "setfattr", "-n", "user.strongroom.level", "-v", "restricted",
                           shared_mnt / "mine.txt")
    assert rc != 0 and b"not permitted" in err, err            # denial (EPERM): not an admin
    vault.unmount(mnt=shared_mnt)
    vault.mount()
    os.unlink(mnt / "s")                                         # unlink
    os.rmdir(mnt / "secret")                                     # rmdir
    (mnt / "t").mkdir()
    (mnt / "t" / "tampered.bin").write_bytes(os.urandom(300_000))
    vault.unmount()
    victim = store_file_of(store, 300_000)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x40
    victim.write_bytes(bytes(data))
    vault.mount()
    with pytest.raises(OSError) as e:
        (mnt / "t" / "tampered.bin").read_bytes()                # integrity
    assert e.value.errno == 5
    vault.unmount()

    recs = audit(vault)
    kinds = {r["event"] for r in recs}
    want = {"mount", "key-use", "mkdir", "create", "write", "open", "read", "read-summary",
            "truncate", "rename", "link", "setattr", "acl", "level", "denial", "unlink",
            "rmdir", "integrity", "unmount"}
    assert want <= kinds, want - kinds
    ren = only(recs, event="rename")
    assert ren and ren[0]["path"] == "/d/a.txt" and ren[0]["path2"] == "/d/b.txt"
    lnk = only(recs, event="link")
    assert lnk[0]["path"] == "/d/b.txt" and lnk[0]["path2"] == "/c.txt"
    sym = only(recs, event="create", path="/s")
    assert sym and sym[0]["path2"] == "d/b.txt"
    assert only(recs, event="truncate", path="/d/a.txt")[0]["bytes"] == 2
    lvl = only(recs, event="level", path="/secret")
    assert lvl[0]["level"] == "confidential" and lvl[0]["detail"] == "public"
    den = only(recs, event="denial", path="/mine.txt")
    assert den and den[0]["error"] == "EPERM" and den[0]["uid"] == uid
    details = [r.get("detail", "") for r in only(recs, event="setattr")]
    assert any("chmod 0640" in d for d in details)
    assert any(f"chown {uid}:-1" in d for d in details)
    assert any("user.note" in d for d in details)
    integ = only(recs, event="integrity", path="/t/tampered.bin")
    assert integ and "authentication" in integ[0]["detail"]
    assert only(recs, event="acl")[0]["path"] in ("/c.txt", "/d/b.txt")


def test_a_clearance_denial_is_recorded_with_the_refused_level(fresh_vault, users, shared_mnt):
    v, mnt = fresh_vault, shared_mnt
    alice = users[0]
    group = grp.getgrgid(pwd.getpwnam(alice).pw_gid).gr_name
    v.mount("--allow-other", mnt=mnt)
    (mnt / "Finance").mkdir()
    (mnt / "Finance" / "payroll.csv").write_text("name,salary\n")
    policy = v.root / "company.policy"
    policy.write_text("[vault]\nadmin-group = root\ndefault-clearance = public\n\n"
                      f"[role staff]\ngroup = {group}\nclearance = internal\n\n"
                      "[folder /Finance]\nlevel = confidential\nstaff = r\n")
    sr("policy", "apply", mnt, policy)
    pid, rc, out, err = run_as(alice, "cat", mnt / "Finance" / "payroll.csv")
    assert rc != 0 and b"Permission denied" in err
    v.unmount(mnt)
    recs = audit(v, "--user", alice)
    assert recs, "the denial is not in the trail"
    assert {r["event"] for r in recs} <= {"denial", "open"}
    den = only(recs, event="denial")
    assert den and all(r["pid"] == pid and r["error"] == "EACCES" for r in den)
    assert any(r["path"] == "/Finance/payroll.csv" and r["level"] == "confidential" for r in den)
    assert only(audit(v), event="level", path="/Finance")  # the policy set the folder's level


def unsealed_in_store(v, path):
    """True if fsck (read-only, no mount) finds path left unsealed by a crash."""
    p = sr("fsck", v.store, "--passphrase-file", v.passfile, check=False)
    return any(line.split("\t")[:2] == ["unsealed file", path] for line in p.stdout.splitlines())


def crash_while_writing(v, name, tries=8):
    """Append to name past the kernel's dirty limit and SIGKILL the driver,
    until the store file is left unsealed. The kernel may have the driver
    seal the file (a time update it writes back) just before the kill; then
    there is nothing to recover and the crash is tried again.
    @return how many crashes it took."""
    block = os.urandom(1 << 20)
    for attempt in range(1, tries + 1):
        pid = v.mount()
        fd = os.open(v.mnt / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for _ in range(48):  # past the kernel's dirty limit: frames reach the store
            os.write(fd, block)
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not pid_running(pid), timeout=10)
        try:
            os.close(fd)
        except OSError:
            pass
        subprocess.run(["umount", "-l", str(v.mnt)], check=True)
        if unsealed_in_store(v, "/" + name):
            return attempt
    pytest.fail(f"{name} was sealed at each of {tries} kills: nothing to recover")


def test_a_trail_across_a_sigkill_verifies_with_the_recovery_visible(fresh_vault):
    v = fresh_vault
    crashes = crash_while_writing(v, "big")
    p = verify(v)
    assert "no seal after record" in p.stdout
    v.mount()
    os.stat(v.mnt / "big")  # a stat replays in memory only: no recovery yet
    os.listxattr(v.mnt / "big")  # the first writable open recovers it
    assert os.path.getsize(v.mnt / "big") > 0
    with open(v.mnt / "big", "rb") as f:
        assert len(f.read(4096)) == 4096
    v.unmount()
    assert not unsealed_in_store(v, "/big")
    v.mount()  # a second mount finds it sealed: nothing more to record
    assert os.path.getsize(v.mnt / "big") > 0
    v.unmount()
    p = verify(v)
    assert "intact" in p.stdout and f"{crashes} crash recover" in p.stdout
    recs = audit(v)
    trail = only(recs, event="recovery", path="")
    assert len(trail) == crashes and all("no seal" in r["detail"] for r in trail)
    mounts = only(recs, event="mount")
    assert len(mounts) == crashes + 2
    files = only(recs, event="recovery", path="/big")
    assert len(files) == 1, files
    assert files[0]["pid"] == os.getpid()
    assert files[0]["level"] == "public"


def test_a_crashed_file_reclassified_first_records_its_recovery_once(fresh_vault):
    v = fresh_vault
    crash_while_writing(v, "big")
    v.mount()
    os.setxattr(v.mnt / "big", "user.strongroom.level", b"internal")
    assert os.getxattr(v.mnt / "big", "user.strongroom.level") == b"internal"
    v.unmount()
    assert not unsealed_in_store(v, "/big")
    files = only(audit(v), event="recovery", path="/big")
    assert len(files) == 1, files
    assert files[0]["pid"] == os.getpid()
    assert only(audit(v), event="level", path="/big")


def test_a_crashed_file_sealed_by_fsck_repair_is_recorded_once_as_repaired(fresh_vault):
    v = fresh_vault
    crash_while_writing(v, "big")
    p = sr("fsck", v.store, "--repair", "--passphrase-file", v.passfile, check=False)
    assert p.returncode == 1, p.stdout + p.stderr  # damage found, all of it repaired
    assert "unsealed file\t/big\t" in p.stdout and "fixed" in p.stdout
    assert not unsealed_in_store(v, "/big")
    v.mount()
    assert os.path.getsize(v.mnt / "big") > 0
    v.unmount()
    recs = audit(v)
    fixed = only(recs, event="repair", path="/big")
    assert len(fixed) == 1, fixed
    assert fixed[0]["detail"].startswith("unsealed file fixed")
    assert is_strongroom_process(fixed[0]["process"]) and fixed[0]["user"] == "root"
    assert not only(recs, event="recovery", path="/big")  # recovered once, by fsck
    assert "intact" in verify(v).stdout


@pytest.fixture
def small_tmpfs():
    d = Path(tempfile.mkdtemp(prefix="sr-full-", dir="/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(d)], check=True)
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)
    d.rmdir()


def fill(path):
    """Write path until the filesystem is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as e:
                assert e.errno == 28
    finally:
        os.close(fd)


def test_a_full_store_makes_opens_fail_with_eio_rather_than_go_unrecorded(fresh_vault, small_tmpfs):
    v = fresh_vault
    v.store = small_tmpfs / "store"  # the same fixture, its store on the small disk
    sr("init", v.store, "--passphrase-file", v.passfile)
    v.mount()
    (v.mnt / "doc.txt").write_text("contents")
    v.unmount()
    v.mount()
    fill(small_tmpfs / "filler")
    v.expect_log(r"audit|No space left|closing|sealing")
    results = []
    for _ in range(400):
        try:
            with open(v.mnt / "doc.txt") as f:
                assert f.read() == "contents"
            results.append(0)
        except OSError as e:
            results.append(e.errno)
            if e.errno == 5:
                break
    assert results[-1] == 5, f"no open failed on a full store: {results[-5:]}"
    assert set(results) <= {0, 5}
    ok = results.count(0)
    v.unmount()
    (small_tmpfs / "filler").unlink()
    v.mount()
    assert (v.mnt / "doc.txt").read_text() == "contents"
    v.unmount()
    assert "intact" in verify(v).stdout
    recs = audit(v)
    opens = only(recs, event="open", path="/doc.txt", pid=os.getpid())
    # Every open that succeeded while the disk was full is in the trail,
    # and the one after space came back; the refused one is not.
    assert len(opens) == ok + 1
    assert only(recs, event="recovery", path="")  # the full mount could not seal


def test_no_audit_records_nothing_and_says_so(fresh_vault):
    v = fresh_vault
    v.mount()
    (v.mnt / "f").write_text("x")
    v.unmount()
    before = audit(v)
    v.expect_log(r"--no-audit: nothing is recorded")
    v.mount("--no-audit")
    assert (v.mnt / "f").read_text() == "x"
    (v.mnt / "g").write_text("y")
    v.unmount()
    assert audit(v) == before
    assert "--no-audit" in v.log.read_text()


def test_an_unusable_trail_refuses_the_mount_unless_fail_open(fresh_vault):
    v = fresh_vault
    audit_dir = v.store / "audit"
    for p in audit_dir.iterdir():
        p.unlink()
    audit_dir.rmdir()
    audit_dir.write_text("not a directory")
    p = sr("mount", v.store, v.mnt, "--passphrase-file", v.passfile, "--log-file", v.log,
           check=False)
    assert p.returncode != 0
    assert not mounted(v.mnt)
    assert f"{v.store}/audit" in p.stderr and p.stderr.count("\n") == 1
    v.expect_log(r"--audit-fail-open")
    v.mount("--audit-fail-open")
    (v.mnt / "f").write_text("unaudited")
    assert (v.mnt / "f").read_text() == "unaudited"
    v.unmount()
    assert "mounting unaudited" in v.log.read_text()


def test_fail_open_mount_is_logged_and_still_records(vault):
    store, mnt = vault
    vault.unmount()
    vault.expect_log(r"--audit-fail-open: an operation whose audit record cannot be written")
    vault.mount("--audit-fail-open", "--audit-syslog")
    (mnt / "f").write_text("x")
    vault.unmount()
    assert "audit fail-open" in only(audit(vault), event="mount")[-1]["detail"]
    assert only(audit(vault), event="create", path="/f")
    assert "--audit-fail-open" in vault.log.read_text()


def test_a_read_only_mount_writes_its_own_chain_and_leaves_the_writers_to_the_writer(
        fresh_vault):
    v = fresh_vault
    v.mount()
    (v.mnt / "f").write_text("x")
    v.unmount()
    before = audit(v)
    v.mount("--read-only")
    assert (v.mnt / "f").read_text() == "x"
    other = v.root / "mnt2"
    other.mkdir()
    v.extra_mnts.append(other)
    v.mount(mnt=other)  # the writer beside it still gets the trail
    assert (other / "f").read_text() == "x"
    v.unmount(other)
    v.unmount()
    after = audit(v)
    writers = [r for r in after if "chain" not in r]
    readers = [r for r in after if "chain" in r]
    assert writers[:len(before)] == before
    new = writers[len(before):]
    assert [r["event"] for r in new if r["event"] in ("mount", "unmount")] == ["mount", "unmount"]
    assert [r["event"] for r in readers if r["event"] in ("mount", "unmount")] == \
        ["mount", "unmount"]
    assert only(readers, event="open", path="/f")
    assert "intact" in verify(v).stdout
