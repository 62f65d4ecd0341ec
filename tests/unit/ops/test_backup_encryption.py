"""The encrypted backup format: round trips, and every kind of damage is detected before its plaintext is released."""

from __future__ import annotations

import io
import os

import pytest

from server.ops.backup.encryption import (
    HEADER_BYTES,
    TAG_BYTES,
    BackupKeys,
    decrypt_stream,
    encrypt_stream,
)
from server.ops.backup.errors import BackupInvalid

CHUNK = 4096  # the smallest allowed, so that a few KiB make several chunks
SEALED = CHUNK + TAG_BYTES


@pytest.fixture(name="fx_keys")
def fx_keys() -> BackupKeys:
    return BackupKeys(os.urandom(32))


def _encrypt(data: bytes, keys: BackupKeys, *, file_id: bytes | None = None) -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data), out, keys, chunk_bytes=CHUNK, file_id=file_id)
    return out.getvalue()


def _decrypt(blob: bytes, keys: BackupKeys) -> bytes:
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(blob), out, keys)
    return out.getvalue()


class _Trickle(io.RawIOBase):
    """A pipe-like source that returns at most 1000 bytes per read (pg_dump's stdout does short reads)."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        size = min(len(buffer), 1000, len(self._data))
        buffer[:size] = self._data[:size]
        self._data = self._data[size:]
        return size


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17])
def test_round_trip_at_chunk_boundaries(fx_keys: BackupKeys, size: int) -> None:
    data = os.urandom(size)
    blob = _encrypt(data, fx_keys)
    chunks = max(1, -(-size // CHUNK))
    assert len(blob) == HEADER_BYTES + size + chunks * TAG_BYTES
    assert _decrypt(blob, fx_keys) == data


def test_short_reads_from_a_pipe_give_the_same_chunks(fx_keys: BackupKeys) -> None:
    data = os.urandom(3 * CHUNK + 5)
    out = io.BytesIO()
    result = encrypt_stream(io.BufferedReader(_Trickle(data)), out, fx_keys, chunk_bytes=CHUNK)
    assert result.plaintext_bytes == len(data)
    assert result.size == len(out.getvalue())
    assert _decrypt(out.getvalue(), fx_keys) == data


def test_the_same_plaintext_encrypts_differently_each_time(fx_keys: BackupKeys) -> None:
    data = b"x" * 100
    assert _encrypt(data, fx_keys) != _encrypt(data, fx_keys)


def test_sha256_and_size_describe_the_written_file(fx_keys: BackupKeys) -> None:
    import hashlib

    out = io.BytesIO()
    result = encrypt_stream(io.BytesIO(b"abc" * 5000), out, fx_keys, chunk_bytes=CHUNK)
    assert result.sha256 == hashlib.sha256(out.getvalue()).hexdigest()
    assert result.size == len(out.getvalue())


@pytest.mark.parametrize("offset", [0, 5, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + CHUNK,
                                    HEADER_BYTES + SEALED - 1, HEADER_BYTES + SEALED + 3, -1])
def test_a_flipped_bit_anywhere_is_detected(fx_keys: BackupKeys, offset: int) -> None:
    blob = bytearray(_encrypt(os.urandom(2 * CHUNK + 100), fx_keys))
    blob[offset] ^= 0x01
    with pytest.raises(BackupInvalid):
        _decrypt(bytes(blob), fx_keys)


@pytest.mark.parametrize("cut", [SEALED, 2 * SEALED, SEALED + 10, 1, 0])
def test_truncation_is_detected_also_at_a_chunk_boundary(fx_keys: BackupKeys, cut: int) -> None:
    blob = _encrypt(os.urandom(3 * CHUNK), fx_keys)  # three full chunks: the last one is full-size and final
    truncated = blob[: HEADER_BYTES + cut]
    with pytest.raises(BackupInvalid):
        _decrypt(truncated, fx_keys)


def test_a_truncated_header_is_not_a_backup(fx_keys: BackupKeys) -> None:
    with pytest.raises(BackupInvalid, match="not a Strongroom backup"):
        _decrypt(_encrypt(b"data", fx_keys)[:10], fx_keys)


def test_appended_data_is_detected(fx_keys: BackupKeys) -> None:
    blob = _encrypt(os.urandom(2 * CHUNK), fx_keys)
    for tail in (b"\x00", os.urandom(SEALED)):
        with pytest.raises(BackupInvalid):
            _decrypt(blob + tail, fx_keys)


def test_reordered_chunks_are_detected(fx_keys: BackupKeys) -> None:
    blob = _encrypt(os.urandom(3 * CHUNK + 10), fx_keys)
    header, body = blob[:HEADER_BYTES], blob[HEADER_BYTES:]
    chunks = [body[i : i + SEALED] for i in range(0, len(body), SEALED)]
    swapped = header + chunks[1] + chunks[0] + b"".join(chunks[2:])
    with pytest.raises(BackupInvalid, match="chunk 0"):
        _decrypt(swapped, fx_keys)
    dropped = header + chunks[0] + b"".join(chunks[2:])
    with pytest.raises(BackupInvalid, match="chunk 1"):
        _decrypt(dropped, fx_keys)


def test_a_chunk_of_another_file_does_not_authenticate(fx_keys: BackupKeys) -> None:
    first = _encrypt(os.urandom(2 * CHUNK), fx_keys)
    second = _encrypt(os.urandom(2 * CHUNK), fx_keys)
    spliced = first[: HEADER_BYTES + SEALED] + second[HEADER_BYTES + SEALED :]
    with pytest.raises(BackupInvalid, match="chunk 1"):
        _decrypt(spliced, fx_keys)
    # Even with the same file id (so the same file key), the nonce prefix and header bind each chunk to its file.
    file_id = os.urandom(16)
    a, b = _encrypt(os.urandom(2 * CHUNK), fx_keys, file_id=file_id), _encrypt(os.urandom(2 * CHUNK), fx_keys,
                                                                               file_id=file_id)
    with pytest.raises(BackupInvalid):
        _decrypt(a[: HEADER_BYTES + SEALED] + b[HEADER_BYTES + SEALED :], fx_keys)


def test_another_backup_key_is_named_not_tried(fx_keys: BackupKeys) -> None:
    other = BackupKeys(os.urandom(32))
    with pytest.raises(BackupInvalid, match=f"backup key {fx_keys.key_id}"):
        _decrypt(_encrypt(b"secret rows", fx_keys), other)


def test_an_impossible_chunk_size_in_the_header_is_refused_before_reading(fx_keys: BackupKeys) -> None:
    blob = bytearray(_encrypt(b"data", fx_keys))
    blob[5:9] = (1 << 31).to_bytes(4, "big")
    with pytest.raises(BackupInvalid, match="impossible chunk size"):
        _decrypt(bytes(blob), fx_keys)


def test_nothing_of_a_bad_chunk_is_released(fx_keys: BackupKeys) -> None:
    data = os.urandom(3 * CHUNK)
    blob = bytearray(_encrypt(data, fx_keys))
    blob[HEADER_BYTES + SEALED + 100] ^= 0xFF  # chunk 1
    out = io.BytesIO()
    with pytest.raises(BackupInvalid, match="chunk 1"):
        decrypt_stream(io.BytesIO(bytes(blob)), out, fx_keys)
    assert out.getvalue() == data[:CHUNK]


def test_key_id_is_a_fingerprint_not_the_key() -> None:
    key = os.urandom(32)
    keys = BackupKeys(key)
    assert keys.key_id == BackupKeys(key).key_id
    assert keys.key_id != BackupKeys(os.urandom(32)).key_id
    assert key.hex()[:16] != keys.key_id and key.hex() not in repr(keys)
    assert keys.manifest_key != key and keys.file_key(b"\x00" * 16) not in (key, keys.manifest_key)
    with pytest.raises(ValueError, match="32 bytes"):
        BackupKeys(b"short")
