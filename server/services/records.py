"""The unit of work shared by every CRM entity: get, list, create, update, delete in one transaction each.

Per-entity services subclass ``RecordService`` and supply the business rules through three hooks:
``build`` (a new record from validated values), ``change`` (apply a PATCH) and ``check_delete``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any, ClassVar, Generic

import structlog
from sqlalchemy import ColumnElement, false, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from server.audit import trail
from server.audit.group_commit import AuditWriteFailed, GroupCommitWriter
from server.audit.tags import ActorType, AuditAction, AuditOutcome
from server.audit.trail import AuditActor, RequestInfo
from server.config import Settings
from server.db import read_transaction, write_transaction
from server.domain.base import Base
from server.domain.fields import Classification, EntitySpec, FieldSpec, MaskFormat
from server.domain.repository import Keyset, ModelT, Repository, SortOrder
from server.errors import AuditUnavailable, Conflict, Forbidden, InvalidInput, KeyUnavailable, NotFound
from server.security.access import AccessControl
from server.security.crypto import NormalisationError, UnknownKey
from server.security.field_cipher import EncryptedEntity, FieldCipher, Unreadable
from server.security.identity.models import User
from server.security.policy import FieldMask, RecordScope, Visibility, render_mask
from server.security.principal import Principal
from server.services import idempotency
from server.services.pagination import ListQuery, encode_cursor

log = structlog.get_logger("strongroom.records")

# Scope criteria by (service class, scope, owner ids or unit ids): at most this many are kept.
_SCOPE_CRITERIA_MAX = 4096
_SCOPE_CRITERIA: dict[tuple[type[Any], RecordScope, frozenset[uuid.UUID]], list[ColumnElement[bool]]] = {}

@dataclass(frozen=True, slots=True)
class CallContext:
    """What every service call needs: the transaction's session, the caller, the settings and access control."""

    session: AsyncSession
    principal: Principal
    settings: Settings
    access: AccessControl
    cipher: FieldCipher
    request: RequestInfo = field(default_factory=RequestInfo)
    # The server's group-commit writer for read events; None (command-line jobs) gives each its own transaction.
    events: GroupCommitWriter | None = None

    @property
    def actor(self) -> AuditActor:
        """The principal as the audit trail records it."""
        return actor_of(self.principal)


def actor_of(principal: Principal) -> AuditActor:
    """An audit actor for ``principal``."""
    return AuditActor(type=ActorType(principal.kind.value), id=str(principal.id), name=principal.name,
                      roles=principal.roles)


async def record_unchanging(context: CallContext, **details: Any) -> None:
    """Record an event about an act that changed nothing (a read, a reveal, an export, an audit query).

    In the server the event joins other requests' in one transaction (group commit); elsewhere it gets a
    transaction of its own. Either way the caller answers only once the event is committed.
    """
    row = trail.pending_event(actor=context.actor, request=context.request, **details)
    if context.events is not None:
        try:
            await context.events.write(row)
        except AuditWriteFailed as failure:  # the writer logged nothing of it: its cause is named here
            log.warning("audit_write_failed", error_type=type(failure.__cause__).__name__)
            raise AuditUnavailable("the audit trail could not record this request, so nothing of it is shown; "
                                   "retry the request") from failure
        return
    async with write_transaction(context.session):
        await trail.write_pending(context.session, [row])


SENSITIVE = frozenset({Classification.PII, Classification.SENSITIVE})
SEALED_PREFIX = "sr:"
BOOKKEEPING_FIELDS = frozenset({"version", "updated_at"})  # move on every change; the event itself says when


MIN_REVEAL_REASON = 10


def render_decimal(value: Decimal) -> str:
    """Money as a plain decimal string with at least two places ("1200.50"), never exponent notation."""
    exponent = value.normalize().as_tuple().exponent
    places = max(2, -exponent if isinstance(exponent, int) else 2)
    return f"{value:.{places}f}"


