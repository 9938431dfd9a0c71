"""What serves a continued world: a model's lists, epsilon-exploration, and a live test.

``recsim simulate --continue`` serves the days it logs from a registry
model's precomputed top lists, as a site serves what it exported:

* **The lists** are made once, as of midnight of the first new day, for every
  user of the world: from the registry with ``daily_lists`` (the function the
  off-policy estimators and the online truth use), or read from the
  key-value store the model was exported to (``recsim_cli.serve.reader``).
  The same list then serves every new day. A list holds L = ``pool_size //
  slate_size`` whole slates (``list_length``); a store holding shorter lists
  serves as many whole slates as it holds.
* **Exploration.** ``ListPolicy`` shows slate k as ranks kS .. kS+S-1, or
  with probability epsilon a uniformly random ordered sample of S of the L
  items, and logs the exact propensity
  ``(1 - epsilon) * 1[rank of i == kS + p] + epsilon / L``, so the next
  off-policy estimate has explored impressions to weight.
* **A live test.** With a test model, each user is hashed with a salt of
  (seed, test label) into the test with probability ``test_share``; the rest
  get the served model. The events' ``policy`` column holds the label each
  model was given (``production``, ``candidate``), what ``recsim abtest
  --arm-column policy`` reads.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recsim_cli.errors import ConfigError, UserError
from recsim_cli.progress import Progress, no_progress
from recsim_cli.simulate.logs import id_series
from recsim_cli.simulate.online import ListPolicy, list_length
from recsim_cli.simulate.policies import SplitPolicy
from recsim_cli.simulate.policy import BoolArray, LoggingPolicy, SlatePolicy
from recsim_cli.simulate.world import IntArray, World
from recsim_cli.times import format_ts

if TYPE_CHECKING:
    from recsim_cli.dataset import Dataset
    from recsim_cli.registry import ModelEntry

REGISTRY_SOURCE = "registry"


@dataclass(frozen=True)
class ServedArm:
    """A model serving a continuation: its label in the logs, the model, its lists' source.

    ``source`` is ``registry`` (lists made from the registry model) or the
    URL of the store the lists were read from.
    """

    label: str
    model: str
    fingerprint: str
    source: str
    share: float
    list_length: int

    def to_dict(self) -> dict[str, Any]:
        """Return the arm as JSON-ready values (what ``world.json`` records)."""
        return {
            "label": self.label,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "source": self.source,
            "share": self.share,
            "list_length": self.list_length,
        }


@dataclass(frozen=True, eq=False)
class StaticListPolicy(ListPolicy):
    """A ``ListPolicy`` whose lists of day ``list_day`` serve every day.

    The lists are made once, at the start of a continuation, and not refreshed
    until the model is retrained and exported again.
    """

    list_day: int = 0

    def rows(self, users: IntArray, days: IntArray) -> IntArray:
        """Return the list row of each user (the day is ignored: one list serves every day)."""
        return super().rows(users, np.full(len(users), self.list_day, dtype=np.int64))


@dataclass(frozen=True, eq=False)
class Deployment:
    """The policy serving a continuation, each user's arm, and what each arm serves."""

    arms: tuple[ServedArm, ...]
    policy: SlatePolicy
    user_arm: IntArray  # (users,) index into arms


def live_test_users(user_ids: pl.Series, share: float, salt: str) -> BoolArray:
    """Return which users a live test serves: a salted hash of the id below ``share``.

    Each user is hashed on its own (BLAKE2b of ``salt``, a NUL and the id, the
    first 8 bytes read as a fraction of 2**64), so the assignment is sticky
    across runs and independent of the other users, and the users in the test
    vary binomially around ``share``, as with a real hash-based split.
    """
    prefix = salt.encode() + b"\0"
    draws = np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(prefix + uid.encode(), digest_size=8).digest(), "big")
            for uid in user_ids.cast(pl.String).to_list()
        ),
        dtype=np.float64,
        count=len(user_ids),
    )
    return np.asarray(draws / 2.0**64 < share, dtype=np.bool_)


