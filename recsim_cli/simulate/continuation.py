"""Continue a saved world's logs for more days, served by a model: the feedback loop.

``recsim simulate --continue --world DIR --serve NAME --out NEWDIR`` picks up
a world where its logs end and logs the next days, served from NAME's lists
(``simulate.deployment``). The world has no hidden state besides time (tastes,
qualities and behaviour are fixed), so continuing it means:

* **Days.** The world grows by ``days`` days: its config keeps its first day
  and counts every day logged so far, so NEWDIR's world spans the earlier
  logs and the new ones, and the new days are day indices
  ``old days .. old days + days - 1``.
* **Uploads.** Videos keep being published at the rate of the logged window
  (uploads since the first day / days so far, rounded), spread round-robin
  over the new days at uniform times of day; their traits are drawn as the
  world's first items' were (``world.draw_item_traits``), their categories by
  the catalogue's category mix. They take the next item ids, in order of
  publication, so an ``ingest --append`` of NEWDIR's items sees fresh items.
* **Sessions** of the new days are drawn as the world's were (``draw_sessions``
  on those days) and numbered after every session logged before, so session
  ids never collide with the earlier logs'.
* **Randomness.** Continuation streams come from
  ``SeedSequence([world seed, first new day index, seed])``: the same world,
  days and seed give the same bytes, and continuing NEWDIR draws new numbers.

What the next continuation needs (sessions logged so far) is recorded under
``continuation`` in NEWDIR's ``world.json``. A world written by a plain
``recsim simulate`` has no such record: its sessions are counted by drawing
them again from its seed, exactly as the simulation drew them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl

from recsim_cli.errors import ConfigError, DatasetError, check_int
from recsim_cli.progress import Progress, no_progress
from recsim_cli.rng import spawn_generators
from recsim_cli.simulate.arms import Arm
from recsim_cli.simulate.config import CATEGORIES
from recsim_cli.simulate.deployment import Deployment, ServedArm, deploy
from recsim_cli.simulate.logs import SimulationSummary, events_frame, summarize
from recsim_cli.simulate.sessions import Impressions, Sessions, draw_sessions, simulate_sessions
from recsim_cli.simulate.storage import WORLD_JSON, load_world_metadata
from recsim_cli.simulate.world import DAY_S, World, draw_item_traits

__all__ = [
    "CONTINUATION_STAGES",
    "DEFAULT_CONTINUE_DAYS",
    "ContinuationSummary",
    "ContinuedLogs",
    "LogState",
    "continuation_generators",
    "continue_logs",
    "continue_simulation",
    "extend_world",
    "log_state",
]

CONTINUATION_STAGES: Final = ("items", "sessions", "behaviour")
DEFAULT_CONTINUE_DAYS: Final = 7
_ID_DIGITS: Final = 6  # user and item ids' minimum width (``v000042``)


@dataclass(frozen=True)
class LogState:
    """How far a world's logs reach: where a continuation starts."""

    days: int
    """Days logged so far: the index of the next day."""
    sessions: int
    """Sessions logged so far, in every folder of the world: the number of the next session."""


def log_state(world: World, meta: dict[str, Any], *, source: str = WORLD_JSON) -> LogState:
    """Return where the logs of ``world`` end, from its ``world.json`` content ``meta``."""
    from recsim_cli.simulate.run import STAGES

    record = meta.get("continuation")
    if record is None:
        # A world as `recsim simulate` wrote it: its sessions are drawn again from its seed.
        sessions = draw_sessions(world, spawn_generators(world.config.seed, STAGES)["sessions"])
        return LogState(days=world.config.days, sessions=len(sessions))
    logged = record.get("sessions_logged") if isinstance(record, dict) else None
    if isinstance(logged, bool) or not isinstance(logged, int) or logged < 0:
        raise DatasetError(
            f"{source} has no valid continuation.sessions_logged (got {logged!r}); write the "
            "folder again with recsim simulate --continue."
        )
    return LogState(days=world.config.days, sessions=logged)


