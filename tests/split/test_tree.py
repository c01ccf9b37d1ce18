"""The split tree: partition of the space, routing, JSON round-trip, rendering, plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lidsplit.split import SplitNode, SplitTree
from lidsplit.spaces import NB201_SPACE as NB201
from lidsplit.supernet import SubSupernet


def two_level_tree() -> SplitTree:
    """Root split 2-way on edge 3; its children split 3-way / 2-way on other edges; one grandchild again."""
    tree = SplitTree(NB201)
    a, b = tree.split(0, 3, [[0, 2], [4, 1, 3]], criterion="lid", seed=7,
                      scores={"similarity": torch.eye(5), "partition_score": np.float32(0.5)})
    tree.split(a, 0, [[0], [1, 2], [3, 4]], criterion="gm", scores={"cut": 0.25})
    c, d = tree.split(b, "2<-1", [["none", "skip_connect"], ["nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]])
    tree.split(d, 3, [[1], [3, 4]], criterion="random", seed=1)
    return tree


def test_exhaustive_routing_partitions_nb201() -> None:
    assert NB201.size == 15625
    tree = two_level_tree()
    leaves = tree.leaves()
    assert len(leaves) == 6 and sum(n.size for n in leaves) == NB201.size
    counts = {n.id: 0 for n in leaves}
    for arch in NB201.all_archs():
        holders = [n.id for n in leaves if n.sub.contains(arch)]
        assert len(holders) == 1  # the leaves partition the space
        leaf = tree.route(arch)
        assert leaf == holders[0] and tree.node(leaf).sub.contains(arch)
        counts[leaf] += 1
    assert all(counts[n.id] == n.size for n in leaves)


def test_split_records_decision() -> None:
    tree = two_level_tree()
    root = tree.root
    assert (root.edge, root.groups, root.criterion, root.seed) == (3, [[0, 2], [1, 3, 4]], "lid", 7)
    assert root.scores["similarity"] == torch.eye(5).tolist()
    assert root.scores["partition_score"] == 0.5
    assert [tree.node(c).sub.enabled(3) for c in root.children] == [(0, 2), (1, 3, 4)]
    assert tree.node(root.children[1]).groups == [[0, 1], [2, 3, 4]]  # names resolved to indices
    assert tree.path(tree.leaf_ids()[-1])[0] == 0 and tree.depth(0) == 0
    assert isinstance(tree[1], SplitNode) and tree[1].parent == 0
    with pytest.raises(ValueError):  # not a partition of the node's ops
        tree.split(tree.leaf_ids()[0], 1, [[0, 1], [2, 3]])
    with pytest.raises(ValueError):  # edge already restricted to {1,3,4} in that subtree
        tree.split(tree.leaf_ids()[-1], 3, [[3], [4], [0]])
    with pytest.raises(ValueError):  # only leaves split
        tree.split(0, 1, [[0], [1, 2, 3, 4]])
    with pytest.raises(TypeError):
        tree.split(tree.leaf_ids()[0], 1, [[0], [1, 2, 3, 4]], scores={"bad": object()})
    with pytest.raises(ValueError):
        tree.route((0, 0, 0, 0, 0))  # 5 entries for 6 edges


def test_route_outside_root() -> None:
    sub = SubSupernet.full(NB201).restrict(0, [1, 2])
    tree = SplitTree(sub)
    tree.split(0, 0, [[1], [2]])
    assert tree.route((2, 0, 0, 0, 0, 0)) == 2
    with pytest.raises(ValueError, match="outside the root"):
        tree.route((0, 0, 0, 0, 0, 0))


def test_json_round_trip(tmp_path: Path) -> None:
    tree = two_level_tree()
    tree.node(4).info["checkpoint"] = "runs/x.pt"
    tree.root.scores["nan"] = float("nan")  # allowed (JSON extension), but compare without it below
    del tree.root.scores["nan"]
    d = tree.to_json()
    assert json.loads(json.dumps(d)) == d  # plain JSON
    back = SplitTree.from_json(json.loads(json.dumps(d)))
    assert back == tree and back.to_json() == d
    assert [n.sub for n in back] == [n.sub for n in tree]
    p = tree.save(tmp_path / "tree.json")
    assert SplitTree.load(p) == tree
    assert [f.name for f in tmp_path.iterdir()] == ["tree.json"]  # no temp file left behind
    # overwrite in place (atomic replace)
    tree.split(tree.leaf_ids()[0], 1, [[0], [1, 2, 3, 4]])
    tree.save(p)
    assert SplitTree.load(p) == tree and SplitTree.load(p) != back


def test_from_json_replays_creation_order() -> None:
    tree = SplitTree(NB201)
    a, b = tree.split(0, 0, [[0, 1], [2, 3, 4]])
    tree.split(b, 1, [[0], [1, 2, 3, 4]])  # the right child is split first
    tree.split(a, 2, [[0, 1, 2], [3, 4]])
    assert SplitTree.from_json(tree.to_json()) == tree


def test_from_json_rejects_inconsistent() -> None:
    d = two_level_tree().to_json()
    bad = json.loads(json.dumps(d))
    bad["nodes"][1]["masks"][3] = [0, 1]
    with pytest.raises(ValueError, match="masks"):
        SplitTree.from_json(bad)
    bad = json.loads(json.dumps(d))
    bad["nodes"][0]["groups"] = [[0, 2], [1, 3]]
    with pytest.raises(ValueError):
        SplitTree.from_json(bad)
    with pytest.raises(ValueError, match="format"):
        SplitTree.from_json({"nodes": []})


def test_render() -> None:
    tree = two_level_tree()
    text = str(tree)
    assert text == tree.render()
    lines = text.splitlines()
    assert len(lines) == 1 + len(tree)
    assert "15625 archs" in lines[1] and "split edge 3 '3<-0' into 2 by lid, seed 7" in lines[1]
    assert any(line.startswith("├── [1] ") and "3<-0={none,nor_conv_1x1}" in line for line in lines)
    assert any(line.startswith("│   └── ") or line.startswith("    └── ") for line in lines)
    leaf = tree.node(tree.leaf_ids()[-1])
    assert any(f"[{leaf.id}] {leaf.size} archs" in line for line in lines)


def test_layout_centres_parents_over_their_children() -> None:
    tree = two_level_tree()
    xs, depth = tree.layout()
    assert [xs[i] for i in tree.leaf_ids()] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    for n in tree.nodes:
        if n.children:
            assert xs[n.id] == pytest.approx(np.mean([xs[c] for c in n.children]))
            assert all(depth[c] == depth[n.id] + 1 for c in n.children)
    assert depth[0] == 0 and set(xs) == set(depth) == {n.id for n in tree.nodes}


def test_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = two_level_tree().plot(tmp_path / "tree.png", title="t")
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"
    assert two_level_tree().plot(tmp_path / "tree.svg").read_text().lstrip().startswith("<?xml")  # format from suffix
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree.png", "tree.svg"]  # no temporary file left


def test_plot_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def fake(name: str, *a, **k):  # type: ignore[no-untyped-def]
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"lidsplit\[plot\]"):
        two_level_tree().plot(tmp_path / "x.png")


def test_load_names_a_damaged_tree_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lidsplit.common.errors import DamagedFileError

    cases = {"cut.json": '{"space": {"edges": [', "wrong.json": '{"nodes": 3}', "zeros.json": "\x00" * 16}
    for name, text in cases.items():
        f = tmp_path / name
        f.write_text(text, encoding="utf-8")
        with pytest.raises(DamagedFileError, match=rf"{name}: this split tree is damaged"):
            SplitTree.load(f)
