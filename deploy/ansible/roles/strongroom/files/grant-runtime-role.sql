-- The rights of strongroom_app (the role the server's login is a member of) on a schema migrated before the role
-- existed. The migrations grant them when strongroom_app exists and skip them otherwise (a schema owner without
-- CREATEROLE cannot create it), and a later migration does not go back. Run it as a superuser or the schema
-- owner, connected to the Strongroom database, after creating strongroom_app:
--     psql -X -v ON_ERROR_STOP=1 -d strongroom -f grant-runtime-role.sql
-- It does nothing while strongroom_app already holds its rights, and prints "STRONGROOM CHANGED" when it granted
-- them. It must give what the migrations give: tests/deploy/test_ansible.py compares the two.
SELECT to_regclass('public.audit_events') IS NOT NULL
       AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'strongroom_app')
       AND NOT has_table_privilege('strongroom_app', 'public.audit_events', 'INSERT') AS strongroom_need_grants \gset
\if :strongroom_need_grants
BEGIN;
GRANT USAGE ON SCHEMA public TO strongroom_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO strongroom_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO strongroom_app;
-- What the migrations withhold: the audit tables are append-only for the server (audit_pending rows are deleted
-- once sealed), archive records are written by the owner's `strongroom audit archive`, data keys are never
-- deleted (an erasure keeps a tombstone), and the schema revision is the owner's.
DO $$
DECLARE
    withheld record;
BEGIN
    FOR withheld IN SELECT * FROM (VALUES
            ('audit_events', 'UPDATE, DELETE'),
            ('audit_event_fields', 'UPDATE, DELETE'),
            ('audit_event_subjects', 'UPDATE, DELETE'),
            ('audit_checkpoints', 'UPDATE, DELETE'),
            ('audit_compact_ranges', 'UPDATE, DELETE'),
            ('audit_legal_holds', 'UPDATE, DELETE'),
            ('audit_legal_hold_releases', 'UPDATE, DELETE'),
            ('audit_archives', 'INSERT, UPDATE, DELETE'),
            ('audit_pending', 'UPDATE'),
            ('data_keys', 'DELETE'),
            ('alembic_version', 'UPDATE')) AS w (table_name, privileges)
    LOOP
        IF to_regclass('public.' || withheld.table_name) IS NOT NULL THEN
            EXECUTE format('REVOKE %s ON public.%I FROM strongroom_app', withheld.privileges, withheld.table_name);
        END IF;
    END LOOP;
END $$;
COMMIT;
\echo STRONGROOM CHANGED grants
\endif
