"""County code history and harmonisation, on the real areacodes data and on tiny fixtures."""

from __future__ import annotations

import pandas as pd
import pytest

from features.codes import CodeHistory, CodeRecord, check_code, harmonise
from features.errors import CountyCodeError

TARGET = 2020


@pytest.mark.parametrize(
    ("year", "units"),
    [(2009, 2861), (2014, 2854), (2016, 2851), (2019, 2846), (2020, 2844), (2024, 2846)],
)
def test_county_units_per_year_match_the_yearly_lists(code_history, year, units):
    assert len(code_history.county_units(year)) == units


def test_caoxian_is_unchanged_2009_to_2024(code_history):
    for year in range(2009, 2025):
        units = code_history.county_units(year).set_index("county_code")
        assert units.loc["371721", "county_name"] == "曹县"
        assert code_history.forward("371721", year, 2024) == {"371721": 1.0}
    assert units.loc["371721", "prefecture"] == "菏泽市"
    assert units.loc["371721", "province"] == "山东省"


@pytest.mark.parametrize(
    ("code", "prefecture", "prefecture_code"),
    [
        ("419001", "省直辖县级行政区划", "410000"),  # 济源市
        ("429004", "省直辖县级行政区划", "420000"),  # 仙桃市
        ("469001", "省直辖县级行政区划", "460000"),  # 五指山市
        ("659001", "自治区直辖县级行政区划", "650000"),  # 石河子市
        ("110101", "北京市", "110000"),  # 东城区: a municipality is its own prefecture
        ("500101", "重庆市", "500000"),  # 万州区
    ],
)
def test_a_unit_its_province_governs_has_no_prefecture_named_as_its_province(
    code_history, code, prefecture, prefecture_code
):
    units = code_history.county_units(TARGET).set_index("county_code")
    assert (units.loc[code, "prefecture"], units.loc[code, "prefecture_code"]) == (prefecture, prefecture_code)
    assert units["prefecture"].notna().all()


@pytest.mark.parametrize(
    ("old", "year", "new"),
    [
        ("510124", 2015, "510117"),  # 郫县 -> 郫都区 (2016)
        ("411023", 2015, "411003"),  # 许昌县 -> 建安区 (2016)
        ("341822", 2018, "341882"),  # 广德县 -> 广德市 (2019)
        ("440183", 2013, "440118"),  # 增城市 -> 增城区 (2014)
    ],
)
def test_renamed_and_converted_codes_map_to_their_successor(code_history, old, year, new):
    assert code_history.forward(old, year, TARGET) == {new: 1.0}
    assert code_history.record_at(new, TARGET) is not None


def test_xingtai_county_splits_into_two_districts(code_history):
    assert code_history.forward("130521", 2019, TARGET) == {"130502": 0.5, "130503": 0.5}
    assert code_history.record_at("130503", 2019).name == "桥西区"
    assert code_history.record_at("130503", 2020).name == "信都区"


def test_backward_crosswalk_maps_a_later_carve_out_to_its_donor(code_history):
    table = code_history.crosswalk(2024, TARGET)
    linping = table[table["from_code"] == "330113"]  # 临平区, carved out of 余杭区 in 2021
    assert linping[["to_code", "share"]].values.tolist() == [["330110", 1.0]]


def test_county_units_of_a_missing_year_is_an_error(code_history):
    with pytest.raises(CountyCodeError, match=r"year must be one of the code lists 2009\.\.2024; got 1990"):
        code_history.county_units(1990)


def test_check_code_names_the_row():
    assert check_code(371721.0, "row 3") == "371721"
    with pytest.raises(CountyCodeError, match=r"county_code '37172' must be 6 digits; got 5 \(row 14"):
        check_code("37172", "row 14 of scores.csv")


# --- logic fixtures: a made-up history with one merge and one split --------------------------


@pytest.fixture
def toy_history() -> CodeHistory:
    """A synthetic history: A+B merge into M in 2015, S splits into S1 and S2 in 2015."""
    records = [
        CodeRecord("110001", "A", 2009, 2015, (("110009", 2015),)),
        CodeRecord("110002", "B", 2009, 2015, (("110009", 2015),)),
        CodeRecord("110009", "M", 2015, 10_000, ()),
        CodeRecord("110003", "S", 2009, 2015, (("110004", 2015), ("110005", 2015))),
        CodeRecord("110004", "S1", 2015, 10_000, ()),
        CodeRecord("110005", "S2", 2015, 10_000, ()),
    ]
    old = pd.DataFrame({"code": ["110000", "110001", "110002", "110003"], "name": list("PABS")})
    new = pd.DataFrame({"code": ["110000", "110009", "110004", "110005"], "name": ["P", "M", "S1", "S2"]})
    return CodeHistory(records, {2014: old, 2020: new})


@pytest.fixture
def old_values() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "county_code": ["110001", "110002", "110003", "999999"],
            "population": [100.0, 300.0, 80.0, 5.0],
            "urban_share": [0.2, 0.6, 0.5, 0.1],
        }
    )


def test_merge_sums_counts_and_population_weights_shares(toy_history, old_values):
    result = harmonise(
        old_values,
        toy_history,
        vintage=2014,
        target=2020,
        counts=["population"],
        intensive=["urban_share"],
        weight="population",
    )
    merged = result.table.set_index("county_code").loc["110009"]
    assert merged["population"] == 400.0
    assert merged["urban_share"] == pytest.approx((0.2 * 100 + 0.6 * 300) / 400)


def test_split_divides_counts_and_copies_shares(toy_history, old_values):
    result = harmonise(
        old_values,
        toy_history,
        vintage=2014,
        target=2020,
        counts=["population"],
        intensive=["urban_share"],
    )
    table = result.table.set_index("county_code")
    assert table.loc["110004", "population"] == 40.0
    assert table.loc["110005", "urban_share"] == 0.5


def test_split_weights_divide_counts_by_successor_weight(toy_history, old_values):
    area = pd.Series({"110004": 3.0, "110005": 1.0})
    result = harmonise(
        old_values,
        toy_history,
        vintage=2014,
        target=2020,
        counts=["population"],
        split_weights=area,
    )
    table = result.table.set_index("county_code")
    assert table.loc["110004", "population"] == 60.0
    assert table.loc["110005", "population"] == 20.0


def test_unknown_code_is_reported_not_dropped(toy_history, old_values):
    result = harmonise(old_values, toy_history, vintage=2014, target=2020, counts=["population"])
    assert result.unmatched["county_code"].tolist() == ["999999"]
    assert "999999" not in set(result.table["county_code"])


def test_harmonise_does_not_modify_its_input(toy_history, old_values):
    before = old_values.copy()
    harmonise(old_values, toy_history, vintage=2014, target=2020, counts=["population"])
    pd.testing.assert_frame_equal(old_values, before)


def test_harmonise_names_a_missing_column(toy_history, old_values):
    with pytest.raises(ValueError, match=r"harmonise needs column\(s\) \['gdp'\]"):
        harmonise(old_values, toy_history, vintage=2014, target=2020, counts=["gdp"])
