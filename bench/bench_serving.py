"""Benchmark the MLflow scoring server: the beltcast champion against a trivial echo pyfunc.

Single-county ``POST /invocations`` requests from 1 and 8 concurrent clients (threads, one HTTP
session each) for ``--seconds`` per setting; throughput (successful requests/s), p50/p99 latency
and errors (non-200 answers, client exceptions). Both models are served the same way
(``mlflow models serve --env-manager local`` on 127.0.0.1, one at a time) from the same store; the
echo model is a ``PythonModel`` that returns its input, logged to an experiment ``bench-serving``.

Without ``--tracking-uri`` the bench builds the REAL panel from the synced cache at ``data/raw``
into a temporary folder, trains (quick parameters, as the test fixtures do) and promotes, so
``county-belt@champion`` is version 1 of a throw-away SQLite store (about 2-3 minutes). With
``--tracking-uri`` it serves that store's champion (and logs the echo model into it).

Run from the project root::

    .venv/bin/python bench/bench_serving.py [--seconds 15] [--tracking-uri sqlite:///...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import requests
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, Schema
from rich.console import Console

from features.io import write_json
from pipelines import build, promote, serve, train
from pipelines.config import (
    DataSettings,
    MlflowSettings,
    ModelSettings,
    OutputSettings,
    Settings,
    TuneSettings,
)
from pipelines.tracking import CHAMPION, artifact_root, model_uri, require_champion, use_tracking

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import QUICK_PARAMS  # the tests' quick model, with the public-data model's margin

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
ECHO_EXPERIMENT = "bench-serving"
CLIENTS = (1, 8)
TARGET_RATIO = 0.5
START_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 30.0
MAX_REQUESTS_PER_CLIENT = 200_000
WARMUP_REQUESTS = 20
N_COUNTIES = 64
LIBRARIES = ("mlflow", "lightgbm", "pandas", "numpy", "fastapi", "uvicorn", "requests")
QUIET = Console(quiet=True)


class EchoModel(mlflow.pyfunc.PythonModel):
    """The trivial baseline: the prediction is the request itself."""

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        return model_input


@dataclass
class ClientTally:
    """One client's successful latencies (seconds) and its errors by status."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)


@dataclass(frozen=True)
class Measurement:
    """One (model, clients) setting."""

    model: str
    clients: int
    ok: int
    errors: Counter
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of each setting")
    parser.add_argument("--tracking-uri", default=None, help="serve this store's champion instead of a fresh one")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 600:
        parser.error(f"--seconds must lie within 1..600; got {args.seconds}")
    if not 1 <= args.workers <= 16:
        parser.error(f"--workers must lie within 1..16; got {args.workers}")
    if args.tracking_uri is None and not (ROOT / "data" / "raw").is_dir():
        parser.error(f"{ROOT / 'data' / 'raw'} does not exist; run `beltcast data sync` first")
    return args


