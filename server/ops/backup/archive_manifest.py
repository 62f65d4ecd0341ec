"""The manifest beside each encrypted copy of an audit archive file in the backup directory.

``audit-archive-000001-1-33-20261123T125115Z-e6147e.jsonl.srbk`` has ``<that name>.manifest.json``::

    {"archive": 1, "archive_bytes": 40213, "archive_file": "audit-archive-000001-1-33-20261123T125115Z-e6147e.jsonl",
     "archive_sha256": "<hex>", "cipher": "aes-256-gcm-stream-v1", "copied_at": "2026-11-24T02:30:00Z",
     "file": "audit-archive-...jsonl.srbk", "file_id": "<hex>", "first_seq": 1, "format":
     "strongroom-archive-copy-manifest", "key_id": "<hex>", "last_seq": 33, "mac": "<hex>", "sha256": "<hex>",
     "size": 40325, "strongroom_version": "0.1.0", "version": 1}

``size`` and ``sha256`` describe the encrypted copy; ``archive_*``, ``first_seq`` and ``last_seq`` the archive as
its row in ``audit_archives`` records it. Authenticated like a database backup's manifest (HMAC under a key
derived from the backup key), under a MAC domain of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from server.ops.backup.encryption import BackupKeys
from server.ops.backup.manifest import (
    ARCHIVE_COPY_FORMAT,
    CIPHER,
    SignedDocumentKind,
    format_utc_time,
    read_signed_document,
    typed_field,
    utc_time_field,
    write_signed_document,
)

__all__ = ["ARCHIVE_COPY", "ArchiveCopyManifest", "read_archive_manifest", "write_archive_manifest"]

ARCHIVE_COPY: Final = SignedDocumentKind(
    format=ARCHIVE_COPY_FORMAT, version=1, mac_domain=b"strongroom-archive-copy-manifest\x00",
    title="Strongroom archive copy manifest",
    fields=frozenset({
        "format", "version", "file", "file_id", "size", "sha256", "cipher", "archive", "archive_file",
        "archive_sha256", "archive_bytes", "first_seq", "last_seq", "copied_at", "strongroom_version", "key_id",
        "mac",
    }),
)

# Every field but format, version, mac and the time, with the type it must have.
_FIELD_TYPES: Final[dict[str, type]] = {
    "file": str, "file_id": str, "size": int, "sha256": str, "cipher": str, "archive": int, "archive_file": str,
    "archive_sha256": str, "archive_bytes": int, "first_seq": int, "last_seq": int, "strongroom_version": str,
    "key_id": str,
}


@dataclass(frozen=True, slots=True)
class ArchiveCopyManifest:
    """One encrypted copy of an archive file: the copy (``file`` ... ``sha256``) and the archive it holds."""

    file: str
    file_id: str
    size: int
    sha256: str
    archive: int
    archive_file: str
    archive_sha256: str
    archive_bytes: int
    first_seq: int
    last_seq: int
    copied_at: datetime
    strongroom_version: str
    key_id: str
    cipher: str = CIPHER

    def document(self) -> dict[str, Any]:
        """The JSON object without ``mac``."""
        return {
            "format": ARCHIVE_COPY.format,
            "version": ARCHIVE_COPY.version,
            "file": self.file,
            "file_id": self.file_id,
            "size": self.size,
            "sha256": self.sha256,
            "cipher": self.cipher,
            "archive": self.archive,
            "archive_file": self.archive_file,
            "archive_sha256": self.archive_sha256,
            "archive_bytes": self.archive_bytes,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "copied_at": format_utc_time(self.copied_at),
            "strongroom_version": self.strongroom_version,
            "key_id": self.key_id,
        }


def write_archive_manifest(path: Path, manifest: ArchiveCopyManifest, keys: BackupKeys) -> None:
    """Write the authenticated manifest (mode 0600, fsync'd; never over an existing file)."""
    write_signed_document(path, manifest.document(), keys, ARCHIVE_COPY)


def read_archive_manifest(path: Path, keys: BackupKeys) -> ArchiveCopyManifest:
    """Read an archive copy's manifest and check its MAC.

    Raises:
        BackupError: The manifest cannot be read.
        BackupRefused: It was made with another backup key.
        BackupInvalid: Not an archive copy manifest, or a field was edited (MAC mismatch).
    """
    document = read_signed_document(path, keys, ARCHIVE_COPY)
    values = {name: typed_field(document, name, kind) for name, kind in _FIELD_TYPES.items()}
    return ArchiveCopyManifest(**values, copied_at=utc_time_field(document, "copied_at"))
