"""Classification levels and business roles through a real mount, acted out
by real Unix users: a small company (sales, finance, an admin) whose policy
file becomes POSIX ACLs the kernel enforces and clearances the driver
enforces; reclassification; what a branch-office mount without the
restricted key sees; tampering with the store; policy errors.

Accounts and groups get a unique prefix and are removed by the finalizers
(test_clients_support). Run as root."""

import errno
import os
import subprocess
from pathlib import Path

import pytest

from conftest import SR_BIN, sr
from test_clients_support import group_name, staff, staff_vault  # noqa: F401 (fixtures)

EXIT_POLICY = 8
LEVEL = "user.strongroom.level"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (users, groups, mounts)")


def policy_text():
    return f"""# Example company, as docs/policy.md describes it
[vault]
admin-group = {group_name("admin")}

[role sales]
group = {group_name("sales")}
clearance = internal

[role finance]
group = {group_name("finance")}
clearance = confidential

[role admin]
group = {group_name("admin")}
clearance = restricted

[folder /Sales]
level = internal
sales = rw
finance = r
admin = rw

# sales may enter Finance by its ACL, but not by its clearance
[folder /Finance]
level = confidential
finance = rwx
sales = r
"""


class Company:
    def __init__(self, vault, staff):
        self.vault = vault
        self.mnt = vault.mnt
        self.sales = staff("sal", ["sales"])
        self.finance = staff("fin", ["finance"])
        self.admin = staff("adm", ["admin"])
        self.policy = vault.root / "company.policy"
        self.policy.write_text(policy_text())

    def apply(self, path=None):
        return sr("policy", "apply", self.mnt, path or self.policy, check=False)


@pytest.fixture
def company(staff_vault, staff):  # noqa: F811 (fixtures)
    c = Company(staff_vault, staff)
    (c.mnt / "Sales").mkdir()
    (c.mnt / "Finance").mkdir()
    p = c.apply()
    assert p.returncode == 0, p.stderr
    (c.mnt / "Sales" / "leads.csv").write_text("acme,42\n")
    (c.mnt / "Finance" / "q3.csv").write_text("revenue,1000\n")
    (c.mnt / "Sales" / "board.pdf").write_text("board minutes\n")
    sr("level", "set", c.mnt / "Sales" / "board.pdf", "restricted")
    return c


def denied(p):
    return p.returncode != 0 and "Permission denied" in p.stderr


def test_sales_user_reads_and_writes_the_sales_folder(company):
    c = company
    assert c.sales.run(["cat", c.mnt / "Sales" / "leads.csv"]).stdout == "acme,42\n"
    c.sales.run(["sh", "-c", f"echo more >> '{c.mnt}/Sales/leads.csv'"])
    c.sales.run(["sh", "-c", f"echo new > '{c.mnt}/Sales/new.txt'"])
    assert (c.mnt / "Sales" / "leads.csv").read_text() == "acme,42\nmore\n"
    assert (c.mnt / "Sales" / "new.txt").read_text() == "new\n"


def test_sales_user_cannot_open_or_list_finance_even_where_the_acl_allows(company):
    c = company
    # The ACL gives sales r-x on /Finance: the refusal is the driver's.
    acl = subprocess.run(["getfacl", "-p", c.mnt / "Finance"], capture_output=True, text=True).stdout
    assert f"group:{group_name('sales')}:r-x" in acl
    assert denied(c.sales.run(["cat", c.mnt / "Finance" / "q3.csv"], check=False))
    assert denied(c.sales.run(["ls", c.mnt / "Finance"], check=False))
    assert denied(c.sales.run(["sh", "-c", f"echo x > '{c.mnt}/Finance/x.txt'"], check=False))


def test_finance_user_reads_and_writes_finance(company):
    c = company
    assert c.finance.run(["cat", c.mnt / "Finance" / "q3.csv"]).stdout == "revenue,1000\n"
    c.finance.run(["sh", "-c", f"echo q4 > '{c.mnt}/Finance/q4.csv'"])
    assert "q4.csv" in c.finance.run(["ls", c.mnt / "Finance"]).stdout
    # finance may read Sales (r) but not write there
    assert c.finance.run(["cat", c.mnt / "Sales" / "leads.csv"]).stdout == "acme,42\n"
    assert denied(c.finance.run(["sh", "-c", f"echo x > '{c.mnt}/Sales/x'"], check=False))


def test_restricted_file_in_a_listable_folder_is_listed_but_not_opened(company):
    c = company
    assert "board.pdf" in c.sales.run(["ls", c.mnt / "Sales"]).stdout
    assert denied(c.sales.run(["cat", c.mnt / "Sales" / "board.pdf"], check=False))
    assert denied(c.finance.run(["cat", c.mnt / "Sales" / "board.pdf"], check=False))
    assert c.admin.run(["cat", c.mnt / "Sales" / "board.pdf"]).stdout == "board minutes\n"


