"""Splitting supernets into sub-supernets: the split tree (criteria, partitions, policies live beside it)."""

from lidsplit.split.tree import SplitNode, SplitTree

__all__ = ["SplitNode", "SplitTree"]
