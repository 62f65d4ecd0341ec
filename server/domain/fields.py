"""Field declarations: what each field of an entity is, how sensitive, how it is masked, how it may be queried.

An entity gets field security, encryption and audit by declaring its fields here, not by new plumbing: the
security, crypto and audit layers read these declarations.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Classification(StrEnum):
    """How sensitive a field is. ``pii`` and ``sensitive`` fields are candidates for encryption and masking."""

    PUBLIC = "public"
    INTERNAL = "internal"
    PII = "pii"
    SENSITIVE = "sensitive"


class MaskFormat(StrEnum):
    """How a masked value is rendered."""

    PHONE = "phone"  # 138****1234
    EMAIL = "email"  # z***@example.com
    LAST_FOUR = "last_four"  # ************1234
    PERSON_NAME = "person_name"  # surname + *
    REDACT = "redact"  # fully redacted free text
    NONE = "none"  # not maskable: clear or hidden only


class ValueKind(StrEnum):
    """The Python type of a field's value, used to parse cursor and filter values."""

    TEXT = "text"
    INTEGER = "integer"
    DECIMAL = "decimal"
    DATE = "date"
    DATETIME = "datetime"
    UUID = "uuid"
    BOOLEAN = "boolean"
    TEXT_LIST = "text_list"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of an entity as the API shows it."""

    name: str
    kind: ValueKind = ValueKind.TEXT
    classification: Classification = Classification.INTERNAL
    mask: MaskFormat = MaskFormat.NONE
    encrypted: bool = False
    filterable: bool = False
    sortable: bool = False
    blind_indexed: bool = False


@dataclass(frozen=True, slots=True)
class EntitySpec:
    """An entity's name (used in policies as ``<name>.<field>``) and its declared fields."""

    name: str
    fields: tuple[FieldSpec, ...]

    def field(self, name: str) -> FieldSpec | None:
        """The declaration of ``name``, or None if the entity has no such field."""
        return next((spec for spec in self.fields if spec.name == name), None)

    @property
    def field_names(self) -> tuple[str, ...]:
        """All declared field names, in declaration order."""
        return tuple(spec.name for spec in self.fields)

    @property
    def sortable(self) -> frozenset[str]:
        """Fields a list may be sorted by (all non-null columns)."""
        return frozenset(spec.name for spec in self.fields if spec.sortable)

    @property
    def filterable(self) -> frozenset[str]:
        """Fields a list may be filtered on by exact match."""
        return frozenset(spec.name for spec in self.fields if spec.filterable)


def record_fields(*specific: FieldSpec) -> tuple[FieldSpec, ...]:
    """The common record fields (id, version, timestamps) followed by the entity's own."""
    return (
        FieldSpec("id", ValueKind.UUID, Classification.PUBLIC, filterable=False),
        *specific,
        FieldSpec("version", ValueKind.INTEGER, Classification.PUBLIC),
        FieldSpec("created_at", ValueKind.DATETIME, Classification.PUBLIC, sortable=True),
        FieldSpec("updated_at", ValueKind.DATETIME, Classification.PUBLIC, sortable=True),
    )
