"""The ranking stage: a LightGBM model that orders a user's candidates.

Three objectives (`OBJECTIVES`), all fit on the rows of `ranker_examples` with
the `FEATURES` of `build_features`:

* ``watch_time`` (default): binary logistic regression where a clicked row
  weighs its watch time in seconds (at least `WATCH_FLOOR_S`) and an unclicked
  row weighs 1. The learned odds ``exp(logit)`` then estimate the expected
  watch time of showing the item (Covington, Adams, Sargin, "Deep Neural
  Networks for YouTube Recommendations", RecSys 2016, section 4.2): with
  ``k`` clicks of total watch time ``T`` among ``N`` rows, the weighted odds
  are ``T / (N - k)``, close to ``E[watch time] = T / N`` when clicks are
  rare. `Ranker.predict` returns these odds, in seconds. When negatives are
  sampled (a log of watches only) the odds are scaled by the sampling rate,
  which leaves the order of a user's candidates unchanged.
* ``click``: plain binary logistic regression; predict returns P(click).
* ``lambdarank``: LightGBM's LambdaRank on NDCG, one query per logged slate
  (``query_id``); the grade of a row is 0 if not clicked, else
  ``1 + #{e in GRADE_EDGES : f >= e}`` with ``f = min(watch_time_s /
  duration_s, 1)`` the watched fraction, so 1 = under a quarter watched ..
  4 = three quarters or more (an unknown duration counts as ``f = 0``).
  Predict returns the raw score (higher = better; no unit).

Training is deterministic: ``deterministic=True``, ``force_row_wise=True``,
a fixed ``seed`` and ``num_threads`` give byte-identical model text for the
same inputs. lightgbm is imported inside functions only, so importing this
module (and ``recsim --help``) stays fast.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

import numpy as np
import numpy.typing as npt
import polars as pl

from recsim_cli.errors import (
    ConfigError,
    DatasetError,
    InternalError,
    UnknownNameError,
    UserError,
)
from recsim_cli.io import dumps_json, write_bytes_atomic
from recsim_cli.models.features import CATEGORICAL, FEATURES
from recsim_cli.progress import Progress, no_progress

if TYPE_CHECKING:
    import lightgbm

__all__ = [
    "DEFAULT_PARAMS",
    "GRADE_EDGES",
    "OBJECTIVES",
    "Objective",
    "Ranker",
    "RankerSummary",
    "watch_grades",
]

Objective = Literal["watch_time", "click", "lambdarank"]
OBJECTIVES: Final[tuple[str, ...]] = get_args(Objective)

FORMAT_VERSION: Final = 1
MODEL_FILE: Final = "ranker.txt"
META_FILE: Final = "ranker.json"

WATCH_FLOOR_S: Final = 1.0
"""The least weight of a clicked row under ``watch_time``: a click with no watch time counts 1 s."""
GRADE_EDGES: Final = (0.25, 0.5, 0.75)
"""Watched-fraction edges of the lambdarank grades 1..4 (0 = not clicked)."""
NDCG_AT: Final = 10

DEFAULT_PARAMS: Final[Mapping[str, int | float]] = {
    "num_boost_round": 200,
    "num_leaves": 31,
    "learning_rate": 0.05,
    "min_data_in_leaf": 50,
    "lambda_l2": 0.0,
    "feature_fraction": 1.0,
    "max_bin": 255,
}
"""The hyper-parameters a user may set, and their defaults."""

_CHECKS: Final[Mapping[str, tuple[Callable[[float], bool], str]]] = {
    "num_boost_round": (lambda v: v >= 1, "at least 1"),
    "num_leaves": (lambda v: v >= 2, "at least 2"),
    "learning_rate": (lambda v: v > 0, "above 0"),
    "min_data_in_leaf": (lambda v: v >= 1, "at least 1"),
    "lambda_l2": (lambda v: v >= 0, "0 or more"),
    "feature_fraction": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "max_bin": (lambda v: v >= 2, "at least 2"),
}

FloatArray = npt.NDArray[np.float64]


def validate_params(params: Mapping[str, Any] | None) -> dict[str, int | float]:
    """Fill ``params`` with `DEFAULT_PARAMS`; raise `ConfigError` on an unknown key or bad value."""
    out = dict(DEFAULT_PARAMS)
    for key, given in (params or {}).items():
        if key not in DEFAULT_PARAMS:
            raise ConfigError(
                f"Unknown ranker parameter '{key}'; valid: {', '.join(sorted(DEFAULT_PARAMS))}."
            )
        default = DEFAULT_PARAMS[key]
        value: Any = given
        if isinstance(given, bool) or not isinstance(given, int | float):
            ok = False
        elif isinstance(default, int):
            ok = isinstance(given, int) or float(given).is_integer()
            value = int(given) if ok else given
        else:
            ok = math.isfinite(given)
            value = float(given)
        check, wanted = _CHECKS[key]
        if not ok or not check(value):
            kind = "an integer" if isinstance(default, int) else "a number"
            raise ConfigError(f"Ranker parameter '{key}' must be {kind} {wanted}; got {given!r}.")
        out[key] = value
    return out


def watch_grades(
    clicked: npt.NDArray[np.bool_], watch_time_s: FloatArray, duration_s: FloatArray
) -> npt.NDArray[np.int32]:
    """The lambdarank grade of each row: 0 if unclicked, else 1 + #(`GRADE_EDGES` <= fraction).

    The watched fraction is ``min(watch_time_s / duration_s, 1)``, 0 when the
    duration is unknown or not positive.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(duration_s > 0, watch_time_s / duration_s, 0.0)
    fraction = np.clip(np.nan_to_num(fraction, nan=0.0), 0.0, 1.0)
    grade = 1 + np.searchsorted(np.asarray(GRADE_EDGES), fraction, side="right")
    return np.where(clicked, grade, 0).astype(np.int32)


