"""RFC 9162 Merkle tree: published vectors, a recursive reference written from the RFC text, and attacks."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from server.audit.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).parents[2] / "vectors" / "merkle"


def load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


# Reference implementation, transcribed from RFC 9162 2.1.1, 2.1.3.1 and 2.1.4.1: slow, recursive, obvious.
def ref_mth(data: Sequence[bytes]) -> bytes:
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(data[:k]) + ref_mth(data[k:])).digest()


def ref_path(m: int, data: Sequence[bytes]) -> list[bytes]:
    n = len(data)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*ref_path(m, data[:k]), ref_mth(data[k:])]
    return [*ref_path(m - k, data[k:]), ref_mth(data[:k])]


def ref_proof(m: int, data: Sequence[bytes]) -> list[bytes]:
    def subproof(m: int, data: Sequence[bytes], complete: bool) -> list[bytes]:
        n = len(data)
        if m == n:
            return [] if complete else [ref_mth(data)]
        k = 1
        while k * 2 < n:
            k *= 2
        if m <= k:
            return [*subproof(m, data[:k], complete), ref_mth(data[k:])]
        return [*subproof(m - k, data[k:], False), ref_mth(data[:k])]

    return subproof(m, data, True)


def rfc_walk(leaf: bytes, index: int, size: int, proof: Sequence[bytes], *, strict: bool = True) -> bytes | None:
    """RFC 9162 2.1.3.2 transcribed: the root the proof leads to, or None where the RFC fails it.

    With ``strict=False`` the range and length checks (step 1, step 4a, step 5's sn == 0) are skipped: what a
    verifier without them would accept, so the root an attacker would present with a proof of the wrong shape.
    """
    if strict and index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if strict and sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    return None if strict and sn != 0 else r


def rfc_path_length(index: int, size: int) -> int:
    """How many nodes the RFC 9162 2.1.3.2 walk takes before sn reaches 0 (no hashing)."""
    fn, sn, count = index, size - 1, 0
    while sn:
        if not fn & 1 and fn == sn:
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        fn >>= 1
        sn >>= 1
        count += 1
    return count


def data_for(n: int) -> list[bytes]:
    return [f"event {i}".encode() for i in range(n)]


def probes_inclusion(index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes) -> list[tuple[Any, ...]]:
    """Wrong versions of a valid inclusion proof, after transparency-dev/merkle's corruptInclusionProof."""
    other = hashlib.sha256(b"other").digest()
    probes: list[tuple[Any, ...]] = [
        (index - 1, size, proof, root, leaf),
        (index + 1, size, proof, root, leaf),
        (index ^ 2, size, proof, root, leaf),
        (index, size * 2, proof, root, leaf),
        (index, size // 2, proof, root, leaf),
        (index, size, proof, root, other),
        (index, size, proof, EMPTY_ROOT, leaf),
        (index, size, proof, other, leaf),
        (index, size, [*proof, b""], root, leaf),
        (index, size, [*proof, root], root, leaf),
        (index, size, [b"", *proof], root, leaf),
        (index, size, [root, *proof], root, leaf),
    ]
    for i in range(len(proof)):
        flipped = [*proof]
        flipped[i] = bytes([proof[i][0] ^ 8]) + proof[i][1:]
        probes.append((index, size, flipped, root, leaf))
    if proof:
        probes.append((index, size, proof[:-1], root, leaf))
        probes.append((index, size, proof[1:], root, leaf))
    if len(proof) > 1:
        probes.append((index, size, [proof[0], other, *proof[1:]], root, leaf))
    return probes


def probes_consistency(first: int, second: int, proof: list[bytes], r1: bytes, r2: bytes) -> list[tuple[Any, ...]]:
    """Wrong versions of a valid consistency proof, after transparency-dev/merkle's corruptConsistencyProof."""
    probes: list[tuple[Any, ...]] = [
        (first - 1, second, proof, r1, r2),
        (first + 1, second, proof, r1, r2),
        (first ^ 2, second, proof, r1, r2),
        (first, second * 2, proof, r1, r2),
        (first, second // 2, proof, r1, r2),
        (first, second, proof, EMPTY_ROOT, r2),
        (first, second, proof, r1, EMPTY_ROOT),
        (first, second, proof, r2, r1),
        (first, second, [], r1, r2),
        (first, second, [*proof, b""], r1, r2),
        (first, second, [*proof, r1], r1, r2),
        (first, second, [*proof, r2], r1, r2),
        (first, second, [b"", *proof], r1, r2),
        (first, second, [r1, *proof], r1, r2),
        (first, second, [r2, *proof], r1, r2),
        (first, second, [proof[0], *proof], r1, r2),
        (first, second, proof[:-1], r1, r2),
        (first, second, proof[1:], r1, r2),
    ]
    for i in range(len(proof)):
        flipped = [*proof]
        flipped[i] = bytes([proof[i][0] ^ 16]) + proof[i][1:]
        probes.append((first, second, flipped, r1, r2))
    return probes


def test_hasher_vectors() -> None:
    vectors = load("rfc6962_hasher.json")
    assert EMPTY_ROOT.hex() == vectors["empty_root"]
    assert leaf_hash(b"").hex() == vectors["empty_leaf"]
    assert leaf_hash(vectors["leaf"]["data_ascii"].encode()).hex() == vectors["leaf"]["hash"]
    node = vectors["node"]
    assert node_hash(node["left_ascii"].encode(), node["right_ascii"].encode()).hex() == node["hash"]


def test_published_eight_leaf_vectors() -> None:
    vectors = load("rfc6962_eight_leaves.json")
    leaves = [leaf_hash(bytes.fromhex(leaf)) for leaf in vectors["leaves_hex"]]
    tree = MerkleTree(leaves)
    for entry in vectors["roots_hex"]:
        size, root = entry["tree_size"], bytes.fromhex(entry["root"])
        assert tree.root(size) == root
        assert root_hash(leaves[:size]) == root
        assert ref_mth([bytes.fromhex(leaf) for leaf in vectors["leaves_hex"][:size]]) == root
    roots = {entry["tree_size"]: bytes.fromhex(entry["root"]) for entry in vectors["roots_hex"]}
    for case in vectors["inclusion"]:
        index, size, proof = case["leaf_index"], case["tree_size"], [bytes.fromhex(p) for p in case["proof"]]
        assert tree.inclusion_proof(index, size) == proof
        assert verify_inclusion(leaves[index], index, size, proof, roots[size])
    for case in vectors["consistency"]:
        first, second, proof = case["first"], case["second"], [bytes.fromhex(p) for p in case["proof"]]
        assert tree.consistency_proof(first, second) == proof
        assert verify_consistency(first, second, proof, roots[first], roots[second])


def _b64_list(nodes: list[str] | None) -> list[bytes]:
    return [base64.b64decode(node) for node in nodes or []]


@pytest.mark.parametrize("case", load("transparency_dev_proofgen.json")["inclusion"], ids=lambda c: c["file"])
def test_proofgen_inclusion_vectors(case: dict[str, Any]) -> None:
    v = case["vector"]
    leaf, root = base64.b64decode(v["leafHash"]), base64.b64decode(v["root"])
    verified = verify_inclusion(leaf, v["leafIdx"], v["treeSize"], _b64_list(v["proof"]), root)
    assert verified is not v["wantErr"]


@pytest.mark.parametrize("case", load("transparency_dev_proofgen.json")["consistency"], ids=lambda c: c["file"])
def test_proofgen_consistency_vectors(case: dict[str, Any]) -> None:
    v = case["vector"]
    r1, r2 = base64.b64decode(v["root1"]), base64.b64decode(v["root2"])
    assert verify_consistency(v["size1"], v["size2"], _b64_list(v["proof"]), r1, r2) is not v["wantErr"]


@pytest.mark.parametrize("n", [*range(34), 63, 64, 65, 100])
def test_roots_match_the_reference(n: int) -> None:
    data = data_for(n)
    leaves = [leaf_hash(d) for d in data]
    expected = ref_mth(data)
    assert root_hash(leaves) == expected
    assert root_hash(iter(leaves)) == expected
    assert MerkleTree(leaves).root() == expected
    grown = MerkleTree()
    for leaf in leaves:
        grown.append(leaf)
    assert grown.root() == expected
    assert grown.size == n


@pytest.mark.parametrize("n", range(1, 22))
def test_inclusion_proofs_match_the_reference_and_resist_corruption(n: int) -> None:
    data = data_for(n)
    leaves = [leaf_hash(d) for d in data]
    tree = MerkleTree(leaves)
    root = tree.root()
    for index in range(n):
        proof = tree.inclusion_proof(index)
        assert proof == ref_path(index, data)
        assert proof == inclusion_proof(leaves, index)
        assert verify_inclusion(leaves[index], index, n, proof, root)
        for probe in probes_inclusion(index, n, proof, root, leaves[index]):
            assert not verify_inclusion(*probe[4:], *probe[:4]), probe[:2]


@pytest.mark.parametrize("second", range(1, 22))
def test_consistency_proofs_match_the_reference_and_resist_corruption(second: int) -> None:
    data = data_for(second)
    leaves = [leaf_hash(d) for d in data]
    tree = MerkleTree(leaves)
    for first in range(1, second + 1):
        proof = tree.consistency_proof(first, second)
        assert proof == ref_proof(first, data)
        assert proof == consistency_proof(leaves, first, second)
        r1, r2 = tree.root(first), tree.root(second)
        assert verify_consistency(first, second, proof, r1, r2)
        if first == second:
            continue
        for probe in probes_consistency(first, second, proof, r1, r2):
            assert not verify_consistency(*probe), probe[:2]


def test_older_tree_proofs_from_a_larger_tree() -> None:
    leaves = [leaf_hash(d) for d in data_for(50)]
    tree = MerkleTree(leaves)
    older = MerkleTree(leaves[:37])
    for index in range(37):
        assert tree.inclusion_proof(index, 37) == older.inclusion_proof(index)
    assert tree.consistency_proof(13, 37) == older.consistency_proof(13)


def test_inner_node_cannot_pass_as_a_leaf() -> None:
    """Second-preimage attack: present an inner node as a leaf with a proof that stops short of the root."""
    leaves = [leaf_hash(d) for d in data_for(8)]
    tree = MerkleTree(leaves)
    left_half = tree.root(4)
    right_half = root_hash(leaves[4:])
    assert node_hash(left_half, right_half) == tree.root()
    assert not verify_inclusion(left_half, 0, 8, [right_half], tree.root())
    # The same nodes do make a 2-leaf tree: the size must come from the signed checkpoint, never from the prover.
    assert verify_inclusion(left_half, 0, 2, [right_half], tree.root())


def test_proof_that_does_not_consume_the_tree_size_fails() -> None:
    leaves = [leaf_hash(d) for d in data_for(8)]
    tree = MerkleTree(leaves)
    proof4 = tree.inclusion_proof(1, 4)
    for size in range(5, 9):  # the 4-leaf subtree's root is not the root of a larger tree
        assert not verify_inclusion(leaves[1], 1, size, proof4, tree.root(4))
    assert not verify_consistency(4, 8, [], tree.root(4), tree.root(4))


@pytest.mark.parametrize("size", [*range(1, 40), 64, 100, 2**20 - 1, 2**20, 10_000_000, 2**63 - 1])
def test_inclusion_verifier_accepts_exactly_what_the_rfc_walk_accepts(size: int) -> None:
    """Proofs a node too short or too long, or for index == size, fail even with the root they lead to."""
    rng = random.Random(size)
    indices = range(size + 1) if size < 100 else {0, size - 1, size, *(rng.randrange(size) for _ in range(20))}
    for index in indices:
        leaf = rng.randbytes(32)
        needed = rfc_path_length(index, size)
        for length in range(max(0, needed - 2), needed + 3):
            proof = [rng.randbytes(32) for _ in range(length)]
            led_to = rfc_walk(leaf, index, size, proof, strict=False)
            assert led_to is not None
            valid = rfc_walk(leaf, index, size, proof) is not None
            assert valid is (index < size and length == needed), (index, length)
            assert verify_inclusion(leaf, index, size, proof, led_to) is valid, (index, length)
            assert verify_inclusion(leaf, index, size, tuple(proof), led_to) is valid, (index, length)
            if valid:
                assert not verify_inclusion(leaf, index, size, proof, bytes([led_to[0] ^ 1]) + led_to[1:])


def test_inclusion_proof_hashes_exactly_the_nodes_it_counts() -> None:
    """A sequence whose length and contents disagree cannot make an inner node pass for a leaf."""

    class OverstatedLength(list[bytes]):
        def __len__(self) -> int:
            return super().__len__() + 2

    leaves = [leaf_hash(d) for d in data_for(8)]
    tree = MerkleTree(leaves)
    left_half, right_half = tree.root(4), root_hash(leaves[4:])
    assert not verify_inclusion(left_half, 0, 8, OverstatedLength([right_half]), tree.root())


def test_inclusion_refuses_hashes_that_are_not_exactly_bytes() -> None:
    """Right values in the wrong type fail: a bytes subclass could rewrite the concatenation it is hashed in."""

    class Rebound(bytes):
        pass

    leaves = [leaf_hash(d) for d in data_for(5)]
    tree = MerkleTree(leaves)
    root, proof = tree.root(), tree.inclusion_proof(2)
    assert verify_inclusion(leaves[2], 2, 5, proof, root)
    for retype in (bytearray, memoryview, Rebound):
        for i in range(len(proof)):
            assert not verify_inclusion(leaves[2], 2, 5, [*proof[:i], retype(proof[i]), *proof[i + 1 :]], root)
        assert not verify_inclusion(retype(leaves[2]), 2, 5, proof, root)
        assert not verify_inclusion(leaves[2], 2, 5, proof, retype(root))


Verifier = Callable[..., bool]
GOOD = hashlib.sha256(b"x").digest()


@pytest.mark.parametrize(
    "args",
    [
        (GOOD, 0, 0, [], GOOD),
        (GOOD, 1, 1, [], GOOD),
        (GOOD, -1, 1, [], GOOD),
        (GOOD, 0, -1, [], GOOD),
        (GOOD, True, 2, [GOOD], GOOD),
        (GOOD, 0, 2**64, [GOOD], GOOD),
        (GOOD, 0, 2, [GOOD[:31]], GOOD),
        (GOOD, 0, 2, [GOOD + b"\0"], GOOD),
        (GOOD, 0, 2, ["a" * 32], GOOD),
        (GOOD, 0, 2, [None], GOOD),
        (GOOD, 0, 2, GOOD, GOOD),
        (GOOD, 0, 2, [bytearray(GOOD)], GOOD),
        (GOOD, 0, 2**62, [GOOD] * 65, GOOD),
        (GOOD[:31], 0, 1, [], GOOD[:31]),
        ("x" * 32, 0, 1, [], "x" * 32),
        (GOOD, 0, 1, [], None),
    ],
)
def test_malformed_inclusion_input_fails_closed(args: tuple[Any, ...]) -> None:
    assert verify_inclusion(*args) is False


def test_single_leaf_tree() -> None:
    assert verify_inclusion(GOOD, 0, 1, [], GOOD)
    assert not verify_inclusion(GOOD, 0, 1, [GOOD], GOOD)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((0, 0, [], EMPTY_ROOT, EMPTY_ROOT), True),
        ((0, 5, [], EMPTY_ROOT, GOOD), True),
        ((0, 0, [], GOOD, GOOD), False),  # the empty tree has one root
        ((0, 5, [], GOOD, GOOD), False),
        ((0, 5, [GOOD], EMPTY_ROOT, GOOD), False),
        ((3, 3, [], GOOD, GOOD), True),
        ((3, 3, [GOOD], GOOD, GOOD), False),  # equal sizes with a non-empty proof
        ((3, 3, [], GOOD, EMPTY_ROOT), False),
        ((4, 3, [], GOOD, GOOD), False),
        ((1, 2, [], GOOD, GOOD), False),
        ((-1, 2, [GOOD], GOOD, GOOD), False),
        ((1, 2, [GOOD[:5]], GOOD, GOOD), False),
        ((1, 2, "ab", GOOD, GOOD), False),
        ((1, 2, [GOOD], GOOD[:5], GOOD), False),
        ((True, 2, [GOOD], GOOD, GOOD), False),
    ],
)
def test_consistency_edge_cases(args: tuple[Any, ...], expected: bool) -> None:
    assert verify_consistency(*args) is expected


def test_generation_refuses_out_of_range() -> None:
    tree = MerkleTree([GOOD] * 5)
    for call in (
        lambda: tree.inclusion_proof(5),
        lambda: tree.inclusion_proof(-1),
        lambda: tree.inclusion_proof(0, 6),
        lambda: tree.inclusion_proof(0, 0),
        lambda: tree.consistency_proof(6),
        lambda: tree.consistency_proof(3, 2),
        lambda: tree.root(6),
        lambda: MerkleTree([b"short"]),
        lambda: root_hash([b"short"]),
        lambda: tree.append(b"short"),
    ):
        with pytest.raises(ValueError):
            call()
    assert tree.consistency_proof(0) == []
    assert tree.consistency_proof(5) == []
    assert tree.root(0) == EMPTY_ROOT
