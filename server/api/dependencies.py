"""Dependency providers: a session per request and the caller's context for services."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import AsyncGenerator, Iterable
from typing import Any

import structlog
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.trail import RequestInfo
from server.security.principal import Principal
from server.services.records import CallContext

log = structlog.get_logger("strongroom.api")


async def provide_session(request: Request[Any, Any, Any]) -> AsyncGenerator[AsyncSession, None]:
    """One session per request, closed afterwards; services open their own transactions on it."""
    async with request.app.state.resources.session_factory() as session:
        yield session


def provide_call_context(request: Request[Principal, Any, Any], session: NamedDependency[AsyncSession]) -> CallContext:
    """The authenticated principal with the request's session and the settings."""
    resources = request.app.state.resources
    return CallContext(session=session, principal=request.user, settings=resources.settings, access=resources.access,
                       cipher=resources.cipher, request=request_info(request),
                       events=resources.events)


def request_info(connection: ASGIConnection[Any, Any, Any, Any]) -> RequestInfo:
    """Request id, client address and user agent for the audit trail."""
    return RequestInfo(request_id=connection.scope.get("state", {}).get("request_id"),
                       client_address=client_address(connection),
                       user_agent=(connection.headers.get("user-agent") or "")[:256] or None)


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The caller's address: the TCP peer, or, behind trusted reverse proxies, the address they report.

    ``X-Forwarded-For`` is written by whoever sends the request, so it is believed only when the peer is a
    configured trusted proxy (setting ``trusted_proxies``; none by default). The header is then read from the
    right, skipping the trusted proxies' own entries: the first address that is not a trusted proxy is the
    client (entries further left were supplied by that client and prove nothing). A malformed entry ends the
    walk at the last trustworthy hop. Audit events and sign-in throttling both key on this address, so a
    spoofable value here would let an attacker dodge the lockout or frame another address.
    """
    peer = connection.client.host if connection.client else None
    settings = getattr(getattr(connection.app.state, "resources", None), "settings", None)
    proxies = trusted_networks(getattr(settings, "trusted_proxies", ()))
    if peer is None or not proxies or not _within(peer, proxies):  # no proxies (the default): no parsing
        return peer
    hops = [hop.strip() for value in connection.headers.getall("x-forwarded-for", [])
            for hop in value.split(",") if hop.strip()]
    address = peer
    for hop in reversed(hops):
        if _parse_address(hop) is None:
            break
        address = hop
        if not _within(hop, proxies):
            break
    return str(_parse_address(address) or address)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            # Not trusting an entry that cannot be read is the safe failure; config validation should catch it.
            log.warning("trusted_proxies_entry_ignored", entry=entry[:64])
    return tuple(networks)


def trusted_networks(setting: str | Iterable[str] | None) -> tuple[Network, ...]:
    """The trusted proxy networks from a setting given as a comma-separated string or a list of strings."""
    if not setting:
        return ()
    entries = setting.split(",") if isinstance(setting, str) else list(setting)
    return _networks(tuple(entry.strip() for entry in entries if entry.strip()))


def _parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _within(text: str, networks: tuple[Network, ...]) -> bool:
    address = _parse_address(text)
    return address is not None and any(address in network for network in networks)
