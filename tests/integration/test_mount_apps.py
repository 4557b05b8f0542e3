"""What real applications do in a vault: office saves, SQLite, rsync, git."""

import os
import random
import shutil
import sqlite3
import subprocess

import pytest


def test_office_save_pattern_replaces_the_file_atomically(vault):
    """LibreOffice-style save: lock file, write a temp, fsync, rename over."""
    _, mnt = vault
    os.mkdir(mnt / "docs")
    doc = mnt / "docs" / "report.docx"
    lock = mnt / "docs" / ".~lock.report.docx#"
    old = os.urandom(200000)
    doc.write_bytes(old)

    for version in range(5):
        lock.write_text("staff,host,/home/staff,23.11.2026 10:00,\n")
        new = os.urandom(150000 + version * 1000)
        tmp = mnt / "docs" / f"lu{version}abc.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, new)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, doc)
        os.unlink(lock)
        assert doc.read_bytes() == new
        old = new
    assert sorted(os.listdir(mnt / "docs")) == ["report.docx"]
    vault.remount()
    assert doc.read_bytes() == old


def test_reader_holding_the_old_file_reads_the_old_bytes_whole_after_rename_over(vault):
    _, mnt = vault
    doc = mnt / "contract.pdf"
    old = os.urandom(3 * 65536 + 999)
    new = os.urandom(2 * 65536 + 5)
    doc.write_bytes(old)
    with open(doc, "rb") as reader:
        head = reader.read(1000)
        tmp = mnt / "contract.pdf.tmp"
        with open(tmp, "wb") as w:
            w.write(new)
            w.flush()
            os.fsync(w.fileno())
        os.rename(tmp, doc)
        rest = reader.read()
        assert head + rest == old
        assert os.fstat(reader.fileno()).st_size == len(old)
    with open(doc, "rb") as fresh:
        assert fresh.read() == new


def test_a_new_reader_during_repeated_replacement_sees_old_or_new_whole(vault):
    _, mnt = vault
    doc = mnt / "sheet.xlsx"
    versions = [bytes([i]) * (70000 + i * 3000) for i in range(1, 9)]
    doc.write_bytes(versions[0])
    for i, v in enumerate(versions[1:], 1):
        tmp = mnt / f".~sheet{i}.tmp"
        tmp.write_bytes(v)
        with open(doc, "rb") as r:
            before = r.read()
        os.rename(tmp, doc)
        after = doc.read_bytes()
        assert before == versions[i - 1]
        assert after == v


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_sqlite_5000_transactions_pass_integrity_check(vault, journal):
    _, mnt = vault
    db = mnt / f"db-{journal}.sqlite"
    con = sqlite3.connect(db, isolation_level=None)
    try:
        assert con.execute(f"PRAGMA journal_mode={journal}").fetchone()[0] == journal
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER, v TEXT)")
        con.execute("CREATE INDEX t_k ON t(k)")
        rng = random.Random(journal)
        for i in range(5000):
            con.execute("BEGIN")
            con.execute("INSERT INTO t (k, v) VALUES (?, ?)", (rng.randrange(10**6), "v" * rng.randrange(1, 400)))
            if i % 7 == 0:
                con.execute("UPDATE t SET v = ? WHERE id = ?", ("updated", rng.randrange(1, i + 2)))
            if i % 11 == 0:
                con.execute("DELETE FROM t WHERE id = ?", (rng.randrange(1, i + 2),))
            con.execute("COMMIT")
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        count = con.execute("SELECT count(*) FROM t").fetchone()[0]
    finally:
        con.close()
    vault.remount()
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT count(*) FROM t").fetchone()[0] == count
    finally:
        con.close()


def make_tree(root, rng, nfiles=120):
    os.makedirs(root, exist_ok=True)
    for i in range(nfiles):
        d = root / f"dir{i % 7}" / f"sub{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        size = rng.choice([0, 1, 100, 4096, 65536, 65537, 300000])
        (d / f"file{i}.bin").write_bytes(rng.randbytes(size))
    os.symlink("dir0/sub0/file0.bin", root / "link")
    os.chmod(root / "dir1", 0o750)
    os.utime(root / "dir2" / "sub2" / "file2.bin", (1_600_000_000, 1_600_000_000))


@pytest.mark.skipif(not shutil.which("rsync"), reason="rsync not installed")
def test_rsync_into_the_vault_and_back_shows_no_difference(vault, tmp_path):
    _, mnt = vault
    src = tmp_path / "src"
    make_tree(src, random.Random(5))
    subprocess.run(["rsync", "-a", f"{src}/", f"{mnt}/copy/"], check=True, timeout=300)
    vault.remount()
    diff = subprocess.run(["rsync", "-rlc", "--dry-run", "--itemize-changes", f"{src}/", f"{mnt}/copy/"],
                          check=True, capture_output=True, text=True, timeout=300)
    assert diff.stdout.strip() == ""
    back = tmp_path / "back"
    subprocess.run(["rsync", "-a", f"{mnt}/copy/", f"{back}/"], check=True, timeout=300)
    diff = subprocess.run(["rsync", "-rlc", "--dry-run", "--itemize-changes", f"{src}/", f"{back}/"],
                          check=True, capture_output=True, text=True, timeout=300)
    assert diff.stdout.strip() == ""
    diff = subprocess.run(["rsync", "-a", "--dry-run", "--itemize-changes", f"{src}/", f"{mnt}/copy/"],
                          check=True, capture_output=True, text=True, timeout=300)
    assert diff.stdout.strip() == "", "rsync -a sees changed times or modes"


@pytest.mark.skipif(not shutil.which("git"), reason="git not installed")
def test_git_init_add_commit_fsck_of_500_files(vault):
    _, mnt = vault
    repo = mnt / "repo"
    rng = random.Random(9)
    for i in range(500):
        d = repo / f"pkg{i % 20}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"mod{i}.txt").write_text(f"file {i}\n" + "line\n" * rng.randrange(1, 200))
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com", HOME=str(mnt))

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                              env=env, timeout=300)

    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "five hundred files")
    (repo / "pkg0" / "mod0.txt").write_text("changed\n")
    git("commit", "-q", "-am", "change one")
    git("gc", "-q")
    vault.remount()
    git("fsck", "--full", "--strict")
    assert git("status", "--porcelain").stdout == ""
    assert len(git("ls-files").stdout.splitlines()) == 500
