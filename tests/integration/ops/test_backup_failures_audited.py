"""Every ``strongroom backup`` operation that fails leaves an ``error`` event naming the file and the cause, on
SQLite and PostgreSQL, also when nothing was judged (exit 2: a missing tool, key, directory or scratch database);
and a database that cannot take the event changes no exit code."""

from __future__ import annotations

import asyncio
import errno
import json
import sqlite3
from pathlib import Path
from unittest import mock

import pytest

from server.cli import main
from server.config import Settings
from server.ops.backup import create_backup, postgres
from server.ops.backup import restore as restore_module
from server.ops.backup import sqlite as sqlite_backup
from server.ops.backup.errors import BackupInvalid
from server.ops.backup.keys import load_backup_keys

from .conftest import NewDatabase, backup_events, cli_environment, settings_for


def _errors(settings: Settings) -> list[str]:
    """The reasons of the ``error`` events about backups in ``settings``' database, oldest first."""
    details = [json.loads(bytes(event.canonical)) for event in asyncio.run(backup_events(settings))]
    return [str(detail.get("reason")) for detail in details if detail["outcome"] == "error"]


def _no_secrets(settings: Settings, reasons: list[str]) -> None:
    keys = load_backup_keys(settings)
    for reason in reasons:
        assert keys.manifest_key.hex() not in reason and "postgres@" not in reason and "://" not in reason, reason


