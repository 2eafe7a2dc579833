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
        LGBMEmergence(n_estimators=30, linear_margin_C=0.1),
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


def test_a_linear_margin_is_the_logistic_regression_the_booster_starts_from(synthetic_transitions):
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, _, _ = synthetic_transitions
    model = LGBMEmergence(n_estimators=30, linear_margin_C=0.1, calibration=None).fit(X, y)
    logistic = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(C=0.1, max_iter=5000),
    ).fit(X.to_numpy(), y)
    unseen = X.head(40).copy()  # inside the training range, where the margin is the regression
    unseen.iloc[:10, 2] = np.nan  # missing where training had no missing values
    assert np.isnan(unseen.iloc[:, 3]).any()  # and where it had some
    margin = model.margin_.logit(unseen.to_numpy())
    np.testing.assert_allclose(margin, logistic.decision_function(unseen.to_numpy()), rtol=0, atol=1e-9)
    raw = model.booster_.predict(unseen, raw_score=True) + margin
    np.testing.assert_allclose(model.predict_proba(unseen)[:, 1], 1 / (1 + np.exp(-raw)), rtol=0, atol=1e-12)
    # contributions: the trees' SHAP values plus the margin's terms add up to the log-odds
    bias = model.booster_.predict(unseen, pred_contrib=True)[:, -1] + model.margin_.intercept
    np.testing.assert_allclose(model.contributions(unseen).sum(axis=1) + bias, raw, rtol=0, atol=1e-9)
    # the trees fit what the margin misses: they differ from a booster fitted without it
    alone = LGBMEmergence(n_estimators=30, calibration=None).fit(X, y)
    assert not np.allclose(
        alone.booster_.predict(unseen, raw_score=True), model.booster_.predict(unseen, raw_score=True)
    )


def test_a_row_s_margin_does_not_depend_on_the_other_rows_of_the_batch():
    # SYNTHETIC: 60 features as the public panel has, in the column-major layout a DataFrame gives
    from models.margin import LinearMargin

    rng = np.random.default_rng(3)
    n_features = 60
    margin = LinearMargin(
        fill=rng.normal(size=n_features),
        center=rng.normal(size=n_features),
        scale=rng.uniform(0.5, 2.0, n_features),
        coef=rng.normal(size=n_features),
        intercept=-3.1,
    )
    values = np.asfortranarray(rng.normal(size=(3000, n_features)))
    values[rng.uniform(size=values.shape) < 0.05] = np.nan
    batch = margin.logit(values)
    alone = np.array([margin.logit(values[[row]])[0] for row in range(0, 3000, 7)])
    in_pairs = np.array([margin.logit(values[row : row + 2])[0] for row in range(0, 3000, 7)])
    assert alone.tolist() == batch[::7].tolist()
    assert in_pairs.tolist() == batch[::7].tolist()


def test_a_calibrated_margin_model_refits_the_margin_in_every_calibration_fold(synthetic_transitions, monkeypatch):
    from models import margin

    X, y, _, _ = synthetic_transitions
    rows = []
    original = margin.LinearMargin.fit.__func__
    monkeypatch.setattr(
        margin.LinearMargin,
        "fit",
        classmethod(lambda cls, v, t, C, **kw: rows.append(len(v)) or original(cls, v, t, C, **kw)),
    )
    LGBMEmergence(n_estimators=20, linear_margin_C=1.0, calibration_folds=3).fit(X, y)
    assert len(rows) == 4 and max(rows) == len(X) and all(r < len(X) for r in rows[:3])


def test_the_margin_is_linear_beyond_the_training_range(synthetic_transitions):
    X, y, _, _ = synthetic_transitions
    margin = LGBMEmergence(n_estimators=5, linear_margin_C=1.0, calibration=None).fit(X, y).margin_
    top = X.head(3).to_numpy(dtype=float, copy=True)
    top[:, 2] = X.iloc[:, 2].max()
    beyond = top.copy()
    beyond[:, 2] += 1.0
    assert margin.coef[2] != 0
    np.testing.assert_allclose(margin.logit(beyond) - margin.logit(top), margin.coef[2] / margin.scale[2], atol=1e-12)
    np.testing.assert_allclose(margin.terms(beyond).sum(axis=1) + margin.intercept, margin.logit(beyond), atol=1e-12)


