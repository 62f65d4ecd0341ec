"""Fixtures for the audit core: realistic canonical events, sealed trails and a signing key."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.audit.canonical import AuditEvent, encode_event
from server.audit.chain import GENESIS_HASH, ChainRow, seal_event

TrailFactory = Callable[[int], list[ChainRow]]


def audit_event(seq: int, /, **changes: object) -> AuditEvent:
    """A plausible event; ``changes`` override fields."""
    event: AuditEvent = {
        "seq": seq,
        "ts": f"2026-11-23T09:{seq // 60 % 60:02d}:{seq % 60:02d}.{seq % 1_000_000:06d}Z",
        "actor_type": "user",
        "actor_id": "0192f3a4-0000-7000-8000-000000000001",
        "actor_name": "mia.keller",
        "actor_roles": ["sales_rep"],
        "action": "update",
        "entity": "contact",
        "entity_id": f"0192f3a4-0000-7000-8000-{seq:012d}",
        "fields": ["phone", "email"],
        "before": {"phone": "v1.k3.AAAAciphertextA==", "email": "v1.k3.BBBBciphertextB==", "version": seq},
        "after": {"phone": "v1.k3.CCCCciphertextC==", "email": "v1.k3.DDDDciphertextD==", "version": seq + 1},
        "outcome": "ok",
        "request_id": f"req-{seq}",
        "client_address": "10.0.4.17",
        "user_agent": "strongroom-console/1.0",
        "reason": None,
    }
    event.update(changes)  # type: ignore[typeddict-item]
    return event


def seal_trail(canonicals: list[bytes], first_seq: int = 1, prev_hash: bytes = GENESIS_HASH) -> list[ChainRow]:
    """Seal canonical bodies into chain rows, as the trail does on insert."""
    rows: list[ChainRow] = []
    for offset, canonical in enumerate(canonicals):
        seq = first_seq + offset
        event_hash = seal_event(prev_hash, seq, canonical)
        rows.append((seq, canonical, prev_hash, event_hash))
        prev_hash = event_hash
    return rows


@pytest.fixture(name="make_trail")
def fx_make_trail() -> TrailFactory:
    """Build a sealed trail of n events with seq 1..n."""

    def make(n: int) -> list[ChainRow]:
        return seal_trail([encode_event(audit_event(seq)) for seq in range(1, n + 1)])

    return make


@pytest.fixture(name="make_event")
def fx_make_event() -> Callable[..., AuditEvent]:
    """Build a plausible event for a seq, with keyword overrides."""
    return audit_event


@pytest.fixture(name="seal")
def fx_seal() -> Callable[..., list[ChainRow]]:
    """Seal canonical bodies into chain rows: ``seal(canonicals, first_seq=1, prev_hash=GENESIS_HASH)``."""
    return seal_trail


@pytest.fixture(name="signing_key")
def fx_signing_key() -> Ed25519PrivateKey:
    """A fresh audit signing key."""
    return Ed25519PrivateKey.generate()
