"""`recsim promote` end to end: real models, a report recsim abtest really wrote, the CLI.

One simulated world serves every test: a live A/B test whose events label
the arms by alias, ``production`` (the production policy) and ``candidate``
(an oracle ranking: clearly better), and two cheap popularity models, ``old``
and ``new``, that those aliases name. Each test promotes in its own copy of
the registry; the copies keep every file, so the fingerprints are the same.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from recsim_cli.cli import app
from recsim_cli.experiment.abtest import resolve_arm_model
from recsim_cli.ingest import ingest
from recsim_cli.models.config import TrainConfig
from recsim_cli.models.two_stage import train
from recsim_cli.promotion import history
from recsim_cli.registry import Registry
from recsim_cli.simulate import WorldConfig, arms_from_names, run_simulation

REPO = Path(__file__).resolve().parent.parent
GATE = REPO / "examples" / "gate.toml"
POP = TrainConfig(candidates="popular", ranker="none", test_days=2)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The dataset, a registry (production: old, candidate: new) and the live test's report."""
    root = tmp_path_factory.mktemp("promote")
    arms = arms_from_names(["production=prod", "candidate=personal"])
    run_simulation(WorldConfig(users=2000, items=600, days=7, seed=4, arms=arms), root / "logs")
    ingest(
        root / "logs" / "events.csv.gz", items=root / "logs" / "items.csv.gz", data=root / "data"
    )
    registry = root / "models"
    for name in ("old", "new"):
        train(name, data=root / "data", registry=registry, config=POP)
    reg = Registry(registry)
    reg.set_alias("production", "old")
    reg.set_alias("candidate", "new")
    report = root / "live.json"
    result = run(
        "abtest",
        "--data",
        root / "data",
        "--arm-column",
        "policy",
        "--control",
        "production",
        "--treatment",
        "candidate",
        "--gate",
        GATE,
        "--registry",
        registry,
        "--report",
        report,
    )
    assert result.exit_code == 0, result.output
    return {"root": root, "data": root / "data", "registry": registry, "report": report}


