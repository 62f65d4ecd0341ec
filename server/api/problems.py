"""Every error leaves as an RFC 9457 problem detail; no stack trace ever reaches a client."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR, HTTP_503_SERVICE_UNAVAILABLE
from sqlalchemy.exc import DBAPIError

from server.errors import StrongroomError

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://strongroom.dev/problems/"

log = structlog.get_logger("strongroom.api")

_TITLES = {400: "Bad request", 401: "Not authenticated", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 409: "Conflict", 413: "Request body too large", 415: "Unsupported media type",
           422: "Invalid input", 428: "Precondition required", 429: "Too many requests", 500: "Internal error",
           503: "Service unavailable"}


def problem(request: Request[Any, Any, Any], status: int, detail: str, *, slug: str | None = None,
            title: str | None = None, **extensions: Any) -> Response[dict[str, Any]]:
    """An RFC 9457 response."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or _TITLES.get(status, "error").lower().replace(" ", "-")),
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    request_id = request.scope.get("state", {}).get("request_id")
    if request_id:
        body["request_id"] = request_id
    body.update(extensions)
    headers = {"WWW-Authenticate": 'Bearer realm="strongroom"'} if status == 401 else None
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def handle_strongroom_error(request: Request[Any, Any, Any], exc: StrongroomError) -> Response[dict[str, Any]]:
    """Our own errors: status, title and extensions come from the error class."""
    log.info("request_refused", status=exc.status, problem=exc.type_slug)
    return problem(request, exc.status, exc.detail, slug=exc.type_slug, title=exc.title, **exc.extensions)


def handle_validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    """Body and parameter validation. Malformed JSON is 400; well-formed but invalid input is 422.

    The messages come from msgspec and name the location and the expected type, not the rejected value.
    """
    errors = [
        {key: item[key] for key in ("message", "key", "source") if key in item}
        for item in (exc.extra if isinstance(exc.extra, list) else [])
        if isinstance(item, dict)
    ]
    malformed = any("malformed" in str(item.get("message", "")).lower() or
                    "truncated" in str(item.get("message", "")).lower() for item in errors)
    if malformed:
        return problem(request, 400, "the request body is not valid JSON", slug="malformed-json")
    return problem(request, 422, "the request does not match the schema", slug="invalid-input", errors=errors)


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    """Framework errors (404 route, 405, 413 ...) as problems, detail kept generic."""
    status = exc.status_code
    detail = exc.detail if status < 500 and exc.detail else _TITLES.get(status, "Error")
    return problem(request, status, str(detail))


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Anything else: logged with its traceback for operators, a bare 500 problem for the client."""
    log.error("unhandled_error", error_type=type(exc).__name__, exc_info=exc)
    return problem(request, HTTP_500_INTERNAL_SERVER_ERROR, "an internal error occurred; quote the request id")


def handle_database_error(request: Request[Any, Any, Any], exc: DBAPIError) -> Response[dict[str, Any]]:
    """A statement on a connection the database dropped (a restart, a failover): 503, retry. The pool has
    replaced the connection, and every other connection as old, by then. Any other database error is
    unexpected."""
    if not exc.connection_invalidated:
        return handle_unexpected(request, exc)
    log.warning("database_connection_lost", error_type=type(exc.orig).__name__)
    response = problem(request, HTTP_503_SERVICE_UNAVAILABLE,
                       "the database connection was lost; retry the request (a change with its If-Match or "
                       "Idempotency-Key, so that it is not applied twice)", slug="database-unavailable")
    response.headers["Retry-After"] = "1"
    return response


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    StrongroomError: handle_strongroom_error,
    ValidationException: handle_validation_error,
    HTTPException: handle_http_exception,
    DBAPIError: handle_database_error,
    Exception: handle_unexpected,
}
