"""Every malformed request gets a 4xx RFC 9457 problem detail: never a 500, never a stack trace.

One case per kind of bad input, on every collection where it applies: malformed JSON (400), schema and rule
violations (422), unknown ids (404), missing/forged/expired tokens (401), wrong methods (405), stale (409) and
missing (428) versions, bad If-Match (400), oversized bodies (413), wrong content types (415), bad cursors (400),
illegal stage/status transitions (422) and Idempotency-Key misuse (409). Rejected personal values (e-mail, phone,
national id) are never echoed back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest

PROBLEM = "application/problem+json"
API = "/api/v1"
CUSTOMERS, CONTACTS, OPPORTUNITIES = f"{API}/customers", f"{API}/contacts", f"{API}/opportunities"
SERVICE_RECORDS, ACTIVITIES = f"{API}/service-records", f"{API}/activities"
COLLECTIONS = [CUSTOMERS, CONTACTS, OPPORTUNITIES, SERVICE_RECORDS, ACTIVITIES]
DELETABLE = {CUSTOMERS, OPPORTUNITIES}  # what the caller below may delete (the default policy's choice)
JSON_TYPE = {"Content-Type": "application/json"}
# What a leaked stack trace or source location looks like.
LEAK = re.compile(r"Traceback|File \"|site-packages|\.py\b|/work/|/usr/(local/)?lib|line \d+, in ")


# -- helpers --------------------------------------------------------------------------------------------------


def assert_problem(response: httpx.Response, status: int, *, hidden: tuple[str, ...] = ()) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem with ``status``, no stack trace and none of the ``hidden`` values."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text[:500]}"
    assert response.headers["content-type"].startswith(PROBLEM), response.headers["content-type"]
    body = response.json()
    assert isinstance(body, dict), body
    for member in ("type", "title", "status", "detail", "instance"):
        assert member in body, f"problem without {member!r}: {body}"
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"].startswith(("https://", "about:blank")), body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["instance"] == response.request.url.path
    assert not LEAK.search(response.text), f"body leaks internals: {response.text[:500]}"
    for value in hidden:
        assert value not in response.text, f"rejected value {value!r} echoed in {response.text[:500]}"
    if status == 401:
        assert response.headers.get("www-authenticate", "").lower().startswith("bearer")
    return body


def problem_fields(body: dict[str, Any]) -> set[str]:
    """The fields a 422 names: ``field`` of our own errors; the ``key`` of each schema error (``tags[0]`` names
    ``tags``), or for a whole-object error (missing or unknown field) the name quoted in its message."""
    named = {body["field"]} if "field" in body else set()
    for error in body.get("errors", []):
        named.add(str(error.get("key", "")).split("[", 1)[0])
        named.update(re.findall(r"`([A-Za-z_]\w*)`", str(error.get("message", ""))))
    return named


async def post(api: Any, headers: dict[str, str], url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.client.post(url, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def new_customer(api: Any, headers: dict[str, str], kind: str = "company", **extra: Any) -> dict[str, Any]:
    return await post(api, headers, CUSTOMERS, {"name": f"Bad input {uuid.uuid4().hex[:8]}", "kind": kind, **extra})


async def new_contact(api: Any, headers: dict[str, str], customer_id: str, **extra: Any) -> dict[str, Any]:
    return await post(api, headers, CONTACTS, {"customer_id": customer_id, "name": "Li Wei", **extra})


async def new_opportunity(api: Any, headers: dict[str, str], customer_id: str, **extra: Any) -> dict[str, Any]:
    return await post(api, headers, OPPORTUNITIES, {"customer_id": customer_id, "title": "Deal", "amount": "1000.50",
                                                    "currency": "EUR", **extra})


async def new_service_record(api: Any, headers: dict[str, str], customer_id: str, **extra: Any) -> dict[str, Any]:
    return await post(api, headers, SERVICE_RECORDS, {"customer_id": customer_id, "type": "repair",
                                                      "priority": "high", "description": "Pump leaks", **extra})


async def new_activity(api: Any, headers: dict[str, str], customer_id: str, **extra: Any) -> dict[str, Any]:
    return await post(api, headers, ACTIVITIES, {"customer_id": customer_id, "kind": "call",
                                                 "occurred_at": "2026-05-01T10:00:00+08:00", "summary": "Called",
                                                 **extra})


def valid_body(collection: str, world: dict[str, Any]) -> dict[str, Any]:
    """A body that ``POST collection`` accepts."""
    customer_id = world["company"]["id"]
    return {
        CUSTOMERS: {"name": "Valid Co", "kind": "company"},
        CONTACTS: {"customer_id": customer_id, "name": "Zhang San"},
        OPPORTUNITIES: {"customer_id": customer_id, "title": "Deal", "amount": "10.00", "currency": "CNY"},
        SERVICE_RECORDS: {"customer_id": customer_id, "type": "inquiry", "priority": "low", "description": "Hi"},
        ACTIVITIES: {"customer_id": customer_id, "kind": "note", "occurred_at": "2026-01-01T00:00:00Z",
                     "summary": "Noted"},
    }[collection]


def item_url(collection: str, world: dict[str, Any]) -> str:
    return f"{collection}/{world[collection]['id']}"


def cursor_of(payload: Any) -> str:
    """A cursor in the server's envelope (url-safe base64 of JSON, unpadded) around ``payload``."""
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()


@pytest.fixture(scope="module", name="fx_caller")
async def fx_caller(fx_api: Any, fx_unit: str) -> dict[str, str]:
    """A sales manager who is also a support agent: may create and change records in all five collections, so
    what these tests meet is input validation, not field security."""
    return await fx_api.login(["sales_manager", "support_agent"], unit=fx_unit)


@pytest.fixture(scope="module", name="fx_world")
async def fx_world(fx_api: Any, fx_caller: dict[str, str]) -> dict[str, Any]:
    """One record of each kind, read-only for the tests below (tests that change records make their own)."""
    company = await new_customer(fx_api, fx_caller)
    person = await new_customer(fx_api, fx_caller, "individual")
    contact = await new_contact(fx_api, fx_caller, company["id"])
    return {
        "company": company,
        "person": person,
        CUSTOMERS: company,
        CONTACTS: contact,
        OPPORTUNITIES: await new_opportunity(fx_api, fx_caller, company["id"]),
        SERVICE_RECORDS: await new_service_record(fx_api, fx_caller, company["id"]),
        ACTIVITIES: await new_activity(fx_api, fx_caller, company["id"]),
    }


# -- malformed bodies: 400 -------------------------------------------------------------------------------------

MALFORMED_BODIES = {
    "truncated": b'{"name": ',
    "unquoted-key": b'{name: "x"}',
    "trailing-comma": b'{"name": "x",}',
    "single-quotes": b"{'name': 'x'}",
    "nan-literal": b'{"amount": NaN}',
    "infinity-literal": b'{"amount": Infinity}',
    "non-utf8-start": b'\xff\xfe{"name": "x"}',
    "non-utf8-in-string": b'{"name": "caf\xe9 \xff", "kind": "company"}',
    "lone-surrogate": b'{"name": "a\\ud800b", "kind": "company"}',
    "empty": b"",
    "whitespace": b"  \n ",
    "deep-nesting": b"[" * 100_000 + b"]" * 100_000,
    "deep-object-nesting": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
}


