"""The belt rule and the emergence target, on hand-made fixtures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.labels import BeltRule, Condition, LabelError, emergence_target

TWO_OF_THREE = BeltRule(
    conditions=(
        Condition("gmv_cny", ">=", 1e8),
        Condition("active_merchants", ">=", 100),
        Condition("gmv_growth", ">=", 0.2),
    ),
    min_met=2,
)


def _metrics(rows):
    return pd.DataFrame(rows, columns=["county_code", "year", "gmv_cny", "active_merchants", "gmv_growth"])


def test_two_of_three_is_a_belt_one_of_three_is_not():
    metrics = _metrics(
        [
            ("371721", 2020, 2e8, 150, 0.0),  # 2 of 3
            ("330782", 2020, 2e8, 50, 0.0),  # 1 of 3
            ("320324", 2020, 2e8, 150, 0.5),  # 3 of 3
            ("110101", 2020, 1e7, 10, 0.1),  # 0 of 3
        ]
    )
    status = TWO_OF_THREE.apply(metrics)
    assert status["n_met"].tolist() == [2, 1, 3, 0]
    assert status["is_belt"].tolist() == [True, False, True, False]


def test_an_unknown_metric_counts_as_not_met():
    metrics = _metrics([("371721", 2020, 2e8, np.nan, np.nan), ("330782", 2020, 2e8, 150, np.nan)])
    status = TWO_OF_THREE.apply(metrics)
    assert status["is_belt"].tolist() == [False, True]


def test_thresholds_are_respected_at_the_boundary():
    rule = BeltRule((Condition("taobao_villages", ">=", 3),), min_met=1)
    metrics = pd.DataFrame({"county_code": ["a", "b"], "year": [2016, 2016], "taobao_villages": [2, 3]})
    assert rule.apply(metrics)["is_belt"].tolist() == [False, True]


def test_a_year_without_any_rule_metric_gets_no_label():
    rule = BeltRule((Condition("taobao_villages", ">=", 1),), min_met=1)
    metrics = pd.DataFrame(
        {
            "county_code": ["a", "a", "a"],
            "year": [2014, 2015, 2017],
            "taobao_villages": [0, 1, np.nan],
        }
    )
    assert rule.apply(metrics)["year"].tolist() == [2014, 2015]


def test_emergence_only_for_non_belts_with_a_label_at_t_plus_h():
    status = pd.DataFrame(
        {
            "county_code": ["a", "a", "a", "b", "b", "b", "c", "c"],
            "year": [2014, 2015, 2016, 2014, 2015, 2016, 2014, 2015],
            "is_belt": [False, True, True, True, True, True, False, False],
        }
    )
    target = emergence_target(status, horizon=1)
    assert target[["county_code", "year", "target_period", "emerged"]].values.tolist() == [
        ["a", 2014, 2015, 1],
        ["c", 2014, 2015, 0],
    ]
    two = emergence_target(status, horizon=2)
    assert two[["county_code", "year", "emerged"]].values.tolist() == [["a", 2014, 1]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"conditions": (), "min_met": 1}, "needs at least one condition; got none"),
        (
            {"conditions": (Condition("x", ">=", 1),), "min_met": 2},
            r"min_met must be between 1 .*got 2",
        ),
    ],
)
def test_invalid_rules_are_errors(kwargs, message):
    with pytest.raises(LabelError, match=message):
        BeltRule(**kwargs)


def test_unknown_operator_and_horizon_are_errors():
    with pytest.raises(LabelError, match=r"op must be one of .*got '=>'"):
        Condition("gmv_cny", "=>", 1)
    with pytest.raises(LabelError, match="horizon must be >= 1; got 0"):
        emergence_target(pd.DataFrame(columns=["county_code", "year", "is_belt"]), horizon=0)


def test_apply_names_a_missing_metric_column():
    with pytest.raises(LabelError, match=r"need column\(s\) \['gmv_growth'\]"):
        TWO_OF_THREE.apply(_metrics([]).drop(columns="gmv_growth"))


def test_require_metrics_names_the_first_metric_the_source_lacks():
    TWO_OF_THREE.require_metrics(["active_merchants", "gmv_cny", "gmv_growth", "other"], "the test table")
    with pytest.raises(
        LabelError,
        match=r"^belt rule metric must be one of the metrics of the test table \['active_merchants', 'gmv_cny'\]; "
        r"got 'gmv_growth' \(rule: at least 2 of 3: .*\)$",
    ):
        TWO_OF_THREE.require_metrics(["gmv_cny", "active_merchants"], "the test table")
