"""Decide whether to ship: a gate file and the rule that reads an ExperimentResult.

A gate is a TOML file, validated once on load into a frozen :class:`Gate`::

    alpha = 0.05                 # the gate's alpha wins over any --alpha
    split = [0.5, 0.5]           # intended (control, treatment) traffic split
    min_users_per_arm = 50

    [[primary]]
    metric = "watch_time"
    better = "higher"

    [[guardrail]]
    metric = "ctr"
    better = "higher"
    margin = 0.01                # relative: may not drop by more than 1%

:func:`decide` applies the rule of ``docs/gate.md``, in this order:

1. **invalid** (exit 4) if any health check failed;
2. **no ship** (exit 1) if a primary metric is significantly worse (adjusted
   p <= alpha), or a guardrail is beyond its margin with confidence: its
   one-sided (1 - alpha) bound *towards* the good side is still past the margin;
3. **ship** (exit 0) if at least one primary is significantly better, none is
   significantly worse, and every guardrail's one-sided (1 - alpha) bound on
   the bad side lies inside its margin (a level-alpha non-inferiority test);
4. **inconclusive** (exit 3) otherwise, with each primary's MDE and the users
   per arm needed, including when a guardrail's relative change is undefined.

Guardrail bounds are relative changes (Fieller by default, with the one-sided
critical value ``t_{1-alpha, df}``); they are not alpha-adjusted. The
per-metric judgements and their sentences live in ``verdicts.py``.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from recsim_cli.errors import ConfigError, ExitCode, InputFileError
from recsim_cli.experiment.effects import RELATIVE_METHODS
from recsim_cli.experiment.health import DEFAULT_MIN_USERS
from recsim_cli.experiment.metrics import (
    DIRECTIONS,
    METRICS,
    Direction,
    Evidence,
    weakest_evidence,
)
from recsim_cli.experiment.multiple import CORRECTION_NAMES
from recsim_cli.experiment.power import DEFAULT_POWER
from recsim_cli.experiment.results import ExperimentResult
from recsim_cli.experiment.verdicts import MetricVerdict, judge_guardrail, judge_primary

Verdict = Literal["ship", "no_ship", "inconclusive", "invalid"]
EXIT_CODES: dict[str, ExitCode] = {
    "ship": ExitCode.OK,
    "no_ship": ExitCode.NO_SHIP,
    "inconclusive": ExitCode.INCONCLUSIVE,
    "invalid": ExitCode.INVALID,
}
TOP_KEYS = (
    "alpha",
    "correction",
    "guardrail",
    "min_effective_sample_size",
    "min_users_per_arm",
    "power",
    "primary",
    "relative_ci",
    "split",
)
PRIMARY_KEYS = ("better", "mde", "metric")
# Off-policy estimates with fewer effective samples than this are invalid (exit 4).
DEFAULT_MIN_ESS = 500
GUARDRAIL_KEYS = ("better", "margin", "metric")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class PrimarySpec:
    """A primary metric: the gate ships on a significant improvement of one of these."""

    metric: str
    better: Direction
    mde: float | None = None  # relative effect worth detecting, for the sample-size advice

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as TOML/JSON-ready values (``mde`` only when set)."""
        out: dict[str, Any] = {"metric": self.metric, "better": self.better}
        if self.mde is not None:
            out["mde"] = self.mde
        return out


