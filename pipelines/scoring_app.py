"""The scoring server's ASGI app: MLflow's scoring server behind a request guard.

``beltcast serve`` runs this module under uvicorn. The model is the one named by
``BELTCAST_SERVE_MODEL_URI`` (``serve`` sets it to ``models:/<registered model>@champion`` of the
configured registry), loaded once per worker by MLflow's own scoring server, which answers
``/ping``, ``/health``, ``/version`` and ``/invocations`` exactly as ``mlflow models serve`` does.

In front of ``/invocations``, :class:`RequestGuard` answers two kinds of hostile body before
they reach MLflow, where they would cost a 5xx or the server's memory:

- a body larger than ``BELTCAST_MAX_REQUEST_MB`` (default 256) gets **413**;
- JSON nested deeper than :data:`MAX_DEPTH` levels gets **400** (Python's JSON parser would
  hit its recursion limit, which MLflow's server reports as a 500).

It also makes MLflow's answers usable, and refuses what MLflow would let through without a word:

- a ``text/csv`` body (a header row, then one row per request row) is passed on as the JSON
  ``dataframe_split`` it means, ``county_code`` and ``as_of`` read as text: MLflow's own CSV
  path cannot enforce the model's signature, whose ``as_of`` is of any type, and fails;
- an error answer keeps the cause's message (MLflow puts the whole request's table in
  front of the model's errors and of its own signature check's, ``Failed to predict data '...'.
  Error: ...``) and drops the server's stack trace; an answer of plain text becomes JSON;
- a request over MLflow's time limit (``MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT``, ``beltcast serve
  --timeout``) gets a 504 whose JSON says the limit and what to do instead of MLflow's text;
- a JSON body whose ``params`` name a parameter the model does not take (``"driver"``) gets
  **400** naming it and the model's parameters: MLflow would ignore it with a warning in the
  server's log, and answer as if it had not been sent;
- a request (JSON in any of MLflow's formats, CSV or Parquet) with a column the model does not
  take (a misspelt indicator) gets **400** naming it, and the model's input nearest to it: MLflow
  would drop it with a warning in the server's log, and answer as if it had not been sent;
- a request naming a column twice gets **400** naming it (MLflow's answer would be pandas'
  ``Length of values (2) does not match length of index (1)``);
- a request (JSON, CSV or Parquet) whose what-if value (a column the signature types as a number)
  is ``true``/``false`` or text that is no number gets **400** naming every such row, its column
  and value: MLflow would read ``true`` as 1.0 (pandas' ``astype`` in its
  ``dataframe_from_parsed_json``) and name the column only for ``"5%"`` or a Parquet column of
  booleans.

Every answer to ``/invocations`` says which model answered it, in the headers
``X-Model-Name`` and ``X-Model-Version`` (from ``BELTCAST_SERVE_MODEL_URI``,
``models:/<name>/<version>``), and every forecast row in its ``model_version`` (the model is
loaded told its version, :func:`load_served_model`), so a client can record the version each
forecast came from.

``python -m pipelines.scoring_app --host H --port P --workers N`` runs it (what ``beltcast
serve`` does): uvicorn on listening sockets made here, see :func:`listening_sockets`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import csv
import difflib
import io
import ipaddress
import json
import logging
import math
import os
import re
import socket
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from models.bundle import RowProblem

APP = "pipelines.scoring_app:create_app"
MODEL_URI_VARIABLE = "BELTCAST_SERVE_MODEL_URI"
MAX_REQUEST_VARIABLE = "BELTCAST_MAX_REQUEST_MB"
MAX_ROWS_VARIABLE = "BELTCAST_MAX_REQUEST_ROWS"
ALLOWED_HOSTS_VARIABLE = "BELTCAST_SERVE_ALLOWED_HOSTS"  # set by main for its workers
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
HIDDEN_PATHS = ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect")  # FastAPI's pages: not served
TIMEOUT_VARIABLE = "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"  # MLflow's: seconds before a request gets 504
MAX_DEPTH = 64
STARTUP_FAILURE = 3  # uvicorn's exit status for a server that could not start
OPEN, CLOSE = (ord("["), ord("{")), (ord("]"), ord("}"))
QUOTE, BACKSLASH = ord('"'), ord("\\")
# MLflow's error messages that print the request before the cause: prefix -> the separator after the dump
DUMPED_REQUEST = {
    "Failed to predict data '": "'. \nError: ",
    "Failed to enforce schema of data '": "'. Error: ",
}
ECHOED_BODY = "\nInput: \n"  # MLflow's invalid-JSON error ends with the whole body
MODEL_VERSION_URI = re.compile(r"models:/(?P<name>[^/@]+)/(?P<version>\d+)")
FRAME_FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")  # MLflow's JSON request formats
PARQUET = b"application/vnd.apache.parquet"
NAMED_COLUMNS = 20  # the unknown columns of a request an error names; it counts the others
ROW_CHECK_BYTES = 4 * 2**20  # a refused body up to this size also gets the model's own bad rows named


def nesting_depth(body: bytes, chunk: int = 2**18) -> int:
    """Deepest ``[``/``{`` nesting of a JSON body (brackets inside strings do not count), read
    ``chunk`` bytes at a time: memory bounded whatever the body (a regular expression over its
    strings took 115 bytes of memory per byte of a long string). A ``"`` ends or starts a string
    unless an odd number of backslashes comes before it."""
    depth = deepest = 0
    in_string, backslashes = False, 0  # carried from one chunk to the next
    for start in range(0, len(body), chunk):
        part = np.frombuffer(body, dtype=np.uint8, count=min(chunk, len(body) - start), offset=start)
        quote = part == QUOTE
        is_backslash = part == BACKSLASH
        if is_backslash.any() or backslashes:
            at = np.arange(len(part), dtype=np.int32)
            last_other = np.maximum.accumulate(np.where(is_backslash, -1, at))  # the last non-backslash so far
            run = np.where(last_other < 0, at + 1 + backslashes, at - last_other)  # backslashes ending here
            quote[1:] &= run[:-1] % 2 == 0  # ... ending just before
            quote[0] &= backslashes % 2 == 0
            backslashes = int(run[-1])
        inside = np.logical_xor.accumulate(quote) ^ in_string  # a closing quote is outside, which is no bracket
        step = (part == OPEN[0]).view(np.int8) + (part == OPEN[1]).view(np.int8)
        step -= (part == CLOSE[0]).view(np.int8) + (part == CLOSE[1]).view(np.int8)
        step[inside] = 0
        levels = np.cumsum(step, dtype=np.int64) + depth
        deepest = max(deepest, int(levels.max(initial=depth)))
        depth, in_string = int(levels[-1]), bool(inside[-1])
    return deepest


def max_request_bytes() -> int:
    text = os.environ.get(MAX_REQUEST_VARIABLE, "64")
    try:
        megabytes = float(text)
    except ValueError:
        raise ValueError(f"{MAX_REQUEST_VARIABLE} must be a number of megabytes; got {text!r}") from None
    if not 0 < megabytes < math.inf:
        raise ValueError(f"{MAX_REQUEST_VARIABLE} must be a positive number of megabytes; got {text!r}")
    return int(megabytes * 2**20)


def max_request_rows() -> int:
    """The most rows a request may have (``BELTCAST_MAX_REQUEST_ROWS``, 100,000): a body within the
    size limit may still hold far more (a Parquet body of 8 KB held a million rows, which took the
    worker minutes after its 504), and larger batches are ``beltcast score``'s."""
    text = os.environ.get(MAX_ROWS_VARIABLE, "100000")
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"{MAX_ROWS_VARIABLE} must be a whole number of rows, at least 1; got {text!r}")
    return int(text)


def too_many_rows(rows: int, limit: int) -> tuple[int, str] | None:
    """The 413 of a request of more than ``limit`` rows, or None."""
    if rows <= limit:
        return None
    return (
        413,
        f"the request has {rows:,} rows; the server takes at most {limit:,} per request ({MAX_ROWS_VARIABLE}):"
        " send it in parts, or score large batches with `beltcast score` or `mlflow.pyfunc.load_model`",
    )


def request_rows(request: dict) -> int:
    """The rows of a JSON request in any of :data:`FRAME_FORMATS` (0 for another form, which MLflow
    refuses): a table's rows, or the longest column of a dict of columns."""
    for form in FRAME_FORMATS:
        table = request.get(form)
        if form == "dataframe_split" and isinstance(table, dict):
            table = table.get("data")
        if isinstance(table, list):
            return len(table)
        if isinstance(table, dict):
            return max((len(values) for values in table.values() if isinstance(values, list)), default=1)
    return 0


def model_headers(uri: str) -> list[tuple[bytes, bytes]]:
    """``X-Model-Name`` and ``X-Model-Version`` of a ``models:/<name>/<version>`` URI (none for
    another form of URI, whose version is not known without a registry)."""
    match = MODEL_VERSION_URI.fullmatch(uri)
    if match is None:
        return []
    name = urllib.parse.quote(match["name"], safe="-_.~+@!$&'()*,;=:")  # a header value is ASCII
    return [(b"x-model-name", name.encode()), (b"x-model-version", match["version"].encode())]


def nearest(name: object, known: list[str]) -> str | None:
    """The name in ``known`` nearest to ``name`` (difflib's, at a similarity of 0.6 or more), or None."""
    close = difflib.get_close_matches(str(name), known, n=1)
    return close[0] if close else None


class TooMany(Exception):
    """A request of more rows than the server takes: its answer (:func:`too_many_rows`)."""

    def __init__(self, problem: tuple[int, str]):
        super().__init__(problem[1])
        self.problem = problem


class RepeatedKey(Exception):
    """A JSON object of a request names a key more than once (JSON parsers keep the last value)."""

    def __init__(self, key: str, code: object = None):
        super().__init__(key)
        self.key = key
        self.code = code  # the object's county_code, which names the row, if it has one

    def __str__(self) -> str:
        code = json.dumps(self.code, ensure_ascii=False)
        shown = code if len(code) <= 40 else code[:37] + "..."
        where = "one object" if self.code is None else f"the row of county_code {shown}"
        return f"the request must name each key of a JSON object once; got {self.key!r} more than once in {where}"


def _object_of_unique_keys(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        repeated = next(key for key, count in collections.Counter(k for k, _ in pairs).items() if count > 1)
        codes = [v for k, v in pairs if k == "county_code" and isinstance(v, str | int | float)]
        code = codes[0] if repeated != "county_code" and codes else None
        raise RepeatedKey(repeated, code)
    return obj


def json_request(body: bytes) -> dict | None:
    """A JSON body's object, or None for a body that is none (left to MLflow, which names the problem).

    Raises
    ------
    RepeatedKey
        An object in it names a key twice: a row of ``dataframe_records`` naming a column twice
        would otherwise be read with its last value, without a word.
    """
    try:
        request = json.loads(body, object_pairs_hook=_object_of_unique_keys)
    except ValueError as err:  # a UnicodeDecodeError too
        if "integer string conversion" in str(err):  # MLflow's reading would fail the same way, as a 500
            raise TooLongNumber(str(err)) from None
        return None
    return request if isinstance(request, dict) else None


class TooLongNumber(ValueError):
    """A JSON request holds an integer of more digits than Python reads (``sys.get_int_max_str_digits``)."""

    def __str__(self) -> str:
        return (
            f"a number of the request has more than {sys.get_int_max_str_digits():,} digits, more than Python"
            " reads; expected numbers a model input can hold"
        )


def unknown_params(request: dict, accepted: list[str]) -> str | None:
    """What is wrong with a JSON request's ``params``, or None: an object of the model's parameters only."""
    params = request.get("params")
    if params is None:  # MLflow reads a null params as none given
        return None
    if not isinstance(params, dict):
        return f"params must be an object of parameter names and values; got {json.dumps(params)[:80]}"
    unknown = [name for name in params if name not in accepted]
    if not unknown:
        return None
    takes = ", ".join(repr(name) for name in accepted) or "none"
    message = f"params names a parameter the model does not take: {unknown[0]!r} (the model takes {takes})"
    close = nearest(unknown[0], accepted)
    return message + (f"; did you mean {close!r}?" if close else "")


class Frame(NamedTuple):
    """A JSON request's table as MLflow reads it: its column names, and the ``(row, value)`` cells
    of a column."""

    columns: list
    cells: Callable[[str], Iterator[tuple[int, object]]]
    may_nest: Callable[[str], bool] | None = None  # whether a column's cells may be lists (None: any may)


def frame_of(request: dict) -> Frame | None:
    """The table of a JSON request in any of :data:`FRAME_FORMATS`, or None for a request of
    another form (MLflow names the problem) or of no column names (a list of lists)."""
    formats = [key for key in FRAME_FORMATS if key in request]
    if len(formats) != 1:
        return None
    form, table = formats[0], request[formats[0]]
    if form == "dataframe_split":
        return _split_frame(table)
    if isinstance(table, dict) and form != "dataframe_records":  # a dict of columns
        return Frame(list(table), lambda name: _column_cells(table[name]))
    if isinstance(table, list) and all(isinstance(row, dict) for row in table):  # records
        columns = list(dict.fromkeys(name for row in table for name in row))
        return Frame(columns, lambda name: ((i, row[name]) for i, row in enumerate(table) if name in row))
    return None


def _split_frame(table: object) -> Frame | None:
    if not isinstance(table, dict) or not isinstance(table.get("columns"), list):
        return None
    columns = table["columns"]
    rows = table.get("data") if isinstance(table.get("data"), list) else []

    def cells(name: str) -> Iterator[tuple[int, object]]:
        at = columns.index(name)
        return ((i, row[at]) for i, row in enumerate(rows) if isinstance(row, list) and at < len(row))

    return Frame(columns, cells)


def _column_cells(values: object) -> Iterator[tuple[int, object]]:
    """The cells of a column given as a list of values, or as one value (one row)."""
    return enumerate(values) if isinstance(values, list) else iter([(0, values)])


def repeated_columns(columns: list) -> str | None:
    """What is wrong with a request naming a column more than once, or None."""
    counts = collections.Counter(name for name in columns if isinstance(name, str))
    repeated = [name for name, count in counts.items() if count > 1]
    return f"the request must name each column once; got {repeated} more than once" if repeated else None


def unknown_columns(columns: list, inputs: list[str]) -> str | None:
    """What is wrong with a request naming columns the model does not take, or None. MLflow's
    check of the model's signature would drop them, with a warning in the server's log only."""
    known = set(inputs)
    unknown = [name for name in columns if not (isinstance(name, str) and name in known)]
    if not unknown:
        return None
    named = ", ".join(_with_nearest(name, inputs) for name in unknown[:NAMED_COLUMNS])
    more = f" and {len(unknown) - NAMED_COLUMNS} more" if len(unknown) > NAMED_COLUMNS else ""
    return f"request has unknown column(s) {named}{more}; expected the model's inputs: {', '.join(inputs)}"


def _with_nearest(name: object, known: list[str]) -> str:
    close = nearest(name, known) if isinstance(name, str) else None
    return _shown(name) + (f" (did you mean {close!r}?)" if close else "")


def _shown(value: object) -> str:
    """A request's value as an error message shows it: text quoted, anything else as JSON, in at
    most 80 characters."""
    text = repr(value) if isinstance(value, (str, bytes)) else json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def not_numbers(frame: Frame, numbers: list[str]) -> list[RowProblem]:
    """The rows of the columns ``numbers`` whose cell is no number (:func:`is_number`), per column."""
    wanted = set(numbers)
    given = [name for name in frame.columns if isinstance(name, str) and name in wanted]
    return [_not_number_cells(name, frame.cells(name)) for name in given]


def frame_table(frame: Frame) -> pd.DataFrame:
    """A JSON request's table as a DataFrame of its JSON values (a row's missing cell is None)."""
    import pandas as pd

    named = [name for name in frame.columns if isinstance(name, str)]
    cells = {name: dict(frame.cells(name)) for name in named}
    rows = 1 + max((max(column, default=-1) for column in cells.values()), default=-1)
    return pd.DataFrame(
        {name: pd.Series([column.get(row) for row in range(rows)], dtype=object) for name, column in cells.items()}
    )


def without_non_numbers(table: pd.DataFrame, numbers: list[str]) -> pd.DataFrame:
    """``table`` with the cells of the columns ``numbers`` that are no number left out (None, no
    what-if value), and text of a number read as the number, as MLflow reads them."""
    import pandas as pd

    table = table.copy()
    for name in table.columns.intersection(numbers):
        column = table[name]
        if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
            continue
        kept = pd.Series([value if is_number(value) else None for value in column], dtype=object)
        table[name] = pd.to_numeric(kept, errors="coerce").to_numpy(dtype=float)
    return table


def not_single(frame: Frame, numbers: list[str]) -> list[RowProblem]:
    """The rows of the other columns (``county_code``, ``as_of``) whose cell is a list or an object,
    per column: MLflow would read a row of one list of codes as that many rows (a request of one
    row answered with two, or none)."""
    other = [
        name
        for name in frame.columns
        if isinstance(name, str) and name not in set(numbers) and (frame.may_nest is None or frame.may_nest(name))
    ]
    return [_nested_cells(name, frame.cells(name)) for name in other]


def _nested_cells(name: str, cells: Iterator[tuple[int, object]]) -> RowProblem:
    from models.bundle import RowProblem

    bad = {row: value for row, value in cells if isinstance(value, (list, dict))}
    rows = np.fromiter(bad, dtype=np.int64, count=len(bad))
    return RowProblem(rows, lambda row: f"{name} must be one value per row; got {_shown(bad[row])}")


def _not_number_cells(name: str, cells: Iterator[tuple[int, object]]) -> RowProblem:
    from models.bundle import RowProblem

    bad = {row: value for row, value in cells if not is_number(value)}
    rows = np.fromiter(bad, dtype=np.int64, count=len(bad))
    return RowProblem(rows, lambda row: f"{name} must be a number; got {_shown(bad[row])}")


def is_number(value: object) -> bool:
    """Whether a JSON value is one MLflow reads as a number: null (no value), a number (not
    ``true`` or ``false``) or text of one (``"0.05"``, as Python's ``float`` reads it), but not
    NaN, bare or as text: MLflow would read it as null, and a value that went wrong on the
    client's side would get the forecast of no what-if."""
    if isinstance(value, str):
        try:
            return not math.isnan(float(value))
        except ValueError:
            return False
    if isinstance(value, float):
        return not math.isnan(value)
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def parquet_schema(body: bytes):
    """The schema of a Parquet body, or None for a body that is no Parquet (left to MLflow)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(pa.BufferReader(body))
    except (pa.ArrowException, OSError):
        return None


def parquet_rows(body: bytes) -> int:
    """The rows a Parquet body's footer declares (0 for a body that is no Parquet: MLflow names it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(pa.BufferReader(body)).num_rows
    except (pa.ArrowException, OSError):
        return 0


def parquet_frame(body: bytes, schema) -> Frame:
    """The table of a Parquet body of ``schema`` (:func:`parquet_schema`). Its columns are the
    table's; a column's cells are read only when asked for, and only a column of no number type
    has any that are not numbers (:func:`is_number`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # the index pandas' to_parquet writes (``__index_level_0__``) is read back as the index
    index = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
    columns = [name for name in schema.names if name not in index]

    def cells(name: str) -> Iterator[tuple[int, object]]:
        kind = schema.field(name).type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind):
            return iter(())
        try:
            return enumerate(pq.read_table(pa.BufferReader(body), columns=[name]).column(name).to_pylist())
        except (pa.ArrowException, OSError):  # a column that cannot be read: MLflow names the problem
            return iter(())

    def may_nest(name: str) -> bool:  # from the schema: a column of text is not read cell by cell for it
        kind = schema.field(name).type
        return pa.types.is_nested(kind)

    return Frame(columns, cells, may_nest)


def parquet_table(body: bytes) -> pd.DataFrame:
    """A Parquet body's table as pandas reads it."""
    import pandas as pd

    return pd.read_parquet(io.BytesIO(body))


def parquet_text(schema, numbers: list[str]) -> str | None:
    """What is wrong with a Parquet body of ``schema`` whose columns ``numbers`` are of text, or
    None: Parquet types its columns, and MLflow refuses a column of text for a number whatever its
    cells (text of a number too), naming the column only once its other problems are put right."""
    import pyarrow as pa

    textual = (pa.types.is_string, pa.types.is_large_string, getattr(pa.types, "is_string_view", lambda kind: False))
    wanted = set(numbers)
    text = [field.name for field in schema if field.name in wanted and any(t(field.type) for t in textual)]
    if not text:
        return None
    return (
        f"a Parquet request's what-if columns must be of a number type (double or integer); got text in {text}:"
        " write them as numbers"
    )


class RequestGuard:
    """ASGI middleware: size and nesting limits on ``POST /invocations`` bodies, the model's
    parameters only, and the model's name and version on every answer.

    Parameters
    ----------
    app : ASGI application
        The app behind the guard.
    max_bytes : int
        The largest body passed on; a larger one gets 413.
    params : list of str, default=()
        The parameters the model takes; a request naming another gets 400.
    headers : list of (bytes, bytes), default=()
        Headers added to every answer to ``/invocations`` (:func:`model_headers`).
    inputs : list of str, default=()
        The columns the model takes (its signature's inputs); a request naming another gets 400.
        None given: the columns are not checked.
    numbers : list of str, default=()
        The inputs whose values must be numbers; a request giving another value gets 400.
    row_check : callable or None, default=None
        The model's own check of a request's rows (``ForecastBundle.request_problems``): a
        request refused for values that are no number also names the rows the model would refuse.
    max_rows : int, default=100_000
        The most rows a request may have; a request of more gets 413 before it is read.
    allowed_hosts : list of str or None, default=None
        The host names (or addresses) a request's ``Host`` header may name, without its port; a
        request naming another gets 403. None: any.
    """

    def __init__(
        self,
        app,
        max_bytes: int,
        params=(),
        headers=(),
        inputs=(),
        numbers=(),
        row_check=None,
        max_rows=100_000,
        allowed_hosts=None,
    ):
        self.app = app
        self.allowed_hosts = None if allowed_hosts is None else [host.lower() for host in allowed_hosts]
        self.max_bytes = max_bytes
        self.max_rows = max_rows
        self.params = list(params)
        self.headers = list(headers)
        self.inputs = list(inputs)
        self.numbers = list(numbers)
        self.row_check = row_check

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and (refused := self._refused(scope)) is not None:
            await _reply(send, *refused)
            return
        if scope["type"] != "http" or scope.get("path") != "/invocations":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send, self.headers)
        if scope.get("method") != "POST":  # MLflow's 405, with the model's headers
            await self.app(scope, receive, send)
            return
        body, problem = await self._read(scope, receive)
        if problem is None:  # the checks read the whole body: in a thread, not in the loop serving the others
            body, scope, problem = await asyncio.to_thread(self._checked, scope, body)
        if problem is not None:
            await _reply(send, *problem)
            return
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, _plain_errors(send))

    def _refused(self, scope) -> tuple[int, str] | None:
        """The answer to a request addressed to a host the server does not answer to (a page of
        another site that a browser sends to the loopback server under its own name, DNS
        rebinding), or to one of FastAPI's pages, which the server does not publish; else None."""
        if scope.get("path") in HIDDEN_PATHS:
            return 404, f"the server answers /ping, /health, /version and /invocations; got {scope['path']}"
        if self.allowed_hosts is None:
            return None
        host = request_host(scope)
        if host is None or host in self.allowed_hosts:
            return None
        return (
            403,
            f"the request is addressed to host {_shown(host)}, which this server does not answer to (it answers"
            f" {', '.join(self.allowed_hosts)}); expected one of those in the Host header, or a server started"
            " with `beltcast serve --allowed-hosts` naming it",
        )

    def _checked(self, scope, body: bytes) -> tuple[bytes, dict, tuple[int, str] | None]:
        """The body and scope MLflow is given (a CSV body as its JSON), and what is wrong with the body, or None."""
        if _is_csv(scope):  # its JSON is one level of rows: no nesting to check
            body, problem = _csv_as_json(body, self.max_rows)
            if problem is not None:
                return body, scope, problem
            scope = {**scope, "headers": _json_headers(scope, len(body))}
        elif _content_type(scope) == PARQUET:
            problem = too_many_rows(parquet_rows(body), self.max_rows)  # from its footer, before it is read
            if problem is not None:
                return body, scope, problem
        elif nesting_depth(body) > MAX_DEPTH:
            return body, scope, (400, f"the JSON body is nested deeper than {MAX_DEPTH} levels")
        check = self._parquet_problem if _content_type(scope) == PARQUET else self._json_problem
        try:
            wrong = check(body)
        except TooMany as many:
            return body, scope, many.problem
        return body, scope, None if wrong is None else (400, wrong)

    def _json_problem(self, body: bytes) -> str | None:
        """What is wrong with a JSON body's parameters or columns that MLflow would let through."""
        try:
            request = json_request(body)
        except (RepeatedKey, TooLongNumber) as wrong:
            return str(wrong)
        if request is None:
            return None
        many = too_many_rows(request_rows(request), self.max_rows)
        if many is not None:
            raise TooMany(many)
        wrong = unknown_params(request, self.params)
        frame = frame_of(request) if self.inputs else None
        if wrong is not None or frame is None:
            return wrong
        return self._columns_problem(frame.columns) or self._rows_problem(frame, lambda: frame_table(frame), len(body))

    def _parquet_problem(self, body: bytes) -> str | None:
        schema = parquet_schema(body) if self.inputs else None
        if schema is None:
            return None
        frame = parquet_frame(body, schema)
        return (
            self._columns_problem(frame.columns)
            or parquet_text(schema, self.numbers)
            or self._rows_problem(frame, lambda: parquet_table(body), len(body))
        )

    def _rows_problem(self, frame: Frame, table: Callable[[], pd.DataFrame], size: int) -> str | None:
        """Every bad row of a request with what-if cells that are no number, or other cells that are
        lists (:func:`not_single`), or None when it has none: those cells, and the rows the model
        would refuse once they are left out (a bad county code, a period outside the panel, a value
        outside its domain), in one message, so that a batch is put right in one round (for a body
        of up to :data:`ROW_CHECK_BYTES`: the model's check of a larger one would cost more than
        MLflow's time limit bounds; then a list is named in the guard's words)."""
        from models.bundle import bad_rows_message

        problems = [problem for problem in not_numbers(frame, self.numbers) if len(problem.rows)]
        nested = [problem for problem in not_single(frame, self.numbers) if len(problem.rows)]
        if not problems and not nested:
            return None
        model_problems = []
        if self.row_check is not None and size <= ROW_CHECK_BYTES:
            try:
                model_problems = list(self.row_check(without_non_numbers(table(), self.numbers)))
            except Exception:  # a problem of the whole request is named on the next round
                model_problems = []
        return bad_rows_message([*problems, *(model_problems or nested)])  # the model's words when it checked

    def _columns_problem(self, columns: list) -> str | None:
        return repeated_columns(columns) or unknown_columns(columns, self.inputs)

    async def _read(self, scope, receive) -> tuple[bytes, tuple[int, str] | None]:
        too_large = (
            413,
            f"the request body exceeds {self.max_bytes:,} bytes (the limit is {MAX_REQUEST_VARIABLE}, in MB)",
        )
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return b"", too_large
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"", (400, "the client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return b"", too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


def request_host(scope) -> str | None:
    """The host a request is addressed to (its ``Host`` header without the port; an IPv6 address
    without its brackets), lower case; None when it names none."""
    value = dict(scope.get("headers") or []).get(b"host")
    if not value:
        return None
    host = value.decode("latin-1").strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def allowed_hosts(host: str, given: str | None) -> list[str] | None:
    """The hosts the server answers to: ``given`` (comma-separated; ``*``: any), else, for a server
    bound to the loopback interface, its names (``localhost``, ``127.0.0.1``, ``::1``), and any for a
    server bound elsewhere (reachable under names it cannot know: put it behind a proxy that checks)."""
    if given is not None:
        names = [name.strip().lower().strip("[]") for name in given.split(",") if name.strip()]
        return None if "*" in names else names
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host.lower() == "localhost"
    return [*dict.fromkeys([host.lower().strip("[]"), *LOOPBACK_NAMES])] if loopback else None


def _content_type(scope) -> bytes:
    """The media type of a request, lower case, without parameters."""
    return dict(scope.get("headers") or []).get(b"content-type", b"").split(b";")[0].strip().lower()


def _is_csv(scope) -> bool:
    return _content_type(scope) == b"text/csv"


def _json_headers(scope, length: int) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in scope.get("headers") or [] if k not in (b"content-type", b"content-length")]
    return [*kept, (b"content-type", b"application/json"), (b"content-length", str(length).encode())]


