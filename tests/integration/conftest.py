"""Fixtures for tests that mount a real vault.

A test asks for `vault`: a store created in a private temp directory,
mounted at a private mount point. `strongroom mount` returning is the
readiness signal (it returns once the kernel's INIT has been answered); the
fixture then asserts the mount point is a mount. Whatever the test does, the
finalizer unmounts and reaps the driver: `strongroom unmount`, then a lazy
unmount, then SIGKILL of the driver by pid. It fails the test if the driver
wrote anything to its log (its stderr after daemonizing) that the test did
not declare with `vault.expect_log(regex)`.

Environment: SR_BIN (default <repo>/build/tools/strongroom), SR_KDF=test
(set here if unset) so unlocking is fast. SR_VALGRIND_LOGS (set by
tools/check --valgrind, whose SR_BIN runs strongroom under valgrind memcheck
with one log per process in that directory): each test waits for the
processes it started to exit and fails if memcheck counted an error in any of
their logs; tests marked `no_valgrind` are skipped with their reason.
"""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SR_BIN = os.environ.get("SR_BIN") or str(REPO / "build" / "tools" / "strongroom")
MOUNT_HELPER = str(REPO / "tools" / "mount.strongroom")
PASSPHRASE = "integration test passphrase"

os.environ.setdefault("SR_KDF", "test")

VALGRIND_LOGS = os.environ.get("SR_VALGRIND_LOGS")
# Under memcheck the driver runs many times slower and its leak check at exit
# takes seconds: waits for a process to end are stretched by this factor.
SLOW = 6 if VALGRIND_LOGS else 1


def is_strongroom_process(name):
    """True if name is the process name the audit trail records for a
    strongroom command. Under tools/check --valgrind the process is
    valgrind's tool (its name cut to 15 bytes, "memcheck-amd64-" on x86-64);
    that name is accepted only then."""
    if name == "strongroom":
        return True
    return bool(VALGRIND_LOGS) and re.fullmatch(r"memcheck-[a-z0-9]+-?", name or "") is not None


def no_valgrind(reason):
    """Mark a test that cannot run with the driver under valgrind."""
    return pytest.mark.skipif(bool(VALGRIND_LOGS), reason=f"not under valgrind: {reason}")


def _valgrind_errors(logdir, seen):
    """Memcheck's reports in the logs written since `seen` (names), once
    their processes have exited: a list of (log name, report)."""
    new = sorted(set(os.listdir(logdir)) - seen)
    bad = []
    for name in new:
        pid = int(name.rsplit(".", 1)[1])
        wait_until(lambda: not pid_running(pid), timeout=120)
        text = (Path(logdir) / name).read_text(errors="replace")
        m = re.search(r"ERROR SUMMARY: (\d+) errors", text)
        if m and int(m.group(1)):
            bad.append((name, text))
    return bad


@pytest.fixture(autouse=True)
def valgrind_clean():
    """Under tools/check --valgrind: fail the test if memcheck reported an
    error (or a definite or indirect leak) in a process it started."""
    if not VALGRIND_LOGS:
        yield
        return
    seen = set(os.listdir(VALGRIND_LOGS))
    yield
    bad = _valgrind_errors(VALGRIND_LOGS, seen)
    assert not bad, "memcheck errors:\n" + "\n".join(f"== {n}\n{t[-6000:]}" for n, t in bad)


def sr(*args, check=True, timeout=None, **kw):
    """Run the strongroom CLI; return the CompletedProcess (text mode)."""
    p = subprocess.run([SR_BIN, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout or 120 * SLOW, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"strongroom {' '.join(map(str, args))} exited {p.returncode}:\n"
                             f"{p.stdout}{p.stderr}")
    return p


def mounted(path):
    """True if path is in the mount table (also for a dead FUSE mount, where
    os.path.ismount fails because stat gives ENOTCONN)."""
    path = str(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == path:
                return True
    return False


def pid_running(pid):
    """True while some thread of pid is alive and not a zombie (a killed
    process keeps its files, and so the store lock, until its last thread
    has exited, even when its main thread is already a zombie)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                st = f.read()
        except OSError:
            continue
        if st[st.rindex(")") + 2] not in "ZX":
            return True
    return False


def wait_until(cond, timeout=30.0, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


class Vault:
    """A store and its mount point. Unpacks as (store, mountpoint)."""

    def __init__(self, root):
        self.root = Path(root)
        self.store = self.root / "store"
        self.mnt = self.root / "mnt"
        self.passfile = self.root / "passphrase"
        self.log = self.root / "driver.log"
        self.allowed_log = []
        self.pids = set()
        self.mnt.mkdir()
        self.passfile.write_text(PASSPHRASE + "\n")
        self.passfile.chmod(0o600)
        sr("init", self.store, "--passphrase-file", self.passfile)

    def __iter__(self):
        return iter((self.store, self.mnt))

    def mount(self, *extra, mnt=None):
        """Mount (background driver); returns when ready."""
        mnt = Path(mnt or self.mnt)
        sr("mount", self.store, mnt, "--passphrase-file", self.passfile,
           "--log-file", self.log, *extra)
        assert os.path.ismount(mnt), f"{mnt} is not a mount after strongroom mount returned"
        pid = self.driver_pid(mnt)
        assert pid, "status does not know the driver's pid"
        self.pids.add(pid)
        return pid

    def driver_pid(self, mnt=None):
        p = sr("status", "--json", check=False)
        if p.returncode != 0:
            return None
        for m in json.loads(p.stdout):
            if m["mountpoint"] == str(mnt or self.mnt):
                return m["pid"]
        return None

    def unmount(self, mnt=None):
        mnt = Path(mnt or self.mnt)
        sr("unmount", mnt)
        assert not mounted(mnt)

    def remount(self, *extra):
        self.unmount()
        return self.mount(*extra)

    def expect_log(self, regex):
        """Declare a driver log line this test provokes on purpose."""
        self.allowed_log.append(re.compile(regex))

    def teardown(self, mnts):
        problems = []
        for mnt in mnts:
            if not mounted(mnt):
                continue
            p = sr("unmount", mnt, check=False, timeout=90 * SLOW)
            if p.returncode != 0 and mounted(mnt):
                problems.append(f"unmount {mnt}: {p.stderr.strip()}")
                subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        for pid in self.pids:
            if not wait_until(lambda: not pid_running(pid), timeout=10 * SLOW):
                problems.append(f"driver {pid} still running after unmount; killed")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                wait_until(lambda: not pid_running(pid), timeout=10)
        if self.log.exists():
            for line in self.log.read_text(errors="replace").splitlines():
                if not any(r.search(line) for r in self.allowed_log):
                    problems.append(f"unexpected driver output: {line}")
        return problems


@pytest.fixture
def fresh_vault(tmp_path):
    """A created but unmounted vault; the finalizer still cleans up any
    mount the test made at v.mnt or at paths added to v.extra_mnts."""
    v = Vault(tmp_path)
    v.extra_mnts = []
    yield v
    problems = v.teardown([v.mnt, *v.extra_mnts])
    assert not problems, "\n".join(problems)


@pytest.fixture
def vault(fresh_vault):
    """A mounted vault: unpacks as (store, mountpoint)."""
    fresh_vault.mount()
    yield fresh_vault
