"""What a forecast request may hold: what-if values within each feature's domain, and no rows at all."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server
from scipy.special import logit

import models
from features.panel import feature_columns
from features.platform import default_platform_rule
from features.taxonomy import MODES
from models.bundle import OUTPUT_COLUMNS, ForecastBundle, bad_rows_message, feature_domain
from models.estimators import LGBMEmergence, LGBMMode, ModelInputError
from models.served import BUNDLE_ARTIFACT, SERVED_COLUMNS, columnar, input_example, signature
from pipelines.build import platform_features

COUNTIES = 600


def _transitions() -> tuple[pd.DataFrame, np.ndarray]:
    """SYNTHETIC rows (seeded; not real data) with features named as the panel's, one per domain
    family, and a signal in the belt shares, manufacturing and the nearest belt's distance."""
    rng = np.random.default_rng(11)
    n = 2 * COUNTIES
    distance = np.log(rng.uniform(5, 800, n))
    X = pd.DataFrame(
        {
            "belts_within_50km_share": rng.poisson(0.5, n) / 80,
            "belts_within_100km_share": rng.poisson(1.0, n) / 80,
            "dist_nearest_belt_km_rel": distance - np.median(distance),
            "census_manufacturing_share_rel": rng.uniform(-0.1, 0.5, n),
            "census_share_age_65p_rel": rng.normal(0, 0.03, n),
            "co2_growth_1y_rel": rng.normal(0, 0.2, n),
            "poverty_county": (rng.random(n) < 0.3).astype(float),
            "taobao_villages": rng.poisson(0.3, n).astype(float),
            "centroid_lat": rng.uniform(18, 50, n),
            "platform_gmv_growth_yoy": rng.uniform(-0.5, 1.0, n),
        }
    )
    log_odds = -4 + 40 * X["belts_within_100km_share"] + 4 * X["census_manufacturing_share_rel"]
    log_odds -= 0.6 * X["dist_nearest_belt_km_rel"]
    return X, (rng.random(n) < 1 / (1 + np.exp(-log_odds))).to_numpy().astype(int)


def _panel(X: pd.DataFrame, periods: list[int]) -> pd.DataFrame:
    """SYNTHETIC panel rows around ``X``: 600 counties in two periods, one in 50 a belt."""
    return X.assign(
        county_code=[f"{110000 + i % COUNTIES + 1:06d}" for i in range(len(X))],
        county_name="synthetic", province="p", prefecture="q", as_of=np.repeat(periods, COUNTIES),
        is_belt_known=(np.arange(len(X)) % 50 == 0), last_label_period=periods[0],
    )  # fmt: skip


@pytest.fixture(scope="module")
def fitted() -> tuple[LGBMEmergence, LGBMMode, pd.DataFrame]:
    """The emergence model with a linear margin and the mode model at weight 0 (both as on the
    public data), and their SYNTHETIC training rows."""
    X, y = _transitions()
    emergence = LGBMEmergence(n_estimators=20, linear_margin_C=0.1).fit(X, y)
    modes = np.asarray(MODES, dtype=object)[np.arange(200) % 4]
    mode = LGBMMode(n_estimators=5, model_weight=0.0).fit(X.head(200), modes)
    return emergence, mode, X


@pytest.fixture(scope="module")
def bundle(fitted, tmp_path_factory) -> ForecastBundle:
    emergence, mode, X = fitted
    bundle = ForecastBundle.from_models(emergence, mode, _panel(X, [2015, 2016]), {"horizon": 1})
    return ForecastBundle.load(bundle.save(tmp_path_factory.mktemp("bundle")))


