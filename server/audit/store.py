"""The audit trail in the database: verification, signed checkpoints, compliance queries and exports."""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import ColumnElement, ScalarSelect, Select, SQLColumnExpression, func, select, union
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.canonical import JSONValue, decode_event, format_timestamp
from server.audit.chain import GENESIS_HASH, ChainReport, ChainRow, verify_chain
from server.audit.checkpoint import (
    Checkpoint,
    generate_signing_key,
    key_id,
    private_key_from_pem,
    private_key_to_pem,
)
from server.audit.export import ExportWriter, SignedCheckpoint
from server.audit.merkle import CompactRange, MerkleTree, leaf_hash
from server.audit.models import (
    AuditArchive,
    AuditCheckpoint,
    AuditCompactRange,
    AuditEventField,
    AuditEventRecord,
    AuditEventSubject,
    AuditPending,
)
from server.audit.tags import AuditAction
from server.domain.base import utc_now
from server.file_ownership import give_to_directory_owner

SIGNING_KEY_FILE = "audit-signing.pem"
BATCH = 20_000
ARCHIVE_ENTITY = "audit_archive"  # the entity of an ``archive`` event; its entity_id is the archive's number


def archive_details(archive: AuditArchive) -> dict[str, JSONValue]:
    """What the ``archive`` event records of an archive (and verification compares with the archive row)."""
    compact = CompactRange.from_bytes(int(archive.last_seq), bytes(archive.compact_range))
    return {"archive": int(archive.id), "first_seq": int(archive.first_seq), "last_seq": int(archive.last_seq),
            "last_hash": bytes(archive.last_hash).hex(), "compact_range": [node.hex() for node in compact.nodes],
            "root": compact.root().hex(), "events": int(archive.events), "cutoff": format_timestamp(archive.cutoff),
            "file": archive.file_name, "sha256": archive.file_sha256, "bytes": int(archive.file_bytes)}


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


async def event_rows(session: AsyncSession, first: int, last: int | None, *,
                     batch_size: int = BATCH) -> AsyncIterator[list[ChainRow]]:
    """Stored events ``first..last`` (to the end when ``last`` is None) as chain rows, in batches, seq ascending."""
    cursor = first
    while True:
        statement = (select(AuditEventRecord.seq, AuditEventRecord.canonical, AuditEventRecord.prev_hash,
                            AuditEventRecord.hash)
                     .where(AuditEventRecord.seq >= cursor).order_by(AuditEventRecord.seq).limit(batch_size))
        if last is not None:
            statement = statement.where(AuditEventRecord.seq <= last)
        batch = [(int(seq), bytes(body), bytes(prev), bytes(digest))
                 for seq, body, prev, digest in (await session.execute(statement)).all()]
        if not batch:
            return
        yield batch
        if len(batch) < batch_size:
            return
        cursor = batch[-1][0] + 1


def _newest_sink_checkpoint(sink: Path | None) -> tuple[Checkpoint, bytes] | None:
    """The largest checkpoint copied to the external sink file, if there is one.

    Lines are appended in signing order, which is not always size order (an archive signs the size of the
    archived prefix), so the largest size wins, not the last line.
    """
    if sink is None or not sink.is_file():
        return None
    newest: tuple[Checkpoint, bytes] | None = None
    for line in sink.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        size, root, timestamp, signer, signature = line.split()
        if newest is None or int(size) > newest[0].tree_size:
            newest = (Checkpoint(tree_size=int(size), root_hash=bytes.fromhex(root), timestamp=timestamp,
                                 key_id=signer), bytes.fromhex(signature))
    return newest


@dataclass(frozen=True, slots=True)
class ArchiveBoundary:
    """Where the trail in the database starts: what it needs of the archived events before it.

    Attributes:
        last_seq: The last archived sequence number (0 when nothing was archived).
        last_hash: That event's hash, which the first retained event links to (the genesis hash when none).
        compact_range: The Merkle compact range of events ``1..last_seq``.
        archive_id: The newest archive's number, or None.
    """

    last_seq: int
    last_hash: bytes
    compact_range: CompactRange
    archive_id: int | None


