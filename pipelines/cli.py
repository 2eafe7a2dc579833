"""The ``beltcast`` command line: thin, one verb per job, every verb with ``--help``."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from features.errors import BeltcastError, Terminated, ending_run
from pipelines.config import Settings, load_settings
from pipelines.terminal import printable

_ended_with: list[int] = []  # the status of the ``beltcast`` command's job, once it has ended


def _exit_after_exit_handlers() -> None:
    """The last exit handler of a ``beltcast`` process (registered when this module is imported,
    before MLflow, Spark or logging register theirs): once the job has ended with a status and
    the other exit handlers have run, the process ends with the job's status, flushing what it
    printed. Python's own shutdown after the exit handlers (its collection of garbage and
    modules, a second or more with Spark and MLflow loaded) would run with SIGTERM's default
    action back, a finished job ending 143; blocking SIGTERM instead would not hold for a signal
    the kernel gives another thread (py4j's, MLflow's). An exit handler registered before this
    module was imported (by a program that calls :func:`main`) does not run."""
    if _ended_with:
        _flush_output()
        os._exit(_ended_with[-1])


atexit.register(_exit_after_exit_handlers)

app = typer.Typer(
    help="Forecast which Chinese counties become e-commerce industrial belts, and their mode.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


data_app = typer.Typer(help="Raw data: sync and verify.", no_args_is_help=True)
features_app = typer.Typer(help="County indicators: master, panel.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")

LOG_WIDTH = 160
console = Console()  # what a job reports, on stdout
errors = Console(stderr=True)  # why a job failed, on stderr
for _stream in (console, errors):
    if not _stream.is_terminal:  # a log or a pipe
        if "COLUMNS" not in os.environ:
            _stream.width = LOG_WIDTH  # rich's 80 columns cut the tables' cells to "20…"
        _stream.soft_wrap = True  # a message stays on one line (tables keep the width)
        # MLflow's artifact downloads draw a progress bar, which in a log is one line of redraws
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# a verb's stdout is its own report: MLflow prints a "View run ... at http://..." link per run
# (two per tune trial) with a tracking server; the run ids are in the report, the links in the UI
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", metavar="FILE.toml", help="TOML config file; defaults apply to what it omits."),
]


def _within(low: int, high: int | None = None):
    """A callback refusing an integer option outside ``low``..``high``, naming what was given."""

    def check(value: int | None) -> int | None:
        if value is not None and (value < low or (high is not None and value > high)):
            expected = f"at least {low}" if high is None else f"within {low}..{high}"
            raise typer.BadParameter(f"must be {expected}; got {value}")
        return value

    return check


def _file_path(value: str | None) -> Path | None:
    """An ``--out`` value as a path, refused when it names a folder (``reports/``): a path drops
    the trailing slash, and the job would write a file of the folder's name."""
    if value is not None and value.endswith(("/", os.sep)):
        raise typer.BadParameter(f"must be a file path, not a folder; got {value!r}")
    return None if value is None else Path(value)


def _file_of(*suffixes: str):
    """An ``--out`` callback: a file path (:func:`_file_path`) ending in one of ``suffixes``."""

    def check(value: str | None) -> Path | None:
        path = _file_path(value)
        if path is not None and path.suffix.lower() not in suffixes:
            raise typer.BadParameter(f"must be a {' or '.join(suffixes)} file path; got {value!r}")
        return path

    return check


def _period(value: str | None) -> str | None:
    """An ``--as-of`` value, refused unless it is a year (``2020``) or a quarter (``2025Q3``)."""
    from features.periods import PeriodError, parse_period

    if value is not None:
        try:
            parse_period(value)
        except PeriodError:
            raise typer.BadParameter(
                f"must be a year like 2020 or a quarter like 2025Q3, of a year from 1000 to 3999; got {value!r}"
            ) from None
    return value


AsOfOption = Annotated[
    str | None,
    typer.Option(callback=_period, metavar="YEAR|QUARTER", help="As-of period (2020, or 2025Q3); default the newest."),
]


