"""Reader of county terrain relief (``terrain_relief/county_terrain_relief.xlsx``, sheet ``区县``).

Columns used: ``行政区划代码`` (code) and ``地形起伏度`` (terrain relief, a dimensionless index;
the file also has 经度/纬度, which the centroid reader covers). Terrain does not change: the
value is static and dated to the vintage of its codes, ``VINTAGE``.

The codes are of about 2014: 37 of the 2,849 are not valid in 2014 (85 in 2015, 49 in 2013), and
the file mixes codes that ended in 2014 (九台市 220181) with codes that began in 2014 (鹿泉区
130110). They are mapped from the 2014 vintage by :func:`~features.codes.harmonise` with
nearest-year resolution; relief is intensive (a merge averages, a split copies).

Rows set aside, with their reason in ``unmatched``:

* units without a county code (东莞 441900, 中山 442000, 嘉峪关 620200: codes ending in ``00``);
* codes whose nearest valid year lies more than ``MAX_STRAY_YEARS`` from 2014: 131027 was 霸县
  until 1989 and would fall on 霸州市, which has its own row; next to the missing 大厂回族自治县
  131028 it is more likely a typo for that county, which is not guessed;
* eleven rows have a code but no name, province or coordinates: besides 131027, the Amap-style
  units 232703/232704 (大兴安岭), 632824-632826 (海西 行委), 420402-420404 (probably 鄂州's
  420702-420704 under a wrong prefix; not guessed), 532303 and 平安县 630221 (valid: mapped);
  those valid in no year are reported by :func:`harmonise`;
* 儋州市 469003, a county-level code until 2015, has no county-level successor.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.codes import CodeHistory, harmonise
from features.errors import SourceFormatError
from features.sources.base import SourceTable, read_excel_sheet, require_columns, validate_long

NAME = "terrain"
RELATIVE_PATH = Path("terrain_relief") / "county_terrain_relief.xlsx"
SHEET = "区县"
CODE, COUNTY_NAME, RELIEF = "行政区划代码", "县域名称", "地形起伏度"
VINTAGE = 2014
MAX_STRAY_YEARS = 10
VARIABLE = "terrain_relief"


def read_terrain(raw_dir: Path, history: CodeHistory, target: int = 2020) -> SourceTable:
    """Read county terrain relief, harmonised to the codes of ``target``.

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
        ``terrain_relief``: the terrain relief index (dimensionless), one row per county,
        static and dated ``VINTAGE`` (2014), the year of its codes.
    """
    path = raw_dir / RELATIVE_PATH
    raw = read_excel_sheet(path, SHEET, dtype={CODE: str})
    require_columns(raw, [CODE, COUNTY_NAME, RELIEF], path, SHEET)
    frame = _check_rows(raw, path)
    reasons = frame["county_code"].map(lambda code: _set_aside_reason(code, history))
    harmonised = harmonise(
        frame.loc[reasons.isna(), ["county_code", VARIABLE]], history, vintage=VINTAGE,
        target=target, intensive=[VARIABLE],
    )  # fmt: skip
    unmatched = pd.concat(
        [
            frame[reasons.notna()].assign(reason=reasons[reasons.notna()]),
            frame[frame["county_code"].isin(harmonised.unmatched["county_code"])].assign(
                reason=lambda rows: rows["county_code"].map(lambda c: _unknown_reason(c, history))
            ),
        ],
        ignore_index=True,
    )
    long = pd.DataFrame(
        {
            "county_code": harmonised.table["county_code"],
            "year": VINTAGE,
            "variable": VARIABLE,
            "value": harmonised.table[VARIABLE].astype(float),
        }
    )
    notes = {
        "rows_read": len(raw),
        "rows_without_name": int(frame["county_name"].isna().sum()),
        "codes_unmatched": len(unmatched),
        "codes_resolved_to_nearest_year": _resolved_to_nearest_year(frame, reasons, history),
        "dated": VINTAGE,
        **_coverage(long, history, target),
    }
    return SourceTable(NAME, validate_long(long, NAME), unmatched, notes)


def _check_rows(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Code, name and relief of each row; codes must be 6 digits, unique, relief numeric."""
    frame = raw[[CODE, COUNTY_NAME, RELIEF]].rename(
        columns={CODE: "county_code", COUNTY_NAME: "county_name", RELIEF: VARIABLE}
    )
    bad = ~frame["county_code"].astype("string").str.fullmatch(r"\d{6}").fillna(False)
    bad |= pd.to_numeric(frame[VARIABLE], errors="coerce").isna()
    if bad.any():
        row = frame[bad].iloc[0]
        raise SourceFormatError(
            f"{path} (sheet {SHEET!r}) row {int(bad.idxmax()) + 2}: {CODE} must be 6 digits and "
            f"{RELIEF} a number; got {row['county_code']!r} and {row[VARIABLE]}"
        )
    if frame["county_code"].duplicated().any():
        code = frame.loc[frame["county_code"].duplicated(), "county_code"].iloc[0]
        raise SourceFormatError(f"{path} (sheet {SHEET!r}): {CODE} {code} occurs twice")
    return frame.assign(**{VARIABLE: frame[VARIABLE].astype(float)})


def _set_aside_reason(code: str, history: CodeHistory) -> str | None:
    """Why a code is not passed to :func:`harmonise`, or None when it is."""
    if code.endswith("00"):
        return "not a county-level unit (prefecture-level city without counties)"
    year = history.nearest_year(code, VINTAGE)
    if year is not None and abs(year - VINTAGE) > MAX_STRAY_YEARS:
        return (
            f"code last valid in {year}, more than {MAX_STRAY_YEARS} years from the source's "
            f"vintage {VINTAGE}: a reused or mistyped number, not an old code"
        )
    return None


def _unknown_reason(code: str, history: CodeHistory) -> str:
    if history.nearest_year(code, VINTAGE) is None:
        return "code valid in no year of the code lists"
    return "no county-level unit of the target vintage holds its area"


def _resolved_to_nearest_year(frame: pd.DataFrame, reasons: pd.Series, history: CodeHistory) -> dict[str, int]:
    codes = frame.loc[reasons.isna(), "county_code"]
    years = {code: history.nearest_year(code, VINTAGE) for code in codes}
    return {code: year for code, year in years.items() if year not in (None, VINTAGE)}


def _coverage(long: pd.DataFrame, history: CodeHistory, target: int) -> dict:
    units = set(history.county_units(target)["county_code"])
    covered = units & set(long.loc[long["value"].notna(), "county_code"])
    return {
        "target_counties": len(units),
        "target_counties_covered": len(covered),
        "target_counties_missing": sorted(units - covered),
    }