async def archive_boundary(session: AsyncSession) -> ArchiveBoundary:
    """The newest archive's boundary (nothing archived: seq 0, the genesis hash, the empty range).

    Raises:
        ValueError: If the stored compact range does not fit its size (the archive row was tampered with).
    """
    newest = (await session.execute(select(AuditArchive).order_by(AuditArchive.last_seq.desc()).limit(1))
              ).scalar_one_or_none()
    if newest is None:
        return ArchiveBoundary(0, GENESIS_HASH, CompactRange(), None)
    return ArchiveBoundary(int(newest.last_seq), bytes(newest.last_hash),
                           CompactRange.from_bytes(int(newest.last_seq), bytes(newest.compact_range)), int(newest.id))


async def _merkle_base(session: AsyncSession, boundary: ArchiveBoundary, at_most: int) -> CompactRange:
    """The largest stored Merkle state to build on: the newest compact range saved with a checkpoint (at most
    ``at_most`` leaves), or the archive boundary's, whichever is larger."""
    stored = (await session.execute(
        select(AuditCompactRange).where(AuditCompactRange.tree_size <= at_most,
                                        AuditCompactRange.tree_size > boundary.last_seq)
        .order_by(AuditCompactRange.tree_size.desc()).limit(1))).scalar_one_or_none()
    if stored is None:
        return boundary.compact_range.copy()
    return CompactRange.from_bytes(int(stored.tree_size), bytes(stored.nodes))


async def leaf_hash_batches(session: AsyncSession, first: int, last: int, *,
                            batch_size: int = BATCH) -> AsyncIterator[list[bytes]]:
    """The Merkle leaf hashes of events ``first..last``, in batches; refuses a gap (the tree would be the wrong one)."""
    expect = first
    async for batch in event_rows(session, first, last, batch_size=batch_size):
        if batch[0][0] != expect or batch[-1][0] != expect + len(batch) - 1:
            raise ValueError(f"the trail has a gap after seq {expect - 1}; run `strongroom audit verify`")
        expect += len(batch)
        yield [leaf_hash(row[1]) for row in batch]
    if expect != last + 1:
        raise ValueError(f"the trail ends at seq {expect - 1}, before {last}; run `strongroom audit verify`")


async def _check_archive(session: AsyncSession, boundary: ArchiveBoundary, public_key: Ed25519PublicKey,
                         checked: int) -> TrailReport | None:
    """Tie the newest archive row (not hashed itself) to the chain and to a signature; None when it holds.

    Its ``archive`` event (recorded in the archiving transaction, so sealed after the archived events) must be
    in the trail and name the same range, hash, Merkle state and file; and the checkpoint signed over exactly
    the archived prefix must have the root of the stored Merkle state.
    """
    if boundary.archive_id is None:
        return None
    name = f"archive {boundary.archive_id} (events up to {boundary.last_seq})"
    sealed = (await session.execute(
        select(AuditEventRecord.seq, AuditEventRecord.canonical)
        .where(AuditEventRecord.action == AuditAction.ARCHIVE.value, AuditEventRecord.entity == ARCHIVE_ENTITY,
               AuditEventRecord.entity_id == str(boundary.archive_id), AuditEventRecord.seq > boundary.last_seq)
        .order_by(AuditEventRecord.seq).limit(1))).first()
    if sealed is None:
        pending = (await session.execute(
            select(AuditPending.id).where(AuditPending.action == AuditAction.ARCHIVE.value,
                                          AuditPending.entity_id == str(boundary.archive_id)).limit(1))).first()
        if pending is None:
            return TrailReport(False, checked, boundary.last_seq, "deleted",
                               f"{name} has no archive event in the trail: events were deleted without "
                               "`strongroom audit archive`", None)
    else:
        archive = (await session.execute(select(AuditArchive).where(AuditArchive.id == boundary.archive_id))
                   ).scalar_one()
        recorded = decode_event(bytes(sealed[1])).get("after") or {}
        if recorded != archive_details(archive):
            return TrailReport(False, checked, int(sealed[0]), "altered",
                               f"{name} does not match its archive event {sealed[0]}: the archive record was "
                               "changed", None)
    signed = await session.get(AuditCheckpoint, boundary.last_seq)
    if signed is None:
        return TrailReport(False, checked, None, "deleted",
                           f"the checkpoint signed over the archived prefix of {name} is missing", None)
    checkpoint = Checkpoint.parse(bytes(signed.body))
    if not checkpoint.verify(bytes(signed.signature), public_key) or \
            checkpoint.root_hash != boundary.compact_range.root():
        return TrailReport(False, checked, None, "altered",
                           f"the Merkle state stored with {name} does not have the root signed at size "
                           f"{boundary.last_seq}", boundary.last_seq)
    return None