@dataclass(frozen=True)
class RankerSummary:
    """What a fit did: the training loss at the last iteration, data sizes, importances.

    ``loss`` is the training-set value of ``metric`` after the last round:
    ``binary_logloss`` (weighted by the training weights, so for
    ``watch_time`` a watch-time-weighted log loss) for ``watch_time`` and
    ``click``, and ``1-ndcg@10`` (1 minus LightGBM's NDCG@10 over the
    queries) for ``lambdarank``; lower is better for both. ``importance`` is
    the total gain of each feature's splits, largest first (ties by name).
    ``queries`` is 0 for the binary objectives.
    """

    objective: str
    metric: str
    loss: float
    examples: int
    positives: int
    queries: int
    rounds: int
    importance: tuple[tuple[str, float], ...]
    fit_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Return plain JSON types; importances as a list of ``[name, gain]``."""
        data = asdict(self)
        data["importance"] = [[name, value] for name, value in self.importance]
        return data


class Ranker:
    """A LightGBM ranker over `FEATURES` (see the module docstring for the objectives)."""

    def __init__(
        self,
        objective: Objective = "watch_time",
        params: Mapping[str, Any] | None = None,
        seed: int = 0,
        num_threads: int = 1,
    ) -> None:
        if objective not in OBJECTIVES:
            raise UnknownNameError("ranker objective", objective, OBJECTIVES)
        if num_threads < 1:
            raise ConfigError(f"num_threads must be at least 1; got {num_threads}.")
        self.objective: Objective = objective
        self.params = validate_params(params)
        self.seed = seed
        self.num_threads = num_threads
        self.features: tuple[str, ...] = FEATURES
        self._booster: lightgbm.Booster | None = None

    def lgb_params(self) -> dict[str, Any]:
        """The full LightGBM parameter dict of this ranker (without num_boost_round)."""
        params: dict[str, Any] = {
            key: value for key, value in self.params.items() if key != "num_boost_round"
        }
        if self.objective == "lambdarank":
            params |= {"objective": "lambdarank", "metric": "ndcg", "eval_at": [NDCG_AT]}
        else:
            params |= {"objective": "binary", "metric": "binary_logloss"}
        params |= {
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "seed": self.seed,
            "verbosity": -1,
            "feature_pre_filter": False,
        }
        return params

    def fit(
        self, X: pl.DataFrame, examples: pl.DataFrame, *, progress: Progress = no_progress
    ) -> RankerSummary:
        """Fit on the feature rows ``X`` and their ``examples`` (same rows, same order).

        ``examples`` needs clicked and watch_time_s, plus query_id for
        ``lambdarank``; the lambdarank grades use examples' duration_s when
        present and else the ``duration_s`` feature of ``X``. Calls
        ``progress("rank", iteration, num_boost_round)`` after each boosting
        round. Raises `DatasetError` when no example is clicked.
        """
        import lightgbm as lgb

        started = time.perf_counter()
        matrix = self._matrix(X)
        needed = ("clicked", "watch_time_s") + (
            ("query_id",) if self.objective == "lambdarank" else ()
        )
        missing = [name for name in needed if name not in examples.columns]
        if missing:
            raise InternalError(f"The ranker's examples lack column(s) {', '.join(missing)}.")
        if examples.height != X.height:
            raise InternalError(
                f"The ranker got {X.height} feature rows but {examples.height} examples."
            )
        clicked = examples["clicked"].cast(pl.Boolean).fill_null(False).to_numpy()
        watch = examples["watch_time_s"].cast(pl.Float64).fill_null(0.0).to_numpy()
        n_positives = int(clicked.sum())
        if n_positives == 0:
            raise DatasetError(
                "The ranker's training examples hold no clicks, so there is nothing to learn; "
                "train on a longer window of events."
            )
        group: npt.NDArray[np.int64] | None = None
        n_queries = 0
        if self.objective == "lambdarank":
            query = examples["query_id"].cast(pl.Int64).to_numpy()
            order = np.argsort(query, kind="stable")
            duration_frame = examples if "duration_s" in examples.columns else X
            duration = duration_frame["duration_s"].cast(pl.Float64).fill_null(np.nan).to_numpy()
            label = watch_grades(clicked, watch, duration)[order].astype(np.float64)
            matrix, weight = matrix[order], None
            _, group = np.unique(query[order], return_counts=True)
            n_queries = int(group.size)
        elif self.objective == "watch_time":
            label = clicked.astype(np.float64)
            weight = np.where(clicked, np.maximum(watch, WATCH_FLOOR_S), 1.0)
        else:
            label, weight = clicked.astype(np.float64), None
        rounds = int(self.params["num_boost_round"])
        params = self.lgb_params()
        data = lgb.Dataset(
            matrix,
            label=label,
            weight=weight,
            group=group,
            feature_name=list(self.features),
            categorical_feature=list(CATEGORICAL),
            params=params,
            free_raw_data=True,
        )

        def report(env: Any) -> None:
            progress("rank", env.iteration - env.begin_iteration + 1, rounds)

        booster = lgb.train(
            params, data, num_boost_round=rounds, keep_training_booster=True, callbacks=[report]
        )
        last = booster.eval_train()[0]
        if self.objective == "lambdarank":
            metric, loss = f"1-ndcg@{NDCG_AT}", 1.0 - float(last[2])
        else:
            metric, loss = str(last[1]), float(last[2])
        gains = booster.feature_importance(importance_type="gain")
        importance = sorted(
            ((name, float(g)) for name, g in zip(self.features, gains, strict=True)),
            key=lambda pair: (-pair[1], pair[0]),
        )
        # predict from the saved text form, so a loaded model predicts identically
        self._booster = lgb.Booster(model_str=booster.model_to_string())
        return RankerSummary(
            objective=self.objective,
            metric=metric,
            loss=loss,
            examples=int(X.height),
            positives=n_positives,
            queries=n_queries,
            rounds=rounds,
            importance=tuple(importance),
            fit_seconds=time.perf_counter() - started,
        )

    def predict(self, X: pl.DataFrame) -> FloatArray:
        """Score each row of ``X``, higher = better.

        ``watch_time``: the odds ``exp(logit)``, an estimate of expected watch
        seconds; ``click``: P(click); ``lambdarank``: the raw score.
        """
        booster = self._fitted()
        matrix = self._matrix(X)
        if matrix.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        raw = self.objective != "click"
        # each row's score is a sum over trees, independent of the other rows, so
        # predicting on every core gives the same numbers as on one
        threads = max(self.num_threads, os.cpu_count() or 1)
        scores = np.asarray(
            booster.predict(matrix, raw_score=raw, num_threads=threads), dtype=np.float64
        )
        if self.objective == "watch_time":
            # exp overflows past ~709; such odds are "certain" anyway
            scores = np.exp(np.minimum(scores, 700.0))
        return scores

    def model_text(self) -> str:
        """The LightGBM text form of the fitted model."""
        return str(self._fitted().model_to_string())

    def save(self, folder: Path) -> None:
        """Write ``ranker.txt`` (LightGBM text model) and ``ranker.json`` into ``folder``."""
        text = self.model_text()
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "objective": self.objective,
            "features": list(self.features),
            "categorical": list(CATEGORICAL),
            "params": self.params,
            "seed": self.seed,
            "num_threads": self.num_threads,
        }
        write_bytes_atomic(folder / MODEL_FILE, text.encode("utf-8"))
        write_bytes_atomic(folder / META_FILE, dumps_json(meta).encode("utf-8"))

    @classmethod
    def load(cls, folder: Path, *, num_threads: int = 1) -> Ranker:
        """Read a ranker written by `save`; raise `DatasetError` if missing, corrupt or stale."""
        import lightgbm as lgb

        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            if meta.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format_version {meta.get('format_version')!r} is not supported")
            if tuple(meta["features"]) != FEATURES:
                raise ValueError("it was trained on other features than this recsim computes")
            ranker = cls(
                meta["objective"], meta["params"], seed=int(meta["seed"]), num_threads=num_threads
            )
            booster = lgb.Booster(model_str=(folder / MODEL_FILE).read_text(encoding="utf-8"))
            if tuple(booster.feature_name()) != FEATURES:
                raise ValueError("the model's feature names do not match ranker.json")
        except (OSError, ValueError, KeyError, TypeError, AttributeError, UserError) as exc:
            raise _corrupt(folder, exc) from exc
        except lgb.basic.LightGBMError as exc:
            raise _corrupt(folder, exc) from exc
        ranker._booster = booster
        return ranker

    def _fitted(self) -> lightgbm.Booster:
        if self._booster is None:
            raise InternalError("The ranker was used before fit or load.")
        return self._booster

    def _matrix(self, X: pl.DataFrame) -> FloatArray:
        missing = [name for name in self.features if name not in X.columns]
        if missing:
            raise InternalError(f"The feature frame lacks column(s) {', '.join(missing)}.")
        frame = X.select(
            pl.col(name).cast(pl.Float64).fill_null(float("nan")) for name in self.features
        )
        return np.ascontiguousarray(frame.to_numpy(), dtype=np.float64)


def _corrupt(folder: Path, exc: Exception) -> DatasetError:
    detail = " ".join(str(exc).split())[:200]
    return DatasetError(
        f"The ranker in {folder} is missing or corrupt ({detail}); "
        "retrain it with `recsim train --force`."
    )
