"""Users, passwords and bearer tokens."""

from server.security.identity.models import User
from server.security.identity.passwords import PasswordHasher, check_password_policy
from server.security.identity.tokens import TokenClaims, TokenSigner, load_or_create_signing_key

__all__ = [
    "PasswordHasher",
    "TokenClaims",
    "TokenSigner",
    "User",
    "check_password_policy",
    "load_or_create_signing_key",
]
