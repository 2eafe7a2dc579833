"""Runs left RUNNING by a killed job are closed as KILLED by the next job; live ones are not."""

from __future__ import annotations

import contextlib
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mlflow
import pytest

from features.errors import OutputPathError
from pipelines import tracking
from pipelines.config import MlflowSettings, Settings
from pipelines.tracking import HOST_TAG, PID_TAG, TrackingError, check_reachable, git_sha, use_tracking


def closed_port() -> int:
    """A port of 127.0.0.1 on which nothing listens (bound, then closed again)."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return free.getsockname()[1]


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
    module = tmp_path / "models" / "probe.py"  # but an untracked module is: a version must not be reused for it
    module.parent.mkdir()
    module.write_text("seed = 1\n", encoding="utf-8")
    added = git_sha(module.parent)
    assert added.startswith(f"{head}+dirty.") and git_sha(tmp_path) == added
    module.write_text("seed = 2\n", encoding="utf-8")
    assert git_sha(tmp_path) not in (added, head)
    module.unlink()
    assert git_sha(tmp_path) == head
    assert git_sha(tmp_path / "nowhere") == "unknown"


def test_a_tracking_server_that_is_not_there_is_named_at_once(without_proxy):
    port = closed_port()
    uri = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(TrackingError) as error:
        use_tracking(Settings(mlflow=MlflowSettings(tracking_uri=uri)))
    assert time.monotonic() - started < 5  # not MLflow's minutes of retries
    assert f"mlflow.tracking_uri = '{uri}' cannot be reached: 127.0.0.1 port {port} gave ConnectionError: " in str(
        error.value
    )
    assert "Connection refused" in str(error.value) and "HTTPConnectionPool" not in str(error.value)

    class NotFound(BaseHTTPRequestHandler):  # any answer is a server there (a proxy, a login page ...)
        def do_GET(self):
            self.send_error(404)

        def log_message(self, *args):
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), NotFound) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        check_reachable(f"http://127.0.0.1:{server.server_address[1]}/", timeout=5)
        server.shutdown()
    with socket.socket() as silent:  # accepts the connection, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with pytest.raises(TrackingError, match=r"port \d+ gave no answer within 0.5 s \(ReadTimeout\)"):
            check_reachable(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
    with pytest.raises(TrackingError, match=r"mlflow.tracking_uri = 'http://:5000' names no host"):
        check_reachable("http://:5000")
    with pytest.raises(TrackingError, match=r"mlflow.tracking_uri = 'http://host:port' has no valid host and port"):
        check_reachable("http://host:port")
    with pytest.raises(TrackingError, match=r"'http://\[::1:5000' has no valid host and port \(Invalid IPv6 URL\)"):
        check_reachable("http://[::1:5000")
    with pytest.raises(TrackingError, match=r"port 5000 gave LocationParseError: Failed to parse"):
        check_reachable(f"http://{'a' * 64}.example:5000")  # a DNS label of more than 63 characters
    with pytest.raises(TrackingError, match=rf"'http://bob:\*\*\*@127.0.0.1:{port}/' cannot be reached") as shown:
        check_reachable(f"http://bob:s3cret@127.0.0.1:{port}/")
    assert "s3cret" not in str(shown.value)
    check_reachable("postgresql://user@nowhere.invalid/mlflow")  # only tracking servers are probed


def test_a_tracking_server_whose_store_is_down_is_named_at_once(without_proxy):
    """MLflow's /health answers OK while the server's database is down, and MLflow's client then
    retried its 503s for minutes."""

    class StoreDown(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/health":
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"OK")
            else:
                self.send_error(503, "Service Unavailable")

        def log_message(self, *args):
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), StoreDown) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        started = time.monotonic()
        with pytest.raises(TrackingError) as error:
            use_tracking(Settings(mlflow=MlflowSettings(tracking_uri=uri)))
        server.shutdown()
    assert time.monotonic() - started < 5
    assert f"mlflow.tracking_uri = '{uri}' answers, but not from its store: HTTP 503 to" in str(error.value)
    assert "backend store" in str(error.value)

    class StoreHangs(StoreDown):
        def do_GET(self):
            if self.path != "/health":
                time.sleep(2)
            super().do_GET()

    with ThreadingHTTPServer(("127.0.0.1", 0), StoreHangs) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        with pytest.raises(
            TrackingError, match=r"answers, but not from its store: no answer within 0.5 s \(ReadTimeout\)"
        ):
            check_reachable(f"http://127.0.0.1:{server.server_address[1]}", timeout=0.5)
        server.shutdown()


def test_a_database_driver_that_is_not_installed_is_named():
    chained = ImportError(
        "Failed to import DB access module for the specified storage URL. Please install appropriate one."
    )
    chained.__cause__ = ModuleNotFoundError("No module named 'psycopg'", name="psycopg")
    assert tracking.store_problem(chained, "postgresql://db/x") == (
        "ImportError: Failed to import DB access module for the specified storage URL. Please install appropriate"
        " one.; the database driver module 'psycopg' is not installed"
    )
    assert tracking.store_problem(ValueError("other"), "x") == "ValueError: other"
    with pytest.raises(TrackingError) as typo:  # MLflow repeats the URI in its own message
        use_tracking(Settings(mlflow=MlflowSettings(tracking_uri="postgres://bob:s3cret@127.0.0.1:1/x")))
    assert "s3cret" not in str(typo.value) and "postgres://bob:***@127.0.0.1:1/x" in str(typo.value)
    try:
        import MySQLdb  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("a MySQL driver is installed here")
    with pytest.raises(TrackingError) as error:  # SQLAlchemy imports the driver as the store opens
        use_tracking(Settings(mlflow=MlflowSettings(tracking_uri="mysql://bob:s3cret@127.0.0.1:1/mlflow")))
    message = str(error.value)
    assert "'mysql://bob:***@127.0.0.1:1/mlflow'" in message and "s3cret" not in message
    assert "No module named 'MySQLdb': a database driver that is not installed" in message
    assert "pip install -e '.[postgres]'" in message


def test_a_database_server_that_refuses_or_stays_silent_is_named_at_once(monkeypatch, tmp_path):
    """MLflow tried a database server ten times (about 107 s) before it said that the port was
    closed or the password wrong, and a study's database on a silent port hung tune."""
    pytest.importorskip("psycopg")
    from pipelines import tune
    from pipelines.config import TuneSettings

    port = closed_port()
    uri = f"postgresql://bob:s3cret@127.0.0.1:{port}/mlflow"
    started = time.monotonic()
    with pytest.raises(TrackingError) as refused:
        use_tracking(Settings(mlflow=MlflowSettings(tracking_uri=uri)))
    assert time.monotonic() - started < 10
    message = str(refused.value)
    assert f"mlflow.tracking_uri = 'postgresql://bob:***@127.0.0.1:{port}/mlflow'" in message
    assert f"port {port} failed: Connection refused" in message and "s3cret" not in message

    monkeypatch.setattr(tracking, "PROBE_SECONDS", 2.0)
    with socket.socket() as silent:  # accepts connections, never answers, closes them after 20 s
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        held = []

        def accept_and_hold():
            with suppress(OSError):
                while True:
                    held.append(silent.accept()[0])
                    threading.Timer(20, held[-1].close).start()

        threading.Thread(target=accept_and_hold, daemon=True).start()
        storage = f"postgresql://bob:s3cret@127.0.0.1:{silent.getsockname()[1]}/optuna"
        settings = Settings(tune=TuneSettings(storage=storage), mlflow=MlflowSettings(tracking_uri=uri))
        started = time.monotonic()
        with pytest.raises(
            TrackingError, match=r"tune.storage = 'postgresql://bob:\*\*\*@.*connection timeout expired"
        ):
            tune.open_study(settings, "emergence")
        assert time.monotonic() - started < 10


