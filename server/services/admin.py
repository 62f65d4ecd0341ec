"""Administration use cases for users, org units and API clients, each authorised by an admin permission."""

from __future__ import annotations

from typing import Any

from server.errors import Forbidden
from server.security.identity import PasswordHasher
from server.security.policy import admin_permissions
from server.security.principal import PrincipalKind
from server.services.identity import IdentityService, NewClient
from server.services.policy_admin import authorise_admin, require_admin
from server.services.records import CallContext

ADMIN_ROLES = frozenset({"sysadmin", "secadmin", "auditor"})


class AdminService:
    """Checks the principal's admin permission, then delegates to the identity service."""

    def __init__(self, context: CallContext, hasher: PasswordHasher) -> None:
        self.context = context
        self.identity = IdentityService(context.session, hasher, actor=context.actor, request=context.request)

    async def _require(self, permission: str) -> None:
        await authorise_admin(self.context.session, self.context.access, self.context.principal, permission,
                              self.context.request)

    def _check_role_assignment(self, roles: list[str], *, target: str | None = None) -> None:
        """Who may hand out which roles.

        Nobody changes their own roles; administrator roles (sysadmin, secadmin, auditor) are granted only by
        a principal holding ``role:write`` (the security administrator), so a system administrator cannot mint
        a security administrator and act through it; and no user may hold a role set that breaks separation
        of duties.
        """
        principal = self.context.principal
        if target is not None and target == principal.name:
            raise Forbidden("nobody may change their own roles", action="role:assign")
        # Judged by what the roles can do, not by their names: a custom role holding policy write is an
        # administrator role too.
        grants_admin = bool(set(roles) & ADMIN_ROLES) or bool(
            admin_permissions(self.context.access.enforcer, tuple(roles)))
        if grants_admin and principal.kind is not PrincipalKind.SYSTEM:
            require_admin(self.context.access, principal, "role:write")
        # The role-combination (separation of duties) check is the identity service's, for API and CLI alike.

    def _changed(self) -> None:
        # This process changed security state itself: it must not wait for its next poll to see it.
        self.context.access.invalidate()

    async def list_users(self) -> list[dict[str, Any]]:
        await self._require("user:read")
        return await self.identity.list_users()

    async def create_user(self, username: str, *, roles: list[str], password: str, display_name: str | None,
                          unit: str | None, manager: str | None) -> dict[str, Any]:
        await self._require("user:write")
        self._check_role_assignment(roles)
        user = await self.identity.create_user(username, roles=roles, password=password, display_name=display_name,
                                               unit=unit, manager=manager)
        self._changed()
        return {"id": user.id, "username": user.username, "roles": list(user.roles)}

    async def update_user(self, username: str, *, roles: list[str] | None, unit: str | None,
                          manager: str | None) -> dict[str, Any]:
        await self._require("user:write")
        if roles is not None:
            self._check_role_assignment(roles, target=username)
        user = await self.identity.update_user(username, roles=roles, unit=unit, manager=manager)
        self._changed()
        return {"id": user.id, "username": user.username, "roles": list(user.roles)}

    async def set_disabled(self, username: str, disabled: bool) -> None:
        await self._require("user:write")
        await self.identity.set_disabled(username, disabled)
        self._changed()

    async def handover(self, from_username: str, to_username: str) -> dict[str, int]:
        await self._require("user:write")
        return await self.identity.handover(from_username, to_username)

    async def list_units(self) -> list[dict[str, Any]]:
        await self._require("org_unit:read")
        return await self.identity.list_units()

    async def create_unit(self, name: str, parent: str | None) -> dict[str, Any]:
        await self._require("org_unit:write")
        unit = await self.identity.create_unit(name, parent)
        self._changed()
        return {"id": unit.id, "name": unit.name, "parent": parent}

    async def list_clients(self) -> list[dict[str, Any]]:
        await self._require("client:read")
        return await self.identity.list_clients()

    async def create_client(self, name: str, *, roles: list[str], scopes: list[str]) -> NewClient:
        await self._require("client:write")
        client = await self.identity.create_client(name, roles=roles, scopes=scopes)
        self._changed()
        return client

    async def set_client_disabled(self, client_id: str, disabled: bool) -> None:
        await self._require("client:write")
        await self.identity.set_client_disabled(client_id, disabled)
        self._changed()
