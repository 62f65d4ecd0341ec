"""The ``strongroom`` command. Every command has a non-interactive form for automation."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.exc import SQLAlchemyError

from server.config import Settings, SettingsError, describe_settings, load_settings
from server.errors import StrongroomError
from server.ops.keys_cli import add_key_commands

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _read_secret_from_stdin(what: str) -> str:
    value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise StrongroomError(f"no {what} on standard input")
    return value


def _run(coroutine_factory: Callable[[], Coroutine[Any, Any, int]]) -> int:
    return asyncio.run(coroutine_factory())


async def _with_session(settings: Settings, work: Callable[[Any], Coroutine[Any, Any, int]]) -> int:
    from server.db import create_engine, create_session_factory

    engine = create_engine(settings.resolved_database_url)
    try:
        async with create_session_factory(engine)() as session:
            return await work(session)
    finally:
        await engine.dispose()


async def _with_identity(settings: Settings, work: Callable[[Any], Coroutine[Any, Any, int]]) -> int:
    """Run ``work`` with an identity service acting as the operator on this server."""
    from server.security.identity import PasswordHasher
    from server.services.identity import IdentityService

    return await _with_session(settings, lambda session: work(IdentityService(session, PasswordHasher())))


async def _with_policy(settings: Settings, work: Callable[[Any], Coroutine[Any, Any, int]]) -> int:
    """Run ``work`` with a policy admin service acting as the operator on this server (system principal)."""
    from server.db import create_engine, create_session_factory
    from server.security.access import AccessControl
    from server.security.principal import system_principal
    from server.services.policy_admin import PolicyAdminService

    engine = create_engine(settings.resolved_database_url)
    try:
        factory = create_session_factory(engine)
        access = AccessControl(factory)
        await access.refresh_if_stale(force=True)
        async with factory() as session:
            return await work(PolicyAdminService(session, access, system_principal("cli")))
    finally:
        await engine.dispose()


def _print_rows(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        print("  ".join(f"{key}={value}" for key, value in row.items()))


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    """Upgrade the database schema to the newest revision."""
    from server.db import current_revision, migrate

    migrate(settings.resolved_database_url)
    print(f"database schema at revision {current_revision(settings.resolved_database_url)}")
    return EXIT_OK


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    """Create keys, the database schema and the first admin; safe to run again."""
    from server.db import migrate
    from server.security.identity import PasswordHasher, load_or_create_signing_key
    from server.services.identity import IdentityService, generate_password

    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    from server.audit.store import load_or_create_audit_key
    from server.security.field_cipher import ensure_keyring

    load_or_create_signing_key(settings.resolved_keys_dir, create=True)
    load_or_create_audit_key(settings.resolved_keys_dir, create=True)
    ensure_keyring(settings)
    print(f"keys in {settings.resolved_keys_dir} (existing keys are never overwritten)")
    migrate(settings.resolved_database_url)
    print("database schema up to date")

    async def seed(policy: Any) -> int:
        seeded = await policy.seed_defaults()
        print("default roles and policies installed" if seeded else "policies already present; left unchanged")
        return EXIT_OK

    _run(lambda: _with_policy(settings, seed))

    async def create_admin(session: Any) -> int:
        identity = IdentityService(session, PasswordHasher())
        if await identity.any_user_with_role("sysadmin"):
            print("an administrator already exists; nothing more to do")
            return EXIT_OK
        password = _read_secret_from_stdin("admin password") if args.admin_password_stdin else generate_password()
        await identity.create_user(args.admin_username, roles=["sysadmin"], password=password,
                                   display_name="Administrator")
        print(f"created administrator {args.admin_username!r} with role sysadmin")
        if not args.admin_password_stdin:
            print(f"one-time password (shown only now, store it safely): {password}")
        return EXIT_OK

    return _run(lambda: _with_session(settings, create_admin))


def cmd_serve(settings: Settings, _args: argparse.Namespace) -> int:
    """Start the HTTP server (on SQLite, migrates the database first)."""
    from server.app import create_app
    from server.db import current_revision, migrate
    from server.ops.audit_archive import refuse_schedule_without_rights
    from server.serving import serve

    if settings.is_sqlite:
        migrate(settings.resolved_database_url)
    elif current_revision(settings.resolved_database_url) is None:
        raise StrongroomError("the database has no schema yet; run `strongroom migrate` first")
    refuse_schedule_without_rights(settings)
    create_app(settings)  # fail here, with a clear message, if keys are missing or unsafe
    print(f"Strongroom serving on http://{settings.host}:{settings.port} (API docs at /schema)", flush=True)
    serve(settings)
    return EXIT_OK


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Load realistic demo data (customers, contacts, pipeline, service, activities)."""
    from server.ops.demo import load_demo_data

    return _run(lambda: _with_session(settings, lambda session: load_demo_data(
        session, settings, customers=args.customers, seed=args.seed)))


