"""Database engine and sessions: SQLite (WAL, foreign keys) by default, PostgreSQL in production."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

from sqlalchemy import event, exc, text
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from server.file_ownership import give_file_to_directory_owner
from server.sqlite_adapter import one_hop_dbapi

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


WRITE_OPTION = "strongroom_write"
# SQLite: a read_transaction runs its statements without BEGIN (each reads the latest commit on its own).
READ_OPTION = "strongroom_read"


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # Transactions are begun by _sqlite_begin below, not implicitly by the driver.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed while one writer commits; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # A unit of work that reads and then writes must hold SQLite's write lock from its start: a deferred
    # transaction whose snapshot is overtaken by another writer cannot upgrade (SQLITE_BUSY_SNAPSHOT), and
    # the audit chain head must be read under the same lock that appends to it.
    options = connection.get_execution_options()
    if options.get(READ_OPTION, False):
        return  # a read_transaction: each statement reads on its own, as on PostgreSQL
    connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get(WRITE_OPTION, False) else "BEGIN")


# How long a writer of this process waits for another of this process before giving up, as SQLite's
# busy_timeout (above) bounds a wait for another process.
GATE_WAIT_SECONDS: Final = 10.0


class SqliteWriteGate:
    """Hands SQLite's write lock from one writer to the next as soon as it is free.

    SQLite lets one connection write at a time. A connection that finds the lock taken sleeps and tries again,
    1, 2, 5, 10 ... up to 100 ms apart, so with two server processes writing (read events, changes) a writer
    often sleeps long after the lock came free while its requests wait: measured, two workers served no more
    audited reads than one. Writers first queue here instead: within a process on an asyncio lock, across
    processes on an OS file lock beside the database (``flock``), which the kernel hands to the next waiter the
    moment it is released, and releases by itself if its holder dies. Their ``BEGIN IMMEDIATE`` then rarely
    waits. SQLite's own lock still guarantees that one connection writes at a time; this only orders the queue.
    """

    def __init__(self, database: Path) -> None:
        self._path = database.with_name(database.name + "-writer.lock")
        self._fd: int | None = None
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Hold the gate for the duration of one write transaction."""
        lock = self._local_lock()
        handed_over = False  # set when a cancelled wait leaves the release of ``lock`` to its thread
        async with asyncio.timeout(GATE_WAIT_SECONDS):
            await lock.acquire()
        fd = self._file()
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # Another process writes: wait in a thread, woken by the kernel the moment it lets go. Its
                # transaction always ends (commit, rollback, or its death), so this wait needs no timeout.
                waiting = asyncio.ensure_future(asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX))
                try:
                    await asyncio.shield(waiting)
                except asyncio.CancelledError:
                    # The thread still gets the file lock in the end: it is given back at once, and only then
                    # may the next task of this process queue for it.
                    waiting.add_done_callback(functools.partial(_give_back, fd, lock))
                    handed_over = True
                    raise
        except BaseException:
            if not handed_over:
                lock.release()
            raise
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            lock.release()

    def _local_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop = asyncio.Lock(), loop
        return self._lock

    def _file(self) -> int:
        if self._fd is None:
            # A command run as root (`backup restore`) must not leave a lock file the server's user cannot open.
            give_file_to_directory_owner(self._path)
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            weakref.finalize(self, os.close, self._fd)  # the gate lives as long as its engine
        return self._fd


def _give_back(fd: int, lock: asyncio.Lock, waited: asyncio.Future[None]) -> None:
    """After a cancelled wait: release the file lock if the thread took it, then the process's turn."""
    if not waited.cancelled() and waited.exception() is None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    lock.release()


_GATES: weakref.WeakKeyDictionary[Any, SqliteWriteGate] = weakref.WeakKeyDictionary()


def write_gate(engine: AsyncEngine) -> contextlib.AbstractAsyncContextManager[None]:
    """What a write transaction on ``engine`` holds first: the SQLite write gate, or nothing (PostgreSQL)."""
    gate = _GATES.get(engine.sync_engine)
    return gate.hold() if gate is not None else contextlib.nullcontext()


@asynccontextmanager
async def write_transaction(session: AsyncSession) -> AsyncIterator[None]:
    """A transaction that will write: on SQLite it takes the write lock at BEGIN; on PostgreSQL it is plain."""
    bind = session.bind
    async with write_gate(bind) if isinstance(bind, AsyncEngine) else contextlib.nullcontext(), session.begin():
        await session.connection(execution_options={WRITE_OPTION: True})
        yield


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """Create the async engine for ``url`` with the per-dialect settings Strongroom relies on."""
    if url.startswith("sqlite"):
        database = url.split(":///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, module=one_hop_dbapi(), **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        if database and database != ":memory:":
            _GATES[engine.sync_engine] = SqliteWriteGate(Path(database))
        return engine
    # 20 kept connections per process: a pool smaller than a worker's concurrent requests (plus the audit
    # writers) closes its overflow connections on return and opens new ones under load, each a PostgreSQL
    # backend start and a TLS handshake (measured: 58 backends started in 4 s at 16 clients with 10 kept).
    engine = create_async_engine(url, pool_size=20, max_overflow=10, **kwargs)
    event.listen(engine.sync_engine.pool, "checkin", _note_return)
    event.listen(engine.sync_engine.pool, "checkout", _ping_if_idle)
    return engine


# A pooled PostgreSQL connection idle for longer than this is pinged before it is handed out. SQLAlchemy's
# pre-ping pings at every check-out, and on asyncpg a ping is three round trips (BEGIN, an empty query,
# ROLLBACK): as many as the rest of a single read. A connection in steady use was working a moment ago; one
# that a database restart broke in that moment fails its statement instead, the pool then replaces every
# connection older than the failure, and the request answers 503 (``server.api.problems``).
IDLE_PING_SECONDS: Final = 2.0


def _note_return(_dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
    record.info["returned_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, _proxy: Any) -> None:
    returned = record.info.get("returned_at")
    if returned is None or time.monotonic() - returned < IDLE_PING_SECONDS:
        return
    try:
        dbapi_connection.ping()  # the asyncpg adapter's ping, run inside the pool's greenlet
    except Exception as error:
        raise exc.DisconnectionError("a pooled connection no longer answers") from error  # the pool replaces it


@asynccontextmanager
async def read_transaction(session: AsyncSession) -> AsyncIterator[None]:
    """A unit of work that only reads. On PostgreSQL its statements run without BEGIN and COMMIT, two of the four
    round trips a single read made (with its record's query and the read event's append): under READ COMMITTED
    each statement takes its own snapshot inside a transaction too, so a reader sees the same. Nothing in it may
    write or lock rows. On SQLite, likewise, no BEGIN: each statement reads the latest commit, and with nothing
    begun the commit and the pool's rollback cost no call to the connection's thread (server.sqlite_adapter)."""
    async with session.begin():
        if session.get_bind().dialect.name == "postgresql":
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        else:
            await session.connection(execution_options={READ_OPTION: True})
        yield


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded values after commit (responses are built after the transaction)."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the schema at ``url`` to ``revision`` with Alembic (the only schema path)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    command.upgrade(config, revision)


def current_revision(url: str) -> str | None:
    """The schema revision recorded in the database, or None for an empty database."""

    async def read() -> str | None:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                has_table = await connection.run_sync(
                    lambda sync: sync.dialect.has_table(sync, "alembic_version")
                )
                if not has_table:
                    return None
                return (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        finally:
            await engine.dispose()

    return asyncio.run(read())
