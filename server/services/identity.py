"""Sign-in and user administration."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.errors import Conflict, InvalidInput, NotAuthenticated, NotFound
from server.security.identity import PasswordHasher, TokenSigner, User, check_password_policy
from server.security.principal import Principal, PrincipalKind

log = structlog.get_logger("strongroom.identity")

KNOWN_ROLES = ("sysadmin", "secadmin", "auditor", "sales_manager", "sales_rep", "support_agent", "marketing")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """An access token as the token endpoint returns it."""

    access_token: str
    expires_in: int
    scope: str


def generate_password() -> str:
    """A random password that satisfies the policy, for first admins and resets."""
    alphabet = string.ascii_letters + string.digits
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(20))
        if any(c.isdigit() for c in candidate) and any(c.isalpha() for c in candidate):
            return candidate


class IdentityService:
    """Authenticates people and manages user accounts."""

    def __init__(self, session: AsyncSession, hasher: PasswordHasher, signer: TokenSigner | None = None) -> None:
        self.session = session
        self.hasher = hasher
        self.signer = signer

    async def password_grant(self, username: str, password: str) -> IssuedToken:
        """Issue a token for a valid, enabled user; one vague 401 for every failure."""
        if self.signer is None:
            raise RuntimeError("token signer not configured")
        async with self.session.begin():
            user = (await self.session.execute(select(User).where(User.username == username))).scalar_one_or_none()
        valid = self.hasher.verify(user.password_hash if user else None, password)
        if user is None or not valid or user.disabled:
            log.info("login_failed", reason="unknown_user" if user is None else
                     ("disabled" if user.disabled and valid else "bad_password"))
            raise NotAuthenticated("invalid username or password")
        token = self.signer.issue(subject=user.id, kind=PrincipalKind.USER.value, name=user.username,
                                  roles=tuple(user.roles))
        log.info("login", user_id=str(user.id))
        return IssuedToken(token, self.signer.ttl_seconds, "")

    async def principal_for(self, user_id: Any) -> Principal | None:
        """The current principal of an enabled user (roles as stored now), or None."""
        async with self.session.begin():
            user = await self.session.get(User, user_id)
        if user is None or user.disabled:
            return None
        return Principal(id=user.id, kind=PrincipalKind.USER, name=user.username, roles=tuple(user.roles),
                         unit_id=user.org_unit_id)

    async def create_user(self, username: str, *, roles: list[str], password: str, display_name: str | None = None,
                          manager: str | None = None) -> User:
        """Create a user; the password must meet the policy; roles must be known."""
        _check_username(username)
        unknown = [role for role in roles if role not in KNOWN_ROLES]
        if unknown or not roles:
            raise InvalidInput(f"unknown or missing roles {unknown}; known: {', '.join(KNOWN_ROLES)}", field="role")
        check_password_policy(password)
        async with self.session.begin():
            if await self._find(username) is not None:
                raise Conflict(f"user {username!r} already exists")
            manager_id = None
            if manager:
                manager_user = await self._find(manager)
                if manager_user is None:
                    raise NotFound(f"manager {manager!r} not found")
                manager_id = manager_user.id
            user = User(username=username, display_name=display_name or username, roles=list(dict.fromkeys(roles)),
                        password_hash=self.hasher.hash(password), manager_id=manager_id)
            self.session.add(user)
        return user

    async def set_disabled(self, username: str, disabled: bool) -> None:
        """Disable or re-enable a user."""
        async with self.session.begin():
            user = await self._require(username)
            user.disabled = disabled

    async def reset_password(self, username: str, password: str) -> None:
        """Set a new password (policy applies)."""
        check_password_policy(password)
        async with self.session.begin():
            user = await self._require(username)
            user.password_hash = self.hasher.hash(password)

    async def any_user_with_role(self, role: str) -> bool:
        """Whether some user holds ``role`` (``init`` creates the first admin only once)."""
        async with self.session.begin():
            users = (await self.session.execute(select(User.roles))).scalars().all()
        return any(role in roles for roles in users)

    async def _find(self, username: str) -> User | None:
        return (await self.session.execute(select(User).where(User.username == username))).scalar_one_or_none()

    async def _require(self, username: str) -> User:
        user = await self._find(username)
        if user is None:
            raise NotFound(f"user {username!r} not found")
        return user


def _check_username(username: str) -> None:
    allowed = set(string.ascii_letters + string.digits + "._-@")
    if not 1 <= len(username) <= 100 or not set(username) <= allowed:
        raise InvalidInput("username must be 1-100 characters of letters, digits, '.', '_', '-' or '@'",
                           field="username")
