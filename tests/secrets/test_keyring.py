"""The built-in store's keyring: AES-GCM seals bound to their row, several keys, the last one current."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.secrets import KeyringError
from orchestrator.secrets.keyring import Keyring, append_key, new_key_entry
from tests.secrets.conftest import keyring

VALUE = "s3cr3t-keyring-value"


def test_seal_opens_only_with_its_context_and_never_holds_the_plain_value(key_entries):
    ring = keyring(*key_entries)
    sealed = ring.seal(VALUE, "github/acme/widgets\0TOKEN")
    assert VALUE.encode() not in sealed.blob and sealed.key_id == ring.current.key_id
    assert ring.open(sealed, "github/acme/widgets\0TOKEN") == VALUE
    with pytest.raises(KeyringError, match="does not open"):
        ring.open(sealed, "github/acme/other\0TOKEN")  # moved to another row
    assert ring.seal(VALUE, "c").blob != ring.seal(VALUE, "c").blob  # a fresh nonce each time


def test_rotation_old_values_stay_readable_new_writes_use_the_last_key(key_entries):
    old_entry, new_entry = key_entries
    before = keyring(old_entry).seal(VALUE, "ctx")
    rotated = keyring(old_entry, new_entry)
    assert rotated.open(before, "ctx") == VALUE
    after = rotated.seal(VALUE, "ctx")
    assert after.key_id == new_entry.split(":")[0] != before.key_id
    with pytest.raises(KeyringError, match=f"sealed with key '{before.key_id}'.*does not hold"):
        keyring(new_entry).open(before, "ctx")


@pytest.mark.parametrize(("text", "problem"), [
    ("", "holds no key"),
    ("nocolon", "must be ID:BASE64"),
    ("bad/id:AAAA", "key 1 must be ID:BASE64"),
    ("k1:@@@@", "not valid base64"),
    ("k1:c2hvcnQ=", "must be 32 bytes"),
])
def test_bad_keyrings_are_refused_with_the_reason(text, problem):
    with pytest.raises(KeyringError, match=problem):
        Keyring.parse(text, "test")


def test_env_form_separates_keys_by_commas_and_a_repeated_id_is_refused(key_entries):
    assert list(Keyring.parse(",".join(key_entries), "env").keys) == [e.split(":")[0] for e in key_entries]
    with pytest.raises(KeyringError, match="twice"):
        Keyring.parse(f"{key_entries[0]}\n{key_entries[0]}", "env")


def test_key_files_are_made_0600_and_refused_when_others_can_read_them(tmp_path: Path):
    path = tmp_path / "secrets.key"
    first = append_key(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    second = append_key(path)
    ring = Keyring.from_file(path)
    assert list(ring.keys) == [first, second] and ring.current.key_id == second
    path.write_text("# comment\n" + new_key_entry() + "\n")
    os.chmod(path, 0o644)
    with pytest.raises(KeyringError, match="readable by others.*chmod 600"):
        Keyring.from_file(path)
    with pytest.raises(KeyringError, match="readable by others"):
        append_key(path)
    with pytest.raises(KeyringError, match="cannot read"):
        Keyring.from_file(tmp_path / "missing.key")
