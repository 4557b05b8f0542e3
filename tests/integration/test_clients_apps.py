"""Real clients on a vault mounted with --allow-other, used by unprivileged
staff accounts: LibreOffice headless converting and saving documents inside
the vault, pdftotext, sqlite3 CSV export and import, tar and rsync with ACLs
into and out of the vault.

Each tool is run as a staff user (setpriv with the user's groups and a
private HOME) with a timeout; a test skips only when its tool is not
installed (tools/deps.sh installs them)."""

import hashlib
import os
import shutil
import subprocess
import threading
import time

import pytest

from test_clients_support import group_name, staff, staff_vault  # noqa: F401 (fixtures)


def need(*tools):
    for t in tools:
        if not shutil.which(t):
            pytest.skip(f"{t} is not installed (tools/deps.sh deps_test)")


def team_folder(mnt, name, group):
    """A folder the group may write, with a default ACL so new files are
    the group's too (as `strongroom policy apply` would set it up)."""
    d = mnt / name
    d.mkdir()
    os.chmod(d, 0o770)
    g = group_name(group)
    subprocess.run(["setfacl", "-m", f"g:{g}:rwx", "-d", "-m", f"g:{g}:rwx,u::rwx,g::---,o::---",
                    str(d)], check=True)
    return d


class DirWatch:
    """Lists a folder every few milliseconds and remembers every name seen
    (to catch lock files that live only while an app works)."""

    def __init__(self, d):
        self.d, self.seen, self.stop = d, set(), threading.Event()
        self.t = threading.Thread(target=self.loop, daemon=True)

    def loop(self):
        while not self.stop.is_set():
            try:
                self.seen.update(os.listdir(self.d))
            except OSError:
                pass
            time.sleep(0.003)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join()


def soffice(user, *args):
    # a private profile per user; conversions can take a while on a cold start
    return user.run(["soffice", "--headless", "--norestore", "--nolockcheck",
                     f"-env:UserInstallation=file://{user.home}/lo-profile", *args], timeout=240)


def test_libreoffice_converts_and_saves_documents_inside_the_vault(staff_vault, staff):
    need("soffice", "pdftotext", "unzip")
    mnt = staff_vault.mnt
    alice = staff("alice", ["sales"])
    docs = team_folder(mnt, "sales", "sales")

    alice.run(["sh", "-c", f"printf 'Quarterly report for ACME\\nRevenue up 12 percent\\n' "
                           f"> {docs}/report.txt"])
    with DirWatch(docs) as w:
        soffice(alice, "--convert-to", "odt", "--outdir", docs, docs / "report.txt")
        soffice(alice, "--convert-to", "docx", "--outdir", docs, docs / "report.odt")
        soffice(alice, "--convert-to", "pdf", "--outdir", docs, docs / "report.odt")
    names = set(os.listdir(docs))
    assert {"report.odt", "report.docx", "report.pdf"} <= names
    assert not [n for n in names if n.startswith(".~lock.")], f"lock files left behind: {names}"
    # files the app made belong to alice and to the team through the default ACL
    st = os.stat(docs / "report.docx")
    assert st.st_uid == alice.uid
    acl = subprocess.run(["getfacl", "-p", str(docs / "report.docx")], capture_output=True,
                         text=True, check=True).stdout
    assert f"group:{group_name('sales')}:rw" in acl

    text = alice.run(["pdftotext", docs / "report.pdf", "-"]).stdout
    assert "Quarterly report for ACME" in text and "Revenue up 12 percent" in text
    xml = alice.run(["unzip", "-p", docs / "report.docx", "word/document.xml"]).stdout
    assert "Quarterly report for ACME" in xml

    # an edit saved back over the original .docx, then reopened
    alice.run(["sh", "-c", f"printf 'Quarterly report for ACME\\nRevenue up 15 percent\\n' "
                           f"> {alice.home}/report.txt"])
    with DirWatch(docs) as w2:
        soffice(alice, "--convert-to", "docx", "--outdir", docs, alice.home / "report.txt")
    xml = alice.run(["unzip", "-p", docs / "report.docx", "word/document.xml"]).stdout
    assert "Revenue up 15 percent" in xml and "12 percent" not in xml
    soffice(alice, "--convert-to", "pdf", "--outdir", alice.home, docs / "report.docx")
    assert "Revenue up 15 percent" in alice.run(["pdftotext", alice.home / "report.pdf",
                                                 "-"]).stdout
    assert os.stat(docs / "report.docx").st_size > 0
    seen = w.seen | w2.seen
    assert not [n for n in os.listdir(docs) if n.startswith(".~lock.")]
    # the save replaced the file; whatever temp or lock names the app used are gone
    left = set(os.listdir(docs)) - {"report.txt", "report.odt", "report.docx", "report.pdf"}
    assert not left, f"left behind: {left} (seen while working: {sorted(seen)})"
    # LibreOffice's own lock files (.~lock.NAME#) were made and removed
    assert {".~lock.report.odt#", ".~lock.report.docx#"} <= seen, sorted(seen)


