"""Sealed values, attacked: moved, tampered, truncated, relabelled, or opened with the wrong key."""

from __future__ import annotations

import base64
import os
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from server.security.crypto import (
    SEALED_PREFIX,
    DataKey,
    DecryptionError,
    DekCache,
    KeyDestroyed,
    Suite,
    UnknownKey,
    named_key_id,
    open_raw,
    open_sealed,
    reseal,
    seal,
    seal_raw,
    sealed_key_id,
)

TABLE, COLUMN = "contacts", "phone"


def _b64(raw: bytes) -> str:
    return SEALED_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _raw(token: str) -> bytes:
    body = token.removeprefix(SEALED_PREFIX)
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


@pytest.mark.parametrize("plaintext", ["138 0013 8000", "", "张伟 <zhang.wei@example.com>", "x" * 10_000, "\x00\n"])
def test_round_trip_both_suites(plaintext: str, dek: DataKey, keys: DekCache, record_id: uuid.UUID) -> None:
    token = seal(plaintext, dek=dek, table=TABLE, column=COLUMN, record_id=record_id)
    assert token.startswith(SEALED_PREFIX)
    assert plaintext not in token or plaintext == ""
    assert open_sealed(token, keys=keys, table=TABLE, column=COLUMN, record_id=record_id) == plaintext


def test_header_names_suite_and_dek(dek: DataKey, suite: Suite, record_id: uuid.UUID) -> None:
    raw = seal_raw("v", dek=dek, table=TABLE, column=COLUMN, record_id=record_id)
    assert raw[0] == 1
    assert raw[1] == suite
    assert raw[2:18] == dek.id.bytes
    assert len(raw) == 1 + 1 + 16 + 12 + 1 + 16
    assert sealed_key_id(_b64(raw)) == dek.id


def test_the_named_key_is_read_from_the_header_alone(dek: DataKey, suite: Suite, record_id: uuid.UUID) -> None:
    raw = seal_raw("v", dek=dek, table=TABLE, column=COLUMN, record_id=record_id)
    assert named_key_id(_b64(raw)) == dek.id == sealed_key_id(_b64(raw))
    # Only the header is read: which key to load; opening still checks the whole value.
    assert named_key_id(_b64(raw)[:27]) == dek.id
    for not_sealed in ("", "sr:", "plain text", _b64(raw)[3:], _b64(bytes((2,)) + raw[1:]),
                       _b64(raw[:1] + bytes((99,)) + raw[2:]), "sr:" + "*" * 40, "sr:ééé", _b64(raw[:10])):
        assert named_key_id(not_sealed) is None, not_sealed


def test_record_id_as_text_or_uuid_binds_alike(dek: DataKey, keys: DekCache, record_id: uuid.UUID) -> None:
    token = seal("v", dek=dek, table=TABLE, column=COLUMN, record_id=record_id)
    for spelling in (str(record_id), str(record_id).upper(), record_id.hex, f"{{{record_id}}}"):
        assert open_sealed(token, keys=keys, table=TABLE, column=COLUMN, record_id=spelling) == "v"


def test_non_uuid_record_ids_bind_exactly(dek: DataKey, keys: DekCache) -> None:
    token = seal("v", dek=dek, table=TABLE, column=COLUMN, record_id="order-42")
    assert open_sealed(token, keys=keys, table=TABLE, column=COLUMN, record_id="order-42") == "v"
    with pytest.raises(DecryptionError):
        open_sealed(token, keys=keys, table=TABLE, column=COLUMN, record_id="order-43")


@pytest.mark.parametrize(
    ("table", "column", "other_row"),
    [
        ("contacts", "phone", True),  # same column, another row
        ("contacts", "mobile", False),  # same row, another column
        ("customers", "phone", False),  # same row id and column name, another table
        ("contactsp", "hone", False),  # the same bytes split differently between table and column
    ],
)
def test_moved_ciphertext_fails(
    table: str, column: str, other_row: bool, dek: DataKey, keys: DekCache, record_id: uuid.UUID
) -> None:
    token = seal("138 0013 8000", dek=dek, table=TABLE, column=COLUMN, record_id=record_id)
    target_row = uuid.uuid4() if other_row else record_id
    with pytest.raises(DecryptionError, match="failed authentication"):
        open_sealed(token, keys=keys, table=table, column=column, record_id=target_row)


def test_every_tampered_byte_fails(dek: DataKey, keys: DekCache, record_id: uuid.UUID) -> None:
    raw = seal_raw("13800138000", dek=dek, table=TABLE, column=COLUMN, record_id=record_id)
    for position in range(len(raw)):
        for flip in (0x01, 0x80):
            altered = bytearray(raw)
            altered[position] ^= flip
            with pytest.raises(DecryptionError):
                open_raw(bytes(altered), keys=keys, table=TABLE, column=COLUMN, record_id=record_id)


