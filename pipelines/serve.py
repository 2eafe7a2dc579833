"""``beltcast serve``: MLflow's scoring server for the champion, behind a request guard.

The champion alias is resolved to one version when the server starts, and every worker loads
that version (``models:/county-belt/<version>`` of the configured registry), so a ``promote``
while the server runs does not mix versions; restart the server to serve a new champion.
Bound to 127.0.0.1 unless told otherwise. See :mod:`pipelines.scoring_app` for the guard.
"""

from __future__ import annotations

import os
import subprocess
import sys

from rich.console import Console

from features.errors import BeltcastError
from pipelines.config import Settings
from pipelines.scoring_app import MODEL_URI_VARIABLE
from pipelines.tracking import CHAMPION, model_uri, use_tracking, version_by_alias


class ServeError(BeltcastError):
    """There is nothing to serve."""


def command(host: str, port: int, workers: int) -> list[str]:
    """The uvicorn command line of the guarded scoring app (this interpreter's uvicorn)."""
    return [
        sys.executable, "-m", "uvicorn", "--factory", "pipelines.scoring_app:create_app",
        "--host", host, "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip


def champion_uri(settings: Settings) -> str:
    """``models:/<name>/<version>`` of the champion, resolved now."""
    client = use_tracking(settings)
    name = settings.mlflow.registered_model
    champion = version_by_alias(client, name, CHAMPION)
    if champion is None:
        raise ServeError(f"registered model {name!r} has no {CHAMPION!r}; run `beltcast train` and `beltcast promote`")
    return model_uri(name, champion.version)


def environment(settings: Settings, uri: str) -> dict[str, str]:
    """The server's environment: the configured store and the model to serve."""
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = settings.mlflow.tracking_uri
    env["MLFLOW_REGISTRY_URI"] = settings.mlflow.tracking_uri
    env[MODEL_URI_VARIABLE] = uri
    return env


def start(settings: Settings, host: str = "127.0.0.1", port: int = 5000, workers: int = 1) -> subprocess.Popen:
    """Start the server for the champion in the background (for tests and benchmarks)."""
    return subprocess.Popen(command(host, port, workers), env=environment(settings, champion_uri(settings)))


def run(settings: Settings, host: str, port: int, workers: int, console: Console) -> int:
    """Serve the champion in the foreground until interrupted."""
    uri = champion_uri(settings)
    console.print(f"serve: {uri} (the {CHAMPION}) on http://{host}:{port}/invocations")
    return subprocess.call(command(host, port, workers), env=environment(settings, uri))
