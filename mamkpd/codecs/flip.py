"""The flip test's keypoint order, shared by the codecs' ``flip_back``."""

from __future__ import annotations

from collections.abc import Sequence


def flip_order(num_keypoints: int, flip_pairs: Sequence[tuple[int, int]]) -> list[int]:
    """Index of each keypoint's mirror image: the left/right pairs swapped, the others in place."""
    order = list(range(num_keypoints))
    for i, j in flip_pairs:
        order[i], order[j] = j, i
    return order
