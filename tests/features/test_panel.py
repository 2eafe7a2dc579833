"""The point-in-time county panel, on the real public data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.labels import BeltRule, Condition
from features.panel import (
    LABEL_COLUMNS,
    LOG_EPS,
    PanelSpec,
    build_panel,
    feature_columns,
    feature_sources,
    staleness_columns,
    with_growth,
    with_relative_levels,
)
from features.sources.base import SourceTable
from pipelines.build import READERS, mode_labels
from pipelines.config import PUBLIC_LABEL_METRICS

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

TARGET = 2020
SPEC = PanelSpec(periods=tuple(range(2013, 2021)), rule=BeltRule((Condition("taobao_villages", ">=", 1),), 1))


@pytest.fixture(scope="module")
def sources(raw_dir, code_history) -> list[SourceTable]:
    return [reader(raw_dir, code_history, TARGET) for reader in READERS]


@pytest.fixture(scope="module")
def units(code_history) -> pd.DataFrame:
    return code_history.county_units(TARGET)


@pytest.fixture(scope="module")
def panel(sources, units) -> pd.DataFrame:
    return build_panel(sources, units, SPEC, mode_labels(sources))


def _until(source: SourceTable, year: int) -> SourceTable:
    if source.name in SPEC.static_sources:
        return source
    return SourceTable(source.name, source.long[source.long["year"] <= year], source.unmatched, source.notes)


def test_one_row_per_county_and_year(panel, units):
    assert len(panel) == len(units) * 8 == 2844 * 8
    assert not panel.duplicated(["county_code", "as_of"]).any()


def test_as_of_2014_rows_do_not_depend_on_later_data(sources, units, panel):
    """Sources dated after 2014 (2015/2016 rosters, census 2020, night lights 2015+, ...) removed:
    the as-of-2014 features and labels known at 2014 are identical."""
    early = build_panel([_until(s, 2014) for s in sources], units, SPEC)
    full = panel[panel["as_of"] == 2014].reset_index(drop=True)
    cut = early[early["as_of"] == 2014].reset_index(drop=True)
    shared = [c for c in cut.columns if c not in ("emerged", "mode")]
    pd.testing.assert_frame_equal(full[shared], cut[shared])
    only_later = sorted(set(full.columns) - set(cut.columns))
    assert "tudigong_manufacturing_share_rel" in only_later and "taobao_towns" in only_later
    assert full[only_later].isna().all().all()  # columns of later sources are unknown at 2014


def test_caoxian_is_a_belt_with_its_village_counts(panel):
    caoxian = panel[panel["county_code"] == "371721"].set_index("as_of")
    assert caoxian.loc[[2014, 2015, 2016], "taobao_villages"].tolist() == [7, 34, 48]
    assert caoxian.loc[2014, "is_belt"]
    assert caoxian.loc[2018, "taobao_villages"] == 48  # the 2016 roster, as of 2018
    assert pd.isna(caoxian.loc[2018, "is_belt"])  # no roster in 2018: no label is invented
    assert caoxian.loc[2018, "is_belt_known"]
    assert caoxian.loc[2014, "mode"] == "industrial_transformation"


def test_the_config_accepts_exactly_the_variables_of_the_label_source(sources):
    taobao = next(source for source in sources if source.name == SPEC.label_source)
    assert sorted(taobao.long["variable"].unique()) == sorted(PUBLIC_LABEL_METRICS)


def test_staleness_counts_years_since_the_newest_value(panel):
    caoxian = panel[panel["county_code"] == "371721"].set_index("as_of")
    assert caoxian.loc[2014, "staleness_census"] == 4  # census 2010 at t = 2014
    assert caoxian.loc[2020, "staleness_census"] == 0
    assert caoxian.loc[2019, "staleness_co2"] == 2  # CO2 ends in 2017
    # the belts and villages nearby as of 2020 are those of the 2016 roster, and their drivers say so
    assert caoxian.loc[2016, "staleness_labels"] == 0 and caoxian.loc[2020, "staleness_labels"] == 4
    dated = feature_sources(feature_columns(panel), staleness_columns(panel))
    of_labels = {f for f, column in dated.items() if column == "staleness_labels"}
    exposure = ("belts_", "villages_", "dist_nearest_belt", "taobao_")
    assert of_labels == {f for f in feature_columns(panel) if f.startswith(exposure)}
    assert "dist_nearest_belt_km_rel" in of_labels and dated["co2_growth_1y_rel"] == "staleness_co2"
    assert np.isnan(caoxian.loc[2014, "tudigong_manufacturing_share_rel"])


def test_a_prefecture_feature_is_as_old_as_its_own_value(panel):
    """果洛州's population is its registered population, which ends in 2018, while its GDP goes on
    (with a gap in 2020): the prefecture's staleness, its newest value's age, had dated its
    population as of 2019."""
    maqin = panel[panel["county_code"] == "632621"].set_index("as_of")  # 玛沁县, 果洛州
    dated = feature_sources(feature_columns(panel), staleness_columns(panel))
    prefecture = [f for f in feature_columns(panel) if f.startswith("pref_")]
    assert {dated[f] for f in prefecture} == {f"staleness_{f}" for f in prefecture}
    assert maqin.loc[2020, "staleness_pref_population_rel"] == 2
    assert maqin.loc[2020, "staleness_pref_gdp_per_capita_rel"] == 2  # of GDP and population
    assert maqin.loc[2020, "staleness_pref_gdp_rel"] == 1
    assert maqin.loc[2020, "staleness_prefecture"] == 1
    assert maqin.loc[2018, "staleness_pref_population_rel"] == 0


def test_belt_counts_per_year(panel):
    belts = panel.groupby("as_of")["is_belt"].sum()
    assert belts.loc[[2014, 2015, 2016]].tolist() == [80, 181, 218]


def test_emergence_targets(panel):
    emerged = panel.groupby("as_of")["emerged"].agg(["sum", "count"])
    assert emerged.loc[2014].tolist() == [101, 2764]  # 高碑店市 a belt from 2014 (白沟); 龙港市 from 2015
    assert emerged.loc[2015].tolist() == [49, 2663]
    assert panel.loc[panel["as_of"] >= 2016, "emerged"].isna().all()


def test_spatial_features_use_belts_known_at_t(panel):
    at_2013 = panel[panel["as_of"] == 2013]
    assert at_2013["belts_within_100km_share"].isna().all()  # no roster before 2014
    caoxian = panel[(panel["county_code"] == "371721") & (panel["as_of"] == 2015)].iloc[0]
    assert caoxian["belts_same_prefecture_share"] == pytest.approx(1 / 181)  # 单县, of 181 belts in 2015
    assert caoxian["dist_nearest_belt_km_rel"] < 0  # nearer than the median county's nearest belt


def test_belt_exposure_is_relative_to_the_belts_known_at_t(panel):
    """80 belts in the 2014 roster, 218 in 2016: exposure is a share of the belts known, the
    nearest belt's distance a log ratio to the median county's, so a later year with more belts
    does not look like more exposure everywhere."""
    belts = {2014: 80, 2016: 218}
    not_belts = {y: panel[(panel["as_of"] == y) & ~panel["is_belt"].fillna(False).astype(bool)] for y in belts}
    for as_of, total in belts.items():
        year = panel[panel["as_of"] == as_of]
        for column in ("belts_same_province_share", "belts_within_100km_share"):
            counts = year[column] * total
            assert counts.notna().all()
            np.testing.assert_allclose(counts, counts.round(), atol=1e-9)  # whole belts over this year's total
        assert year["dist_nearest_belt_km_rel"].median() == pytest.approx(0.0, abs=1e-9)
    for column in ("belts_same_province_share", "belts_within_100km_share"):
        mean = {y: not_belts[y][column].mean() for y in belts}
        # a non-belt county had 2.3x the belts around it in 2016, and a similar share of them
        assert mean[2016] * belts[2016] > 2 * mean[2014] * belts[2014]
        assert 0.75 < mean[2016] / mean[2014] < 1.25


def test_features_are_numeric_and_labels_separate(panel):
    features = feature_columns(panel)
    assert not set(features) & set(LABEL_COLUMNS)
    assert all(pd.api.types.is_float_dtype(panel[c]) for c in features)
    assert {
        "viirs_growth_1y_rel",
        "co2_growth_2y_rel",
        "pref_gdp_growth_rel",
        "census_manufacturing_share_rel",
        "viirs_mean_rel",
        "dist_capital_km",
        "terrain_relief",
    } <= set(features)


def test_growth_is_relative_to_the_years_median_county():
    """SYNTHETIC long rows: three counties' night lights and prefecture GDP growth."""
    lights = {"a": [1.0, 2.0, 4.0], "b": [1.0, 1.0, 1.0], "c": [2.0, 3.0, 3.0]}
    long = pd.DataFrame(
        [(k, 2014 + i, "viirs_mean", v, "viirs") for k, vs in lights.items() for i, v in enumerate(vs)]
        + [(k, 2015, "pref_gdp_growth", g, "prefecture") for k, g in (("a", 0.09), ("b", 0.05), ("c", 0.06))],
        columns=["county_code", "year", "variable", "value", "source"],
    )
    grown = with_growth(long).set_index(["variable", "county_code", "year"])["value"]
    logged = {k: np.log(np.asarray(v) + LOG_EPS) for k, v in lights.items()}
    one_year = {k: v[2] - v[1] for k, v in logged.items()}  # 2016 over 2015
    median = np.median(list(one_year.values()))
    for county, growth in one_year.items():
        assert grown["viirs_growth_1y_rel", county, 2016] == pytest.approx(growth - median)
    assert grown["viirs_growth_2y_rel", "c", 2016] == pytest.approx(0.0)  # the median county
    assert grown["viirs_growth_2y_rel", "b", 2016] == pytest.approx(-np.log((3 + LOG_EPS) / (2 + LOG_EPS)))
    assert grown["pref_gdp_growth_rel", "a", 2015] == pytest.approx(0.03)
    assert "pref_gdp_growth" not in set(grown.index.get_level_values("variable"))
    assert "viirs_mean" in set(grown.index.get_level_values("variable"))  # levels: with_relative_levels


