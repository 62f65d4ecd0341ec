"""Files a root-run job creates in Strongroom's directories go to the directory's owner (server/file_ownership.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.file_ownership import (
    give_file_to_directory_owner,
    give_to_directory_owner,
    make_directory_as_parent_owner,
)

OTHER_UID, OTHER_GID = 65534, 65534  # nobody / nogroup: neither root nor the test's user


def _directory_of_another_user(path: Path) -> Path:
    path.mkdir()
    os.chown(path, OTHER_UID, OTHER_GID)
    return path


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root (CI runs as root)")
def test_a_file_created_as_root_goes_to_the_directory_owner(tmp_path: Path) -> None:
    directory = _directory_of_another_user(tmp_path / "audit-archive")
    descriptor = os.open(directory / "archive.jsonl", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        give_to_directory_owner(descriptor, directory)
    finally:
        os.close(descriptor)
    created = (directory / "archive.jsonl").stat()
    assert (created.st_uid, created.st_gid, created.st_mode & 0o777) == (OTHER_UID, OTHER_GID, 0o600)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root (CI runs as root)")
def test_directories_created_as_root_take_the_nearest_parents_owner(tmp_path: Path) -> None:
    data_dir = _directory_of_another_user(tmp_path / "data")
    make_directory_as_parent_owner(data_dir / "audit" / "archive", 0o700)
    for created in (data_dir / "audit", data_dir / "audit" / "archive"):
        info = created.stat()
        assert (info.st_uid, info.st_gid) == (OTHER_UID, OTHER_GID)
    # An existing directory keeps its owner.
    existing = tmp_path / "mine"
    existing.mkdir()
    make_directory_as_parent_owner(existing, 0o700)
    assert existing.stat().st_uid == os.geteuid()


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root (CI runs as root)")
def test_a_file_root_writes_by_name_is_created_or_given_to_the_directory_owner(tmp_path: Path) -> None:
    directory = _directory_of_another_user(tmp_path / "data")
    give_file_to_directory_owner(directory / "strongroom.db")  # absent: created empty, 0600
    existing = directory / "strongroom.db-writer.lock"
    existing.write_bytes(b"")  # root's, as a command run as root left it
    give_file_to_directory_owner(existing)
    for path in (directory / "strongroom.db", existing):
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (OTHER_UID, OTHER_GID), path
    assert (directory / "strongroom.db").stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root (CI runs as root)")
def test_a_link_the_directory_owner_planted_is_never_given_away(tmp_path: Path) -> None:
    """The service user owns the directory and could name root's own files like the database."""
    directory = _directory_of_another_user(tmp_path / "data")
    roots_file = tmp_path / "roots-secret"
    roots_file.write_text("root only")
    (directory / "strongroom.db").symlink_to(roots_file)
    os.link(roots_file, directory / "strongroom.db-writer.lock")
    for planted in ("strongroom.db", "strongroom.db-writer.lock"):
        with pytest.raises(OSError):  # ELOOP for the symlink, EPERM for the hard link
            give_file_to_directory_owner(directory / planted)
    assert roots_file.stat().st_uid == 0


def test_a_process_that_is_not_root_changes_no_owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    changed: list[object] = []
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "fchown", lambda *args: changed.append(args))
    monkeypatch.setattr(os, "chown", lambda *args: changed.append(args))
    descriptor = os.open(tmp_path / "file", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        give_to_directory_owner(descriptor, tmp_path)
    finally:
        os.close(descriptor)
    make_directory_as_parent_owner(tmp_path / "a" / "b", 0o700)
    give_file_to_directory_owner(tmp_path / "not-created")
    assert changed == [] and (tmp_path / "a" / "b").is_dir() and not (tmp_path / "not-created").exists()
