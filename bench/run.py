"""The benchmark driver: data, both apps, wrk, alternating runs, ratios, targets, JSON and Markdown report.

    python -m bench.run                      # standard profile, SQLite and PostgreSQL (make bench)
    python -m bench.run --smoke              # CI smoke: tiny data, ~1 s per run; checks the harness, not numbers
    python -m bench.run --profile large      # 1M contacts on PostgreSQL

Per backend: a fresh database migrated by Strongroom (``strongroom init``), bench users made with the
``strongroom users`` command, data bulk-loaded by ``bench/datagen.py``, then Strongroom (``strongroom serve``)
and the baseline (``bench/baseline``) served side by side by granian with the same worker count. Each
scenario is warmed up on both, then measured in rounds that alternate the order (baseline, Strongroom;
Strongroom, baseline; ...), so drift on a noisy machine hits both alike. Reported: requests/s, p50/p95/p99
latency (wrk, microsecond histogram), errors, and the ratios Strongroom/baseline. Ratios within one run
are what count; absolute numbers depend on the machine.

Environment: ``STRONGROOM_BENCH_POSTGRES_URL`` (else ``STRONGROOM_TEST_POSTGRES_URL``, else
``postgresql://postgres@127.0.0.1:5432/postgres``) is an admin connection used to create and drop the
benchmark database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import datagen
from bench.scenarios import (
    CLEAR_ROLE,
    MASKED_ROLE,
    NOT_AVAILABLE,
    PENDING_SCENARIOS,
    PII_FIELDS,
    RATE_SCRIPTS,
    REP_ROLE,
    SCENARIOS,
    TARGETS,
    Scenario,
    classify_fields,
    parse_rates,
    probe_features,
)

ROOT = Path(__file__).resolve().parent.parent
LUA_DIR = ROOT / "bench" / "lua"
RESULTS_DIR = ROOT / "bench" / "results"
DOCS_FILE = ROOT / "docs" / "benchmarks.md"
PASSWORD = "Bench-password-2026"
UNIT = "Bench Sales"
COMPARE_SCENARIO = "read_masked"
USERS = {"clear": ("bench.manager", CLEAR_ROLE), "masked": ("bench.marketing", MASKED_ROLE),
         "rep": ("bench.rep", REP_ROLE)}
POSTGRES_ADMIN_URL = os.environ.get("STRONGROOM_BENCH_POSTGRES_URL") or os.environ.get(
    "STRONGROOM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SCHEMA_VERSION = 1


@dataclass
class Settings:
    profile: str
    backends: list[str]
    workers: int
    connections: int
    threads: int
    warmup: int
    duration: int
    rounds: int
    scenarios: list[str]
    log_level: str
    compare_servers: bool
    rate_scripts: bool
    keep: bool
    work_dir: Path
    results_dir: Path
    markdown: Path | None
    label: str
    smoke: bool = False
    settle: float = 1.0  # seconds for in-flight requests to finish after a run
    notes: list[str] = field(default_factory=list)


# -- small helpers -----------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(method: str, url: str, *, token: str | None = None, form: dict[str, str] | None = None,
         timeout: float = 30) -> tuple[int, dict[str, str], Any]:
    data = urllib.parse.urlencode(form).encode() if form else None
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
            status, headers = response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        body, status, headers = error.read(), error.code, dict(error.headers)
    try:
        return status, headers, json.loads(body) if body else None
    except ValueError:
        return status, headers, body.decode(errors="replace")


def tool_version(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (result.stdout + result.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def machine_info() -> dict[str, Any]:
    """Cores, memory, OS and versions, for the report."""
    info: dict[str, Any] = {"cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
                            "platform": platform.platform(), "python": platform.python_version()}
    with contextlib.suppress(OSError):
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
        info["cpu"] = model.group(1).strip() if model else platform.processor()
    with contextlib.suppress(OSError, AttributeError, ValueError):
        total = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        info["memory_gib"] = round(int(total.group(1)) / 1024 / 1024, 1)  # type: ignore[union-attr]
    with contextlib.suppress(OSError, AttributeError):
        release = Path("/etc/os-release").read_text()
        info["os"] = re.search(r'PRETTY_NAME="?([^"\n]+)', release).group(1)  # type: ignore[union-attr]
    versions = {}
    for package in ("strongroom", "litestar", "granian", "msgspec", "sqlalchemy", "asyncpg", "aiosqlite",
                    "uvicorn", "uvloop", "httptools"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    versions["sqlite"] = sqlite3.sqlite_version
    versions["wrk"] = tool_version(["wrk", "-v"]).split(" [")[0].removeprefix("wrk ")
    info["versions"] = versions
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False)
    info["git_commit"] = commit.stdout.strip() if commit.returncode == 0 else "unknown (not a git checkout)"
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False)
    info["git_dirty"] = dirty.returncode == 0 and bool(dirty.stdout.strip())
    info["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


# -- servers -----------------------------------------------------------------------------------------------------


class Server:
    """A server process in its own process group (so its workers stop with it)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int, log_path: Path) -> None:
        self.name, self.command, self.env, self.port, self.log_path = name, command, env, port, log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = f"http://127.0.0.1:{port}"

    def start(self, timeout: float = 60) -> None:
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        with self.log_path.open("ab") as handle:
            self.process = subprocess.Popen(self.command, env=self.env, cwd=ROOT, stdout=handle, stderr=handle,
                                            start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                if http("GET", f"{self.base_url}/health/live", timeout=2)[0] == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer /health/live within {timeout} s:\n{self.log_tail()}")

    def terminate(self) -> None:
        """Ask the server (its process group) to stop, without waiting."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)

    def log_tail(self, size: int = 3000) -> str:
        with contextlib.suppress(OSError):
            data = self.log_path.read_bytes()
            return data[-size:].decode(errors="replace")
        return ""

    def stop(self) -> None:
        self.terminate()
        if self.process is None:
            return
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


# -- wrk -----------------------------------------------------------------------------------------------------------


def run_wrk(base_url: str, scenario: Scenario, *, token: str, ids_file: Path | None, seconds: int,
            settings: Settings) -> dict[str, Any]:
    """One wrk run; returns throughput, latency percentiles (ms) and errors."""
    env = {**os.environ, "BENCH_LUA_DIR": str(LUA_DIR), "BENCH_TOKEN": token, "BENCH_PATH": scenario.path,
           "BENCH_IDS": str(ids_file) if ids_file else "", "BENCH_THREADS": str(settings.threads)}
    command = ["wrk", "-t", str(settings.threads), "-c", str(settings.connections), "-d", f"{seconds}s",
               "--timeout", "30s", "-s", str(LUA_DIR / scenario.script), base_url]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False)
    time.sleep(settings.settle / 3)  # let requests in flight when wrk stopped finish before the next run
    line = next((row for row in result.stdout.splitlines() if row.startswith("BENCH_RESULT ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stdout[-1500:]} {result.stderr[-1500:]}")
    raw = json.loads(line.removeprefix("BENCH_RESULT "))
    errors = raw["errors"]
    latency = raw["latency_us"]
    return {
        "requests": raw["requests"],
        "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "p50_ms": latency["p50"] / 1000, "p95_ms": latency["p95"] / 1000, "p99_ms": latency["p99"] / 1000,
        "mean_ms": round(latency["mean"] / 1000, 3), "max_ms": latency["max"] / 1000,
        "non_2xx": errors["status"], "socket_errors": errors["connect"] + errors["read"] + errors["write"],
        "timeouts": errors["timeout"],
    }


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of the measured runs (each metric on its own) and the error total."""
    if not runs:
        return {}
    out: dict[str, Any] = {key: round(statistics.median(run[key] for run in runs), 3)
                           for key in ("rps", "p50_ms", "p95_ms", "p99_ms")}
    rates = [run["rps"] for run in runs]
    out["spread"] = round((max(rates) - min(rates)) / out["rps"], 3) if out["rps"] else None
    out["requests"] = sum(run["requests"] for run in runs)
    out["errors"] = sum(run["non_2xx"] + run["socket_errors"] + run["timeouts"] for run in runs)
    out["runs"] = runs
    return out


# -- database access for the driver -------------------------------------------------------------------------------


async def _users(url: str, names: list[str]) -> dict[str, Any]:
    from sqlalchemy import select

    from server.db import create_engine
    from server.security.identity import User

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(select(User).where(User.username.in_(names)))).all()
            return {row.username: row for row in rows}
    finally:
        await engine.dispose()


