"""Files a command run as root creates in Strongroom's directories belong to the directory's owner.

On PostgreSQL the deployments run the jobs that need the schema owner's login (``strongroom audit archive``,
``strongroom backup verify``) as root, so that the server's own user can never read that login from the job's
environment, memory or credentials directory while it runs; an operator may also run ``backup create`` or
``backup restore`` as root. What such a job leaves behind (an archive file, a checkpoint sink it had to create, a
backup and its manifest, a restored database) must still be readable by the server and the backup job, which run
as the service user: it is handed to the owner of the directory it was created in. A process that is not root
changes nothing (it could not, and what it creates is already its own).

The directories belong to the service user, who can put a symbolic or hard link where root is about to write.
Ownership is therefore only ever changed on a descriptor root opened itself, never by path through a link:
otherwise a link to ``/etc/shadow`` named like the database would hand that file to the service user.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def give_to_directory_owner(descriptor: int, directory: Path) -> None:
    """When running as root, make the open file ``descriptor`` belong to ``directory``'s owner and group."""
    if os.geteuid() != 0:
        return
    owner = directory.stat()
    os.fchown(descriptor, owner.st_uid, owner.st_gid)


def give_file_to_directory_owner(path: Path, mode: int = 0o600) -> None:
    """When running as root, make ``path`` (created empty with ``mode`` if absent) belong to its directory's owner.

    For a file root is about to write into by name (a database that a library opens itself), so that it is the
    service user's before the first byte is written.

    Raises:
        OSError: ``path`` is a symbolic link, not a regular file, or has other hard links (as root only).
    """
    if os.geteuid() != 0:
        return
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise OSError(errno.EPERM, "not a regular file with a single link: not written as root", str(path))
        give_to_directory_owner(descriptor, path.parent)
    finally:
        os.close(descriptor)


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
        os.chown(created, owner.st_uid, owner.st_gid, follow_symlinks=False)
