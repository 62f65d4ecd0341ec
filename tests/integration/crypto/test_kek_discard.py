"""`strongroom keys discard-version N`: taking back a staged KEK version, and destroying a retired one.

Two hosts share one database and each holds a copy of the keyring file (see ``Hosts``). A staged version is
discarded as asked; the current version, and a version under which the database still wraps a DEK (an
interrupted rotation), are refused with one line and the files untouched; an older version needs ``--yes``.
Each test has its own database and keyrings.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from server.config import Settings
from server.ops import keys
from server.security import field_cipher
from server.security.crypto import (
    KEYRING_ENV,
    DecryptionError,
    WrappedDek,
    keyring_env_value,
    load_keyring_file,
    providers,
)
from server.security.data_keys import DataKeyRow
from server.security.field_cipher import UNDECRYPTABLE, keyring_path
from tests.conftest import serving

from .conftest import (
    Crm,
    FirstBatchOnly,
    Hosts,
    LoggedWarnings,
    StopAfterFirstBatch,
    customers_with_contacts,
    emails_of,
    key_events,
    new_cipher,
    run_strongroom,
)


def _held(path: Path) -> tuple[tuple[int, ...], int]:
    keyring = load_keyring_file(path)  # also refuses a file that is not 0600/0400
    return keyring.kek_versions(), keyring.current_kek_version()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def _discard_events(crm: Crm) -> list[dict[str, Any]]:
    return [event for event in await key_events(crm) if event["reason"] == "KEK version discarded"]


async def _discarded(crm: Crm) -> dict[str, Any]:
    """What the one discard event records: counts and versions, never key material."""
    [event] = await _discard_events(crm)
    assert (event["action"], event["outcome"], event["entity"], event["actor_type"], event["actor_name"]) == (
        "key_rotate", "ok", "key", "system", "strongroom keys")
    return dict(event["after"])


async def test_a_staged_version_is_discarded_and_every_value_still_opens(
    fx_hosts: Hosts, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    crm, host_a = fx_hosts.crm, fx_hosts.a
    keyring_file = keyring_path(host_a)
    expected = await customers_with_contacts(crm, crm.cipher, 3)
    assert await run_strongroom(monkeypatch, host_a, "keys", "add-version") == 0
    fx_hosts.copy_keyring_to_b()  # B received the staged version before it was taken back
    expected |= await customers_with_contacts(crm, new_cipher(fx_hosts.b), 2)
    capsys.readouterr()
    assert await run_strongroom(monkeypatch, host_a, "keys", "status") == 0
    assert "to take it back instead, `strongroom keys discard-version 2`" in capsys.readouterr().out

    assert await run_strongroom(monkeypatch, host_a, "keys", "discard-version", "2") == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"discarded staged KEK version 2 from {keyring_file}; it now holds 1 (current 1)")
    assert "replace every copy of this keyring with this file" in captured.out and not captured.err
    assert _held(keyring_file) == ((1,), 1)
    assert _mode(keyring_file) == 0o600
    assert not list(keyring_file.parent.glob(".*.tmp"))  # replaced by rename, no temporary left behind

    assert await run_strongroom(monkeypatch, host_a, "keys", "status") == 0
    out = capsys.readouterr().out
    assert "KEK: current version 1; older versions held: none; staged (held, not current): none" in out
    assert "KEK version 2" not in out and "discard-version" not in out

    # Every server opens every value: A's running one, a new one on A, B (whose copy still holds the version).
    for reader in (crm.cipher, new_cipher(host_a), new_cipher(fx_hosts.b)):
        assert await emails_of(crm, reader, list(expected)) == expected
    expected |= await customers_with_contacts(crm, new_cipher(host_a), 1)
    assert await crm.kek_versions_in_use() == {1: 6}

    assert await _discarded(crm) == {"kek_version": 2, "was_staged": True, "current_kek_version": 1,
                                     "kek_versions_left": [1]}


async def test_a_copy_that_still_holds_a_discarded_version_unwraps_nothing(
    fx_hosts: Hosts, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    crm, host_a = fx_hosts.crm, fx_hosts.a
    expected = await customers_with_contacts(crm, crm.cipher, 3)
    assert await run_strongroom(monkeypatch, host_a, "keys", "add-version") == 0
    fx_hosts.copy_keyring_to_b()
    leaked = load_keyring_file(keyring_path(fx_hosts.b))  # a copy that leaked before activation
    stale_b = new_cipher(fx_hosts.b)  # a server on B that loaded the staged version, nothing cached yet
    assert await run_strongroom(monkeypatch, host_a, "keys", "discard-version", "2") == 0

    # The number 2 is given to a new key, activated on A without replacing B's copy first.
    capsys.readouterr()
    assert await run_strongroom(monkeypatch, host_a, "keys", "add-version") == 0
    assert "staged KEK version 2" in capsys.readouterr().out
    assert await run_strongroom(monkeypatch, host_a, "keys", "rotate", "--to-version", "2") == 0
    assert await crm.kek_versions_in_use() == {2: 3}

    # The discarded key unwraps none of the DEKs now under version 2 (the version is authenticated, the key differs)
    async with crm.sessions() as session:
        wrapped = (await session.execute(select(DataKeyRow.wrapped).where(DataKeyRow.wrapped.is_not(None))))
        for raw in wrapped.scalars():
            with pytest.raises(DecryptionError, match="wrong KEK or altered"):
                leaked.unwrap_dek(WrappedDek.from_bytes(raw))
    assert await emails_of(crm, stale_b, list(expected)) == dict.fromkeys(expected, UNDECRYPTABLE)  # never wrong
    status_b = await keys.key_status(crm.sessions, new_cipher(fx_hosts.b))
    assert any("which this keyring holds only as staged" in line for line in status_b.lines())

    # Once B's copy is replaced, the same B server reads everything: it re-reads the file that changed.
    fx_hosts.copy_keyring_to_b()
    assert await emails_of(crm, stale_b, list(expected)) == expected


async def test_discard_refuses_unknown_current_and_still_wrapping_versions(
    fx_hosts: Hosts, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    crm, host_a, host_b = fx_hosts.crm, fx_hosts.a, fx_hosts.b
    file_a, file_b = keyring_path(host_a), keyring_path(host_b)
    expected = await customers_with_contacts(crm, crm.cipher, 6)

    async def refused(settings: Settings, *argv: str, environ: dict[str, str] | None = None) -> str:
        """A discard that must be refused: exit 1, one line on standard error, both keyring files untouched."""
        files = {path: path.read_bytes() for path in (file_a, file_b)}
        capsys.readouterr()
        code = await run_strongroom(monkeypatch, settings, "keys", "discard-version", *argv, environ=environ)
        captured = capsys.readouterr()
        assert code == 1, captured
        assert captured.err.startswith("strongroom: ") and captured.err.count("\n") == 1, captured.err
        assert "Traceback" not in captured.err and not captured.out
        assert all(path.read_bytes() == content for path, content in files.items())
        return captured.err

    assert "KEK version 3 is not in the keyring (it holds 1); nothing was discarded" in await refused(host_a, "3")
    assert "not in the keyring" in await refused(host_a, "0")
    err = await refused(host_a, "1")
    assert "KEK version 1 is current: new DEKs are wrapped under it, so it cannot be discarded" in err
    assert "older version" not in err

    assert await run_strongroom(monkeypatch, host_a, "keys", "add-version") == 0
    fx_hosts.copy_keyring_to_b()
    from_environment = {KEYRING_ENV: keyring_env_value(load_keyring_file(file_a))}
    err = await refused(host_a, "2", environ=from_environment)
    assert "STRONGROOM_KEYRING is read-only" in err and from_environment[KEYRING_ENV] not in err

    # A rotation to version 2 interrupted after its first batch: DEKs under both versions.
    with pytest.raises(StopAfterFirstBatch):
        await keys.rotate_kek(crm.sessions, new_cipher(host_a), to_version=2, batch_size=2,
                              progress=FirstBatchOnly())
    assert await crm.kek_versions_in_use() == {1: 4, 2: 2}
    err = await refused(host_a, "2")
    assert "KEK version 2 is current" in err and "4 DEK(s) are still under an older version" in err
    assert "`strongroom keys rotate --to-version 2`" in err
    err = await refused(host_a, "1", "--yes")
    assert "KEK version 1 still wraps 4 DEK(s) in the database: the rotation to version 2 is unfinished" in err
    assert "`strongroom keys rotate --resume`" in err
    err = await refused(host_b, "2")  # B's copy holds version 2 only as staged
    assert "2 DEK(s) in the database are wrapped under KEK version 2, which this keyring holds only as staged" in err
    assert "`strongroom keys rotate --to-version 2`" in err
    assert await run_strongroom(monkeypatch, host_a, "keys", "status") == 0
    assert "KEK version(s) 1 still wrap 4 DEKs: the rotation to version 2 is unfinished" in capsys.readouterr().out
    assert await crm.kek_versions_in_use() == {1: 4, 2: 2}
    assert await _discard_events(crm) == []
    for reader in (new_cipher(host_a), new_cipher(host_b)):
        assert await emails_of(crm, reader, list(expected)) == expected

    # Finished: version 1 wraps nothing any more. Discarding it needs --yes, and says what it costs.
    assert await run_strongroom(monkeypatch, host_a, "keys", "rotate", "--to-version", "2") == 0
    fx_hosts.copy_keyring_to_b()
    capsys.readouterr()
    assert await run_strongroom(monkeypatch, host_a, "keys", "status") == 0
    assert "older KEK version(s) 1 wrap no DEK in this database" in capsys.readouterr().out
    before = file_a.read_bytes()
    assert await run_strongroom(monkeypatch, host_a, "keys", "discard-version", "1") == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("strongroom: KEK version 1 is older than the current version 2")
    assert "backups taken before the rotation away from it finished" in captured.err and "--yes" in captured.err
    assert file_a.read_bytes() == before and await _discard_events(crm) == []

    assert await run_strongroom(monkeypatch, host_a, "keys", "discard-version", "1", "--yes") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"discarded older KEK version 1 from {file_a}; it now holds 2 (current 2)")
    assert "backups taken before the rotation away from version 1 finished need it" in out
    assert _held(file_a) == ((2,), 2) and _mode(file_a) == 0o600
    fx_hosts.copy_keyring_to_b()
    for reader in (crm.cipher, new_cipher(host_a), new_cipher(host_b)):
        assert await emails_of(crm, reader, list(expected)) == expected
    assert await _discarded(crm) == {"kek_version": 1, "was_staged": False, "current_kek_version": 2,
                                     "kek_versions_left": [2]}


async def test_a_dek_wrapped_under_a_discarded_version_is_reported_not_a_500(
    fx_hosts: Hosts, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    crm, host_a = fx_hosts.crm, fx_hosts.a
    file_a = keyring_path(host_a)
    expected = await customers_with_contacts(crm, crm.cipher, 2)
    assert await run_strongroom(monkeypatch, host_a, "keys", "rotate") == 0
    keyring_before_discard = file_a.read_bytes()  # the keyring backup a custodian keeps until every copy is replaced
    # Discarded while B's copy still names version 1 current: the precondition the command states is not met.
    assert await run_strongroom(monkeypatch, host_a, "keys", "discard-version", "1", "--yes") == 0
    async with serving(fx_hosts.b) as api_b:  # B writes a customer: its DEK is wrapped under version 1
        rep = await api_b.create_user(["sales_rep"])
        headers = {"Authorization": f"Bearer {await api_b.token_for(rep)}"}
        customer = (await api_b.client.post("/api/v1/customers", headers=headers,
                                            json={"name": "Stale copy", "kind": "company"})).json()
        created = await api_b.client.post("/api/v1/contacts", headers=headers, json={
            "customer_id": customer["id"], "name": "Chen Jie", "email": "chen.jie@example.com"})
        assert created.status_code == 201, created.text
    assert await crm.kek_versions_in_use() == {1: 1, 2: 2}

    capsys.readouterr()
    assert await run_strongroom(monkeypatch, host_a, "keys", "status") == 0
    assert ("warning: 1 DEKs are wrapped under KEK version(s) 1, which this keyring does not hold"
            in capsys.readouterr().out)
    assert await run_strongroom(monkeypatch, host_a, "keys", "discard-version", "1", "--yes") == 1
    assert "KEK version 1 is not in the keyring (it holds 2)" in capsys.readouterr().err
    assert await run_strongroom(monkeypatch, host_a, "keys", "rotate", "--resume") == 1
    err = capsys.readouterr().err
    assert "cannot be rewrapped" in err and "Traceback" not in err and err.count("\n") == 1

    warnings = LoggedWarnings()
    monkeypatch.setattr(field_cipher, "log", warnings)
    async with serving(host_a) as api_a:  # A's API: the field is reported undecryptable, a write is a 503
        headers = {"Authorization": f"Bearer {await api_a.token_for(rep)}"}
        response = await api_a.client.get(f"/api/v1/contacts/{created.json()['id']}", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["unreadable_fields"] == {"email": "undecryptable"}
        assert "chen.jie" not in response.text
        refused = await api_a.client.post("/api/v1/contacts", headers=headers, json={
            "customer_id": customer["id"], "name": "Wang Fang", "email": "wang.fang@example.com"})
        assert refused.status_code == 503, refused.text
        assert refused.json()["type"].endswith("/key-unavailable") and "Traceback" not in refused.text
    assert [(event["kek_version"], event["held_versions"]) for event in warnings.events] == [(1, [2])]
    assert await emails_of(crm, new_cipher(host_a), list(expected)) == expected

    # Recovery: put the keyring from before the discard back, finish the rotation, then discard again.
    file_a.write_bytes(keyring_before_discard)
    assert await run_strongroom(monkeypatch, host_a, "keys", "rotate", "--resume") == 0
    assert await crm.kek_versions_in_use() == {2: 3}
    assert await run_strongroom(monkeypatch, host_a, "keys", "discard-version", "1", "--yes") == 0
    assert _held(file_a) == ((2,), 2)


async def test_a_keyring_file_that_cannot_be_rewritten_discards_nothing_and_records_nothing(
    fx_hosts: Hosts, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    crm, host_a = fx_hosts.crm, fx_hosts.a
    file_a = keyring_path(host_a)
    expected = await customers_with_contacts(crm, crm.cipher, 2)
    assert await run_strongroom(monkeypatch, host_a, "keys", "add-version") == 0
    before = file_a.read_bytes()

    def disk_full(path: Path, content: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(providers, "_write_new_file", disk_full)
    capsys.readouterr()
    assert await run_strongroom(monkeypatch, host_a, "keys", "discard-version", "2") == 1
    err = capsys.readouterr().err
    assert err == ("strongroom: the keyring file could not be rewritten (No space left on device); nothing was "
                   "discarded\n")
    assert file_a.read_bytes() == before and _held(file_a) == ((1, 2), 1)
    assert await _discard_events(crm) == []  # the event is rolled back with the failed change
    assert await emails_of(crm, new_cipher(host_a), list(expected)) == expected
