"""Dependency providers: a session per request and the caller's context for services."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.trail import RequestInfo
from server.security.principal import Principal
from server.services.records import CallContext


async def provide_session(request: Request[Any, Any, Any]) -> AsyncGenerator[AsyncSession, None]:
    """One session per request, closed afterwards; services open their own transactions on it."""
    async with request.app.state.resources.session_factory() as session:
        yield session


def provide_call_context(request: Request[Principal, Any, Any], session: NamedDependency[AsyncSession]) -> CallContext:
    """The authenticated principal with the request's session and the settings."""
    resources = request.app.state.resources
    return CallContext(session=session, principal=request.user, settings=resources.settings, access=resources.access,
                       cipher=resources.cipher, request=request_info(request))


def request_info(connection: ASGIConnection[Any, Any, Any, Any]) -> RequestInfo:
    """Request id, client address and user agent for the audit trail."""
    return RequestInfo(request_id=connection.scope.get("state", {}).get("request_id"),
                       client_address=connection.client.host if connection.client else None,
                       user_agent=(connection.headers.get("user-agent") or "")[:256] or None)
