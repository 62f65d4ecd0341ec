"""Imports every mapped model so that metadata is complete (Alembic, tests)."""

from __future__ import annotations


def import_all_models() -> None:
    """Import the model modules of every layer that owns tables."""
    import server.audit.models
    import server.domain.activities
    import server.domain.contacts
    import server.domain.customers
    import server.domain.opportunities
    import server.domain.service_records
    import server.security.data_keys
    import server.security.identity
    import server.services.idempotency  # noqa: F401
