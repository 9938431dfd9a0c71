"""`recsim abtest --html`: the page of a logged test and of an estimate, hostile arm names.

The logged test's arms are labelled ``<script>alert(1)</script>`` (control) and
``x$\\frac$y`` (treatment) in the events: names come from users' data, so they
must show as text in the page and in the plots' SVG text, and never reach
matplotlib's mathtext (which raises on ``\\frac`` without arguments).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner, Result

from recsim_cli.cli import app
from recsim_cli.ingest import ingest
from recsim_cli.models.config import TrainConfig
from recsim_cli.models.two_stage import train
from recsim_cli.report.abtest import render_abtest
from recsim_cli.simulate import WorldConfig, arms_from_names, run_simulation

REPO = Path(__file__).resolve().parent.parent
SCRIPT = "<script>alert(1)</script>"
MATH = r"x$\frac$y"


class Page(HTMLParser):
    """What a test reads from a page: tags, section ids, SVGs with their text, the page text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.sections: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.svgs: list[list[str]] = []  # the <text> of each top-level <svg>
        self.text: list[str] = []
        self._depth = 0
        self._in_text = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += attrs
        if tag == "section":
            self.sections.append(dict(attrs).get("id") or "")
        if tag == "svg":
            if self._depth == 0:
                self.svgs.append([])
            self._depth += 1
        if tag == "text" and self._depth:
            self._in_text = True
            self.svgs[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._depth -= 1
        if tag == "text":
            self._in_text = False

    def handle_data(self, data: str) -> None:
        if self._in_text:
            self.svgs[-1][-1] += data
        elif not self._depth:
            self.text.append(data)

    def svg_text(self, index: int) -> str:
        return "\n".join(self.svgs[index])

    @property
    def page_text(self) -> str:
        return " ".join(" ".join(self.text).split())


def invoke(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


# --- a logged test with hostile arm labels ---------------------------------------------------


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small logged A/B test whose arms are labelled SCRIPT (control) and MATH (treatment)."""
    root = tmp_path_factory.mktemp("report-abtest")
    arms = arms_from_names(["prod", "personal"])
    run_simulation(WorldConfig(users=600, items=300, days=4, seed=4, arms=arms), root / "logs")
    events = pl.read_csv(root / "logs" / "events.csv.gz").with_columns(
        pl.col("policy").replace({"prod": SCRIPT, "personal": MATH})
    )
    events.write_csv(root / "events.csv")
    ingest(root / "events.csv", data=root / "data")
    return root / "data"


def logged(data: Path, out: Path, *args: object) -> Result:
    return invoke(
        "abtest",
        "--data",
        data,
        "--arm-column",
        "policy",
        "--control",
        SCRIPT,
        "--treatment",
        MATH,
        "--gate",
        REPO / "examples" / "gate.toml",
        "--html",
        out,
        *args,
    )


@pytest.fixture(scope="module")
def logged_page(hostile: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("logged-page")
    result = logged(hostile, out / "page.html", "--report", out / "report.json")
    assert result.exit_code in (0, 1, 3), result.output
    return {"html": out / "page.html", "json": out / "report.json", "dir": out}


def test_the_page_holds_the_decision_plots_and_health_checks(logged_page: dict[str, Path]) -> None:
    html = logged_page["html"].read_text(encoding="utf-8")
    page = Page(html)
    assert page.sections[:3] == ["decision", "lift", "daily"]
    assert {"health", "power", "methods", "inputs"} <= set(page.sections)
    assert len(page.svgs) == 2  # the forest plot and the daily plot
    forest, daily = page.svg_text(0), page.svg_text(1)
    assert "relative lift of" in forest and "guardrail margin" in forest
    assert "online" in forest  # each metric's evidence, in the legend
    assert "pointwise, not sequential" in daily
    report = json.loads(logged_page["json"].read_text(encoding="utf-8"))
    for metric in report["analysis"]["metrics"]:
        assert metric["label"] in daily  # one panel per metric
    verdict = report["decision"]["verdict"]
    text = page.page_text
    assert {"ship": "ship", "no_ship": "do not ship", "inconclusive": "inconclusive"}[
        verdict
    ] in text
    assert "Sample ratio" in text and "mismatch test p =" in text
    assert "users needed per arm" in text
    # Self-contained: no script, no stylesheet or image fetched, links only to read.
    assert "script" not in page.tags and "img" not in page.tags and "link" not in page.tags
    assert not [value for name, value in page.attributes if name == "src"]


def test_the_report_json_has_a_schema_version_and_the_daily_numbers(
    logged_page: dict[str, Path],
) -> None:
    report = json.loads(logged_page["json"].read_text(encoding="utf-8"))
    assert report["schema_version"] == 1
    points = report["daily"]["points"]
    assert report["daily"]["note"].startswith("pointwise, not sequential")
    assert [p["day"] for p in points] == sorted(p["day"] for p in points)
    assert len(points) >= 4
    last = points[-1]
    assert last["users"] == {
        "control": report["analysis"]["n_control"],
        "treatment": report["analysis"]["n_treatment"],
    }
    for final, day in zip(report["analysis"]["metrics"], last["metrics"], strict=True):
        assert day["relative_ci"] == pytest.approx(final["relative_ci"], rel=1e-9)


def test_hostile_names_are_text_in_the_page_and_in_the_svg(logged_page: dict[str, Path]) -> None:
    html = logged_page["html"].read_text(encoding="utf-8")
    assert SCRIPT not in html  # escaped everywhere, never markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    page = Page(html)
    assert "script" not in page.tags
    assert f"recsim abtest: {MATH} vs {SCRIPT}" in page.page_text
    forest = page.svg_text(0)
    assert f"relative lift of {MATH} over {SCRIPT}" in forest  # drawn as written, no mathtext


def test_the_same_inputs_give_the_same_bytes(hostile: Path, logged_page: dict[str, Path]) -> None:
    again = logged_page["dir"] / "again.html"
    result = logged(hostile, again)
    assert result.exit_code in (0, 1, 3), result.output
    assert again.read_bytes() == logged_page["html"].read_bytes()


def test_recsim_report_renders_the_saved_json_to_the_same_page(
    logged_page: dict[str, Path],
) -> None:
    out = logged_page["dir"] / "rendered.html"
    result = invoke("report", logged_page["json"], "--html", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == logged_page["html"].read_bytes()


def test_html_needs_the_report_extra(
    hostile: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    result = logged(hostile, tmp_path / "page.html")
    assert result.exit_code == 2
    assert result.stderr == "Error: --html needs the report extra: pip install 'recsim[report]'.\n"
    assert not (tmp_path / "page.html").exists()


def test_html_with_plan_is_refused(hostile: Path, tmp_path: Path) -> None:
    result = logged(hostile, tmp_path / "page.html", "--plan", "--mde", "0.02")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --html draws the report of an analysis; --plan")


def test_a_report_without_a_gate_or_daily_numbers_renders(logged_page: dict[str, Path]) -> None:
    report = json.loads(logged_page["json"].read_text(encoding="utf-8"))
    report.update(gate=None, decision=None, daily=None, exit_code=0)
    page = Page(render_abtest(report))
    assert "no gate: results only" in page.page_text
    assert "holds no daily numbers" in page.page_text
    assert len(page.svgs) == 1


# --- an estimate of two models from logs ----------------------------------------------------


@pytest.fixture(scope="module")
def estimate(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small world logged with exploration, two models, and their estimate's page."""
    root = tmp_path_factory.mktemp("report-estimate")
    config = WorldConfig(
        users=500, items=40, days=6, slate_size=5, pool_size=40, epsilon=0.6, seed=3
    )
    run_simulation(config, root / "world")
    ingest(
        root / "world" / "events.csv.gz", items=root / "world" / "items.csv.gz", data=root / "data"
    )
    registry = root / "models"
    for name, config_ in (
        ("pop", TrainConfig(candidates="popular", ranker="none", test_days=2)),
        (
            "als",
            TrainConfig(
                candidate_params={"factors": 8, "iterations": 3},
                ranker_days=1,
                n_candidates=40,
                test_days=2,
            ),
        ),
    ):
        train(name, data=root / "data", registry=registry, config=config_)
    gate = root / "gate.toml"
    gate.write_text(
        "min_effective_sample_size = 1\nmin_users_per_arm = 2\n\n"
        '[[primary]]\nmetric = "first_slate_watch_time"\n\n'
        '[[guardrail]]\nmetric = "first_slate_ctr"\nmargin = 0.2\n\n'
        '[[guardrail]]\nmetric = "session_depth"\nmargin = 0.2\n',
        encoding="utf-8",
    )
    args: Sequence[object] = (
        "abtest",
        "--data",
        root / "data",
        "--registry",
        registry,
        "--control",
        "pop",
        "--treatment",
        "als",
        "--replicates",
        "1",
        "--gate",
        gate,
    )
    result = invoke(*args, "--html", root / "page.html", "--report", root / "report.json")
    assert result.exit_code in (0, 1, 3, 4), result.output
    return {"root": root, "html": root / "page.html", "json": root / "report.json"}


def test_an_estimate_shows_its_evidence_and_its_weights(estimate: dict[str, Path]) -> None:
    page = Page(estimate["html"].read_text(encoding="utf-8"))
    assert len(page.svgs) == 3  # forest, daily, weights
    forest = page.svg_text(0)
    assert "off-policy" in forest and "model-based" in forest
    weights = page.svg_text(2)
    assert "pop" in weights and "als" in weights and "importance weight" in weights
    text = page.page_text
    assert "Importance weights" in text and "effective sample size" in text
    assert "no sample ratio to check" in text  # the paired design
    report = json.loads(estimate["json"].read_text(encoding="utf-8"))
    assert report["schema_version"] == 1
    for arm in ("pop", "als"):
        histogram = report["diagnostics"][arm]["histogram"]
        total = histogram["zeros"] + sum(histogram["counts"])
        assert total == report["diagnostics"][arm]["impressions"]


def test_an_estimates_last_day_is_its_final_analysis(estimate: dict[str, Path]) -> None:
    report = json.loads(estimate["json"].read_text(encoding="utf-8"))
    points = report["daily"]["points"]
    assert len(points) == report["counts"]["days"]
    last = points[-1]
    assert last["users"]["control"] == report["analysis"]["n_control"]
    for final, day in zip(report["analysis"]["metrics"], last["metrics"], strict=True):
        assert day["metric"] == final["metric"]
        assert day["treatment"] == pytest.approx(final["treatment"]["estimate"], rel=1e-9)
        assert day["control"] == pytest.approx(final["control"]["estimate"], rel=1e-9)
        assert day["ci"] == pytest.approx(final["ci"], rel=1e-6)


def test_an_estimates_page_renders_again_the_same(estimate: dict[str, Path]) -> None:
    out = estimate["root"] / "rendered.html"
    result = invoke("report", estimate["json"], "--html", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == estimate["html"].read_bytes()
