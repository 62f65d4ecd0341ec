"""Canonical event encoding: pinned bytes, strict validation, and agreement with the documented rules."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.audit.canonical import (
    EVENT_KEYS,
    MAX_SAFE_INTEGER,
    AuditEvent,
    CanonicalError,
    decode_event,
    encode_event,
    format_timestamp,
    parse_timestamp,
)
from server.audit.tags import AuditAction, AuditOutcome

MakeEvent = Callable[..., AuditEvent]

# Pinned bytes: if these change, every stored hash in every installation stops verifying on re-encoding.
GOLDEN_EVENT: dict[str, Any] = {
    "seq": 42,
    "ts": "2026-11-23T09:15:02.000417Z",
    "actor_type": "user",
    "actor_id": "u-1",
    "actor_name": "Zoë 张",
    "actor_roles": ["sales_rep", "marketing", "sales_rep"],
    "action": "update",
    "entity": "contact",
    "entity_id": "c-9",
    "fields": ["phone", "email"],
    "before": {"phone": "v1.k3.AAAA", "n": -7, "tags": ["a", True, None], "note": 'line\n\t"q"\\ \x01 \u2028'},
    "after": None,
    "outcome": "ok",
    "request_id": None,
    "client_address": "10.0.4.17",
    "user_agent": None,
    "reason": "ticket #12",
}
GOLDEN_BYTES = (
    '{"action":"update","actor_id":"u-1","actor_name":"Zoë 张","actor_roles":["marketing","sales_rep"],'
    '"actor_type":"user","after":null,"before":{"n":-7,"note":"line\\n\\t\\"q\\"\\\\ \\u0001 \u2028",'
    '"phone":"v1.k3.AAAA","tags":["a",true,null]},"client_address":"10.0.4.17","entity":"contact",'
    '"entity_id":"c-9","fields":["email","phone"],"outcome":"ok","reason":"ticket #12","request_id":null,'
    '"seq":42,"ts":"2026-11-23T09:15:02.000417Z","user_agent":null}'
).encode("utf-8")


def test_golden_event_encodes_to_pinned_bytes() -> None:
    encoded = encode_event(GOLDEN_EVENT)
    assert encoded == GOLDEN_BYTES
    assert hashlib.sha256(encoded).hexdigest() == hashlib.sha256(GOLDEN_BYTES).hexdigest()
    assert "Zoë 张".encode() in encoded  # non-ASCII written as UTF-8, not \u escapes


def test_encoding_is_independent_of_key_insertion_order(make_event: MakeEvent) -> None:
    event = make_event(7)
    reversed_event = dict(reversed(list(event.items())))
    assert encode_event(reversed_event) == encode_event(event)


def test_sets_are_sorted_and_deduplicated(make_event: MakeEvent) -> None:
    decoded = decode_event(encode_event(make_event(1, actor_roles=["b", "a", "b"], fields=("z", "y"))))
    assert decoded["actor_roles"] == ["a", "b"]
    assert decoded["fields"] == ["y", "z"]


def test_str_enum_members_are_written_as_plain_values(make_event: MakeEvent) -> None:
    with_enums = make_event(3, action=AuditAction.LOGIN_FAILED, outcome=AuditOutcome.DENIED)
    plain = make_event(3, action="login_failed", outcome="denied")
    assert encode_event(with_enums) == encode_event(plain)


def test_decode_round_trips(make_event: MakeEvent) -> None:
    event = make_event(99)
    assert encode_event(decode_event(encode_event(event))) == encode_event(event)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seq": 0}, "seq"),
        ({"seq": True}, "seq"),
        ({"seq": 2**63}, "seq"),
        ({"seq": "5"}, "seq"),
        ({"ts": "2026-11-23T09:15:02Z"}, "timestamp"),
        ({"ts": "2026-11-23T09:15:02.000417+00:00"}, "timestamp"),
        ({"ts": "2026-02-30T09:15:02.000417Z"}, "timestamp"),
        ({"action": "teleport"}, "action"),
        ({"outcome": "maybe"}, "outcome"),
        ({"actor_type": "robot"}, "actor_type"),
        ({"actor_roles": "sales_rep"}, "actor_roles"),
        ({"fields": [1]}, "fields"),
        ({"before": {"amount": 1.5}}, "float"),
        ({"after": {"nested": [{"x": float("nan")}]}}, "float"),
        ({"after": {"big": MAX_SAFE_INTEGER + 1}}, "2\\*\\*53"),
        ({"after": {1: "x"}}, "key"),
        ({"after": ["not", "an", "object"]}, "object"),
        ({"reason": 5}, "reason"),
        ({"actor_name": "\ud800"}, "encoded"),
        ({"after": {"b": b"bytes"}}, "bytes"),
    ],
)
def test_invalid_events_are_refused(make_event: MakeEvent, change: dict[str, Any], message: str) -> None:
    with pytest.raises(CanonicalError, match=message):
        encode_event(make_event(1, **change))


def test_missing_and_unknown_keys_are_refused(make_event: MakeEvent) -> None:
    event = dict(make_event(1))
    del event["reason"]
    with pytest.raises(CanonicalError, match="missing \\['reason'\\]"):
        encode_event(event)
    with pytest.raises(CanonicalError, match="unknown \\['extra'\\]"):
        encode_event({**make_event(1), "extra": 1})


def test_nesting_depth_is_bounded(make_event: MakeEvent) -> None:
    deep: Any = "leaf"
    for _ in range(40):
        deep = [deep]
    with pytest.raises(CanonicalError, match="nested"):
        encode_event(make_event(1, after={"deep": deep}))


@pytest.mark.parametrize(
    "tampered",
    [
        GOLDEN_BYTES.replace(b'"seq":42,', b'"seq": 42,'),  # whitespace
        GOLDEN_BYTES.replace(b'"seq":42,', b'"seq":42.0,'),  # float
        GOLDEN_BYTES.replace(b'{"action":"update",', b'{"action":"update","action":"update",'),  # duplicate
        GOLDEN_BYTES.replace(b'{"action":"update",', b'{"action":"delete","action":"update",'),  # duplicate, differing
        GOLDEN_BYTES.replace(b'{"n":-7,', b'{"n":-7,"n":-7,'),  # duplicate in a nested object
        GOLDEN_BYTES.replace(b'"n":-7', b'"n":NaN'),  # constant
        GOLDEN_BYTES.replace(b'"n":-7', b'"n":-7e0'),  # an integer written as a float
        GOLDEN_BYTES.replace(b'"n":-7', b'"n":-7.5'),  # float
        GOLDEN_BYTES.replace("Zoë".encode(), b"Zo\\u00eb"),  # same text, non-canonical escape
        GOLDEN_BYTES.replace(b'"fields":["email","phone"]', b'"fields":["phone","email"]'),  # unsorted set
        GOLDEN_BYTES[:-1],
        b"\xff" + GOLDEN_BYTES,
        b"[" * 100_000,
    ],
)
def test_decode_refuses_non_canonical_bytes(tampered: bytes) -> None:
    with pytest.raises(CanonicalError):
        decode_event(tampered)


def test_timestamps_are_utc_microseconds() -> None:
    moment = datetime(2026, 11, 23, 10, 15, 2, 417, tzinfo=timezone(timedelta(hours=1)))
    assert format_timestamp(moment) == "2026-11-23T09:15:02.000417Z"
    assert parse_timestamp("2026-11-23T09:15:02.000417Z") == moment
    assert parse_timestamp(format_timestamp(datetime(2026, 1, 1, tzinfo=UTC))).year == 2026
    with pytest.raises(CanonicalError, match="aware"):
        format_timestamp(datetime(2026, 11, 23))


def test_timestamps_round_trip_early_years_and_whole_seconds() -> None:
    for moment in (datetime(999, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, 0, 0, 0, 0, tzinfo=UTC)):
        text = format_timestamp(moment)
        assert len(text) == len("YYYY-MM-DDTHH:MM:SS.ffffffZ")
        assert parse_timestamp(text) == moment


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-30T00:00:00.000000Z",  # no such day
        "2026-01-01T24:00:00.000000Z",
        "\u0662\u0660\u0662\u0666-01-01T00:00:00.000000Z",  # Arabic-Indic digits match \\d, not the form
        "2026-01-01T00:00:00.000000+00:00",
        "2026-01-01T00:00:00Z",
        "2026-01-01 00:00:00.000000Z",
    ],
)
def test_parse_timestamp_refuses_other_forms_and_impossible_instants(text: str) -> None:
    with pytest.raises(CanonicalError):
        parse_timestamp(text)


def test_event_keys_are_the_documented_set() -> None:
    assert set(GOLDEN_EVENT) == EVENT_KEYS


_json_leaves = st.none() | st.booleans() | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER) | st.text()
_json_values = st.recursive(
    _json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(after=st.dictionaries(st.text(max_size=8), _json_values, max_size=6), name=st.text())
def test_bytes_match_the_documented_stdlib_form(make_event: MakeEvent, after: dict[str, Any], name: str) -> None:
    event = make_event(5, after=after, actor_name=name, fields=["email", "phone"])
    try:
        encoded = encode_event(event)
    except CanonicalError:
        # Only strings that are not valid Unicode scalars (lone surrogates) may be refused.
        with pytest.raises(UnicodeEncodeError):
            json.dumps(event, ensure_ascii=False).encode("utf-8")
        return
    reference = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert encoded == reference
    assert decode_event(encoded)["after"] == after


def test_keys_sort_by_code_point_across_planes(make_event: MakeEvent) -> None:
    # UTF-16 order would put U+10000 (a surrogate pair) before U+E000; code-point (and UTF-8 byte) order puts it
    # after. The encoder must agree with json.dumps(sort_keys=True), which sorts Python strings by code point.
    after = {"\U00010000": 1, "\ue000": 2, "\uffff": 3, "a": 4, "\x7f": 5, "\x80": 6, "Z": 7}
    event = make_event(9, after=after, fields=["email", "phone"])
    reference = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert encode_event(event) == reference
    assert encode_event(event).index("\ue000".encode()) < encode_event(event).index("\U00010000".encode())
