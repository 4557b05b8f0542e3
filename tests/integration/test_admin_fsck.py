"""strongroom fsck finds each kind of damage, names it by plaintext path
where it can, and --repair fixes what it can without deleting store bytes
(everything it takes out goes to STORE/quarantine/)."""

import json
import os
import struct

from conftest import is_strongroom_process, sr

HEADER_BYTES = 64
FRAME_HEADER_BYTES = 48
LOCATOR_BYTES = 16
FRAME_CHUNK, FRAME_SEAL = 1, 2
CHUNK = 65536


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


def store_entries(store, pred=lambda name: not name.startswith(".")):
    out = []
    for root, dirs, files in os.walk(store / "tree"):
        out += [os.path.join(root, f) for f in files + dirs if pred(f)]
    return sorted(out)


def fsck(v, *extra):
    return sr("fsck", v.store, "--passphrase-file", v.passfile, *extra, check=False)


def problem_lines(p):
    return [line for line in p.stdout.splitlines() if "\t" in line]


def quarantine(v):
    q = v.store / "quarantine"
    return sorted(os.listdir(q)) if q.exists() else []


def make(v, files):
    """Mount, write {plaintext path: bytes}, unmount."""
    v.mount()
    for path, data in files.items():
        full = v.mnt / path.lstrip("/")
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(data)
    v.unmount()


def test_fsck_of_a_healthy_store_exits_0_and_counts_what_it_read(fresh_vault):
    v = fresh_vault
    make(v, {"/a/b/one": os.urandom(200000), "/a/two": b"x" * 10, "/a/" + "L" * 200: b"long"})
    p = fsck(v)
    assert p.returncode == 0, p.stdout + p.stderr
    assert problem_lines(p) == []
    assert "3 files, 200014 bytes checked" in p.stdout
    assert "0 problems" in p.stdout


def test_fsck_names_a_flipped_chunk_and_repair_turns_it_into_zeros(fresh_vault):
    v = fresh_vault
    data = os.urandom(3 * CHUNK)
    make(v, {"/docs/report.bin": data})
    (f,) = [e for e in store_entries(v.store) if os.path.isfile(e)]
    chunk1 = [fr for fr in frames(f) if fr[1] == FRAME_CHUNK and fr[2] == 1][-1]
    raw = bytearray(open(f, "rb").read())
    raw[chunk1[0] + FRAME_HEADER_BYTES + 10] ^= 0x01
    open(f, "wb").write(raw)

    p = fsck(v)
    assert p.returncode == 9, p.stdout + p.stderr
    (line,) = problem_lines(p)
    kind, path, spath, state = line.split("\t")[:4]
    assert kind == "chunk 1" and path == "/docs/report.bin" and state == "left"
    assert os.path.join(str(v.store), spath) == f
    assert quarantine(v) == []  # a plain check writes nothing

    p = fsck(v, "--repair")
    assert p.returncode == 1, p.stdout + p.stderr
    assert problem_lines(p)[0].split("\t")[3] == "fixed"
    assert len(quarantine(v)) == 2  # the damaged original and the index
    assert fsck(v).returncode == 0

    v.mount()
    got = (v.mnt / "docs" / "report.bin").read_bytes()
    assert got == data[:CHUNK] + bytes(CHUNK) + data[2 * CHUNK:]
    v.unmount()


def test_fsck_seals_a_torn_tail_left_by_a_crash(fresh_vault):
    v = fresh_vault
    data = os.urandom(100000)
    make(v, {"/torn": data})
    (f,) = [e for e in store_entries(v.store) if os.path.isfile(e)]
    with open(f, "ab") as fh:  # a half-written frame after the last seal
        fh.write(bytes([FRAME_CHUNK]) + os.urandom(70))

    p = fsck(v)
    assert p.returncode == 9
    (line,) = problem_lines(p)
    assert line.startswith("unsealed file\t/torn\t")
    p = fsck(v, "--repair")
    assert p.returncode == 1, p.stdout + p.stderr
    assert fsck(v).returncode == 0
    v.mount()
    assert (v.mnt / "torn").read_bytes() == data
    v.unmount()


def test_fsck_moves_orphan_temp_files_and_sidecars_to_the_quarantine(fresh_vault):
    v = fresh_vault
    make(v, {"/d/keep": b"keep", "/d/" + "N" * 200: b"long one"})
    d = [e for e in store_entries(v.store) if os.path.isdir(e)][0]
    open(os.path.join(d, ".sr-tmp.12345.1"), "wb").write(b"leftover")
    side = [e for e in os.listdir(d) if e.endswith(".name")][0]
    os.rename(os.path.join(d, side[:-5]), os.path.join(v.root, "moved-away"))

    p = fsck(v)
    assert p.returncode == 9
    kinds = sorted(line.split("\t")[0] for line in problem_lines(p))
    assert kinds == ["orphan long-name sidecar", "orphan temporary file"]
    p = fsck(v, "--repair")
    assert p.returncode == 1, p.stdout + p.stderr
    assert not os.path.exists(os.path.join(d, ".sr-tmp.12345.1"))
    q = quarantine(v)
    assert len(q) == 3 and "index" in q
    index = (v.store / "quarantine" / "index").read_text()
    assert ".sr-tmp.12345.1" in index and side in index
    assert "keep" not in index  # store paths only, never plaintext
    assert fsck(v).returncode == 0


