"""Atomic versions: failures and Ctrl-C mid-write, leftovers of crashes, locking, partitions."""

from __future__ import annotations

import fcntl
import hashlib
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from recsim_cli.cli import app
from recsim_cli.dataset import Dataset
from recsim_cli.errors import DatasetError, InputFileError
from recsim_cli.ingest import ingest
from recsim_cli.ingest import partitions as partitions_module

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def _log(path: Path, users: int, per_user: int, *, start: int = 0) -> Path:
    """A log of ``users`` users with ``per_user`` events each, ten minutes apart."""
    rows = [
        f"u{u:03d},v{(u * 7 + i) % 13},{(T0 + timedelta(minutes=10 * (start + i))).isoformat()}"
        for u in range(users)
        for i in range(per_user)
    ]
    path.write_text("user_id,item_id,ts\n" + "\n".join(rows) + "\n")
    return path


def digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A dataset of 40 users spread over several partitions."""
    data = tmp_path / "data"
    ingest(_log(tmp_path / "first.csv", 40, 5), data=data, partition_rows=50)
    return data


def _fail_after(monkeypatch: pytest.MonkeyPatch, calls: int, error: BaseException) -> None:
    """Make the partition writer raise ``error`` after ``calls`` partitions were written."""
    real = partitions_module.store_partition
    count = {"n": 0}

    def flaky(*args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(partitions_module, "store_partition", flaky)


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_failure_mid_write_leaves_the_old_dataset(
    tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    before = digest(dataset)
    old = Dataset.open(dataset).events().collect()
    _fail_after(monkeypatch, 2, error)
    with pytest.raises(type(error)):
        ingest(
            _log(tmp_path / "more.csv", 40, 3, start=100),
            data=dataset,
            mode="append",
            partition_rows=50,
            workers=1,
        )
    assert digest(dataset) == before
    assert Dataset.open(dataset).events().collect().equals(old)
    # Nothing half-written is left beside the current version.
    assert sorted(p.name for p in dataset.iterdir()) == [".lock", "manifest.json", "v000001"]


def test_a_failed_manifest_swap_leaves_the_old_dataset(
    tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = digest(dataset)

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr("recsim_cli.io.os.replace", broken_replace)
    with pytest.raises(OSError, match="no space left"):
        ingest(_log(tmp_path / "more.csv", 3, 3, start=100), data=dataset, mode="append")
    monkeypatch.undo()
    assert digest(dataset) == before
    assert Dataset.open(dataset).version == 1
    assert sorted(p.name for p in dataset.iterdir()) == [".lock", "manifest.json", "v000001"]


def test_ctrl_c_in_the_cli_exits_130_and_keeps_the_dataset(
    tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = digest(dataset)
    _fail_after(monkeypatch, 0, KeyboardInterrupt())
    more = _log(tmp_path / "more.csv", 3, 3, start=100)
    result = CliRunner().invoke(app, ["ingest", str(more), "--data", str(dataset), "--append"])
    assert result.exit_code == 130
    assert result.stderr == "Error: interrupted; nothing already stored was changed.\n"
    assert digest(dataset) == before


def test_leftovers_of_a_crash_are_removed_by_the_next_run(tmp_path: Path, dataset: Path) -> None:
    # What a killed run leaves: a half-written version, staging, a temporary manifest.
    (dataset / "v000002" / "events").mkdir(parents=True)
    (dataset / "v000002" / "events" / "part-00000.parquet").write_bytes(b"half")
    (dataset / ".staging-v000002").mkdir()
    (dataset / ".manifest.json.abc.tmp").write_text("{")
    assert Dataset.open(dataset).version == 1  # readers never see them
    summary = ingest(_log(tmp_path / "first.csv", 40, 5), data=dataset, partition_rows=50)
    assert summary.status == "unchanged"
    assert summary.leftovers_removed == (".manifest.json.abc.tmp", ".staging-v000002", "v000002")
    assert sorted(p.name for p in dataset.iterdir()) == [".lock", "manifest.json", "v000001"]


def test_a_second_writer_is_refused(tmp_path: Path, dataset: Path) -> None:
    with (dataset / ".lock").open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        with pytest.raises(DatasetError) as info:
            ingest(_log(tmp_path / "more.csv", 2, 2), data=dataset, mode="append")
    assert str(info.value) == (
        f"{dataset} is being written by another recsim ingest; wait for it to finish."
    )


def test_a_failed_first_ingest_leaves_no_folder(tmp_path: Path) -> None:
    log = tmp_path / "bad.csv"
    log.write_text("user_id,item_id,ts\nu1,v1,never\n")
    with pytest.raises(Exception, match="none of its 1 rows is usable"):
        ingest(log, data=tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_partitions_hold_whole_users_and_output_does_not_depend_on_workers(
    tmp_path: Path,
) -> None:
    log = _log(tmp_path / "log.csv", 60, 4)
    ingest(log, data=tmp_path / "one", partition_rows=40, workers=1)
    ingest(log, data=tmp_path / "two", partition_rows=40, workers=2)
    assert digest(tmp_path / "one") == digest(tmp_path / "two")
    dataset = Dataset.open(tmp_path / "one")
    assert dataset.manifest.partitions == 7  # ceil(241 estimated rows / 40)
    assert len(dataset.manifest.events_files) > 1
    users_per_part = [
        set(pl.read_parquet(tmp_path / "one" / f)["user_id"]) for f in dataset.manifest.events_files
    ]
    assert sum(len(u) for u in users_per_part) == len(set().union(*users_per_part)) == 60
    for file in dataset.manifest.events_files:
        part = pl.read_parquet(tmp_path / "one" / file)
        assert part.equals(part.sort("user_id", "ts", "slate", "position", "item_id"))


def test_file_layout(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,ts\nu1,v1,1767600000\nu1,v1,bad\n")
    items = tmp_path / "items.csv"
    items.write_text("item_id\nv1\n")
    ingest(log, items=items, data=tmp_path / "d")
    assert sorted(digest(tmp_path / "d")) == [
        "manifest.json",
        "v000001/events/part-00000.parquet",
        "v000001/items.parquet",
        "v000001/rejected/v000001-events.parquet",
    ]


# Rows never get lost: every input row is stored, rejected or a counted duplicate.
_row = st.tuples(
    st.sampled_from(["u1", "u2", "u3", ""]),
    st.sampled_from(["v1", "v2"]),
    st.sampled_from(["2026-01-05T08:00:00Z", "2026-01-05T08:40:00Z", "1767600000", "nope"]),
    st.sampled_from(["true", "false", "maybe"]),
    st.sampled_from(["0", "12.5", "-1", ""]),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_row, min_size=1, max_size=25), st.lists(_row, min_size=1, max_size=25))
def test_rows_are_never_lost(first: list[tuple[str, ...]], second: list[tuple[str, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "d"
        stored = 0
        for index, rows in enumerate((first, second)):
            log = root / f"log{index}.csv"
            body = "\n".join(",".join(r) for r in rows)
            log.write_text(f"user_id,item_id,ts,clicked,watch_time_s\n{body}\n# {index}\n")
            try:
                summary = ingest(log, data=data, mode="append", partition_rows=10)
            except InputFileError as exc:  # a log with no usable row at all
                assert "is usable" in str(exc)
                continue
            report = summary.events
            assert report is not None
            assert report.rows_read == len(rows) + 1  # the "# n" line is a (bad) row too
            assert report.rows_added + report.rows_rejected + report.duplicates_dropped == (
                report.rows_read
            )
            stored += report.rows_added
            assert summary.stats.rows == stored
            assert Dataset.open(data).events().collect().height == stored
