"""Compiling policy into field masks, from the attacker's side: denies win, scopes only narrow, nothing leaks."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import casbin  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.domain.contacts.fields import CONTACT
from server.domain.customers.fields import CUSTOMER
from server.domain.fields import Classification, EntitySpec, FieldSpec, MaskFormat, record_fields
from server.errors import InvalidInput
from server.security.policy import (
    ADDRESSING_FIELDS,
    ADMIN_OBJECTS,
    ENTITY_ACTIONS,
    MAX_ROLE_DEPTH,
    SERVER_STAMPED_FIELDS,
    FieldMask,
    PolicyError,
    PolicyRule,
    RecordScope,
    Visibility,
    admin_actions_for,
    admin_permissions,
    build_enforcer,
    compile_field_mask,
    enforce_role_set,
    model_text,
    validate_rule,
)

CONTACT_READER: list[PolicyRule] = [
    ("reader", "contact", "read", "allow"),
    ("reader", "contact", "list", "allow"),
    ("reader", "contact.*", "read", "allow"),
]
CONTACT_EDITOR: list[PolicyRule] = [
    *CONTACT_READER,
    ("reader", "contact", "create", "allow"),
    ("reader", "contact", "update", "allow"),
    ("reader", "contact", "delete", "allow"),
    ("reader", "contact", "export", "allow"),
    ("reader", "contact.*", "write", "allow"),
]
ALL_CONTACT_SCOPES = frozenset({"contacts:read", "contacts:write", "pii:read"})


def mask_of(rules: Sequence[PolicyRule], roles: Sequence[str], entity: EntitySpec = CONTACT,
            links: Sequence[tuple[str, str]] = (), scopes: frozenset[str] | None = None,
            scope_rules: Sequence[tuple[str, str, RecordScope]] = ()) -> FieldMask:
    return compile_field_mask(build_enforcer(rules, links), roles, entity, scope_rules, scopes)


def rank(visibility: Visibility) -> int:
    return {Visibility.HIDDEN: 0, Visibility.MASKED: 1, Visibility.CLEAR: 2}[visibility]


# -- deny overrides allow --------------------------------------------------------------------------------


def test_a_deny_in_one_role_overrides_an_allow_in_another() -> None:
    rules = [*CONTACT_READER, ("nosy", "contact.national_id", "read", "deny")]
    assert mask_of(rules, ["reader"]).visibility["national_id"] is Visibility.CLEAR
    assert mask_of(rules, ["reader", "nosy"]).visibility["national_id"] is Visibility.HIDDEN
    assert mask_of(rules, ["nosy", "reader"]).visibility["national_id"] is Visibility.HIDDEN
    # Casbin itself, with a synthetic subject linked to both roles, agrees.
    enforcer = build_enforcer(rules)
    assert enforce_role_set(enforcer, ["reader"], "contact.national_id", "read")
    assert not enforce_role_set(enforcer, ["reader", "nosy"], "contact.national_id", "read")


def test_an_entity_deny_in_one_role_hides_the_whole_entity() -> None:
    mask = mask_of([*CONTACT_EDITOR, ("blocked", "contact", "read", "deny")], ["reader", "blocked"])
    assert mask.actions == frozenset()
    assert set(mask.visibility.values()) == {Visibility.HIDDEN}
    assert mask.writable == frozenset()


def test_wildcard_allow_with_a_specific_deny() -> None:
    rules = [
        *CONTACT_EDITOR,
        ("reader", "contact.national_id", "read", "deny"),
        ("reader", "contact.national_id", "mask", "allow"),
        ("reader", "contact.national_id", "reveal", "allow"),
        ("reader", "contact.address", "*", "deny"),
    ]
    mask = mask_of(rules, ["reader"])
    assert mask.visibility["national_id"] is Visibility.MASKED
    assert mask.revealable == frozenset({"national_id"})
    assert mask.visibility["address"] is Visibility.HIDDEN
    assert "address" not in mask.writable
    assert mask.visibility["phone"] is Visibility.CLEAR
    assert "phone" in mask.writable


def test_a_deny_on_everything_suspends_any_role_set() -> None:
    rules = [*CONTACT_EDITOR, ("secadmin", "admin.policy", "write", "allow"), ("suspended", "*", "*", "deny")]
    enforcer = build_enforcer(rules)
    assert compile_field_mask(enforcer, ["reader", "suspended"], CONTACT, ()).actions == frozenset()
    assert admin_permissions(enforcer, ["secadmin", "suspended"]) == frozenset()
    assert admin_permissions(enforcer, ["secadmin"]) == frozenset({"policy:write"})


def test_a_deny_reaches_through_role_inheritance() -> None:
    rules = [*CONTACT_READER, ("restricted", "contact.phone", "read", "deny")]
    mask = mask_of(rules, ["reader", "junior"], links=[("junior", "restricted")])
    assert mask.visibility["phone"] is Visibility.HIDDEN


# -- visibility rules --------------------------------------------------------------------------------------


def test_a_role_without_read_sees_nothing_whatever_else_it_holds() -> None:
    rules = [(role, obj, act, eft) for role, obj, act, eft in CONTACT_EDITOR if (obj, act) != ("contact", "read")]
    mask = mask_of(rules, ["reader"], scope_rules=[("reader", "contact", RecordScope.ALL)])
    assert mask.actions == frozenset()
    assert set(mask.visibility) == set(CONTACT.field_names)
    assert set(mask.visibility.values()) == {Visibility.HIDDEN}
    assert mask.writable == frozenset()
    assert mask.revealable == frozenset()
    assert mask.scope is RecordScope.NONE


def test_an_unknown_role_sees_nothing() -> None:
    mask = mask_of(CONTACT_EDITOR, ["stranger"])
    assert mask.actions == frozenset()
    assert set(mask.visibility.values()) == {Visibility.HIDDEN}


def test_addressing_fields_are_clear_whenever_the_entity_may_be_read() -> None:
    mask = mask_of([("reader", "contact", "read", "allow")], ["reader"])
    assert mask.fields_with(Visibility.CLEAR) == ADDRESSING_FIELDS
    denied = mask_of([("reader", "contact", "read", "allow"), ("reader", "contact.id", "read", "deny")], ["reader"])
    assert denied.visibility["id"] is Visibility.CLEAR


def test_mask_only_applies_to_maskable_fields() -> None:
    rules = [("reader", "contact", "read", "allow"), ("reader", "contact.*", "mask", "allow"),
             ("reader", "contact.*", "reveal", "allow")]
    mask = mask_of(rules, ["reader"])
    for spec in CONTACT.fields:
        if spec.name in ADDRESSING_FIELDS:
            continue
        expected = Visibility.MASKED if spec.mask is not MaskFormat.NONE else Visibility.HIDDEN
        assert mask.visibility[spec.name] is expected, spec.name
    assert mask.revealable == mask.fields_with(Visibility.MASKED)


def test_reveal_counts_only_for_masked_fields() -> None:
    rules = [
        ("reader", "contact", "read", "allow"),
        ("reader", "contact.name", "read", "allow"),
        ("reader", "contact.name", "reveal", "allow"),  # already clear
        ("reader", "contact.email", "reveal", "allow"),  # hidden: reveal alone is nothing
        ("reader", "contact.phone", "mask", "allow"),
        ("reader", "contact.phone", "reveal", "allow"),
    ]
    mask = mask_of(rules, ["reader"])
    assert mask.revealable == frozenset({"phone"})
    assert mask.visibility["email"] is Visibility.HIDDEN


def test_write_needs_create_or_update_and_never_covers_server_stamped_fields() -> None:
    write_all = [("reader", "contact", "read", "allow"), ("reader", "contact.*", "write", "allow"),
                 ("reader", "contact.consent_at", "write", "allow"), ("reader", "contact.id", "write", "allow")]
    assert mask_of(write_all, ["reader"]).writable == frozenset()
    mask = mask_of([*write_all, ("reader", "contact", "update", "allow")], ["reader"])
    assert mask.writable == frozenset(CONTACT.field_names) - SERVER_STAMPED_FIELDS
    assert "consent_at" not in mask.writable
    # Write-only: a field may be set without being readable (a web form entering a national id).
    assert mask.visibility["national_id"] is Visibility.HIDDEN


def test_every_declared_field_is_in_every_mask() -> None:
    for roles in (["reader"], ["stranger"], ["reader", "stranger"]):
        for entity in (CONTACT, CUSTOMER):
            assert tuple(mask_of(CONTACT_EDITOR, roles, entity).visibility) == entity.field_names


def test_the_visibility_mapping_is_read_only() -> None:
    mask = mask_of(CONTACT_READER, ["reader"])
    with pytest.raises(TypeError):
        mask.visibility["national_id"] = Visibility.CLEAR  # type: ignore[index]


# -- record scope ------------------------------------------------------------------------------------------


def test_scope_is_the_widest_of_the_roles_and_the_roles_they_inherit() -> None:
    rules = [*CONTACT_READER, ("manager", "contact", "read", "allow")]
    scope_rules = [
        ("reader", "contact", RecordScope.OWN),
        ("manager", "contact", RecordScope.TEAM),
        ("auditor_of_units", "contact", RecordScope.UNIT),
        ("reader", "customer", RecordScope.ALL),
    ]
    assert mask_of(rules, ["reader"], scope_rules=scope_rules).scope is RecordScope.OWN
    assert mask_of(rules, ["reader", "manager"], scope_rules=scope_rules).scope is RecordScope.TEAM
    inherited = mask_of(rules, ["reader"], links=[("reader", "auditor_of_units")], scope_rules=scope_rules)
    assert inherited.scope is RecordScope.UNIT
    assert mask_of(rules, ["manager"], scope_rules=[]).scope is RecordScope.NONE


# -- token scopes ------------------------------------------------------------------------------------------

SENSITIVE_NOTE = EntitySpec(
    "contact",
    record_fields(
        FieldSpec("national_id", classification=Classification.SENSITIVE, mask=MaskFormat.LAST_FOUR),
        FieldSpec("diagnosis", classification=Classification.SENSITIVE),  # not maskable
        FieldSpec("title"),
    ),
)


def test_a_person_is_not_narrowed_and_a_client_without_scopes_sees_nothing() -> None:
    assert mask_of(CONTACT_EDITOR, ["reader"], scopes=None).actions == frozenset(ENTITY_ACTIONS)
    nothing = mask_of(CONTACT_EDITOR, ["reader"], scopes=frozenset())
    assert nothing.actions == frozenset()
    assert set(nothing.visibility.values()) == {Visibility.HIDDEN}
    wrong_collection = mask_of(CONTACT_EDITOR, ["reader"], scopes=frozenset({"customers:read", "pii:read"}))
    assert wrong_collection.actions == frozenset()


def test_read_scope_without_write_scope_drops_writes() -> None:
    mask = mask_of(CONTACT_EDITOR, ["reader"], scopes=frozenset({"contacts:read", "pii:read"}))
    assert mask.actions == frozenset({"read", "list", "export"})
    assert mask.writable == frozenset()
    write_only = mask_of(CONTACT_EDITOR, ["reader"], scopes=frozenset({"contacts:write", "pii:read"}))
    assert write_only.actions == frozenset()


def test_without_pii_scope_pii_and_sensitive_fields_are_masked_or_hidden() -> None:
    mask = mask_of(CONTACT_EDITOR, ["reader"], scopes=frozenset({"contacts:read", "contacts:write"}))
    for spec in CONTACT.fields:
        if spec.classification in (Classification.PII, Classification.SENSITIVE):
            assert mask.visibility[spec.name] is Visibility.MASKED, spec.name  # all contact PII is maskable
        else:
            assert mask.visibility[spec.name] is Visibility.CLEAR, spec.name
    assert mask.writable == frozenset(CONTACT.field_names) - SERVER_STAMPED_FIELDS  # write-only stays possible
    rules = [("reader", "contact", "read", "allow"), ("reader", "contact.*", "read", "allow")]
    narrowed = mask_of(rules, ["reader"], entity=SENSITIVE_NOTE, scopes=frozenset({"contacts:read"}))
    assert narrowed.visibility["national_id"] is Visibility.MASKED
    assert narrowed.visibility["diagnosis"] is Visibility.HIDDEN
    assert narrowed.visibility["title"] is Visibility.CLEAR


def test_without_pii_scope_nothing_is_revealable() -> None:
    rules = [*CONTACT_READER, ("reader", "contact.phone", "read", "deny"), ("reader", "contact.phone", "mask", "allow"),
             ("reader", "contact.phone", "reveal", "allow")]
    assert mask_of(rules, ["reader"], scopes=ALL_CONTACT_SCOPES).revealable == frozenset({"phone"})
    assert mask_of(rules, ["reader"], scopes=frozenset({"contacts:read"})).revealable == frozenset()


def test_scopes_never_widen_what_the_role_grants() -> None:
    rules = [
        ("reader", "contact", "read", "allow"),
        ("reader", "contact.name", "read", "allow"),
        ("reader", "contact.national_id", "mask", "allow"),
    ]
    mask = mask_of(rules, ["reader"], scopes=ALL_CONTACT_SCOPES | {"customers:read", "customers:write"})
    assert mask.visibility["national_id"] is Visibility.MASKED  # pii:read does not unmask
    assert mask.visibility["phone"] is Visibility.HIDDEN  # nor show what the role hides
    assert mask.revealable == frozenset()
    assert mask.actions == frozenset({"read"})  # contacts:write grants no create
    assert mask.writable == frozenset()


def test_clients_hold_no_administrative_permissions() -> None:
    enforcer = build_enforcer([("secadmin", "admin.policy", "write", "allow")])
    assert admin_permissions(enforcer, ["secadmin"]) == frozenset({"policy:write"})
    assert admin_permissions(enforcer, ["secadmin"], token_scopes=frozenset({"pii:read"})) == frozenset()


_RULE_POOL: list[PolicyRule] = [
    *CONTACT_EDITOR,
    ("reader", "contact.national_id", "read", "deny"),
    ("reader", "contact.national_id", "mask", "allow"),
    ("reader", "contact.*", "reveal", "allow"),
    ("reader", "contact.phone", "mask", "allow"),
    ("reader", "contact.email", "read", "deny"),
]


@settings(max_examples=150)
@given(
    rules=st.lists(st.sampled_from(_RULE_POOL), unique=True),
    scopes=st.frozensets(st.sampled_from(["contacts:read", "contacts:write", "pii:read", "customers:read"])),
)
def test_a_token_mask_is_never_wider_than_the_person_mask(rules: list[PolicyRule], scopes: frozenset[str]) -> None:
    scope_rules = [("reader", "contact", RecordScope.TEAM)]
    person = mask_of(rules, ["reader"], scope_rules=scope_rules)
    client = mask_of(rules, ["reader"], scopes=scopes, scope_rules=scope_rules)
    assert client.actions <= person.actions
    assert client.writable <= person.writable
    assert client.revealable <= person.revealable
    assert client.scope <= person.scope
    for name in CONTACT.field_names:
        assert rank(client.visibility[name]) <= rank(person.visibility[name]), name


# -- administrative permissions ----------------------------------------------------------------------------


def test_admin_permissions_follow_rules_wildcards_and_denies() -> None:
    enforcer = build_enforcer(
        [
            ("secadmin", "admin.policy", "read", "allow"),
            ("secadmin", "admin.policy", "write", "allow"),
            ("auditor", "admin.audit", "*", "allow"),
            ("readonly", "admin.*", "write", "deny"),
        ]
    )
    assert admin_permissions(enforcer, ["auditor"]) == frozenset({"audit:read", "audit:verify", "audit:export"})
    assert admin_permissions(enforcer, ["secadmin", "readonly"]) == frozenset({"policy:read"})
    everything = {f"{o}:{a}" for o in ADMIN_OBJECTS for a in admin_actions_for(o)}
    assert admin_permissions(enforcer, ["secadmin", "auditor"]) <= everything


# -- validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        ("r", "*.owner_id", "write", "deny"),  # keyMatch would treat this as "*": everything
        ("r", "contact*", "read", "allow"),
        ("r", "contact.*.x", "read", "allow"),
        ("r", "*", "read", "allow"),  # grants objects added later
        ("r", "admin.*", "read", "allow"),
        ("r", "admin.secrets", "read", "allow"),
        ("r", "admin", "read", "allow"),
        ("r", "admin.audit", "write", "allow"),  # the trail is append-only
        ("r", "contact.phone", "delete", "allow"),
        ("r", "contact", "mask", "allow"),
        ("r", "contact.phone", "read", "maybe"),
        ("Sales Rep", "contact", "read", "allow"),
        ("@role-set", "contact", "read", "allow"),
        ("r", "Contact", "read", "allow"),
        ("r", "contact", "read"),
    ],
)
def test_malformed_or_unsafe_rules_are_refused(rule: Any) -> None:
    with pytest.raises(PolicyError):
        build_enforcer([rule])


def test_policy_errors_are_invalid_input() -> None:
    assert issubclass(PolicyError, InvalidInput)
    assert PolicyError.status == 422


def test_wildcard_denies_are_accepted() -> None:
    build_enforcer([("r", "*", "*", "deny"), ("r", "admin.*", "write", "deny"), ("r", "contact.*", "*", "deny")])


def test_rules_can_be_checked_against_the_declared_entities() -> None:
    assert validate_rule(["r", "contact.phone", "read", "allow"], [CONTACT]) == ("r", "contact.phone", "read", "allow")
    with pytest.raises(PolicyError, match="unknown field"):
        validate_rule(("r", "contact.passport", "read", "allow"), [CONTACT])
    with pytest.raises(PolicyError, match="unknown entity"):
        validate_rule(("r", "lead.*", "read", "allow"), [CONTACT])


@pytest.mark.parametrize(
    "links",
    [
        [("a", "a")],
        [("a", "b"), ("b", "a")],
        [("a", "b"), ("b", "c"), ("c", "a")],
        [(f"r{i}", f"r{i + 1}") for i in range(MAX_ROLE_DEPTH + 1)],
        [("a", "Bad Name")],
    ],
)
def test_bad_role_links_are_refused(links: list[tuple[str, str]]) -> None:
    with pytest.raises(PolicyError):
        build_enforcer([], links)


def test_a_dense_but_shallow_role_hierarchy_is_checked_quickly() -> None:
    roles = [f"r{i}" for i in range(40)]
    dense = [(roles[i], roles[j]) for i in range(40) for j in range(i + 1, 40)]
    with pytest.raises(PolicyError, match="levels"):
        build_enforcer([], dense)
    shallow = [(f"top{i}", role) for i in range(30) for role in roles[:4]] + [(roles[0], roles[1])]
    build_enforcer([], shallow)


def test_duplicates_are_dropped() -> None:
    enforcer = build_enforcer([*CONTACT_READER, *CONTACT_READER], [("a", "reader"), ("a", "reader")])
    assert len(enforcer.get_policy()) == len(CONTACT_READER)
    assert len(enforcer.get_grouping_policy()) == 1


# -- Casbin itself ---------------------------------------------------------------------------------------


def test_enforce_role_set_leaves_the_shared_enforcer_alone() -> None:
    enforcer = build_enforcer(CONTACT_READER, [("junior", "reader")])
    before = (enforcer.get_policy(), enforcer.get_grouping_policy())
    assert enforce_role_set(enforcer, ["junior"], "contact.phone", "read")
    assert (enforcer.get_policy(), enforcer.get_grouping_policy()) == before


def test_enforcing_logs_nothing_even_after_logging_is_reconfigured(caplog: pytest.LogCaptureFixture,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    enforcer = build_enforcer(CONTACT_READER)
    # What dictConfig(disable_existing_loggers=False) does to casbin's loggers when the app configures logging.
    for name in ("casbin", "casbin.enforcer", "casbin.policy", "casbin.role"):
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
    caplog.set_level(logging.DEBUG)
    # The check can see casbin's log lines: a plain enforcer does log its requests ...
    plain = casbin.Enforcer(casbin.Enforcer.new_model(text=model_text()), None, enable_log=False)
    monkeypatch.setattr(logging.getLogger("casbin.enforcer"), "disabled", False)
    plain.add_policy("reader", "contact", "read", "allow")
    plain.enforce("reader", "contact", "read")
    assert any("contact" in record.getMessage() for record in caplog.records)
    caplog.clear()
    # ... ours does not.
    assert enforcer.enforce("reader", "contact.phone", "read")
    assert not enforcer.enforce("reader", "contact.phone", "write")
    assert enforce_role_set(enforcer, ["reader"], "contact", "read")
    compile_field_mask(enforcer, ["reader"], CONTACT, ())
    assert caplog.records == []


# -- the fast evaluation agrees with Casbin --------------------------------------------------------------

_OBJECTS = ["contact", "contact.*", "contact.phone", "contact.national_id", "contact.title", "contact.id",
            "contact.consent_at", "*", "customer.*", "admin.policy", "admin.audit", "admin.*"]
_ACTIONS = ["read", "list", "create", "update", "delete", "export", "mask", "reveal", "write", "verify", "*"]
_SUBJECTS = ["a", "b", "c", "d"]


def _valid(rule: PolicyRule) -> bool:
    try:
        validate_rule(rule)
    except PolicyError:
        return False
    return True


_RULES = st.tuples(st.sampled_from(_SUBJECTS), st.sampled_from(_OBJECTS), st.sampled_from(_ACTIONS),
                   st.sampled_from(["allow", "deny"])).filter(_valid)
# Links only from a lower to a higher letter: never a cycle.
_LINKS = st.lists(st.sampled_from([(x, y) for x in _SUBJECTS for y in _SUBJECTS if x < y]), unique=True, max_size=4)


def casbin_oracle(enforcer: Any, roles: Sequence[str]) -> Any:
    """A fresh Casbin enforcer with the same rules, where the subject "@set" is linked to each of ``roles``."""
    oracle = casbin.Enforcer(casbin.Enforcer.new_model(text=model_text()), None, enable_log=False)
    if enforcer.get_policy():
        oracle.add_policies(enforcer.get_policy())
    oracle.add_grouping_policies([*enforcer.get_grouping_policy(), *(["@set", role] for role in roles)])
    return oracle


def reference_mask(oracle: Any, entity: EntitySpec) -> FieldMask:
    """The compile rules, with every decision asked of Casbin."""

    def allowed(obj: str, act: str) -> bool:
        return bool(oracle.enforce("@set", obj, act))

    actions = frozenset(a for a in ENTITY_ACTIONS if allowed(entity.name, a))
    if "read" not in actions:
        hidden = dict.fromkeys(entity.field_names, Visibility.HIDDEN)
        return FieldMask(entity.name, hidden, frozenset(), frozenset(), frozenset(), RecordScope.NONE)
    visibility = {}
    for spec in entity.fields:
        obj = f"{entity.name}.{spec.name}"
        if spec.name in ADDRESSING_FIELDS or allowed(obj, "read"):
            visibility[spec.name] = Visibility.CLEAR
        elif spec.mask is not MaskFormat.NONE and allowed(obj, "mask"):
            visibility[spec.name] = Visibility.MASKED
        else:
            visibility[spec.name] = Visibility.HIDDEN
    may_write = bool(actions & {"create", "update"})
    writable = frozenset(name for name in entity.field_names if may_write and name not in SERVER_STAMPED_FIELDS
                         and allowed(f"{entity.name}.{name}", "write"))
    revealable = frozenset(name for name, shown in visibility.items() if shown is Visibility.MASKED
                           and allowed(f"{entity.name}.{name}", "reveal"))
    return FieldMask(entity.name, visibility, revealable, writable, actions, RecordScope.NONE)


def reference_admin(oracle: Any) -> frozenset[str]:
    return frozenset(f"{o}:{a}" for o in ADMIN_OBJECTS for a in admin_actions_for(o)
                     if oracle.enforce("@set", f"admin.{o}", a))


def same(left: FieldMask, right: FieldMask) -> bool:
    return (dict(left.visibility), left.revealable, left.writable, left.actions) == (
        dict(right.visibility), right.revealable, right.writable, right.actions)


@settings(max_examples=120, deadline=None)
@given(rules=st.lists(_RULES, max_size=12), links=_LINKS,
       roles=st.lists(st.sampled_from(_SUBJECTS), min_size=1, max_size=3, unique=True))
def test_compiled_masks_agree_with_casbin(rules: list[PolicyRule], links: list[tuple[str, str]],
                                          roles: list[str]) -> None:
    enforcer = build_enforcer(rules, links)
    oracle = casbin_oracle(enforcer, roles)
    assert same(compile_field_mask(enforcer, roles, CONTACT, ()), reference_mask(oracle, CONTACT))
    assert admin_permissions(enforcer, roles) == reference_admin(oracle)
