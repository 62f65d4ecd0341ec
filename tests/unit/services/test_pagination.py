"""Cursor encoding and list query validation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from server.domain.customers import CUSTOMER
from server.domain.repository import SortOrder
from server.errors import InvalidInput, MalformedRequest
from server.services.pagination import build_list_query, decode_cursor, encode_cursor


def test_cursor_round_trip() -> None:
    sort = SortOrder("created_at", descending=True)
    moment, record_id = datetime(2026, 5, 1, 12, 30, tzinfo=UTC), uuid.uuid4()
    keyset = decode_cursor(CUSTOMER, sort, encode_cursor(sort, moment, record_id))
    assert (keyset.value, keyset.record_id) == (moment, record_id)


@pytest.mark.parametrize("cursor", ["", "%%%", "bm90IGpzb24", "WzEsMiwzXQ", "W10"])
def test_garbage_cursors(cursor: str) -> None:
    with pytest.raises(MalformedRequest):
        decode_cursor(CUSTOMER, SortOrder("created_at", True), cursor)


def test_cursor_from_other_sort_is_rejected() -> None:
    cursor = encode_cursor(SortOrder("name"), "Acme", uuid.uuid4())
    with pytest.raises(MalformedRequest):
        decode_cursor(CUSTOMER, SortOrder("created_at", True), cursor)


def test_list_query_validation() -> None:
    query = build_list_query(CUSTOMER, filters={"tier": "A"}, sort="-name", cursor=None, limit=10, max_limit=100)
    assert query.sort == SortOrder("name", True)
    with pytest.raises(InvalidInput):
        build_list_query(CUSTOMER, filters={"notes": "x"}, sort=None, cursor=None, limit=None, max_limit=100)
    with pytest.raises(InvalidInput):
        build_list_query(CUSTOMER, filters={}, sort="tax_id", cursor=None, limit=None, max_limit=100)
    with pytest.raises(InvalidInput):
        build_list_query(CUSTOMER, filters={}, sort=None, cursor=None, limit=101, max_limit=100)
    with pytest.raises(InvalidInput):
        build_list_query(CUSTOMER, filters={"owner_id": "not-a-uuid"}, sort=None, cursor=None, limit=None,
                         max_limit=100)
