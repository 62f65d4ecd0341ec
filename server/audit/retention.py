"""Retention: legal holds, and archiving expired events to a verifiable file before they leave the database.

An event expires ``audit_retention_days`` after it was recorded. ``archive_expired`` moves the longest prefix of
the trail that has expired and holds no event under an active legal hold into an archive file (the export format
of :mod:`server.audit.export`, complete over its range, every event proven against a checkpoint signed over
exactly the archived prefix), records the archive (range, file digest, the last archived hash and the Merkle
compact range of the archived prefix) in ``audit_archives``, records an ``archive`` event, and deletes the
archived rows, in one transaction. The retained trail then starts at the archive boundary: its chain links to
the stored last hash and every later Merkle root and proof is computed from the stored compact range.

Only a contiguous prefix is ever archived, so a held event also keeps every later event in the database until
the hold is released (simple, and the chain and the tree never have holes). The database enforces the same
rules: it accepts an archive row only if it continues the previous one, names the stored hash of its last
event and covers no held event, and it lets event rows be deleted only up to the newest archive.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import ColumnElement, and_, delete, func, or_, select, text, true
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import trail
from server.audit.canonical import JSONValue, format_timestamp
from server.audit.checkpoint import Checkpoint
from server.audit.export import ExportWriter, SignedCheckpoint
from server.audit.merkle import MerkleTree
from server.audit.models import (
    AuditArchive,
    AuditCheckpoint,
    AuditEventField,
    AuditEventRecord,
    AuditEventSubject,
    AuditLegalHold,
    AuditLegalHoldRelease,
)
from server.audit.sealer import seal_pending
from server.audit.store import (
    ARCHIVE_ENTITY,
    ArchiveBoundary,
    archive_boundary,
    archive_details,
    event_rows,
    leaf_hash_batches,
    sign_checkpoint,
)
from server.audit.tags import AuditAction
from server.audit.trail import AuditActor, RequestInfo
from server.db import write_transaction
from server.domain.base import utc_now
from server.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.file_ownership import give_to_directory_owner, make_directory_as_parent_owner

HOLD_ENTITY = "legal_hold"  # the entity of the policy_change events that place and release holds
ARCHIVE_DIR_NAME = "audit-archive"
MAX_REASON = 2000


def archive_dir(data_dir: str, configured: str) -> Path:
    """Where archive files go: the configured directory, or ``<data_dir>/audit-archive``."""
    return Path(configured) if configured else Path(data_dir) / ARCHIVE_DIR_NAME


# -- Legal holds ----------------------------------------------------------------------------------------------


def _hold_view(hold: AuditLegalHold, release: AuditLegalHoldRelease | None) -> dict[str, Any]:
    return {
        "id": int(hold.id),
        "customer_id": hold.subject_id,
        "since": format_timestamp(hold.since) if hold.since else None,
        "until": format_timestamp(hold.until) if hold.until else None,
        "reason": hold.reason,
        "created_at": format_timestamp(hold.created_at),
        "created_by": hold.created_by,
        "active": release is None,
        "released_at": format_timestamp(release.released_at) if release else None,
        "released_by": release.released_by if release else None,
        "release_reason": release.reason if release else None,
    }


def _reason(reason: str) -> str:
    text = reason.strip()
    if not text or len(text) > MAX_REASON:
        raise InvalidInput(f"a reason of 1 to {MAX_REASON} characters is required", field="reason")
    return text


async def place_hold(session: AsyncSession, *, actor: AuditActor, reason: str, subject_id: str | None = None,
                     since: datetime | None = None, until: datetime | None = None,
                     request: RequestInfo | None = None) -> dict[str, Any]:
    """Place a legal hold in the caller's write transaction, and record it (a ``policy_change`` event).

    Events about ``subject_id`` (a customer: its own events and its records', as the ``customer_id`` query
    selects them) recorded in ``[since, until)`` stay in the database while the hold is active; with neither
    criterion every event is held.

    Raises:
        InvalidInput: Without a reason, or with ``since`` not before ``until``.
    """
    if since is not None and until is not None and since >= until:
        raise InvalidInput("since must be before until", field="since")
    hold = AuditLegalHold(subject_id=subject_id, since=since, until=until, reason=_reason(reason),
                          created_at=utc_now(), created_by=actor.name or actor.id or actor.type.value)
    session.add(hold)
    await session.flush()
    view = _hold_view(hold, None)
    await trail.record(session, action=AuditAction.POLICY_CHANGE, actor=actor, entity=HOLD_ENTITY,
                       entity_id=str(hold.id), subject_id=subject_id, reason=view["reason"],
                       after={"legal_hold": view["id"], "state": "placed", "customer_id": subject_id,
                              "since": view["since"], "until": view["until"]},
                       request=request)
    return view


async def release_hold(session: AsyncSession, hold_id: int, *, actor: AuditActor, reason: str,
                       request: RequestInfo | None = None) -> dict[str, Any]:
    """Release a legal hold in the caller's write transaction, and record it.

    Raises:
        NotFound: No such hold.
        Conflict: The hold is released already.
    """
    hold = await session.get(AuditLegalHold, hold_id)
    if hold is None:
        raise NotFound(f"no legal hold {hold_id}")
    if await session.get(AuditLegalHoldRelease, hold_id) is not None:
        raise Conflict(f"legal hold {hold_id} is released already")
    release = AuditLegalHoldRelease(hold_id=hold_id, reason=_reason(reason), released_at=utc_now(),
                                    released_by=actor.name or actor.id or actor.type.value)
    session.add(release)
    await session.flush()
    view = _hold_view(hold, release)
    await trail.record(session, action=AuditAction.POLICY_CHANGE, actor=actor, entity=HOLD_ENTITY,
                       entity_id=str(hold_id), subject_id=hold.subject_id, reason=release.reason,
                       before={"legal_hold": hold_id, "state": "placed", "customer_id": hold.subject_id,
                               "since": view["since"], "until": view["until"]},
                       after={"legal_hold": hold_id, "state": "released"}, request=request)
    return view


async def list_holds(session: AsyncSession, *, active_only: bool = False) -> list[dict[str, Any]]:
    """Every legal hold (or only the active ones), newest first."""
    rows = (await session.execute(
        select(AuditLegalHold, AuditLegalHoldRelease)
        .outerjoin(AuditLegalHoldRelease, AuditLegalHoldRelease.hold_id == AuditLegalHold.id)
        .order_by(AuditLegalHold.id.desc()))).all()
    return [_hold_view(hold, release) for hold, release in rows if not (active_only and release is not None)]


def _held(hold: AuditLegalHold) -> ColumnElement[bool]:
    """Events a hold covers: the same test as the database's archive trigger."""
    criteria: list[ColumnElement[bool]] = []
    if hold.subject_id is not None:
        criteria.append(or_(AuditEventRecord.subject_id == hold.subject_id,
                            AuditEventRecord.entity_id == hold.subject_id,
                            AuditEventRecord.seq.in_(select(AuditEventSubject.seq)
                                                     .where(AuditEventSubject.subject_id == hold.subject_id))))
    if hold.since is not None:
        criteria.append(AuditEventRecord.ts >= hold.since)
    if hold.until is not None:
        criteria.append(AuditEventRecord.ts < hold.until)
    return and_(true(), *criteria)


