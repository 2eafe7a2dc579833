"""MLflow plumbing shared by the jobs: tracking URI, experiment, lineage tags, registry look-ups.

Nothing here runs at import time; every job calls :func:`use_tracking` with its settings.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import platform
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from importlib import metadata
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import mlflow
import pandas as pd
import requests
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from features.errors import BeltcastError, OutputPathError, Terminated, cause_of, ending_failed_run
from features.io import process_alive
from features.periods import parse_period
from pipelines.config import Settings
from pipelines.manifest import known_sha256, manifest_hash, read_manifest

LIBRARIES = ("lightgbm", "scikit-learn", "pandas", "numpy", "scipy", "mlflow", "optuna", "pyarrow")
CHAMPION, CHALLENGER = "champion", "challenger"
STORE_PROBE = "api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"  # any name: 404 is an answer
HOST_TAG, PID_TAG = "beltcast.host", "beltcast.pid"
STUDY_LOCK = ".study.lock"
REGISTRY_LOCK = ".registry.lock"
SYNTHETIC_TAG = "platform_metrics_synthetic"  # "true" on the runs and versions of a panel of synthetic metrics
LAST_PERIOD_TAG = "panel_last_period"  # a version's newest panel period, as a label ("2025Q3", "2020")
PROBE_SECONDS = 10.0  # a tracking server must answer within this (check_reachable), a database server too
DATABASE_SERVERS = ("postgresql", "mysql", "mssql")  # the stores on a database server that MLflow and Optuna open
TIMEOUT_ARGUMENT = {"psycopg": "connect_timeout", "psycopg2": "connect_timeout", "mysqldb": "connect_timeout",
                    "pymysql": "connect_timeout"}  # fmt: skip
_held_locks: dict[Path, int] = {}  # lock file -> depth of this process's nested holds (file_lock)


class TrackingError(BeltcastError):
    """The MLflow store or a model in it cannot be used."""


def use_tracking(settings: Settings, existing: bool = False) -> MlflowClient:
    """Point MLflow at the configured store and experiment; return a client. Runs left
    ``RUNNING`` by a killed job of this machine are marked ``KILLED`` on the way; a store that
    cannot be opened is a :class:`TrackingError` naming the settings. With ``existing`` (jobs
    that only read models: score, report, serve, promote), a local store must exist already:
    such a job would otherwise leave an empty database behind."""
    uri, name = settings.mlflow.tracking_uri, settings.mlflow.experiment
    database = sqlite_file(uri)
    if existing and database is not None and not database.is_file():
        raise TrackingError(
            f"there is no MLflow store at {database} (mlflow.tracking_uri = {uri!r}); run `beltcast train`"
            " first, or point mlflow.tracking_uri at the store that holds the models"
        )
    check_reachable(uri)
    limit_requests(settings.mlflow.request_retries, settings.mlflow.request_timeout)
    from alembic.util.exc import CommandError  # a migration of MLflow's tables that failed (MLflow's alembic)

    try:
        connect_once(uri)
        return with_tables_race(lambda: _open_store(uri, name, database), uri, "mlflow")
    except (MlflowException, SQLAlchemyError, CommandError, OSError, ImportError) as err:
        raise TrackingError(
            f"the MLflow store mlflow.tracking_uri = {without_password(uri)!r}, mlflow.experiment = {name!r} cannot"
            f" be used ({store_problem(err, uri)}); expected a reachable store (default sqlite:///mlruns/mlflow.db,"
            f" a tracking server http://host:5000, or a database such as {DATABASE_EXAMPLE}) and a non-empty"
            " experiment name"
        ) from err


def _open_store(uri: str, name: str, database: Path | None) -> MlflowClient:
    # jobs started together on a new local store would create its tables (and the experiment) at
    # once: they take turns
    with file_lock(lock_beside(database) if database is not None else None):
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        if mlflow.get_experiment_by_name(name) is None:
            mlflow.create_experiment(name, artifact_location=artifact_root(uri))
        experiment = mlflow.set_experiment(name)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        close_dead_runs(client, experiment.experiment_id)
    return client


T = TypeVar("T")
TABLE_ATTEMPTS = 3  # tries at opening a new shared database whose tables another job is creating


def with_tables_race(open_store: Callable[[], T], uri: str, tables: str) -> T:
    """``open_store()`` of the store at ``uri``, whose ``tables`` ("mlflow", "optuna") it may create
    or upgrade. Jobs or workers started together on a new database would create them at once: on a
    PostgreSQL or MySQL server they take turns under the database's lock (:func:`tables_lock`);
    MySQL cannot undo a half-made table, so a job whose tables another was making could find a
    column added twice or a migration already run. Anywhere else on a database server (SQL Server,
    or a client of another program making them), a job that fails on a table or row another made
    first tries again, up to :data:`TABLE_ATTEMPTS` times. A local store's jobs take turns on a lock
    beside its file instead."""
    if not on_database_server(uri):
        return open_store()
    with tables_lock(uri, tables):
        attempt = 1
        while True:
            try:
                return open_store()
            except SQLAlchemyError as err:
                if attempt == TABLE_ATTEMPTS or not created_meanwhile(err):
                    raise
                time.sleep(attempt)
                attempt += 1


TABLES_LOCK_SECONDS = 300.0  # the longest a job waits for another making a shared database's tables
_LOCKS = {"postgresql": ("SELECT pg_try_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"),
          "mysql": ("SELECT GET_LOCK(:name, 0)", "SELECT RELEASE_LOCK(:name)")}  # fmt: skip
_held_tables: set[tuple[str, str]] = set()  # (uri, tables) this process holds the lock of


@contextmanager
def tables_lock(uri: str, tables: str, seconds: float = TABLES_LOCK_SECONDS) -> Iterator[None]:
    """Hold the lock named ``beltcast.<tables>`` of the database at ``uri`` while the block runs:
    a PostgreSQL advisory lock (of that database) or a MySQL named lock (of the server, named with
    the database), on a connection of its own, released when the block ends or the job's connection
    goes; reentrant within this process. Nothing for another kind of store. A lock another job holds
    for over ``seconds`` is a :class:`TrackingError`."""
    url = make_url(uri)
    statements = _LOCKS.get(url.get_backend_name())
    if statements is None or (uri, tables) in _held_tables:
        yield
        return
    name = f"beltcast.{tables}"
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    params = {"key": key, "name": f"{name}.{url.database}"[:64]}
    engine = _server_engine(url, PROBE_SECONDS)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            waited, step = time.monotonic(), 0.2
            while not connection.execute(text(statements[0]), params).scalar():
                if time.monotonic() - waited > seconds:
                    raise TrackingError(
                        f"the store {without_password(uri)!r}: another job has been making or upgrading its"
                        f" {tables} tables for over {seconds:g} s (it holds the database's lock {name!r});"
                        " expected it to end: try again once it has, or end it"
                    )
                time.sleep(step)
                step = min(2 * step, 2.0)
            _held_tables.add((uri, tables))
            try:
                yield
            finally:
                _held_tables.discard((uri, tables))
                with suppress(SQLAlchemyError):  # a connection gone has released it
                    connection.execute(text(statements[1]), params)
    finally:
        engine.dispose()


def on_database_server(uri: str) -> bool:
    """Whether ``uri`` is a store on a database server (PostgreSQL, MySQL, SQL Server)."""
    try:
        return make_url(uri).get_backend_name() in DATABASE_SERVERS
    except (ArgumentError, ValueError):  # not a database URL: a file store, a tracking server, a journal
        return False


def created_meanwhile(err: SQLAlchemyError) -> bool:
    """Whether ``err`` is another worker's table or type having been created first: PostgreSQL's
    unique violation on its catalogue or "already exists"; MySQL's table that exists (error 1050,
    which its drivers raise as an operational error) or duplicate entry (1062)."""
    text = str(err).lower()
    mysql = isinstance(err, OperationalError) and "already exists" in text and "1050" in text
    return mysql or (
        isinstance(err, (IntegrityError, ProgrammingError))
        and (
            "already exists" in text
            or "duplicate key" in text
            or "uniqueviolation" in text
            or "duplicate entry" in text
        )
    )


RETRIES_VARIABLE, TIMEOUT_VARIABLE = "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"


def limit_requests(retries: int, timeout: int) -> None:
    """Bound how long MLflow's client waits for a tracking server (or its artifact store) that
    stops answering during a job: ``retries`` retries (0, 4, 8, 16... s apart) of ``timeout``
    seconds each, through MLflow's own variables, which it reads at every request (the config's
    values replace any the environment gave)."""
    os.environ[RETRIES_VARIABLE] = str(retries)
    os.environ[TIMEOUT_VARIABLE] = str(timeout)


@contextmanager
def requests_at_once(when: bool = True) -> Iterator[None]:
    """MLflow's requests of the block (``when``) made once, within a few seconds: a failing job's
    last words to a server that has gone away must not take the whole retry budget again."""
    if not when:
        yield
        return
    kept = {name: os.environ.get(name) for name in (RETRIES_VARIABLE, TIMEOUT_VARIABLE)}
    os.environ.update({RETRIES_VARIABLE: "0", TIMEOUT_VARIABLE: "5"})
    try:
        yield
    finally:
        for name, value in kept.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


FAILED_REQUEST = re.compile(r"API request to (?P<url>\S+) failed with (?:timeout )?exception")
NO_ANSWER = re.compile(
    r"\[Errno -?\d+\] [^'\")]+|Read timed out|timed out|Connection aborted|RemoteDisconnected|Connection refused"
)
ERROR_ANSWERS = re.compile(r"too many (\d{3}) error responses")


def lost_server(err: BaseException) -> str | None:
    """A message for MLflow's error of a request the tracking server stopped answering mid-job, or
    kept answering with an error status (MLflow's own is a 500-character line of urllib3's
    retries), naming ``mlflow.tracking_uri``; None for another error (a refused TLS certificate,
    a request MLflow itself refused)."""
    text = str(err)
    request = FAILED_REQUEST.search(text)
    if request is None:
        return None
    answers, silence = ERROR_ANSWERS.search(text), NO_ANSWER.search(text)
    if answers is not None:
        what = f"answered HTTP {answers[1]} to every try of a request"
    elif silence is not None:
        what = f"stopped answering: a request failed ({silence[0].strip()})"
    else:
        return None
    return (
        f"the tracking server mlflow.tracking_uri = {without_password(mlflow.get_tracking_uri())!r} {what}"
        f" during the job, to {urlsplit(request['url']).path}, after {_retries(os.environ.get(RETRIES_VARIABLE))}"
        " ([mlflow] request_retries, request_timeout)"
    )


def _retries(count: str | None) -> str:
    return "its retries" if count is None else f"{count} retr{'y' if count == '1' else 'ies'}"


DATABASE_EXAMPLE = (
    "postgresql://user:password@host/db with its driver installed (pip install -e '.[postgres]' in the checkout)"
)


def store_problem(err: BaseException, uri: str) -> str:
    """What went wrong opening the store at ``uri``, for a message: the error's first line (with
    the URI, which libraries repeat in it, shown without its password) and, for a database driver
    that is not installed (SQLAlchemy's and Optuna's ImportError hide which), the module that is
    missing."""
    text = f"{type(err).__name__}: {first_line(err)}".replace(uri, without_password(uri))
    missing = cause_of(err, ModuleNotFoundError)
    if missing is None or not missing.name:
        return text
    if missing is err:  # its message names the module already
        return f"{text}: a database driver that is not installed"
    return f"{text}; the database driver module {missing.name!r} is not installed"


def lock_beside(path: Path) -> Path:
    """The hidden lock file of one file, beside it: a local SQLite store's while a job sets it up,
    a scores CSV's (and its Parquet twin's) while they are written."""
    return Path(path).with_name(f".{Path(path).name}.lock")


def check_reachable(uri: str, timeout: float = PROBE_SECONDS) -> None:
    """A tracking server (``http(s)://``) must answer an HTTP request (any status) within
    ``timeout`` seconds, and a request that reads its store with no 5xx: a :class:`TrackingError`
    naming the URI at once, rather than the minutes MLflow's client spends retrying a host that
    is down, misspelt or behind a firewall, or a server whose database is down. The probe
    goes as MLflow's requests go (through ``HTTP(S)_PROXY`` unless ``NO_PROXY`` says otherwise);
    a TLS problem is left to MLflow, which has its own settings for it. Other stores are not probed."""
    if not uri.lower().startswith(("http:", "https:")):
        return
    shown = without_password(uri)
    try:
        parts = urlsplit(uri)
        port = parts.port if parts.port is not None else (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as err:
        raise TrackingError(
            f"mlflow.tracking_uri = {shown!r} has no valid host and port ({err}); expected e.g. http://host:5000"
        ) from err
    if not parts.hostname:
        raise TrackingError(f"mlflow.tracking_uri = {shown!r} names no host; expected e.g. http://host:5000")
    # requests' timeout bounds the connection and the answer, not the host name's lookup: a
    # resolver that hangs is bounded here, the lookup left to end in a daemon thread
    waited = 2 * timeout + 1
    answer, err = _answer(f"{uri.rstrip('/')}/health", timeout, waited)
    if err is None:  # the server answers; /health says OK while its database is down: read the store
        answer, err = _answer(f"{uri.rstrip('/')}/{STORE_PROBE}", timeout, waited)
        store = f"/{STORE_PROBE.split('?')[0]}"
        if err is None and answer is not None and answer.status_code >= 500:
            said = (answer.text.strip().splitlines() or [""])[0][:200]
            problem = f"HTTP {answer.status_code} to {store} ({said or 'no message'})"
        elif err is None or isinstance(err, requests.exceptions.SSLError):
            return
        else:
            problem = f"{_problem(err, timeout, waited)} to {store}"
        raise TrackingError(
            f"the MLflow tracking server mlflow.tracking_uri = {shown!r} answers, but not from its store: {problem};"
            " expected a server whose backend store (its database) is up: check the server's log and its database"
        )
    if isinstance(err, requests.exceptions.SSLError):
        return
    raise TrackingError(
        f"the MLflow tracking server mlflow.tracking_uri = {shown!r} cannot be reached: {parts.hostname} port {port}"
        f" gave {_problem(err, timeout, waited)}; expected a running server there (start it, check the address and"
        " any HTTP(S)_PROXY, or use a local store such as sqlite:///mlruns/mlflow.db)"
    )


def _answer(url: str, timeout: float, waited: float) -> tuple[requests.Response | None, BaseException | None]:
    """The answer to a GET of ``url`` within ``timeout`` seconds (a host name's lookup within
    ``waited``), or the error that came instead."""
    outcome: list[requests.Response | BaseException] = []

    def probe() -> None:
        try:
            with requests.get(url, timeout=timeout, allow_redirects=False) as answer:
                outcome.append(answer)
        except BaseException as err:  # handed to the waiting thread
            outcome.append(err)

    thread = threading.Thread(target=probe, name="tracking-server-probe", daemon=True)
    thread.start()
    thread.join(waited)
    if not outcome:
        return None, TimeoutError(f"no answer within {waited:g} s")
    return (None, outcome[0]) if isinstance(outcome[0], BaseException) else (outcome[0], None)


def _problem(err: BaseException, timeout: float, waited: float) -> str:
    """What a failed probe gave, for a message; an error of another kind is raised as it came."""
    if isinstance(err, TimeoutError):
        return f"no answer within {waited:g} s (the host name's lookup or the connection hung)"
    if isinstance(err, requests.exceptions.Timeout):
        return f"no answer within {timeout:g} s ({type(err).__name__})"
    if isinstance(err, (requests.exceptions.RequestException, ValueError)):  # urllib3's LocationParseError too
        return f"{type(err).__name__}: {_cause(err)}"
    raise err


def connect_once(uri: str, timeout: float | None = None) -> None:
    """Open one connection to a store on a database server (PostgreSQL, MySQL, SQL Server),
    within ``timeout`` seconds (default :data:`PROBE_SECONDS`) where the driver takes a connection
    timeout (psycopg, mysqlclient, PyMySQL) and the URL sets none. Its error (a wrong password, a
    refused or silent port, a database that does not exist) is raised at once, as SQLAlchemy
    raises it, rather than after MLflow's ten attempts (about 107 s) or a connection that hangs.
    Other URIs are left alone."""
    try:
        url = make_url(uri)
    except ArgumentError:  # not a database URL: a file store or a tracking server
        return
    except ValueError as err:  # SQLAlchemy's int() of the port
        raise ArgumentError(f"its port must be a number; {err}") from err
    if url.get_backend_name() not in DATABASE_SERVERS:
        return
    engine = _server_engine(url, PROBE_SECONDS if timeout is None else timeout)
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


def _server_engine(url: URL, timeout: float) -> Engine:
    """An engine of single connections to the database server at ``url``, each opened within
    ``timeout`` seconds where the driver takes a connection timeout and the URL sets none."""
    argument = TIMEOUT_ARGUMENT.get(url.get_driver_name())
    seconds = max(2, math.ceil(timeout))  # libpq's least
    options = {argument: seconds} if argument and argument not in url.query else {}
    return create_engine(url, connect_args=options, poolclass=NullPool)


def without_password(uri: str) -> str:
    """``uri`` with the password of its user part, if any, shown as ``***`` (for messages); also
    in a URI whose ``://`` is mistyped (``postgresql:/bob:s3cret@db``) or missing."""
    scheme = re.match(r"[A-Za-z][A-Za-z0-9+.\-]*:?/*", uri)
    prefix = scheme.group() if scheme and scheme.group()[-1] in ":/" else ""
    starts = (len(prefix),) if "://" in uri else (len(prefix), 0)  # mistyped: maybe "user:password@host" alone
    for start in starts:
        user_part, at, after = uri[start:].rpartition("@")  # a password may hold "/", "?" or "@" unescaped
        user, colon, _ = user_part.partition(":")
        if at and colon and not re.search(r"[/?#]", user):
            return _without_query_password(f"{uri[:start]}{user}:***@{after}")  # an "@" in a path hides more
    return _without_query_password(uri)


def _without_query_password(uri: str) -> str:
    """``uri`` with a ``password=`` of its query (which libpq and psycopg read) shown as ``***``."""
    return re.sub(r"(?i)([?&;]password=)[^&#;]*", r"\1***", uri)


def _cause(err: BaseException) -> str:
    """The innermost reason of a requests error (``Connection refused``, ``Name or service not
    known``), not urllib3's pool and retry wrapping."""
    while True:
        inner = getattr(err, "reason", None) or err.__cause__ or (err.args[0] if err.args else None)
        if not isinstance(inner, BaseException) or inner is err:
            break
        err = inner
    text = str(err)
    return text.split(": ", 1)[-1] if text.startswith("<") else text


@contextmanager
def registry_lock(settings: Settings) -> Iterator[None]:
    """Hold the registry of a local SQLite store for this process while the block runs, so that
    jobs registering versions or moving aliases (``train``, ``promote``) take turns: two trains
    of identical inputs register one version, and two promotes record one decision each, in turn.
    The lock (``.registry.lock`` beside the database) is reentrant within a process and released
    by the kernel however the process ends. A store that is not a local file (a tracking server)
    is not locked here."""
    with file_lock(_beside(settings.mlflow.tracking_uri, REGISTRY_LOCK)):
        yield


@contextmanager
def study_lock(settings: Settings) -> Iterator[None]:
    """Hold the Optuna study store of a local SQLite file (``.study.lock`` beside it) while the
    block runs: two retrains of one period count the trials still missing in turn, so the second
    adds none. Reentrant within a process; not locked for a store that is not a local file."""
    with file_lock(_beside(settings.tune.storage, STUDY_LOCK)):
        yield


def _beside(store: str, name: str) -> Path | None:
    """The lock file ``name`` beside the file of a local SQLite store or Optuna journal; None for
    another store."""
    database = sqlite_file(store) or journal_file(store)
    return None if database is None else database.parent / name


@contextmanager
def file_lock(path: Path | None, of: Path | None = None) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created) while the block runs, reentrant within this
    process; nothing for ``None``. ``of`` is the file the lock guards, which a failure names first
    (the path a user gave, rather than only the hidden lock file beside it)."""
    if path is None:
        yield
        return
    path = path.resolve()
    named = f"the lock file {path}" if of is None else f"output {of}: its lock file {path}"
    if _held_locks.get(path):
        _held_locks[path] += 1
        try:
            yield
        finally:
            _held_locks[path] -= 1
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # for writing where it may (NFS locks only a file open for writing)
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError:  # another user's lock file (mode 0644, or a sticky shared folder)
            descriptor = os.open(path, os.O_RDONLY)
    except OSError as err:
        raise OutputPathError(
            f"{named} cannot be opened ({type(err).__name__}: {err.strerror or err}); expected a"
            " folder this user may create files in, or the lock file already there and readable"
        ) from err
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError as err:
            raise OutputPathError(
                f"{named} cannot be locked ({type(err).__name__}: {err.strerror or err}); expected a"
                " file system with file locks (flock)"
            ) from err
        _held_locks[path] = 1
        try:
            yield
        finally:
            del _held_locks[path]
    finally:
        os.close(descriptor)


def sqlite_file(uri: str) -> Path | None:
    """The database file of a SQLite store URI as SQLAlchemy reads it (query and percent-encoding
    removed); None for another kind of store, or an in-memory one."""
    if not uri.startswith("sqlite:"):
        return None
    try:
        database = make_url(uri).database
    except ArgumentError:
        return None
    return None if database in (None, "", ":memory:") else Path(database)


JOURNAL = "journal:"  # tune.storage = "journal:PATH": an Optuna journal file, for workers without a database


def journal_file(storage: str) -> Path | None:
    """The file of an Optuna journal store, ``journal:PATH`` (``journal:///srv/optuna.journal``,
    or relative to the working directory, ``journal:mlruns/optuna.journal``); None for another
    store. A journal naming no file is a :class:`TrackingError`."""
    if not storage.startswith(JOURNAL):
        return None
    path = storage[len(JOURNAL) :]
    if path.startswith("//") and not path.startswith("///") and len(path) > 2:
        raise TrackingError(
            f"tune.storage = {storage!r} is ambiguous: write journal:///{path[2:]} for the absolute path"
            f" /{path[2:]}, or journal:{path[2:]} for a path relative to the working directory"
        )
    path = path[2:] if path.startswith("//") else path
    if not path or path.endswith("/"):
        raise TrackingError(
            f"tune.storage = {storage!r} names no journal file; expected journal:PATH, e.g."
            " journal:///srv/beltcast/optuna.journal or journal:mlruns/optuna.journal"
        )
    return Path(path)


def load_pinned(uri: str, error: type[Exception], model_config: dict | None = None) -> mlflow.pyfunc.PyFuncModel:
    """The model at ``uri`` (with ``model_config``, when not empty: ``[scoring]``'s
    :meth:`~pipelines.config.ScoringSettings.as_model_config`); ``error`` (the job's own) naming
    the version when its files cannot be loaded (artifacts moved or deleted, a store copied
    without them)."""
    try:
        return mlflow.pyfunc.load_model(uri, model_config=model_config or None)
    except (MlflowException, OSError) as err:
        raise error(
            f"cannot load {uri} ({type(err).__name__}: {first_line(err)}); expected its artifacts in the"
            f" MLflow store {mlflow.get_tracking_uri()} (with the default store: mlruns/artifacts)"
        ) from err


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (a store's errors carry SQL and tracebacks below)."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else ""


@contextmanager
def start_run(run_name: str, nested: bool = False) -> Iterator[mlflow.ActiveRun]:
    """``mlflow.start_run`` tagged with this machine and process, so that a run whose job was
    killed can be told apart from one still running (:func:`close_dead_runs`); a run that fails
    says why in its ``beltcast.error`` tag. When the active
    run already has this name (the retrain's child run of a step, around the step's job), the job
    logs to it rather than to a run of the same name nested under it."""
    active = mlflow.active_run()
    if active is not None and active.info.run_name == run_name:
        yield active
        return
    with mlflow.start_run(run_name=run_name, nested=nested, tags=process_tags()) as run:
        try:
            yield run
        except BaseException as err:  # the run ends FAILED (Ctrl+C too): say why on it
            with ending_failed_run(), requests_at_once(lost_server(err) is not None):
                _tag_error(err)
                with suppress(Exception):  # best effort: a store that has gone away must not hide ``err``
                    mlflow.end_run("FAILED")  # takes the run off MLflow's stack before it writes
            raise


ERROR_TAG = "beltcast.error"


def _tag_error(err: BaseException) -> None:
    """``beltcast.error``: the exception's kind and first line, on the active run (best effort:
    a store that has gone away must not hide the error itself)."""
    if isinstance(err, Terminated):
        said = "terminated (SIGTERM)"
    else:
        said = "interrupted" if isinstance(err, KeyboardInterrupt) else first_line(err)
    with suppress(Exception):  # the job's own error is the one to raise
        mlflow.set_tag(ERROR_TAG, f"{type(err).__name__}: {said}"[:5000])


def process_tags() -> dict[str, str]:
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def process_gone(tags: Mapping[str, object]) -> bool:
    """Whether the process that :func:`process_tags` named in ``tags`` (a run's tags, a trial's
    attributes) ran on this machine and is gone; tags of another machine or of none are not."""
    pid = str(tags.get(PID_TAG, ""))
    return tags.get(HOST_TAG) == socket.gethostname() and pid.isdigit() and not process_alive(int(pid))


def close_dead_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark ``KILLED`` the runs still ``RUNNING`` whose process, on this machine, is gone."""
    closed = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000):
        if process_gone(run.data.tags):
            client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_id)
    return closed


