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
AUDITOR_ROLE = "auditor"  # reads the audit trail, nothing else

NOT_AVAILABLE = "not available yet"


@dataclass(frozen=True)
class Scenario:
    """One HTTP scenario: the same wrk script drives the reference app and Strongroom.

    The reference is the plain baseline, or (``reference="plain"``) Strongroom itself serving rows stored in
    clear, so the ratio isolates what one feature costs (decryption). Columns of an ids line are whitespace
    separated: ``{1}``, ``{2}`` in a path take them, ``{id}`` the whole line.
    """

    name: str
    title: str
    script: str  # bench/lua/<script>
    path: str  # path template; "{id}" is replaced by a random line of the ids file, "{1}"/"{2}" by its columns
    ids: str | None  # which sample file (datagen), "versions" (update), or None
    user: str = "clear"  # which bench user's token: clear (CLEAR_ROLE), masked (MASKED_ROLE) or auditor
    writes: bool = False
    note: str = ""
    requires: str | None = None  # a feature (probe_features); without it: "not available yet" (smoke runs it)
    backends: tuple[str, ...] = ("sqlite", "postgresql")
    # Where a full run measures it unless it is named in --scenarios (smoke runs it on every backend): keeps the
    # standard run inside its time budget where the issue states the target on one backend only.
    default_backends: tuple[str, ...] | None = None
    connections: int | None = None  # fixed client count (the "16 clients"); else --connections
    latency: bool = False  # judged on p95: few clients (--latency-connections) and the short schedule
    reference: str = "baseline"  # "baseline", or "plain": Strongroom on unencrypted rows
    reference_path: str | None = None  # the reference's path template, when it differs
    reference_ids: str | None = None  # the reference's sample file, when it differs
    group: str | None = None  # selectable as a whole with --scenarios GROUP


def fill_path(template: str, line: str) -> str:
    """The path for one sample line, as ``bench/lua/get.lua`` builds it: ``{id}`` is the line, ``{1}``, ``{2}``
    its whitespace-separated columns."""
    columns = line.split()
    path = template.replace("{id}", line)
    return re.sub(r"\{(\d)\}", lambda match: columns[int(match.group(1)) - 1]
                  if int(match.group(1)) <= len(columns) else "", path)


AUDIT_EVENTS = "/api/v1/audit/events"
# The compliance filters of GET /api/v1/audit/events, each with the sample file (bench/auditgen.py) it draws
# values from. A record is named by entity and id, as the indexes (entity, entity_id, seq) expect.
AUDIT_FILTERS: tuple[tuple[str, str, str], ...] = (
    ("actor", "actor_id={1}", "an actor's events"),
    ("entity", "entity={1}", "one kind of record"),
    ("record", "entity={1}&entity_id={2}", "one record"),
    ("field", "field={1}", "events touching or revealing one field"),
    ("action", "action={1}", "one action"),
    ("outcome", "outcome={1}", "one outcome"),
    ("time", "since={1}&until={2}", "one day"),
    ("customer", "customer_id={1}", "everything done to or seen of one customer"),
)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("read_clear", "Single contact read, PII in clear", "get.lua", "/api/v1/contacts/{id}", "contacts",
             note=f"as {CLEAR_ROLE}"),
    Scenario("read_masked", "Single contact read, PII masked", "get.lua", "/api/v1/contacts/{id}", "contacts",
             user="masked", note=f"as {MASKED_ROLE}"),
    Scenario("encryption_read", "Encrypted vs unencrypted contact read (Strongroom both)", "get.lua",
             "/api/v1/contacts/{id}", "contacts", reference="plain", reference_ids="plain_contacts",
             requires="encryption",
             note="reference column: Strongroom reading contacts stored in clear; ratio = sealed/plain"),
    Scenario("list_50", "List of 50 contacts", "get.lua", "/api/v1/contacts?limit=50", None,
             note="first page, newest first"),
    Scenario("customer_360", "Customer 360", "get.lua", "/api/v1/customers/{id}/360", "customers"),
    Scenario("search_email", "Blind-index search: contact by email", "get.lua", "/api/v1/contacts?email={1}",
             "emails", requires="blind_index", latency=True, reference_path="/api/v1/contacts?email_bidx={2}",
             note="baseline: the same indexed lookup by the blind-index value, no HMAC, decryption or audit"),
    *(Scenario(f"audit_{key}", f"Audit query by {key}: {text}", "get.lua", f"{AUDIT_EVENTS}?{query}", f"audit_{key}",
               user="auditor", requires="audit", latency=True, group="audit_query", default_backends=("postgresql",),
               note="baseline: the same SQL; no authorisation, sealing of pending events, recording of the query or "
                    "canonical decoding")
      for key, query, text in AUDIT_FILTERS),
    Scenario("create", "Create a contact (with PII)", "create.lua", "/api/v1/contacts", "customers", writes=True,
             backends=("sqlite",), note="PostgreSQL: see audited_write"),
    Scenario("update", "Update a contact with If-Match", "update.lua", "/api/v1/contacts/{id}", "versions",
             writes=True, note="title + phone"),
    Scenario("audited_write", "Audited create, 16 clients", "create.lua", "/api/v1/contacts", "customers",
             writes=True, backends=("postgresql",), connections=16,
             note="sustained ratio counts the time the sealer needs to chain the run's events"),
)
GROUPS: dict[str, tuple[str, ...]] = {
    group: tuple(s.name for s in SCENARIOS if s.group == group) for group in {s.group for s in SCENARIOS} if group
}
AUDIT_QUERY_SCENARIOS = GROUPS["audit_query"]


