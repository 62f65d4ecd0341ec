"""The verdict and the page: each target of the issues judged against a run's results, and docs/benchmarks.md.

``evaluate_targets`` reads a results dict (``bench/results/<date>.json``) and never measures anything, so a report
can be re-rendered from an old run (``python -m bench.run --report FILE``).
"""

from __future__ import annotations

from typing import Any

from bench.scenarios import CLEAR_ROLE, MASKED_ROLE, NOT_AVAILABLE, TARGETS, Target

# The profiles' audit trails (bench/datagen.py PROFILES; not imported: the report must not need the server).
PROFILE_AUDIT_EVENTS = {"smoke": 2_000, "standard": 1_000_000, "large": 10_000_000}

GROUPED = 3  # a target judged on more scenarios than this shows one compact line per backend
NOTABLE_BACKLOG = 100  # read scenarios are listed under "Audit sealer" only from this many pending events


# -- targets ---------------------------------------------------------------------------------------------------


def evaluate_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each of the issue's targets: met, missed or not available yet, with the value it was judged on."""
    return [_rate_target(target, report) if target.kind == "rate" else _scenario_target(target, report)
            for target in TARGETS]


def _rate_target(target: Target, report: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"key": target.key, "target": target.text}
    rate = report.get("rates", {}).get(target.rate or "", {})
    if rate.get("status") != "measured":
        entry.update(status=NOT_AVAILABLE if rate.get("status") in (None, NOT_AVAILABLE) else rate["status"],
                     note=rate.get("note", ""))
    else:
        entry.update(value=f"{rate['per_s']:,.0f}/s", status="met" if rate["per_s"] >= target.bound else "missed",
                     note=rate.get("note", ""))
    return entry


def _judge(target: Target, backend_name: str, name: str, scenario: dict[str, Any]) -> tuple[str, bool]:
    """One scenario's value as text, and whether it meets the target (errors above 1% never do)."""
    if target.kind == "ratio":
        metric = target.metric if scenario.get(target.metric) is not None else "ratio_rps"  # older results
        value = scenario[metric]
        label = "" if metric == "ratio_rps" else f" ({metric.removeprefix('ratio_')})"
        return f"{backend_name} {name} {value:.2f}x{label}", value >= target.bound and scenario["valid"]
    value = scenario["strongroom"]["p95_ms"]
    return f"{backend_name} {name} p95 {value:.2f} ms", value < target.bound and scenario["valid"]


def _grouped_value(target: Target, backend_name: str, measured: dict[str, dict[str, Any]]) -> str:
    """``postgresql p95 ms: actor 3.1, entity 2.0, ... (worst: customer 812)``, for a target over many scenarios."""
    common = _common_prefix(list(measured))
    values = {name.removeprefix(common): scenario["strongroom"]["p95_ms"] for name, scenario in measured.items()}
    worst = max(values, key=values.__getitem__)
    met = sum(1 for value in values.values() if value < target.bound)
    return (f"{backend_name} p95 ms: " + ", ".join(f"{name} {value:.1f}" for name, value in values.items())
            + f" (worst: {worst}; {met}/{len(values)} under {target.bound:g})")


