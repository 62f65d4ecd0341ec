"""PostgreSQL's own tools for backups: ``pg_dump`` out, ``pg_restore`` piped into ``psql`` back in.

Connection details reach the tools through the libpq environment (``PGHOST``, ``PGUSER``, ``PGPASSWORD`` ...),
never through the command line, where any local user could read them in the process list, and never in a log
or a message. Messages quote at most the first error line of a tool, without its DETAIL or CONTEXT lines
(which may hold row values).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Final

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from server.ops.backup.errors import BackupError

__all__ = [
    "create_scratch_database",
    "database_name",
    "drop_database",
    "dump",
    "libpq_environment",
    "restore",
    "with_database",
]

SCRATCH_PREFIX: Final = "strongroom_verify_"
_INSUFFICIENT_PRIVILEGE: Final = "42501"

TOOL_DIRS: Final = ("/usr/bin", "/usr/local/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")
_SSL_MODES: Final = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
_PUMP_BYTES: Final = 1 << 16

# Run first, in the restore's transaction: drop what the target's public schema holds, so that a database at a
# newer revision than the backup ends up exactly at the backup's revision (tables a later migration added would
# otherwise survive and break the migrations run after the restore). Objects that belong to an extension stay.
_EMPTY_PUBLIC_SCHEMA: Final = """
SET client_min_messages = warning;
DO $strongroom$
DECLARE item record;
BEGIN
    FOR item IN SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
                  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
                ORDER BY c.relkind
    LOOP
        EXECUTE format('DROP %s IF EXISTS public.%I CASCADE',
                       CASE item.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                         WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
                       item.relname);
    END LOOP;
    FOR item IN SELECT p.oid::regprocedure AS signature FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = 'public'
                  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format('DROP ROUTINE IF EXISTS %s CASCADE', item.signature);
    END LOOP;
    FOR item IN SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'r', 'm') AND t.typrelid = 0
                  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = t.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format('DROP TYPE IF EXISTS public.%I CASCADE', item.typname);
    END LOOP;
END $strongroom$;
RESET client_min_messages;
"""


def database_name(url: str) -> str:
    """The database an SQLAlchemy URL names."""
    name = make_url(url).database
    if not name:
        raise BackupError("the PostgreSQL URL names no database")
    return name


def with_database(url: str, name: str) -> str:
    """The same server and login, another database (the password kept, as an SQLAlchemy URL string)."""
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def _run_outside_transaction(url: str, statement: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text(statement))
    finally:
        await engine.dispose()


async def create_scratch_database(url: str) -> str:
    """Create an empty database ``strongroom_verify_<random>`` on the server of ``url``; return its URL.

    Raises:
        BackupError: The login role lacks the CREATEDB privilege, or the server is unreachable.
    """
    name = f"{SCRATCH_PREFIX}{secrets.token_hex(6)}"
    try:
        await _run_outside_transaction(url, f'CREATE DATABASE "{name}" TEMPLATE template0')
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) == _INSUFFICIENT_PRIVILEGE:
            raise BackupError(
                f"cannot create the scratch database {name}: the role {make_url(url).username!r} lacks the "
                "CREATEDB privilege (grant it, or verify with STRONGROOM_DATABASE_URL naming a server and role "
                "that may create databases)") from None
        raise BackupError(f"cannot create the scratch database {name} ({type(error.orig).__name__})") from None
    except (SQLAlchemyError, OSError) as error:
        raise BackupError(f"cannot reach the database server ({type(error).__name__})") from None
    return with_database(url, name)


async def drop_database(url: str, name: str) -> None:
    """Drop database ``name`` on the server of ``url``, closing any session still in it."""
    await _run_outside_transaction(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def libpq_environment(url: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for ``pg_dump``/``pg_restore``/``psql``: ``base`` (default ``os.environ``) without any
    ``PG*`` variable, plus the connection of the SQLAlchemy ``postgresql+asyncpg://`` URL in libpq variables.

    Raises:
        BackupError: The URL has an option libpq cannot be told about.
    """
    parsed = make_url(url)
    env = {key: value for key, value in (os.environ if base is None else base).items() if not key.startswith("PG")}
    values = {
        "PGHOST": parsed.host,
        "PGPORT": str(parsed.port) if parsed.port else None,
        "PGUSER": parsed.username,
        "PGPASSWORD": parsed.password,
        "PGDATABASE": parsed.database,
    }
    for key, raw in parsed.query.items():
        value = raw if isinstance(raw, str) else raw[-1]
        if key in {"ssl", "sslmode"}:
            mode = {"true": "require", "false": "disable"}.get(value.lower(), value.lower())
            if mode not in _SSL_MODES:
                raise BackupError(f"database URL option {key}={value!r} has no libpq equivalent")
            values["PGSSLMODE"] = mode
        elif key in {"host", "port", "user", "password", "dbname"}:
            values[{"dbname": "PGDATABASE"}.get(key, f"PG{key.upper()}")] = value
        elif key in {"sslrootcert", "sslcert", "sslkey", "application_name", "connect_timeout"}:
            values[f"PG{key.upper()}"] = value
        elif key not in {"prepared_statement_cache_size", "command_timeout", "timeout"}:
            raise BackupError(f"database URL option {key!r} is not understood by the backup tools")
    env.update({key: value for key, value in values.items() if value})
    env.setdefault("PGAPPNAME", "strongroom-backup")
    env["PGCONNECT_TIMEOUT"] = env.get("PGCONNECT_TIMEOUT", "10")
    return env


