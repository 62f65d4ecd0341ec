"""The access review: who sees and changes what, as rows, as Markdown, and checked for separation of duties.

``python -m server.security.policy.matrix`` prints the review of the seeded defaults (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import casbin  # type: ignore[import-untyped]

from server.domain.activities.fields import ACTIVITY
from server.domain.contacts.fields import CONTACT
from server.domain.customers.fields import CUSTOMER
from server.domain.fields import Classification, EntitySpec
from server.domain.opportunities.fields import OPPORTUNITY
from server.domain.service_records.fields import SERVICE_RECORD
from server.security.policy.compiler import admin_permissions, build_enforcer, compile_field_mask
from server.security.policy.defaults import DEFAULT_POLICY, DEFAULT_ROLES, DEFAULT_SCOPES
from server.security.policy.field_mask import (
    ADMIN_OBJECTS,
    ENTITY_ACTIONS,
    FieldMask,
    RecordScope,
    ScopeRule,
    Visibility,
    admin_actions_for,
)

_PROTECTED: Final = frozenset({Classification.PII, Classification.SENSITIVE})
# The entities the seeded policy covers, in the order the review lists them.
DEFAULT_ENTITIES: Final[tuple[EntitySpec, ...]] = (CUSTOMER, CONTACT, OPPORTUNITY, SERVICE_RECORD, ACTIVITY)


@dataclass(frozen=True, slots=True)
class AccessReviewRow:
    """One line of the access review.

    ``kind`` is ``"entity"`` (``item`` is empty; ``actions`` and ``scope`` are set), ``"field"`` (``item`` is the
    field; ``visibility``, ``revealable``, ``writable`` and ``classification`` are set) or ``"admin"``
    (``entity`` is ``"admin"``, ``item`` the administrative object, ``actions`` its allowed actions).
    """

    subject: str
    roles: tuple[str, ...]
    kind: str
    entity: str
    item: str = ""
    actions: tuple[str, ...] = ()
    scope: RecordScope | None = None
    visibility: Visibility | None = None
    revealable: bool = False
    writable: bool = False
    classification: Classification | None = None


def _role_sets(roles: Iterable[str | Sequence[str]]) -> list[tuple[str, ...]]:
    return [(item,) if isinstance(item, str) else tuple(item) for item in roles]


def _subject(role_set: tuple[str, ...]) -> str:
    return "+".join(role_set)


def access_review(
    enforcer: casbin.Enforcer,
    entities: Iterable[EntitySpec],
    scope_rules: Iterable[ScopeRule],
    roles: Iterable[str | Sequence[str]],
) -> list[AccessReviewRow]:
    """Review what each role (or role set, given as a sequence of roles) may do.

    Per subject: for each entity one ``entity`` row (actions, scope) and one ``field`` row per declared field
    (visibility, revealable, writable); then one ``admin`` row per administrative object.
    """
    entity_list = list(entities)
    scope_list = list(scope_rules)
    rows: list[AccessReviewRow] = []
    for role_set in _role_sets(roles):
        subject = _subject(role_set)
        for entity in entity_list:
            mask = compile_field_mask(enforcer, role_set, entity, scope_list)
            rows.append(AccessReviewRow(subject, role_set, "entity", entity.name,
                                        actions=tuple(a for a in ENTITY_ACTIONS if mask.can(a)), scope=mask.scope))
            rows.extend(
                AccessReviewRow(subject, role_set, "field", entity.name, spec.name,
                                visibility=mask.visibility[spec.name], revealable=spec.name in mask.revealable,
                                writable=spec.name in mask.writable, classification=spec.classification)
                for spec in entity.fields
            )
        permissions = admin_permissions(enforcer, role_set)
        rows.extend(
            AccessReviewRow(subject, role_set, "admin", "admin", admin_object,
                            actions=tuple(a for a in admin_actions_for(admin_object)
                                          if f"{admin_object}:{a}" in permissions))
            for admin_object in ADMIN_OBJECTS
        )
    return rows


# -- Markdown -------------------------------------------------------------------------------------------------

_NONE: Final = "—"


def _field_cell(row: AccessReviewRow) -> str:
    shown = {Visibility.CLEAR: "clear", Visibility.MASKED: "masked", Visibility.HIDDEN: _NONE}[
        row.visibility or Visibility.HIDDEN
    ]
    if row.revealable:
        shown += " (reveal)"
    return f"{shown} · write" if row.writable else shown


def _table(header: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(cells) + " |" for cells in body)
    return lines


def render_markdown(rows: Sequence[AccessReviewRow]) -> str:
    """The review as Markdown: entity actions and scopes, one field table per entity, administrative rights.

    Field cells read ``clear``, ``masked``, ``masked (reveal)`` (revealable one value at a time, audited) or
    ``—`` (hidden), followed by ``· write`` when the field may be set. Subjects without any access to an
    entity are listed under its table instead of filling a column with dashes.
    """
    subjects = list(dict.fromkeys(row.subject for row in rows))
    entities = list(dict.fromkeys(row.entity for row in rows if row.kind == "entity"))
    entity_rows = {(row.subject, row.entity): row for row in rows if row.kind == "entity"}
    field_rows = {(row.subject, row.entity, row.item): row for row in rows if row.kind == "field"}
    admin_rows = {(row.subject, row.item): row for row in rows if row.kind == "admin"}

    out = ["## Entity actions and record scopes", ""]
    out += _table(
        ["Subject", *entities],
        (
            [f"`{subject}`"] + [
                f"{' '.join(row.actions)} / {row.scope}" if row.actions else _NONE
                for row in (entity_rows[(subject, entity)] for entity in entities)
            ]
            for subject in subjects
        ),
    )
    for entity in entities:
        with_access = [s for s in subjects if entity_rows[(s, entity)].actions]
        without = [s for s in subjects if s not in with_access]
        field_names = list(dict.fromkeys(key[2] for key in field_rows if key[1] == entity))
        out += ["", f"## `{entity}` fields", ""]
        if with_access:
            out += _table(
                ["Field", "Class", *(f"`{s}`" for s in with_access)],
                (
                    [f"`{name}`", str(field_rows[(with_access[0], entity, name)].classification)]
                    + [_field_cell(field_rows[(s, entity, name)]) for s in with_access]
                    for name in field_names
                ),
            )
        if without:
            out += ["", "No access: " + ", ".join(f"`{s}`" for s in without) + "."]
    out += ["", "## Administrative rights", ""]
    admin_objects = list(dict.fromkeys(key[1] for key in admin_rows))
    out += _table(
        ["Subject", *admin_objects],
        (
            [f"`{subject}`"] + [" ".join(admin_rows[(subject, o)].actions) or _NONE for o in admin_objects]
            for subject in subjects
        ),
    )
    return "\n".join(out) + "\n"


# -- Separation of duties -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Holdings:
    """What one subject holds, summarised for the separation-of-duties rules."""

    admin: frozenset[str]
    masks: tuple[FieldMask, ...]
    classification: dict[tuple[str, str], Classification]

    def personal_data(self) -> list[str]:
        """PII/sensitive fields readable in clear or revealable."""
        return sorted(
            f"{mask.entity}.{name}"
            for mask in self.masks
            for name, shown in mask.visibility.items()
            if self.classification[(mask.entity, name)] in _PROTECTED
            and (shown is Visibility.CLEAR or name in mask.revealable)
        )

    def crm_access(self) -> list[str]:
        """Entities the subject may read at all."""
        return sorted(mask.entity for mask in self.masks if mask.can("read"))

    def writes(self) -> list[str]:
        """Every write the subject holds: administrative and on CRM records."""
        admin_writes = [p for p in self.admin if p.endswith(":write")]
        entity_writes = [f"{m.entity}:{a}" for m in self.masks for a in ("create", "update", "delete") if m.can(a)]
        return sorted(admin_writes + entity_writes)

    def audit(self) -> list[str]:
        """Audit trail permissions."""
        return sorted(p for p in self.admin if p.startswith("audit:"))

    def any_admin_write(self, *objects: str) -> list[str]:
        """Which of the ``<object>:write`` permissions the subject holds."""
        return sorted(f"{o}:write" for o in objects if f"{o}:write" in self.admin)


_Evidence = Callable[[_Holdings], list[str]]
_Conflict = Callable[[_Holdings], str | None]


def _both(left: _Evidence, right: _Evidence) -> _Conflict:
    """A conflict when the subject holds something from ``left`` and something from ``right``."""

    def conflict(holdings: _Holdings) -> str | None:
        first, second = left(holdings), right(holdings)
        if first and second:
            return f"{', '.join(first[:4])} together with {', '.join(second[:4])}" + (
                " ..." if len(first) > 4 or len(second) > 4 else ""
            )
        return None

    return conflict


# Each rule: why it exists, and the two holdings that must never meet in one subject.
SEPARATION_OF_DUTIES: Final[tuple[tuple[str, _Conflict], ...]] = (
    # Whoever changes the policy could hide what they did; the trail must be read by someone else.
    ("policy writers must not hold the audit trail",
     _both(lambda h: h.any_admin_write("policy"), _Holdings.audit)),
    # A policy writer with personal data can grant and use access without a second pair of eyes.
    ("policy writers must not see personal data in clear",
     _both(lambda h: h.any_admin_write("policy"), _Holdings.personal_data)),
    # Creating a user and deciding what users may do are separate, or one person can mint a superuser.
    ("user administration and policy administration are separate",
     _both(lambda h: h.any_admin_write("user"), lambda h: h.any_admin_write("policy"))),
    # Security administrators (roles, policies, clients, keys) hold no CRM data at all.
    ("security administrators hold no CRM data",
     _both(lambda h: h.any_admin_write("role", "policy", "client", "key"), _Holdings.crm_access)),
    # System administrators see no personal data.
    ("system administrators see no personal data",
     _both(lambda h: h.any_admin_write("user", "org_unit", "settings"), _Holdings.personal_data)),
    # Auditors only read: whoever audits must not change what is audited.
    ("auditors hold no write access", _both(_Holdings.audit, _Holdings.writes)),
)


def check_separation_of_duties(
    enforcer: casbin.Enforcer,
    entities: Iterable[EntitySpec],
    roles: Iterable[str | Sequence[str]],
) -> list[str]:
    """Find separation-of-duties violations of each role, or of each role set given as a sequence of roles.

    A role set is evaluated as one subject (as a user holding those roles would be), so the check also serves
    before assigning roles to a user: ``check_separation_of_duties(enforcer, entities, [user_roles])``.

    Returns:
        One message per violation, naming the subject, the rule and the conflicting permissions; empty if
        the policy keeps duties separate.
    """
    entity_list = list(entities)
    classification = {(entity.name, spec.name): spec.classification for entity in entity_list
                      for spec in entity.fields}
    violations: list[str] = []
    for role_set in _role_sets(roles):
        holdings = _Holdings(
            admin=admin_permissions(enforcer, role_set),
            masks=tuple(compile_field_mask(enforcer, role_set, entity, ()) for entity in entity_list),
            classification=classification,
        )
        for rule, conflict in SEPARATION_OF_DUTIES:
            evidence = conflict(holdings)
            if evidence is not None:
                violations.append(f"{_subject(role_set)}: {rule} ({evidence})")
    return violations


def _main() -> None:
    """Print the access review of the seeded defaults."""
    rows = access_review(build_enforcer(DEFAULT_POLICY), DEFAULT_ENTITIES, DEFAULT_SCOPES, list(DEFAULT_ROLES))
    print(render_markdown(rows), end="")


if __name__ == "__main__":
    _main()
