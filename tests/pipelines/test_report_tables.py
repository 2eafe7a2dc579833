"""The report's backtest tables, from a backtest JSON written by hand (no pipeline run)."""

from __future__ import annotations

from pipelines.report import _baselines

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