def _tool(name: str) -> str:
    found = shutil.which(name) or next(
        (str(Path(folder) / name) for folder in TOOL_DIRS if os.access(Path(folder) / name, os.X_OK)), None)
    if found is None:
        raise BackupError(f"{name} not found (install the PostgreSQL client tools of the server's major version)")
    return found


def _first_error(stderr: IO[bytes], tool: str) -> str:
    """The tool's first error line, without DETAIL/CONTEXT lines, which can quote row values."""
    stderr.seek(0)
    lines = stderr.read(1 << 20).decode("utf-8", "replace").splitlines()
    for line in lines:
        stripped = line.strip()
        if any(marker in stripped for marker in ("ERROR:", "FATAL:", "error:", "fatal:")):
            return stripped[:300]
    return f"{tool} failed without an error message"


def dump(url: str, snapshot: str | None, consume: Callable[[IO[bytes]], object]) -> None:
    """Run ``pg_dump --format=custom`` of the URL's database and hand its output stream to ``consume``.

    Args:
        url: The SQLAlchemy URL of the database.
        snapshot: An exported snapshot id (``pg_export_snapshot()``) to dump exactly, or None.
        consume: Reads the archive from the pipe until the end (the encryptor).

    Raises:
        BackupError: ``pg_dump`` is missing or failed (its first error line, e.g. a refused login).
    """
    command = [_tool("pg_dump"), "--format=custom", "--no-password"]
    if snapshot is not None:
        command.append(f"--snapshot={snapshot}")
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,  # noqa: S603 - fixed argv, no shell
                                   env=libpq_environment(url))
        assert process.stdout is not None
        try:
            consume(process.stdout)
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            process.stdout.close()
        if process.wait() != 0:
            raise BackupError(f"pg_dump failed: {_first_error(stderr, 'pg_dump')}")


def restore(url: str, produce: Callable[[IO[bytes]], object], *, privileges: bool) -> None:
    """Replace everything in the URL's ``public`` schema with a ``pg_dump`` archive, in one transaction.

    ``produce`` writes the archive into ``pg_restore``; the SQL it turns into goes to ``psql`` after a preamble
    that empties the schema, inside ``BEGIN``. ``COMMIT`` is sent only once the archive was read to its end,
    ``pg_restore`` succeeded and ``psql`` met no error; on any failure ``psql`` is killed with the transaction
    open, so the server rolls it back and the database is left as it was.

    Args:
        url: The SQLAlchemy URL of the target database.
        produce: Writes the whole archive into the stream it is given (the decryptor).
        privileges: Restore GRANTs (needs the roles they name, e.g. ``strongroom_app``); off for scratch copies.

    Raises:
        BackupError: A tool is missing, the login failed, or the restore failed (first error line).
    """
    env = libpq_environment(url)
    restore_command = [_tool("pg_restore"), "--no-owner", "--file=-"]
    if not privileges:
        restore_command.append("--no-privileges")
    psql_command = [_tool("psql"), "--no-psqlrc", "--quiet", "--no-password", "--set=ON_ERROR_STOP=1"]
    with tempfile.TemporaryFile() as psql_errors, tempfile.TemporaryFile() as restore_errors:
        psql = subprocess.Popen(psql_command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,  # noqa: S603
                                stderr=psql_errors, env=env)
        pg_restore = subprocess.Popen(restore_command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # noqa: S603
                                      stderr=restore_errors, env=env)
        assert psql.stdin is not None and pg_restore.stdin is not None and pg_restore.stdout is not None
        failures: list[BaseException] = []

        def feed() -> None:
            assert pg_restore.stdin is not None
            try:
                produce(pg_restore.stdin)
            except BaseException as error:  # noqa: BLE001 - reported by the caller's thread below
                failures.append(error)
            finally:
                with contextlib.suppress(BrokenPipeError):
                    pg_restore.stdin.close()

        def pump() -> None:
            assert psql.stdin is not None and pg_restore.stdout is not None
            try:
                psql.stdin.write(b"BEGIN;\n" + _EMPTY_PUBLIC_SCHEMA.encode())
                while block := pg_restore.stdout.read(_PUMP_BYTES):
                    psql.stdin.write(block)
                psql.stdin.flush()
            except BrokenPipeError as error:  # psql stopped on an error: reported from its exit status
                failures.append(error)

        threads = [threading.Thread(target=feed, daemon=True), threading.Thread(target=pump, daemon=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        restore_status = pg_restore.wait()
        pg_restore.stdout.close()
        committed = False
        if not failures and restore_status == 0 and psql.poll() is None:
            try:
                psql.stdin.write(b"COMMIT;\n")
                psql.stdin.close()
                committed = psql.wait() == 0
            except BrokenPipeError:
                committed = False
        if committed:
            return
        psql_status = psql.poll()
        if psql_status is None:
            psql.kill()  # with the transaction open: the server rolls it back
            psql.wait()
        with contextlib.suppress(OSError):
            psql.stdin.close()
        if psql_status not in (None, 0):
            raise BackupError(f"restore failed in psql: {_first_error(psql_errors, 'psql')}")
        for failure in failures:
            if not isinstance(failure, BrokenPipeError):
                raise failure
        if restore_status != 0:
            raise BackupError(f"pg_restore failed: {_first_error(restore_errors, 'pg_restore')}")
        raise BackupError(f"restore failed in psql: {_first_error(psql_errors, 'psql')}")
