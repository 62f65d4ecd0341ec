"""Build the Casbin enforcer and compile its policy into field masks.

Casbin (``model.conf``) is the source of truth. Asking it once per field per row is far too slow: pycasbin
evaluates the matcher expression against every policy line on each ``enforce`` (measured here: ~1.8 ms per
call with 300 lines, so ~120 ms for one contact mask). The compiler therefore reads the enforcer's lines and
role links once per mask and evaluates them with exactly the model's semantics:

* a role set is one subject: in Casbin terms a synthetic subject linked by ``g`` to each role
  (:func:`enforce_role_set` does precisely that, through Casbin, for tests and explanations). A line applies
  when its subject is one of the roles or a role they inherit;
* the object matches by Casbin's own ``keyMatch``; the action matches exactly or through ``*``;
* allowed = some applicable allow and no applicable deny. So a deny in *any* role of the set overrides an allow
  from another role: denies are "never" rules for whoever holds that role, in whatever combination. The seeded
  defaults therefore grant by explicit allow lists and carry no denies, so combining business roles is a plain
  union; the separation-of-duties check (``matrix.check_separation_of_duties``) polices combinations.

The unit tests compare this evaluation with ``Enforcer.enforce`` for every default rule and for random
policies, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import importlib.resources
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Any, Final

import casbin  # type: ignore[import-untyped]
from casbin.util import key_match  # type: ignore[import-untyped]

from server.domain.fields import Classification, EntitySpec, MaskFormat
from server.errors import InvalidInput
from server.security.policy.field_mask import (
    ADDRESSING_FIELDS,
    ADMIN_OBJECTS,
    ADMIN_PREFIX,
    COLLECTION_OF_ENTITY,
    ENTITY_ACTIONS,
    FIELD_ACTIONS,
    PII_READ_SCOPE,
    SERVER_STAMPED_FIELDS,
    FieldMask,
    PolicyRule,
    RecordScope,
    ScopeRule,
    Visibility,
    admin_actions_for,
    widest_scope,
)


class PolicyError(InvalidInput):
    """A policy rule or role link is malformed or unsafe (422); the detail names the rule, never data."""

    title = "Invalid policy"
    type_slug = "invalid-policy"


ROLE_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
_IDENTIFIER: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
# The subject that stands for a role set inside a private enforcer; "@" cannot occur in a role name.
ROLE_SET_SUBJECT: Final = "@role-set"
# Role inheritance deeper than this is refused: Casbin's role manager stops following links after 10 hops, and
# a policy nobody can read at a glance is a policy nobody reviews.
MAX_ROLE_DEPTH: Final = 4
ALLOW: Final = "allow"
DENY: Final = "deny"
_WRITE_ACTIONS: Final = frozenset({"create", "update", "delete"})
_PROTECTED_CLASSES: Final = frozenset({Classification.PII, Classification.SENSITIVE})

# Casbin logs every enforce() at INFO/WARNING ("Request: alice, contact.phone, read ---> True"): subjects and
# objects in the operational log, and a measurable cost. ``enable_log=False`` only sets ``disabled`` on the
# named casbin loggers, which a later ``logging.config.dictConfig(disable_existing_loggers=False)`` (structlog
# setup) switches back on. The enforcer therefore gets a logger outside the logging registry that no
# configuration can reach and that is enabled for nothing.
_SILENT_LOGGER: Final = logging.Logger("strongroom.policy.casbin", level=logging.CRITICAL + 1)
_SILENT_LOGGER.propagate = False
_SILENT_LOGGER.disabled = True


@cache
def model_text() -> str:
    """The Casbin model (``model.conf``), read once from the package."""
    return importlib.resources.files(__package__).joinpath("model.conf").read_text(encoding="utf-8")


def _object_kind(obj: str) -> str:
    """``any``, ``admin``, ``entity`` or ``field`` for a valid object shape; raises PolicyError otherwise."""
    if obj == "*":
        return "any"
    if "*" in obj[:-1] or (obj.endswith("*") and not obj.endswith(".*")):
        # keyMatch ignores everything after the first "*": "*.owner_id" would match every object.
        raise PolicyError(f"wildcard only as a whole object or a trailing '.*': {obj!r}")
    head, dot, tail = obj.partition(".")
    if not _IDENTIFIER.fullmatch(head):
        raise PolicyError(f"malformed policy object {obj!r}")
    if head == "admin":
        if not dot or (tail != "*" and tail not in ADMIN_OBJECTS):
            raise PolicyError(f"unknown administrative object {obj!r}")
        return "admin"
    if not dot:
        return "entity"
    if tail != "*" and not _IDENTIFIER.fullmatch(tail):
        raise PolicyError(f"malformed policy object {obj!r}")
    return "field"


def _actions_for(kind: str, obj: str) -> tuple[str, ...]:
    if kind == "entity":
        return ENTITY_ACTIONS
    if kind == "field":
        return FIELD_ACTIONS
    if kind == "admin" and obj != "admin.*":
        return admin_actions_for(obj.removeprefix(ADMIN_PREFIX))
    admin_any = ("read", "write", "verify", "export")
    return admin_any if kind == "admin" else tuple(dict.fromkeys(ENTITY_ACTIONS + FIELD_ACTIONS + admin_any))


def validate_rule(rule: Sequence[str], entities: Iterable[EntitySpec] | None = None) -> PolicyRule:
    """Check one policy rule and return it as a ``PolicyRule`` tuple.

    Refused: wrong arity; subjects that are not role names; objects other than ``*``, ``admin.*``,
    ``admin.<object>``, ``<entity>``, ``<entity>.*`` or ``<entity>.<field>``; actions the object does not
    know; effects other than ``allow``/``deny``; and any *allow* on ``*`` or ``admin.*`` (a grant that silently
    covers objects added later). With ``entities``, entity and field names must be declared.

    Raises:
        PolicyError: The rule is malformed or unsafe.
    """
    if len(rule) != 4 or not all(isinstance(part, str) for part in rule):
        raise PolicyError(f"a policy rule is (role, object, action, effect): {tuple(rule)!r}")
    subject, obj, action, effect = rule
    if not ROLE_NAME.fullmatch(subject):
        raise PolicyError(f"malformed role name {subject!r}")
    if effect not in (ALLOW, DENY):
        raise PolicyError(f"effect must be 'allow' or 'deny': {effect!r}")
    kind = _object_kind(obj)
    if effect == ALLOW and obj in ("*", "admin.*"):
        raise PolicyError(f"allow on {obj!r} would grant objects added later; list them instead")
    if action != "*" and action not in _actions_for(kind, obj):
        raise PolicyError(f"action {action!r} does not apply to {obj!r}")
    if entities is not None and kind in ("entity", "field"):
        declared = {entity.name: entity for entity in entities}
        entity_name, _, field_name = obj.partition(".")
        entity = declared.get(entity_name)
        if entity is None:
            raise PolicyError(f"unknown entity in {obj!r}")
        if field_name not in ("", "*") and entity.field(field_name) is None:
            raise PolicyError(f"unknown field in {obj!r}")
    return (subject, obj, action, effect)


def validate_role_links(role_links: Iterable[Sequence[str]]) -> list[tuple[str, str]]:
    """Check role inheritance links ``(role, inherited role)``: names, no self-links, no cycles, bounded depth.

    Raises:
        PolicyError: A link is malformed, or the links form a cycle or a chain deeper than ``MAX_ROLE_DEPTH``.
    """
    links: list[tuple[str, str]] = []
    parents: dict[str, set[str]] = {}
    for link in role_links:
        if len(link) != 2 or not all(isinstance(name, str) and ROLE_NAME.fullmatch(name) for name in link):
            raise PolicyError(f"a role link is (role, inherited role) with role names: {tuple(link)!r}")
        role, inherited = link[0], link[1]
        if role == inherited:
            raise PolicyError(f"role {role!r} cannot inherit itself")
        links.append((role, inherited))
        parents.setdefault(role, set()).add(inherited)

    depths: dict[str, int] = {}

    def depth(role: str, path: tuple[str, ...]) -> int:
        """Links below ``role`` on its longest chain (memoised: a dense hierarchy must not explode)."""
        if role in path:
            raise PolicyError(f"role links form a cycle: {' -> '.join((*path, role))}")
        if role not in depths:
            depths[role] = max((1 + depth(parent, (*path, role)) for parent in parents.get(role, ())), default=0)
            if depths[role] > MAX_ROLE_DEPTH:
                raise PolicyError(f"role {role!r} inherits through more than {MAX_ROLE_DEPTH} levels")
        return depths[role]

    for role in parents:
        depth(role, ())
    return list(dict.fromkeys(links))


def _new_enforcer() -> Any:
    enforcer = casbin.Enforcer(casbin.Enforcer.new_model(text=model_text()), None, enable_log=False)
    enforcer.logger = _SILENT_LOGGER
    return enforcer


def build_enforcer(rules: Iterable[PolicyRule], role_links: Iterable[tuple[str, str]] = ()) -> casbin.Enforcer:
    """An in-memory Casbin enforcer over ``model.conf`` holding ``rules`` and ``role_links``, logging off.

    Every rule and link is validated first (see :func:`validate_rule`, :func:`validate_role_links`); duplicates
    are dropped. The enforcer has no adapter: storage is the caller's business.

    Raises:
        PolicyError: A rule or link is malformed or unsafe.
    """
    checked_rules = list(dict.fromkeys(validate_rule(rule) for rule in rules))
    checked_links = validate_role_links(role_links)
    enforcer = _new_enforcer()
    if checked_rules:
        enforcer.add_policies([list(rule) for rule in checked_rules])
    if checked_links:
        enforcer.add_grouping_policies([list(link) for link in checked_links])
    return enforcer


def enforce_role_set(enforcer: casbin.Enforcer, roles: Sequence[str], obj: str, action: str) -> bool:
    """Ask Casbin itself whether the role set may do ``action`` on ``obj``.

    Copies the enforcer's rules and links into a private enforcer, links the synthetic subject
    ``ROLE_SET_SUBJECT`` to each role and calls ``enforce``. Slow (a fresh enforcer per call): for tests,
    diagnostics and "why" explanations, never per request. The shared enforcer is not modified.
    """
    private = _new_enforcer()
    policy = [list(rule) for rule in enforcer.get_policy()]
    links = [list(link) for link in enforcer.get_grouping_policy()] + [[ROLE_SET_SUBJECT, role] for role in roles]
    if policy:
        private.add_policies(policy)
    if links:
        private.add_grouping_policies(links)
    return bool(private.enforce(ROLE_SET_SUBJECT, obj, action))


@dataclass(frozen=True, slots=True)
class _ApplicableRules:
    """The enforcer's rules that apply to one role set, indexed for evaluation."""

    # (object, action) -> (some allow, some deny), for objects without a wildcard.
    exact: dict[tuple[str, str], tuple[bool, bool]]
    # (object pattern, action, effect) for objects with a wildcard, matched with Casbin's keyMatch.
    patterns: tuple[tuple[str, str, str], ...]

    def allows(self, obj: str, action: str) -> bool:
        """Casbin's verdict: some matching allow and no matching deny."""
        allowed = denied = False
        for key in ((obj, action), (obj, "*")):
            allow, deny = self.exact.get(key, (False, False))
            allowed, denied = allowed or allow, denied or deny
        for pattern, rule_action, effect in self.patterns:
            if (rule_action in (action, "*")) and key_match(obj, pattern):
                allowed, denied = allowed or effect == ALLOW, denied or effect == DENY
        return allowed and not denied


