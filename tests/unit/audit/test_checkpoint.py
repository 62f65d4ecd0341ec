"""Signed checkpoints: one exact body, signatures that fail closed, keys that round-trip."""

from __future__ import annotations

import base64
import dataclasses
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from server.audit.checkpoint import (
    Checkpoint,
    CheckpointFormatError,
    generate_signing_key,
    key_id,
    private_key_from_pem,
    private_key_to_pem,
    public_key_from_pem,
    public_key_to_pem,
    raw_public_key,
)

# RFC 8032 section 7.1, TEST 1: pins that the library does standard Ed25519, so other tools can verify.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC8032_SIGNATURE = (
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065"
    "224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)
ROOT = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
TS = "2026-11-23T09:15:02.000417Z"


@pytest.fixture(name="rfc_key")
def fx_rfc_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)


@pytest.fixture(name="checkpoint")
def fx_checkpoint(rfc_key: Ed25519PrivateKey) -> Checkpoint:
    return Checkpoint(8, ROOT, TS, key_id(rfc_key.public_key()))


def test_rfc8032_vector(rfc_key: Ed25519PrivateKey) -> None:
    assert raw_public_key(rfc_key.public_key()).hex() == RFC8032_PUBLIC
    assert rfc_key.sign(b"").hex() == RFC8032_SIGNATURE


def test_key_id_is_sha256_prefix_of_the_raw_key(rfc_key: Ed25519PrivateKey) -> None:
    expected = hashlib.sha256(bytes.fromhex(RFC8032_PUBLIC)).digest()[:8].hex()
    assert key_id(rfc_key.public_key()) == expected == "21fe31dfa154a261"


def test_body_is_pinned(checkpoint: Checkpoint) -> None:
    assert checkpoint.body() == (
        b"strongroom-audit\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"
        b"time 2026-11-23T09:15:02.000417Z\nkey 21fe31dfa154a261\n"
    )
    assert checkpoint.body() == body_with()
    assert Checkpoint.parse(checkpoint.body()) == checkpoint


def test_sign_and_verify(checkpoint: Checkpoint, rfc_key: Ed25519PrivateKey) -> None:
    signature = checkpoint.sign(rfc_key)
    assert len(signature) == 64
    assert checkpoint.verify(signature, rfc_key.public_key())
    rfc_key.public_key().verify(signature, checkpoint.body())  # a plain Ed25519 signature over the body


def test_forged_signature_fails(checkpoint: Checkpoint, rfc_key: Ed25519PrivateKey) -> None:
    signature = checkpoint.sign(rfc_key)
    for position in (0, 31, 63):
        forged = bytearray(signature)
        forged[position] ^= 0x01
        assert not checkpoint.verify(bytes(forged), rfc_key.public_key())
    assert not checkpoint.verify(signature[:63], rfc_key.public_key())
    assert not checkpoint.verify(signature + b"\0", rfc_key.public_key())
    assert not checkpoint.verify(bytes(64), rfc_key.public_key())
    assert not checkpoint.verify("not bytes", rfc_key.public_key())  # type: ignore[arg-type]


def test_wrong_key_fails(checkpoint: Checkpoint, rfc_key: Ed25519PrivateKey) -> None:
    signature = checkpoint.sign(rfc_key)
    other = generate_signing_key()
    assert not checkpoint.verify(signature, other.public_key())
    # Even a valid signature by another key does not verify a checkpoint that names this key.
    renamed = dataclasses.replace(checkpoint, key_id=key_id(other.public_key()))
    assert not checkpoint.verify(other.sign(checkpoint.body()), other.public_key())
    assert renamed.verify(renamed.sign(other), other.public_key())
    with pytest.raises(CheckpointFormatError, match="another key"):
        checkpoint.sign(other)


