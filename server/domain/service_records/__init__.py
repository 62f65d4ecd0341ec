"""Service records: tickets and work orders with SLA due times and a validated status flow."""

from server.domain.service_records.fields import SERVICE_RECORD
from server.domain.service_records.models import Priority, ServiceRecord, ServiceStatus, ServiceType
from server.domain.service_records.rules import apply_status_change, due_times

__all__ = ["SERVICE_RECORD", "Priority", "ServiceRecord", "ServiceStatus", "ServiceType", "apply_status_change",
           "due_times"]
