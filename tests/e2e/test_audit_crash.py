"""kill -9 of the server during a write load: afterwards every committed change has its event, no event
exists for an uncommitted change, and the chain verifies."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx

from server.db import create_engine
from tests.e2e.servers import clean_env, crash_server, run_cli, start_server

WRITERS = 16
PASSWORD = "Sales-password-2026"


def _load(base: str, token: str, stop: threading.Event, acknowledged: list[str]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=5) as client:
        counter = 0
        while not stop.is_set():
            counter += 1
            try:
                response = client.post("/api/v1/customers", json={"name": f"Load {counter}", "kind": "company"})
            except httpx.HTTPError:
                return  # the server is gone
            if response.status_code == 201:
                acknowledged.append(response.json()["id"])


async def _database_state(url: str) -> tuple[set[str], list[str], int]:
    from sqlalchemy import text

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            customers = {str(row[0]) for row in await connection.execute(text("SELECT id FROM customers"))}
            created = [str(row[0]) for row in await connection.execute(text(
                "SELECT entity_id FROM audit_events WHERE entity = 'customer' AND action = 'create'"))]
            pending = (await connection.execute(text("SELECT count(*) FROM audit_pending"))).scalar_one()
    finally:
        await engine.dispose()
    return customers, created, int(pending)


def _normalise(identifier: str) -> str:
    return identifier.replace("-", "").lower()


def test_kill_9_under_write_load_loses_no_event(tmp_path: Path, fx_database_url: str) -> None:
    with clean_env(tmp_path / "var", fx_database_url) as env:
        assert run_cli(env, "init").returncode == 0
        created = run_cli(env, "users", "create", "loader", "--role", "sales_rep", "--password-stdin",
                          stdin=f"{PASSWORD}\n")
        assert created.returncode == 0, created.stderr
        with (tmp_path / "server.log").open("w") as log:
            process, base = start_server(env, log)
            try:
                token = httpx.post(f"{base}/api/v1/auth/token", data={
                    "grant_type": "password", "username": "loader", "password": PASSWORD}).json()["access_token"]
                stop, acknowledged = threading.Event(), []
                writers = [threading.Thread(target=_load, args=(base, token, stop, acknowledged))
                           for _ in range(WRITERS)]
                for writer in writers:
                    writer.start()
                deadline = time.monotonic() + 20
                while len(acknowledged) < 150 and time.monotonic() < deadline:
                    time.sleep(0.05)
                crash_server(process)  # mid-load: transactions in flight, events pending
            finally:
                stop.set()
                if process.poll() is None:
                    crash_server(process)
        for writer in writers:
            writer.join(timeout=10)
        assert len(acknowledged) >= 20, "the load did not get going before the kill"

        url = env.get("STRONGROOM_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_path / 'var' / 'strongroom.db'}"
        # `audit verify` seals whatever the killed server left pending, then verifies the whole chain.
        verified = run_cli(env, "audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        customers, create_events, pending = asyncio.run(_database_state(url))
        assert pending == 0
        assert {_normalise(i) for i in acknowledged} <= {_normalise(i) for i in customers}  # acknowledged = kept
        assert sorted(map(_normalise, create_events)) == sorted(map(_normalise, customers))  # one event each, only
