"""The caller of a service: a user, an API client, or the system itself (CLI jobs, demo loader)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum


class PrincipalKind(StrEnum):
    USER = "user"
    CLIENT = "client"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting, with which roles, from which org unit, under which token scopes."""

    id: uuid.UUID
    kind: PrincipalKind
    name: str
    roles: tuple[str, ...]
    unit_id: uuid.UUID | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def user_id(self) -> uuid.UUID | None:
        """The user id when a person is acting (records they create are theirs by default)."""
        return self.id if self.kind in {PrincipalKind.USER, PrincipalKind.SYSTEM} else None


SYSTEM_PRINCIPAL_ID = uuid.UUID(int=0)


def system_principal(name: str = "system") -> Principal:
    """The principal for jobs the operator runs from the command line."""
    return Principal(id=SYSTEM_PRINCIPAL_ID, kind=PrincipalKind.SYSTEM, name=name, roles=("system",))
