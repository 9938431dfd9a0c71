"""The world: what build_world draws, and an exact save/load round trip without pickle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recsim_cli.errors import ConfigError, DatasetError
from recsim_cli.simulate import World, WorldConfig, build_world, load_world, save_world
from recsim_cli.simulate.storage import npz_bytes
from recsim_cli.simulate.world import DAY_S, back_catalogue_size

CONFIG = WorldConfig(users=300, items=800, days=5, seed=11)


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(CONFIG, np.random.default_rng(1))


def test_shapes_and_ranges(world: World) -> None:
    k = CONFIG.population.n_factors
    assert world.user_taste.shape == (300, k)
    assert world.item_topic.shape == (800, k)
    np.testing.assert_allclose(np.linalg.norm(world.user_taste, axis=1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(world.item_topic, axis=1), 1.0)
    assert (world.user_activity > 0).all()
    assert ((world.user_peak_hour >= 0) & (world.user_peak_hour < 24)).all()
    assert set(np.unique(world.user_device)) <= {0, 1, 2}
    assert world.item_duration_s.min() >= 30
    assert world.item_duration_s.max() <= 7200
    assert set(np.unique(world.item_category)) <= set(range(20))


def test_items_are_in_publication_order_with_uploads_every_day(world: World) -> None:
    published = world.item_published_ts
    assert (np.diff(published) >= 0).all()
    n_back = back_catalogue_size(CONFIG)
    assert (published[:n_back] < world.start_ts).all()
    assert (published[n_back:] >= world.start_ts).all()
    upload_day = (published[n_back:] - world.start_ts) // DAY_S
    assert set(upload_day.tolist()) == set(range(CONFIG.days))


def test_back_catalogue_always_fills_a_pool() -> None:
    config = WorldConfig(users=5, items=100, days=400, pool_size=100, seed=0)
    assert back_catalogue_size(config) == 100


def test_same_generator_state_same_world() -> None:
    a = build_world(CONFIG, np.random.default_rng(5))
    b = build_world(CONFIG, np.random.default_rng(5))
    c = build_world(CONFIG, np.random.default_rng(6))
    assert npz_bytes(a.arrays()) == npz_bytes(b.arrays())
    assert npz_bytes(a.arrays()) != npz_bytes(c.arrays())


def test_save_load_round_trip_is_exact(world: World, tmp_path: Path) -> None:
    save_world(world, tmp_path)
    loaded = load_world(tmp_path)
    assert loaded.config == world.config
    for name, array in world.arrays().items():
        got = getattr(loaded, name)
        assert got.dtype == array.dtype, name
        np.testing.assert_array_equal(got, array, err_msg=name)


def test_saving_twice_gives_identical_bytes(world: World, tmp_path: Path) -> None:
    save_world(world, tmp_path / "a")
    save_world(world, tmp_path / "b")
    for name in ("world.json", "world.npz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_npz_holds_no_pickles(world: World, tmp_path: Path) -> None:
    save_world(world, tmp_path)
    with np.load(tmp_path / "world.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(world.arrays())


def test_load_reports_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"world\.json does not exist"):
        load_world(tmp_path)


def test_load_detects_a_changed_array_file(world: World, tmp_path: Path) -> None:
    save_world(world, tmp_path)
    other = build_world(CONFIG, np.random.default_rng(2))
    (tmp_path / "world.npz").write_bytes(npz_bytes(other.arrays()))
    with pytest.raises(DatasetError, match="does not match the SHA-256"):
        load_world(tmp_path)


def test_load_checks_format_version_and_config(world: World, tmp_path: Path) -> None:
    save_world(world, tmp_path)
    meta = json.loads((tmp_path / "world.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "world.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"format_version 99; this recsim reads 1"):
        load_world(tmp_path)
    meta["format_version"] = 1
    meta["config"]["epsilon"] = 2.0
    (tmp_path / "world.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="epsilon must be in"):
        load_world(tmp_path)
