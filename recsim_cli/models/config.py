"""The training configuration: every hyper-parameter of `recsim train`, frozen and validated.

A config comes from defaults, then a TOML file (``--config``), then flags, the
later winning. The TOML file has the same keys as `TrainConfig`; the
candidate generator's and the ranker's own hyper-parameters sit in the tables
``[candidate_params]`` and ``[ranker_params]``::

    candidates = "als"
    n_candidates = 200
    ranker = "lightgbm"
    objective = "watch_time"
    test_days = 2
    ranker_days = 2
    seed = 0

    [candidate_params]
    factors = 64

    [ranker_params]
    num_leaves = 31

`TrainConfig.to_toml` writes a file `TrainConfig.from_toml` reads back to an
equal config (tested).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final, Literal, get_args

from recsim_cli.errors import ConfigError, InputFileError, check_int

RankerKind = Literal["lightgbm", "none"]
Objective = Literal["watch_time", "click", "lambdarank"]
RANKERS: Final = get_args(RankerKind)
OBJECTIVES: Final = get_args(Objective)
Scalar = bool | int | float | str


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what `recsim train` learns (see docs/models.md)."""

    candidates: str = "als"
    """Candidate generator: popular, fresh, als, bpr or itemknn."""
    n_candidates: int = 200
    """Items per user the candidate stage passes to the ranker."""
    ranker: RankerKind = "lightgbm"
    """``lightgbm``, or ``none`` to serve the candidate order."""
    objective: Objective = "watch_time"
    """What the ranker optimises: watch_time, click or lambdarank."""
    test_days: int = 2
    """Days at the end of the dataset held out from training."""
    ranker_days: int = 2
    """Last days of the training window whose impressions train the ranker."""
    negatives_per_positive: int = 4
    """For logs of watches only: sampled negatives per watch."""
    exclude_seen: bool = True
    """Leave out items the user already watched."""
    seed: int = 0
    num_threads: int = 1
    """Threads of LightGBM (fixed, for determinism)."""
    candidate_params: Mapping[str, Scalar] = field(default_factory=dict)
    ranker_params: Mapping[str, Scalar] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_int(self.n_candidates, "n_candidates", 1)
        check_int(self.test_days, "test_days", 0)
        check_int(self.ranker_days, "ranker_days", 1)
        check_int(self.negatives_per_positive, "negatives_per_positive", 1)
        check_int(self.seed, "seed", 0)
        check_int(self.num_threads, "num_threads", 1)
        if not isinstance(self.candidates, str) or not self.candidates:
            raise ConfigError(f"candidates must be a generator name; got {self.candidates!r}.")
        if self.ranker not in RANKERS:
            raise ConfigError(f"ranker must be one of {', '.join(RANKERS)}; got {self.ranker!r}.")
        if self.objective not in OBJECTIVES:
            raise ConfigError(
                f"objective must be one of {', '.join(OBJECTIVES)}; got {self.objective!r}."
            )
        if not isinstance(self.exclude_seen, bool):
            raise ConfigError(f"exclude_seen must be true or false; got {self.exclude_seen!r}.")
        for name in ("candidate_params", "ranker_params"):
            table = getattr(self, name)
            if not isinstance(table, Mapping):
                raise ConfigError(f"{name} must be a table of values; got {table!r}.")
            for key, value in table.items():
                if not isinstance(value, bool | int | float | str) or (
                    isinstance(value, float) and not math.isfinite(value)
                ):
                    raise ConfigError(f"{name}.{key} must be a number, string or boolean.")
            # freeze the tables: a config never changes after validation
            object.__setattr__(self, name, dict(sorted(table.items())))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["candidate_params"] = dict(self.candidate_params)
        out["ranker_params"] = dict(self.ranker_params)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key '{unknown[0]}'; valid keys: {', '.join(sorted(known))}."
            )
        return cls(**dict(data))

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        """A copy with the given (non-None) values replaced, e.g. from command-line flags."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **given)

    @classmethod
    def from_toml(cls, path: Path | str) -> TrainConfig:
        """Read a config file; a missing file or bad value is a `ConfigError` naming it."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputFileError(
                f"Cannot read config {path} ({exc.strerror}); check the --config path."
            ) from exc
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML ({exc}).") from exc
        try:
            return cls.from_dict(data, source=str(path))
        except TypeError as exc:  # pragma: no cover - from_dict checks keys first
            raise ConfigError(f"{path}: {exc}.") from exc

    def to_toml(self) -> str:
        """The config as a TOML file that `from_toml` reads back to an equal config."""
        lines: list[str] = []
        tables: list[str] = []
        for key, value in self.to_dict().items():
            if isinstance(value, Mapping):
                body = "".join(f"{k} = {_toml_value(v)}\n" for k, v in value.items())
                tables.append(f"\n[{key}]\n{body}")
            else:
                lines.append(f"{key} = {_toml_value(value)}\n")
        return "".join(lines) + "".join(tables)


def _toml_value(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    escaped = "".join(_toml_char(c) for c in value)
    return f'"{escaped}"'


def _toml_char(char: str) -> str:
    """One character of a TOML basic string: quotes, backslashes and controls escaped."""
    if char in ('"', "\\"):
        return "\\" + char
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"\\u{ord(char):04x}"
    return char
