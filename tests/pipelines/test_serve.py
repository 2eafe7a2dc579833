"""``beltcast serve``: the MLflow scoring server answering for the champion of a temporary store.

One server (``pipelines.serve.start``) on a free loopback port serves the module's requests.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from models.estimators import ModelInputError
from pipelines import cli, score, serve
from pipelines.config import Settings, load_settings
from pipelines.tracking import TrackingError, model_uri, use_tracking
from tests.payloads import PAYLOADS, encode

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


@pytest.fixture(scope="module")
def server(champion_settings, tmp_path_factory) -> Iterator[str]:
    """The base URL of a scoring server for ``county-belt@champion`` (version 1), with two worker
    processes (the server of ``test_a_body_over_the_size_limit_is_a_413`` has one)."""
    log = tmp_path_factory.mktemp("serve") / "server.log"
    port = free_port()
    with output_to(log):
        process = serve.start(champion_settings, host=HOST, port=port, workers=2)
    try:
        url = f"http://{HOST}:{port}"
        serve.wait_until_serving(process, url, log, START_TIMEOUT_S)
        yield url
    finally:
        serve.stop(process)


def invoke(url: str, columns: list[str], data: list[list]) -> requests.Response:
    payload = {"dataframe_split": {"columns": columns, "data": data}}
    return requests.post(f"{url}/invocations", json=payload, timeout=REQUEST_TIMEOUT_S)


def post(url: str, body: dict | bytes, content_type: str) -> requests.Response:
    """A request of any format: a JSON object, or the bytes of a CSV or Parquet body."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    return requests.post(
        f"{url}/invocations", data=data, headers={"Content-Type": content_type}, timeout=REQUEST_TIMEOUT_S
    )


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
    assert prediction["last_belt"] == ""  # a belt
    # 南浔区, a belt of 2015 in no roster of 2016, is said so by the server as by the file
    assert forecast(server, ["county_code", "as_of"], [["330503", AS_OF]])["last_belt"] == "2015"


def test_unknown_county_code_is_a_400_naming_it(server):
    response = invoke(server, ["county_code", "as_of"], [["999999", AS_OF]])

    assert response.status_code == 400
    error = response.json()
    assert error["message"].startswith("row 0: county_code '999999' is not a county of the panel")
    assert "\n" not in error["message"] and "stack_trace" not in error  # the model's own line only


def test_a_code_of_another_year_is_a_400_naming_the_code_to_give(server):
    response = invoke(server, ["county_code", "as_of"], [[CAOXIAN, AS_OF], ["510124", AS_OF]])  # 郫县, until 2016

    assert response.status_code == 400
    assert response.json()["message"] == (
        "row 1: county_code '510124' is a code of another year, not of the panel's code list (2020): its area is"
        " 510117 (郫都区) in 2020; give that code"
    )


def test_a_csv_request_is_forecast_as_its_json(server):
    body = f"county_code,as_of,belts_within_100km_share\n{CAOXIAN},{AS_OF},\n{CAOXIAN},{AS_OF},0.2\n"
    response = post(server, body.encode(), "text/csv")
    assert response.status_code == 200, response.text
    plain, what_if = response.json()["predictions"]
    assert plain["p_belt"] == pytest.approx(forecast(server, ["county_code", "as_of"], [[CAOXIAN, AS_OF]])["p_belt"])
    assert (plain["what_if"], what_if["what_if"]) == ("", "belts_within_100km_share")
    bad = post(server, b"county_code,county_code\n371721,371721\n", "text/csv")
    assert bad.status_code == 400
    assert bad.json()["message"] == "the text/csv header must name each column once; got ['county_code'] more than once"


def test_a_batch_with_several_bad_rows_names_every_one(server):
    body = "county_code,as_of\n330503,2020\n33O503,2020\n999999,2020\n131026,2021\n"
    response = post(server, body.encode(), "text/csv")

    assert response.status_code == 400
    assert response.json()["message"].splitlines() == [
        "row 1: county_code must be 6 digits; got '33O503'",
        "row 2: county_code '999999' is not a county of the panel, whose codes are those of 2020: check the code;"
        " a code of another year (renamed, merged or split since) must be given as its 2020 code",
        "row 3: as_of must be one of 2013..2020; got 2021",
    ]


@pytest.mark.parametrize("year", ["2014x", "twenty", True])
def test_a_year_that_is_no_integer_is_a_400_naming_as_of(server, year):
    response = invoke(server, ["county_code", "as_of"], [[CAOXIAN, year]])

    assert response.status_code == 400
    assert f"row 0: as_of must be an integer year; got {year!r}" in response.json()["message"]


def test_a_fractional_year_is_a_400_naming_as_of(server):
    # With as_of declared a long, MLflow would turn 2020.7 into 2020 and answer for that year.
    response = invoke(server, ["county_code", "as_of"], [[CAOXIAN, AS_OF + 0.7]])

    assert response.status_code == 400
    assert f"row 0: as_of must be an integer year; got {AS_OF + 0.7!r}" in response.json()["message"]


def test_a_request_without_county_code_is_a_400_naming_it(server):
    response = invoke(server, ["as_of"], [[AS_OF]])

    assert response.status_code == 400
    assert response.json()["message"].startswith("Model is missing inputs ['county_code']")


def test_a_request_may_leave_out_the_drivers(server):
    payload = {"dataframe_split": {"columns": ["county_code", "as_of"], "data": [[CAOXIAN, AS_OF]]}}
    plain = forecast(server, ["county_code", "as_of"], [[CAOXIAN, AS_OF]])
    response = requests.post(
        f"{server}/invocations", json={**payload, "params": {"drivers": False}}, timeout=REQUEST_TIMEOUT_S
    )

    assert response.status_code == 200, response.text
    (fast,) = response.json()["predictions"]
    assert fast["top_drivers"] == "" and plain["top_drivers"] != ""
    assert fast["p_belt"] == plain["p_belt"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"driver": False}, "params names a parameter the model does not take: 'driver' (the model takes 'drivers');"
         " did you mean 'drivers'?"),
        ({"drivers": False, "top_k": 3}, "not take: 'top_k' (the model takes 'drivers')"),
        ([False], "params must be an object of parameter names and values; got [false]"),
    ],
)  # fmt: skip
def test_a_parameter_the_model_does_not_take_is_a_400_naming_it(server, params, message):
    payload = {"dataframe_split": {"columns": ["county_code", "as_of"], "data": [[CAOXIAN, AS_OF]]}}
    response = requests.post(f"{server}/invocations", json={**payload, "params": params}, timeout=REQUEST_TIMEOUT_S)

    assert response.status_code == 400
    assert message in response.json()["message"]
    assert response.headers["x-model-version"] == "1"


