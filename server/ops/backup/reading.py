"""Opening a backup (or an archive copy) for verify and restore: the manifest, then the whole file against it,
then decryption."""

from __future__ import annotations

from pathlib import Path

from server.ops.backup.encryption import BackupKeys, PlaintextSink, decrypt_stream, read_header
from server.ops.backup.errors import BackupError, BackupInvalid
from server.ops.backup.files import sha256_of
from server.ops.backup.manifest import Manifest, backup_and_manifest, read_manifest
from server.ops.backup.progress import BackupProgress

__all__ = ["check_encrypted_file", "decrypt_backup", "open_backup"]


def check_encrypted_file(encrypted: Path, *, size: int, sha256: str, file_id: str, progress: BackupProgress) -> None:
    """Check an encrypted file against its authenticated manifest before any of its content is used.

    Raises:
        BackupError: It cannot be read.
        BackupInvalid: Its size, SHA-256 or file id differ from the manifest's (altered, truncated, swapped).
    """
    digest, found_size = sha256_of(encrypted, progress)
    if found_size != size:
        raise BackupInvalid(f"{encrypted.name} is {found_size} bytes, its manifest says {size}: truncated or "
                            "extended")
    if digest != sha256:
        raise BackupInvalid(f"{encrypted.name} does not match the SHA-256 in its manifest: altered")
    with encrypted.open("rb") as handle:
        _header, _chunk, found_id, _prefix, _key_id = read_header(handle)
    if found_id.hex() != file_id:
        raise BackupInvalid(f"{encrypted.name} is not the file its manifest describes (file id differs)")


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
    check_encrypted_file(backup, size=manifest.size, sha256=manifest.sha256, file_id=manifest.file_id,
                         progress=progress)
    return backup, manifest


def decrypt_backup(encrypted: Path, sink: PlaintextSink, keys: BackupKeys, progress: BackupProgress) -> int:
    """Decrypt a backup or an archive copy into ``sink``, every chunk authenticated; returns the plaintext bytes.

    Raises:
        BackupInvalid: A chunk fails authentication.
    """
    with encrypted.open("rb") as handle:
        progress.phase(f"decrypting {encrypted.name}", encrypted.stat().st_size)
        return decrypt_stream(handle, sink, keys, progress=progress.advance)
