"""What every source reader returns, and the checks every reader makes right after reading."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pandera.pandas as pa

from features.errors import SourceFormatError

LONG_COLUMNS = ["county_code", "year", "variable", "value"]

LONG_SCHEMA = pa.DataFrameSchema(
    {
        "county_code": pa.Column(str, pa.Check.str_matches(r"^\d{6}$")),
        "year": pa.Column(int, pa.Check.in_range(1981, 2100)),
        "variable": pa.Column(str, pa.Check.str_matches(r"^[a-z][a-z0-9_]*$")),
        "value": pa.Column(float, nullable=True),
    },
    unique=["county_code", "year", "variable"],
    strict=True,
    coerce=True,
)


@dataclass(frozen=True)
class SourceTable:
    """A source read, validated and harmonised.

    Attributes
    ----------
    name : str
        The source's name (``census``, ``viirs``, ...), as in the quality summary.
    long : DataFrame
        ``county_code`` (target vintage), ``year`` (the date the value refers to), ``variable``
        (snake_case, e.g. ``viirs_mean``), ``value`` (float).
    unmatched : DataFrame
        Source rows that could not be mapped to a county of the target vintage, with a
        ``reason`` column; printed and saved by ``features build``.
    notes : dict
        Anything else the quality summary should carry (rows read, rows dropped and why).
    detail : DataFrame or None
        Row-level data a later step needs from the same read (the Taobao villages with their
        products), so the source is not read twice.
    """

    name: str
    long: pd.DataFrame
    unmatched: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: dict = field(default_factory=dict)
    detail: pd.DataFrame | None = None


def validate_long(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Validate a reader's long table against :data:`LONG_SCHEMA`, naming the source on failure."""
    try:
        return LONG_SCHEMA.validate(frame[LONG_COLUMNS] if set(LONG_COLUMNS) <= set(frame) else frame)
    except (pa.errors.SchemaError, pa.errors.SchemaErrors) as err:
        raise SourceFormatError(f"source {source}: its long table fails validation: {err}") from err


def require_columns(frame: pd.DataFrame, columns: Iterable[str], path: Path, sheet: str | None = None) -> None:
    """Raise naming the file (and sheet), the missing columns and the columns found."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        where = f"{path} (sheet {sheet!r})" if sheet else str(path)
        found = [str(column).replace("\n", " ") for column in frame.columns]
        raise SourceFormatError(f"{where}: missing column(s) {missing}; found columns {found}")


def read_excel_sheet(path: Path, sheet: str | int, **kwargs) -> pd.DataFrame:
    """Read one sheet (with the fast calamine engine), with errors that name the file and the
    sheets it has."""
    if not Path(path).is_file():
        raise SourceFormatError(f"{path}: file is missing (run `beltcast data sync`)")
    try:
        with pd.ExcelFile(path, engine="calamine") as book:
            if isinstance(sheet, str) and sheet not in book.sheet_names:
                raise SourceFormatError(f"{path}: missing sheet {sheet!r}; found sheets {book.sheet_names}")
            return pd.read_excel(book, sheet_name=sheet, **kwargs)
    except SourceFormatError:
        raise
    except Exception as err:  # the engine raises many types for a corrupt workbook
        raise SourceFormatError(f"{path}: cannot be read as an Excel workbook: {err}") from err


def read_csv_checked(path: Path, **kwargs) -> pd.DataFrame:
    """Read a CSV, with errors that name the file."""
    if not Path(path).is_file():
        raise SourceFormatError(f"{path}: file is missing (run `beltcast data sync`)")
    _check_complete_last_line(Path(path))
    try:
        return pd.read_csv(path, **kwargs)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise SourceFormatError(f"{path}: cannot be read as CSV: {err}") from err


def read_stata_checked(path: Path) -> pd.DataFrame:
    """Read a Stata file, with errors that name the file."""
    if not Path(path).is_file():
        raise SourceFormatError(f"{path}: file is missing (run `beltcast data sync`)")
    try:
        return pd.read_stata(path)
    except (ValueError, OSError, struct.error) as err:
        raise SourceFormatError(f"{path}: cannot be read as a Stata file: {err}") from err


def _check_complete_last_line(path: Path) -> None:
    """A text table whose last line has no line end was cut off (a partial download or copy)."""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        if size == 0:
            raise SourceFormatError(f"{path}: file is empty")
        handle.seek(size - 1)
        if handle.read(1) not in (b"\n", b"\r"):
            raise SourceFormatError(f"{path}: the last line has no line end; the file looks truncated")


def to_long(frame: pd.DataFrame, variables: Iterable[str], year_column: str = "year") -> pd.DataFrame:
    """Melt wide value columns into the long ``county_code, year, variable, value`` form."""
    long = frame.melt(id_vars=["county_code", year_column], value_vars=list(variables), var_name="variable")
    long = long.rename(columns={year_column: "year"})
    long["value"] = pd.to_numeric(long["value"], errors="coerce").astype(float)
    return long[LONG_COLUMNS]
