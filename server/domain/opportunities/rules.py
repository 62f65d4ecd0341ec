"""Pipeline rules: which stage moves are allowed, default probabilities, loss reasons."""

from __future__ import annotations

from server.domain.opportunities.models import PipelineStage
from server.errors import InvalidInput, InvalidTransition

OPEN_STAGES = frozenset(
    {PipelineStage.QUALIFICATION, PipelineStage.NEEDS_ANALYSIS, PipelineStage.PROPOSAL, PipelineStage.NEGOTIATION}
)
TERMINAL_STAGES = frozenset({PipelineStage.WON, PipelineStage.LOST})

_PROBABILITY = {
    PipelineStage.QUALIFICATION: 10,
    PipelineStage.NEEDS_ANALYSIS: 25,
    PipelineStage.PROPOSAL: 50,
    PipelineStage.NEGOTIATION: 75,
    PipelineStage.WON: 100,
    PipelineStage.LOST: 0,
}


def default_probability(stage: str) -> int:
    """The win probability a stage implies when the caller gives none."""
    return _PROBABILITY[PipelineStage(stage)]


def check_stage_change(current: str, target: str, *, loss_reason: str | None, reopening: bool = False) -> None:
    """Validate a stage change.

    Open stages may move to any other stage. Won and lost are terminal: only an explicit reopen moves them,
    and only back to an open stage. Lost requires a loss reason.
    """
    current_stage, target_stage = PipelineStage(current), PipelineStage(target)
    if current_stage in TERMINAL_STAGES:
        if not reopening:
            raise InvalidTransition(
                f"stage {current!r} is terminal; reopen the opportunity to change it", field="stage"
            )
        if target_stage not in OPEN_STAGES:
            raise InvalidTransition("a reopened opportunity must move to an open stage", field="stage")
    elif reopening:
        raise InvalidTransition(f"only won or lost opportunities can be reopened, this one is {current!r}")
    if target_stage is PipelineStage.LOST and not (loss_reason and loss_reason.strip()):
        raise InvalidInput("loss_reason is required when an opportunity is lost", field="loss_reason")


MAX_AMOUNT = 10**14
MAX_AMOUNT_PLACES = 4


def check_amount(amount: object) -> None:
    """Amounts are finite, non-negative, below 10^14 and have at most four decimal places."""
    from decimal import Decimal

    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise InvalidInput("amount must be a finite decimal number", field="amount")
    if amount < 0:
        raise InvalidInput("amount must not be negative", field="amount")
    if amount >= MAX_AMOUNT:
        raise InvalidInput(f"amount must be below {MAX_AMOUNT}", field="amount")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_AMOUNT_PLACES:
        raise InvalidInput(f"amount may have at most {MAX_AMOUNT_PLACES} decimal places", field="amount")
