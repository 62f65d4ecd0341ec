"""Column encryption at run time: sealing and opening the encrypted fields of CRM records.

One ``FieldCipher`` per process holds the key provider (the keyring from ``<keys_dir>/keyring.json``, or
``STRONGROOM_KEYRING``), a cache of unwrapped data keys (DEKs) backed by the ``data_keys`` table, the blind
indexer and the erasure ledger (``STRONGROOM_ERASURE_LEDGER_PATH``, default ``<keys_dir>/erasure-ledger.jsonl``).

Keys. Every data subject (a customer: the customer row and the contacts, service records, activities and
opportunities under it) has its own DEK, created, wrapped under the current KEK and stored on the first value
sealed for it, in the caller's transaction. Erasing the subject destroys its DEKs (crypto-shredding): every
value sealed under them, in the tables, in audit events and in old backups, becomes unreadable.

Binding. A sealed value carries its DEK id and is bound (AEAD associated data) to its table, column and row id:
a ciphertext copied to another row or column does not open there. Opening never raises and never returns wrong
plaintext: it gives the plaintext, None, or an ``Unreadable`` marker.

How the services use it, per request::

    await cipher.seal_fields(session, CONTACT, contact, contact.customer_id, changed_names)  # before flush
    await cipher.prepare(session, contacts, CONTACT)                                       # after loading
    phone = cipher.open_field(CONTACT, contact, "phone")                                   # sync, per value
    rows = select(Contact).where(Contact.email_bidx == cipher.blind_index(CONTACT, "email", query))
    # then open each candidate and keep those with cipher.same_value(CONTACT, "email", opened, query)

Deployments may encrypt more fields than the declarations say: ``STRONGROOM_ENCRYPT_EXTRA_FIELDS`` (comma
separated ``entity.field``, for example ``customer.notes,activity.summary``); existing values of such a field
are sealed by ``strongroom keys reencrypt``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NoReturn, cast

import structlog
from sqlalchemy import ColumnElement, String, Table, Text, bindparam, func, insert, literal_column, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.config import Settings
from server.domain.fields import EntitySpec, ValueKind
from server.domain.repository import Attached
from server.security.access import bump_security_version
from server.security.crypto import (
    KEYRING_ENV,
    SEALED_PREFIX,
    BlindIndexer,
    CryptoError,
    DataKey,
    DecryptionError,
    DekCache,
    EnvKeyProvider,
    ErasureLedger,
    FileKeyProvider,
    KeyDestroyed,
    KeyProvider,
    KeyringError,
    NormalisationError,
    Normaliser,
    PhoneNormaliser,
    UnknownKey,
    WrappedDek,
    create_keyring_file,
    load_keyring_file,
    named_key_id,
    normalise_email,
    normalise_national_id,
    normalise_text,
    open_sealed,
    seal,
    sealed_key_id,
    wrapped_dek_id,
)
from server.security.data_keys import TOKEN_PREFIX_CHARS, DataKeyRow, DekState, token_prefix
from server.security.identity.models import SecurityState

__all__ = [
    "ERASED",
    "EXTRA_FIELDS_ENV",
    "KEYRING_FILE_NAME",
    "UNDECRYPTABLE",
    "DekInfo",
    "EncryptedEntity",
    "FieldCipher",
    "Unreadable",
    "ensure_keyring",
    "key_provider",
    "keyring_path",
    "parse_extra_fields",
]

KEYRING_FILE_NAME = "keyring.json"
EXTRA_FIELDS_ENV = "STRONGROOM_ENCRYPT_EXTRA_FIELDS"
_ACTIVE_MEMO = "strongroom.field_cipher.active_deks"
_IN_CHUNK = 500
_MAX_CONFIRMED = 200_000

_data_keys: Table = DataKeyRow.__table__  # type: ignore[assignment]

log = structlog.get_logger(__name__)
# Built once: a read that meets a key this process has not confirmed runs it (statement building and cache
# keying cost more than the lookup itself).
_KEY_STATES = select(_data_keys.c.id, _data_keys.c.state, _data_keys.c.wrapped).where(
    _data_keys.c.id.in_(bindparam("ids", expanding=True)))


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Stands for a sealed value that cannot be shown.

    Attributes:
        reason: ``"erased"`` (the subject's key was destroyed) or ``"undecryptable"`` (altered, moved from
            another row or column, or its key is missing).
    """

    reason: Literal["erased", "undecryptable"]

    def __str__(self) -> str:
        return f"[{self.reason}]"


ERASED = Unreadable("erased")
UNDECRYPTABLE = Unreadable("undecryptable")


@dataclass(frozen=True, slots=True)
class DekInfo:
    """One row of ``data_keys`` as the key jobs see it; ``key`` is the unwrapped DEK when it is readable."""

    id: uuid.UUID
    state: str
    token_prefix: str
    generation: int
    created_at: datetime
    key: DataKey | None


@dataclass(frozen=True, slots=True)
class EncryptedEntity:
    """Where an entity's encrypted fields live and whose data they are.

    Attributes:
        name: Entity name (``contact``).
        model: The mapped class.
        table: Table name, bound into every sealed value (associated data).
        subject_column: The column naming the data subject (``customer_id``; ``id`` for customers).
        columns: Encrypted field name -> column name (bound into every sealed value).
        blind_indexed: Encrypted fields that also carry a ``<field>_bidx`` column.
    """

    name: str
    model: type[Any]
    table: str
    subject_column: str
    columns: Mapping[str, str]
    blind_indexed: frozenset[str]

    @property
    def fields(self) -> frozenset[str]:
        """The encrypted field names."""
        return frozenset(self.columns)


