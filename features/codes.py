"""County master and code harmonisation across vintages.

Every source is mapped to one target code vintage here, and only here, before anything is joined.

The policy, applied by :func:`harmonise`:

* **Unchanged or renamed** (郫县 510124 -> 郫都区 510117): the value moves to the new code as is.
* **Merge** (several old codes -> one new code): counts (population, villages, CO2 tonnes) are
  summed; intensive values (shares, rates, means, densities) are averaged, weighted by the
  ``weight`` column when the source has one (population), else by the share of each old unit
  that goes to the new one.
* **Split** (one old code -> several successors, 邢台县 130521 -> 襄都区 130502 + 信都区 130503):
  counts are divided among the successors in proportion to ``split_weights`` (e.g. their area
  in the target vintage) or equally when none is given; intensive values are copied to every
  successor (each successor inherits the old unit's rate).
* **Partial transfers** (a few townships moved while both codes stay in use) do not change
  either code's identity: the value stays with the code that survives.
* **Mapping back** (a source of a later vintage than the target, e.g. 2023 codes to 2020) inverts
  the forward map: a code that absorbed several target units hands each an equal share of its
  counts (or by ``split_weights``), and its intensive values to each.

A code that is not valid in the year a source claims (mixed vintages, as in the poverty list) is
resolved to the nearest year in which it was valid; a code valid in no year is reported back as
unmatched, never dropped in silence.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.errors import CountyCodeError, SourceFormatError

OPEN_END = 10_000
RESULT_COLUMNS = (
    "代码",
    "一级行政区",
    "二级行政区",
    "名称",
    "级别",
    "状态",
    "启用时间",
    "变更/弃用时间",
    "新代码",
)


def is_county_level(code: str) -> bool:
    """A 6-digit code that is neither a province nor a prefecture (does not end in ``00``)."""
    return len(code) == 6 and code.isdigit() and not code.endswith("00")


def check_code(code: object, where: str) -> str:
    """Return ``code`` as a 6-digit string, or raise naming ``where`` it came from."""
    text = str(code).strip()
    if text.endswith(".0"):
        text = text[:-2]
    if len(text) != 6 or not text.isdigit():
        raise CountyCodeError(f"county_code {code!r} must be 6 digits; got {len(text)} ({where})")
    return text


@dataclass(frozen=True)
class CodeRecord:
    """One row of ``areacodes/result.csv``: a code with one name over ``[start, end)``."""

    code: str
    name: str
    start: int
    end: int
    successors: tuple[tuple[str, int], ...]

    def active(self, year: int) -> bool:
        return self.start <= year < self.end


MUNICIPALITIES = ("110000", "120000", "310000", "500000")  # 北京, 天津, 上海, 重庆: prefecture-level themselves


def province_governed(units: pd.DataFrame) -> pd.Series:
    """Which of ``units`` (columns ``prefecture_code``, ``province_code``) a province governs
    directly (济源市, 仙桃市, 五指山市, 石河子市 ...): no prefecture, so their ``prefecture_code`` is
    their province's; the four municipalities' districts are not (the municipality is their
    prefecture)."""
    own = units["prefecture_code"] == units["province_code"]
    return own & ~units["province_code"].isin(MUNICIPALITIES)


def province_governed_name(province: str) -> str:
    """The code lists' name of the group of county-level units a province governs directly."""
    return "自治区直辖县级行政区划" if str(province).endswith("自治区") else "省直辖县级行政区划"


