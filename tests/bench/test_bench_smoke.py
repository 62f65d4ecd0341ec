"""The benchmark harness in smoke mode: tiny data, ~1 s per run. Checks that the harness runs end to end and
reports in the expected shape: data sealed as Strongroom stores it, a generated audit trail, every scenario
(blind-index search, each audit query filter, the audited write, encrypted vs plain reads) answered without
errors by both apps. The numbers are not asserted (they mean nothing at this size and duration)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = [name.strip() for name in os.environ.get("STRONGROOM_TEST_BACKENDS", "sqlite,postgresql").split(",")]
AUDIT_FILTERS = {f"audit_{key}" for key in ("actor", "entity", "record", "field", "action", "outcome", "time",
                                               "customer")}
SCENARIOS = {"read_clear", "read_masked", "encryption_read", "list_50", "update", "customer_360", "search_email",
             *AUDIT_FILTERS}
ONLY_ON = {"sqlite": {"create"}, "postgresql": {"audited_write"}}  # PostgreSQL's create is the audited write
TARGETS = {"secure_read", "list_50", "audited_write", "encryption_read", "blind_index_p95", "audit_verify",
           "inclusion_proof", "audit_chaining", "audit_query_p95", "rewrap", "reencrypt"}
STATUSES = {"met", "missed", "not available yet", "skipped", "failed", "unrecognised"}
METRICS = {"rps", "p50_ms", "p95_ms", "p99_ms", "requests", "errors", "runs"}


@pytest.mark.slow
def test_bench_smoke_runs_end_to_end_and_reports(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.fail("wrk is not installed: the benchmark harness needs it (Debian: apt-get install -y wrk)")
    markdown = tmp_path / "benchmarks.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--backends", ",".join(BACKENDS),
         "--results-dir", str(tmp_path), "--markdown", str(markdown)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=480,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    [results_file] = tmp_path.glob("*-smoke.json")
    report = json.loads(results_file.read_text())
    assert report["schema"] == 1
    assert report["mode"] == "smoke"
    assert {"cores", "memory_gib", "versions", "python"} <= set(report["machine"])
    assert {"workers", "connections", "duration_s", "rounds"} <= set(report["settings"])
    assert set(report["backends"]) == set(BACKENDS)
    for name, backend in report["backends"].items():
        data = backend["data"]
        assert data["rows"]["contacts"] > 0 and data["rows"]["data_keys"] > 0, name
        assert data["sealing"] == "sealed", name
        assert data["audit"]["status"] == "loaded" and data["audit"]["events"] == 2_000, (name, data["audit"])
        checks = backend["checks"]
        assert checks["same_answer"], (name, checks)  # both apps answer the same record (plain one: every field)
        assert {"email", "phone"} <= set(checks["sealed_at_rest"]), (name, checks)  # ciphertext at rest...
        assert not checks["not_opened_by_strongroom"], (name, checks)  # ...that Strongroom opens
        # The list scenario's page is sealed as a deployment's is (at least the 90% share the profile seals).
        page = checks["list_page_emails"]
        assert page["rows"] == 50 and page["sealed"] >= 45, (name, page)
        assert checks["audit_same_answer"], (name, checks["audit_filters"])  # every filter: the same events
        assert set(checks["audit_filters"]) == AUDIT_FILTERS, name
        assert all(entry["status"] == {"strongroom": 200, "baseline": 200}
                   for entry in checks["audit_filters"].values()), (name, checks["audit_filters"])
        assert {"audit", "blind_index", "encryption"} <= {key for key, on in backend["features"].items() if on}
        sweep = backend["sweep"]  # every contact of the read sample once, before the read scenarios
        assert sweep["requests"] > 0 and sweep["errors"] == 0, (name, sweep)
        scenarios = backend["scenarios"]
        expected = SCENARIOS | ONLY_ON[name]
        assert set(scenarios) == expected, name
        for key in expected:
            scenario = scenarios[key]
            assert scenario["status"] == "measured", (name, key, scenario)
            assert scenario["valid"], (name, key, scenario)  # < 1% errors: the requests are right for both apps
            for app in ("baseline", "strongroom"):
                assert set(scenario[app]) >= METRICS, (name, key, app)
                assert scenario[app]["requests"] > 0
            assert scenario["ratio_rps"] > 0
        if name == "postgresql":
            assert scenarios["audited_write"]["connections"] == 16
            assert scenarios["audited_write"]["ratio_sustained"] > 0
    assert {target["key"] for target in report["targets"]} == TARGETS
    assert all(target["status"] in STATUSES for target in report["targets"]), report["targets"]

    text = markdown.read_text()
    assert "## Targets" in text and "## Machine" in text
    assert "2,000 audit events" in text and "Audit query p95" in text
    assert "The list scenario's page: " in text and "e-mails sealed at rest" in text
    for name in BACKENDS:
        assert f"## {name}" in text
