"""List queries: exact-match filters, sort order and opaque keyset cursors."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from server.domain.fields import EntitySpec, ValueKind
from server.domain.repository import Keyset, SortOrder
from server.errors import InvalidInput, MalformedRequest

DEFAULT_PAGE_SIZE = 50


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A parsed list request: filters by field, sort, cursor and page size."""

    filters: dict[str, Any] = field(default_factory=dict)
    sort: SortOrder = field(default_factory=lambda: SortOrder("created_at", descending=True))
    after: Keyset | None = None
    limit: int = DEFAULT_PAGE_SIZE


MAX_INTEGER = 2**31 - 1
MAX_DECIMAL = Decimal(10) ** 14


def parse_value(kind: ValueKind, raw: str, name: str) -> Any:
    """Parse a query-string or cursor value of ``kind``, bounded to what the columns can hold.

    Errors name the parameter, never echo the input.
    """
    try:
        if "\x00" in raw or len(raw) > 1000:
            raise ValueError(name)
        match kind:
            case ValueKind.UUID:
                return uuid.UUID(raw)
            case ValueKind.INTEGER:
                number = int(raw)
                if abs(number) > MAX_INTEGER:
                    raise ValueError(name)
                return number
            case ValueKind.DECIMAL:
                value = Decimal(raw)
                exponent = value.as_tuple().exponent
                if not value.is_finite() or abs(value) >= MAX_DECIMAL or (isinstance(exponent, int) and exponent < -4):
                    raise ValueError(name)
                return value
            case ValueKind.DATE:
                return date.fromisoformat(raw)
            case ValueKind.DATETIME:
                parsed = datetime.fromisoformat(raw)
                if parsed.tzinfo is None:
                    raise ValueError(name)
                parsed.astimezone(UTC)
                return parsed
            case ValueKind.BOOLEAN:
                if raw.lower() in {"true", "1"}:
                    return True
                if raw.lower() in {"false", "0"}:
                    return False
                raise ValueError(raw)
            case _:
                return raw
    except (ValueError, InvalidOperation, OverflowError):
        raise InvalidInput(f"{name} must be a valid {kind.value}", field=name) from None


def parse_sort(entity: EntitySpec, raw: str | None) -> SortOrder:
    """``name`` or ``-name`` for descending; only declared sortable fields."""
    if not raw:
        return SortOrder("created_at", descending=True)
    descending = raw.startswith("-")
    name = raw.lstrip("-")
    if name not in entity.sortable:
        raise InvalidInput(
            f"cannot sort {entity.name} by {name[:40]!r}; sortable: {', '.join(sorted(entity.sortable))}",
            field="sort",
        )
    return SortOrder(name, descending)


def encode_cursor(sort: SortOrder, value: Any, record_id: uuid.UUID) -> str:
    """An opaque cursor pointing after the row (``value``, ``record_id``) in ``sort`` order."""
    text = value.isoformat() if isinstance(value, date | datetime) else str(value)
    payload = msgspec.json.encode([sort.field, sort.descending, text, str(record_id)])
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode()


def decode_cursor(entity: EntitySpec, sort: SortOrder, cursor: str) -> Keyset:
    """Parse a cursor made by ``encode_cursor`` for the same sort; anything else is a 400."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        field_name, descending, text, record_id = msgspec.json.decode(
            base64.urlsafe_b64decode(padded.encode("ascii")), type=tuple[str, bool, str, str]
        )
        spec = entity.field(field_name)
        if spec is None or (field_name, descending) != (sort.field, sort.descending):
            raise ValueError("cursor belongs to another sort order")
        return Keyset(parse_value(spec.kind, text, "cursor"), uuid.UUID(record_id))
    except (ValueError, binascii.Error, UnicodeEncodeError, msgspec.DecodeError, InvalidInput):
        raise MalformedRequest("the cursor is not valid for this list and sort order", field="cursor") from None


def build_list_query(
    entity: EntitySpec,
    *,
    filters: dict[str, str],
    sort: str | None,
    cursor: str | None,
    limit: int | None,
    max_limit: int,
) -> ListQuery:
    """Validate raw query parameters against the entity's declarations."""
    parsed: dict[str, Any] = {}
    for name, raw in filters.items():
        spec = entity.field(name)
        if spec is None or not (spec.filterable or spec.blind_indexed):
            raise InvalidInput(f"cannot filter {entity.name} by {name[:40]!r}", field=name)
        parsed[name] = parse_value(spec.kind, raw, name)
    order = parse_sort(entity, sort)
    if limit is not None and not 1 <= limit <= max_limit:
        raise InvalidInput(f"limit must be between 1 and {max_limit}", field="limit")
    after = decode_cursor(entity, order, cursor) if cursor else None
    return ListQuery(parsed, order, after, limit or DEFAULT_PAGE_SIZE)
