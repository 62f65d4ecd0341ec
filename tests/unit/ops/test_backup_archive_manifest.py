"""The archive copy manifest: authenticated like a backup's, and neither kind passes for the other."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.ops.backup.archive_manifest import ArchiveCopyManifest, read_archive_manifest, write_archive_manifest
from server.ops.backup.encryption import BackupKeys
from server.ops.backup.errors import BackupError, BackupInvalid
from server.ops.backup.manifest import read_manifest


@pytest.fixture(name="fx_keys")
def fx_keys() -> BackupKeys:
    return BackupKeys(os.urandom(32))


def _manifest(keys: BackupKeys) -> ArchiveCopyManifest:
    return ArchiveCopyManifest(
        file="audit-archive-000001-1-33-20261123T125115Z-e6147e.jsonl.srbk", file_id="00" * 16, size=1056,
        sha256="ab" * 32, archive=1, archive_file="audit-archive-000001-1-33-20261123T125115Z-e6147e.jsonl",
        archive_sha256="cd" * 32, archive_bytes=1000, first_seq=1, last_seq=33,
        copied_at=datetime(2026, 11, 24, 2, 30, tzinfo=UTC), strongroom_version="0.1.0", key_id=keys.key_id)


def test_round_trip(tmp_path: Path, fx_keys: BackupKeys) -> None:
    path = tmp_path / "copy.srbk.manifest.json"
    write_archive_manifest(path, _manifest(fx_keys), fx_keys)
    assert read_archive_manifest(path, fx_keys) == _manifest(fx_keys)


@pytest.mark.parametrize(("field", "value"), [("archive_sha256", "ef" * 32), ("archive", 2), ("sha256", "ef" * 32),
                                              ("last_seq", 34)])
def test_an_edited_field_fails_the_mac(tmp_path: Path, fx_keys: BackupKeys, field: str, value: object) -> None:
    path = tmp_path / "copy.srbk.manifest.json"
    write_archive_manifest(path, _manifest(fx_keys), fx_keys)
    document = json.loads(path.read_text())
    document[field] = value
    path.write_text(json.dumps(document))
    with pytest.raises(BackupInvalid, match="MAC mismatch"):
        read_archive_manifest(path, fx_keys)


def test_a_copy_manifest_is_not_a_database_backup_manifest(tmp_path: Path, fx_keys: BackupKeys) -> None:
    path = tmp_path / "copy.srbk.manifest.json"
    write_archive_manifest(path, _manifest(fx_keys), fx_keys)
    with pytest.raises(BackupError, match="copy of an audit archive"):
        read_manifest(path, fx_keys)
    # Renamed to the other kind, its MAC (under another domain) no longer holds.
    document = json.loads(path.read_text())
    document["format"] = "strongroom-backup-manifest"
    path.write_text(json.dumps(document))
    with pytest.raises(BackupInvalid):
        read_manifest(path, fx_keys)
