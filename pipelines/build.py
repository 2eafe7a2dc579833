"""``beltcast features build``: the synced cache -> the county panel + quality summary."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from features.codes import CodeHistory
from features.io import csv_writer, json_text, write_together
from features.labels import BeltRule, Condition
from features.panel import PanelSpec, build_panel
from features.periods import QUARTERLY, frequency_of, label, label_of, parse_period, per_year
from features.platform import (
    RULE_METRICS,
    PlatformMetrics,
    PlatformMetricsError,
    category_modes,
    further_metrics,
    mode_gmv_shares,
    periods_needed,
    read_platform_metrics,
    rule_metrics,
    unmapped_categories,
)
from features.quality import coverage_table, quality_summary
from features.sources import (
    census,
    centroids,
    co2,
    poverty,
    prefecture,
    taobao,
    terrain,
    viirs,
)
from features.sources.base import SourceTable
from features.taxonomy import ModeTaxonomy, county_modes, load_taxonomy, mode_counts
from pipelines.config import LabelSettings, PlatformSettings, Settings
from pipelines.manifest import known_sha256
from pipelines.master import load_history
from pipelines.sync import verify_cache
from pipelines.terminal import printable

Reader = Callable[[Path, CodeHistory, int], SourceTable]

READERS: tuple[Reader, ...] = (
    taobao.read_taobao,
    census.read_census,
    census.read_tudigong,
    viirs.read_viirs,
    co2.read_co2,
    poverty.read_poverty,
    terrain.read_terrain,
    centroids.read_centroids,
    prefecture.read_prefecture,
)
MODE_ROSTER_YEAR = 2014


@dataclass(frozen=True)
class BuildOutputs:
    """Paths written by one build."""

    panel: Path
    quality: Path
    unmatched: Path


@dataclass(frozen=True)
class PlatformInputs:
    """The platform's metrics, read and checked, the rule's metrics in the periods they label, and
    the keyword taxonomy their categories are read with (read once per build)."""

    metrics: PlatformMetrics
    labels: pd.DataFrame
    taxonomy: ModeTaxonomy


def run(settings: Settings, console: Console, until: str | None = None) -> BuildOutputs:
    """Read every source, build the point-in-time panel, write it with its quality summary.

    With ``platform.metrics_file`` set, labels, modes and periods come from the platform's metrics
    (``until`` caps the periods, e.g. ``2025Q3``); otherwise from the public Taobao rosters. The
    raw files' sha256 are checked first (one changed since the sync is named, never read), then
    the metrics file is read and checked: a file that labels no period fails before the public
    sources are read, and nothing is written."""
    verify_cache(settings.data.cache_dir)  # a raw file changed since the sync is named, not read
    target = settings.codes.target_vintage
    history = load_history(settings)
    units = history.county_units(target)
    platform = None if settings.platform.metrics_file is None else read_platform(settings, history, until)
    sources = read_sources(Path(settings.data.cache_dir), history, target)
    if platform is not None:
        panel, modes, rule = platform_panel(settings, platform, units, sources, until)
    else:
        modes = mode_labels(sources)
        panel, rule = build_panel(sources, units, panel_spec(settings), modes), belt_rule(settings.labels)
    summary = quality_summary(sources, panel, units)
    summary["modes"] = {str(k): int(v) for k, v in mode_counts(modes).items()}
    summary["modes_of"] = (
        "counties by the category mix of their GMV, newest period"
        if platform is not None
        else "belts with a known mode, from their villages' main products"
    )
    summary["belt_rule"] = rule.describe()
    summary["built_by"] = built_by()
    reported = sources
    if platform is not None:  # train, tune, backtest and promote check that the config names this file
        path = Path(settings.platform.metrics_file)
        summary["platform_metrics"] = {
            "file": str(path.resolve()),
            "sha256": known_sha256(path),
            **platform.metrics.notes,
            "rows_unmatched": len(platform.metrics.unmatched),
            "synthetic": platform.metrics.is_synthetic,  # the file marks its rows is_synthetic
            "target_counties_of": len(units),
            "further_metrics": {
                f"platform_{c}": "rate" if c in platform.metrics.intensive else "count"
                for c in platform.metrics.further_columns
            },
            # what to add to the taxonomy: these categories' GMV names no county's mode
            "unmapped_categories": {
                str(c): round(float(s), 6) for c, s in unmapped_categories(platform.metrics, platform.taxonomy).items()
            },
        }
        # its rows whose code is no county of the target vintage go with the sources' in unmatched.csv
        reported = [*sources, SourceTable("platform", pd.DataFrame(), platform.metrics.unmatched, {})]
    outputs = write_outputs(settings.data.features_dir, panel, summary, reported)
    report(console, panel, summary, reported, outputs)
    return outputs


def built_by() -> dict[str, str]:
    """What built the panel: the code's commit (``+dirty.<hash>`` with uncommitted changes) and the
    hash of the raw-data manifest its sources were verified against (``train`` tags both)."""
    from pipelines.manifest import manifest_hash, read_manifest
    from pipelines.tracking import git_sha

    return {"git_sha": git_sha(), "data_manifest_sha256": manifest_hash(read_manifest())}


def panel_summary(features_dir: Path) -> dict:
    """The summary ``features build`` wrote beside the panel in ``features_dir`` (``quality.json``);
    empty without one, or for one that is no JSON object."""
    try:
        summary = json.loads((Path(features_dir) / "quality.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return summary if isinstance(summary, dict) else {}


def panel_built_by(features_dir: Path) -> dict[str, str]:
    """``built_by`` of the panel in ``features_dir`` (its ``quality.json``); empty for a panel built
    before it was recorded, or without its summary."""
    recorded = panel_summary(features_dir).get("built_by")
    return {str(k): str(v) for k, v in recorded.items()} if isinstance(recorded, dict) else {}


def panel_synthetic(features_dir: Path) -> bool:
    """Whether the panel in ``features_dir`` was built from platform metrics marked synthetic
    (its ``quality.json``): a model, a score file and a report made from it describe no real
    county's e-commerce and must say so."""
    platform = panel_summary(features_dir).get("platform_metrics")
    return isinstance(platform, dict) and platform.get("synthetic") is True


