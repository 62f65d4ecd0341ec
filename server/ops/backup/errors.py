"""What can go wrong with a backup, sorted by what the operator must do about it."""

from __future__ import annotations

__all__ = ["ArchivesUnprotected", "BackupError", "BackupInvalid", "BackupRefused"]


class BackupError(Exception):
    """A usage, environment or I/O problem: a missing file, an unreachable database, a missing privilege or tool.

    The backup itself is not shown to be bad (``strongroom backup`` exits 2).
    """


class BackupInvalid(Exception):
    """The backup is bad: its manifest or file was altered, truncated or does not match (exit 1)."""


class BackupRefused(Exception):
    """The backup is intact but cannot be restored here, e.g. its schema is newer than this code (exit 1)."""


class ArchivesUnprotected(Exception):
    """The database backup was written, but audit archive files it records could not be copied beside it
    (missing, altered or unreadable): their events may exist nowhere else (exit 1)."""
