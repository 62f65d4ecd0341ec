"""The baseline: what you would write without Strongroom. Litestar + SQLAlchemy (async ORM) + msgspec.

Same tables (created by Strongroom's migrations), same database, same driver (aiosqlite / asyncpg), same pool,
SQLite pragmas and SQLite driver adapter (``server.sqlite_adapter``), same serializer (Litestar's msgspec), same
ASGI server and worker count (``serve.py``).
No authentication, no authorization, no field masks, no encryption, no audit, no access log: the floor the
security features are measured against. Every route that a scenario uses has the same path, query and body
as Strongroom's, so one load script drives both apps; the answers carry the same fields as Strongroom's
clear view.

It declares its own mapping of the tables (plain SQLAlchemy, not Strongroom's domain models), so that
whatever Strongroom later adds to its models (sealed columns, hooks) does not leak into the baseline.
"""

import base64
import json
import os
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec
import uuid_utils
from litestar import Litestar, Response, get, patch, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import Parameter
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    Uuid,
    and_,
    event,
    inspect,
    literal_column,
    or_,
    select,
    union,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from server.gc_tuning import tune_collector
from server.sqlite_adapter import one_hop_dbapi

# -- mapping ---------------------------------------------------------------------------------------------------


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class Money(TypeDecorator[Decimal]):
    """NUMERIC(20,4) on PostgreSQL; amount x 10^4 as an integer on SQLite (the schema's convention)."""

    impl = Numeric(20, 4)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(BigInteger() if dialect.name == "sqlite" else Numeric(20, 4))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        return int(value * 10_000) if value is not None and dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(int(value)) / 10_000 if dialect.name == "sqlite" else Decimal(value)


class Base(DeclarativeBase):
    pass


class Record:
    """Id, timestamps, and the version column used for optimistic concurrency (as in Strongroom)."""

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    version: Mapped[int] = mapped_column(Integer)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:  # noqa: N805
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]


class Customer(Record, Base):
    __tablename__ = "customers"
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    industry: Mapped[str | None] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(100))
    tier: Mapped[str | None] = mapped_column(String(1))
    lifecycle_stage: Mapped[str] = mapped_column(String(16))
    source_channel: Mapped[str | None] = mapped_column(String(16))
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    org_unit_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    tax_id: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSON)
    notes: Mapped[str | None] = mapped_column(Text)


class Contact(Record, Base):
    __tablename__ = "contacts"
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    name: Mapped[str] = mapped_column(String(200))
    title: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(Text)
    mobile: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(Text)
    national_id: Mapped[str | None] = mapped_column(Text)
    marketing_consent: Mapped[bool] = mapped_column(Boolean)
    consent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    consent_source: Mapped[str | None] = mapped_column(String(100))



class Opportunity(Record, Base):
    __tablename__ = "opportunities"
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    title: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    stage: Mapped[str] = mapped_column(String(16))
    probability: Mapped[int] = mapped_column(Integer)
    expected_close_date: Mapped[date | None] = mapped_column(Date)
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    loss_reason: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class StageChange(Base):
    __tablename__ = "opportunity_stage_history"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    opportunity_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    from_stage: Mapped[str | None] = mapped_column(String(16))
    to_stage: Mapped[str] = mapped_column(String(16))
    changed_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str | None] = mapped_column(Text)


class ServiceRecord(Record, Base):
    __tablename__ = "service_records"
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    contact_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    type: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    description: Mapped[str] = mapped_column(Text)
    resolution: Mapped[str | None] = mapped_column(Text)
    satisfaction: Mapped[int | None] = mapped_column(Integer)
    first_response_due: Mapped[datetime] = mapped_column(UtcDateTime)
    resolution_due: Mapped[datetime] = mapped_column(UtcDateTime)
    first_responded_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Activity(Record, Base):
    __tablename__ = "activities"
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    contact_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    opportunity_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    service_record_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    summary: Mapped[str] = mapped_column(Text)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime)
    actor_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    entity: Mapped[str | None] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    canonical: Mapped[bytes] = mapped_column(LargeBinary)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class AuditEventField(Base):
    __tablename__ = "audit_event_fields"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    field: Mapped[str] = mapped_column(String(128), primary_key=True)


class AuditEventSubject(Base):
    __tablename__ = "audit_event_subjects"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(64), primary_key=True)


