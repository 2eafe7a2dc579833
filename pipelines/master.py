"""``beltcast features master``: the county master and the crosswalk to the target vintage."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from features.codes import CodeHistory, load_code_history
from features.io import write_parquet
from pipelines.config import Settings
from pipelines.sync import verify_cache


def run(settings: Settings, console: Console) -> pd.DataFrame:
    """Read the code lists, build the master and crosswalk, write and summarise them."""
    verify_cache(settings.data.cache_dir)
    history = load_history(settings)
    master = county_master(history)
    crosswalk = crosswalk_to_target(history, settings.codes.target_vintage)
    write_parquet(master, settings.data.features_dir / "county_master.parquet")
    write_parquet(crosswalk, settings.data.features_dir / "crosswalk.parquet")
    console.print(summary_table(master, crosswalk, settings.codes.target_vintage))
    return master


def load_history(settings: Settings) -> CodeHistory:
    """The code history of the configured years, from the synced cache."""
    years = range(settings.codes.first_year, settings.codes.last_year + 1)
    return load_code_history(Path(settings.data.cache_dir) / "areacodes", years)


def county_master(history: CodeHistory) -> pd.DataFrame:
    """County-level units of every year: year, code, name, prefecture, province."""
    return pd.concat([history.county_units(year) for year in history.years], ignore_index=True)


def crosswalk_to_target(history: CodeHistory, target: int) -> pd.DataFrame:
    """``source_year, from_code, to_code, share`` from every year to the target vintage."""
    parts = [history.crosswalk(year, target).assign(source_year=year) for year in history.years]
    return pd.concat(parts, ignore_index=True)[["source_year", "from_code", "to_code", "share"]]


def summary_table(master: pd.DataFrame, crosswalk: pd.DataFrame, target: int) -> Table:
    """Per year: county units, codes unchanged, codes remapped, codes with no target."""
    table = Table(title=f"County units per year, and their mapping to the {target} codes")
    for column in ("year", "units", "same code", "remapped", "split", "unmapped"):
        table.add_column(column, justify="right")
    for year, units in master.groupby("year"):
        links = crosswalk[crosswalk["source_year"] == year]
        same = (links["from_code"] == links["to_code"]) & (links["share"] == 1)
        split = links.groupby("from_code")["to_code"].nunique() > 1
        mapped = set(links["from_code"])
        unmapped = (~units["county_code"].isin(mapped)).sum()
        remapped = links.loc[~same, "from_code"].nunique() - split.sum()
        table.add_row(*map(str, (year, len(units), same.sum(), remapped, split.sum(), unmapped)))
    return table
