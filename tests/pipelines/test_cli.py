"""The command line refuses bad option values before any job runs, naming the option, the range
and the value given; a job's error is one line on stderr."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines import backtest, cli, report, score, serve, tune


@pytest.fixture(autouse=True)
def sigterm_handler_restored():
    """``cli.main`` sets the SIGTERM handler of the process it runs in: the test process's is put back."""
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["serve", "--workers", "0"], "Invalid value for '--workers': must be at least 1; got 0"),
        (["serve", "--port", "70000"], "Invalid value for '--port': must be within 1..65535; got 70000"),
        (["tune", "--trials", "-1"], "Invalid value for '--trials': must be at least 0; got -1"),
        (
            ["report", "--out", "reports/"],
            "Invalid value for '--out': must be a file path, not a folder; got 'reports/'",
        ),
        (["score", "--out", "out/"], "Invalid value for '--out': must be a file path, not a folder; got 'out/'"),
        (["backtest", "--out", "b/"], "Invalid value for '--out': must be a file path, not a folder; got 'b/'"),
        (["backtest", "--out", "b.txt"], "Invalid value for '--out': must be a .json file path; got 'b.txt'"),
        (
            ["score", "--as-of", "２０２０"],
            "Invalid value for '--as-of': must be a year like 2020 or a quarter like 2025Q3, of a year from 1000 to"
            " 3999; got '２０２０'",
        ),
        (["score", "--engine", "foo"], "Invalid value for '--engine': must be one of pandas, spark; got 'foo'"),
        (["backtest", "--nested-trials", "0"], "Invalid value for '--nested-trials': must be at least 1; got 0"),
        (["report", "--out", "x.txt"], "Invalid value for '--out': must be a .html or .htm file path; got 'x.txt'"),
        (["score", "--out", "a.parquet"], "Invalid value for '--out': must be a .csv file path; got 'a.parquet'"),
        (
            ["score", "--as-of", "2020.5"],
            "Invalid value for '--as-of': must be a year like 2020 or a quarter like 2025Q3, of a year from 1000 to"
            " 3999; got '2020.5'",
        ),
        (["report", "--as-of", "20x"], "Invalid value for '--as-of': must be a year like 2020 or a quarter like"),
        (["score", "--as-of", "4000"], "of a year from 1000 to 3999; got '4000'"),  # not read as the quarter 1000Q1
        (["score", "--as-of", "0999Q1"], "of a year from 1000 to 3999; got '0999Q1'"),  # not read as the year 3996
        (["tune", "--trials", "abc"], "Invalid value for '--trials': Input should be a valid integer, "),
        (
            ["tune", "--trials", "abc"],
            "unable to parse string as an integer; got 'abc'",
        ),  # the parser's, with the value
        (["serve", "--port=5k"], "unable to parse string as an integer; got '5k'"),
    ],
)
def test_a_bad_option_value_is_named_and_nothing_runs(monkeypatch, capsys, arguments, message):
    for job in (serve, tune, report, score, backtest):
        monkeypatch.setattr(job, "run", lambda *args: pytest.fail("a job ran with a bad option"))

    with pytest.raises(SystemExit) as stopped:
        cli.main(arguments)

    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1  # one line, no usage box
    assert message in err


def test_a_usage_error_is_one_line_on_stderr_with_status_2(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["score", "--bogus"])
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "score: No such option: --bogus" in err