@pytest.mark.parametrize(
    ("column", "low", "high"),
    [
        ("belts_within_50km_share", 0, 1),  # shares of the national total
        ("villages_within_200km_share", 0, 1),
        ("belts_same_province_share", 0, 1),
        ("census_manufacturing_share_rel", -1, 1),  # a share minus the median county's
        ("census_share_age_65p_rel", -1, 1),
        ("pref_tertiary_share_rel", -1, 1),
        ("tudigong_ghsl_urban_share_rel", -1, 1),
        ("census_education_years_rel", -25, 25),  # years of schooling minus the median county's
        ("tudigong_education_years_rel", -25, 25),
        ("viirs_mean_rel", -50, 50),  # log ratios to the median county
        ("census_population_rel", -50, 50),
        ("tudigong_ghsl_density_rel", -50, 50),
        ("dist_nearest_belt_km_rel", -50, 50),
        ("co2_growth_2y_rel", -50, 50),  # log growth minus the median county's
        ("pref_gdp_growth_rel", -50, 50),  # growth minus the median county's
        ("census_household_size_rel", -50, 50),  # persons per household minus the median county's
        ("taobao_villages", 0, np.inf),
        ("taobao_towns", 0, np.inf),
        ("poverty_county", 0, 1),
        ("centroid_lat", 3, 54),
        ("centroid_lon", 73, 136),
        ("dist_capital_km", 0, 20_040),
        ("dist_prefecture_seat_km", 0, 20_040),
        ("area_km2", 0, 9.6e6),
        ("terrain_relief", 0, np.inf),
        ("platform_gmv_annual_cny", 0, np.inf),
        ("platform_active_merchants", 0, np.inf),
        ("platform_gmv_growth_yoy", -1, np.inf),
        ("viirs_mean", -np.inf, np.inf),  # no convention: any finite number
    ],
)
def test_each_feature_family_has_its_domain(column, low, high):
    domain = feature_domain(column)
    assert (domain.low, domain.high) == (low, high)


def test_the_domains_read_in_words():
    assert feature_domain("belts_within_50km_share").expected == "a number from 0 to 1 (a share of a total)"
    assert feature_domain("taobao_villages").expected == "a whole number >= 0 (a count)"
    assert feature_domain("poverty_county").expected == "0 or 1 (the poverty-county flag)"
    assert feature_domain("platform_active_merchants").holds(np.array([50.5])).all()  # divided on a split
    assert feature_domain("viirs_mean").expected == "a finite number"


def test_legitimate_platform_metrics_lie_in_their_domains():
    metrics = pd.DataFrame(
        {
            "county_code": ["371721"] * 4,
            "period": [8100, 8101, 8102, 8103],
            "gmv_annual_cny": [0.0, 2.1e4, 1.2e10, 3e13],
            "active_merchants": [0.0, 1.0, 20_367.0, 4e6],
            "gmv_growth_yoy": [-1.0, -0.16, 0.53, 5e6],  # all GMV lost .. growth from a tiny base
        }
    )
    long = platform_features(metrics, default_platform_rule())  # the panel's platform_ features
    assert set(long["variable"]) == {"platform_gmv_annual_cny", "platform_active_merchants", "platform_gmv_growth_yoy"}
    for name, value in zip(long["variable"], long["value"], strict=True):
        domain = feature_domain(name)
        assert domain.low <= value <= domain.high, (name, value)


@pytest.mark.realdata
@pytest.mark.slow
def test_every_feature_of_the_real_panel_has_a_domain_holding_its_values(built_settings):
    panel = pd.read_parquet(built_settings.data.features_dir / "panel.parquet")
    features = feature_columns(panel)
    assert len(features) == 53
    unbounded = [c for c in features if (feature_domain(c).low, feature_domain(c).high) == (-np.inf, np.inf)]
    assert unbounded == []
    outside = {
        c: (panel[c].min(), panel[c].max())
        for c in features
        if not panel[c].dropna().between(feature_domain(c).low, feature_domain(c).high).all()
    }
    assert outside == {}


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("belts_within_50km_share", 2, r"must be a number from 0 to 1 \(a share of a total\); got 2$"),
        ("belts_within_100km_share", -5, r"must be a number from 0 to 1 \(a share of a total\); got -5$"),
        ("belts_within_100km_share", 1e308, r"must be a number from 0 to 1 \(a share of a total\); got 1e\+308$"),
        (
            "dist_nearest_belt_km_rel",
            -1e300,
            r"must be a number from -50 to 50 \(a log ratio or a difference to the median county\); got -1e\+300$",
        ),
        ("co2_growth_1y_rel", 50.5, r"must be a number from -50 to 50 .*; got 50.5$"),
        (
            "census_manufacturing_share_rel",
            1.5,
            r"must be a number from -1 to 1 \(a share minus the median .*; got 1.5$",
        ),
        ("census_share_age_65p_rel", -1.01, r"must be a number from -1 to 1 .*; got -1.01$"),
        ("poverty_county", 2, r"must be 0 or 1 \(the poverty-county flag\); got 2$"),
        ("poverty_county", 0.5, r"must be 0 or 1 \(the poverty-county flag\); got 0.5$"),
        ("taobao_villages", -1, r"must be a whole number >= 0 \(a count\); got -1$"),
        ("taobao_villages", 2.5, r"must be a whole number >= 0 \(a count\); got 2.5$"),
        ("centroid_lat", 60.0, r"must be a number from 3 to 54 \(degrees north, in China\); got 60.0$"),
        ("platform_gmv_growth_yoy", -1.5, r"must be a finite number >= -1 \(a growth rate; .*\); got -1.5$"),
        ("belts_within_50km_share", float("inf"), r"must be a number from 0 to 1 \(a share of a total\); got inf$"),
        ("belts_within_50km_share", "half", r"must be a number from 0 to 1 \(a share of a total\); got 'half'$"),
    ],
)
def test_a_what_if_outside_its_domain_is_named_by_row_field_range_and_value(bundle, column, value, message):
    request = pd.DataFrame({"county_code": ["110001", "110002"], column: pd.Series([None, value], dtype=object)})
    with pytest.raises(ModelInputError, match=rf"^row 1: {column} {message}"):
        bundle.forecast(request)


