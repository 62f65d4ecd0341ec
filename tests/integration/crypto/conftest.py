"""Fixtures for the column-encryption integration tests.

The key jobs scan and rewrite whole tables, so these tests run in a private database of the same backend as
``fx_database_url`` (SQLite file or a fresh PostgreSQL database), with a private keys directory.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit.canonical import decode_event
from server.audit.models import AuditPending
from server.config import Settings, load_settings
from server.db import create_engine, create_session_factory, migrate, write_transaction
from server.domain.contacts import CONTACT, Contact
from server.domain.customers.fields import CUSTOMER
from server.domain.customers.models import Customer
from server.domain.service_records.fields import SERVICE_RECORD
from server.domain.service_records.models import ServiceRecord
from server.ops import keys
from server.security.data_keys import DataKeyRow
from server.security.field_cipher import FieldCipher, ensure_keyring, keyring_path
from server.security.identity import User
from tests.conftest import settings_with_keys, strongroom_cli

_T = TypeVar("_T")
POSTGRES_ADMIN_URL = os.environ.get("STRONGROOM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _postgres(statement: str) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


@contextmanager
def private_database(backend_url: str, directory: Path) -> Iterator[str]:
    """A new migrated database on the backend of ``backend_url`` (a SQLite file in ``directory``), dropped after."""
    if backend_url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{directory / 'crypto.db'}"
        migrate(url)
        yield url
        return
    name = f"strongroom_crypto_{os.getpid()}_{secrets.token_hex(4)}"
    _postgres(f'CREATE DATABASE "{name}"')
    host_part = POSTGRES_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
    url = f"postgresql+asyncpg://{host_part}/{name}"
    try:
        migrate(url)
        yield url
    finally:
        _postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", name="fx_crypto_url")
def fx_crypto_url(fx_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private, migrated database on the backend of ``fx_database_url``."""
    with private_database(fx_database_url, tmp_path_factory.mktemp("crypto")) as url:
        yield url


