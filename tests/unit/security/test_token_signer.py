"""TokenSigner keeps verified tokens: a kept token must still expire, and nothing else may ride on it."""

from __future__ import annotations

import time
import uuid

import pytest

from server.errors import NotAuthenticated
from server.security.identity import tokens
from server.security.identity.tokens import TokenSigner

KEY = b"k" * 32


def _token(signer: TokenSigner) -> str:
    return signer.issue(subject=uuid.uuid4(), kind="user", name="mia", roles=("sales_rep",))


def test_a_kept_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = TokenSigner(KEY, ttl_seconds=60)
    token = _token(signer)
    first = signer.verify(token)
    assert signer.verify(token) is first  # kept: not decoded again
    later = time.time() + 61
    monkeypatch.setattr(tokens.time, "time", lambda: later)
    with pytest.raises(NotAuthenticated) as refused:
        signer.verify(token)
    assert refused.value.extensions["reason"] == "expired"


def test_a_kept_token_lends_nothing_to_a_forged_or_foreign_one() -> None:
    signer = TokenSigner(KEY, ttl_seconds=60)
    token = _token(signer)
    signer.verify(token)
    header, payload, signature = token.split(".")
    altered_signature = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    foreign = _token(TokenSigner(b"x" * 32, ttl_seconds=60))
    for forged in (f"{header}.{payload}.{altered_signature}", f"{header}.{payload}.", foreign, token + " "):
        with pytest.raises(NotAuthenticated):
            signer.verify(forged)