@dataclass(frozen=True)
class GuardrailSpec:
    """A guardrail metric: may not move in its bad direction by more than ``margin``."""

    metric: str
    better: Direction
    margin: float  # relative: 0.01 allows at most a 1% change for the worse

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as TOML/JSON-ready values."""
        return {"metric": self.metric, "better": self.better, "margin": self.margin}


@dataclass(frozen=True)
class Gate:
    """A validated gate: the decision policy of ``recsim abtest --gate``."""

    primary: tuple[PrimarySpec, ...]
    guardrail: tuple[GuardrailSpec, ...] = ()
    alpha: float = 0.05
    split: tuple[float, float] = (0.5, 0.5)
    min_users_per_arm: int = DEFAULT_MIN_USERS
    power: float = DEFAULT_POWER
    correction: str = "holm"
    relative_ci: str = "fieller"
    min_effective_sample_size: int = DEFAULT_MIN_ESS  # off-policy estimates only
    source: str = field(default="gate", compare=False)

    def __post_init__(self) -> None:
        _validate(self.to_dict(), self.source)

    @property
    def primary_metrics(self) -> tuple[str, ...]:
        """Names of the primary metrics, in file order."""
        return tuple(p.metric for p in self.primary)

    @property
    def guardrail_metrics(self) -> tuple[str, ...]:
        """Names of the guardrail metrics, in file order."""
        return tuple(g.metric for g in self.guardrail)

    def analysis_options(self) -> dict[str, Any]:
        """Return the ``analyse`` keyword arguments this gate fixes."""
        return {
            "metrics": list(self.primary_metrics),
            "guardrails": list(self.guardrail_metrics),
            "alpha": self.alpha,
            "split": self.split,
            "min_users_per_arm": self.min_users_per_arm,
            "power": self.power,
            "correction": self.correction,
            "relative_ci": self.relative_ci,
        }

    def to_dict(self) -> dict[str, Any]:
        """Return the gate as the TOML document's values."""
        return {
            "alpha": self.alpha,
            "split": list(self.split),
            "min_users_per_arm": self.min_users_per_arm,
            "power": self.power,
            "correction": self.correction,
            "relative_ci": self.relative_ci,
            "min_effective_sample_size": self.min_effective_sample_size,
            "primary": [p.to_dict() for p in self.primary],
            "guardrail": [g.to_dict() for g in self.guardrail],
        }

    def to_toml(self) -> str:
        """Write the gate as a TOML document that :func:`parse_gate` reads back equal."""
        data = self.to_dict()
        lines = [
            f"{key} = {_toml_value(data[key])}"
            for key in (
                "alpha",
                "split",
                "min_users_per_arm",
                "power",
                "correction",
                "relative_ci",
                "min_effective_sample_size",
            )
        ]
        for table in ("primary", "guardrail"):
            for entry in data[table]:
                lines += ["", f"[[{table}]]"]
                lines += [f"{k} = {_toml_value(v)}" for k, v in entry.items()]
        return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for these plain names
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)  # shortest repr round-trips exactly
    return str(value)


def _validate(data: Mapping[str, Any], src: str) -> None:
    """Raise ``ConfigError`` naming the first key of ``data`` that is not a valid gate."""
    for key in data:
        if key not in TOP_KEYS:
            raise ConfigError(f"{src}: unknown key '{key}'; valid keys: {', '.join(TOP_KEYS)}.")
    alpha = data.get("alpha", 0.05)
    if not _is_number(alpha) or not 0 < alpha < 0.5:
        raise ConfigError(f"{src}: alpha must be a number in (0, 0.5), e.g. 0.05; got {alpha!r}.")
    split = data.get("split", [0.5, 0.5])
    if (
        not isinstance(split, list | tuple)
        or len(split) != 2
        or not all(_is_number(s) and s > 0 for s in split)
        or abs(sum(split) - 1.0) > 1e-9
    ):
        raise ConfigError(
            f"{src}: split must be two positive numbers [control, treatment] summing to 1, "
            f"e.g. [0.5, 0.5]; got {split!r}."
        )
    users = data.get("min_users_per_arm", DEFAULT_MIN_USERS)
    if isinstance(users, bool) or not isinstance(users, int) or users < 2:
        raise ConfigError(f"{src}: min_users_per_arm must be an integer >= 2; got {users!r}.")
    ess = data.get("min_effective_sample_size", DEFAULT_MIN_ESS)
    if isinstance(ess, bool) or not isinstance(ess, int) or ess < 1:
        raise ConfigError(
            f"{src}: min_effective_sample_size must be an integer >= 1, e.g. 500; got {ess!r}."
        )
    power = data.get("power", DEFAULT_POWER)
    if not _is_number(power) or not 0 < power < 1:
        raise ConfigError(f"{src}: power must be a number in (0, 1), e.g. 0.8; got {power!r}.")
    for key, names in (("correction", CORRECTION_NAMES), ("relative_ci", RELATIVE_METHODS)):
        value = data.get(key, names[0])
        if value not in names:
            raise ConfigError(
                f"{src}: {key} must be one of {', '.join(sorted(names))}; got {value!r}."
            )
    seen: dict[str, str] = {}
    for table, keys in (("primary", PRIMARY_KEYS), ("guardrail", GUARDRAIL_KEYS)):
        entries = data.get(table, [])
        if not isinstance(entries, list | tuple) or not all(
            isinstance(e, Mapping) for e in entries
        ):
            raise ConfigError(f"{src}: '{table}' must be tables written [[{table}]].")
        for number, entry in enumerate(entries, start=1):
            where = f"{src}: [[{table}]] #{number}"
            _validate_entry(entry, where, keys, table)
            metric = entry["metric"]
            if metric in seen:
                raise ConfigError(
                    f"{src}: metric '{metric}' appears twice ({seen[metric]} and [[{table}]] "
                    f"#{number}); list each metric once."
                )
            seen[metric] = f"[[{table}]] #{number}"
    if not data.get("primary"):
        raise ConfigError(
            f"{src}: needs at least one [[primary]] metric, e.g. [[primary]] with "
            'metric = "watch_time".'
        )


