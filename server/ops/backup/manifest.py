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

The copies of audit archive files in the backup directory have manifests of their own kind
(:mod:`server.ops.backup.archive_manifest`), written and authenticated by the same functions under another MAC
domain, so that neither kind can pass for the other.
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

from server.file_ownership import give_to_directory_owner
from server.ops.backup.encryption import BackupKeys
from server.ops.backup.errors import BackupError, BackupInvalid, BackupRefused

__all__ = [
    "ARCHIVE_COPY_FORMAT",
    "BACKUP_SUFFIX",
    "MANIFEST_SUFFIX",
    "AuditHead",
    "Manifest",
    "SignedDocumentKind",
    "SnapshotState",
    "backup_and_manifest",
    "format_utc_time",
    "manifest_format",
    "manifest_path",
    "read_manifest",
    "read_signed_document",
    "typed_field",
    "utc_time_field",
    "write_manifest",
    "write_signed_document",
]

MANIFEST_FORMAT: Final = "strongroom-backup-manifest"
ARCHIVE_COPY_FORMAT: Final = "strongroom-archive-copy-manifest"
MANIFEST_VERSION: Final = 1
CIPHER: Final = "aes-256-gcm-stream-v1"
BACKUP_SUFFIX: Final = ".srbk"
MANIFEST_SUFFIX: Final = ".manifest.json"
_MAX_MANIFEST_BYTES: Final = 64 * 1024
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True, slots=True)
class SignedDocumentKind:
    """One kind of authenticated document: its ``format`` value, version, exact field set and MAC domain.

    The MAC domain differs per kind, so a document of one kind can never be passed off as another, even with
    its ``format`` field edited.
    """

    format: str
    version: int
    fields: frozenset[str]
    mac_domain: bytes
    title: str


DATABASE_BACKUP: Final = SignedDocumentKind(
    format=MANIFEST_FORMAT, version=MANIFEST_VERSION, mac_domain=b"strongroom-backup-manifest\x00",
    title="Strongroom backup manifest",
    fields=frozenset({
        "format", "version", "file", "file_id", "size", "sha256", "plaintext_bytes", "cipher", "database",
        "schema_revision", "created_at", "strongroom_version", "audit_head", "pending_audit_events", "key_id",
        "mac",
    }),
)


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
            "created_at": format_utc_time(self.created_at),
            "strongroom_version": self.strongroom_version,
            "audit_head": None if self.audit_head is None else {"seq": self.audit_head.seq,
                                                                "hash": self.audit_head.hash},
            "pending_audit_events": self.pending_audit_events,
            "key_id": self.key_id,
        }


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _mac(document: dict[str, Any], keys: BackupKeys, kind: SignedDocumentKind) -> str:
    return hmac.new(keys.manifest_key, kind.mac_domain + _canonical(document), sha256).hexdigest()


def manifest_path(backup: Path) -> Path:
    """The manifest beside ``backup``."""
    return backup.with_name(backup.name + MANIFEST_SUFFIX)