@pytest.mark.parametrize("collection", COLLECTIONS)
@pytest.mark.parametrize("case", sorted(MALFORMED_BODIES))
async def test_malformed_json_on_create_is_400(fx_api: Any, fx_caller: dict[str, str], collection: str,
                                               case: str) -> None:
    response = await fx_api.client.post(collection, content=MALFORMED_BODIES[case],
                                        headers={**fx_caller, **JSON_TYPE})
    assert_problem(response, 400)


@pytest.mark.parametrize("collection", COLLECTIONS)
@pytest.mark.parametrize("case", ["truncated", "non-utf8-in-string", "empty", "deep-nesting"])
async def test_malformed_json_on_update_is_400(fx_api: Any, fx_caller: dict[str, str], fx_world: dict[str, Any],
                                               collection: str, case: str) -> None:
    response = await fx_api.client.patch(item_url(collection, fx_world), content=MALFORMED_BODIES[case],
                                         headers={**fx_caller, **JSON_TYPE, "If-Match": '"1"'})
    assert_problem(response, 400)


async def test_malformed_json_on_reopen_is_400(fx_api: Any, fx_caller: dict[str, str],
                                               fx_world: dict[str, Any]) -> None:
    url = f"{item_url(OPPORTUNITIES, fx_world)}/reopen"
    for content in (b'{"stage": ', b'{"stage": "proposal", "reason": "\xff"}', b""):
        response = await fx_api.client.post(url, content=content, headers={**fx_caller, **JSON_TYPE})
        assert_problem(response, 400)


@pytest.mark.parametrize("collection", COLLECTIONS)
@pytest.mark.parametrize("content", [b"[]", b'[{"name": "x"}]', b'"text"', b"42", b"null", b"true"])
async def test_json_that_is_not_an_object_is_422(fx_api: Any, fx_caller: dict[str, str], collection: str,
                                                 content: bytes) -> None:
    response = await fx_api.client.post(collection, content=content, headers={**fx_caller, **JSON_TYPE})
    assert_problem(response, 422)


# -- wrong content type: 415 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded"])
async def test_wrong_content_type_on_create_is_415(fx_api: Any, fx_caller: dict[str, str],
                                                   content_type: str) -> None:
    region = f"ct-{uuid.uuid4().hex[:8]}"
    response = await fx_api.client.post(CUSTOMERS, content=json.dumps({"name": "x", "kind": "company",
                                                                        "region": region}).encode(),
                                        headers={**fx_caller, "Content-Type": content_type})
    assert_problem(response, 415)
    listed = await fx_api.client.get(CUSTOMERS, params={"region": region}, headers=fx_caller)
    assert listed.json()["items"] == []


async def test_wrong_content_type_on_update_is_415(fx_api: Any, fx_caller: dict[str, str]) -> None:
    customer = await new_customer(fx_api, fx_caller)
    url = f"{CUSTOMERS}/{customer['id']}"
    response = await fx_api.client.patch(url, content=b'{"tier": "B", "version": 1}',
                                         headers={**fx_caller, "Content-Type": "text/plain"})
    assert_problem(response, 415)
    assert (await fx_api.client.get(url, headers=fx_caller)).json()["tier"] is None


# -- schema violations: 422 ------------------------------------------------------------------------------------

SCHEMA_VIOLATIONS: list[tuple[str, str, dict[str, Any], str]] = [
    # (id, collection, changes merged over a valid body (None value = drop the key), field named in the problem)
    ("customer-name-int", CUSTOMERS, {"name": 123}, "name"),
    ("customer-name-empty", CUSTOMERS, {"name": ""}, "name"),
    ("customer-name-too-long", CUSTOMERS, {"name": "n" * 201}, "name"),
    ("customer-kind-enum", CUSTOMERS, {"kind": "alien"}, "kind"),
    ("customer-kind-case", CUSTOMERS, {"kind": "COMPANY"}, "kind"),
    ("customer-kind-missing", CUSTOMERS, {"kind": None}, "kind"),
    ("customer-tier-enum", CUSTOMERS, {"tier": "D"}, "tier"),
    ("customer-lifecycle-enum", CUSTOMERS, {"lifecycle_stage": "vip"}, "lifecycle_stage"),
    ("customer-source-enum", CUSTOMERS, {"source_channel": "telepathy"}, "source_channel"),
    ("customer-tags-not-list", CUSTOMERS, {"tags": "vip"}, "tags"),
    ("customer-tags-nested", CUSTOMERS, {"tags": [["vip"]]}, "tags"),
    ("customer-tag-too-long", CUSTOMERS, {"tags": ["t" * 51]}, "tags"),
    ("customer-owner-not-uuid", CUSTOMERS, {"owner_id": "not-a-uuid"}, "owner_id"),
    ("customer-owner-int", CUSTOMERS, {"owner_id": 42}, "owner_id"),
    ("customer-unknown-field", CUSTOMERS, {"colour": "red"}, "colour"),
    ("customer-client-sets-id", CUSTOMERS, {"id": str(uuid.uuid4())}, "id"),
    ("customer-client-sets-version", CUSTOMERS, {"version": 7}, "version"),
    ("customer-notes-too-long", CUSTOMERS, {"notes": "x" * 20_001}, "notes"),
    ("contact-customer-missing", CONTACTS, {"customer_id": None}, "customer_id"),
    ("contact-customer-not-uuid", CONTACTS, {"customer_id": "123"}, "customer_id"),
    ("contact-consent-not-bool", CONTACTS, {"marketing_consent": "yes"}, "marketing_consent"),
    ("contact-email-not-str", CONTACTS, {"email": ["a@b.cc"]}, "email"),
    ("contact-unknown-field", CONTACTS, {"consent_at": "2026-01-01T00:00:00Z"}, "consent_at"),
    ("opportunity-amount-negative", OPPORTUNITIES, {"amount": "-0.01"}, "amount"),
    ("opportunity-amount-negative-number", OPPORTUNITIES, {"amount": -5}, "amount"),
    ("opportunity-amount-5-places", OPPORTUNITIES, {"amount": "1.23456"}, "amount"),
    ("opportunity-amount-5-places-number", OPPORTUNITIES, {"amount": 1.23456}, "amount"),
    ("opportunity-amount-nan", OPPORTUNITIES, {"amount": "NaN"}, "amount"),
    ("opportunity-amount-snan", OPPORTUNITIES, {"amount": "sNaN"}, "amount"),
    ("opportunity-amount-infinity", OPPORTUNITIES, {"amount": "Infinity"}, "amount"),
    ("opportunity-amount-minus-infinity", OPPORTUNITIES, {"amount": "-Infinity"}, "amount"),
    ("opportunity-amount-1e400", OPPORTUNITIES, {"amount": "1e400"}, "amount"),
    ("opportunity-amount-too-big", OPPORTUNITIES, {"amount": "100000000000000"}, "amount"),
    ("opportunity-amount-huge-int", OPPORTUNITIES, {"amount": 10**40}, "amount"),
    ("opportunity-amount-word", OPPORTUNITIES, {"amount": "ten"}, "amount"),
    ("opportunity-amount-bool", OPPORTUNITIES, {"amount": True}, "amount"),
    ("opportunity-amount-missing", OPPORTUNITIES, {"amount": None}, "amount"),
    ("opportunity-currency-lower", OPPORTUNITIES, {"currency": "eur"}, "currency"),
    ("opportunity-currency-long", OPPORTUNITIES, {"currency": "EURO"}, "currency"),
    ("opportunity-stage-enum", OPPORTUNITIES, {"stage": "closed"}, "stage"),
    ("opportunity-probability-101", OPPORTUNITIES, {"probability": 101}, "probability"),
    ("opportunity-probability-negative", OPPORTUNITIES, {"probability": -1}, "probability"),
    ("opportunity-probability-huge", OPPORTUNITIES, {"probability": 10**30}, "probability"),
    ("opportunity-probability-float", OPPORTUNITIES, {"probability": 50.5}, "probability"),
    ("opportunity-date-invalid", OPPORTUNITIES, {"expected_close_date": "2026-02-30"}, "expected_close_date"),
    ("opportunity-unknown-field", OPPORTUNITIES, {"closed_at": "2026-01-01T00:00:00Z"}, "closed_at"),
    ("service-type-enum", SERVICE_RECORDS, {"type": "rant"}, "type"),
    ("service-priority-enum", SERVICE_RECORDS, {"priority": "asap"}, "priority"),
    ("service-status-on-create", SERVICE_RECORDS, {"status": "closed"}, "status"),
    ("service-satisfaction-on-create", SERVICE_RECORDS, {"satisfaction": 5}, "satisfaction"),
    ("service-description-missing", SERVICE_RECORDS, {"description": None}, "description"),
    ("service-contact-not-uuid", SERVICE_RECORDS, {"contact_id": "contact-1"}, "contact_id"),
    ("activity-naive-datetime", ACTIVITIES, {"occurred_at": "2026-05-01T10:00:00"}, "occurred_at"),
    ("activity-date-only", ACTIVITIES, {"occurred_at": "2026-05-01"}, "occurred_at"),
    ("activity-datetime-word", ACTIVITIES, {"occurred_at": "yesterday"}, "occurred_at"),
    ("activity-datetime-epoch", ACTIVITIES, {"occurred_at": 1767225600}, "occurred_at"),
    # Wrong JSON types are refused, not coerced: a string is not an integer or a boolean.
    ("opportunity-probability-string", OPPORTUNITIES, {"probability": "50"}, "probability"),
    ("contact-consent-string-true", CONTACTS, {"marketing_consent": "true", "consent_source": "web"},
     "marketing_consent"),
    ("contact-consent-int", CONTACTS, {"marketing_consent": 1, "consent_source": "web"}, "marketing_consent"),
    ("activity-kind-enum", ACTIVITIES, {"kind": "fax"}, "kind"),
    ("activity-summary-int", ACTIVITIES, {"summary": 7}, "summary"),
]