def as_dict(row: Base) -> dict[str, Any]:
    """Every column, JSON-ready (money as a decimal string, as Strongroom renders it)."""
    out = {}
    for column in row.__table__.columns:
        value = getattr(row, column.key)
        out[column.key] = f"{value:.2f}" if isinstance(value, Decimal) else value
    return out


# -- schemas ---------------------------------------------------------------------------------------------------

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Short = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Long = Annotated[str, msgspec.Meta(max_length=20_000)]
UNSET = msgspec.UNSET


class ContactCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    customer_id: uuid.UUID
    name: Name
    title: Short | None = None
    phone: Short | None = None
    mobile: Short | None = None
    email: Short | None = None
    address: Long | None = None
    national_id: Short | None = None
    marketing_consent: bool = False
    consent_source: Short | None = None


class ContactUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name | msgspec.UnsetType = UNSET
    title: Short | msgspec.UnsetType | None = UNSET
    phone: Short | msgspec.UnsetType | None = UNSET
    mobile: Short | msgspec.UnsetType | None = UNSET
    email: Short | msgspec.UnsetType | None = UNSET
    address: Long | msgspec.UnsetType | None = UNSET
    national_id: Short | msgspec.UnsetType | None = UNSET
    marketing_consent: bool | msgspec.UnsetType = UNSET
    consent_source: Short | msgspec.UnsetType | None = UNSET


# -- handlers --------------------------------------------------------------------------------------------------

OPEN_STAGES = ("qualification", "needs_analysis", "proposal", "negotiation")


def sessions(state: State) -> async_sessionmaker[AsyncSession]:
    return state.sessions  # type: ignore[no-any-return]


def with_etag(record: dict[str, Any], status_code: int = 200) -> Response[dict[str, Any]]:
    return Response(record, status_code=status_code, headers={"ETag": f'"{record["version"]}"'})


async def _one(session: AsyncSession, model: type[Base], record_id: uuid.UUID) -> Any:
    row = (await session.execute(select(model).where(model.id == record_id))).scalar_one_or_none()  # type: ignore[attr-defined]
    if row is None:
        raise NotFoundException(f"{model.__tablename__} {record_id} not found")
    return row


@get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@get("/api/v1/contacts/{record_id:uuid}")
async def read_contact(record_id: uuid.UUID, state: State) -> Response[dict[str, Any]]:
    async with sessions(state)() as session, session.begin():
        return with_etag(as_dict(await _one(session, Contact, record_id)))


@get("/api/v1/customers/{record_id:uuid}")
async def read_customer(record_id: uuid.UUID, state: State) -> Response[dict[str, Any]]:
    async with sessions(state)() as session, session.begin():
        return with_etag(as_dict(await _one(session, Customer, record_id)))


def _cursor(row: Contact) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at.isoformat()}|{row.id}".encode()).decode()


@get("/api/v1/contacts")
async def list_contacts(
    state: State, limit: Annotated[int, Parameter(ge=1, le=200)] = 50, cursor: str | None = None,
    email: str | None = None, customer_id: uuid.UUID | None = None, email_bidx: int | None = None,
) -> dict[str, Any]:
    statement = select(Contact)
    if email is not None:
        statement = statement.where(Contact.email == email)
    if email_bidx is not None:  # the indexed lookup of a blind-index search, without the keyed hash or decryption
        statement = statement.where(literal_column("email_bidx") == email_bidx)
    if customer_id is not None:
        statement = statement.where(Contact.customer_id == customer_id)
    if cursor:
        at_text, _, id_text = base64.urlsafe_b64decode(cursor).decode().partition("|")
        at, after = datetime.fromisoformat(at_text), uuid.UUID(id_text)
        statement = statement.where(or_(Contact.created_at < at, and_(Contact.created_at == at, Contact.id < after)))
    statement = statement.order_by(Contact.created_at.desc(), Contact.id.desc()).limit(limit + 1)
    async with sessions(state)() as session, session.begin():
        rows = (await session.execute(statement)).scalars().all()
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": [as_dict(row) for row in rows], "next_cursor": _cursor(rows[-1]) if more and rows else None}


