"""The seam: the per-user sufficient-statistics frame the engine reads.

Whatever produces an experiment (logged A/B tests, off-policy estimators, a
Spark job) hands the engine one polars DataFrame with **one row per
(user, arm)**:

===========================  ==========  =========================================
column                       type        meaning
===========================  ==========  =========================================
``user_id``                  any         the randomisation unit; not null
``arm``                      string      the arm's name (e.g. ``control``)
``<metric>_num``             numeric     sum of the metric's numerator over the
                                         user's units (clicks, watch time...)
``<metric>_den``             numeric     sum of its denominator (impressions,
                                         sessions...); ``>= 0``; ``1`` for a plain
                                         per-user mean
``<metric>_pre_num``         numeric     optional, for CUPED: the same sums over a
``<metric>_pre_den``         numeric     pre-period; both null where the user has
                                         no pre-period data
===========================  ==========  =========================================

``num`` and ``den`` are never null, NaN or infinite; a user with no units has
``0`` and ``0`` and still counts (they were randomised). Extra columns are
ignored. In the ``split`` design a user appearing in both arms fails the
``one_arm_per_user`` health check; in the ``paired`` design every user must
appear in both arms, or :class:`ExperimentInvalidError` is raised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from recsim_cli.errors import ConfigError, ExperimentInvalidError, SchemaError, UnknownNameError
from recsim_cli.experiment.comparison import Design, Sample
from recsim_cli.experiment.metrics import MetricDef

USER = "user_id"
ARM = "arm"


@dataclass(frozen=True)
class ArmData:
    """The two arms' samples per metric, extracted and checked."""

    control: str
    treatment: str
    n_control: int
    n_treatment: int
    shared_users: tuple[object, ...]  # split design: users found in both arms
    samples: Mapping[str, tuple[Sample, Sample]]  # metric -> (control, treatment)


def _columns_needed(metric: MetricDef, cuped: bool) -> list[str]:
    cols = [metric.num_column, metric.den_column]
    if cuped:
        cols += [metric.pre_num_column, metric.pre_den_column]
    return cols


def _first_row(frame: pl.DataFrame, condition: pl.Expr) -> int:
    rows = frame.with_row_index("__row").filter(condition).get_column("__row")
    return int(rows[0])


def _check_columns(frame: pl.DataFrame, metrics: Sequence[MetricDef], cuped: bool) -> None:
    found = ", ".join(frame.columns)
    for column in (USER, ARM):
        if column not in frame.columns:
            raise SchemaError(
                f"the experiment frame has no column '{column}' (found: {found}); it needs "
                "one row per (user_id, arm)."
            )
    for metric in metrics:
        for column in _columns_needed(metric, cuped):
            if column not in frame.columns:
                why = "for CUPED on" if "_pre_" in column else "for"
                raise SchemaError(
                    f"the experiment frame has no column '{column}', needed {why} metric "
                    f"'{metric.name}' (found: {found})."
                )
    arm_dtype = frame.schema[ARM]
    if arm_dtype not in (pl.String, pl.Categorical) and not isinstance(arm_dtype, pl.Enum):
        raise SchemaError(f"column 'arm' must hold arm names (strings); got {arm_dtype}.")
    if frame.get_column(USER).null_count():
        row = _first_row(frame, pl.col(USER).is_null())
        raise SchemaError(f"column 'user_id' is null at row {row}; every row needs a user.")


def _check_values(frame: pl.DataFrame, metric: MetricDef, cuped: bool) -> None:
    for column in _columns_needed(metric, cuped):
        dtype = frame.schema[column]
        if not dtype.is_numeric():
            raise SchemaError(f"column '{column}' must be numeric; got {dtype}.")
        pre = "_pre_" in column
        series = frame.get_column(column)
        if series.null_count() and not pre:
            row = _first_row(frame, pl.col(column).is_null())
            raise SchemaError(
                f"column '{column}' is null at row {row}; write 0 for a user with no units "
                "(nulls are allowed only in the pre-period columns)."
            )
        finite = series.cast(pl.Float64).is_finite().fill_null(True)
        if not finite.all():
            row = _first_row(frame, ~pl.col(column).cast(pl.Float64).is_finite().fill_null(True))
            raise SchemaError(f"column '{column}' is NaN or infinite at row {row}.")
        if column.endswith("_den") and (series < 0).any():
            row = _first_row(frame, pl.col(column) < 0)
            raise SchemaError(
                f"column '{column}' is negative at row {row}; a denominator counts units."
            )
    if cuped:
        num_null = frame.get_column(metric.pre_num_column).is_null()
        den_null = frame.get_column(metric.pre_den_column).is_null()
        if (num_null != den_null).any():
            row = _first_row(
                frame,
                pl.col(metric.pre_num_column).is_null() != pl.col(metric.pre_den_column).is_null(),
            )
            raise SchemaError(
                f"columns '{metric.pre_num_column}' and '{metric.pre_den_column}' disagree at "
                f"row {row}: a user without pre-period data has both null, otherwise neither."
            )


