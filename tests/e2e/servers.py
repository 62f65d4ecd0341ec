"""Helpers for tests that run the real ``strongroom`` command and server process."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

import httpx

STRONGROOM = [sys.executable, "-m", "server.cli"]
POSTGRES_ADMIN_URL = os.environ.get("STRONGROOM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STRONGROOM, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120,
                          check=False)


@contextmanager
def clean_env(data_dir: Path, database_url: str) -> Iterator[dict[str, str]]:
    """An environment without STRONGROOM_ settings and with an empty database of the backend under test."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("STRONGROOM_")}
    env.update(STRONGROOM_DATA_DIR=str(data_dir), STRONGROOM_LOG_LEVEL="WARNING")
    if not database_url.startswith("postgresql"):
        yield env
        return
    name = f"strongroom_e2e_{secrets.token_hex(6)}"
    subprocess.run(["psql", POSTGRES_ADMIN_URL, "-q", "-c", f'CREATE DATABASE "{name}"'], check=True,
                   capture_output=True)
    env["STRONGROOM_DATABASE_URL"] = f"{database_url.rsplit('/', 1)[0]}/{name}"
    try:
        yield env
    finally:
        subprocess.run(["psql", POSTGRES_ADMIN_URL, "-q", "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
                       check=False, capture_output=True)


def start_server(env: dict[str, str], log: IO[str]) -> tuple[subprocess.Popen[str], str]:
    """Start ``strongroom serve`` on a free port and wait until it is ready; the process and its base URL."""
    port = free_port()
    # Its own process group: ``crash_server`` kills the master and its worker processes together.
    process = subprocess.Popen([*STRONGROOM, "serve", "--port", str(port)],
                               env={**env, "STRONGROOM_LOG_LEVEL": "INFO"}, stdout=log,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited before it was ready")
        try:
            if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.2)
    crash_server(process)
    raise RuntimeError("server did not become ready within 60 s")


def crash_server(process: subprocess.Popen[str]) -> None:
    """kill -9 of the whole server: the master and every worker at once, as a power cut or OOM kill would.

    Killing only the master leaves its workers running (they are separate processes), still finishing the
    transactions in flight: not a crash.
    """
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
