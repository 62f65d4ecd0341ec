"""Audit endpoints for the auditor role: events, verification, checkpoints, exports, the public key."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from server.audit.store import EventQuery
from server.errors import MalformedRequest
from server.services.audit import AuditService
from server.services.records import CallContext

Filter = Annotated[str | None, QueryParameter(required=False, max_length=128)]
Moment = Annotated[datetime | None, QueryParameter(required=False)]


def _service(request: Request[Any, Any, Any], context: CallContext) -> AuditService:
    return AuditService(context, request.app.state.resources.audit_key)


def _cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not cursor.isdigit() or len(cursor) > 19:
        raise MalformedRequest("the cursor is not valid for the audit trail", field="cursor")
    return int(cursor)


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ["audit"]

    @get("/events", summary="Query the audit trail (audit:read)",
         description="Filters combine with AND; `customer_id` returns everything that happened to or was seen of "
                     "that customer and its records. Newest first; `cursor` pages back.")
    async def events(
        self, request: Request[Any, Any, Any], context: NamedDependency[CallContext],
        actor_id: Filter = None, entity: Filter = None, entity_id: Filter = None, customer_id: Filter = None,
        field: Filter = None, action: Filter = None, outcome: Filter = None, since: Moment = None,
        until: Moment = None, cursor: Filter = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        query = EventQuery(actor_id=actor_id, entity=entity, entity_id=entity_id, subject_id=customer_id,
                           field=field, action=action, outcome=outcome, since=since, until=until,
                           before_seq=_cursor(cursor), limit=limit)
        return await _service(request, context).events(query)

    @get("/verify", summary="Verify the chain and the newest signed checkpoint (audit:verify)")
    async def verify(
        self, request: Request[Any, Any, Any], context: NamedDependency[CallContext],
        first: Annotated[int, QueryParameter(query="from", ge=1)] = 1,
        last: Annotated[int | None, QueryParameter(query="to", ge=1, required=False)] = None,
    ) -> dict[str, Any]:
        report = await _service(request, context).verify(first=first, last=last)
        return {"ok": report.ok, "events": report.events, "first_bad_seq": report.first_bad_seq,
                "problem": report.problem, "detail": report.detail, "checkpoint_size": report.checkpoint_size}

    @post("/checkpoints", status_code=200, summary="Sign a checkpoint now (audit:verify)")
    async def checkpoint(self, request: Request[Any, Any, Any],
                         context: NamedDependency[CallContext]) -> dict[str, Any]:
        return await _service(request, context).checkpoint()

    @get("/export", summary="Export events with inclusion proofs and signed checkpoints (audit:export)",
         media_type="application/x-ndjson")
    async def export(
        self, request: Request[Any, Any, Any], context: NamedDependency[CallContext],
        customer_id: Filter = None, actor_id: Filter = None, entity: Filter = None, action: Filter = None,
        since: Moment = None, until: Moment = None,
    ) -> Response[bytes]:
        query = EventQuery(subject_id=customer_id, actor_id=actor_id, entity=entity, action=action, since=since,
                           until=until)
        lines = await _service(request, context).export(query)
        return Response("".join(line if line.endswith("\n") else line + "\n" for line in lines).encode(),
                        media_type="application/x-ndjson")

    @get("/public-key", summary="The checkpoint verification key (PEM)", media_type="application/x-pem-file")
    async def public_key(self, request: Request[Any, Any, Any], context: NamedDependency[CallContext]) -> str:
        return _service(request, context).public_key_pem()
