"""Crash matrix: the driver is killed at many points of many workloads by the
store's fault injection (SR_FAULT, read by the driver from its environment,
which `strongroom mount` passes on), then the vault is mounted again without
any repair step and checked against a model of what the workload did:

- every byte that was fsync'ed and not written since is there;
- every other byte holds a value it had at some point since that fsync
  (a chunk interrupted while being written is old or new, never garbage);
- a document saved through temp + fsync + rename is one whole version;
- files the workload never touched read back exactly;
- `strongroom audit verify` passes: a crash shows as recovery, not damage.

A power-loss variant cuts every store file back to the length it had right
after the workload's last fsync, then mounts and checks the synced state.

SR_BATTERY_LONG=1 (tools/check --long) runs more fault points per workload,
SR_BATTERY_QUICK=1 (the sanitizer pass) one per kind of call.
"""

import errno
import os
import random
import signal
import subprocess

import pytest

from conftest import no_valgrind, pid_running, sr, wait_until

pytestmark = no_valgrind("kills the driver at many store calls and each point takes minutes "
                         "under valgrind; a process killed that way is checked for memory "
                         "errors only, not leaks")

LONG = os.environ.get("SR_BATTERY_LONG") == "1"
QUICK = os.environ.get("SR_BATTERY_QUICK") == "1"  # the sanitizer pass: fewer points
CHUNK = 65536
RECOVERY_LOG = r"(?i)recover|torn|crash|seal|integrity|interrupted|compact"


class Crashed(Exception):
    """The mount went away under the workload."""


def io(fn, *a):
    """Run one syscall of the workload; a dead mount raises Crashed."""
    try:
        return fn(*a)
    except OSError as e:
        if e.errno in (errno.ENOTCONN, errno.ECONNABORTED, errno.EIO, errno.ENODEV):
            raise Crashed() from e
        raise


class Model:
    """Per file, the versions it may hold after a crash: the content at its
    last fsync and every content since (None = the name does not exist)."""

    def __init__(self):
        self.files = {}
        self.whole = set()  # names that must equal one version exactly
        self.levels = {}  # name -> set of acceptable levels

    def cur(self, name):
        v = self.files.get(name)
        return v[-1] if v else None

    def set(self, name, data):
        self.files.setdefault(name, [None]).append(data)

    def synced(self, name):
        self.files[name] = [self.cur(name)]


def close(fd):
    try:
        os.close(fd)
    except OSError:
        pass


def pwrite_model(old, off, data):
    old = old or b""
    if off > len(old):
        old = old + bytes(off - len(old))
    return old[:off] + data + old[off + len(data):]


def check_file(model, name, got):
    """Assert got (bytes or None) is a state the model allows for name."""
    versions = model.files[name]
    if got is None:
        assert None in versions, f"{name}: missing, but it was synced"
        return
    present = [v for v in versions if v is not None]
    assert present, f"{name}: exists, but it never did"
    if name in model.whole:
        assert any(got == v for v in present), f"{name}: not one whole saved version"
        return
    sizes = [len(v) for v in present]
    assert min(sizes) <= len(got) <= max(sizes), \
        f"{name}: size {len(got)} outside {min(sizes)}..{max(sizes)}"
    padded = [v + bytes(len(got) - len(v)) if len(v) < len(got) else v[:len(got)]
              for v in present]
    for a in range(0, len(got), CHUNK):
        b = min(a + CHUNK, len(got))
        piece = got[a:b]
        if any(piece == p[a:b] for p in padded):
            continue
        for i in range(a, b):
            if not any(piece[i - a] == p[i] for p in padded):
                raise AssertionError(
                    f"{name}: byte {i} is {piece[i - a]:#x}, a value it never had "
                    f"(allowed {sorted({p[i] for p in padded})})")


# ---- workloads: each takes (mnt, model, rng) and raises Crashed when the
# driver dies; the model is updated before each step so an interrupted step
# counts as possibly done.

