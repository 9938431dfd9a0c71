"""The world's signals are in the logs, measured on explore slates only.

On an explore slate the logging policy orders a uniform sample of the pool at
random, so position is independent of the item: position and freshness effects
measured there are not confounded by the production ranking.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsim_cli.simulate import WorldConfig, affinity, simulate_logs

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"


@pytest.fixture(scope="module")
def explore_ctr_by_position() -> pl.DataFrame:
    events = pl.read_csv(SAMPLE / "events.csv.gz").filter(pl.col("explore"))
    return (
        events.group_by("position")
        .agg(pl.len().alias("n"), pl.col("clicked").sum().alias("clicks"))
        .sort("position")
        .with_columns(ctr=pl.col("clicks") / pl.col("n"))
    )


def test_ctr_falls_from_top_to_bottom(explore_ctr_by_position: pl.DataFrame) -> None:
    n, clicks = explore_ctr_by_position["n"].to_numpy(), explore_ctr_by_position["clicks"]
    top, bottom = clicks[0] / n[0], clicks[9] / n[9]
    pooled = (clicks[0] + clicks[9]) / (n[0] + n[9])
    z = (top - bottom) / np.sqrt(pooled * (1 - pooled) * (1 / n[0] + 1 / n[9]))
    assert top > 2 * bottom
    assert z > 8


def test_ctr_follows_the_position_bias_curve(explore_ctr_by_position: pl.DataFrame) -> None:
    """log CTR(p) = const - eta * log(1 + p) on explore slates; the fitted slope recovers eta."""
    ctr = explore_ctr_by_position["ctr"].to_numpy()
    clicks = explore_ctr_by_position["clicks"].to_numpy().astype(float)
    x = np.log1p(np.arange(len(ctr)))
    design = np.column_stack([np.ones_like(x), x])
    weight = np.diag(clicks)  # var(log CTR) ~ 1 / clicks
    info = design.T @ weight @ design
    slope = np.linalg.solve(info, design.T @ weight @ np.log(ctr))[1]
    se = np.sqrt(np.linalg.inv(info)[1, 1])
    eta = WorldConfig().behaviour.position_bias
    assert slope < -10 * se  # a clearly decreasing trend
    assert abs(slope + eta) < 4 * se


def _mantel_haenszel(clicked: np.ndarray, young: np.ndarray, stratum: np.ndarray) -> tuple:
    """Return the Cochran-Mantel-Haenszel z and the common odds ratio (young vs old)."""
    table = (
        pl.DataFrame({"s": stratum, "young": young, "click": clicked})
        .group_by("s")
        .agg(
            a=(pl.col("young") & pl.col("click")).sum(),
            b=(pl.col("young") & ~pl.col("click")).sum(),
            c=(~pl.col("young") & pl.col("click")).sum(),
            d=(~pl.col("young") & ~pl.col("click")).sum(),
        )
        .with_columns(n=pl.col("a") + pl.col("b") + pl.col("c") + pl.col("d"))
        .filter((pl.col("a") + pl.col("b") > 0) & (pl.col("c") + pl.col("d") > 0))
    )
    a, b, c, d, n = (table[k].to_numpy().astype(float) for k in "abcdn")
    expected = (a + b) * (a + c) / n
    variance = (a + b) * (c + d) * (a + c) * (b + d) / (n**2 * (n - 1))
    z = (a - expected).sum() / np.sqrt(variance.sum())
    odds_ratio = (a * d / n).sum() / (b * c / n).sum()
    return z, odds_ratio


def test_fresh_items_are_clicked_more_than_old_ones_of_equal_quality() -> None:
    """Young (< 2 days) vs old (> 14 days) items, within strata of quality, affinity, position.

    A dedicated world that explores on every slate gives enough young
    impressions. Affinity is a stratum too: fresh candidates come from all
    categories, while old ones are partly chosen for the user's taste.
    """
    logs = simulate_logs(WorldConfig(users=3000, items=2000, days=7, epsilon=1.0, seed=8))
    world, imp = logs.world, logs.impressions
    users = logs.sessions.user[imp.session]
    age_days = (imp.ts - world.item_published_ts[imp.item]) / 86_400
    young, old = age_days < 2, age_days > 14
    keep = young | old
    quality = world.item_quality[imp.item]
    fit = affinity(world, users, imp.item)

    def quintile(x: np.ndarray) -> np.ndarray:
        return np.digitize(x, np.quantile(x[keep], [0.2, 0.4, 0.6, 0.8]))

    q_bin, a_bin = quintile(quality), quintile(fit)
    stratum = (q_bin * 5 + a_bin) * 10 + imp.position
    z, odds_ratio = _mantel_haenszel(imp.clicked[keep], young[keep], stratum[keep])
    assert young.sum() > 5000
    assert z > 5
    assert odds_ratio > 1.2
    for q in range(5):  # and within every quality bin on its own
        in_bin = keep & (q_bin == q)
        _, bin_odds = _mantel_haenszel(imp.clicked[in_bin], young[in_bin], stratum[in_bin])
        assert bin_odds > 1.0, q
