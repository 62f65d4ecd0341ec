"""Envelope keys: DEKs wrapped under versioned KEKs, rotation, and the DEK cache."""

from __future__ import annotations

import os
import uuid

import pytest
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from server.security.crypto import (
    DataKey,
    DecryptionError,
    DekCache,
    Kek,
    KeyDestroyed,
    Keyring,
    KeyringError,
    Suite,
    UnknownKey,
    WrappedDek,
    open_sealed,
    seal,
    unwrap_dek,
    wrap_dek,
    wrapped_dek_id,
)


def test_wrap_round_trip(keyring: Keyring) -> None:
    dek, wrapped = keyring.new_dek()
    assert wrapped.dek_id == dek.id
    assert wrapped.kek_version == keyring.current_kek_version() == 1
    assert dek.key not in wrapped.to_bytes()
    restored = keyring.unwrap_dek(WrappedDek.from_bytes(wrapped.to_bytes()))
    assert (restored.id, restored.key, restored.suite) == (dek.id, dek.key, dek.suite)


def test_wrong_kek_fails(keyring: Keyring) -> None:
    _, wrapped = keyring.new_dek()
    stranger = Keyring.generate(keyring.suite)
    with pytest.raises(DecryptionError, match="wrong KEK or altered"):
        stranger.unwrap_dek(wrapped)


def test_tampered_wrapped_dek_fails(keyring: Keyring) -> None:
    _, wrapped = keyring.new_dek()
    raw = wrapped.to_bytes()
    for position in range(len(raw)):
        altered = bytearray(raw)
        altered[position] ^= 0x01
        with pytest.raises(DecryptionError):
            keyring.unwrap_dek(WrappedDek.from_bytes(bytes(altered)))


def test_relabelled_kek_version_or_dek_id_fails(keyring: Keyring) -> None:
    keyring.add_kek_version()
    _, wrapped = keyring.new_dek()
    with pytest.raises(DecryptionError):
        keyring.unwrap_dek(WrappedDek(wrapped.dek_id, 1, wrapped.suite, wrapped.ciphertext))
    with pytest.raises(DecryptionError):
        keyring.unwrap_dek(WrappedDek(uuid.uuid4(), wrapped.kek_version, wrapped.suite, wrapped.ciphertext))


def test_malformed_wrapped_bytes() -> None:
    with pytest.raises(DecryptionError, match="malformed"):
        WrappedDek.from_bytes(b"\x01" * 10)
    dek = DataKey.generate()
    raw = wrap_dek(dek, Kek(1, os.urandom(32))).to_bytes()
    with pytest.raises(DecryptionError, match="format version"):
        WrappedDek.from_bytes(b"\x07" + raw[1:])
    with pytest.raises(DecryptionError, match="suite"):
        WrappedDek.from_bytes(raw[:1] + b"\x09" + raw[2:])


def test_the_dek_id_read_from_the_header_alone() -> None:
    dek = DataKey.generate()
    raw = wrap_dek(dek, Kek(3, os.urandom(32))).to_bytes()
    assert wrapped_dek_id(raw) == dek.id == WrappedDek.from_bytes(raw).dek_id
    with pytest.raises(DecryptionError, match="malformed"):
        wrapped_dek_id(raw[:-1])
    with pytest.raises(DecryptionError, match="format version"):
        wrapped_dek_id(b"\x07" + raw[1:])


def test_known_answer_wrap_layout() -> None:
    """A wrapped DEK built by hand from the documented layout unwraps."""
    kek = Kek(3, bytes(32), Suite.AES256GCM_HMAC_SHA256)
    dek_id, dek_key, nonce = uuid.UUID(int=5), bytes(range(32)), bytes(12)
    header = b"\x01\x01" + (3).to_bytes(4, "big") + dek_id.bytes
    sealed = AESGCM(kek.key).encrypt(nonce, dek_key, b"strongroom-dek\x00" + header)
    restored = unwrap_dek(WrappedDek.from_bytes(header + nonce + sealed), kek)
    assert restored.key == dek_key


def test_mixed_suites_refused() -> None:
    with pytest.raises(ValueError, match="suite"):
        wrap_dek(DataKey.generate(Suite.SM4GCM_HMAC_SM3), Kek(1, os.urandom(32), Suite.AES256GCM_HMAC_SHA256))


