"""The unit of work shared by every CRM entity: get, list, create, update, delete in one transaction each.

Per-entity services subclass ``RecordService`` and supply the business rules through three hooks:
``build`` (a new record from validated values), ``change`` (apply a PATCH) and ``check_delete``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, ClassVar, Generic

from sqlalchemy import ColumnElement
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from server.config import Settings
from server.domain.base import Base
from server.domain.fields import EntitySpec
from server.domain.repository import ModelT, Repository
from server.errors import Conflict, NotFound
from server.security.principal import Principal
from server.services import idempotency
from server.services.pagination import ListQuery, encode_cursor


@dataclass(frozen=True, slots=True)
class CallContext:
    """What every service call needs: the transaction's session, the caller and the settings."""

    session: AsyncSession
    principal: Principal
    settings: Settings


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

    # -- hooks -------------------------------------------------------------------------------------------------

    async def build(self, values: dict[str, Any]) -> ModelT:
        """Validate ``values`` and return a new record (not yet added)."""
        raise NotImplementedError

    async def change(self, record: ModelT, changes: dict[str, Any]) -> None:
        """Validate ``changes`` and apply them to ``record``."""
        raise NotImplementedError

    async def check_delete(self, record: ModelT) -> None:
        """Raise Conflict when ``record`` cannot be deleted (it has dependents)."""

    def scope(self) -> list[ColumnElement[bool]]:
        """Criteria limiting which records the principal may reach (record scope, filled in by policy)."""
        return []

    def project(self, record: ModelT) -> dict[str, Any]:
        """The record as the API shows it: every declared field, JSON-ready."""
        projected: dict[str, Any] = {}
        for name in self.entity.field_names:
            value = getattr(record, name)
            projected[name] = render_decimal(value) if isinstance(value, Decimal) else value
        return projected

    # -- use cases ---------------------------------------------------------------------------------------------

    async def load(self, record_id: uuid.UUID, *, for_update: bool = False) -> ModelT:
        """A record in the principal's scope, or NotFound (also for records out of scope)."""
        record = await self.repository.get(record_id, *self.scope(), for_update=for_update)
        if record is None:
            raise NotFound(f"{self.entity.name} {record_id} not found")
        return record

    async def get(self, record_id: uuid.UUID) -> dict[str, Any]:
        """One record, projected."""
        async with self.session.begin():
            return self.project(await self.load(record_id))

    async def list(self, query: ListQuery) -> dict[str, Any]:
        """A page of records matching the query's filters, and the cursor of the next page."""
        criteria = [self.repository.column(name) == value for name, value in query.filters.items()]
        async with self.session.begin():
            rows, more = await self.repository.list_page(
                *self.scope(), *criteria, sort=query.sort, after=query.after, limit=query.limit
            )
            items = [self.project(row) for row in rows]
        next_cursor = None
        if more and rows:
            last = rows[-1]
            next_cursor = encode_cursor(query.sort, getattr(last, query.sort.field), last.id)  # type: ignore[attr-defined]
        return {"items": items, "next_cursor": next_cursor}

    async def create(self, values: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Create a record; with an idempotency key, a retry returns the first answer."""

        async def insert() -> dict[str, Any]:
            record = await self.build(values)
            self.repository.add(record)
            await self._flush()
            return self.project(record)

        if idempotency_key is None:
            async with self.session.begin():
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
        return await self.update_with(record_id, lambda record: self.change(record, changes),
                                      expected_version=expected_version)

    async def update_with(self, record_id: uuid.UUID, mutate: Callable[[ModelT], Awaitable[None]], *,
                          expected_version: int) -> dict[str, Any]:
        """Load the record for update, check its version, ``mutate`` it and save, in one transaction."""
        async with self.session.begin():
            record = await self.load(record_id, for_update=True)
            current = record.version  # type: ignore[attr-defined]
            if current != expected_version:
                raise Conflict(
                    f"{self.entity.name} {record_id} is at version {current}, not {expected_version}",
                    current_version=current,
                )
            await mutate(record)
            await self._flush()
            return self.project(record)

    async def delete(self, record_id: uuid.UUID, *, expected_version: int | None) -> None:
        """Delete a record (optionally only at ``expected_version``)."""
        async with self.session.begin():
            record = await self.load(record_id, for_update=True)
            current = record.version  # type: ignore[attr-defined]
            if expected_version is not None and current != expected_version:
                raise Conflict(f"{self.entity.name} {record_id} is at version {current}, not {expected_version}",
                               current_version=current)
            await self.check_delete(record)
            await self.repository.delete(record)
            await self._flush()

    async def _flush(self) -> None:
        try:
            await self.session.flush()
        except StaleDataError:
            raise Conflict(f"{self.entity.name} was changed by another request; reload and retry") from None
        except IntegrityError:
            raise Conflict(f"{self.entity.name} conflicts with existing data") from None


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
