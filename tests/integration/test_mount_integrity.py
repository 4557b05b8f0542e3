"""Tampering with the store gives EIO, never wrong bytes; a killed driver
loses nothing that was fsync'ed and needs no repair step."""

import errno
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap

import pytest

from conftest import pid_running, sr, wait_until

HEADER_BYTES = 64
FRAME_HEADER_BYTES = 48
LOCATOR_BYTES = 16
FRAME_CHUNK, FRAME_SEAL = 1, 2


def store_files(store):
    """Ciphertext files of plaintext files (reserved names start with '.')."""
    out = []
    for root, _, files in os.walk(store / "tree"):
        out += [os.path.join(root, f) for f in files if not f.startswith(".")]
    return sorted(out)


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


def write_synced(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_fails_with_eio(path):
    try:
        with open(path, "rb") as f:
            f.read()
    except OSError as e:
        return e.errno == errno.EIO
    return False


def tamper_and_remount(vault, edit):
    """Write a two-chunk file, unmount, edit its ciphertext, mount again."""
    store, mnt = vault
    plain = random.Random(1).randbytes(2 * 65536 + 100)
    write_synced(mnt / "doc.bin", plain)
    vault.unmount()
    (victim,) = store_files(store)
    edit(victim)
    vault.mount()
    vault.expect_log(r"(?i)integrity|authentic|EBADMSG|corrupt|tamper")
    return mnt / "doc.bin", plain


def test_flipped_byte_in_a_chunk_gives_eio(vault):
    def flip(path):
        chunk = [f for f in frames(path) if f[1] == FRAME_CHUNK][0]
        with open(path, "r+b") as f:
            f.seek(chunk[0] + FRAME_HEADER_BYTES + 10)
            b = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([b[0] ^ 0x01]))

    path, _ = tamper_and_remount(vault, flip)
    assert read_fails_with_eio(path)


def test_swapped_chunks_give_eio(vault):
    def swap(path):
        chunks = [f for f in frames(path) if f[1] == FRAME_CHUNK]
        a = [f for f in chunks if f[2] == 0][-1]
        b = [f for f in chunks if f[2] == 1][-1]
        assert a[3] == b[3], "full random chunks should have equal frame sizes"
        with open(path, "r+b") as f:
            f.seek(a[0])
            fa = f.read(a[3])
            f.seek(b[0])
            fb = f.read(b[3])
            f.seek(a[0])
            f.write(fb)
            f.seek(b[0])
            f.write(fa)

    path, _ = tamper_and_remount(vault, swap)
    assert read_fails_with_eio(path)


def test_truncated_ciphertext_gives_eio(vault):
    def cut(path):
        os.truncate(path, os.path.getsize(path) // 2)

    path, _ = tamper_and_remount(vault, cut)
    assert read_fails_with_eio(path)


def test_chunk_copied_from_another_file_gives_eio(vault):
    store, mnt = vault
    rng = random.Random(2)
    write_synced(mnt / "a.bin", rng.randbytes(65536))
    write_synced(mnt / "b.bin", rng.randbytes(65536))
    vault.unmount()
    fa, fb = store_files(store)
    ca = [f for f in frames(fa) if f[1] == FRAME_CHUNK][-1]
    cb = [f for f in frames(fb) if f[1] == FRAME_CHUNK][-1]
    assert ca[3] == cb[3]
    with open(fa, "rb") as f:
        f.seek(ca[0])
        donor = f.read(ca[3])
    with open(fb, "r+b") as f:
        f.seek(cb[0])
        f.write(donor)
    vault.mount()
    vault.expect_log(r"(?i)integrity|authentic|EBADMSG|corrupt|tamper")
    results = [read_fails_with_eio(mnt / "a.bin"), read_fails_with_eio(mnt / "b.bin")]
    assert results.count(True) == 1, "exactly the file that got the foreign chunk fails"


def test_an_untouched_file_still_reads_beside_a_damaged_one(vault):
    store, mnt = vault
    good = os.urandom(5000)
    write_synced(mnt / "good.bin", good)
    write_synced(mnt / "bad.bin", os.urandom(5000))
    vault.unmount()
    for p in store_files(store):
        with open(p, "r+b") as f:
            data = f.read()
            f.seek(len(data) - 40)
            f.write(b"\0" * 8)
        break  # damage just one of them
    vault.mount()
    vault.expect_log(r"(?i)integrity|authentic|EBADMSG|corrupt|tamper")
    outcomes = {}
    for name in ("good.bin", "bad.bin"):
        try:
            outcomes[name] = (mnt / name).read_bytes()
        except OSError as e:
            assert e.errno == errno.EIO
            outcomes[name] = None
    assert list(outcomes.values()).count(None) == 1
    for name, data in outcomes.items():
        if data is not None and name == "good.bin":
            assert data == good


WRITER = textwrap.dedent("""
    import os, sys
    path = sys.argv[1]
    BS, HDR = 20000, 4096
    def block(r):
        return bytes([(r * 7 + i) % 251 for i in range(256)]) * (BS // 256) + bytes(BS % 256)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    r = 0
    while True:
        os.pwrite(fd, block(r), HDR + r * BS)
        os.pwrite(fd, (b"%08d" % r) * (HDR // 8), 0)
        if r % 3 == 0:
            os.fsync(fd)
            print(r, flush=True)
        r += 1
""")


def test_sigkill_of_the_driver_keeps_every_fsynced_byte_and_remounts_without_repair(vault):
    _, mnt = vault
    pid = vault.driver_pid()
    path = mnt / "journal.bin"
    w = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    synced = -1
    try:
        for line in w.stdout:
            synced = int(line)
            if synced >= 60:
                break
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not pid_running(pid))
        rest, _ = w.communicate(timeout=60)
        for line in rest.split():
            synced = max(synced, int(line))
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()
    assert synced >= 60
    vault.pids.discard(pid)
    sr("unmount", mnt)
    vault.expect_log(r"(?i)recover")
    vault.mount()

    bs, hdr = 20000, 4096
    data = path.read_bytes()
    for r in range(synced + 1):
        block = bytes([(r * 7 + i) % 251 for i in range(256)]) * (bs // 256) + bytes(bs % 256)
        assert data[hdr + r * bs:hdr + (r + 1) * bs] == block, f"synced block {r} lost"
    head = data[:hdr]
    v = int(head[:8])
    assert v >= synced
    assert head == (b"%08d" % v) * (hdr // 8), "header is a mix of two writes"
    # The recovered vault keeps working.
    (mnt / "after.txt").write_text("after recovery")
    vault.remount()
    assert (mnt / "after.txt").read_text() == "after recovery"
    assert path.read_bytes()[:len(data)] == data


@pytest.mark.parametrize("cut", ["seal", "header"])
def test_a_damaged_file_does_not_stop_the_vault_from_mounting(vault, cut):
    store, mnt = vault
    write_synced(mnt / "x.bin", os.urandom(100000))
    (mnt / "ok.txt").write_text("fine")
    vault.unmount()
    victim = [p for p in store_files(store) if os.path.getsize(p) > 50000][0]
    with open(victim, "r+b") as f:
        if cut == "seal":
            f.seek(-30, os.SEEK_END)
        else:
            f.seek(20)
        f.write(b"\xff" * 4)
    vault.mount()
    vault.expect_log(r"(?i)integrity|authentic|EBADMSG|corrupt|tamper")
    assert (mnt / "ok.txt").read_text() == "fine"
    assert read_fails_with_eio(mnt / "x.bin")
