"""Tests of the prefecture panel readers on the real files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from features.codes import CodeHistory
from features.errors import SourceFormatError
from features.sources.base import SourceTable, read_excel_sheet
from features.sources.prefecture import (
    GDP_PATH,
    GDP_SHEET,
    POPULATION_PATH,
    POPULATION_SHEET,
    REVENUE_PATH,
    read_prefecture,
    read_prefecture_revenue,
)

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def prefecture(raw_dir: Path, code_history: CodeHistory) -> SourceTable:
    return read_prefecture(raw_dir, code_history)


@pytest.fixture(scope="module")
def revenue(raw_dir: Path, code_history: CodeHistory) -> SourceTable:
    return read_prefecture_revenue(raw_dir, code_history)


def value(table: SourceTable, code: str, year: int, variable: str) -> float:
    long = table.long
    rows = long[(long["county_code"] == code) & (long["year"] == year)]
    return rows.loc[rows["variable"] == variable, "value"].item()


def write_sheet(frame: pd.DataFrame, path: Path, sheet: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_excel(path, sheet_name=sheet, index=False)


def test_heze_values_for_caoxian(prefecture: SourceTable) -> None:
    # 菏泽 371700 in 2020: GDP 3483.11 亿元, 879.90 万 residents, 2019 GDP 3409.98
    assert value(prefecture, "371721", 2020, "pref_gdp") == pytest.approx(3483.11)
    assert value(prefecture, "371721", 2020, "pref_population") == pytest.approx(879.90)
    assert value(prefecture, "371721", 2020, "pref_gdp_per_capita") == pytest.approx(3483.11 / 879.90 * 1e4)
    assert value(prefecture, "371721", 2020, "pref_secondary_share") == pytest.approx(0.401833, abs=1e-6)
    assert value(prefecture, "371721", 2020, "pref_tertiary_share") == pytest.approx(0.498833, abs=1e-6)
    assert value(prefecture, "371721", 2020, "pref_gdp_growth") == pytest.approx(3483.11 / 3409.98 - 1)


def test_variables_and_years(prefecture: SourceTable) -> None:
    years = prefecture.long.groupby("variable")["year"].agg(["min", "max"])
    assert years.to_dict("index") == {
        "pref_gdp": {"min": 2000, "max": 2023},
        "pref_gdp_growth": {"min": 2001, "max": 2023},
        "pref_gdp_per_capita": {"min": 2000, "max": 2023},
        "pref_population": {"min": 1997, "max": 2024},  # 1997: registered (test below)
        "pref_secondary_share": {"min": 2000, "max": 2023},
        "pref_tertiary_share": {"min": 2000, "max": 2023},
    }
    assert prefecture.long["value"].notna().all()


def test_municipality_joins_by_province_code(prefecture: SourceTable) -> None:
    assert value(prefecture, "110105", 2020, "pref_gdp") == pytest.approx(36102.6)  # 北京


def test_province_governed_counties_get_no_values(prefecture: SourceTable) -> None:
    assert prefecture.notes["counties_without_prefecture"] == 30
    assert not prefecture.long["county_code"].isin(["429004", "469001", "659001"]).any()


def test_coverage_of_2020_counties(prefecture: SourceTable) -> None:
    assert prefecture.notes["target_counties"] == 2844
    assert prefecture.notes["target_counties_covered"] == 2814


def test_renamed_prefecture_codes_are_followed(prefecture: SourceTable) -> None:
    assert prefecture.notes["prefecture_codes_followed"] == {
        "542400": "540600", "652100": "650400", "652200": "650500",
    }  # fmt: skip
    assert value(prefecture, "650402", 2010, "pref_gdp") == pytest.approx(182.7866)  # 吐鲁番地区


def test_prefecture_years_not_joined(prefecture: SourceTable) -> None:
    assert prefecture.notes["gdp_prefecture_years_not_joined"] == 111
    assert prefecture.notes["population_prefecture_years_not_joined"] == 108
    gdp = prefecture.unmatched[prefecture.unmatched["table"] == "gdp"]
    counts = gdp.groupby("prefecture_code").size().to_dict()
    assert counts == {
        "341400": 11, "371200": 18, "441900": 24, "442000": 24,
        "469003": 9, "620200": 24, "654100": 1,
    }  # fmt: skip
    laiwu = gdp.loc[gdp["prefecture_code"] == "371200", "reason"].unique().tolist()
    assert laiwu == ["absorbed by 370100, which has its own row"]


def test_laiwu_counties_take_jinan_values(prefecture: SourceTable) -> None:
    assert value(prefecture, "370116", 2018, "pref_gdp") == pytest.approx(7856.56)  # 济南 2018


def test_footer_rows_are_dropped_and_counted(prefecture: SourceTable) -> None:
    assert prefecture.notes["gdp_rows_dropped"] == {"blank": 15, "footer_text": 2}
    assert prefecture.notes["population_rows_dropped"] == {"blank": 7, "footer_text": 2}
    assert prefecture.notes["gdp_prefecture_years_read"] == 7974
    assert prefecture.notes["population_prefecture_years_read"] == 8046


def test_renamed_gdp_column_fails_naming_file_and_columns(
    raw_dir: Path, tmp_path: Path, code_history: CodeHistory
) -> None:
    head = read_excel_sheet(raw_dir / GDP_PATH, GDP_SHEET).head(30)
    write_sheet(head.rename(columns={"城市代码": "代码"}), tmp_path / GDP_PATH, GDP_SHEET)
    with pytest.raises(
        SourceFormatError,
        match=r"prefecture_gdp_sectors_2000_2023\.xlsx \(sheet '面板数据2000-2023'\): missing "
        r"column\(s\) \['城市代码'\]; found columns \['年度标识', '城市名称', '代码',",
    ):
        read_prefecture(tmp_path, code_history)


def test_renamed_population_sheet_fails(raw_dir: Path, tmp_path: Path, code_history: CodeHistory) -> None:
    (tmp_path / GDP_PATH).parent.mkdir(parents=True)
    shutil.copy(raw_dir / GDP_PATH, tmp_path / GDP_PATH)
    head = read_excel_sheet(raw_dir / POPULATION_PATH, POPULATION_SHEET).head(30)
    write_sheet(head, tmp_path / POPULATION_PATH, "Sheet1")
    with pytest.raises(SourceFormatError, match=r"missing sheet '面板数据'; found sheets \['Sheet1'\]"):
        read_prefecture(tmp_path, code_history)


def test_row_without_code_fails(raw_dir: Path, tmp_path: Path, code_history: CodeHistory) -> None:
    head = read_excel_sheet(raw_dir / GDP_PATH, GDP_SHEET).head(30)
    head.loc[7, "城市代码"] = None
    write_sheet(head, tmp_path / GDP_PATH, GDP_SHEET)
    with pytest.raises(SourceFormatError, match="row 9: year and prefecture code must be whole"):
        read_prefecture(tmp_path, code_history)


def test_revenue_for_caoxian_in_yi_yuan(revenue: SourceTable) -> None:
    # 菏泽: 15.9653 in 2003 (given in 亿元), 172,245 in 2004 (given in 万元)
    assert value(revenue, "371721", 2003, "pref_fiscal_revenue") == pytest.approx(15.9653)
    assert value(revenue, "371721", 2004, "pref_fiscal_revenue") == pytest.approx(17.2245)
    assert value(revenue, "371721", 2017, "pref_fiscal_revenue") == pytest.approx(186.5512)


def test_revenue_units_and_coverage(revenue: SourceTable) -> None:
    assert revenue.name == "prefecture_revenue"
    assert sorted(set(revenue.long["year"])) == list(range(1997, 2018))
    assert revenue.notes["rows_revenue_wan_converted_to_yi"] == 5634
    assert revenue.notes["rows_revenue_yi_as_given"] == 946
    assert revenue.notes["rows_revenue_unit_unknown"] == 30
    assert revenue.notes["prefecture_years_not_joined"] == 111
    assert revenue.notes["target_counties_covered"] == 2726  # no municipality in the file


def test_revenue_renamed_column_fails(raw_dir: Path, tmp_path: Path, code_history: CodeHistory) -> None:
    head = pd.read_stata(raw_dir / REVENUE_PATH).head(20)[["year", "prefcode", "prefecture", "gdp"]]
    path = tmp_path / REVENUE_PATH
    path.parent.mkdir(parents=True)
    head.assign(fiscal=1.0).to_stata(path, write_index=False, version=118)
    with pytest.raises(SourceFormatError, match=r"prefecture\.dta: missing column\(s\) \['revenue'\]; found"):
        read_prefecture_revenue(tmp_path, code_history)


def test_prefectures_without_resident_population_take_the_registered(prefecture: SourceTable) -> None:
    # the resident file has no autonomous prefectures, leagues or 地区; prefecture.dta's registered
    # population fills them: 大理白族自治州 2015, 354.4 万 (洱源县 532930)
    filled = prefecture.notes["prefectures_with_registered_population"]
    assert len(filled) == 37 and {"532900", "152500", "653100", "222400"} <= set(filled)
    assert not {"654000", "232700"} & set(filled)  # 伊犁州 and 大兴安岭: their figures cover more than their counties
    assert value(prefecture, "532930", 2015, "pref_population") == pytest.approx(354.4, abs=1e-3)
    gdp = value(prefecture, "532930", 2015, "pref_gdp")
    assert value(prefecture, "532930", 2015, "pref_gdp_per_capita") == pytest.approx(gdp / 354.4 * 1e4, rel=1e-5)
    assert not prefecture.long.query("county_code == '532930' and year > 2017 and variable == 'pref_population'").size
    assert "371700" not in filled  # 菏泽 keeps its resident series (test_heze_values_for_caoxian)


def test_a_one_year_spike_of_gdp_is_masked_not_read_as_growth(prefecture: SourceTable) -> None:
    """淮南's GDP of 2022 in the file is a fifth of 2021's and 2023's: read as growth, it made
    every 淮南 county's prefecture GDP growth the panel's largest, and its counties the top
    candidates of a quarterly forecast."""
    assert prefecture.notes["gdp_one_year_spikes_masked"] == [
        "150600 2022: 23158.7 (4715.7 before, 5849.86 after)",  # 鄂尔多斯, five times
        "230900 2011: 940.346 (305.224 before, 298.908 after)",  # four 黑龙江 prefectures swap values
        "231000 2011: 316.045 (764.979 before, 981.052 after)",
        "231100 2011: 912.094 (261.099 before, 366.082 after)",
        "231200 2011: 124.66 (733.429 before, 1063.54 after)",
        "340400 2022: 295.4 (1457.05 before, 1601.6 after)",  # 淮南
    ]
    long = prefecture.long
    tianjiaan = long[(long["county_code"] == "340403") & long["year"].between(2021, 2023)]  # 田家庵区, 淮南
    assert sorted(tianjiaan.loc[tianjiaan["variable"] == "pref_gdp", "year"]) == [2021, 2023]
    assert sorted(tianjiaan.loc[tianjiaan["variable"] == "pref_gdp_growth", "year"]) == [2021]  # not 2022, 2023
    assert value(prefecture, "340403", 2021, "pref_gdp") == pytest.approx(1457.05)
    # a one-way revision stays: 包头 150200 fell to 0.59 times its GDP in 2017 and did not come back
    assert value(prefecture, "150203", 2017, "pref_gdp_growth") == pytest.approx(0.591324 - 1, abs=1e-6)


def test_spikes_are_told_from_revisions_and_from_gaps() -> None:
    """SYNTHETIC series: a spike up, a spike down, a step (a revision), a spike beside a missing year."""
    from features.sources.prefecture import _without_spikes

    rows = {"A": [100, 100, 300, 100], "B": [100, 40, 100, 100], "C": [100, 100, 40, 40], "D": [100, None, 300, 100]}
    gdp = pd.DataFrame(
        [
            {"prefecture_code": code, "year": 2000 + i, "gdp": value, "secondary_share": 0.4, "tertiary_share": 0.5}
            for code, values in rows.items()
            for i, value in enumerate(values)
            if value is not None
        ]
    )
    masked, told = _without_spikes(gdp)
    assert told == ["A 2002: 300 (100 before, 100 after)", "B 2001: 40 (100 before, 100 after)"]
    gone = masked[masked["gdp"].isna()]
    assert gone[["prefecture_code", "year"]].values.tolist() == [["A", 2002], ["B", 2001]]
    assert gone[["secondary_share", "tertiary_share"]].isna().all().all()
    assert masked["gdp"].notna().sum() == len(gdp) - 2
