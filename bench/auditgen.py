"""Audit events in bulk: a year of realistic activity, encoded and chained exactly as Strongroom records them.

Each event is the dict that ``server/audit/trail.py`` ``record()`` encodes (the same keys and value forms: actor,
action, entity and id, sorted fields, before/after snapshots with sensitive values only as ciphertext, outcome,
request id, client address, user agent, reason), encoded by the server's
:func:`server.audit.canonical.encode_event` with its final sequence number and chained after the current head of
``audit_events`` by :func:`server.audit.chain.seal_event`. The rows go straight into ``audit_events``,
``audit_event_fields`` and ``audit_event_subjects`` (the query columns repeat what the canonical bytes say, as the
sealer writes them), so ``strongroom audit verify`` and the compliance queries see a real trail.

What the year looks like (:data:`ACTION_MIX`): mostly reads of single records and lists by the business users
(a few of them far busier than the rest), then updates, creates, logins, denials, failed logins, reveals,
exports and rare administrative events; every event about a record names its customer (``subject_id``), list
and export events name theirs in ``audit_event_subjects``. Timestamps rise with the sequence number over the
profile's year.

Speed: encoding validates every value and costs about 40 us per event in Python, so chunks are encoded by
forked worker processes (sharing the world read-only) while the main process chains them in order and streams
them to the database; only the hashing is sequential. For large loads the secondary indexes of the audit
tables are dropped first and rebuilt afterwards from their own definitions in the database, so they come back
exactly as the migrations made them.
"""

from __future__ import annotations

import bisect
import itertools
import multiprocessing
import os
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import server.audit.models  # noqa: F401 - registers the audit tables in Base.metadata
from bench.sealing import TokenPool
from server.audit.canonical import encode_event, format_timestamp
from server.audit.chain import GENESIS_HASH, seal_event
from server.audit.merkle import CompactRange, leaf_hash
from server.audit.tags import ActorType, AuditAction, AuditOutcome
from server.domain.activities import ACTIVITY
from server.domain.contacts import CONTACT
from server.domain.customers import CUSTOMER
from server.domain.fields import Classification, EntitySpec, FieldSpec, MaskFormat, ValueKind
from server.domain.opportunities import OPPORTUNITY
from server.domain.service_records import SERVICE_RECORD

EVENTS_TABLE = "audit_events"
FIELDS_TABLE = "audit_event_fields"
SUBJECTS_TABLE = "audit_event_subjects"
COMPACT_RANGES_TABLE = "audit_compact_ranges"
AUDIT_TABLES = (EVENTS_TABLE, FIELDS_TABLE, SUBJECTS_TABLE)
CHUNK = 10_000  # events per worker task and per database transaction
INDEX_REBUILD_FROM = 200_000  # from this many events, drop secondary indexes and rebuild them after the load
HISTORY_DAYS = 365
SENSITIVE = frozenset({Classification.PII, Classification.SENSITIVE})
ENTITIES: dict[str, EntitySpec] = {spec.name: spec for spec in (CUSTOMER, CONTACT, OPPORTUNITY, SERVICE_RECORD,
                                                                   ACTIVITY)}
BUSINESS_ROLES = frozenset({"sales_manager", "sales_rep", "support_agent", "marketing"})

# Share of each kind of event in the year (relative weights).
ACTION_MIX: dict[str, float] = {
    "read": 42, "list": 12, "update": 14, "create": 6, "delete": 0.6, "login": 9, "login_failed": 2.5,
    "token_rejected": 0.6, "denied": 2.5, "reveal": 1.2, "export": 0.4, "admin": 0.5,
}
# Which records people read and change (relative weights); activities hold no personal data, so reading
# them records nothing (only sensitive fields seen in clear are audited).
READ_ENTITIES = {"contact": 55, "customer": 20, "service_record": 15, "opportunity": 10}
WRITE_ENTITIES = {"contact": 35, "customer": 10, "service_record": 20, "opportunity": 15, "activity": 20}
ADMIN_EVENTS = (
    (AuditAction.USER_CHANGE, "user", "updated"), (AuditAction.POLICY_CHANGE, "policy", "role grants changed"),
    (AuditAction.CLIENT_CHANGE, "client", "secret rotated"), (AuditAction.KEY_ROTATE, "keyring", "scheduled"),
    (AuditAction.BACKUP, "backup", "nightly"),
)
LOGIN_FAILURES = ("wrong password", "wrong password", "unknown user", "account locked")
REVEAL_REASONS = ("identity check on a support call", "contract renewal: verify registration",
                  "fraud investigation ticket")
