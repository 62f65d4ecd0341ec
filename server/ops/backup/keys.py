"""The backup key, taken from the same keyring the server uses (``STRONGROOM_KEYRING`` or the keyring file)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from server.config import Settings
from server.ops.backup.encryption import BackupKeys
from server.ops.backup.errors import BackupError
from server.security.crypto import KEYRING_ENV, CryptoError, EnvKeyProvider, FileKeyProvider, Keyring
from server.security.field_cipher import keyring_path

__all__ = ["load_backup_keys", "load_keyring"]


def load_keyring(settings: Settings, environ: Mapping[str, str] | None = None) -> Keyring:
    """The deployment's keyring, from the environment if ``STRONGROOM_KEYRING`` is set, else the keyring file.

    Raises:
        BackupError: No keyring, an unsafe file mode, or a malformed keyring (the message names the place).
    """
    env = os.environ if environ is None else environ
    path = keyring_path(settings)
    try:
        if env.get(KEYRING_ENV, "").strip():
            return EnvKeyProvider(env).keyring
        if not path.exists():
            raise BackupError(f"keyring {path} not found: backups are encrypted with its backup key "
                              "(restore the keys directory first, or run `strongroom init`)")
        return FileKeyProvider(path).keyring
    except CryptoError as error:
        raise BackupError(str(error)) from None


def load_backup_keys(settings: Settings, environ: Mapping[str, str] | None = None) -> BackupKeys:
    """The keys derived from the keyring's backup key (see ``load_keyring`` for errors)."""
    return BackupKeys(load_keyring(settings, environ).backup_key)
