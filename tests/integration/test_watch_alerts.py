"""Alert rules of the policy, evaluated live by the driver on its audit
stream, and working hours of roles, acted out by real Unix users: each rule
fires on a scripted workload and not on a normal one; an alert is an `alert`
record in the trail and JSON on the on-alert hook's stdin; a rule with
action = freeze freezes the user. Run as root."""

import json
import os
import time
from pathlib import Path

import pytest

from conftest import sr, wait_until
from test_clients_support import group_name, staff, staff_vault  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (users, groups, mounts)")


def hhmm(minutes):
    minutes %= 1440
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def hours_excluding_now():
    """A daily window that does not hold the current minute (nor the next hour)."""
    t = time.localtime()
    now = t.tm_hour * 60 + t.tm_min
    return f"daily {hhmm(now + 120)}-{hhmm(now + 180)}"


def hours_including_now():
    t = time.localtime()
    now = t.tm_hour * 60 + t.tm_min
    return f"daily {hhmm(now - 60)}-{hhmm(now + 120)}"


def base_policy(extra="", staff_extra="", hook=None):
    return f"""[vault]
admin-group = {group_name("it")}
{f"on-alert = {hook}" if hook else ""}

[role staff]
group = {group_name("staff")}
clearance = restricted
{staff_extra}

[folder /Shared]
level = internal
staff = rw

[folder /Board]
level = restricted
staff = r

[folder /Locked]
level = internal
staff = none
{extra}
"""


class Site:
    def __init__(self, vault, staff):
        self.vault = vault
        self.mnt = vault.mnt
        self.alice = staff("ali", ["staff"])
        self.bob = staff("bob", ["staff"])
        self.it = staff("itx", ["it"])
        for d in ("Shared", "Board", "Locked"):
            (self.mnt / d).mkdir()
        self.alerts_dir = vault.root / "alerts"
        self.alerts_dir.mkdir()
        self.hook = vault.root / "hook.sh"
        self.hook.write_text(f"#!/bin/sh\ncat > '{self.alerts_dir}/alert-'$$.json\n")
        self.hook.chmod(0o755)

    def apply(self, text):
        pol = self.vault.root / "site.policy"
        pol.write_text(text)
        sr("policy", "apply", self.mnt, pol)

    def files(self, folder, n):
        for i in range(n):
            p = self.mnt / folder / f"doc{i:02d}.txt"
            p.write_text(f"document {i}\n")
            os.chmod(p, 0o644)

    def alerts(self):
        p = sr("audit", "show", self.vault.store, "--json", "--event", "alert",
               "--passphrase-file", self.vault.passfile)
        return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]

    def rule_alerts(self, rule):
        return [a for a in self.alerts() if a.get("detail", "").startswith(f"rule {rule} ")]

    def hook_inputs(self):
        return [json.loads(p.read_text()) for p in sorted(self.alerts_dir.glob("*.json"))
                if p.read_text().endswith("\n")]


@pytest.fixture
def site(staff_vault, staff):  # noqa: F811 (fixtures)
    return Site(staff_vault, staff)


def test_bulk_reading_fires_and_freezes_the_reader_not_a_normal_one(site):
    s = site
    s.files("Shared", 12)
    s.apply(base_policy(hook=s.hook, extra="""
[alert bulk]
when = bulk-read
files = 8
window = 10m
action = freeze
"""))
    # normal: a few documents
    s.bob.run(["cat", *[s.mnt / "Shared" / f"doc{i:02d}.txt" for i in range(4)]])
    assert s.rule_alerts("bulk") == []
    # scripted: every document, one after the other
    for i in range(12):
        s.alice.run(["cat", s.mnt / "Shared" / f"doc{i:02d}.txt"], check=False)
    alerts = s.rule_alerts("bulk")
    assert len(alerts) == 1, alerts
    assert alerts[0]["uid"] == s.alice.uid and "bulk reading" in alerts[0]["detail"]
    # frozen: the next open is refused, bob still reads
    p = s.alice.run(["cat", s.mnt / "Shared" / "doc00.txt"], check=False)
    assert p.returncode != 0 and "Permission denied" in p.stderr
    assert s.bob.run(["cat", s.mnt / "Shared" / "doc00.txt"]).stdout == "document 0\n"
    assert wait_until(lambda: len(s.hook_inputs()) >= 1, timeout=10)
    got = s.hook_inputs()[0]
    assert got["rule"] == "bulk" and got["when"] == "bulk-read"
    assert got["uid"] == s.alice.uid and got["user"] == s.alice.name
    assert got["action"] == "freeze" and got["event"] == "alert"
    sr("unfreeze", s.mnt, s.alice.name)
    assert s.alice.run(["cat", s.mnt / "Shared" / "doc00.txt"]).stdout == "document 0\n"


def test_bulk_reading_by_bytes_fires(site):
    s = site
    big = s.mnt / "Shared" / "export.csv"
    big.write_bytes(b"a,b,c\n" * 200000)
    os.chmod(big, 0o644)
    s.apply(base_policy(extra="""
[alert bytes]
when = bulk-read
bytes = 512K
window = 1h
"""))
    s.bob.run(["head", "-c", "1000", big])
    s.bob.run(["true"])
    assert s.rule_alerts("bytes") == []
    s.alice.run(["cat", big])
    alerts = s.rule_alerts("bytes")
    assert len(alerts) == 1 and alerts[0]["uid"] == s.alice.uid, alerts


