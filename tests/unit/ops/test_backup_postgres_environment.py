"""PostgreSQL tools get the connection through libpq variables: never on the command line, never a stale PG*."""

from __future__ import annotations

import pytest

from server.ops.backup.errors import BackupError
from server.ops.backup.postgres import libpq_environment, with_database


def test_the_url_becomes_libpq_variables() -> None:
    env = libpq_environment("postgresql+asyncpg://crm:s%40cret%2Fpw@db.internal:6432/strongroom?ssl=require",
                            base={"PATH": "/usr/bin", "PGPASSWORD": "stale", "PGHOST": "elsewhere"})
    assert env["PGHOST"] == "db.internal"
    assert env["PGPORT"] == "6432"
    assert env["PGUSER"] == "crm"
    assert env["PGPASSWORD"] == "s@cret/pw"
    assert env["PGDATABASE"] == "strongroom"
    assert env["PGSSLMODE"] == "require"
    assert env["PATH"] == "/usr/bin"


def test_no_stale_pg_variables_and_no_password_when_the_url_has_none() -> None:
    env = libpq_environment("postgresql+asyncpg://postgres@127.0.0.1/crm", base={"PGPASSWORD": "stale",
                                                                                  "PGSERVICE": "x"})
    assert "PGPASSWORD" not in env and "PGSERVICE" not in env
    assert "PGPORT" not in env


@pytest.mark.parametrize(("query", "mode"), [("ssl=true", "require"), ("sslmode=verify-full", "verify-full"),
                                              ("ssl=disable", "disable")])
def test_ssl_options(query: str, mode: str) -> None:
    assert libpq_environment(f"postgresql+asyncpg://u@h/db?{query}", base={})["PGSSLMODE"] == mode


def test_unknown_url_options_are_refused_rather_than_ignored() -> None:
    with pytest.raises(BackupError, match="target_session_attrs"):
        libpq_environment("postgresql+asyncpg://u@h/db?target_session_attrs=read-write", base={})
    with pytest.raises(BackupError, match="ssl"):
        libpq_environment("postgresql+asyncpg://u@h/db?ssl=sometimes", base={})


def test_scratch_database_url_keeps_the_login() -> None:
    assert with_database("postgresql+asyncpg://u:p%40w@h:5432/crm", "strongroom_verify_ab") == \
        "postgresql+asyncpg://u:p%40w@h:5432/strongroom_verify_ab"
