"""Tests of the county centroid reader on the real cnmaps-derived file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.codes import CodeHistory
from features.errors import SourceFormatError
from features.sources.base import SourceTable
from features.sources.centroids import GHSL_PATH, RELATIVE_PATH, TERRAIN_PATH, county_area, read_centroids

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def centroids(raw_dir: Path, code_history: CodeHistory) -> SourceTable:
    return read_centroids(raw_dir, code_history)


def value(table: SourceTable, code: str, variable: str) -> float:
    long = table.long
    return long.loc[(long["county_code"] == code) & (long["variable"] == variable), "value"].item()


def small_copy(raw_dir: Path, tmp_path: Path) -> pd.DataFrame:
    (tmp_path / RELATIVE_PATH).parent.mkdir(parents=True)
    for folder in (GHSL_PATH.parts[0], TERRAIN_PATH.parts[0]):  # the own area and coordinates of merged counties
        (tmp_path / folder).symlink_to(raw_dir / folder)
    return pd.read_csv(raw_dir / RELATIVE_PATH, dtype={"adcode": str}, nrows=20)


def test_caoxian_centroid_and_area(centroids: SourceTable) -> None:
    assert value(centroids, "371721", "area_km2") == pytest.approx(1970.6)
    assert value(centroids, "371721", "centroid_lon") == pytest.approx(115.547337)
    assert value(centroids, "371721", "centroid_lat") == pytest.approx(34.820969)


def test_static_values_are_dated_2020(centroids: SourceTable) -> None:
    assert set(centroids.long["year"]) == {2020}
    assert set(centroids.long["variable"]) == {"centroid_lon", "centroid_lat", "area_km2"}


def test_every_county_of_2020_is_covered(centroids: SourceTable) -> None:
    assert centroids.notes["target_counties"] == 2844
    assert centroids.notes["target_counties_covered"] == 2844
    assert len(centroids.long) == 3 * 2844


def test_pseudo_units_and_outside_codes_are_set_aside(centroids: SourceTable) -> None:
    reasons = centroids.unmatched.set_index("county_code")["reason"]
    assert {"441900", "442000", "460400", "620200", "710000"} <= set(reasons.index)
    assert reasons["441900"].startswith("not a county-level unit")
    assert reasons["810001"] == "Hong Kong district: outside the county code lists"
    assert reasons["232718"] == "code valid in no year of the code lists"
    assert len(reasons) == 33
    assert centroids.notes["rows_read"] == 2875


def test_sansha_amap_codes_are_moved_to_the_legal_codes(centroids: SourceTable) -> None:
    assert centroids.notes["amap_codes_fixed"] == ["460301", "460302"]
    assert value(centroids, "460302", "centroid_lon") == pytest.approx(113.282219)  # 西沙区
    assert value(centroids, "460303", "centroid_lat") == pytest.approx(8.390292)  # 南沙区


def test_counties_a_later_merge_joined_keep_their_own_area_and_coordinates(centroids: SourceTable) -> None:
    # 孟津区 410308 of 2022 (811 km²) merged 吉利区 410306 and 孟津县 410322 in 2021: divided back
    # equally, each had 405 km² and the merged unit's centroid, 0 km apart.
    assert value(centroids, "410306", "area_km2") == pytest.approx(80.77, abs=0.01)  # census 2020
    assert value(centroids, "410322", "area_km2") == pytest.approx(731.40, abs=0.01)
    assert value(centroids, "410306", "centroid_lon") == pytest.approx(112.589052)  # terrain file
    assert value(centroids, "410322", "centroid_lon") == pytest.approx(112.445252)
    own = ["330102", "330103", "330104", "330105", "350402", "350403", "410306", "410322"]
    assert centroids.notes["areas_from_census"] == own
    assert centroids.notes["centroids_from_terrain"] == own
    points = centroids.long[centroids.long["variable"].isin(["centroid_lon", "centroid_lat"])]
    wide = points.pivot(index="county_code", columns="variable", values="value")
    assert not wide.duplicated().any()  # no two counties share a centroid


def test_county_area_by_file_codes_and_by_target_codes(raw_dir: Path, code_history: CodeHistory) -> None:
    by_file = county_area(raw_dir)
    by_target = county_area(raw_dir, code_history, 2020)
    assert by_file["371721"] == pytest.approx(1970.6)
    assert "330113" in by_file.index and "330113" not in by_target.index
    assert len(by_target) == 2844
    assert by_target.name == "area_km2"


def test_parts_of_one_code_are_combined_area_weighted(raw_dir: Path, tmp_path: Path, code_history: CodeHistory) -> None:
    rows = small_copy(raw_dir, tmp_path)
    island = rows.iloc[[0]].assign(kind="海岛", centroid_lon=118.0, centroid_lat=40.0, approx_area_km2=10.0)
    land = rows.iloc[[0]].assign(centroid_lon=116.0, centroid_lat=39.0, approx_area_km2=30.0)
    pd.concat([land, island, rows.iloc[1:]]).to_csv(tmp_path / RELATIVE_PATH, index=False)
    table = read_centroids(tmp_path, code_history)
    assert table.notes["parts_combined"] == 1
    assert value(table, "110101", "area_km2") == pytest.approx(40.0)
    assert value(table, "110101", "centroid_lon") == pytest.approx(116.5)
    assert value(table, "110101", "centroid_lat") == pytest.approx(39.25)


def test_renamed_column_fails_naming_file_and_columns(raw_dir: Path, tmp_path: Path) -> None:
    rows = small_copy(raw_dir, tmp_path)
    rows.rename(columns={"approx_area_km2": "area"}).to_csv(tmp_path / RELATIVE_PATH, index=False)
    with pytest.raises(
        SourceFormatError,
        match=r"county_centroids_cnmaps_1\.1\.2\.csv: missing column\(s\) \['approx_area_km2'\]; "
        r"found columns \[.*'area'\]",
    ):
        county_area(tmp_path)


def test_malformed_code_fails_naming_the_row(raw_dir: Path, tmp_path: Path) -> None:
    rows = small_copy(raw_dir, tmp_path)
    rows.loc[3, "adcode"] = "11010"
    rows.to_csv(tmp_path / RELATIVE_PATH, index=False)
    with pytest.raises(SourceFormatError, match=r"'11010' must be 6 digits; got 5 \(row 5 of"):
        county_area(tmp_path)


def test_missing_file_fails(tmp_path: Path) -> None:
    with pytest.raises(SourceFormatError, match="file is missing"):
        county_area(tmp_path)
