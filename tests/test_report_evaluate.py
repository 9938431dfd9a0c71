"""The evaluate report: the JSON schema it is drawn from, the HTML page, `recsim report`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from recsim_cli.evaluate import metric_curves
from recsim_cli.ingest import ingest
from recsim_cli.metrics import METRIC_NAMES, metric_column, rank_lists, user_metrics
from recsim_cli.report.evaluate import render_evaluate

SCRIPT_FILE = "<script>alert(1)"  # a file name cannot hold the "/" of "</script>"
SCRIPT = "<script>alert(1)</script>"
MATH = r"x$\frac$y"
METRICS = "recall,ndcg,hit_rate"


def write_world(root: Path) -> tuple[Path, list[Path]]:
    """A small dataset (160 users, 40 items, 6 days) and three recommendation files.

    The files are named after hostile labels (`recsim evaluate --recs` labels
    an input by its file name): ``pop``, ``<script>alert(1)`` and ``x$\\frac$y``.
    """
    rng = np.random.default_rng(5)
    users, items, days, per_user = 160, 40, 6, 24
    start = datetime(2026, 1, 1, tzinfo=UTC)
    popularity = 1.0 / np.arange(1, items + 1)
    n = users * per_user
    item = rng.choice(items, size=n, p=popularity / popularity.sum())
    seconds = rng.integers(0, days * 86_400, size=n)
    clicked = rng.random(n) < 0.25 + 0.5 * popularity[item]
    log = pl.DataFrame(
        {
            "user_id": [f"u{u:03d}" for u in np.repeat(np.arange(users), per_user)],
            "item_id": [f"i{i:02d}" for i in item],
            "ts": [
                (start + timedelta(seconds=int(s))).strftime("%Y-%m-%dT%H:%M:%SZ") for s in seconds
            ],
            "clicked": clicked,
            "watch_time_s": np.where(clicked, 60.0, 0.0),
            "device": rng.choice(["tv", "mobile", "desktop"], size=n),
        }
    )
    log.write_csv(root / "log.csv")
    published = [
        (start - timedelta(days=int(d))).strftime("%Y-%m-%dT%H:%M:%SZ")
        for d in rng.integers(-3, 30, items)
    ]
    pl.DataFrame(
        {
            "item_id": [f"i{i:02d}" for i in range(items)],
            "published_ts": published,
            "duration_s": 100.0,
        }
    ).write_csv(root / "items.csv")
    data = root / "data"
    ingest(root / "log.csv", items=root / "items.csv", data=data)
    every = [f"u{u:03d}" for u in range(users)]
    files = []
    for name, lists in (
        ("pop", [list(range(10))] * users),
        (SCRIPT_FILE, [list(rng.permutation(items)[:10]) for _ in every]),
        (MATH, [list(rng.permutation(items)[:10]) for _ in every]),
    ):
        path = root / f"{name}.csv"
        pl.DataFrame(
            {
                "user_id": np.repeat(every, 10),
                "item_id": [f"i{i:02d}" for row in lists for i in row],
                "rank": np.tile(np.arange(1, 11), users),
            }
        ).write_csv(path)
        files.append(path)
    return data, files


class Page(HTMLParser):
    """What the tests look for in a page: sections, SVGs, the text inside the SVGs, tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.sections: list[str] = []
        self.svgs = 0
        self.svg_texts: list[str] = []
        self._in_text = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "section":
            self.sections.append(dict(attrs).get("id") or "")
        elif tag == "svg":
            self.svgs += 1
        elif tag == "text":
            self._in_text = True
            self.svg_texts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "text":
            self._in_text = False

    def handle_data(self, data: str) -> None:
        if self._in_text:
            self.svg_texts[-1] += data


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    return write_world(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def written(world: tuple[Path, list[Path]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`recsim evaluate --recs ... --json --html` once; the folder holding both files."""
    from typer.testing import CliRunner

    from recsim_cli.cli import app

    data, files = world
    out = tmp_path_factory.mktemp("written")
    args = ["evaluate", "--data", data, "--k", "2,5", "--metrics", METRICS, "--by", "device"]
    for path in files:
        args += ["--recs", path]
    args += ["--json", out / "evaluate.json", "--html", out / "evaluate.html"]
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert f"HTML report written to {out / 'evaluate.html'}" in result.stdout
    return out


def test_json_has_a_schema_version_and_every_k_up_to_the_largest(written: Path) -> None:
    report = json.loads((written / "evaluate.json").read_text())
    assert report["kind"] == "recsim evaluate report"
    assert report["schema_version"] == 1
    assert report["recsim_version"]
    assert report["curve_k"] == [1, 2, 3, 4, 5]
    assert report["confidence"] == pytest.approx(0.95)
    assert report["catalogue_items"] == 40
    labels = [item["label"] for item in report["inputs"]]
    assert labels == ["pop", SCRIPT_FILE, MATH]
    for item in report["inputs"]:
        assert set(item["curves"]) == set(METRICS.split(","))
        for metric, curve in item["curves"].items():
            assert len(curve["mean"]) == len(curve["ci_low"]) == len(curve["ci_high"]) == 5
            for k in (2, 5):  # the curve passes through the table's means
                table = item["metrics"][f"{metric}@{k}"]
                assert curve["mean"][k - 1] == pytest.approx(table["mean"], abs=1e-12)
                assert curve["ci_low"][k - 1] == pytest.approx(table["ci_low"], abs=1e-12)
        assert set(item["segments"]) == {"first_seen", "device"}
    assert len(report["pairs"]) == 3


def test_the_schema_evaluate_writes_is_one_recsim_reads() -> None:
    # evaluate sits below report/ and keeps its own constant; the two must agree
    from recsim_cli import evaluate
    from recsim_cli.report.render import READABLE_SCHEMA_VERSIONS, SCHEMA_VERSION

    assert evaluate.SCHEMA_VERSION == SCHEMA_VERSION
    assert SCHEMA_VERSION in READABLE_SCHEMA_VERSIONS


def test_curves_equal_the_per_user_metrics_at_every_k() -> None:
    rng = np.random.default_rng(0)
    recs = pl.DataFrame(
        {
            "user_id": [f"u{u}" for u in np.repeat(np.arange(30), 8)],
            "item_id": [f"i{i}" for i in rng.integers(0, 25, 240)],
            "score": rng.random(240),
        }
    )
    truth = pl.DataFrame(
        {
            "user_id": [f"u{u}" for u in rng.integers(0, 35, 90)],
            "item_id": [f"i{i}" for i in rng.integers(0, 25, 90)],
        }
    ).unique()
    ranked = rank_lists(recs).rename({"pos": "rank"})
    for denominator in ("min", "relevant"):
        curves = metric_curves(ranked, truth, METRIC_NAMES, 8, denominator)
        expected = user_metrics(recs, truth, ks=range(1, 9), map_denominator=denominator).per_user
        for name in METRIC_NAMES:
            for k in range(1, 9):
                column = expected[metric_column(name, k)]
                assert curves[name].mean[k - 1] == pytest.approx(column.mean(), abs=1e-12)
                half = curves[name].high[k - 1] - curves[name].mean[k - 1]
                assert half >= 0


def test_the_page_holds_every_plot_and_section(written: Path) -> None:
    html = (written / "evaluate.html").read_text(encoding="utf-8")
    page = parse(html)
    assert page.sections == ["curves", "table", "pairs", "segments", "lists", "definitions"]
    # curves, the forest of the pairs, one per segmentation (first_seen, device), the lists
    assert page.svgs == 5
    assert "script" not in page.tags and "link" not in page.tags and "img" not in page.tags
    for title in ("Recall@k", "NDCG@k", "Hit rate@k", "Catalogue coverage", "Fresh share"):
        assert title in page.svg_texts
    assert "Means with 95% confidence intervals" in html
    assert "binary gain, discount 1/log2(rank + 1)" in html  # the definitions


def test_hostile_names_are_text_in_the_page_and_in_the_svg(written: Path) -> None:
    html = (written / "evaluate.html").read_text(encoding="utf-8")
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)" in html
    page = parse(html)
    assert any(SCRIPT_FILE in text for text in page.svg_texts)  # the legends, the forest titles
    assert any(MATH in text for text in page.svg_texts)  # drawn as written, not as mathtext
    assert not any(r"\$" in text for text in page.svg_texts)


def test_a_closing_script_tag_stays_text_and_long_names_are_cut_in_plots_only(
    written: Path,
) -> None:
    report = json.loads((written / "evaluate.json").read_text())
    long = "pop-" + "x" * 40 + "-v2"
    _rename(report, SCRIPT_FILE, SCRIPT)
    _rename(report, "pop", long)
    html = render_evaluate(report)
    assert "<script" not in html and "</script" not in html
    page = parse(html)
    assert any(SCRIPT in text for text in page.svg_texts)
    assert html.count(long) >= 6  # whole in the tables: @2, @5, segments, lists, pair tables
    assert not any(long in text for text in page.svg_texts)
    assert any(
        text.startswith("pop-xxx") and text.endswith("xxx-v2") and "…" in text
        for text in page.svg_texts
    )


def _rename(report: dict[str, Any], old: str, new: str) -> None:
    for item in report["inputs"]:
        if item["label"] == old:
            item["label"] = new
    for pair in report["pairs"]:
        for side in ("base", "other"):
            if pair[side] == old:
                pair[side] = new


def test_same_inputs_give_the_same_bytes_and_report_re_renders_them(
    invoke, world: tuple[Path, list[Path]], written: Path, tmp_path: Path
) -> None:
    data, files = world
    args = ["evaluate", "--data", data, "--k", "2,5", "--metrics", METRICS, "--by", "device"]
    for path in files:
        args += ["--recs", path]
    result = invoke([*args, "--html", tmp_path / "again.html"])
    assert result.exit_code == 0, result.stderr
    expected = (written / "evaluate.html").read_bytes()
    assert (tmp_path / "again.html").read_bytes() == expected
    result = invoke(["report", written / "evaluate.json", "--html", tmp_path / "re.html"])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "re.html").read_bytes() == expected


def test_one_input_has_no_pairs(invoke, world: tuple[Path, list[Path]], tmp_path: Path) -> None:
    data, files = world
    out = tmp_path / "one.html"
    result = invoke(
        [
            "evaluate",
            "--data",
            data,
            "--recs",
            files[0],
            "--k",
            "3",
            "--metrics",
            "ndcg",
            "--html",
            out,
        ]
    )
    assert result.exit_code == 0, result.stderr
    html = out.read_text(encoding="utf-8")
    assert "One input: nothing to compare." in html
    assert parse(html).svgs == 3  # curves, first_seen, lists


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"schema_version": 2}, "has report schema version 2; this recsim reads schema version 1"),
        ({"schema_version": None}, "has report schema version None"),
        ({"kind": "something else"}, "is not a recsim report (kind 'something else')"),
    ],
)
def test_report_of_an_unknown_schema_or_kind_is_exit_2(
    invoke, written: Path, tmp_path: Path, change: dict[str, Any], needle: str
) -> None:
    report = json.loads((written / "evaluate.json").read_text())
    report.update(change)
    path = tmp_path / "old.json"
    path.write_text(json.dumps(report))
    result = invoke(["report", path, "--html", tmp_path / "out.html"])
    assert result.exit_code == 2
    assert result.stderr == f"Error: {path} {needle}" + result.stderr.split(needle, 1)[1]
    assert not (tmp_path / "out.html").exists()


def test_report_without_a_schema_version_is_exit_2(invoke, written: Path, tmp_path: Path) -> None:
    report = json.loads((written / "evaluate.json").read_text())
    del report["schema_version"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(report))
    result = invoke(["report", path, "--html", tmp_path / "out.html"])
    assert result.exit_code == 2
    assert f"Error: {path} has no schema_version;" in result.stderr


@pytest.mark.parametrize("content", [None, "{not json", "[1, 2]"])
def test_report_of_a_missing_or_broken_file_is_exit_2(
    invoke, tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "broken.json"
    if content is not None:
        path.write_text(content)
    result = invoke(["report", path, "--html", tmp_path / "out.html"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {path} ")
    assert "Traceback" not in result.stderr


def test_html_without_the_extra_is_exit_2_before_any_work(
    invoke, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, written: Path
) -> None:
    import importlib.util

    real = importlib.util.find_spec

    def without_jinja(name: str, *args: object) -> object:
        return None if name == "jinja2" else real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", without_jinja)
    message = "Error: --html needs the report extra: pip install 'recsim[report]'.\n"
    # no dataset at all: the extra is checked before the evaluation would fail on it
    result = invoke(["evaluate", "--recs", tmp_path / "none.csv", "--html", tmp_path / "e.html"])
    assert (result.exit_code, result.stderr) == (2, message)
    result = invoke(["report", written / "evaluate.json", "--html", tmp_path / "r.html"])
    assert (result.exit_code, result.stderr) == (2, message)
