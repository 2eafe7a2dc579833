"""Reader of the 832 national poverty counties and their exit years
(``poverty_counties/poverty_counties_832_with_exit_year.xlsx``, sheet ``整理数据``).

Columns used: ``行政区划代码`` (code), ``县域名称`` (name) and ``摘帽时间`` (the year the county
left the list: 2016-2020). The output ``poverty_county`` is 1.0 for a county of the list in
every year 2013-2020, after its exit too: the flag marks the counties the State Council named
poor, a lasting trait of place (remote, rural, little industry), not the year-by-year status.
The model learns the flag from the as-of 2014 and 2015 rows, before any county left the list;
as a status, the flag would drop to 0 for all 832 by 2020, and a county that left the list in
2019 would be scored as one that was never poor (its p_belt about doubled, "not a poverty
county" among its drivers). The exit years are kept in the notes. Every county of the target
vintage that is not on the list is 0.0 in every year, so absence is explicit. The CSV copy
``poverty_county_list.csv`` holds the same rows and is not read.

Codes are of mixed vintage, mostly 2020 (827 of 832 are valid in 2020), so they are mapped from
the 2020 vintage by :func:`~features.codes.harmonise` with nearest-year resolution (黔西县
520581 and 旬阳县 610981 carry their 2021 codes). The flag is intensive: were two listed codes
to merge, the result would be their mean. Names that differ from the legal name of the code
(宣化县 under 宣化区's code 130705, counties since renamed 市 or 区) are counted, not changed.

Explicit repairs and exclusions:

* two rows give the prefecture's code for a county of the same name (文山市 under 532600,
  临夏市 under 622900); ``_fix_prefecture_codes`` replaces it with the county-level code of that
  name under the same prefecture (532601, 622901), found in the code lists;
* 大柴旦行委 632825 is an administrative committee without a county code: it is reported in
  ``unmatched``;
* one row holds advertising text in an unnamed column; the column is not read.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.codes import CodeHistory, harmonise, is_county_level
from features.errors import SourceFormatError
from features.sources.base import SourceTable, read_excel_sheet, require_columns, validate_long

NAME = "poverty"
RELATIVE_PATH = Path("poverty_counties") / "poverty_counties_832_with_exit_year.xlsx"
SHEET = "整理数据"
CODE, COUNTY_NAME, EXIT_YEAR = "行政区划代码", "县域名称", "摘帽时间"
VINTAGE = 2020
YEARS = range(2013, 2021)
VARIABLE = "poverty_county"


def read_poverty(raw_dir: Path, history: CodeHistory, target: int = 2020) -> SourceTable:
    """Read the poverty-county flag per county and year 2013-2020, in the codes of ``target``.

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
        ``poverty_county``: 1.0 for a county of the national poverty list (before and after its
        exit year), 0.0 otherwise, for every county of ``target`` and every year 2013-2020.
    """
    path = raw_dir / RELATIVE_PATH
    raw = read_excel_sheet(path, SHEET, dtype={CODE: str})
    require_columns(raw, [CODE, COUNTY_NAME, EXIT_YEAR], path, SHEET)
    listed = _check_rows(raw, path)
    listed, fixed = _fix_prefecture_codes(listed, history)
    harmonised = harmonise(
        _flags(listed), history, vintage=VINTAGE, target=target, intensive=[VARIABLE],
        keys=["year"],
    )  # fmt: skip
    long = _with_non_poor(harmonised.table, history, target)
    unmatched = _unmatched(harmonised.unmatched, listed, history)
    notes = {
        "rows_read": len(raw),
        "exit_year_counts": {int(k): int(v) for k, v in listed[EXIT_YEAR].value_counts().items()},
        "codes_fixed_by_name": fixed,
        "codes_resolved_to_nearest_year": _resolved_to_nearest_year(listed, history),
        "names_differing_from_code_list": _renamed(listed, history),
        "codes_unmatched": int(unmatched["county_code"].nunique()),
        "target_counties": int(long["county_code"].nunique()),
        "target_counties_listed": int(harmonised.table["county_code"].nunique()),
    }
    return SourceTable(NAME, validate_long(long, NAME), unmatched, notes)


def _check_rows(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Code, name and exit year of each row; codes must be 6 digits and exit years in range."""
    listed = raw[[CODE, COUNTY_NAME, EXIT_YEAR]].rename(columns={CODE: "county_code"})
    bad_code = ~listed["county_code"].astype("string").str.fullmatch(r"\d{6}").fillna(False)
    if bad_code.any():
        row = int(bad_code.idxmax()) + 2
        raise SourceFormatError(
            f"{path} (sheet {SHEET!r}) row {row}: {CODE} must be 6 digits; "
            f"got {listed.loc[bad_code.idxmax(), 'county_code']!r}"
        )
    exit_year = pd.to_numeric(listed[EXIT_YEAR], errors="coerce")
    bad_year = ~exit_year.between(YEARS[0], YEARS[-1])
    if bad_year.any():
        row = int(bad_year.idxmax()) + 2
        raise SourceFormatError(
            f"{path} (sheet {SHEET!r}) row {row}: {EXIT_YEAR} must be a year in "
            f"{YEARS[0]}..{YEARS[-1]}; got {listed.loc[bad_year.idxmax(), EXIT_YEAR]}"
        )
    return listed.assign(**{EXIT_YEAR: exit_year.astype(int)})


