"""The keyring: versioned KEKs plus the deployment's other long-lived secrets, and its JSON form.

JSON form (the keyring file, or the base64 payload of ``STRONGROOM_KEYRING``)::

    {
      "format": "strongroom-keyring",
      "version": 1,
      "suite": "aes-256-gcm+hmac-sha256",
      "current_kek_version": 2,
      "keks": {"1": "<base64 32 bytes>", "2": "<base64 32 bytes>"},
      "blind_index_root_key": "<base64 32 bytes>",
      "backup_key": "<base64 32 bytes>",
      "ledger_key": "<base64 32 bytes>"
    }

The current KEK version only ever grows; an old version stays until every DEK has been rewrapped off it, and then
until it is discarded (``strongroom keys discard-version``). A version above ``current_kek_version`` is *staged*:
held, so this keyring unwraps DEKs wrapped under it, but nothing new is wrapped under it until it is activated.
Staging needs no field of its own, so a keyring holding a staged version is still a version 1 document that earlier
releases load (they simply keep wrapping under the current version). A staged version discarded before activation
leaves no trace, so the next one staged gets its number again.
The blind-index root key never rotates in place: every blind index would have to be recomputed.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm

from server.security.crypto.blind_index import BlindIndexer
from server.security.crypto.datakeys import DataKey, Kek, WrappedDek, unwrap_dek, wrap_dek
from server.security.crypto.errors import KeyringError, UnknownKey
from server.security.crypto.suites import DEFAULT_SUITE, KEY_BYTES, Suite, check_suite_available

__all__ = ["KEYRING_FORMAT", "Keyring"]

KEYRING_FORMAT = "strongroom-keyring"
KEYRING_VERSION = 1
_SECRET_FIELDS = ("blind_index_root_key", "backup_key", "ledger_key")
_FIELDS = frozenset({"format", "version", "suite", "current_kek_version", "keks", *_SECRET_FIELDS})


class Keyring:
    """KEKs by version, the blind-index root key, the backup key and the erasure-ledger key, in memory.

    It is also the local ``KeyProvider``: the KEKs live in this process. ``repr`` shows no key material.
    """

    def __init__(
        self,
        *,
        suite: Suite,
        keks: Mapping[int, bytes],
        current_kek_version: int,
        blind_index_root_key: bytes,
        backup_key: bytes,
        ledger_key: bytes,
    ) -> None:
        try:
            check_suite_available(suite)
        except UnsupportedAlgorithm as error:
            raise KeyringError(str(error)) from None
        if current_kek_version not in keks:
            raise KeyringError(f"current KEK version {current_kek_version} is not in the keyring")
        for name, key in (
            ("blind_index_root_key", blind_index_root_key),
            ("backup_key", backup_key),
            ("ledger_key", ledger_key),
            *((f"KEK version {version}", key) for version, key in keks.items()),
        ):
            if len(key) != KEY_BYTES:
                raise KeyringError(f"{name} must be {KEY_BYTES} bytes, got {len(key)}")
        self._suite = suite
        self._keks = {version: Kek(version, key, suite) for version, key in sorted(keks.items())}
        self._current = current_kek_version
        self._blind_index_root_key = bytes(blind_index_root_key)
        self._backup_key = bytes(backup_key)
        self._ledger_key = bytes(ledger_key)
        self._blind_indexer: BlindIndexer | None = None

    @classmethod
    def generate(cls, suite: Suite = DEFAULT_SUITE) -> Keyring:
        """A new keyring with KEK version 1 and fresh random secrets."""
        return cls(
            suite=suite,
            keks={1: os.urandom(KEY_BYTES)},
            current_kek_version=1,
            blind_index_root_key=os.urandom(KEY_BYTES),
            backup_key=os.urandom(KEY_BYTES),
            ledger_key=os.urandom(KEY_BYTES),
        )

    def __repr__(self) -> str:
        return f"Keyring(suite={self._suite.label}, kek_versions={list(self._keks)}, current={self._current})"

    @property
    def suite(self) -> Suite:
        """The deployment's cipher suite: new DEKs, wraps and blind indexes use it."""
        return self._suite

    @property
    def blind_index_root_key(self) -> bytes:
        """Root of the per-field blind-index keys."""
        return self._blind_index_root_key

    @property
    def backup_key(self) -> bytes:
        """Key for encrypting backups."""
        return self._backup_key

    @property
    def ledger_key(self) -> bytes:
        """Key for the erasure ledger's chained MACs."""
        return self._ledger_key

    def blind_indexer(self) -> BlindIndexer:
        """The blind indexer for this keyring (built once)."""
        if self._blind_indexer is None:
            self._blind_indexer = BlindIndexer(self._blind_index_root_key, self._suite)
        return self._blind_indexer

    def current_kek_version(self) -> int:
        """The KEK version new wraps use."""
        return self._current

    def kek_versions(self) -> tuple[int, ...]:
        """All KEK versions held, oldest first."""
        return tuple(self._keks)

    def staged_kek_versions(self) -> tuple[int, ...]:
        """KEK versions held but not current yet (newer than the current one), oldest first."""
        return tuple(version for version in self._keks if version > self._current)

    def stage_kek_version(self) -> int:
        """Add a fresh KEK without making it current: it unwraps, nothing is wrapped under it yet.

        Copies of the keyring can then be brought up to date before any DEK depends on the new version.

        Returns:
            The new version.

        Raises:
            KeyringError: A staged version is already waiting to be activated (one at a time, so that the copy
                distributed is the one activated).
        """
        staged = self.staged_kek_versions()
        if staged:
            raise KeyringError(
                f"KEK version {staged[0]} is already staged (held, not current): activate it with "
                f"`strongroom keys rotate --to-version {staged[0]}`"
            )
        version = max(self._keks) + 1
        self._keks[version] = Kek(version, os.urandom(KEY_BYTES), self._suite)
        return version

    def activate_kek_version(self, version: int) -> bool:
        """Make a held KEK version current, so new wraps and rewraps use it.

        Returns:
            True if ``version`` became current now, False if it already was.

        Raises:
            KeyringError: ``version`` is not in the keyring, or is older than the current version.
        """
        if version not in self._keks:
            held = ", ".join(map(str, self._keks))
            raise KeyringError(f"KEK version {version} is not in the keyring (it holds {held})")
        if version < self._current:
            raise KeyringError(
                f"KEK version {version} is older than the current version {self._current}; KEK versions only move "
                "forward"
            )
        if version == self._current:
            return False
        self._current = version
        return True

    def add_kek_version(self) -> int:
        """Add a fresh KEK and make it current; older versions stay for unwrapping. Returns the new version.

        Raises:
            KeyringError: A staged version is waiting (see ``stage_kek_version``).
        """
        version = self.stage_kek_version()
        self.activate_kek_version(version)
        return version

    def remove_kek_version(self, version: int) -> None:
        """Drop a KEK version that is not current: an older one once no DEK is wrapped under it any more, or a
        staged one that is taken back (the caller checks that nothing is wrapped under it).

        The next staged version takes the highest number left plus one, so a discarded staged version's number is
        given to a new key: a copy of the keyring that still holds the discarded key does not unwrap what is
        wrapped under the new one (the KEK version is authenticated with every wrapped DEK, and the keys differ).

        Raises:
            KeyringError: ``version`` is current or unknown.
        """
        if version == self._current:
            raise KeyringError(f"KEK version {version} is current and cannot be removed")
        if self._keks.pop(version, None) is None:
            raise KeyringError(f"KEK version {version} is not in the keyring")

    def new_dek(self) -> tuple[DataKey, WrappedDek]:
        """A fresh DEK in the keyring's suite and its wrap under the current KEK."""
        dek = DataKey.generate(self._suite)
        return dek, self.wrap_dek(dek)

    def wrap_dek(self, dek: DataKey, kek_version: int | None = None) -> WrappedDek:
        """Wrap ``dek`` under ``kek_version`` (default: current).

        Raises:
            KeyringError: No such KEK version.
        """
        return wrap_dek(dek, self._kek(self._current if kek_version is None else kek_version))

    def unwrap_dek(self, wrapped: WrappedDek) -> DataKey:
        """Unwrap with the KEK version the wrapped DEK names.

        Raises:
            UnknownKey: That KEK version is not in the keyring.
            DecryptionError: Wrong key or altered.
        """
        kek = self._keks.get(wrapped.kek_version)
        if kek is None:
            raise UnknownKey(
                f"DEK {wrapped.dek_id} is wrapped under KEK version {wrapped.kek_version}, which is not in the keyring"
            )
        return unwrap_dek(wrapped, kek)

    def rewrap(self, wrapped: WrappedDek) -> WrappedDek:
        """The same DEK wrapped under the current KEK; already-current wraps are returned unchanged."""
        if wrapped.kek_version == self._current:
            return wrapped
        return wrap_dek(self.unwrap_dek(wrapped), self._keks[self._current])

    def _kek(self, version: int) -> Kek:
        kek = self._keks.get(version)
        if kek is None:
            raise KeyringError(f"KEK version {version} is not in the keyring")
        return kek

    def to_json(self) -> str:
        """The JSON form (contains every secret: write it only to a 0600 file or a secret store)."""

        def encode(key: bytes) -> str:
            return base64.b64encode(key).decode("ascii")

        document = {
            "format": KEYRING_FORMAT,
            "version": KEYRING_VERSION,
            "suite": self._suite.label,
            "current_kek_version": self._current,
            "keks": {str(version): encode(kek.key) for version, kek in self._keks.items()},
            "blind_index_root_key": encode(self._blind_index_root_key),
            "backup_key": encode(self._backup_key),
            "ledger_key": encode(self._ledger_key),
        }
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str) -> Keyring:
        """Parse the JSON form.

        Args:
            text: The JSON document.
            source: Where it came from (a path or a variable name), for error messages.

        Raises:
            KeyringError: The document is not a valid keyring; the message names ``source`` and the problem.
        """
        try:
            document = json.loads(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise KeyringError(f"{source}: keyring is not valid JSON ({error.__class__.__name__})") from None
        if not isinstance(document, dict):
            raise KeyringError(f"{source}: keyring must be a JSON object")
        if document.get("format") != KEYRING_FORMAT:
            raise KeyringError(f"{source}: not a Strongroom keyring (format must be {KEYRING_FORMAT!r})")
        if document.get("version") != KEYRING_VERSION:
            raise KeyringError(f"{source}: unsupported keyring version {document.get('version')!r}")
        unknown, missing = set(document) - _FIELDS, _FIELDS - set(document)
        if unknown or missing:
            raise KeyringError(f"{source}: keyring has unknown fields {sorted(unknown)}, missing {sorted(missing)}")
        try:
            suite = Suite.from_label(document["suite"])
        except (TypeError, ValueError) as error:
            raise KeyringError(f"{source}: {error}") from None
        keks_field = document["keks"]
        if not isinstance(keks_field, dict) or not keks_field:
            raise KeyringError(f"{source}: 'keks' must be a non-empty object of version -> key")
        keks: dict[int, bytes] = {}
        for version_text, key_text in keks_field.items():
            if not (isinstance(version_text, str) and version_text.isascii() and version_text.isdigit()):
                raise KeyringError(f"{source}: KEK version {version_text!r} is not a positive integer")
            keks[int(version_text)] = _decode_key(key_text, f"{source}: KEK version {version_text}")
        current = document["current_kek_version"]
        if not isinstance(current, int) or isinstance(current, bool):
            raise KeyringError(f"{source}: 'current_kek_version' must be an integer")
        secrets = {name: _decode_key(document[name], f"{source}: {name}") for name in _SECRET_FIELDS}
        try:
            return cls(suite=suite, keks=keks, current_kek_version=current, **secrets)
        except (KeyringError, ValueError) as error:  # current version not held, or a KEK version out of range
            raise KeyringError(f"{source}: {error}") from None


def _decode_key(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise KeyringError(f"{what} must be a base64 string")
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError(f"{what} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise KeyringError(f"{what} must decode to {KEY_BYTES} bytes, got {len(key)}")
    return key

