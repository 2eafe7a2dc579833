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