def test_libreoffice_saves_a_spreadsheet_back_over_the_original(staff_vault, staff):
    need("soffice", "unzip")
    if not os.path.exists("/usr/lib/libreoffice/program/libsclo.so"):
        pytest.skip("LibreOffice Calc is not installed (libreoffice-calc-nogui)")
    mnt = staff_vault.mnt
    bob = staff("bob", ["finance"])
    d = team_folder(mnt, "finance", "finance")
    csv = d / "ledger.csv"
    bob.run(["sh", "-c", f"printf 'account,amount\\nACME,100\\n' > {csv}"])
    soffice(bob, "--convert-to", "xlsx", "--outdir", d, csv)
    assert "ACME" in bob.run(["unzip", "-p", d / "ledger.xlsx", "xl/sharedStrings.xml"]).stdout
    bob.run(["sh", "-c", f"printf 'account,amount\\nACME,100\\nGLOBEX,250\\n' > {csv}"])
    soffice(bob, "--convert-to", "xlsx", "--outdir", d, csv)
    assert "GLOBEX" in bob.run(["unzip", "-p", d / "ledger.xlsx",
                                "xl/sharedStrings.xml"]).stdout
    assert not [n for n in os.listdir(d) if n.startswith(".~lock.")]


def test_sqlite_exports_csv_into_the_vault_and_imports_it_back(staff_vault, staff):
    need("sqlite3")
    mnt = staff_vault.mnt
    carol = staff("carol", ["ops"])
    d = team_folder(mnt, "ops", "ops")
    db = d / "customers.db"
    carol.run(["sqlite3", db, "create table c(id integer primary key, name text, amount real);"
               "with recursive n(i) as (select 1 union all select i+1 from n where i<5000) "
               "insert into c select i, 'customer ' || i, i * 1.25 from n;"])
    carol.run(["sh", "-c", f"sqlite3 -header -csv {db} 'select * from c order by id;' "
                           f"> {d}/export.csv"])
    lines = (d / "export.csv").read_text().splitlines()
    assert lines[0] == "id,name,amount" and len(lines) == 5001
    db2 = d / "reimport.db"
    carol.run(["sqlite3", db2, f".import --csv {d}/export.csv c2"])
    out = carol.run(["sqlite3", db2, "select count(*), sum(amount), max(name) from c2;"]).stdout
    want = carol.run(["sqlite3", db, "select count(*), sum(amount), max(name) from c;"]).stdout
    assert out == want and out.startswith("5000|")
    assert carol.run(["sqlite3", db2, "pragma integrity_check;"]).stdout.strip() == "ok"


def acl_tree(user, root):
    """getfacl -R of root/projects, one sorted block per path."""
    p = user.run(["getfacl", "-R", "-P", "-n", "projects"], cwd=str(root))
    return sorted(b for b in p.stdout.split("\n\n") if b.strip())


