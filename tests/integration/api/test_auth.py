"""Authentication from the attacker's side: no token, forged, expired, wrong grant, disabled user."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest


def _signing_key(fx_api: Any) -> bytes:
    return (Path(fx_api.app.state.resources.settings.resolved_keys_dir) / "token-signing.key").read_bytes()


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": "strongroom", "sub": str(uuid.uuid4()), "knd": "user", "nam": "mallory", "rol": ["sysadmin"],
              "scp": "", "jti": "x", "iat": now, "exp": now + 600}
    claims.update(overrides)
    return claims


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer not.a.jwt",
                                    "Token abc"])
async def test_missing_or_malformed_credentials(fx_api: Any, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = await fx_api.client.get("/api/v1/customers", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_forged_expired_and_alg_none_tokens(fx_api: Any) -> None:
    forged = jwt.encode(_claims(), b"another-key-" * 4, algorithm="HS256")
    expired = jwt.encode(_claims(exp=int(time.time()) - 5, iat=int(time.time()) - 100), _signing_key(fx_api),
                         algorithm="HS256")
    unsigned = jwt.encode(_claims(), None, algorithm="none")
    wrong_issuer = jwt.encode(_claims(iss="elsewhere"), _signing_key(fx_api), algorithm="HS256")
    for token in (forged, expired, unsigned, wrong_issuer):
        response = await fx_api.client.get("/api/v1/customers", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
    ghost = jwt.encode(_claims(), _signing_key(fx_api), algorithm="HS256")
    ghost_response = await fx_api.client.get("/api/v1/customers", headers={"Authorization": f"Bearer {ghost}"})
    assert ghost_response.status_code == 401  # well signed, but no such user
    username = await fx_api.create_user(["sales_rep"])
    genuine = jwt.encode(_claims(sub=str(await fx_api.user_id(username)), rol=["sales_rep"]), _signing_key(fx_api),
                         algorithm="HS256")
    ok = await fx_api.client.get("/api/v1/customers", headers={"Authorization": f"Bearer {genuine}"})
    assert ok.status_code == 200
    escalated = jwt.encode(_claims(sub=str(await fx_api.user_id(username)), kind="client", knd="client"),
                           b"x" * 64, algorithm="HS256")
    assert (await fx_api.client.get("/api/v1/customers",
                                    headers={"Authorization": f"Bearer {escalated}"})).status_code == 401


async def test_rejected_tokens_are_audited(fx_api: Any) -> None:
    forged = jwt.encode(_claims(), b"another-key-" * 4, algorithm="HS256")
    assert (await fx_api.client.get("/api/v1/customers", headers={"Authorization": f"Bearer {forged}"})
            ).status_code == 401
    auditor = await fx_api.login(["auditor"])
    events = (await fx_api.client.get("/api/v1/audit/events", params={"action": "token_rejected"},
                                      headers=auditor)).json()["items"]
    assert events and events[0]["outcome"] == "denied"
    assert forged not in str(events)


async def test_password_grant(fx_api: Any) -> None:
    username = await fx_api.create_user(["sales_rep"])
    response = await fx_api.client.post("/api/v1/auth/token", data={
        "grant_type": "password", "username": username, "password": "Test-password-2026"})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == fx_api.app.state.resources.settings.token_ttl_seconds
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "refresh_token"}

    wrong = await fx_api.client.post("/api/v1/auth/token", data={
        "grant_type": "password", "username": username, "password": "wrong-password-1"})
    unknown = await fx_api.client.post("/api/v1/auth/token", data={
        "grant_type": "password", "username": "nobody-" + username, "password": "wrong-password-1"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]

    grant = await fx_api.client.post("/api/v1/auth/token", data={"grant_type": "implicit"})
    assert grant.status_code == 400
    assert grant.json()["error"] == "unsupported_grant_type"


async def test_disabled_user_cannot_sign_in(fx_api: Any) -> None:
    username = await fx_api.create_user(["sales_rep"], disabled=True)
    response = await fx_api.client.post("/api/v1/auth/token", data={
        "grant_type": "password", "username": username, "password": "Test-password-2026"})
    assert response.status_code == 401


async def test_public_routes_need_no_token(fx_api: Any) -> None:
    assert (await fx_api.client.get("/health/live")).status_code == 200
    ready = await fx_api.client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok"
