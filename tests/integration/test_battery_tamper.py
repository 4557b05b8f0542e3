"""Tamper matrix: a store writer edits every kind of store file and region.

Every edit of a file's bytes gives EIO (or the exact old data, where the
edit only tore a tail that recovery cuts off) and an `integrity` audit
event; an edit of the config, a keyslot or the key bag refuses the mount;
a folder's names that stop decrypting (a file moved in from another
folder, a damaged, missing or foreign long-name sidecar) disappear from
the listing with one `integrity` event per folder per mount naming the
store entry, and are reported by `strongroom fsck`; folder metadata that is
not the folder's own (swapped or replayed) makes the listing fail with EIO
instead of showing an empty folder. Never wrong data, never a dead driver, never
a hang: every read runs in a child process with a timeout.

What a store writer can do undetected by design (docs/threat-model.md):
swap two whole files of one folder, and put back an older authentic copy
of a file or of a folder's metadata.
"""

import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys

import pytest

from conftest import pid_running, sr

HEADER_BYTES = 64
FRAME_HEADER_BYTES = 48
LOCATOR_BYTES = 16
FRAME_CHUNK, FRAME_SEAL = 1, 2
CHUNK = 65536
INTEGRITY_LOG = r"(?i)integrity|authentic|EBADMSG|corrupt|tamper|Bad message|recover"
EXIT_REFUSED = (3, 4)  # wrong secret / store edited (docs/cli.md)
EXIT_DAMAGE = 9

LONG_NAME = "Quarterly report for ACME " + "x" * 180 + ".pdf"
CONTENT = {
    "d1/a.bin": random.Random(1).randbytes(2 * CHUNK + 100),
    "d1/b.txt": b"second file in d1\n",
    f"d1/{LONG_NAME}": b"long name contents\n",
    "d2/c.txt": b"only file in d2\n",
}

PROBE = r"""
import hashlib, json, os, sys
out = {}
for p in sys.argv[1:]:
    try:
        if os.path.isdir(p):
            out[p] = {"list": sorted(os.listdir(p))}
        else:
            with open(p, "rb") as f:
                out[p] = {"sha": hashlib.sha256(f.read()).hexdigest()}
    except OSError as e:
        out[p] = {"errno": e.errno}
print(json.dumps(out))
"""


def probe(*paths):
    """Read files / list folders in a child with a timeout (a hang fails)."""
    p = subprocess.run([sys.executable, "-c", PROBE, *map(str, paths)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def frames(path):
    """(offset, type, arg, total_len) of every frame (docs/format.md 8.2)."""
    data = open(path, "rb").read()
    off, out = HEADER_BYTES, []
    while off + FRAME_HEADER_BYTES <= len(data):
        ftype = data[off]
        (plen,) = struct.unpack_from("<I", data, off + 4)
        (arg,) = struct.unpack_from("<Q", data, off + 16)
        total = FRAME_HEADER_BYTES + plen + (LOCATOR_BYTES if ftype == FRAME_SEAL else 0)
        if ftype not in (FRAME_CHUNK, FRAME_SEAL) or off + total > len(data):
            break
        out.append((off, ftype, arg, total))
        off += total
    return out


def flip(path, off, mask=0x01):
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ mask]))


def build(v):
    """Mount, write CONTENT, unmount. @return {plaintext path: store path}
    of the files, found by writing them one at a time."""
    where = {}
    v.mount()
    for path, data in CONTENT.items():
        before = set(store_files(v.store))
        full = v.mnt / path
        full.parent.mkdir(exist_ok=True)
        full.write_bytes(data)
        os.sync()
        (new,) = set(store_files(v.store)) - before
        where[path] = new
    v.unmount()
    return where


def store_files(store, dotted=False):
    out = []
    for root, _, files in os.walk(store / "tree"):
        out += [os.path.join(root, f) for f in files
                if dotted or not f.startswith(".") or
                (f.startswith(".L") and not f.endswith(".name"))]
    return out


