"""Sign-in (password, refresh, client credentials), revocation, lockout, and user/client/org-unit administration."""

from __future__ import annotations

import hashlib
import secrets
import string
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import trail
from server.audit.tags import ActorType, AuditAction, AuditOutcome
from server.audit.trail import AuditActor, RequestInfo
from server.db import write_transaction
from server.domain.activities import Activity
from server.domain.base import utc_now
from server.domain.customers import Customer
from server.domain.fields import Classification
from server.domain.opportunities import Opportunity
from server.domain.service_records import ServiceRecord
from server.errors import Conflict, InvalidInput, MalformedRequest, NotAuthenticated, NotFound
from server.ids import new_id
from server.security.access import bump_security_version
from server.security.identity import (
    LOGIN_THROTTLE,
    ApiClient,
    LoginThrottle,
    OrgUnit,
    PasswordHasher,
    PolicyRule,
    RefreshToken,
    RevokedToken,
    RoleDefinition,
    TokenSigner,
    User,
    check_password_policy,
)
from server.security.identity.throttle import backoff
from server.security.policy import (
    Visibility,
    admin_permissions,
    build_enforcer,
    check_separation_of_duties,
    compile_field_mask,
)
from server.security.principal import PrincipalKind
from server.services.policy_admin import ENTITIES

log = structlog.get_logger("strongroom.identity")

# Per-account lockout, across every address: deliberately higher than the per-address threshold
# (``security.identity.throttle``) and with a short backoff, so that it holds back a guesser spread over many
# addresses while a stranger failing on purpose can cost the real owner at most a minute's wait, not their account.
ACCOUNT_LOCKOUT_THRESHOLD = 20
ACCOUNT_LOCKOUT_BASE = timedelta(seconds=5)
ACCOUNT_LOCKOUT_MAX = timedelta(minutes=1)
REFRESH_TTL = timedelta(days=14)
# A rotated refresh token's successor has the id uuid5(namespace, predecessor id), so the tokens of one sign-in
# (a "family") can be followed from any member to the newest without a family column.
REFRESH_FAMILY_NAMESPACE = uuid.UUID("f29a4d20-52a0-437b-b138-de7a387ef5c9")
# The subject standing for "a client's creator, holding what the client can reach" in a private enforcer.
CLIENT_CREATOR_SUBJECT = "creator_via_client"
_PERSONAL = frozenset({Classification.PII, Classification.SENSITIVE})
CLIENT_SCOPES = frozenset({f"{collection}:{access}" for collection in (
    "customers", "contacts", "opportunities", "service_records", "activities") for access in ("read", "write")}
    | {"pii:read"})


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """What the token endpoint answers."""

    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None


@dataclass(frozen=True, slots=True)
class NewClient:
    """A created API client; the secret is shown once and only its hash is kept."""

    client_id: str
    client_secret: str
    roles: tuple[str, ...]
    allowed_scopes: tuple[str, ...]


def generate_password() -> str:
    """A random password that satisfies the policy, for first admins and resets."""
    alphabet = string.ascii_letters + string.digits
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(20))
        if any(c.isdigit() for c in candidate) and any(c.isalpha() for c in candidate):
            return candidate


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def lockout_delay(failures: int) -> timedelta | None:
    """How long an account stays locked (from every address) after ``failures`` consecutive failures."""
    return backoff(failures, threshold=ACCOUNT_LOCKOUT_THRESHOLD, base=ACCOUNT_LOCKOUT_BASE, cap=ACCOUNT_LOCKOUT_MAX)


def successor_id(refresh_token_id: uuid.UUID) -> uuid.UUID:
    """The id the refresh token issued in exchange for ``refresh_token_id`` gets (its family link)."""
    return uuid.uuid5(REFRESH_FAMILY_NAMESPACE, str(refresh_token_id))


