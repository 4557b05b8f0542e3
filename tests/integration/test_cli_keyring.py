"""The secret-handling command line: init, passwd, keyslot, and how every
command that unlocks a vault gets its secret and reports failure.

Each failure must print exactly one line, "strongroom: <file or store>:
<cause>", exit with the code docs/cli.md documents, and leave the store's
bytes as they were. No mount is needed: `keyslot test` unlocks and says
which slot opened and which levels it holds.

Environment: SR_BIN (default <repo>/build/tools/strongroom); SR_KDF=test is
set for the commands so Argon2id is cheap.
"""

import fcntl
import hashlib
import os
import pty
import re
import select
import shutil
import subprocess
import termios
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SR_BIN = os.environ.get("SR_BIN") or str(REPO / "build" / "tools" / "strongroom")
ENV = dict(os.environ, SR_KDF="test")
# Not the famous "correct horse battery staple": init refuses that one.
PASS = "correct horse battery staple museum"
RECOVERY_RE = re.compile(r"^\s+([0-9A-Z]{4}(?:-[0-9A-Z]{4}){8})\s*$", re.M)

EXIT_USAGE, EXIT_BADSECRET, EXIT_STORE, EXIT_SECRETSRC, EXIT_FAIL = 2, 3, 4, 6, 1


