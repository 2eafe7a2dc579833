"""AliResearch Taobao-village rosters 2014-2016: villages and towns per county.

The rosters name villages by province, prefecture, county, town and village **names**. Each
roster is matched to the code list of its own year, then harmonised to the target vintage by
:func:`features.codes.harmonise`.

Files (``taobao_villages/``)
----------------------------
* 2014 ``taobao-village-list-2014.xlsx`` sheet ``Table 1``: 213 rows = 212 villages and one
  blank row (province only, a page-break artefact; counted in ``notes``, not a village).
  Columns 省, 市, 区/县, 镇/乡/街道, 村, 主营产品 (main products).
* 2015 ``taobao-village-list-2015.xlsx`` sheet ``Sheet1``: 780 villages (``Sheet2`` and
  ``Sheet3`` are empty). Provinces sometimes lack their suffix (``北京``, ``天津``).
* 2016 ``taobaovillage_list_2016.xlsx`` sheet ``Table 1``: title on the first row, header on
  the second, an empty ``Unnamed: 3`` column (merged cells), 1,311 villages: the total
  AliResearch published for 2016. ``taobao_village_list_2016.csv`` holds the same 1,311 rows
  in the same order plus one appended row, ``贵州省 贵阳市 西峰镇 西峰镇 立碑村``, whose county
  column holds a town: it is not in the published list, so the workbook is used and the csv
  is not read. Sheet ``Table 2``: the 135 Taobao towns with their village counts.

Values ``-`` mean "not given" and become missing.

Matching policy (:func:`match_county_names`)
--------------------------------------------
Names are compared after stripping surrounding whitespace. Against the county-level units of
one code list (``CodeHistory.county_units``), a roster row is matched by the first rule that
finds exactly one unit:

1. ``exact``: same county name within the row's prefecture;
2. ``suffix``: same name once the county suffix (县, 市, 区, 旗, 自治县, ...) is removed from
   both, within the prefecture: 增城市 -> 增城区 (2014), 永年县 -> 永年区 (2016);
3. ``autonomous``: the row's name without suffix starts an 自治县/自治旗 name within the
   prefecture (长阳县 -> 长阳土家族自治县).

A rule that finds several units does not match (the name is ambiguous). The province is
compared without its suffix (省, 市, 自治区 and their ethnic forms: ``北京`` = ``北京市``); the
prefecture without 市, 地区, 盟, 州 or 自治州, and a short form matches the long one
(``大理州`` = ``大理白族自治州``). The prefecture is ignored in the four municipalities (the 2014
roster writes ``市辖区`` for 天津) and for units governed directly by their province.

The rules run on the code list of the roster's own year first. The code lists hold the codes of
31 December, while a roster is compiled during its year, so a row still unmatched is tried on
the lists of the ``lookback`` (3) years before (``stale:YYYY``): 郫县 and 许昌县 in the 2016
roster (renamed 郫都区 and 建安区 late in 2016) match the 2015 list, and their codes are
harmonised from 2015. No typos were found in the county or prefecture columns of the three
rosters, so there is no table of corrections.

A village cannot be divided: when :func:`~features.codes.harmonise` splits a roster code among
several successors in the target vintage, the village goes to the successor that carries the
old name on (``+successor_name``): 永年县 130429 (2014, 2015) -> 永年区 130408, not 丛台区.

Development zones (白沟新城, 泉州 台商投资区, 洛阳 伊滨区, 菏泽 高新区) are not county-level
units: the rosters name a zone where its villages' towns belong to a county the roster does
not name. A zone's rows go to the host county of their town in the reviewed table
``features/zone_hosts.csv`` (``province, prefecture, zone, town, host_code, host_name, basis``;
a blank town stands for every town of the zone), with the rule ``zone_host``: the 白沟新城
villages to 高碑店市, whose town 白沟镇 is, the 台商投资区 ones to 惠安县, 伊滨区 庞村镇 to
偃师市, 菏泽 高新区 吕陵镇 to 牡丹区. A host code must be a county of the roster year's code
list. Rows that still match nothing go to ``unmatched`` with a reason, never dropped.

Effect on the counties with at least one village (2020 codes): 80 (2014), 180 (2015),
217 (2016); without the zones' hosts 高碑店市 has no village in 2014, and it is 79. Without
the look-back, 许昌县 and 郫县 stay unmatched in 2016 and it is 215.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.codes import CodeHistory, harmonise
from features.errors import CountyCodeError, SourceFormatError
from features.sources.base import SourceTable, read_csv_checked, read_excel_sheet, require_columns, validate_long

NAME = "taobao"
FOLDER = "taobao_villages"
NAME_COLUMNS = ["province", "prefecture", "county"]
VILLAGE_COLUMNS = ["year", "province", "prefecture", "county", "town", "village", "product"]
UNMATCHED_COLUMNS = ["table", "year", "province", "prefecture", "county", "town", "village",
                     "reason"]  # fmt: skip
MISSING_MARKERS = ("-", "—", "")
PROVINCE_SUFFIXES = ("维吾尔自治区", "壮族自治区", "回族自治区", "自治区", "省", "市")
PREFECTURE_SUFFIXES = ("自治州", "地区", "州", "盟", "市")
COUNTY_SUFFIXES = ("自治县", "自治旗", "林区", "特区", "县", "市", "区", "旗")
AUTONOMOUS_SUFFIXES = ("自治县", "自治旗")
MUNICIPALITIES = ("北京", "天津", "上海", "重庆")
ZONE_MARKERS = ("新城", "投资区", "开发区", "高新区", "工业园", "试验区", "管理区", "伊滨区")
LOOKBACK = 3
ZONE_HOSTS_PATH = Path(__file__).resolve().parents[1] / "zone_hosts.csv"
ZONE_HOST_COLUMNS = ["province", "prefecture", "zone", "town", "host_code", "host_name", "basis"]
ZONE_HOST_KEY = ["province", "prefecture", "zone", "town"]
TOWN_MOVES_PATH = Path(__file__).resolve().parents[1] / "town_moves.csv"
TOWN_MOVE_COLUMNS = ["province", "prefecture", "county", "town", "to_code", "to_name", "since", "basis"]
TOWN_MOVE_KEY = ["province", "prefecture", "county", "town"]


@dataclass(frozen=True)
class Roster:
    """Where one roster sheet lives and how its columns map to the standard names."""

    year: int
    file: str
    sheet: str
    header: int
    columns: dict[str, str]
    empty_columns: tuple[str, ...] = ()


VILLAGE_ROSTERS = (
    Roster(2014, "taobao-village-list-2014.xlsx", "Table 1", 0,
           {"省": "province", "市": "prefecture", "区/县": "county", "镇/乡/街道": "town",
            "村": "village", "主营产品": "product"}),
    Roster(2015, "taobao-village-list-2015.xlsx", "Sheet1", 0,
           {"省": "province", "市": "prefecture", "县": "county", "镇/街道": "town",
            "村": "village"}),
    Roster(2016, "taobaovillage_list_2016.xlsx", "Table 1", 1,
           {"省(市、区)": "province", "市（州）": "prefecture", "县（市、区）": "county",
            "乡镇(街道)": "town", "村": "village"}, empty_columns=("Unnamed: 3",)),
)  # fmt: skip
TOWN_ROSTER = Roster(2016, "taobaovillage_list_2016.xlsx", "Table 2", 1,
                     {"省(市、区)": "province", "市（州）": "prefecture", "县（市、区）": "county",
                      "乡镇(街道)": "town", "淘宝村数量": "n_villages"},
                     empty_columns=("Unnamed: 3",))  # fmt: skip
VILLAGE_YEARS = [roster.year for roster in VILLAGE_ROSTERS]


@dataclass(frozen=True)
class Unit:
    """A county-level unit of one code list, with the keys names are compared on."""

    code: str
    name: str
    prefecture_key: str | None
    stem: str
    autonomous: bool


def read_taobao(
    raw_dir: Path,
    history: CodeHistory,
    target: int = 2020,
    zone_hosts: Path = ZONE_HOSTS_PATH,
    town_moves: Path = TOWN_MOVES_PATH,
) -> SourceTable:
    """Taobao villages (2014-2016) and Taobao towns (2016) per county of the target vintage.

    Parameters
    ----------
    raw_dir : Path
        The synced raw-data folder (holds ``taobao_villages/``).
    history : CodeHistory
        Code history covering the roster years, the three years before them, and ``target``.
    target : int, default 2020
        The code vintage of the output.
    zone_hosts : Path, default ``features/zone_hosts.csv``
        The reviewed host counties of development zones' towns (:func:`load_zone_hosts`).
    town_moves : Path, default ``features/town_moves.csv``
        The reviewed towns that became a county of their own (:func:`load_town_moves`).

    Returns
    -------
    SourceTable
        ``long`` holds ``taobao_villages`` for 2014, 2015 and 2016 and ``taobao_towns`` for 2016,
        with an explicit 0 for every county of the target vintage that has none (each roster is
        complete for its year). ``unmatched`` holds the roster rows that match no county, with
        a ``reason``. ``notes`` holds rows read, blank rows skipped and matches per rule;
        ``detail`` the villages as :func:`read_taobao_villages` returns them.
    """
    hosts, moves = load_zone_hosts(zone_hosts), load_town_moves(town_moves)
    villages, notes = _read_villages(raw_dir, history, target, hosts, moves)
    towns = _match_rows(_read_roster(raw_dir, TOWN_ROSTER), history, target, hosts, moves)
    universe = history.county_units(target)["county_code"]
    long = pd.concat(
        [
            _count_long(villages, "taobao_villages", universe, VILLAGE_YEARS),
            _count_long(towns, "taobao_towns", universe, [TOWN_ROSTER.year]),
        ],
        ignore_index=True,
    )
    unmatched = pd.concat([_unmatched(villages, "villages"), _unmatched(towns, "towns")], ignore_index=True)
    notes = {**notes, "towns_read": len(towns), "town_rules": _rule_counts(towns)}
    detail = villages[[*VILLAGE_COLUMNS, "county_code", "match_rule"]]
    return SourceTable(NAME, validate_long(long, NAME), unmatched, notes, detail)


def read_taobao_villages(
    raw_dir: Path,
    history: CodeHistory,
    target: int = 2020,
    zone_hosts: Path = ZONE_HOSTS_PATH,
    town_moves: Path = TOWN_MOVES_PATH,
) -> pd.DataFrame:
    """Every village of the 2014-2016 rosters with its county code of the target vintage.

    Parameters
    ----------
    raw_dir : Path
        The synced raw-data folder (holds ``taobao_villages/``).
    history : CodeHistory
        Code history covering the roster years, the three years before them, and ``target``.
    target : int, default 2020
        The code vintage of ``county_code``.
    zone_hosts : Path, default ``features/zone_hosts.csv``
        The reviewed host counties of development zones' towns (:func:`load_zone_hosts`).
    town_moves : Path, default ``features/town_moves.csv``
        The reviewed towns that became a county of their own (:func:`load_town_moves`).

    Returns
    -------
    DataFrame
        ``year, province, prefecture, county, town, village, product`` as written in the roster
        (``product`` only in 2014, missing otherwise; ``-`` read as missing), ``county_code``
        of ``target`` (missing for the rows in :func:`read_taobao`'s ``unmatched``) and
        ``match_rule`` (``exact``, ``suffix``, ``autonomous``, ``stale:YYYY`` or ``zone_host``,
        with ``+successor_name`` when a split was resolved by name and ``+town_moved`` when the
        town became a county of its own; missing when unmatched).
    """
    villages, _ = _read_villages(raw_dir, history, target, load_zone_hosts(zone_hosts), load_town_moves(town_moves))
    return villages[[*VILLAGE_COLUMNS, "county_code", "match_rule"]]


def match_county_names(names: pd.DataFrame, history: CodeHistory, year: int, lookback: int = LOOKBACK) -> pd.DataFrame:
    """Match province, prefecture and county names to county codes of ``year`` or shortly before.

    Parameters
    ----------
    names : DataFrame
        Columns ``province``, ``prefecture``, ``county`` (strings; missing allowed).
    history : CodeHistory
        Holds the code list of ``year``; those of the ``lookback`` years before it are used
        when present.
    year : int
        The year the names refer to; its code list is tried first.
    lookback : int, default 3
        How many earlier code lists to try for names changed during or shortly before ``year``.

    Returns
    -------
    DataFrame
        Indexed like ``names``: ``roster_code`` (a code of ``code_year``; missing when
        unmatched), ``code_year``, ``match_rule`` and ``reason`` (why a row is unmatched).
    """
    require_columns(names, NAME_COLUMNS, Path("<names>"))
    if year not in history.yearly:
        raise CountyCodeError(f"year must be one of the code lists {history.years}; got {year}")
    years = [y for y in range(year, year - lookback - 1, -1) if y in history.yearly]
    lists = {y: _units_by_province(history.county_units(y)) for y in years}
    keys = names[NAME_COLUMNS].drop_duplicates()
    found = pd.DataFrame([_match_one(row, lists, year) for row in keys.itertuples(index=False)])
    table = pd.concat([keys.reset_index(drop=True), found], axis=1)
    merged = names[NAME_COLUMNS].merge(table, on=NAME_COLUMNS, how="left")
    return merged.drop(columns=NAME_COLUMNS).set_axis(names.index)


def load_zone_hosts(path: Path = ZONE_HOSTS_PATH) -> pd.DataFrame:
    """The reviewed host counties of development zones' towns.

    Parameters
    ----------
    path : Path, default ``features/zone_hosts.csv``
        A CSV with the columns ``province, prefecture, zone, town, host_code, host_name, basis``:
        the roster's province, prefecture and zone names, a town of the zone (blank: every town
        of it), the code and name of the county the town belongs to, and the evidence.

    Returns
    -------
    DataFrame
        Those columns as stripped strings, one row per ``province, prefecture, zone, town``; an
        error naming the file, line, column, what was expected and what it holds otherwise.
    """
    return _reviewed_table(path, ZONE_HOST_COLUMNS, ZONE_HOST_KEY, ("province", "prefecture", "zone", "host_name"))


def load_town_moves(path: Path = TOWN_MOVES_PATH) -> pd.DataFrame:
    """The reviewed towns of the rosters that became a county-level unit of their own after the
    roster's year, while the county the roster names kept its code (龙港镇 of 苍南县 became
    龙港市 in 2019): the code history records no predecessor for such a unit, so harmonising
    leaves the town's villages in the old county.

    Parameters
    ----------
    path : Path, default ``features/town_moves.csv``
        A CSV with the columns ``province, prefecture, county, town, to_code, to_name, since,
        basis``: the roster's names of the town and its county, the code and name of the unit
        the town became, the year it was set up, and the evidence.

    Returns
    -------
    DataFrame
        Those columns as stripped strings, one row per ``province, prefecture, county, town``;
        an error naming the file, line, column, what was expected and what it holds otherwise.
    """
    moves = _reviewed_table(
        path, TOWN_MOVE_COLUMNS, TOWN_MOVE_KEY, ("province", "prefecture", "county", "town", "to_name")
    )
    for line, since in zip(range(2, len(moves) + 2), moves["since"], strict=True):
        if not (len(since) == 4 and since.isdigit()):
            raise SourceFormatError(f"{path} line {line}: since must be a year such as 2019; got {since!r}")
    return moves


def _reviewed_table(path: Path, columns: list[str], key: list[str], names: tuple[str, ...]) -> pd.DataFrame:
    """A reviewed CSV of ``columns`` as stripped strings: ``names`` must be given, the column
    ending in ``_code`` must be a 6-digit code, and ``key`` (province and prefecture compared as
    rows are looked up) must not repeat."""
    table = read_csv_checked(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    require_columns(table, columns, path)
    table = table[columns].apply(lambda column: column.str.strip())
    table.attrs["source"] = str(path)  # for the messages of the rows placed by it
    code = next(column for column in columns if column.endswith("_code"))
    for line, row in zip(range(2, len(table) + 2), table.itertuples(index=False), strict=True):
        for column in names:
            if not getattr(row, column):
                raise SourceFormatError(f"{path} line {line}: {column} must be a name; got an empty value")
        value = getattr(row, code)
        if not (len(value) == 6 and value.isdigit()):
            raise SourceFormatError(f"{path} line {line}: {code} must be a 6-digit county code; got {value!r}")
    keys = table.assign(  # as rows are looked up: 河北 is 河北省
        province=table["province"].map(_province_key), prefecture=table["prefecture"].map(_prefecture_key)
    )
    repeated = keys.duplicated(key, keep=False)
    if repeated.any():
        lines = [int(i) + 2 for i in np.flatnonzero(repeated)]
        raise SourceFormatError(
            f"{path}: each {', '.join(key[:-1])} and {key[-1]} must be given once; lines {lines} repeat one"
        )
    return table


def _read_villages(
    raw_dir: Path, history: CodeHistory, target: int, hosts: pd.DataFrame, moves: pd.DataFrame
) -> tuple[pd.DataFrame, dict]:
    raws = [_read_roster(raw_dir, roster) for roster in VILLAGE_ROSTERS]  # format errors first
    frames, notes = [], {}
    for roster, raw in zip(VILLAGE_ROSTERS, raws, strict=True):
        blank = raw["village"].isna() & raw["county"].isna()
        notes[f"villages_read_{roster.year}"] = int((~blank).sum())
        notes[f"blank_rows_skipped_{roster.year}"] = int(blank.sum())
        frames.append(_match_rows(raw[~blank], history, target, hosts, moves))
    villages = pd.concat(frames, ignore_index=True)
    notes["village_rules"] = _rule_counts(villages)
    return villages, notes


def _read_roster(raw_dir: Path, roster: Roster) -> pd.DataFrame:
    path = Path(raw_dir) / FOLDER / roster.file
    raw = read_excel_sheet(path, roster.sheet, header=roster.header, dtype=str)
    require_columns(raw, [*roster.columns, *roster.empty_columns], path, roster.sheet)
    _check_empty(raw, roster, path)
    if raw.empty:
        raise SourceFormatError(f"{path} (sheet {roster.sheet!r}): must hold rows; got none")
    frame = raw[list(roster.columns)].rename(columns=roster.columns).apply(_clean_names)
    if "product" not in frame:
        frame["product"] = pd.Series(pd.NA, index=frame.index, dtype="str")
    return frame.assign(year=roster.year)


def _check_empty(raw: pd.DataFrame, roster: Roster, path: Path) -> None:
    for column in roster.empty_columns:
        filled = raw[column].dropna()
        if not filled.empty:
            raise SourceFormatError(
                f"{path} (sheet {roster.sheet!r}): column {column!r} must be empty; "
                f"got {filled.iloc[0]!r} in row {filled.index[0] + roster.header + 2}"
            )


def _clean_names(column: pd.Series) -> pd.Series:
    text = column.astype("str").str.strip()
    return text.mask(text.isin(MISSING_MARKERS))


def _match_rows(
    rows: pd.DataFrame, history: CodeHistory, target: int, hosts: pd.DataFrame, moves: pd.DataFrame
) -> pd.DataFrame:
    """Attach ``roster_code, code_year, match_rule, reason`` and the target ``county_code``."""
    year = int(rows["year"].iloc[0])
    matched = pd.concat([rows, match_county_names(rows, history, year)], axis=1)
    _place_zone_towns(matched, hosts, history, year)
    matched.attrs["zone_hosts"] = hosts.attrs["source"]
    matched["county_code"] = pd.Series(pd.NA, index=matched.index, dtype="str")
    for code_year, part in matched.dropna(subset=["roster_code"]).groupby("code_year"):
        codes, by_name = _target_codes(part, history, int(code_year), target)
        matched.loc[codes.index, "county_code"] = codes
        matched.loc[by_name, "match_rule"] += "+successor_name"
    _move_towns(matched, moves, history, target)
    return _add_reasons(matched, target).reset_index(drop=True)


def _move_towns(matched: pd.DataFrame, moves: pd.DataFrame, history: CodeHistory, target: int) -> None:
    """Give the rows of a town in ``moves`` (by the roster's province, prefecture, county and
    town names) the code of the unit the town became, when the target vintage has it, in place."""
    codes = set(history.county_units(target)["county_code"])
    keys = (
        matched["province"].map(lambda name: _province_key(str(name))),
        matched["prefecture"].map(lambda name: _prefecture_key(str(name))),
    )
    for move in moves.itertuples(index=False):
        if target < int(move.since):
            continue
        if move.to_code not in codes:
            raise SourceFormatError(
                f"{moves.attrs['source']}: to_code of {move.county} {move.town} must be a county of the {target}"
                f" code list, the target vintage (since {move.since}); got {move.to_code} ({move.to_name})"
            )
        rows = (
            (keys[0] == _province_key(move.province))
            & (keys[1] == _prefecture_key(move.prefecture))
            & (matched["county"] == move.county)
            & (matched["town"] == move.town)
            & matched["county_code"].notna()
        )
        matched.loc[rows, "county_code"] = move.to_code
        matched.loc[rows, "match_rule"] += "+town_moved"


def _place_zone_towns(matched: pd.DataFrame, hosts: pd.DataFrame, history: CodeHistory, year: int) -> None:
    """Give the unmatched rows of a development zone (in the county column, or in the town
    column when the county is missing) the host county of their town in ``hosts``, in place."""
    in_county = matched["county"].map(_is_zone)
    in_town = matched["county"].isna() & matched["town"].map(_is_zone)
    zone = matched["county"].where(in_county).fillna(matched["town"].where(in_town))
    town = matched["town"].where(in_county)
    by_key = {
        (_province_key(h.province), _prefecture_key(h.prefecture), h.zone, h.town): h
        for h in hosts.itertuples(index=False)
    }
    codes = set(history.county_units(year)["county_code"])
    for i in matched.index[matched["roster_code"].isna() & zone.notna()]:
        key = (
            _province_key(str(matched.at[i, "province"])),
            _prefecture_key(str(matched.at[i, "prefecture"])),
            zone[i],
        )
        host = by_key.get((*key, "" if pd.isna(town[i]) else town[i])) or by_key.get((*key, ""))
        if host is None:
            continue
        if host.host_code not in codes:
            raise SourceFormatError(
                f"{hosts.attrs['source']}: host_code of {host.zone} {host.town or '(every town)'} must be a county"
                f" of the {year} code list, the roster's year; got {host.host_code} ({host.host_name})"
            )
        matched.loc[i, ["roster_code", "code_year", "match_rule", "reason"]] = [
            host.host_code,
            year,
            "zone_host",
            pd.NA,
        ]


def _add_reasons(matched: pd.DataFrame, target: int) -> pd.DataFrame:
    """Reasons for rows without a county, zones without a host (``attrs['zone_hosts']``, the
    table's path) and codes with no single successor."""
    hosts = matched.attrs["zone_hosts"]
    no_county = matched["county"].isna() & matched["roster_code"].isna()
    matched.loc[no_county, "reason"] = [
        _missing_county_reason(*names, hosts)
        for names in matched.loc[no_county, ["province", "prefecture", "town"]].itertuples(False)
    ]
    zone = matched["roster_code"].isna() & matched["county"].map(_is_zone)
    matched.loc[zone, "reason"] += f", and not in {hosts}, the reviewed host counties of zones' towns"
    lost = matched["roster_code"].notna() & matched["county_code"].isna()
    matched.loc[lost, "reason"] = [
        f"code {code} of {code_year} has no single successor in the {target} code list"
        for code, code_year in matched.loc[lost, ["roster_code", "code_year"]].itertuples(False)
    ]
    matched.loc[lost, "match_rule"] = pd.NA
    return matched


def _target_codes(part: pd.DataFrame, history: CodeHistory, vintage: int, target: int) -> tuple[pd.Series, list]:
    """Target code per row (index of ``part``), and the rows placed by successor name.

    :func:`harmonise` maps each row's code; a village cannot be divided, so when a code was
    split among several successors the row goes to the one that carries the old name on
    (永年县 -> 永年区, not 丛台区); when none does, the row gets no code.
    """
    frame = pd.DataFrame({"county_code": part["roster_code"], "row": part.index, "n": 1.0})
    table = harmonise(frame, history, vintage=vintage, target=target, counts=["n"], keys=["row"])
    mapped = table.table
    whole = mapped[np.isclose(mapped["n"], 1.0)].set_index("row")["county_code"]
    split = mapped[~mapped["row"].isin(whole.index)]
    names = history.county_units(target).set_index("county_code")["county_name"]
    by_name = {
        row: code
        for row, group in split.groupby("row")
        if (code := _successor_by_name(group["county_code"], part.loc[row], history, names))
    }
    return pd.concat([whole, pd.Series(by_name, dtype="str")]), list(by_name)


def _successor_by_name(successors: pd.Series, row: pd.Series, history: CodeHistory, names: pd.Series) -> str | None:
    record = history.record_at(row["roster_code"], int(row["code_year"]))
    stem = _county_stem(record.name if record else row["county"])
    same = [code for code in successors if _county_stem(names.get(code, "")) == stem]
    return same[0] if len(same) == 1 else None


def _units_by_province(units: pd.DataFrame) -> dict[str, list[Unit]]:
    by_province: dict[str, list[Unit]] = {}
    for row in units.itertuples(index=False):
        province = _province_key(row.province)
        direct = row.prefecture_code == row.province_code or province in MUNICIPALITIES
        unit = Unit(
            code=row.county_code,
            name=row.county_name,
            prefecture_key=None if direct else _prefecture_key(row.prefecture),
            stem=_county_stem(row.county_name),
            autonomous=row.county_name.endswith(AUTONOMOUS_SUFFIXES),
        )
        by_province.setdefault(province, []).append(unit)
    return by_province


def _strip_suffix(name: str, suffixes: tuple[str, ...]) -> str:
    for suffix in suffixes:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _province_key(name: str) -> str:
    return _strip_suffix(name, PROVINCE_SUFFIXES)


def _prefecture_key(name: str) -> str:
    return _strip_suffix(name, PREFECTURE_SUFFIXES)


def _county_stem(name: str) -> str:
    return _strip_suffix(name, COUNTY_SUFFIXES)


def _match_one(row: tuple, lists: dict[int, dict[str, list[Unit]]], year: int) -> dict:
    province, prefecture, county = row
    if pd.isna(county) or pd.isna(province):
        return _no_match(f"{province} {prefecture}: county name missing")
    for code_year, by_province in lists.items():
        candidates = _in_prefecture(by_province.get(_province_key(province), []), prefecture)
        for rule, hits in _rules(candidates, county):
            if len(hits) == 1:
                label = rule if code_year == year else f"stale:{code_year}"
                return {"roster_code": hits[0].code, "code_year": code_year,
                        "match_rule": label, "reason": pd.NA}  # fmt: skip
    return _no_match(_unmatched_reason(province, prefecture, county, sorted(lists)))


def _in_prefecture(units: list[Unit], prefecture: object) -> list[Unit]:
    """Units of the prefecture; units with no prefecture (municipalities, 省直辖) always."""
    key = "" if pd.isna(prefecture) else _prefecture_key(prefecture)
    return [unit for unit in units if unit.prefecture_key is None or (key and unit.prefecture_key.startswith(key))]


def _rules(candidates: list[Unit], county: str) -> Iterator[tuple[str, list[Unit]]]:
    stem = _county_stem(county)
    yield "exact", [unit for unit in candidates if unit.name == county]
    yield "suffix", [unit for unit in candidates if unit.stem == stem]
    yield "autonomous", [u for u in candidates if u.autonomous and u.name.startswith(stem)]


def _no_match(reason: str) -> dict:
    return {"roster_code": pd.NA, "code_year": pd.NA, "match_rule": pd.NA, "reason": reason}


def _is_zone(name: object) -> bool:
    return isinstance(name, str) and any(marker in name for marker in ZONE_MARKERS)


def _missing_county_reason(province: object, prefecture: object, town: object, hosts: str) -> str:
    reason = f"{province} {prefecture}: county name missing"
    if _is_zone(town):
        reason += f"; the town column names {town}, a development zone, not a county-level unit, and not in {hosts}"
    return reason


def _unmatched_reason(province: str, prefecture: str, county: str, years: list[int]) -> str:
    where = f"{province} {prefecture} {county}"
    if _is_zone(county):
        return f"{where}: a development zone, not a county-level unit"
    return f"{where}: no single county-level unit of that name in the code lists of {years}"


def _count_long(rows: pd.DataFrame, variable: str, universe: pd.Series, years: list[int]) -> pd.DataFrame:
    """Rows per county and year, with an explicit 0 for every county of ``universe``."""
    counts = rows.dropna(subset=["county_code"]).groupby(["county_code", "year"]).size()
    index = pd.MultiIndex.from_product([universe, years], names=["county_code", "year"])
    long = counts.reindex(index, fill_value=0).rename("value").reset_index()
    return long.assign(variable=variable, value=long["value"].astype(float))


def _unmatched(rows: pd.DataFrame, table: str) -> pd.DataFrame:
    lost = rows[rows["county_code"].isna()].assign(table=table)
    return lost.reindex(columns=UNMATCHED_COLUMNS).reset_index(drop=True)


def _rule_counts(rows: pd.DataFrame) -> dict[str, int]:
    rules = rows["match_rule"].fillna("unmatched").value_counts()
    return {str(rule): int(n) for rule, n in rules.items()}
