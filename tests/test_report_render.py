"""The shared machinery of the HTML reports: SVG figures, names, pages, schema, the extra."""

from __future__ import annotations

import importlib.util
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from recsim_cli.errors import UserError
from recsim_cli.report import render_report
from recsim_cli.report.render import (
    SCHEMA_VERSION,
    VERDICT_COLOURS,
    check_schema,
    mpl_text,
    new_figure,
    render_page,
    require_report_extra,
    svg,
    write_html,
)

SCRIPT = "<script>alert(1)</script>"
MATH = r"x$\frac$y"


def _svg_texts(markup: str) -> list[str]:
    """The text of every <text> element of an SVG, unescaped as a browser would show it."""
    texts: list[str] = []

    class Texts(HTMLParser):
        inside = False

        def handle_starttag(self, tag: str, attrs: object) -> None:
            if tag == "text":
                self.inside = True
                texts.append("")

        def handle_endtag(self, tag: str) -> None:
            if tag == "text":
                self.inside = False

        def handle_data(self, data: str) -> None:
            if self.inside:
                texts[-1] += data

    parser = Texts(convert_charrefs=True)
    parser.feed(markup)
    return texts


def _figure_with(names: list[str]) -> str:
    fig = new_figure(4, 3)
    ax = fig.add_subplot()
    lines = [ax.plot([1, 2, 3], [i, i + 1, i + 2])[0] for i, _ in enumerate(names)]
    ax.legend(lines, [mpl_text(n) for n in names])
    ax.set_title(mpl_text(names[0]))
    ax.set_yticks([1.0], [mpl_text(names[-1])])
    return svg(fig)


def test_hostile_names_reach_the_svg_as_text_and_escaped() -> None:
    # Unescaped, x$\frac$y makes matplotlib's mathtext raise (the command would exit 70).
    names = [SCRIPT, MATH, "_hidden", "100$ & more", r"a\$b"]
    markup = _figure_with(names)
    texts = _svg_texts(markup)
    for name in names:
        assert any(name in text for text in texts), name
    assert "<script" not in markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup


def test_mpl_text_escapes_every_dollar() -> None:
    assert mpl_text(MATH) == r"x\$\frac\$y"
    assert mpl_text("plain") == "plain"
    # matplotlib hides legend labels that start with "_"; a zero-width space keeps them
    assert mpl_text("_x") == "\u200b_x"


def test_svg_is_inline_markup_and_byte_identical() -> None:
    first, second = _figure_with(["a", "b"]), _figure_with(["a", "b"])
    assert first == second
    assert first.startswith("<svg")
    assert "<?xml" not in first and "<!DOCTYPE" not in first
    assert "<dc:date>" not in first  # no date metadata
    assert "font-family" in first or "font:" in first  # text kept as text, not glyph paths
    assert "<text" in first


def test_render_page_autoescapes_and_is_strict(tmp_path: Path) -> None:
    from jinja2 import UndefinedError

    # the base template alone, through a tiny child written for the test
    page = render_page("base.html.j2", title=SCRIPT)
    assert SCRIPT not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert re.search(r"recsim \d+\.\d+\.\d+", page)
    with pytest.raises(UndefinedError):
        render_page("base.html.j2")
    target = tmp_path / "sub" / "page.html"
    write_html(target, page)
    assert target.read_text(encoding="utf-8") == page


def test_the_base_page_loads_nothing() -> None:
    page = render_page("base.html.j2", title="t")
    assert "<script" not in page and "<link" not in page and "<img" not in page
    assert "url(" not in page and "@import" not in page


@pytest.mark.parametrize(
    ("report", "needle"),
    [
        ({}, "has no schema_version; this recsim reads report schema version 1"),
        (
            {"schema_version": 99},
            "has report schema version 99; this recsim reads schema version 1",
        ),
        ({"schema_version": "1"}, "has report schema version '1'"),
        ({"schema_version": True}, "has report schema version True"),
    ],
)
def test_check_schema_names_the_file_and_the_versions(report: dict, needle: str) -> None:
    with pytest.raises(UserError) as caught:
        check_schema(report, "old.json")
    assert str(caught.value).startswith("old.json ")
    assert needle in str(caught.value)
    assert caught.value.exit_code == 2


def test_check_schema_accepts_the_current_version() -> None:
    check_schema({"schema_version": SCHEMA_VERSION}, "new.json")


def test_render_report_rejects_an_unknown_kind() -> None:
    with pytest.raises(UserError, match=r"r\.json is not a recsim report \(kind 'other'\)"):
        render_report({"kind": "other", "schema_version": 1}, "r.json")


def test_missing_extra_says_which_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def without_matplotlib(name: str, *args: object) -> object:
        return None if name == "matplotlib" else real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", without_matplotlib)
    with pytest.raises(UserError) as caught:
        require_report_extra()
    assert str(caught.value) == "--html needs the report extra: pip install 'recsim[report]'."
    assert caught.value.exit_code == 2


def test_verdict_colours_cover_every_verdict() -> None:
    assert set(VERDICT_COLOURS) == {"ship", "no_ship", "inconclusive", "invalid"}
    assert len(set(VERDICT_COLOURS.values())) == 4


def test_figures_inlined_in_one_page_share_no_ids() -> None:
    import re

    first, second = _figure_with(["a", "b"]), _figure_with(["c", "d", "e"])
    ids = [re.findall(r'\bid="([^"]+)"', markup) for markup in (first, second)]
    assert ids[0] and ids[1]
    assert not set(ids[0]) & set(ids[1])
    for markup, own in zip((first, second), ids, strict=True):
        # every reference points at an id of its own figure
        for target in re.findall(r'(?:url\(#|href="#)([^")]+)', markup):
            assert target in own
