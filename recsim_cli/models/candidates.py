"""The candidate generators and their registry: popular, fresh, als, bpr, itemknn.

Every generator is a `CandidateModel` (see `recsim_cli.models.base` for the
contract, the fallback and the interaction strength ``s(u, i)``); this module
only says how each one scores items. ``candidate_model(kind, params, seed=)``
builds one by name.

* ``popular`` and ``fresh`` give every user the same list.
* ``als``, ``bpr`` and ``itemknn`` are collaborative filters from implicit.
  A user with no click in training has no profile: they return no item for
  that user, and the base fills the list from the fallback.

implicit and threadpoolctl are imported inside methods, so importing this
module (and ``recsim --help``) stays light. Fits and scoring run with BLAS
limited to one thread, as implicit asks; with the seeds below a fit is
reproducible. Seen items are the base's business: for ``als`` and ``bpr`` it
passes each user's banned items (seen, and any ``exclude=`` pairs) to
implicit's top-k as ``filter_query_items``; for the others it asks `_top` for
``k`` plus the banned items and drops them. Either way ``exclude_seen=False``
keeps watched items in the ranking.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp

from recsim_cli.errors import ConfigError, UnknownNameError
from recsim_cli.models.base import (
    CandidateModel,
    FloatArray,
    IntArray,
    fresh_scores,
    interaction_strength,
)
from recsim_cli.split import TrainData

__all__ = [
    "CANDIDATES",
    "AlsCandidates",
    "BprCandidates",
    "FreshCandidates",
    "ItemKnnCandidates",
    "PopularCandidates",
    "als_loss",
    "candidate_model",
]

FLOAT32_MIN: Final = float(-np.finfo(np.float32).max)
"""implicit's score of a padded or filtered slot."""

KNN_BATCH_CELLS: Final = 4_000_000
"""Item-kNN scores at most this many user x item cells at once (memory bound)."""

SIMILARITIES: Final = ("bm25", "cosine")


def _check(cls: type[CandidateModel], ok: bool, key: str, expected: str, value: object) -> None:
    if not ok:
        raise ConfigError(
            f"Parameter '{key}' of candidates '{cls.kind}' must be {expected}; got {value!r}."
        )


def _at_least_one(cls: type[CandidateModel], params: Mapping[str, Any], *keys: str) -> None:
    for key in keys:
        _check(cls, params[key] >= 1, key, "at least 1", params[key])


def _positive(cls: type[CandidateModel], params: Mapping[str, Any], *keys: str) -> None:
    for key in keys:
        _check(cls, params[key] > 0, key, "positive", params[key])


def _blas_single_thread() -> Any:
    """A context limiting BLAS to one thread (implicit is slow and non-deterministic otherwise)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


def _no_history(model: CandidateModel, users: IntArray) -> npt.NDArray[np.bool_]:
    """Whether each user clicked nothing in training (an empty row of the seen matrix)."""
    return np.asarray(model.seen_indptr[users + 1] == model.seen_indptr[users])


def _pad(
    ids: npt.NDArray[Any], scores: npt.NDArray[Any], empty: npt.NDArray[np.bool_]
) -> tuple[IntArray, FloatArray]:
    """As int64 / float64, with implicit's padding and the rows of ``empty`` users set to -1."""
    out_ids = np.asarray(ids, dtype=np.int64)
    out_scores = np.asarray(scores, dtype=np.float64)
    pad = (out_ids < 0) | (out_scores <= FLOAT32_MIN) | ~np.isfinite(out_scores) | empty[:, None]
    return np.where(pad, -1, out_ids), np.where(pad, -np.inf, out_scores)


# -- the same list for everyone ----------------------------------------------------------


