"""The estimators' scikit-learn contract, determinism and calibration (synthetic fixtures)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from models.estimators import (
    MODES,
    LGBMEmergence,
    LGBMMode,
    LogisticBaseline,
    MajorityMode,
    ModelInputError,
    PriorBaseline,
    SpatialNeighborsBaseline,
)


@pytest.mark.parametrize(
    "estimator",
    [
        LGBMEmergence(n_estimators=30),
        LogisticBaseline(),
        SpatialNeighborsBaseline(),
        PriorBaseline(),
    ],
)
def test_binary_estimators_fit_predict_and_clone(estimator, synthetic_transitions):
    X, y, _, _ = synthetic_transitions
    fitted = clone(estimator).fit(X, y)
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 2)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert list(fitted.feature_names_in_) == list(X.columns)
    with pytest.raises(NotFittedError):
        clone(estimator).predict_proba(X)


def test_same_seed_gives_identical_scores(synthetic_transitions):
    X, y, _, _ = synthetic_transitions
    first = LGBMEmergence(n_estimators=50, random_state=3).fit(X, y).predict_proba(X)
    second = LGBMEmergence(n_estimators=50, random_state=3).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, second)


def test_fit_does_not_modify_its_input(synthetic_transitions):
    X, y, _, _ = synthetic_transitions
    before = X.copy()
    LGBMEmergence(n_estimators=20).fit(X, y)
    pd.testing.assert_frame_equal(X, before)


def test_contributions_add_up_to_the_raw_score(synthetic_transitions):
    X, y, _, _ = synthetic_transitions
    model = LGBMEmergence(n_estimators=40, calibration=None).fit(X, y)
    contributions = model.contributions(X.head(5))
    raw = model.booster_.predict(X.head(5), raw_score=True)
    bias = model.booster_.predict(X.head(5), pred_contrib=True)[:, -1]
    np.testing.assert_allclose(contributions.sum(axis=1) + bias, raw, rtol=1e-6)
    assert list(contributions.columns) == list(X.columns)


def test_bad_inputs_are_named(synthetic_transitions):
    X, y, _, _ = synthetic_transitions
    with pytest.raises(ModelInputError, match="X must be a pandas DataFrame; got ndarray"):
        LGBMEmergence().fit(X.to_numpy(), y)
    with pytest.raises(ModelInputError, match=r"y must be 0/1; got values \[0, 1, 2\]"):
        LGBMEmergence().fit(X, np.resize([0, 1, 2], len(X)))
    with pytest.raises(ModelInputError, match="calibration must be 'sigmoid' or None; got 'beta'"):
        LGBMEmergence(calibration="beta").fit(X, y)
    fitted = LogisticBaseline().fit(X, y)
    with pytest.raises(ModelInputError, match=r"lacks feature column\(s\) \['viirs_mean'\]"):
        fitted.predict_proba(X.drop(columns="viirs_mean"))


def test_mode_model_always_returns_the_four_modes(synthetic_transitions):
    X, _, _, _ = synthetic_transitions
    X = X.head(80)
    y = np.array(["industrial_transformation", "local_specialty"] * 40, dtype=object)
    model = LGBMMode(n_estimators=20).fit(X, y)
    proba = model.predict_proba(X)
    assert proba.shape == (80, 4)
    assert np.all(proba[:, [MODES.index("national_brand"), MODES.index("cultural_heritage")]] == 0)
    assert set(model.predict(X)) <= {"industrial_transformation", "local_specialty"}
    majority = MajorityMode().fit(X, np.array(["local_specialty"] * 50 + ["national_brand"] * 30))
    assert majority.predict(X.head(2)).tolist() == ["local_specialty", "local_specialty"]
    np.testing.assert_allclose(majority.predict_proba(X.head(1))[0], [0.375, 0, 0, 0.625])


def test_mode_model_rejects_an_unknown_mode(synthetic_transitions):
    X, _, _, _ = synthetic_transitions
    with pytest.raises(ModelInputError, match=r"mode labels must be among .*got \['tourism'\]"):
        LGBMMode().fit(X.head(4), ["tourism", "local_specialty", "local_specialty", "local_specialty"])