async def _schema(url: str) -> dict[str, list[str]]:
    from sqlalchemy import inspect

    from server.db import create_engine

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            def read(sync: Any) -> dict[str, list[str]]:
                inspector = inspect(sync)
                return {name: [c["name"] for c in inspector.get_columns(name)] for name in inspector.get_table_names()}

            return await connection.run_sync(read)
    finally:
        await engine.dispose()


async def _versions(url: str, ids: list[str]) -> list[tuple[str, int]]:
    from sqlalchemy import select

    from server.db import create_engine
    from server.domain.contacts import Contact

    engine = create_engine(url)
    found: dict[str, int] = {}
    try:
        async with engine.connect() as connection:
            for start in range(0, len(ids), 500):
                chunk = [uuid.UUID(value) for value in ids[start:start + 500]]
                rows = await connection.execute(select(Contact.id, Contact.version).where(Contact.id.in_(chunk)))
                found.update({str(row[0]): int(row[1]) for row in rows})
    finally:
        await engine.dispose()
    return [(value, found[value]) for value in ids if value in found]


def _postgres_admin(statement: str) -> None:
    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


# -- one backend -------------------------------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    url: str
    env: dict[str, str]
    work: Path
    ids: dict[str, Path] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    pg_database: str | None = None


def prepare(name: str, settings: Settings) -> tuple[Backend, dict[str, Any]]:
    """A fresh database with Strongroom's schema, the bench users and the profile's data."""
    work = settings.work_dir / name
    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    pg_database = None
    if name == "sqlite":
        url = f"sqlite+aiosqlite:///{work / 'data' / 'strongroom.db'}"
    else:
        pg_database = f"strongroom_bench_{settings.profile}"
        _postgres_admin(f'DROP DATABASE IF EXISTS "{pg_database}" WITH (FORCE)')
        _postgres_admin(f'CREATE DATABASE "{pg_database}"')
        host_part = POSTGRES_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
        url = f"postgresql+asyncpg://{host_part}/{pg_database}"
    env = {**os.environ, "STRONGROOM_DATA_DIR": str(work / "data"), "STRONGROOM_DATABASE_URL": url,
           "STRONGROOM_TOKEN_TTL_SECONDS": "86400", "STRONGROOM_LOG_LEVEL": settings.log_level,
           "STRONGROOM_WORKERS": str(settings.workers), "PYTHONPATH": str(ROOT)}
    backend = Backend(name, url, env, work, pg_database=pg_database)
    started = time.perf_counter()

    def cli(*arguments: str, optional: bool = False) -> bool:
        """Run a ``strongroom`` command; with ``optional``, a command this version lacks answers False."""
        result = subprocess.run([sys.executable, "-m", "server.cli", *arguments], env=env, cwd=ROOT,
                                input=PASSWORD + "\n", capture_output=True, text=True, check=False)
        if optional and result.returncode == 2 and "invalid choice" in result.stderr:
            return False
        if result.returncode != 0:
            raise RuntimeError(f"strongroom {' '.join(arguments)} failed: {result.stdout}{result.stderr}")
        return True

    cli("init", "--admin-password-stdin")
    unit = ["--unit", UNIT] if cli("units", "create", UNIT, optional=True) else []  # org units, once they exist
    cli("users", "create", USERS["clear"][0], "--role", CLEAR_ROLE, "--password-stdin", *unit)
    cli("users", "create", USERS["masked"][0], "--role", MASKED_ROLE, "--password-stdin", *unit)
    cli("users", "create", USERS["rep"][0], "--role", REP_ROLE, "--password-stdin", "--manager", USERS["clear"][0],
        *unit)
    users = asyncio.run(_users(url, [USERS["clear"][0], USERS["rep"][0]]))
    manager, rep = users[USERS["clear"][0]], users[USERS["rep"][0]]
    setup_seconds = time.perf_counter() - started
    log(f"{name}: schema and users ready in {setup_seconds:.1f} s; loading the {settings.profile} profile")
    report = asyncio.run(datagen.load(
        url, datagen.PROFILES[settings.profile], out_dir=work / "ids", owners=[rep.id], manager_id=manager.id,
        owner_password_hash=rep.password_hash, org_unit_id=getattr(rep, "org_unit_id", None)))
    log(f"{name}: loaded {sum(report.rows.values()):,} rows in {report.seconds:.1f} s")
    backend.ids = {key: Path(path) for key, path in report.files.items()}
    return backend, {"setup_s": round(setup_seconds, 2), "data": report.as_dict()}