def _without_scratch_database(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Make verifying impossible; returns the extra CLI arguments and leaves the cause the event must name.

    SQLite: the scratch directory does not exist. PostgreSQL: the client tools are not installed, so the
    scratch database cannot be loaded.
    """
    if settings.is_sqlite:
        return ["--scratch-dir", str(tmp_path / "no-such-scratch-dir")]
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(postgres, "TOOL_DIRS", ())
    return []


def test_a_verification_that_cannot_run_exits_2_and_is_audited(
    fx_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    backups = tmp_path / "backups"
    cli_environment(monkeypatch, fx_settings, backups)
    assert main(["backup", "create", "--quiet"]) == 0
    (backup,) = backups.glob("strongroom-*.srbk")
    cause = "no-such-scratch-dir" if fx_settings.is_sqlite else "pg_restore not found"
    extra = _without_scratch_database(fx_settings, monkeypatch, tmp_path)
    capsys.readouterr()

    assert main(["backup", "verify", str(backup), "--quiet", *extra]) == 2
    assert main(["backup", "verify", "--latest", "--quiet", *extra]) == 2
    assert "Traceback" not in capsys.readouterr().err
    failed = [reason for reason in _errors(fx_settings) if reason.startswith(f"verify of {backup.name} failed: ")]
    assert len(failed) == 2 and all(cause in reason for reason in failed), failed

    # Without the keys: nothing can be judged, by file or as the newest backup.
    monkeypatch.setenv("STRONGROOM_KEYS_DIR", str(tmp_path / "no-keys"))
    assert main(["backup", "verify", str(backup), "--quiet"]) == 2
    assert main(["backup", "verify", "--latest", "--quiet"]) == 2
    reasons = _errors(fx_settings)
    assert any(reason.startswith(f"verify of {backup.name} failed: keyring ") and "not found" in reason
               for reason in reasons), reasons
    assert any(reason.startswith("verify of the newest backup failed: keyring ") for reason in reasons), reasons
    _no_secrets(fx_settings, reasons)


def test_a_create_or_prune_that_fails_exits_2_and_is_audited(
    fx_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    cli_environment(monkeypatch, fx_settings)
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("not a directory")

    assert main(["backup", "create", "--out", str(not_a_directory / "backups"), "--quiet"]) == 2
    assert main(["backup", "prune", "--dir", str(not_a_directory)]) == 2
    monkeypatch.setenv("STRONGROOM_KEYS_DIR", str(tmp_path / "no-keys"))
    assert main(["backup", "create", "--out", str(tmp_path / "backups"), "--quiet"]) == 2
    assert "Traceback" not in capsys.readouterr().err

    reasons = _errors(fx_settings)
    assert f"backup failed: cannot create the backup directory {not_a_directory / 'backups'}: Not a directory" \
        in reasons, reasons
    assert f"prune of {not_a_directory} failed after 0 deletion(s): cannot list {not_a_directory}: Not a directory" \
        in reasons, reasons
    assert any(reason.startswith("backup failed: keyring ") and "not found" in reason for reason in reasons), reasons
    _no_secrets(fx_settings, reasons)


def test_a_restore_that_fails_exits_2_and_is_audited_in_the_target(
    fx_settings: Settings, fx_new_database: NewDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    backup = asyncio.run(create_backup(fx_settings, tmp_path / "backups")).path
    target = settings_for(fx_settings, asyncio.run(fx_new_database()), tmp_path / "target")
    cli_environment(monkeypatch, target)
    assert main(["backup", "restore", str(backup), "--yes", "--quiet"]) == 0

    # A step after the data was replaced fails (here: putting audit archives back from their copies). First:
    # a later restore replaces the trail that holds the events of the refusals below.
    lost = OSError(errno.EIO, "Input/output error", "archive-000001.jsonl")
    with mock.patch.object(restore_module, "_put_back_archives", side_effect=lost):
        assert main(["backup", "restore", str(backup), "--yes", "--quiet"]) == 2
    captured = capsys.readouterr().err
    assert "the data was restored, then the follow-up failed (archive-000001.jsonl: Input/output error" in captured
    assert "Traceback" not in captured

    # No audit signing key beside the keyring: the restored chain could not be verified, so the restore is
    # refused before anything is replaced.
    keys = tmp_path / "keys-without-the-audit-key"
    keys.mkdir(mode=0o700)
    keyring = fx_settings.resolved_keys_dir / "keyring.json"
    (keys / keyring.name).write_bytes(keyring.read_bytes())
    (keys / keyring.name).chmod(0o600)
    monkeypatch.setenv("STRONGROOM_KEYS_DIR", str(keys))
    with mock.patch.object(restore_module, "_replace_data", side_effect=AssertionError("data replaced")):
        assert main(["backup", "restore", str(backup), "--yes", "--quiet"]) == 2
    monkeypatch.setenv("STRONGROOM_KEYS_DIR", str(fx_settings.resolved_keys_dir))
    captured = capsys.readouterr().err
    assert "cannot load the audit key" in captured and "Traceback" not in captured

    # A damaged erasure ledger: refused before anything is replaced (it would bring erased customers back), so
    # the event stays in the target's trail beside the one above.
    ledger = tmp_path / "damaged-ledger.jsonl"
    ledger.write_text("not a ledger line\n")
    monkeypatch.setenv("STRONGROOM_ERASURE_LEDGER_PATH", str(ledger))
    assert main(["backup", "restore", str(backup), "--yes", "--quiet"]) == 2
    monkeypatch.delenv("STRONGROOM_ERASURE_LEDGER_PATH")
    assert "cannot load the keyring and erasure ledger" in capsys.readouterr().err

    reasons = _errors(target)
    assert any(reason.startswith(f"restore of {backup.name} refused, nothing changed: cannot load the keyring and "
                                 f"erasure ledger: {ledger}") for reason in reasons), reasons
    assert any(reason.startswith(f"restore of {backup.name} refused, nothing changed: cannot load the audit key")
               for reason in reasons), reasons
    assert any(reason.startswith(f"restore of {backup.name}: data restored, then the follow-up failed "
                                 "(archive-000001.jsonl: Input/output error") for reason in reasons), reasons
    _no_secrets(fx_settings, reasons)


def test_a_database_that_cannot_take_the_event_changes_no_exit_code(
    fx_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    cli_environment(monkeypatch, fx_settings)
    missing_database = tmp_path / "gone" / "strongroom.db"
    unreachable = (f"sqlite+aiosqlite:///{missing_database}" if fx_settings.is_sqlite
                   else "postgresql+asyncpg://postgres@127.0.0.1:1/strongroom")
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", unreachable)

    assert main(["backup", "verify", str(tmp_path / "missing.srbk"), "--quiet"]) == 2
    assert main(["backup", "verify", "--latest", "--dir", str(tmp_path / "empty"), "--quiet"]) == 2
    assert main(["backup", "create", "--out", str(tmp_path / "backups"), "--quiet"]) == 2
    assert main(["backup", "prune", "--dir", str(tmp_path / "backups")]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("warning: the audit event was not recorded") == 4, captured.err
    assert "Traceback" not in captured.err and "postgres@" not in captured.err
    assert not missing_database.exists()  # not created just to hold an event


def test_an_sqlite_file_whose_tables_are_not_strongroom_s_is_invalid_not_a_crash(tmp_path: Path) -> None:
    """An intact SQLite database (it passes the integrity check) whose audit table lacks the columns the check
    reads: a verdict on the backup, not a traceback."""
    strange = tmp_path / "strange.db"
    connection = sqlite3.connect(strange)
    connection.execute("CREATE TABLE audit_events (seq INTEGER PRIMARY KEY)")
    connection.commit()
    connection.close()
    sqlite_backup.check_database_file(strange)
    with pytest.raises(BackupInvalid, match="not a Strongroom database"):
        sqlite_backup.read_state(strange)
