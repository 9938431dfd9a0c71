"""The CI job of docs/ci.md, run end to end: every exit code of the gate leads to its action.

A small simulated world whose logs explore its whole catalogue; production is
a `fresh` model (bootstrapped with --force), the candidate a popularity model
whose first-slate CTR is truly higher in this world. Gate files make the real
`recsim abtest` end in each exit code: ship (0), no ship (1), inconclusive (3),
invalid (4) and an error (2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "examples" / "ci" / "gate-and-promote.sh"
WORKFLOW = REPO / "examples" / "ci" / "github-actions.yml"
RECSIM = str(Path(sys.executable).parent / "recsim")
WHOLE = str(REPO / "examples" / "whole-catalogue.toml")
TRAIN = ["--candidates", "popular", "--ranker", "none", "--config", WHOLE]

GATE_HEAD = "min_users_per_arm = 100\nmin_effective_sample_size = {ess}\nalpha = {alpha}\n"
PRIMARY = '[[primary]]\nmetric = "first_slate_ctr"\nbetter = "{better}"\nmde = 0.10\n'
GATES = {
    "ship": GATE_HEAD.format(ess=100, alpha=0.05) + PRIMARY.format(better="higher"),
    # The candidate's CTR rises: where lower is better, that is significantly worse.
    "reject": GATE_HEAD.format(ess=100, alpha=0.05) + PRIMARY.format(better="lower"),
    # A significance level no estimate this small can reach: not enough evidence either way.
    "inconclusive": GATE_HEAD.format(ess=100, alpha=1e-12) + PRIMARY.format(better="higher"),
    # More effective samples than the logs hold: the estimate is invalid.
    "invalid": GATE_HEAD.format(ess=10**9, alpha=0.05) + PRIMARY.format(better="higher"),
}


def recsim(*args: str, cwd: Path) -> None:
    subprocess.run([RECSIM, *args], cwd=cwd, check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Logs, dataset and a registry whose production is `fresh`; the gate files."""
    root = tmp_path_factory.mktemp("ci")
    recsim(
        "simulate", "--users", "5000", "--items", "30", "--pool-size", "30", "--epsilon", "0.6",
        "--days", "8", "--seed", "3", "--out", "logs", cwd=root,
    )  # fmt: skip
    recsim(
        "ingest", "logs/events.csv.gz", "--items", "logs/items.csv.gz", "--data", "data", cwd=root
    )
    recsim(
        "train", "fresh", "--data", "data", "--registry", "models", "--candidates", "fresh",
        "--ranker", "none", "--config", WHOLE, cwd=root,
    )  # fmt: skip
    recsim(
        "promote", "fresh", "--to", "production", "--registry", "models", "--force",
        "--reason", "bootstrap", cwd=root,
    )  # fmt: skip
    for name, text in GATES.items():
        (root / f"{name}.toml").write_text(text)
    return root


def run_job(root: Path, gate: str, name: str = "cand") -> tuple[int, str, str]:
    """Run the shell version of the CI job; return its exit status, action and output."""
    out = root / f"out-{gate}"
    summary = root / f"summary-{gate}.md"
    env = {
        **os.environ,
        "RECSIM": RECSIM,
        "RECSIM_DATA": "data",
        "RECSIM_REGISTRY": "models",
        "GATE": f"{gate}.toml",
        "OUT": str(out),
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    done = subprocess.run(
        ["bash", str(SCRIPT), name, *TRAIN],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    action = (out / "action").read_text().strip() if (out / "action").exists() else ""
    return done.returncode, action, done.stdout + done.stderr


def aliases(root: Path) -> dict[str, str]:
    return json.loads((root / "models" / "aliases.json").read_text())


def test_each_exit_code_of_the_gate_leads_to_its_action(world: Path) -> None:
    # Not shipped: nothing is promoted, and the job's status says what to do.
    for gate, (status, action) in {
        "reject": (1, "reject"),
        "inconclusive": (0, "collect-more-data"),
        "invalid": (1, "investigate"),
    }.items():
        code, done, output = run_job(world, gate)
        assert (code, done) == (status, action), output
        assert "candidate" not in aliases(world), output
        assert (world / f"summary-{gate}.md").read_text().startswith("#"), output
    # recsim abtest itself fails (a gate file that does not exist): the job fails with its code.
    code, done, output = run_job(world, "missing")
    assert (code, done) == (2, "fail"), output
    assert "Error:" in output
    # Ship: the candidate is promoted to the live test, with the report as its reason.
    code, done, output = run_job(world, "ship")
    assert (code, done) == (0, "promote"), output
    assert aliases(world) == {"candidate": "cand", "production": "fresh"}
    history = json.loads((world / "models" / "history.json").read_text())["entries"]
    assert history[-1]["alias"] == "candidate"
    assert history[-1]["evidence"] == "off-policy"
    assert history[-1]["report"] == str(world / "out-ship" / "report.json")


def test_a_training_failure_fails_the_job(world: Path) -> None:
    code, done, output = run_job(world, "ship", name="Not A Name")
    assert (code, done) == (2, "fail"), output


def test_the_workflow_runs_the_tested_script_and_promotes_only_through_it() -> None:
    text = WORKFLOW.read_text()
    assert "bash examples/ci/gate-and-promote.sh" in text
    # The only promotion without a gate report is the first run's bootstrap.
    promotions = [line for line in text.splitlines() if "recsim promote" in line]
    assert len(promotions) == 1 and "--to production" in promotions[0]
    assert "$GITHUB_STEP_SUMMARY" in SCRIPT.read_text()
    # docs/ci.md shows the script and the workflow as they are.
    doc = (REPO / "docs" / "ci.md").read_text()
    assert SCRIPT.read_text().strip() in doc
    assert WORKFLOW.read_text().strip() in doc
