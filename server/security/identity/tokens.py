"""Signed bearer tokens (JWT, HS256) with expiry."""

from __future__ import annotations

import os
import secrets
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt

from server.errors import NotAuthenticated

ISSUER = "strongroom"
SIGNING_KEY_FILE = "token-signing.key"
_VERIFIED_MAX = 10_000


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified access token says."""

    subject: uuid.UUID
    kind: str
    name: str
    roles: tuple[str, ...]
    scopes: frozenset[str]
    token_id: str
    expires_at: int
    issued_at: float


class TokenSigner:
    """Issues and verifies access tokens with one secret key."""

    def __init__(self, key: bytes, ttl_seconds: int) -> None:
        self._key = key
        self.ttl_seconds = ttl_seconds
        # Tokens whose signature and claims verified, by their exact text: a client sends the same token with
        # every request, and decoding it again is most of the cost. Only expiry changes with time; it is checked
        # on every use. Revocation is not decided here (AccessControl.principal_for checks it per request).
        self._verified: dict[str, TokenClaims] = {}

    def issue(self, *, subject: uuid.UUID, kind: str, name: str, roles: tuple[str, ...],
              scopes: frozenset[str] = frozenset()) -> str:
        """A new signed token for ``subject`` expiring after the configured lifetime."""
        now_exact = time.time()
        now = int(now_exact)
        claims = {
            "iss": ISSUER,
            "sub": str(subject),
            "knd": kind,
            "nam": name,
            "rol": list(roles),
            "scp": " ".join(sorted(scopes)),
            "jti": secrets.token_urlsafe(16),
            "iat": now,
            # Millisecond issue time: revocations ("tokens before T are void") must not spare a token minted
            # in the same second just before them.
            "iatm": int(now_exact * 1000),
            "exp": now + self.ttl_seconds,
        }
        return jwt.encode(claims, self._key, algorithm="HS256")

    def verify(self, token: str) -> TokenClaims:
        """Verify signature, issuer and expiry.

        Raises:
            NotAuthenticated: the token is malformed, forged or expired (the reason stays in the log, not the
                response body).
        """
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at <= time.time():  # PyJWT's rule, without leeway
                raise NotAuthenticated("the access token has expired", reason="expired")
            return known
        verified = self._decode(token)
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[token] = verified
        return verified

    def _decode(self, token: str) -> TokenClaims:
        try:
            claims = jwt.decode(
                token, self._key, algorithms=["HS256"], issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss", "jti"]},
            )
            return TokenClaims(
                subject=uuid.UUID(claims["sub"]),
                kind=str(claims.get("knd", "user")),
                name=str(claims.get("nam", "")),
                roles=tuple(str(role) for role in claims.get("rol", [])),
                scopes=frozenset(str(claims.get("scp", "")).split()),
                token_id=str(claims["jti"]),
                expires_at=int(claims["exp"]),
                issued_at=int(claims.get("iatm", int(claims["iat"]) * 1000)) / 1000,
            )
        except jwt.ExpiredSignatureError:
            raise NotAuthenticated("the access token has expired", reason="expired") from None
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise NotAuthenticated("the access token is not valid", reason="invalid") from None


def load_or_create_signing_key(keys_dir: Path, *, create: bool) -> bytes:
    """Read the token signing key from ``keys_dir``; create it (0600) when ``create`` and it does not exist.

    Raises:
        FileNotFoundError: no key and ``create`` is false (the server must not start without keys).
        PermissionError: the key file is readable by group or others.
    """
    path = keys_dir / SIGNING_KEY_FILE
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"token signing key {path} not found; run `strongroom init` first")
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(secrets.token_bytes(64))
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermissionError(f"key file {path} is readable by group or others; chmod 600 it")
    key = path.read_bytes()
    if len(key) < 32:
        raise ValueError(f"key file {path} is too short to be a signing key")
    return key