def read_platform(settings: Settings, history: CodeHistory, until: str | None) -> PlatformInputs:
    """The platform metrics up to ``until``, validated, with the periods they label (at least one)."""
    path = settings.platform.metrics_file
    metrics = read_platform_metrics(
        path, history, settings.codes.target_vintage, as_of_limit=until, intensive=settings.platform.intensive,
        path_name="[platform] metrics_file",
    )  # fmt: skip
    labels = platform_labels(metrics, belt_rule(settings.platform), path, settings.platform.min_coverage)
    return PlatformInputs(metrics, labels, load_taxonomy())


def platform_labels(metrics: PlatformMetrics, rule: BeltRule, path: Path, min_coverage: float = 0.5) -> pd.DataFrame:
    """The rule's metrics in the periods they can label (:func:`labelled_periods_only`).

    Raises
    ------
    PlatformMetricsError
        When a period between the file's first and last has no row at all (an export that lost it:
        the periods after it would go unlabelled while the panel carried older metrics into them),
        or has rows for fewer than ``min_coverage`` of the counties of the period before (an export
        cut short), or when they label no period (too few periods, or gaps in every county's): the
        message gives the periods of ``path`` and how many consecutive periods a label needs, and why.
    """
    rule.require_metrics(list(RULE_METRICS), "the platform metrics file (features.platform.rule_metrics)")
    if missing := missing_periods(metrics.frame["period"]):
        raise PlatformMetricsError(_missing_periods(metrics, missing, path))
    if thin := thin_periods(metrics.frame, min_coverage):
        raise PlatformMetricsError(_thin_periods(metrics, thin, path, min_coverage))
    labels = labelled_periods_only(rule_metrics(metrics), rule)
    if labels.empty:
        raise PlatformMetricsError(_nothing_labelled(metrics, rule, path))
    return labels


def longest_history(rule: BeltRule, frequency: str) -> tuple[str, int]:
    """The rule's metric that needs the most consecutive periods of a county, and how many."""
    metric = max(rule.metrics, key=lambda m: periods_needed(m, frequency))
    return metric, periods_needed(metric, frequency)


def unit_of(frequency: str) -> str:
    """``quarter`` or ``year``, as messages name a period."""
    return "quarter" if frequency == QUARTERLY else "year"


