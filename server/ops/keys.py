"""Key jobs: KEK rotation (rewrap every DEK), DEK rotation (re-encrypt values under new DEKs), key status.

All three run online, beside serving processes, in short transactions:

* ``rotate_kek`` adds a KEK version to the keyring file (under its lock; other processes pick the new file up
  when they next create a DEK, and when they meet a DEK wrapped under a version they do not hold) and rewraps
  every DEK wrapped under an older version, in batches, until none is left. Run again with
  ``add_version=False`` to finish a rotation that was interrupted. Where hosts hold *copies* of the keyring,
  rotation takes two steps: the provider's ``stage_kek_version`` adds the version without making it current,
  the copies are replaced, and ``rotate_kek(to_version=...)`` activates it and rewraps.
* ``reencrypt`` gives every data subject whose active DEK is older than the job's cutoff a new DEK and
  reseals all its values (the old DEK is kept, ``retired``: audit events and backups still hold values under
  it); then it seals every value still outside its subject's active DEK (plaintext from before encryption was
  enabled, or a value a concurrent writer sealed under the previous DEK). One transaction per batch of
  subjects; the cutoff and counters are kept in ``key_jobs``, and what is left is derived from which DEK each
  stored value names, so an interrupted run (Ctrl-C, crash) resumes where it stopped.
* ``discard_kek_version`` removes a KEK version that is not current and wraps no DEK in the database from the
  keyring file: a staged version taken back before activation, or (confirmed) an older one at the end of a
  rotation, which old backups then no longer restore with.
* ``key_status`` reports KEK versions in use, DEK states, and stored values per DEK generation.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Table, and_, bindparam, case, exists, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import trail
from server.audit.tags import ActorType, AuditAction, AuditOutcome
from server.db import write_transaction
from server.security.crypto import SEALED_PREFIX, CryptoError, DataKey, KeyringError, WrappedDek
from server.security.data_keys import TOKEN_PREFIX_CHARS, DataKeyRow, DekState, KeyJob, token_prefix
from server.security.field_cipher import ERASED, DekInfo, EncryptedEntity, FieldCipher

__all__ = [
    "REENCRYPT_JOB",
    "DiscardNeedsConfirmation",
    "DiscardResult",
    "JobProgress",
    "KeyStatus",
    "NullProgress",
    "ReencryptResult",
    "RotateResult",
    "discard_kek_version",
    "key_status",
    "print_lines",
    "reencrypt",
    "rich_progress",
    "rotate_kek",
]

REENCRYPT_JOB = "reencrypt"
_MAX_ROTATE_PASSES = 10
_data_keys: Table = DataKeyRow.__table__  # type: ignore[assignment]
_key_jobs: Table = KeyJob.__table__  # type: ignore[assignment]
Sessions = async_sessionmaker[AsyncSession]


class JobProgress(Protocol):
    """Where a job reports progress (a progress bar, or nothing)."""

    def start(self, description: str, total: int) -> None:
        """A phase begins with ``total`` units of work (an estimate: work may appear while it runs)."""
        ...

    def advance(self, amount: int) -> None:
        """``amount`` units are done."""
        ...


class NullProgress:
    """Reports nothing."""

    def start(self, description: str, total: int) -> None:
        """Ignore."""

    def advance(self, amount: int) -> None:
        """Ignore."""


class _RichProgress:
    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._task: Any = None

    def start(self, description: str, total: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=self._progress.tasks[-1].total)
        self._task = self._progress.add_task(description, total=max(total, 1))

    def advance(self, amount: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, amount)


@contextmanager
def rich_progress(enabled: bool | None = None) -> Iterator[JobProgress]:
    """A ``rich`` progress bar on standard error; nothing when it is not a terminal (or ``enabled`` is False)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if enabled is None:
        enabled = console.is_terminal
    if not enabled:
        yield NullProgress()
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        yield _RichProgress(progress)


def _now() -> datetime:
    return datetime.now(UTC)


KEY_JOB_ACTOR = trail.AuditActor(ActorType.SYSTEM, None, "strongroom keys")


