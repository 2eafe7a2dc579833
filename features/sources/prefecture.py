"""Readers of prefecture (地级) panels, joined to the counties of the target vintage.

``prefecture_panel/prefecture_gdp_sectors_2000_2023.xlsx`` (sheet ``面板数据2000-2023``): GDP
(亿元) and the shares of the secondary and tertiary sectors per prefecture and year 2000-2023.
``prefecture_panel/prefecture_population_1998_2024.xlsx`` (sheet ``面板数据``): resident
population (万人) 1998-2024; its column ``插值_常住人口（万人）`` fills gaps by interpolation and is
not used. Both end with blank rows and two rows of advertising text; they are dropped and
counted. ``prefecture_gdp_pop_revenue/prefecture.dta`` (Wiebe's replication package) gives
fiscal revenue 1997-2017 (:func:`read_prefecture_revenue`) and registered population (户籍,
万人, to 2017 or 2018). The resident file has no autonomous prefecture, league or 地区 (39 prefectures of
2020, 317 counties); 37 of them take their registered population from the .dta, listed in the
notes (``prefectures_with_registered_population``), and a prefecture keeps one measure for all
its years. Registered and resident population differ most where people move (东莞's registered
population is a fifth of its residents); for these mostly western prefectures the registered
figure of 2010 is 0.85 to 1.21 times the 2010 census population of their counties (median 1.0).
Two that count more than their counties are left without (:data:`REGISTERED_NOT_USED`).

Prefecture codes are 6 digits (``xxxx00``; the 4-digit ``prefcode`` of the .dta gets ``00``);
the four municipalities use their province code (北京 110000, 天津 120000, 上海 310000, 重庆
500000), as :meth:`~features.codes.CodeHistory.county_units` does for their counties. Codes are
used as given per year and joined to each county's prefecture in the target vintage:

* a code that is not a prefecture of the target vintage is followed to the one target
  prefecture holding all its counties in the latest code list (2009-2024) that has it: a renamed
  prefecture (吐鲁番地区 652100 -> 650400, 哈密地区 652200 -> 650500, 那曲地区 542400 ->
  540600) joins; one split among several (巢湖 341400), one without counties (东莞 441900, 中山
  442000, 嘉峪关 620200, 儋州 460400 / 469003) or one not in the lists (伊犁地区 654100) does
  not;
* a code absorbed by a prefecture that has its own row that year (莱芜 371200, into 济南 in
  2019) does not join either: its rows are superseded;
* every prefecture-year that does not join is in ``unmatched`` with its reason.

Province-governed county-level units (4190xx, 4290xx, 4690xx, 6590xx: their ``prefecture_code``
in ``county_units`` is the province's) have no prefecture and get no values; they are counted in the
notes. Values are as the yearbooks give them: a prefecture's territory can change (济南 gains
莱芜 in 2019), and growth across such a change reflects it. A GDP that is a one-year spike, more
than twice or less than half both neighbouring years' (淮南 2022: 295.40 亿元 between 1,457.05
and 1,601.60), is a slip of the file: that year's GDP and sector shares are masked, so the GDP
growth into and out of it is missing too (:func:`_without_spikes`; listed in the notes as
``gdp_one_year_spikes_masked``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from features.codes import CodeHistory, province_governed
from features.errors import SourceFormatError
from features.sources.base import (
    SourceTable,
    read_excel_sheet,
    read_stata_checked,
    require_columns,
    to_long,
    validate_long,
)

NAME = "prefecture"
REVENUE_NAME = "prefecture_revenue"
GDP_PATH = Path("prefecture_panel") / "prefecture_gdp_sectors_2000_2023.xlsx"
GDP_SHEET = "面板数据2000-2023"
GDP_COLUMNS = {
    "年度标识": "year",
    "城市代码": "prefecture_code",
    "城市名称": "prefecture_name",
    "gdp（亿元人民币）": "gdp",
    "第二产业占GDP比重": "secondary_share",
    "第三产业占GDP比重": "tertiary_share",
}
SPIKE = 2.0  # a prefecture's GDP this many times (or this share of) both neighbouring years' is masked
POPULATION_PATH = Path("prefecture_panel") / "prefecture_population_1998_2024.xlsx"
POPULATION_SHEET = "面板数据"
POPULATION_COLUMNS = {
    "年份": "year",
    "城市代码": "prefecture_code",
    "城市": "prefecture_name",
    "常住人口（万人）": "population",
}
REVENUE_PATH = Path("prefecture_gdp_pop_revenue") / "prefecture.dta"
DTA_KEYS = ["year", "prefcode", "prefecture"]
REVENUE_UNIT_YEAR = 2004
# Registered populations of prefectures that cover more than their county-level units: not used.
# Against the sum of their counties in the 2010 census, the others used are 0.85 to 1.21 times it.
REGISTERED_NOT_USED = {
    "654000": "伊犁哈萨克自治州: counts its 塔城 and 阿勒泰 地区 too (1.83 times its own counties in 2010)",
    "232700": "大兴安岭地区: counts 加格达奇 and its other districts, no county-level units (2.28 times)",
}
VARIABLES = {
    "gdp": "pref_gdp",
    "gdp_per_capita": "pref_gdp_per_capita",
    "secondary_share": "pref_secondary_share",
    "tertiary_share": "pref_tertiary_share",
    "population": "pref_population",
    "gdp_growth": "pref_gdp_growth",
}
YUAN_PER_YI_PER_WAN = 1e4  # (亿元 / 万人) -> 元 per person


def read_prefecture(raw_dir: Path, history: CodeHistory, target: int = 2020) -> SourceTable:
    """Read prefecture GDP, sector shares and population, joined to the counties of ``target``.

    Parameters
    ----------
    raw_dir : Path
        The synced raw-data folder.
    history : CodeHistory
        County code records and yearly code lists.
    target : int, default 2020
        The code vintage of the counties.

    Returns
    -------
    SourceTable
        Per county and year, the values of its prefecture: ``pref_gdp`` (亿元, 2000-2023),
        ``pref_gdp_per_capita`` (yuan per resident, where GDP and population both exist),
        ``pref_secondary_share`` and ``pref_tertiary_share`` (fractions of GDP),
        ``pref_population`` (resident population, 万人, 1998-2024) and ``pref_gdp_growth``
        (nominal year-on-year GDP growth, a fraction, 2001-2023).
    """
    gdp, gdp_dropped = _read_panel(raw_dir / GDP_PATH, GDP_SHEET, GDP_COLUMNS)
    population, population_dropped = _read_panel(raw_dir / POPULATION_PATH, POPULATION_SHEET, POPULATION_COLUMNS)
    registered = _read_registered(raw_dir / REVENUE_PATH)
    codes = set(gdp["prefecture_code"]) | set(population["prefecture_code"]) | set(registered["prefecture_code"])
    resolved = _resolve_prefectures(codes, history, target)
    gdp, gdp_unjoined = _to_target(gdp, resolved)
    gdp, spikes = _without_spikes(gdp)
    population, population_unjoined = _to_target(population, resolved)
    filled = _registered_where_missing(population, _to_target(registered, resolved)[0])
    panel = _with_derived(gdp, pd.concat([population, filled], ignore_index=True))
    long = _join_counties(panel, list(VARIABLES), history, target)
    unmatched = pd.concat(
        [gdp_unjoined.assign(table="gdp"), population_unjoined.assign(table="population")],
        ignore_index=True,
    )
    notes = {
        "gdp_rows_dropped": gdp_dropped,
        "population_rows_dropped": population_dropped,
        "gdp_prefecture_years_read": len(gdp) + len(gdp_unjoined),
        "population_prefecture_years_read": len(population) + len(population_unjoined),
        "prefecture_codes_followed": _followed(pd.concat([gdp, population])),
        "gdp_prefecture_years_not_joined": len(gdp_unjoined),
        "gdp_one_year_spikes_masked": spikes,
        "population_prefecture_years_not_joined": len(population_unjoined),
        "prefectures_with_registered_population": sorted(set(filled["prefecture_code"])),
        "registered_population_prefecture_years_used": len(filled),
        **_county_notes(long, history, target),
    }
    return SourceTable(NAME, validate_long(long, NAME), unmatched, notes)


def read_prefecture_revenue(raw_dir: Path, history: CodeHistory, target: int = 2020) -> SourceTable:
    """Read prefecture fiscal revenue 1997-2017, joined to the counties of ``target``.

    The ``revenue`` column of ``prefecture.dta`` is in 万元 from 2004 on, but in 1997-2003 some
    prefectures report it in 亿元 (菏泽 2003: 15.97, 2004: 172,245). The two are told apart by
    the ratio to the same row's GDP (亿元): in this file it is at most 0.29 where revenue is in
    亿元 and at least 48 where it is in 万元, so a ratio below 1 means 亿元. A pre-2004 row
    without GDP has no known unit and is dropped (30 rows, counted in the notes).

    Parameters
    ----------
    raw_dir : Path
        The synced raw-data folder.
    history : CodeHistory
        County code records and yearly code lists.
    target : int, default 2020
        The code vintage of the counties.

    Returns
    -------
    SourceTable
        ``pref_fiscal_revenue``: the prefecture's fiscal revenue in 亿元, per county and year.
    """
    frame, dropped = _read_revenue(raw_dir / REVENUE_PATH)
    resolved = _resolve_prefectures(set(frame["prefecture_code"]), history, target)
    frame, unjoined = _to_target(frame, resolved)
    panel = frame.drop(columns="source_code").rename(columns={"revenue": "fiscal_revenue"})
    long = _join_counties(panel, ["fiscal_revenue"], history, target, {"fiscal_revenue": "pref_fiscal_revenue"})
    notes = {
        **dropped,
        "prefecture_codes_followed": _followed(frame),
        "prefecture_years_not_joined": len(unjoined),
        **_county_notes(long, history, target),
    }
    return SourceTable(REVENUE_NAME, validate_long(long, REVENUE_NAME), unjoined, notes)


def _read_panel(path: Path, sheet: str, columns: dict[str, str]) -> tuple[pd.DataFrame, dict]:
    """The renamed columns of one panel sheet, without its blank and advertising rows."""
    raw = read_excel_sheet(path, sheet)
    require_columns(raw, list(columns), path, sheet)
    frame = raw[list(columns)].rename(columns=columns)
    blank = raw.isna().all(axis=1)
    footer = ~blank & frame["year"].isna() & frame["prefecture_code"].isna()
    frame = frame[~blank & ~footer]
    dropped = {"blank": int(blank.sum()), "footer_text": int(footer.sum())}
    return _typed(frame, f"{path} (sheet {sheet!r})"), dropped


def _typed(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Year as int, code as a 6-digit string, values as float; (code, year) must be unique."""
    year = pd.to_numeric(frame["year"], errors="coerce")
    code = pd.to_numeric(frame["prefecture_code"], errors="coerce")
    bad = year.isna() | code.isna() | (year % 1 != 0) | (code % 1 != 0) | ~code.between(1e5, 1e6 - 1)
    if bad.any():
        row = frame[bad].iloc[0]
        raise SourceFormatError(
            f"{where} row {int(bad.idxmax()) + 2}: year and prefecture code must be whole numbers, "
            f"the code 6 digits; got {row['year']} and {row['prefecture_code']}"
        )
    typed = frame.assign(year=year.astype(int), prefecture_code=code.astype(int).astype(str))
    values = [c for c in typed.columns if c not in ("year", "prefecture_code", "prefecture_name")]
    typed[values] = typed[values].apply(pd.to_numeric, errors="coerce").astype(float)
    _check_unique(typed, where)
    return typed.reset_index(drop=True)


