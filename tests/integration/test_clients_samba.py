"""A Samba share of a mounted vault, used with smbclient by two staff
accounts: files saved over SMB land encrypted in the store, the folder ACLs
apply to each account, and the audit trail names the SMB user.

smbd runs from Debian's package with a private configuration on 127.0.0.1
and a non-standard port, started and stopped by the test. The share
section is the one docs/admin-guide.md recommends."""

import os
import shutil
import socket
import subprocess
import time

import pytest

from conftest import sr, wait_until
from test_clients_support import group_name, staff, staff_vault  # noqa: F401 (fixtures)

SHARE = """\
[documents]
   path = {path}
   read only = no
   browseable = yes
   # the vault enforces POSIX ACLs; let Samba map them and inherit defaults
   nt acl support = yes
   inherit acls = yes
   inherit permissions = no
   # office apps lock with both; the vault supports POSIX byte-range locks
   kernel oplocks = no
   posix locking = yes
   # keep Windows metadata in the vault's xattrs, encrypted like the rest
   ea support = yes
   store dos attributes = yes
"""

GLOBAL = """\
[global]
   server role = standalone server
   workgroup = STRONGROOM
   interfaces = 127.0.0.1
   bind interfaces only = yes
   smb ports = {port}
   map to guest = never
   passdb backend = tdbsam:{d}/private/passdb.tdb
   private dir = {d}/private
   lock directory = {d}/lock
   state directory = {d}/state
   cache directory = {d}/cache
   pid directory = {d}/pid
   ncalrpc dir = {d}/ncalrpc
   binddns dir = {d}/bind-dns
   log file = {d}/log.%m
   load printers = no
   printing = bsd
   printcap name = /dev/null
   disable spoolss = yes
   server min protocol = SMB2
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smbd(staff_vault, tmp_path):
    if not shutil.which("smbd") or not shutil.which("smbclient"):
        pytest.skip("samba or smbclient is not installed (tools/deps.sh deps_test)")
    d = tmp_path / "samba"
    for sub in ("private", "lock", "state", "cache", "pid", "ncalrpc", "bind-dns"):
        (d / sub).mkdir(parents=True)
    os.chmod(d / "private", 0o700)
    share = staff_vault.mnt / "shared"
    share.mkdir()
    os.chmod(share, 0o1777)
    port = free_port()
    conf = d / "smb.conf"
    conf.write_text(GLOBAL.format(port=port, d=d) + "\n" + SHARE.format(path=share))
    proc = subprocess.Popen(["smbd", "--foreground", "--no-process-group", "--debug-stdout",
                             f"--configfile={conf}"], stdout=open(d / "smbd.out", "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)

    def listening():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return proc.poll() is not None
    assert wait_until(listening, timeout=30), "smbd did not start listening"
    assert proc.poll() is None, "smbd exited:\n" + (d / "smbd.out").read_text()

    class Smb:
        pass
    s = Smb()
    s.conf, s.port, s.share, s.proc = conf, port, share, proc

    def add_user(user, password):
        subprocess.run(["smbpasswd", "-c", str(conf), "-a", "-s", user.name],
                       input=f"{password}\n{password}\n", text=True, check=True,
                       capture_output=True, timeout=30)

    def client(user, password, commands, cwd):
        return subprocess.run(["smbclient", f"//127.0.0.1/documents", "-p", str(port),
                               "-U", f"{user.name}%{password}", "-c", commands],
                              capture_output=True, text=True, timeout=60, cwd=str(cwd))
    s.add_user, s.client = add_user, client
    yield s
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=20)


def test_two_staff_accounts_over_smb_see_their_acls_and_store_only_ciphertext(
        staff_vault, staff, smbd, tmp_path):
    alice = staff("smbalice", ["legal"])
    bob = staff("smbbob", ["sales"])
    smbd.add_user(alice, "alice pass 1")
    smbd.add_user(bob, "bob pass 2")
    legal = smbd.share / "legal"
    legal.mkdir()
    os.chmod(legal, 0o770)
    g = group_name("legal")
    subprocess.run(["setfacl", "-m", f"g:{g}:rwx", "-d", "-m", f"g:{g}:rwx,o::---",
                    str(legal)], check=True)

    work = tmp_path / "work"
    work.mkdir()
    marker = b"CONFIDENTIAL-SETTLEMENT-TERMS-" + os.urandom(8).hex().encode()
    (work / "settlement.txt").write_bytes(marker * 200)

    p = smbd.client(alice, "alice pass 1", "cd legal; put settlement.txt", work)
    assert p.returncode == 0, p.stdout + p.stderr
    saved = legal / "settlement.txt"
    assert saved.read_bytes() == marker * 200
    st = os.stat(saved)
    assert st.st_uid == alice.uid, "the file saved over SMB is not the SMB user's"
    # the store holds only ciphertext
    for root, _dirs, names in os.walk(staff_vault.store):
        for n in names:
            with open(os.path.join(root, n), "rb") as f:
                assert marker[:20] not in f.read(), f"plaintext in the store: {root}/{n}"

    # alice reads it back over SMB; bob gets access denied both ways
    p = smbd.client(alice, "alice pass 1", "cd legal; get settlement.txt back.txt", work)
    assert p.returncode == 0, p.stdout + p.stderr
    assert (work / "back.txt").read_bytes() == marker * 200
    p = smbd.client(bob, "bob pass 2", "cd legal; get settlement.txt bob.txt", work)
    assert p.returncode != 0 and "NT_STATUS_ACCESS_DENIED" in p.stdout + p.stderr
    assert not (work / "bob.txt").exists() or (work / "bob.txt").stat().st_size == 0
    p = smbd.client(bob, "bob pass 2", "cd legal; put settlement.txt bob-was-here.txt", work)
    assert "NT_STATUS_ACCESS_DENIED" in p.stdout + p.stderr
    assert not (legal / "bob-was-here.txt").exists()
    # bob may still use the rest of the share
    p = smbd.client(bob, "bob pass 2", "put settlement.txt bob.txt", work)
    assert p.returncode == 0, p.stdout + p.stderr
    assert os.stat(smbd.share / "bob.txt").st_uid == bob.uid

    # the audit trail names the SMB user (smbd works as that uid)
    help_ = sr("audit", "--help", check=False)
    if help_.returncode != 0 or "show" not in help_.stdout:
        pytest.skip("strongroom audit show is not in this build")
    sr("unmount", staff_vault.mnt)
    out = sr("audit", "show", staff_vault.store, "--json", "--user", alice.name,
             "--passphrase-file", staff_vault.passfile).stdout
    if not out.strip():
        pytest.skip("the audit trail records no user names yet (audit wiring)")
    assert "settlement.txt" in out and alice.name in out
    assert '"process":"smbd"' in out
    bobs = sr("audit", "show", staff_vault.store, "--json", "--user", bob.name,
              "--event", "create", "--passphrase-file", staff_vault.passfile).stdout
    assert "/shared/bob.txt" in bobs and "legal" not in bobs
