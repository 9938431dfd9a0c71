"""Holm and Benjamini–Hochberg against statsmodels, and their defining invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim_cli.errors import UnknownNameError
from recsim_cli.experiment.multiple import adjust, benjamini_hochberg, holm

p_lists = st.lists(st.floats(0, 1), min_size=1, max_size=12)


# statsmodels' Holm takes ~50 ms a call, so fewer examples here.
@settings(max_examples=25, deadline=None)
@given(p_lists)
def test_holm_and_bh_match_statsmodels(p) -> None:
    from statsmodels.stats.multitest import multipletests

    for ours, method in ((holm, "holm"), (benjamini_hochberg, "fdr_bh")):
        reject, adjusted, _, _ = multipletests(p, alpha=0.05, method=method)
        assert ours(p) == pytest.approx(adjusted, abs=1e-12)
        assert ((ours(p) <= 0.05) == reject).all()


@settings(max_examples=150, deadline=None)
@given(p_lists)
def test_adjusted_p_values_are_at_least_raw_and_monotone_in_raw(p) -> None:
    raw = np.asarray(p)
    order = np.argsort(raw, kind="stable")
    for method in ("holm", "bh"):
        adjusted = adjust(raw, method)
        assert (adjusted >= raw - 1e-15).all()
        assert (adjusted <= 1).all()
        assert (np.diff(adjusted[order]) >= -1e-15).all()
    # BH controls a weaker error rate, so it never adjusts more than Holm.
    assert (benjamini_hochberg(raw) <= holm(raw) + 1e-15).all()


def test_holm_known_answer() -> None:
    assert holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert benjamini_hochberg([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.04, 0.04])
    assert adjust([0.2, 0.01], "none").tolist() == [0.2, 0.01]


def test_an_undefined_p_value_counts_as_one() -> None:
    assert holm([np.nan, 0.01]).tolist() == pytest.approx([1.0, 0.02])


def test_unknown_correction_lists_the_known_ones() -> None:
    with pytest.raises(
        UnknownNameError, match=r"^Unknown correction 'bonf'\. Available: bh, holm, none\.$"
    ):
        adjust([0.1], "bonf")