def _normalise(value: Any) -> Any:
    """Comparable form of a JSON value (timestamps and money as the two apps may spell them)."""
    if isinstance(value, str) and re.match(r"^\d{4}-\d\d-\d\dT", value):
        with contextlib.suppress(ValueError):
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat()
    return value


def checks(backend: Backend, strongroom: Server, baseline: Server) -> dict[str, Any]:
    """Both apps answer the same record alike (fairness), and what the masked role sees today."""
    # The sample contact with the most PII filled in (so that masking shows), read from the baseline.
    best: tuple[int, str, Any] = (-1, "", None)
    for contact in backend.ids["contacts"].read_text().split()[:30]:
        _, _, record = http("GET", f"{baseline.base_url}/api/v1/contacts/{contact}")
        filled = sum(1 for name in PII_FIELDS if isinstance(record, dict) and record.get(name) is not None)
        if filled > best[0]:
            best = (filled, contact, record)
    _, contact, theirs = best
    path = f"/api/v1/contacts/{contact}"
    status_s, _, ours = http("GET", strongroom.base_url + path, token=backend.tokens["clear"])
    status_b = 200 if isinstance(theirs, dict) else 0
    status_m, _, masked = http("GET", strongroom.base_url + path, token=backend.tokens["masked"])
    result: dict[str, Any] = {"read_status": {"strongroom": status_s, "baseline": status_b,
                                              "strongroom_masked_role": status_m}}
    if isinstance(ours, dict) and isinstance(theirs, dict):
        # Fields the policy masks or hides even for the clear role (national_id) are not compared.
        withheld = sorted(key for key in theirs if key not in ours or (
            isinstance(ours[key], str) and "*" in ours[key] and ours[key] != theirs[key]))
        differing = sorted(key for key in set(ours) | set(theirs) if key not in withheld
                           and _normalise(ours.get(key)) != _normalise(theirs.get(key)))
        result["same_answer"] = not differing
        result["differing_fields"] = differing
        result["withheld_from_clear_role"] = withheld
        if isinstance(masked, dict):
            result["masked_role_sees"] = classify_fields(ours, masked)
    return result


def token_for(server: Server, username: str) -> str:
    status, _, body = http("POST", f"{server.base_url}/api/v1/auth/token",
                           form={"grant_type": "password", "username": username, "password": PASSWORD})
    if status != 200 or not isinstance(body, dict):
        raise RuntimeError(f"token for {username}: HTTP {status} {body}")
    return str(body["access_token"])


