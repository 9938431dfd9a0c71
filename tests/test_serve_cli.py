"""`recsim export` and `recsim serve-check` end to end, on SQLite and on a real Redis."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from redis_server import RedisServer, redis_server, redis_url  # noqa: F401
from typer.testing import CliRunner, Result

from recsim_cli.cli import app
from recsim_cli.models.two_stage import recommend
from recsim_cli.registry import Registry
from recsim_cli.serve import read_export


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A popularity model trained through the CLI on a tiny simulated log."""
    root = tmp_path_factory.mktemp("serve-model")
    runner = CliRunner()

    def run(*args: object) -> None:
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output

    world, data, registry = root / "world", root / "data", root / "models"
    run(
        *("simulate", "--users", 150, "--items", 40, "--days", 5, "--slate-size", 5),
        *("--pool-size", 20, "--seed", 3, "--out", world),
    )
    run("ingest", world / "events.csv.gz", "--items", world / "items.csv.gz", "--data", data)
    run(
        *("train", "pop", "--data", data, "--registry", registry),
        *("--candidates", "popular", "--ranker", "none", "--test-days", 1),
    )
    return {"data": data, "registry": registry}


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'out' / 'recs.db'}"  # 'out' does not exist yet
    return str(request.getfixturevalue("redis_url"))


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return result.stdout


def fails(result: Result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == f"Error: {message}\n"
    assert "Traceback" not in result.output


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def export(invoke, model: dict[str, Path], url: str, *extra: object) -> Result:
    return invoke(["export", "pop", "--to", url, "--registry", model["registry"], *extra])


def test_export_writes_what_recommend_computes(invoke, model, url: str) -> None:
    out = ok(export(invoke, model, url, "--k", 10))
    assert "recsim export pop" in out
    assert "version (live now)" in out
    assert "s3cret-pw" not in out
    exported = read_export(url)
    recs = recommend("pop", registry=model["registry"], k=10).frame
    expected = recs.select(
        "user_id", (pl.col("rank") - 1).cast(pl.Int32).alias("rank"), "item_id"
    ).sort(["user_id", "rank"])
    assert_frame_equal(exported.lists, expected)
    unknown = recommend("pop", registry=model["registry"], users=["nobody"], k=10).frame
    assert exported.fallback == unknown.sort("rank")["item_id"].to_list()
    assert exported.model == "pop" and exported.k == 10
    assert exported.fingerprint == Registry(model["registry"]).open("pop").fingerprint


def test_export_json_masks_the_password(invoke, model, redis_url: str) -> None:  # noqa: F811
    summary = json.loads(ok(export(invoke, model, redis_url, "--k", 5, "--json")))
    port = redis_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0]
    assert summary["url"] == f"redis://:***@127.0.0.1:{port}/0"
    assert summary["version"] == read_export(redis_url).version
    assert summary["previous"] is None and summary["deleted"] == []
    assert summary["rows"] == summary["users"] * 5
    assert (summary["grace_s"], summary["ttl_s"], summary["k"]) == (3600.0, None, 5)


def test_export_is_deterministic_and_keeps_the_previous_version(invoke, model, url: str) -> None:
    first = json.loads(ok(export(invoke, model, url, "--k", 5, "--json")))
    second = json.loads(ok(export(invoke, model, url, "--k", 5, "--json", "--ttl", "2h")))
    assert second["previous"] == first["version"] != second["version"]
    old = read_export(url, version=first["version"])
    new = read_export(url)
    assert new.version == second["version"]
    assert_frame_equal(old.lists, new.lists)
    assert old.fallback == new.fallback
    assert (old.fingerprint, old.k) == (new.fingerprint, new.k)


