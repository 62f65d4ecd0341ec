"""The sealer: gives pending audit events their place in the chain, in the order they committed.

Business transactions write events to ``audit_pending`` (:func:`server.audit.trail.record`). A seal pass, in
one transaction of its own, takes the pending rows it can see (committed ones only), appends them to
``audit_events`` after the chain head with consecutive sequence numbers and their hashes, and deletes them
from ``audit_pending``. So:

- a committed change always has its event (pending until sealed, then in the chain); an uncommitted one
  never has;
- the chain has no fork and no gap: seal passes are serialised (``pg_advisory_xact_lock``, transaction-scoped,
  on PostgreSQL; the write lock of ``BEGIN IMMEDIATE`` on SQLite) and only sealers take that lock, so
  business transactions never wait for the chain head;
- a crash between commit and seal loses nothing: the next pass (after restart) seals what is pending.

Every server process runs :func:`seal_continuously`; readers that must see every committed event (compliance
queries, verification, exports, checkpoints, backups) call :func:`seal_pending` first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

import structlog
from sqlalchemy import Table, delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from server.audit.chain import GENESIS_HASH, seal_event
from server.audit.models import AuditEventField, AuditEventRecord, AuditEventSubject, AuditPending
from server.audit.trail import PLACEHOLDER_SEQ, off_event_committed, on_event_committed
from server.db import write_transaction

log = structlog.get_logger(__name__)

# An arbitrary, fixed 64-bit key naming "the audit chain head" among advisory locks.
CHAIN_LOCK_KEY: Final = 0x5354524F4E47  # "STRONG"
BATCH: Final = 2_000
# Core inserts of the tables (plain executemany): the ORM's bulk path adds nothing here but per-row work.
_EVENTS: Final = cast(Table, AuditEventRecord.__table__)
_EVENT_FIELDS: Final = cast(Table, AuditEventField.__table__)
_EVENT_SUBJECTS: Final = cast(Table, AuditEventSubject.__table__)
# This process's commits wake the sealer at once; other processes' (a second server, a command-line job) are
# found by this fallback poll, and by any seal pass that runs anyway.
POLL_SECONDS: Final = 1.0
# After a wake-up the sealer waits this long before its pass, so the events of concurrent requests are chained
# in one pass (one lock, one fsync) instead of one pass each. No request waits for the sealer: readers that
# must see every committed event run a pass themselves.
COALESCE_SECONDS: Final = 0.02

# In canonical bytes the keys are sorted, so the top-level "seq" follows "request_id" (always present) and
# precedes "ts". Inside a JSON string every '"' is escaped, so ',"seq":' can only be a key; "before" and
# "after" (objects that may hold a key named seq) come earlier, so the last occurrence is the event's own.
_PLACEHOLDER: Final = f',"seq":{PLACEHOLDER_SEQ},"ts":"'.encode()


def with_seq(canonical: bytes, seq: int) -> bytes:
    """The pending event's canonical bytes with its real sequence number in place of the placeholder."""
    at = canonical.rindex(_PLACEHOLDER)  # split_at_seq, inlined: this runs for every event of every seal pass
    return b"".join((canonical[:at], b',"seq":', str(seq).encode(), b',"ts":"',
                     canonical[at + len(_PLACEHOLDER):]))


def split_at_seq(canonical: bytes) -> tuple[bytes, bytes]:
    """A pending event's canonical bytes cut where its sequence number goes: the bytes before the number and
    after it (``strongroom_audit_append`` joins them around the number on PostgreSQL)."""
    at = canonical.rindex(_PLACEHOLDER)
    return canonical[:at] + b',"seq":', b',"ts":"' + canonical[at + len(_PLACEHOLDER):]


# What appends to the chain runs on a session (seal passes) or on a connection held for it (group commit).
Executor = AsyncSession | AsyncConnection


def _dialect(session: Executor) -> str:
    bind = session if isinstance(session, AsyncConnection) else session.get_bind()
    return bind.dialect.name


async def _lock_chain(session: Executor) -> None:
    """Hold the chain head for the rest of the current transaction.

    PostgreSQL: a transaction-scoped advisory lock, taken only by code that appends to the chain. SQLite: the
    caller's ``BEGIN IMMEDIATE`` already holds the one write lock.
    """
    if _dialect(session) == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})


