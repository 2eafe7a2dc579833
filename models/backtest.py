"""Rolling-origin backtest: one fold spec, one function (the same folds serve backtest, tune and
promote).

Temporal folds: for each labelled target period ``T`` with earlier transitions, train on the
transitions whose target period is before ``T`` and test on those whose target period is ``T``.
Spatial folds: whole provinces held out (grouped K-fold) within the training periods of the
newest temporal fold, so a model is also judged on places it has not seen. Nothing is fitted
outside a fold's training rows; the inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from features.periods import label_of
from features.taxonomy import MODES
from models.estimators import ModelInputError, rarer_class_count
from models.metrics import judge, judge_by_part, mode_metrics


@dataclass(frozen=True)
class Fold:
    """One train/test split, described by periods (and held-out groups for spatial folds)."""

    name: str
    kind: str
    train_periods: tuple[int, ...]
    test_periods: tuple[int, ...]
    test_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class FoldSpec:
    """How folds are cut.

    Attributes
    ----------
    horizon : int
        Periods between features (as of ``t``) and target (``t + horizon``).
    n_spatial : int
        Number of province groups held out in turn.
    group_column : str
        Column naming the group held out by spatial folds.
    seed : int
        Seed of the spatial grouping.
    max_temporal : int or None
        Keep only the newest temporal folds (one per quarter adds up quickly); None keeps all.
    """

    horizon: int = 1
    n_spatial: int = 5
    group_column: str = "province_code"
    seed: int = 0
    max_temporal: int | None = None

    def temporal(self, periods: np.ndarray) -> list[Fold]:
        """One fold per target period that has earlier transitions to learn from."""
        origins = sorted(int(p) for p in np.unique(periods))
        folds = []
        for test in origins[1:]:
            train = tuple(p for p in origins if p + self.horizon <= test)
            if train:
                folds.append(Fold(f"temporal_{label_of(test + self.horizon)}", "temporal", train, (test,)))
        return folds[-self.max_temporal :] if self.max_temporal else folds

    def spatial(self, periods: np.ndarray, groups: np.ndarray, y: np.ndarray) -> list[Fold]:
        """Provinces held out in turn, within the training periods of the newest temporal fold."""
        temporal = self.temporal(periods)
        train_periods = temporal[-1].train_periods if temporal else tuple(sorted(np.unique(periods)))
        mask = np.isin(periods, train_periods)
        splitter = _group_splitter(self.n_spatial, self.seed, y[mask])
        folds = []
        for i, (_, test) in enumerate(splitter.split(groups[mask], y[mask], groups[mask])):
            held = tuple(sorted(set(groups[mask][test])))
            folds.append(Fold(f"spatial_{i}", "spatial", train_periods, train_periods, held))
        return folds

    def to_dict(self) -> dict:
        return asdict(self)


def _group_splitter(n: int, seed: int, y: np.ndarray):
    if y.sum() >= n:
        return StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=seed)
    return GroupKFold(n_splits=n)


@dataclass
class BacktestResult:
    """Metrics per model and fold, and the out-of-sample predictions."""

    folds: list[dict] = field(default_factory=list)
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)

    def metrics(self, kind: str = "temporal", fold: str | None = None) -> dict[str, dict]:
        """Metrics per model for ``fold`` (default: the newest fold of ``kind``)."""
        candidates = [f for f in self.folds if f["kind"] == kind]
        chosen = next(f for f in candidates if f["name"] == fold) if fold else candidates[-1]
        return chosen["models"]


def backtest_emergence(
    models: Mapping[str, BaseEstimator],
    X: pd.DataFrame,
    y: np.ndarray,
    periods: np.ndarray,
    groups: np.ndarray,
    spec: FoldSpec,
    n_boot: int = 1000,
    reference: str | None = "lightgbm",
    spatial_models: Callable[[np.ndarray], Mapping[str, BaseEstimator]] | None = None,
) -> BacktestResult:
    """Fit clones of every model on each fold's training rows, score its test rows.

    Parameters
    ----------
    models : mapping of name to estimator
        Unfitted estimators (cloned per fold).
    X : DataFrame
        Features, one row per transition (county, origin period).
    y : array of 0/1
        Whether the county became a belt at ``period + horizon``.
    periods : array of int
        Origin period of each row.
    groups : array of str
        Province (or other group) of each row, for the spatial folds.
    spec : FoldSpec
    n_boot : int
        Bootstrap resamples of the AP interval and of the paired comparisons.
    reference : str or None
        The model every other one is compared with on the same resamples of each fold (skipped
        when None or not among ``models``).
    spatial_models : callable, optional
        Given a province fold's training rows (a boolean mask), the models for that fold (e.g.
        LightGBM with parameters tuned on those rows alone); default ``models``.

    Returns
    -------
    BacktestResult
        ``folds`` [{name, kind, train_periods, test_periods, test_groups, models: {name: metrics},
        comparisons: {other: paired difference of reference minus other}}] (the province hold-out in
        one entry ``spatial``: its ranking metrics within each held-out group of provinces, averaged,
        with ``average_precision_by_part``), and ``predictions`` (fold, model, row, y, p; the
        held-out provinces' pooled).
    """
    y, periods, groups = np.asarray(y, dtype=int), np.asarray(periods), np.asarray(groups)
    result = BacktestResult()
    prediction_parts = []
    for fold in spec.temporal(periods):
        train, test = np.isin(periods, fold.train_periods), np.isin(periods, fold.test_periods)
        scores = {name: _fit_predict(model, X, y, train, test, (name, fold)) for name, model in models.items()}
        result.folds.append(_fold_entry(fold, y[test], scores, n_boot, reference, groups[test]))
        prediction_parts += [_predictions(fold.name, name, X.index[test], y[test], p) for name, p in scores.items()]
    spatial = spec.spatial(periods, groups, y)
    if spatial:
        pooled, held, parts = _pooled_spatial(models, X, y, periods, groups, spatial, spatial_models)
        result.folds.append(_spatial_entry(spatial, y[held], pooled, parts, n_boot, reference))
        prediction_parts += [_predictions("spatial", name, X.index[held], y[held], p) for name, p in pooled.items()]
    result.predictions = pd.concat(prediction_parts, ignore_index=True) if prediction_parts else pd.DataFrame()
    return result


def _fit_predict(
    model: BaseEstimator,
    X: pd.DataFrame,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    where: tuple[str, Fold] | None = None,
):
    """The model fitted on the ``train`` rows, its probabilities on the ``test`` rows; an input
    error names the model and fold (``where``) and what the training rows held."""
    try:
        fitted = clone(model).fit(X[train], y[train])
    except ModelInputError as err:
        if where is None:
            raise
        name, fold = where
        held = f" holding out {list(fold.test_groups)}" if fold.test_groups else ""
        positives = int(y[train].sum())
        hint = ""
        if rarer_class_count(y[train]) < 2:
            hint = ". Too few belts: " + ("fewer folds (model.spatial_folds) or " if fold.kind == "spatial" else "")
            hint += "more data"
        raise ModelInputError(
            f"{name} on {fold.kind} fold {fold.name!r}{held}: {int(train.sum())} training rows with "
            f"{positives} positive(s): {err}{hint}"
        ) from err
    return fitted.predict_proba(X[test])[:, 1]


def _fold_entry(
    fold: Fold, y_test: np.ndarray, scores: dict, n_boot: int, reference: str | None, groups: np.ndarray
) -> dict:
    entry = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(fold).items()}
    return entry | _judged(y_test, scores, n_boot, reference, groups)


def _spatial_entry(
    folds: list[Fold], y_held: np.ndarray, pooled: dict, parts: np.ndarray, n_boot: int, reference: str | None
) -> dict:
    """The province hold-out: ranking metrics within each held-out group, averaged
    (:func:`~models.metrics.judge_by_part`)."""
    entry = {
        "name": "spatial",
        "kind": "spatial",
        "train_periods": list(folds[0].train_periods),
        "test_periods": list(folds[0].test_periods),
        "test_groups": [list(f.test_groups) for f in folds],
    }
    return entry | _judged_entry(*judge_by_part(y_held, pooled, parts, reference, n_boot=n_boot), reference in pooled)


def _judged(y: np.ndarray, scores: dict, n_boot: int, reference: str | None, groups: np.ndarray) -> dict:
    """Metrics of every model (the AP interval also by resampling whole groups), and the reference
    model against each other one on the same rows."""
    return _judged_entry(*judge(y, scores, reference, n_boot=n_boot, clusters=groups), reference in scores)


def _judged_entry(metrics: dict, comparisons: dict, compared: bool) -> dict:
    return {"models": metrics, "comparisons": comparisons} if compared else {"models": metrics}


def _pooled_spatial(models, X, y, periods, groups, folds: list[Fold], spatial_models=None):
    """Out-of-fold predictions of every model over the held-out provinces, pooled, the rows they
    are of, and the fold (0, 1, ...) that predicted each."""
    in_years = np.isin(periods, folds[0].train_periods)
    held_rows, pooled = [], {name: [] for name in models}
    for fold in folds:
        test = in_years & np.isin(groups, fold.test_groups)
        train = in_years & ~np.isin(groups, fold.test_groups)
        held_rows.append(np.flatnonzero(test))
        for name, model in (models if spatial_models is None else spatial_models(train)).items():
            pooled[name].append(_fit_predict(model, X, y, train, test, (name, fold)))
    order = np.concatenate(held_rows)
    fold_of = np.concatenate([np.full(len(rows), i) for i, rows in enumerate(held_rows)])
    return {name: np.concatenate(parts) for name, parts in pooled.items()}, order, fold_of


def _predictions(fold: str, model: str, index: pd.Index, y: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"fold": fold, "model": model, "row": index, "y": y, "p": p})


def backtest_mode(
    models: Mapping[str, BaseEstimator],
    X: pd.DataFrame,
    y: np.ndarray,
    groups: np.ndarray,
    n_splits: int = 5,
) -> dict[str, dict]:
    """Grouped cross-validation of mode models (provinces held out): pooled metrics per model.

    Each model's ``fit`` gets the training rows' groups, so a model that tunes itself by inner
    cross-validation (:class:`~models.estimators.LGBMMode`) holds out provinces there too."""
    y, groups = np.asarray(y, dtype=object), np.asarray(groups)
    splits = list(GroupKFold(n_splits=min(n_splits, len(np.unique(groups)))).split(X, y, groups))
    results = {}
    for name, model in models.items():
        proba = np.zeros((len(y), len(MODES)))
        for train, test in splits:
            fitted = clone(model).fit(X.iloc[train], y[train], groups=groups[train])
            proba[test] = fitted.predict_proba(X.iloc[test])
        results[name] = mode_metrics(y, proba, MODES)
    return results
