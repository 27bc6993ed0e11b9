"""Encryption at rest for secrets and personal data, and keyed hashes to look such data up."""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


def _derive(key_material: str, purpose: bytes) -> bytes:
    return hmac.new(key_material.encode(), purpose, hashlib.sha256).digest()


class DataCipher:
    """Fernet (AES-128-CBC + HMAC) with key rotation: the first key encrypts, all keys decrypt.

    ``keys`` is a comma-separated list of key materials (newest first); each is stretched into a
    Fernet key and a separate lookup-hash key, so the same material never serves two purposes.
    """

    def __init__(self, keys: str) -> None:
        materials = [k.strip() for k in keys.split(",") if k.strip()]
        if not materials:
            raise ValueError("no encryption key configured")
        self._fernet = MultiFernet(
            [Fernet(base64.urlsafe_b64encode(_derive(m, b"odr-encrypt"))) for m in materials]
        )
        self._hash_key = _derive(materials[-1], b"odr-lookup-hash")

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("cannot decrypt: wrong key or tampered value") from exc

    def encrypt_bytes(self, plaintext: bytes) -> bytes:
        """Encrypt raw bytes (a webhook body that may not even be UTF-8)."""
        return self._fernet.encrypt(plaintext)

    def decrypt_bytes(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken as exc:
            raise ValueError("cannot decrypt: wrong key or tampered value") from exc

    def lookup_hash(self, value: str) -> str:
        """A stable keyed hash (HMAC-SHA256) so an encrypted column can still be searched."""
        return hmac.new(self._hash_key, value.encode(), hashlib.sha256).hexdigest()