def _validate_entry(
    entry: Mapping[str, Any], where: str, keys: tuple[str, ...], table: str
) -> None:
    for key in entry:
        if key not in keys:
            raise ConfigError(f"{where} has unknown key '{key}'; valid keys: {', '.join(keys)}.")
    if "metric" not in entry:
        raise ConfigError(f'{where} has no metric; add e.g. metric = "ctr".')
    metric = entry["metric"]
    if not isinstance(metric, str) or metric not in METRICS:
        raise ConfigError(
            f"{where} has unknown metric {metric!r}. Available: {', '.join(METRICS)}."
        )
    better = entry.get("better", METRICS[metric].better)
    if better not in DIRECTIONS:
        raise ConfigError(f"{where} better must be 'higher' or 'lower'; got {better!r}.")
    if table == "guardrail":
        if "margin" not in entry:
            raise ConfigError(
                f"{where} has no margin; add e.g. margin = 0.01 (the largest relative change "
                "for the worse allowed)."
            )
        margin = entry["margin"]
        if not _is_number(margin) or not 0 <= margin < 1:
            raise ConfigError(
                f"{where} margin must be a number in [0, 1) (a relative change: 0.01 is 1%); "
                f"got {margin!r}."
            )
    mde = entry.get("mde")
    if mde is not None and (not _is_number(mde) or not 0 < mde < 10):
        raise ConfigError(
            f"{where} mde must be a positive relative effect (0.02 is 2%); got {mde!r}."
        )


def parse_gate(data: Mapping[str, Any], source: str = "gate") -> Gate:
    """Validate a parsed TOML document and return the :class:`Gate` it describes."""
    _validate(data, source)
    primary = tuple(
        PrimarySpec(
            e["metric"],
            e.get("better", METRICS[e["metric"]].better),
            None if e.get("mde") is None else float(e["mde"]),
        )
        for e in data["primary"]
    )
    guardrail = tuple(
        GuardrailSpec(e["metric"], e.get("better", METRICS[e["metric"]].better), float(e["margin"]))
        for e in data.get("guardrail", [])
    )
    split = data.get("split", [0.5, 0.5])
    return Gate(
        primary=primary,
        guardrail=guardrail,
        alpha=float(data.get("alpha", 0.05)),
        split=(float(split[0]), float(split[1])),
        min_users_per_arm=int(data.get("min_users_per_arm", DEFAULT_MIN_USERS)),
        power=float(data.get("power", DEFAULT_POWER)),
        correction=str(data.get("correction", "holm")),
        relative_ci=str(data.get("relative_ci", "fieller")),
        min_effective_sample_size=int(data.get("min_effective_sample_size", DEFAULT_MIN_ESS)),
        source=source,
    )


