"""Cipher suites: which AEAD seals values and wraps keys, and which HMAC builds blind indexes.

A deployment picks one suite when its keyring is created; every sealed value and wrapped key records
the suite id in its header, so the format can carry more than one.

* Suite 1, ``aes-256-gcm+hmac-sha256`` (default): AES-256-GCM, HMAC-SHA256, HKDF-SHA256.
* Suite 2, ``sm4-gcm+hmac-sm3``: SM4-GCM, HMAC-SM3, HKDF-SM3 (GB/T 39786 commercial cryptography).
  SM4 has 128-bit keys; the 16-byte SM4 key is derived from the 32-byte DEK or KEK with HKDF-SM3,
  so every key in the system stays 32 bytes whatever the suite.

Both are AEADs with 96-bit random nonces and 128-bit tags, from OpenSSL through ``cryptography``.
"""

from __future__ import annotations

import enum
import functools
from typing import Protocol

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "DEFAULT_SUITE",
    "KEY_BYTES",
    "NONCE_BYTES",
    "TAG_BYTES",
    "Aead",
    "Suite",
    "aead_for",
    "check_suite_available",
    "derive_key",
    "hash_for",
]

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_SM4_KEY_BYTES = 16


class Suite(enum.IntEnum):
    """A cipher suite; the value is the id written into every header."""

    AES256GCM_HMAC_SHA256 = 1
    SM4GCM_HMAC_SM3 = 2

    @property
    def label(self) -> str:
        """The name used in the keyring file and in configuration."""
        return _LABELS[self]

    @classmethod
    def from_label(cls, label: str) -> Suite:
        """The suite named ``label`` (``aes-256-gcm+hmac-sha256`` or ``sm4-gcm+hmac-sm3``).

        Raises:
            ValueError: ``label`` names no suite.
        """
        for suite, name in _LABELS.items():
            if name == label:
                return suite
        raise ValueError(f"unknown cipher suite {label!r}; expected one of {', '.join(_LABELS.values())}")


_LABELS = {
    Suite.AES256GCM_HMAC_SHA256: "aes-256-gcm+hmac-sha256",
    Suite.SM4GCM_HMAC_SM3: "sm4-gcm+hmac-sm3",
}

DEFAULT_SUITE = Suite.AES256GCM_HMAC_SHA256


class Aead(Protocol):
    """The AEAD interface of ``cryptography``'s ``AESGCM``: ciphertext is returned with the tag appended."""

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        """Encrypt and authenticate ``data``; authenticate ``associated_data``."""
        ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        """Verify and decrypt; raises ``cryptography.exceptions.InvalidTag`` on any mismatch."""
        ...


class _Sm4Gcm:
    """SM4-GCM with the ``AESGCM`` calling convention (OpenSSL has no one-shot SM4-GCM AEAD object).

    This is an adapter over ``Cipher(SM4, GCM)``, not a new mode: OpenSSL computes GCM and checks the tag.
    """

    __slots__ = ("_algorithm",)

    def __init__(self, key: bytes) -> None:
        self._algorithm = algorithms.SM4(key)

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        encryptor = Cipher(self._algorithm, modes.GCM(nonce)).encryptor()
        if associated_data:
            encryptor.authenticate_additional_data(associated_data)
        body = encryptor.update(data) + encryptor.finalize()
        return body + encryptor.tag

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        if len(data) < TAG_BYTES:
            raise InvalidTag
        decryptor = Cipher(self._algorithm, modes.GCM(nonce, data[-TAG_BYTES:])).decryptor()
        if associated_data:
            decryptor.authenticate_additional_data(associated_data)
        # update() releases unverified plaintext; it is returned only after finalize() has checked the tag.
        body = decryptor.update(data[:-TAG_BYTES])
        return body + decryptor.finalize()


def hash_for(suite: Suite) -> hashes.HashAlgorithm:
    """The hash of ``suite``: SHA-256 or SM3 (both 32-byte digests)."""
    return hashes.SM3() if suite is Suite.SM4GCM_HMAC_SM3 else hashes.SHA256()


def derive_key(suite: Suite, key: bytes, *, info: bytes, length: int = KEY_BYTES) -> bytes:
    """Derive a sub-key from ``key`` with HKDF over the suite's hash (no salt: ``key`` is uniformly random).

    Args:
        suite: Chooses HKDF-SHA256 or HKDF-SM3.
        key: Input key material, a uniformly random secret.
        info: Context that separates this sub-key from every other one derived from ``key``.
        length: Bytes of output.

    Returns:
        The derived key.
    """
    return HKDF(algorithm=hash_for(suite), length=length, salt=None, info=info).derive(key)


@functools.cache
def check_suite_available(suite: Suite) -> None:
    """Fail early, with a clear message, when this host's OpenSSL lacks the suite's algorithms.

    SM4 and SM3 ship in the OpenSSL bundled with ``cryptography`` wheels, but a build against a system
    OpenSSL (FIPS builds in particular) may leave them out; that should stop the server at start, not
    fail the first request.

    Raises:
        UnsupportedAlgorithm: The suite cannot run here.
    """
    key = bytes(KEY_BYTES)
    nonce = bytes(NONCE_BYTES)
    try:
        aead = aead_for(suite, key)
        if aead.decrypt(nonce, aead.encrypt(nonce, b"probe", b"aad"), b"aad") != b"probe":
            raise UnsupportedAlgorithm(f"cipher suite {suite.label} failed its self-test")
        derive_key(suite, key, info=b"probe")
    except UnsupportedAlgorithm as error:
        raise UnsupportedAlgorithm(
            f"cipher suite {suite.label} is not available with this cryptography/OpenSSL build: {error}"
        ) from None


def aead_for(suite: Suite, key: bytes) -> Aead:
    """An AEAD object for a 32-byte key under ``suite``; build once per key and reuse (it is the costly part).

    Raises:
        ValueError: ``key`` is not 32 bytes.
    """
    if len(key) != KEY_BYTES:
        raise ValueError(f"keys are {KEY_BYTES} bytes, got {len(key)}")
    if suite is Suite.SM4GCM_HMAC_SM3:
        return _Sm4Gcm(derive_key(suite, key, info=b"strongroom-sm4-gcm-key", length=_SM4_KEY_BYTES))
    return AESGCM(key)
