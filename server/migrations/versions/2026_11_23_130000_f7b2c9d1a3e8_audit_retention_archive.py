"""audit retention: archives, legal holds, stored Merkle compact ranges, guarded delete of archived events

Revision ID: f7b2c9d1a3e8
Revises: e3a1c2d4b5f6
Create Date: 2026-11-23 13:00:00

The audit tables stay append-only with one exception: rows of ``audit_events``, ``audit_event_fields`` and
``audit_event_subjects`` whose ``seq`` is at most the newest archive's ``last_seq`` may be deleted. An archive
row is accepted only if it continues the previous one, names the stored hash of its last event, and no active
legal hold covers an event of its range. On PostgreSQL the runtime role may only read ``audit_archives`` and
has no DELETE on the event tables, so archiving needs the schema owner (``strongroom audit archive``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'f7b2c9d1a3e8'
down_revision: str | None = 'e3a1c2d4b5f6'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNTIME_ROLE = "strongroom_app"
EVENT_TABLES = ("audit_events", "audit_event_fields", "audit_event_subjects")
APPEND_ONLY_TABLES = ("audit_archives", "audit_legal_holds", "audit_legal_hold_releases", "audit_compact_ranges")
BOUNDARY = "(SELECT COALESCE(max(last_seq), 0) FROM audit_archives)"
# An active hold (never released) that covers an event of the new archive's range: the archive is refused.
HELD_IN_RANGE = """EXISTS (
    SELECT 1 FROM audit_legal_holds h
    WHERE NOT EXISTS (SELECT 1 FROM audit_legal_hold_releases r WHERE r.hold_id = h.id)
      AND EXISTS (
        SELECT 1 FROM audit_events e
        WHERE e.seq BETWEEN NEW.first_seq AND NEW.last_seq
          AND (h.since IS NULL OR e.ts >= h.since)
          AND (h.until IS NULL OR e.ts < h.until)
          AND (h.subject_id IS NULL OR e.subject_id = h.subject_id OR e.entity_id = h.subject_id
               OR EXISTS (SELECT 1 FROM audit_event_subjects s WHERE s.seq = e.seq AND s.subject_id = h.subject_id))))"""
NOT_CONTIGUOUS = (f"NEW.first_seq <> {BOUNDARY} + 1 OR NEW.last_seq < NEW.first_seq "
                  "OR NOT EXISTS (SELECT 1 FROM audit_events WHERE seq = NEW.last_seq AND hash = NEW.last_hash)")


def _sqlite() -> None:
    for table in EVENT_TABLES:
        # Same trigger names as before, now with a WHEN: deleting an archived row is the one thing allowed.
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        op.execute(f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} WHEN OLD.seq > {BOUNDARY} "
                   f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: only archived events may be deleted'); END")
    for table in APPEND_ONLY_TABLES:
        for operation in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")
    op.execute(f"CREATE TRIGGER audit_archives_contiguous BEFORE INSERT ON audit_archives WHEN {NOT_CONTIGUOUS} "
               "BEGIN SELECT RAISE(ABORT, 'audit_archives: an archive must continue the previous one and name the "
               "hash of its last event'); END")
    op.execute(f"CREATE TRIGGER audit_archives_respect_holds BEFORE INSERT ON audit_archives WHEN {HELD_IN_RANGE} "
               "BEGIN SELECT RAISE(ABORT, 'audit_archives: a legal hold covers an event of this range'); END")


def _postgresql() -> None:
    op.execute(f"""
        CREATE OR REPLACE FUNCTION strongroom_guard_archived_delete() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' AND OLD.seq <= {BOUNDARY} THEN
                RETURN OLD;
            END IF;
            IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION '% is append-only: only archived events may be deleted', TG_TABLE_NAME
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
        END $$""")
    for table in EVENT_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION strongroom_guard_archived_delete()")
    op.execute(f"""
        CREATE OR REPLACE FUNCTION strongroom_check_audit_archive() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF {NOT_CONTIGUOUS} THEN
                RAISE EXCEPTION 'audit_archives: an archive must continue the previous one and name the hash of its '
                                'last event' USING ERRCODE = 'check_violation';
            END IF;
            IF {HELD_IN_RANGE} THEN
                RAISE EXCEPTION 'audit_archives: a legal hold covers an event of this range'
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END $$""")
    op.execute("CREATE TRIGGER audit_archives_check BEFORE INSERT ON audit_archives "
               "FOR EACH ROW EXECUTE FUNCTION strongroom_check_audit_archive()")
    for table in APPEND_ONLY_TABLES:
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION strongroom_refuse_audit_change()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION strongroom_refuse_audit_change()")
    # The runtime role reads archives but never writes them (archiving deletes events: the schema owner's job);
    # it places and releases legal holds and stores the Merkle state of the checkpoints it signs.
    op.execute(f"""
        DO $$ BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{RUNTIME_ROLE}') THEN
                GRANT SELECT ON audit_archives TO {RUNTIME_ROLE};
                GRANT SELECT, INSERT ON audit_legal_holds, audit_legal_hold_releases, audit_compact_ranges
                    TO {RUNTIME_ROLE};
                GRANT USAGE, SELECT ON SEQUENCE audit_legal_holds_id_seq TO {RUNTIME_ROLE};
            END IF;
        END $$""")


def upgrade() -> None:
    op.create_table('audit_archives',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('first_seq', sa.BigInteger(), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=False),
    sa.Column('last_hash', sa.LargeBinary(), nullable=False),
    sa.Column('compact_range', sa.LargeBinary(), nullable=False),
    sa.Column('events', sa.BigInteger(), nullable=False),
    sa.Column('cutoff', sa.DateTime(timezone=True), nullable=False),
    sa.Column('file_name', sa.String(length=255), nullable=False),
    sa.Column('file_sha256', sa.String(length=64), nullable=False),
    sa.Column('file_bytes', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_archives')),
    # Two archives can never start at the same place, even when two runs race.
    sa.UniqueConstraint('first_seq', name=op.f('uq_audit_archives_first_seq')),
    sa.UniqueConstraint('last_seq', name=op.f('uq_audit_archives_last_seq'))
    )
    op.create_table('audit_legal_holds',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('subject_id', sa.String(length=64), nullable=True),
    sa.Column('since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_legal_holds')),
    sqlite_autoincrement=True,
    )
    op.create_table('audit_legal_hold_releases',
    sa.Column('hold_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False,
              nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('released_by', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['hold_id'], ['audit_legal_holds.id'],
                            name=op.f('fk_audit_legal_hold_releases_hold_id_audit_legal_holds')),
    sa.PrimaryKeyConstraint('hold_id', name=op.f('pk_audit_legal_hold_releases'))
    )
    op.create_table('audit_compact_ranges',
    sa.Column('tree_size', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('nodes', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('tree_size', name=op.f('pk_audit_compact_ranges'))
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgresql()
    else:
        _sqlite()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in EVENT_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION strongroom_refuse_audit_change()")
        op.execute("DROP FUNCTION IF EXISTS strongroom_guard_archived_delete()")
    else:
        for table in EVENT_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
            op.execute(f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")
    op.drop_table('audit_compact_ranges')
    op.drop_table('audit_legal_hold_releases')
    op.drop_table('audit_legal_holds')
    op.drop_table('audit_archives')
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS strongroom_check_audit_archive()")
