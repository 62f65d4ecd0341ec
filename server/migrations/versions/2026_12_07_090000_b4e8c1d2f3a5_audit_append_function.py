"""audit append in one call (PostgreSQL): lock, head, chain and insert events in the database

Revision ID: b4e8c1d2f3a5
Revises: ff4ecce78a1f
Create Date: 2026-12-07 09:00:00

``strongroom_audit_append`` appends a batch of events after the chain head: it takes the chain lock (the same
transaction-scoped advisory lock as every other appender), reads the head, gives each event the next sequence
number, writes that number into its canonical bytes, hashes it exactly as ``server.audit.chain.seal_event``
does (``SHA-256(prev_hash || seq as 8 bytes big-endian || canonical)``) and inserts the events with their field
and subject rows. Called as one statement outside a transaction, it is one round trip and one implicit,
durable transaction: the group-commit writer of read events used four (BEGIN and lock, head, insert, COMMIT).

Each query of a VOLATILE PL/pgSQL function takes a fresh snapshot under READ COMMITTED, so the head is read
after the lock is granted and sees every append committed before it. SQLite has no such function; its writer
keeps chaining in Python under the database's write lock.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = 'b4e8c1d2f3a5'
down_revision: str | None = 'ff4ecce78a1f'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNTIME_ROLE = "strongroom_app"
# server.audit.sealer.CHAIN_LOCK_KEY (a test holds the two equal): every appender must take the same lock.
CHAIN_LOCK_KEY = 0x5354524F4E47
SIGNATURE = ("bigint[], timestamptz[], varchar[], varchar[], varchar[], varchar[], varchar[], varchar[], bytea[], "
             "bytea[], integer[], varchar[], integer[], varchar[]")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"""
        CREATE OR REPLACE FUNCTION strongroom_audit_append(
            p_pending bigint[], p_ts timestamptz[], p_actor varchar[], p_action varchar[], p_entity varchar[],
            p_entity_id varchar[], p_subject varchar[], p_outcome varchar[],
            p_before_seq bytea[], p_after_seq bytea[],
            p_field_event integer[], p_field varchar[], p_subject_event integer[], p_subject_id varchar[]
        ) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
        DECLARE
            head bigint;
            prev bytea;
            canonical bytea;
            events integer := coalesce(cardinality(p_ts), 0);
            seqs bigint[] := '{{}}';
            canonicals bytea[] := '{{}}';
            prevs bytea[] := '{{}}';
            hashes bytea[] := '{{}}';
        BEGIN
            PERFORM pg_advisory_xact_lock({CHAIN_LOCK_KEY});
            SELECT seq, hash INTO head, prev FROM audit_events ORDER BY seq DESC LIMIT 1;
            IF NOT FOUND THEN
                head := 0;
                prev := decode(repeat('00', 32), 'hex');
            END IF;
            FOR i IN 1 .. events LOOP
                canonical := p_before_seq[i] || convert_to((head + i)::text, 'UTF8') || p_after_seq[i];
                seqs := array_append(seqs, head + i);
                canonicals := array_append(canonicals, canonical);
                prevs := array_append(prevs, prev);
                prev := sha256(prev || int8send(head + i) || canonical);
                hashes := array_append(hashes, prev);
            END LOOP;
            INSERT INTO audit_events (seq, pending_id, ts, actor_id, action, entity, entity_id, subject_id, outcome,
                                      canonical, prev_hash, hash)
                SELECT * FROM unnest(seqs, p_pending, p_ts, p_actor, p_action, p_entity, p_entity_id, p_subject,
                                     p_outcome, canonicals, prevs, hashes);
            INSERT INTO audit_event_fields (seq, field)
                SELECT head + event, name FROM unnest(p_field_event, p_field) AS touched(event, name);
            INSERT INTO audit_event_subjects (seq, subject_id)
                SELECT head + event, subject FROM unnest(p_subject_event, p_subject_id) AS concerned(event, subject);
            RETURN head + events;
        END $$""")
    # SECURITY INVOKER (the default): the function appends with the caller's rights, which for the runtime role
    # are INSERT and SELECT on the audit tables.
    op.execute(f"""
        DO $$ BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{RUNTIME_ROLE}') THEN
                GRANT EXECUTE ON FUNCTION strongroom_audit_append({SIGNATURE}) TO {RUNTIME_ROLE};
            END IF;
        END $$""")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP FUNCTION IF EXISTS strongroom_audit_append({SIGNATURE})")
