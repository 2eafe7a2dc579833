"""The fold spec and the backtest function (synthetic fixtures)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from features.periods import parse_period
from models.backtest import FoldSpec, backtest_emergence
from models.estimators import LGBMEmergence, ModelInputError, PriorBaseline


def test_temporal_folds_train_only_on_earlier_targets():
    folds = FoldSpec(horizon=1).temporal(np.array([2014, 2015, 2016, 2016]))
    assert [(f.name, f.train_periods, f.test_periods) for f in folds] == [
        ("temporal_2016", (2014,), (2015,)),
        ("temporal_2017", (2014, 2015), (2016,)),
    ]
    assert FoldSpec(horizon=2).temporal(np.array([2014, 2015, 2016]))[-1].train_periods == (2014,)


def test_quarterly_folds_are_named_by_their_target_quarter():
    quarters = np.array([parse_period(q)[1] for q in ("2025Q1", "2025Q2", "2025Q3")])
    assert [f.name for f in FoldSpec(horizon=4).temporal(quarters)] == []  # no target 4 quarters on
    assert [f.name for f in FoldSpec(horizon=1).temporal(quarters)] == ["temporal_2025Q3", "temporal_2025Q4"]


def test_spatial_folds_hold_out_whole_provinces(synthetic_transitions):
    _, y, periods, groups = synthetic_transitions
    folds = FoldSpec(n_spatial=3).spatial(periods, groups, y)
    held = [g for f in folds for g in f.test_groups]
    assert sorted(held) == [f"p{i}" for i in range(6)]
    assert all(f.train_periods == (2014, 2015) for f in folds)


def test_backtest_returns_metrics_and_leaves_inputs_alone(synthetic_transitions):
    X, y, periods, groups = synthetic_transitions
    before = X.copy()
    models = {"lightgbm": LGBMEmergence(n_estimators=30), "prior": PriorBaseline()}
    result = backtest_emergence(models, X, y, periods, groups, FoldSpec(n_spatial=3), n_boot=50)
    pd.testing.assert_frame_equal(X, before)
    newest = result.metrics("temporal")
    assert set(newest) == {"lightgbm", "prior"}
    assert newest["lightgbm"]["average_precision"] > newest["prior"]["average_precision"]
    assert result.metrics("spatial")["lightgbm"]["n"] == 1200
    assert set(result.predictions["fold"]) == {"temporal_2016", "temporal_2017", "spatial"}
    for fold in result.folds:  # the reference against every other model, on the same rows
        assert set(fold["comparisons"]) == {"prior"}
        diff = fold["comparisons"]["prior"]
        metrics = fold["models"]
        ap = metrics["lightgbm"]["average_precision"] - metrics["prior"]["average_precision"]
        assert diff["average_precision_diff"] == pytest.approx(ap)
        assert len(diff["average_precision_diff_ci"]) == 2
    alone = backtest_emergence({"prior": PriorBaseline()}, X, y, periods, groups, FoldSpec(n_spatial=3), n_boot=0)
    assert all("comparisons" not in fold for fold in alone.folds)


def test_shuffling_test_year_labels_does_not_change_the_model(synthetic_transitions):
    X, y, periods, _groups = synthetic_transitions
    fold = FoldSpec().temporal(periods)[-1]
    train = np.isin(periods, fold.train_periods)
    shuffled = y.copy()
    test = np.isin(periods, fold.test_periods)
    shuffled[test] = np.random.default_rng(0).permutation(y[test])
    first = LGBMEmergence(n_estimators=30).fit(X[train], y[train]).predict_proba(X[test])
    second = LGBMEmergence(n_estimators=30).fit(X[train], shuffled[train]).predict_proba(X[test])
    np.testing.assert_array_equal(first, second)


def test_a_fold_with_too_few_belts_to_calibrate_is_named(synthetic_transitions):
    X, y, periods, groups = synthetic_transitions
    rows = np.flatnonzero((periods == 2014) & ((y == 0) | (groups == "p0")))  # belts in one province only
    keep = rows[(y[rows] == 0) | (np.cumsum(y[rows]) <= 3)]  # 3 of them
    with pytest.raises(ModelInputError) as raised:
        backtest_emergence(
            {"lightgbm": LGBMEmergence(n_estimators=10)},
            X.iloc[keep], y[keep], periods[keep], groups[keep], FoldSpec(n_spatial=2), n_boot=0,
        )  # fmt: skip
    message = str(raised.value)
    assert re.search(
        r"lightgbm on spatial fold 'spatial_\d' holding out \[.*\]: \d+ training rows with [01] positive", message
    )
    assert "at least 2 rows of each class" in message and "Too few belts: fewer folds (model.spatial_folds)" in message


def test_nested_tuning_sees_only_each_province_folds_training_rows(synthetic_transitions):
    """With ``spatial_models``, each province fold's models are built from its training rows
    alone (the nested study of ``backtest --nested-trials``): the held-out provinces, and the
    temporal test periods, never reach it."""
    from models.tuning import nested_params

    X, y, periods, groups = synthetic_transitions
    spec = FoldSpec(n_spatial=3)
    seen = []

    def spatial_models(train: np.ndarray) -> dict:
        seen.append(set(groups[train]))
        params = nested_params(X[train], y[train], periods[train], groups[train], spec, n_trials=2, n_inner=2)
        assert params == nested_params(X[train], y[train], periods[train], groups[train], spec, n_trials=2, n_inner=2)
        return {"lightgbm": LGBMEmergence(**params), "prior": PriorBaseline()}

    result = backtest_emergence(
        {"lightgbm": LGBMEmergence(n_estimators=30), "prior": PriorBaseline()}, X, y, periods, groups, spec,
        n_boot=0, spatial_models=spatial_models,
    )  # fmt: skip
    folds = spec.spatial(periods, groups, y)
    assert [s.isdisjoint(f.test_groups) for s, f in zip(seen, folds, strict=True)] == [True] * 3
    assert result.metrics("spatial")["lightgbm"]["n"] == 1200
