"""``beltcast backtest``: every model and baseline through the same rolling-origin folds."""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from features.errors import BeltcastError, ConfigError
from features.io import json_text, writable_target, write_together
from features.panel import ID_COLUMNS
from features.periods import label_of
from models.backtest import BacktestResult, FoldSpec, backtest_emergence, backtest_mode
from models.catalog import emergence_models, mode_models
from models.datasets import emergence_transitions, mode_rows
from models.estimators import LGBMEmergence
from models.plots import calibration_figure, png_writer, pr_figure
from models.tuning import nested_params
from pipelines.config import ModelSettings, Settings
from pipelines.manifest import known_sha256
from pipelines.terminal import printable

SHOWN = ("average_precision", "precision_at_50", "recall_at_100", "roc_auc", "brier")


def run(settings: Settings, out: Path | None, console: Console, nested_trials: int | None = None) -> dict:
    """Backtest, write the JSON contract and the curves, print the comparison table (with
    ``nested_trials``, LightGBM tuned anew inside each province fold: :func:`emergence_backtest`)."""
    if out is not None:  # before minutes of work, not after (its curves go in the same folder)
        writable_target(settings.check_output(out, "--out"), "--out")
    else:
        check_default_outputs(settings)
    panel = load_panel(settings)
    check_folds(panel, settings)
    if tuned_params(settings) is None:
        console.print(printable(f"backtest: no tuned parameters ({settings.model.params_file}): LightGBM's defaults"))
    report, _ = evaluate(panel, settings, fold_spec(settings), out, console, nested_trials=nested_trials)
    return report


def evaluate(
    panel: pd.DataFrame,
    settings: Settings,
    spec: FoldSpec,
    out: Path | None,
    console: Console,
    params: dict | None = None,
    nested_trials: int | None = None,
    announce: bool = True,
) -> tuple[dict, list[Path]]:
    """The backtest of every model on ``panel``: JSON contract and curves written, table printed.

    ``params`` are LightGBM's (default: the tuned ones); ``nested_trials``: see
    :func:`emergence_backtest`; ``announce``: print where the files went. Returns the contract
    and the paths written (JSON first), for ``train`` to log."""
    result = emergence_backtest(panel, settings, spec, params, nested_trials, console)
    report = contract(result, mode_backtest(panel, settings), spec)
    out = Path(out or settings.outputs.dir / "backtest.json")
    text = json_text(report)
    written = write_together(
        {out: lambda tmp: tmp.write_text(text, encoding="utf-8"), **plot_writers(result, out)}
    )  # the JSON and its curves replace the previous ones together, or none of them does
    console.print(comparison_table(report))
    if report["emergence"]["comparisons"]:
        console.print(difference_table(report))
    if announce:
        console.print(printable(f"backtest -> {', '.join(str(p) for p in written)}"))
    return report, written


def load_panel(settings: Settings) -> pd.DataFrame:
    """The panel written by ``features build``."""
    path = settings.data.features_dir / "panel.parquet"
    if not path.is_file():
        raise BeltcastError(f"panel {path} does not exist; run `beltcast features build` first")
    try:
        panel = pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise BeltcastError(
            f"panel {path} cannot be read ({err}); expected the Parquet file `beltcast features build` writes"
        ) from err
    missing = [c for c in (*ID_COLUMNS, "is_belt", "emerged") if c not in panel.columns]
    if missing:
        raise BeltcastError(
            f"panel {path} lacks column(s) {missing}; expected the panel `beltcast features build` writes"
            f" (got {len(panel.columns)} columns: {list(panel.columns)[:8]}...)"
        )
    from_platform = any(str(c).startswith(PLATFORM_PREFIX) for c in panel.columns)
    if from_platform and not is_platform(settings):
        raise BeltcastError(
            f"panel {path} was built from platform metrics (its {PLATFORM_PREFIX}* columns), but the config has"
            " no [platform] metrics_file, so its labels and folds would be read as the public rosters';"
            " expected the config that built it (--config FILE with [platform] metrics_file), or a public"
            " panel (`beltcast features build` without it)"
        )
    if is_platform(settings) and not from_platform:
        raise BeltcastError(
            f"panel {path} was built from the public rosters, but the config sets [platform] metrics_file ="
            f" {str(settings.platform.metrics_file)!r}; expected the platform's panel: run"
            " `beltcast features build` with this config, or `beltcast retrain`"
        )
    if is_platform(settings):
        check_metrics_file(settings, path)
    return panel


