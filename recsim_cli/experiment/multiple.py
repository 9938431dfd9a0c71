"""Adjust p-values for testing several primary metrics at once.

* ``holm`` (default; Holm, "A Simple Sequentially Rejective Multiple Test
  Procedure", Scand. J. Statist. 1979) controls the family-wise error rate:
  with the m p-values sorted ascending, ``p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``.
* ``bh`` (Benjamini and Hochberg, "Controlling the False Discovery Rate",
  JRSS B 1995) controls the false discovery rate:
  ``p~_(i) = min_{j >= i} min(1, m p_(j) / j)``.
* ``none``: the raw p-values.

A hypothesis is rejected when its adjusted p-value is ``<= alpha``; these match
``statsmodels.stats.multitest.multipletests`` (methods ``holm``, ``fdr_bh``).
Only primary metrics form the family; guardrails are one-sided
non-inferiority checks, not discoveries, and are not adjusted. A NaN p-value
(an undefined test) is treated as 1 so it can never make another metric
significant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import numpy.typing as npt

from recsim_cli.errors import UnknownNameError
from recsim_cli.experiment.ratio import FloatArray, as_float

Correction = Literal["holm", "bh", "none"]
CORRECTION_NAMES: tuple[Correction, ...] = ("holm", "bh", "none")


def holm(p_values: npt.ArrayLike) -> FloatArray:
    """Return Holm's step-down adjusted p-values, in the input order."""
    p = _clean(p_values)
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted


def benjamini_hochberg(p_values: npt.ArrayLike) -> FloatArray:
    """Return Benjamini–Hochberg step-up adjusted p-values, in the input order."""
    p = _clean(p_values)
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, m * p[order] / np.arange(1, m + 1))
    adjusted = np.empty(m)
    adjusted[order] = np.minimum.accumulate(scaled[::-1])[::-1]
    return adjusted


def no_correction(p_values: npt.ArrayLike) -> FloatArray:
    """Return the p-values unchanged (NaN still read as 1)."""
    return _clean(p_values)


CORRECTIONS: dict[str, Callable[[npt.ArrayLike], FloatArray]] = {
    "holm": holm,
    "bh": benjamini_hochberg,
    "none": no_correction,
}


def check_correction(name: str) -> Correction:
    """Return ``name`` as a correction name or raise ``UnknownNameError``."""
    for known in CORRECTION_NAMES:
        if name == known:
            return known
    raise UnknownNameError("correction", name, list(CORRECTIONS))


def adjust(p_values: npt.ArrayLike, method: str = "holm") -> FloatArray:
    """Return the p-values adjusted by the correction called ``method``."""
    return CORRECTIONS[check_correction(method)](p_values)


def _clean(p_values: npt.ArrayLike) -> FloatArray:
    p = as_float(p_values).ravel()
    return np.where(np.isnan(p), 1.0, p)
