"""Load test of the served champion on 127.0.0.1: requests/s, p50/p99 latency and errors at 1, 8
and 32 concurrent clients (``--seconds`` each, default 30), and the server's memory (RSS of its
whole process tree) before and after, with the growth bound it must stay within.

Bounded in time and count (each client stops at its deadline or after a fixed number of
requests) and aimed only at a server this script starts on the loopback address.

Run from the project root::

    .venv/bin/python bench/bench_load.py [--seconds 30] [--tracking-uri sqlite:///...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench_serving import bodies, champion_counties, champion_store, measure, running_server, warm_up

CLIENTS = (1, 8, 32)
RSS_GROWTH_BOUND_MB = 200.0


def tree_rss_mb(pid: int) -> float:
    """Resident memory (MB) of ``pid`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--tracking-uri", default=None)
    args = parser.parse_args(argv)
    print(f"cores {os.cpu_count()}, load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="bench_load_") as tmp:
        root = Path(tmp)
        settings = champion_store(root, args.tracking_uri)
        _, codes, year = champion_counties(settings, 200)
        payloads = bodies(codes, year)
        with running_server(settings, None, 1, root / "server.log") as (url, process):
            warm_up(url, payloads)
            before = tree_rss_mb(process.pid)
            results = [measure("beltcast", url, payloads, clients, args.seconds) for clients in CLIENTS]
            after = tree_rss_mb(process.pid)
    print(f"\n{'clients':>8}{'requests':>10}{'errors':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for r in results:
        errors = sum(r.errors.values())
        print(f"{r.clients:>8}{r.ok:>10}{errors:>8}{r.throughput:>10.1f}{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}")
    total_errors = sum(sum(r.errors.values()) for r in results)
    growth = after - before
    print(f"\nserver RSS before {before:.0f} MB, after {after:.0f} MB, growth {growth:+.0f} MB "
          f"(bound {RSS_GROWTH_BOUND_MB:.0f} MB): {'PASS' if growth <= RSS_GROWTH_BOUND_MB else 'FAIL'}")  # fmt: skip
    print(f"errors in all: {total_errors}: {'PASS' if total_errors == 0 else 'FAIL'}")
    print(f"load average at the end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