class RecordService(Generic[ModelT]):
    """CRUD for one entity, with its rules supplied by the subclass hooks."""

    entity: ClassVar[EntitySpec]
    model: ClassVar[type[Base]]

    def __init__(self, context: CallContext) -> None:
        self.context = context
        self.session = context.session
        self.principal = context.principal
        self.repository: Repository[ModelT] = Repository(context.session, self.model)  # type: ignore[arg-type]
        self.mask: FieldMask = context.access.field_mask(context.principal, self.entity)
        self.cipher = context.cipher
        self.encrypted = context.cipher.encrypted_fields(self.entity)
        self._projection_plan: list[tuple[FieldSpec, bool, EncryptedEntity | None]] | None = None

    # -- hooks -------------------------------------------------------------------------------------------------

    async def build(self, values: dict[str, Any]) -> ModelT:
        """Validate ``values`` and return a new record (not yet added)."""
        raise NotImplementedError

    async def change(self, record: ModelT, changes: dict[str, Any]) -> None:
        """Validate ``changes`` and apply them to ``record``."""
        raise NotImplementedError

    async def check_delete(self, record: ModelT) -> None:
        """Raise Conflict when ``record`` cannot be deleted (it has dependents)."""

    def owned_by(self, owner_ids: Collection[uuid.UUID]) -> ColumnElement[bool]:
        """Criteria for records owned by one of ``owner_ids`` (entities without an owner follow their customer)."""
        return self.repository.among(self.repository.column("owner_id"), owner_ids)

    async def scope(self) -> list[ColumnElement[bool]]:
        """The record-scope criteria of the principal's roles, applied inside every query (404 outside).

        The criteria are built once per entity and owner set and then reused, so the repository can reuse
        the statements made from them: building and cache-keying a scoped statement cost about 60 us a request.
        """
        scope = self.mask.scope
        principal, access = self.principal, self.context.access
        if scope is RecordScope.ALL:
            return []
        owners: frozenset[uuid.UUID]
        if scope is RecordScope.OWN:
            owners = frozenset((principal.id,))
        elif scope is RecordScope.TEAM:
            owners = await access.team_of(principal.id)
        elif scope is RecordScope.UNIT and principal.unit_id is not None:
            owners = access.unit_subtree(principal.unit_id)
        else:
            return [false()]
        key = (type(self), scope, owners)
        criteria = _SCOPE_CRITERIA.get(key)
        if criteria is None:
            if scope is RecordScope.UNIT:
                criteria = [self.owned_by(select(User.id).where(User.org_unit_id.in_(owners)))]  # type: ignore[arg-type]
            else:
                criteria = [self.owned_by(owners)]
            if len(_SCOPE_CRITERIA) >= _SCOPE_CRITERIA_MAX:
                _SCOPE_CRITERIA.clear()
            _SCOPE_CRITERIA[key] = criteria
        return list(criteria)

    async def reference(self, service_type: type[RecordService[Any]], record_id: uuid.UUID, field: str) -> Any:
        """A record another one points at, looked up inside the caller's scope for that entity.

        Linking to a record the caller cannot see is refused exactly as linking to one that does not exist
        (422), so references can neither attach data to someone else's records nor probe for their existence.
        """
        other = service_type(self.context)
        record = await other.repository.get(record_id, *await other.scope())
        if record is None:
            raise InvalidInput(f"{field} does not refer to an existing record", field=field)
        return record

    def require(self, action: str) -> None:
        """Refuse with 403 naming the action when the roles (or token scopes) do not allow it."""
        if not self.mask.can(action):
            raise Forbidden(f"not allowed to {action} {self.entity.name} records", action=action,
                            entity=self.entity.name)

    def require_writable(self, action: str, values: Mapping[str, Any]) -> None:
        """Refuse the whole write, naming every field the principal may not set; nothing is applied."""
        self.require(action)
        refused = sorted(name for name in values if name not in self.mask.writable)
        if refused:
            raise Forbidden(f"not allowed to write {', '.join(f'{self.entity.name}.{n}' for n in refused)}",
                            fields=refused, action=action, entity=self.entity.name)

    def require_clear(self, names: Iterable[str], purpose: str) -> None:
        """Filtering or sorting on a field is allowed only if the principal reads it in clear (no oracle)."""
        refused = sorted(name for name in names if not self.mask.readable_in_clear(name))
        if refused:
            raise Forbidden(f"not allowed to {purpose} by {', '.join(refused)}", fields=refused)

    def project(self, record: ModelT, *, reveal: str | None = None) -> dict[str, Any]:
        """The record as the principal may see it: clear, masked by the field's format, or absent."""
        projected: dict[str, Any] = {}
        unreadable: dict[str, str] = {}
        open_in, record_id = self.cipher.open_in, record.id  # type: ignore[attr-defined]
        for spec, masked, layout in self._projection():
            name = spec.name
            value = getattr(record, name)
            if layout is not None:
                value = open_in(layout, name, record_id, value)
                if isinstance(value, Unreadable):
                    # One value that cannot be decrypted (erased subject, damaged or moved ciphertext) is reported
                    # for that field alone; the rest of the record is served.
                    unreadable[name] = value.reason
                    projected[name] = None
                    continue
            if masked and name != reveal:
                projected[name] = _masked(spec, value)
            else:
                projected[name] = render_decimal(value) if isinstance(value, Decimal) else value
        if unreadable:
            projected["unreadable_fields"] = unreadable
        return projected

    def _projection(self) -> list[tuple[FieldSpec, bool, EncryptedEntity | None]]:
        """The visible fields in declaration order: spec, whether masked, and the encrypted layout if sealed.

        Worked out once per service (one request), not per field of every row of a list.
        """
        if self._projection_plan is None:
            layout = self.cipher.entity(self.entity.name)
            self._projection_plan = [
                (spec, visibility is Visibility.MASKED, layout if spec.name in self.encrypted else None)
                for spec in self.entity.fields
                if (visibility := self.mask.visibility.get(spec.name, Visibility.HIDDEN)) is not Visibility.HIDDEN
            ]
        return self._projection_plan

    def plain(self, record: ModelT, name: str) -> Any:
        """A field's value in clear: decrypted if the field is encrypted (``prepare`` the records first)."""
        if name in self.encrypted:
            return self.cipher.open_field(self.entity, record, name)
        return getattr(record, name)

    def data_subject(self, record: ModelT) -> uuid.UUID:
        """The customer whose data key seals this record's encrypted fields."""
        subject: uuid.UUID = getattr(record, "customer_id", None) or getattr(record, "id")  # noqa: B009
        return subject

    async def prepare(self, records: Iterable[ModelT]) -> None:
        """Load the data keys the records' encrypted values need (one query), so projection stays synchronous."""
        if self.encrypted:
            await self.cipher.prepare(self.session, records, self.entity)

    async def seal(self, record: ModelT, names: Iterable[str]) -> None:
        """Replace the clear values of the named encrypted fields with ciphertext bound to this record."""
        to_seal = [name for name in names if name in self.encrypted]
        if to_seal:
            try:
                await self.cipher.seal_fields(self.session, self.entity, record, self.data_subject(record), to_seal)
            except UnknownKey:
                # This host's keyring lacks the KEK version the subject's data key is wrapped under (a copy not
                # replaced after a rotation): refuse the write rather than seal under another key (field_cipher
                # logs which version is missing).
                raise KeyUnavailable(
                    "this server cannot unwrap the data key of this record's customer: its keyring lacks the key "
                    "version that key is wrapped under (a keyring copy not replaced after a rotation); nothing was "
                    "written") from None

    def exact_matches(self, filters: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Exact-match filters as column values: the blind index for encrypted fields (candidates are checked
        after decryption, since a truncated index has false positives), the value itself for the rest; and the
        encrypted fields' values to confirm."""
        equal: dict[str, Any] = {}
        to_confirm: dict[str, Any] = {}
        for name, value in filters.items():
            if name in self.encrypted:
                try:
                    equal[self.cipher.blind_index_column(name)] = self.cipher.blind_index(self.entity, name, str(value))
                except (NormalisationError, ValueError):
                    raise InvalidInput(f"{name} is not a valid value to search by", field=name) from None
                to_confirm[name] = value
            else:
                equal[name] = value
        return equal, to_confirm

    def confirmed(self, record: ModelT, to_confirm: Mapping[str, Any]) -> bool:
        """Whether a blind-index candidate really holds the searched values."""
        for name, wanted in to_confirm.items():
            value = self.plain(record, name)
            if not isinstance(value, str) or not self.cipher.same_value(self.entity, name, value, str(wanted)):
                return False
        return True

    # -- audit -------------------------------------------------------------------------------------------------

    def subject_of(self, record: ModelT) -> uuid.UUID | None:
        """The data subject (customer) a record belongs to: the audit trail is queried by it."""
        return getattr(record, "customer_id", None) or getattr(record, "id", None)

    def subjects_of(self, records: Iterable[ModelT]) -> list[str]:
        """The distinct data subjects of several records, for an event about all of them."""
        return sorted({str(subject) for subject in map(self.subject_of, records) if subject is not None})

    def protected_in_trail(self, name: str) -> bool:
        """Personal or sensitive, or maskable (names, free text): the trail never holds such a value in clear,
        so that erasing the subject's key leaves nothing readable about them in the audit trail either."""
        spec = self.entity.field(name)
        return spec is not None and (spec.classification in SENSITIVE or spec.mask is not MaskFormat.NONE)

    def audit_snapshot(self, record: ModelT, names: Iterable[str]) -> dict[str, Any]:
        """Field values for the trail. Personal and sensitive values appear only as their ciphertext."""
        snapshot: dict[str, Any] = {}
        for name in names:
            value = getattr(record, name, None)
            if value is not None and self.protected_in_trail(name):
                sealed = isinstance(value, str) and value.startswith(SEALED_PREFIX)
                value = value if sealed else "[sensitive]"
            snapshot[name] = value
        return snapshot

    def audit_filters(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        """The filters of a search as the trail keeps them: which fields were searched, never a protected value."""
        return {name: "[sensitive]" if self.protected_in_trail(name) else value for name, value in filters.items()}

    def seen_in_clear(self, *, reveal: str | None = None) -> list[str]:
        """The fields whose values a read shows in clear and that the audit trail must record as seen."""
        audit_all = self.context.settings.audit_reads == "all"
        return sorted(
            spec.name for spec in self.entity.fields
            if (self.mask.visibility.get(spec.name) is Visibility.CLEAR or spec.name == reveal)
            and (audit_all or spec.classification in SENSITIVE)
        )

    async def record(self, action: AuditAction, record: ModelT | None, **details: Any) -> None:
        """Append an event about ``record`` to the trail in the current transaction."""
        await trail.record(
            self.session, action=action, actor=self.context.actor, entity=self.entity.name,
            entity_id=getattr(record, "id", None), subject_id=self.subject_of(record) if record is not None else None,
            request=self.context.request, **details,
        )

    async def record_alone(self, action: AuditAction, record: ModelT | None, **details: Any) -> None:
        """Record an event about an act on this entity that changed nothing, before answering."""
        await record_unchanging(
            self.context, action=action, entity=self.entity.name, entity_id=getattr(record, "id", None),
            subject_id=self.subject_of(record) if record is not None else None, **details,
        )

    async def record_denied(self, error: Forbidden, record_id: uuid.UUID | None = None) -> None:
        """The trail keeps every refusal, with what was asked for (and whose record it was, if it exists)."""
        async with write_transaction(self.session):
            subject = await self.repository.customer_id_of(record_id) if record_id is not None else None
            await trail.record(
                self.session, action=AuditAction.DENIED, actor=self.context.actor, entity=self.entity.name,
                entity_id=record_id, subject_id=subject, fields=error.extensions.get("fields", []),
                outcome=AuditOutcome.DENIED, reason=error.detail, request=self.context.request,
            )

    # -- use cases ---------------------------------------------------------------------------------------------

    async def load(self, record_id: uuid.UUID, *, for_update: bool = False) -> ModelT:
        """A record in the principal's scope, or NotFound (also for records out of scope)."""
        record = await self.repository.get(record_id, *await self.scope(), for_update=for_update)
        if record is None:
            raise NotFound(f"{self.entity.name} {record_id} not found")
        return record

    async def load_for_reading(self, record_id: uuid.UUID) -> ModelT:
        """``load`` for a read: the data key its encrypted values need comes in the same statement."""
        attached = self.cipher.subject_key_columns(self.entity) if self.encrypted else None
        if attached is None:
            return await self.load(record_id)
        version = await self.cipher.key_state_version(self.session)
        found = await self.repository.get_attached(record_id, *await self.scope(), attached=attached)
        if found is None:
            raise NotFound(f"{self.entity.name} {record_id} not found")
        self.cipher.absorb_subject_keys(version, [found[1]])
        return found[0]

    async def page_for_reading(self, *criteria: ColumnElement[bool], sort: SortOrder, after: Keyset | None,
                               limit: int, equal: dict[str, Any], searched: bool) -> tuple[Sequence[ModelT], bool]:
        """``list_page`` for a read. For a blind-index search (``searched``) the data keys the rows' encrypted
        values need come in the same statement: a search finds records anywhere in the table, whose keys a worker
        seldom holds yet. A page browsed without one reads no keys: the same pages are read again and again, their
        keys are held, and a key read beside every row would cost the database an index probe per row for nothing
        (about a twentieth of a 50-row list's CPU); ``prepare`` loads the few that are missing in one query."""
        attached = self.cipher.subject_key_columns(self.entity) if self.encrypted and searched else None
        if attached is None:
            return await self.repository.list_page(*criteria, sort=sort, after=after, limit=limit, equal=equal)
        version = await self.cipher.key_state_version(self.session)
        rows, keys, more = await self.repository.list_page_attached(*criteria, sort=sort, after=after, limit=limit,
                                                                    equal=equal, attached=attached)
        self.cipher.absorb_subject_keys(version, keys)
        return rows, more

    async def get(self, record_id: uuid.UUID, *, reveal: str | None = None, reason: str | None = None
                  ) -> dict[str, Any]:
        """One record, projected; ``reveal`` shows one masked field in clear, with a reason, and is audited."""
        try:
            self.require("read")
            if reveal is not None:
                self._check_reveal(reveal, reason)
        except Forbidden as error:
            await self.record_denied(error, record_id)
            raise
        async with read_transaction(self.session):
            record = await self.load_for_reading(record_id)
            await self.prepare([record])
            projected = self.project(record, reveal=reveal)
        if reveal is not None and self.mask.visibility.get(reveal) is not Visibility.CLEAR:
            await self.record_alone(AuditAction.REVEAL, record, fields=[reveal], reason=reason)
        else:
            seen = self.seen_in_clear()
            if seen:
                await self.record_alone(AuditAction.READ, record, fields=seen)
        return projected

    def _check_reveal(self, field: str, reason: str | None) -> None:
        if self.entity.field(field) is None:
            raise InvalidInput(f"{self.entity.name} has no field {field[:40]!r}", field="reveal")
        if self.mask.visibility.get(field) is Visibility.CLEAR:
            return
        if field not in self.mask.revealable:
            raise Forbidden(f"not allowed to reveal {self.entity.name}.{field}", fields=[field], action="reveal")
        if reason is None or len(reason.strip()) < MIN_REVEAL_REASON:
            raise InvalidInput(f"a reason of at least {MIN_REVEAL_REASON} characters is required to reveal a field",
                               field="reason")

    async def page(self, query: ListQuery) -> dict[str, Any]:
        """A page of records matching the query's filters, and the cursor of the next page."""
        try:
            self.require("list")
            self.require_clear(query.filters, "filter")
            self.require_clear([query.sort.field], "sort")
        except Forbidden as error:
            await self.record_denied(error)
            raise
        equal, to_confirm = self.exact_matches(query.filters)
        async with read_transaction(self.session):
            rows, more = await self.page_for_reading(
                *await self.scope(), sort=query.sort, after=query.after, limit=query.limit, equal=equal,
                searched=bool(to_confirm),
            )
            await self.prepare(rows)
            items = [self.project(row) for row in rows if self.confirmed(row, to_confirm)]
        seen = self.seen_in_clear()
        if seen and items:
            await self.record_alone(AuditAction.READ, None, fields=seen,
                                    after={"records": [item["id"] for item in items]},
                                    subjects=self.subjects_of(rows))
        next_cursor = None
        if more and rows:
            last = rows[-1]
            next_cursor = encode_cursor(query.sort, getattr(last, query.sort.field), last.id)  # type: ignore[attr-defined]
        return {"items": items, "next_cursor": next_cursor}

    async def export(self, filters: dict[str, Any], *, max_rows: int) -> list[dict[str, Any]]:
        """Every record in scope matching ``filters`` (up to ``max_rows``), projected exactly as a read is."""
        try:
            self.require("export")
            self.require_clear(filters, "filter")
        except Forbidden as error:
            await self.record_denied(error)
            raise
        equal, to_confirm = self.exact_matches(filters)
        sort = SortOrder("created_at")
        exported: list[dict[str, Any]] = []
        subjects: set[str] = set()
        after: Keyset | None = None
        async with self.session.begin():
            scope = await self.scope()
            while len(exported) < max_rows:
                rows, more = await self.page_for_reading(*scope, sort=sort, after=after, equal=equal,
                                                         limit=min(500, max_rows - len(exported)),
                                                         searched=bool(to_confirm))
                await self.prepare(rows)
                shown = [row for row in rows if self.confirmed(row, to_confirm)]
                exported += [self.project(row) for row in shown]
                subjects.update(self.subjects_of(shown))
                if not more or not rows:
                    break
                after = Keyset(rows[-1].created_at, rows[-1].id)  # type: ignore[attr-defined]
        await self.record_alone(AuditAction.EXPORT, None, fields=self.seen_in_clear(),
                                after={"records": len(exported), "filters": self.audit_filters(filters)},
                                subjects=sorted(subjects))
        return exported

    async def create(self, values: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Create a record; with an idempotency key, a retry returns the first answer."""
        try:
            self.require_writable("create", values)
        except Forbidden as error:
            await self.record_denied(error)
            raise

        async def insert() -> dict[str, Any]:
            record = await self.build(values)
            await self.seal(record, self.encrypted)
            self.repository.add(record)
            await self._flush()
            await self.record(AuditAction.CREATE, record, fields=list(values),
                              after=self.audit_snapshot(record, self.entity.field_names))
            return self.project(record)

        if idempotency_key is None:
            async with write_transaction(self.session):
                return await insert()
        answer, _replayed = await idempotency.run_once(
            self.session,
            principal_id=self.principal.id,
            key=idempotency.check_key(idempotency_key),
            request_fingerprint=idempotency.fingerprint(f"create {self.entity.name}", values),
            action=insert,
            ttl=timedelta(hours=self.context.settings.idempotency_ttl_hours),
        )
        return answer

    async def update(self, record_id: uuid.UUID, changes: dict[str, Any], *, expected_version: int) -> dict[str, Any]:
        """Apply a PATCH if the record is still at ``expected_version`` (409 otherwise)."""
        try:
            self.require_writable("update", changes)
        except Forbidden as error:
            await self.record_denied(error, record_id)
            raise
        return await self.update_with(record_id, lambda record: self.change(record, changes),
                                      expected_version=expected_version)

    async def update_with(self, record_id: uuid.UUID, mutate: Callable[[ModelT], Awaitable[None]], *,
                          expected_version: int) -> dict[str, Any]:
        """Load the record for update, check its version, ``mutate`` it and save, in one transaction."""
        async with write_transaction(self.session):
            record = await self.load(record_id, for_update=True)
            current = record.version  # type: ignore[attr-defined]
            if current != expected_version:
                raise Conflict(
                    f"{self.entity.name} {record_id} is at version {current}, not {expected_version}",
                    current_version=current,
                )
            await self.prepare([record])
            before = self.audit_snapshot(record, self.entity.field_names)
            subject = self.data_subject(record)
            await mutate(record)
            if self.data_subject(record) != subject:
                # Moved to another data subject: values the PATCH left alone (still sealed under the old key, which
                # ``prepare`` loaded) are put back in clear, so that all are sealed under the new subject's key
                # (erasing either customer must affect the right data).
                for name in self.encrypted:
                    current = getattr(record, name)
                    if isinstance(current, str) and self.cipher.is_sealed(current):
                        value = self.plain(record, name)
                        if isinstance(value, str):
                            setattr(record, name, value)
            await self.seal(record, self.encrypted)
            await self._flush()
            after = self.audit_snapshot(record, self.entity.field_names)
            changed = [name for name in self.entity.field_names
                       if before[name] != after[name] and name not in BOOKKEEPING_FIELDS]
            await self.record(AuditAction.UPDATE, record, fields=changed,
                              before={name: before[name] for name in changed},
                              after={name: after[name] for name in changed})
            return self.project(record)

    async def delete(self, record_id: uuid.UUID, *, expected_version: int | None) -> None:
        """Delete a record (optionally only at ``expected_version``)."""
        try:
            self.require("delete")
        except Forbidden as error:
            await self.record_denied(error, record_id)
            raise
        async with write_transaction(self.session):
            record = await self.load(record_id, for_update=True)
            current = record.version  # type: ignore[attr-defined]
            if expected_version is not None and current != expected_version:
                raise Conflict(f"{self.entity.name} {record_id} is at version {current}, not {expected_version}",
                               current_version=current)
            await self.check_delete(record)
            snapshot = self.audit_snapshot(record, self.entity.field_names)
            await self.repository.delete(record)
            await self._flush()
            await self.record(AuditAction.DELETE, record, fields=list(snapshot), before=snapshot)

    async def _flush(self) -> None:
        try:
            await self.session.flush()
        except StaleDataError:
            raise Conflict(f"{self.entity.name} was changed by another request; reload and retry") from None
        except IntegrityError:
            raise Conflict(f"{self.entity.name} conflicts with existing data") from None


def _masked(spec: FieldSpec, value: Any) -> Any:
    if value is None:
        return None
    return render_mask(spec.mask, render_decimal(value) if isinstance(value, Decimal) else value)


def set_fields(record: Base, values: Mapping[str, Any]) -> None:
    """Copy ``values`` onto ``record`` attribute by attribute."""
    for name, value in values.items():
        setattr(record, name, value)


async def require_reference(session: AsyncSession, model: type[Base], record_id: uuid.UUID, field: str) -> Any:
    """The referenced record, or a 422 naming the field that points nowhere."""
    from server.errors import InvalidInput

    record = await session.get(model, record_id)
    if record is None:
        raise InvalidInput(f"{field} does not refer to an existing record", field=field)
    return record


async def refuse_if_dependents(session: AsyncSession, entity_name: str, checks: Mapping[str, Any]) -> None:
    """Raise Conflict naming the kinds of records that still point at the one being deleted.

    ``checks`` maps a plural noun to a SELECT COUNT statement.
    """
    blocking = [noun for noun, statement in checks.items() if (await session.execute(statement)).scalar_one()]
    if blocking:
        raise Conflict(f"{entity_name} still has {', '.join(blocking)}; remove or reassign them first",
                       dependents=blocking)
