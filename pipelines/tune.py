"""``beltcast tune``: an Optuna study on the backtest's inner folds; the best parameters are saved
where ``train`` and ``backtest`` find them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import mlflow
import optuna
import pandas as pd
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from sqlalchemy.exc import SQLAlchemyError

from features.errors import BeltcastError
from features.io import writable_target, write_atomic, write_json
from models.datasets import emergence_transitions
from models.estimators import LGBMEmergence
from models.tuning import (
    CALIBRATION_FOLDS,
    best_trial,
    calibration_scores,
    completed,
    incumbent,
    make_objective,
    make_study,
    scored_alike,
    search_space,
    within,
)
from pipelines.backtest import check_folds, fold_spec, is_platform, load_panel, params_digest
from pipelines.config import Settings, TuneSettings
from pipelines.terminal import printable
from pipelines.tracking import (
    DATABASE_EXAMPLE,
    TrackingError,
    connect_once,
    file_lock,
    first_line,
    frame_hash,
    journal_file,
    lock_beside,
    process_gone,
    process_tags,
    sqlite_file,
    start_run,
    store_problem,
    study_lock,
    use_tracking,
    with_tables_race,
    without_password,
)

NEW_STUDY = "beltcast tune --study NAME, make run STUDY=NAME, or study = NAME under [tune] in the --config file"


class TuneError(BeltcastError, ValueError):
    """The study cannot be continued with these settings."""


FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)  # a failed or killed trial runs again


def run(
    settings: Settings, trials: int | None, study_name: str | None, console: Console, period: str | None = None
) -> dict:
    """Run (or resume) the study, save and print the best parameters.

    Every trial is tagged with what its score was computed against (:func:`scored_on`, the
    ``data`` attribute), and the best is chosen among the trials scored on this panel and these
    settings. With ``period`` (the quarterly retrain), trials are tagged with it too and only the
    trials still missing for that period on this data are run (completed or pruned ones count; a
    failed or killed one runs again): re-running a period adds none, re-running it on a corrected
    file or another belt rule runs its trials again. The first trial of a new period (or data)
    scores the previous period's best parameters again on the new panel, and the best is chosen
    among the period's own trials on this data (trials of other periods were scored on other data)."""
    panel = load_panel(settings)
    check_folds(panel, settings, modes=False)  # tune fits no mode model
    data = emergence_transitions(panel)
    spec = fold_spec(settings)
    objective = make_objective(
        data.X, data.y, data.periods, data.groups, spec,
        settings.tune.inner_folds, settings.model.seed, n_seeds=settings.tune.seeds,
    )  # fmt: skip
    writable_target(settings.model.params_file, "model.params_file")  # before the trials, not after them
    use_tracking(settings)
    features = list(data.X.columns)
    # a retrain's top-up of its period's trials is counted and run by one process at a time
    with study_lock(settings) if period is not None else contextlib.nullcontext():
        wanted = settings.tune.trials if trials is None else trials
        study = open_study(settings, study_name, features, existing=wanted == 0 and period is None)
        same_objective(study, settings.tune.seeds, features)
        closed = close_dead_trials(study)
        if closed:
            console.print(
                printable(
                    f"tune: trial(s) {closed} of study {study.study_name!r}, left running by a tune of this machine"
                    " that is gone, are marked failed"
                )
            )
        fingerprint = record_scored_on(study, scored_on(settings, panel))
        not_reused(study, period, fingerprint, console)
        finished = [
            t for t in study.get_trials(deepcopy=False, states=FINISHED) if scored_alike(t) == (period, fingerprint)
        ]
        done = len(finished) if period is not None else 0
        if period is not None and wanted > done and not any(t.user_attrs.get("incumbent") for t in finished):
            enqueue_incumbent(study, period, console)
        with start_run("tune", nested=mlflow.active_run() is not None):
            mlflow.set_tags(
                {"optuna.study": study.study_name, "optuna.data": fingerprint, "optuna.period": period or ""}
            )
            optimise(study, tagged(objective, period, fingerprint), max(wanted - done, 0), console, period, fingerprint)
            # workers of one study that end together save in turn, each the study's best as it is then
            with file_lock(lock_beside(settings.model.params_file), of=settings.model.params_file):
                trial = best_trial(study, period, fingerprint)
                if trial is None:
                    saved = settings.model.params_file
                    kept = f"stay as saved in {saved}" if saved.is_file() else "stay"
                    among = f" for {period}" if period is not None else ""
                    console.print(
                        printable(
                            f"tune: study {study.study_name!r} has no completed trial{among} scored on this panel and"
                            f" these settings; the parameters {kept}"
                        )
                    )
                    return {}
                briers = calibration_of(study, trial, fingerprint, lambda: calibration_scores(
                    trial.params, data.X, data.y, data.periods, data.groups, spec,
                    settings.tune.inner_folds, settings.model.seed,
                ))  # fmt: skip
                storage = without_password(settings.tune.storage)
                kept = keep_other_study(settings.model.params_file, study.study_name, storage)
                best = save_best(study, trial, settings.model.params_file, briers, period, storage)
                log_best(best, settings.model.params_file)
    among = f"of the trials for {period} " if period is not None else ""
    console.print(
        printable(
            f"tune: study {study.study_name!r}, {len(study.trials)} trial(s) in all; best inner-fold AP {among}"
            f"{trial.value:.4f} (trial {trial.number}, by seed: {best['best_ap_by_seed']}); calibration cross-fitted"
            f" over {best['params']['calibration_folds']} folds (inner-fold Brier {_briers(briers)})"
            f" -> {settings.model.params_file}"
        )
    )
    if kept is not None:
        other, copy = kept
        console.print(
            printable(
                f"tune: these replace the parameters of study {other} that `train` would have used; those are"
                f" kept in {copy} (copy it over {settings.model.params_file} to train with them again)"
            )
        )
    return best


