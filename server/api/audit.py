"""Audit endpoints for the auditor role: events, verification, checkpoints, exports, legal holds, archives.

Query parameters are declared as plain text (so they appear in the OpenAPI document) and checked here, so that
an unknown parameter, a repeated one or a bad value answers 400 with a problem naming the parameter, instead of
being ignored (a misspelt filter would otherwise return the whole trail).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Final

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import File, Stream

from server.api.schemas import AwareDatetime, Input
from server.audit.store import EventQuery
from server.audit.tags import AuditAction, AuditOutcome
from server.errors import MalformedRequest
from server.services.audit import AuditService, ExportFormat
from server.services.records import CallContext

Text = Annotated[str | None, QueryParameter(required=False)]
Param = Callable[[str, str], Any]
EXPORT_MEDIA_TYPES: Final = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
MAX_LIMIT: Final = 1000


def _service(request: Request[Any, Any, Any], context: CallContext) -> AuditService:
    resources = request.app.state.resources
    return AuditService(context, resources.audit_key, resources.session_factory)


def _refuse(name: str, detail: str) -> MalformedRequest:
    return MalformedRequest(f"query parameter {name!r} {detail}", parameter=name)


def check_parameter_names(request: Request[Any, Any, Any], allowed: frozenset[str]) -> None:
    """400 for a query parameter the endpoint does not know, or one given twice."""
    for name in request.query_params:
        shown = name[:40]
        if name not in allowed:
            raise MalformedRequest(f"unknown query parameter {shown!r}; known: {', '.join(sorted(allowed))}",
                                   parameter=shown)
        if len(request.query_params.getall(name)) > 1:
            raise _refuse(shown, "is given more than once")


def text(limit: int) -> Param:
    """Free text of 1 to ``limit`` characters."""

    def parse(name: str, raw: str) -> str:
        if not 1 <= len(raw) <= limit or "\x00" in raw:
            raise _refuse(name, f"must be 1 to {limit} characters")
        return raw

    return parse


def record_id(name: str, raw: str) -> str:
    """A record id (UUID), in the form the trail stores it."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise _refuse(name, "must be a record id (UUID)") from None


def moment(name: str, raw: str) -> datetime:
    """An RFC 3339 time with its offset (``2026-11-23T10:43:00Z``)."""
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise _refuse(name, "must be an RFC 3339 time, e.g. 2026-11-23T10:43:00Z") from None
    if value.tzinfo is None:
        raise _refuse(name, "must carry a time zone offset (Z or +08:00)")
    return value


def integer(low: int, high: int) -> Param:
    """A decimal integer in ``low..high``."""

    def parse(name: str, raw: str) -> int:
        if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not low <= int(raw) <= high:
            raise _refuse(name, f"must be an integer from {low} to {high}")
        return int(raw)

    return parse


def choice(*allowed: str) -> Param:
    """One of ``allowed``."""

    def parse(name: str, raw: str) -> str:
        if raw not in allowed:
            raise _refuse(name, f"must be one of {', '.join(allowed)}")
        return raw

    return parse


def _given(parse: Param, name: str, raw: str | None) -> Any:
    return None if raw is None else parse(name, raw)


FILTERS: Final = frozenset({"actor_id", "entity", "entity_id", "customer_id", "field", "action", "outcome", "since",
                            "until"})
_ACTIONS: Final = choice(*sorted(action.value for action in AuditAction))
_OUTCOMES: Final = choice(*(outcome.value for outcome in AuditOutcome))
_CURSOR: Final = integer(1, 2**63 - 1)


def _event_query(actor_id: str | None, entity: str | None, entity_id: str | None, customer_id: str | None,
                 field: str | None, action: str | None, outcome: str | None, since: str | None,
                 until: str | None, **paging: Any) -> EventQuery:
    query = EventQuery(
        actor_id=_given(text(64), "actor_id", actor_id), entity=_given(text(64), "entity", entity),
        entity_id=_given(text(64), "entity_id", entity_id), subject_id=_given(record_id, "customer_id", customer_id),
        field=_given(text(128), "field", field), action=_given(_ACTIONS, "action", action),
        outcome=_given(_OUTCOMES, "outcome", outcome), since=_given(moment, "since", since),
        until=_given(moment, "until", until), **paging)
    if query.since is not None and query.until is not None and query.since >= query.until:
        raise _refuse("until", "must be later than since")
    return query


class HoldCreate(Input):
    """A legal hold: by customer, by time range, or both (neither holds every event)."""

    reason: str
    customer_id: uuid.UUID | None = None
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None


