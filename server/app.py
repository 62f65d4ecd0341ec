"""The application factory: reading this file shows every plugin, route group and handler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import Litestar
from litestar.config.compression import CompressionConfig
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server import __version__
from server.api.activities import ActivityController
from server.api.admin import AdminController
from server.api.audit import AuditController
from server.api.auth import PUBLIC_PATHS, BearerAuthenticationMiddleware, TokenController
from server.api.body import check_body
from server.api.contacts import ContactController
from server.api.customers import Customer360Controller, CustomerController, CustomerErasureController
from server.api.dependencies import provide_call_context, provide_session
from server.api.health import HealthController
from server.api.middleware import request_id_middleware, stamp_response
from server.api.opportunities import OpportunityController, OpportunityReopenController
from server.api.problems import EXCEPTION_HANDLERS
from server.api.service_records import ServiceRecordController
from server.audit.group_commit import GroupCommitWriter
from server.audit.sealer import seal_continuously
from server.audit.store import load_or_create_audit_key
from server.config import Settings, get_settings
from server.db import create_engine, create_session_factory
from server.gc_tuning import tune_collector
from server.logs import configure_logging
from server.ops.audit_archive import run_archive_schedule
from server.ops.backup import run_backup_schedule
from server.ops.checkpoints import checkpoint_periodically
from server.security.access import AccessControl
from server.security.field_cipher import FieldCipher
from server.security.identity import PasswordHasher, TokenSigner, load_or_create_signing_key

STATIC_DIR = Path(__file__).parent / "static"


@dataclass
class Resources:
    """Process-wide objects the handlers reach through ``app.state.resources``."""

    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    signer: TokenSigner
    hasher: PasswordHasher
    access: AccessControl
    audit_key: Ed25519PrivateKey
    cipher: FieldCipher
    events: GroupCommitWriter


def _openapi() -> OpenAPIConfig:
    # The UI assets are served by this server: air-gapped sites have no CDN.
    swagger = SwaggerRenderPlugin(
        js_url="/static/openapi/swagger-ui-bundle.js",
        css_url="/static/openapi/swagger-ui.css",
        standalone_preset_js_url="/static/openapi/swagger-ui-standalone-preset.js",
        favicon="",
        path="/",
    )
    return OpenAPIConfig(
        title="Strongroom",
        version=__version__,
        description="On-premises CRM with field-level security, column encryption and a tamper-evident audit trail.",
        path="/schema",
        render_plugins=[swagger],
        components=Components(security_schemes={
            "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT",
                                     description="Token from POST /api/v1/auth/token"),
        }),
        security=[{"bearer": []}],
    )


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the Litestar application for ``settings`` (default: from the environment).

    Fails before serving if the keys are missing or unsafe, so a server never runs half-configured.
    """
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    signing_key = load_or_create_signing_key(settings.resolved_keys_dir, create=False)
    audit_key = load_or_create_audit_key(settings.resolved_keys_dir, create=False)
    cipher = FieldCipher.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
        engine = create_engine(settings.resolved_database_url)
        session_factory = create_session_factory(engine)
        app.state.resources = Resources(
            settings=settings,
            engine=engine,
            session_factory=session_factory,
            signer=TokenSigner(signing_key, settings.token_ttl_seconds),
            hasher=PasswordHasher(),
            access=AccessControl(session_factory),
            audit_key=audit_key,
            cipher=cipher,
            events=GroupCommitWriter(engine),
        )
        app.state.resources.events.start()
        background = [asyncio.create_task(seal_continuously(session_factory)),
                      asyncio.create_task(checkpoint_periodically(session_factory, audit_key, settings)),
                      # STRONGROOM_BACKUP_SCHEDULE; returns at once when it is `off` (a timer or CronJob backs up).
                      asyncio.create_task(run_backup_schedule(settings)),
                      # STRONGROOM_AUDIT_ARCHIVE_SCHEDULE; returns at once when it is `off`.
                      asyncio.create_task(run_archive_schedule(settings))]
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await app.state.resources.events.stop()
            await engine.dispose()

    return Litestar(
        route_handlers=[
            HealthController,
            TokenController,
            CustomerController,
            Customer360Controller,
            CustomerErasureController,
            ContactController,
            OpportunityController,
            OpportunityReopenController,
            ServiceRecordController,
            ActivityController,
            AdminController,
            AuditController,
            create_static_files_router(path="/static", directories=[STATIC_DIR], include_in_schema=False),
        ],
        dependencies={
            "session": Provide(provide_session),
            "context": Provide(provide_call_context, sync_to_thread=False),
        },
        middleware=[request_id_middleware,
                    DefineMiddleware(BearerAuthenticationMiddleware, exclude=PUBLIC_PATHS)],
        before_request=check_body,
        before_send=[stamp_response],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=_openapi(),
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        compression_config=CompressionConfig(backend="gzip", minimum_size=4096),
        logging_config=None,
        debug=False,
    )


def create_app_from_env() -> Litestar:
    """Factory for the ASGI server's worker processes (which also get the tuned garbage collector)."""
    app = create_app(get_settings())
    tune_collector()
    return app
