"""The session model's LightGBM boosters: what each is, training, prediction, hold-out losses.

`fit_session_model` (in `session_model`) trains the click, watch and continue
boosters with `train_booster` from the specs `CLICK_MODEL`, `WATCH_MODEL`
and `CONTINUE_MODEL`, on the matrices of `session_features`. Training is
deterministic (``deterministic=True``, fixed ``num_threads`` and ``seed``);
prediction does not depend on the thread count. lightgbm is imported inside
functions only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from recsim_cli.experiment.session_features import CLICK_FEATURES, CONTINUE_FEATURES

if TYPE_CHECKING:
    import lightgbm

__all__ = [
    "CLICK_MODEL",
    "CONTINUE_MODEL",
    "WATCH_MODEL",
    "BoosterSpec",
    "logloss",
    "predict_booster",
    "predict_or_constant",
    "rmse",
    "train_booster",
]

FloatArray = npt.NDArray[np.float64]

CATEGORICAL: Final = ("device", "category")

BOOST_PARAMS: Final[Mapping[str, int | float]] = {
    "num_leaves": 31,
    "learning_rate": 0.05,
    "min_data_in_leaf": 50,
}
"""LightGBM parameters of the click and watch models."""
CONTINUE_PARAMS: Final[Mapping[str, int | float]] = {
    "num_leaves": 4,
    "learning_rate": 0.05,
    "min_data_in_leaf": 200,
}
"""The continue model's: few slate-level signals and far fewer rows, so smaller trees (larger
ones fit the simulator's logs worse than a constant on held-out sessions)."""
ROUNDS: Final = 200
_EPS: Final = 1e-12


@dataclass(frozen=True)
class BoosterSpec:
    """One booster: the features it reads (in order), its objective and its LightGBM parameters."""

    features: tuple[str, ...]
    objective: str
    params: Mapping[str, int | float]


CLICK_MODEL: Final = BoosterSpec(CLICK_FEATURES, "binary", BOOST_PARAMS)
"""P(click) of an item at a position, fit on every sampled impression."""
WATCH_MODEL: Final = BoosterSpec(CLICK_FEATURES, "cross_entropy", BOOST_PARAMS)
"""The mean watch fraction of a click, fit on clicks of items with a known duration."""
CONTINUE_MODEL: Final = BoosterSpec(CONTINUE_FEATURES, "binary", CONTINUE_PARAMS)
"""P(another slate) after a slate with a click, fit on such slates."""


def train_booster(
    spec: BoosterSpec,
    matrix: FloatArray,
    label: FloatArray,
    *,
    seed: int,
    num_threads: int,
) -> lightgbm.Booster:
    """Train one deterministic LightGBM booster of `ROUNDS` trees as ``spec`` says."""
    import lightgbm as lgb

    full: dict[str, Any] = dict(spec.params) | {
        "objective": spec.objective,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": num_threads,
        "seed": seed,
        "verbosity": -1,
        "feature_pre_filter": False,
    }
    data = lgb.Dataset(
        matrix,
        label=label,
        feature_name=list(spec.features),
        categorical_feature=[str(name) for name in CATEGORICAL if name in spec.features],
        params=full,
        free_raw_data=True,
    )
    return lgb.train(full, data, num_boost_round=ROUNDS)


def predict_booster(booster: lightgbm.Booster, matrix: FloatArray) -> FloatArray:
    """The booster's predictions (probabilities, or fractions for ``cross_entropy``)."""
    if matrix.shape[0] == 0:
        return np.zeros(0)
    # a row's score is a sum over its trees, independent of the other rows, so every thread
    # count gives the same numbers
    threads = os.cpu_count() or 1
    return np.asarray(booster.predict(matrix, num_threads=threads), dtype=np.float64)


def predict_or_constant(
    booster: lightgbm.Booster | None, matrix: FloatArray, constant: float
) -> FloatArray:
    """The booster's predictions, or ``constant`` for every row when there is no booster."""
    if booster is None:
        return np.full(matrix.shape[0], constant)
    return predict_booster(booster, matrix)


def logloss(label: FloatArray, p: FloatArray | float) -> float | None:
    """Mean binary cross-entropy (None without rows); ``p`` clipped to [1e-12, 1 - 1e-12]."""
    if label.size == 0:
        return None
    q = np.clip(np.broadcast_to(np.asarray(p, dtype=np.float64), label.shape), _EPS, 1.0 - _EPS)
    return float(-np.mean(label * np.log(q) + (1.0 - label) * np.log1p(-q)))


def rmse(target: FloatArray, p: FloatArray | float) -> float | None:
    """Root mean squared error (None without rows)."""
    if target.size == 0:
        return None
    return float(np.sqrt(np.mean((target - np.asarray(p, dtype=np.float64)) ** 2)))