def ids_file_for(backend: Backend, scenario: Scenario, settings: Settings) -> Path | None:
    if scenario.ids is None:
        return None
    if scenario.ids != "versions":
        return backend.ids[scenario.ids]
    # Current versions of the update pool, read just before each run (both apps change the same rows). The
    # pause lets the requests still in flight when the previous wrk run stopped commit first.
    time.sleep(settings.settle)
    pool = backend.ids["contacts"].read_text().split()
    rows = asyncio.run(_versions(backend.url, pool))
    path = backend.work / "ids" / "versions.txt"
    path.write_text("".join(f"{value} {version}\n" for value, version in rows))
    return path


def run_scenario(scenario: Scenario, backend: Backend, servers: dict[str, Server], settings: Settings
                 ) -> dict[str, Any]:
    """Warm up both apps, then measured rounds in alternating order."""
    token = backend.tokens[scenario.user]
    apps = ("baseline", "strongroom")
    if settings.warmup > 0:
        for app in apps:
            run_wrk(servers[app].base_url, scenario, token=token, ids_file=ids_file_for(backend, scenario, settings),
                    seconds=settings.warmup, settings=settings)
    runs: dict[str, list[dict[str, Any]]] = {app: [] for app in apps}
    for round_number in range(settings.rounds):
        for app in apps if round_number % 2 == 0 else tuple(reversed(apps)):
            ids_file = ids_file_for(backend, scenario, settings)
            result = run_wrk(servers[app].base_url, scenario, token=token, ids_file=ids_file,
                             seconds=settings.duration, settings=settings)
            result["round"] = round_number
            runs[app].append(result)
    summary = {app: aggregate(app_runs) for app, app_runs in runs.items()}
    baseline, ours = summary["baseline"], summary["strongroom"]
    entry: dict[str, Any] = {"title": scenario.title, "note": scenario.note, "status": "measured", **summary}
    entry["ratio_rps"] = round(ours["rps"] / baseline["rps"], 3) if baseline["rps"] else None
    entry["ratio_p95"] = round(ours["p95_ms"] / baseline["p95_ms"], 3) if baseline["p95_ms"] else None
    error_rates = {app: (summary[app]["errors"] / summary[app]["requests"]) if summary[app]["requests"] else 1.0
                   for app in apps}
    entry["valid"] = all(rate <= 0.01 for rate in error_rates.values())
    if not all(summary[app]["requests"] for app in apps):
        entry["note"] = (entry["note"] + "; " if entry["note"] else "") + "no request completed within a run"
    elif not entry["valid"]:
        entry["note"] = (entry["note"] + "; " if entry["note"] else "") + "errors above 1%: " + ", ".join(
            f"{app} {rate:.1%}" for app, rate in error_rates.items())
    return entry


def bench_backend(name: str, settings: Settings, prepared: tuple[Backend, dict[str, Any]] | None = None
                  ) -> dict[str, Any]:
    started = time.perf_counter()
    backend, result = prepared or prepare(name, settings)
    result["features"] = features = probe_features(asyncio.run(_schema(backend.url)))
    if features["encryption_schema"] and features["datagen_sealing"] == "plain values":
        warning = ("Strongroom's schema has blind-index columns (column encryption), but bench/datagen.py still "
                   "writes plain values: the generated rows are not what Strongroom stores, so reads of them are "
                   "not representative. Implement datagen.seal_value/seal_row and set datagen.SEALS_VALUES.")
        result["warnings"] = [warning]
        log(f"{name}: WARNING {warning}")
    servers = {
        "strongroom": Server("strongroom", [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1",
                                            "--port", str(port := free_port()), "--workers", str(settings.workers)],
                             backend.env, port, backend.work / "strongroom.log"),
        "baseline": Server("baseline", [sys.executable, "-m", "bench.baseline.serve", "--host", "127.0.0.1",
                                        "--port", str(bport := free_port()), "--workers", str(settings.workers)],
                           backend.env, bport, backend.work / "baseline.log"),
    }
    try:
        for server in servers.values():
            server.launch()
        for server in servers.values():
            server.wait_ready()
        for key, (username, _role) in USERS.items():
            backend.tokens[key] = token_for(servers["strongroom"], username)
        result["checks"] = checks(backend, servers["strongroom"], servers["baseline"])
        if settings.compare_servers and name == "sqlite":  # first, while both servers are fresh and idle
            log(f"{name}: granian vs uvicorn")
            result["server_comparison"] = compare_servers(backend, servers, settings)
        scenarios: dict[str, Any] = {}
        for scenario in SCENARIOS:
            if scenario.name not in settings.scenarios:
                continue
            if scenario.requires and not result["features"].get(scenario.requires) and not settings.smoke:
                scenarios[scenario.name] = {"title": scenario.title, "status": NOT_AVAILABLE,
                                            "note": f"needs the {scenario.requires} feature"}
                continue
            log(f"{name}: {scenario.name}")
            try:
                scenarios[scenario.name] = run_scenario(scenario, backend, servers, settings)
            except RuntimeError as error:
                scenarios[scenario.name] = {"title": scenario.title, "status": "failed", "note": str(error)[:2000]}
        for key, (title, feature) in PENDING_SCENARIOS.items():
            scenarios[key] = {"title": title, "status": NOT_AVAILABLE,
                              "note": f"needs the {feature} feature" + (
                                  " (its table exists; the scenario is not written yet)"
                                  if result["features"].get(feature) else "")}
        result["scenarios"] = scenarios
    finally:
        for server in servers.values():
            server.terminate()
        for server in servers.values():
            server.stop()
        if backend.pg_database and not settings.keep:
            _postgres_admin(f'DROP DATABASE IF EXISTS "{backend.pg_database}" WITH (FORCE)')
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def compare_servers(backend: Backend, servers: dict[str, Server], settings: Settings) -> dict[str, Any]:
    """Strongroom's single read under granian and under uvicorn (uvloop + httptools), alternating."""
    try:
        import httptools  # noqa: F401
        import uvicorn  # noqa: F401
        import uvloop  # noqa: F401
    except ImportError:
        return {"status": NOT_AVAILABLE, "note": "pip install uvicorn uvloop httptools into the venv to compare"}
    port = free_port()
    uvicorn_server = Server("uvicorn", [sys.executable, "-m", "uvicorn", "server.app:create_app_from_env",
                                        "--factory", "--host", "127.0.0.1", "--port", str(port), "--workers",
                                        str(settings.workers), "--loop", "uvloop", "--http", "httptools",
                                        "--no-access-log", "--log-level", "warning"],
                            backend.env, port, backend.work / "uvicorn.log")
    # The masked read: scope "all", so the number is the server and the request path, not a slow scope query.
    scenario = next(s for s in SCENARIOS if s.name == COMPARE_SCENARIO)
    try:
        uvicorn_server.start()
        contenders = {"granian": servers["strongroom"], "uvicorn": uvicorn_server}
        runs: dict[str, list[dict[str, Any]]] = {key: [] for key in contenders}
        for server in contenders.values():
            if settings.warmup:
                run_wrk(server.base_url, scenario, token=backend.tokens[scenario.user],
                        ids_file=backend.ids["contacts"], seconds=settings.warmup, settings=settings)
        for round_number in range(max(settings.rounds, 2)):
            order = list(contenders) if round_number % 2 == 0 else list(reversed(contenders))
            for key in order:
                runs[key].append(run_wrk(contenders[key].base_url, scenario, token=backend.tokens[scenario.user],
                                         ids_file=backend.ids["contacts"], seconds=settings.duration,
                                         settings=settings))
        summary: dict[str, Any] = {key: aggregate(value) for key, value in runs.items()}
        summary["status"] = "measured"
        summary["scenario"] = scenario.name
        summary["measured_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        summary["ratio_rps_granian_over_uvicorn"] = (round(summary["granian"]["rps"] / summary["uvicorn"]["rps"], 3)
                                                     if summary["uvicorn"]["rps"] else None)
        return summary
    finally:
        uvicorn_server.stop()


