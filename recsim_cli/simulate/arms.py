"""The arms of a split-traffic experiment in the simulated world: label, policy, share.

``WorldConfig.arms`` holds them (empty for the usual single logging policy).
Each user is assigned to one arm with probability ``share``, and that arm's
policy serves every session of the user; the events' ``policy`` column holds
the arm's label. The policies themselves are in ``recsim_cli.simulate.policies``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from recsim_cli.errors import ConfigError

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Arm:
    """One arm: its label in the logs, the name of its logging policy, and its share of users."""

    label: str
    policy: str
    share: float

    def validate(self) -> None:
        """Raise ConfigError (UnknownNameError for the policy) if a value is invalid."""
        # Imported here: the policies build on the world, whose config imports this module.
        from recsim_cli.simulate.policies import get_policy

        if not isinstance(self.label, str) or not _LABEL.match(self.label):
            raise ConfigError(
                f"arm label {self.label!r} must start with a letter or digit and hold only "
                "letters, digits, '_', '.' and '-'."
            )
        get_policy(self.policy)
        if not (_is_number(self.share) and 0 < self.share <= 1):
            raise ConfigError(
                f"the share of arm '{self.label}' must be in (0, 1]; got {self.share!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the arm as JSON-ready values (what ``world.json`` records)."""
        return {"label": self.label, "policy": self.policy, "share": self.share}


def arms_from_names(names: Sequence[str], shares: Sequence[float] | None = None) -> tuple[Arm, ...]:
    """Return the arms of ``--policies`` names and ``--split`` weights, shares summing to 1.

    A name is a policy (``prod``: the arm is labelled ``prod``) or
    ``LABEL=POLICY`` (``A=prod``), so one policy can serve two arms, as in an
    A/A test. Without ``shares`` every arm gets the same share; weights are
    normalised, so 50/50 and 1/1 are the same split.
    """
    names = [n.strip() for n in names]
    if len(names) < 2:
        raise ConfigError(
            "--policies needs at least two policies separated by commas, e.g. prod,explore; "
            f"got {','.join(names)!r}."
        )
    weights = [1.0] * len(names) if shares is None else list(shares)
    if len(weights) != len(names):
        raise ConfigError(
            f"--split has {len(weights)} shares but --policies names {len(names)} arms; "
            "give one share per arm, e.g. --split 50/50."
        )
    if not all(_is_number(w) and w > 0 for w in weights):
        raise ConfigError(f"--split shares must be positive numbers; got {weights!r}.")
    total = math.fsum(weights)
    arms = []
    for name, weight in zip(names, weights, strict=True):
        label, _, policy = name.rpartition("=")
        policy = policy.strip()
        arms.append(Arm(label=label.strip() or policy, policy=policy, share=weight / total))
    return tuple(arms)


def check_arms(arms: object) -> None:
    """Raise ConfigError unless ``arms`` is empty, or 2+ valid arms whose shares sum to 1."""
    if not isinstance(arms, tuple) or not all(isinstance(a, Arm) for a in arms):
        raise ConfigError(f"arms must be a tuple of Arm; got {arms!r}.")
    if not arms:
        return
    if len(arms) < 2:
        raise ConfigError(f"an experiment needs at least two arms; got only '{arms[0].label}'.")
    seen: set[str] = set()
    for arm in arms:
        arm.validate()
        if arm.label in seen:
            raise ConfigError(
                f"arm label '{arm.label}' is given twice; label the arms apart, "
                f"e.g. --policies A={arm.policy},B={arm.policy}."
            )
        seen.add(arm.label)
    total = math.fsum(a.share for a in arms)
    if abs(total - 1) > 1e-9:
        raise ConfigError(f"the arms' shares must sum to 1; got {total!r}.")


def arms_from_list(value: object) -> tuple[Arm, ...]:
    """Rebuild arms from their ``world.json`` form (a list of objects)."""
    if not isinstance(value, list):
        raise ConfigError(f"arms must be a JSON list; got {type(value).__name__}.")
    known = {f.name for f in fields(Arm)}
    arms = []
    for entry in value:
        if not isinstance(entry, dict) or set(entry) != known:
            raise ConfigError(
                f"each arm must be an object with exactly the keys {', '.join(sorted(known))}; "
                f"got {entry!r}."
            )
        arms.append(Arm(**entry))
    return tuple(arms)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
