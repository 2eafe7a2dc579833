"""``beltcast train``: backtest, fit the final models, log one MLflow run with one servable pyfunc
model, register a version of ``county-belt`` and point the alias ``challenger`` at it.

Training the same inputs twice (panel content, parameters, seed, folds, mode year, code, the
fitting libraries' versions) registers no second
version: the existing one is found by its fingerprint tag and made the challenger again.
``promote`` uses the same steps to refit the champion's parameters on a changed panel.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from rich.console import Console

import features
import models
from features.codes import retired_codes
from features.errors import OutputPathError
from features.io import json_text, write_csv, write_together
from features.panel import feature_columns
from features.periods import label_of
from models.backtest import FoldSpec
from models.bundle import ForecastBundle
from models.catalog import emergence_models, mode_models
from models.datasets import emergence_transitions, mode_rows
from models.plots import importance_bars, shap_summary
from models.served import BUNDLE_ARTIFACT, MODEL_CONFIG, input_example, signature
from pipelines.backtest import (
    check_default_outputs,
    check_folds,
    evaluate,
    fold_spec,
    is_platform,
    load_panel,
    mode_period,
    params_digest,
    tuned_params,
)
from pipelines.build import belt_rule, panel_synthetic
from pipelines.config import PLATFORM_RULE_METRICS, LabelSettings, PlatformSettings, Settings
from pipelines.manifest import sha256_of
from pipelines.master import crosswalk_to_target, load_history
from pipelines.terminal import printable
from pipelines.tracking import (
    CHALLENGER,
    LAST_PERIOD_TAG,
    SYNTHETIC_TAG,
    frame_hash,
    git_sha,
    lineage_tags,
    registry_lock,
    start_run,
    use_tracking,
)

VERSION_METRICS = ("average_precision", "precision_at_50", "recall_at_100", "roc_auc", "brier")
FITTING_LIBRARIES = ("lightgbm", "scikit-learn", "numpy", "scipy", "pandas")  # in the training fingerprint


@dataclass(frozen=True)
class TrainOutcome:
    """What ``train`` produced: the registered version and whether it was reused."""

    version: str
    run_id: str
    reused: bool
    metrics: dict


def run(
    settings: Settings,
    console: Console,
    params: dict | None = None,
    alias: str | None = CHALLENGER,
    tags: dict[str, str] | None = None,
) -> TrainOutcome:
    """Train (or reuse) a version and point ``alias`` at it; print what happened.

    Parameters
    ----------
    settings, console
    params : dict, optional
        LightGBM's parameters; default the tuned ones (``model.params_file``), else LightGBM's
        defaults.
    alias : str or None
        The alias moved to the version: ``challenger``, or none (``promote``'s refit moves the
        aliases itself).
    tags : dict, optional
        Extra tags of a newly registered version (a reused version keeps its own).
    """
    panel = load_panel(settings)  # first: a train that cannot start leaves no empty store behind
    check_folds(panel, settings)
    client = use_tracking(settings)
    if params is None:
        params = tuned_params(settings)
        if params is None:
            console.print(
                printable(
                    f"train: no tuned parameters ({settings.model.params_file}): LightGBM's defaults"
                    "; run `beltcast tune` to tune"
                )
            )
        tags = {**params_source(settings, params is not None), **(tags or {})}
        params = params or {}
    spec = fold_spec(settings)
    fingerprint = training_fingerprint(panel, params, spec, settings)
    existing = find_version(client, settings.mlflow.registered_model, fingerprint)
    if existing is not None:
        with start_run("train", nested=mlflow.active_run() is not None):  # every job leaves a run
            outcome = reuse(client, settings, existing, alias)
            mlflow.set_tags(
                {
                    **lineage_tags(settings, frame_hash(panel), spec.to_dict()),
                    **(tags or {}),  # where this run's parameters came from, as a new version's run says
                    "train.reused": "true",
                    "model_version": outcome.version,
                    "model_run_id": outcome.run_id,  # the run that trained it, with its metrics and files
                }
            )
            restore_backtest(client, settings, outcome.version, outcome.run_id, console)
    else:
        outcome = train_and_register(client, settings, panel, params, spec, fingerprint, console, alias, tags)
    _print(console, settings, outcome, alias)
    return outcome


def params_source(settings: Settings, tuned: bool) -> dict[str, str]:
    """Tags naming where the parameters came from: the file (and its sha256), the study, store,
    trial and period ``tune`` saved them from, or LightGBM's defaults. Parameters edited by hand
    since (they no longer match the digest ``tune`` wrote) are not the trial's: the tags say they
    were edited from it (``params_edited_from``) instead of naming the trial as their source."""
    if not tuned:
        return {"params_source": "lightgbm defaults"}
    path = settings.model.params_file
    saved = json.loads(path.read_text(encoding="utf-8"))
    tags = {"params_source": str(path.resolve()), "params_file_sha256": sha256_of(path)}
    keys = ("study", "storage", "best_trial", "period", "best_value")
    origin = {key: saved[key] for key in keys if saved.get(key) not in (None, "")}  # trial 0 is a trial
    digest = saved.get("params_sha256")
    if digest is not None and digest != params_digest(saved["params"]):
        trial = f"trial {origin['best_trial']} of " if "best_trial" in origin else ""
        tags["params_edited_from"] = (
            f"{trial}study {origin.get('study', '?')!r} (the file's parameters were changed since)"
        )
        return tags
    tags.update({f"params_{key}": str(value) for key, value in origin.items()})
    return tags


def training_fingerprint(panel: pd.DataFrame, params: dict, spec: FoldSpec, settings: Settings) -> str:
    """A hash of everything that determines the model: data, parameters, seed, folds, code and
    the versions of the libraries that fit it (the same inputs may fit another model after an
    upgrade)."""
    from importlib import metadata

    payload = json.dumps(
        {
            "panel": frame_hash(panel),
            "params": params,
            "seed": settings.model.seed,
            "folds": spec.to_dict(),
            "mode_year": settings.model.mode_year,
            "code": git_sha(),
            "libraries": {library: metadata.version(library) for library in FITTING_LIBRARIES},
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def find_version(client: MlflowClient, name: str, fingerprint: str):
    """The registered version with this fingerprint, if any."""
    found = client.search_model_versions(f"name = '{name}' and tag.fingerprint = '{fingerprint}'")
    return found[0] if found else None


def reuse(client: MlflowClient, settings: Settings, version, alias: str | None = CHALLENGER) -> TrainOutcome:
    """Point ``alias`` (if any) at an existing version again."""
    if alias is not None:
        client.set_registered_model_alias(settings.mlflow.registered_model, alias, version.version)
    metrics = {m: float(version.tags[m]) for m in VERSION_METRICS if m in version.tags}
    return TrainOutcome(str(version.version), version.run_id, True, metrics)


def restore_backtest(
    client: MlflowClient, settings: Settings, version: str, run_id: str, console: Console, job: str = "train"
) -> list[Path]:
    """Put the backtest files of a version's run back in the outputs folder, so that
    ``backtest.json`` and the curves there describe the version ``train`` points to (a reused
    one), or the kept champion ``promote`` serves when that is a refit on the current panel."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(client.download_artifacts(run_id, "backtest", tmp))
            return copy_to_outputs(sorted(local.iterdir()), settings, version, run_id)
        except (MlflowException, OSError, OutputPathError) as err:
            console.print(
                printable(
                    f"{job}: the backtest files of version {version}'s run cannot be restored ({err}); outputs"
                    " left as they are"
                )
            )
            return []