def _fix_prefecture_codes(listed: pd.DataFrame, history: CodeHistory) -> tuple[pd.DataFrame, dict[str, str]]:
    """Replace a prefecture code (``xxxx00``) by the code of the county of the row's name under
    that prefecture, looked up in the code lists from the latest year back."""
    fixed = {}
    prefectures = listed[listed["county_code"].str.endswith("00")]
    for code, name in zip(prefectures["county_code"], prefectures[COUNTY_NAME], strict=True):
        county = _county_named(code[:4], name, history)
        if county is not None:
            fixed[code] = county
    return listed.assign(county_code=listed["county_code"].replace(fixed)), fixed


def _county_named(prefix: str, name: str, history: CodeHistory) -> str | None:
    for year in reversed(history.years):
        table = history.yearly[year]
        match = table[(table["code"].str[:4] == prefix) & (table["name"] == name)]
        match = match[match["code"].map(is_county_level)]
        if len(match) == 1:
            return match["code"].iloc[0]
    return None


def _flags(listed: pd.DataFrame) -> pd.DataFrame:
    """One row per listed code and year, 1.0 in every year (the exit year does not end it)."""
    years = pd.DataFrame({"year": list(YEARS)})
    return listed[["county_code"]].merge(years, how="cross").assign(**{VARIABLE: 1.0})


def _with_non_poor(table: pd.DataFrame, history: CodeHistory, target: int) -> pd.DataFrame:
    """Every county of ``target`` and year: the listed flag, or 0.0 for counties not listed."""
    grid = history.county_units(target)[["county_code"]].merge(pd.DataFrame({"year": list(YEARS)}), how="cross")
    full = grid.merge(table, on=["county_code", "year"], how="left")
    return pd.DataFrame(
        {
            "county_code": full["county_code"],
            "year": full["year"],
            "variable": VARIABLE,
            "value": full[VARIABLE].fillna(0.0).astype(float),
        }
    )


def _unmatched(rows: pd.DataFrame, listed: pd.DataFrame, history: CodeHistory) -> pd.DataFrame:
    names = listed.set_index("county_code")[COUNTY_NAME]
    return rows.assign(
        county_name=rows["county_code"].map(names),
        reason=rows["county_code"].map(lambda code: _reason(code, history)),
    )


def _reason(code: str, history: CodeHistory) -> str:
    if history.nearest_year(code, VINTAGE) is None:
        return "code valid in no year of the code lists"
    return "no county-level unit of the target vintage holds its area"


def _resolved_to_nearest_year(listed: pd.DataFrame, history: CodeHistory) -> dict[str, int]:
    years = {code: history.nearest_year(code, VINTAGE) for code in listed["county_code"]}
    return {code: year for code, year in years.items() if year not in (None, VINTAGE)}


def _renamed(listed: pd.DataFrame, history: CodeHistory) -> int:
    """Rows whose name differs from the legal name of their code in 2020."""
    legal = history.yearly[VINTAGE].set_index("code")["name"]
    known = listed[listed["county_code"].isin(legal.index)]
    return int((known[COUNTY_NAME] != known["county_code"].map(legal)).sum())
