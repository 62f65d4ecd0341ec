"""The manifest beside every backup file: what the backup holds and how to check it, authenticated by an HMAC.

``strongroom-20261123T023000Z-1a2b.srbk`` has ``strongroom-20261123T023000Z-1a2b.srbk.manifest.json``::

    {"audit_head": {"hash": "<hex>", "seq": 1234}, "cipher": "aes-256-gcm-stream-v1", "created_at":
     "2026-11-23T02:30:00Z", "database": "postgresql", "file": "strongroom-...srbk", "file_id": "<hex>",
     "format": "strongroom-backup-manifest", "key_id": "<hex>", "mac": "<hex>", "pending_audit_events": 0,
     "plaintext_bytes": 123, "schema_revision": "e3a1c2d4b5f6", "sha256": "<hex>", "size": 456,
     "strongroom_version": "0.1.0", "version": 1}

``mac`` is HMAC-SHA256, under a key derived from the backup key, over the canonical JSON of every other field:
editing any field (a checksum, the schema revision, the audit head) without the backup key is detected.
``key_id`` is a one-way fingerprint of the backup key; the key itself is never written.
"""

from __future__ import annotations

import hmac
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any, Final

from server.ops.backup.encryption import BackupKeys
from server.ops.backup.errors import BackupError, BackupInvalid, BackupRefused

__all__ = [
    "BACKUP_SUFFIX",
    "MANIFEST_SUFFIX",
    "AuditHead",
    "Manifest",
    "SnapshotState",
    "backup_and_manifest",
    "manifest_path",
    "read_manifest",
    "write_manifest",
]

MANIFEST_FORMAT: Final = "strongroom-backup-manifest"
MANIFEST_VERSION: Final = 1
CIPHER: Final = "aes-256-gcm-stream-v1"
BACKUP_SUFFIX: Final = ".srbk"
MANIFEST_SUFFIX: Final = ".manifest.json"
_MAC_PREFIX: Final = b"strongroom-backup-manifest\x00"
_MAX_MANIFEST_BYTES: Final = 64 * 1024
_FIELDS: Final = frozenset({
    "format", "version", "file", "file_id", "size", "sha256", "plaintext_bytes", "cipher", "database",
    "schema_revision", "created_at", "strongroom_version", "audit_head", "pending_audit_events", "key_id", "mac",
})


@dataclass(frozen=True, slots=True)
class AuditHead:
    """The newest sealed audit event in the snapshot: its sequence number and chain hash (hex)."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class SnapshotState:
    """What a snapshot holds, read from the snapshot itself: schema revision, audit head, pending events."""

    schema_revision: str | None
    audit_head: AuditHead | None
    pending_audit_events: int


@dataclass(frozen=True, slots=True)
class Manifest:
    """What one backup holds. ``created_at`` is UTC; ``audit_head`` is None for an empty trail."""

    file: str
    file_id: str
    size: int
    sha256: str
    plaintext_bytes: int
    database: str
    schema_revision: str | None
    created_at: datetime
    strongroom_version: str
    audit_head: AuditHead | None
    pending_audit_events: int
    key_id: str
    cipher: str = CIPHER

    def document(self) -> dict[str, Any]:
        """The JSON object without ``mac``."""
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "file": self.file,
            "file_id": self.file_id,
            "size": self.size,
            "sha256": self.sha256,
            "plaintext_bytes": self.plaintext_bytes,
            "cipher": self.cipher,
            "database": self.database,
            "schema_revision": self.schema_revision,
            "created_at": self.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "strongroom_version": self.strongroom_version,
            "audit_head": None if self.audit_head is None else {"seq": self.audit_head.seq,
                                                                "hash": self.audit_head.hash},
            "pending_audit_events": self.pending_audit_events,
            "key_id": self.key_id,
        }


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _mac(document: dict[str, Any], keys: BackupKeys) -> str:
    return hmac.new(keys.manifest_key, _MAC_PREFIX + _canonical(document), sha256).hexdigest()


def manifest_path(backup: Path) -> Path:
    """The manifest beside ``backup``."""
    return backup.with_name(backup.name + MANIFEST_SUFFIX)


def backup_and_manifest(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The (backup file, manifest) pair named by either of them."""
    given = Path(path)
    if given.name.endswith(MANIFEST_SUFFIX):
        return given.with_name(given.name[: -len(MANIFEST_SUFFIX)]), given
    return given, manifest_path(given)