def train_and_register(
    client: MlflowClient,
    settings: Settings,
    panel: pd.DataFrame,
    params: dict,
    spec: FoldSpec,
    fingerprint: str,
    console: Console,
    alias: str | None = CHALLENGER,
    extra_tags: dict[str, str] | None = None,
) -> TrainOutcome:
    """Backtest, fit, log and register in one (possibly nested) MLflow run; point ``alias`` at it."""
    check_default_outputs(settings)  # written after the version is registered
    lineage = lineage_tags(settings, frame_hash(panel), spec.to_dict())
    lineage[LAST_PERIOD_TAG] = label_of(int(panel["as_of"].max()))  # promote and retrain never go back past it
    lineage["belt_rule"] = belt_rule(labelled_by(settings)).describe()
    # the backtest's files go to the outputs folder only once the version is registered: a train that
    # fails on the way leaves there the files of the version the aliases still point to
    with start_run("train", nested=mlflow.active_run() is not None) as active, tempfile.TemporaryDirectory() as staged:
        mlflow.set_tags({**lineage, **(extra_tags or {})})  # the run says where its parameters came from too
        mlflow.log_params(
            {**params, "seed": settings.model.seed, "horizon": spec.horizon, "mode_year": settings.model.mode_year}
        )
        report, written = log_backtest(panel, settings, spec, console, params, Path(staged) / "backtest.json")
        metrics = report["emergence"]["models"]["lightgbm"]
        tags = {
            **version_tags(metrics, report, params, spec, fingerprint, lineage),
            LAST_PERIOD_TAG: lineage[LAST_PERIOD_TAG],
            **(extra_tags or {}),
        }
        emergence, mode = fit_final(panel, params, settings)
        mlflow.log_metric("mode_model_weight", mode.model_weight_)
        console.print(f"train: mode model weight {mode.model_weight_:.2f} against the modes' frequencies")
        with tempfile.TemporaryDirectory() as tmp:
            log_explanations(emergence, panel, Path(tmp))
            meta = {**bundle_meta(settings, spec), **further_kinds(settings, panel)}
            bundle = ForecastBundle.from_models(emergence, mode, panel, meta)
            info = log_model(bundle, Path(tmp) / BUNDLE_ARTIFACT)
        with registry_lock(settings):
            # a train of the same inputs that ran beside this one may have registered first
            twin = find_version(client, settings.mlflow.registered_model, fingerprint)
            if twin is not None:
                mlflow.set_tag("duplicate_of_version", str(twin.version))
                console.print(f"train: version {twin.version}, trained beside this run on the same inputs, is used")
                outcome = reuse(client, settings, twin, alias)
                # the same inputs: the twin's backtest, named by the twin's version and run
                publish_backtest(written, settings, console, outcome.version, outcome.run_id)
                return outcome
            # The version and its tags are written in one registry transaction: a train killed at
            # any point leaves either no version or a tagged one (found again by its fingerprint).
            registered = mlflow.register_model(info.model_uri, settings.mlflow.registered_model, tags=tags)
            version = str(registered.version)
            if alias is not None:
                client.set_registered_model_alias(settings.mlflow.registered_model, alias, version)
        publish_backtest(written, settings, console, version, active.info.run_id)
    return TrainOutcome(version, active.info.run_id, False, {m: metrics[m] for m in VERSION_METRICS})