def artifact_root(uri: str) -> str | None:
    """For a local SQLite store, artifacts live beside the database (``mlruns/artifacts``)."""
    database = sqlite_file(uri)
    if database is None:
        return None
    database.parent.mkdir(parents=True, exist_ok=True)
    return (database.parent.resolve() / "artifacts").as_uri()


def lineage_tags(settings: Settings, panel_hash: str, fold_spec: dict) -> dict[str, str]:
    """Git SHA, data manifest hash, panel hash, fold spec, seed and library versions."""
    tags = {
        "git_sha": git_sha(),
        "data_manifest_sha256": manifest_hash(read_manifest()),
        "panel_sha256": panel_hash,
        "fold_spec": json.dumps(fold_spec, sort_keys=True),  # as the model version's tag
        "seed": str(settings.model.seed),
        "python": platform.python_version(),
        "target_vintage": str(settings.codes.target_vintage),
    }
    metrics_file = settings.platform.metrics_file
    if metrics_file is not None:  # the platform's own data: the panel hash alone does not name the file
        tags["platform_metrics_file"] = str(Path(metrics_file).resolve())
        tags["platform_metrics_sha256"] = (
            known_sha256(Path(metrics_file)) if Path(metrics_file).is_file() else "missing"
        )
        from pipelines.build import panel_synthetic

        if panel_synthetic(settings.data.features_dir):
            tags[SYNTHETIC_TAG] = "true"
    for library in LIBRARIES:
        tags[f"version.{library}"] = metadata.version(library)
    from pipelines.build import panel_built_by  # what built the panel may be older code and data than this job's

    tags.update({f"panel_built.{key}": value for key, value in panel_built_by(settings.data.features_dir).items()})
    return tags