async def verify_trail(session: AsyncSession, public_key: Ed25519PublicKey, *, first: int = 1,
                       last: int | None = None, sink: Path | None = None) -> TrailReport:
    """Verify the chain over ``first..last`` (default: all), then the newest checkpoint's signature and root.

    The chain alone cannot see a tail rewritten and re-sealed after the last checkpoint, nor a truncated tail:
    the signed checkpoint's size and Merkle root catch both. After archiving, the chain starts at the archive
    boundary (the first retained event must link to the last archived one's hash) and Merkle roots are computed
    from the archived prefix's stored compact range plus the retained events, in O(log n) memory; the archive
    row itself is checked against its ``archive`` event and the checkpoint signed over the archived prefix.
    Archived events are verified offline, from their archive files.
    """
    try:
        boundary = await archive_boundary(session)
    except ValueError as error:
        return TrailReport(False, 0, None, "altered", f"the newest archive's Merkle state is malformed: {error}", None)
    start = boundary.last_seq + 1
    whole = first <= start and last is None
    first = max(first, start)
    archived = f"; events 1..{boundary.last_seq} are archived" if boundary.last_seq else ""
    if last is not None and last < first:
        return TrailReport(True, 0, None, None, f"no events in the range{archived}", None)
    expected_prev = boundary.last_hash
    if first > start:
        previous = await session.get(AuditEventRecord, first - 1)
        if previous is None:
            return TrailReport(False, 0, first - 1, "deleted", f"event {first - 1} before the range is missing", None)
        expected_prev = bytes(previous.hash)
    external = _newest_sink_checkpoint(sink) if whole else None
    newest = (await session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc()).limit(1))
              ).scalar_one_or_none() if whole else None
    targets = sorted({size for size in (external[0].tree_size if external else None,
                                        newest.tree_size if newest else None)
                      if size is not None and size >= boundary.last_seq})
    compact = boundary.compact_range.copy()
    roots = {boundary.last_seq: compact.root()}
    checked, expected_seq = 0, first
    async for batch in event_rows(session, first, last):
        report: ChainReport = verify_chain(batch, expected_first_seq=expected_seq, expected_prev_hash=expected_prev)
        if not report.ok:
            return TrailReport(False, checked + report.checked, report.first_bad_seq, report.problem, report.detail,
                               None)
        checked += report.checked
        expected_seq, expected_prev = report.last_seq + 1, report.last_hash or expected_prev
        if whole:
            # Roots at the checkpoint sizes are taken on the way: one pass, O(log n) memory.
            hashes = [leaf_hash(row[1]) for row in batch]
            taken = 0
            while targets and targets[0] <= compact.size + len(hashes) - taken:
                step = targets[0] - compact.size
                compact.extend(hashes[taken : taken + step])
                taken += step
                roots[targets.pop(0)] = compact.root()
            compact.extend(hashes[taken:])
    if not whole:
        return TrailReport(True, checked, None, None, f"{checked} events verified{archived}", None)
    size = compact.size
    if external is not None:
        # The copy outside the database catches a tail deleted together with its checkpoints.
        copy, copy_signature = external
        if not copy.verify(copy_signature, public_key):
            return TrailReport(False, checked, None, "altered", f"the checkpoint copy in {sink} is not validly signed",
                               copy.tree_size)
        if copy.tree_size > size:
            return TrailReport(False, checked, size + 1, "truncated",
                               f"the external checkpoint copy covers {copy.tree_size} events but only {size} "
                               "remain in the database", copy.tree_size)
        if copy.tree_size >= boundary.last_seq and roots.get(copy.tree_size) != copy.root_hash:
            return TrailReport(False, checked, None, "altered",
                               f"the events up to {copy.tree_size} do not match the external checkpoint copy",
                               copy.tree_size)
    problem = await _check_archive(session, boundary, public_key, checked)
    if problem is not None:
        return problem
    if newest is None:
        return TrailReport(True, checked, None, None, f"{checked} events verified{archived}", None)
    checkpoint = Checkpoint.parse(bytes(newest.body))
    if not checkpoint.verify(bytes(newest.signature), public_key):
        return TrailReport(False, checked, None, "altered", "the newest checkpoint's signature does not verify",
                           newest.tree_size)
    if checkpoint.tree_size > size:
        return TrailReport(False, checked, size + 1, "truncated",
                           f"the signed checkpoint covers {checkpoint.tree_size} events but only {size} remain",
                           checkpoint.tree_size)
    if roots.get(checkpoint.tree_size) != checkpoint.root_hash:
        return TrailReport(False, checked, None, "altered",
                           f"the events up to {checkpoint.tree_size} do not match the signed checkpoint's root "
                           "(rewritten and re-sealed)", checkpoint.tree_size)
    return TrailReport(True, checked, None, None,
                       f"{checked} events verified; checkpoint at {checkpoint.tree_size} matches{archived}",
                       checkpoint.tree_size)


