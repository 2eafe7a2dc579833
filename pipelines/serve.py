"""``beltcast serve``: MLflow's scoring server for the champion, behind a request guard.

The champion alias is resolved to one version when the server starts, and every worker loads
that version (``models:/county-belt/<version>`` of the configured registry), so a ``promote``
while the server runs does not mix versions; restart the server to serve a new champion.
Bound to 127.0.0.1 unless told otherwise. See :mod:`pipelines.scoring_app` for the guard.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NoReturn

from rich.console import Console

from features.errors import BeltcastError
from pipelines.config import Settings
from pipelines.scoring_app import MODEL_URI_VARIABLE, TIMEOUT_VARIABLE
from pipelines.terminal import printable
from pipelines.tracking import CHAMPION, model_uri, require_champion, use_tracking

SERVING_MODEL_CONFIG = "SERVING_MODEL_CONFIG"  # MLflow's scoring server: the JSON model_config its loader passes


class ServeError(BeltcastError):
    """There is nothing to serve."""


def command(host: str, port: int, workers: int, allowed_hosts: str | None = None) -> list[str]:
    """The command line of the guarded scoring app under uvicorn (this interpreter's)."""
    line = [
        sys.executable, "-m", "pipelines.scoring_app", "--host", host, "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    return line if allowed_hosts is None else [*line, "--allowed-hosts", allowed_hosts]


def champion_uri(settings: Settings) -> str:
    """``models:/<name>/<version>`` of the champion, resolved now."""
    name = settings.mlflow.registered_model
    return model_uri(name, require_champion(use_tracking(settings, existing=True), name, ServeError).version)


def environment(settings: Settings, uri: str, timeout: int | None = None) -> dict[str, str]:
    """The server's environment: the configured store, the model to serve, ``[scoring]``'s model
    configuration if any is set (MLflow's ``SERVING_MODEL_CONFIG``) and, when given, the seconds a
    request may take (MLflow's ``MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT``)."""
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = settings.mlflow.tracking_uri
    env["MLFLOW_REGISTRY_URI"] = settings.mlflow.tracking_uri
    env[MODEL_URI_VARIABLE] = uri
    config = settings.scoring.as_model_config()
    if config:  # read by MLflow's loader in each worker (load_served_model)
        env[SERVING_MODEL_CONFIG] = json.dumps(config)
    if timeout is not None:
        env[TIMEOUT_VARIABLE] = str(timeout)
    return env


def start(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 1,
    timeout: int | None = None,
    allowed_hosts: str | None = None,
) -> subprocess.Popen:
    """Start the server for the champion in the background (for tests and benchmarks)."""
    line = command(host, port, workers, allowed_hosts)
    return subprocess.Popen(line, env=environment(settings, champion_uri(settings), timeout))


def wait_until_serving(process: subprocess.Popen, url: str, log: Path, timeout_s: float = 180.0) -> None:
    """Poll ``url/ping`` until it answers 200; :class:`ServeError` with the server's ``log`` when
    the server exits first or does not answer within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServeError(f"the server exited with {process.returncode}:\n{Path(log).read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise ServeError(f"the server did not answer /ping within {timeout_s:.0f} s:\n{Path(log).read_text()}")


def stop(process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Terminate the server (SIGTERM, then SIGKILL after ``timeout_s``) and reap it."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)


def run(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    console: Console,
    timeout: int | None = None,
    allowed_hosts: str | None = None,
) -> NoReturn:
    """Serve the champion in the foreground: this process becomes the server (``exec``), so
    Ctrl+C, SIGTERM and the exit status are the server's own (3: it could not start)."""
    uri = champion_uri(settings)
    console.print(printable(f"serve: {uri} (the {CHAMPION}) on http://{host}:{port}/invocations"))
    line = command(host, port, workers, allowed_hosts)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(line[0], line, environment(settings, uri, timeout))