def role_closure(enforcer: casbin.Enforcer, roles: Sequence[str]) -> frozenset[str]:
    """The roles and every role they inherit through the enforcer's ``g`` links."""
    closure = set(roles)
    for role in roles:
        closure.update(enforcer.get_implicit_roles_for_user(role))
    return frozenset(closure)


def _applicable_rules(enforcer: casbin.Enforcer, roles: Sequence[str]) -> _ApplicableRules:
    subjects = role_closure(enforcer, roles)
    exact: dict[tuple[str, str], tuple[bool, bool]] = {}
    patterns: list[tuple[str, str, str]] = []
    for subject, obj, action, effect, *_ in enforcer.get_policy():
        if subject not in subjects:
            continue
        if "*" in obj:
            patterns.append((obj, action, effect))
        else:
            allow, deny = exact.get((obj, action), (False, False))
            exact[(obj, action)] = (allow or effect == ALLOW, deny or effect == DENY)
    return _ApplicableRules(exact, tuple(patterns))


def _nothing(entity: EntitySpec) -> FieldMask:
    return FieldMask(
        entity=entity.name,
        visibility=MappingProxyType(dict.fromkeys(entity.field_names, Visibility.HIDDEN)),
        revealable=frozenset(),
        writable=frozenset(),
        actions=frozenset(),
        scope=RecordScope.NONE,
    )


