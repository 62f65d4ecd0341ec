"""The erasure ledger: an append-only JSONL file beside the keyring recording every crypto-shredding.

Erasing a data subject destroys their DEKs. The database forgets them, but a backup taken before the
erasure still holds the wrapped DEKs, so a restore must destroy them again: the ledger is what it reads.
Order of an erasure: append to the ledger (fsync), then delete the wrapped DEKs, then drop them from caches;
a crash in between leaves the ledger ahead of the database, which the next restore or check repairs.

Each line is a canonical JSON object::

    {"actor":...,"dek_ids":[...],"erased_at":"2026-11-23T10:15:00Z","legal_basis":...,
     "mac":"<hex>","prev_mac":"<hex>","seq":1,"subject_id":...}

``mac`` is HMAC (SHA-256 or SM3, by suite) under the keyring's ledger key over the line without ``mac``,
and ``prev_mac`` is the previous line's ``mac`` (64 zeros for the first). Editing, inserting, removing or
reordering lines breaks the chain at the first affected line. Removing lines from the end does not: compare
``head()`` with the ``mac`` recorded in the audit trail's ``erase`` events to detect that.
"""

from __future__ import annotations

import fcntl
import hmac
import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hmac as crypto_hmac

from server.security.crypto.errors import ErasureLedgerError
from server.security.crypto.suites import KEY_BYTES, Suite, hash_for

__all__ = ["ERASURE_LEDGER_NAME", "ErasureLedger", "ErasureRecord"]

ERASURE_LEDGER_NAME = "erasure-ledger.jsonl"
_GENESIS_MAC = "0" * 64
_MAC_PREFIX = b"strongroom-erasure-ledger\x00"
_FIELDS = frozenset({"seq", "subject_id", "dek_ids", "erased_at", "actor", "legal_basis", "prev_mac", "mac"})


@dataclass(frozen=True, slots=True)
class ErasureRecord:
    """One erasure: whose keys were destroyed, which, when, by whom, and on what legal basis."""

    seq: int
    subject_id: str
    dek_ids: tuple[uuid.UUID, ...]
    erased_at: datetime
    actor: str
    legal_basis: str
    mac: str


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


