"""Compact ranges and trees with a pruned (archived) prefix: the same roots and proofs as the whole tree."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from server.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleTree,
    PrunedError,
    leaf_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)


def leaves_for(n: int) -> list[bytes]:
    return [leaf_hash(f"event {index}".encode()) for index in range(n)]


def ref_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 MTH over leaf hashes, recursively (independent of the code under test)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    return hashlib.sha256(b"\x01" + ref_root(leaves[:split]) + ref_root(leaves[split:])).digest()


def ref_compact(leaves: list[bytes]) -> list[bytes]:
    """The roots of the complete subtrees that make up [0, n), largest first."""
    nodes, start = [], 0
    for height in range(len(leaves).bit_length() - 1, -1, -1):
        if len(leaves) >> height & 1:
            nodes.append(ref_root(leaves[start : start + (1 << height)]))
            start += 1 << height
    return nodes


@pytest.mark.parametrize("n", [*range(40), 63, 64, 65, 127, 128, 129, 1000])
def test_compact_range_matches_the_reference(n: int) -> None:
    leaves = leaves_for(n)
    compact = CompactRange()
    compact.extend(leaves)
    assert compact.size == n
    assert compact.nodes == ref_compact(leaves)
    assert compact.root() == ref_root(leaves) == root_hash(leaves)
    assert compact == MerkleTree(leaves).compact_range()
    assert CompactRange.from_bytes(n, compact.to_bytes()) == compact


def test_extending_in_any_chunks_gives_the_same_range() -> None:
    rng = random.Random(9162)
    leaves = leaves_for(300)
    for _ in range(20):
        compact, position = CompactRange(), 0
        while position < len(leaves):
            step = rng.randint(0, 40)
            compact.extend(leaves[position : position + step])
            position += step
        assert compact.root() == ref_root(leaves)
        one_by_one = CompactRange()
        for leaf in leaves[:position]:
            one_by_one.append(leaf)
        assert one_by_one == compact


def test_a_stored_range_continues() -> None:
    leaves = leaves_for(77)
    head = CompactRange()
    head.extend(leaves[:45])
    resumed = CompactRange.from_bytes(45, head.to_bytes())
    resumed.extend(leaves[45:])
    assert resumed.root() == ref_root(leaves)
    assert head.size == 45  # copies are independent
    copy = head.copy()
    copy.append(leaves[45])
    assert head.size == 45 and copy.size == 46


def test_malformed_ranges_are_refused() -> None:
    assert CompactRange().root() == EMPTY_ROOT
    with pytest.raises(ValueError, match="nodes"):
        CompactRange(5, [bytes(32)])  # 5 = 0b101 needs two nodes
    with pytest.raises(ValueError, match="nodes"):
        CompactRange(4, [b"short"])
    with pytest.raises(ValueError, match="whole number"):
        CompactRange.from_bytes(1, bytes(31))
    with pytest.raises(ValueError, match="out of range"):
        CompactRange(-1)
    with pytest.raises(ValueError, match="32 bytes"):
        CompactRange().extend([b"short"])


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 16, 17, 31, 33])
def test_a_pruned_tree_gives_the_whole_trees_roots_and_proofs(n: int) -> None:
    leaves = leaves_for(n)
    whole = MerkleTree(leaves)
    for start in range(n + 1):
        prefix = CompactRange()
        prefix.extend(leaves[:start])
        built = MerkleTree(leaves[start:], prefix=prefix)
        grown = MerkleTree(prefix=prefix)
        for leaf in leaves[start:]:
            grown.append(leaf)
        for tree in (built, grown):
            assert (tree.size, tree.start) == (n, start)
            for size in range(max(start, 1), n + 1):
                root = tree.root(size)
                assert root == whole.root(size)
                assert tree.compact_range(size) == whole.compact_range(size)
                for index in range(start, size):
                    proof = tree.inclusion_proof(index, size)
                    assert proof == whole.inclusion_proof(index, size)
                    assert verify_inclusion(leaves[index], index, size, proof, root)
                for first in range(start, size + 1):
                    proof = tree.consistency_proof(first, size)
                    assert proof == whole.consistency_proof(first, size)
                    if first:
                        assert verify_consistency(first, size, proof, whole.root(first), root)


def test_a_pruned_tree_refuses_what_needs_pruned_leaves() -> None:
    leaves = leaves_for(20)
    prefix = CompactRange()
    prefix.extend(leaves[:11])
    tree = MerkleTree(leaves[11:], prefix=prefix)
    with pytest.raises(PrunedError):
        tree.inclusion_proof(10, 20)
    with pytest.raises(PrunedError):
        tree.root(7)
    with pytest.raises(PrunedError):
        tree.consistency_proof(5, 20)
    with pytest.raises(PrunedError):
        tree.compact_range(10)
    with pytest.raises(IndexError):
        tree.leaf(3)
    assert tree.leaf(11) == leaves[11]
    assert tree.root(11) == prefix.root()
    assert tree.consistency_proof(0, 20) == []


def test_compact_range_vectors() -> None:
    """Compact ranges of the RFC 6962 eight-leaf tree (tests/vectors/merkle/compact_ranges.json)."""
    vectors = json.loads((Path(__file__).parents[2] / "vectors" / "merkle" / "compact_ranges.json").read_text("utf-8"))
    leaves = [leaf_hash(bytes.fromhex(leaf)) for leaf in vectors["leaves_hex"]]
    for case in vectors["compact_ranges"]:
        size, nodes = case["tree_size"], [bytes.fromhex(node) for node in case["nodes"]]
        compact = CompactRange()
        compact.extend(leaves[:size])
        assert compact.nodes == nodes
        assert compact.root().hex() == case["root"]
        assert CompactRange(size, nodes).root().hex() == case["root"]
        pruned = MerkleTree(leaves[size:], prefix=CompactRange(size, nodes))
        assert pruned.root(8) == MerkleTree(leaves).root()
