"""Reader of CEADs county CO₂ emissions (``ceads_county_co2/co2.xlsx``).

Sheet ``Unit (Million tons)``: one row per county, ``DISTCODE地区代码`` and the annual emissions
``C1997`` ... ``C2017`` in million tonnes (Chen et al. 2020, *Scientific Data* 7:391). Codes are
of the 2010 division (the file's own closing note says so); they are mapped to the target
vintage by :func:`~features.codes.harmonise` as a count (summed on a merge, divided on a split
in proportion to the successors' areas from the centroid file).

What the reader handles explicitly:

* **Suffixed codes.** Three rows carry a code with a full-width suffix, ``320211（2）`` 新吴区,
  ``320506（2）`` 工业园区 and ``321112（2）`` 镇江新区: development zones listed as a second part
  of the 2010 county that held their land (滨湖区, 吴中区, 丹徒区). Each is added to the row of
  its code, so the 2010 unit is whole again. Any other suffix, or a suffix without its main row,
  is an error.
* **Footer.** After the last county come one empty row and one note (``Note: County name is
  based on the division of China's counties in 2010``); both are dropped and counted. Any other
  row without a valid code is an error.
* **Codes that are not counties** (市辖区 aggregates such as 开封 410201 and 佳木斯 230801,
  prefecture-level cities without counties such as 东莞 441900): valid in no year of the code
  lists, so :func:`harmonise` returns them as unmatched; they are reported, never spread.
* **Old codes** (曾都区 421302, 铜山 320323, ...) are resolved to the nearest year in which they
  were valid; 421302 (曾都区 before its 2009 split) is divided between 曾都区 and 随县 by area.
* **Partly covered targets**: a target county some of whose 2010 predecessors have no row
  (秦淮区 320104 without 白下区, ...) keeps the sum of the rows there are; CEADs may have
  folded the missing district into its neighbour. They are listed in the notes.

Where the file is silent (153 of the 2,844 counties of 2020 have no value): it has no row for
Tibet (74 counties), none for 37 of the 120 autonomous counties outside it (围场满族蒙古族自治县,
秀山, 酉阳 and 彭水, 大通, ...: looked up by code and by name, absent from the file, not a failed
match; the 83 others are there), the districts of 佳木斯, 开封 and 三亚 are held only by their
city-proper aggregates (not spread, above), and the units carved out after 2010 from a county
that kept its code (新吴区, 龙华区, 观山湖区, ...) get nothing of it, as a partial transfer does
(:func:`~features.codes.harmonise`). Those counties' CO₂ features are missing, which the trees
read as missing and the report lists by name.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from features.codes import CodeHistory, harmonise
from features.errors import SourceFormatError
from features.sources.base import SourceTable, read_excel_sheet, require_columns, validate_long
from features.sources.centroids import county_area

NAME = "co2"
RELATIVE_PATH = Path("ceads_county_co2") / "co2.xlsx"
SHEET = "Unit (Million tons)"
CODE = "DISTCODE地区代码"
COUNTY_NAME = "County Name"
VINTAGE = 2010
YEARS = range(1997, 2018)
YEAR_COLUMNS = [f"C{year}" for year in YEARS]
VARIABLE = "co2_mt"
CODE_PATTERN = re.compile(r"^(\d{6})(?:（(\d+)）)?$")
NOTE_PREFIX = "Note:"


def read_co2(raw_dir: Path, history: CodeHistory, target: int = 2020) -> SourceTable:
    """Read county CO₂ emissions 1997-2017, harmonised to the codes of ``target``.

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
        ``co2_mt``: CO₂ emissions in million tonnes, per county and year 1997-2017.
    """
    path = raw_dir / RELATIVE_PATH
    raw = read_excel_sheet(path, SHEET, dtype={CODE: str})
    require_columns(raw, [CODE, COUNTY_NAME, *YEAR_COLUMNS], path, SHEET)
    body, footer = _split_footer(raw, path)
    wide = _add_suffixed_parts(_parse_codes(body, path), path)
    harmonised = harmonise(
        _to_long(wide),
        history,
        vintage=VINTAGE,
        target=target,
        counts=[VARIABLE],
        keys=["year"],
        split_weights=county_area(raw_dir, history, target),
    )
    long = harmonised.table.assign(variable=VARIABLE).rename(columns={VARIABLE: "value"})
    unmatched = _unmatched(harmonised.unmatched, wide, history)
    notes = {
        "rows_read": len(raw),
        "footer_rows_dropped": footer,
        "suffixed_rows_added_to_their_code": int(body[CODE].str.contains("（").sum()),
        "codes": len(wide),
        "codes_unmatched": int(unmatched["county_code"].nunique()),
        "codes_resolved_to_nearest_year": _resolved_to_nearest_year(wide, history),
        "targets_partly_covered": _partly_covered(wide, history, target),
        **_coverage(long, history, target),
    }
    return SourceTable(NAME, validate_long(long, NAME), unmatched, notes)


def _split_footer(raw: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, dict]:
    """Drop the trailing empty row and the closing note; anything else must have a code."""
    code = raw[CODE].astype("string").str.strip()
    empty = raw.isna().all(axis=1)
    note = code.str.startswith(NOTE_PREFIX, na=False) & raw[YEAR_COLUMNS].isna().all(axis=1)
    footer = {"empty": int(empty.sum()), "note": int(note.sum())}
    if footer["note"] != 1:
        raise SourceFormatError(
            f"{path} (sheet {SHEET!r}): must end with one note row starting {NOTE_PREFIX!r}; got {footer['note']}"
        )
    return raw[~empty & ~note].assign(**{CODE: code[~empty & ~note]}), footer


def _parse_codes(body: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Split ``320211（2）`` into the code ``320211`` and the part number 2 (1 when absent)."""
    parts = body[CODE].str.extract(CODE_PATTERN)
    bad = parts[0].isna()
    if bad.any():
        row = int(bad.idxmax()) + 2
        raise SourceFormatError(
            f"{path} (sheet {SHEET!r}) row {row}: {CODE} must be 6 digits, optionally followed "
            f"by a part number in full-width brackets; got {body.loc[bad.idxmax(), CODE]!r}"
        )
    return body.assign(county_code=parts[0], part=parts[1].fillna("1").astype(int))