# -- other helpers' rate scripts -------------------------------------------------------------------------------


def collect_rates(settings: Settings) -> dict[str, Any]:
    """Run the other helpers' rate scripts that exist (bench/<module>.py) and pick their rates out."""
    rates: dict[str, Any] = {}
    for module, patterns in RATE_SCRIPTS.items():
        script = ROOT / "bench" / f"{module}.py"
        if not script.exists():
            rates.update({key: {"status": NOT_AVAILABLE, "note": f"bench/{module}.py does not exist yet"}
                          for key in patterns})
            continue
        if not settings.rate_scripts:
            rates.update({key: {"status": "skipped", "note": f"bench/{module}.py is not run in this mode"}
                          for key in patterns})
            continue
        log(f"rates: bench/{module}.py")
        started = time.perf_counter()
        try:
            result = subprocess.run([sys.executable, "-m", f"bench.{module}"], cwd=ROOT, capture_output=True,
                                    text=True, timeout=600, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
            output, code = result.stdout + result.stderr, result.returncode
        except subprocess.TimeoutExpired:
            output, code = "timed out after 600 s", -1
        found = parse_rates(output, patterns) if code == 0 else {}
        for key in patterns:
            common = {"script": f"bench/{module}.py", "seconds": round(time.perf_counter() - started, 1),
                      "output": output[-3000:]}
            if key in found:
                lines = found[key]["lines"]
                rates[key] = {"status": "measured", "per_s": found[key]["per_s"], **common,
                              "note": f"bench/{module}.py" + (f", lowest of {lines} lines" if lines > 1 else "")}
            else:
                rates[key] = {"status": "failed" if code else "unrecognised", **common,
                              "note": f"bench/{module}.py exit {code}; no rate recognised in its output"}
    return rates


# -- targets ---------------------------------------------------------------------------------------------------


def evaluate_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each of the issue's targets: met, missed or not available yet, with the value it was judged on."""
    out = []
    for target in TARGETS:
        entry: dict[str, Any] = {"key": target.key, "target": target.text}
        if target.kind == "rate":
            rate = report["rates"].get(target.rate or "", {})
            if rate.get("status") != "measured":
                entry.update(status=NOT_AVAILABLE if rate.get("status") in (None, NOT_AVAILABLE) else rate["status"],
                             note=rate.get("note", ""))
            else:
                entry.update(value=f"{rate['per_s']:,.0f}/s", status="met" if rate["per_s"] >= target.bound
                             else "missed", note=rate.get("note", ""))
            out.append(entry)
            continue
        judged, notes, missing = [], [], []
        for backend_name in target.backends:
            backend = report["backends"].get(backend_name)
            if backend is None:
                continue
            if target.requires and not backend.get("features", {}).get(target.requires):
                missing.append(backend_name)
                continue
            for name in target.scenarios:
                scenario = backend.get("scenarios", {}).get(name, {})
                if scenario.get("status") != "measured":
                    continue
                if target.kind == "ratio":
                    value = scenario["ratio_rps"]
                    judged.append((value, f"{backend_name} {name} {value:.2f}x", value >= target.bound
                                   and scenario["valid"]))
                else:
                    value = scenario["strongroom"]["p95_ms"]
                    judged.append((value, f"{backend_name} {name} p95 {value:.2f} ms", value < target.bound
                                   and scenario["valid"]))
                if not scenario["valid"]:
                    notes.append(f"{backend_name} {name}: errors above 1%")
        if target.requires and missing and not judged:
            entry.update(status=NOT_AVAILABLE, note=f"needs the {target.requires} feature")
        elif not judged:
            entry.update(status=NOT_AVAILABLE, note="not measured in this run (backend or scenario not run)")
        else:
            entry["value"] = "; ".join(text for _v, text, _ok in judged)
            entry["status"] = "met" if all(ok for _v, _t, ok in judged) else "missed"
            if target.key == "audited_write" and not any(b.get("features", {}).get("audit")
                                                         for b in report["backends"].values()):
                notes.append("writes are not audited yet: provisional")
            if target.at_scale and report["profile"] != "large":
                notes.append(f"measured at the {report['profile']} profile; the target is stated at {target.at_scale}")
            entry["note"] = "; ".join(notes)
        out.append(entry)
    return out


# -- report ----------------------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def markdown(report: dict[str, Any]) -> str:
    machine, settings = report["machine"], report["settings"]
    versions = machine.get("versions", {})
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m bench.run` (make bench). Do not edit by hand: re-run the benchmark. -->",
        "",
        f"Run of {report['started_at']} ({report['label']}), {report['duration_s']:.0f} s in all. Raw results: "
        f"`{report.get('results_file', '')}`.",
        "",
        "Strongroom is compared with `bench/baseline/`: the same tables, database, driver, serializer (msgspec), "
        "ASGI server (granian) and worker count, without authentication, authorization, masking, encryption, "
        "audit or access log. Both apps serve side by side; each scenario is warmed up on both, then measured "
        f"in {settings['rounds']} rounds of {settings['duration_s']} s that alternate which app goes first. "
        f"Load: wrk, {settings['connections']} connections, {settings['threads']} thread(s), on the same machine. "
        "Throughput and latency are medians over the rounds; *spread* is the range of the rounds' throughput "
        "over their median (a noise gauge). **Ratios within this run are what count**: the "
        "machine is shared and noisy, and the load generator competes with the servers for the same cores.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {machine.get('cpu', '?')}, {machine.get('cores')} cores ({machine.get('usable_cores')} usable) |",
        f"| Memory | {machine.get('memory_gib', '?')} GiB |",
        f"| OS | {machine.get('os', machine.get('platform'))} |",
        f"| Python | {machine.get('python')} |",
        "| Versions | " + ", ".join(f"{name} {version}" for name, version in versions.items()) + " |",
        f"| PostgreSQL | {machine.get('postgresql', 'not used')} |",
        f"| Commit | {machine.get('git_commit')}{' (with uncommitted changes)' if machine.get('git_dirty') else ''} |",
        f"| Load average (start, end) | {machine.get('load_average_start')} / {machine.get('load_average_end')} |",
        f"| Workers per app | {settings['workers']} |",
        "",
    ]
    for name, backend in report["backends"].items():
        data = backend.get("data", {})
        rows = data.get("rows", {})
        lines += [
            f"## {name}",
            "",
            f"Data ({data.get('profile')} profile, loaded in {data.get('seconds')} s): "
            + ", ".join(f"{count:,} {table}" for table, count in rows.items())
            + f"; audit events: {data.get('audit', {}).get('status', '?')}.",
            "",
        ]
        lines += [f"**Warning:** {warning}" for warning in backend.get("warnings", [])]
        if backend.get("warnings"):
            lines.append("")
        check = backend.get("checks", {})
        if check:
            seen = check.get("masked_role_sees", {})
            lines += [
                "Fairness check: both apps answer the same contact "
                + ("identically" if check.get("same_answer")
                   else "differently: " + ", ".join(check.get("differing_fields", [])))
                + (f" (except what the policy withholds from {CLEAR_ROLE}: "
                   + ", ".join(check["withheld_from_clear_role"]) + ")" if check.get("withheld_from_clear_role")
                   else "") + "."
                + (f" The {MASKED_ROLE} role currently sees PII fields as: "
                   + ", ".join(f"{k} {v}" for k, v in seen.items()) + "." if seen else ""),
                "",
            ]
        lines += [
            "| Scenario | Baseline req/s | Strongroom req/s | Ratio | Baseline p50 / p95 / p99 ms "
            "| Strongroom p50 / p95 / p99 ms | p95 ratio | Errors (B/S) | Spread (B/S) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for key, scenario in backend.get("scenarios", {}).items():
            title = f"{scenario['title']} (`{key}`)"
            if scenario.get("status") != "measured":
                lines.append(f"| {title} | | | {scenario.get('status')} | | | | {scenario.get('note', '')} | |")
                continue
            b, s = scenario["baseline"], scenario["strongroom"]
            flag = "" if scenario["valid"] else " ⚠"
            lines.append(
                f"| {title} | {b['rps']:,.0f} | {s['rps']:,.0f} | **{_ratio(scenario['ratio_rps'])}**{flag} "
                f"| {_ms(b['p50_ms'])} / {_ms(b['p95_ms'])} / {_ms(b['p99_ms'])} "
                f"| {_ms(s['p50_ms'])} / {_ms(s['p95_ms'])} / {_ms(s['p99_ms'])} "
                f"| {_ratio(scenario['ratio_p95'])} | {b['errors']}/{s['errors']} "
                f"| {_pct(b.get('spread'))}/{_pct(s.get('spread'))} |")
        notes = [f"`{k}`: {v['note']}" for k, v in backend.get("scenarios", {}).items()
                 if v.get("status") == "measured" and v.get("note")]
        if notes:
            lines += ["", "Notes: " + "; ".join(notes) + "."]
        comparison = backend.get("server_comparison")
        if comparison and comparison.get("status") == "measured":
            g, u = comparison["granian"], comparison["uvicorn"]
            lines += [
                "",
                f"ASGI server choice (Strongroom, `{comparison.get('scenario')}`, {settings['workers']} workers, "
                f"measured {comparison.get('measured_at', '')}): granian "
                f"{g['rps']:,.0f} req/s (p95 {_ms(g['p95_ms'])} ms) vs uvicorn + uvloop + httptools "
                f"{u['rps']:,.0f} req/s (p95 {_ms(u['p95_ms'])} ms): granian/uvicorn "
                f"**{_ratio(comparison['ratio_rps_granian_over_uvicorn'])}**."
                + (f" {comparison['note']}" if comparison.get("note") else ""),
            ]
        lines.append("")
    if report.get("notes"):
        lines += ["## Notes on this run", "", *(f"- {note}" for note in report["notes"]), ""]
    lines += ["## Targets", "", "| Target | Measured | Status | Note |", "|---|---|---|---|"]
    for target in report["targets"]:
        status = {"met": "✅ met", "missed": "❌ missed"}.get(target["status"], target["status"])
        lines.append(f"| {target['target']} | {target.get('value', '')} | {status} | {target.get('note', '')} |")
    lines += [
        "",
        "## How to run",
        "",
        "```bash",
        "make bench                        # standard profile, SQLite + PostgreSQL; writes bench/results/<date>.json"
        " and this file",
        "python -m bench.run --smoke       # CI smoke mode: tiny data, seconds (tests/bench/test_bench_smoke.py)",
        "python -m bench.run --profile large --backends postgresql   # 1M contacts",
        "```",
        "",
        "Needs `wrk` (Debian package `wrk`) and PostgreSQL on 127.0.0.1:5432 (`STRONGROOM_BENCH_POSTGRES_URL`). "
        "See `bench/README.md`.",
        "",
    ]
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------------------------

