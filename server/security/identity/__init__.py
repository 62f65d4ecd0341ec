"""Users, passwords and bearer tokens."""

from server.security.identity.models import (
    ApiClient,
    OrgUnit,
    PolicyRule,
    RefreshToken,
    RevokedToken,
    RoleDefinition,
    SecurityState,
    User,
)
from server.security.identity.passwords import PasswordHasher, check_password_policy
from server.security.identity.throttle import LOGIN_THROTTLE, LoginThrottle
from server.security.identity.tokens import TokenClaims, TokenSigner, load_or_create_signing_key

__all__ = [
    "LOGIN_THROTTLE",
    "ApiClient",
    "LoginThrottle",
    "OrgUnit",
    "PasswordHasher",
    "PolicyRule",
    "RefreshToken",
    "RevokedToken",
    "RoleDefinition",
    "SecurityState",
    "TokenClaims",
    "TokenSigner",
    "User",
    "check_password_policy",
    "load_or_create_signing_key",
]