def test_every_answer_names_the_model_version_that_gave_it(server):
    good = invoke(server, ["county_code", "as_of"], [[CAOXIAN, AS_OF]])
    bad = invoke(server, ["county_code", "as_of"], [["999999", AS_OF]])
    guarded = requests.post(f"{server}/invocations", data=b"[" * 100, timeout=REQUEST_TIMEOUT_S)

    assert [good.status_code, bad.status_code, guarded.status_code] == [200, 400, 400]
    for response in (good, bad, guarded):
        assert response.headers["x-model-name"] == "county-belt"
        assert response.headers["x-model-version"] == "1"
    assert [row["model_version"] for row in good.json()["predictions"]] == ["1"]  # as in the score files


def test_an_answer_as_of_a_trained_on_year_says_it_is_in_sample(server):
    """The score files said in_sample, the served answer did not: a strategist asking as of 2014
    got a p_belt of a year the model had learned the outcome of, with nothing to tell."""
    answer = invoke(server, ["county_code", "as_of"], [[CAOXIAN, 2014], [CAOXIAN, 2015], [CAOXIAN, AS_OF]])

    assert answer.status_code == 200
    assert [row["in_sample"] for row in answer.json()["predictions"]] == [True, True, False]


def test_the_model_headers_are_on_any_method_and_a_csv_body_is_not_checked_as_json(server):
    refused = requests.get(f"{server}/invocations", timeout=REQUEST_TIMEOUT_S)
    csv_body = "county_code,as_of\n" + "[" * 70 + ",2020\n"
    bracketed = post(server, csv_body.encode(), "text/csv")

    assert refused.status_code == 405 and refused.headers["x-model-version"] == "1"
    assert bracketed.status_code == 400 and "nested" not in bracketed.json()["message"]
    assert "county_code" in bracketed.json()["message"]  # the model's own check of the code


def test_an_escaped_params_key_is_checked_too(server):
    body = '{"dataframe_split": {"columns": ["county_code"], "data": [["371721"]]}, "par\\u0061ms": {"driver": false}}'
    response = post(server, body.encode(), "application/json")

    assert response.status_code == 400 and "'driver'" in response.json()["message"]


def test_model_headers_need_a_pinned_version():
    from pipelines.scoring_app import json_request, model_headers, unknown_params

    assert model_headers("models:/county-belt/12") == [(b"x-model-name", b"county-belt"), (b"x-model-version", b"12")]
    assert model_headers("models:/县域 belt/2") == [
        (b"x-model-name", b"%E5%8E%BF%E5%9F%9F%20belt"),
        (b"x-model-version", b"2"),
    ]
    assert model_headers("models:/county-belt@champion") == []
    assert model_headers("runs:/abc/model") == []
    assert unknown_params({"dataframe_split": {"columns": ["params"], "data": [["x"]]}}, ["drivers"]) is None
    assert unknown_params({"params": {"drivers": True}}, ["drivers"]) is None
    assert unknown_params({"params": None}, ["drivers"]) is None  # MLflow reads it as no params
    assert json_request(b'{"params": not json') is None  # left to MLflow
    assert json_request(b"[]") is None


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
    # 23 other belts in Shandong as of 2020 (10.6 % of all); what if there were none?
    # (belts_within_100km_share would not do: the quick test model never splits on it, so its
    # what-if leaves p_belt unchanged.)
    columns = ["county_code", "as_of"]
    plain = forecast(server, columns, [[CAOXIAN, AS_OF]])
    what_if = forecast(server, [*columns, "belts_same_province_share"], [[CAOXIAN, AS_OF, 0.0]])

    assert what_if["what_if"] == "belts_same_province_share"
    assert what_if["p_belt"] < plain["p_belt"] - 0.005


MISSPELT = "census_manufacturing_shar_rel"
UNKNOWN = (
    f"request has unknown column(s) '{MISSPELT}' (did you mean 'census_manufacturing_share_rel'?), 'not_a_feature';"
    " expected the model's inputs: county_code, as_of, "
)


def parquet_of(frame: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    frame.to_parquet(sink, index=False)
    return sink.getvalue()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ({"dataframe_split": {"columns": ["county_code", "as_of", MISSPELT, "not_a_feature"],
                              "data": [[CAOXIAN, AS_OF, 0.05, 1]]}}, "application/json"),
        ({"dataframe_records": [{"county_code": CAOXIAN},
                                {"county_code": CAOXIAN, MISSPELT: 0.05, "not_a_feature": 1}]}, "application/json"),
        ({"inputs": {"county_code": [CAOXIAN], MISSPELT: [0.05], "not_a_feature": [1]}}, "application/json"),
        ({"inputs": [{"county_code": CAOXIAN, MISSPELT: 0.05, "not_a_feature": 1}]}, "application/json"),
        ({"instances": [{"county_code": CAOXIAN, MISSPELT: 0.05, "not_a_feature": 1}]}, "application/json"),
        ({"instances": {"county_code": [CAOXIAN], MISSPELT: [0.05], "not_a_feature": [1]}}, "application/json"),
        (f"county_code,{MISSPELT},not_a_feature\n{CAOXIAN},0.05,1\n".encode(), "text/csv"),
        (parquet_of(pd.DataFrame({"county_code": [CAOXIAN], MISSPELT: [0.05], "not_a_feature": [1]})),
         "application/vnd.apache.parquet"),
    ],
    ids=["split", "records", "inputs-columns", "inputs-records", "instances-records", "instances-columns", "csv",
         "parquet"],
)  # fmt: skip
def test_an_unknown_column_is_a_400_naming_it_and_the_nearest_input(server, body, content_type):
    # MLflow's check of the signature would drop it, with a warning in the server's log only, and
    # answer the forecast without the what-if
    response = post(server, body, content_type)

    assert response.status_code == 400
    assert response.json()["message"].startswith(UNKNOWN)
    assert response.json()["error_code"] == "BAD_REQUEST" and response.headers["x-model-version"] == "1"


