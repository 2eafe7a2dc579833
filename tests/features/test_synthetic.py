"""The SYNTHETIC platform-metrics generator, on the real county universe of 2020."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.platform import read_platform_metrics, rule_metrics
from features.synthetic import (
    COLUMNS,
    PRODUCTS,
    SyntheticDataError,
    synthetic_platform_metrics,
    write_synthetic,
)
from features.taxonomy import MODES, load_taxonomy

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def synthetic(code_history) -> pd.DataFrame:
    return synthetic_platform_metrics(code_history, seed=0)


def test_the_same_seed_gives_the_same_frame_and_another_seed_another(code_history):
    first = synthetic_platform_metrics(code_history, seed=7, n_counties=60)
    pd.testing.assert_frame_equal(first, synthetic_platform_metrics(code_history, seed=7, n_counties=60))
    assert not first.equals(synthetic_platform_metrics(code_history, seed=8, n_counties=60))


def test_every_row_is_marked_synthetic(synthetic):
    assert synthetic.columns.tolist() == COLUMNS
    assert synthetic["is_synthetic"].eq(True).all()


def test_it_covers_the_real_counties_of_the_target_vintage_and_the_quarters_asked(code_history, synthetic):
    assert set(synthetic["county_code"]) == set(code_history.county_units(2020)["county_code"])
    assert synthetic["county_code"].nunique() == 2844
    periods = sorted(synthetic["period"].unique())
    assert (periods[0], periods[-1], len(periods)) == ("2022Q1", "2025Q3", 15)


def test_a_sample_keeps_n_counties(code_history):
    frame = synthetic_platform_metrics(code_history, first="2024Q1", last="2024Q4", n_counties=25)
    assert frame["county_code"].nunique() == 25


def test_every_category_maps_to_a_mode_and_all_modes_occur(synthetic):
    taxonomy = load_taxonomy()
    assert {taxonomy.mode_of(p) for p in PRODUCTS} == set(MODES)
    assert set(synthetic["category"]) <= set(PRODUCTS)


def test_values_are_plausible_non_negative_numbers(synthetic):
    assert (synthetic["gmv_cny"] > 0).all()
    assert (synthetic["active_merchants"] >= 0).all()
    assert synthetic["active_merchants"].dtype == np.int64


def test_fourth_quarters_peak(synthetic):
    quarter = synthetic["period"].str[-1]
    by_quarter = synthetic[synthetic["period"].str[:4] == "2024"].groupby(quarter)["gmv_cny"].sum()
    assert by_quarter.idxmax() == "4"
    assert by_quarter.idxmin() == "1"


def test_a_minority_of_counties_is_large_and_grows_faster(code_history, tmp_path):
    path = write_synthetic(tmp_path / "platform_synthetic.csv", code_history)
    table = rule_metrics(read_platform_metrics(path, code_history))
    last = table[table["period"] == table["period"].max()]
    large = last["gmv_annual_cny"] >= 1e8
    assert 0.02 < large.mean() < 0.25
    assert last.loc[large, "gmv_growth_yoy"].median() > last.loc[~large, "gmv_growth_yoy"].median() + 0.1


def test_gmv_clusters_by_prefecture(code_history, synthetic):
    prefecture = code_history.county_units(2020).set_index("county_code")["prefecture_code"]
    year = synthetic[synthetic["period"].str[:4] == "2024"].groupby("county_code")["gmv_cny"].sum()
    log_gmv = np.log10(year)
    group_mean = log_gmv.groupby(prefecture.reindex(log_gmv.index)).transform("mean")
    explained = 1 - ((log_gmv - group_mean) ** 2).sum() / ((log_gmv - log_gmv.mean()) ** 2).sum()
    assert explained > 0.4


def test_the_written_file_passes_the_platform_reader(code_history, tmp_path):
    path = write_synthetic(tmp_path / "demo_synthetic.csv", code_history, seed=3, n_counties=120)
    metrics = read_platform_metrics(path, code_history, as_of_limit="2025Q3")
    assert metrics.is_synthetic is True
    assert metrics.frequency == "quarterly"
    assert metrics.unmatched.empty
    frame = synthetic_platform_metrics(code_history, seed=3, n_counties=120)
    assert len(metrics.frame) == len(frame)
    assert metrics.frame["gmv_cny"].sum() == pytest.approx(frame["gmv_cny"].sum())


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("platform.csv", r"file name must contain 'synthetic' .*; got 'platform\.csv'"),
        ("platform_synthetic.parquet", r"file must be a \.csv; got 'platform_synthetic\.parquet'"),
    ],
)
def test_write_refuses_a_name_that_could_pass_for_real_data(code_history, tmp_path, name, message):
    with pytest.raises(SyntheticDataError, match=message):
        write_synthetic(tmp_path / name, code_history, n_counties=5)
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("2022", "2025Q3", r"first must be a quarter like 2025Q3; got '2022'"),
        ("2025Q3", "2022Q1", r"first must not be after last; got first='2025Q3', last='2022Q1'"),
    ],
)
def test_invalid_quarters_are_errors(code_history, first, last, message):
    with pytest.raises(SyntheticDataError, match=message):
        synthetic_platform_metrics(code_history, first=first, last=last)


def test_an_impossible_sample_size_is_an_error(code_history):
    with pytest.raises(SyntheticDataError, match=r"n_counties must be between 1 and 2844; got 0"):
        synthetic_platform_metrics(code_history, n_counties=0)