USER_AGENTS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0", "Mozilla/5.0 (Macintosh) Safari/605.1",
               "strongroom-console/1.4", "erp-connector/2.3 (python-httpx)", "callcentre-bridge/5.0")
CLIENT_ACTORS = (("erp-sync", ("sales_rep",)), ("call-centre", ("support_agent",)), ("web-forms", ("marketing",)))


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, as the trail records it (``trail.AuditActor``)."""

    type: str
    id: str | None
    name: str | None
    roles: tuple[str, ...] = ()


class EventRow(NamedTuple):
    """One encoded event and its query columns (what the sealer writes for it). A named tuple: chunks of them
    cross from the worker processes, and tuples pickle several times faster than dataclasses."""

    seq: int
    ts: datetime
    actor_id: str | None
    action: str
    entity: str | None
    entity_id: str | None
    subject_id: str | None
    outcome: str
    canonical: bytes
    fields: tuple[str, ...]
    subjects: tuple[str, ...]


@dataclass
class AuditWorld:
    """Everything the workers draw events from; read-only once the pool is forked."""

    business: list[Actor]
    admins: list[Actor]
    records: dict[str, list[tuple[uuid.UUID, uuid.UUID]]]  # entity -> (record id, customer id)
    tokens: TokenPool | None
    start: datetime
    end: datetime
    first_seq: int
    count: int
    seed: int
    business_weights: list[float] = field(default_factory=list)
    ids: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Ids as the events spell them, converted once instead of at every one of millions of picks.
        self.ids = {entity: [(str(record_id), str(customer_id)) for record_id, customer_id in pool]
                    for entity, pool in self.records.items()}
        # A few people do most of the work: Zipf-like weights over the business actors.
        self.business_weights = list(itertools.accumulate(1 / (rank + 1) ** 0.9 for rank in range(len(self.business))))

    @property
    def chunks(self) -> int:
        """How many chunks of :data:`CHUNK` events the load is cut into."""
        return -(-self.count // CHUNK)

    def moments(self, index: int, count: int, rng: random.Random) -> list[datetime]:
        """Sorted times for chunk ``index``: the chunks split the history evenly, in order."""
        span = (self.end - self.start) / self.chunks
        begin = self.start + span * index
        seconds = span.total_seconds()
        return [begin + timedelta(seconds=offset * seconds) for offset in sorted(rng.random() for _ in range(count))]


def actors_from_users(users: Sequence[tuple[str, str, Sequence[str]]]) -> tuple[list[Actor], list[Actor]]:
    """Business and administrative actors from the users table (plus the integrations' API clients)."""
    business: list[Actor] = []
    admins: list[Actor] = []
    for user_id, username, roles in users:
        actor = Actor(ActorType.USER.value, user_id, username, tuple(sorted(roles)))
        (business if BUSINESS_ROLES & set(roles) else admins).append(actor)
    rng = random.Random(11)
    business += [Actor(ActorType.CLIENT.value, str(uuid.UUID(int=rng.getrandbits(128))), name, roles)
                 for name, roles in CLIENT_ACTORS]
    rng.shuffle(business)
    if not admins:
        admins.append(Actor(ActorType.SYSTEM.value, None, "strongroom"))
    return business, admins


# -- one event ---------------------------------------------------------------------------------------------------


def _weighted(weights: Mapping[str, float]) -> tuple[list[str], list[float]]:
    return list(weights), list(itertools.accumulate(weights.values()))


_ACTIONS = _weighted(ACTION_MIX)
_READS = _weighted(READ_ENTITIES)
_WRITES = _weighted(WRITE_ENTITIES)


@dataclass
class Draft:
    """An event before encoding: what ``trail.record`` is called with."""

    action: str
    actor: Actor
    entity: str | None = None
    entity_id: str | None = None
    subject_id: str | None = None
    subjects: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    outcome: str = AuditOutcome.OK.value
    reason: str | None = None


class EventFactory:
    """Draws one plausible event at a time from the world (deterministic for a given ``rng``)."""

    def __init__(self, world: AuditWorld, rng: random.Random) -> None:
        self.world = world
        self.rng = rng
        self.addresses = [f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(64)]
        self.makers: dict[str, Callable[[], Draft]] = {
            "read": self.read, "list": self.list_read, "update": self.update, "create": self.create,
            "delete": self.delete, "login": self.login, "login_failed": self.login_failed,
            "token_rejected": self.token_rejected, "denied": self.denied, "reveal": self.reveal,
            "export": self.export, "admin": self.admin,
        }

    def encoded(self, seq: int, moment: datetime) -> EventRow:
        """Event ``seq`` at ``moment``, encoded canonically with its final sequence number."""
        draft = self.makers[_pick(self.rng, _ACTIONS)]()
        fields = tuple(sorted(set(draft.fields)))
        canonical = encode_event({
            "seq": seq, "ts": format_timestamp(moment), "actor_type": draft.actor.type, "actor_id": draft.actor.id,
            "actor_name": draft.actor.name, "actor_roles": list(draft.actor.roles), "action": draft.action,
            "entity": draft.entity, "entity_id": draft.entity_id, "fields": list(fields), "before": draft.before,
            "after": draft.after, "outcome": draft.outcome, "request_id": f"{self.rng.getrandbits(128):032x}",
            "client_address": self.rng.choice(self.addresses), "user_agent": self.rng.choice(USER_AGENTS),
            "reason": draft.reason,
        })
        subjects = tuple(sorted(set(draft.subjects) - {draft.subject_id}))
        return EventRow(seq, moment, draft.actor.id, draft.action, draft.entity, draft.entity_id, draft.subject_id,
                        draft.outcome, canonical, fields, subjects)

    # -- who and what

    def person(self) -> Actor:
        return self.world.business[bisect.bisect(self.world.business_weights,
                                                 self.rng.random() * self.world.business_weights[-1])]

    def record(self, entity: str) -> tuple[str, str]:
        """A record id and its customer; 40% of the activity goes to a hot tenth of the records."""
        pool = self.world.ids[entity]
        hot = self.rng.random() < 0.4
        return pool[self.rng.randrange(max(1, len(pool) // 10) if hot else len(pool))]

    def value(self, entity: EntitySpec, spec: FieldSpec) -> Any:
        """A field's value as ``RecordService.audit_snapshot`` keeps it: ciphertext or a marker if sensitive."""
        if spec.classification in SENSITIVE or spec.mask is not MaskFormat.NONE:
            token = self.world.tokens.get(entity.name, spec.name, self.rng) if self.world.tokens else None
            return token or "[sensitive]"
        return _plain_value(spec.kind, self.rng)

    def seen(self, entity: EntitySpec) -> tuple[str, ...]:
        """The sensitive fields a read shows in clear (most roles do not see every sensitive field)."""
        secret = _SECRET[entity.name]
        shown = _PERSONAL[entity.name] + tuple(name for name in secret if self.rng.random() < 0.4)
        return shown or secret

    # -- the kinds of events

    def read(self) -> Draft:
        entity = _pick(self.rng, _READS)
        record_id, customer_id = self.record(entity)
        return Draft(AuditAction.READ.value, self.person(), entity, record_id, customer_id,
                     fields=self.seen(ENTITIES[entity]))

    def list_read(self) -> Draft:
        entity = _pick(self.rng, _READS)
        picked = [self.record(entity) for _ in range(self.rng.randint(5, 30))]
        return Draft(AuditAction.READ.value, self.person(), entity, fields=self.seen(ENTITIES[entity]),
                     after={"records": [record_id for record_id, _ in picked]},
                     subjects=tuple(customer for _, customer in picked))

    def update(self) -> Draft:
        entity = ENTITIES[_pick(self.rng, _WRITES)]
        record_id, customer_id = self.record(entity.name)
        changed = self.rng.sample(_BUSINESS[entity.name], self.rng.randint(1, 3))
        return Draft(AuditAction.UPDATE.value, self.person(), entity.name, record_id, customer_id,
                     fields=tuple(spec.name for spec in changed),
                     before={spec.name: self.value(entity, spec) for spec in changed},
                     after={spec.name: self.value(entity, spec) for spec in changed})

    def create(self) -> Draft:
        entity = ENTITIES[_pick(self.rng, _WRITES)]
        record_id, customer_id = self.record(entity.name)
        snapshot = {spec.name: self.value(entity, spec) for spec in entity.fields}
        snapshot.update(id=record_id, version=1)
        written = [spec.name for spec in _BUSINESS[entity.name] if self.rng.random() < 0.7]
        return Draft(AuditAction.CREATE.value, self.person(), entity.name, record_id, customer_id,
                     fields=tuple(written), after=snapshot)

    def delete(self) -> Draft:
        entity = ENTITIES[_pick(self.rng, _WRITES)]
        record_id, customer_id = self.record(entity.name)
        snapshot = {spec.name: self.value(entity, spec) for spec in entity.fields}
        snapshot["id"] = record_id
        return Draft(AuditAction.DELETE.value, self.person(), entity.name, record_id, customer_id,
                     fields=tuple(snapshot), before=snapshot)

    def login(self) -> Draft:
        actor = self.person() if self.rng.random() < 0.9 else self.rng.choice(self.world.admins)
        return Draft(AuditAction.LOGIN.value, actor, "user", actor.id)

    def login_failed(self) -> Draft:
        person = self.person()
        actor = Actor(ActorType.ANONYMOUS.value, person.id, person.name)
        return Draft(AuditAction.LOGIN_FAILED.value, actor, "user", person.id, outcome=AuditOutcome.DENIED.value,
                     reason=self.rng.choice(LOGIN_FAILURES),
                     after={"failed_logins": self.rng.randint(1, 5), "locked_until": None})

    def token_rejected(self) -> Draft:
        actor = Actor(ActorType.ANONYMOUS.value, self.person().id, None)
        return Draft(AuditAction.TOKEN_REJECTED.value, actor, "token", outcome=AuditOutcome.DENIED.value,
                     reason=self.rng.choice(("expired", "revoked", "bad signature")))

    def denied(self) -> Draft:
        entity = ENTITIES[_pick(self.rng, _READS)]
        record_id, customer_id = self.record(entity.name)
        refused = _SECRET[entity.name][:1]
        return Draft(AuditAction.DENIED.value, self.person(), entity.name, record_id, customer_id,
                     fields=tuple(refused), outcome=AuditOutcome.DENIED.value,
                     reason=f"not allowed to write {', '.join(f'{entity.name}.{n}' for n in refused)}")

    def reveal(self) -> Draft:
        record_id, customer_id = self.record("contact")
        return Draft(AuditAction.REVEAL.value, self.person(), "contact", record_id, customer_id,
                     fields=("national_id",), reason=self.rng.choice(REVEAL_REASONS))

    def export(self) -> Draft:
        entity = _pick(self.rng, _READS)
        picked = [self.record(entity)[1] for _ in range(self.rng.randint(10, 40))]
        return Draft(AuditAction.EXPORT.value, self.person(), entity, fields=self.seen(ENTITIES[entity]),
                     after={"records": len(picked) * self.rng.randint(5, 50), "filters": {}}, subjects=tuple(picked))

    def admin(self) -> Draft:
        action, entity, reason = self.rng.choice(ADMIN_EVENTS)
        target = self.person().id if entity == "user" else None
        return Draft(action.value, self.rng.choice(self.world.admins), entity, target, reason=reason)


_RECORD_FIELDS = frozenset({"id", "version", "created_at", "updated_at", "customer_id"})
# Per entity: personal fields, other sensitive fields, and the fields a user sets (not bookkeeping).
_PERSONAL = {name: tuple(spec.name for spec in entity.fields if spec.classification is Classification.PII)
             for name, entity in ENTITIES.items()}
_SECRET = {name: tuple(spec.name for spec in entity.fields if spec.classification is Classification.SENSITIVE)
           for name, entity in ENTITIES.items()}
_BUSINESS = {name: [spec for spec in entity.fields if spec.name not in _RECORD_FIELDS]
             for name, entity in ENTITIES.items()}


def _pick(rng: random.Random, weighted: tuple[list[str], list[float]]) -> str:
    names, cumulative = weighted
    return names[bisect.bisect(cumulative, rng.random() * cumulative[-1])]


def _plain_value(kind: ValueKind, rng: random.Random) -> Any:
    """A plausible non-sensitive value in the form ``trail.audit_value`` gives it."""
    if kind is ValueKind.BOOLEAN:
        return rng.random() < 0.5
    if kind is ValueKind.INTEGER:
        return rng.randint(0, 100)
    if kind is ValueKind.UUID:
        return str(uuid.UUID(int=rng.getrandbits(128)))
    if kind is ValueKind.DATETIME:
        return (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(3 * 10**7))).isoformat()
    if kind is ValueKind.DATE:
        return (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=rng.randrange(365))).date().isoformat()
    if kind is ValueKind.TEXT_LIST:
        return rng.sample(["vip", "renewal", "pilot", "key-account"], rng.randint(0, 2))
    return rng.choice(["qualification", "proposal", "normal", "high", "open", "closed", "Buyer", "EUR", "web"])


# -- workers -----------------------------------------------------------------------------------------------------

_WORLD: AuditWorld | None = None  # set in the parent before the pool forks


def encode_chunk(index: int) -> list[EventRow]:
    """Chunk ``index`` of the load: its events with their final sequence numbers, encoded (worker side)."""
    world = _WORLD
    assert world is not None, "encode_chunk runs in a worker forked after the world was set"
    rng = random.Random(world.seed * 1_000_003 + index)
    first = world.first_seq + index * CHUNK
    count = min(CHUNK, world.first_seq + world.count - first)
    factory = EventFactory(world, rng)
    return [factory.encoded(first + offset, moment) for offset, moment in enumerate(world.moments(index, count, rng))]


def _encode_columns(index: int) -> list[list[Any]]:
    """:func:`encode_chunk` as columns: a few long lists pickle about three times faster than many tuples."""
    return [list(column) for column in zip(*encode_chunk(index), strict=True)]


def _rows_of(columns: list[list[Any]]) -> list[EventRow]:
    return [EventRow(*values) for values in zip(*columns, strict=True)]


def encoded_chunks(world: AuditWorld, workers: int) -> Iterator[list[EventRow]]:
    """Every chunk, in order, encoded by ``workers`` forked processes (else inline).

    At most two chunks per worker are in flight, so memory stays flat however slow the database is.
    """
    global _WORLD  # the fork hands the world to the workers without pickling it
    _WORLD = world
    # Forking a process that runs other threads can copy a lock some thread holds (the smoke run prepares both
    # backends in threads): encode inline there.
    if workers <= 1 or world.chunks <= 1 or threading.current_thread() is not threading.main_thread():
        yield from (encode_chunk(index) for index in range(world.chunks))
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        indexes = iter(range(world.chunks))
        pending = deque(pool.apply_async(_encode_columns, (index,))
                        for index in itertools.islice(indexes, 2 * workers))
        while pending:
            columns = pending.popleft().get()
            following = next(indexes, None)
            if following is not None:
                pending.append(pool.apply_async(_encode_columns, (following,)))
            yield _rows_of(columns)


def chain_chunk(chunk: Sequence[EventRow], prev_hash: bytes) -> tuple[list[tuple[EventRow, bytes, bytes]], bytes]:
    """Each event with its previous hash and its hash (``seal_event``), and the new head hash."""
    sealed = []
    for event in chunk:
        digest = seal_event(prev_hash, event.seq, event.canonical)
        sealed.append((event, prev_hash, digest))
        prev_hash = digest
    return sealed, prev_hash


# -- the samples the query scenarios pick from ---------------------------------------------------------------


class QuerySamples:
    """Values for each compliance filter, drawn from the generated events (reservoirs, so by frequency)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.rng = random.Random(seed)
        self.reservoirs: dict[str, list[str]] = {"actor": [], "record": [], "customer": []}
        self.offered = dict.fromkeys(self.reservoirs, 0)
        self.distinct: dict[str, set[str]] = {"entity": set(), "field": set(), "action": set(), "outcome": set()}
        self.first: datetime | None = None
        self.last: datetime | None = None

    def observe(self, chunk: Sequence[EventRow]) -> None:
        for event in chunk:
            self.distinct["action"].add(event.action)
            self.distinct["outcome"].add(event.outcome)
            self.distinct["field"].update(event.fields)
            if event.entity:
                self.distinct["entity"].add(event.entity)
            self._offer("actor", event.actor_id)
            self._offer("record", f"{event.entity} {event.entity_id}" if event.entity and event.entity_id else None)
            self._offer("customer", event.subject_id)
        if chunk:
            self.first = self.first or chunk[0].ts
            self.last = chunk[-1].ts

    def _offer(self, name: str, value: str | None) -> None:
        if value is None:
            return
        self.offered[name] += 1
        reservoir = self.reservoirs[name]
        if len(reservoir) < self.size:
            reservoir.append(value)
        else:
            slot = self.rng.randrange(self.offered[name])
            if slot < self.size:
                reservoir[slot] = value

    def windows(self, count: int, length: timedelta = timedelta(days=1)) -> list[str]:
        """``since until`` pairs: one-day windows inside the generated history."""
        if self.first is None or self.last is None:
            return []
        room = max(0.0, (self.last - self.first - length).total_seconds())
        starts = (self.first + timedelta(seconds=self.rng.random() * room) for _ in range(count))
        return [f"{_iso(start)} {_iso(start + length)}" for start in starts]

    def write(self, out_dir: Path) -> dict[str, str]:
        """One file per filter (``audit_<filter>.txt``, one value or value pair per line)."""
        lines: dict[str, list[str]] = {**self.reservoirs, **{key: sorted(values) for key, values in
                                                              self.distinct.items()},
                                       "time": self.windows(min(self.size, 1_000))}
        files = {}
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, values in lines.items():
            path = out_dir / f"audit_{name}.txt"
            path.write_text("".join(f"{value}\n" for value in values), encoding="utf-8")
            files[f"audit_{name}"] = str(path)
        return files


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the load ----------------------------------------------------------------------------------------------------


class AuditWriter(Protocol):
    """What the generator needs from ``bench.datagen``'s SQLite and PostgreSQL writers."""

    async def columns(self, table: str) -> list[str]: ...
    async def audit_head(self) -> tuple[int, bytes]: ...
    async def canonicals(self, last: int) -> list[bytes]: ...
    async def users(self) -> list[tuple[str, str, list[str]]]: ...
    async def write_tuples(self, tables: Sequence[tuple[str, list[str], list[tuple[Any, ...]]]], *,
                           checked: bool = True) -> None: ...
    async def drop_indexes(self, tables: Sequence[str]) -> list[tuple[str, str]]: ...
    async def create_indexes(self, indexes: Sequence[tuple[str, str]]) -> None: ...


@dataclass
class AuditLoad:
    """Settings of one audit load."""

    count: int
    records: dict[str, list[tuple[uuid.UUID, uuid.UUID]]]
    tokens: TokenPool | None
    out_dir: Path
    sample_size: int
    seed: int = 1
    workers: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    end: datetime = field(default_factory=lambda: datetime.now(UTC))


def _rows(sealed: Sequence[tuple[EventRow, bytes, bytes]], columns: dict[str, list[str]]
          ) -> list[tuple[str, list[str], list[tuple[Any, ...]]]]:
    """The chunk as rows of the audit tables, in each table's column order (unknown columns left NULL)."""
    events: list[tuple[Any, ...]] = []
    touched: list[tuple[Any, ...]] = []
    concerned: list[tuple[Any, ...]] = []
    for event, prev_hash, digest in sealed:
        values = {"seq": event.seq, "ts": event.ts, "actor_id": event.actor_id, "action": event.action,
                  "entity": event.entity, "entity_id": event.entity_id, "subject_id": event.subject_id,
                  "outcome": event.outcome, "canonical": event.canonical, "prev_hash": prev_hash, "hash": digest}
        events.append(tuple(values.get(column) for column in columns[EVENTS_TABLE]))
        touched.extend((event.seq, name) for name in event.fields)
        concerned.extend((event.seq, subject) for subject in event.subjects)
    tables = [(EVENTS_TABLE, columns[EVENTS_TABLE], events), (FIELDS_TABLE, ["seq", "field"], touched)]
    if columns.get(SUBJECTS_TABLE):
        tables.append((SUBJECTS_TABLE, ["seq", "subject_id"], concerned))
    return tables


async def load_audit_events(writer: AuditWriter, load: AuditLoad) -> dict[str, Any]:
    """Append ``load.count`` events after the chain head; returns the report (rate, files, index rebuild)."""
    started = time.perf_counter()
    columns = {table: await writer.columns(table) for table in AUDIT_TABLES}
    if not columns[EVENTS_TABLE] or not columns[FIELDS_TABLE]:
        return {"status": "not available yet", "reason": "the schema has no audit_events/audit_event_fields"}
    head_seq, head_hash = await writer.audit_head()
    business, admins = actors_from_users(await writer.users())
    world = AuditWorld(business, admins, load.records, load.tokens, load.end - timedelta(days=HISTORY_DAYS),
                       load.end, head_seq + 1, load.count, load.seed)
    samples = QuerySamples(load.sample_size, load.seed)
    rebuilt = await writer.drop_indexes(AUDIT_TABLES) if load.count >= INDEX_REBUILD_FROM else []
    prev_hash = head_hash
    # The Merkle state a running server would have stored with its last checkpoint: without it, the server's
    # first scheduled checkpoint hashes the whole generated trail while the scenarios are measured.
    merkle = CompactRange()
    merkle.extend([leaf_hash(canonical) for canonical in await writer.canonicals(head_seq)])
    try:
        for chunk in encoded_chunks(world, load.workers):
            sealed, prev_hash = chain_chunk(chunk, prev_hash)
            merkle.extend([leaf_hash(event.canonical) for event in chunk])
            await writer.write_tuples(_rows(sealed, columns), checked=False)
            samples.observe(chunk)
        await writer.write_tuples([(COMPACT_RANGES_TABLE, ["tree_size", "nodes"],
                                    [(merkle.size, merkle.to_bytes())])])
        loaded = time.perf_counter() - started
    finally:
        index_started = time.perf_counter()
        await writer.create_indexes(rebuilt)
    indexes = time.perf_counter() - index_started
    seconds = time.perf_counter() - started
    return {
        "status": "loaded", "events": load.count, "first_seq": head_seq + 1, "last_seq": head_seq + load.count,
        "seconds": round(seconds, 1), "events_per_s": round(load.count / seconds) if seconds else None,
        "insert_seconds": round(loaded, 1), "index_rebuild_seconds": round(indexes, 1) if rebuilt else None,
        "workers": load.workers, "history": f"{world.start:%Y-%m-%d} .. {world.end:%Y-%m-%d}",
        "actors": len(business) + len(admins), "files": samples.write(load.out_dir),
        "genesis": head_hash == GENESIS_HASH,
    }
