"""Request ids and one access-log line per request (path only: query strings can hold personal data)."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("strongroom.access")
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """Adopt a well-formed incoming X-Request-ID or make one, and bind it to every log line of the request."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"], state["started"] = request_id, time.perf_counter()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await app(scope, receive, send)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")

    return middleware


async def stamp_response(message: Message, scope: Scope) -> None:
    """``before_send`` hook: every response, errors included, carries its request id and is logged once."""
    if message["type"] != "http.response.start":
        return
    state = scope.get("state", {})
    request_id = state.get("request_id")
    if request_id is None:
        return
    message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
    log.info("request", method=scope.get("method"), path=scope.get("path"), status=message["status"],
             duration_ms=round((time.perf_counter() - state["started"]) * 1000, 2), request_id=request_id)