def wl_sequential(mnt, m, rng):
    m.set("seq.bin", b"")
    fd = io(os.open, mnt / "seq.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for r in range(60):
            block = bytes([(r * 7 + i) % 251 for i in range(256)]) * 80
            m.set("seq.bin", m.cur("seq.bin") + block)
            io(os.write, fd, block)
            if r % 3 == 2:
                io(os.fsync, fd)
                m.synced("seq.bin")
    finally:
        close(fd)


def wl_random(mnt, m, rng):
    m.set("rand.bin", b"")
    fd = io(os.open, mnt / "rand.bin", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for r in range(80):
            off = rng.randrange(0, 5 * CHUNK)
            data = rng.randbytes(rng.choice([1, 100, 4096, 20000, CHUNK + 7]))
            m.set("rand.bin", pwrite_model(m.cur("rand.bin"), off, data))
            io(os.pwrite, fd, data, off)
            if r % 5 == 4:
                io(os.fsync, fd)
                m.synced("rand.bin")
    finally:
        close(fd)


def wl_truncate(mnt, m, rng):
    m.set("trunc.bin", b"")
    fd = io(os.open, mnt / "trunc.bin", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for r in range(40):
            if r % 2:
                size = rng.randrange(0, 4 * CHUNK)
                cur = m.cur("trunc.bin")
                m.set("trunc.bin", cur[:size] + bytes(max(0, size - len(cur))))
                io(os.ftruncate, fd, size)
            else:
                off = rng.randrange(0, 3 * CHUNK)
                data = rng.randbytes(rng.randrange(1, 30000))
                m.set("trunc.bin", pwrite_model(m.cur("trunc.bin"), off, data))
                io(os.pwrite, fd, data, off)
            if r % 4 == 3:
                io(os.fsync, fd)
                m.synced("trunc.bin")
    finally:
        close(fd)


def wl_rename(mnt, m, rng):
    names = [f"r{i}.txt" for i in range(4)]
    for r in range(30):
        src, dst = rng.sample(names, 2)
        data = b"%d " % r * rng.randrange(1, 3000)
        m.set(src, b"")
        m.set(src, data)
        fd = io(os.open, mnt / src, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            io(os.write, fd, data)
            io(os.fsync, fd)
        finally:
            close(fd)
        m.synced(src)
        m.set(dst, data)
        m.set(src, None)
        io(os.rename, mnt / src, mnt / dst)


def wl_office(mnt, m, rng):
    """Save as office apps do: lock file, temp, fsync, rename over."""
    m.whole.add("report.docx")
    for r in range(25):
        data = (b"<w:document rev=%d>" % r) + rng.randbytes(rng.randrange(1000, 90000))
        lock = mnt / ".~lock.report.docx#"
        tmp = mnt / f"~$report{r}.tmp"
        m.set(".~lock.report.docx#", b"")
        m.set(".~lock.report.docx#", b"lock")
        io(lock.write_bytes, b"lock")
        m.set(tmp.name, b"")
        m.set(tmp.name, data)
        fd = io(os.open, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            io(os.write, fd, data)
            io(os.fsync, fd)
        finally:
            close(fd)
        m.synced(tmp.name)
        m.set("report.docx", data)
        m.set(tmp.name, None)
        io(os.rename, tmp, mnt / "report.docx")
        m.set(".~lock.report.docx#", None)
        io(os.unlink, lock)


def wl_compaction(mnt, m, rng):
    """Overwrite one chunk until dead frames outweigh live ones; the last
    close compacts the file (copy to a sibling, rename over)."""
    name = "compact.bin"
    for r in range(8):
        if m.cur(name) is None:
            m.set(name, b"")
        fd = io(os.open, mnt / name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            for k in range(6):
                data = rng.randbytes(CHUNK)
                m.set(name, pwrite_model(m.cur(name), (k % 2) * CHUNK, data))
                io(os.pwrite, fd, data, (k % 2) * CHUNK)
                io(os.fsync, fd)
                m.synced(name)
        finally:
            close(fd)


def wl_reclassify(mnt, m, rng):
    levels = [b"public", b"internal", b"confidential", b"restricted"]
    for i in range(3):
        name = f"cls{i}.bin"
        data = rng.randbytes(rng.randrange(1, 3 * CHUNK))
        m.set(name, b"")
        m.set(name, data)
        fd = io(os.open, mnt / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            io(os.write, fd, data)
            io(os.fsync, fd)
        finally:
            close(fd)
        m.synced(name)
        m.levels[name] = {io(os.getxattr, mnt / name, "user.strongroom.level")}
    for r in range(12):
        name = f"cls{r % 3}.bin"
        lvl = levels[r % 4]
        m.levels[name].add(lvl)
        io(os.setxattr, mnt / name, "user.strongroom.level", lvl)
        m.levels[name] = {lvl}


WORKLOADS = {
    "sequential": wl_sequential,
    "random": wl_random,
    "truncate": wl_truncate,
    "rename": wl_rename,
    "office": wl_office,
    "compaction": wl_compaction,
    "reclassify": wl_reclassify,
}

# Fault points per workload: (kind, N). The counters start with the
# driver's first store call, so small N land in the mount itself (that is a
# crash point too) and larger ones in the workload.
POINTS = {
    "write": [3, 25] + ([8, 12, 20, 30, 45, 60, 90, 140] if LONG else []),
    "fsync": [2, 10] + ([4, 8, 12, 16, 20, 30, 45] if LONG else []),
    "rename": [1, 4] + ([2, 3, 5, 8, 12, 20] if LONG else []),
}
if QUICK and not LONG:
    POINTS = {kind: ns[:1] for kind, ns in POINTS.items()}
UNTOUCHED = {
    "keep/a.txt": b"untouched text\n" * 100,
    "keep/b.bin": bytes(range(256)) * 900,
    "keep/deep/c.bin": b"",
    "root.bin": bytes(7) + b"x" * (2 * CHUNK + 3),
}


def prepare(v):
    v.mount()
    for path, data in UNTOUCHED.items():
        p = v.mnt / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    v.unmount()


def reap(v):
    """After the workload: unmount a live driver or clean up a dead one.
    @return True if the driver had died."""
    pid = v.driver_pid()
    if pid and pid_running(pid):
        v.unmount()
        return False
    for p in list(v.pids):
        if not pid_running(p):
            v.pids.discard(p)
    p = sr("unmount", v.mnt, check=False, timeout=60)
    if p.returncode != 0:
        subprocess.run(["umount", "-l", str(v.mnt)], capture_output=True)
    return True


def read_state(mnt, name):
    try:
        return (mnt / name).read_bytes()
    except FileNotFoundError:
        return None


def check_vault(v, m):
    v.expect_log(RECOVERY_LOG)
    v.mount()
    for path, data in UNTOUCHED.items():
        assert (v.mnt / path).read_bytes() == data, f"untouched {path} changed"
    listed = {e for e in os.listdir(v.mnt)}
    for name in m.files:
        got = read_state(v.mnt, name)
        check_file(m, name, got)
        if got is not None:
            listed.discard(name)
    for name, allowed in m.levels.items():
        lvl = os.getxattr(v.mnt / name, "user.strongroom.level")
        assert lvl in allowed, f"{name}: level {lvl} not one of {allowed}"
    unknown = listed - {"keep", "root.bin"}
    assert not unknown, f"names nobody created: {unknown}"
    # The recovered vault keeps working.
    (v.mnt / "after.txt").write_bytes(b"after")
    v.unmount()
    p = sr("audit", "verify", v.store, "--passphrase-file", v.passfile, check=False)
    assert p.returncode == 0, f"audit verify after a crash: {p.stdout}{p.stderr}"


def cases():
    out = []
    for wl in WORKLOADS:
        for kind, ns in POINTS.items():
            if kind == "rename" and wl in ("sequential", "random", "truncate"):
                continue  # they rename nothing but the audit trail's segments
            for n in ns:
                out.append((wl, f"{kind}:{n}:abort"))
    return out


@pytest.mark.parametrize("workload,fault", cases())
def test_a_crash_at_a_store_call_loses_no_synced_byte_and_needs_no_repair(
        fresh_vault, workload, fault):
    v = fresh_vault
    prepare(v)
    m = Model()
    env = dict(os.environ, SR_FAULT=fault)
    p = sr("mount", v.store, v.mnt, "--passphrase-file", v.passfile, "--log-file", v.log,
           check=False, env=env)
    crashed_in_mount = p.returncode != 0
    where = "mount"
    if not crashed_in_mount:
        pid = v.driver_pid()
        if pid:
            v.pids.add(pid)
        where = "none"
        try:
            WORKLOADS[workload](v.mnt, m, random.Random(f"{workload}/{fault}"))
        except Crashed:
            where = "workload"
        if reap(v) and where == "none":
            where = "close"
    elif os.path.ismount(v.mnt):
        reap(v)
    print(f"CRASH {workload} {fault} {where}")
    check_vault(v, m)


# ---- power loss: store files cut back to their length at the last fsync

def store_sizes(store):
    out = {}
    for root, _, files in os.walk(store / "tree"):
        for f in files:
            p = os.path.join(root, f)
            out[p] = os.path.getsize(p)
    return out


@pytest.mark.parametrize("seed", range(4 if LONG else 2))
def test_a_power_loss_after_fsync_keeps_the_synced_state(vault, seed):
    v = vault
    rng = random.Random(seed)
    files = {f"p{i}.bin": b"" for i in range(3)}
    fds = {n: os.open(v.mnt / n, os.O_RDWR | os.O_CREAT, 0o644) for n in files}
    synced = sizes = None
    # Every write goes to a chunk not written before, so no frame dies and
    # closing a file never compacts it (a compaction is itself durable).
    slots = [(n, k) for n in files for k in range(14)]
    rng.shuffle(slots)
    try:
        for r in range(30):
            n, k = slots.pop()
            data = rng.randbytes(rng.randrange(1, CHUNK))
            files[n] = pwrite_model(files[n], k * CHUNK, data)
            os.pwrite(fds[n], data, k * CHUNK)
            if r % 7 == 6 or r == 20:
                for fd in fds.values():
                    os.fsync(fd)
                synced = dict(files)
                sizes = store_sizes(v.store)
        # Unsynced bytes reach the store (a close seals without fsync),
        # then the power goes: kill the driver, cut the store back.
        os.pwrite(fds["p0.bin"], rng.randbytes(CHUNK), 20 * CHUNK)
        os.close(fds.pop("p0.bin"))
        pid = v.driver_pid()
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not pid_running(pid), timeout=10)
    finally:
        for fd in fds.values():
            try:
                close(fd)
            except OSError:
                pass
    v.pids.discard(pid)
    sr("unmount", v.mnt, check=False)
    if os.path.ismount(v.mnt):
        subprocess.run(["umount", "-l", str(v.mnt)], capture_output=True)
    cut = 0
    for path, size in sizes.items():
        if os.path.exists(path) and os.path.getsize(path) > size:
            os.truncate(path, size)
            cut += 1
    assert cut, "nothing was written after the last fsync; the test tests nothing"
    v.expect_log(RECOVERY_LOG)
    v.mount()
    for n, data in synced.items():
        assert (v.mnt / n).read_bytes() == data, f"{n}: synced state not kept"
    v.unmount()
    p = sr("audit", "verify", v.store, "--passphrase-file", v.passfile, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
