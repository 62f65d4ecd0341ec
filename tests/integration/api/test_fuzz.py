"""Schema-driven fuzzing of the HTTP API with Hypothesis: whatever a client sends, the answer is never a 5xx.

The request-body schemas are read from the served OpenAPI document (``/schema/openapi.json``), so a new field is
fuzzed without touching this file. For every POST and PATCH of the five collections, a few properties of a valid
body are replaced by values generated from their schema (boundary lengths, enum members, any unicode text, dates
with any offset, integers of any size, ids of real and missing records) or by arbitrary JSON (nested objects and
lists, non-finite numbers), sometimes with unknown keys added; raw byte soup is posted as bodies; list endpoints
get random filters, sorts, limits and forged cursors; item routes get random path segments; the token endpoint
gets random forms. Every 4xx must be an RFC 9457 problem without internals.

Hypothesis cannot drive an ``async def`` test by itself, and the app lives on the test session's event loop.
So each test is a plain function whose ``@given`` body runs one request at a time on that loop (idle while a
sync test runs), and counts what it saw: a run that sent fewer examples than asked, or never reached the
success path, fails instead of passing vacuously.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from collections import Counter
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

PROBLEM = "application/problem+json"
API = "/api/v1"
CUSTOMERS, CONTACTS, OPPORTUNITIES = f"{API}/customers", f"{API}/contacts", f"{API}/opportunities"
SERVICE_RECORDS, ACTIVITIES = f"{API}/service-records", f"{API}/activities"
COLLECTIONS = [CUSTOMERS, CONTACTS, OPPORTUNITIES, SERVICE_RECORDS, ACTIVITIES]
LEAK = re.compile(r"Traceback|File \"|site-packages|\.py\b|/work/|/usr/(local/)?lib|line \d+, in ")


# Examples per run, sized so the whole file stays under a minute per backend (each request costs ~20-40 ms).
CREATE_EXAMPLES, UPDATE_EXAMPLES, LIST_EXAMPLES, RAW_EXAMPLES, SMALL_EXAMPLES = 80, 40, 60, 50, 50


def fuzz(examples: int) -> settings:
    """Bounded runs (the whole file stays well under a minute per backend); no example database in the repo."""
    return settings(max_examples=examples, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# Names a list may be asked to filter or sort by (and some it may not).
LIST_PARAMETERS = {
    CUSTOMERS: ["kind", "industry", "region", "tier", "lifecycle_stage", "source_channel", "owner_id", "org_unit_id",
                "name", "created_at", "updated_at"],
    CONTACTS: ["customer_id", "phone", "mobile", "email", "national_id", "marketing_consent", "name"],
    OPPORTUNITIES: ["customer_id", "currency", "stage", "owner_id", "title", "amount", "probability"],
    SERVICE_RECORDS: ["customer_id", "contact_id", "type", "priority", "status", "owner_id", "first_response_due",
                      "resolution_due"],
    ACTIVITIES: ["customer_id", "contact_id", "opportunity_id", "service_record_id", "kind", "owner_id",
                 "occurred_at"],
}
ENUM_VALUES = ["company", "individual", "A", "B", "C", "lead", "prospect", "customer", "churned", "web", "referral",
               "qualification", "needs_analysis", "proposal", "negotiation", "won", "lost", "inquiry", "complaint",
               "repair", "maintenance", "low", "normal", "high", "urgent", "open", "in_progress", "resolved",
               "closed", "visit", "call", "email", "meeting", "note", "EUR", "CNY", "eur", ""]
EDGE_TEXT = ["", " ", "\x00", "a\x00b", "\u202e", "\ufeff", "💥" * 50, "x" * 201, "x" * 20_001, "NaN", "-Infinity",
             "1e400", "-0", "0.00001", "99999999999999.9999", "100000000000000", "2026-02-30",
             "2026-05-01T10:00:00", "2026-05-01T10:00:00+08:00", "0001-01-01T00:00:00+14:00",
             "9999-12-31T23:59:59-14:00", "0001-01-01", "9999-12-31", "not-a-uuid",
             "00000000-0000-0000-0000-000000000000",
             "+86 138 1234 5678", "a@b.cc", "a@@b", "110101199003077777", "' OR 1=1 --", "<script>", "../../etc"]
EDGE_NUMBERS: list[Any] = [0, -1, 1, 5, 100, 101, 2**31, 2**63, -(2**63) - 1, 10**40, 0.5, 1e300, -1e300,
                           1.23456, float("nan"), float("inf"), float("-inf"), True, False]


# -- harness --------------------------------------------------------------------------------------------------


def check(response: httpx.Response, seen: Counter[int]) -> None:
    """Never a 5xx; every 4xx a problem without internals; successes are JSON."""
    seen[response.status_code] += 1
    request = f"{response.request.method} {response.request.url}"
    assert response.status_code < 500, f"{request} -> {response.status_code}: {response.text[:300]}"
    content_type = response.headers.get("content-type", "")
    if response.status_code >= 400:
        assert content_type.startswith(PROBLEM), f"{request} -> {response.status_code} {content_type}"
        body = response.json()
        assert body["status"] == response.status_code
        assert {"type", "title", "detail", "instance"} <= body.keys(), body
        assert not LEAK.search(response.text), f"{request} leaks internals: {response.text[:300]}"
    elif response.status_code != 204:
        assert content_type.startswith("application/json"), f"{request} -> {content_type}"


def encode(body: Any) -> bytes:
    # Not httpx's json=: non-finite floats must go out as the NaN/Infinity tokens a careless client would send.
    return json.dumps(body, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


def require_examples(seen: Counter[int], examples: int, *, success: set[int] | None = None) -> None:
    """The run really sent its examples, and (if given) reached one of the ``success`` statuses."""
    assert sum(seen.values()) >= examples, f"only {sum(seen.values())} requests sent: {dict(seen)}"
    if success:
        assert success & seen.keys(), f"no request succeeded ({success}): {dict(seen)}"


@pytest.fixture(scope="module", name="fx_run")
async def fx_run() -> Any:
    """Run one awaitable to completion on the event loop the app under test lives on."""
    loop = asyncio.get_running_loop()
    return loop.run_until_complete


@pytest.fixture(scope="module", name="fx_caller")
async def fx_caller(fx_api: Any, fx_unit: str) -> dict[str, str]:
    """A sales manager who is also a support agent: may create and change records in all five collections, so
    what these tests meet is input validation, not field security."""
    return await fx_api.login(["sales_manager", "support_agent"], unit=fx_unit)


@pytest.fixture(scope="module", name="fx_openapi")
async def fx_openapi(fx_api: Any) -> dict[str, Any]:
    """The OpenAPI document the server publishes: the fuzzer's source of truth for request bodies."""
    response = await fx_api.client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture(scope="module", name="fx_world")