def test_a_host_name_whose_lookup_hangs_is_named_within_the_probe_s_time(without_proxy, monkeypatch):
    def hanging_resolver(*args, **kwargs):
        time.sleep(30)
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_resolver)
    started = time.monotonic()
    with pytest.raises(
        TrackingError, match=r"slow-dns.example port 5000 gave no answer within 1.4 s \(the host name's lookup"
    ):
        check_reachable("http://slow-dns.example:5000", timeout=0.2)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://bob:s3cret@host:5000/x?y=1", "http://bob:***@host:5000/x?y=1"),
        ("http://bob:s3/cr?et@host:5000", "http://bob:***@host:5000"),  # unescaped "/" and "?" in it
        ("http://bob:s3@cret@host:5000", "http://bob:***@host:5000"),
        ("postgresql://bob:s3cret@db/mlflow", "postgresql://bob:***@db/mlflow"),
        ("http://bob@host:5000", "http://bob@host:5000"),  # no password
        ("http://host:5000/runs/a:b@c", "http://host:***@c"),  # an "@" in the path: more hidden, never less
        ("http://host/runs/a:b@c", "http://host/runs/a:b@c"),
        ("sqlite:///mlruns/mlflow.db", "sqlite:///mlruns/mlflow.db"),
        # a mistyped "://" must not show it either
        ("postgresql:/bob:s3cret@db:5432/optuna", "postgresql:/bob:***@db:5432/optuna"),
        ("postgresql//bob:s3cret@db/optuna", "postgresql//bob:***@db/optuna"),
        ("postgresql:bob:s3cret@db/optuna", "postgresql:bob:***@db/optuna"),
        ("bob:s3cret@db/optuna", "bob:***@db/optuna"),
        ("journal:/srv/beltcast/optuna.journal", "journal:/srv/beltcast/optuna.journal"),
        ("postgresql://bob@db/x?sslmode=require&password=s3cret", "postgresql://bob@db/x?sslmode=require&password=***"),
    ],
)
def test_a_password_in_a_uri_is_never_shown(uri, shown):
    assert tracking.without_password(uri) == shown