def test_a_frame_sent_as_pandas_writes_it_is_forecast(server):
    """A row index written by pandas (to_csv's unnamed first column, to_parquet's
    ``__index_level_0__`` of a filtered frame) and a trailing comma name no column: they are no
    unknown column, and the rows are forecast as without them."""
    filtered = pd.DataFrame({"county_code": ["000000", CAOXIAN, "330503"], "as_of": AS_OF}).iloc[1:]  # index 1, 2
    plain = post(server, filtered.to_csv(index=False).encode(), "text/csv")
    sink = io.BytesIO()
    filtered.to_parquet(sink)
    bodies = {
        "csv with its index": (filtered.to_csv().encode(), "text/csv"),
        "csv with a trailing comma": (
            f"county_code,as_of,\r\n{CAOXIAN},{AS_OF},\r\n330503,{AS_OF},\r\n".encode(),
            "text/csv",
        ),
        "parquet with its index": (sink.getvalue(), "application/vnd.apache.parquet"),
    }

    assert plain.status_code == 200, plain.text
    for name, (body, content_type) in bodies.items():
        response = post(server, body, content_type)
        assert response.status_code == 200, (name, response.text)
        assert response.json()["predictions"] == plain.json()["predictions"], name


def test_a_column_named_twice_is_a_400_naming_it(server):
    twice = pa.table([pa.array([CAOXIAN]), pa.array([CAOXIAN])], names=["county_code", "county_code"])
    sink = io.BytesIO()
    pq.write_table(twice, sink)
    split = invoke(server, ["county_code", "county_code"], [[CAOXIAN, CAOXIAN]])
    parquet = post(server, sink.getvalue(), "application/vnd.apache.parquet")

    for response in (split, parquet):
        assert response.status_code == 400
        assert (
            response.json()["message"] == "the request must name each column once; got ['county_code'] more than once"
        )


@pytest.mark.parametrize("form", ["dataframe_records", "inputs"])
def test_a_key_named_twice_in_a_json_row_is_a_400_naming_it(server, form):
    # a JSON parser keeps the last value: the row would be forecast with 0.9, without a word
    row = (
        f'{{"county_code": "{CAOXIAN}", "census_manufacturing_share_rel": 0.05, "census_manufacturing_share_rel": 0.9}}'
    )
    response = post(server, f'{{"{form}": [{row}]}}'.encode(), "application/json")

    assert response.status_code == 400
    assert response.json()["message"] == (
        "the request must name each key of a JSON object once; got 'census_manufacturing_share_rel' more than once"
        f' in the row of county_code "{CAOXIAN}"'
    )


@pytest.mark.parametrize("key", ["inputs", "county_code"])
def test_a_key_named_twice_outside_the_rows_or_the_code_itself_is_a_400_naming_it(server, key):
    row = f'{{"county_code": "{CAOXIAN}", "county_code": "330503"}}' if key == "county_code" else "{}"
    rows = f'[{{"county_code": "{CAOXIAN}"}}]' if key == "inputs" else f"[{row}]"
    body = f'{{"inputs": {rows}, "inputs": {rows}}}' if key == "inputs" else f'{{"inputs": {rows}}}'
    response = post(server, body.encode(), "application/json")

    assert response.status_code == 400
    assert response.json()["message"] == (
        f"the request must name each key of a JSON object once; got {key!r} more than once in one object"
    )


@pytest.mark.parametrize("codes", [[CAOXIAN, "330503"], []])
def test_a_row_of_a_list_of_codes_is_a_400_not_that_many_rows(server, codes):
    words = f"got list of {len(codes)} values (send a DataFrame, one row per county)"
    records = post(server, {"dataframe_records": [{"county_code": codes}]}, "application/json")
    split = invoke(server, ["county_code", "as_of"], [[CAOXIAN, AS_OF], [codes, AS_OF]])

    assert records.status_code == 400
    assert records.json()["message"] == f"row 0: county_code must be one 6-digit code per row; {words}"
    assert split.status_code == 400
    assert split.json()["message"] == f"row 1: county_code must be one 6-digit code per row; {words}"
    columns = post(server, {"inputs": {"county_code": [CAOXIAN, "330503"]}}, "application/json")
    assert columns.status_code == 200 and len(columns.json()["predictions"]) == 2  # a column of codes, as before
    sink = io.BytesIO()
    pq.write_table(pa.table({"county_code": pa.array([codes], type=pa.list_(pa.string()))}), sink)
    parquet = post(server, sink.getvalue(), "application/vnd.apache.parquet")
    assert parquet.status_code == 400
    assert parquet.json()["message"].startswith("row 0: county_code must be one")


def test_a_list_in_a_row_is_named_by_the_guard_where_the_model_does_not_check():
    from models.bundle import bad_rows_message
    from pipelines.scoring_app import frame_of, not_single

    frame = frame_of({"dataframe_records": [{"county_code": CAOXIAN}, {"county_code": [CAOXIAN], "as_of": {"y": 1}}]})
    assert bad_rows_message(not_single(frame, ["viirs_mean_rel"])) == (
        f'row 1: county_code must be one value per row; got ["{CAOXIAN}"]\nrow 1: as_of must be one value per row;'
        ' got {"y": 1}'
    )


