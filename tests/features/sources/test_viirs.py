"""Tests of the county night-time light reader on the real file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.codes import CodeHistory
from features.errors import SourceFormatError
from features.sources.base import SourceTable
from features.sources.viirs import RELATIVE_PATH, read_viirs

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def viirs(raw_dir: Path, code_history: CodeHistory) -> SourceTable:
    return read_viirs(raw_dir, code_history)


@pytest.fixture(scope="module")
def raw(raw_dir: Path) -> pd.DataFrame:
    return pd.read_stata(raw_dir / RELATIVE_PATH)


def radiance(table: SourceTable, code: str, year: int) -> float:
    long = table.long
    return long.loc[(long["county_code"] == code) & (long["year"] == year), "value"].item()


def raw_radiance(raw: pd.DataFrame, code: int, year: int) -> float:
    rows = raw[(raw["county_id"] == code) & (raw["year"] == year)]
    return rows["viirs_mean_masked"].item()


def write_copy(frame: pd.DataFrame, root: Path) -> Path:
    path = root / RELATIVE_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_stata(path, write_index=False)
    return root


def test_caoxian_radiance_2013_and_2020(viirs: SourceTable) -> None:
    assert radiance(viirs, "371721", 2013) == pytest.approx(0.465426, abs=1e-6)
    assert radiance(viirs, "371721", 2020) == pytest.approx(1.182392, abs=1e-6)


def test_one_variable_for_2013_to_2020(viirs: SourceTable) -> None:
    assert set(viirs.long["variable"]) == {"viirs_mean"}
    assert sorted(set(viirs.long["year"])) == list(range(2013, 2021))
    assert viirs.long.groupby("year").size().eq(2837).all()


def test_coverage_of_2020_counties(viirs: SourceTable) -> None:
    assert viirs.notes["rows_read"] == 23016
    assert viirs.notes["target_counties_covered"] == 2837
    assert viirs.notes["target_counties_missing"] == [
        "330103", "340212", "350402", "410322", "410381", "460302", "460303",
    ]  # fmt: skip


def test_stray_codes_resolved_to_their_nearest_year(viirs: SourceTable, raw: pd.DataFrame) -> None:
    assert viirs.notes["codes_resolved_to_nearest_year"] == {
        "320602": 2019, "320684": 2019, "330113": 2021, "330114": 2021,
        "421023": 2019, "520221": 2019, "659011": 2021,
    }  # fmt: skip
    # 崇川区 320602 of 2019 -> 320613; 监利县 421023 -> 监利市 421088
    assert radiance(viirs, "320613", 2020) == pytest.approx(raw_radiance(raw, 320602, 2020))
    assert radiance(viirs, "421088", 2015) == pytest.approx(raw_radiance(raw, 421023, 2015))


def test_merge_is_area_weighted(viirs: SourceTable, raw: pd.DataFrame) -> None:
    # 余杭区 330110 of 2020 = 余杭区 (948.6 km²) + 临平区 330113 (285.8 km²) of 2021
    yuhang, linping = raw_radiance(raw, 330110, 2020), raw_radiance(raw, 330113, 2020)
    expected = (yuhang * 948.6 + linping * 285.8) / (948.6 + 285.8)
    assert radiance(viirs, "330110", 2020) == pytest.approx(expected)


def test_far_stray_and_ambiguous_codes_are_not_mapped(viirs: SourceTable) -> None:
    reasons = viirs.unmatched.drop_duplicates("county_code").set_index("county_code")["reason"]
    assert reasons["340211"].startswith("code last valid in 1989")
    assert reasons["460302"].endswith("ambiguous, not mapped")
    assert reasons["441900"] == "not a county-level unit (prefecture-level city without counties)"
    assert reasons["810001"] == "Hong Kong: outside the county code lists"
    assert reasons["320571"] == "code valid in no year of the code lists"
    assert reasons["659011"] == "no county-level unit of the target vintage holds its area"
    assert len(reasons) == viirs.notes["codes_unmatched"] == 39
    assert len(viirs.unmatched) == 39 * 8


def test_renamed_column_fails_naming_file_and_columns(
    raw: pd.DataFrame, tmp_path: Path, code_history: CodeHistory
) -> None:
    root = write_copy(raw.head(20).rename(columns={"viirs_mean_masked": "viirs_mean"}), tmp_path)
    with pytest.raises(
        SourceFormatError,
        match=r"viirs_2013_2020\.dta: missing column\(s\) \['viirs_mean_masked'\]; "
        r"found columns \['county_id', 'year', 'viirs_mean'\]",
    ):
        read_viirs(root, code_history)


def test_duplicated_county_year_fails(raw: pd.DataFrame, tmp_path: Path, code_history: CodeHistory) -> None:
    root = write_copy(pd.concat([raw.head(5), raw.head(1)]), tmp_path)
    with pytest.raises(SourceFormatError, match="must be unique; got 152531 2013 twice"):
        read_viirs(root, code_history)


def test_short_code_fails(raw: pd.DataFrame, tmp_path: Path, code_history: CodeHistory) -> None:
    frame = raw.head(5).copy()
    frame.loc[2, "county_id"] = 15292
    with pytest.raises(SourceFormatError, match="county_id must be 6 digits; got '15292'"):
        read_viirs(write_copy(frame, tmp_path), code_history)


def test_missing_file_fails(tmp_path: Path, code_history: CodeHistory) -> None:
    with pytest.raises(SourceFormatError, match=r"viirs_2013_2020\.dta: file is missing"):
        read_viirs(tmp_path, code_history)