def test_serve_check_prints_latency_of_both_ways_of_reading(invoke, model, url: str) -> None:
    version = json.loads(ok(export(invoke, model, url, "--k", 5, "--json")))["version"]
    out = ok(invoke(["serve-check", "--from", url, "--users", 150, "--seed", 1]))
    for text in (
        "recsim serve-check",
        version,
        "one persistent connection",
        "persistent connection",
        "new connection per read",
        "p99 ms",
        "reads/s",
        "Aim for ",
    ):
        assert text in out, text
    assert "s3cret-pw" not in out
    data = json.loads(ok(invoke(["serve-check", "--from", url, "--users", 150, "--json"])))
    assert (data["version"], data["model"], data["k"], data["seed"]) == (version, "pop", 5, 0)
    assert data["persistent"]["reads"] == 150 and data["persistent"]["connections"] == 1
    assert data["per_request"]["reads"] == 150 and data["per_request"]["connections"] == 150
    assert data["persistent"]["p50_ms"] <= data["persistent"]["p99_ms"]
    assert data["empty_lists"] == 0 and data["version_changed"] is False
    assert data["backend"] == url.split(":", 1)[0]
    assert data["aim_p99_ms"] == {"sqlite": 0.2, "redis": 1.0}[data["backend"]]


def test_an_unreachable_redis_is_one_line_without_the_password(invoke, model) -> None:
    port = closed_port()
    url = f"redis://:hunter2@127.0.0.1:{port}/0"
    message = (
        f"Cannot connect to Redis at redis://:***@127.0.0.1:{port}/0; check that redis-server "
        "is running there and that the host and port are right."
    )
    fails(export(invoke, model, url), message)
    fails(invoke(["serve-check", "--from", url]), message)


def test_a_wrong_redis_password_is_named(invoke, redis_server: RedisServer) -> None:  # noqa: F811
    url = f"redis://:wrong@127.0.0.1:{redis_server.port}/0"
    fails(
        invoke(["serve-check", "--from", url]),
        f"Redis at redis://:***@127.0.0.1:{redis_server.port}/0 refused the credentials; "
        "check the user name and password in the URL.",
    )


def test_an_unsupported_scheme_is_refused(invoke, model) -> None:
    fails(
        export(invoke, model, "mysql://root:pw@db/recs"),
        "Unsupported store URL 'mysql://root:***@db/recs'; give sqlite:///relative/path.db, "
        "sqlite:////absolute/path.db or redis://[:password@]host:port/db.",
    )


def test_serve_check_needs_an_existing_store_with_a_live_version(invoke, tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'recs.db'}"
    fails(
        invoke(["serve-check", "--from", missing]),
        f"{missing}: {tmp_path / 'recs.db'} does not exist; export a model to it first with "
        f"recsim export NAME --to {missing}.",
    )
    from recsim_cli.serve import open_store

    open_store(missing, create=True).close()
    fails(
        invoke(["serve-check", "--from", missing]),
        f"No version is live in {missing}; export a model first with recsim export NAME "
        f"--to {missing}.",
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--grace", "soon"],
            "--grace soon is not a duration; write a number and a unit, e.g. 1h, 30m, 90s, or 0.",
        ),
        (
            ["--ttl", "30m"],
            "--ttl of 1800 s is shorter than the grace period of 3600 s (or 1 s); a reader "
            "still on the retired version would lose it, so give a --ttl of at least the "
            "--grace.",
        ),
    ],
)
def test_bad_durations_are_refused(invoke, model, tmp_path, flags, message) -> None:
    fails(export(invoke, model, f"sqlite:///{tmp_path / 'recs.db'}", *flags), message)
    assert not (tmp_path / "recs.db").exists()


def test_grace_zero_deletes_the_previous_version_at_once(invoke, model, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'recs.db'}"
    first = json.loads(ok(export(invoke, model, url, "--k", 3, "--json")))
    second = json.loads(ok(export(invoke, model, url, "--k", 3, "--json", "--grace", "0")))
    assert second["deleted"] == [first["version"]]


def test_without_the_redis_package_the_error_says_what_to_install(
    invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    fails(
        invoke(["serve-check", "--from", "redis://:pw@localhost:6379/0"]),
        "redis://:***@localhost:6379/0 needs the redis package; install it with "
        "pip install 'recsim[redis]'.",
    )