def test_a_store_that_goes_away_while_a_run_fails_does_not_hide_the_job_s_error(tmp_path, monkeypatch):
    use_tracking(Settings(mlflow=MlflowSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")))

    def gone(*args, **kwargs):
        raise ConnectionError("the tracking server has gone away")

    with pytest.raises(ValueError, match="as_of must be"), tracking.start_run("score"):
        monkeypatch.setattr(mlflow.tracking.MlflowClient, "set_terminated", gone)
        monkeypatch.setattr(mlflow.tracking.MlflowClient, "set_tag", gone)
        raise ValueError("as_of must be one of the model's periods")
    assert mlflow.active_run() is None


def test_a_lock_file_of_another_user_locks_and_one_that_cannot_be_made_is_named(tmp_path):
    beside_a_file = tmp_path / "scores.csv" / ".lock"  # its folder is a file
    (tmp_path / "scores.csv").write_text("county_code\n")
    with (
        pytest.raises(OutputPathError, match=rf"the lock file {beside_a_file} cannot be opened \(FileExistsError"),
        tracking.file_lock(beside_a_file),
    ):
        pass
    out = tmp_path / "ranked.csv"
    (tmp_path / ".ranked.csv.lock").mkdir()  # the lock a score of it takes is a folder
    with (
        pytest.raises(
            OutputPathError, match=rf"output {out}: its lock file {tmp_path}/.ranked.csv.lock cannot be opened"
        ),
        tracking.file_lock(tracking.lock_beside(out), of=out),
    ):
        pass
    if os.geteuid() != 0:
        pytest.skip("taking another user's lock file needs root to act as that other user")
    with tempfile.TemporaryDirectory() as shared:  # in /tmp itself: the other user can reach it
        os.chmod(shared, 0o777)
        lock = Path(shared) / ".scores.csv.lock"
        with tracking.file_lock(lock):  # made by this user, mode 0644
            pass
        other = (  # imports first: the interpreter's own files may be out of the other user's reach
            "import os, sys; from pathlib import Path; from pipelines.tracking import file_lock;"
            " os.setgid(65534); os.setuid(65534)\n"
            "with file_lock(Path(sys.argv[1])): print('locked')"
        )
        taken = subprocess.run(
            [sys.executable, "-c", other, str(lock)], capture_output=True, text=True, cwd=Path(__file__).parents[2]
        )
        assert taken.stdout.strip() == "locked", taken.stderr[-500:]


def test_a_study_store_that_is_not_an_optuna_journal_is_named(tmp_path):
    from pipelines import tune
    from pipelines.config import TuneSettings

    database = tmp_path / "optuna.db"
    database.write_bytes(b"SQLite format 3\x00" + bytes(range(256)))  # a database named as a journal by mistake
    settings = Settings(tune=TuneSettings(storage=f"journal:{database}"))
    not_a_journal = rf"'journal:{database}' is not an Optuna journal file \((UnicodeDecode|JSONDecode)Error"
    with pytest.raises(TrackingError, match=not_a_journal):
        tune.open_study(settings, "emergence")
    with pytest.raises(TrackingError, match=r"'journal://srv/optuna.journal' is ambiguous: write journal:///srv/"):
        tune.study_storage("journal://srv/optuna.journal")


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"study notes: keep\n", r"JSONDecodeError: Expecting value"),
        (b"hello", r"ValueError: its only line is b'hello', not a whole record"),
        (b'{"a": 1}\n{"b": 2}\n', r"ValueError: line 1 is b'\{\"a\": 1\}', not a record with an op_code"),
        (b"[1, 2]\n", r"ValueError: line 1 is b'\[1, 2\]', not a record"),
        (b"SQLite format 3\x00\xdf\n\x00\x01", r"UnicodeDecodeError"),
        (b"SQLite format 3\x00\xdf\x00\x01", r"ValueError: its only line is b'SQLite format 3"),
    ],
)
def test_a_file_that_is_no_journal_is_named_and_left_as_it_was(tmp_path, content, why):
    from pipelines import tune
    from pipelines.config import TuneSettings

    journal = tmp_path / "notes.txt"
    journal.write_bytes(content)
    with pytest.raises(TrackingError, match=rf"'journal:{journal}' is not an Optuna journal file \({why}"):
        tune.open_study(Settings(tune=TuneSettings(storage=f"journal:{journal}")), "emergence")
    assert journal.read_bytes() == content  # Optuna appends its records to a file it reads past