def test_a_what_if_of_true_or_false_is_a_400_naming_the_row_and_column(server):
    # MLflow would read true as 1.0 and false as 0.0 and answer a what-if forecast
    columns = ["county_code", "as_of", "census_manufacturing_share_rel", "poverty_county"]
    response = invoke(server, columns, [["330503", AS_OF, True, False]])

    assert response.status_code == 400
    assert response.json()["message"].splitlines() == [
        "row 0: census_manufacturing_share_rel must be a number; got true",
        "row 0: poverty_county must be a number; got false",
    ]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ({"dataframe_records": [{"county_code": CAOXIAN}, {"county_code": CAOXIAN, "poverty_county": True}]},
         "application/json"),
        ({"inputs": {"county_code": [CAOXIAN, CAOXIAN], "poverty_county": [None, True]}}, "application/json"),
        ({"instances": [{"county_code": CAOXIAN, "poverty_county": 0},
                        {"county_code": CAOXIAN, "poverty_county": True}]}, "application/json"),
        (f"county_code,poverty_county\n{CAOXIAN},False\n{CAOXIAN},True\n".encode(), "text/csv"),
        (parquet_of(pd.DataFrame({"county_code": [CAOXIAN, CAOXIAN], "poverty_county": [None, True]})),
         "application/vnd.apache.parquet"),
    ],
    ids=["records", "inputs", "instances", "csv", "parquet"],
)  # fmt: skip
def test_a_what_if_of_true_is_refused_in_every_format(server, body, content_type):
    response = post(server, body, content_type)

    assert response.status_code == 400
    assert response.json()["message"].splitlines()[-1] == "row 1: poverty_county must be a number; got true"


ONE_ROUND_COLUMNS = ["county_code", "poverty_county"]
ONE_ROUND_ROWS = [[CAOXIAN, True], ["999999", 0], [CAOXIAN, 2], ["330503", None]]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ({"dataframe_split": {"columns": ONE_ROUND_COLUMNS, "data": ONE_ROUND_ROWS}}, "application/json"),
        ({"dataframe_records": [dict(zip(ONE_ROUND_COLUMNS, row, strict=True)) for row in ONE_ROUND_ROWS]},
         "application/json"),
        (b"county_code,poverty_county\n371721,true\n999999,0\n371721,2\n330503,\n", "text/csv"),
    ],
    ids=["split", "records", "csv"],
)  # fmt: skip
def test_a_request_with_no_number_for_a_value_names_the_rows_the_model_refuses_too(server, body, content_type):
    # the guard answered for the values alone: the bad code and the value outside its domain came
    # on the next round, once the client had put the first right
    response = post(server, body, content_type)
    next_round = invoke(server, ONE_ROUND_COLUMNS, [[CAOXIAN, None], *ONE_ROUND_ROWS[1:]])

    assert response.status_code == 400 and next_round.status_code == 400
    model_lines = next_round.json()["message"].splitlines()
    assert [line.split(":")[0] for line in model_lines] == ["row 1", "row 2"]
    assert "'999999' is not a county" in model_lines[0] and "poverty_county must be 0 or 1" in model_lines[1]
    first, *rest = response.json()["message"].splitlines()
    assert first in (
        "row 0: poverty_county must be a number; got true",
        "row 0: poverty_county must be a number; got 'true'",
    )
    assert rest == model_lines


def test_a_parquet_column_of_booleans_is_named_with_the_rows_the_model_refuses(server):
    frame = pd.DataFrame({"county_code": [CAOXIAN, "999999"], "poverty_county": [True, None]})
    response = post(server, parquet_of(frame), "application/vnd.apache.parquet")

    lines = response.json()["message"].splitlines()
    assert response.status_code == 400
    assert lines[0] == "row 0: poverty_county must be a number; got true"
    assert lines[1].startswith("row 1: county_code '999999' is not a county of the panel") and len(lines) == 2


def test_a_failing_row_check_leaves_the_guard_s_own_answer():
    from pipelines.scoring_app import RequestGuard

    def broken(table):
        raise ModelInputError("request has unknown column(s) ['x']")

    body = json.dumps({"dataframe_split": {"columns": ["county_code", "poverty_county"], "data": [[CAOXIAN, True]]}})
    for check in (broken, None):
        guard = RequestGuard(None, 2**20, inputs=["county_code", "poverty_county"], numbers=["poverty_county"],
                             row_check=check)  # fmt: skip
        assert guard._json_problem(body.encode()) == "row 0: poverty_county must be a number; got true"


def test_a_large_refused_body_is_not_checked_by_the_model_too(monkeypatch):
    from pipelines import scoring_app

    checked = []
    body = json.dumps({"dataframe_split": {"columns": ["county_code", "poverty_county"], "data": [[CAOXIAN, True]]}})
    guard = scoring_app.RequestGuard(None, 2**20, inputs=["county_code", "poverty_county"], numbers=["poverty_county"],
                                     row_check=lambda table: checked.append(len(table)) or [])  # fmt: skip
    guard._json_problem(body.encode())
    monkeypatch.setattr(scoring_app, "ROW_CHECK_BYTES", len(body) - 1)
    assert guard._json_problem(body.encode()) == "row 0: poverty_county must be a number; got true"
    assert checked == [1]  # the first body only: the second is over the limit


def test_a_parquet_what_if_column_of_text_is_a_400_naming_the_column(server):
    # MLflow refused such a column only once its "5%" row, named by the guard, was put right
    frame = pd.DataFrame({"county_code": [CAOXIAN, CAOXIAN], "census_manufacturing_share_rel": ["0.05", "5%"]})
    response = post(server, parquet_of(frame), "application/vnd.apache.parquet")

    assert response.status_code == 400
    assert response.json()["message"] == (
        "a Parquet request's what-if columns must be of a number type (double or integer); got text in"
        " ['census_manufacturing_share_rel']: write them as numbers"
    )


def test_a_what_if_of_text_is_a_400_naming_the_row_unless_it_reads_as_a_number(server):
    columns = ["county_code", "as_of", "census_manufacturing_share_rel"]
    refused = invoke(server, columns, [[CAOXIAN, AS_OF, 0.05], [CAOXIAN, AS_OF, "5%"]])
    read = forecast(server, columns, [[CAOXIAN, AS_OF, "0.05"]])

    assert refused.status_code == 400
    assert refused.json()["message"] == "row 1: census_manufacturing_share_rel must be a number; got '5%'"
    assert read["what_if"] == "census_manufacturing_share_rel"


