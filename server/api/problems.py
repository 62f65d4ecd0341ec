"""Every error leaves as an RFC 9457 problem detail; no stack trace ever reaches a client."""

from __future__ import annotations

from typing import Any, Final

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


# What means the database cannot take the request now, not that the request is wrong. PostgreSQL SQLSTATEs: a
# connection exception (class 08), a transaction rolled back as a serialization failure or deadlock victim
# (class 40), insufficient resources such as too many connections (class 53), a lock not available (55P03), a
# statement cancelled by its timeout (57014), a shutdown, crash recovery or start-up in progress (57P01-57P03).
# SQLite: the database locked by another writer beyond the busy timeout.
_UNAVAILABLE_SQLSTATES: Final = ("08", "40", "53", "55P03", "57014", "57P01", "57P02", "57P03")
_UNAVAILABLE_SQLITE: Final = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED"})


def _database_unavailable(request: Request[Any, Any, Any], detail: str, cause: str) -> Response[dict[str, Any]]:
    log.warning("database_unavailable", error_type=cause)
    response = problem(request, HTTP_503_SERVICE_UNAVAILABLE, detail, slug="database-unavailable")
    response.headers["Retry-After"] = "1"
    return response


def handle_database_error(request: Request[Any, Any, Any], exc: DBAPIError) -> Response[dict[str, Any]]:
    """The database dropped a connection (a restart, a failover), could not be connected to (down, too many
    connections, starting up), or could not serve the request now (a deadlock, a lock or statement timeout, SQLite
    locked by another writer): 503, retry. A dropped connection has been replaced by the pool, with every other
    connection as old. Any other database error is unexpected."""
    cause = type(exc.orig).__name__
    if exc.connection_invalidated:
        return _database_unavailable(request, "the database connection was lost; retry the request (a change with "
                                     "its If-Match or Idempotency-Key, so that it is not applied twice)", cause)
    # Without a statement, the error was raised while connecting.
    code = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "sqlite_errorname", None) or "")
    if exc.statement is None or code.startswith(_UNAVAILABLE_SQLSTATES) or code in _UNAVAILABLE_SQLITE:
        return _database_unavailable(request, "the database cannot take this request now; retry it shortly",
                                     f"{cause} {code}".strip())
    return handle_unexpected(request, exc)


def handle_connection_error(request: Request[Any, Any, Any], exc: ConnectionError) -> Response[dict[str, Any]]:
    """A connection this server opens, to its database, refused or reset (the driver raises it unwrapped when the
    database's port does not answer): 503, retry."""
    return _database_unavailable(request, "the database cannot be reached; retry the request shortly",
                                 type(exc).__name__)


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    StrongroomError: handle_strongroom_error,
    ValidationException: handle_validation_error,
    HTTPException: handle_http_exception,
    DBAPIError: handle_database_error,
    ConnectionError: handle_connection_error,
    Exception: handle_unexpected,
}
