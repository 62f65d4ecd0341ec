"""The audit trail in the database: verification, signed checkpoints, compliance queries and exports."""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.canonical import decode_event, format_timestamp
from server.audit.chain import GENESIS_HASH, ChainReport, verify_chain
from server.audit.checkpoint import (
    Checkpoint,
    generate_signing_key,
    key_id,
    private_key_from_pem,
    private_key_to_pem,
)
from server.audit.export import SignedCheckpoint, build_export
from server.audit.merkle import MerkleTree, leaf_hash
from server.audit.models import AuditCheckpoint, AuditEventField, AuditEventRecord
from server.domain.base import utc_now

SIGNING_KEY_FILE = "audit-signing.pem"
BATCH = 20_000


def load_or_create_audit_key(keys_dir: Path, *, create: bool) -> Ed25519PrivateKey:
    """The Ed25519 checkpoint signing key (0600 PEM); created by ``strongroom init``, never overwritten."""
    path = keys_dir / SIGNING_KEY_FILE
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"audit signing key {path} not found; run `strongroom init` first")
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(private_key_to_pem(generate_signing_key(), None))
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermissionError(f"key file {path} is readable by group or others; chmod 600 it")
    return private_key_from_pem(path.read_bytes(), None)


@dataclass(frozen=True, slots=True)
class TrailReport:
    """The verdict on the stored trail: the chain, and the newest checkpoint against the events."""

    ok: bool
    events: int
    first_bad_seq: int | None
    problem: str | None
    detail: str
    checkpoint_size: int | None


async def _rows(session: AsyncSession, first: int, last: int | None) -> AsyncIterator[list[tuple[int, bytes, bytes,
                                                                                                  bytes]]]:
    cursor = first
    while True:
        statement = (select(AuditEventRecord.seq, AuditEventRecord.canonical, AuditEventRecord.prev_hash,
                            AuditEventRecord.hash)
                     .where(AuditEventRecord.seq >= cursor).order_by(AuditEventRecord.seq).limit(BATCH))
        if last is not None:
            statement = statement.where(AuditEventRecord.seq <= last)
        batch = [(int(seq), bytes(body), bytes(prev), bytes(digest))
                 for seq, body, prev, digest in (await session.execute(statement)).all()]
        if not batch:
            return
        yield batch
        if len(batch) < BATCH:
            return
        cursor = batch[-1][0] + 1


def _newest_sink_checkpoint(sink: Path | None) -> tuple[Checkpoint, bytes] | None:
    """The last checkpoint copied to the external sink file, if there is one."""
    if sink is None or not sink.is_file():
        return None
    lines = [line for line in sink.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        return None
    size, root, timestamp, signer, signature = lines[-1].split()
    return Checkpoint(tree_size=int(size), root_hash=bytes.fromhex(root), timestamp=timestamp,
                      key_id=signer), bytes.fromhex(signature)


async def verify_trail(session: AsyncSession, public_key: Ed25519PublicKey, *, first: int = 1,
                       last: int | None = None, sink: Path | None = None) -> TrailReport:
    """Verify the chain over ``first..last`` (default: all), then the newest checkpoint's signature and root.

    The chain alone cannot see a tail rewritten and re-sealed after the last checkpoint, nor a truncated tail:
    the signed checkpoint's size and Merkle root catch both.
    """
    expected_prev = GENESIS_HASH
    if first > 1:
        previous = await session.get(AuditEventRecord, first - 1)
        if previous is None:
            return TrailReport(False, 0, first - 1, "deleted", f"event {first - 1} before the range is missing", None)
        expected_prev = bytes(previous.hash)
    checked, expected_seq = 0, first
    leaves: list[bytes] = []
    async for batch in _rows(session, first, last):
        report: ChainReport = verify_chain(batch, expected_first_seq=expected_seq, expected_prev_hash=expected_prev)
        if not report.ok:
            return TrailReport(False, checked + report.checked, report.first_bad_seq, report.problem, report.detail,
                               None)
        checked += report.checked
        expected_seq, expected_prev = report.last_seq + 1, report.last_hash or expected_prev
        if first == 1:
            leaves.extend(leaf_hash(row[1]) for row in batch)
    external = _newest_sink_checkpoint(sink) if first == 1 and last is None else None
    if external is not None:
        # The copy outside the database catches a tail deleted together with its checkpoints.
        copy, copy_signature = external
        if not copy.verify(copy_signature, public_key):
            return TrailReport(False, checked, None, "altered", f"the checkpoint copy in {sink} is not validly signed",
                               copy.tree_size)
        if copy.tree_size > len(leaves):
            return TrailReport(False, checked, len(leaves) + 1, "truncated",
                               f"the external checkpoint copy covers {copy.tree_size} events but only {len(leaves)} "
                               "remain in the database", copy.tree_size)
        if MerkleTree(leaves[: copy.tree_size]).root() != copy.root_hash:
            return TrailReport(False, checked, None, "altered",
                               f"the events up to {copy.tree_size} do not match the external checkpoint copy",
                               copy.tree_size)
    newest = (await session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc()).limit(1))
              ).scalar_one_or_none()
    if newest is None or first != 1:
        return TrailReport(True, checked, None, None, f"{checked} events verified", None)
    checkpoint = Checkpoint.parse(bytes(newest.body))
    if not checkpoint.verify(bytes(newest.signature), public_key):
        return TrailReport(False, checked, None, "altered", "the newest checkpoint's signature does not verify",
                           newest.tree_size)
    if last is None and checkpoint.tree_size > len(leaves):
        return TrailReport(False, checked, len(leaves) + 1, "truncated",
                           f"the signed checkpoint covers {checkpoint.tree_size} events but only {len(leaves)} remain",
                           checkpoint.tree_size)
    if MerkleTree(leaves[: checkpoint.tree_size]).root() != checkpoint.root_hash:
        return TrailReport(False, checked, None, "altered",
                           f"the events up to {checkpoint.tree_size} do not match the signed checkpoint's root "
                           "(rewritten and re-sealed)", checkpoint.tree_size)
    return TrailReport(True, checked, None, None,
                       f"{checked} events verified; checkpoint at {checkpoint.tree_size} matches", checkpoint.tree_size)


