"""Runs left RUNNING by a killed job are closed as KILLED by the next job; live ones are not."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import tracking
from pipelines.config import MlflowSettings, Settings
from pipelines.tracking import HOST_TAG, PID_TAG, git_sha, use_tracking


def test_runs_of_dead_processes_are_marked_killed(tmp_path):
    settings = Settings(mlflow=MlflowSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))
    client = use_tracking(settings)
    experiment = client.get_experiment_by_name(settings.mlflow.experiment).experiment_id
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    dead = client.create_run(experiment, tags={HOST_TAG: host, PID_TAG: finished.stdout.strip()})
    alive = client.create_run(experiment, tags={HOST_TAG: host, PID_TAG: str(os.getpid())})
    elsewhere = client.create_run(experiment, tags={HOST_TAG: "another-host", PID_TAG: finished.stdout.strip()})
    untagged = client.create_run(experiment)

    use_tracking(settings)

    status = {run: client.get_run(run.info.run_id).info.status for run in (dead, alive, elsewhere, untagged)}
    assert status[dead] == "KILLED"
    assert [status[r] for r in (alive, elsewhere, untagged)] == ["RUNNING"] * 3

    with pytest.raises(ValueError), tracking.start_run("score") as failed:
        raise ValueError("as_of must be one of the model's periods 2013..2020; got 2031\nmore detail")
    run = client.get_run(failed.info.run_id)
    assert run.info.status == "FAILED"
    assert (
        run.data.tags[tracking.ERROR_TAG] == "ValueError: as_of must be one of the model's periods 2013..2020; got 2031"
    )


def test_the_commit_is_the_checkout_s_wherever_the_job_starts(monkeypatch, tmp_path):
    checkout = Path(tracking.__file__).resolve().parent
    expected = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=checkout)
    if expected.returncode != 0:
        pytest.skip("beltcast is not installed from a git checkout here")
    monkeypatch.chdir(tmp_path)  # not a checkout (or, in a job's folder, another one)

    assert git_sha().split("+dirty.")[0] == expected.stdout.strip()


def test_uncommitted_changes_make_another_code_id(tmp_path):
    def git(*arguments: str) -> str:
        command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *arguments]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    code = tmp_path / "catalog.py"
    code.write_text("seed = 0\n", encoding="utf-8")
    git("add", "catalog.py")
    git("commit", "-q", "-m", "first")
    head = git("rev-parse", "HEAD")

    assert git_sha(tmp_path) == head
    code.write_text("seed = 7\n", encoding="utf-8")
    changed = git_sha(tmp_path)
    assert changed.startswith(f"{head}+dirty.")
    code.write_text("seed = 8\n", encoding="utf-8")
    assert git_sha(tmp_path) not in (changed, head)
    code.write_text("seed = 0\n", encoding="utf-8")
    assert git_sha(tmp_path) == head
    (tmp_path / "notes.txt").write_text("untracked files are not code", encoding="utf-8")
    assert git_sha(tmp_path) == head
    assert git_sha(tmp_path / "nowhere") == "unknown"
