"""Activities: visits, calls, e-mails, meetings and notes on a customer's timeline."""

from server.domain.activities.fields import ACTIVITY
from server.domain.activities.models import Activity, ActivityKind

__all__ = ["ACTIVITY", "Activity", "ActivityKind"]
