"""A repository per model whose queries accept extra criteria (the security layer's record scope goes there)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ARRAY, BindParameter, ColumnElement, Integer, Select, and_, any_, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.domain.base import Base

ModelT = TypeVar("ModelT", bound=Base)

_STATEMENTS_MAX = 4096
_Kept = dict[tuple[Any, ...], tuple[tuple[ColumnElement[bool], ...], Select[Any]]]
_GET_STATEMENTS: _Kept = {}
_PAGE_STATEMENTS: _Kept = {}


def _kept(statements: _Kept, key: tuple[Any, ...], criteria: tuple[ColumnElement[bool], ...],
          build: Callable[[], Select[Any]]) -> Select[Any]:
    """The statement kept under ``key``, built and kept on first use."""
    kept = statements.get(key)
    if kept is not None:
        return kept[1]
    statement = build()
    if len(statements) >= _STATEMENTS_MAX:
        statements.clear()
    statements[key] = (criteria, statement)  # holding the criteria keeps their ids unique
    return statement


@dataclass(frozen=True, slots=True)
class SortOrder:
    """Sort by one column (then by id, for a stable keyset)."""

    field: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Keyset:
    """The position after which the next page starts: the last row's sort value and id."""

    value: Any
    record_id: uuid.UUID


@dataclass(frozen=True, slots=True, eq=False)
class Attached:
    """Values read beside each record in the same statement: scalar expressions over the record's row (correlated
    subqueries, say), given the record's model. What they are is the caller's business; keep one object per use
    (statements are kept per object, as for criteria).

    Correlated subqueries rather than a join: with a LIMIT and an index giving the order, SQLite builds a Bloom
    filter over the whole joined table before reading the first row (10 ms for 100,000 rows), where a subquery
    is one index probe per row returned.
    """

    columns: Callable[[type[Any]], tuple[ColumnElement[Any], ...]]


