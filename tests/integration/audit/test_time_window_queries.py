"""Time-window compliance queries are exact where events' times are out of sequence order, on both databases.

A window is answered from the bounds of its events' sequence numbers (or, wide and near the cursor, by walking back
from it). Events are chained in commit order, not in time order: a long transaction's event is chained after
events recorded later than it. These events sit in a window of their own, long before any other test's, chained
out of time order on purpose: window events among themselves, an event from before the window among them, events
from after the window before the window's last one.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest

from server.audit import store, trail
from server.audit.sealer import chain_now
from server.audit.tags import ActorType, AuditAction
from server.db import write_transaction

ACTOR = trail.AuditActor(ActorType.SYSTEM, "time-window-test", "time window test")
BASE = datetime(2001, 2, 3, 4, 0, tzinfo=UTC)
SINCE, UNTIL = BASE + timedelta(minutes=60), BASE + timedelta(minutes=120)
CUSTOMER = str(uuid.uuid4())
TIER: dict[str, Any] = {"fields": ["tier"]}
ABOUT: dict[str, Any] = {"subject_id": CUSTOMER}
READ: dict[str, Any] = {"action": AuditAction.READ}
# (label, minutes after BASE, details), in chain order; the window is [60, 120) minutes.
CHAIN: tuple[tuple[str, int, dict[str, Any]], ...] = (
    ("before-1", 5, {}),
    ("in-a", 70, {**TIER, **ABOUT}),
    ("before-2", 10, {}),
    ("in-b", 65, READ),
    ("in-c", 60, ABOUT),  # exactly at since: inside
    ("before-late", 8, TIER),
    ("in-d", 119, TIER),
    ("after-1", 125, {}),
    ("in-e", 90, {**READ, **ABOUT}),
    ("at-until", 120, {}),  # exactly at until: outside
    ("after-2", 121, TIER),
    ("in-f", 61, {**TIER, **ABOUT}),  # chained late, after events of after the window
    ("after-3", 130, {}),
    ("in-g", 100, READ),
    ("before-very-late", 1, ABOUT),
    ("after-4", 150, {}),
)


def _newest_first(minutes_from: int | None, minutes_until: int | None, **details: Any) -> list[str]:
    """The labels the trail must answer, newest (last chained) first."""
    return [label for label, minutes, event in reversed(CHAIN)
            if (minutes_from is None or minutes >= minutes_from) and (minutes_until is None or minutes < minutes_until)
            and all(event.get(key) == value for key, value in details.items())]


@pytest.fixture(scope="session", name="fx_auditor")
async def fx_auditor(fx_api: Any) -> dict[str, str]:
    return await fx_api.login(["auditor"])


@pytest.fixture(scope="session", name="fx_window_entity")
async def fx_window_entity(fx_api: Any) -> str:
    """Chain :data:`CHAIN` once per backend, in one transaction; the entity name its events carry."""
    entity = f"time-window-{uuid.uuid4().hex[:8]}"
    rows = []
    for label, minutes, details in CHAIN:
        with mock.patch.object(trail, "utc_now", return_value=BASE + timedelta(minutes=minutes)):
            rows.append(trail.pending_event(actor=ACTOR, entity=entity, entity_id=label,
                                            **{"action": AuditAction.UPDATE, **details}))
    async with fx_api.session_factory() as session, write_transaction(session):
        await chain_now(session, rows)
    return entity


@pytest.fixture(params=["chosen", "bounds", "walk"], name="fx_plan")
def fx_plan(request: pytest.FixtureRequest) -> Iterator[str]:
    """Answer windows as the store chooses, or always from their sequence bounds, or always by walking back:
    each way must be exact (the choice is about speed only)."""
    if request.param == "chosen":
        yield request.param
        return
    choose = store._time_window_plan

    async def forced(*args: Any) -> str:
        return "empty" if await choose(*args) == "empty" else str(request.param)

    with mock.patch.object(store, "_time_window_plan", forced):
        yield request.param


async def _pages(fx_api: Any, auditor: dict[str, str], limit: int, **filters: Any) -> tuple[list[str], int]:
    """Every matching event's label, newest first, paged ``limit`` at a time by cursor; and how many pages."""
    labels: list[str] = []
    params: dict[str, Any] = {"limit": limit, **filters}
    for page in range(1, 100):
        response = await fx_api.client.get("/api/v1/audit/events", params=params, headers=auditor)
        assert response.status_code == 200, response.text
        body = response.json()
        labels += [event["entity_id"] for event in body["items"]]
        if body["next_cursor"] is None:
            return labels, page
        params["cursor"] = body["next_cursor"]
    raise AssertionError("the cursor never ended")


