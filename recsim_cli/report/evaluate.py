"""The HTML page of an evaluate report, built from its JSON dict alone.

Sections: metric@k curves per input (one small multiple per metric), the
table of means with CIs at each asked k, a forest plot of the paired
differences of every pair, the segment breakdown, catalogue coverage and
freshness of the lists, and the definitions used. Every key read here is in
the schema of docs/reports.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from recsim_cli.report.render import (
    INK,
    MUTED,
    NO_SHIP_COLOUR,
    SERIES_COLOURS,
    SHIP_COLOUR,
    mpl_text,
    new_figure,
    render_page,
    svg,
)

if TYPE_CHECKING:
    from markupsafe import Markup
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PANEL_COLUMNS = 3
MAX_SEGMENTS = 12  # segment values drawn per plot (the most populous); the table holds all
MAX_NAME = 32  # characters of a name drawn in a plot; the tables hold every name whole
MIN_WIDTH = 7.5  # inches: room for the legend above a figure of one or two panels
METRIC_LABELS = {
    "precision": "Precision",
    "recall": "Recall",
    "map": "MAP",
    "ndcg": "NDCG",
    "mrr": "MRR",
    "hit_rate": "Hit rate",
}


def render_evaluate(report: Mapping[str, Any]) -> str:
    """Return the self-contained HTML page of an evaluate JSON report (schema 1)."""
    inputs = report["inputs"]
    colours = {
        item["label"]: SERIES_COLOURS[i % len(SERIES_COLOURS)] for i, item in enumerate(inputs)
    }
    level = f"{round(100 * float(report['confidence']))}%"
    ks = [int(k) for k in report["k"]]
    k_mid = ks[len(ks) // 2]
    window = report["window"]
    return render_page(
        "evaluate.html.j2",
        title="recsim evaluate",
        summary=(
            f"{report['users']:,} users with a relevant item "
            f"({report['definitions']['relevance']}) in {window['start']} .. {window['end']}, "
            f"{report['new_users']:,} of them new; {report['relevant_pairs']:,} relevant "
            f"(user, item) pairs."
        ),
        level=level,
        alpha=f"{1 - float(report['confidence']):.2g}",
        curves_svg=_markup(_curves_figure(report, colours)),
        curve_k=len(report["curve_k"]),
        tables=[_mean_table(report, k) for k in ks],
        forest_svg=_markup(_forest_figure(report)) if report["pairs"] else None,
        pairs=[_pair(report, pair) for pair in report["pairs"]],
        permutations=bool(report["permutations"]),
        segments=[_segments(report, name, k_mid, colours) for name in _segmentations(report)],
        lists_svg=_markup(_lists_figure(report, colours)),
        lists=[_list_row(report, item, colours) for item in inputs],
        max_k=max(ks),
        definitions=sorted(report["definitions"].items()),
        settings=_settings(report),
    )


# -- the figures ---------------------------------------------------------------------------


def _markup(svg_text: str) -> Markup:
    from markupsafe import Markup

    return Markup(svg_text)  # matplotlib escaped every text it wrote


def _short(name: str) -> str:
    """At most MAX_NAME characters, cut in the middle: versions often differ at the end."""
    if len(name) <= MAX_NAME:
        return name
    tail = MAX_NAME // 3
    return name[: MAX_NAME - tail - 1] + "…" + name[-tail:]


def _plot_name(name: str) -> str:
    """A user's name as a plot draws it: at most MAX_NAME characters, never mathtext."""
    return mpl_text(_short(name))


def _value(value: Any) -> float:
    return math.nan if value is None else float(value)


def _half(ci: Mapping[str, Any]) -> float:
    low, high = _value(ci.get("ci_low")), _value(ci.get("ci_high"))
    return (high - low) / 2 if math.isfinite(low) and math.isfinite(high) else 0.0


