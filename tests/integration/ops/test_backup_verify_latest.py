"""``strongroom backup verify --latest`` on SQLite and PostgreSQL: the newest backup in the configured directory is
the one verified, damage to it fails the run whatever older backups hold, and no backup at all is exit 2."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest

from server.cli import main
from server.config import Settings
from server.ops.backup.manifest import manifest_path

from .conftest import backup_events, cli_environment


def _backup_into_the_configured_directory() -> None:
    """`backup create` as the timer runs it; waits for the next second first, so each backup has its own time."""
    time.sleep(1.05 - time.time() % 1)
    assert main(["backup", "create", "--quiet"]) == 0


def _flip_a_byte(path: Path) -> bytes:
    """Alter one byte in the middle of ``path``; returns the original content."""
    original = path.read_bytes()
    altered = bytearray(original)
    altered[len(altered) // 2] ^= 0x10
    path.write_bytes(bytes(altered))
    return original


def _verify_reasons(settings: Settings) -> list[str]:
    """The reasons of the ``backup`` events about verifications, oldest first."""
    events = asyncio.run(backup_events(settings))
    reasons = [str(json.loads(bytes(event.canonical)).get("reason") or "") for event in events]
    return [reason for reason in reasons if "verif" in reason]


def test_latest_verifies_the_newest_backup_and_fails_on_its_damage(
    fx_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    backups = tmp_path / "configured-backups"
    cli_environment(monkeypatch, fx_settings, backups)
    _backup_into_the_configured_directory()
    _backup_into_the_configured_directory()
    older, newer = sorted(backups.glob("strongroom-*.srbk"))
    capsys.readouterr()

    # The older backup is damaged: --latest must not look at it, and the newer one passes.
    older_content = _flip_a_byte(older)
    assert main(["backup", "verify", "--latest", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert f"newest backup: {newer} (made " in captured.out
    assert f"backup OK: {newer.name}" in captured.out
    older.write_bytes(older_content)

    # The newer backup is damaged: the run fails, naming it, although an older good backup is there.
    newer_content = _flip_a_byte(newer)
    assert main(["backup", "verify", "--latest", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert f"newest backup: {newer} (made " in captured.out
    assert "BACKUP BAD" in captured.err and newer.name in captured.err
    assert "backup OK" not in captured.out
    newer.write_bytes(newer_content)

    # Its manifest edited: still the newest by its name, and it fails; never a silent fall back to the older one.
    manifest = manifest_path(newer)
    manifest_content = manifest.read_text()
    manifest.write_text(json.dumps({**json.loads(manifest_content), "created_at": "2020-01-01T00:00:00Z"}))
    assert main(["backup", "verify", "--latest", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert f"newest backup: {newer} (named for " in captured.out and "does not authenticate" in captured.out
    assert "BACKUP BAD" in captured.err
    manifest.unlink()
    manifest.write_text(manifest_content)

    # --dir points elsewhere: there the older backup is the newest.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for path in (older, manifest_path(older)):
        shutil.copy2(path, elsewhere / path.name)
    assert main(["backup", "verify", "--latest", "--dir", str(elsewhere), "--quiet"]) == 0
    assert f"backup OK: {older.name}" in capsys.readouterr().out

    # Every run is in the audit trail: the passes and the failures, each naming its file.
    reasons = _verify_reasons(fx_settings)
    assert any(reason.startswith(f"backup {newer.name} verified") for reason in reasons)
    assert sum(reason.startswith(f"verify of {newer.name} failed") for reason in reasons) == 2
    assert any(reason.startswith(f"backup {older.name} verified") for reason in reasons)


def test_latest_without_a_backup_exits_2_and_is_audited(
    fx_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    missing = tmp_path / "no-backups-yet"
    cli_environment(monkeypatch, fx_settings, missing)
    assert main(["backup", "verify", "--latest"]) == 2
    captured = capsys.readouterr()
    assert f"no database backup to verify in {missing}" in captured.err
    assert "newest backup" not in captured.out and "Traceback" not in captured.err

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a backup")
    (empty / "stray.srbk").write_bytes(b"no manifest")
    assert main(["backup", "verify", "--latest", "--dir", str(empty)]) == 2
    captured = capsys.readouterr()
    assert f"no database backup to verify in {empty}" in captured.err
    assert "stray.srbk" not in captured.out

    reasons = _verify_reasons(fx_settings)
    for directory in (missing, empty):
        assert f"verify of the newest backup failed: no database backup to verify in {directory}" in reasons


def test_latest_and_file_are_exclusive(fx_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    cli_environment(monkeypatch, fx_settings, tmp_path)
    for argv in (["backup", "verify"], ["backup", "verify", "x.srbk", "--latest"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        assert "FILE" in capsys.readouterr().err
    assert main(["backup", "verify", "x.srbk", "--dir", str(tmp_path)]) == 2
    assert "--dir and --max-age go with --latest" in capsys.readouterr().err


def test_latest_with_a_maximum_age_fails_and_is_audited_when_backups_stopped(
    fx_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from server.ops.backup import latest

    backups = tmp_path / "configured-backups"
    cli_environment(monkeypatch, fx_settings, backups)
    _backup_into_the_configured_directory()
    (backup,) = backups.glob("strongroom-*.srbk")
    capsys.readouterr()
    assert main(["backup", "verify", "--latest", "--max-age", "24", "--quiet"]) == 0
    assert f"backup OK: {backup.name}" in capsys.readouterr().out

    # Two days without a backup (the clock moved on): the good last backup no longer passes.
    real_now = latest.utc_now
    monkeypatch.setattr(latest, "utc_now", lambda: real_now() + timedelta(hours=50))
    assert main(["backup", "verify", "--latest", "--max-age", "24", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "BACKUP BAD" in captured.err and "backups are no longer being taken" in captured.err
    assert "backup OK" not in captured.out
    assert any(reason.startswith("verify of the newest backup failed: the newest backup in") and backup.name in reason
               for reason in _verify_reasons(fx_settings))

    # --max-age needs --latest, and a whole number of hours.
    assert main(["backup", "verify", str(backup), "--max-age", "24"]) == 2
    for bad in ("0", "1.5", "soon"):
        with pytest.raises(SystemExit) as exited:
            main(["backup", "verify", "--latest", "--max-age", bad])
        assert exited.value.code == 2
