"""Encryption of Jira credentials at rest.

Tokens are sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the bot's master key,
so the same master key can also serve other purposes (signing interactive contexts) without
reusing key material. Every ciphertext names the key that sealed it (`v1.<key id>.<data>`):
after a rotation the previous keys still open old rows while new rows use the current key.

An optional `context` (e.g. Mattermost user and Jira instance) is bound as associated data, so a
sealed credential copied into another row does not open there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bot.config import Settings

KEY_BYTES = 32
KEY_FILE_NAME = "encryption-key"
_FORMAT = "v1"
_NONCE_BYTES = 12
_TOKEN_PURPOSE = "jira-chatops/token-encryption/v1"


class InvalidKeyError(ValueError):
    """The configured key cannot be used (wrong encoding or length)."""


class DecryptionError(ValueError):
    """A sealed value is malformed, was altered, or was sealed with a key that is not configured."""


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def parse_key(text: str) -> bytes:
    """A master key from its urlsafe-base64 text (32 bytes once decoded)."""
    try:
        key = _b64decode(text.strip())
    except (binascii.Error, ValueError, UnicodeError):
        raise InvalidKeyError("the encryption key must be urlsafe-base64 text") from None
    if len(key) != KEY_BYTES:
        raise InvalidKeyError(f"the encryption key must decode to {KEY_BYTES} bytes, got {len(key)}")
    return key


def generate_key_text() -> str:
    """A new random master key, as the text BOT_ENCRYPTION_KEY expects."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def derive_key(master_key: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose; different purposes give unrelated keys."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose.encode()).derive(
        master_key
    )


def load_or_create_key(settings: Settings) -> bytes:
    """The master key: security.encryption_key (BOT_ENCRYPTION_KEY) when set, else the one kept in
    <data_dir>/encryption-key, generated (mode 0600) on the first start.

    Raises InvalidKeyError for a key that does not decode to 32 bytes.
    """
    configured = settings.security.encryption_key
    if configured is not None and configured.get_secret_value().strip():
        return parse_key(configured.get_secret_value())
    path = Path(settings.data_dir) / KEY_FILE_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: use theirs
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(generate_key_text() + "\n")
    return parse_key(path.read_text(encoding="utf-8"))


class TokenCipher:
    """Seals JSON objects into text and opens them again.

    `current_key` seals; `current_key` and every key of `old_keys` open. Keys are master keys
    (32 bytes), as `load_or_create_key` returns.
    """

    def __init__(self, current_key: bytes, old_keys: Sequence[bytes] = ()) -> None:
        for key in (current_key, *old_keys):
            if len(key) != KEY_BYTES:
                raise InvalidKeyError(f"an encryption key must be {KEY_BYTES} bytes, got {len(key)}")
        self._current_id, current = self._entry(current_key)
        self._aead: dict[str, AESGCM] = {self._current_id: current}
        for key in old_keys:
            key_id, aead = self._entry(key)
            self._aead.setdefault(key_id, aead)

    @staticmethod
    def _entry(master_key: bytes) -> tuple[str, AESGCM]:
        derived = derive_key(master_key, _TOKEN_PURPOSE)
        # A short fingerprint of the derived key: enough to pick the key, says nothing about it.
        key_id = hashlib.sha256(b"key-id:" + derived).hexdigest()[:8]
        return key_id, AESGCM(derived)

    @property
    def key_id(self) -> str:
        """The id of the key that seals new values."""
        return self._current_id

    def key_id_of(self, sealed: str) -> str | None:
        """The id of the key that sealed `sealed` (None when it is not a sealed value)."""
        parts = sealed.split(".")
        return parts[1] if len(parts) == 3 and parts[0] == _FORMAT else None

    def is_current(self, sealed: str) -> bool:
        """Whether `sealed` uses the current key (False: worth sealing again after a rotation)."""
        return self.key_id_of(sealed) == self._current_id

    def _aad(self, key_id: str, context: str) -> bytes:
        return f"{_FORMAT}.{key_id}.{context}".encode()

    def encrypt(self, data: Mapping[str, Any], *, context: str = "") -> str:
        plaintext = json.dumps(dict(data), separators=(",", ":"), sort_keys=True).encode()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead[self._current_id].encrypt(nonce, plaintext, self._aad(self._current_id, context))
        return f"{_FORMAT}.{self._current_id}.{_b64encode(nonce + sealed)}"

    def decrypt(self, sealed: str, *, context: str = "") -> dict[str, Any]:
        key_id = self.key_id_of(sealed)
        if key_id is None:
            raise DecryptionError("not a sealed value")
        aead = self._aead.get(key_id)
        if aead is None:
            raise DecryptionError(f"sealed with key {key_id}, which is not configured")
        try:
            raw = _b64decode(sealed.split(".")[2])
        except (binascii.Error, ValueError, UnicodeError):
            raise DecryptionError("sealed value is not valid base64") from None
        if len(raw) <= _NONCE_BYTES:
            raise DecryptionError("sealed value is too short")
        try:
            plaintext = aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], self._aad(key_id, context))
        except InvalidTag:
            raise DecryptionError("sealed value was altered or belongs elsewhere") from None
        value = json.loads(plaintext)
        if not isinstance(value, dict):
            raise DecryptionError("sealed value is not an object")
        return value
