"""The experiment statistics engine and the ship gate: arrays and frames in, dataclasses out.

**The seam.** The engine reads one polars DataFrame of per-user sufficient
statistics, one row per (user, arm): ``user_id``, ``arm`` and, for every
metric ``m``, ``m_num`` and ``m_den`` (the sums of the metric's numerator and
denominator over the user's units; ``den = 1`` for a plain per-user mean),
optionally ``m_pre_num`` and ``m_pre_den`` over a pre-period for CUPED (null
where the user has none). Whatever reads logs (logged A/B tests, off-policy
estimators, a Spark engine) only has to produce that frame; see
``recsim_cli.experiment.frame`` and ``docs/statistics.md``.

**The engine** knows nothing of logs, models or files. ``analyse`` returns an
``ExperimentResult``; ``decide`` turns it into a ship decision under a
``Gate`` loaded with ``load_gate``. The vectorised core (``compare`` on
``Sample`` arrays) is what both ``analyse`` and the validation simulations
call. Heavy imports (``scipy.stats``) happen inside functions, so importing
this package costs only numpy and polars.

Modules, in the order data flows: ``metrics`` (registry), ``frame`` (the
contract), ``ratio`` (delta method), ``cuped``, ``winsor``, ``effects``
(tests and intervals), ``comparison`` (the vectorised core), ``health``,
``multiple``, ``power``, ``bootstrap``, ``results``, ``analysis``, ``gate``
(with ``verdicts``); ``synthetic`` and ``validate`` reproduce the validation
figures.

Above the engine, and not imported here (they read datasets): ``logged``
builds the frame from a dataset's events, ``abtest`` runs dataset -> frame ->
analysis -> decision into an ``AbTestReport``, ``plan`` sizes experiments,
and ``markdown`` renders a report for CI.
"""

from __future__ import annotations

from recsim_cli.experiment.analysis import analyse
from recsim_cli.experiment.comparison import Comparison, Sample, compare
from recsim_cli.experiment.frame import frame_from_arrays
from recsim_cli.experiment.gate import Decision, Gate, check_alpha, decide, load_gate, parse_gate
from recsim_cli.experiment.health import HealthCheck
from recsim_cli.experiment.metrics import METRICS, MetricDef, get_metric, register_metric
from recsim_cli.experiment.results import ExperimentResult, MetricResult

__all__ = [
    "METRICS",
    "Comparison",
    "Decision",
    "ExperimentResult",
    "Gate",
    "HealthCheck",
    "MetricDef",
    "MetricResult",
    "Sample",
    "analyse",
    "check_alpha",
    "compare",
    "decide",
    "frame_from_arrays",
    "get_metric",
    "load_gate",
    "parse_gate",
    "register_metric",
]
