"""Bearer-token authentication and the OAuth2 token endpoint."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, post
from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.params import URLEncodedBody

from server.api.dependencies import request_info
from server.errors import MalformedRequest, NotAuthenticated
from server.services.identity import IdentityService

PUBLIC_PATHS = ["^/health/", "^/schema", "^/static/", "^/api/v1/auth/token$", "^/api/v1/auth/revoke$", "^/favicon.ico$"]


class BearerAuthenticationMiddleware(AbstractAuthenticationMiddleware):
    """Turns ``Authorization: Bearer <token>`` into a Principal on ``request.user``; anything else is a 401."""

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        header = connection.headers.get("authorization")
        if not header:
            raise NotAuthenticated("an access token is required: Authorization: Bearer <token>")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("the Authorization header must use the Bearer scheme")
        resources = connection.app.state.resources
        claims = None
        try:
            claims = resources.signer.verify(token.strip())
            principal = await resources.access.principal_for(claims)
        except NotAuthenticated as error:
            # A presented but refused token is worth an audit event; a missing header is not (it is just noise).
            async with resources.session_factory() as session:
                identity = IdentityService(session, resources.hasher, request=request_info(connection))
                await identity.record_rejected_token(str(error.extensions.get("reason", "invalid")),
                                                     str(claims.subject) if claims else None)
            raise
        return AuthenticationResult(user=principal, auth=claims)


class TokenRequest(msgspec.Struct, kw_only=True):
    """OAuth2 token request (form-encoded)."""

    grant_type: str | None = None
    username: str | None = None
    password: str | None = None
    refresh_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    scope: str | None = None


class TokenResponse(msgspec.Struct, omit_defaults=True):
    """OAuth2 access token response; people also get a refresh token."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str
    refresh_token: str | None = None


class RevokeRequest(msgspec.Struct, kw_only=True):
    """RFC 7009 revocation request (form-encoded)."""

    token: str = ""
    token_type_hint: str | None = None


class TokenController(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]

    @post("/token", status_code=200, summary="Get an access token",
          description="OAuth2, form-encoded: `grant_type=password` (`username`, `password`), "
                      "`grant_type=refresh_token` (`refresh_token`), or `grant_type=client_credentials` "
                      "(`client_id`, `client_secret`, optional `scope` narrowing the client's allowed scopes).")
    async def token(self, request: Request[Any, Any, Any], data: URLEncodedBody[TokenRequest]) -> TokenResponse:
        resources = request.app.state.resources
        async with resources.session_factory() as session:
            identity = IdentityService(session, resources.hasher, resources.signer, request=request_info(request))
            if not data.grant_type:
                raise MalformedRequest("grant_type is required", error="invalid_request")
            if data.grant_type == "password":
                if not data.username or not data.password:
                    raise MalformedRequest("username and password are required", error="invalid_request")
                issued = await identity.password_grant(data.username, data.password)
            elif data.grant_type == "refresh_token":
                if not data.refresh_token:
                    raise MalformedRequest("refresh_token is required", error="invalid_request")
                issued = await identity.refresh_grant(data.refresh_token)
            elif data.grant_type == "client_credentials":
                if not data.client_id or not data.client_secret:
                    raise MalformedRequest("client_id and client_secret are required", error="invalid_request")
                issued = await identity.client_credentials_grant(data.client_id, data.client_secret, data.scope)
            else:
                raise MalformedRequest(f"unsupported grant_type {data.grant_type[:40]!r}; supported: password, "
                                       "refresh_token, client_credentials", error="unsupported_grant_type")
        return TokenResponse(issued.access_token, "bearer", issued.expires_in, issued.scope, issued.refresh_token)

    @post("/revoke", status_code=200, summary="Revoke a token",
          description="RFC 7009: revokes an access or refresh token; unknown tokens are accepted silently.")
    async def revoke(self, request: Request[Any, Any, Any], data: URLEncodedBody[RevokeRequest]) -> dict[str, str]:
        resources = request.app.state.resources
        async with resources.session_factory() as session:
            await IdentityService(session, resources.hasher, resources.signer,
                                  request=request_info(request)).revoke(data.token)
        resources.access.invalidate()
        return {"status": "revoked"}
