"""A team's store: train, promote and score against an MLflow tracking server (``mlflow server``
on loopback, its own SQLite backend and artifact folder) give the scores of a local store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient
from rich.console import Console

from pipelines import promote, score, train
from tests.pipelines.test_serve import HOST, free_port

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

START_TIMEOUT_S = 120.0
QUIET = Console(quiet=True)


@pytest.fixture
def tracking_server(tmp_path, without_proxy):
    """The URL of an ``mlflow server`` that stores runs, models and artifacts under ``tmp_path``."""
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination", str(tmp_path / "artifacts"),
        "--host", HOST, "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            try:
                if requests.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or too slow to answer on a loaded machine
                pass
            assert time.monotonic() < deadline, f"mlflow server not up in {START_TIMEOUT_S:g} s"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
        finally:
            log.close()


def test_train_promote_score_through_a_tracking_server_give_the_local_scores(
    tracking_server, champion_settings, tmp_path
):
    remote = champion_settings.model_copy(
        update={"mlflow": champion_settings.mlflow.model_copy(update={"tracking_uri": tracking_server})}
    )

    train.run(remote, QUIET)
    decision = promote.run(remote, False, None, QUIET)
    served = score.run(remote, 2020, tmp_path / "remote.csv", "pandas", QUIET)
    local = score.run(champion_settings, 2020, tmp_path / "local.csv", "pandas", QUIET)

    assert decision.promoted and served.version == "1"
    client = MlflowClient(tracking_uri=tracking_server, registry_uri=tracking_server)
    name = remote.mlflow.registered_model
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    read = {"county_code": str, "model_version": str}
    remote_scores = pd.read_csv(served.csv, dtype=read).drop(columns="model_version")
    local_scores = pd.read_csv(local.csv, dtype=read).drop(columns="model_version")
    pd.testing.assert_frame_equal(remote_scores, local_scores, check_exact=False, atol=1e-12)
    runs = client.search_runs([client.get_experiment_by_name(remote.mlflow.experiment).experiment_id])
    assert sorted(run.data.tags["mlflow.runName"] for run in runs) == ["promote", "score", "train"]
    assert all(run.info.status == "FINISHED" for run in runs)
    # the score run's files went to the server's artifact store
    (scored,) = [run for run in runs if run.data.tags["mlflow.runName"] == "score"]
    assert {f.path for f in client.list_artifacts(scored.info.run_id, "scores")} == {
        "scores/remote.csv",
        "scores/remote.parquet",
    }

    # the command's stdout is its report: no "🏃 View run ... at http://..." link of MLflow's in it
    config = tmp_path / "remote.toml"
    config.write_text(
        f"[data]\ncache_dir = {json.dumps(str(remote.data.cache_dir))}\n"
        f"features_dir = {json.dumps(str(remote.data.features_dir))}\n"
        f"[outputs]\ndir = {json.dumps(str(tmp_path / 'cli'))}\n"
        f"[mlflow]\ntracking_uri = {json.dumps(tracking_server)}\n",
        encoding="utf-8",
    )
    environment = {k: v for k, v in os.environ.items() if k != "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"}
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "score", "--config", str(config)],
        capture_output=True, text=True, timeout=600, env=environment,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "score: 2844 counties as of 2020" in done.stdout and "View run" not in done.stdout