def test_a_json_what_if_of_nan_is_a_400_not_the_forecast_without_it(server):
    # MLflow reads NaN as null, no what-if value: a value that went wrong on the client's side
    columns = ["county_code", "as_of", "census_manufacturing_share_rel"]
    data = [[CAOXIAN, AS_OF, "NaN"], [CAOXIAN, AS_OF, float("nan")], [CAOXIAN, AS_OF, None], [CAOXIAN, AS_OF, "nan"]]
    response = post(server, {"dataframe_split": {"columns": columns, "data": data}}, "application/json")

    assert response.status_code == 400
    assert response.json()["message"].splitlines() == [
        "row 0: census_manufacturing_share_rel must be a number; got 'NaN'",
        "row 1: census_manufacturing_share_rel must be a number; got NaN",
        "row 3: census_manufacturing_share_rel must be a number; got 'nan'",
    ]


def test_a_csv_what_if_of_nan_or_null_text_is_a_400_and_only_an_empty_cell_is_none(server):
    # pandas read "NaN", "NULL" and "N/A" as missing: the forecast came back without the what-if
    body = (
        "county_code,as_of,census_manufacturing_share_rel\n"
        f"{CAOXIAN},{AS_OF},NaN\n{CAOXIAN},{AS_OF},\n{CAOXIAN},{AS_OF},NULL\n{CAOXIAN},{AS_OF},N/A\n"
    )
    response = post(server, body.encode(), "text/csv")

    assert response.status_code == 400
    assert response.json()["message"].splitlines() == [
        "row 0: census_manufacturing_share_rel must be a number; got 'NaN'",
        "row 2: census_manufacturing_share_rel must be a number; got 'NULL'",
        "row 3: census_manufacturing_share_rel must be a number; got 'N/A'",
    ]


@pytest.mark.parametrize("content_type", ["application/json", "text/csv", "application/vnd.apache.parquet"])
def test_a_request_of_more_rows_than_the_server_takes_is_a_413_before_it_is_read(server, content_type):
    # an 8 KB Parquet body of a million rows kept a worker busy for minutes after its 504
    frame = pd.DataFrame({"county_code": [CAOXIAN] * 100_001, "as_of": [int(AS_OF)] * 100_001})
    if content_type == "application/json":
        body = {"dataframe_split": {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}}
    elif content_type == "text/csv":
        body = frame.to_csv(index=False).encode()
    else:
        body = parquet_of(frame)
    response = post(server, body, content_type)

    assert response.status_code == 413
    assert response.json() == {
        "error_code": "REQUEST_TOO_LARGE",
        "message": "the request has 100,001 rows; the server takes at most 100,000 per request"
        " (BELTCAST_MAX_REQUEST_ROWS): send it in parts, or score large batches with `beltcast score` or"
        " `mlflow.pyfunc.load_model`",
    }
    assert forecast(server, ["county_code", "as_of"], [[CAOXIAN, AS_OF]])["county_code"] == CAOXIAN


def test_a_long_value_is_shown_cut_short_and_a_number_too_long_to_read_is_a_400(server):
    # a 50 MB county code came back whole in the 400; a 5,000-digit number was a 500
    code = "3" * 2**20
    refused = invoke(server, ["county_code", "as_of"], [[code, AS_OF]])
    assert refused.status_code == 400 and len(refused.text) < 1000, refused.text[:300]
    assert "'33333" in refused.json()["message"] and "..." in refused.json()["message"]

    digits = b'{"dataframe_split": {"columns": ["county_code", "as_of"], "data": [["330503", 1' + b"0" * 5000 + b"]]}}"
    response = post(server, digits, "application/json")
    assert response.status_code == 400
    assert response.json()["message"].startswith("a number of the request has more than 4,300 digits")


@pytest.mark.parametrize(
    ("variable", "value"),
    [("BELTCAST_MAX_REQUEST_ROWS", "0"), ("BELTCAST_MAX_REQUEST_ROWS", "1e5"), ("BELTCAST_MAX_REQUEST_MB", "inf")],
)
def test_a_request_limit_that_is_no_positive_number_is_named(monkeypatch, variable, value):
    from pipelines.scoring_app import max_request_bytes, max_request_rows

    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"{variable} must be .*; got {value!r}"):
        max_request_rows() if variable.endswith("ROWS") else max_request_bytes()


def test_the_bundle_rejects_an_unknown_column(champion_settings):
    use_tracking(champion_settings)
    model = mlflow.pyfunc.load_model(model_uri(champion_settings.mlflow.registered_model, 1))
    bundle = model.unwrap_python_model().bundle
    request = pd.DataFrame({"county_code": [CAOXIAN], "as_of": [AS_OF], "not_a_feature": [1.0]})

    with pytest.raises(ModelInputError, match=r"unknown column\(s\) \['not_a_feature'\]"):
        bundle.forecast(request)


def test_the_scoring_settings_reach_the_loaded_model_in_batch_and_served(champion_settings, tmp_path, monkeypatch):
    from models.compiled import default_cache_dir
    from pipelines.config import ScoringSettings
    from pipelines.scoring_app import load_served_model
    from pipelines.tracking import load_pinned

    use_tracking(champion_settings)
    uri = model_uri(champion_settings.mlflow.registered_model, 1)
    off = champion_settings.model_copy(update={"scoring": ScoringSettings(compiled=False)})
    elsewhere = champion_settings.model_copy(
        update={"scoring": ScoringSettings(compiled_cache_dir=tmp_path / "objects")}
    )

    def cache_of(model):
        return model.unwrap_python_model().bundle.compiled_cache

    assert champion_settings.scoring.as_model_config() == {}
    assert cache_of(load_pinned(uri, RuntimeError, champion_settings.scoring.as_model_config())) == default_cache_dir()
    assert cache_of(load_pinned(uri, RuntimeError, off.scoring.as_model_config())) is None
    assert cache_of(load_pinned(uri, RuntimeError, elsewhere.scoring.as_model_config())) == tmp_path / "objects"
    assert "SERVING_MODEL_CONFIG" not in serve.environment(champion_settings, uri)
    monkeypatch.setenv("SERVING_MODEL_CONFIG", serve.environment(off, uri)["SERVING_MODEL_CONFIG"])
    assert cache_of(load_served_model(uri)) is None  # what each worker of `beltcast serve` loads