async def _record_key_event(sessions: Sessions, reason: str, after: dict[str, Any]) -> None:
    """A key_rotate event: what a key job did (counts and versions, never key material)."""
    async with sessions() as session, write_transaction(session):
        await trail.record(session, action=AuditAction.KEY_ROTATE, actor=KEY_JOB_ACTOR, entity="key",
                           reason=reason, after=after)


# ---------------------------------------------------------------------------------------------- KEK rotation


@dataclass(frozen=True, slots=True)
class RotateResult:
    """What a KEK rotation did.

    Attributes:
        kek_version: The version every DEK is rewrapped onto (current at the end).
        added_version: A new version was added and made current by this run.
        activated_staged: A staged version was made current by this run.
        rewrapped: DEKs rewrapped by this run.
        remaining: DEKs still under an older version at the end.
        seconds: Time spent rewrapping.
    """

    kek_version: int
    added_version: bool
    rewrapped: int
    remaining: int
    seconds: float
    activated_staged: bool = False

    @property
    def rate(self) -> float:
        """DEKs rewrapped per second."""
        return self.rewrapped / self.seconds if self.seconds > 0 else 0.0


async def _count_wrapped(session: AsyncSession, condition: ColumnElement[bool]) -> int:
    """Wrapped (not destroyed) DEKs meeting ``condition``."""
    query = select(func.count()).select_from(_data_keys).where(_data_keys.c.wrapped.is_not(None), condition)
    return int((await session.execute(query)).scalar_one())


async def _count_stale(sessions: Sessions, current: int) -> int:
    async with sessions() as session:
        return await _count_wrapped(session, _data_keys.c.kek_version < current)


async def rotate_kek(
    sessions: Sessions,
    cipher: FieldCipher,
    *,
    add_version: bool = True,
    to_version: int | None = None,
    batch_size: int = 500,
    progress: JobProgress | None = None,
) -> RotateResult:
    """Make a KEK version current and rewrap every DEK wrapped under an older one.

    The version is, in order of precedence: ``to_version`` (a staged version, activated now; the current
    version itself resumes), a new one (``add_version``, the default), or the current one (``add_version=False``
    finishes an interrupted rotation).

    Each batch locks its DEK rows (``FOR UPDATE`` on PostgreSQL, the write lock on SQLite), rewraps them under
    the current KEK and commits, so serving processes keep sealing and opening throughout. Passes repeat until
    no DEK is left under an older version (a process that had not yet seen the new keyring file may wrap one
    more under the old version meanwhile).

    Raises:
        KeyringError: The keyring cannot be rotated here (it comes from the environment: rotate the file the
            secret was made from, then update the secret); ``to_version`` is not held or older than the current
            version; ``add_version`` while a staged version waits to be activated.
    """
    progress = progress or NullProgress()
    provider = cipher.provider
    activated = False
    if to_version is not None:
        activated = provider.activate_kek_version(to_version)
        version, add_version = to_version, False
    elif add_version:
        version = provider.add_kek_version()
    else:
        cipher.refresh_keyring()
        version = provider.current_kek_version()
    cipher.refresh_keyring()
    started = time.perf_counter()
    rewrapped = 0
    for _pass in range(_MAX_ROTATE_PASSES):
        stale = await _count_stale(sessions, version)
        if stale == 0:
            break
        progress.start(f"rewrap DEKs under KEK v{version}", stale)
        last_id: uuid.UUID | None = None
        while True:
            async with sessions() as session, write_transaction(session):
                query = (
                    select(_data_keys.c.id, _data_keys.c.wrapped)
                    .where(_data_keys.c.wrapped.is_not(None), _data_keys.c.kek_version < version)
                    .order_by(_data_keys.c.id)
                    .limit(batch_size)
                    .with_for_update()
                )
                if last_id is not None:
                    query = query.where(_data_keys.c.id > last_id)
                rows = (await session.execute(query)).all()
                if not rows:
                    break
                params = []
                for dek_id, wrapped in rows:
                    try:
                        new = provider.rewrap(WrappedDek.from_bytes(wrapped))
                    except CryptoError as error:
                        raise KeyringError(f"DEK {dek_id} cannot be rewrapped: {error}") from None
                    params.append({"b_id": dek_id, "b_wrapped": new.to_bytes(), "b_kek": new.kek_version})
                await session.execute(
                    update(_data_keys)
                    .where(_data_keys.c.id == bindparam("b_id"), _data_keys.c.wrapped.is_not(None))
                    .values(wrapped=bindparam("b_wrapped"), kek_version=bindparam("b_kek")),
                    params,
                )
            last_id = rows[-1].id
            rewrapped += len(rows)
            progress.advance(len(rows))
    remaining = await _count_stale(sessions, version)
    await _record_key_event(sessions, "KEK rotation", {"kek_version": version, "added_version": add_version,
                                                       "activated_staged_version": activated,
                                                       "rewrapped": rewrapped, "remaining": remaining})
    return RotateResult(version, add_version, rewrapped, remaining, time.perf_counter() - started, activated)