def _add_suffixed_parts(parsed: pd.DataFrame, path: Path) -> pd.DataFrame:
    """One row per code: parts numbered 2, 3, ... are added to the main row of their code."""
    mains = parsed[parsed["part"] == 1]
    if mains["county_code"].duplicated().any():
        code = mains.loc[mains["county_code"].duplicated(), "county_code"].iloc[0]
        raise SourceFormatError(f"{path} (sheet {SHEET!r}): {CODE} {code} occurs twice")
    orphans = set(parsed["county_code"]) - set(mains["county_code"])
    if orphans:
        raise SourceFormatError(f"{path} (sheet {SHEET!r}): suffixed code(s) {sorted(orphans)} must have a main row")
    values = parsed.groupby("county_code")[YEAR_COLUMNS].sum(min_count=1)
    names = mains.set_index("county_code")[COUNTY_NAME]
    return values.assign(county_name=names).reset_index()


def _to_long(wide: pd.DataFrame) -> pd.DataFrame:
    long = wide.melt(id_vars="county_code", value_vars=YEAR_COLUMNS, var_name="year")
    return pd.DataFrame(
        {
            "county_code": long["county_code"],
            "year": long["year"].str[1:].astype(int),
            VARIABLE: long["value"].astype(float),
        }
    )


def _unmatched(rows: pd.DataFrame, wide: pd.DataFrame, history: CodeHistory) -> pd.DataFrame:
    """The unmatched rows, one per code and year, with the county name and the reason."""
    names = wide.set_index("county_code")["county_name"]
    reason = rows["county_code"].map(lambda code: _reason(code, history))
    return rows.assign(county_name=rows["county_code"].map(names), reason=reason)


def _reason(code: str, history: CodeHistory) -> str:
    year = history.nearest_year(code, VINTAGE)
    if year is not None:
        return f"valid in {year} but no county-level successor in the target vintage"
    if code.endswith("00"):
        return "prefecture-level city without counties: valid in no county code list"
    if code.endswith("01"):
        return "city-proper aggregate (市辖区, or a city without counties): valid in no code list"
    return "code valid in no year of the code lists"


def _resolved_to_nearest_year(wide: pd.DataFrame, history: CodeHistory) -> dict[str, int]:
    """Codes not valid in 2010 but valid in another year: code -> the year used."""
    resolved = {}
    for code in wide["county_code"]:
        year = history.nearest_year(code, VINTAGE)
        if year is not None and year != VINTAGE:
            resolved[code] = year
    return resolved


def _partly_covered(wide: pd.DataFrame, history: CodeHistory, target: int) -> list[str]:
    """Target codes with some but not all of their 2010 predecessors in the file."""
    crosswalk = history.crosswalk(VINTAGE, target)
    present = crosswalk["from_code"].isin(set(wide["county_code"]))
    by_target = present.groupby(crosswalk["to_code"]).agg(["any", "all"])
    return sorted(by_target.index[by_target["any"] & ~by_target["all"]])


def _coverage(long: pd.DataFrame, history: CodeHistory, target: int) -> dict:
    units = set(history.county_units(target)["county_code"])
    covered = units & set(long.loc[long["value"].notna(), "county_code"])
    return {"target_counties": len(units), "target_counties_covered": len(covered)}