# -- Archiving ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArchivePlan:
    """What the next archive would take, and why it stops where it does.

    Attributes:
        first_seq: The first event to archive (the one after the archive boundary).
        last_seq: The last event to archive; below ``first_seq`` when there is nothing to archive.
        cutoff: Events recorded before this have expired.
        stopped_by: Why the range ends at ``last_seq``: ``expiry`` (the next event has not expired), ``hold``
            (the next event is held), ``limit`` (the per-file maximum), ``head`` (the newest event always stays).
        hold_id: The hold that stopped it, for ``hold``.
    """

    first_seq: int
    last_seq: int
    cutoff: datetime
    stopped_by: str
    hold_id: int | None = None

    @property
    def events(self) -> int:
        """How many events the plan archives."""
        return max(0, self.last_seq - self.first_seq + 1)


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    """One archive made: what its record and event say, its file, and the plan it carried out."""

    details: dict[str, JSONValue]
    path: Path
    plan: ArchivePlan


async def plan_archive(session: AsyncSession, *, cutoff: datetime, max_events: int,
                       boundary: ArchiveBoundary | None = None, ceiling: int | None = None) -> ArchivePlan:
    """The longest prefix after the archive boundary that has expired and holds no held event.

    The newest event is never archived (the sealer chains new events after the newest stored one), nor any
    after ``ceiling`` (a run stops at the head it started with, or it would archive its own archive events).
    """
    boundary = boundary if boundary is not None else await archive_boundary(session)
    first = boundary.last_seq + 1
    head = (await session.execute(select(func.max(AuditEventRecord.seq)))).scalar_one_or_none() or 0
    last, stopped_by, hold_id = head - 1, "head", None
    if ceiling is not None and ceiling < last:
        last = ceiling
    recent = (await session.execute(
        select(AuditEventRecord.seq).where(AuditEventRecord.seq >= first, AuditEventRecord.ts >= cutoff)
        .order_by(AuditEventRecord.seq).limit(1))).scalar_one_or_none()
    if recent is not None and recent - 1 < last:
        last, stopped_by = recent - 1, "expiry"
    if first + max_events - 1 < last:
        last, stopped_by = first + max_events - 1, "limit"
    active = (await session.execute(
        select(AuditLegalHold).where(~AuditLegalHold.id.in_(select(AuditLegalHoldRelease.hold_id)))
        .order_by(AuditLegalHold.id))).scalars().all()
    for hold in active:
        if last < first:
            break
        held = (await session.execute(
            select(func.min(AuditEventRecord.seq))
            .where(AuditEventRecord.seq >= first, AuditEventRecord.seq <= last, _held(hold)))).scalar_one_or_none()
        if held is not None:
            last, stopped_by, hold_id = held - 1, "hold", int(hold.id)
    return ArchivePlan(first, max(last, first - 1), cutoff, stopped_by, hold_id)


