"""Canonical encoding of an audit event: the exact bytes that are stored, hashed, chained and put in the Merkle tree.

The encoding is done once, when the event is recorded; the bytes are stored as they are and every later
verification reads and hashes them, never re-encodes. The rules are nonetheless fixed so that an independent
implementation (or a later Python) produces the same bytes for the same event:

- A JSON object with exactly the keys of :data:`EVENT_KEYS`, all present (absent values are ``null``).
- Object keys sorted by code point at every level, no insignificant whitespace (``,`` and ``:`` separators).
- UTF-8, non-ASCII characters written as themselves; ``"``, ``\\`` and control characters below U+0020 escaped
  (``\\n \\r \\t \\b \\f`` short forms, the rest as lower-case ``\\u00XX``); nothing else is escaped.
- Values are strings, integers, booleans, null, arrays and objects. Floats, NaN and infinities are refused;
  integers must lie within +-(2**53 - 1) so that every JSON reader (RFC 7493, I-JSON) reads them exactly.
- ``actor_roles`` and ``fields`` are sets: written sorted, without duplicates.
- ``ts`` is RFC 3339 UTC with microseconds, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

These are the bytes the standard library's ``json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` writes; golden byte vectors in the tests pin them. The server writes them with msgspec's
encoder (keys sorted), which produces the same bytes about ten times faster; a property test compares the two.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeAlias, TypedDict, cast

import msgspec

from server.audit.tags import ActorType, AuditAction, AuditOutcome

JSONValue: TypeAlias = "str | int | bool | list[JSONValue] | dict[str, JSONValue] | None"

EVENT_KEYS: Final = frozenset(
    {
        "seq",
        "ts",
        "actor_type",
        "actor_id",
        "actor_name",
        "actor_roles",
        "action",
        "entity",
        "entity_id",
        "fields",
        "before",
        "after",
        "outcome",
        "request_id",
        "client_address",
        "user_agent",
        "reason",
    }
)
_OPTIONAL_STRING_KEYS: Final = (
    "actor_id",
    "actor_name",
    "entity",
    "entity_id",
    "request_id",
    "client_address",
    "user_agent",
    "reason",
)
MAX_SEQ: Final = 2**63 - 1  # PostgreSQL bigint; the chain seals seq as 8 bytes
MAX_SAFE_INTEGER: Final = 2**53 - 1
MAX_DEPTH: Final = 32
_TS_PATTERN: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_ACTIONS: Final = frozenset(a.value for a in AuditAction)
_OUTCOMES: Final = frozenset(o.value for o in AuditOutcome)
_ACTOR_TYPES: Final = frozenset(t.value for t in ActorType)
_ENCODER: Final = msgspec.json.Encoder(order="sorted")
_DECODER: Final = msgspec.json.Decoder()


class CanonicalError(ValueError):
    """An audit event that cannot be encoded canonically, or bytes that are not a canonical audit event."""


class AuditEvent(TypedDict):
    """The fields of one audit event. Sensitive values in ``before``/``after`` arrive as ciphertext strings."""

    seq: int
    ts: str
    actor_type: str
    actor_id: str | None
    actor_name: str | None
    actor_roles: list[str]
    action: str
    entity: str | None
    entity_id: str | None
    fields: list[str]
    before: dict[str, JSONValue] | None
    after: dict[str, JSONValue] | None
    outcome: str
    request_id: str | None
    client_address: str | None
    user_agent: str | None
    reason: str | None


def format_timestamp(moment: datetime) -> str:
    """Render an aware datetime as the audit timestamp form, RFC 3339 UTC with microseconds.

    Args:
        moment: A timezone-aware datetime; it is converted to UTC.

    Returns:
        A string such as ``2026-11-23T09:15:02.000417Z``.

    Raises:
        CanonicalError: If ``moment`` is naive.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise CanonicalError("audit timestamps must be timezone-aware")
    # isoformat, not strftime: several times faster on the audit hot path, and it pads years below 1000.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_timestamp(text: str) -> datetime:
    """Parse an audit timestamp written by :func:`format_timestamp`, refusing any other form.

    Args:
        text: The timestamp string.

    Returns:
        The aware UTC datetime.

    Raises:
        CanonicalError: If ``text`` is not exactly ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` or not a real instant.
    """
    if not isinstance(text, str) or _TS_PATTERN.fullmatch(text) is None:
        raise CanonicalError(f"timestamp {text!r} is not RFC 3339 UTC with microseconds (YYYY-MM-DDTHH:MM:SS.ffffffZ)")
    try:
        return datetime.fromisoformat(text)  # the pattern admits only the one form; this checks the calendar
    except ValueError as exc:
        raise CanonicalError(f"timestamp {text!r} is not a valid instant") from exc


def encode_event(event: Mapping[str, object]) -> bytes:
    """Encode an audit event to its canonical bytes, validating every field.

    Args:
        event: A mapping with exactly the keys of :data:`EVENT_KEYS` (an :class:`AuditEvent`).

    Returns:
        The canonical UTF-8 JSON bytes to store and hash.

    Raises:
        CanonicalError: On a missing or unknown key, a value of the wrong type or form, a float, an integer
            outside the safe range, or a string that is not valid Unicode.
    """
    normalised = _normalise_event(event)
    try:
        return _ENCODER.encode(normalised)
    except UnicodeEncodeError as exc:  # lone surrogates
        raise CanonicalError(f"event cannot be encoded: {exc}") from exc


