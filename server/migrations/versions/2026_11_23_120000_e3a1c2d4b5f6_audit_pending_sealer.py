"""audit events written pending, sealed in commit order

Revision ID: e3a1c2d4b5f6
Revises: d8a4d75104da
Create Date: 2026-11-23 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'e3a1c2d4b5f6'
down_revision: str | None = 'd8a4d75104da'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNTIME_ROLE = "strongroom_app"
GUARD_MESSAGE = "audit_pending rows are removed only by the sealer, after their sealed event exists"


def _guard_sqlite() -> None:
    for operation in ("UPDATE", "DELETE"):
        op.execute(f"CREATE TRIGGER audit_event_subjects_no_{operation.lower()} BEFORE {operation} "
                   "ON audit_event_subjects BEGIN SELECT RAISE(ABORT, 'audit_event_subjects is append-only'); END")
    op.execute("CREATE TRIGGER audit_pending_no_update BEFORE UPDATE ON audit_pending "
               "BEGIN SELECT RAISE(ABORT, 'audit_pending is append-only'); END")
    op.execute("CREATE TRIGGER audit_pending_delete_sealed_only BEFORE DELETE ON audit_pending "
               "WHEN NOT EXISTS (SELECT 1 FROM audit_events WHERE pending_id = OLD.id) "
               f"BEGIN SELECT RAISE(ABORT, '{GUARD_MESSAGE}'); END")


def _guard_postgresql() -> None:
    op.execute("CREATE TRIGGER audit_event_subjects_append_only BEFORE UPDATE OR DELETE ON audit_event_subjects "
               "FOR EACH ROW EXECUTE FUNCTION strongroom_refuse_audit_change()")
    op.execute("CREATE TRIGGER audit_event_subjects_no_truncate BEFORE TRUNCATE ON audit_event_subjects "
               "FOR EACH STATEMENT EXECUTE FUNCTION strongroom_refuse_audit_change()")
    op.execute(f"""
        CREATE OR REPLACE FUNCTION strongroom_guard_audit_pending() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM audit_events WHERE pending_id = OLD.id) THEN
                RETURN OLD;
            END IF;
            IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION '{GUARD_MESSAGE}' USING ERRCODE = 'insufficient_privilege';
            END IF;
            RAISE EXCEPTION 'audit_pending is append-only' USING ERRCODE = 'insufficient_privilege';
        END $$""")
    op.execute("CREATE TRIGGER audit_pending_guard BEFORE UPDATE OR DELETE ON audit_pending "
               "FOR EACH ROW EXECUTE FUNCTION strongroom_guard_audit_pending()")
    op.execute("CREATE TRIGGER audit_pending_no_truncate BEFORE TRUNCATE ON audit_pending "
               "FOR EACH STATEMENT EXECUTE FUNCTION strongroom_refuse_audit_change()")
    op.execute(f"""
        DO $$ BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{RUNTIME_ROLE}') THEN
                GRANT SELECT, INSERT, DELETE ON audit_pending TO {RUNTIME_ROLE};
                GRANT SELECT, INSERT ON audit_event_subjects TO {RUNTIME_ROLE};
                GRANT USAGE, SELECT ON SEQUENCE audit_pending_id_seq TO {RUNTIME_ROLE};
            END IF;
        END $$""")


def upgrade() -> None:
    op.create_table('audit_pending',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('entity', sa.String(length=64), nullable=True),
    sa.Column('entity_id', sa.String(length=64), nullable=True),
    sa.Column('subject_id', sa.String(length=64), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('fields', sa.Text(), nullable=False),
    sa.Column('subjects', sa.Text(), nullable=False),
    sa.Column('canonical', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_pending')),
    sqlite_autoincrement=True,
    )
    # A plain ADD COLUMN of a nullable column rewrites no row on either database (SQLite's batch mode would
    # rebuild the append-only table, which its triggers forbid).
    op.add_column('audit_events', sa.Column('pending_id', sa.BigInteger(), nullable=True))
    op.create_index(op.f('uq_audit_events_pending_id'), 'audit_events', ['pending_id'], unique=True)
    op.create_table('audit_event_subjects',
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('subject_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['seq'], ['audit_events.seq'], name=op.f('fk_audit_event_subjects_seq_audit_events')),
    sa.PrimaryKeyConstraint('seq', 'subject_id', name=op.f('pk_audit_event_subjects'))
    )
    op.create_index('ix_audit_event_subjects_subject_id_seq', 'audit_event_subjects', ['subject_id', 'seq'],
                    unique=False)
    if op.get_bind().dialect.name == "postgresql":
        _guard_postgresql()
    else:
        _guard_sqlite()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_pending_guard ON audit_pending")
        op.execute("DROP TRIGGER IF EXISTS audit_pending_no_truncate ON audit_pending")
        op.execute("DROP FUNCTION IF EXISTS strongroom_guard_audit_pending()")
    op.drop_index('ix_audit_event_subjects_subject_id_seq', table_name='audit_event_subjects')
    op.drop_table('audit_event_subjects')
    op.drop_index(op.f('uq_audit_events_pending_id'), table_name='audit_events')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_column('pending_id')
    op.drop_table('audit_pending')
