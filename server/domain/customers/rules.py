"""Customer business rules."""

from __future__ import annotations

from server.domain.customers.models import LifecycleStage
from server.errors import InvalidTransition

_ALLOWED: dict[LifecycleStage, frozenset[LifecycleStage]] = {
    LifecycleStage.LEAD: frozenset({LifecycleStage.PROSPECT, LifecycleStage.CUSTOMER}),
    LifecycleStage.PROSPECT: frozenset({LifecycleStage.LEAD, LifecycleStage.CUSTOMER}),
    LifecycleStage.CUSTOMER: frozenset({LifecycleStage.CHURNED}),
    # Win-back: a churned customer becomes a prospect again, or a customer on a new contract.
    LifecycleStage.CHURNED: frozenset({LifecycleStage.PROSPECT, LifecycleStage.CUSTOMER}),
}


def check_lifecycle_change(current: str, target: str) -> None:
    """Raise InvalidTransition unless ``current`` may move to ``target``."""
    if current == target:
        return
    if LifecycleStage(target) not in _ALLOWED[LifecycleStage(current)]:
        allowed = ", ".join(sorted(stage.value for stage in _ALLOWED[LifecycleStage(current)]))
        raise InvalidTransition(
            f"lifecycle_stage cannot change from {current!r} to {target!r}; allowed: {allowed}",
            field="lifecycle_stage",
        )
