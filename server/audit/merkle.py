"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing with SHA-256: roots, inclusion and consistency proofs.

Leaf i of the audit tree is the event with sequence number i + 1, and its data is the event's canonical bytes.

- ``leaf_hash(d) = SHA-256(0x00 || d)``, ``node_hash(l, r) = SHA-256(0x01 || l || r)`` (RFC 9162 2.1.1), the
  prefixes keeping a leaf from ever passing for an inner node.
- The root of n leaves (MTH) splits at the largest power of two below n; the empty tree's root is SHA-256("").
- Proof generation follows 2.1.3.1 (PATH) and 2.1.4.1 (PROOF/SUBPROOF); consistency verification follows
  2.1.4.2 literally, inclusion verification computes 2.1.3.2's walk from the proof's shape worked out up front
  (the tests hold it to a literal transcription). Both fail closed: any malformed input, any proof node too many
  or too few, a proof that does not climb the whole tree, or a size out of range is a failure, never an
  exception or a pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Final

HASH_SIZE: Final = 32
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
MAX_TREE_SIZE: Final = 2**63 - 1  # far beyond any trail; keeps proof lengths bounded (<= 64 nodes)
_LEAF: Final = b"\x00"
_NODE: Final = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """Hash leaf data: ``SHA-256(0x00 || data)``.

    Args:
        data: The leaf data (an event's canonical bytes).

    Returns:
        The 32-byte leaf hash.
    """
    return hashlib.sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash two child nodes: ``SHA-256(0x01 || left || right)``.

    Args:
        left: The left child's 32-byte hash.
        right: The right child's 32-byte hash.

    Returns:
        The 32-byte parent hash.
    """
    return hashlib.sha256(_NODE + left + right).digest()


def root_hash(leaf_hashes: Iterable[bytes]) -> bytes:
    """Compute the Merkle tree hash (MTH) of a stream of leaf hashes, in O(n) hashes and O(log n) memory.

    Args:
        leaf_hashes: The leaf hashes in leaf order; any iterable (a generator over a DB cursor is fine).

    Returns:
        The 32-byte root; :data:`EMPTY_ROOT` for no leaves.

    Raises:
        ValueError: If a leaf hash is not 32 bytes.
    """
    compact = CompactRange()
    compact.extend(leaf_hashes)
    return compact.root()


class CompactRange:
    """The compact range ``[0, size)`` of the tree: the roots of its largest complete subtrees, and nothing else.

    A tree of ``size`` leaves splits into one complete subtree per set bit of ``size`` (largest first, left to
    right): those few hashes (at most 64) are all that is needed to compute the root of this tree and, with the
    later leaves, of every larger tree and every proof about the later leaves. So the trail's Merkle state after
    an archive (whose leaves have left the database) and after a checkpoint (so the next one only hashes the new
    leaves) is one :class:`CompactRange`.
    """

    __slots__ = ("_by_height", "_size")

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        """A compact range from stored state.

        Args:
            size: The number of leaves it covers.
            nodes: The subtree roots, largest first: one per set bit of ``size``.

        Raises:
            ValueError: If ``size`` is out of range, or the nodes do not match its set bits or are not 32 bytes.
        """
        if type(size) is not int or not 0 <= size <= MAX_TREE_SIZE:
            raise ValueError(f"compact range size {size!r} out of range")
        heights = [height for height in range(size.bit_length() - 1, -1, -1) if size >> height & 1]
        if len(nodes) != len(heights) or any(len(node) != HASH_SIZE for node in nodes):
            raise ValueError(f"a compact range of size {size} has {len(heights)} nodes of 32 bytes")
        self._size = size
        self._by_height: dict[int, bytes] = {height: bytes(node) for height, node in zip(heights, nodes, strict=True)}

    @classmethod
    def from_bytes(cls, size: int, packed: bytes) -> CompactRange:
        """A compact range from :meth:`to_bytes` output (nodes concatenated, largest first)."""
        if len(packed) % HASH_SIZE:
            raise ValueError("packed compact range is not a whole number of hashes")
        return cls(size, [packed[i : i + HASH_SIZE] for i in range(0, len(packed), HASH_SIZE)])

    @property
    def size(self) -> int:
        """The number of leaves covered."""
        return self._size

    @property
    def nodes(self) -> list[bytes]:
        """The subtree roots, largest (leftmost) first."""
        return [self._by_height[height] for height in sorted(self._by_height, reverse=True)]

    def by_height(self) -> dict[int, bytes]:
        """The subtree roots keyed by height (the root of ``2**h`` leaves is at ``h``)."""
        return dict(self._by_height)

    def to_bytes(self) -> bytes:
        """The nodes concatenated, largest first (the stored form; the size is stored beside it)."""
        return b"".join(self.nodes)

    def copy(self) -> CompactRange:
        """An independent copy."""
        return CompactRange(self._size, self.nodes)

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append leaves, hashing level by level like binary addition: n new leaves cost about n hashes.

        Args:
            leaf_hashes: The new leaves' hashes, in order.

        Raises:
            ValueError: If a leaf hash is not 32 bytes.
        """
        level = bytearray()
        for value in leaf_hashes:
            if len(value) != HASH_SIZE:
                raise ValueError("leaf hashes must be 32 bytes")
            level += value
        if not level:
            return
        if self._size + len(level) // HASH_SIZE > MAX_TREE_SIZE:
            raise ValueError("compact range would exceed the maximum tree size")
        position = self._size  # index, at the current height, of the first node of ``level``
        self._size += len(level) // HASH_SIZE
        sha256 = hashlib.sha256
        by_height = self._by_height
        height = 0
        while level:
            if position & 1:  # the first new node's left sibling is the stored subtree root at this height
                level[0:0] = by_height.pop(height)
                position -= 1
            if len(level) // HASH_SIZE & 1:  # an unpaired last node is a complete subtree of the new size
                by_height[height] = bytes(level[-HASH_SIZE:])
                del level[-HASH_SIZE:]
            level = bytearray().join(
                sha256(_NODE + level[i : i + 2 * HASH_SIZE]).digest() for i in range(0, len(level), 2 * HASH_SIZE)
            )
            position >>= 1
            height += 1

    def append(self, value: bytes) -> None:
        """Append one leaf hash."""
        self.extend((value,))

    def root(self) -> bytes:
        """The root of the tree of :attr:`size` leaves (:data:`EMPTY_ROOT` when empty)."""
        nodes = self.nodes
        if not nodes:
            return EMPTY_ROOT
        node = nodes.pop()
        while nodes:
            node = node_hash(nodes.pop(), node)
        return node

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CompactRange) and (self._size, self._by_height) == (other._size, other._by_height)

    def __hash__(self) -> int:
        return hash((self._size, self.to_bytes()))

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()[:16]}...)"


