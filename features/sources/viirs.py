"""Reader of county night-time light (``viirs_county/viirs_2013_2020.dta``).

Columns ``county_id`` (6-digit code), ``year`` (2013-2020) and ``viirs_mean_masked``: the mean
VIIRS radiance over the county (nW/cm²/sr; the masking method is undocumented). The codes are
those of a boundary set of about 2020, keyed like the Amap adcodes of the centroid file and mixed
in vintage: most are valid in 2020, a few are older (崇川区 320602, 海门市 320684, 监利县 421023,
水城县 520221) or newer (临平区 330113, 钱塘区 330114 of 2021). They are mapped with
:func:`~features.codes.harmonise` from the 2020 vintage; a code not valid in 2020 is resolved
to the nearest year in which it was valid.

Mean radiance is intensive: on a merge the values are averaged weighted by the area of each
source unit (``weight``), taken from the centroid file for the codes it shares with this file,
and for the others (old codes) estimated from the target-vintage areas they map to.

Rows set aside, each with its reason in ``unmatched``:

* Taiwan, Hong Kong and Macau (``71``, ``81``, ``82``) and units without a county code
  (东莞 441900, 中山 442000, 儋州 460400, 嘉峪关 620200: codes ending in ``00``);
* the two 三沙 districts (460301, 460302): numbered as in the Amap adcodes, one below the legal
  codes, so 460302 would otherwise land on the wrong district (``AMBIGUOUS_CODES``);
* codes whose nearest valid year lies more than ``MAX_STRAY_YEARS`` from 2020: 340211 was last
  valid in 1989; the file uses it among 芜湖's 2020 districts, probably for 繁昌区 (340212,
  otherwise absent), and nearest-year resolution would spread it over three other districts;
* codes valid in no year (加格达奇区 232718, 苏州工业园区 320571, 410312, 大柴旦 632825, 999077)
  and 新星市 659011 (2021), which has no county-level predecessor in 2020.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.codes import CodeHistory, harmonise
from features.errors import SourceFormatError
from features.sources.base import SourceTable, read_stata_checked, require_columns, validate_long
from features.sources.centroids import county_area

NAME = "viirs"
RELATIVE_PATH = Path("viirs_county") / "viirs_2013_2020.dta"
COLUMNS = ["county_id", "year", "viirs_mean_masked"]
VINTAGE = 2020
VARIABLE = "viirs_mean"
MAX_STRAY_YEARS = 10
OUTSIDE_PREFIXES = {"71": "Taiwan", "81": "Hong Kong", "82": "Macau"}
AMBIGUOUS_CODES = {
    "460301": "三沙 district under its Amap adcode (西沙区; legal code 460302)",
    "460302": "三沙 district under its Amap adcode (南沙区; legal 460303, but 460302 is 西沙区)",
}


def read_viirs(raw_dir: Path, history: CodeHistory, target: int = 2020) -> SourceTable:
    """Read county mean night-time radiance 2013-2020, harmonised to the codes of ``target``.

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
        ``viirs_mean``: mean masked VIIRS radiance (nW/cm²/sr) per county and year 2013-2020.
    """
    frame = _read_frame(raw_dir / RELATIVE_PATH)
    reasons = frame["county_code"].map(lambda code: _set_aside_reason(code, history))
    kept = frame[reasons.isna()]
    kept = kept.assign(area_km2=_source_area(kept["county_code"], raw_dir, history, target))
    harmonised = harmonise(
        kept, history, vintage=VINTAGE, target=target, intensive=[VARIABLE], keys=["year"],
        weight="area_km2",
    )  # fmt: skip
    unmatched = pd.concat(
        [
            frame[reasons.notna()].assign(reason=reasons[reasons.notna()]),
            harmonised.unmatched.drop(columns="area_km2").assign(
                reason=lambda rows: rows["county_code"].map(lambda c: _unknown_reason(c, history))
            ),
        ],
        ignore_index=True,
    )
    long = harmonised.table.assign(variable=VARIABLE).rename(columns={VARIABLE: "value"})
    notes = {
        "rows_read": len(frame),
        "codes": int(frame["county_code"].nunique()),
        "codes_unmatched": int(unmatched["county_code"].nunique()),
        "codes_resolved_to_nearest_year": _resolved_to_nearest_year(kept, history),
        **_coverage(long, history, target),
    }
    return SourceTable(NAME, validate_long(long, NAME), unmatched, notes)


def _read_frame(path: Path) -> pd.DataFrame:
    """The file as ``county_code`` (str), ``year`` (int) and ``viirs_mean`` (float)."""
    raw = read_stata_checked(path)
    require_columns(raw, COLUMNS, path)
    frame = pd.DataFrame(
        {
            "county_code": raw["county_id"].astype("int64").astype(str),
            "year": raw["year"].astype(int),
            VARIABLE: raw["viirs_mean_masked"].astype(float),
        }
    )
    _check_frame(frame, path)
    return frame


def _check_frame(frame: pd.DataFrame, path: Path) -> None:
    bad = ~frame["county_code"].str.fullmatch(r"\d{6}")
    if bad.any():
        raise SourceFormatError(f"{path}: county_id must be 6 digits; got {frame.loc[bad, 'county_code'].iloc[0]!r}")
    duplicated = frame.duplicated(["county_code", "year"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise SourceFormatError(
            f"{path}: county_id and year must be unique; got {row['county_code']} {row['year']} twice"
        )


def _set_aside_reason(code: str, history: CodeHistory) -> str | None:
    """Why a code is not passed to :func:`harmonise`, or None when it is."""
    if code[:2] in OUTSIDE_PREFIXES:
        return f"{OUTSIDE_PREFIXES[code[:2]]}: outside the county code lists"
    if code.endswith("00"):
        return "not a county-level unit (prefecture-level city without counties)"
    if code in AMBIGUOUS_CODES:
        return AMBIGUOUS_CODES[code] + ": ambiguous, not mapped"
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


def _source_area(codes: pd.Series, raw_dir: Path, history: CodeHistory, target: int) -> pd.Series:
    """Area (km²) of each source unit: from the centroid file where it has the code, else the
    area of the target-vintage units the code maps to, in proportion to its share of each."""
    known = county_area(raw_dir)
    target_area = county_area(raw_dir, history, target)
    estimate = {code: _mapped_area(code, history, target, target_area) for code in set(codes) - set(known.index)}
    return codes.map(known).fillna(codes.map(estimate))


def _mapped_area(code: str, history: CodeHistory, target: int, area: pd.Series) -> float:
    year = history.nearest_year(code, VINTAGE)
    shares = history.shares(code, year, target) if year is not None else {}
    return sum(share * area.get(to, float("nan")) for to, share in shares.items()) or float("nan")


def _resolved_to_nearest_year(kept: pd.DataFrame, history: CodeHistory) -> dict[str, int]:
    """Codes not valid in 2020 but valid in another year: code -> the year used."""
    years = {code: history.nearest_year(code, VINTAGE) for code in kept["county_code"].unique()}
    return {code: year for code, year in years.items() if year not in (None, VINTAGE)}


def _coverage(long: pd.DataFrame, history: CodeHistory, target: int) -> dict:
    units = set(history.county_units(target)["county_code"])
    covered = units & set(long.loc[long["value"].notna(), "county_code"])
    return {
        "target_counties": len(units),
        "target_counties_covered": len(covered),
        "target_counties_missing": sorted(units - covered),
    }
