"""Data keys (DEKs) and their wrapped form: a DEK encrypted under a versioned key-encryption key (KEK).

Wrapped DEK layout (82 bytes)::

    version (1) | suite (1) | KEK version (4, big-endian) | DEK id (16) | nonce (12) | DEK ciphertext+tag (48)

The first 22 bytes are authenticated as associated data, so a wrapped DEK cannot be relabelled with
another DEK id or KEK version.
"""

from __future__ import annotations

import functools
import os
import struct
import uuid
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag

from server.security.crypto.errors import DecryptionError
from server.security.crypto.suites import DEFAULT_SUITE, KEY_BYTES, NONCE_BYTES, TAG_BYTES, Aead, Suite, aead_for

__all__ = ["DataKey", "Kek", "WrappedDek", "unwrap_dek", "wrap_dek"]

WRAP_FORMAT_VERSION = 1
_WRAP_HEADER = struct.Struct(">BBI16s")
_WRAPPED_BYTES = _WRAP_HEADER.size + NONCE_BYTES + KEY_BYTES + TAG_BYTES
_WRAP_AAD_PREFIX = b"strongroom-dek\x00"


class DataKey:
    """A 32-byte data key with its id and suite. The AEAD object is built on first use and then reused.

    Attributes:
        id: The DEK id, written into the header of every value it seals.
        key: The raw key. Never log it; ``repr`` leaves it out.
        suite: The suite this key seals under.
    """

    __slots__ = ("_aead", "id", "key", "suite")

    def __init__(self, dek_id: uuid.UUID, key: bytes, suite: Suite = DEFAULT_SUITE) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a data key is {KEY_BYTES} bytes, got {len(key)}")
        self.id = dek_id
        self.key = bytes(key)
        self.suite = suite
        self._aead: Aead | None = None

    @classmethod
    def generate(cls, suite: Suite = DEFAULT_SUITE) -> DataKey:
        """A fresh random DEK with a random (v4) id, so ids reveal neither time nor order of creation."""
        return cls(uuid.uuid4(), os.urandom(KEY_BYTES), suite)

    @property
    def aead(self) -> Aead:
        """The cached AEAD object for this key."""
        aead = self._aead
        if aead is None:
            aead = self._aead = aead_for(self.suite, self.key)
        return aead

    def __repr__(self) -> str:
        return f"DataKey(id={self.id}, suite={self.suite.label})"


class Kek:
    """One version of a key-encryption key. The raw key stays out of ``repr``."""

    __slots__ = ("aead", "key", "suite", "version")

    def __init__(self, version: int, key: bytes, suite: Suite = DEFAULT_SUITE) -> None:
        if not 1 <= version <= 0xFFFFFFFF:
            raise ValueError(f"KEK versions run from 1 to 2**32-1, got {version}")
        self.version = version
        self.key = bytes(key)
        self.suite = suite
        self.aead = aead_for(suite, self.key)

    def __repr__(self) -> str:
        return f"Kek(version={self.version}, suite={self.suite.label})"


@dataclass(frozen=True, slots=True)
class WrappedDek:
    """A DEK encrypted under one KEK version: safe to store in the database beside the data it protects."""

    dek_id: uuid.UUID
    kek_version: int
    suite: Suite
    ciphertext: bytes = field(repr=False)
    """Nonce followed by the encrypted DEK and its tag."""

    def header(self) -> bytes:
        """The authenticated header bytes (format version, suite, KEK version, DEK id)."""
        return _WRAP_HEADER.pack(WRAP_FORMAT_VERSION, self.suite, self.kek_version, self.dek_id.bytes)

    def to_bytes(self) -> bytes:
        """The stored form (82 bytes)."""
        return self.header() + self.ciphertext

    @classmethod
    def from_bytes(cls, raw: bytes) -> WrappedDek:
        """Parse the stored form.

        Raises:
            DecryptionError: ``raw`` is not a wrapped DEK of a known format version and suite.
        """
        if len(raw) != _WRAPPED_BYTES:
            raise DecryptionError(f"malformed wrapped DEK: {len(raw)} bytes, expected {_WRAPPED_BYTES}")
        version, suite_id, kek_version, dek_id = _WRAP_HEADER.unpack_from(raw)
        if version != WRAP_FORMAT_VERSION:
            raise DecryptionError(f"wrapped DEK has unknown format version {version}")
        try:
            suite = Suite(suite_id)
        except ValueError:
            raise DecryptionError(f"wrapped DEK names unknown cipher suite {suite_id}") from None
        return cls(uuid.UUID(bytes=dek_id), kek_version, suite, raw[_WRAP_HEADER.size :])


def wrapped_dek_id(raw: bytes) -> uuid.UUID:
    """The DEK id a stored wrapped DEK names, from its header only (nothing is unwrapped or authenticated).

    For telling whether a key read from the database is one already held: parsing the whole form costs more.

    Raises:
        DecryptionError: ``raw`` is not a wrapped DEK of a known format version.
    """
    if len(raw) != _WRAPPED_BYTES:
        raise DecryptionError(f"malformed wrapped DEK: {len(raw)} bytes, expected {_WRAPPED_BYTES}")
    return _header_dek_id(raw[: _WRAP_HEADER.size])


@functools.lru_cache(maxsize=4096)
def _header_dek_id(header: bytes) -> uuid.UUID:
    version, _suite, _kek_version, dek_id = _WRAP_HEADER.unpack(header)
    if version != WRAP_FORMAT_VERSION:
        raise DecryptionError(f"wrapped DEK has unknown format version {version}")
    return uuid.UUID(bytes=dek_id)


def wrap_dek(dek: DataKey, kek: Kek) -> WrappedDek:
    """Encrypt ``dek`` under ``kek``; the DEK id and KEK version are bound as associated data.

    Raises:
        ValueError: The DEK and KEK belong to different suites.
    """
    if dek.suite is not kek.suite:
        raise ValueError(f"DEK suite {dek.suite.label} differs from KEK suite {kek.suite.label}")
    header = _WRAP_HEADER.pack(WRAP_FORMAT_VERSION, kek.suite, kek.version, dek.id.bytes)
    nonce = os.urandom(NONCE_BYTES)
    sealed = kek.aead.encrypt(nonce, dek.key, _WRAP_AAD_PREFIX + header)
    return WrappedDek(dek.id, kek.version, kek.suite, nonce + sealed)


def unwrap_dek(wrapped: WrappedDek, kek: Kek) -> DataKey:
    """Decrypt a wrapped DEK with the KEK version it names.

    Raises:
        DecryptionError: Wrong KEK, wrong suite, or the wrapped DEK was altered.
    """
    if wrapped.kek_version != kek.version or wrapped.suite is not kek.suite:
        raise DecryptionError(
            f"DEK {wrapped.dek_id} is wrapped under KEK version {wrapped.kek_version} ({wrapped.suite.label}), "
            f"not version {kek.version} ({kek.suite.label})"
        )
    nonce, sealed = wrapped.ciphertext[:NONCE_BYTES], wrapped.ciphertext[NONCE_BYTES:]
    try:
        key = kek.aead.decrypt(nonce, sealed, _WRAP_AAD_PREFIX + wrapped.header())
    except InvalidTag:
        raise DecryptionError(
            f"DEK {wrapped.dek_id} failed to unwrap under KEK version {kek.version}: wrong KEK or altered"
        ) from None
    return DataKey(wrapped.dek_id, key, wrapped.suite)
