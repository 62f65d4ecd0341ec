"""Field-level policy core: the Casbin model, compiled field masks, value masking, seeded defaults, reviews.

Pure: no database, no HTTP. The services layer loads rules into :func:`build_enforcer`, compiles one
:class:`FieldMask` per (role set, entity, token scopes) with :func:`compile_field_mask`, caches it until the
policy changes, and filters records through it at the response boundary (:func:`apply_field_mask`).

Typical use::

    enforcer = build_enforcer(DEFAULT_POLICY)
    mask = compile_field_mask(enforcer, ("support_agent",), CONTACT, DEFAULT_SCOPES)
    mask.visibility["phone"]                          # Visibility.MASKED
    render_mask(MaskFormat.PHONE, "13800138000")      # "138****8000"
    check_separation_of_duties(enforcer, DEFAULT_ENTITIES, DEFAULT_ROLES)   # [] for the defaults
"""

import importlib
from typing import TYPE_CHECKING, Any

from server.security.policy.compiler import (
    MAX_ROLE_DEPTH,
    ROLE_SET_SUBJECT,
    PolicyError,
    admin_permissions,
    build_enforcer,
    compile_field_mask,
    enforce_role_set,
    model_text,
    role_closure,
    scope_for,
    validate_role_links,
    validate_rule,
)
from server.security.policy.defaults import DEFAULT_POLICY, DEFAULT_ROLES, DEFAULT_SCOPES
from server.security.policy.field_mask import (
    ADDRESSING_FIELDS,
    ADMIN_ACTIONS,
    ADMIN_OBJECTS,
    AUDIT_ACTIONS,
    COLLECTION_OF_ENTITY,
    ENTITY_ACTIONS,
    FIELD_ACTIONS,
    PII_READ_SCOPE,
    SERVER_STAMPED_FIELDS,
    TOKEN_SCOPES,
    FieldMask,
    PolicyRule,
    RecordScope,
    ScopeRule,
    Visibility,
    admin_actions_for,
    widest_scope,
)
from server.security.policy.masks import REDACTED, apply_field_mask, render_mask

if TYPE_CHECKING:
    from server.security.policy.matrix import (
        DEFAULT_ENTITIES,
        SEPARATION_OF_DUTIES,
        AccessReviewRow,
        access_review,
        check_separation_of_duties,
        render_markdown,
    )

# ``matrix`` is also a script (``python -m server.security.policy.matrix``); importing it here eagerly would make
# runpy warn that the module was imported before being run. Its names load on first use instead.
_MATRIX_NAMES = frozenset(
    {"DEFAULT_ENTITIES", "SEPARATION_OF_DUTIES", "AccessReviewRow", "access_review", "check_separation_of_duties",
     "render_markdown"}
)


def __getattr__(name: str) -> Any:
    if name in _MATRIX_NAMES:
        return getattr(importlib.import_module("server.security.policy.matrix"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ADDRESSING_FIELDS",
    "ADMIN_ACTIONS",
    "ADMIN_OBJECTS",
    "AUDIT_ACTIONS",
    "COLLECTION_OF_ENTITY",
    "DEFAULT_ENTITIES",
    "DEFAULT_POLICY",
    "DEFAULT_ROLES",
    "DEFAULT_SCOPES",
    "ENTITY_ACTIONS",
    "FIELD_ACTIONS",
    "MAX_ROLE_DEPTH",
    "PII_READ_SCOPE",
    "REDACTED",
    "ROLE_SET_SUBJECT",
    "SEPARATION_OF_DUTIES",
    "SERVER_STAMPED_FIELDS",
    "TOKEN_SCOPES",
    "AccessReviewRow",
    "FieldMask",
    "PolicyError",
    "PolicyRule",
    "RecordScope",
    "ScopeRule",
    "Visibility",
    "access_review",
    "admin_actions_for",
    "admin_permissions",
    "apply_field_mask",
    "build_enforcer",
    "check_separation_of_duties",
    "compile_field_mask",
    "enforce_role_set",
    "model_text",
    "render_markdown",
    "render_mask",
    "role_closure",
    "scope_for",
    "validate_role_links",
    "validate_rule",
    "widest_scope",
]
