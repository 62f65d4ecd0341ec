"""Schema building blocks shared by the per-area schemas."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
LongText = Annotated[str, msgspec.Meta(max_length=20_000)]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
Probability = Annotated[int, msgspec.Meta(ge=0, le=100)]
Satisfaction = Annotated[int, msgspec.Meta(ge=1, le=5)]
Version = Annotated[int, msgspec.Meta(ge=1)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
RecordId = uuid.UUID
UNSET = msgspec.UNSET
Unset = msgspec.UnsetType


class Input(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Request bodies reject unknown fields instead of ignoring them, and text or times no database can store."""

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            check_storable(getattr(self, name), name)


def check_storable(value: Any, name: str) -> None:
    """NUL characters (PostgreSQL refuses them) and times outside years 1-9999 in UTC are invalid input."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{name} must not contain NUL characters")
    elif isinstance(value, datetime):
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{name} is out of range") from None
    elif isinstance(value, list):
        for item in value:
            check_storable(item, name)


@functools.cache
def _struct_fields(struct: type[msgspec.Struct]) -> tuple[msgspec.structs.FieldInfo, ...]:
    # msgspec resolves the class's annotations on every call (forward references included): once per class.
    return msgspec.structs.fields(struct)


def given_values(body: msgspec.Struct, *, exclude: frozenset[str] = frozenset({"version"})) -> dict[str, Any]:
    """The fields the client set: UNSET and values equal to the schema's default are left out.

    Field-level write checks look only at these, so an omitted optional field is not "written".
    """
    values: dict[str, Any] = {}
    for info in _struct_fields(type(body)):
        value = getattr(body, info.name)
        if value is msgspec.UNSET or info.name in exclude:
            continue
        if info.default is not msgspec.NODEFAULT and value == info.default:
            continue
        if info.default_factory is not msgspec.NODEFAULT and value == info.default_factory():
            continue
        values[info.name] = value
    return values


class Page(msgspec.Struct):
    """A page of a list."""

    items: list[dict[str, Any]]
    next_cursor: str | None