def audit_integrity(v):
    p = sr("audit", "show", v.store, "--json", "--passphrase-file", v.passfile,
           "--event", "integrity")
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def expect_clean_failure(v, path, allow_old=False):
    """Mount; the file at path reads as EIO (or its exact old bytes when
    allow_old), the other files read exactly, the driver survives, and the
    failure is in the audit trail."""
    v.expect_log(INTEGRITY_LOG)
    pid = v.mount()
    paths = [v.mnt / p for p in CONTENT]
    got = probe(*paths)
    bad = got[str(v.mnt / path)]
    if allow_old and bad.get("sha") == sha(CONTENT[path]):
        failed = False
    else:
        assert bad == {"errno": 5}, f"{path}: {bad} instead of EIO"
        failed = True
    for p in CONTENT:
        if p != path:
            assert got[str(v.mnt / p)] == {"sha": sha(CONTENT[p])}, f"{p} damaged by the edit"
    assert pid_running(pid), "the driver died"
    v.unmount()
    if failed:
        recs = audit_integrity(v)
        assert any(r["path"] == "/" + path for r in recs), \
            f"no integrity event for /{path}: {recs}"
    return failed


# ---- regions of a data file: (name, function(store_path) -> offset, may
# read old data instead of failing)

def chunk0(path):
    return [f for f in frames(path) if f[1] == FRAME_CHUNK][0]


def last_seal(path):
    return [f for f in frames(path) if f[1] == FRAME_SEAL][-1]


REGIONS = {
    "header magic": (lambda p: 0, False),
    "header version": (lambda p: 4, False),
    "header chunk size": (lambda p: 5, False),
    "header flags": (lambda p: 6, False),
    "header file id": (lambda p: 8 + 7, False),
    "header level hint": (lambda p: 24 + 3, False),
    "header synced end": (lambda p: 32 + 6, True),
    "header reserved": (lambda p: 40, False),
    "header tag": (lambda p: 48 + 15, False),
    "chunk frame type": (lambda p: chunk0(p)[0], False),
    "chunk frame flags": (lambda p: chunk0(p)[0] + 1, False),
    "chunk frame length": (lambda p: chunk0(p)[0] + 4 + 1, False),
    "chunk frame seq": (lambda p: chunk0(p)[0] + 8, False),
    "chunk frame index": (lambda p: chunk0(p)[0] + 16, False),
    "chunk frame nonce": (lambda p: chunk0(p)[0] + 30, False),
    "chunk payload": (lambda p: chunk0(p)[0] + FRAME_HEADER_BYTES + 1000, False),
    "chunk tag": (lambda p: chunk0(p)[0] + chunk0(p)[3] - 1, False),
    "seal frame seq": (lambda p: last_seal(p)[0] + 8, False),
    "seal frame offset": (lambda p: last_seal(p)[0] + 16, False),
    "seal payload": (lambda p: last_seal(p)[0] + FRAME_HEADER_BYTES + 3, False),
    "seal tag": (lambda p: last_seal(p)[0] + last_seal(p)[3] - LOCATOR_BYTES - 1, False),
    "locator length": (lambda p: os.path.getsize(p) - LOCATOR_BYTES, False),
    # A locator without its magic is a torn tail: recovery replays the
    # frames, all authentic, and may give back exactly the old contents.
    "locator magic": (lambda p: os.path.getsize(p) - 1, True),
}


# The sanitizer pass (SR_BATTERY_QUICK=1) flips every third region.
QUICK = os.environ.get("SR_BATTERY_QUICK") == "1"


@pytest.mark.parametrize("region", list(REGIONS)[::3] if QUICK else list(REGIONS))
def test_a_flipped_byte_in_any_region_of_a_file_gives_eio_and_an_integrity_event(
        fresh_vault, region):
    v = fresh_vault
    where = build(v)
    offset, allow_old = REGIONS[region]
    victim = where["d1/a.bin"]
    flip(victim, offset(victim))
    expect_clean_failure(v, "d1/a.bin", allow_old)


def test_a_flipped_byte_in_a_long_named_file_gives_eio(fresh_vault):
    v = fresh_vault
    where = build(v)
    victim = where[f"d1/{LONG_NAME}"]
    assert os.path.basename(victim).startswith(".L")
    flip(victim, os.path.getsize(victim) - 30)
    expect_clean_failure(v, f"d1/{LONG_NAME}")


def fsck_damage(v):
    p = sr("fsck", v.store, "--passphrase-file", v.passfile, check=False)
    assert p.returncode == EXIT_DAMAGE, f"fsck did not report damage: {p.stdout}{p.stderr}"
    return p.stdout


def dir_of(where, name):
    return os.path.dirname(where[name])


def listing(v):
    got = probe(v.mnt / "d1", v.mnt / "d2")
    return got[str(v.mnt / "d1")], got[str(v.mnt / "d2")]


