"""Field security from the attacker's side. Every attempt here must fail."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any


async def _customer(fx_api: Any, headers: dict[str, str], **extra: Any) -> dict[str, Any]:
    response = await fx_api.client.post("/api/v1/customers", headers=headers,
                                        json={"name": f"Target {uuid.uuid4().hex[:6]}", "kind": "individual", **extra})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _admin_headers(fx_api: Any, role: str) -> dict[str, str]:
    return await fx_api.login([role])


async def test_own_scope_hides_other_reps_records_as_404(fx_api: Any) -> None:
    alice, bob = await fx_api.login(["sales_rep"]), await fx_api.login(["sales_rep"])
    customer = await _customer(fx_api, alice)
    contact = (await fx_api.client.post("/api/v1/contacts", headers=alice, json={
        "customer_id": customer["id"], "name": "Secret Person", "email": "secret@example.com"})).json()
    for url in (f"/api/v1/customers/{customer['id']}", f"/api/v1/customers/{customer['id']}/360",
                f"/api/v1/contacts/{contact['id']}"):
        response = await fx_api.client.get(url, headers=bob)
        assert response.status_code == 404, url
        assert "Secret" not in response.text
    listed = await fx_api.client.get("/api/v1/contacts", params={"customer_id": customer["id"]}, headers=bob)
    assert listed.json()["items"] == []
    patched = await fx_api.client.patch(f"/api/v1/customers/{customer['id']}", headers=bob,
                                        json={"tier": "C", "version": 1})
    assert patched.status_code == 404
    deleted = await fx_api.client.delete(f"/api/v1/contacts/{contact['id']}", headers=bob)
    assert deleted.status_code in {403, 404}  # reps may not delete at all; either way nothing happens
    assert (await fx_api.client.get(f"/api/v1/contacts/{contact['id']}", headers=alice)).status_code == 200
    linked = await fx_api.client.post("/api/v1/contacts", headers=bob, json={
        "customer_id": customer["id"], "name": "Sneaky"})
    assert linked.status_code in {404, 422}


async def test_team_scope_covers_reports_only(fx_api: Any) -> None:
    manager = await fx_api.create_user(["sales_manager"])
    manager_headers = {"Authorization": f"Bearer {await fx_api.token_for(manager)}"}
    report = await fx_api.login(["sales_rep"], manager=manager)
    outsider = await fx_api.login(["sales_rep"])
    team_customer = await _customer(fx_api, report)
    other_customer = await _customer(fx_api, outsider)
    assert (await fx_api.client.get(f"/api/v1/customers/{team_customer['id']}",
                                    headers=manager_headers)).status_code == 200
    assert (await fx_api.client.get(f"/api/v1/customers/{other_customer['id']}",
                                    headers=manager_headers)).status_code == 404


async def test_reused_scope_statements_follow_each_caller_and_a_change_of_manager(fx_api: Any) -> None:
    # Scope criteria and the statements built from them are reused across requests (records.py, repository.py):
    # they must never carry one caller's scope to another, nor outlive a change of the team.
    first_manager, second_manager = [await fx_api.create_user(["sales_manager"]) for _ in range(2)]
    first = {"Authorization": f"Bearer {await fx_api.token_for(first_manager)}"}
    second = {"Authorization": f"Bearer {await fx_api.token_for(second_manager)}"}
    report_name = await fx_api.create_user(["sales_rep"], manager=first_manager)
    report = {"Authorization": f"Bearer {await fx_api.token_for(report_name)}"}
    outsider = await fx_api.login(["sales_rep"])
    customer = await _customer(fx_api, report)
    url = f"/api/v1/customers/{customer['id']}"
    for _ in range(2):
        assert (await fx_api.client.get(url, headers=report)).status_code == 200
        assert (await fx_api.client.get(url, headers=outsider)).status_code == 404
        assert (await fx_api.client.get(url, headers=first)).status_code == 200
        assert (await fx_api.client.get(url, headers=second)).status_code == 404
    sysadmin = await _admin_headers(fx_api, "sysadmin")
    moved = await fx_api.client.patch(f"/api/v1/admin/users/{report_name}", headers=sysadmin,
                                      json={"manager": second_manager})
    assert moved.status_code == 200, moved.text
    await asyncio.sleep(0.3)  # each process re-reads the security state at most every 0.25 s
    assert (await fx_api.client.get(url, headers=first)).status_code == 404
    assert (await fx_api.client.get(url, headers=second)).status_code == 200
    assert (await fx_api.client.get(url, headers=report)).status_code == 200


async def test_patch_with_forbidden_field_applies_nothing(fx_api: Any) -> None:
    rep = await fx_api.login(["sales_rep"])
    customer = await _customer(fx_api, rep, tier="A")
    forbidden = await fx_api.client.patch(f"/api/v1/customers/{customer['id']}", headers=rep, json={
        "tier": "B", "owner_id": str(uuid.uuid4()), "version": 1})
    if forbidden.status_code == 403:
        assert forbidden.json()["fields"] == ["owner_id"]
        assert "customer.owner_id" in forbidden.json()["detail"]
    else:
        assert forbidden.status_code == 422
    after = (await fx_api.client.get(f"/api/v1/customers/{customer['id']}", headers=rep)).json()
    assert after["tier"] == "A"
    assert after["version"] == 1


async def test_masked_fields_are_not_an_oracle(fx_api: Any) -> None:
    rep = await fx_api.login(["sales_rep"])
    support = await fx_api.login(["support_agent"])
    customer = await _customer(fx_api, rep)
    await fx_api.client.post("/api/v1/contacts", headers=rep, json={
        "customer_id": customer["id"], "name": "Oracle Test", "email": "oracle@example.com",
        "phone": "+86 138 0013 8000"})
    by_email = await fx_api.client.get("/api/v1/contacts", params={"email": "oracle@example.com"}, headers=support)
    assert by_email.status_code == 403
    by_name = await fx_api.client.get("/api/v1/contacts", params={"sort": "name"}, headers=support)
    view = await fx_api.client.get("/api/v1/contacts", params={"customer_id": customer["id"]}, headers=support)
    assert view.status_code == 200
    item = view.json()["items"][0]
    if item.get("name") != "Oracle Test":
        assert by_name.status_code == 403
    assert "13800138000" not in view.text.replace(" ", "")
    assert "oracle@example.com" not in view.text


async def test_reveal_is_single_field_with_reason(fx_api: Any) -> None:
    rep = await fx_api.login(["sales_rep"])
    support = await fx_api.login(["support_agent"])
    customer = await _customer(fx_api, rep)
    contact = (await fx_api.client.post("/api/v1/contacts", headers=rep, json={
        "customer_id": customer["id"], "name": "Reveal Me", "phone": "+86 138 0013 8000"})).json()
    url = f"/api/v1/contacts/{contact['id']}"
    masked = (await fx_api.client.get(url, headers=support)).json()
    assert masked["phone"] != "+86 138 0013 8000"
    no_reason = await fx_api.client.get(url, params={"reveal": "phone"}, headers=support)
    assert no_reason.status_code == 422
    revealed = await fx_api.client.get(url, params={"reveal": "phone", "reason": "customer called about ticket 42"},
                                       headers=support)
    assert revealed.status_code == 200, revealed.text
    assert revealed.json()["phone"] == "+86 138 0013 8000"
    assert revealed.json().get("mobile") != contact.get("mobile") or contact.get("mobile") is None
    hidden = await fx_api.client.get(url, params={"reveal": "national_id", "reason": "just curious, really"},
                                     headers=support)
    assert hidden.status_code == 403
    bulk = await fx_api.client.get("/api/v1/contacts", params={"reveal": "phone"}, headers=support)
    assert bulk.status_code == 422


async def test_client_scopes_only_narrow(fx_api: Any) -> None:
    secadmin = await _admin_headers(fx_api, "secadmin")
    created = await fx_api.client.post("/api/v1/admin/clients", headers=secadmin, json={
        "name": "callcentre", "roles": ["sales_manager"], "scopes": ["customers:read", "contacts:read"]})
    assert created.status_code == 201, created.text
    client = created.json()
    beyond = await fx_api.client.post("/api/v1/auth/token", data={
        "grant_type": "client_credentials", "client_id": client["client_id"],
        "client_secret": client["client_secret"], "scope": "contacts:read pii:read"})
    assert beyond.status_code == 400
    assert beyond.json()["error"] == "invalid_scope"
    wrong_secret = await fx_api.client.post("/api/v1/auth/token", data={
        "grant_type": "client_credentials", "client_id": client["client_id"], "client_secret": "guess"})
    assert wrong_secret.status_code == 401
    token = (await fx_api.client.post("/api/v1/auth/token", data={
        "grant_type": "client_credentials", "client_id": client["client_id"],
        "client_secret": client["client_secret"], "scope": "contacts:read"})).json()
    assert token["scope"] == "contacts:read"
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert (await fx_api.client.get("/api/v1/customers", headers=headers)).status_code == 403
    contacts = await fx_api.client.get("/api/v1/contacts", headers=headers)
    assert contacts.status_code == 200
    write = await fx_api.client.post("/api/v1/contacts", headers=headers, json={
        "customer_id": str(uuid.uuid4()), "name": "x"})
    assert write.status_code == 403


async def test_revocation_and_disable_take_effect_at_once(fx_api: Any) -> None:
    username = await fx_api.create_user(["sales_rep"])
    login = (await fx_api.client.post("/api/v1/auth/token", data={
        "grant_type": "password", "username": username, "password": "Test-password-2026"})).json()
    headers = {"Authorization": f"Bearer {login['access_token']}"}
    assert (await fx_api.client.get("/api/v1/customers", headers=headers)).status_code == 200
    refreshed = (await fx_api.client.post("/api/v1/auth/token", data={
        "grant_type": "refresh_token", "refresh_token": login["refresh_token"]})).json()
    replay = await fx_api.client.post("/api/v1/auth/token", data={
        "grant_type": "refresh_token", "refresh_token": login["refresh_token"]})
    assert replay.status_code == 401
    await fx_api.client.post("/api/v1/auth/revoke", data={"token": login["access_token"]})
    assert (await fx_api.client.get("/api/v1/customers", headers=headers)).status_code == 401

    fresh = {"Authorization": f"Bearer {refreshed['access_token']}"}
    assert (await fx_api.client.get("/api/v1/customers", headers=fresh)).status_code == 200
    sysadmin = await _admin_headers(fx_api, "sysadmin")
    disabled = await fx_api.client.post(f"/api/v1/admin/users/{username}/disable", headers=sysadmin)
    assert disabled.status_code == 200, disabled.text
    assert (await fx_api.client.get("/api/v1/customers", headers=fresh)).status_code == 401
    again = await fx_api.client.post("/api/v1/auth/token", data={
        "grant_type": "refresh_token", "refresh_token": refreshed["refresh_token"]})
    assert again.status_code == 401


async def test_lockout_after_repeated_failures(fx_api: Any) -> None:
    username = await fx_api.create_user(["sales_rep"])
    for _ in range(5):
        failed = await fx_api.client.post("/api/v1/auth/token", data={
            "grant_type": "password", "username": username, "password": "wrong-password-99"})
        assert failed.status_code == 401
    locked = await fx_api.client.post("/api/v1/auth/token", data={
        "grant_type": "password", "username": username, "password": "Test-password-2026"})
    assert locked.status_code == 401


async def test_privilege_escalation_is_refused(fx_api: Any) -> None:
    secadmin = await _admin_headers(fx_api, "secadmin")
    sysadmin = await _admin_headers(fx_api, "sysadmin")
    auditor = await _admin_headers(fx_api, "auditor")
    grab_audit = await fx_api.client.post("/api/v1/admin/policies", headers=secadmin, json={
        "role": "secadmin", "object": "admin.audit", "action": "read"})
    assert grab_audit.status_code == 409
    # Neither the entity nor its fields: security administrators never read CRM data.
    grab_entity = await fx_api.client.post("/api/v1/admin/policies", headers=secadmin, json={
        "role": "secadmin", "object": "contact", "action": "read"})
    assert grab_entity.status_code == 409
    assert "separation of duties" in grab_entity.json()["detail"]
    grab_fields = await fx_api.client.post("/api/v1/admin/policies", headers=secadmin, json={
        "role": "secadmin", "object": "contact.*", "action": "read"})
    try:
        assert grab_fields.status_code in {201, 409}
        assert (await fx_api.client.get("/api/v1/contacts", headers=secadmin)).status_code == 403
    finally:
        if grab_fields.status_code == 201:
            await fx_api.client.delete(f"/api/v1/admin/policies/{grab_fields.json()['id']}", headers=secadmin)
    sysadmin_self = await fx_api.client.post("/api/v1/admin/users", headers=sysadmin, json={
        "username": f"shadow-{uuid.uuid4().hex[:6]}", "roles": ["secadmin"], "password": "Shadow-password-2026"})
    assert sysadmin_self.status_code == 403
    sysadmin_edit = await fx_api.client.post("/api/v1/admin/policies", headers=sysadmin, json={
        "role": "sysadmin", "object": "customer.*", "action": "read"})
    assert sysadmin_edit.status_code == 403
    sysadmin_roles = await fx_api.client.patch("/api/v1/admin/users/nobody", headers=auditor,
                                               json={"roles": ["secadmin"]})
    assert sysadmin_roles.status_code == 403
    for headers in (secadmin, sysadmin, auditor):
        assert (await fx_api.client.get("/api/v1/customers", headers=headers)).status_code == 403
    rules = (await fx_api.client.get("/api/v1/admin/policies", headers=secadmin)).json()
    assert not [r for r in rules if r.get("role") == "secadmin" and r.get("object") == "admin.audit"]


async def test_admin_can_manage_units_and_handover(fx_api: Any) -> None:
    sysadmin = await _admin_headers(fx_api, "sysadmin")
    unit = f"Sales East {uuid.uuid4().hex[:6]}"
    assert (await fx_api.client.post("/api/v1/admin/org-units", headers=sysadmin,
                                     json={"name": unit})).status_code == 201
    leaver, heir = await fx_api.create_user(["sales_rep"]), await fx_api.create_user(["sales_rep"])
    leaver_headers = {"Authorization": f"Bearer {await fx_api.token_for(leaver)}"}
    heir_headers = {"Authorization": f"Bearer {await fx_api.token_for(heir)}"}
    customer = await _customer(fx_api, leaver_headers)
    moved = await fx_api.client.post(f"/api/v1/admin/users/{leaver}/handover", headers=sysadmin, json={"to": heir})
    assert moved.status_code == 200, moved.text
    assert moved.json()["customers"] == 1
    assert (await fx_api.client.get(f"/api/v1/customers/{customer['id']}", headers=heir_headers)).status_code == 200
    assert (await fx_api.client.get(f"/api/v1/customers/{customer['id']}",
                                    headers=leaver_headers)).status_code == 404


async def test_custom_admin_role_cannot_be_granted_without_role_write(fx_api: Any) -> None:
    secadmin = await _admin_headers(fx_api, "secadmin")
    sysadmin = await _admin_headers(fx_api, "sysadmin")
    role = f"policy_helper_{uuid.uuid4().hex[:6]}"
    assert (await fx_api.client.post("/api/v1/admin/roles", headers=secadmin, json={
        "name": role, "description": "edits policies"})).status_code == 201
    assert (await fx_api.client.post("/api/v1/admin/policies", headers=secadmin, json={
        "role": role, "object": "admin.policy", "action": "write"})).status_code == 201
    minted = await fx_api.client.post("/api/v1/admin/users", headers=sysadmin, json={
        "username": f"helper-{uuid.uuid4().hex[:6]}", "roles": [role], "password": "Helper-password-2026"})
    assert minted.status_code == 403
