"""``beltcast serve``: the MLflow scoring server for ``models:/county-belt@champion``.

Bound to 127.0.0.1 unless told otherwise. Only models of the configured registry are served.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from pipelines.config import Settings
from pipelines.tracking import CHAMPION


def command(settings: Settings, host: str, port: int, workers: int) -> list[str]:
    """The ``mlflow models serve`` command line."""
    uri = f"models:/{settings.mlflow.registered_model}@{CHAMPION}"
    return [
        sys.executable, "-m", "mlflow", "models", "serve",
        "--model-uri", uri, "--env-manager", "local",
        "--host", host, "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip


def environment(settings: Settings) -> dict[str, str]:
    """The server's environment: the configured tracking and registry store."""
    env = dict(os.environ)
    # the scoring server execs `uvicorn` from PATH: put this interpreter's bin folder first
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["MLFLOW_TRACKING_URI"] = settings.mlflow.tracking_uri
    env["MLFLOW_REGISTRY_URI"] = settings.mlflow.tracking_uri
    return env


def start(settings: Settings, host: str = "127.0.0.1", port: int = 5000, workers: int = 1) -> subprocess.Popen:
    """Start the server in the background (for tests and benchmarks)."""
    return subprocess.Popen(command(settings, host, port, workers), env=environment(settings))


def run(settings: Settings, host: str, port: int, workers: int, console: Console) -> int:
    """Serve in the foreground until interrupted."""
    console.print(f"serve: models:/{settings.mlflow.registered_model}@{CHAMPION} on http://{host}:{port}/invocations")
    return subprocess.call(command(settings, host, port, workers), env=environment(settings))
