"""Bulk data generator for the benchmarks: realistic CRM volumes, loaded straight into the database.

Rows are generated in batches per customer (the customer, then its contacts, opportunities and their stage
history, service records and activities) and streamed into the tables in foreign-key order: ``executemany``
on SQLite (stdlib ``sqlite3``), ``COPY`` on PostgreSQL (asyncpg ``copy_records_to_table``). Nothing is held in
memory but one batch and the id lists the load driver samples from.

Values are stored exactly as Strongroom's own column types would store them: the SQLite values go through
the SQLAlchemy bind processors of Strongroom's models (UUID as 32-hex text, UTC datetimes as naive text, money
as scaled integers, JSON as text); PostgreSQL receives native values.

Encryption hook: every value of a field that Strongroom declares ``encrypted=True`` passes through
:func:`seal_value` (and every row through :func:`seal_row`, which may add derived columns such as blind
indexes). Today they return the plain value, because Strongroom stores plain values. When column encryption
lands, make them produce what Strongroom stores (ciphertext bound to table, column and row id; blind index
columns), so that both the baseline and Strongroom read the same, realistic bytes.

Usage (normally called by ``bench/run.py``)::

    python -m bench.datagen --url sqlite+aiosqlite:///var/strongroom.db --profile smoke --out /tmp/ids
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import uuid_utils
from sqlalchemy import JSON, Table
from sqlalchemy.dialects import sqlite as sqlite_dialect

from server.domain.activities import ACTIVITY
from server.domain.base import Base
from server.domain.contacts import CONTACT
from server.domain.customers import CUSTOMER
from server.domain.fields import EntitySpec
from server.domain.opportunities import OPPORTUNITY
from server.domain.service_records import SERVICE_RECORD
from server.security.identity import User  # noqa: F401 - registers the users table in Base.metadata


@dataclass(frozen=True)
class Profile:
    """Data volumes. Children are per customer on average (drawn around the mean)."""

    name: str
    customers: int
    contacts_per_customer: float
    opportunities_per_customer: float
    service_records_per_customer: float
    activities_per_customer: float
    audit_events: int
    owners: int
    id_sample: int  # ids written to the files the load driver picks from


PROFILES = {
    # CI smoke: seconds, just enough rows for every scenario to find its data.
    "smoke": Profile("smoke", 300, 3, 1, 1, 2, 2_000, 5, 300),
    # The standard profile: 100,000 customers, 300,000 contacts, 1,000,000 audit events.
    "standard": Profile("standard", 100_000, 3, 1, 1, 2, 1_000_000, 20, 20_000),
    # The large profile (PostgreSQL): 1,000,000 contacts, 10,000,000 audit events.
    "large": Profile("large", 333_334, 3, 1, 1, 2, 10_000_000, 50, 50_000),
}

BATCH_CUSTOMERS = 2_000
TABLE_ORDER = ("users", "customers", "contacts", "opportunities", "opportunity_stage_history", "service_records",
               "activities")
ENTITY_TABLES: dict[str, EntitySpec] = {
    "customers": CUSTOMER, "contacts": CONTACT, "opportunities": OPPORTUNITY,
    "service_records": SERVICE_RECORD, "activities": ACTIVITY,
}
# The fields Strongroom declares as encrypted, per table (read from the domain's field declarations).
ENCRYPTED_FIELDS: dict[str, frozenset[str]] = {
    table: frozenset(spec.name for spec in entity.fields if spec.encrypted) for table, entity in ENTITY_TABLES.items()
}


# -- the encryption hook ----------------------------------------------------------------------------------------

# True once seal_value/seal_row write what Strongroom stores (ciphertext, blind indexes). While False, the
# benchmark treats blind-index search as not available and warns if Strongroom's schema already encrypts.
SEALS_VALUES = False


def seal_value(table: str, column: str, record_id: uuid.UUID, plaintext: str | None) -> str | None:
    """The stored form of an encrypted field's value. THE place to plug Strongroom's sealing in.

    Today Strongroom stores these fields in clear, so this returns ``plaintext``. Once column encryption
    lands it must return exactly what Strongroom writes for (table, column, record id), e.g.
    ``server.security.crypto.envelope.seal(plaintext, dek=..., table=table, column=column, record_id=record_id)``
    with the data subject's DEK.
    """
    return plaintext


def seal_row(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """Apply :func:`seal_value` to the row's encrypted fields; the hook for derived columns (blind indexes)."""
    for column in ENCRYPTED_FIELDS.get(table, ()):
        if column in row:
            row[column] = seal_value(table, column, row["id"], row[column])
    return row


