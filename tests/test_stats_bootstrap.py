"""The Poisson bootstrap: seeded, vectorised, and close to the delta method when it should be."""

from __future__ import annotations

import numpy as np
import pytest

from recsim_cli.errors import ConfigError
from recsim_cli.experiment import analyse
from recsim_cli.experiment.bootstrap import arm_columns, poisson_bootstrap
from recsim_cli.experiment.comparison import Sample, compare
from recsim_cli.experiment.synthetic import experiment_frame


def ratio_arm(rng: np.random.Generator, n: int, rate: float):
    den = 1.0 + rng.poisson(5, n)
    num = rng.binomial(den.astype(int), rate).astype(float)
    return num, den


def test_bootstrap_agrees_with_the_delta_method_on_well_behaved_data() -> None:
    rng = np.random.default_rng(31)
    num_c, den_c = ratio_arm(rng, 3_000, 0.10)
    num_t, den_t = ratio_arm(rng, 3_000, 0.11)
    delta = compare(Sample.of(num_c, den_c), Sample.of(num_t, den_t))
    boot = poisson_bootstrap(
        arm_columns(num_c, den_c),
        arm_columns(num_t, den_t),
        resamples=2_000,
        rng=np.random.default_rng(1),
    )
    assert boot.se == pytest.approx(float(delta.se), rel=0.08)
    assert boot.ci_low == pytest.approx(float(delta.ci_low), abs=0.2 * float(delta.se))
    assert boot.ci_high == pytest.approx(float(delta.ci_high), abs=0.2 * float(delta.se))
    assert boot.relative_low == pytest.approx(float(delta.relative_low), abs=0.02)
    assert boot.undefined_resamples == 0


def test_bootstrap_is_reproducible_and_chunked(monkeypatch) -> None:
    rng = np.random.default_rng(32)
    c = arm_columns(*ratio_arm(rng, 500, 0.1))
    t = arm_columns(*ratio_arm(rng, 500, 0.1))
    a = poisson_bootstrap(c, t, resamples=300, rng=np.random.default_rng(5))
    b = poisson_bootstrap(c, t, resamples=300, rng=np.random.default_rng(5))
    assert a == b
    # Force many small chunks: same distribution, still deterministic.
    monkeypatch.setattr("recsim_cli.experiment.bootstrap._CHUNK_ENTRIES", 500 * 7)
    chunked = poisson_bootstrap(c, t, resamples=300, rng=np.random.default_rng(5))
    assert chunked == poisson_bootstrap(c, t, resamples=300, rng=np.random.default_rng(5))
    assert chunked.se == pytest.approx(a.se, rel=0.2)


def test_paired_bootstrap_resamples_users_not_rows() -> None:
    rng = np.random.default_rng(33)
    base = rng.lognormal(0, 1, 400)
    c = base * rng.lognormal(0, 0.1, 400)
    t = base * rng.lognormal(0.02, 0.1, 400)
    ones = np.ones(400)
    paired = poisson_bootstrap(
        arm_columns(c, ones), arm_columns(t, ones), resamples=1_000, rng=rng, paired=True
    )
    split = poisson_bootstrap(arm_columns(c, ones), arm_columns(t, ones), resamples=1_000, rng=rng)
    delta = compare(Sample.of(c, 1.0), Sample.of(t, 1.0), design="paired")
    assert paired.se == pytest.approx(float(delta.se), rel=0.15)
    assert paired.se < split.se / 3


def test_analyse_bootstrap_does_not_depend_on_the_frames_row_order() -> None:
    frame = experiment_frame(np.random.default_rng(34), 300)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=1)
    runs = [
        analyse(f, ["ctr"], bootstrap=200, rng=np.random.default_rng(9)) for f in (frame, shuffled)
    ]
    assert runs[0].metric("ctr").bootstrap == runs[1].metric("ctr").bootstrap
    assert runs[0].metric("ctr").p_value == pytest.approx(runs[1].metric("ctr").p_value, rel=1e-12)


def test_the_bootstrap_needs_a_generator() -> None:
    frame = experiment_frame(np.random.default_rng(35), 100)
    with pytest.raises(ConfigError, match=r"^the bootstrap needs a seeded generator"):
        analyse(frame, ["ctr"], bootstrap=100)
