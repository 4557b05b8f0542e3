"""Keyslots that need a passphrase and a key file (something known plus
something held, docs/format.md section 3.1), as an admin uses them: init
and keyslot add with --key-file, keyslot list, every secret-taking command
with --key-file, a real mount and fstab-style mount through
mount.strongroom, and the failures: no key file, a wrong one, the right one
with a wrong passphrase, a missing or unreadable one.

Environment: SR_BIN (default <repo>/build/tools/strongroom); SR_KDF=test.
"""

import os
import re
import subprocess

from conftest import MOUNT_HELPER, mounted, sr
from test_cli_keyring import (EXIT_BADSECRET, EXIT_SECRETSRC, EXIT_USAGE, PASS, RECOVERY_RE,
                              fails, ok, opens, tree_hash, write)


def keyfile(path, seed):
    path.write_bytes(bytes((seed + i * 7) % 256 for i in range(64)))
    return path


def keyfile_vault(tmp_path):
    """init --key-file: slot 0 needs PASS and the key file."""
    pw = write(tmp_path / "pass", PASS + "\n")
    kf = keyfile(tmp_path / "vault.key", 1)
    store = tmp_path / "store"
    p = ok("init", store, "--passphrase-file", pw, "--key-file", kf)
    m = RECOVERY_RE.search(p.stdout)
    assert m, p.stdout
    return store, pw, kf, m.group(1)


def test_init_with_key_file_opens_only_with_the_passphrase_and_the_key_file(tmp_path):
    store, pw, kf, _ = keyfile_vault(tmp_path)
    assert opens(store, "--passphrase-file", pw, "--key-file", kf) == \
        "slot 0 opens public..restricted (admin)"
    listing = ok("keyslot", "list", store).stdout
    assert re.search(r"^0\s+passphrase\+keyfile\s+public\.\.restricted\s+yes\s+argon2id",
                     listing, re.M), listing
    assert re.search(r"^1\s+recovery\s+", listing, re.M), listing


def test_key_file_slot_refuses_no_file_a_wrong_file_and_a_wrong_passphrase(tmp_path):
    store, pw, kf, _ = keyfile_vault(tmp_path)
    other = keyfile(tmp_path / "other.key", 2)
    bad = write(tmp_path / "bad", "not the passphrase of this vault\n")
    before = tree_hash(store)
    line = fails(EXIT_BADSECRET, store, "keyslot", "test", store, "--passphrase-file", pw)
    assert "a key file is needed" in line and "--key-file" in line, line
    line = fails(EXIT_BADSECRET, store, "keyslot", "test", store, "--passphrase-file", pw,
                 "--key-file", other)
    assert "wrong passphrase or key file" in line, line
    line = fails(EXIT_BADSECRET, store, "keyslot", "test", store, "--passphrase-file", bad,
                 "--key-file", kf)
    assert "wrong passphrase or key file" in line, line
    # A key file that is one byte short is another key file.
    short = tmp_path / "short.key"
    short.write_bytes(kf.read_bytes()[:-1])
    fails(EXIT_BADSECRET, store, "keyslot", "test", store, "--passphrase-file", pw,
          "--key-file", short)
    assert tree_hash(store) == before


def test_missing_unreadable_or_too_short_key_file_is_named_in_one_line(tmp_path):
    store, pw, kf, _ = keyfile_vault(tmp_path)
    missing = tmp_path / "nowhere.key"
    line = fails(EXIT_SECRETSRC, missing, "keyslot", "test", store, "--passphrase-file", pw,
                 "--key-file", missing)
    assert "cannot read key file" in line and "No such file" in line, line
    line = fails(EXIT_SECRETSRC, tmp_path, "keyslot", "test", store, "--passphrase-file", pw,
                 "--key-file", tmp_path)
    assert "cannot read key file" in line, line
    tiny = tmp_path / "tiny.key"
    tiny.write_bytes(b"0123456789")
    line = fails(EXIT_SECRETSRC, tiny, "keyslot", "test", store, "--passphrase-file", pw,
                 "--key-file", tiny)
    assert "too short" in line, line
    # A missing key file is caught before anyone is asked for a passphrase
    # (no terminal here: the prompt would fail with another message).
    line = fails(EXIT_SECRETSRC, missing, "keyslot", "test", store, "--key-file", missing)
    fails(EXIT_USAGE, "--key-file", "keyslot", "test", store, "--recovery-key-file", pw,
          "--key-file", kf)
    # A failed init with a missing key file creates nothing.
    fails(EXIT_SECRETSRC, missing, "init", tmp_path / "new", "--passphrase-file", pw,
          "--key-file", missing)
    assert not (tmp_path / "new").exists()