def calibration_of(
    study: optuna.Study, trial: optuna.trial.FrozenTrial, fingerprint: str, compute: Callable[[], dict[int, float]]
) -> dict[int, float]:
    """The inner-fold Brier score of each calibration fold count for the best ``trial``, computed
    once per trial and data (``compute``) and kept as the study's attribute
    ``calibration:<trial>:<fingerprint>:<candidates>``: a run that adds no better trial (a re-run period, a
    finished study run again) reuses it instead of fitting the calibrated models again."""
    key = f"calibration:{trial.number}:{fingerprint}:{'-'.join(map(str, CALIBRATION_FOLDS))}"  # and the candidates
    kept = study.user_attrs.get(key)
    if isinstance(kept, dict) and kept:
        return {int(k): float(v) for k, v in kept.items()}
    briers = compute()
    study.set_user_attr(key, {str(k): v for k, v in briers.items()})
    return briers


def log_best(best: dict, path: Path) -> None:
    """The chosen parameters on the ``tune`` run: as ``best.<name>`` parameters, the best trial's
    inner-fold AP and each calibration fold count's inner-fold Brier as metrics, and the saved file."""
    mlflow.log_params({f"best.{name}": value for name, value in best["params"].items()})
    mlflow.log_metrics(
        {
            "best_inner_fold_average_precision": best["best_value"],
            "best_trial": best["best_trial"],
            "trials_in_study": best["n_trials"],
            **{f"calibration_inner_brier_{k}_folds": v for k, v in best["calibration_inner_brier"].items()},
        }
    )
    mlflow.log_artifact(str(path), "tune")


def keep_other_study(path: Path, study: str, storage: str) -> tuple[str, Path] | None:
    """When ``path`` holds the parameters of another study than ``study`` in ``storage`` (another
    name, or the same name in another study store: a mistyped journal path starts a new study),
    copy it beside itself as ``NAME.<other study>.json`` (``NAME.<other study>.<store hash>.json``
    for the same name) before it is replaced; the other study, as shown, and the copy. Files
    from before the store was recorded are compared by name only."""
    saved = saved_study(path)
    if saved is None:
        return None
    other, other_storage = saved
    same_storage = other_storage is None or other_storage == storage
    if other == study and same_storage:
        return None
    tag = re.sub(r"[^A-Za-z0-9_.-]", "_", other)
    if other == study:
        tag += "." + hashlib.sha256(str(other_storage).encode()).hexdigest()[:8]
    copy = path.with_name(f"{path.stem}.{tag}{path.suffix}")
    write_atomic(copy, lambda tmp: shutil.copyfile(path, tmp))
    shown = repr(other) if same_storage else f"{other!r} in {other_storage}"
    return shown, copy