# -- realistic values -------------------------------------------------------------------------------------------

SURNAMES_ZH = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN_ZH = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂"
FIRST_LATIN = ["Anna", "Lukas", "Sofia", "James", "Maria", "Pierre", "Elena", "Tomás", "Ingrid", "Omar", "Chloé",
               "Henrik", "Priya", "Mateo", "Fiona", "Jonas", "Aiko", "Noah", "Lena", "Kofi"]
LAST_LATIN = ["Schmidt", "Rossi", "García", "O'Connor", "Dubois", "Nowak", "Jensen", "Silva", "Novak", "Müller",
              "Andersson", "Kowalski", "Fischer", "Moreau", "Costa", "Byrne", "Tanaka", "Mensah", "Weber", "Lund"]
CITY_ZH = ["上海", "北京", "深圳", "杭州", "苏州", "成都", "武汉", "南京", "天津", "重庆"]
TRADE_ZH = ["精密机械", "智能科技", "医疗器械", "新材料", "物流", "电子", "生物制药", "环保工程", "食品", "汽车零部件"]
COMPANY_LATIN = ["Nordlicht Logistics", "Alpen Medical", "Baltic Components", "Iberia Foods", "Rhein Automation",
                 "Atlas Insurance", "Helix Diagnostics", "Solent Marine", "Danube Steel", "Meridian Retail"]
SUFFIX_LATIN = ["GmbH", "S.A.", "Ltd", "AG", "B.V.", "S.p.A.", "Inc."]
INDUSTRIES = ["manufacturing", "healthcare", "finance", "logistics", "retail", "energy", "public sector"]
REGIONS = ["East China", "North China", "South China", "DACH", "Nordics", "Iberia", "UK & Ireland"]
TITLES = ["采购经理", "总经理", "IT Director", "Head of Procurement", "CFO", "工程师", "Office Manager", None]
DOMAINS = ["example.com", "example.cn", "example.de", "example.org", "mail.example.net"]
STAGES_OPEN = ["qualification", "needs_analysis", "proposal", "negotiation"]
STAGE_PATH = ["qualification", "needs_analysis", "proposal", "negotiation"]
CURRENCIES = ["CNY", "CNY", "CNY", "EUR", "USD"]
SERVICE_TYPES = ["inquiry", "complaint", "repair", "maintenance"]
PRIORITIES = ["low", "normal", "normal", "high", "urgent"]
ACTIVITY_KINDS = ["visit", "call", "email", "meeting", "note"]
PROBABILITY = {"qualification": 10, "needs_analysis": 25, "proposal": 50, "negotiation": 75, "won": 100, "lost": 0}
SLA_HOURS = {"low": (24, 120), "normal": (8, 72), "high": (4, 24), "urgent": (1, 8)}


def new_id() -> uuid.UUID:
    """A UUIDv7, as Strongroom generates its record ids."""
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


