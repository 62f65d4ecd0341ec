"""``strongroom keys init|rotate|reencrypt|status|reapply-ledger`` and ``strongroom erase``.

``add_key_commands(commands)`` registers them on the ``strongroom`` parser's subparsers. Handlers take
``(settings, args)`` and return an exit code, like the other commands.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.config import Settings
from server.security.crypto import CryptoError

__all__ = ["add_key_commands", "cmd_erase", "cmd_keys"]

EXIT_OK, EXIT_FAILED = 0, 1
_T = TypeVar("_T")


def _fail(message: str) -> int:
    print(f"strongroom: {message}", file=sys.stderr)
    return EXIT_FAILED


def _with_database(settings: Settings, work: Callable[[async_sessionmaker[AsyncSession], Any], Awaitable[_T]]) -> _T:
    """Run ``work(sessions, cipher)`` against the configured database, then dispose of the engine."""
    from server.db import create_engine, create_session_factory
    from server.security.field_cipher import FieldCipher

    cipher = FieldCipher.from_settings(settings)

    async def run() -> _T:
        engine = create_engine(settings.resolved_database_url)
        try:
            return await work(create_session_factory(engine), cipher)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    """Create the keyring, rotate KEKs or DEKs, report key status, re-apply erasures after a restore."""
    from server.ops import keys
    from server.security.field_cipher import ensure_keyring, keyring_path

    action = args.keys_command
    try:
        if action == "init":
            created = ensure_keyring(settings)
            where = keyring_path(settings)
            print(f"keyring {where} created (mode 0600); back it up apart from the database" if created
                  else f"keyring {where} already present and private; left unchanged")
            return EXIT_OK
        if action == "status":
            status = _with_database(settings, keys.key_status)
            keys.print_lines(status.lines())
            return EXIT_OK
        if action == "rotate":
            with keys.rich_progress() as progress:
                rotated = _with_database(settings, lambda sessions, cipher: keys.rotate_kek(
                    sessions, cipher, add_version=not args.resume, batch_size=args.batch_size, progress=progress))
            verb = "added KEK version" if rotated.added_version else "KEK version"
            print(f"{verb} {rotated.kek_version}; rewrapped {rotated.rewrapped} DEKs "
                  f"in {rotated.seconds:.1f}s ({rotated.rate:.0f}/s)")
            if rotated.remaining:
                return _fail(f"{rotated.remaining} DEKs still under an older KEK; run `strongroom keys rotate "
                             "--resume`")
            print("every DEK is wrapped under the current KEK; older KEK versions stay in the keyring for "
                  "restoring old backups")
            return EXIT_OK
        if action == "reencrypt":
            with keys.rich_progress() as progress:
                result = _with_database(settings, lambda sessions, cipher: keys.reencrypt(
                    sessions, cipher, batch_subjects=args.batch_size, progress=progress))
            print(f"{'resumed' if result.resumed else 'started'} re-encryption job {result.job_id}: "
                  f"{result.subjects} subjects, {result.values_resealed} values resealed in {result.seconds:.1f}s "
                  f"({result.rate:.0f} values/s)")
            if result.values_unreadable:
                return _fail(f"{result.values_unreadable} values could not be opened and were left as they are "
                             f"(subjects: {', '.join(map(str, result.unreadable_subjects[:10]))})")
            return EXIT_OK
        if action == "reapply-ledger":

            async def reapply(sessions: async_sessionmaker[AsyncSession], cipher: Any) -> list[uuid.UUID]:
                from server.db import write_transaction

                async with sessions() as session, write_transaction(session):
                    destroyed: list[uuid.UUID] = await cipher.reapply_ledger(session)
                return destroyed

            destroyed = _with_database(settings, reapply)
            print(f"re-applied the erasure ledger: {len(destroyed)} DEKs destroyed again")
            return EXIT_OK
    except KeyboardInterrupt:
        return _fail(f"interrupted; progress so far is saved: run `strongroom keys {action}"
                     f"{' --resume' if action == 'rotate' else ''}` again to finish")
    except CryptoError as error:
        return _fail(str(error))
    return _fail(f"unknown keys action {action!r}")


def cmd_erase(settings: Settings, args: argparse.Namespace) -> int:
    """Crypto-shred a customer: destroy its data keys so every encrypted value of it becomes unreadable."""
    from server.domain.customers.models import Customer

    if not args.yes:
        return _fail("erasure cannot be undone: repeat with --yes to confirm")
    try:
        subject_id = uuid.UUID(args.customer_id)
    except ValueError:
        return _fail(f"{args.customer_id!r} is not a customer id")
    actor = args.actor or f"cli:{getpass.getuser()}"

    async def erase(sessions: async_sessionmaker[AsyncSession], cipher: Any) -> list[uuid.UUID] | None:
        from server.db import write_transaction

        async with sessions() as session, write_transaction(session):
            if (await session.execute(select(Customer.id).where(Customer.id == subject_id))).first() is None:
                return None
            destroyed: list[uuid.UUID] = await cipher.erase_subject(
                session, subject_id, actor=actor, legal_basis=args.legal_basis)
            return destroyed

    try:
        destroyed = _with_database(settings, erase)
    except CryptoError as error:
        return _fail(str(error))
    if destroyed is None:
        return _fail(f"no customer {subject_id}")
    print(f"customer {subject_id} erased: {len(destroyed)} data keys destroyed "
          f"({', '.join(map(str, destroyed)) or 'none left'}); recorded in the erasure ledger")
    return EXIT_OK


def add_key_commands(commands: Any) -> None:
    """Register ``keys`` (init, rotate, reencrypt, status, reapply-ledger) and ``erase`` on ``commands``.

    Args:
        commands: The ``argparse`` subparsers object of the ``strongroom`` parser.
    """
    keys = commands.add_parser("keys", help="column-encryption keys: init, rotate, reencrypt, status")
    keys.set_defaults(handler=cmd_keys)
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    actions.add_parser("init", help="create the keyring file (0600) if absent; never overwrites")
    rotate = actions.add_parser("rotate", help="add a KEK version and rewrap every DEK (online)")
    rotate.add_argument("--resume", action="store_true",
                        help="no new KEK version: finish rewrapping DEKs still under an older one")
    rotate.add_argument("--batch-size", type=int, default=500, help="DEKs per transaction (default 500)")
    reencrypt = actions.add_parser(
        "reencrypt", help="give every customer a new DEK and reseal its values (online, resumable)")
    reencrypt.add_argument("--batch-size", type=int, default=50, help="customers per transaction (default 50)")
    actions.add_parser("status", help="KEK versions in use, DEK states, values per DEK generation")
    actions.add_parser("reapply-ledger", help="after a restore: destroy again every DEK the erasure ledger lists")

    erase = commands.add_parser("erase", help="crypto-shred a customer's encrypted data (irreversible)")
    erase.add_argument("customer_id", help="id of the customer (the data subject)")
    erase.add_argument("--legal-basis", required=True, help="why, e.g. 'GDPR Art. 17 request 2026-114'")
    erase.add_argument("--actor", help="who asked for it (default: cli:<login name>)")
    erase.add_argument("--yes", action="store_true", help="confirm: the erasure cannot be undone")
    erase.set_defaults(handler=cmd_erase)