def decode_event(canonical: bytes) -> AuditEvent:
    """Parse canonical bytes back into an event, refusing anything that is not exactly canonical.

    Used to read stored events (queries, exports). Verification never depends on it: it hashes the bytes.

    Args:
        canonical: Bytes produced by :func:`encode_event`.

    Returns:
        The event.

    Raises:
        CanonicalError: If the bytes are not UTF-8 JSON, fail validation (floats and constants among them), or
            are not byte-for-byte what :func:`encode_event` would write for them (duplicate keys among them).
    """
    # A plain parse: re-encoding and comparing is the check. A duplicate key parses to one key, written once; a
    # float or constant (NaN) parses to a float, which the encoder's validation refuses. Hooks that refused them
    # while parsing cost a tenth of a query's decoding and refused nothing more.
    try:
        parsed = _DECODER.decode(canonical)
    except (msgspec.DecodeError, RecursionError) as exc:  # invalid UTF-8 and out-of-range numbers among them
        raise CanonicalError(f"not canonical audit JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise CanonicalError("an audit event is a JSON object")
    if encode_event(parsed) != canonical:
        raise CanonicalError("bytes are valid JSON but not in canonical form")
    return cast(AuditEvent, parsed)


def _normalise_event(event: Mapping[str, object]) -> dict[str, JSONValue]:
    if type(event) is not dict and not isinstance(event, Mapping):
        raise CanonicalError("an audit event is a mapping")
    if event.keys() != EVENT_KEYS:
        keys = set(event)
        missing = sorted(EVENT_KEYS - keys, key=str)
        unknown = sorted(str(k) for k in keys - EVENT_KEYS)
        raise CanonicalError(f"audit event keys wrong: missing {missing}, unknown {unknown}")

    seq = event["seq"]
    if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
        raise CanonicalError(f"seq must be an integer in 1..{MAX_SEQ}, got {seq!r}")
    ts = _plain_str(event["ts"], "ts")
    parse_timestamp(ts)
    # Every event passes here on the write path: plain strings in the allowed sets are taken without a call.
    actor_type, action, outcome = event["actor_type"], event["action"], event["outcome"]
    normalised: dict[str, JSONValue] = {
        "seq": seq,
        "ts": ts,
        "actor_type": actor_type if type(actor_type) is str and actor_type in _ACTOR_TYPES
        else _member(actor_type, "actor_type", _ACTOR_TYPES),
        "action": action if type(action) is str and action in _ACTIONS else _member(action, "action", _ACTIONS),
        "outcome": outcome if type(outcome) is str and outcome in _OUTCOMES
        else _member(outcome, "outcome", _OUTCOMES),
        "actor_roles": _string_set(event["actor_roles"], "actor_roles"),
        "fields": _string_set(event["fields"], "fields"),
        "before": _optional_object(event["before"], "before"),
        "after": _optional_object(event["after"], "after"),
    }
    for key in _OPTIONAL_STRING_KEYS:
        value = event[key]
        normalised[key] = value if value is None or type(value) is str else _plain_str(value, key)
    return normalised


def _plain_str(value: object, where: str) -> str:
    if type(value) is str:  # the common case, first: every event passes here on the write path
        return value
    if not isinstance(value, str):
        raise CanonicalError(f"{where} must be a string, got {type(value).__name__}")
    # A str subclass (StrEnum) becomes its plain value, so no subclass __str__ or __repr__ reaches the encoder.
    return str.__str__(value)


def _member(value: object, where: str, allowed: frozenset[str]) -> str:
    text = _plain_str(value, where)
    if text not in allowed:
        raise CanonicalError(f"{where} {text!r} is not one of {sorted(allowed)}")
    return text


def _string_set(value: object, where: str) -> list[JSONValue]:
    if type(value) is list:  # a list of plain strings (the usual case) is taken as it is
        for item in value:
            if type(item) is not str:
                break
        else:
            return [*sorted(set(value))]
    if not isinstance(value, list | tuple | set | frozenset):
        raise CanonicalError(f"{where} must be a list of strings")
    members: list[JSONValue] = [*sorted({_plain_str(item, where) for item in value})]
    return members


def _optional_object(value: object, where: str) -> dict[str, JSONValue] | None:
    if value is None:
        return None
    if type(value) is not dict and not isinstance(value, dict):
        raise CanonicalError(f"{where} must be an object or null")
    return _json_object(value, where, 1)


# Error locations are built only when an error is raised: every event passes through here on the write path.
def _json_object(value: dict[Any, Any], where: str, depth: int) -> dict[str, JSONValue]:
    result: dict[str, JSONValue] = {}
    for key, item in value.items():
        if type(key) is not str:
            key = _plain_str(key, f"{where} key")
        # Plain strings, small integers and null are most values (ciphertext, versions): no call for them.
        if type(item) is str or item is None or (type(item) is int and -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER):
            result[key] = item
        else:
            result[key] = _json_value(item, where, depth + 1, key)
    return result


def _json_value(value: object, where: str, depth: int, key: object = None) -> JSONValue:
    if depth > MAX_DEPTH:
        raise CanonicalError(f"{_at(where, key)}: nested deeper than {MAX_DEPTH}")
    if value is None or type(value) is bool:
        return value
    if type(value) is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value
        raise CanonicalError(f"{_at(where, key)}: integer {value} outside +-(2**53 - 1); store it as a string")
    if isinstance(value, str):
        return _plain_str(value, _at(where, key))
    if isinstance(value, list | tuple):
        inner = _at(where, key)
        return [_json_value(item, inner, depth + 1) for item in value]
    if isinstance(value, dict):
        return _json_object(value, _at(where, key), depth)
    raise CanonicalError(f"{_at(where, key)}: {type(value).__name__} is not allowed "
                         "(str, int, bool, None, list, dict only)")


def _at(where: str, key: object) -> str:
    return where if key is None else f"{where}.{key}"
