"""A page of events filtered by one column is read through that column's index, on both databases.

Asked for whole events in sequence order, PostgreSQL walks the primary key from the newest event and filters
whenever its statistics call the value common. A value common over the trail but absent from its newest stretch
(a user who left; an action that the last hour's reads outnumber) then costs every event of that stretch: at 10M
events, an actor's page took 214 ms where its own index answers in 2 ms. These events: the leaver's, then as many
of a newcomer's after them; the leaver is the commonest actor of the trail and has none of its newest events.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from server.audit import store, trail
from server.audit.sealer import chain_now
from server.audit.tags import ActorType, AuditAction
from server.db import write_transaction

EACH = 3000
LEAVER = trail.AuditActor(ActorType.SYSTEM, f"plan-leaver-{uuid.uuid4().hex[:8]}", "plan test, leaver")
NEWCOMER = trail.AuditActor(ActorType.SYSTEM, f"plan-newcomer-{uuid.uuid4().hex[:8]}", "plan test, newcomer")


@pytest.fixture(scope="session", name="fx_auditor")
async def fx_auditor(fx_api: Any) -> dict[str, str]:
    return await fx_api.login(["auditor"])


@pytest.fixture(scope="session", name="fx_skewed_trail")
async def fx_skewed_trail(fx_api: Any) -> None:
    """The leaver's events, then the newcomer's, chained once per backend. On PostgreSQL, vacuumed as
    autovacuum keeps an insert-only table (statistics, and its pages marked all-visible)."""
    rows = [trail.pending_event(actor=actor, action=AuditAction.UPDATE, entity="plan-test",
                                reason=f"{actor.id}-{number}")
            for actor in (LEAVER, NEWCOMER) for number in range(EACH)]
    async with fx_api.session_factory() as session, write_transaction(session):
        await chain_now(session, rows)
    if fx_api.backend == "postgresql":
        async with fx_api.engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text("VACUUM (ANALYZE) audit_events"))


async def test_the_leavers_newest_page_is_their_own_newest_events(fx_api: Any, fx_auditor: dict[str, str],
                                                                   fx_skewed_trail: None) -> None:
    reasons: list[str] = []
    cursor: str | None = None
    for _ in range(2):
        params = {"actor_id": LEAVER.id, "limit": 100, **({"cursor": cursor} if cursor else {})}
        response = await fx_api.client.get("/api/v1/audit/events", params=params, headers=fx_auditor)
        assert response.status_code == 200, response.text
        reasons += [item["reason"] for item in response.json()["items"]]
        cursor = response.json()["next_cursor"]
    assert reasons == [f"{LEAVER.id}-{number}" for number in range(EACH - 1, EACH - 201, -1)]


def _removed_by_filters(plan: dict[str, Any]) -> int:
    """Rows every node of a PostgreSQL JSON plan read and then threw away."""
    own = int(plan.get("Rows Removed by Filter", 0)) * int(plan.get("Actual Loops", 1))
    return own + sum(_removed_by_filters(child) for child in plan.get("Plans", []))


async def test_the_leavers_page_reads_the_actor_index_not_the_newcomers_events(fx_api: Any,
                                                                              fx_skewed_trail: None) -> None:
    statement = store._matching(store.EventQuery(actor_id=LEAVER.id), page=101,
                                postgresql=fx_api.backend == "postgresql")
    sql = str(statement.compile(dialect=fx_api.engine.dialect, compile_kwargs={"literal_binds": True}))
    async with fx_api.engine.connect() as connection:
        if fx_api.backend == "postgresql":
            explained = (await connection.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}"))).scalar_one()
            plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]
            assert _removed_by_filters(plan) < EACH // 10, json.dumps(plan, indent=1)
        else:
            steps = [row[3] for row in (await connection.execute(text(f"EXPLAIN QUERY PLAN {sql}"))).all()]
            assert any("ix_audit_events_actor_id_seq" in step for step in steps), steps
            assert not any(step.startswith("SCAN audit_events") for step in steps), steps