def check_folds(panel: pd.DataFrame, settings: Settings, modes: bool = True) -> None:
    """The settings that cut folds fit the panel, checked before any work (a fold the panel cannot
    fill would otherwise fail minutes into a job, in scikit-learn's words): a temporal fold exists
    for the horizon, the province hold-out and tune's inner folds have as many provinces to hold
    out, and (with ``modes``, for the jobs that fit the mode model) the mode model's period has
    belts with a known mode in two provinces."""
    spec = fold_spec(settings)
    data = emergence_transitions(panel)
    periods = np.sort(np.unique(data.periods))
    temporal = spec.temporal(periods)
    if not temporal:
        key = "platform.horizon" if is_platform(settings) else "labels.horizon"
        labelled = np.sort(panel.loc[panel["is_belt"].notna(), "as_of"].astype(int).unique())
        raise ConfigError(
            f"{key} = {spec.horizon} leaves the panel no temporal fold: the backtest and tune need emergence"
            f" transitions as of two periods {spec.horizon} or more apart (train on the earlier, test on the"
            f" later); got transitions as of {_periods(periods)} (labelled periods: {_periods(labelled)})"
        )
    inside = np.isin(data.periods, temporal[-1].train_periods)
    provinces = len(np.unique(data.groups[inside]))
    limits = {"model.spatial_folds": spec.n_spatial}
    if not spec.temporal(np.sort(np.unique(data.periods[inside]))):  # tune's inner folds hold out provinces
        limits["tune.inner_folds"] = settings.tune.inner_folds
    for key, folds in limits.items():
        if folds > provinces:
            raise ConfigError(
                f"{key} must be at most the number of provinces it can hold out, {provinces} in the training"
                f" rows of the newest temporal fold (as of {_periods(temporal[-1].train_periods)}); got {folds}"
            )
    if not modes:
        return
    rows = mode_rows(panel, mode_period(settings))
    if len(np.unique(rows.groups)) < 2:
        known = panel[panel["mode"].notna() & panel["is_belt"].fillna(False).astype(bool)]
        spread = known.groupby("as_of")["province_code"].nunique()
        usable = _periods(spread.index[spread >= 2].to_numpy())
        if is_platform(settings):
            raise ConfigError(
                "the platform metrics must give the mode model belts with a known mode in 2 provinces at least"
                f" in the newest period with modes, for its province hold-out; periods that have them: {usable}"
            )
        raise ConfigError(
            "model.mode_year must be a year whose belts have a known mode in 2 provinces at least (the mode"
            f" model is judged holding out provinces): {usable}; got {settings.model.mode_year}"
        )


def _periods(periods) -> str:
    return ", ".join(label_of(p) for p in periods) or "none"


def check_metrics_file(settings: Settings, panel_path: Path) -> None:
    """The config's metrics file is the one the panel was built from (by content: its sha256, as
    ``features build`` records it in ``quality.json``); a panel built before the record is taken as is."""
    quality = panel_path.with_name("quality.json")
    try:
        built = json.loads(quality.read_text(encoding="utf-8")).get("platform_metrics")
    except (OSError, ValueError, AttributeError):
        built = None
    if not isinstance(built, dict) or "sha256" not in built:
        return
    configured = Path(settings.platform.metrics_file)
    if not configured.is_file():
        raise BeltcastError(
            f"[platform] metrics_file {configured} does not exist; expected the file the panel was built"
            f" from, {built.get('file')}"
        )
    digest = known_sha256(configured)
    if digest != built["sha256"]:
        raise BeltcastError(
            f"panel {panel_path} was built from the platform metrics {built.get('file')} (sha256"
            f" {built['sha256'][:12]}), but the config's [platform] metrics_file is {configured} (sha256"
            f" {digest[:12]}); expected the same file: name it in the config, or rebuild the panel with this"
            " one (`beltcast features build` or `beltcast retrain`)"
        )
    kinds = built.get("further_metrics")
    if isinstance(kinds, dict):  # a panel built before the record: taken as is
        rates = sorted(feature.removeprefix(PLATFORM_PREFIX) for feature, kind in kinds.items() if kind == "rate")
        if rates != sorted(settings.platform.intensive):
            raise BeltcastError(
                f"panel {panel_path} was built with [platform] intensive = {rates} (its further metrics' rates),"
                f" but the config says {sorted(settings.platform.intensive)}; expected the same: rates and counts"
                " are combined differently (`beltcast features build` with this config rebuilds the panel)"
            )