def test_keyslot_add_with_key_file_makes_a_slot_that_needs_it(tmp_path):
    pw = write(tmp_path / "pass", PASS + "\n")
    store = tmp_path / "store"
    ok("init", store, "--passphrase-file", pw)
    branch = write(tmp_path / "branch", "branch office passphrase 4711\n")
    kf = keyfile(tmp_path / "branch.key", 9)
    p = ok("keyslot", "add", store, "--max-level", "internal", "--new-passphrase-file", branch,
           "--passphrase-file", pw, "--key-file", kf)
    assert "slot 2" in p.stdout and "key file" in p.stdout, p.stdout
    listing = ok("keyslot", "list", store).stdout
    assert re.search(r"^2\s+passphrase\+keyfile\s+public\.\.internal\s+no\b", listing,
                     re.M), listing
    assert re.search(r"^0\s+passphrase\s+", listing, re.M), listing
    assert opens(store, "--passphrase-file", branch, "--key-file", kf) == \
        "slot 2 opens public..internal"
    fails(EXIT_BADSECRET, store, "keyslot", "test", store, "--passphrase-file", branch)
    # --new-key-file gives the new slot a file of its own.
    other = keyfile(tmp_path / "other.key", 3)
    third = write(tmp_path / "third", "third office passphrase 0815\n")
    ok("keyslot", "add", store, "--max-level", "public", "--new-passphrase-file", third,
       "--new-key-file", other, "--passphrase-file", pw)
    assert opens(store, "--passphrase-file", third, "--key-file", other) == \
        "slot 3 opens public"
    fails(EXIT_BADSECRET, store, "keyslot", "test", store, "--passphrase-file", third,
          "--key-file", kf)


def test_passwd_keeps_the_key_file_and_recovery_still_opens(tmp_path):
    store, pw, kf, recovery = keyfile_vault(tmp_path)
    new = write(tmp_path / "new", "a brand new passphrase for the vault\n")
    p = ok("passwd", store, "--passphrase-file", pw, "--key-file", kf,
           "--new-passphrase-file", new)
    assert "replaces slot 0" in p.stdout
    assert opens(store, "--passphrase-file", new, "--key-file", kf).startswith("slot 2 opens")
    fails(EXIT_BADSECRET, store, "keyslot", "test", store, "--passphrase-file", new)
    rk = write(tmp_path / "rk", recovery + "\n")
    assert opens(store, "--recovery-key-file", rk).startswith("slot 1 opens")


def test_mount_with_passphrase_and_key_file_and_each_failure(fresh_vault, tmp_path):
    v = fresh_vault
    kf = keyfile(tmp_path / "mount.key", 5)
    kpass = write(tmp_path / "kpass", "key file mount passphrase 2024\n")
    sr("keyslot", "add", v.store, "--new-passphrase-file", kpass, "--passphrase-file",
       v.passfile, "--key-file", kf)
    # Take the plain slot away: only the key-file slot and recovery remain.
    sr("keyslot", "remove", v.store, "0", "--passphrase-file", kpass, "--key-file", kf)
    for args, code in (((), EXIT_BADSECRET),
                       (("--key-file", keyfile(tmp_path / "wrong.key", 6)), EXIT_BADSECRET),
                       (("--key-file", tmp_path / "missing.key"), EXIT_SECRETSRC)):
        p = sr("mount", v.store, v.mnt, "--passphrase-file", kpass, *args, check=False)
        assert p.returncode == code, p.stderr
        assert len(p.stderr.splitlines()) == 1, p.stderr
        assert not mounted(v.mnt)
    p = sr("mount", v.store, v.mnt, "--passphrase-file", v.passfile, "--key-file", kf,
           check=False)
    assert p.returncode == EXIT_BADSECRET and "wrong passphrase or key file" in p.stderr
    sr("mount", v.store, v.mnt, "--passphrase-file", kpass, "--key-file", kf,
       "--log-file", v.log)
    assert mounted(v.mnt)
    v.pids.add(v.driver_pid())
    (v.mnt / "held.txt").write_text("opened with both\n")
    v.unmount()
    # fstab style: keyfile= in the option list.
    env = dict(os.environ, SR_BIN=os.environ.get("SR_BIN", ""))
    if not env["SR_BIN"]:
        env.pop("SR_BIN")
    p = subprocess.run([MOUNT_HELPER, str(v.store), str(v.mnt), "-o",
                        f"passphrase_file={kpass},keyfile={kf},log_file={v.log}"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert mounted(v.mnt)
    v.pids.add(v.driver_pid())
    assert (v.mnt / "held.txt").read_text() == "opened with both\n"
    v.unmount()


def locked(v):
    m = re.search(r"^\s+locked: (\S+)$", sr("status", v.mnt).stdout, re.M)
    assert m, "status shows no locked levels line"
    return m.group(1)


def test_unlock_of_a_locked_level_takes_a_key_file(fresh_vault, tmp_path):
    v = fresh_vault
    kf = keyfile(tmp_path / "unlock.key", 11)
    kpass = write(tmp_path / "kpass", "key file unlock passphrase 77\n")
    sr("keyslot", "add", v.store, "--new-passphrase-file", kpass, "--passphrase-file",
       v.passfile, "--key-file", kf)
    v.mount()
    sr("lock", v.mnt, "--level", "restricted")
    assert locked(v) == "restricted"
    p = sr("unlock", v.mnt, "--passphrase-file", kpass, check=False)
    assert p.returncode == EXIT_BADSECRET, p.stderr
    p = sr("unlock", v.mnt, "--passphrase-file", kpass, "--key-file",
           keyfile(tmp_path / "wrong.key", 12), check=False)
    assert p.returncode == EXIT_BADSECRET, p.stderr
    assert locked(v) == "restricted"
    sr("unlock", v.mnt, "--passphrase-file", kpass, "--key-file", kf)
    assert locked(v) == "-"
