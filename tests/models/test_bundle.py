"""The forecast bundle reproduces the fitted estimators exactly, and checks its requests."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.types import DataType

from features.codes import retired_codes
from features.periods import label_of
from features.taxonomy import MODES
from models.bundle import OUTPUT_COLUMNS, ForecastBundle
from models.estimators import LGBMEmergence, LGBMMode, ModelInputError
from models.served import input_example, signature


def _panel(X: pd.DataFrame, periods: np.ndarray) -> pd.DataFrame:
    """SYNTHETIC panel rows around the features ``X``: 600 counties, one in 50 a belt."""
    return X.assign(
        county_code=[f"{110000 + i % 600 + 1:06d}" for i in range(len(X))],
        county_name="synthetic", province="p", prefecture="q", as_of=periods,
        is_belt_known=(np.arange(len(X)) % 50 == 0), last_label_period=2014,
    )  # fmt: skip


@pytest.fixture(params=[None, 0.1], ids=["booster", "linear-margin"])
def bundle_and_models(synthetic_transitions, tmp_path, request):
    X, y, periods, _ = synthetic_transitions
    emergence = LGBMEmergence(n_estimators=40, linear_margin_C=request.param).fit(X, y)
    modes = np.asarray(MODES, dtype=object)[np.arange(200) % 4]
    mode = LGBMMode(n_estimators=20, model_weight=0.7).fit(X.head(200), modes)
    bundle = ForecastBundle.from_models(emergence, mode, _panel(X, periods), {"horizon": 1})
    return ForecastBundle.load(bundle.save(tmp_path / "bundle")), emergence, mode, X


def test_saved_bundle_reproduces_the_estimators(bundle_and_models):
    bundle, emergence, mode, X = bundle_and_models
    np.testing.assert_allclose(bundle.p_belt(X), emergence.predict_proba(X)[:, 1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(bundle.mode_proba(X), mode.predict_proba(X), rtol=0, atol=1e-12)


def test_a_county_forecast_alone_equals_it_in_a_batch_bit_for_bit(bundle_and_models):
    # a served request of one county and the batch score file must agree to the last digit (the
    # fixture's 4 features are too few for BLAS to sum them differently by batch: the margin's own
    # test, test_a_row_s_margin_does_not_depend_on_the_other_rows_of_the_batch, has 60)
    bundle, _, _, _ = bundle_and_models
    request = bundle.snapshot[["county_code", "as_of"]].reset_index(drop=True)
    batch = bundle.forecast(request, drivers=False)
    for rows in ([0], [7], [3, 4], list(range(10, 23)), list(range(40, 140))):
        part = bundle.forecast(request.iloc[rows], drivers=False)
        for column in ("p_belt", *[f"p_{mode}" for mode in MODES]):
            assert part[column].tolist() == batch[column].iloc[rows].tolist(), (column, rows)


def test_the_mode_model_reads_its_own_features_from_the_snapshot(synthetic_transitions, tmp_path):
    # SYNTHETIC: a mode-only feature (a county's GMV share of its mode) decides the mode
    X, y, periods, _ = synthetic_transitions
    emergence = LGBMEmergence(n_estimators=20).fit(X, y)
    codes = np.arange(len(X)) % 4
    share = "platform_local_specialty_gmv_share"
    with_share = X.assign(**{share: (codes == 3).astype(float)})
    modes = np.asarray(MODES, dtype=object)[codes]
    mode = LGBMMode(n_estimators=30, min_child_samples=5, model_weight=1.0).fit(with_share.head(400), modes[:400])
    panel = _panel(X, periods).assign(**{share: with_share[share]})
    bundle = ForecastBundle.load(
        ForecastBundle.from_models(emergence, mode, panel, {"horizon": 1}).save(tmp_path / "b")
    )
    spec = json.loads((tmp_path / "b" / "bundle.json").read_text(encoding="utf-8"))

    assert (spec["format"], spec["mode_extra"], bundle.features) == (3, [share], list(X.columns))
    positions = np.arange(400, 440)
    np.testing.assert_allclose(
        bundle.mode_proba(X.iloc[positions], positions), mode.predict_proba(with_share.iloc[positions]), atol=1e-12
    )
    np.testing.assert_allclose(
        bundle.mode_proba(with_share.iloc[positions]), mode.predict_proba(with_share.iloc[positions]), atol=1e-12
    )
    with pytest.raises(ModelInputError, match=r"the mode model also needs \['platform_local_specialty_gmv_share'\]"):
        bundle.mode_proba(X.iloc[positions].to_numpy())
    local = bundle.mode_proba(X.iloc[positions], positions)[:, MODES.index("local_specialty")]
    assert (local[codes[positions] == 3] > 0.5).all() and (local[codes[positions] != 3] < 0.5).all()


def test_drivers_read_the_same_contributions_as_the_estimator(bundle_and_models):
    from models.drivers import top_drivers

    bundle, emergence, _, X = bundle_and_models
    rows = X.head(30)
    expected = top_drivers(emergence.contributions(rows).to_numpy(), rows.to_numpy(dtype=float), list(X.columns))
    assert bundle.drivers(rows) == expected


def test_an_uncalibrated_model_with_a_margin_is_served_as_trained(synthetic_transitions, tmp_path):
    X, y, periods, _ = synthetic_transitions
    emergence = LGBMEmergence(n_estimators=30, linear_margin_C=1.0, calibration=None).fit(X, y)
    mode = LGBMMode(n_estimators=10, model_weight=0.0).fit(
        X.head(200), np.asarray(MODES, dtype=object)[np.arange(200) % 4]
    )
    bundle = ForecastBundle.load(
        ForecastBundle.from_models(emergence, mode, _panel(X, periods), {}).save(tmp_path / "b")
    )
    assert bundle.calibration is None and bundle.margin is not None
    np.testing.assert_allclose(bundle.p_belt(X), emergence.predict_proba(X)[:, 1], rtol=0, atol=1e-12)


def test_a_bundle_of_a_newer_format_is_refused(bundle_and_models, tmp_path):
    bundle, _, _, _ = bundle_and_models
    folder = bundle.save(tmp_path / "newer")
    spec = json.loads((folder / "bundle.json").read_text(encoding="utf-8"))
    assert spec["format"] == 2
    spec["format"] = 4
    (folder / "bundle.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(ModelInputError, match=r"format must be an integer from 1 to 3 .*; got 4: the model was saved"):
        ForecastBundle.load(folder)
    for damaged in (True, "2", 0):
        spec["format"] = damaged
        (folder / "bundle.json").write_text(json.dumps(spec), encoding="utf-8")
        with pytest.raises(ModelInputError, match=rf"from 1 to 3 \(what this beltcast reads\); got {damaged!r}$"):
            ForecastBundle.load(folder)


def test_what_if_values_too_large_to_forecast_are_named(bundle_and_models):
    bundle, _, _, _ = bundle_and_models
    request = pd.DataFrame({"county_code": ["110001", "110002"], "viirs_mean": [1.0, 10**400]})
    with pytest.raises(
        ModelInputError, match=r"row 1: viirs_mean must be a finite number; got 10{29}\.\.\.0{10} \(401 digits\)"
    ):
        bundle.forecast(request.astype({"viirs_mean": object}))
    if bundle.margin is None:
        return
    # two huge values whose terms overflow with opposite signs (+10 and -10 log-odds per unit), of
    # features with no upper bound (platform metrics), so that they pass the domain check
    coef = np.zeros_like(bundle.margin.coef)
    coef[:2] = [10 * bundle.margin.scale[0], -10 * bundle.margin.scale[1]]
    names = dict(zip(bundle.features[:2], ["platform_gmv_annual_cny", "platform_active_merchants"], strict=True))
    steep = dataclasses.replace(
        bundle,
        margin=dataclasses.replace(bundle.margin, coef=coef),
        features=[names.get(f, f) for f in bundle.features],
        snapshot=bundle.snapshot.rename(columns=names),
    )
    request = pd.DataFrame({"county_code": ["110001", "110002"]})
    request["platform_gmv_annual_cny"] = [np.nan, 1e308]
    request["platform_active_merchants"] = [np.nan, 1e308]
    match = r"row 1: the what-if value\(s\) of platform_gmv_annual_cny, platform_active_merchants are too large"
    with pytest.raises(ModelInputError, match=match):
        steep.forecast(request)
    assert steep.forecast(request.head(1))["p_belt"].notna().all()


def test_a_damaged_margin_is_named(bundle_and_models, tmp_path):
    bundle, _, _, _ = bundle_and_models
    folder = bundle.save(tmp_path / "damaged")
    spec = json.loads((folder / "bundle.json").read_text(encoding="utf-8"))
    spec["linear_margin"] = {"fill": [0.0], "center": [0.0, 1.0], "scale": [1.0], "coef": [1.0], "intercept": 0.0}
    (folder / "bundle.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(ValueError, match=r"one entry per feature; got \[1, 2, 1, 1\]"):
        ForecastBundle.load(folder)
    del spec["linear_margin"]["intercept"]
    (folder / "bundle.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(ValueError, match="linear_margin must hold fill, center, scale, coef and intercept"):
        ForecastBundle.load(folder)


def test_a_mode_model_at_weight_zero_forecasts_the_frequencies(synthetic_transitions, tmp_path):
    X, y, periods, _ = synthetic_transitions
    emergence = LGBMEmergence(n_estimators=10).fit(X, y)
    modes = np.asarray(MODES, dtype=object)[np.arange(201) % 3]
    mode = LGBMMode(n_estimators=5, model_weight=0.0).fit(X.head(201), modes)
    saved = ForecastBundle.from_models(emergence, mode, _panel(X, periods), {"horizon": 1}).save(tmp_path / "bundle")
    bundle = ForecastBundle.load(saved)
    assert bundle.mode_weight == 0.0
    np.testing.assert_allclose(bundle.mode_proba(X.head(4)), np.tile([1 / 3, 1 / 3, 1 / 3, 0], (4, 1)))
    forecast = bundle.forecast(pd.DataFrame({"county_code": ["110001"]}), drivers=False)
    assert forecast["mode"].tolist() == [MODES[0]]


def test_a_belt_with_a_labelled_mode_keeps_its_label(synthetic_transitions, tmp_path):
    X, y, periods, _ = synthetic_transitions
    emergence = LGBMEmergence(n_estimators=10).fit(X, y)
    mode = LGBMMode(n_estimators=5, model_weight=0.0).fit(
        X.head(201), np.asarray(MODES, dtype=object)[np.arange(201) % 3]
    )
    panel = _panel(X, periods)
    panel["mode"] = pd.Series(pd.NA, index=panel.index, dtype="str")
    panel.loc[panel["county_code"] == "110001", "mode"] = "local_specialty"  # a belt (one in 50 is)
    panel.loc[panel["county_code"] == "110002", "mode"] = "cultural_heritage"  # labelled, not a belt
    saved = ForecastBundle.from_models(emergence, mode, panel, {"horizon": 1}).save(tmp_path / "bundle")
    bundle = ForecastBundle.load(saved)
    forecast = bundle.forecast(pd.DataFrame({"county_code": ["110001", "110002", "110003"]}), drivers=False)
    assert forecast["is_belt"].tolist() == [True, False, False]
    assert forecast["mode"].tolist() == ["local_specialty", MODES[0], MODES[0]]  # the label, else the model
    np.testing.assert_allclose(forecast[[f"p_{m}" for m in MODES]].iloc[0], [1 / 3, 1 / 3, 1 / 3, 0])  # the model's


def test_a_candidate_that_was_a_belt_before_says_when(synthetic_transitions, tmp_path):
    # SYNTHETIC: 110002 is a belt as of 2014 only; 110001 is one throughout, 110003 never
    X, y, periods, _ = synthetic_transitions
    panel = _panel(X, periods)
    panel["last_label_period"] = panel["as_of"]
    panel.loc[(panel["county_code"] == "110002") & (panel["as_of"] == 2014), "is_belt_known"] = True
    emergence = LGBMEmergence(n_estimators=10).fit(X, y)
    mode = LGBMMode(n_estimators=5, model_weight=0.0).fit(
        X.head(200), np.asarray(MODES, dtype=object)[np.arange(200) % 4]
    )
    bundle = ForecastBundle.load(
        ForecastBundle.from_models(emergence, mode, panel, {"horizon": 1}).save(tmp_path / "b")
    )
    request = pd.DataFrame({"county_code": ["110001", "110002", "110003", "110002"], "as_of": [2016, 2016, 2016, 2014]})
    forecast = bundle.forecast(request, drivers=False)
    assert forecast["last_belt"].tolist() == ["", "2014", "", ""]  # 2014's belt was one then: no mark
    assert str(forecast["last_belt"].dtype) == "str"
    assert bundle.forecast(request.head(0))["last_belt"].tolist() == []


def test_forecast_by_code_with_default_and_explicit_year(bundle_and_models):
    bundle, _, _, _ = bundle_and_models
    out = bundle.forecast(pd.DataFrame({"county_code": ["110001", "110002", "110003"], "as_of": [2015, None, "2015"]}))
    assert list(out.columns) == OUTPUT_COLUMNS
    assert out["as_of"].tolist() == [2015, 2016, 2015]
    assert out[[f"p_{m}" for m in MODES]].sum(axis=1).round(9).eq(1).all()


def test_a_quarterly_bundle_takes_and_gives_quarter_labels(synthetic_transitions, tmp_path):
    X, y, periods, _ = synthetic_transitions
    quarters = periods - periods.min() + 8100  # the SYNTHETIC rows as quarters 2025Q1, 2025Q2, ...
    emergence = LGBMEmergence(n_estimators=10).fit(X, y)
    mode = LGBMMode(n_estimators=5, model_weight=0.0).fit(
        X.head(200), np.asarray(MODES, dtype=object)[np.arange(200) % 4]
    )
    bundle = ForecastBundle.from_models(emergence, mode, _panel(X, quarters), {"horizon": 1})
    newest = label_of(int(quarters.max()))
    assert bundle.quarterly and newest.startswith("2025Q")
    out = bundle.forecast(pd.DataFrame({"county_code": ["110001", "110002"], "as_of": ["2025Q1", None]}))
    assert out["as_of"].tolist() == ["2025Q1", newest]
    annual = bundle.forecast(pd.DataFrame({"county_code": ["110001"], "as_of": [8100]}))  # the period index
    assert annual["p_belt"].iloc[0] == out["p_belt"].iloc[0]
    lower = bundle.forecast(pd.DataFrame({"county_code": ["110001"], "as_of": ["2025q1"]}))
    assert lower["as_of"].tolist() == ["2025Q1"]
    for value, message in (
        ("2025Q9", rf"row 0: as_of must be a quarter such as '{newest}'; got '2025Q9'"),
        ("8100", rf"row 0: as_of must be a quarter such as '{newest}'; got '8100'"),  # not a year of it
        ("2025", rf"row 0: as_of must be a quarter such as '{newest}'; got '2025'"),
        ("2024Q4", rf"row 0: as_of must be one of 2025Q1\.\.{newest}; got 2024Q4"),
    ):
        with pytest.raises(ModelInputError, match=message):
            bundle.forecast(pd.DataFrame({"county_code": ["110001"], "as_of": [value]}))
    inputs, outputs = signature(bundle.features, bundle.quarterly).inputs, signature(bundle.features).outputs
    assert inputs.input_types_dict()["as_of"] == DataType.string
    assert outputs.input_types_dict()["as_of"] == DataType.long  # an annual model: years
    assert input_example(bundle).to_dict("records") == [{"county_code": "110001", "as_of": newest}]


def test_an_unknown_code_is_refused_naming_the_code_vintage(synthetic_transitions, tmp_path):
    X, y, periods, _ = synthetic_transitions
    emergence = LGBMEmergence(n_estimators=10).fit(X, y)
    mode = LGBMMode(n_estimators=5, model_weight=0.0).fit(
        X.head(200), np.asarray(MODES, dtype=object)[np.arange(200) % 4]
    )
    bundle = ForecastBundle.from_models(emergence, mode, _panel(X, periods), {"horizon": 1, "target_vintage": 2020})
    with pytest.raises(ModelInputError) as error:
        bundle.forecast(pd.DataFrame({"county_code": ["510124"]}))  # 郫县, 郫都区 510117 since 2016
    assert str(error.value) == (
        "row 0: county_code '510124' is not a county of the panel, whose codes are those of 2020: check the"
        " code; a code of another year (renamed, merged or split since) must be given as its 2020 code"
    )


def test_a_retired_code_is_refused_naming_its_successors(synthetic_transitions):
    X, y, periods, _ = synthetic_transitions
    emergence = LGBMEmergence(n_estimators=10).fit(X, y)
    mode = LGBMMode(n_estimators=5, model_weight=0.0).fit(
        X.head(200), np.asarray(MODES, dtype=object)[np.arange(200) % 4]
    )
    crosswalk = pd.DataFrame(
        {
            "source_year": [2015, 2015, 2015, 2015, 2020, 2020],
            "from_code": ["110001", "510124", "130103", "130103", "110001", "110002"],
            "to_code": ["110001", "110002", "110001", "110002", "110001", "110002"],
            "share": [1.0, 1.0, 0.5, 0.5, 1.0, 1.0],
        }
    )
    meta = {"horizon": 1, "target_vintage": 2020, "successors": retired_codes(crosswalk, 2020)}
    bundle = ForecastBundle.from_models(emergence, mode, _panel(X, periods), meta)
    assert meta["successors"] == {"510124": ["110002"], "130103": ["110001", "110002"]}

    with pytest.raises(ModelInputError) as renamed:
        bundle.forecast(pd.DataFrame({"county_code": ["110003", "510124"]}))
    with pytest.raises(ModelInputError) as split:
        bundle.forecast(pd.DataFrame({"county_code": [130103]}))

    assert str(renamed.value) == (
        "row 1: county_code '510124' is a code of another year, not of the panel's code list (2020): its area is 110002"
        " (synthetic) in 2020; give that code"
    )
    assert str(split.value).startswith(
        "row 0: county_code '130103' is a code of another year, not of the panel's code list (2020)"
    )
    assert str(split.value).endswith(
        "its area is split among 110001 (synthetic), 110002 (synthetic) in 2020; give those codes"
    )


def test_what_if_changes_the_forecast_and_says_so(bundle_and_models):
    bundle, _, _, _ = bundle_and_models
    base = bundle.forecast(pd.DataFrame({"county_code": ["110003"], "as_of": [2016]}))
    what_if = bundle.forecast(
        pd.DataFrame({"county_code": ["110003"], "as_of": [2016], "belts_within_100km_share": [0.11]})
    )
    assert what_if["what_if"].iloc[0] == "belts_within_100km_share"
    assert base["what_if"].iloc[0] == ""
    assert what_if["p_belt"].iloc[0] != base["p_belt"].iloc[0]


@pytest.mark.parametrize(
    ("request_frame", "message"),
    [
        ({"county_code": ["999999"]}, r"row 0: county_code '999999' is not a county of the panel"),
        ({"county_code": ["1100"]}, r"row 0: county_code must be 6 digits; got '1100'"),
        (
            {"county_code": ["110001"], "as_of": ["last year"]},
            r"row 0: as_of must be an integer year; got 'last year'",
        ),
        (
            {"county_code": ["110001"], "as_of": [1999]},
            r"row 0: as_of must be one of 2014\.\.2016; got 1999",
        ),
        (  # 110001 as of 102015 has the key of 110002 as of 2015: the period is checked first
            {"county_code": ["110002", "110001"], "as_of": [2015, 102015]},
            r"row 1: as_of must be one of 2014\.\.2016; got 102015",
        ),
        (
            {"county_code": ["110003"], "as_of": [-97985]},
            r"row 0: as_of must be one of 2014\.\.2016; got -97985",
        ),
        (
            {"county_code": ["110001"], "as_of": [np.iinfo(np.int64).max]},
            rf"row 0: as_of must be one of 2014\.\.2016; got {np.iinfo(np.int64).max}",
        ),
        (  # as a float it would wrap around to -2**63 as an int64
            {"county_code": ["110001", "110002"], "as_of": [2015, 1e19]},
            r"row 1: as_of must be one of 2014\.\.2016; got 1e\+19",
        ),
        (  # an integer beyond int64, as JSON may carry it
            {"county_code": ["110001"], "as_of": pd.Series([99999999999999999999], dtype=object)},
            r"row 0: as_of must be one of 2014\.\.2016; got 99999999999999999999",
        ),
        (  # beyond float64 too: no float() of it
            {"county_code": ["110001"], "as_of": pd.Series([10**400], dtype=object)},
            r"row 0: as_of must be one of 2014\.\.2016; got 1000000000",
        ),
        (  # an unsigned column (JSON integers between 2**63 and 2**64) does not wrap around
            {"county_code": ["110001"], "as_of": pd.Series([2**63 + 5], dtype="uint64")},
            r"row 0: as_of must be one of 2014\.\.2016; got 9223372036854775813",
        ),
        ({"county_code": ["110001"], "gdp": [1.0]}, r"unknown column\(s\) \['gdp'\]"),
        ({"as_of": [2015]}, r"must have a county_code column"),
        (
            {"county_code": ["110001"], "viirs_mean": ["bright"]},
            r"row 0: viirs_mean must be a finite number; got 'bright'",
        ),
        (
            {"county_code": ["110001", "110002"], "viirs_mean": [1.0, float("inf")]},
            r"row 1: viirs_mean must be a finite number; got inf",
        ),
    ],
)
def test_bad_requests_name_the_row_and_field(bundle_and_models, request_frame, message):
    bundle, _, _, _ = bundle_and_models
    with pytest.raises(ModelInputError, match=message):
        bundle.forecast(pd.DataFrame(request_frame))


@pytest.mark.parametrize(
    "codes",
    [
        pd.Series(["110001", " 110002", "110003"], dtype="str"),
        pd.Series([110001, 110002, 110003], dtype="int64"),
        pd.Series([110001.0, 110002.0, 110003.0]),
        pd.Series(["110001", 110002, 110003.0], dtype=object),
    ],
    ids=["str", "int", "float", "object"],
)
def test_codes_of_every_dtype_give_the_same_forecast(bundle_and_models, codes):
    bundle, _, _, _ = bundle_and_models
    expected = bundle.forecast(pd.DataFrame({"county_code": ["110001", "110002", "110003"], "as_of": [2015] * 3}))
    got = bundle.forecast(pd.DataFrame({"county_code": codes, "as_of": [2015.0, 2015.0, 2015.0]}))
    pd.testing.assert_frame_equal(got, expected)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("11000١", r"row 1500: county_code must be 6 digits; got '11000١'"),  # an Arabic-Indic digit
        (None, r"row 1500: county_code must be 6 digits; got a missing value"),
        ("1100011", r"row 1500: county_code must be 6 digits; got '1100011'"),
    ],
)
def test_a_bad_code_deep_in_a_large_request_is_named_by_its_row(bundle_and_models, bad, message):
    bundle, _, _, _ = bundle_and_models
    codes = pd.Series([f"{110001 + i % 600:06d}" for i in range(3000)], dtype="str")
    codes.iloc[1500] = bad
    with pytest.raises(ModelInputError, match=message):
        bundle.forecast(pd.DataFrame({"county_code": codes}))


def test_a_bad_code_of_a_numeric_column_is_named_as_it_was_sent(bundle_and_models):
    bundle, _, _, _ = bundle_and_models
    for codes, given in (([110001.0, 330503.5], "330503.5"), ([True, False], "False")):
        with pytest.raises(ModelInputError, match=rf"row 1: county_code must be 6 digits; got {given}$"):
            bundle.forecast(pd.DataFrame({"county_code": np.array(codes)}))


def test_an_object_sent_in_a_cell_is_shown_as_the_json_it_came_as(bundle_and_models):
    bundle, _, _, _ = bundle_and_models
    cells = {"county_code": {"code": "110001"}, "as_of": {"year": 2015}, "viirs_mean": ["1", 2]}
    shown = {"county_code": '{"code": "110001"}', "as_of": '{"year": 2015}', "viirs_mean": '["1", 2]'}
    for column, cell in cells.items():
        request = pd.DataFrame({"county_code": ["110001", "110002"], column: [None, None]}, dtype=object)
        request.at[1, column] = cell
        with pytest.raises(ModelInputError, match=rf"row 1: {column} must be .*; got {re.escape(shown[column])}"):
            bundle.forecast(request)


def test_a_fractional_year_in_a_float_column_is_named_by_its_row(bundle_and_models):
    bundle, _, _, _ = bundle_and_models
    request = pd.DataFrame({"county_code": ["110001"] * 5, "as_of": [2015.0, np.nan, 2015.0, 2015.5, 2016.0]})
    with pytest.raises(ModelInputError, match=r"row 3: as_of must be an integer year; got 2015.5"):
        bundle.forecast(request)


def test_what_if_names_every_replaced_indicator_per_row(bundle_and_models):
    bundle, _, _, _ = bundle_and_models
    request = pd.DataFrame(
        {
            "county_code": ["110001", "110002", "110003"],
            "belts_within_100km_share": [0.04, np.nan, 0.01],
            "viirs_mean": [np.nan, np.nan, 2.0],
        }
    )
    assert bundle.forecast(request)["what_if"].tolist() == [
        "belts_within_100km_share",
        "",
        "belts_within_100km_share, viirs_mean",
    ]


def test_compiled_prediction_equals_lightgbm_and_is_cached(bundle_and_models, monkeypatch, tmp_path):
    from models import bundle as bundle_module
    from models import compiled

    bundle, emergence, mode, X = bundle_and_models
    cache = tmp_path / "cache"
    monkeypatch.setattr(bundle, "compiled_cache", cache)
    monkeypatch.setattr(bundle_module, "COMPILE_ROWS", 100)
    np.testing.assert_allclose(bundle.p_belt(X), emergence.predict_proba(X)[:, 1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(bundle.mode_proba(X), mode.predict_proba(X), rtol=0, atol=1e-12)
    objects = sorted(cache.glob("*.o"))
    assert len(objects) == 2  # the emergence raw score and the mode probabilities
    assert all(isinstance(f, compiled.CompiledForest) for f in bundle._compiled_forests.values())

    calls = []
    monkeypatch.setattr(compiled.CompiledForest, "_compile_into_cache", lambda self, raw: calls.append(raw))
    compiled.CompiledForest(bundle.emergence, raw_score=True, cache_dir=cache)
    assert calls == []  # a verified object in the cache is loaded, not compiled again
    objects[0].write_bytes(objects[0].read_bytes()[:-16] + b"\0" * 16)
    monkeypatch.undo()
    damaged_raw = objects[0].name.endswith("-raw.o")
    again = compiled.CompiledForest(
        bundle.emergence if damaged_raw else bundle.mode, raw_score=damaged_raw, cache_dir=cache
    )
    expected = bundle.emergence.predict(X.to_numpy(), raw_score=True) if damaged_raw else bundle.mode.predict(X)
    np.testing.assert_allclose(again.predict(X.to_numpy()), expected, rtol=0, atol=1e-12)


def test_compiled_prediction_can_be_turned_off(bundle_and_models, monkeypatch, tmp_path):
    from models import bundle as bundle_module
    from models import compiled
    from models.served import compiled_cache

    bundle, emergence, _, X = bundle_and_models
    assert compiled.compile_or_none(bundle.emergence, raw_score=True, cache_dir=None) is None
    assert compiled_cache({}) == compiled.default_cache_dir()
    assert compiled_cache({"compiled_cache_dir": "~/elsewhere"}) == Path("~/elsewhere").expanduser()
    assert compiled_cache({"compiled": False, "compiled_cache_dir": str(tmp_path)}) is None
    with pytest.raises(ModelInputError, match=r"compiled_cache_dir must be a folder path .*; got False"):
        compiled_cache({"compiled_cache_dir": False})
    with pytest.raises(ModelInputError, match="model_config compiled must be true or false; got 'no'"):
        compiled_cache({"compiled": "no"})
    monkeypatch.setattr(bundle, "compiled_cache", None)
    monkeypatch.setattr(bundle_module, "COMPILE_ROWS", 100)
    monkeypatch.setattr(compiled, "available", lambda: pytest.fail("looked for the compiler with compiling off"))
    np.testing.assert_allclose(bundle.p_belt(X), emergence.predict_proba(X)[:, 1], rtol=0, atol=1e-12)
    assert {forest for (_, _, cache), forest in bundle._compiled_forests.items() if cache is None} == {None}


def test_a_bundle_saved_without_the_mode_blend_uses_the_booster_alone(bundle_and_models, tmp_path):
    bundle, _, _, X = bundle_and_models
    folder = bundle.save(tmp_path / "older")
    spec = json.loads((folder / "bundle.json").read_text(encoding="utf-8"))
    del spec["mode_weight"], spec["mode_frequencies"]
    (folder / "bundle.json").write_text(json.dumps(spec), encoding="utf-8")
    older = ForecastBundle.load(folder)
    booster = bundle.mode.predict(X.to_numpy(dtype=float))[:, [bundle.mode_classes.index(m) for m in MODES]]
    np.testing.assert_allclose(older.mode_proba(X), booster, rtol=0, atol=1e-12)


def test_a_mode_model_trained_on_one_mode_forecasts_it(synthetic_transitions, tmp_path):
    X, y, periods, _ = synthetic_transitions
    emergence = LGBMEmergence(n_estimators=10).fit(X, y)
    mode = LGBMMode(n_estimators=5, model_weight=1.0).fit(X.head(30), ["cultural_heritage"] * 30)
    saved = ForecastBundle.from_models(emergence, mode, _panel(X, periods), {"horizon": 1}).save(tmp_path / "bundle")
    bundle = ForecastBundle.load(saved)
    np.testing.assert_allclose(bundle.mode_proba(X.head(3)), np.tile([0, 1, 0, 0], (3, 1)))
    np.testing.assert_allclose(bundle.mode_proba(X.head(3)), mode.predict_proba(X.head(3)))


def test_a_forecast_shares_no_memory_with_the_bundle(bundle_and_models):
    bundle, _, _, _ = bundle_and_models
    request = pd.DataFrame(
        {"county_code": ["110001", "110002"], "as_of": [2015, 2016], "belts_within_100km_share": [0.2, None]}
    )
    first = bundle.forecast(request)
    expected = first.copy()
    sentinels = {"as_of": 1999, "is_belt": not bool(first["is_belt"].iloc[0]), "in_sample": True}
    for column in OUTPUT_COLUMNS:  # overwrite every column of the output in place
        value = sentinels.get(column, -1.0 if column.startswith("p_") else "overwritten")
        first.loc[:, column] = value
        assert not first[column].equals(expected[column]), column

    pd.testing.assert_frame_equal(bundle.forecast(request), expected)


def test_drivers_date_a_value_older_than_its_period(synthetic_transitions, tmp_path):
    """A source's value carried into a later period says its year; a current or what-if value does not."""
    X, y, periods, _ = synthetic_transitions
    X = X.rename(columns={"manufacturing_share": "co2_share"})  # the learnable signal, now of the co2 source
    emergence = LGBMEmergence(n_estimators=40).fit(X, y)
    mode = LGBMMode(n_estimators=10).fit(X.head(200), np.asarray(MODES, dtype=object)[np.arange(200) % 4])
    panel = _panel(X, periods).assign(staleness_co2=np.where(periods == 2016, 3.0, 0.0), staleness_census=1.0)
    bundle = ForecastBundle.load(ForecastBundle.from_models(emergence, mode, panel, {}).save(tmp_path / "b"))
    assert "staleness_co2" in bundle.snapshot and "staleness_census" not in bundle.snapshot  # no census feature

    latest = panel[panel["as_of"] == 2016].nlargest(5, "co2_share")["county_code"].tolist()
    stale = bundle.forecast(pd.DataFrame({"county_code": latest, "as_of": 2016}))["top_drivers"]
    assert all(re.search(r"co2 \d+ % \(2013 data\)", text) for text in stale), stale.tolist()
    earlier = panel[panel["as_of"] == 2015].nlargest(5, "co2_share")["county_code"].tolist()
    current = bundle.forecast(pd.DataFrame({"county_code": earlier, "as_of": 2015}))["top_drivers"]
    what_if = bundle.forecast(pd.DataFrame({"county_code": latest, "as_of": 2016, "co2_share": 0.49}))["top_drivers"]
    for text in [*current, *what_if]:
        assert "co2" in text and "data)" not in text, text
    assert bundle.drivers(X.head(3)) == bundle.drivers(X.head(3).to_numpy())  # without positions: undated