PLATFORM_PREFIX = "platform_"  # the platform metrics' feature columns (pipelines.build.platform_features)


def fold_spec(settings: Settings) -> FoldSpec:
    """The one fold spec of backtest, tune and promote."""
    if is_platform(settings):
        return FoldSpec(
            horizon=settings.platform.horizon,
            n_spatial=settings.model.spatial_folds,
            seed=settings.model.seed,
            max_temporal=settings.platform.temporal_folds,
        )
    return FoldSpec(horizon=settings.labels.horizon, n_spatial=settings.model.spatial_folds, seed=settings.model.seed)


def is_platform(settings: Settings) -> bool:
    """Labels from the platform's own metrics (rather than the public rosters)."""
    return settings.platform.metrics_file is not None


def mode_period(settings: Settings) -> int | None:
    """The period whose belts train the mode model (public: the roster with products)."""
    return None if is_platform(settings) else settings.model.mode_year


# What each tuned parameter must be: (integer only, within bounds, as said in an error).
PARAM_RULES = {
    "n_estimators": (True, lambda v: v >= 1, "an integer >= 1"),
    "num_leaves": (True, lambda v: v >= 2, "an integer >= 2"),
    "min_child_samples": (True, lambda v: v >= 1, "an integer >= 1"),
    "calibration_folds": (True, lambda v: v >= 2, "an integer >= 2"),
    "learning_rate": (False, lambda v: v > 0, "a finite number > 0"),
    "subsample": (False, lambda v: 0 < v <= 1, "a finite number in (0, 1]"),
    "colsample_bytree": (False, lambda v: 0 < v <= 1, "a finite number in (0, 1]"),
    "reg_lambda": (False, lambda v: v >= 0, "a finite number >= 0"),
    "scale_pos_weight": (False, lambda v: v > 0, "a finite number > 0"),
    "linear_margin_C": (False, lambda v: v > 0, "a finite number > 0 or null"),
}