def continuation_generators(
    world: World, state: LogState, seed: int
) -> dict[str, np.random.Generator]:
    """One generator per `CONTINUATION_STAGES` stage, from (world seed, first new day, seed)."""
    check_int(seed, "seed", 0)
    children = np.random.SeedSequence([world.config.seed, state.days, seed]).spawn(
        len(CONTINUATION_STAGES)
    )
    return {
        name: np.random.default_rng(child)
        for name, child in zip(CONTINUATION_STAGES, children, strict=True)
    }


def extend_world(world: World, days: int, rng: np.random.Generator) -> World:
    """Return ``world`` grown by ``days`` days: the same users, the new days' uploads added.

    The new days upload as many videos per day as the world's logged days did
    on average (rounded over the ``days``), round-robin over the days at
    uniform times of day; item indices stay in order of publication.
    """
    check_int(days, "days", 1)
    config = world.config
    uploads = int(np.count_nonzero(world.item_published_ts >= world.start_ts))
    n_new = round(uploads * days / config.days)
    total = config.items + n_new
    if len(str(total - 1)) != len(str(config.items - 1)) and total - 1 >= 10**_ID_DIGITS:
        raise ConfigError(
            f"continuing {days} days would take the catalogue to {total} items and lengthen "
            "every item id; continue fewer days at a time from a smaller world."
        )
    first_ts = world.start_ts + config.days * DAY_S
    day = np.arange(n_new, dtype=np.int64) % days
    published = np.sort(first_ts + day * DAY_S + rng.integers(0, DAY_S, size=n_new))
    share = np.bincount(world.item_category, minlength=len(CATEGORIES)) / config.items
    category, topic, quality, duration_s = draw_item_traits(
        config, world.category_centroid, share, n_new, rng
    )
    return World(
        config=replace(config, days=config.days + days, items=total),
        category_centroid=world.category_centroid,
        user_taste=world.user_taste,
        user_activity=world.user_activity,
        user_peak_hour=world.user_peak_hour,
        user_hour_spread=world.user_hour_spread,
        user_device=world.user_device,
        item_topic=np.concatenate([world.item_topic, topic]),
        item_quality=np.concatenate([world.item_quality, quality]),
        item_published_ts=np.concatenate([world.item_published_ts, published.astype(np.int64)]),
        item_duration_s=np.concatenate([world.item_duration_s, duration_s]),
        item_category=np.concatenate([world.item_category, category]),
    )


