"""``strongroom backup create`` and ``restore`` run as root, into directories the service user owns, on SQLite and
PostgreSQL: every file and directory they write there is the service user's, who can then use it (the server must
start on a restored database; the backup job and ``prune`` must read the backups).

``nobody`` stands in for the service user. These tests need root (CI and this sandbox run as root).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from server.audit.tags import AuditAction
from server.cli import main
from server.config import Settings
from server.ops.backup import create_backup
from server.ops.backup.events import record_backup_event_at

from .conftest import NewDatabase, archive_directory, archive_new_events, cli_environment, settings_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="running a command as root needs root")

SERVICE_UID, SERVICE_GID = 65534, 65534  # nobody / nogroup: neither root nor the test's user


@pytest.fixture(name="fx_reachable_dir")
def fx_reachable_dir() -> Iterator[Path]:
    """A directory the service user can reach (pytest's own temporary directories are root's alone, 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="strongroom-as-root-"))
    directory.chmod(0o711)
    yield directory
    shutil.rmtree(directory)


def _owned_by_the_service_user(path: Path) -> Path:
    path.mkdir(parents=True)
    os.chown(path, SERVICE_UID, SERVICE_GID)
    return path


def _foreign_owners(directory: Path) -> list[tuple[str, int, int]]:
    """Every path under ``directory`` that is not the service user's, with its owner and group."""
    found = []
    for path in sorted(directory.rglob("*")):
        info = path.lstat()
        if (info.st_uid, info.st_gid) != (SERVICE_UID, SERVICE_GID):
            found.append((str(path.relative_to(directory)), info.st_uid, info.st_gid))
    return found


def _as_the_service_user(work: Callable[[], object]) -> int:
    """Run ``work`` in a forked process that has become the service user; its exit code (0: it returned)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgroups([])
            os.setgid(SERVICE_GID)
            os.setuid(SERVICE_UID)
            work()
            code = 0
        except BaseException:  # reported by the exit code, and on stderr
            traceback.print_exc()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _read_and_write(data_dir: Path, sqlite_url: str | None) -> None:
    """Read every file in ``data_dir``; write into the SQLite database through the server's own engine (its write
    lock file, the WAL): a root-owned database or lock file would make every write of the server fail."""
    for path in data_dir.rglob("*"):
        if path.is_file():
            path.read_bytes()
    if sqlite_url is not None and not asyncio.run(
            record_backup_event_at(sqlite_url, action=AuditAction.BACKUP, reason="written by the service user")):
        raise RuntimeError("the service user cannot write into the restored database")


def test_a_restore_run_as_root_leaves_files_the_service_user_owns_and_can_use(
    fx_installation: Settings, fx_settings: Settings, fx_new_database: NewDatabase, fx_reachable_dir: Path,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    asyncio.run(archive_new_events(fx_installation))
    backup = asyncio.run(create_backup(fx_installation, tmp_path / "backups")).path
    # A new host: the data directory exists and is the service user's, nothing is in it yet.
    data_dir = _owned_by_the_service_user(fx_reachable_dir / "new-host")
    url = f"sqlite+aiosqlite:///{data_dir / 'strongroom.db'}" if fx_settings.is_sqlite \
        else asyncio.run(fx_new_database())
    new_host = settings_for(fx_settings, url, data_dir)
    cli_environment(monkeypatch, new_host)

    assert main(["backup", "restore", str(backup), "--yes", "--quiet"]) == 0

    written = sorted(path.name for path in data_dir.rglob("*"))
    archives = [path.name for path in archive_directory(new_host).iterdir()]
    assert archives and set(archives) <= set(written)
    assert ("strongroom.db" in written) == fx_settings.is_sqlite
    assert _foreign_owners(data_dir) == []
    for name in ["strongroom.db", *archives] if fx_settings.is_sqlite else archives:
        path = next(data_dir.rglob(name))
        assert path.stat().st_mode & 0o077 == 0, path  # still private to the service user

    sqlite_url = url if fx_settings.is_sqlite else None
    assert _as_the_service_user(lambda: _read_and_write(data_dir, sqlite_url)) == 0
    assert _foreign_owners(data_dir) == []


def test_a_backup_run_as_root_into_the_service_users_directory_is_that_users(
    fx_installation: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    asyncio.run(archive_new_events(fx_installation))
    backups = _owned_by_the_service_user(tmp_path / "backups")
    cli_environment(monkeypatch, fx_installation)

    # Into the directory, and into a new one beneath it (created, like the files, as the service user's).
    for out in (backups, backups / "pre-upgrade"):
        assert main(["backup", "create", "--out", str(out), "--quiet"]) == 0
    files = sorted(path for path in backups.rglob("*") if path.is_file())
    assert len(files) == 8  # per directory: the backup, the archive copy, and their manifests
    assert _foreign_owners(backups) == []
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in files)
    assert (backups / "pre-upgrade").stat().st_mode & 0o777 == 0o700