def test_a_journal_with_a_record_being_written_opens_once_it_is_whole(tmp_path):
    from optuna.storages.journal import JournalFileSymlinkLock

    from pipelines import tune
    from pipelines.config import TuneSettings

    journal = tmp_path / "optuna.journal"
    settings = Settings(tune=TuneSettings(storage=f"journal:{journal}"))
    tune.open_study(settings, "emergence")
    writer = JournalFileSymlinkLock(str(journal))  # another worker appending, as Optuna does: under its lock
    writer.acquire()
    with open(journal, "ab") as handle:
        handle.write(b'{"op_code": 0, "worker_id": "another", "study_na')
    opened = []
    reader = threading.Thread(target=lambda: opened.append(tune.open_study(settings, "other").study_name))
    reader.start()
    time.sleep(0.5)
    assert not opened  # waits for the writer
    with open(journal, "ab") as handle:
        handle.write(b'me": "third", "directions": [2]}\n')
    writer.release()
    reader.join(30)
    assert opened == ["other"]


def test_a_journal_whose_last_record_a_dead_worker_left_unfinished_is_refused_untouched(tmp_path):
    from pipelines import tune
    from pipelines.config import TuneSettings

    journal = tmp_path / "optuna.journal"
    settings = Settings(tune=TuneSettings(storage=f"journal:{journal}"))
    tune.open_study(settings, "emergence")
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'{"op_code": 4, "worker_id": "x", "trial_id": 3')
    with pytest.raises(
        TrackingError,
        match=rf"line 2 is an unfinished record \(a worker stopped while writing it\), which Optuna would write"
        rf" after; remove it: truncate -s {len(whole)} {journal}\)",
    ):
        tune.open_study(settings, "emergence")
    assert journal.read_bytes() == whole + b'{"op_code": 4, "worker_id": "x", "trial_id": 3'
    os.truncate(journal, len(whole))  # as the message says
    assert tune.open_study(settings, "emergence").study_name == "emergence"


def test_jobs_started_together_on_a_new_local_store_both_set_it_up(tmp_path):
    code = (
        "import sys; from pathlib import Path; from pipelines.config import MlflowSettings, Settings, TuneSettings;"
        " from pipelines.tracking import use_tracking; from pipelines.tune import open_study\n"
        "folder = Path(sys.argv[1])\n"
        "use_tracking(Settings(mlflow=MlflowSettings(tracking_uri=f'sqlite:///{folder}/mlflow.db')))\n"
        "open_study(Settings(tune=TuneSettings(storage=f'sqlite:///{folder}/optuna.db')), 'team')\n"
        "print('ready')"
    )
    folder = tmp_path / "new"  # 3 jobs on a new store lost the race for its tables every time without the lock
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(folder)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[2],
        )
        for _ in range(3)
    ]
    done = [job.communicate(timeout=300) for job in jobs]
    assert [out.strip() for out, _ in done] == ["ready"] * 3, [err[-800:] for _, err in done]