def backup_and_manifest(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The (backup file, manifest) pair named by either of them."""
    given = Path(path)
    if given.name.endswith(MANIFEST_SUFFIX):
        return given.with_name(given.name[: -len(MANIFEST_SUFFIX)]), given
    return given, manifest_path(given)


def write_signed_document(path: Path, document: dict[str, Any], keys: BackupKeys, kind: SignedDocumentKind) -> None:
    """Write ``document`` (every field of ``kind`` but ``mac``) with its MAC: mode 0600 (as root, the directory
    owner's), fsync'd, never over an existing file."""
    signed = {**document, "mac": _mac(document, keys, kind)}
    text = json.dumps(signed, sort_keys=True, indent=2) + "\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        give_to_directory_owner(handle.fileno(), path.parent)
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def write_manifest(path: Path, manifest: Manifest, keys: BackupKeys) -> None:
    """Write the authenticated manifest (mode 0600, fsync'd; never over an existing file)."""
    write_signed_document(path, manifest.document(), keys, DATABASE_BACKUP)


def typed_field(document: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """``document[name]``, which must be a ``kind`` (never a bool).

    Raises:
        BackupInvalid: It is not.
    """
    value = document[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BackupInvalid(f"manifest field {name!r} has the wrong type")
    return value


def utc_time_field(document: dict[str, Any], name: str) -> datetime:
    """``document[name]`` as written by ``format_utc_time``.

    Raises:
        BackupInvalid: It is not such a time.
    """
    try:
        return datetime.strptime(typed_field(document, name, str), _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise BackupInvalid(f"manifest field {name!r} is not a UTC time") from None


def format_utc_time(moment: datetime) -> str:
    """A manifest's time: UTC, to the second."""
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


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
    created = utc_time_field(document, "created_at")
    return Manifest(
        file=typed_field(document, "file", str),
        file_id=typed_field(document, "file_id", str),
        size=typed_field(document, "size", int),
        sha256=typed_field(document, "sha256", str),
        plaintext_bytes=typed_field(document, "plaintext_bytes", int),
        database=typed_field(document, "database", str),
        schema_revision=revision,
        created_at=created,
        strongroom_version=typed_field(document, "strongroom_version", str),
        audit_head=head,
        pending_audit_events=typed_field(document, "pending_audit_events", int),
        key_id=typed_field(document, "key_id", str),
        cipher=typed_field(document, "cipher", str),
    )


def _load_document(path: Path) -> dict[str, Any]:
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
    if not isinstance(document, dict):
        raise BackupInvalid(f"{path.name} is not a Strongroom backup manifest")
    return document


def manifest_format(path: Path) -> str | None:
    """The ``format`` a manifest claims, unauthenticated: only to choose the reader, which authenticates it.

    Raises:
        BackupError: The manifest cannot be read.
        BackupInvalid: Not a JSON object.
    """
    claimed = _load_document(path).get("format")
    return claimed if isinstance(claimed, str) else None


def read_signed_document(path: Path, keys: BackupKeys, kind: SignedDocumentKind) -> dict[str, Any]:
    """Read a document of ``kind`` and check its fields and MAC; returns it without ``mac``.

    Raises:
        BackupError: The manifest cannot be read.
        BackupRefused: It was made with another backup key (this keyring cannot check or decrypt it).
        BackupInvalid: Not a manifest of this kind, or a field was edited (MAC mismatch).
    """
    document = _load_document(path)
    if document.get("format") != kind.format:
        raise BackupInvalid(f"{path.name} is not a {kind.title}")
    if document.get("version") != kind.version:
        raise BackupInvalid(f"{path.name}: unknown manifest version {document.get('version')!r}")
    if set(document) != kind.fields:
        raise BackupInvalid(f"{path.name}: fields added or missing ({sorted(set(document) ^ kind.fields)})")
    if document["key_id"] != keys.key_id:
        raise BackupRefused(f"the backup was made with backup key {document['key_id']!r}; this keyring's backup "
                            f"key is {keys.key_id!r} (restore the keyring the backup was made with)")
    claimed = document.pop("mac")
    if not isinstance(claimed, str) or not hmac.compare_digest(claimed, _mac(document, keys, kind)):
        raise BackupInvalid(f"{path.name}: MAC mismatch, the manifest was edited")
    return document


def read_manifest(path: Path, keys: BackupKeys) -> Manifest:
    """Read a database backup's manifest and check its MAC.

    Raises:
        BackupError: The manifest cannot be read, or it describes a copy of an audit archive, not a database.
        BackupRefused: It was made with another backup key (this keyring cannot check or decrypt it).
        BackupInvalid: Not a manifest, or a field was edited (MAC mismatch).
    """
    if manifest_format(path) == ARCHIVE_COPY_FORMAT:
        raise BackupError(f"{path.name} describes a copy of an audit archive, not a database backup (restoring a "
                          "database backup puts its archives back)")
    return _parse(read_signed_document(path, keys, DATABASE_BACKUP))
