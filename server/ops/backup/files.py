"""Files of the backup directory: private creation, durable renames, checksums."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO

from server.ops.backup.errors import BackupError
from server.ops.backup.progress import BackupProgress

__all__ = ["create_private", "fsync_directory", "prepare_directory", "sha256_of"]

_READ_BYTES = 1 << 20


def prepare_directory(directory: Path) -> None:
    """Create ``directory`` (0700) if needed and check it is writable.

    Raises:
        BackupError: It cannot be created or written.
    """
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise BackupError(f"cannot create the backup directory {directory}: {error.strerror}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise BackupError(f"the backup directory {directory} is not writable")


def create_private(path: Path) -> BinaryIO:
    """A new file (mode 0600, never over an existing one), open for binary writing."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    return os.fdopen(descriptor, "wb")


def fsync_directory(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    descriptor = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sha256_of(path: Path, progress: BackupProgress) -> tuple[str, int]:
    """The SHA-256 (hex) and size of a file, read once.

    Raises:
        BackupError: It cannot be read.
    """
    digest = hashlib.sha256()
    done = 0
    try:
        with path.open("rb") as handle:
            progress.phase(f"checksum of {path.name}", os.fstat(handle.fileno()).st_size)
            while block := handle.read(_READ_BYTES):
                digest.update(block)
                done += len(block)
                progress.advance(done)
    except FileNotFoundError:
        raise BackupError(f"no backup file {path}") from None
    except OSError as error:
        raise BackupError(f"cannot read {path}: {error.strerror}") from None
    return digest.hexdigest(), done