class MerkleTree:
    """Every complete subtree hash of a tree of leaf hashes, for O(log^2 n) proofs at any size up to its own.

    Level ``h`` holds the roots of the complete subtrees of ``2**h`` leaves, packed 32 bytes each, so a tree
    of n leaves takes about 64 * n bytes (64 MB for a million events). Building it costs n - 1 hashes.

    A tree may start after a pruned prefix (archived events): given the :class:`CompactRange` of the first
    ``prefix.size`` leaves, it holds those few subtree roots instead of the leaves. Every root of a size at least
    ``prefix.size``, every inclusion proof of a later leaf and every consistency proof from a size at least
    ``prefix.size`` needs only those roots and the later leaves (each node such a proof uses either lies after
    the prefix, straddles its end and is computed from them, or is one of them), so all of these work as before;
    asking for anything inside the prefix raises :class:`PrunedError`.
    """

    __slots__ = ("_levels", "_start")

    def __init__(self, leaf_hashes: Iterable[bytes] = (), *, prefix: CompactRange | None = None) -> None:
        """Build the tree.

        Args:
            leaf_hashes: The leaf hashes in leaf order (after the prefix, if one is given).
            prefix: The compact range of the pruned first leaves; none by default.

        Raises:
            ValueError: If a leaf hash is not 32 bytes.
        """
        start = prefix.size if prefix is not None else 0
        self._start = start
        stored = prefix.by_height() if prefix is not None else {}
        # Level h starts at node index (start >> h) & ~1: its first node is the prefix's subtree root of height h
        # when bit h of start is set (that root is the left sibling of the first node after the prefix).
        base = bytearray(stored.get(0, b""))
        for value in leaf_hashes:
            if len(value) != HASH_SIZE:
                raise ValueError("leaf hashes must be 32 bytes")
            base += value
        self._levels: list[bytearray] = [base]
        sha256 = hashlib.sha256
        level = base
        height = 0
        while len(level) >= 2 * HASH_SIZE or start >> (height + 1):
            pairs = len(level) // (2 * HASH_SIZE) * 2 * HASH_SIZE
            # A pair of adjacent 32-byte children is already the 64-byte "left || right" the parent hashes.
            parent = bytearray(stored.get(height + 1, b"")) + bytearray().join(
                sha256(_NODE + level[i : i + 2 * HASH_SIZE]).digest() for i in range(0, pairs, 2 * HASH_SIZE)
            )
            self._levels.append(parent)
            level = parent
            height += 1

    @property
    def size(self) -> int:
        """The number of leaves, the pruned prefix included."""
        return (self._start & ~1) + len(self._levels[0]) // HASH_SIZE

    @property
    def start(self) -> int:
        """The number of pruned leaves (0 for a whole tree): the first leaf this tree holds."""
        return self._start

    def _base(self, height: int) -> int:
        return (self._start >> height) & ~1

    def append(self, value: bytes) -> None:
        """Add one leaf hash at the end, updating the complete subtrees it finishes (O(log n) hashes).

        Args:
            value: The new leaf's 32-byte hash.

        Raises:
            ValueError: If ``value`` is not 32 bytes.
        """
        if len(value) != HASH_SIZE:
            raise ValueError("leaf hashes must be 32 bytes")
        levels = self._levels
        levels[0] += value
        index = self.size - 1
        height = 0
        while index & 1:
            level = levels[height]
            slot = index - self._base(height)
            node = hashlib.sha256(_NODE + level[(slot - 1) * HASH_SIZE : (slot + 1) * HASH_SIZE]).digest()
            height += 1
            if height == len(levels):
                levels.append(bytearray())
            levels[height] += node
            index >>= 1

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        if not self._start <= index < self.size:
            raise IndexError("leaf index out of range" if index >= self._start else f"leaf {index} was pruned")
        slot = index - self._base(0)
        return bytes(self._levels[0][slot * HASH_SIZE : (slot + 1) * HASH_SIZE])

    def root(self, tree_size: int | None = None) -> bytes:
        """The root of the first ``tree_size`` leaves (all by default).

        Args:
            tree_size: 0 <= tree_size <= size, and not inside a pruned prefix.

        Returns:
            The 32-byte MTH.

        Raises:
            ValueError: If ``tree_size`` is out of range (:class:`PrunedError` if inside the pruned prefix).
        """
        size = self.size if tree_size is None else tree_size
        self._check_size(size)
        return self._subtree(0, size) if size else EMPTY_ROOT

    def compact_range(self, tree_size: int | None = None) -> CompactRange:
        """The compact range of the first ``tree_size`` leaves (all by default), e.g. to store as Merkle state.

        Raises:
            ValueError: If ``tree_size`` is out of range (:class:`PrunedError` if inside the pruned prefix).
        """
        size = self.size if tree_size is None else tree_size
        self._check_size(size)
        nodes: list[bytes] = []
        position = 0
        for height in range(size.bit_length() - 1, -1, -1):
            if size >> height & 1:
                nodes.append(self._node(height, position))
                position += 1 << height
        return CompactRange(size, nodes)

    def inclusion_proof(self, index: int, tree_size: int | None = None) -> list[bytes]:
        """The audit path (RFC 9162 2.1.3.1 PATH) for leaf ``index`` in the tree of the first ``tree_size`` leaves.

        Args:
            index: The leaf index, start <= index < tree_size.
            tree_size: The tree size the proof is for (all leaves by default), <= size.

        Returns:
            The proof nodes, from the leaf's sibling up to the root's child.

        Raises:
            ValueError: If ``index`` or ``tree_size`` is out of range (:class:`PrunedError` for a pruned leaf).
        """
        size = self.size if tree_size is None else tree_size
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} is not in a tree of size {size}")
        if index < self._start:
            raise PrunedError(f"leaf {index} is in the pruned prefix of {self._start} leaves")
        siblings: list[bytes] = []
        start, width, offset = 0, size, index
        while width > 1:
            split = _split(width)
            if offset < split:
                siblings.append(self._subtree(start + split, width - split))
                width = split
            else:
                siblings.append(self._subtree(start, split))
                start, width, offset = start + split, width - split, offset - split
        siblings.reverse()
        return siblings

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """The consistency proof (RFC 9162 2.1.4.1 PROOF) from the tree of ``first`` leaves to that of ``second``.

        Args:
            first: The older tree size, 0 <= first <= second, and not inside a pruned prefix.
            second: The newer tree size (all leaves by default), <= size.

        Returns:
            The proof nodes; empty when ``first`` is 0 or equals ``second``.

        Raises:
            ValueError: If the sizes are out of range or out of order (:class:`PrunedError` inside the prefix).
        """
        size = self.size if second is None else second
        self._check_size(size)
        if not 0 <= first <= size:
            raise ValueError(f"cannot prove size {first} consistent with size {size}")
        if first in (0, size):
            return []
        self._check_size(first)
        tail: list[bytes] = []
        start, width, target, complete = 0, size, first, True
        while target != width:
            split = _split(width)
            if target <= split:
                tail.append(self._subtree(start + split, width - split))
                width = split
            else:
                tail.append(self._subtree(start, split))
                start, width, target, complete = start + split, width - split, target - split, False
        head = [] if complete else [self._subtree(start, width)]
        tail.reverse()
        return head + tail

    def _check_size(self, tree_size: int) -> None:
        if not 0 <= tree_size <= self.size:
            raise ValueError(f"tree size {tree_size} is not in 0..{self.size}")
        if 0 < tree_size < self._start:
            raise PrunedError(f"tree size {tree_size} is inside the pruned prefix of {self._start} leaves")

    def _node(self, height: int, position: int) -> bytes:
        """The root of the complete subtree of ``2**height`` leaves starting at leaf ``position`` (aligned)."""
        slot = (position >> height) - self._base(height)
        level = self._levels[height] if height < len(self._levels) else b""
        if slot < 0 or (slot + 1) * HASH_SIZE > len(level):
            raise PrunedError(f"the subtree of {1 << height} leaves at {position} is not held (pruned)")
        return bytes(level[slot * HASH_SIZE : (slot + 1) * HASH_SIZE])

    def _subtree(self, start: int, width: int) -> bytes:
        """MTH of leaves [start, start + width); start is aligned as every range in RFC 9162's recursion is."""
        parts: list[bytes] = []
        position = start
        for height in range(width.bit_length() - 1, -1, -1):
            if width >> height & 1:
                parts.append(self._node(height, position))
                position += 1 << height
        node = parts.pop()
        while parts:
            node = node_hash(parts.pop(), node)
        return node


