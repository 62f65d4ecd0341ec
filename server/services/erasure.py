"""Erasure of a data subject by crypto-shredding: the customer's data key is destroyed, everywhere at once."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy import update

from server.audit import trail
from server.audit.tags import AuditAction
from server.db import write_transaction
from server.domain.activities import Activity
from server.domain.contacts import Contact
from server.errors import ErasureLedgerUnavailable, Forbidden, InvalidInput
from server.security.crypto import ErasureLedgerError
from server.services.customers import CustomerService
from server.services.records import CallContext

ERASED = "[erased]"

log = structlog.get_logger("strongroom.erasure")
MIN_LEGAL_BASIS = 5


class ErasureService:
    """Erase one customer and its contacts: keys destroyed, clear personal text wiped, tombstone kept."""

    def __init__(self, context: CallContext) -> None:
        self.context = context
        self.session = context.session

    async def erase(self, customer_id: uuid.UUID, *, legal_basis: str) -> dict[str, Any]:
        """Destroy the subject's data keys and wipe what is stored in clear, in one audited transaction.

        Encrypted values in tables, in audit event values and in every backup become unreadable, because they
        were all sealed with the destroyed key; the audit chain still verifies, because it hashes ciphertext.
        The erasure ledger beside the keyring records it so a restore of an older backup can re-apply it.
        """
        customers = CustomerService(self.context)
        try:
            customers.require("delete")  # erasure is the strongest delete: the same permission, nothing less
        except Forbidden as error:
            await customers.record_denied(error, customer_id)
            raise
        basis = legal_basis.strip()
        if len(basis) < MIN_LEGAL_BASIS:
            raise InvalidInput("a legal basis is required (e.g. 'GDPR Art. 17 request 2026-114')",
                               field="legal_basis")
        async with write_transaction(self.session):
            customer = await customers.load(customer_id, for_update=True)
            try:
                destroyed = await self.context.cipher.erase_subject(
                    self.session, customer.id, actor=self.context.principal.name, legal_basis=basis)
            except (ErasureLedgerError, OSError) as error:
                # Without its ledger line an erasure would come undone at the next restore of an older backup:
                # refuse it (the transaction rolls back, no key is destroyed) and tell the operator why.
                log.error("erasure_ledger_unavailable", error=str(error))  # noqa: TRY400 - the cause suffices
                raise ErasureLedgerUnavailable(
                    "the erasure ledger beside the keyring cannot be written or does not verify (the server log "
                    "says why); nothing was erased") from None
            # What is not encrypted but may identify the person is overwritten; the record stays as a tombstone
            # so that references, history and the audit trail keep their shape.
            customer.name, customer.notes, customer.tags = ERASED, None, []
            await self.session.execute(update(Contact).where(Contact.customer_id == customer.id).values(
                name=ERASED, title=None, consent_source=None, version=Contact.version + 1))
            await self.session.execute(update(Activity).where(Activity.customer_id == customer.id).values(
                summary=ERASED, version=Activity.version + 1))
            await self.session.flush()
            await trail.record(
                self.session, action=AuditAction.ERASE, actor=self.context.actor, entity="customer",
                entity_id=customer.id, subject_id=customer.id, reason=basis, request=self.context.request,
                after={"destroyed_keys": [str(key) for key in destroyed],
                       "ledger_head": self.context.cipher.ledger.head()},
            )
        return {"id": str(customer_id), "erased": True, "destroyed_keys": len(destroyed)}
