"""What the benchmark measures: the HTTP scenarios (one wrk script each), the issue's targets, and the probes
that tell which Strongroom features exist yet (a scenario or target that needs a missing feature is reported
as "not available yet", never with a made-up number).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CLEAR_ROLE = "sales_manager"  # expected to read contact PII in clear, over its team's records
MASKED_ROLE = "marketing"  # expected to see contact PII masked
REP_ROLE = "sales_rep"

NOT_AVAILABLE = "not available yet"


@dataclass(frozen=True)
class Scenario:
    """One HTTP scenario, run against the baseline and Strongroom with the same wrk script and requests."""

    name: str
    title: str
    script: str  # bench/lua/<script>
    path: str  # path template; "{id}" is replaced by a random line of the ids file
    ids: str | None  # which sample file: contacts, customers, emails, versions (update), or None
    user: str = "clear"  # which bench user's token: clear (CLEAR_ROLE) or masked (MASKED_ROLE)
    writes: bool = False
    note: str = ""
    requires: str | None = None  # a feature (probe_features); without it: "not available yet" (smoke runs it)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("read_clear", "Single contact read, PII in clear", "get.lua", "/api/v1/contacts/{id}", "contacts",
             note=f"as {CLEAR_ROLE}"),
    Scenario("read_masked", "Single contact read, PII masked", "get.lua", "/api/v1/contacts/{id}", "contacts",
             user="masked", note=f"as {MASKED_ROLE}"),
    Scenario("list_50", "List of 50 contacts", "get.lua", "/api/v1/contacts?limit=50", None,
             note="first page, newest first"),
    Scenario("create", "Create a contact (with PII)", "create.lua", "/api/v1/contacts", "customers", writes=True),
    Scenario("update", "Update a contact with If-Match", "update.lua", "/api/v1/contacts/{id}", "versions",
             writes=True, note="title + phone"),
    Scenario("customer_360", "Customer 360", "get.lua", "/api/v1/customers/{id}/360", "customers"),
    Scenario("search_email", "Exact-match search on contact email", "get.lua", "/api/v1/contacts?email={id}",
             "emails", requires="blind_index",
             note="blind index once encryption lands; smoke mode runs it on today's plain, unindexed column"),
)

# Scenarios of the issue that need features Strongroom does not have yet; each names what it waits for.
PENDING_SCENARIOS: dict[str, tuple[str, str]] = {
    "audit_query": ("Audit query per filter (actor, entity, record, action, time)", "audit"),
}


@dataclass(frozen=True)
class Target:
    """A target of the issue: a ratio to the baseline (``ratio``), a latency bound (``p95_ms``) or a rate."""

    key: str
    text: str
    kind: str  # "ratio" (Strongroom/baseline throughput >= bound), "p95_ms" (< bound), "rate" (>= bound)
    bound: float
    scenarios: tuple[str, ...] = ()
    backends: tuple[str, ...] = ("sqlite", "postgresql")
    requires: str | None = None  # a feature; without it the target is "not available yet"
    rate: str | None = None  # for kind "rate": the key in the collected rates
    at_scale: str = ""  # the data scale the issue states the target at


TARGETS: tuple[Target, ...] = (
    Target("secure_read", "Secure single read >= 0.85x baseline", "ratio", 0.85, ("read_clear", "read_masked")),
    Target("list_50", "50-row list >= 0.7x baseline", "ratio", 0.7, ("list_50",)),
    Target("audited_write", "Audited write >= 0.7x baseline write (16 clients, PostgreSQL)", "ratio", 0.7,
           ("create", "update"), backends=("postgresql",)),
    Target("blind_index_p95", "Blind-index lookup p95 < 5 ms at 1M contacts", "p95_ms", 5.0, ("search_email",),
           requires="blind_index", at_scale="1,000,000 contacts"),
    Target("audit_verify", "Audit verify >= 500,000 events/s per core", "rate", 500_000, rate="audit_verify"),
    Target("inclusion_proof", "Inclusion-proof verification >= 50,000/s", "rate", 50_000, rate="inclusion_proof"),
    Target("audit_query_p95", "Audit query p95 < 50 ms at 10M events", "p95_ms", 50.0, ("audit_query",),
           requires="audit", at_scale="10,000,000 audit events"),
    Target("rewrap", "Key rewrap >= 20,000 DEKs/s", "rate", 20_000, rate="rewrap"),
    Target("reencrypt", "Re-encryption >= 20,000 values/s", "rate", 20_000, rate="reencrypt"),
)

# Other helpers' rate scripts (bench/<module>.py), run if present. For each rate: the pattern of the output
# lines that report it; when several lines match (suites, tree sizes) the lowest rate is the one judged.
RATE_SCRIPTS: dict[str, dict[str, str]] = {
    "audit_verify_rate": {"audit_verify": r"^verify_chain\b"},
    "merkle_proof_rate": {"inclusion_proof": r"leaves \(\d+ nodes\)"},
    "crypto_rates": {"rewrap": r"\srewrap\s", "reencrypt": r"\s(reseal|re-?encrypt)\s"},
}
_RATE = re.compile(r"([0-9][0-9,]*(?:\.[0-9]+)?)\s*(?:[A-Za-z-]+\s*)?/\s*s\b")
_BIG_NUMBER = re.compile(r"\b([0-9]{1,3}(?:,[0-9]{3})+|[0-9]{4,})(?:\.[0-9]+)?\b")


def parse_rates(output: str, patterns: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Rates (per second) from a rate script's output: ``{key: {"per_s": lowest, "lines": n}}``.

    A matching line gives its ``N /s`` (``612,000 events/s``), else the first large number after the match
    (a table row such as ``aes-256-gcm  rewrap  291,435  3.43``).
    """
    found: dict[str, dict[str, Any]] = {}
    for key, pattern in patterns.items():
        values = []
        for line in output.splitlines():
            match = re.search(pattern, line.strip())
            if not match:
                continue
            rate = _RATE.search(line) or _BIG_NUMBER.search(line.strip(), match.end())
            if rate:
                values.append(float(rate.group(1).replace(",", "")))
        if values:
            found[key] = {"per_s": min(values), "lines": len(values)}
    return found