def git_sha(folder: Path | None = None) -> str:
    """The commit of the checkout beltcast runs from (not of the working directory; ``folder``
    for another checkout), followed by
    ``+dirty.<hash of the changes>`` when tracked files differ from it or untracked Python files
    are there (a changed line of code is
    another model: ``train`` must not reuse a version for it); ``unknown`` when beltcast is not
    installed from a git checkout."""
    here = folder or Path(__file__).resolve().parent
    head = _git(["rev-parse", "HEAD"], here)
    if head is None:
        return "unknown"
    changes = (_git(["diff", "HEAD", "--no-ext-diff", "--binary"], here) or "").encode() + _untracked_code(here)
    if not changes:
        return head.strip()
    return f"{head.strip()}+dirty.{hashlib.sha256(changes).hexdigest()[:16]}"


def _untracked_code(here: Path) -> bytes:
    """The names and contents of the checkout's Python files that git does not track (nor
    ignore): a new module is code too; other untracked files (notes, configs, data) are not."""
    top = _git(["rev-parse", "--show-toplevel"], here)
    listed = _git(["ls-files", "--others", "--exclude-standard", "-z", "--full-name", "--", ":(top,glob)**/*.py"], here)
    if not top or not listed:
        return b""
    digest = b""
    for name in sorted(filter(None, listed.split("\0"))):
        try:
            digest += name.encode() + b"\0" + (Path(top.strip()) / name).read_bytes()
        except OSError:  # removed meanwhile
            continue
    return digest


