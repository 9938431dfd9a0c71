"""Turn a simulation into the tables a user would bring: events and items, plus a summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from recsim_cli.simulate.arms import Arm
from recsim_cli.simulate.config import CATEGORIES, DEVICES
from recsim_cli.simulate.sessions import Impressions, Sessions
from recsim_cli.simulate.world import IntArray, World

EVENT_COLUMNS = (
    "user_id",
    "item_id",
    "ts",
    "session_id",
    "slate",
    "position",
    "clicked",
    "watch_time_s",
    "device",
    "propensity",
    "explore",
)
ITEM_COLUMNS = ("item_id", "published_ts", "duration_s", "category")
TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # ISO 8601 UTC, whole seconds


def events_frame(
    world: World,
    sessions: Sessions,
    impressions: Impressions,
    user_arm: IntArray | None = None,
    *,
    arm_labels: Sequence[str] | None = None,
    first_session: int = 0,
) -> pl.DataFrame:
    """Return one row per impression with the columns of ``events.csv.gz``.

    ``ts`` is a UTC datetime; ids are strings: users ``u000123``, items
    ``v004567``, sessions ``s0000042`` (numbered in order of start, from
    ``first_session``, so a continuation's ids follow the earlier logs'). With
    ``user_arm`` (each user's index into ``arm_labels``, by default the labels
    of ``world.config.arms``) a ``policy`` column holds the label of the arm
    that served the impression, before ``explore`` as in the data contract.
    """
    config = world.config
    session = impressions.session
    session_ids = id_series("s", len(sessions), 7, start=first_session)
    frame = pl.DataFrame(
        {
            "user_id": id_series("u", config.users, 6).gather(sessions.user[session]),
            "item_id": id_series("v", config.items, 6).gather(impressions.item),
            "ts": pl.Series(impressions.ts * 1000, dtype=pl.Int64).cast(
                pl.Datetime("ms", time_zone="UTC")
            ),
            "session_id": session_ids.gather(session),
            "slate": pl.Series(impressions.slate, dtype=pl.Int32),
            "position": pl.Series(impressions.position, dtype=pl.Int32),
            "clicked": impressions.clicked,
            "watch_time_s": impressions.watch_time_s,
            "device": pl.Series(DEVICES, dtype=pl.String).gather(sessions.device[session]),
            "propensity": impressions.propensity,
            "explore": impressions.explore,
        }
    ).select(EVENT_COLUMNS)
    if user_arm is None:
        return frame
    if arm_labels is None:
        arm_labels = [arm.label for arm in config.arms]
    labels = pl.Series(list(arm_labels), dtype=pl.String)
    policy = labels.gather(user_arm[sessions.user[session]]).alias("policy")
    return frame.insert_column(frame.columns.index("explore"), policy)


def items_frame(world: World) -> pl.DataFrame:
    """Return the catalogue with the columns of ``items.csv.gz``, in publication order."""
    return pl.DataFrame(
        {
            "item_id": id_series("v", world.config.items, 6),
            "published_ts": pl.Series(world.item_published_ts * 1000, dtype=pl.Int64).cast(
                pl.Datetime("ms", time_zone="UTC")
            ),
            "duration_s": world.item_duration_s,
            "category": pl.Series(CATEGORIES, dtype=pl.String).gather(world.item_category),
        }
    ).select(ITEM_COLUMNS)


def id_series(prefix: str, count: int, min_digits: int, start: int = 0) -> pl.Series:
    """Return the ids of ``count`` things: ``prefix`` and a zero-padded index (``u000042``).

    Indices run from ``start``; the width is that of ids 0 .. start + count - 1.
    """
    width = max(min_digits, len(str(max(start + count - 1, 0))))
    index = np.arange(start, start + count)
    digits = pl.Series(index, dtype=pl.Int64).cast(pl.String).str.zfill(width)
    return (prefix + digits).alias(prefix)


def as_csv_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Format datetime columns as ISO 8601 UTC text (``2026-01-05T08:15:03Z``) for CSV."""
    return frame.with_columns(pl.col(pl.Datetime).dt.strftime(TS_FORMAT))


