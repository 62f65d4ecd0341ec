"""Fixtures for the column-encryption core: a keyring per suite, a DEK and a cache that resolves it."""

from __future__ import annotations

import uuid

import pytest

from server.security.crypto import DataKey, DekCache, Keyring, Suite


@pytest.fixture(name="suite", params=list(Suite), ids=lambda suite: suite.label)
def fx_suite(request: pytest.FixtureRequest) -> Suite:
    return Suite(request.param)


@pytest.fixture(name="keyring")
def fx_keyring(suite: Suite) -> Keyring:
    return Keyring.generate(suite)


@pytest.fixture(name="dek")
def fx_dek(keyring: Keyring) -> DataKey:
    return DataKey.generate(keyring.suite)


@pytest.fixture(name="keys")
def fx_keys(keyring: Keyring, dek: DataKey) -> DekCache:
    cache = DekCache(keyring)
    cache.add(dek)
    return cache


@pytest.fixture(name="record_id")
def fx_record_id() -> uuid.UUID:
    return uuid.uuid4()