def test_rotation_rewraps_under_the_new_kek(keyring: Keyring) -> None:
    dek, old = keyring.new_dek()
    assert keyring.add_kek_version() == 2
    assert keyring.kek_versions() == (1, 2)
    new = keyring.rewrap(old)
    assert new.kek_version == 2
    assert new.ciphertext != old.ciphertext
    assert keyring.unwrap_dek(new).key == dek.key
    assert keyring.unwrap_dek(old).key == dek.key  # the old version still unwraps until it is removed
    assert keyring.rewrap(new) is new
    keyring.remove_kek_version(1)
    with pytest.raises(UnknownKey):
        keyring.unwrap_dek(old)
    with pytest.raises(KeyringError, match="current"):
        keyring.remove_kek_version(2)


def test_a_discarded_staged_version_gives_its_number_to_a_new_key(keyring: Keyring) -> None:
    dek, current = keyring.new_dek()
    assert keyring.stage_kek_version() == 2
    discarded = keyring.wrap_dek(dek, 2)
    keyring.remove_kek_version(2)
    assert (keyring.kek_versions(), keyring.current_kek_version(), keyring.staged_kek_versions()) == ((1,), 1, ())
    with pytest.raises(UnknownKey):
        keyring.unwrap_dek(discarded)
    assert keyring.unwrap_dek(current).key == dek.key
    assert keyring.stage_kek_version() == 2
    with pytest.raises(DecryptionError, match="wrong KEK or altered"):  # the same number, another key
        keyring.unwrap_dek(discarded)
    with pytest.raises(KeyringError, match="not in the keyring"):
        keyring.remove_kek_version(3)


def test_a_staged_version_unwraps_but_nothing_is_wrapped_under_it(keyring: Keyring) -> None:
    dek, old = keyring.new_dek()
    assert keyring.stage_kek_version() == 2
    assert keyring.current_kek_version() == 1
    assert keyring.kek_versions() == (1, 2)
    assert keyring.staged_kek_versions() == (2,)
    assert keyring.new_dek()[1].kek_version == 1  # new DEKs still go under the current version
    assert keyring.rewrap(old) is old
    under_staged = keyring.wrap_dek(dek, 2)  # as a host that already activated it would wrap
    assert keyring.unwrap_dek(under_staged).key == dek.key


def test_activating_a_staged_version_switches_wraps_and_rewraps(keyring: Keyring) -> None:
    dek, old = keyring.new_dek()
    version = keyring.stage_kek_version()
    assert keyring.activate_kek_version(version) is True
    assert keyring.current_kek_version() == version
    assert keyring.staged_kek_versions() == ()
    assert keyring.new_dek()[1].kek_version == version
    new = keyring.rewrap(old)
    assert new.kek_version == version and keyring.unwrap_dek(new).key == dek.key
    assert keyring.unwrap_dek(old).key == dek.key
    assert keyring.activate_kek_version(version) is False  # already current: nothing to do


def test_activation_refuses_unknown_and_older_versions(keyring: Keyring) -> None:
    keyring.add_kek_version()
    with pytest.raises(KeyringError, match=r"KEK version 5 is not in the keyring \(it holds 1, 2\)"):
        keyring.activate_kek_version(5)
    with pytest.raises(KeyringError, match="older than the current version 2"):
        keyring.activate_kek_version(1)
    assert keyring.current_kek_version() == 2


def test_one_staged_version_at_a_time(keyring: Keyring) -> None:
    keyring.stage_kek_version()
    for attempt in (keyring.stage_kek_version, keyring.add_kek_version):
        with pytest.raises(KeyringError, match=r"version 2 is already staged.*--to-version 2"):
            attempt()
    assert keyring.kek_versions() == (1, 2)
    assert keyring.current_kek_version() == 1


def test_wrap_under_a_named_version(keyring: Keyring) -> None:
    keyring.add_kek_version()
    dek = DataKey.generate(keyring.suite)
    assert keyring.wrap_dek(dek, 1).kek_version == 1
    with pytest.raises(KeyringError, match="version 9"):
        keyring.wrap_dek(dek, 9)


def test_keys_have_the_right_length() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        DataKey(uuid.uuid4(), b"short")
    with pytest.raises(ValueError, match="32 bytes"):
        Kek(1, b"short")