def test_a_user_without_any_role_is_refused(company, staff):  # noqa: F811
    c = company
    outsider = staff("out")
    assert denied(outsider.run(["cat", c.mnt / "Sales" / "leads.csv"], check=False))
    assert denied(outsider.run(["ls", c.mnt / "Finance"], check=False))


def test_default_acl_decides_a_new_files_permissions_not_the_umask(company):
    c = company
    c.sales.run(["sh", "-c", f"umask 077; echo mine > '{c.mnt}/Sales/mine.txt'"])
    st = os.stat(c.mnt / "Sales" / "mine.txt")
    assert st.st_uid == c.sales.uid
    assert st.st_mode & 0o070 == 0o060  # the mask, from the create mode: umask not applied
    acl = subprocess.run(["getfacl", "-p", c.mnt / "Sales" / "mine.txt"], capture_output=True,
                         text=True).stdout
    assert f"group:{group_name('finance')}:r-x" in acl or \
        f"group:{group_name('finance')}:r--" in acl
    assert c.finance.run(["cat", c.mnt / "Sales" / "mine.txt"]).stdout == "mine\n"


def test_getfacl_setfacl_round_trip_and_survive_a_remount(company):
    c = company
    f = c.mnt / "Sales" / "leads.csv"
    user = c.finance.name
    subprocess.run(["setfacl", "-m", f"u:{user}:rw", f], check=True)
    before = subprocess.run(["getfacl", "-p", f], capture_output=True, text=True, check=True).stdout
    assert f"user:{user}:rw-" in before
    c.vault.remount("--allow-other")
    after = subprocess.run(["getfacl", "-p", f], capture_output=True, text=True, check=True).stdout
    assert after == before
    # The named-user entry works: finance may now write leads.csv.
    c.finance.run(["sh", "-c", f"echo x >> '{f}'"])
    subprocess.run(["setfacl", "-x", f"u:{user}", f], check=True)
    assert f"user:{user}" not in subprocess.run(["getfacl", "-p", f], capture_output=True,
                                                 text=True).stdout


def test_non_admin_setting_the_level_gets_eperm(company):
    c = company
    f = c.mnt / "Sales" / "leads.csv"
    p = c.sales.run(["setfattr", "-n", LEVEL, "-v", "public", f], check=False)
    assert p.returncode != 0 and "Operation not permitted" in p.stderr
    p = c.sales.run([SR_BIN, "level", "set", f, "public"], check=False)
    assert p.returncode != 0 and "admin group" in p.stderr
    assert os.getxattr(f, LEVEL) == b"internal"
    # A member of the admin group may (the kernel wants write access to the
    # file for any user.* attribute: the admin role has rw on Sales).
    c.admin.run(["setfattr", "-n", LEVEL, "-v", "confidential", f])
    assert os.getxattr(f, LEVEL) == b"confidential"


def test_level_set_reencrypts_and_recursive_reaches_every_file(company):
    c = company
    sr("level", "set", c.mnt / "Finance", "confidential", "--recursive")
    assert os.getxattr(c.mnt / "Finance" / "q3.csv", LEVEL) == b"confidential"
    assert sr("level", "get", c.mnt / "Finance" / "q3.csv").stdout == "confidential\n"
    assert (c.mnt / "Finance" / "q3.csv").read_text() == "revenue,1000\n"
    p = sr("level", "set", c.mnt / "Finance", "confidential", "--recursive")
    assert ", 0 changed" in p.stdout  # idempotent: a rerun resumes, changes nothing done
    assert sr("level", "set", c.mnt / "Finance", "top-secret", check=False).returncode == 2


def test_new_files_and_folders_inherit_their_folders_level(company):
    c = company
    (c.mnt / "Finance" / "2024").mkdir()
    (c.mnt / "Finance" / "2024" / "plan.txt").write_text("plan")
    assert os.getxattr(c.mnt / "Finance" / "2024", LEVEL) == b"confidential"
    assert os.getxattr(c.mnt / "Finance" / "2024" / "plan.txt", LEVEL) == b"confidential"


def store_files(store):
    return {p for p in Path(store).rglob("*")}


