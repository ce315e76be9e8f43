"""The Merkle tree of RFC 9162 §2.1 over the global log, computed from stored
perfect subtrees so that neither appending nor proving re-hashes the log.

A *perfect subtree* ``(level, index)`` covers leaves
``[index * 2**level, (index + 1) * 2**level)``; level 0 holds the leaf hashes.
Every range the RFC's recursion asks for is a run of such subtrees, so a proof
at any tree size needs O(log² n) stored hashes at most, fetched at once: the
functions here first say which nodes they need (`*_nodes`), then compute from a
mapping of them. Pure: the store decides where the nodes live.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

Node = tuple[int, int]
"""A perfect subtree: (level, index)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data): the domain separation that stops a leaf posing as a node."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1): where the RFC splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(start: int, end: int) -> list[Node]:
    """The perfect subtrees that make up leaves [start, end), left to right, for a
    range the RFC's recursion produces (start aligned to a power of two at least
    as large as the range)."""
    nodes: list[Node] = []
    while start < end:
        size = end - start
        level = size.bit_length() - 1
        if start & ((1 << level) - 1):  # not aligned: take the largest aligned piece
            level = (start & -start).bit_length() - 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def range_hash(start: int, end: int, nodes: Mapping[Node, bytes]) -> bytes:
    """MTH(D[start:end]) from stored perfect subtrees: the run of subtrees folded
    from the right, which is the shape RFC 9162's split gives."""
    if start == end:
        return EMPTY_ROOT
    parts = [nodes[node] for node in range_nodes(start, end)]
    acc = parts[-1]
    for part in reversed(parts[:-1]):
        acc = node_hash(part, acc)
    return acc


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1 as the leaf ranges whose hashes it lists,
    leaf first."""
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def _consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1 as leaf ranges, in proof order."""
    ranges: list[tuple[int, int]] = []
    start, end, m, complete = 0, second, first, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                ranges.append((start, end))
            break
        k = _split(n)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, m, complete = start + k, m - k, False
    ranges.reverse()
    return ranges


def _check_inclusion(index: int, size: int) -> None:
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")


def _check_consistency(first: int, second: int) -> None:
    if not 0 < first <= second:
        raise ValueError(f"no consistency proof from size {first} to size {second}")


def _needed(ranges: Iterable[tuple[int, int]]) -> set[Node]:
    return {node for start, end in ranges for node in range_nodes(start, end)}


def root_nodes(size: int) -> set[Node]:
    return _needed([(0, size)]) if size else set()


def inclusion_nodes(index: int, size: int) -> set[Node]:
    _check_inclusion(index, size)
    return _needed(_inclusion_ranges(index, size)) | {(0, index)}


def consistency_nodes(first: int, second: int) -> set[Node]:
    _check_consistency(first, second)
    return _needed(_consistency_ranges(first, second))


def root(size: int, nodes: Mapping[Node, bytes]) -> bytes:
    return range_hash(0, size, nodes)


def inclusion_proof(index: int, size: int, nodes: Mapping[Node, bytes]) -> list[bytes]:
    _check_inclusion(index, size)
    return [range_hash(s, e, nodes) for s, e in _inclusion_ranges(index, size)]


def consistency_proof(first: int, second: int, nodes: Mapping[Node, bytes]) -> list[bytes]:
    _check_consistency(first, second)
    return [range_hash(s, e, nodes) for s, e in _consistency_ranges(first, second)]


def completed_nodes(
    size: int, leaves: Sequence[bytes], known: Mapping[Node, bytes]
) -> dict[Node, bytes]:
    """The perfect subtrees completed by appending leaf hashes ``leaves`` to a tree
    of ``size`` leaves (level 0 included). ``known`` must hold the left siblings
    they need: the tree's right frontier, ``frontier_nodes(size)``."""
    made: dict[Node, bytes] = {}
    lookup = dict(known)
    for offset, leaf in enumerate(leaves):
        index = size + offset
        node, value = (0, index), leaf
        made[node] = lookup[node] = value
        while node[1] & 1:  # a right child completes its parent
            level, i = node
            value = node_hash(lookup[(level, i - 1)], value)
            node = (level + 1, i >> 1)
            made[node] = lookup[node] = value
    return made


def frontier_nodes(size: int) -> set[Node]:
    """The perfect subtrees of a tree of ``size`` that later appends still need:
    one per set bit of size."""
    return set(range_nodes(0, size))


# --- verification (RFC 9162 §2.1.3.2 and §2.1.4.2), for anyone holding only a root ----------


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    if first == second:
        return not proof and first_root == second_root
    if not 0 < first < second or not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first tree is a subtree of the second
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0