# ------------------------------------------------------------------------------------------ KEK discarding


class DiscardNeedsConfirmation(Exception):
    """Discarding an older KEK version destroys what old backups need to be restored: the operator confirms.

    The message says what is lost; nothing was changed.
    """


@dataclass(frozen=True, slots=True)
class DiscardResult:
    """What discarding a KEK version did.

    Attributes:
        kek_version: The version removed from the keyring file.
        was_staged: It was staged (never current here); otherwise it was an older, retired version.
        current_kek_version: The current version (unchanged).
        kek_versions_left: The versions the keyring holds now.
    """

    kek_version: int
    was_staged: bool
    current_kek_version: int
    kek_versions_left: tuple[int, ...]


def _still_wrapping(version: int, current: int, wrapped: int) -> str:
    if version > current:
        return (f"{wrapped} DEK(s) in the database are wrapped under KEK version {version}, which this keyring holds "
                "only as staged: another copy of the keyring made it current (a rotation to it was started there, "
                f"and may have been interrupted); finish it with `strongroom keys rotate --to-version {version}` "
                "using that keyring, then replace this copy with it; nothing was discarded")
    return (f"KEK version {version} still wraps {wrapped} DEK(s) in the database: the rotation to version {current} "
            "is unfinished; finish it with `strongroom keys rotate --resume`, then discard version "
            f"{version}; nothing was discarded")


def _confirmation_needed(version: int, current: int) -> str:
    return (f"KEK version {version} is older than the current version {current}; no DEK in the database is wrapped "
            "under it any more, but backups taken before the rotation away from it finished hold DEKs wrapped under "
            "it: once it is gone from every copy of the keyring (keyring backups included), those backups restore "
            "with their encrypted fields undecryptable. Discard it only when every copy of the keyring names "
            f"version {current} as current (a host whose copy still names {version} current wraps new DEKs under it) "
            "and no backup you keep needs it; repeat with --yes to confirm. Nothing was discarded")


async def discard_kek_version(sessions: Sessions, cipher: FieldCipher, version: int, *,
                              confirmed: bool = False) -> DiscardResult:
    """Remove a KEK version that is not current, and under which no DEK in the database is wrapped, from the file.

    A staged version (never activated: a mistaken ``add-version``, a copy that leaked before activation, an
    aborted change window) is removed as asked. An older version is the last step of a rotation and destroys
    what backups taken before it need, so it is removed only when ``confirmed``. The check of the database, the
    ``key_rotate`` event and the change of the file happen in one write transaction (on SQLite it holds the
    write lock, so no DEK can be wrapped under the version in between); the file is rewritten atomically under
    its lock before the event commits, and a file that cannot be changed records nothing.

    Raises:
        KeyringError: The version is not held, is current, still wraps DEKs in the database, or the keyring cannot
            be changed here (``STRONGROOM_KEYRING``, a file that cannot be rewritten). Nothing was changed.
        DiscardNeedsConfirmation: An older version without ``confirmed``. Nothing was changed.
    """
    cipher.refresh_keyring()
    provider = cipher.provider
    held, current = tuple(provider.kek_versions()), provider.current_kek_version()
    if version not in held:
        raise KeyringError(f"KEK version {version} is not in the keyring (it holds {', '.join(map(str, held))}); "
                           "nothing was discarded")
    if version == current:
        stale = await _count_stale(sessions, current)
        unfinished = (f"; {stale} DEK(s) are still under an older version: KEK versions only move forward, so finish "
                      f"the rotation to it with `strongroom keys rotate --to-version {version}`") if stale else ""
        raise KeyringError(f"KEK version {version} is current: new DEKs are wrapped under it, so it cannot be "
                           f"discarded{unfinished}")
    staged = version > current
    async with sessions() as session, write_transaction(session):
        wrapped = await _count_wrapped(session, _data_keys.c.kek_version == version)
        if wrapped:
            raise KeyringError(_still_wrapping(version, current, wrapped))
        if not staged and not confirmed:
            raise DiscardNeedsConfirmation(_confirmation_needed(version, current))
        left = tuple(held_version for held_version in held if held_version != version)
        await trail.record(session, action=AuditAction.KEY_ROTATE, actor=KEY_JOB_ACTOR, entity="key",
                           reason="KEK version discarded",
                           after={"kek_version": version, "was_staged": staged, "current_kek_version": current,
                                  "kek_versions_left": list(left)})
        try:
            provider.remove_kek_version(version)
        except OSError as error:  # the keys directory is not writable, the disk is full ...
            raise KeyringError(f"the keyring file could not be rewritten ({error.strerror or error}); nothing was "
                               "discarded") from None
    return DiscardResult(version, staged, current, tuple(provider.kek_versions()))