def test_mount_capped_at_confidential_cannot_read_restricted_and_hides_names(company):
    c = company
    (c.mnt / "Board").mkdir()
    (c.mnt / "Board" / "minutes.txt").write_text("secret")
    sr("level", "set", c.mnt / "Board", "restricted", "--recursive")
    low = c.vault.root / "branch-passphrase"
    low.write_text("branch office\n")
    sr("keyslot", "add", c.vault.store, "--max-level", "confidential",
       "--new-passphrase-file", low, "--passphrase-file", c.vault.passfile)
    c.vault.unmount()
    sr("mount", c.vault.store, c.mnt, "--passphrase-file", low, "--allow-other",
       "--log-file", c.vault.log)
    assert os.path.ismount(c.mnt)
    c.vault.pids.add(c.vault.driver_pid())
    names = os.listdir(c.mnt / "Sales")
    assert "leads.csv" in names and "board.pdf" not in names
    assert "Board" not in os.listdir(c.mnt)
    for path in (c.mnt / "Sales" / "board.pdf", c.mnt / "Board" / "minutes.txt"):
        with pytest.raises(OSError) as e:
            path.read_bytes()  # as root
        assert e.value.errno in (errno.ENOENT, errno.EACCES)
    assert (c.mnt / "Finance" / "q3.csv").read_text() == "revenue,1000\n"
    for p in store_files(c.vault.store):
        assert "board" not in p.name.lower() and "minutes" not in p.name.lower()


def test_an_acl_or_level_edited_in_the_store_gives_eio(company):
    c = company
    before = {p for p in (c.vault.store / "tree").iterdir() if p.is_dir()}
    (c.mnt / "Probe").mkdir()
    (c.mnt / "Probe2").mkdir()
    subprocess.run(["setfacl", "-m", f"g:{group_name('sales')}:rwx", c.mnt / "Probe"], check=True)
    subprocess.run(["setfacl", "-m", f"g:{group_name('sales')}:rwx", c.mnt / "Probe2"], check=True)
    new = sorted(p for p in (c.vault.store / "tree").iterdir() if p.is_dir() and p not in before)
    assert len(new) == 2
    c.vault.unmount()
    # One folder's metadata ciphertext (its ACLs) and the other's level hint.
    meta = new[0] / ".sr-dir"
    b = bytearray(meta.read_bytes())
    b[-20] ^= 0x01
    meta.write_bytes(bytes(b))
    meta = new[1] / ".sr-dir"
    b = bytearray(meta.read_bytes())
    b[26] ^= 0x01
    meta.write_bytes(bytes(b))
    c.vault.expect_log(r"(?i)integrity|authentic|EBADMSG|\.sr-dir")
    c.vault.mount("--allow-other")
    for name in ("Probe", "Probe2"):
        for op in (lambda p: os.listdir(p), lambda p: os.getxattr(p, "system.posix_acl_access")):
            with pytest.raises(OSError) as e:
                op(c.mnt / name)
            assert e.value.errno == errno.EIO
        p = c.sales.run(["ls", c.mnt / name], check=False)
        assert p.returncode != 0


def test_policy_errors_name_the_line_and_change_nothing(company):
    c = company
    acl_before = subprocess.run(["getfacl", "-p", c.mnt / "Sales"], capture_output=True,
                                text=True).stdout
    show_before = sr("policy", "show", c.mnt).stdout
    finance_group = f"group = {group_name('finance')}"
    cases = {  # what -> (edit, the line the error must name)
        "group": (lambda t: t.replace(finance_group, "group = no-such-group-xyz"),
                  "group = no-such-group-xyz"),
        "level": (lambda t: t.replace("clearance = confidential", "clearance = secret"),
                  "clearance = secret"),
        "folder": (lambda t: t + "\n[folder /Nowhere]\nsales = r\n", "[folder /Nowhere]"),
        "syntax": (lambda t: t.replace("finance = rwx", "finance rwx"), "finance rwx"),
        "role": (lambda t: t.replace("finance = rwx", "marketing = rwx"), "marketing = rwx"),
    }
    for what, (edit, marker) in cases.items():
        text = edit(policy_text())
        want = text.splitlines().index(marker) + 1
        bad = c.vault.root / f"bad-{what}.policy"
        bad.write_text(text)
        p = c.apply(bad)
        assert p.returncode == EXIT_POLICY, (what, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1, (what, p.stderr)
        assert f"{bad}:{want}: " in lines[0], (what, want, lines[0])
    # the new policy must not have touched anything
    assert subprocess.run(["getfacl", "-p", c.mnt / "Sales"], capture_output=True,
                          text=True).stdout == acl_before
    assert sr("policy", "show", c.mnt).stdout == show_before


def test_policy_show_prints_effective_rights_per_role_and_folder(company):
    c = company
    out = sr("policy", "show", c.mnt).stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("/")}
    # columns: folder level sales finance admin
    assert rows["/Sales"][1:] == ["internal", "rwx", "r-x", "rwx"]
    assert rows["/Finance"][1:] == ["confidential", "(r-x)", "rwx", "---"]
    assert "clearance" in out