@dataclass(frozen=True)
class ContinuationSummary:
    """Headline figures of a continuation, the days it logged, and what served them."""

    logs: SimulationSummary
    """The new days' figures (``seed`` is the continuation's), with one arm per served model."""
    first_day: date
    last_day: date
    first_session: int
    """Number of the first new session (its id is ``s`` and the number, zero-padded)."""
    new_items: int
    """Videos published during the new days."""
    epsilon: float
    world_seed: int
    served: tuple[ServedArm, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-ready values: the log's figures, then the continuation's."""
        return {
            **self.logs.to_dict(),
            "first_day": self.first_day.isoformat(),
            "last_day": self.last_day.isoformat(),
            "days": (self.last_day - self.first_day).days + 1,
            "first_session": self.first_session,
            "new_items": self.new_items,
            "epsilon": self.epsilon,
            "world_seed": self.world_seed,
            "served": [arm.to_dict() for arm in self.served],
        }


@dataclass(frozen=True, eq=False)
class ContinuedLogs:
    """The grown world, where its earlier logs ended, and the new days' sessions and impressions."""

    world: World
    state: LogState
    deployment: Deployment
    sessions: Sessions
    impressions: Impressions
    epsilon: float
    seed: int

    @property
    def first_day(self) -> date:
        """The first new day (UTC)."""
        return self.world.config.start + timedelta(days=self.state.days)

    @property
    def new_items(self) -> int:
        """Videos published during the new days."""
        return int(np.count_nonzero(self.world.item_published_ts >= self._first_ts))

    @property
    def _first_ts(self) -> int:
        return self.world.start_ts + self.state.days * DAY_S

    def events(self) -> pl.DataFrame:
        """The new days' impressions as ``events.csv.gz`` rows, with the ``policy`` column."""
        return events_frame(
            self.world,
            self.sessions,
            self.impressions,
            self.deployment.user_arm,
            arm_labels=[arm.label for arm in self.deployment.arms],
            first_session=self.state.sessions,
        )

    def record(self) -> dict[str, Any]:
        """What ``world.json`` records under ``continuation``, for the next continuation."""
        return {
            "first_day": self.first_day.isoformat(),
            "days": self.world.config.days - self.state.days,
            "first_session": self.state.sessions,
            "sessions_logged": self.state.sessions + len(self.sessions),
            "first_new_item": self.world.config.items - self.new_items,
            "epsilon": self.epsilon,
            "seed": self.seed,
            "served": [arm.to_dict() for arm in self.deployment.arms],
        }

    def summary(self) -> ContinuationSummary:
        """Return the headline figures, one arm per served model."""
        arms = tuple(Arm(a.label, a.model, a.share) for a in self.deployment.arms)
        logs = summarize(
            self.world,
            self.sessions,
            self.impressions,
            self.deployment.user_arm,
            arms=arms,
            seed=self.seed,
        )
        return ContinuationSummary(
            logs=logs,
            first_day=self.first_day,
            last_day=self.world.config.start + timedelta(days=self.world.config.days - 1),
            first_session=self.state.sessions,
            new_items=self.new_items,
            epsilon=self.epsilon,
            world_seed=self.world.config.seed,
            served=self.deployment.arms,
        )


def continue_logs(
    world: World,
    state: LogState,
    deployment: Deployment,
    rng: dict[str, np.random.Generator],
    *,
    epsilon: float,
    seed: int,
    progress: Progress = no_progress,
) -> ContinuedLogs:
    """Log the sessions of the days ``world`` (already grown) has after ``state.days``."""
    new_days = np.arange(state.days, world.config.days, dtype=np.int64)
    if not new_days.size:
        raise ConfigError("the world has no day after its logs; grow it with extend_world first.")
    sessions = draw_sessions(world, rng["sessions"], days=new_days)
    impressions = simulate_sessions(world, deployment.policy, sessions, rng["behaviour"], progress)
    return ContinuedLogs(world, state, deployment, sessions, impressions, epsilon, seed)


def continue_simulation(
    world_dir: Path | str,
    out: Path | str,
    *,
    serve: str,
    registry: Path | str,
    days: int = DEFAULT_CONTINUE_DAYS,
    epsilon: float = 0.2,
    source: str | None = None,
    data: Path | str | None = None,
    test: str | None = None,
    test_share: float = 0.01,
    seed: int = 0,
    progress: Progress = no_progress,
) -> ContinuationSummary:
    """Log the next ``days`` days of the world in ``world_dir``, served by ``serve``, into ``out``.

    ``out`` gets the four files of a simulation: the new days' events only
    (with a ``policy`` column), the whole catalogue, and the grown world with
    its ``continuation`` record, so ``recsim ingest --append`` adds the new
    logs to the dataset of the earlier ones and ``out`` can be continued again.
    Lists come from the registry model, or from the store at ``source``
    (``deployment.deploy``); ``test`` serves a live test to ``test_share`` of
    the users.
    """
    from recsim_cli.simulate.run import check_out, write_world_files

    world_dir, out = Path(world_dir), check_out(out)
    check_int(days, "--days", 1)
    if out.resolve() == world_dir.resolve():
        raise ConfigError(
            f"--out {out} is the --world folder; write the continuation to a new folder, so "
            "the earlier logs stay as they are."
        )
    world, meta = load_world_metadata(world_dir)
    state = log_state(world, meta, source=str(world_dir / WORLD_JSON))
    rng = continuation_generators(world, state, seed)
    progress("world", 0, 1)
    grown = extend_world(world, days, rng["items"])
    progress("world", 1, 1)
    deployment = deploy(
        grown,
        first_day=state.days,
        serve=serve,
        registry=Path(registry),
        epsilon=epsilon,
        source=source,
        data=None if data is None else Path(data),
        test=test,
        test_share=test_share,
        seed=seed,
        progress=progress,
    )
    logs = continue_logs(
        grown, state, deployment, rng, epsilon=epsilon, seed=seed, progress=progress
    )
    write_world_files(out, grown, logs.events, progress=progress, continuation=logs.record())
    return logs.summary()