# ---------------------------------------------------------------------------------------------- DEK rotation


@dataclass(slots=True)
class ReencryptResult:
    """What a re-encryption run did (this run only; the job row holds the totals across resumed runs)."""

    job_id: int
    cutoff: datetime
    resumed: bool
    subjects: int = 0
    values_resealed: int = 0
    values_unreadable: int = 0
    finished: bool = False
    seconds: float = 0.0
    unreadable_subjects: list[uuid.UUID] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Values resealed per second."""
        return self.values_resealed / self.seconds if self.seconds > 0 else 0.0


async def _open_job(sessions: Sessions) -> tuple[int, datetime, bool]:
    async with sessions() as session, write_transaction(session):
        row = (await session.execute(
            select(_key_jobs.c.id, _key_jobs.c.cutoff)
            .where(_key_jobs.c.kind == REENCRYPT_JOB, _key_jobs.c.finished_at.is_(None))
            .order_by(_key_jobs.c.id.desc()).limit(1)
        )).first()
        if row is not None:
            return int(row.id), row.cutoff, True
        now = _now()
        job = KeyJob(kind=REENCRYPT_JOB, cutoff=now, started_at=now, updated_at=now, subjects_done=0,
                     values_resealed=0, values_unreadable=0)
        session.add(job)
        await session.flush()
        return job.id, now, False


def _needs_work(layout: EncryptedEntity, table: Table, active: Any) -> ColumnElement[bool]:
    """Rows of ``table`` holding a value outside the subject's active DEK that can still be resealed."""
    destroyed = _data_keys.alias("destroyed_key")
    clauses = []
    for column_name in layout.columns.values():
        column = table.c[column_name]
        prefix = func.substr(column, 1, TOKEN_PREFIX_CHARS)
        plaintext = func.substr(column, 1, len(SEALED_PREFIX)) != SEALED_PREFIX
        elsewhere = and_(
            or_(active.c.token_prefix.is_(None), prefix != active.c.token_prefix),
            ~exists().where(destroyed.c.token_prefix == prefix, destroyed.c.state == DekState.DESTROYED),
        )
        clauses.append(and_(column.is_not(None), column != "", or_(plaintext, elsewhere)))
    return or_(*clauses)


async def _subjects_with_stray_values(
    session: AsyncSession, cipher: FieldCipher, after: uuid.UUID | None, limit: int
) -> list[uuid.UUID]:
    found: set[uuid.UUID] = set()
    for layout in cipher.entities:
        table: Table = layout.model.__table__
        subject = table.c[layout.subject_column]
        active = _data_keys.alias("active_key")
        query = (
            select(subject).distinct()
            .select_from(table.outerjoin(active, and_(active.c.subject_id == subject,
                                                      active.c.state == DekState.ACTIVE)))
            .where(_needs_work(layout, table, active))
            .order_by(subject).limit(limit)
        )
        if after is not None:
            query = query.where(subject > after)
        found.update((await session.execute(query)).scalars().all())
    return sorted(found)[:limit]