MODES = {
    # profile, warmup s, duration s, rounds, connections, workers
    "smoke": ("smoke", 0, 1, 1, 4, 1),
    "standard": ("standard", 2, 7, 2, 16, 2),
    "large": ("large", 3, 10, 2, 16, 2),
}


def parse_args(argv: list[str] | None) -> tuple[Settings, bool]:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny data and ~1 s runs: checks the harness only")
    parser.add_argument("--profile", choices=sorted(datagen.PROFILES), help="data profile (default standard)")
    parser.add_argument("--backends", help="comma-separated: sqlite,postgresql (large: postgresql)")
    parser.add_argument("--scenarios", help="comma-separated subset of: " + ", ".join(s.name for s in SCENARIOS))
    parser.add_argument("--workers", type=int, help="server workers per app (default STRONGROOM_WORKERS or cores)")
    parser.add_argument("--connections", type=int, help="wrk connections (clients)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: leave cores to servers)")
    parser.add_argument("--warmup", type=int, help="warm-up seconds per app and scenario")
    parser.add_argument("--duration", type=int, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, help="measured runs per app and scenario (alternating order)")
    parser.add_argument("--log-level", default="INFO", help="Strongroom's STRONGROOM_LOG_LEVEL (default INFO)")
    parser.add_argument("--compare-servers", action="store_true",
                        help="also measure Strongroom's single read under uvicorn (needs uvicorn, uvloop, httptools)")
    parser.add_argument("--no-rate-scripts", action="store_true", help="do not run bench/*_rate(s).py")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and PostgreSQL database")
    parser.add_argument("--work-dir", type=Path, help="where databases, keys and logs go (default: a temp dir)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON result goes")
    parser.add_argument("--markdown", type=Path, help=f"Markdown report path (default {DOCS_FILE.relative_to(ROOT)}"
                                                      " except in smoke mode)")
    parser.add_argument("--no-markdown", action="store_true", help="write no Markdown report")
    parser.add_argument("--label", help="a label for this run in the report (e.g. 'reduced')")
    parser.add_argument("--note", action="append", default=[],
                        help="a note for the report's 'Notes on this run' (repeatable; kept in the JSON)")
    parser.add_argument("--report", type=Path, metavar="RESULTS_JSON",
                        help="only re-write the Markdown report from an earlier results file")
    args = parser.parse_args(argv)
    if args.report:
        report = json.loads(args.report.read_text())
        report["targets"] = evaluate_targets(report)
        if args.note:
            report["notes"] = [*report.get("notes", []), *args.note]
            args.report.write_text(json.dumps(report, indent=2, default=str) + "\n")
        target = args.markdown or DOCS_FILE
        target.write_text(markdown(report))
        print(f"report: {target}")
        raise SystemExit(0)
    mode = "smoke" if args.smoke else (args.profile or "standard")
    profile, warmup, duration, rounds, connections, workers = MODES.get(mode, MODES["standard"])
    profile = args.profile or profile
    default_backends = "postgresql" if profile == "large" else "sqlite,postgresql"
    known = {s.name for s in SCENARIOS}
    scenarios = [name.strip() for name in (args.scenarios or ",".join(known)).split(",") if name.strip()]
    unknown = set(scenarios) - known
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}")
    if not args.smoke:
        workers = int(os.environ.get("STRONGROOM_WORKERS") or os.cpu_count() or workers)
    settings = Settings(
        profile=profile,
        backends=[b.strip() for b in (args.backends or default_backends).split(",") if b.strip()],
        workers=args.workers or workers,
        connections=args.connections or connections,
        threads=args.threads,
        warmup=warmup if args.warmup is None else args.warmup,
        duration=args.duration or duration,
        rounds=args.rounds or rounds,
        scenarios=scenarios,
        log_level=args.log_level,
        compare_servers=args.compare_servers,
        rate_scripts=not args.smoke and not args.no_rate_scripts,
        keep=args.keep,
        work_dir=args.work_dir or Path(tempfile.gettempdir()) / f"strongroom-bench-{os.getpid()}",
        results_dir=args.results_dir,
        markdown=None if args.no_markdown else (args.markdown or (None if args.smoke else DOCS_FILE)),
        label=args.label or ("smoke" if args.smoke else f"{profile} profile"),
        notes=args.note,
        smoke=args.smoke,
        settle=0.3 if args.smoke else 1.0,
    )
    bad = set(settings.backends) - {"sqlite", "postgresql"}
    if bad:
        parser.error(f"unknown backends {sorted(bad)}")
    return settings, args.smoke


