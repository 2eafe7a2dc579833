"""County census tables of 2010 and 2020 (Dong et al.) and the tudigong 2020 shares with GHSL.

:func:`read_census` reads both census years into one long table of ``census_*`` variables with
the same names and units in both years; :func:`read_tudigong` reads the tudigong 2020 county
shares and GHSL urbanisation as ``tudigong_*`` variables. Codes are mapped to the target vintage
by :func:`features.codes.harmonise` only.

Census variables (years 2010 and 2020 unless said; shares are fractions 0..1):
``census_population`` (resident persons), ``census_urban_share`` (城镇人口 / population),
``census_education_years`` (平均受教育年限, years), ``census_share_age_0_14`` / ``_15_64`` /
``_65p``, ``census_household_size`` (family-household members per family household),
``census_agriculture_share`` / ``manufacturing`` / ``wholesale_retail`` / ``transport``
(transport, storage and post) / ``it`` ``_share`` (of the employed in the 10 % long form),
``census_migrant_share`` (人户分离: residents whose hukou is in another township, any origin;
both tables split it the same way, 本县 / 本省其他县 / 外省),
``census_interprovincial_migrant_share`` (hukou in another province), ``census_car_share``
(long-form households with a car; 2020 only). Tudigong variables (2020): ``tudigong_*_share``
for manufacturing, sales (wholesale and retail), transport and IT employment, urban population,
``tudigong_education_years``, ``tudigong_ghsl_density`` (GHSL persons per km²) and
``tudigong_ghsl_urban_share`` (share of the GHSL population in urban-cluster cells, SMOD 21-30).

What the readers do with the files' quirks:

* **Subtotal rows** (全国, provinces, prefectures, 市辖区 / 县 / 省直辖县级行政区划 headers) are
  dropped and counted, and so are blank separator rows. A prefecture-level row with no county
  rows under it (东莞 441900, 中山 442000, 嘉峪关 620200, 儋州 460400 in 2020, 三亚 460200 in
  2010, 三沙 460300) is not a county unit: it goes to ``unmatched``, as do rows without a code
  (大兴安岭's 加格达奇 etc., 海西's 行委, 西沙群岛, the development zones of 2020) and codes
  that :func:`~features.codes.harmonise` cannot map (儋州 469003 of 2010, whose successor is a
  prefecture-level city).
* **Pseudo-units** (development zones, codes whose 5th digit is 7) are dropped and counted.
* **Blank cells are zeros**: the yearbooks leave zero cells blank (the count columns read here
  hold no 0 at all), so a blank count in a county row with a positive denominator is read as 0.
* **Invalid counts** (text, negative or fractional: transcription slips of the 2010 file, e.g.
  临颍县 wholesale/retail ``-1373`` and 什邡市 transport ``61.3``) become missing and are
  listed in ``notes``.
* **tudigong**: ``#DIV/0!`` cells (金门县, 三沙's islands) are missing; 金门县 has no census
  population and its census fields (education ``0``) are placeholders, cleared; tudigong codes
  三沙's island groups 460301-460303, which are not the official 2020 districts, so these rows
  go to ``unmatched``.
* **Garbled 2010 industry headers**: the header fragments of three industry columns slid by one
  column. ``仓储和邮政业`` holds 交通运输、仓储和邮政业 (transport, storage and post),
  ``交通运输、计算机服务和软件业`` holds 信息传输、计算机服务和软件业 (IT), and
  ``信息传输、批发和零售业`` holds 批发和零售业 (wholesale and retail): their national shares
  (3.6 %, 0.6 %, 9.3 %) and their county correlation with the 2020 columns (0.78, 0.87, 0.77)
  say so.

On a merge of source units, intensive values are averaged weighted by their own denominator
(employment shares by the employed in the sample, household size by households, car ownership by
long-form households, the rest by population).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

import pandas as pd

from features.codes import CodeHistory, Harmonised, check_code, harmonise, is_county_level
from features.errors import SourceFormatError
from features.sources.base import (
    SourceTable,
    read_csv_checked,
    read_excel_sheet,
    require_columns,
    to_long,
    validate_long,
)

SUBTOTAL_NAMES = frozenset({"全国", "市辖区", "县", "省直辖县级行政区划", "自治区直辖县级行政区划"})
DIV0 = "#DIV/0!"


@dataclass(frozen=True)
class CensusFile:
    """Where one census year lives and which of its columns hold each quantity.

    Attributes
    ----------
    path : str
        Path under the raw-data folder.
    sheet : str
        Sheet name.
    name_column : str
        Column with the unit's name.
    columns : Mapping of str to str
        Quantity (``population``, ``manufacturing``, ...) -> the file's column name.
    """

    path: str
    sheet: str
    name_column: str
    columns: Mapping[str, str]


CENSUS_FILES = {
    2010: CensusFile(
        path="census/census_county_2010_v1.xlsx",
        sheet="Sheet1",
        name_column="地区",
        columns={
            "code": "区划代码",
            "population": "合计",
            "urban": "城镇人口",
            "households": "户数",
            "household_members": "人口数",
            "age_0_14_pct": "0-14岁（%）",
            "age_15_64_pct": "15-64岁（%）",
            "age_65p_pct": "65岁及以上（%）",
            "education_years": "平均受教育年限（年）-合计",
            "hukou_same_county": "迁入人口（人）-本县（市）/\n本市市区",
            "hukou_other_county": "迁入人口（人）-本省其他县\n（市）、市区",
            "hukou_other_province": "迁入人口（人）-外省",
            "employed": "各种行业人口\n总计",
            "agriculture": "农林牧渔业",
            "manufacturing": "制造业",
            "wholesale_retail": "信息传输、\n批发和零售业",  # garbled header, see module doc
            "transport": "仓储和邮政业",  # garbled header: 交通运输、仓储和邮政业
            "it": "交通运输、\n计算机服务\n和软件业",  # garbled header: 信息传输、计算机服务…
        },
    ),
    2020: CensusFile(
        path="census/census_county_2020_v1.xlsx",
        sheet="七普（年鉴）",
        name_column="区县",
        columns={
            "code": "区划代码",
            "population": "人口数_合计",
            "urban": "城镇人口",
            "households": "家庭户数",
            "household_members": "家庭户人口数",
            "age_0_14_pct": "人口比重_0-14岁",
            "age_15_64_pct": "人口比重_15-64岁",
            "age_65p_pct": "人口比重_65岁及以上",
            "education_years": "平均受教育年限_合计",
            "hukou_same_county": "户口登记地在外乡镇街道人口_本县",
            "hukou_other_county": "户口登记地在外乡镇街道人口_本省其他县",
            "hukou_other_province": "户口登记地在外乡镇街道人口_省外",
            "employed": "各种行业人口总计",
            "agriculture": "农林牧渔业",
            "manufacturing": "制造业",
            "wholesale_retail": "批发和零售业",
            "transport": "交通运输仓储和邮政业",
            "it": "信息传输软件和信息技术服务业",
            "car_households": "拥有家用汽车",
            "sample_households": "家庭户户数_长表",
        },
    ),
}

HUKOU_ELSEWHERE = ("hukou_same_county", "hukou_other_county", "hukou_other_province")

# variable -> (numerator quantities, denominator quantity)
CENSUS_RATIOS = {
    "census_urban_share": (("urban",), "population"),
    "census_migrant_share": (HUKOU_ELSEWHERE, "population"),
    "census_interprovincial_migrant_share": (("hukou_other_province",), "population"),
    "census_household_size": (("household_members",), "households"),
    "census_agriculture_share": (("agriculture",), "employed"),
    "census_manufacturing_share": (("manufacturing",), "employed"),
    "census_wholesale_retail_share": (("wholesale_retail",), "employed"),
    "census_transport_share": (("transport",), "employed"),
    "census_it_share": (("it",), "employed"),
    "census_car_share": (("car_households",), "sample_households"),
}
# variable -> quantity given in percent
CENSUS_PERCENTS = {
    "census_share_age_0_14": "age_0_14_pct",
    "census_share_age_15_64": "age_15_64_pct",
    "census_share_age_65p": "age_65p_pct",
}
CENSUS_AS_IS = {"census_education_years": "education_years"}
NOT_COUNTS = frozenset({*CENSUS_PERCENTS.values(), *CENSUS_AS_IS.values()})

TUDIGONG_FILES = {
    "population.csv": {"POPU": "population", "POPU_URB": "tudigong_urban_share"},
    "employment.csv": {
        "EMPL_INDU_MANU": "tudigong_manufacturing_share",
        "EMPL_INDU_SALE": "tudigong_sales_share",
        "EMPL_INDU_TRMA": "tudigong_transport_share",
        "EMPL_INDU_ITSE": "tudigong_it_share",
    },
    "education.csv": {"EDUC_AVGY": "tudigong_education_years"},
    "ghsl.csv": {
        "GHSL_POP": "ghsl_population",
        "GHSL_POP_DENS": "tudigong_ghsl_density",
        "GHSL_URB": "tudigong_ghsl_urban_share",
    },
}
TUDIGONG_CENSUS_VARIABLES = (
    "tudigong_urban_share",
    "tudigong_manufacturing_share",
    "tudigong_sales_share",
    "tudigong_transport_share",
    "tudigong_it_share",
    "tudigong_education_years",
)
TUDIGONG_GHSL_VARIABLES = ("tudigong_ghsl_density", "tudigong_ghsl_urban_share")
SANSHA_PREFIX = "4603"


UNMATCHED_REASONS = {
    "no_code": "row has no 区划代码 (development zone or other non-formal unit)",
    "prefecture_only": "prefecture-level row without county rows under it: not a county unit",
    "sansha_islands": "tudigong codes 三沙's island groups 460301-460303, unlike the official "
    "2020 districts (460302 西沙区, 460303 南沙区)",
    "not_mapped": "code maps to no county of the target vintage (a code of no year in the code "
    "history, or one whose successor is not county-level)",
}
UNMATCHED_COLUMNS = ["source", "year", "county_code", "name", "population", "reason"]


def read_census(raw_dir: Path, history: CodeHistory, target: int = 2020) -> SourceTable:
    """Read the 2010 and 2020 county census tables into one long table.

    Parameters
    ----------
    raw_dir : Path
        The raw-data folder (holding ``census/``).
    history : CodeHistory
        Code records and yearly lists, covering 2010, 2020 and ``target``.
    target : int, default 2020
        Code vintage of the result.

    Returns
    -------
    SourceTable
        ``name="census"``; ``long`` holds the ``census_*`` variables of years 2010 and 2020
        (``census_car_share`` 2020 only: the 2010 table has no car question); ``unmatched`` the
        rows without a county of ``target``, with ``reason``; ``notes`` per file the rows read,
        dropped and why, and the cells found invalid.
    """
    longs, unmatched, notes = [], [], {}
    for year, spec in CENSUS_FILES.items():
        long, lost, notes[spec.path] = _read_census_year(raw_dir, history, year, target)
        longs.append(long)
        unmatched.append(lost)
    long = validate_long(pd.concat(longs, ignore_index=True), "census")
    return SourceTable("census", long, pd.concat(unmatched, ignore_index=True), notes)


def read_tudigong(raw_dir: Path, history: CodeHistory, target: int = 2020) -> SourceTable:
    """Read the tudigong 2020 county census shares and GHSL urbanisation.

    Parameters
    ----------
    raw_dir : Path
        The raw-data folder (holding ``tudigong/input/``).
    history : CodeHistory
        Code records and yearly lists, covering 2020 and ``target``.
    target : int, default 2020
        Code vintage of the result.

    Returns
    -------
    SourceTable
        ``name="tudigong"``; ``long`` holds the ``tudigong_*`` variables of year 2020;
        ``unmatched`` the rows without a county of ``target``, with ``reason``; ``notes`` the
        rows read, dropped and why.
    """
    frame, div0_cells = _read_tudigong_frame(raw_dir / "tudigong" / "input")
    kind = _row_kind(frame).mask(frame["code"].str.startswith(SANSHA_PREFIX), "sansha_islands")
    counties, lost = _split_rows(frame, kind)
    counties = _clear_placeholder_census_values(counties)
    weighted = {"population": TUDIGONG_CENSUS_VARIABLES, "ghsl_population": TUDIGONG_GHSL_VARIABLES}
    result = _harmonise_weighted(counties, history, 2020, target, (), weighted)
    long = validate_long(_to_long(result.table, 2020), "tudigong")
    unmatched = _unmatched_table([lost, _not_mapped(result.unmatched)], "tudigong/input", 2020)
    notes = _row_notes(kind) | {
        "files_read": sorted(TUDIGONG_FILES),
        "div0_cells_read_as_missing": div0_cells,
        "rows_without_census_population": int(counties["population"].isna().sum()),
        "counties_covered": int(long["county_code"].nunique()),
    }
    return SourceTable("tudigong", long, unmatched, {"tudigong/input": notes})


# --- census ----------------------------------------------------------------------------------


def _read_census_year(
    raw_dir: Path, history: CodeHistory, year: int, target: int
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """One census year: its long table, its unmatched rows and its notes."""
    spec = CENSUS_FILES[year]
    frame = _read_census_frame(raw_dir / spec.path, spec)
    kind = _row_kind(frame)
    counties, lost = _split_rows(frame, kind)
    counties, blanks = _blank_counts_as_zero(counties)
    counties, invalid = _coerce_numbers(counties, [q for q in spec.columns if q != "code"])
    wide = _census_variables(counties)
    weighted = _census_weights(wide)
    result = _harmonise_weighted(wide, history, year, target, ["census_population"], weighted)
    long = _to_long(result.table, year)
    unmatched = _unmatched_table([lost, _not_mapped(result.unmatched)], spec.path, year)
    notes = _row_notes(kind) | {
        "invalid_cells_set_missing": invalid,
        "blank_count_cells_read_as_zero": blanks,
        "counties_covered": int(long["county_code"].nunique()),
    }
    return long, unmatched, notes


def _read_census_frame(path: Path, spec: CensusFile) -> pd.DataFrame:
    """The sheet's columns renamed to quantities, with ``name`` and a 6-digit ``code``."""
    raw = read_excel_sheet(path, spec.sheet)
    require_columns(raw, [spec.name_column, *spec.columns.values()], path, spec.sheet)
    frame = raw[list(spec.columns.values())].set_axis(list(spec.columns), axis=1)
    frame.insert(0, "name", raw[spec.name_column].astype("string").str.strip())
    codes = enumerate(frame["code"], start=2)
    frame["code"] = [_code_or_none(value, f"row {row} of {path}") for row, value in codes]
    return frame