def span(periods: pd.Series, frequency: str) -> str:
    """``3 quarter(s), 2025Q1..2025Q3`` for the distinct values of ``periods``."""
    if periods.empty:
        return f"no {unit_of(frequency)}"
    first, last = label(int(periods.min()), frequency), label(int(periods.max()), frequency)
    return f"{periods.nunique()} {unit_of(frequency)}(s), {first}..{last}"


def missing_periods(periods: pd.Series) -> list[int]:
    """The periods between the first and the last of ``periods`` that none of them is."""
    present = set(periods.unique().tolist())
    return sorted(set(range(min(present), max(present) + 1)) - present) if present else []


def thin_periods(frame: pd.DataFrame, min_coverage: float) -> list[tuple[int, int, int]]:
    """``(period, counties, counties of the period before)`` for every period of ``frame`` whose
    rows cover fewer than ``min_coverage`` of the counties of the period before."""
    counts = frame.groupby("period")["county_code"].nunique().sort_index()
    before = counts.shift(1)
    thin = counts[counts < min_coverage * before]
    return [(int(p), int(counts[p]), int(before[p])) for p in thin.index]


def _thin_periods(metrics: PlatformMetrics, thin: list[tuple[int, int, int]], path: Path, share: float) -> str:
    unit = unit_of(metrics.frequency)
    period, counties, before = thin[0]
    more = f" (and {len(thin) - 1} more {unit}(s) as thin)" if len(thin) > 1 else ""
    return (
        f"{path}: every {unit} must have rows for at least {share:.0%} of the counties of the {unit} before"
        f" ([platform] min_coverage); got {label(period, metrics.frequency)} with rows for {counties:,} counties"
        f" against {before:,} in {label(period - 1, metrics.frequency)}{more}: an export cut short? Export the"
        f" whole {unit}, or lower min_coverage if the platform's reach did shrink"
    )


def _missing_periods(metrics: PlatformMetrics, missing: list[int], path: Path) -> str:
    frequency, periods = metrics.frequency, metrics.frame["period"]
    shown = ", ".join(label(p, frequency) for p in missing[:8]) + (", ..." if len(missing) > 8 else "")
    return (
        f"{path}: period must run without a gap from the file's first, {label(int(periods.min()), frequency)}, to"
        f" its last, {label(int(periods.max()), frequency)}: every {unit_of(frequency)} needs rows (a county may lack"
        f" some, the whole file may not); got no row of {shown} ({len(missing)} {unit_of(frequency)}(s))"
    )


def _nothing_labelled(metrics: PlatformMetrics, rule: BeltRule, path: Path) -> str:
    unit = unit_of(metrics.frequency)
    metric, needed = longest_history(rule, metrics.frequency)
    window = f" (t-{needed - 1}..t)" if needed > 1 else ""
    got = span(metrics.frame["period"], metrics.frequency)
    return (
        f"{path}: platform metrics must label at least one {unit}: a {unit} t is labelled once every metric of "
        f"the belt rule ({', '.join(rule.metrics)}) is known for some county in t, and {metric} needs {needed} "
        f"consecutive {unit}s of a county{window}; got {got}, none with every metric known"
    )


def platform_panel(
    settings: Settings, platform: PlatformInputs, units: pd.DataFrame, sources: list[SourceTable], until: str | None
) -> tuple[pd.DataFrame, pd.DataFrame, BeltRule]:
    """The panel of the platform's periods: labels by the configured rule over the platform's
    metrics, modes by category mix, the platform's metrics as features, public data as of each period."""
    metrics, labels = platform.metrics, platform.labels
    rule = belt_rule(settings.platform)
    last = labels["period"].max() if until is None else parse_period(until)[1]
    periods = tuple(range(int(metrics.frame["period"].min()), int(last) + 1))
    spec = PanelSpec(
        periods=periods, rule=rule, label_source="platform", horizon=settings.platform.horizon,
        frequency=metrics.frequency,
    )  # fmt: skip
    taxonomy = platform.taxonomy
    modes = category_modes(metrics, taxonomy).rename(columns={"period": "as_of"})
    further = further_metrics(metrics)
    if metrics.has_categories:  # what each county sells, by mode: the mode it would follow
        further = further.merge(mode_gmv_shares(metrics, taxonomy), on=["county_code", "period"], how="outer")
    platform_long = platform_features(labels, rule, further)
    panel = build_panel(sources, units, spec, modes[["county_code", "as_of", "mode"]], labels, platform_long)
    return panel, modes[modes["as_of"] == modes["as_of"].max()], rule