class CodeHistory:
    """All county-level code records of every year, and the yearly code lists.

    Parameters
    ----------
    records : sequence of CodeRecord
        County-level records from ``result.csv``.
    yearly : dict of int to DataFrame
        For each year, the code list ``code, name`` (all levels) of ``codes_by_year/YYYY.txt``.
    """

    def __init__(self, records: Sequence[CodeRecord], yearly: dict[int, pd.DataFrame]):
        self.records = tuple(records)
        self.yearly = dict(yearly)
        self._crosswalks: dict[tuple[int, int], pd.DataFrame] = {}
        self._backward_index: dict[tuple[int, int], dict[str, dict[str, float]]] = {}
        self._by_code: dict[str, list[CodeRecord]] = {}
        for record in sorted(self.records, key=lambda r: r.start):
            self._by_code.setdefault(record.code, []).append(record)

    @property
    def years(self) -> list[int]:
        return sorted(self.yearly)

    def record_at(self, code: str, year: int) -> CodeRecord | None:
        """The record of ``code`` valid in ``year``, or None."""
        return next((r for r in self._by_code.get(code, ()) if r.active(year)), None)

    def nearest_year(self, code: str, year: int) -> int | None:
        """``year`` if ``code`` is valid then, else the closest year in which it was valid."""
        spans = self._by_code.get(code)
        if not spans:
            return None
        if any(r.active(year) for r in spans):
            return year
        candidates = [(r.start, r) for r in spans] + [(r.end - 1, r) for r in spans]
        return min(candidates, key=lambda pair: (abs(pair[0] - year), -pair[0]))[0]

    def county_units(self, year: int) -> pd.DataFrame:
        """The county-level units of ``year``: code, name, prefecture and province."""
        table = self._year_table(year)
        names = dict(zip(table["code"], table["name"], strict=True))
        counties = table[table["code"].map(is_county_level)].copy()
        counties["province_code"] = counties["code"].str[:2] + "0000"
        counties["province"] = counties["province_code"].map(names)
        prefecture = counties["code"].str[:4] + "00"
        has_prefecture = prefecture.isin(names.keys())
        counties["prefecture_code"] = prefecture.where(has_prefecture, counties["province_code"])
        counties["prefecture"] = counties["prefecture_code"].map(names)
        governed = province_governed(counties)
        counties.loc[governed, "prefecture"] = counties.loc[governed, "province"].map(province_governed_name)
        counties.insert(0, "year", year)
        return counties.rename(columns={"code": "county_code", "name": "county_name"}).reset_index(drop=True)

    def _year_table(self, year: int) -> pd.DataFrame:
        if year not in self.yearly:
            raise CountyCodeError(f"year must be one of the code lists {self.years[0]}..{self.years[-1]}; got {year}")
        return self.yearly[year]

    def forward(self, code: str, year: int, target: int) -> dict[str, float]:
        """Where the area of ``code`` as of ``year`` lies in ``target`` (> year): code -> share."""
        record = self.record_at(code, year)
        if record is None:
            return {}
        if record.end > target:
            return {code: 1.0}
        heirs = [c for c, when in record.successors if when >= record.end]
        if not heirs:
            return {}
        shares: dict[str, float] = {}
        for heir in heirs:
            for final, share in self.forward(heir, record.end, target).items():
                shares[final] = shares.get(final, 0.0) + share / len(heirs)
        return shares

    def crosswalk(self, source_year: int, target: int) -> pd.DataFrame:
        """Rows ``from_code, to_code, share`` for every county code of ``source_year``.

        ``share`` is the part of the source unit that lies in the target unit (equal parts on a
        split). Mapping backwards (``source_year > target``) inverts the forward map.
        """
        key = (source_year, target)
        if key not in self._crosswalks:
            if source_year <= target:
                table = self._forward_table(source_year, target)
            else:
                table = self._backward_table(source_year, target)
            self._crosswalks[key] = table
        return self._crosswalks[key]

    def shares(self, code: str, year: int, target: int) -> dict[str, float]:
        """Target code -> share for one ``code`` valid in ``year`` (either direction)."""
        if year <= target:
            return self.forward(code, year, target)
        key = (year, target)
        if key not in self._backward_index:
            table = self.crosswalk(year, target)
            self._backward_index[key] = {
                code: dict(zip(rows["to_code"], rows["share"], strict=True))
                for code, rows in table.groupby("from_code")
            }
        return self._backward_index[key].get(code, {})

    def _codes_of(self, year: int) -> list[str]:
        table = self._year_table(year)
        return [c for c in table["code"] if is_county_level(c)]

    def _forward_table(self, source_year: int, target: int) -> pd.DataFrame:
        rows = [
            (code, final, share)
            for code in self._codes_of(source_year)
            for final, share in self.forward(code, source_year, target).items()
        ]
        return pd.DataFrame(rows, columns=["from_code", "to_code", "share"])

    def _backward_table(self, source_year: int, target: int) -> pd.DataFrame:
        forward = self._forward_table(target, source_year)
        total = forward.groupby("to_code")["share"].transform("sum")
        backward = forward.assign(share=forward["share"] / total)
        backward = backward.rename(columns={"from_code": "to_code", "to_code": "from_code"})
        carved = self._carved_out(set(self._codes_of(source_year)) - set(backward["from_code"]), target, source_year)
        table = pd.concat([backward, carved], ignore_index=True)
        return table[["from_code", "to_code", "share"]]

    def _carved_out(self, codes: set[str], target: int, source_year: int) -> pd.DataFrame:
        """Codes created after ``target`` from parts of units that live on (临平区 from 余杭区):
        mapped back to the donors, in equal shares."""
        donors: dict[str, list[str]] = {}
        for record in self.records:
            if not record.active(target):
                continue
            for code, when in record.successors:
                if code in codes and target < when <= source_year:
                    donors.setdefault(code, []).append(record.code)
        rows = [(c, d, 1 / len(ds)) for c, ds in donors.items() for d in ds]
        return pd.DataFrame(rows, columns=["from_code", "to_code", "share"])


