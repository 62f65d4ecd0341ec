"""Key providers: where KEKs live and who wraps and unwraps DEKs with them.

``KeyProvider`` is the seam. The two shipped here keep KEKs in process memory, loaded from a keyring file
(``FileKeyProvider``) or from the environment (``EnvKeyProvider``). A provider that keeps KEKs elsewhere
implements the same methods remotely:

* Vault Transit: ``wrap_dek`` -> ``transit/encrypt/<key>`` with the DEK id as context and the current version
  as ``key_version``, ``unwrap_dek`` -> ``transit/decrypt``, ``stage_kek_version`` -> ``transit/keys/<key>/rotate``
  (the provider keeps encrypting under the version it calls current until ``activate_kek_version``),
  ``rewrap`` -> ``transit/rewrap``, ``remove_kek_version`` -> ``min_decryption_version`` and ``trim`` (older
  versions only: Transit cannot delete its latest version, so such a provider refuses to remove a staged one).
* A cloud KMS: Encrypt / Decrypt / ReEncrypt with the DEK id and KEK version as encryption context.
* An HSM over PKCS#11: ``C_WrapKey`` / ``C_UnwrapKey`` with an AES-GCM (or SM4) mechanism and the AAD.

Such a provider still needs the keyring's other secrets (blind-index root, backup and ledger keys); those
would be stored wrapped by the provider and unwrapped once at start.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import os
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from server.security.crypto.datakeys import DataKey, WrappedDek
from server.security.crypto.errors import DecryptionError, KeyringError, UnknownKey
from server.security.crypto.keyring import Keyring
from server.security.crypto.suites import DEFAULT_SUITE, Suite

__all__ = [
    "KEYRING_ENV",
    "EnvKeyProvider",
    "FileKeyProvider",
    "KeyProvider",
    "create_keyring_file",
    "keyring_env_value",
    "load_keyring_file",
]

KEYRING_ENV = "STRONGROOM_KEYRING"
_FILE_MODE = 0o600
_MAX_KEYRING_BYTES = 1 << 20
_T = TypeVar("_T")


@runtime_checkable
class KeyProvider(Protocol):
    """Holds versioned KEKs and wraps, unwraps and rewraps DEKs with them."""

    @property
    def suite(self) -> Suite:
        """The cipher suite of the KEKs, and of the DEKs they wrap."""
        ...

    def current_kek_version(self) -> int:
        """The KEK version new wraps use."""
        ...

    def kek_versions(self) -> Sequence[int]:
        """Every KEK version that can still unwrap, oldest first."""
        ...

    def wrap_dek(self, dek: DataKey, kek_version: int | None = None) -> WrappedDek:
        """Wrap ``dek`` under ``kek_version`` (default: current)."""
        ...

    def unwrap_dek(self, wrapped: WrappedDek) -> DataKey:
        """Unwrap with the KEK version the wrapped DEK names; raises ``DecryptionError`` on any mismatch."""
        ...

    def rewrap(self, wrapped: WrappedDek) -> WrappedDek:
        """The same DEK wrapped under the current KEK (unchanged if it already is)."""
        ...

    def add_kek_version(self) -> int:
        """Create a new KEK version, make it current and return it."""
        ...

    def stage_kek_version(self) -> int:
        """Create a new KEK version that unwraps but is not current yet, and return it."""
        ...

    def activate_kek_version(self, version: int) -> bool:
        """Make a held, newer KEK version current; False if it already was."""
        ...

    def remove_kek_version(self, version: int) -> None:
        """Destroy a held KEK version that is not current (the caller checks that nothing is wrapped under it)."""
        ...


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new_file(path: Path, content: str) -> None:
    # O_EXCL: never overwrite, and no window in which another process could create the file first.
    # The mode is given at creation (umask can only narrow it) and then forced, in case umask widened nothing.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), _FILE_MODE)
    try:
        os.fchmod(fd, _FILE_MODE)
        os.write(fd, content.encode())
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def _read_private_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise KeyringError(f"{path}: keyring file not found (create it with `strongroom keys init`)") from None
    except OSError as error:
        raise KeyringError(f"{path}: cannot open keyring file ({error.strerror})") from None
    try:
        # Checked on the open descriptor, so the file inspected is the file read.
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise KeyringError(f"{path}: keyring is not a regular file")
        if status.st_mode & 0o077:
            raise KeyringError(
                f"{path}: keyring file is accessible to group or others (mode {stat.S_IMODE(status.st_mode):04o}); "
                f"it must be 0600 (run: chmod 600 {path})"
            )
        if status.st_size > _MAX_KEYRING_BYTES:
            raise KeyringError(f"{path}: keyring file is implausibly large ({status.st_size} bytes)")
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read()
    finally:
        os.close(fd)


def load_keyring_file(path: str | os.PathLike[str]) -> Keyring:
    """Read a keyring file, refusing one that is missing, not 0600 (no group/other bits) or malformed.

    Raises:
        KeyringError: The message names the path and the problem, never key material.
    """
    keyring_path = Path(path)
    return Keyring.from_json(_read_private_file(keyring_path), source=str(keyring_path))


def create_keyring_file(path: str | os.PathLike[str], *, suite: Suite = DEFAULT_SUITE) -> FileKeyProvider:
    """Create a new keyring file with mode 0600 and fresh keys. Never overwrites.

    Args:
        path: Where to create it; the directory must exist.
        suite: The deployment's cipher suite.

    Returns:
        A provider over the new file.

    Raises:
        KeyringError: The file already exists, or cannot be created.
    """
    keyring_path = Path(path)
    try:
        _write_new_file(keyring_path, Keyring.generate(suite).to_json())
    except FileExistsError:
        raise KeyringError(f"{keyring_path}: a keyring already exists; refusing to overwrite it") from None
    except OSError as error:
        raise KeyringError(f"{keyring_path}: cannot create keyring file ({error.strerror})") from None
    _fsync_directory(keyring_path.parent)
    return FileKeyProvider(keyring_path)


class FileKeyProvider:
    """KEKs from a 0600 keyring file. Rotation writes the file atomically under an exclusive lock.

    Another process that rotated the file is noticed when a DEK names a KEK version not loaded yet, or does not
    unwrap under a version loaded from a file that has since been replaced: the file is read again once before
    giving up.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._stamp = self._file_stamp()
        self._keyring = load_keyring_file(self._path)

    def __repr__(self) -> str:
        return f"FileKeyProvider(path={str(self._path)!r}, keyring={self._keyring!r})"

    @property
    def path(self) -> Path:
        """The keyring file."""
        return self._path

    @property
    def keyring(self) -> Keyring:
        """The loaded keyring (also holds the blind-index root, backup and ledger keys)."""
        return self._keyring

    @property
    def suite(self) -> Suite:
        """The keyring's cipher suite."""
        return self._keyring.suite

    def reload(self) -> None:
        """Read the file again (after another process rotated it)."""
        # Stamped before reading: a file replaced in between leaves an old stamp, so a later failure reads again.
        stamp = self._file_stamp()
        self._keyring = load_keyring_file(self._path)
        self._stamp = stamp

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            status = self._path.stat()
        except OSError:
            return None
        return status.st_ino, status.st_mtime_ns

    def current_kek_version(self) -> int:
        """The KEK version new wraps use."""
        return self._keyring.current_kek_version()

    def kek_versions(self) -> tuple[int, ...]:
        """Every KEK version held, oldest first."""
        return self._keyring.kek_versions()

    def wrap_dek(self, dek: DataKey, kek_version: int | None = None) -> WrappedDek:
        """Wrap ``dek`` under ``kek_version`` (default: current)."""
        return self._keyring.wrap_dek(dek, kek_version)

    def unwrap_dek(self, wrapped: WrappedDek) -> DataKey:
        """Unwrap, re-reading the file once if the KEK version is newer than the loaded ones, or if the file was
        replaced since it was loaded."""
        try:
            return self._keyring.unwrap_dek(wrapped)
        except UnknownKey:
            if wrapped.kek_version <= max(self._keyring.kek_versions()) and self._file_stamp() == self._stamp:
                raise
        except DecryptionError:
            # A version number loaded here can name another key in the file now: a staged version that was
            # discarded, and a new one staged (and activated) under the same number since.
            if self._file_stamp() == self._stamp:
                raise
        self.reload()
        return self._keyring.unwrap_dek(wrapped)

    def rewrap(self, wrapped: WrappedDek) -> WrappedDek:
        """The same DEK wrapped under the current KEK."""
        return self._keyring.rewrap(wrapped)

    def add_kek_version(self) -> int:
        """Add a KEK version to the file and make it current. Returns the new version."""
        return self._change(Keyring.add_kek_version)

    def stage_kek_version(self) -> int:
        """Add a KEK version to the file without making it current (see ``Keyring.stage_kek_version``)."""
        return self._change(Keyring.stage_kek_version)

    def activate_kek_version(self, version: int) -> bool:
        """Make a staged KEK version current in the file (see ``Keyring.activate_kek_version``)."""
        return self._change(lambda keyring: keyring.activate_kek_version(version))

    def remove_kek_version(self, version: int) -> None:
        """Remove a KEK version that is not current from the file (see ``Keyring.remove_kek_version``); the caller
        checks that no DEK is wrapped under it."""
        self._change(lambda keyring: keyring.remove_kek_version(version))

    def _change(self, change: Callable[[Keyring], _T]) -> _T:
        """Apply ``change`` to the file's keyring under the lock; write it back atomically if it changed."""
        with self._locked():
            stamp = self._file_stamp()
            keyring = load_keyring_file(self._path)
            before = keyring.to_json()
            result = change(keyring)
            if keyring.to_json() != before:
                self._replace(keyring)
            else:
                self._keyring, self._stamp = keyring, stamp
        return result

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # A separate lock file: the keyring itself is replaced by rename, so a lock on it would not hold.
        lock_path = self._path.with_name(self._path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), _FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _replace(self, keyring: Keyring) -> None:
        temporary = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        temporary.unlink(missing_ok=True)
        _write_new_file(temporary, keyring.to_json())
        temporary.replace(self._path)
        _fsync_directory(self._path.parent)
        self._keyring, self._stamp = keyring, self._file_stamp()


