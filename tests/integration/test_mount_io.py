"""File contents through the mount: byte-exact I/O against a model, sparse
files over 4 GiB, truncate, fallocate, concurrent writers, mmap, and a store
that holds no plaintext."""

import mmap
import os
import random
import threading

import pytest

GiB = 1 << 30


def csv_bytes(rng, n):
    rows = []
    size = 0
    i = 0
    while size < n:
        row = f"{i},Customer {rng.randrange(10**6)},c{i}@example.com,{rng.random():.6f},Berlin\n"
        rows.append(row)
        size += len(row)
        i += 1
    return "".join(rows).encode()[:n]


def model_roundtrip(path, rng, make, ops=300, max_size=3 << 20):
    """Random pwrite/pread/truncate against a bytearray model; the file and
    the model must agree after every read and at the end (also after a
    reopen)."""
    model = bytearray()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(ops):
            op = rng.random()
            if op < 0.6:
                off = rng.randrange(0, max_size)
                n = rng.choice([1, 7, 512, 4096, 65535, 65536, 65537, 200000, rng.randrange(1, 300000)])
                data = make(rng, n)
                assert os.pwrite(fd, data, off) == n
                if off > len(model):
                    model.extend(b"\0" * (off - len(model)))
                model[off:off + n] = data
            elif op < 0.9:
                off = rng.randrange(0, max(1, len(model) + 1000))
                n = rng.randrange(1, 300000)
                got = os.pread(fd, n, off)
                assert got == bytes(model[off:off + n]), f"read {n}@{off} differs"
            elif op < 0.97:
                size = rng.randrange(0, max(1, len(model) + 70000))
                os.ftruncate(fd, size)
                if size < len(model):
                    del model[size:]
                else:
                    model.extend(b"\0" * (size - len(model)))
            else:
                os.fsync(fd)
            assert os.fstat(fd).st_size == len(model)
    finally:
        os.close(fd)
    return model


@pytest.mark.parametrize("kind", ["random", "csv"])
def test_random_offsets_and_sizes_read_back_byte_exact(vault, kind):
    _, mnt = vault
    rng = random.Random(f"roundtrip-{kind}")
    make = (lambda r, n: r.randbytes(n)) if kind == "random" else csv_bytes
    model = model_roundtrip(mnt / f"data.{kind}", rng, make)
    assert (mnt / f"data.{kind}").read_bytes() == bytes(model)
    vault.remount()
    assert (mnt / f"data.{kind}").read_bytes() == bytes(model)


def test_sequential_write_of_many_chunks_reads_back_after_remount(vault):
    _, mnt = vault
    rng = random.Random(7)
    data = rng.randbytes(5 << 20) + csv_bytes(rng, 3 << 20)
    with open(mnt / "big.bin", "wb") as f:
        for i in range(0, len(data), 1 << 20):
            f.write(data[i:i + (1 << 20)])
    vault.remount()
    assert (mnt / "big.bin").read_bytes() == data
    assert os.stat(mnt / "big.bin").st_size == len(data)


def test_sparse_file_over_4_gib_reads_holes_as_zeros_and_seeks_data_and_holes(vault):
    _, mnt = vault
    path = mnt / "sparse.bin"
    head = b"head of file" * 100
    tail = os.urandom(100000)
    off = 5 * GiB
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, head, 0)
        os.pwrite(fd, tail, off)
        os.fsync(fd)
    finally:
        os.close(fd)
    vault.remount()
    st = os.stat(path)
    assert st.st_size == off + len(tail)
    assert st.st_blocks * 512 < 64 << 20, "holes took space"
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, len(head), 0) == head
        assert os.pread(fd, len(tail), off) == tail
        assert os.pread(fd, 1 << 20, 2 * GiB) == b"\0" * (1 << 20)
        assert os.pread(fd, 4096, off - 4096) == b"\0" * 4096
        assert os.pread(fd, 100, off + len(tail)) == b""
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
        hole = os.lseek(fd, 0, os.SEEK_HOLE)
        assert len(head) <= hole < off
        data = os.lseek(fd, hole, os.SEEK_DATA)
        assert hole < data <= off
        assert os.lseek(fd, off + 1, os.SEEK_HOLE) == off + len(tail)
        with pytest.raises(OSError) as e:
            os.lseek(fd, off + len(tail), os.SEEK_DATA)
        assert e.value.errno == 6  # ENXIO
    finally:
        os.close(fd)


