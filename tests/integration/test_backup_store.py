"""Backups of the store itself: rsync, tar and restic copy the ciphertext tree
while the vault is mounted and a background writer keeps changing other
files; the copy, restored into a new place, mounts with the same passphrase
and gives back every file that was not being written, byte for byte, with
its level (user.strongroom.level) and its ACLs. An incremental rsync after
one file changed copies only that file's store file, and every other store
file keeps its ciphertext bytes and its mtime.

The audit trail lives in the store (audit/) and grows with every open, so
the incremental checks look at the tree (tree/) and leave audit/ out.
"""

import hashlib
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import mounted, sr, wait_until

LEVELS = ["public", "internal", "confidential", "restricted"]


def run(cmd, ok=(0,), timeout=300, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert p.returncode in ok, f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{p.stdout}{p.stderr}"
    return p


def populate(mnt):
    """A small tree of folders at every level, with ACLs and links. Returns
    the list of relative paths of regular files."""
    files = []
    rnd = os.urandom
    for i, level in enumerate(LEVELS):
        d = mnt / level
        d.mkdir()
        os.setxattr(d, "user.strongroom.level", level.encode())
        (d / "sub").mkdir()
        contents = {
            "empty.txt": b"",
            "note.txt": f"a note filed as {level}\n".encode(),
            "records.csv": b"".join(b"%d,customer %d,%d.%02d\n" % (n, n, n * 7, n % 100)
                                    for n in range(20000)),
            "scan.bin": rnd(300_000 + i * 4097),
            "sub/deep.bin": rnd(70_000),
        }
        for name, data in contents.items():
            (d / name).write_bytes(data)
            files.append(f"{level}/{name}")
        run(["setfacl", "-m", "u:nobody:r,g:nogroup:rw", str(d / "note.txt")])
        run(["setfacl", "-d", "-m", "g:nogroup:rx", str(d / "sub")])
        os.symlink("note.txt", d / "link-to-note")
        os.utime(d / "scan.bin", ns=(1_500_000_000_123_456_789, 1_500_000_000_123_456_789))
    (mnt / "busy").mkdir()
    return files


def snapshot(mnt, files):
    """What a restore must give back: bytes, level, ACL text, mode, mtime."""
    out = {}
    for rel in files:
        p = mnt / rel
        st = os.stat(p)
        acl = run(["getfacl", "-p", "-n", str(p)]).stdout.replace(str(mnt), "MNT")
        out[rel] = (hashlib.sha256(p.read_bytes()).hexdigest(),
                    os.getxattr(p, "user.strongroom.level"), acl, st.st_mode, st.st_mtime_ns)
    for level in LEVELS:
        out[f"{level}/link-to-note"] = os.readlink(mnt / level / "link-to-note")
        acl = run(["getfacl", "-p", "-n", str(mnt / level / "sub")]).stdout
        out[f"{level}/sub ACL"] = acl.replace(str(mnt), "MNT")
    return out


class Writer:
    """Rewrites files under busy/ until stopped: plain overwrites, appends
    and the save-to-temp-then-rename pattern of office apps."""

    def __init__(self, d):
        self.d = Path(d)
        self.stop = threading.Event()
        self.rounds = 0
        self.error = None
        self.t = threading.Thread(target=self.loop, daemon=True)

    def loop(self):
        try:
            while not self.stop.is_set():
                i = self.rounds % 4
                data = os.urandom(100_000 + self.rounds % 7 * 10_000)
                (self.d / f"overwrite{i}.bin").write_bytes(data)
                with open(self.d / "append.log", "ab") as f:
                    f.write(b"round %d\n" % self.rounds * 50)
                tmp = self.d / f".~tmp{i}"
                tmp.write_bytes(data)
                os.rename(tmp, self.d / f"saved{i}.docx")
                self.rounds += 1
        except Exception as e:  # reported by the test, not lost in a thread
            self.error = e

    def __enter__(self):
        self.t.start()
        assert wait_until(lambda: self.rounds >= 3 or self.error, timeout=60)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join(timeout=60)
        assert not self.t.is_alive(), "background writer did not stop"
        assert self.error is None, f"background writer failed: {self.error!r}"


def rsync_backup(store, dest, _tmp):
    # 24: some files vanished during the copy (the writer renames over them)
    run(["rsync", "-a", f"{store}/", f"{dest}/"], ok=(0, 24))
    return lambda target: run(["rsync", "-a", f"{dest}/", f"{target}/"])


def tar_backup(store, dest, _tmp):
    archive = Path(f"{dest}.tar")
    # 1: "file changed as we read it", expected for the files being written
    run(["tar", "--xattrs", "--acls", "-C", str(store), "-cf", str(archive), "."], ok=(0, 1))

    def restore(target):
        target.mkdir()
        run(["tar", "--xattrs", "--acls", "-C", str(target), "-xf", str(archive)])
    return restore


def restic_backup(store, dest, tmp):
    env = dict(os.environ, RESTIC_REPOSITORY=str(dest), RESTIC_PASSWORD="backup test password",
               RESTIC_CACHE_DIR=str(tmp / "restic-cache"))
    run(["restic", "init"], env=env)
    # 3: some files could not be read (vanished while the writer renamed)
    run(["restic", "backup", "."], ok=(0, 3), cwd=store, env=env)

    def restore(target):
        run(["restic", "restore", "latest", "--target", str(target)], env=env)
    return restore


BACKUPS = {"rsync": rsync_backup, "tar": tar_backup, "restic": restic_backup}


def mount_copy(vault, store, name):
    """Mount another store with the vault's passphrase; cleaned up by the
    vault fixture's finalizer. Returns (mountpoint, log)."""
    mnt = vault.root / f"mnt-{name}"
    log = vault.root / f"driver-{name}.log"
    mnt.mkdir()
    vault.extra_mnts.append(mnt)
    sr("mount", store, mnt, "--passphrase-file", vault.passfile, "--log-file", log)
    assert os.path.ismount(mnt)
    return mnt, log


@pytest.mark.parametrize("tool", sorted(BACKUPS))
def test_store_backup_taken_while_mounted_and_written_restores_and_mounts(vault, tool, tmp_path):
    if not shutil.which(tool):
        pytest.skip(f"{tool} is not installed (tools/deps.sh lists it in deps_test)")
    if not shutil.which("getfacl"):
        pytest.skip("getfacl (package acl) is not installed")
    store, mnt = vault
    files = populate(mnt)
    # what the store holds (see test_mtime_seen_while_mounted_is_the_one_kept)
    vault.remount()
    want = snapshot(mnt, files)

    with Writer(mnt / "busy") as w:
        restore = BACKUPS[tool](store, tmp_path / f"backup-{tool}", tmp_path)
        rounds_during = w.rounds
    assert rounds_during >= 3, "the writer was not writing during the backup"

    # the original vault stays mounted while the copy is restored and mounted
    restored = tmp_path / "restored"
    restore(restored)
    assert (restored / "strongroom.conf").is_file(), f"{tool} restore has no strongroom.conf"
    mnt2, log2 = mount_copy(vault, restored, tool)

    got = snapshot(mnt2, files)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == want[k], f"{k} differs after {tool} backup and restore"
    assert sorted(os.listdir(mnt2)) == sorted(os.listdir(mnt))

    # files that were being written may be old, new or refused, never garbage
    # passed off as data: each reads whole or fails with an error
    for name in os.listdir(mnt2 / "busy"):
        try:
            (mnt2 / "busy" / name).read_bytes()
        except OSError:
            pass
    sr("unmount", mnt2)
    assert not mounted(mnt2)
    lines = [ln for ln in log2.read_text(errors="replace").splitlines()
             if "integrity" not in ln.lower() and "busy" not in ln]
    assert not lines, f"restored mount wrote unexpected log lines: {lines}"


def store_state(store):
    """sha256 and mtime of every store file under tree/."""
    out = {}
    for root, _dirs, names in os.walk(store / "tree"):
        for n in names:
            p = Path(root) / n
            st = os.lstat(p)
            out[str(p.relative_to(store))] = (hashlib.sha256(p.read_bytes()).hexdigest(),
                                              st.st_mtime_ns)
    return out


def transferred(itemized):
    """Files rsync copied, from --itemize-changes lines ('>f...... path')."""
    return [ln.split(" ", 1)[1] for ln in itemized.splitlines() if ln.startswith(">f")]


@pytest.mark.skipif(not shutil.which("rsync"), reason="rsync is not installed")
def test_incremental_rsync_after_one_change_copies_only_that_files_store_file(vault, tmp_path):
    store, mnt = vault
    files = populate(mnt)
    backup = tmp_path / "backup"
    run(["rsync", "-a", f"{store}/", f"{backup}/"])

    before = store_state(store)
    # reading, listing and stat'ing every file changes no store file
    for rel in files:
        (mnt / rel).read_bytes()
        os.stat(mnt / rel)
    for _ in os.walk(mnt):
        pass
    assert store_state(store) == before, "reading files through the vault changed store files"

    target = "confidential/note.txt"
    with open(mnt / target, "r+b") as f:
        f.write(b"A NOTE")
        os.fsync(f.fileno())
    after = store_state(store)
    changed = [k for k in before if after.get(k) != before[k]]
    assert len(changed) == 1, f"one plaintext change touched store files {changed}"
    assert set(after) == set(before), "a store file appeared or went away"

    p = run(["rsync", "-a", "--itemize-changes", "--stats", f"{store}/", f"{backup}/"])
    copied = [f for f in transferred(p.stdout) if not f.startswith("audit/")]
    assert copied == changed, f"incremental rsync copied {copied}, expected {changed}"

    # and the backup is the store again: it mounts and shows the change
    mnt2, _log = mount_copy(vault, backup, "incremental")
    assert (mnt2 / target).read_bytes().startswith(b"A NOTE")
    for rel in files:
        if rel != target:
            assert (mnt2 / rel).read_bytes() == (mnt / rel).read_bytes(), rel
    sr("unmount", mnt2)


def test_unchanged_files_keep_their_store_bytes_and_mtime_across_remount(vault):
    store, mnt = vault
    populate(mnt)
    before = store_state(store)
    vault.remount()
    for root, _dirs, names in os.walk(mnt):
        for n in names:
            p = Path(root) / n
            if not p.is_symlink():
                p.read_bytes()
    vault.unmount()
    assert store_state(store) == before, "a mount, reads and an unmount changed store files"


def test_mtime_seen_while_mounted_is_the_one_kept(vault):
    """A backup and a remount must show the mtime staff saw: a file written
    in several FUSE writes (over 128 KiB) keeps the mtime stat gave before."""
    _store, mnt = vault
    files = populate(mnt)
    seen = {rel: os.stat(mnt / rel).st_mtime_ns for rel in files}
    vault.remount()
    kept = {rel: os.stat(mnt / rel).st_mtime_ns for rel in files}
    assert {k: (seen[k], kept[k]) for k in files if seen[k] != kept[k]} == {}


def test_a_write_after_utime_moves_the_mtime_and_a_remount_keeps_it(vault):
    """Writing data still moves the mtime (the kernel sets it and the store
    keeps it): a file set to 2020 and then appended to shows a new mtime, the
    same before and after a remount."""
    _store, mnt = vault
    f = mnt / "dated.txt"
    f.write_bytes(b"a" * 1000)
    os.utime(f, ns=(1577836800 * 10**9, 1577836800 * 10**9))
    assert os.stat(f).st_mtime_ns == 1577836800 * 10**9
    with open(f, "ab") as fh:
        fh.write(os.urandom(300_000))
    seen = os.stat(f).st_mtime_ns
    assert seen > 1577836800 * 10**9, "the write did not move the mtime"
    vault.remount()
    assert os.stat(f).st_mtime_ns == seen
    assert os.path.getsize(f) == 301_000