def test_levels_are_relative_to_the_years_median_county():
    """SYNTHETIC long rows: a census share and an amount in two census rounds, an untouched series."""
    rows = [
        ("a", 2010, "census_agriculture_share", 0.7, "census"),
        ("b", 2010, "census_agriculture_share", 0.6, "census"),
        ("c", 2010, "census_agriculture_share", 0.5, "census"),
        ("a", 2020, "census_agriculture_share", 0.4, "census"),
        ("b", 2020, "census_agriculture_share", 0.2, "census"),
        ("c", 2020, "census_agriculture_share", 0.3, "census"),
        ("a", 2015, "pref_gdp", 100.0, "prefecture"),
        ("b", 2015, "pref_gdp", 400.0, "prefecture"),
        ("c", 2015, "pref_gdp", 200.0, "prefecture"),
        ("c", 2016, "pref_gdp", np.nan, "prefecture"),
        ("a", 2015, "terrain_relief", 1.5, "terrain"),
    ]
    long = pd.DataFrame(rows, columns=["county_code", "year", "variable", "value", "source"])
    relative = with_relative_levels(long).set_index(["variable", "county_code", "year"])["value"]
    # each census round against its own median: a farming county of 2020 is not "less rural" than 2010's
    assert relative["census_agriculture_share_rel", "a", 2010] == pytest.approx(0.1)
    assert relative["census_agriculture_share_rel", "a", 2020] == pytest.approx(0.1)
    assert relative["census_agriculture_share_rel", "b", 2020] == pytest.approx(-0.1)
    # amounts as a log ratio to the median county
    assert relative["pref_gdp_rel", "b", 2015] == pytest.approx(np.log((400 + LOG_EPS) / (200 + LOG_EPS)))
    assert relative["pref_gdp_rel", "c", 2015] == pytest.approx(0.0)
    assert ("pref_gdp_rel", "c", 2016) not in relative.index  # a missing value gives no row
    assert relative["terrain_relief", "a", 2015] == 1.5
    assert not {"census_agriculture_share", "pref_gdp"} & set(relative.index.get_level_values("variable"))


def test_missing_shares_are_keyed_by_the_period_label():
    from features.quality import missing_shares

    panel = pd.DataFrame({"county_code": ["1", "2", "1"], "as_of": [2022 * 4, 2022 * 4, 2015], "x": [1.0, None, None]})
    assert missing_shares(panel) == {"x": {"2015": 1.0, "2022Q1": 0.5}}
