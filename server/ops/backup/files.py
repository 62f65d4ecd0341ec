"""Files of the backup directory: private creation, durable renames, encryption into a new file, checksums."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO

from server.file_ownership import give_to_directory_owner, make_directory_as_parent_owner
from server.ops.backup.encryption import BackupKeys, EncryptedFile, PlaintextSink, PlaintextSource, encrypt_stream
from server.ops.backup.errors import BackupError
from server.ops.backup.progress import BackupProgress

__all__ = [
    "PARTIAL_SUFFIX",
    "HashingReader",
    "HashingWriter",
    "create_private",
    "encrypt_into",
    "fsync_directory",
    "prepare_directory",
    "sha256_of",
]

_READ_BYTES = 1 << 20
PARTIAL_SUFFIX = ".partial"  # a file being written; renamed once complete (prune removes stale ones)


def prepare_directory(directory: Path) -> None:
    """Create ``directory`` (0700; as root, its nearest existing parent's owner's) if needed and check it is writable.

    Raises:
        BackupError: It cannot be created or written.
    """
    try:
        make_directory_as_parent_owner(directory, 0o700)
    except OSError as error:
        raise BackupError(f"cannot create the backup directory {directory}: {error.strerror}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise BackupError(f"the backup directory {directory} is not writable")


def create_private(path: Path) -> BinaryIO:
    """A new file (mode 0600, never over an existing one; as root, its directory's owner's), open for binary writing.

    A backup written as root into the service user's backup directory must stay readable by the backup job and
    ``prune``, which run as that user; a scratch file in a temporary directory of root's own stays root's.
    """
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        give_to_directory_owner(descriptor, path.parent)
    except BaseException:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "wb")


def encrypt_into(target: Path, source: PlaintextSource, keys: BackupKeys, file_id: bytes,
                 progress: BackupProgress) -> EncryptedFile:
    """Encrypt ``source`` into the new private file ``target`` and fsync it (progress: plaintext bytes)."""
    with create_private(target) as handle:
        encrypted = encrypt_stream(source, handle, keys, file_id=file_id, progress=progress.advance)
        os.fsync(handle.fileno())
    return encrypted


class HashingReader:
    """Reads from ``source`` and hashes every byte read, so a file is checked in the same pass that uses it."""

    def __init__(self, source: PlaintextSource) -> None:
        self._source = source
        self._digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int, /) -> bytes:
        """Read from the source and hash what came."""
        data = self._source.read(size)
        self._digest.update(data)
        self.size += len(data)
        return data

    def hexdigest(self) -> str:
        """SHA-256 of everything read so far."""
        return self._digest.hexdigest()


class HashingWriter:
    """Hashes everything written, and passes it on to ``sink`` if there is one (none: check without a copy)."""

    def __init__(self, sink: PlaintextSink | None = None) -> None:
        self._sink = sink
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes, /) -> int:
        """Hash ``data`` and pass it on."""
        self._digest.update(data)
        self.size += len(data)
        if self._sink is not None:
            self._sink.write(data)
        return len(data)

    def flush(self) -> None:
        """Flush the sink."""
        if self._sink is not None:
            self._sink.flush()

    def hexdigest(self) -> str:
        """SHA-256 of everything written so far."""
        return self._digest.hexdigest()


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