@pytest.mark.parametrize(("collection", "changes", "field"), [case[1:] for case in SCHEMA_VIOLATIONS],
                         ids=[case[0] for case in SCHEMA_VIOLATIONS])
async def test_schema_violation_on_create_is_422(fx_api: Any, fx_caller: dict[str, str], fx_world: dict[str, Any],
                                                 collection: str, changes: dict[str, Any], field: str) -> None:
    body = valid_body(collection, fx_world)
    for name, value in changes.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    response = await fx_api.client.post(collection, json=body, headers=fx_caller)
    problem = assert_problem(response, 422)
    assert field in problem_fields(problem) or field in problem["detail"], problem


UPDATE_VIOLATIONS: list[tuple[str, dict[str, Any], str]] = [
    (CUSTOMERS, {"name": None}, "name"),
    (CUSTOMERS, {"kind": "alien"}, "kind"),
    (CUSTOMERS, {"owner_id": None}, "owner_id"),
    (CUSTOMERS, {"colour": "red"}, "colour"),
    (CONTACTS, {"customer_id": None}, "customer_id"),
    (CONTACTS, {"marketing_consent": None}, "marketing_consent"),
    (OPPORTUNITIES, {"amount": "-1"}, "amount"),
    (OPPORTUNITIES, {"amount": "0.00001"}, "amount"),
    (OPPORTUNITIES, {"amount": "NaN"}, "amount"),
    (OPPORTUNITIES, {"probability": 10**20}, "probability"),
    (OPPORTUNITIES, {"stage": "done"}, "stage"),
    (SERVICE_RECORDS, {"status": "escalated"}, "status"),
    (SERVICE_RECORDS, {"satisfaction": 6}, "satisfaction"),
    (SERVICE_RECORDS, {"satisfaction": 0}, "satisfaction"),
    (SERVICE_RECORDS, {"customer_id": str(uuid.uuid4())}, "customer_id"),
    (ACTIVITIES, {"occurred_at": "2026-05-01T10:00:00"}, "occurred_at"),
    (ACTIVITIES, {"customer_id": str(uuid.uuid4())}, "customer_id"),
]


@pytest.mark.parametrize(("collection", "changes", "field"), UPDATE_VIOLATIONS)
async def test_schema_violation_on_update_is_422(fx_api: Any, fx_caller: dict[str, str], fx_world: dict[str, Any],
                                                 collection: str, changes: dict[str, Any], field: str) -> None:
    url = item_url(collection, fx_world)
    response = await fx_api.client.patch(url, json={**changes, "version": 1}, headers=fx_caller)
    problem = assert_problem(response, 422)
    assert field in problem_fields(problem) or field in problem["detail"], problem
    assert (await fx_api.client.get(url, headers=fx_caller)).json()["version"] == 1


@pytest.mark.parametrize("content", [
    b'{"customer_id": "%s", "title": "t", "amount": 1e400, "currency": "EUR"}',
    b'{"customer_id": "%s", "title": "t", "amount": -1e400, "currency": "EUR"}',
])
async def test_amount_out_of_json_number_range_is_rejected(fx_api: Any, fx_caller: dict[str, str],
                                                           fx_world: dict[str, Any], content: bytes) -> None:
    # 1e400 is grammatical JSON but no decoder can hold it: refused by the parser as malformed input.
    body = content.replace(b"%s", fx_world["company"]["id"].encode())
    response = await fx_api.client.post(OPPORTUNITIES, content=body, headers={**fx_caller, **JSON_TYPE})
    assert_problem(response, 400)


@pytest.mark.parametrize("occurred_at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_datetime_outside_representable_utc_range_is_422(fx_api: Any, fx_caller: dict[str, str],
                                                               fx_world: dict[str, Any], occurred_at: str) -> None:
    body = {**valid_body(ACTIVITIES, fx_world), "occurred_at": occurred_at}
    response = await fx_api.client.post(ACTIVITIES, json=body, headers=fx_caller)
    assert_problem(response, 422)
    activity = await new_activity(fx_api, fx_caller, fx_world["company"]["id"])
    patched = await fx_api.client.patch(f"{ACTIVITIES}/{activity['id']}", headers=fx_caller,
                                        json={"occurred_at": occurred_at, "version": 1})
    assert_problem(patched, 422)


