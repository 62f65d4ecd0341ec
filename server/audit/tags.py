"""The audit vocabulary: every action, outcome and actor type an audit event may carry, in one place.

Values are stored inside the hashed canonical bytes of each event, so a value, once used, must never be
renamed or removed; add new members instead.
"""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    """What was done. Recorded as the ``action`` of an audit event."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    READ = "read"
    REVEAL = "reveal"  # a masked or hidden field shown in clear on explicit request
    EXPORT = "export"
    ERASE = "erase"  # crypto-shredding of a data subject
    ARCHIVE = "archive"
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    TOKEN_REJECTED = "token_rejected"  # noqa: S105 - an action name, not a secret
    POLICY_CHANGE = "policy_change"
    USER_CHANGE = "user_change"
    CLIENT_CHANGE = "client_change"
    KEY_ROTATE = "key_rotate"
    BACKUP = "backup"
    RESTORE = "restore"
    DENIED = "denied"
    TOKEN_REFRESH = "token_refresh"  # noqa: S105 - an action name, not a secret
    TOKEN_REVOKE = "token_revoke"  # noqa: S105 - an action name, not a secret


class AuditOutcome(StrEnum):
    """How the act ended. ``denied`` is an authorisation refusal; ``error`` any other failure."""

    OK = "ok"
    DENIED = "denied"
    ERROR = "error"


class ActorType(StrEnum):
    """Who acted: a person, an API client, the server itself, or an unauthenticated caller."""

    USER = "user"
    CLIENT = "client"
    SYSTEM = "system"
    ANONYMOUS = "anonymous"
