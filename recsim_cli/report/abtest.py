"""The HTML page of an abtest report, logged or estimated, built from its JSON dict alone.

Sections, in the order a reader needs them: the decision and its reasons; a
forest plot of every metric's relative lift with its CI, the guardrails'
margins and each metric's evidence; the lift through each day of the window
(cumulative, pointwise, not sequential); health checks (sample ratio, and for
estimates the importance weights: effective sample size, mean weight, their
distribution); MDE and users needed; methods with references; the inputs'
fingerprints. Every key read here is in the schema of docs/reports.md.

Names from users' data (arm labels, model names, file paths) reach the page
through Jinja2's autoescaping and matplotlib through ``mpl_text``. Dicts are
read by key, never in their stored order: a report read back from a JSON file
has its keys sorted, and must render the same page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from recsim_cli.report.render import (
    GRID,
    INK,
    MUTED,
    NO_SHIP_COLOUR,
    SERIES_COLOURS,
    VERDICT_COLOURS,
    mpl_text,
    new_figure,
    render_page,
    svg,
)

if TYPE_CHECKING:
    from markupsafe import Markup
    from matplotlib.axes import Axes

VERDICT_LABELS = {
    "ship": "ship",
    "no_ship": "do not ship",
    "inconclusive": "inconclusive",
    "invalid": "invalid",
}
# Marker and colour of each kind of evidence, in the forest and the daily plots.
EVIDENCE_STYLE = {
    "online": ("o", SERIES_COLOURS[0]),
    "off-policy": ("s", SERIES_COLOURS[1]),
    "model-based": ("D", SERIES_COLOURS[3]),
}
EVIDENCE_NOTES = {
    "online": "measured in a logged A/B test",
    "off-policy": "reweighted logged impressions of another policy",
    "model-based": "a session model fit on the logs before the window; cannot make a gate ship",
}
PANEL_COLUMNS = 3
REFERENCES = (
    (
        "Kohavi, Tang and Xu (2020), Trustworthy Online Controlled Experiments, Cambridge "
        "University Press (sample-ratio checks, ch. 21)",
        "https://doi.org/10.1017/9781108653985",
    ),
    (
        "Deng, Knoblich and Lu (2018), Applying the delta method in metric analytics, KDD",
        "https://doi.org/10.1145/3219819.3219919",
    ),
    ("Welch (1947), The generalization of Student's problem, Biometrika 34", None),
    ("Fieller (1954), Some problems in interval estimation, JRSS B 16(2)", None),
    ("Holm (1979), A simple sequentially rejective multiple test procedure, Scand. J. Stat.", None),
    (
        "Benjamini and Hochberg (1995), Controlling the false discovery rate, JRSS B 57(1)",
        "https://doi.org/10.1111/j.2517-6161.1995.tb02031.x",
    ),
    (
        "Deng, Xu, Kohavi and Walker (2013), Improving the sensitivity of online controlled "
        "experiments by utilizing pre-experiment data (CUPED), WSDM",
        "https://doi.org/10.1145/2433396.2433413",
    ),
    (
        "Johari, Koomen, Pekelis and Walsh (2017), Peeking at A/B tests: why it matters, and "
        "what to do about it, KDD (why the daily intervals are not a sequential test)",
        None,
    ),
)
OFFPOLICY_REFERENCES = (
    (
        "Li, Chu, Langford and Wang (2011), Unbiased offline evaluation of "
        "contextual-bandit-based news article recommendation algorithms, WSDM (replay, IPS)",
        "https://arxiv.org/abs/1003.5956",
    ),
    (
        "Swaminathan and Joachims (2015), The self-normalized estimator for counterfactual "
        "learning, NeurIPS (SNIPS)",
        None,
    ),
    (
        "Dudik, Langford and Li (2011), Doubly robust policy evaluation and learning, ICML "
        "(DM, DR)",
        "https://arxiv.org/abs/1103.4601",
    ),
    ("Kong (1992), A note on importance sampling using standardized weights (ESS)", None),
)


def render_abtest(report: Mapping[str, Any]) -> str:
    """Return the self-contained HTML page of an abtest JSON report (schema 1)."""
    analysis = report["analysis"]
    settings = analysis["settings"]
    control, treatment = settings["control"], settings["treatment"]
    level = f"{100 * (1 - float(settings['alpha'])):g}%"
    offpolicy = report["mode"] == "off-policy"
    margins = _margins(report)
    daily = report.get("daily")
    return render_page(
        "abtest.html.j2",
        title=f"recsim abtest: {treatment} vs {control}",
        subtitle=_subtitle(report),
        control=control,
        treatment=treatment,
        level=level,
        decision=_decision(report),
        forest_svg=_markup(_forest_figure(report, margins, level)),
        evidence=[
            {"name": name, "note": EVIDENCE_NOTES[name], "colour": EVIDENCE_STYLE[name][1]}
            for name in EVIDENCE_STYLE
            if any(m.get("evidence") == name for m in analysis["metrics"])
        ],
        metrics=[_metric_row(report, m) for m in analysis["metrics"]],
        daily_svg=_markup(_daily_figure(report, margins)) if _has_daily(daily) else None,
        daily_rows=_daily_rows(report) if _has_daily(daily) else [],
        daily_note=None if daily is None else daily["note"],
        checks=[
            {"passed": bool(c["passed"]), "name": c["name"], "detail": c["detail"]}
            for c in analysis["health"]
        ],
        srm=_srm(analysis),
        logged=_logged_counts(report) if not offpolicy else None,
        weights=_weight_rows(report) if offpolicy else [],
        weights_svg=_markup(_weights_figure(report)) if _has_histograms(report) else None,
        power=[_power_row(report, m) for m in analysis["metrics"]],
        methods=_methods(report),
        references=[
            {"text": text, "url": url}
            for text, url in (*REFERENCES, *(OFFPOLICY_REFERENCES if offpolicy else ()))
        ],
        inputs=_inputs(report),
        sources=report["input"]["sources"],
        arms=_arms(report),
        warnings=list(report["warnings"]),
    )


# -- reading the report ----------------------------------------------------------------------


def _value(value: Any) -> float:
    return math.nan if value is None else float(value)


def _percent(value: Any, digits: int = 2, sign: bool = True) -> str:
    number = _value(value)
    if not math.isfinite(number):
        return "-"
    return f"{100 * number:+.{digits}f}%" if sign else f"{100 * number:.{digits}f}%"


def _number(value: Any) -> str:
    number = _value(value)
    return "-" if not math.isfinite(number) else f"{number:.4g}"


def _p(value: Any) -> str:
    number = _value(value)
    if not math.isfinite(number):
        return "-"
    return "< 1e-300" if number == 0 else f"{number:.2g}"


def _margins(report: Mapping[str, Any]) -> dict[str, float]:
    """Each guardrail's worst relative change allowed, signed: -margin when higher is better."""
    gate = report.get("gate")
    if gate is None:
        return {}
    return {
        g["metric"]: (-1.0 if g["better"] == "higher" else 1.0) * float(g["margin"])
        for g in gate["guardrail"]
    }