@pytest.mark.parametrize(("filters", "expected"), [
    ({}, _newest_first(60, 120)),
    ({"field": "tier"}, _newest_first(60, 120, **TIER)),
    ({"customer_id": CUSTOMER}, _newest_first(60, 120, **ABOUT)),
    ({"action": "read"}, _newest_first(60, 120, **READ)),
], ids=["window", "window+field", "window+customer", "window+action"])
async def test_a_window_holds_exactly_its_events_newest_first_across_pages(
        fx_api: Any, fx_auditor: dict[str, str], fx_window_entity: str, fx_plan: str, filters: dict[str, Any],
        expected: list[str]) -> None:
    window = {"since": SINCE.isoformat(), "until": UNTIL.isoformat()}
    labels, pages = await _pages(fx_api, fx_auditor, 2, **window, **filters)
    assert labels == expected
    assert pages == (len(expected) + 1) // 2
    whole, _ = await _pages(fx_api, fx_auditor, 100, **window, **filters)
    assert whole == expected


async def test_open_ended_windows_combine_with_the_other_filters(fx_api: Any, fx_auditor: dict[str, str],
                                                                 fx_window_entity: str, fx_plan: str) -> None:
    # Every other event in the trail is recorded now: before UNTIL there are only these.
    labels, _ = await _pages(fx_api, fx_auditor, 3, until=UNTIL.isoformat())
    assert labels == _newest_first(None, 120)
    labels, _ = await _pages(fx_api, fx_auditor, 3, since=SINCE.isoformat(), entity=fx_window_entity)
    assert labels == _newest_first(60, None)
    # The auditor's own queries about the customer are events about it too (entity "audit"): left out.
    labels, _ = await _pages(fx_api, fx_auditor, 3, since=SINCE.isoformat(), customer_id=CUSTOMER,
                             entity=fx_window_entity)
    assert labels == _newest_first(60, None, **ABOUT)


async def test_an_empty_window_answers_no_events(fx_api: Any, fx_auditor: dict[str, str], fx_window_entity: str,
                                                 fx_plan: str) -> None:
    between = {"since": (BASE + timedelta(minutes=20)).isoformat(), "until": SINCE.isoformat()}
    response = await fx_api.client.get("/api/v1/audit/events", params=between, headers=fx_auditor)
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_cursor": None}
    # Events in the window, none matching the other filter.
    labels, _ = await _pages(fx_api, fx_auditor, 2, since=SINCE.isoformat(), until=UNTIL.isoformat(), action="delete")
    assert labels == []
    # Events in the window, none before the cursor.
    first, _ = await _pages(fx_api, fx_auditor, 100, since=SINCE.isoformat(), until=UNTIL.isoformat())
    oldest = await fx_api.client.get("/api/v1/audit/events", headers=fx_auditor, params={
        "since": SINCE.isoformat(), "until": UNTIL.isoformat(), "entity_id": first[-1]})
    cursor = oldest.json()["items"][0]["seq"]
    labels, _ = await _pages(fx_api, fx_auditor, 2, since=SINCE.isoformat(), until=UNTIL.isoformat(), cursor=cursor)
    assert labels == []


async def test_a_window_export_holds_exactly_its_events_in_order(fx_api: Any, fx_auditor: dict[str, str],
                                                                fx_window_entity: str) -> None:
    window = {"since": SINCE.isoformat(), "until": UNTIL.isoformat()}
    empty = {"since": (BASE + timedelta(minutes=20)).isoformat(), "until": SINCE.isoformat()}
    cases = ((window, _newest_first(60, 120)), ({**window, "field": "tier"}, _newest_first(60, 120, **TIER)),
             (empty, []))
    for params, expected in cases:
        response = await fx_api.client.get("/api/v1/audit/export", params=params, headers=fx_auditor)
        assert response.status_code == 200, response.text
        lines = [json.loads(line) for line in response.text.splitlines()]
        events = [json.loads(base64.b64decode(line["canonical"])) for line in lines if line["type"] == "event"]
        assert [event["entity_id"] for event in events] == expected[::-1]
