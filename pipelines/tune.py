"""``beltcast tune``: an Optuna study on the backtest's inner folds; the best parameters are saved
where ``train`` and ``backtest`` find them."""

from __future__ import annotations

from pathlib import Path

import optuna
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from features.io import write_json
from models.datasets import emergence_transitions
from models.tuning import make_objective, make_study
from pipelines.backtest import fold_spec, load_panel
from pipelines.config import Settings


def run(settings: Settings, trials: int | None, study_name: str | None, console: Console) -> dict:
    """Run (or resume) the study, save and print the best parameters."""
    panel = load_panel(settings)
    data = emergence_transitions(panel)
    objective = make_objective(
        data.X, data.y, data.periods, data.groups, fold_spec(settings),
        settings.tune.inner_folds, settings.model.seed,
    )  # fmt: skip
    study = open_study(settings, study_name)
    optimise(study, objective, trials or settings.tune.trials, console)
    best = save_best(study, settings.model.params_file)
    console.print(
        f"tune: study {study.study_name!r}, {len(study.trials)} trial(s) in all; best inner-fold "
        f"AP {study.best_value:.4f} -> {settings.model.params_file}"
    )
    return best


def open_study(settings: Settings, study_name: str | None) -> optuna.Study:
    """Create or resume the study in its storage (``mlruns/optuna.db`` by default)."""
    storage = settings.tune.storage
    if storage.startswith("sqlite:///"):
        Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return make_study(study_name or settings.tune.study, storage, settings.model.seed)


def optimise(study: optuna.Study, objective, trials: int, console: Console) -> None:
    """``trials`` more trials, with a progress bar showing the best value so far."""
    columns = (
        TextColumn("tune"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[best]}"),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("tune", total=trials, best="")

        def advance(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            best = _best_value(study)
            progress.update(task, advance=1, best=f"best AP {best:.4f}" if best is not None else "")

        study.optimize(objective, n_trials=trials, callbacks=[advance])


def _best_value(study: optuna.Study) -> float | None:
    try:
        return study.best_value
    except ValueError:
        return None


def save_best(study: optuna.Study, path: Path) -> dict:
    """Write the best trial's parameters atomically; return what was written."""
    payload = {
        "study": study.study_name,
        "best_value": study.best_value,
        "best_trial": study.best_trial.number,
        "n_trials": len(study.trials),
        "params": study.best_params,
    }
    write_json(payload, path)
    return payload
