"""Rate of RFC 9162 inclusion-proof verification, per tree size, on one core.

Run: ``.venv/bin/python bench/merkle_proof_rate.py [--proofs 5000] [--rounds 20]``. Proofs are generated once
for random leaves of trees of 2**10, 2**20 and 10,000,000 leaves (the proof length, log2 of the size, is what
costs: one SHA-256 per node), then verified in a loop; the best round counts, since the machine may be shared.
The 10M tree is not built: its proofs are synthesised from a random path (same length and shape, verified
against the root they imply). Also reports tree build, streaming root and proof generation rates for 2**20
leaves. Target from the design: at least 50,000 verifications/s.
"""

from __future__ import annotations

import argparse
import random
import time

from server.audit.merkle import MerkleTree, leaf_hash, node_hash, root_hash, verify_inclusion

TARGET = 50_000.0
Case = tuple[bytes, int, int, list[bytes], bytes]


def cases_from_tree(tree: MerkleTree, count: int, rng: random.Random) -> list[Case]:
    """Real proofs for random leaves of a built tree."""
    root, size = tree.root(), tree.size
    picks = [rng.randrange(size) for _ in range(count)]
    return [(tree.leaf(index), index, size, tree.inclusion_proof(index), root) for index in picks]


def synthetic_cases(size: int, count: int, rng: random.Random) -> list[Case]:
    """Proofs of the right shape for a tree too large to build here, each with the root it implies."""
    cases: list[Case] = []
    for _ in range(count):
        index = rng.randrange(size)
        leaf = leaf_hash(rng.randbytes(16))
        proof: list[bytes] = []
        node, fn, sn = leaf, index, size - 1
        while sn:  # the RFC 9162 verification walk, run forwards with random siblings
            sibling = rng.randbytes(32)
            proof.append(sibling)
            if fn & 1 or fn == sn:
                node = node_hash(sibling, node)
                if not fn & 1:
                    while fn and not fn & 1:
                        fn >>= 1
                        sn >>= 1
            else:
                node = node_hash(node, sibling)
            fn >>= 1
            sn >>= 1
        cases.append((leaf, index, size, proof, node))
    return cases


def verify_rate(cases: list[Case], rounds: int) -> float:
    """Best verifications per second over ``rounds`` passes; every proof must verify."""
    best = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        for leaf, index, size, proof, root in cases:
            if not verify_inclusion(leaf, index, size, proof, root):
                raise SystemExit(f"proof for leaf {index} of {size} did not verify")
        best = max(best, len(cases) / (time.perf_counter() - started))
    return best


def main() -> None:
    """Print verification rates per tree size, then build and generation rates."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--proofs", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=20)
    options = parser.parse_args()
    rng = random.Random(9162)

    leaves = [leaf_hash(i.to_bytes(8, "big")) for i in range(2**20)]
    started = time.perf_counter()
    tree = MerkleTree(leaves)
    build = time.perf_counter() - started
    started = time.perf_counter()
    streamed = root_hash(leaves)
    stream = time.perf_counter() - started
    if streamed != tree.root():
        raise SystemExit("streaming root and tree root disagree")
    started = time.perf_counter()
    generated = cases_from_tree(tree, options.proofs, rng)
    generate = options.proofs / (time.perf_counter() - started)

    sizes = {
        "2**10": cases_from_tree(MerkleTree(leaves[: 2**10]), options.proofs, rng),
        "2**20": generated,
        "10,000,000": synthetic_cases(10_000_000, options.proofs, rng),
    }
    print(f"inclusion-proof verification, {options.proofs:,} proofs, best of {options.rounds} rounds")
    for label, cases in sizes.items():
        rate = verify_rate(cases, options.rounds)
        verdict = "meets" if rate >= TARGET else "MISSES"
        print(f"  tree of {label:>10} leaves ({len(cases[0][3])} nodes): {rate:>9,.0f}/s ({verdict} {TARGET:,.0f})")
    print(f"tree of 2**20 leaves: build {build:.2f} s, streaming root {stream:.2f} s, proofs {generate:,.0f}/s")


if __name__ == "__main__":
    main()