def foreign_events(v, folder):
    """The integrity records of folder's listings that name a store entry
    whose name does not decrypt there (docs/threat-model.md)."""
    return [r for r in audit_integrity(v)
            if r["path"] == folder and "do not decrypt" in r.get("detail", "") or
            r["path"] == folder and "not this folder's own" in r.get("detail", "")]


def store_rel(v, path):
    return os.path.relpath(path, v.store)


def test_a_flipped_byte_in_folder_metadata_gives_eio_and_an_integrity_event(fresh_vault):
    v = fresh_vault
    where = build(v)
    flip(os.path.join(dir_of(where, "d1/a.bin"), ".sr-dir"), 70)
    v.expect_log(INTEGRITY_LOG)
    v.mount()
    d1, d2 = listing(v)
    assert d1 == {"errno": 5}
    assert d2 == {"list": ["c.txt"]}
    assert probe(v.mnt / "d1/b.txt")[str(v.mnt / "d1/b.txt")] == {"errno": 5}
    v.unmount()
    assert any(r["path"] == "/d1" for r in audit_integrity(v))
    fsck_damage(v)


@pytest.mark.parametrize("edit", ["swap", "replay"])
def test_folder_metadata_from_another_folder_gives_eio_an_integrity_event_and_fsck_damage(
        fresh_vault, edit):
    v = fresh_vault
    where = build(v)
    m1 = os.path.join(dir_of(where, "d1/a.bin"), ".sr-dir")
    m2 = os.path.join(dir_of(where, "d2/c.txt"), ".sr-dir")
    a, b = open(m1, "rb").read(), open(m2, "rb").read()
    open(m1, "wb").write(b)
    if edit == "swap":
        open(m2, "wb").write(a)
    v.expect_log(INTEGRITY_LOG)
    pid = v.mount()
    for _ in range(3):  # listed again and again: still one record per folder
        d1, d2 = listing(v)
        # The names are bound to their folder's random id: under the other
        # folder's metadata none decrypts. The folder fails, never lists
        # empty or wrong.
        assert d1 == {"errno": 5}
        # A replayed copy gives d1 the same folder id, hence the same inode,
        # as d2: the kernel may reach d2 through d1's name, which fails too.
        assert d2 in ([{"errno": 5}] if edit == "swap" else [{"list": ["c.txt"]}, {"errno": 5}])
    got = probe(v.mnt / "d1/a.bin", v.mnt / "d2/c.txt")
    assert got[str(v.mnt / "d1/a.bin")] in ({"errno": 2}, {"errno": 5})
    assert got[str(v.mnt / "d2/c.txt")] in (
        [{"sha": sha(CONTENT["d2/c.txt"])}, {"errno": 2}, {"errno": 5}] if edit == "replay"
        else [{"errno": 2}, {"errno": 5}])
    assert pid_running(pid)
    v.unmount()
    ev = foreign_events(v, "/d1")
    assert len(ev) == 1, ev
    assert "not this folder's own" in ev[0]["detail"]
    assert store_rel(v, os.path.dirname(m1)) in ev[0]["detail"]
    if edit == "swap":
        assert len(foreign_events(v, "/d2")) == 1
    assert fsck_damage(v).count("Bad message") >= (4 if edit == "swap" else 3)


def test_a_file_moved_to_another_folder_in_the_store_is_not_shown_there_and_is_audited(
        fresh_vault):
    v = fresh_vault
    where = build(v)
    src = where["d2/c.txt"]
    dst = os.path.join(dir_of(where, "d1/a.bin"), os.path.basename(src))
    shutil.move(src, dst)
    v.mount()
    for _ in range(3):
        d1, d2 = listing(v)
        assert d1 == {"list": sorted(["a.bin", "b.txt", LONG_NAME])}
        assert d2 == {"list": []}
    v.unmount()
    ev = foreign_events(v, "/d1")
    assert len(ev) == 1, ev
    assert store_rel(v, dst) in ev[0]["detail"] and "1 store entries" in ev[0]["detail"]
    fsck_damage(v)