def test_the_server_command_binds_loopback_and_runs_the_guarded_app():
    from pipelines.scoring_app import APP

    command = serve.command("127.0.0.1", 5000, 1)

    assert command[:3] == [sys.executable, "-m", "pipelines.scoring_app"]
    assert command[3:] == ["--host", "127.0.0.1", "--port", "5000", "--workers", "1"]
    assert serve.command("0.0.0.0", 80, 2, "a.example")[-2:] == ["--allowed-hosts", "a.example"]
    assert APP == "pipelines.scoring_app:create_app"


def _accepted_nodelay(listener: socket.socket) -> int:
    """TCP_NODELAY of the connection asyncio accepts on ``listener`` (as uvicorn's workers do)."""
    import asyncio

    async def accept_one() -> int:
        accepted = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        host, port = listener.getsockname()[:2]
        _, writer = await asyncio.open_connection(host, port)
        try:
            return await asyncio.wait_for(accepted, timeout=10)
        finally:
            writer.close()
            server.close()

    return asyncio.run(accept_one())


def test_the_listening_sockets_give_their_connections_tcp_nodelay():
    from pipelines.scoring_app import listening_sockets, url_of

    # the cause, on this Python: a listener made with proto 0 (as uvicorn binds one for several
    # workers) gives connections with Nagle's algorithm on
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as plain:
        plain.bind((HOST, 0))
        plain.listen()
        assert _accepted_nodelay(plain) == 0

    (ours,) = listening_sockets(HOST, 0)
    with ours:
        assert ours.proto == socket.IPPROTO_TCP and ours.get_inheritable()
        assert url_of(ours) == f"http://{HOST}:{ours.getsockname()[1]}"
        assert _accepted_nodelay(ours) != 0


def test_a_host_is_listened_on_at_every_address_it_resolves_to():
    from pipelines.scoring_app import listening_sockets, url_of

    expected = {info[4][0] for info in socket.getaddrinfo("localhost", 0, type=socket.SOCK_STREAM)}
    try:
        sockets = listening_sockets("localhost", 0)
    except OSError as err:  # an address of localhost this machine cannot bind (IPv6 turned off)
        pytest.skip(str(err))
    try:
        assert {sock.getsockname()[0] for sock in sockets} == expected
        assert all(sock.proto == socket.IPPROTO_TCP for sock in sockets)
        assert all(url_of(sock).startswith("http://[") == (sock.family == socket.AF_INET6) for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


def run_server(port: int, workers: int, env: dict | None = None) -> subprocess.CompletedProcess:
    """The server's command in the foreground, for a server expected to stop by itself."""
    return subprocess.run(
        serve.command(HOST, port, workers), env=env, capture_output=True, text=True, timeout=300,
        cwd=Path(__file__).parents[2],
    )  # fmt: skip


@pytest.mark.parametrize("workers", [1, 2])
def test_a_model_that_cannot_load_stops_the_server_with_status_3(tmp_path, workers):
    env = dict(os.environ, BELTCAST_SERVE_MODEL_URI="models:/no-such-model/1")
    env["MLFLOW_TRACKING_URI"] = env["MLFLOW_REGISTRY_URI"] = f"sqlite:///{tmp_path / 'empty.db'}"
    result = run_server(free_port(), workers, env)

    assert result.returncode == 3  # not restarted again and again by uvicorn's supervisor
    assert "cannot serve models:/no-such-model/1" in result.stderr


def test_a_port_in_use_is_named_and_the_server_exits():
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_server(port, 2)

    assert result.returncode == 3
    assert f"cannot listen on {HOST}:{port}" in result.stderr


def test_the_server_pins_the_champion_version_of_the_configured_registry(champion_settings):
    uri = serve.champion_uri(champion_settings)
    env = serve.environment(champion_settings, uri)

    assert uri == "models:/county-belt/1"
    assert env["BELTCAST_SERVE_MODEL_URI"] == uri
    assert env["MLFLOW_TRACKING_URI"] == env["MLFLOW_REGISTRY_URI"] == champion_settings.mlflow.tracking_uri


def test_serving_without_a_champion_is_a_clear_error(tmp_path):
    from pipelines.config import MlflowSettings

    settings = Settings(mlflow=MlflowSettings(tracking_uri=f"sqlite:///{tmp_path / 'empty.db'}"))
    with pytest.raises(TrackingError, match=f"there is no MLflow store at {tmp_path / 'empty.db'} "):
        serve.champion_uri(settings)
    assert not (tmp_path / "empty.db").exists()  # not left behind, empty
    use_tracking(settings)  # a store, with no model in it
    with pytest.raises(serve.ServeError, match="has no 'champion'; run `beltcast train` and `beltcast promote`"):
        serve.champion_uri(settings)


def test_beltcast_serve_without_a_champion_is_a_clear_error(tmp_path):
    config = tmp_path / "beltcast.toml"
    config.write_text(f'[mlflow]\ntracking_uri = "sqlite:///{tmp_path / "empty.db"}"\n', encoding="utf-8")
    use_tracking(load_settings(config))

    result = CliRunner().invoke(cli.app, ["serve", "--config", str(config)])

    assert result.exit_code == 1
    assert "error: registered model 'county-belt' has no 'champion'" in result.output
    assert "Traceback" not in result.output


def test_beltcast_serve_binds_loopback_by_default(monkeypatch):
    calls = []

    def fake_run(settings, host, port, workers, console, timeout, allowed_hosts) -> None:
        calls.append((host, port, workers, timeout, allowed_hosts))

    monkeypatch.setattr(serve, "run", fake_run)

    result = CliRunner().invoke(cli.app, ["serve"])

    assert result.exit_code == 0, result.output
    assert calls == [("127.0.0.1", 5000, 1, None, None)]
    assert CliRunner().invoke(cli.app, ["serve", "--timeout", "300", "--allowed-hosts", "a.example"]).exit_code == 0
    assert calls[-1] == ("127.0.0.1", 5000, 1, 300, "a.example")
    empty = CliRunner().invoke(cli.app, ["serve", "--host", ""])  # it listened on every interface, without a word
    assert empty.exit_code == 2 and "must be an address or host name; got ''" in empty.output
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("host", "given", "expected"),
    [
        ("127.0.0.1", None, ["127.0.0.1", "localhost", "::1"]),
        ("localhost", None, ["localhost", "127.0.0.1", "::1"]),
        ("::1", None, ["::1", "localhost", "127.0.0.1"]),
        ("0.0.0.0", None, None),
        ("10.1.2.3", None, None),
        ("127.0.0.1", "Forecast.Example, [::1]", ["forecast.example", "::1"]),
        ("0.0.0.0", "*", None),
    ],
)
def test_a_loopback_server_answers_only_its_own_names_unless_told_others(host, given, expected):
    from pipelines.scoring_app import allowed_hosts

    assert allowed_hosts(host, given) == expected


