"""Estimators with the scikit-learn API: the LightGBM emergence and mode models, and baselines.

Every estimator takes a DataFrame of panel features (it records ``feature_names_in_`` at fit and
selects those columns at predict), stores only hyper-parameters in ``__init__``, learns in
``fit`` and checks it is fitted before predicting, so ``clone``, ``set_params`` and Optuna work.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from features.errors import BeltcastError
from features.taxonomy import MODES
from models.margin import LinearMargin, check_strength


class ModelInputError(BeltcastError, ValueError):
    """A model got input of the wrong shape, columns or values."""


class _FrameEstimator(ClassifierMixin, BaseEstimator):
    """Shared input handling: a DataFrame in, columns remembered at fit, checked at predict."""

    def _fit_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise ModelInputError(f"X must be a pandas DataFrame; got {type(X).__name__}")
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self._numeric(X)

    def _predict_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self)
        if not isinstance(X, pd.DataFrame):
            raise ModelInputError(f"X must be a pandas DataFrame; got {type(X).__name__}")
        missing = [c for c in self.feature_names_in_ if c not in X.columns]
        if missing:
            raise ModelInputError(f"X lacks feature column(s) {missing[:10]} seen at fit")
        return self._numeric(X[list(self.feature_names_in_)])

    @staticmethod
    def _numeric(X: pd.DataFrame) -> pd.DataFrame:
        bad = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
        if bad:
            raise ModelInputError(f"feature column(s) {bad[:10]} must be numeric; got {X[bad].dtypes.tolist()}")
        return X.astype(float)


def rarer_class_count(y: np.ndarray) -> int:
    """Rows of the rarer class of a 0/1 target: the most stratified folds it allows."""
    positives = int(np.sum(y))
    return min(positives, len(y) - positives)


def _binary_target(y: Sequence) -> np.ndarray:
    y = np.asarray(y)
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise ModelInputError(f"y must be 0/1; got values {sorted(values)[:10]}")
    return y.astype(int)


EXPOSURE_RISING = ("belts_within_", "belts_same_", "villages_within_")
EXPOSURE_FALLING = ("dist_nearest_belt_km",)


def exposure_signs(columns: Sequence[str]) -> tuple[int, ...]:
    """+1 for the belt-exposure features a county's chance rises with (columns starting with
    :data:`EXPOSURE_RISING`), -1 for those it falls with (:data:`EXPOSURE_FALLING`), 0 for others."""
    return tuple(
        1 if str(c).startswith(EXPOSURE_RISING) else -1 if str(c).startswith(EXPOSURE_FALLING) else 0 for c in columns
    )


class _MarginBooster(ClassifierMixin, BaseEstimator):
    """A LightGBM booster that starts from the log-odds of a :class:`~models.margin.LinearMargin`
    fitted on the same rows (``init_score``); its score is the sum of the two."""

    def __init__(self, booster: lgb.LGBMClassifier, C: float = 1.0, signs: tuple[int, ...] | None = None):
        self.booster = booster
        self.C = C
        self.signs = signs

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> _MarginBooster:
        values = X.to_numpy(dtype=float)
        self.margin_ = LinearMargin.fit(values, y, self.C, signs=self.signs)
        self.booster_ = clone(self.booster).fit(X, y, init_score=self.margin_.logit(values))
        self.classes_ = self.booster_.classes_
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Log-odds: the booster's raw score plus the margin's."""
        return self.booster_.predict(X, raw_score=True) + self.margin_.logit(X.to_numpy(dtype=float))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


