"""Platform metrics: the user's own county × period table (GMV, active merchants, ...), read,
validated, harmonised to the target code vintage, and turned into the belt rule's metrics.

The file
--------
CSV (UTF-8, a byte-order mark is allowed; every cell is read as text, so codes keep their
digits) or Parquet, chosen by the suffix (``.csv``; ``.parquet`` or ``.pq``). One row per
county × period, or per county × period × product category:

* ``county_code`` (required): 6-digit county-level code, of any vintage;
* ``period`` (required): ``2025Q3`` (quarterly) or ``2025`` (annual), one frequency per file,
  years 2000-2099;
* ``gmv_cny`` (required): gross merchandise value in CNY over the period, a number from 0 to 1e15;
* ``active_merchants`` (required): merchants active in the period, a number from 0 to 1e15;
* ``category`` (optional): a product string (``女装``, ``家具、竹制品``) that the mode taxonomy
  maps to a development mode; an empty cell is a row without category;
* ``is_synthetic`` (optional): ``true``/``false``; any true row makes
  :attr:`PlatformMetrics.is_synthetic` true (files from :mod:`features.synthetic`);
* ``county_name``, ``province``, ``prefecture`` (optional): read and ignored, the code decides;
* a column named as an identifier or a part of the date (``year``, ``quarter``, ``month``,
  ``date``, ``ds``/``dt``/``pt`` partitions, ``id``, ``adcode``, ``*_code``, ``*_id``, ``*_year``,
  ...: :data:`NOT_METRICS`) is refused: summed over categories and merged counties
  as a metric, it would become a feature that means nothing;
* any other column is a further metric: a number from 0 to 1e15, or an empty cell (missing); a
  rate or mean named in ``intensive`` may also be negative, down to -1e15. Further metrics are
  counts (summed on a merge, divided on a split) unless named in ``intensive``. Each becomes a
  feature of the model, ``platform_<name>`` (:func:`further_metrics`), so its name is letters,
  digits and ``_`` only, and not one of the belt rule's metrics.

Validation
----------
The whole file is checked before anything else is done; the first problem raises
:class:`PlatformMetricsError` naming the file, the row, the field, what was expected and what
came in. Rows are named ``data row N, line L of FILE``: data rows are counted from 1 after the
header, so in a CSV data row ``N`` is line ``N + 1`` as a text editor shows it (blank lines are
counted as rows and otherwise skipped). The checks, in this order:

1. the suffix is known and the file can be read (as UTF-8 for CSV), with no line break in a
   cell (an unbalanced quote joins the lines up to the next quote into one cell);
2. the required columns are present (the message lists the columns found);
3. every ``county_code`` is 6 digits;
4. every ``county_code`` is a county-level code in some year of the code history: an unknown
   code is an error, never dropped in silence; the four prefecture-level cities without
   counties (东莞 441900, 中山 442000, 儋州 460400, 嘉峪关 620200), which platforms report as
   counties but which are no county of the code lists, go to ``unmatched`` with their reason;
5. every ``period`` looks like ``2025`` or ``2025Q3`` with a year in 2000-2099;
6. all periods are of one frequency;
7. no period lies after ``as_of_limit``, when given (see below);
8. ``gmv_cny`` and ``active_merchants`` are finite numbers >= 0 in every row; further metrics
   are finite numbers >= 0 (``intensive`` ones: of either sign) or empty;
9. ``is_synthetic``, when present, is true or false;
10. the key ``(county_code, period[, category])`` is unique, compared on the codes as written
    (510124 and 510117 in one period are not a duplicate: they are summed by harmonisation).

**Period order.** Platform exports come in any order, so rows need not be sorted and a county
may have gaps (a gap makes trailing sums over it unknown, see :func:`rule_metrics`). A period
is *out of order* only when it lies in the future: after ``as_of_limit`` (e.g. the current
quarter), which is an error. An annual value of year ``Y`` counts as dated ``YQ4``
(:func:`features.periods.year_end`), so with ``as_of_limit="2025Q3"`` the year 2025 is still in
the future; a quarterly file with an annual limit ``"2025"`` may run to 2025Q4. Repeated
periods are duplicate keys (check 10).

Harmonisation
-------------
After validation the table goes through :func:`features.codes.harmonise`, the one place where
codes of any vintage are mapped to the target vintage: ``gmv_cny``, ``active_merchants`` and
further metrics are counts (summed on a merge; divided on a split, in equal parts or by
``split_weights``). Codes are taken as of ``code_vintage`` when given; when it is None, each
code is resolved to the year nearest to ``target`` in which it was valid, so a file mixing
vintages (郫县 510124 in 2015 rows, 郫都区 510117 later) lands on one code. Rows whose code
maps to no unit of the target vintage are returned in ``unmatched``.
"""

from __future__ import annotations

import csv
import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.codes import CodeHistory, harmonise, is_county_level
from features.errors import CountyCodeError, SourceFormatError, shown
from features.labels import BeltRule, Condition
from features.periods import ANNUAL, QUARTERLY, PeriodError, label, parse_period, per_year
from features.taxonomy import MODES, ModeTaxonomy, load_taxonomy

REQUIRED = ("county_code", "period", "gmv_cny", "active_merchants")
COUNTS = ("active_merchants",)  # whole numbers: a fraction is a column of another metric, or an export slip
CATEGORY = "category"
SYNTHETIC_FLAG = "is_synthetic"
IGNORED = ("county_name", "province", "prefecture")
NOT_METRICS = re.compile(  # identifiers, dates and partition columns (ds, dt, pt of Hive and MaxCompute exports)
    r"(year|quarter|month|week|day|date|ds|dt|pt|id|code|adcode|citycode|year_?(month|quarter)|.+_(code|id|year|month"
    r"|quarter|date))",
    re.IGNORECASE,
)
CITIES_WITHOUT_COUNTIES = {"441900": "东莞市", "442000": "中山市", "460400": "儋州市", "620200": "嘉峪关市"}
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
YEARS = range(2000, 2100)
FLAG_VALUES = {"true": True, "false": False, "1": True, "0": False}
ROW = "row"  # the data row number the reader keeps beside the columns (unmatched.csv names it)
FRAME_COLUMNS = ("county_code", "period", CATEGORY, "gmv_cny", "active_merchants")
GROWTH_DECIMALS = 9
LARGEST = 1e15  # a metric's largest value: sums over counties and quarters stay finite and exact enough
PLACEHOLDER_THRESHOLDS = (("gmv_annual_cny", 1e8), ("active_merchants", 100.0), ("gmv_growth_yoy", 0.2))
# The metrics :func:`rule_metrics` computes, each with the years of one county's history it needs
# in the period it is computed for (0: the period alone). ``pipelines.config`` lists the same names.
RULE_METRICS = {"gmv_annual_cny": 1, "active_merchants": 0, "gmv_growth_yoy": 2}
FEATURE_NAME = re.compile(r"\w+")  # a further metric's name, in its feature's: no space, comma, bracket ...