@pytest.mark.parametrize(("collection", "field"), [
    (CUSTOMERS, "name"), (CUSTOMERS, "notes"), (CUSTOMERS, "tags"), (CONTACTS, "name"), (CONTACTS, "address"),
    (OPPORTUNITIES, "title"), (SERVICE_RECORDS, "description"), (ACTIVITIES, "summary"),
])
async def test_nul_character_in_text_is_422(fx_api: Any, fx_caller: dict[str, str], fx_world: dict[str, Any],
                                            collection: str, field: str) -> None:
    # PostgreSQL cannot store U+0000 in text; both backends must refuse it the same way, up front.
    value: Any = ["bad\x00tag"] if field == "tags" else "bad\x00value"
    response = await fx_api.client.post(collection, json={**valid_body(collection, fx_world), field: value},
                                        headers=fx_caller)
    assert_problem(response, 422)


# -- personal fields: 422 without echoing the value -------------------------------------------------------------

PERSONAL_VALUES = [
    ("email", "private.person@@example.com"),
    ("email", "no-at-sign.example.com"),
    ("phone", "call-me-13812345678"),
    ("mobile", "+86 138 1234 5678 ext 99 x"),
    ("national_id", "110101199003077777!"),
    ("national_id", "ID#SECRET-4242"),
]


@pytest.mark.parametrize(("field", "value"), PERSONAL_VALUES)
async def test_invalid_personal_value_is_422_and_not_echoed(fx_api: Any, fx_caller: dict[str, str],
                                                            fx_world: dict[str, Any], field: str, value: str) -> None:
    body = {"customer_id": fx_world["person"]["id"], "name": "Wang Fang", field: value}
    response = await fx_api.client.post(CONTACTS, json=body, headers=fx_caller)
    problem = assert_problem(response, 422, hidden=(value,))
    assert field in problem_fields(problem)

    contact = await new_contact(fx_api, fx_caller, fx_world["person"]["id"])
    patched = await fx_api.client.patch(f"{CONTACTS}/{contact['id']}", json={field: value},
                                        headers={**fx_caller, "If-Match": '"1"'})
    assert field in problem_fields(assert_problem(patched, 422, hidden=(value,)))


@pytest.mark.parametrize("field", ["email", "phone", "national_id"])
async def test_oversized_personal_value_is_422_and_not_echoed(fx_api: Any, fx_caller: dict[str, str],
                                                              fx_world: dict[str, Any], field: str) -> None:
    value = "7" * 60 + "SECRETVALUE" + "7" * 60
    body = {"customer_id": fx_world["person"]["id"], "name": "Wang Fang", field: value}
    response = await fx_api.client.post(CONTACTS, json=body, headers=fx_caller)
    assert field in problem_fields(assert_problem(response, 422, hidden=("SECRETVALUE",)))


async def test_national_id_on_company_contact_is_422_and_not_echoed(fx_api: Any, fx_caller: dict[str, str],
                                                                    fx_world: dict[str, Any]) -> None:
    national_id = "110101199003074321"
    response = await fx_api.client.post(CONTACTS, headers=fx_caller, json={
        "customer_id": fx_world["company"]["id"], "name": "Chen Jie", "national_id": national_id})
    problem = assert_problem(response, 422, hidden=(national_id, national_id[-4:] + '"'))
    assert problem["field"] == "national_id"

    # Moving an individual's contact (with a national id) to a company customer is refused the same way.
    contact = await new_contact(fx_api, fx_caller, fx_world["person"]["id"], national_id=national_id)
    moved = await fx_api.client.patch(f"{CONTACTS}/{contact['id']}", headers=fx_caller, json={
        "customer_id": fx_world["company"]["id"], "version": 1})
    assert assert_problem(moved, 422, hidden=(national_id,))["field"] == "national_id"


# -- references to other records: 422 ------------------------------------------------------------------------------


@pytest.mark.parametrize("collection", [CONTACTS, OPPORTUNITIES, SERVICE_RECORDS, ACTIVITIES])
async def test_link_to_missing_customer_is_422(fx_api: Any, fx_caller: dict[str, str], fx_world: dict[str, Any],
                                               collection: str) -> None:
    body = {**valid_body(collection, fx_world), "customer_id": str(uuid.uuid4())}
    response = await fx_api.client.post(collection, json=body, headers=fx_caller)
    assert assert_problem(response, 422)["field"] == "customer_id"


@pytest.mark.parametrize("collection", [CUSTOMERS, OPPORTUNITIES, SERVICE_RECORDS, ACTIVITIES])
async def test_missing_owner_is_422(fx_api: Any, fx_caller: dict[str, str], fx_world: dict[str, Any],
                                    collection: str) -> None:
    body = {**valid_body(collection, fx_world), "owner_id": str(uuid.uuid4())}
    response = await fx_api.client.post(collection, json=body, headers=fx_caller)
    assert assert_problem(response, 422)["field"] == "owner_id"


async def test_service_record_contact_of_another_customer_is_422(fx_api: Any, fx_caller: dict[str, str],
                                                                 fx_world: dict[str, Any]) -> None:
    other = await new_customer(fx_api, fx_caller)
    foreign_contact = await new_contact(fx_api, fx_caller, other["id"])
    body = {**valid_body(SERVICE_RECORDS, fx_world), "contact_id": foreign_contact["id"]}
    response = await fx_api.client.post(SERVICE_RECORDS, json=body, headers=fx_caller)
    assert assert_problem(response, 422)["field"] == "contact_id"

    record = await new_service_record(fx_api, fx_caller, fx_world["company"]["id"])
    patched = await fx_api.client.patch(f"{SERVICE_RECORDS}/{record['id']}", headers=fx_caller,
                                        json={"contact_id": foreign_contact["id"], "version": 1})
    assert assert_problem(patched, 422)["field"] == "contact_id"
    missing = await fx_api.client.patch(f"{SERVICE_RECORDS}/{record['id']}", headers=fx_caller,
                                        json={"contact_id": str(uuid.uuid4()), "version": 1})
    assert assert_problem(missing, 422)["field"] == "contact_id"


@pytest.mark.parametrize("link", ["contact_id", "opportunity_id", "service_record_id"])
async def test_activity_link_to_another_customers_record_is_422(fx_api: Any, fx_caller: dict[str, str],
                                                                fx_world: dict[str, Any], link: str) -> None:
    collection = {"contact_id": CONTACTS, "opportunity_id": OPPORTUNITIES, "service_record_id": SERVICE_RECORDS}[link]
    body = {**valid_body(ACTIVITIES, fx_world), "customer_id": fx_world["person"]["id"],
            link: fx_world[collection]["id"]}
    response = await fx_api.client.post(ACTIVITIES, json=body, headers=fx_caller)
    assert assert_problem(response, 422)["field"] == link


# -- stage and status transitions: 422 ---------------------------------------------------------------------------


async def test_service_record_status_transitions(fx_api: Any, fx_caller: dict[str, str],
                                                 fx_world: dict[str, Any]) -> None:
    record = await new_service_record(fx_api, fx_caller, fx_world["company"]["id"])
    url = f"{SERVICE_RECORDS}/{record['id']}"
    skipped = await fx_api.client.patch(url, headers=fx_caller,
                                        json={"status": "resolved", "resolution": "Fixed", "version": 1})
    assert assert_problem(skipped, 422)["field"] == "status"
    early_rating = await fx_api.client.patch(url, headers=fx_caller, json={"satisfaction": 5, "version": 1})
    assert assert_problem(early_rating, 422)["field"] == "satisfaction"
    no_resolution = await fx_api.client.patch(url, headers=fx_caller, json={"status": "closed", "version": 1})
    assert assert_problem(no_resolution, 422)["field"] == "resolution"

    closed = await fx_api.client.patch(url, headers=fx_caller,
                                       json={"status": "closed", "resolution": "Duplicate", "version": 1})
    assert closed.status_code == 200, closed.text
    for target in ("open", "in_progress", "resolved"):
        refused = await fx_api.client.patch(url, headers=fx_caller, json={"status": target, "version": 2})
        assert assert_problem(refused, 422)["field"] == "status"
    assert (await fx_api.client.get(url, headers=fx_caller)).json()["status"] == "closed"


