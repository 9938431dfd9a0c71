"""``ingest(engine="spark")`` gives the dataset the polars engine gives, and the same errors."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recsim_cli.dataset import Dataset
from recsim_cli.errors import InputFileError, SchemaError, UserError
from recsim_cli.ingest import ingest
from recsim_cli.ingest.parse import EVENT_REASONS, REASON, parse_events
from recsim_cli.ingest.sessions import SORT_KEY
from recsim_cli.readers import ROW

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
ENGINES = ["polars", "spark"]


def _ts_text(when: datetime, style: int) -> str:
    """One instant in one of several spellings (both engines must read them all alike)."""
    spellings = [
        when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        when.strftime("%Y-%m-%d %H:%M:%S"),
        str(int(when.timestamp())),
        str(int(when.timestamp() * 1000)),
        (when + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%f+02:00"),
        f"  {when.strftime('%Y-%m-%dT%H:%M:%SZ')} ",
        when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "z",
        f"{when.timestamp():.3f}",
    ]
    return spellings[style % len(spellings)]


# One row per reason (derived sessions: no session_id column), as raw CSV fields.
BAD_ROWS = {
    "user_id is empty": {"user_id": "  "},
    "item_id is empty": {"item_id": ""},
    "ts is not a timestamp": {"ts": "2026-02-30T00:00:00Z"},
    "clicked is not a boolean": {"clicked": "maybe"},
    "watch_time_s is not a number": {"watch_time_s": "ten"},
    "watch_time_s is negative": {"watch_time_s": "-1"},
    "watch_time_s is positive but clicked is false": {"clicked": "FALSE", "watch_time_s": "5"},
    "slate is not an integer": {"slate": "1.5"},
    "slate is negative": {"slate": "-1"},
    "position is not an integer": {"position": "top"},
    "position is negative": {"position": "-2"},
    "propensity is not a number": {"propensity": "nan"},
    "propensity is outside (0, 1]": {"propensity": "0"},
    "explore is not a boolean": {"explore": "sometimes"},
}
COLUMNS = [
    "user_id",
    "item_id",
    "ts",
    "clicked",
    "watch_time_s",
    "slate",
    "position",
    "device",
    "propensity",
    "policy",
    "explore",
]


def _rows(seed: int, users: int, per_user: int, start: datetime = T0) -> list[dict[str, str]]:
    """A messy log: several spellings, blanks, duplicates, gaps that start sessions."""
    rng = random.Random(seed)
    rows = []
    for u in range(users):
        when = start + timedelta(seconds=rng.randrange(3600))
        for _ in range(per_user):
            when += timedelta(seconds=rng.choice([5, 40, 600, 1799, 1800, 1801, 7200]))
            clicked = rng.random() < 0.4
            row = {
                "user_id": f"u{u:03d}" if u % 7 else f"0{u:02d}",
                "item_id": f"v{rng.randrange(40)}",
                "ts": _ts_text(when, rng.randrange(8)),
                "clicked": rng.choice(
                    ["true", "TRUE", " yes ", "1", "t"]
                    if clicked
                    else ["false", "F", "No", "0", " false"]
                ),
                "watch_time_s": f"{rng.random() * 300:.3f}" if clicked else rng.choice(["0", ""]),
                "slate": rng.choice(["0", "1", "2.0", "", " 3 "]),
                "position": rng.choice(["0", "1", "4", ""]),
                "device": rng.choice(["mobile", "tv", "", " "]),
                "propensity": rng.choice(["0.5", "1", "1e-2", "", "0.25"]),
                "policy": rng.choice(["a", "b", ""]),
                "explore": rng.choice(["true", "False", "", "0"]),
            }
            rows.append(row)
            if rng.random() < 0.05:
                rows.append(dict(row))  # an exact duplicate
    for i, (_reason, change) in enumerate(BAD_ROWS.items()):
        rows.insert((7 * i + 3) % len(rows), {**rows[(7 * i) % len(rows)], **change})
    return rows


def _csv(path: Path, rows: list[dict[str, str]], columns: list[str] = COLUMNS) -> Path:
    def field(value: str) -> str:
        return f'"{value}"' if "," in value else value

    lines = [",".join(columns)] + [",".join(field(r.get(c, "")) for c in columns) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _engine(request: pytest.FixtureRequest, engine: str) -> str:
    if engine == "spark":
        request.getfixturevalue("spark")
    return engine


def _both(
    request: pytest.FixtureRequest, tmp_path: Path, run: Callable[[Path, str], Any]
) -> tuple[Path, Path]:
    """Run ``run(data_dir, engine)`` on both engines; return the two dataset folders."""
    request.getfixturevalue("spark")
    roots = tmp_path / "polars", tmp_path / "spark"
    for root, engine in zip(roots, ENGINES, strict=True):
        run(root, engine)
    return roots


def _events(root: Path) -> pl.DataFrame:
    return Dataset.open(root).events().collect().sort(list(SORT_KEY), nulls_last=True)


def _manifest(root: Path) -> dict[str, Any]:
    data = json.loads((root / "manifest.json").read_text())
    data.pop("written_by")
    return data


def assert_same_dataset(polars_root: Path, spark_root: Path) -> None:
    """Same events (sorted), rejected rows, and manifest (floats within 1e-9 relative)."""
    assert_frame_equal(_events(polars_root), _events(spark_root))
    assert_frame_equal(
        Dataset.open(polars_root).rejected().collect(),
        Dataset.open(spark_root).rejected().collect(),
    )
    one, two = _manifest(polars_root), _manifest(spark_root)
    for key in ("watch_time_s", "mean_watch_time_s"):
        assert two["stats"].pop(key) == pytest.approx(one["stats"].pop(key), rel=1e-9, abs=1e-12)
    # Spark hashes users to other parts than polars: same count, maybe other numbers.
    assert len(one["files"].pop("events")) == len(two["files"].pop("events"))
    assert one == two


def test_messy_log_gives_the_same_dataset(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    import gzip

    log = tmp_path / "log.csv.gz"
    log.write_bytes(gzip.compress(_csv(tmp_path / "log.csv", _rows(1, 60, 25)).read_bytes()))
    polars_root, spark_root = _both(
        request,
        tmp_path,
        lambda root, engine: ingest(log, data=root, engine=engine, partition_rows=400),
    )
    assert_same_dataset(polars_root, spark_root)
    manifest = Dataset.open(spark_root).manifest
    assert manifest.partitions > 1
    assert set(manifest.rejected_by_reason["events"]) == set(BAD_ROWS)
    assert manifest.duplicates_dropped["events"] > 0
    assert manifest.stats.sessions > manifest.stats.users  # gaps started sessions
    assert manifest.written_by["spark"]
    # Each part holds whole users, sorted by SORT_KEY.
    users: set[str] = set()
    for name in manifest.events_files:
        part = pl.read_parquet(spark_root / name)
        assert part.equals(part.sort(list(SORT_KEY), nulls_last=True))
        assert users.isdisjoint(part["user_id"].unique().to_list())
        users.update(part["user_id"].unique().to_list())


def test_log_session_ids_and_tsv(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    rows = _rows(3, 20, 8)
    for i, row in enumerate(rows):
        row["session_id"] = (
            [f"s{i // 5}", f"s{i // 5}", " ", ""][i % 4] if i % 50 == 7 else f"s{i // 5}"
        )
    lines = ["\t".join([*COLUMNS, "session_id", "extra"])]
    lines += ["\t".join([*(r[c] for c in COLUMNS), r["session_id"], "x"]) for r in rows]
    log = tmp_path / "log.tsv"
    log.write_text("\r\n".join(lines) + "\r\n")
    polars_root, spark_root = _both(
        request, tmp_path, lambda root, engine: ingest(log, data=root, engine=engine)
    )
    assert_same_dataset(polars_root, spark_root)
    manifest = Dataset.open(spark_root).manifest
    assert manifest.session_ids == "log"
    assert manifest.rejected_by_reason["events"]["session_id is empty"] > 0
    assert manifest.sources[0].unknown_columns == ("extra",)


def test_typed_parquet_gives_the_same_dataset(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    n = 400
    rng = random.Random(4)
    times = [T0 + timedelta(seconds=rng.randrange(200_000), microseconds=250_000) for _ in range(n)]
    frame = pl.DataFrame(
        {
            "uid": [f"u{rng.randrange(25)}" for _ in range(n)],
            "item_id": [rng.randrange(50) for _ in range(n)],  # an integer id
            "ts": times,
            "clicked": [rng.random() < 0.5 for _ in range(n)],
            "watch_time_s": [rng.choice([0.0, -0.0, 12.5, 3.25, None]) for _ in range(n)],
            "slate": [rng.choice([0, 1, 2, None, -1]) for _ in range(n)],
            "position": [rng.choice([0.0, 1.0, 2.5, None]) for _ in range(n)],
            "propensity": pl.Series(
                [rng.choice([0.5, 0.1, 1.5]) for _ in range(n)], dtype=pl.Float32
            ),
            "explore": [rng.choice([0, 1, 2]) for _ in range(n)],
        }
    ).with_columns(pl.col("ts").dt.replace_time_zone(None))
    log = tmp_path / "log.parquet"
    frame.write_parquet(log)
    epoch = frame.with_columns(pl.col("ts").dt.epoch("ms"))  # ts as epoch milliseconds
    epoch_log = tmp_path / "epoch.parquet"
    epoch.write_parquet(epoch_log)

    for name, source in (("naive", log), ("epoch", epoch_log)):
        polars_root, spark_root = _both(
            request,
            tmp_path / name,
            lambda root, engine, source=source: ingest(
                source, data=root, engine=engine, column_map={"user_id": "uid"}
            ),
        )
        assert_same_dataset(polars_root, spark_root)
        assert Dataset.open(spark_root).manifest.rejected_by_reason["events"]


def test_append_and_replace_on_spark(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    first = _csv(tmp_path / "first.csv", _rows(5, 30, 6))
    # The second log continues some users' sessions and repeats some events.
    second_rows = _rows(5, 30, 6)[:40] + _rows(6, 40, 4, start=T0 + timedelta(hours=3))
    second = _csv(tmp_path / "second.csv", second_rows)

    def run(root: Path, engine: str) -> list[str]:
        statuses = [ingest(first, data=root, engine=engine).status]
        statuses.append(ingest(second, data=root, engine=engine, mode="append").status)
        statuses.append(ingest(second, data=root, engine=engine, mode="append").status)
        return statuses

    request.getfixturevalue("spark")
    polars_root, spark_root = tmp_path / "polars", tmp_path / "spark"
    assert (
        run(polars_root, "polars")
        == run(spark_root, "spark")
        == [
            "created",
            "appended",
            "unchanged",
        ]
    )
    assert_same_dataset(polars_root, spark_root)
    for root, engine in ((polars_root, "polars"), (spark_root, "spark")):
        assert ingest(second, data=root, engine=engine, mode="replace").status == "replaced"
    assert_same_dataset(polars_root, spark_root)
    assert Dataset.open(spark_root).manifest.sources[0].file == "second.csv"


def test_a_file_url_reads_like_the_local_path(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    log = _csv(tmp_path / "log.csv", _rows(7, 10, 5))
    polars_root, spark_root = tmp_path / "polars", tmp_path / "spark"
    request.getfixturevalue("spark")
    ingest(log, data=polars_root)
    ingest(log.resolve().as_uri(), data=spark_root, engine="spark")
    assert_same_dataset(polars_root, spark_root)  # incl. the source's name and sha256
    again = ingest(log.resolve().as_uri(), data=spark_root, engine="spark")
    assert again.status == "unchanged"


# Spellings of the polars parse tests and of chrono's corners, parsed by both engines.
TS_SPELLINGS = [
    "2026-01-05T08:15:03Z",
    "2026-01-05T08:15:03z",
    "2026-01-05t08:15:03Z",
    "2026-1-5T8:15:3Z",
    "2026-01-05T08:15:03.1Z",
    "2026-01-05T08:15:03.123456789Z",
    "2026-01-05T08:15:03.Z",
    "2026-01-05T08:15:03+01",
    "2026-01-05T08:15:03+0100",
    "2026-01-05T08:15:03+01:00",
    "2026-01-05T08:15:03+1:00",
    "2026-01-05T08:15:03 +01:00",
    "2026-01-05T08:15:03UTC",
    "2026-01-05T08:15:03+23:59",
    "2026-01-05T08:15:03+24:00",
    "2026-01-05T08:15:03+01:60",
    "2026-01-05 08:15:03Z",
    "2026-01-05\t08:15:03",
    "2026-01-05\u00a008:15:03",
    "2026-01-0508:15:03",
    "2026-01-05T08:15",
    "2026-01-05T08:15Z",
    "2026-01-05 08:15",
    "2026-01-05 08:15Z",
    "2026-01-05",
    "2026-01-05Z",
    "12026-01-05",
    "+12026-01-05",
    "-0001-01-01",
    "02026-01-05",
    "2026-02-29",
    "2024-02-29",
    "2026-01-05T24:00:00",
    "2026-01-05T23:59:60",
    "2026-01-05T08:15:60.5",
    "2026-01-05T23:60:00",
    "2026-01-05T08:15:03Zjunk",
    "2026-01-05T08:15:3",
    "2026-01-05T08:15:03,5Z",
    "1969-12-31T23:59:59.5Z",
    "9999-12-31",
    " 2026-01-05T08:15:03Z\t",
    "\u00a02026-01-05 ",
    "1767600903",
    "1767600903.25",
    "-1.5",
    "1e3",
    "0x10",
    "1767600903000",
    "99999999999",
    "100000000000",
    "1e14",
    "0.0000005",
    "0.0000015",
    "0.0000025",
    "5.",
    ".5",
    "+5",
    "1e",
    "inf",
    "NaN",
    "1_000",
    "1d",
    "",
    " ",
    "yesterday",
]
NUMBER_SPELLINGS = [
    "1.5",
    " 2 ",
    "3e1",
    "-0",
    "-0.0",
    "+.5",
    "1.e5",
    ".",
    "-",
    "1e400",
    "00012",
    "1d",
    "0x1p3",
    "inf",
    "nan",
    "2.5",
    "3.0",
    "9007199254740993",
]


def test_value_rules_match_polars_spelling_by_spelling(
    request: pytest.FixtureRequest,
) -> None:
    from recsim_cli.spark.ingest_parse import parse_events as spark_parse

    spark = request.getfixturevalue("spark")
    width = max(len(TS_SPELLINGS), len(NUMBER_SPELLINGS))

    def column(values: list[str], fill: str) -> list[str]:
        return values + [fill] * (width - len(values))

    raw = pl.DataFrame(
        {
            ROW: list(range(1, width + 1)),
            "user_id": column(["u1", " u1 ", "\t", "007"], "u"),
            "item_id": "v",
            "ts": column(TS_SPELLINGS, "2026-01-05"),
            "clicked": column(["TRUE", " yes ", "F", "No", "maybe", "2"], "true"),
            "watch_time_s": column(NUMBER_SPELLINGS, "1"),
            "slate": column(NUMBER_SPELLINGS, "0"),
            "propensity": column(NUMBER_SPELLINGS[::-1], "0.5"),
        }
    )
    expected = parse_events(raw.lazy()).collect().sort(ROW)
    frame = spark.createDataFrame(raw.to_pandas())
    got = spark_parse(frame, pl.Schema({c: pl.String() for c in raw.columns[1:]}), [ROW])
    got_frame = pl.from_arrow(got.toArrow()).sort(ROW)
    names = [*expected.columns]
    assert isinstance(got_frame, pl.DataFrame)
    assert_frame_equal(got_frame.select(names), expected.select(names), check_dtypes=False)
    assert set(expected[REASON].drop_nulls()) <= set(EVENT_REASONS)


@pytest.mark.parametrize("engine", ENGINES)
def test_errors_are_the_same(request: pytest.FixtureRequest, tmp_path: Path, engine: str) -> None:
    engine = _engine(request, engine)
    good = _csv(tmp_path / "good.csv", _rows(8, 3, 3))
    cases: list[tuple[dict[str, Any], type[UserError], str]] = []
    missing = tmp_path / "missing.csv"
    cases.append(
        ({"events": missing}, InputFileError, f"{missing} does not exist; check the path.")
    )
    no_ts = tmp_path / "no_ts.csv"
    no_ts.write_text("user_id,item_id,time\nu1,v1,2026-01-05\n")
    cases.append(
        (
            {"events": no_ts},
            SchemaError,
            f"{no_ts} has no column 'ts' (found: user_id, item_id, time); "
            "map yours with --map ts=time.",
        )
    )
    cases.append(
        (
            {"events": good, "column_map": {"user_id": "nope"}},
            UserError,
            f"--map user_id=nope: {good} has no column 'nope' (found: {', '.join(COLUMNS)}); "
            "check the name.",
        )
    )
    cases.append(
        (
            {"events": good, "column_map": {"when": "ts"}},
            UserError,
            "--map when=ts: 'when' is not a column of the data contract; use one of "
            "category, clicked, device, duration_s, explore, item_id, policy, position, "
            "propensity, published_ts, session_id, slate, ts, user_id, watch_time_s.",
        )
    )
    typed = tmp_path / "typed.parquet"
    pl.DataFrame({"user_id": ["u1"], "item_id": ["v1"], "ts": [[1, 2]]}).write_parquet(typed)
    cases.append(
        (
            {"events": typed},
            SchemaError,
            f"{typed} column 'ts' has type List(Int64), which cannot hold a timestamp; "
            "store it as a string or a number.",
        )
    )
    bad_clicked = tmp_path / "bool.parquet"
    pl.DataFrame(
        {"user_id": ["u1"], "item_id": ["v1"], "ts": ["2026-01-05"], "slate": [True]}
    ).write_parquet(bad_clicked)
    cases.append(
        (
            {"events": bad_clicked},
            SchemaError,
            f"{bad_clicked} column 'slate' has type Boolean, which cannot hold an integer; "
            "store it as a string or a number.",
        )
    )
    header = tmp_path / "header.csv"
    header.write_text("user_id,item_id,ts\n")
    cases.append(
        (
            {"events": header},
            InputFileError,
            f"{header} has no rows; give a file with at least one event.",
        )
    )
    useless = tmp_path / "useless.csv"
    useless.write_text("user_id,item_id,ts\nu1,v1,never\nu2,v2,later\n,v3,2026-01-05\n")
    cases.append(
        (
            {"events": useless},
            InputFileError,
            f"{useless}: none of its 3 rows is usable (2 with 'ts is not a timestamp'); "
            "check its columns and formats against docs/data.md.",
        )
    )
    for i, (kwargs, error, message) in enumerate(cases):
        events = kwargs.pop("events")
        root = tmp_path / f"data{i}"
        with pytest.raises(error) as info:
            ingest(events, data=root, engine=engine, **kwargs)
        assert type(info.value) is error
        assert str(info.value) == message
        assert not root.exists()  # a failed first ingest leaves nothing


def test_a_folder_of_parquet_parts_gives_the_same_dataset(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    rows = _rows(5, 30, 12)
    folder = tmp_path / "log"
    # Parts in date folders, written out of order, with Spark's and Hive's marker files.
    size = len(rows) // 3 + 1
    chunks = [rows[i : i + size] for i in range(0, len(rows), size)]
    for day, chunk in zip(("2026-01-07", "2026-01-05", "2026-01-06"), chunks, strict=False):
        (folder / f"date={day}").mkdir(parents=True)
        frame = pl.DataFrame(chunk, schema=dict.fromkeys(COLUMNS, pl.String))
        half = frame.height // 2
        frame[:half].write_parquet(folder / f"date={day}" / "part-1.parquet")
        frame[half:].write_parquet(folder / f"date={day}" / "part-0.parquet")
    (folder / "_SUCCESS").write_bytes(b"")
    polars_root, spark_root = _both(
        request,
        tmp_path,
        lambda root, engine: ingest(folder, data=root, engine=engine, partition_rows=300),
    )
    assert_same_dataset(polars_root, spark_root)
    rejected = Dataset.open(spark_root).rejected().collect()
    assert rejected.height >= len(BAD_ROWS)  # their record numbers across parts matched polars'
    assert rejected.get_column("row").max() > size
    assert Dataset.open(spark_root).manifest.sources[0].unknown_columns == ("date",)