class _GlobalRanking(CandidateModel):
    """A generator whose list is one score per item, the same for every user.

    Items with a score of 0 or less are not recommended by the model (the
    base fills their slots from the fallback). Ties: lower item index (id order).
    """

    training_loss: float | None = None

    def __init__(self, params: Mapping[str, Any] | None = None, *, seed: int = 0) -> None:
        super().__init__(params, seed=seed)
        self.scores: FloatArray = np.zeros(0, dtype=np.float64)
        self.order: IntArray = np.zeros(0, dtype=np.int64)

    def _set_scores(self, scores: FloatArray) -> None:
        self.scores = scores.astype(np.float64)
        order = np.lexsort((np.arange(len(scores)), -self.scores))
        self.order = order[self.scores[order] > 0].astype(np.int64)

    def _top(self, users: IntArray, k: int) -> tuple[IntArray, FloatArray]:
        top = self.order[:k]
        items = np.full((len(users), k), -1, dtype=np.int64)
        scores = np.full((len(users), k), -np.inf, dtype=np.float64)
        items[:, : len(top)] = top
        scores[:, : len(top)] = self.scores[top]
        return items, scores

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {"scores": self.scores}

    def _set_state(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        self._set_scores(np.asarray(arrays["scores"], dtype=np.float64))


class PopularCandidates(_GlobalRanking):
    """Most watched in the last ``window_days`` days before the cutoff, the same for everyone.

    ``score(i) = sum over users u of strength(u, i)``, counting only clicks
    with ``cutoff - window_days <= ts < cutoff``: summed interaction
    strength (a click counts 0.1 to 1 by the share watched), not raw clicks.
    """

    kind = "popular"
    defaults: ClassVar[Mapping[str, Any]] = {"window_days": 14}

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        out = super().validate_params(params)
        _at_least_one(cls, out, "window_days")
        return out

    def _fit(self, data: TrainData, matrix: sp.csr_matrix) -> None:
        start = data.cutoff - timedelta(days=self.params["window_days"])
        recent = data.events.lazy().filter(pl.col("ts") >= start)
        per_item = (
            interaction_strength(recent, data.items)
            .group_by("item_id")
            .agg(pl.col("strength").sum())
        )
        scores = (
            pl.DataFrame({"item_id": self.items.ids})
            .join(per_item, on="item_id", how="left", maintain_order="left")
            .get_column("strength")
            .fill_null(0.0)
            .to_numpy()
        )
        self._set_scores(scores)


class FreshCandidates(_GlobalRanking):
    """Popularity with an age decay, so recent uploads win; the same list for everyone.

    ``score(i) = (clicks of i in the last window_days + 0.001) * 0.5 ^ (age_i / half_life_days)``
    with ``age_i`` the item's age in days at the cutoff (`base.fresh_scores`).
    With the default parameters this is exactly the fallback list.
    """

    kind = "fresh"
    defaults: ClassVar[Mapping[str, Any]] = {"window_days": 7, "half_life_days": 3.0}

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        out = super().validate_params(params)
        _at_least_one(cls, out, "window_days")
        _positive(cls, out, "half_life_days")
        return out

    def _fit(self, data: TrainData, matrix: sp.csr_matrix) -> None:
        self._set_scores(
            fresh_scores(
                data,
                self.items,
                window_days=self.params["window_days"],
                half_life_days=self.params["half_life_days"],
            )
        )


# -- matrix factorisation ----------------------------------------------------------------


class _FactorModel(CandidateModel):
    """A latent-factor generator: ``score(u, i) = x_u · y_i``, top k by implicit's top-k.

    Saved as the float32 arrays ``user_factors`` (users x f) and
    ``item_factors`` (items x f), and the final training loss (NaN if none).
    """

    training_loss: float | None = None

    def __init__(self, params: Mapping[str, Any] | None = None, *, seed: int = 0) -> None:
        super().__init__(params, seed=seed)
        self.user_factors: npt.NDArray[np.float32] = np.zeros((0, 0), dtype=np.float32)
        self.item_factors: npt.NDArray[np.float32] = np.zeros((0, 0), dtype=np.float32)

    filters_exclusions: ClassVar[bool] = True

    def _top(self, users: IntArray, k: int) -> tuple[IntArray, FloatArray]:
        return self._top_excluding(users, k, None)

    def _top_excluding(
        self, users: IntArray, k: int, exclude: sp.csr_matrix | None
    ) -> tuple[IntArray, FloatArray]:
        from implicit.cpu.topk import topk

        # what implicit's MatrixFactorizationBase.recommend runs; num_threads=0 uses every
        # core, and each user's top k is computed alone, so threads do not change the result;
        # ``exclude`` (banned items per user) is implicit's filter_query_items
        with _blas_single_thread():
            ids, scores = topk(
                self.item_factors,
                self.user_factors[users],
                k,
                filter_query_items=exclude,
                num_threads=0,
            )
        return _pad(ids, scores, _no_history(self, users))

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        loss = np.nan if self.training_loss is None else self.training_loss
        return {
            "user_factors": self.user_factors,
            "item_factors": self.item_factors,
            "training_loss": np.asarray(loss, dtype=np.float64),
        }

    def _set_state(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        self.user_factors = np.ascontiguousarray(arrays["user_factors"], dtype=np.float32)
        self.item_factors = np.ascontiguousarray(arrays["item_factors"], dtype=np.float32)
        loss = float(arrays["training_loss"])
        self.training_loss = None if np.isnan(loss) else loss


class AlsCandidates(_FactorModel):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) via implicit's CPU solver.

    Preference ``p_ui = 1`` if u clicked i, else 0; confidence
    ``c_ui = 1 + alpha * strength(u, i)`` for clicked pairs and 1 for the rest.
    ALS minimises ``sum_ui c_ui (p_ui - x_u·y_i)^2 + regularization (|x|^2 + |y|^2)``
    with ``factors`` dimensions over ``iterations`` sweeps (conjugate gradient).
    `training_loss` is that objective divided by the total confidence, as
    implicit reports it (`als_loss`). Factors start from ``random_state=seed``; each sweep
    solves every user (item) alone, so the fit is the same for any thread count.
    """

    kind = "als"
    defaults: ClassVar[Mapping[str, Any]] = {
        "factors": 32,
        "regularization": 1.0,
        "iterations": 15,
        "alpha": 5.0,
    }

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        out = super().validate_params(params)
        _at_least_one(cls, out, "factors", "iterations")
        _positive(cls, out, "alpha")
        _check(
            cls, out["regularization"] >= 0, "regularization", "0 or more", out["regularization"]
        )
        return out

    def _fit(self, data: TrainData, matrix: sp.csr_matrix) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        shifted = als_input(matrix, self.params["alpha"])
        with _blas_single_thread():
            model = AlternatingLeastSquares(
                factors=self.params["factors"],
                regularization=self.params["regularization"],
                alpha=self.params["alpha"],
                iterations=self.params["iterations"],
                random_state=self.seed,
            )
            model.fit(shifted, show_progress=False)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self.training_loss = als_loss(
            shifted,
            self.user_factors,
            self.item_factors,
            alpha=self.params["alpha"],
            regularization=self.params["regularization"],
        )


def als_input(strength: sp.csr_matrix, alpha: float) -> sp.csr_matrix:
    """The matrix handed to implicit's ALS: ``strength + 1/alpha`` on clicked pairs.

    implicit multiplies its input by alpha and uses that as the confidence, so
    this gives Hu et al.'s ``c = 1 + alpha * strength``: a clicked pair never
    weighs less than an unobserved one (``c = 1``).
    """
    shifted = strength.copy()
    shifted.data = shifted.data + np.float32(1.0 / alpha)
    return shifted


def als_loss(
    strength: sp.csr_matrix,
    user_factors: npt.NDArray[np.float32],
    item_factors: npt.NDArray[np.float32],
    *,
    alpha: float,
    regularization: float,
) -> float:
    """implicit's ALS training loss, computed once (implicit's per-sweep loss doubles a fit).

    ``L = [sum over all (u, i) of c_ui (p_ui - x_u·y_i)^2 + regularization (|X|^2 + |Y|^2)]
    / (sum over all (u, i) of c_ui)`` with ``c_ui = alpha * m_ui`` (``m`` the matrix given to
    implicit: strength + 1/alpha) and ``p_ui = 1`` for clicked pairs, ``c_ui = 1`` and
    ``p_ui = 0`` for the rest. The sum over all pairs is
    ``sum_u x_u' (Y'Y) x_u`` plus, for clicked pairs, ``(c - 1) s^2 - 2 c s + c`` with
    ``s = x_u·y_i``, so no dense users x items matrix is formed.
    """
    x = user_factors.astype(np.float64)
    y = item_factors.astype(np.float64)
    coo = strength.tocoo()
    confidence = alpha * coo.data.astype(np.float64)
    s = np.einsum("ij,ij->i", x[coo.row], y[coo.col])
    every_pair = float(np.einsum("ij,ij->", x @ (y.T @ y), x))
    clicked = float(((confidence - 1) * s * s - 2 * confidence * s + confidence).sum())
    penalty = regularization * float((x * x).sum() + (y * y).sum())
    total = confidence.sum() + strength.shape[0] * strength.shape[1] - strength.nnz
    return (every_pair + clicked + penalty) / float(total)


class BprCandidates(_FactorModel):
    """Bayesian personalised ranking (Rendle et al. 2009) via implicit's CPU SGD.

    Maximises ``sum over (u, i clicked, j not clicked) of ln σ(x_u·y_i - x_u·y_j)``
    minus ``regularization`` times the squared norms, by SGD with
    ``learning_rate`` over ``iterations`` epochs of sampled triples. Clicks
    count as positives whatever their strength. implicit appends an item bias
    to the factors (a column of ones on the user side). One thread only, so
    that a seed gives the same factors; scoring uses every core.
    """

    kind = "bpr"
    defaults: ClassVar[Mapping[str, Any]] = {
        "factors": 64,
        "learning_rate": 0.01,
        "regularization": 0.01,
        "iterations": 100,
    }

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        out = super().validate_params(params)
        _at_least_one(cls, out, "factors", "iterations")
        _positive(cls, out, "learning_rate")
        _check(
            cls, out["regularization"] >= 0, "regularization", "0 or more", out["regularization"]
        )
        return out

    def _fit(self, data: TrainData, matrix: sp.csr_matrix) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        with _blas_single_thread():
            model = BayesianPersonalizedRanking(
                factors=self.params["factors"],
                learning_rate=self.params["learning_rate"],
                regularization=self.params["regularization"],
                iterations=self.params["iterations"],
                num_threads=1,
                random_state=self.seed,
            )
            model.fit(matrix, show_progress=False)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)


# -- item-item nearest neighbours --------------------------------------------------------


class ItemKnnCandidates(CandidateModel):
    """Item-item nearest neighbours: items like the ones the user watched.

    implicit computes ``sim(i, j)`` between the items' columns of the strength
    matrix, keeping for each item i its ``neighbours`` most similar items j:
    ``cosine`` is the cosine of the two user vectors; ``bm25`` weights each
    strength by BM25 (``bm25_k1``, ``bm25_b``) before the dot product. Then
    ``score(u, j) = sum over i watched by u of strength(u, i) * sim(i, j)``
    (as implicit's recommend), top k per user. Items no watched item points
    to are not recommended by the model (the fallback fills those slots).

    Saved as the similarity CSR (``sim_data``, ``sim_indices``, ``sim_indptr``,
    ``sim_shape``) and the users' strengths (``strength``, aligned with the
    base's seen matrix); scoring is a sparse product, batched over users.
    """

    kind = "itemknn"
    defaults: ClassVar[Mapping[str, Any]] = {
        "similarity": "bm25",
        "neighbours": 100,
        "bm25_k1": 1.2,
        "bm25_b": 0.75,
    }
    training_loss: float | None = None

    def __init__(self, params: Mapping[str, Any] | None = None, *, seed: int = 0) -> None:
        super().__init__(params, seed=seed)
        self.similarity: sp.csr_matrix = sp.csr_matrix((0, 0), dtype=np.float32)
        self.strength: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        out = super().validate_params(params)
        _check(
            cls,
            out["similarity"] in SIMILARITIES,
            "similarity",
            f"one of {', '.join(SIMILARITIES)}",
            out["similarity"],
        )
        _at_least_one(cls, out, "neighbours")
        _positive(cls, out, "bm25_k1")
        _check(cls, 0 <= out["bm25_b"] <= 1, "bm25_b", "between 0 and 1", out["bm25_b"])
        return out

    def _fit(self, data: TrainData, matrix: sp.csr_matrix) -> None:
        from implicit.nearest_neighbours import ItemItemRecommender, bm25_weight, normalize

        self.strength = matrix.data.astype(np.float32)
        if matrix.nnz == 0:  # no click at all: no similarity (BM25 would divide by zero)
            self.similarity = sp.csr_matrix((matrix.shape[1], matrix.shape[1]), dtype=np.float32)
            return
        # what implicit's CosineRecommender / BM25Recommender.fit do, but handing implicit
        # the CSR it expects (they pass a COO matrix, which it converts with a warning)
        columns = matrix.T
        if self.params["similarity"] == "bm25":
            weighted = bm25_weight(columns, self.params["bm25_k1"], self.params["bm25_b"]).T
        else:
            weighted = normalize(columns).T
        model = ItemItemRecommender(K=self.params["neighbours"], num_threads=0)
        with _blas_single_thread():
            model.fit(sp.csr_matrix(weighted), show_progress=False)
        self.similarity = sp.csr_matrix(model.similarity, dtype=np.float32)
        self.similarity.sort_indices()

    def _top(self, users: IntArray, k: int) -> tuple[IntArray, FloatArray]:
        n_items = len(self.items)
        weights = sp.csr_matrix(
            (self.strength, self.seen_indices, self.seen_indptr),
            shape=(len(self.users), n_items),
        )[users]
        items = np.full((len(users), k), -1, dtype=np.int64)
        scores = np.full((len(users), k), -np.inf, dtype=np.float64)
        batch = max(1, KNN_BATCH_CELLS // max(n_items, 1))
        for start in range(0, len(users), batch):
            product = sp.csr_matrix(weights[start : start + batch] @ self.similarity)
            product.sum_duplicates()
            counts = np.diff(product.indptr)
            rows = np.repeat(np.arange(len(counts)), counts)
            # best first within each row; ties by item index
            order = np.lexsort((product.indices, -product.data, rows))
            rank = np.arange(len(order)) - np.repeat(product.indptr[:-1], counts)
            keep = rank < k
            picked = order[keep]
            items[start + rows[keep], rank[keep]] = product.indices[picked]
            scores[start + rows[keep], rank[keep]] = product.data[picked]
        return items, scores

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        sim = self.similarity
        return {
            "sim_data": sim.data.astype(np.float32),
            "sim_indices": sim.indices.astype(np.int64),
            "sim_indptr": sim.indptr.astype(np.int64),
            "sim_shape": np.asarray(sim.shape, dtype=np.int64),
            "strength": self.strength,
        }

    def _set_state(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        shape = tuple(int(n) for n in arrays["sim_shape"])
        self.similarity = sp.csr_matrix(
            (
                arrays["sim_data"].astype(np.float32),
                arrays["sim_indices"],
                arrays["sim_indptr"],
            ),
            shape=shape,
        )
        self.strength = arrays["strength"].astype(np.float32)


# -- registry ----------------------------------------------------------------------------

CANDIDATES: Final[dict[str, type[CandidateModel]]] = {
    cls.kind: cls
    for cls in (
        PopularCandidates,
        FreshCandidates,
        AlsCandidates,
        BprCandidates,
        ItemKnnCandidates,
    )
}
"""Every candidate generator by name."""


def candidate_model(
    kind: str, params: Mapping[str, Any] | None = None, *, seed: int = 0
) -> CandidateModel:
    """A new, unfitted generator of ``kind`` with ``params`` over its defaults.

    Raises `UnknownNameError` for an unknown kind and `ConfigError` for a bad parameter.
    """
    cls = CANDIDATES.get(kind)
    if cls is None:
        raise UnknownNameError("candidate generator", kind, sorted(CANDIDATES))
    return cls(params, seed=seed)
