"""``strongroom keys init|add-version|discard-version|rotate|reencrypt|status|reapply-ledger``.

``add_key_commands(commands)`` registers them on the ``strongroom`` parser's subparsers. Handlers take
``(settings, args)`` and return an exit code, like the other commands.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.config import Settings
from server.security.crypto import CryptoError

if TYPE_CHECKING:
    from pathlib import Path

    from server.ops.keys import DiscardResult, RotateResult

__all__ = ["add_key_commands", "cmd_keys"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
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


def _rotation_summary(rotated: RotateResult) -> str:
    if rotated.added_version:
        verb = "added KEK version"
    elif rotated.activated_staged:
        verb = "activated staged KEK version"
    else:
        verb = "KEK version"
    return (f"{verb} {rotated.kek_version}; rewrapped {rotated.rewrapped} DEKs in {rotated.seconds:.1f}s "
            f"({rotated.rate:.0f}/s)")


def _discard_summary(discarded: DiscardResult, where: Path) -> list[str]:
    version, current = discarded.kek_version, discarded.current_kek_version
    out = [f"discarded {'staged' if discarded.was_staged else 'older'} KEK version {version} from {where}; it now "
           f"holds {', '.join(map(str, discarded.kek_versions_left))} (current {current}); recorded as a key_rotate "
           "event"]
    if discarded.was_staged:
        out.append("next: replace every copy of this keyring with this file (a copy that keeps version "
                   f"{version} unwraps nothing in this database, but it is key material you meant to take back); "
                   f"the next `strongroom keys add-version` stages a new key as version {version}")
    else:
        out.append(f"backups taken before the rotation away from version {version} finished need it: they no longer "
                   "restore with this keyring (`strongroom backup verify` names the version they lack); replace "
                   f"every copy of the keyring, keyring backups included, for version {version} to be gone")
    return out


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    """Create the keyring, stage, activate and discard KEK versions, rotate KEKs or DEKs, report key status,
    re-apply erasures after a restore."""
    from server.ops import keys
    from server.security.field_cipher import ensure_keyring, key_provider, keyring_path

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
        if action == "add-version":
            provider = key_provider(settings)
            version = provider.stage_kek_version()
            print(f"staged KEK version {version} in {keyring_path(settings)}: held, not current; nothing is "
                  "wrapped under it yet")
            print(f"next: replace every copy of this keyring (other hosts, the Kubernetes Secret) and restart "
                  f"or roll them, then run `strongroom keys rotate --to-version {version}`")
            return EXIT_OK
        if action == "discard-version":
            return _discard_version(settings, args)
        if action == "rotate":
            with keys.rich_progress() as progress:
                rotated = _with_database(settings, lambda sessions, cipher: keys.rotate_kek(
                    sessions, cipher, add_version=not args.resume, to_version=args.to_version,
                    batch_size=args.batch_size, progress=progress))
            print(_rotation_summary(rotated))
            if args.to_version is not None:
                print(f"KEK version {rotated.kek_version} is now current in {keyring_path(settings)}: replace every "
                      "copy of the keyring with this file again, so every host wraps new DEKs under it")
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
            try:
                destroyed = _with_database(settings, keys.reapply_ledger)
            except ValueError as error:
                return _fail(f"the erasure ledger was not re-applied: {error}")
            print(f"re-applied the erasure ledger: {len(destroyed)} DEKs destroyed again (recorded as an erase "
                  "event)")
            return EXIT_OK
    except KeyboardInterrupt:
        return _fail(f"interrupted; progress so far is saved: run `strongroom keys {action}"
                     f"{' --resume' if action == 'rotate' else ''}` again to finish")
    except CryptoError as error:
        return _fail(str(error))
    return _fail(f"unknown keys action {action!r}")


def _discard_version(settings: Settings, args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from server.ops import keys
    from server.security.field_cipher import keyring_path

    try:
        discarded = _with_database(settings, lambda sessions, cipher: keys.discard_kek_version(
            sessions, cipher, args.version, confirmed=args.yes))
    except keys.DiscardNeedsConfirmation as refusal:
        print(f"strongroom: {refusal}", file=sys.stderr)
        return EXIT_USAGE
    except SQLAlchemyError as error:
        return _fail(f"the database could not be read or written ({error.__class__.__name__}); nothing was "
                     "discarded")
    except KeyboardInterrupt:
        return _fail(f"interrupted; run `strongroom keys status` to see whether KEK version {args.version} is still "
                     "held")
    for line in _discard_summary(discarded, keyring_path(settings)):
        print(line)
    return EXIT_OK


def add_key_commands(commands: Any) -> None:
    """Register ``keys`` (init, add-version, discard-version, rotate, reencrypt, status, reapply-ledger) on
    ``commands``.

    Args:
        commands: The ``argparse`` subparsers object of the ``strongroom`` parser.
    """
    keys = commands.add_parser("keys", help="column-encryption keys: init, add-version, discard-version, rotate, "
                               "reencrypt, status")
    keys.set_defaults(handler=cmd_keys)
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    actions.add_parser("init", help="create the keyring file (0600) if absent; never overwrites")
    actions.add_parser(
        "add-version", help="stage a new KEK version in the keyring file without making it current (step 1 of a "
        "rotation with copied keyrings)")
    discard = actions.add_parser(
        "discard-version", help="remove KEK version N, not current and wrapping no DEK, from the keyring file: a "
        "staged version taken back, or (with --yes) an older one that old backups may still need")
    discard.add_argument("version", type=int, metavar="N", help="the KEK version to discard")
    discard.add_argument("--yes", action="store_true", help="confirm discarding an older version: backups taken "
                         "before the rotation away from it no longer restore with this keyring")
    rotate = actions.add_parser("rotate", help="add a KEK version, or activate a staged one, and rewrap every DEK "
                                "(online)")
    target = rotate.add_mutually_exclusive_group()
    target.add_argument("--resume", action="store_true",
                        help="no new KEK version: finish rewrapping DEKs still under an older one")
    target.add_argument("--to-version", type=int, metavar="N",
                        help="make the staged KEK version N (from `keys add-version`) current instead of adding one, "
                        "then rewrap onto it; N already current resumes")
    rotate.add_argument("--batch-size", type=int, default=500, help="DEKs per transaction (default 500)")
    reencrypt = actions.add_parser(
        "reencrypt", help="give every customer a new DEK and reseal its values (online, resumable)")
    reencrypt.add_argument("--batch-size", type=int, default=50, help="customers per transaction (default 50)")
    actions.add_parser("status", help="KEK versions in use, DEK states, values per DEK generation")
    actions.add_parser("reapply-ledger", help="after a restore: destroy again every DEK the erasure ledger lists")