# The columns of audit_events in the order the append statements take them.
EVENT_COLUMNS: Final = ("seq", "pending_id", "ts", "actor_id", "action", "entity", "entity_id", "subject_id",
                        "outcome", "canonical", "prev_hash", "hash")


@dataclass(slots=True)
class ChainedRows:
    """Rows for the three event tables, chained after a head (:func:`chain_rows`), kept as columns: one list
    per column of :data:`EVENT_COLUMNS`, and sequence numbers with values for the field and subject rows.
    PostgreSQL takes the columns as arrays as they are; :attr:`events`, :attr:`touched` and :attr:`concerned`
    give them as rows."""

    columns: tuple[list[Any], ...] = field(default_factory=lambda: tuple([] for _ in EVENT_COLUMNS))
    touched_seq: list[int] = field(default_factory=list)
    touched_field: list[str] = field(default_factory=list)
    concerned_seq: list[int] = field(default_factory=list)
    concerned_subject: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.columns[0])

    @property
    def events(self) -> list[dict[str, Any]]:
        """The ``audit_events`` rows."""
        return [dict(zip(EVENT_COLUMNS, values, strict=True)) for values in zip(*self.columns, strict=True)]

    @property
    def touched(self) -> list[dict[str, object]]:
        """The ``audit_event_fields`` rows."""
        return [{"seq": seq, "field": name} for seq, name in zip(self.touched_seq, self.touched_field, strict=True)]

    @property
    def concerned(self) -> list[dict[str, object]]:
        """The ``audit_event_subjects`` rows."""
        return [{"seq": seq, "subject_id": subject}
                for seq, subject in zip(self.concerned_seq, self.concerned_subject, strict=True)]


def chain_rows(head_seq: int, head_hash: bytes, rows: Iterable[tuple[int | None, Mapping[Any, Any]]]) -> ChainedRows:
    """The chaining itself, no database: each ``(pending id or None, pending-event row)`` gets the next sequence
    number after ``head_seq``, its canonical bytes with that number, and its hash over the previous one."""
    seq, prev_hash = head_seq, head_hash
    chained = ChainedRows()
    (seqs, pending_ids, times, actor_ids, actions, entities, entity_ids, subject_ids, outcomes, canonicals,
     prev_hashes, hashes) = chained.columns
    touched_seq, touched_field = chained.touched_seq, chained.touched_field
    concerned_seq, concerned_subject = chained.concerned_seq, chained.concerned_subject
    for pending_id, row in rows:
        seq += 1
        canonical = with_seq(bytes(row["canonical"]), seq)
        digest = seal_event(prev_hash, seq, canonical)
        seqs.append(seq)
        pending_ids.append(pending_id)
        times.append(row["ts"])
        actor_ids.append(row["actor_id"])
        actions.append(row["action"])
        entities.append(row["entity"])
        entity_ids.append(row["entity_id"])
        subject_ids.append(row["subject_id"])
        outcomes.append(row["outcome"])
        canonicals.append(canonical)
        prev_hashes.append(prev_hash)
        hashes.append(digest)
        names = row["fields"].split()
        if names:
            touched_seq.extend([seq] * len(names))
            touched_field.extend(names)
        subjects = row["subjects"].split()
        if subjects:
            concerned_seq.extend([seq] * len(subjects))
            concerned_subject.extend(subjects)
        prev_hash = digest
    return chained


# PostgreSQL: the three tables in one statement, each column as one array (unnest). An executemany would
# execute one INSERT per event, per field and per subject (a read event names five fields), each a round of
# the protocol and of the executor. Seal passes use it; read events go through strongroom_audit_append, which
# inserts the same way inside the database (:func:`chain_now_on_driver`).
_APPEND_POSTGRESQL: Final = (
    "WITH chained AS ("
    " INSERT INTO audit_events (seq, pending_id, ts, actor_id, action, entity, entity_id, subject_id, outcome,"
    " canonical, prev_hash, hash)"
    " SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[], $4::varchar[], $5::varchar[],"
    " $6::varchar[], $7::varchar[], $8::varchar[], $9::varchar[], $10::bytea[], $11::bytea[], $12::bytea[])"
    "), touched AS ("
    " INSERT INTO audit_event_fields (seq, field) SELECT * FROM unnest($13::bigint[], $14::varchar[])"
    ") INSERT INTO audit_event_subjects (seq, subject_id) SELECT * FROM unnest($15::bigint[], $16::varchar[])"
)


