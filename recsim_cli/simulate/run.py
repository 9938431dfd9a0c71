"""Generate a world and its logs from a config, and write them to a folder.

The stages draw from their own generators, derived from ``config.seed`` with
``spawn_generators`` in the order of ``STAGES``, so the same config gives the
same world, sessions and logs, byte for byte. ``arms`` (the assignment of
users to the config's arms) comes last, so worlds without arms draw exactly
what they drew before arms existed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from recsim_cli.errors import ConfigError
from recsim_cli.io import write_csv_gz_atomic
from recsim_cli.progress import Progress, no_progress
from recsim_cli.rng import spawn_generators
from recsim_cli.simulate.config import WorldConfig
from recsim_cli.simulate.logs import (
    SimulationSummary,
    as_csv_text,
    events_frame,
    items_frame,
    summarize,
)
from recsim_cli.simulate.policies import SplitPolicy
from recsim_cli.simulate.policy import LoggingPolicy, SlatePolicy
from recsim_cli.simulate.sessions import Impressions, Sessions, draw_sessions, simulate_sessions
from recsim_cli.simulate.storage import save_world
from recsim_cli.simulate.world import IntArray, World, build_world

STAGES = ("world", "sessions", "pools", "behaviour", "arms")
EVENTS_FILE = "events.csv.gz"
ITEMS_FILE = "items.csv.gz"


@dataclass(frozen=True, eq=False)
class SimulatedLogs:
    """A world, its sessions, the policy that served them, and every impression.

    ``user_arm`` is each user's arm (an index into ``world.config.arms``), or
    None when one logging policy served everybody.
    """

    world: World
    sessions: Sessions
    policy: SlatePolicy
    impressions: Impressions
    user_arm: IntArray | None = None

    def summary(self) -> SimulationSummary:
        """Return the headline figures (and each arm's, when there are arms)."""
        return summarize(self.world, self.sessions, self.impressions, self.user_arm)


def simulate_logs(config: WorldConfig, progress: Progress = no_progress) -> SimulatedLogs:
    """Build the world of ``config`` and log its sessions under its policy or its arms' policies."""
    rng = spawn_generators(config.seed, STAGES)
    progress("world", 0, 1)
    world = build_world(config, rng["world"])
    sessions = draw_sessions(world, rng["sessions"])
    progress("world", 1, 1)
    progress("pools", 0, 1)
    policy: SlatePolicy
    user_arm = None
    if config.arms:
        split = SplitPolicy.build(
            world, sessions.user, sessions.day, assignment=rng["arms"], pools=rng["pools"]
        )
        policy, user_arm = split, split.user_arm
    else:
        policy = LoggingPolicy.build(world, sessions.user, sessions.day, rng["pools"])
    progress("pools", 1, 1)
    impressions = simulate_sessions(world, policy, sessions, rng["behaviour"], progress)
    return SimulatedLogs(world, sessions, policy, impressions, user_arm)


def write_logs(
    logs: SimulatedLogs, out: Path | str, progress: Progress = no_progress
) -> list[Path]:
    """Write the world and the logs into folder ``out``, each file atomically; return the paths.

    Each file is replaced whole or not at all; ``world.json`` is written last.
    """
    return write_world_files(
        out,
        logs.world,
        lambda: events_frame(logs.world, logs.sessions, logs.impressions, logs.user_arm),
        progress=progress,
    )


def write_world_files(
    out: Path | str,
    world: World,
    events: Callable[[], pl.DataFrame],
    *,
    progress: Progress = no_progress,
    continuation: dict[str, Any] | None = None,
) -> list[Path]:
    """Write the catalogue, ``events()``, then the world into ``out``; return the paths.

    Each file is replaced whole or not at all; ``world.json`` (with the
    ``continuation`` record, when given) is written last.
    """
    out = check_out(out)
    progress("write", 0, 3)
    try:
        write_csv_gz_atomic(as_csv_text(items_frame(world)), out / ITEMS_FILE)
        progress("write", 1, 3)
        write_csv_gz_atomic(as_csv_text(events()), out / EVENTS_FILE)
        progress("write", 2, 3)
        json_path, npz_path = save_world(world, out, continuation)
    except OSError as exc:
        raise ConfigError(
            f"cannot write to --out {out} ({exc.strerror}); give a folder you can write to."
        ) from None
    progress("write", 3, 3)
    return [out / EVENTS_FILE, out / ITEMS_FILE, json_path, npz_path]


def check_out(out: Path | str) -> Path:
    """Return ``out`` as a Path, or raise ConfigError if it is an existing file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder to write the world and logs to.")
    return out


def run_simulation(
    config: WorldConfig, out: Path | str, progress: Progress = no_progress
) -> SimulationSummary:
    """Simulate ``config`` and write everything into ``out``; return the summary."""
    check_out(out)  # before the work, not after
    logs = simulate_logs(config, progress)
    write_logs(logs, out, progress)
    return logs.summary()