def test_workers_opening_a_new_shared_database_together_all_start(monkeypatch):
    """Two tune workers started together on a new PostgreSQL store: one failed on the other's
    creating Optuna's tables (a unique violation on the catalogue), blamed on the URL."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    from pipelines import tune
    from pipelines.config import TuneSettings

    duplicate = IntegrityError(
        "CREATE TABLE studies",
        {},
        Exception('duplicate key value violates unique constraint "pg_type_typname_nsp_index"'),
    )
    attempts, study = [], object()

    def racing(name, storage, seed):
        attempts.append(name)
        if len(attempts) == 1:
            raise duplicate
        return study

    monkeypatch.setattr(tune, "make_study", racing)
    monkeypatch.setattr(tune, "study_storage", lambda storage: storage)
    monkeypatch.setattr(tune, "connect_once", lambda storage: None)  # a server that takes connections
    monkeypatch.setattr(tracking, "tables_lock", lambda uri, tables: contextlib.nullcontext())  # taken at once
    monkeypatch.setattr(tracking.time, "sleep", lambda seconds: None)
    shared = Settings(tune=TuneSettings(storage="postgresql://bob:s3cret@db.example/optuna"))

    assert tune.open_study(shared, "shared") is study and attempts == ["shared", "shared"]

    def down(name, storage, seed):
        raise OperationalError("connect", {}, Exception("connection refused"))

    monkeypatch.setattr(tune, "make_study", down)  # any other error is named at once, not tried again
    with pytest.raises(TrackingError, match=r"tune.storage = 'postgresql://bob:\*\*\*@db.example/optuna' cannot"):
        tune.open_study(shared, "shared")
    attempts.clear()
    monkeypatch.setattr(tune, "make_study", lambda *args: attempts.append(1) or (_ for _ in ()).throw(duplicate))
    with pytest.raises(TrackingError, match="duplicate key"):  # still failing after the last attempt: named
        tune.open_study(shared, "shared")
    assert len(attempts) == tracking.TABLE_ATTEMPTS


def test_a_tracking_server_that_stops_answering_mid_job_is_named_after_the_configured_retries(
    without_proxy, monkeypatch
):
    """MLflow's own defaults (7 retries, 120 s a request) kept a job whose server went away silent
    for over ten minutes; the error was a 500-character line of urllib3's retries."""
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT
    from mlflow.exceptions import MlflowException
    from mlflow.utils.rest_utils import MlflowHostCreds, http_request

    tracking.limit_requests(1, 7)
    assert (MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(), MLFLOW_HTTP_REQUEST_TIMEOUT.get()) == (1, 7)

    uri = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: uri)
    with pytest.raises(MlflowException, match=r"API request to .* failed with exception") as lost:
        http_request(MlflowHostCreds(uri), "/api/2.0/mlflow/runs/log-batch", "POST", json={}, backoff_factor=0)
    assert tracking.lost_server(lost.value) == (
        f"the tracking server mlflow.tracking_uri = '{uri}' stopped answering: a request failed ([Errno 111]"
        " Connection refused) during the job, to /api/2.0/mlflow/runs/log-batch, after 1 retry"
        " ([mlflow] request_retries, request_timeout)"
    )
    answering_503 = MlflowException(
        f"API request to {uri}/api/2.0/mlflow/runs/log-batch failed with exception"
        " HTTPConnectionPool(host='127.0.0.1'): Max retries exceeded with url: /api/2.0/mlflow/runs/log-batch"
        " (Caused by ResponseError('too many 503 error responses'))"
    )
    assert tracking.lost_server(answering_503).startswith(
        f"the tracking server mlflow.tracking_uri = '{uri}' answered HTTP 503 to every try of a request during the job"
    )
    certificate = MlflowException(
        f"API request to {uri}/api/2.0/mlflow/runs/get failed with exception SSLError(SSLCertVerificationError(1,"
        " 'certificate verify failed: self-signed certificate'))"
    )
    assert tracking.lost_server(certificate) is None  # not a server gone: MLflow's own words
    assert tracking.lost_server(ValueError("another error")) is None


