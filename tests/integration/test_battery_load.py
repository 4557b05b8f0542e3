"""Load: the exerciser inside a mounted vault (with and without mmap), eight
processes of mixed operations on one vault checked against their models,
and the driver's memory staying flat under many opens and much data.

Durations come from the environment so tools/check can choose them:
  SR_BATTERY_LOAD_SECS   seconds of the eight-process load (default 20)
  SR_EXERCISER_OPS       exerciser operations per run (default 3000)
  SR_EXERCISER_SEED      exerciser seed (default 1; the run prints it)
  SR_BATTERY_LONG=1      20,000 distinct files and 1 GiB in the memory test
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, no_valgrind, pid_running, sr, wait_until

LONG = os.environ.get("SR_BATTERY_LONG") == "1"
LOAD_SECS = float(os.environ.get("SR_BATTERY_LOAD_SECS", "20"))
EX_OPS = int(os.environ.get("SR_EXERCISER_OPS", "3000"))
EX_SEED = int(os.environ.get("SR_EXERCISER_SEED", "1"))
BUILD = Path(os.environ.get("SR_BUILD") or REPO / "build")
EXERCISER = BUILD / "tests" / "exerciser"


@pytest.mark.parametrize("mmap", [True, False], ids=["mmap", "no-mmap"])
def test_the_exerciser_finds_every_read_as_the_model_says(vault, mmap):
    if not EXERCISER.exists():
        pytest.skip(f"{EXERCISER} not built")
    args = [str(EXERCISER), "-q", "-n", str(EX_OPS), "-s", str(EX_SEED), "-L", str(2 << 20)]
    if not mmap:
        args.append("-N")
    p = subprocess.run(args + [str(vault.mnt / "exercised.bin")], capture_output=True, text=True,
                       timeout=3600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "passed" in p.stdout
    vault.remount()
    assert os.path.getsize(vault.mnt / "exercised.bin") >= 0


WORKER = textwrap.dedent(r"""
    import hashlib, json, os, random, sys, time
    mnt, wid, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    rng = random.Random(wid)
    home = os.path.join(mnt, f"w{wid}")
    os.mkdir(home)
    model = {}
    ops = {}
    def doc(n):
        body = hashlib.sha256(b"%d" % n).digest() * (50 + n % 700)
        return b"version %08d\n" % n + body
    def check_doc(data):
        n = int(data[8:16])
        assert data == doc(n), "shared document is not one whole version"
    end = time.monotonic() + secs
    save = 0
    while time.monotonic() < end:
        op = rng.choice(["write", "write", "append", "read", "read", "truncate", "rename",
                         "unlink", "list", "xattr", "fsync", "doc", "docread", "mkdir"])
        ops[op] = ops.get(op, 0) + 1
        name = f"f{rng.randrange(12)}"
        path = os.path.join(home, name)
        if op == "write":
            data = rng.randbytes(rng.choice([10, 3000, 70000, 200000]))
            off = rng.randrange(0, 150000)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            os.pwrite(fd, data, off)
            os.close(fd)
            old = model.get(name, b"")
            old = old + bytes(max(0, off - len(old)))
            model[name] = old[:off] + data + old[off + len(data):]
        elif op == "append":
            data = rng.randbytes(rng.randrange(1, 5000))
            with open(path, "ab") as f:
                f.write(data)
            model[name] = model.get(name, b"") + data
        elif op == "read" and name in model:
            with open(path, "rb") as f:
                assert f.read() == model[name], f"w{wid}/{name} differs from its model"
        elif op == "truncate" and name in model:
            size = rng.randrange(0, 200000)
            os.truncate(path, size)
            m = model[name]
            model[name] = m[:size] + bytes(max(0, size - len(m)))
        elif op == "rename" and name in model:
            other = f"f{rng.randrange(12)}"
            os.rename(path, os.path.join(home, other))
            model[other] = model.pop(name)
        elif op == "unlink" and name in model:
            os.unlink(path)
            del model[name]
        elif op == "list":
            got = {n for n in os.listdir(home) if n.startswith("f")}
            assert got == set(model), f"w{wid}: listing {sorted(got)} != {sorted(model)}"
        elif op == "xattr" and name in model:
            v = b"%d" % rng.randrange(1 << 30)
            os.setxattr(path, "user.battery", v)
            assert os.getxattr(path, "user.battery") == v
        elif op == "fsync" and name in model:
            fd = os.open(path, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        elif op == "doc" and wid == 0:
            # The office-style save of a shared document: temp, fsync, rename.
            save += 1
            tmp = os.path.join(mnt, "shared", f".~tmp{save}")
            with open(tmp, "wb") as f:
                f.write(doc(save))
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, os.path.join(mnt, "shared", "doc.txt"))
        elif op == "docread":
            # An open racing the rename over finds the old or the new
            # version (never ENOENT), and reads one whole version.
            with open(os.path.join(mnt, "shared", "doc.txt"), "rb") as f:
                check_doc(f.read())
            with open(os.path.join(mnt, "shared", "fixed.bin"), "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == sys.argv[4]
        elif op == "mkdir":
            d = os.path.join(home, "sub")
            try:
                os.mkdir(d)
                os.rmdir(d)
            except FileExistsError:
                os.rmdir(d)
    print(json.dumps({"model": {n: hashlib.sha256(d).hexdigest() for n, d in model.items()},
                      "ops": ops}))
""")


def test_eight_processes_of_mixed_operations_agree_with_their_models(vault):
    import hashlib
    mnt = vault.mnt
    (mnt / "shared").mkdir()
    fixed = os.urandom(300000)
    (mnt / "shared" / "fixed.bin").write_bytes(fixed)
    (mnt / "shared" / "doc.txt").write_bytes(b"version 00000000\n" +
                                             hashlib.sha256(b"0").digest() * 50)
    digest = hashlib.sha256(fixed).hexdigest()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(mnt), str(i), str(LOAD_SECS),
                               digest], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(8)]
    results = []
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=LOAD_SECS + 600)
        assert p.returncode == 0, f"worker {i} failed:\n{err[-3000:]}"
        results.append(json.loads(out))
    assert sum(sum(r["ops"].values()) for r in results) > 8 * 10, "the load did almost nothing"
    vault.remount()
    for i, r in enumerate(results):
        home = mnt / f"w{i}"
        got = {n for n in os.listdir(home) if n.startswith("f")}
        assert got == set(r["model"]), f"w{i} after remount"
        for n, h in r["model"].items():
            assert hashlib.sha256((home / n).read_bytes()).hexdigest() == h, f"w{i}/{n}"
    assert (mnt / "shared" / "fixed.bin").read_bytes() == fixed


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def sanitized(pid):
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


@no_valgrind("memcheck's own shadow memory is what the resident size would measure")
def test_the_driver_memory_stays_flat_over_many_opens_and_much_data(vault):
    pid = vault.driver_pid()
    if sanitized(pid):
        pytest.skip("AddressSanitizer's quarantine grows the driver's memory by design")
    mnt = vault.mnt
    nfiles = 20000 if LONG else 1000
    rounds = 1 if LONG else 20  # 20,000 opens and closes either way
    d = mnt / "many"
    d.mkdir()
    for i in range(nfiles):
        (d / f"{i}.txt").write_bytes(b"%d\n" % i)
    opens = []
    for r in range(rounds):
        for i in range(nfiles):
            with open(d / f"{i}.txt", "rb") as f:
                assert f.read() == b"%d\n" % i
        opens.append(rss_kib(pid))
    # Data: 1 GiB under --long, 256 MiB otherwise, in 1 MiB writes; the
    # first 128 MiB (a quarter under --long) warm up the write path
    # (buffers, compression contexts, the encode workers and the
    # allocator's per-thread arenas, which settle over the first hundred
    # MiB or so); from there nothing may grow.
    total_mib = 1024 if LONG else 256
    warm_mib = 256 if LONG else 128
    block = os.urandom(1 << 20)
    writes = []
    with open(mnt / "big.bin", "wb") as f:
        for i in range(total_mib):
            f.write(block)
            if i % 64 == 63 and i + 1 >= warm_mib:
                f.flush()
                os.fsync(f.fileno())
                writes.append(rss_kib(pid))
    os.unlink(mnt / "big.bin")
    writes.append(rss_kib(pid))
    assert pid_running(pid)
    # Flat: once warm, nothing grows with the number of opens or bytes
    # written (allow 8 MiB of allocator noise).
    assert max(opens) - opens[0] < 8 * 1024, f"driver RSS grew with opens: {opens} KiB"
    assert max(writes) - writes[0] < 8 * 1024, f"driver RSS grew with data: {writes} KiB"


READER = textwrap.dedent(r"""
    import os, sys, time
    path, secs = sys.argv[1], float(sys.argv[2])
    end = time.monotonic() + secs
    n = 0
    while time.monotonic() < end:
        with open(path, "rb") as f:
            data = f.read()
        v = data[:1]
        assert data == v * len(data) and len(data) >= 70000, "a mix of two versions"
        n += 1
    print(n)
""")


def test_readers_opening_a_document_while_it_is_replaced_never_miss_it(vault):
    """Temp + rename over, as office apps save, with four readers opening
    the name all the time: each open finds the old or the new file whole,
    never ENOENT (the kernel's lookup may still hold the replaced file)."""
    mnt = vault.mnt
    doc = mnt / "sheet.xlsx"
    doc.write_bytes(b"\x01" * 70000)
    secs = 8
    readers = [subprocess.Popen([sys.executable, "-c", READER, str(doc), str(secs)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(4)]
    i = 0
    import time
    end = time.monotonic() + secs
    while time.monotonic() < end:
        i += 1
        tmp = mnt / f".~sheet{i}.tmp"
        tmp.write_bytes(bytes([i % 250 + 1]) * (70000 + (i % 13) * 1000))
        os.rename(tmp, doc)
    failures = []
    for r in readers:
        out, err = r.communicate(timeout=120)
        if r.returncode != 0:
            failures.append(err.strip().splitlines()[-1])
    # The kernel sends the last releases after close returns.
    wait_until(lambda: sr("unmount", mnt, check=False).returncode == 0, timeout=30)
    assert i > 10
    assert not failures, failures


def _audit(v, *args):
    p = sr("audit", "show", v.store, "--json", "--passphrase-file", v.passfile, *args)
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def test_a_file_the_kernel_holds_opens_after_a_rename_over_its_name(vault):
    """The race above, made deterministic: an O_PATH descriptor holds the
    kernel's inode of the old document (as a path walk under way does, with
    no open sent), the save renames the new version over the name, then the
    held inode is opened through /proc/self/fd. As on a local filesystem it
    opens and reads the old version whole; the name reads the new one; the
    open is audited with the path the file had."""
    doc = vault.mnt / "report.docx"
    doc.write_bytes(b"old version " * 7000)
    fd = os.open(doc, os.O_PATH)
    try:
        tmp = vault.mnt / ".~report.tmp"
        tmp.write_bytes(b"new version " * 5000)
        os.rename(tmp, doc)
        with open(f"/proc/self/fd/{fd}", "rb") as f:
            assert f.read() == b"old version " * 7000
        assert os.fstat(fd).st_size == len(b"old version " * 7000)
        assert doc.read_bytes() == b"new version " * 5000
    finally:
        os.close(fd)
    vault.unmount()
    opens = [r for r in _audit(vault, "--event", "open", "--path", "/report.docx")
             if r.get("pid") == os.getpid() and r["access"] == "r"]
    # The held old file's open, then the new name's: both allowed, both named.
    assert [r["outcome"] for r in opens] == [0, 0], opens


def test_an_unlinked_file_the_kernel_holds_still_opens_and_changes_like_a_local_file(vault):
    """unlink, then open, chmod, utime and truncate through the held inode
    (O_PATH + /proc/self/fd, so no handle was open when the name went):
    each works as on ext4 and the open is recorded with the old path."""
    f = vault.mnt / "draft.txt"
    f.write_bytes(b"draft" * 1000)
    fd = os.open(f, os.O_PATH)
    try:
        os.unlink(f)
        assert not f.exists()
        proc = f"/proc/self/fd/{fd}"
        with open(proc, "rb") as h:
            assert h.read() == b"draft" * 1000
        os.chmod(proc, 0o600)
        assert os.stat(proc).st_mode & 0o777 == 0o600
        os.utime(proc, (1_000_000_000, 1_000_000_000))
        assert os.stat(proc).st_mtime == 1_000_000_000
        os.truncate(proc, 10)
        assert os.stat(proc).st_size == 10
        with open(proc, "rb") as h:
            assert h.read() == b"draft" * 2
    finally:
        os.close(fd)
    vault.unmount()
    recs = [r for r in _audit(vault, "--path", "/draft.txt") if r.get("pid") == os.getpid()]
    events = [r["event"] for r in recs]
    after = recs[events.index("unlink") + 1:]
    assert [(r["event"], r["outcome"], r["access"]) for r in after if r["event"] == "open"] == \
        [("open", 0, "r"), ("open", 0, "r")], recs
    assert [r["detail"] for r in after if r["event"] == "setattr"][:1] == ["chmod 0600"], recs


def test_fchmod_and_futimes_on_an_open_unlinked_file_succeed(vault):
    """As on a local filesystem: a handle open on a file whose name is gone
    still changes its mode and times (office apps fchmod their temp files)."""
    f = vault.mnt / "scratch.tmp"
    with open(f, "wb") as h:
        h.write(b"x" * 100)
        h.flush()
        os.unlink(f)
        os.fchmod(h.fileno(), 0o640)
        assert os.fstat(h.fileno()).st_mode & 0o777 == 0o640
        os.utime(h.fileno(), (2_000_000_000, 2_000_000_000))
        assert os.fstat(h.fileno()).st_mtime == 2_000_000_000
        h.write(b"y" * 10)
        h.flush()
        assert os.fstat(h.fileno()).st_size == 110