async def test_opportunity_stage_rules(fx_api: Any, fx_caller: dict[str, str], fx_world: dict[str, Any]) -> None:
    customer_id = fx_world["company"]["id"]
    lost_on_create = await fx_api.client.post(OPPORTUNITIES, headers=fx_caller, json={
        **valid_body(OPPORTUNITIES, fx_world), "stage": "lost"})
    assert assert_problem(lost_on_create, 422)["field"] == "loss_reason"
    blank_reason = await fx_api.client.post(OPPORTUNITIES, headers=fx_caller, json={
        **valid_body(OPPORTUNITIES, fx_world), "stage": "lost", "loss_reason": "   "})
    assert assert_problem(blank_reason, 422)["field"] == "loss_reason"

    opportunity = await new_opportunity(fx_api, fx_caller, customer_id)
    url = f"{OPPORTUNITIES}/{opportunity['id']}"
    lost_without_reason = await fx_api.client.patch(url, headers=fx_caller, json={"stage": "lost", "version": 1})
    assert assert_problem(lost_without_reason, 422)["field"] == "loss_reason"
    reopen_open = await fx_api.client.post(f"{url}/reopen", headers=fx_caller,
                                           json={"stage": "proposal", "reason": "Try again", "version": 1})
    assert_problem(reopen_open, 422)

    won = await fx_api.client.patch(url, headers=fx_caller, json={"stage": "won", "version": 1})
    assert won.status_code == 200, won.text
    for changes in ({"stage": "proposal"}, {"stage": "lost", "loss_reason": "Too late"}, {"amount": "5.00"}):
        refused = await fx_api.client.patch(url, headers=fx_caller, json={**changes, "version": 2})
        assert assert_problem(refused, 422)["field"] == "stage"
    to_terminal = await fx_api.client.post(f"{url}/reopen", headers=fx_caller,
                                           json={"stage": "lost", "reason": "Oops", "version": 2})
    assert_problem(to_terminal, 422)
    no_reason = await fx_api.client.post(f"{url}/reopen", headers=fx_caller,
                                         json={"stage": "proposal", "reason": "", "version": 2})
    assert_problem(no_reason, 422)
    assert (await fx_api.client.get(url, headers=fx_caller)).json()["stage"] == "won"


async def test_customer_lifecycle_transition_is_422(fx_api: Any, fx_caller: dict[str, str]) -> None:
    customer = await new_customer(fx_api, fx_caller)
    response = await fx_api.client.patch(f"{CUSTOMERS}/{customer['id']}", headers=fx_caller,
                                         json={"lifecycle_stage": "churned", "version": 1})
    assert assert_problem(response, 422)["field"] == "lifecycle_stage"


# -- list query parameters --------------------------------------------------------------------------------------


@pytest.mark.parametrize("collection", COLLECTIONS)
@pytest.mark.parametrize(("params", "status"), [
    ({"limit": "0"}, 422),
    ({"limit": "-1"}, 422),
    ({"limit": "abc"}, 422),
    ({"limit": "1.5"}, 422),
    ({"limit": str(10**30)}, 422),
    ({"no_such_param": "1"}, 422),
    ({"id": str(uuid.uuid4())}, 422),
    ({"sort": "no_such_field"}, 422),
    ({"sort": "-no_such_field"}, 422),
    ({"sort": "---"}, 422),
    ({"sort": "version"}, 422),
    ({"sort": "s" * 101}, 422),
    ({"cursor": "garbage!!"}, 400),
    ({"cursor": "%%%"}, 400),
    ({"cursor": "Z2FyYmFnZQ"}, 400),  # base64 of "garbage"
    ({"cursor": "W10"}, 400),  # base64 of "[]"
    ({"cursor": "é😀"}, 400),
    ({"cursor": "c" * 2001}, 422),
    ({"owner_id": "not-a-uuid"}, 422),
    ({"customer_id": "not-a-uuid"}, 422),
], ids=lambda value: str(value)[:40])
async def test_bad_list_parameters(fx_api: Any, fx_caller: dict[str, str], collection: str,
                                   params: dict[str, str], status: int) -> None:
    if collection == CUSTOMERS and "customer_id" in params:
        params = {"org_unit_id": params["customer_id"]}
    response = await fx_api.client.get(collection, params=params, headers=fx_caller)
    assert_problem(response, status)


@pytest.mark.parametrize("collection", COLLECTIONS)
async def test_limit_above_page_size_max_is_422(fx_api: Any, fx_caller: dict[str, str], collection: str) -> None:
    page_size_max = fx_api.app.state.resources.settings.page_size_max
    ok = await fx_api.client.get(collection, params={"limit": page_size_max}, headers=fx_caller)
    assert ok.status_code == 200, ok.text
    response = await fx_api.client.get(collection, params={"limit": page_size_max + 1}, headers=fx_caller)
    assert assert_problem(response, 422)["field"] == "limit"


@pytest.mark.parametrize(("collection", "params"), [
    (CUSTOMERS, {"notes": "x"}),  # a field, but not filterable
    (CUSTOMERS, {"tax_id": "x"}),
    (CONTACTS, {"marketing_consent": "maybe"}),
    (OPPORTUNITIES, {"amount": "1"}),
    (SERVICE_RECORDS, {"satisfaction": "5"}),
    (ACTIVITIES, {"summary": "x"}),
])
async def test_bad_filters_are_422(fx_api: Any, fx_caller: dict[str, str], collection: str,
                                   params: dict[str, str]) -> None:
    assert_problem(await fx_api.client.get(collection, params=params, headers=fx_caller), 422)


@pytest.mark.parametrize(("collection", "params"), [
    (CUSTOMERS, {"region": "east\x00"}),
    (CONTACTS, {"email": "a\x00@example.com"}),
    (OPPORTUNITIES, {"currency": "\x00"}),
    (SERVICE_RECORDS, {"status": "open\x00"}),
    (ACTIVITIES, {"kind": "\x00call"}),
])
async def test_nul_character_in_filter_is_422(fx_api: Any, fx_caller: dict[str, str], collection: str,
                                              params: dict[str, str]) -> None:
    assert_problem(await fx_api.client.get(collection, params=params, headers=fx_caller), 422)