@pytest.mark.parametrize(
    "change",
    [{"tree_size": 9}, {"tree_size": 7}, {"root_hash": bytes(32)}, {"timestamp": "2026-11-23T09:15:02.000418Z"}],
)
def test_any_changed_field_breaks_the_signature(
    checkpoint: Checkpoint, rfc_key: Ed25519PrivateKey, change: dict[str, object]
) -> None:
    signature = checkpoint.sign(rfc_key)
    assert not dataclasses.replace(checkpoint, **change).verify(signature, rfc_key.public_key())  # type: ignore[arg-type]


GOOD_LINES = (
    "strongroom-audit",
    "8",
    "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=",
    "time 2026-11-23T09:15:02.000417Z",
    "key 21fe31dfa154a261",
)


def body_with(index: int | None = None, line: str = "", *, end: str = "\n", sep: str = "\n") -> bytes:
    lines = list(GOOD_LINES)
    if index is not None:
        lines[index] = line
    return (sep.join(lines) + end).encode("utf-8")


@pytest.mark.parametrize(
    "body",
    [
        body_with(0, "other-log"),
        body_with(1, "08"),
        body_with(1, "+8"),
        body_with(1, "8 "),
        body_with(1, "\uff18"),  # a full-width digit eight
        body_with(1, "99999999999999999999"),
        # Same 32 bytes, but a final base64 character with stray low bits: a second spelling of one root.
        body_with(2, "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyh="),
        body_with(2, "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQ="),
        body_with(3, "time 2026-11-23T09:15:02Z"),
        body_with(4, "key 21FE31DFA154A261"),
        body_with(end=""),
        body_with(end="\n\n"),
        body_with(sep="\r\n", end="\r\n"),
        b"\n".join(line.encode() for line in GOOD_LINES[:4]) + b"\n",
        b"",
        b"x" * 600,
    ],
)
def test_parse_accepts_only_the_canonical_body(body: bytes) -> None:
    with pytest.raises(CheckpointFormatError):
        Checkpoint.parse(body)


def test_non_canonical_base64_really_decodes_to_the_same_root() -> None:
    """The stray-bits case above is dangerous precisely because a lenient decoder accepts it."""
    assert base64.b64decode("XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyh=") == ROOT


@pytest.mark.parametrize(
    "fields",
    [
        (-1, ROOT, TS, "21fe31dfa154a261"),
        (True, ROOT, TS, "21fe31dfa154a261"),
        (1, ROOT[:31], TS, "21fe31dfa154a261"),
        (1, ROOT, "yesterday", "21fe31dfa154a261"),
        (1, ROOT, TS, "21fe31df"),
    ],
)
def test_invalid_fields_are_refused(fields: tuple[object, ...]) -> None:
    with pytest.raises(CheckpointFormatError):
        Checkpoint(*fields)  # type: ignore[arg-type]


def test_public_key_pem_round_trip(rfc_key: Ed25519PrivateKey) -> None:
    pem = public_key_to_pem(rfc_key.public_key())
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    loaded = public_key_from_pem(pem)
    assert isinstance(loaded, Ed25519PublicKey)
    assert raw_public_key(loaded).hex() == RFC8032_PUBLIC


def test_public_key_pem_refuses_other_keys() -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(CheckpointFormatError, match="Ed25519"):
        public_key_from_pem(ec_pem)
    with pytest.raises(CheckpointFormatError):
        public_key_from_pem(b"-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n")


def test_private_key_pem_round_trip(rfc_key: Ed25519PrivateKey) -> None:
    encrypted = private_key_to_pem(rfc_key, b"correct horse")
    assert b"ENCRYPTED" in encrypted
    assert key_id(private_key_from_pem(encrypted, b"correct horse").public_key()) == key_id(rfc_key.public_key())
    with pytest.raises(CheckpointFormatError):
        private_key_from_pem(encrypted, b"wrong")
    plain = private_key_to_pem(rfc_key, None)
    assert private_key_from_pem(plain, None).sign(b"") == rfc_key.sign(b"")
