from __future__ import annotations

import base64

import pytest

from mimic.core.crypto import DecryptionFailed, Keyring
from mimic.core.errors import NotConfigured
from mimic.core.settings import EncryptionKey, Secret


def key(key_id: str, fill: bytes) -> EncryptionKey:
    return EncryptionKey(key_id=key_id, key=Secret(base64.b64encode(fill * 32).decode()))


K1, K2 = key("k1", b"\x01"), key("k2", b"\x02")


def test_round_trip_with_the_current_key() -> None:
    ring = Keyring((K1,))
    sealed = ring.seal(b"secret", b"t:resend")
    assert sealed.key_id == "k1"
    assert b"secret" not in sealed.ciphertext
    assert ring.open(sealed, b"t:resend") == b"secret"


def test_nonces_are_fresh() -> None:
    ring = Keyring((K1,))
    assert ring.seal(b"x", b"a").nonce != ring.seal(b"x", b"a").nonce


def test_tampered_ciphertext_or_other_row_is_refused() -> None:
    ring = Keyring((K1,))
    sealed = ring.seal(b"secret", b"acme:resend")
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(DecryptionFailed):
        ring.open(type(sealed)(sealed.key_id, sealed.nonce, flipped), b"acme:resend")
    with pytest.raises(DecryptionFailed):
        ring.open(sealed, b"globex:resend")


def test_rotation_old_keys_still_open_new_key_seals() -> None:
    old = Keyring((K1,)).seal(b"secret", b"a")
    rotated = Keyring((K2, K1))
    assert rotated.open(old, b"a") == b"secret"
    assert rotated.seal(b"secret", b"a").key_id == "k2"
    with pytest.raises(DecryptionFailed, match="'k1' is not configured"):
        Keyring((K2,)).open(old, b"a")


def test_no_keys_means_not_configured() -> None:
    with pytest.raises(NotConfigured):
        Keyring(()).seal(b"x", b"a")
