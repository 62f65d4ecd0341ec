"""Files a command run as root creates in Strongroom's directories belong to the directory's owner.

On PostgreSQL the deployments run the jobs that need the schema owner's login (``strongroom audit archive``,
``strongroom backup verify``) as root, so that the server's own user can never read that login from the job's
environment, memory or credentials directory while it runs. What such a job leaves behind (an archive file, a
checkpoint sink it had to create) must still be readable by the server and the backup job, which run as the
service user: it is handed to the owner of the directory it was created in. A process that is not root changes
nothing (it could not, and what it creates is already its own).
"""

from __future__ import annotations

import os
from pathlib import Path


def give_to_directory_owner(descriptor: int, directory: Path) -> None:
    """When running as root, make the open file ``descriptor`` belong to ``directory``'s owner and group."""
    if os.geteuid() != 0:
        return
    owner = directory.stat()
    os.fchown(descriptor, owner.st_uid, owner.st_gid)


def make_directory_as_parent_owner(directory: Path, mode: int) -> None:
    """``mkdir -p`` with ``mode``; directories created as root get the owner of the nearest existing parent."""
    missing: list[Path] = []
    cursor = directory
    while not cursor.exists():
        missing.append(cursor)
        cursor = cursor.parent
    directory.mkdir(parents=True, exist_ok=True, mode=mode)
    if os.geteuid() != 0 or not missing:
        return
    owner = cursor.stat()
    for created in reversed(missing):
        os.chown(created, owner.st_uid, owner.st_gid)