def copy_to_outputs(sources: list[Path], settings: Settings, version: str, run_id: str) -> list[Path]:
    """Copy backtest files into the outputs folder under their names, all or none: never one
    version's JSON beside another's curves. The JSON gains ``model`` (the registered model, the
    version and the run that trained it, whose artifacts hold its backtest): the folder keeps the newest train's
    backtest, which may be a challenger's that ``promote`` rejected."""
    model = {"name": settings.mlflow.registered_model, "version": version, "run_id": run_id}

    def copy(source: Path, part: Path) -> None:
        if source.suffix != ".json":
            shutil.copyfile(source, part)
            return
        report = json.loads(source.read_text(encoding="utf-8"))
        part.write_text(json_text({**report, "model": model}), encoding="utf-8")

    return write_together(
        {settings.outputs.dir / source.name: lambda part, source=source: copy(source, part) for source in sources}
    )


def publish_backtest(staged: list[Path], settings: Settings, console: Console, version: str, run_id: str) -> list[Path]:
    """Copy the backtest's files (JSON and curves) into the outputs folder, all or none, named by
    ``version`` and the run that trained it (:func:`copy_to_outputs`). The version is registered
    by then: a folder that cannot be written now (it was checked before the backtest) is told,
    not an error, and the files stay in the run."""
    try:
        published = copy_to_outputs(staged, settings, version, run_id)
    except OutputPathError as err:
        console.print(printable(f"train: the backtest's files are in the run, not in {settings.outputs.dir} ({err})"))
        return []
    console.print(printable(f"backtest -> {', '.join(str(p) for p in published)}"))
    return published