def _publish(partial: Path, path: Path) -> None:
    """Give the finished file its name, never replacing one: a losing concurrent run must not overwrite the
    winner's archive."""
    try:
        os.link(partial, path)
    except FileExistsError:
        raise
    except OSError:  # a filesystem without hard links: the name is unique per run (time and random part)
        if path.exists():
            raise FileExistsError(path) from None
        partial.rename(path)


async def _write_file(session: AsyncSession, path: Path, writer: ExportWriter, plan: ArchivePlan) -> tuple[str, int]:
    """Write the archive file (0600, created new, fsync'd); return its SHA-256 and size."""
    digest, size = hashlib.sha256(), 0
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        give_to_directory_owner(descriptor, path.parent)
        with os.fdopen(descriptor, "wb") as handle:

            def write(line: str) -> None:
                nonlocal size
                data = line.encode("utf-8")
                digest.update(data)
                size += len(data)
                handle.write(data)

            for line in writer.opening():
                write(line)
            async for batch in event_rows(session, plan.first_seq, plan.last_seq):
                for row in batch:
                    write(writer.event(row))
            for line in writer.closing():
                write(line)
            handle.flush()
            os.fsync(handle.fileno())
        _publish(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return digest.hexdigest(), size


async def _archive_once(session: AsyncSession, *, signing_key: Ed25519PrivateKey, directory: Path, cutoff: datetime,
                        max_events: int, actor: AuditActor, retention_days: int, sink: Path | None,
                        ceiling: int) -> ArchiveResult | ArchivePlan:
    # 1. Plan, and sign a checkpoint over exactly the prefix to archive (the file's proofs are against it; it is
    #    also the root the retained trail's stored compact range must reproduce).
    async with write_transaction(session):
        boundary = await archive_boundary(session)
        plan = await plan_archive(session, cutoff=cutoff, max_events=max_events, boundary=boundary, ceiling=ceiling)
        if plan.events == 0:
            return plan
        leaves: list[bytes] = []
        async for hashes in leaf_hash_batches(session, plan.first_seq, plan.last_seq):
            leaves.extend(hashes)
        tree = MerkleTree(leaves, prefix=boundary.compact_range)
        del leaves
        compact = tree.compact_range()
        signed = await sign_checkpoint(session, signing_key, compact, sink)
        stored = await session.get(AuditCheckpoint, plan.last_seq)
        if stored is None or bytes(stored.root_hash) != compact.root():
            raise ValueError(f"the checkpoint at {plan.last_seq} does not have the root of the stored events; "
                             "run `strongroom audit verify`")
        checkpoints = [signed or SignedCheckpoint(Checkpoint.parse(bytes(stored.body)), bytes(stored.signature))]
        if boundary.last_seq:
            # The previous archive's checkpoint, with a consistency proof to this one: the files form one history.
            previous = await session.get(AuditCheckpoint, boundary.last_seq)
            if previous is not None:
                checkpoints.insert(0, SignedCheckpoint(Checkpoint.parse(bytes(previous.body)),
                                                       bytes(previous.signature)))
    number = (boundary.archive_id or 0) + 1
    stamp = f"{utc_now():%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    path = directory / f"audit-archive-{number:06d}-{plan.first_seq}-{plan.last_seq}-{stamp}.jsonl"
    created = format_timestamp(utc_now())
    writer = ExportWriter(tree, checkpoints, seq_range=(plan.first_seq, plan.last_seq), created=created,
                          signing_key=signing_key,
                          selection={"archive": number, "expired_before": format_timestamp(cutoff),
                                     "retention_days": retention_days})
    # 2. The file, before anything leaves the database.
    async with session.begin():
        file_sha256, file_bytes = await _write_file(session, path, writer, plan)
    # 3. The record, its event and the deletion, in one transaction: the database checks the record (contiguous,
    #    the right last hash, no held event) and then allows exactly these deletes.
    async with write_transaction(session):
        last_hash = (await session.execute(select(AuditEventRecord.hash)
                                           .where(AuditEventRecord.seq == plan.last_seq))).scalar_one()
        archive = AuditArchive(id=number, first_seq=plan.first_seq, last_seq=plan.last_seq,
                               last_hash=bytes(last_hash), compact_range=compact.to_bytes(), events=plan.events,
                               cutoff=cutoff, file_name=path.name, file_sha256=file_sha256, file_bytes=file_bytes,
                               created_at=utc_now(), created_by=actor.name or actor.type.value)
        session.add(archive)
        await session.flush()
        details = archive_details(archive)
        await trail.record(session, action=AuditAction.ARCHIVE, actor=actor, entity=ARCHIVE_ENTITY,
                           entity_id=str(number), after=details, reason=f"retention {retention_days} days")
        for table in (AuditEventField, AuditEventSubject):
            await session.execute(delete(table).where(table.seq >= plan.first_seq, table.seq <= plan.last_seq))
        await session.execute(delete(AuditEventRecord).where(AuditEventRecord.seq >= plan.first_seq,
                                                             AuditEventRecord.seq <= plan.last_seq))
    return ArchiveResult(details, path, plan)


def expiry_cutoff(retention_days: int, now: datetime | None = None) -> datetime:
    """Events recorded before this moment have expired."""
    return (now or utc_now()) - timedelta(days=retention_days)


def _ensure_directory(directory: Path) -> None:
    make_directory_as_parent_owner(directory, 0o700)


# Recording an archive and deleting the events it covers: on PostgreSQL the schema owner's rights, which the runtime
# role (strongroom_app: INSERT and SELECT on the audit tables) does not have.
_ARCHIVE_RIGHTS = text(
    "SELECT has_table_privilege('audit_archives', 'INSERT') AND has_table_privilege('audit_events', 'DELETE') "
    "AND has_table_privilege('audit_event_fields', 'DELETE') AND has_table_privilege('audit_event_subjects', 'DELETE')")
ARCHIVE_NEEDS_OWNER = (
    "this database login may not archive audit events: on PostgreSQL only the schema owner may record an archive "
    "and delete the events it covers (the runtime role inserts and reads audit events, nothing more). Archive as "
    "the owner: the Helm chart's auditArchive CronJob, the Ansible role's archive timer, or `strongroom audit "
    "archive` with the owner's URL (docs/deployment.md#commands-as-the-schema-owner)")


async def may_archive(session: AsyncSession) -> bool:
    """Whether this session's database login may archive (always on SQLite, which has no roles)."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    async with session.begin():
        return bool((await session.execute(_ARCHIVE_RIGHTS)).scalar_one())


async def archive_expired(session: AsyncSession, *, signing_key: Ed25519PrivateKey, directory: Path,
                          retention_days: int, actor: AuditActor, max_events: int = 1_000_000,
                          sink: Path | None = None, now: datetime | None = None) -> AsyncIterator[ArchiveResult |
                                                                                                  ArchivePlan]:
    """Archive every expired, un-held event, one file per ``max_events``; yields each archive, then the plan
    that found nothing more to do (why it stopped). Call outside a transaction.

    Raises:
        Forbidden: The database login lacks the schema owner's rights (checked before anything is written).
        DBAPIError: If the database refuses (a hold placed meanwhile, a concurrent run); the file written is then
            left unreferenced.
    """
    if not await may_archive(session):
        raise Forbidden(ARCHIVE_NEEDS_OWNER)
    _ensure_directory(directory)
    cutoff = expiry_cutoff(retention_days, now)
    await seal_pending(session)
    async with session.begin():
        # The newest event at the start stays, like every event recorded during the run (its own among them).
        ceiling = ((await session.execute(select(func.max(AuditEventRecord.seq)))).scalar_one_or_none() or 0) - 1
    while True:
        await seal_pending(session)
        outcome = await _archive_once(session, signing_key=signing_key, directory=directory, cutoff=cutoff,
                                      max_events=max_events, actor=actor, retention_days=retention_days, sink=sink,
                                      ceiling=ceiling)
        yield outcome
        if isinstance(outcome, ArchivePlan):
            await seal_pending(session)
            return


async def list_archives(session: AsyncSession) -> list[dict[str, JSONValue]]:
    """Every archive, oldest first, as its ``archive`` event records it."""
    rows = (await session.execute(select(AuditArchive).order_by(AuditArchive.id))).scalars().all()
    return [{**archive_details(row), "created_at": format_timestamp(row.created_at), "created_by": row.created_by}
            for row in rows]


async def archive_file(session: AsyncSession, directory: Path, archive_id: int) -> tuple[Path, str]:
    """The path of an archive's file and its recorded SHA-256.

    Raises:
        NotFound: No such archive, or its file is not in the archive directory.
    """
    archive = await session.get(AuditArchive, archive_id)
    if archive is None:
        raise NotFound(f"no archive {archive_id}")
    path = directory / Path(archive.file_name).name
    if not path.is_file():
        raise NotFound(f"the file of archive {archive_id} is not in the archive directory")
    return path, archive.file_sha256
