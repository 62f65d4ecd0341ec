"""Which backup ``backup verify --latest`` picks: the newest by authenticated manifest, never an archive copy, and
never an older good backup in place of a newer damaged one."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from server.config import load_settings
from server.ops.backup.archive_manifest import ArchiveCopyManifest, write_archive_manifest
from server.ops.backup.encryption import BackupKeys
from server.ops.backup.errors import BackupInvalid
from server.ops.backup.latest import find_latest_backup, newest_backup
from server.ops.backup.manifest import Manifest, manifest_path, write_manifest

NEWEST = datetime(2026, 3, 18, 2, 30, tzinfo=UTC)


@pytest.fixture(name="fx_keys")
def fx_keys() -> BackupKeys:
    return BackupKeys(os.urandom(32))


def _backup(directory: Path, keys: BackupKeys, moment: datetime, *, name: str | None = None,
            manifest_time: datetime | None = None) -> Path:
    """A backup-shaped file with an authentic manifest (its content is not read when choosing)."""
    path = directory / (name or f"strongroom-{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}.srbk")
    path.write_bytes(os.urandom(64))
    write_manifest(manifest_path(path), Manifest(
        file=path.name, file_id=secrets.token_hex(16), size=64, sha256="00" * 32, plaintext_bytes=0,
        database="sqlite", schema_revision="e3a1c2d4b5f6", created_at=manifest_time or moment,
        strongroom_version="0.1.0", audit_head=None, pending_audit_events=0, key_id=keys.key_id), keys)
    return path


def _archive_copy(directory: Path, keys: BackupKeys, name: str, copied_at: datetime) -> Path:
    path = directory / name
    path.write_bytes(os.urandom(64))
    write_archive_manifest(manifest_path(path), ArchiveCopyManifest(
        file=name, file_id=secrets.token_hex(16), size=64, sha256="00" * 32, archive=1,
        archive_file="audit-archive-000001-1-33-20260101T000000Z-e6147e.jsonl", archive_sha256="cd" * 32,
        archive_bytes=10, first_seq=1, last_seq=33, copied_at=copied_at, strongroom_version="0.1.0",
        key_id=keys.key_id), keys)
    return path


def _edit_manifest(backup: Path, **fields: object) -> None:
    document = json.loads(manifest_path(backup).read_text())
    document.update(fields)
    manifest_path(backup).write_text(json.dumps(document))


def _age(path: Path, seconds: float) -> None:
    moment = time.time() + seconds
    os.utime(path, (moment, moment))


def test_no_backup_in_an_empty_or_missing_directory(tmp_path: Path, fx_keys: BackupKeys) -> None:
    assert newest_backup(tmp_path, fx_keys) is None
    assert newest_backup(tmp_path / "never-created", fx_keys) is None
    (tmp_path / "notes.txt").write_text("not a backup")
    (tmp_path / f"strongroom-{NEWEST:%Y%m%dT%H%M%SZ}-ffff.srbk.partial").write_bytes(b"being written")
    assert newest_backup(tmp_path, fx_keys) is None


def test_the_manifest_time_decides_not_the_modification_time(tmp_path: Path, fx_keys: BackupKeys) -> None:
    older = _backup(tmp_path, fx_keys, NEWEST - timedelta(days=1))
    newer = _backup(tmp_path, fx_keys, NEWEST)
    _age(older, +3600)  # touched after the newer one
    _age(newer, -86400)
    latest = newest_backup(tmp_path, fx_keys)
    assert latest is not None
    assert (latest.backup, latest.created_at, latest.authenticated, latest.skipped) == (newer, NEWEST, True, ())
    # A backup renamed by hand still counts, at its manifest's time.
    renamed = _backup(tmp_path, fx_keys, NEWEST, name="before-upgrade.srbk", manifest_time=NEWEST + timedelta(hours=1))
    latest = newest_backup(tmp_path, fx_keys)
    assert latest is not None and latest.backup == renamed


def test_archive_copies_are_never_chosen(tmp_path: Path, fx_keys: BackupKeys) -> None:
    backup = _backup(tmp_path, fx_keys, NEWEST)
    # Copies are written after the backup that makes them: newer on disk, and one even named like a backup.
    for name in ("audit-archive-000001-1-33-20260101T000000Z-e6147e.jsonl.srbk",
                 f"strongroom-{NEWEST + timedelta(days=1):%Y%m%dT%H%M%SZ}-abcd.srbk"):
        _age(_archive_copy(tmp_path, fx_keys, name, NEWEST + timedelta(hours=2)), +3600)
    latest = newest_backup(tmp_path, fx_keys)
    assert latest is not None and (latest.backup, latest.skipped) == (backup, ())


@pytest.mark.parametrize("damage", ["edited manifest", "another backup key", "manifest missing", "file missing"])
def test_a_damaged_newest_backup_is_chosen_not_an_older_good_one(tmp_path: Path, fx_keys: BackupKeys,
                                                                   damage: str) -> None:
    _backup(tmp_path, fx_keys, NEWEST - timedelta(days=1))
    newest = _backup(tmp_path, fx_keys, NEWEST)
    if damage == "edited manifest":
        _edit_manifest(newest, created_at="2020-01-01T00:00:00Z")
    elif damage == "another backup key":
        _edit_manifest(newest, key_id="00" * 8)
    elif damage == "manifest missing":
        manifest_path(newest).unlink()
    else:
        newest.unlink()
    latest = newest_backup(tmp_path, fx_keys)
    assert latest is not None
    assert (latest.backup, latest.created_at, latest.authenticated) == (newest, NEWEST, False)
    assert latest.skipped == ()  # the chosen file's own problem is not also "passed over"


def test_a_damaged_older_backup_is_passed_over_and_named(tmp_path: Path, fx_keys: BackupKeys) -> None:
    older = _backup(tmp_path, fx_keys, NEWEST - timedelta(days=1))
    newer = _backup(tmp_path, fx_keys, NEWEST)
    # An edit that tries to make the older backup pass for the newest does not authenticate.
    _edit_manifest(older, created_at=f"{NEWEST + timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}")
    stranger = tmp_path / "copied-by-hand.srbk"
    stranger.write_bytes(b"no manifest")
    latest = newest_backup(tmp_path, fx_keys)
    assert latest is not None and latest.backup == newer and latest.authenticated
    assert sorted(path.name for path, _why in latest.skipped) == sorted([older.name, stranger.name])
    assert any("MAC mismatch" in why for path, why in latest.skipped if path == older)


def test_backups_of_the_same_second_are_chosen_by_name(tmp_path: Path, fx_keys: BackupKeys) -> None:
    first = _backup(tmp_path, fx_keys, NEWEST, name=f"strongroom-{NEWEST:%Y%m%dT%H%M%SZ}-0000.srbk")
    second = _backup(tmp_path, fx_keys, NEWEST, name=f"strongroom-{NEWEST:%Y%m%dT%H%M%SZ}-ffff.srbk")
    _age(first, +60)
    latest = newest_backup(tmp_path, fx_keys)
    assert latest is not None and latest.backup == second


def test_a_newest_backup_older_than_the_maximum_age_fails(tmp_path: Path, fx_keys: BackupKeys) -> None:
    """Backups that stopped being taken: the last one may be perfectly good, and the check still fails."""
    _backup(tmp_path, fx_keys, NEWEST - timedelta(days=3))
    newest = _backup(tmp_path, fx_keys, NEWEST)
    settings = load_settings({}, data_dir=str(tmp_path), database_url="sqlite+aiosqlite:///unused.db")

    def latest(now: datetime, max_age: timedelta | None) -> Path:
        found = asyncio.run(find_latest_backup(settings, tmp_path, keys=fx_keys, record=False, max_age=max_age,
                                               now=now))
        return found.backup

    assert latest(NEWEST + timedelta(hours=47), timedelta(hours=48)) == newest
    assert latest(NEWEST + timedelta(days=400), None) == newest  # no maximum: any age
    with pytest.raises(BackupInvalid, match=rf"{newest.name}, was made 2026-03-18 02:30:00Z, 49.0 h ago, more than "
                                            r"the 48.0 h allowed: backups are no longer being taken"):
        latest(NEWEST + timedelta(hours=49), timedelta(hours=48))
