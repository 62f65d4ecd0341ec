"""The real command line and server process: init, users, serve, and the README quickstart, on both databases."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import STRONGROOM, clean_env, crash_server, free_port, run_cli, start_server

_free_port, _run = free_port, run_cli


@pytest.fixture(name="fx_env")
def fx_env(tmp_path: Path, fx_database_url: str) -> Iterator[dict[str, str]]:
    """A clean environment with an empty database of the backend under test (fresh, not the shared one)."""
    with clean_env(tmp_path / "var", fx_database_url) as env:
        yield env


@pytest.fixture(name="fx_server_log")
def fx_server_log(tmp_path: Path) -> Path:
    """Where the server process writes its operational log."""
    return tmp_path / "server.log"


@pytest.fixture(name="fx_server")
def fx_server(fx_env: dict[str, str], fx_server_log: Path) -> Iterator[str]:
    init = _run(fx_env, "init", "--admin-username", "root-admin", "--admin-password-stdin",
                stdin="Admin-password-2026\n")
    assert init.returncode == 0, init.stderr
    with fx_server_log.open("w") as log_file:
        try:
            process, base = start_server(fx_env, log_file)
        except RuntimeError as error:
            pytest.fail(f"{error}: {fx_server_log.read_text()}")
        try:
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                crash_server(process)


def test_help_lists_commands() -> None:
    result = subprocess.run([*STRONGROOM, "--help"], capture_output=True, text=True, check=True)
    for command in ("init", "serve", "migrate", "demo", "users"):
        assert f"    {command} " in result.stdout


def test_init_is_idempotent_and_keeps_keys(fx_env: dict[str, str]) -> None:
    first = _run(fx_env, "init")
    assert first.returncode == 0, first.stderr
    assert "one-time password" in first.stdout
    key_file = Path(fx_env["STRONGROOM_DATA_DIR"]) / "keys" / "token-signing.key"
    key = key_file.read_bytes()
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    second = _run(fx_env, "init")
    assert second.returncode == 0, second.stderr
    assert "already exists" in second.stdout
    assert "one-time password" not in second.stdout
    assert key_file.read_bytes() == key


def test_bad_settings_and_missing_keys_stop_the_server(fx_env: dict[str, str]) -> None:
    bad = _run({**fx_env, "STRONGROOM_PORT": "eighty"}, "serve")
    assert bad.returncode == 2
    assert "STRONGROOM_PORT" in bad.stderr
    assert _run(fx_env, "migrate").returncode == 0
    no_keys = _run(fx_env, "serve", "--port", str(_free_port()))
    assert no_keys.returncode == 1
    assert "strongroom init" in no_keys.stderr


def test_readme_quickstart(fx_env: dict[str, str], fx_server: str, fx_server_log: Path) -> None:
    created = _run(fx_env, "users", "create", "alice-e2e", "--role", "sales_rep", "--password-stdin",
                   stdin="Sales-password-2026\n")
    assert created.returncode == 0, created.stderr
    token = httpx.post(f"{fx_server}/api/v1/auth/token", data={
        "grant_type": "password", "username": "alice-e2e", "password": "Sales-password-2026"}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "first-customer"}
    customer = httpx.post(f"{fx_server}/api/v1/customers", headers=headers,
                          json={"name": "Acme Industrial", "kind": "company", "tier": "A", "region": "East China"})
    assert customer.status_code == 201, customer.text
    listed = httpx.get(f"{fx_server}/api/v1/customers", params={"tier": "A", "sort": "name"}, headers=headers)
    assert customer.json()["id"] in [item["id"] for item in listed.json()["items"]]

    disabled = _run(fx_env, "users", "disable", "alice-e2e")
    assert disabled.returncode == 0
    refused = httpx.post(f"{fx_server}/api/v1/auth/token", data={
        "grant_type": "password", "username": "alice-e2e", "password": "Sales-password-2026"})
    assert refused.status_code == 401
    assert httpx.get(f"{fx_server}/schema/openapi.json").status_code == 200

    # The operational log has a line per request with its id, and none of the secrets or personal data.
    contact = httpx.post(f"{fx_server}/api/v1/contacts", headers={"Authorization": headers["Authorization"]},
                         json={"customer_id": customer.json()["id"], "name": "Log Probe",
                               "email": "log.probe@example.com"})
    assert contact.status_code == 401  # alice was disabled above: the token no longer works
    httpx.get(f"{fx_server}/api/v1/customers", params={"name": "Acme Industrial"}, headers=headers)
    time.sleep(0.5)
    log = fx_server_log.read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(line.get("path") == "/api/v1/customers" and line.get("request_id") for line in lines)
    for secret in (token, "Sales-password-2026", "Admin-password-2026", "log.probe@example.com", "Acme Industrial"):
        assert secret not in log


def test_demo_then_erase_from_the_command_line(fx_env: dict[str, str]) -> None:
    assert _run(fx_env, "init").returncode == 0
    demo = _run(fx_env, "demo", "--customers", "5")
    assert demo.returncode == 0, demo.stderr
    assert "5 customers" in demo.stdout
    import asyncio

    from sqlalchemy import text

    from server.config import load_settings
    from server.db import create_engine

    async def first_customer() -> str:
        engine = create_engine(load_settings(fx_env).resolved_database_url)
        try:
            async with engine.connect() as connection:
                value = (await connection.execute(text("SELECT id FROM customers ORDER BY created_at"))).first()[0]
        finally:
            await engine.dispose()
        return str(value if "-" in str(value) else __import__("uuid").UUID(str(value)))

    customer_id = asyncio.run(first_customer())
    refused = _run(fx_env, "erase", customer_id, "--legal-basis", "GDPR Art. 17 test")
    assert refused.returncode == 2  # no --yes: nothing happens
    erased = _run(fx_env, "erase", customer_id, "--legal-basis", "GDPR Art. 17 test", "--yes")
    assert erased.returncode == 0, erased.stderr

    async def erase_events() -> list[str]:
        engine = create_engine(load_settings(fx_env).resolved_database_url)
        try:
            async with engine.connect() as connection:
                return [str(row[0]) for row in await connection.execute(text(
                    "SELECT outcome FROM audit_events WHERE action = 'erase' AND entity_id = :id"),
                    {"id": customer_id})]
        finally:
            await engine.dispose()

    verified = _run(fx_env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout
    assert "intact" in verified.stdout
    # The command goes through the erasure service: one `erase` event about the customer, in the chain.
    assert asyncio.run(erase_events()) == ["ok"]


def test_output_into_a_closed_pipe_ends_quietly(fx_env: dict[str, str]) -> None:
    """`strongroom keys status | head -1`: the reader goes away early; no traceback on the terminal."""
    assert _run(fx_env, "init").returncode == 0
    status = subprocess.Popen([*STRONGROOM, "keys", "status"], env=fx_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    assert status.stdout is not None and status.stderr is not None
    status.stdout.close()  # before the command has written anything: every write meets a closed pipe
    errors = status.stderr.read().decode()
    assert status.wait(timeout=60) == 1
    assert "Traceback" not in errors and "BrokenPipeError" not in errors, errors