def params_digest(params: dict) -> str:
    """The sha256 of parameters as JSON with sorted keys (``tune`` saves it beside them)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def tuned_params(settings: Settings) -> dict | None:
    """Parameters saved by ``beltcast tune``: ``None`` when the default file does not exist yet
    (LightGBM's defaults), an error when a configured file does not, or holds what ``tune``
    would not have written."""
    path = settings.model.params_file
    if not path.is_file():
        if path != ModelSettings.model_fields["params_file"].default:  # a file of the user's own
            raise BeltcastError(f"model.params_file {path} does not exist; expected the file `beltcast tune` writes")
        return None
    try:
        params = json.loads(path.read_text(encoding="utf-8"))["params"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise BeltcastError(
            f"model.params_file {path} cannot be read ({type(err).__name__}: {err}); expected JSON with an"
            " object 'params', as `beltcast tune` writes"
        ) from err
    return check_params(params, f"model.params_file {path}")


def check_params(params: object, source: str) -> dict:
    """``params`` if every key is a parameter of the emergence model with a value of its kind
    and within its bounds; an error naming ``source``, the key, what was expected and the value."""
    if not isinstance(params, dict):
        raise BeltcastError(f"{source}: 'params' must be an object; got {params!r}")
    known = set(inspect.signature(LGBMEmergence).parameters) - {"random_state", "n_jobs"}
    for key, value in params.items():
        if key not in known:
            raise BeltcastError(f"{source}: unknown parameter {key!r}; expected one of {sorted(known)}")
        if key == "calibration":
            if value not in (None, "sigmoid"):
                raise BeltcastError(f"{source}: calibration must be 'sigmoid' or null; got {value!r}")
            continue
        if key == "linear_margin_C" and value is None:
            continue
        if key == "monotone_exposure":
            if not isinstance(value, bool):
                raise BeltcastError(f"{source}: monotone_exposure must be true or false; got {value!r}")
            continue
        integer, within, expected = PARAM_RULES[key]
        kinds = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or not within(value):
            raise BeltcastError(f"{source}: {key} must be {expected}; got {value!r}")
    return params


def emergence_backtest(
    panel: pd.DataFrame,
    settings: Settings,
    spec: FoldSpec,
    params: dict | None = None,
    nested_trials: int | None = None,
    console: Console | None = None,
) -> BacktestResult:
    """Every emergence model (LightGBM with ``params``, default the tuned ones) through the folds.

    With ``nested_trials``, LightGBM's parameters in each province fold come from a study of that
    many trials on the fold's training provinces alone (:func:`~models.tuning.nested_params`,
    ``tune``'s search and seeds; the calibration folds as tuned), so the province hold-out is not
    judged on the provinces the tuned parameters were chosen on."""
    data = emergence_transitions(panel)
    params = tuned_params(settings) if params is None else params
    seed = settings.model.seed
    spatial_models = None
    if nested_trials:
        calibration_folds = (params or {}).get("calibration_folds")
        fold_numbers = itertools.count(1)

        def spatial_models(train: np.ndarray) -> dict:
            number = next(fold_numbers)
            if console is not None:
                console.print(
                    f"backtest: province fold {number} of {spec.n_spatial}: tuning LightGBM on its training"
                    f" provinces ({nested_trials} trials)"
                )
                console.file.flush()  # a log shows each fold as it starts
            nested = nested_params(
                data.X[train], data.y[train], data.periods[train], data.groups[train], spec, nested_trials,
                settings.tune.inner_folds, seed, settings.tune.seeds,
            )  # fmt: skip
            if calibration_folds is not None:
                nested["calibration_folds"] = calibration_folds
            return emergence_models(nested, seed)

    models = emergence_models(params, seed)
    result = backtest_emergence(
        models, data.X, data.y, data.periods, data.groups, spec, settings.model.bootstrap, spatial_models=spatial_models
    )
    if nested_trials:
        for fold in result.folds:
            if fold["kind"] == "spatial":
                fold["nested_tuning_trials"] = nested_trials
    return result


def mode_backtest(panel: pd.DataFrame, settings: Settings) -> dict:
    """Mode models by grouped cross-validation over provinces."""
    rows = mode_rows(panel, mode_period(settings))
    return backtest_mode(mode_models(settings.model.seed), rows.X, rows.y, rows.groups)


def contract(result: BacktestResult, mode: dict, spec: FoldSpec) -> dict:
    """The backtest JSON contract of DESIGN.md."""
    temporal = [f for f in result.folds if f["kind"] == "temporal"]
    spatial = next((f for f in result.folds if f["kind"] == "spatial"), {})
    held_out = {"models": spatial.get("models", {}), "comparisons": spatial.get("comparisons", {})}
    if "nested_tuning_trials" in spatial:
        held_out["nested_tuning_trials"] = spatial["nested_tuning_trials"]
    return {
        "emergence": {
            "fold_spec": spec.to_dict(),
            "newest_fold": temporal[-1]["name"] if temporal else None,
            "folds": result.folds,
            "models": result.metrics("temporal") if temporal else {},
            "comparisons": temporal[-1].get("comparisons", {}) if temporal else {},
            "spatial": held_out,
        },
        "mode": {"models": mode},
    }


def write_plots(result: BacktestResult, out: Path) -> list[Path]:
    """PR and calibration curves of the newest temporal fold, beside the JSON ``out``:
    ``pr_curve.png`` and ``calibration_curve.png`` beside ``backtest.json``, else prefixed with the
    JSON's name (``a.json``: ``a_pr_curve.png``), so that two backtests in one folder keep their own."""
    return write_together(plot_writers(result, out))


def plot_writers(result: BacktestResult, out: Path) -> dict[Path, Callable[[Path], None]]:
    """The curves of :func:`write_plots`, as writers for :func:`features.io.write_together`."""
    newest = [f["name"] for f in result.folds if f["kind"] == "temporal"][-1]
    _, pr_png, calibration_png = backtest_files(out)
    return {
        pr_png: png_writer(pr_figure(result.predictions, newest)),
        calibration_png: png_writer(calibration_figure(result.predictions, newest, bins=10)),
    }


def check_default_outputs(settings: Settings) -> None:
    """The backtest's files in ``outputs.dir`` (:func:`backtest_files`) can be written, named so
    when they cannot: checked before the work, not after it."""
    for path in backtest_files(settings.outputs.dir / "backtest.json"):
        writable_target(path, "outputs.dir")


def backtest_files(out: Path) -> list[Path]:
    """The files a backtest whose JSON is ``out`` writes: the JSON, then its PR and calibration
    curves (:func:`write_plots`)."""
    prefix = "" if out.name == "backtest.json" else f"{out.stem}_"
    return [out, out.with_name(f"{prefix}pr_curve.png"), out.with_name(f"{prefix}calibration_curve.png")]


def comparison_table(report: dict) -> Table:
    """Models x metrics, newest temporal fold and province hold-out."""
    nested = report["emergence"]["spatial"].get("nested_tuning_trials")
    tuning = (
        f"LightGBM tuned anew on each group's training provinces ({nested} trials)"
        if nested
        else "tuned on provinces held out within the same years, so not independent of tuning"
    )
    table = Table(
        title=f"Emergence backtest ({report['emergence']['newest_fold']} and province hold-out)",
        caption="provinces: figures within each group of held-out provinces, averaged (P@50: a group's top 50); "
        + tuning,
    )
    table.add_column("model")
    table.add_column("fold")
    for metric in SHOWN:
        table.add_column(metric.replace("average_precision", "AP (90% CI)"), justify="right")
    table.add_column("AP CI, provinces resampled", justify="right")
    for fold, models in (
        ("temporal", report["emergence"]["models"]),
        ("provinces", report["emergence"]["spatial"]["models"]),
    ):
        for name, metrics in models.items():
            table.add_row(
                name, fold, *(_cell(metrics, m) for m in SHOWN), _bounds(metrics, "average_precision_ci_clustered")
            )
    for name, metrics in report["mode"]["models"].items():
        table.add_row(
            f"mode:{name}",
            "provinces",
            f"acc {metrics['accuracy']:.3f}",
            f"F1 {metrics['macro_f1']:.3f}",
            "",
            "",
            "",
            "",
        )
    return table


def difference_table(report: dict) -> Table:
    """LightGBM minus each other model on the same bootstrap resamples: the difference, its 90 %
    interval and the share of resamples in which LightGBM is ahead."""
    table = Table(title="LightGBM minus each model, paired bootstrap (90% CI; share of resamples ahead)")
    for column in ("compared with", "fold", "AP difference", "ahead", "P@50 difference", "ahead"):
        table.add_column(column, justify="left" if column in ("compared with", "fold") else "right")
    emergence = report["emergence"]
    for fold, comparisons in (
        ("temporal", emergence["comparisons"]),
        ("provinces", emergence["spatial"]["comparisons"]),
    ):
        for name, diff in comparisons.items():
            if same_ranking(diff):
                table.add_row(name, fold, "same ranking", "", "same ranking", "")
                continue
            cells = []
            for metric in ("average_precision_diff", "precision_at_50_diff"):
                low, high = diff.get(f"{metric}_ci", (np.nan, np.nan))
                cells += [
                    f"{diff[metric]:+.3f} [{low:+.3f}, {high:+.3f}]",
                    f"{diff.get(f'{metric}_ahead', np.nan):.0%}",
                ]
            table.add_row(name, fold, *cells)
    return table


def same_ranking(diff: dict) -> bool:
    """No difference in AP or P@50 on the fold or any resample (a model and its own monotone
    recalibration on one fold)."""
    metrics = ("average_precision_diff", "precision_at_50_diff")
    return all(diff.get(m, 0.0) == 0.0 and all(b == 0.0 for b in diff.get(f"{m}_ci") or ()) for m in metrics)


def _bounds(metrics: dict, key: str) -> str:
    bounds = metrics.get(key)
    return f"[{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else ""


def _cell(metrics: dict, metric: str) -> str:
    value = metrics.get(metric, np.nan)
    if metric == "average_precision" and "average_precision_ci" in metrics:
        return f"{value:.3f} {_bounds(metrics, 'average_precision_ci')}"
    return f"{value:.3f}"