class PrunedError(ValueError):
    """A root, proof or leaf that needs hashes of a pruned (archived) prefix the tree no longer holds."""


def _split(width: int) -> int:
    """The largest power of two strictly below ``width`` (``width`` > 1)."""
    return 1 << ((width - 1).bit_length() - 1)


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, tree_size: int | None = None) -> list[bytes]:
    """The inclusion proof for one leaf, from the full list of leaf hashes (builds a :class:`MerkleTree`).

    For many proofs over the same leaves, build one :class:`MerkleTree` and ask it instead.

    Args:
        leaf_hashes: All leaf hashes (at least ``tree_size``).
        index: The leaf index.
        tree_size: The tree size the proof is for; ``len(leaf_hashes)`` by default.

    Returns:
        The proof nodes.

    Raises:
        ValueError: If ``index`` or ``tree_size`` is out of range.
    """
    size = len(leaf_hashes) if tree_size is None else tree_size
    if not 0 <= size <= len(leaf_hashes):
        raise ValueError(f"tree size {size} is not in 0..{len(leaf_hashes)}")
    return MerkleTree(leaf_hashes[:size]).inclusion_proof(index)


def consistency_proof(leaf_hashes: Sequence[bytes], first: int, second: int | None = None) -> list[bytes]:
    """The consistency proof between two sizes, from the full list of leaf hashes (builds a :class:`MerkleTree`).

    Args:
        leaf_hashes: All leaf hashes (at least ``second``).
        first: The older tree size.
        second: The newer tree size; ``len(leaf_hashes)`` by default.

    Returns:
        The proof nodes.

    Raises:
        ValueError: If the sizes are out of range or out of order.
    """
    size = len(leaf_hashes) if second is None else second
    if not 0 <= size <= len(leaf_hashes):
        raise ValueError(f"tree size {size} is not in 0..{len(leaf_hashes)}")
    return MerkleTree(leaf_hashes[:size]).consistency_proof(first)