def test_truncated_or_extended_token_fails(dek: DataKey, keys: DekCache, record_id: uuid.UUID) -> None:
    token = seal("13800138000", dek=dek, table=TABLE, column=COLUMN, record_id=record_id)
    for length in range(len(token)):
        with pytest.raises(DecryptionError):
            open_sealed(token[:length], keys=keys, table=TABLE, column=COLUMN, record_id=record_id)
    raw = _raw(token)
    with pytest.raises(DecryptionError):
        open_sealed(_b64(raw + b"\x00"), keys=keys, table=TABLE, column=COLUMN, record_id=record_id)


@pytest.mark.parametrize("mangle", [lambda t: t + "=", lambda t: t + "\n", lambda t: t[:10] + "*" + t[10:],
                                    lambda t: t.replace("sr:", "SR:"), lambda t: t[3:], lambda t: t + "é"])
def test_malformed_text_form_fails(mangle: object, dek: DataKey, keys: DekCache, record_id: uuid.UUID) -> None:
    token = seal("v", dek=dek, table=TABLE, column=COLUMN, record_id=record_id)
    assert callable(mangle)
    with pytest.raises(DecryptionError, match=r"malformed|not a sealed value"):
        open_sealed(mangle(token), keys=keys, table=TABLE, column=COLUMN, record_id=record_id)


def test_non_canonical_base64_fails(dek: DataKey, keys: DekCache, record_id: uuid.UUID) -> None:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # Find a length whose last character carries unused bits, then set one of them: same bytes, other spelling.
    plaintext = "v"
    token = seal(plaintext, dek=dek, table=TABLE, column=COLUMN, record_id=record_id)
    while len(token.removeprefix(SEALED_PREFIX)) % 4 == 0:
        plaintext += "v"
        token = seal(plaintext, dek=dek, table=TABLE, column=COLUMN, record_id=record_id)
    sibling = token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]
    assert _raw(sibling) == _raw(token)
    with pytest.raises(DecryptionError, match="canonical"):
        open_sealed(sibling, keys=keys, table=TABLE, column=COLUMN, record_id=record_id)


def test_standard_alphabet_or_padded_spelling_fails(dek: DataKey, keys: DekCache, record_id: uuid.UUID) -> None:
    """The same bytes spelled with '+', '/' or padding decode alike in plain base64: refused, one spelling only."""
    for attempt in range(200):
        token = seal(f"value {attempt}", dek=dek, table=TABLE, column=COLUMN, record_id=record_id)
        if "-" in token or "_" in token:
            break
    standard = SEALED_PREFIX + token.removeprefix(SEALED_PREFIX).replace("-", "+").replace("_", "/")
    assert standard != token and _raw(standard) == _raw(token)
    padded = token + "=" * (-len(token.removeprefix(SEALED_PREFIX)) % 4)
    for spelling in (standard, padded) if padded != token else (standard,):
        with pytest.raises(DecryptionError, match="malformed"):
            open_sealed(spelling, keys=keys, table=TABLE, column=COLUMN, record_id=record_id)
    assert open_sealed(token, keys=keys, table=TABLE, column=COLUMN, record_id=record_id).startswith("value")


def test_relabelled_dek_id_fails(keyring_dek_pair: tuple[DataKey, DataKey], record_id: uuid.UUID) -> None:
    first, second = keyring_dek_pair
    keys = DekCache()
    keys.add(first)
    keys.add(second)
    raw = seal_raw("v", dek=first, table=TABLE, column=COLUMN, record_id=record_id)
    relabelled = raw[:2] + second.id.bytes + raw[18:]
    with pytest.raises(DecryptionError, match="failed authentication"):
        open_raw(relabelled, keys=keys, table=TABLE, column=COLUMN, record_id=record_id)


@pytest.fixture(name="keyring_dek_pair")
def fx_keyring_dek_pair(suite: Suite) -> tuple[DataKey, DataKey]:
    return DataKey.generate(suite), DataKey.generate(suite)


def test_wrong_key_under_the_same_id_fails(dek: DataKey, record_id: uuid.UUID) -> None:
    impostor = DataKey(dek.id, os.urandom(32), dek.suite)
    keys = DekCache()
    keys.add(impostor)
    token = seal("v", dek=dek, table=TABLE, column=COLUMN, record_id=record_id)
    with pytest.raises(DecryptionError, match="failed authentication"):
        open_sealed(token, keys=keys, table=TABLE, column=COLUMN, record_id=record_id)


