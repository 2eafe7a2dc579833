"""A linear base margin for the emergence booster.

A standardised L2 logistic regression is fitted first; the booster then starts from its log-odds
(LightGBM's ``init_score``), so the trees fit what the linear model misses. With a hundred or so
new belts per year, the linear part carries what a few trees cannot estimate well (an even
increase with manufacturing, with nearby belts), and the trees add thresholds, interactions and
what a missing value says.

A missing value takes the feature's training median in the margin (its term is the median's):
a missingness term of its own would be a coefficient on a handful of rows (on the public data,
the 14 training rows without night lights, 7 counties in two years) or a stand-in for the year (two-year growth is
missing in the first year of every series), and standardising such a rare flag gives it a large
weight per county.

Unlike the trees, the linear part goes on beyond the training range. Held-out provinces have
counties beyond it: on the public data's inner folds, the tuned model ranked them better with the
margin unbounded (AP 0.380 over 5 seeds) than with each feature clipped to its training range
(0.364). A what-if value far outside the panel's moves the log-odds in proportion; ``terms``
shows by how much.

Coefficients may be given signs (``signs``: +1 at least 0, -1 at most 0): the exposure features
move together (the shares of belts within 50, 100 and 200 km), and an unconstrained fit gives
some of them negative coefficients that only offset the others; a what-if that raises one of
them alone then lowers the log-odds. With the signs, the penalised likelihood is maximised under
those bounds (L-BFGS-B, the same objective as scikit-learn's).

The margin is kept as numbers (no pickle): the bundle stores it in JSON and applies it with the
same code as the estimator, so the served probability equals the trained model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
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


LOGIT_BLOCK_ROWS = 4096  # rows summed together, one column after the other (LinearMargin.logit)


@dataclass(frozen=True)
class LinearMargin:
    """Log-odds ``intercept + sum_j coef_j * (x_j - center_j) / scale_j``, a missing ``x_j``
    replaced by ``fill_j``.

    Attributes
    ----------
    fill : ndarray
        The value a missing feature takes (its training median; 0 for a feature with no value at fit).
    center, scale : ndarray
        Standardisation of the features.
    coef : ndarray
        Coefficients on the standardised features.
    intercept : float
    """

    fill: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(
        cls, values: np.ndarray, y: np.ndarray, C: float, signs: np.ndarray | None = None, max_iter: int = 5000
    ) -> LinearMargin:
        """Fit the logistic regression with inverse regularisation strength ``C`` on ``values``;
        with ``signs`` (one of -1, 0, +1 per feature), the coefficients of +1 features are at
        least 0 and those of -1 features at most 0."""
        C = check_strength(C)  # both classes in y: checked where the model is fitted (LGBMEmergence.fit)
        values = np.asarray(values, dtype=float)
        infinite = np.flatnonzero(np.isinf(values).any(axis=0))
        if infinite.size:
            raise MarginError(
                f"feature column(s) {infinite.tolist()} hold infinite values; expected finite numbers or NaN"
            )
        imputer = SimpleImputer(strategy="median", keep_empty_features=True)
        scaler, logistic = StandardScaler(), LogisticRegression(C=C, max_iter=max_iter)
        make_pipeline(imputer, scaler, logistic).fit(values, y)
        coef, intercept = np.asarray(logistic.coef_[0], dtype=float), float(logistic.intercept_[0])
        if signs is not None:
            signs = np.asarray(signs)
            if signs.shape != (values.shape[1],) or not np.isin(signs, (-1, 0, 1)).all():
                raise MarginError(f"signs must hold -1, 0 or 1 for each of {values.shape[1]} features; got {signs!r}")
            if (coef * signs < 0).any():  # the unconstrained optimum breaks a sign: refit within the bounds
                standard = scaler.transform(imputer.transform(values))
                coef, intercept = _signed_fit(standard, np.asarray(y, dtype=float), C, signs, coef, intercept, max_iter)
        return cls(
            fill=np.asarray(imputer.statistics_, dtype=float),
            center=np.asarray(scaler.mean_, dtype=float),
            scale=np.asarray(scaler.scale_, dtype=float),
            coef=coef,
            intercept=intercept,
        )

    @property
    def n_features(self) -> int:
        return len(self.fill)

    def _checked(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        if values.ndim != 2 or values.shape[1] != self.n_features:
            raise MarginError(f"values must have {self.n_features} feature columns; got shape {values.shape}")
        return values

    def _inputs(self, values: np.ndarray) -> np.ndarray:
        """``values`` as the regression reads them: a missing value is ``fill``."""
        values = self._checked(values)
        return np.where(np.isnan(values), self.fill, values)

    @property
    def _weights(self) -> np.ndarray:
        return self.coef / self.scale

    def terms(self, values: np.ndarray) -> np.ndarray:
        """Each feature's part of the log-odds, per row, relative to the training mean (as SHAP
        values are relative to the expected score)."""
        return (self._inputs(values) - self.center) * self._weights

    def logit(self, values: np.ndarray) -> np.ndarray:
        """The margin's log-odds for every row of ``values`` (features in the fitted order): the
        sum of :meth:`terms` and the intercept (the log-odds at the training mean).

        A row's log-odds does not depend on the other rows of the batch: the features' products are
        added one feature after the other, in the fitted order, for every row alike, where a matrix
        product (BLAS) sums in an order that changes with the number of rows and the memory
        layout, so that a county forecast alone differed from the same county in a batch in the
        last digits. One column at a time, a batch needs no copy of its values."""
        values = self._checked(values)
        weights = self._weights
        total = np.zeros(len(values))
        with np.errstate(over="ignore", invalid="ignore"):  # a NaN from overflow is the caller's to name
            for start in range(0, len(values), LOGIT_BLOCK_ROWS):  # a block's columns stay in the cache
                block, sums = values[start : start + LOGIT_BLOCK_ROWS], total[start : start + LOGIT_BLOCK_ROWS]
                for j, weight in enumerate(weights):
                    column = block[:, j]
                    sums += np.where(np.isnan(column), self.fill[j], column) * weight
            return total + (self.intercept - self.center @ weights)

    def to_dict(self) -> dict:
        return {
            "fill": self.fill.tolist(),
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
                center=np.asarray(spec["center"], dtype=float),
                scale=np.asarray(spec["scale"], dtype=float),
                coef=np.asarray(spec["coef"], dtype=float),
                intercept=float(spec["intercept"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise MarginError(f"linear_margin must hold fill, center, scale, coef and intercept; {error}") from None
        sizes = [len(v) for v in (margin.fill, margin.center, margin.scale, margin.coef)]
        if len(set(sizes)) != 1:
            raise MarginError(
                f"linear_margin's fill, center, scale and coef must have one entry per feature; got {sizes}"
            )
        return margin


def _signed_fit(
    X: np.ndarray, y: np.ndarray, C: float, signs: np.ndarray, coef: np.ndarray, intercept: float, max_iter: int
) -> tuple[np.ndarray, float]:
    """Minimise ``0.5 |w|^2 + C * sum(log-loss)`` (the intercept unpenalised, as scikit-learn's
    L2 logistic regression) with ``w_j >= 0`` where ``signs`` is +1 and ``w_j <= 0`` where -1,
    starting from the unconstrained ``coef`` clipped to the bounds."""
    k = X.shape[1]

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = X @ w[:k] + w[k]
        residual = expit(z) - y
        loss = 0.5 * w[:k] @ w[:k] + C * np.sum(np.logaddexp(0.0, z) - y * z)
        return loss, np.r_[w[:k] + C * (X.T @ residual), C * residual.sum()]

    bounds = [(0.0, None) if s > 0 else (None, 0.0) if s < 0 else (None, None) for s in signs] + [(None, None)]
    start = np.r_[
        np.where(signs > 0, np.maximum(coef, 0.0), np.where(signs < 0, np.minimum(coef, 0.0), coef)), intercept
    ]
    options = {"maxiter": max_iter, "maxfun": 4 * max_iter}
    result = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds, options=options)
    if not result.success:
        raise MarginError(
            f"the sign-constrained margin did not converge ({result.nit} iterations of at most {max_iter}):"
            f" {result.message}"
        )
    return np.asarray(result.x[:k], dtype=float), float(result.x[k])
