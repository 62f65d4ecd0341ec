"""A policy change made through one server process is enforced by another within one second."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest


@pytest.fixture(name="fx_second_process")
def fx_second_process(fx_settings: Any, fx_database_url: str) -> Iterator[str]:
    """``strongroom serve`` in its own process, on the same database and keys as the in-process app."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if not key.startswith("STRONGROOM_")}
    env.update(STRONGROOM_DATABASE_URL=fx_database_url, STRONGROOM_KEYS_DIR=str(fx_settings.resolved_keys_dir),
               STRONGROOM_DATA_DIR=fx_settings.data_dir, STRONGROOM_LOG_LEVEL="WARNING")
    process = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("second server process did not start")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


async def test_policy_change_reaches_other_process_within_a_second(fx_api: Any, fx_second_process: str) -> None:
    secadmin = await fx_api.login(["secadmin"])
    role = f"probe_{uuid.uuid4().hex[:8]}"
    assert (await fx_api.client.post("/api/v1/admin/roles", headers=secadmin, json={
        "name": role, "description": "propagation probe"})).status_code == 201
    for obj, action in (("contact", "read"), ("contact", "list"), ("contact.name", "read"),
                        ("contact.phone", "mask")):
        added = await fx_api.client.post("/api/v1/admin/policies", headers=secadmin,
                                         json={"role": role, "object": obj, "action": action})
        assert added.status_code == 201, added.text
    await fx_api.client.put("/api/v1/admin/scopes", headers=secadmin,
                            json={"role": role, "entity": "contact", "scope": "all"})
    rep = await fx_api.login(["sales_rep"])
    customer = (await fx_api.client.post("/api/v1/customers", headers=rep,
                                         json={"name": "Probe", "kind": "company"})).json()
    contact = (await fx_api.client.post("/api/v1/contacts", headers=rep, json={
        "customer_id": customer["id"], "name": "Probe Person", "phone": "13800138000"})).json()
    probe = await fx_api.login([role])
    url = f"{fx_second_process}/api/v1/contacts/{contact['id']}"
    async with httpx.AsyncClient() as other:
        before = await other.get(url, headers=probe)
        assert before.status_code == 200, before.text
        assert before.json()["phone"] == "138****8000"
        changed = await fx_api.client.post("/api/v1/admin/policies", headers=secadmin,
                                           json={"role": role, "object": "contact.phone", "action": "read"})
        assert changed.status_code == 201
        started = time.monotonic()
        while (await other.get(url, headers=probe)).json()["phone"] != "13800138000":
            assert time.monotonic() - started < 1.0, "the other process still masks the field after 1 s"
            await _sleep(0.02)
    assert time.monotonic() - started < 1.0


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
