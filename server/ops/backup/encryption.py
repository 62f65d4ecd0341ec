"""The encrypted backup file: a streaming, chunked AEAD (AES-256-GCM) under a key derived from the backup key.

Layout::

    header  = b"SRBK" | version (1 byte) | chunk size (4 bytes, big-endian) | file id (16 random bytes)
              | nonce prefix (7 random bytes) | backup key id (8 bytes)                          (40 bytes)
    chunk i = AES-256-GCM(file key, nonce_i, plaintext_i, aad_i)   (plaintext chunk size bytes + 16-byte tag;
                                                                     only the last chunk may be shorter)

    file key = HKDF-SHA256(backup key, salt = file id, info = "strongroom-backup-file-v1")
    nonce_i  = nonce prefix | i (4 bytes, big-endian) | final flag (1 byte)
    aad_i    = header | i (8 bytes, big-endian) | final flag (1 byte)

This is the STREAM construction (as in Tink's AES-GCM-HKDF streaming AEAD): every file has its own key, so
the counter nonces never repeat under one key; the header (and with it the file id) is bound into every
chunk; the index makes reordering or dropping chunks fail; the final flag makes truncation at a chunk
boundary fail (the last chunk left was sealed as "not final") and so does anything appended after the real
last chunk (it was sealed as "final"). A flipped bit anywhere fails the tag of its chunk or of every chunk.
Decryption never releases a chunk that did not authenticate; a consumer that must not see any of a bad file
checks the manifest's SHA-256 of the whole file first (verify and restore do).
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from server.ops.backup.errors import BackupInvalid

__all__ = [
    "CHUNK_BYTES",
    "HEADER_BYTES",
    "BackupKeys",
    "EncryptedFile",
    "PlaintextSink",
    "PlaintextSource",
    "decrypt_stream",
    "encrypt_stream",
]

MAGIC: Final = b"SRBK"
FORMAT_VERSION: Final = 1
CHUNK_BYTES: Final = 1 << 20
TAG_BYTES: Final = 16
KEY_BYTES: Final = 32
FILE_ID_BYTES: Final = 16
NONCE_PREFIX_BYTES: Final = 7
KEY_ID_BYTES: Final = 8
_HEADER: Final = struct.Struct(f">4sBI{FILE_ID_BYTES}s{NONCE_PREFIX_BYTES}s{KEY_ID_BYTES}s")
HEADER_BYTES: Final = _HEADER.size
# Bounds on the chunk size a header may claim, so an edited header cannot make a reader allocate gigabytes.
_MIN_CHUNK, _MAX_CHUNK = 4096, 64 << 20
_MAX_CHUNKS: Final = 1 << 32

Progress = Callable[[int], None]


class PlaintextSource(Protocol):
    """What ``encrypt_stream`` reads: a file, a pipe, or a reader that hashes what passes through it."""

    def read(self, size: int, /) -> bytes:
        """Up to ``size`` bytes; empty at the end."""
        ...


class PlaintextSink(Protocol):
    """What ``decrypt_stream`` writes to: a file, a pipe, or a writer that only hashes."""

    def write(self, data: bytes, /) -> object:
        """Take all of ``data``."""
        ...

    def flush(self) -> None:
        """Pass on what is buffered."""
        ...


def _hkdf(key: bytes, *, info: bytes, salt: bytes | None = None, length: int = KEY_BYTES) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(key)


class BackupKeys:
    """Keys derived from the keyring's backup key; the backup key itself is never written anywhere.

    Args:
        backup_key: ``Keyring.backup_key`` (32 bytes).
    """

    def __init__(self, backup_key: bytes) -> None:
        if len(backup_key) != KEY_BYTES:
            raise ValueError(f"the backup key is {KEY_BYTES} bytes, got {len(backup_key)}")
        self._key = bytes(backup_key)
        self._key_id = _hkdf(self._key, info=b"strongroom-backup-key-id-v1", length=KEY_ID_BYTES)
        self._manifest_key = _hkdf(self._key, info=b"strongroom-backup-manifest-v1")

    def __repr__(self) -> str:
        return f"BackupKeys(key_id={self.key_id})"

    @property
    def key_id_bytes(self) -> bytes:
        """A fingerprint of the backup key (one-way; names the key without revealing it)."""
        return self._key_id

    @property
    def key_id(self) -> str:
        """The fingerprint as hex, as manifests and messages show it."""
        return self._key_id.hex()

    @property
    def manifest_key(self) -> bytes:
        """The HMAC key that authenticates manifests."""
        return self._manifest_key

    def file_key(self, file_id: bytes) -> bytes:
        """The AES-256-GCM key of one backup file."""
        return _hkdf(self._key, salt=file_id, info=b"strongroom-backup-file-v1")


@dataclass(frozen=True, slots=True)
class EncryptedFile:
    """What ``encrypt_stream`` wrote: the file id, its size and SHA-256, and the plaintext size."""

    file_id: bytes
    size: int
    sha256: str
    plaintext_bytes: int


def _read_full(source: PlaintextSource, size: int) -> bytes:
    """Read ``size`` bytes, fewer only at the end of the stream (pipes return short reads)."""
    parts: list[bytes] = []
    wanted = size
    while wanted:
        part = source.read(wanted)
        if not part:
            break
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)


def _chunk_nonce(prefix: bytes, index: int, final: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if final else 0)


def _chunk_aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if final else 0)


def encrypt_stream(
    source: PlaintextSource,
    target: IO[bytes],
    keys: BackupKeys,
    *,
    chunk_bytes: int = CHUNK_BYTES,
    file_id: bytes | None = None,
    progress: Progress | None = None,
) -> EncryptedFile:
    """Encrypt everything ``source`` yields into ``target`` (header, then chunks), hashing what is written.

    Args:
        source: The plaintext (a file or a pipe).
        target: Where the encrypted file goes.
        keys: From the backup key.
        chunk_bytes: Plaintext bytes per chunk.
        file_id: 16 bytes; random by default (tests pass one).
        progress: Called with the plaintext bytes done so far after each chunk.
    """
    if not _MIN_CHUNK <= chunk_bytes <= _MAX_CHUNK:
        raise ValueError(f"chunk size must be between {_MIN_CHUNK} and {_MAX_CHUNK} bytes")
    file_id = file_id if file_id is not None else os.urandom(FILE_ID_BYTES)
    if len(file_id) != FILE_ID_BYTES:
        raise ValueError(f"a file id is {FILE_ID_BYTES} bytes")
    prefix = os.urandom(NONCE_PREFIX_BYTES)
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, chunk_bytes, file_id, prefix, keys.key_id_bytes)
    aead = AESGCM(keys.file_key(file_id))
    digest = hashlib.sha256()
    written = 0

    def write(data: bytes) -> None:
        nonlocal written
        target.write(data)
        digest.update(data)
        written += len(data)

    write(header)
    done = index = 0
    current = _read_full(source, chunk_bytes)
    while True:
        following = _read_full(source, chunk_bytes) if len(current) == chunk_bytes else b""
        final = not following
        if index >= _MAX_CHUNKS:
            raise ValueError("backup too large for the chunk counter")
        write(aead.encrypt(_chunk_nonce(prefix, index, final), current, _chunk_aad(header, index, final)))
        done += len(current)
        if progress is not None:
            progress(done)
        if final:
            break
        current, index = following, index + 1
    target.flush()
    return EncryptedFile(file_id=file_id, size=written, sha256=digest.hexdigest(), plaintext_bytes=done)


def read_header(source: IO[bytes]) -> tuple[bytes, int, bytes, bytes, bytes]:
    """Read and check the header: (header bytes, chunk size, file id, nonce prefix, key id).

    Raises:
        BackupInvalid: Not a Strongroom backup, an unknown version, or an impossible chunk size.
    """
    header = _read_full(source, HEADER_BYTES)
    if len(header) < HEADER_BYTES or header[:4] != MAGIC:
        raise BackupInvalid("not a Strongroom backup file (no SRBK header)")
    _magic, version, chunk_bytes, file_id, prefix, key_id = _HEADER.unpack(header)
    if version != FORMAT_VERSION:
        raise BackupInvalid(f"unknown backup format version {version}")
    if not _MIN_CHUNK <= chunk_bytes <= _MAX_CHUNK:
        raise BackupInvalid(f"the header claims an impossible chunk size ({chunk_bytes} bytes): altered")
    return header, chunk_bytes, file_id, prefix, key_id


def decrypt_stream(source: IO[bytes], target: PlaintextSink, keys: BackupKeys, *,
                   progress: Progress | None = None) -> int:
    """Decrypt a backup file into ``target``, authenticating every chunk before writing it.

    Args:
        source: The encrypted file, from its first byte.
        target: Receives the plaintext (a file, or a pipe to ``pg_restore``).
        keys: From the backup key the file was made with.
        progress: Called with the encrypted bytes read so far after each chunk.

    Returns:
        The plaintext bytes written.

    Raises:
        BackupInvalid: The header or a chunk is altered, chunks are missing, reordered or appended, or the file
            was made with another backup key.
    """
    header, chunk_bytes, file_id, prefix, key_id = read_header(source)
    if key_id != keys.key_id_bytes:
        raise BackupInvalid(f"the file was encrypted with backup key {key_id.hex()}, not this keyring's "
                            f"{keys.key_id}")
    aead = AESGCM(keys.file_key(file_id))
    sealed_bytes = chunk_bytes + TAG_BYTES
    read = HEADER_BYTES
    done = index = 0
    current = _read_full(source, sealed_bytes)
    while True:
        if len(current) < TAG_BYTES:
            raise BackupInvalid(f"the file ends inside chunk {index}: truncated")
        following = _read_full(source, sealed_bytes) if len(current) == sealed_bytes else b""
        final = not following
        try:
            plaintext = aead.decrypt(_chunk_nonce(prefix, index, final), current, _chunk_aad(header, index, final))
        except InvalidTag:
            raise BackupInvalid(
                f"chunk {index} does not authenticate: the file was altered, truncated, extended or reordered"
            ) from None
        target.write(plaintext)
        done += len(plaintext)
        read += len(current)
        if progress is not None:
            progress(read)
        if final:
            break
        current, index = following, index + 1
    target.flush()
    return done