class Values:
    """Random but plausible values; seeded, so a profile always produces the same data shape."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now = datetime.now(UTC).replace(microsecond=0)
        self.serial = 0

    def count(self, mean: float) -> int:
        """A child count around ``mean`` (0 .. 2*mean)."""
        return self.rng.randint(0, round(2 * mean)) if mean >= 1 else int(self.rng.random() < mean)

    def moment(self, days_back: int = 3 * 365) -> datetime:
        return self.now - timedelta(seconds=self.rng.randrange(days_back * 86_400),
                                    microseconds=self.rng.randrange(10**6))

    def after(self, start: datetime, **delta: int) -> datetime:
        """``start + delta``, never in the future."""
        return min(start + timedelta(**delta), self.now)

    def person(self) -> tuple[str, bool]:
        rng = self.rng
        if rng.random() < 0.5:
            given = rng.choice(GIVEN_ZH) + (rng.choice(GIVEN_ZH) if rng.random() < 0.5 else "")
            return rng.choice(SURNAMES_ZH) + given, True
        return f"{rng.choice(FIRST_LATIN)} {rng.choice(LAST_LATIN)}", False

    def company(self) -> str:
        rng = self.rng
        if rng.random() < 0.5:
            return f"{rng.choice(CITY_ZH)}{rng.choice(TRADE_ZH)}有限公司"
        return f"{rng.choice(COMPANY_LATIN)} {rng.choice(SUFFIX_LATIN)}"

    def phone(self, chinese: bool) -> str:
        if chinese:
            return f"+86 1{self.rng.choice('3578')}{self.rng.randrange(10**9):09d}"
        return f"+49 30 {self.rng.randrange(10**7):07d}"

    def email(self, chinese: bool) -> str:
        self.serial += 1
        local = "user" if chinese else self.rng.choice(FIRST_LATIN).lower().replace("é", "e").replace("á", "a")
        return f"{local}.{self.serial}@{self.rng.choice(DOMAINS)}"

    def national_id(self) -> str:
        return f"{self.rng.randrange(10**17):017d}{self.rng.choice('0123456789X')}"

    def sentence(self, topic: str) -> str:
        return f"{topic}: {self.rng.choice(['follow-up', '需求确认', 'pricing', '现场支持', 'renewal', '投诉处理'])} " \
               f"#{self.rng.randrange(10**6)}"


# -- row builders ----------------------------------------------------------------------------------------------


@dataclass
class Batch:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {name: [] for name in TABLE_ORDER})


@dataclass
class Samples:
    """Ids (and searchable values) the load driver picks from."""

    customers: list[uuid.UUID] = field(default_factory=list)
    contacts: list[uuid.UUID] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)


def _record(values: Values, **row: Any) -> dict[str, Any]:
    created = row.pop("created_at", None) or values.moment()
    return {"id": new_id(), "created_at": created, "updated_at": created, "version": 1, **row}


def customer_batch(values: Values, profile: Profile, owners: Sequence[uuid.UUID], count: int,
                   samples: Samples, org_unit_id: uuid.UUID | None = None) -> Batch:
    """``count`` customers with all their children."""
    rng, batch = values.rng, Batch()
    rows = batch.rows
    for _ in range(count):
        kind = "individual" if rng.random() < 0.3 else "company"
        owner = rng.choice(owners)
        created = values.moment()
        customer = _record(
            values, created_at=created, name=values.person()[0] if kind == "individual" else values.company(),
            kind=kind, industry=rng.choice(INDUSTRIES), region=rng.choice(REGIONS), tier=rng.choice("ABC"),
            lifecycle_stage=rng.choice(["lead", "prospect", "customer", "customer", "churned"]),
            source_channel=rng.choice(["web", "referral", "event", "partner", "outbound"]), owner_id=owner,
            org_unit_id=org_unit_id, tax_id=f"91{rng.randrange(10**16):016d}" if kind == "company" else None,
            tags=rng.sample(["vip", "renewal", "pilot", "key-account", "reseller"], rng.randint(0, 2)),
            notes=values.sentence("note") if rng.random() < 0.4 else None,
        )
        rows["customers"].append(seal_row("customers", customer))
        samples.customers.append(customer["id"])
        contact_ids = []
        for _c in range(values.count(profile.contacts_per_customer)):
            name, chinese = values.person()
            consent = rng.random() < 0.4
            email = values.email(chinese)
            contact = _record(
                values, created_at=values.after(created, hours=rng.randrange(1, 2000)), customer_id=customer["id"],
                name=name, title=rng.choice(TITLES), phone=values.phone(chinese),
                mobile=values.phone(chinese) if rng.random() < 0.7 else None, email=email,
                address=f"{rng.choice(CITY_ZH)}市{rng.randrange(1, 999)}号" if chinese else
                f"{rng.randrange(1, 200)} Hauptstraße, Berlin",
                national_id=values.national_id() if kind == "individual" else None, marketing_consent=consent,
                consent_at=created if consent else None, consent_source="web form" if consent else None,
            )
            rows["contacts"].append(seal_row("contacts", contact))
            contact_ids.append(contact["id"])
            samples.contacts.append(contact["id"])
            samples.emails.append(email)
        opportunity_ids = []
        for _o in range(values.count(profile.opportunities_per_customer)):
            opened = values.after(created, days=rng.randrange(1, 400))
            final = rng.choice([*STAGES_OPEN, "won", "lost"])
            path = STAGE_PATH[:STAGE_PATH.index(final) + 1] if final in STAGE_PATH else [*STAGE_PATH[:2], final]
            closed = values.after(opened, days=30 * len(path)) if final in ("won", "lost") else None
            opportunity = _record(
                values, created_at=opened, customer_id=customer["id"], title=f"{rng.choice(TRADE_ZH)} 项目",
                amount=Decimal(rng.randrange(10_000, 50_000_000)) / 100, currency=rng.choice(CURRENCIES),
                stage=final, probability=PROBABILITY[final],
                expected_close_date=(opened + timedelta(days=90)).date(), owner_id=owner,
                loss_reason="price" if final == "lost" else None, closed_at=closed,
            )
            rows["opportunities"].append(seal_row("opportunities", opportunity))
            opportunity_ids.append(opportunity["id"])
            previous = None
            for step, stage in enumerate(path):
                rows["opportunity_stage_history"].append({
                    "id": new_id(), "opportunity_id": opportunity["id"], "from_stage": previous, "to_stage": stage,
                    "changed_by": owner, "changed_at": values.after(opened, days=30 * step), "reason": None,
                })
                previous = stage
        service_ids = []
        for _s in range(values.count(profile.service_records_per_customer)):
            opened = values.after(created, days=rng.randrange(1, 600))
            priority = rng.choice(PRIORITIES)
            status = rng.choice(["open", "in_progress", "resolved", "closed"])
            first, full = SLA_HOURS[priority]
            done = values.after(opened, hours=rng.randrange(1, full + 1)) if status in ("resolved", "closed") else None
            record = _record(
                values, created_at=opened, customer_id=customer["id"],
                contact_id=rng.choice(contact_ids) if contact_ids else None, type=rng.choice(SERVICE_TYPES),
                priority=priority, status=status, owner_id=owner, description=values.sentence("issue"),
                resolution=values.sentence("fix") if done else None,
                satisfaction=rng.randint(1, 5) if status == "closed" else None,
                first_response_due=opened + timedelta(hours=first), resolution_due=opened + timedelta(hours=full),
                first_responded_at=values.after(opened, hours=1) if status != "open" else None, resolved_at=done,
                closed_at=done if status == "closed" else None,
            )
            rows["service_records"].append(seal_row("service_records", record))
            service_ids.append(record["id"])
        for _a in range(values.count(profile.activities_per_customer)):
            occurred = values.after(created, hours=rng.randrange(1, 20_000))
            activity = _record(
                values, created_at=occurred, customer_id=customer["id"],
                contact_id=rng.choice(contact_ids) if contact_ids and rng.random() < 0.7 else None,
                opportunity_id=rng.choice(opportunity_ids) if opportunity_ids and rng.random() < 0.4 else None,
                service_record_id=rng.choice(service_ids) if service_ids and rng.random() < 0.2 else None,
                kind=rng.choice(ACTIVITY_KINDS), occurred_at=occurred, owner_id=owner,
                summary=values.sentence("activity"),
            )
            rows["activities"].append(seal_row("activities", activity))
    return batch


def owner_rows(values: Values, count: int, manager_id: uuid.UUID | None, password_hash: str,
               org_unit_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
    """Extra sales reps who own the generated records (reporting to the bench manager, in its unit)."""
    return [_record(values, created_at=values.now, username=f"bench.owner.{n:03d}", display_name=f"Owner {n}",
                    password_hash=password_hash, roles=["sales_rep"], org_unit_id=org_unit_id,
                    manager_id=manager_id, disabled=False) for n in range(count)]


def _defaults(table: Table) -> dict[str, Callable[[], Any]]:
    """The model's Python-side scalar defaults, for columns a generator does not fill (new columns)."""
    out: dict[str, Callable[[], Any]] = {}
    for column in table.columns:
        default = column.default
        if default is None:
            continue
        if getattr(default, "is_scalar", False):
            out[column.name] = lambda value=default.arg: value  # type: ignore[attr-defined, misc]
        elif getattr(default, "is_callable", False):
            out[column.name] = lambda fn=default.arg: fn(None)  # type: ignore[attr-defined, misc]
    return out