def test_what_ifs_at_the_bounds_of_their_domains_are_forecast(bundle):
    bounds = {
        "belts_within_50km_share": [0.0, 1.0],
        "census_manufacturing_share_rel": [-1.0, 1.0],
        "dist_nearest_belt_km_rel": [-50.0, 50.0],
        "poverty_county": [0.0, 1.0],
        "centroid_lat": [3.0, 54.0],
        "taobao_villages": [0.0, 1e6],
        "platform_gmv_growth_yoy": [-1.0, 1e6],
    }
    out = bundle.forecast(pd.DataFrame({"county_code": ["110001", "110002"], **bounds}))
    assert out["p_belt"].between(0, 1).all()
    assert out["what_if"].tolist() == [", ".join(bounds)] * 2


def test_a_what_if_beyond_the_panel_but_in_the_domain_moves_the_log_odds_in_proportion(bundle, fitted):
    _, _, X = fitted
    assert X["dist_nearest_belt_km_rel"].max() < 3  # 10, 20, 30 are far beyond the training rows
    request = pd.DataFrame({"county_code": ["110001"] * 3, "dist_nearest_belt_km_rel": [10.0, 20.0, 30.0]})
    log_odds = logit(bundle.forecast(request, drivers=False)["p_belt"].to_numpy())
    step = np.diff(log_odds)
    assert step[0] < -1  # the margin goes on: farther from the belts, less likely
    np.testing.assert_allclose(step[1], step[0], rtol=1e-9)


@pytest.mark.parametrize(
    "request_frame",
    [
        pd.DataFrame({"county_code": []}),
        pd.DataFrame({"county_code": pd.Series([], dtype="str"), "as_of": pd.Series([], dtype="int64")}),
        pd.DataFrame({"county_code": pd.Series([], dtype=object), "belts_within_100km_share": []}),
    ],
    ids=["codes-only", "typed-with-as-of", "what-if"],
)
@pytest.mark.parametrize("drivers", [True, False])
def test_an_empty_request_gives_no_rows_with_the_columns_and_dtypes_of_a_forecast(bundle, request_frame, drivers):
    expected = bundle.forecast(pd.DataFrame({"county_code": ["110001"]}), drivers=drivers).dtypes
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lgb.Booster, "predict", _refuse)
        out = bundle.forecast(request_frame, drivers=drivers)
    assert out.shape == (0, len(OUTPUT_COLUMNS))
    assert list(out.columns) == OUTPUT_COLUMNS
    pd.testing.assert_series_equal(out.dtypes, expected)


def _refuse(*args, **kwargs):
    raise AssertionError("the booster must not run for a request of no rows")


def test_an_empty_request_to_a_quarterly_bundle_has_quarter_labels(fitted):
    emergence, mode, X = fitted
    bundle = ForecastBundle.from_models(emergence, mode, _panel(X, [8100, 8101]), {"horizon": 1})
    assert bundle.quarterly
    expected = bundle.forecast(pd.DataFrame({"county_code": ["110001"]}))
    out = bundle.forecast(pd.DataFrame({"county_code": [], "as_of": []}))
    assert expected["as_of"].tolist() == ["2025Q2"]
    assert out.empty
    pd.testing.assert_series_equal(out.dtypes, expected.dtypes)


def test_an_empty_request_is_still_checked(bundle):
    with pytest.raises(ModelInputError, match=r"request has unknown column\(s\) \['gdp'\]"):
        bundle.forecast(pd.DataFrame({"county_code": [], "gdp": []}))


