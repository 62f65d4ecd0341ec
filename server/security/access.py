"""Per-process access control: compiled field masks, principals and revocations, cached and kept current.

Casbin is the source of truth, but calling ``enforce`` per field per row would cost several times the
request itself (DESIGN.md). So the rules are loaded once, compiled into one FieldMask per (role set, entity,
token scopes) on first use, and every cache here is dropped when ``security_state.version`` moves. The
version is read at most once per ``poll_seconds`` per process, which bounds how stale a process can be.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.domain.base import utc_now
from server.domain.fields import EntitySpec
from server.errors import NotAuthenticated
from server.security.identity.models import (
    ApiClient,
    OrgUnit,
    PolicyRule,
    RevokedToken,
    SecurityState,
    User,
)
from server.security.identity.tokens import TokenClaims
from server.security.policy import (
    ENTITY_ACTIONS,
    SERVER_STAMPED_FIELDS,
    FieldMask,
    RecordScope,
    ScopeRule,
    Visibility,
    admin_permissions,
    build_enforcer,
    compile_field_mask,
)
from server.security.principal import Principal, PrincipalKind

SCOPE_RULE_TYPE = "s"  # scope rules share the casbin_rule table under their own ptype


@dataclass(frozen=True, slots=True)
class SubjectState:
    """What the database says now about a token's subject."""

    kind: PrincipalKind
    name: str
    roles: tuple[str, ...]
    unit_id: uuid.UUID | None
    allowed_scopes: frozenset[str] | None
    tokens_valid_after: datetime | None
    disabled: bool


async def bump_security_version(session: AsyncSession) -> None:
    """Record, in the caller's transaction, that users, roles, policies, clients or revocations changed."""
    await session.execute(update(SecurityState).where(SecurityState.id == 1)
                          .values(version=SecurityState.version + 1))