async def _subjects_to_rotate(session: AsyncSession, cutoff: datetime, limit: int) -> list[uuid.UUID]:
    query = (
        select(_data_keys.c.subject_id)
        .where(_data_keys.c.state == DekState.ACTIVE, _data_keys.c.created_at < cutoff)
        .order_by(_data_keys.c.subject_id).limit(limit)
    )
    return list((await session.execute(query)).scalars().all())


async def _count_subjects_to_rotate(sessions: Sessions, cutoff: datetime) -> int:
    async with sessions() as session:
        query = select(func.count()).select_from(_data_keys).where(
            _data_keys.c.state == DekState.ACTIVE, _data_keys.c.created_at < cutoff)
        return int((await session.execute(query)).scalar_one())


@dataclass(slots=True)
class _BatchOutcome:
    resealed: int
    unreadable: dict[uuid.UUID, int]


async def _reencrypt_batch(
    session: AsyncSession, cipher: FieldCipher, subjects: Sequence[uuid.UUID], cutoff: datetime | None
) -> _BatchOutcome:
    """Reseal every value of these subjects under their active DEK, first replacing active DEKs older than
    ``cutoff``. Values under destroyed DEKs are left alone; values that do not open are counted per subject."""
    deks = await cipher.lock_subject_deks(session, subjects)
    states = {info.token_prefix: info.state for infos in deks.values() for info in infos}
    active: dict[uuid.UUID, DataKey] = {}
    replacing: dict[uuid.UUID, DekInfo] = {}
    for subject, infos in deks.items():
        cipher.forget_active(session, subject)
        current = next((info for info in infos if info.state == DekState.ACTIVE), None)
        if current is None:
            continue
        if cutoff is not None and current.created_at < cutoff:
            replacing[subject] = current
        elif current.key is not None:
            active[subject] = current.key
    generations = {subject: max(info.generation for info in deks[subject]) + 1 for subject in replacing}
    active.update(await cipher.replace_deks(session, replacing, generations))
    for dek in active.values():
        states[token_prefix(dek.id, dek.suite)] = DekState.ACTIVE
    unreadable: dict[uuid.UUID, int] = {}
    resealed = 0
    for layout in cipher.entities:
        table: Table = layout.model.__table__
        names = list(layout.columns)
        subject_column = table.c[layout.subject_column]
        rows: list[Any] = []
        for chunk in _chunks(subjects):
            rows.extend((await session.execute(
                select(table.c.id, subject_column, *(table.c[layout.columns[name]] for name in names))
                .where(subject_column.in_(chunk))
                .order_by(table.c.id)
                .with_for_update()
            )).all())
        # Values sealed under another subject's DEK (a record moved between customers) open too.
        await cipher.prepare_tokens(session, (value for row in rows for value in row[2:]
                                              if isinstance(value, str) and value[:TOKEN_PREFIX_CHARS] not in states))
        changes: dict[frozenset[str], list[dict[str, Any]]] = {}
        for row in rows:
            record_id, subject = row[0], row[1]
            changed: dict[str, Any] = {}
            for position, name in enumerate(names, start=2):
                value = row[position]
                if value is None or value == "":
                    continue
                sealed = value.startswith(SEALED_PREFIX)
                prefix = value[:TOKEN_PREFIX_CHARS]
                target = active.get(subject)
                if sealed and ((target is not None and prefix == token_prefix(target.id, target.suite))
                               or states.get(prefix) == DekState.DESTROYED):
                    continue
                plaintext = cipher.open_in(layout, name, record_id, value) if sealed else value
                if not isinstance(plaintext, str):
                    if plaintext is not ERASED:
                        unreadable[subject] = unreadable.get(subject, 0) + 1
                    continue
                if target is None:
                    target = active[subject] = await cipher.active_dek(session, subject)
                changed[layout.columns[name]] = cipher.seal_value(target, layout, name, record_id, plaintext)
                if name in layout.blind_indexed:
                    changed[f"{name}_bidx"] = cipher.blind_index_or_none(layout.name, name, plaintext)
            if changed:
                resealed += sum(1 for key in changed if not key.endswith("_bidx"))
                changes.setdefault(frozenset(changed), []).append(
                    {"b_id": record_id, **{f"v_{key}": value for key, value in changed.items()}})
        for keys, params in changes.items():
            # updated_at is set to itself: resealing changes no value a user could see.
            values: dict[str, Any] = {key: bindparam(f"v_{key}") for key in sorted(keys)}
            values["updated_at"] = table.c.updated_at
            await session.execute(update(table).where(table.c.id == bindparam("b_id")).values(values), params)
    return _BatchOutcome(resealed, unreadable)


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def reencrypt(
    sessions: Sessions,
    cipher: FieldCipher,
    *,
    batch_subjects: int = 50,
    progress: JobProgress | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> ReencryptResult:
    """Move every subject's values to a new DEK (resuming an unfinished job if there is one).

    Args:
        sessions: Session factory of the database.
        cipher: The process's field cipher.
        batch_subjects: Subjects per transaction.
        progress: Progress reporting (``rich_progress()`` in the CLI).
        on_batch: Called with the batch number after each committed batch (raising stops the run; the job
            resumes from there next time).

    Returns:
        What this run did; ``finished`` is False only if a subject's values could not all be opened.
    """
    progress = progress or NullProgress()
    started = time.perf_counter()
    job_id, cutoff, resumed = await _open_job(sessions)
    result = ReencryptResult(job_id=job_id, cutoff=cutoff, resumed=resumed)
    await _record_key_event(sessions, "DEK rotation resumed" if resumed else "DEK rotation started",
                            {"job": job_id, "cutoff": cutoff.isoformat()})
    batch_number = 0

    async def run_batch(subjects: Sequence[uuid.UUID], rotate_before: datetime | None) -> None:
        nonlocal batch_number
        async with sessions() as session, write_transaction(session):
            outcome = await _reencrypt_batch(session, cipher, subjects, rotate_before)
            resealed, unreadable = outcome.resealed, sum(outcome.unreadable.values())
            await session.execute(update(_key_jobs).where(_key_jobs.c.id == job_id).values(
                subjects_done=_key_jobs.c.subjects_done + len(subjects),
                values_resealed=_key_jobs.c.values_resealed + resealed,
                values_unreadable=_key_jobs.c.values_unreadable + unreadable,
                updated_at=_now(),
            ))
        result.subjects += len(subjects)
        result.values_resealed += resealed
        result.values_unreadable += unreadable
        result.unreadable_subjects.extend(outcome.unreadable)
        progress.advance(len(subjects))
        batch_number += 1
        if on_batch is not None:
            on_batch(batch_number)

    progress.start("new DEKs, values resealed", await _count_subjects_to_rotate(sessions, cutoff))
    while True:
        async with sessions() as session:
            subjects = await _subjects_to_rotate(session, cutoff, batch_subjects)
        if not subjects:
            break
        await run_batch(subjects, cutoff)

    progress.start("values outside their subject's DEK", 0)
    after: uuid.UUID | None = None
    while True:
        async with sessions() as session:
            subjects = await _subjects_with_stray_values(session, cipher, after, batch_subjects)
        if not subjects:
            break
        await run_batch(subjects, None)
        after = subjects[-1]

    result.finished = not result.unreadable_subjects
    async with sessions() as session, write_transaction(session):
        await session.execute(update(_key_jobs).where(_key_jobs.c.id == job_id).values(
            finished_at=_now(), updated_at=_now()))
        await trail.record(session, action=AuditAction.KEY_ROTATE, actor=KEY_JOB_ACTOR, entity="key",
                           reason="DEK rotation finished",
                           after={"job": job_id, "subjects": result.subjects, "values_resealed": result.values_resealed,
                                  "values_unreadable": result.values_unreadable,
                                  "unreadable_subjects": [str(s) for s in result.unreadable_subjects[:100]]})
    result.seconds = time.perf_counter() - started
    return result


# ---------------------------------------------------------------------------------------------------- status


@dataclass(slots=True)
class KeyStatus:
    """Key material in use, for ``strongroom keys status``.

    Attributes:
        current_kek_version: The KEK version new DEKs are wrapped under.
        keyring_kek_versions: KEK versions the keyring holds (older, current and staged ones).
        deks_per_kek_version: Wrapped (not destroyed) DEKs per KEK version.
        deks_per_state: DEKs per state (active, retired, destroyed).
        values_per_generation: Stored values per DEK generation and state, e.g. ``"generation 2 (active)"``;
            also ``"plaintext"`` (not yet sealed) and ``"unknown key"``.
        open_job: The unfinished re-encryption job, if any (id, cutoff, counters).
    """

    current_kek_version: int
    keyring_kek_versions: tuple[int, ...]
    deks_per_kek_version: dict[int, int]
    deks_per_state: dict[str, int]
    values_per_generation: dict[str, int]
    open_job: dict[str, Any] | None

    @property
    def older_kek_versions(self) -> tuple[int, ...]:
        """Held versions older than the current one (they still unwrap DEKs and backups not rewrapped yet)."""
        return tuple(version for version in self.keyring_kek_versions if version < self.current_kek_version)

    @property
    def staged_kek_versions(self) -> tuple[int, ...]:
        """Held versions newer than the current one: they unwrap, but nothing new is wrapped under them."""
        return tuple(version for version in self.keyring_kek_versions if version > self.current_kek_version)

    @property
    def discardable_kek_versions(self) -> tuple[int, ...]:
        """Held versions, not current, under which no DEK in the database is wrapped: ``keys discard-version``
        accepts them (an older one only with ``--yes``)."""
        return tuple(version for version in self.keyring_kek_versions
                     if version != self.current_kek_version and not self.deks_per_kek_version.get(version))

    def _kek_lines(self) -> list[str]:
        def listed(versions: Sequence[int]) -> str:
            return ", ".join(map(str, versions)) or "none"

        out = [f"KEK: current version {self.current_kek_version}; older versions held: "
               f"{listed(self.older_kek_versions)}; staged (held, not current): {listed(self.staged_kek_versions)}"]
        discardable = self.discardable_kek_versions
        for version in self.staged_kek_versions:
            out.append(f"KEK version {version} is staged: once every copy of this keyring holds it, run "
                       f"`strongroom keys rotate --to-version {version}`" + (
                           f"; to take it back instead, `strongroom keys discard-version {version}`"
                           if version in discardable else ""))
        in_use = {version: count for version, count in self.deks_per_kek_version.items() if count}
        unfinished = [version for version in self.older_kek_versions if version in in_use]
        if unfinished:
            out.append(f"KEK version(s) {listed(unfinished)} still wrap {sum(in_use[v] for v in unfinished)} DEKs: "
                       f"the rotation to version {self.current_kek_version} is unfinished; run `strongroom keys "
                       "rotate --resume`")
        retired = [version for version in self.older_kek_versions if version in discardable]
        if retired:
            out.append(f"older KEK version(s) {listed(retired)} wrap no DEK in this database: `strongroom keys "
                       "discard-version N --yes` destroys one, after which backups taken before the rotation away "
                       "from it cannot be restored with this keyring")
        missing = sorted(set(in_use) - set(self.keyring_kek_versions))
        if missing:
            out.append(f"warning: {sum(in_use[v] for v in missing)} DEKs are wrapped under KEK version(s) "
                       f"{listed(missing)}, which this keyring does not hold: their values are undecryptable with "
                       "it; install the keyring they were rotated with")
        activated_elsewhere = sorted(set(in_use) & set(self.staged_kek_versions))
        if activated_elsewhere:
            out.append(f"warning: {sum(in_use[v] for v in activated_elsewhere)} DEKs are wrapped under KEK "
                       f"version(s) {listed(activated_elsewhere)}, which this keyring holds only as staged: another "
                       "copy made it current; replace this copy with that keyring")
        return out

    def lines(self) -> list[str]:
        """Human-readable report."""
        out = [
            *self._kek_lines(),
            "DEKs per KEK version: " + (", ".join(
                f"v{version}: {count}" for version, count in sorted(self.deks_per_kek_version.items())) or "none"),
            "DEKs per state: " + (", ".join(
                f"{state}: {count}" for state, count in sorted(self.deks_per_state.items())) or "none"),
            "values per DEK generation: " + (", ".join(
                f"{key}: {count}" for key, count in sorted(self.values_per_generation.items())) or "none"),
        ]
        if self.open_job is not None:
            job = self.open_job
            out.append(f"re-encryption job {job['id']} unfinished (cutoff {job['cutoff']:%Y-%m-%d %H:%M:%S}Z, "
                       f"{job['subjects_done']} subjects, {job['values_resealed']} values so far): run "
                       "`strongroom keys reencrypt` to resume")
        return out


# ----------------------------------------------------------------------------------- erasure ledger re-application

LISTED_DEK_IDS = 1000  # a re-application event names at most this many destroyed keys (it always counts them all)


async def reapply_ledger(sessions: Sessions, cipher: FieldCipher) -> list[uuid.UUID]:
    """Destroy again every DEK the erasure ledger lists (after restoring a database by other means than
    ``strongroom backup restore``, which does this itself), with an ``erase`` event in the same transaction.

    A ledger that cannot be read (or whose MAC chain is broken) destroys nothing and is recorded as a failed
    ``erase`` event of its own before the error is raised.
    """
    try:
        async with sessions() as session, write_transaction(session):
            destroyed: list[uuid.UUID] = await cipher.reapply_ledger(session)
            await trail.record(session, action=AuditAction.ERASE, actor=KEY_JOB_ACTOR, entity="key",
                               reason="erasure ledger re-applied", after={
                                   "deks_destroyed": len(destroyed),
                                   "dek_ids": [str(dek_id) for dek_id in destroyed[:LISTED_DEK_IDS]]})
    except (CryptoError, ValueError) as error:
        async with sessions() as session, write_transaction(session):
            await trail.record(session, action=AuditAction.ERASE, actor=KEY_JOB_ACTOR, entity="key",
                               outcome=AuditOutcome.ERROR, reason="erasure ledger re-applied",
                               after={"error": str(error)[:500]})
        raise
    return destroyed


async def key_status(sessions: Sessions, cipher: FieldCipher) -> KeyStatus:
    """Count KEK versions, DEK states and values per DEK generation (scans the encrypted columns)."""
    cipher.refresh_keyring()
    provider = cipher.provider
    async with sessions() as session:
        per_kek: dict[Any, Any] = dict((await session.execute(
            select(_data_keys.c.kek_version, func.count()).where(_data_keys.c.wrapped.is_not(None))
            .group_by(_data_keys.c.kek_version)
        )).all())
        per_state: dict[Any, Any] = dict((await session.execute(
            select(_data_keys.c.state, func.count()).group_by(_data_keys.c.state))).all())
        values: dict[str, int] = {}
        for layout in cipher.entities:
            table: Table = layout.model.__table__
            for column_name in layout.columns.values():
                column = table.c[column_name]
                sealed = case((func.substr(column, 1, len(SEALED_PREFIX)) == SEALED_PREFIX, literal(1)),
                              else_=literal(0))
                inner = (
                    select(sealed.label("sealed"), _data_keys.c.generation, _data_keys.c.state)
                    .select_from(table.outerjoin(
                        _data_keys, _data_keys.c.token_prefix == func.substr(column, 1, TOKEN_PREFIX_CHARS)))
                    .where(column.is_not(None), column != "")
                    .subquery()
                )
                query = select(inner.c.sealed, inner.c.generation, inner.c.state, func.count()).group_by(
                    inner.c.sealed, inner.c.generation, inner.c.state)
                for is_sealed, generation, state, count in (await session.execute(query)).all():
                    if not is_sealed:
                        key = "plaintext"
                    elif generation is None:
                        key = "unknown key"
                    else:
                        key = f"generation {generation} ({state})"
                    values[key] = values.get(key, 0) + int(count)
        job_row = (await session.execute(
            select(_key_jobs).where(_key_jobs.c.kind == REENCRYPT_JOB, _key_jobs.c.finished_at.is_(None))
            .order_by(_key_jobs.c.id.desc()).limit(1)
        )).mappings().first()
    return KeyStatus(
        current_kek_version=provider.current_kek_version(),
        keyring_kek_versions=tuple(provider.kek_versions()),
        deks_per_kek_version={int(version): int(count) for version, count in per_kek.items()},
        deks_per_state={str(state): int(count) for state, count in per_state.items()},
        values_per_generation=values,
        open_job=dict(job_row) if job_row is not None else None,
    )


def print_lines(lines: Sequence[str]) -> None:
    """Print a report to standard output."""
    for line in lines:
        sys.stdout.write(line + "\n")

