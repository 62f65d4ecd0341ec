"""Policy administration: seeding the default roles, changing rules and scopes, the access review.

Every change is checked for separation of duties against the whole resulting policy before it is stored,
so no sequence of individually harmless changes can give one role both policy control and audit access,
or policy control and personal data in clear.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import trail
from server.audit.tags import AuditAction, AuditOutcome
from server.audit.trail import RequestInfo
from server.db import write_transaction
from server.domain.activities import ACTIVITY
from server.domain.contacts import CONTACT
from server.domain.customers import CUSTOMER
from server.domain.fields import EntitySpec
from server.domain.opportunities import OPPORTUNITY
from server.domain.service_records import SERVICE_RECORD
from server.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.security.access import SCOPE_RULE_TYPE, AccessControl, bump_security_version
from server.security.identity import PolicyRule, RoleDefinition
from server.security.policy import (
    DEFAULT_POLICY,
    DEFAULT_ROLES,
    DEFAULT_SCOPES,
    RecordScope,
    access_review,
    build_enforcer,
    check_separation_of_duties,
    render_markdown,
    validate_rule,
)
from server.security.principal import Principal, PrincipalKind
from server.services.records import actor_of

ENTITIES: tuple[EntitySpec, ...] = (CUSTOMER, CONTACT, OPPORTUNITY, SERVICE_RECORD, ACTIVITY)
FIELD_ACTIONS = frozenset({"read", "mask", "reveal", "write"})
ENTITY_ACTIONS = frozenset({"read", "list", "create", "update", "delete", "export"})
ADMIN_ACTIONS = frozenset({"read", "write", "verify", "export"})


async def authorise_admin(session: AsyncSession, access: AccessControl, principal: Principal, permission: str,
                          request: RequestInfo | None = None) -> None:
    """``require_admin``, and a refusal is recorded in the audit trail (escalation attempts must be visible)."""
    try:
        require_admin(access, principal, permission)
    except Forbidden as error:
        async with write_transaction(session):
            await trail.record(session, action=AuditAction.DENIED, actor=actor_of(principal), entity="admin",
                               entity_id=permission, outcome=AuditOutcome.DENIED, reason=error.detail,
                               request=request)
        raise


def require_admin(access: AccessControl, principal: Principal, permission: str) -> None:
    """Refuse with 403 unless the principal's roles grant ``permission`` (e.g. ``policy:write``).

    The system principal (the operator's command line on the server itself) is allowed; its actions are
    audited like any other.
    """
    if principal.kind is PrincipalKind.SYSTEM:
        return
    if permission not in access.admin_permissions(principal):
        raise Forbidden(f"not allowed: {permission} is required", action=permission)


def _check_object(obj: str, action: str) -> None:
    entity_names = {entity.name for entity in ENTITIES}
    head, _, tail = obj.partition(".")
    if obj == "*" or (head in entity_names and tail in {"", "*"} and action in ENTITY_ACTIONS | FIELD_ACTIONS):
        return
    if head in entity_names and tail:
        entity = next(e for e in ENTITIES if e.name == head)
        if entity.field(tail) is None:
            raise InvalidInput(f"{head} has no field {tail!r}", field="object")
        if action not in FIELD_ACTIONS:
            raise InvalidInput(f"field actions are {', '.join(sorted(FIELD_ACTIONS))}", field="action")
        return
    if head == "admin" and tail and action in ADMIN_ACTIONS:
        return
    raise InvalidInput(f"unknown policy object or action: {obj!r} {action!r}", field="object")


class PolicyAdminService:
    """Changes to roles, rules and scopes, each in one transaction with a security-version bump."""

    def __init__(self, session: AsyncSession, access: AccessControl, principal: Principal,
                 request: RequestInfo | None = None) -> None:
        self.session = session
        self.access = access
        self.principal = principal
        self.request = request or RequestInfo()

    async def _audit(self, reason: str, *, before: dict[str, Any] | None = None,
                     after: dict[str, Any] | None = None) -> None:
        await trail.record(self.session, action=AuditAction.POLICY_CHANGE, actor=actor_of(self.principal),
                           entity="policy", reason=reason, before=before, after=after, request=self.request)

    async def seed_defaults(self) -> bool:
        """Install the default roles, rules and scopes into an empty policy store; False if already there."""
        async with write_transaction(self.session):
            if (await self.session.execute(select(func.count()).select_from(RoleDefinition))).scalar_one():
                return False
            for name, description in DEFAULT_ROLES.items():
                self.session.add(RoleDefinition(name=name, description=description, builtin=True))
            for sub, obj, act, eft in DEFAULT_POLICY:
                self.session.add(PolicyRule(ptype="p", v0=sub, v1=obj, v2=act, v3=eft))
            for role, entity, scope in DEFAULT_SCOPES:
                self.session.add(PolicyRule(ptype=SCOPE_RULE_TYPE, v0=role, v1=entity, v2=scope.value))
            await self._audit("default roles and policies installed",
                              after={"roles": sorted(DEFAULT_ROLES), "rules": len(DEFAULT_POLICY)})
            await bump_security_version(self.session)
        self.access.invalidate()
        return True

    async def list_roles(self) -> list[dict[str, Any]]:
        """Every role with its description."""
        await authorise_admin(self.session, self.access, self.principal, "role:read", self.request)
        async with write_transaction(self.session):
            roles = (await self.session.execute(select(RoleDefinition).order_by(RoleDefinition.name))).scalars()
            return [{"name": r.name, "description": r.description, "builtin": r.builtin} for r in roles]

    async def create_role(self, name: str, description: str) -> dict[str, Any]:
        """A new role without permissions; grant them with rules."""
        await authorise_admin(self.session, self.access, self.principal, "role:write", self.request)
        if not name.replace("_", "").isalnum() or not name.islower() or len(name) > 64:
            raise InvalidInput("role names are lower-case letters, digits and underscores", field="name")
        async with write_transaction(self.session):
            if await self.session.get(RoleDefinition, name) is not None:
                raise Conflict(f"role {name!r} already exists")
            self.session.add(RoleDefinition(name=name, description=description, builtin=False))
            await self._audit("role created", after={"role": name, "description": description})
            await bump_security_version(self.session)
        self.access.invalidate()
        return {"name": name, "description": description, "builtin": False}

    async def list_rules(self) -> list[dict[str, Any]]:
        """Every policy and scope rule."""
        await authorise_admin(self.session, self.access, self.principal, "policy:read", self.request)
        async with write_transaction(self.session):
            rows = (await self.session.execute(select(PolicyRule).order_by(PolicyRule.id))).scalars()
            return [_rule_view(row) for row in rows]

    async def add_rule(self, role: str, obj: str, action: str, effect: str) -> dict[str, Any]:
        """Add one rule, refusing it if the resulting policy breaks separation of duties."""
        await authorise_admin(self.session, self.access, self.principal, "policy:write", self.request)
        if effect not in {"allow", "deny"}:
            raise InvalidInput("effect is allow or deny", field="effect")
        _check_object(obj, action)
        validate_rule((role, obj, action, effect), ENTITIES)
        async with write_transaction(self.session):
            await self._require_role(role)
            rule = PolicyRule(ptype="p", v0=role, v1=obj, v2=action, v3=effect)
            self.session.add(rule)
            await self.session.flush()
            await self._check_duties()
            view = _rule_view(rule)
            await self._audit("rule added", after=view)
            await bump_security_version(self.session)
        self.access.invalidate()
        return view

    async def set_scope(self, role: str, entity: str, scope: str) -> dict[str, Any]:
        """Set a role's record scope for an entity (replacing any earlier one)."""
        await authorise_admin(self.session, self.access, self.principal, "policy:write", self.request)
        if entity not in {e.name for e in ENTITIES}:
            raise InvalidInput(f"unknown entity {entity!r}", field="entity")
        try:
            record_scope = RecordScope(scope)
        except ValueError:
            raise InvalidInput(f"scope is one of {', '.join(s.value for s in RecordScope)}", field="scope") from None
        async with write_transaction(self.session):
            await self._require_role(role)
            await self.session.execute(delete(PolicyRule).where(PolicyRule.ptype == SCOPE_RULE_TYPE,
                                                                PolicyRule.v0 == role, PolicyRule.v1 == entity))
            rule = PolicyRule(ptype=SCOPE_RULE_TYPE, v0=role, v1=entity, v2=record_scope.value)
            self.session.add(rule)
            await self.session.flush()
            await self._audit("scope set", after=_rule_view(rule))
            await bump_security_version(self.session)
            view = _rule_view(rule)
        self.access.invalidate()
        return view

    async def remove_rule(self, rule_id: int) -> None:
        """Remove one rule (removing can also break duties: e.g. a deny that kept PII away)."""
        await authorise_admin(self.session, self.access, self.principal, "policy:write", self.request)
        async with write_transaction(self.session):
            rule = await self.session.get(PolicyRule, rule_id)
            if rule is None:
                raise NotFound(f"policy rule {rule_id} not found")
            removed = _rule_view(rule)
            await self.session.delete(rule)
            await self.session.flush()
            await self._check_duties()
            await self._audit("rule removed", before=removed)
            await bump_security_version(self.session)
        self.access.invalidate()

    async def review(self, *, markdown: bool = False) -> Any:
        """The access review: per role, per entity field, what can be read (clear/masked/hidden) and written."""
        await authorise_admin(self.session, self.access, self.principal, "role:read", self.request)
        await self.access.refresh_if_stale(force=True)
        async with write_transaction(self.session):
            roles = list((await self.session.execute(select(RoleDefinition.name).order_by(
                RoleDefinition.name))).scalars())
        rows = access_review(self.access.enforcer, ENTITIES, self.access.scope_rules, roles)
        return render_markdown(rows) if markdown else rows

    async def _check_duties(self) -> None:
        rows = (await self.session.execute(select(PolicyRule.ptype, PolicyRule.v0, PolicyRule.v1, PolicyRule.v2,
                                                  PolicyRule.v3))).all()
        rules = [(v0 or "", v1 or "", v2 or "", v3 or "allow") for ptype, v0, v1, v2, v3 in rows if ptype == "p"]
        links = [(v0 or "", v1 or "") for ptype, v0, v1, _v2, _v3 in rows if ptype == "g"]
        roles = list((await self.session.execute(select(RoleDefinition.name))).scalars())
        violations = check_separation_of_duties(build_enforcer(rules, links), ENTITIES, roles)
        if violations:
            raise Conflict("the change would break separation of duties: " + "; ".join(violations),
                           violations=violations)

    async def _require_role(self, role: str) -> None:
        if await self.session.get(RoleDefinition, role) is None:
            raise NotFound(f"role {role!r} not found")


def _rule_view(rule: PolicyRule) -> dict[str, Any]:
    if rule.ptype == SCOPE_RULE_TYPE:
        return {"id": rule.id, "type": "scope", "role": rule.v0, "entity": rule.v1, "scope": rule.v2}
    return {"id": rule.id, "type": "policy", "role": rule.v0, "object": rule.v1, "action": rule.v2,
            "effect": rule.v3}
