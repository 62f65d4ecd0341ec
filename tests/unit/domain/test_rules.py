"""Business rules without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from server.domain.customers import check_lifecycle_change
from server.domain.opportunities import check_stage_change
from server.domain.opportunities.rules import check_amount
from server.domain.service_records import ServiceRecord, apply_status_change, due_times
from server.errors import InvalidInput, InvalidTransition


@pytest.mark.parametrize(("current", "target", "allowed"), [
    ("lead", "prospect", True), ("lead", "customer", True), ("lead", "churned", False),
    ("customer", "churned", True), ("customer", "lead", False), ("churned", "prospect", True),
    ("prospect", "prospect", True),
])
def test_lifecycle(current: str, target: str, allowed: bool) -> None:
    if allowed:
        check_lifecycle_change(current, target)
    else:
        with pytest.raises(InvalidTransition):
            check_lifecycle_change(current, target)


def test_stage_rules() -> None:
    check_stage_change("qualification", "negotiation", loss_reason=None)
    check_stage_change("negotiation", "qualification", loss_reason=None)
    with pytest.raises(InvalidInput):
        check_stage_change("proposal", "lost", loss_reason="  ")
    with pytest.raises(InvalidTransition):
        check_stage_change("won", "proposal", loss_reason=None)
    with pytest.raises(InvalidTransition):
        check_stage_change("lost", "won", loss_reason=None, reopening=True)
    with pytest.raises(InvalidTransition):
        check_stage_change("proposal", "negotiation", loss_reason=None, reopening=True)
    check_stage_change("won", "negotiation", loss_reason=None, reopening=True)


@pytest.mark.parametrize("amount", ["-0.01", "NaN", "Infinity", "1E+14", "0.00001"])
def test_bad_amounts(amount: str) -> None:
    with pytest.raises(InvalidInput):
        check_amount(Decimal(amount))


def test_good_amounts() -> None:
    for amount in ("0", "0.0001", "99999999999999.9999"):
        check_amount(Decimal(amount))


def test_sla_and_status_flow() -> None:
    opened = datetime(2026, 1, 1, tzinfo=UTC)
    assert due_times("normal", opened) == (opened + timedelta(hours=8), opened + timedelta(hours=72))
    record = ServiceRecord(status="open", resolution=None)
    with pytest.raises(InvalidTransition):
        apply_status_change(record, "resolved", opened)
    apply_status_change(record, "in_progress", opened)
    assert record.first_responded_at == opened
    with pytest.raises(InvalidInput):
        apply_status_change(record, "resolved", opened)
    record.resolution = "fixed"
    apply_status_change(record, "resolved", opened + timedelta(hours=1))
    assert record.resolved_at == opened + timedelta(hours=1)
    apply_status_change(record, "closed", opened + timedelta(hours=2))
    with pytest.raises(InvalidTransition):
        apply_status_change(record, "in_progress", opened)