def deploy(
    world: World,
    *,
    first_day: int,
    serve: str,
    registry: Path,
    epsilon: float = 0.2,
    source: str | None = None,
    data: Path | None = None,
    test: str | None = None,
    test_share: float = 0.01,
    seed: int = 0,
    progress: Progress = no_progress,
) -> Deployment:
    """Build the policy that serves ``world`` from day index ``first_day`` on.

    ``serve`` (a registry model or alias) serves everybody, or with ``test``
    everybody outside the live test. Its lists are read from the store at
    ``source`` when given (the store must serve this very model: same name and
    fingerprint), else made from the registry model as of midnight of
    ``first_day`` from its dataset (or ``data``). A test model's lists always
    come from the registry. Every list is served with ``epsilon``-exploration.
    """
    from recsim_cli.registry import Registry

    config = world.config
    if not (isinstance(epsilon, int | float) and 0 < epsilon <= 1):
        raise ConfigError(
            f"--epsilon must be in (0, 1], the share of slates served at random; got {epsilon}."
        )
    if test is not None:
        if test == serve:
            raise ConfigError(
                f"--test names the served model '{serve}'; give another model to test against it."
            )
        if not (isinstance(test_share, int | float) and 0 < test_share < 1):
            raise ConfigError(
                f"--test-share must be in (0, 1), the share of users the test model serves; "
                f"got {test_share}."
            )
    store = Registry(registry)
    entries = [store.open(serve)] + ([store.open(test)] if test is not None else [])
    on = config.start + timedelta(days=first_day)
    users = id_series("u", config.users, 6).alias("user_id")
    length = list_length(world)
    served_lists: pl.DataFrame | None = None
    if source is not None:
        served_lists, length = _store_lists(source, serve, entries[0], users, world)
    made = _registry_lists(
        entries[1 if served_lists is not None else 0 :],
        on=on,
        users=users,
        length=length,
        data=data,
        progress=progress,
    )
    lists = ([served_lists] if served_lists is not None else []) + made
    labels = [serve] + ([test] if test is not None else [])
    in_test = (
        live_test_users(users, test_share, f"{seed}:{test}")
        if test is not None
        else np.zeros(config.users, dtype=np.bool_)
    )
    shares = [1.0 - test_share, test_share] if test is not None else [1.0]
    sources = [source or REGISTRY_SOURCE] + ([REGISTRY_SOURCE] if test is not None else [])
    policies = tuple(
        _static_policy(
            world,
            frame.with_columns(pl.lit(on).alias("day")),
            day=first_day,
            length=length,
            epsilon=epsilon,
            label=label,
        )
        for frame, label in zip(lists, labels, strict=True)
    )
    arms = tuple(
        ServedArm(
            label=label,
            model=entry.name,
            fingerprint=entry.fingerprint,
            source=src,
            share=share,
            list_length=length,
        )
        for label, entry, src, share in zip(labels, entries, sources, shares, strict=True)
    )
    user_arm = in_test.astype(np.int64)
    policy: SlatePolicy = (
        SplitPolicy(tuple(labels), policies, user_arm) if len(policies) > 1 else policies[0]
    )
    return Deployment(arms=arms, policy=policy, user_arm=user_arm)


def _static_policy(
    world: World, lists: pl.DataFrame, *, day: int, length: int, epsilon: float, label: str
) -> LoggingPolicy:
    base = ListPolicy.from_lists(
        world,
        lists,
        world.config.slate_size,
        days=[day],
        length=length,
        epsilon=epsilon,
        source=f"the lists of {label}",
    )
    return StaticListPolicy(
        keys=base.keys,
        ranking=base.ranking,
        epsilon=base.epsilon,
        slate_size=base.slate_size,
        n_days=base.n_days,
        list_day=day,
    )