def test_truncate_shrinks_and_extends_with_zeros(vault):
    _, mnt = vault
    path = mnt / "t.bin"
    data = os.urandom(300000)
    path.write_bytes(data)
    os.truncate(path, 100001)
    assert path.read_bytes() == data[:100001]
    os.truncate(path, 250000)
    assert path.read_bytes() == data[:100001] + b"\0" * (250000 - 100001)
    with open(path, "r+b") as f:
        f.truncate(10)
    vault.remount()
    assert path.read_bytes() == data[:10]


def test_fallocate_extends_size_and_keep_size_does_not(vault):
    _, mnt = vault
    path = mnt / "alloc.bin"
    path.write_bytes(b"abc")
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, 1 << 20)
        assert os.fstat(fd).st_size == 1 << 20
        assert os.pread(fd, 3, 0) == b"abc"
        assert os.pread(fd, 100, 500000) == b"\0" * 100
        falloc_keep_size = 1
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
        r = libc.fallocate(fd, falloc_keep_size, 1 << 20, 1 << 20)
        assert r == 0, os.strerror(ctypes.get_errno())
        assert os.fstat(fd).st_size == 1 << 20
    finally:
        os.close(fd)
    vault.remount()
    assert os.stat(path).st_size == 1 << 20


def test_concurrent_writers_to_different_ranges_of_one_file(vault):
    _, mnt = vault
    path = mnt / "shared.bin"
    nthreads, span = 8, 256 * 1024
    blobs = [random.Random(i).randbytes(span) for i in range(nthreads)]
    path.write_bytes(b"")
    errors = []

    def writer(i):
        try:
            fd = os.open(path, os.O_WRONLY)
            try:
                rng = random.Random(100 + i)
                pieces = list(range(0, span, 4096))
                rng.shuffle(pieces)
                for p in pieces:
                    os.pwrite(fd, blobs[i][p:p + 4096], i * span + p)
                os.fsync(fd)
            finally:
                os.close(fd)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert path.read_bytes() == b"".join(blobs)
    vault.remount()
    assert path.read_bytes() == b"".join(blobs)


def test_mmap_shared_writes_are_seen_by_read(vault):
    _, mnt = vault
    path = mnt / "mapped.bin"
    size = 3 * 65536 + 123
    path.write_bytes(b"\0" * size)
    with open(path, "r+b") as f:
        m = mmap.mmap(f.fileno(), size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        m[0:5] = b"first"
        m[65536:65536 + 6] = b"second"
        m[size - 4:size] = b"last"
        m.flush()
        m.close()
    with open(path, "rb") as f:
        data = f.read()
    assert data[0:5] == b"first"
    assert data[65536:65536 + 6] == b"second"
    assert data[size - 4:] == b"last"
    vault.remount()
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, mmap.MAP_SHARED, mmap.PROT_READ)
        assert m[65536:65536 + 6] == b"second"
        m.close()


def test_store_holds_no_plaintext_names_or_contents(vault):
    store, mnt = vault
    marker = b"STRONGROOM-PLAINTEXT-MARKER-0123456789"
    names = ["customer-acme-contract.docx", "salaries 2026.xlsx", "Geheimnis-Übersicht.csv"]
    os.mkdir(mnt / "secret-folder-name")
    for n in names:
        (mnt / "secret-folder-name" / n).write_bytes(marker * 50)
    (mnt / "notes.txt").write_bytes(b"x" * 1000 + marker)
    vault.unmount()
    needles = [marker] + [n.encode() for n in names + ["secret-folder-name", "notes.txt"]]
    needles += [n.rsplit(".", 1)[0].encode() for n in names]
    for root, dirs, files in os.walk(store):
        for name in dirs + files:
            for nd in needles:
                assert nd.decode() not in name, f"plaintext name in store: {name}"
        for name in files:
            blob = open(os.path.join(root, name), "rb").read()
            for nd in needles:
                assert nd not in blob, f"plaintext {nd!r} in store file {name}"
    vault.mount()