def _one_of(*choices: str):
    """A callback refusing a value not among ``choices``, naming them and what was given."""

    def check(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    return check


def _settings(config: Path | None) -> Settings:
    return load_settings(config)


@contextmanager
def _reported() -> Iterator[None]:
    """Run a verb's job; a failure the job names (:class:`BeltcastError`), or one of the MLflow
    store it could not foresee (a race with another job, a store on a server that went away), is
    one line ``error: ...`` on stderr and exit status 1."""
    try:
        yield
    except BeltcastError as err:
        _fail(str(err))
    except Exception as err:
        if not _from_mlflow(err):
            raise
        from pipelines.tracking import lost_server

        lines = str(err).strip().splitlines() or [type(err).__name__]
        _fail(lost_server(err) or f"MLflow: {type(err).__name__}: {lines[0][:500]}")


def _from_mlflow(err: Exception) -> bool:
    """Whether ``err`` is MLflow's own exception (told without importing mlflow, which takes
    seconds: ``--help`` does not need it)."""
    return any(kind.__module__.split(".")[0] == "mlflow" for kind in type(err).__mro__)


def _fail(message: str) -> NoReturn:
    errors.print(f"[red]error:[/red] {printable(message)}", highlight=False)  # "[tune]" is text, not markup
    raise typer.Exit(code=1)


@data_app.command("sync")
def data_sync(
    config: ConfigOption = None,
    mirror: Annotated[
        Path | None,
        typer.Option(help="Copy from this mirror folder instead of downloading from upstream."),
    ] = None,
) -> None:
    """Copy or download every raw file of the manifest into the cache, sha256-verified."""
    from pipelines import sync

    with _reported():
        sync.run(_settings(config), mirror, console)


@features_app.command("master")
def features_master(config: ConfigOption = None) -> None:
    """Build the county master (units per year, crosswalk to the target vintage); summarise it."""
    from pipelines import master

    with _reported():
        master.run(_settings(config), console)


@features_app.command("build")
def features_build(config: ConfigOption = None) -> None:
    """Build the point-in-time county panel and print its data-quality summary."""
    from pipelines import build

    with _reported():
        build.run(_settings(config), console)


@app.command("backtest")
def backtest(
    config: ConfigOption = None,
    out: Annotated[
        str | None,
        typer.Option(
            callback=_file_of(".json"),
            metavar="FILE.json",
            help="A .json path of the results; default backtest.json in the folder outputs.dir (default outputs/).",
        ),
    ] = None,
    nested_trials: Annotated[
        int | None,
        typer.Option(
            callback=_within(1),
            help="Tune LightGBM anew inside each province fold with this many trials (at least 1), so that the"
            " province hold-out is independent of the tuning (minutes per fold).",
        ),
    ] = None,
) -> None:
    """Rolling-origin backtest of every model and baseline: JSON, table, PR and calibration PNGs."""
    from pipelines import backtest as job

    with _reported():
        job.run(_settings(config), out, console, nested_trials)


@app.command("tune")
def tune(
    config: ConfigOption = None,
    trials: Annotated[
        int | None,
        typer.Option(
            callback=_within(0),
            help="Trials to add to the study; 0 saves its best again without adding any (after other workers).",
        ),
    ] = None,
    study: Annotated[str | None, typer.Option(help="Study name (resumed if it exists).")] = None,
) -> None:
    """Optuna study of the LightGBM emergence model on inner folds; saves the best parameters."""
    from pipelines import tune as job

    with _reported():
        job.run(_settings(config), trials, study, console)


@app.command("train")
def train(config: ConfigOption = None) -> None:
    """Fit the final models, log an MLflow run, register a version and alias it challenger."""
    from pipelines import train as job

    with _reported():
        job.run(_settings(config), console)


@app.command("promote")
def promote(
    config: ConfigOption = None,
    force: Annotated[bool, typer.Option(help="Promote even if the gate says no.")] = False,
    reason: Annotated[
        str | None, typer.Option(help="Why the gate is overridden (with --force), or why --rollback.")
    ] = None,
    rollback: Annotated[
        str | None,
        typer.Option(help="Point champion back at this registered version, as trained (no gate, no refit)."),
    ] = None,
) -> None:
    """Compare challenger with champion on the same backtest; move champion unless worse beyond the tolerances."""
    from pipelines import promote as job

    with _reported():
        if rollback is not None:
            if force:
                raise job.PromotionError("--rollback takes no --force: it moves champion without the gate")
            job.rollback(_settings(config), rollback, reason, console)
        else:
            job.run(_settings(config), force, reason, console)


@app.command("score")
def score(
    config: ConfigOption = None,
    as_of: AsOfOption = None,
    out: Annotated[
        str | None,
        typer.Option(
            callback=_file_of(".csv"),
            metavar="FILE.csv",
            help="A .csv path (a .parquet of the same name is written beside it); default"
            " scores_<period>.csv in the folder outputs.dir (default outputs/).",
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            callback=_one_of("pandas", "spark"),
            metavar="pandas|spark",
            help="pandas, or spark (mlflow.pyfunc.spark_udf).",
        ),
    ] = "pandas",
) -> None:
    """Score every county with the champion; ranked CSV and Parquet."""
    from pipelines import score as job

    with _reported():
        job.run(_settings(config), as_of, out, engine, console)


@app.command("serve")
def serve(
    config: ConfigOption = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; keep 127.0.0.1 unless it must be reachable.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(callback=_within(1, 65535), help="Port, 1..65535.")] = 5000,
    workers: Annotated[
        int, typer.Option(callback=_within(1), help="Server worker processes (at least 1), each with its own model.")
    ] = 1,
    timeout: Annotated[
        int | None,
        typer.Option(
            callback=_within(1),
            help="Seconds a request may take before it is answered 504 (default: MLflow's, 60, or"
            " MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT).",
        ),
    ] = None,
    allowed_hosts: Annotated[
        str | None,
        typer.Option(
            help="Host names requests may address (the Host header), comma-separated; * for any. Default: the"
            " loopback names for a server on 127.0.0.1, any host for a server bound elsewhere.",
        ),
    ] = None,
) -> None:
    """Serve models:/county-belt@champion over REST (the MLflow scoring server)."""
    from pipelines import serve as job

    if not host.strip():
        raise typer.BadParameter(
            "must be an address or host name; got '' (0.0.0.0 listens on every IPv4 interface)", param_hint="--host"
        )
    with _reported():
        job.run(_settings(config), host, port, workers, console, timeout, allowed_hosts)  # becomes the server


