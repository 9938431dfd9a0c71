"""WorldConfig: validation at construction, one clear sentence per error, JSON round trip."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from recsim_cli.errors import ConfigError
from recsim_cli.simulate import (
    BehaviourParams,
    LoggingParams,
    PopulationParams,
    WorldConfig,
    parse_start,
)


def test_defaults_are_valid_and_documented_values() -> None:
    config = WorldConfig()
    assert (config.slate_size, config.pool_size, config.epsilon) == (10, 100, 0.2)
    assert config.start == dt.date(2026, 1, 5)
    assert config.max_slates == 10


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"epsilon": 1.5},
            "epsilon must be in (0, 1], the share of slates drawn at random; got 1.5.",
        ),
        (
            {"epsilon": 0.0},
            "epsilon must be in (0, 1], the share of slates drawn at random; got 0.0.",
        ),
        (
            {"pool_size": 5},
            "pool_size must be at least slate_size (10), since a slate is drawn from the pool; "
            "got 5.",
        ),
        (
            {"items": 50},
            "items must be at least pool_size (100), since each user-day's pool holds that many "
            "distinct items; got 50.",
        ),
        ({"users": 0}, "users must be a whole number of at least 1; got 0."),
        ({"days": 2.5}, "days must be a whole number of at least 1; got 2.5."),
        ({"slate_size": True}, "slate_size must be a whole number of at least 1; got True."),
        ({"seed": -1}, "seed must be a whole number of at least 0; got -1."),
        ({"start": "2026-01-05"}, "start must be a date like 2026-01-05; got '2026-01-05'."),
        (
            {"population": PopulationParams(device_shares=(0.5, 0.5, 0.5))},
            "device_shares must be 3 non-negative weights summing to 1; got (0.5, 0.5, 0.5).",
        ),
        (
            {"behaviour": BehaviourParams(position_bias=-1.0)},
            "position_bias must be non-negative; got -1.0.",
        ),
        (
            {"logging": LoggingParams(personal_share=0.9, fresh_share=0.2)},
            "fresh_share must be in [0, 1 - personal_share]; got 0.2.",
        ),
    ],
)
def test_invalid_values_raise_one_sentence(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        WorldConfig(**changes)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_configs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        WorldConfig().users = 3  # type: ignore[misc]


def test_round_trip_through_json_is_exact() -> None:
    config = WorldConfig(
        users=10,
        items=200,
        days=3,
        epsilon=0.5,
        start=dt.date(2025, 2, 28),
        seed=9,
        behaviour=BehaviourParams(click_device=(0.1, 0.2, 0.3)),
        logging=LoggingParams(fresh_share=0.3),
    )
    text = json.dumps(config.to_dict(), sort_keys=True)
    assert WorldConfig.from_dict(json.loads(text)) == config


def test_from_dict_rejects_unknown_keys() -> None:
    data = WorldConfig().to_dict()
    data["behaviour"]["click_bias"] = 1.0
    with pytest.raises(ConfigError, match="behaviour parameters has unknown key"):
        WorldConfig.from_dict(data)


def test_parse_start() -> None:
    assert parse_start("2026-03-01") == dt.date(2026, 3, 1)
    with pytest.raises(ConfigError, match=r"^start must be a date like 2026-01-05; got 'soon'\.$"):
        parse_start("soon")