def _verdicts(report: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    decision = report.get("decision")
    return {} if decision is None else {v["metric"]: v for v in decision["metrics"]}


def _subtitle(report: Mapping[str, Any]) -> str:
    analysis = report["analysis"]
    users = f"{analysis['n_control']:,} and {analysis['n_treatment']:,} users"
    if report["mode"] == "off-policy":
        window = report["window"]
        counts = report["counts"]
        return (
            f"Estimated from logs ({report['estimator']} estimator, {report['design']} design): "
            f"{window['start']} to {window['end']}, {users} (control, treatment), "
            f"{counts['sessions']:,} sessions, {counts['impressions']:,} impressions."
        )
    experiment = report["experiment"]
    window = experiment["window"]
    end = window["end"] or f"{window['last_event']} (last event)"
    return (
        f"Logged A/B test (column {experiment['arm_column']}): {window['start']} to {end}, "
        f"{users} (control, treatment), {experiment['events_used']:,} events."
    )


def _decision(report: Mapping[str, Any]) -> dict[str, Any]:
    decision = report.get("decision")
    if decision is None:
        return {
            "verdict": "none",
            "label": "no gate: results only",
            "colour": MUTED,
            "exit_code": report["exit_code"],
            "gate": None,
            "evidence": None,
            "reasons": ["No gate was given (--gate): an analysis is not a decision, exit 0."],
        }
    gate = report.get("gate") or {}
    return {
        "verdict": decision["verdict"],
        "label": VERDICT_LABELS[decision["verdict"]],
        "colour": VERDICT_COLOURS[decision["verdict"]],
        "exit_code": decision["exit_code"],
        "gate": gate.get("file"),
        "evidence": decision.get("evidence"),
        "reasons": list(decision["reasons"]),
    }


def _metric_row(report: Mapping[str, Any], m: Mapping[str, Any]) -> dict[str, Any]:
    ci = m["relative_ci"]
    lift = "undefined"
    if m["relative"] is not None and ci is not None:
        lift = f"{_percent(m['relative'])} ({_percent(ci[0])} to {_percent(ci[1])})"
    low, high = m["ci"]
    return {
        "label": m["label"],
        "metric": m["metric"],
        "role": m["role"],
        "evidence": m.get("evidence") or "-",
        "control": _number(m["control"]["estimate"]),
        "treatment": _number(m["treatment"]["estimate"]),
        "absolute": f"{_number(m['difference'])} ({_number(low)} to {_number(high)})",
        "relative": lift,
        "note": m.get("relative_note"),
        "p": _p(m["p_value"]),
        "adjusted_p": _p(m["adjusted_p_value"]),
        "verdict": report["verdicts"].get(m["metric"], "-"),
    }


def _power_row(report: Mapping[str, Any], m: Mapping[str, Any]) -> dict[str, Any]:
    verdict = _verdicts(report).get(m["metric"], {})
    needed = verdict.get("users_needed")
    target = None
    gate = report.get("gate")
    if gate is not None:
        target = next((p.get("mde") for p in gate["primary"] if p["metric"] == m["metric"]), None)
    return {
        "label": m["label"],
        "role": m["role"],
        "baseline": _number(m["control"]["estimate"]),
        "mde": _number(m["mde"]),
        "mde_relative": _percent(m["mde_relative"], sign=False),
        "power": f"{100 * float(m['power']):g}%",
        "target": "-" if target is None else _percent(target, sign=False),
        "needed": "-" if needed is None else f"{int(needed):,}",
    }


def _srm(analysis: Mapping[str, Any]) -> dict[str, Any] | None:
    """The sample-ratio check's counts against the intended split; None in the paired design."""
    check = next((c for c in analysis["health"] if c["name"] == "sample_ratio"), None)
    if check is None:
        return None
    settings = analysis["settings"]
    counts = (int(analysis["n_control"]), int(analysis["n_treatment"]))
    total = sum(counts)
    rows = []
    for arm, role, users, share in zip(
        (settings["control"], settings["treatment"]),
        ("control", "treatment"),
        counts,
        settings["split"],
        strict=True,
    ):
        rows.append(
            {
                "arm": arm,
                "role": role,
                "users": f"{users:,}",
                "expected": f"{100 * float(share):.4g}%",
                "expected_users": f"{float(share) * total:,.0f}",
                "observed": _percent(users / total if total else None, sign=False),
            }
        )
    return {"rows": rows, "p": _p(check["p_value"]), "passed": bool(check["passed"])}


def _logged_counts(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    e = report["experiment"]
    other = ", ".join(e["other_arms"]) or "-"
    return [
        ("users seen in both arms", f"{e['both_arm_users']:,} ({e['both_arms']})"),
        ("of them left out", f"{e['excluded_users']:,}"),
        ("events used", f"{e['events_used']:,}"),
        ("events without an arm label (ignored)", f"{e['events_null_arm']:,}"),
        ("events of other arms (ignored)", f"{e['events_other_arms']:,} ({other})"),
    ]


def _arm_order(report: Mapping[str, Any]) -> list[str]:
    settings = report["analysis"]["settings"]
    return [settings["control"], settings["treatment"]]


def _weight_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for arm in _arm_order(report):
        d = report["diagnostics"].get(arm)
        if d is None:
            continue
        low, high = d["mean_weight_ci"]
        histogram = d.get("histogram") or {}
        rows.append(
            {
                "arm": arm,
                "ess": f"{_value(d['effective_sample_size']):,.0f}",
                "impressions": f"{d['impressions']:,}",
                "nonzero": _percent(d["nonzero_share"], sign=False),
                "zero": _percent(histogram.get("zero_share"), sign=False),
                "max": _number(d["max_weight"]),
                "mean": f"{_value(d['mean_weight']):.3f} ({_value(low):.3f} to {_value(high):.3f})",
                "unlogged": _percent(d["unlogged_share"], digits=1, sign=False),
            }
        )
    return rows


def _has_daily(daily: Mapping[str, Any] | None) -> bool:
    return daily is not None and any(p["metrics"] for p in daily["points"])


def _has_histograms(report: Mapping[str, Any]) -> bool:
    diagnostics = report.get("diagnostics") or {}
    return any(
        d is not None and d.get("histogram") is not None and d["impressions"]
        for d in diagnostics.values()
    )


def _daily_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    names = [m["metric"] for m in report["analysis"]["metrics"]]
    rows = []
    for point in report["daily"]["points"]:
        by_metric = {m["metric"]: m for m in point["metrics"]}
        cells = []
        for name in names:
            m = by_metric.get(name)
            ci = None if m is None else m["relative_ci"]
            if m is None or m["relative"] is None or ci is None:
                cells.append("-")
            else:
                cells.append(f"{_percent(m['relative'])} ({_percent(ci[0])} to {_percent(ci[1])})")
        users = point["users"]
        rows.append(
            {
                "day": point["day"],
                "users": f"{users['control']:,} / {users['treatment']:,}",
                "cells": cells,
            }
        )
    return rows


def _methods(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    analysis = report["analysis"]
    s = analysis["settings"]
    tests = sorted({m["test"] for m in analysis["metrics"]})
    split = "/".join(f"{100 * float(x):g}" for x in s["split"])
    items = [
        (
            "unit",
            "users: every metric is the ratio of each arm's per-user sums, its variance by the "
            "delta method over users",
        ),
        ("design", f"{s['design']} (intended split {split})"),
        ("test", f"{', '.join(tests)}, two-sided, alpha {float(s['alpha']):g}"),
        ("relative lift interval", s["relative_method"]),
        ("correction of the primaries", s["correction"]),
        ("power of the MDE", f"{100 * float(s['power']):g}%"),
        ("CUPED", "on" if s["cuped"] else "off"),
        ("winsorisation", "off" if s["winsorize"] is None else f"at the {s['winsorize']} quantile"),
        (
            "bootstrap cross-check",
            "off" if not s["bootstrap_resamples"] else f"{s['bootstrap_resamples']:,} resamples",
        ),
        ("seed", str(report["seed"])),
    ]
    if report["mode"] == "off-policy":
        items += [
            ("estimator", str(report["estimator"])),
            ("target", report.get("target_note") or "each arm's own lists"),
        ]
        model = report.get("session_model")
        if model is not None and model.get("holdout"):
            holdout = model["holdout"]
            items.append(
                (
                    "session model (holdout)",
                    f"click log loss {_number(holdout.get('click_logloss'))} against "
                    f"{_number(holdout.get('click_logloss_constant'))} of a constant",
                )
            )
    return items


def _inputs(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    data = report["input"]
    items = [
        ("dataset", str(data["data"])),
        ("dataset version", f"{data['dataset_version']} (schema {data['schema_version']})"),
    ]
    gate = report.get("gate")
    items.append(("gate", "-" if gate is None else str(gate["file"])))
    items.append(("recsim", str(report["recsim_version"])))
    return items


def _arms(report: Mapping[str, Any]) -> list[dict[str, str]]:
    """Each arm's label and what it names: a registry model and its fingerprint, or a file."""
    rows = []
    if report["mode"] == "off-policy":
        for role in ("control", "treatment"):
            arm = report["arms"][role]
            pinned = arm.get("model_fingerprint") or arm.get("sha256") or "-"
            rows.append(
                {
                    "role": role,
                    "label": arm["label"],
                    "what": f"{arm['kind']} {arm.get('model') or arm.get('path') or arm['spec']}",
                    "fingerprint": pinned,
                }
            )
        return rows
    experiment = report["experiment"]
    for role in ("control", "treatment"):
        model = (report.get("models") or {}).get(role)
        rows.append(
            {
                "role": role,
                "label": experiment[role],
                "what": "-" if model is None else f"model {model['name']}",
                "fingerprint": "-" if model is None else model["fingerprint"],
            }
        )
    return rows


# -- the figures ---------------------------------------------------------------------------


def _markup(svg_text: str) -> Markup:
    from markupsafe import Markup

    return Markup(svg_text)


def _style(evidence: str | None) -> tuple[str, str]:
    return EVIDENCE_STYLE.get(evidence or "", ("o", MUTED))


def _forest_figure(report: Mapping[str, Any], margins: Mapping[str, float], level: str) -> str:
    """Each metric's relative lift (%) with its CI; zero, the guardrails' margins, evidence."""
    from matplotlib.lines import Line2D

    metrics = report["analysis"]["metrics"]
    settings = report["analysis"]["settings"]
    verdicts = report["verdicts"]
    n = len(metrics)
    fig = new_figure(9.0, 0.5 * n + 1.5)
    ax = fig.add_subplot()
    xs: list[float] = [0.0]
    for row, m in enumerate(metrics):
        marker, colour = _style(m.get("evidence"))
        ci = m["relative_ci"]
        if m["relative"] is None or ci is None:
            ax.text(0, row, "  relative lift undefined", va="center", color=MUTED, fontsize=8)
        else:
            low, high = 100 * _value(ci[0]), 100 * _value(ci[1])
            lift = 100 * _value(m["relative"])
            ax.hlines(row, low, high, color=colour, linewidth=2.2)
            ax.plot([lift], [row], marker=marker, color=colour, markersize=7, linestyle="none")
            xs += [low, high]
        if m["metric"] in margins:
            at = 100 * margins[m["metric"]]
            ax.vlines(at, row - 0.38, row + 0.38, colors=NO_SHIP_COLOUR, linestyles="dashed")
            xs.append(at)
    ax.axvline(0.0, color=INK, linewidth=0.9)
    finite = [x for x in xs if math.isfinite(x)]
    span = max(finite) - min(finite) or 1.0
    ax.set_xlim(min(finite) - 0.08 * span, max(finite) + 0.08 * span)
    names = [mpl_text(f"{m['label']} ({m['role']})") for m in metrics]
    ax.set_yticks(range(n), names)
    ax.set_ylim(n - 0.5, -0.5)
    ax.grid(axis="y", visible=False)
    right = ax.twinx()
    right.set_ylim(n - 0.5, -0.5)
    right.set_yticks(range(n), [mpl_text(verdicts.get(m["metric"], "")) for m in metrics])
    right.tick_params(axis="y", length=0)
    right.grid(visible=False)
    right.spines["right"].set_visible(False)
    ax.set_xlabel(
        mpl_text(
            f"relative lift of {settings['treatment']} over {settings['control']}, % "
            f"(dot: estimate; bar: {level} CI)"
        )
    )
    handles = [
        Line2D(
            [],
            [],
            marker=_style(name)[0],
            color=_style(name)[1],
            markersize=7,
            linestyle="none",
            label=f"{name} evidence",
        )
        for name in EVIDENCE_STYLE
        if any(m.get("evidence") == name for m in metrics)
    ]
    handles.append(Line2D([], [], color=INK, linewidth=0.9, label="no change"))
    if margins:
        handles.append(
            Line2D([], [], color=NO_SHIP_COLOUR, linestyle="dashed", label="guardrail margin")
        )
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles))
    return svg(fig)


def _panels(count: int, height: float) -> tuple[Any, list[Axes]]:
    rows = math.ceil(count / PANEL_COLUMNS)
    columns = min(count, PANEL_COLUMNS)
    fig = new_figure(3.7 * columns + 0.3, height * rows + 0.6)
    return fig, [fig.add_subplot(rows, columns, i + 1) for i in range(count)]


def _day_ticks(ax: Axes, days: Sequence[str]) -> None:
    step = max(1, math.ceil(len(days) / 6))
    ticks = list(range(0, len(days), step))
    ax.set_xticks(ticks, [days[i][5:] for i in ticks])
    ax.set_xlim(-0.4, len(days) - 0.6)


def _daily_figure(report: Mapping[str, Any], margins: Mapping[str, float]) -> str:
    """One panel per metric: the cumulative relative lift through each day, with its CI band."""
    metrics = report["analysis"]["metrics"]
    points = report["daily"]["points"]
    days = [p["day"] for p in points]
    fig, axes = _panels(len(metrics), 2.3)
    x = list(range(len(days)))
    for ax, m in zip(axes, metrics, strict=True):
        marker, colour = _style(m.get("evidence"))
        lift, low, high = [], [], []
        for point in points:
            day = next((d for d in point["metrics"] if d["metric"] == m["metric"]), None)
            ci = None if day is None else day["relative_ci"]
            if day is None or day["relative"] is None or ci is None:
                lift.append(math.nan)
                low.append(math.nan)
                high.append(math.nan)
            else:
                lift.append(100 * _value(day["relative"]))
                low.append(100 * _value(ci[0]))
                high.append(100 * _value(ci[1]))
        ax.fill_between(x, low, high, color=colour, alpha=0.18, linewidth=0)
        ax.plot(x, lift, color=colour, marker=marker, markersize=3.5)
        ax.axhline(0.0, color=INK, linewidth=0.9)
        if m["metric"] in margins:
            ax.axhline(100 * margins[m["metric"]], color=NO_SHIP_COLOUR, linestyle="dashed")
        ax.set_title(mpl_text(m["label"]), fontsize=9)
        ax.set_ylabel("relative lift, %")
        _day_ticks(ax, days)
    fig.suptitle(
        "Cumulative lift through each day (UTC): pointwise, not sequential",
        x=0.01,
        ha="left",
        fontsize=10,
        fontweight="bold",
        color=INK,
    )
    return svg(fig)


def _weights_figure(report: Mapping[str, Any]) -> str:
    """Per arm: the share of impressions by importance weight, weight 0 first, on one grid."""
    from matplotlib.ticker import NullLocator

    arms = [
        (arm, report["diagnostics"][arm]["histogram"])
        for arm in _arm_order(report)
        if (report["diagnostics"].get(arm) or {}).get("histogram") is not None
    ]
    # Every histogram's edges are 10^(k/4) on one grid: place each arm's bins by k.
    ks = [
        round(4 * math.log10(edge))
        for _, histogram in arms
        for edge in histogram["edges"]
        if edge > 0
    ]
    low = min(ks) if ks else 0
    bins = (max(ks) - low) if ks else 0
    labels = ["0"] + [f"{10 ** ((low + j) / 4):.2g}" for j in range(bins)]
    fig, axes = _panels(len(arms), 2.4)
    for index, (ax, (arm, histogram)) in enumerate(zip(axes, arms, strict=True)):
        total = histogram["zeros"] + sum(histogram["counts"])
        shares = [0.0] * (bins + 1)
        shares[0] = histogram["zeros"] / total if total else 0.0
        if histogram["edges"]:
            first = round(4 * math.log10(histogram["edges"][0])) - low
            for j, count in enumerate(histogram["counts"]):
                shares[1 + first + j] = count / total
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        colours = [MUTED] + [colour] * bins
        # A log scale, so the few large weights that drive the variance stay visible.
        smallest = min([100 * s for s in shares if s > 0] or [1.0])
        lowest = max(math.floor(math.log10(smallest)) - 1, -6)  # a decade below the smallest
        ax.bar(range(bins + 1), [100 * s for s in shares], width=0.85, color=colours)
        ax.set_yscale("log")
        decades = [10.0**e for e in range(lowest, 3)]
        ax.set_ylim(decades[0], 100)
        ax.set_yticks(decades, [f"{d:g}%" for d in decades])
        ax.yaxis.set_minor_locator(NullLocator())
        step = max(1, math.ceil((bins + 1) / 8))
        ticks = list(range(0, bins + 1, step))
        ax.set_xticks(ticks, [labels[t] for t in ticks])
        ax.set_xlabel("importance weight (bin's lower edge; 0 in grey)")
        ax.set_ylabel("share of impressions")
        ax.set_title(mpl_text(arm), fontsize=9)
        ax.grid(axis="x", visible=False)
        ax.tick_params(axis="x", colors=MUTED)
        ax.spines["bottom"].set_color(GRID)
    return svg(fig)
