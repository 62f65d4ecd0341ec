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
import dataclasses
import datetime as dt
import json
import multiprocessing
import os
import platform
import random
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
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import HTTPConnection
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import datagen
from bench.report import evaluate_targets, markdown
from bench.scenarios import (
    AUDITOR_ROLE,
    CLEAR_ROLE,
    GROUPS,
    MASKED_ROLE,
    NOT_AVAILABLE,
    PII_FIELDS,
    RATE_SCRIPTS,
    REP_ROLE,
    SCENARIOS,
    Scenario,
    classify_fields,
    fill_path,
    parse_rates,
    probe_features,
)
from bench.sealing import RowSealer

ROOT = Path(__file__).resolve().parent.parent
LUA_DIR = ROOT / "bench" / "lua"
RESULTS_DIR = ROOT / "bench" / "results"
DOCS_FILE = ROOT / "docs" / "benchmarks.md"
PASSWORD = "Bench-password-2026"
UNIT = "Bench Sales"
COMPARE_SCENARIO = "read_masked"
USERS = {"clear": ("bench.manager", CLEAR_ROLE), "masked": ("bench.marketing", MASKED_ROLE),
         "rep": ("bench.rep", REP_ROLE), "auditor": ("bench.auditor", AUDITOR_ROLE)}
# A backend where no audit query is measured (SQLite in the standard run) gets a short trail instead of the
# profile's: nothing there reads the trail, and its chain head is found by primary key whatever its length.
# `--scenarios audit_query` (or `--audit-events N`) loads the full trail there too.
UNQUERIED_AUDIT_EVENTS = 10_000
DRAIN_TIMEOUT_S = 120.0  # longest wait for the audit sealer to chain a run's events before the next run
DRAIN_POLL_S = 0.02
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
    latency: LatencySchedule = field(default_factory=lambda: LatencySchedule(2, 1, 3, 1))
    audit_events: int | None = None  # overrides the profile's number of generated audit events
    audit_workers: int | None = None  # processes encoding audit events (default: the usable cores)
    named: frozenset[str] = frozenset()  # scenarios named in --scenarios (they run on every requested backend)

    def schedule(self, scenario: Scenario) -> tuple[int, int, int, int]:
        """(connections, warm-up s, run s, rounds) for ``scenario``: p95-judged scenarios use few clients (a
        latency, not a saturation, measure) and a shorter schedule; some fix their client count."""
        if scenario.latency:
            plan = self.latency
            return scenario.connections or plan.connections, plan.warmup, plan.duration, plan.rounds
        return scenario.connections or self.connections, self.warmup, self.duration, self.rounds


@dataclass(frozen=True)
class LatencySchedule:
    """How the p95-judged scenarios (blind-index search, audit queries) are run."""

    connections: int
    warmup: int
    duration: int
    rounds: int


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