def cmd_users(settings: Settings, args: argparse.Namespace) -> int:
    """Create, disable, enable users or reset their passwords."""
    from server.services.identity import generate_password

    async def work(identity: Any) -> int:
        if args.users_command == "create":
            password = _read_secret_from_stdin("password") if args.password_stdin else generate_password()
            await identity.create_user(args.username, roles=args.role, password=password,
                                       display_name=args.display_name, manager=args.manager, unit=args.unit)
            print(f"created user {args.username!r} with roles {', '.join(args.role)}")
            if not args.password_stdin:
                print(f"one-time password (shown only now): {password}")
        elif args.users_command in {"disable", "enable"}:
            await identity.set_disabled(args.username, args.users_command == "disable")
            print(f"user {args.username!r} {args.users_command}d")
        elif args.users_command == "update":
            await identity.update_user(args.username, roles=args.role, unit=args.unit, manager=args.manager)
            print(f"user {args.username!r} updated")
        elif args.users_command == "list":
            _print_rows(await identity.list_users())
        elif args.users_command == "handover":
            counts = await identity.handover(args.from_username, args.to_username)
            print("handed over: " + ", ".join(f"{count} {noun}" for noun, count in counts.items()))
        elif args.users_command == "reset-password":
            password = _read_secret_from_stdin("password") if args.password_stdin else generate_password()
            await identity.reset_password(args.username, password)
            print(f"password of {args.username!r} reset")
            if not args.password_stdin:
                print(f"one-time password (shown only now): {password}")
        return EXIT_OK

    return _run(lambda: _with_identity(settings, work))


def cmd_units(settings: Settings, args: argparse.Namespace) -> int:
    """Create and list org units."""

    async def work(identity: Any) -> int:
        if args.units_command == "create":
            await identity.create_unit(args.name, args.parent)
            print(f"org unit {args.name!r} created")
        else:
            _print_rows(await identity.list_units())
        return EXIT_OK

    return _run(lambda: _with_identity(settings, work))


def cmd_clients(settings: Settings, args: argparse.Namespace) -> int:
    """Register, list and disable API clients."""

    async def work(identity: Any) -> int:
        if args.clients_command == "create":
            client = await identity.create_client(args.name, roles=args.role, scopes=args.scope)
            print(f"client_id: {client.client_id}")
            print(f"client_secret (shown only now): {client.client_secret}")
        elif args.clients_command == "disable":
            await identity.set_client_disabled(args.client_id, True)
            print(f"client {args.client_id!r} disabled")
        else:
            _print_rows(await identity.list_clients())
        return EXIT_OK

    return _run(lambda: _with_identity(settings, work))


def cmd_roles(settings: Settings, args: argparse.Namespace) -> int:
    """List and create roles."""

    async def work(policy: Any) -> int:
        if args.roles_command == "create":
            await policy.create_role(args.name, args.description)
            print(f"role {args.name!r} created (no permissions yet: add rules with `strongroom policy add`)")
        else:
            _print_rows(await policy.list_roles())
        return EXIT_OK

    return _run(lambda: _with_policy(settings, work))


def cmd_policy(settings: Settings, args: argparse.Namespace) -> int:
    """List, add and remove policy rules and record scopes."""

    async def work(policy: Any) -> int:
        if args.policy_command == "add":
            rule = await policy.add_rule(args.role, args.object, args.action, "deny" if args.deny else "allow")
            print(f"rule {rule['id']} added")
        elif args.policy_command == "remove":
            await policy.remove_rule(args.rule_id)
            print(f"rule {args.rule_id} removed")
        elif args.policy_command == "scope":
            await policy.set_scope(args.role, args.entity, args.scope)
            print(f"{args.role} sees {args.scope} {args.entity} records")
        else:
            _print_rows(await policy.list_rules())
        return EXIT_OK

    return _run(lambda: _with_policy(settings, work))