def _csv_as_json(body: bytes, max_rows: int = 100_000) -> tuple[bytes, tuple[int, str] | None]:
    """A CSV body as the JSON ``dataframe_split`` body it means, or the problem with it. Only an
    empty cell is missing: text such as ``NaN`` or ``NULL`` in a what-if column is no number."""
    import pandas as pd

    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return b"", (400, f"the text/csv body must be UTF-8; got a byte it cannot be ({err})")
    header = next(csv.reader([text.partition("\n")[0].rstrip("\r")]), [])
    repeated = sorted({name for name in header if name.strip() and header.count(name) > 1})
    if repeated:
        return b"", (400, f"the text/csv header must name each column once; got {repeated} more than once")
    try:
        ragged = _ragged_row(text, len(header))
    except csv.Error as err:
        return b"", (400, f"the text/csv body cannot be read: {err}")
    if ragged is not None:
        row, fields, line = ragged
        return b"", (
            400,
            f"every text/csv row must have as many fields as the header ({len(header)}: {', '.join(header)});"
            f" got {fields} in data row {row} (line {line})",
        )
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            dtype={"county_code": str, "as_of": str},
            index_col=False,
            keep_default_na=False,
            na_values=[""],
        )
    except (ValueError, pd.errors.ParserError) as err:  # EmptyDataError is a ValueError
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        return b"", (
            400,
            f"the text/csv body cannot be read: expected a header row, then one row per county; {message}",
        )
    # a column of no name (the row index pandas' to_csv writes, a trailing comma) is none of the
    # model's inputs: left out, as MLflow leaves out the columns it does not take
    frame = frame.iloc[:, [i for i, name in enumerate(header) if name.strip()]]
    many = too_many_rows(len(frame), max_rows)
    if many is not None:
        return b"", many
    # numbers as Python parses them (full precision; inf as Infinity, which the model then refuses
    # with its domain), text as text, an empty cell as null
    rows = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()
    payload = {"dataframe_split": {"columns": [str(c) for c in frame.columns], "data": rows}}
    return json.dumps(payload, allow_nan=True).encode(), None