def saved_study(path: Path) -> tuple[str, str | None] | None:
    """The study whose best parameters ``path`` holds and its store, if it can be read."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        return (saved["study"], saved.get("storage")) if saved.get("study") else None
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None


def _briers(briers: dict[int, float]) -> str:
    return ", ".join(f"{k} folds {v:.5f}" for k, v in briers.items())


def tagged(objective, period: str | None, fingerprint: str):
    """The objective, tagging each trial with the period it was run for, the ``data`` it is
    scored on (a fingerprint from :func:`record_scored_on`) and the machine and process running it."""

    def run_trial(trial: optuna.Trial) -> float:
        if period is not None:
            trial.set_user_attr("period", period)
        trial.set_user_attr("data", fingerprint)
        for key, value in process_tags().items():  # whose trial it is, for close_dead_trials
            trial.set_user_attr(key, value)
        return objective(trial)

    return run_trial


def close_dead_trials(study: optuna.Study) -> list[int]:
    """Mark ``FAIL`` the trials still ``RUNNING`` whose process, on this machine, is gone: a tune
    killed by SIGKILL (or the out-of-memory killer) leaves its trial running in the store for
    ever. Trials of live processes, of other machines and from before trials named their process
    are left as they are. Returns the numbers of the trials marked."""
    closed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if process_gone(trial.user_attrs):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            closed.append(trial.number)
    return closed


def log_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """One nested MLflow run per trial: its parameters, state and inner-fold AP."""
    with start_run(f"trial-{trial.number}", nested=True):
        mlflow.log_params(trial.params)
        mlflow.set_tags({"optuna.study": study.study_name, "optuna.state": trial.state.name, **trial.user_attrs})
        if trial.value is not None:
            mlflow.log_metric("inner_fold_average_precision", trial.value)


PLATFORM_STUDY = "platform"


def default_study(settings: Settings, features: list[str] | None = None) -> str:
    """``tune.study``, unless it is the default name and the panel is the platform's: then
    ``platform``, whose trials were scored on the platform panel's features (the public study's
    cannot be resumed on them), or the default study itself if it was scored on ``features``
    already (a store whose retrains have run in it)."""
    study = settings.tune.study
    if not is_platform(settings) or study != TuneSettings.model_fields["study"].default:
        return study
    if features is not None and scored_features(settings.tune.storage, study) == sorted(features):
        return study
    return PLATFORM_STUDY


def study_storage(storage: str) -> str | optuna.storages.BaseStorage:
    """What Optuna opens for ``tune.storage``: a database URL as it is, or a journal file
    (``journal:PATH``, made with its folder if new), which workers on a shared file system can use
    without a database server."""
    journal = journal_file(storage)
    if journal is None:
        return storage
    journal.parent.mkdir(parents=True, exist_ok=True)
    try:
        check_journal(journal)  # before Optuna reads it, and appends to it
        return JournalStorage(JournalFileBackend(str(journal)))  # reads the file's logs
    except ValueError as err:  # its lines cannot be read as the journal's JSON
        raise TrackingError(
            f"the study store tune.storage = {storage!r} is not an Optuna journal file ({type(err).__name__}:"
            f" {first_line(err)}); expected a journal that beltcast tune wrote, or the path of a new one"
        ) from err


def check_journal(journal: Path) -> None:
    """A :class:`ValueError` unless every line of ``journal`` (if it exists) is one of Optuna's
    journal records, a JSON object with an ``op_code``. A last line without its newline is a record
    another worker is writing, once the file holds one whole record. Optuna itself skips a bad
    last line and appends its own records to the file, so a file of notes would be written into."""
    if not journal.exists():
        return
    with open(journal, "rb") as handle:
        lines = handle.read().split(b"\n")
    whole, partial = lines[:-1], lines[-1]  # the text after the last newline: b"" for a whole file
    for number, line in enumerate(whole, start=1):
        record = json.loads(line.decode("utf-8"))  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        if not isinstance(record, dict) or "op_code" not in record:
            raise ValueError(f"line {number} is {line[:60]!r}, not a record with an op_code")
    if partial and not whole:
        raise ValueError(f"its only line is {partial[:60]!r}, not a whole record")
    if partial:  # a writer holds Optuna's lock while it appends: under the lock, a record left unfinished
        lock = JournalFileSymlinkLock(str(journal))
        lock.acquire()
        try:
            with open(journal, "rb") as handle:
                content = handle.read()
        finally:
            lock.release()
        if not content.endswith(b"\n"):
            line, keep = content.count(b"\n") + 1, content.rfind(b"\n") + 1
            raise ValueError(
                f"line {line} is an unfinished record (a worker stopped while writing it), which Optuna would"
                f" write after; remove it: truncate -s {keep} {journal}"
            )


def scored_features(storage: str, study: str) -> list[str] | None:
    """The features ``study`` in ``storage`` records, or None when it does not exist or records none."""
    try:
        return optuna.load_study(study_name=study, storage=study_storage(storage)).user_attrs.get("features")
    except KeyError:  # no such study
        return None


class InterruptedTrials(logging.Filter):
    """Drops Optuna's report of a trial stopped by Ctrl+C (its traceback, then ``Trial N failed
    with value None.``): the job says it was interrupted in one line. Other failures pass."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupted: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        words = record.getMessage().split()
        number = words[1] if len(words) > 1 and words[0] == "Trial" else None
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            self.interrupted.add(number)
            return False
        if number in self.interrupted and "failed with value" in record.getMessage():
            self.interrupted.discard(number)  # the report's second line; numbers start again in a new study
            return False
        return True


