"""The report's "Data and caveats" notes come from the model's own snapshot (SYNTHETIC rows)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.report import data_notes


def _snapshot(as_of: int) -> pd.DataFrame:
    n = 200
    return pd.DataFrame(
        {
            "as_of": as_of,
            "co2_mt_rel": np.where(np.arange(n) < 30, np.nan, 0.1),  # 30 counties without CO2
            "pref_population_rel": 0.0,
            "tudigong_it_share_rel": np.nan,  # a source that starts later: absent for everyone
            "belts_within_100km_share": 0.01,
            "staleness_co2": 3.0,
            "staleness_prefecture": 0.0,
            "staleness_labels": 4.0,  # said once, with the labels
        }
    )


def test_notes_say_the_rule_the_labels_the_fold_the_old_data_and_the_gaps():
    features = ["co2_mt_rel", "pref_population_rel", "tudigong_it_share_rel", "belts_within_100km_share"]
    meta = {"belt_rule": [{"metric": "taobao_villages", "op": ">=", "threshold": 1.0}], "min_met": 1}
    backtest = {"emergence": {"models": {"lightgbm": {"n": 2664, "n_positive": 49}}}}
    notes = data_notes(_snapshot(2020), features, meta, 2020, 2016, backtest)
    assert notes == [
        "A county counts as a belt in a year when Taobao villages ≥ 1.",
        "The newest labels are of 2016: a county ranked here may have become a belt between 2016 and 2020"
        " without this page knowing. The belts nearby are those of 2016 too, and drivers from them say so.",
        "The newest backtest fold tested 2,664 counties, of which 49 became belts: a few counties more or fewer"
        " found move its figures by several points, hence the intervals.",
        "CO₂ emissions (CEADs): the newest data are of 2017, 3 years before 2020; drivers from them say so.",
        "Not in the data as of 2020, for any county: IT jobs (2020 census shares).",
        "No data, out of 200 counties: CO2 emissions for 30. A gap is not filled in: the model's trees learned"
        ' what it went with in the training years, so a driver may read "no data on ...".',
    ]


def test_a_current_model_of_current_labels_has_fewer_notes():
    rule = [{"metric": "gmv", "op": ">=", "threshold": 2e8}, {"metric": "merchants", "op": ">=", "threshold": 500.0}]
    snapshot = _snapshot(2020).assign(staleness_co2=0.0, co2_mt_rel=0.1, tudigong_it_share_rel=0.0)
    meta = {"belt_rule": rule, "min_met": 2}
    notes = data_notes(snapshot, ["co2_mt_rel", "tudigong_it_share_rel"], meta, 2020, 2020, {})
    assert notes == [
        "A county counts as a belt in a year when at least 2 of these hold: gmv ≥ 200,000,000; merchants ≥ 500."
    ]


@pytest.mark.parametrize(
    ("villages", "nearby"), [(0.0, "The belts nearby"), (0.02, "The belts and Taobao villages nearby")]
)
def test_the_labels_note_names_villages_only_where_the_panel_has_some(villages, nearby):
    # a platform's panel has the village shares, all 0: its belts are not Taobao villages
    snapshot = _snapshot(2020).assign(villages_within_100km_share=villages)
    notes = data_notes(snapshot, ["belts_within_100km_share", "villages_within_100km_share"], {}, 2020, 2016, {})
    assert f" {nearby} are those of 2016 too" in notes[0]


def test_a_feature_dated_on_its_own_names_the_counties_with_older_data():
    # registered prefecture population ends in 2017 for some prefectures; the others' is current
    snapshot = _snapshot(2020).drop(columns="staleness_prefecture")  # a model's snapshot keeps the columns it uses
    snapshot = snapshot.assign(
        pref_gdp_rel=0.0,
        staleness_pref_population_rel=np.where(np.arange(200) < 15, 3.0, 0.0),
        staleness_pref_gdp_rel=np.where(np.arange(200) < 5, 1.0, 0.0),
    )
    notes = data_notes(snapshot, ["pref_population_rel", "pref_gdp_rel"], {}, 2020, None, {})
    assert notes == [
        "Prefecture GDP and population: the data are of 2020 for most counties, and older: prefecture population"
        " for 15 counties (of 2017 at the oldest); prefecture GDP for 5 counties (of 2019 at the oldest);"
        " drivers from them say so."
    ]


def test_a_model_of_synthetic_platform_metrics_says_so_first(tmp_path):
    """A report of a model trained on a file marked is_synthetic read as a real forecast."""
    import json

    from pipelines.build import panel_synthetic
    from pipelines.report import SYNTHETIC_WARNING

    meta = {"belt_rule": [{"metric": "gmv_cny", "op": ">=", "threshold": 1e7}], "min_met": 1}
    notes = data_notes(_snapshot(2020), ["co2_mt_rel"], {**meta, "synthetic_metrics": True}, 2020, 2020, {})
    assert notes[0] == SYNTHETIC_WARNING and "SYNTHETIC DATA" in notes[0]
    assert SYNTHETIC_WARNING not in data_notes(_snapshot(2020), ["co2_mt_rel"], meta, 2020, 2020, {})

    quality = tmp_path / "quality.json"
    assert not panel_synthetic(tmp_path)  # no summary
    for recorded, synthetic in (({}, False), ({"platform_metrics": {"synthetic": False}}, False),
                                ({"platform_metrics": {"synthetic": True}}, True), ([], False)):  # fmt: skip
        quality.write_text(json.dumps(recorded), encoding="utf-8")
        assert panel_synthetic(tmp_path) is synthetic


def test_every_gap_is_listed_the_features_missing_for_the_same_counties_together():
    # the gaps a driver can name ("no data on ...") are all in the notes, however small
    n = 200
    census = [f"census_{name}_rel" for name in ("population", "urban_share", "migrant_share", "it_share")]
    snapshot = pd.DataFrame(
        {
            "as_of": 2020,
            "co2_mt_rel": np.where(np.arange(n) < 30, np.nan, 0.1),
            "co2_growth_1y_rel": np.where(np.arange(n) < 30, np.nan, 0.1),  # the same 30 counties
            "terrain_relief": np.where(np.arange(n) == 50, np.nan, 1.0),  # one county: under 1 %
            **{column: np.where(np.arange(n) >= 197, np.nan, 0.0) for column in census},  # 3 counties
            "staleness_co2": 3.0,
            "staleness_census": 10.0,
        }
    )
    features = ["co2_mt_rel", "terrain_relief", "co2_growth_1y_rel", *census]
    gaps = data_notes(snapshot, features, {}, 2020, 2020, {})[-1]
    assert gaps.startswith(
        "No data, out of 200 counties: CO2 emissions, CO2 growth over 1 year for 30; 4 indicators from Census"
        " for 3; terrain relief for 1. A gap is not filled in"
    )