class LGBMEmergence(_FrameEstimator):
    """LightGBM binary classifier of belt emergence, with sigmoid calibration cross-fitted
    inside the training data, optionally boosted from a linear margin.

    Parameters
    ----------
    n_estimators, learning_rate, num_leaves, min_child_samples, subsample, colsample_bytree,
    reg_lambda, scale_pos_weight : LightGBM hyper-parameters.
    linear_margin_C : float or None
        ``None``: the booster alone. A number: a standardised logistic regression with this
        inverse regularisation strength is fitted first and the booster starts from its log-odds
        (:mod:`models.margin`); ``margin_`` holds it. Within the calibration's cross-fitting, it
        is refitted in every fold with the booster.
    calibration : {"sigmoid", None}
        ``"sigmoid"``: Platt scaling fitted on out-of-fold predictions of the training data
        (``CalibratedClassifierCV(ensemble=False)``); the booster (and margin) is refitted on all
        of it.
    calibration_folds : int
        Folds of the cross-fitting; at most the number of rows of the rarer class (the folds
        are stratified), which ``calibration_folds_`` records.
    monotone_exposure : bool
        The score never falls as a belt-exposure feature rises (:func:`exposure_signs`: the
        shares of belts and villages nearby, in the prefecture and the province), and never
        rises with the nearest belt's distance: LightGBM's monotone constraints in the trees,
        sign bounds on the margin's coefficients. A what-if that adds belts nearby then cannot
        lower ``p_belt``.
    random_state : int
        Seed of LightGBM and of the calibration folds; the same seed gives the same scores.
    n_jobs : int
        LightGBM threads (results are deterministic for a fixed value).
    """

    def __init__(
        self,
        n_estimators: int = 300,
        learning_rate: float = 0.03,
        num_leaves: int = 15,
        min_child_samples: int = 20,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        scale_pos_weight: float = 1.0,
        linear_margin_C: float | None = None,
        calibration: str | None = "sigmoid",
        calibration_folds: int = 3,
        monotone_exposure: bool = True,
        random_state: int = 0,
        n_jobs: int = 1,
    ):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.scale_pos_weight = scale_pos_weight
        self.linear_margin_C = linear_margin_C
        self.calibration = calibration
        self.calibration_folds = calibration_folds
        self.monotone_exposure = monotone_exposure
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _booster(self, signs: tuple[int, ...] | None) -> lgb.LGBMClassifier:
        constraints = {"monotone_constraints": list(signs), "monotone_constraints_method": "advanced"} if signs else {}
        return lgb.LGBMClassifier(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=self.subsample,
            subsample_freq=1,
            colsample_bytree=self.colsample_bytree,
            reg_lambda=self.reg_lambda,
            scale_pos_weight=self.scale_pos_weight,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
            **constraints,
        )

    def fit(self, X: pd.DataFrame, y: Sequence) -> LGBMEmergence:
        """Fit the booster (and the calibration) on ``X``, ``y``."""
        if self.calibration not in ("sigmoid", None):
            raise ModelInputError(f"calibration must be 'sigmoid' or None; got {self.calibration!r}")
        if not isinstance(self.monotone_exposure, (bool, np.bool_)):
            raise ModelInputError(f"monotone_exposure must be true or false; got {self.monotone_exposure!r}")
        features, target = self._fit_frame(X), _binary_target(y)
        self.classes_ = np.array([0, 1])
        signs = exposure_signs(features.columns) if self.monotone_exposure else None
        signs = signs if signs and any(signs) else None
        if self.linear_margin_C is None:
            estimator = self._booster(signs)
        else:
            check_strength(self.linear_margin_C)
            if len(np.unique(target)) < 2:
                raise ModelInputError(
                    "linear_margin_C needs both classes (y = 0 and y = 1) in the training rows;"
                    f" got only y = {np.unique(target).tolist()}; fit with linear_margin_C=None or on more rows"
                )
            estimator = _MarginBooster(self._booster(signs), self.linear_margin_C, signs)
        if self.calibration is None:
            self.calibrated_ = None
            self._keep(estimator.fit(features, target))
            return self
        minority = rarer_class_count(target)
        if minority < 2:
            raise ModelInputError(
                f"sigmoid calibration needs at least 2 rows of each class (y = 0 and y = 1); got {minority}"
                " of the rarer; fit with calibration=None or on more rows"
            )
        if not hasattr(estimator, "decision_function"):  # LightGBM before 4.7, outside pyproject's range
            raise ModelInputError(
                f"the calibration is fitted on the booster's raw score, which LightGBM {lgb.__version__} does not"
                " give its classifier (LGBMClassifier.decision_function, from 4.7); install lightgbm>=4.7,<5"
            )
        self.calibration_folds_ = min(self.calibration_folds, minority)
        folds = StratifiedKFold(self.calibration_folds_, shuffle=True, random_state=self.random_state)
        calibrated = CalibratedClassifierCV(estimator, method="sigmoid", cv=folds, ensemble=False)
        self.calibrated_ = calibrated.fit(features, target)
        self._keep(calibrated.calibrated_classifiers_[0].estimator)
        return self

    def _keep(self, fitted: lgb.LGBMClassifier | _MarginBooster) -> None:
        """The fitted parts: ``estimator_`` (what the calibration reads), ``booster_`` (the
        LightGBM classifier) and ``margin_`` (the linear margin, or ``None``)."""
        self.estimator_ = fitted
        margin = isinstance(fitted, _MarginBooster)
        self.booster_ = fitted.booster_ if margin else fitted
        self.margin_ = fitted.margin_ if margin else None

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities, columns ``[not belt, belt]``."""
        features = self._predict_frame(X)
        model = self.calibrated_ if self.calibrated_ is not None else self.estimator_
        return model.predict_proba(features)

    def predict_uncalibrated(self, X: pd.DataFrame) -> np.ndarray:
        """The model's own probability of becoming a belt (booster and margin), before calibration."""
        return self.estimator_.predict_proba(self._predict_frame(X))[:, 1]

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-row contributions (log-odds) of each feature: LightGBM's SHAP values
        (``pred_contrib``) plus, with a linear margin, the feature's terms in it."""
        features = self._predict_frame(X)
        raw = self.booster_.predict(features, pred_contrib=True)[:, :-1]
        if self.margin_ is not None:
            raw = raw + self.margin_.terms(features.to_numpy(dtype=float))
        return pd.DataFrame(raw, columns=list(self.feature_names_in_), index=X.index)

    def feature_importance(self) -> pd.Series:
        """Total gain per feature in the booster's trees, largest first (a linear margin's part
        is in :meth:`contributions`)."""
        check_is_fitted(self)
        gain = self.booster_.booster_.feature_importance(importance_type="gain")
        return pd.Series(gain, index=list(self.feature_names_in_)).sort_values(ascending=False)


