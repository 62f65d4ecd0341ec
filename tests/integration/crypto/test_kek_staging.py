"""Two-phase KEK rotation with copied keyrings, as in the hybrid inventory or a Kubernetes Secret.

Two hosts share one database and each holds its own copy of the keyring file. Host A stages a KEK version
(`keys add-version`), the copy on host B is replaced, then A activates the version and rewraps every DEK onto it
(`keys rotate --to-version`). B reads every value before, during and after. Without the copy step B cannot read
what was rewrapped: that is why the step exists.

Each test has its own database and keyrings (a rotation rewraps every DEK in the database it runs on).
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from server.domain.contacts import Contact
from server.ops import keys
from server.security import field_cipher
from server.security.crypto import KEYRING_ENV, UnknownKey, keyring_env_value, load_keyring_file
from server.security.field_cipher import UNDECRYPTABLE, keyring_path
from tests.conftest import serving, strongroom_cli

from .conftest import (
    FirstBatchOnly,
    Hosts,
    LoggedWarnings,
    StopAfterFirstBatch,
    beside_traffic,
    customers_with_contacts,
    emails_of,
    key_events,
    new_cipher,
    run_strongroom,
)


async def test_a_host_with_the_copied_keyring_reads_every_value_before_during_and_after(
    fx_hosts: Hosts, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    crm = fx_hosts.crm
    server_a, server_b = crm.cipher, new_cipher(fx_hosts.b)
    expected = await customers_with_contacts(crm, server_a, 4) | await customers_with_contacts(crm, server_b, 4)

    # Step 1, on A: stage version 2. Both hosts keep wrapping new DEKs under version 1.
    assert await run_strongroom(monkeypatch, fx_hosts.a, "keys", "add-version") == 0
    assert "staged KEK version 2" in capsys.readouterr().out
    expected |= await customers_with_contacts(crm, server_a, 2) | await customers_with_contacts(crm, server_b, 2)
    assert await crm.kek_versions_in_use() == {1: 12}

    # Step 2: B gets the staged keyring. It now holds version 2, still current 1.
    fx_hosts.copy_keyring_to_b()
    status_b = await keys.key_status(crm.sessions, new_cipher(fx_hosts.b))
    assert (status_b.current_kek_version, status_b.staged_kek_versions) == (1, (2,))
    for reader in (server_b, new_cipher(fx_hosts.b)):
        assert await emails_of(crm, reader, list(expected)) == expected

    # Step 3, on A: activate and rewrap. An interrupted run leaves DEKs under both versions; B reads them all,
    # with a warm cache (a running server) and cold (a pod that starts now).
    with pytest.raises(StopAfterFirstBatch):
        await keys.rotate_kek(crm.sessions, new_cipher(fx_hosts.a), to_version=2, batch_size=5,
                              progress=FirstBatchOnly())
    assert await crm.kek_versions_in_use() == {1: 7, 2: 5}
    assert load_keyring_file(keyring_path(fx_hosts.a)).current_kek_version() == 2  # activated before the rewrap
    status_b = await keys.key_status(crm.sessions, new_cipher(fx_hosts.b))
    assert any(line.startswith("warning: 5 DEKs are wrapped under KEK version(s) 2, which this keyring holds only as "
                               "staged") for line in status_b.lines())
    for reader in (server_b, new_cipher(fx_hosts.b)):
        assert await emails_of(crm, reader, list(expected)) == expected

    # The run that finishes it (same command again), while B writes and reads.
    failures: list[str] = []

    async def write_on_b() -> None:
        expected.update(await customers_with_contacts(crm, server_b, 1))

    async def read_on_b() -> None:
        for reader in (server_b, new_cipher(fx_hosts.b)):
            wanted = dict(expected)
            opened = await emails_of(crm, reader, list(wanted))
            failures.extend(f"{contact_id}: {opened.get(contact_id)!r}" for contact_id, email in wanted.items()
                            if opened.get(contact_id) != email)

    rotated, (writes, reads) = await beside_traffic(
        lambda: keys.rotate_kek(crm.sessions, new_cipher(fx_hosts.a), to_version=2, batch_size=2),
        write_on_b, read_on_b)
    assert not failures
    assert writes and reads, "B must have read and written during the rotation"
    assert rotated.kek_version == 2 and not rotated.added_version
    assert rotated.rewrapped >= 7

    # After: B's copy still names version 1 as current, so B's new DEKs went under 1 meanwhile. Once the activated
    # keyring is copied too, B wraps under 2, and a resumed rotation moves the rest.
    fx_hosts.copy_keyring_to_b()
    expected |= await customers_with_contacts(crm, server_b, 1)
    await keys.rotate_kek(crm.sessions, new_cipher(fx_hosts.a), add_version=False)
    assert set(await crm.kek_versions_in_use()) == {2}
    for reader in (server_b, new_cipher(fx_hosts.b), new_cipher(fx_hosts.a)):
        assert await emails_of(crm, reader, list(expected)) == expected
    status_b = await keys.key_status(crm.sessions, new_cipher(fx_hosts.b))
    assert (status_b.current_kek_version, status_b.staged_kek_versions, status_b.older_kek_versions) == (2, (), (1,))


async def test_a_host_whose_copy_lacks_the_version_reads_undecryptable_never_wrong_plaintext(
    fx_hosts: Hosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    crm = fx_hosts.crm
    warm_b = new_cipher(fx_hosts.b)
    cached = await customers_with_contacts(crm, warm_b, 2)  # B created these DEKs, so it holds them unwrapped
    expected = await customers_with_contacts(crm, crm.cipher, 4)
    customer_of_a = await crm.customer()
    async with serving(fx_hosts.b) as api_b:  # B's API: one contact a sales rep created there
        rep = await api_b.create_user(["sales_rep"])
        headers = {"Authorization": f"Bearer {await api_b.token_for(rep)}"}
        customer = (await api_b.client.post("/api/v1/customers", headers=headers,
                                            json={"name": "Copied keyring", "kind": "company"})).json()
        created = await api_b.client.post("/api/v1/contacts", headers=headers, json={
            "customer_id": customer["id"], "name": "Li Na", "email": "li.na@example.com", "phone": "+86 138 0013 8999"})
        assert created.status_code == 201, created.text

    # The staging step is skipped: B's copy never receives version 2.
    assert await run_strongroom(monkeypatch, fx_hosts.a, "keys", "add-version") == 0
    assert await run_strongroom(monkeypatch, fx_hosts.a, "keys", "rotate", "--to-version", "2") == 0
    assert set(await crm.kek_versions_in_use()) == {2}
    assert load_keyring_file(keyring_path(fx_hosts.b)).kek_versions() == (1,)

    cold_b = new_cipher(fx_hosts.b)  # a pod started with the old Secret
    warnings = LoggedWarnings()
    monkeypatch.setattr(field_cipher, "log", warnings)
    assert await emails_of(crm, cold_b, list(expected)) == dict.fromkeys(expected, UNDECRYPTABLE)
    assert [(event["kek_version"], event["held_versions"]) for event in warnings.events] == [(2, [1])]  # once
    assert await emails_of(crm, warm_b, list(cached)) == cached  # DEKs a running process unwrapped before still work
    async with crm.sessions() as session:
        contacts_before = (await session.execute(select(func.count()).select_from(Contact))).scalar_one()
    with pytest.raises(UnknownKey, match="KEK version 2"):  # a write fails; nothing is sealed under another key
        await crm.contact(customer_of_a.id, cipher=cold_b)
    async with crm.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Contact))).scalar_one() == contacts_before
    status_b = await keys.key_status(crm.sessions, cold_b)
    assert any("which this keyring does not hold" in line for line in status_b.lines())

    async with serving(fx_hosts.b) as api_b:  # through the API of a B process started now: 200, field by field
        headers = {"Authorization": f"Bearer {await api_b.token_for(rep)}"}
        response = await api_b.client.get(f"/api/v1/contacts/{created.json()['id']}", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["email"] is None and body["phone"] is None
        assert body["unreadable_fields"] == {"email": "undecryptable", "phone": "undecryptable"}
        assert body["name"] == "Li Na" and "li.na@example.com" not in response.text
        listed = await api_b.client.get("/api/v1/contacts", params={"customer_id": customer["id"]}, headers=headers)
        assert listed.status_code == 200, listed.text
        # A write for a customer whose data key B cannot unwrap: a 503 problem that says why, nothing written.
        refused = await api_b.client.post("/api/v1/contacts", headers=headers, json={
            "customer_id": customer["id"], "name": "Wang Fang", "email": "wang.fang@example.com"})
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        problem = refused.json()
        assert problem["type"].endswith("/key-unavailable") and "keyring" in problem["detail"]
        assert "Traceback" not in refused.text and "wang.fang" not in refused.text
    async with crm.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Contact).where(
            Contact.name == "Wang Fang"))).scalar_one() == 0

    fx_hosts.copy_keyring_to_b()  # the step that was skipped: B reads everything again
    assert await emails_of(crm, new_cipher(fx_hosts.b), list(expected | cached)) == expected | cached


async def test_cli_add_version_then_rotate_to_it_and_the_refusals(
    fx_hosts: Hosts, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    crm, host_a = fx_hosts.crm, fx_hosts.a
    await customers_with_contacts(crm, crm.cipher, 2)
    keyring_file = keyring_path(host_a)

    async def refused(*argv: str, environ: dict[str, str] | None = None) -> str:
        """Run a command that must be refused: exit 1, one line on standard error, the keyring untouched."""
        before = keyring_file.read_bytes()
        code = await asyncio.to_thread(strongroom_cli, monkeypatch, host_a, *argv, environ=environ)
        captured = capsys.readouterr()
        assert code == 1, captured
        assert captured.err.startswith("strongroom: ") and captured.err.count("\n") == 1
        assert keyring_file.read_bytes() == before
        return captured.err

    assert await run_strongroom(monkeypatch, host_a, "keys", "add-version") == 0
    assert await run_strongroom(monkeypatch, host_a, "keys", "status") == 0
    out = capsys.readouterr().out
    assert "KEK: current version 1; older versions held: none; staged (held, not current): 2" in out
    assert "KEK version 2 is staged" in out

    assert "KEK version 2 is already staged" in await refused("keys", "rotate")
    assert "KEK version 3 is not in the keyring (it holds 1, 2)" in await refused("keys", "rotate", "--to-version", "3")
    from_environment = {KEYRING_ENV: keyring_env_value(load_keyring_file(keyring_file))}
    err = await refused("keys", "rotate", "--to-version", "2", environ=from_environment)
    assert "STRONGROOM_KEYRING is read-only" in err and from_environment[KEYRING_ENV] not in err
    assert await crm.kek_versions_in_use() == {1: 2}

    assert await run_strongroom(monkeypatch, host_a, "keys", "rotate", "--to-version", "2") == 0
    out = capsys.readouterr().out
    assert "activated staged KEK version 2; rewrapped 2 DEKs" in out
    assert "replace every copy of the keyring with this file again" in out
    assert await crm.kek_versions_in_use() == {2: 2}
    assert await run_strongroom(monkeypatch, host_a, "keys", "rotate", "--to-version", "2") == 0  # again: resumes
    assert "KEK version 2; rewrapped 0 DEKs" in capsys.readouterr().out
    assert "older than the current version 2" in await refused("keys", "rotate", "--to-version", "1")

    events = await key_events(crm)
    assert [(event["after"]["kek_version"], event["after"]["added_version"], event["after"]["activated_staged_version"],
             event["after"]["rewrapped"]) for event in events] == [(2, False, True, 2), (2, False, False, 0)]