class PlatformMetricsError(SourceFormatError):
    """A platform-metrics file cannot be read, or one of its rows is invalid."""


@dataclass(frozen=True)
class PlatformMetrics:
    """Platform metrics read, validated and harmonised (build with :func:`read_platform_metrics`).

    Attributes
    ----------
    frame : DataFrame
        ``county_code`` (target vintage), ``period`` (int: a year, or a quarter index
        ``year * 4 + quarter - 1``), ``category`` (the product string, None when the file has
        no category or the cell is empty, which it is in all rows of a county and period or in
        none), ``gmv_cny``, ``active_merchants`` and any further metrics (float). Unique by
        ``county_code, period, category``.
    frequency : str
        ``"annual"`` or ``"quarterly"``.
    unmatched : DataFrame
        Validated rows whose code maps to no county of the target vintage, with their
        ``row`` (data row number) and a ``reason``.
    is_synthetic : bool
        True when the file marks its rows as synthetic (``is_synthetic`` column).
    notes : dict
        Counts for the quality summary (rows read, codes resolved to another year, ...).
    intensive : tuple of str
        The further metrics that are rates or means, not counts.
    """

    frame: pd.DataFrame
    frequency: str
    unmatched: pd.DataFrame = field(default_factory=pd.DataFrame)
    is_synthetic: bool = False
    notes: dict = field(default_factory=dict)
    intensive: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.frequency not in (ANNUAL, QUARTERLY):
            raise PlatformMetricsError(f"frequency must be {ANNUAL!r} or {QUARTERLY!r}; got {self.frequency!r}")
        missing = [column for column in FRAME_COLUMNS if column not in self.frame.columns]
        if missing:
            raise PlatformMetricsError(
                f"platform metrics frame needs column(s) {missing}; found {list(self.frame.columns)}"
            )

    @property
    def metric_columns(self) -> list[str]:
        """The numeric metric columns of :attr:`frame`."""
        return [c for c in self.frame.columns if c not in ("county_code", "period", CATEGORY)]

    @property
    def further_columns(self) -> list[str]:
        """The further metric columns: the metrics besides ``gmv_cny`` and ``active_merchants``."""
        return [c for c in self.metric_columns if c not in ("gmv_cny", "active_merchants")]

    @property
    def has_categories(self) -> bool:
        """Whether any row carries a product category."""
        return bool(self.frame[CATEGORY].notna().any())


def read_platform_metrics(
    path: Path | str,
    history: CodeHistory,
    target: int = 2020,
    code_vintage: int | None = None,
    *,
    as_of_limit: str | None = None,
    limit_name: str = "as_of_limit",
    intensive: Sequence[str] = (),
    split_weights: pd.Series | None = None,
    path_name: str = "",
) -> PlatformMetrics:
    """Read a platform-metrics file (CSV or Parquet), validate every row, harmonise its codes.

    Parameters
    ----------
    path : path-like
        A ``.csv`` (UTF-8) or ``.parquet``/``.pq`` file laid out as in the module docstring.
    history : CodeHistory
        County code records and yearly code lists.
    target : int, default 2020
        The code vintage of the result; one of the history's code-list years.
    code_vintage : int, optional
        The vintage of the file's codes (a code-list year). When None, each code is resolved to
        the year nearest to ``target`` in which it was valid.
    as_of_limit : str, optional
        The latest period the file may hold (e.g. the current quarter, ``"2025Q3"``); a later
        period is an error (data from the future). None: no limit.
    limit_name : str, default "as_of_limit"
        What the error message calls the limit (``"--period"`` when a command line option set it).
    intensive : sequence of str, optional
        Further metric columns that are rates or means rather than counts: averaged (by area
        share) on a merge and copied on a split. ``gmv_cny`` and ``active_merchants`` are counts.
    split_weights : Series, optional
        Target code -> weight (e.g. area) dividing counts on a split; default equal parts.
    path_name : str, optional
        The option or setting ``path`` came from (``"--metrics"``, ``"[platform] metrics_file"``),
        named first when the file is missing, a folder or of another suffix.

    Returns
    -------
    PlatformMetrics

    Raises
    ------
    PlatformMetricsError
        On the first problem found by the checks of the module docstring; the message names the
        file, the data row and the field, what was expected and what came in.
    CountyCodeError
        If ``target`` or ``code_vintage`` is not a year of the history's code lists.
    """
    path = Path(path)
    _check_vintages(history, target, code_vintage)
    raw = _read_file(path, path_name)
    table, frequency, is_synthetic = _validated(raw, path, history, target, (as_of_limit, limit_name), intensive)
    vintage = target if code_vintage is None else code_vintage
    extras = [c for c in table.columns if c not in (*FRAME_COLUMNS, ROW)]
    keys = ["period", CATEGORY] if table[CATEGORY].notna().any() else ["period"]
    harmonised = harmonise(
        table.drop(columns=[] if CATEGORY in keys else [CATEGORY]),
        history,
        vintage=vintage,
        target=target,
        counts=["gmv_cny", "active_merchants", *[c for c in extras if c not in intensive]],
        intensive=list(intensive),
        keys=keys,
        split_weights=split_weights,
    )
    frame = _tidy(harmonised.table, extras)
    city = harmonised.unmatched["county_code"].map(CITIES_WITHOUT_COUNTIES)
    unmatched = harmonised.unmatched.assign(
        reason=("a prefecture-level city without counties (" + city + "), no county of the panel").fillna(
            f"code maps to no county of the {target} vintage"
        )
    )
    notes = _notes(raw, table, frame, history, vintage, frequency)
    return PlatformMetrics(frame, frequency, unmatched, is_synthetic, notes, tuple(intensive))


