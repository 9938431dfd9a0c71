"""A synthetic YouTube-like world with a known truth, and logs generated from it.

``run_simulation(WorldConfig(...), out)`` writes ``events.csv.gz``,
``items.csv.gz``, ``world.json`` and ``world.npz``. The pieces are public for
later work (true online A/B tests, logging any policy): the behaviour model is
in ``behaviour``, the policy seam (``SlatePolicy``) in ``policy``, and
``simulate_sessions`` runs any policy in a world. Named live policies
(``policies.POLICIES``) and ``WorldConfig.arms`` split users between them, as
in a logged A/B test. ``continue_simulation`` logs the next days of a saved
world, served from a model's lists (``continuation``, ``deployment``). See
docs/simulator.md and docs/loop.md.
"""

from recsim_cli.simulate.arms import Arm, arms_from_names
from recsim_cli.simulate.behaviour import (
    affinity,
    attraction_probability,
    click_probability,
    continue_probability,
    examination_probability,
    freshness,
    watch_fraction,
    watch_fraction_mean,
)
from recsim_cli.simulate.config import (
    CATEGORIES,
    DEVICES,
    BehaviourParams,
    LoggingParams,
    PopulationParams,
    WorldConfig,
    parse_start,
)
from recsim_cli.simulate.continuation import ContinuationSummary, continue_simulation
from recsim_cli.simulate.logs import (
    ArmSummary,
    SimulationSummary,
    events_frame,
    items_frame,
    summarize,
)
from recsim_cli.simulate.policies import POLICIES, NamedPolicy, SplitPolicy, get_policy
from recsim_cli.simulate.policy import LoggingPolicy, SlatePolicy, Slates, logging_propensity
from recsim_cli.simulate.run import SimulatedLogs, run_simulation, simulate_logs, write_logs
from recsim_cli.simulate.sessions import Impressions, Sessions, draw_sessions, simulate_sessions
from recsim_cli.simulate.storage import load_world, save_world
from recsim_cli.simulate.world import World, build_world

__all__ = [
    "CATEGORIES",
    "DEVICES",
    "POLICIES",
    "Arm",
    "ArmSummary",
    "BehaviourParams",
    "ContinuationSummary",
    "Impressions",
    "LoggingParams",
    "LoggingPolicy",
    "NamedPolicy",
    "PopulationParams",
    "Sessions",
    "SimulatedLogs",
    "SimulationSummary",
    "SlatePolicy",
    "Slates",
    "SplitPolicy",
    "World",
    "WorldConfig",
    "affinity",
    "arms_from_names",
    "attraction_probability",
    "build_world",
    "click_probability",
    "continue_probability",
    "continue_simulation",
    "draw_sessions",
    "events_frame",
    "examination_probability",
    "freshness",
    "get_policy",
    "items_frame",
    "load_world",
    "logging_propensity",
    "parse_start",
    "run_simulation",
    "save_world",
    "simulate_logs",
    "simulate_sessions",
    "summarize",
    "watch_fraction",
    "watch_fraction_mean",
    "write_logs",
]