def _with_headers(send, headers: list[tuple[bytes, bytes]]):
    """``send`` that adds ``headers`` to the answer's start."""
    if not headers:
        return send

    async def wrapped(message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *headers]}
        await send(message)

    return wrapped


def _ragged_row(text: str, width: int) -> tuple[int, int, int] | None:
    """The first data row whose number of fields is not ``width``: its number (from 1 after the
    header; an empty or all-space line is no row, as for pandas, while a line of commas is), its
    number of fields and the line it ends on (a quoted field may span lines). pandas would read a
    longer row's first field as an index, shifting its values into the wrong columns."""
    rows = csv.reader(io.StringIO(text))
    next(rows, None)
    number = 0
    for fields in rows:
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        number += 1
        if len(fields) != width:
            return number, len(fields), rows.line_num
    return None


def _plain_errors(send):
    """``send`` that rewrites an error answer (status >= 400) of JSON: the model's own message
    without MLflow's dump of the request in front of it, and no stack trace."""
    held: dict = {}

    async def wrapped(message) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            held.update(start=message, chunks=[])
            return
        if "start" not in held or message["type"] != "http.response.body":
            await send(message)
            return
        held["chunks"].append(message.get("body", b""))
        if message.get("more_body", False):
            return
        status = held["start"]["status"]
        body = _timed_out() if status == 504 else _plain_error(b"".join(held["chunks"]), status)
        replaced = (b"content-length", b"transfer-encoding", b"content-type")
        headers = [(k, v) for k, v in held["start"].get("headers", []) if k.lower() not in replaced]
        headers.append((b"content-type", b"application/json"))
        await send({**held["start"], "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return wrapped


def _timed_out() -> bytes:
    """MLflow's 504 (plain text under a JSON content type) as JSON saying what to do."""
    from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT

    limit = MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get()
    message = (
        f"the request took longer than the server's limit of {limit} s ({TIMEOUT_VARIABLE}; `beltcast serve"
        ' --timeout`): send fewer rows per request, or "params": {"drivers": false} (the drivers are most of'
        " a batch's time), or score large batches with `beltcast score` or `mlflow.pyfunc.load_model`"
    )
    return json.dumps({"error_code": "REQUEST_TIMEOUT", "message": message}).encode()


def _plain_error(body: bytes, status: int = 400) -> bytes:
    try:
        error = json.loads(body)
    except ValueError:
        error = None
    if not isinstance(error, dict):  # an answer of text: the same text, as JSON
        code = "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR"
        return json.dumps({"error_code": code, "message": body.decode("utf-8", "replace")}).encode()
    message = error.get("message")
    if isinstance(message, str):
        for prefix, separator in DUMPED_REQUEST.items():
            if message.startswith(prefix) and separator in message:  # the first: the cause may echo a value
                message = message.partition(separator)[2]
        error["message"] = message.partition(ECHOED_BODY)[0]
    error.pop("stack_trace", None)
    return json.dumps(error).encode()


async def _reply(send, status: int, message: str) -> None:
    code = "REQUEST_TOO_LARGE" if status == 413 else "BAD_REQUEST"
    payload = json.dumps({"error_code": code, "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def model_inputs(model) -> tuple[list[str], list[str]]:
    """The input columns of a pyfunc model's signature, and those of a number type (none for a
    signature of unnamed inputs, or none)."""
    from mlflow.types import DataType

    schema = model.metadata.get_input_schema()
    if schema is None or not schema.has_input_names():
        return [], []
    numeric = (DataType.double, DataType.float, DataType.long, DataType.integer)
    return schema.input_names(), [spec.name for spec in schema.inputs if spec.type in numeric]


def row_check(model) -> Callable[[pd.DataFrame], list[RowProblem]] | None:
    """The served model's check of a request's rows (its bundle's ``request_problems``), or None
    for a model that has none (another kind of model, or one logged before it was added)."""
    return getattr(getattr(_python_model(model), "bundle", None), "request_problems", None)


def load_served_model(uri: str):
    """The pyfunc at ``uri`` as MLflow's server loads it (with the JSON configuration in MLflow's
    ``SERVING_MODEL_CONFIG``, if set), told the registered version it is served as (its
    ``served_as``), so that every row it answers says ``model_version``; a model logged before it
    had ``served_as`` answers without the column."""
    from mlflow.pyfunc import scoring_server

    model = scoring_server.load_model_with_mlflow_config(uri)
    match = MODEL_VERSION_URI.fullmatch(uri)
    served_as = getattr(_python_model(model), "served_as", None)
    if match is not None and served_as is not None:
        served_as(match["version"])
    return model


def _python_model(model):
    """The Python object behind a pyfunc model of ours, or None for another kind of model."""
    try:
        return model.unwrap_python_model()
    except Exception:  # not a PythonModel (another flavour): nothing of ours to call
        return None


def create_app():
    """MLflow's scoring server for the model at ``BELTCAST_SERVE_MODEL_URI``, guarded.

    A model that cannot be loaded ends the worker with :data:`STARTUP_FAILURE`, which stops
    uvicorn's supervisor too (any other status and it would start the worker again, forever).
    """
    from mlflow.pyfunc import scoring_server

    log = logging.getLogger("uvicorn.error")
    uri = os.environ.get(MODEL_URI_VARIABLE)
    if not uri:
        log.error("%s must name the model to serve; it is not set", MODEL_URI_VARIABLE)
        sys.exit(STARTUP_FAILURE)
    try:
        model = load_served_model(uri)
        schema = model.metadata.get_params_schema()
        params = [] if schema is None else [spec.name for spec in schema.params]
        inputs, numbers = model_inputs(model)
        app = scoring_server.init(model)
        hosts = os.environ.get(ALLOWED_HOSTS_VARIABLE)
        guard = RequestGuard(
            app,
            max_request_bytes(),
            params,
            model_headers(uri),
            inputs,
            numbers,
            row_check(model),
            max_request_rows(),
            None if hosts is None else allowed_hosts("", hosts),
        )
    except Exception:  # whatever stops the model or the guard loading, the server cannot start
        log.exception("cannot serve %s", uri)
        sys.exit(STARTUP_FAILURE)
    return guard


def listening_sockets(host: str, port: int, backlog: int = 2048) -> list[socket.socket]:
    """The server's listening TCP sockets, one per address ``host`` resolves to (as asyncio
    would bind them), made with ``proto=IPPROTO_TCP``, listening, and inheritable by the worker
    processes.

    asyncio turns Nagle's algorithm off (``TCP_NODELAY``) only on accepted sockets whose
    ``proto`` is TCP, and an accepted socket takes its listener's. uvicorn 0.54 binds the socket
    it shares among several workers with ``proto`` 0, so with ``--workers 2`` a response written
    in two parts (headers, then body) would wait for the client's delayed ACK: about 40 ms more on
    every request of a kept-alive connection after the first, on Linux. The sockets listen from
    the start, so connections made while the workers load the model wait in the backlog.
    """
    try:
        infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except (OSError, OverflowError) as err:
        raise OSError(getattr(err, "errno", None), f"cannot listen on {host}:{port}: {err}") from None
    addresses = list(dict.fromkeys((family, address) for family, _, _, _, address in infos))
    sockets: list[socket.socket] = []
    try:
        for family, address in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and len(addresses) > 1:  # leave IPv4 to its own socket
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.set_inheritable(True)
    except OSError as err:
        for sock in sockets:
            sock.close()
        raise OSError(err.errno, f"cannot listen on {host}:{port}: {err.strerror}") from None
    return sockets


def url_of(sock: socket.socket) -> str:
    """``http://address:port`` of a listening socket (an IPv6 address in brackets)."""
    address, port = sock.getsockname()[:2]
    return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"


def main(argv: list[str] | None = None) -> int:
    """Serve :func:`create_app` with uvicorn on :func:`listening_sockets` (one worker in this
    process, several under uvicorn's process supervisor); returns the exit status,
    :data:`STARTUP_FAILURE` when the server cannot start, else 0 (after Ctrl+C, or SIGTERM to
    several workers; one worker stopped by SIGTERM ends by that signal, as under uvicorn's own
    command)."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.scoring_app", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--allowed-hosts", default=None, help="Host names requests may address, comma-separated.")
    args = parser.parse_args(argv)
    if not args.host.strip():
        parser.error("--host must be an address or host name; got '' (0.0.0.0 listens on every IPv4 interface)")
    hosts = allowed_hosts(args.host, args.allowed_hosts)
    os.environ[ALLOWED_HOSTS_VARIABLE] = "*" if hosts is None else ",".join(hosts)  # for the workers
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be within 0..65535; got {args.port}")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1; got {args.workers}")

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(APP, factory=True, host=args.host, port=args.port, workers=args.workers)
    log = logging.getLogger("uvicorn.error")  # set up by Config
    try:
        sockets = listening_sockets(args.host, args.port, config.backlog)
    except OSError as err:
        log.error(err.strerror)
        return STARTUP_FAILURE
    urls = ", ".join(url_of(sock) for sock in sockets)
    answers = "any host" if hosts is None else "hosts " + ", ".join(hosts)
    log.info(
        "listening on %s, answering requests addressed to %s; %d worker(s) loading the model (Press CTRL+C to quit)",
        urls,
        answers,
        args.workers,
    )
    if args.workers > 1:
        supervisor = Multiprocess(config, sockets=sockets)
        supervisor.run()
        failed = any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes)
        return STARTUP_FAILURE if failed else 0
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn raises Ctrl+C again once it has shut down
        server.run(sockets=sockets)
    return 0 if server.started else STARTUP_FAILURE


if __name__ == "__main__":
    sys.exit(main())
