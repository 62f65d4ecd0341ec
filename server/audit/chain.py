"""The hash chain over audit events: sealing one event, and verifying a run of stored events fast.

Each event is sealed as ``hash = SHA-256(prev_hash || seq as 8-byte big-endian || canonical)``. ``prev_hash``
is the hash of the event with the previous sequence number (:data:`GENESIS_HASH` before the first), so an
event's hash binds its content, its position and everything before it. ``prev_hash`` and ``seq`` have fixed
widths, so the concatenation is unambiguous.

The chain alone does not stop an attacker who rewrites the tail and re-seals every event after it: SHA-256
is public. That is what signed Merkle checkpoints are for (:mod:`server.audit.checkpoint`); verify the chain
and compare the Merkle root of the same events with the latest checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Final, Literal, cast

GENESIS_HASH: Final = bytes(32)
HASH_SIZE: Final = 32
LOOKAHEAD: Final = 256  # rows read past a break, only to tell reordering from insertion and deletion

ChainRow = tuple[int, bytes, bytes, bytes]
"""One stored event: ``(seq, canonical, prev_hash, hash)``."""

Problem = Literal["altered", "deleted", "inserted", "reordered", "truncated"]

_SEQ: Final = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The outcome of :func:`verify_chain`.

    Attributes:
        ok: True if every row verified and nothing was missing.
        checked: Rows read and found intact before the first problem (all rows when ``ok``).
        first_bad_seq: The first sequence number the evidence implicates, or None.
        problem: ``altered``, ``deleted``, ``inserted``, ``reordered`` or ``truncated``; None when ``ok``.
        detail: One sentence for a person: what is wrong, where.
        last_seq: The last sequence number known good (``expected_first_seq - 1`` if none).
        last_hash: The hash of that event (the expected previous hash if none), so a caller can resume from
            it; None only when a break implicates an event further back than the row before it.
    """

    ok: bool
    checked: int
    first_bad_seq: int | None
    problem: Problem | None
    detail: str
    last_seq: int
    last_hash: bytes | None


def seal_event(prev_hash: bytes, seq: int, canonical: bytes) -> bytes:
    """Compute the chain hash of an event.

    Args:
        prev_hash: The hash of the event with sequence number ``seq - 1``, or :data:`GENESIS_HASH`.
        seq: The event's sequence number, 0 <= seq < 2**64.
        canonical: The event's canonical bytes (:func:`server.audit.canonical.encode_event`).

    Returns:
        The 32-byte SHA-256 hash to store with the event.

    Raises:
        ValueError: If ``prev_hash`` is not 32 bytes or ``seq`` is out of range.
    """
    if len(prev_hash) != HASH_SIZE:
        raise ValueError("prev_hash must be 32 bytes")
    if not 0 <= seq < 2**64:
        raise ValueError("seq out of range")
    return hashlib.sha256(prev_hash + _SEQ.pack(seq) + canonical).digest()


def verify_chain(
    rows: Iterable[ChainRow],
    *,
    expected_first_seq: int,
    expected_prev_hash: bytes,
    expected_last_seq: int | None = None,
) -> ChainReport:
    """Verify stored events in sequence order; stop at the first problem and say what it is.

    Each row must carry the next sequence number, link to the previous row's hash, and hash to its stored
    hash. At the first failure the rows around it are examined to name the problem:

    - ``altered``: an event's content or hash does not match; or an event was rewritten and re-sealed, so
      its successor no longer links to it (the rewritten event is named).
    - ``deleted``: a sequence number is missing, or an event is missing and later events were renumbered.
    - ``inserted``: a sequence number appears twice, a row precedes the expected start, or an event links
      past its predecessor (the predecessor was inserted, later events renumbered).
    - ``reordered``: an event appears later than its place, or two events were swapped.
    - ``truncated``: the rows end before ``expected_last_seq``.

    The classification is a best reading of the evidence for a person; ``ok`` is the verdict.

    Args:
        rows: ``(seq, canonical, prev_hash, hash)`` tuples ordered by ``seq``; any iterable (a DB cursor).
        expected_first_seq: The sequence number of the first row (1 for the whole trail).
        expected_prev_hash: The hash the first row must link to (:data:`GENESIS_HASH` for seq 1, else the
            hash of the event before the range, from a previous verification).
        expected_last_seq: If given, the rows must reach at least this sequence number (e.g. a signed
            checkpoint's tree size); rows beyond it are verified too.

    Returns:
        A :class:`ChainReport`.
    """
    sha256 = hashlib.sha256
    pack = _SEQ.pack
    iterator = iter(rows)
    expect = expected_first_seq
    last = expected_prev_hash
    before_last: bytes | None = None
    # The hot loop: one tuple unpack, two comparisons, one hash per event; everything else is off this path.
    # The try costs nothing until it fires (3.11); it sits inside the loop so an error raised by the row
    # source itself (a DB cursor) propagates instead of being reported as tampering.
    for row in iterator:
        try:
            seq, canonical, prev, stored = row
            if seq != expect or prev != last or sha256(prev + pack(seq) + canonical).digest() != stored:
                break
        except (TypeError, ValueError, struct.error):
            break
        before_last = last
        last = stored
        expect += 1
    else:
        end = expect - 1
        if expected_last_seq is not None and end < expected_last_seq:
            detail = f"the trail ends at seq {end}; events {end + 1}..{expected_last_seq} are missing"
            return _report(expected_first_seq, expect, last, before_last, end + 1, "truncated", detail)
        return ChainReport(True, expect - expected_first_seq, None, None, "intact", end, last)
    return _classify(row, iterator, expected_first_seq, expect, last, before_last)


