"""One error vocabulary for every layer; the API maps each to an RFC 9457 problem (server/api/problems.py)."""

from __future__ import annotations

from typing import Any


class StrongroomError(Exception):
    """Base of the errors that become client-facing problems. ``title`` and ``status`` are per class."""

    status = 400
    title = "Bad request"
    type_slug = "bad-request"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class InvalidInput(StrongroomError):
    """The request is well-formed but a value breaks a rule (422)."""

    status = 422
    title = "Invalid input"
    type_slug = "invalid-input"


class InvalidTransition(InvalidInput):
    """A stage or status change that the business rules do not allow (422)."""

    title = "Transition not allowed"
    type_slug = "invalid-transition"


class MalformedRequest(StrongroomError):
    """The request cannot be parsed: bad cursor, bad header (400)."""


class NotAuthenticated(StrongroomError):
    """No valid credentials (401)."""

    status = 401
    title = "Not authenticated"
    type_slug = "not-authenticated"


class Forbidden(StrongroomError):
    """The principal may not do this; the detail names the field or action (403)."""

    status = 403
    title = "Forbidden"
    type_slug = "forbidden"


class NotFound(StrongroomError):
    """No such record, or not in the caller's scope: both answer the same (404)."""

    status = 404
    title = "Not found"
    type_slug = "not-found"


class Conflict(StrongroomError):
    """The request conflicts with the current state: stale version, duplicate, dependents (409)."""

    status = 409
    title = "Conflict"
    type_slug = "conflict"


class PreconditionRequired(StrongroomError):
    """An update without If-Match or version (428)."""

    status = 428
    title = "Precondition required"
    type_slug = "precondition-required"


class KeyUnavailable(StrongroomError):
    """A data key this server needs cannot be unwrapped with its keyring (an out-of-date copy); nothing is
    written (503)."""

    status = 503
    title = "Key unavailable"
    type_slug = "key-unavailable"


class ErasureLedgerUnavailable(StrongroomError):
    """The erasure ledger beside the keyring cannot be written or fails verification; nothing is erased (503)."""

    status = 503
    title = "Erasure ledger unavailable"
    type_slug = "erasure-ledger-unavailable"


class AuditUnavailable(StrongroomError):
    """The audit trail could not record an act that must be recorded (a read of sensitive fields): nothing is
    shown, and the client may retry (503)."""

    status = 503
    title = "Audit trail unavailable"
    type_slug = "audit-unavailable"


class UnsupportedMediaType(StrongroomError):
    """The body is not in the media type the endpoint reads (415)."""

    status = 415
    title = "Unsupported media type"
    type_slug = "unsupported-media-type"