def cmd_erase(settings: Settings, args: argparse.Namespace) -> int:
    """Erase a customer by crypto-shredding, as the operator (audited like the API)."""
    import uuid as uuid_module

    from server.db import create_engine, create_session_factory
    from server.security.access import AccessControl
    from server.security.field_cipher import FieldCipher
    from server.security.principal import system_principal
    from server.services.erasure import ErasureService
    from server.services.records import CallContext

    if not args.yes:
        print("strongroom: erasure cannot be undone; add --yes to confirm", file=sys.stderr)
        return EXIT_USAGE
    try:
        customer_id = uuid_module.UUID(args.customer_id)
    except ValueError:
        print("strongroom: CUSTOMER_ID must be a UUID", file=sys.stderr)
        return EXIT_USAGE

    async def work() -> int:
        engine = create_engine(settings.resolved_database_url)
        try:
            factory = create_session_factory(engine)
            access = AccessControl(factory)
            await access.refresh_if_stale(force=True)
            async with factory() as session:
                principal = system_principal(args.actor or "cli")
                context = CallContext(session=session, principal=principal, settings=settings, access=access,
                                      cipher=FieldCipher.from_settings(settings))
                result = await ErasureService(context).erase(customer_id, legal_basis=args.legal_basis)
            print(f"customer {result['id']} erased; {result['destroyed_keys']} data key(s) destroyed")
            return EXIT_OK
        finally:
            await engine.dispose()

    return _run(work)


