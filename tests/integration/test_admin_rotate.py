"""strongroom rotate: every object of the level re-encrypted under a new key,
the old key opening nothing of the result, slots untouched, and a rotation
killed at any point resumes with no file lost or unreadable."""

import hashlib
import json
import os
import shutil
import subprocess

import pytest

from conftest import SR_BIN, is_strongroom_process, sr

EXIT_STORE = 4


def tree_files(store):
    out = {}
    for root, dirs, files in os.walk(store / "tree"):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, store)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def fill(v):
    """Plaintext content written through a mount: {path: bytes}."""
    content = {
        "/a/one.bin": os.urandom(200000),
        "/a/b/two.txt": b"two" * 1000,
        "/a/" + "L" * 200: b"a long name",
        "/top.csv": b"x,y\n" * 5000,
    }
    v.mount()
    for path, data in content.items():
        full = v.mnt / path.lstrip("/")
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(data)
    os.setxattr(v.mnt / "top.csv", "user.note", b"kept")
    v.unmount()
    return content


def check_content(v, content):
    v.mount()
    for path, data in content.items():
        assert (v.mnt / path.lstrip("/")).read_bytes() == data, path
    assert os.getxattr(v.mnt / "top.csv", "user.note") == b"kept"
    v.unmount()


def rotate(v, level="public", env=None, check=True):
    p = subprocess.run([SR_BIN, "rotate", str(v.store), level, "--passphrase-file", str(v.passfile)],
                       capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


def fsck_rc(store, passfile):
    p = sr("fsck", store, "--passphrase-file", passfile, check=False)
    return p.returncode, p.stdout


def test_rotate_rewrites_every_object_of_the_level_and_the_old_key_opens_none(fresh_vault, tmp_path):
    v = fresh_vault
    content = fill(v)
    slots = {f: (v.store / "keyslots" / f).read_bytes() for f in os.listdir(v.store / "keyslots")}
    before = tree_files(v.store)
    old_copy = tmp_path / "old-copy"
    shutil.copytree(v.store, old_copy)

    p = rotate(v)
    assert "the old key is destroyed" in p.stdout
    after = tree_files(v.store)
    # names, folder metadata and file contents: no ciphertext survived
    assert not set(before.values()) & set(after.values())
    assert not (set(before) - {"tree/.sr-dir"}) & set(after)
    assert {f: (v.store / "keyslots" / f).read_bytes() for f in slots} == slots
    assert not (v.store / "rotate.state").exists()
    assert fsck_rc(v.store, v.passfile)[0] == 0
    check_content(v, content)

    # The old copy's keys (no key bag: the root keys) on the rotated tree.
    shutil.rmtree(old_copy / "tree")
    shutil.copytree(v.store / "tree", old_copy / "tree")
    rc, out = fsck_rc(old_copy, v.passfile)
    assert rc == 9
    assert " 0 bytes checked" in out  # not one chunk opens with the old key


def test_rotating_twice_keeps_everything_readable(fresh_vault):
    v = fresh_vault
    content = fill(v)
    rotate(v)
    rotate(v)
    check_content(v, content)


def test_rotating_a_level_with_no_objects_leaves_their_ciphertext_alone(fresh_vault):
    v = fresh_vault
    fill(v)
    before = tree_files(v.store)
    p = rotate(v, "restricted")
    assert "0 files" in p.stdout
    assert tree_files(v.store) == before


def test_rotate_of_an_unknown_level_is_a_usage_error(fresh_vault):
    p = rotate(fresh_vault, "secret", check=False)
    assert p.returncode == 2


@pytest.mark.parametrize("fault", ["rename:2:abort", "rename:3:abort", "rename:4:abort",
                                   "rename:7:abort", "rename:11:abort", "write:2:abort",
                                   "write:6:abort", "fsync:5:abort"])
def test_rotate_killed_midway_resumes_and_loses_nothing(fresh_vault, fault):
    v = fresh_vault
    content = fill(v)
    env = dict(os.environ, SR_FAULT=fault)
    p = rotate(v, env=env, check=False)
    assert p.returncode != 0, "the fault did not fire: " + p.stdout
    assert (v.store / "rotate.state").exists()
    # mounts refuse an unfinished rotation, with a clear line
    p = sr("mount", v.store, v.mnt, "--passphrase-file", v.passfile, check=False)
    assert p.returncode == EXIT_STORE and "rotation is unfinished" in p.stderr
    p = rotate(v)
    assert not (v.store / "rotate.state").exists()
    rc, out = fsck_rc(v.store, v.passfile)
    assert rc == 0, out
    check_content(v, content)


def test_a_second_interruption_of_the_resumed_rotation_also_resumes(fresh_vault):
    v = fresh_vault
    content = fill(v)
    rotate(v, env=dict(os.environ, SR_FAULT="rename:3:abort"), check=False)
    rotate(v, env=dict(os.environ, SR_FAULT="rename:2:abort"), check=False)
    rotate(v)
    assert fsck_rc(v.store, v.passfile)[0] == 0
    check_content(v, content)


def make_links(v):
    """A file of the level with three names in three folders, and a plain
    file beside it. Returns (st_ino through the mount, contents)."""
    data = os.urandom(150000)
    v.mount()
    (v.mnt / "a" / "b").mkdir(parents=True)
    (v.mnt / "c").mkdir()
    (v.mnt / "a" / "doc.bin").write_bytes(data)
    os.link(v.mnt / "a" / "doc.bin", v.mnt / "a" / "b" / "second.bin")
    os.link(v.mnt / "a" / "doc.bin", v.mnt / "c" / "third.bin")
    (v.mnt / "c" / "alone.txt").write_bytes(b"alone" * 100)
    ino = os.stat(v.mnt / "a" / "doc.bin").st_ino
    v.unmount()
    return ino, data


LINK_NAMES = ["a/doc.bin", "a/b/second.bin", "c/third.bin"]


def check_links(v, ino, data):
    v.mount()
    try:
        sts = [os.stat(v.mnt / n) for n in LINK_NAMES]
        assert {st.st_ino for st in sts} == {ino}
        assert [st.st_nlink for st in sts] == [3, 3, 3]
        for n in LINK_NAMES:
            assert (v.mnt / n).read_bytes() == data, n
        with open(v.mnt / "c" / "third.bin", "r+b") as f:
            f.write(b"written through the third name")
        assert (v.mnt / "a" / "b" / "second.bin").read_bytes()[:30] == b"written through the third name"
        assert (v.mnt / "c" / "alone.txt").read_bytes() == b"alone" * 100
    finally:
        v.unmount()


def test_rotate_keeps_a_file_of_three_hard_links_one_file(fresh_vault):
    v = fresh_vault
    ino, data = make_links(v)
    p = rotate(v)
    assert "the old key is destroyed" in p.stdout
    assert fsck_rc(v.store, v.passfile)[0] == 0
    check_links(v, ino, data)


# With make_links' tree, rename 15 is the first name switch of the file of
# three names (none switched yet), 16 and 17 leave one and two of its names
# switched, 18 all three but the state not cleared; write 16 is mid-copy.
@pytest.mark.parametrize("fault", ["write:16:abort", "rename:15:abort", "rename:16:abort",
                                   "rename:17:abort", "rename:18:abort"])
def test_rotate_killed_while_switching_hard_links_resumes_to_one_file(fresh_vault, fault):
    v = fresh_vault
    ino, data = make_links(v)
    p = rotate(v, env=dict(os.environ, SR_FAULT=fault), check=False)
    assert p.returncode != 0, "the fault did not fire: " + p.stdout
    assert "link=" in (v.store / "rotate.state").read_text()
    rotate(v)
    assert not (v.store / "rotate.state").exists()
    rc, out = fsck_rc(v.store, v.passfile)
    assert rc == 0, out
    check_links(v, ino, data)


def audit_records(v, event):
    p = sr("audit", "show", v.store, "--json", "--event", event, "--passphrase-file", v.passfile)
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def audit_verify_rc(v):
    return sr("audit", "verify", v.store, "--passphrase-file", v.passfile, check=False).returncode


def test_rotate_records_its_start_and_end_in_the_audit_trail(fresh_vault):
    v = fresh_vault
    fill(v)
    rotate(v)
    start, end = audit_records(v, "rotate")
    assert start["level"] == end["level"] == "public"
    assert start["detail"] == "start: key generation 0 -> 1"
    assert start["outcome"] == 0 and start["pid"] == end["pid"]
    assert is_strongroom_process(start["process"])
    assert end["detail"].startswith("end: key generation 1; 4 files, ")
    assert "the old key is destroyed" in end["detail"]
    assert 200000 < end["bytes"] < 300000  # the store bytes of the tree (one.bin: 200000)
    assert audit_verify_rc(v) == 0
    rotate(v)
    assert [r["detail"].split(":")[0] for r in audit_records(v, "rotate")] == ["start", "end"] * 2
    assert audit_verify_rc(v) == 0


def test_a_killed_and_resumed_rotation_records_start_resume_and_end(fresh_vault):
    v = fresh_vault
    fill(v)
    rotate(v, env=dict(os.environ, SR_FAULT="rename:4:abort"), check=False)
    rotate(v, env=dict(os.environ, SR_FAULT="write:1:eio"), check=False)
    rotate(v)
    recs = audit_records(v, "rotate")
    assert [r["detail"].split()[0] for r in recs] == ["start:", "resume:", "stopped", "resume:", "end:"]
    assert recs[2]["detail"].startswith("stopped at tree/")
    assert recs[2]["outcome"] == 5  # EIO
    assert recs[1]["detail"] == "resume: key generation 0 -> 1"
    assert audit_verify_rc(v) == 0