def test_repr_leaks_no_secret(keyring: Keyring) -> None:
    dek, wrapped = keyring.new_dek()
    text = repr(keyring) + repr(dek) + repr(wrapped) + repr(keyring.blind_indexer())
    for secret in (dek.key, keyring.backup_key, keyring.blind_index_root_key, keyring.ledger_key):
        assert secret.hex() not in text
        assert repr(secret) not in text


class TestDekCache:
    def test_loads_through_the_loader_once(self, keyring: Keyring) -> None:
        dek, wrapped = keyring.new_dek()
        calls: list[uuid.UUID] = []

        def load(dek_id: uuid.UUID) -> WrappedDek | None:
            calls.append(dek_id)
            return wrapped if dek_id == dek.id else None

        cache = DekCache(keyring, load_wrapped=load)
        assert cache.resolve(dek.id).key == dek.key
        assert cache.resolve(dek.id).key == dek.key
        assert calls == [dek.id]
        with pytest.raises(UnknownKey):
            cache.resolve(uuid.uuid4())

    def test_a_deleted_wrapped_dek_makes_values_unreadable(self, keyring: Keyring) -> None:
        dek, wrapped = keyring.new_dek()
        table: dict[uuid.UUID, WrappedDek] = {dek.id: wrapped}
        erased: set[uuid.UUID] = set()
        cache = DekCache(keyring, load_wrapped=table.get, is_destroyed=erased.__contains__)
        cache.resolve(dek.id)
        del table[dek.id]
        erased.add(dek.id)
        cache.forget(dek.id)  # what another process's TTL expiry does
        with pytest.raises(KeyDestroyed, match="destroyed"):
            cache.resolve(dek.id)

    def test_loader_answering_for_another_id_is_refused(self, keyring: Keyring) -> None:
        _, wrapped = keyring.new_dek()
        cache = DekCache(keyring, load_wrapped=lambda _dek_id: wrapped)
        with pytest.raises(UnknownKey, match="asked for"):
            cache.resolve(uuid.uuid4())

    def test_bounded(self, suite: Suite) -> None:
        cache = DekCache(max_entries=3)
        deks = [DataKey.generate(suite) for _ in range(5)]
        for dek in deks:
            cache.add(dek)
        with pytest.raises(UnknownKey):
            cache.resolve(deks[0].id)
        assert cache.resolve(deks[4].id) is deks[4]

    def test_ttl_expires_entries(self, keyring: Keyring, monkeypatch: pytest.MonkeyPatch) -> None:
        dek, wrapped = keyring.new_dek()
        loads: list[uuid.UUID] = []

        def load(dek_id: uuid.UUID) -> WrappedDek:
            loads.append(dek_id)
            return wrapped

        now = [1000.0]
        monkeypatch.setattr("server.security.crypto.resolver.time.monotonic", lambda: now[0])
        cache = DekCache(keyring, load_wrapped=load, ttl_seconds=60)
        cache.resolve(dek.id)
        now[0] += 30
        cache.resolve(dek.id)
        now[0] += 31
        cache.resolve(dek.id)
        assert len(loads) == 2

    def test_destroyed_set_from_the_ledger(self, keyring: Keyring) -> None:
        dek, wrapped = keyring.new_dek()
        cache = DekCache(keyring, load_wrapped=lambda _dek_id: wrapped, destroyed=[dek.id])
        with pytest.raises(KeyDestroyed):
            cache.resolve(dek.id)
        with pytest.raises(KeyDestroyed):
            cache.add_wrapped(wrapped)

    def test_sm4_and_aes_deks_are_not_interchangeable(self) -> None:
        key = os.urandom(32)
        aes = DataKey(uuid.uuid4(), key, Suite.AES256GCM_HMAC_SHA256)
        sm4 = DataKey(aes.id, key, Suite.SM4GCM_HMAC_SM3)
        record_id = uuid.uuid4()
        token = seal("v", dek=aes, table="t", column="c", record_id=record_id)
        cache = DekCache()
        cache.add(sm4)
        with pytest.raises(DecryptionError):
            open_sealed(token, keys=cache, table="t", column="c", record_id=record_id)


def test_a_host_without_the_suite_fails_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(suite: Suite) -> None:
        raise UnsupportedAlgorithm(f"cipher suite {suite.label} is not available")

    monkeypatch.setattr("server.security.crypto.keyring.check_suite_available", unavailable)
    with pytest.raises(KeyringError, match="sm4-gcm"):
        Keyring.generate(Suite.SM4GCM_HMAC_SM3)