def complete(name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill the columns the rows lack with the model's defaults (rows of one table share their keys)."""
    if rows:
        missing = {column: make for column, make in _defaults(_table(name)).items() if column not in rows[0]}
        for row in rows:
            for column, make in missing.items():
                row[column] = make()
    return rows


# -- writers ---------------------------------------------------------------------------------------------------


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


class SqliteWriter:
    """executemany through stdlib sqlite3, values converted by Strongroom's own SQLAlchemy bind processors."""

    def __init__(self, path: str) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=OFF")  # bulk load only; the servers use their own pragmas
        self.connection.execute("PRAGMA cache_size=-262144")
        self.dialect = sqlite_dialect.dialect()
        self.converters: dict[str, list[tuple[str, Callable[[Any], Any] | None]]] = {}

    def _columns(self, name: str) -> list[tuple[str, Callable[[Any], Any] | None]]:
        if name not in self.converters:
            self.converters[name] = [
                (column.name, column.type.dialect_impl(self.dialect).bind_processor(self.dialect))
                for column in _table(name).columns
            ]
        return self.converters[name]

    def tables(self) -> set[str]:
        return {row[0] for row in self.connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    async def write(self, batch: dict[str, list[dict[str, Any]]]) -> None:
        self.connection.execute("BEGIN")
        for name in TABLE_ORDER:
            rows = complete(name, batch.get(name) or [])
            if not rows:
                continue
            columns = self._columns(name)
            names = ", ".join(column for column, _ in columns)
            marks = ", ".join("?" for _ in columns)
            self.connection.executemany(
                f"INSERT INTO {name} ({names}) VALUES ({marks})",
                ([process(row.get(column)) if process else row.get(column) for column, process in columns]
                 for row in rows),
            )
        self.connection.execute("COMMIT")

    async def finish(self) -> None:
        self.connection.execute("ANALYZE")
        self.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.connection.close()


class PostgresWriter:
    """COPY through asyncpg, native values (JSON documents as text for jsonb)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.connection: Any = None

    async def open(self) -> None:
        import asyncpg

        self.connection = await asyncpg.connect(self.dsn)

    async def tables(self) -> set[str]:
        rows = await self.connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return {row[0] for row in rows}

    async def write(self, batch: dict[str, list[dict[str, Any]]]) -> None:
        async with self.connection.transaction():
            for name in TABLE_ORDER:
                rows = complete(name, batch.get(name) or [])
                if not rows:
                    continue
                table = _table(name)
                columns = [column.name for column in table.columns]
                as_json = {column.name for column in table.columns if isinstance(column.type, JSON)}
                records = [tuple(json.dumps(row.get(c)) if c in as_json else row.get(c) for c in columns)
                           for row in rows]
                await self.connection.copy_records_to_table(name, records=records, columns=columns)

    async def finish(self) -> None:
        await self.connection.execute("ANALYZE")
        await self.connection.close()


# -- the load ----------------------------------------------------------------------------------------------------


AUDIT_TABLE_CANDIDATES = ("audit_events", "audit_event", "audit_log", "audit_trail")


def find_audit_table(tables: set[str]) -> str | None:
    """The audit events table, once Strongroom has one."""
    return next((name for name in AUDIT_TABLE_CANDIDATES if name in tables), None)


async def write_audit_events(writer: Any, table: str, count: int, samples: Samples) -> dict[str, Any]:
    """Hook: load ``count`` audit events the way Strongroom stores them (canonical bytes, hash chain).

    Not implemented until the audit trail's storage is settled: the events must be sealed with Strongroom's
    own encoder and chain (``server.audit.canonical.encode_event``, ``server.audit.chain.seal_event``) so that
    verification and queries measure real rows. Until then the audit scenarios report "not available yet".
    """
    return {"status": "not available yet", "table": table,
            "reason": "bench/datagen.py write_audit_events() has no writer for the audit table yet"}


@dataclass
class LoadReport:
    profile: str
    backend: str
    seconds: float
    rows: dict[str, int]
    audit: dict[str, Any]
    files: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _batches(total: int, size: int) -> Iterator[int]:
    done = 0
    while done < total:
        step = min(size, total - done)
        yield step
        done += step


def write_samples(samples: Samples, out_dir: Path, size: int, seed: int) -> dict[str, str]:
    """Random samples of the generated ids and e-mails, one per line, for the wrk scripts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed + 1)
    files = {}
    for name, items in (("customers", samples.customers), ("contacts", samples.contacts),
                        ("emails", samples.emails)):
        chosen = rng.sample(items, min(size, len(items)))
        path = out_dir / f"{name}.txt"
        path.write_text("".join(f"{item}\n" for item in chosen), encoding="utf-8")
        files[name] = str(path)
    return files


async def load(url: str, profile: Profile, *, out_dir: Path, owners: Sequence[uuid.UUID] = (),
               manager_id: uuid.UUID | None = None, owner_password_hash: str = "!",
               org_unit_id: uuid.UUID | None = None, seed: int = 1) -> LoadReport:
    """Fill a migrated database at ``url`` with ``profile``'s volumes; write id samples into ``out_dir``."""
    started = time.perf_counter()
    values = Values(seed)
    backend = "sqlite" if url.startswith("sqlite") else "postgresql"
    writer: Any
    if backend == "sqlite":
        writer = SqliteWriter(url.split(":///", 1)[1])
        tables = writer.tables()
    else:
        writer = PostgresWriter(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        await writer.open()
        tables = await writer.tables()
    missing = [name for name in TABLE_ORDER if name not in tables]
    if missing:
        raise RuntimeError(f"the database at {url} has no tables {missing}: run Strongroom's migrations first")

    extra = owner_rows(values, profile.owners, manager_id, owner_password_hash, org_unit_id)
    await writer.write({"users": extra})
    owner_ids = [*owners, *(row["id"] for row in extra)]
    counts = dict.fromkeys(TABLE_ORDER, 0)
    counts["users"] = len(extra)
    samples = Samples()
    for size in _batches(profile.customers, BATCH_CUSTOMERS):
        batch = customer_batch(values, profile, owner_ids, size, samples, org_unit_id)
        for name, rows in batch.rows.items():
            counts[name] += len(rows)
        await writer.write(batch.rows)

    audit_table = find_audit_table(tables)
    audit = {"status": "not available yet", "reason": "Strongroom has no audit table yet"} if audit_table is None \
        else await write_audit_events(writer, audit_table, profile.audit_events, samples)
    await writer.finish()

    files = write_samples(samples, out_dir, profile.id_sample, seed)
    return LoadReport(profile.name, backend, round(time.perf_counter() - started, 2), counts, audit, files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="migrated database (sqlite+aiosqlite:/// or postgresql+asyncpg://)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="smoke")
    parser.add_argument("--out", type=Path, required=True, help="directory for the id sample files")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    report = asyncio.run(load(args.url, PROFILES[args.profile], out_dir=args.out, seed=args.seed))
    print(json.dumps(report.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