def test_an_option_without_its_value_names_the_command(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["tune", "--trials"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == "error: beltcast tune: Option '--trials' requires an argument.\n"


@pytest.mark.parametrize("arguments", [[], ["data"], ["features"]])
def test_a_group_without_a_command_prints_its_help_once(capsys, arguments):
    with pytest.raises(SystemExit) as stopped:
        cli.main(arguments)
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    assert (out + err).count("Usage:") == 1
    assert f"beltcast {' '.join(arguments)}".strip() in out


def test_report_out_must_be_an_html_page(tmp_path):
    kept = tmp_path / "notes.txt"
    kept.write_text("mine", encoding="utf-8")
    with pytest.raises(score.ScoreError, match=r"--out must be an \.html path .*; got .*notes\.txt"):
        report.run(None, None, kept, None)
    assert kept.read_text(encoding="utf-8") == "mine"


def test_ctrl_c_is_one_line_with_status_130(monkeypatch, capsys):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(backtest, "run", interrupted)
    with pytest.raises(SystemExit) as stopped:
        cli.main(["backtest"])
    assert stopped.value.code == 130
    assert capsys.readouterr().err == "error: interrupted\n"


@pytest.mark.parametrize("repeated", [False, True])
def test_sigterm_ends_the_job_as_ctrl_c_does_with_its_run_failed_and_status_143(
    monkeypatch, capsys, tmp_path, repeated
):
    import mlflow

    from pipelines import tracking
    from pipelines.tracking import ERROR_TAG, start_run

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("terminated")

    def killed(*args):
        with start_run("backtest"):
            os.kill(os.getpid(), signal.SIGTERM)  # a scheduler stopping the job
            time.sleep(30)
        raise AssertionError("the job went on after SIGTERM")

    if repeated:  # the scheduler sends SIGTERM again while the run is being ended
        tag_error = tracking._tag_error

        def again(err):
            os.kill(os.getpid(), signal.SIGTERM)
            tag_error(err)

        monkeypatch.setattr(tracking, "_tag_error", again)
    monkeypatch.setattr(backtest, "run", killed)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as stopped:
            cli.main(["backtest"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    (run,) = mlflow.search_runs(experiment_names=["terminated"], output_format="list")

    assert stopped.value.code == 143
    assert capsys.readouterr().err.endswith("\nerror: terminated (SIGTERM)\n")  # after MLflow's log lines
    assert run.info.status == "FAILED"
    assert run.data.tags[ERROR_TAG] == "Terminated: terminated (SIGTERM)"


def test_a_sigterm_once_the_job_has_ended_stops_it_with_the_job_s_status():
    """A scheduler's SIGTERM that comes while a finished job's process exits (here in a slow exit
    handler) ends it at once, with the job's status and output, not 143 or a traceback."""
    exiting = (  # the exit handler registered after the command's module, as MLflow's and Spark's are
        "import atexit, sys, time\n"
        "from pipelines.cli import main\n"
        "atexit.register(lambda: (print('exiting', flush=True), time.sleep(60)))\n"
        "sys.argv = ['beltcast', 'data', '--help']\n"
        "main()\n"
    )
    job = subprocess.Popen([sys.executable, "-c", exiting], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while (line := job.stdout.readline()) and line.strip() != "exiting":
        pass
    sent = time.monotonic()
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=60)

    assert job.returncode == 0, err
    assert time.monotonic() - sent < 30  # not the exit handler's 60 s
    assert "Terminated" not in err and "error" not in err, err


def test_a_sigterm_in_python_s_shutdown_after_a_finished_job_does_not_end_it_143():
    """After the exit handlers, Python restores SIGTERM's default action while it collects its
    modules (a second or more with Spark and MLflow loaded): a SIGTERM then (here sent by an
    object collected with the main module) ended a finished job with 143."""
    shutting_down = (
        "import os, signal, sys, time\n"
        "from pipelines.cli import main\n"
        "class SentAtShutdown:\n"
        "    def __del__(self):\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(5)\n"
        "collected_last = SentAtShutdown()\n"
        "sys.argv = ['beltcast', 'data', '--help']\n"
        "main()\n"
    )
    job = subprocess.run([sys.executable, "-c", shutting_down], capture_output=True, text=True, timeout=120)

    assert job.returncode == 0, job.stderr
    assert "Usage" in job.stdout  # what the job printed is kept


def test_a_ctrl_c_while_the_command_loads_is_interrupted_not_a_traceback():
    interrupted_in_import = (  # the Ctrl+C falls in the import of the command's modules
        "import os, signal, sys\n"
        "class CtrlC:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'pipelines.cli':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "        return None\n"
        "sys.meta_path.insert(0, CtrlC())\n"
        "sys.argv = ['beltcast', 'data', '--help']\n"
        "from pipelines.launcher import main\n"
        "main()\n"
    )
    job = subprocess.run([sys.executable, "-c", interrupted_in_import], capture_output=True, text=True, timeout=120)

    assert (job.returncode, job.stderr, job.stdout) == (130, "error: interrupted\n", "")


def test_the_console_script_is_the_launcher_and_runs_the_command():
    from importlib.metadata import entry_points

    (script_entry,) = entry_points(group="console_scripts", name="beltcast")
    assert script_entry.value == "pipelines.launcher:main"
    script = Path(sys.executable).with_name("beltcast")
    if not script.exists():
        pytest.skip("beltcast is not installed beside this Python")
    job = subprocess.run([str(script), "no-such-verb"], capture_output=True, text=True, timeout=120)

    assert job.returncode == 2
    assert job.stderr.startswith("error:"), job.stderr


def test_a_failed_job_ends_with_its_status_after_the_exit_handlers():
    failing = "import sys\nfrom pipelines.cli import main\nsys.argv = ['beltcast', 'no-such-verb']\nmain()\n"
    job = subprocess.run([sys.executable, "-c", failing], capture_output=True, text=True, timeout=120)

    assert job.returncode == 2
    assert job.stderr.startswith("error:"), job.stderr


def test_called_in_a_program_main_puts_its_sigterm_handler_back():
    def handler(signum, frame) -> None:
        pass

    signal.signal(signal.SIGTERM, handler)
    with pytest.raises(SystemExit):
        cli.main(["data", "--help"])
    assert signal.getsignal(signal.SIGTERM) is handler


def test_a_sigterm_is_ignored_only_while_a_failing_run_is_being_ended():
    from features.errors import Terminated, ending_failed_run

    for _ in range(2):  # a first Terminated swallowed somewhere does not make the job unstoppable
        with pytest.raises(Terminated):
            cli._terminate(signal.SIGTERM, None)
    with ending_failed_run():
        assert cli._terminate(signal.SIGTERM, None) is None


def test_the_help_states_the_ranges():
    result = CliRunner().invoke(cli.app, ["serve", "--help"], terminal_width=200)

    assert result.exit_code == 0
    assert "1..65535" in result.output and "at least 1" in result.output


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("score", ("FILE.csv", "scores_<period>.csv in the folder outputs.dir", "pandas|spark", "YEAR|QUARTER")),
        ("report", ("FILE.html", "report_<period>.html in the folder outputs.dir", "YEAR|QUARTER", "FILE.toml")),
        ("backtest", ("FILE.json", "backtest.json in the folder outputs.dir")),
    ],
)
def test_the_help_states_the_default_outputs_and_the_choices(command, shown):
    result = CliRunner().invoke(cli.app, [command, "--help"], terminal_width=200)

    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())
    assert all(part in text for part in shown), text


def test_a_job_error_is_one_line_on_stderr_in_a_log(tmp_path):
    # a log: stdout and stderr are files, not a terminal; the message is longer than the log width
    deep = tmp_path / ("d" * 150) / "mlruns" / "mlflow.db"
    config = tmp_path / "beltcast.toml"
    config.write_text(f'[mlflow]\ntracking_uri = "sqlite:///{deep}"\n', encoding="utf-8")
    environment = {k: v for k, v in os.environ.items() if k != "COLUMNS"}

    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "score", "--config", str(config)],
        capture_output=True, text=True, timeout=300, env=environment,
    )  # fmt: skip

    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: there is no MLflow store at {deep} ")
    assert lines[0].endswith("point mlflow.tracking_uri at the store that holds the models")


