"""Shared fixtures. Every database test runs on SQLite and on PostgreSQL, schema built by the migrations.

PostgreSQL: ``STRONGROOM_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``) is an
admin connection used to create a fresh database per test run, dropped afterwards. A missing PostgreSQL is
an error, not a skip; ``STRONGROOM_TEST_BACKENDS=sqlite`` opts out explicitly for a quick local run.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.app import create_app
from server.audit.store import load_or_create_audit_key
from server.config import Settings, load_settings
from server.db import create_engine, create_session_factory, migrate
from server.security.access import AccessControl
from server.security.field_cipher import ensure_keyring
from server.security.identity import PasswordHasher, load_or_create_signing_key
from server.security.principal import system_principal
from server.services.identity import IdentityService
from server.services.policy_admin import PolicyAdminService

POSTGRES_ADMIN_URL = os.environ.get("STRONGROOM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = [name.strip() for name in os.environ.get("STRONGROOM_TEST_BACKENDS", "sqlite,postgresql").split(",")]
TEST_PASSWORD = "Test-password-2026"


def pytest_report_header() -> str:
    return f"strongroom database backends: {', '.join(BACKENDS)}"


def _postgres(statement: str) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


@pytest.fixture(scope="session", params=BACKENDS, name="fx_database_url")
def fx_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A freshly migrated database of each backend, once per test session."""
    backend = request.param
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'strongroom.db'}"
        migrate(url)
        yield url
        return
    if backend != "postgresql":
        raise ValueError(f"unknown backend {backend!r} in STRONGROOM_TEST_BACKENDS")
    name = f"strongroom_test_{os.getpid()}_{secrets.token_hex(4)}"
    _postgres(f'CREATE DATABASE "{name}"')
    host_part = POSTGRES_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
    url = f"postgresql+asyncpg://{host_part}/{name}"
    try:
        migrate(url)
        yield url
    finally:
        _postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settings_with_keys(data_dir: Path, database_url: str) -> Settings:
    """Settings for ``database_url`` with every key created in ``data_dir``'s private keys directory."""
    settings = load_settings({}, data_dir=str(data_dir), database_url=database_url, log_level="WARNING")
    load_or_create_signing_key(Path(settings.resolved_keys_dir), create=True)
    load_or_create_audit_key(Path(settings.resolved_keys_dir), create=True)
    ensure_keyring(settings)
    return settings


@pytest.fixture(scope="session", name="fx_settings")
def fx_settings(fx_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for the app under test, with keys created in a private directory."""
    return settings_with_keys(tmp_path_factory.mktemp("data"), fx_database_url)


@dataclass
class Api:
    """A test client with helpers to create users and sign in."""

    client: AsyncTestClient[Litestar]
    app: Litestar
    backend: str
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    hasher: PasswordHasher

    async def create_user(self, roles: list[str], *, username: str | None = None, disabled: bool = False,
                          manager: str | None = None, unit: str | None = None) -> str:
        username = username or f"user-{uuid.uuid4().hex[:10]}"
        # The app runs on the test client's own event loop; test-side writes use their own engine.
        async with self.session_factory() as session:
            service = IdentityService(session, self.hasher)
            await service.create_user(username, roles=roles, password=TEST_PASSWORD, manager=manager, unit=unit)
            if disabled:
                await service.set_disabled(username, True)
        return username

    async def token_for(self, username: str, password: str = TEST_PASSWORD) -> str:
        response = await self.client.post("/api/v1/auth/token", data={
            "grant_type": "password", "username": username, "password": password})
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    async def login(self, roles: list[str] | None = None, **user: Any) -> dict[str, str]:
        """Authorization headers for a new user with ``roles``."""
        token = await self.token_for(await self.create_user(roles or ["sales_rep"], **user))
        return {"Authorization": f"Bearer {token}"}

    async def seal(self) -> None:
        """Chain every committed audit event now (the server's sealer would within milliseconds)."""
        from server.audit.sealer import seal_pending

        async with self.session_factory() as session:
            await seal_pending(session)

    async def user_id(self, username: str) -> uuid.UUID:
        from sqlalchemy import select

        from server.security.identity import User

        async with self.session_factory() as session:
            return (await session.execute(select(User.id).where(User.username == username))).scalar_one()


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Api]:
    """The application for ``settings`` served in-process, with the default roles and policies seeded."""
    app = create_app(settings)
    engine = create_engine(settings.resolved_database_url)
    session_factory = create_session_factory(engine)
    access = AccessControl(session_factory)
    await access.refresh_if_stale(force=True)
    async with session_factory() as session:
        await PolicyAdminService(session, access, system_principal("tests")).seed_defaults()
    try:
        async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
            yield Api(client=client, app=app, backend="sqlite" if settings.is_sqlite else "postgresql",
                      engine=engine, session_factory=session_factory, hasher=PasswordHasher())
    finally:
        await engine.dispose()


@pytest.fixture(scope="session", name="fx_api")
async def fx_api(fx_settings: Settings) -> AsyncIterator[Api]:
    """The application under test, served in-process, one per backend."""
    async with serving(fx_settings) as api:
        yield api


TEST_UNIT = "Test HQ"


@pytest.fixture(scope="session", name="fx_unit")
async def fx_unit(fx_api: Api) -> str:
    """An org unit shared by the default test users, so unit-scoped reads see each other's records."""
    async with fx_api.session_factory() as session:
        await IdentityService(session, fx_api.hasher).create_unit(TEST_UNIT)
    return TEST_UNIT


@pytest.fixture(scope="session", name="fx_headers")
async def fx_headers(fx_api: Api, fx_unit: str) -> dict[str, str]:
    """Headers of a signed-in sales manager, shared by tests that only need some caller."""
    return await fx_api.login(["sales_manager"], unit=fx_unit)


@pytest.fixture(scope="session", name="fx_support_headers")
async def fx_support_headers(fx_api: Api, fx_unit: str) -> dict[str, str]:
    """Headers of a support agent in the same unit (service records are theirs to create and change)."""
    return await fx_api.login(["support_agent"], unit=fx_unit)


@pytest.fixture(name="fx_customer")
async def fx_customer(fx_api: Api, fx_headers: dict[str, str]) -> dict[str, Any]:
    """A new company customer."""
    response = await fx_api.client.post("/api/v1/customers", headers=fx_headers,
                                        json={"name": f"Customer {uuid.uuid4().hex[:8]}", "kind": "company"})
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.fixture(name="fx_hasher", scope="session")
def fx_hasher() -> PasswordHasher:
    return PasswordHasher()


def strongroom_cli(monkeypatch: pytest.MonkeyPatch, settings: Settings, *argv: str,
                   environ: dict[str, str] | None = None) -> int:
    """``strongroom ARGV`` as the console script runs it, configured (through the environment) like ``settings``,
    plus ``environ``; returns the exit code."""
    from server.cli import main
    from server.security.crypto import KEYRING_ENV

    monkeypatch.delenv(KEYRING_ENV, raising=False)
    monkeypatch.delenv("STRONGROOM_CONFIG", raising=False)
    for name, value in (("DATA_DIR", settings.data_dir), ("KEYS_DIR", str(settings.resolved_keys_dir)),
                        ("DATABASE_URL", settings.resolved_database_url), ("LOG_LEVEL", "WARNING")):
        monkeypatch.setenv(f"STRONGROOM_{name}", value)
    for name, value in (environ or {}).items():
        monkeypatch.setenv(name, value)
    return main(list(argv))
