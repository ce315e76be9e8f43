"""The Merkle tree against RFC 9162 §2.1 written out literally, and the RFC's own example."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.verifiable import merkle


def _mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(d[:k]) + _mth(d[k:])).digest()


def _path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*_path(m, d[:k]), _mth(d[k:])]
    return [*_path(m - k, d[k:]), _mth(d[:k])]


def _subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [_mth(d)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*_subproof(m, d[:k], b), _mth(d[k:])]
    return [*_subproof(m - k, d[k:], False), _mth(d[:k])]


def _store(d: list[bytes]) -> dict[merkle.Node, bytes]:
    """Every perfect subtree, built the way the store builds it: append by append."""
    nodes: dict[merkle.Node, bytes] = {}
    for size, data in enumerate(d):
        known = {n: nodes[n] for n in merkle.frontier_nodes(size)}
        nodes.update(merkle.completed_nodes(size, [merkle.leaf_hash(data)], known))
    return nodes


LEAVES = [bytes([i]) * (i % 5) for i in range(70)]
NODES = _store(LEAVES)


@pytest.mark.parametrize("size", range(0, 70))
def test_root_and_every_proof_match_the_rfc_definitions(size: int) -> None:
    d = LEAVES[:size]
    assert merkle.root(size, NODES) == _mth(d)
    assert merkle.root_nodes(size) <= NODES.keys()
    for m in range(size):
        proof = merkle.inclusion_proof(m, size, NODES)
        assert proof == _path(m, d)
        assert merkle.verify_inclusion(m, size, merkle.leaf_hash(d[m]), proof, _mth(d))
    for m in range(1, size + 1):
        proof = merkle.consistency_proof(m, size, NODES)
        assert proof == _subproof(m, d, True)
        assert merkle.verify_consistency(m, size, _mth(d[:m]), _mth(d), proof)


def test_the_rfc_example_tree_of_seven_leaves() -> None:
    d = [f"d{i}".encode() for i in range(7)]
    nodes = _store(d)
    a, b, c, dd, e, f, j = (merkle.leaf_hash(x) for x in d)
    g, h, i = merkle.node_hash(a, b), merkle.node_hash(c, dd), merkle.node_hash(e, f)
    k, ll = merkle.node_hash(g, h), merkle.node_hash(i, j)
    assert merkle.root(7, nodes) == merkle.node_hash(k, ll)
    assert merkle.inclusion_proof(0, 7, nodes) == [b, h, ll]
    assert merkle.inclusion_proof(3, 7, nodes) == [c, g, ll]
    assert merkle.inclusion_proof(4, 7, nodes) == [f, j, k]
    assert merkle.inclusion_proof(6, 7, nodes) == [i, k]
    assert merkle.consistency_proof(3, 7, nodes) == [c, dd, g, ll]
    assert merkle.consistency_proof(4, 7, nodes) == [ll]
    assert merkle.consistency_proof(6, 7, nodes) == [i, j, k]


def test_nodes_named_are_the_nodes_used() -> None:
    for size in range(1, 40):
        for m in range(size):
            wanted = merkle.inclusion_nodes(m, size)
            merkle.inclusion_proof(m, size, {n: NODES[n] for n in wanted})
        for m in range(1, size + 1):
            wanted = merkle.consistency_nodes(m, size)
            merkle.consistency_proof(m, size, {n: NODES[n] for n in wanted})


def test_out_of_range_requests_are_refused() -> None:
    with pytest.raises(ValueError):
        merkle.inclusion_nodes(5, 5)
    with pytest.raises(ValueError):
        merkle.consistency_nodes(0, 5)
    with pytest.raises(ValueError):
        merkle.consistency_nodes(6, 5)


@given(
    size=st.integers(1, 69),
    data=st.data(),
)
def test_a_proof_with_any_change_fails(size: int, data: st.DataObject) -> None:
    d = LEAVES[:size]
    root = _mth(d)
    m = data.draw(st.integers(0, size - 1))
    proof = merkle.inclusion_proof(m, size, NODES)
    leaf = merkle.leaf_hash(d[m])
    other = data.draw(st.integers(0, size - 1).filter(lambda x: x != m)) if size > 1 else None
    if other is not None and merkle.leaf_hash(d[other]) != leaf:
        assert not merkle.verify_inclusion(other, size, leaf, proof, root)
    assert not merkle.verify_inclusion(m, size, leaf, proof, bytes(32))
    assert not merkle.verify_inclusion(size, size, leaf, proof, root)
    if proof:
        j = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[j] = bytes([bad[j][0] ^ 1]) + bad[j][1:]
        assert not merkle.verify_inclusion(m, size, leaf, bad, root)
        assert not merkle.verify_inclusion(m, size, leaf, proof[:-1], root)
    first = data.draw(st.integers(1, size))
    cproof = merkle.consistency_proof(first, size, NODES)
    assert merkle.verify_consistency(first, size, _mth(d[:first]), root, cproof)
    if first < size:
        assert not merkle.verify_consistency(first, size, _mth(d[1 : first + 1]), root, cproof)
        bad = list(cproof)
        bad[-1] = bytes(32)
        assert not merkle.verify_consistency(first, size, _mth(d[:first]), root, bad)
