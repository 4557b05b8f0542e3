"""strongroom report: levels with their files and bytes, roles and their
effective rights per folder from the stored policy, keyslots, the audit
trail's verification, and per user the files opened in the period; acted
out by real Unix users on a mounted vault. Run as root."""

import json
import os

import pytest

from conftest import sr
from test_clients_support import group_name, staff, staff_vault  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (users, groups, mounts)")


def policy_text():
    return f"""[vault]
admin-group = {group_name("it")}

[role sales]
group = {group_name("sales")}
clearance = internal
hours = mon-fri 08:00-18:00
outside-hours = public

[role board]
group = {group_name("board")}
clearance = restricted

[folder /Sales]
level = internal
sales = rw
board = r

[folder /Board]
level = restricted
board = rw
sales = r

[alert bulk]
when = bulk-read
files = 100
action = freeze
"""


def report(v, *args):
    p = sr("report", v.store, "--json", "--passphrase-file", v.passfile, *args)
    return json.loads(p.stdout)


def test_report_counts_levels_rights_slots_trail_and_who_opened_what(staff_vault, staff):  # noqa: F811
    v = staff_vault
    mnt = v.mnt
    it = staff("itx", ["it"])  # noqa: F841 (the admin group must exist)
    board = staff("brd", ["board"])
    staff("sal", ["sales"])
    (mnt / "Sales").mkdir()
    (mnt / "Board").mkdir()
    pol = v.root / "r.policy"
    pol.write_text(policy_text())
    sr("policy", "apply", mnt, pol)
    (mnt / "Sales" / "leads.csv").write_text("a" * 1000)
    (mnt / "Sales" / "more.csv").write_text("b" * 24)
    (mnt / "Board" / "minutes.txt").write_text("c" * 500)
    board.run(["cat", mnt / "Board" / "minutes.txt", mnt / "Sales" / "leads.csv"])

    r = report(v)
    levels = {lv["name"]: lv for lv in r["levels"]}
    assert levels["internal"]["files"] == 2 and levels["internal"]["bytes"] == 1024
    assert levels["internal"]["folders"] == 1
    assert levels["restricted"]["files"] == 1 and levels["restricted"]["bytes"] == 500
    assert all(lv["held"] and lv["generation"] == 0 for lv in r["levels"])
    assert [(s["slot"], s["kind"], s["ceiling"], s["admin"]) for s in r["keyslots"]] == \
        [(0, "passphrase", "restricted", True), (1, "recovery", "restricted", True)]
    assert r["last_rotation"] is None
    folders = {f["path"]: f for f in r["policy"]["folders"]}
    assert folders["/Sales"]["rights"] == {"sales": "rw", "board": "r"}
    assert folders["/Board"]["rights"] == {"sales": "none (clearance)", "board": "rw"}
    roles = {x["name"]: x for x in r["policy"]["roles"]}
    assert roles["sales"]["hours"] == "mon-fri 08:00-18:00"
    assert roles["sales"]["outside_hours"] == "public"
    assert r["policy"]["alerts"] == [{"name": "bulk", "when": "bulk-read", "action": "freeze"}]
    assert r["audit"]["status"] in ("intact", "unsealed")
    users = {u["user"]: u for u in r["users"]}
    assert sorted(users[board.name]["files"]) == ["/Board/minutes.txt", "/Sales/leads.csv"]
    assert users[board.name]["files_opened"] == 2

    # a period that starts later leaves them out; the trail verifies once sealed
    v.unmount()
    r = report(v, "--since", "@4102444800")  # 2100-01-01
    assert r["users"] == []
    assert r["audit"]["status"] == "intact"
    text = sr("report", v.store, "--passphrase-file", v.passfile).stdout
    assert "LEVELS" in text and "KEYSLOTS" in text and "intact" in text
    assert board.name in text and "/Board/minutes.txt" in text
    v.mount("--allow-other")


def test_report_needs_an_admin_secret_and_a_valid_time(fresh_vault, tmp_path):
    v = fresh_vault
    low = tmp_path / "low"
    low.write_text("branch office passphrase 4711\n")
    sr("keyslot", "add", v.store, "--max-level", "internal", "--new-passphrase-file", low,
       "--passphrase-file", v.passfile)
    p = sr("report", v.store, "--passphrase-file", low, check=False)
    assert p.returncode == 1 and "admin" in p.stderr
    p = sr("report", v.store, "--passphrase-file", v.passfile, "--since", "yesterday", check=False)
    assert p.returncode == 2
