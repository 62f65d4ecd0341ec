"""The code's migration graph, to tell whether a backup's schema revision is one this code can restore."""

from __future__ import annotations

from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from server.db import MIGRATIONS_DIR

__all__ = ["code_head", "is_known_revision"]


def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config)


def code_head() -> str:
    """The newest revision this code migrates to."""
    head = _scripts().get_current_head()
    if head is None:
        raise RuntimeError("the migrations have no head")
    return head


def is_known_revision(revision: str | None) -> bool:
    """Whether ``revision`` is in this code's migration graph (None, an empty database, always is).

    A revision the code does not know was made by a newer Strongroom: this code cannot migrate from it and
    would run against tables it does not understand.
    """
    if revision is None:
        return True
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False