def run(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def registry(world: dict[str, Path], tmp_path: Path) -> Path:
    """A copy of the world's registry, with production bootstrapped into its history."""
    copy = tmp_path / "models"
    shutil.copytree(world["registry"], copy)
    (copy / "aliases.json").unlink()
    result = run("promote", "old", "--to", "production", "--force", "--registry", copy)
    assert result.exit_code == 0, result.output
    return copy


def promote(registry: Path, *args: object) -> Result:
    return run("promote", *args, "--registry", registry)


def one_line_error(result: Result) -> str:
    """The single ``Error: ...`` line of a refusal (exit 2, no traceback)."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


# --- the logged report names the models its labels resolved to -------------------------------


def test_a_logged_report_records_the_models_of_its_arms(world: dict[str, Path]) -> None:
    report = json.loads(world["report"].read_text(encoding="utf-8"))
    reg = Registry(world["registry"])
    assert report["mode"] == "logged"
    assert report["models"] == {
        "control": {
            "spec": "production",
            "name": "old",
            "fingerprint": reg.open("old").fingerprint,
        },
        "treatment": {
            "spec": "candidate",
            "name": "new",
            "fingerprint": reg.open("new").fingerprint,
        },
    }
    assert report["decision"]["verdict"] == "ship"
    assert report["decision"]["evidence"] == "online"


def test_labels_that_are_not_models_are_recorded_as_null(
    world: dict[str, Path], tmp_path: Path
) -> None:
    path = tmp_path / "r.json"
    result = run(
        "abtest",
        "--data",
        world["data"],
        "--arm-column",
        "policy",
        "--control",
        "production",
        "--treatment",
        "candidate",
        "--registry",
        tmp_path / "no-registry",
        "--report",
        path,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(path.read_text(encoding="utf-8"))["models"] == {
        "control": None,
        "treatment": None,
    }
    assert not (tmp_path / "no-registry").exists()


def test_resolve_arm_model(world: dict[str, Path], tmp_path: Path) -> None:
    reg = world["registry"]
    by_name, by_alias = resolve_arm_model("new", reg), resolve_arm_model("candidate", reg)
    assert by_name is not None and by_alias is not None
    assert (by_alias.spec, by_alias.name) == ("candidate", "new")
    assert by_alias.fingerprint == by_name.fingerprint == Registry(reg).open("new").fingerprint
    for label in ("prod", "Personal", "A B", "production-v2"):
        assert resolve_arm_model(label, reg) is None
    (tmp_path / "file").write_text("", encoding="utf-8")
    assert resolve_arm_model("new", tmp_path / "file") is None


# --- promote with the real report ------------------------------------------------------------


def test_the_live_test_promotes_the_candidate_to_production(
    world: dict[str, Path], registry: Path
) -> None:
    report = world["report"]
    # Online evidence is enough for candidate too (it needs off-policy or online).
    assert promote(registry, "new", "--to", "candidate", "--gate-report", report).exit_code == 0
    result = promote(registry, "candidate", "--to", "production", "--gate-report", report)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Promoted new to production (was old), on online evidence from {report}; history "
        f"entry 3 in {registry}.\n"
    )
    assert Registry(registry).aliases() == {"candidate": "new", "production": "new"}
    [_, _, entry] = history(registry)
    assert (entry.verdict, entry.evidence, entry.forced) == ("ship", "online", False)
    # The same report again: production is the treatment now, not the control.
    again = promote(registry, "new", "--to", "production", "--gate-report", report)
    expected = f"Error: 'new' is already production in {registry}; nothing to do."
    assert one_line_error(again) == expected


def test_json_output_is_the_history_entry(world: dict[str, Path], registry: Path) -> None:
    result = promote(
        registry, "new", "--to", "candidate", "--gate-report", world["report"], "--json"
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["registry"] == str(registry)
    assert (out["id"], out["alias"], out["model"]) == (2, "candidate", "new")
    assert (out["previous_model"], out["previous_fingerprint"]) == (None, None)
    assert len(out["report_sha256"]) == 64


def test_a_retrained_treatment_does_not_match_the_report(
    world: dict[str, Path], registry: Path
) -> None:
    changed = TrainConfig(candidates="popular", ranker="none", test_days=3)
    train("new", data=world["data"], registry=registry, config=changed, force=True)
    result = promote(registry, "new", "--to", "production", "--gate-report", world["report"])
    assert one_line_error(result) == (
        f"Error: Model 'new' in {registry} changed since {world['report']} was written (it was "
        "trained again); test it again with recsim abtest and promote with the new report."
    )
    assert Registry(registry).aliases()["production"] == "old"


def test_refusals_exit_2_with_one_sentence(world: dict[str, Path], registry: Path) -> None:
    report = world["report"]
    # An off-policy-only rule does not apply: the live test has online evidence, so break it.
    data = json.loads(report.read_text(encoding="utf-8"))
    data["decision"]["verdict"], data["exit_code"] = "inconclusive", 3
    inconclusive = registry.parent / "inconclusive.json"
    inconclusive.write_text(json.dumps(data), encoding="utf-8")
    result = promote(registry, "new", "--to", "production", "--gate-report", inconclusive)
    assert one_line_error(result) == (
        f"Error: {inconclusive} decided inconclusive (exit 3), not ship; promote only a model "
        "whose test ships, or pass --force."
    )
    missing = promote(registry, "new", "--to", "production")
    assert one_line_error(missing).startswith("Error: promoting to production needs --gate-report")
    not_json = registry.parent / "notes.json"
    not_json.write_text("ship it", encoding="utf-8")
    bad = promote(registry, "new", "--to", "production", "--gate-report", not_json)
    assert one_line_error(bad).startswith(f"Error: {not_json} is not JSON (")
    assert one_line_error(promote(registry, "new")) == (
        "Error: say where to promote 'new': --to candidate or --to production."
    )
    assert one_line_error(promote(registry, "new", "--to", "staging", "--force")) == (
        "Error: Unknown alias 'staging'. Available: candidate, production."
    )
    assert one_line_error(promote(registry, "--history", "--force")) == (
        "Error: --history does not take --force; drop it."
    )
    assert one_line_error(promote(registry, "new", "--rollback")) == (
        "Error: --rollback does not take NAME; drop it."
    )
    assert Registry(registry).aliases()["production"] == "old"
    assert len(history(registry)) == 1


def test_force_is_recorded_with_its_reason(world: dict[str, Path], registry: Path) -> None:
    result = promote(registry, "new", "--to", "production", "--force", "--reason", "incident 42")
    assert result.exit_code == 0, result.output
    assert "Forced: 1 check(s) overridden." in result.stdout
    entry = history(registry)[-1]
    assert (entry.forced, entry.reason, entry.overridden) == (
        True,
        "incident 42",
        ("no gate report was given",),
    )
    table = promote(registry, "--history")
    assert table.exit_code == 0
    assert "incident" in table.stdout and "forced" in table.stdout  # 80 columns: it may wrap
    listed = json.loads(promote(registry, "--history", "--json").stdout)
    assert [e["model"] for e in listed["entries"]] == ["old", "new"]


# --- the compare-and-swap across processes --------------------------------------------------


def test_two_processes_promoting_at_once_one_wins(world: dict[str, Path], registry: Path) -> None:
    reg = Registry(registry)
    reg.write("other", {"kind": "test"}, lambda folder: (folder / "w.txt").write_text("w"))
    data: dict[str, Any] = json.loads(world["report"].read_text(encoding="utf-8"))
    data["models"]["treatment"] = {
        "spec": "other",
        "name": "other",
        "fingerprint": reg.open("other").fingerprint,
    }
    other_report = registry.parent / "other.json"
    other_report.write_text(json.dumps(data), encoding="utf-8")
    jobs = [("new", world["report"]), ("other", other_report)]
    procs = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "recsim_cli", "promote", name, "--to", "production"),
                *("--gate-report", str(report), "--registry", str(registry)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, report in jobs
    ]
    outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert sorted(code for code, _ in outcomes) == [0, 2], outcomes
    [loser] = [err for code, err in outcomes if code == 2]
    assert loser.startswith("Error: production changed since "), loser
    assert loser.count("\n") == 1
    winner = reg.aliases()["production"]
    assert winner in ("new", "other")
    assert [e.model for e in history(registry)] == ["old", winner]


# --- rollback --------------------------------------------------------------------------------


def test_rollback_restores_production(world: dict[str, Path], registry: Path) -> None:
    assert promote(registry, "new", "--to", "production", "--force").exit_code == 0
    result = promote(registry, "--rollback", "--reason", "watch time fell")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Rolled production back to old (was new), undoing promotion 2; history entry 3 in "
        f"{registry}.\n"
    )
    assert Registry(registry).aliases()["production"] == "old"
    assert one_line_error(promote(registry, "--rollback")) == (
        "Error: No model was production before 'old' (promotion 1 set it first), so there is "
        "none to roll back to; promote another model with recsim promote NAME --to production."
    )
    none = promote(registry, "--rollback", "--to", "candidate")
    assert one_line_error(none).startswith("Error: The history of ")


def _serve() -> Any:
    """``recsim_cli.serve`` once its package exists (written alongside this one)."""
    try:
        import recsim_cli.serve as serve
    except ImportError:  # pragma: no cover - until the serving store lands
        pytest.skip("recsim_cli.serve is not there yet")
    if not hasattr(serve, "export_model"):  # pragma: no cover
        pytest.skip("recsim_cli.serve has no export_model yet")
    return serve


@pytest.mark.parametrize("kept", [True, False], ids=["kept-export", "exported-again"])
def test_rollback_points_the_store_back(world: dict[str, Path], registry: Path, kept: bool) -> None:
    serve = _serve()
    url = f"sqlite:///{registry.parent / 'store.db'}"
    first = serve.export_model("old", registry=registry, url=url, k=5).version
    promote(registry, "new", "--to", "production", "--force")
    second = serve.export_model("new", registry=registry, url=url, k=5).version
    if not kept:
        with serve.open_store(url) as store:
            store.delete(first)
    result = promote(registry, "--rollback", "--store", url, "--json")
    assert result.exit_code == 0, result.output
    export = json.loads(result.stdout)["export"]
    with serve.open_store(url) as store:
        live = store.live()
    assert live is not None
    assert (live.model, live.fingerprint) == ("old", Registry(registry).open("old").fingerprint)
    assert export["version"] == live.version
    assert export["replaced"] == second
    assert export["reexported"] is (not kept)
    assert (live.version == first) is kept