def load_code_history(areacodes_dir: Path, years: Iterable[int]) -> CodeHistory:
    """Read ``result.csv`` and the yearly code lists of ``years`` from an areacodes folder."""
    records = _read_records(areacodes_dir / "result.csv")
    yearly = {year: _read_year(areacodes_dir / "codes_by_year" / f"{year}.txt") for year in years}
    return CodeHistory(records, yearly)


def _read_records(path: Path) -> list[CodeRecord]:
    if not path.is_file():
        raise SourceFormatError(f"{path}: file is missing (run `beltcast data sync`)")
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = set(RESULT_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise SourceFormatError(f"{path}: missing column(s) {sorted(missing)}; found {reader.fieldnames}")
        return [_record(row) for row in reader if row["级别"] == "县级"]


def _record(row: dict[str, str]) -> CodeRecord:
    end = int(row["变更/弃用时间"]) if row["变更/弃用时间"] else OPEN_END
    return CodeRecord(
        code=row["代码"],
        name=row["名称"],
        start=int(row["启用时间"]),
        end=end,
        successors=tuple(_successor(item, end) for item in row["新代码"].split(";") if item),
    )


def _successor(item: str, default_year: int) -> tuple[str, int]:
    code, _, rest = item.partition("[")
    return code, int(rest.rstrip("]")) if rest else default_year


def _read_year(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise SourceFormatError(
            f"{path}: code list file is missing (run `beltcast data sync`; the years read are"
            " codes.first_year..codes.last_year of the config)"
        )
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        code, _, name = line.strip().partition(" ")
        if len(code) != 6 or not code.isdigit() or not name:
            raise SourceFormatError(f"{path} line {number}: expected '<6-digit code> <name>'; got {line!r}")
        rows.append((code, name.strip()))
    return pd.DataFrame(rows, columns=["code", "name"])


def retired_codes(crosswalk: pd.DataFrame, target: int) -> dict[str, list[str]]:
    """Every code of another year that the target vintage does not have, with the codes of the
    target vintage its area went to (the crosswalk's ``from_code`` -> ``to_code``)."""
    current = set(crosswalk.loc[crosswalk["source_year"] == target, "from_code"])
    if not current:  # a crosswalk without the target year's own rows: its codes are the targets
        current = set(crosswalk["to_code"])
    retired = crosswalk.loc[~crosswalk["from_code"].isin(current), ["from_code", "to_code"]].drop_duplicates()
    return {str(code): sorted(map(str, group["to_code"])) for code, group in retired.groupby("from_code")}


@dataclass(frozen=True)
class Harmonised:
    """The result of :func:`harmonise`: the mapped table and the rows that could not be mapped."""

    table: pd.DataFrame
    unmatched: pd.DataFrame


def harmonise(
    frame: pd.DataFrame,
    history: CodeHistory,
    *,
    vintage: int,
    target: int,
    counts: Sequence[str] = (),
    intensive: Sequence[str] = (),
    keys: Sequence[str] = (),
    weight: str | None = None,
    split_weights: pd.Series | None = None,
) -> Harmonised:
    """Map a table keyed by ``county_code`` of ``vintage`` to the codes of ``target``.

    Parameters
    ----------
    frame : DataFrame
        Has ``county_code`` (6-digit strings), the value columns, and any ``keys`` (e.g. year).
    history : CodeHistory
        The code records and yearly lists.
    vintage : int
        The year of the codes in ``frame``; a code not valid then is resolved to the nearest
        year in which it was valid.
    target : int
        The target vintage.
    counts, intensive : sequence of str
        Value columns that add up (summed on a merge, divided on a split) and those that do not
        (weighted mean on a merge, copied on a split).
    keys : sequence of str
        Further key columns kept apart (year, variable, ...).
    weight : str, optional
        Column weighting intensive values on a merge (e.g. population); default the area share.
    split_weights : Series, optional
        Target code -> weight (e.g. area) dividing counts on a split; default equal parts.

    Returns
    -------
    Harmonised
        ``table`` keyed by target ``county_code`` and ``keys``; ``unmatched`` holds the input
        rows whose code is valid in no year of the history.
    """
    _check_columns(frame, ["county_code", *keys, *counts, *intensive, *([weight] if weight else [])])
    mapping = _mapping(frame["county_code"].unique(), history, vintage, target, split_weights)
    merged = frame.merge(mapping, left_on="county_code", right_on="from_code", how="left")
    unmatched = frame[frame["county_code"].isin(set(frame["county_code"]) - set(mapping["from_code"]))]
    merged = merged[merged["to_code"].notna()]
    table = _aggregate(merged, list(keys), list(counts), list(intensive), weight)
    return Harmonised(table=table, unmatched=unmatched.reset_index(drop=True))


def _check_columns(frame: pd.DataFrame, needed: Sequence[str]) -> None:
    missing = [column for column in needed if column not in frame.columns]
    if missing:
        raise SourceFormatError(f"harmonise needs column(s) {missing}; found {list(frame.columns)}")


def _mapping(
    codes: Iterable[str],
    history: CodeHistory,
    vintage: int,
    target: int,
    split_weights: pd.Series | None,
) -> pd.DataFrame:
    rows = []
    for code in codes:
        year = history.nearest_year(code, vintage)
        if year is not None:
            rows.extend((code, to, share) for to, share in history.shares(code, year, target).items())
    mapping = pd.DataFrame(rows, columns=["from_code", "to_code", "share"])
    return _reweight(mapping, split_weights)


def _reweight(mapping: pd.DataFrame, split_weights: pd.Series | None) -> pd.DataFrame:
    if split_weights is None:
        return mapping
    weight = mapping["to_code"].map(split_weights).astype(float)
    weight = weight.fillna(weight.groupby(mapping["from_code"]).transform("mean")).fillna(1.0)
    total_share = mapping.groupby("from_code")["share"].transform("sum")
    weighted = weight / weight.groupby(mapping["from_code"]).transform("sum")
    return mapping.assign(share=weighted * total_share)


def _aggregate(
    merged: pd.DataFrame,
    keys: list[str],
    counts: list[str],
    intensive: list[str],
    weight: str | None,
) -> pd.DataFrame:
    group = ["to_code", *keys]
    merged = merged.copy()
    base = merged["share"] * (merged[weight] if weight else 1.0)
    for column in counts:
        merged[column] = merged[column] * merged["share"]
    parts = [merged.groupby(group, dropna=False)[counts].sum(min_count=1)] if counts else []
    for column in intensive:
        w = base.where(merged[column].notna(), 0.0)
        num = (merged[column] * w).groupby([merged[g] for g in group], dropna=False).sum()
        den = w.groupby([merged[g] for g in group], dropna=False).sum()
        parts.append((num / den.where(den > 0)).rename(column))
    result = pd.concat(parts, axis=1).reset_index() if parts else merged[group].drop_duplicates()
    return result.rename(columns={"to_code": "county_code"})