@app.command("report")
def report(
    config: ConfigOption = None,
    as_of: AsOfOption = None,
    out: Annotated[
        str | None,
        typer.Option(
            callback=_file_of(".html", ".htm"),
            metavar="FILE.html",
            help="An .html path; default report_<period>.html in the folder outputs.dir (default outputs/).",
        ),
    ] = None,
) -> None:
    """Self-contained HTML report: top candidates, county map, curves, drivers, lineage."""
    from pipelines import report as job

    with _reported():
        job.run(_settings(config), as_of, out, console)


@app.command("retrain")
def retrain(
    period: Annotated[str, typer.Option(help="The period to retrain for, e.g. 2025Q3.")],
    config: ConfigOption = None,
    metrics: Annotated[Path | None, typer.Option(help="Platform metrics file (CSV or Parquet).")] = None,
) -> None:
    """The quarterly flow: sync, build, tune, train, promote, score, report (safe to re-run)."""
    from pipelines import retrain as job

    with _reported():
        job.run(_settings(config), period, metrics, console)


_received: set[str] = set()  # "SIGTERM" once it has come


def _terminate(signum, frame) -> None:
    """SIGTERM: :class:`Terminated` where the job is. While a failing job's MLflow run is being
    ended (a scheduler or supervisor sending it again) it is ignored: the job is ending already,
    and the run must still be marked FAILED saying why."""
    _received.add("SIGTERM")
    if ending_run():
        return
    raise Terminated