def _append_arrays(chained: ChainedRows) -> tuple[list[Any], ...]:
    """The parameters of :data:`_APPEND_POSTGRESQL`, in order."""
    return (*chained.columns, chained.touched_seq, chained.touched_field, chained.concerned_seq,
            chained.concerned_subject)


def chain_after(head: Any, rows: Iterable[tuple[int | None, Mapping[Any, Any]]]) -> ChainedRows:
    """:func:`chain_rows` after ``head``, a ``(seq, hash)`` row of the chain's last event, or None for an empty
    chain."""
    return chain_rows(*((int(head[0]), bytes(head[1])) if head else (0, GENESIS_HASH)), rows)


async def _append(session: Executor, rows: Iterable[tuple[int | None, Mapping[Any, Any]]]) -> None:
    """Append events after the chain head (call under :func:`_lock_chain`); see :func:`chain_rows`."""
    head = (await session.execute(
        select(AuditEventRecord.seq, AuditEventRecord.hash).order_by(AuditEventRecord.seq.desc()).limit(1)
    )).first()
    chained = chain_after(head, rows)
    if not chained:
        return
    if _dialect(session) == "postgresql":
        connection = session if isinstance(session, AsyncConnection) else await session.connection()
        await connection.exec_driver_sql(_APPEND_POSTGRESQL, _append_arrays(chained))
        return
    await session.execute(insert(_EVENTS), chained.events)
    if chained.touched_seq:
        await session.execute(insert(_EVENT_FIELDS), chained.touched)
    if chained.concerned_seq:
        await session.execute(insert(_EVENT_SUBJECTS), chained.concerned)


async def _seal_batch(session: AsyncSession) -> int:
    """Seal up to :data:`BATCH` pending events in the current transaction; return how many."""
    await _lock_chain(session)
    pending = (await session.execute(
        select(AuditPending.id, AuditPending.ts, AuditPending.actor_id, AuditPending.action, AuditPending.entity,
               AuditPending.entity_id, AuditPending.subject_id, AuditPending.outcome, AuditPending.fields,
               AuditPending.subjects, AuditPending.canonical)
        .order_by(AuditPending.id).limit(BATCH)
    )).all()
    if not pending:
        return 0
    await _append(session, ((row.id, row._mapping) for row in pending))
    await session.execute(delete(AuditPending).where(AuditPending.id.in_([row[0] for row in pending])))
    return len(pending)


