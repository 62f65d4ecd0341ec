"""Backups protect audit archive files too, on SQLite and PostgreSQL: each archive is copied once, encrypted,
verified, never pruned, and put back by a restore; a damaged archive or copy is reported, never skipped.

Archiving deletes events, so every test here archives in a database of its own, not the session's. Expiry is
simulated by archiving "as of" a moment far in the future, as the retention tests do.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from server.audit.models import AuditEventRecord
from server.config import Settings
from server.ops.backup import (
    ArchivesUnprotected,
    BackupInvalid,
    RetentionPolicy,
    create_backup,
    prune_backups,
    restore_backup,
    verify_backup,
)
from server.ops.backup.archive_manifest import ArchiveCopyManifest, read_archive_manifest, write_archive_manifest
from server.ops.backup.archive_recovery import verify_archive_copy
from server.ops.backup.keys import load_backup_keys
from server.ops.backup.manifest import manifest_path

from .conftest import (
    NewDatabase,
    archive_directory,
    archive_new_events,
    backup_events,
    cli_environment,
    event_lines,
    settings_for,
)


def _details(event: AuditEventRecord) -> dict[str, Any]:
    return dict(json.loads(bytes(event.canonical)))


async def _copied_per_backup(settings: Settings) -> dict[str, list[int]]:
    """``archives_copied`` of each successful ``backup create`` event, by backup file."""
    return {details["after"]["file"]: details["after"]["archives_copied"]
            for details in map(_details, await backup_events(settings))
            if details["action"] == "backup" and details["outcome"] == "ok" and "archives_copied" in details["after"]}


def _copies(directory: Path) -> list[Path]:
    return sorted(directory.glob("audit-archive-*.srbk"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------- the whole path


async def test_archives_are_copied_encrypted_once_verified_and_put_back(fx_installation: Settings,
                                                                        tmp_path: Path) -> None:
    settings = fx_installation
    backups = tmp_path / "backups"
    first = await archive_new_events(settings)

    created = await create_backup(settings, backups)
    (copy,) = _copies(backups)
    assert [item.path for item in created.archives.copied] == [copy]
    assert copy.name == first.path.name + ".srbk"
    assert oct(copy.stat().st_mode & 0o777) == "0o600"
    copied = copy.read_bytes()
    # Encrypted: neither the clear name nor any archived event's bytes are in the copy.
    assert first.marker.encode() not in copied
    assert not any(event in copied or base64.b64decode(event) in copied for event in event_lines(first.path))
    manifest = read_archive_manifest(manifest_path(copy), load_backup_keys(settings))
    assert (manifest.archive, manifest.archive_sha256, manifest.archive_file) == \
        (first.number, first.sha256, first.path.name)
    assert manifest.sha256 == _sha256(copy)

    # Copied once: a second backup finds the copy and leaves it alone.
    again = await create_backup(settings, backups)
    assert again.archives.copied == () and again.archives.already_copied == (first.number,)
    assert _copies(backups) == [copy] and copy.read_bytes() == copied
    # (read now: the next archive run takes these events out of the database)
    assert await _copied_per_backup(settings) == {created.path.name: [first.number], again.path.name: []}

    # A later archive is copied by the next backup, and only it.
    second = await archive_new_events(settings)
    latest = await create_backup(settings, backups)
    assert [item.manifest.archive for item in latest.archives.copied] == [second.number]
    assert latest.archives.already_copied == (first.number,)
    assert len(_copies(backups)) == 2

    assert await _copied_per_backup(settings) == {latest.path.name: [second.number]}

    # Verify checks the copy of every archive the backup records, and a copy on its own.
    report = await verify_backup(settings, latest.path)
    assert report.archives_verified == (first.number, second.number)
    assert (await verify_archive_copy(settings, copy)).manifest.archive == first.number

    # The host lost its archive directory: the restore puts every recorded archive back, as recorded.
    originals = {archive.number: archive.path.read_bytes() for archive in (first, second)}
    for archive in (first, second):
        archive.path.unlink()
    restored = await restore_backup(settings, latest.path)
    assert restored.trail_ok, restored.trail_detail
    assert restored.archives.restored == (first.number, second.number)
    assert restored.archives.not_restored == ()
    for archive in (first, second):
        assert _sha256(archive.path) == archive.sha256
        assert archive.path.read_bytes() == originals[archive.number]
        assert oct(archive.path.stat().st_mode & 0o777) == "0o600"
    assert not list(archive_directory(settings).glob("*.partial"))

    # Restored again with the archives in place, nothing is written and all are found intact.
    repeated = await restore_backup(settings, latest.path)
    assert (repeated.archives.restored, repeated.archives.present) == ((), (first.number, second.number))
    put_back = [_details(event) for event in await backup_events(settings)
                if event.action == "restore" and b"audit archives after restoring" in bytes(event.canonical)]
    assert [event["outcome"] for event in put_back] == ["ok"]  # the first restore's event was replaced with the data


async def test_a_restore_on_a_new_host_puts_back_the_archives_the_backup_records(
    fx_installation: Settings, fx_settings: Settings, fx_new_database: NewDatabase, tmp_path: Path,
) -> None:
    archived = await archive_new_events(fx_installation)
    created = await create_backup(fx_installation, tmp_path / "backups")
    new_host = settings_for(fx_settings, await fx_new_database(), tmp_path / "new-host")
    report = await restore_backup(new_host, created.path)
    assert report.archives.restored == (archived.number,)
    put_back = archive_directory(new_host) / archived.path.name
    assert _sha256(put_back) == archived.sha256


# ---------------------------------------------------------------------------------------------------- damage


async def test_an_altered_or_missing_archive_file_fails_the_backup_loudly(
    fx_installation: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    settings = fx_installation
    archived = await archive_new_events(settings)
    data = bytearray(archived.path.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, other content
    archived.path.write_bytes(bytes(data))

    backups = tmp_path / "backups"
    with pytest.raises(ArchivesUnprotected, match=rf"archive\(s\) {archived.number} .*SHA-256.*altered"):
        await create_backup(settings, backups)
    (database_backup,) = backups.glob("strongroom-*.srbk")  # the database backup itself is good and kept
    with pytest.raises(BackupInvalid, match=rf"archive {archived.number}: no copy"):
        await verify_backup(settings, database_backup, record=False)  # a restore could not put it back
    assert _copies(backups) == []
    assert not list(backups.glob("*.partial"))
    failed = [_details(event) for event in await backup_events(settings) if event.outcome == "error"]
    assert len(failed) == 1
    assert "not protected" in str(failed[0]["reason"])
    assert failed[0]["after"]["archives_unprotected"] == [archived.number]

    archived.path.unlink()
    with pytest.raises(ArchivesUnprotected, match="missing"):
        await create_backup(settings, backups)

    from server.cli import main

    cli_environment(monkeypatch, settings)
    assert await asyncio.to_thread(main, ["backup", "create", "--out", str(tmp_path / "cli"), "--prune",
                                          "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "AUDIT ARCHIVES NOT PROTECTED" in captured.err and archived.path.name in captured.err
    assert "Traceback" not in captured.err


async def test_a_tampered_archive_copy_is_detected_by_verify_and_refused_by_restore(
    fx_installation: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    settings = fx_installation
    archived = await archive_new_events(settings)
    created = await create_backup(settings, tmp_path / "backups")
    (copy,) = _copies(tmp_path / "backups")
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x04
    copy.write_bytes(bytes(data))

    with pytest.raises(BackupInvalid, match="SHA-256"):
        await verify_archive_copy(settings, copy, record=False)
    with pytest.raises(BackupInvalid, match=rf"archive {archived.number}: .*SHA-256"):
        await verify_backup(settings, created.path, record=False)

    # A manifest re-signed over the damaged copy (only a backup-key holder could): the chunk's tag still fails.
    keys = load_backup_keys(settings)
    old = read_archive_manifest(manifest_path(copy), keys)
    values = {name: getattr(old, name) for name in ArchiveCopyManifest.__dataclass_fields__}
    values.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    manifest_path(copy).unlink()
    write_archive_manifest(manifest_path(copy), ArchiveCopyManifest(**values), keys)
    with pytest.raises(BackupInvalid, match="does not authenticate"):
        await verify_archive_copy(settings, copy, record=False)

    archived.path.unlink()
    report = await restore_backup(settings, created.path)
    assert report.trail_ok, report.trail_detail
    assert report.archives.restored == ()
    ((number, why),) = report.archives.not_restored
    assert number == archived.number and "refused" in why
    assert not archived.path.exists()
    assert not list(archive_directory(settings).glob("*.partial"))  # no decrypted fragment left behind

    from server.cli import main

    cli_environment(monkeypatch, settings)
    assert await asyncio.to_thread(main, ["backup", "verify", str(copy), "--quiet"]) == 1
    assert "BACKUP BAD" in capsys.readouterr().err
    copy.unlink()
    manifest_path(copy).unlink()
    assert await asyncio.to_thread(main, ["backup", "restore", str(created.path), "--yes", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert f"audit archive(s) {archived.number} NOT put back" in captured.err and "no copy" in captured.err
    assert "Traceback" not in captured.err


async def test_verify_latest_picks_the_database_backup_not_the_archive_copies_written_after_it(
    fx_installation: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """The copies `backup create` writes after the database backup are newer on disk; --latest must still take the
    database backup, and then checks the copies as its archives."""
    settings = fx_installation
    await archive_new_events(settings)
    backups = tmp_path / "backups"
    created = await create_backup(settings, backups)
    (copy,) = _copies(backups)
    later = time.time() + 3600
    os.utime(copy, (later, later))

    from server.cli import main

    cli_environment(monkeypatch, settings)
    assert await asyncio.to_thread(main, ["backup", "verify", "--latest", "--dir", str(backups), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert f"newest backup: {created.path} (made " in captured.out
    assert f"backup OK: {created.path.name}" in captured.out and "1 audit archive copies verified" in captured.out
    assert copy.name not in captured.out + captured.err


# ----------------------------------------------------------------------------------------------------- prune


async def test_prune_never_deletes_archive_copies(fx_installation: Settings, tmp_path: Path) -> None:
    settings = fx_installation
    archived = await archive_new_events(settings)
    backups = tmp_path / "backups"
    older = await create_backup(settings, backups)
    newer = await create_backup(settings, backups)
    (copy,) = _copies(backups)

    result = await prune_backups(settings, backups, policy=RetentionPolicy(daily=0, weekly=0, monthly=0))
    # One database backup stays (the two may share a second, so either), the other goes; the copy stays.
    assert len(result.deleted) == len(result.kept) == 1
    assert {result.deleted[0].backup, result.kept[0].backup} == {older.path, newer.path}
    assert not result.deleted[0].backup.exists()
    assert result.archive_copies == [copy] and result.skipped == []
    assert copy.is_file() and manifest_path(copy).is_file()
    assert (await verify_archive_copy(settings, copy, record=False)).manifest.archive == archived.number
