"""Atomic writes: a failure part-way leaves the previous file exactly as it was."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pandas as pd
import pytest

from features.errors import OutputPathError
from features.io import atomic_path, spreadsheet_safe, write_atomic, write_csv, write_json, write_parquet


def test_a_writer_failing_midway_leaves_the_old_file(tmp_path):
    target = tmp_path / "scores.csv"
    target.write_text("old\n")

    def half_then_crash(tmp):
        tmp.write_text("new but incomplete")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), atomic_path(target) as tmp:
        half_then_crash(tmp)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]


def test_a_full_disk_is_an_output_error_naming_the_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "scores.csv"
    target.write_text("old\n")

    def full(tmp):
        tmp.write_text("new but incomplete")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputPathError, match=f"cannot write output {re.escape(str(target))}: No space left on device"):
        write_atomic(target, full)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]


@pytest.mark.parametrize("together", [False, True])
def test_the_data_is_on_disk_before_the_rename_and_the_folder_after(tmp_path, monkeypatch, together):
    # a power cut can keep a rename whose file's data was never written: an empty file for the old one
    from features.io import write_together

    events = []
    fsync, replace = os.fsync, os.replace

    def recorded_fsync(handle):
        events.append(("fsync", "folder" if Path(f"/proc/self/fd/{handle}").resolve().is_dir() else "file"))
        fsync(handle)

    monkeypatch.setattr(os, "fsync", recorded_fsync)
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", Path(b).name)), replace(a, b)))
    targets = [tmp_path / "scores.csv", tmp_path / "scores.parquet"]
    if together:
        write_together({t: (lambda tmp: tmp.write_text("new")) for t in targets})
    else:
        write_atomic(targets[0], lambda tmp: tmp.write_text("new"))
    n = len(targets) if together else 1
    assert events[:n] == [("fsync", "file")] * n
    assert sorted(events[n : 2 * n]) == [("replace", t.name) for t in targets[:n]]
    assert events[2 * n :] == [("fsync", "folder")]


def test_writes_replace_whole_files_with_the_usual_mode(tmp_path):
    frame = pd.DataFrame({"county_code": ["371721"], "p_belt": [0.25]})
    csv = write_csv(frame, tmp_path / "a.csv")
    parquet = write_parquet(frame, tmp_path / "a.parquet")
    json_path = write_json({"曹县": 1}, tmp_path / "a.json")
    assert csv.read_text(encoding="utf-8") == "county_code,p_belt\n371721,0.25\n"
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), frame)
    assert json_path.read_text(encoding="utf-8") == '{\n  "曹县": 1\n}\n'
    umask = os.umask(0)
    os.umask(umask)
    assert csv.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_file_written_again_keeps_the_permission_bits_it_was_given(tmp_path):
    from features.io import write_together

    # os.replace of a new temporary file turned a chmod 600 output into 644
    private, together = tmp_path / "scores.csv", tmp_path / "scores.parquet"
    for path in (private, together):
        path.write_text("old\n")
        path.chmod(0o600)
    write_csv(pd.DataFrame({"county_code": ["371721"]}), private)
    write_together({together: lambda tmp: tmp.write_text("new\n")})
    assert private.stat().st_mode & 0o777 == 0o600 and together.stat().st_mode & 0o777 == 0o600
    assert together.read_text() == "new\n"
    shared = tmp_path / "shared.json"
    shared.write_text("{}\n")
    shared.chmod(0o664)
    write_json({"曹县": 1}, shared)
    assert shared.stat().st_mode & 0o777 == 0o664


FORMULAS = ['=HYPERLINK("https://evil.example","x")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3", "\t=1+1", "\r=1+1"]


def test_text_cells_that_start_like_a_formula_are_written_with_a_leading_quote(tmp_path):
    # a category of =HYPERLINK(...) from a metrics file ran as a formula in the CSV opened in Excel or WPS
    frame = pd.DataFrame(
        {
            "category": [*FORMULAS, "女装", "a=b"],
            "county_code": pd.Series(["371721"] * 8, dtype="string"),
            "gmv_cny": [-2.5, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            "row": [-1, 2, 3, 4, 5, 6, 7, 8],
        }
    )
    before = frame.copy()
    path = write_csv(frame, tmp_path / "unmatched.csv")
    written = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert written["category"].tolist() == [*(f"'{f}" for f in FORMULAS), "女装", "a=b"]
    assert written["gmv_cny"].tolist()[:2] == ["-2.5", "-1.0"] and written["row"].tolist()[0] == "-1"
    assert written["county_code"].tolist() == ["371721"] * 8
    assert '\n"\'\r=1+1",' in path.read_bytes().decode("utf-8")  # quoted: no new row at its CR
    pd.testing.assert_frame_equal(frame, before)  # the frame itself, and a Parquet of it, keep the values


def test_only_text_cells_are_made_safe_and_a_number_in_a_column_of_text_stays_a_number():
    frame = pd.DataFrame({"mixed": ["-3", -3, None], "kind": pd.Categorical(["=1", "b", "=1"])})
    safe = spreadsheet_safe(frame)
    assert safe["mixed"].tolist()[:2] == ["'-3", -3] and pd.isna(safe["mixed"].iloc[2])
    assert safe["kind"].tolist() == ["'=1", "b", "'=1"]
    numbers = pd.DataFrame({"p": [-0.5]})
    assert spreadsheet_safe(numbers) is numbers


def test_files_written_together_are_all_replaced_or_none(tmp_path):
    from features.io import write_together

    csv, parquet = tmp_path / "s.csv", tmp_path / "s.parquet"
    csv.write_text("old csv\n")
    parquet.write_text("old parquet\n")

    def crash(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OutputPathError, match=f"cannot write output {re.escape(str(csv))}: disk full"):
        write_together({parquet: lambda tmp: tmp.write_text("new parquet\n"), csv: crash})
    assert (csv.read_text(), parquet.read_text()) == ("old csv\n", "old parquet\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv", "s.parquet"]

    write_together({parquet: lambda tmp: tmp.write_text("new parquet\n"), csv: lambda tmp: tmp.write_text("new csv\n")})
    assert (csv.read_text(), parquet.read_text()) == ("new csv\n", "new parquet\n")


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_renames_is_handled_after_the_last(tmp_path, monkeypatch, number):
    """A scheduler's SIGTERM (or Ctrl+C) that came after the first rename ended the job before the
    second: a new CSV beside the old Parquet."""
    import features.io

    class Stopped(Exception):
        pass

    def stop(signum, frame):
        raise Stopped(signum)

    csv, parquet = tmp_path / "s.csv", tmp_path / "s.parquet"
    csv.write_text("old csv\n")
    parquet.write_text("old parquet\n")
    renamed, replace = [], os.replace

    def replace_then_signal(source, target):
        replace(source, target)
        renamed.append(Path(target).name)
        if len(renamed) == 1:
            os.kill(os.getpid(), number)

    previous = signal.signal(number, stop)
    try:
        monkeypatch.setattr(features.io.os, "replace", replace_then_signal)
        with pytest.raises(Stopped):
            features.io.write_together({parquet: lambda tmp: tmp.write_text("new parquet\n"),
                                        csv: lambda tmp: tmp.write_text("new csv\n")})  # fmt: skip
        assert signal.getsignal(number) is stop
    finally:
        signal.signal(number, previous)
    assert sorted(renamed) == ["s.csv", "s.parquet"]
    assert (csv.read_text(), parquet.read_text()) == ("new csv\n", "new parquet\n")


def test_signals_deferred_in_another_thread_changes_no_handler():
    import threading

    from features.io import signals_deferred

    seen = []

    def run():
        with signals_deferred():
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [before]


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # that process has exited: its leftovers may go
    target = tmp_path / "report.html"
    leftover = tmp_path / f".report.html.{dead_pid}.k1ll3d.part"
    running = tmp_path / f".report.html.{os.getpid()}.inuse.part"  # a writer still running: kept
    leftover.write_text("partial")
    running.write_text("being written")

    write_json({"ok": True}, target)

    assert not leftover.exists()
    assert running.exists()
    assert target.is_file()


def test_a_sigterm_held_with_a_ctrl_c_is_handled_first(monkeypatch):
    """Ctrl+C then a scheduler's SIGTERM during the renames: the SIGTERM's handler runs (the job
    ends terminated, 143), not only the first signal's."""
    from features.io import signals_deferred

    ran = []

    def on_term(signum, frame):
        ran.append("SIGTERM")
        raise RuntimeError("terminated")

    previous = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, lambda signum, frame: ran.append("SIGINT"))
    try:
        with pytest.raises(RuntimeError, match="terminated"), signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
        assert ran == ["SIGTERM"]
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def test_a_file_system_that_cannot_sync_is_no_failure_but_a_failed_sync_is(tmp_path, monkeypatch):
    import errno

    def cannot(handle):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "fsync", cannot)
    assert write_atomic(tmp_path / "a.csv", lambda tmp: tmp.write_text("new")).read_text() == "new"

    def failed(handle):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failed)
    with pytest.raises(OutputPathError, match=r"cannot write output .*a\.csv: Input/output error"):
        write_atomic(tmp_path / "a.csv", lambda tmp: tmp.write_text("newer"))
    assert (tmp_path / "a.csv").read_text() == "new"