def keyring_path(settings: Settings) -> Path:
    """``<keys_dir>/keyring.json``."""
    return settings.resolved_keys_dir / KEYRING_FILE_NAME


def ensure_keyring(settings: Settings) -> bool:
    """Create ``<keys_dir>/keyring.json`` (mode 0600, directory 0700) if absent; never overwrite one.

    When ``STRONGROOM_KEYRING`` is set the keyring comes from the environment and no file is created.

    Returns:
        True if a keyring file was created now.

    Raises:
        PermissionError: An existing keyring file is accessible to group or others.
        ValueError: An existing keyring file is malformed.
    """
    keys_dir = settings.resolved_keys_dir
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.environ.get(KEYRING_ENV, "").strip():
        return False
    path = keys_dir / KEYRING_FILE_NAME
    if path.exists():
        _check_keyring_file(path)
        return False
    try:
        create_keyring_file(path)
    except KeyringError:
        if path.exists():  # another process created it first
            _check_keyring_file(path)
            return False
        raise
    return True


def key_provider(settings: Settings, environ: Mapping[str, str] | None = None) -> FileKeyProvider | EnvKeyProvider:
    """The deployment's key provider: ``STRONGROOM_KEYRING`` if set and non-empty, else the keyring file.

    Raises:
        KeyringError: Missing, unsafe or malformed keyring; the message names the variable or the path.
    """
    env = os.environ if environ is None else environ
    if env.get(KEYRING_ENV, "").strip():
        return EnvKeyProvider(env)
    return FileKeyProvider(keyring_path(settings))


def _check_keyring_file(path: Path) -> None:
    try:
        load_keyring_file(path)
    except KeyringError as error:
        _raise_keyring_problem(path, error)


def _raise_keyring_problem(path: Path, error: KeyringError) -> NoReturn:
    """Re-raise a keyring problem as the built-in error the CLI and startup already report cleanly."""
    if not path.exists():
        raise FileNotFoundError(
            f"keyring {path} not found; run `strongroom keys init` (or `strongroom init`) first"
        ) from None
    if path.stat().st_mode & 0o077:
        raise PermissionError(str(error)) from None
    raise ValueError(str(error)) from None


def parse_extra_fields(text: str | None) -> tuple[str, ...]:
    """Split the comma-separated ``entity.field`` list of ``STRONGROOM_ENCRYPT_EXTRA_FIELDS``."""
    if not text:
        return ()
    return tuple(item.strip() for item in text.split(",") if item.strip())


@functools.cache
def _entity_sources() -> dict[str, tuple[EntitySpec, type[Any], str]]:
    """Entities that may hold encrypted fields: spec, model and subject column. All of them are a customer's."""
    from server.domain.activities.fields import ACTIVITY
    from server.domain.activities.models import Activity
    from server.domain.contacts.fields import CONTACT
    from server.domain.contacts.models import Contact
    from server.domain.customers.fields import CUSTOMER
    from server.domain.customers.models import Customer
    from server.domain.opportunities.fields import OPPORTUNITY
    from server.domain.opportunities.models import Opportunity
    from server.domain.service_records.fields import SERVICE_RECORD
    from server.domain.service_records.models import ServiceRecord

    return {
        CUSTOMER.name: (CUSTOMER, Customer, "id"),
        CONTACT.name: (CONTACT, Contact, "customer_id"),
        SERVICE_RECORD.name: (SERVICE_RECORD, ServiceRecord, "customer_id"),
        ACTIVITY.name: (ACTIVITY, Activity, "customer_id"),
        OPPORTUNITY.name: (OPPORTUNITY, Opportunity, "customer_id"),
    }


def _subject_key_columns(layout: EncryptedEntity) -> Attached:
    """The wrapped form of the subject's one active DEK (a unique partial index), by the record's subject column."""
    subject_column = layout.subject_column

    def columns(model: type[Any]) -> tuple[ColumnElement[Any], ...]:
        # A literal, not a parameter: SQLite uses the partial index only for a condition it can see implies it.
        wrapped = (select(_data_keys.c.wrapped)
                   .where(_data_keys.c.subject_id == getattr(model, subject_column),
                          _data_keys.c.state == literal_column(f"'{DekState.ACTIVE.value}'"))
                   .scalar_subquery())
        return (wrapped,)

    return Attached(columns)


def _build_entities(extra_encrypted: Iterable[str]) -> dict[str, EncryptedEntity]:
    sources = _entity_sources()
    extra: dict[str, set[str]] = {}
    for item in extra_encrypted:
        entity_name, dot, field_name = item.partition(".")
        source = sources.get(entity_name)
        where = f"{EXTRA_FIELDS_ENV}: {item!r}"
        if not dot or source is None:
            raise ValueError(f"{where} must be entity.field with entity one of {', '.join(sorted(sources))}")
        declared = source[0].field(field_name)
        if declared is None:
            raise ValueError(f"{where}: {entity_name} has no field {field_name!r}")
        if (declared.kind is not ValueKind.TEXT or declared.sortable or declared.filterable
                or field_name in {"id", "name"}):
            raise ValueError(f"{where}: only text fields that are neither sorted nor filtered on can be encrypted")
        column = source[1].__table__.c[field_name]
        if not isinstance(column.type, Text) and not (isinstance(column.type, String) and column.type.length is None):
            raise ValueError(
                f"{where}: column {source[1].__tablename__}.{column.name} is {column.type}; a sealed value is about "
                "4/3 of the plaintext plus 65 characters, so the column must be TEXT first (a migration)"
            )
        extra.setdefault(entity_name, set()).add(field_name)
    entities: dict[str, EncryptedEntity] = {}
    for name, (spec, model, subject_column) in sources.items():
        fields = [field.name for field in spec.fields if field.encrypted or field.name in extra.get(name, ())]
        if not fields:
            continue
        mapper = sa_inspect(model)
        columns = {field: mapper.columns[field].name for field in fields}
        blind = frozenset(field.name for field in spec.fields if field.blind_indexed and field.name in columns)
        for field in blind:
            if f"{field}_bidx" not in mapper.columns:
                raise ValueError(f"{name}.{field} is blind-indexed but {model.__name__} has no {field}_bidx column")
        entities[name] = EncryptedEntity(name, model, str(model.__tablename__), subject_column, columns, blind)
    return entities


