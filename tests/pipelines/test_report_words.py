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


def _read_first_of(as_of: int, today: str, **fields) -> list[str]:
    import datetime
    import html
    import re

    from pipelines.report import _read_first

    backtest = {"emergence": {"models": {"lightgbm": {"precision_at_25": 0.36, "precision_at_50": 0.2,
                                                      "base_rate": 0.0184}}}}  # fmt: skip
    context = ReportContext(
        "county-belt", "3", "run", as_of, pd.DataFrame(), {}, {}, {"newest_fold": "temporal_2016"},
        backtest=backtest, horizon=1, **fields,
    )  # fmt: skip
    page = _read_first(context, datetime.date.fromisoformat(today))
    return [html.unescape(item) for item in re.findall(r"<li>(.*?)</li>", page)]


def test_the_page_says_first_which_period_it_forecasts_and_when_that_period_is_past():
    # a strategist read a forecast "as of 2020", generated in 2026, as a forecast for next quarter
    past = _read_first_of(2020, "2026-12-05", labels_of=2016, belt_rule="A county counts as a belt in a year when x.")
    assert past[0] == "The forecast is of 2021: whether a county becomes a belt by then."
    assert past[1].startswith("2021 is over: this page forecasts a period already past from labels of 2016")
    assert past[2] == "A county counts as a belt in a year when x."
    assert past[3].startswith("How often the top was right (new belts of 2016): 9 of the top 25 and 10 of the top 50")
    assert "where 1.8% of the counties that were not belts did" in past[3]

    current = _read_first_of(2026 * 4 + 3, "2026-12-05", labels_of=2026 * 4 + 2)  # as of 2026Q4: of 2027Q1
    assert current[0] == "The forecast is of 2027Q1: whether a county becomes a belt by then."
    assert not any("is over" in point for point in current)
    assert _read_first_of(2026 * 4 + 2, "2027-01-01", labels_of=8105)[1].startswith("2026Q4 is over")
    assert not any("is over" in p for p in _read_first_of(2026 * 4 + 2, "2026-12-31", labels_of=8105))


def test_the_page_says_first_what_it_cannot_tell():
    points = _read_first_of(2013, "2026-12-05", labels_of=None, mode_weight=0.0)
    assert any(p.startswith("No belt label is known as of 2013: the belt-exposure indicators") for p in points)
    assert any(p.startswith("No mode is forecast for each county") and '"not forecast"' in p for p in points)
    assert not any("No mode" in p for p in _read_first_of(2020, "2026-12-05", labels_of=2016, mode_weight=0.4))
