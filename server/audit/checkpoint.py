"""Signed checkpoints: an Ed25519 signature over the size and root of the audit Merkle tree at a moment.

The signed body is text in the shape of a C2SP ``tlog-checkpoint`` (origin, size, base64 root, then extension
lines), each line ending in a newline::

    strongroom-audit
    1048576
    XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=
    time 2026-11-23T09:15:02.000417Z
    key 1f2e3d4c5b6a7988

The first line is the origin, so a checkpoint signature can never be mistaken for a signature over anything
else this key signs (exports sign a different first line). The key line names the signing key:
``key_id = hex(SHA-256(raw public key)[:8])``. Parsing accepts only the exact bytes :meth:`Checkpoint.body`
writes, so one checkpoint has one encoding and one signature input.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from server.audit.canonical import CanonicalError, parse_timestamp
from server.audit.merkle import HASH_SIZE, MAX_TREE_SIZE

ORIGIN: Final = "strongroom-audit"
SIGNATURE_SIZE: Final = 64
_SIZE_PATTERN: Final = re.compile(r"0|[1-9][0-9]{0,18}")
_KEY_ID_PATTERN: Final = re.compile(r"[0-9a-f]{16}")
_B64_HASH_PATTERN: Final = re.compile(r"[A-Za-z0-9+/]{43}=")


class CheckpointFormatError(ValueError):
    """A checkpoint body, field, key or signature that is not in the one accepted form."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The state of the audit tree that a signature vouches for.

    Attributes:
        tree_size: Number of leaves (events with seq 1..tree_size).
        root_hash: The RFC 9162 root of those leaves, 32 bytes.
        timestamp: When the checkpoint was made, RFC 3339 UTC with microseconds.
        key_id: The id of the signing key (:func:`key_id`).
    """

    tree_size: int
    root_hash: bytes
    timestamp: str
    key_id: str

    def __post_init__(self) -> None:
        if type(self.tree_size) is not int or not 0 <= self.tree_size <= MAX_TREE_SIZE:
            raise CheckpointFormatError(f"tree size {self.tree_size!r} out of range")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise CheckpointFormatError("root hash must be 32 bytes")
        try:
            parse_timestamp(self.timestamp)
        except CanonicalError as exc:
            raise CheckpointFormatError(str(exc)) from exc
        if not isinstance(self.key_id, str) or _KEY_ID_PATTERN.fullmatch(self.key_id) is None:
            raise CheckpointFormatError("key id must be 16 lower-case hex digits")

    def body(self) -> bytes:
        """The exact bytes that are signed."""
        root = base64.b64encode(self.root_hash).decode("ascii")
        return f"{ORIGIN}\n{self.tree_size}\n{root}\ntime {self.timestamp}\nkey {self.key_id}\n".encode("ascii")

    @classmethod
    def parse(cls, body: bytes) -> Checkpoint:
        """Parse a checkpoint body, accepting only the form :meth:`body` writes.

        Args:
            body: The signed bytes.

        Returns:
            The checkpoint.

        Raises:
            CheckpointFormatError: On any deviation: other origin, extra or missing lines, a missing final
                newline, leading zeros, non-canonical base64, a bad timestamp or key id.
        """
        if not isinstance(body, bytes) or len(body) > 512:
            raise CheckpointFormatError("checkpoint body must be at most 512 bytes")
        try:
            text = body.decode("ascii")
        except UnicodeDecodeError as exc:
            raise CheckpointFormatError("checkpoint body is not ASCII") from exc
        lines = text.split("\n")
        if len(lines) != 6 or lines[5] != "":
            raise CheckpointFormatError("checkpoint body must be exactly five newline-terminated lines")
        origin, size, root, time_line, key_line, _ = lines
        if origin != ORIGIN:
            raise CheckpointFormatError(f"origin {origin!r} is not {ORIGIN!r}")
        if _SIZE_PATTERN.fullmatch(size) is None:
            raise CheckpointFormatError("tree size is not a canonical decimal")
        if _B64_HASH_PATTERN.fullmatch(root) is None:
            raise CheckpointFormatError("root is not a base64 32-byte hash")
        try:
            root_hash = base64.b64decode(root, validate=True)
        except binascii.Error as exc:
            raise CheckpointFormatError("root is not valid base64") from exc
        if not time_line.startswith("time ") or not key_line.startswith("key "):
            raise CheckpointFormatError("expected 'time ' and 'key ' lines")
        checkpoint = cls(int(size), root_hash, time_line[5:], key_line[4:])
        if checkpoint.body() != body:  # e.g. base64 with stray low bits in the final character
            raise CheckpointFormatError("checkpoint body is not in canonical form")
        return checkpoint

    def sign(self, private_key: Ed25519PrivateKey) -> bytes:
        """Sign this checkpoint.

        Args:
            private_key: The audit signing key; its id must be this checkpoint's ``key_id``.

        Returns:
            The 64-byte Ed25519 signature over :meth:`body`.

        Raises:
            CheckpointFormatError: If the key is not the one named by ``key_id``.
        """
        if key_id(private_key.public_key()) != self.key_id:
            raise CheckpointFormatError("checkpoint names another key than the one signing it")
        return private_key.sign(self.body())

    def verify(self, signature: bytes, public_key: Ed25519PublicKey) -> bool:
        """Check a signature over this checkpoint. Never raises; anything malformed is False.

        Args:
            signature: The 64-byte signature.
            public_key: The trusted audit public key.

        Returns:
            True only if ``public_key`` is the key this checkpoint names and the signature is valid.
        """
        if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
            return False
        if not isinstance(public_key, Ed25519PublicKey) or key_id(public_key) != self.key_id:
            return False
        try:
            public_key.verify(signature, self.body())
        except InvalidSignature:
            return False
        return True


def generate_signing_key() -> Ed25519PrivateKey:
    """Create a new Ed25519 audit signing key."""
    return Ed25519PrivateKey.generate()


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """The id of a public key: the first 8 bytes of SHA-256 of its raw bytes, in lower-case hex.

    Args:
        public_key: An Ed25519 public key.

    Returns:
        16 hex digits.
    """
    return hashlib.sha256(raw_public_key(public_key)).digest()[:8].hex()


def public_key_to_pem(public_key: Ed25519PublicKey) -> bytes:
    """Export a public key as PEM (SubjectPublicKeyInfo), the file handed to auditors.

    Args:
        public_key: The audit public key.

    Returns:
        The PEM bytes.
    """
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_from_pem(pem: bytes) -> Ed25519PublicKey:
    """Import a public key from PEM, refusing anything but Ed25519.

    Args:
        pem: The PEM bytes.

    Returns:
        The public key.

    Raises:
        CheckpointFormatError: If the bytes are not a PEM Ed25519 public key.
    """
    try:
        loaded = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise CheckpointFormatError("not a PEM public key") from exc
    if not isinstance(loaded, Ed25519PublicKey):
        raise CheckpointFormatError("the audit public key must be Ed25519")
    return loaded


def private_key_to_pem(private_key: Ed25519PrivateKey, password: bytes | None) -> bytes:
    """Export a signing key as PKCS#8 PEM, encrypted under ``password`` when one is given.

    Args:
        private_key: The audit signing key.
        password: The passphrase, or None for an unencrypted file (protect it by file mode or a key provider).

    Returns:
        The PEM bytes.
    """
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def private_key_from_pem(pem: bytes, password: bytes | None) -> Ed25519PrivateKey:
    """Import a signing key from PKCS#8 PEM, refusing anything but Ed25519.

    Args:
        pem: The PEM bytes.
        password: The passphrase if the PEM is encrypted.

    Returns:
        The private key.

    Raises:
        CheckpointFormatError: If the bytes are not an Ed25519 private key or the password is wrong.
    """
    try:
        loaded = serialization.load_pem_private_key(pem, password)
    except (ValueError, TypeError) as exc:
        raise CheckpointFormatError("not a PEM private key, or the wrong password") from exc
    if not isinstance(loaded, Ed25519PrivateKey):
        raise CheckpointFormatError("the audit signing key must be Ed25519")
    return loaded
