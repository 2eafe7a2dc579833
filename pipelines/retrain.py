"""``beltcast retrain --period P [--metrics FILE]``: the quarterly flow in one command.

sync -> features build (up to P) -> tune (resuming the study; only the trials still missing for
P) -> train (a challenger; an identical one is reused, not registered twice) -> promote (the gate)
-> score (as of P) -> report, under one parent MLflow run with a child run per step. ``--period``
and the metrics file are checked before anything else runs (P a quarter, or a year for annual
metrics, in 2000..2099; every row valid; the file's last period is P; enough periods to label and
to cut a temporal fold; new belts and counties that stay none in the training rows of every fold
tune and the backtest cut; belts whose categories map to a mode in two provinces), so bad input
stops the flow with the panel, the champion and the outputs untouched. Re-running a period reuses what is done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from features.errors import ConfigError, DataSyncError
from features.io import writable_target
from features.labels import BeltRule, emergence_target
from features.periods import QUARTERLY, PeriodError, frequency_of, label_of, parse_period
from features.platform import (
    CATEGORY,
    YEARS,
    PlatformMetrics,
    PlatformMetricsError,
    category_modes,
    read_platform_metrics,
)
from features.taxonomy import load_taxonomy
from models.tuning import fold_rows, inner_folds
from pipelines import build, promote, report, score, sync, train, tune
from pipelines.backtest import backtest_files, fold_spec
from pipelines.config import Settings
from pipelines.manifest import known_sha256, manifest_hash, read_manifest
from pipelines.master import load_history
from pipelines.terminal import printable
from pipelines.tracking import CHAMPION, frame_hash, last_period, start_run, use_tracking, version_by_alias


@dataclass
class RetrainSummary:
    """What one retrain did."""

    period: str
    old_champion: str | None = None
    challenger: str | None = None
    reused: bool = False
    decision: str = ""
    new_champion: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)


def run(settings: Settings, period: str, metrics_file: Path | None, console: Console) -> RetrainSummary:
    """The whole flow for one period; prints a summary table at the end."""
    label = period_label(period)
    settings = with_metrics(settings, metrics_file)
    check_outputs(settings, label)
    if not history_cached(settings):  # a first retrain on this machine, or changed code lists: the checks read them
        sync.run(settings, None, console)
    validate_metrics(settings, label, "--metrics" if metrics_file is not None else "[platform] metrics_file")
    client = use_tracking(settings)
    not_before_champion(client, settings, label)
    summary = RetrainSummary(period=label, old_champion=_version(client, settings))
    with start_run(f"retrain-{label}") as parent:
        metrics = Path(settings.platform.metrics_file)  # validated above: the file exists
        mlflow.set_tags(
            {
                "retrain.period": label,
                "retrain.metrics_file": str(metrics.resolve()),
                "retrain.metrics_sha256": known_sha256(metrics),
            }
        )
        step("sync", lambda: sync.run(settings, None, console), log_sync)
        step("build", lambda: build.run(settings, console, until=label), log_build)
        step("tune", lambda: tune.run(settings, settings.platform.retrain_trials, None, console, period=label))
        outcome = step("train", lambda: train.run(settings, console))
        decision = step("promote", lambda: promote.run(settings, False, None, console))
        scores = step("score", lambda: score.run(settings, label, None, "pandas", console))
        page = step("report", lambda: report.run(settings, label, None, console))
        summary.challenger, summary.reused = outcome.version, outcome.reused
        summary.decision = f"{'promoted' if decision.promoted else 'kept champion'}: {decision.reason}"
        if decision.refit is not None:
            summary.decision += f"; refitted on the panel up to {label} as version {decision.refit}"
        summary.new_champion = _version(client, settings)
        summary.outputs = {"scores": str(scores.csv), "report": str(page), "run": parent.info.run_id}
    console.print(summary_table(summary))
    return summary


def check_outputs(settings: Settings, period: str) -> None:
    """Every file the flow writes can be written (:func:`~features.io.writable_target`), before any
    step runs: a folder that cannot be would otherwise stop the flow after the panel was rebuilt
    and the study tuned, which a retrain with no trials would then train on."""
    features, outputs = settings.data.features_dir, settings.outputs.dir
    scores = outputs / f"scores_{period}.csv"
    for path, setting in (
        (features / "panel.parquet", "data.features_dir"),  # build.write_outputs
        (features / "quality.json", "data.features_dir"),
        (features / "unmatched.csv", "data.features_dir"),
        (settings.model.params_file, "model.params_file"),
        *((path, "outputs.dir") for path in backtest_files(outputs / "backtest.json")),
        (scores, "outputs.dir"),
        (score.parquet_of(scores), "outputs.dir"),
        (outputs / f"report_{period}.html", "outputs.dir"),
    ):
        writable_target(path, setting)


def not_before_champion(client, settings: Settings, period: str) -> None:
    """Refuse a period before the champion's newest: its flow would rebuild the panel up to that
    period and refit the champion on it, serving a model that no longer reaches the newer periods."""
    champion = version_by_alias(client, settings.mlflow.registered_model, CHAMPION)
    newest = last_period(champion)
    index = parse_period(period)[1]
    if newest is not None and frequency_of(newest) == frequency_of(index) and index < newest:
        raise PeriodError(
            f"--period must not be before the champion's newest period, {label_of(newest)} (version"
            f" {champion.version}): retraining it would serve a model that does not reach {label_of(newest)};"
            f" got {period!r}"
        )


def with_metrics(settings: Settings, metrics_file: Path | None) -> Settings:
    """The settings with ``--metrics`` as the platform metrics file."""
    if metrics_file is None:
        if settings.platform.metrics_file is None:
            raise ConfigError("retrain needs platform metrics: --metrics FILE or [platform] metrics_file")
        return settings
    platform = settings.platform.model_copy(update={"metrics_file": Path(metrics_file)})
    return settings.model_copy(update={"platform": platform})


def period_label(period: str) -> str:
    """``--period`` as a period label: a quarter (``2025Q3``), or a year for annual metrics, in 2000..2099."""
    expected = (
        f"--period must be a quarter like 2025Q3 (or a year like 2025 for annual metrics) in "
        f"{YEARS[0]}..{YEARS[-1]}; got {period!r}"
    )
    try:
        kind, index = parse_period(period)
    except PeriodError as err:
        raise PeriodError(expected) from err
    if (index // 4 if kind == QUARTERLY else index) not in YEARS:
        raise PeriodError(expected)
    return label_of(index)  # in range, quarters and years cannot be mistaken


def history_cached(settings: Settings) -> bool:
    """Whether the synced cache holds the code lists :func:`validate_metrics` reads, with their
    sha256 (a code list changed since the sync is synced again before it is read, not read as it
    is; the sync only fills the raw-data cache: the panel, the champion and the outputs stay as
    they were)."""
    codes = [entry for entry in read_manifest() if entry.path.startswith("areacodes/")]
    try:
        sync.verify_cache(settings.data.cache_dir, codes)
    except DataSyncError:
        return False
    return True


def validate_metrics(settings: Settings, period: str, path_name: str = "[platform] metrics_file") -> None:
    """Read and validate the metrics file for ``period`` before any step runs.

    Every row is checked and none may be after ``period``; the file must be of ``period``'s
    frequency and reach it (its last period is ``period``), label some period by the rule, and
    give tune and the backtest a temporal fold.

    Raises
    ------
    PlatformMetricsError
        A bad row, or too few periods to label or to fold, naming the file.
    PeriodError
        ``period`` of another frequency than the file, or after its last period, naming ``--period``.
    TuneError
        Further metrics other than those the study to resume was scored on (a column added to or
        dropped from the file), or ``tune.seeds`` other than its.
    """
    path = settings.platform.metrics_file
    history = load_history(settings)
    target = settings.codes.target_vintage
    metrics = read_platform_metrics(
        path, history, target, as_of_limit=period, limit_name="--period", intensive=settings.platform.intensive,
        path_name=path_name,
    )  # fmt: skip
    check_covered(metrics, period, path)
    rule = build.belt_rule(settings.platform)
    labels = build.platform_labels(metrics, rule, path, settings.platform.min_coverage)
    check_temporal_fold(settings, metrics, labels, rule)
    check_learnable(settings, labels, rule)
    check_modes(metrics, labels, rule, path)
    tune.check_platform_study(settings, build.platform_feature_names(rule, metrics))


def check_covered(metrics: PlatformMetrics, period: str, path: Path) -> None:
    """``period`` is of the file's frequency and not after its last period (the file covers it)."""
    kind, index = parse_period(period)
    periods = metrics.frame["period"]
    if kind != metrics.frequency:
        example = "a quarter like 2025Q3" if metrics.frequency == QUARTERLY else "a year like 2025"
        raise PeriodError(
            f"--period must be {example}, as the periods of the {metrics.frequency} metrics file {path} "
            f"({build.span(periods, metrics.frequency)}); got {period!r}"
        )
    if not periods.empty and index > periods.max():
        raise PeriodError(
            f"--period must not be after the last period of the metrics file {path}, "
            f"{label_of(periods.max())} (the file must cover the period retrained for); got {period!r}"
        )


