"""Exports: build one from a trail, then attack the file line by line and check what the verifier says."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.audit.canonical import AuditEvent, encode_event
from server.audit.chain import ChainRow, seal_event
from server.audit.checkpoint import Checkpoint, key_id
from server.audit.export import ExportReport, SignedCheckpoint, build_export, verify_export, write_export
from server.audit.merkle import MerkleTree, leaf_hash

TrailFactory = Callable[[int], list[ChainRow]]
MakeEvent = Callable[..., AuditEvent]
N = 20
CREATED = "2026-11-23T10:00:00.000000Z"


def signed(tree: MerkleTree, size: int, key: Ed25519PrivateKey) -> SignedCheckpoint:
    checkpoint = Checkpoint(size, tree.root(size), f"2026-11-23T09:{size:02d}:00.000000Z", key_id(key.public_key()))
    return SignedCheckpoint(checkpoint, checkpoint.sign(key))


class Trail:
    """A sealed trail with its Merkle tree and two signed checkpoints (sizes 12 and N)."""

    def __init__(self, rows: list[ChainRow], key: Ed25519PrivateKey) -> None:
        self.rows = rows
        self.key = key
        self.tree = MerkleTree(leaf_hash(row[1]) for row in rows)
        self.checkpoints = [signed(self.tree, 12, key), signed(self.tree, len(rows), key)]

    def export(self, seqs: list[int] | None = None, *, sign: bool = True) -> list[str]:
        complete = seqs is None
        selected = self.rows if seqs is None else [self.rows[seq - 1] for seq in seqs]
        return list(
            build_export(
                selected,
                self.tree,
                self.checkpoints,
                selection={"all": True} if complete else {"customer_id": "c-1"},
                created=CREATED,
                seq_range=(1, len(self.rows)) if complete else None,
                signing_key=self.key if sign else None,
            )
        )


@pytest.fixture(name="trail")
def fx_trail(make_trail: TrailFactory, signing_key: Ed25519PrivateKey) -> Trail:
    return Trail(make_trail(N), signing_key)


def check(lines: list[str], trail: Trail, **options: bool) -> ExportReport:
    return verify_export(lines, trail.key.public_key(), **options)


def assert_broken(report: ExportReport, problem: str, first_bad_seq: int | None) -> None:
    assert not report.ok, report
    assert (report.problem, report.first_bad_seq) == (problem, first_bad_seq), report.detail


def line_of(lines: list[str], seq: int) -> int:
    return next(i for i, line in enumerate(lines) if f'"seq":{seq},' in line and '"type":"event"' in line)


def edit(lines: list[str], index: int, **changes: Any) -> list[str]:
    record = json.loads(lines[index])
    record.update(changes)
    edited = [*lines]
    edited[index] = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    return edited


def test_complete_export_verifies(trail: Trail, tmp_path: Path) -> None:
    lines = trail.export()
    report = check(lines, trail)
    assert report.ok, report.detail
    assert (report.events_checked, report.checkpoint_sizes, report.manifest_signed) == (N, (12, N), True)
    assert report.complete
    path = tmp_path / "audit.jsonl"
    write_export(path, lines)
    assert verify_export(path, trail.key.public_key()).ok
    assert verify_export(str(path), trail.key.public_key()).ok
    assert verify_export(path.read_text(encoding="utf-8").splitlines(), trail.key.public_key()).ok


def test_selection_export_verifies(trail: Trail) -> None:
    report = check(trail.export([3, 7, 8, 15, 20]), trail)
    assert report.ok, report.detail
    assert (report.events_checked, report.complete) == (5, False)


def test_file_layout(trail: Trail) -> None:
    kinds = [json.loads(line)["type"] for line in trail.export([3, 4])]
    assert kinds == ["header", "checkpoint", "checkpoint", "consistency", "event", "event", "trailer"]
    assert all(line.endswith("\n") and "\n" not in line[:-1] for line in trail.export([3, 4]))


def test_edited_event_content(trail: Trail, make_event: MakeEvent) -> None:
    lines = trail.export()
    index = line_of(lines, 9)
    forged = encode_event(make_event(9, actor_name="nobody"))
    report = check(edit(lines, index, canonical=base64.b64encode(forged).decode()), trail)
    assert_broken(report, "altered", 9)


def test_edited_event_with_recomputed_hashes(trail: Trail, make_event: MakeEvent) -> None:
    """The attacker re-seals the edited event; only the signed tree can tell."""
    lines = trail.export([9])
    index = line_of(lines, 9)
    record = json.loads(lines[index])
    forged = encode_event(make_event(9, actor_name="nobody"))
    new_hash = seal_event(bytes.fromhex(record["prev_hash"]), 9, forged).hex()
    tampered = edit(lines, index, canonical=base64.b64encode(forged).decode(), hash=new_hash)
    assert_broken(check(tampered, trail, require_signed_manifest=False), "altered", 9)


def test_edited_chain_hash(trail: Trail) -> None:
    lines = trail.export()
    index = line_of(lines, 5)
    assert_broken(check(edit(lines, index, hash="00" * 32), trail), "altered", 5)


def test_deleted_event_line_in_complete_export(trail: Trail) -> None:
    lines = trail.export()
    del lines[line_of(lines, 7)]
    assert_broken(check(lines, trail), "deleted", 7)
    assert_broken(check(lines, trail, require_signed_manifest=False), "deleted", 7)


def test_deleted_event_line_in_selection_is_caught_by_the_trailer(trail: Trail) -> None:
    lines = trail.export([3, 7, 8, 15])
    del lines[line_of(lines, 8)]
    assert_broken(check(lines, trail), "deleted", None)
    # Without its trailer a selection cannot show an omission: why the trailer is required by default.
    assert check(lines[:-1], trail, require_signed_manifest=False).ok
    assert_broken(check(lines[:-1], trail), "truncated", None)


def test_truncated_tail(trail: Trail) -> None:
    lines = trail.export()
    assert_broken(check(lines[:-3], trail), "truncated", N - 1)
    assert_broken(check(lines[:-1], trail), "truncated", None)  # only the trailer removed


def test_swapped_event_lines(trail: Trail) -> None:
    lines = trail.export()
    a, b = line_of(lines, 10), line_of(lines, 11)
    lines[a], lines[b] = lines[b], lines[a]
    assert_broken(check(lines, trail), "reordered", 10)
    selection = trail.export([3, 7, 8])
    a, b = line_of(selection, 7), line_of(selection, 8)
    selection[a], selection[b] = selection[b], selection[a]
    assert_broken(check(selection, trail), "reordered", 7)


def test_duplicated_event_line(trail: Trail) -> None:
    lines = trail.export([3, 7])
    index = line_of(lines, 7)
    lines.insert(index, lines[index])
    assert_broken(check(lines, trail), "inserted", 7)


def test_event_outside_a_complete_range(trail: Trail) -> None:
    lines = trail.export()
    assert_broken(check(edit(lines, 0, seq_range=[1, N - 1]), trail), "inserted", N)


def test_forged_checkpoint_signature(trail: Trail) -> None:
    lines = trail.export()
    signature = bytearray(base64.b64decode(json.loads(lines[2])["signature"]))
    signature[10] ^= 0x01
    report = check(edit(lines, 2, signature=base64.b64encode(bytes(signature)).decode()), trail)
    assert_broken(report, "signature", None)


def test_checkpoint_body_edited(trail: Trail) -> None:
    lines = trail.export()
    body = json.loads(lines[2])["body"].replace(f"\n{N}\n", f"\n{N + 1}\n")
    assert_broken(check(edit(lines, 2, body=body), trail), "signature", None)


def test_wrong_public_key(trail: Trail) -> None:
    report = verify_export(trail.export(), Ed25519PrivateKey.generate().public_key())
    assert_broken(report, "signature", None)
    assert "not by the given key" in report.detail


def test_attacker_signs_with_own_key(make_trail: TrailFactory, trail: Trail) -> None:
    """A complete forgery under another key, with the header claiming the real key id."""
    impostor = Trail(make_trail(N), Ed25519PrivateKey.generate())
    lines = edit(impostor.export(), 0, key_id=key_id(trail.key.public_key()))
    assert_broken(check(lines, trail), "signature", None)


def test_rewritten_history_is_inconsistent(
    make_trail: TrailFactory, make_event: MakeEvent, seal: Callable[..., list[ChainRow]], trail: Trail
) -> None:
    """The real key signed a checkpoint over a rewritten trail: consistency with the older checkpoint fails."""
    canonicals = [row[1] for row in make_trail(N)]
    canonicals[4] = encode_event(make_event(5, reason="rewritten"))
    forked = Trail(seal(canonicals), trail.key)
    forked_lines = forked.export()
    lines = trail.export()
    lines[2] = forked_lines[2]  # the fork's checkpoint at size N, after the genuine one at 12
    assert_broken(check(lines, trail, require_signed_manifest=False), "inconsistent", None)
    lines[3] = forked_lines[3]  # with the fork's own consistency proof too
    assert_broken(check(lines, trail, require_signed_manifest=False), "inconsistent", None)
    assert check(forked_lines, trail).ok  # the fork on its own is a well-signed, different history


def test_consistency_proof_with_an_extra_node(trail: Trail) -> None:
    lines = trail.export()
    proof = json.loads(lines[3])["proof"]
    assert_broken(check(edit(lines, 3, proof=[*proof, proof[-1]]), trail), "inconsistent", None)
    assert_broken(check(edit(lines, 3, proof=proof[:-1]), trail), "inconsistent", None)


@pytest.mark.parametrize("mutation", ["extra", "missing", "flipped"])
def test_inclusion_proof_tampered(trail: Trail, mutation: str) -> None:
    lines = trail.export()
    index = line_of(lines, 6)
    proof = json.loads(lines[index])["proof"]
    tampered = {
        "extra": [*proof, proof[0]],
        "missing": proof[:-1],
        "flipped": [("1" if proof[0][0] == "0" else "0") + proof[0][1:], *proof[1:]],
    }[mutation]
    assert_broken(check(edit(lines, index, proof=tampered), trail), "altered", 6)


def test_wrong_leaf_index_or_tree_size(trail: Trail) -> None:
    lines = trail.export()
    index = line_of(lines, 6)
    assert_broken(check(edit(lines, index, leaf_index=6), trail), "altered", 6)
    assert_broken(check(edit(lines, index, tree_size=12), trail), "altered", 6)  # proof is for size N
    assert_broken(check(edit(lines, index, tree_size=13), trail), "malformed", 6)


def test_header_edit_breaks_the_trailer(trail: Trail) -> None:
    lines = trail.export([3, 7])
    assert_broken(check(edit(lines, 0, filter={"customer_id": "c-2"}), trail), "altered", None)


def test_unsigned_export(trail: Trail) -> None:
    lines = trail.export(sign=False)
    assert_broken(check(lines, trail), "truncated", None)
    report = check(lines, trail, require_signed_manifest=False)
    assert report.ok
    assert not report.manifest_signed


@pytest.mark.parametrize(
    "mangle",
    [
        lambda lines: ["not json\n", *lines[1:]],
        lambda lines: [lines[0], "[]\n", *lines[1:]],
        lambda lines: [lines[0].replace('{"complete"', '{"complete":true,"complete"'), *lines[1:]],
        lambda lines: [lines[0].replace('"version":1', '"version":1.0'), *lines[1:]],
        lambda lines: [lines[0].replace('"version":1', '"version":2'), *lines[1:]],
        lambda lines: lines[1:],
        lambda lines: [lines[0], lines[0], *lines[1:]],
        lambda lines: [lines[0], lines[1], lines[3], lines[2], *lines[4:]],
        lambda lines: [*lines[:3], *lines[4:]],
        lambda lines: [*lines[:1], *lines[3:]],
        lambda lines: [*lines, lines[-2]],
        lambda lines: [],
        lambda lines: ["\n", *lines],
        lambda lines: [lines[0].replace('"type":"header"', '"type":"header","x":1'), *lines[1:]],
    ],
)
def test_malformed_files_fail_without_raising(trail: Trail, mangle: Callable[[list[str]], list[str]]) -> None:
    report = check(mangle(trail.export([3, 7])), trail)
    assert not report.ok
    assert report.problem in {"malformed", "signature", "altered", "truncated"}, report


def test_builder_refuses_bad_input(trail: Trail) -> None:
    with pytest.raises(ValueError, match="beyond the last checkpoint"):
        list(build_export(trail.rows, trail.tree, trail.checkpoints[:1], selection="all", created=CREATED))
    with pytest.raises(ValueError, match="at least one checkpoint"):
        list(build_export(trail.rows, trail.tree, [], selection="all", created=CREATED))
    with pytest.raises(ValueError, match="ascending"):
        list(build_export([], trail.tree, trail.checkpoints[::-1], selection="all", created=CREATED))
    with pytest.raises(ValueError, match="out of order"):
        list(build_export(trail.rows[::-1], trail.tree, trail.checkpoints, selection="all", created=CREATED))
    with pytest.raises(ValueError, match="missing"):
        gap = trail.rows[:3] + trail.rows[4:]
        list(build_export(gap, trail.tree, trail.checkpoints, selection="all", created=CREATED, seq_range=(1, N)))
    other = Ed25519PrivateKey.generate()
    with pytest.raises(ValueError, match="key that signed"):
        list(build_export([], trail.tree, trail.checkpoints, selection="all", created=CREATED, signing_key=other))