def main(argv: list[str] | None = None) -> int:
    settings, smoke = parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2
    started_at = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "mode": "smoke" if smoke else settings.profile, "profile": settings.profile,
        "label": settings.label, "started_at": started_at.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {"workers": settings.workers, "connections": settings.connections, "threads": settings.threads,
                     "warmup_s": settings.warmup, "duration_s": settings.duration, "rounds": settings.rounds,
                     "driver": "wrk", "strongroom_log_level": settings.log_level,
                     "roles": {"clear": CLEAR_ROLE, "masked": MASKED_ROLE}},
        "backends": {},
        "notes": settings.notes,
    }
    log(f"{report['label']}: backends {', '.join(settings.backends)}, {settings.workers} workers per app, "
        f"work dir {settings.work_dir}")
    try:
        if "postgresql" in settings.backends:
            with contextlib.suppress(Exception):
                version = asyncio.run(_pg_version())
                report["machine"]["postgresql"] = version
        prepared: dict[str, Any] = {}
        if smoke and len(settings.backends) > 1:  # numbers do not count in smoke mode: set up side by side
            with ThreadPoolExecutor(len(settings.backends)) as pool:
                futures = {name: pool.submit(prepare, name, settings) for name in settings.backends}
                prepared = {name: future.result() for name, future in futures.items()}
        for backend in settings.backends:
            report["backends"][backend] = bench_backend(backend, settings, prepared.get(backend))
        report["rates"] = collect_rates(settings)
    finally:
        if not settings.keep:
            shutil.rmtree(settings.work_dir, ignore_errors=True)
    report["targets"] = evaluate_targets(report)
    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    report["duration_s"] = round(time.perf_counter() - started, 1)
    settings.results_dir.mkdir(parents=True, exist_ok=True)
    suffix = "" if report["mode"] == "standard" else f"-{report['mode']}"
    results_file = settings.results_dir / f"{started_at.date().isoformat()}{suffix}.json"
    with contextlib.suppress(ValueError):
        report["results_file"] = str(results_file.relative_to(ROOT))
    report.setdefault("results_file", str(results_file))
    results_file.write_text(json.dumps(report, indent=2, default=str) + "\n")
    log(f"results: {results_file}")
    if settings.markdown:
        settings.markdown.parent.mkdir(parents=True, exist_ok=True)
        settings.markdown.write_text(markdown(report))
        log(f"report: {settings.markdown}")
    for target in report["targets"]:
        log(f"target {target['status']:>18}: {target['target']} {target.get('value', '')}")
    failed = [f"{b}/{name}" for b, backend in report["backends"].items()
              for name, scenario in backend.get("scenarios", {}).items() if scenario.get("status") == "failed"]
    if failed:
        log(f"failed scenarios: {', '.join(failed)}")
        return 1
    return 0


async def _pg_version() -> str:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


if __name__ == "__main__":
    raise SystemExit(main())