def test_a_request_addressed_to_another_host_or_to_fastapi_s_pages_is_refused(server):
    # a page of another site whose name resolves to 127.0.0.1 (DNS rebinding) could read forecasts;
    # FastAPI's /docs loaded its JavaScript from a CDN
    body = {"dataframe_split": {"columns": ["county_code", "as_of"], "data": [[CAOXIAN, AS_OF]]}}
    port = server.rpartition(":")[2]
    for host in ("evil.example", f"evil.example:{port}"):
        refused = requests.post(f"{server}/invocations", json=body, headers={"Host": host}, timeout=REQUEST_TIMEOUT_S)
        assert refused.status_code == 403
        assert refused.json()["message"].startswith(
            "the request is addressed to host 'evil.example', which this server does not answer to (it answers"
            " 127.0.0.1, localhost, ::1)"
        )
    for host in (f"localhost:{port}", f"[::1]:{port}", "127.0.0.1"):
        answered = requests.post(f"{server}/invocations", json=body, headers={"Host": host}, timeout=REQUEST_TIMEOUT_S)
        assert answered.status_code == 200, (host, answered.text)
    for page in ("/docs", "/openapi.json", "/redoc"):
        assert requests.get(f"{server}{page}", timeout=REQUEST_TIMEOUT_S).status_code == 404
    assert requests.get(f"{server}/ping", timeout=REQUEST_TIMEOUT_S).status_code == 200


FUZZ_CASES = {"tried": 0, "status": {}}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=PAYLOADS)
def test_fuzzed_requests_never_get_a_5xx(server, payload):
    """Malformed, wrong-typed, unicode, binary and empty payloads: a 4xx at worst, never a 5xx or a hang."""
    body = encode(payload)
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


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"[" * 10_000 + b"]" * 10_000, 400, "nested deeper than 64 levels"),
        (b"{" * 5_000, 400, "nested deeper than 64 levels"),
        (b'{"a": ' * 100 + b"1" + b"}" * 100, 400, "nested deeper than 64 levels"),
    ],
    ids=["deep-list", "unclosed-objects", "deep-objects"],
)
def test_deeply_nested_json_is_a_400_not_a_500(server, body, status, message):
    response = requests.post(
        f"{server}/invocations", data=body, headers={"Content-Type": "application/json"}, timeout=60
    )
    assert response.status_code == status and message in response.json()["message"]


def test_brackets_inside_strings_do_not_count_as_nesting():
    from pipelines.scoring_app import nesting_depth

    assert nesting_depth(b'{"dataframe_split": {"columns": ["[[[[{{{{"], "data": [["\\"]]]"]]}}') == 4
    assert nesting_depth(b"") == 0
    assert nesting_depth(b"[" * 70) == 70


def _depth_by_hand(body: bytes) -> int:
    """Nesting depth, one character at a time, by :func:`nesting_depth`'s rule: a ``"`` starts or
    ends a string unless an odd number of backslashes comes before it (in a valid body there are
    backslashes only in strings; a parser stops at one outside, where the depth so far is right)."""
    depth = deepest = backslashes = 0
    in_string = False
    for character in body.decode():
        if character == '"' and backslashes % 2 == 0:
            in_string = not in_string
        elif character in "[{" and not in_string:
            depth += 1
            deepest = max(deepest, depth)
        elif character in "]}" and not in_string:
            depth -= 1
        backslashes = backslashes + 1 if character == "\\" else 0
    return deepest


@settings(max_examples=300, deadline=None)
@given(body=st.text(alphabet='[]{}"\\a', max_size=60), chunk=st.integers(1, 9))
def test_the_nesting_depth_read_in_chunks_is_the_depth_of_the_whole_body(body, chunk):
    from pipelines.scoring_app import nesting_depth

    encoded = body.encode()
    assert nesting_depth(encoded, chunk) == nesting_depth(encoded) == _depth_by_hand(encoded)


def test_the_nesting_depth_of_a_long_string_takes_little_memory():
    # a 50 MB string in a request took the server from 455 MB to 6.4 GB (a regular expression's stack)
    import tracemalloc

    from pipelines.scoring_app import nesting_depth

    body = b'{"dataframe_split": {"columns": ["county_code"], "data": [["' + b"3" * 20 * 2**20 + b'\\"[["]]}}'
    tracemalloc.start()
    try:
        assert nesting_depth(body) == 4
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MB for a body of {len(body) / 2**20:.0f} MB"


def test_a_body_over_the_size_limit_is_a_413(champion_settings, tmp_path, monkeypatch):
    monkeypatch.setenv("BELTCAST_MAX_REQUEST_MB", "0.01")
    log, port = tmp_path / "server.log", free_port()
    with output_to(log):
        process = serve.start(champion_settings, host=HOST, port=port)
    try:
        url = f"http://{HOST}:{port}"
        serve.wait_until_serving(process, url, log, START_TIMEOUT_S)
        big = {"dataframe_split": {"columns": ["county_code", "as_of"], "data": [[CAOXIAN, AS_OF]] * 2000}}
        response = requests.post(f"{url}/invocations", json=big, timeout=60)
        assert response.status_code == 413 and "exceeds 10,485 bytes" in response.json()["message"]
        assert response.json()["error_code"] == "REQUEST_TOO_LARGE"
        assert forecast(url, ["county_code", "as_of"], [[CAOXIAN, AS_OF]])["county_name"] == "曹县"
    finally:
        serve.stop(process)


