"""The compiled field mask and the policy vocabulary it is compiled from.

A field mask answers, for one role set (and token scopes) on one entity, everything the boundary needs
without asking Casbin again: which fields appear in clear, masked or not at all, which masked fields may be
revealed one at a time, which fields may be written, which entity actions are allowed and how far the record
scope reaches. The services layer caches masks and filters each record through one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Visibility(StrEnum):
    """How a field appears in a response."""

    CLEAR = "clear"
    MASKED = "masked"
    HIDDEN = "hidden"


_SCOPE_RANK: Final[dict[str, int]] = {"none": 0, "own": 1, "team": 2, "unit": 3, "all": 4}


class RecordScope(StrEnum):
    """Which records of an entity a role reaches, ordered ``NONE < OWN < TEAM < UNIT < ALL``.

    ``own``: records the user owns; ``team``: also their direct reports'; ``unit``: the user's org unit and its
    descendants; ``all``: every record. Comparisons use this order, not the alphabetical order of the values
    (a plain ``str`` operand is converted first, so ``RecordScope.OWN < "team"`` is also by rank).
    """

    NONE = "none"
    OWN = "own"
    TEAM = "team"
    UNIT = "unit"
    ALL = "all"

    @property
    def rank(self) -> int:
        """Position in the order ``NONE (0) < OWN < TEAM < UNIT < ALL (4)``."""
        return _SCOPE_RANK[self.value]

    def __lt__(self, other: object) -> bool:
        return self.rank < _rank_of(other)

    def __le__(self, other: object) -> bool:
        return self.rank <= _rank_of(other)

    def __gt__(self, other: object) -> bool:
        return self.rank > _rank_of(other)

    def __ge__(self, other: object) -> bool:
        return self.rank >= _rank_of(other)


def _rank_of(other: object) -> int:
    if isinstance(other, str):
        return RecordScope(other).rank
    raise TypeError(f"cannot compare RecordScope with {type(other).__name__}")


def widest_scope(scopes: Iterable[RecordScope]) -> RecordScope:
    """The widest of ``scopes``; ``NONE`` when there are none."""
    return max(scopes, key=lambda scope: scope.rank, default=RecordScope.NONE)


# Actions on the entity-level object ``<entity>``.
ENTITY_ACTIONS: Final = ("read", "list", "create", "update", "delete", "export")
# Actions on a field object ``<entity>.<field>``: read = in clear, mask = masked, reveal = unmask one value on
# request (audited), write = may be set on create/update.
FIELD_ACTIONS: Final = ("read", "mask", "reveal", "write")
# Administrative objects, checked as ``admin.<object>``.
ADMIN_OBJECTS: Final = ("user", "role", "policy", "client", "key", "audit", "org_unit", "settings")
ADMIN_ACTIONS: Final = ("read", "write")
AUDIT_ACTIONS: Final = ("read", "verify", "export")
ADMIN_PREFIX: Final = "admin."


def admin_actions_for(admin_object: str) -> tuple[str, ...]:
    """The actions an administrative object knows (``audit`` has no ``write``: the trail is append-only)."""
    return AUDIT_ACTIONS if admin_object == "audit" else ADMIN_ACTIONS


# Fields every record carries so that it can be addressed (links, If-Match). Shown in clear whenever the entity
# may be read, whatever the field rules say.
ADDRESSING_FIELDS: Final = frozenset({"id", "version", "created_at", "updated_at"})

# Fields the server sets itself (ids, versions, timestamps, SLA clocks). Never writable by any policy: a client
# that could set ``consent_at`` could forge when consent was given, ``resolved_at`` could fake an SLA.
SERVER_STAMPED_FIELDS: Final = frozenset(
    {
        "id",
        "version",
        "created_at",
        "updated_at",
        "consent_at",
        "closed_at",
        "first_response_due",
        "resolution_due",
        "first_responded_at",
        "resolved_at",
    }
)

# Token scope vocabulary for API clients: ``<collection>:read``, ``<collection>:write`` and ``pii:read``.
COLLECTION_OF_ENTITY: Final[Mapping[str, str]] = {
    "customer": "customers",
    "contact": "contacts",
    "opportunity": "opportunities",
    "service_record": "service_records",
    "activity": "activities",
}
PII_READ_SCOPE: Final = "pii:read"
TOKEN_SCOPES: Final = frozenset(
    {f"{collection}:{access}" for collection in COLLECTION_OF_ENTITY.values() for access in ("read", "write")}
    | {PII_READ_SCOPE}
)

PolicyRule = tuple[str, str, str, str]
"""``(role, object, action, effect)`` with effect ``"allow"`` or ``"deny"``."""

ScopeRule = tuple[str, str, RecordScope]
"""``(role, entity name, record scope)``."""


@dataclass(frozen=True, slots=True)
class FieldMask:
    """What one role set (under optional token scopes) may see and do on one entity.

    Attributes:
        entity: The entity name (``contact``).
        visibility: Every declared field of the entity mapped to its visibility (read-only mapping).
        revealable: Masked fields whose clear value may be revealed one at a time (each reveal is audited).
        writable: Fields that may be set on create/update (empty unless ``create`` or ``update`` is allowed).
        actions: The allowed entity actions, a subset of ``ENTITY_ACTIONS``; empty when ``read`` is not allowed.
        scope: How far the record scope reaches; ``NONE`` means no records.
    """

    entity: str
    visibility: Mapping[str, Visibility]
    revealable: frozenset[str]
    writable: frozenset[str]
    actions: frozenset[str]
    scope: RecordScope

    def can(self, action: str) -> bool:
        """Whether the entity action (``read``, ``list``, ``create``, ``update``, ``delete``, ``export``) is allowed."""
        return action in self.actions

    def readable_in_clear(self, field: str) -> bool:
        """Whether ``field`` is shown in clear (unknown fields are not)."""
        return self.visibility.get(field) is Visibility.CLEAR

    def visible(self, field: str) -> bool:
        """Whether ``field`` appears in responses at all (clear or masked)."""
        return self.visibility.get(field, Visibility.HIDDEN) is not Visibility.HIDDEN

    def fields_with(self, visibility: Visibility) -> frozenset[str]:
        """The fields shown with ``visibility``."""
        return frozenset(name for name, shown in self.visibility.items() if shown is visibility)