async def test_cursor_from_another_sort_order_is_400(fx_api: Any, fx_caller: dict[str, str]) -> None:
    region = f"cursor-{uuid.uuid4().hex[:8]}"
    for index in range(3):
        await new_customer(fx_api, fx_caller, region=region, tier="AB"[index % 2])
    page = await fx_api.client.get(CUSTOMERS, params={"region": region, "sort": "name", "limit": 1},
                                   headers=fx_caller)
    cursor = page.json()["next_cursor"]
    assert cursor
    follow = await fx_api.client.get(CUSTOMERS, params={"region": region, "sort": "name", "limit": 1,
                                                        "cursor": cursor}, headers=fx_caller)
    assert follow.status_code == 200
    for sort in ("-name", "created_at", "-created_at", "lifecycle_stage", None):
        params = {"region": region, "limit": 1, "cursor": cursor, **({"sort": sort} if sort else {})}
        response = await fx_api.client.get(CUSTOMERS, params=params, headers=fx_caller)
        assert_problem(response, 400)
    # ... and from another collection with the same sort.
    elsewhere = await fx_api.client.get(OPPORTUNITIES, params={"sort": "title", "cursor": cursor},
                                        headers=fx_caller)
    assert_problem(elsewhere, 400)
    # A truncated or tampered cursor is as bad as garbage.
    for broken in (cursor[:-3], cursor[:10], cursor + "x", cursor[::-1]):
        response = await fx_api.client.get(CUSTOMERS, params={"sort": "name", "cursor": broken},
                                           headers=fx_caller)
        assert_problem(response, 400)


FORGED_CURSORS = [
    ("wrong-shape", CUSTOMERS, "name", {"field": "name"}),
    ("wrong-types", CUSTOMERS, "name", ["name", "no", 1, 2]),
    ("bad-uuid", CUSTOMERS, "name", ["name", False, "Acme", "not-a-uuid"]),
    ("bad-datetime", CUSTOMERS, "created_at", ["created_at", False, "yesterday", str(uuid.uuid4())]),
    ("naive-datetime", CUSTOMERS, "created_at", ["created_at", False, "2026-01-01T00:00:00", str(uuid.uuid4())]),
    ("datetime-overflow", CUSTOMERS, "created_at",
     ["created_at", False, "0001-01-01T00:00:00+14:00", str(uuid.uuid4())]),
    ("datetime-overflow-high", ACTIVITIES, "occurred_at",
     ["occurred_at", False, "9999-12-31T23:59:59-14:00", str(uuid.uuid4())]),
    ("amount-nan", OPPORTUNITIES, "amount", ["amount", False, "NaN", str(uuid.uuid4())]),
    ("amount-1e400", OPPORTUNITIES, "amount", ["amount", False, "1e400", str(uuid.uuid4())]),
    ("amount-1e20", OPPORTUNITIES, "amount", ["amount", False, "1e20", str(uuid.uuid4())]),
    ("probability-word", OPPORTUNITIES, "probability", ["probability", False, "high", str(uuid.uuid4())]),
    ("probability-huge", OPPORTUNITIES, "probability", ["probability", False, str(10**25), str(uuid.uuid4())]),
    ("probability-int64-overflow", OPPORTUNITIES, "probability",
     ["probability", False, str(2**63), str(uuid.uuid4())]),
    ("nul-in-text", CUSTOMERS, "name", ["name", False, "Acme\x00", str(uuid.uuid4())]),
    ("other-field", CUSTOMERS, "name", ["tax_id", False, "x", str(uuid.uuid4())]),
]


@pytest.mark.parametrize(("collection", "sort", "payload"), [case[1:] for case in FORGED_CURSORS],
                         ids=[case[0] for case in FORGED_CURSORS])
async def test_forged_cursor_is_400(fx_api: Any, fx_caller: dict[str, str], collection: str, sort: str,
                                    payload: Any) -> None:
    """Cursors are opaque: one the server could not have issued is refused, never passed to the database."""
    response = await fx_api.client.get(collection, params={"sort": sort, "cursor": cursor_of(payload)},
                                       headers=fx_caller)
    assert_problem(response, 400)


# -- unknown and malformed ids: 404 ------------------------------------------------------------------------------


@pytest.mark.parametrize("collection", COLLECTIONS)
async def test_unknown_id_is_404(fx_api: Any, fx_caller: dict[str, str], collection: str) -> None:
    url = f"{collection}/{uuid.uuid4()}"
    assert_problem(await fx_api.client.get(url, headers=fx_caller), 404)
    assert_problem(await fx_api.client.patch(url, json={"version": 1}, headers=fx_caller), 404)
    assert_problem(await fx_api.client.patch(url, json={}, headers={**fx_caller, "If-Match": '"1"'}), 404)
    # Deleting is refused outright (403, before any lookup) where the caller's roles lack the action.
    assert_problem(await fx_api.client.delete(url, headers=fx_caller), 404 if collection in DELETABLE else 403)


@pytest.mark.parametrize("collection", COLLECTIONS)
@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", "01a207ac-ebe5-7368-a164", "%00", "..%2F..%2Fetc"])
async def test_malformed_id_in_path_is_404(fx_api: Any, fx_caller: dict[str, str], collection: str,
                                           bad_id: str) -> None:
    url = f"{collection}/{bad_id}"
    assert_problem(await fx_api.client.get(url, headers=fx_caller), 404)
    assert_problem(await fx_api.client.patch(url, json={"version": 1}, headers=fx_caller), 404)
    assert_problem(await fx_api.client.delete(url, headers=fx_caller), 404)


async def test_customer_360_unknown_and_malformed_ids(fx_api: Any, fx_caller: dict[str, str],
                                                      fx_world: dict[str, Any]) -> None:
    assert_problem(await fx_api.client.get(f"{CUSTOMERS}/{uuid.uuid4()}/360", headers=fx_caller), 404)
    assert_problem(await fx_api.client.get(f"{CUSTOMERS}/not-a-uuid/360", headers=fx_caller), 404)
    # A contact's id is not a customer's.
    contact_id = fx_world[CONTACTS]["id"]
    assert_problem(await fx_api.client.get(f"{CUSTOMERS}/{contact_id}/360", headers=fx_caller), 404)
    assert_problem(await fx_api.client.get(f"{CUSTOMERS}/{fx_world['company']['id']}/360",
                                           params={"unknown": "1"}, headers={}), 401)


async def test_reopen_unknown_opportunity_is_404(fx_api: Any, fx_caller: dict[str, str]) -> None:
    response = await fx_api.client.post(f"{OPPORTUNITIES}/{uuid.uuid4()}/reopen", headers=fx_caller,
                                        json={"stage": "proposal", "reason": "Back", "version": 1})
    assert_problem(response, 404)


# -- wrong methods: 405 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("collection", COLLECTIONS)
async def test_wrong_method_is_405(fx_api: Any, fx_caller: dict[str, str], fx_world: dict[str, Any],
                                   collection: str) -> None:
    item = item_url(collection, fx_world)
    for method, url in (("PUT", item), ("POST", item), ("PUT", collection), ("PATCH", collection),
                        ("DELETE", collection)):
        response = await fx_api.client.request(method, url, json={}, headers=fx_caller)
        assert_problem(response, 405)


async def test_wrong_method_on_special_routes_is_405(fx_api: Any, fx_caller: dict[str, str],
                                                     fx_world: dict[str, Any]) -> None:
    reopen = f"{item_url(OPPORTUNITIES, fx_world)}/reopen"
    view = f"{CUSTOMERS}/{fx_world['company']['id']}/360"
    for method, url in (("GET", reopen), ("DELETE", reopen), ("POST", view), ("DELETE", view),
                        ("GET", f"{API}/auth/token"), ("PUT", f"{API}/auth/token")):
        assert_problem(await fx_api.client.request(method, url, headers=fx_caller), 405)