class HoldRelease(Input):
    reason: str


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ["audit"]

    @get("/events", summary="Query the audit trail (audit:read)",
         description="Filters combine with AND; `customer_id` returns everything that happened to or was seen of "
                     "that customer and its records. Newest first; `cursor` pages back. Unknown or repeated "
                     "parameters and bad values answer 400 naming the parameter. The query is itself recorded.")
    async def events(
        self, request: Request[Any, Any, Any], context: NamedDependency[CallContext],
        actor_id: Text = None, entity: Text = None, entity_id: Text = None, customer_id: Text = None,
        field: Text = None, action: Text = None, outcome: Text = None, since: Text = None,
        until: Text = None, cursor: Text = None, limit: Text = None,
    ) -> dict[str, Any]:
        check_parameter_names(request, FILTERS | {"cursor", "limit"})
        query = _event_query(actor_id, entity, entity_id, customer_id, field, action, outcome, since, until,
                             before_seq=_given(_CURSOR, "cursor", cursor),
                             limit=_given(integer(1, MAX_LIMIT), "limit", limit) or 100)
        return await _service(request, context).events(query)

    @get("/verify", summary="Verify the chain and the newest signed checkpoint (audit:verify)",
         description="`from` and `to` verify a range (chain only). After archiving, the chain starts at the archive "
                     "boundary. The run and its verdict are recorded.")
    async def verify(
        self, request: Request[Any, Any, Any], context: NamedDependency[CallContext],
        first: Annotated[str | None, QueryParameter(name="from", required=False)] = None,
        last: Annotated[str | None, QueryParameter(name="to", required=False)] = None,
    ) -> dict[str, Any]:
        check_parameter_names(request, frozenset({"from", "to"}))
        report = await _service(request, context).verify(
            first=_given(_CURSOR, "from", first) or 1, last=_given(_CURSOR, "to", last))
        return {"ok": report.ok, "events": report.events, "first_bad_seq": report.first_bad_seq,
                "problem": report.problem, "detail": report.detail, "checkpoint_size": report.checkpoint_size}

    @post("/checkpoints", status_code=200, summary="Sign a checkpoint now (audit:verify)")
    async def checkpoint(self, request: Request[Any, Any, Any],
                         context: NamedDependency[CallContext]) -> dict[str, Any]:
        check_parameter_names(request, frozenset())
        return await _service(request, context).checkpoint()

    @get("/export", summary="Export events with inclusion proofs and signed checkpoints (audit:export)",
         description="`format=jsonl` (default, `application/x-ndjson`) or `format=csv`: the CSV has one row per "
                     "JSONL line, the line itself in the last column and each event spread over readable columns, "
                     "so it verifies offline like the JSONL (`strongroom audit verify --export`). Cells a "
                     "spreadsheet would run as formulas are prefixed with `'`. Streamed; recorded as an export.")
    async def export(
        self, request: Request[Any, Any, Any], context: NamedDependency[CallContext],
        actor_id: Text = None, entity: Text = None, entity_id: Text = None, customer_id: Text = None,
        field: Text = None, action: Text = None, outcome: Text = None, since: Text = None,
        until: Text = None, fmt: Annotated[str | None, QueryParameter(name="format", required=False)] = None,
    ) -> Stream:
        check_parameter_names(request, FILTERS | {"format"})
        query = _event_query(actor_id, entity, entity_id, customer_id, field, action, outcome, since, until)
        export_format: ExportFormat = "csv" if _given(choice("jsonl", "csv"), "format", fmt) == "csv" else "jsonl"
        lines = await _service(request, context).export(query, export_format)
        name = f"audit-export.{export_format}"
        return Stream(lines, media_type=EXPORT_MEDIA_TYPES[export_format],
                      headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @get("/public-key", summary="The checkpoint verification key (PEM)", media_type="application/x-pem-file")
    async def public_key(self, request: Request[Any, Any, Any], context: NamedDependency[CallContext]) -> str:
        return _service(request, context).public_key_pem()

    @get("/holds", summary="Legal holds (audit:read)",
         description="`active=true` lists only holds not released. The query is recorded.")
    async def holds(self, request: Request[Any, Any, Any], context: NamedDependency[CallContext],
                    active: Text = None) -> list[dict[str, Any]]:
        check_parameter_names(request, frozenset({"active"}))
        active_only = _given(choice("true", "false"), "active", active) == "true"
        return await _service(request, context).holds(active_only=active_only)

    @post("/holds", status_code=201, summary="Place a legal hold (audit:export)",
          description="Events about `customer_id` and/or recorded in `[since, until)` are not archived while the "
                      "hold is active; with neither, every event is held. Archiving takes only a contiguous prefix, "
                      "so a held event also keeps every later event. Recorded as a `policy_change` event.")
    async def place_hold(self, request: Request[Any, Any, Any], context: NamedDependency[CallContext],
                         data: JSONBody[HoldCreate]) -> dict[str, Any]:
        check_parameter_names(request, frozenset())
        return await _service(request, context).place_hold(
            reason=data.reason, customer_id=str(data.customer_id) if data.customer_id else None, since=data.since,
            until=data.until)

    @post("/holds/{hold_id:int}/release", status_code=200, summary="Release a legal hold (audit:export)")
    async def release_hold(self, request: Request[Any, Any, Any], context: NamedDependency[CallContext],
                           hold_id: FromPath[int], data: JSONBody[HoldRelease]) -> dict[str, Any]:
        check_parameter_names(request, frozenset())
        return await _service(request, context).release_hold(hold_id, reason=data.reason)

    @get("/archives", summary="Archives of expired events (audit:read)",
         description="Each archive's range, last hash, Merkle compact range and file digest. Archiving itself is "
                     "the operator's `strongroom audit archive` (it needs the schema owner on PostgreSQL).")
    async def archives(self, request: Request[Any, Any, Any],
                       context: NamedDependency[CallContext]) -> list[dict[str, Any]]:
        check_parameter_names(request, frozenset())
        return await _service(request, context).archives()

    @get("/archives/{archive_id:int}/file", summary="Download an archive file (audit:export)",
         description="The verifiable JSONL file; `Repr-Digest` carries the SHA-256 recorded for it. Recorded as an "
                     "export.", media_type="application/x-ndjson")
    async def archive_file(self, request: Request[Any, Any, Any], context: NamedDependency[CallContext],
                           archive_id: FromPath[int]) -> File:
        check_parameter_names(request, frozenset())
        path, sha256 = await _service(request, context).archive_file(archive_id)
        digest = base64.b64encode(bytes.fromhex(sha256)).decode("ascii")
        return File(path=path, filename=path.name, media_type="application/x-ndjson",
                    headers={"Repr-Digest": f"sha-256=:{digest}:"})

