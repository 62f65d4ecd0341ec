"""The audit-chaining rate script: it chains real events and prints the line the harness reads its rate from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.audit_chain_rate import make_events
from bench.scenarios import RATE_SCRIPTS, parse_rates
from server.audit.chain import GENESIS_HASH, seal_event
from server.audit.sealer import chain_rows

ROOT = Path(__file__).resolve().parents[2]


def test_chain_rows_links_every_event_to_the_one_before() -> None:
    events = make_events(5)
    chained = chain_rows(41, GENESIS_HASH, events)
    assert [row["seq"] for row in chained.events] == [42, 43, 44, 45, 46]
    previous = GENESIS_HASH
    for row in chained.events:
        assert row["prev_hash"] == previous
        assert row["hash"] == seal_event(previous, int(row["seq"]), row["canonical"])  # type: ignore[arg-type]
        assert f',"seq":{row["seq"]},'.encode() in row["canonical"]  # type: ignore[operator]
        previous = row["hash"]  # type: ignore[assignment]
    assert [row["field"] for row in chained.touched] == ["email", "phone"] * 5
    assert len(chained.concerned) == 0  # the one subject is the event's own subject_id column


def test_the_script_prints_a_rate_the_harness_reads() -> None:
    result = subprocess.run([sys.executable, "-m", "bench.audit_chain_rate", "--events", "3000", "--rounds", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    rates = parse_rates(result.stdout, RATE_SCRIPTS["audit_chain_rate"])
    assert rates["audit_chaining"]["per_s"] > 1_000, result.stdout