class LGBMMode(_FrameEstimator):
    """LightGBM multiclass model of a belt's development mode over :data:`MODES`, blended with
    the modes' training frequencies.

    With a few dozen labelled belts, most of them of one mode, a booster's probabilities can be
    worse than the frequencies alone (by grouped cross-validation on the public data, they are).
    The model's probabilities are therefore ``w * booster + (1 - w) * frequencies``, with the
    weight ``w`` chosen by inner cross-validation inside the training data: it is 0 where the
    features carry no mode signal the booster can learn, and it grows where they do.

    Probabilities always have the four modes as columns, in :data:`MODES` order; a mode absent
    from the training data gets probability 0.

    Parameters
    ----------
    n_estimators, learning_rate, num_leaves, min_child_samples, colsample_bytree, reg_lambda,
    class_weight : LightGBM hyper-parameters.
    model_weight : float in [0, 1] or "cv"
        The booster's weight ``w`` against the training frequencies; ``"cv"`` chooses it among
        0, 0.05, ..., 1 by the lowest log-loss of out-of-fold predictions over ``cv_folds`` inner
        folds (provinces held out when ``fit`` is given ``groups``), the lower weight on ties.
    cv_folds : int
        Inner folds of the weight's cross-validation.
    random_state : int
        Seed of LightGBM and of the inner folds when there are no groups.
    n_jobs : int
        LightGBM threads.

    Attributes
    ----------
    model_weight_ : float
        The weight used: 0 when the training data hold a single mode, whatever ``model_weight``
        says (the frequencies then give that mode all the probability, as the booster would).
    frequencies_ : ndarray
        The modes' training frequencies, in :data:`MODES` order.
    cv_log_loss_ : dict
        Inner-fold log-loss for each weight tried (empty when the weight is fixed or the data
        are too few to cross-validate, in which case the weight is 0).
    """

    WEIGHTS = tuple(np.round(np.linspace(0.0, 1.0, 21), 2))

    def __init__(
        self,
        n_estimators: int = 50,
        learning_rate: float = 0.05,
        num_leaves: int = 7,
        min_child_samples: int = 5,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        class_weight: str | None = None,
        model_weight: float | str = "cv",
        cv_folds: int = 5,
        random_state: int = 0,
        n_jobs: int = 1,
    ):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.class_weight = class_weight
        self.model_weight = model_weight
        self.cv_folds = cv_folds
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: pd.DataFrame, y: Sequence[str], groups: Sequence | None = None) -> LGBMMode:
        """Fit on belts with a known mode; ``groups`` (e.g. provinces) are held out together in
        the inner folds that choose the weight."""
        self._check_weight()
        features = self._fit_frame(X)
        labels = _mode_labels(y)
        if groups is not None and len(groups) != len(labels):
            raise ModelInputError(f"groups must have one value per row of X ({len(labels)}); got {len(groups)}")
        self.classes_ = np.array(MODES, dtype=object)
        self.seen_ = np.array([m for m in MODES if m in set(labels)], dtype=object)
        self.frequencies_ = _frequencies(labels)
        self.model_ = self._booster().fit(features, labels)
        self.model_weight_, self.cv_log_loss_ = self._choose_weight(features, labels, groups)
        return self

    def _check_weight(self) -> None:
        weight, folds = self.model_weight, self.cv_folds
        number = isinstance(weight, (int, float, np.number)) and not isinstance(weight, bool)
        if weight != "cv" and not (number and 0.0 <= float(weight) <= 1.0):
            raise ModelInputError(f"model_weight must be a number in [0, 1] or 'cv'; got {weight!r}")
        if not isinstance(folds, (int, np.integer)) or isinstance(folds, bool) or folds < 2:
            raise ModelInputError(f"cv_folds must be an integer >= 2; got {folds!r}")

    def _booster(self) -> lgb.LGBMClassifier:
        return lgb.LGBMClassifier(
            objective="multiclass" if len(self.seen_) > 2 else "binary",
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            colsample_bytree=self.colsample_bytree,
            reg_lambda=self.reg_lambda,
            class_weight=self.class_weight,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        )

    def _choose_weight(self, features: pd.DataFrame, labels: np.ndarray, groups) -> tuple[float, dict]:
        if len(self.seen_) < 2:  # one mode: the frequencies already give it all the probability
            return 0.0, {}
        if self.model_weight != "cv":
            return float(self.model_weight), {}
        splits = _inner_splits(labels, groups, self.cv_folds, self.random_state)
        if not splits:
            return 0.0, {}
        booster = np.zeros((len(labels), len(MODES)))
        frequencies = np.zeros_like(booster)
        fixed = clone(self).set_params(model_weight=1.0)
        for train, test in splits:
            booster[test] = clone(fixed).fit(features.iloc[train], labels[train]).predict_proba(features.iloc[test])
            frequencies[test] = _frequencies(labels[train])
        truth = np.array([MODES.index(m) for m in labels])
        losses = {w: _mean_log_loss(truth, w * booster + (1 - w) * frequencies) for w in self.WEIGHTS}
        best = min(losses, key=lambda w: (round(losses[w], 12), w))
        return float(best), {float(w): float(v) for w, v in losses.items()}

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities of the four modes, in :data:`MODES` order (the booster is not run at
        weight 0)."""
        features = self._predict_frame(X)
        frequencies = np.tile(self.frequencies_, (len(features), 1))
        if self.model_weight_ == 0.0:
            return frequencies
        booster = pd.DataFrame(self.model_.predict_proba(features), columns=self.model_.classes_)
        booster = booster.reindex(columns=list(MODES), fill_value=0.0).to_numpy()
        return self.model_weight_ * booster + (1.0 - self.model_weight_) * frequencies

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def _mode_labels(y: Sequence[str]) -> np.ndarray:
    labels = np.asarray(y, dtype=object)
    unknown = sorted(set(labels) - set(MODES))
    if unknown:
        raise ModelInputError(f"mode labels must be among {list(MODES)}; got {unknown}")
    return labels


def _frequencies(labels: np.ndarray) -> np.ndarray:
    """Share of each mode among ``labels``, in :data:`MODES` order."""
    counts = pd.Series(labels, dtype=object).value_counts()
    return counts.reindex(list(MODES), fill_value=0).to_numpy(dtype=float) / max(len(labels), 1)


def _inner_splits(labels: np.ndarray, groups, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inner folds: whole groups held out when there are at least two, else shuffled rows."""
    names = None if groups is None else np.asarray(groups, dtype=str)
    n_groups = 0 if names is None else len(np.unique(names))
    if n_groups >= 2:
        return list(GroupKFold(n_splits=min(n_folds, n_groups)).split(labels, labels, names))
    if len(labels) < 2:
        return []
    return list(KFold(min(n_folds, len(labels)), shuffle=True, random_state=seed).split(labels))