def test_access_outside_allowed_hours_fires_and_inside_does_not(site):
    s = site
    s.files("Shared", 1)
    s.apply(base_policy(extra=f"""
[alert night]
when = off-hours
hours = {hours_including_now()}
"""))
    s.alice.run(["cat", s.mnt / "Shared" / "doc00.txt"])
    assert s.rule_alerts("night") == []
    s.apply(base_policy(extra=f"""
[alert night]
when = off-hours
hours = {hours_excluding_now()}
"""))
    s.alice.run(["cat", s.mnt / "Shared" / "doc00.txt"])
    alerts = s.rule_alerts("night")
    assert len(alerts) == 1 and "outside allowed hours" in alerts[0]["detail"], alerts


def test_a_burst_of_denials_fires_and_a_single_one_does_not(site):
    s = site
    s.files("Shared", 1)
    s.apply(base_policy(extra="""
[alert denied]
when = denials
count = 5
window = 5m
"""))
    doc = s.mnt / "Shared" / "doc00.txt"
    # refusals the driver decides (a frozen user's opens): one for bob ...
    sr("freeze", s.mnt, s.bob.name)
    assert s.bob.run(["cat", doc], check=False).returncode != 0
    assert s.rule_alerts("denied") == []
    # ... and a burst for alice
    sr("freeze", s.mnt, s.alice.name)
    for _ in range(7):
        assert s.alice.run(["cat", doc], check=False).returncode != 0
    alerts = s.rule_alerts("denied")
    assert len(alerts) == 1 and alerts[0]["uid"] == s.alice.uid, alerts
    assert "burst of denials" in alerts[0]["detail"]


def test_an_integrity_failure_fires(site):
    s = site
    doc = s.mnt / "Shared" / "doc.txt"
    doc.write_bytes(os.urandom(200000))  # incompressible: the largest store file
    s.apply(base_policy(extra="""
[alert tamper]
when = integrity
"""))
    s.vault.unmount()
    # flip a byte in the middle of the only ciphertext file of /Shared
    stored = [p for p in (s.vault.store / "tree").rglob("*") if p.is_file()
              and not p.name.startswith(".") and p.stat().st_size > 200]
    assert stored
    target = max(stored, key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x40
    target.write_bytes(bytes(data))
    s.vault.mount("--allow-other")
    assert s.rule_alerts("tamper") == []
    for p in (s.mnt / "Shared").iterdir():
        try:
            p.read_bytes()
        except OSError:
            pass
    alerts = s.rule_alerts("tamper")
    assert alerts and "integrity failure" in alerts[0]["detail"], alerts


def test_a_restricted_file_opened_by_a_denied_process_fires_and_another_does_not(site):
    s = site
    s.apply(base_policy(extra="""
[alert exfil]
when = process
processes = curl, wget, tac
level = restricted
action = freeze
"""))
    # written after the policy: they take their folder's level
    (s.mnt / "Board" / "minutes.txt").write_text("minutes\n")
    os.chmod(s.mnt / "Board" / "minutes.txt", 0o644)
    (s.mnt / "Shared" / "plan.txt").write_text("plan\n")
    os.chmod(s.mnt / "Shared" / "plan.txt", 0o644)
    s.alice.run(["head", s.mnt / "Board" / "minutes.txt"])
    s.alice.run(["tac", s.mnt / "Shared" / "plan.txt"])
    assert s.rule_alerts("exfil") == []
    s.alice.run(["tac", s.mnt / "Board" / "minutes.txt"], check=False)
    alerts = s.rule_alerts("exfil")
    assert len(alerts) == 1 and "denied process (tac" in alerts[0]["detail"], alerts
    p = s.alice.run(["head", s.mnt / "Shared" / "plan.txt"], check=False)
    assert p.returncode != 0, "the rule's action froze the user"


def test_role_clearance_follows_working_hours(site):
    s = site
    board = s.mnt / "Board" / "minutes.txt"
    board.write_text("minutes\n")
    os.chmod(board, 0o644)
    s.apply(base_policy(staff_extra=f"hours = {hours_including_now()}\noutside-hours = internal"))
    assert s.alice.run(["cat", board]).stdout == "minutes\n"
    s.apply(base_policy(staff_extra=f"hours = {hours_excluding_now()}\noutside-hours = internal"))
    p = s.alice.run(["cat", board], check=False)
    assert p.returncode != 0 and "Permission denied" in p.stderr
    # the lower clearance still holds outside hours
    (s.mnt / "Shared" / "plan.txt").write_text("plan\n")
    os.chmod(s.mnt / "Shared" / "plan.txt", 0o644)
    assert s.alice.run(["cat", s.mnt / "Shared" / "plan.txt"]).stdout == "plan\n"
    out = sr("policy", "show", s.mnt).stdout
    assert "hours" in out or "staff" in out


def test_alert_rules_with_errors_are_refused_with_their_line(site):
    s = site
    pol = s.vault.root / "bad.policy"
    pol.write_text(base_policy(extra="""
[alert half]
when = bulk-read
window = 10m
"""))
    p = sr("policy", "apply", s.mnt, pol, check=False)
    assert p.returncode == 8 and "bulk-read needs files or bytes" in p.stderr, p.stderr
    pol.write_text(base_policy(extra="""
[alert odd]
when = sometimes
"""))
    p = sr("policy", "apply", s.mnt, pol, check=False)
    assert p.returncode == 8 and "when must be" in p.stderr, p.stderr
