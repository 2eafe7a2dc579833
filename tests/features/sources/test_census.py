"""Census 2010/2020 and tudigong readers, on the real files (literal values read off the raw
tables: 曹县 371721 of the 2010 sheet has 合计 1,365,675 and 制造业 10,230 of 80,671 employed)."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from features.errors import SourceFormatError
from features.sources.base import SourceTable, read_excel_sheet
from features.sources.census import CENSUS_FILES, read_census, read_tudigong

pytestmark = pytest.mark.realdata

CAOXIAN = "371721"
SHARED_VARIABLES = [
    "census_agriculture_share",
    "census_education_years",
    "census_household_size",
    "census_interprovincial_migrant_share",
    "census_it_share",
    "census_manufacturing_share",
    "census_migrant_share",
    "census_population",
    "census_share_age_0_14",
    "census_share_age_15_64",
    "census_share_age_65p",
    "census_transport_share",
    "census_urban_share",
    "census_wholesale_retail_share",
]


@dataclass(frozen=True)
class Run:
    """A reader's result and the raw folder's checksums before and after the read."""

    table: SourceTable
    before: dict[str, str]
    after: dict[str, str]


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def census_run(raw_dir: Path, code_history) -> Run:
    """Both census workbooks read once for the module (the xlsx reads take ~20 s)."""
    before = snapshot(raw_dir / "census")
    table = read_census(raw_dir, code_history)
    return Run(table, before, snapshot(raw_dir / "census"))


@pytest.fixture(scope="module")
def census(census_run: Run) -> SourceTable:
    return census_run.table


@pytest.fixture(scope="module")
def tudigong_run(raw_dir: Path, code_history) -> Run:
    before = snapshot(raw_dir / "tudigong")
    table = read_tudigong(raw_dir, code_history)
    return Run(table, before, snapshot(raw_dir / "tudigong"))


@pytest.fixture(scope="module")
def tudigong(tudigong_run: Run) -> SourceTable:
    return tudigong_run.table


def value(table: SourceTable, code: str, year: int, variable: str) -> float:
    long = table.long
    row = long[(long.county_code == code) & (long.year == year) & (long.variable == variable)]
    assert len(row) == 1, f"{code} {year} {variable}: {len(row)} rows"
    return float(row["value"].iloc[0])


def copy_tudigong(raw_dir: Path, tmp_path: Path) -> Path:
    """A copy of ``tudigong/input`` under ``tmp_path``; returns the copied folder."""
    folder = tmp_path / "tudigong" / "input"
    shutil.copytree(raw_dir / "tudigong" / "input", folder)
    return folder


# --- census: values --------------------------------------------------------------------------


@pytest.mark.slow
def test_caoxian_population_in_both_censuses(census):
    assert value(census, CAOXIAN, 2010, "census_population") == 1_365_675.0
    assert value(census, CAOXIAN, 2020, "census_population") == 1_384_282.0


@pytest.mark.slow
def test_caoxian_manufacturing_share_doubles_between_censuses(census):
    share_2010 = value(census, CAOXIAN, 2010, "census_manufacturing_share")
    share_2020 = value(census, CAOXIAN, 2020, "census_manufacturing_share")
    assert 0.05 < share_2010 < share_2020 < 0.40
    assert round(share_2010, 3) == 0.127
    assert round(share_2020, 3) == 0.218
    assert share_2010 == pytest.approx(10_230 / 80_671)
    assert share_2020 == pytest.approx(12_602 / 57_835)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("year", "variable", "expected"),
    [
        (2010, "census_urban_share", 431_653 / 1_365_675),
        (2020, "census_urban_share", 595_392 / 1_384_282),
        (2010, "census_education_years", 7.73),
        (2020, "census_education_years", 7.9),
        (2010, "census_share_age_0_14", 0.2246),
        (2020, "census_share_age_0_14", 0.2584),
        (2010, "census_share_age_15_64", 0.6833),
        (2020, "census_share_age_65p", 0.1414),
        (2010, "census_migrant_share", (52_737 + 1_896 + 2_826) / 1_365_675),
        (2020, "census_migrant_share", (136_493 + 7_705 + 14_000) / 1_384_282),
        (2010, "census_interprovincial_migrant_share", 2_826 / 1_365_675),
        (2020, "census_interprovincial_migrant_share", 14_000 / 1_384_282),
        (2010, "census_household_size", 1_282_257 / 381_702),
        (2020, "census_household_size", 1_334_411 / 458_545),
        (2010, "census_agriculture_share", 57_755 / 80_671),
        (2020, "census_agriculture_share", 19_879 / 57_835),
        (2010, "census_wholesale_retail_share", 3_128 / 80_671),  # garbled header 信息传输、批发…
        (2020, "census_wholesale_retail_share", 7_688 / 57_835),
        (2010, "census_transport_share", 908 / 80_671),  # garbled header 仓储和邮政业
        (2020, "census_transport_share", 1_652 / 57_835),
        (2010, "census_it_share", 160 / 80_671),  # garbled header 交通运输、计算机服务…
        (2020, "census_it_share", 313 / 57_835),
        (2020, "census_car_share", 15_693 / 44_298),
    ],
)
def test_caoxian_values_match_the_raw_sheets(census, year, variable, expected):
    assert value(census, CAOXIAN, year, variable) == pytest.approx(expected)


@pytest.mark.slow
def test_both_years_share_the_variables_and_cars_are_2020_only(census):
    by_year = census.long.groupby("year")["variable"].unique()
    assert sorted(by_year[2010]) == SHARED_VARIABLES
    assert sorted(by_year[2020]) == sorted([*SHARED_VARIABLES, "census_car_share"])


@pytest.mark.slow
def test_shares_are_fractions(census):
    shares = census.long[census.long.variable.str.contains("share")]
    assert shares["value"].between(0.0, 1.0).all()
    assert len(shares) == 2_810 * 11 - 2 + 2_841 * 12  # 2010: 2 cells invalid in the file


# --- census: coverage and rows dropped -------------------------------------------------------


@pytest.mark.slow
def test_counties_covered_per_year(census, code_history):
    covered = census.long.groupby("year")["county_code"].nunique()
    assert covered.to_dict() == {2010: 2_810, 2020: 2_841}
    assert set(census.long.county_code) <= set(code_history.county_units(2020).county_code)
    missing_2020 = set(code_history.county_units(2020).county_code) - set(
        census.long.loc[census.long.year == 2020, "county_code"]
    )
    assert missing_2020 == {"350527", "460302", "460303"}  # 金门县, 西沙区, 南沙区


@pytest.mark.slow
def test_subtotal_rows_are_gone(census):
    assert census.long.county_code.str.fullmatch(r"\d{6}").all()
    assert not census.long.county_code.str.endswith("00").any()
    assert not census.long.county_code.str[4].eq("7").any()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("year", "counts"),
    [
        (2010, {"rows_read": 3_279, "county_rows": 2_857, "subtotal_rows_dropped": 376,
                "blank_rows_dropped": 33, "pseudo_unit_rows_dropped": 0,
                "rows_without_code_unmatched": 9, "prefecture_rows_unmatched": 4}),
        (2020, {"rows_read": 3_358, "county_rows": 2_848, "subtotal_rows_dropped": 368,
                "blank_rows_dropped": 0, "pseudo_unit_rows_dropped": 95,
                "rows_without_code_unmatched": 42, "prefecture_rows_unmatched": 5}),
    ],
)  # fmt: skip
def test_notes_count_the_rows_of_each_file(census, year, counts):
    notes = census.notes[CENSUS_FILES[year].path]
    assert {key: notes[key] for key in counts} == counts
    assert sum(counts[key] for key in counts if key != "rows_read") == counts["rows_read"]


@pytest.mark.slow
def test_unmatched_rows_say_why(census):
    unmatched = census.unmatched
    assert unmatched.groupby("year").size().to_dict() == {2010: 14, 2020: 52}
    assert unmatched["reason"].notna().all()
    by_code = unmatched.dropna(subset=["county_code"]).set_index(["year", "county_code"])
    assert by_code.loc[(2020, "441900"), "name"] == "东莞市"
    assert by_code.loc[(2020, "441900"), "population"] == 10_466_625.0
    assert by_code.loc[(2010, "469003"), "name"] == "儋州市"  # its successor is prefecture-level
    assert by_code.loc[(2020, "232761"), "name"] == "加格达奇区"
    assert "西沙群岛" in set(unmatched.loc[unmatched.county_code.isna(), "name"])


@pytest.mark.slow
def test_invalid_cells_of_2010_are_listed_and_left_missing(census):
    invalid = census.notes[CENSUS_FILES[2010].path]["invalid_cells_set_missing"]
    assert [(c["county_code"], c["quantity"], c["value"]) for c in invalid] == [
        ("411122", "wholesale_retail", "-1373.0"),  # 临颍县
        ("510682", "transport", "61.3"),  # 什邡市
    ]
    linying = census.long[(census.long.county_code == "411122") & (census.long.year == 2010)]
    assert "census_wholesale_retail_share" not in set(linying.variable)


@pytest.mark.slow
def test_merged_units_sum_counts_and_pool_shares(census):
    # 港闸区 320611 merged into 崇川区 320613 in 2020; the 2020 sheet still lists both.
    assert value(census, "320613", 2020, "census_population") == 780_564 + 403_176
    assert value(census, "320613", 2020, "census_manufacturing_share") == pytest.approx(
        (5_847 + 5_222) / (32_276 + 18_752)
    )


@pytest.mark.slow
def test_read_census_does_not_modify_raw_dir(census_run):
    assert census_run.after == census_run.before


def test_renamed_census_column_is_named_in_the_error(raw_dir, code_history, tmp_path):
    spec = CENSUS_FILES[2010]
    copy = tmp_path / spec.path
    copy.parent.mkdir(parents=True)
    head = read_excel_sheet(raw_dir / spec.path, spec.sheet, nrows=20)
    head.rename(columns={"制造业": "制造"}).to_excel(copy, sheet_name=spec.sheet, index=False)
    with pytest.raises(
        SourceFormatError,
        match=r"census_county_2010_v1\.xlsx \(sheet 'Sheet1'\): missing column\(s\) "
        r"\['制造业'\]; found columns \[.*'制造'",
    ):
        read_census(tmp_path, code_history)


# --- tudigong --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        ("tudigong_manufacturing_share", 0.2179),
        ("tudigong_sales_share", 0.1329),
        ("tudigong_transport_share", 0.0286),
        ("tudigong_it_share", 0.0054),
        ("tudigong_education_years", 7.9),
        ("tudigong_urban_share", 0.4301),
        ("tudigong_ghsl_density", 689.6),
        ("tudigong_ghsl_urban_share", 0.9131),
    ],
)
def test_tudigong_caoxian_values(tudigong, variable, expected):
    assert value(tudigong, CAOXIAN, 2020, variable) == expected


def test_tudigong_coverage_and_notes(tudigong):
    notes = tudigong.notes["tudigong/input"]
    assert notes["rows_read"] == 2_990
    assert notes["county_rows"] == 2_849
    assert notes["pseudo_unit_rows_dropped"] == 134
    assert notes["prefecture_rows_unmatched"] == 4
    assert notes["sansha_rows_unmatched"] == 3
    assert notes["div0_cells_read_as_missing"] == 18
    assert notes["rows_without_census_population"] == 1
    assert notes["counties_covered"] == 2_842
    assert tudigong.long.groupby("variable")["county_code"].nunique().to_dict() == {
        "tudigong_education_years": 2_841,
        "tudigong_ghsl_density": 2_842,
        "tudigong_ghsl_urban_share": 2_842,
        "tudigong_it_share": 2_841,
        "tudigong_manufacturing_share": 2_841,
        "tudigong_sales_share": 2_841,
        "tudigong_transport_share": 2_841,
        "tudigong_urban_share": 2_841,
    }


def test_tudigong_drops_pseudo_units_and_prefecture_rows(tudigong):
    codes = tudigong.long.county_code
    assert not codes.str.endswith("00").any()
    assert not codes.str[4].eq("7").any()
    assert {"441900", "460301", "232761"} <= set(tudigong.unmatched.county_code)


def test_tudigong_kinmen_keeps_ghsl_but_not_placeholder_census_values(tudigong):
    kinmen = tudigong.long[tudigong.long.county_code == "350527"]
    assert sorted(kinmen.variable) == ["tudigong_ghsl_density", "tudigong_ghsl_urban_share"]
    assert value(tudigong, "350527", 2020, "tudigong_ghsl_density") == 370.3


@pytest.mark.slow
def test_tudigong_agrees_with_the_census_but_for_the_two_merged_units(census, tudigong):
    wide = pd.concat([census.long[census.long.year == 2020], tudigong.long]).pivot(
        index="county_code", columns="variable", values="value"
    )
    gap = (wide["census_manufacturing_share"] - wide["tudigong_manufacturing_share"]).abs()
    # merged units differ by weighting: employed (census) vs population (tudigong)
    assert set(gap[gap > 0.001].index) == {"320613", "340209"}


def test_read_tudigong_does_not_modify_raw_dir(tudigong_run):
    assert tudigong_run.after == tudigong_run.before


def test_renamed_tudigong_column_is_named_in_the_error(raw_dir, code_history, tmp_path):
    path = copy_tudigong(raw_dir, tmp_path) / "employment.csv"
    path.write_text(path.read_text(encoding="utf-8-sig").replace("EMPL_INDU_MANU", "MANU", 1))
    with pytest.raises(
        SourceFormatError,
        match=r"employment\.csv: missing column\(s\) \['EMPL_INDU_MANU'\]; "
        r"found columns \[.*'MANU'",
    ):
        read_tudigong(tmp_path, code_history)


def test_tudigong_text_in_a_value_column_is_an_error(raw_dir, code_history, tmp_path):
    path = copy_tudigong(raw_dir, tmp_path) / "ghsl.csv"
    path.write_text(path.read_text(encoding="utf-8-sig").replace(",689.6,", ",n/a,", 1))
    with pytest.raises(SourceFormatError, match=r"ghsl\.csv: column 'GHSL_POP_DENS' must hold numbers"):
        read_tudigong(tmp_path, code_history)


def test_tudigong_duplicate_codes_are_an_error(raw_dir, code_history, tmp_path):
    path = copy_tudigong(raw_dir, tmp_path) / "education.csv"
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    path.write_text("\n".join([*lines, lines[1]]) + "\n")
    with pytest.raises(SourceFormatError, match=r"education\.csv: CODE must be unique; got duplicates \['110101'\]"):
        read_tudigong(tmp_path, code_history)