def run(*args, stdin=subprocess.DEVNULL, **kw):
    # A new session has no controlling terminal, so nothing can prompt.
    return subprocess.run([SR_BIN, *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=120, stdin=stdin, start_new_session=True, **kw)


def ok(*args):
    p = run(*args)
    assert p.returncode == 0, f"{args}: exit {p.returncode}: {p.stdout}{p.stderr}"
    return p


def fails(code, what, *args):
    """Run, expect exit code and one stderr line naming `what`."""
    p = run(*args)
    lines = p.stderr.splitlines()
    assert p.returncode == code, f"{args}: exit {p.returncode}, wanted {code}: {p.stderr}"
    assert len(lines) == 1, f"{args}: wanted one line, got {p.stderr!r}"
    assert lines[0].startswith(f"strongroom: {what}: "), lines[0]
    return lines[0]


def tree_hash(root):
    """Hash every path, type, mode and content under root."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(f"{os.path.relpath(p, root)}\0{st.st_mode:o}\0".encode())
            if os.path.isfile(p) and not os.path.islink(p):
                h.update(Path(p).read_bytes())
    return h.hexdigest()


def write(path, text):
    Path(path).write_text(text)
    return path


@pytest.fixture
def vault(tmp_path):
    """A store made by `strongroom init`; yields (store, passfile, recovery)."""
    pw = write(tmp_path / "pass", PASS + "\n")
    store = tmp_path / "store"
    p = ok("init", store, "--passphrase-file", pw)
    m = RECOVERY_RE.search(p.stdout)
    assert m, p.stdout
    return store, pw, m.group(1)


def opens(store, *secret):
    return ok("keyslot", "test", store, *secret).stdout.strip()


# ---- init and the three secret sources ----

def test_init_prints_recovery_key_once_and_makes_the_layout(tmp_path):
    pw = write(tmp_path / "pass", PASS + "\n")
    p = ok("init", tmp_path / "s", "--passphrase-file", pw)
    assert len(RECOVERY_RE.findall(p.stdout)) == 1
    assert "shown only this once" in p.stdout
    assert p.stderr == ""
    for d in ("keyslots", "tree", "audit"):
        assert (tmp_path / "s" / d).is_dir()
    assert (tmp_path / "s" / "strongroom.conf").is_file()
    assert PASS not in p.stdout


def test_init_accepts_an_existing_empty_directory(tmp_path):
    (tmp_path / "s").mkdir()
    ok("init", tmp_path / "s", "--extpass", f"echo '{PASS}'")
    assert opens(tmp_path / "s", "--passphrase-file", write(tmp_path / "p", PASS))


def test_unlock_by_passphrase_file(vault):
    store, pw, _ = vault
    assert opens(store, "--passphrase-file", pw) == \
        "slot 0 opens public..restricted (admin)"


def test_passphrase_file_first_line_only_with_crlf(vault, tmp_path):
    store, _, _ = vault
    pw = write(tmp_path / "crlf", PASS + "\r\nsecond line\n")
    assert opens(store, "--passphrase-file", pw).startswith("slot 0 ")
    nonl = write(tmp_path / "nonl", PASS)
    assert opens(store, f"--passphrase-file={nonl}").startswith("slot 0 ")


def test_unlock_by_extpass(vault):
    store, _, _ = vault
    assert opens(store, "--extpass", f"printf '%s\\n' '{PASS}'").startswith("slot 0 ")


def test_unlock_by_recovery_key_file(vault, tmp_path):
    store, _, rec = vault
    f = write(tmp_path / "rec", rec.lower().replace("-", " ") + "\n")
    assert opens(store, "--recovery-key-file", f) == \
        "slot 1 opens public..restricted (admin)"


def test_recovery_key_with_a_typo_is_caught_and_names_the_file(vault, tmp_path):
    store, _, rec = vault
    c = rec[5]
    typo = rec[:5] + ("0" if c != "0" else "1") + rec[6:]
    f = write(tmp_path / "rec", typo + "\n")
    before = tree_hash(store)
    line = fails(EXIT_BADSECRET, f, "keyslot", "test", store, "--recovery-key-file", f)
    assert "typo" in line
    assert tree_hash(store) == before


def test_recovery_key_of_another_vault_is_a_wrong_key(vault, tmp_path):
    store, pw, _ = vault
    p = ok("init", tmp_path / "other", "--passphrase-file", pw)
    f = write(tmp_path / "rec", RECOVERY_RE.search(p.stdout).group(1))
    line = fails(EXIT_BADSECRET, store, "keyslot", "test", store, "--recovery-key-file", f)
    assert "wrong recovery key" in line


def test_tty_prompt_asks_twice_at_init_without_echo(tmp_path):
    store = tmp_path / "s"
    master, slave = pty.openpty()

    def ctty():
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([SR_BIN, "init", str(store)], stdin=slave, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=ENV, preexec_fn=ctty, close_fds=True,
                            pass_fds=(slave,))
    os.close(slave)
    seen = b""

    def until(pattern):
        nonlocal seen
        while pattern not in seen:
            r, _, _ = select.select([master], [], [], 30)
            assert r, f"no prompt {pattern!r}; saw {seen!r}"
            seen += os.read(master, 1024)

    until(b"Passphrase for")
    os.write(master, PASS.encode() + b"\n")
    until(b"again:")
    os.write(master, PASS.encode() + b"\n")
    out, err = proc.communicate(timeout=60)
    try:
        while select.select([master], [], [], 0.2)[0]:
            seen += os.read(master, 1024)
    except OSError:
        pass
    os.close(master)
    assert proc.returncode == 0, err
    assert PASS.encode() not in seen, "the passphrase was echoed"
    assert RECOVERY_RE.search(out.decode())
    assert opens(store, "--passphrase-file", write(tmp_path / "p", PASS)).startswith("slot 0")


# ---- failures: one line, documented code, store unchanged ----

def test_wrong_passphrase_is_exit_3_naming_the_store(vault, tmp_path):
    store, _, _ = vault
    before = tree_hash(store)
    line = fails(EXIT_BADSECRET, store, "keyslot", "test", store,
                 "--passphrase-file", write(tmp_path / "bad", "not it\n"))
    assert "wrong passphrase" in line
    assert tree_hash(store) == before


def test_missing_store_is_exit_4(tmp_path):
    pw = write(tmp_path / "p", PASS)
    assert "no such store" in fails(EXIT_STORE, tmp_path / "nope", "keyslot", "test",
                                    tmp_path / "nope", "--passphrase-file", pw)


def test_directory_that_is_not_a_vault_is_exit_4(tmp_path):
    (tmp_path / "plain").mkdir()
    pw = write(tmp_path / "p", PASS)
    assert "not a vault" in fails(EXIT_STORE, tmp_path / "plain", "keyslot", "test",
                                  tmp_path / "plain", "--passphrase-file", pw)


def test_init_refuses_a_non_empty_store_and_leaves_it(tmp_path):
    s = tmp_path / "s"
    s.mkdir()
    write(s / "report.docx", "quarterly")
    before = tree_hash(s)
    pw = write(tmp_path / "p", PASS)
    assert "not empty" in fails(EXIT_STORE, s, "init", s, "--passphrase-file", pw)
    assert tree_hash(s) == before


def test_init_refuses_an_existing_vault(vault):
    store, pw, _ = vault
    before = tree_hash(store)
    fails(EXIT_STORE, store, "init", store, "--passphrase-file", pw)
    assert tree_hash(store) == before


def test_init_refuses_a_missing_parent(tmp_path):
    pw = write(tmp_path / "p", PASS)
    s = tmp_path / "a" / "b"
    fails(EXIT_STORE, s, "init", s, "--passphrase-file", pw)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("edit", ["truncated", "edited", "foreign", "garbage", "newer"])
def test_damaged_config_is_exit_4_and_not_changed(vault, tmp_path, edit):
    store, pw, _ = vault
    conf = store / "strongroom.conf"
    data = bytearray(conf.read_bytes())
    if edit == "truncated":
        data = data[:len(data) // 2]
    elif edit == "edited":
        data[-40] ^= 0x01  # the audit public key, under the MAC
    elif edit == "foreign":
        ok("init", tmp_path / "other", "--passphrase-file", pw)
        data = (tmp_path / "other" / "strongroom.conf").read_bytes()
    elif edit == "garbage":
        data = b"[vault]\nname = accounts\n"
    elif edit == "newer":
        data[8] = 2
    conf.write_bytes(bytes(data))
    before = tree_hash(store)
    what = store if edit in ("edited", "foreign") else conf
    fails(EXIT_STORE, what, "keyslot", "test", store, "--passphrase-file", pw)
    assert tree_hash(store) == before


def test_keyslot_with_broken_header_is_exit_4(vault):
    store, pw, _ = vault
    slot = store / "keyslots" / "slot-0"
    data = bytearray(slot.read_bytes())
    data[0] ^= 0xff
    slot.write_bytes(bytes(data))
    before = tree_hash(store)
    fails(EXIT_STORE, store, "keyslot", "test", store, "--passphrase-file", pw)
    assert tree_hash(store) == before


def test_keyslot_with_edited_sealed_keys_reads_as_a_wrong_secret(vault):
    # An edit inside the sealed box cannot be told from a wrong passphrase.
    store, pw, _ = vault
    slot = store / "keyslots" / "slot-0"
    data = bytearray(slot.read_bytes())
    data[100] ^= 0x01
    slot.write_bytes(bytes(data))
    before = tree_hash(store)
    fails(EXIT_BADSECRET, store, "keyslot", "test", store, "--passphrase-file", pw)
    assert tree_hash(store) == before


def test_passphrase_file_missing_unreadable_or_empty_is_exit_6(vault, tmp_path):
    store, _, _ = vault
    before = tree_hash(store)
    missing = tmp_path / "missing"
    assert "No such file" in fails(EXIT_SECRETSRC, missing, "keyslot", "test", store,
                                   "--passphrase-file", missing)
    (tmp_path / "adir").mkdir()
    fails(EXIT_SECRETSRC, tmp_path / "adir", "keyslot", "test", store,
          "--passphrase-file", tmp_path / "adir")
    empty = write(tmp_path / "empty", "")
    assert "empty" in fails(EXIT_SECRETSRC, empty, "keyslot", "test", store,
                            "--passphrase-file", empty)
    blank = write(tmp_path / "blank", "\nsecond line is not read\n")
    fails(EXIT_SECRETSRC, blank, "keyslot", "test", store, "--passphrase-file", blank)
    long = write(tmp_path / "long", "x" * 5000 + "\n")
    fails(EXIT_SECRETSRC, long, "keyslot", "test", store, "--passphrase-file", long)
    assert tree_hash(store) == before


def test_extpass_failing_or_silent_is_exit_6(vault):
    store, _, _ = vault
    assert "status 3" in fails(EXIT_SECRETSRC, "--extpass", "keyslot", "test", store,
                               "--extpass", "exit 3")
    assert "no passphrase" in fails(EXIT_SECRETSRC, "--extpass", "keyslot", "test", store,
                                    "--extpass", "true")


def test_no_secret_and_no_terminal_is_exit_6(vault):
    store, _, _ = vault
    assert "no terminal" in fails(EXIT_SECRETSRC, store, "keyslot", "test", store)


def test_two_secret_sources_is_a_usage_error(vault):
    store, pw, _ = vault
    fails(EXIT_USAGE, store, "keyslot", "test", store, "--passphrase-file", pw,
          "--extpass", "true")


def test_bad_init_arguments_are_usage_errors_and_create_nothing(tmp_path):
    pw = write(tmp_path / "p", PASS)
    s = tmp_path / "s"
    fails(EXIT_USAGE, "Public,x", "init", s, "--passphrase-file", pw, "--levels", "Public,x")
    fails(EXIT_USAGE, "a,a", "init", s, "--passphrase-file", pw, "--levels", "a,a")
    fails(EXIT_USAGE, "3000", "init", s, "--passphrase-file", pw, "--chunk-size", "3000")
    fails(EXIT_USAGE, "--bogus", "init", s, "--bogus")
    fails(EXIT_USAGE, "--recovery-key-file", "init", s, "--recovery-key-file", pw)
    fails(EXIT_USAGE, "init", "init")
    assert not s.exists()


def test_init_with_custom_levels_and_chunk_size(tmp_path):
    pw = write(tmp_path / "p", PASS)
    s = tmp_path / "s"
    p = ok("init", s, "--passphrase-file", pw, "--levels", "open,staff,board",
           "--chunk-size", "16K")
    assert "open < staff < board" in p.stdout and "16384-byte" in p.stdout
    assert opens(s, "--passphrase-file", pw) == "slot 0 opens open..board (admin)"


# ---- keyslots ----

def test_keyslot_add_with_max_level_unlocks_only_up_to_it(vault, tmp_path):
    store, pw, _ = vault
    low = write(tmp_path / "low", "branch office\n")
    p = ok("keyslot", "add", store, "--max-level", "internal", "--new-passphrase-file", low,
           "--passphrase-file", pw)
    assert "slot 2" in p.stdout
    assert opens(store, "--passphrase-file", low) == "slot 2 opens public..internal"
    listing = ok("keyslot", "list", store).stdout
    assert re.search(r"^2\s+passphrase\s+public\.\.internal\s+no\b", listing, re.M), listing
    # The low slot cannot hand out more than it holds, nor name a missing level.
    other = write(tmp_path / "other", "x\n")
    before = tree_hash(store)
    fails(EXIT_FAIL, store, "keyslot", "add", store, "--max-level", "restricted",
          "--new-passphrase-file", other, "--passphrase-file", low)
    fails(EXIT_USAGE, "secret", "keyslot", "add", store, "--max-level", "secret",
          "--new-passphrase-file", other, "--passphrase-file", pw)
    assert tree_hash(store) == before


def test_keyslot_list_needs_no_secret(vault):
    store, _, _ = vault
    out = ok("keyslot", "list", store).stdout
    assert re.search(r"^0\s+passphrase\s+public\.\.restricted\s+yes\s+argon2id", out, re.M)
    assert re.search(r"^1\s+recovery\s+public\.\.restricted\s+yes\s+blake2b", out, re.M)


def test_removing_the_last_full_slot_is_refused(vault, tmp_path):
    store, pw, _ = vault
    low = write(tmp_path / "low", "low level office key\n")
    ok("keyslot", "add", store, "--max-level", "confidential", "--new-passphrase-file", low,
       "--passphrase-file", pw)
    ok("keyslot", "remove", store, "1", "--passphrase-file", pw)
    before = tree_hash(store)
    line = fails(EXIT_FAIL, store, "keyslot", "remove", store, "0", "--passphrase-file", pw)
    assert "last" in line
    assert tree_hash(store) == before
    fails(EXIT_USAGE, store, "keyslot", "remove", store, "7", "--passphrase-file", pw)
    fails(EXIT_USAGE, "x", "keyslot", "remove", store, "x", "--passphrase-file", pw)
    assert tree_hash(store) == before
    assert opens(store, "--passphrase-file", pw).startswith("slot 0 ")


def test_removed_recovery_slot_no_longer_opens(vault, tmp_path):
    store, pw, rec = vault
    ok("keyslot", "remove", store, "1", "--passphrase-file", pw)
    f = write(tmp_path / "rec", rec)
    fails(EXIT_BADSECRET, store, "keyslot", "test", store, "--recovery-key-file", f)


def test_wrong_secret_cannot_add_or_remove(vault, tmp_path):
    store, _, _ = vault
    bad = write(tmp_path / "bad", "bad\n")
    before = tree_hash(store)
    fails(EXIT_BADSECRET, store, "keyslot", "remove", store, "1", "--passphrase-file", bad)
    fails(EXIT_BADSECRET, store, "keyslot", "add", store, "--new-passphrase-file", bad,
          "--passphrase-file", bad)
    assert tree_hash(store) == before


# ---- passwd ----

def test_passwd_changes_the_passphrase_and_rejects_the_old(vault, tmp_path):
    store, pw, _ = vault
    new = write(tmp_path / "new", "a new passphrase for bob\n")
    p = ok("passwd", store, "--passphrase-file", pw, "--new-passphrase-file", new)
    assert "replaces slot 0" in p.stdout
    assert "opens public..restricted (admin)" in opens(store, "--passphrase-file", new)
    fails(EXIT_BADSECRET, store, "keyslot", "test", store, "--passphrase-file", pw)


def test_passwd_of_a_low_slot_keeps_its_ceiling(vault, tmp_path):
    store, pw, _ = vault
    low = write(tmp_path / "low", "low level office key\n")
    low2 = write(tmp_path / "low2", "low two office key\n")
    ok("keyslot", "add", store, "--max-level", "public", "--new-passphrase-file", low,
       "--passphrase-file", pw)
    ok("passwd", store, "--passphrase-file", low, "--new-passphrase-file", low2)
    assert opens(store, "--passphrase-file", low2).endswith("opens public")
    fails(EXIT_BADSECRET, store, "keyslot", "test", store, "--passphrase-file", low)


def test_passwd_with_the_recovery_key_adds_a_passphrase(vault, tmp_path):
    store, _, rec = vault
    f = write(tmp_path / "rec", rec)
    new = write(tmp_path / "new", "after forgetting\n")
    ok("passwd", store, "--recovery-key-file", f, "--new-passphrase-file", new)
    assert "(admin)" in opens(store, "--passphrase-file", new)
    assert opens(store, "--recovery-key-file", f).startswith("slot 1 ")


def test_passwd_with_wrong_passphrase_changes_nothing(vault, tmp_path):
    store, _, _ = vault
    before = tree_hash(store)
    fails(EXIT_BADSECRET, store, "passwd", store, "--passphrase-file",
          write(tmp_path / "bad", "bad"), "--new-passphrase-file", write(tmp_path / "n", "n"))
    assert tree_hash(store) == before


# ---- help and version ----

@pytest.mark.parametrize("cmd", ["init", "passwd", "keyslot"])
def test_command_help_has_synopsis_options_and_exit_codes(cmd):
    p = ok(cmd, "--help")
    for section in ("SYNOPSIS", "EXIT CODES"):
        assert section in p.stdout
    assert ok("help", cmd).stdout == p.stdout


def test_global_help_and_version():
    out = ok("--help").stdout
    for cmd in ("init", "mount", "passwd", "keyslot"):
        assert re.search(rf"^  {cmd}\s", out, re.M)
    assert re.match(r"strongroom \d+\.\d+\.\d+", ok("--version").stdout)
    fails(EXIT_USAGE, "frobnicate", "frobnicate")


def test_interrupt_at_the_prompt_puts_echo_back(vault):
    store, _, _ = vault
    master, slave = pty.openpty()

    def ctty():
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([SR_BIN, "keyslot", "test", str(store)], stdin=slave,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
                            preexec_fn=ctty, close_fds=True, pass_fds=(slave,))
    seen = b""
    while b"Passphrase for" not in seen:
        r, _, _ = select.select([master], [], [], 30)
        assert r, seen
        seen += os.read(master, 1024)
    assert not termios.tcgetattr(slave)[3] & termios.ECHO  # echo off while asking
    os.write(master, b"\x03")
    proc.communicate(timeout=30)
    assert proc.returncode == -2  # SIGINT
    assert termios.tcgetattr(slave)[3] & termios.ECHO
    os.close(slave)
    os.close(master)
