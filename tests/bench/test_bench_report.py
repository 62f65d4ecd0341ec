"""The verdicts and the page: targets judged from a results dict, the fairness check of audit answers, and the
Markdown rendering of the new numbers. No servers: the results are synthetic."""

from __future__ import annotations

import random
from typing import Any

from bench.report import evaluate_targets, markdown
from bench.run import _same_events, code_change_notes
from bench.scenarios import AUDIT_QUERY_SCENARIOS


def _side(p95: float, sustained: float = 100.0) -> dict[str, Any]:
    return {"rps": 100.0, "sustained_rps": sustained, "p50_ms": p95 / 2, "p95_ms": p95, "p99_ms": p95,
            "errors": 0, "requests": 100, "spread": 0.0, "runs": []}


def _measured(p95: float, ratio: float = 1.0, sustained: float | None = None) -> dict[str, Any]:
    return {"title": "t", "note": "", "status": "measured", "valid": True, "ratio_rps": ratio,
            "ratio_sustained": ratio if sustained is None else sustained, "ratio_p95": 1.0,
            "baseline": _side(p95), "strongroom": _side(p95)}


def _report(scenarios: dict[str, Any], profile: str = "large") -> dict[str, Any]:
    data = {"profile": profile, "seconds": 1.0, "sealing": "sealed", "rows": {"contacts": 1_000},
            "audit": {"status": "loaded", "events": 5_000, "seconds": 1.0, "events_per_s": 5_000, "workers": 2}}
    return {"profile": profile, "rates": {}, "started_at": "2026-11-23T00:00:00+00:00", "label": profile,
            "duration_s": 1.0, "machine": {}, "settings": {"rounds": 2, "duration_s": 7, "connections": 16,
                                                           "threads": 1, "workers": 2},
            "backends": {"postgresql": {"features": {"audit": True, "encryption": True, "blind_index": True},
                                        "data": data, "scenarios": scenarios}}}


def _target(report: dict[str, Any], key: str) -> dict[str, Any]:
    return next(target for target in evaluate_targets(report) if target["key"] == key)


def test_audit_query_target_is_judged_on_the_worst_filter() -> None:
    rng = random.Random(1)
    scenarios = {name: _measured(rng.uniform(1, 20)) for name in AUDIT_QUERY_SCENARIOS}
    met = _target(_report(scenarios), "audit_query_p95")
    assert met["status"] == "met"
    assert "8/8 under 50" in met["value"]

    scenarios["audit_customer"] = _measured(812.0)
    missed = _target(_report(scenarios), "audit_query_p95")
    assert missed["status"] == "missed"
    assert "worst: customer" in missed["value"]


def test_audited_write_is_judged_on_the_sustained_ratio_and_scale_is_noted() -> None:
    report = _report({"audited_write": _measured(10.0, ratio=0.9, sustained=0.5)}, profile="standard")
    target = _target(report, "audited_write")
    assert target["status"] == "missed"
    assert "0.50x (sustained)" in target["value"]
    search = _target(_report({"search_email": _measured(2.0)}, profile="standard"), "blind_index_p95")
    assert search["status"] == "met"
    assert "1,000 contacts" in search["note"] and "1,000,000 contacts" in search["note"]


def test_markdown_shows_the_audit_load_and_the_targets() -> None:
    report = _report({"audit_actor": _measured(3.0), "encryption_read": _measured(3.0, ratio=0.95)})
    report["targets"] = evaluate_targets(report)
    text = markdown(report)
    assert "5,000 audit events" in text
    assert "| Encryption adds <= 10% to a single read" in text


def test_the_page_says_when_caches_were_warmed_before_the_reads() -> None:
    report = _report({"read_clear": _measured(3.0)})
    report["targets"] = evaluate_targets(report)
    assert "Warm caches" not in markdown(report)
    report["backends"]["postgresql"]["sweep"] = {"requests": 60_000, "ids": 20_000, "passes": 3, "errors": 0,
                                                 "seconds": 61.5}
    assert ("each of the 20,000 contacts of the read sample was read 3 time(s) from Strongroom, shuffled over new "
            "connections each pass (61.5 s, 0 errors)") in markdown(report)


def _answer(*seqs: int) -> dict[str, Any]:
    return {"items": [{"seq": seq, "hash": f"h{seq}"} for seq in seqs]}


def test_audit_answers_compare_over_the_range_both_cover() -> None:
    # Strongroom chained (and recorded) newer events before answering: the shared range must match.
    assert _same_events(_answer(12, 10, 7, 3), _answer(10, 7, 3))
    assert not _same_events(_answer(12, 10, 3), _answer(10, 7, 3))  # an event missing inside the range
    assert _same_events(_answer(), _answer())
    assert not _same_events(_answer(3), "not json")


def test_the_reports_profile_trails_match_the_generators_profiles() -> None:
    from bench.datagen import PROFILES
    from bench.report import PROFILE_AUDIT_EVENTS

    assert {name: profile.audit_events for name, profile in PROFILES.items()} == PROFILE_AUDIT_EVENTS


def test_the_full_trail_is_loaded_where_audit_queries_run_and_a_short_one_elsewhere() -> None:
    from bench.run import UNQUERIED_AUDIT_EVENTS, parse_args, queries_audit

    standard, _ = parse_args(["--no-markdown"])
    assert queries_audit("postgresql", standard) and not queries_audit("sqlite", standard)
    named, _ = parse_args(["--no-markdown", "--scenarios", "read_clear,audit_query"])
    assert queries_audit("sqlite", named) and queries_audit("postgresql", named)
    without, _ = parse_args(["--no-markdown", "--scenarios", "read_clear"])
    assert not queries_audit("postgresql", without)
    smoke, _ = parse_args(["--smoke"])
    assert queries_audit("sqlite", smoke)
    assert 0 < UNQUERIED_AUDIT_EVENTS < 1_000_000


def test_a_short_trail_is_called_so_on_the_page() -> None:
    report = _report({}, profile="standard")
    report["targets"] = evaluate_targets(report)
    text = markdown(report)
    assert "a short trail: no audit query is measured on this backend" in text


def test_a_backend_whose_servers_started_on_other_code_is_noted() -> None:
    report = _report({})
    report["machine"] = {"git_commit": "aaaaaaa", "git_dirty": False}
    report["backends"]["sqlite"] = {"code": {"git_commit": "aaaaaaa", "git_dirty": False}}
    report["backends"]["postgresql"]["code"] = {"git_commit": "bbbbbbb", "git_dirty": True}
    notes = code_change_notes(report)
    assert len(notes) == 1
    assert "started at aaaaaaa" in notes[0] and "postgresql servers started at bbbbbbb with uncommitted" in notes[0]
    report["backends"]["postgresql"]["code"] = {"git_commit": "aaaaaaa", "git_dirty": False}
    assert code_change_notes(report) == []