def _common_prefix(names: list[str]) -> str:
    prefix = names[0] if names else ""
    for name in names[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    return prefix[: prefix.rfind("_") + 1]


def _scale_note(target: Target, report: dict[str, Any], backends: list[str]) -> str | None:
    """What scale the numbers were measured at, when it is not the scale the issue states the target at."""
    if not target.at_scale or report.get("profile") == "large":
        return None
    sizes = []
    for name in backends:
        data = report["backends"][name].get("data", {})
        events = data.get("audit", {}).get("events")
        contacts = data.get("rows", {}).get("contacts")
        sizes.append(f"{name}: {contacts or 0:,} contacts" + (f", {events:,} audit events" if events else ""))
    return (f"measured at the {report.get('profile')} profile ({'; '.join(sizes)}); the target is stated at "
            f"{target.at_scale} (`--profile large`)")


def _scenario_target(target: Target, report: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"key": target.key, "target": target.text}
    values, verdicts, notes, missing, judged_backends = [], [], [], [], []
    for backend_name in target.backends:
        backend = report["backends"].get(backend_name)
        if backend is None:
            continue
        if target.requires and not backend.get("features", {}).get(target.requires):
            missing.append(backend_name)
            continue
        measured = {name: backend["scenarios"][name] for name in target.scenarios
                    if backend.get("scenarios", {}).get(name, {}).get("status") == "measured"}
        if not measured:
            continue
        judged_backends.append(backend_name)
        judged = {name: _judge(target, backend_name, name, scenario) for name, scenario in measured.items()}
        verdicts += [ok for _text, ok in judged.values()]
        values += ([_grouped_value(target, backend_name, measured)] if len(measured) > GROUPED
                   else [text for text, _ok in judged.values()])
        notes += [f"{backend_name} {name}: errors above 1%" for name, scenario in measured.items()
                  if not scenario["valid"]]
    if not verdicts:
        reason = f"needs the {target.requires} feature" if target.requires and missing else \
            "not measured in this run (backend or scenario not run)"
        return {**entry, "status": NOT_AVAILABLE, "note": reason}
    scale = _scale_note(target, report, judged_backends)
    return {**entry, "value": "; ".join(values), "status": "met" if all(verdicts) else "missed",
            "note": "; ".join([*notes, *([scale] if scale else [])])}


# -- report ----------------------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def markdown(report: dict[str, Any]) -> str:
    """docs/benchmarks.md for a run."""
    lines = [*_introduction(report), *_machine(report)]
    for name, backend in report["backends"].items():
        lines += _backend_section(name, backend, report["settings"])
    if report.get("notes"):
        lines += ["## Notes on this run", "", *(f"- {note}" for note in report["notes"]), ""]
    lines += ["## Targets", "", "| Target | Measured | Status | Note |", "|---|---|---|---|"]
    for target in report["targets"]:
        status = {"met": "✅ met", "missed": "❌ missed"}.get(target["status"], target["status"])
        lines.append(f"| {target['target']} | {target.get('value', '')} | {status} | {target.get('note', '')} |")
    return "\n".join([*lines, *_how_to_run()])


def _introduction(report: dict[str, Any]) -> list[str]:
    settings = report["settings"]
    latency = settings.get("latency")
    latency_text = (
        f" The p95-judged scenarios (blind-index search, audit queries) measure latency, not saturation: "
        f"{latency['connections']} connections, {latency['rounds']} round(s) of {latency['duration_s']} s; "
        "`audited_write` always uses 16 clients, as the issue states." if latency else "")
    return [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m bench.run` (make bench). Do not edit by hand: re-run the benchmark. -->",
        "",
        f"Run of {report['started_at']} ({report['label']}), {report['duration_s']:.0f} s in all. Raw results: "
        f"`{report.get('results_file', '')}`.",
        "",
        "Strongroom is compared with `bench/baseline/`: the same tables, database, driver (and, on SQLite, "
        "Strongroom's driver adapter), pool, serializer (msgspec), ASGI server (granian) and worker count, "
        "without authentication, authorization, masking, encryption, audit or access log. Both apps serve side "
        "by side; each scenario is warmed up on both, then measured "
        f"in {settings['rounds']} rounds of {settings['duration_s']} s that alternate which app goes first. "
        f"Load: wrk, {settings['connections']} connections, {settings['threads']} thread(s), on the same machine."
        + latency_text + " Throughput and latency are medians over the rounds; *spread* is the range of the "
        "rounds' throughput over their median (a noise gauge). **Ratios within this run are what count**: the "
        "machine is shared and noisy, and the load generator competes with the servers for the same cores.",
        "",
    ]


def _machine(report: dict[str, Any]) -> list[str]:
    machine, settings = report["machine"], report["settings"]
    versions = machine.get("versions", {})
    return [
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


def _data_line(data: dict[str, Any]) -> str:
    rows = data.get("rows", {})
    audit = data.get("audit", {})
    text = (f"Data ({data.get('profile')} profile, loaded in {data.get('seconds')} s, "
            f"{data.get('sealing', 'plain')}): " + ", ".join(f"{count:,} {table}" for table, count in rows.items()))
    if audit.get("status") == "loaded":
        rebuild = audit.get("index_rebuild_seconds")
        text += (f"; {audit['events']:,} audit events over {audit.get('history', 'a year')}, generated, chained and "
                 f"written in {audit['seconds']} s ({audit['events_per_s']:,} events/s with {audit.get('workers')} "
                 "encoding processes" + (f", of which {rebuild} s rebuilding indexes" if rebuild else "") + ")")
        if audit["events"] < PROFILE_AUDIT_EVENTS.get(str(data.get("profile")), 0):
            text += (" (a short trail: no audit query is measured on this backend, so the profile's "
                     f"{PROFILE_AUDIT_EVENTS[str(data.get('profile'))]:,} events are loaded only where they are)")
    else:
        text += f"; audit events: {audit.get('status', '?')}"
    return text + "."


def _sweep_line(sweep: dict[str, Any]) -> str:
    ids, passes = sweep.get("ids", sweep["requests"]), sweep.get("passes", 1)
    return (f"Warm caches: before the read scenarios, each of the {ids:,} contacts of the read sample was read "
            f"{passes} time(s) from Strongroom, shuffled over new connections each pass ({sweep['seconds']} s, "
            f"{sweep['errors']} errors). Each server worker loads a customer's data key once and keeps it, as a "
            "server does after its first minutes in service; a connection stays with one worker, so with two "
            "workers about 1 key in 2**passes of the sample is still missing in a given worker when measuring "
            "starts. PostgreSQL's pages, which both apps share, are warm too.")


def _fairness_line(check: dict[str, Any]) -> str:
    seen = check.get("masked_role_sees", {})
    withheld = check.get("withheld_from_clear_role")
    sealed = check.get("sealed_at_rest")
    audit = check.get("audit_same_answer")
    differing = [*check.get("differing_fields", []), *check.get("plain_differing_fields", []),
                 *(f"{name} (not opened)" for name in check.get("not_opened_by_strongroom", []))]
    return (
        "Fairness check: both apps answer the same contact "
        + ("identically" if check.get("same_answer") else "differently: " + ", ".join(differing))
        + (f" (except what the policy withholds from {CLEAR_ROLE}: " + ", ".join(withheld) + ")" if withheld else "")
        + "."
        + (" Encrypted at rest (the baseline serves the ciphertext, Strongroom the opened value): "
           + ", ".join(sealed) + "; a contact stored in clear reads the same in both." if sealed else "")
        + ("" if audit is None else " Audit queries, one per filter: " + (
            "the same events in both." if audit else "different events for " + ", ".join(
                name for name, entry in check.get("audit_filters", {}).items() if not entry["same"]) + "."))
        + (f" The {MASKED_ROLE} role currently sees PII fields as: "
           + ", ".join(f"{k} {v}" for k, v in seen.items()) + "." if seen else "")
        + (f" The list scenario's page: {page['sealed']} of its {page['rows']} e-mails sealed at rest."
           if (page := check.get("list_page_emails")) else "")
    )


def _scenario_rows(scenarios: dict[str, Any]) -> list[str]:
    lines = [
        "| Scenario | Reference req/s | Strongroom req/s | Ratio | Reference p50 / p95 / p99 ms "
        "| Strongroom p50 / p95 / p99 ms | p95 ratio | Errors (R/S) | Spread (R/S) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, scenario in scenarios.items():
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
    return lines


def _sealer_line(scenarios: dict[str, Any]) -> str | None:
    """How long Strongroom's audit sealer needed, after each run, to chain the events the run left pending."""
    parts = []
    for key, scenario in scenarios.items():
        sealer = scenario.get("sealer")
        if scenario.get("status") != "measured" or not sealer:
            continue
        backlog = max(value or 0 for value in sealer["pending_after"])
        if not scenario.get("writes") and backlog < NOTABLE_BACKLOG:
            continue
        drain = max(sealer["drain_s"])
        parts.append(f"`{key}` up to {backlog:,} pending, drained in {drain:.1f} s "
                     f"(sustained ratio {_ratio(scenario.get('ratio_sustained'))})" if drain >= 0
                     else f"`{key}` not drained within the timeout")
    if not parts:
        return None
    return ("Audit sealer: after each Strongroom run the harness waits until every event the run committed is "
            "chained; the sustained ratio divides the requests by run time plus that wait. " + "; ".join(parts) + ".")


def _notes(scenarios: dict[str, Any]) -> list[str]:
    """The measured scenarios' notes, each note once with every scenario it belongs to."""
    by_note: dict[str, list[str]] = {}
    for key, scenario in scenarios.items():
        if scenario.get("status") == "measured" and scenario.get("note"):
            by_note.setdefault(scenario["note"], []).append(f"`{key}`")
    return [f"{', '.join(keys)}: {note}" for note, keys in by_note.items()]


def _backend_section(name: str, backend: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    lines = [f"## {name}", "", _data_line(backend.get("data", {})), ""]
    lines += [f"**Warning:** {warning}" for warning in backend.get("warnings", [])]
    if backend.get("warnings"):
        lines.append("")
    if backend.get("checks"):
        lines += [_fairness_line(backend["checks"]), ""]
    if backend.get("sweep"):
        lines += [_sweep_line(backend["sweep"]), ""]
    scenarios = backend.get("scenarios", {})
    lines += _scenario_rows(scenarios)
    notes = _notes(scenarios)
    sealer = _sealer_line(scenarios)
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    if sealer:
        lines += ["", sealer]
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
    return [*lines, ""]


def _how_to_run() -> list[str]:
    return [
        "",
        "## How to run",
        "",
        "```bash",
        "make bench                        # standard profile, SQLite + PostgreSQL; writes bench/results/<date>.json"
        " and this file",
        "python -m bench.run --smoke       # CI smoke mode: tiny data, seconds (tests/bench/test_bench_smoke.py)",
        "python -m bench.run --profile large   # PostgreSQL: 1M contacts, 10M audit events",
        "python -m bench.run --scenarios audit_query,search_email,audited_write,encryption_read",
        "```",
        "",
        "Needs `wrk` (Debian package `wrk`) and PostgreSQL on 127.0.0.1:5432 (`STRONGROOM_BENCH_POSTGRES_URL`). "
        "See `bench/README.md`.",
        "",
    ]