def _valid_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _valid_size(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_TREE_SIZE


def _valid_path(proof: object) -> bool:
    return isinstance(proof, list | tuple) and len(proof) <= 64 and all(_valid_hash(node) for node in proof)


def verify_inclusion(leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Verify an inclusion proof (RFC 9162 2.1.3.2). Never raises; anything malformed is False.

    Args:
        leaf: The leaf hash (not the leaf data).
        index: The leaf index the proof claims.
        tree_size: The size of the tree whose root is ``root``.
        proof: The proof nodes, bottom-up.
        root: The trusted root (from a verified checkpoint).

    Returns:
        True only if the proof has exactly the nodes a leaf at ``index`` in a tree of ``tree_size`` needs and
        they lead from ``leaf`` to ``root``.
    """
    if not (type(index) is int and type(tree_size) is int and 0 <= index < tree_size <= MAX_TREE_SIZE):
        return False
    if not (type(leaf) is bytes and len(leaf) == HASH_SIZE and type(root) is bytes and len(root) == HASH_SIZE):
        return False
    if not isinstance(proof, (list, tuple)):
        return False
    # The RFC's walk, with fn = index and sn = tree_size - 1 shifted right together, takes its shape from two
    # numbers. Below level ``inner`` (the highest bit where fn and sn differ) the leaf's path and the tree's right
    # edge are apart: one node per level, a left sibling where fn is odd. From there on fn == sn, so the path runs
    # along the right edge: one node, always a left sibling, per set bit of fn; its levels without a sibling are
    # the ones the RFC skips. So the proof has exactly inner + popcount(index >> inner) nodes; sn reaching 0 too
    # early (a node too many) or not at all (a node too few) is this count being wrong.
    inner = (index ^ (tree_size - 1)).bit_length()
    border = len(proof) - inner
    if border != (index >> inner).bit_count():
        return False
    # Bit i set: node i is a left sibling. The bit above the last node is a sentinel: it must be all that is
    # left at the end, so exactly len(proof) nodes were hashed even if the sequence changed under us.
    left = index & ((1 << inner) - 1) | ((2 << border) - 1) << inner
    sha256 = hashlib.sha256
    node = leaf
    # Node checks sit inside the loop rather than in a pre-pass: this path runs for every event of an export.
    for sibling in proof:
        if sibling.__class__ is not bytes or len(sibling) != HASH_SIZE:
            return False
        node = sha256(_NODE + sibling + node if left & 1 else _NODE + node + sibling).digest()
        left >>= 1
    return left == 1 and node == root


def verify_consistency(first: int, second: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes) -> bool:
    """Verify a consistency proof (RFC 9162 2.1.4.2). Never raises; anything malformed is False.

    Beyond the RFC's algorithm (which assumes 0 < first < second): ``first == second`` holds only with an
    empty proof and equal roots; ``first == 0`` only with an empty proof and ``first_root`` the empty root.

    Args:
        first: The older tree size.
        second: The newer tree size.
        proof: The proof nodes.
        first_root: The trusted root of the older tree.
        second_root: The trusted root of the newer tree.

    Returns:
        True only if the older tree is a prefix of the newer one as the proof shows.
    """
    if not (_valid_size(first) and _valid_size(second) and first <= second):
        return False
    if not (_valid_hash(first_root) and _valid_hash(second_root) and _valid_path(proof)):
        return False
    if first == second:
        return len(proof) == 0 and first_root == second_root and (first > 0 or first_root == EMPTY_ROOT)
    if first == 0:
        return len(proof) == 0 and first_root == EMPTY_ROOT
    if len(proof) == 0:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # first is a power of two: its root is itself a node of the newer tree
        path.insert(0, first_root)
    sha256 = hashlib.sha256
    fn = first - 1
    sn = second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = sha256(_NODE + node + fr).digest()
            sr = sha256(_NODE + node + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = sha256(_NODE + sr + node).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root
