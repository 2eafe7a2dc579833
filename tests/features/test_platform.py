"""Platform metrics: the reader's checks, code harmonisation, the rule metrics and the 2-of-3
rule, on tiny hand-made files and frames (and the real code history where the claim is real)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.codes import CodeHistory, CodeRecord
from features.errors import CountyCodeError, SourceFormatError
from features.labels import BeltRule, Condition
from features.platform import (
    PlatformMetrics,
    PlatformMetricsError,
    category_modes,
    default_platform_rule,
    further_metrics,
    mode_gmv_shares,
    read_platform_metrics,
    rule_metrics,
    unmapped_categories,
)
from features.taxonomy import load_taxonomy

HEADER = "county_code,period,gmv_cny,active_merchants"


@pytest.fixture
def toy_history() -> CodeHistory:
    """曹县 unchanged; 郫县 -> 郫都区 (2016); A + B merge into M and S splits into S1 + S2 (2015);
    X is abolished in 2015 without a successor."""
    records = [
        CodeRecord("371721", "曹县", 2009, 10_000, ()),
        CodeRecord("510124", "郫县", 2009, 2016, (("510117", 2016),)),
        CodeRecord("510117", "郫都区", 2016, 10_000, ()),
        CodeRecord("110001", "A", 2009, 2015, (("110009", 2015),)),
        CodeRecord("110002", "B", 2009, 2015, (("110009", 2015),)),
        CodeRecord("110009", "M", 2015, 10_000, ()),
        CodeRecord("110003", "S", 2009, 2015, (("110004", 2015), ("110005", 2015))),
        CodeRecord("110004", "S1", 2015, 10_000, ()),
        CodeRecord("110005", "S2", 2015, 10_000, ()),
        CodeRecord("120001", "X", 2009, 2015, ()),
    ]

    def year(codes: list[str]) -> pd.DataFrame:
        return pd.DataFrame({"code": codes, "name": codes})

    old = year(["110000", "110001", "110002", "110003", "120000", "120001", "370000", "371721", "510000", "510124"])
    new = year(["110000", "110009", "110004", "110005", "370000", "371721", "510000", "510117"])
    return CodeHistory(records, {2014: old, 2015: new[new["code"] != "510117"], 2020: new})


def write(tmp_path, lines: list[str], name: str = "metrics.csv", header: str = HEADER):
    path = tmp_path / name
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def quarterly(rows: list[tuple]) -> PlatformMetrics:
    """A hand-made quarterly PlatformMetrics from ``(county_code, "2024Q1", gmv, merchants)``."""
    frame = pd.DataFrame(rows, columns=["county_code", "period", "gmv_cny", "active_merchants"])
    frame["period"] = [int(p[:4]) * 4 + int(p[-1]) - 1 for p in frame["period"]]
    frame.insert(2, "category", None)
    return PlatformMetrics(frame.astype({"gmv_cny": float, "active_merchants": float}), "quarterly")


def quarters_of(code: str, first_year: int, gmv: list[float], merchants: float = 10) -> list[tuple]:
    """Consecutive quarters from ``first_year`` Q1, one per value of ``gmv``."""
    return [(code, f"{first_year + i // 4}Q{i % 4 + 1}", value, merchants) for i, value in enumerate(gmv)]


Q2024Q4 = 2024 * 4 + 3


def at(table: pd.DataFrame, code: str, period: int = Q2024Q4) -> pd.Series:
    return table.set_index(["county_code", "period"]).loc[(code, period)]


# --- rule metrics -------------------------------------------------------------------------------


def test_trailing_four_quarters_and_growth_over_the_four_before():
    metrics = quarterly(quarters_of("371721", 2023, [2.5e7] * 4 + [3e7] * 4))
    table = rule_metrics(metrics)
    assert at(table, "371721")["gmv_annual_cny"] == 1.2e8
    assert at(table, "371721")["gmv_growth_yoy"] == 0.2
    assert at(table, "371721", Q2024Q4 - 1)["gmv_annual_cny"] == 2.5e7 + 3 * 3e7
    assert np.isnan(at(table, "371721", Q2024Q4 - 1)["gmv_growth_yoy"])  # needs 2022Q4
    assert table["gmv_annual_cny"].notna().tolist() == [False] * 3 + [True] * 5


def test_a_gap_in_the_trailing_quarters_makes_annual_gmv_and_growth_unknown():
    rows = quarters_of("371721", 2023, [2.5e7] * 8)
    del rows[5]  # 2024Q2
    table = rule_metrics(quarterly(rows))
    assert np.isnan(at(table, "371721")["gmv_annual_cny"])
    assert np.isnan(at(table, "371721")["gmv_growth_yoy"])
    assert at(table, "371721", 2023 * 4 + 3)["gmv_annual_cny"] == 1e8


def test_growth_is_unknown_when_the_earlier_year_sold_nothing():
    table = rule_metrics(quarterly(quarters_of("371721", 2023, [0.0] * 4 + [1e6] * 4)))
    assert at(table, "371721")["gmv_annual_cny"] == 4e6
    assert np.isnan(at(table, "371721")["gmv_growth_yoy"])


def test_annual_data_grow_year_over_year():
    frame = pd.DataFrame(
        {
            "county_code": ["371721"] * 3,
            "period": [2022, 2023, 2025],
            "category": [None] * 3,
            "gmv_cny": [1e8, 1.5e8, 2e8],
            "active_merchants": [80.0, 90.0, 120.0],
        }
    )
    table = rule_metrics(PlatformMetrics(frame, "annual"))
    assert table["gmv_annual_cny"].tolist() == [1e8, 1.5e8, 2e8]
    assert table["gmv_growth_yoy"].tolist()[1] == 0.5
    assert np.isnan(table["gmv_growth_yoy"].tolist()[0])
    assert np.isnan(table["gmv_growth_yoy"].tolist()[2])  # 2024 is missing


def test_rule_metrics_add_up_categories_and_do_not_modify_the_input():
    quarters = [Q2024Q4 - k for k in range(4)]
    frame = pd.DataFrame(
        {
            "county_code": ["371721"] * 8,
            "period": quarters * 2,
            "category": ["汉服"] * 4 + ["家具"] * 4,
            "gmv_cny": [3e7] * 4 + [1e7] * 4,
            "active_merchants": [60.0] * 4 + [50.0] * 4,
        }
    )
    before = frame.copy()
    table = rule_metrics(PlatformMetrics(frame, "quarterly"))
    assert at(table, "371721")[["gmv_annual_cny", "active_merchants"]].tolist() == [1.6e8, 110.0]
    pd.testing.assert_frame_equal(frame, before)


# --- the 2-of-3 rule ----------------------------------------------------------------------------


def test_default_rule_is_two_of_three_with_the_placeholder_thresholds():
    assert default_platform_rule().describe() == (
        "at least 2 of 3: gmv_annual_cny >= 1e+08; active_merchants >= 100; gmv_growth_yoy >= 0.2"
    )


def test_two_of_three_is_a_belt_one_of_three_is_not_and_unknown_growth_is_not_met():
    rows = [
        *quarters_of("110101", 2024, [2.5e7] * 4, merchants=100),  # 1e8, 100, growth unknown: 2 of 3
        *quarters_of("110102", 2024, [2.5e7] * 4, merchants=99),  # 1e8, 99, growth unknown: 1 of 3
        *quarters_of("110105", 2023, [1e7] * 4 + [1.25e7] * 4, merchants=150),  # 5e7, 150, 0.25: 2 of 3
        *quarters_of("110106", 2023, [1e7] * 4 + [1.25e7] * 4, merchants=50),  # 5e7, 50, 0.25: 1 of 3
        *quarters_of("110107", 2023, [1e7] * 4 + [1.25e7] * 4, merchants=150)[1:],  # 7 quarters: 1 of 3
    ]
    status = default_platform_rule().apply(rule_metrics(quarterly(rows)), period="period")
    last = status[status["period"] == Q2024Q4].set_index("county_code")
    assert last["n_met"].to_dict() == {"110101": 2, "110102": 1, "110105": 2, "110106": 1, "110107": 1}
    assert last["is_belt"].to_dict() == {
        "110101": True,
        "110102": False,
        "110105": True,
        "110106": False,
        "110107": False,
    }


def test_thresholds_are_met_at_the_boundary_and_not_just_below():
    rows = [
        *quarters_of("110101", 2023, [2.5e7] * 4 + [3e7] * 4, merchants=100),  # 1.2e8, 100, 0.2
        *quarters_of("110102", 2023, [2.5e7] * 4 + [2.5e7] * 3 + [2.5e7 - 0.01], merchants=99),
    ]
    table = rule_metrics(quarterly(rows))
    met = {
        c.metric: c.met(table[table["period"] == Q2024Q4].set_index("county_code")[c.metric]).to_dict()
        for c in default_platform_rule().conditions
    }
    assert met == {
        "gmv_annual_cny": {"110101": True, "110102": False},
        "active_merchants": {"110101": True, "110102": False},
        "gmv_growth_yoy": {"110101": True, "110102": False},
    }


def test_a_rule_with_explicit_thresholds_uses_them():
    rule = BeltRule((Condition("gmv_annual_cny", ">=", 4e6), Condition("active_merchants", ">=", 10)), min_met=2)
    table = rule_metrics(quarterly(quarters_of("371721", 2024, [1e6] * 4, merchants=10)))
    assert rule.apply(table, period="period")["is_belt"].tolist() == [False, False, False, True]


# --- category modes -----------------------------------------------------------------------------


def categorised(rows: list[tuple]) -> PlatformMetrics:
    frame = pd.DataFrame(rows, columns=["county_code", "period", "category", "gmv_cny"])
    return PlatformMetrics(frame.assign(active_merchants=1.0), "quarterly")


def test_the_mode_with_most_gmv_wins_and_the_top_category_is_reported_beside_it():
    metrics = categorised(
        [
            ("371721", Q2024Q4, "茶叶", 4e7),
            ("371721", Q2024Q4, "女装", 3e7),
            ("371721", Q2024Q4, "鞋", 2e7),
            ("371721", Q2024Q4, "其他", 1e7),
        ]
    )
    row = category_modes(metrics, load_taxonomy()).iloc[0]
    assert row["mode"] == "industrial_transformation"
    assert row["mode_gmv_share"] == 0.5
    assert row["top_category"] == "茶叶"


def test_categories_of_no_mode_are_named_with_their_share_of_gmv():
    rows = [
        ("371721", Q2024Q4, "茶叶", 5e7),
        ("371721", Q2024Q4, "杂项1", 3e7),
        ("330782", Q2024Q4 - 1, "杂项2", 1e7),
        ("330782", Q2024Q4, "杂项1", 1e7),
    ]
    assert unmapped_categories(categorised(rows), load_taxonomy()).to_dict() == {"杂项1": 0.4, "杂项2": 0.1}
    assert unmapped_categories(categorised(rows[:1]), load_taxonomy()).empty
    assert unmapped_categories(quarterly(quarters_of("371721", 2024, [1e6])), load_taxonomy()).empty


def test_category_modes_look_back_four_quarters_only():
    rows = [("371721", Q2024Q4 - 4, "汉服", 9e9)] + [("371721", Q2024Q4 - k, "化妆品", 1e6) for k in range(4)]
    table = category_modes(categorised(rows), load_taxonomy()).set_index("period")
    assert table.loc[Q2024Q4 - 4, "mode"] == "cultural_heritage"
    assert table.loc[Q2024Q4 - 1, "mode"] == "cultural_heritage"  # 2024Q3 still sees 2023Q4
    assert table.loc[Q2024Q4, "mode"] == "national_brand"


def test_no_mapped_category_or_no_category_gives_no_mode():
    table = category_modes(categorised([("371721", Q2024Q4, "其他", 1e6)]), load_taxonomy())
    assert table["mode"].isna().tolist() == [True]
    assert table["top_category"].tolist() == ["其他"]
    uncategorised = category_modes(quarterly(quarters_of("371721", 2024, [1e6])), load_taxonomy())
    assert uncategorised["mode"].isna().tolist() == [True]
    assert uncategorised["top_category"].tolist() == [None]


def test_mode_gmv_shares_are_each_modes_share_of_a_countys_categorised_gmv_over_four_quarters():
    rows = [
        ("371721", Q2024Q4 - 4, "汉服", 9e9),  # a year before: out of 2024Q4's window
        ("371721", Q2024Q4 - 1, "茶叶", 4e7),
        ("371721", Q2024Q4, "女装", 3e7),
        ("371721", Q2024Q4, "鞋", 2e7),
        ("371721", Q2024Q4, "其他", 1e7),  # of no mode: in the whole, in no mode's share
        ("110009", Q2024Q4, "茶叶", 0.0),  # sold nothing: no mix to speak of
    ]
    table = mode_gmv_shares(categorised(rows), load_taxonomy()).set_index(["county_code", "period"])
    assert list(table.columns) == [
        "national_brand_gmv_share", "cultural_heritage_gmv_share",
        "industrial_transformation_gmv_share", "local_specialty_gmv_share",
    ]  # fmt: skip
    assert table.loc[("371721", Q2024Q4)].tolist() == [0.0, 0.0, 0.5, 0.4]
    assert table.loc[("371721", Q2024Q4 - 1)].tolist() == pytest.approx(
        [0.0, 9e9 / (9e9 + 4e7), 0.0, 4e7 / (9e9 + 4e7)]
    )
    assert table.loc[("110009", Q2024Q4)].isna().all()
    uncategorised = mode_gmv_shares(quarterly(quarters_of("371721", 2024, [1e6])), load_taxonomy())
    assert len(uncategorised) == 1 and uncategorised.drop(columns=["county_code", "period"]).isna().all(axis=None)


# --- reading and harmonising ----------------------------------------------------------------------


def test_reads_a_quarterly_file_with_categories(tmp_path, toy_history):
    path = write(
        tmp_path,
        ["371721,2024Q2,2e7,20,汉服,曹县", "371721,2024Q1,1e7,10,汉服,曹县", "371721,2024Q3,5e6,4,,曹县"],
        header=HEADER + ",category,county_name",
    )
    metrics = read_platform_metrics(path, toy_history)
    assert metrics.frequency == "quarterly"
    assert metrics.frame.columns.tolist() == ["county_code", "period", "category", "gmv_cny", "active_merchants"]
    assert metrics.frame.values.tolist() == [
        ["371721", 8096, "汉服", 1e7, 10.0],
        ["371721", 8097, "汉服", 2e7, 20.0],
        ["371721", 8098, None, 5e6, 4.0],
    ]
    assert metrics.is_synthetic is False
    assert metrics.unmatched.empty


def test_an_old_code_is_harmonised_to_its_successor(tmp_path, toy_history):
    path = write(tmp_path, ["510124,2015Q1,1e6,5", "510124,2015Q2,2e6,6"])
    for vintage in (2014, None):
        metrics = read_platform_metrics(path, toy_history, code_vintage=vintage)
        assert metrics.frame["county_code"].tolist() == ["510117", "510117"]
        assert metrics.frame["gmv_cny"].tolist() == [1e6, 2e6]


def test_merges_sum_counts_and_splits_divide_them(tmp_path, toy_history):
    path = write(
        tmp_path,
        ["110001,2014,100,10,0.2", "110002,2014,300,30,0.6", "110003,2014,80,8,0.5"],
        header=HEADER + ",refund_rate",
    )
    frame = read_platform_metrics(path, toy_history, code_vintage=2014, intensive=["refund_rate"]).frame
    table = frame.set_index("county_code")
    assert table.loc["110009", ["gmv_cny", "active_merchants"]].tolist() == [400.0, 40.0]
    assert table.loc["110009", "refund_rate"] == pytest.approx(0.4)  # equal area shares
    assert table.loc[["110004", "110005"], "gmv_cny"].tolist() == [40.0, 40.0]
    assert table.loc[["110004", "110005"], "refund_rate"].tolist() == [0.5, 0.5]


def test_split_weights_divide_counts(tmp_path, toy_history):
    path = write(tmp_path, ["110003,2014,80,8"])
    weights = pd.Series({"110004": 3.0, "110005": 1.0})
    frame = read_platform_metrics(path, toy_history, code_vintage=2014, split_weights=weights).frame
    assert frame["gmv_cny"].tolist() == [60.0, 20.0]


def test_a_code_without_successor_is_reported_unmatched(tmp_path, toy_history):
    path = write(tmp_path, ["371721,2014,1,1", "120001,2014,5,2"])
    metrics = read_platform_metrics(path, toy_history, code_vintage=2014)
    assert metrics.frame["county_code"].tolist() == ["371721"]
    assert metrics.unmatched[["row", "county_code"]].values.tolist() == [[2, "120001"]]
    assert metrics.unmatched["reason"].tolist() == ["code maps to no county of the 2020 vintage"]


def test_parquet_reads_like_csv(tmp_path, toy_history):
    csv = write(tmp_path, ["371721,2024Q1,1e7,10", "510117,2024Q1,2e6,3"])
    parquet = tmp_path / "metrics.parquet"
    pd.DataFrame(
        {"county_code": [371721, 510117], "period": ["2024Q1"] * 2, "gmv_cny": [1e7, 2e6], "active_merchants": [10, 3]}
    ).to_parquet(parquet)
    pd.testing.assert_frame_equal(
        read_platform_metrics(parquet, toy_history).frame, read_platform_metrics(csv, toy_history).frame
    )


def test_the_synthetic_flag_is_carried(tmp_path, toy_history):
    path = write(tmp_path, ["371721,2024Q1,1,1,True"], header=HEADER + ",is_synthetic")
    assert read_platform_metrics(path, toy_history).is_synthetic is True


@pytest.mark.realdata
def test_pixian_in_a_2015_file_becomes_pidu_district(tmp_path, code_history):
    path = write(tmp_path, ["510124,2015Q4,3e6,12", "371721,2015Q4,9e6,40", "510117,2017Q1,4e6,15"])
    for vintage in (2015, None):
        frame = read_platform_metrics(path, code_history, code_vintage=vintage).frame
        assert frame[["county_code", "period"]].values.tolist() == [
            ["371721", 2015 * 4 + 3],
            ["510117", 2015 * 4 + 3],
            ["510117", 2017 * 4],
        ]


@pytest.mark.realdata
def test_xingtai_county_is_split_in_equal_parts(tmp_path, code_history):
    path = write(tmp_path, ["130521,2019,1e8,100"])
    frame = read_platform_metrics(path, code_history, code_vintage=2019).frame
    assert frame[["county_code", "gmv_cny"]].values.tolist() == [["130502", 5e7], ["130503", 5e7]]


# --- validation errors --------------------------------------------------------------------------


GOOD = "371721,2024Q1,1e7,10"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("37172,2024Q2,1,1", r"county_code '37172' must be 6 digits 0-9; got 5 characters \(data row 2, line 3 of "),
        ("999999,2024Q2,1,1", r"county_code '999999' must be a county-level code .* valid in no year \(data row 2"),
        ("371700,2024Q2,1,1", r"county_code '371700' must be a .*; got a province or prefecture code \(ending in 00\)"),
        ("371721,2025Q5,1,1", r"period must look like 2025 .* or 2025Q3 .*; got '2025Q5' \(data row 2, line 3"),
        ("371721,1925,1,1", r"with a year in 2000\.\.2099; got '1925'"),
        (
            "371721,2025,1,1",
            r"period must be quarterly in every row, like '2024Q1' in data row 1, line 2 .*; got annual",
        ),
        (
            "371721,2024Q2,-5,1",
            r"gmv_cny must be a number from 0 to 1e\+15; got '-5' \(data row 2, line 3 of .*metrics\.csv\)",
        ),
        ("371721,2024Q2,1,-1", r"active_merchants must be a number from 0 to 1e\+15; got '-1' \(data row 2"),
        ("371721,2024Q2,abc,1", r"gmv_cny must be a number from 0 to 1e\+15; got 'abc' \(data row 2"),
        ("371721,2024Q2,1,12.7", r"active_merchants must be a whole number \(a count\); got '12.7' \(data row 2"),
        ("371721,2024Q2,1e7,", r"active_merchants must be a number from 0 to 1e\+15; got an empty cell \(data row 2"),
        ("371721,2024Q2,inf,1", r"gmv_cny must be a number from 0 to 1e\+15; got 'inf'"),
        ("371721,2024Q2,1.7e308,1", r"gmv_cny must be a number from 0 to 1e\+15; got '1.7e308'"),  # sums to inf
        ("３７１７２１,2024Q2,1,1", r"county_code '３７１７２１' must be 6 digits 0-9; got 6 characters"),
        ("371721,２０２４Q2,1,1", r"period must look like 2025 .* or 2025Q3 .*; got '２０２４Q2' \(data row 2"),
        (
            "371721,2024Q1,5,1",
            r"\(county_code, period\) must be unique; got \('371721', '2024Q1'\) again \(data row 2, line 3 of "
            r".*\), already in data row 1, line 2 of ",
        ),
    ],
)
def test_invalid_rows_are_errors_naming_file_row_and_field(tmp_path, toy_history, line, message):
    path = write(tmp_path, [GOOD, line])
    with pytest.raises(PlatformMetricsError, match=message):
        read_platform_metrics(path, toy_history)


@pytest.mark.parametrize("total_first", [True, False])
def test_a_county_total_beside_its_categories_is_refused_naming_both_rows(tmp_path, toy_history, total_first):
    header = "county_code,period,category,gmv_cny,active_merchants"
    total, part = "371721,2024Q1,,2e7,12", "371721,2024Q1,鞋,1e7,6"
    lines = ["371721,2023Q4,鞋,1e7,6", *([total, part] if total_first else [part, total])]
    path = write(tmp_path, lines, header=header)
    blank_row, other_row = (2, 3) if total_first else (3, 2)
    with pytest.raises(PlatformMetricsError) as caught:  # not added up into 12 + 6 merchants
        read_platform_metrics(path, toy_history)
    assert str(caught.value).startswith("category must be given in every row of a county and period or in none")
    assert f"got ('371721', '2024Q1') without a category (data row {blank_row}, line {blank_row + 1} of" in str(
        caught.value
    )
    assert f"and with '鞋' (data row {other_row}, line {other_row + 1} of" in str(caught.value)
    path = write(tmp_path, [*lines[:1], "371721,2024Q1,,2e7,12", "110009,2024Q1,鞋,1e7,6"], header=header)
    assert len(read_platform_metrics(path, toy_history).frame) == 3  # a total for one county, parts for another


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("county_code,period,gmv_cny,active_merchants,gmv_cny", r"got \['gmv_cny'\] more than once"),
        (",county_code,period,gmv_cny,active_merchants", r"got none for column\(s\) \[1\] \(an index saved"),
    ],
)
def test_a_header_column_repeated_or_unnamed_is_an_error(tmp_path, toy_history, header, message):
    row = "371721,2024Q1,1e7,10,5" if header.endswith("gmv_cny") else "0,371721,2024Q1,1e7,10"
    path = write(tmp_path, [row], header=header)
    with pytest.raises(PlatformMetricsError, match=message):  # not a metric named gmv_cny.1 or Unnamed: 0
        read_platform_metrics(path, toy_history)


def test_a_trailing_comma_on_every_line_is_no_column(tmp_path, toy_history):
    path = write(tmp_path, ["371721,2024Q1,1e7,10,"], header="county_code,period,gmv_cny,active_merchants,")
    frame = read_platform_metrics(path, toy_history).frame
    plain = read_platform_metrics(write(tmp_path, [GOOD], name="plain.csv"), toy_history).frame
    assert list(frame.columns) == list(plain.columns)


def test_a_missing_column_is_named_with_the_columns_found(tmp_path, toy_history):
    path = write(tmp_path, ["371721,2024Q1,1"], header="county_code,period,gmv_cny")
    with pytest.raises(
        PlatformMetricsError,
        match=r"metrics\.csv: missing required column\(s\) \['active_merchants'\]; "
        r"found columns \['county_code', 'period', 'gmv_cny'\]",
    ):
        read_platform_metrics(path, toy_history)


def test_a_further_metric_must_be_a_non_negative_number_or_empty(tmp_path, toy_history):
    path = write(tmp_path, ["371721,2024Q1,1,1,", "510117,2024Q1,1,1,-0.5"], header=HEADER + ",orders")
    with pytest.raises(
        PlatformMetricsError, match=r"orders must be a number from 0 to 1e\+15; got '-0\.5' \(data row 2"
    ):
        read_platform_metrics(path, toy_history)


def test_an_intensive_further_metric_may_be_negative(tmp_path, toy_history):
    path = write(tmp_path, ["371721,2024Q1,1,1,", "510117,2024Q1,1,1,-0.5"], header=HEADER + ",margin_rate")
    frame = read_platform_metrics(path, toy_history, intensive=["margin_rate"]).frame
    assert frame["margin_rate"].tolist()[1] == -0.5
    bad = write(tmp_path, ["371721,2024Q1,1,1,-2e15"], header=HEADER + ",margin_rate", name="bad.csv")
    with pytest.raises(PlatformMetricsError, match=r"margin_rate must be a number from -1e\+15 to 1e\+15; got '-2e15'"):
        read_platform_metrics(bad, toy_history, intensive=["margin_rate"])


@pytest.mark.parametrize(
    "column", ["live orders", "orders[7d]", "gmv_growth_yoy", "gmv_annual_cny", "row", "local_specialty_gmv_share"]
)
def test_a_further_metric_needs_a_name_that_can_be_a_feature(tmp_path, toy_history, column):
    path = write(tmp_path, ["371721,2024Q1,1,1,5"], header=f"{HEADER},{column}")
    with pytest.raises(PlatformMetricsError) as error:
        read_platform_metrics(path, toy_history)
    assert (
        f"becomes the feature platform_<name>, so it must be letters, digits and _ only, and none of the belt"
        f" rule's metrics (gmv_annual_cny, active_merchants, gmv_growth_yoy), of the modes' GMV shares"
        f" (national_brand_gmv_share, cultural_heritage_gmv_share, industrial_transformation_gmv_share,"
        f" local_specialty_gmv_share) nor 'row' (the reader's own row number); got {column!r}: rename the column"
        in str(error.value)
    )


def test_further_metrics_combine_categories_counts_summed_rates_weighted_by_gmv(tmp_path, toy_history):
    path = write(
        tmp_path,
        [
            "371721,2024Q1,300,3,女装,10,0.1",
            "371721,2024Q1,100,1,鞋,2,0.5",
            "371721,2024Q2,0,1,女装,,0.2",
            "371721,2024Q2,0,1,鞋,,0.4",
            "510117,2024Q1,50,1,茶叶,,",
        ],
        header=HEADER + ",category,live_orders,refund_rate",
    )
    metrics = read_platform_metrics(path, toy_history, intensive=["refund_rate"])
    table = further_metrics(metrics)

    assert metrics.further_columns == ["live_orders", "refund_rate"]
    assert table.columns.tolist() == ["county_code", "period", "live_orders", "refund_rate"]
    rows = table.set_index(["county_code", "period"])
    q1, q2 = 2024 * 4, 2024 * 4 + 1
    assert rows.loc[("371721", q1), "live_orders"] == 12.0
    assert rows.loc[("371721", q1), "refund_rate"] == pytest.approx((300 * 0.1 + 100 * 0.5) / 400)
    assert np.isnan(rows.loc[("371721", q2), "live_orders"])  # unknown in every category: unknown
    assert rows.loc[("371721", q2), "refund_rate"] == pytest.approx(0.3)  # no GMV to weigh by: the plain mean
    assert rows.loc[("510117", q1)].isna().all()


def test_the_same_category_twice_is_a_duplicate_but_two_categories_are_not(tmp_path, toy_history):
    header = HEADER + ",category"
    ok = write(tmp_path, ["371721,2024Q1,1,1,女装", "371721,2024Q1,1,1,鞋"], header=header)
    assert len(read_platform_metrics(ok, toy_history).frame) == 2
    bad = write(tmp_path, ["371721,2024Q1,1,1,女装", "371721,2024Q1,1,1,女装"], header=header)
    with pytest.raises(PlatformMetricsError, match=r"got \('371721', '2024Q1', '女装'\) again \(data row 2"):
        read_platform_metrics(bad, toy_history)


def test_a_period_after_the_as_of_limit_is_an_error(tmp_path, toy_history):
    path = write(tmp_path, [GOOD, "371721,2025Q4,1,1"])
    assert len(read_platform_metrics(path, toy_history, as_of_limit="2025Q4").frame) == 2
    with pytest.raises(
        PlatformMetricsError,
        match=r"period must not be after as_of_limit '2025Q3' \(no data from the future\); got '2025Q4' \(data row 2",
    ):
        read_platform_metrics(path, toy_history, as_of_limit="2025Q3")


def test_an_annual_value_is_in_the_future_until_its_fourth_quarter(tmp_path, toy_history):
    path = write(tmp_path, ["371721,2024,1,1", "371721,2025,1,1"])
    assert len(read_platform_metrics(path, toy_history, as_of_limit="2025Q4").frame) == 2
    with pytest.raises(PlatformMetricsError, match=r"got '2025' \(data row 2"):
        read_platform_metrics(path, toy_history, as_of_limit="2025Q3")


def test_rows_need_not_be_sorted_and_gaps_are_allowed(tmp_path, toy_history):
    path = write(tmp_path, ["371721,2025Q1,1,1", "510117,2024Q1,1,1", "371721,2023Q2,1,1"])
    frame = read_platform_metrics(path, toy_history).frame
    assert frame["period"].tolist() == [2023 * 4 + 1, 2025 * 4, 2024 * 4]


def test_row_numbers_count_blank_lines_so_lines_match_an_editor(tmp_path, toy_history):
    path = write(tmp_path, [GOOD, "", "371721,2024Q2,-1,1"])
    with pytest.raises(PlatformMetricsError, match=r"got '-1' \(data row 3, line 4 of "):
        read_platform_metrics(path, toy_history)


def test_parquet_rows_are_named_without_lines(tmp_path, toy_history):
    path = tmp_path / "metrics.parquet"
    pd.DataFrame(
        {"county_code": ["371721", "371721"], "period": ["2024Q1", "2024Q2"], "gmv_cny": [1.0, -2.0],
         "active_merchants": [1, 1]}
    ).to_parquet(path)  # fmt: skip
    with pytest.raises(
        PlatformMetricsError, match=r"gmv_cny must be a number from 0 to 1e\+15; got -2\.0 \(data row 2 of "
    ):
        read_platform_metrics(path, toy_history)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "metrics.xlsx",
            b"",
            r"metrics\.xlsx: file suffix must be one of \['\.csv', '\.parquet', '\.pq'\]; got '\.xlsx'",
        ),
        (
            "metrics.csv",
            (HEADER + "\n371721,2024Q1,1,1,曹县\n").encode("gbk"),
            r"must be UTF-8 encoded \(re-save it as UTF-8; Excel and WPS may save Chinese text as GBK\); got a byte"
            r" UTF-8 cannot read on line 2",
        ),
        ("metrics.csv", b"", r"must start with a header row naming the columns \(county_code, .*got an empty file$"),
        ("metrics.csv", (HEADER + "\n").encode(), r"must hold at least one data row; got only the header"),
        ("metrics.parquet", b"not parquet", r"metrics\.parquet: cannot be read as Parquet"),
    ],
)
def test_unreadable_files_are_errors_naming_the_file(tmp_path, toy_history, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(PlatformMetricsError, match=message):
        read_platform_metrics(path, toy_history)


def test_a_gbk_byte_far_into_a_large_file_is_named_on_its_own_line(tmp_path, toy_history):
    good = "".join(f"371721,{2000 + i // 4}Q{i % 4 + 1},1,1,曹县\n" for i in range(400)).encode()
    body = good * 200  # 80,000 data rows, beyond the chunk pandas decodes at once
    path = tmp_path / "metrics.csv"
    path.write_bytes((HEADER + "\n").encode() + body + "371721,2024Q1,1,1,曹县\n".encode("gbk"))
    with pytest.raises(PlatformMetricsError, match=r"got a byte UTF-8 cannot read on line 80002 \("):
        read_platform_metrics(path, toy_history)


def test_a_row_of_too_many_fields_is_one_line_naming_it(tmp_path, toy_history):
    path = write(tmp_path, [GOOD, "371721,2024Q2,1,1,extra"])
    with pytest.raises(PlatformMetricsError) as caught:
        read_platform_metrics(path, toy_history)
    assert "cannot be read as CSV: Error tokenizing data. C error: Expected 4 fields in line 3, saw 5" in str(
        caught.value
    )
    assert "\n" not in str(caught.value)


def test_a_missing_file_is_an_error(tmp_path, toy_history):
    with pytest.raises(PlatformMetricsError, match=r"absent\.csv: file is missing"):
        read_platform_metrics(tmp_path / "absent.csv", toy_history)
    # named as the setting it came from: a config's path is no option the user typed
    with pytest.raises(PlatformMetricsError, match=r"^\[platform\] metrics_file .*absent\.csv: file is missing"):
        read_platform_metrics(tmp_path / "absent.csv", toy_history, path_name="[platform] metrics_file")


@pytest.mark.parametrize(("magic", "kind"), [(b"PK\x03\x04", "xlsx"), (b"\xd0\xcf\x11\xe0", "xls")])
def test_a_workbook_renamed_csv_is_named_a_workbook_not_an_encoding(tmp_path, toy_history, magic, kind):
    path = tmp_path / "metrics.csv"
    path.write_bytes(magic + bytes(range(256)) * 4)  # SYNTHETIC: a workbook's first bytes, then anything
    with pytest.raises(
        PlatformMetricsError, match=rf"metrics\.csv: must be a CSV file; got an Excel workbook \({kind}\)"
    ):
        read_platform_metrics(path, toy_history)


def test_a_bad_synthetic_flag_is_an_error(tmp_path, toy_history):
    path = write(tmp_path, ["371721,2024Q1,1,1,maybe"], header=HEADER + ",is_synthetic")
    with pytest.raises(PlatformMetricsError, match=r"is_synthetic must be true or false; got 'maybe' \(data row 1"):
        read_platform_metrics(path, toy_history)


def test_intensive_must_name_a_further_metric(tmp_path, toy_history):
    path = write(tmp_path, [GOOD])
    with pytest.raises(PlatformMetricsError, match=r"intensive must name further metric columns .*; got \['rate'\]"):
        read_platform_metrics(path, toy_history, intensive=["rate"])


def test_a_target_outside_the_code_lists_is_an_error(tmp_path, toy_history):
    with pytest.raises(CountyCodeError, match=r"target must be a year of the code lists 2014\.\.2020; got 2023"):
        read_platform_metrics(write(tmp_path, [GOOD]), toy_history, target=2023)


def test_platform_errors_are_source_format_errors():
    assert issubclass(PlatformMetricsError, SourceFormatError)


def test_a_platform_metrics_frame_must_have_its_columns():
    with pytest.raises(PlatformMetricsError, match=r"frequency must be 'annual' or 'quarterly'; got 'monthly'"):
        PlatformMetrics(pd.DataFrame(), "monthly")
    with pytest.raises(PlatformMetricsError, match=r"needs column\(s\) \['category', 'gmv_cny', 'active_merchants'\]"):
        PlatformMetrics(pd.DataFrame(columns=["county_code", "period"]), "annual")


@pytest.mark.parametrize(("column", "hint"), [("categroy", "; did you mean 'category'?"), ("县名", "")])
def test_a_misnamed_column_of_text_is_named_as_such_not_as_a_bad_number(tmp_path, toy_history, column, hint):
    path = write(tmp_path, ["371721,2024Q2,2e7,20,汉服", "371721,2024Q1,1e7,10,"], header=HEADER + f",{column}")
    with pytest.raises(PlatformMetricsError) as raised:
        read_platform_metrics(path, toy_history)
    assert str(raised.value).endswith(
        f"column '{column}' is none of the known columns (active_merchants, category, county_code, county_name,"
        f" gmv_cny, is_synthetic, period, prefecture, province) and holds text ('汉服'), where a further metric"
        f" holds numbers{hint}"
    )
    numbers = write(
        tmp_path, ["371721,2024Q2,2e7,20,5", "371721,2024Q1,1e7,10,x1"], name="n.csv", header=HEADER + ",visits"
    )
    with pytest.raises(PlatformMetricsError, match=r"visits must be a number from 0 to 1e\+15; got 'x1'"):
        read_platform_metrics(numbers, toy_history)  # a column of numbers with a bad cell names the cell


def test_a_further_metric_column_empty_in_every_row_is_refused(tmp_path, toy_history):
    # it became a feature of no value in the panel, and a study of other features
    path = write(tmp_path, ["371721,2024Q2,2e7,20,", "371721,2024Q1,1e7,10,"], header=HEADER + ",live_orders")
    with pytest.raises(PlatformMetricsError, match=r"column 'live_orders' is none of the known columns .* and is empty"
                       r" in every row, where a further metric holds numbers; fill it or drop it$"):  # fmt: skip
        read_platform_metrics(path, toy_history)


def test_a_parquet_file_with_the_county_code_as_its_index_is_read(tmp_path, toy_history):
    frame = pd.DataFrame({"county_code": ["371721"], "period": ["2024Q2"], "gmv_cny": [2e7], "active_merchants": [20]})
    path = tmp_path / "metrics.parquet"
    frame.set_index("county_code").to_parquet(path)
    assert read_platform_metrics(path, toy_history).frame["county_code"].tolist() == ["371721"]


# --- exports as spreadsheets and platforms write them ---------------------------------------------


def test_a_stray_quote_that_joins_rows_is_refused_naming_its_row(tmp_path, toy_history):
    # the rows between an opened quote and the next one would be one cell: rows lost without a word
    path = write(
        tmp_path,
        ["371721,2024Q1,鞋,1,1", '371721,2024Q2,"鞋,2,2', "371721,2024Q3,鞋,3,3", '371721,2024Q4,水果",4,4'],
        header=HEADER.replace("period,", "period,category,"),
    )
    with pytest.raises(
        PlatformMetricsError,
        match=r"category must hold no line break; got '鞋,2,2\\n371721,2024Q3,鞋,3,3\\n371721,2024Q4,水果' "
        r"\(data row 2, line 3 of .*, running over 3 lines\): a quote",
    ):
        read_platform_metrics(path, toy_history)


@pytest.mark.parametrize(
    "column",
    ["year", "quarter", "Date", "province_code", "prefecture_code", "shop_id", "id", "adcode", "ds", "stat_year"],
)
def test_an_identifier_or_date_column_is_no_metric(tmp_path, toy_history, column):
    path = write(tmp_path, ["371721,2024Q1,1,1,2024"], header=f"{HEADER},{column}")
    with pytest.raises(PlatformMetricsError, match=rf"column '{column}' is an identifier or a part of the date"):
        read_platform_metrics(path, toy_history)


@pytest.mark.parametrize("column", ["daily_orders", "paid_orders", "days_active", "weekday", "refund_rate"])
def test_a_metric_whose_name_reads_like_a_date_word_is_a_metric(tmp_path, toy_history, column):
    path = write(tmp_path, ["371721,2024Q1,1,1,3"], header=f"{HEADER},{column}")
    assert read_platform_metrics(path, toy_history).further_columns == [column]


def test_a_prefecture_city_without_counties_goes_to_unmatched_with_its_name(tmp_path, toy_history):
    path = write(tmp_path, ["371721,2024Q1,5,1", "441900,2024Q1,7,2", "442000,2024Q1,3,1"])
    metrics = read_platform_metrics(path, toy_history)
    assert metrics.frame["county_code"].tolist() == ["371721"]
    assert metrics.unmatched["county_code"].tolist() == ["441900", "442000"]
    assert metrics.unmatched["reason"].tolist() == [
        "a prefecture-level city without counties (东莞市), no county of the panel",
        "a prefecture-level city without counties (中山市), no county of the panel",
    ]
    with pytest.raises(PlatformMetricsError, match=r"'110000' must be a county-level code .* got a province or pref"):
        read_platform_metrics(write(tmp_path, ["110000,2024Q1,1,1"], name="province.csv"), toy_history)


def test_a_parquet_file_naming_a_column_twice_is_named_in_one_line(tmp_path, toy_history):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "twice.parquet"
    columns = [pa.array(["371721"]), pa.array(["2024Q1"]), pa.array([1.0]), pa.array([1.0]), pa.array([2.0])]
    pq.write_table(pa.table(columns, names=[*HEADER.split(","), "gmv_cny"]), path)
    with pytest.raises(PlatformMetricsError, match=r"each column must appear once; got \['gmv_cny'\] more than once$"):
        read_platform_metrics(path, toy_history)


@pytest.mark.parametrize(
    ("first_line", "extra", "message"),
    [
        ("sep=,", "", r"the first line must be the header row .* got 'sep=,', the separator hint Excel writes"),
        ("", ",refund_rate", r"holds text \('12%'\), .*; write a percentage as a number \(12% as 0\.12\)"),
        ("", ",promoted", r"holds text \('True'\), .*; a true/false column is no metric: drop it"),
    ],
)
def test_spreadsheet_habits_are_named_with_what_to_do(tmp_path, toy_history, first_line, extra, message):
    value = {",refund_rate": ",12%", ",promoted": ",True"}.get(extra, "")
    path = write(tmp_path, [f"371721,2024Q1,1,1{value}"], header=f"{HEADER}{extra}")
    if first_line:
        path.write_text(f"{first_line}\n{path.read_text(encoding='utf-8')}", encoding="utf-8")
    with pytest.raises(PlatformMetricsError, match=message):
        read_platform_metrics(path, toy_history)


def test_a_carriage_return_in_a_cell_counts_as_a_line_break(tmp_path, toy_history):
    path = tmp_path / "cr.csv"
    path.write_bytes(f'{HEADER},category\n371721,2024Q1,1,1,"鞋\r子"\n'.encode())
    with pytest.raises(PlatformMetricsError, match=r"running over 2 lines\): a quote .* closed 1 line\(s\) later"):
        read_platform_metrics(path, toy_history)


def test_a_folder_is_named_as_one(tmp_path, toy_history):
    (tmp_path / "export.csv").mkdir()
    for folder in (tmp_path, tmp_path / "export.csv"):
        with pytest.raises(PlatformMetricsError, match=r"got a folder$"):
            read_platform_metrics(folder, toy_history)


def test_every_row_of_a_problem_and_every_problem_of_the_rows_are_named_at_once(tmp_path, toy_history):
    # SYNTHETIC rows: three 5-digit codes, a negative GMV, a period written 2025-Q3, among good rows
    rows = [GOOD] * 60
    for i in (10, 20, 30):
        rows[i] = "37172,2024Q1,1e7,10"
    rows[40] = "371721,2024Q2,-5,10"
    rows[50] = "371721,2025-Q3,1e7,10"
    path = write(tmp_path, rows)
    with pytest.raises(PlatformMetricsError) as caught:
        read_platform_metrics(path, toy_history)
    said = str(caught.value)
    assert said.startswith(f"{path}: 3 problems, each named with the first row it is in:\n- ")
    lines = said.splitlines()[1:]
    assert lines[0].startswith("- county_code '37172' must be 6 digits 0-9; got 5 characters (data row 11, line 12")
    assert lines[0].endswith("; also data rows 21, 31")
    assert (
        lines[1].startswith("- period must look like 2025 (annual) or 2025Q3") and "(data row 51, line 52" in lines[1]
    )
    assert lines[2].startswith("- gmv_cny must be a number from 0 to 1e+15; got '-5' (data row 41, line 42")


def test_one_problem_in_many_rows_lists_ten_and_counts_the_others(tmp_path, toy_history):
    path = write(tmp_path, [GOOD, *["371721,2024Q1,abc,10"] * 13])
    with pytest.raises(PlatformMetricsError) as caught:
        read_platform_metrics(path, toy_history)
    said = str(caught.value)
    assert "\n" not in said  # one problem: one line, as before
    assert said.endswith(
        "(data row 2, line 3 of " + str(path) + "); also data rows 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 and 2 more"
    )


def test_gbk_text_that_happens_to_be_valid_utf8_is_named_an_encoding_error(tmp_path, toy_history):
    # 鞋 and 女装 in GBK are valid UTF-8 bytes (Ь, Ůװ): a file of only such words decodes
    path = tmp_path / "metrics.csv"
    lines = [HEADER + ",category", "371721,2024Q1,1e7,10,鞋", "371721,2024Q2,1e7,10,女装", "371721,2024Q3,1e7,10,鞋"]
    path.write_bytes("\n".join(lines).encode("gbk") + b"\n")
    with pytest.raises(
        PlatformMetricsError,
        match=r"must be UTF-8 encoded .*got category 'Ь', which is GBK for '鞋' read as UTF-8 \(data row 1, line 2 of"
        r" .*\); also data rows 2, 3$",
    ):
        read_platform_metrics(path, toy_history)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")  # the same file in UTF-8 is read
    assert set(read_platform_metrics(path, toy_history).frame["category"]) == {"鞋", "女装"}


def test_text_of_other_scripts_is_not_taken_for_gbk():
    from features.platform import gbk_misread

    assert gbk_misread("Ь") == "鞋" and gbk_misread("Ůװ") == "女装"
    for chinese in ("鞋/女装", "女装 鞋", "鞋(女)", "女装-鞋"):  # with ASCII punctuation between
        assert gbk_misread(chinese.encode("gbk").decode("utf-8")) == chinese
    for text in ("café", "Müller", "shoes", "女装", "T恤", "3C数码", ""):  # an ASCII letter, Chinese, or ASCII only
        assert gbk_misread(text) is None
    assert "ࠡࠡ".encode().decode("gbk") == "酄∴牎" and gbk_misread("ࠡࠡ") is None  # ∴ is no Chinese text


def test_a_row_repeated_many_times_names_every_repeat(tmp_path, toy_history):
    path = write(tmp_path, [GOOD] * 4)
    with pytest.raises(PlatformMetricsError, match=r"already in data row 1, line 2 of .*; also data rows 3, 4$"):
        read_platform_metrics(path, toy_history)