def make_acl_tree(user, root, other):
    user.run(["mkdir", "-p", f"{root}/projects/acme/drafts", f"{root}/projects/globex"])
    user.run(["sh", "-c", f"head -c 150000 /dev/urandom > {root}/projects/acme/scan.pdf && "
                          f"echo notes > {root}/projects/acme/drafts/notes.txt && "
                          f"echo hi > {root}/projects/globex/hello.txt && "
                          f"ln -s ../acme/scan.pdf {root}/projects/globex/scan-link && "
                          f"chmod 600 {root}/projects/acme/scan.pdf "
                          f"{root}/projects/globex/hello.txt"])
    user.run(["setfacl", "-m", f"u:{other.name}:r", f"{root}/projects/acme/scan.pdf"])
    user.run(["setfacl", "-m", f"u:{other.name}:rwx", "-d", "-m", f"u:{other.name}:rx",
              f"{root}/projects/acme/drafts"])
    user.run(["setfacl", "-m", f"g:{group_name('sales')}:rw",
              f"{root}/projects/globex/hello.txt"])
    user.run(["setfattr", "-n", "user.customer", "-v", "globex",
              f"{root}/projects/globex/hello.txt"])


def test_tar_with_xattrs_and_acls_into_and_out_of_the_vault_keeps_the_acls(staff_vault, staff):
    need("tar", "getfacl", "setfacl", "setfattr")
    mnt = staff_vault.mnt
    dave = staff("dave", ["sales"])
    erin = staff("erin")
    d = team_folder(mnt, "dave", "sales")
    src = dave.home / "src"
    make_acl_tree(dave, src, erin)
    want = acl_tree(dave, src)

    dave.run(["sh", "-c", f"tar --xattrs --acls -C {src} -cf - projects | "
                          f"tar --xattrs --acls -C {d} -xf -"])
    assert acl_tree(dave, d) == want
    out = dave.home / "out"
    dave.run(["mkdir", out])
    dave.run(["sh", "-c", f"tar --xattrs --acls -C {d} -cf - projects | "
                          f"tar --xattrs --acls -C {out} -xf -"])
    assert acl_tree(dave, out) == want
    assert dave.run(["diff", "-r", "--no-dereference", src, out]).returncode == 0
    assert dave.run(["getfattr", "--only-values", "-n", "user.customer",
                     d / "projects/globex/hello.txt"]).stdout == "globex"
    # the ACL is enforced for the user it names, and not for others
    os.chmod(d, 0o771)
    assert erin.run(["sha256sum", d / "projects/acme/scan.pdf"]).stdout.split()[0] == \
        hashlib.sha256((src / "projects/acme/scan.pdf").read_bytes()).hexdigest()
    p = erin.run(["cat", d / "projects/globex/hello.txt"], check=False)
    assert p.returncode != 0 and "Permission denied" in p.stderr


def test_rsync_with_acls_and_xattrs_into_and_out_of_the_vault_shows_no_difference(
        staff_vault, staff):
    need("rsync", "getfacl", "setfacl", "setfattr")
    mnt = staff_vault.mnt
    dave = staff("dave", ["sales"])
    erin = staff("erin")
    d = team_folder(mnt, "dave", "sales")
    src = dave.home / "src"
    make_acl_tree(dave, src, erin)
    want = acl_tree(dave, src)

    dave.run(["rsync", "-aAX", f"{src}/projects", f"{d}/"])
    assert acl_tree(dave, d) == want
    out = dave.home / "out"
    dave.run(["rsync", "-aAX", f"{d}/projects", f"{out}/"])
    assert acl_tree(dave, out) == want
    assert dave.run(["diff", "-r", "--no-dereference", src, out]).returncode == 0
    # a second run finds nothing to copy
    p = dave.run(["rsync", "-aAX", "--itemize-changes", f"{src}/projects", f"{d}/"])
    assert [ln for ln in p.stdout.splitlines() if ln.startswith(">f")] == []
