"""SQLite files for backups: online snapshots and restores through SQLite's backup API (``Connection.backup``).

The backup API copies pages under SQLite's own locking, so it sees one consistent state of a database that other
processes keep writing (in WAL mode writers are not blocked while it reads), and a restore writes the target
under its write lock, WAL included. Copying the file with ``cp`` does neither.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Final

from sqlalchemy.engine import make_url

from server.file_ownership import give_file_to_directory_owner
from server.ops.backup.errors import BackupError, BackupInvalid
from server.ops.backup.manifest import AuditHead, SnapshotState

__all__ = ["check_database_file", "copy_into", "read_state", "snapshot", "sqlite_path"]

BUSY_TIMEOUT_MS: Final = 30_000
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"


def sqlite_path(url: str) -> Path:
    """The database file an ``sqlite+aiosqlite:///`` URL names."""
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up or restored")
    return Path(database)


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return connection


def _tables(connection: sqlite3.Connection) -> set[str]:
    return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def read_state(path: Path) -> SnapshotState:
    """Read the schema revision, the audit head and the number of pending audit events of an SQLite file.

    Raises:
        BackupInvalid: The file is an intact SQLite database whose tables are not Strongroom's.
    """
    connection = _connect(path)
    try:
        return _state(connection)
    except sqlite3.Error as error:
        raise BackupInvalid(f"the SQLite database's tables are not a Strongroom database's ({error})") from None
    finally:
        connection.close()


def _state(connection: sqlite3.Connection) -> SnapshotState:
    tables = _tables(connection)
    revision = None
    if "alembic_version" in tables:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        revision = str(row[0]) if row else None
    head = None
    if "audit_events" in tables:
        row = connection.execute("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
        head = AuditHead(seq=int(row[0]), hash=bytes(row[1]).hex()) if row else None
    pending = 0
    if "audit_pending" in tables:
        pending = int(connection.execute("SELECT count(*) FROM audit_pending").fetchone()[0])
    return SnapshotState(revision, head, pending)


def snapshot(source: Path, target: Path) -> None:
    """Copy the live database ``source`` into the new file ``target`` (mode 0600) in one consistent step.

    One ``backup`` step of all pages: a step-wise copy restarts whenever another process writes, and could then
    never finish under a steady write load. The read lock it holds does not block WAL writers.

    Raises:
        BackupError: ``source`` does not exist or cannot be read.
    """
    if not source.is_file():
        raise BackupError(f"no SQLite database at {source}")
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    os.close(descriptor)
    try:
        # mode=rw: never create an empty database where the real one is missing (nothing is written through it).
        reader = sqlite3.connect(source.resolve().as_uri() + "?mode=rw", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as error:
        raise BackupError(f"cannot open {source}: {error}") from None
    try:
        reader.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        writer = sqlite3.connect(target)
        try:
            reader.backup(writer, pages=-1)
            # A self-contained file: no -wal beside it is needed to read it (the server turns WAL on again).
            writer.execute("PRAGMA journal_mode=DELETE")
        finally:
            writer.close()
    except sqlite3.Error as error:
        raise BackupError(f"SQLite snapshot of {source} failed: {error}") from None
    finally:
        reader.close()


def check_database_file(path: Path) -> None:
    """Check a decrypted file is an intact SQLite database.

    Raises:
        BackupInvalid: Not SQLite, or ``PRAGMA integrity_check`` finds damage.
    """
    with path.open("rb") as handle:
        if handle.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
            raise BackupInvalid("the decrypted backup is not an SQLite database")
    connection = _connect(path)
    try:
        verdict = [row[0] for row in connection.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as error:
        raise BackupInvalid(f"the decrypted backup is a damaged SQLite database: {error}") from None
    finally:
        connection.close()
    if verdict != ["ok"]:
        raise BackupInvalid(f"the decrypted backup fails SQLite's integrity check ({len(verdict)} problems)")


def copy_into(source: Path, target: Path) -> None:
    """Replace the whole content of the database ``target`` (created if absent) with the file ``source``.

    Run as root, the target is the owner's of its directory before anything is written, and so are the journal,
    WAL and shared-memory files SQLite creates beside it (SQLite gives them the database file's owner).

    Raises:
        BackupError: The target is locked for longer than the busy timeout, or cannot be written.
        OSError: As root, the target is a symbolic link or has other hard links.
    """
    give_file_to_directory_owner(target)
    try:
        reader = sqlite3.connect(source)
        try:
            writer = _connect(target)
            try:
                reader.backup(writer, pages=-1)
            finally:
                writer.close()
        finally:
            reader.close()
    except sqlite3.Error as error:
        raise BackupError(f"cannot restore into {target}: {error} (is a server still running on it?)") from None