class IdentityService:
    """Authenticates people and clients and manages accounts. Every change bumps the security version."""

    def __init__(self, session: AsyncSession, hasher: PasswordHasher, signer: TokenSigner | None = None, *,
                 actor: AuditActor | None = None, request: RequestInfo | None = None,
                 throttle: LoginThrottle | None = None) -> None:
        self.session = session
        self.hasher = hasher
        self.signer = signer
        self.actor = actor or AuditActor(type=ActorType.SYSTEM, id=None, name="system")
        self.request = request or RequestInfo()
        self.throttle = throttle or LOGIN_THROTTLE

    async def _audit(self, action: AuditAction, *, entity: str, entity_id: Any = None, actor: AuditActor | None = None,
                     outcome: AuditOutcome = AuditOutcome.OK, **details: Any) -> None:
        await trail.record(self.session, action=action, actor=actor or self.actor, entity=entity,
                           entity_id=entity_id, outcome=outcome, request=self.request, **details)

    def _signer(self) -> TokenSigner:
        if self.signer is None:
            raise RuntimeError("token signer not configured")
        return self.signer

    # -- grants ----------------------------------------------------------------------------------------------

    async def password_grant(self, username: str, password: str) -> IssuedToken:
        """Issue an access and a refresh token for a valid, enabled, unlocked user; one vague 401 otherwise.

        Lockout is two-tier (see ``security.identity.throttle``): failures from one client address lock the
        account for that address only; a higher number of failures from anywhere locks the account briefly for
        everyone. Attempts during a lock are refused without checking the password's verdict and do not count.
        Every failure is recorded in the audit trail with its real reason; the caller learns none of them.
        """
        now = utc_now()
        address = self.request.client_address
        issued: IssuedToken | None = None
        async with write_transaction(self.session):
            user = await self._find(username, for_update=True)
            valid = self.hasher.verify(user.password_hash if user else None, password)
            account = str(user.id) if user else ""
            address_lock = self.throttle.locked_until(account, address, now) if user else None
            account_locked = user is not None and user.locked_until is not None and user.locked_until > now
            if user is None or address_lock or account_locked or not valid or user.disabled:
                address_failures = None
                if user is None:
                    reason = "unknown user"
                elif address_lock:
                    reason = "account locked for this address"
                elif account_locked:
                    reason = "account locked"
                elif not valid:
                    reason = "wrong password"
                    address_failures = self.throttle.failed(account, address, now)
                    user.failed_logins += 1
                    delay = lockout_delay(user.failed_logins)
                    user.locked_until = now + delay if delay else None
                else:
                    reason = "account disabled"
                log.info("login_failed", reason=reason)
                await self._audit(
                    AuditAction.LOGIN_FAILED, entity="user", entity_id=user.id if user else None,
                    actor=AuditActor(type=ActorType.ANONYMOUS, id=str(user.id) if user else None, name=username[:100]),
                    outcome=AuditOutcome.DENIED, reason=reason,
                    after={"failed_logins": user.failed_logins, "locked_until": user.locked_until,
                           "address_failures": address_failures.count if address_failures else None,
                           "address_locked_until": (address_failures.locked_until if address_failures
                                                    else address_lock)} if user else None,
                )
            else:
                user.failed_logins, user.locked_until = 0, None
                self.throttle.succeeded(account, address)
                access = self._signer().issue(subject=user.id, kind=PrincipalKind.USER.value, name=user.username,
                                              roles=tuple(user.roles))
                issued = IssuedToken(access, self._signer().ttl_seconds, "", await self._new_refresh_token(user.id))
                await self._audit(AuditAction.LOGIN, entity="user", entity_id=user.id,
                                  actor=AuditActor(type=ActorType.USER, id=str(user.id), name=user.username,
                                                   roles=tuple(user.roles)))
        if issued is None:
            raise NotAuthenticated("invalid username or password")
        return issued

    async def refresh_grant(self, refresh_token: str) -> IssuedToken:
        """Rotate a refresh token: the old one is spent, a new pair is issued.

        Presenting a spent (or revoked) refresh token again is reuse: either the legitimate client or a thief
        holds a copy, and the server cannot tell which. As the OAuth 2.0 Security BCP (RFC 9700, 4.14.2)
        requires, every later token of the same sign-in is then revoked too, so whoever rotated first loses
        the session as well; the user signs in again. Access tokens already issued expire within their
        (short) lifetime. Refreshes and refusals are audit events.
        """
        now = utc_now()
        issued: IssuedToken | None = None
        async with write_transaction(self.session):
            stored = (await self.session.execute(select(RefreshToken).where(
                RefreshToken.token_hash == _digest(refresh_token)).with_for_update())).scalar_one_or_none()
            user = await self.session.get(User, stored.user_id) if stored is not None else None
            revoked_after = user.tokens_valid_after if user else None
            details: dict[str, Any] = {}
            if stored is None or user is None:
                reason = "unknown refresh token"
            elif stored.revoked_at is not None:
                reason = "refresh token reused after rotation or revocation; its successors are revoked"
                details = {"refresh_token": str(stored.id), "revoked": [str(token_id) for token_id in
                                                                        await self._revoke_family(stored, now)]}
            elif stored.expires_at <= now:
                reason = "refresh token expired"
            elif user.disabled:
                reason = "account disabled"
            elif revoked_after and stored.issued_at < revoked_after:
                reason = "refresh token issued before the user's tokens were revoked"
            else:
                reason = ""
                stored.revoked_at = now
                access = self._signer().issue(subject=user.id, kind=PrincipalKind.USER.value, name=user.username,
                                              roles=tuple(user.roles))
                refresh = await self._new_refresh_token(user.id, replaces=stored.id)
                issued = IssuedToken(access, self._signer().ttl_seconds, "", refresh)
                await self._audit(AuditAction.TOKEN_REFRESH, entity="user", entity_id=user.id,
                                  actor=AuditActor(type=ActorType.USER, id=str(user.id), name=user.username,
                                                   roles=tuple(user.roles)),
                                  after={"refresh_token": str(successor_id(stored.id)), "replaces": str(stored.id)})
            if issued is None:
                log.info("refresh_failed", reason=reason)
                await self._audit(AuditAction.TOKEN_REJECTED, entity="token", entity_id=stored.id if stored else None,
                                  actor=AuditActor(type=ActorType.ANONYMOUS, id=str(user.id) if user else None,
                                                   name=None),
                                  outcome=AuditOutcome.DENIED, reason=reason, after=details or None)
        if issued is None:
            raise NotAuthenticated("the refresh token is not valid", error="invalid_grant")
        return issued

    async def client_credentials_grant(self, client_id: str, client_secret: str, scope: str | None) -> IssuedToken:
        """A token for an API client; the requested scopes must be among the client's allowed scopes."""
        async with write_transaction(self.session):
            client = (await self.session.execute(select(ApiClient).where(ApiClient.client_id == client_id))
                      ).scalar_one_or_none()
        valid = self.hasher.verify(client.secret_hash if client else None, client_secret)
        if client is None or not valid or client.disabled:
            log.info("client_login_failed", reason="unknown" if client is None else "bad_secret_or_disabled")
            async with write_transaction(self.session):
                await self._audit(AuditAction.LOGIN_FAILED, entity="client", entity_id=client.id if client else None,
                                  actor=AuditActor(type=ActorType.ANONYMOUS, id=None, name=client_id[:100]),
                                  outcome=AuditOutcome.DENIED, reason="invalid client credentials")
            raise NotAuthenticated("invalid client credentials", error="invalid_client")
        allowed = frozenset(client.allowed_scopes)
        requested = frozenset(scope.split()) if scope else allowed
        beyond = requested - allowed
        if beyond:
            raise MalformedRequest(f"scopes not granted to this client: {', '.join(sorted(beyond))}",
                                   error="invalid_scope")
        token = self._signer().issue(subject=client.id, kind=PrincipalKind.CLIENT.value, name=client.client_id,
                                     roles=tuple(client.roles), scopes=requested)
        async with write_transaction(self.session):
            await self._audit(AuditAction.LOGIN, entity="client", entity_id=client.id,
                              actor=AuditActor(type=ActorType.CLIENT, id=str(client.id), name=client.client_id,
                                               roles=tuple(client.roles)),
                              after={"scope": " ".join(sorted(requested))})
        return IssuedToken(token, self._signer().ttl_seconds, " ".join(sorted(requested)))

    async def record_rejected_token(self, reason: str, subject: str | None) -> None:
        """A bearer token was refused (forged, expired, revoked, disabled subject): keep it for investigations."""
        async with write_transaction(self.session):
            await self._audit(AuditAction.TOKEN_REJECTED, entity="token", outcome=AuditOutcome.DENIED, reason=reason,
                              actor=AuditActor(type=ActorType.ANONYMOUS, id=subject, name=None))

    async def revoke(self, token: str) -> None:
        """Revoke an access token (by its id) or a refresh token and its successors (RFC 7009).

        Unknown, forged or expired tokens are not an error and leave no audit event (the endpoint needs no
        authentication; recording every string posted to it would let anyone flood the trail).
        """
        now = utc_now()
        async with write_transaction(self.session):
            stored = (await self.session.execute(select(RefreshToken).where(
                RefreshToken.token_hash == _digest(token)).with_for_update())).scalar_one_or_none()
            if stored is not None:
                revoked = [stored.id] if stored.revoked_at is None else []
                stored.revoked_at = stored.revoked_at or now
                revoked += await self._revoke_family(stored, now)
                user = await self.session.get(User, stored.user_id)
                await self._audit(AuditAction.TOKEN_REVOKE, entity="token", entity_id=stored.id,
                                  actor=AuditActor(type=ActorType.USER, id=str(stored.user_id),
                                                   name=user.username if user else None,
                                                   roles=tuple(user.roles) if user else ()),
                                  reason="refresh token revoked", after={"revoked": [str(i) for i in revoked]})
                return
            try:
                claims = self._signer().verify(token)
            except NotAuthenticated:
                return
            if await self.session.get(RevokedToken, claims.token_id) is None:
                expires_at = datetime.fromtimestamp(claims.expires_at, tz=UTC)
                self.session.add(RevokedToken(token_id=claims.token_id, expires_at=expires_at))
                await bump_security_version(self.session)
                kind = ActorType.CLIENT if claims.kind == PrincipalKind.CLIENT.value else ActorType.USER
                await self._audit(AuditAction.TOKEN_REVOKE, entity="token", entity_id=claims.token_id,
                                  actor=AuditActor(type=kind, id=str(claims.subject), name=claims.name[:100] or None,
                                                   roles=claims.roles),
                                  reason="access token revoked", after={"expires_at": expires_at})

    async def _new_refresh_token(self, user_id: uuid.UUID, *, replaces: uuid.UUID | None = None) -> str:
        """A new refresh token; one issued in exchange for ``replaces`` joins its family (see ``successor_id``)."""
        token = secrets.token_urlsafe(32)
        self.session.add(RefreshToken(id=successor_id(replaces) if replaces else new_id(), user_id=user_id,
                                      token_hash=_digest(token), issued_at=utc_now(),
                                      expires_at=utc_now() + REFRESH_TTL))
        return token

    async def _revoke_family(self, token: RefreshToken, now: datetime) -> list[uuid.UUID]:
        """Revoke every token issued after ``token`` in its family; the ids of those that were still live.

        The family is followed by successor ids. The user's tokens are read in one query; the tail is then
        re-read row by row, locking each, so a rotation committed meanwhile by a concurrent request is caught.
        """
        tokens = {row.id: row for row in (await self.session.execute(
            select(RefreshToken).where(RefreshToken.user_id == token.user_id).with_for_update())).scalars()}
        revoked: list[uuid.UUID] = []
        current, seen = token, {token.id}
        while True:
            next_id = successor_id(current.id)
            successor = tokens.get(next_id) or await self.session.get(RefreshToken, next_id, with_for_update=True)
            if successor is None or successor.id in seen:
                return revoked
            seen.add(successor.id)
            if successor.revoked_at is None:
                successor.revoked_at = now
                revoked.append(successor.id)
            current = successor

    # -- users -----------------------------------------------------------------------------------------------

    async def create_user(self, username: str, *, roles: list[str], password: str, display_name: str | None = None,
                          manager: str | None = None, unit: str | None = None) -> User:
        """Create a user; the password must meet the policy; roles must exist and keep duties separate."""
        _check_name(username, "username")
        check_password_policy(password)
        await self._require_separate_duties(roles, entity="user", name=username)
        async with write_transaction(self.session):
            await self._check_roles(roles)
            if await self._find(username) is not None:
                raise Conflict(f"user {username!r} already exists")
            user = User(username=username, display_name=display_name or username, roles=list(dict.fromkeys(roles)),
                        password_hash=self.hasher.hash(password))
            user.manager_id = (await self._require(manager)).id if manager else None
            user.org_unit_id = (await self._require_unit(unit)).id if unit else None
            self.session.add(user)
            await self.session.flush()
            await self._audit(AuditAction.USER_CHANGE, entity="user", entity_id=user.id, reason="created",
                              after={"username": username, "roles": user.roles, "unit": unit, "manager": manager})
            await bump_security_version(self.session)
        return user

    async def update_user(self, username: str, *, roles: list[str] | None = None, unit: str | None = None,
                          manager: str | None = None) -> User:
        """Change a user's roles (which must exist and keep duties separate), org unit or manager."""
        if roles is not None:
            await self._require_separate_duties(roles, entity="user", name=username)
        async with write_transaction(self.session):
            user = await self._require(username)
            before = {"roles": list(user.roles), "org_unit_id": user.org_unit_id, "manager_id": user.manager_id}
            if roles is not None:
                await self._check_roles(roles)
                user.roles = list(dict.fromkeys(roles))
            if unit is not None:
                user.org_unit_id = (await self._require_unit(unit)).id if unit else None
            if manager is not None:
                manager_user = await self._require(manager) if manager else None
                if manager_user is not None and manager_user.id == user.id:
                    raise InvalidInput("a user cannot be their own manager", field="manager")
                user.manager_id = manager_user.id if manager_user else None
            await self._audit(AuditAction.USER_CHANGE, entity="user", entity_id=user.id, reason="updated",
                              before=before, after={"roles": list(user.roles), "org_unit_id": user.org_unit_id,
                                                    "manager_id": user.manager_id})
            await bump_security_version(self.session)
        return user

    async def set_disabled(self, username: str, disabled: bool) -> None:
        """Disable (revoking every token at once) or re-enable a user."""
        async with write_transaction(self.session):
            user = await self._require(username)
            user.disabled = disabled
            if disabled:
                await self._revoke_all(user)
            await self._audit(AuditAction.USER_CHANGE, entity="user", entity_id=user.id,
                              reason="disabled" if disabled else "enabled", after={"disabled": disabled})
            await bump_security_version(self.session)

    async def reset_password(self, username: str, password: str) -> None:
        """Set a new password (policy applies); existing tokens stop working; the lockout is lifted."""
        check_password_policy(password)
        async with write_transaction(self.session):
            user = await self._require(username)
            user.password_hash = self.hasher.hash(password)
            user.failed_logins, user.locked_until = 0, None
            self.throttle.forget(str(user.id))  # this process's address locks; other processes keep theirs
            await self._revoke_all(user)
            await self._audit(AuditAction.USER_CHANGE, entity="user", entity_id=user.id, reason="password reset")
            await bump_security_version(self.session)

    async def handover(self, from_username: str, to_username: str) -> dict[str, int]:
        """Reassign every record owned by one user to another in one transaction; counts per entity."""
        async with write_transaction(self.session):
            source, target = await self._require(from_username), await self._require(to_username)
            if target.disabled:
                raise InvalidInput("records cannot be handed to a disabled user", field="to")
            counts: dict[str, int] = {}
            for noun, model in (("customers", Customer), ("opportunities", Opportunity),
                                ("service_records", ServiceRecord), ("activities", Activity)):
                result = await self.session.execute(update(model).where(model.owner_id == source.id)
                                                    .values(owner_id=target.id, version=model.version + 1))
                counts[noun] = int(result.rowcount or 0)  # type: ignore[attr-defined]
            await self._audit(AuditAction.USER_CHANGE, entity="user", entity_id=source.id, reason="handover",
                              after={"to": str(target.id), "records": counts})
        return counts

    async def any_user_with_role(self, role: str) -> bool:
        """Whether some user holds ``role`` (``init`` creates the first admin only once)."""
        async with write_transaction(self.session):
            users = (await self.session.execute(select(User.roles))).scalars().all()
        return any(role in roles for roles in users)

    async def list_users(self) -> list[dict[str, Any]]:
        """Users without secrets."""
        async with write_transaction(self.session):
            users = (await self.session.execute(select(User).order_by(User.username))).scalars().all()
            units = {unit.id: unit.name for unit in (await self.session.execute(select(OrgUnit))).scalars()}
            names = {user.id: user.username for user in users}
            return [{"id": user.id, "username": user.username, "display_name": user.display_name,
                     "roles": list(user.roles), "unit": units.get(user.org_unit_id) if user.org_unit_id else None,
                     "manager": names.get(user.manager_id) if user.manager_id else None,
                     "disabled": user.disabled,
                     "locked": bool(user.locked_until and user.locked_until > utc_now())} for user in users]

    # -- org units -------------------------------------------------------------------------------------------

    async def create_unit(self, name: str, parent: str | None = None) -> OrgUnit:
        """Add a department under ``parent`` (or at the top)."""
        if not 1 <= len(name) <= 200 or not name.isprintable() or name != name.strip():
            raise InvalidInput("name must be 1-200 printable characters", field="name")
        async with write_transaction(self.session):
            if (await self.session.execute(select(OrgUnit).where(OrgUnit.name == name))).scalar_one_or_none():
                raise Conflict(f"org unit {name!r} already exists")
            unit = OrgUnit(name=name, parent_id=(await self._require_unit(parent)).id if parent else None)
            self.session.add(unit)
            await self.session.flush()
            await self._audit(AuditAction.USER_CHANGE, entity="org_unit", entity_id=unit.id, reason="created",
                              after={"name": name, "parent": parent})
            await bump_security_version(self.session)
        return unit

    async def list_units(self) -> list[dict[str, Any]]:
        """Org units with their parents' names."""
        async with write_transaction(self.session):
            units = (await self.session.execute(select(OrgUnit).order_by(OrgUnit.name))).scalars().all()
        names = {unit.id: unit.name for unit in units}
        return [{"id": unit.id, "name": unit.name, "parent": names.get(unit.parent_id) if unit.parent_id else None}
                for unit in units]

    # -- API clients -----------------------------------------------------------------------------------------

    async def create_client(self, name: str, *, roles: list[str], scopes: list[str]) -> NewClient:
        """Register an API client; its secret is returned once.

        The client's roles are checked for separation of duties like a user's. And since whoever registers a
        client receives its secret and can act as the client, the registering principal is judged as also
        holding the personal data the client could read (see ``_require_separate_duties``).
        """
        _check_name(name, "name")
        unknown = sorted(set(scopes) - CLIENT_SCOPES)
        if unknown or not scopes:
            raise InvalidInput(f"unknown or missing scopes {unknown}; known: {', '.join(sorted(CLIENT_SCOPES))}",
                               field="scope")
        await self._require_separate_duties(roles, entity="client", name=name, client_scopes=frozenset(scopes))
        client_id = f"{name}-{secrets.token_hex(4)}"
        secret = secrets.token_urlsafe(32)
        async with write_transaction(self.session):
            await self._check_roles(roles)
            self.session.add(ApiClient(client_id=client_id, name=name, roles=list(roles),
                                       allowed_scopes=sorted(set(scopes)), secret_hash=self.hasher.hash(secret)))
            await self._audit(AuditAction.CLIENT_CHANGE, entity="client", entity_id=client_id, reason="created",
                              after={"roles": list(roles), "allowed_scopes": sorted(set(scopes))})
            await bump_security_version(self.session)
        return NewClient(client_id, secret, tuple(roles), tuple(sorted(set(scopes))))

    async def set_client_disabled(self, client_id: str, disabled: bool) -> None:
        """Disable (revoking its tokens) or re-enable a client."""
        async with write_transaction(self.session):
            client = (await self.session.execute(select(ApiClient).where(ApiClient.client_id == client_id))
                      ).scalar_one_or_none()
            if client is None:
                raise NotFound(f"client {client_id!r} not found")
            client.disabled = disabled
            client.tokens_valid_after = utc_now() if disabled else client.tokens_valid_after
            await self._audit(AuditAction.CLIENT_CHANGE, entity="client", entity_id=client_id,
                              reason="disabled" if disabled else "enabled")
            await bump_security_version(self.session)

    async def list_clients(self) -> list[dict[str, Any]]:
        """Clients without secrets."""
        async with write_transaction(self.session):
            clients = (await self.session.execute(select(ApiClient).order_by(ApiClient.client_id))).scalars().all()
        return [{"client_id": c.client_id, "name": c.name, "roles": list(c.roles),
                 "allowed_scopes": list(c.allowed_scopes), "disabled": c.disabled} for c in clients]

    # -- helpers ---------------------------------------------------------------------------------------------

    async def _revoke_all(self, user: User) -> None:
        now = utc_now()
        user.tokens_valid_after = now
        await self.session.execute(update(RefreshToken).where(RefreshToken.user_id == user.id,
                                                              RefreshToken.revoked_at.is_(None))
                                   .values(revoked_at=now))

    async def _require_separate_duties(self, roles: list[str], *, entity: str, name: str,
                                       client_scopes: frozenset[str] | None = None) -> None:
        """Refuse (409, and a ``denied`` audit event) a role set that breaks separation of duties.

        The same rules (``security.policy.matrix.SEPARATION_OF_DUTIES``) judge every path that hands out roles:
        the admin API and the operator's command line both come through here. The policy is read from the
        database, not from a process cache, so a rule added a moment ago by another process counts.

        For an API client (``client_scopes`` given) a second subject is judged too: the principal registering
        it, holding its own administrative permissions plus the personal data the client can read in clear or
        reveal under those scopes. That is what a security administrator could otherwise get by registering a
        client with a business role and ``pii:read`` and using its secret. Someone who may write policy can
        widen the client's roles at any time afterwards, so for them the client's reach is what its scopes
        allow under *any* policy, not under today's rules. Non-personal CRM data a client can reach is not
        counted: registering integrations is the security administrator's job, and without ``pii:read`` a
        client sees personal fields masked or not at all. The operator's command line (the system actor)
        holds no roles, so only the client's own roles are judged there.
        """
        async with write_transaction(self.session):
            rows = (await self.session.execute(select(PolicyRule.ptype, PolicyRule.v0, PolicyRule.v1,
                                                      PolicyRule.v2, PolicyRule.v3))).all()
        policy = [(v0 or "", v1 or "", v2 or "", v3 or "allow") for ptype, v0, v1, v2, v3 in rows if ptype == "p"]
        links = [(v0 or "", v1 or "") for ptype, v0, v1, _v2, _v3 in rows if ptype == "g"]
        enforcer = build_enforcer(policy, links)
        violations = check_separation_of_duties(enforcer, ENTITIES, [tuple(dict.fromkeys(roles))])
        creator_roles = self.actor.roles if self.actor.type is ActorType.USER else ()
        if client_scopes is not None and creator_roles:
            creator_admin = admin_permissions(enforcer, creator_roles)
            reach_policy = _unrestricted_policy() if "policy:write" in creator_admin else enforcer
            reach_roles = (CLIENT_CREATOR_SUBJECT,) if "policy:write" in creator_admin else tuple(roles)
            subject_rules = _creator_via_client(creator_admin, reach_policy, reach_roles, client_scopes)
            violations += check_separation_of_duties(build_enforcer(subject_rules), ENTITIES,
                                                     [(CLIENT_CREATOR_SUBJECT,)])
        if not violations:
            return
        detail = ("this combination of roles breaks separation of duties: " if client_scopes is None else
                  "this client would break separation of duties (its roles, or what its creator could read "
                  "through it): ") + "; ".join(violations)
        async with write_transaction(self.session):
            await self._audit(AuditAction.DENIED, entity=entity, entity_id=name[:100], outcome=AuditOutcome.DENIED,
                              reason="separation of duties",
                              after={"roles": list(roles), "scopes": sorted(client_scopes or ()),
                                     "violations": violations})
        raise Conflict(detail, violations=violations)

    async def _check_roles(self, roles: list[str]) -> None:
        known = set((await self.session.execute(select(RoleDefinition.name))).scalars())
        unknown = sorted(set(roles) - known)
        if unknown or not roles:
            raise InvalidInput(f"unknown or missing roles {unknown}; known: {', '.join(sorted(known))}", field="role")

    async def _find(self, username: str, *, for_update: bool = False) -> User | None:
        statement = select(User).where(User.username == username)
        if for_update:
            statement = statement.with_for_update()
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def _require(self, username: str) -> User:
        user = await self._find(username)
        if user is None:
            raise NotFound(f"user {username!r} not found")
        return user

    async def _require_unit(self, name: str) -> OrgUnit:
        unit = (await self.session.execute(select(OrgUnit).where(OrgUnit.name == name))).scalar_one_or_none()
        if unit is None:
            raise NotFound(f"org unit {name!r} not found")
        return unit


