"""Tests of the terrain relief reader on the real file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.codes import CodeHistory
from features.errors import SourceFormatError
from features.sources.base import SourceTable, read_excel_sheet
from features.sources.terrain import CODE, RELATIVE_PATH, RELIEF, SHEET, read_terrain

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def terrain(raw_dir: Path, code_history: CodeHistory) -> SourceTable:
    return read_terrain(raw_dir, code_history)


@pytest.fixture(scope="module")
def sheet(raw_dir: Path) -> pd.DataFrame:
    return read_excel_sheet(raw_dir / RELATIVE_PATH, SHEET, dtype={CODE: str})


def relief(table: SourceTable, code: str) -> float:
    return table.long.loc[table.long["county_code"] == code, "value"].item()


def write_copy(frame: pd.DataFrame, root: Path) -> Path:
    path = root / RELATIVE_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_excel(path, sheet_name=SHEET, index=False)
    return root


def test_caoxian_relief(terrain: SourceTable) -> None:
    assert relief(terrain, "371721") == pytest.approx(0.053932, abs=1e-6)


def test_static_and_dated_to_its_code_vintage(terrain: SourceTable) -> None:
    assert set(terrain.long["year"]) == {2014}
    assert set(terrain.long["variable"]) == {"terrain_relief"}
    assert terrain.long["county_code"].is_unique


def test_coverage_of_2020_counties(terrain: SourceTable) -> None:
    assert terrain.notes["rows_read"] == 2849
    assert terrain.notes["target_counties_covered"] == 2816
    assert {"420702", "420703", "420704", "131028"} <= set(terrain.notes["target_counties_missing"])


def test_renamed_county_takes_its_old_value(terrain: SourceTable, sheet: pd.DataFrame) -> None:
    old = sheet.set_index(CODE)[RELIEF]
    assert relief(terrain, "220113") == pytest.approx(old["220181"])  # 九台市 -> 九台区 (2014)
    assert relief(terrain, "110118") == pytest.approx(old["110228"])  # 密云县 -> 密云区 (2015)


def test_far_stray_is_not_averaged_into_bazhou(terrain: SourceTable) -> None:
    # 131027 (霸县 until 1989) would otherwise be averaged into 霸州市 131081
    assert relief(terrain, "131081") == pytest.approx(0.007216, abs=1e-6)
    reasons = terrain.unmatched.set_index("county_code")["reason"]
    assert reasons["131027"].startswith("code last valid in 1989")


def test_unmatched_rows(terrain: SourceTable) -> None:
    reasons = terrain.unmatched.set_index("county_code")["reason"]
    assert sorted(reasons.index) == [
        "131027", "232703", "232704", "420402", "420403", "420404", "441900",
        "442000", "469003", "532303", "620200", "632824", "632825", "632826",
    ]  # fmt: skip
    assert reasons["420402"] == "code valid in no year of the code lists"
    assert reasons["469003"] == "no county-level unit of the target vintage holds its area"
    assert terrain.notes["rows_without_name"] == 11


def test_renamed_column_fails_naming_file_and_columns(
    sheet: pd.DataFrame, tmp_path: Path, code_history: CodeHistory
) -> None:
    root = write_copy(sheet.head(10).rename(columns={RELIEF: "起伏度"}), tmp_path)
    with pytest.raises(
        SourceFormatError,
        match=r"county_terrain_relief\.xlsx \(sheet '区县'\): missing column\(s\) "
        r"\['地形起伏度'\]; found columns \[.*'起伏度'\]",
    ):
        read_terrain(root, code_history)


def test_duplicated_code_fails(sheet: pd.DataFrame, tmp_path: Path, code_history: CodeHistory) -> None:
    root = write_copy(pd.concat([sheet.head(5), sheet.head(1)]), tmp_path)
    with pytest.raises(SourceFormatError, match="行政区划代码 110101 occurs twice"):
        read_terrain(root, code_history)


def test_missing_relief_fails(sheet: pd.DataFrame, tmp_path: Path, code_history: CodeHistory) -> None:
    frame = sheet.head(5).copy()
    frame.loc[3, RELIEF] = None
    with pytest.raises(SourceFormatError, match=r"row 5: .* a number; got '110106' and nan"):
        read_terrain(write_copy(frame, tmp_path), code_history)