@dataclass(frozen=True)
class ArmSummary:
    """Headline figures of one arm of a split-traffic simulation."""

    label: str
    policy: str
    share: float  # intended share of users
    users: int  # users of the arm with at least one session
    sessions: int
    impressions: int
    ctr: float
    mean_watch_time_per_session_s: float
    mean_session_depth: float

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class SimulationSummary:
    """Headline figures of a simulated log (and of each arm, when users were split)."""

    impressions: int
    sessions: int
    users: int  # users with at least one session
    items: int  # items in the catalogue
    items_shown: int
    clicks: int
    ctr: float
    mean_watch_time_per_session_s: float
    mean_session_depth: float  # videos watched per session
    mean_slates_per_session: float
    exploration_share: float  # share of impressions on explore slates
    seed: int
    arms: tuple[ArmSummary, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-ready dict (``arms`` only when users were split)."""
        out = asdict(self)
        del out["arms"]
        if self.arms:
            out["arms"] = [arm.to_dict() for arm in self.arms]
        return out


def summarize(
    world: World,
    sessions: Sessions,
    impressions: Impressions,
    user_arm: IntArray | None = None,
    *,
    arms: Sequence[Arm] | None = None,
    seed: int | None = None,
) -> SimulationSummary:
    """Compute the headline figures of a simulation, per arm too when ``user_arm`` is given.

    ``arms`` are what ``user_arm`` indexes (default ``world.config.arms``);
    ``seed`` is the one recorded (default the world's).
    """
    n_imp, n_ses = len(impressions), len(sessions)
    clicks = int(impressions.clicked.sum())
    n_slates = int((impressions.position == 0).sum())
    if arms is None:
        arms = world.config.arms
    by_arm = () if user_arm is None else _arm_summaries(arms, sessions, impressions, user_arm)
    return SimulationSummary(
        impressions=n_imp,
        sessions=n_ses,
        users=int(np.unique(sessions.user).size),
        items=world.config.items,
        items_shown=int(np.unique(impressions.item).size),
        clicks=clicks,
        ctr=_ratio(clicks, n_imp),
        mean_watch_time_per_session_s=_ratio(float(impressions.watch_time_s.sum()), n_ses),
        mean_session_depth=_ratio(clicks, n_ses),
        mean_slates_per_session=_ratio(n_slates, n_ses),
        exploration_share=_ratio(int(impressions.explore.sum()), n_imp),
        seed=world.config.seed if seed is None else seed,
        arms=by_arm,
    )


def _arm_summaries(
    arms: Sequence[Arm], sessions: Sessions, impressions: Impressions, user_arm: IntArray
) -> tuple[ArmSummary, ...]:
    k = len(arms)
    session_arm = user_arm[sessions.user]
    impression_arm = session_arm[impressions.session]
    users = np.bincount(user_arm[np.unique(sessions.user)], minlength=k)
    n_ses = np.bincount(session_arm, minlength=k)
    n_imp = np.bincount(impression_arm, minlength=k)
    clicks = np.bincount(
        impression_arm, weights=impressions.clicked.astype(np.float64), minlength=k
    )
    watch = np.bincount(impression_arm, weights=impressions.watch_time_s, minlength=k)
    return tuple(
        ArmSummary(
            label=arm.label,
            policy=arm.policy,
            share=arm.share,
            users=int(users[a]),
            sessions=int(n_ses[a]),
            impressions=int(n_imp[a]),
            ctr=_ratio(float(clicks[a]), int(n_imp[a])),
            mean_watch_time_per_session_s=_ratio(float(watch[a]), int(n_ses[a])),
            mean_session_depth=_ratio(float(clicks[a]), int(n_ses[a])),
        )
        for a, arm in enumerate(arms)
    )


def _ratio(num: float, den: int) -> float:
    # Rounded so the JSON summary reads well and does not depend on summation order.
    return round(num / den, 6) if den else 0.0
