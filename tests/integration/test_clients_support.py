"""Shared pieces of the real-client tests (no tests here).

`staff_vault`: a vault mounted with --allow-other in a directory every user
can traverse (pytest's own temp directories are private to root), removed
with its mounts by the finalizer. `staff`: a factory of unprivileged staff
accounts with a unique prefix, deleted by the finalizer; `as_user` runs a
command as one of them through setpriv with their groups and a private HOME.
"""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from conftest import Vault

PREFIX = "srt" + uuid.uuid4().hex[:5]


@pytest.fixture
def staff_vault():
    root = Path(tempfile.mkdtemp(prefix="sr-clients-", dir="/tmp"))
    os.chmod(root, 0o711)
    v = Vault(root)
    v.extra_mnts = []
    os.chmod(v.mnt, 0o755)
    v.mount("--allow-other")
    os.chmod(v.mnt, 0o755)
    yield v
    problems = v.teardown([v.mnt, *v.extra_mnts])
    shutil.rmtree(root, ignore_errors=True)
    assert not problems, "\n".join(problems)


class Staff:
    def __init__(self, name, uid, gid, home):
        self.name, self.uid, self.gid, self.home = name, uid, gid, Path(home)

    def env(self):
        return {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
                "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                "TMPDIR": str(self.home / "tmp")}

    def run(self, cmd, timeout=120, check=True, **kw):
        """Run cmd as this user in a new session; on timeout the whole
        process group it started is killed (office suites fork helpers)."""
        args = ["setpriv", "--reuid", str(self.uid), "--regid", str(self.gid),
                "--init-groups", "--", *map(str, cmd)]
        kw.setdefault("cwd", str(self.home))
        with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=self.env(), start_new_session=True, **kw) as proc:
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                raise AssertionError(f"as {self.name}: {' '.join(map(str, cmd))} "
                                     f"did not finish in {timeout} s")
            # helpers left behind in the session are this command's own
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p = subprocess.CompletedProcess(args, proc.returncode, out, err)
        if check and p.returncode != 0:
            raise AssertionError(f"as {self.name}: {' '.join(map(str, cmd))} exited "
                                 f"{p.returncode}:\n{p.stdout}{p.stderr}")
        return p


@pytest.fixture
def staff():
    """make(suffix, groups=()) -> Staff; groups are created with the prefix."""
    users, groups = [], []

    def make(suffix, member_of=()):
        for g in member_of:
            gname = f"{PREFIX}{g}"
            if gname not in groups:
                subprocess.run(["groupadd", gname], check=True, capture_output=True)
                groups.append(gname)
        name = f"{PREFIX}{suffix}"
        home = Path(tempfile.mkdtemp(prefix=f"home-{name}-", dir="/tmp"))
        cmd = ["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh"]
        if member_of:
            cmd += ["--groups", ",".join(f"{PREFIX}{g}" for g in member_of)]
        subprocess.run([*cmd, name], check=True, capture_output=True)
        users.append((name, home))
        pw = pwd.getpwnam(name)
        (home / "tmp").mkdir()
        for p in (home, home / "tmp"):
            os.chown(p, pw.pw_uid, pw.pw_gid)
            os.chmod(p, 0o700)
        return Staff(name, pw.pw_uid, pw.pw_gid, home)

    yield make
    for name, home in users:
        subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    for g in groups:
        subprocess.run(["groupdel", g], capture_output=True)


def group_name(g):
    return f"{PREFIX}{g}"
