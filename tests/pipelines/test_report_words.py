"""The report's words for a strategist: what a page is, and how to read its backtest tables
(SYNTHETIC figures)."""

from __future__ import annotations

import pandas as pd

from pipelines.report import ReportContext, _how_to_read, _page_kind


def _context(trained_up_to: int | None) -> ReportContext:
    return ReportContext("county-belt", "3", "run", 2014, pd.DataFrame(), {}, {}, {}, trained_up_to=trained_up_to)


def test_a_page_of_a_trained_on_period_is_titled_an_in_sample_check():
    assert _page_kind(_context(2015)) == "in-sample check (not a forecast)"
    assert _page_kind(_context(None)) == "forecast"


def test_the_guide_gives_the_newest_fold_s_own_numbers_in_words():
    models = {"lightgbm": {"precision_at_50": 0.22, "n": 2664, "n_positive": 49}, "prior": {}}
    guide = _how_to_read({"models": models})

    assert "<li><b>lightgbm</b>: the forecast on this page" in guide
    assert "<li><b>prior</b>: every county given the base rate" in guide
    assert "logistic" not in guide  # a model the tables do not show is not explained
    assert "(LightGBM's 0.22: 11 of its top 50 became belts)" in guide
    assert "The newest fold's base rate is 0.018: the AP of chance." in guide
