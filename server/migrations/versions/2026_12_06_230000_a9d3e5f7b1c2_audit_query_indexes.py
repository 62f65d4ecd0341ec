"""audit query indexes: events by entity_id and by entity, in sequence order

Revision ID: a9d3e5f7b1c2
Revises: f7b2c9d1a3e8
Create Date: 2026-12-06 23:00:00

The compliance query "everything done to or seen of customer X" unions three index lookups (subject, entity
id, event subjects); without an index leading with ``entity_id`` PostgreSQL read the whole table (1 s at
3 million events, no answer within 5 s at 10 million). ``(entity, seq)`` serves the per-entity filter newest
first without a sort. On a large trail, build them beforehand with CREATE INDEX CONCURRENTLY under these
names and this migration finds them in place.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = 'a9d3e5f7b1c2'
down_revision: str | None = 'f7b2c9d1a3e8'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {"ix_audit_events_entity_id_seq": ("entity_id", "seq"), "ix_audit_events_entity_seq": ("entity", "seq")}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "audit_events", list(columns), if_not_exists=True)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="audit_events")