def cmd_access_review(settings: Settings, args: argparse.Namespace) -> int:
    """Print who can read (clear, masked, hidden) and write which fields, per role."""

    async def work(policy: Any) -> int:
        print(await policy.review(markdown=True))
        return EXIT_OK

    return _run(lambda: _with_policy(settings, work))


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    """Verify (the database, or an export or archive file offline), checkpoint, export, archive, legal holds."""
    from server.audit.checkpoint import public_key_from_pem, public_key_to_pem
    from server.audit.export import verify_export
    from server.audit.store import EventQuery, load_or_create_audit_key, make_checkpoint, verify_trail
    from server.db import write_transaction

    if args.audit_command == "verify" and args.export:
        # Offline: only the export (or archive) file and the public key; no database, no keys directory.
        if not args.public_key:
            print("strongroom: --export/--file needs --public-key", file=sys.stderr)
            return EXIT_USAGE
        try:
            public_key = public_key_from_pem(Path(args.public_key).read_bytes())
            offline = verify_export(args.export, public_key)
        except (OSError, ValueError) as exc:
            print(f"strongroom: cannot verify: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(("intact: " if offline.ok else "BROKEN: ") + offline.detail)
        return EXIT_OK if offline.ok else EXIT_FAILED
    try:
        key = load_or_create_audit_key(settings.resolved_keys_dir, create=False)
    except (OSError, ValueError) as exc:
        print(f"strongroom: cannot load the audit key: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.audit_command == "public-key":
        print(public_key_to_pem(key.public_key()).decode(), end="")
        return EXIT_OK

    async def work(session: Any) -> int:
        from server.audit.sealer import seal_pending

        await seal_pending(session)  # events committed by the server but not yet chained belong in the answer
        if args.audit_command == "verify":
            async with session.begin():
                report = await verify_trail(session, key.public_key(), first=args.first, last=args.last,
                                            sink=settings.resolved_checkpoint_sink)
            print(("intact: " if report.ok else "BROKEN: ") + report.detail)
            if not report.ok:
                print(f"first broken sequence: {report.first_bad_seq}; problem: {report.problem}")
            return EXIT_OK if report.ok else EXIT_FAILED
        if args.audit_command == "checkpoint":
            async with write_transaction(session):
                signed = await make_checkpoint(session, key, settings.resolved_checkpoint_sink)
            print("nothing new to checkpoint" if signed is None else
                  f"checkpoint at {signed.checkpoint.tree_size} events, root {signed.checkpoint.root_hash.hex()}")
            return EXIT_OK
        if args.audit_command == "export":
            return await _audit_export(session, settings, key, EventQuery(subject_id=args.customer), args)
        return await _audit_retention(session, settings, key, args)

    try:
        return _run(lambda: _with_session(settings, work))
    except (OSError, SQLAlchemyError) as exc:
        print(f"strongroom: cannot reach the database: {type(exc).__name__}", file=sys.stderr)
        return EXIT_USAGE


def _cli_actor() -> Any:
    from server.security.principal import system_principal
    from server.services.records import actor_of

    return actor_of(system_principal("cli"))


def _open_for_writing(path: Path) -> TextIO:
    return path.open("w", encoding="utf-8", newline="")


async def _audit_export(session: Any, settings: Settings, key: Any, query: Any, args: argparse.Namespace) -> int:
    """Write a verifiable export (JSONL or CSV) to ``args.out``, streaming; the export is recorded first."""
    from dataclasses import asdict

    from server.audit import store, trail
    from server.audit.export import csv_header, csv_row
    from server.audit.sealer import seal_pending
    from server.audit.tags import AuditAction
    from server.db import write_transaction

    async with write_transaction(session):
        await trail.record(session, action=AuditAction.EXPORT, actor=_cli_actor(), entity="audit",
                           subject_id=query.subject_id,
                           after={**{k: str(v) for k, v in asdict(query).items()
                                     if v is not None and k not in {"limit", "before_seq"}}, "format": args.format})
    await seal_pending(session)
    async with write_transaction(session):
        plan = await store.prepare_export(session, query, key, settings.resolved_checkpoint_sink)
    count = 0
    with _open_for_writing(Path(args.out)) as handle:
        async with session.begin():
            if args.format == "csv":
                handle.write(csv_header())
            async for line in store.export_lines(session, plan, key):
                handle.write(csv_row(line) if args.format == "csv" else line)
                count += 1
    print(f"exported {count} lines to {args.out}")
    return EXIT_OK


def _aware_time(option: str, value: str | None) -> Any:
    from datetime import datetime

    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValueError(f"{option} must be an RFC 3339 time with an offset, e.g. 2026-01-01T00:00:00Z")
    return moment


async def _audit_retention(session: Any, settings: Settings, key: Any, args: argparse.Namespace) -> int:
    """``audit archive``, ``audit archives`` and ``audit hold ...``, as the operator (each recorded)."""
    from server.audit import retention
    from server.db import write_transaction

    if args.audit_command == "archives":
        async with session.begin():
            _print_rows(await retention.list_archives(session))
        return EXIT_OK
    if args.audit_command == "hold":
        if args.hold_command == "list":
            async with session.begin():
                _print_rows(await retention.list_holds(session, active_only=not args.all))
            return EXIT_OK
        async with write_transaction(session):
            if args.hold_command == "place":
                hold = await retention.place_hold(
                    session, actor=_cli_actor(), reason=args.reason, subject_id=args.customer,
                    since=_aware_time("--since", args.since), until=_aware_time("--until", args.until))
            else:
                hold = await retention.release_hold(session, args.hold_id, actor=_cli_actor(), reason=args.reason)
        print(f"legal hold {hold['id']} {'placed' if hold['active'] else 'released'}")
        return EXIT_OK
    directory = retention.archive_dir(settings.data_dir, settings.audit_archive_dir)
    if args.dry_run:
        async with session.begin():
            plan = await retention.plan_archive(
                session, cutoff=retention.expiry_cutoff(settings.audit_retention_days),
                max_events=settings.audit_archive_max_events)
        print(f"would archive {plan.events} event(s) ({plan.first_seq}..{plan.last_seq}); stops: {plan.stopped_by}"
              + (f" (legal hold {plan.hold_id})" if plan.hold_id else ""))
        return EXIT_OK
    async for outcome in retention.archive_expired(
            session, signing_key=key, directory=directory, retention_days=settings.audit_retention_days,
            actor=_cli_actor(), max_events=settings.audit_archive_max_events, sink=settings.resolved_checkpoint_sink):
        if isinstance(outcome, retention.ArchivePlan):
            print(f"nothing more to archive: the retained trail starts at seq {outcome.first_seq}; stops: "
                  f"{outcome.stopped_by}" + (f" (legal hold {outcome.hold_id})" if outcome.hold_id else ""))
        else:
            details = outcome.details
            print(f"archive {details['archive']}: events {details['first_seq']}..{details['last_seq']} "
                  f"({details['events']}) -> {outcome.path} sha256 {details['sha256']}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; ``strongroom --help`` lists every command with one line each."""
    settings_help = "\n".join(f"  {name:<34} {doc}" for name, _default, doc in describe_settings())
    parser = argparse.ArgumentParser(
        prog="strongroom",
        description="Strongroom: on-premises CRM with field security, encryption and a tamper-evident audit trail.",
        epilog=f"settings (environment):\n{settings_help}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="create keys, database and the first admin (idempotent)")
    init.add_argument("--admin-username", default="admin", help="name of the first administrator")
    init.add_argument("--admin-password-stdin", action="store_true", help="read the admin password from stdin")
    init.set_defaults(handler=cmd_init)

    serve = commands.add_parser("serve", help="start the HTTP server")
    serve.add_argument("--host", help="bind address (STRONGROOM_HOST)")
    serve.add_argument("--port", type=int, help="TCP port (STRONGROOM_PORT)")
    serve.add_argument("--workers", type=int, help="worker processes (STRONGROOM_WORKERS)")
    serve.set_defaults(handler=cmd_serve)

    commands.add_parser("migrate", help="upgrade the database schema").set_defaults(handler=cmd_migrate)

    demo = commands.add_parser("demo", help="load realistic demo data")
    demo.add_argument("--customers", type=int, default=300, help="how many customers (default 300)")
    demo.add_argument("--seed", type=int, default=7, help="random seed, for repeatable data")
    demo.set_defaults(handler=cmd_demo)

    users = commands.add_parser("users", help="manage user accounts")
    users.set_defaults(handler=cmd_users)
    user_commands = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    create = user_commands.add_parser("create", help="create a user")
    create.add_argument("username")
    create.add_argument("--role", action="append", required=True, help="a role (repeat for several)")
    create.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    create.add_argument("--display-name", help="full name shown in the console")
    create.add_argument("--manager", help="username of the user's manager")
    create.add_argument("--unit", help="name of the user's org unit")
    change = user_commands.add_parser("update", help="change roles, org unit or manager")
    change.add_argument("username")
    change.add_argument("--role", action="append", help="replace the roles (repeat for several)")
    change.add_argument("--unit", help="org unit name ('' to clear)")
    change.add_argument("--manager", help="manager username ('' to clear)")
    user_commands.add_parser("list", help="list users")
    handover = user_commands.add_parser("handover", help="reassign every record one user owns to another")
    handover.add_argument("from_username")
    handover.add_argument("to_username")
    for action, text in (("disable", "disable a user"), ("enable", "enable a disabled user")):
        user_commands.add_parser(action, help=text).add_argument("username")
    reset = user_commands.add_parser("reset-password", help="set a new password")
    reset.add_argument("username")
    reset.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    units = commands.add_parser("units", help="manage org units (the department tree)")
    units.set_defaults(handler=cmd_units)
    unit_commands = units.add_subparsers(dest="units_command", required=True, metavar="ACTION")
    unit_create = unit_commands.add_parser("create", help="create an org unit")
    unit_create.add_argument("name")
    unit_create.add_argument("--parent", help="parent unit name")
    unit_commands.add_parser("list", help="list org units")

    roles = commands.add_parser("roles", help="list and create roles")
    roles.set_defaults(handler=cmd_roles)
    role_commands = roles.add_subparsers(dest="roles_command", required=True, metavar="ACTION")
    role_create = role_commands.add_parser("create", help="create a role")
    role_create.add_argument("name")
    role_create.add_argument("--description", required=True)
    role_commands.add_parser("list", help="list roles")

    policy = commands.add_parser("policy", help="list and change field-level policy rules")
    policy.set_defaults(handler=cmd_policy)
    policy_commands = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    policy_commands.add_parser("list", help="list rules")
    add = policy_commands.add_parser("add", help="add a rule: ROLE OBJECT ACTION (e.g. support_agent contact.phone "
                                                 "mask)")
    add.add_argument("role")
    add.add_argument("object")
    add.add_argument("action")
    add.add_argument("--deny", action="store_true", help="a deny rule (deny overrides allow)")
    remove = policy_commands.add_parser("remove", help="remove a rule by id")
    remove.add_argument("rule_id", type=int)
    scope = policy_commands.add_parser("scope", help="set a record scope: ROLE ENTITY own|team|unit|all|none")
    scope.add_argument("role")
    scope.add_argument("entity")
    scope.add_argument("scope")

    clients = commands.add_parser("clients", help="manage API clients (client_credentials)")
    clients.set_defaults(handler=cmd_clients)
    client_commands = clients.add_subparsers(dest="clients_command", required=True, metavar="ACTION")
    client_create = client_commands.add_parser("create", help="register a client; prints its secret once")
    client_create.add_argument("name")
    client_create.add_argument("--role", action="append", required=True)
    client_create.add_argument("--scope", action="append", required=True,
                               help="allowed scope, e.g. customers:read, pii:read (repeat)")
    client_commands.add_parser("list", help="list clients")
    client_disable = client_commands.add_parser("disable", help="disable a client and revoke its tokens")
    client_disable.add_argument("client_id")

    audit = commands.add_parser("audit", help="verify, checkpoint, export and archive the audit trail")
    audit.set_defaults(handler=cmd_audit)
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_commands.add_parser("verify", help="verify the trail (exit 0 intact, 1 broken, 2 usage/I-O)")
    verify.add_argument("--from", dest="first", type=int, default=1, help="first sequence number")
    verify.add_argument("--to", dest="last", type=int, help="last sequence number")
    verify.add_argument("--export", "--file", dest="export",
                        help="verify this export or archive file (JSONL or CSV) offline instead of the database")
    verify.add_argument("--public-key", help="PEM public key for --export/--file")
    audit_commands.add_parser("checkpoint", help="sign a checkpoint of the events so far")
    export = audit_commands.add_parser("export", help="export events with proofs (recorded)")
    export.add_argument("--out", required=True, help="output file")
    export.add_argument("--customer", help="only events about this customer and its records")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="JSON lines (default) or CSV")
    audit_commands.add_parser("public-key", help="print the checkpoint public key (PEM)")
    archive = audit_commands.add_parser(
        "archive", help="move expired, un-held events to verifiable archive files (PostgreSQL: as schema owner)")
    archive.add_argument("--dry-run", action="store_true", help="only say what would be archived")
    audit_commands.add_parser("archives", help="list the archives made")
    hold = audit_commands.add_parser("hold", help="legal holds: keep matching events from being archived")
    hold_commands = hold.add_subparsers(dest="hold_command", required=True, metavar="ACTION")
    hold_place = hold_commands.add_parser("place", help="place a hold (by customer and/or time range)")
    hold_place.add_argument("--reason", required=True, help="why (case, matter, request)")
    hold_place.add_argument("--customer", help="hold events about this customer and its records")
    hold_place.add_argument("--since", help="hold events recorded at or after this RFC 3339 time")
    hold_place.add_argument("--until", help="hold events recorded before this RFC 3339 time")
    hold_release = hold_commands.add_parser("release", help="release a hold")
    hold_release.add_argument("hold_id", type=int)
    hold_release.add_argument("--reason", required=True)
    hold_list = hold_commands.add_parser("list", help="list active holds")
    hold_list.add_argument("--all", action="store_true", help="also released holds")

    add_key_commands(commands)
    from server.ops.backup_cli import add_backup_commands

    add_backup_commands(commands)
    # The erase command runs through the erasure service, so the operator's erasure is audited like the API's.
    erase = commands.add_parser("erase", help="crypto-shred a customer's encrypted data (irreversible, audited)")
    erase.add_argument("customer_id", help="id of the customer (the data subject)")
    erase.add_argument("--legal-basis", required=True, help="why, e.g. 'GDPR Art. 17 request 2026-114'")
    erase.add_argument("--actor", help="who asked for it, as the audit trail names the operator (default: cli)")
    erase.add_argument("--yes", action="store_true", help="confirm: the erasure cannot be undone")
    erase.set_defaults(handler=cmd_erase)

    commands.add_parser("access-review", help="print the access review (who sees which fields)").set_defaults(
        handler=cmd_access_review)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``strongroom`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        overrides = {key: getattr(args, key, None) for key in ("host", "port", "workers")}
        settings = load_settings(os.environ, **overrides)
        return int(args.handler(settings, args))
    except SettingsError as exc:
        print(f"strongroom: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StrongroomError as exc:
        print(f"strongroom: {exc.detail}", file=sys.stderr)
        return EXIT_FAILED
    except (FileNotFoundError, PermissionError, ValueError) as exc:
        print(f"strongroom: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader went away (`strongroom keys status | head`): no traceback, and none again when Python
        # flushes stdout at exit (the recipe of the `signal` module's documentation).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
