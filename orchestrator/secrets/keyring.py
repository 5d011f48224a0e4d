"""The built-in store's encryption keys: AES-256-GCM, several keys, one current.

A keyring is a list of entries ``ID:BASE64`` (32 random bytes each), one per
line in a key file (mode 0600; ``#`` comments and blank lines ignored) or
separated by commas/whitespace in ``SOLSTICE_SECRETS_KEYS``. The **last**
entry is the current key: every new value is sealed with it; values sealed
with any key still listed stay readable. Each stored value carries the id of
the key that sealed it, so rotating is: list the new key first on every node
(readable everywhere), then move it last (current), then ``rewrap`` the old
values and drop the old key. See docs/secrets.md.

The value's scope and name are authenticated data of its seal: a sealed
value copied onto another secret's row does not open.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from orchestrator.secrets.errors import KeyringError

KEY_BYTES = 32
NONCE_BYTES = 12
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class Key:
    key_id: str
    material: bytes = field(repr=False)


@dataclass(frozen=True)
class Sealed:
    """A value as stored: which key sealed it, and nonce + ciphertext + tag."""

    key_id: str
    blob: bytes


class Keyring:
    """Keys by id; ``current`` seals, any of them opens."""

    def __init__(self, keys: list[Key], where: str) -> None:
        if not keys:
            raise KeyringError(f"{where} holds no key")
        self.where = where
        self.keys = {k.key_id: k for k in keys}
        if len(self.keys) != len(keys):
            raise KeyringError(f"{where} lists a key id twice")
        self.current = keys[-1]

    def __repr__(self) -> str:
        return f"Keyring({self.where}: {len(self.keys)} keys, current {self.current.key_id})"

    @classmethod
    def parse(cls, text: str, where: str) -> Keyring:
        """Entries ``ID:BASE64`` separated by newlines, commas or spaces; the last is current."""
        keys: list[Key] = []
        lines = [line.split("#", 1)[0] for line in text.splitlines()]
        for number, entry in enumerate((e for line in lines for e in re.split(r"[\s,]+", line) if e), 1):
            key_id, sep, encoded = entry.partition(":")
            if not sep or not _KEY_ID.fullmatch(key_id):
                raise KeyringError(f"{where}: key {number} must be ID:BASE64 (an id of letters, digits, "
                                   "'.', '_', '-'); make one with `solstice-orchestrator secret-key new`")
            try:
                material = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise KeyringError(f"{where}: key {key_id!r} is not valid base64") from None
            if len(material) != KEY_BYTES:
                raise KeyringError(f"{where}: key {key_id!r} must be {KEY_BYTES} bytes, not {len(material)}")
            keys.append(Key(key_id, material))
        return cls(keys, where)

    @classmethod
    def from_file(cls, path: Path) -> Keyring:
        """The keys of ``path``, which only its owner may read or write."""
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="ascii")
        except OSError as err:
            raise KeyringError(f"cannot read the secrets key file {path}: {err.strerror}") from err
        except UnicodeDecodeError:
            raise KeyringError(f"the secrets key file {path} is not text (ID:BASE64 lines)") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyringError(f"the secrets key file {path} is readable by others "
                               f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it")
        return cls.parse(text, f"key file {path}")

    # -- sealing -------------------------------------------------------------------
    def seal(self, plaintext: str, context: str) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        data = AESGCM(self.current.material).encrypt(nonce, plaintext.encode(), context.encode())
        return Sealed(self.current.key_id, nonce + data)

    def open(self, sealed: Sealed, context: str) -> str:
        key = self.keys.get(sealed.key_id)
        if key is None:
            raise KeyringError(f"a value is sealed with key {sealed.key_id!r}, which {self.where} does not hold "
                               "(add the old key back, before the current one)")
        nonce, data = sealed.blob[:NONCE_BYTES], sealed.blob[NONCE_BYTES:]
        try:
            return AESGCM(key.material).decrypt(nonce, data, context.encode()).decode()
        except (InvalidTag, ValueError):
            raise KeyringError(f"a value sealed with key {sealed.key_id!r} does not open: "
                               "the key or the stored value is not the one it was sealed with") from None


def new_key_entry() -> str:
    """A fresh ``ID:BASE64`` entry; the id says when it was made."""
    key_id = time.strftime("k%Y%m%d", time.gmtime()) + "-" + secrets.token_hex(3)
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


def append_key(path: Path) -> str:
    """Append a new key to ``path`` (created 0600), making it the current key; returns its id."""
    entry = new_key_entry()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError as err:
        raise KeyringError(f"cannot open the secrets key file {path}: {err.strerror}") from err
    try:
        if os.fstat(fd).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyringError(f"the secrets key file {path} is readable by others; chmod 600 it first")
        if os.fstat(fd).st_size and not _ends_with_newline(path):
            os.write(fd, b"\n")
        os.write(fd, entry.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return entry.split(":", 1)[0]


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"