def _check_vintages(history: CodeHistory, target: int, code_vintage: int | None) -> None:
    for name, year in (("target", target), ("code_vintage", code_vintage)):
        if year is not None and year not in history.years:
            raise CountyCodeError(
                f"{name} must be a year of the code lists {history.years[0]}..{history.years[-1]}; got {year}"
            )


def _read_file(path: Path, path_name: str = "") -> pd.DataFrame:
    kind = SUFFIXES.get(path.suffix.lower())
    named = f"{path_name} {path}" if path_name else str(path)
    if path.is_dir():
        raise PlatformMetricsError(f"{named}: must be a .csv or .parquet file; got a folder")
    if kind is None:
        raise PlatformMetricsError(f"{named}: file suffix must be one of {sorted(SUFFIXES)}; got {path.suffix!r}")
    if not path.is_file():
        raise PlatformMetricsError(f"{named}: file is missing; expected the platform metrics file (CSV or Parquet)")
    if workbook := _workbook(path):
        raise PlatformMetricsError(
            f"{path}: must be a {kind.upper()} file; got an Excel workbook ({workbook}) named {path.suffix}: save"
            " it as CSV UTF-8 (Excel: File > Save As > CSV UTF-8; WPS: 另存为 CSV)"
            + (" and give the .csv file" if kind != "csv" else "")
        )
    header = _csv_header(path) if kind == "csv" else None
    if header and header[0].strip().lower().startswith("sep="):
        raise PlatformMetricsError(
            f"{path}: the first line must be the header row (county_code, period, gmv_cny, active_merchants, ...);"
            f" got {','.join(header)!r}, the separator hint Excel writes: delete that line"
        )
    raw = _read_csv(path) if kind == "csv" else _read_parquet(path)
    named = header if header is not None and len(header) == len(raw.columns) else raw.columns
    raw.columns = [str(column).strip() for column in named]
    raw = _without_empty_unnamed(raw)
    _check_header(raw.columns, path)
    missing = [column for column in REQUIRED if column not in raw.columns]
    if missing:
        raise PlatformMetricsError(f"{path}: missing required column(s) {missing}; found columns {list(raw.columns)}")
    if kind == "csv":
        _check_not_gbk(raw, path)
    if raw.empty:
        raise PlatformMetricsError(f"{path}: must hold at least one data row; got only the header")
    return raw


WORKBOOK_MAGIC = {b"PK\x03\x04": "xlsx", b"\xd0\xcf\x11\xe0": "xls"}  # a zip (xlsx), an OLE file (xls)


def _workbook(path: Path) -> str | None:
    """``xlsx`` or ``xls`` when the file's first bytes are a workbook's, else None (a workbook
    renamed ``.csv`` would otherwise be blamed on its encoding)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    return WORKBOOK_MAGIC.get(head)


CJK = re.compile(r"[\u3400-\u9fff]")
# Chinese, CJK and full-width punctuation, and ASCII but letters (鞋/女装, 女装 鞋, 鞋(女))
NOT_GBK_TEXT = re.compile(r"[^\x20-\x40\x5b-\x60\x7b-\x7e\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")


def gbk_misread(text: str) -> str | None:
    """The Chinese text ``text`` is when it is GBK bytes read as UTF-8, else None. Most GBK text is
    no valid UTF-8 and fails to decode; a few words are (鞋 is ``D0 AC``, read as ``Ь``; 女装 as
    ``Ůװ``), and a file of only such words passes as UTF-8. Text with Chinese or an ASCII letter
    in it is taken as it is (``café`` reads as GBK too, as ``caf茅``), as is one whose GBK reading
    is not all Chinese."""
    if text.isascii() or CJK.search(text) or re.search(r"[A-Za-z]", text):
        return None
    try:
        chinese = text.encode("utf-8").decode("gbk")
    except UnicodeError:
        return None
    return chinese if CJK.search(chinese) and not NOT_GBK_TEXT.search(chinese) else None


def _check_not_gbk(raw: pd.DataFrame, path: Path) -> None:
    """No category that is GBK read as UTF-8 (:func:`gbk_misread`) and, so read, a category of the
    mode taxonomy (鞋): the encoding error of a file whose GBK bytes happen to be valid UTF-8, named
    as the undecodable ones are, not later as categories that map to no mode."""
    if CATEGORY not in raw.columns:
        return
    text = _text(raw[CATEGORY])
    misread = {value: chinese for value in text.unique() if value and (chinese := gbk_misread(value))}
    if misread:  # rare: the taxonomy is read only then
        taxonomy = load_taxonomy()
        misread = {value: chinese for value, chinese in misread.items() if taxonomy.mode_of(chinese)}
    bad = text.map(misread).notna()
    if bad.any():
        i = _first(bad)
        raise PlatformMetricsError(
            f"{path}: must be UTF-8 encoded (re-save it as UTF-8; Excel and WPS may save Chinese text as GBK);"
            f" got {CATEGORY} {shown(raw.at[i, CATEGORY])}, which is GBK for {misread[text.at[i]]!r} read as UTF-8"
            f" ({_where(path, i)}){_also(bad)}"
        )


def _csv_header(path: Path) -> list[str] | None:
    """The header cells as written (pandas renames a repeated one ``x.1`` and an empty one
    ``Unnamed: N``); None when the first line cannot be read (:func:`_read_csv` says why)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return next(csv.reader(handle), None)
    except (UnicodeDecodeError, csv.Error):
        return None