def test_a_failing_job_s_last_requests_to_a_lost_server_are_made_once(monkeypatch, tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("made-once")
    seen = []
    monkeypatch.setattr(tracking, "_tag_error", lambda err: seen.append(os.environ[tracking.RETRIES_VARIABLE]))
    tracking.limit_requests(3, 30)
    lost = RuntimeError("API request to http://127.0.0.1:1/api/2.0/mlflow/runs/get failed with exception [Errno 111] x")
    with pytest.raises(RuntimeError, match="API request"), tracking.start_run("lost"):
        raise lost
    with pytest.raises(RuntimeError, match="other"), tracking.start_run("other"):
        raise RuntimeError("other")
    assert seen == ["0", "3"] and os.environ[tracking.RETRIES_VARIABLE] == "3"


def test_the_job_s_mlflow_requests_take_the_configured_limits(tmp_path):
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    use_tracking(Settings(mlflow=MlflowSettings(tracking_uri=uri, request_retries=2, request_timeout=15)))
    assert (MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(), MLFLOW_HTTP_REQUEST_TIMEOUT.get()) == (2, 15)
    assert (MlflowSettings().request_retries, MlflowSettings().request_timeout) == (5, 30)


def _created_first(kind: str) -> Exception:
    """What a job gets when another created the tables first, in PostgreSQL's and MySQL's words."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    if kind == "postgresql":
        return IntegrityError(
            "CREATE TABLE experiments",
            {},
            Exception('duplicate key value violates unique constraint "pg_type_typname_nsp_index"'),
        )
    if kind == "mysql":  # PyMySQL and mysqlclient raise MySQL's 1050 as an operational error
        return OperationalError("CREATE TABLE experiments", {}, Exception(1050, "Table 'experiments' already exists"))
    return IntegrityError("INSERT INTO alembic_version", {}, Exception(1062, "Duplicate entry '0a8213491aaa' for key"))


@pytest.mark.parametrize("kind", ["postgresql", "mysql", "mysql-duplicate"])
def test_jobs_opening_a_new_shared_mlflow_database_together_try_again_when_another_made_its_tables(monkeypatch, kind):
    # two jobs started together on a new PostgreSQL (or MySQL) store: one failed on the other's new tables
    duplicate = _created_first(kind)
    attempts, client = [], object()

    def racing(uri, name, database):
        attempts.append(name)
        if len(attempts) == 1:
            raise duplicate
        return client

    monkeypatch.setattr(tracking, "_open_store", racing)
    monkeypatch.setattr(tracking, "connect_once", lambda uri: None)  # a server that takes connections
    monkeypatch.setattr(tracking, "tables_lock", lambda uri, tables: contextlib.nullcontext())  # taken at once
    monkeypatch.setattr(tracking.time, "sleep", lambda seconds: None)
    scheme = kind.split("-")[0]
    shared = Settings(mlflow=MlflowSettings(tracking_uri=f"{scheme}://bob:s3cret@db.example/mlflow"))

    assert use_tracking(shared) is client and attempts == ["beltcast", "beltcast"]
    attempts.clear()
    monkeypatch.setattr(tracking, "_open_store", lambda *args: attempts.append(1) or (_ for _ in ()).throw(duplicate))
    with pytest.raises(TrackingError, match=rf"'{scheme}://bob:\*\*\*@db.example/mlflow'.*(?i:duplicate|exists)"):
        use_tracking(shared)  # still failing after the last attempt: named
    assert len(attempts) == tracking.TABLE_ATTEMPTS


def test_a_store_s_other_errors_are_not_taken_for_another_job_s_tables():
    from sqlalchemy.exc import IntegrityError, OperationalError

    assert tracking.created_meanwhile(_created_first("mysql"))
    others = [
        OperationalError("SELECT 1", {}, Exception(1045, "Access denied for user 'bob'@'localhost'")),
        OperationalError("CREATE TABLE x", {}, Exception("database is locked")),
        IntegrityError("INSERT INTO runs", {}, Exception("NOT NULL constraint failed: runs.name")),
    ]
    assert not any(tracking.created_meanwhile(err) for err in others)


@pytest.mark.parametrize("setting", ["mlflow", "tune"])
def test_a_database_url_whose_port_is_no_number_is_named_not_a_traceback(tmp_path, setting):
    uri = "postgresql://bob:s3cret@127.0.0.1:notaport/x"
    if setting == "mlflow":
        with pytest.raises(TrackingError) as error:
            use_tracking(Settings(mlflow=MlflowSettings(tracking_uri=uri)))
    else:
        from pipelines import tune
        from pipelines.config import TuneSettings

        with pytest.raises(TrackingError) as error:
            tune.open_study(Settings(tune=TuneSettings(storage=uri)), "x")
    assert "'postgresql://bob:***@127.0.0.1:notaport/x'" in str(error.value)
    assert "(ArgumentError: its port must be a number; invalid literal for int() with base 10: 'notaport')" in str(
        error.value
    )
    assert "s3cret" not in str(error.value)


class _LockingServer:
    """A database server's connections as :func:`tracking.tables_lock` uses them: the lock is
    another job's for ``held`` tries, then this one's. Statements are recorded, not run."""

    def __init__(self, held: float = 0):
        self.held, self.statements, self.disposed = held, [], 0

    def connect(self):
        return self

    def execution_options(self, **options):
        assert options == {"isolation_level": "AUTOCOMMIT"}  # no transaction left open while others make tables
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, statement, params):
        self.statements.append((str(statement).split("(")[0], dict(params)))
        granted = "UNLOCK" in str(statement).upper() or "RELEASE" in str(statement) or self.held <= 0
        self.held -= 1
        return types.SimpleNamespace(scalar=lambda: granted)

    def dispose(self):
        self.disposed += 1


@pytest.mark.parametrize(
    ("uri", "take", "give"),
    [
        ("postgresql://bob:s3cret@db.example/mlflow", "SELECT pg_try_advisory_lock", "SELECT pg_advisory_unlock"),
        ("mysql+pymysql://bob:s3cret@db.example/mlflow", "SELECT GET_LOCK", "SELECT RELEASE_LOCK"),
    ],
)
def test_jobs_opening_a_shared_database_take_turns_at_its_tables_under_the_database_s_lock(
    monkeypatch, uri, take, give
):
    # 5 jobs started together on a new MySQL store: 4 failed on columns or migrations another had made
    server = _LockingServer(held=2)
    monkeypatch.setattr(tracking, "_server_engine", lambda url, timeout: server)
    monkeypatch.setattr(tracking.time, "sleep", lambda seconds: None)
    opened = []

    assert (
        tracking.with_tables_race(lambda: opened.append(list(server.statements)) or "store", uri, "mlflow") == "store"
    )
    assert [statement for statement, _ in server.statements] == [take] * 3 + [give]  # waited twice, then opened
    assert len(opened[0]) == 3 and server.disposed == 1  # opened while holding it; released after
    params = server.statements[0][1]
    assert params["name"] == "beltcast.mlflow.mlflow" and params == server.statements[-1][1]

    server.statements.clear()
    with (
        pytest.raises(RuntimeError, match="broken"),
        tracking.tables_lock(uri, "optuna"),
        tracking.tables_lock(uri, "optuna"),  # held already by this process: not asked again
    ):
        raise RuntimeError("broken")
    assert [statement for statement, _ in server.statements] == [take, give]  # released after a failure too
    assert server.statements[0][1]["key"] != params["key"]  # the Optuna tables have a lock of their own


def test_a_database_lock_held_too_long_by_another_job_is_named(monkeypatch):
    server = _LockingServer(held=math.inf)
    monkeypatch.setattr(tracking, "_server_engine", lambda url, timeout: server)
    monkeypatch.setattr(tracking.time, "sleep", lambda seconds: None)
    with pytest.raises(TrackingError) as waited, tracking.tables_lock("postgresql://bob:s3cret@db/x", "mlflow", 0.05):
        pass
    assert str(waited.value) == (
        "the store 'postgresql://bob:***@db/x': another job has been making or upgrading its mlflow tables for over"
        " 0.05 s (it holds the database's lock 'beltcast.mlflow'); expected it to end: try again once it has, or"
        " end it"
    )
    assert server.disposed == 1


@pytest.mark.parametrize("uri", ["sqlite:///mlruns/mlflow.db", "http://127.0.0.1:5000", "journal:optuna.journal"])
def test_a_store_on_no_database_server_opens_without_a_server_lock(monkeypatch, uri):
    monkeypatch.setattr(tracking, "_server_engine", lambda url, timeout: pytest.fail("no server to lock"))
    assert tracking.with_tables_race(lambda: "store", uri, "mlflow") == "store"


def test_a_failed_migration_of_the_store_s_tables_is_named_not_a_traceback(monkeypatch, tmp_path):
    from alembic.util.exc import CommandError

    def migrating(uri, name, database):
        raise CommandError("Online migration expected to match one row when updating 'a' to 'b' in 'alembic_version'")

    monkeypatch.setattr(tracking, "_open_store", migrating)
    with pytest.raises(TrackingError, match=r"mlflow.tracking_uri = 'sqlite:///.*' .*\(CommandError: Online migration"):
        use_tracking(Settings(mlflow=MlflowSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")))