def test_an_mlflow_error_no_job_foresaw_is_one_line_not_a_traceback(monkeypatch):
    from mlflow.exceptions import MlflowException

    def race(*args):
        raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: model_version_tags.key\n[SQL: ...]")

    monkeypatch.setattr(score, "run", race)
    result = CliRunner().invoke(cli.app, ["score"], terminal_width=200)

    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "error: MLflow: MlflowException: (sqlite3.IntegrityError) UNIQUE constraint failed: model_version_tags.key"
    ]


def test_another_error_is_not_hidden(monkeypatch):
    def bug(*args):
        raise KeyError("a bug")

    monkeypatch.setattr(score, "run", bug)
    result = CliRunner().invoke(cli.app, ["score"], terminal_width=200)

    assert isinstance(result.exception, KeyError)


def test_an_interruption_escaping_main_keeps_python_s_own_status():
    # only a job that ended with a status has its process ended with it; an uncaught Ctrl+C ends as
    # Python ends it, by SIGINT (130 in a shell)
    escaping = (
        "import sys\n"
        "from pipelines import cli\n"
        "cli._status = lambda argv: (_ for _ in ()).throw(KeyboardInterrupt)\n"
        "sys.argv = ['beltcast', 'data', '--help']\n"
        "cli.main()\n"
    )
    job = subprocess.run([sys.executable, "-c", escaping], capture_output=True, text=True, timeout=120)

    assert job.returncode == -signal.SIGINT, job.stderr
