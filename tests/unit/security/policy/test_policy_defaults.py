"""The seeded role matrix: complete, consistent, duties separated, and pinned where personal data is concerned."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import casbin  # type: ignore[import-untyped]
import pytest

from server.domain.fields import Classification, EntitySpec
from server.security.policy import (
    DEFAULT_ENTITIES,
    DEFAULT_POLICY,
    DEFAULT_ROLES,
    DEFAULT_SCOPES,
    SERVER_STAMPED_FIELDS,
    TOKEN_SCOPES,
    AccessReviewRow,
    PolicyRule,
    RecordScope,
    Visibility,
    access_review,
    admin_permissions,
    build_enforcer,
    check_separation_of_duties,
    compile_field_mask,
    model_text,
    render_markdown,
    validate_rule,
)

ROLES = list(DEFAULT_ROLES)
ADMIN_ROLES = ("sysadmin", "secadmin", "auditor")
BUSINESS_ROLES = ("sales_manager", "sales_rep", "support_agent", "marketing")
ENFORCER = build_enforcer(DEFAULT_POLICY)
ENTITY = {entity.name: entity for entity in DEFAULT_ENTITIES}
REPO = Path(__file__).resolve().parents[4]


def mask(role: str, entity: str, scopes: frozenset[str] | None = None) -> Any:
    return compile_field_mask(ENFORCER, (role,), ENTITY[entity], DEFAULT_SCOPES, scopes)


# -- completeness and consistency -----------------------------------------------------------------------------


def test_every_default_rule_names_a_declared_entity_field_and_a_known_role() -> None:
    for rule in DEFAULT_POLICY:
        assert validate_rule(rule, DEFAULT_ENTITIES) == rule
        assert rule[0] in DEFAULT_ROLES
    assert len(set(DEFAULT_POLICY)) == len(DEFAULT_POLICY)
    assert {rule[0] for rule in DEFAULT_POLICY} == set(DEFAULT_ROLES)


def test_defaults_grant_by_allow_lists_only() -> None:
    assert {effect for *_, effect in DEFAULT_POLICY} == {"allow"}
    assert not any("*" in obj or act == "*" for _, obj, act, _ in DEFAULT_POLICY)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("entity", DEFAULT_ENTITIES, ids=lambda entity: entity.name)
def test_every_mask_covers_exactly_the_declared_fields(role: str, entity: EntitySpec) -> None:
    for scopes in (None, frozenset(), TOKEN_SCOPES, frozenset({"customers:read", "contacts:read"})):
        field_mask = compile_field_mask(ENFORCER, (role,), entity, DEFAULT_SCOPES, scopes)
        assert tuple(field_mask.visibility) == entity.field_names
        assert field_mask.writable <= set(entity.field_names) - SERVER_STAMPED_FIELDS
        assert field_mask.revealable <= field_mask.fields_with(Visibility.MASKED)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("entity", DEFAULT_ENTITIES, ids=lambda entity: entity.name)
def test_scopes_exist_exactly_where_records_can_be_read(role: str, entity: EntitySpec) -> None:
    field_mask = mask(role, entity.name)
    declared = [scope for r, e, scope in DEFAULT_SCOPES if (r, e) == (role, entity.name)]
    assert len(declared) <= 1
    if field_mask.can("read"):
        assert declared and field_mask.scope is declared[0] and field_mask.scope > RecordScope.NONE
    else:
        assert not declared and field_mask.scope is RecordScope.NONE


def test_each_role_compiles_in_well_under_five_milliseconds_per_entity() -> None:
    started = time.perf_counter()
    rounds = 20
    for _ in range(rounds):
        for role in ROLES:
            for entity in DEFAULT_ENTITIES:
                compile_field_mask(ENFORCER, (role, "sales_rep"), entity, DEFAULT_SCOPES, TOKEN_SCOPES)
    per_mask_ms = (time.perf_counter() - started) * 1000 / (rounds * len(ROLES) * len(DEFAULT_ENTITIES))
    assert per_mask_ms < 5, f"{per_mask_ms:.2f} ms per mask"


# -- separation of duties -------------------------------------------------------------------------------------


def test_the_defaults_keep_duties_separate() -> None:
    assert check_separation_of_duties(ENFORCER, DEFAULT_ENTITIES, ROLES) == []
    business_pairs = list(itertools.combinations(BUSINESS_ROLES, 2))
    assert check_separation_of_duties(ENFORCER, DEFAULT_ENTITIES, business_pairs) == []


@pytest.mark.parametrize(
    ("roles", "rule"),
    [
        (("sysadmin", "secadmin"), "user administration and policy administration are separate"),
        (("secadmin", "auditor"), "policy writers must not hold the audit trail"),
        (("secadmin", "sales_rep"), "policy writers must not see personal data in clear"),
        (("secadmin", "support_agent"), "security administrators hold no CRM data"),
        (("sysadmin", "sales_manager"), "system administrators see no personal data"),
        (("auditor", "marketing"), "auditors hold no write access"),
        (("auditor", "sysadmin"), "auditors hold no write access"),
    ],
)
def test_combining_an_administrator_with_another_role_is_flagged(roles: tuple[str, str], rule: str) -> None:
    violations = check_separation_of_duties(ENFORCER, DEFAULT_ENTITIES, [roles])
    assert any(v.startswith(f"{'+'.join(roles)}: {rule} (") for v in violations), violations


POLICY_WRITER: list[PolicyRule] = [("boss", "admin.policy", "write", "allow")]


@pytest.mark.parametrize(
    ("extra", "rule"),
    [
        ([("boss", "admin.audit", "read", "allow")], "policy writers must not hold the audit trail"),
        ([("boss", "contact", "read", "allow"), ("boss", "contact.email", "read", "allow")],
         "policy writers must not see personal data in clear"),
        ([("boss", "customer", "read", "allow"), ("boss", "customer.tax_id", "read", "allow")],
         "policy writers must not see personal data in clear"),
        ([("boss", "contact", "read", "allow"), ("boss", "contact.national_id", "mask", "allow"),
          ("boss", "contact.national_id", "reveal", "allow")],
         "policy writers must not see personal data in clear"),
        ([("boss", "admin.user", "write", "allow")], "user administration and policy administration are separate"),
        ([("boss", "customer", "read", "allow")], "security administrators hold no CRM data"),
    ],
)
def test_crafted_bad_policies_are_flagged(extra: list[PolicyRule], rule: str) -> None:
    enforcer = build_enforcer([*DEFAULT_POLICY, *POLICY_WRITER, *extra])
    violations = check_separation_of_duties(enforcer, DEFAULT_ENTITIES, [*ROLES, "boss"])
    assert [v.split(" (")[0] for v in violations if v.startswith("boss:")].count(f"boss: {rule}") == 1, violations
    assert all(v.startswith("boss:") for v in violations)


def test_a_violation_hidden_behind_role_inheritance_is_flagged() -> None:
    enforcer = build_enforcer(DEFAULT_POLICY, [("helpdesk_lead", "secadmin"), ("helpdesk_lead", "support_agent")])
    violations = check_separation_of_duties(enforcer, DEFAULT_ENTITIES, [*ROLES, "helpdesk_lead"])
    assert violations and all(v.startswith("helpdesk_lead:") for v in violations)


def test_field_rules_without_entity_read_grant_nothing_to_flag() -> None:
    enforcer = build_enforcer([*POLICY_WRITER, ("boss", "contact.email", "read", "allow")])
    assert check_separation_of_duties(enforcer, DEFAULT_ENTITIES, ["boss"]) == []


# -- the matrix, pinned where it matters ------------------------------------------------------------------

# (role, entity) -> PII/sensitive fields shown in clear; and those masked-but-revealable. Anything else that is
# PII or sensitive is masked or hidden. Changing these is a security decision: update docs/security.md too.
PERSONAL_DATA_IN_CLEAR = {
    ("sales_manager", "customer"): {"tax_id"},
    ("sales_manager", "contact"): {"name", "phone", "mobile", "email", "address"},
    ("sales_manager", "opportunity"): {"amount"},
    ("sales_manager", "service_record"): {"description", "resolution"},
    ("sales_rep", "customer"): {"tax_id"},
    ("sales_rep", "contact"): {"name", "phone", "mobile", "email", "address"},
    ("sales_rep", "opportunity"): {"amount"},
    ("support_agent", "contact"): {"name"},
    ("support_agent", "service_record"): {"description", "resolution"},
    ("marketing", "contact"): {"name", "email"},
}
PERSONAL_DATA_REVEALABLE = {
    ("sales_manager", "contact"): {"national_id"},
    ("sales_rep", "contact"): {"national_id"},
    ("support_agent", "contact"): {"phone", "mobile"},
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("entity", DEFAULT_ENTITIES, ids=lambda entity: entity.name)
def test_personal_data_exposure_is_pinned(role: str, entity: EntitySpec) -> None:
    field_mask = mask(role, entity.name)
    protected = {s.name for s in entity.fields if s.classification in (Classification.PII, Classification.SENSITIVE)}
    assert field_mask.fields_with(Visibility.CLEAR) & protected == PERSONAL_DATA_IN_CLEAR.get((role, entity.name),
                                                                                              set())
    assert field_mask.revealable & protected == PERSONAL_DATA_REVEALABLE.get((role, entity.name), set())


def test_national_ids_are_never_in_clear_by_default() -> None:
    for role in ROLES:
        assert mask(role, "contact").visibility["national_id"] is not Visibility.CLEAR
    assert mask("support_agent", "contact").visibility["national_id"] is Visibility.HIDDEN
    assert mask("marketing", "contact").visibility["national_id"] is Visibility.HIDDEN


@pytest.mark.parametrize("role", ADMIN_ROLES)
def test_administrators_hold_no_crm_data(role: str) -> None:
    for entity in DEFAULT_ENTITIES:
        assert mask(role, entity.name).actions == frozenset()


def test_administrative_rights_are_exactly_these() -> None:
    assert admin_permissions(ENFORCER, ["sysadmin"]) == {
        "user:read", "user:write", "org_unit:read", "org_unit:write", "settings:read", "settings:write", "role:read"}
    assert admin_permissions(ENFORCER, ["secadmin"]) == {
        "role:read", "role:write", "policy:read", "policy:write", "client:read", "client:write", "key:read",
        "key:write", "user:read"}
    assert admin_permissions(ENFORCER, ["auditor"]) == {"audit:read", "audit:verify", "audit:export"}
    for role in BUSINESS_ROLES:
        assert admin_permissions(ENFORCER, [role]) == frozenset()


def test_sales_reps_neither_reassign_nor_export_nor_delete() -> None:
    for entity in DEFAULT_ENTITIES:
        field_mask = mask("sales_rep", entity.name)
        assert not field_mask.writable & {"owner_id", "org_unit_id"}
        assert not field_mask.actions & {"delete", "export"}
        assert field_mask.scope in (RecordScope.OWN, RecordScope.NONE)


def test_support_and_marketing_reach() -> None:
    contact = mask("support_agent", "contact")
    assert contact.actions == {"read", "list"} and contact.scope is RecordScope.ALL
    assert contact.visibility["email"] is Visibility.MASKED and "email" not in contact.revealable
    assert contact.visibility["address"] is Visibility.HIDDEN
    assert mask("support_agent", "service_record").actions == {"read", "list", "create", "update"}
    assert mask("support_agent", "opportunity").actions == frozenset()
    marketing = mask("marketing", "contact")
    assert marketing.writable == {"marketing_consent", "consent_source"}
    assert marketing.visibility["phone"] is Visibility.MASKED and marketing.revealable == frozenset()
    for entity in ("opportunity", "service_record", "activity"):
        assert mask("marketing", entity).actions == frozenset()


def test_a_client_of_a_sales_rep_without_pii_scope_sees_no_personal_data_in_clear() -> None:
    field_mask = mask("sales_rep", "contact", frozenset({"contacts:read"}))
    for spec in ENTITY["contact"].fields:
        if spec.classification in (Classification.PII, Classification.SENSITIVE):
            assert field_mask.visibility[spec.name] is Visibility.MASKED
    assert field_mask.revealable == frozenset()


# -- Casbin agrees ----------------------------------------------------------------------------------------


def test_every_default_decision_agrees_with_casbin() -> None:
    oracle = casbin.Enforcer(casbin.Enforcer.new_model(text=model_text()), None, enable_log=False)
    oracle.add_policies([list(rule) for rule in DEFAULT_POLICY])
    oracle.add_grouping_policies([["@set", "sales_rep"], ["@set", "support_agent"]])
    combined = {entity.name: compile_field_mask(ENFORCER, ("sales_rep", "support_agent"), entity, ())
                for entity in DEFAULT_ENTITIES}
    for entity in DEFAULT_ENTITIES:
        field_mask = combined[entity.name]
        for action in ("read", "list", "create", "update", "delete", "export"):
            assert field_mask.can(action) == oracle.enforce("@set", entity.name, action)
        for spec in entity.fields:
            obj = f"{entity.name}.{spec.name}"
            if spec.name not in {"id", "version", "created_at", "updated_at"}:
                assert field_mask.readable_in_clear(spec.name) == oracle.enforce("@set", obj, "read"), obj
            if spec.name not in SERVER_STAMPED_FIELDS:
                assert (spec.name in field_mask.writable) == oracle.enforce("@set", obj, "write"), obj


# -- access review and its Markdown -------------------------------------------------------------------------


def test_access_review_rows_cover_roles_entities_fields_and_admin_objects() -> None:
    rows = access_review(ENFORCER, DEFAULT_ENTITIES, DEFAULT_SCOPES, [*ROLES, ("sales_rep", "marketing")])
    fields = sum(len(entity.fields) for entity in DEFAULT_ENTITIES)
    per_subject = len(DEFAULT_ENTITIES) + fields + 8
    assert len(rows) == per_subject * (len(ROLES) + 1)
    combined = [row for row in rows if row.subject == "sales_rep+marketing"]
    assert len(combined) == per_subject
    export_row = next(r for r in combined if r.kind == "entity" and r.entity == "contact")
    assert export_row.actions == ("read", "list", "create", "update", "export")
    assert export_row.scope is RecordScope.ALL
    phone = next(r for r in rows if (r.subject, r.kind, r.entity, r.item) == ("support_agent", "field", "contact",
                                                                               "phone"))
    assert phone == AccessReviewRow("support_agent", ("support_agent",), "field", "contact", "phone",
                                    visibility=Visibility.MASKED, revealable=True, writable=False,
                                    classification=Classification.PII)


def test_markdown_review_lists_every_entity_field_and_admin_right() -> None:
    markdown = render_markdown(access_review(ENFORCER, DEFAULT_ENTITIES, DEFAULT_SCOPES, ROLES))
    for entity in DEFAULT_ENTITIES:
        assert f"## `{entity.name}` fields" in markdown
        for name in entity.field_names:
            assert f"| `{name}` |" in markdown
    assert "| `contact` |" not in markdown  # entities are columns in the actions table, not rows
    assert "masked (reveal) · write" in markdown  # sales: national_id
    assert "| `auditor` | — | — | — | — | — | read verify export | — | — |" in markdown
    assert "No access: `sysadmin`, `secadmin`, `auditor`." in markdown


def test_the_matrix_module_prints_the_default_review() -> None:
    result = subprocess.run([sys.executable, "-m", "server.security.policy.matrix"], cwd=REPO, capture_output=True,
                            text=True, check=True, timeout=60)
    assert result.stdout == render_markdown(access_review(ENFORCER, DEFAULT_ENTITIES, DEFAULT_SCOPES, ROLES))
    assert result.stderr == ""
