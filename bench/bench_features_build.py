"""Benchmark ``beltcast features build`` from a warm cache: wall time and peak RSS.

Each run is a fresh child process (``spawn``) that imports the project, calls
``pipelines.build.run`` with the panel written to a temporary folder (the real
``data/features/panel.parquet`` is never touched) and reports its own peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``, read in the child after the job). The named steps of the
job are wrapped with timers in the child, so the split by stage costs nothing extra.

Run from the project root::

    .venv/bin/python bench/bench_features_build.py [--repeat 3] [--cache-dir data/raw]
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 60.0
TARGET_GB = 2.0
TARGET_CORES = 2
STAGES = (
    "load_history",
    "read_sources",
    "mode_labels",
    "build_panel",
    "quality_summary",
    "write_outputs",
    "report",
)
LIBRARIES = ("pandas", "numpy", "pyarrow", "pandera", "python-calamine", "openpyxl", "rich")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs, each in a fresh process")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=ROOT / "data" / "raw",
        help="the synced raw files (run `beltcast data sync` first)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1; got {args.repeat}")
    if not (args.cache_dir / "areacodes").is_dir():
        parser.error(
            f"--cache-dir {args.cache_dir} holds no synced data (no areacodes/ folder); run `beltcast data sync` first"
        )
    return args


def peak_rss_bytes(who: int = resource.RUSAGE_SELF) -> int:
    """``ru_maxrss`` in bytes (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(who).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def timed(name: str, func: Callable, record: dict) -> Callable:
    """``func`` adding its wall time (and the peak RSS after it) to ``record[name]``."""

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            seconds = record.get(name, (0.0, 0))[0]
            record[name] = (seconds + time.perf_counter() - start, peak_rss_bytes())

    return wrapper


def child_run(cache_dir: Path, conn) -> None:
    """In the child: import, wrap the job's steps with timers, run the build, send figures."""
    start = time.perf_counter()
    from rich.console import Console

    from pipelines import build
    from pipelines.config import DataSettings, Settings

    imported = time.perf_counter() - start
    stages: dict[str, tuple[float, int]] = {}
    readers: dict[str, tuple[float, int]] = {}
    for name in STAGES:
        setattr(build, name, timed(name, getattr(build, name), stages))
    build.READERS = tuple(timed(_reader_name(r), r, readers) for r in build.READERS)
    with tempfile.TemporaryDirectory(prefix="bench_build_") as tmp:
        settings = Settings(data=DataSettings(cache_dir=cache_dir, features_dir=Path(tmp)))
        console = Console(file=io.StringIO(), width=120)
        job_start = time.perf_counter()
        outputs = build.run(settings, console)
        job = time.perf_counter() - job_start
        panel_bytes = outputs.panel.stat().st_size
    conn.send(
        {
            "import_s": imported,
            "job_s": job,
            "peak_rss": peak_rss_bytes(),
            "stages": stages,
            "readers": readers,
            "panel_bytes": panel_bytes,
        }
    )
    conn.close()


def _reader_name(reader: Callable) -> str:
    return f"{reader.__module__.rsplit('.', 1)[-1]}.{reader.__name__}"


def one_run(cache_dir: Path) -> dict:
    """One build in a fresh spawned process; the process's wall time includes interpreter start."""
    context = mp.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    start = time.perf_counter()
    child = context.Process(target=child_run, args=(cache_dir, send))
    child.start()
    send.close()
    figures = receive.recv()
    child.join()
    figures["process_s"] = time.perf_counter() - start
    if child.exitcode != 0:
        raise RuntimeError(f"build child exited with code {child.exitcode}")
    return figures


def print_machine() -> None:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "n/a"
    print(f"machine: {platform.platform()}; cpu_count={os.cpu_count()}; usable cores={affinity}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"python {platform.python_version()}; load average {load}")
    versions = "; ".join(f"{lib} {_version(lib)}" for lib in LIBRARIES)
    print(f"libraries: {versions}")


def _version(lib: str) -> str:
    try:
        return metadata.version(lib)
    except metadata.PackageNotFoundError:
        return "not installed"


def print_run(i: int, run: dict) -> None:
    print(
        f"run {i}: process {run['process_s']:6.2f} s (imports {run['import_s']:.2f} s, "
        f"job {run['job_s']:6.2f} s); peak RSS {run['peak_rss'] / 2**30:.3f} GB"
    )


def print_stages(runs: list[dict]) -> None:
    """Median seconds per stage (and per source reader), its share of the job, peak RSS by then."""
    job = statistics.median(r["job_s"] for r in runs)
    print(f"\nstages (median of {len(runs)} run(s); share of the median job, {job:.2f} s):")
    for name in STAGES:
        _print_stage(runs, "stages", name, name, job)
        if name == "read_sources":
            for reader in runs[0]["readers"]:
                _print_stage(runs, "readers", reader, f"  {reader}", job)
    rest = statistics.median(r["job_s"] - sum(r["stages"][n][0] for n in STAGES) for r in runs)
    print(f"  {'(rest of the job)':<34} {rest:7.2f} s {rest / job:6.1%}")


def _print_stage(runs: list[dict], kind: str, name: str, label: str, job: float) -> None:
    seconds = statistics.median(r[kind][name][0] for r in runs)
    rss = max(r[kind][name][1] for r in runs)
    print(f"  {label:<34} {seconds:7.2f} s {seconds / job:6.1%}   peak RSS by its end {rss / 2**30:.3f} GB")


def print_verdict(runs: list[dict]) -> None:
    seconds = statistics.median(r["process_s"] for r in runs)
    peak = max(r["peak_rss"] for r in runs)
    children = peak_rss_bytes(resource.RUSAGE_CHILDREN)
    print(f"\nmedian process wall time {seconds:.2f} s; max peak RSS {peak / 2**30:.3f} GB")
    print(f"(cross-check: RUSAGE_CHILDREN max over every child {children / 2**30:.3f} GB)")
    print(f"targets on {TARGET_CORES} cores:")
    _verdict("wall time", seconds, TARGET_SECONDS, "s")
    _verdict("peak RSS", peak / 2**30, TARGET_GB, "GB")


def _verdict(what: str, value: float, target: float, unit: str) -> None:
    status = "PASS" if value <= target else "FAIL"
    share = f"{value / target:.0%} of target"
    print(f"  {what:<10} {value:8.3f} {unit} <= {target:g} {unit}: {status} ({share})")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print_machine()
    print(f"features build from the warm cache {args.cache_dir}, {args.repeat} run(s)\n")
    runs = []
    for i in range(1, args.repeat + 1):
        runs.append(one_run(args.cache_dir.resolve()))
        print_run(i, runs[-1])
    print(f"panel written: {runs[-1]['panel_bytes'] / 2**20:.1f} MiB (to a temporary folder)")
    print_stages(runs)
    print_verdict(runs)
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