def log_backtest(
    panel: pd.DataFrame, settings: Settings, spec: FoldSpec, console: Console, params: dict | None, out: Path
) -> tuple[dict, list[Path]]:
    """Run the backtest (writing its JSON to ``out`` and its curves beside it, as ``beltcast
    backtest`` does), log its metrics and files to the run; return the JSON contract and the files."""
    report, written = evaluate(panel, settings, spec, out, console, params, announce=False)
    emergence = report["emergence"]
    blocks = [("temporal", emergence["models"]), ("spatial", emergence["spatial"]["models"])]
    blocks += [("mode", report["mode"]["models"])]
    # every other temporal fold by its name (a platform backtest has one per quarter)
    blocks += [
        (f["name"], f["models"])
        for f in emergence["folds"]
        if f["kind"] == "temporal" and f["name"] != emergence["newest_fold"]
    ]
    for fold, block in blocks:
        for model, metrics in block.items():
            mlflow.log_metrics(_numbers(f"{fold}.{model}", metrics))
    for path in written:
        mlflow.log_artifact(str(path), "backtest")
    quality = settings.data.features_dir / "quality.json"
    if quality.is_file():
        mlflow.log_artifact(str(quality), "data")
    return report, written


def _numbers(prefix: str, metrics: dict) -> dict[str, float]:
    """The metrics MLflow can hold: numbers (counts too), and each interval as ``_low``/``_high``."""
    numbers = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers[f"{prefix}.{key}"] = float(value)
        elif key.endswith("_ci") and isinstance(value, (list, tuple)) and len(value) == 2:
            numbers[f"{prefix}.{key}_low"], numbers[f"{prefix}.{key}_high"] = map(float, value)
    return numbers


def fit_final(panel: pd.DataFrame, params: dict, settings: Settings):
    """The emergence model on every labelled transition, the mode model on every belt with a mode."""
    data = emergence_transitions(panel)
    emergence = emergence_models(params, settings.model.seed)["lightgbm"].fit(data.X, data.y)
    rows = mode_rows(panel, mode_period(settings))
    mode = mode_models(settings.model.seed)["lightgbm"].fit(rows.X, rows.y, groups=rows.groups)
    return emergence, mode


def log_explanations(emergence, panel: pd.DataFrame, folder: Path) -> None:
    """Feature importance of the trees (CSV + PNG), the linear margin's coefficients (CSV, when
    the model has one) and a summary plot of the contributions on the training rows."""
    importance = emergence.feature_importance()
    write_csv(
        importance.rename("gain").rename_axis("feature").reset_index(),
        folder / "feature_importance.csv",
    )
    data = emergence_transitions(panel)
    contributions = emergence.contributions(data.X)
    paths = [
        folder / "feature_importance.csv",
        importance_bars(importance, folder / "feature_importance.png"),
        shap_summary(contributions, data.X, folder / "shap_summary.png"),
    ]
    if emergence.margin_ is not None:
        margin = emergence.margin_
        coefficients = pd.DataFrame(
            {
                "feature": emergence.feature_names_in_,
                "coef_standardised": margin.coef,
                "coef_per_unit": margin.coef / margin.scale,
                "center": margin.center,
                "scale": margin.scale,
                "fill": margin.fill,
            }
        ).sort_values("coef_standardised", key=abs, ascending=False)
        # log-odds = intercept + sum of coef_standardised * (x - center) / scale, x missing -> fill
        intercept = pd.DataFrame({"feature": ["(intercept)"], "coef_standardised": [margin.intercept]})
        coefficients = pd.concat([intercept, coefficients], ignore_index=True)
        paths.append(write_csv(coefficients, folder / "linear_margin.csv"))
    for path in paths:
        mlflow.log_artifact(str(path), "explanations")


def labelled_by(settings: Settings) -> LabelSettings | PlatformSettings:
    """The belt rule's settings the panel's labels come from: the platform's with a metrics file."""
    return settings.platform if is_platform(settings) else settings.labels