def fresh_settings(root: Path) -> Settings:
    """Settings like the test fixture ``built_settings``: real data, quick model, temp store."""
    params_file = root / "tuned_params.json"
    write_json({"params": QUICK_PARAMS}, params_file)
    return Settings(
        data=DataSettings(cache_dir=ROOT / "data" / "raw", features_dir=root / "features"),
        model=ModelSettings(spatial_folds=2, bootstrap=0, params_file=params_file),
        tune=TuneSettings(storage=f"sqlite:///{root / 'optuna.db'}", trials=3, inner_folds=2),
        outputs=OutputSettings(dir=root / "outputs"),
        mlflow=MlflowSettings(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"),
    )


def prepare_champion(settings: Settings) -> None:
    """Build the real panel, train and promote: version 1 becomes the champion."""
    start = time.perf_counter()
    build.run(settings, QUIET)
    train.run(settings, QUIET)
    decision = promote.run(settings, False, None, QUIET)
    if not decision.promoted:
        raise RuntimeError(f"the fresh model was not promoted: {decision.reason}")
    print(f"prepared champion (build + train + promote) in {time.perf_counter() - start:.0f} s")


def champion_counties(settings: Settings, n: int) -> tuple[str, list[str], int]:
    """The champion's URI, ``n`` sampled county codes of its snapshot and its newest year."""
    name = settings.mlflow.registered_model
    champion = require_champion(use_tracking(settings), name, SystemExit)
    uri = model_uri(name, champion.version)
    bundle = mlflow.pyfunc.load_model(uri).unwrap_python_model().bundle
    year = bundle.default_as_of
    codes = bundle.snapshot.loc[bundle.snapshot["as_of"] == year, "county_code"]
    sample = codes.sample(min(n, len(codes)), random_state=0).sort_values()
    return uri, sample.tolist(), year


def log_echo(settings: Settings) -> str:
    """Log :class:`EchoModel` (same request columns as beltcast) to the store; its model URI."""
    use_tracking(settings)
    uri = settings.mlflow.tracking_uri
    if mlflow.get_experiment_by_name(ECHO_EXPERIMENT) is None:
        mlflow.create_experiment(ECHO_EXPERIMENT, artifact_location=artifact_root(uri))
    mlflow.set_experiment(ECHO_EXPERIMENT)
    schema = Schema([ColSpec("string", "county_code"), ColSpec("long", "as_of", required=False)])
    with mlflow.start_run(run_name="echo"):
        info = mlflow.pyfunc.log_model(name="echo", python_model=EchoModel(), signature=ModelSignature(inputs=schema))
    return info.model_uri


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def champion_store(root: Path, tracking_uri: str | None) -> Settings:
    """Settings of the store at ``tracking_uri``, or of a fresh store below ``root`` whose
    champion is trained on the real data first."""
    if tracking_uri is not None:
        return Settings(mlflow=MlflowSettings(tracking_uri=tracking_uri))
    settings = fresh_settings(root)
    prepare_champion(settings)
    return settings


@contextmanager
def running_server(
    settings: Settings, uri: str | None, workers: int, log: Path
) -> Iterator[tuple[str, subprocess.Popen]]:
    """The command of ``beltcast serve`` (serving ``uri`` instead of the champion alias if
    given) in the background; yields its URL and process."""
    port = free_port()
    command = serve.command(HOST, port, workers)
    env = serve.environment(settings, uri or serve.champion_uri(settings))
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        url = f"http://{HOST}:{port}"
        serve.wait_until_serving(process, url, log, START_TIMEOUT_S)
        yield url, process
    finally:
        serve.stop(process)


def bodies(codes: list[str], year: int) -> list[bytes]:
    """One single-county ``dataframe_split`` request body per county."""
    return [
        json.dumps({"dataframe_split": {"columns": ["county_code", "as_of"], "data": [[code, year]]}}).encode()
        for code in codes
    ]


def post(session: requests.Session, url: str, body: bytes) -> int | str:
    try:
        response = session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=REQUEST_TIMEOUT_S)
    except requests.RequestException as err:
        return type(err).__name__
    return response.status_code


def warm_up(url: str, payloads: list[bytes]) -> None:
    with requests.Session() as session:
        for i in range(WARMUP_REQUESTS):
            status = post(session, f"{url}/invocations", payloads[i % len(payloads)])
            if status != 200:
                raise RuntimeError(f"warm-up request to {url} answered {status}")


def client_loop(url: str, payloads: list[bytes], offset: int, deadline: float) -> ClientTally:
    """Post until ``deadline`` (or :data:`MAX_REQUESTS_PER_CLIENT`), cycling through counties."""
    tally = ClientTally()
    with requests.Session() as session:
        for i in range(offset, offset + MAX_REQUESTS_PER_CLIENT):
            if time.perf_counter() >= deadline:
                break
            start = time.perf_counter()
            status = post(session, f"{url}/invocations", payloads[i % len(payloads)])
            if status == 200:
                tally.latencies.append(time.perf_counter() - start)
            else:
                tally.errors[status] += 1
    return tally


