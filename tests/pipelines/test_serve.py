"""``beltcast serve``: the MLflow scoring server answering for the champion of a temporary store.

One server (``pipelines.serve.start``) on a free loopback port serves the module's requests.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from models.estimators import ModelInputError
from pipelines import cli, score, serve
from pipelines.config import Settings
from pipelines.tracking import model_uri, use_tracking

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

HOST = "127.0.0.1"
CAOXIAN = "371721"
AS_OF = 2020
START_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 60.0
VENV_BIN = str(Path(sys.executable).parent)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextmanager
def output_to(log: Path) -> Iterator[None]:
    """Point this process's stdout and stderr descriptors at ``log`` while a child is spawned, so
    the child writes there (``serve.start`` lets the server inherit them)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log.open("wb") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def wait_for_ping(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    pytest.fail(f"the server did not answer /ping within {START_TIMEOUT_S:.0f} s:\n{log.read_text()}")


def stop(process: subprocess.Popen) -> None:
    """Terminate the ``mlflow models serve`` process; uvicorn gets SIGTERM when its parent dies."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(champion_settings, tmp_path_factory) -> Iterator[str]:
    """The base URL of a scoring server for ``county-belt@champion`` (version 1)."""
    log = tmp_path_factory.mktemp("serve") / "server.log"
    port = free_port()
    with output_to(log):
        process = serve.start(champion_settings, host=HOST, port=port)
    try:
        url = f"http://{HOST}:{port}"
        wait_for_ping(process, url, log)
        yield url
    finally:
        stop(process)


def invoke(url: str, columns: list[str], data: list[list]) -> requests.Response:
    payload = {"dataframe_split": {"columns": columns, "data": data}}
    return requests.post(f"{url}/invocations", json=payload, timeout=REQUEST_TIMEOUT_S)


def forecast(url: str, columns: list[str], data: list[list]) -> dict:
    response = invoke(url, columns, data)
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    return prediction


def test_forecast_of_caoxian_equals_the_batch_score(server, champion_settings, tmp_path):
    outputs = score.run(champion_settings, None, tmp_path / "s.csv", "pandas", Console(quiet=True))
    scores = pd.read_csv(outputs.csv, dtype={"county_code": str})
    expected = scores.loc[scores["county_code"] == CAOXIAN, "p_belt"].item()

    prediction = forecast(server, ["county_code", "as_of"], [[CAOXIAN, AS_OF]])

    assert outputs.as_of == AS_OF
    assert prediction["county_code"] == CAOXIAN
    assert prediction["county_name"] == "曹县"
    assert prediction["as_of"] == AS_OF
    assert prediction["what_if"] == ""
    assert prediction["p_belt"] == pytest.approx(expected, abs=1e-12)


def test_unknown_county_code_is_a_400_naming_it(server):
    response = invoke(server, ["county_code", "as_of"], [["999999", AS_OF]])

    assert response.status_code == 400
    assert "county_code '999999' is not a county of the panel" in response.json()["message"]


@pytest.mark.parametrize("year", ["2014x", "twenty"])
def test_a_string_year_is_a_400_naming_as_of(server, year):
    # MLflow's schema enforcement rejects it before the model runs (as_of is `long`).
    response = invoke(server, ["county_code", "as_of"], [[CAOXIAN, year]])

    assert response.status_code == 400
    message = response.json()["message"]
    assert "Failed to convert column as_of to type 'int64'" in message
    assert repr(year) in message


def test_a_request_without_county_code_is_a_400_naming_it(server):
    response = invoke(server, ["as_of"], [[AS_OF]])

    assert response.status_code == 400
    assert "Model is missing inputs ['county_code']" in response.json()["message"]


def test_the_server_keeps_serving_after_bad_requests(server):
    bad = [
        (["county_code", "as_of"], [["999999", AS_OF]]),
        (["county_code", "as_of"], [[CAOXIAN, "2014x"]]),
        (["as_of"], [[AS_OF]]),
    ]
    statuses = [invoke(server, columns, data).status_code for columns, data in bad]

    assert statuses == [400, 400, 400]
    assert forecast(server, ["county_code", "as_of"], [[CAOXIAN, AS_OF]])["county_code"] == CAOXIAN


def test_a_what_if_request_changes_p_belt_and_names_the_feature(server):
    # 23 other belts in Shandong as of 2020; what if there were none? (belts_within_100km would
    # not do: the quick test model never splits on it, so its what-if leaves p_belt unchanged.)
    columns = ["county_code", "as_of"]
    plain = forecast(server, columns, [[CAOXIAN, AS_OF]])
    what_if = forecast(server, [*columns, "belts_same_province"], [[CAOXIAN, AS_OF, 0.0]])

    assert what_if["what_if"] == "belts_same_province"
    assert what_if["p_belt"] < plain["p_belt"] - 0.005


def test_the_server_drops_an_unknown_column(server):
    # MLflow's schema enforcement drops columns outside the signature with a warning in the
    # server log ("Found extra inputs ... These inputs will be ignored"), so the model never sees
    # them: the answer is the plain forecast, not a 400. Calling the model in Python rejects them
    # (test_the_bundle_rejects_an_unknown_column).
    columns = ["county_code", "as_of"]
    plain = forecast(server, columns, [[CAOXIAN, AS_OF]])
    extra = forecast(server, [*columns, "not_a_feature"], [[CAOXIAN, AS_OF, 1.0]])

    assert extra == plain
    assert extra["what_if"] == ""


def test_the_bundle_rejects_an_unknown_column(champion_settings):
    use_tracking(champion_settings)
    model = mlflow.pyfunc.load_model(model_uri(champion_settings.mlflow.registered_model, 1))
    bundle = model.unwrap_python_model().bundle
    request = pd.DataFrame({"county_code": [CAOXIAN], "as_of": [AS_OF], "not_a_feature": [1.0]})

    with pytest.raises(ModelInputError, match=r"unknown column\(s\) \['not_a_feature'\]"):
        bundle.forecast(request)


def test_the_server_command_binds_loopback():
    command = serve.command(Settings(), "127.0.0.1", 5000, 1)

    assert "--host 127.0.0.1 --port 5000 --workers 1" in " ".join(command)
    assert "--model-uri models:/county-belt@champion" in " ".join(command)


def test_beltcast_serve_binds_loopback_by_default(monkeypatch):
    calls = []

    def fake_run(settings, host, port, workers, console) -> int:
        calls.append((host, port, workers))
        return 0

    monkeypatch.setattr(serve, "run", fake_run)

    result = CliRunner().invoke(cli.app, ["serve"])

    assert result.exit_code == 0, result.output
    assert calls == [("127.0.0.1", 5000, 1)]


def test_server_environment_finds_the_venv_uvicorn(monkeypatch):
    # `mlflow models serve --env-manager local` runs `exec uvicorn ...` through bash, so the
    # server's PATH must lead to this venv's uvicorn even when the venv is not activated (as
    # under `make test` or `.venv/bin/beltcast serve`).
    monkeypatch.setenv("PATH", "/usr/bin:/bin")

    env = serve.environment(Settings())

    assert shutil.which("uvicorn", path=env["PATH"]) == os.path.join(VENV_BIN, "uvicorn")


FUZZ_CASES = {"tried": 0, "status": {}}
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
SPLIT_PAYLOADS = st.fixed_dictionaries(
    {
        "dataframe_split": st.fixed_dictionaries(
            {
                "columns": st.lists(
                    st.sampled_from(["county_code", "as_of", "belts_within_100km", "bogus", "曹县"])
                    | st.text(max_size=12),
                    max_size=4,
                ),
                "data": st.lists(st.lists(JSON_SCALARS, max_size=4), max_size=4),
            }
        )
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.one_of(SPLIT_PAYLOADS, JSON_VALUES, st.binary(max_size=200), st.text(max_size=300)))
def test_fuzzed_requests_never_get_a_5xx(server, payload):
    """Malformed, wrong-typed, unicode, binary and empty payloads: a 4xx at worst, never a 5xx or a hang."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
    response = requests.post(
        f"{server}/invocations", data=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    FUZZ_CASES["tried"] += 1
    FUZZ_CASES["status"][response.status_code] = FUZZ_CASES["status"].get(response.status_code, 0) + 1
    assert response.status_code < 500, response.text[:500]


def test_server_survives_the_fuzzing_and_an_oversized_request(server):
    big = {"dataframe_split": {"columns": ["county_code", "as_of"], "data": [["371721", 2020]] * 20000}}
    response = requests.post(f"{server}/invocations", json=big, timeout=120)
    assert response.status_code == 200 and len(response.json()["predictions"]) == 20000
    assert requests.get(f"{server}/ping", timeout=10).status_code == 200
    print(f"fuzz cases tried: {FUZZ_CASES['tried']}, statuses: {FUZZ_CASES['status']}")