def load_gate(path: str | Path) -> Gate:
    """Read and validate the gate TOML file at ``path``."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(
            f"{source}: no such gate file; write one as in docs/gate.md."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{source}: cannot read the gate file ({exc}).") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc}).") from exc
    return parse_gate(data, source)


def check_alpha(gate: Gate, alpha: float | None) -> float:
    """Return the gate's alpha; a different alpha asked for by the user is an error."""
    if alpha is not None and not math.isclose(alpha, gate.alpha, rel_tol=0, abs_tol=1e-12):
        raise ConfigError(
            f"--alpha {alpha:g} conflicts with alpha = {gate.alpha:g} in {gate.source}; the "
            "gate's alpha decides, so drop --alpha or change the gate file."
        )
    return gate.alpha


@dataclass(frozen=True)
class Decision:
    """The gate's decision: verdict, exit code, and the sentences that justify it."""

    verdict: Verdict
    reasons: tuple[str, ...]
    metrics: tuple[MetricVerdict, ...] = ()
    # A ship's evidence: the weakest of the primaries that shipped it (online > off-policy).
    evidence: Evidence | None = None

    @property
    def exit_code(self) -> ExitCode:
        """The process exit code of this verdict (0 ship, 1 no ship, 3, 4)."""
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        """Return the decision as plain JSON-ready values."""
        return {
            "verdict": self.verdict,
            "exit_code": int(self.exit_code),
            "reasons": list(self.reasons),
            "metrics": [m.to_dict() for m in self.metrics],
            "evidence": self.evidence,
        }


def _same(a: object, b: object) -> bool:
    """Compare settings, floats up to rounding (a split is stored normalised)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _check_consistent(result: ExperimentResult, gate: Gate) -> None:
    settings = result.settings
    pairs = (
        ("alpha", settings.alpha, gate.alpha),
        ("correction", settings.correction, gate.correction),
        ("relative_ci", settings.relative_method, gate.relative_ci),
        ("split", settings.split, gate.split),
        ("min_users_per_arm", settings.min_users_per_arm, gate.min_users_per_arm),
        ("power", settings.power, gate.power),
        (
            "primary metrics",
            tuple(m.metric for m in result.by_role("primary")),
            gate.primary_metrics,
        ),
        (
            "guardrail metrics",
            tuple(m.metric for m in result.by_role("guardrail")),
            gate.guardrail_metrics,
        ),
    )
    for name, used, wanted in pairs:
        if not _same(used, wanted):
            raise ConfigError(
                f"the result was analysed with {name} {used!r} but {gate.source} says "
                f"{wanted!r}; analyse with the gate's settings (Gate.analysis_options())."
            )


def decide(result: ExperimentResult, gate: Gate) -> Decision:
    """Apply the gate to an analysed experiment: ship, no ship, inconclusive or invalid.

    In order: invalid if a health check failed; no ship if a primary is
    significantly worse or a guardrail beyond its margin; ship if a primary is
    significantly better and every guardrail within its margin; else
    inconclusive. ``result`` must be analysed with ``gate.analysis_options()``.
    """
    _check_consistent(result, gate)  # so every metric looked up below exists
    if not result.healthy:
        return Decision("invalid", tuple(c.detail for c in result.failed_checks))
    primaries = [judge_primary(result.metric(s.metric), s, gate) for s in gate.primary]
    guards = [judge_guardrail(result.metric(s.metric), s, gate) for s in gate.guardrail]
    verdicts = tuple(primaries + guards)
    bad = [v for v in verdicts if v.outcome in ("worse", "beyond")]
    if bad:
        return Decision("no_ship", tuple(v.reason for v in bad), verdicts)
    if any(v.outcome == "better" for v in primaries) and all(v.outcome == "within" for v in guards):
        good = [v for v in verdicts if v.outcome in ("better", "within")]
        evidence = [
            result.metric(v.metric).evidence or "online" for v in primaries if v.outcome == "better"
        ]
        return Decision("ship", tuple(v.reason for v in good), verdicts, weakest_evidence(evidence))
    open_ = [
        v
        for v in verdicts
        if v.outcome in ("no_change", "better_model_based", "unknown", "undefined")
    ]
    return Decision("inconclusive", tuple(v.reason for v in open_), verdicts)