class AccessControl:
    """The process-wide cache of everything needed to authorise a request without extra queries."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession], *, poll_seconds: float = 0.25) -> None:
        self._session_factory = session_factory
        self._poll_seconds = poll_seconds
        self._checked_at = 0.0
        self._version: int | None = None
        self._lock = asyncio.Lock()
        self._enforcer: Any = None
        self._scope_rules: tuple[ScopeRule, ...] = ()
        self._masks: dict[tuple[tuple[str, ...], str, frozenset[str] | None], FieldMask] = {}
        self._admin: dict[tuple[str, ...], frozenset[str]] = {}
        self._subjects: dict[uuid.UUID, SubjectState | None] = {}
        self._revoked: frozenset[str] = frozenset()
        self._units: dict[uuid.UUID, uuid.UUID | None] = {}
        self._teams: dict[uuid.UUID, frozenset[uuid.UUID]] = {}
        self._unit_members: dict[frozenset[uuid.UUID], frozenset[uuid.UUID]] = {}

    def invalidate(self) -> None:
        """Make the next request re-read the version: this process just changed security state itself."""
        self._checked_at = 0.0

    @property
    def version(self) -> int | None:
        """The security-state version the caches reflect."""
        return self._version

    async def refresh_if_stale(self, *, force: bool = False) -> None:
        """Reload rules and drop caches if another process (or this one) changed security state."""
        now = time.monotonic()
        if not force and now - self._checked_at < self._poll_seconds:
            return
        async with self._lock:
            if not force and time.monotonic() - self._checked_at < self._poll_seconds:
                return
            async with self._session_factory() as session, session.begin():
                version = (await session.execute(select(SecurityState.version).where(SecurityState.id == 1))
                           ).scalar_one()
                if version != self._version or force:
                    await self._reload(session)
                    self._version = version
            self._checked_at = time.monotonic()

    async def _reload(self, session: AsyncSession) -> None:
        rows = (await session.execute(select(PolicyRule.ptype, PolicyRule.v0, PolicyRule.v1, PolicyRule.v2,
                                             PolicyRule.v3))).all()
        rules = [(v0 or "", v1 or "", v2 or "", v3 or "allow") for ptype, v0, v1, v2, v3 in rows if ptype == "p"]
        links = [(v0 or "", v1 or "") for ptype, v0, v1, _v2, _v3 in rows if ptype == "g"]
        self._scope_rules = tuple((v0 or "", v1 or "", RecordScope(v2 or "none")) for ptype, v0, v1, v2, _v3 in rows
                                  if ptype == SCOPE_RULE_TYPE)
        self._enforcer = build_enforcer(rules, links)
        now = utc_now()
        revoked = (await session.execute(select(RevokedToken.token_id).where(RevokedToken.expires_at > now))).scalars()
        self._revoked = frozenset(revoked)
        self._units = {row.id: row.parent_id for row in (await session.execute(
            select(OrgUnit.id, OrgUnit.parent_id))).all()}
        self._masks.clear()
        self._admin.clear()
        self._subjects.clear()
        self._teams.clear()
        self._unit_members.clear()

    # -- principals ------------------------------------------------------------------------------------------

    async def principal_for(self, claims: TokenClaims) -> Principal:
        """The principal a verified token stands for, as the database says now.

        Raises:
            NotAuthenticated: the token was revoked, its subject is disabled or gone, or it predates the
                subject's last revocation (password reset, disable).
        """
        await self.refresh_if_stale()
        if claims.token_id in self._revoked:
            raise NotAuthenticated("the access token has been revoked", reason="revoked")
        state = self._subjects.get(claims.subject, ...)
        if state is ...:
            state = await self._load_subject(claims.subject, claims.kind)
            self._subjects[claims.subject] = state
        if state is None or state.disabled or state.kind.value != claims.kind:
            raise NotAuthenticated("the access token is not valid", reason="subject")
        if state.tokens_valid_after is not None and claims.issued_at < state.tokens_valid_after.timestamp():
            raise NotAuthenticated("the access token has been revoked", reason="revoked")
        scopes = claims.scopes if state.kind is PrincipalKind.CLIENT else frozenset()
        return Principal(id=claims.subject, kind=state.kind, name=state.name, roles=state.roles,
                         unit_id=state.unit_id, scopes=scopes)

    async def _load_subject(self, subject: uuid.UUID, kind: str) -> SubjectState | None:
        async with self._session_factory() as session, session.begin():
            if kind == PrincipalKind.CLIENT.value:
                client = await session.get(ApiClient, subject)
                if client is None:
                    return None
                return SubjectState(PrincipalKind.CLIENT, client.client_id, tuple(client.roles), None,
                                    frozenset(client.allowed_scopes), client.tokens_valid_after, client.disabled)
            user = await session.get(User, subject)
            if user is None:
                return None
            return SubjectState(PrincipalKind.USER, user.username, tuple(user.roles), user.org_unit_id, None,
                                user.tokens_valid_after, user.disabled)

    # -- policy ----------------------------------------------------------------------------------------------

    def field_mask(self, principal: Principal, entity: EntitySpec) -> FieldMask:
        """The compiled mask of ``principal``'s roles (narrowed by a client's token scopes) for ``entity``.

        The system principal is the operator's command line on the server itself (demo data, erasure by
        ``strongroom erase``): it already holds the keys and the database, so policy cannot meaningfully limit
        it; it gets every field and action, and its acts are audited like anyone's.
        """
        if principal.kind is PrincipalKind.SYSTEM:
            return FieldMask(entity=entity.name, visibility=dict.fromkeys(entity.field_names, Visibility.CLEAR),
                             revealable=frozenset(), actions=frozenset(ENTITY_ACTIONS), scope=RecordScope.ALL,
                             writable=frozenset(entity.field_names) - SERVER_STAMPED_FIELDS)
        token_scopes = principal.scopes if principal.kind is PrincipalKind.CLIENT else None
        key = (tuple(sorted(principal.roles)), entity.name, token_scopes)
        mask = self._masks.get(key)
        if mask is None:
            mask = compile_field_mask(self._enforcer, key[0], entity, self._scope_rules, token_scopes)
            self._masks[key] = mask
        return mask

    def admin_permissions(self, principal: Principal) -> frozenset[str]:
        """Administrative permissions such as ``policy:write`` or ``audit:read`` of the principal's roles."""
        key = tuple(sorted(principal.roles))
        permissions = self._admin.get(key)
        if permissions is None:
            permissions = admin_permissions(self._enforcer, key)
            self._admin[key] = permissions
        return permissions

    @property
    def enforcer(self) -> Any:
        """The loaded Casbin enforcer (for access reviews; never on the per-row path)."""
        return self._enforcer

    @property
    def scope_rules(self) -> tuple[ScopeRule, ...]:
        """The loaded record-scope rules."""
        return self._scope_rules

    # -- record scopes ---------------------------------------------------------------------------------------

    async def team_of(self, user_id: uuid.UUID) -> frozenset[uuid.UUID]:
        """The user and everyone who reports to them, directly or further down."""
        team = self._teams.get(user_id)
        if team is None:
            async with self._session_factory() as session, session.begin():
                reports = (await session.execute(select(User.id, User.manager_id))).all()
            below: dict[uuid.UUID, list[uuid.UUID]] = {}
            for member, manager in reports:
                if manager is not None:
                    below.setdefault(manager, []).append(member)
            found, frontier = {user_id}, [user_id]
            while frontier:
                for member in below.get(frontier.pop(), []):
                    if member not in found:
                        found.add(member)
                        frontier.append(member)
            team = frozenset(found)
            self._teams[user_id] = team
        return team

    def unit_subtree(self, unit_id: uuid.UUID | None) -> frozenset[uuid.UUID]:
        """A unit and all units below it."""
        if unit_id is None:
            return frozenset()
        children: dict[uuid.UUID | None, list[uuid.UUID]] = {}
        for child, parent in self._units.items():
            children.setdefault(parent, []).append(child)
        found, frontier = {unit_id}, [unit_id]
        while frontier:
            for child in children.get(frontier.pop(), []):
                if child not in found:
                    found.add(child)
                    frontier.append(child)
        return frozenset(found)


def scope_rules_to_rows(rules: Iterable[ScopeRule]) -> list[dict[str, str]]:
    """Scope rules as ``casbin_rule`` rows."""
    return [{"ptype": SCOPE_RULE_TYPE, "v0": role, "v1": entity, "v2": scope.value} for role, entity, scope in rules]


def policy_rules_to_rows(rules: Sequence[tuple[str, str, str, str]]) -> list[dict[str, str]]:
    """Policy rules as ``casbin_rule`` rows."""
    return [{"ptype": "p", "v0": sub, "v1": obj, "v2": act, "v3": eft} for sub, obj, act, eft in rules]
