"""Tests of the CEADs county CO₂ reader on the real file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.codes import CodeHistory
from features.errors import SourceFormatError
from features.sources.base import SourceTable, read_excel_sheet
from features.sources.co2 import CODE, RELATIVE_PATH, SHEET, read_co2

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def co2(raw_dir: Path, code_history: CodeHistory) -> SourceTable:
    return read_co2(raw_dir, code_history)


@pytest.fixture(scope="module")
def sheet_head(raw_dir: Path) -> pd.DataFrame:
    """The first rows of the real sheet and its closing note row."""
    raw = read_excel_sheet(raw_dir / RELATIVE_PATH, SHEET, dtype={CODE: str})
    return pd.concat([raw.head(6), raw.tail(1)], ignore_index=True)


def emissions(table: SourceTable, code: str, year: int) -> float:
    long = table.long
    return long.loc[(long["county_code"] == code) & (long["year"] == year), "value"].item()


def write_copy(frame: pd.DataFrame, root: Path) -> Path:
    path = root / RELATIVE_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_excel(path, sheet_name=SHEET, index=False)
    return root


def test_caoxian_emissions(co2: SourceTable) -> None:
    assert emissions(co2, "371721", 1997) == pytest.approx(2.428205, abs=1e-6)
    assert emissions(co2, "371721", 2010) == pytest.approx(4.862785, abs=1e-6)
    assert emissions(co2, "371721", 2017) == pytest.approx(5.235620, abs=1e-6)


def test_one_variable_for_1997_to_2017(co2: SourceTable) -> None:
    assert set(co2.long["variable"]) == {"co2_mt"}
    assert sorted(set(co2.long["year"])) == list(range(1997, 2018))
    assert co2.long["value"].notna().all()


def test_suffixed_rows_are_added_to_their_code(co2: SourceTable) -> None:
    assert co2.notes["suffixed_rows_added_to_their_code"] == 3
    # 滨湖区 6.543534 + 新吴区 320211（2） 3.870865; 吴中区 14.552799 + 工业园区 9.313688
    assert emissions(co2, "320211", 2017) == pytest.approx(6.543534 + 3.870865, abs=1e-6)
    assert emissions(co2, "320506", 2017) == pytest.approx(14.552799 + 9.313688, abs=1e-6)


def test_pre_2009_zengdu_is_split_by_area(co2: SourceTable) -> None:
    # 421302 曾都区 (before 2009 also 随县), 7.283145 Mt in 2017
    parts = emissions(co2, "421303", 2017), emissions(co2, "421321", 2017)
    assert sum(parts) == pytest.approx(7.283145, abs=1e-6)
    assert parts[1] > parts[0]
    assert co2.notes["codes_resolved_to_nearest_year"] == {
        "320323": 2009,
        "320683": 2008,
        "421302": 2008,
        "532522": 2009,
        "532621": 2009,
    }


def test_footer_is_dropped_and_counted(co2: SourceTable) -> None:
    assert co2.notes["rows_read"] == 2737
    assert co2.notes["footer_rows_dropped"] == {"empty": 1, "note": 1}
    assert co2.notes["codes"] == 2732


def test_codes_that_are_not_counties_are_reported(co2: SourceTable) -> None:
    reasons = co2.unmatched.drop_duplicates("county_code").set_index("county_code")["reason"]
    assert sorted(reasons.index) == [
        "230801", "410201", "441900", "442000", "460201", "469003", "620201",
    ]  # fmt: skip
    assert reasons["410201"].startswith("city-proper aggregate")
    assert reasons["469003"] == "valid in 2010 but no county-level successor in the target vintage"
    assert len(co2.unmatched) == 7 * 21


def test_coverage_of_2020_counties(co2: SourceTable) -> None:
    assert co2.notes["target_counties"] == 2844
    assert co2.notes["target_counties_covered"] == 2691
    assert co2.notes["targets_partly_covered"] == [
        "140214", "320104", "320106", "320508", "320706", "321003",
    ]  # fmt: skip


def test_renamed_column_fails_naming_file_and_columns(
    sheet_head: pd.DataFrame, tmp_path: Path, code_history: CodeHistory
) -> None:
    root = write_copy(sheet_head.rename(columns={CODE: "DISTCODE"}), tmp_path)
    with pytest.raises(
        SourceFormatError,
        match=r"co2\.xlsx \(sheet 'Unit \(Million tons\)'\): missing column\(s\) "
        r"\['DISTCODE地区代码'\]; found columns \['DISTCODE',",
    ):
        read_co2(root, code_history)


def test_renamed_sheet_fails(sheet_head: pd.DataFrame, tmp_path: Path, code_history: CodeHistory) -> None:
    path = tmp_path / RELATIVE_PATH
    path.parent.mkdir(parents=True)
    sheet_head.to_excel(path, sheet_name="Sheet1", index=False)
    with pytest.raises(SourceFormatError, match=r"missing sheet 'Unit \(Million tons\)'"):
        read_co2(tmp_path, code_history)


def test_missing_note_row_fails(sheet_head: pd.DataFrame, tmp_path: Path, code_history: CodeHistory) -> None:
    root = write_copy(sheet_head.iloc[:-1], tmp_path)
    with pytest.raises(SourceFormatError, match="must end with one note row starting 'Note:'; got 0"):
        read_co2(root, code_history)


def test_unknown_suffix_form_fails(sheet_head: pd.DataFrame, tmp_path: Path, code_history: CodeHistory) -> None:
    frame = sheet_head.copy()
    frame.loc[2, CODE] = "340104(2)"
    with pytest.raises(SourceFormatError, match=r"row 4: .* got '340104\(2\)'"):
        read_co2(write_copy(frame, tmp_path), code_history)


def test_suffix_without_main_row_fails(sheet_head: pd.DataFrame, tmp_path: Path, code_history: CodeHistory) -> None:
    frame = sheet_head.copy()
    frame.loc[2, CODE] = "999999（2）"
    with pytest.raises(SourceFormatError, match=r"suffixed code\(s\) \['999999'\] must have a main"):
        read_co2(write_copy(frame, tmp_path), code_history)