def code_state() -> dict[str, Any]:
    """The checkout's commit and whether tracked files differ from it (the code a server started now runs)."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False)
    return {"git_commit": commit.stdout.strip() if commit.returncode == 0 else "unknown (not a git checkout)",
            "git_dirty": dirty.returncode == 0 and bool(dirty.stdout.strip())}


def code_change_notes(report: dict[str, Any]) -> list[str]:
    """A note for each backend whose servers started on other code than the run started on.

    The servers start after the data is loaded (18 minutes on the large profile): a commit or an edit in that
    time is what they run, not what ``machine.git_commit`` says."""
    def label(state: dict[str, Any]) -> str:
        return f"{state.get('git_commit')}{' with uncommitted changes' if state.get('git_dirty') else ''}"

    started = {key: report["machine"].get(key) for key in ("git_commit", "git_dirty")}
    return [f"The code changed during the run: it started at {label(started)}; the {name} servers started at "
            f"{label(backend['code'])}, and the {name} results are that code's."
            for name, backend in report["backends"].items()
            if backend.get("code") is not None and backend["code"] != started]


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
    info.update(code_state())
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


@dataclass(frozen=True)
class WrkJob:
    """The request side of one wrk run: script, path template, sample file, bearer token and client count."""

    script: str
    path: str
    ids_file: Path | None
    token: str
    connections: int


def run_wrk(base_url: str, job: WrkJob, *, seconds: int, settings: Settings) -> dict[str, Any]:
    """One wrk run; returns throughput, latency percentiles (ms) and errors."""
    env = {**os.environ, "BENCH_LUA_DIR": str(LUA_DIR), "BENCH_TOKEN": job.token, "BENCH_PATH": job.path,
           "BENCH_IDS": str(job.ids_file) if job.ids_file else "", "BENCH_THREADS": str(settings.threads)}
    connections = max(job.connections, settings.threads)
    command = ["wrk", "-t", str(settings.threads), "-c", str(connections), "-d", f"{seconds}s",
               "--timeout", "30s", "-s", str(LUA_DIR / job.script), base_url]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False)
    time.sleep(settings.settle / 3)  # let requests in flight when wrk stopped finish before the next run
    line = next((row for row in result.stdout.splitlines() if row.startswith("BENCH_RESULT ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stdout[-1500:]} {result.stderr[-1500:]}")
    raw = json.loads(line.removeprefix("BENCH_RESULT "))
    errors = raw["errors"]
    latency = raw["latency_us"]
    rps = round(raw["requests"] / (raw["duration_us"] / 1e6), 1)
    return {
        "requests": raw["requests"],
        "rps": rps, "sustained_rps": rps, "duration_s": round(raw["duration_us"] / 1e6, 3),
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
                           for key in ("rps", "sustained_rps", "p50_ms", "p95_ms", "p99_ms")}
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


async def _drain(url: str, give_up_after: float) -> tuple[int, float]:
    """Poll ``audit_pending`` on one connection until it is empty: (rows at the start, seconds until empty)."""
    from sqlalchemy import text

    from server.db import create_engine

    engine = create_engine(url)
    count = text("SELECT count(*) FROM audit_pending")
    try:
        async with engine.connect() as connection:
            started = time.perf_counter()
            backlog = pending = int((await connection.execute(count)).scalar_one())
            while pending:
                if time.perf_counter() - started > give_up_after:
                    return backlog, -1.0
                await asyncio.sleep(DRAIN_POLL_S)
                pending = int((await connection.execute(count)).scalar_one())
                await connection.rollback()  # a fresh snapshot for the next look
            return backlog, round(time.perf_counter() - started, 3) if backlog else 0.0
    finally:
        await engine.dispose()


def wait_for_sealer(url: str, timeout: float = DRAIN_TIMEOUT_S) -> tuple[int, float]:
    """How many events were pending when the run ended, and the seconds the sealer took to chain them all.

    Strongroom answers a write once its event is committed to ``audit_pending``; the sealer chains it later.
    A sealer slower than the writers leaves a backlog that grows without bound, so the write rate that counts
    is the one that includes this drain. Gives up (and says so with a negative drain) after ``timeout``.
    """
    return asyncio.run(_drain(url, timeout))


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


def _database(name: str, settings: Settings, work: Path) -> tuple[str, str | None]:
    """A fresh, empty database for the backend: its URL, and the PostgreSQL database name to drop later."""
    if name == "sqlite":
        return f"sqlite+aiosqlite:///{work / 'data' / 'strongroom.db'}", None
    # The pid keeps two runs on one PostgreSQL (a smoke test beside a full run) out of each other's way.
    pg_database = f"strongroom_bench_{settings.profile}_{os.getpid()}"
    _postgres_admin(f'DROP DATABASE IF EXISTS "{pg_database}" WITH (FORCE)')
    _postgres_admin(f'CREATE DATABASE "{pg_database}"')
    host_part = POSTGRES_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
    return f"postgresql+asyncpg://{host_part}/{pg_database}", pg_database


def _strongroom_users(env: dict[str, str]) -> None:
    """``strongroom init`` and the bench users, made with Strongroom's own command line."""
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
    # The rest only need the manager: side by side (each command is a Python start-up).
    with ThreadPoolExecutor(3) as pool:
        created = [
            pool.submit(cli, "users", "create", USERS["masked"][0], "--role", MASKED_ROLE, "--password-stdin", *unit),
            pool.submit(cli, "users", "create", USERS["rep"][0], "--role", REP_ROLE, "--password-stdin", "--manager",
                        USERS["clear"][0], *unit),
            pool.submit(cli, "users", "create", USERS["auditor"][0], "--role", AUDITOR_ROLE, "--password-stdin"),
        ]
        for future in created:
            future.result()