async def _store_compact_range(session: AsyncSession, compact: CompactRange) -> None:
    """Save the Merkle state at ``compact.size`` unless it is saved already."""
    if await session.get(AuditCompactRange, compact.size) is not None:
        return
    try:
        async with session.begin_nested():
            session.add(AuditCompactRange(tree_size=compact.size, nodes=compact.to_bytes()))
    except IntegrityError:
        pass  # another process saved the same size first: the same leaves, the same state


async def sign_checkpoint(session: AsyncSession, signing_key: Ed25519PrivateKey, compact: CompactRange,
                          sink: Path | None = None) -> SignedCheckpoint | None:
    """Sign and store the checkpoint of the tree ``compact`` describes, with its Merkle state; None if one of
    that size exists already (another process signed it first)."""
    checkpoint = Checkpoint(tree_size=compact.size, root_hash=compact.root(), timestamp=format_timestamp(utc_now()),
                            key_id=key_id(signing_key.public_key()))
    signature = checkpoint.sign(signing_key)
    try:
        async with session.begin_nested():
            session.add(AuditCheckpoint(tree_size=checkpoint.tree_size, root_hash=checkpoint.root_hash,
                                        body=checkpoint.body(), signature=signature, key_id=checkpoint.key_id,
                                        created_at=utc_now()))
    except IntegrityError:
        return None
    await _store_compact_range(session, compact)
    if sink is not None:
        # An external copy: truncating the database's tail cannot also rewrite this file's history.
        _append_to_sink(sink, f"{checkpoint.tree_size} {checkpoint.root_hash.hex()} {checkpoint.timestamp} "
                              f"{checkpoint.key_id} {signature.hex()}\n")
    return SignedCheckpoint(checkpoint, signature)


def _append_to_sink(sink: Path, line: str) -> None:
    created = not sink.exists()
    with sink.open("a", encoding="utf-8") as handle:
        if created:  # by a job run as root: the server must still be able to append to it
            give_to_directory_owner(handle.fileno(), sink.parent)
        handle.write(line)


