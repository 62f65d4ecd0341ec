"""audit events by time, with their sequence numbers: (ts, seq) replaces the index on ts alone

Revision ID: ff4ecce78a1f
Revises: a9d3e5f7b1c2
Create Date: 2026-12-07 04:00:00

The time-range query first finds the window's bounds on the sequence, ``min(seq)`` and ``max(seq)`` over
``ts >= since AND ts < until``, and then reads the primary key over that range only. With ``seq`` in the index
the bounds are an index-only scan of the window's entries; with ``ts`` alone every entry cost a heap visit.
``(ts, seq)`` serves everything the ts-only index did, so that one is dropped. On a large trail, build the new
index beforehand with CREATE INDEX CONCURRENTLY under this name (this migration then finds it in place, and
dropping the old index is quick).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = 'ff4ecce78a1f'
down_revision: str | None = 'a9d3e5f7b1c2'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS_SEQ = "ix_audit_events_ts_seq"
TS_ONLY = "ix_audit_events_ts"


def upgrade() -> None:
    op.create_index(TS_SEQ, "audit_events", ["ts", "seq"], if_not_exists=True)
    op.drop_index(TS_ONLY, table_name="audit_events", if_exists=True)


def downgrade() -> None:
    op.create_index(TS_ONLY, "audit_events", ["ts"], if_not_exists=True)
    op.drop_index(TS_SEQ, table_name="audit_events", if_exists=True)