def _without_empty_unnamed(raw: pd.DataFrame) -> pd.DataFrame:
    """``raw`` without the columns that have no name and no value (a trailing comma on every
    line, as spreadsheets export); an unnamed column with values stays, for :func:`_check_header`."""
    unnamed = [i for i, name in enumerate(raw.columns) if name == ""]
    empty = [i for i in unnamed if _text(raw.iloc[:, i]).eq("").all()]
    return raw.iloc[:, [i for i in range(raw.shape[1]) if i not in empty]] if empty else raw


def _check_header(columns: pd.Index, path: Path) -> None:
    """Every column named (an unnamed one holds values: an index saved with the table?), and once."""
    names = list(columns)
    empty = [i + 1 for i, name in enumerate(names) if name == ""]
    if empty:
        raise PlatformMetricsError(
            f"{path}: every column must have a name in the header; got none for column(s) {empty}"
            " (an index saved with the table?)"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise PlatformMetricsError(f"{path}: each column must appear once in the header; got {repeated} more than once")


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        raw = pd.read_csv(path, dtype=str, na_filter=False, skip_blank_lines=False, encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        line, reason = _undecodable(path.read_bytes(), err)
        raise PlatformMetricsError(
            f"{path}: must be UTF-8 encoded (re-save it as UTF-8; Excel and WPS may save Chinese text as GBK);"
            f" got a byte UTF-8 cannot read on line {line} ({reason})"
        ) from err
    except pd.errors.EmptyDataError as err:
        raise PlatformMetricsError(
            f"{path}: must start with a header row naming the columns (county_code, period, gmv_cny,"
            " active_merchants, ...); got an empty file"
        ) from err
    except pd.errors.ParserError as err:
        raise PlatformMetricsError(f"{path}: cannot be read as CSV: {str(err).strip()}") from err
    blank = (raw == "").all(axis=1)
    raw = raw[~blank]
    _check_no_line_breaks(raw, path)
    return raw


def _check_no_line_breaks(raw: pd.DataFrame, path: Path) -> None:
    """No cell holds a line break: a quote left open (``"鞋``) makes every line up to the next quote
    one cell, and the rows between them would be lost without a word."""
    for column in raw.columns:
        broken = raw[column].str.contains("[\r\n]", regex=True)
        if broken.any():
            i = _first(broken)
            cell = raw.at[i, column]
            lines = len(cell.splitlines()) + cell.endswith(("\n", "\r"))
            raise PlatformMetricsError(
                f"{str(column).strip()} must hold no line break; got {cell[:60]!r} ({_where(path, i)}, running over"
                f' {lines} lines): a quote (") opened in it and closed {lines - 1} line(s) later joins those lines'
                " into one cell; remove the stray quote or close it on its own line" + _also(broken)
            )


def _undecodable(data: bytes, err: UnicodeDecodeError) -> tuple[int | str, str]:
    """The line of the first byte of ``data`` UTF-8 cannot read, and why (pandas' own error counts
    from the start of the chunk it was decoding, not of the file)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as own:
        return data[: own.start].count(b"\n") + 1, own.reason
    return "?", err.reason


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except Exception:  # not Parquet: read_parquet below names the problem
        names = []
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise PlatformMetricsError(f"{path}: each column must appear once; got {repeated} more than once")
    try:
        frame = pd.read_parquet(path)
        named = any(name is not None for name in frame.index.names)  # county_code saved as the index
        return frame.reset_index(drop=not named)
    except Exception as err:  # pyarrow raises several types for a corrupt file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PlatformMetricsError(f"{path}: cannot be read as Parquet: {first}") from err


def _where(path: Path, index: int) -> str:
    """``data row N, line N+1 of FILE`` for the row labelled ``index`` (0-based, header excluded)."""
    line = f", line {index + 2}" if SUFFIXES[path.suffix.lower()] == "csv" else ""
    return f"data row {index + 1}{line} of {path}"


def _first(flags: pd.Series) -> int:
    return int(flags.idxmax())


LISTED_ROWS = 10  # the further rows of one problem an error lists; it counts the others


def _also(flags: pd.Series) -> str:
    """The other rows ``flags`` marks, after the first that the message names: ``; also data rows
    21, 31 and 4 more``, so that an export with one kind of problem in many rows is mended in one go."""
    rows = [int(i) + 1 for i in flags.index[flags.to_numpy(dtype=bool)][1:]]
    if not rows:
        return ""
    listed = ", ".join(map(str, rows[:LISTED_ROWS]))
    more = f" and {len(rows) - LISTED_ROWS} more" if len(rows) > LISTED_ROWS else ""
    return f"; also data row{'s' * (len(rows) > 1)} {listed}{more}"


class _Problems:
    """The problems of independent checks of one file, raised together: a file with bad codes in
    some rows and bad values in others is named whole at once, not one check per run."""

    def __init__(self, path: Path) -> None:
        self.path, self.messages = path, []

    def attempt(self, check, *args, **kwargs):
        try:
            return check(*args, **kwargs)
        except PlatformMetricsError as err:
            self.messages.append(str(err))
            return None

    def raise_any(self) -> None:
        if len(self.messages) == 1:
            raise PlatformMetricsError(self.messages[0])
        if self.messages:
            listed = "".join(f"\n- {message}" for message in self.messages)
            raise PlatformMetricsError(
                f"{self.path}: {len(self.messages)} problems, each named with the first row it is in:{listed}"
            )


def _validated(
    raw: pd.DataFrame,
    path: Path,
    history: CodeHistory,
    target: int,
    limit: tuple[str | None, str],
    intensive: Sequence[str],
) -> tuple[pd.DataFrame, str, bool]:
    """The checked table (``row``, ``county_code``, ``period`` as int, ``category``, metrics),
    its frequency and whether it is marked synthetic; ``limit`` is ``as_of_limit`` and its name."""
    extras = _extra_metrics(raw, intensive, path)  # the file's layout first: the rows' checks need it
    problems = _Problems(path)
    codes = problems.attempt(_codes, raw, path, history, target)
    frequency, periods = problems.attempt(_periods, raw, path) or (None, None)
    if periods is not None:
        problems.attempt(_check_future, raw, path, periods, frequency, *limit)
    metrics = {
        c: problems.attempt(_numbers, raw, c, path, required=c in REQUIRED, signed=c in intensive, whole=c in COUNTS)
        for c in ("gmv_cny", "active_merchants", *extras)
    }
    is_synthetic = problems.attempt(_synthetic_flag, raw, path)
    problems.raise_any()
    table = pd.DataFrame(
        {ROW: raw.index + 1, "county_code": codes, "period": periods, CATEGORY: _categories(raw), **metrics},
        index=raw.index,
    )
    _check_unique(table, raw, path)
    return table, frequency, is_synthetic


def _text(series: pd.Series) -> pd.Series:
    """Cells as stripped text, missing -> ``""``."""
    return series.astype("string").fillna("").str.strip()


def _integral_text(series: pd.Series) -> pd.Series:
    """Like :func:`_text`, with a trailing ``.0`` removed (codes and years stored as floats)."""
    return _text(series).str.replace(r"\.0$", "", regex=True)


def _codes(raw: pd.DataFrame, path: Path, history: CodeHistory, target: int) -> pd.Series:
    codes = _integral_text(raw["county_code"])
    malformed = ~codes.str.fullmatch(r"[0-9]{6}")
    if malformed.any():
        i = _first(malformed)
        raise PlatformMetricsError(
            f"county_code {shown(raw.at[i, 'county_code'])} must be 6 digits 0-9; "
            f"got {len(codes.at[i])} characters ({_where(path, i)}){_also(malformed)}"
        )
    known = {
        code: code in CITIES_WITHOUT_COUNTIES or history.nearest_year(code, target) is not None
        for code in codes.unique()
    }
    unknown = ~codes.map(known).astype(bool)
    if unknown.any():
        i = _first(unknown)
        what = (
            "a code valid in no year"
            if is_county_level(codes.at[i])
            else "a province or prefecture code (ending in 00), not a county's"
        )
        raise PlatformMetricsError(
            f"county_code {codes.at[i]!r} must be a county-level code of some year of the code history; "
            f"got {what} ({_where(path, i)}){_also(unknown)}"
        )
    return codes.astype(object)


def _periods(raw: pd.DataFrame, path: Path) -> tuple[str, pd.Series]:
    text = _integral_text(raw["period"])
    parsed = {value: _parse(value) for value in text.unique()}
    bad = text.map(lambda value: parsed[value] is None)
    if bad.any():
        i = _first(bad)
        raise PlatformMetricsError(
            f"period must look like 2025 (annual) or 2025Q3 (quarterly), with a year in "
            f"{YEARS[0]}..{YEARS[-1]}; got {shown(raw.at[i, 'period'])} ({_where(path, i)}){_also(bad)}"
        )
    kinds = text.map(lambda value: parsed[value][0])
    frequency = kinds.iloc[0]
    mixed = kinds != frequency
    if mixed.any():
        i, first = _first(mixed), kinds.index[0]
        raise PlatformMetricsError(
            f"period must be {frequency} in every row, like {text.at[first]!r} in {_where(path, first)}; "
            f"got {kinds.at[i]} {text.at[i]!r} ({_where(path, i)}){_also(mixed)}"
        )
    return frequency, text.map(lambda value: parsed[value][1]).astype("int64")


def _parse(value: str) -> tuple[str, int] | None:
    try:
        kind, index = parse_period(value)
    except PeriodError:
        return None
    year = index // 4 if kind == QUARTERLY else index
    return (kind, index) if year in YEARS else None


def _check_future(
    raw: pd.DataFrame, path: Path, periods: pd.Series, frequency: str, as_of_limit: str | None, limit_name: str
) -> None:
    if as_of_limit is None:
        return
    limit = _limit(as_of_limit, frequency)
    late = periods > limit
    if late.any():
        i = _first(late)
        raise PlatformMetricsError(
            f"period must not be after {limit_name} {as_of_limit!r} (no data from the future); "
            f"got {shown(raw.at[i, 'period'])} ({_where(path, i)}){_also(late)}"
        )


def _limit(as_of_limit: str, frequency: str) -> int:
    """The last allowed period of ``frequency``; an annual value of year Y is dated YQ4."""
    kind, index = parse_period(as_of_limit)
    if kind == frequency:
        return index
    if frequency == ANNUAL:
        return (index - 3) // 4
    return index * 4 + 3


def _extra_metrics(raw: pd.DataFrame, intensive: Sequence[str], path: Path) -> list[str]:
    special = {*REQUIRED, CATEGORY, SYNTHETIC_FLAG, *IGNORED}
    extras = [c for c in raw.columns if c not in special]
    stray = [c for c in intensive if c not in extras]
    if stray:
        raise PlatformMetricsError(
            f"{path}: intensive must name further metric columns of the file ({extras}); got {stray}"
        )
    for column in extras:  # a column of text is a misnamed known column more likely than a metric
        if NOT_METRICS.fullmatch(str(column)):
            raise PlatformMetricsError(
                f"{path}: column {str(column)!r} is an identifier or a part of the date, not a metric (the county is"
                f" county_code, the period is period); every other column is a further metric, summed over"
                f" categories and merged counties and made a feature of the model: drop it, or rename it if it is"
                f" a metric"
            )
        text = _text(raw[column])
        given = text[text != ""]
        if len(raw) and not len(given):  # a feature of no value: nothing to learn, a column to carry
            raise PlatformMetricsError(
                f"{path}: column {str(column)!r} is none of the known columns ({', '.join(sorted(special))}) and"
                " is empty in every row, where a further metric holds numbers; fill it or drop it"
            )
        if len(given) and pd.to_numeric(given, errors="coerce").isna().all():
            near = difflib.get_close_matches(str(column).lower(), sorted(special), n=1, cutoff=0.6)
            first = given.iloc[0]
            hint = (
                f"; did you mean {near[0]!r}?"
                if near
                else "; write a percentage as a number (12% as 0.12)"
                if first.endswith("%")
                else "; a true/false column is no metric: drop it"
                if first.lower() in ("true", "false")
                else ""
            )
            raise PlatformMetricsError(
                f"{path}: column {str(column)!r} is none of the known columns ({', '.join(sorted(special))}) and"
                f" holds text ({shown(raw.at[given.index[0], column])}), where a further metric holds numbers" + hint
            )
        if not FEATURE_NAME.fullmatch(str(column)) or column in (*RULE_METRICS, *mode_share_names(), ROW):
            raise PlatformMetricsError(
                f"{path}: a further metric's column name becomes the feature platform_<name>, so it must be"
                f" letters, digits and _ only, and none of the belt rule's metrics ({', '.join(RULE_METRICS)}),"
                f" of the modes' GMV shares ({', '.join(mode_share_names())}) nor {ROW!r} (the reader's own row"
                f" number); got {str(column)!r}: rename the column"
            )
    return extras


def _numbers(
    raw: pd.DataFrame, column: str, path: Path, required: bool, signed: bool = False, whole: bool = False
) -> pd.Series:
    """A metric column as float; a number from 0 (``signed``: from -:data:`LARGEST`) to
    :data:`LARGEST`, a whole one with ``whole``, or (unless ``required``) empty in every row."""
    series = raw[column]
    low = -LARGEST if signed else 0.0
    if pd.api.types.is_bool_dtype(series):
        raise PlatformMetricsError(f"{path}: {column} must hold numbers >= {low:g}; got a true/false column")
    text = _text(series)
    empty = text == ""
    values = pd.to_numeric(text.mask(empty), errors="coerce").astype(float)
    invalid = (values.isna() & ~empty) | (values < low) | (values > LARGEST) | (empty & required)
    if invalid.any():
        i = _first(invalid)
        got = "an empty cell" if empty.at[i] else shown(raw.at[i, column])
        low_text = f"{low:.0e}" if signed else "0"
        raise PlatformMetricsError(
            f"{column} must be a number from {low_text} to {LARGEST:.0e}; got {got} ({_where(path, i)}){_also(invalid)}"
        )
    fraction = values.notna() & (values != values.round())
    if whole and fraction.any():
        i = _first(fraction)
        raise PlatformMetricsError(
            f"{column} must be a whole number (a count); got {shown(raw.at[i, column])} ({_where(path, i)})"
            + _also(fraction)
        )
    return values


def _categories(raw: pd.DataFrame) -> pd.Series:
    if CATEGORY not in raw.columns:
        return pd.Series(None, index=raw.index, dtype=object)
    text = _text(raw[CATEGORY]).astype(object)
    return text.where(text != "", None)


def _synthetic_flag(raw: pd.DataFrame, path: Path) -> bool:
    if SYNTHETIC_FLAG not in raw.columns:
        return False
    text = _text(raw[SYNTHETIC_FLAG]).str.lower()
    flags = text.map(FLAG_VALUES)
    if flags.isna().any():
        i = _first(flags.isna())
        raise PlatformMetricsError(
            f"{SYNTHETIC_FLAG} must be true or false; got {shown(raw.at[i, SYNTHETIC_FLAG])} ({_where(path, i)})"
            + _also(flags.isna())
        )
    return bool(flags.astype(bool).any())


def _check_unique(table: pd.DataFrame, raw: pd.DataFrame, path: Path) -> None:
    keys = ["county_code", "period", *([CATEGORY] if CATEGORY in raw.columns else [])]
    key_frame = table[keys].fillna("")
    repeated = key_frame.duplicated()
    if repeated.any():
        i = _first(repeated)
        first = int(key_frame.index[(key_frame == key_frame.loc[i]).all(axis=1)][0])
        given = tuple(str(raw.at[i, c]).strip() for c in keys)
        raise PlatformMetricsError(
            f"({', '.join(keys)}) must be unique; got {given} again ({_where(path, i)}), "
            f"already in {_where(path, first)}{_also(repeated)}"
        )
    if CATEGORY not in raw.columns:
        return
    # a county's total beside its breakdown (an export's subtotal row) would be counted twice
    blank = table[CATEGORY].isna()
    both = blank & (~blank).groupby([table["county_code"], table["period"]], sort=False).transform("any")
    if both.any():
        i = _first(both)
        same = (table["county_code"] == table.at[i, "county_code"]) & (table["period"] == table.at[i, "period"])
        other = int(table.index[same & ~blank][0])
        given = tuple(str(raw.at[i, c]).strip() for c in ("county_code", "period"))
        raise PlatformMetricsError(
            f"{CATEGORY} must be given in every row of a county and period or in none (a row without it reads"
            f" as the county's total, which its parts would be added to; name a remainder's {CATEGORY}, e.g."
            f" 其他); got {given} without a {CATEGORY} ({_where(path, i)}) and with"
            f" {shown(raw.at[other, CATEGORY])} ({_where(path, other)}){_also(both)}"
        )


def _tidy(table: pd.DataFrame, extras: list[str]) -> pd.DataFrame:
    if CATEGORY not in table.columns:
        table = table.assign(**{CATEGORY: None})
    category = table[CATEGORY].astype(object)
    table = table.assign(**{CATEGORY: category.where(category.notna(), None)})
    frame = table[[*FRAME_COLUMNS, *extras]]
    frame = frame.sort_values(["county_code", "period", CATEGORY], na_position="last")
    return frame.reset_index(drop=True)


def _notes(
    raw: pd.DataFrame, table: pd.DataFrame, frame: pd.DataFrame, history: CodeHistory, vintage: int, frequency: str
) -> dict:
    codes = table["county_code"].unique()
    periods = sorted(table["period"].unique())
    return {
        "rows_read": len(raw),
        "codes_in_file": len(codes),
        "codes_resolved_to_another_year": sorted(c for c in codes if history.nearest_year(c, vintage) != vintage),
        "target_counties": int(frame["county_code"].nunique()),
        "periods": [label(int(periods[0]), frequency), label(int(periods[-1]), frequency)],
    }


def rule_metrics(metrics: PlatformMetrics) -> pd.DataFrame:
    """The belt rule's metrics per county and period, categories added up.

    Parameters
    ----------
    metrics : PlatformMetrics
        From :func:`read_platform_metrics`.

    Returns
    -------
    DataFrame
        One row per ``county_code`` and ``period`` present in ``metrics``:

        * ``gmv_annual_cny``: quarterly data, the GMV of the trailing four quarters ``t-3..t``,
          NaN unless all four are present; annual data, the year's GMV;
        * ``active_merchants``: the period's value (quarterly: the quarter ``t`` itself);
        * ``gmv_growth_yoy``: ``gmv_annual_cny`` at ``t`` over ``gmv_annual_cny`` at ``t - 4``
          quarters (annual: the previous year), minus 1; NaN unless all eight quarters
          ``t-7..t`` (annual: both years) are present and the earlier sum is > 0. Rounded to
          9 decimals so that exactly 20 % growth meets ``>= 0.2``.

        A NaN metric (unknown growth, an incomplete year) counts as **not met** by the belt
        rule (:class:`features.labels.Condition`), so a county needs two other conditions.
        Only data dated ``<= t`` enters period ``t``. ``active_merchants`` added up over
        categories counts a merchant active in two categories twice.
    """
    totals = _totals(metrics.frame)
    window = per_year(metrics.frequency)
    sums = _window_sums(totals, ["county_code"], "gmv_cny", window)
    complete = sums.assign(gmv_annual_cny=sums["sum"].where(sums["count"] == window))
    table = totals.merge(
        complete[["county_code", "period", "gmv_annual_cny"]], on=["county_code", "period"], how="left"
    )
    earlier = table[["county_code", "period", "gmv_annual_cny"]].assign(period=table["period"] + window)
    earlier = earlier.rename(columns={"gmv_annual_cny": "earlier"})
    table = table.merge(earlier, on=["county_code", "period"], how="left")
    growth = (table["gmv_annual_cny"] / table["earlier"] - 1).where(table["earlier"] > 0)
    table["gmv_growth_yoy"] = growth.round(GROWTH_DECIMALS)
    return table[["county_code", "period", *RULE_METRICS]]


def further_metrics(metrics: PlatformMetrics) -> pd.DataFrame:
    """The further metrics per county and period, categories combined: the features ``platform_<name>``.

    Parameters
    ----------
    metrics : PlatformMetrics
        From :func:`read_platform_metrics`.

    Returns
    -------
    DataFrame
        ``county_code``, ``period`` and one column per further metric: a count is the period's
        sum over the county's categories; a rate or mean (``intensive``) their average weighted by
        each category's GMV in the period (the plain average where that GMV is 0 or unknown).
        NaN where no row of the county and period has the metric. Only data of period ``t``
        enters period ``t``.
    """
    frame, keys = metrics.frame, ["county_code", "period"]
    extras = metrics.further_columns
    grouped = frame.groupby(keys, sort=True)
    table = grouped[[c for c in extras if c not in metrics.intensive]].sum(min_count=1)
    for column in (c for c in extras if c in metrics.intensive):
        weight = frame["gmv_cny"].where(frame[column].notna()).fillna(0.0)
        weighted = (frame[column] * weight).groupby([frame[k] for k in keys]).sum(min_count=1)
        total = weight.groupby([frame[k] for k in keys]).sum()
        table[column] = (weighted / total).where(total > 0, grouped[column].mean())
    return table[extras].reset_index()


def periods_needed(metric: str, frequency: str) -> int:
    """How many consecutive periods of one county :func:`rule_metrics` needs before ``metric`` is
    known in the last of them: ``gmv_growth_yoy`` 8 quarters (2 years), ``gmv_annual_cny`` 4
    (1 year), ``active_merchants`` 1 (annual data: 2, 1 and 1)."""
    return max(1, RULE_METRICS[metric] * per_year(frequency))


def _totals(frame: pd.DataFrame) -> pd.DataFrame:
    grouped = frame.groupby(["county_code", "period"], sort=True)[["gmv_cny", "active_merchants"]]
    return grouped.sum(min_count=1).reset_index()


def _window_sums(frame: pd.DataFrame, keys: list[str], column: str, window: int) -> pd.DataFrame:
    """For every ``keys`` and period ``t`` reachable, the sum of ``column`` over ``t-window+1..t``
    and the count of values that went into it."""
    spread = pd.concat(
        [frame[[*keys, "period", column]].assign(period=frame["period"] + lag) for lag in range(window)],
        ignore_index=True,
    )
    grouped = spread.groupby([*keys, "period"], dropna=False)[column]
    return grouped.agg(["sum", "count"]).reset_index()


def category_modes(metrics: PlatformMetrics, taxonomy: ModeTaxonomy) -> pd.DataFrame:
    """Each county's development mode per period, from the GMV of its product categories.

    The GMV of each category over the trailing four quarters ``t-3..t`` (annual data: the year;
    the quarters present are added up, none is required) is added up by the mode of the
    category (:meth:`ModeTaxonomy.mode_of`); the mode with the most GMV wins, ties going to the
    mode listed first in :data:`features.taxonomy.MODES`. Adding up by mode first means that
    several garment and shoe categories together outweigh one larger tea category; the largest
    single category is reported beside it as ``top_category``.

    Parameters
    ----------
    metrics : PlatformMetrics
        From :func:`read_platform_metrics`.
    taxonomy : ModeTaxonomy
        The keyword taxonomy (:func:`features.taxonomy.load_taxonomy`).

    Returns
    -------
    DataFrame
        One row per ``county_code`` and ``period`` present in ``metrics``: ``mode`` (NaN when
        no category of the window maps to a mode, or there are no categories),
        ``mode_gmv_share`` (the winning mode's GMV over all GMV of the window, categories
        without a mode included) and ``top_category`` (the category with the most GMV in the
        window, ties to the first in sort order; None without categories).
    """
    frame = metrics.frame
    window = per_year(metrics.frequency)
    present = _totals(frame)[["county_code", "period"]]
    totals = _window_sums(_totals(frame), ["county_code"], "gmv_cny", window).rename(columns={"sum": "total"})
    categorised = frame[frame[CATEGORY].notna()]
    by_mode = _by_mode(categorised, taxonomy)
    table = present.merge(_winning_mode(by_mode, window), on=["county_code", "period"], how="left")
    table = table.merge(totals[["county_code", "period", "total"]], on=["county_code", "period"], how="left")
    table["mode_gmv_share"] = (table.pop("mode_gmv") / table.pop("total")).where(table["mode"].notna())
    table = table.merge(_top_category(categorised, window), on=["county_code", "period"], how="left")
    table["top_category"] = table["top_category"].astype(object).where(table["top_category"].notna(), None)
    return table[["county_code", "period", "mode", "mode_gmv_share", "top_category"]]


def _by_mode(categorised: pd.DataFrame, taxonomy: ModeTaxonomy) -> pd.DataFrame:
    """Rows of a category, with its ``mode``; those of a category of no mode left out."""
    modes = {c: taxonomy.mode_of(c) for c in categorised[CATEGORY].unique()}
    return categorised.assign(mode=categorised[CATEGORY].map(modes)).dropna(subset=["mode"])


def unmapped_categories(metrics: PlatformMetrics, taxonomy: ModeTaxonomy) -> pd.Series:
    """The file's categories that map to no mode, each with its share of the file's categorised
    GMV, largest first: what to add to the taxonomy (their GMV names no county's mode).

    Parameters
    ----------
    metrics : PlatformMetrics
        From :func:`read_platform_metrics`.
    taxonomy : ModeTaxonomy
        The keyword taxonomy (:func:`features.taxonomy.load_taxonomy`).

    Returns
    -------
    Series
        Category -> share of GMV (0 to 1), named ``gmv_share``; empty without categories or when
        every category maps to a mode.
    """
    categorised = metrics.frame[metrics.frame[CATEGORY].notna()]
    gmv = categorised.groupby(CATEGORY, sort=True)["gmv_cny"].sum()
    unmapped = gmv[[taxonomy.mode_of(str(c)) is None for c in gmv.index]]
    total = float(gmv.sum())
    shares = unmapped / total if total > 0 else unmapped * 0.0
    return shares.sort_values(ascending=False, kind="stable").rename("gmv_share")


def mode_share_names() -> list[str]:
    """The further features of :func:`mode_gmv_shares`, one per mode (``<mode>_gmv_share``)."""
    return [f"{mode}_gmv_share" for mode in MODES]


def mode_gmv_shares(metrics: PlatformMetrics, taxonomy: ModeTaxonomy) -> pd.DataFrame:
    """Each county's product mix by mode, per period: what a county that is no belt yet sells,
    which is the mode it would follow (:func:`category_modes` names a belt's mode by the same GMV).

    Parameters
    ----------
    metrics : PlatformMetrics
        From :func:`read_platform_metrics`.
    taxonomy : ModeTaxonomy
        The keyword taxonomy (:func:`features.taxonomy.load_taxonomy`).

    Returns
    -------
    DataFrame
        One row per ``county_code`` and ``period`` present in ``metrics``, and one column per mode
        (:func:`mode_share_names`): the GMV of the county's categories of that mode over the
        trailing window of :func:`category_modes`, as a share of the GMV of all its categories
        in the window (those of no mode included, so the four add up to 1 or less). NaN where
        no category of the county sold in the window (no categories, or no GMV).
    """
    frame, keys = metrics.frame, ["county_code", "period"]
    window = per_year(metrics.frequency)
    table = _totals(frame)[keys]
    categorised = frame[frame[CATEGORY].notna()]
    names = mode_share_names()
    if categorised.empty:
        return table.assign(**{name: np.nan for name in names})
    total = _window_sums(categorised, ["county_code"], "gmv_cny", window).rename(columns={"sum": "total"})
    sums = _window_sums(_by_mode(categorised, taxonomy), ["county_code", "mode"], "gmv_cny", window)
    wide = sums.pivot_table(index=keys, columns="mode", values="sum", aggfunc="sum").reindex(columns=list(MODES))
    wide.columns = names
    table = table.merge(total[[*keys, "total"]], on=keys, how="left").merge(wide.reset_index(), on=keys, how="left")
    known = table.pop("total")
    shares = table[names].fillna(0.0).div(known, axis=0).where(known > 0)
    return pd.concat([table[keys], shares], axis=1)


def _winning_mode(by_mode: pd.DataFrame, window: int) -> pd.DataFrame:
    empty = pd.DataFrame({"county_code": [], "period": [], "mode": [], "mode_gmv": []})
    if by_mode.empty:
        return empty.astype({"period": "int64", "mode_gmv": float})
    sums = _window_sums(by_mode, ["county_code", "mode"], "gmv_cny", window)
    wide = sums.pivot_table(index=["county_code", "period"], columns="mode", values="sum", aggfunc="sum")
    wide = wide.reindex(columns=list(MODES)).fillna(0.0)
    best = wide.max(axis=1)
    winner = wide.idxmax(axis=1).where(best > 0)
    return pd.DataFrame({"mode": winner, "mode_gmv": best.where(best > 0)}).reset_index()


def _top_category(categorised: pd.DataFrame, window: int) -> pd.DataFrame:
    if categorised.empty:
        return pd.DataFrame({"county_code": [], "period": [], "top_category": []}).astype({"period": "int64"})
    sums = _window_sums(categorised, ["county_code", CATEGORY], "gmv_cny", window)
    ranked = sums.sort_values(["county_code", "period", "sum", CATEGORY], ascending=[True, True, False, True])
    top = ranked.drop_duplicates(["county_code", "period"])
    return top[["county_code", "period", CATEGORY]].rename(columns={CATEGORY: "top_category"})


def default_platform_rule() -> BeltRule:
    """The 2-of-3 platform belt rule, with **PLACEHOLDER** thresholds.

    A county is a belt in a period when at least two of ``gmv_annual_cny >= 1e8`` (100 million
    CNY over the trailing four quarters), ``active_merchants >= 100`` and
    ``gmv_growth_yoy >= 0.2`` hold (metrics from :func:`rule_metrics`; an unknown metric counts
    as not met).

    The thresholds are placeholders to be set by the platform's strategists from their own data:
    they are not calibrated on anything. Set the real ones in the config (the ``platform`` section)
    rather than relying on these.
    """
    conditions = tuple(Condition(metric, ">=", threshold) for metric, threshold in PLACEHOLDER_THRESHOLDS)
    return BeltRule(conditions, min_met=2)
