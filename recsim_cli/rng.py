"""Seeded randomness: one ``numpy.random.Generator`` per stage, derived from one seed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def spawn_generators(seed: int, names: Sequence[str]) -> dict[str, np.random.Generator]:
    """Derive one independent generator per named stage from ``seed``.

    The derivation uses ``SeedSequence.spawn`` in the order of ``names``, so a
    stage's stream never depends on how many numbers another stage drew. Adding
    a stage at the end of ``names`` leaves the earlier streams unchanged.
    """
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children, strict=True)}