def measure(model: str, url: str, payloads: list[bytes], clients: int, seconds: float):
    tallies = [ClientTally() for _ in range(clients)]
    start = time.perf_counter()
    deadline = start + seconds

    def work(k: int) -> None:
        tallies[k] = client_loop(url, payloads, k * 7, deadline)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + REQUEST_TIMEOUT_S + 10)
    elapsed = time.perf_counter() - start
    latencies = np.array([x for t in tallies for x in t.latencies]) * 1000
    errors = sum((t.errors for t in tallies), Counter())
    p50, p99 = np.percentile(latencies, [50, 99]) if len(latencies) else (np.nan, np.nan)
    return Measurement(model, clients, len(latencies), errors, elapsed, float(p50), float(p99))


def bench_model(
    model: str, settings: Settings, uri: str | None, payloads: list[bytes], args, log_dir: Path
) -> list[Measurement]:
    shown = uri or f"models:/{settings.mlflow.registered_model}@{CHAMPION}"
    print(f"\n== {model}: {shown} ==")
    started = time.perf_counter()
    with running_server(settings, uri, args.workers, log_dir / f"{model}.log") as (url, _):
        print(f"  server up at {url} in {time.perf_counter() - started:.1f} s")
        warm_up(url, payloads)
        results = []
        for clients in CLIENTS:
            result = measure(model, url, payloads, clients, args.seconds)
            print(f"  {clients} client(s): {result.throughput:8.1f} req/s")
            results.append(result)
    return results


def print_table(results: list[Measurement]) -> None:
    print(f"\n{'model':<10}{'clients':>8}{'requests':>10}{'errors':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for r in results:
        print(
            f"{r.model:<10}{r.clients:>8}{r.ok:>10}{sum(r.errors.values()):>8}"
            f"{r.throughput:>10.1f}{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}"
        )
    for r in results:
        if r.errors:
            print(f"errors of {r.model} with {r.clients} client(s): {dict(r.errors)}")


def print_ratios(results: list[Measurement]) -> None:
    by = {(r.model, r.clients): r for r in results}
    print(f"\nthroughput beltcast / echo (target >= {TARGET_RATIO:.0%}):")
    for clients in CLIENTS:
        echo, belt = by[("echo", clients)], by[("beltcast", clients)]
        ratio = belt.throughput / echo.throughput if echo.throughput else float("nan")
        verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
        print(f"  {clients} client(s): {ratio:.0%} ({verdict} the target)")


def print_machine(args: argparse.Namespace) -> None:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "n/a"
    print(f"machine: {platform.platform()}; cpu_count={os.cpu_count()}; usable cores={affinity}")
    print(f"python {platform.python_version()}; load average {os.getloadavg()}")
    print("libraries: " + "; ".join(f"{lib} {_version(lib)}" for lib in LIBRARIES))
    print(
        f"settings: {args.seconds:g} s per setting, clients {CLIENTS}, server workers "
        f"{args.workers}; clients and server share this machine"
    )


def _version(lib: str) -> str:
    try:
        return metadata.version(lib)
    except metadata.PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print_machine(args)
    with tempfile.TemporaryDirectory(prefix="bench_serving_") as tmp:
        root = Path(tmp)
        settings = champion_store(root, args.tracking_uri)
        belt_uri, codes, year = champion_counties(settings, N_COUNTIES)
        echo_uri = log_echo(settings)
        payloads = bodies(codes, year)
        print(f"requests: one county each, cycling through {len(codes)} counties as of {year}")
        print(f"champion: {belt_uri}")
        results = bench_model("beltcast", settings, None, payloads, args, root)
        results += bench_model("echo", settings, echo_uri, payloads, args, root)
    print_table(results)
    print_ratios(results)
    print(f"\nload average at the end {os.getloadavg()}")


if __name__ == "__main__":
    sys.exit(main())
