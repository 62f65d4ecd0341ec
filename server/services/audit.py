"""Compliance use cases for the auditor role: query, verify, checkpoint and export the trail; legal holds.

Every answer first seals every committed event (so it covers everything done before the call), and every
query, verification, export and legal-hold change is itself recorded in the trail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import retention, store
from server.audit.checkpoint import public_key_to_pem
from server.audit.export import csv_header, csv_row
from server.audit.sealer import events_waiting, seal_pending
from server.audit.tags import AuditAction
from server.db import write_transaction
from server.errors import Conflict
from server.services.policy_admin import authorise_admin
from server.services.records import CallContext, record_unchanging

READ: Final = "audit:read"
VERIFY: Final = "audit:verify"
EXPORT: Final = "audit:export"
# Placing or releasing a legal hold only keeps events from leaving the database: whoever may take the trail out
# (export) may also keep it in. A dedicated permission would need a new audit action in the policy model.
HOLD: Final = EXPORT
AUDIT_ENTITY: Final = "audit"

ExportFormat = Literal["jsonl", "csv"]
T = TypeVar("T")


def _filters(query: store.EventQuery) -> dict[str, str]:
    return {key: str(value) for key, value in asdict(query).items()
            if value is not None and key not in {"limit", "before_seq"}}


class AuditService:
    """Auditor-only access to the trail; every use of it is itself recorded."""

    def __init__(self, context: CallContext, signing_key: Ed25519PrivateKey,
                 session_factory: async_sessionmaker[AsyncSession] | None = None) -> None:
        self.context = context
        self.session = context.session
        self.signing_key = signing_key
        self.session_factory = session_factory

    async def _authorise(self, permission: str) -> None:
        await authorise_admin(self.session, self.context.access, self.context.principal, permission,
                              self.context.request)

    async def _require(self, permission: str) -> None:
        """Authorise, then seal every committed event, so the answer covers everything done before the call."""
        await self._authorise(permission)
        await seal_pending(self.session)

    async def _read_sealed(self, read: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """``read`` in a transaction that sees every event committed before the call.

        A seal pass is needed only when events wait for one, and mostly none do (the sealer runs as they commit):
        the look is made in the reading transaction, and only when it finds some are they sealed first. On
        PostgreSQL a seal pass is a transaction of its own that takes the chain lock (and waits while the sealer
        holds it). Events committed after the look are after the call began: the answer need not cover them.
        """
        async with self.session.begin():
            if not await events_waiting(self.session):
                return await read(self.session)
        await seal_pending(self.session)
        async with self.session.begin():
            return await read(self.session)

    async def _record(self, action: AuditAction, *, reason: str | None, after: Mapping[str, Any],
                      entity: str = AUDIT_ENTITY, entity_id: str | None = None, subject_id: str | None = None) -> None:
        """Record a use of the trail before the answer is returned (it changes nothing: group-committed)."""
        await record_unchanging(self.context, action=action, entity=entity, entity_id=entity_id,
                                subject_id=subject_id, reason=reason, after=after)

    async def events(self, query: store.EventQuery) -> dict[str, Any]:
        """Events matching the filters, newest first, with the cursor of the next page (the query is recorded)."""
        await self._authorise(READ)
        events, next_cursor = await self._read_sealed(lambda session: store.query_events(session, query))
        await self._record(AuditAction.READ, reason="query", subject_id=query.subject_id,
                           after={"filters": _filters(query), "cursor": query.before_seq, "results": len(events)})
        return {"items": events, "next_cursor": str(next_cursor) if next_cursor is not None else None}

    async def verify(self, *, first: int = 1, last: int | None = None) -> store.TrailReport:
        """Verify the chain and the newest checkpoint (the run and its verdict are recorded)."""
        await self._require(VERIFY)
        async with self.session.begin():
            report = await store.verify_trail(self.session, self.signing_key.public_key(), first=first, last=last,
                                              sink=self.context.settings.resolved_checkpoint_sink)
        await self._record(AuditAction.READ, reason="verify",
                           after={"from": first, "to": last, "ok": report.ok, "events": report.events,
                                  "problem": report.problem, "first_bad_seq": report.first_bad_seq})
        return report

    async def checkpoint(self) -> dict[str, Any]:
        """Sign a checkpoint of the events so far."""
        await self._require(VERIFY)
        async with write_transaction(self.session):
            signed = await store.make_checkpoint(self.session, self.signing_key,
                                                 self.context.settings.resolved_checkpoint_sink)
        if signed is None:
            return {"created": False}
        return {"created": True, "tree_size": signed.checkpoint.tree_size,
                "root_hash": signed.checkpoint.root_hash.hex()}

    async def export(self, query: store.EventQuery, export_format: ExportFormat = "jsonl") -> AsyncIterator[str]:
        """A verifiable export of the matching events, streamed (the export is recorded first).

        The checkpoint and the Merkle tree are fixed here; the events are read in batches while the answer is
        sent, on a session of their own (the request's may be closed by then).
        """
        if self.session_factory is None:
            raise RuntimeError("a streamed export needs a session factory")
        await self._require(EXPORT)
        await self._record(AuditAction.EXPORT, reason=None, subject_id=query.subject_id,
                           after={**_filters(query), "format": export_format})
        await seal_pending(self.session)
        async with write_transaction(self.session):
            try:
                plan = await store.prepare_export(self.session, query, self.signing_key,
                                                  self.context.settings.resolved_checkpoint_sink)
            except ValueError as error:
                raise Conflict(str(error)) from None
        return self._stream(plan, self.session_factory, export_format)

    async def _stream(self, plan: store.ExportPlan, session_factory: async_sessionmaker[AsyncSession],
                      export_format: ExportFormat) -> AsyncIterator[str]:
        async with session_factory() as session, session.begin():
            if export_format == "csv":
                yield csv_header()
            async for line in store.export_lines(session, plan, self.signing_key):
                yield csv_row(line) if export_format == "csv" else line

    async def holds(self, *, active_only: bool = False) -> list[dict[str, Any]]:
        """The legal holds (the query is recorded)."""
        await self._require(READ)
        async with self.session.begin():
            holds = await retention.list_holds(self.session, active_only=active_only)
        await self._record(AuditAction.READ, reason="legal holds",
                           after={"active_only": active_only, "results": len(holds)})
        return holds

    async def place_hold(self, *, reason: str, customer_id: str | None, since: datetime | None,
                         until: datetime | None) -> dict[str, Any]:
        """Place a legal hold: matching events stay in the database until it is released (recorded)."""
        await self._require(HOLD)
        async with write_transaction(self.session):
            return await retention.place_hold(self.session, actor=self.context.actor, reason=reason,
                                              subject_id=customer_id, since=since, until=until,
                                              request=self.context.request)

    async def release_hold(self, hold_id: int, *, reason: str) -> dict[str, Any]:
        """Release a legal hold (recorded)."""
        await self._require(HOLD)
        async with write_transaction(self.session):
            return await retention.release_hold(self.session, hold_id, actor=self.context.actor, reason=reason,
                                                request=self.context.request)

    async def archives(self) -> list[dict[str, Any]]:
        """The archives made so far (the query is recorded)."""
        await self._require(READ)
        async with self.session.begin():
            archives = await retention.list_archives(self.session)
        await self._record(AuditAction.READ, reason="archives", after={"results": len(archives)})
        return archives

    async def archive_file(self, archive_id: int) -> tuple[Path, str]:
        """The file of an archive and its recorded SHA-256 (the download is recorded as an export)."""
        await self._require(EXPORT)
        settings = self.context.settings
        async with self.session.begin():
            path, sha256 = await retention.archive_file(
                self.session, retention.archive_dir(settings.data_dir, settings.audit_archive_dir), archive_id)
        await self._record(AuditAction.EXPORT, reason="archive file", entity=store.ARCHIVE_ENTITY,
                           entity_id=str(archive_id), after={"file": path.name, "sha256": sha256})
        return path, sha256

    def public_key_pem(self) -> str:
        """The checkpoint verification key, for offline verification."""
        return public_key_to_pem(self.signing_key.public_key()).decode()