def _report(
    first: int, expect: int, last: bytes, before_last: bytes | None, bad: int, problem: Problem, detail: str
) -> ChainReport:
    # Rows before the implicated event are known good; the report ends there, not at the row that revealed it.
    last_seq = min(expect - 1, bad - 1)
    last_hash = last if last_seq == expect - 1 else before_last if last_seq == expect - 2 else None
    return ChainReport(False, max(0, last_seq - first + 1), bad, problem, detail, last_seq, last_hash)


def _well_formed(row: object) -> bool:
    return (
        isinstance(row, tuple)
        and len(row) == 4
        and type(row[0]) is int
        and 0 <= row[0] < 2**64
        and all(isinstance(part, bytes) for part in row[1:])
    )


def _classify(
    row: object, iterator: Iterator[ChainRow], first: int, expect: int, last: bytes, before_last: bytes | None
) -> ChainReport:
    if not _well_formed(row):
        return _report(first, expect, last, before_last, expect, "altered", f"row at seq {expect} is malformed")
    seq, canonical, prev, stored = cast(ChainRow, row)
    has_predecessor = expect > first

    if seq < expect:
        if not has_predecessor:
            detail = f"first row has seq {seq}, before the expected start {first}"
            return _report(first, expect, last, before_last, seq, "inserted", detail)
        if seq == expect - 1:
            detail = f"seq {seq} appears twice: an extra event was inserted"
            return _report(first, expect, last, before_last, seq, "inserted", detail)
        detail = f"seq {seq} appears after seq {expect - 1}: events are out of order"
        return _report(first, expect, last, before_last, seq, "reordered", detail)

    if seq > expect:
        for later in islice(iterator, LOOKAHEAD):
            if _well_formed(later) and later[0] == expect:
                detail = f"seq {expect} appears after seq {seq}: events are out of order"
                return _report(first, expect, last, before_last, expect, "reordered", detail)
        missing = f"seq {expect}" if seq == expect + 1 else f"seqs {expect}..{seq - 1}"
        return _report(first, expect, last, before_last, expect, "deleted", f"{missing} missing")

    if prev == last:
        detail = f"event {seq} does not hash to its stored hash: its content or hash was changed"
        return _report(first, expect, last, before_last, seq, "altered", detail)

    # The row has the right number but does not link to its predecessor.
    for position, later in enumerate(islice(iterator, LOOKAHEAD), start=1):
        if _well_formed(later) and later[2] == last:
            detail = f"the event that follows seq {expect - 1} appears {position} row(s) later: events were reordered"
            return _report(first, expect, last, before_last, expect, "reordered", detail)

    def sealed_as(candidate: int) -> bool:
        return 0 <= candidate < 2**64 and len(prev) == HASH_SIZE and seal_event(prev, candidate, canonical) == stored

    if has_predecessor and before_last is not None and prev == before_last:
        detail = f"event {seq} links to event {expect - 2}, skipping event {expect - 1}, which was inserted"
        return _report(first, expect, last, before_last, expect - 1, "inserted", detail)
    original = _declared_seq(canonical)
    if original is not None and original != seq and sealed_as(original):
        if original < seq:
            count = seq - original
            detail = f"event sealed as seq {original} now has seq {seq}: {count} event(s) inserted from seq {original}"
            return _report(first, expect, last, before_last, original, "inserted", detail)
        count = original - seq
        detail = f"event sealed as seq {original} now has seq {seq}: {count} event(s) deleted and later renumbered"
        return _report(first, expect, last, before_last, seq, "deleted", detail)
    if has_predecessor and sealed_as(seq):
        detail = (
            f"event {seq} is intact but does not link to event {expect - 1}: "
            f"event {expect - 1} was rewritten and re-sealed"
        )
        return _report(first, expect, last, before_last, expect - 1, "altered", detail)
    detail = f"event {seq} does not link to " + (
        f"event {expect - 1}" if has_predecessor else "the expected previous hash"
    )
    return _report(first, expect, last, before_last, seq, "altered", detail + ": its link or content was changed")


def _declared_seq(canonical: bytes) -> int | None:
    """The ``seq`` written inside the canonical bytes, if they parse; used only to explain a break."""
    try:
        declared = json.loads(canonical)
    except (ValueError, TypeError, RecursionError):
        return None
    value = declared.get("seq") if isinstance(declared, dict) else None
    return value if type(value) is int else None
