"""Hash chain: sealing, and what verification says about every way an attacker can edit the stored rows."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable

import pytest

from server.audit.canonical import AuditEvent, encode_event
from server.audit.chain import GENESIS_HASH, ChainReport, ChainRow, seal_event, verify_chain
from server.audit.merkle import leaf_hash, root_hash

TrailFactory = Callable[[int], list[ChainRow]]
MakeEvent = Callable[..., AuditEvent]
Seal = Callable[..., list[ChainRow]]
N = 10


def verify(rows: list[ChainRow], **options: object) -> ChainReport:
    return verify_chain(rows, expected_first_seq=1, expected_prev_hash=GENESIS_HASH, **options)  # type: ignore[arg-type]


def flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def renumber(row: ChainRow, seq: int) -> ChainRow:
    return (seq, row[1], row[2], row[3])


def assert_broken(report: ChainReport, problem: str, first_bad_seq: int | None) -> None:
    assert not report.ok, report
    assert (report.problem, report.first_bad_seq) == (problem, first_bad_seq), report.detail


def test_seal_binds_prev_seq_and_body() -> None:
    body = b'{"seq":1}'
    assert seal_event(GENESIS_HASH, 1, body) == hashlib.sha256(bytes(32) + struct.pack(">Q", 1) + body).digest()
    assert seal_event(GENESIS_HASH, 2, body) != seal_event(GENESIS_HASH, 1, body)
    assert seal_event(b"\x01" * 32, 1, body) != seal_event(GENESIS_HASH, 1, body)
    with pytest.raises(ValueError, match="32 bytes"):
        seal_event(b"short", 1, body)
    with pytest.raises(ValueError, match="range"):
        seal_event(GENESIS_HASH, -1, body)


def test_intact_trail_verifies(make_trail: TrailFactory) -> None:
    rows = make_trail(N)
    report = verify(rows, expected_last_seq=N)
    assert report == ChainReport(True, N, None, None, "intact", N, rows[-1][3])


def test_segment_verifies_from_a_known_hash(make_trail: TrailFactory) -> None:
    rows = make_trail(N)
    report = verify_chain(rows[4:], expected_first_seq=5, expected_prev_hash=rows[3][3])
    assert report.ok
    assert report.checked == N - 4


def test_empty_trail(make_trail: TrailFactory) -> None:
    assert verify([]).ok
    assert_broken(verify([], expected_last_seq=1), "truncated", 1)


@pytest.mark.parametrize("index", [0, 4, N - 1])
@pytest.mark.parametrize("part", ["canonical", "hash"])
def test_altered_byte(make_trail: TrailFactory, index: int, part: str) -> None:
    rows = make_trail(N)
    seq, canonical, prev, stored = rows[index]
    if part == "canonical":
        rows[index] = (seq, flip(canonical, 30), prev, stored)
    else:
        rows[index] = (seq, canonical, prev, flip(stored, 0))
    report = verify(rows)
    assert_broken(report, "altered", index + 1)
    assert (report.last_seq, report.checked) == (index, index)


@pytest.mark.parametrize("index", [0, 4, N - 2])
def test_altered_and_resealed_event_is_named(make_trail: TrailFactory, make_event: MakeEvent, index: int) -> None:
    rows = make_trail(N)
    seq, _, prev, _ = rows[index]
    forged = encode_event(make_event(seq, actor_name="someone.else"))
    rows[index] = (seq, forged, prev, seal_event(prev, seq, forged))
    report = verify(rows)
    assert_broken(report, "altered", seq)
    assert "re-sealed" in report.detail
    assert report.last_seq == seq - 1
    assert report.last_hash == prev


def test_forged_link_is_altered(make_trail: TrailFactory) -> None:
    rows = make_trail(N)
    seq, canonical, _, stored = rows[5]
    rows[5] = (seq, canonical, b"\x07" * 32, stored)
    assert_broken(verify(rows), "altered", 6)


def test_resealed_tail_passes_the_chain_but_not_the_merkle_root(
    make_trail: TrailFactory, make_event: MakeEvent
) -> None:
    """The chain alone cannot catch a re-sealed last event; the signed Merkle root of the same rows does."""
    rows = make_trail(N)
    signed_root = root_hash(leaf_hash(row[1]) for row in rows)
    seq, _, prev, _ = rows[-1]
    forged = encode_event(make_event(seq, reason="covered up"))
    rows[-1] = (seq, forged, prev, seal_event(prev, seq, forged))
    assert verify(rows).ok
    assert root_hash(leaf_hash(row[1]) for row in rows) != signed_root


@pytest.mark.parametrize("index", [0, 4])
def test_deleted_event(make_trail: TrailFactory, index: int) -> None:
    rows = make_trail(N)
    del rows[index]
    report = verify(rows)
    assert_broken(report, "deleted", index + 1)
    assert report.last_seq == index


def test_deleted_run_names_the_range(make_trail: TrailFactory) -> None:
    rows = make_trail(N)
    del rows[3:6]
    report = verify(rows)
    assert_broken(report, "deleted", 4)
    assert "4..6" in report.detail


def test_deleted_tail_is_truncation_when_the_end_is_known(make_trail: TrailFactory) -> None:
    rows = make_trail(N)[:-2]
    assert verify(rows).ok  # without a known end, a shorter trail is indistinguishable from an older one
    report = verify(rows, expected_last_seq=N)
    assert_broken(report, "truncated", N - 1)
    assert report.last_seq == N - 2


@pytest.mark.parametrize("index", [0, 4, N - 2])
def test_deleted_and_renumbered(make_trail: TrailFactory, index: int) -> None:
    rows = make_trail(N)
    del rows[index]
    rows = rows[:index] + [renumber(row, row[0] - 1) for row in rows[index:]]
    assert_broken(verify(rows), "deleted", index + 1)


def test_deleted_last_and_renumbered_is_truncation(make_trail: TrailFactory) -> None:
    rows = make_trail(N)[:-1]
    assert_broken(verify(rows, expected_last_seq=N), "truncated", N)


@pytest.mark.parametrize("index", [0, 4, N - 1])
def test_duplicate_seq_is_inserted(make_trail: TrailFactory, make_event: MakeEvent, seal: Seal, index: int) -> None:
    rows = make_trail(N)
    seq, _, prev, _ = rows[index]
    extra = seal([encode_event(make_event(seq, reason="planted"))], seq, prev)[0]
    for position in (index, index + 1):  # the planted row before or after the genuine one
        tampered = [*rows[:position], extra, *rows[position:]]
        report = verify(tampered)
        assert_broken(report, "inserted", seq)
        assert report.last_seq == seq - 1


@pytest.mark.parametrize("index", [0, 4, N - 1])
@pytest.mark.parametrize("count", [1, 3])
def test_inserted_and_renumbered(
    make_trail: TrailFactory, make_event: MakeEvent, seal: Seal, index: int, count: int
) -> None:
    rows = make_trail(N)
    first_seq, _, prev, _ = rows[index]
    planted = seal([encode_event(make_event(first_seq + i, reason="planted")) for i in range(count)], first_seq, prev)
    tampered = rows[:index] + planted + [renumber(row, row[0] + count) for row in rows[index:]]
    report = verify(tampered)
    assert_broken(report, "inserted", first_seq)
    assert report.last_seq == first_seq - 1
    assert report.checked == first_seq - 1


def test_row_before_the_start_is_inserted(make_trail: TrailFactory) -> None:
    rows = make_trail(N)
    assert_broken(verify([renumber(rows[0], 0), *rows]), "inserted", 0)


@pytest.mark.parametrize("index", [0, 4, N - 2])
def test_swapped_rows_with_swapped_numbers(make_trail: TrailFactory, index: int) -> None:
    rows = make_trail(N)
    first, second = rows[index], rows[index + 1]
    rows[index], rows[index + 1] = renumber(second, first[0]), renumber(first, second[0])
    assert_broken(verify(rows), "reordered", index + 1)


@pytest.mark.parametrize("index", [0, 4, N - 2])
def test_rows_out_of_seq_order(make_trail: TrailFactory, index: int) -> None:
    rows = make_trail(N)
    rows[index], rows[index + 1] = rows[index + 1], rows[index]
    assert_broken(verify(rows), "reordered", index + 1)


def test_distant_swap(make_trail: TrailFactory) -> None:
    rows = make_trail(N)
    rows[2], rows[7] = renumber(rows[7], 3), renumber(rows[2], 8)
    assert_broken(verify(rows), "reordered", 3)


def test_seq_going_backwards(make_trail: TrailFactory) -> None:
    rows = make_trail(N)
    assert_broken(verify([*rows[:6], rows[1]]), "reordered", 2)


def test_wrong_anchor_is_reported_at_the_first_event(make_trail: TrailFactory) -> None:
    rows = make_trail(N)
    report = verify_chain(rows[4:], expected_first_seq=5, expected_prev_hash=rows[2][3])
    assert_broken(report, "altered", 5)


@pytest.mark.parametrize(
    "bad_row",
    [
        (5, "text, not bytes", b"\0" * 32, b"\0" * 32),
        ("5", b"{}", b"\0" * 32, b"\0" * 32),
        (-1, b"{}", b"\0" * 32, b"\0" * 32),
        (5, b"{}"),
    ],
)
def test_malformed_rows_fail_without_raising(make_trail: TrailFactory, bad_row: tuple[object, ...]) -> None:
    rows: list[object] = [*make_trail(4), bad_row]
    assert_broken(verify(rows), "altered", 5)  # type: ignore[arg-type]


def test_rows_are_consumed_lazily(make_trail: TrailFactory) -> None:
    rows = make_trail(2000)
    seen = 0

    def cursor() -> object:
        nonlocal seen
        for row in rows:
            seen += 1
            yield row

    report = verify_chain(cursor(), expected_first_seq=1, expected_prev_hash=GENESIS_HASH)  # type: ignore[arg-type]
    assert report.ok and seen == 2000


def test_errors_of_the_row_source_propagate(make_trail: TrailFactory) -> None:
    """A failing DB cursor is an operational error, not evidence of tampering."""
    rows = make_trail(5)

    def cursor() -> object:
        yield from rows[:3]
        raise ValueError("connection lost")

    with pytest.raises(ValueError, match="connection lost"):
        verify_chain(cursor(), expected_first_seq=1, expected_prev_hash=GENESIS_HASH)  # type: ignore[arg-type]
