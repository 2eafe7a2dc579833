"""The data-quality summary of a panel build: coverage, missingness, unmatched rows."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from features.panel import feature_columns
from features.periods import label_of
from features.sources.base import SourceTable


def quality_summary(sources: Sequence[SourceTable], panel: pd.DataFrame, universe: pd.DataFrame) -> dict:
    """Per source and year: counties covered of the target universe; per feature and as-of year:
    the share missing; per source: unmatched rows and the reader's notes.

    Returns
    -------
    dict
        JSON-ready: ``universe``, ``sources`` {name: {coverage: {year: n}, unmatched: n,
        unmatched_rows: [...], notes: {...}}}, ``missing_share`` {feature: {as_of: share}}.
    """
    codes = set(universe["county_code"])
    return {
        "universe": len(codes),
        "panel_rows": len(panel),
        "sources": {source.name: _source_summary(source, codes) for source in sources},
        "missing_share": missing_shares(panel),
    }


def _source_summary(source: SourceTable, codes: set[str]) -> dict:
    observed = source.long[source.long["value"].notna() & source.long["county_code"].isin(codes)]
    coverage = observed.groupby("year")["county_code"].nunique()
    return {
        "coverage": {int(year): int(n) for year, n in coverage.items()},
        "unmatched": len(source.unmatched),
        "unmatched_rows": source.unmatched.astype(str).to_dict(orient="records"),
        "notes": source.notes,
    }


def missing_shares(panel: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Share of counties missing each feature, per as-of period (``"2015"``, ``"2025Q3"``)."""
    missing = panel[feature_columns(panel)].isna().groupby(panel["as_of"]).mean()
    return {
        column: {label_of(int(period)): round(float(share), 4) for period, share in missing[column].items()}
        for column in missing.columns
    }


def coverage_table(summary: dict) -> pd.DataFrame:
    """Sources x years: counties covered (for printing)."""
    rows = {name: info["coverage"] for name, info in summary["sources"].items()}
    table = pd.DataFrame(rows).T.sort_index(axis=1)
    table["unmatched"] = [summary["sources"][name]["unmatched"] for name in table.index]
    return table
