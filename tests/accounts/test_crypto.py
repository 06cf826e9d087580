"""Token sealing: round trip, key rotation, tampering, and where the key comes from."""

from __future__ import annotations

import base64
import os
import stat

import pytest

from bot.accounts.crypto import (
    KEY_FILE_NAME,
    DecryptionError,
    InvalidKeyError,
    TokenCipher,
    derive_key,
    generate_key_text,
    load_or_create_key,
    parse_key,
)
from bot.config import Settings

SECRET = {"access_token": "at-7f3a9c", "refresh_token": "rt-51be02", "n": 3}


def test_round_trip_hides_the_plaintext() -> None:
    cipher = TokenCipher(os.urandom(32))
    sealed = cipher.encrypt(SECRET)
    assert "at-7f3a9c" not in sealed and "rt-51be02" not in sealed
    assert sealed.startswith(f"v1.{cipher.key_id}.")
    assert cipher.decrypt(sealed) == SECRET
    # A fresh nonce every time: the same value never seals to the same text.
    assert cipher.encrypt(SECRET) != sealed


def test_rotation_old_key_still_opens_and_new_values_use_the_new_key() -> None:
    old_key, new_key = os.urandom(32), os.urandom(32)
    before = TokenCipher(old_key)
    sealed_before = before.encrypt(SECRET)

    after = TokenCipher(new_key, old_keys=[old_key])
    assert after.decrypt(sealed_before) == SECRET
    assert not after.is_current(sealed_before)
    sealed_after = after.encrypt(SECRET)
    assert after.is_current(sealed_after)
    assert after.key_id_of(sealed_after) == after.key_id != before.key_id
    # Once the old key is dropped, its values no longer open.
    with pytest.raises(DecryptionError, match="not configured"):
        TokenCipher(new_key).decrypt(sealed_before)


def test_tampering_is_detected() -> None:
    cipher = TokenCipher(os.urandom(32))
    sealed = cipher.encrypt(SECRET)
    prefix, key_id, data = sealed.split(".")
    raw = bytearray(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    raw[-1] ^= 0x01
    altered = f"{prefix}.{key_id}.{base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=')}"
    with pytest.raises(DecryptionError, match="altered"):
        cipher.decrypt(altered)
    for broken in ("", "plain-token", "v1.zz", f"v1.{key_id}.!!!", f"v1.{key_id}.AAAA"):
        with pytest.raises(DecryptionError):
            cipher.decrypt(broken)


def test_context_binds_a_value_to_its_place() -> None:
    cipher = TokenCipher(os.urandom(32))
    sealed = cipher.encrypt(SECRET, context="alice|acme")
    assert cipher.decrypt(sealed, context="alice|acme") == SECRET
    with pytest.raises(DecryptionError):
        cipher.decrypt(sealed, context="mallory|acme")


def test_purposes_derive_unrelated_keys() -> None:
    master = os.urandom(32)
    assert derive_key(master, "a") != derive_key(master, "b")
    assert derive_key(master, "a") == derive_key(master, "a")


def test_key_from_the_environment_wins(tmp_path) -> None:
    text = generate_key_text()
    settings = Settings.model_validate({"data_dir": str(tmp_path), "security": {"encryption_key": text}})
    assert load_or_create_key(settings) == parse_key(text)
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_key_is_generated_once_into_the_data_dir(tmp_path) -> None:
    settings = Settings.model_validate({"data_dir": str(tmp_path / "data")})
    first = load_or_create_key(settings)
    path = tmp_path / "data" / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 32
    assert load_or_create_key(settings) == first


@pytest.mark.parametrize("text", ["not base64 !!", base64.urlsafe_b64encode(b"short").decode()])
def test_a_bad_key_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(InvalidKeyError, match="encryption key"):
        parse_key(text)
    with pytest.raises(InvalidKeyError):
        TokenCipher(b"\x00" * 16)