def check_temporal_fold(settings: Settings, metrics: PlatformMetrics, labels: pd.DataFrame, rule: BeltRule) -> None:
    """Tune and the backtest need one temporal fold: emergence transitions in two periods at least
    ``horizon`` apart (:meth:`models.backtest.FoldSpec.temporal`)."""
    horizon = settings.platform.horizon
    transitions = emergence_target(rule.apply(labels, "period"), horizon, "period")["period"]
    if fold_spec(settings).temporal(np.sort(transitions.unique())):
        return
    frequency = metrics.frequency
    unit = build.unit_of(frequency)
    metric, needed = build.longest_history(rule, frequency)
    labelled, known = (build.span(periods, frequency) for periods in (labels["period"], metrics.frame["period"]))
    raise PlatformMetricsError(
        f"{settings.platform.metrics_file}: platform metrics must give tune and the backtest a temporal fold: "
        f"emergence transitions (a county not a belt in a {unit}, labelled {horizon} {unit}(s) later) in two "
        f"{unit}s at least {horizon} apart, which takes {2 * horizon + 1} consecutive labelled {unit}s, so "
        f"{needed + 2 * horizon} consecutive {unit}s of metrics with this rule ({metric} needs {needed}); "
        f"got transitions in {_period_list(transitions, frequency)} (labelled: {labelled}; metrics: {known})"
    )