def test_a_margin_needs_both_classes(synthetic_transitions):
    X, _, _, _ = synthetic_transitions
    with pytest.raises(ModelInputError, match=r"linear_margin_C needs both classes .*; got only y = \[0\]"):
        LGBMEmergence(n_estimators=5, linear_margin_C=1.0, calibration=None).fit(X, np.zeros(len(X), dtype=int))


@pytest.mark.parametrize("C", [0, -1.0, "0.1", True])
def test_a_bad_margin_strength_is_named(synthetic_transitions, C):
    X, y, _, _ = synthetic_transitions
    with pytest.raises(ValueError, match=f"linear_margin_C must be a positive number or None; got {C!r}"):
        LGBMEmergence(n_estimators=5, linear_margin_C=C).fit(X, y)


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


def test_calibration_folds_are_capped_by_the_rarer_class(synthetic_transitions):
    X, y, _, _ = synthetic_transitions
    rows = np.r_[np.flatnonzero(y == 1)[:6], np.flatnonzero(y == 0)[:300]]  # 6 belts: few, as on a small platform
    model = LGBMEmergence(n_estimators=10, calibration_folds=10).fit(X.iloc[rows], y[rows])
    assert model.calibration_folds_ == 6
    assert np.isfinite(model.predict_proba(X)[:, 1]).all()
    assert LGBMEmergence(n_estimators=10, calibration_folds=3).fit(X.iloc[rows], y[rows]).calibration_folds_ == 3
    with pytest.raises(ModelInputError, match=r"at least 2 rows of each class .* got 1 of the rarer"):
        LGBMEmergence(n_estimators=10).fit(X.iloc[rows[5:]], y[rows[5:]])


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