def test_request_problems_are_the_rows_forecast_names_without_raising(bundle):
    request = pd.DataFrame(
        {"county_code": ["110001", "999999", "110002", "12345"], "poverty_county": [0.0, None, 2.0, None]}
    )

    problems = bundle.request_problems(request)

    with pytest.raises(ModelInputError) as refused:
        bundle.forecast(request)
    assert bad_rows_message(problems) == str(refused.value)
    assert [line.split(":")[0] for line in str(refused.value).splitlines()] == ["row 1", "row 2", "row 3"]
    assert bad_rows_message(bundle.request_problems(request.head(1))) is None
    with pytest.raises(ModelInputError, match="unknown column"):  # a problem of the whole request
        bundle.request_problems(request.assign(gdp=1.0))


@pytest.fixture(scope="module")
def served_path(bundle, tmp_path_factory) -> str:
    """The bundle saved as the MLflow model the server serves (models from code), as ``train`` logs it."""
    root = tmp_path_factory.mktemp("served")
    mlflow.pyfunc.save_model(
        path=str(root / "model"),
        python_model=str(Path(models.__file__).parent / "pyfunc_entry.py"),
        artifacts={BUNDLE_ARTIFACT: str(bundle.save(root / "bundle"))},
        signature=signature(bundle.features, bundle.quarterly),
        input_example=input_example(bundle),
    )
    return str(root / "model")


@pytest.fixture(scope="module")
def served(served_path) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(served_path)


def test_the_served_model_says_the_version_it_is_served_as(served_path):
    """The server tells the model its registered version (``served_as``); every row then says it,
    as a score file's ``model_version`` does. Told nothing, the rows say ``""``."""
    request = pd.DataFrame({"county_code": ["110001", "110002"]})
    told, untold = mlflow.pyfunc.load_model(served_path), mlflow.pyfunc.load_model(served_path)
    told.unwrap_python_model().served_as("7")

    assert told.predict(request)["model_version"].tolist() == ["7", "7"]
    assert untold.predict(request)["model_version"].tolist() == ["", ""]
    assert told.predict(request.head(0))["model_version"].tolist() == []
    assert list(told.predict(request).columns) == SERVED_COLUMNS
    with pytest.raises(ValueError, match=r"model_version must be a registered version number.*got 'v7'"):
        told.unwrap_python_model().served_as("v7")


def _invoke(
    model: mlflow.pyfunc.PyFuncModel, columns: list[str], data: list[list]
) -> scoring_server.InvocationsResponse:
    """What the scoring server does with a JSON body, without the HTTP server."""
    body = json.dumps({"dataframe_split": {"columns": columns, "data": data}})
    return scoring_server.invocations(body, "application/json", model, model.metadata.get_input_schema())


def _post(model: mlflow.pyfunc.PyFuncModel, payload: dict) -> list[dict]:
    """The predictions the scoring server answers ``payload`` with (any of its JSON formats)."""
    response = scoring_server.invocations(
        json.dumps(payload), "application/json", model, model.metadata.get_input_schema()
    )
    assert response.status == 200, response.response
    return json.loads(response.response)["predictions"]


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_split": {"columns": ["county_code"], "data": []}},
        {"inputs": {"county_code": []}},
    ],
    ids=["split", "inputs"],
)
def test_the_served_model_answers_an_empty_request_with_no_predictions(served, payload):
    assert _post(served, payload) == []
    one = json.loads(_invoke(served, ["county_code"], [["110001"]]).response)["predictions"]
    assert list(one[0]) == SERVED_COLUMNS


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_records": []},  # no rows and no columns: as if every column had been misnamed
        {"instances": []},
        {"dataframe_split": {"columns": ["code", "year"], "data": [["110001", 2016]]}},
    ],
    ids=["records", "instances", "misnamed"],
)
def test_a_request_without_county_code_is_refused_even_of_no_rows(served, payload):
    # MLflow drops the columns outside the signature before the model sees the frame: were
    # county_code optional, a batch of misnamed columns would come back as no rows, without an error
    with pytest.raises(MlflowException, match=r"Model is missing inputs \['county_code'\]"):
        _post(served, payload)


def test_the_served_model_reads_integer_codes_as_read_csv_gives_them(served):
    frame = pd.DataFrame({"county_code": [110001, 110002], "as_of": [2016, 2016]})
    got = served.predict(frame)
    assert got["county_code"].tolist() == ["110001", "110002"]