def keyring_env_value(keyring: Keyring) -> str:
    """The value to put in ``STRONGROOM_KEYRING``: the keyring JSON in standard base64."""
    return base64.b64encode(keyring.to_json().encode()).decode("ascii")


class EnvKeyProvider:
    """KEKs from ``STRONGROOM_KEYRING`` (base64 of the keyring JSON), as a Kubernetes secret would supply them.

    Read-only: rotation happens on a keyring file, and the new value is then put in the secret.

    Args:
        environ: The environment to read; ``os.environ`` by default.
        variable: The variable name.

    Raises:
        KeyringError: The variable is missing, not base64, or not a keyring; the message names the variable.
    """

    def __init__(self, environ: Mapping[str, str] | None = None, *, variable: str = KEYRING_ENV) -> None:
        value = (os.environ if environ is None else environ).get(variable)
        if value is None or not value.strip():
            raise KeyringError(f"{variable} is not set (expected the base64 of a keyring file)")
        try:
            document = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise KeyringError(f"{variable} is not valid base64 (expected the base64 of a keyring file)") from None
        self._keyring = Keyring.from_json(document, source=variable)

    def __repr__(self) -> str:
        return f"EnvKeyProvider(keyring={self._keyring!r})"

    @property
    def keyring(self) -> Keyring:
        """The loaded keyring (also holds the blind-index root, backup and ledger keys)."""
        return self._keyring

    @property
    def suite(self) -> Suite:
        """The keyring's cipher suite."""
        return self._keyring.suite

    def current_kek_version(self) -> int:
        """The KEK version new wraps use."""
        return self._keyring.current_kek_version()

    def kek_versions(self) -> tuple[int, ...]:
        """Every KEK version held, oldest first."""
        return self._keyring.kek_versions()

    def wrap_dek(self, dek: DataKey, kek_version: int | None = None) -> WrappedDek:
        """Wrap ``dek`` under ``kek_version`` (default: current)."""
        return self._keyring.wrap_dek(dek, kek_version)

    def unwrap_dek(self, wrapped: WrappedDek) -> DataKey:
        """Unwrap with the KEK version the wrapped DEK names."""
        return self._keyring.unwrap_dek(wrapped)

    def rewrap(self, wrapped: WrappedDek) -> WrappedDek:
        """The same DEK wrapped under the current KEK."""
        return self._keyring.rewrap(wrapped)

    def add_kek_version(self) -> int:
        """Not possible here: a variable cannot be written back.

        Raises:
            KeyringError: Always.
        """
        raise _read_only()

    def stage_kek_version(self) -> int:
        """Not possible here (see ``add_kek_version``).

        Raises:
            KeyringError: Always.
        """
        raise _read_only()

    def activate_kek_version(self, version: int) -> bool:
        """Not possible here (see ``add_kek_version``).

        Raises:
            KeyringError: Always.
        """
        raise _read_only()

    def remove_kek_version(self, version: int) -> None:
        """Not possible here (see ``add_kek_version``).

        Raises:
            KeyringError: Always.
        """
        raise _read_only()


def _read_only() -> KeyringError:
    return KeyringError(
        f"the keyring in {KEYRING_ENV} is read-only: rotate a keyring file, then update the secret with "
        "keyring_env_value()"
    )