class Repository(Generic[ModelT]):
    """Loads and stores one model. Every read takes extra criteria, applied inside the SQL."""

    def __init__(self, session: AsyncSession, model: type[ModelT]) -> None:
        self.session = session
        self.model = model

    def column(self, name: str) -> Any:
        """The mapped column attribute ``name``."""
        return getattr(self.model, name)

    def among(self, column: Any, values: Collection[Any] | Select[Any]) -> ColumnElement[bool]:
        """``column IN values``. On PostgreSQL a set of values goes as one array parameter (``= ANY``): an IN
        list is re-rendered by SQLAlchemy at every execution, one placeholder per value (about 0.1 ms a
        request for a team of seven), and its statement text changes with the number of values."""
        if not isinstance(values, Select) and self.session.bind is not None \
                and self.session.bind.dialect.name == "postgresql":
            return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))  # type: ignore[no-any-return]
        return column.in_(values)  # type: ignore[no-any-return]

    async def get(
        self, record_id: uuid.UUID, *criteria: ColumnElement[bool], for_update: bool = False
    ) -> ModelT | None:
        """The record with ``record_id`` that also matches ``criteria``, or None.

        The statement is kept for the same model and the same criteria objects (callers that reuse their
        criteria, as the record scopes do, skip building and cache-keying it: most of its cost).
        """
        def build() -> Select[Any]:
            statement = select(self.model).where(self.column("id") == bindparam("record_id"), *criteria)
            return statement.with_for_update() if for_update else statement

        statement = _kept(_GET_STATEMENTS, (self.model, for_update, tuple(map(id, criteria))), criteria, build)
        found: ModelT | None = (await self.session.execute(statement, {"record_id": record_id})).scalar_one_or_none()
        return found

    async def get_attached(
        self, record_id: uuid.UUID, *criteria: ColumnElement[bool], attached: Attached
    ) -> tuple[ModelT, tuple[Any, ...]] | None:
        """Like :meth:`get` (for reading: no lock), with ``attached``'s columns read in the same statement."""
        statement = _kept(_GET_STATEMENTS, (self.model, attached, tuple(map(id, criteria))), criteria, lambda: (
            select(self.model, *attached.columns(self.model)).where(self.column("id") == bindparam("record_id"),
                                                                     *criteria)))
        row = (await self.session.execute(statement, {"record_id": record_id})).one_or_none()
        return None if row is None else (row[0], tuple(row[1:]))

    async def list_page(
        self,
        *criteria: ColumnElement[bool],
        sort: SortOrder,
        after: Keyset | None,
        limit: int,
        equal: Mapping[str, Any] | None = None,
    ) -> tuple[Sequence[ModelT], bool]:
        """One page in ``sort`` order after ``after``; returns the rows and whether more follow.

        ``equal`` maps column names to the values they must equal. The statement is kept for the same model,
        sort, ``criteria`` objects and ``equal`` names, with the values, the keyset and the limit as parameters:
        building and cache-keying a list statement cost about 0.1-0.2 ms a request (record scopes reuse their
        criteria objects, as for :meth:`get`).
        """
        return await self._page(criteria, sort, after, limit, equal or {}, None)

    async def list_page_attached(
        self,
        *criteria: ColumnElement[bool],
        sort: SortOrder,
        after: Keyset | None,
        limit: int,
        attached: Attached,
        equal: Mapping[str, Any] | None = None,
    ) -> tuple[Sequence[ModelT], list[tuple[Any, ...]], bool]:
        """Like :meth:`list_page`, with ``attached``'s columns of each record (in the same order) read in the
        same statement."""
        rows, more = await self._page(criteria, sort, after, limit, equal or {}, attached)
        return [row[0] for row in rows], [tuple(row[1:]) for row in rows], more

    async def _page(self, criteria: tuple[ColumnElement[bool], ...], sort: SortOrder, after: Keyset | None,
                    limit: int, equal: Mapping[str, Any], attached: Attached | None) -> tuple[Sequence[Any], bool]:
        names = tuple(sorted(equal))
        key = (self.model, sort, after is not None, names, attached, tuple(map(id, criteria)))
        statement = _kept(_PAGE_STATEMENTS, key, criteria, lambda: self._page_statement(
            criteria, names, sort, keyset=after is not None, attached=attached))
        parameters: dict[str, Any] = {f"equal_{name}": equal[name] for name in names}
        parameters["page_limit"] = limit + 1
        if after is not None:
            parameters["after_value"], parameters["after_id"] = after.value, after.record_id
        result = await self.session.execute(statement, parameters)
        rows = result.scalars().all() if attached is None else result.all()
        return rows[:limit], len(rows) > limit

    def _page_statement(self, criteria: tuple[ColumnElement[bool], ...], names: tuple[str, ...], sort: SortOrder, *,
                        keyset: bool, attached: Attached | None) -> Select[Any]:
        column, id_column = self.column(sort.field), self.column("id")
        extra = () if attached is None else attached.columns(self.model)
        statement = select(self.model, *extra).where(
            *criteria, *(self.column(name) == bindparam(f"equal_{name}") for name in names))
        if keyset:
            value: BindParameter[Any] = bindparam("after_value")
            record_id: BindParameter[Any] = bindparam("after_id")
            if sort.descending:
                statement = statement.where(or_(column < value, and_(column == value, id_column < record_id)))
            else:
                statement = statement.where(or_(column > value, and_(column == value, id_column > record_id)))
        if sort.descending:
            statement = statement.order_by(column.desc(), id_column.desc())
        else:
            statement = statement.order_by(column.asc(), id_column.asc())
        return statement.limit(bindparam("page_limit", type_=Integer))

    def equal_to(self, equal: Mapping[str, Any]) -> list[ColumnElement[bool]]:
        """``column == value`` for each column name and value of ``equal``."""
        return [self.column(name) == value for name, value in equal.items()]

    async def customer_id_of(self, record_id: uuid.UUID) -> uuid.UUID | None:
        """The customer a record belongs to (a customer's own id), ignoring any scope; None if there is none."""
        column = getattr(self.model, "customer_id", None) or self.column("id")
        found = (await self.session.execute(select(column).where(self.column("id") == record_id))).scalar_one_or_none()
        return found if isinstance(found, uuid.UUID) else None

    async def count(self, *criteria: ColumnElement[bool]) -> int:
        """How many records match ``criteria``."""
        statement = select(func.count()).select_from(self.model).where(*criteria)
        return int((await self.session.execute(statement)).scalar_one())

    def add(self, record: ModelT) -> None:
        """Stage ``record`` for insert in the current transaction."""
        self.session.add(record)

    async def delete(self, record: ModelT) -> None:
        """Delete ``record`` in the current transaction."""
        await self.session.delete(record)
