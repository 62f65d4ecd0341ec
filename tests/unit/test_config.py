"""Settings: environment, TOML file, and errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import SettingsError, load_settings


def test_defaults_and_env() -> None:
    settings = load_settings({"STRONGROOM_PORT": "9000", "STRONGROOM_DATA_DIR": "/srv/sr"})
    assert settings.port == 9000
    assert settings.resolved_database_url == "sqlite+aiosqlite:////srv/sr/strongroom.db"
    assert settings.resolved_keys_dir == Path("/srv/sr/keys")
    assert settings.is_sqlite


@pytest.mark.parametrize(("env", "named"), [
    ({"STRONGROOM_PORT": "eighty"}, "STRONGROOM_PORT"),
    ({"STRONGROOM_PORT": "70000"}, "STRONGROOM_PORT"),
    ({"STRONGROOM_WORKERS": "0"}, "STRONGROOM_WORKERS"),
    ({"STRONGROOM_LOG_LEVEL": "LOUD"}, "STRONGROOM_LOG_LEVEL"),
    ({"STRONGROOM_DATABASE_URL": "mysql://x"}, "STRONGROOM_DATABASE_URL"),
])
def test_invalid_values_name_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(env)


def test_toml_file_and_env_priority(tmp_path: Path) -> None:
    config = tmp_path / "strongroom.toml"
    config.write_text('port = 8100\nworkers = 3\nhost = "0.0.0.0"\n')
    settings = load_settings({"STRONGROOM_CONFIG": str(config), "STRONGROOM_WORKERS": "2"})
    assert (settings.port, settings.workers, settings.host) == (8100, 2, "0.0.0.0")


def test_toml_errors(tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'prot'"):
        load_settings({"STRONGROOM_CONFIG": str(unknown)})
    broken = tmp_path / "broken.toml"
    broken.write_text("port = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings({"STRONGROOM_CONFIG": str(broken)})
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings({"STRONGROOM_CONFIG": str(tmp_path / "missing.toml")})