def _now() -> datetime:
    return datetime.now(UTC)


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class FieldCipher:
    """Per process: the keyring (from the keys dir or the environment), a DEK cache backed by ``data_keys``, a
    blind indexer and the erasure ledger. Safe to share between concurrent requests.

    Args:
        provider: Holds the KEKs; wraps and unwraps DEKs.
        blind_indexer: From the keyring's blind-index root key.
        ledger: The erasure ledger beside the keyring; DEKs it lists are refused from the start.
        default_country_code: For phone numbers written without one (blind indexes normalise to E.164).
        extra_encrypted: More ``entity.field`` names to encrypt than the declarations mark.
        key_state_poll_seconds: How long the state of cached DEKs is trusted without asking the database,
            unless ``security_state.version`` or the erasure ledger moved (see ``load_deks``).
    """

    def __init__(
        self,
        provider: KeyProvider,
        *,
        blind_indexer: BlindIndexer,
        ledger: ErasureLedger,
        default_country_code: str = "+86",
        extra_encrypted: Iterable[str] = (),
        key_state_poll_seconds: float = 0.25,
    ) -> None:
        self._provider = provider
        self._indexer = blind_indexer
        self._ledger = ledger
        self._entities = _build_entities(extra_encrypted)
        try:
            destroyed = ledger.destroyed_dek_ids()
        except CryptoError as error:
            raise ValueError(str(error)) from None
        self._cache = DekCache(provider, destroyed=destroyed)
        trunk, international = ("1", "011") if default_country_code == "+1" else ("0", "00")
        phone = PhoneNormaliser(default_country_code, trunk_prefix=trunk, international_prefix=international)
        self._normalisers: dict[str, Normaliser] = {
            "email": normalise_email,
            "phone": phone,
            "mobile": phone,
            "national_id": normalise_national_id,
        }
        self._keyring_stamp = self._file_stamp()
        self._state_poll_seconds = key_state_poll_seconds
        self._state_version: int | None = None
        self._state_checked_at = float("-inf")
        # DEK id -> the security_state version at which its row was last read (its state confirmed).
        self._confirmed: dict[uuid.UUID, int] = {}
        self._ledger_stamp = self._ledger_file_stamp()
        self._ledger_error_stamp: tuple[int, int, int] | None = None
        self._reported_missing_keks: set[int] = set()
        self._subject_keys = {name: _subject_key_columns(layout) for name, layout in self._entities.items()}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        extra_encrypted: Iterable[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> FieldCipher:
        """The process's cipher: keyring from ``STRONGROOM_KEYRING`` if set, else ``<keys_dir>/keyring.json``.

        Args:
            settings: Gives the keys directory and the default country code.
            extra_encrypted: ``entity.field`` names to encrypt beyond the declarations; default: the
                comma-separated ``STRONGROOM_ENCRYPT_EXTRA_FIELDS`` of ``environ``.
            environ: The environment to read (``os.environ`` by default).

        Raises:
            FileNotFoundError: No keyring file (run ``strongroom keys init``).
            PermissionError: The keyring file is accessible to group or others.
            ValueError: Malformed keyring, broken erasure ledger, or an invalid extra field.
        """
        env = os.environ if environ is None else environ
        if extra_encrypted is None:
            extra_encrypted = parse_extra_fields(env.get(EXTRA_FIELDS_ENV))
        try:
            provider = key_provider(settings, env)
        except KeyringError as error:
            if env.get(KEYRING_ENV, "").strip():
                raise ValueError(str(error)) from None
            _raise_keyring_problem(keyring_path(settings), error)
        keyring = provider.keyring
        ledger = ErasureLedger(settings.resolved_erasure_ledger_path, keyring.ledger_key, keyring.suite)
        return cls(
            provider,
            blind_indexer=keyring.blind_indexer(),
            ledger=ledger,
            default_country_code=settings.default_country_code,
            extra_encrypted=extra_encrypted,
        )

    def __repr__(self) -> str:
        return f"FieldCipher(provider={self._provider!r}, entities={sorted(self._entities)})"

    # ----------------------------------------------------------------------------------------- declarations

    @property
    def provider(self) -> KeyProvider:
        """The key provider (KEKs)."""
        return self._provider

    @property
    def ledger(self) -> ErasureLedger:
        """The erasure ledger beside the keyring (``head()`` gives the MAC to record in the audit trail)."""
        return self._ledger

    @property
    def entities(self) -> tuple[EncryptedEntity, ...]:
        """Every entity with at least one encrypted field."""
        return tuple(self._entities.values())

    def entity(self, name: str) -> EncryptedEntity | None:
        """The encrypted-field layout of entity ``name``, or None if it has no encrypted field."""
        return self._entities.get(name)

    def encrypted_fields(self, entity: EntitySpec) -> frozenset[str]:
        """The fields of ``entity`` stored sealed: the declared ones plus the configured extras."""
        layout = self._entities.get(entity.name)
        return layout.fields if layout is not None else frozenset()

    # ------------------------------------------------------------------------------------------------ seal

    async def seal_fields(
        self, session: AsyncSession, entity: EntitySpec, record: Any, subject_id: uuid.UUID, names: Iterable[str]
    ) -> None:
        """Seal, in place, the plaintext values of ``names`` that ``entity`` stores encrypted; call before flush.

        For each such name whose attribute holds a plaintext ``str``, the attribute becomes the sealed token
        (bound to the table, the column and ``record.id``, which must be set). Values that are already sealed
        tokens, and None, are left alone. For blind-indexed fields ``record.<name>_bidx`` is set from the
        plaintext (None when the value is None or blank). Names that are not encrypted are ignored.

        The DEK is the subject's active one; on first use it is created, wrapped under the current KEK and
        inserted in the session's transaction (a concurrent creator for the same subject is resolved by a
        unique index and a savepoint: both end up using one DEK).

        Args:
            session: The unit of work the record is written in.
            entity: The record's entity declaration.
            record: The mapped instance (any object with the attributes will do).
            subject_id: The data subject: the customer id (``record.id`` for a customer).
            names: Fields set or changed in this write.

        Raises:
            ValueError: ``record.id`` is not set, or ``subject_id`` differs from the record's own subject column.
            DecryptionError: The subject's active DEK cannot be unwrapped with this keyring (wrong or stale
                keyring): nothing is sealed under another key instead.
        """
        layout = self._entities.get(entity.name)
        if layout is None:
            return
        wanted = [name for name in dict.fromkeys(names) if name in layout.columns]
        if not wanted:
            return
        record_id = getattr(record, "id", None)
        if record_id is None:
            raise ValueError(f"{entity.name}: record id must be set before sealing (it is bound into the value)")
        own_subject = getattr(record, layout.subject_column, None)
        if own_subject is not None and own_subject != subject_id:
            raise ValueError(f"{entity.name} {record_id}: subject {subject_id} is not the record's {own_subject}")
        dek: DataKey | None = None
        for name in wanted:
            value = getattr(record, name)
            if value is None:
                if name in layout.blind_indexed:
                    setattr(record, f"{name}_bidx", None)
                continue
            if not isinstance(value, str) or self.is_sealed(value):
                continue
            if name in layout.blind_indexed:
                setattr(record, f"{name}_bidx", self.blind_index_or_none(entity.name, name, value))
            if dek is None:
                dek = await self.active_dek(session, subject_id)
            setattr(record, name, seal(value, dek=dek, table=layout.table, column=layout.columns[name],
                                       record_id=record_id))

    @staticmethod
    def is_sealed(value: str) -> bool:
        """Whether ``value`` is a well-formed sealed token (not whether it opens here)."""
        if not value.startswith(SEALED_PREFIX):
            return False
        try:
            sealed_key_id(value)
        except DecryptionError:
            return False
        return True

    def seal_value(self, dek: DataKey, layout: EncryptedEntity, name: str, record_id: uuid.UUID, value: str) -> str:
        """Seal one plaintext for ``layout.table``/``name`` of row ``record_id`` under ``dek`` (key jobs)."""
        return seal(value, dek=dek, table=layout.table, column=layout.columns[name], record_id=record_id)

    # ------------------------------------------------------------------------------------------------ open

    async def prepare(self, session: AsyncSession, records: Iterable[Any], entity: EntitySpec) -> None:
        """Load every DEK the sealed values of ``records`` name, so ``open_field`` can be sync.

        Also refreshes the state of DEKs already cached: a DEK another process destroyed (erasure) is refused
        from here on (see ``load_deks`` for how soon). Call it for each request's records before opening them.
        """
        layout = self._entities.get(entity.name)
        if layout is None:
            return
        tokens = (getattr(record, name, None) for record in records for name in layout.columns)
        await self.prepare_tokens(session, (token for token in tokens if isinstance(token, str)))

    def subject_key_columns(self, entity: EntitySpec) -> Attached | None:
        """The record's subject's active data key (its wrapped form, which names its id), to read beside a record
        of ``entity`` in the same statement, then hand to ``absorb_subject_keys``: the ``prepare`` that follows then
        has no key to look up for values sealed under it (one round trip less for a record whose key is not cached
        yet). None when ``entity`` has no encrypted field."""
        return self._subject_keys.get(entity.name)

    async def key_state_version(self, session: AsyncSession) -> int | None:
        """The version of the key states to label keys read from now on with (``absorb_subject_keys``); read
        it before the statement that reads the keys."""
        return await self._security_version(session)

    def absorb_subject_keys(self, version: int | None, keys: Iterable[tuple[Any, ...]]) -> None:
        """Cache and confirm, at ``version`` (read before the statement, see ``key_state_version``), the data keys
        read beside records with ``subject_key_columns``; rows with no key (None) are skipped. A key the erasure
        ledger lists is still refused: the ``prepare`` that follows reads the ledger first, and refusal wins."""
        if version != self._state_version:
            return  # the states moved since: leave every key to ``prepare``
        confirmed = self._confirmed
        if len(confirmed) > _MAX_CONFIRMED:
            confirmed.clear()
        for wrapped in {wrapped for (wrapped,) in keys if wrapped is not None}:  # a page often repeats a subject
            try:
                dek_id = wrapped_dek_id(wrapped)
                if self._cache.holds(dek_id):  # held keys need only the confirmation, not a parse
                    if version is not None:
                        confirmed[dek_id] = version
                    continue
                parsed = WrappedDek.from_bytes(wrapped)  # its id is authenticated by the unwrap
            except CryptoError:
                continue  # left to ``prepare``, which reports the value undecryptable
            if self._absorb(parsed.dek_id, DekState.ACTIVE, parsed) is not None and version is not None:
                confirmed[parsed.dek_id] = version

    async def prepare_tokens(self, session: AsyncSession, tokens: Iterable[str]) -> None:
        """Like ``prepare``, for loose sealed tokens (for example values held in audit events)."""
        dek_ids = {named_key_id(token) for token in tokens}
        dek_ids.discard(None)
        await self.load_deks(session, cast(set[uuid.UUID], dek_ids))

    async def load_deks(self, session: AsyncSession, dek_ids: Iterable[uuid.UUID]) -> None:
        """Bring the cache in line with ``data_keys`` for ``dek_ids``: unwrap new ones, drop destroyed ones.

        A DEK's row is read only when the cache does not hold the key or has not confirmed its state since
        ``security_state.version`` last moved; a cached, confirmed key costs no query. Every erasure bumps that
        version in its own transaction, and the version is read at most every ``key_state_poll_seconds``, so a
        key destroyed by a process on another host is refused here within that time (as a policy change is,
        see ``AccessControl``). A process on this host learns of an erasure sooner, from the erasure ledger
        beside the keyring: the erasing process appends to it before it destroys the key rows, and every call
        here first checks whether the ledger file changed (a ``stat``).
        """
        wanted = set(dek_ids)
        if not wanted:
            return
        self._follow_ledger()
        version = await self._security_version(session)
        cache, confirmed = self._cache, self._confirmed
        stale = sorted(dek_id for dek_id in wanted if not cache.refuses(dek_id)
                       and (version is None or confirmed.get(dek_id) != version or not cache.holds(dek_id)))
        if not stale:
            return
        if len(confirmed) > _MAX_CONFIRMED:
            confirmed.clear()
        found: set[uuid.UUID] = set()
        for chunk in _chunks(stale):
            for dek_id, state, wrapped in (await session.execute(_KEY_STATES, {"ids": list(chunk)})).all():
                found.add(dek_id)
                # Labelled with the version read before this query: if an erasure commits after it, the
                # version moves and the label no longer matches.
                if self._absorb(dek_id, state, wrapped) is not None and version is not None:
                    confirmed[dek_id] = version
        for dek_id in stale:
            if dek_id not in found:
                cache.forget(dek_id)
                confirmed.pop(dek_id, None)

    async def _security_version(self, session: AsyncSession) -> int | None:
        """``security_state.version``, read at most every ``key_state_poll_seconds``; None if there is no row."""
        now = time.monotonic()
        if self._state_version is not None and now - self._state_checked_at < self._state_poll_seconds:
            return self._state_version
        version = (await session.execute(select(SecurityState.version).where(SecurityState.id == 1))
                   ).scalar_one_or_none()
        if version != self._state_version:
            self._confirmed.clear()
        self._state_version, self._state_checked_at = version, now
        return version

    def _ledger_file_stamp(self) -> tuple[int, int, int] | None:
        try:
            status = self._ledger.path.stat()
        except OSError:
            return None
        return status.st_ino, status.st_size, status.st_mtime_ns

    def _follow_ledger(self) -> None:
        """Refuse the DEKs of erasures appended to the ledger since the last look (by any process on this host)."""
        stamp = self._ledger_file_stamp()
        if stamp == self._ledger_stamp:
            return
        self._confirmed.clear()
        try:
            destroyed = self._ledger.destroyed_dek_ids()
        except CryptoError as error:
            # Fail closed: with the stamp left as it was, every call asks the database for every key's state.
            if stamp != self._ledger_error_stamp:
                self._ledger_error_stamp = stamp
                log.warning("erasure ledger unreadable; data key states are read from the database on every request",
                            error=str(error))
            return
        for dek_id in destroyed:
            self._cache.mark_destroyed(dek_id)
        self._ledger_stamp = stamp

    def _absorb(self, dek_id: uuid.UUID, state: str, wrapped: bytes | WrappedDek | None) -> DataKey | None:
        if state == DekState.DESTROYED or wrapped is None:
            self._cache.mark_destroyed(dek_id)
            return None
        try:
            return self._cache.resolve(dek_id)
        except KeyDestroyed:
            return None
        except UnknownKey:
            pass
        try:
            wrapped_dek = wrapped if isinstance(wrapped, WrappedDek) else WrappedDek.from_bytes(wrapped)
            return self._cache.add_wrapped(wrapped_dek)
        except UnknownKey:
            self._report_missing_kek(wrapped_dek.kek_version)
            return None  # opening reports it as undecryptable
        except CryptoError:
            return None

    def _report_missing_kek(self, kek_version: int) -> None:
        """Say once per version that this process's keyring lacks a KEK version some DEKs are wrapped under."""
        if kek_version in self._reported_missing_keks:
            return
        self._reported_missing_keks.add(kek_version)
        log.warning("the keyring lacks a KEK version that data keys are wrapped under; values sealed under those "
                    "keys are undecryptable in this process until its keyring copy is replaced with the current one",
                    kek_version=kek_version, held_versions=list(self._provider.kek_versions()))

    def open_field(self, entity: EntitySpec, record: Any, name: str) -> str | Unreadable | None:
        """The plaintext of ``record.<name>``, None, or ``Unreadable``. Never raises on stored data.

        A sealed value opens only in the table, column and row it was sealed for, and only while its DEK is
        cached (``prepare``) and not destroyed: otherwise ``ERASED`` (the subject was erased) or
        ``UNDECRYPTABLE`` (altered, moved, or key missing). Fields that are not encrypted, and plaintext left
        from before encryption was enabled (sealed by ``strongroom keys reencrypt``), are returned as stored.
        """
        return self.open_value(entity, name, record.id, getattr(record, name))

    def open_value(
        self, entity: EntitySpec, name: str, record_id: uuid.UUID | str, value: Any
    ) -> str | Unreadable | None:
        """``open_field`` for a value read elsewhere (an audit event's before/after), bound to ``record_id``."""
        layout = self._entities.get(entity.name)
        if layout is None or name not in layout.columns:
            return value if value is None or isinstance(value, str | Unreadable) else UNDECRYPTABLE
        return self.open_in(layout, name, record_id, value)

    def open_in(
        self, layout: EncryptedEntity, name: str, record_id: uuid.UUID | str, value: Any
    ) -> str | Unreadable | None:
        """Open a value of encrypted field ``name`` of ``layout`` (see ``open_field``)."""
        if value is None:
            return None
        if isinstance(value, Unreadable):
            return value
        if not isinstance(value, str):
            return UNDECRYPTABLE
        if not value.startswith(SEALED_PREFIX):
            return value
        try:
            return open_sealed(value, keys=self._cache, table=layout.table, column=layout.columns[name],
                               record_id=record_id)
        except KeyDestroyed:
            return ERASED
        except (CryptoError, ValueError):
            return UNDECRYPTABLE

    # -------------------------------------------------------------------------------------- blind indexes

    def _normaliser(self, name: str) -> Normaliser:
        specific = self._normalisers.get(name)
        if specific is None:
            return normalise_text

        def with_fallback(value: str) -> str:
            try:
                return specific(value)
            except NormalisationError:
                # Not a well-formed email/phone/id: index its plain text, so the same spelling still matches.
                return normalise_text(value)

        return with_fallback

    def normalise(self, entity: EntitySpec, name: str, value: str) -> str:
        """The canonical spelling of ``value`` that ``name``'s blind index is taken over.

        Raises:
            NormalisationError: Blank.
        """
        del entity  # one rule per field name across entities
        return self._normaliser(name)(value)

    def blind_index(self, entity: EntitySpec, name: str, value: str) -> int:
        """The blind index of ``value`` for ``entity.name`` (signed 32-bit), after normalising per field.

        Email: case-folded; phone and mobile: E.164 with the default country code; national id: separators
        removed, upper case; values that do not parse as such, and other fields: NFKC, trimmed. Equal values
        give equal indexes; about one unrelated value in 2**32 collides, so open candidates and compare with
        ``same_value``.

        Raises:
            NormalisationError: Blank value (a ``ValueError``).
        """
        return self._indexer.index(entity.name, name, value, normaliser=self._normaliser(name))

    def blind_index_or_none(self, entity_name: str, name: str, value: str) -> int | None:
        """The blind index of ``value`` in ``entity_name.name``, None for a blank value (what gets stored)."""
        try:
            return self._indexer.index(entity_name, name, value, normaliser=self._normaliser(name))
        except NormalisationError:
            return None

    def blind_index_column(self, name: str) -> str:
        """The blind-index column of field ``name``: ``"<name>_bidx"``."""
        return f"{name}_bidx"

    def same_value(self, entity: EntitySpec, name: str, left: str, right: str) -> bool:
        """Whether two plaintexts are equal after ``name``'s normalisation (to confirm blind-index candidates)."""
        normaliser = self._normaliser(name)
        try:
            return normaliser(left) == normaliser(right)
        except NormalisationError:
            return left.strip() == right.strip()

    # ----------------------------------------------------------------------------------------------- DEKs

    def _file_stamp(self) -> tuple[int, int] | None:
        if not isinstance(self._provider, FileKeyProvider):
            return None
        try:
            status = self._provider.path.stat()
        except OSError:
            return None
        return status.st_ino, status.st_mtime_ns

    def refresh_keyring(self) -> None:
        """Re-read the keyring file if another process rotated it, so new DEKs wrap under the newest KEK."""
        stamp = self._file_stamp()
        if stamp is not None and stamp != self._keyring_stamp and isinstance(self._provider, FileKeyProvider):
            self._provider.reload()
            self._keyring_stamp = stamp

    def _memo(self, session: AsyncSession) -> dict[uuid.UUID, DataKey]:
        transaction = session.sync_session.get_transaction()
        memo = session.info.get(_ACTIVE_MEMO)
        if memo is None or memo[0] is not transaction:
            memo = session.info[_ACTIVE_MEMO] = (transaction, {})
        return memo[1]

    async def active_dek(self, session: AsyncSession, subject_id: uuid.UUID, *, create: bool = True) -> DataKey:
        """The subject's active DEK, created and stored in the session's transaction if it has none.

        On PostgreSQL the DEK row is read ``FOR SHARE``, so an erasure or a DEK rotation of this subject waits
        for this transaction, and this transaction never seals under a DEK destroyed meanwhile.

        Raises:
            UnknownKey: ``create`` is false and the subject has no active DEK, or its KEK version is not held.
            DecryptionError: The active DEK does not unwrap with this keyring.
        """
        memo = self._memo(session)
        dek = memo.get(subject_id)
        if dek is not None:
            return dek
        for _attempt in range(3):
            dek = await self._read_active(session, subject_id)
            if dek is None:
                if not create:
                    raise UnknownKey(f"subject {subject_id} has no active DEK")
                dek = await self.create_dek(session, subject_id)
            if dek is not None:
                memo[subject_id] = dek
                return dek
        raise UnknownKey(f"could not create or load an active DEK for subject {subject_id}")

    async def _read_active(self, session: AsyncSession, subject_id: uuid.UUID) -> DataKey | None:
        query = (
            select(_data_keys.c.id, _data_keys.c.wrapped)
            .where(_data_keys.c.subject_id == subject_id, _data_keys.c.state == DekState.ACTIVE)
            .with_for_update(read=True)
        )
        row = (await session.execute(query)).first()
        if row is None:
            return None
        try:
            try:
                return self._cache.resolve(row.id)
            except UnknownKey:
                return self._cache.add_wrapped(WrappedDek.from_bytes(row.wrapped))
        except KeyDestroyed:
            # The ledger says this DEK was destroyed but the database still has it active (a restore that
            # has not re-applied erasures yet): finish the erasure of that key, then seal under a new one.
            # Any other failure to unwrap (a KEK version missing from the keyring) propagates: never replace
            # a key just because this process cannot read it.
            await self._destroy_rows(session, [row.id])
            return None

    async def create_dek(
        self, session: AsyncSession, subject_id: uuid.UUID, *, replacing: uuid.UUID | None = None
    ) -> DataKey | None:
        """Insert a new active DEK for the subject (inside a savepoint); None if another one won the race.

        With ``replacing``, that active DEK first becomes ``retired`` (DEK rotation) in the same savepoint.
        """
        self.refresh_keyring()
        dek = DataKey.generate(self._provider.suite)
        wrapped = self._provider.wrap_dek(dek)
        now = _now()
        # A savepoint on the session's connection, not Session.begin_nested(): that would flush the caller's
        # pending objects now, half built and in an order the caller did not choose.
        connection = await session.connection()
        try:
            async with connection.begin_nested():
                generation = (await connection.execute(
                    select(func.coalesce(func.max(_data_keys.c.generation), 0))
                    .where(_data_keys.c.subject_id == subject_id)
                )).scalar_one()
                if replacing is not None:
                    await connection.execute(
                        update(_data_keys)
                        .where(_data_keys.c.id == replacing, _data_keys.c.state == DekState.ACTIVE)
                        .values(state=DekState.RETIRED, retired_at=now)
                    )
                await connection.execute(insert(_data_keys).values(
                    id=dek.id, subject_id=subject_id, generation=int(generation) + 1, state=DekState.ACTIVE,
                    suite=int(dek.suite), kek_version=wrapped.kek_version, wrapped=wrapped.to_bytes(),
                    token_prefix=token_prefix(dek.id, dek.suite), created_at=now,
                ))
                if replacing is not None:
                    await connection.execute(
                        update(_data_keys).where(_data_keys.c.id == replacing).values(replaced_by=dek.id)
                    )
        except IntegrityError:
            return None
        self._cache.add(dek)
        self._memo(session)[subject_id] = dek
        return dek

    async def subject_deks(self, session: AsyncSession, subject_id: uuid.UUID) -> dict[str, str]:
        """Every DEK of the subject as token prefix -> state, with the readable ones loaded into the cache."""
        rows = (await session.execute(
            select(_data_keys.c.id, _data_keys.c.state, _data_keys.c.wrapped, _data_keys.c.token_prefix)
            .where(_data_keys.c.subject_id == subject_id)
        )).all()
        for dek_id, state, wrapped, _prefix in rows:
            self._absorb(dek_id, state, wrapped)
        return {prefix: state for _dek_id, state, _wrapped, prefix in rows}

    async def lock_subject_deks(
        self, session: AsyncSession, subject_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[DekInfo]]:
        """Every DEK of these subjects, locked (``FOR UPDATE``), readable ones loaded into the cache (key jobs)."""
        found: dict[uuid.UUID, list[DekInfo]] = {subject: [] for subject in subject_ids}
        for chunk in _chunks(list(subject_ids)):
            rows = (await session.execute(
                select(_data_keys.c.id, _data_keys.c.subject_id, _data_keys.c.state, _data_keys.c.wrapped,
                       _data_keys.c.token_prefix, _data_keys.c.generation, _data_keys.c.created_at)
                .where(_data_keys.c.subject_id.in_(chunk))
                .order_by(_data_keys.c.id)
                .with_for_update()
            )).all()
            for dek_id, subject, state, wrapped, prefix, generation, created_at in rows:
                key = self._absorb(dek_id, state, wrapped)
                found[subject].append(DekInfo(dek_id, state, prefix, generation, created_at, key))
        return found

    async def replace_deks(
        self, session: AsyncSession, replacing: Mapping[uuid.UUID, DekInfo], next_generation: Mapping[uuid.UUID, int]
    ) -> dict[uuid.UUID, DataKey]:
        """DEK rotation for many subjects at once: each active DEK in ``replacing`` (subject -> DEK, locked by
        ``lock_subject_deks``) becomes ``retired`` and a new active DEK takes its place. Returns the new DEKs.
        """
        if not replacing:
            return {}
        self.refresh_keyring()
        now = _now()
        connection = await session.connection()
        new: dict[uuid.UUID, DataKey] = {}
        rows: list[dict[str, Any]] = []
        for subject in replacing:
            dek = DataKey.generate(self._provider.suite)
            wrapped = self._provider.wrap_dek(dek)
            new[subject] = dek
            rows.append({"id": dek.id, "subject_id": subject, "generation": next_generation[subject],
                         "state": DekState.ACTIVE, "suite": int(dek.suite), "kek_version": wrapped.kek_version,
                         "wrapped": wrapped.to_bytes(), "token_prefix": token_prefix(dek.id, dek.suite),
                         "created_at": now})
        for chunk in _chunks([info.id for info in replacing.values()]):
            await connection.execute(
                update(_data_keys).where(_data_keys.c.id.in_(chunk), _data_keys.c.state == DekState.ACTIVE)
                .values(state=DekState.RETIRED, retired_at=now))
        await connection.execute(insert(_data_keys), rows)
        await connection.execute(
            update(_data_keys).where(_data_keys.c.id == bindparam("b_old")).values(replaced_by=bindparam("b_new")),
            [{"b_old": replacing[subject].id, "b_new": dek.id} for subject, dek in new.items()])
        memo = self._memo(session)
        for subject, dek in new.items():
            self._cache.add(dek)
            memo[subject] = dek
        return new

    def forget_active(self, session: AsyncSession, subject_id: uuid.UUID) -> None:
        """Drop the session's memo of the subject's active DEK (after rotating or destroying it)."""
        self._memo(session).pop(subject_id, None)

    # -------------------------------------------------------------------------------------------- erasure

    async def erase_subject(
        self, session: AsyncSession, subject_id: uuid.UUID, *, actor: str, legal_basis: str
    ) -> list[uuid.UUID]:
        """Crypto-shred a data subject: every value sealed under its DEKs becomes unreadable, everywhere.

        In order: the subject's DEK rows are locked; the erasure is appended to the ledger beside the keyring
        (fsync'd: from then on the erasure holds even if this transaction rolls back, and every process refuses
        these DEKs at its next start or ``prepare``); the DEK rows become ``destroyed`` with their wrapped key
        removed; the blind indexes of the subject's rows are cleared, and any plaintext left in their encrypted
        columns from before encryption was enabled is removed (NULL, or '' where the column is NOT NULL).
        Commit the session afterwards; record the erasure in the audit trail in the same transaction
        (``ledger.head()`` gives the ledger MAC to put there). The row updates are SQL statements: ORM
        instances of the subject already loaded in ``session`` keep their old attribute values.

        Args:
            session: The unit of work (commit it afterwards).
            subject_id: The customer id.
            actor: Who erased (recorded in the ledger).
            legal_basis: Why (for example ``"GDPR Art. 17 request #123"``).

        Returns:
            The ids of the DEKs destroyed now (empty if the subject had none left).
        """
        rows = (await session.execute(
            select(_data_keys.c.id)
            .where(_data_keys.c.subject_id == subject_id, _data_keys.c.state != DekState.DESTROYED)
            .order_by(_data_keys.c.id)
            .with_for_update()
        )).all()
        dek_ids = [row.id for row in rows]
        if dek_ids:
            await asyncio.to_thread(self._ledger.append, subject_id=subject_id, dek_ids=dek_ids, actor=actor,
                                    legal_basis=legal_basis)
            await self._destroy_rows(session, dek_ids)
        for layout in self._entities.values():
            table: Table = layout.model.__table__
            subject = table.c[layout.subject_column]
            clear = {f"{name}_bidx": None for name in layout.blind_indexed}
            if clear:
                await session.execute(update(table).where(subject == subject_id)
                                      .values(**clear, updated_at=table.c.updated_at))
            for column_name in layout.columns.values():
                column = table.c[column_name]
                blank = None if column.nullable else ""
                await session.execute(
                    update(table)
                    .where(subject == subject_id, column.is_not(None), column != "",
                           func.substr(column, 1, len(SEALED_PREFIX)) != SEALED_PREFIX)
                    .values({column_name: blank, "updated_at": table.c.updated_at})
                )
        self.forget_active(session, subject_id)
        return dek_ids

    async def _destroy_rows(self, session: AsyncSession, dek_ids: Sequence[uuid.UUID]) -> None:
        """Destroy the DEK rows and tell every process: the security-state version moves in this transaction."""
        now = _now()
        for chunk in _chunks(list(dek_ids)):
            await session.execute(
                update(_data_keys).where(_data_keys.c.id.in_(chunk))
                .values(state=DekState.DESTROYED, wrapped=None, kek_version=None, destroyed_at=now)
            )
        await bump_security_version(session)
        for dek_id in dek_ids:
            self._cache.mark_destroyed(dek_id)

    async def reapply_ledger(self, session: AsyncSession) -> list[uuid.UUID]:
        """Destroy again every DEK the erasure ledger lists that the database still holds (after a restore).

        A backup taken before an erasure still holds the subject's wrapped DEKs; after restoring it, call this
        in a write transaction and commit. Blind indexes of values sealed under those DEKs are cleared too.

        Returns:
            The DEK ids that were still present and are destroyed now.

        Raises:
            ValueError: The ledger is unreadable or its MAC chain is broken.
        """
        try:
            records = await asyncio.to_thread(self._ledger.read_all)
        except CryptoError as error:
            raise ValueError(str(error)) from None
        listed = sorted({dek_id for record in records for dek_id in record.dek_ids})
        still: list[tuple[uuid.UUID, uuid.UUID, str]] = []
        for chunk in _chunks(listed):
            still.extend((await session.execute(
                select(_data_keys.c.id, _data_keys.c.subject_id, _data_keys.c.token_prefix)
                .where(_data_keys.c.id.in_(chunk),
                       (_data_keys.c.state != DekState.DESTROYED) | _data_keys.c.wrapped.is_not(None))
                .with_for_update()
            )).all())
        if not still:
            for dek_id in listed:
                self._cache.mark_destroyed(dek_id)
            return []
        await self._destroy_rows(session, [dek_id for dek_id, _subject, _prefix in still])
        prefixes = sorted({prefix for _dek, _subject, prefix in still})
        subjects = sorted({subject for _dek, subject, _prefix in still})
        for layout in self._entities.values():
            table: Table = layout.model.__table__
            for name in layout.blind_indexed:
                column = table.c[layout.columns[name]]
                for chunk in _chunks(subjects):
                    await session.execute(
                        update(table)
                        .where(table.c[layout.subject_column].in_(chunk),
                               func.substr(column, 1, TOKEN_PREFIX_CHARS).in_(prefixes))
                        .values({f"{name}_bidx": None, "updated_at": table.c.updated_at})
                    )
        for subject in subjects:
            self.forget_active(session, subject)
        for dek_id in listed:
            self._cache.mark_destroyed(dek_id)
        return [dek_id for dek_id, _subject, _prefix in still]