def _check_unique(frame: pd.DataFrame, where: str) -> None:
    duplicated = frame.duplicated(["prefecture_code", "year"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise SourceFormatError(
            f"{where}: prefecture code and year must be unique; got {row['prefecture_code']} {row['year']} twice"
        )


def _read_dta(path: Path, values: dict[str, str]) -> pd.DataFrame:
    """Year, 6-digit prefecture code and name, and the columns ``values`` (.dta name -> name) of
    ``prefecture.dta``, typed (:func:`_typed`)."""
    raw = read_stata_checked(path)
    require_columns(raw, [*DTA_KEYS, *values], path)
    frame = pd.DataFrame(
        {
            "year": raw["year"],
            "prefecture_code": raw["prefcode"] * 100,
            "prefecture_name": raw["prefecture"],
            **{name: raw[column] for column, name in values.items()},
        }
    )
    return _typed(frame, str(path))


def _read_registered(path: Path) -> pd.DataFrame:
    """Registered population (户籍, 万人) per prefecture and year from ``prefecture.dta``."""
    frame = _read_dta(path, {"pop": "population"})
    return frame[frame["population"].notna()].reset_index(drop=True)


def _registered_where_missing(resident: pd.DataFrame, registered: pd.DataFrame) -> pd.DataFrame:
    """The registered population of every prefecture the resident file has no row for (its
    autonomous prefectures, leagues and 地区), all years the registered file gives.

    A prefecture the resident file covers keeps its own series, gaps included: the two measures
    differ most where people move (东莞's registered population is a fifth of its residents), so
    they are not mixed within one prefecture.
    """
    missing = registered[
        ~registered["prefecture_code"].isin(set(resident["prefecture_code"]) | set(REGISTERED_NOT_USED))
    ]
    return missing[~missing.duplicated(["prefecture_code", "year"])]  # renamed codes joining one target


def _read_revenue(path: Path) -> tuple[pd.DataFrame, dict]:
    """Fiscal revenue in 亿元 with 6-digit prefecture codes, and the counts of rows dropped."""
    frame = _read_dta(path, {"revenue": "revenue", "gdp": "gdp"})
    in_wan = _revenue_in_wan(frame)
    known = frame["revenue"].notna() & in_wan.notna()
    revenue = frame["revenue"].where(~in_wan.fillna(False), frame["revenue"] / 1e4)
    dropped = {
        "rows_read": len(frame),
        "rows_without_revenue": int(frame["revenue"].isna().sum()),
        "rows_revenue_unit_unknown": int((frame["revenue"].notna() & in_wan.isna()).sum()),
        "rows_revenue_wan_converted_to_yi": int((known & in_wan.fillna(False)).sum()),
        "rows_revenue_yi_as_given": int((known & ~in_wan.fillna(True)).sum()),
    }
    return frame.assign(revenue=revenue)[known].drop(columns="gdp"), dropped


def _revenue_in_wan(frame: pd.DataFrame) -> pd.Series:
    """True where revenue is in 万元, False where in 亿元, NA where it cannot be told."""
    ratio = frame["revenue"] / frame["gdp"]
    in_wan = pd.Series(ratio >= 1, dtype="boolean").where(ratio.notna())
    return in_wan.where(frame["year"] < REVENUE_UNIT_YEAR, True)


def _resolve_prefectures(codes: Iterable[str], history: CodeHistory, target: int) -> dict[str, tuple[str | None, str]]:
    """Source prefecture code -> (target prefecture code or None, how it was resolved)."""
    counties = history.county_units(target)
    counties = counties[~province_governed(counties)]
    targets = set(counties["prefecture_code"])
    home = counties.set_index("county_code")["prefecture_code"]
    return {
        code: (code, "as given") if code in targets else _successor(code, history, target, home)
        for code in sorted(codes)
    }


def _successor(code: str, history: CodeHistory, target: int, home: pd.Series) -> tuple[str | None, str]:
    """The one target prefecture holding every county ``code`` had in the latest list with it.

    ``home`` maps the counties of ``target`` that have a prefecture to it; a county that does not
    (province-governed) makes the code unresolved.
    """
    year = next((y for y in reversed(history.years) if (history.yearly[y]["code"] == code).any()), None)
    if year is None:
        return None, f"prefecture code in no code list {history.years[0]}-{history.years[-1]}"
    units = history.county_units(year)
    members = units.loc[units["prefecture_code"] == code, "county_code"]
    heirs = {home.get(to) for county in members for to in history.shares(county, year, target)}
    if not heirs:
        return None, f"no county-level unit in {year} (a city without counties)"
    if len(heirs) > 1 or None in heirs:
        return None, f"its counties of {year} do not all lie in one prefecture of {target}"
    return heirs.pop(), f"renamed or absorbed (counties of {year})"


def _to_target(frame: pd.DataFrame, resolved: dict[str, tuple[str | None, str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows re-keyed to target prefecture codes (the code given kept as ``source_code``), and
    the rows that do not join, with a reason."""
    to = frame["prefecture_code"].map(lambda code: resolved[code][0])
    reason = frame["prefecture_code"].map(lambda code: resolved[code][1])
    moved = to.notna() & (to != frame["prefecture_code"])
    direct = set(zip(to[~moved], frame.loc[~moved, "year"], strict=True))
    keys = pd.Series(list(zip(to, frame["year"], strict=True)), index=frame.index)
    superseded = moved & keys.isin(direct)
    reason = reason.where(~superseded, "absorbed by " + to.astype(str) + ", which has its own row")
    joined = to.notna() & ~superseded
    unjoined = frame[~joined].assign(reason=reason[~joined]).reset_index(drop=True)
    rekeyed = frame[joined].assign(source_code=frame["prefecture_code"], prefecture_code=to)
    return rekeyed.reset_index(drop=True), unjoined


def _without_spikes(gdp: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``gdp`` with the GDP and sector shares of a prefecture-year masked (missing) where its GDP is
    a one-year spike: more than :data:`SPIKE` times the year before's and the year after's, or
    less than their share ``1 / SPIKE`` of both. Such a row is a slip of the file (淮南 340400:
    1,457.05 亿元 in 2021, 295.40 in 2022, 1,601.60 in 2023; four 黑龙江 prefectures swap values
    in 2011), not an economy; a one-way revision (包头 2017) is left as it is. Returns the masked
    rows as ``code year: value (before, after)``, for the notes."""
    ordered = gdp.sort_values(["prefecture_code", "year"])
    same = ordered.groupby("prefecture_code")["year"]
    before = ordered["gdp"].groupby(ordered["prefecture_code"]).shift(1).where(same.diff() == 1)
    after = ordered["gdp"].groupby(ordered["prefecture_code"]).shift(-1).where(same.diff(-1) == -1)
    up = (ordered["gdp"] > SPIKE * before) & (ordered["gdp"] > SPIKE * after)
    down = (ordered["gdp"] * SPIKE < before) & (ordered["gdp"] * SPIKE < after)
    spiked = ordered.index[up | down]
    told = [
        f"{ordered.at[i, 'prefecture_code']} {int(ordered.at[i, 'year'])}: {ordered.at[i, 'gdp']:g}"
        f" ({before[i]:g} before, {after[i]:g} after)"
        for i in spiked
    ]
    masked = gdp.copy()
    masked.loc[spiked, ["gdp", "secondary_share", "tertiary_share"]] = float("nan")
    return masked, told


def _with_derived(gdp: pd.DataFrame, population: pd.DataFrame) -> pd.DataFrame:
    """GDP and population side by side, with GDP per capita and year-on-year GDP growth."""
    labels = ["prefecture_name", "source_code"]
    panel = gdp.drop(columns=labels).merge(population.drop(columns=labels), on=["prefecture_code", "year"], how="outer")
    panel["gdp_per_capita"] = panel["gdp"] / panel["population"] * YUAN_PER_YI_PER_WAN
    previous = panel[["prefecture_code", "year", "gdp"]].assign(year=panel["year"] + 1)
    panel = panel.merge(previous, on=["prefecture_code", "year"], how="left", suffixes=("", "_prev"))
    panel["gdp_growth"] = panel["gdp"] / panel["gdp_prev"] - 1
    return panel.drop(columns="gdp_prev")


def _join_counties(
    panel: pd.DataFrame,
    columns: list[str],
    history: CodeHistory,
    target: int,
    names: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Each county of ``target`` with a prefecture gets its prefecture's values; NaN dropped."""
    counties = history.county_units(target)
    counties = counties.loc[~province_governed(counties), ["county_code", "prefecture_code"]]
    joined = counties.merge(panel, on="prefecture_code")
    long = to_long(joined, columns)
    long["variable"] = long["variable"].map(names or VARIABLES)
    return long[long["value"].notna()].reset_index(drop=True)


def _followed(joined: pd.DataFrame) -> dict[str, str]:
    """Codes given that joined under another target prefecture code: given -> target."""
    moved = joined[joined["source_code"] != joined["prefecture_code"]]
    return dict(sorted(zip(moved["source_code"], moved["prefecture_code"], strict=True)))


def _county_notes(long: pd.DataFrame, history: CodeHistory, target: int) -> dict:
    counties = history.county_units(target)
    governed = counties.loc[province_governed(counties), "county_code"]
    return {
        "target_counties": len(counties),
        "counties_without_prefecture": len(governed),
        "target_counties_covered": int(long["county_code"].nunique()),
    }