def _code_or_none(value: object, where: str) -> str | None:
    return None if pd.isna(value) else check_code(value, where)


def _blank_counts_as_zero(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """A blank numerator in a row with a positive denominator is a zero the yearbook left out."""
    frame = frame.copy()
    blanks = 0
    for numerators, denominator in CENSUS_RATIOS.values():
        if denominator not in frame:
            continue
        positive = pd.to_numeric(frame[denominator], errors="coerce") > 0
        for quantity in numerators:
            blank = frame[quantity].isna() & positive
            blanks += int(blank.sum())
            frame[quantity] = frame[quantity].mask(blank, 0)
    return frame, blanks


def _coerce_numbers(frame: pd.DataFrame, quantities: Sequence[str]) -> tuple[pd.DataFrame, list[dict]]:
    """Values as float; text, and counts that are negative or fractional, become missing."""
    frame = frame.copy()
    invalid: list[dict] = []
    for quantity in quantities:
        values = pd.to_numeric(frame[quantity], errors="coerce").astype(float)
        bad = frame[quantity].notna() & values.isna()
        if quantity not in NOT_COUNTS:
            bad |= (values < 0) | (values % 1 != 0)
        invalid += _invalid_cells(frame[bad], quantity)
        frame[quantity] = values.mask(bad)
    return frame, invalid


def _invalid_cells(rows: pd.DataFrame, quantity: str) -> list[dict]:
    return [
        {"county_code": code, "name": name, "quantity": quantity, "value": str(value)}
        for code, name, value in zip(rows["county_code"], rows["name"], rows[quantity], strict=True)
    ]


def _census_variables(frame: pd.DataFrame) -> pd.DataFrame:
    """The ``census_*`` variables of one year, and the ``weight_*`` columns of merges."""
    out = frame[["county_code", "name"]].assign(census_population=frame["population"])
    for variable, (numerators, denominator) in CENSUS_RATIOS.items():
        if all(q in frame for q in numerators):
            total = frame[list(numerators)].sum(axis=1, min_count=len(numerators))
            out[variable] = total / frame[denominator].where(frame[denominator] > 0)
    for variable, quantity in CENSUS_PERCENTS.items():
        out[variable] = frame[quantity] / 100.0
    for variable, quantity in CENSUS_AS_IS.items():
        out[variable] = frame[quantity]
    denominators = sorted({d for _, d in CENSUS_RATIOS.values() if d in frame})
    return out.join(frame[denominators].add_prefix("weight_"))


def _census_weights(wide: pd.DataFrame) -> dict[str, list[str]]:
    """Weight column -> the intensive variables it weights on a merge (their denominator)."""
    weighted: dict[str, list[str]] = {"weight_population": [*CENSUS_PERCENTS, *CENSUS_AS_IS]}
    for variable, (_, denominator) in CENSUS_RATIOS.items():
        if variable in wide:
            weighted.setdefault(f"weight_{denominator}", []).append(variable)
    return weighted


# --- tudigong --------------------------------------------------------------------------------


def _read_tudigong_frame(folder: Path) -> tuple[pd.DataFrame, int]:
    """The tudigong files joined on ``code``, and how many ``#DIV/0!`` cells they held."""
    parts = [_read_tudigong_file(folder / name, columns) for name, columns in TUDIGONG_FILES.items()]
    frame = parts[0][0]
    for part, _ in parts[1:]:
        frame = frame.merge(part.drop(columns="name"), on="code", how="outer")
    return frame, sum(div0 for _, div0 in parts)


def _read_tudigong_file(path: Path, columns: Mapping[str, str]) -> tuple[pd.DataFrame, int]:
    raw = read_csv_checked(path, dtype=str, encoding="utf-8-sig", keep_default_na=False)
    require_columns(raw, ["CODE", "NAME", *columns], path)
    _require_unique_codes(raw, path)
    values = raw[list(columns)]
    div0 = int((values == DIV0).to_numpy().sum())
    frame = _to_numbers(values.mask(values == DIV0).replace("", None), path).rename(columns=columns)
    frame.insert(0, "name", raw["NAME"].str.strip())
    codes = enumerate(raw["CODE"], start=2)
    frame.insert(0, "code", [check_code(code, f"row {row} of {path}") for row, code in codes])
    return frame, div0


def _require_unique_codes(raw: pd.DataFrame, path: Path) -> None:
    duplicated = sorted(set(raw.loc[raw["CODE"].duplicated(), "CODE"]))
    if duplicated:
        raise SourceFormatError(f"{path}: CODE must be unique; got duplicates {duplicated}")


def _to_numbers(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    return frame.apply(lambda column: _column_to_numbers(column, path))


def _column_to_numbers(column: pd.Series, path: Path) -> pd.Series:
    try:
        return pd.to_numeric(column).astype(float)
    except (ValueError, TypeError) as err:
        raise SourceFormatError(f"{path}: column {column.name!r} must hold numbers or {DIV0!r}; {err}") from err


def _clear_placeholder_census_values(frame: pd.DataFrame) -> pd.DataFrame:
    """A unit without census population (金门县) shows 0 for education: not data."""
    no_census = frame["population"].isna()
    return frame.assign(**{v: frame[v].mask(no_census) for v in TUDIGONG_CENSUS_VARIABLES})


# --- shared steps ----------------------------------------------------------------------------


def _row_kind(frame: pd.DataFrame) -> pd.Series:
    """Label each row: county, subtotal, blank, pseudo_unit, no_code or prefecture_only."""
    code, name = frame["code"], frame["name"]
    has_code = code.notna()
    kind = pd.Series("county", index=frame.index)
    kind[has_code & code.str[4].eq("7")] = "pseudo_unit"
    ends00 = has_code & code.str.endswith("00")
    kind[ends00] = _prefecture_row_kind(code[ends00], code[has_code])
    kind[~has_code] = "no_code"
    kind[~has_code & name.isin(SUBTOTAL_NAMES)] = "subtotal"
    kind[~has_code & pd.to_numeric(frame["population"], errors="coerce").isna()] = "blank"
    return kind


def _prefecture_row_kind(codes: pd.Series, all_codes: pd.Series) -> pd.Series:
    """``subtotal`` for a province or a prefecture with county rows under it in the same file,
    else ``prefecture_only`` (东莞 441900: a prefecture-level city without counties)."""
    with_counties = set(all_codes[all_codes.map(is_county_level)].str[:4])
    subtotal = codes.str.endswith("0000") | codes.str[:4].isin(with_counties)
    return subtotal.map({True: "subtotal", False: "prefecture_only"})


def _split_rows(frame: pd.DataFrame, kind: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """County rows keyed by ``county_code``, and the rows that go to ``unmatched``."""
    frame = frame.rename(columns={"code": "county_code"})
    lost = frame[kind.isin(UNMATCHED_REASONS)].assign(reason=kind.map(UNMATCHED_REASONS))
    return frame[kind == "county"].reset_index(drop=True), lost


def _harmonise_weighted(
    frame: pd.DataFrame,
    history: CodeHistory,
    vintage: int,
    target: int,
    counts: Sequence[str],
    weighted: Mapping[str, Sequence[str]],
) -> Harmonised:
    """:func:`harmonise` once per weight column (and once for the counts), joined."""
    calls = [{"counts": list(counts)}] if counts else []
    calls += [{"intensive": list(v), "weight": w} for w, v in weighted.items()]
    parts = [harmonise(frame, history, vintage=vintage, target=target, **c) for c in calls]
    table = reduce(lambda a, b: a.merge(b, on="county_code", how="outer"), [p.table for p in parts])
    return Harmonised(table=table, unmatched=parts[0].unmatched)


def _to_long(table: pd.DataFrame, year: int) -> pd.DataFrame:
    """Long rows of the variables (``census_*``, ``tudigong_*``) with a value."""
    variables = [c for c in table if c.startswith(("census_", "tudigong_"))]
    long = to_long(table.assign(year=year), variables)
    return long[long["value"].notna()].reset_index(drop=True)


def _not_mapped(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows :func:`harmonise` could not map, with the population column named ``population``."""
    rows = rows.rename(columns={"census_population": "population"})
    return rows.assign(reason=UNMATCHED_REASONS["not_mapped"])


def _unmatched_table(parts: Sequence[pd.DataFrame], source: str, year: int) -> pd.DataFrame:
    table = pd.concat([p.reindex(columns=UNMATCHED_COLUMNS) for p in parts], ignore_index=True)
    table["population"] = pd.to_numeric(table["population"], errors="coerce").astype(float)
    return table.assign(source=source, year=year)


def _row_notes(kind: pd.Series) -> dict:
    counts = kind.value_counts()
    return {
        "rows_read": len(kind),
        "county_rows": int(counts.get("county", 0)),
        "subtotal_rows_dropped": int(counts.get("subtotal", 0)),
        "blank_rows_dropped": int(counts.get("blank", 0)),
        "pseudo_unit_rows_dropped": int(counts.get("pseudo_unit", 0)),
        "rows_without_code_unmatched": int(counts.get("no_code", 0)),
        "prefecture_rows_unmatched": int(counts.get("prefecture_only", 0)),
        "sansha_rows_unmatched": int(counts.get("sansha_islands", 0)),
    }
