"""The report's backtest tables, from a backtest JSON written by hand (no pipeline run)."""

from __future__ import annotations

import pandas as pd

from pipelines.report import ReportContext, _baselines, _mode_backtest, _reading

REPORT = {
    "emergence": {
        "models": {
            "lightgbm": {
                "average_precision": 0.131, "average_precision_ci": [0.0953, 0.1955], "precision_at_50": 0.14,
                "recall_at_100": 0.3061, "roc_auc": 0.9044, "brier": 0.017961,
            },
            "spatial_neighbors": {"average_precision": 0.1375, "precision_at_50": 0.16},
        },
        "comparisons": {
            "lightgbm_uncalibrated": {"average_precision_diff": 0.0},
            "spatial_neighbors": {
                "average_precision_diff": -0.00645, "average_precision_diff_ci": [-0.0700, 0.0543],
                "average_precision_diff_ahead": 0.495, "precision_at_50_diff": -0.02,
                "precision_at_50_diff_ci": [-0.1, 0.1], "precision_at_50_diff_ahead": 0.432,
            },
        },
    }
}  # fmt: skip


def test_models_and_paired_differences_are_tabulated():
    page = _baselines(REPORT)
    assert "<tr><td>lightgbm</td><td>0.131 [0.095, 0.196]</td><td>0.14</td><td>0.306</td><td>0.904</td>" in page
    assert "<tr><td>spatial_neighbors</td><td>0.138</td><td>0.16</td><td>–</td><td>–</td><td>–</td></tr>" in page
    assert (
        "<tr><td>spatial_neighbors</td><td>-0.006 [-0.070, +0.054]</td><td>50%</td>"
        "<td>-0.02 [-0.100, +0.100]</td><td>43%</td></tr>"
    ) in page
    assert "<tr><td>lightgbm_uncalibrated</td><td>+" not in page  # the same booster: no comparison row


def test_a_run_without_a_backtest_says_so():
    assert _baselines({}) == "<p>(no backtest table stored with this version)</p>"
    assert "LightGBM minus" not in _baselines({"emergence": {"models": REPORT["emergence"]["models"]}})


def test_the_province_hold_out_and_the_mode_backtest_are_shown_too():
    spatial = {
        "models": {"lightgbm": {"average_precision": 0.334}, "lightgbm_uncalibrated": {"average_precision": 0.368}},
        "comparisons": {
            "lightgbm_uncalibrated": {
                "average_precision_diff": -0.034, "average_precision_diff_ci": [-0.051, -0.015],
                "average_precision_diff_ahead": 0.0, "precision_at_50_diff": -0.04,
                "precision_at_50_diff_ci": [-0.08, 0.02], "precision_at_50_diff_ahead": 0.1,
            }
        },
    }  # fmt: skip
    page = _baselines({"emergence": {**REPORT["emergence"], "spatial": spatial}})
    assert "<h3>Provinces held out</h3>" in page and "not independent of the tuning" in page
    nested = _baselines({"emergence": {**REPORT["emergence"], "spatial": {**spatial, "nested_tuning_trials": 30}}})
    assert "tuned anew on each group's training provinces (30 trials)" in nested
    assert "<tr><td>lightgbm_uncalibrated</td><td>-0.034 [-0.051, -0.015]</td><td>0%</td>" in page  # not the same
    assert "lightgbm_uncalibrated: the same ranking as LightGBM on this fold" in page  # on the temporal fold
    mode = {"mode": {"models": {"majority": {"accuracy": 0.747, "macro_f1": 0.214, "log_loss": 0.874, "n": 79}}}}
    assert "<tr><td>majority</td><td>0.747</td><td>0.214</td><td>0.874</td><td>79</td></tr>" in _mode_backtest(mode)
    assert "repeats the majority's figures" in _mode_backtest(mode, 0.0)
    assert "repeats" not in _mode_backtest(mode, 0.4)


def _context(is_belt: list, rank: list, labels_of: int | None, as_of: int = 2020) -> ReportContext:
    scores = pd.DataFrame({"is_belt": pd.array(is_belt, dtype="boolean"), "rank": pd.array(rank, dtype="Int64")})
    return ReportContext(
        name="county-belt", version="1", run_id="r", as_of=as_of, scores=scores, figures={}, lineage={},
        metrics={}, labels_of=labels_of, horizon=1,
    )  # fmt: skip


def test_the_page_says_what_p_belt_and_the_belt_status_are():
    said = _reading(_context([True, False, None], [None, 1, 2], 2016))
    assert "p_belt is the probability that a county becomes a belt within 1 year of 2020" in said
    assert "the newest labels known as of 2020, those of 2016: 1 counties were belts then" in said
    assert "2 candidates are ranked, 1 of them of unknown status" in said
    assert "No belt label is known as of 2013" in _reading(_context([None], [1], None, as_of=2013))
    assert "within 1 quarter of 2025Q3" in _reading(_context([False], [1], 8101, as_of=8102))
    assert "within 2 quarters of 2025Q3" in _reading(
        ReportContext(**{**_context([False], [1], 8101, as_of=8102).__dict__, "horizon": 2})
    )
    assert "in-sample" not in said
    trained = ReportContext(**{**_context([False], [1], 2016, as_of=2015).__dict__, "trained_up_to": 2016})
    assert "this page is an in-sample check, not a forecast" in _reading(trained)


def test_the_printed_difference_table_names_an_identical_ranking():
    from rich.console import Console

    from pipelines.backtest import difference_table

    emergence = {**REPORT["emergence"], "spatial": {"models": {}, "comparisons": {}}}
    console = Console(record=True, width=200)
    console.print(difference_table({"emergence": emergence}))
    printed = console.export_text()
    assert "same ranking" in next(line for line in printed.splitlines() if "lightgbm_uncalibrated" in line)
    assert "-0.006 [-0.070, +0.054]" in printed


def test_the_interval_with_provinces_resampled_has_a_column_when_the_backtest_gave_it():
    models = {"lightgbm": {"average_precision": 0.155, "average_precision_ci": [0.103, 0.244],
                           "average_precision_ci_clustered": [0.088, 0.259], "precision_at_50": 0.2}}  # fmt: skip
    page = _baselines({"emergence": {"models": models}})
    assert '<th scope="col">AP interval, provinces resampled</th>' in page
    assert "<tr><td>lightgbm</td><td>0.155 [0.103, 0.244]</td><td>[0.088, 0.259]</td><td>0.20</td>" in page
