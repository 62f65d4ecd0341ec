"""The benchmark harness in smoke mode: tiny data, ~1 s per run. Checks that the harness runs end to end and
reports in the expected shape; the numbers are not asserted (they mean nothing at this size and duration)."""

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
SCENARIOS = {"read_clear", "read_masked", "list_50", "create", "update", "customer_360", "search_email"}
TARGETS = {"secure_read", "list_50", "audited_write", "blind_index_p95", "audit_verify", "inclusion_proof",
           "audit_query_p95", "rewrap", "reencrypt"}
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
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=240,
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
        assert backend["data"]["rows"]["contacts"] > 0, name
        assert backend["checks"]["same_answer"], (name, backend["checks"])  # both apps answer the same record
        assert {"audit", "blind_index"} <= set(backend["features"])
        scenarios = backend["scenarios"]
        assert set(scenarios) >= SCENARIOS, name
        for key in SCENARIOS:
            scenario = scenarios[key]
            assert scenario["status"] == "measured", (name, key, scenario)
            assert scenario["valid"], (name, key, scenario)  # < 1% errors: the requests are right for both apps
            for app in ("baseline", "strongroom"):
                assert set(scenario[app]) >= METRICS, (name, key, app)
                assert scenario[app]["requests"] > 0
            assert scenario["ratio_rps"] > 0
        assert scenarios["audit_query"]["status"] in {"measured", "not available yet"}
    assert {target["key"] for target in report["targets"]} == TARGETS
    assert all(target["status"] in STATUSES for target in report["targets"]), report["targets"]

    text = markdown.read_text()
    assert "## Targets" in text and "## Machine" in text
    for name in BACKENDS:
        assert f"## {name}" in text
