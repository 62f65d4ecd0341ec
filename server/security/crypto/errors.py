"""The crypto error vocabulary. Messages name keys, files and columns, never key material or plaintext."""

from __future__ import annotations


class CryptoError(Exception):
    """Base of every error raised by the column-encryption core."""


class DecryptionError(CryptoError):
    """A sealed value or wrapped key could not be opened: malformed, tampered, moved, or under the wrong key.

    Opening never returns wrong plaintext; it raises this instead.
    """


class UnknownKey(DecryptionError):
    """The data key a value was sealed with is not available (never existed here, or was not loaded)."""


class KeyDestroyed(DecryptionError):
    """The data key a value was sealed with was deliberately destroyed (crypto-shredding): the value is erased."""


class KeyringError(CryptoError):
    """The keyring is missing, unsafe (file permissions), malformed, or cannot do what was asked."""


class ErasureLedgerError(CryptoError):
    """The erasure ledger is unreadable, or a line fails its chained MAC (edited, removed, reordered, inserted)."""


class NormalisationError(CryptoError, ValueError):
    """A value cannot be normalised for a blind index (for example a phone number with no digits)."""
