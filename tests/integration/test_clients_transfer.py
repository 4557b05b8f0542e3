"""strongroom import / export: migrating an existing share into a vault and
copying a folder back out, keeping times, modes, owners, ACLs, xattrs,
symlinks and hard links; --level classifies what is imported."""

import os
import pty
import shutil
import subprocess

import pytest

from conftest import SR_BIN, sr
from test_clients_support import staff_vault  # noqa: F401 (fixture)

EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_MOUNTPOINT = 5


def getfacl(root):
    """getfacl -R of a tree, one block per path, sorted (readdir order differs
    between filesystems)."""
    p = subprocess.run(["getfacl", "-R", "-P", "-n", "."], cwd=root, capture_output=True,
                       text=True, check=True)
    return sorted(b for b in p.stdout.split("\n\n") if b.strip())


def tree(root):
    """Everything import/export promise to keep, per relative path."""
    out = {}
    for dirpath, dirs, names in os.walk(root):
        for n in dirs + names:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            entry = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid,
                     "mtime": st.st_mtime_ns}
            if os.path.islink(p):
                entry["target"] = os.readlink(p)
            else:
                entry["xattrs"] = {k: os.getxattr(p, k) for k in os.listxattr(p)
                                   if k.startswith("user.") and
                                   not k.startswith("user.strongroom.")}
                if os.path.isfile(p):
                    with open(p, "rb") as f:
                        entry["data"] = f.read()
                    entry["ino"] = st.st_ino
            out[rel] = entry
    return out


def hardlink_groups(t):
    groups = {}
    for rel, e in t.items():
        if "ino" in e:
            groups.setdefault(e.pop("ino"), []).append(rel)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


@pytest.fixture
def share(tmp_path):
    """A folder tree as found on an old file share."""
    src = tmp_path / "share"
    (src / "customers" / "acme" / "2023").mkdir(parents=True)
    (src / "templates").mkdir()
    (src / "customers" / "acme" / "contract.pdf").write_bytes(os.urandom(200_000))
    (src / "customers" / "acme" / "2023" / "ledger.csv").write_bytes(
        b"".join(b"%d,%d\n" % (i, i * i) for i in range(30_000)))
    (src / "customers" / "empty.txt").write_bytes(b"")
    (src / "templates" / "letter.odt").write_bytes(b"PK\x03\x04 not really a template")
    os.link(src / "templates" / "letter.odt", src / "templates" / "letter-hardlink.odt")
    os.symlink("../templates/letter.odt", src / "customers" / "letter-link")
    os.symlink("/nonexistent/dangling", src / "dangling")
    os.setxattr(src / "customers" / "acme" / "contract.pdf", "user.origin", b"scanner 3")
    os.chmod(src / "templates", 0o750)
    os.chmod(src / "customers" / "empty.txt", 0o600)
    os.chown(src / "customers" / "empty.txt", 65534, 65534)
    subprocess.run(["setfacl", "-m", "u:nobody:rw,g:nogroup:r",
                    str(src / "customers" / "acme" / "contract.pdf")], check=True)
    subprocess.run(["setfacl", "-d", "-m", "g:nogroup:rwx", str(src / "customers" / "acme")],
                   check=True)
    for dirpath, dirs, names in os.walk(src, topdown=False):
        for n in names + dirs:
            os.utime(os.path.join(dirpath, n), ns=(1_600_000_000_000_000_000,
                                                 1_600_000_000_123_456_789),
                     follow_symlinks=False)
    os.utime(src, ns=(1_600_000_000_000_000_000, 1_600_000_000_123_456_789))
    return src


def test_import_then_export_gives_back_the_share_unchanged(vault, share, tmp_path):
    _store, mnt = vault
    want = tree(share)
    want_links = hardlink_groups(want)
    want_acl = getfacl(share)

    p = sr("import", share, mnt / "migrated")
    assert p.stdout.startswith("Imported: 4 files, 1 hard links, 4 folders, 2 symlinks")
    inside = tree(mnt / "migrated")
    assert hardlink_groups(inside) == want_links
    assert inside == want
    assert getfacl(mnt / "migrated") == want_acl

    out = tmp_path / "exported"
    p = sr("export", mnt / "migrated", out)
    assert p.stdout.startswith("Exported: 4 files, 1 hard links, 4 folders, 2 symlinks")
    back = tree(out)
    assert hardlink_groups(back) == want_links
    assert back == want
    assert getfacl(out) == want_acl
    # an exported copy makes no claim about a level
    assert "user.strongroom.level" not in os.listxattr(out / "customers" / "acme" / "contract.pdf")