def write_manifest(path: Path, manifest: Manifest, keys: BackupKeys) -> None:
    """Write the authenticated manifest (mode 0600, fsync'd; never over an existing file)."""
    document = manifest.document()
    document["mac"] = _mac(document, keys)
    text = json.dumps(document, sort_keys=True, indent=2) + "\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _field(document: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = document[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BackupInvalid(f"manifest field {name!r} has the wrong type")
    return value


def _parse(document: dict[str, Any]) -> Manifest:
    head = document["audit_head"]
    if head is not None:
        if not (isinstance(head, dict) and set(head) == {"seq", "hash"} and isinstance(head["seq"], int)
                and isinstance(head["hash"], str)):
            raise BackupInvalid("manifest field 'audit_head' is malformed")
        head = AuditHead(seq=head["seq"], hash=head["hash"])
    revision = document["schema_revision"]
    if revision is not None and not isinstance(revision, str):
        raise BackupInvalid("manifest field 'schema_revision' has the wrong type")
    try:
        created = datetime.strptime(_field(document, "created_at", str), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise BackupInvalid("manifest field 'created_at' is not a UTC time") from None
    return Manifest(
        file=_field(document, "file", str),
        file_id=_field(document, "file_id", str),
        size=_field(document, "size", int),
        sha256=_field(document, "sha256", str),
        plaintext_bytes=_field(document, "plaintext_bytes", int),
        database=_field(document, "database", str),
        schema_revision=revision,
        created_at=created,
        strongroom_version=_field(document, "strongroom_version", str),
        audit_head=head,
        pending_audit_events=_field(document, "pending_audit_events", int),
        key_id=_field(document, "key_id", str),
        cipher=_field(document, "cipher", str),
    )


def read_manifest(path: Path, keys: BackupKeys) -> Manifest:
    """Read a manifest and check its MAC.

    Raises:
        BackupError: The manifest cannot be read.
        BackupRefused: It was made with another backup key (this keyring cannot check or decrypt it).
        BackupInvalid: Not a manifest, or a field was edited (MAC mismatch).
    """
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise BackupError(f"no manifest {path} (each backup file has one beside it)") from None
    except OSError as error:
        raise BackupError(f"cannot read {path}: {error.strerror}") from None
    if len(raw) > _MAX_MANIFEST_BYTES:
        raise BackupInvalid(f"{path.name} is too large to be a manifest")
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BackupInvalid(f"{path.name} is not valid JSON") from None
    if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
        raise BackupInvalid(f"{path.name} is not a Strongroom backup manifest")
    if document.get("version") != MANIFEST_VERSION:
        raise BackupInvalid(f"{path.name}: unknown manifest version {document.get('version')!r}")
    if set(document) != _FIELDS:
        raise BackupInvalid(f"{path.name}: fields added or missing ({sorted(set(document) ^ _FIELDS)})")
    if document["key_id"] != keys.key_id:
        raise BackupRefused(f"the backup was made with backup key {document['key_id']!r}; this keyring's backup "
                            f"key is {keys.key_id!r} (restore the keyring the backup was made with)")
    claimed = document.pop("mac")
    if not isinstance(claimed, str) or not hmac.compare_digest(claimed, _mac(document, keys)):
        raise BackupInvalid(f"{path.name}: MAC mismatch, the manifest was edited")
    return _parse(document)
