"""`recsim ingest` through the CLI: formats, errors, idempotence, append and replace."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner, Result

from recsim_cli.cli import app
from recsim_cli.dataset import EVENTS_SCHEMA, Dataset

REPO = Path(__file__).resolve().parent.parent

LOG = """user_id,item_id,ts,slate,position,clicked,watch_time_s,device,propensity,explore
u1,v1,2026-01-05T08:00:00Z,0,0,true,30.5,tv,0.5,false
u1,v2,2026-01-05T08:00:00Z,0,1,false,0,tv,0.25,false
u1,v3,2026-01-05T09:00:00Z,0,0,true,12,tv,1,true
u2,v1,2026-01-05T08:30:00Z,0,0,false,0,mobile,0.5,false
u2,v1,2026-01-05T08:30:00Z,0,0,false,0,mobile,0.5,false
u3,v2,2026-01-06T10:00:00Z,1,2,yes,5,,,
"""


def run(*args: object) -> Result:
    return CliRunner().invoke(app, ["ingest", *(str(a) for a in args)])


def digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (the lock file aside) with its sha256."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def ok(result: Result) -> dict:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def fails(result: Result, message: str) -> None:
    assert result.exit_code == 2, result.stdout
    assert result.stderr == f"Error: {message}\n"
    assert "Traceback" not in result.output


# --- formats -----------------------------------------------------------------


def _formats(tmp_path: Path) -> dict[str, Path]:
    csv = write(tmp_path / "log.csv", LOG)
    frame = pl.read_csv(csv, infer_schema=False)
    tsv = tmp_path / "log.tsv"
    frame.write_csv(tsv, separator="\t")
    gz = tmp_path / "log.csv.gz"
    gz.write_bytes(gzip.compress(csv.read_bytes()))
    tsv_gz = tmp_path / "log.tsv.gz"
    tsv_gz.write_bytes(gzip.compress(tsv.read_bytes()))
    jsonl = tmp_path / "log.jsonl"
    frame.write_ndjson(jsonl)
    parquet = tmp_path / "log.parquet"
    # Parquet with native types: timestamps, booleans and numbers.
    frame.with_columns(
        pl.col("ts").str.to_datetime(time_zone="UTC"),
        pl.col("slate", "position").cast(pl.Int32),
        pl.col("watch_time_s", "propensity").cast(pl.Float32),
        pl.col("explore").replace_strict({"true": True, "false": False}, default=None),
    ).write_parquet(parquet)
    return {
        "csv": csv,
        "tsv": tsv,
        "csv.gz": gz,
        "tsv.gz": tsv_gz,
        "jsonl": jsonl,
        "parquet": parquet,
    }


def test_every_format_gives_the_same_events(tmp_path: Path) -> None:
    frames = {}
    for label, path in _formats(tmp_path).items():
        summary = ok(run(path, "--data", tmp_path / f"data-{label}", "--json"))
        assert summary["inputs"]["events"]["format"] == label
        assert summary["rows_total"] == 5
        assert summary["duplicates_dropped"] == 1
        frames[label] = Dataset.open(tmp_path / f"data-{label}").events().collect()
    for label, frame in frames.items():
        assert frame.equals(frames["csv"]), label
    assert frames["csv"].schema == EVENTS_SCHEMA


def test_summary_numbers(tmp_path: Path) -> None:
    summary = ok(run(write(tmp_path / "log.csv", LOG), "--data", tmp_path / "d", "--json"))
    assert summary["status"] == "created"
    assert summary["version"] == 1
    assert summary["rows_total"] == summary["rows_added"] == 5
    assert summary["users"] == 3
    assert summary["items"] == 3
    # u1: 08:00, 08:00, 09:00 -> two sessions (60 min apart); u2 one; u3 one.
    assert summary["sessions"] == 4
    assert summary["sessions_per_user"] == pytest.approx(4 / 3)
    assert summary["ctr"] == pytest.approx(3 / 5)
    assert summary["mean_watch_time_s"] == pytest.approx((30.5 + 12 + 5) / 3)
    assert summary["time_range"] == ["2026-01-05T08:00:00Z", "2026-01-06T10:00:00Z"]
    assert summary["session_gap_s"] == 1800
    assert summary["session_ids"] == "derived"


def test_table_output_names_status_and_reasons(tmp_path: Path) -> None:
    log = write(tmp_path / "log.csv", LOG + "u4,v1,never,0,0,true,1,,,\n")
    result = run(log, "--data", tmp_path / "d")
    assert result.exit_code == 0
    assert "recsim ingest: created" in result.stdout
    assert "ts is not a timestamp" in result.stdout


def test_map_renames_columns_and_unknown_columns_are_reported(tmp_path: Path) -> None:
    log = write(
        tmp_path / "log.csv",
        "uid,vid,time,colour\nu1,v1,1767600000,red\nu2,v2,1767600000000,blue\n",
    )
    summary = ok(
        run(
            log,
            "--data",
            tmp_path / "d",
            "--map",
            "user_id=uid",
            "--map",
            "item_id=vid",
            "--map",
            "ts=time",
            "--json",
        )
    )
    assert summary["rows_total"] == 2
    assert summary["inputs"]["events"]["unknown_columns"] == ["colour"]
    manifest = Dataset.open(tmp_path / "d").manifest
    assert manifest.sources[0].column_map == {"user_id": "uid", "item_id": "vid", "ts": "time"}
    assert manifest.sources[0].unknown_columns == ("colour",)


def test_session_ids_from_the_log_are_kept(tmp_path: Path) -> None:
    log = write(
        tmp_path / "log.csv",
        "user_id,item_id,ts,session_id\n"
        "u1,v1,2026-01-05T08:00:00Z,A\n"
        "u1,v2,2026-01-05T12:00:00Z,A\n"
        "u1,v3,2026-01-05T12:01:00Z,B\n",
    )
    summary = ok(run(log, "--data", tmp_path / "d", "--json"))
    assert summary["session_ids"] == "log"
    assert summary["sessions"] == 2
    events = Dataset.open(tmp_path / "d").events().collect()
    assert events["session_id"].to_list() == ["A", "A", "B"]


def test_session_gap_option(tmp_path: Path) -> None:
    log = write(tmp_path / "log.csv", LOG)
    summary = ok(run(log, "--data", tmp_path / "d", "--session-gap", "2h", "--json"))
    assert summary["session_gap_s"] == 7200
    assert summary["sessions"] == 3


# --- rejected rows -------------------------------------------------------------

BAD_ROWS = {
    "user_id is empty": ",v1,2026-01-05T08:00:00Z,0,0,true,1,tv,0.5,false",
    "item_id is empty": "u9,,2026-01-05T08:00:00Z,0,0,true,1,tv,0.5,false",
    "ts is not a timestamp": "u9,v1,05/01/2026,0,0,true,1,tv,0.5,false",
    "clicked is not a boolean": "u9,v1,2026-01-05T08:00:00Z,0,0,maybe,1,tv,0.5,false",
    "watch_time_s is not a number": "u9,v1,2026-01-05T08:00:00Z,0,0,true,lots,tv,0.5,false",
    "watch_time_s is negative": "u9,v1,2026-01-05T08:00:00Z,0,0,true,-3,tv,0.5,false",
    "watch_time_s is positive but clicked is false": (
        "u9,v1,2026-01-05T08:00:00Z,0,0,false,3,tv,0.5,false"
    ),
    "slate is not an integer": "u9,v1,2026-01-05T08:00:00Z,0.5,0,true,1,tv,0.5,false",
    "slate is negative": "u9,v1,2026-01-05T08:00:00Z,-1,0,true,1,tv,0.5,false",
    "position is not an integer": "u9,v1,2026-01-05T08:00:00Z,0,first,true,1,tv,0.5,false",
    "position is negative": "u9,v1,2026-01-05T08:00:00Z,0,-4,true,1,tv,0.5,false",
    "propensity is not a number": "u9,v1,2026-01-05T08:00:00Z,0,0,true,1,tv,high,false",
    "propensity is outside (0, 1]": "u9,v1,2026-01-05T08:00:00Z,0,0,true,1,tv,1.5,false",
    "explore is not a boolean": "u9,v1,2026-01-05T08:00:00Z,0,0,true,1,tv,0.5,perhaps",
}


def test_every_row_problem_is_rejected_with_its_reason(tmp_path: Path) -> None:
    log = write(tmp_path / "log.csv", LOG + "\n".join(BAD_ROWS.values()) + "\n")
    summary = ok(run(log, "--data", tmp_path / "d", "--json"))
    events = summary["inputs"]["events"]
    assert events["rejected_by_reason"] == dict.fromkeys(sorted(BAD_ROWS), 1)
    assert events["rows_read"] == 6 + len(BAD_ROWS)
    # Nothing is lost: stored + rejected + duplicates = rows read.
    assert (
        summary["rows_total"] + events["rows_rejected"] + events["duplicates_dropped"]
        == (events["rows_read"])
    )
    rejected = Dataset.open(tmp_path / "d").rejected().collect()
    assert rejected["reason"].to_list() == list(BAD_ROWS)
    assert rejected["row"].to_list() == list(range(7, 7 + len(BAD_ROWS)))
    assert set(rejected["source"]) == {"log.csv"}
    first = rejected.row(0, named=True)
    assert (first["user_id"], first["item_id"], first["ts"]) == (None, "v1", "2026-01-05T08:00:00Z")
    assert rejected.filter(pl.col("reason") == "ts is not a timestamp")["ts"].item() == "05/01/2026"
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["rejected_by_reason"]["events"] == dict.fromkeys(sorted(BAD_ROWS), 1)


def test_empty_session_id_is_rejected_when_the_log_has_session_ids(tmp_path: Path) -> None:
    log = write(
        tmp_path / "log.csv",
        "user_id,item_id,ts,session_id\nu1,v1,1767600000,s1\nu1,v2,1767600001,\n",
    )
    summary = ok(run(log, "--data", tmp_path / "d", "--json"))
    assert summary["inputs"]["events"]["rejected_by_reason"] == {"session_id is empty": 1}


def test_crlf_line_endings_and_padded_values(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_bytes(
        b"user_id,item_id,ts,clicked\r\nu1,v1, 2026-01-05T08:00:00Z ,TRUE\r\n"
        b"u2,v2,2026-01-05T09:00:00Z, no \r\n"
    )
    summary = ok(run(log, "--data", tmp_path / "d", "--json"))
    assert summary["rows_total"] == 2
    events = Dataset.open(tmp_path / "d").events().collect()
    assert events["clicked"].to_list() == [True, False]
    assert events["user_id"].to_list() == ["u1", "u2"]


def test_a_parquet_column_of_an_impossible_type(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pl.DataFrame({"user_id": ["u1"], "item_id": ["v1"], "ts": [[1, 2]]}).write_parquet(path)
    fails(
        run(path, "--data", tmp_path / "d"),
        f"{path} column 'ts' has type List(Int64), which cannot hold a timestamp; "
        "store it as a string or a number.",
    )


def test_items_file(tmp_path: Path) -> None:
    log = write(tmp_path / "log.csv", LOG)
    items = write(
        tmp_path / "items.csv",
        "item_id,published_ts,duration_s,category,studio\n"
        "v1,2025-12-01,120,music,a\n"
        "v2,2025-12-02T10:00:00+01:00,300.5,news,b\n"
        "v2,2025-12-02T10:00:00+01:00,300.5,news,b\n"
        "v2,2025-12-03,1,news,c\n"
        "v3,someday,5,x,d\n"
        "v4,,-3,y,e\n"
        ",,,,\n"
        "v5,1764547200,,,\n",
    )
    summary = ok(run(log, "--items", items, "--data", tmp_path / "d", "--json"))
    report = summary["inputs"]["items"]
    assert report["rows_read"] == 8
    assert report["duplicates_dropped"] == 1
    assert report["rejected_by_reason"] == {
        "duration_s is negative": 1,
        "item_id is empty": 1,
        "item_id repeats an earlier row with different values": 1,
        "published_ts is not a timestamp": 1,
    }
    assert report["unknown_columns"] == ["studio"]
    assert summary["catalogue_items"] == 3
    items_frame = Dataset.open(tmp_path / "d").items().collect()
    assert items_frame["item_id"].to_list() == ["v1", "v2", "v5"]
    assert items_frame["duration_s"].to_list() == [120.0, 300.5, None]
    assert items_frame["published_ts"][1] == datetime(2025, 12, 2, 9, tzinfo=UTC)
    assert items_frame["published_ts"][2] == datetime(2025, 12, 1, tzinfo=UTC)


# --- whole-file errors -----------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    fails(run(path, "--data", tmp_path / "d"), f"{path} does not exist; check the path.")
    assert not (tmp_path / "d").exists()


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "events.bin"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    fails(
        run(path, "--data", tmp_path / "d"),
        f"{path} is not a CSV, TSV, Parquet or JSON-lines file; convert it to one of those.",
    )


def test_missing_required_column(tmp_path: Path) -> None:
    path = write(tmp_path / "events.csv", "uid,vid,time\nu1,v1,1767600000\n")
    fails(
        run(path, "--data", tmp_path / "d", "--map", "item_id=vid", "--map", "ts=time"),
        f"{path} has no column 'user_id' (found: uid, vid, time); "
        "map yours with --map user_id=uid.",
    )


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path / "events.csv", "")
    fails(
        run(path, "--data", tmp_path / "d"),
        f"{path} is empty; give a file with a header and at least one row.",
    )


def test_header_only(tmp_path: Path) -> None:
    path = write(tmp_path / "events.csv", "user_id,item_id,ts\n")
    fails(
        run(path, "--data", tmp_path / "d"),
        f"{path} has no rows; give a file with at least one event.",
    )
    assert not (tmp_path / "d").exists()


def test_nothing_parsable(tmp_path: Path) -> None:
    path = write(tmp_path / "events.csv", "user_id,item_id,ts\nu1,v1,soon\nu2,v2,later\n")
    fails(
        run(path, "--data", tmp_path / "d"),
        f"{path}: none of its 2 rows is usable (2 with 'ts is not a timestamp'); "
        "check its columns and formats against docs/data.md.",
    )


def test_malformed_csv(tmp_path: Path) -> None:
    path = write(tmp_path / "events.csv", "user_id,item_id,ts\nu1,v1,1767600000,extra,fields\n")
    result = run(path, "--data", tmp_path / "d")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {path} cannot be read as csv (")
    assert result.stderr.endswith("); fix the file or convert it to Parquet.\n")


def test_items_without_item_id(tmp_path: Path) -> None:
    log = write(tmp_path / "log.csv", LOG)
    items = write(tmp_path / "items.csv", "video,duration\nv1,10\n")
    fails(
        run(log, "--items", items, "--data", tmp_path / "d"),
        f"{items} has no column 'item_id' (found: video, duration); "
        "map yours with --map item_id=video.",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--map", "userid=uid"],
            "--map userid=uid: 'userid' is not a column of the data contract; use one of "
            "category, clicked, device, duration_s, explore, item_id, policy, position, "
            "propensity, published_ts, session_id, slate, ts, user_id, watch_time_s.",
        ),
        (["--map", "uid"], "--map uid is not NEW=OLD; write it like --map user_id=uid."),
        (
            ["--map", "device=dev"],
            "--map device=dev: {log} has no column 'dev' (found: user_id, item_id, ts, slate, "
            "position, clicked, watch_time_s, device, propensity, explore); check the name.",
        ),
        (
            ["--session-gap", "soon"],
            "--session-gap soon is not a duration; write a number and a unit, "
            "e.g. 30m, 1h, 90s or 45min.",
        ),
        (["--append", "--replace"], "--append and --replace contradict each other; give only one."),
    ],
)
def test_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    log = write(tmp_path / "log.csv", LOG)
    fails(run(log, "--data", tmp_path / "d", *args), message.format(log=log))


def test_data_folder_must_be_a_dataset_or_empty(tmp_path: Path) -> None:
    log = write(tmp_path / "log.csv", LOG)
    other = tmp_path / "mine"
    other.mkdir()
    write(other / "notes.txt", "keep me")
    fails(
        run(log, "--data", other),
        f"{other} is not empty and holds no dataset (found notes.txt); "
        "choose an empty or new --data folder.",
    )
    assert digest(other) == {"notes.txt": hashlib.sha256(b"keep me").hexdigest()}


# --- idempotence, append, replace ----------------------------------------------------


def test_reingest_is_unchanged_and_byte_identical(tmp_path: Path) -> None:
    log = write(tmp_path / "log.csv", LOG)
    data = tmp_path / "d"
    ok(run(log, "--data", data, "--json"))
    before = digest(data)
    again = ok(run(log, "--data", data, "--json"))
    assert again["status"] == "unchanged"
    assert again["rows_added"] == 0
    assert again["version"] == 1
    assert digest(data) == before
    # The same content under another name is the same file: sha256 decides.
    copy = write(tmp_path / "copy.csv", LOG)
    assert ok(run(copy, "--data", data, "--json"))["status"] == "unchanged"
    assert ok(run(log, "--data", data, "--append", "--json"))["status"] == "unchanged"
    assert ok(run(log, "--data", data, "--replace", "--json"))["status"] == "unchanged"
    assert digest(data) == before


def test_same_input_gives_byte_identical_datasets(tmp_path: Path) -> None:
    log = write(tmp_path / "log.csv", LOG + "u9,v1,never,0,0,true,1,,,\n")
    items = write(tmp_path / "items.csv", "item_id,duration_s\nv1,10\nv2,-1\n")
    ok(run(log, "--items", items, "--data", tmp_path / "a", "--json"))
    ok(run(log, "--items", items, "--data", tmp_path / "b", "--json"))
    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_a_different_file_needs_append_or_replace(tmp_path: Path) -> None:
    data = tmp_path / "d"
    ok(run(write(tmp_path / "log.csv", LOG), "--data", data, "--json"))
    before = digest(data)
    new = write(tmp_path / "new.csv", "user_id,item_id,ts\nu7,v7,2026-01-07T00:00:00Z\n")
    fails(
        run(new, "--data", data),
        f"{data} already holds a dataset (from log.csv); add new.csv to it with --append, "
        "or rebuild it from the given files with --replace.",
    )
    assert digest(data) == before


APPEND = """user_id,item_id,ts,slate,position,clicked,watch_time_s,device,propensity,explore
u1,v3,2026-01-05T09:00:00Z,0,0,true,12,tv,1,true
u1,v4,2026-01-05T09:20:00Z,0,0,true,7,tv,1,true
u1,v5,2026-01-05T08:40:00Z,0,0,false,0,tv,0.5,false
u2,v9,2026-01-07T08:00:00Z,0,0,false,0,mobile,0.5,false
u4,v1,2026-01-08T08:00:00Z,0,0,true,1,tv,0.5,false
u4,v1,2026-01-08T08:00:00Z,0,0,true,1,tv,0.5,false
u5,v1,garbage,0,0,true,1,tv,0.5,false
"""


def test_append_adds_without_duplicates_and_resessionises(tmp_path: Path) -> None:
    data = tmp_path / "d"
    ok(
        run(
            write(tmp_path / "log.csv", LOG + "u6,v1,bad,0,0,true,1,,,\n"), "--data", data, "--json"
        )
    )
    v1 = Dataset.open(data).events().collect()
    summary = ok(run(write(tmp_path / "more.csv", APPEND), "--data", data, "--append", "--json"))
    assert summary["status"] == "appended"
    assert summary["version"] == 2
    # 7 rows: u1/v3 repeats a stored event, u4 twice, u5 unparsable.
    assert summary["inputs"]["events"]["duplicates_dropped"] == 2
    assert summary["inputs"]["events"]["rejected_by_reason"] == {"ts is not a timestamp": 1}
    assert summary["rows_added"] == 4
    assert summary["rows_total"] == 9
    events = Dataset.open(data).events().collect()
    assert events.select(EVENTS_SCHEMA.names()[:3]).is_duplicated().sum() == 0
    sessions = dict(
        events.group_by("user_id").agg(pl.col("session_id").unique().sort()).iter_rows()
    )
    eight = int(datetime(2026, 1, 5, 8, tzinfo=UTC).timestamp())
    # u1 had sessions at 08:00 and 09:00. The new 08:40 event is within 30 min
    # of the stored 09:00 one, so that session is re-sessionised: it now starts
    # at 08:40 (and 09:20 joins it); the 08:00 session keeps its id.
    assert v1.filter(pl.col("user_id") == "u1")["session_id"].unique().sort().to_list() == [
        f"u1:{eight}",
        f"u1:{eight + 3600}",
    ]
    assert sessions["u1"] == [f"u1:{eight}", f"u1:{eight + 2400}"]
    # u2's old session is untouched; the new event, two days later, is a new session.
    u2_old = v1.filter(pl.col("user_id") == "u2")["session_id"][0]
    assert u2_old in sessions["u2"]
    assert len(sessions["u2"]) == 2
    # u3 had no new events: its session id is the same as before.
    assert sessions["u3"] == v1.filter(pl.col("user_id") == "u3")["session_id"].to_list()
    dataset = Dataset.open(data)
    assert [s.file for s in dataset.manifest.sources] == ["log.csv", "more.csv"]
    assert dataset.rejected().collect()["source"].to_list() == ["log.csv", "more.csv"]
    assert sorted(p.name for p in data.iterdir()) == [".lock", "manifest.json", "v000002"]
    # Appending the same file again changes nothing.
    assert ok(run(tmp_path / "more.csv", "--data", data, "--append", "--json"))["status"] == (
        "unchanged"
    )


def test_append_keeps_the_dataset_gap_and_refuses_another(tmp_path: Path) -> None:
    data = tmp_path / "d"
    ok(run(write(tmp_path / "log.csv", LOG), "--data", data, "--session-gap", "1h", "--json"))
    more = write(tmp_path / "more.csv", APPEND)
    fails(
        run(more, "--data", data, "--append", "--session-gap", "45min"),
        f"{data} was sessionised with a 1h gap, not 45m; drop --session-gap, "
        "or rebuild with --replace.",
    )
    summary = ok(run(more, "--data", data, "--append", "--json"))
    assert summary["session_gap_s"] == 3600


def test_append_refuses_a_change_in_where_sessions_come_from(tmp_path: Path) -> None:
    data = tmp_path / "d"
    ok(run(write(tmp_path / "log.csv", LOG), "--data", data, "--json"))
    with_ids = write(tmp_path / "ids.csv", "user_id,item_id,ts,session_id\nu1,v1,1767600000,s\n")
    fails(
        run(with_ids, "--data", data, "--append"),
        f"{with_ids} has a session_id column but the sessions in {data} are derived; "
        "rebuild with --replace to change how sessions are made.",
    )


def test_append_items_only(tmp_path: Path) -> None:
    data = tmp_path / "d"
    log = write(tmp_path / "log.csv", LOG)
    first = write(tmp_path / "items1.csv", "item_id,category\nv1,a\nv2,b\n")
    ok(run(log, "--items", first, "--data", data, "--json"))
    events_before = Dataset.open(data).events().collect()
    second = write(tmp_path / "items2.csv", "item_id,category\nv2,c\nv3,d\n")
    summary = ok(run(log, "--items", second, "--data", data, "--append", "--json"))
    assert summary["status"] == "appended"
    assert summary["inputs"]["events"] is None
    dataset = Dataset.open(data)
    assert dataset.items().collect().rows() == [
        ("v1", None, None, "a"),
        ("v2", None, None, "c"),  # the newer catalogue wins
        ("v3", None, None, "d"),
    ]
    assert dataset.events().collect().equals(events_before)


def test_replace_rebuilds_from_the_new_file(tmp_path: Path) -> None:
    data = tmp_path / "d"
    log = write(tmp_path / "log.csv", LOG + "u6,v1,bad,0,0,true,1,,,\n")
    ok(run(log, "--data", data, "--json"))
    new = write(tmp_path / "new.csv", "user_id,item_id,ts\nu7,v7,2026-01-07T00:00:00Z\n")
    summary = ok(run(new, "--data", data, "--replace", "--json"))
    assert summary["status"] == "replaced"
    assert summary["version"] == 2
    assert summary["rows_total"] == 1
    dataset = Dataset.open(data)
    assert [s.file for s in dataset.manifest.sources] == ["new.csv"]
    assert dataset.rejected().collect().height == 0
    assert dataset.manifest.rejected_by_reason == {"events": {}}
    assert sorted(p.name for p in data.iterdir()) == [".lock", "manifest.json", "v000002"]


def test_sample_data_adds_up() -> None:
    events = REPO / "sample_data" / "events.csv.gz"
    items = REPO / "sample_data" / "items.csv.gz"
    if not events.exists():
        pytest.skip("sample_data/events.csv.gz is not generated yet (make sample-data)")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        args = [events, "--data", Path(tmp) / "d", "--json"]
        if items.exists():
            args += ["--items", items]
        summary = ok(run(*args))
    report = summary["inputs"]["events"]
    with gzip.open(events, "rt", encoding="utf-8") as fh:
        lines = sum(1 for _ in fh) - 1
    assert report["rows_read"] == lines
    assert summary["rows_total"] + report["rows_rejected"] + report["duplicates_dropped"] == lines
    # The simulator writes clean logs with their own session ids.
    assert report["rows_rejected"] == 0
    assert summary["session_ids"] == "log"