def _git(arguments: list[str], folder: Path) -> str | None:
    """What ``git arguments`` prints in ``folder``; None when git is missing or fails."""
    try:
        out = subprocess.run(["git", *arguments], capture_output=True, text=True, timeout=30, cwd=folder)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def frame_hash(frame: pd.DataFrame) -> str:
    """A content hash of a DataFrame (values and column names), stable across runs."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version an alias points to, or None when the model or the alias does not exist."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def last_period(version: ModelVersion | None) -> int | None:
    """The newest panel period ``version`` was trained on, as a period index; None when unknown
    (no version, or one registered before the tag was)."""
    label = None if version is None else version.tags.get(LAST_PERIOD_TAG)
    return None if label is None else parse_period(label)[1]


def require_champion(client: MlflowClient, name: str, error: type[Exception]) -> ModelVersion:
    """The version ``champion`` points to; ``error`` (the job's own) when there is none."""
    champion = version_by_alias(client, name, CHAMPION)
    if champion is None:
        raise error(f"registered model {name!r} has no {CHAMPION!r}; run `beltcast train` and `beltcast promote`")
    return champion


def model_uri(name: str, version: str | int) -> str:
    """``models:/NAME/VERSION``: a pinned version, so one job reads one model throughout."""
    return f"models:/{name}/{version}"