MIN_EACH_CLASS = 2  # the sigmoid calibration's cross-fitting needs two rows of each class


def check_learnable(settings: Settings, labels: pd.DataFrame, rule: BeltRule) -> None:
    """Every training set tune and the backtest cut (the newest temporal fold's, the province
    hold-out's and tune's inner folds) holds :data:`MIN_EACH_CLASS` new belts and as many counties
    that stay none: a model cannot be fitted, or calibrated, on one class."""
    target = emergence_target(rule.apply(labels, "period"), settings.platform.horizon, "period")
    rows = target[target["emerged"].notna()]
    periods, y = rows["period"].to_numpy(), rows["emerged"].astype(int).to_numpy()
    groups = (rows["county_code"].str[:2] + "0000").to_numpy()  # the panel's province_code
    spec = fold_spec(settings)
    newest = spec.temporal(np.sort(np.unique(periods)))[-1]
    inside = np.isin(periods, newest.train_periods)
    inner_by_province = not spec.temporal(np.sort(np.unique(periods[inside])))  # one training period
    needed = max(spec.n_spatial, settings.tune.inner_folds if inner_by_province else 0)
    provinces = len(np.unique(groups[inside]))
    if provinces < needed:
        tune_groups = f" and tune {settings.tune.inner_folds}" if inner_by_province else ""
        raise PlatformMetricsError(
            f"{settings.platform.metrics_file}: platform metrics must cover {needed} provinces at least in the"
            f" training rows of the newest temporal fold ({_fold_periods(newest.train_periods)}): the province"
            f" hold-out holds out {spec.n_spatial} groups of provinces{tune_groups}; got {provinces} province(s)"
        )
    folds = [(f"the newest temporal fold ({_fold_periods(newest.train_periods)})", newest)]
    folds += [(f"the province hold-out without {list(f.test_groups)}", f) for f in spec.spatial(periods, groups, y)]
    folds += [
        (
            f"tune's inner fold {f.name} ("
            + (f"{list(f.test_groups)} held out" if f.test_groups else f"trained on {_fold_periods(f.train_periods)}")
            + ")",
            f,
        )
        for f in inner_folds(periods, groups, y, spec, settings.tune.inner_folds)
    ]
    for name, fold in folds:
        train = fold_rows(fold, periods, groups)[0]
        new, stay = int(y[train].sum()), int((1 - y[train]).sum())
        if min(new, stay) < MIN_EACH_CLASS:
            raise PlatformMetricsError(
                f"{settings.platform.metrics_file}: platform metrics must give every training set of tune and the"
                f" backtest {MIN_EACH_CLASS} new belts and {MIN_EACH_CLASS} counties that stay none at least;"
                f" got {new} new belt(s) and {stay} that stay none in the training rows of {name}"
                f" ({int(inside.sum())} transitions of {len(np.unique(groups[inside]))} province(s) in all)"
            )