class ErasureLedger:
    """The ledger file at ``path``, chained with MACs under ``key``.

    Args:
        path: The JSONL file (created with mode 0600 on first append).
        key: The keyring's ledger key (32 bytes).
        suite: Chooses HMAC-SHA256 or HMAC-SM3.
    """

    def __init__(self, path: str | os.PathLike[str], key: bytes, suite: Suite) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the ledger key is {KEY_BYTES} bytes, got {len(key)}")
        self._path = Path(path)
        self._key = bytes(key)
        self._suite = suite

    @classmethod
    def beside(cls, keyring_path: str | os.PathLike[str], key: bytes, suite: Suite) -> ErasureLedger:
        """The ledger in the keyring file's directory."""
        return cls(Path(keyring_path).parent / ERASURE_LEDGER_NAME, key, suite)

    def __repr__(self) -> str:
        return f"ErasureLedger(path={str(self._path)!r})"

    @property
    def path(self) -> Path:
        """The ledger file."""
        return self._path

    def _mac(self, document: dict[str, Any]) -> str:
        mac = crypto_hmac.HMAC(self._key, hash_for(self._suite))
        mac.update(_MAC_PREFIX + _canonical(document))
        return mac.finalize().hex()

    def append(
        self,
        *,
        subject_id: str | uuid.UUID,
        dek_ids: Iterable[uuid.UUID],
        actor: str,
        legal_basis: str,
        erased_at: datetime | None = None,
    ) -> ErasureRecord:
        """Verify the ledger, then append one erasure and fsync it.

        Args:
            subject_id: The data subject (customer or contact id).
            dek_ids: The DEKs destroyed.
            actor: Who erased (user name or id).
            legal_basis: Why, for example ``"GDPR Art. 17"`` or ``"PIPL Art. 47"``.
            erased_at: When; now (UTC) by default.

        Returns:
            The record written, with its ``mac`` (record it in the audit event).

        Raises:
            ErasureLedgerError: The existing ledger fails verification; nothing is appended.
        """
        destroyed = tuple(dek_ids)
        if not destroyed:
            raise ValueError("an erasure destroys at least one DEK")
        if erased_at is None:
            erased_at = datetime.now(UTC)
        elif erased_at.tzinfo is None:
            raise ValueError("erased_at must be timezone-aware")
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            # The lock makes verify-then-append atomic across processes sharing the file.
            fcntl.flock(fd, fcntl.LOCK_EX)
            with os.fdopen(os.dup(fd), "rb") as handle:
                records = self._verify(handle.read())
            document: dict[str, Any] = {
                "seq": len(records) + 1,
                "subject_id": str(subject_id),
                "dek_ids": [str(dek_id) for dek_id in destroyed],
                "erased_at": erased_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "actor": actor,
                "legal_basis": legal_basis,
                "prev_mac": records[-1].mac if records else _GENESIS_MAC,
            }
            document["mac"] = self._mac(document)
            os.write(fd, _canonical(document) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        return self._record(document)

    def read_all(self) -> list[ErasureRecord]:
        """Every erasure, oldest first, after verifying the whole chain (an absent file is an empty ledger).

        Raises:
            ErasureLedgerError: Names the first line that is malformed or breaks the chain.
        """
        try:
            content = self._path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as error:
            raise ErasureLedgerError(f"{self._path}: cannot read erasure ledger ({error.strerror})") from None
        return self._verify(content)

    def destroyed_dek_ids(self) -> frozenset[uuid.UUID]:
        """All DEK ids the ledger says were destroyed (for ``DekCache(destroyed=...)`` and restores)."""
        return frozenset(dek_id for record in self.read_all() for dek_id in record.dek_ids)

    def head(self) -> tuple[int, str]:
        """The last sequence number and MAC (``(0, "000...")`` when empty), to anchor the ledger elsewhere."""
        records = self.read_all()
        return (records[-1].seq, records[-1].mac) if records else (0, _GENESIS_MAC)

    def _verify(self, content: bytes) -> list[ErasureRecord]:
        if content and not content.endswith(b"\n"):
            raise ErasureLedgerError(f"{self._path}: last line is incomplete (interrupted write or truncation)")
        records: list[ErasureRecord] = []
        previous = _GENESIS_MAC
        for number, line in enumerate(content.splitlines(), start=1):
            where = f"{self._path}: line {number}"
            try:
                document = json.loads(line)
            except ValueError:
                raise ErasureLedgerError(f"{where}: not valid JSON") from None
            if not isinstance(document, dict) or set(document) != _FIELDS:
                raise ErasureLedgerError(f"{where}: not an erasure record")
            claimed = document.pop("mac")
            if not isinstance(claimed, str) or not hmac.compare_digest(claimed, self._mac(document)):
                raise ErasureLedgerError(f"{where}: MAC mismatch (the line was altered, or written with another key)")
            if document["prev_mac"] != previous:
                raise ErasureLedgerError(f"{where}: chain broken (a line before it was removed, inserted or moved)")
            if document["seq"] != number:
                raise ErasureLedgerError(f"{where}: sequence number {document['seq']!r}, expected {number}")
            document["mac"] = claimed
            try:
                records.append(self._record(document))
            except (TypeError, ValueError):
                raise ErasureLedgerError(f"{where}: malformed field values") from None
            previous = claimed
        return records

    @staticmethod
    def _record(document: dict[str, Any]) -> ErasureRecord:
        return ErasureRecord(
            seq=int(document["seq"]),
            subject_id=str(document["subject_id"]),
            dek_ids=tuple(uuid.UUID(dek_id) for dek_id in document["dek_ids"]),
            erased_at=datetime.fromisoformat(document["erased_at"]),
            actor=str(document["actor"]),
            legal_basis=str(document["legal_basis"]),
            mac=str(document["mac"]),
        )