@pytest.mark.parametrize("edit", ["flip", "delete", "swap"])
def test_a_damaged_missing_or_foreign_sidecar_hides_the_long_name_from_listings(fresh_vault, edit):
    v = fresh_vault
    where = build(v)
    entry = where[f"d1/{LONG_NAME}"]
    side = entry + ".name"
    if edit == "flip":
        flip(side, 10, 0x02)
    elif edit == "delete":
        os.unlink(side)
    else:  # the sidecar of another long name
        v.mount()
        (v.mnt / "d1" / ("y" * 200)).write_bytes(b"other long")
        v.unmount()
        other = [f for f in os.listdir(os.path.dirname(entry))
                 if f.endswith(".name") and f != os.path.basename(side)]
        shutil.copy(os.path.join(os.path.dirname(entry), other[0]), side)
    v.expect_log(INTEGRITY_LOG)
    v.mount()
    for _ in range(3):
        d1, _ = listing(v)
        assert LONG_NAME not in d1["list"], "a long name shown from a bad sidecar"
        assert {"a.bin", "b.txt"} <= set(d1["list"])
    # A lookup computes the stored name itself and needs no sidecar: the
    # file still opens by its exact name, with its own authentic bytes.
    got = probe(v.mnt / "d1" / LONG_NAME)
    assert list(got.values())[0] in ({"sha": sha(CONTENT[f"d1/{LONG_NAME}"])}, {"errno": 2},
                                     {"errno": 5})
    v.unmount()
    ev = foreign_events(v, "/d1")
    assert len(ev) == 1, ev
    assert store_rel(v, entry) in ev[0]["detail"]
    fsck_damage(v)


def test_a_duplicated_sidecar_under_another_hash_shows_the_name_once(fresh_vault):
    v = fresh_vault
    where = build(v)
    entry = where[f"d1/{LONG_NAME}"]
    fake = os.path.join(os.path.dirname(entry), ".L" + "A" * 43)
    shutil.copy(entry, fake)
    shutil.copy(entry + ".name", fake + ".name")
    v.mount()
    d1, _ = listing(v)
    assert d1["list"].count(LONG_NAME) == 1
    got = probe(v.mnt / "d1" / LONG_NAME)
    assert list(got.values()) == [{"sha": sha(CONTENT[f"d1/{LONG_NAME}"])}]
    v.unmount()
    ev = foreign_events(v, "/d1")
    assert len(ev) == 1 and store_rel(v, fake) in ev[0]["detail"], ev
    fsck_damage(v)


@pytest.mark.parametrize("target", ["config", "keyslot", "keybag"])
def test_a_flipped_byte_in_the_config_keyslots_or_keybag_refuses_the_mount(fresh_vault, target):
    v = fresh_vault
    build(v)
    if target == "keybag":
        sr("rotate", v.store, "internal", "--passphrase-file", v.passfile)
        path = v.store / "keybag"
    elif target == "config":
        path = v.store / "strongroom.conf"
    else:
        path = v.store / "keyslots" / "slot-0"
    size = os.path.getsize(path)
    for off in sorted({0, 9, 20, size // 2, size - 1}):
        saved = path.read_bytes()
        flip(path, off)
        p = sr("mount", v.store, v.mnt, "--passphrase-file", v.passfile, "--log-file", v.log,
               check=False, timeout=60)
        assert p.returncode in EXIT_REFUSED, f"{target} byte {off}: exit {p.returncode} {p.stderr}"
        assert not os.path.ismount(v.mnt)
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
        path.write_bytes(saved)
    v.mount()
    assert (v.mnt / "d2/c.txt").read_bytes() == CONTENT["d2/c.txt"]


# ---- by design undetectable (docs/threat-model.md "Out of scope")

def test_swapping_two_whole_files_of_one_folder_is_not_detected_by_design(fresh_vault):
    v = fresh_vault
    where = build(v)
    a, b = where["d1/a.bin"], where["d1/b.txt"]
    tmp = a + ".swap"
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)
    v.mount()
    # Each file is authentic on its own; its name is not bound to it.
    assert (v.mnt / "d1/a.bin").read_bytes() == CONTENT["d1/b.txt"]
    assert (v.mnt / "d1/b.txt").read_bytes() == CONTENT["d1/a.bin"]


def test_an_older_copy_of_a_file_or_folder_metadata_is_accepted_by_design(fresh_vault):
    v = fresh_vault
    where = build(v)
    meta = os.path.join(dir_of(where, "d1/a.bin"), ".sr-dir")
    old_file, old_meta = open(where["d1/b.txt"], "rb").read(), open(meta, "rb").read()
    v.mount()
    (v.mnt / "d1/b.txt").write_bytes(b"new version\n")
    os.chmod(v.mnt / "d1", 0o700)
    v.unmount()
    open(where["d1/b.txt"], "wb").write(old_file)
    open(meta, "wb").write(old_meta)
    v.mount()
    assert (v.mnt / "d1/b.txt").read_bytes() == CONTENT["d1/b.txt"]
    assert os.stat(v.mnt / "d1").st_mode & 0o777 == 0o755
