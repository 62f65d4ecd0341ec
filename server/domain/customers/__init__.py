"""Customers: companies and individuals, their lifecycle and ownership."""

from server.domain.customers.fields import CUSTOMER
from server.domain.customers.models import Customer, CustomerKind, LifecycleStage, SourceChannel, Tier
from server.domain.customers.rules import check_lifecycle_change

__all__ = ["CUSTOMER", "Customer", "CustomerKind", "LifecycleStage", "SourceChannel", "Tier", "check_lifecycle_change"]
