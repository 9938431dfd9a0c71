"""The committed sample_data/: reproducible byte for byte, in the documented format."""

from __future__ import annotations

import shlex
from pathlib import Path

import polars as pl
import pytest

from recsim_cli.simulate import WorldConfig, load_world, run_simulation

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_data"
FILES = ("events.csv.gz", "items.csv.gz", "world.json", "world.npz")


@pytest.fixture(scope="module")
def config() -> WorldConfig:
    return load_world(SAMPLE).config


def test_regenerating_gives_identical_bytes(config: WorldConfig, tmp_path: Path) -> None:
    run_simulation(config, tmp_path)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name


def test_makefile_regenerates_this_sample(config: WorldConfig) -> None:
    """`make sample-data` passes the flags recorded in world.json; the rest are defaults."""
    line = next(
        line
        for line in (REPO / "Makefile").read_text().splitlines()
        if "recsim simulate" in line and "--out sample_data" in line
    )
    words = shlex.split(line.split("recsim simulate", 1)[1])
    flags = dict(zip(words[::2], words[1::2], strict=True))
    expected = WorldConfig(
        users=int(flags.pop("--users")),
        items=int(flags.pop("--items")),
        days=int(flags.pop("--days")),
        seed=int(flags.pop("--seed")),
    )
    assert flags == {"--out": "sample_data"}
    assert expected == config


def test_sample_is_small_yet_big_enough() -> None:
    total = sum((SAMPLE / name).stat().st_size for name in FILES)
    assert total < 5_000_000
    events = pl.read_csv(SAMPLE / "events.csv.gz")
    assert 100_000 <= events.height <= 200_000


def test_events_have_the_documented_columns_and_formats() -> None:
    events = pl.read_csv(SAMPLE / "events.csv.gz", infer_schema=False)
    assert events.columns == [
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
    ]
    patterns = {
        "user_id": r"^u\d{6}$",
        "item_id": r"^v\d{6}$",
        "ts": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$",
        "session_id": r"^s\d{7}$",
        "clicked": r"^(true|false)$",
        "explore": r"^(true|false)$",
        "device": r"^(mobile|desktop|tv)$",
    }
    for column, pattern in patterns.items():
        assert events[column].str.contains(pattern).all(), column
    items = pl.read_csv(SAMPLE / "items.csv.gz", infer_schema=False)
    assert items.columns == ["item_id", "published_ts", "duration_s", "category"]
    assert items["published_ts"].str.contains(patterns["ts"]).all()