async def make_checkpoint(session: AsyncSession, signing_key: Ed25519PrivateKey,
                          sink: Path | None = None) -> SignedCheckpoint | None:
    """Sign the Merkle root of every event so far; None if there is nothing new since the last checkpoint."""
    leaves = [leaf_hash(row[1]) async for batch in _rows(session, 1, None) for row in batch]
    if not leaves:
        return None
    newest = (await session.execute(select(AuditCheckpoint.tree_size).order_by(AuditCheckpoint.tree_size.desc())
                                    .limit(1))).scalar_one_or_none()
    if newest == len(leaves):
        return None
    checkpoint = Checkpoint(tree_size=len(leaves), root_hash=MerkleTree(leaves).root(),
                            timestamp=format_timestamp(utc_now()), key_id=key_id(signing_key.public_key()))
    signature = checkpoint.sign(signing_key)
    try:
        async with session.begin_nested():
            session.add(AuditCheckpoint(tree_size=checkpoint.tree_size, root_hash=checkpoint.root_hash,
                                        body=checkpoint.body(), signature=signature, key_id=checkpoint.key_id,
                                        created_at=utc_now()))
    except IntegrityError:
        return None  # another process signed the same size first
    if sink is not None:
        # An external copy: truncating the database's tail cannot also rewrite this file's history.
        with sink.open("a", encoding="utf-8") as handle:
            handle.write(f"{checkpoint.tree_size} {checkpoint.root_hash.hex()} {checkpoint.timestamp} "
                         f"{checkpoint.key_id} {signature.hex()}\n")
    return SignedCheckpoint(checkpoint, signature)


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Compliance query filters; every one is optional and they combine with AND."""

    actor_id: str | None = None
    entity: str | None = None
    entity_id: str | None = None
    subject_id: str | None = None
    field: str | None = None
    action: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_seq: int | None = None
    limit: int = 100


def _filtered(query: EventQuery) -> Select[Any]:
    statement = select(AuditEventRecord)
    for column, value in ((AuditEventRecord.actor_id, query.actor_id), (AuditEventRecord.entity, query.entity),
                          (AuditEventRecord.entity_id, query.entity_id), (AuditEventRecord.action, query.action),
                          (AuditEventRecord.outcome, query.outcome)):
        if value is not None:
            statement = statement.where(column == value)
    if query.subject_id is not None:
        # "Everything that happened to or was seen of customer X": its own events and its records' events.
        statement = statement.where((AuditEventRecord.subject_id == query.subject_id)
                                    | (AuditEventRecord.entity_id == query.subject_id))
    if query.field is not None:
        statement = statement.where(AuditEventRecord.seq.in_(
            select(AuditEventField.seq).where(AuditEventField.field == query.field)))
    if query.since is not None:
        statement = statement.where(AuditEventRecord.ts >= query.since)
    if query.until is not None:
        statement = statement.where(AuditEventRecord.ts < query.until)
    if query.before_seq is not None:
        statement = statement.where(AuditEventRecord.seq < query.before_seq)
    return statement


async def query_events(session: AsyncSession, query: EventQuery) -> tuple[list[dict[str, Any]], int | None]:
    """Matching events newest first, and the cursor (a sequence number) of the next page."""
    rows = (await session.execute(_filtered(query).order_by(AuditEventRecord.seq.desc()).limit(query.limit + 1))
            ).scalars().all()
    events = [{**decode_event(bytes(row.canonical)), "hash": bytes(row.hash).hex()} for row in rows[: query.limit]]
    next_cursor = rows[query.limit - 1].seq if len(rows) > query.limit else None
    return events, next_cursor


async def export_events(session: AsyncSession, query: EventQuery, signing_key: Ed25519PrivateKey,
                        sink: Path | None = None) -> Iterator[str]:
    """JSONL lines of the matching events with inclusion proofs against a fresh signed checkpoint."""
    await make_checkpoint(session, signing_key, sink)
    stored = (await session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size))).scalars().all()
    checkpoints = [SignedCheckpoint(Checkpoint.parse(bytes(c.body)), bytes(c.signature)) for c in stored]
    leaves = [leaf_hash(row[1]) async for batch in _rows(session, 1, None) for row in batch]
    selected = (await session.execute(
        _filtered(replace(query, before_seq=None))
        .with_only_columns(AuditEventRecord.seq, AuditEventRecord.canonical, AuditEventRecord.prev_hash,
                           AuditEventRecord.hash)
        .where(AuditEventRecord.seq <= len(leaves)).order_by(AuditEventRecord.seq))).all()
    rows = [(int(seq), bytes(body), bytes(prev), bytes(digest)) for seq, body, prev, digest in selected]
    selection = {key: str(value) for key, value in asdict(query).items()
                 if value is not None and key not in {"limit", "before_seq"}}
    return build_export(rows, MerkleTree(leaves), checkpoints, selection=selection or "all",
                        created=format_timestamp(utc_now()), signing_key=signing_key)


def new_export_name() -> str:
    """A file name for an export."""
    return f"audit-export-{utc_now():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}.jsonl"