@pytest.fixture(scope="session", name="fx_crypto_settings")
def fx_crypto_settings(fx_crypto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings over the private database, with a keyring created in a private keys directory."""
    data_dir = tmp_path_factory.mktemp("crypto-data")
    settings = load_settings({}, data_dir=str(data_dir), database_url=fx_crypto_url, log_level="WARNING")
    assert ensure_keyring(settings) is True
    return settings


def new_cipher(settings: Settings, **options: Any) -> FieldCipher:
    """A cipher as another process would build it (its own keyring provider and DEK cache)."""
    return FieldCipher.from_settings(settings, environ={}, **options)


@dataclass
class Crm:
    """Writes and reads CRM rows the way the services will: seal before flush, prepare before open."""

    sessions: async_sessionmaker[AsyncSession]
    settings: Settings
    cipher: FieldCipher
    backend: str
    _owner: uuid.UUID | None = field(default=None)

    async def owner(self) -> uuid.UUID:
        if self._owner is None:
            async with self.sessions() as session, write_transaction(session):
                user = User(username=f"owner-{uuid.uuid4().hex[:10]}", display_name="Owner", password_hash="x",
                            roles=["sales_rep"])
                session.add(user)
            self._owner = user.id
        return self._owner

    async def customer(self, *, cipher: FieldCipher | None = None, tax_id: str | None = "91310000MA1FL8XQ3K",
                       ) -> Customer:
        cipher = cipher or self.cipher
        owner = await self.owner()
        async with self.sessions() as session, write_transaction(session):
            customer = Customer(name=f"Customer {uuid.uuid4().hex[:8]}", kind="company", owner_id=owner,
                                tax_id=tax_id, tags=[])
            await cipher.seal_fields(session, CUSTOMER, customer, customer.id, ["tax_id"])
            session.add(customer)
        return customer

    async def contact(self, customer_id: uuid.UUID, *, cipher: FieldCipher | None = None,
                      **values: Any) -> Contact:
        cipher = cipher or self.cipher
        defaults: dict[str, Any] = {
            "name": "Zhang Wei",
            "email": f"Zhang.Wei.{uuid.uuid4().hex[:8]}@Example.com",
            "phone": "021 6888 1234",
            "mobile": "138 0013 8000",
            "address": "上海市浦东新区世纪大道 100 号",
            "national_id": "11010519491231002x",
        }
        defaults.update(values)
        async with self.sessions() as session, write_transaction(session):
            contact = Contact(customer_id=customer_id, marketing_consent=False, **defaults)
            await cipher.seal_fields(session, CONTACT, contact, customer_id, defaults)
            session.add(contact)
        return contact

    async def service_record(self, customer_id: uuid.UUID, description: str) -> ServiceRecord:
        from datetime import UTC, datetime, timedelta

        now = datetime.now(UTC)
        owner = await self.owner()
        async with self.sessions() as session, write_transaction(session):
            record = ServiceRecord(customer_id=customer_id, type="inquiry", priority="normal", status="open",
                                   owner_id=owner, description=description,
                                   resolution=None, first_response_due=now + timedelta(hours=4),
                                   resolution_due=now + timedelta(days=2))
            await self.cipher.seal_fields(session, SERVICE_RECORD, record, customer_id, ["description"])
            session.add(record)
        return record

    async def contacts_of(self, customer_id: uuid.UUID) -> list[Contact]:
        async with self.sessions() as session:
            rows = (await session.execute(select(Contact).where(Contact.customer_id == customer_id)
                                          .order_by(Contact.id))).scalars().all()
        return list(rows)

    async def kek_versions_in_use(self) -> dict[int, int]:
        """Wrapped (not destroyed) DEKs per KEK version."""
        async with self.sessions() as session:
            rows = (await session.execute(select(DataKeyRow.kek_version, func.count())
                                          .where(DataKeyRow.wrapped.is_not(None))
                                          .group_by(DataKeyRow.kek_version))).all()
        return {int(version): int(count) for version, count in rows}

    async def opened(self, contact_ids: list[uuid.UUID], *, cipher: FieldCipher | None = None,
                     names: tuple[str, ...] = ("email", "phone", "mobile", "address", "national_id"),
                     ) -> dict[uuid.UUID, dict[str, Any]]:
        """Load contacts by id and open their encrypted fields with ``cipher``."""
        cipher = cipher or self.cipher
        async with self.sessions() as session:
            rows = list((await session.execute(select(Contact).where(Contact.id.in_(contact_ids)))).scalars())
            await cipher.prepare(session, rows, CONTACT)
        return {row.id: {name: cipher.open_field(CONTACT, row, name) for name in names} for row in rows}


async def beside_traffic(
    job: Callable[[], Awaitable[_T]], *steps: Callable[[], Awaitable[None]]
) -> tuple[_T, list[int]]:
    """Run ``job`` while each of ``steps`` (a write, a read ...) repeats beside it, as serving processes would.

    Returns:
        What ``job`` returned, and per step how many times it completed while ``job`` ran.
    """
    stop = asyncio.Event()
    completed = [0] * len(steps)
    job_running = False

    async def repeat(index: int, step: Callable[[], Awaitable[None]]) -> None:
        while not stop.is_set():
            await step()
            if job_running:
                completed[index] += 1
            await asyncio.sleep(0)

    workers = [asyncio.create_task(repeat(index, step)) for index, step in enumerate(steps)]
    try:
        await asyncio.sleep(0.05)
        job_running = True
        result = await job()
    finally:
        stop.set()
        await asyncio.gather(*workers)
    return result, completed


@pytest.fixture(scope="session", name="fx_crm")
async def fx_crm(fx_crypto_settings: Settings, fx_crypto_url: str) -> AsyncIterator[Crm]:
    engine = create_engine(fx_crypto_url)
    try:
        yield Crm(sessions=create_session_factory(engine), settings=fx_crypto_settings,
                  cipher=new_cipher(fx_crypto_settings),
                  backend="sqlite" if fx_crypto_url.startswith("sqlite") else "postgresql")
    finally:
        await engine.dispose()


# ------------------------------------------------------------------ two hosts with keyring copies, key commands


@dataclass
class Hosts:
    """Host A (where the key custodian runs the key commands) and host B, each with a keyring copy."""

    crm: Crm  # writes and reads on the shared database; its cipher is host A's server
    a: Settings
    b: Settings

    def copy_keyring_to_b(self) -> None:
        """Replace B's keyring with A's file, as the playbook or a Secret update does (0600, atomic rename)."""
        target = keyring_path(self.b)
        temporary = target.with_name(".keyring.json.copy")
        temporary.write_bytes(keyring_path(self.a).read_bytes())
        temporary.chmod(0o600)
        os.replace(temporary, target)


@pytest.fixture(name="fx_hosts_url")
def fx_hosts_url(fx_database_url: str, tmp_path: Path) -> Iterator[str]:
    """A private database per test (a rotation rewraps every DEK in the database it runs on)."""
    with private_database(fx_database_url, tmp_path) as url:
        yield url


@pytest.fixture(name="fx_hosts")
async def fx_hosts(fx_hosts_url: str, tmp_path: Path) -> AsyncIterator[Hosts]:
    """Hosts A and B on one private database; B's keys directory starts as a copy of A's."""
    settings_a = settings_with_keys(tmp_path / "host-a", fx_hosts_url)
    settings_b = load_settings({}, data_dir=str(tmp_path / "host-b"), database_url=fx_hosts_url, log_level="WARNING")
    shutil.copytree(settings_a.resolved_keys_dir, settings_b.resolved_keys_dir)  # copies the 0700/0600 modes
    engine = create_engine(fx_hosts_url)
    try:
        crm = Crm(sessions=create_session_factory(engine), settings=settings_a, cipher=new_cipher(settings_a),
                  backend="sqlite" if fx_hosts_url.startswith("sqlite") else "postgresql")
        yield Hosts(crm, settings_a, settings_b)
    finally:
        await engine.dispose()


async def run_strongroom(monkeypatch: pytest.MonkeyPatch, settings: Settings, *argv: str,
                         environ: dict[str, str] | None = None) -> int:
    """``strongroom ARGV`` configured like ``settings``; the exit code."""
    # The console script runs its own event loop, so it runs in a thread here.
    return await asyncio.to_thread(strongroom_cli, monkeypatch, settings, *argv, environ=environ)


async def customers_with_contacts(crm: Crm, cipher: FieldCipher, count: int) -> dict[uuid.UUID, str]:
    """``count`` customers with one contact each, written through ``cipher``: contact id -> e-mail."""
    written: dict[uuid.UUID, str] = {}
    for _ in range(count):
        email = f"staged.{uuid.uuid4().hex[:10]}@example.com"
        contact = await crm.contact((await crm.customer(cipher=cipher)).id, cipher=cipher, email=email)
        written[contact.id] = email
    return written


async def emails_of(crm: Crm, cipher: FieldCipher, contact_ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """The contacts' e-mails as ``cipher`` opens them (a string, or an ``Unreadable`` state)."""
    opened = await crm.opened(contact_ids, cipher=cipher, names=("email",))
    return {contact_id: values["email"] for contact_id, values in opened.items()}


class StopAfterFirstBatch(Exception):
    """Raised by ``FirstBatchOnly``: a key job interrupted after its first committed batch."""


class FirstBatchOnly(keys.NullProgress):
    """Progress that interrupts a key job (as Ctrl-C would) once its first batch is done."""

    def advance(self, amount: int) -> None:
        raise StopAfterFirstBatch


async def key_events(crm: Crm) -> list[dict[str, Any]]:
    """Every audit event about keys (entity ``key``), oldest first, decoded."""
    async with crm.sessions() as session:
        bodies = (await session.execute(select(AuditPending.canonical).where(AuditPending.entity == "key")
                                        .order_by(AuditPending.id))).scalars().all()
    return [decode_event(bytes(body)) for body in bodies]


class LoggedWarnings:
    """Stands in for a module's structlog logger and keeps what it was told to warn about."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def warning(self, event: str, **values: Any) -> None:
        self.events.append({"event": event, **values})