OPTUNA_TRIAL_LOGGER = "optuna.study._optimize"  # where Optuna reports a failed trial


def quiet_interrupts() -> None:
    """Install :class:`InterruptedTrials` on Optuna's trial logger, once."""
    logger = logging.getLogger(OPTUNA_TRIAL_LOGGER)
    if not any(isinstance(f, InterruptedTrials) for f in logger.filters):
        logger.addFilter(InterruptedTrials())


def open_study(
    settings: Settings, study_name: str | None, features: list[str] | None = None, existing: bool = False
) -> optuna.Study:
    """Create or resume the study in its storage (``mlruns/optuna.db`` by default); with
    ``existing``, only resume it (a tune of no trial saves a study's best again, and a study that is
    not there, a name mistyped, has none: a :class:`TuneError` naming the studies there)."""
    storage = settings.tune.storage
    database = sqlite_file(storage)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quiet_interrupts()
    try:
        name = study_name or default_study(settings, features)
        connect_once(storage)
        if existing:
            _must_exist(name, storage)
        return with_tables_race(lambda: _make_study(name, storage, database, settings.model.seed), storage, "optuna")
    except (SQLAlchemyError, OSError, ImportError) as err:
        raise TrackingError(
            f"the study store tune.storage = {without_password(storage)!r} cannot be opened"
            f" ({store_problem(err, storage)});"
            " expected a database URL Optuna can use, such as sqlite:///mlruns/optuna.db or"
            f" {DATABASE_EXAMPLE}, or an Optuna journal file, journal:PATH"
        ) from err


def _must_exist(name: str, storage: str) -> None:
    store = sqlite_file(storage) or journal_file(storage)
    names = [] if store is not None and not store.exists() else optuna.get_all_study_names(study_storage(storage))
    if name not in names:
        there = f"the studies there are {', '.join(map(repr, sorted(names)))}" if names else "it has no study yet"
        raise TuneError(
            f"--study must name a study of tune.storage = {without_password(storage)!r} when --trials is 0 (which"
            f" saves a study's best again); got {name!r}, and {there}"
        )


def _make_study(name: str, storage: str, database: Path | None, seed: int) -> optuna.Study:
    with file_lock(lock_beside(database) if database is not None else None):  # workers creating its tables
        return make_study(name, study_storage(storage), seed)


def same_objective(study: optuna.Study, seeds: int, features: list[str]) -> None:
    """A study's trials are comparable only if all were scored over the same number of seeds and on
    the same feature columns: a new study records both, a resumed one must match them
    (:func:`objective_problem`)."""
    trials = len(study.trials)
    problem = objective_problem(study.study_name, study.user_attrs, trials, seeds, features)
    if problem is not None:
        raise TuneError(problem)
    for key, value in (("seeds", seeds), ("features", sorted(features))):
        if not trials and key not in study.user_attrs:  # a new study: what its trials are scored on
            study.set_user_attr(key, value)


def objective_problem(
    study: str, attributes: dict, trials: int, seeds: int, features: list[str] | None, panel: str = "the panel"
) -> str | None:
    """Why trials over ``seeds`` seeds on the panel's ``features`` (None: not known yet) cannot join
    ``study``, whose attributes and number of trials are given, or None. Studies from before
    seeds were recorded used one; a study with trials that does not record its features cannot be
    resumed, since the panel's features may have changed since."""
    recorded = attributes.get("seeds", 1 if trials else None)
    if recorded is not None and recorded != seeds:
        return (
            f"tune.seeds must match study {study!r}, whose trials were scored over "
            f"{recorded} seed(s); got {seeds}. Start a new study ({NEW_STUDY}) or set tune.seeds = {recorded}"
        )
    scored_on = attributes.get("features")
    if scored_on is None and trials:
        has = "" if features is None else f", and the panel has {len(features)}"
        return (
            f"study {study!r} does not record the features its {trials} trial(s) were scored on{has};"
            f" start a new study ({NEW_STUDY})"
        )
    if scored_on is not None and features is not None and scored_on != sorted(features):
        return features_mismatch(study, scored_on, sorted(features), panel)
    return None