@post("/api/v1/contacts", status_code=201)
async def create_contact(data: ContactCreate, state: State) -> Response[dict[str, Any]]:
    now = datetime.now(UTC)
    contact = Contact(id=uuid.UUID(bytes=uuid_utils.uuid7().bytes), created_at=now, updated_at=now, version=1,
                      **{name: getattr(data, name) for name in data.__struct_fields__})
    contact.consent_at = now if data.marketing_consent else None
    async with sessions(state)() as session, session.begin():
        session.add(contact)
        await session.flush()
        return with_etag(as_dict(contact), 201)


@patch("/api/v1/contacts/{record_id:uuid}")
async def update_contact(record_id: uuid.UUID, data: ContactUpdate, state: State,
                         if_match: Annotated[str | None, Parameter(header="If-Match")] = None,
                         ) -> Response[dict[str, Any]]:
    if if_match is None or not if_match.strip('"').isdigit():
        raise ClientException("If-Match required", status_code=428)
    async with sessions(state)() as session, session.begin():
        contact = (await session.execute(
            select(Contact).where(Contact.id == record_id).with_for_update())).scalar_one_or_none()
        if contact is None:
            raise NotFoundException(f"contact {record_id} not found")
        if contact.version != int(if_match.strip('"')):
            raise ClientException(f"contact is at version {contact.version}", status_code=409)
        for name in data.__struct_fields__:
            value = getattr(data, name)
            if value is not UNSET:
                setattr(contact, name, value)
        contact.updated_at = datetime.now(UTC)
        await session.flush()
        return with_etag(as_dict(contact))


@get("/api/v1/customers/{customer_id:uuid}/360")
async def customer_360(customer_id: uuid.UUID, state: State) -> dict[str, Any]:
    async with sessions(state)() as session, session.begin():
        customer = await _one(session, Customer, customer_id)

        async def rows(statement: Any) -> list[Any]:
            return list((await session.execute(statement)).scalars().all())

        contacts = await rows(select(Contact).where(Contact.customer_id == customer_id).order_by(Contact.name))
        opportunities = await rows(select(Opportunity).where(
            Opportunity.customer_id == customer_id, Opportunity.stage.in_(OPEN_STAGES),
        ).order_by(Opportunity.created_at.desc()))
        service = await rows(select(ServiceRecord).where(ServiceRecord.customer_id == customer_id)
                             .order_by(ServiceRecord.created_at.desc()).limit(10))
        activities = await rows(select(Activity).where(Activity.customer_id == customer_id)
                                .order_by(Activity.occurred_at.desc()).limit(50))
        stages = (await session.execute(
            select(StageChange, Opportunity.title).join(Opportunity, Opportunity.id == StageChange.opportunity_id)
            .where(Opportunity.customer_id == customer_id).order_by(StageChange.changed_at.desc()).limit(50))).all()
    timeline: list[tuple[datetime, dict[str, Any]]] = []
    for activity in activities:
        timeline.append((activity.occurred_at, {"at": activity.occurred_at, "type": f"activity.{activity.kind}",
                                                "entity": "activity", "entity_id": activity.id,
                                                "owner_id": activity.owner_id}))
    for record in service:
        timeline.append((record.created_at, {"at": record.created_at, "type": f"service_record.opened.{record.type}",
                                             "entity": "service_record", "entity_id": record.id,
                                             "owner_id": record.owner_id}))
        if record.resolved_at is not None:
            timeline.append((record.resolved_at, {"at": record.resolved_at, "type": "service_record.resolved",
                                                  "entity": "service_record", "entity_id": record.id,
                                                  "owner_id": record.owner_id}))
    for change, title in stages:
        timeline.append((change.changed_at, {"at": change.changed_at, "type": f"opportunity.stage.{change.to_stage}",
                                             "entity": "opportunity", "entity_id": change.opportunity_id,
                                             "title": title, "owner_id": change.changed_by}))
    timeline.sort(key=lambda entry: entry[0], reverse=True)
    return {
        "customer": as_dict(customer),
        "contacts": [as_dict(row) for row in contacts],
        "open_opportunities": [as_dict(row) for row in opportunities],
        "recent_service_records": [as_dict(row) for row in service],
        "timeline": [entry for _, entry in timeline[:50]],
    }


Filter = Annotated[str | None, Parameter(required=False, max_length=128)]