def labelled_periods_only(metrics: pd.DataFrame, rule: BeltRule) -> pd.DataFrame:
    """Keep the periods in which every metric of the rule can be computed for some county (with
    quarterly data, growth needs eight quarters): no label is made from a half-known rule."""
    known = metrics.groupby("period")[rule.metrics].apply(lambda g: g.notna().any().all())
    return metrics[metrics["period"].isin(known[known].index)].reset_index(drop=True)


PLATFORM_PREFIX = "platform_"  # of the features made of the platform's metrics


def platform_features(metrics: pd.DataFrame, rule: BeltRule, further: pd.DataFrame | None = None) -> pd.DataFrame:
    """The platform's rule metrics, and its further metrics (:func:`features.platform.further_metrics`),
    as features of the same period (``platform_`` prefix)."""
    keys = ["county_code", "period"]
    parts = [metrics.melt(id_vars=keys, value_vars=rule.metrics, var_name="variable")]
    if further is not None and len(further.columns) > len(keys):
        parts.append(further.melt(id_vars=keys, var_name="variable"))
    long = pd.concat(parts, ignore_index=True)
    long["variable"] = PLATFORM_PREFIX + long["variable"]
    return long.assign(source="platform", value=long["value"].astype(float))


def platform_feature_names(rule: BeltRule, metrics: PlatformMetrics) -> list[str]:
    """The emergence model's features :func:`platform_panel` makes of ``metrics`` (those a study
    is scored on): the rule's and the further metrics' (not the modes' GMV shares, the mode model's)."""
    return sorted(PLATFORM_PREFIX + name for name in [*rule.metrics, *metrics.further_columns])


def read_sources(raw_dir: Path, history: CodeHistory, target: int) -> list[SourceTable]:
    """Every public source, harmonised to the target vintage."""
    return [reader(raw_dir, history, target) for reader in READERS]


def mode_labels(sources: list[SourceTable]) -> pd.DataFrame:
    """Each belt's development mode, from the main products of its 2014 Taobao villages (the
    villages the Taobao reader already matched)."""
    villages = next(s.detail for s in sources if s.name == taobao.NAME)
    with_products = villages[villages["year"] == MODE_ROSTER_YEAR]
    return county_modes(with_products, load_taxonomy())


def belt_rule(labels: LabelSettings | PlatformSettings) -> BeltRule:
    """The configured belt rule as a :class:`BeltRule`."""
    conditions = tuple(Condition(c.metric, c.op, c.threshold) for c in labels.conditions)
    return BeltRule(conditions, labels.min_met)


def panel_spec(settings: Settings) -> PanelSpec:
    """As-of years, belt rule and horizon from the config."""
    years = range(settings.panel.first_year, settings.panel.last_year + 1)
    return PanelSpec(periods=tuple(years), rule=belt_rule(settings.labels), horizon=settings.labels.horizon)


def write_outputs(features_dir: Path, panel: pd.DataFrame, summary: dict, sources: list[SourceTable]) -> BuildOutputs:
    """Write the panel, the quality JSON and the unmatched rows together: all three to temporary
    names first, then renamed one after the other. The unmatched rows' cells keep their own
    types (a count of one source in a column of another's text stays a number), so that only
    text is made safe for spreadsheets (:func:`features.io.csv_writer`)."""
    unmatched = pd.concat(
        [s.unmatched.astype(object).assign(source=s.name) for s in sources if len(s.unmatched)],
        ignore_index=True,
    )
    paths = BuildOutputs(features_dir / "panel.parquet", features_dir / "quality.json", features_dir / "unmatched.csv")
    write_together(  # a panel never sits beside the quality summary of another
        {
            paths.panel: lambda tmp: panel.to_parquet(tmp, index=False),
            paths.quality: lambda tmp: tmp.write_text(json_text(summary), encoding="utf-8"),
            paths.unmatched: csv_writer(unmatched),
        }
    )
    return paths


