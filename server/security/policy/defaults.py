"""The seeded roles, policy and record scopes: least privilege, separated duties, every grant listed.

Choices a reviewer should know:

* Grants are explicit allow lists, field by field; no wildcards and no denies. A field added to an entity
  later is therefore hidden from everyone until a rule grants it, and combining two business roles gives
  the plain union of both (a deny would apply to the whole role set, see ``compiler``).
* Administrators hold no CRM data: ``sysadmin`` runs users, org units and settings; ``secadmin`` roles,
  policies, API clients and keys; ``auditor`` only reads, verifies and exports the audit trail. Nobody who
  writes policy reads the audit trail or personal data (``matrix.check_separation_of_duties``).
* Record ids, versions and timestamps need no rules: they are shown whenever a record may be read. Fields
  the server stamps (``field_mask.SERVER_STAMPED_FIELDS``) are never writable.
* Sales reps cannot reassign records (``owner_id``, ``org_unit_id`` not writable): what they create is theirs,
  and moving a record out of someone's scope is a manager's decision. Reps do not export or delete.
* ``contact.national_id`` is never in clear by default: sales see it masked and may reveal it one value at a
  time (audited); support and marketing do not see it at all.
* Sales managers reach their team's records (``team``); service records are the support desk's, so managers
  read (not write) those of their org unit (``unit``) to see a customer's service history.
* Support agents serve any customer (``all``) but see contact phone numbers and email masked (phones
  revealable when they must call), no address, no national id, no tax id, no sales notes and no
  opportunities; they see only their own unit's activities, not sales' meeting notes.
* Marketing reads and exports customers and contacts (``all``) with email in clear for campaigns, phones
  masked, no address, no national id; it may record consent changes (withdrawals must land promptly) and
  nothing else. Whether an export honours ``marketing_consent`` is the export service's rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

from server.security.policy.field_mask import PolicyRule, RecordScope, ScopeRule

DEFAULT_ROLES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "sysadmin": "System administrator: users, org units and settings; no CRM data, no policy, no audit trail.",
        "secadmin": "Security administrator: roles, policies, API clients and keys; no CRM data, no audit trail.",
        "auditor": "Auditor: reads, verifies and exports the audit trail; nothing else.",
        "sales_manager": "Sales manager: the team's customers, contacts, opportunities and activities; "
        "national ids masked (revealable); the unit's service records read-only.",
        "sales_rep": "Sales representative: own customers, contacts, opportunities and activities; "
        "national ids masked (revealable); own service records with descriptions masked.",
        "support_agent": "Support agent: all service records; customers and contacts read-only with phones "
        "and email masked; no opportunities.",
        "marketing": "Marketing: reads and exports customers and contacts with email and consent; phones masked; "
        "records consent changes only.",
    }
)


def _admin(role: str, admin_object: str, *actions: str) -> list[PolicyRule]:
    return [(role, f"admin.{admin_object}", action, "allow") for action in actions]


def _entity(role: str, entity: str, *actions: str) -> list[PolicyRule]:
    return [(role, entity, action, "allow") for action in actions]


def _fields(role: str, entity: str, action: str, fields: Iterable[str]) -> list[PolicyRule]:
    return [(role, f"{entity}.{field}", action, "allow") for field in fields]


def _grant(
    role: str,
    entity: str,
    actions: tuple[str, ...],
    *,
    read: tuple[str, ...] = (),
    mask: tuple[str, ...] = (),
    reveal: tuple[str, ...] = (),
    write: tuple[str, ...] = (),
) -> list[PolicyRule]:
    return [
        *_entity(role, entity, *actions),
        *_fields(role, entity, "read", read),
        *_fields(role, entity, "mask", mask),
        *_fields(role, entity, "reveal", reveal),
        *_fields(role, entity, "write", write),
    ]


# The entities' own fields (ids, versions and timestamps are implied), grouped as the grants use them.
_CUSTOMER_PROFILE = ("name", "kind", "industry", "region", "tier", "lifecycle_stage", "source_channel", "tags")
_CUSTOMER_OWNERSHIP = ("owner_id", "org_unit_id")
_CUSTOMER_ALL = (*_CUSTOMER_PROFILE, *_CUSTOMER_OWNERSHIP, "tax_id", "notes")
_CONTACT_CONSENT = ("marketing_consent", "consent_at", "consent_source")
_CONTACT_REACH = ("phone", "mobile", "email", "address")
_CONTACT_OPEN = ("customer_id", "name", "title", *_CONTACT_REACH, *_CONTACT_CONSENT)  # all but national_id
_CONTACT_WRITABLE = ("customer_id", "name", "title", *_CONTACT_REACH, "national_id", "marketing_consent",
                     "consent_source")
_OPPORTUNITY_ALL = ("customer_id", "title", "amount", "currency", "stage", "probability", "expected_close_date",
                    "owner_id", "loss_reason", "closed_at")
_OPPORTUNITY_WRITABLE = tuple(name for name in _OPPORTUNITY_ALL if name != "closed_at")
_SERVICE_CASE = ("customer_id", "contact_id", "type", "priority", "status", "owner_id", "satisfaction")
_SERVICE_TEXT = ("description", "resolution")
_SERVICE_CLOCKS = ("first_response_due", "resolution_due", "first_responded_at", "resolved_at", "closed_at")
_SERVICE_ALL = (*_SERVICE_CASE, *_SERVICE_TEXT, *_SERVICE_CLOCKS)
_ACTIVITY_ALL = ("customer_id", "contact_id", "opportunity_id", "service_record_id", "kind", "occurred_at",
                 "owner_id", "summary")

_READ = ("read", "list")


def _without(fields: tuple[str, ...], *excluded: str) -> tuple[str, ...]:
    return tuple(name for name in fields if name not in excluded)


_SYSADMIN: Final = [
    *_admin("sysadmin", "user", "read", "write"),
    *_admin("sysadmin", "org_unit", "read", "write"),
    *_admin("sysadmin", "settings", "read", "write"),
    *_admin("sysadmin", "role", "read"),
]

_SECADMIN: Final = [
    *_admin("secadmin", "role", "read", "write"),
    *_admin("secadmin", "policy", "read", "write"),
    *_admin("secadmin", "client", "read", "write"),
    *_admin("secadmin", "key", "read", "write"),
    *_admin("secadmin", "user", "read"),
]

_AUDITOR: Final = [*_admin("auditor", "audit", "read", "verify", "export")]

_SALES_MANAGER: Final = [
    *_grant("sales_manager", "customer", (*_READ, "create", "update", "delete", "export"),
            read=_CUSTOMER_ALL, write=_CUSTOMER_ALL),
    *_grant("sales_manager", "contact", (*_READ, "create", "update", "export"),
            read=_CONTACT_OPEN, mask=("national_id",), reveal=("national_id",), write=_CONTACT_WRITABLE),
    *_grant("sales_manager", "opportunity", (*_READ, "create", "update", "delete", "export"),
            read=_OPPORTUNITY_ALL, write=_OPPORTUNITY_WRITABLE),
    *_grant("sales_manager", "activity", (*_READ, "create", "update", "export"),
            read=_ACTIVITY_ALL, write=_ACTIVITY_ALL),
    *_grant("sales_manager", "service_record", (*_READ, "export"), read=_SERVICE_ALL),
]

_SALES_REP: Final = [
    *_grant("sales_rep", "customer", (*_READ, "create", "update"),
            read=_CUSTOMER_ALL, write=_without(_CUSTOMER_ALL, *_CUSTOMER_OWNERSHIP)),
    *_grant("sales_rep", "contact", (*_READ, "create", "update"),
            read=_CONTACT_OPEN, mask=("national_id",), reveal=("national_id",), write=_CONTACT_WRITABLE),
    *_grant("sales_rep", "opportunity", (*_READ, "create", "update"),
            read=_OPPORTUNITY_ALL, write=_without(_OPPORTUNITY_WRITABLE, "owner_id")),
    *_grant("sales_rep", "activity", (*_READ, "create", "update"),
            read=_ACTIVITY_ALL, write=_without(_ACTIVITY_ALL, "owner_id")),
    *_grant("sales_rep", "service_record", _READ,
            read=(*_SERVICE_CASE, *_SERVICE_CLOCKS), mask=_SERVICE_TEXT),
]

_SUPPORT_AGENT: Final = [
    *_grant("support_agent", "customer", _READ, read=(*_CUSTOMER_PROFILE, *_CUSTOMER_OWNERSHIP)),
    *_grant("support_agent", "contact", _READ,
            read=("customer_id", "name", "title", *_CONTACT_CONSENT),
            mask=("phone", "mobile", "email"), reveal=("phone", "mobile")),
    *_grant("support_agent", "service_record", (*_READ, "create", "update"),
            read=_SERVICE_ALL, write=(*_SERVICE_CASE, *_SERVICE_TEXT)),
    *_grant("support_agent", "activity", (*_READ, "create"),
            read=_ACTIVITY_ALL, write=_without(_ACTIVITY_ALL, "opportunity_id", "owner_id")),
]

_MARKETING: Final = [
    *_grant("marketing", "customer", (*_READ, "export"), read=_CUSTOMER_PROFILE),
    *_grant("marketing", "contact", (*_READ, "update", "export"),
            read=("customer_id", "name", "title", "email", *_CONTACT_CONSENT),
            mask=("phone", "mobile"), write=("marketing_consent", "consent_source")),
]

DEFAULT_POLICY: Final[tuple[PolicyRule, ...]] = (
    *_SYSADMIN, *_SECADMIN, *_AUDITOR, *_SALES_MANAGER, *_SALES_REP, *_SUPPORT_AGENT, *_MARKETING,
)

DEFAULT_SCOPES: Final[tuple[ScopeRule, ...]] = (
    ("sales_manager", "customer", RecordScope.TEAM),
    ("sales_manager", "contact", RecordScope.TEAM),
    ("sales_manager", "opportunity", RecordScope.TEAM),
    ("sales_manager", "activity", RecordScope.TEAM),
    ("sales_manager", "service_record", RecordScope.UNIT),
    ("sales_rep", "customer", RecordScope.OWN),
    ("sales_rep", "contact", RecordScope.OWN),
    ("sales_rep", "opportunity", RecordScope.OWN),
    ("sales_rep", "activity", RecordScope.OWN),
    ("sales_rep", "service_record", RecordScope.OWN),
    ("support_agent", "customer", RecordScope.ALL),
    ("support_agent", "contact", RecordScope.ALL),
    ("support_agent", "service_record", RecordScope.ALL),
    ("support_agent", "activity", RecordScope.UNIT),
    ("marketing", "customer", RecordScope.ALL),
    ("marketing", "contact", RecordScope.ALL),
)