def test_suite_swap_in_header_fails(dek: DataKey, keys: DekCache, record_id: uuid.UUID) -> None:
    raw = seal_raw("v", dek=dek, table=TABLE, column=COLUMN, record_id=record_id)
    other = 2 if raw[1] == 1 else 1
    with pytest.raises(DecryptionError, match="suite"):
        open_raw(raw[:1] + bytes([other]) + raw[2:], keys=keys, table=TABLE, column=COLUMN, record_id=record_id)
    with pytest.raises(DecryptionError, match="unknown cipher suite"):
        open_raw(raw[:1] + b"\x09" + raw[2:], keys=keys, table=TABLE, column=COLUMN, record_id=record_id)
    with pytest.raises(DecryptionError, match="format version"):
        open_raw(b"\x02" + raw[1:], keys=keys, table=TABLE, column=COLUMN, record_id=record_id)


def test_unknown_and_destroyed_keys(dek: DataKey, record_id: uuid.UUID) -> None:
    token = seal("v", dek=dek, table=TABLE, column=COLUMN, record_id=record_id)
    with pytest.raises(UnknownKey):
        open_sealed(token, keys=DekCache(), table=TABLE, column=COLUMN, record_id=record_id)
    keys = DekCache()
    keys.add(dek)
    keys.mark_destroyed(dek.id)
    with pytest.raises(KeyDestroyed):
        open_sealed(token, keys=keys, table=TABLE, column=COLUMN, record_id=record_id)
    with pytest.raises(KeyDestroyed):
        keys.add(dek)


def test_nonces_never_repeat(dek: DataKey, record_id: uuid.UUID) -> None:
    count = 50_000
    nonces = {seal_raw("same", dek=dek, table=TABLE, column=COLUMN, record_id=record_id)[18:30] for _ in range(count)}
    assert len(nonces) == count


def test_equal_plaintexts_seal_differently(dek: DataKey, record_id: uuid.UUID) -> None:
    first = seal("same", dek=dek, table=TABLE, column=COLUMN, record_id=record_id)
    second = seal("same", dek=dek, table=TABLE, column=COLUMN, record_id=record_id)
    assert first != second


def test_known_answer_aes_layout(record_id: uuid.UUID) -> None:
    """A value built by hand from the documented layout opens, so the format is what the docstring says."""
    dek = DataKey(uuid.UUID(int=7), bytes(range(32)), Suite.AES256GCM_HMAC_SHA256)
    nonce = bytes(12)
    keyed_header = b"\x01\x01" + dek.id.bytes
    table, column = b"contacts", b"email"
    associated = (
        keyed_header
        + b"strongroom-seal\x00"
        + len(table).to_bytes(2, "big") + table
        + len(column).to_bytes(2, "big") + column
        + b"\x01" + record_id.bytes
    )
    raw = keyed_header + nonce + AESGCM(dek.key).encrypt(nonce, b"a@example.com", associated)
    keys = DekCache()
    keys.add(dek)
    assert open_raw(raw, keys=keys, table="contacts", column="email", record_id=record_id) == "a@example.com"


def test_reseal_moves_to_the_new_dek(dek: DataKey, keys: DekCache, record_id: uuid.UUID) -> None:
    token = seal("13800138000", dek=dek, table=TABLE, column=COLUMN, record_id=record_id)
    new_dek = DataKey.generate(dek.suite)
    resealed = reseal(token, old_keys=keys, new_dek=new_dek, table=TABLE, column=COLUMN, record_id=record_id)
    assert sealed_key_id(resealed) == new_dek.id
    new_keys = DekCache()
    new_keys.add(new_dek)
    assert open_sealed(resealed, keys=new_keys, table=TABLE, column=COLUMN, record_id=record_id) == "13800138000"
    again = reseal(resealed, old_keys=keys, new_dek=new_dek, table=TABLE, column=COLUMN, record_id=record_id)
    assert again == resealed


def test_reseal_refuses_a_moved_value(dek: DataKey, keys: DekCache, record_id: uuid.UUID) -> None:
    token = seal("v", dek=dek, table=TABLE, column=COLUMN, record_id=record_id)
    with pytest.raises(DecryptionError):
        reseal(token, old_keys=keys, new_dek=DataKey.generate(dek.suite), table=TABLE, column="mobile",
               record_id=record_id)


def test_repr_never_shows_key_material(dek: DataKey) -> None:
    assert dek.key.hex() not in repr(dek)
    assert repr(dek.key) not in repr(dek)