def features_mismatch(study: str, scored_on: list[str], columns: list[str], panel: str = "the panel") -> str:
    """The error of a panel (``panel`` says which) whose feature ``columns`` are not those
    ``study`` was scored on: what it lacks and what it adds, whichever there are."""
    missing, new = sorted(set(scored_on) - set(columns)), sorted(set(columns) - set(scored_on))
    differences = [
        f"{word} {len(names)} {_first(names)}" for word, names in (("lacks", missing), ("adds", new)) if names
    ]
    return (
        f"panel features must match those study {study!r} was scored on; {panel} {' and '.join(differences)}."
        f" Start a new study ({NEW_STUDY})"
    )


def check_platform_study(settings: Settings, platform_features: list[str]) -> None:
    """Before a retrain builds its panel, what :func:`same_objective` would refuse once it is
    rebuilt (:func:`objective_problem`), in the study its tune would resume
    (:func:`default_study`): platform features (``platform_<metric>``) other than the study's,
    a study with trials that records no features, ``tune.seeds`` other than the study's. A store
    or study that does not exist yet is not created; the public features are checked by tune, as
    they change only with the code."""
    storage = settings.tune.storage
    store = sqlite_file(storage) or journal_file(storage)
    if store is not None and not store.exists():
        return
    name, wanted = settings.tune.study, sorted(platform_features)
    if is_platform(settings) and name == TuneSettings.model_fields["study"].default:
        default = _recorded(storage, name)  # resumed by tune when it was scored on these features
        if default is None or _platform_part(default[0].get("features")) != wanted:
            name = PLATFORM_STUDY
    if (recorded := _recorded(storage, name)) is None:
        return
    attributes, trials = recorded
    scored_on = attributes.get("features")  # the panel will have its public features, and these
    features = None if scored_on is None else [f for f in scored_on if not f.startswith("platform_")] + wanted
    source = settings.platform.metrics_file
    panel = "the panel" if source is None else f"the panel made from platform.metrics_file = {str(source)!r}"
    problem = objective_problem(name, attributes, trials, settings.tune.seeds, features, panel)
    if problem is not None:
        raise TuneError(problem)


def _platform_part(features: list[str] | None) -> list[str] | None:
    return None if features is None else sorted(f for f in features if f.startswith("platform_"))


def _recorded(storage: str, study: str) -> tuple[dict, int] | None:
    """The attributes ``study`` records and its number of trials, or None when the store has no
    such study or cannot be read (tune then says why)."""
    try:
        found = optuna.load_study(study_name=study, storage=study_storage(storage))
    except KeyError:  # no such study
        return None
    except (SQLAlchemyError, OSError, ImportError, TrackingError):  # e.g. no driver for the database
        return None
    return dict(found.user_attrs), len(found.get_trials(deepcopy=False))


def scored_on(settings: Settings, panel: pd.DataFrame) -> dict:
    """What a trial's inner-fold AP is computed against: the panel's content, the belt rule and
    horizon that labelled it, ``model.seed``, the inner folds and seeds of ``[tune]`` and the fold
    spec. A trial scored against anything else has a value that is not comparable."""
    rule = settings.platform if is_platform(settings) else settings.labels
    return {
        "panel": frame_hash(panel),
        "rule": {"conditions": [c.model_dump() for c in rule.conditions], "min_met": rule.min_met},
        "horizon": rule.horizon,
        "seed": settings.model.seed,
        "inner_folds": settings.tune.inner_folds,
        "seeds": settings.tune.seeds,
        "fold_spec": fold_spec(settings).to_dict(),
        "model": fixed_model_settings(),
    }


def fixed_model_settings() -> dict:
    """The emergence model's settings the search leaves at their default: a trial scored with
    other ones fitted another model (before ``monotone_exposure``, the trees were unconstrained)."""
    return {"monotone_exposure": LGBMEmergence().monotone_exposure}