def test_a_dict_of_lists_is_one_row_per_value(served):
    # MLflow reads a dict whose columns are all of any type as one row of lists
    assert served.predict({"county_code": ["110001", "110002"]})["county_code"].tolist() == ["110001", "110002"]
    assert _post(served, {"inputs": {"county_code": ["110002"]}})[0]["county_code"] == "110002"
    one_row_of_lists = pd.DataFrame({"county_code": [["110001", "110002"]], "as_of": [[2016]]})
    with pytest.raises(ModelInputError, match=r"of one length; got lengths \{'county_code': 2, 'as_of': 1\}"):
        columnar(one_row_of_lists)


def test_the_served_model_leaves_the_drivers_out_when_asked(served):
    frame = pd.DataFrame({"county_code": ["110001", "110002"], "as_of": [2016, 2016]})
    with_drivers = served.predict(frame)
    without = served.predict(frame, params={"drivers": False})

    assert (with_drivers["top_drivers"] != "").all() and (without["top_drivers"] == "").all()
    pd.testing.assert_frame_equal(without.drop(columns="top_drivers"), with_drivers.drop(columns="top_drivers"))
    answered = _post(served, {"dataframe_split": {"columns": ["county_code"], "data": [["110001"]]},
                              "params": {"drivers": False}})  # fmt: skip
    assert answered[0]["top_drivers"] == ""


def test_the_served_model_names_a_what_if_outside_its_domain(served):
    with pytest.raises(MlflowException, match=r"row 0: belts_within_50km_share must be a number from 0 to 1") as err:
        _invoke(served, ["county_code", "belts_within_50km_share"], [["110001", 2]])
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"


def test_a_served_request_may_give_as_of_for_some_rows_only(served):
    # as a long, MLflow could not cast the column with a missing value and answered 400
    rows = [
        {"county_code": "110001", "as_of": 2015},
        {"county_code": "110001"},
        {"county_code": "110001", "as_of": None},
    ]
    got = _post(served, {"dataframe_records": rows})
    assert [row["as_of"] for row in got] == [2015, 2016, 2016]


@pytest.mark.parametrize(
    ("as_of", "message"),
    [
        (2015.5, "row 0: as_of must be an integer year; got 2015.5"),  # as a long, MLflow made it 2015
        ("2015x", "row 0: as_of must be an integer year; got '2015x'"),
        (102015, r"row 0: as_of must be one of 2015\.\.2016; got 102015"),  # the key of 110002 as of 2015
    ],
)
def test_the_served_model_names_a_bad_year(served, as_of, message):
    with pytest.raises(MlflowException, match=message) as err:
        _post(served, {"dataframe_records": [{"county_code": "110001", "as_of": as_of}]})
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"


def test_the_served_model_names_a_missing_county_code(served):
    with pytest.raises(MlflowException, match=r"Model is missing inputs \['county_code'\]"):
        _post(served, {"dataframe_records": [{"as_of": 2016}]})
    with pytest.raises(ModelInputError, match=r"request must have a county_code column; got columns \['as_of'\]"):
        served.unwrap_python_model().bundle.forecast(pd.DataFrame({"as_of": [2016]}))


def test_every_bad_row_of_a_request_is_named_in_one_error(bundle):
    request = pd.DataFrame(
        {
            "county_code": ["110001", "11O001", "999999", "110003", "110004"],
            "as_of": [2016, 2016, 2016, 2017, 2016],
            "poverty_county": [None, 2.0, None, None, 0.5],
        }
    )
    with pytest.raises(ModelInputError) as err:
        bundle.forecast(request)
    assert str(err.value).splitlines() == [
        "row 1: county_code must be 6 digits; got '11O001'",
        "row 1: poverty_county must be 0 or 1 (the poverty-county flag); got 2.0",
        "row 2: county_code '999999' is not a county of the panel",
        "row 3: as_of must be one of 2015..2016; got 2017",
        "row 4: poverty_county must be 0 or 1 (the poverty-county flag); got 0.5",
    ]


@pytest.mark.parametrize("rows", [25, 3000], ids=["small", "large"])  # 3000: the vectorised code check
def test_a_request_of_many_bad_rows_names_the_first_20_and_counts_the_others(bundle, rows):
    codes = pd.Series(["110001"] * rows, dtype="str")
    codes.iloc[-25:] = [f"11000{i}x" for i in range(25)]
    with pytest.raises(ModelInputError) as err:
        bundle.forecast(pd.DataFrame({"county_code": codes}))
    lines = str(err.value).splitlines()
    assert len(lines) == 21
    assert lines[0] == f"row {rows - 25}: county_code must be 6 digits; got '110000x'"
    assert lines[19] == f"row {rows - 6}: county_code must be 6 digits; got '1100019x'"
    assert lines[20] == "and 5 more bad rows"