def report(
    console: Console,
    panel: pd.DataFrame,
    summary: dict,
    sources: list[SourceTable],
    outputs: BuildOutputs,
) -> None:
    """Print coverage, unmatched rows, labels and mode class counts."""
    years = sorted({int(p) // per_year(frequency_of(int(p))) for p in panel["as_of"].unique()})  # the sources' years
    console.print(_coverage(summary, range(years[0] - 3, years[-1] + 1)))
    _print_unmatched(console, sources)
    console.print(_labels(panel))
    if platform := summary.get("platform_metrics"):
        _print_platform(console, platform)
    console.print(printable(f"belt rule: {summary['belt_rule']}"))
    console.print(printable(f"mode classes ({summary['modes_of']}): {summary['modes']}"), highlight=False)
    console.print(printable(f"panel: {len(panel)} rows x {panel.shape[1]} columns -> {outputs.panel}"))
    console.print(printable(f"quality summary -> {outputs.quality}; unmatched rows -> {outputs.unmatched}"))


def _print_platform(console: Console, platform: dict) -> None:
    """What the build made of the platform's metrics file (``quality.json``'s ``platform_metrics``),
    its text printed as it came in (:func:`pipelines.terminal.printable`)."""
    resolved = platform["codes_resolved_to_another_year"]
    shown = ", ".join(resolved[:5]) + (", ..." if len(resolved) > 5 else "")
    console.print(
        printable(
            f"platform metrics: {platform['rows_read']:,} rows, {' to '.join(platform['periods'])},"
            f" {platform['target_counties']:,} of {platform['target_counties_of']:,} counties (the others have"
            f" no label and no platform features); {len(resolved)} code(s) of another year mapped to this"
            f" year's{f' ({shown})' if resolved else ''}; {platform['rows_unmatched']} row(s) with no county,"
            " in unmatched.csv"
        ),
        highlight=False,
    )
    further = ", ".join(f"{name} ({kind})" for name, kind in platform["further_metrics"].items())
    console.print(printable(f"platform features besides the belt rule's: {further or 'none'}"), highlight=False)
    if unmapped := platform["unmapped_categories"]:
        console.print(printable(unmapped_note(unmapped)), highlight=False)


def unmapped_note(unmapped: dict[str, float], shown: int = 10) -> str:
    """The categories of no mode, the largest first, for the build's printout."""
    named = ", ".join(f"{category} ({share:.1%})" for category, share in list(unmapped.items())[:shown])
    more = f" and {len(unmapped) - shown} more" if len(unmapped) > shown else ""
    return (
        f"categories that map to no mode ({len(unmapped)}, share of categorised GMV): {named}{more}; their GMV"
        " names no county's mode: add keywords for them to features/mode_taxonomy.csv (all are in quality.json)"
    )


def _print_unmatched(console: Console, sources: list[SourceTable]) -> None:
    """Every unmatched roster row in full; for other sources, counts by reason."""
    for source in sources:
        if source.unmatched.empty:
            continue
        if source.name == "taobao":
            for row in source.unmatched.astype(str).to_dict(orient="records"):
                console.print(printable(f"  unmatched {source.name}: {row}"), highlight=False)
            continue
        reasons = source.unmatched["reason"].astype(str).str.split(":").str[-1].str.strip()
        for reason, count in reasons.value_counts().items():
            console.print(printable(f"  unmatched {source.name}: {count} row(s): {reason}"), highlight=False)


def _coverage(summary: dict, years: range) -> Table:
    coverage = coverage_table(summary)
    shown = [c for c in coverage.columns if c in years or c == "unmatched"]
    coverage = coverage[shown]
    span = f"{years[0]}-{years[-1]}"
    table = Table(title=f"Counties covered per source, {span} (universe {summary['universe']})")
    table.add_column("source")
    for column in coverage.columns:
        table.add_column(str(column), justify="right")
    for name, row in coverage.iterrows():
        cells = ["" if pd.isna(v) else str(int(v)) for v in row]
        table.add_row(str(name), *cells)
    return table


def _labels(panel: pd.DataFrame) -> Table:
    table = Table(title="Labels per as-of period")
    for column in ("as_of", "belts", "non-belts", "emerged", "transitions"):
        table.add_column(column, justify="right")
    for as_of, rows in panel.groupby("as_of"):
        labelled = rows["is_belt"].notna()
        belts = int(rows.loc[labelled, "is_belt"].sum())
        emerged = rows["emerged"].dropna()
        table.add_row(
            label_of(as_of),
            str(belts) if labelled.any() else "-",
            str(int(labelled.sum()) - belts) if labelled.any() else "-",
            str(int(emerged.sum())) if len(emerged) else "-",
            str(len(emerged)) if len(emerged) else "-",
        )
    return table