def _mode_fixture(n: int = 120, seed: int = 0):
    """SYNTHETIC belts: ``signal`` decides the mode, ``noise`` does not, ``province`` groups."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"signal": rng.uniform(size=n), "noise": rng.uniform(size=n)})
    modes = np.where(X["signal"] > 0.5, "national_brand", "industrial_transformation").astype(object)
    provinces = np.arange(n) % 6
    return X, modes, provinces


def test_mode_weight_follows_the_signal_in_the_features():
    X, modes, provinces = _mode_fixture()
    learned = LGBMMode().fit(X, modes, groups=provinces)
    assert learned.model_weight_ >= 0.8
    assert np.mean(learned.predict(X) == modes) > 0.9

    rng = np.random.default_rng(1)
    shuffled = rng.permutation(modes)  # no signal left: the frequencies are the forecast
    blind = LGBMMode().fit(X, shuffled, groups=provinces)
    assert blind.model_weight_ <= 0.5 < learned.model_weight_
    assert blind.cv_log_loss_[blind.model_weight_] == min(blind.cv_log_loss_.values())
    assert blind.cv_log_loss_[blind.model_weight_] < blind.cv_log_loss_[1.0]


def test_mode_weight_holds_out_whole_groups():
    """A feature that only tells provinces apart predicts modes across rows of one province, not
    in a province the model has not seen."""
    rng = np.random.default_rng(0)
    provinces = np.repeat(np.arange(8), 12)
    modes = np.where(provinces % 2 == 0, "national_brand", "industrial_transformation").astype(object)
    modes[rng.choice(len(modes), 20, replace=False)] = "cultural_heritage"
    X = pd.DataFrame({"province_id": provinces * 7.0 % 8, "noise": rng.uniform(size=len(modes))})
    by_rows = LGBMMode().fit(X, modes)
    by_provinces = LGBMMode().fit(X, modes, groups=provinces)
    assert by_rows.model_weight_ >= 0.8
    assert by_provinces.model_weight_ < by_rows.model_weight_


def test_fixed_mode_weight_blends_booster_and_frequencies():
    X, modes, _ = _mode_fixture()
    booster = LGBMMode(model_weight=1.0).fit(X, modes)
    frequencies = LGBMMode(model_weight=0.0).fit(X, modes)
    half = LGBMMode(model_weight=0.5).fit(X, modes)
    assert booster.cv_log_loss_ == {}
    np.testing.assert_allclose(frequencies.predict_proba(X.head(3)), np.tile(frequencies.frequencies_, (3, 1)))
    np.testing.assert_allclose(
        half.predict_proba(X), 0.5 * booster.predict_proba(X) + 0.5 * frequencies.predict_proba(X), atol=1e-12
    )
    np.testing.assert_allclose(half.predict_proba(X).sum(axis=1), 1.0)
    for bad in (1.5, -0.1, "auto", None, float("nan")):
        with pytest.raises(ModelInputError, match=rf"model_weight must be a number in \[0, 1\] or 'cv'; got {bad!r}"):
            LGBMMode(model_weight=bad).fit(X, modes)
    with pytest.raises(ModelInputError, match=r"cv_folds must be an integer >= 2; got 1"):
        LGBMMode(cv_folds=1).fit(X, modes)
    with pytest.raises(ModelInputError, match=r"groups must have one value per row of X \(120\); got 3"):
        LGBMMode().fit(X, modes, groups=[1, 2, 3])


@pytest.mark.parametrize(
    "labels, groups",
    [
        (
            ["national_brand"] * 16 + ["industrial_transformation"] * 24,
            np.repeat(np.arange(5), 8),
        ),  # one mode per group
        (["national_brand"] * 2 + ["cultural_heritage"], None),  # 3 rows
        (["local_specialty"] * 10, np.arange(10) % 2),  # one mode
        (["national_brand"], None),  # one row
    ],
)
def test_mode_model_fits_when_folds_lose_a_mode(labels, groups):
    """Inner folds (and the data itself) may hold a single mode: the fit still works, and a lone
    mode gets all the probability."""
    X = pd.DataFrame({"a": np.linspace(0, 1, len(labels)), "b": np.arange(len(labels)) % 3})
    labels = np.array(labels, dtype=object)
    model = LGBMMode(n_estimators=10).fit(X, labels, groups=groups)
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    if len(set(labels)) == 1:
        assert model.predict(X).tolist() == labels.tolist()
    fixed = LGBMMode(n_estimators=10, model_weight=1.0).fit(X, labels, groups=groups)
    np.testing.assert_allclose(fixed.predict_proba(X).sum(axis=1), 1.0)


def test_spatial_neighbors_ranks_by_belt_count_then_distance():
    # One period of 2,844 counties with 2,844 belts: shares differ by 1/2,844, the least possible.
    rng = np.random.default_rng(0)
    n, total = 2844, 2844
    count = rng.integers(0, 6, n).astype(float)
    distance = rng.uniform(1, 3000, n)
    logged = np.log(distance)
    X = pd.DataFrame(
        {"belts_within_100km_share": count / total, "dist_nearest_belt_km_rel": logged - np.median(logged)}
    )
    X.loc[:9, "dist_nearest_belt_km_rel"] = np.nan  # no belt known to these rows: last among their count
    y = (rng.random(n) < 0.01 + 0.02 * count).astype(int)
    scores = SpatialNeighborsBaseline().fit(X, y).predict_proba(X)[:, 1]
    known = np.where(X["dist_nearest_belt_km_rel"].isna(), np.inf, distance)
    expected = np.lexsort((known, -count))  # most belts first, then nearest
    np.testing.assert_array_equal(np.argsort(-scores, kind="stable"), expected)


def _offsetting_exposure(seed: int = 3, n: int = 3000) -> tuple[pd.DataFrame, np.ndarray]:
    """SYNTHETIC rows where two shares of belts nearby move together and the label rises with one
    and falls with the other: an unconstrained model gives the second a negative effect."""
    rng = np.random.default_rng(seed)
    near = rng.gamma(1.0, 0.01, n)
    X = pd.DataFrame(
        {
            "belts_within_100km_share": near,
            "belts_within_50km_share": 0.5 * near + rng.gamma(1.0, 0.002, n),
            "manufacturing_share": rng.uniform(0, 0.5, n),
        }
    )
    logit = -4 + 400 * X["belts_within_100km_share"] - 500 * X["belts_within_50km_share"] + 3 * X["manufacturing_share"]
    return X, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def test_exposure_signs_bound_the_margin_to_the_penalised_optimum_within_them():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from models.margin import LinearMargin

    X, y = _offsetting_exposure()
    values = X.to_numpy(dtype=float)
    free = LinearMargin.fit(values, y, 1.0)
    assert free.coef[1] < 0  # the unconstrained fit offsets the 100 km share with the 50 km one
    signed = LinearMargin.fit(values, y, 1.0, signs=np.array([1, 1, 0]))
    assert signed.coef[1] == 0.0 and signed.coef[0] > 0
    # at the bound, the rest is the L2 logistic regression on the other features alone
    standard = StandardScaler().fit_transform(values)[:, [0, 2]]
    alone = LogisticRegression(C=1.0, max_iter=5000, tol=1e-10).fit(standard, y)
    np.testing.assert_allclose(signed.coef[[0, 2]], alone.coef_[0], atol=1e-4)
    assert signed.intercept == pytest.approx(alone.intercept_[0], abs=1e-4)
    # signs the unconstrained fit already keeps change nothing
    kept = LinearMargin.fit(values, y, 1.0, signs=np.sign(free.coef).astype(int))
    np.testing.assert_array_equal(kept.coef, free.coef)


def test_signs_of_the_wrong_shape_are_named():
    from models.margin import LinearMargin, MarginError

    X, y = _offsetting_exposure()
    with pytest.raises(MarginError, match=r"signs must hold -1, 0 or 1 for each of 3 features; got array\(\[1, 2\]\)"):
        LinearMargin.fit(X.to_numpy(dtype=float), y, 1.0, signs=np.array([1, 2]))


@pytest.mark.parametrize("C", [None, 0.1], ids=["booster", "linear-margin"])
def test_a_what_if_that_adds_belts_nearby_never_lowers_p_belt(C):
    X, y = _offsetting_exposure()
    rows = X.sample(40, random_state=0).reset_index(drop=True)
    grid = np.linspace(0.0, 0.2, 21)

    def curves(model: LGBMEmergence) -> np.ndarray:
        out = []
        for column in ("belts_within_100km_share", "belts_within_50km_share"):
            for value in grid:
                out.append(model.predict_proba(rows.assign(**{column: value}))[:, 1])
        return np.stack(out).reshape(2, len(grid), len(rows))

    monotone = curves(LGBMEmergence(n_estimators=40, linear_margin_C=C).fit(X, y))
    assert (np.diff(monotone, axis=1) >= -1e-12).all()
    free = curves(LGBMEmergence(n_estimators=40, linear_margin_C=C, monotone_exposure=False).fit(X, y))
    assert (np.diff(free, axis=1) < -1e-6).any()  # without the constraints, some what-ifs go down


def test_exposure_signs_name_the_exposure_features():
    from models.estimators import exposure_signs

    columns = ["belts_within_50km_share", "villages_within_200km_share", "belts_same_province_share",
               "dist_nearest_belt_km_rel", "dist_capital_km", "census_manufacturing_share_rel"]  # fmt: skip
    assert exposure_signs(columns) == (1, 1, 1, -1, 0, 0)


def test_a_lightgbm_without_the_raw_score_the_calibration_is_fitted_on_is_named(monkeypatch):
    # before 4.7 scikit-learn fitted the sigmoid on predict_proba, which the bundle applies to the raw score
    import lightgbm as lgb

    monkeypatch.delattr(lgb.LGBMClassifier, "decision_function")
    X = pd.DataFrame({"a": np.arange(40.0)})
    with pytest.raises(ModelInputError, match=r"LGBMClassifier.decision_function, from 4.7\); install lightgbm>=4.7"):
        LGBMEmergence(linear_margin_C=None, n_estimators=5).fit(X, np.arange(40) % 2)