# -- versions: 409, 428, bad If-Match ----------------------------------------------------------------------------

CHANGES = {CUSTOMERS: {"tier": "B"}, CONTACTS: {"title": "CFO"}, OPPORTUNITIES: {"probability": 40},
           SERVICE_RECORDS: {"priority": "low"}, ACTIVITIES: {"summary": "Called back"}}


async def fresh(api: Any, headers: dict[str, str], collection: str, world: dict[str, Any]) -> str:
    record = await post(api, headers, collection, valid_body(collection, world))
    return f"{collection}/{record['id']}"


@pytest.mark.parametrize("collection", COLLECTIONS)
async def test_version_preconditions(fx_api: Any, fx_caller: dict[str, str], fx_world: dict[str, Any],
                                     collection: str) -> None:
    url = await fresh(fx_api, fx_caller, collection, fx_world)
    change = CHANGES[collection]
    assert_problem(await fx_api.client.patch(url, json=change, headers=fx_caller), 428)
    stale_header = await fx_api.client.patch(url, json=change, headers={**fx_caller, "If-Match": '"2"'})
    assert assert_problem(stale_header, 409)["current_version"] == 1
    stale_body = await fx_api.client.patch(url, json={**change, "version": 5}, headers=fx_caller)
    assert assert_problem(stale_body, 409)["current_version"] == 1
    huge = await fx_api.client.patch(url, json={**change, "version": 10**30}, headers=fx_caller)
    assert_problem(huge, 409)
    for version in (0, -1, 1.5, None, True, [1], {"v": 1}):
        bad = await fx_api.client.patch(url, json={**change, "version": version}, headers=fx_caller)
        assert "version" in problem_fields(assert_problem(bad, 422))
    disagree = await fx_api.client.patch(url, json={**change, "version": 2}, headers={**fx_caller, "If-Match": '"1"'})
    assert assert_problem(disagree, 422)["field"] == "version"
    if collection in DELETABLE:
        stale_delete = await fx_api.client.delete(url, headers={**fx_caller, "If-Match": '"3"'})
        assert_problem(stale_delete, 409)
    assert (await fx_api.client.get(url, headers=fx_caller)).json()["version"] == 1


@pytest.mark.parametrize("collection", COLLECTIONS)
async def test_version_as_a_string_is_422(fx_api: Any, fx_caller: dict[str, str], fx_world: dict[str, Any],
                                          collection: str) -> None:
    # A JSON string is not an integer: refused, not coerced.
    url = await fresh(fx_api, fx_caller, collection, fx_world)
    response = await fx_api.client.patch(url, json={**CHANGES[collection], "version": "1"}, headers=fx_caller)
    assert "version" in problem_fields(assert_problem(response, 422))
    assert (await fx_api.client.get(url, headers=fx_caller)).json()["version"] == 1


@pytest.mark.parametrize("if_match", [
    "abc", '"abc"', '"1.5"', '"-1"', '"1", "2"', 'W/"x"', '"1234567890123"', '""', " ", "*",
    '"\xb2"'.encode("latin-1"), '"\u0661"'.encode(), '"\uff11"'.encode(),  # digits only to str.isdigit(), not to HTTP
], ids=lambda value: repr(value))
async def test_bad_if_match_is_400(fx_api: Any, fx_caller: dict[str, str], fx_world: dict[str, Any],
                                   if_match: str | bytes) -> None:
    url = item_url(CUSTOMERS, fx_world)
    response = await fx_api.client.patch(url, json={"tier": "C"}, headers={**fx_caller, "If-Match": if_match})
    assert assert_problem(response, 400)["field"] == "If-Match"
    deleted = await fx_api.client.delete(url, headers={**fx_caller, "If-Match": if_match})
    assert assert_problem(deleted, 400)["field"] == "If-Match"
    reopen = await fx_api.client.post(f"{item_url(OPPORTUNITIES, fx_world)}/reopen",
                                      json={"stage": "proposal", "reason": "x"},
                                      headers={**fx_caller, "If-Match": if_match})
    assert_problem(reopen, 400)


async def test_reopen_without_version_is_428(fx_api: Any, fx_caller: dict[str, str],
                                             fx_world: dict[str, Any]) -> None:
    response = await fx_api.client.post(f"{item_url(OPPORTUNITIES, fx_world)}/reopen", headers=fx_caller,
                                        json={"stage": "proposal", "reason": "Back"})
    assert_problem(response, 428)


# -- oversized bodies: 413 ---------------------------------------------------------------------------------------


def oversized(limit: int) -> bytes:
    return json.dumps({"name": "Big", "kind": "company", "notes": "x" * limit}).encode()


@pytest.mark.parametrize("collection", COLLECTIONS)
async def test_body_over_the_configured_limit_is_413(fx_api: Any, fx_caller: dict[str, str],
                                                     fx_world: dict[str, Any], collection: str) -> None:
    limit = fx_api.app.state.resources.settings.max_body_bytes
    created = await fx_api.client.post(collection, content=oversized(limit), headers={**fx_caller, **JSON_TYPE})
    assert_problem(created, 413)
    updated = await fx_api.client.patch(item_url(collection, fx_world), content=oversized(limit),
                                        headers={**fx_caller, **JSON_TYPE, "If-Match": '"1"'})
    assert_problem(updated, 413)


async def test_streamed_body_over_the_limit_is_413(fx_api: Any, fx_caller: dict[str, str]) -> None:
    """A chunked body without Content-Length is cut off at the limit too.

    The test client cannot stream a request body, so this speaks ASGI to the application directly.
    """
    limit = fx_api.app.state.resources.settings.max_body_bytes
    body = oversized(4 * limit)
    chunks = [body[start:start + 64 * 1024] for start in range(0, len(body), 64 * 1024)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if chunks:
            return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"authorization", fx_caller["Authorization"].encode()), (b"content-type", b"application/json"),
               (b"transfer-encoding", b"chunked"), (b"host", b"testserver")]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": CUSTOMERS, "raw_path": CUSTOMERS.encode(), "query_string": b"", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 50000), "server": ("testserver", 80), "state": {}}
    # On the loop the app runs on (the test client's portal): its database pool belongs to that loop.
    await asyncio.to_thread(fx_api.client.blocking_portal.call, fx_api.app, scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    content = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    response_headers = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    response = httpx.Response(start["status"], headers=response_headers, content=content,
                              request=httpx.Request("POST", f"http://testserver{CUSTOMERS}"))
    assert_problem(response, 413)
    assert chunks, "the server read the whole oversized body instead of stopping at the limit"


async def test_body_just_under_the_limit_is_judged_on_content(fx_api: Any, fx_caller: dict[str, str]) -> None:
    # Proves the 413 above comes from the configured limit, not from some smaller one.
    limit = fx_api.app.state.resources.settings.max_body_bytes
    body = json.dumps({"name": "Big", "kind": "company", "notes": "x" * (limit - 100)}).encode()
    assert len(body) <= limit
    response = await fx_api.client.post(CUSTOMERS, content=body, headers={**fx_caller, **JSON_TYPE})
    assert "notes" in problem_fields(assert_problem(response, 422))


# -- authentication: 401 -----------------------------------------------------------------------------------------


def signed(claims: dict[str, Any], key: bytes, algorithm: str = "HS256") -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt.encode(claims, key, algorithm=algorithm)}"}


