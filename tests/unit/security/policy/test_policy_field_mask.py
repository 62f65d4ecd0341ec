"""The field mask value and its vocabulary: scope order, helpers, immutability."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from server.security.policy import (
    ADDRESSING_FIELDS,
    SERVER_STAMPED_FIELDS,
    TOKEN_SCOPES,
    FieldMask,
    RecordScope,
    Visibility,
    widest_scope,
)


def test_record_scopes_are_ordered_by_reach_not_alphabet() -> None:
    assert sorted(RecordScope, key=lambda s: s.rank) == [RecordScope.NONE, RecordScope.OWN, RecordScope.TEAM,
                                                           RecordScope.UNIT, RecordScope.ALL]
    assert sorted([RecordScope.ALL, RecordScope.NONE, RecordScope.UNIT, RecordScope.OWN]) == [
        RecordScope.NONE, RecordScope.OWN, RecordScope.UNIT, RecordScope.ALL]
    assert RecordScope.ALL > RecordScope.UNIT > RecordScope.TEAM > RecordScope.OWN > RecordScope.NONE
    assert RecordScope.OWN < "team"
    assert RecordScope.TEAM >= "team"
    assert max(RecordScope.OWN, RecordScope.ALL) is RecordScope.ALL


def test_record_scopes_refuse_meaningless_comparisons() -> None:
    with pytest.raises(TypeError):
        assert RecordScope.OWN < 3
    with pytest.raises(ValueError, match="everyone"):
        assert RecordScope.OWN < "everyone"


def test_widest_scope() -> None:
    assert widest_scope([]) is RecordScope.NONE
    assert widest_scope([RecordScope.OWN, RecordScope.UNIT, RecordScope.TEAM]) is RecordScope.UNIT


def test_field_mask_helpers() -> None:
    field_mask = FieldMask(
        entity="contact",
        visibility=MappingProxyType({"id": Visibility.CLEAR, "phone": Visibility.MASKED,
                                     "national_id": Visibility.HIDDEN}),
        revealable=frozenset({"phone"}),
        writable=frozenset({"phone"}),
        actions=frozenset({"read", "list"}),
        scope=RecordScope.OWN,
    )
    assert field_mask.can("read") and not field_mask.can("delete")
    assert field_mask.readable_in_clear("id")
    assert not field_mask.readable_in_clear("phone")
    assert not field_mask.readable_in_clear("no_such_field")
    assert field_mask.visible("phone") and not field_mask.visible("national_id")
    assert not field_mask.visible("no_such_field")
    assert field_mask.fields_with(Visibility.MASKED) == {"phone"}
    with pytest.raises(AttributeError):
        field_mask.scope = RecordScope.ALL  # type: ignore[misc]


def test_vocabulary() -> None:
    assert ADDRESSING_FIELDS <= SERVER_STAMPED_FIELDS
    assert "pii:read" in TOKEN_SCOPES
    assert "service_records:write" in TOKEN_SCOPES
    assert len(TOKEN_SCOPES) == 11
