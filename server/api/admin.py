"""Administration endpoints: users, org units, roles, policies, API clients and the access review."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Response

from server.api.schemas import Input, Name, ShortText
from server.services.admin import AdminService
from server.services.policy_admin import PolicyAdminService
from server.services.records import CallContext

RoleName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class UserCreate(Input):
    username: ShortText
    roles: Annotated[list[RoleName], msgspec.Meta(min_length=1)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    display_name: Name | None = None
    unit: Name | None = None
    manager: ShortText | None = None


class UserUpdate(Input):
    roles: list[RoleName] | None = None
    unit: str | None = None
    manager: str | None = None


class Handover(Input):
    to: ShortText


class UnitCreate(Input):
    name: Name
    parent: Name | None = None


class RoleCreate(Input):
    name: RoleName
    description: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class RuleCreate(Input):
    role: RoleName
    object: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    action: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    effect: str = "allow"


class ScopeSet(Input):
    role: RoleName
    entity: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    scope: Annotated[str, msgspec.Meta(min_length=1, max_length=16)]


class ClientCreate(Input):
    name: ShortText
    roles: Annotated[list[RoleName], msgspec.Meta(min_length=1)]
    scopes: Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(min_length=1)]


def _admin(request: Request[Any, Any, Any], context: CallContext) -> AdminService:
    return AdminService(context, request.app.state.resources.hasher)


def _policy(context: CallContext) -> PolicyAdminService:
    return PolicyAdminService(context.session, context.access, context.principal, context.request)


class AdminController(Controller):
    path = "/api/v1/admin"
    tags = ["administration"]

    @get("/users", summary="List users (user:read)")
    async def list_users(self, request: Request[Any, Any, Any],
                         context: NamedDependency[CallContext]) -> list[dict[str, Any]]:
        return await _admin(request, context).list_users()

    @post("/users", summary="Create a user (user:write)")
    async def create_user(self, request: Request[Any, Any, Any], data: JSONBody[UserCreate],
                          context: NamedDependency[CallContext]) -> dict[str, Any]:
        return await _admin(request, context).create_user(
            data.username, roles=data.roles, password=data.password, display_name=data.display_name,
            unit=data.unit, manager=data.manager)

    @patch("/users/{username:str}", summary="Change a user's roles, unit or manager (user:write)")
    async def update_user(self, request: Request[Any, Any, Any], username: FromPath[str], data: JSONBody[UserUpdate],
                          context: NamedDependency[CallContext]) -> dict[str, Any]:
        return await _admin(request, context).update_user(username, roles=data.roles, unit=data.unit,
                                                          manager=data.manager)

    @post("/users/{username:str}/disable", status_code=200, summary="Disable a user and revoke their tokens")
    async def disable_user(self, request: Request[Any, Any, Any], username: FromPath[str],
                           context: NamedDependency[CallContext]) -> dict[str, str]:
        await _admin(request, context).set_disabled(username, True)
        return {"status": "disabled"}

    @post("/users/{username:str}/enable", status_code=200, summary="Enable a user")
    async def enable_user(self, request: Request[Any, Any, Any], username: FromPath[str],
                          context: NamedDependency[CallContext]) -> dict[str, str]:
        await _admin(request, context).set_disabled(username, False)
        return {"status": "enabled"}

    @post("/users/{username:str}/handover", status_code=200,
          summary="Reassign every record a user owns to another user")
    async def handover(self, request: Request[Any, Any, Any], username: FromPath[str], data: JSONBody[Handover],
                       context: NamedDependency[CallContext]) -> dict[str, int]:
        return await _admin(request, context).handover(username, data.to)

    @get("/org-units", summary="List org units")
    async def list_units(self, request: Request[Any, Any, Any],
                         context: NamedDependency[CallContext]) -> list[dict[str, Any]]:
        return await _admin(request, context).list_units()

    @post("/org-units", summary="Create an org unit")
    async def create_unit(self, request: Request[Any, Any, Any], data: JSONBody[UnitCreate],
                          context: NamedDependency[CallContext]) -> dict[str, Any]:
        return await _admin(request, context).create_unit(data.name, data.parent)

    @get("/roles", summary="List roles (role:read)")
    async def list_roles(self, context: NamedDependency[CallContext]) -> list[dict[str, Any]]:
        return await _policy(context).list_roles()

    @post("/roles", summary="Create a role (role:write)")
    async def create_role(self, data: JSONBody[RoleCreate], context: NamedDependency[CallContext]) -> dict[str, Any]:
        return await _policy(context).create_role(data.name, data.description)

    @get("/policies", summary="List policy and scope rules (policy:read)")
    async def list_rules(self, context: NamedDependency[CallContext]) -> list[dict[str, Any]]:
        return await _policy(context).list_rules()

    @post("/policies", summary="Add a policy rule (policy:write; refused if it breaks separation of duties)")
    async def add_rule(self, data: JSONBody[RuleCreate], context: NamedDependency[CallContext]) -> dict[str, Any]:
        return await _policy(context).add_rule(data.role, data.object, data.action, data.effect)

    @delete("/policies/{rule_id:int}", status_code=204, summary="Remove a policy rule (policy:write)")
    async def remove_rule(self, rule_id: FromPath[int], context: NamedDependency[CallContext]) -> None:
        await _policy(context).remove_rule(rule_id)

    @put("/scopes", summary="Set a role's record scope for an entity (policy:write)")
    async def set_scope(self, data: JSONBody[ScopeSet], context: NamedDependency[CallContext]) -> dict[str, Any]:
        return await _policy(context).set_scope(data.role, data.entity, data.scope)

    @get("/clients", summary="List API clients (client:read)")
    async def list_clients(self, request: Request[Any, Any, Any],
                           context: NamedDependency[CallContext]) -> list[dict[str, Any]]:
        return await _admin(request, context).list_clients()

    @post("/clients", summary="Register an API client; the secret is shown once (client:write)")
    async def create_client(self, request: Request[Any, Any, Any], data: JSONBody[ClientCreate],
                            context: NamedDependency[CallContext]) -> dict[str, Any]:
        client = await _admin(request, context).create_client(data.name, roles=data.roles, scopes=data.scopes)
        return {"client_id": client.client_id, "client_secret": client.client_secret, "roles": list(client.roles),
                "allowed_scopes": list(client.allowed_scopes)}

    @post("/clients/{client_id:str}/disable", status_code=200, summary="Disable a client and revoke its tokens")
    async def disable_client(self, request: Request[Any, Any, Any], client_id: FromPath[str],
                             context: NamedDependency[CallContext]) -> dict[str, str]:
        await _admin(request, context).set_client_disabled(client_id, True)
        return {"status": "disabled"}

    @get("/access-review", summary="Who can read or write which sensitive fields (role:read)")
    async def access_review(
        self, context: NamedDependency[CallContext],
        output: Annotated[str | None, QueryParameter(name="format", required=False, pattern="^(json|markdown)$")
                          ] = None,
    ) -> Response[Any]:
        review = await _policy(context).review(markdown=output == "markdown")
        if output == "markdown":
            return Response(review, media_type="text/markdown")
        return Response([msgspec.structs.asdict(row) if isinstance(row, msgspec.Struct) else row for row in review])
