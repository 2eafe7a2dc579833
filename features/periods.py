"""Periods: years (``2025``) and quarters (``2025Q3``) as ordered integers.

A quarter is stored as ``year * 4 + (quarter - 1)`` so that consecutive quarters differ by one and
"four quarters earlier" is ``index - 4``. An annual value is dated at the end of its year: in a
quarterly panel, a value of year ``Y`` becomes known in ``YQ4`` (index ``Y * 4 + 3``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from features.errors import BeltcastError

QUARTER = re.compile(r"^([0-9]{4})Q([1-4])$")  # not \d: full-width digits are no period
YEAR = re.compile(r"^([0-9]{4})$")
ANNUAL, QUARTERLY = "annual", "quarterly"
FIRST_YEAR, LAST_YEAR = 1000, 3999  # year indices 1000..3999 and quarter indices 4000..15999 never meet


class PeriodError(BeltcastError, ValueError):
    """A period is malformed or of another frequency than its neighbours."""


def parse_period(text: object) -> tuple[str, int]:
    """``"2025Q3"`` -> ``("quarterly", 8102)``; ``"2025"`` or ``2025`` -> ``("annual", 2025)``."""
    value = str(text).strip()
    if value.endswith(".0") and value[:-2].isdigit():
        value = value[:-2]
    match = QUARTER.match(value) or YEAR.match(value)
    if match and not FIRST_YEAR <= int(match.group(1)) <= LAST_YEAR:  # the two kinds of index would overlap
        raise PeriodError(f"period must have a year from {FIRST_YEAR} to {LAST_YEAR}; got {text!r}")
    if match := QUARTER.match(value):
        return QUARTERLY, int(match.group(1)) * 4 + int(match.group(2)) - 1
    if YEAR.match(value):
        return ANNUAL, int(value)
    raise PeriodError(f"period must look like 2025 or 2025Q3; got {text!r}")


def parse_periods(values: Iterable[object], field: str = "period") -> tuple[str, list[int]]:
    """Parse a column of periods that must share one frequency; errors name the row."""
    frequency, indexes = None, []
    for row, value in enumerate(values):
        try:
            kind, index = parse_period(value)
        except PeriodError as err:
            raise PeriodError(f"row {row}: {field} {err}") from err
        if frequency not in (None, kind):
            raise PeriodError(f"row {row}: {field} {value!r} is {kind} but earlier rows are {frequency}")
        frequency = kind
        indexes.append(index)
    return frequency or ANNUAL, indexes


def label(index: int, frequency: str) -> str:
    """The text of a period index: ``8102`` -> ``"2025Q3"``; ``2025`` -> ``"2025"``."""
    if frequency == QUARTERLY:
        return f"{index // 4}Q{index % 4 + 1}"
    return str(index)


def year_end(year: int, frequency: str) -> int:
    """The period in which a value dated ``year`` (annual) becomes known."""
    return year * 4 + 3 if frequency == QUARTERLY else year


def per_year(frequency: str) -> int:
    """Periods per year: 4 for quarters, 1 for years."""
    return 4 if frequency == QUARTERLY else 1


def frequency_of(index: int) -> str:
    """Years (:data:`FIRST_YEAR`..:data:`LAST_YEAR`) and quarter indices (4000 and up) never
    overlap: tell them apart."""
    return QUARTERLY if index >= 4000 else ANNUAL


def label_of(index: int) -> str:
    """The text of a period index of either frequency."""
    return label(int(index), frequency_of(int(index)))
