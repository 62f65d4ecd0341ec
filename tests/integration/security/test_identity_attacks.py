"""Identity from the attacker's side: role combinations, indirect data access through API clients, lockout as a
denial of service, and refresh-token replay. Every attempt here must fail (or, for lockout, fail only for the
attacker)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from litestar.testing.transport import TestClientTransport

from server import cli

PASSWORD = "Test-password-2026"
WRONG = "wrong-password-99"


class _AddressedTransport(TestClientTransport[Any], httpx.AsyncBaseTransport):
    """The test client's transport (the app runs on the test client's own event loop), from another address."""

    def __init__(self, client: Any, address: str) -> None:
        super().__init__(client=client, raise_server_exceptions=False)
        self.address = address

    def parse_request(self, request: httpx.Request) -> dict[str, Any]:
        scope = super().parse_request(request)
        scope["client"] = (self.address, 41000)
        return scope


@asynccontextmanager
async def _from_address(fx_api: Any, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose requests reach the app from ``address`` (the TCP peer the server sees)."""
    transport = _AddressedTransport(fx_api.client, address)
    async with httpx.AsyncClient(transport=transport, base_url=fx_api.client.base_url) as client:
        yield client


async def _sign_in(client: Any, username: str, password: str) -> httpx.Response:
    response: httpx.Response = await client.post("/api/v1/auth/token", data={
        "grant_type": "password", "username": username, "password": password})
    return response


async def _events(fx_api: Any, **filters: str) -> list[dict[str, Any]]:
    auditor = await fx_api.login(["auditor"])
    response = await fx_api.client.get("/api/v1/audit/events", params=filters, headers=auditor)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def _cli(fx_api: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
               *argv: str) -> tuple[int, str]:
    """Run ``strongroom ARGV`` in-process against the database under test; exit code and stderr."""
    settings = fx_api.app.state.resources.settings
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("STRONGROOM_DATA_DIR", str(settings.data_dir))
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, list(argv))
    return code, capsys.readouterr().err


async def _roles_of(fx_api: Any, username: str) -> list[str] | None:
    sysadmin = await fx_api.login(["sysadmin"])
    users = (await fx_api.client.get("/api/v1/admin/users", headers=sysadmin)).json()
    return next((list(user["roles"]) for user in users if user["username"] == username), None)


async def _custom_role(fx_api: Any, grants: list[tuple[str, str]]) -> str:
    """A new role (created by a secadmin through the API) holding ``(object, action)`` grants."""
    secadmin = await fx_api.login(["secadmin"])
    name = f"custom_{uuid.uuid4().hex[:8]}"
    created = await fx_api.client.post("/api/v1/admin/roles", headers=secadmin,
                                       json={"name": name, "description": "test role"})
    assert created.status_code == 201, created.text
    for obj, action in grants:
        rule = await fx_api.client.post("/api/v1/admin/policies", headers=secadmin,
                                        json={"role": name, "object": obj, "action": action})
        assert rule.status_code == 201, rule.text
    return name


# -- separation of duties on every path that hands out roles ------------------------------------------------