def main(argv: list[str] | None = None) -> NoReturn:
    """The ``beltcast`` command. A usage error (an unknown option, a missing or bad option value)
    is one line ``error: ...`` on stderr (naming the command where the parser knows it) with
    status 2, as a job's error is one line with status 1: a scheduled job's log holds the reason,
    not a usage box. Ctrl+C is ``error: interrupted``, status 130; SIGTERM is handled the same way
    (the job's run ends ``FAILED`` saying so), ``error: terminated (SIGTERM)``, status 143.

    Once the job has ended, a SIGTERM ends the command's process at once with the job's status,
    and the process ends once its exit handlers have run (:func:`_exit_after_exit_handlers`):
    Python restores SIGTERM's default action for the rest of its shutdown, which had ended a
    finished job with 143 while its run said FINISHED. Called with ``argv`` (in another program's
    process), the process's previous SIGTERM handler is put back instead, and it shuts down as
    that program does."""
    _received.clear()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main_thread else None
    if main_thread:
        signal.signal(signal.SIGTERM, _terminate)
    status, ended = 1, False
    try:
        status, ended = _status(argv), True
    except SystemExit as exit:  # a usage error
        status, ended = exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 1, True
        raise
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, _exit_with(status) if argv is None else previous)
        if main_thread and argv is None and ended:  # not an exception escaping: Python reports it
            _ended_with.append(status)
    raise SystemExit(status)


def _status(argv: list[str] | None) -> int:
    """Run the command; its exit status."""
    try:
        code = app(args=argv, prog_name="beltcast", standalone_mode=False)
    except Terminated:  # outside the command's body (typer turns one inside it into 130)
        code = 130
    except Exception as err:
        if _kind_named(err, "Abort"):
            code = 130 if "SIGTERM" in _received else _fail("aborted")
        elif not _kind_named(err, "ClickException"):  # click's, or the copy of it typer carries
            raise
        else:
            _usage_error(err, argv)
    if code == 130 and "SIGTERM" in _received:
        errors.print("[red]error:[/red] terminated (SIGTERM)", highlight=False)
        return 143
    if code == 130:  # Ctrl+C: typer turns KeyboardInterrupt into this exit code
        errors.print("[red]error:[/red] interrupted", highlight=False)
    return code if isinstance(code, int) else 0


def _exit_with(status: int):
    """A SIGTERM handler for a process whose job has ended: flush what it printed, exit with ``status``."""

    def exit_now(signum, frame) -> None:
        _flush_output()
        os._exit(status)

    return exit_now


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _usage_error(err: Exception, argv: list[str] | None) -> NoReturn:
    """A usage error as one line on stderr, with click's exit status (a group's help, once)."""
    context = getattr(err, "ctx", None)
    if _kind_named(err, "NoArgsIsHelpError"):  # a group called without a command: its help, once
        if err.format_message():  # click's error carries the help; typer's printed it already
            print(err.format_message())
        raise SystemExit(err.exit_code) from None
    words = sys.argv[1:] if argv is None else argv
    where = f"{_command_path(context, words)}: "
    message = err.format_message()
    given = _given(getattr(err, "param", None), words)
    if given is not None and "got " not in message:  # the parser's own conversion does not say what came in
        message += f"; got {given!r}"
    errors.print(f"[red]error:[/red] {printable(where + message)}", highlight=False)
    raise SystemExit(err.exit_code) from None


def _given(param, argv: list[str]) -> str | None:
    """The value ``argv`` gave the option ``param`` (its last), or None."""
    names = getattr(param, "opts", None) or []
    given = None
    for i, word in enumerate(argv):
        for name in names:
            if word == name and i + 1 < len(argv):
                given = argv[i + 1]
            elif word.startswith(f"{name}="):
                given = word[len(name) + 1 :]
    return given


def _command_path(context, argv: list[str]) -> str:
    """The command an error belongs to: the parser's context, or when the parser gave none (an
    option missing its value) the commands named at the start of ``argv``."""
    if context is not None:
        return context.command_path
    words, group = ["beltcast"], app
    for word in argv:
        found = next((g.typer_instance for g in group.registered_groups if g.name == word), None)
        if found is not None:
            words.append(word)
            group = found
            continue
        if any((c.name or c.callback.__name__.replace("_", "-")) == word for c in group.registered_commands):
            words.append(word)
        break
    return " ".join(words)


def _kind_named(err: Exception, name: str) -> bool:
    return any(kind.__name__ == name for kind in type(err).__mro__)


if __name__ == "__main__":  # pragma: no cover
    main()