async def merkle_state(session: AsyncSession, size: int, boundary: ArchiveBoundary | None = None, *,
                       batch_size: int = BATCH) -> CompactRange:
    """The compact range of the first ``size`` events: the newest stored state, extended by the events after it.

    Raises:
        ValueError: If ``size`` lies inside the archived prefix, or the events up to ``size`` have a gap.
    """
    boundary = boundary if boundary is not None else await archive_boundary(session)
    if size < boundary.last_seq:
        raise ValueError(f"events up to {boundary.last_seq} are archived; no Merkle state at {size}")
    compact = await _merkle_base(session, boundary, size)
    if compact.size < size:
        async for hashes in leaf_hash_batches(session, compact.size + 1, size, batch_size=batch_size):
            compact.extend(hashes)
    return compact


async def checkpoint_due(session: AsyncSession) -> int | None:
    """The chain head's sequence number if it is beyond the newest checkpoint, else None."""
    head = (await session.execute(select(func.max(AuditEventRecord.seq)))).scalar_one_or_none()
    if head is None:
        return None
    newest = (await session.execute(select(func.max(AuditCheckpoint.tree_size)))).scalar_one_or_none()
    return None if newest == head else int(head)


async def make_checkpoint(session: AsyncSession, signing_key: Ed25519PrivateKey,
                          sink: Path | None = None) -> SignedCheckpoint | None:
    """Sign the Merkle root of every event so far; None if there is nothing new since the last checkpoint.

    Incremental: starts from the Merkle state saved with the newest checkpoint (or archive) and hashes only the
    events sealed since, so a checkpoint costs O(new events) time and O(log n) memory.

    Raises:
        ValueError: If the events since the stored state have a gap (verify the trail).
    """
    head = await checkpoint_due(session)
    if head is None:
        return None
    return await sign_checkpoint(session, signing_key, await merkle_state(session, head), sink)


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


_EVENT_COLUMNS = (AuditEventRecord.seq, AuditEventRecord.canonical, AuditEventRecord.prev_hash, AuditEventRecord.hash)
SeqRange = tuple[ColumnElement[int] | int, ColumnElement[int] | int]  # the least and greatest seq, inclusive
# Up to this many events in a time window, finding its sequence bounds takes a few milliseconds, wherever it lies.
SMALL_WINDOW = 100_000