def prepare(name: str, settings: Settings) -> tuple[Backend, dict[str, Any]]:
    """A fresh database with Strongroom's schema, the bench users and the profile's data (sealed as Strongroom
    seals it, with its audit trail)."""
    work = settings.work_dir / name
    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    url, pg_database = _database(name, settings, work)
    env = {**os.environ, "STRONGROOM_DATA_DIR": str(work / "data"), "STRONGROOM_DATABASE_URL": url,
           "STRONGROOM_TOKEN_TTL_SECONDS": "86400", "STRONGROOM_LOG_LEVEL": settings.log_level,
           "STRONGROOM_WORKERS": str(settings.workers), "PYTHONPATH": str(ROOT)}
    backend = Backend(name, url, env, work, pg_database=pg_database)
    started = time.perf_counter()
    _strongroom_users(env)
    users = asyncio.run(_users(url, [USERS["clear"][0], USERS["rep"][0]]))
    manager, rep = users[USERS["clear"][0]], users[USERS["rep"][0]]
    setup_seconds = time.perf_counter() - started
    profile = datagen.PROFILES[settings.profile]
    if settings.audit_events is not None:
        profile = dataclasses.replace(profile, audit_events=settings.audit_events)
    elif not queries_audit(name, settings):
        profile = dataclasses.replace(profile, audit_events=min(profile.audit_events, UNQUERIED_AUDIT_EVENTS))
    log(f"{name}: schema and users ready in {setup_seconds:.1f} s; loading the {settings.profile} profile "
        f"({profile.audit_events:,} audit events)")
    report = asyncio.run(datagen.load(
        url, profile, out_dir=work / "ids", owners=[rep.id], manager_id=manager.id,
        owner_password_hash=rep.password_hash, org_unit_id=getattr(rep, "org_unit_id", None),
        sealer=RowSealer.for_environment(env), audit_workers=settings.audit_workers))
    audit = report.audit
    log(f"{name}: loaded {sum(report.rows.values()):,} rows ({report.sealing}) in {report.seconds:.1f} s; audit "
        f"events: {audit.get('status')}"
        + (f", {audit['events']:,} at {audit['events_per_s']:,}/s" if audit.get("status") == "loaded" else ""))
    backend.ids = {key: Path(path) for key, path in report.files.items()}
    return backend, {"setup_s": round(setup_seconds, 2), "data": report.as_dict()}


def prepare_all(settings: Settings) -> dict[str, tuple[Backend, dict[str, Any]]]:
    """Every backend prepared (:func:`prepare`) side by side, each in its own process, before anything is measured.

    Loading is CPU-bound Python that keeps about one core busy per backend, so on two cores both loads take
    little longer than one. Processes, not threads: the audit generator forks its encoders, which is safe only
    from a process's main thread. Forked from here while this process runs no other thread.
    """
    if len(settings.backends) == 1:
        return {name: prepare(name, settings) for name in settings.backends}
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(len(settings.backends), mp_context=context) as pool:
        futures = {name: pool.submit(prepare, name, settings) for name in settings.backends}
        return {name: future.result() for name, future in futures.items()}


def _normalise(value: Any) -> Any:
    """Comparable form of a JSON value (timestamps and money as the two apps may spell them)."""
    if isinstance(value, str) and re.match(r"^\d{4}-\d\d-\d\dT", value):
        with contextlib.suppress(ValueError):
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat()
    return value


def _richest_contact(backend: Backend, baseline: Server, sample: str) -> tuple[str, Any]:
    """The sample contact with the most PII filled in (so that masking shows), as the baseline reads it."""
    best: tuple[int, str, Any] = (-1, "", None)
    for contact in backend.ids[sample].read_text().split()[:30]:
        _, _, record = http("GET", f"{baseline.base_url}/api/v1/contacts/{contact}")
        filled = sum(1 for name in PII_FIELDS if isinstance(record, dict) and record.get(name) is not None)
        if filled > best[0]:
            best = (filled, contact, record)
    return best[1], best[2]


