"""`recsim abtest` on a simulated, ingested A/B test: every exit code, reports, plans.

One dataset serves every test: 2,000 users split evenly between four arms,
``A`` and ``B`` (both the production policy: an A/A test), ``explore``
(uniformly random slates: clearly worse) and ``personal`` (an oracle ranking:
clearly better). Seed 4 is one where the A/A test is inconclusive, as it is
in the large majority of seeds (the false-positive rate is checked in
``test_a_a_rejects_at_alpha``, marked slow).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from recsim_cli import __version__
from recsim_cli.cli import app
from recsim_cli.dataset import Dataset
from recsim_cli.experiment import METRICS
from recsim_cli.experiment import abtest as abtest_module
from recsim_cli.experiment.abtest import run_logged_abtest
from recsim_cli.experiment.markdown import abtest_markdown
from recsim_cli.experiment.plan import plan_logged_abtest
from recsim_cli.ingest import ingest
from recsim_cli.simulate import WorldConfig, arms_from_names, run_simulation

REPO = Path(__file__).resolve().parent.parent
GATE = REPO / "examples" / "gate.toml"
ARMS = ["A=prod", "B=prod", "explore", "personal"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("abtest")
    config = WorldConfig(users=2000, items=600, days=7, seed=4, arms=arms_from_names(ARMS))
    run_simulation(config, root / "logs")
    ingest(root / "logs" / "events.csv.gz", data=root / "data")
    return root / "data"


def abtest(data: Path, *args: object) -> Result:
    argv = ["abtest", "--data", str(data), "--arm-column", "policy", *map(str, args)]
    return CliRunner().invoke(app, argv, catch_exceptions=False)


def gate_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gate.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- the gate's exit codes on real effects --------------------------------------------------


def test_a_clearly_better_policy_ships(data: Path) -> None:
    result = abtest(data, "--control", "A", "--treatment", "personal", "--gate", GATE)
    assert result.exit_code == 0, result.stderr
    assert "Decision: ship (exit 0)" in result.stdout
    assert "watch_time is significantly better" in result.stdout


def test_random_slates_are_detectably_worse_and_do_not_ship(data: Path) -> None:
    result = abtest(data, "--control", "A", "--treatment", "explore", "--gate", GATE)
    assert result.exit_code == 1, result.stderr
    assert "Decision: no ship (exit 1)" in result.stdout
    report = run_logged_abtest(data, control="A", treatment="explore", metrics=["ctr"])
    ctr = report.result.metric("ctr")
    assert ctr.p_value < 1e-6
    assert ctr.ci[1] < 0  # CTR is detectably lower, not just "different"


def test_an_a_a_test_is_inconclusive(data: Path) -> None:
    result = abtest(data, "--control", "A", "--treatment", "B", "--gate", GATE)
    assert result.exit_code == 3, result.stderr
    assert "Decision: inconclusive (exit 3)" in result.stdout
    assert "shows no significant change" in result.stdout


def test_a_sample_ratio_mismatch_is_invalid(data: Path, tmp_path: Path) -> None:
    gate = gate_file(tmp_path, 'split = [0.2, 0.8]\n[[primary]]\nmetric = "watch_time"\n')
    result = abtest(data, "--control", "A", "--treatment", "B", "--gate", gate)
    assert result.exit_code == 4, result.stderr
    assert "Decision: invalid (exit 4)" in result.stdout
    assert "Sample-ratio mismatch" in result.stdout
    assert "not judged (invalid)" in result.stdout


def test_without_a_gate_results_exit_0(data: Path) -> None:
    result = abtest(data, "--control", "A", "--treatment", "explore")
    assert result.exit_code == 0, result.stderr
    for text in ("CTR (ctr, primary)", "Session depth", "p-value (welch-t)", "adjusted p (holm)"):
        assert text in result.stdout
    assert "No gate given (--gate): results only, exit 0." in result.stdout
    assert "Ignored" in result.stdout  # the events of the two other arms


def test_the_paired_design_on_split_users_is_invalid(data: Path) -> None:
    result = abtest(data, "--control", "A", "--treatment", "B", "--design", "paired")
    assert result.exit_code == 4
    assert result.stderr.startswith("Error: the paired design needs every user in both arms")


# --- errors fail closed: 2 or 70, never 0 or 1 ----------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--treatment", "C"],
            "column 'policy' has no events labelled 'C' (labels found: A, B, explore, "
            "personal); give --control and --treatment from these.",
        ),
        (
            ["--alpha", "0.1"],
            f"--alpha 0.1 conflicts with alpha = 0.05 in {GATE}; the gate's alpha decides, so "
            "drop --alpha or change the gate file.",
        ),
        (
            ["--metrics", "ctr"],
            f"--metrics ctr conflicts with watch_time in {GATE}; the gate decides, so drop "
            "--metrics or change the gate file.",
        ),
        (
            ["--split", "40/60"],
            f"--split 40/60 conflicts with 50/50 in {GATE}; the gate decides, so drop --split "
            "or change the gate file.",
        ),
        (
            ["--split", "1/2/3"],
            "--split 1/2/3: give two shares, control/treatment, e.g. 50/50.",
        ),
        (["--mde", "0.02"], "--mde sizes an experiment with --plan; add --plan or drop --mde."),
        (
            ["--cuped", "--pre-days", "0"],
            "CUPED needs a pre-period: give pre_days (--pre-days) of 1 or more.",
        ),
        (["--design", "crossover"], "Unknown design 'crossover'. Available: paired, split."),
        (
            ["--both-arms", "drop"],
            "--both-arms must be exclude or keep; got 'drop'.",
        ),
        (
            ["--start", "soon"],
            "--start soon: give a date like 2026-01-12 or a UTC time like 2026-01-12T06:00:00Z.",
        ),
        (
            ["--start", "2026-02-01"],
            "no events of arm 'A' in column 'policy' from 2026-02-01T00:00:00Z; check the "
            "window (--start, --end) and the arm labels.",
        ),
    ],
)
def test_mistakes_exit_2_with_one_sentence(data: Path, args: list[str], message: str) -> None:
    result = abtest(data, "--control", "A", "--treatment", "B", "--gate", GATE, *args)
    assert result.exit_code == 2
    assert result.stderr == f"Error: {message}\n"
    assert result.stdout == ""


def test_without_an_arm_column_the_arms_are_models_to_estimate(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "abtest",
            "--control",
            "als-v1",
            "--treatment",
            "als-v2",
            "--registry",
            str(tmp_path / "models"),
            "--gate",
            str(GATE),
        ],
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: Unknown model 'als-v1'")
    assert "or train one with recsim train als-v1." in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_missing_dataset_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nothing"
    result = abtest(missing, "--control", "A", "--treatment", "B", "--gate", GATE)
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {missing} is not a dataset (no manifest.json); create it with "
        f"recsim ingest LOGS --data {missing}.\n"
    )


def _copy(data: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(data, tmp_path / "copy"))


def test_a_corrupt_manifest_exits_2(data: Path, tmp_path: Path) -> None:
    copy = _copy(data, tmp_path)
    (copy / "manifest.json").write_text("{not json", encoding="utf-8")
    result = abtest(copy, "--control", "A", "--treatment", "B", "--gate", GATE)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {copy / 'manifest.json'} cannot be read (")
    assert result.stderr.endswith("); re-create the dataset with recsim ingest --replace.\n")


def test_a_damaged_events_file_exits_2(data: Path, tmp_path: Path) -> None:
    copy = _copy(data, tmp_path)
    for part in Dataset.open(copy).manifest.events_files:
        path = copy / part
        path.write_bytes(path.read_bytes()[:2000])
    result = abtest(copy, "--control", "A", "--treatment", "B", "--gate", GATE)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {copy}: cannot read the dataset's events (")
    assert result.stderr.endswith("); re-create it with recsim ingest --replace.\n")


def test_a_bad_gate_file_exits_2(data: Path, tmp_path: Path) -> None:
    gate = gate_file(tmp_path, '[[primary]]\nmetric = "watchtime"\n')
    result = abtest(data, "--control", "A", "--treatment", "B", "--gate", gate)
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {gate}: [[primary]] #1 has unknown metric 'watchtime'. "
        f"Available: {', '.join(METRICS)}.\n"
    )


def test_an_unwritable_report_exits_2_not_the_verdict(data: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    target = blocker / "report.json"
    result = abtest(
        data, "--control", "A", "--treatment", "personal", "--gate", GATE, "--report", target
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: cannot write --report {target} (")


@pytest.mark.parametrize("where", ["analyse", "decide"])
def test_an_unexpected_exception_exits_70(
    data: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(abtest_module, where, broken)
    result = abtest(data, "--control", "A", "--treatment", "personal", "--gate", GATE)
    assert result.exit_code == 70
    assert result.stderr == (
        "Error: internal error: RuntimeError: boom (run with --debug for the traceback)\n"
    )
    assert result.stdout == ""


# --- reports ---------------------------------------------------------------------------------


def test_report_json_round_trips_and_is_byte_identical(data: Path, tmp_path: Path) -> None:
    args = ["--control", "A", "--treatment", "personal", "--gate", GATE, "--bootstrap", "200"]
    for name in ("one", "two"):
        result = abtest(
            data,
            *args,
            "--seed",
            "7",
            "--report",
            tmp_path / f"{name}.json",
            "--markdown",
            tmp_path / f"{name}.md",
        )
        assert result.exit_code == 0, result.stderr
    first = (tmp_path / "one.json").read_bytes()
    assert first == (tmp_path / "two.json").read_bytes()
    assert (tmp_path / "one.md").read_bytes() == (tmp_path / "two.md").read_bytes()
    report = run_logged_abtest(
        data, control="A", treatment="personal", gate=GATE, bootstrap=200, seed=7
    )
    assert json.loads(first) == json.loads(json.dumps(report.to_dict()))
    saved = json.loads(first)
    assert saved["seed"] == 7
    assert saved["recsim_version"] == __version__
    assert saved["exit_code"] == 0
    assert saved["decision"]["verdict"] == "ship"
    assert saved["analysis"]["settings"]["alpha"] == 0.05
    assert saved["analysis"]["metrics"][0]["test"] == "welch-t"
    assert saved["analysis"]["metrics"][0]["bootstrap"]["resamples"] == 200
    manifest = Dataset.open(data).manifest
    assert saved["input"]["dataset_version"] == manifest.version
    assert [s["sha256"] for s in saved["input"]["sources"]] == [s.sha256 for s in manifest.sources]
    assert saved["gate"]["file"] == str(GATE)
    json_out = abtest(data, *args, "--seed", "7", "--json")
    assert json_out.stdout.encode() == first


def test_another_seed_changes_only_the_bootstrap(data: Path) -> None:
    one, two = (
        run_logged_abtest(data, control="A", treatment="B", bootstrap=100, seed=s).to_dict()
        for s in (1, 2)
    )
    assert one["analysis"]["metrics"][0]["p_value"] == two["analysis"]["metrics"][0]["p_value"]
    assert one["analysis"]["metrics"][0]["bootstrap"] != two["analysis"]["metrics"][0]["bootstrap"]


def test_markdown_summary(data: Path) -> None:
    report = run_logged_abtest(data, control="A", treatment="personal", gate=GATE)
    text = abtest_markdown(report)
    lines = text.splitlines()
    assert lines[0] == "## recsim abtest: `personal` vs `A`: ✅ **ship**"
    assert f"Decision of `{GATE}`: **ship** (exit 0)." in text
    assert any(line.startswith("- watch_time is significantly better") for line in lines)
    header = next(line for line in lines if line.startswith("| metric |"))
    assert header.startswith("| metric | role | A | personal | absolute lift (95% CI) |")
    assert sum(line.startswith("| Watch time per session | primary |") for line in lines) == 1
    assert any(line.startswith("| CTR | guardrail |") for line in lines)
    assert "**Health checks:** all passed." in text
    sha = Dataset.open(data).manifest.sources[0].sha256[:12]
    assert f"events.csv.gz `{sha}`" in text
    assert f"recsim {__version__}" in text
    no_gate = abtest_markdown(run_logged_abtest(data, control="A", treatment="B"))
    assert no_gate.splitlines()[0] == "## recsim abtest: `B` vs `A`: results (no gate)"


def test_cuped_reports_its_pre_period(data: Path) -> None:
    result = abtest(data, "--control", "A", "--treatment", "B", "--cuped")
    assert result.exit_code == 0
    assert "No user has events in the 7 days before the start, so CUPED changes nothing" in (
        " ".join(result.stdout.split())
    )
    later = run_logged_abtest(
        data,
        control="A",
        treatment="B",
        cuped=True,
        pre_days=3,
        start=abtest_module.dt.datetime(2026, 1, 8, tzinfo=abtest_module.dt.UTC),
    )
    cuped = later.result.metric("ctr").cuped
    assert cuped is not None and cuped.variance_reduction > 0
    assert later.warnings[-1].endswith(
        "pre-period events are labelled 'A' or 'B': if the experiment was already running, "
        "the CUPED covariate is affected by the treatment; start at the experiment's first day."
    )


# --- planning --------------------------------------------------------------------------------


def test_plan_sizes_from_the_observed_variance(data: Path) -> None:
    from scipy import stats

    result = abtest(data, "--control", "A", "--treatment", "B", "--plan", "--mde", "0.05")
    assert result.exit_code == 0, result.stderr
    assert "users needed (power 80%, split 50/50)" in result.stdout
    plan = plan_logged_abtest(data, control="A", treatment="B", mde=0.05, metrics=["ctr"])
    (ctr,) = plan.metrics
    report = run_logged_abtest(data, control="A", treatment="B", metrics=["ctr"])
    m = report.result.metric("ctr")
    var_c, var_t = m.control.se**2 * m.control.users, m.treatment.se**2 * m.treatment.users
    z = stats.norm.ppf(1 - 0.05 / 2) + stats.norm.ppf(0.8)
    total = math.ceil(z**2 * (var_c / 0.5 + var_t / 0.5) / (0.05 * m.control.value) ** 2)
    assert ctr.users_control == ctr.users_treatment == math.ceil(total * 0.5)
    assert ctr.alpha == 0.05  # one primary: no correction needed
    three = plan_logged_abtest(data, control="A", treatment="B", mde=0.05)
    assert {p.alpha for p in three.metrics} == {0.05 / 3}
    assert np.isclose(three.metrics[0].sd_control, math.sqrt(var_c))


def test_plan_takes_the_gate_mde_and_margins(data: Path) -> None:
    plan = plan_logged_abtest(data, control="A", treatment="B", gate=GATE)
    assert [(p.metric, p.relative_mde, p.sided) for p in plan.metrics] == [
        ("watch_time", 0.05, 2),
        ("ctr", 0.01, 1),
    ]
    result = abtest(data, "--control", "A", "--treatment", "B", "--gate", GATE, "--plan")
    assert result.exit_code == 0, result.stderr
    result = abtest(data, "--control", "A", "--treatment", "B", "--plan")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: --plan needs the relative change to detect: give --mde (e.g. 0.02 for 2%); "
        "none is set for ctr, watch_time, session_depth.\n"
    )


# --- help ------------------------------------------------------------------------------------


def test_help_has_an_example_and_loads_no_heavy_library() -> None:
    result = CliRunner().invoke(app, ["abtest", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "recsim abtest --data ab-data --arm-column policy" in result.stdout
    code = (
        "import sys\n"
        "from recsim_cli.cli import main\n"
        "main(['abtest', '--help'])\n"
        "print('HEAVY=' + ','.join(m for m in ('implicit', 'lightgbm', 'scipy.stats') "
        "if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    ).stdout
    assert "HEAVY=\n" in out


# --- the A/A false-positive rate on simulated logs (slow) -----------------------------------


@pytest.mark.slow
def test_a_a_rejects_at_alpha() -> None:
    """200 A/A worlds of 500 users: each metric rejects in about 5% of them (3 MC SE band)."""
    from recsim_cli.experiment import analyse
    from recsim_cli.experiment.logged import aggregate_experiment
    from recsim_cli.simulate import events_frame, simulate_logs

    p_values = []
    for seed in range(200):
        config = WorldConfig(
            users=500, items=400, days=5, seed=seed, arms=arms_from_names(["A=prod", "B=prod"])
        )
        logs = simulate_logs(config)
        events = events_frame(logs.world, logs.sessions, logs.impressions, logs.user_arm)
        frame = aggregate_experiment(events.lazy(), control="A", treatment="B", pre_days=0).frame
        result = analyse(
            frame,
            ["ctr", "watch_time", "session_depth"],
            control="A",
            treatment="B",
            correction="none",
        )
        p_values.append([m.p_value for m in result.metrics])
    rate = (np.asarray(p_values) < 0.05).mean(axis=0)
    assert np.all(np.abs(rate - 0.05) < 3 * math.sqrt(0.05 * 0.95 / 200)), rate
