"""Reading users' files: format by content, delimiter sniffing, column mapping."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from recsim_cli.dataset import EVENTS_SCHEMA, REQUIRED_EVENTS
from recsim_cli.errors import InputFileError, SchemaError, UserError
from recsim_cli.readers import (
    ROW,
    FileFormat,
    detect_format,
    estimate_rows,
    parse_column_map,
    scan_table,
)

CSV = "user_id,item_id,ts\nu1,v1,2026-01-05T08:15:03Z\nu2,v2,2026-01-05T09:00:00Z\n"


def _scan(path: Path, column_map: dict[str, str] | None = None):
    return scan_table(
        path, known=EVENTS_SCHEMA.names(), required=REQUIRED_EVENTS, column_map=column_map or {}
    )


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("e.csv", CSV, FileFormat("csv", ",")),
        ("e.tsv", CSV.replace(",", "\t"), FileFormat("csv", "\t")),
        ("e.txt", CSV.replace(",", ";"), FileFormat("csv", ";")),
        ("e.psv", CSV.replace(",", "|"), FileFormat("csv", "|")),
        # Content decides, not the name: a tab-separated file called .csv is TSV.
        ("e.csv", CSV.replace(",", "\t"), FileFormat("csv", "\t")),
        ("e.jsonl", '{"user_id": "u1"}\n', FileFormat("jsonl")),
        ("e.tsv", "user_id\nu1\n", FileFormat("csv", "\t")),
        ("e.csv", "\ufeffuser_id,item_id,ts\n", FileFormat("csv", ",")),
    ],
)
def test_detect_format_by_content(tmp_path: Path, name: str, content: str, expected) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert detect_format(path) == expected


def test_detect_gzip_and_parquet(tmp_path: Path) -> None:
    gz = tmp_path / "e.csv.gz"
    gz.write_bytes(gzip.compress(CSV.replace(",", "\t").encode()))
    assert detect_format(gz) == FileFormat("csv", "\t", gzip=True)
    assert detect_format(gz).label == "tsv.gz"
    # A gzip file whose name says nothing is still recognised.
    plain = tmp_path / "events"
    plain.write_bytes(gzip.compress(b'{"user_id": "u1"}\n'))
    assert detect_format(plain) == FileFormat("jsonl", gzip=True)
    pq = tmp_path / "e.data"
    pl.DataFrame({"user_id": ["u1"]}).write_parquet(pq)
    assert detect_format(pq) == FileFormat("parquet")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "{p} does not exist; check the path."),
        (
            "dir",
            "{p} is a directory without Parquet files; give a CSV, TSV, Parquet or JSON-lines "
            "file, or a folder of Parquet files.",
        ),
        ("empty", "{p} is empty; give a file with a header and at least one row."),
        (
            "binary",
            "{p} is not a CSV, TSV, Parquet or JSON-lines file; convert it to one of those.",
        ),
        (
            "array",
            "{p} holds a JSON array; write one JSON object per line (JSON lines) instead.",
        ),
        ("gz-empty", "{p} is empty once decompressed; give a file with a header and rows."),
    ],
)
def test_detect_format_errors(tmp_path: Path, setup: str, message: str) -> None:
    path = tmp_path / "events.csv"
    if setup == "dir":
        path.mkdir()
    elif setup == "empty":
        path.write_bytes(b"")
    elif setup == "binary":
        path.write_bytes(b"\x00\x01\x02garbage")
    elif setup == "array":
        path.write_text('[{"user_id": "u1"}]')
    elif setup == "gz-empty":
        path.write_bytes(gzip.compress(b""))
    with pytest.raises(InputFileError) as info:
        detect_format(path)
    assert str(info.value) == message.format(p=path)


def test_a_folder_of_parquet_parts_reads_as_one_table(tmp_path: Path) -> None:
    from recsim_cli.io import sha256_file
    from recsim_cli.readers import parquet_parts, scan_table

    folder = tmp_path / "events"
    for day, users in (("2026-01-02", ["u3"]), ("2026-01-01", ["u1", "u2"])):
        (folder / f"date={day}").mkdir(parents=True)
        frame = pl.DataFrame(
            {"user_id": users, "item_id": ["i"] * len(users), "ts": ["t"] * len(users)}
        )
        frame.write_parquet(folder / f"date={day}" / "part-0.parquet")
    (folder / "_SUCCESS").write_bytes(b"")
    (folder / "_temporary").mkdir()
    pl.DataFrame({"user_id": ["junk"]}).write_parquet(folder / "_temporary" / "x.parquet")
    assert detect_format(folder) == FileFormat("parquet")
    assert [p.parent.name for p in parquet_parts(folder)] == ["date=2026-01-01", "date=2026-01-02"]
    source = scan_table(
        folder, known=["user_id", "item_id", "ts"], required=["user_id"], column_map={}
    )
    frame = source.frame.collect()
    assert frame.get_column("user_id").to_list() == ["u1", "u2", "u3"]
    assert frame.get_column(ROW).to_list() == [1, 2, 3]
    assert source.unknown_columns == ("date",)  # the partition column, ignored and reported
    assert source.estimated_rows == 3
    digest = sha256_file(folder)
    moved = tmp_path / "elsewhere"
    folder.rename(moved)
    assert sha256_file(moved) == digest  # the parts, not where they lie
    (moved / "date=2026-01-02" / "part-1.parquet").write_bytes(
        (moved / "date=2026-01-02" / "part-0.parquet").read_bytes()
    )
    assert sha256_file(moved) != digest


def test_scan_table_renames_and_reports_unknown_columns(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("uid,vid,ts,colour\nu1,007,1767600903,red\n")
    table = _scan(path, {"user_id": "uid", "item_id": "vid"})
    assert table.columns == ("user_id", "item_id", "ts")
    assert table.unknown_columns == ("colour",)
    frame = table.frame.collect()
    # Every text column is read as a string: leading zeros survive.
    assert frame.row(0, named=True) == {
        ROW: 1,
        "user_id": "u1",
        "item_id": "007",
        "ts": "1767600903",
    }


def test_missing_required_column_names_found_columns_and_the_map(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("uid,vid,time\nu1,v1,1\n")
    with pytest.raises(SchemaError) as info:
        _scan(path, {"item_id": "vid", "ts": "time"})
    assert str(info.value) == (
        f"{path} has no column 'user_id' (found: uid, vid, time); map yours with --map user_id=uid."
    )
    with pytest.raises(SchemaError) as info:
        _scan(path)
    assert str(info.value) == (
        f"{path} has no columns 'user_id', 'item_id', 'ts' (found: uid, vid, time); "
        "map yours with --map user_id=uid --map item_id=vid --map ts=time."
    )


def test_map_onto_an_existing_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("user_id,uid,item_id,ts\nu1,u2,v1,1\n")
    with pytest.raises(SchemaError, match="has both a column 'user_id' and 'uid'"):
        _scan(path, {"user_id": "uid"})


def test_parse_column_map() -> None:
    valid = ["item_id", "ts", "user_id"]
    assert parse_column_map(["user_id=uid", " ts = time "], valid) == {
        "user_id": "uid",
        "ts": "time",
    }
    with pytest.raises(UserError) as info:
        parse_column_map(["userid=uid"], valid)
    assert str(info.value) == (
        "--map userid=uid: 'userid' is not a column of the data contract; "
        "use one of item_id, ts, user_id."
    )
    with pytest.raises(UserError, match=r"--map uid is not NEW=OLD"):
        parse_column_map(["uid"], valid)
    with pytest.raises(UserError, match="gives user_id twice"):
        parse_column_map(["user_id=a", "user_id=b"], valid)


def test_estimate_rows_is_close(tmp_path: Path) -> None:
    lines = "".join(f"u{i},v{i % 7},{1767600903 + i}\n" for i in range(50_000))
    path = tmp_path / "e.csv"
    path.write_text("user_id,item_id,ts\n" + lines)
    gz = tmp_path / "e.csv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    for file in (path, gz):
        estimate = estimate_rows(file, detect_format(file))
        assert 45_000 <= estimate <= 60_000
    pq = tmp_path / "e.parquet"
    pl.read_csv(path).write_parquet(pq)
    assert estimate_rows(pq, detect_format(pq)) == 50_000
