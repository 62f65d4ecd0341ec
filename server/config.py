"""Settings: one object, read from the environment and an optional TOML file.

Every setting has the environment name ``STRONGROOM_<NAME>`` and the same ``<name>`` (lower case) in the
TOML file named by ``STRONGROOM_CONFIG``. The environment wins over the file. Invalid values fail at start
with a message naming the setting.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

ENV_PREFIX = "STRONGROOM_"


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it."""


def _int_between(low: int, high: int) -> Callable[[str, Any], int]:
    def parse(name: str, raw: Any) -> int:
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise SettingsError(f"{ENV_PREFIX}{name.upper()}: expected an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(f"{ENV_PREFIX}{name.upper()}: must be between {low} and {high}, got {value}")
        return value

    return parse


def _text(name: str, raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise SettingsError(f"{ENV_PREFIX}{name.upper()}: expected a non-empty string, got {raw!r}")
    return raw.strip()


def _log_level(name: str, raw: Any) -> str:
    value = _text(name, raw).upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise SettingsError(f"{ENV_PREFIX}{name.upper()}: expected DEBUG, INFO, WARNING or ERROR, got {raw!r}")
    return value


def _choice(*allowed: str) -> Callable[[str, Any], str]:
    def parse(name: str, raw: Any) -> str:
        value = _text(name, raw).lower()
        if value not in allowed:
            raise SettingsError(f"{ENV_PREFIX}{name.upper()}: expected one of {', '.join(allowed)}, got {raw!r}")
        return value

    return parse


def _database_url(name: str, raw: Any) -> str:
    value = _text(name, raw)
    if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise SettingsError(
            f"{ENV_PREFIX}{name.upper()}: must start with sqlite+aiosqlite:// or postgresql+asyncpg://, "
            f"got a URL with scheme {value.split(':', 1)[0]!r}"
        )
    return value


BACKUP_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def backup_schedule_parts(text: str) -> tuple[str, int | None, int, int] | None:
    """Split a backup schedule into (kind, weekday 0-6 or None, hour, minute); None for ``off``.

    The forms are ``off``, ``hourly :MM``, ``daily HH:MM`` and ``weekly DAY HH:MM`` (DAY ``mon``..``sun``,
    24-hour server local time); server/ops/backup/schedule.py turns the parts into due times.

    Raises:
        ValueError: Not one of those forms.
    """
    words = text.lower().split()
    if words == ["off"]:
        return None
    if len(words) == 2 and words[0] == "hourly" and words[1].startswith(":"):
        kind, weekday, clock = "hourly", None, "00" + words[1]
    elif len(words) == 2 and words[0] == "daily":
        kind, weekday, clock = "daily", None, words[1]
    elif len(words) == 3 and words[0] == "weekly" and words[1] in BACKUP_WEEKDAYS:
        kind, weekday, clock = "weekly", BACKUP_WEEKDAYS.index(words[1]), words[2]
    else:
        raise ValueError(f"not a backup schedule: {text!r}")
    hour, _, minute = clock.partition(":")
    if not (len(hour) == len(minute) == 2 and (hour + minute).isascii() and (hour + minute).isdigit()
            and int(hour) < 24 and int(minute) < 60):
        raise ValueError(f"not a backup schedule: {text!r}")
    return kind, weekday, int(hour), int(minute)


def _backup_schedule(name: str, raw: Any) -> str:
    value = " ".join(_text(name, raw).lower().split())
    try:
        backup_schedule_parts(value)
    except ValueError:
        raise SettingsError(
            f"{ENV_PREFIX}{name.upper()}: expected 'off', 'hourly :MM', 'daily HH:MM' or 'weekly DAY HH:MM' "
            f"(DAY mon..sun, 24-hour time), got {raw!r}"
        ) from None
    return value


def _proxy_networks(name: str, raw: Any) -> str:
    text = str(raw).strip()
    for entry in filter(None, (part.strip() for part in text.split(","))):
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise SettingsError(f"{ENV_PREFIX}{name.upper()}: {entry!r} is not an address or CIDR network") from None
    return text


def _setting(parse: Callable[[str, Any], Any], default: Any, doc: str) -> Any:
    return field(default=default, metadata={"parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """Runtime settings. Field docs are the configuration reference (README)."""

    data_dir: str = _setting(_text, "./var", "Directory for the SQLite database, keys and backups.")
    database_url: str = _setting(
        _database_url, "", "SQLAlchemy async URL; default SQLite file `<data_dir>/strongroom.db`."
    )
    keys_dir: str = _setting(_text, "", "Directory holding key files; default `<data_dir>/keys`.")
    host: str = _setting(_text, "127.0.0.1", "Address the HTTP server binds to.")
    port: int = _setting(_int_between(1, 65535), 8000, "TCP port of the HTTP server.")
    workers: int = _setting(_int_between(1, 64), 1, "Number of server worker processes.")
    log_level: str = _setting(_log_level, "INFO", "Operational log level (DEBUG, INFO, WARNING, ERROR).")
    token_ttl_seconds: int = _setting(_int_between(60, 86400), 900, "Lifetime of access tokens in seconds.")
    max_body_bytes: int = _setting(
        _int_between(1024, 64 * 1024 * 1024), 1024 * 1024, "Largest accepted request body in bytes (413 above)."
    )
    page_size_max: int = _setting(_int_between(1, 1000), 200, "Largest page a list request may ask for.")
    idempotency_ttl_hours: int = _setting(
        _int_between(1, 24 * 30), 24, "How long an Idempotency-Key and its stored answer are kept."
    )
    trusted_proxies: str = _setting(
        _proxy_networks, "",
        "Comma-separated addresses or CIDR networks of reverse proxies whose X-Forwarded-For is believed; "
        "empty: none.")
    default_country_code: str = _setting(_text, "+86", "Country code assumed for phone numbers without one.")
    audit_checkpoint_seconds: int = _setting(
        _int_between(0, 86400), 300, "How often the server signs a checkpoint of new audit events (0: never)."
    )
    audit_checkpoint_sink: str = _setting(
        _text, "", "File that receives a copy of every checkpoint; default `<data_dir>/audit-checkpoints.log`."
    )
    audit_reads: str = _setting(
        _choice("sensitive", "all"), "sensitive",
        "Which reads are audited: `sensitive` (reads showing personal or sensitive fields in clear, every reveal "
        "and export) or `all` (also reads showing only public or masked fields).",
    )
    # Audit retention (docs/audit.md#retention): read by `strongroom audit archive`; legal holds override it.
    audit_retention_days: int = _setting(
        _int_between(1, 36500), 180,
        "Days an audit event stays in the database before `strongroom audit archive` moves it to a verifiable "
        "archive file (180: MLPS 2.0 minimum; 2190: HIPAA's six years). Events under a legal hold stay longer.",
    )
    audit_archive_dir: str = _setting(
        _text, "", "Directory that receives audit archive files; default `<data_dir>/audit-archive`."
    )
    audit_archive_max_events: int = _setting(
        _int_between(1000, 10_000_000), 1_000_000,
        "Most events per archive file; a larger backlog is archived in several files (about 100 bytes of memory "
        "per event while one is written).",
    )
    audit_archive_schedule: str = _setting(
        _backup_schedule, "off",
        "When `strongroom serve` itself archives expired audit events (`strongroom audit archive`): `off`, "
        "`hourly :MM`, `daily HH:MM` or `weekly DAY HH:MM`, server local time. Needs the schema owner's rights on "
        "PostgreSQL. An archive is the only copy of its events until the next `strongroom backup create` copies it.",
    )

    # --- Backups and the erasure ledger (issue 6; server/ops/backup) --------------------------------------
    backup_dir: str = _setting(
        _text, "", "Directory `strongroom backup` writes to and prunes; default `<data_dir>/backups`."
    )
    backup_schedule: str = _setting(
        _backup_schedule, "off",
        "When `strongroom serve` itself takes a backup (then prunes): `off`, `hourly :MM`, `daily HH:MM` or "
        "`weekly DAY HH:MM`, server local time. Leave `off` where a timer or CronJob runs the backups.",
    )
    backup_keep_daily: int = _setting(
        _int_between(0, 3660), 7, "`backup prune` keeps the newest backup of each of this many recent days."
    )
    backup_keep_weekly: int = _setting(
        _int_between(0, 520), 4, "`backup prune` keeps the newest backup of each of this many recent ISO weeks."
    )
    backup_keep_monthly: int = _setting(
        _int_between(0, 1200), 12, "`backup prune` keeps the newest backup of each of this many recent months."
    )
    erasure_ledger_path: str = _setting(
        _text, "",
        "The erasure ledger file (must be writable by the server and kept with the keys, apart from the "
        "database); default `<keys_dir>/erasure-ledger.jsonl`.",
    )

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{Path(self.data_dir).resolve() / 'strongroom.db'}"

    @property
    def resolved_keys_dir(self) -> Path:
        """Where key files live."""
        return Path(self.keys_dir) if self.keys_dir else Path(self.data_dir) / "keys"

    @property
    def resolved_checkpoint_sink(self) -> Path:
        """Where checkpoint copies are appended."""
        return Path(self.audit_checkpoint_sink) if self.audit_checkpoint_sink else Path(self.data_dir) / \
            "audit-checkpoints.log"

    @property
    def resolved_backup_dir(self) -> Path:
        """Where backups are written and pruned."""
        return Path(self.backup_dir) if self.backup_dir else Path(self.data_dir) / "backups"

    @property
    def resolved_erasure_ledger_path(self) -> Path:
        """The erasure ledger file (beside the keyring unless set)."""
        return Path(self.erasure_ledger_path) if self.erasure_ledger_path else \
            self.resolved_keys_dir / "erasure-ledger.jsonl"

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is the embedded SQLite default."""
        return self.resolved_database_url.startswith("sqlite")


def describe_settings() -> list[tuple[str, str, str]]:
    """Return (environment name, default, description) for every setting, for docs and ``--help``."""
    rows = [("STRONGROOM_CONFIG", "", "Optional TOML file with any of the settings below (lower-case names).")]
    for spec in fields(Settings):
        rows.append((f"{ENV_PREFIX}{spec.name.upper()}", str(spec.default), spec.metadata["doc"]))
    return rows


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from the TOML file (if any), the environment and explicit overrides, in rising priority.

    Raises:
        SettingsError: naming the first invalid or unknown setting.
    """
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    config_path = env.get(f"{ENV_PREFIX}CONFIG")
    if config_path:
        try:
            with Path(config_path).open("rb") as handle:
                from_file = tomllib.load(handle)
        except OSError as exc:
            raise SettingsError(f"{ENV_PREFIX}CONFIG: cannot read {config_path!r}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{ENV_PREFIX}CONFIG: {config_path!r} is not valid TOML: {exc}") from None
        known = {spec.name for spec in fields(Settings)}
        for key, value in from_file.items():
            if key not in known:
                raise SettingsError(f"{ENV_PREFIX}CONFIG: unknown setting {key!r} in {config_path!r}")
            raw[key] = value
    for spec in fields(Settings):
        env_value = env.get(f"{ENV_PREFIX}{spec.name.upper()}")
        if env_value is not None and env_value != "":
            raw[spec.name] = env_value
    raw.update({key: value for key, value in overrides.items() if value is not None})
    parsed = {name: next(s for s in fields(Settings) if s.name == name).metadata["parse"](name, value)
              for name, value in raw.items()}
    return Settings(**parsed)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return load_settings()