def check_modes(metrics: PlatformMetrics, labels: pd.DataFrame, rule: BeltRule, path: Path) -> None:
    """The mode model trains on the belts of one period whose categories map to a mode
    (:func:`~features.platform.category_modes`) and is judged holding out provinces: it needs such
    belts in two provinces at least, in some labelled period."""
    status = rule.apply(labels, "period")
    modes = category_modes(metrics, load_taxonomy())
    known = status[status["is_belt"]].merge(modes.dropna(subset=["mode"]), on=["county_code", "period"])
    provinces = known.assign(province=known["county_code"].str[:2]).groupby("period")["province"].nunique()
    if len(provinces) and provinces.loc[provinces.index.max()] >= 2:  # the period the mode model trains on
        return
    earlier = provinces[provinces >= 2]
    if len(earlier):
        why = f"those of {label_of(int(earlier.index.max()))}, in {int(earlier.iloc[-1])} provinces, are not the newest"
    elif CATEGORY not in metrics.frame.columns or metrics.frame[CATEGORY].isna().all():
        why = f"the file has no {CATEGORY!r} values"
    else:
        taxonomy = load_taxonomy()
        categories = sorted(metrics.frame[CATEGORY].dropna().astype(str).unique())
        unmapped = [c for c in categories if taxonomy.mode_of(c) is None]
        why = f"{len(unmapped)} of its {len(categories)} categories map to no mode, e.g. {unmapped[:5]}"
    raise PlatformMetricsError(
        f"{path}: platform metrics must give belts whose {CATEGORY!r} maps to a mode through"
        f" features/mode_taxonomy.csv, in 2 provinces at least in the newest period that has such belts (the"
        f" mode model's training rows); got {_mode_provinces(provinces)}: {why}"
    )


def _mode_provinces(provinces: pd.Series) -> str:
    if not len(provinces):
        return "no belt of a known mode"
    newest = int(provinces.index.max())
    return f"{int(provinces.loc[newest])} province(s) with such a belt in {label_of(newest)}"


def _fold_periods(periods: tuple) -> str:
    return ", ".join(label_of(int(p)) for p in periods)


def _period_list(periods: pd.Series, frequency: str) -> str:
    shown = [label_of(p) for p in sorted(periods.unique())]
    return ", ".join(shown) if shown else f"no {build.unit_of(frequency)}"


def step(name: str, action: Callable[[], Any], record: Callable[[Any], None] | None = None) -> Any:
    """One child MLflow run around one step; ``record`` logs what the step returned to it (the jobs
    that use MLflow log to the step's run themselves)."""
    with start_run(name, nested=True):
        result = action()
        if record is not None:
            record(result)
        return result


def log_sync(report: sync.SyncReport) -> None:
    """The raw files verified and fetched, and the manifest they were verified against."""
    mlflow.set_tag("data_manifest_sha256", manifest_hash(read_manifest()))
    mlflow.log_metrics(
        {"files_verified": len(report.verified), "files_fetched": len(report.fetched),
         "files_repaired": len(report.repaired)}
    )  # fmt: skip


def log_build(outputs: build.BuildOutputs) -> None:
    """The panel's content hash (``train`` tags its version with the same) and size, and its
    data-quality summary and unmatched units."""
    panel = pd.read_parquet(outputs.panel)
    mlflow.set_tag("panel_sha256", frame_hash(panel))
    mlflow.log_metrics({"panel_rows": len(panel), "panel_columns": panel.shape[1]})
    for path in (outputs.quality, outputs.unmatched):
        mlflow.log_artifact(str(path), "data")


def _version(client, settings: Settings) -> str | None:
    version = version_by_alias(client, settings.mlflow.registered_model, CHAMPION)
    return str(version.version) if version else None


def summary_table(summary: RetrainSummary) -> Table:
    """Old champion vs challenger, the decision, where the outputs are."""
    table = Table(title=f"Retrain {summary.period}")
    table.add_column("item")
    table.add_column("value")
    rows = [
        ("champion before", summary.old_champion or "none"),
        ("challenger", f"{summary.challenger}{' (reused: identical inputs)' if summary.reused else ''}"),
        ("decision", summary.decision),
        ("champion after", summary.new_champion or "none"),
        *summary.outputs.items(),
    ]
    for item, value in rows:
        table.add_row(item, printable(value))  # a cell is markup to rich
    return table