def _check_arms(frame: pl.DataFrame, control: str, treatment: str) -> None:
    if control == treatment:
        raise ConfigError(f"control and treatment are both '{control}'; name two different arms.")
    if frame.get_column(ARM).null_count():
        row = _first_row(frame, pl.col(ARM).is_null())
        raise SchemaError(f"column 'arm' is null at row {row}; every row needs an arm.")
    arms = [str(a) for a in frame.get_column(ARM).cast(pl.String).unique().to_list()]
    others = sorted(set(arms) - {control, treatment})
    if others:
        for name in (control, treatment):
            if name not in arms:
                raise UnknownNameError("arm", name, arms)
        raise SchemaError(
            f"the experiment frame has arms other than '{control}' and '{treatment}': "
            f"{', '.join(others)}; filter it to the two arms compared."
        )


def _check_duplicates(frame: pl.DataFrame) -> None:
    repeated = ~frame.select(pl.struct(USER, ARM).is_first_distinct()).to_series()
    if repeated.any():
        row = int(np.flatnonzero(repeated.to_numpy())[0])  # the first repeat, not the original
        user, arm = frame.row(row)[frame.columns.index(USER)], frame[ARM][row]
        raise SchemaError(
            f"user {user} appears more than once in arm '{arm}' (row {row}); the frame needs "
            "one row per (user, arm): sum the user's units first."
        )


def _array(frame: pl.DataFrame, column: str) -> npt.NDArray[np.float64]:
    return frame.get_column(column).cast(pl.Float64).to_numpy().astype(np.float64, copy=True)


def _sample(frame: pl.DataFrame, metric: MetricDef, cuped: bool) -> Sample:
    if cuped:
        return Sample.of(
            _array(frame, metric.num_column),
            _array(frame, metric.den_column),
            _array(frame, metric.pre_num_column),
            _array(frame, metric.pre_den_column),
        )
    return Sample.of(_array(frame, metric.num_column), _array(frame, metric.den_column))


def extract_arms(
    frame: pl.DataFrame,
    metrics: Sequence[MetricDef],
    *,
    control: str,
    treatment: str,
    design: Design,
    cuped: bool = False,
) -> ArmData:
    """Check the frame against the contract and return each arm's per-metric arrays.

    Users are sorted by ``user_id`` within each arm, so results (including the
    bootstrap's) do not depend on the frame's row order, and paired arms line
    up user by user.
    """
    if not isinstance(frame, pl.DataFrame):
        raise SchemaError(
            f"the experiment frame must be a polars DataFrame; got {type(frame).__name__}."
        )
    _check_columns(frame, metrics, cuped)
    _check_arms(frame, control, treatment)
    _check_duplicates(frame)
    for metric in metrics:
        _check_values(frame, metric, cuped)
    arm = pl.col(ARM).cast(pl.String)
    ctrl = frame.filter(arm == control).sort(USER)
    trt = frame.filter(arm == treatment).sort(USER)
    shared: tuple[object, ...] = ()
    if design == "paired":
        only_c = ctrl.join(trt, on=USER, how="anti").get_column(USER).to_list()
        only_t = trt.join(ctrl, on=USER, how="anti").get_column(USER).to_list()
        if only_c or only_t:
            parts = [
                f"{len(ids):,} only in '{name}' (e.g. {', '.join(str(u) for u in ids[:3])})"
                for name, ids in ((control, only_c), (treatment, only_t))
                if ids
            ]
            raise ExperimentInvalidError(
                f"the paired design needs every user in both arms, but {' and '.join(parts)}; "
                "rerun the replay on the same users, or use design='split' for independent arms."
            )
    else:
        shared = tuple(ctrl.join(trt, on=USER, how="semi").get_column(USER).to_list())
    samples = {m.name: (_sample(ctrl, m, cuped), _sample(trt, m, cuped)) for m in metrics}
    return ArmData(control, treatment, ctrl.height, trt.height, shared, samples)


def frame_from_arrays(
    arms: Mapping[str, Mapping[str, npt.ArrayLike]], *, paired: bool = False
) -> pl.DataFrame:
    """Build a sufficient-statistics frame from per-arm column arrays.

    ``arms`` maps an arm name to its columns (``{"ctr_num": ..., "ctr_den": ...}``);
    NaN in a ``_pre_`` column becomes null. Users are numbered consecutively
    across arms (each in one arm), or, with ``paired=True``, 0..n-1 in every arm
    (the same users, in the same order).
    """
    parts = []
    offset = 0
    for name, columns in arms.items():
        data = {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}
        n = len(next(iter(data.values()))) if data else 0
        ids = np.arange(n) if paired else np.arange(offset, offset + n)
        offset += n
        part = pl.DataFrame({USER: ids, ARM: [name] * n, **data})
        pre = [c for c in data if "_pre_" in c]
        if pre:
            part = part.with_columns(pl.col(c).fill_nan(None) for c in pre)
        parts.append(part)
    return pl.concat(parts, how="vertical")
