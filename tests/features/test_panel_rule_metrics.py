"""A belt rule naming a metric its label source lacks is an error, never a column of unknowns that
labels nothing. SYNTHETIC Taobao-village counts on two real county codes (not the real rosters)."""

from __future__ import annotations

import pandas as pd
import pytest

from features.labels import BeltRule, Condition, LabelError
from features.panel import PanelSpec, build_panel
from features.sources.base import SourceTable

UNITS = pd.DataFrame(
    {
        "county_code": ["371721", "330782"],
        "county_name": ["曹县", "义乌市"],
        "province": ["山东省", "浙江省"],
        "prefecture": ["菏泽市", "金华市"],
        "province_code": ["370000", "330000"],
        "prefecture_code": ["371700", "330700"],
    }
)
SYNTHETIC_VILLAGES = SourceTable(
    "taobao",
    pd.DataFrame(
        {
            "county_code": ["371721", "330782", "371721", "330782"],
            "year": [2014, 2014, 2015, 2015],
            "variable": "taobao_villages",
            "value": [0.0, 0.0, 3.0, 0.0],
        }
    ),
)


def spec(metric: str) -> PanelSpec:
    return PanelSpec(periods=(2014, 2015), rule=BeltRule((Condition(metric, ">=", 1),), 1))


def test_the_rule_labels_from_the_source_variable():
    panel = build_panel([SYNTHETIC_VILLAGES], UNITS, spec("taobao_villages")).set_index(["county_code", "as_of"])
    assert panel["is_belt"].tolist() == [False, False, False, True]
    assert panel.loc[("371721", 2014), "emerged"] == 1


def test_a_misspelt_rule_metric_is_an_error_naming_the_variables_of_the_source():
    with pytest.raises(
        LabelError,
        match=r"^belt rule metric must be one of the metrics of the label source 'taobao' \['taobao_villages'\]; "
        r"got 'taobao_vilages' \(rule: at least 1 of 1: taobao_vilages >= 1\)$",
    ):
        build_panel([SYNTHETIC_VILLAGES], UNITS, spec("taobao_vilages"))


def test_a_platform_metric_carried_from_an_older_quarter_says_how_old_it_is():
    # SYNTHETIC quarterly metrics: 曹县 has no row of 2025Q2, so its 2025Q1 merchants are carried
    # into 2025Q2, and staleness_platform says they are a quarter old (义乌市's are current)
    q1, q2 = 2025 * 4, 2025 * 4 + 1
    rows = [("371721", q1, 77.0), ("330782", q1, 50.0), ("330782", q2, 60.0)]
    labels = pd.DataFrame(rows, columns=["county_code", "period", "active_merchants"])
    long = labels.melt(id_vars=["county_code", "period"], var_name="variable").assign(
        variable=lambda d: "platform_" + d["variable"], source="platform"
    )
    rule = BeltRule((Condition("active_merchants", ">=", 60),), 1)
    platform = PanelSpec(periods=(q1, q2), rule=rule, label_source="platform", frequency="quarterly")
    panel = build_panel([SYNTHETIC_VILLAGES], UNITS, platform, label_metrics=labels, period_long=long)
    panel = panel.set_index(["county_code", "as_of"])
    assert panel.loc[("371721", q2), "platform_active_merchants"] == 77.0
    assert panel.loc[("371721", q2), "staleness_platform"] == 1
    assert panel.loc[("330782", q2), "staleness_platform"] == 0
    assert "staleness_taobao" not in build_panel([SYNTHETIC_VILLAGES], UNITS, spec("taobao_villages")).columns
