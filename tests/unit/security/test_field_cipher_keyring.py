"""The keyring file at start and in `strongroom keys init`: created private, never overwritten, unsafe refused."""

from __future__ import annotations

import argparse
import base64
import os
import stat
from pathlib import Path

import pytest

from server.config import Settings, load_settings
from server.domain.customers.fields import CUSTOMER
from server.ops.keys_cli import add_key_commands
from server.security.crypto import ErasureLedger, Keyring, keyring_env_value, load_keyring_file
from server.security.field_cipher import (
    EXTRA_FIELDS_ENV,
    FieldCipher,
    ensure_keyring,
    keyring_path,
    parse_extra_fields,
)


@pytest.fixture(name="settings")
def fx_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("STRONGROOM_KEYRING", raising=False)
    return load_settings({}, data_dir=str(tmp_path / "data"), database_url="sqlite+aiosqlite:///:memory:")


def run_keys(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="strongroom")
    add_key_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.handler(settings, args))


def test_ensure_keyring_creates_a_private_file_once(settings: Settings) -> None:
    assert ensure_keyring(settings) is True
    path = keyring_path(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    content = path.read_bytes()
    assert ensure_keyring(settings) is False
    assert path.read_bytes() == content
    assert load_keyring_file(path).current_kek_version() == 1


def test_keys_init_creates_then_leaves_alone(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_keys(settings, "keys", "init") == 0
    assert "created" in capsys.readouterr().out
    content = keyring_path(settings).read_bytes()
    assert run_keys(settings, "keys", "init") == 0
    assert "left unchanged" in capsys.readouterr().out
    assert keyring_path(settings).read_bytes() == content


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_keys_init_and_start_refuse_a_group_or_world_readable_keyring(settings: Settings, mode: int) -> None:
    assert ensure_keyring(settings) is True
    path = keyring_path(settings)
    os.chmod(path, mode)
    with pytest.raises(PermissionError, match="chmod 600"):
        run_keys(settings, "keys", "init")
    with pytest.raises(PermissionError, match="group or others"):
        FieldCipher.from_settings(settings, environ={})
    assert stat.S_IMODE(path.stat().st_mode) == mode  # reported, not silently "fixed"


def test_start_without_a_keyring_says_how_to_create_one(settings: Settings) -> None:
    with pytest.raises(FileNotFoundError, match="strongroom keys init"):
        FieldCipher.from_settings(settings, environ={})


def test_start_with_a_malformed_keyring(settings: Settings) -> None:
    path = keyring_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    path.chmod(0o600)
    with pytest.raises(ValueError, match="not a Strongroom keyring"):
        FieldCipher.from_settings(settings, environ={})


def test_keyring_from_the_environment(settings: Settings) -> None:
    keyring = Keyring.generate()
    environ = {"STRONGROOM_KEYRING": keyring_env_value(keyring)}
    cipher = FieldCipher.from_settings(settings, environ=environ)
    assert cipher.provider.current_kek_version() == 1
    assert not keyring_path(settings).exists()
    with pytest.raises(ValueError, match="STRONGROOM_KEYRING"):
        FieldCipher.from_settings(settings, environ={"STRONGROOM_KEYRING": base64.b64encode(b"{}").decode()})


def test_extra_fields_from_the_environment(settings: Settings) -> None:
    ensure_keyring(settings)
    assert parse_extra_fields(" customer.notes, ,activity.summary ") == ("customer.notes", "activity.summary")
    cipher = FieldCipher.from_settings(settings, environ={EXTRA_FIELDS_ENV: "customer.notes"})
    assert "notes" in cipher.encrypted_fields(CUSTOMER)
    with pytest.raises(ValueError, match=EXTRA_FIELDS_ENV):
        FieldCipher.from_settings(settings, environ={EXTRA_FIELDS_ENV: "contact.title"})


def test_start_refuses_a_tampered_erasure_ledger(settings: Settings) -> None:
    import uuid

    ensure_keyring(settings)
    keyring = load_keyring_file(keyring_path(settings))
    ledger = ErasureLedger(settings.resolved_keys_dir / "erasure-ledger.jsonl", keyring.ledger_key, keyring.suite)
    ledger.append(subject_id=uuid.uuid4(), dek_ids=[uuid.uuid4()], actor="dpo", legal_basis="test")
    assert FieldCipher.from_settings(settings, environ={}) is not None
    ledger.path.write_bytes(ledger.path.read_bytes().replace(b"dpo", b"DPO"))
    with pytest.raises(ValueError, match="MAC mismatch"):
        FieldCipher.from_settings(settings, environ={})


def test_erase_needs_confirmation(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    from server.cli import EXIT_USAGE, build_parser

    args = build_parser().parse_args(["erase", "0190c3c2-0000-7000-8000-000000000000", "--legal-basis", "test"])
    assert args.handler(settings, args) == EXIT_USAGE  # refused before any database or key is touched
    assert "--yes" in capsys.readouterr().err
