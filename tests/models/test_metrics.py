"""Ranking metrics with literal values on hand-made vectors."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import emergence_metrics, mode_metrics, precision_at, recall_at

Y = np.array([1, 0, 1, 0, 0, 0, 0, 1, 0, 0])
P = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])


def test_precision_and_recall_at_k():
    assert precision_at(Y, P, 2) == 0.5
    assert precision_at(Y, P, 3) == pytest.approx(2 / 3)
    assert recall_at(Y, P, 3) == pytest.approx(2 / 3)
    assert recall_at(Y, P, 10) == 1.0


def test_tied_scores_across_the_cut_off_count_at_their_share_of_belts():
    """Not by row order: a constant score has the base rate at every k, and the rows' order
    (counties sorted by code) cannot lift a baseline's short list."""
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    constant = np.full(10, 0.3)
    assert precision_at(y, constant, 2) == pytest.approx(0.2)
    assert recall_at(y, constant, 5) == pytest.approx(0.5)
    scored = np.array([0.9, 0.5, 0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1])  # 1 above, then 1 belt in 4 tied
    assert precision_at(y, scored, 3) == pytest.approx((1 + 2 * 0.25) / 3)


def test_emergence_metrics_literal_values():
    result = emergence_metrics(Y, P, ks=(2, 5), n_boot=200, seed=1)
    assert result["average_precision"] == pytest.approx((1 + 2 / 3 + 3 / 8) / 3)
    assert result["roc_auc"] == pytest.approx(15 / 21)
    assert result["precision_at_2"] == 0.5
    assert result["base_rate"] == 0.3
    assert result["n_positive"] == 3
    low, high = result["average_precision_ci"]
    assert 0 <= low <= result["average_precision"] <= high <= 1


def test_mode_metrics():
    classes = ["a", "b"]
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    result = mode_metrics(np.array(["a", "b", "b"]), proba, classes)
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_weighted_average_precision_matches_scikit_learn():
    from sklearn.metrics import average_precision_score

    from models.metrics import weighted_average_precision

    rng = np.random.default_rng(4)
    y = (rng.random(300) < 0.1).astype(int)
    p = np.round(rng.random(300), 2)  # rounded: many tied scores
    weights = rng.multinomial(300, np.full(300, 1 / 300), size=5).astype(float)
    expected = [average_precision_score(y, p, sample_weight=w) for w in weights]
    np.testing.assert_allclose(weighted_average_precision(y, p, weights), expected, rtol=1e-12)


