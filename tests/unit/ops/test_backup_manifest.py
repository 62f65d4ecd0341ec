"""The backup manifest: written once, authenticated, and any edit (or another backup key) is detected."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.ops.backup.encryption import BackupKeys
from server.ops.backup.errors import BackupError, BackupInvalid, BackupRefused
from server.ops.backup.manifest import AuditHead, Manifest, backup_and_manifest, read_manifest, write_manifest


def _manifest(keys: BackupKeys, **changes: object) -> Manifest:
    values: dict[str, object] = {
        "file": "strongroom-20261123T023000Z-1a2b.srbk", "file_id": "00" * 16, "size": 1000, "sha256": "ab" * 32,
        "plaintext_bytes": 900, "database": "sqlite", "schema_revision": "e3a1c2d4b5f6",
        "created_at": datetime(2026, 11, 23, 2, 30, tzinfo=UTC), "strongroom_version": "0.1.0",
        "audit_head": AuditHead(seq=42, hash="cd" * 32), "pending_audit_events": 3, "key_id": keys.key_id,
    }
    values.update(changes)
    return Manifest(**values)  # type: ignore[arg-type]


@pytest.fixture(name="fx_keys")
def fx_keys() -> BackupKeys:
    return BackupKeys(os.urandom(32))


def test_round_trip_private_and_never_overwritten(tmp_path: Path, fx_keys: BackupKeys) -> None:
    path = tmp_path / "x.srbk.manifest.json"
    manifest = _manifest(fx_keys)
    write_manifest(path, manifest, fx_keys)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_manifest(path, fx_keys) == manifest
    with pytest.raises(FileExistsError):
        write_manifest(path, manifest, fx_keys)
    empty = tmp_path / "empty.manifest.json"
    write_manifest(empty, _manifest(fx_keys, audit_head=None, schema_revision=None), fx_keys)
    assert read_manifest(empty, fx_keys).audit_head is None


@pytest.mark.parametrize(("field", "value"), [
    ("sha256", "ef" * 32),
    ("size", 1001),
    ("schema_revision", "0000aaaa0000"),
    ("audit_head", {"seq": 41, "hash": "cd" * 32}),
    ("created_at", "2027-01-01T00:00:00Z"),
    ("pending_audit_events", 0),
    ("database", "postgresql"),
])
def test_an_edited_field_fails_the_mac(tmp_path: Path, fx_keys: BackupKeys, field: str, value: object) -> None:
    path = tmp_path / "m.json"
    write_manifest(path, _manifest(fx_keys), fx_keys)
    document = json.loads(path.read_text())
    document[field] = value
    path.write_text(json.dumps(document))
    with pytest.raises(BackupInvalid, match="MAC mismatch"):
        read_manifest(path, fx_keys)


def test_a_recomputed_plain_sha256_mac_does_not_help(tmp_path: Path, fx_keys: BackupKeys) -> None:
    import hashlib

    path = tmp_path / "m.json"
    write_manifest(path, _manifest(fx_keys), fx_keys)
    document = json.loads(path.read_text())
    document["sha256"] = "ef" * 32
    body = {key: value for key, value in document.items() if key != "mac"}
    document["mac"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    path.write_text(json.dumps(document))
    with pytest.raises(BackupInvalid):
        read_manifest(path, fx_keys)


def test_added_or_removed_fields_and_garbage_are_refused(tmp_path: Path, fx_keys: BackupKeys) -> None:
    path = tmp_path / "m.json"
    write_manifest(path, _manifest(fx_keys), fx_keys)
    document = json.loads(path.read_text())
    for changed in ({**document, "note": "x"}, {k: v for k, v in document.items() if k != "size"}):
        path.write_text(json.dumps(changed))
        with pytest.raises(BackupInvalid, match="fields added or missing"):
            read_manifest(path, fx_keys)
    path.write_text("{not json")
    with pytest.raises(BackupInvalid, match="not valid JSON"):
        read_manifest(path, fx_keys)
    with pytest.raises(BackupError, match="no manifest"):
        read_manifest(tmp_path / "missing.json", fx_keys)


def test_another_backup_key_is_refused_by_name(tmp_path: Path, fx_keys: BackupKeys) -> None:
    path = tmp_path / "m.json"
    write_manifest(path, _manifest(fx_keys), fx_keys)
    with pytest.raises(BackupRefused, match=fx_keys.key_id):
        read_manifest(path, BackupKeys(os.urandom(32)))


def test_the_manifest_holds_no_key_material(tmp_path: Path) -> None:
    key = os.urandom(32)
    keys = BackupKeys(key)
    path = tmp_path / "m.json"
    write_manifest(path, _manifest(keys), keys)
    text = path.read_text()
    for secret in (key, keys.manifest_key):
        assert secret.hex() not in text
        import base64

        assert base64.b64encode(secret).decode() not in text


def test_either_file_names_the_pair(tmp_path: Path) -> None:
    backup = tmp_path / "strongroom-x.srbk"
    assert backup_and_manifest(backup) == (backup, tmp_path / "strongroom-x.srbk.manifest.json")
    assert backup_and_manifest(tmp_path / "strongroom-x.srbk.manifest.json") == (
        backup, tmp_path / "strongroom-x.srbk.manifest.json")