SCORED_ON = {"panel": "the panel", "rule": "the belt rule", "horizon": "the horizon", "seed": "model.seed",
             "inner_folds": "tune.inner_folds", "seeds": "tune.seeds", "fold_spec": "the fold spec",
             "model": "the model's fixed settings"}  # fmt: skip


def record_scored_on(study: optuna.Study, scored: dict) -> str:
    """The fingerprint of ``scored`` that tags the trials (their ``data`` attribute); the study
    keeps what it stands for as its attribute ``data:<fingerprint>``."""
    fingerprint = hashlib.sha256(json.dumps(scored, sort_keys=True).encode()).hexdigest()[:16]
    if f"data:{fingerprint}" not in study.user_attrs:
        study.set_user_attr(f"data:{fingerprint}", scored)
    return fingerprint


def not_reused(study: optuna.Study, period: str | None, fingerprint: str, console: Console) -> None:
    """Say how many finished trials (of ``period`` when one is given) were scored on other data or
    settings than ``fingerprint``, and what changed since the newest of them: they are not reused."""
    others = [
        t
        for t in study.get_trials(deepcopy=False, states=FINISHED)
        if (period is None or t.user_attrs.get("period") == period) and t.user_attrs.get("data") != fingerprint
    ]
    if not others:
        return
    before = study.user_attrs.get(f"data:{others[-1].user_attrs.get('data')}")
    now = study.user_attrs[f"data:{fingerprint}"]
    changed = (
        "not recorded by those trials"
        if before is None
        else ", ".join(name for key, name in SCORED_ON.items() if before.get(key) != now[key]) or "how it is recorded"
    )
    among = f" for {period}" if period is not None else ""
    console.print(
        printable(
            f"tune: {len(others)} trial(s){among} of study {study.study_name!r} were scored on other data or settings"
            f" (changed since the newest: {changed}); they are not reused, the best is chosen among the trials"
            " scored on this panel and these settings"
        )
    )


def _first(names: list[str], k: int = 5) -> str:
    return "[" + ", ".join(names[:k]) + (", ..." if len(names) > k else "") + "]"


def optimise(
    study: optuna.Study,
    objective,
    trials: int,
    console: Console,
    period: str | None = None,
    fingerprint: str | None = None,
) -> None:
    """``trials`` more trials, with a progress bar showing the best value so far (of ``period``'s
    trials and of those scored on ``fingerprint`` when they are given)."""
    columns = (
        TextColumn("tune"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[best]}"),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("tune", total=trials, best="")

        def advance(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            best = best_trial(study, period, fingerprint)
            progress.update(task, advance=1, best=f"best AP {best.value:.4f}" if best is not None else "")

        study.optimize(objective, n_trials=trials, callbacks=[advance, log_trial])


def enqueue_incumbent(
    study: optuna.Study,
    period: str,
    console: Console | None = None,
    space: Callable[[optuna.Trial], dict] = search_space,
) -> None:
    """Queue the previous period's best parameters as this period's next trial (unless a queued
    trial, left by an interrupted run, is still waiting, or they lie outside the search space)."""
    params = incumbent(study, period)
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    if params is None or waiting:
        return
    params = completed(space, params)
    if not within(space, params):
        if console is not None:
            console.print(
                printable(f"tune: the previous best parameters {params} lie outside the search space; not re-scored")
            )
        return
    study.enqueue_trial(params, user_attrs={"incumbent": True})


def save_best(
    study: optuna.Study,
    trial: optuna.trial.FrozenTrial,
    path: Path,
    calibration_briers: dict[int, float],
    period: str | None = None,
    storage: str | None = None,
) -> dict:
    """Write ``trial``'s parameters, with the calibration folds of the lowest inner-fold Brier
    score, atomically; return what was written."""
    folds = min(calibration_briers, key=calibration_briers.get)
    payload = {
        "study": study.study_name,
        "storage": storage,
        "period": period,
        "data": trial.user_attrs.get("data"),
        "best_value": trial.value,
        "best_trial": trial.number,
        "n_trials": len(study.trials),
        "best_ap_by_seed": trial.user_attrs.get("ap_by_seed"),
        "params": {**trial.params, "calibration_folds": folds},
        "calibration_inner_brier": {str(k): v for k, v in calibration_briers.items()},
    }
    payload["params_sha256"] = params_digest(payload["params"])  # train tells a hand-edited file by it
    write_json(payload, path)
    return payload
