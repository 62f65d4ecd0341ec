"""Compliance use cases for the auditor role: query, verify, checkpoint and export the trail."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.audit import store, trail
from server.audit.checkpoint import public_key_to_pem
from server.audit.sealer import seal_pending
from server.audit.tags import AuditAction
from server.db import write_transaction
from server.services.policy_admin import authorise_admin
from server.services.records import CallContext


class AuditService:
    """Auditor-only access to the trail; exporting is itself recorded."""

    def __init__(self, context: CallContext, signing_key: Ed25519PrivateKey) -> None:
        self.context = context
        self.session = context.session
        self.signing_key = signing_key

    async def _require(self, permission: str) -> None:
        """Authorise, then seal every committed event, so the answer covers everything done before the call."""
        await authorise_admin(self.session, self.context.access, self.context.principal, permission,
                              self.context.request)
        await seal_pending(self.session)

    async def events(self, query: store.EventQuery) -> dict[str, Any]:
        """Events matching the filters, newest first, with the cursor of the next page."""
        await self._require("audit:read")
        async with self.session.begin():
            events, next_cursor = await store.query_events(self.session, query)
        return {"items": events, "next_cursor": str(next_cursor) if next_cursor is not None else None}

    async def verify(self, *, first: int = 1, last: int | None = None) -> store.TrailReport:
        """Verify the chain and the newest checkpoint."""
        await self._require("audit:verify")
        async with self.session.begin():
            return await store.verify_trail(self.session, self.signing_key.public_key(), first=first, last=last,
                                            sink=self.context.settings.resolved_checkpoint_sink)

    async def checkpoint(self) -> dict[str, Any]:
        """Sign a checkpoint of the events so far."""
        await self._require("audit:verify")
        async with write_transaction(self.session):
            signed = await store.make_checkpoint(self.session, self.signing_key,
                                                 self.context.settings.resolved_checkpoint_sink)
        if signed is None:
            return {"created": False}
        return {"created": True, "tree_size": signed.checkpoint.tree_size,
                "root_hash": signed.checkpoint.root_hash.hex()}

    async def export(self, query: store.EventQuery) -> Iterator[str]:
        """A verifiable export of the matching events (the export is recorded first)."""
        await self._require("audit:export")
        async with write_transaction(self.session):
            await trail.record(self.session, action=AuditAction.EXPORT, actor=self.context.actor, entity="audit",
                               after={key: str(value) for key, value in asdict(query).items() if value is not None},
                               request=self.context.request)
        await seal_pending(self.session)
        async with write_transaction(self.session):
            return iter(list(await store.export_events(self.session, query, self.signing_key,
                                                       self.context.settings.resolved_checkpoint_sink)))

    def public_key_pem(self) -> str:
        """The checkpoint verification key, for offline verification."""
        return public_key_to_pem(self.signing_key.public_key()).decode()
