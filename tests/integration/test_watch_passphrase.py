"""Passphrase quality: init, passwd and keyslot add refuse a new passphrase
that is short, common or easy to guess, print the reason on one line and
exit 6 (the secret cannot be used); --force takes it anyway."""

from conftest import PASSPHRASE, sr

EXIT_SECRETSRC = 6


def write(path, text):
    path.write_text(text + "\n")
    return path


def test_init_refuses_short_common_and_guessable_passphrases_with_the_reason(tmp_path):
    cases = {
        "short": ("low two", "shorter than 12 characters"),
        "common": ("correct horse battery staple", "commonly used"),
        "guessable": ("password123456", "too easy to guess"),
        "repeated": ("qwertyqwertyqwerty", "too easy to guess"),
    }
    for name, (text, why) in cases.items():
        store = tmp_path / f"store-{name}"
        p = sr("init", store, "--passphrase-file", write(tmp_path / name, text), check=False)
        assert p.returncode == EXIT_SECRETSRC, (name, p.stderr)
        assert why in p.stderr and "--force" in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
        assert text not in p.stderr
        assert not store.exists()


def test_init_with_force_takes_a_weak_passphrase_and_a_good_one_needs_no_force(tmp_path):
    weak = write(tmp_path / "weak", "low two")
    p = sr("init", tmp_path / "s1", "--passphrase-file", weak, "--force")
    assert "weak passphrase accepted" in p.stderr
    assert (tmp_path / "s1" / "strongroom.conf").exists()
    p = sr("init", tmp_path / "s2", "--passphrase-file", write(tmp_path / "good", PASSPHRASE))
    assert p.stderr == ""


def test_passwd_and_keyslot_add_refuse_a_weak_new_passphrase(tmp_path):
    store = tmp_path / "store"
    pw = write(tmp_path / "pw", PASSPHRASE)
    sr("init", store, "--passphrase-file", pw)
    weak = write(tmp_path / "weak", "a new passphrase")
    p = sr("passwd", store, "--passphrase-file", pw, "--new-passphrase-file", weak, check=False)
    assert p.returncode == EXIT_SECRETSRC and "too easy to guess" in p.stderr, p.stderr
    p = sr("keyslot", "add", store, "--max-level", "internal", "--passphrase-file", pw,
           "--new-passphrase-file", weak, check=False)
    assert p.returncode == EXIT_SECRETSRC and "too easy to guess" in p.stderr, p.stderr
    slots = sr("keyslot", "list", store).stdout
    assert "slot 2" not in slots
    # the old passphrase still opens the store
    assert sr("keyslot", "test", store, "--passphrase-file", pw).returncode == 0
    sr("keyslot", "add", store, "--max-level", "internal", "--passphrase-file", pw,
       "--new-passphrase-file", weak, "--force")
    sr("passwd", store, "--passphrase-file", pw, "--new-passphrase-file",
       write(tmp_path / "new", "a new passphrase for the branch office"))
