"""Bearer-token authentication and the OAuth2 token endpoint."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, post
from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.params import URLEncodedBody

from server.errors import MalformedRequest, NotAuthenticated
from server.security.identity import TokenSigner
from server.security.principal import Principal, PrincipalKind
from server.services.identity import IdentityService

PUBLIC_PATHS = ["^/health/", "^/schema", "^/static/", "^/api/v1/auth/token$", "^/favicon.ico$"]


class BearerAuthenticationMiddleware(AbstractAuthenticationMiddleware):
    """Turns ``Authorization: Bearer <token>`` into a Principal on ``request.user``; anything else is a 401."""

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        header = connection.headers.get("authorization")
        if not header:
            raise NotAuthenticated("an access token is required: Authorization: Bearer <token>")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("the Authorization header must use the Bearer scheme")
        signer: TokenSigner = connection.app.state.resources.signer
        claims = signer.verify(token.strip())
        principal = Principal(id=claims.subject, kind=PrincipalKind(claims.kind), name=claims.name,
                              roles=claims.roles, scopes=claims.scopes)
        return AuthenticationResult(user=principal, auth=claims)


class TokenRequest(msgspec.Struct, kw_only=True):
    """OAuth2 token request (form-encoded)."""

    grant_type: str
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    scope: str | None = None


class TokenResponse(msgspec.Struct):
    """OAuth2 access token response."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str


class TokenController(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]

    @post("/token", status_code=200, summary="Get an access token",
          description="OAuth2 password grant (`grant_type=password`, `username`, `password`), form-encoded.")
    async def token(
        self,
        request: Request[Any, Any, Any],
        data: URLEncodedBody[TokenRequest],
    ) -> TokenResponse:
        if data.grant_type != "password":
            raise MalformedRequest(f"unsupported grant_type {data.grant_type[:40]!r}; supported: password",
                                   error="unsupported_grant_type")
        if not data.username or not data.password:
            raise MalformedRequest("username and password are required", error="invalid_request")
        resources = request.app.state.resources
        async with resources.session_factory() as session:
            issued = await IdentityService(session, resources.hasher, resources.signer).password_grant(
                data.username, data.password)
        return TokenResponse(issued.access_token, "bearer", issued.expires_in, issued.scope)