def _panels(
    count: int, panel_height: float, *, top: float = 0.5, sharex: bool = False, sharey: bool = False
) -> tuple[Figure, list[Axes]]:
    """A figure of ``count`` panels, three to a row; unused cells of the grid are removed."""
    rows = math.ceil(count / PANEL_COLUMNS)
    columns = min(count, PANEL_COLUMNS)
    fig = new_figure(max(3.6 * columns + 0.3, MIN_WIDTH), panel_height * rows + top)
    grid = fig.subplots(rows, columns, sharex=sharex, sharey=sharey, squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[count:]:
        ax.remove()
    return fig, axes[:count]


def _legend(fig: Figure, report: Mapping[str, Any], colours: Mapping[str, str]) -> None:
    """One legend for the figure, above the panels: the inputs by colour."""
    from matplotlib.lines import Line2D

    labels = [item["label"] for item in report["inputs"]]
    handles = [Line2D([], [], color=colours[label], marker="o") for label in labels]
    # As many columns as the widest name lets fit across the figure (8 pt text is
    # about 5 pt a character, plus the marker).
    widest = max(len(_short(label)) for label in labels) * 5.0 + 40.0
    columns = max(1, min(len(labels), int(fig.get_figwidth() * 72 // widest)))
    # Explicit handles and labels: no label is dropped for starting with "_".
    fig.legend(
        handles, [_plot_name(label) for label in labels], loc="outside upper left", ncols=columns
    )


def _curves_figure(report: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    """One panel per metric: each input's mean at k = 1..K, its CI band, markers at asked k."""
    from matplotlib.ticker import MaxNLocator

    metrics, ks = report["metrics"], [int(k) for k in report["k"]]
    curve_k = [int(k) for k in report["curve_k"]]
    fig, axes = _panels(len(metrics), 2.4, sharex=True)
    for ax, metric in zip(axes, metrics, strict=True):
        for item in report["inputs"]:
            curve = item["curves"][metric]
            mean = [_value(v) for v in curve["mean"]]
            colour = colours[item["label"]]
            ax.fill_between(
                curve_k,
                [_value(v) for v in curve["ci_low"]],
                [_value(v) for v in curve["ci_high"]],
                color=colour,
                alpha=0.13,
                linewidth=0,
            )
            ax.plot(curve_k, mean, color=colour)
            ax.plot(ks, [mean[k - 1] for k in ks], "o", color=colour)
        ax.set_title(mpl_text(f"{METRIC_LABELS.get(metric, metric)}@k"))
        ax.set_xlim(0.5, curve_k[-1] + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
    for ax in axes[-min(len(axes), PANEL_COLUMNS) :]:
        ax.set_xlabel("k")
        ax.xaxis.set_tick_params(labelbottom=True)
    _legend(fig, report, colours)
    return svg(fig)


def _forest_figure(report: Mapping[str, Any]) -> str:
    """A panel per pair: each (metric, k) difference with its CI, coloured where Holm p < alpha."""
    from matplotlib.ticker import MaxNLocator

    pairs = report["pairs"]
    alpha = 1 - float(report["confidence"])
    tests = pairs[0]["tests"]
    fig, axes = _panels(len(pairs), 0.2 * len(tests) + 0.9, top=0.1, sharex=True, sharey=True)
    rows = list(range(len(tests)))
    for ax, pair in zip(axes, pairs, strict=True):
        difference = [_value(test["difference"]) for test in pair["tests"]]
        colours = [
            (SHIP_COLOUR if value > 0 else NO_SHIP_COLOUR)
            if _value(test["holm_p"]) < alpha
            else MUTED
            for test, value in zip(pair["tests"], difference, strict=True)
        ]
        ax.axvline(0.0, color=INK, linewidth=0.9)
        low, high = _bounds(pair["tests"], "ci_low"), _bounds(pair["tests"], "ci_high")
        ax.hlines(rows, low, high, colors=colours)
        ax.scatter(difference, rows, c=colours, s=16, zorder=3)
        ax.set_title(f"{_plot_name(pair['other'])}\nminus {_plot_name(pair['base'])}", fontsize=9)
        ax.grid(axis="y", visible=False)
        ax.xaxis.set_major_locator(MaxNLocator(5))
    axes[0].set_yticks(rows, [mpl_text(test["metric"]) for test in tests])
    axes[0].set_ylim(len(tests) - 0.5, -0.5)
    for ax in axes[-min(len(axes), PANEL_COLUMNS) :]:
        ax.set_xlabel("difference per user")
        ax.xaxis.set_tick_params(labelbottom=True)
    return svg(fig)


def _bounds(cis: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    """The CI bound ``key`` of each CI; a missing one collapses onto the mean (no bar)."""
    out = []
    for ci in cis:
        value = _value(ci.get(key))
        out.append(value if math.isfinite(value) else _value(ci.get("mean", ci.get("difference"))))
    return out


def _segment_values(report: Mapping[str, Any], name: str) -> list[str]:
    users: dict[str, int] = {}
    for item in report["inputs"]:
        for value, cis in item["segments"][name].items():
            first = next(iter(cis.values()), {"users": 0})
            users[value] = max(users.get(value, 0), int(first["users"]))
    return sorted(users, key=lambda v: (-users[v], v))


def _segments_figure(
    report: Mapping[str, Any], name: str, values: Sequence[str], k: int, colours: Mapping[str, str]
) -> str:
    """One panel per metric at ``k``: each input's mean in each segment, with its CI."""
    metrics, inputs = report["metrics"], report["inputs"]
    height = max(1.6, 0.1 * len(values) * max(len(inputs), 2) + 0.7)
    fig, axes = _panels(len(metrics), height, sharey=True)
    step = 0.7 / len(inputs)
    for ax, metric in zip(axes, metrics, strict=True):
        column = f"{metric}@{k}"
        for j, item in enumerate(inputs):
            cis = [item["segments"][name].get(v, {}).get(column, {}) for v in values]
            rows = [i - 0.35 + step * (j + 0.5) for i in range(len(values))]
            colour = colours[item["label"]]
            ax.hlines(rows, _bounds(cis, "ci_low"), _bounds(cis, "ci_high"), colors=colour)
            ax.scatter([_value(ci.get("mean")) for ci in cis], rows, color=colour, s=14, zorder=3)
        ax.grid(axis="y", visible=False)
        ax.set_xlim(left=0)
        ax.set_title(mpl_text(f"{METRIC_LABELS.get(metric, metric)}@{k}"))
    axes[0].set_yticks(range(len(values)), [_plot_name(v) for v in values])
    axes[0].set_ylim(len(values) - 0.5, -0.5)
    _legend(fig, report, colours)
    return svg(fig)


def _lists_figure(report: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    """Two panels: catalogue coverage and fresh share of each input's top max(k) lists."""
    inputs = report["inputs"]
    fig = new_figure(7.4, 0.3 * len(inputs) + 0.9)
    axes = fig.subplots(1, 2, sharey=True)
    rows = range(len(inputs))
    for ax, key, title in (
        (axes[0], "catalogue_coverage", "Catalogue coverage"),
        (axes[1], "fresh_share", "Fresh share"),
    ):
        values = [100 * _value(item[key]) for item in inputs]
        ax.barh(rows, values, height=0.6, color=[colours[item["label"]] for item in inputs])
        ax.set_xlim(0, 100)
        ax.set_xlabel("%")
        ax.set_title(title)
        ax.grid(axis="y", visible=False)
    axes[0].set_yticks(list(rows), [_plot_name(item["label"]) for item in inputs])
    axes[0].set_ylim(len(inputs) - 0.5, -0.5)
    return svg(fig)


# -- the tables ------------------------------------------------------------------------------


def _number(value: Any, digits: int = 4) -> str:
    number = _value(value)
    return "-" if not math.isfinite(number) else f"{number:.{digits}f}"


def _p(value: Any) -> str:
    number = _value(value)
    if not math.isfinite(number):
        return "-"
    return "< 0.0001" if number < 1e-4 else f"{number:.4f}"


def _ci_cell(ci: Mapping[str, Any]) -> dict[str, str]:
    """Mean ± half-width (t-intervals are symmetric), the interval itself as a tooltip."""
    mean, low, high = (_value(ci.get(key)) for key in ("mean", "ci_low", "ci_high"))
    if not math.isfinite(mean):
        return {"mean": "-", "ci": "", "title": ""}
    if not (math.isfinite(low) and math.isfinite(high)):
        return {"mean": f"{mean:.4f}", "ci": "", "title": "no interval (fewer than 2 users)"}
    title = f"95% CI {low:.4f} .. {high:.4f}"
    if ci.get("bootstrap_low") is not None:
        boot = f"{_number(ci['bootstrap_low'])} .. {_number(ci['bootstrap_high'])}"
        title += f"; bootstrap {boot}"
    return {"mean": f"{mean:.4f}", "ci": f"± {(high - low) / 2:.4f}", "title": title}


def _mean_table(report: Mapping[str, Any], k: int) -> dict[str, Any]:
    metrics = report["metrics"]
    return {
        "k": k,
        "header": [METRIC_LABELS.get(m, m) for m in metrics],
        "rows": [
            {
                "label": item["label"],
                "colour": SERIES_COLOURS[index % len(SERIES_COLOURS)],
                "cells": [_ci_cell(item["metrics"][f"{m}@{k}"]) for m in metrics],
            }
            for index, item in enumerate(report["inputs"])
        ],
    }


def _pair(report: Mapping[str, Any], pair: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "base": pair["base"],
        "other": pair["other"],
        "rows": [
            {
                "metric": test["metric"],
                "difference": _ci_cell(
                    {
                        "mean": test["difference"],
                        "ci_low": test["ci_low"],
                        "ci_high": test["ci_high"],
                    }
                ),
                "p": _p(test["p_value"]),
                "holm_p": _p(test["holm_p"]),
                "permutation_p": _p(test.get("permutation_p")),
            }
            for test in pair["tests"]
        ],
    }


def _segmentations(report: Mapping[str, Any]) -> list[str]:
    inputs = report["inputs"]
    return list(inputs[0]["segments"]) if inputs else []


def _segments(
    report: Mapping[str, Any], name: str, k: int, colours: Mapping[str, str]
) -> dict[str, Any]:
    values = _segment_values(report, name)
    shown = values[:MAX_SEGMENTS]
    rows = []
    for value in values:
        for index, item in enumerate(report["inputs"]):
            cis = item["segments"][name].get(value)
            if cis is None:
                continue
            first = next(iter(cis.values()), {"users": 0})
            rows.append(
                {
                    "segment": value,
                    "label": item["label"],
                    "colour": SERIES_COLOURS[index % len(SERIES_COLOURS)],
                    "users": f"{int(first['users']):,}",
                    "cells": [_ci_cell(cis[f"{m}@{k}"]) for m in report["metrics"]],
                }
            )
    return {
        "name": name,
        "k": k,
        "svg": _markup(_segments_figure(report, name, shown, k, colours)) if shown else None,
        "shown": len(shown),
        "omitted": len(values) - len(shown),
        "header": [METRIC_LABELS.get(m, m) for m in report["metrics"]],
        "rows": rows,
    }


def _list_row(
    report: Mapping[str, Any], item: Mapping[str, Any], colours: Mapping[str, str]
) -> dict[str, Any]:
    recall = item.get("candidate_recall")
    return {
        "label": item["label"],
        "colour": colours[item["label"]],
        "kind": item["kind"],
        "source": item["source"],
        "cutoff": item["cutoff"] or "-",
        "candidate_recall": _ci_cell(recall) if recall else {"mean": "-", "ci": "", "title": ""},
        "coverage": f"{100 * _value(item['catalogue_coverage']):.1f}%",
        "fresh_share": f"{100 * _value(item['fresh_share']):.1f}%",
        "no_list": f"{item['users_without_recommendations']:,}",
        "no_relevant": f"{item['users_without_relevant']:,}",
    }


def _settings(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [
        ("data", str(report["data"])),
        ("window", f"{report['window']['start']} .. {report['window']['end']}"),
        ("k", ", ".join(str(k) for k in report["k"])),
        ("metrics", ", ".join(report["metrics"])),
        ("catalogue items", f"{report['catalogue_items']:,}"),
        ("by", report["by"] or "-"),
        ("bootstrap resamples", str(report["bootstrap"])),
        ("sign-flip permutations", str(report["permutations"])),
        ("seed", str(report["seed"])),
        ("written by", f"recsim {report['recsim_version']}"),
    ]