def _mean_log_loss(truth: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log of the probability given to the true mode (floored at 1e-9)."""
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(truth)), truth], 1e-9, None))))


class LogisticBaseline(_FrameEstimator):
    """Standardised logistic regression on the same features (the econometric probit analogue);
    missing values are median-imputed with missingness indicators."""

    def __init__(self, C: float = 1.0, max_iter: int = 5000):
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: pd.DataFrame, y: Sequence) -> LogisticBaseline:
        features, target = self._fit_frame(X), _binary_target(y)
        self.classes_ = np.array([0, 1])
        self.pipeline_ = make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(C=self.C, max_iter=self.max_iter),
        ).fit(features, target)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        features = self._predict_frame(X)
        return self.pipeline_.predict_proba(features)


class SpatialNeighborsBaseline(_FrameEstimator):
    """Rank by the belts within ``radius_km``, ties by distance to the nearest belt; the score is
    turned into a probability by a one-feature logistic fit on the training data.

    The panel gives the belts within the radius as a share of the period's national total ``B``,
    which ranks the counties of one period as the count does: two different shares of a period
    differ by at least ``1/B``, and ``B`` is at most the number of counties (2,844 in the 2020
    vintage), so ``1/B`` exceeds the tie-break's :data:`TIE_BREAK`. The link is fitted on the
    standardised score."""

    TIE_BREAK = 1e-4

    def __init__(self, radius_km: int = 100):
        self.radius_km = radius_km

    def _score(self, X: pd.DataFrame) -> np.ndarray:
        share = X[f"belts_within_{self.radius_km}km_share"].fillna(0).to_numpy()
        distance = X["dist_nearest_belt_km_rel"].clip(-50, 50).to_numpy()
        closeness = np.nan_to_num(1.0 / (1.0 + np.exp(distance)), nan=0.0)  # (0, 1), nearer is higher
        return share + closeness * self.TIE_BREAK

    def fit(self, X: pd.DataFrame, y: Sequence) -> SpatialNeighborsBaseline:
        self._fit_frame(X)
        self._check_columns(X)
        self.classes_ = np.array([0, 1])
        score = self._score(X).reshape(-1, 1)
        self.link_ = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(score, _binary_target(y))
        return self

    def _check_columns(self, X: pd.DataFrame) -> None:
        needed = [f"belts_within_{self.radius_km}km_share", "dist_nearest_belt_km_rel"]
        missing = [c for c in needed if c not in X.columns]
        if missing:
            raise ModelInputError(f"spatial_neighbors needs column(s) {missing}")

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        features = self._predict_frame(X)
        return self.link_.predict_proba(self._score(features).reshape(-1, 1))


class PriorBaseline(_FrameEstimator):
    """Every county gets the training base rate."""

    def fit(self, X: pd.DataFrame, y: Sequence) -> PriorBaseline:
        self._fit_frame(X)
        self.classes_ = np.array([0, 1])
        self.rate_ = float(_binary_target(y).mean())
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        features = self._predict_frame(X)
        return np.column_stack([np.full(len(features), 1 - self.rate_), np.full(len(features), self.rate_)])


class MajorityMode(_FrameEstimator):
    """Every county gets the training frequencies of the modes; predicts the most frequent."""

    def fit(self, X: pd.DataFrame, y: Sequence[str], groups: Sequence | None = None) -> MajorityMode:
        """Learn the modes' frequencies (``groups`` is accepted like :class:`LGBMMode`'s, unused)."""
        self._fit_frame(X)
        self.classes_ = np.array(MODES, dtype=object)
        self.frequencies_ = _frequencies(_mode_labels(y))
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        features = self._predict_frame(X)
        return np.tile(self.frequencies_, (len(features), 1))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