def compile_field_mask(
    enforcer: casbin.Enforcer,
    roles: Sequence[str],
    entity: EntitySpec,
    scope_rules: Iterable[ScopeRule],
    token_scopes: frozenset[str] | None = None,
) -> FieldMask:
    """Compile what ``roles`` (as one subject) may see and do on ``entity``.

    Args:
        enforcer: The policy, normally from :func:`build_enforcer`.
        roles: The caller's roles; evaluated together, a deny in any of them wins.
        entity: The entity declaration; the mask covers exactly its declared fields.
        scope_rules: ``(role, entity, scope)`` rules; the widest scope of the roles (and roles they inherit) wins.
        token_scopes: An API client's token scopes, or None for a person. Scopes only ever narrow: without
            ``<collection>:read`` nothing is visible; without ``<collection>:write`` nothing is writable and
            create/update/delete are gone; without ``pii:read`` PII and sensitive fields are masked (or hidden
            when not maskable) and nothing is revealable.

    Returns:
        The field mask. If the entity's ``read`` action is not allowed, every field is hidden, no action is
        allowed and the scope is ``NONE``.
    """
    rules = _applicable_rules(enforcer, roles)
    actions = {action for action in ENTITY_ACTIONS if rules.allows(entity.name, action)}
    if "read" not in actions:
        return _nothing(entity)
    pii_allowed = True
    if token_scopes is not None:
        collection = COLLECTION_OF_ENTITY.get(entity.name)
        if collection is None or f"{collection}:read" not in token_scopes:
            return _nothing(entity)
        if f"{collection}:write" not in token_scopes:
            actions -= _WRITE_ACTIONS
        pii_allowed = PII_READ_SCOPE in token_scopes
    may_write = bool(actions & {"create", "update"})

    visibility: dict[str, Visibility] = {}
    revealable: set[str] = set()
    writable: set[str] = set()
    for spec in entity.fields:
        obj = f"{entity.name}.{spec.name}"
        maskable = spec.mask is not MaskFormat.NONE
        if spec.name in ADDRESSING_FIELDS or rules.allows(obj, "read"):
            shown = Visibility.CLEAR
        elif maskable and rules.allows(obj, "mask"):
            shown = Visibility.MASKED
        else:
            shown = Visibility.HIDDEN
        if not pii_allowed and shown is Visibility.CLEAR and spec.classification in _PROTECTED_CLASSES:
            shown = Visibility.MASKED if maskable else Visibility.HIDDEN
        elif pii_allowed and shown is Visibility.MASKED and rules.allows(obj, "reveal"):
            revealable.add(spec.name)
        if may_write and spec.name not in SERVER_STAMPED_FIELDS and rules.allows(obj, "write"):
            writable.add(spec.name)
        visibility[spec.name] = shown

    return FieldMask(
        entity=entity.name,
        visibility=MappingProxyType(visibility),
        revealable=frozenset(revealable),
        writable=frozenset(writable),
        actions=frozenset(actions),
        scope=scope_for(enforcer, roles, entity.name, scope_rules),
    )


def scope_for(
    enforcer: casbin.Enforcer, roles: Sequence[str], entity_name: str, scope_rules: Iterable[ScopeRule]
) -> RecordScope:
    """The widest record scope the roles (and the roles they inherit) hold on ``entity_name``; NONE if none."""
    subjects = role_closure(enforcer, roles)
    return widest_scope(
        RecordScope(scope) for role, entity, scope in scope_rules if role in subjects and entity == entity_name
    )


def admin_permissions(
    enforcer: casbin.Enforcer, roles: Sequence[str], token_scopes: frozenset[str] | None = None
) -> frozenset[str]:
    """The administrative permissions of the role set, as ``"<object>:<action>"`` (``"policy:write"``).

    API clients (``token_scopes`` not None) get none: the token scope vocabulary has no administrative scopes,
    and a scope only narrows.
    """
    if token_scopes is not None:
        return frozenset()
    rules = _applicable_rules(enforcer, roles)
    return frozenset(
        f"{admin_object}:{action}"
        for admin_object in ADMIN_OBJECTS
        for action in admin_actions_for(admin_object)
        if rules.allows(f"{ADMIN_PREFIX}{admin_object}", action)
    )