def test_import_with_level_classifies_every_file_and_folder(vault, share):
    _store, mnt = vault
    sr("import", share, mnt / "legal", "--level", "confidential")
    for dirpath, dirs, names in os.walk(mnt / "legal"):
        for n in dirs + names + [""]:
            p = os.path.join(dirpath, n)
            if os.path.islink(p):
                continue
            assert os.getxattr(p, "user.strongroom.level") == b"confidential", p
    # and the folder level is the one new files inherit
    (mnt / "legal" / "customers" / "new.txt").write_text("new")
    assert os.getxattr(mnt / "legal" / "customers" / "new.txt",
                       "user.strongroom.level") == b"confidential"


def test_import_with_an_unknown_level_writes_nothing(vault, share):
    _store, mnt = vault
    p = sr("import", share, mnt / "x", "--level", "top-secret", check=False)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "top-secret" in lines[0], p.stderr
    assert not os.path.exists(mnt / "x") or os.listdir(mnt / "x") == []


def test_import_refuses_a_destination_outside_a_vault(share, tmp_path):
    p = sr("import", share, tmp_path / "plain", check=False)
    assert p.returncode == EXIT_MOUNTPOINT
    assert "not inside a mounted Strongroom vault" in p.stderr
    assert not (tmp_path / "plain").exists()


def test_export_refuses_a_source_outside_a_vault(share, tmp_path):
    p = sr("export", share, tmp_path / "out", check=False)
    assert p.returncode == EXIT_MOUNTPOINT
    assert not (tmp_path / "out").exists()


def test_import_does_not_overwrite_an_existing_file(vault, share):
    _store, mnt = vault
    (mnt / "dest" / "templates").mkdir(parents=True)
    (mnt / "dest" / "templates" / "letter.odt").write_bytes(b"keep me")
    p = sr("import", share, mnt / "dest", check=False)
    assert p.returncode == EXIT_FAIL
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "letter.odt" in lines[0] and "exists" in lines[0], p.stderr
    assert (mnt / "dest" / "templates" / "letter.odt").read_bytes() == b"keep me"


def test_export_of_a_file_the_caller_may_not_read_fails_naming_it(staff_vault, share):
    mnt = staff_vault.mnt
    sr("import", share, mnt / "m")
    os.chmod(mnt / "m", 0o755)
    os.chmod(mnt / "m" / "templates", 0o700)
    out = staff_vault.root / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    p = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                        SR_BIN, "export", str(mnt / "m"), str(out)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == EXIT_FAIL
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "templates" in lines[0] and "Permission denied" in lines[0], p.stderr


def test_bad_arguments_exit_2(vault, share):
    assert sr("import", share, check=False).returncode == EXIT_USAGE
    assert sr("import", share, vault.mnt / "a", "--bogus", check=False).returncode == EXIT_USAGE
    assert sr("export", vault.mnt, "a", "b", check=False).returncode == EXIT_USAGE


def test_progress_is_drawn_on_a_terminal_and_not_in_a_pipe(vault, share):
    _store, mnt = vault
    p = sr("import", share, mnt / "piped")
    assert "\r" not in p.stderr and p.stderr == ""

    pid, fd = pty.fork()
    if pid == 0:
        os.execv(SR_BIN, [SR_BIN, "import", str(share), str(mnt / "tty")])
    seen = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert b"import: 5/5 files" in seen and b"(100%)" in seen, seen


@pytest.mark.skipif(not shutil.which("getfacl"), reason="getfacl (package acl) is not installed")
def test_help_names_the_options(vault):
    assert "--level" in sr("import", "--help").stdout
    assert "DEST_DIR" in sr("export", "--help").stdout
