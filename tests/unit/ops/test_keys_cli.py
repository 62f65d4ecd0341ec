"""`strongroom keys add-version`, `keys discard-version` and the options of `keys rotate`, as the console script
runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import Settings, load_settings
from server.security.crypto import KEYRING_ENV, Keyring, keyring_env_value, load_keyring_file
from server.security.field_cipher import ensure_keyring, keyring_path
from tests.conftest import strongroom_cli


@pytest.fixture(name="settings")
def fx_settings(tmp_path: Path) -> Settings:
    return load_settings({}, data_dir=str(tmp_path / "data"),
                         database_url=f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}")


def test_add_version_stages_without_making_current(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    ensure_keyring(settings)
    assert strongroom_cli(monkeypatch, settings, "keys", "add-version") == 0
    out = capsys.readouterr().out
    assert "staged KEK version 2" in out and "strongroom keys rotate --to-version 2" in out
    keyring = load_keyring_file(keyring_path(settings))
    assert (keyring.kek_versions(), keyring.current_kek_version(), keyring.staged_kek_versions()) == ((1, 2), 1, (2,))
    assert keyring.blind_index_root_key.hex() not in out and keyring.backup_key.hex() not in out


def test_add_version_twice_is_refused(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    ensure_keyring(settings)
    assert strongroom_cli(monkeypatch, settings, "keys", "add-version") == 0
    content = keyring_path(settings).read_bytes()
    capsys.readouterr()
    assert strongroom_cli(monkeypatch, settings, "keys", "add-version") == 1
    err = capsys.readouterr().err
    assert err.strip() == ("strongroom: KEK version 2 is already staged (held, not current): activate it with "
                           "`strongroom keys rotate --to-version 2`")
    assert keyring_path(settings).read_bytes() == content


def test_add_version_refuses_the_environment_keyring(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    value = keyring_env_value(Keyring.generate())
    assert strongroom_cli(monkeypatch, settings, "keys", "add-version", environ={KEYRING_ENV: value}) == 1
    err = capsys.readouterr().err
    assert err.startswith("strongroom: the keyring in STRONGROOM_KEYRING is read-only") and err.count("\n") == 1
    assert value not in err
    assert not keyring_path(settings).exists()


def test_add_version_without_a_keyring_says_how_to_create_one(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert strongroom_cli(monkeypatch, settings, "keys", "add-version") == 1
    err = capsys.readouterr().err
    assert "keyring file not found" in err and "strongroom keys init" in err and "Traceback" not in err
    assert not keyring_path(settings).exists()


@pytest.mark.parametrize("argv", [
    ["rotate", "--to-version", "2", "--resume"], ["rotate", "--to-version", "two"], ["rotate", "--to-version"],
    ["discard-version"], ["discard-version", "two"], ["discard-version", "2", "--force"],
])
def test_key_options_that_do_not_parse_exit_2(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    ensure_keyring(settings)
    content = keyring_path(settings).read_bytes()
    with pytest.raises(SystemExit) as exited:
        strongroom_cli(monkeypatch, settings, "keys", *argv)
    assert exited.value.code == 2
    assert "Traceback" not in capsys.readouterr().err
    assert keyring_path(settings).read_bytes() == content


def test_discard_version_without_a_keyring_says_how_to_create_one(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert strongroom_cli(monkeypatch, settings, "keys", "discard-version", "2") == 1
    err = capsys.readouterr().err
    assert err == (f"strongroom: keyring {keyring_path(settings)} not found; run `strongroom keys init` (or "
                   "`strongroom init`) first\n")
    assert not keyring_path(settings).exists()


def test_discard_version_against_a_database_it_cannot_read_changes_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ensure_keyring(settings)
    assert strongroom_cli(monkeypatch, settings, "keys", "add-version") == 0
    content = keyring_path(settings).read_bytes()
    capsys.readouterr()
    assert strongroom_cli(monkeypatch, settings, "keys", "discard-version", "2") == 1  # the database is not migrated
    err = capsys.readouterr().err
    assert err == "strongroom: the database could not be read or written (OperationalError); nothing was discarded\n"
    assert keyring_path(settings).read_bytes() == content