def bundle_meta(settings: Settings, spec: FoldSpec) -> dict:
    """What the served model should know about itself; the belt rule is the one its labels were
    made by (the platform's with a metrics file, else the public rosters')."""
    labels = labelled_by(settings)
    meta = {
        "target_vintage": settings.codes.target_vintage,
        "horizon": spec.horizon,
        "belt_rule": [c.model_dump() for c in labels.conditions],
        "min_met": labels.min_met,
    }
    if (Path(settings.data.cache_dir) / "areacodes").is_dir():  # a request by a retired code is told its successors
        crosswalk = crosswalk_to_target(load_history(settings), settings.codes.target_vintage)
        meta["successors"] = retired_codes(crosswalk, settings.codes.target_vintage)
    return meta


def further_kinds(settings: Settings, panel: pd.DataFrame) -> dict:
    """``{"further_metrics": {feature: "count" or "rate"}}`` of the platform's further metrics in
    the panel (the what-if domains of the served model), with ``"synthetic_metrics": True`` when
    the metrics file was marked synthetic (score and report say so), or nothing for a public panel."""
    if not is_platform(settings):
        return {}
    rule = {f"platform_{metric}" for metric in PLATFORM_RULE_METRICS}
    further = [c for c in feature_columns(panel) if c.startswith("platform_") and c not in rule]
    intensive = {f"platform_{name}" for name in settings.platform.intensive}
    kinds = {"further_metrics": {c: "rate" if c in intensive else "count" for c in further}}
    if panel_synthetic(settings.data.features_dir):
        kinds["synthetic_metrics"] = True
    return kinds


def log_model(bundle: ForecastBundle, folder: Path):
    """Log the bundle as a models-from-code pyfunc with a signature (registered by the caller)."""
    bundle.save(folder)
    package = Path(models.__file__).parent
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(package / "pyfunc_entry.py"),
        artifacts={BUNDLE_ARTIFACT: str(folder)},
        code_paths=[str(package), str(Path(features.__file__).parent)],
        signature=signature(bundle.features, bundle.quarterly),
        input_example=input_example(bundle),
        pip_requirements=_requirements(),
        model_config=MODEL_CONFIG,
    )


def _requirements() -> list[str]:
    from importlib import metadata

    return [
        f"{lib}=={metadata.version(lib)}"
        for lib in ("mlflow", "lightgbm", "pandas", "numpy", "scipy", "pyarrow", "scikit-learn", "lleaves", "llvmlite")
    ]


def version_tags(
    metrics: dict, report: dict, params: dict, spec: FoldSpec, fingerprint: str, lineage: dict
) -> dict[str, str]:
    """Backtest metrics, parameters and lineage: the tags of the registered version."""
    tags = {m: f"{metrics[m]:.10g}" for m in VERSION_METRICS}
    tags.update(
        fingerprint=fingerprint,
        params_json=json.dumps(params, sort_keys=True),
        fold_spec=json.dumps(spec.to_dict(), sort_keys=True),
        newest_fold=report["emergence"]["newest_fold"],
        panel_sha256=lineage["panel_sha256"],
        data_manifest_sha256=lineage["data_manifest_sha256"],
        git_sha=lineage["git_sha"],
        seed=lineage["seed"],
    )
    # the belt rule and the platform's metrics file: what the labels and features were made from
    tags.update(
        {
            k: lineage[k]
            for k in ("belt_rule", "platform_metrics_file", "platform_metrics_sha256", SYNTHETIC_TAG)
            if k in lineage
        }
    )
    return tags


def _print(console: Console, settings: Settings, outcome: TrainOutcome, alias: str | None) -> None:
    name = settings.mlflow.registered_model
    verb = "reused (identical inputs)" if outcome.reused else "registered"
    figures = ", ".join(f"{k} {v:.4f}" for k, v in outcome.metrics.items())
    moved = f"alias {alias} -> {outcome.version}" if alias is not None else "no alias moved"
    console.print(f"train: {name} version {outcome.version} {verb}; {moved}")
    console.print(f"train: backtest (newest temporal fold): {figures}; run {outcome.run_id}")