@pytest.mark.parametrize("n", [200, 5000])  # 5000: the top rows are read from a prefix of the ranking
def test_weighted_precision_at_counts_duplicated_rows(n):
    from models.metrics import weighted_precision_at

    rng = np.random.default_rng(7)
    y = (rng.random(n) < 0.2).astype(int)
    p = np.round(rng.random(n), 1 if n < 1000 else 3)  # many ties, some across the cut-off
    weights = rng.multinomial(n, np.full(n, 1 / n), size=4).astype(float)
    weights[0, np.argsort(-p, kind="stable")[: n // 5]] = 0  # a resample without the top fifth
    for k in (5, 20, 50, 300):
        assert weighted_precision_at(y, p, np.ones((1, n)), k)[0] == pytest.approx(precision_at(y, p, k))
        for w in weights:
            rows = np.repeat(np.arange(n), w.astype(int))  # the resample, row by row
            assert weighted_precision_at(y, p, w[None, :], k)[0] == pytest.approx(precision_at(y[rows], p[rows], k))
        shuffled = rng.permutation(n)  # ties are not broken by position
        assert precision_at(y[shuffled], p[shuffled], k) == pytest.approx(precision_at(y, p, k))


def _expected_precision(y: np.ndarray, p: np.ndarray, k: int) -> float:
    """Precision at k averaged over every order of the tied rows (by enumeration of the cut group)."""
    cut = np.sort(p)[::-1][k - 1]
    above, tied = y[p > cut], y[p == cut]
    return (above.sum() + (k - len(above)) * tied.mean()) / k


def test_precision_at_is_the_expected_value_over_random_tie_breaks():
    rng = np.random.default_rng(11)
    y = (rng.random(400) < 0.15).astype(int)
    p = np.round(rng.random(400), 1)
    for k in (1, 7, 40, 99):
        assert precision_at(y, p, k) == pytest.approx(_expected_precision(y, p, k))


def test_paired_difference_of_a_better_and_a_worse_ranking():
    from models.metrics import paired_difference

    rng = np.random.default_rng(3)
    y = (rng.random(600) < 0.1).astype(int)
    good, noise = y + rng.random(600), rng.random(600)
    result = paired_difference(y, good, noise, k=50, n_boot=300, seed=2)
    expected = (
        emergence_metrics(y, good, n_boot=0)["average_precision"]
        - emergence_metrics(y, noise, n_boot=0)["average_precision"]
    )
    assert result["average_precision_diff"] == pytest.approx(expected)
    assert result["precision_at_50_diff"] == pytest.approx(precision_at(y, good, 50) - precision_at(y, noise, 50))
    low, high = result["average_precision_diff_ci"]
    assert 0 < low <= result["average_precision_diff"] <= high
    assert result["average_precision_diff_ahead"] == 1.0
    backwards = paired_difference(y, noise, good, k=50, n_boot=300, seed=2)
    assert backwards["average_precision_diff_ci"] == pytest.approx([-high, -low])
    assert backwards["average_precision_diff_ahead"] == 0.0


def test_paired_difference_of_a_model_with_itself_is_zero():
    from models.metrics import paired_difference

    result = paired_difference(Y, P, P, k=5, n_boot=100)
    assert result["average_precision_diff"] == 0.0
    assert result["average_precision_diff_ci"] == [0.0, 0.0]
    assert result["precision_at_5_diff_ahead"] == 0.0


def test_the_bootstrap_in_blocks_gives_the_same_resamples_as_in_one(monkeypatch):
    import models.metrics

    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.05).astype(int)
    scores = {"a": rng.random(400) + 0.4 * y, "b": np.round(rng.random(400), 1)}  # "b" has ties
    whole = models.metrics.judge(y, scores, "a", n_boot=250, seed=5)
    interval = models.metrics.bootstrap_ap(y, scores["a"], n_boot=250, seed=5)
    monkeypatch.setattr(models.metrics, "RESAMPLE_CELLS", 400 * 7)  # blocks of 7 resamples
    assert models.metrics.judge(y, scores, "a", n_boot=250, seed=5) == whole
    assert models.metrics.bootstrap_ap(y, scores["a"], n_boot=250, seed=5) == interval
    assert whole[0]["a"]["average_precision_ci"] == pytest.approx(interval, rel=1e-12)
    assert 0.0 < whole[1]["b"]["average_precision_diff_ahead"] <= 1.0


def test_ranking_figures_of_parts_scored_by_different_models_are_judged_within_each_part():
    """Two held-out groups, each scored by its own model on its own scale: within each, the
    ranking is perfect (or constant), whatever the other group's scale."""
    from models.metrics import judge_by_part

    y = np.array([1, 0, 0, 0, 1, 0, 0, 0])
    parts = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    perfect = np.array([0.9, 0.8, 0.8, 0.8, 0.02, 0.01, 0.01, 0.01])  # part 1's belt below part 0's non-belts
    constant = np.array([0.5, 0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1])  # a base rate per part
    metrics, comparisons = judge_by_part(y, {"m": perfect, "prior": constant}, parts, "m", k=1, n_boot=50)
    assert metrics["m"]["average_precision"] == 1.0 and metrics["m"]["roc_auc"] == 1.0
    assert metrics["m"]["average_precision_by_part"] == [1.0, 1.0]
    assert metrics["prior"]["roc_auc"] == 0.5 and metrics["prior"]["precision_at_25"] == pytest.approx(0.25)
    assert metrics["m"]["n"] == 8 and metrics["m"]["brier"] == pytest.approx(np.mean((perfect - y) ** 2))
    assert comparisons["prior"]["average_precision_diff"] == pytest.approx(0.75)
    low, high = metrics["m"]["average_precision_ci"]
    assert 0 <= low <= high <= 1


def test_resampling_whole_provinces_widens_the_interval_when_provinces_move_together():
    """SYNTHETIC: 20 provinces of 50 counties, each province with its own level of emergence."""
    from models.metrics import clustered_ap_interval, judge

    rng = np.random.default_rng(5)
    provinces = np.repeat(np.arange(20), 50)
    level = rng.normal(0, 1.5, 20)[provinces]
    y = (rng.random(1000) < 1 / (1 + np.exp(3.5 - level))).astype(int)
    p = 1 / (1 + np.exp(3.5 - level - rng.normal(0, 1, 1000)))
    rows = emergence_metrics(y, p, n_boot=400, seed=0)["average_precision_ci"]
    clustered = clustered_ap_interval(y, p, provinces, 400, 0)
    assert clustered[1] - clustered[0] > rows[1] - rows[0]
    assert clustered == clustered_ap_interval(y, p, provinces, 400, 0)  # seeded
    metrics, _ = judge(y, {"m": p}, None, n_boot=400, clusters=provinces)
    assert metrics["m"]["average_precision_ci_clustered"] == clustered


def test_a_held_out_group_without_a_belt_has_no_ranking_figures_but_does_not_stop_the_backtest():
    from models.metrics import judge_by_part

    y = np.array([1, 0, 0, 0, 0, 0, 0, 0])
    parts = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    metrics, comparisons = judge_by_part(
        y, {"a": np.linspace(1, 0, 8), "b": np.full(8, 0.5)}, parts, "a", k=2, n_boot=20
    )
    assert metrics["a"]["average_precision"] == 1.0  # the group with a belt; the other has none to rank
    assert np.isnan(metrics["a"]["average_precision_by_part"][1])
    assert np.isnan(emergence_metrics(np.zeros(5, dtype=int), np.linspace(0, 1, 5), n_boot=0)["lift_at_50"])
    assert "average_precision_diff" in comparisons["b"]