def test_fsck_reports_a_long_name_whose_sidecar_is_missing(fresh_vault):
    v = fresh_vault
    make(v, {"/" + "M" * 200: b"data"})
    side = [e for e in store_entries(v.store, lambda n: n.endswith(".name"))][0]
    os.unlink(side)
    p = fsck(v)
    assert p.returncode == 9
    (line,) = problem_lines(p)
    assert line.startswith("missing long-name sidecar\t-\t")
    p = fsck(v, "--repair")
    assert p.returncode == 1
    assert fsck(v).returncode == 0
    assert len(quarantine(v)) == 2


def test_fsck_rebuilds_a_damaged_folder_metadata_and_the_files_below_stay_readable(fresh_vault):
    v = fresh_vault
    make(v, {"/folder/inside.txt": b"still here"})
    d = [e for e in store_entries(v.store) if os.path.isdir(e)][0]
    meta = os.path.join(d, ".sr-dir")
    raw = bytearray(open(meta, "rb").read())
    raw[-1] ^= 0x80  # the tag: the folder ID at the front stays readable
    open(meta, "wb").write(raw)

    p = fsck(v)
    assert p.returncode == 9
    (line,) = problem_lines(p)
    assert line.startswith("directory metadata\t/folder\t")
    p = fsck(v, "--repair")
    assert p.returncode == 1, p.stdout + p.stderr
    assert fsck(v).returncode == 0
    v.mount()
    assert (v.mnt / "folder" / "inside.txt").read_bytes() == b"still here"
    v.unmount()


def test_fsck_refuses_while_a_writer_has_the_store_mounted(vault):
    p = fsck(vault)
    assert p.returncode == 4
    assert "in use by a writer" in p.stderr


def test_fsck_with_a_wrong_passphrase_exits_3(fresh_vault):
    bad = fresh_vault.root / "bad"
    bad.write_text("wrong\n")
    p = sr("fsck", fresh_vault.store, "--passphrase-file", bad, check=False)
    assert p.returncode == 3


def test_fsck_repair_of_a_damaged_file_with_hard_links_keeps_one_file(fresh_vault):
    v = fresh_vault
    data = os.urandom(3 * CHUNK)
    v.mount()
    (v.mnt / "docs").mkdir()
    (v.mnt / "other").mkdir()
    (v.mnt / "docs" / "report.bin").write_bytes(data)
    os.link(v.mnt / "docs" / "report.bin", v.mnt / "other" / "same.bin")
    ino = os.stat(v.mnt / "docs" / "report.bin").st_ino
    v.unmount()
    (f, _) = [e for e in store_entries(v.store) if os.path.isfile(e) and os.stat(e).st_nlink == 2]
    chunk1 = [fr for fr in frames(f) if fr[1] == FRAME_CHUNK and fr[2] == 1][-1]
    raw = bytearray(open(f, "rb").read())
    raw[chunk1[0] + FRAME_HEADER_BYTES + 10] ^= 0x01
    open(f, "wb").write(raw)

    p = fsck(v, "--repair")
    assert p.returncode == 1, p.stdout + p.stderr
    states = [line.split("\t")[3] for line in problem_lines(p)]
    assert states == ["fixed", "fixed"]  # chunk 1 seen through each name
    assert fsck(v).returncode == 0

    v.mount()
    try:
        names = [v.mnt / "docs" / "report.bin", v.mnt / "other" / "same.bin"]
        sts = [os.stat(n) for n in names]
        assert [st.st_ino for st in sts] == [ino, ino]
        assert [st.st_nlink for st in sts] == [2, 2]
        want = data[:CHUNK] + bytes(CHUNK) + data[2 * CHUNK:]
        assert [n.read_bytes() == want for n in names] == [True, True]
        with open(names[1], "r+b") as fh:
            fh.write(b"through the second name")
        assert names[0].read_bytes()[:23] == b"through the second name"
    finally:
        v.unmount()


def audit_records(v, event):
    p = sr("audit", "show", v.store, "--json", "--event", event, "--passphrase-file", v.passfile)
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def test_fsck_repair_records_each_action_in_the_audit_trail_and_a_plain_check_none(fresh_vault):
    v = fresh_vault
    make(v, {"/docs/report.bin": os.urandom(3 * CHUNK)})
    (f,) = [e for e in store_entries(v.store) if os.path.isfile(e)]
    chunk1 = [fr for fr in frames(f) if fr[1] == FRAME_CHUNK and fr[2] == 1][-1]
    raw = bytearray(open(f, "rb").read())
    raw[chunk1[0] + FRAME_HEADER_BYTES + 10] ^= 0x01
    open(f, "wb").write(raw)
    open(os.path.join(os.path.dirname(f), ".sr-tmp.leftover"), "wb").write(b"x")

    assert fsck(v).returncode == 9
    assert audit_records(v, "repair") == []  # a check without --repair writes nothing
    p = fsck(v, "--repair")
    assert p.returncode == 1, p.stdout + p.stderr

    recs = audit_records(v, "repair")
    assert recs[0]["detail"] == "start: fsck --repair"
    assert recs[-1]["detail"] == "end: 2 folders, 1 files checked; 2 problems, 2 fixed, 0 left"
    actions = {r["detail"].split(":")[0]: r for r in recs[1:-1]}
    assert set(actions) == {"chunk 1 fixed", "orphan temporary file fixed"}
    chunk = actions["chunk 1 fixed"]
    assert chunk["path"] == "/docs/report.bin" and chunk["outcome"] == 0
    assert os.path.join(str(v.store), chunk["path2"]) == f
    assert "original in quarantine/" in chunk["detail"]
    assert len({r["pid"] for r in recs}) == 1 and is_strongroom_process(recs[0]["process"])
    assert sr("audit", "verify", v.store, "--passphrase-file", v.passfile, check=False).returncode == 0
