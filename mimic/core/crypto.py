"""AES-256-GCM for tenants' provider keys, with key ids so keys can be rotated.

The first configured key encrypts; any configured key decrypts. The associated data binds a
ciphertext to its row (tenant and provider), so a ciphertext copied to another row fails.
"""

from __future__ import annotations

import base64
import os

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mimic.core.errors import MimicError, NotConfigured
from mimic.core.settings import EncryptionKey


class DecryptionFailed(MimicError):
    """A stored credential could not be decrypted (tampered, or its key is gone)."""


class Sealed(msgspec.Struct, frozen=True):
    key_id: str
    nonce: bytes
    ciphertext: bytes


class Keyring:
    def __init__(self, keys: tuple[EncryptionKey, ...]) -> None:
        self._keys = {k.key_id: AESGCM(base64.b64decode(k.key.get())) for k in keys}
        self._current = keys[0].key_id if keys else None

    @property
    def current_key_id(self) -> str:
        if self._current is None:
            raise NotConfigured("MIMIC_ENCRYPTION_KEYS is not set; provider keys cannot be stored")
        return self._current

    def seal(self, plaintext: bytes, associated: bytes) -> Sealed:
        key_id = self.current_key_id
        nonce = os.urandom(12)
        return Sealed(key_id, nonce, self._keys[key_id].encrypt(nonce, plaintext, associated))

    def open(self, sealed: Sealed, associated: bytes) -> bytes:
        aead = self._keys.get(sealed.key_id)
        if aead is None:
            raise DecryptionFailed(f"encryption key {sealed.key_id!r} is not configured")
        try:
            return aead.decrypt(sealed.nonce, sealed.ciphertext, associated)
        except InvalidTag:
            raise DecryptionFailed() from None