@get("/api/v1/audit/events")
async def audit_events(
    state: State, actor_id: Filter = None, entity: Filter = None, entity_id: Filter = None, customer_id: Filter = None,
    field: Filter = None, action: Filter = None, outcome: Filter = None, since: datetime | None = None,
    until: datetime | None = None, cursor: Filter = None, limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The compliance query as plain SQL over the same tables and indexes: newest first, cursor paginated.

    The same shapes as server/audit/store.py: the page's sequence numbers first, then its events by primary key;
    for a customer, a union of three index lookups (an OR of the three made PostgreSQL read the whole table), each
    with every filter and stopped after a page. The time filter is plain (no sequence bounds)."""
    page = limit + 1
    conditions: list[Any] = [column == value for column, value in (
        (AuditEvent.actor_id, actor_id), (AuditEvent.entity, entity), (AuditEvent.entity_id, entity_id),
        (AuditEvent.action, action), (AuditEvent.outcome, outcome)) if value is not None]
    if field is not None:
        conditions.append(AuditEvent.seq.in_(select(AuditEventField.seq).where(AuditEventField.field == field)))
    if since is not None:
        conditions.append(AuditEvent.ts >= since)
    if until is not None:
        conditions.append(AuditEvent.ts < until)
    if cursor is not None:
        conditions.append(AuditEvent.seq < int(cursor))

    def first_page(selection: Any, seq: Any) -> Any:
        ordered = selection.order_by(seq.desc()).limit(page).subquery()
        return select(ordered.c.seq)

    if customer_id is not None:
        lookups = [first_page(select(AuditEvent.seq).where(AuditEvent.subject_id == customer_id, *conditions),
                              AuditEvent.seq),
                   first_page(select(AuditEvent.seq).where(AuditEvent.entity_id == customer_id, *conditions),
                              AuditEvent.seq)]
        if state.audit_subjects:
            lookups.append(first_page(
                select(AuditEventSubject.seq).join(AuditEvent, AuditEvent.seq == AuditEventSubject.seq)
                .where(AuditEventSubject.subject_id == customer_id, *conditions), AuditEventSubject.seq))
        wanted = union(*lookups)
    else:
        wanted = first_page(select(AuditEvent.seq).where(*conditions), AuditEvent.seq)
    statement = select(AuditEvent.seq, AuditEvent.canonical, AuditEvent.hash).where(AuditEvent.seq.in_(wanted))
    async with sessions(state)() as session, session.begin():
        rows = (await session.execute(statement.order_by(AuditEvent.seq.desc()).limit(limit + 1))).all()
    items = [{**json.loads(bytes(body)), "hash": bytes(digest).hex()} for _seq, body, digest in rows[:limit]]
    return {"items": items, "next_cursor": str(rows[limit - 1][0]) if len(rows) > limit else None}


# -- application -----------------------------------------------------------------------------------------------


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL", "busy_timeout=10000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def create_app() -> Litestar:
    """The baseline app over ``STRONGROOM_DATABASE_URL`` (the same database Strongroom serves)."""
    url = os.environ["STRONGROOM_DATABASE_URL"]

    async def startup(app: Litestar) -> None:
        if url.startswith("sqlite"):  # the same pragmas, pool and driver adapter as Strongroom's server/db.py
            engine = create_async_engine(url, module=one_hop_dbapi())
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:  # Strongroom's pool size, with SQLAlchemy's stock pre-ping (Strongroom pings only idle connections)
            engine = create_async_engine(url, pool_size=20, max_overflow=10, pool_pre_ping=True)
        app.state.engine = engine
        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
        async with engine.connect() as connection:  # audit_event_subjects came with the audit sealer
            app.state.audit_subjects = await connection.run_sync(
                lambda sync: inspect(sync).has_table("audit_event_subjects"))

    async def shutdown(app: Litestar) -> None:
        await app.state.engine.dispose()

    return Litestar(
        route_handlers=[live, read_contact, read_customer, list_contacts, create_contact, update_contact,
                        customer_360, audit_events],
        on_startup=[startup], on_shutdown=[shutdown], openapi_config=None, logging_config=None, debug=False,
    )


def create_served_app() -> Litestar:
    """Factory for granian's worker processes: the baseline with Strongroom's worker garbage-collector settings
    (``server/gc_tuning.py``), so that the ratio compares the work done per request, not the collector's."""
    app = create_app()
    tune_collector()
    return app
