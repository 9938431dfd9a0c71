"""The data contract: schemas, the manifest, and opening a dataset folder."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from recsim_cli.dataset import (
    EVENTS_COLUMNS,
    EVENTS_SCHEMA,
    FORMAT_VERSION,
    ITEMS_COLUMNS,
    ITEMS_SCHEMA,
    MANIFEST_NAME,
    REJECTED_SCHEMA,
    Dataset,
    Manifest,
    parse_version_dir,
    version_dir_name,
)
from recsim_cli.errors import DatasetError
from recsim_cli.ingest import ingest

REPO = Path(__file__).resolve().parent.parent


def _dataset(tmp_path: Path) -> Path:
    log = tmp_path / "events.csv"
    log.write_text(
        "user_id,item_id,ts,clicked,watch_time_s\n"
        "u1,v1,2026-01-05T08:00:00Z,true,12.5\n"
        "u1,v2,2026-01-05T08:01:00Z,false,0\n"
        "u2,v1,2026-01-05T09:00:00Z,true,3\n"
        ",v1,2026-01-05T09:00:00Z,true,3\n"
    )
    items = tmp_path / "items.csv"
    items.write_text("item_id,duration_s\nv1,100\nv2,200\n")
    data = tmp_path / "data"
    ingest(log, items=items, data=data)
    return data


def test_contract_columns_in_order() -> None:
    assert EVENTS_SCHEMA.names() == [
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
        "policy",
        "explore",
    ]
    assert EVENTS_SCHEMA["ts"] == pl.Datetime("us", "UTC")
    assert ITEMS_SCHEMA.names() == ["item_id", "published_ts", "duration_s", "category"]
    assert REJECTED_SCHEMA.names()[:4] == ["table", "source", "row", "reason"]
    # Every contract column keeps its raw value in rejected rows, as a string.
    raw = set(REJECTED_SCHEMA.names()[4:])
    assert raw == {c.name for c in (*EVENTS_COLUMNS, *ITEMS_COLUMNS)}
    assert all(REJECTED_SCHEMA[c] == pl.String for c in raw)


def test_every_column_is_documented() -> None:
    doc = (REPO / "docs" / "data.md").read_text(encoding="utf-8")
    for column in (*EVENTS_COLUMNS, *ITEMS_COLUMNS):
        assert f"`{column.name}`" in doc


def test_version_dir_names() -> None:
    assert version_dir_name(3) == "v000003"
    assert parse_version_dir("v000003") == 3
    assert parse_version_dir("v3") is None
    assert parse_version_dir(".staging-v000003") is None


def test_open_reads_the_current_version(tmp_path: Path) -> None:
    data = _dataset(tmp_path)
    dataset = Dataset.open(data)
    assert dataset.version == 1
    assert dataset.has_items
    events = dataset.events().collect()
    assert events.schema == EVENTS_SCHEMA
    assert events.height == 3
    assert dataset.items().collect().schema == ITEMS_SCHEMA
    rejected = dataset.rejected().collect()
    assert rejected.schema == REJECTED_SCHEMA
    assert rejected.select("source", "row", "reason").rows() == [
        ("events.csv", 4, "user_id is empty")
    ]
    assert dataset.stats.rows == 3
    assert dataset.stats.ctr == pytest.approx(2 / 3)
    assert dataset.stats.mean_watch_time_s == pytest.approx(7.75)


def test_manifest_round_trips(tmp_path: Path) -> None:
    data = _dataset(tmp_path)
    text = (data / MANIFEST_NAME).read_text()
    manifest = Manifest.from_dict(json.loads(text))
    assert manifest.to_dict() == json.loads(text)
    assert manifest.format_version == FORMAT_VERSION


def test_open_without_manifest_says_how_to_create(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        Dataset.open(tmp_path / "nothing")
    path = tmp_path / "nothing"
    assert str(info.value) == (
        f"{path} is not a dataset (no manifest.json); create it with "
        f"recsim ingest LOGS --data {path}."
    )


def test_open_refuses_newer_format_and_missing_files(tmp_path: Path) -> None:
    data = _dataset(tmp_path)
    manifest = json.loads((data / MANIFEST_NAME).read_text())
    (data / MANIFEST_NAME).write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(DatasetError, match="format_version 99 but this recsim reads up to 1"):
        Dataset.open(data)
    (data / MANIFEST_NAME).write_text(json.dumps(manifest))
    (data / manifest["files"]["events"][0]).unlink()
    with pytest.raises(DatasetError, match="is incomplete"):
        Dataset.open(data)
    (data / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(DatasetError, match="cannot be read"):
        Dataset.open(data)


def test_frames_of_an_empty_part_list_have_the_schema(tmp_path: Path) -> None:
    data = _dataset(tmp_path)
    manifest = Manifest.from_dict(json.loads((data / MANIFEST_NAME).read_text()))
    empty = Dataset(data, manifest.__class__(**{**manifest.__dict__, "items_file": None}))
    assert not empty.has_items
    assert empty.items().collect().schema == ITEMS_SCHEMA
    assert empty.items().collect().height == 0
