"""Tests of the poverty-county reader on the real list."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.codes import CodeHistory
from features.errors import SourceFormatError
from features.sources.base import SourceTable, read_csv_checked, read_excel_sheet
from features.sources.poverty import CODE, EXIT_YEAR, RELATIVE_PATH, SHEET, read_poverty

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def poverty(raw_dir: Path, code_history: CodeHistory) -> SourceTable:
    return read_poverty(raw_dir, code_history)


@pytest.fixture(scope="module")
def sheet(raw_dir: Path) -> pd.DataFrame:
    return read_excel_sheet(raw_dir / RELATIVE_PATH, SHEET, dtype={CODE: str})


def flags(table: SourceTable, code: str) -> list[float]:
    rows = table.long[table.long["county_code"] == code].sort_values("year")
    return rows["value"].tolist()


def write_copy(frame: pd.DataFrame, root: Path) -> Path:
    path = root / RELATIVE_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_excel(path, sheet_name=SHEET, index=False)
    return root


def test_exit_year_counts(poverty: SourceTable) -> None:
    assert poverty.notes["rows_read"] == 832
    assert poverty.notes["exit_year_counts"] == {
        2016: 28, 2017: 125, 2018: 282, 2019: 345, 2020: 52,
    }  # fmt: skip


def test_the_listed_counties_keep_the_flag_after_they_left_the_list(poverty: SourceTable) -> None:
    # as a yearly status the flag fell from 831 to 0 by 2020 (803, 678, 396, 52, 0 from 2016), and
    # counties that left the list in 2019 were scored as never poor
    poor = poverty.long.groupby("year")["value"].sum()
    assert poor.to_dict() == {year: 831.0 for year in range(2013, 2021)}


def test_every_county_and_year_is_explicit(poverty: SourceTable) -> None:
    assert poverty.notes["target_counties"] == 2844
    assert poverty.notes["target_counties_listed"] == 831
    assert len(poverty.long) == 2844 * 8
    assert set(poverty.long["value"]) == {0.0, 1.0}


def test_flag_is_one_for_a_listed_county_before_and_after_its_exit_year(poverty: SourceTable) -> None:
    assert flags(poverty, "371721") == [0.0] * 8  # 曹县: not on the national list
    assert flags(poverty, "130631") == [1.0] * 8  # 望都县, exit 2016
    assert flags(poverty, "653226") == [1.0] * 8  # 于田县, exit 2020


def test_prefecture_codes_fixed_by_name(poverty: SourceTable) -> None:
    assert poverty.notes["codes_fixed_by_name"] == {"532600": "532601", "622900": "622901"}
    assert flags(poverty, "532601") == [1.0] * 8  # 文山市, exit 2019


def test_mixed_vintage_codes(poverty: SourceTable) -> None:
    assert poverty.notes["codes_resolved_to_nearest_year"] == {"520581": 2021, "610981": 2021}
    assert flags(poverty, "520522") == [1.0] * 8  # 黔西县 under 黔西市 520581
    assert flags(poverty, "130705") == [1.0] * 8  # 宣化县 under 宣化区's code
    assert poverty.notes["names_differing_from_code_list"] == 38


def test_administrative_committee_is_unmatched(poverty: SourceTable) -> None:
    assert set(poverty.unmatched["county_code"]) == {"632825"}
    assert set(poverty.unmatched["county_name"]) == {"大柴旦行委"}
    assert len(poverty.unmatched) == 8


def test_csv_copy_holds_the_same_list(raw_dir: Path, sheet: pd.DataFrame) -> None:
    csv = read_csv_checked(raw_dir / "poverty_counties" / "poverty_county_list.csv")
    csv_codes = csv[CODE].astype(int).astype(str)
    xlsx = dict(zip(sheet[CODE], sheet[EXIT_YEAR], strict=True))
    assert dict(zip(csv_codes, csv[EXIT_YEAR].astype(int), strict=True)) == xlsx


def test_renamed_column_fails_naming_file_and_columns(
    sheet: pd.DataFrame, tmp_path: Path, code_history: CodeHistory
) -> None:
    root = write_copy(sheet.head(10).rename(columns={EXIT_YEAR: "退出年份"}), tmp_path)
    with pytest.raises(
        SourceFormatError,
        match=r"poverty_counties_832_with_exit_year\.xlsx \(sheet '整理数据'\): missing "
        r"column\(s\) \['摘帽时间'\]; found columns \[.*'退出年份'",
    ):
        read_poverty(root, code_history)


def test_exit_year_out_of_range_fails(sheet: pd.DataFrame, tmp_path: Path, code_history: CodeHistory) -> None:
    frame = sheet.head(10).copy()
    frame.loc[4, EXIT_YEAR] = 2021
    with pytest.raises(SourceFormatError, match=r"row 6: 摘帽时间 must be a year in 2013\.\.2020"):
        read_poverty(write_copy(frame, tmp_path), code_history)


def test_malformed_code_fails(sheet: pd.DataFrame, tmp_path: Path, code_history: CodeHistory) -> None:
    frame = sheet.head(10).copy()
    frame.loc[1, CODE] = "13092"
    with pytest.raises(SourceFormatError, match="row 3: 行政区划代码 must be 6 digits; got '13092'"):
        read_poverty(write_copy(frame, tmp_path), code_history)