def _registry_lists(
    entries: list[ModelEntry],
    *,
    on: date,
    users: pl.Series,
    length: int,
    data: Path | None,
    progress: Progress,
) -> list[pl.DataFrame]:
    """Each model's top-``length`` list of every user, as of midnight of ``on``."""
    from recsim_cli.dataset import Dataset
    from recsim_cli.experiment.arms import daily_lists, model_arm

    opened: dict[str, tuple[Dataset, pl.DataFrame]] = {}
    out = []
    as_of = datetime.combine(on, time(), tzinfo=UTC)
    for entry in entries:
        arm = model_arm(entry)
        if arm.cutoff is not None and arm.cutoff > as_of:
            raise ConfigError(
                f"Model '{entry.name}' was trained on logs up to {format_ts(arm.cutoff)}, past "
                f"the end of this world's logs at {format_ts(as_of)}; continue the world's latest "
                "folder (the last --out of --continue)."
            )
        path = str(data) if data is not None else arm.dataset_path
        if path is None:
            raise ConfigError(f"Model '{entry.name}' does not record its dataset; give --data DIR.")
        if path not in opened:
            dataset = Dataset.open(path)
            opened[path] = (dataset, dataset.events().collect())
        dataset, events = opened[path]
        lists = daily_lists(
            arm,
            dataset=dataset,
            users=users,
            days=[on],
            length=length,
            progress=progress,
            events=events,
        )
        out.append(lists.select("user_id", "rank", "item_id"))
    return out


def _store_lists(
    url: str, serve: str, entry: ModelEntry, users: pl.Series, world: World
) -> tuple[pl.DataFrame, int]:
    """Read the served model's lists from the store at ``url``; return them and their length.

    The store must serve the registry's model ``serve`` names: the same model
    name and fingerprint. Users without a list (or with a short one) get the
    store's fallback list (`_fill_from_fallback`).
    """
    from recsim_cli.serve.reader import read_export

    export = read_export(url)
    if export.model != entry.name:
        raise UserError(
            f"The store at {url} serves {export.model}, not {serve}; export {serve} first "
            f"(recsim export {serve} --to {url})."
        )
    if export.fingerprint != entry.fingerprint:
        raise UserError(
            f"The store at {url} serves another build of {export.model} (fingerprint "
            f"{str(export.fingerprint)[:12]}, the registry's is {entry.fingerprint[:12]}), not "
            f"{serve}; export {serve} first (recsim export {serve} --to {url})."
        )
    size = world.config.slate_size
    length = min(list_length(world), (int(export.k) // size) * size)
    if length < size:
        raise ConfigError(
            f"The store at {url} holds lists of {export.k} items, fewer than a slate of {size}; "
            f"export {serve} again with at least {list_length(world)} items per list."
        )
    lists = export.lists.select(
        pl.col("user_id").cast(pl.String),
        pl.col("rank").cast(pl.Int32),
        pl.col("item_id").cast(pl.String),
    ).filter(pl.col("rank") < length)
    return _fill_from_fallback(lists, users, list(export.fallback), length), length


def _fill_from_fallback(
    lists: pl.DataFrame, users: pl.Series, fallback: list[str], length: int
) -> pl.DataFrame:
    """Give every user ``length`` items: a user's own list, then fallback items not in it.

    A user the store has no list for gets the fallback list, as a serving
    client does; a list shorter than ``length`` is topped up the same way.
    """
    counts = users.to_frame().join(
        lists.group_by("user_id").len(), on="user_id", how="left", maintain_order="left"
    )
    short = counts.filter(pl.col("len").fill_null(0) < length).select("user_id")
    if short.is_empty():
        return lists
    extra = pl.DataFrame(
        {
            "rank": pl.Series(range(length, length + len(fallback)), dtype=pl.Int32),
            "item_id": pl.Series(fallback, dtype=pl.String),
        }
    )
    topped = (
        pl.concat([lists.join(short, on="user_id", how="semi"), short.join(extra, how="cross")])
        .sort("user_id", "rank")
        .unique(["user_id", "item_id"], keep="first", maintain_order=True)
        .with_columns(pl.int_range(pl.len(), dtype=pl.Int32).over("user_id").alias("rank"))
        .filter(pl.col("rank") < length)
    )
    return pl.concat([lists.join(short, on="user_id", how="anti"), topped])