def token_claims(headers: dict[str, str]) -> dict[str, Any]:
    token = headers["Authorization"].removeprefix("Bearer ")
    return dict(jwt.decode(token, options={"verify_signature": False}))


@pytest.fixture(name="fx_bad_credentials")
def fx_bad_credentials(fx_api: Any, fx_caller: dict[str, str]) -> dict[str, dict[str, str]]:
    """Authorization headers that must all be refused, built from a real token's claims."""
    key = (fx_api.app.state.resources.settings.resolved_keys_dir / "token-signing.key").read_bytes()
    claims = token_claims(fx_caller)
    now = int(time.time())
    real_token = fx_caller["Authorization"].removeprefix("Bearer ")
    header, payload, signature = real_token.split(".")
    tampered_claims = {**claims, "rol": ["sysadmin", "secadmin", "auditor"]}
    tampered_payload = base64.urlsafe_b64encode(json.dumps(tampered_claims).encode()).rstrip(b"=").decode()
    return {
        "none": {},
        "empty": {"Authorization": ""},
        "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
        "bearer-without-token": {"Authorization": "Bearer "},
        "garbage": {"Authorization": "Bearer not.a.jwt"},
        "random-bytes": {"Authorization": "Bearer " + base64.b64encode(uuid.uuid4().bytes).decode()},
        "forged": signed(claims, b"another-key-entirely-" * 4),
        "expired": signed({**claims, "iat": now - 7200, "exp": now - 3600}, key),
        "expired-just-now": signed({**claims, "iat": now - 60, "exp": now - 1}, key),
        "alg-none": {"Authorization": "Bearer " + jwt.encode(claims, None, algorithm="none")},
        "wrong-issuer": signed({**claims, "iss": "someone-else"}, key),
        "no-expiry": signed({key_: value for key_, value in claims.items() if key_ != "exp"}, key),
        "subject-not-uuid": signed({**claims, "sub": "admin"}, key),
        "tampered-payload": {"Authorization": f"Bearer {header}.{tampered_payload}.{signature}"},
        "signature-stripped": {"Authorization": f"Bearer {header}.{payload}."},
    }


@pytest.mark.parametrize("credential", [
    "none", "empty", "basic", "bearer-without-token", "garbage", "random-bytes", "forged", "expired",
    "expired-just-now", "alg-none", "wrong-issuer", "no-expiry", "subject-not-uuid", "tampered-payload",
    "signature-stripped",
])
async def test_bad_credentials_are_401(fx_api: Any, fx_world: dict[str, Any],
                                       fx_bad_credentials: dict[str, dict[str, str]], credential: str) -> None:
    headers = fx_bad_credentials[credential]
    token = headers.get("Authorization", "").removeprefix("Bearer ").strip()
    hidden = (token,) if len(token) > 8 else ()
    for method, url, body in (
        ("GET", CUSTOMERS, None),
        ("GET", f"{CUSTOMERS}/{fx_world['company']['id']}/360", None),
        ("POST", OPPORTUNITIES, valid_body(OPPORTUNITIES, fx_world)),
        ("PATCH", item_url(SERVICE_RECORDS, fx_world), {"priority": "low", "version": 1}),
        ("DELETE", item_url(ACTIVITIES, fx_world), None),
    ):
        response = await fx_api.client.request(method, url, json=body, headers=headers)
        assert_problem(response, 401, hidden=hidden)
    assert (await fx_api.client.get(item_url(ACTIVITIES, fx_world), headers={})).status_code == 401


async def test_token_endpoint_errors(fx_api: Any) -> None:
    token_url = f"{API}/auth/token"
    username = await fx_api.create_user(["sales_rep"])
    wrong = await fx_api.client.post(token_url, data={"grant_type": "password", "username": username,
                                                      "password": "Wrong-password-1"})
    assert_problem(wrong, 401, hidden=("Wrong-password-1",))
    unknown_user = await fx_api.client.post(token_url, data={"grant_type": "password", "username": "nobody-here",
                                                             "password": "Whatever-123"})
    assert_problem(unknown_user, 401, hidden=("Whatever-123",))
    unsupported = await fx_api.client.post(token_url, data={"grant_type": "implicit", "username": username,
                                                            "password": "x"})
    assert assert_problem(unsupported, 400)["error"] == "unsupported_grant_type"
    no_password = await fx_api.client.post(token_url, data={"grant_type": "password", "username": username})
    assert assert_problem(no_password, 400)["error"] == "invalid_request"


@pytest.mark.parametrize("request_kwargs", [
    {"data": {}},
    {"data": {"username": "someone", "password": "Secret-123"}},
    {"json": {"grant_type": "password", "username": "someone", "password": "Secret-123"}},
    {"content": b"\xff\xfe", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
], ids=["empty-form", "no-grant-type", "json-body", "non-utf8-form"])
async def test_token_endpoint_malformed_request_is_oauth2_400(fx_api: Any, request_kwargs: dict[str, Any]) -> None:
    # RFC 6749 section 5.2: a malformed token request is 400 with error=invalid_request.
    response = await fx_api.client.post(f"{API}/auth/token", **request_kwargs)
    assert assert_problem(response, 400, hidden=("Secret-123",))["error"] == "invalid_request"


# -- Idempotency-Key ---------------------------------------------------------------------------------------------


async def test_idempotency_key_replay_and_reuse(fx_api: Any, fx_caller: dict[str, str]) -> None:
    key = f"idem-{uuid.uuid4()}"
    region = f"idem-{uuid.uuid4().hex[:8]}"
    body = {"name": "Once Only Ltd", "kind": "company", "region": region}
    headers = {**fx_caller, "Idempotency-Key": key}
    first = await fx_api.client.post(CUSTOMERS, json=body, headers=headers)
    assert first.status_code == 201, first.text
    replay = await fx_api.client.post(CUSTOMERS, json=body, headers=headers)
    assert replay.status_code == 201, replay.text
    assert replay.json()["id"] == first.json()["id"]

    different = await fx_api.client.post(CUSTOMERS, json={**body, "name": "Someone Else"}, headers=headers)
    assert assert_problem(different, 409)["field"] == "Idempotency-Key"
    other_entity = await fx_api.client.post(OPPORTUNITIES, headers=headers, json={
        "customer_id": first.json()["id"], "title": "Deal", "amount": "1.00", "currency": "EUR"})
    assert_problem(other_entity, 409)

    listed = await fx_api.client.get(CUSTOMERS, params={"region": region}, headers=fx_caller)
    assert [item["id"] for item in listed.json()["items"]] == [first.json()["id"]]


@pytest.mark.parametrize("key", ["k" * 201, "tab\there", "new\x01line"])
async def test_bad_idempotency_key_is_422(fx_api: Any, fx_caller: dict[str, str], key: str) -> None:
    region = f"idem-{uuid.uuid4().hex[:8]}"
    response = await fx_api.client.post(CUSTOMERS, json={"name": "x", "kind": "company", "region": region},
                                        headers={**fx_caller, "Idempotency-Key": key})
    assert assert_problem(response, 422)["field"] == "Idempotency-Key"
    assert (await fx_api.client.get(CUSTOMERS, params={"region": region}, headers=fx_caller)).json()["items"] == []