async def test_cli_refuses_role_combinations_that_break_separation_of_duties(
        fx_api: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    mallory = f"mallory-{uuid.uuid4().hex[:6]}"
    code, err = await _cli(fx_api, monkeypatch, capsys, "users", "create", mallory, "--role", "secadmin",
                           "--role", "auditor")
    assert code == 1
    assert "separation of duties" in err
    assert "policy writers must not hold the audit trail" in err
    assert await _roles_of(fx_api, mallory) is None

    code, err = await _cli(fx_api, monkeypatch, capsys, "users", "create", mallory, "--role", "sales_rep")
    assert code == 0, err
    code, err = await _cli(fx_api, monkeypatch, capsys, "users", "update", mallory, "--role", "sysadmin",
                           "--role", "sales_manager")
    assert code == 1
    assert "system administrators see no personal data" in err
    assert await _roles_of(fx_api, mallory) == ["sales_rep"]

    refusals = await _events(fx_api, action="denied", entity="user", entity_id=mallory)
    assert len(refusals) == 2
    assert refusals[0]["actor_type"] == "system"
    assert refusals[0]["reason"] == "separation of duties"


async def test_api_refuses_role_combinations_that_break_separation_of_duties(fx_api: Any) -> None:
    # Someone who may both manage users and grant administrator roles: the only kind of caller for whom the
    # role-combination rule, not the role:write rule, is what stands in the way.
    people_admin = await _custom_role(fx_api, [("admin.user", "read"), ("admin.user", "write"),
                                               ("admin.role", "read"), ("admin.role", "write")])
    headers = await fx_api.login([people_admin])
    username = f"combo-{uuid.uuid4().hex[:6]}"
    created = await fx_api.client.post("/api/v1/admin/users", headers=headers, json={
        "username": username, "roles": ["secadmin", "auditor"], "password": PASSWORD})
    assert created.status_code == 409
    assert created.headers["content-type"].startswith("application/problem+json")
    assert "policy writers must not hold the audit trail" in created.json()["detail"]
    assert await _roles_of(fx_api, username) is None

    target = await fx_api.create_user(["sales_rep"])
    changed = await fx_api.client.patch(f"/api/v1/admin/users/{target}", headers=headers,
                                        json={"roles": ["sales_rep", "auditor"]})
    assert changed.status_code == 409
    assert "auditors hold no write access" in changed.json()["detail"]
    assert await _roles_of(fx_api, target) == ["sales_rep"]


# -- API clients: a secadmin must not reach personal data through a client it registers ----------------------


async def test_secadmin_cannot_register_a_client_that_reads_personal_data(fx_api: Any) -> None:
    secadmin = await fx_api.login(["secadmin"])

    async def register(roles: list[str], scopes: list[str]) -> httpx.Response:
        response: httpx.Response = await fx_api.client.post("/api/v1/admin/clients", headers=secadmin, json={
            "name": f"exfil-{uuid.uuid4().hex[:6]}", "roles": roles, "scopes": scopes})
        return response

    direct = await register(["sales_manager"], ["customers:read", "contacts:read", "pii:read"])
    assert direct.status_code == 409, direct.text
    assert "policy writers must not see personal data in clear" in direct.json()["detail"]
    assert "client_secret" not in direct.text
    # A role that grants nothing today, widened by the same secadmin after registration: refused up front.
    empty_role = await _custom_role(fx_api, [])
    later = await register([empty_role], ["contacts:read", "pii:read"])
    assert later.status_code == 409, later.text
    # Writing scopes do not smuggle anything either.
    assert (await register(["marketing"], ["contacts:read", "contacts:write", "pii:read"])).status_code == 409

    clients = (await fx_api.client.get("/api/v1/admin/clients", headers=secadmin)).json()
    assert not [c for c in clients if c["name"].startswith("exfil-")]
    refusals = await _events(fx_api, action="denied", entity="client")
    assert any("pii:read" in event["after"]["scopes"] for event in refusals)

    # Without pii:read the client sees personal fields masked at most: registering it stays the secadmin's job.
    masked = await register(["sales_manager"], ["customers:read", "contacts:read"])
    assert masked.status_code == 201, masked.text


async def test_client_registrar_without_policy_rights_is_judged_by_the_clients_actual_reach(fx_api: Any) -> None:
    registrar = await _custom_role(fx_api, [("admin.client", "read"), ("admin.client", "write")])
    headers = await fx_api.login([registrar])
    pii = await fx_api.client.post("/api/v1/admin/clients", headers=headers, json={
        "name": "crm-sync", "roles": ["marketing"], "scopes": ["contacts:read", "pii:read"]})
    assert pii.status_code == 409, pii.text
    assert "security administrators hold no CRM data" in pii.json()["detail"]
    # Scopes this role cannot turn into personal data in clear (marketing's customer fields are not personal).
    harmless = await fx_api.client.post("/api/v1/admin/clients", headers=headers, json={
        "name": "crm-sync", "roles": ["marketing"], "scopes": ["customers:read", "pii:read"]})
    assert harmless.status_code == 201, harmless.text


async def test_client_role_sets_follow_the_user_rules_on_the_cli(
        fx_api: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = await _cli(fx_api, monkeypatch, capsys, "clients", "create", "mixed", "--role", "auditor",
                           "--role", "sales_rep", "--scope", "customers:read")
    assert code == 1
    assert "auditors hold no write access" in err
    # The operator on the server (no roles of its own) may register a client that reads personal data.
    code, err = await _cli(fx_api, monkeypatch, capsys, "clients", "create", "campaigns", "--role", "marketing",
                           "--scope", "contacts:read", "--scope", "pii:read")
    assert code == 0, err


# -- lockout: throttled for the attacker, not a denial of service for the owner -----------------------------


async def test_failures_from_one_address_do_not_lock_the_owner_out_elsewhere(fx_api: Any) -> None:
    victim = await fx_api.create_user(["sysadmin"])
    async with _from_address(fx_api, "203.0.113.66") as attacker:
        for _ in range(8):
            assert (await _sign_in(attacker, victim, WRONG)).status_code == 401
        # Brute force from that address is throttled: even the right password is refused there now.
        assert (await _sign_in(attacker, victim, PASSWORD)).status_code == 401
    async with _from_address(fx_api, "198.51.100.7") as owner:
        assert (await _sign_in(owner, victim, PASSWORD)).status_code == 200
    async with _from_address(fx_api, "203.0.113.66") as attacker:
        # The owner's success does not lift the attacker's lock.
        assert (await _sign_in(attacker, victim, PASSWORD)).status_code == 401

    failures = await _events(fx_api, action="login_failed", entity_id=str(await fx_api.user_id(victim)))
    assert {event["reason"] for event in failures} == {"wrong password", "account locked for this address"}
    assert {event["client_address"] for event in failures} == {"203.0.113.66"}
    # Attempts during the lock are not counted against the account as a whole.
    assert max(event["after"]["failed_logins"] for event in failures) == 5


async def test_addresses_of_one_ipv6_network_share_a_counter(fx_api: Any) -> None:
    victim = await fx_api.create_user(["sales_rep"])
    for host in range(1, 7):
        async with _from_address(fx_api, f"2001:db8:1:2::{host:x}") as attacker:
            assert (await _sign_in(attacker, victim, WRONG)).status_code == 401
    async with _from_address(fx_api, "2001:db8:1:2::ff") as attacker:
        assert (await _sign_in(attacker, victim, PASSWORD)).status_code == 401
    async with _from_address(fx_api, "2001:db8:9:9::1") as owner:
        assert (await _sign_in(owner, victim, PASSWORD)).status_code == 200


async def test_guessing_spread_over_many_addresses_is_still_throttled(fx_api: Any) -> None:
    victim = await fx_api.create_user(["sales_rep"])
    for host in range(1, 21):  # one wrong password from each of 20 addresses: no single address is locked
        async with _from_address(fx_api, f"192.0.2.{host}") as attacker:
            assert (await _sign_in(attacker, victim, WRONG)).status_code == 401
    async with _from_address(fx_api, "192.0.2.77") as fresh:
        assert (await _sign_in(fresh, victim, PASSWORD)).status_code == 401
    failures = await _events(fx_api, action="login_failed", entity_id=str(await fx_api.user_id(victim)))
    newest = failures[0]
    assert newest["reason"] == "account locked"
    locked = [event for event in failures if event["after"]["locked_until"]]
    assert locked, "the 20th failure locks the account"


# -- refresh tokens: replay revokes the family ------------------------------------------------------------------


async def test_refresh_token_replay_revokes_the_whole_family(fx_api: Any) -> None:
    username = await fx_api.create_user(["sales_rep"])
    first = (await _sign_in(fx_api.client, username, PASSWORD)).json()

    async def refresh(token: str) -> httpx.Response:
        response: httpx.Response = await fx_api.client.post("/api/v1/auth/token", data={
            "grant_type": "refresh_token", "refresh_token": token})
        return response

    second = await refresh(first["refresh_token"])
    assert second.status_code == 200
    third = await refresh(second.json()["refresh_token"])
    assert third.status_code == 200
    # A thief (or a confused client) presents a token that was already rotated.
    replay = await refresh(first["refresh_token"])
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_grant"
    # The newest token of that sign-in no longer works either, whoever holds it.
    assert (await refresh(third.json()["refresh_token"])).status_code == 401
    # Another sign-in of the same user (another device) is a different family and keeps working.
    other = (await _sign_in(fx_api.client, username, PASSWORD)).json()
    assert (await refresh(other["refresh_token"])).status_code == 200

    rejected = await _events(fx_api, action="token_rejected", entity="token")
    replays = [event for event in rejected if event["actor_id"] == str(await fx_api.user_id(username))]
    assert replays[-1]["reason"].startswith("refresh token reused")
    assert len(replays[-1]["after"]["revoked"]) == 1  # the live successor; the rest were already spent


async def test_revoking_a_rotated_refresh_token_revokes_its_successors(fx_api: Any) -> None:
    username = await fx_api.create_user(["sales_rep"])
    first = (await _sign_in(fx_api.client, username, PASSWORD)).json()
    second = (await fx_api.client.post("/api/v1/auth/token", data={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"]})).json()
    assert (await fx_api.client.post("/api/v1/auth/revoke", data={"token": first["refresh_token"]})
            ).status_code == 200
    again = await fx_api.client.post("/api/v1/auth/token", data={
        "grant_type": "refresh_token", "refresh_token": second["refresh_token"]})
    assert again.status_code == 401
