"""audit field and subject rows without a foreign key to their event

Revision ID: c7d9e2f4a6b8
Revises: b4e8c1d2f3a5
Create Date: 2026-12-07 10:00:00

``audit_event_fields`` and ``audit_event_subjects`` are indexes for the compliance queries (by field, by
customer), written only by the code that appends their event, in the same statement or transaction. Their
foreign key to ``audit_events`` was checked once per row, a lookup and a row lock on the event: a list page's
read event names fifty customers, and the checks took about 1 ms of PostgreSQL's CPU per page (measured; the
bench's 50-row list spent 1.6 ms of PostgreSQL CPU per request against the baseline's 0.35 ms). The key
guarded nothing the append-only triggers and the writer do not: the rows cannot be changed or deleted (except
archived ones), and the chain's integrity rests on the hashes of the events, which hold the fields and subjects
in their canonical bytes.

SQLite cannot drop a constraint, so each table is rebuilt (the same columns, primary key and index) and its
append-only triggers, read from ``sqlite_master`` before, are created again unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = 'c7d9e2f4a6b8'
down_revision: str | None = 'b4e8c1d2f3a5'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table: (second key column and its type, the foreign key's name, the index on (column, seq))
TABLES = {
    "audit_event_fields": ("field", "VARCHAR(128)", "fk_audit_event_fields_seq_audit_events",
                           "ix_audit_event_fields_field_seq"),
    "audit_event_subjects": ("subject_id", "VARCHAR(64)", "fk_audit_event_subjects_seq_audit_events",
                             "ix_audit_event_subjects_subject_id_seq"),
}


def _rebuild_on_sqlite(table: str, *, with_foreign_key: bool) -> None:
    column, column_type, foreign_key, index = TABLES[table]
    bind = op.get_bind()
    triggers = bind.execute(text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :table "
                                 "ORDER BY name"), {"table": table}).scalars().all()
    reference = (f", CONSTRAINT {foreign_key} FOREIGN KEY(seq) REFERENCES audit_events (seq)"
                 if with_foreign_key else "")
    op.execute(f"CREATE TABLE {table}_rebuilt (seq BIGINT NOT NULL, {column} {column_type} NOT NULL, "
               f"CONSTRAINT pk_{table} PRIMARY KEY (seq, {column}){reference})")
    op.execute(f"INSERT INTO {table}_rebuilt (seq, {column}) SELECT seq, {column} FROM {table}")
    op.execute(f"DROP TABLE {table}")  # its triggers go with it (and a DROP fires none of them)
    # Legacy rename: the modern one re-checks every trigger that names the table, and audit_archives' triggers
    # name the one just dropped (SQLite's documented procedure for changing a table's definition).
    op.execute("PRAGMA legacy_alter_table = ON")
    op.execute(f"ALTER TABLE {table}_rebuilt RENAME TO {table}")
    op.execute("PRAGMA legacy_alter_table = OFF")
    op.execute(f"CREATE INDEX {index} ON {table} ({column}, seq)")
    for trigger in triggers:
        op.execute(trigger)


def upgrade() -> None:
    for table, (_, _, foreign_key, _) in TABLES.items():
        if op.get_bind().dialect.name == "sqlite":
            _rebuild_on_sqlite(table, with_foreign_key=False)
        else:
            op.drop_constraint(foreign_key, table, type_="foreignkey")


def downgrade() -> None:
    for table, (_, _, foreign_key, _) in TABLES.items():
        if op.get_bind().dialect.name == "sqlite":
            _rebuild_on_sqlite(table, with_foreign_key=True)
        else:
            op.create_foreign_key(foreign_key, table, "audit_events", ["seq"], ["seq"])
