"""The Taobao-village reader, on the real 2014-2016 rosters and on small name tables."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from features.errors import CountyCodeError, SourceFormatError
from features.sources.base import read_excel_sheet
from features.sources.taobao import (
    TOWN_MOVE_COLUMNS,
    ZONE_HOST_COLUMNS,
    load_town_moves,
    load_zone_hosts,
    match_county_names,
    read_taobao,
    read_taobao_villages,
)

pytestmark = pytest.mark.realdata

TARGET = 2020
COUNTIES_2020 = 2844


@pytest.fixture(scope="module")
def taobao(raw_dir, code_history):
    return read_taobao(raw_dir, code_history, target=TARGET)


@pytest.fixture(scope="module")
def villages(raw_dir, code_history):
    return read_taobao_villages(raw_dir, code_history, target=TARGET)


def _values(long: pd.DataFrame, variable: str, code: str) -> list[float]:
    rows = long[(long["variable"] == variable) & (long["county_code"] == code)]
    return rows.sort_values("year")["value"].tolist()


@pytest.mark.parametrize(
    ("code", "counts"),
    [
        ("371721", [7, 34, 48]),  # 曹县
        ("330782", [6, 37, 65]),  # 义乌市
        ("320324", [5, 22, 40]),  # 睢宁县
    ],
)
def test_villages_per_county_in_2014_2015_2016(taobao, code, counts):
    assert _values(taobao.long, "taobao_villages", code) == counts


def test_counties_with_a_village_per_year(taobao):
    villages = taobao.long[taobao.long["variable"] == "taobao_villages"]
    belts = villages[villages["value"] >= 1].groupby("year").size()
    assert belts.to_dict() == {2014: 80, 2015: 181, 2016: 218}


def test_villages_read_and_placed_per_year(taobao):
    villages = taobao.long[taobao.long["variable"] == "taobao_villages"]
    assert villages.groupby("year")["value"].sum().to_dict() == {2014: 212, 2015: 780, 2016: 1311}
    assert [taobao.notes[f"villages_read_{year}"] for year in (2014, 2015, 2016)] == [
        212,
        780,
        1311,
    ]
    assert taobao.notes["blank_rows_skipped_2014"] == 1


def test_every_county_of_the_target_vintage_has_an_explicit_zero(taobao):
    sizes = taobao.long.groupby(["variable", "year"]).size()
    assert sizes.to_dict() == {
        ("taobao_towns", 2016): COUNTIES_2020,
        ("taobao_villages", 2014): COUNTIES_2020,
        ("taobao_villages", 2015): COUNTIES_2020,
        ("taobao_villages", 2016): COUNTIES_2020,
    }
    assert _values(taobao.long, "taobao_villages", "110101") == [0.0, 0.0, 0.0]  # 东城区


def test_taobao_towns_2016(taobao):
    towns = taobao.long[taobao.long["variable"] == "taobao_towns"]
    assert towns["value"].sum() == 135
    assert (towns["value"] > 0).sum() == 64
    assert _values(taobao.long, "taobao_towns", "445281") == [7.0]  # 普宁市
    assert _values(taobao.long, "taobao_towns", "371721") == [6.0]  # 曹县


def test_development_zones_go_to_the_reviewed_host_county_of_their_town(taobao, villages):
    assert taobao.unmatched.empty  # every roster row is placed: the zones through zone_hosts.csv
    zones = villages[villages["match_rule"] == "zone_host"]
    named = zones["county"].fillna(zones["town"]).value_counts().to_dict()
    assert named == {"白沟新城": 15, "台商投资区": 5, "伊滨区": 1, "高新区": 1}
    hosts = zones.groupby(["year", "county_code"]).size().to_dict()
    assert hosts == {
        (2014, "130684"): 5,  # 白沟新城 (town column, no county) -> 高碑店市
        (2015, "130684"): 5,
        (2016, "130684"): 5,
        (2016, "350521"): 5,  # 台商投资区 东园镇, 张坂镇, 洛阳镇 -> 惠安县
        (2016, "371702"): 1,  # 菏泽 高新区 吕陵镇 -> 牡丹区
        (2016, "410381"): 1,  # 伊滨区 庞村镇 -> 偃师市
    }
    assert _values(taobao.long, "taobao_villages", "130684") == [5.0, 6.0, 8.0]  # a belt from 2014
    assert _values(taobao.long, "taobao_towns", "130684") == [1.0]


def test_a_zone_without_a_host_stays_unmatched_with_a_reason(raw_dir, code_history, tmp_path):
    hosts = load_zone_hosts()
    path = tmp_path / "zone_hosts.csv"
    hosts[hosts["zone"] != "白沟新城"].to_csv(path, index=False)
    unmatched = read_taobao(raw_dir, code_history, target=TARGET, zone_hosts=path).unmatched
    assert unmatched.groupby(["table", "year"]).size().to_dict() == {
        ("towns", 2016): 1,
        ("villages", 2014): 5,
        ("villages", 2015): 5,
        ("villages", 2016): 5,
    }
    reasons = unmatched.set_index(["year", "village"])["reason"]
    assert reasons[(2015, "白五村")] == (
        f"河北省 保定市 白沟新城: a development zone, not a county-level unit, and not in {path},"
        " the reviewed host counties of zones' towns"
    )
    assert reasons[(2014, "白五村")].endswith(
        f"the town column names 白沟新城, a development zone, not a county-level unit, and not in {path}"
    )


ZONE_HOSTS = ("zone_hosts.csv", ZONE_HOST_COLUMNS, load_zone_hosts)
TOWN_MOVES = ("town_moves.csv", TOWN_MOVE_COLUMNS, load_town_moves)


@pytest.mark.parametrize(
    ("table", "line", "message"),
    [
        (
            ZONE_HOSTS,
            "河北省,保定市,白沟新城,,13068,高碑店市,x",
            "line 2: host_code must be a 6-digit county code; got '13068'",
        ),
        (ZONE_HOSTS, "河北省,保定市,,,130684,高碑店市,x", "line 2: zone must be a name; got an empty value"),
        (
            TOWN_MOVES,
            "浙江省,温州市,苍南县,龙港镇,33038,龙港市,2019,x",
            "line 2: to_code must be a 6-digit county code",
        ),
        (TOWN_MOVES, "浙江省,温州市,苍南县,,330383,龙港市,2019,x", "line 2: town must be a name; got an empty value"),
        (
            TOWN_MOVES,
            "浙江省,温州市,苍南县,龙港镇,330383,龙港市,19,x",
            "line 2: since must be a year such as 2019; got '19'",
        ),
    ],
)
def test_a_bad_row_of_a_reviewed_table_is_refused_naming_line_field_and_value(tmp_path, table, line, message):
    name, columns, load = table
    path = tmp_path / name
    path.write_text(",".join(columns) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(SourceFormatError, match=message):
        load(path)


def test_a_zone_hosted_by_a_code_outside_the_roster_year_is_refused(raw_dir, code_history, tmp_path):
    hosts = load_zone_hosts()
    hosts.loc[hosts["zone"] == "白沟新城", "host_code"] = "132404"  # 高碑店市 before 1994
    path = tmp_path / "zone_hosts.csv"
    hosts.to_csv(path, index=False)
    with pytest.raises(
        SourceFormatError, match="must be a county of the 2014 code list, the roster's year; got 132404"
    ):
        read_taobao(raw_dir, code_history, target=TARGET, zone_hosts=path)


@pytest.mark.parametrize(
    ("year", "county", "code", "rule"),
    [
        (2014, "增城市", "440118", "suffix"),  # 增城区 since 2014
        (2014, "永年县", "130408", "exact+successor_name"),  # split 2016: 永年区 + 丛台区
        (2015, "南康市", "360703", "suffix"),  # 南康区 since 2013
        (2016, "郫县", "510117", "stale:2015"),  # 郫都区, renamed late in 2016
        (2016, "许昌县", "411003", "stale:2015"),  # 建安区
        (2014, "武清区", "120114", "exact"),  # prefecture written 市辖区
        (2015, "房山区", "110111", "exact"),  # province written 北京
    ],
)
def test_villages_match_by_the_documented_rules(villages, year, county, code, rule):
    rows = villages[(villages["year"] == year) & (villages["county"] == county)]
    assert set(rows["county_code"]) == {code}
    assert set(rows["match_rule"]) == {rule}


def test_village_table_columns_and_products(villages):
    assert list(villages.columns) == [
        "year",
        "province",
        "prefecture",
        "county",
        "town",
        "village",
        "product",
        "county_code",
        "match_rule",
    ]
    assert villages.groupby("year")["product"].count().to_dict() == {2014: 212, 2015: 0, 2016: 0}
    assert villages["county_code"].isna().sum() == 0
    first = villages.iloc[0]
    assert (first["county"], first["village"], first["product"], first["county_code"]) == (
        "闽侯县",
        "建平村",
        "家具",
        "350121",
    )


def test_village_table_counts_agree_with_the_long_table(taobao, villages):
    counts = villages.dropna(subset=["county_code"]).groupby(["county_code", "year"]).size()
    long = taobao.long[taobao.long["variable"] == "taobao_villages"]
    nonzero = long[long["value"] > 0].set_index(["county_code", "year"])["value"]
    pd.testing.assert_series_equal(counts.astype(float).sort_index(), nonzero.sort_index(), check_names=False)


def test_names_without_suffixes_short_prefectures_and_autonomous_counties(code_history):
    names = pd.DataFrame(
        {
            "province": ["北京", "云南", "湖北省", "天津市", "浙江省"],
            "prefecture": ["北京市", "大理州", "宜昌市", "市辖区", "杭州市"],
            "county": ["房山", "大理市", "长阳县", "武清区", "鼓楼区"],
        },
        index=[10, 11, 12, 13, 14],
    )
    before = names.copy()
    matched = match_county_names(names, code_history, 2016)
    pd.testing.assert_frame_equal(names, before)
    assert matched.index.tolist() == [10, 11, 12, 13, 14]
    assert matched["roster_code"].tolist()[:4] == ["110111", "532901", "420528", "120114"]
    assert matched["match_rule"].tolist()[:4] == ["suffix", "exact", "autonomous", "exact"]
    assert pd.isna(matched.loc[14, "roster_code"])
    assert "no single county-level unit" in matched.loc[14, "reason"]


def test_matching_a_year_without_a_code_list_is_an_error(code_history):
    names = pd.DataFrame({"province": ["山东省"], "prefecture": ["菏泽市"], "county": ["曹县"]})
    with pytest.raises(CountyCodeError, match=r"year must be one of the code lists .*; got 1990"):
        match_county_names(names, code_history, 1990)


def test_a_roster_with_a_renamed_column_names_file_column_and_columns_found(raw_dir, code_history, tmp_path):
    folder = tmp_path / "taobao_villages"
    folder.mkdir()
    source = raw_dir / "taobao_villages" / "taobao-village-list-2014.xlsx"
    roster = read_excel_sheet(source, "Table 1", dtype=str)
    roster.rename(columns={"区/县": "区县"}).to_excel(folder / source.name, sheet_name="Table 1", index=False)
    with pytest.raises(SourceFormatError) as caught:
        read_taobao(tmp_path, code_history)
    message = str(caught.value)
    assert "taobao-village-list-2014.xlsx (sheet 'Table 1')" in message
    assert "missing column(s) ['区/县']" in message
    assert "found columns ['省', '市', '区县', '镇/乡/街道', '村', '主营产品']" in message


def test_a_filled_empty_column_in_the_2016_roster_is_an_error(raw_dir, code_history, tmp_path):
    folder = tmp_path / "taobao_villages"
    folder.mkdir()
    for name in ("taobao-village-list-2014.xlsx", "taobao-village-list-2015.xlsx"):
        shutil.copy(raw_dir / "taobao_villages" / name, folder / name)
    source = raw_dir / "taobao_villages" / "taobaovillage_list_2016.xlsx"
    roster = read_excel_sheet(source, "Table 1", header=1, dtype=str)
    roster.loc[0, "Unnamed: 3"] = "x"
    roster.to_excel(folder / source.name, sheet_name="Table 1", index=False, startrow=1)
    with pytest.raises(SourceFormatError, match=r"column 'Unnamed: 3' must be empty; got 'x'"):
        read_taobao(tmp_path, code_history)


def test_a_zone_given_twice_under_short_and_long_names_is_refused(tmp_path):
    path = tmp_path / "zone_hosts.csv"
    lines = ["河北省,保定市,白沟新城,,130684,高碑店市,x", "河北,保定,白沟新城,,130684,高碑店市,y"]
    path.write_text("\ufeff" + ",".join(ZONE_HOST_COLUMNS) + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SourceFormatError, match=r"lines \[2, 3\] repeat one"):
        load_zone_hosts(path)


def test_a_town_that_became_a_county_takes_its_villages_there(taobao, villages, raw_dir, code_history, tmp_path):
    """龙港市 (2019) is 苍南县's former town 龙港镇; the code history gives it no predecessor, so its
    two villages stayed in 苍南县 and 龙港市, a county with Taobao villages, was ranked a candidate."""
    moved = villages[villages["match_rule"].str.endswith("+town_moved", na=False)]
    assert moved[["year", "town", "village", "county_code"]].values.tolist() == [
        [2015, "龙港镇", "芦浦村", "330383"],
        [2015, "龙港镇", "下埠村", "330383"],
        [2016, "龙港镇", "芦浦村", "330383"],
        [2016, "龙港镇", "下埠村", "330383"],
    ]
    assert _values(taobao.long, "taobao_villages", "330383") == [0.0, 2.0, 2.0]  # 龙港市
    assert _values(taobao.long, "taobao_villages", "330327") == [0.0, 2.0, 8.0]  # 苍南县 keeps the others
    before = read_taobao(raw_dir, code_history, target=2018).long  # no 龙港市 yet: the villages are 苍南县's
    assert _values(before, "taobao_villages", "330327") == [0.0, 4.0, 10.0]

    moves = load_town_moves()
    moves.loc[0, "to_code"] = "330384"
    path = tmp_path / "town_moves.csv"
    moves.to_csv(path, index=False)
    with pytest.raises(SourceFormatError, match=r"to_code of 苍南县 龙港镇 must be a county of the 2020 code list"):
        read_taobao(raw_dir, code_history, target=TARGET, town_moves=path)
