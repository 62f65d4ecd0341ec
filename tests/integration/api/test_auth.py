"""Authentication from the attacker's side: no token, forged, expired, wrong grant, disabled user."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from litestar.testing.transport import TestClientTransport


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


class _ProxiedSettings:
    """The app's settings with ``trusted_proxies`` set (until Settings has the field, it is read by getattr)."""

    def __init__(self, settings: Any, trusted_proxies: str) -> None:
        self._settings = settings
        self.trusted_proxies = trusted_proxies

    def __getattr__(self, name: str) -> Any:
        return getattr(self._settings, name)


class _AddressedTransport(TestClientTransport[Any], httpx.AsyncBaseTransport):
    """The test client's transport (the app runs on the test client's own event loop), from another address."""

    def __init__(self, client: Any, address: str) -> None:
        super().__init__(client=client, raise_server_exceptions=False)
        self.address = address

    def parse_request(self, request: httpx.Request) -> dict[str, Any]:
        scope = super().parse_request(request)
        scope["client"] = (self.address, 41000)
        return scope


def _from_address(fx_api: Any, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=_AddressedTransport(fx_api.client, address),
                             base_url=fx_api.client.base_url)


async def _auth_events(fx_api: Any, **filters: str) -> list[dict[str, Any]]:
    auditor = await fx_api.login(["auditor"])
    response = await fx_api.client.get("/api/v1/audit/events", params=filters, headers=auditor)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_sign_in_token_events_carry_address_and_request_id(fx_api: Any) -> None:
    username = await fx_api.create_user(["sales_rep"])
    user_id = str(await fx_api.user_id(username))
    request_ids = {name: f"req-{name}-{uuid.uuid4().hex[:8]}" for name in
                   ("failed", "login", "refresh", "rejected", "revoke")}
    async with _from_address(fx_api, "203.0.113.41") as client:
        # The header is the caller's word: with no trusted proxy configured it must not change the address.
        spoof = {"X-Forwarded-For": "198.51.100.250"}
        failed = await client.post("/api/v1/auth/token", headers={**spoof, "X-Request-ID": request_ids["failed"]},
                                   data={"grant_type": "password", "username": username, "password": "wrong-pw-123"})
        assert failed.status_code == 401
        login = await client.post("/api/v1/auth/token", headers={**spoof, "X-Request-ID": request_ids["login"]},
                                  data={"grant_type": "password", "username": username,
                                        "password": "Test-password-2026"})
        assert login.status_code == 200
        refreshed = await client.post("/api/v1/auth/token", headers={"X-Request-ID": request_ids["refresh"]},
                                      data={"grant_type": "refresh_token",
                                            "refresh_token": login.json()["refresh_token"]})
        assert refreshed.status_code == 200
        revoked = await client.post("/api/v1/auth/revoke", headers={"X-Request-ID": request_ids["revoke"]},
                                    data={"token": refreshed.json()["access_token"]})
        assert revoked.status_code == 200
        rejected = await client.get("/api/v1/customers", headers={
            "Authorization": f"Bearer {refreshed.json()['access_token']}", "X-Request-ID": request_ids["rejected"]})
        assert rejected.status_code == 401

    by_request = {event["request_id"]: event for event in await _auth_events(fx_api, entity_id=user_id)}
    by_request.update({event["request_id"]: event for event in await _auth_events(fx_api, entity="token")})
    expected = {"failed": "login_failed", "login": "login", "refresh": "token_refresh", "revoke": "token_revoke",
                "rejected": "token_rejected"}
    for name, action in expected.items():
        event = by_request.get(request_ids[name])
        assert event is not None, f"no {action} event with request id {request_ids[name]}"
        assert event["action"] == action
        assert event["client_address"] == "203.0.113.41", event
    assert by_request[request_ids["refresh"]]["actor_id"] == user_id
    assert by_request[request_ids["revoke"]]["actor_id"] == user_id
    assert refreshed.json()["access_token"] not in str(by_request.values())


async def test_forwarded_for_is_believed_only_from_trusted_proxies(fx_api: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    resources = fx_api.app.state.resources
    monkeypatch.setattr(resources, "settings", _ProxiedSettings(resources.settings, "10.0.0.0/8, 192.0.2.1"))
    username = await fx_api.create_user(["sales_rep"])
    user_id = str(await fx_api.user_id(username))
    cases = [
        # (peer, X-Forwarded-For, address recorded)
        ("10.1.2.3", "198.51.100.9", "198.51.100.9"),
        # The client may prepend anything; only what the trusted proxies appended counts.
        ("10.1.2.3", "6.6.6.6, 198.51.100.10, 10.9.9.9", "198.51.100.10"),
        ("192.0.2.1", "garbage, 198.51.100.11", "198.51.100.11"),
        ("10.1.2.3", "not-an-address", "10.1.2.3"),
        # Not from a trusted proxy: the header is ignored.
        ("203.0.113.12", "198.51.100.12", "203.0.113.12"),
    ]
    for peer, forwarded, _expected in cases:
        async with _from_address(fx_api, peer) as client:
            response = await client.post("/api/v1/auth/token", headers={"X-Forwarded-For": forwarded}, data={
                "grant_type": "password", "username": username, "password": "wrong-pw-123"})
            assert response.status_code == 401
    events = await _auth_events(fx_api, action="login_failed", entity_id=user_id)
    assert [event["client_address"] for event in reversed(events)] == [expected for *_, expected in cases]