# -- feature probes ------------------------------------------------------------------------------------------

AUDIT_TABLES = ("audit_events", "audit_event", "audit_log", "audit_trail")


def probe_features(tables: Mapping[str, list[str]]) -> dict[str, Any]:
    """Which Strongroom features exist, from the migrated schema (table name -> column names)."""
    from bench.datagen import SEALS_VALUES

    audit_table = next((name for name in AUDIT_TABLES if name in tables), None)
    contact_columns = tables.get("contacts", [])
    blind = [column for column in contact_columns if column.startswith("email") and column != "email"]
    return {
        "audit": audit_table is not None,
        "audit_table": audit_table,
        # Blind-index search counts only when the generated rows carry real blind indexes: an index column
        # left NULL by a plain generator would make every search an instant miss, a fake number.
        "blind_index": bool(blind) and SEALS_VALUES,
        "encryption_schema": bool(blind),
        "blind_index_columns": blind,
        "datagen_sealing": "sealed (bench/datagen.py seal_value)" if SEALS_VALUES else "plain values",
    }


PII_FIELDS = ("name", "phone", "mobile", "email", "address", "national_id")


def classify_fields(clear: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, str]:
    """For each PII field: ``clear``, ``masked`` (differs, contains ``*``), ``hidden`` (absent), ``empty`` (no
    value in the sample record, so nothing to tell) or ``other``."""
    result = {}
    for name in PII_FIELDS:
        if name not in other:
            result[name] = "hidden"
        elif clear.get(name) is None and other[name] is None:
            result[name] = "empty"
        elif other[name] == clear.get(name):
            result[name] = "clear"
        elif isinstance(other[name], str) and "*" in other[name]:
            result[name] = "masked"
        else:
            result[name] = "other"
    return result
