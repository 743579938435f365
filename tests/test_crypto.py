"""Tests of SecretBox (Fernet with a passphrase or a key file) and email masking."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bot.crypto import SecretBox, SecretUnreadable, mask_email


def test_round_trip_with_passphrase() -> None:
    box = SecretBox.from_settings("correct horse battery staple", Path("/nonexistent/key"))
    token = box.encrypt("hunter2 密码")
    assert b"hunter2" not in token
    assert box.decrypt(token) == "hunter2 密码"
    assert box.encrypt("same") != box.encrypt("same")  # fresh IV each time


def test_same_passphrase_derives_same_key() -> None:
    token = SecretBox.from_passphrase("any passphrase at all").encrypt("secret")
    assert SecretBox.from_passphrase("any passphrase at all").decrypt(token) == "secret"


def test_empty_passphrase_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        SecretBox.from_passphrase("")


def test_key_file_created_0600_with_parent_dirs(tmp_path: Path) -> None:
    key_file = tmp_path / "a" / "b" / "secret.key"
    box = SecretBox.from_settings(None, key_file)
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in key_file.parent.iterdir()] == ["secret.key"]  # no temp left
    key = key_file.read_bytes()
    Fernet(key.strip())  # a valid Fernet key
    token = box.encrypt("pw")
    assert SecretBox.from_key_file(key_file).decrypt(token) == "pw"  # reused, not replaced
    assert key_file.read_bytes() == key


def test_existing_key_file_is_used(tmp_path: Path) -> None:
    key = Fernet.generate_key()
    key_file = tmp_path / "secret.key"
    key_file.write_bytes(key + b"\n")
    key_file.chmod(0o600)
    token = SecretBox.from_settings(None, key_file).encrypt("pw")
    assert Fernet(key).decrypt(token) == b"pw"
    assert key_file.read_bytes() == key + b"\n"


def test_readable_key_file_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_bytes(Fernet.generate_key())
    key_file.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="bot.crypto"):
        SecretBox.from_key_file(key_file)
    assert "chmod 600" in caplog.text


def test_invalid_key_file_is_refused_without_showing_it(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text("not-a-key-but-maybe-private")
    key_file.chmod(0o600)
    with pytest.raises(ValueError, match="valid Fernet key") as info:
        SecretBox.from_key_file(key_file)
    assert "not-a-key" not in str(info.value)


def test_passphrase_wins_over_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    token = SecretBox.from_settings("pass", key_file).encrypt("x")
    assert not key_file.exists()
    assert SecretBox.from_passphrase("pass").decrypt(token) == "x"


def test_wrong_key_raises_secret_unreadable(tmp_path: Path) -> None:
    token = SecretBox.from_passphrase("old key").encrypt("hunter2")
    other = SecretBox.from_key_file(tmp_path / "secret.key")
    for box in (SecretBox.from_passphrase("new key"), other):
        with pytest.raises(SecretUnreadable) as info:
            box.decrypt(token)
        message = str(info.value)
        assert "key changed or was lost" in message
        assert "set again" in message
        assert token.decode() not in message and "hunter2" not in message
        assert info.value.__cause__ is None and info.value.__suppress_context__


def test_garbage_ciphertext_raises_secret_unreadable() -> None:
    with pytest.raises(SecretUnreadable):
        SecretBox.from_passphrase("k").decrypt(b"not a fernet token")


def test_repr_hides_key() -> None:
    box = SecretBox.from_passphrase("k")
    assert repr(box) == "SecretBox(<key hidden>)"


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("dave@miaohua.local", "d***@miaohua.local"),
        ("  a@b.c ", "a***@b.c"),
        ("first.last+tag@example.com", "f***@example.com"),
        ("odd@name@host.io", "o***@host.io"),
        ("@host.io", "***@host.io"),
        ("nodomain", "n***"),
        ("", "***"),
    ],
)
def test_mask_email(email: str, masked: str) -> None:
    assert mask_email(email) == masked
