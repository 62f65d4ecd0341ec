"""Opening a backup for verify and restore: the manifest, then the whole file against it, then decryption."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from server.ops.backup.encryption import BackupKeys, decrypt_stream, read_header
from server.ops.backup.errors import BackupError, BackupInvalid
from server.ops.backup.files import sha256_of
from server.ops.backup.manifest import Manifest, backup_and_manifest, read_manifest
from server.ops.backup.progress import BackupProgress

__all__ = ["decrypt_backup", "open_backup"]


def open_backup(path: str | Path, keys: BackupKeys, progress: BackupProgress) -> tuple[Path, Manifest]:
    """Check a backup before any of its content is used: manifest MAC, file size and SHA-256, file id.

    Args:
        path: The backup file or its manifest.
        keys: The backup keys.
        progress: For the checksum pass.

    Returns:
        The backup file and its authenticated manifest.

    Raises:
        BackupError: A file is missing or unreadable.
        BackupRefused: Made with another backup key.
        BackupInvalid: The manifest was edited, or the file does not match it (altered, truncated, swapped).
    """
    backup, manifest_file = backup_and_manifest(path)
    if not backup.is_file():
        raise BackupError(f"no backup file {backup}")
    manifest = read_manifest(manifest_file, keys)
    digest, size = sha256_of(backup, progress)
    if size != manifest.size:
        raise BackupInvalid(f"{backup.name} is {size} bytes, its manifest says {manifest.size}: truncated or "
                            "extended")
    if digest != manifest.sha256:
        raise BackupInvalid(f"{backup.name} does not match the SHA-256 in its manifest: altered")
    with backup.open("rb") as handle:
        _header, _chunk, file_id, _prefix, _key_id = read_header(handle)
    if file_id.hex() != manifest.file_id:
        raise BackupInvalid(f"{backup.name} is not the file its manifest describes (file id differs)")
    return backup, manifest


def decrypt_backup(backup: Path, sink: IO[bytes], keys: BackupKeys, progress: BackupProgress) -> int:
    """Decrypt ``backup`` into ``sink``, every chunk authenticated; returns the plaintext bytes.

    Raises:
        BackupInvalid: A chunk fails authentication.
    """
    with backup.open("rb") as handle:
        progress.phase(f"decrypting {backup.name}", backup.stat().st_size)
        return decrypt_stream(handle, sink, keys, progress=progress.advance)