def _on_postgresql(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _bounded(query: EventQuery, seq_range: SeqRange | None,
             seq: SQLColumnExpression[int]) -> list[ColumnElement[bool]]:
    """The cursor and ``seq_range`` as conditions on ``seq`` (each index lookup is bounded by them, not only the
    result)."""
    limits: list[ColumnElement[bool]] = [] if seq_range is None else [seq.between(*seq_range)]
    return limits if query.before_seq is None else [*limits, seq < query.before_seq]


def _conditions(query: EventQuery, seq_range: SeqRange | None) -> list[ColumnElement[bool]]:
    """Every filter of ``query`` but the time window and the customer; the cursor and ``seq_range`` bound every
    sequence number it looks up."""
    conditions = [column == value for column, value in (
        (AuditEventRecord.actor_id, query.actor_id), (AuditEventRecord.entity, query.entity),
        (AuditEventRecord.entity_id, query.entity_id), (AuditEventRecord.action, query.action),
        (AuditEventRecord.outcome, query.outcome)) if value is not None]
    if query.field is not None:
        conditions.append(AuditEventRecord.seq.in_(
            select(AuditEventField.seq).where(AuditEventField.field == query.field,
                                              *_bounded(query, seq_range, AuditEventField.seq))))
    return [*conditions, *_bounded(query, seq_range, AuditEventRecord.seq)]


def _first_seqs(selection: Select[int], seq: SQLColumnExpression[int], *, oldest_first: bool, page: int
                ) -> Select[int]:
    """The first ``page`` sequence numbers of ``selection`` in the page's order, as a derived table (SQLite refuses
    ORDER BY and LIMIT in a UNION's members)."""
    ordered = selection.order_by(seq.asc() if oldest_first else seq.desc()).limit(page).subquery()
    return select(ordered.c.seq)


def _about_customer(query: EventQuery, subject_id: str, conditions: list[ColumnElement[bool]], *,
                    oldest_first: bool, page: int, seq_range: SeqRange | None) -> ColumnElement[bool]:
    """``seq IN`` the first ``page`` events about a customer that meet ``conditions``, in the page's order.

    "Everything that happened to or was seen of customer X": its own events (``subject_id``), its records'
    events where it is the record (``entity_id``), and events about several subjects at once (lists, exports),
    which name it in ``audit_event_subjects``. A union of three index lookups (the same condition written with
    OR made PostgreSQL read the whole table), each stopped after a page: a customer that every list shows is
    named by hundreds of thousands of list events, and without the limit the union gathered all of them before
    the first page was cut from it (~5 us an event).
    """
    def first_page(selection: Select[int], seq: SQLColumnExpression[int]) -> Select[int]:
        return _first_seqs(selection, seq, oldest_first=oldest_first, page=page)

    own = select(AuditEventRecord.seq).where(AuditEventRecord.subject_id == subject_id, *conditions)
    record = select(AuditEventRecord.seq).where(AuditEventRecord.entity_id == subject_id, *conditions)
    named = (select(AuditEventSubject.seq).join(AuditEventRecord, AuditEventRecord.seq == AuditEventSubject.seq)
             .where(AuditEventSubject.subject_id == subject_id,
                    *_bounded(query, seq_range, AuditEventSubject.seq), *conditions))
    return AuditEventRecord.seq.in_(union(first_page(own, AuditEventRecord.seq),
                                          first_page(record, AuditEventRecord.seq),
                                          first_page(named, AuditEventSubject.seq)))


def _time_window(query: EventQuery, ts: SQLColumnExpression[datetime]) -> list[ColumnElement[bool]]:
    """The conditions on ``ts`` (a column of the events or of a subquery of them) that ``since``/``until`` set."""
    window = [] if query.since is None else [ts >= query.since]
    return window if query.until is None else [*window, ts < query.until]


def _window_bounds(query: EventQuery) -> Select[int | None, int | None]:
    """The least and greatest ``seq`` of the events in the time window (both NULL when it holds none).

    One index-only scan of the window's entries in ``(ts, seq)``. ``seq + 0``, because over the bare column
    PostgreSQL's min/max rewrite walks the primary key from one end until it meets the window, costed as if
    the window's events were spread evenly over the trail when they are one contiguous stretch of it: that walk
    is what the time filter cost before (seconds at 10 million events).
    """
    low, high = func.min(AuditEventRecord.seq + 0), func.max(AuditEventRecord.seq + 0)
    return select(low.label("low"), high.label("high")).where(*_time_window(query, AuditEventRecord.ts))


def _window_bounds_inline(query: EventQuery) -> SeqRange:
    """The time window's bounds, computed inside the statement that uses them (once: InitPlans on PostgreSQL)."""
    bounds = _window_bounds(query).cte("window_bounds")
    return select(bounds.c.low).scalar_subquery(), select(bounds.c.high).scalar_subquery()


def _matching(query: EventQuery, *conditions: ColumnElement[bool], page: int, oldest_first: bool = False,
              seq_range: SeqRange | None = None, postgresql: bool = False) -> Select[int, bytes, bytes, bytes]:
    """The first ``page`` events matching ``query`` and ``conditions`` (on :class:`AuditEventRecord` columns),
    newest first (oldest first with ``oldest_first``).

    The page's sequence numbers are found first, from the filter's ``(column, seq)`` index alone, and only then
    its events read by primary key. Asked for whole events at once, PostgreSQL walks the primary key from the
    newest event and filters, whenever its statistics call the value common: an actor, entity or action common
    over the trail but absent from its newest stretch (a user who left; the last hour's reads outnumbering every
    other action) then costs hundreds of thousands of events read (214 ms against 1.8 ms at 10M events).

    With ``seq_range``, the bounds of the time window, only that range of the primary key is read (and the range
    also bounds each index lookup of the other filters). It is exact: every event in the window has a ``seq`` in
    the range, and ``ts`` follows ``seq`` closely, so the range holds little besides the window. The ``ts``
    conditions are still applied, to the few events in the range from outside the window (chained late, or whose
    neighbours were); on PostgreSQL outside a subquery it must plan on its own (``OFFSET 0``). Next to the range
    it takes the two as independent, expects a handful of rows, and reads every event of the window through
    ``(ts, seq)`` to sort them, instead of reading the range in order and stopping at the limit. SQLite reads the
    range in order as it is; given the subquery, it would sort it.
    """
    order = AuditEventRecord.seq.asc() if oldest_first else AuditEventRecord.seq.desc()
    if query.subject_id is not None:  # every filter goes into each branch of the customer's union
        matching = [*_conditions(query, seq_range), *_time_window(query, AuditEventRecord.ts), *conditions]
        about = _about_customer(query, query.subject_id, matching, oldest_first=oldest_first, page=page,
                                seq_range=seq_range)
        return select(*_EVENT_COLUMNS).where(about).order_by(order).limit(page)
    if seq_range is None or not postgresql:
        in_window = _time_window(query, AuditEventRecord.ts)
        first = _first_seqs(select(AuditEventRecord.seq).where(*_conditions(query, seq_range), *in_window, *conditions),
                            AuditEventRecord.seq, oldest_first=oldest_first, page=page)
        return select(*_EVENT_COLUMNS).where(AuditEventRecord.seq.in_(first)).order_by(order).limit(page)
    ranged = (select(*_EVENT_COLUMNS, AuditEventRecord.ts).where(*_conditions(query, seq_range), *conditions)
              .order_by(order).offset(0).subquery("ranged"))
    return (select(ranged.c.seq, ranged.c.canonical, ranged.c.prev_hash, ranged.c.hash)
            .where(*_time_window(query, ranged.c.ts))
            .order_by(ranged.c.seq.asc() if oldest_first else ranged.c.seq.desc()).limit(page))


async def _time_window_plan(session: AsyncSession, query: EventQuery) -> Literal["empty", "bounds", "walk"]:
    """How to answer a page of a time window: not at all (it holds no event), from the window's sequence bounds,
    or by walking back from the cursor (the newest event when there is none) as without a window.

    Three probes of one index entry each: the window's first and last entries in ``(ts, seq)``, and the head.
    Bounding a window scans all its entries in ``(ts, seq)``; walking back reads every event between the cursor
    and the window, and cannot stop early when the window holds fewer matches than a page. So a window is
    bounded when it is small or lies further behind the cursor than it is wide; a wide one near the cursor (last
    year's events, asked for today) is walked, as it was before bounds existed.
    """
    window = _time_window(query, AuditEventRecord.ts)

    def first(*order: ColumnElement[Any]) -> ScalarSelect[int]:
        return select(AuditEventRecord.seq).where(*window).order_by(*order).limit(1).scalar_subquery()

    ts, seq = AuditEventRecord.ts, AuditEventRecord.seq
    oldest, newest, head = (await session.execute(
        select(first(ts.asc(), seq.asc()), first(ts.desc(), seq.desc()), func.max(seq)))).one()
    if oldest is None or newest is None:
        return "empty"
    start = int(head) if query.before_seq is None else query.before_seq - 1
    width, behind = abs(int(newest) - int(oldest)), start - int(newest)
    return "bounds" if width <= max(behind, SMALL_WINDOW) else "walk"


async def query_events(session: AsyncSession, query: EventQuery) -> tuple[list[dict[str, Any]], int | None]:
    """Matching events newest first, and the cursor (a sequence number) of the next page."""
    seq_range: SeqRange | None = None
    if query.since is not None or query.until is not None:
        plan = await _time_window_plan(session, query)
        if plan == "empty":
            return [], None
        seq_range = _window_bounds_inline(query) if plan == "bounds" else None
    statement = _matching(query, page=query.limit + 1, seq_range=seq_range, postgresql=_on_postgresql(session))
    rows = (await session.execute(statement)).all()
    events = [{**decode_event(bytes(canonical)), "hash": bytes(digest).hex()}
              for _, canonical, _, digest in rows[: query.limit]]
    next_cursor = int(rows[query.limit - 1][0]) if len(rows) > query.limit else None
    return events, next_cursor


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """What an export proves against, fixed before its events are streamed."""

    query: EventQuery
    tree: MerkleTree
    checkpoints: list[SignedCheckpoint]
    selection: dict[str, JSONValue] | str
    created: str


async def prepare_export(session: AsyncSession, query: EventQuery, signing_key: Ed25519PrivateKey,
                         sink: Path | None = None) -> ExportPlan:
    """Sign a fresh checkpoint and build the Merkle tree every selected event is proven against.

    The tree holds the retained events' leaf hashes on top of the archived prefix's compact range (about 100
    bytes per retained event); checkpoints older than the archive boundary are left out, as proofs from them
    would need archived leaves (they are in the archive files).

    Raises:
        ValueError: If there is no event to export at all.
    """
    await make_checkpoint(session, signing_key, sink)
    boundary = await archive_boundary(session)
    stored = (await session.execute(select(AuditCheckpoint).where(AuditCheckpoint.tree_size >= boundary.last_seq)
                                    .order_by(AuditCheckpoint.tree_size))).scalars().all()
    checkpoints = [SignedCheckpoint(Checkpoint.parse(bytes(c.body)), bytes(c.signature)) for c in stored]
    if not checkpoints:
        raise ValueError("the audit trail has no checkpoint to prove an export against")
    tree_size = checkpoints[-1].checkpoint.tree_size
    leaves: list[bytes] = []
    if tree_size > boundary.last_seq:
        async for hashes in leaf_hash_batches(session, boundary.last_seq + 1, tree_size):
            leaves.extend(hashes)
    tree = MerkleTree(leaves, prefix=boundary.compact_range)
    selection: dict[str, JSONValue] = {key: str(value) for key, value in asdict(query).items()
                                       if value is not None and key not in {"limit", "before_seq"}}
    return ExportPlan(query, tree, checkpoints, selection or "all", format_timestamp(utc_now()))


async def _export_rows(session: AsyncSession, query: EventQuery, last: int) -> AsyncIterator[list[ChainRow]]:
    """The events matching ``query`` up to seq ``last``, oldest first, in batches."""
    bounds: tuple[int, int] | None = None
    if query.since is not None or query.until is not None:
        # The time window's bounds are found once for the whole export, not by every batch's statement.
        low, high = (await session.execute(_window_bounds(query))).one()
        if low is None or high is None:
            return  # nothing in the window
        bounds = (int(low), int(high))
    cursor, postgresql = 0, _on_postgresql(session)
    while True:
        statement = _matching(query, AuditEventRecord.seq > cursor, AuditEventRecord.seq <= last, page=BATCH,
                              oldest_first=True, seq_range=bounds, postgresql=postgresql)
        batch = [(int(seq), bytes(body), bytes(prev), bytes(digest))
                 for seq, body, prev, digest in (await session.execute(statement)).all()]
        if batch:
            yield batch
        if len(batch) < BATCH:
            return
        cursor = batch[-1][0]


async def export_lines(session: AsyncSession, plan: ExportPlan,
                       signing_key: Ed25519PrivateKey) -> AsyncIterator[str]:
    """The export's JSONL lines, reading the selected events from the database in batches as they are written."""
    writer = ExportWriter(plan.tree, plan.checkpoints, selection=plan.selection, created=plan.created,
                          signing_key=signing_key)
    for line in writer.opening():
        yield line
    async for batch in _export_rows(session, replace(plan.query, before_seq=None), writer.tree_size):
        for row in batch:
            yield writer.event(row)
    for line in writer.closing():
        yield line


async def export_events(session: AsyncSession, query: EventQuery, signing_key: Ed25519PrivateKey,
                        sink: Path | None = None) -> list[str]:
    """JSONL lines of the matching events with inclusion proofs against a fresh signed checkpoint, in memory.

    For large exports stream instead: :func:`prepare_export`, then :func:`export_lines`.
    """
    plan = await prepare_export(session, query, signing_key, sink)
    return [line async for line in export_lines(session, plan, signing_key)]


def new_export_name() -> str:
    """A file name for an export."""
    return f"audit-export-{utc_now():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}.jsonl"