async def fx_world(fx_api: Any, fx_caller: dict[str, str]) -> dict[str, Any]:
    """Records whose ids the fuzzer mixes in, so references sometimes point at something real."""

    async def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await fx_api.client.post(url, json=body, headers=fx_caller)
        assert response.status_code == 201, response.text
        return dict(response.json())

    company = await post(CUSTOMERS, {"name": "Fuzz Co", "kind": "company"})
    person = await post(CUSTOMERS, {"name": "Fuzz Person", "kind": "individual"})
    contact = await post(CONTACTS, {"customer_id": person["id"], "name": "Fuzz Contact", "national_id": "1234-5678"})
    opportunity = await post(OPPORTUNITIES, {"customer_id": company["id"], "title": "Fuzz", "amount": "1.00",
                                             "currency": "EUR"})
    record = await post(SERVICE_RECORDS, {"customer_id": person["id"], "contact_id": contact["id"], "type": "repair",
                                          "priority": "low", "description": "Fuzz"})
    activity = await post(ACTIVITIES, {"customer_id": company["id"], "kind": "call",
                                       "occurred_at": "2026-01-01T00:00:00Z", "summary": "Fuzz"})
    token = fx_caller["Authorization"].removeprefix("Bearer ")
    owner_id = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["sub"]
    return {"company": company, "person": person, CUSTOMERS: company, CONTACTS: contact, OPPORTUNITIES: opportunity,
            SERVICE_RECORDS: record, ACTIVITIES: activity, "owner_id": owner_id,
            "ids": [company["id"], person["id"], contact["id"], opportunity["id"], record["id"], activity["id"],
                    owner_id]}


