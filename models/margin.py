"""A linear base margin for the emergence booster.

A standardised L2 logistic regression (median-imputed, with a missingness term for every feature
that has missing values at fit) is fitted first; the booster then starts from its log-odds
(LightGBM's ``init_score``), so the trees fit what the linear model misses. With a hundred or so
new belts per year, the linear part carries what a few trees cannot estimate well (an even
increase with manufacturing, with nearby belts), and the trees add thresholds and interactions.

The margin is kept as numbers (no pickle): the bundle stores it in JSON and applies it with the
same code as the estimator, so the served probability equals the trained model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from features.errors import BeltcastError


class MarginError(BeltcastError, ValueError):
    """A linear margin that cannot be fitted or read."""


def check_strength(C: object) -> float:
    """``C`` as a float, or an error naming ``linear_margin_C`` when it is not a positive number."""
    if isinstance(C, bool) or not isinstance(C, (int, float, np.integer, np.floating)) or not C > 0:
        raise MarginError(f"linear_margin_C must be a positive number or None; got {C!r}")
    return float(C)


@dataclass(frozen=True)
class LinearMargin:
    """Log-odds ``intercept + sum_j terms_j(x)`` of a standardised logistic regression.

    Attributes
    ----------
    fill : ndarray
        The value a missing feature takes (its training median).
    flagged : ndarray of int
        Features whose missingness has its own term (those with missing values at fit).
    center, scale : ndarray
        Standardisation of the features, then of the missingness flags of ``flagged``.
    coef : ndarray
        Coefficients on the standardised features, then flags.
    intercept : float
    """

    fill: np.ndarray
    flagged: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, values: np.ndarray, y: np.ndarray, C: float, max_iter: int = 5000) -> LinearMargin:
        """Fit the logistic regression with inverse regularisation strength ``C`` on ``values``."""
        C = check_strength(C)
        imputer = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
        scaler, logistic = StandardScaler(), LogisticRegression(C=C, max_iter=max_iter)
        make_pipeline(imputer, scaler, logistic).fit(values, y)
        flagged = imputer.indicator_.features_ if imputer.indicator_ is not None else np.zeros(0, dtype=int)
        return cls(
            fill=np.asarray(imputer.statistics_, dtype=float),
            flagged=np.asarray(flagged, dtype=int),
            center=np.asarray(scaler.mean_, dtype=float),
            scale=np.asarray(scaler.scale_, dtype=float),
            coef=np.asarray(logistic.coef_[0], dtype=float),
            intercept=float(logistic.intercept_[0]),
        )

    @property
    def n_features(self) -> int:
        return len(self.fill)

    def terms(self, values: np.ndarray) -> np.ndarray:
        """Each feature's part of the log-odds, per row: its value's term and, for a flagged
        feature, its missingness's term, both relative to the training mean (as SHAP values are
        relative to the expected score)."""
        values = np.asarray(values, dtype=float)
        if values.ndim != 2 or values.shape[1] != self.n_features:
            raise MarginError(f"values must have {self.n_features} feature columns; got shape {values.shape}")
        n = self.n_features
        missing = np.isnan(values)
        weights = self.coef / self.scale
        terms = (np.where(missing, self.fill, values) - self.center[:n]) * weights[:n]
        if len(self.flagged):
            terms[:, self.flagged] += (missing[:, self.flagged] - self.center[n:]) * weights[n:]
        return terms

    def logit(self, values: np.ndarray) -> np.ndarray:
        """The margin's log-odds for every row of ``values`` (features in the fitted order)."""
        # the terms are centred on the training mean, where the log-odds are the intercept
        return self.terms(values).sum(axis=1) + self.intercept

    def to_dict(self) -> dict:
        return {
            "fill": self.fill.tolist(),
            "flagged": self.flagged.tolist(),
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
        }

    @classmethod
    def from_dict(cls, spec: dict) -> LinearMargin:
        try:
            margin = cls(
                fill=np.asarray(spec["fill"], dtype=float),
                flagged=np.asarray(spec["flagged"], dtype=int),
                center=np.asarray(spec["center"], dtype=float),
                scale=np.asarray(spec["scale"], dtype=float),
                coef=np.asarray(spec["coef"], dtype=float),
                intercept=float(spec["intercept"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise MarginError(
                f"linear_margin must hold fill, flagged, center, scale, coef, intercept; {error}"
            ) from None
        width = margin.n_features + len(margin.flagged)
        if not (len(margin.center) == len(margin.scale) == len(margin.coef) == width):
            raise MarginError(
                f"linear_margin's center, scale and coef must have {width} entries"
                f" ({margin.n_features} features + {len(margin.flagged)} flags); got"
                f" {len(margin.center)}, {len(margin.scale)}, {len(margin.coef)}"
            )
        return margin