def _unrestricted_policy() -> Any:
    """A policy granting ``CLIENT_CREATOR_SUBJECT`` every entity and field: what a policy writer could grant."""
    rules = [(CLIENT_CREATOR_SUBJECT, obj, "read", "allow") for entity in ENTITIES
             for obj in (entity.name, f"{entity.name}.*")]
    return build_enforcer(rules)


def _creator_via_client(creator_admin: frozenset[str], reach_policy: Any, client_roles: tuple[str, ...],
                        client_scopes: frozenset[str]) -> list[tuple[str, str, str, str]]:
    """Policy rules for one subject holding the creator's administrative permissions and the personal data
    ``client_roles`` can read in clear or reveal under ``client_scopes`` in ``reach_policy``."""
    subject = CLIENT_CREATOR_SUBJECT
    rules = [(subject, f"admin.{obj}", action, "allow")
             for obj, _, action in (permission.partition(":") for permission in sorted(creator_admin))]
    for entity in ENTITIES:
        mask = compile_field_mask(reach_policy, client_roles, entity, (), client_scopes)
        personal = [spec.name for spec in entity.fields if spec.classification in _PERSONAL and (
            mask.visibility[spec.name] is Visibility.CLEAR or spec.name in mask.revealable)]
        if personal:
            rules.append((subject, entity.name, "read", "allow"))
        for field_name in personal:
            obj = f"{entity.name}.{field_name}"
            if mask.visibility[field_name] is Visibility.CLEAR:
                rules.append((subject, obj, "read", "allow"))
            else:
                rules += [(subject, obj, "mask", "allow"), (subject, obj, "reveal", "allow")]
    return rules


def _check_name(name: str, field: str) -> None:
    allowed = set(string.ascii_letters + string.digits + "._-@ ")
    if not 1 <= len(name) <= 100 or not set(name) <= allowed or name != name.strip():
        raise InvalidInput(f"{field} must be 1-100 characters of letters, digits, spaces, '.', '_', '-' or '@'",
                           field=field)

