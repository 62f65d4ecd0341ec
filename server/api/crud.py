"""One controller shape for every CRM entity: create, get, list, patch, delete.

This module deliberately does not use ``from __future__ import annotations``: the handler annotations are
the per-entity schema classes passed to the factory, and Litestar must see them as objects.
"""

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter

from server.api.schemas import Page, given_values
from server.domain.fields import EntitySpec
from server.errors import InvalidInput, MalformedRequest, PreconditionRequired
from server.services.pagination import build_list_query
from server.services.records import CallContext, RecordService

PAGING_PARAMETERS = frozenset({"limit", "cursor", "sort"})
EXPORT_LIMIT = 100_000


def parse_if_match(if_match: str | None, body_version: Any) -> int:
    """The version an update expects, from ``If-Match`` (an ETag we issued) or the body's ``version``."""
    if if_match is not None:
        tag = if_match.strip().removeprefix("W/").strip('"')
        if not tag.isdigit() or len(tag) > 12:
            raise MalformedRequest("If-Match must be the ETag of the record, e.g. \"3\"", field="If-Match")
        header_version = int(tag)
        if body_version is not msgspec.UNSET and body_version != header_version:
            raise InvalidInput("If-Match and version disagree", field="version")
        return header_version
    if body_version is msgspec.UNSET:
        raise PreconditionRequired("send If-Match or version so that concurrent changes are not overwritten")
    return int(body_version)


def optional_if_match(if_match: str | None) -> int | None:
    """The version from an optional ``If-Match`` header."""
    return None if if_match is None else parse_if_match(if_match, msgspec.UNSET)


def etag(record: dict[str, Any]) -> dict[str, str]:
    """The ETag header for a projected record."""
    return {"ETag": f'"{record["version"]}"'} if "version" in record else {}


def list_filters(request: Request[Any, Any, Any], entity: EntitySpec) -> dict[str, str]:
    """Exact-match filters from the query string; unknown parameters are rejected, not ignored."""
    filters: dict[str, str] = {}
    for name, value in request.query_params.items():
        if name in PAGING_PARAMETERS:
            continue
        spec = entity.field(name)
        if spec is None or not (spec.filterable or spec.blind_indexed):
            raise InvalidInput(f"unknown query parameter {name[:40]!r}", field=name)
        filters[name] = value
    return filters


def record_controller(
    *,
    path: str,
    tag: str,
    entity: EntitySpec,
    service_type: type[RecordService[Any]],
    create_schema: type[msgspec.Struct],
    update_schema: type[msgspec.Struct],
    read_schema: type[msgspec.Struct],
) -> type[Controller]:
    """Build the controller for one entity from its schemas and its service."""
    filterable = ", ".join(sorted(entity.filterable)) or "none"
    sortable = ", ".join(sorted(entity.sortable))
    label = entity.name.replace("_", " ")

    class RecordController(Controller):
        tags = [tag]

        @post("/", status_code=201, summary=f"Create a {label}",
              responses={201: ResponseSpec(data_container=read_schema, description=f"The new {label}")})
        async def create(
            self,
            data: JSONBody[create_schema],  # type: ignore[valid-type]
            context: NamedDependency[CallContext],
            idempotency_key: Annotated[str | None, HeaderParameter(name="Idempotency-Key", required=False)] = None,
        ) -> Response[dict[str, Any]]:
            record = await service_type(context).create(given_values(data), idempotency_key=idempotency_key)
            return Response(record, status_code=201, headers=etag(record))

        @get("/{record_id:uuid}", summary=f"Get a {label}",
             description="`reveal=<field>` with a `reason` shows one masked field in clear, if the role may reveal "
                         "it; every reveal is recorded in the audit trail with its reason.",
             responses={200: ResponseSpec(data_container=read_schema, description=f"The {label}")})
        async def read(
            self,
            record_id: FromPath[uuid.UUID],
            context: NamedDependency[CallContext],
            reveal: Annotated[str | None, QueryParameter(required=False, max_length=64)] = None,
            reason: Annotated[str | None, QueryParameter(required=False, max_length=500)] = None,
        ) -> Response[dict[str, Any]]:
            record = await service_type(context).get(record_id, reveal=reveal, reason=reason)
            return Response(record, headers=etag(record))

        @get("/", summary=f"List {label}s",
             description=f"Cursor-paginated. Exact-match filters as query parameters: {filterable}. "
                         f"`sort` is one of {sortable}, prefixed with `-` for descending (default `-created_at`).")
        async def list_records(
            self,
            request: Request[Any, Any, Any],
            context: NamedDependency[CallContext],
            limit: Annotated[int | None, QueryParameter(ge=1, required=False)] = None,
            cursor: Annotated[str | None, QueryParameter(required=False, max_length=2000)] = None,
            sort: Annotated[str | None, QueryParameter(required=False, max_length=100)] = None,
        ) -> Page:
            query = build_list_query(entity, filters=list_filters(request, entity), sort=sort, cursor=cursor,
                                     limit=limit, max_limit=context.settings.page_size_max)
            page = await service_type(context).page(query)
            return Page(items=page["items"], next_cursor=page["next_cursor"])

        @get("/export", summary=f"Export {label}s as JSON lines",
             description=f"Every {label} in the caller's scope (up to {EXPORT_LIMIT}), with the same field masks as "
                         f"a read; exact-match filters as for the list: {filterable}.",
             media_type="application/x-ndjson")
        async def export(self, request: Request[Any, Any, Any],
                         context: NamedDependency[CallContext]) -> Response[bytes]:
            query = build_list_query(entity, filters=list_filters(request, entity), sort=None, cursor=None,
                                     limit=None, max_limit=context.settings.page_size_max)
            records = await service_type(context).export(query.filters, max_rows=EXPORT_LIMIT)
            body = b"".join(msgspec.json.encode(record) + b"\n" for record in records)
            return Response(body, media_type="application/x-ndjson")

        @patch("/{record_id:uuid}", summary=f"Change a {label}",
               description="Send `If-Match` with the ETag from a read, or `version` in the body; a stale version "
                           "answers 409.",
               responses={200: ResponseSpec(data_container=read_schema, description=f"The changed {label}")})
        async def update(
            self,
            record_id: FromPath[uuid.UUID],
            data: JSONBody[update_schema],  # type: ignore[valid-type]
            context: NamedDependency[CallContext],
            if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
        ) -> Response[dict[str, Any]]:
            expected = parse_if_match(if_match, getattr(data, "version", msgspec.UNSET))
            record = await service_type(context).update(record_id, given_values(data), expected_version=expected)
            return Response(record, headers=etag(record))

        @delete("/{record_id:uuid}", status_code=204, summary=f"Delete a {label}")
        async def remove(
            self,
            record_id: FromPath[uuid.UUID],
            context: NamedDependency[CallContext],
            if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
        ) -> None:
            await service_type(context).delete(record_id, expected_version=optional_if_match(if_match))

    RecordController.path = path
    RecordController.__name__ = RecordController.__qualname__ = f"{entity.name.title().replace('_', '')}Controller"
    return RecordController