def test_a_bad_size_limit_names_the_variable(monkeypatch):
    from pipelines.scoring_app import max_request_bytes

    monkeypatch.setenv("BELTCAST_MAX_REQUEST_MB", "lots")
    with pytest.raises(ValueError, match="BELTCAST_MAX_REQUEST_MB must be a number of megabytes; got 'lots'"):
        max_request_bytes()


@pytest.mark.parametrize(
    ("message", "plain"),
    [
        ("Failed to predict data '  county_code\n0 999999'. \nError: row 0: county_code '999999' is not a county",
         "row 0: county_code '999999' is not a county"),
        ("Failed to enforce schema of data '  viirs_mean\n0 x' with schema '[...]'. Error: Incompatible input types"
         " for column viirs_mean.", "Incompatible input types for column viirs_mean."),
        ("the JSON body is nested deeper than 64 levels", "the JSON body is nested deeper than 64 levels"),
        ("Failed to predict data '  as_of\n0 x'. \nError: row 0: as_of must be an integer year; got 'Error: 2025'",
         "row 0: as_of must be an integer year; got 'Error: 2025'"),  # the cause may echo a value
        ("Invalid input. Ensure that input is a valid JSON formatted string. Error: 'x'\nInput: \n{\"dataframe",
         "Invalid input. Ensure that input is a valid JSON formatted string. Error: 'x'"),
    ],
)  # fmt: skip
def test_an_error_answer_keeps_the_cause_without_the_request_dump_or_stack_trace(message, plain):
    from pipelines.scoring_app import _plain_error

    body = json.dumps({"error_code": "BAD_REQUEST", "message": message, "stack_trace": "Traceback ..."}).encode()
    assert json.loads(_plain_error(body)) == {"error_code": "BAD_REQUEST", "message": plain}
    assert json.loads(_plain_error(b"not json")) == {"error_code": "BAD_REQUEST", "message": "not json"}
    assert json.loads(_plain_error(b"oops", 500)) == {"error_code": "INTERNAL_ERROR", "message": "oops"}


def test_a_request_over_the_time_limit_is_a_504_in_json_saying_what_to_do(champion_settings, tmp_path):
    log, port = tmp_path / "server.log", free_port()
    with output_to(log):
        process = serve.start(champion_settings, host=HOST, port=port, timeout=1)
    try:
        url = f"http://{HOST}:{port}"
        serve.wait_until_serving(process, url, log, START_TIMEOUT_S)
        counties = pd.read_parquet(champion_settings.data.features_dir / "panel.parquet", columns=["county_code"])
        rows = [[code, AS_OF] for code in counties["county_code"].unique()] * 20  # drivers for ~57,000 rows
        response = invoke(url, ["county_code", "as_of"], rows)
        assert response.status_code == 504 and response.headers["content-type"] == "application/json"
        error = response.json()
        assert error["error_code"] == "REQUEST_TIMEOUT"
        assert "limit of 1 s (MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT; `beltcast serve --timeout`)" in error["message"]
        assert '"params": {"drivers": false}' in error["message"]
    finally:
        serve.stop(process)


def test_serve_timeout_is_passed_to_the_server(champion_settings, monkeypatch):
    monkeypatch.delenv("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", raising=False)
    assert serve.environment(champion_settings, "models:/m/1", 90)["MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"] == "90"
    assert "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT" not in serve.environment(champion_settings, "models:/m/1")
    result = CliRunner().invoke(cli.app, ["serve", "--timeout", "0"])
    assert result.exit_code == 2 and "must be at least 1; got 0" in result.output


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "the text/csv body cannot be read: expected a header row, then one row per county; No columns to parse"),
        (b"county_code,as_of,as_of\n1,2,3\n", "the text/csv header must name each column once; got ['as_of']"),
        ("county_code\n曹县\n".encode("gbk"), "the text/csv body must be UTF-8"),
        (b"county_code,as_of\n330503,2020\n\n330503,2020,9\n", "every text/csv row must have as many fields as the"
         " header (2: county_code, as_of); got 3 in data row 2 (line 4)"),  # pandas would shift it by one column
        (b'county_code,as_of\n"371721\n",2020\n \n330503,2020,9\n', "every text/csv row must have as many fields as"
         " the header (2: county_code, as_of); got 3 in data row 2 (line 5)"),  # a quoted field spans two lines
        (b"county_code,as_of\n330503\n", "every text/csv row must have as many fields as the header (2: county_code,"
         " as_of); got 1 in data row 1 (line 2)"),
    ],
)  # fmt: skip
def test_a_csv_body_is_the_json_it_means_or_a_400_naming_the_problem(body, problem):
    from pipelines.scoring_app import _csv_as_json

    converted, error = _csv_as_json(
        "\ufeffcounty_code,as_of,viirs_mean_rel\r\n371721,2020,\r\n371721,,0.5\r\n".encode()
    )
    assert error is None
    assert json.loads(converted) == {
        "dataframe_split": {
            "columns": ["county_code", "as_of", "viirs_mean_rel"],
            "data": [["371721", "2020", None], ["371721", None, 0.5]],
        }
    }
    assert _csv_as_json(body)[1][0] == 400 and _csv_as_json(body)[1][1].startswith(problem)
    assert _csv_as_json(b"county_code,as_of\n330503,2020\n   \n")[1] is None  # an all-space line is no row
    assert _csv_as_json(b"county_code,as_of\n , \n330503,2020,9\n")[1][1].endswith("got 3 in data row 2 (line 3)")
    assert "got 3 in data row 2 (line 3)" in _csv_as_json(b"county_code,as_of\n330503,2020\n,,\n")[1][1]
    # a number keeps its value (inf, for the model to refuse; no rounding), text stays text
    converted, _ = _csv_as_json(b"county_code,taobao_villages,belts_within_50km_share,viirs_mean\n371721,inf,4e-11,x\n")
    assert json.loads(converted)["dataframe_split"]["data"] == [["371721", float("inf"), 4e-11, "x"]]