@dataclass(frozen=True)
class Target:
    """A target of the issue: a ratio (``ratio``, of ``metric``), a latency bound (``p95_ms``) or a rate."""

    key: str
    text: str
    kind: str  # "ratio" (Strongroom/reference >= bound), "p95_ms" (< bound), "rate" (>= bound)
    bound: float
    scenarios: tuple[str, ...] = ()
    backends: tuple[str, ...] = ("sqlite", "postgresql")
    requires: str | None = None  # a feature; without it the target is "not available yet"
    rate: str | None = None  # for kind "rate": the key in the collected rates
    at_scale: str = ""  # the data scale the issue states the target at
    metric: str = "ratio_rps"  # for kind "ratio": which ratio of the scenario is judged


TARGETS: tuple[Target, ...] = (
    Target("secure_read", "Secure single read >= 0.85x baseline", "ratio", 0.85, ("read_clear", "read_masked")),
    Target("list_50", "50-row list >= 0.7x baseline", "ratio", 0.7, ("list_50",)),
    Target("audited_write", "Audited write >= 0.7x baseline write (16 clients, PostgreSQL)", "ratio", 0.7,
           ("audited_write", "update"), backends=("postgresql",), metric="ratio_sustained"),
    Target("encryption_read", "Encryption adds <= 10% to a single read (sealed/plain >= 0.91x)", "ratio",
           round(1 / 1.1, 3), ("encryption_read",), requires="encryption"),
    Target("blind_index_p95", "Blind-index lookup p95 < 5 ms at 1M contacts (PostgreSQL)", "p95_ms", 5.0,
           ("search_email",), backends=("postgresql",), requires="blind_index", at_scale="1,000,000 contacts"),
    Target("audit_verify", "Audit verify >= 500,000 events/s per core", "rate", 500_000, rate="audit_verify"),
    Target("inclusion_proof", "Inclusion-proof verification >= 50,000/s", "rate", 50_000, rate="inclusion_proof"),
    Target("audit_chaining", "Audit chaining <= 10 us CPU per event (>= 100,000 events/s)", "rate", 100_000,
           rate="audit_chaining"),
    Target("audit_query_p95", "Audit query p95 < 50 ms per filter at 10M events (PostgreSQL)", "p95_ms", 50.0,
           AUDIT_QUERY_SCENARIOS, backends=("postgresql",), requires="audit", at_scale="10,000,000 audit events"),
    Target("rewrap", "Key rewrap >= 20,000 DEKs/s", "rate", 20_000, rate="rewrap"),
    Target("reencrypt", "Re-encryption >= 20,000 values/s", "rate", 20_000, rate="reencrypt"),
)

# Other helpers' rate scripts (bench/<module>.py), run if present. For each rate: the pattern of the output
# lines that report it; when several lines match (suites, tree sizes) the lowest rate is the one judged.
RATE_SCRIPTS: dict[str, dict[str, str]] = {
    "audit_verify_rate": {"audit_verify": r"^verify_chain\b"},
    "audit_chain_rate": {"audit_chaining": r"^chaining\b"},
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
PENDING_TABLE = "audit_pending"


def probe_features(tables: Mapping[str, list[str]], data: Mapping[str, Any]) -> dict[str, Any]:
    """Which Strongroom features exist: from the migrated schema (table name -> column names) and from what the
    data generator managed to write (``LoadReport.as_dict()``: rows sealed, audit events loaded)."""
    audit_table = next((name for name in AUDIT_TABLES if name in tables), None)
    contact_columns = tables.get("contacts", [])
    blind = [column for column in contact_columns if column.startswith("email") and column != "email"]
    sealed = data.get("sealing") == "sealed"
    return {
        "audit": audit_table is not None and data.get("audit", {}).get("status") == "loaded",
        "audit_table": audit_table,
        "audit_pending": PENDING_TABLE in tables,  # events are chained by a sealer after commit
        # Blind-index search counts only when the generated rows carry real blind indexes: an index column
        # left NULL by a plain generator would make every search an instant miss, a fake number.
        "blind_index": bool(blind) and sealed,
        "encryption": bool(blind) and sealed,  # rows sealed as Strongroom stores them
        "encryption_schema": bool(blind),
        "blind_index_columns": blind,
        "datagen_sealing": "sealed with the server's field cipher" if sealed else "plain values",
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