async def chain_now(session: Executor, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append events that change nothing else (reads) straight to the chain, in the caller's write transaction.

    Their transaction is their seal pass: they skip ``audit_pending`` (an insert, a read and a delete fewer per
    event) and wake no sealer. Events of business transactions stay pending until the sealer takes them; the
    chain's order is the order events were chained in, which for these is the order they committed.
    """
    await _lock_chain(session)
    await _append(session, ((None, row) for row in rows))


# The event columns taken from a pending-event row as they are, in the order strongroom_audit_append takes them.
_PLAIN_COLUMNS: Final = ("ts", "actor_id", "action", "entity", "entity_id", "subject_id", "outcome")


def unchained_arrays(rows: Sequence[Mapping[str, Any]]) -> tuple[list[Any], ...]:
    """The parameters of ``strongroom_audit_append`` (PostgreSQL) for pending-event rows appended in order: one
    array per event column, the canonical bytes cut at the sequence number (:func:`split_at_seq`), and the
    field and subject rows with the 1-based position of their event in the batch."""
    plain: tuple[list[Any], ...] = tuple([] for _ in _PLAIN_COLUMNS)
    befores: list[bytes] = []
    afters: list[bytes] = []
    field_events: list[int] = []
    field_names: list[str] = []
    subject_events: list[int] = []
    subjects: list[str] = []
    for position, row in enumerate(rows, start=1):
        for values, name in zip(plain, _PLAIN_COLUMNS, strict=True):
            values.append(row[name])
        before, after = split_at_seq(bytes(row["canonical"]))
        befores.append(before)
        afters.append(after)
        names = row["fields"].split()
        field_events.extend([position] * len(names))
        field_names.extend(names)
        concerned = row["subjects"].split()
        subject_events.extend([position] * len(concerned))
        subjects.extend(concerned)
    return ([None] * len(befores), *plain, befores, afters, field_events, field_names, subject_events, subjects)


# Lock, head, chaining and the three inserts in the database (migration b4e8c1d2f3a5); see chain_now_on_driver.
_APPEND_IN_DATABASE: Final = ("SELECT strongroom_audit_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
                              " $13, $14)")


async def chain_now_on_driver(driver: Any, rows: Sequence[Mapping[str, Any]]) -> int:
    """:func:`chain_now` on a bare asyncpg connection outside a transaction (PostgreSQL only), in one statement
    that is its own durable transaction; returns the sequence number of the last event.

    The group-commit writer's path. ``strongroom_audit_append`` takes the chain lock, reads the head, chains
    and inserts, so a batch costs one round trip instead of four (BEGIN and lock, head, insert, COMMIT) and no
    SQLAlchemy per-statement work. Its hashes are :func:`server.audit.chain.seal_event`'s, computed by
    PostgreSQL's ``sha256``; verification recomputes them in Python.
    """
    last: int = await driver.fetchval(_APPEND_IN_DATABASE, *unchained_arrays(rows))
    return last


# Whether a batch's first event is in the chain: its time (indexed with seq) and its canonical bytes up to
# the sequence number, which name the request, the actor, the act and the time.
_LANDED: Final = ("SELECT EXISTS (SELECT FROM audit_events WHERE ts = $1"
                  " AND substring(canonical FROM 1 FOR length($2::bytea)) = $2::bytea)")


async def chain_unless_landed_on_driver(driver: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """:func:`chain_now_on_driver` again for a batch that was sent and then lost with its connection, so that
    it may or may not have committed: under the chain lock, the batch is appended only if its first event is
    not in the chain (a batch commits whole or not at all)."""
    async with driver.transaction():
        await driver.execute(f"SELECT pg_advisory_xact_lock({CHAIN_LOCK_KEY})")
        before, _ = split_at_seq(bytes(rows[0]["canonical"]))
        if not await driver.fetchval(_LANDED, rows[0]["ts"], before):
            await chain_now_on_driver(driver, rows)  # its lock is already held: taken again, at once


async def events_waiting(session: AsyncSession) -> bool:
    """Whether committed events wait for the sealer (``audit_pending`` holds any)."""
    return (await session.execute(select(AuditPending.id).limit(1))).first() is not None


async def seal_pending(session: AsyncSession) -> int:
    """Seal every pending event committed before the call; return how many. Call outside a transaction."""
    total = 0
    look_first = _dialect(session) == "sqlite"
    while True:
        # On SQLite, a look without the write lock first: an idle server must not take it every pass. On
        # PostgreSQL the pass itself is the look (its lock blocks only other sealers), one transaction fewer.
        if look_first:
            async with session.begin():
                if not await events_waiting(session):
                    return total
        async with write_transaction(session):
            sealed = await _seal_batch(session)
        total += sealed
        if sealed < BATCH:
            return total


async def seal_continuously(session_factory: async_sessionmaker[AsyncSession], *,
                            poll_seconds: float = POLL_SECONDS, coalesce_seconds: float = COALESCE_SECONDS) -> None:
    """Seal pending events for as long as the server runs; an error is logged and the next pass retries."""
    wakeup = asyncio.Event()
    on_event_committed(wakeup.set)
    try:
        while True:
            wakeup.clear()
            try:
                async with session_factory() as session:
                    await seal_pending(session)
            except Exception as error:  # noqa: BLE001 - the loop must outlive a failed pass; nothing is lost
                log.warning("audit_seal_failed", error_type=type(error).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout=poll_seconds)
            await asyncio.sleep(coalesce_seconds)
    finally:
        off_event_committed(wakeup.set)