def _compare(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Field by field: what differs, what the policy withholds from the clear role, what is sealed at rest.

    The baseline has no keys, so it serves encrypted fields as the stored ciphertext (``sr:...``); Strongroom
    must serve them opened. Fields the policy masks or hides even for the clear role (national_id) are not
    compared.
    """
    withheld = sorted(key for key in theirs if key not in ours or (
        isinstance(ours[key], str) and "*" in ours[key] and ours[key] != theirs[key]))
    sealed = sorted(key for key, value in theirs.items() if isinstance(value, str) and value.startswith("sr:"))
    differing = sorted(key for key in set(ours) | set(theirs) if key not in withheld and key not in sealed
                       and _normalise(ours.get(key)) != _normalise(theirs.get(key)))
    unopened = sorted(key for key in sealed if key not in withheld and isinstance(ours.get(key), str)
                      and ours[key].startswith("sr:"))
    return {"differing": differing, "withheld": withheld, "sealed": sealed, "unopened": unopened}


def checks(backend: Backend, strongroom: Server, baseline: Server) -> dict[str, Any]:
    """Both apps answer the same records alike (fairness), and what the masked role sees today.

    A sealed contact: equal but for the encrypted fields, which the baseline shows as ciphertext and Strongroom
    opened. A contact stored in clear: equal in every field. An audit query: the same events.
    """
    contact, theirs = _richest_contact(backend, baseline, "contacts")
    path = f"/api/v1/contacts/{contact}"
    status_s, _, ours = http("GET", strongroom.base_url + path, token=backend.tokens["clear"])
    status_m, _, masked = http("GET", strongroom.base_url + path, token=backend.tokens["masked"])
    result: dict[str, Any] = {"read_status": {"strongroom": status_s, "baseline": 200 if isinstance(theirs, dict)
                                              else 0, "strongroom_masked_role": status_m}}
    if not (isinstance(ours, dict) and isinstance(theirs, dict)):
        return result
    compared = _compare(ours, theirs)
    result.update(differing_fields=compared["differing"], withheld_from_clear_role=compared["withheld"],
                  sealed_at_rest=compared["sealed"], not_opened_by_strongroom=compared["unopened"])
    same = not compared["differing"] and not compared["unopened"]
    if backend.ids.get("plain_contacts") and backend.ids["plain_contacts"].read_text().strip():
        plain, theirs_plain = _richest_contact(backend, baseline, "plain_contacts")
        _, _, ours_plain = http("GET", f"{strongroom.base_url}/api/v1/contacts/{plain}", token=backend.tokens["clear"])
        if isinstance(ours_plain, dict) and isinstance(theirs_plain, dict):
            result["plain_differing_fields"] = _compare(ours_plain, theirs_plain)["differing"]
            same = same and not result["plain_differing_fields"]
    result["same_answer"] = same
    # The baseline shows values as stored: how much of the list scenario's page Strongroom has to open.
    _, _, page = http("GET", baseline.base_url + "/api/v1/contacts?limit=50")
    items = page.get("items", []) if isinstance(page, dict) else []
    result["list_page_emails"] = {"rows": len(items),
                                  "sealed": sum(str(item.get("email") or "").startswith("sr:") for item in items)}
    if isinstance(masked, dict):
        result["masked_role_sees"] = classify_fields(ours, masked)
    result.update(_audit_check(backend, strongroom, baseline))
    return result


def _same_events(ours: Any, theirs: Any) -> bool:
    """Whether two answers list the same events over the sequence range both cover.

    Strongroom chains pending events before it answers and records who queried the trail, so the newest end
    of its answer may hold events the baseline has not seen yet; the range both cover must match exactly.
    """
    if not (isinstance(ours, dict) and isinstance(theirs, dict)):
        return False
    lists = [[(item["seq"], item["hash"]) for item in body["items"]] for body in (ours, theirs)]
    if not lists[0] or not lists[1]:
        return lists[0] == lists[1]
    low = max(min(seq for seq, _ in events) for events in lists)
    high = min(max(seq for seq, _ in events) for events in lists)
    windows = [[event for event in events if low <= event[0] <= high] for events in lists]
    return bool(windows[0]) and windows[0] == windows[1]


def _audit_check(backend: Backend, strongroom: Server, baseline: Server) -> dict[str, Any]:
    """Both apps return the same events, newest first, for each compliance filter (its first sample value)."""
    filters: dict[str, Any] = {}
    for scenario in SCENARIOS:
        sample = backend.ids.get(scenario.ids or "") if scenario.group == "audit_query" else None
        lines = sample.read_text().splitlines() if sample else []
        if not lines:
            continue
        path = fill_path(scenario.path, lines[0])
        status_s, _, ours = http("GET", strongroom.base_url + path, token=backend.tokens["auditor"])
        status_b, _, theirs = http("GET", baseline.base_url + path)
        filters[scenario.name] = {"status": {"strongroom": status_s, "baseline": status_b},
                                  "events": len(ours["items"]) if isinstance(ours, dict) else None,
                                  "same": _same_events(ours, theirs)}
    if not filters:
        return {}
    return {"audit_filters": filters, "audit_same_answer": all(entry["same"] for entry in filters.values())}


def token_for(server: Server, username: str) -> str:
    status, _, body = http("POST", f"{server.base_url}/api/v1/auth/token",
                           form={"grant_type": "password", "username": username, "password": PASSWORD})
    if status != 200 or not isinstance(body, dict):
        raise RuntimeError(f"token for {username}: HTTP {status} {body}")
    return str(body["access_token"])


def ids_file_for(backend: Backend, sample: str | None, settings: Settings) -> Path | None:
    """The sample file a run draws from; for ``versions``, the update pool with its current versions."""
    if sample is None:
        return None
    if sample != "versions":
        return backend.ids[sample]
    # Current versions of the update pool, read just before each run (both apps change the same rows). The
    # pause lets the requests still in flight when the previous wrk run stopped commit first.
    time.sleep(settings.settle)
    pool = backend.ids["update_contacts"].read_text().split()
    rows = asyncio.run(_versions(backend.url, pool))
    path = backend.work / "ids" / "versions.txt"
    path.write_text("".join(f"{value} {version}\n" for value, version in rows))
    return path


@dataclass(frozen=True)
class Contender:
    """One side of a scenario: which server, which path template and sample, and whether it has a sealer."""

    server: Server
    path: str
    sample: str | None
    seals: bool  # Strongroom with a sealer: wait for it after each run and count the wait


def contenders(scenario: Scenario, servers: dict[str, Server], features: dict[str, Any]) -> dict[str, Contender]:
    """The reference (``baseline`` key: the plain baseline, or Strongroom on unencrypted rows) and Strongroom."""
    seals = bool(features.get("audit_pending"))
    plain = scenario.reference == "plain"
    return {
        "baseline": Contender(servers["strongroom" if plain else "baseline"], scenario.reference_path or scenario.path,
                              scenario.reference_ids or scenario.ids, seals and plain),
        "strongroom": Contender(servers["strongroom"], scenario.path, scenario.ids, seals),
    }


def measure(contender: Contender, scenario: Scenario, backend: Backend, settings: Settings, *, seconds: int,
            connections: int) -> dict[str, Any]:
    """One wrk run against one contender; for Strongroom, then the wait for its sealer to chain the run's events.

    ``sustained_rps`` counts that wait: requests / (run + drain). A drain that times out counts the timeout.
    """
    job = WrkJob(scenario.script, contender.path, ids_file_for(backend, contender.sample, settings),
                 backend.tokens[scenario.user], connections)
    result = run_wrk(contender.server.base_url, job, seconds=seconds, settings=settings)
    if contender.seals:
        backlog, drain = wait_for_sealer(backend.url)
        waited = DRAIN_TIMEOUT_S if drain < 0 else drain
        result.update(pending_after=backlog, drain_s=drain,
                      sustained_rps=round(result["requests"] / (result["duration_s"] + waited), 1))
    return result


# The read scenarios draw contacts from this sample. Strongroom loads a customer's data key once per server
# process and keeps it; a 10-second run over 20,000 random contacts would mostly measure first loads.
SWEPT_SAMPLE = "contacts"


def sweep(server: Server, path: str, ids_file: Path, token: str, *, passes: int, connections: int = 16
          ) -> dict[str, Any]:
    """Request every line of a sample ``passes`` times, ``connections`` at a time, so measured reads find caches
    warm. Each server worker keeps its own data keys and a connection stays with one worker, so every pass
    shuffles the sample over new connections: after ``passes`` passes a worker lacks about 1 in 2**passes of
    the sample's keys with two workers (fewer with the reads of the scenarios themselves)."""
    lines = [line for line in ids_file.read_text().splitlines() if line.strip()]
    headers = {"Authorization": f"Bearer {token}"}

    def visit(chunk: list[str]) -> int:
        connection = HTTPConnection("127.0.0.1", server.port, timeout=30)
        failed = 0
        try:
            for line in chunk:
                connection.request("GET", fill_path(path, line), headers=headers)
                response = connection.getresponse()
                response.read()
                failed += response.status != 200
        finally:
            connection.close()
        return failed

    started = time.perf_counter()
    errors = 0
    order = random.Random(1)
    for _ in range(passes):
        shuffled = order.sample(lines, len(lines))
        with ThreadPoolExecutor(connections) as pool:
            errors += sum(pool.map(visit, [shuffled[start::connections] for start in range(connections)]))
    return {"requests": len(lines) * passes, "ids": len(lines), "passes": passes, "errors": errors,
            "seconds": round(time.perf_counter() - started, 1)}


def run_scenario(scenario: Scenario, backend: Backend, servers: dict[str, Server], settings: Settings,
                 features: dict[str, Any]) -> dict[str, Any]:
    """Warm up both contenders, then measured rounds in alternating order."""
    sides = contenders(scenario, servers, features)
    connections, warmup, duration, rounds = settings.schedule(scenario)
    if warmup > 0:
        for contender in sides.values():
            measure(contender, scenario, backend, settings, seconds=warmup, connections=connections)
    runs: dict[str, list[dict[str, Any]]] = {app: [] for app in sides}
    for round_number in range(rounds):
        for app in list(sides) if round_number % 2 == 0 else list(reversed(sides)):
            result = measure(sides[app], scenario, backend, settings, seconds=duration, connections=connections)
            result["round"] = round_number
            runs[app].append(result)
    return summarise(scenario, {app: aggregate(app_runs) for app, app_runs in runs.items()}, connections)


def summarise(scenario: Scenario, summary: dict[str, dict[str, Any]], connections: int) -> dict[str, Any]:
    """The scenario's entry: both sides' medians, the ratios, and whether errors stayed under 1%."""
    reference, ours = summary["baseline"], summary["strongroom"]
    entry: dict[str, Any] = {"title": scenario.title, "note": scenario.note, "status": "measured",
                             "reference": "strongroom (unencrypted rows)" if scenario.reference == "plain"
                             else "baseline", "connections": connections, "writes": scenario.writes, **summary}
    entry["ratio_rps"] = round(ours["rps"] / reference["rps"], 3) if reference["rps"] else None
    entry["ratio_sustained"] = (round(ours["sustained_rps"] / reference["sustained_rps"], 3)
                                if reference["sustained_rps"] else None)
    entry["ratio_p95"] = round(ours["p95_ms"] / reference["p95_ms"], 3) if reference["p95_ms"] else None
    drains = [run.get("drain_s", 0.0) for run in ours["runs"]]
    if any(drain != 0.0 for drain in drains):
        entry["sealer"] = {"pending_after": [run.get("pending_after") for run in ours["runs"]], "drain_s": drains}
    error_rates = {app: (side["errors"] / side["requests"]) if side["requests"] else 1.0
                   for app, side in summary.items()}
    entry["valid"] = all(rate <= 0.01 for rate in error_rates.values())
    if not all(side["requests"] for side in summary.values()):
        entry["note"] = (entry["note"] + "; " if entry["note"] else "") + "no request completed within a run"
    elif not entry["valid"]:
        entry["note"] = (entry["note"] + "; " if entry["note"] else "") + "errors above 1%: " + ", ".join(
            f"{app} {rate:.1%}" for app, rate in error_rates.items())
    return entry


def _start_servers(backend: Backend, settings: Settings) -> dict[str, Server]:
    servers = {
        "strongroom": Server("strongroom", [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1",
                                            "--port", str(port := free_port()), "--workers", str(settings.workers)],
                             backend.env, port, backend.work / "strongroom.log"),
        "baseline": Server("baseline", [sys.executable, "-m", "bench.baseline.serve", "--host", "127.0.0.1",
                                        "--port", str(bport := free_port()), "--workers", str(settings.workers)],
                           backend.env, bport, backend.work / "baseline.log"),
    }
    for server in servers.values():
        server.launch()
    for server in servers.values():
        server.wait_ready()
    return servers


def _runs_on(scenario: Scenario, name: str, settings: Settings) -> bool:
    """Whether this run measures ``scenario`` on backend ``name``."""
    if scenario.name not in settings.scenarios or name not in scenario.backends:
        return False
    return (settings.smoke or scenario.name in settings.named or scenario.default_backends is None
            or name in scenario.default_backends)


def queries_audit(name: str, settings: Settings) -> bool:
    """Whether any audit-query scenario runs on backend ``name`` (only there is the full trail worth loading)."""
    return any(_runs_on(scenario, name, settings) for scenario in SCENARIOS if scenario.group == "audit_query")


def _selected(name: str, settings: Settings, features: dict[str, Any]) -> list[tuple[Scenario, str | None]]:
    """The scenarios this backend runs, each with the reason it is not available (None if it runs)."""
    chosen = []
    for scenario in SCENARIOS:
        if not _runs_on(scenario, name, settings):
            continue
        missing = scenario.requires and not features.get(scenario.requires) and not settings.smoke
        chosen.append((scenario, f"needs the {scenario.requires} feature" if missing else None))
    return chosen


def bench_backend(name: str, settings: Settings, prepared: tuple[Backend, dict[str, Any]] | None = None
                  ) -> dict[str, Any]:
    started = time.perf_counter()
    backend, result = prepared or prepare(name, settings)
    result["features"] = features = probe_features(asyncio.run(_schema(backend.url)), result["data"])
    if features["encryption_schema"] and not features["encryption"]:
        warning = ("Strongroom's schema has blind-index columns (column encryption), but the generated rows were "
                   "stored in clear (no keyring): reads of them are not representative.")
        result["warnings"] = [warning]
        log(f"{name}: WARNING {warning}")
    servers: dict[str, Server] = {}
    try:
        servers = _start_servers(backend, settings)
        result["code"] = code_state()
        for key, (username, _role) in USERS.items():
            backend.tokens[key] = token_for(servers["strongroom"], username)
        result["checks"] = checks(backend, servers["strongroom"], servers["baseline"])
        if settings.compare_servers and name == "sqlite":  # first, while both servers are fresh and idle
            log(f"{name}: granian vs uvicorn")
            result["server_comparison"] = compare_servers(backend, servers, settings)
        scenarios: dict[str, Any] = {}
        selected = _selected(name, settings, features)
        if any(scenario.ids == SWEPT_SAMPLE and not unavailable for scenario, unavailable in selected):
            log(f"{name}: sweep: every contact of the read sample, {settings.workers + 1} times, from Strongroom")
            result["sweep"] = sweep(servers["strongroom"], "/api/v1/contacts/{id}", backend.ids[SWEPT_SAMPLE],
                                    backend.tokens["clear"], passes=settings.workers + 1)
        for scenario, unavailable in selected:
            if unavailable:
                scenarios[scenario.name] = {"title": scenario.title, "status": NOT_AVAILABLE, "note": unavailable}
                continue
            log(f"{name}: {scenario.name}")
            try:
                scenarios[scenario.name] = run_scenario(scenario, backend, servers, settings, features)
            except RuntimeError as error:
                scenarios[scenario.name] = {"title": scenario.title, "status": "failed", "note": str(error)[:2000]}
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
    job = WrkJob(scenario.script, scenario.path, backend.ids["contacts"], backend.tokens[scenario.user],
                 settings.connections)
    try:
        uvicorn_server.start()
        servers_compared = {"granian": servers["strongroom"], "uvicorn": uvicorn_server}
        runs: dict[str, list[dict[str, Any]]] = {key: [] for key in servers_compared}
        for server in servers_compared.values():
            if settings.warmup:
                run_wrk(server.base_url, job, seconds=settings.warmup, settings=settings)
        for round_number in range(max(settings.rounds, 2)):
            order = list(servers_compared) if round_number % 2 == 0 else list(reversed(servers_compared))
            for key in order:
                runs[key].append(run_wrk(servers_compared[key].base_url, job, seconds=settings.duration,
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


# -- main ------------------------------------------------------------------------------------------------------

MODES = {
    # profile, warmup s, duration s, rounds, connections, workers
    "smoke": ("smoke", 0, 1, 1, 4, 1),
    "standard": ("standard", 1, 5, 2, 16, 2),
    "large": ("large", 3, 10, 2, 16, 2),
}
# The p95-judged scenarios: connections, warm-up s, run s, rounds per app. Judged against a bound, not a ratio,
# so one short round per app is enough; it keeps nine of them inside the standard run's time budget.
LATENCY_MODES = {
    "smoke": LatencySchedule(2, 0, 1, 1),
    "standard": LatencySchedule(2, 1, 3, 1),
    "large": LatencySchedule(2, 2, 5, 1),
}


def _scenario_names(text: str | None, parser: argparse.ArgumentParser) -> list[str]:
    """``--scenarios``: names and groups (``audit_query``), comma-separated; all by default."""
    known = [s.name for s in SCENARIOS]
    if not text:
        return known
    chosen: list[str] = []
    for name in (item.strip() for item in text.split(",") if item.strip()):
        if name not in known and name not in GROUPS:
            parser.error(f"unknown scenario {name!r}; known: {', '.join([*known, *GROUPS])}")
        chosen += GROUPS.get(name, (name,))
    return chosen


def _latency_schedule(mode: str, args: argparse.Namespace) -> LatencySchedule:
    plan = LATENCY_MODES.get(mode, LATENCY_MODES["standard"])
    return dataclasses.replace(plan, connections=args.latency_connections or plan.connections,
                               duration=args.latency_duration or plan.duration)


def parse_args(argv: list[str] | None) -> tuple[Settings, bool]:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny data and ~1 s runs: checks the harness only")
    parser.add_argument("--profile", choices=sorted(datagen.PROFILES), help="data profile (default standard)")
    parser.add_argument("--backends", help="comma-separated: sqlite,postgresql (large: postgresql)")
    groups = [f"{group} (its {len(names)} scenarios)" for group, names in GROUPS.items()]
    parser.add_argument("--scenarios", help="comma-separated subset of: " + ", ".join(
        [*(s.name for s in SCENARIOS if s.group is None), *groups]))
    parser.add_argument("--workers", type=int, help="server workers per app (default STRONGROOM_WORKERS or cores)")
    parser.add_argument("--connections", type=int, help="wrk connections (clients)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: leave cores to servers)")
    parser.add_argument("--warmup", type=int, help="warm-up seconds per app and scenario")
    parser.add_argument("--duration", type=int, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, help="measured runs per app and scenario (alternating order)")
    parser.add_argument("--latency-connections", type=int,
                        help="wrk connections for the p95-judged scenarios (search, audit queries; default 2)")
    parser.add_argument("--latency-duration", type=int, help="seconds per run of the p95-judged scenarios")
    parser.add_argument("--audit-events", type=int, help="audit events to generate (default: the profile's)")
    parser.add_argument("--audit-workers", type=int, help="processes encoding audit events (default: the cores)")
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
    scenarios = _scenario_names(args.scenarios, parser)
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
        latency=_latency_schedule(mode, args),
        named=frozenset(scenarios) if args.scenarios else frozenset(),
        audit_events=args.audit_events,
        audit_workers=args.audit_workers,
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
                     "latency": {"connections": settings.latency.connections, "warmup_s": settings.latency.warmup,
                                 "duration_s": settings.latency.duration, "rounds": settings.latency.rounds},
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
        prepared = prepare_all(settings)
        for backend in settings.backends:
            report["backends"][backend] = bench_backend(backend, settings, prepared[backend])
        report["rates"] = collect_rates(settings)
        report["notes"] = [*report["notes"], *code_change_notes(report)]
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
