"""``beltcast retrain --period P [--metrics FILE]``: the quarterly flow in one command.

sync -> features build (up to P) -> tune (resuming the study; only the trials still missing for
P) -> train (a challenger; an identical one is reused, not registered twice) -> promote (the gate)
-> score (as of P) -> report, under one parent MLflow run with a child run per step. The metrics
file is validated before anything else runs, so a bad row stops the flow with the champion and
the outputs untouched. Re-running a period reuses what is done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from rich.console import Console
from rich.table import Table

from features.errors import ConfigError
from features.periods import label_of, parse_period
from features.platform import read_platform_metrics
from pipelines import build, promote, report, score, sync, train, tune
from pipelines.config import Settings
from pipelines.master import load_history
from pipelines.tracking import CHAMPION, start_run, use_tracking, version_by_alias


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
    settings = with_metrics(settings, metrics_file)
    label = label_of(parse_period(period)[1])
    validate_metrics(settings, label)
    client = use_tracking(settings)
    summary = RetrainSummary(period=label, old_champion=_version(client, settings))
    with start_run(f"retrain-{label}") as parent:
        mlflow.set_tags({"retrain.period": label, "retrain.metrics_file": str(settings.platform.metrics_file)})
        step("sync", lambda: sync.run(settings, None, console))
        step("build", lambda: build.run(settings, console, until=label))
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


def with_metrics(settings: Settings, metrics_file: Path | None) -> Settings:
    """The settings with ``--metrics`` as the platform metrics file."""
    if metrics_file is None:
        if settings.platform.metrics_file is None:
            raise ConfigError("retrain needs platform metrics: --metrics FILE or [platform] metrics_file")
        return settings
    platform = settings.platform.model_copy(update={"metrics_file": Path(metrics_file)})
    return settings.model_copy(update={"platform": platform})


def validate_metrics(settings: Settings, period: str) -> None:
    """Read and validate the metrics file up to ``period`` before any step runs."""
    history = load_history(settings)
    read_platform_metrics(settings.platform.metrics_file, history, settings.codes.target_vintage, as_of_limit=period)


def step(name: str, action: Callable[[], Any]) -> Any:
    """One child MLflow run around one step."""
    with start_run(name, nested=True):
        return action()


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
        table.add_row(item, str(value))
    return table
