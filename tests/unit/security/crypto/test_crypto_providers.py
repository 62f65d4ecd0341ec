"""Keyring file and environment providers: what they refuse, and rotation through them."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from server.security.crypto import (
    KEYRING_ENV,
    DataKey,
    DecryptionError,
    EnvKeyProvider,
    FileKeyProvider,
    KeyProvider,
    Keyring,
    KeyringError,
    Suite,
    create_keyring_file,
    keyring_env_value,
    load_keyring_file,
)


@pytest.fixture(name="keyring_path")
def fx_keyring_path(tmp_path: Path) -> Path:
    return tmp_path / "keyring.json"


def test_created_file_is_0600_and_loads(keyring_path: Path, suite: Suite) -> None:
    old_umask = os.umask(0)  # even with a permissive umask
    try:
        provider = create_keyring_file(keyring_path, suite=suite)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(keyring_path.stat().st_mode) == 0o600
    assert provider.suite is suite
    assert isinstance(provider, KeyProvider)
    loaded = load_keyring_file(keyring_path)
    assert loaded.suite is suite
    assert loaded.blind_index_root_key == provider.keyring.blind_index_root_key
    assert len({loaded.backup_key, loaded.ledger_key, loaded.blind_index_root_key}) == 3


def test_create_never_overwrites(keyring_path: Path) -> None:
    create_keyring_file(keyring_path)
    before = keyring_path.read_bytes()
    with pytest.raises(KeyringError, match="refusing to overwrite"):
        create_keyring_file(keyring_path)
    assert keyring_path.read_bytes() == before


def test_create_does_not_follow_a_planted_symlink(keyring_path: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    keyring_path.symlink_to(target)
    with pytest.raises(KeyringError):
        create_keyring_file(keyring_path)
    assert not target.exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
def test_group_or_world_access_refused(keyring_path: Path, mode: int) -> None:
    create_keyring_file(keyring_path)
    keyring_path.chmod(mode)
    with pytest.raises(KeyringError, match=f"{keyring_path}.*0600") as raised:
        load_keyring_file(keyring_path)
    assert f"{mode:04o}" in str(raised.value)


def test_0400_is_accepted(keyring_path: Path) -> None:
    create_keyring_file(keyring_path)
    keyring_path.chmod(0o400)
    assert load_keyring_file(keyring_path).current_kek_version() == 1


def test_missing_file_named(keyring_path: Path) -> None:
    with pytest.raises(KeyringError, match=f"{keyring_path}.*not found"):
        load_keyring_file(keyring_path)


def _write_private(path: Path, content: str) -> None:
    path.write_text(content)
    path.chmod(0o600)


def _document() -> dict[str, object]:
    loaded = json.loads(Keyring.generate().to_json())
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "not valid JSON"),
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        (json.dumps({**_document(), "format": "other"}), "not a Strongroom keyring"),
        (json.dumps({**_document(), "version": 2}), "unsupported keyring version"),
        (json.dumps({**_document(), "suite": "rot13"}), "unknown cipher suite"),
        (json.dumps({**_document(), "extra": 1}), "unknown fields"),
        (json.dumps({**_document(), "keks": {}}), "non-empty"),
        (json.dumps({**_document(), "keks": {"one": base64.b64encode(bytes(32)).decode()}}), "positive integer"),
        (json.dumps({**_document(), "current_kek_version": 5}), "not in the keyring"),
        (json.dumps({**_document(), "backup_key": base64.b64encode(bytes(16)).decode()}), "backup_key must decode"),
        (json.dumps({**_document(), "ledger_key": "***"}), "ledger_key is not valid base64"),
    ],
)
def test_malformed_keyring_refused_with_the_path(keyring_path: Path, content: str, problem: str) -> None:
    _write_private(keyring_path, content)
    with pytest.raises(KeyringError, match=problem) as raised:
        load_keyring_file(keyring_path)
    assert str(keyring_path) in str(raised.value)


def test_rotation_through_the_file_is_seen_by_another_process(keyring_path: Path) -> None:
    first = create_keyring_file(keyring_path)
    second = FileKeyProvider(keyring_path)  # stands for another replica that loaded the file earlier
    assert first.add_kek_version() == 2
    assert stat.S_IMODE(keyring_path.stat().st_mode) == 0o600
    assert FileKeyProvider(keyring_path).kek_versions() == (1, 2)
    dek, wrapped = first.keyring.new_dek()
    assert wrapped.kek_version == 2
    assert second.unwrap_dek(wrapped).key == dek.key  # second re-reads the file on an unknown newer version
    assert second.current_kek_version() == 2


def test_staging_through_the_file_keeps_the_current_version(keyring_path: Path) -> None:
    staging = create_keyring_file(keyring_path)
    other = FileKeyProvider(keyring_path)  # another process on the same file, loaded before the staging
    assert staging.stage_kek_version() == 2
    assert stat.S_IMODE(keyring_path.stat().st_mode) == 0o600
    reloaded = FileKeyProvider(keyring_path)
    assert (reloaded.kek_versions(), reloaded.current_kek_version()) == ((1, 2), 1)
    assert staging.wrap_dek(DataKey.generate(staging.suite)).kek_version == 1
    dek = DataKey.generate(staging.suite)
    assert other.unwrap_dek(staging.wrap_dek(dek, 2)).key == dek.key  # re-reads the file for the newer version
    assert other.current_kek_version() == 1
    with pytest.raises(KeyringError, match="already staged"):
        staging.stage_kek_version()
    assert staging.activate_kek_version(2) is True
    assert FileKeyProvider(keyring_path).current_kek_version() == 2
    before = keyring_path.stat()
    assert staging.activate_kek_version(2) is False
    after = keyring_path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rewritten


def test_activation_refusals_leave_the_file_alone(keyring_path: Path) -> None:
    provider = create_keyring_file(keyring_path)
    provider.add_kek_version()
    content = keyring_path.read_bytes()
    with pytest.raises(KeyringError, match="not in the keyring"):
        provider.activate_kek_version(3)
    with pytest.raises(KeyringError, match="older than the current version 2"):
        provider.activate_kek_version(1)
    assert keyring_path.read_bytes() == content
    assert provider.current_kek_version() == 2


# A keyring file as releases before KEK staging wrote it (fixed test keys, never used elsewhere).
_OLD_FORMAT_KEYRING = """{
  "format": "strongroom-keyring",
  "version": 1,
  "suite": "aes-256-gcm+hmac-sha256",
  "current_kek_version": 2,
  "keks": {
    "1": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
    "2": "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
  },
  "blind_index_root_key": "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=",
  "backup_key": "BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ=",
  "ledger_key": "BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU="
}
"""


def test_an_old_format_keyring_file_loads_unchanged(keyring_path: Path) -> None:
    _write_private(keyring_path, _OLD_FORMAT_KEYRING)
    provider = FileKeyProvider(keyring_path)
    assert (provider.kek_versions(), provider.current_kek_version()) == ((1, 2), 2)
    assert provider.keyring.staged_kek_versions() == ()
    assert provider.keyring.backup_key == bytes([4]) * 32
    assert json.loads(provider.keyring.to_json()) == json.loads(_OLD_FORMAT_KEYRING)
    assert provider.stage_kek_version() == 3
    # Staging adds no field: the file is still a document every earlier release loads.
    staged = json.loads(keyring_path.read_text())
    assert set(staged) == set(json.loads(_OLD_FORMAT_KEYRING))
    assert (staged["version"], staged["current_kek_version"], sorted(staged["keks"])) == (1, 2, ["1", "2", "3"])


def test_discarding_a_staged_version_rewrites_the_file_0600_and_keeps_the_rest(keyring_path: Path) -> None:
    provider = create_keyring_file(keyring_path)
    before = json.loads(keyring_path.read_text())
    assert provider.stage_kek_version() == 2
    keyring_path.chmod(0o400)  # accepted on load; the rewrite is 0600 like every keyring write
    provider.remove_kek_version(2)
    assert stat.S_IMODE(keyring_path.stat().st_mode) == 0o600
    assert json.loads(keyring_path.read_text()) == before  # the same document as before the staging
    assert FileKeyProvider(keyring_path).kek_versions() == (1,)
    with pytest.raises(KeyringError, match="current"):
        provider.remove_kek_version(1)
    assert json.loads(keyring_path.read_text()) == before


def test_a_process_that_loaded_a_discarded_staged_version_rereads_the_replaced_file(keyring_path: Path) -> None:
    custodian = create_keyring_file(keyring_path)
    assert custodian.stage_kek_version() == 2
    server = FileKeyProvider(keyring_path)  # a serving process that loaded the staged version 2
    custodian.remove_kek_version(2)
    assert custodian.stage_kek_version() == 2  # the number is given to a new key
    assert custodian.activate_kek_version(2)
    dek, wrapped = custodian.keyring.new_dek()
    assert wrapped.kek_version == 2
    # The discarded key does not unwrap it; the server notices that its file was replaced and reads it again.
    assert server.unwrap_dek(wrapped).key == dek.key
    assert server.current_kek_version() == 2


def test_a_failing_unwrap_under_a_held_version_does_not_reread_an_unchanged_file(keyring_path: Path) -> None:
    provider = create_keyring_file(keyring_path)
    foreign = Keyring.generate()  # another deployment's KEK version 1
    _dek, wrapped = foreign.new_dek()
    reads: list[Path] = []
    provider.reload = lambda: reads.append(keyring_path)  # type: ignore[method-assign]
    with pytest.raises(DecryptionError, match="wrong KEK or altered"):
        provider.unwrap_dek(wrapped)
    assert reads == []


def test_rewrap_and_retire_through_the_file(keyring_path: Path) -> None:
    provider = create_keyring_file(keyring_path)
    dek = provider.keyring.new_dek()[0]
    old = provider.wrap_dek(dek)
    provider.add_kek_version()
    new = provider.rewrap(old)
    provider.remove_kek_version(1)
    reloaded = FileKeyProvider(keyring_path)
    assert reloaded.kek_versions() == (2,)
    assert reloaded.unwrap_dek(new).key == dek.key


def test_env_provider_round_trip(suite: Suite) -> None:
    keyring = Keyring.generate(suite)
    provider = EnvKeyProvider({KEYRING_ENV: keyring_env_value(keyring)})
    assert isinstance(provider, KeyProvider)
    dek, wrapped = keyring.new_dek()
    assert provider.unwrap_dek(wrapped).key == dek.key
    assert provider.keyring.blind_index_root_key == keyring.blind_index_root_key


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "is not set"),
        ("   ", "is not set"),
        ("not base64 at all!", "not valid base64"),
        (base64.b64encode(b"\xff\xfe garbage").decode(), "not valid JSON"),
        (base64.b64encode(b'{"format": "strongroom-keyring"}').decode(), "unsupported keyring version"),
    ],
)
def test_env_provider_refuses_garbage_clearly(value: str | None, problem: str) -> None:
    environ = {} if value is None else {KEYRING_ENV: value}
    with pytest.raises(KeyringError, match=problem) as raised:
        EnvKeyProvider(environ)
    assert KEYRING_ENV in str(raised.value)


def test_env_provider_error_does_not_echo_secrets() -> None:
    document = _document()
    short_key = base64.b64encode(b"S" * 31).decode()
    document["backup_key"] = short_key
    value = base64.b64encode(json.dumps(document).encode()).decode()
    with pytest.raises(KeyringError, match="backup_key") as raised:
        EnvKeyProvider({KEYRING_ENV: value})
    assert short_key not in str(raised.value)
    assert value not in str(raised.value)


def test_env_provider_is_read_only() -> None:
    provider = EnvKeyProvider({KEYRING_ENV: keyring_env_value(Keyring.generate())})
    with pytest.raises(KeyringError, match="read-only"):
        provider.add_kek_version()
    with pytest.raises(KeyringError, match="read-only"):
        provider.stage_kek_version()
    with pytest.raises(KeyringError, match="read-only"):
        provider.activate_kek_version(1)
    with pytest.raises(KeyringError, match="read-only"):
        provider.remove_kek_version(1)


def test_env_provider_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    keyring = Keyring.generate()
    monkeypatch.setenv(KEYRING_ENV, keyring_env_value(keyring))
    assert EnvKeyProvider().keyring.backup_key == keyring.backup_key