def valid_body(collection: str, world: dict[str, Any]) -> dict[str, Any]:
    person_id = world["person"]["id"]
    return {
        CUSTOMERS: {"name": "Fuzzed", "kind": "individual", "tags": ["fuzz"]},
        # A fresh e-mail each time: contacts are de-duplicated by e-mail (409), which is not what is fuzzed here.
        CONTACTS: {"customer_id": person_id, "name": "Fuzzed", "email": f"fuzz-{uuid.uuid4().hex[:12]}@example.com"},
        OPPORTUNITIES: {"customer_id": person_id, "title": "Fuzzed", "amount": "12.50", "currency": "CNY"},
        SERVICE_RECORDS: {"customer_id": person_id, "type": "inquiry", "priority": "normal", "description": "Fuzz"},
        ACTIVITIES: {"customer_id": person_id, "kind": "note", "occurred_at": "2026-05-01T10:00:00+08:00",
                     "summary": "Fuzz"},
    }[collection]


# -- strategies ---------------------------------------------------------------------------------------------------


def scalars(world: dict[str, Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.booleans(), st.integers(), st.sampled_from(EDGE_NUMBERS),
        st.floats(allow_nan=True, allow_infinity=True), st.decimals(allow_nan=False, places=6).map(str),
        st.text(max_size=30), st.sampled_from(EDGE_TEXT), st.sampled_from(EDGE_TEXT), st.sampled_from(ENUM_VALUES),
        st.sampled_from(world["ids"]), st.uuids().map(str),
        st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
    )


def json_values(world: dict[str, Any]) -> st.SearchStrategy[Any]:
    return st.recursive(scalars(world), lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=8)


def resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = {**components[schema["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def from_schema(schema: dict[str, Any], components: dict[str, Any], world: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values a JSON schema allows, biased to its edges (a tiny subset of JSON Schema: what Litestar emits)."""
    schema = resolve(schema, components)
    for combinator in ("oneOf", "anyOf"):
        if combinator in schema:
            # Litestar puts the constraints (maxLength, minimum ...) beside the oneOf, not inside each branch.
            outer = {key: value for key, value in schema.items() if key != combinator}
            return st.one_of([from_schema({**outer, **resolve(branch, components)}, components, world)
                              for branch in schema[combinator]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "uuid":
            return st.one_of(st.sampled_from(world["ids"]), st.uuids().map(str))
        if fmt == "date-time":
            edge_moments = st.sampled_from([text for text in EDGE_TEXT if text[:1].isdigit()])
            return st.one_of(st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
                             edge_moments, edge_moments)
        if fmt == "date":
            return st.dates().map(lambda day: day.isoformat())
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        low, high = schema.get("minLength", 0), schema.get("maxLength", 20_000)
        edges = st.sampled_from([text for text in EDGE_TEXT if low <= len(text) <= high])
        # Control characters (U+0000 above all) are what databases choke on: splice them in often.
        controlled = st.tuples(st.text(max_size=10), st.characters(max_codepoint=0x1F), st.text(max_size=10)).map(
            "".join)
        return st.one_of(st.text(min_size=low, max_size=min(high, 40)), edges, edges, controlled,
                         st.text(min_size=high, max_size=high) if high <= 300 else st.nothing(),
                         st.decimals(allow_nan=True, places=6).map(str))
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum"), max_value=schema.get("maximum"))
    if kind == "number":
        return st.floats()
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), components, world), max_size=3)
    return json_values(world)


def body_schema(openapi: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    """The JSON request-body schema of ``method path`` in the served OpenAPI document."""
    operation = openapi["paths"][path][method]
    schema = resolve(operation["requestBody"]["content"]["application/json"]["schema"],
                     openapi["components"]["schemas"])
    assert schema.get("properties"), f"{method.upper()} {path}: no body properties in the OpenAPI document"
    return schema


def mutations(openapi: dict[str, Any], path: str, method: str,
              world: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Up to three properties set to schema-shaped values (mostly) or arbitrary JSON, maybe plus unknown keys."""
    schema = body_schema(openapi, path, method)
    components = openapi["components"]["schemas"]
    anything = json_values(world)
    known = st.one_of([
        st.tuples(st.just(name), st.one_of(typed, typed, typed, anything))
        for name, typed in ((name, from_schema(prop, components, world)) for name, prop in
                            sorted(schema["properties"].items()))
    ])
    unknown = st.tuples(st.one_of(st.text(max_size=12), st.sampled_from(["id", "created_at", "consent_at"])),
                        json_values(world))
    return st.one_of(st.just({}), st.lists(st.one_of(known, known, known, unknown), min_size=1, max_size=3).map(dict))


def header_values() -> st.SearchStrategy[str | bytes]:
    printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)
    return st.one_of(st.just('"1"'), st.just('W/"1"'), printable,
                     st.binary(max_size=20).map(lambda raw: bytes(b for b in raw if b >= 0x20 and b != 0x7F)))


def cursors() -> st.SearchStrategy[str]:
    """Garbage, and well-wrapped cursors around forged values (the server's envelope is public knowledge)."""
    payload = st.one_of(
        st.tuples(st.text(max_size=15), st.booleans(), st.one_of(st.text(max_size=30), st.sampled_from(EDGE_TEXT)),
                  st.one_of(st.uuids().map(str), st.text(max_size=10))).map(list),
        json_values({"ids": [str(uuid.uuid4())]}),
    )
    wrapped = payload.map(lambda value: base64.urlsafe_b64encode(encode(value)).rstrip(b"=").decode())
    return st.one_of(wrapped, st.text(max_size=60), st.binary(max_size=40).map(
        lambda raw: base64.urlsafe_b64encode(raw).decode()))


def query_parameters(collection: str) -> st.SearchStrategy[list[tuple[str, str]]]:
    names = st.one_of(st.sampled_from(["limit", "cursor", "sort", *LIST_PARAMETERS[collection]]),
                      st.text(max_size=10))
    numbers = st.one_of(st.integers(), st.sampled_from(EDGE_NUMBERS)).map(str)
    sorts = st.tuples(st.sampled_from(["", "-", "--"]), st.one_of(
        st.sampled_from(LIST_PARAMETERS[collection]), st.text(max_size=10))).map("".join)
    values = st.one_of(st.text(max_size=40), st.sampled_from(EDGE_TEXT), st.sampled_from(ENUM_VALUES), numbers,
                       st.uuids().map(str), sorts, cursors())
    filters = st.tuples(st.sampled_from(LIST_PARAMETERS[collection]), st.one_of(st.text(max_size=20), values))
    pair = st.one_of(st.tuples(st.just("limit"), numbers), st.tuples(st.just("sort"), sorts),
                     st.tuples(st.just("cursor"), cursors()), filters, filters, st.tuples(names, values))
    return st.lists(pair, max_size=5)


def mutated_json(world: dict[str, Any], collection: str) -> st.SearchStrategy[bytes]:
    """A valid body's bytes, truncated, spliced with random bytes, or replaced by byte soup."""
    original = encode(valid_body(collection, world))

    def splice(cut: tuple[int, int, bytes]) -> bytes:
        start, length, junk = cut
        return original[:start] + junk + original[start + length:]

    edits = st.tuples(st.integers(0, len(original)), st.integers(0, 8), st.binary(max_size=12)).map(splice)
    return st.one_of(edits, st.binary(max_size=200), st.integers(0, len(original)).map(lambda n: original[:n]),
                     st.integers(1, 5_000).map(lambda depth: b"[" * depth + b"]" * depth))


# -- the fuzz runs ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_fuzz_create_bodies(fx_api: Any, fx_caller: dict[str, str], fx_openapi: dict[str, Any],
                            fx_world: dict[str, Any], fx_run: Any, collection: str) -> None:
    seen: Counter[int] = Counter()
    base = valid_body(collection, fx_world)
    headers = {**fx_caller, "Content-Type": "application/json"}

    @fuzz(CREATE_EXAMPLES)
    @given(changes=mutations(fx_openapi, collection, "post", fx_world),
           dropped=st.one_of(st.just(set()), st.sets(st.sampled_from(sorted(base)), max_size=1)),
           idempotency_key=st.one_of(st.none(), header_values()))
    def run(changes: dict[str, Any], dropped: set[str], idempotency_key: str | bytes | None) -> None:
        body = {**{name: value for name, value in base.items() if name not in dropped}, **changes}
        extra = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
        check(fx_run(fx_api.client.post(collection, content=encode(body), headers={**headers, **extra})), seen)

    run()
    require_examples(seen, CREATE_EXAMPLES, success={201})


# Valid changes that move a fresh record into a more interesting state before the fuzzed PATCH.
PRELUDES: dict[str, list[list[dict[str, Any]]]] = {
    CUSTOMERS: [[], [{"lifecycle_stage": "customer"}],
                [{"lifecycle_stage": "customer"}, {"lifecycle_stage": "churned"}]],
    CONTACTS: [[], [{"marketing_consent": True, "consent_source": "web form"}]],
    OPPORTUNITIES: [[], [{"stage": "won"}], [{"stage": "lost", "loss_reason": "Price"}]],
    SERVICE_RECORDS: [[], [{"status": "in_progress"}], [{"status": "in_progress"}, {"resolution": "Done",
                                                                                    "status": "resolved"}],
                      [{"resolution": "Dup", "status": "closed"}]],
    ACTIVITIES: [[]],
}


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_fuzz_update_bodies(fx_api: Any, fx_caller: dict[str, str], fx_openapi: dict[str, Any],
                            fx_world: dict[str, Any], fx_run: Any, collection: str) -> None:
    seen: Counter[int] = Counter()
    headers = {**fx_caller, "Content-Type": "application/json"}

    async def prepared(prelude: list[dict[str, Any]]) -> tuple[str, int]:
        created = await fx_api.client.post(collection, json=valid_body(collection, fx_world), headers=fx_caller)
        assert created.status_code == 201, created.text
        url, version = f"{collection}/{created.json()['id']}", 1
        for changes in prelude:
            moved = await fx_api.client.patch(url, json={**changes, "version": version}, headers=fx_caller)
            assert moved.status_code == 200, moved.text
            version = moved.json()["version"]
        return url, version

    @fuzz(UPDATE_EXAMPLES)
    @given(prelude=st.sampled_from(PRELUDES[collection]),
           changes=mutations(fx_openapi, f"{collection}/{{record_id}}", "patch", fx_world),
           # Mostly the right version (so the body reaches the rules), sometimes anything at all.
           version=st.one_of(st.just("current"), st.just("current"), st.none(), json_values(fx_world)),
           if_match=st.one_of(st.none(), st.none(), st.just("current"), header_values()))
    def run(prelude: list[dict[str, Any]], changes: dict[str, Any], version: Any, if_match: Any) -> None:
        url, current = fx_run(prepared(prelude))
        body = dict(changes)
        if version == "current":
            body["version"] = current
        elif version is not None:
            body.setdefault("version", version)
        extra = {} if if_match is None else {"If-Match": f'"{current}"' if if_match == "current" else if_match}
        check(fx_run(fx_api.client.patch(url, content=encode(body), headers={**headers, **extra})), seen)

    run()
    require_examples(seen, UPDATE_EXAMPLES, success={200})


def test_fuzz_reopen_bodies(fx_api: Any, fx_caller: dict[str, str], fx_openapi: dict[str, Any],
                            fx_world: dict[str, Any], fx_run: Any) -> None:
    seen: Counter[int] = Counter()
    url = f"{OPPORTUNITIES}/{fx_world[OPPORTUNITIES]['id']}/reopen"
    base = {"stage": "proposal", "reason": "Customer came back"}

    @fuzz(SMALL_EXAMPLES)
    @given(body=st.one_of(
        mutations(fx_openapi, f"{OPPORTUNITIES}/{{record_id}}/reopen", "post", fx_world).map(
            lambda changes: {**base, **changes}),
        json_values(fx_world)))
    def run(body: Any) -> None:
        check(fx_run(fx_api.client.post(url, content=encode(body),
                                        headers={**fx_caller, "Content-Type": "application/json"})), seen)

    run()
    require_examples(seen, SMALL_EXAMPLES)


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_fuzz_raw_bodies(fx_api: Any, fx_caller: dict[str, str], fx_world: dict[str, Any], fx_run: Any,
                         collection: str) -> None:
    seen: Counter[int] = Counter()
    item = f"{collection}/{fx_world[collection]['id']}"

    @fuzz(RAW_EXAMPLES)
    @given(content=mutated_json(fx_world, collection), method=st.sampled_from(["POST", "PATCH"]),
           content_type=st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", ""]))
    def run(content: bytes, method: str, content_type: str) -> None:
        url, extra = (collection, {}) if method == "POST" else (item, {"If-Match": '"1"'})
        headers = {**fx_caller, **extra, **({"Content-Type": content_type} if content_type else {})}
        check(fx_run(fx_api.client.request(method, url, content=content, headers=headers)), seen)

    run()
    require_examples(seen, RAW_EXAMPLES)
    assert seen[400] or seen[422], dict(seen)


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_fuzz_list_queries(fx_api: Any, fx_caller: dict[str, str], fx_run: Any, collection: str) -> None:
    seen: Counter[int] = Counter()

    @fuzz(LIST_EXAMPLES)
    @given(params=query_parameters(collection))
    def run(params: list[tuple[str, str]]) -> None:
        try:
            response = fx_run(fx_api.client.get(collection, params=params, headers=fx_caller))
        except httpx.InvalidURL:  # several long edge values: a query httpx itself refuses to send (over 64 KiB)
            reject()
        check(response, seen)
        if response.status_code == 200:
            assert set(response.json()) == {"items", "next_cursor"}

    run()
    require_examples(seen, LIST_EXAMPLES, success={200})


def test_fuzz_item_paths(fx_api: Any, fx_caller: dict[str, str], fx_run: Any) -> None:
    seen: Counter[int] = Counter()
    segments = st.one_of(st.uuids().map(str), st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))

    @fuzz(SMALL_EXAMPLES)
    @given(collection=st.sampled_from(COLLECTIONS), segment=segments,
           suffix=st.sampled_from(["", "/360", "/reopen", "/", "/x"]),
           method=st.sampled_from(["GET", "PATCH", "DELETE", "POST", "PUT", "OPTIONS"]))
    def run(collection: str, segment: str, suffix: str, method: str) -> None:
        url = f"{collection}/{quote(segment, safe='')}{suffix}"
        body = encode({"version": 1}) if method in {"PATCH", "POST", "PUT"} else None
        check(fx_run(fx_api.client.request(method, url, content=body, headers=fx_caller)), seen)

    run()
    require_examples(seen, SMALL_EXAMPLES)


def test_fuzz_token_endpoint(fx_api: Any, fx_run: Any) -> None:
    seen: Counter[int] = Counter()
    names = st.one_of(st.sampled_from(["grant_type", "username", "password", "client_id", "client_secret", "scope"]),
                      st.text(max_size=10))
    values = st.one_of(st.sampled_from(["password", "client_credentials", "refresh_token", ""]), st.text(max_size=30))

    @fuzz(SMALL_EXAMPLES)
    @given(form=st.dictionaries(names, values, max_size=5))
    def run(form: dict[str, str]) -> None:
        check(fx_run(fx_api.client.post(f"{API}/auth/token", data=form)), seen)

    run()
    require_examples(seen, SMALL_EXAMPLES)
