"""The typed, frozen configuration of a simulated world, validated at construction.

``WorldConfig`` holds the sizes and the logging policy's knobs a user sets from
the command line; three nested parameter sets hold everything else, with the
defaults documented in docs/simulator.md. ``arms`` (empty by default) splits
users between named live policies. Every value is recorded in ``world.json``,
and ``WorldConfig.from_dict(config.to_dict()) == config``.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field, fields
from typing import Any

from recsim_cli.errors import ConfigError, check_int
from recsim_cli.simulate.arms import Arm, arms_from_list, check_arms

DEVICES: tuple[str, ...] = ("mobile", "desktop", "tv")
CATEGORIES: tuple[str, ...] = (
    "music",
    "gaming",
    "news",
    "sports",
    "comedy",
    "education",
    "science",
    "cooking",
    "travel",
    "fashion",
    "beauty",
    "autos",
    "pets",
    "film",
    "kids",
    "fitness",
    "diy",
    "tech",
    "politics",
    "vlogs",
)
DEFAULT_START = dt.date(2026, 1, 5)  # a Monday; fixed so default runs are reproducible


@dataclass(frozen=True)
class PopulationParams:
    """How users and items are drawn (tastes, activity, hours, devices, durations)."""

    n_factors: int = 16  # dimension of taste and topic vectors
    topic_noise: float = 0.5  # spread of an item's topic around its category's centroid
    taste_noise: float = 0.6  # spread of a user's taste around their two favourite categories
    activity_mean: float = 0.6  # mean sessions per user per day (log-normal across users)
    activity_sigma: float = 1.0  # sigma of log activity: a few heavy users, many light ones
    weekend_factor: float = 1.25  # sessions on Saturday and Sunday are this much more frequent
    device_shares: tuple[float, float, float] = (0.6, 0.25, 0.15)  # preferred device mix
    device_loyalty: float = 0.8  # chance a session is on the user's preferred device
    peak_hours: tuple[float, ...] = (8.0, 13.0, 20.5)  # modes of users' preferred hours (UTC)
    peak_weights: tuple[float, ...] = (0.15, 0.25, 0.6)
    hour_spread: tuple[float, float] = (1.5, 3.5)  # range of a user's hour spread (hours)
    session_spacing_s: int = 1800  # a user's sessions of a day start at least this far apart
    duration_median_s: float = 480.0  # log-normal video durations, clipped to the range below
    duration_sigma: float = 1.0
    duration_min_s: int = 30
    duration_max_s: int = 7200
    catalogue_days: int = 90  # uploads run at a constant rate from this many days before start

    def validate(self) -> None:
        """Raise ConfigError for the first invalid value."""
        _check(self.n_factors >= 1, "n_factors", "at least 1", self.n_factors)
        _check(self.topic_noise >= 0, "topic_noise", "non-negative", self.topic_noise)
        _check(self.taste_noise >= 0, "taste_noise", "non-negative", self.taste_noise)
        _check(self.activity_mean > 0, "activity_mean", "positive", self.activity_mean)
        _check(self.activity_sigma >= 0, "activity_sigma", "non-negative", self.activity_sigma)
        _check(self.weekend_factor > 0, "weekend_factor", "positive", self.weekend_factor)
        _check_distribution("device_shares", self.device_shares, len(DEVICES))
        _check(0 <= self.device_loyalty <= 1, "device_loyalty", "in [0, 1]", self.device_loyalty)
        _check_distribution("peak_weights", self.peak_weights, len(self.peak_hours))
        _check(
            all(0 <= h < 24 for h in self.peak_hours), "peak_hours", "in [0, 24)", self.peak_hours
        )
        lo, hi = self.hour_spread
        _check(0 < lo <= hi, "hour_spread", "a range 0 < low <= high", self.hour_spread)
        _check(
            self.session_spacing_s >= 0,
            "session_spacing_s",
            "non-negative",
            self.session_spacing_s,
        )
        _check(self.duration_median_s > 0, "duration_median_s", "positive", self.duration_median_s)
        _check(self.duration_sigma >= 0, "duration_sigma", "non-negative", self.duration_sigma)
        _check(
            1 <= self.duration_min_s <= self.duration_max_s,
            "duration_min_s",
            "at least 1 and at most duration_max_s",
            self.duration_min_s,
        )
        _check(self.catalogue_days >= 1, "catalogue_days", "at least 1", self.catalogue_days)


@dataclass(frozen=True)
class BehaviourParams:
    """The user behaviour model: examination, click, watch and continuation (see docs)."""

    position_bias: float = 0.7  # eta in P(examine position p) = 1 / (1 + p) ** eta
    click_intercept: float = -3.4
    click_affinity: float = 3.0  # weight of taste-topic cosine affinity
    click_quality: float = 0.7  # weight of the item's latent quality
    click_freshness: float = 1.0  # weight of exp(-age / freshness_days)
    freshness_days: float = 2.0
    click_device: tuple[float, float, float] = (0.0, -0.2, 0.1)  # mobile, desktop, tv
    click_device_duration: tuple[float, float, float] = (-0.3, 0.0, 0.3)  # x standardised log dur
    click_hour: float = 0.3  # amplitude of the daily cycle of appeal
    click_hour_peak: float = 21.0  # UTC hour when appeal peaks
    watch_intercept: float = -1.5
    watch_affinity: float = 2.0
    watch_quality: float = 0.5
    watch_device: tuple[float, float, float] = (0.0, 0.1, 0.4)
    watch_duration: float = 0.4  # longer videos are watched to a smaller fraction
    watch_concentration: float = 3.0  # kappa: Beta(m * kappa, (1 - m) * kappa)
    continue_intercept: float = -0.3
    continue_watch: float = 2.5  # weight of the slate's mean watch fraction
    gap_min_s: float = 2.0  # pause between slates: gap_min_s + Exponential(gap_mean_s)
    gap_mean_s: float = 10.0

    def validate(self) -> None:
        """Raise ConfigError for the first invalid value."""
        _check(self.position_bias >= 0, "position_bias", "non-negative", self.position_bias)
        _check(self.freshness_days > 0, "freshness_days", "positive", self.freshness_days)
        _check(
            0 <= self.click_hour_peak < 24, "click_hour_peak", "in [0, 24)", self.click_hour_peak
        )
        _check(
            self.watch_concentration > 0,
            "watch_concentration",
            "positive",
            self.watch_concentration,
        )
        _check(self.gap_min_s >= 1, "gap_min_s", "at least 1 second", self.gap_min_s)
        _check(self.gap_mean_s >= 0, "gap_mean_s", "non-negative", self.gap_mean_s)
        for name in ("click_device", "click_device_duration", "watch_device"):
            value = getattr(self, name)
            _check(len(value) == len(DEVICES), name, f"{len(DEVICES)} numbers", value)
        for f in fields(self):
            value = getattr(self, f.name)
            values = value if isinstance(value, tuple) else (value,)
            _check(all(math.isfinite(v) for v in values), f.name, "finite", value)


@dataclass(frozen=True)
class LoggingParams:
    """How the logging policy draws each user-day's candidate pool and production ranking."""

    personal_share: float = 0.5  # share of pool slots drawn from the user's favoured categories
    fresh_share: float = 0.15  # share of pool slots drawn from the latest uploads
    fresh_days: float = 3.0  # "latest uploads": published in this many days before midnight
    taste_sharpness: float = 4.0  # beta in P(category) ~ exp(beta * taste . centroid)
    production_freshness: float = 1.0  # weight of freshness (at midnight) in the production score
    production_noise: float = 1.5  # sd of the daily noise in the production score

    def validate(self) -> None:
        """Raise ConfigError for the first invalid value."""
        _check(0 <= self.personal_share <= 1, "personal_share", "in [0, 1]", self.personal_share)
        _check(
            0 <= self.fresh_share <= 1 - self.personal_share + 1e-12,
            "fresh_share",
            "in [0, 1 - personal_share]",
            self.fresh_share,
        )
        _check(self.fresh_days > 0, "fresh_days", "positive", self.fresh_days)
        _check(self.taste_sharpness >= 0, "taste_sharpness", "non-negative", self.taste_sharpness)
        _check(
            self.production_noise >= 0, "production_noise", "non-negative", self.production_noise
        )
        _check(
            math.isfinite(self.production_freshness),
            "production_freshness",
            "finite",
            self.production_freshness,
        )


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines a simulated world and its logs, with the seed.

    Construction validates every value and raises ConfigError naming the first
    bad one, so an invalid config never exists. ``arms`` is empty for the
    usual single logging policy; otherwise each user is assigned to one arm
    and that arm's policy serves all of the user's sessions.
    """

    users: int = 2000
    items: int = 3000
    days: int = 14
    slate_size: int = 10
    pool_size: int = 100
    epsilon: float = 0.2
    start: dt.date = DEFAULT_START
    seed: int = 0
    population: PopulationParams = field(default_factory=PopulationParams)
    behaviour: BehaviourParams = field(default_factory=BehaviourParams)
    logging: LoggingParams = field(default_factory=LoggingParams)
    arms: tuple[Arm, ...] = ()

    def __post_init__(self) -> None:
        check_int(self.users, "users", 1)
        check_int(self.items, "items", 1)
        check_int(self.days, "days", 1)
        check_int(self.slate_size, "slate_size", 1)
        check_int(self.pool_size, "pool_size", 1)
        check_int(self.seed, "seed", 0)
        if self.pool_size < self.slate_size:
            raise ConfigError(
                f"pool_size must be at least slate_size ({self.slate_size}), since a slate is "
                f"drawn from the pool; got {self.pool_size}."
            )
        if self.items < self.pool_size:
            raise ConfigError(
                f"items must be at least pool_size ({self.pool_size}), since each user-day's "
                f"pool holds that many distinct items; got {self.items}."
            )
        if not (isinstance(self.epsilon, int | float) and 0 < self.epsilon <= 1):
            raise ConfigError(
                "epsilon must be in (0, 1], the share of slates drawn at random; "
                f"got {self.epsilon}."
            )
        if not isinstance(self.start, dt.date) or isinstance(self.start, dt.datetime):
            raise ConfigError(f"start must be a date like 2026-01-05; got {self.start!r}.")
        self.population.validate()
        self.behaviour.validate()
        self.logging.validate()
        check_arms(self.arms)

    @property
    def max_slates(self) -> int:
        """Slates a session can show before the pool is used up: floor(pool_size / slate_size)."""
        return self.pool_size // self.slate_size

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (tuples as lists, the start date as ISO text).

        ``arms`` is left out when empty, so worlds without arms keep the
        ``world.json`` they always had.
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "arms":
                if value:
                    out["arms"] = [arm.to_dict() for arm in value]
            elif isinstance(value, PopulationParams | BehaviourParams | LoggingParams):
                out[f.name] = {k: _jsonable(getattr(value, k)) for k in _names(value)}
            elif isinstance(value, dt.date):
                out[f.name] = value.isoformat()
            else:
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldConfig:
        """Rebuild a config from ``to_dict`` output; unknown keys are a ConfigError."""
        data = dict(data)
        _reject_unknown("world config", data, {f.name for f in fields(cls)})
        nested: dict[str, type[PopulationParams | BehaviourParams | LoggingParams]] = {
            "population": PopulationParams,
            "behaviour": BehaviourParams,
            "logging": LoggingParams,
        }
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in nested:
                kind = nested[key]
                _reject_unknown(f"{key} parameters", value, {f.name for f in fields(kind)})
                params: dict[str, Any] = {
                    k: tuple(v) if isinstance(v, list) else v for k, v in value.items()
                }
                kwargs[key] = kind(**params)
            elif key == "start":
                kwargs[key] = parse_start(value)
            elif key == "arms":
                kwargs[key] = arms_from_list(value)
            else:
                kwargs[key] = value
        return cls(**kwargs)


def parse_start(text: str) -> dt.date:
    """Parse the first day of the log window from ISO text (YYYY-MM-DD)."""
    try:
        return dt.date.fromisoformat(text)
    except (TypeError, ValueError):
        raise ConfigError(f"start must be a date like 2026-01-05; got {text!r}.") from None


def _names(obj: object) -> list[str]:
    return [f.name for f in fields(obj)]  # type: ignore[arg-type]


def _jsonable(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _reject_unknown(what: str, data: object, known: set[str]) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a JSON object; got {type(data).__name__}.")
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{what} has unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}."
        )


def _check(ok: bool, name: str, expected: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {expected}; got {value!r}.")


def _check_distribution(name: str, weights: tuple[float, ...], length: int) -> None:
    _check(
        len(weights) == length and all(w >= 0 for w in weights) and abs(sum(weights) - 1) < 1e-9,
        name,
        f"{length} non-negative weights summing to 1",
        weights,
    )
